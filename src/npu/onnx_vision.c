/*
 * onnx_vision.c - the Idefics3 / SmolVLM vision tower and connector as one static-shape float32
 * ONNX graph for ONNX Runtime and its QNN execution provider (the vision half of
 * evlm_export_onnx, onnx_vision.h), evlm_onnx_image_pixels (the graph's input, as evlm's
 * image processor makes it) and evlm_onnx_prompt_features (what its output is checked against).
 *
 * Graph of T tiles (S = image_size, p = patch, G = S / p, N = G * G, D = hidden, s = scale):
 *   input  pixel_values [T, 3, S, S] float32, preprocessed (resized, rescaled, normalised)
 *   output image_features [T * N / s^2, text_hidden] float32: the rows that replace the prompt's
 *          image tokens, tile after tile.
 * Conv (kernel = stride = p, the tower's patch Conv2d) -> Reshape / Transpose to [T, N, D] ->
 * + the position table rows of a full tile -> per layer LayerNormalization -> MatMul q / k / v
 * (+ bias) -> per-head scores MatMul, x head_dim^-0.5, Softmax, MatMul v -> out projection ->
 * residual; LayerNormalization -> fc1 -> gelu tanh written as 0.5 x (1 + Tanh(k (x + c x^3)))
 * -> fc2 -> residual; post LayerNormalization; the connector's pixel shuffle as the exact
 * Reshape / Transpose sequence of Idefics3Connector.pixel_shuffle; the bias-free projection.
 * Ops: Conv, Reshape, Transpose, Add, Mul, MatMul, LayerNormalization, Softmax, Tanh (opset 17,
 * all in the QNN EP's list). Weights are stored [in, out] for MatMul in their own file.
 *
 * No pixel attention mask: the graph encodes full tiles, which is what the processor makes for
 * one image (its mask is all ones); position ids are those evlm_siglip_position_ids gives a full
 * tile, baked into the table. Tiles are independent, so a runner encodes an image of more tiles
 * in several passes, or pads the last pass with any tiles and drops their rows.
 *
 * Not here: Qwen2-VL's tower (refused by evlm__onnx_vision_plan), padded tiles of a batch of
 * several images, quantized precisions.
 */
#include "npu/onnx_vision.h"
#include "evlm_npu.h"

#include "core/file.h"
#include "core/status.h"
#include "model/family.h"
#include "model/model.h"
#include "vision/idefics3_proc.h"
#include "vision/qwen2vl_proc.h"
#include "vision/qwen2vl_vit.h"
#include "vision/siglip.h"

#include <stdlib.h>
#include <string.h>

#ifdef EVLM_ONNX
#include "compress/gptq.h"
#include "io/onnx.h"
#include "npu/qdq_vision.h"
#include "quant/repack.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#endif

#define VISION_MAX_TILES 64

evlm_status evlm__onnx_vision_plan(const evlm_model *m, int tiles, int *n_tiles) {
    *n_tiles = 0;
    int max_tiles = 0;
    if (tiles < 0) return EVLM_OK; /* none asked */
    if (!evlm__model_idefics3(m, NULL, NULL, &max_tiles)) {
        if (tiles <= 0) return EVLM_OK;
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "tiles = %d: %s", tiles,
                          evlm_model_has_vision(m)
                              ? "tiles are Idefics3 / SmolVLM's; Qwen2-VL's vision graph is "
                                "one fixed patch grid: grid_h x grid_w (--grid HxW, the grid "
                                "`evlm prompt --image` prints), or none and the prefill graph "
                                "takes its image features as the input image_features"
                              : "the model has no vision tower");
    }
    if (tiles > VISION_MAX_TILES)
        return evlm__fail(EVLM_ERR_ARG, "tiles = %d: the vision graph takes 1 to %d tiles", tiles,
                          VISION_MAX_TILES);
    *n_tiles = tiles > 0 ? tiles : max_tiles;
    return EVLM_OK;
}

evlm_status evlm_onnx_image_pixels(const evlm_model *model, const evlm_image_input *image,
                                   float **pixels, int *n_tiles, int *tile) {
    const evlm_idefics3_proc *proc = NULL;
    if (!model || !image || !pixels || !n_tiles || !tile)
        return evlm__fail(EVLM_ERR_ARG, "evlm_onnx_image_pixels: NULL argument");
    *pixels = NULL;
    if (!evlm__model_idefics3(model, NULL, &proc, NULL))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "pixel values: only the Idefics3 / SmolVLM processor is exported so far");
    evlm_image img = {0};
    EVLM_TRY(evlm__image_input_load(image, 0, &img));
    evlm_idefics3_pixels px = {0};
    evlm_status st = evlm_idefics3_preprocess(proc, &img, &px);
    evlm_image_free(&img);
    if (st != EVLM_OK) {
        if (image->path) evlm__fail_prefix(st, "%s", image->path);
        return st;
    }
    *pixels = px.pixel_values; /* ownership moves to the caller */
    px.pixel_values = NULL;
    *n_tiles = px.n_tiles;
    *tile = px.tile;
    evlm_idefics3_pixels_free(&px);
    return EVLM_OK;
}

evlm_status evlm_onnx_image_patches(const evlm_model *model, const evlm_image_input *image,
                                    float **pixels, int *grid_t, int *grid_h, int *grid_w,
                                    int *patch_dim) {
    const evlm_qwen2vl_proc *proc = NULL;
    if (!model || !image || !pixels || !grid_t || !grid_h || !grid_w || !patch_dim)
        return evlm__fail(EVLM_ERR_ARG, "evlm_onnx_image_patches: NULL argument");
    *pixels = NULL;
    if (!evlm__model_qwen2vl(model, NULL, &proc, NULL))
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "patch rows: the model is not Qwen2-VL");
    evlm_image img = {0};
    EVLM_TRY(evlm__image_input_load(image, 0, &img));
    evlm_qwen2vl_pixels px = {0};
    evlm_status st = evlm_qwen2vl_preprocess(proc, &img, &px);
    evlm_image_free(&img);
    if (st != EVLM_OK) {
        if (image->path) evlm__fail_prefix(st, "%s", image->path);
        return st;
    }
    *pixels = px.pixel_values; /* ownership moves to the caller */
    px.pixel_values = NULL;
    *grid_t = px.grid_t;
    *grid_h = px.grid_h;
    *grid_w = px.grid_w;
    *patch_dim = px.patch_dim;
    evlm_qwen2vl_pixels_free(&px);
    return EVLM_OK;
}

const float *evlm_onnx_prompt_features(const evlm_model *model, const evlm_prompt *p, int *n_rows,
                                       int *width) {
    int n = 0;
    const float *f = p ? evlm__prompt_features(p, &n) : NULL;
    if (n_rows) *n_rows = f ? n : 0;
    if (width) *width = model ? evlm__model_config(model)->hidden_size : 0;
    return f;
}

#ifndef EVLM_ONNX

evlm_status evlm__onnx_vision_write(const evlm_model *m, const char *dir, int n_tiles, int opset,
                                    int act_bits, const char *calib, cJSON *root, cJSON *graphs) {
    (void)m, (void)dir, (void)n_tiles, (void)opset, (void)act_bits, (void)calib, (void)root,
        (void)graphs;
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "this build has no ONNX export (EVLM_ONNX=OFF)");
}

evlm_status evlm__onnx_qwen2vl_write(const evlm_model *m, const char *dir, int grid_h, int grid_w,
                                     int opset, cJSON *root, cJSON *graphs) {
    (void)m, (void)dir, (void)grid_h, (void)grid_w, (void)opset, (void)root, (void)graphs;
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "this build has no ONNX export (EVLM_ONNX=OFF)");
}

#else

/* ---- the weight file ------------------------------------------------------------------------ */

/* A quantized matrix of the QDQ vision graph: int8 codes ([in, out] for MatMul; the Conv's
 * [D, C, p, p]), float32 scales [out], int8 zero points (zeros). */
typedef struct {
    char name[32];
    int layer; /* -1: patch / proj */
    int64_t out, in;
    bool conv; /* stored [out, in] (the Conv weight), else [in, out] */
    uint64_t q_off, s_off;
} vqw;

/* What a QDQ vision graph needs (NULL: the float32 graph). */
typedef struct {
    int bits; /* activations: 16 or 8 */
    int L;    /* tower layers */
    int n_pts;
    evlm_qdq_point *pts; /* [n_pts], qdq_vision.h's order */
    char (*tensor)[64];  /* the float tensor each point's QuantizeLinear reads */
    vqw *w;
    int n_w, cap_w;
    int n_images, n_tiles; /* calibration */
    int n_patches;         /* per tile */
} vq;

typedef struct {
    evlm_onnx *g;
    FILE *f;
    const char *path;
    uint64_t off;
    int k; /* intermediate names */
    vq *q; /* NULL: float32 */
} vb;

static evlm_status vb_write(vb *b, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, b->f) != n)
        return evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", b->path, strerror(errno));
    b->off += n;
    return EVLM_OK;
}

/* Writes n floats at the next 64-byte boundary as the initializer name of shape. */
static evlm_status vb_tensor(vb *b, const char *name, const float *v, int ndim,
                             const int64_t *shape) {
    static const uint8_t zeros[64];
    EVLM_TRY(vb_write(b, zeros, (size_t)((64 - b->off % 64) % 64)));
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    evlm_onnx_init_external(b->g, name, EVLM_ONNX_F32, ndim, shape, EVLM_ONNX_VISION_WEIGHTS,
                            b->off);
    return vb_write(b, v, sizeof(float) * (size_t)n);
}

static evlm_status vb_vec(vb *b, const char *name, const float *v, int64_t n) {
    return vb_tensor(b, name, v, 1, (const int64_t[]){n});
}

/* Writes n bytes at the next 64-byte boundary as the initializer name (dtype, shape); *off: where
 * they start. */
static evlm_status vb_raw(vb *b, const char *name, evlm_onnx_dtype dt, int ndim,
                          const int64_t *shape, const void *v, size_t n, uint64_t *off) {
    static const uint8_t zeros[64];
    EVLM_TRY(vb_write(b, zeros, (size_t)((64 - b->off % 64) % 64)));
    evlm_onnx_init_external(b->g, name, dt, ndim, shape, EVLM_ONNX_VISION_WEIGHTS, b->off);
    if (off) *off = b->off;
    return vb_write(b, v, n);
}

/* Matrix t (rows = out, cols = in) as int8 symmetric per output channel (rounded to nearest,
 * compress/gptq.h's grid, as the decoder's w8): "name" the codes ([in, out] for MatMul, or for
 * the Conv [out, C, p, p]), "name.scale" [out] float32, "name.zp" [out] int8 zeros. */
static evlm_status vb_qmatrix(vb *b, const char *name, int layer, const evlm_tensor *t, bool conv,
                              const int64_t *conv_shape) {
    vq *q = b->q;
    const int64_t in = t->ne[0], out = t->ne[1], n = in * out;
    float *wf = malloc(sizeof(float) * (size_t)n), *sc = malloc(sizeof(float) * (size_t)out);
    int8_t *codes = malloc((size_t)n), *tr = malloc((size_t)n), *zp = calloc((size_t)out, 1);
    evlm_status st = EVLM_OK;
    if (q->n_w == q->cap_w) {
        int cap = q->cap_w ? 2 * q->cap_w : 32;
        vqw *e = realloc(q->w, sizeof *e * (size_t)cap);
        if (e) {
            q->w = e;
            q->cap_w = cap;
        } else
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory listing the vision weights");
    }
    if (!wf || !sc || !codes || !tr || !zp)
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting %s", name);
    if (st != EVLM_OK) goto done;
    for (int64_t o = 0; o < out; o++) evlm_matrix_row_f32(t, o, wf + o * in);
    evlm_gptq_sym g = {127, in, codes, sc};
    evlm_gptq_sym_round(&g, wf, out, in);
    vqw *e = &q->w[q->n_w++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->layer = layer;
    e->out = out;
    e->in = in;
    e->conv = conv;
    if (!conv)
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) tr[i * out + o] = codes[o * in + i];
    char nm[48];
    st = conv ? vb_raw(b, name, EVLM_ONNX_I8, 4, conv_shape, codes, (size_t)n, &e->q_off)
              : vb_raw(b, name, EVLM_ONNX_I8, 2, (const int64_t[]){in, out}, tr, (size_t)n,
                       &e->q_off);
    snprintf(nm, sizeof nm, "%s.scale", name);
    if (st == EVLM_OK)
        st = vb_raw(b, nm, EVLM_ONNX_F32, 1, (const int64_t[]){out}, sc,
                    sizeof(float) * (size_t)out, &e->s_off);
    snprintf(nm, sizeof nm, "%s.zp", name);
    if (st == EVLM_OK)
        st = vb_raw(b, nm, EVLM_ONNX_I8, 1, (const int64_t[]){out}, zp, (size_t)out, NULL);
done:
    free(wf);
    free(sc);
    free(codes);
    free(tr);
    free(zp);
    return st;
}

/* A matrix t (rows = out, cols = in) stored transposed, [in, out], for MatMul (quantized in a
 * QDQ graph). */
static evlm_status vb_matrix_t(vb *b, const char *name, const evlm_tensor *t) {
    if (b->q) {
        int layer = -1;
        if (name[0] == 'l') layer = atoi(name + 1);
        return vb_qmatrix(b, name, layer, t, false, NULL);
    }
    const int64_t cols = t->ne[0], rows = t->ne[1];
    float *buf = malloc(sizeof(float) * (size_t)cols);
    float *tr = malloc(sizeof(float) * (size_t)(rows * cols));
    evlm_status st = EVLM_OK;
    if (!buf || !tr) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting %s", name);
    } else {
        for (int64_t r = 0; r < rows; r++) {
            evlm_matrix_row_f32(t, r, buf);
            for (int64_t c = 0; c < cols; c++) tr[c * rows + r] = buf[c];
        }
        st = vb_tensor(b, name, tr, 2, (const int64_t[]){cols, rows});
    }
    free(buf);
    free(tr);
    return st;
}

/* ---- graph helpers -------------------------------------------------------------------------- */

static const char *tmp(vb *b, char *buf, const char *what) {
    snprintf(buf, 64, "v%d_%s", b->k++, what);
    return buf;
}

static int op(vb *b, const char *type, const char *out, int n_in, ...) {
    const char *in[4];
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in && i < 4; i++) in[i] = va_arg(ap, const char *);
    va_end(ap);
    return evlm_onnx_node(b->g, type, n_in, in, 1, &out);
}

static void shape_const(vb *b, const char *name, int n, const int64_t *v) {
    evlm_onnx_init(b->g, name, EVLM_ONNX_I64, 1, (const int64_t[]){n}, v);
}

static void f32_const(vb *b, const char *name, float v) {
    evlm_onnx_init(b->g, name, EVLM_ONNX_F32, 0, NULL, &v);
}

static void transpose(vb *b, char *y, const char *x, int n, const int64_t *perm) {
    int nd = op(b, "Transpose", tmp(b, y, "tr"), 1, x);
    evlm_onnx_attr_ints(b->g, nd, "perm", n, perm);
}

static void layernorm(vb *b, char *y, const char *x, const char *w, const char *bias, float eps) {
    int nd = op(b, "LayerNormalization", tmp(b, y, "ln"), 3, x, w, bias);
    evlm_onnx_attr_int(b->g, nd, "axis", -1);
    evlm_onnx_attr_float(b->g, nd, "epsilon", eps);
}

/* The float weight a MatMul / Conv reads for the stored weight `name`: itself (float32) or its
 * DequantizeLinear (int8 per output channel, on axis) into out. */
static const char *weight(vb *b, char *out, const char *name, int axis) {
    if (!b->q) return name;
    char sn[64], zn[64];
    snprintf(sn, sizeof sn, "%s.scale", name);
    snprintf(zn, sizeof zn, "%s.zp", name);
    snprintf(out, 64, "%s.dq", name);
    int nd = evlm_onnx_node(b->g, "DequantizeLinear", 3, (const char *[]){name, sn, zn}, 1,
                            (const char *[]){out});
    evlm_onnx_attr_int(b->g, nd, "axis", axis);
    return out;
}

/* Activation x at point `group` of layer l (qdq_vision.h): QuantizeLinear -> DequantizeLinear
 * with the point's encoding into a fresh name; x itself in a float32 graph. */
static const char *qdq(vb *b, char *out, const char *x, int l, const char *group) {
    vq *q = b->q;
    if (!q) return x;
    int idx = evlm__qdqv_index(q->L, l, group);
    const evlm_qdq_point *p = &q->pts[idx];
    snprintf(q->tensor[idx], 64, "%s", x);
    char sn[32], zn[32], qn[64];
    snprintf(sn, sizeof sn, "vqp%d.scale", idx);
    snprintf(zn, sizeof zn, "vqp%d.zp", idx);
    evlm_onnx_init(b->g, sn, EVLM_ONNX_F32, 0, NULL, &p->scale);
    if (p->bits == 16) {
        uint16_t z = (uint16_t)p->zp;
        evlm_onnx_init(b->g, zn, EVLM_ONNX_U16, 0, NULL, &z);
    } else {
        uint8_t z = (uint8_t)p->zp;
        evlm_onnx_init(b->g, zn, EVLM_ONNX_U8, 0, NULL, &z);
    }
    op(b, "QuantizeLinear", tmp(b, qn, "q"), 3, x, sn, zn);
    op(b, "DequantizeLinear", tmp(b, out, "dq"), 3, qn, sn, zn);
    return out;
}

/* y = x W^T + bias for the weights "{w}" / "{w}.b" */
static void linear(vb *b, char *y, const char *x, const char *w) {
    char t[64], bn[80], wd[64];
    snprintf(bn, sizeof bn, "%s.b", w);
    op(b, "MatMul", tmp(b, t, "mm"), 2, x, weight(b, wd, w, 1));
    op(b, "Add", tmp(b, y, "lin"), 2, t, bn);
}

/* ---- weights and graph ---------------------------------------------------------------------- */

static evlm_status write_weights(vb *b, const evlm_siglip *m) {
    const evlm_idefics3_config *c = &m->cfg;
    const int64_t D = c->hidden_size, F = c->intermediate_size, N = c->num_patches;
    const int64_t P = c->patch_size, C = c->num_channels;
    char nm[64];
    /* the Conv2d weight [D, C, p, p]: the 2-D view's rows */
    float *buf = malloc(sizeof(float) * (size_t)(D * C * P * P > N * D ? D * C * P * P : N * D));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)N);
    uint8_t *full = malloc((size_t)N);
    evlm_status st = EVLM_OK;
    if (!buf || !pos || !full) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting the vision tower");
        goto done;
    }
    if (b->q) {
        st = vb_qmatrix(b, "patch.w", -1, &m->patch_w, true, (const int64_t[]){D, C, P, P});
        if (st != EVLM_OK) goto done;
    } else {
        for (int64_t r = 0; r < D; r++) evlm_matrix_row_f32(&m->patch_w, r, buf + r * C * P * P);
        st = vb_tensor(b, "patch.w", buf, 4, (const int64_t[]){D, C, P, P});
        if (st != EVLM_OK) goto done;
    }
    if ((st = vb_vec(b, "patch.b", m->patch_b, D)) != EVLM_OK) goto done;
    /* the position rows of a full tile */
    memset(full, 1, (size_t)N);
    if (evlm_siglip_position_ids(c, full, pos) < 0) {
        st = EVLM_ERR_ARG; /* the message is set */
        goto done;
    }
    for (int64_t i = 0; i < N; i++)
        memcpy(buf + i * D, m->pos_embd + (size_t)pos[i] * (size_t)D, sizeof(float) * (size_t)D);
    if ((st = vb_tensor(b, "pos", buf, 2, (const int64_t[]){N, D})) != EVLM_OK) goto done;
    for (int l = 0; l < c->n_layers && st == EVLM_OK; l++) {
        const evlm_siglip_layer *ly = &m->layers[l];
        const struct {
            const char *name;
            const float *v;
            int64_t n;
        } vecs[] = {{"ln1.w", ly->ln1_w, D}, {"ln1.b", ly->ln1_b, D}, {"ln2.w", ly->ln2_w, D},
                    {"ln2.b", ly->ln2_b, D}, {"q.b", ly->bq, D},      {"k.b", ly->bk, D},
                    {"v.b", ly->bv, D},      {"o.b", ly->bo, D},      {"fc1.b", ly->b_fc1, F},
                    {"fc2.b", ly->b_fc2, D}};
        const struct {
            const char *name;
            const evlm_tensor *t;
        } mats[] = {{"q", ly->wq}, {"k", ly->wk},    {"v", ly->wv},
                    {"o", ly->wo}, {"fc1", ly->fc1}, {"fc2", ly->fc2}};
        for (size_t i = 0; i < sizeof vecs / sizeof *vecs && st == EVLM_OK; i++) {
            snprintf(nm, sizeof nm, "l%d.%s", l, vecs[i].name);
            st = vb_vec(b, nm, vecs[i].v, vecs[i].n);
        }
        for (size_t i = 0; i < sizeof mats / sizeof *mats && st == EVLM_OK; i++) {
            snprintf(nm, sizeof nm, "l%d.%s", l, mats[i].name);
            st = vb_matrix_t(b, nm, mats[i].t);
        }
    }
    if (st == EVLM_OK) st = vb_vec(b, "post.w", m->post_ln_w, D);
    if (st == EVLM_OK) st = vb_vec(b, "post.b", m->post_ln_b, D);
    if (st == EVLM_OK) st = vb_matrix_t(b, "proj", m->proj);
done:
    free(buf);
    free(pos);
    free(full);
    return st;
}

static void build_graph(vb *b, const evlm_siglip *m, int T) {
    const evlm_idefics3_config *c = &m->cfg;
    const int64_t D = c->hidden_size, N = c->num_patches, G = c->patches_per_side;
    const int64_t NH = c->n_heads, HD = c->head_dim, s = c->scale_factor, S = c->image_size;
    const int64_t TOK = c->tokens_per_tile, TH = c->text_hidden_size;
    evlm_onnx *g = b->g;
    evlm_onnx_input(g, "pixel_values", EVLM_ONNX_F32, 4,
                    (const int64_t[]){T, c->num_channels, S, S});
    evlm_onnx_output(g, "image_features", EVLM_ONNX_F32, 2, (const int64_t[]){T * TOK, TH});
    shape_const(b, "c.tdn", 3, (const int64_t[]){T, D, N});
    shape_const(b, "c.heads", 4, (const int64_t[]){T, N, NH, HD});
    shape_const(b, "c.tnd", 3, (const int64_t[]){T, N, D});
    shape_const(b, "c.shuf1", 4, (const int64_t[]){T, G, G / s, D * s});
    shape_const(b, "c.shuf2", 4, (const int64_t[]){T, G / s, G / s, D * s * s});
    shape_const(b, "c.rows", 2, (const int64_t[]){T * TOK, D * s * s});
    f32_const(b, "c.scale", (float)(1.0 / sqrt((double)HD)));
    f32_const(b, "c.half", 0.5f);
    f32_const(b, "c.one", 1.0f);
    f32_const(b, "c.gk", 0.7978845608028654f);
    f32_const(b, "c.gc", 0.044715f);

    char x[64], t[64], u[64], pq[64], wd[64];
    int nd = op(b, "Conv", tmp(b, t, "conv"), 3, qdq(b, pq, "pixel_values", -1, "v_patch"),
                weight(b, wd, "patch.w", 0), "patch.b");
    evlm_onnx_attr_ints(g, nd, "kernel_shape", 2, (const int64_t[]){c->patch_size, c->patch_size});
    evlm_onnx_attr_ints(g, nd, "strides", 2, (const int64_t[]){c->patch_size, c->patch_size});
    op(b, "Reshape", tmp(b, u, "tdn"), 2, t, "c.tdn");
    transpose(b, t, u, 3, (const int64_t[]){0, 2, 1});
    op(b, "Add", tmp(b, x, "embd"), 2, t, "pos");
    for (int l = 0; l < c->n_layers; l++) {
        char w[64], w2[64], h[64], q[64], k[64], v[64], a[64], y[64], hq[64], tq[64];
        snprintf(w, sizeof w, "l%d.ln1.w", l);
        snprintf(w2, sizeof w2, "l%d.ln1.b", l);
        layernorm(b, h, x, w, w2, c->layer_norm_eps);
        const char *hx = qdq(b, hq, h, l, "v_qkv");
        /* q [T, NH, N, HD], k^T [T, NH, HD, N], v [T, NH, N, HD] */
        snprintf(w, sizeof w, "l%d.q", l);
        linear(b, t, hx, w);
        op(b, "Reshape", tmp(b, u, "qh"), 2, qdq(b, tq, t, l, "v_q"), "c.heads");
        transpose(b, q, u, 4, (const int64_t[]){0, 2, 1, 3});
        snprintf(w, sizeof w, "l%d.k", l);
        linear(b, t, hx, w);
        op(b, "Reshape", tmp(b, u, "kh"), 2, qdq(b, tq, t, l, "v_k"), "c.heads");
        transpose(b, k, u, 4, (const int64_t[]){0, 2, 3, 1});
        snprintf(w, sizeof w, "l%d.v", l);
        linear(b, t, hx, w);
        op(b, "Reshape", tmp(b, u, "vh"), 2, qdq(b, tq, t, l, "v_v"), "c.heads");
        transpose(b, v, u, 4, (const int64_t[]){0, 2, 1, 3});
        op(b, "MatMul", tmp(b, t, "qk"), 2, q, k);
        op(b, "Mul", tmp(b, u, "scaled"), 2, t, "c.scale");
        nd = op(b, "Softmax", tmp(b, a, "probs"), 1, u);
        evlm_onnx_attr_int(g, nd, "axis", -1);
        op(b, "MatMul", tmp(b, t, "att"), 2, a, v);
        transpose(b, u, t, 4, (const int64_t[]){0, 2, 1, 3});
        op(b, "Reshape", tmp(b, t, "attn"), 2, u, "c.tnd");
        snprintf(w, sizeof w, "l%d.o", l);
        linear(b, u, qdq(b, tq, t, l, "v_o"), w);
        op(b, "Add", tmp(b, y, "res1"), 2, x, u);
        /* MLP: fc1, gelu tanh, fc2 */
        snprintf(w, sizeof w, "l%d.ln2.w", l);
        snprintf(w2, sizeof w2, "l%d.ln2.b", l);
        layernorm(b, h, y, w, w2, c->layer_norm_eps);
        snprintf(w, sizeof w, "l%d.fc1", l);
        linear(b, t, qdq(b, hq, h, l, "v_fc1"), w);
        char x2[64], x3[64], in[64], th[64];
        op(b, "Mul", tmp(b, x2, "x2"), 2, t, t);
        op(b, "Mul", tmp(b, x3, "x3"), 2, x2, t);
        op(b, "Mul", tmp(b, u, "cx3"), 2, x3, "c.gc");
        op(b, "Add", tmp(b, in, "inner"), 2, t, u);
        op(b, "Mul", tmp(b, u, "kin"), 2, in, "c.gk");
        op(b, "Tanh", tmp(b, th, "tanh"), 1, u);
        op(b, "Add", tmp(b, u, "onep"), 2, th, "c.one");
        op(b, "Mul", tmp(b, in, "xh"), 2, t, "c.half");
        op(b, "Mul", tmp(b, h, "gelu"), 2, in, u);
        snprintf(w, sizeof w, "l%d.fc2", l);
        linear(b, t, qdq(b, hq, h, l, "v_fc2"), w);
        op(b, "Add", tmp(b, x, "res2"), 2, y, t);
    }
    layernorm(b, t, x, "post.w", "post.b", c->layer_norm_eps);
    /* Idefics3Connector.pixel_shuffle: [T, G, G/s, D s] -> (0 2 1 3) -> [T, G/s, G/s, D s^2]
     * -> (0 2 1 3) -> rows [T * N / s^2, D s^2] */
    op(b, "Reshape", tmp(b, u, "shuf1"), 2, t, "c.shuf1");
    transpose(b, t, u, 4, (const int64_t[]){0, 2, 1, 3});
    op(b, "Reshape", tmp(b, u, "shuf2"), 2, t, "c.shuf2");
    transpose(b, t, u, 4, (const int64_t[]){0, 2, 1, 3});
    op(b, "Reshape", tmp(b, u, "rows"), 2, t, "c.rows");
    op(b, "MatMul", "image_features", 2, qdq(b, pq, u, -1, "v_proj"), weight(b, wd, "proj", 1));
}

static cJSON *io_obj(const char *name, const char *role, int ndim, const int64_t *shape) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    for (int i = 0; i < ndim; i++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i]));
    cJSON_AddStringToObject(o, "dtype", "float32");
    cJSON_AddStringToObject(o, "role", role);
    return o;
}

/* ---- calibration and encodings of the QDQ graph -------------------------------------------- */

#define VISION_CALIB_IMAGES 16 /* calibration images at most (the first items with one) */

/* the tower's transform hook, read-only: min / max of every point */
static void vcalib_fn(void *user, int layer, const char *group, float *x, int m, int k) {
    vq *q = user;
    int idx = evlm__qdqv_index(q->L, layer, group);
    if (idx < 0) return;
    evlm_qdq_point *p = &q->pts[idx];
    for (size_t i = 0; i < (size_t)m * (size_t)k; i++) {
        p->min = x[i] < p->min ? x[i] : p->min;
        p->max = x[i] > p->max ? x[i] : p->max;
    }
    if (idx == q->L * QDQV_N_GROUPS) q->n_tiles += m / q->n_patches;
}

/* The float tower over the images of the .jsonl dataset at path (up to VISION_CALIB_IMAGES
 * items with an "image"; each encoded as its prompt encodes it, tiles and all), watched by
 * vcalib_fn; then every point encoded (qdq.h). */
static evlm_status vision_calibrate(const evlm_model *model, const char *path, vq *q) {
    size_t pl = strlen(path);
    if (pl < 6 || strcmp(path + pl - 6, ".jsonl"))
        return evlm__fail(EVLM_ERR_ARG,
                          "calib %s: the quantized vision graph's activation encodings come from "
                          "calibration images: give a .jsonl dataset whose items have an "
                          "\"image\" (or --tiles 0: the text graphs alone)",
                          path);
    char *data;
    size_t len;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &data, &len));
    for (int i = 0; i < q->n_pts; i++) {
        q->pts[i].min = INFINITY;
        q->pts[i].max = -INFINITY;
    }
    const char *slash = strrchr(path, '/');
    int base_len = slash ? (int)(slash - path) : 1;
    const char *base = slash ? path : ".";
    evlm_model *m = (evlm_model *)(uintptr_t)model; /* encoding an image only reads the model */
    evlm_vision_hook hook = {NULL, vcalib_fn, q};
    int line_no = 0;
    char *save = NULL;
    evlm_status st = EVLM_OK;
    for (char *line = strtok_r(data, "\n", &save);
         line && st == EVLM_OK && q->n_images < VISION_CALIB_IMAGES;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        cJSON *item = cJSON_Parse(line);
        const cJSON *img = cJSON_GetObjectItem(item, "image"),
                    *qs = cJSON_GetObjectItem(item, "question");
        char *chat = NULL, img_path[4096];
        evlm_prompt *pr = NULL;
        if (!item) st = evlm__fail(EVLM_ERR_FORMAT, "%s:%d: not a JSON object", path, line_no);
        if (st == EVLM_OK && cJSON_IsString(img)) {
            if (img->valuestring[0] == '/')
                snprintf(img_path, sizeof img_path, "%s", img->valuestring);
            else
                snprintf(img_path, sizeof img_path, "%.*s/%s", base_len, base, img->valuestring);
            const char *text = cJSON_IsString(qs) ? qs->valuestring : "";
            st = evlm_chat_prompt(model, text, 1, &chat);
            if (st == EVLM_ERR_UNSUPPORTED) { /* no chat template: the image marker, the text */
                size_t n = strlen(text) + 16;
                st = (chat = malloc(n)) ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
                if (chat) snprintf(chat, n, "<image>%s", text);
            }
            evlm_image_input in = {.path = img_path};
            if (st == EVLM_OK) st = evlm__prompt_new_hooked(m, chat, false, &in, 1, &hook, &pr);
            if (st == EVLM_OK) q->n_images++;
            if (st != EVLM_OK) evlm__fail_prefix(st, "%s:%d", path, line_no);
        }
        evlm_prompt_free(pr);
        free(chat);
        cJSON_Delete(item);
    }
    free(data);
    if (st == EVLM_OK && !q->n_images)
        st = evlm__fail(EVLM_ERR_ARG,
                        "calib %s: no item has an \"image\": the quantized vision graph's "
                        "activation encodings need calibration images (or --tiles 0: the text "
                        "graphs alone)",
                        path);
    for (int i = 0; st == EVLM_OK && i < q->n_pts; i++) {
        if (!(q->pts[i].min <= q->pts[i].max)) q->pts[i].min = q->pts[i].max = 0;
        evlm__qdq_encode(&q->pts[i]);
    }
    return st;
}

/* vision.encodings.json, AIMET's format as the decoder's encodings.json (onnx_decoder.c): the
 * vision graph converts on its own, with its own overrides file. */
static char *vision_encodings(const vq *q, FILE *wf) {
    cJSON *j = cJSON_CreateObject();
    cJSON *acts = cJSON_AddObjectToObject(j, "activation_encodings");
    for (int i = 0; i < q->n_pts; i++) {
        const evlm_qdq_point *p = &q->pts[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(acts, q->tensor[i]), e);
        cJSON_AddNumberToObject(e, "bitwidth", p->bits);
        cJSON_AddStringToObject(e, "dtype", "int");
        cJSON_AddStringToObject(e, "is_symmetric", "False");
        cJSON_AddNumberToObject(e, "max", (double)p->scale * ((1 << p->bits) - 1 - p->zp));
        cJSON_AddNumberToObject(e, "min", -(double)p->scale * p->zp);
        cJSON_AddNumberToObject(e, "offset", -p->zp);
        cJSON_AddNumberToObject(e, "scale", p->scale);
    }
    cJSON *pars = cJSON_AddObjectToObject(j, "param_encodings");
    for (int i = 0; i < q->n_w; i++) {
        const vqw *w = &q->w[i];
        float *sc = malloc(sizeof(float) * (size_t)w->out);
        if (!sc || fseeko(wf, (off_t)w->s_off, SEEK_SET) ||
            fread(sc, sizeof(float), (size_t)w->out, wf) != (size_t)w->out) {
            free(sc);
            cJSON_Delete(j);
            return NULL;
        }
        cJSON *a = cJSON_AddArrayToObject(pars, w->name);
        for (int64_t o = 0; o < w->out; o++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(a, e);
            cJSON_AddNumberToObject(e, "bitwidth", 8);
            cJSON_AddStringToObject(e, "dtype", "int");
            cJSON_AddStringToObject(e, "is_symmetric", "True");
            cJSON_AddNumberToObject(e, "max", (double)sc[o] * 127);
            cJSON_AddNumberToObject(e, "min", -(double)sc[o] * 128);
            cJSON_AddNumberToObject(e, "offset", -128);
            cJSON_AddNumberToObject(e, "scale", sc[o]);
        }
        free(sc);
    }
    cJSON_AddArrayToObject(j, "excluded_layers");
    cJSON *qa = cJSON_AddObjectToObject(j, "quantizer_args");
    cJSON_AddNumberToObject(qa, "activation_bitwidth", q->bits);
    cJSON_AddNumberToObject(qa, "param_bitwidth", 8);
    cJSON_AddStringToObject(qa, "dtype", "int");
    cJSON_AddBoolToObject(qa, "per_channel_quantization", true);
    cJSON_AddStringToObject(qa, "quant_scheme", "post_training_tf");
    cJSON_AddStringToObject(j, "version", "0.6.1");
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

/* The vision object's "quantization": what --sim reads (sim_vision.c). */
static void vision_quant_json(cJSON *v, const vq *q, const char *calib) {
    cJSON *o = cJSON_AddObjectToObject(v, "quantization");
    cJSON_AddStringToObject(o, "scheme",
                            "QDQ: weights int8 symmetric per output channel (rounded), "
                            "activations asymmetric unsigned per tensor");
    cJSON_AddNumberToObject(o, "activation_bits", q->bits);
    cJSON_AddStringToObject(o, "rounding", "half to even, saturating (ONNX QuantizeLinear)");
    cJSON_AddStringToObject(o, "statistic",
                            "min / max over the calibration images' tiles, widened to include 0");
    cJSON_AddStringToObject(o, "calibration", calib);
    cJSON_AddNumberToObject(o, "calibration_images", q->n_images);
    cJSON_AddNumberToObject(o, "calibration_tiles", q->n_tiles);
    cJSON_AddStringToObject(o, "encodings", "vision.encodings.json");
    cJSON *a = cJSON_AddArrayToObject(o, "activations");
    for (int i = 0; i < q->n_pts; i++) {
        const evlm_qdq_point *p = &q->pts[i];
        int layer;
        const char *group = evlm__qdqv_group(q->L, i, &layer);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(a, e);
        cJSON_AddNumberToObject(e, "index", i);
        cJSON_AddStringToObject(e, "tensor", q->tensor[i]);
        cJSON_AddNumberToObject(e, "layer", layer);
        cJSON_AddStringToObject(e, "group", group);
        cJSON_AddStringToObject(e, "dtype", p->bits == 16 ? "uint16" : "uint8");
        cJSON_AddNumberToObject(e, "bits", p->bits);
        cJSON_AddNumberToObject(e, "scale", p->scale);
        cJSON_AddNumberToObject(e, "zero_point", p->zp);
        cJSON_AddNumberToObject(e, "min", p->min);
        cJSON_AddNumberToObject(e, "max", p->max);
    }
    cJSON *w = cJSON_AddArrayToObject(o, "weights");
    for (int i = 0; i < q->n_w; i++) {
        const vqw *x = &q->w[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(w, e);
        cJSON_AddStringToObject(e, "name", x->name);
        cJSON_AddNumberToObject(e, "layer", x->layer);
        cJSON_AddStringToObject(e, "dtype", "int8");
        cJSON_AddNumberToObject(e, "out", (double)x->out);
        cJSON_AddNumberToObject(e, "in", (double)x->in);
        cJSON_AddStringToObject(e, "layout", x->conv ? "[out, in]" : "[in, out]");
        cJSON_AddNumberToObject(e, "offset", (double)x->q_off);
        cJSON_AddNumberToObject(e, "scale_offset", (double)x->s_off);
        cJSON_AddNumberToObject(e, "axis", x->conv ? 0 : 1);
    }
}

evlm_status evlm__onnx_vision_write(const evlm_model *model, const char *dir, int n_tiles,
                                    int opset, int act_bits, const char *calib, cJSON *root,
                                    cJSON *graphs) {
    const evlm_siglip *m = NULL;
    const evlm_idefics3_proc *proc = NULL;
    if (!evlm__model_idefics3(model, &m, &proc, NULL) || n_tiles < 1)
        return evlm__fail(EVLM_ERR_ARG, "the vision graph: no Idefics3 tower or no tiles");
    if (act_bits && (act_bits != 8 && act_bits != 16))
        return evlm__fail(EVLM_ERR_ARG, "the vision graph: %d-bit activations", act_bits);
    const evlm_idefics3_config *c = &m->cfg;
    size_t dl = strlen(dir) + 32;
    char *path = malloc(dl);
    if (!path) return evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting the vision tower");
    vb b = {0};
    vq q = {0};
    char *enc = NULL;
    evlm_status st = EVLM_OK;
    if (act_bits) {
        q.bits = act_bits;
        q.L = c->n_layers;
        q.n_patches = c->num_patches;
        q.n_pts = evlm__qdqv_count(c->n_layers);
        q.pts = calloc((size_t)q.n_pts, sizeof *q.pts);
        q.tensor = calloc((size_t)q.n_pts, sizeof *q.tensor);
        if (!q.pts || !q.tensor)
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting the vision tower");
        for (int i = 0; i < q.n_pts && st == EVLM_OK; i++) q.pts[i].bits = act_bits;
        if (st == EVLM_OK && !calib)
            st = evlm__fail(EVLM_ERR_ARG, "the quantized vision graph needs calibration images");
        if (st == EVLM_OK) st = vision_calibrate(model, calib, &q);
        b.q = &q;
    }
    if (st == EVLM_OK) st = evlm_onnx_new("vision", opset, &b.g);
    snprintf(path, dl, "%s/%s", dir, EVLM_ONNX_VISION_WEIGHTS);
    b.path = path;
    if (st == EVLM_OK && !(b.f = fopen(path, "wb")))
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (st == EVLM_OK) st = write_weights(&b, m);
    if (b.f) {
        if (st == EVLM_OK && (fflush(b.f) != 0 || fsync(fileno(b.f)) != 0))
            st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        if (fclose(b.f) != 0 && st == EVLM_OK)
            st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    if (st == EVLM_OK) {
        build_graph(&b, m, n_tiles);
        snprintf(path, dl, "%s/%s", dir, EVLM_ONNX_VISION_FILE);
        st = evlm_onnx_save(b.g, path);
    }
    if (st == EVLM_OK && act_bits) { /* the scales read back from the file written */
        snprintf(path, dl, "%s/%s", dir, EVLM_ONNX_VISION_WEIGHTS);
        FILE *wf = fopen(path, "rb");
        enc = wf ? vision_encodings(&q, wf) : NULL;
        if (wf) fclose(wf);
        snprintf(path, dl, "%s/vision.encodings.json", dir);
        st = enc ? evlm_write_file_atomic(path, enc, strlen(enc))
                 : evlm__fail(EVLM_ERR_IO, "%s: cannot write the encodings", path);
    }
    evlm_onnx_free(b.g);
    free(path);
    free(enc);
    if (st != EVLM_OK) {
        free(q.pts);
        free(q.tensor);
        free(q.w);
        return st;
    }

    const int64_t T = n_tiles, S = c->image_size, TOK = c->tokens_per_tile;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(graphs, o);
    cJSON_AddStringToObject(o, "name", "vision");
    cJSON_AddStringToObject(o, "file", EVLM_ONNX_VISION_FILE);
    cJSON_AddNumberToObject(o, "n_tiles", n_tiles);
    cJSON *in = cJSON_AddArrayToObject(o, "inputs");
    cJSON_AddItemToArray(
        in, io_obj("pixel_values", "pixel_values", 4, (const int64_t[]){T, c->num_channels, S, S}));
    cJSON *out = cJSON_AddArrayToObject(o, "outputs");
    cJSON_AddItemToArray(out, io_obj("image_features", "image_features", 2,
                                     (const int64_t[]){T * TOK, c->text_hidden_size}));
    cJSON *v = cJSON_AddObjectToObject(root, "vision");
    cJSON_AddStringToObject(v, "tower", "idefics3-siglip");
    cJSON_AddNumberToObject(v, "n_tiles", n_tiles);
    cJSON_AddNumberToObject(v, "image_size", (double)S);
    cJSON_AddNumberToObject(v, "tokens_per_tile", (double)TOK);
    cJSON_AddNumberToObject(v, "image_token_id", c->image_token_id);
    cJSON_AddBoolToObject(v, "image_splitting", proc->do_image_splitting);
    cJSON_AddStringToObject(v, "weights", EVLM_ONNX_VISION_WEIGHTS);
    cJSON_AddStringToObject(v, "pixel_values",
                            "[n_tiles, 3, S, S] float32 as the image processor gives them "
                            "(evlm prompt --pixels-out): the tiles row-major, then the global "
                            "image; full tiles only, so no pixel attention mask");
    cJSON_AddStringToObject(v, "tiles_note",
                            "tiles are independent: an image of more tiles runs in several "
                            "passes, a short last pass is padded and its extra rows dropped");
    cJSON_AddStringToObject(v, "image_features",
                            "rows replace the prompt's image_token_id tokens in order; the "
                            "prefill graph takes them as image_features with image_mask = 1 "
                            "at those positions");
    if (act_bits) vision_quant_json(v, &q, calib);
    free(q.pts);
    free(q.tensor);
    free(q.w);
    return EVLM_OK;
}

/* ---- Qwen2-VL: the tower + PatchMerger for one grid --------------------------------------------
 * Graph of one still image of gh x gw patches (N = gh * gw rows in the processor's merge-block
 * order; D = embed_dim, NH heads of HD):
 *   pixel_values [N, C*T*p*p] -> MatMul (the Conv3d weight as [C*T*p*p, D]: kernel = stride, so
 *   one row per patch) -> per block: LayerNormalization -> qkv MatMul + bias -> [N, 3, NH, HD]
 *   -> (1 2 0 3) -> q / k / v by Gather on axis 0 -> 2-D rotary on q and k (rotate-half with the
 *   cos / sin tables of the grid, [N, HD], stored: patch (row, col) takes row x inv_freq in the
 *   first HD/4 frequencies and col x inv_freq in the rest, as qwen2vl_vit.c) -> scores MatMul x
 *   HD^-0.5 -> Softmax over all N patches (one frame: no window, no block mask) -> MatMul v ->
 *   (0 2 1 3) -> [N, D] -> proj -> residual; LayerNormalization -> fc1 -> QuickGELU as
 *   x Sigmoid(1.702 x) (or erf GELU) -> fc2 -> residual; merger: ln_q -> [N / m^2, D m^2]
 *   (m^2 consecutive rows are one merge block) -> mlp.0 -> 0.5 x (1 + Erf(x / sqrt 2)) -> mlp.2
 *   -> image_features [N / m^2, hidden]. */

static evlm_status q2_weights(vb *b, const evlm_qwen2vl_vit *m, int gh, int gw) {
    const evlm_qwen2vl_vision_config *c = &m->cfg;
    const int64_t D = c->embed_dim, F = c->mlp_dim, HD = c->head_dim, N = (int64_t)gh * gw;
    const int HD2 = (int)HD / 2, q = HD2 / 2, ms = c->spatial_merge_size;
    char nm[64];
    EVLM_TRY(vb_matrix_t(b, "patch", &m->patch_w));
    float *cs = malloc(sizeof(float) * (size_t)(N * HD)),
          *sn = malloc(sizeof(float) * (size_t)(N * HD));
    evlm_status st =
        cs && sn ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting the tower");
    for (int64_t r = 0; r < N && st == EVLM_OK; r++) { /* qwen2vl_vit.c's ROW_ROPE_TABLE */
        const int i = (int)r, blk = i / (ms * ms), in = i % (ms * ms), bw_n = gw / ms;
        const int row = (blk / bw_n) * ms + in / ms, col = (blk % bw_n) * ms + in % ms;
        for (int k = 0; k < HD2; k++) {
            float f = (float)(k < q ? row : col) * m->inv_freq[k % q];
            cs[r * HD + k] = cs[r * HD + k + HD2] = (float)cos((double)f);
            sn[r * HD + k] = sn[r * HD + k + HD2] = (float)sin((double)f);
        }
    }
    if (st == EVLM_OK) st = vb_tensor(b, "rope.cos", cs, 2, (const int64_t[]){N, HD});
    if (st == EVLM_OK) st = vb_tensor(b, "rope.sin", sn, 2, (const int64_t[]){N, HD});
    free(cs);
    free(sn);
    for (int l = 0; l < c->depth && st == EVLM_OK; l++) {
        const evlm_qwen2vl_vit_layer *ly = &m->layers[l];
        const struct {
            const char *name;
            const float *v;
            int64_t n;
        } vecs[] = {{"ln1.w", ly->ln1_w, D}, {"ln1.b", ly->ln1_b, D},     {"ln2.w", ly->ln2_w, D},
                    {"ln2.b", ly->ln2_b, D}, {"qkv.b", ly->b_qkv, 3 * D}, {"proj.b", ly->b_proj, D},
                    {"fc1.b", ly->b_fc1, F}, {"fc2.b", ly->b_fc2, D}};
        const struct {
            const char *name;
            const evlm_tensor *t;
        } mats[] = {{"qkv", ly->qkv}, {"proj", ly->proj}, {"fc1", ly->fc1}, {"fc2", ly->fc2}};
        for (size_t i = 0; i < sizeof vecs / sizeof *vecs && st == EVLM_OK; i++) {
            snprintf(nm, sizeof nm, "l%d.%s", l, vecs[i].name);
            st = vb_vec(b, nm, vecs[i].v, vecs[i].n);
        }
        for (size_t i = 0; i < sizeof mats / sizeof *mats && st == EVLM_OK; i++) {
            snprintf(nm, sizeof nm, "l%d.%s", l, mats[i].name);
            st = vb_matrix_t(b, nm, mats[i].t);
        }
    }
    if (st == EVLM_OK) st = vb_vec(b, "lnq.w", m->ln_q_w, D);
    if (st == EVLM_OK) st = vb_vec(b, "lnq.b", m->ln_q_b, D);
    if (st == EVLM_OK) st = vb_matrix_t(b, "mlp0", m->mlp0);
    if (st == EVLM_OK) st = vb_vec(b, "mlp0.b", m->b_mlp0, c->merged_dim);
    if (st == EVLM_OK) st = vb_matrix_t(b, "mlp2", m->mlp2);
    if (st == EVLM_OK) st = vb_vec(b, "mlp2.b", m->b_mlp2, c->hidden_size);
    return st;
}

/* x * cos + rotate_half(x) * sin over the last axis (HD) */
static void q2_rope(vb *b, char *y, const char *x) {
    char x1[64], x2[64], n2[64], rot[64], a[64], c[64];
    op(b, "Slice", tmp(b, x1, "x1"), 4, x, "c.zero", "c.half", "c.axis3");
    op(b, "Slice", tmp(b, x2, "x2"), 4, x, "c.half", "c.hd", "c.axis3");
    op(b, "Neg", tmp(b, n2, "negx2"), 1, x2);
    int nd = evlm_onnx_node(b->g, "Concat", 2, (const char *[]){n2, x1}, 1,
                            (const char *[]){tmp(b, rot, "rot")});
    evlm_onnx_attr_int(b->g, nd, "axis", -1);
    op(b, "Mul", tmp(b, a, "xcos"), 2, x, "rope.cos");
    op(b, "Mul", tmp(b, c, "rotsin"), 2, rot, "rope.sin");
    op(b, "Add", tmp(b, y, "rope"), 2, a, c);
}

/* 0.5 x (1 + Erf(x / sqrt 2)) */
static void q2_gelu_erf(vb *b, char *y, const char *x) {
    char t[64], u[64], v[64];
    op(b, "Mul", tmp(b, t, "xs"), 2, x, "c.isqrt2");
    op(b, "Erf", tmp(b, u, "erf"), 1, t);
    op(b, "Add", tmp(b, v, "onep"), 2, u, "c.one");
    op(b, "Mul", tmp(b, t, "xh"), 2, x, "c.half_f");
    op(b, "Mul", tmp(b, y, "gelu"), 2, t, v);
}

static void q2_graph(vb *b, const evlm_qwen2vl_vit *m, int gh, int gw) {
    const evlm_qwen2vl_vision_config *c = &m->cfg;
    const int64_t D = c->embed_dim, NH = c->n_heads, HD = c->head_dim, N = (int64_t)gh * gw;
    const int64_t MM = (int64_t)c->spatial_merge_size * c->spatial_merge_size;
    evlm_onnx *g = b->g;
    evlm_onnx_input(g, "pixel_values", EVLM_ONNX_F32, 2, (const int64_t[]){N, c->patch_dim});
    evlm_onnx_output(g, "image_features", EVLM_ONNX_F32, 2,
                     (const int64_t[]){N / MM, c->hidden_size});
    shape_const(b, "c.qkv", 4, (const int64_t[]){N, 3, NH, HD});
    shape_const(b, "c.nd", 2, (const int64_t[]){N, D});
    shape_const(b, "c.merge", 2, (const int64_t[]){N / MM, D * MM});
    shape_const(b, "c.i0", 1, (const int64_t[]){0});
    shape_const(b, "c.i1", 1, (const int64_t[]){1});
    shape_const(b, "c.i2", 1, (const int64_t[]){2});
    shape_const(b, "c.zero", 1, (const int64_t[]){0});
    shape_const(b, "c.half", 1, (const int64_t[]){HD / 2});
    shape_const(b, "c.hd", 1, (const int64_t[]){HD});
    shape_const(b, "c.axis3", 1, (const int64_t[]){3});
    f32_const(b, "c.scale", (float)(1.0 / sqrt((double)HD)));
    f32_const(b, "c.one", 1.0f);
    f32_const(b, "c.half_f", 0.5f);
    f32_const(b, "c.isqrt2", 0.70710678118654752f);
    f32_const(b, "c.qg", 1.702f);
    char x[64], t[64], u[64];
    op(b, "MatMul", tmp(b, x, "patches"), 2, "pixel_values", "patch");
    for (int l = 0; l < c->depth; l++) {
        char w[64], w2[64], h[64], qkv[64], qh[3][64], a[64], y[64];
        snprintf(w, sizeof w, "l%d.ln1.w", l);
        snprintf(w2, sizeof w2, "l%d.ln1.b", l);
        layernorm(b, h, x, w, w2, c->layer_norm_eps);
        snprintf(w, sizeof w, "l%d.qkv", l);
        linear(b, t, h, w);
        op(b, "Reshape", tmp(b, u, "qkv5"), 2, t, "c.qkv");
        transpose(b, qkv, u, 4, (const int64_t[]){1, 2, 0, 3}); /* [3, NH, N, HD] */
        static const char *const idx[3] = {"c.i0", "c.i1", "c.i2"};
        for (int i = 0; i < 3; i++) { /* [1, NH, N, HD] */
            int nd = op(b, "Gather", tmp(b, t, "part"), 2, qkv, idx[i]);
            evlm_onnx_attr_int(g, nd, "axis", 0);
            if (i < 2)
                q2_rope(b, qh[i], t);
            else
                snprintf(qh[i], sizeof qh[i], "%s", t);
        }
        transpose(b, u, qh[1], 4, (const int64_t[]){0, 1, 3, 2});
        op(b, "MatMul", tmp(b, t, "qk"), 2, qh[0], u);
        op(b, "Mul", tmp(b, u, "scaled"), 2, t, "c.scale");
        int nd = op(b, "Softmax", tmp(b, a, "probs"), 1, u);
        evlm_onnx_attr_int(g, nd, "axis", -1);
        op(b, "MatMul", tmp(b, t, "att"), 2, a, qh[2]);
        transpose(b, u, t, 4, (const int64_t[]){0, 2, 1, 3});
        op(b, "Reshape", tmp(b, t, "attn"), 2, u, "c.nd");
        snprintf(w, sizeof w, "l%d.proj", l);
        linear(b, u, t, w);
        op(b, "Add", tmp(b, y, "res1"), 2, x, u);
        snprintf(w, sizeof w, "l%d.ln2.w", l);
        snprintf(w2, sizeof w2, "l%d.ln2.b", l);
        layernorm(b, h, y, w, w2, c->layer_norm_eps);
        snprintf(w, sizeof w, "l%d.fc1", l);
        linear(b, t, h, w);
        if (c->act == EVLM_QWEN2VL_GELU)
            q2_gelu_erf(b, h, t);
        else { /* QuickGELU (q2_plan refuses the tanh form) */
            op(b, "Mul", tmp(b, u, "qx"), 2, t, "c.qg");
            op(b, "Sigmoid", tmp(b, a, "sig"), 1, u);
            op(b, "Mul", tmp(b, h, "qgelu"), 2, t, a);
        }
        snprintf(w, sizeof w, "l%d.fc2", l);
        linear(b, t, h, w);
        op(b, "Add", tmp(b, x, "res2"), 2, y, t);
    }
    layernorm(b, t, x, "lnq.w", "lnq.b", c->layer_norm_eps);
    op(b, "Reshape", tmp(b, u, "merged"), 2, t, "c.merge");
    linear(b, t, u, "mlp0");
    q2_gelu_erf(b, u, t);
    linear(b, t, u, "mlp2");
    op(b, "Identity", "image_features", 1, t);
}

evlm_status evlm__onnx_qwen2vl_write(const evlm_model *model, const char *dir, int gh, int gw,
                                     int opset, cJSON *root, cJSON *graphs) {
    const evlm_qwen2vl_vit *m = NULL;
    int32_t image_token = -1;
    if (!evlm__model_qwen2vl(model, &m, NULL, &image_token))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "grid = %dx%d: only a Qwen2-VL model has a patch-grid vision graph", gh,
                          gw);
    const evlm_qwen2vl_vision_config *c = &m->cfg;
    const int ms = c->spatial_merge_size;
    if (gh < ms || gw < ms || gh % ms || gw % ms || (int64_t)gh * gw > 16384)
        return evlm__fail(EVLM_ERR_ARG,
                          "grid = %dx%d: patch rows and columns must be multiples of the merge "
                          "size %d, at most 16384 patches",
                          gh, gw, ms);
    if (c->act == EVLM_QWEN2VL_GELU_TANH)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "grid: the tower's tanh GELU is not in the Qwen2-VL vision graph");
    size_t dl = strlen(dir) + 32;
    char *path = malloc(dl);
    if (!path) return evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting the vision tower");
    vb b = {0};
    evlm_status st = evlm_onnx_new("vision", opset, &b.g);
    snprintf(path, dl, "%s/%s", dir, EVLM_ONNX_VISION_WEIGHTS);
    b.path = path;
    if (st == EVLM_OK && !(b.f = fopen(path, "wb")))
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (st == EVLM_OK) st = q2_weights(&b, m, gh, gw);
    if (b.f) {
        if (st == EVLM_OK && (fflush(b.f) != 0 || fsync(fileno(b.f)) != 0))
            st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        if (fclose(b.f) != 0 && st == EVLM_OK)
            st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    if (st == EVLM_OK) {
        q2_graph(&b, m, gh, gw);
        snprintf(path, dl, "%s/%s", dir, EVLM_ONNX_VISION_FILE);
        st = evlm_onnx_save(b.g, path);
    }
    evlm_onnx_free(b.g);
    free(path);
    EVLM_TRY(st);

    const int64_t N = (int64_t)gh * gw, TOK = N / (ms * ms);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(graphs, o);
    cJSON_AddStringToObject(o, "name", "vision");
    cJSON_AddStringToObject(o, "file", EVLM_ONNX_VISION_FILE);
    cJSON_AddNumberToObject(o, "n_tiles", 1);
    cJSON *in = cJSON_AddArrayToObject(o, "inputs");
    cJSON_AddItemToArray(
        in, io_obj("pixel_values", "pixel_values", 2, (const int64_t[]){N, c->patch_dim}));
    cJSON *out = cJSON_AddArrayToObject(o, "outputs");
    cJSON_AddItemToArray(
        out, io_obj("image_features", "image_features", 2, (const int64_t[]){TOK, c->hidden_size}));
    cJSON *v = cJSON_AddObjectToObject(root, "vision");
    cJSON_AddStringToObject(v, "tower", "qwen2vl");
    cJSON *gr = cJSON_AddArrayToObject(v, "grid");
    cJSON_AddItemToArray(gr, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(gr, cJSON_CreateNumber(gh));
    cJSON_AddItemToArray(gr, cJSON_CreateNumber(gw));
    cJSON_AddNumberToObject(v, "n_tiles", 1);
    cJSON_AddNumberToObject(v, "patch_dim", c->patch_dim);
    cJSON_AddNumberToObject(v, "tokens_per_tile", (double)TOK);
    cJSON_AddNumberToObject(v, "image_token_id", image_token);
    cJSON_AddStringToObject(v, "weights", EVLM_ONNX_VISION_WEIGHTS);
    cJSON_AddStringToObject(v, "pixel_values",
                            "[grid_h * grid_w, patch_dim] float32: one still image's patch rows "
                            "as the processor gives them (evlm prompt --patches-out), in its "
                            "merge-block order; only an image the processor resizes to this "
                            "grid fits (another grid needs its own export, --grid)");
    cJSON_AddStringToObject(v, "image_features",
                            "rows replace the prompt's image_token_id tokens in order; the "
                            "prefill graph takes them as image_features with image_mask = 1 "
                            "at those positions; the positions are M-RoPE's (evlm prompt "
                            "mrope_positions)");
    return EVLM_OK;
}

#endif
