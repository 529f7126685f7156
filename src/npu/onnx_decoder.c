/*
 * onnx_decoder.c - evlm_export_onnx (include/evlm_npu.h): the text decoder as two static-shape
 * float32 ONNX graphs for ONNX Runtime and its QNN execution provider, AR-N prefill and AR-1
 * decode, sharing one external weight file, described by manifest.json.
 *
 * Graph of n new tokens over a window of C = P + n slots (P past slots):
 *   inputs  input_ids [1, n] int64, position_ids [1, n] int64, attention_mask [1, 1, n, C]
 *           float (additive: 0 seen, EXPORT_MASK_HIDDEN hidden; columns = the P past slots, then
 *           the n new tokens), past_key_l / past_value_l [1, n_kv_heads, P, head_dim] float
 *           (keys after RoPE)
 *   outputs logits [1, n, vocab], present_key_l / present_value_l [1, n_kv_heads, n, head_dim]:
 *           the n new rows only; the runner writes them into its cache.
 * Ops (all in the QNN EP's list): Gather, MatMul, Gemm, Add, Mul, Div, Sqrt, ReduceMean,
 * Sigmoid, Softmax, Concat, Reshape, Transpose, Slice. RMSNorm as x / sqrt(mean(x * x) + eps) * w;
 * RoPE rotate-half from cos / sin tables [C, head_dim] gathered by position_ids; GQA by folding
 * each kv head's query heads into rows ([1, kv, group * n, head_dim]) against a mask repeated
 * group times (4-D tensors only); linear layers as MatMul with weights stored [in, out]; the
 * head as Gemm(transB) over the [vocab, hidden] table, so a tied embedding is stored once.
 *
 * It reads the model through model/model.h alone. Not here (issue 19, next): QDQ precisions,
 * M-RoPE's 3-D positions (a Qwen2-VL text half exports for text-only prompts, where the three
 * positions are equal), the vision encoder (onnx_vision.c; here only the prefill graph's
 * image_features / image_mask inputs and the manifest entries), part splits by target.
 */
#include "evlm_npu.h"

#include "core/file.h"
#include "core/status.h"
#include "io/onnx.h"
#include "model/model.h"
#include "npu/onnx_vision.h"
#include "quant/repack.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_OPSET       17
#define EXPORT_MASK_HIDDEN (-65504.0f) /* the lowest float16: the same mask serves fp16 graphs */
#define EXPORT_ALIGN       64
#define WEIGHTS_FILE       "decoder.weights.bin"
#define EXPORT_MAX_GROUP   64 /* query heads per kv head */

evlm_onnx_params evlm_onnx_default_params(void) {
    evlm_onnx_params p = {.ar = 128, .ctx = 0, .precision = NULL};
    return p;
}

#ifndef EVLM_ONNX

evlm_status evlm_export_onnx(const evlm_model *model, const char *dir,
                             const evlm_onnx_params *params) {
    (void)model;
    (void)dir;
    (void)params;
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "this build has no ONNX export (EVLM_ONNX=OFF)");
}

#else

/* ---- the weight file ------------------------------------------------------------------------ */

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[2];
    uint64_t offset;
} wentry;

typedef struct {
    FILE *f;
    const char *path;
    uint64_t off;
    wentry *e;
    int n, cap;
} wfile;

static evlm_status wf_write(wfile *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
    w->off += n;
    return EVLM_OK;
}

/* Starts tensor `name` at the next aligned offset. */
static evlm_status wf_begin(wfile *w, const char *name, int ndim, int64_t d0, int64_t d1) {
    static const uint8_t zeros[EXPORT_ALIGN];
    EVLM_TRY(wf_write(w, zeros, (size_t)((EXPORT_ALIGN - w->off % EXPORT_ALIGN) % EXPORT_ALIGN)));
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wentry *e = realloc(w->e, sizeof *e * (size_t)cap);
        if (!e) return evlm__fail(EVLM_ERR_NOMEM, "out of memory listing the exported weights");
        w->e = e;
        w->cap = cap;
    }
    wentry *e = &w->e[w->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->offset = w->off;
    return EVLM_OK;
}

static evlm_status wf_floats(wfile *w, const char *name, const float *v, int64_t n) {
    EVLM_TRY(wf_begin(w, name, 1, n, 0));
    return wf_write(w, v, sizeof(float) * (size_t)n);
}

/* A [rows, cols] float table: row r of t as stored (transposed = false: [rows, cols], for Gather
 * and Gemm transB) or t^T ([cols, rows], for MatMul). */
static evlm_status wf_matrix(wfile *w, const char *name, const evlm_tensor *t, bool transposed) {
    const int64_t cols = t->ne[0], rows = t->ne[1];
    float *buf = malloc(sizeof(float) * (size_t)(transposed ? rows * cols : cols));
    float *tr = transposed ? malloc(sizeof(float) * (size_t)(rows * cols)) : NULL;
    evlm_status st = EVLM_OK;
    if (!buf || (transposed && !tr)) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting %s", name);
        goto done;
    }
    if (!transposed) {
        if ((st = wf_begin(w, name, 2, rows, cols)) != EVLM_OK) goto done;
        for (int64_t r = 0; r < rows && st == EVLM_OK; r++) {
            evlm_matrix_row_f32(t, r, buf);
            st = wf_write(w, buf, sizeof(float) * (size_t)cols);
        }
        goto done;
    }
    for (int64_t r = 0; r < rows; r++) evlm_matrix_row_f32(t, r, buf + r * cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) tr[c * rows + r] = buf[r * cols + c];
    if ((st = wf_begin(w, name, 2, cols, rows)) == EVLM_OK)
        st = wf_write(w, tr, sizeof(float) * (size_t)(rows * cols));
done:
    free(buf);
    free(tr);
    return st;
}

static const wentry *wf_find(const wfile *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) return &w->e[i];
    return NULL;
}

static evlm_status write_weights(const evlm_decoder *d, int ctx, wfile *w) {
    const evlm_decoder_config *c = &d->cfg;
    const int H = c->hidden_size, F = c->intermediate_size, HD = c->head_dim, half = HD / 2;
    const int QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    char nm[64];
    EVLM_TRY(wf_matrix(w, "embed_tokens", d->tok_embd, false));
    if (d->lm_head != d->tok_embd) EVLM_TRY(wf_matrix(w, "lm_head", d->lm_head, false));
    /* cos | sin tables [ctx, head_dim], both halves alike (rotate-half), as the decoder's */
    float inv[512];
    evlm_decoder_rope_inv_freq(d, inv);
    float *cs = malloc(sizeof(float) * (size_t)ctx * HD),
          *sn = malloc(sizeof(float) * (size_t)ctx * HD);
    evlm_status st =
        cs && sn ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory for RoPE tables");
    for (int p = 0; p < ctx && st == EVLM_OK; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            cs[(size_t)p * HD + i] = cs[(size_t)p * HD + i + half] = (float)cos((double)a);
            sn[(size_t)p * HD + i] = sn[(size_t)p * HD + i + half] = (float)sin((double)a);
        }
    if (st == EVLM_OK && (st = wf_begin(w, "rope_cos", 2, ctx, HD)) == EVLM_OK)
        st = wf_write(w, cs, sizeof(float) * (size_t)ctx * HD);
    if (st == EVLM_OK && (st = wf_begin(w, "rope_sin", 2, ctx, HD)) == EVLM_OK)
        st = wf_write(w, sn, sizeof(float) * (size_t)ctx * HD);
    free(cs);
    free(sn);
    EVLM_TRY(st);
    for (int l = 0; l < c->n_layers; l++) {
        const evlm_decoder_layer *ly = &d->layers[l];
        const struct {
            const char *name;
            const evlm_tensor *w;
            const float *b;
            int nb;
        } mats[] = {{"wq", ly->wq, ly->bq, QD},
                    {"wk", ly->wk, ly->bk, KD},
                    {"wv", ly->wv, ly->bv, KD},
                    {"wo", ly->wo, ly->bo, H},
                    {"w_gate", ly->w_gate, ly->b_gate, F},
                    {"w_up", ly->w_up, ly->b_up, F},
                    {"w_down", ly->w_down, ly->b_down, H}};
        snprintf(nm, sizeof nm, "l%d.attn_norm", l);
        EVLM_TRY(wf_floats(w, nm, ly->attn_norm, H));
        snprintf(nm, sizeof nm, "l%d.ffn_norm", l);
        EVLM_TRY(wf_floats(w, nm, ly->ffn_norm, H));
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
            snprintf(nm, sizeof nm, "l%d.%s", l, mats[i].name);
            EVLM_TRY(wf_matrix(w, nm, mats[i].w, true));
            if (!mats[i].b) continue;
            snprintf(nm, sizeof nm, "l%d.%s.bias", l, mats[i].name);
            EVLM_TRY(wf_floats(w, nm, mats[i].b, mats[i].nb));
        }
    }
    return wf_floats(w, "norm", d->out_norm, H);
}

/* ---- one graph ------------------------------------------------------------------------------ */

typedef struct {
    evlm_onnx *g;
    const wfile *w;
    const evlm_decoder_config *c;
    int n, past;      /* new tokens, past slots */
    int k;            /* counter for intermediate names */
    const char *mask; /* the mask as the grouped scores want it */
} gb;

/* A fresh intermediate name "t{k}_{what}" into buf (64 bytes). */
static const char *tmp(gb *b, char *buf, const char *what) {
    snprintf(buf, 64, "t%d_%s", b->k++, what);
    return buf;
}

static void op(gb *b, const char *type, const char *out, int n_in, ...) {
    const char *in[4];
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in && i < 4; i++) in[i] = va_arg(ap, const char *);
    va_end(ap);
    evlm_onnx_node(b->g, type, n_in, in, 1, &out);
}

static void const_i64(gb *b, const char *name, int n, const int64_t *v) {
    int64_t shape[1] = {n};
    evlm_onnx_init(b->g, name, EVLM_ONNX_I64, 1, shape, v);
}

static void const_f32(gb *b, const char *name, float v) {
    evlm_onnx_init(b->g, name, EVLM_ONNX_F32, 0, NULL, &v);
}

/* y = x W (+ bias) for the weight "l{l}.{w}" */
static void linear(gb *b, char *y, const char *x, int l, const char *w) {
    char wn[64], bn[64], t[64];
    snprintf(wn, sizeof wn, "l%d.%s", l, w);
    snprintf(bn, sizeof bn, "l%d.%s.bias", l, w);
    if (!wf_find(b->w, bn)) {
        op(b, "MatMul", tmp(b, y, w), 2, x, wn);
        return;
    }
    op(b, "MatMul", tmp(b, t, w), 2, x, wn);
    op(b, "Add", tmp(b, y, w), 2, t, bn);
}

/* y = x / sqrt(mean(x * x) + eps) * w */
static void rmsnorm(gb *b, char *y, const char *x, const char *w) {
    char sq[64], ms[64], ae[64], rt[64], dv[64];
    op(b, "Mul", tmp(b, sq, "sq"), 2, x, x);
    int nd = evlm_onnx_node(b->g, "ReduceMean", 1, (const char *[]){sq}, 1,
                            (const char *[]){tmp(b, ms, "ms")});
    evlm_onnx_attr_ints(b->g, nd, "axes", 1, (const int64_t[]){-1});
    evlm_onnx_attr_int(b->g, nd, "keepdims", 1);
    op(b, "Add", tmp(b, ae, "eps"), 2, ms, "c.eps");
    op(b, "Sqrt", tmp(b, rt, "rms"), 1, ae);
    op(b, "Div", tmp(b, dv, "normed"), 2, x, rt);
    op(b, "Mul", tmp(b, y, "norm"), 2, dv, w);
}

static void transpose(gb *b, char *y, const char *x, const int64_t perm[4]) {
    int nd = evlm_onnx_node(b->g, "Transpose", 1, &x, 1, (const char *[]){tmp(b, y, "tr")});
    evlm_onnx_attr_ints(b->g, nd, "perm", 4, perm);
}

/* x [1, heads, n, HD] -> x * cos + rotate_half(x) * sin into the name out */
static void rope(gb *b, const char *out, const char *x) {
    char x1[64], x2[64], nx2[64], rot[64], a[64], s[64];
    op(b, "Slice", tmp(b, x1, "x1"), 4, x, "c.zero", "c.half", "c.axis3");
    op(b, "Slice", tmp(b, x2, "x2"), 4, x, "c.half", "c.hd", "c.axis3");
    op(b, "Mul", tmp(b, nx2, "negx2"), 2, x2, "c.minus1");
    int nd = evlm_onnx_node(b->g, "Concat", 2, (const char *[]){nx2, x1}, 1,
                            (const char *[]){tmp(b, rot, "rot")});
    evlm_onnx_attr_int(b->g, nd, "axis", 3);
    op(b, "Mul", tmp(b, a, "xcos"), 2, x, "rope.cos");
    op(b, "Mul", tmp(b, s, "rotsin"), 2, rot, "rope.sin");
    op(b, "Add", out, 2, a, s);
}

static void concat(gb *b, const char *out, int axis, int n, const char *const *in) {
    int nd = evlm_onnx_node(b->g, "Concat", n, in, 1, &out);
    evlm_onnx_attr_int(b->g, nd, "axis", axis);
}

static void layer(gb *b, char *x, int l) {
    const int64_t perm_heads[4] = {0, 2, 1, 3}, perm_kt[4] = {0, 1, 3, 2};
    char w[64], xn[64], q[64], k[64], v[64], t[64], qt[64], kt[64], qr[64], pk[64], pv[64];
    char ka[64], va[64], qg[64], ktt[64], sc[64], ss[64], sm[64], pr[64], o[64], o4[64], ot[64],
        o2[64], y[64], x2[64];
    snprintf(w, sizeof w, "l%d.attn_norm", l);
    rmsnorm(b, xn, x, w);
    linear(b, q, xn, l, "wq");
    linear(b, k, xn, l, "wk");
    linear(b, v, xn, l, "wv");
    op(b, "Reshape", tmp(b, t, "q4"), 2, q, "c.shape_q");
    transpose(b, qt, t, perm_heads);
    op(b, "Reshape", tmp(b, t, "k4"), 2, k, "c.shape_kv");
    transpose(b, kt, t, perm_heads);
    snprintf(pk, sizeof pk, "present_key_%d", l);
    snprintf(pv, sizeof pv, "present_value_%d", l);
    rope(b, tmp(b, qr, "q_rope"), qt);
    rope(b, pk, kt);
    op(b, "Reshape", tmp(b, t, "v4"), 2, v, "c.shape_kv");
    int nd = evlm_onnx_node(b->g, "Transpose", 1, (const char *[]){t}, 1, (const char *[]){pv});
    evlm_onnx_attr_ints(b->g, nd, "perm", 4, perm_heads);
    char past_k[64], past_v[64];
    snprintf(past_k, sizeof past_k, "past_key_%d", l);
    snprintf(past_v, sizeof past_v, "past_value_%d", l);
    concat(b, tmp(b, ka, "k_all"), 2, 2, (const char *[]){past_k, pk});
    concat(b, tmp(b, va, "v_all"), 2, 2, (const char *[]){past_v, pv});
    /* the G query heads of a kv head as G * N rows: [1, KV, G * N, HD] */
    op(b, "Reshape", tmp(b, qg, "q_group"), 2, qr, "c.shape_qg");
    transpose(b, ktt, ka, perm_kt);
    op(b, "MatMul", tmp(b, sc, "scores"), 2, qg, ktt);
    op(b, "Mul", tmp(b, ss, "scaled"), 2, sc, "c.scale");
    op(b, "Add", tmp(b, sm, "masked"), 2, ss, b->mask);
    nd = evlm_onnx_node(b->g, "Softmax", 1, (const char *[]){sm}, 1,
                        (const char *[]){tmp(b, pr, "probs")});
    evlm_onnx_attr_int(b->g, nd, "axis", -1);
    op(b, "MatMul", tmp(b, o, "attn"), 2, pr, va);
    op(b, "Reshape", tmp(b, o4, "attn4"), 2, o, "c.shape_heads");
    transpose(b, ot, o4, perm_heads);
    op(b, "Reshape", tmp(b, o2, "attn2"), 2, ot, "c.shape_qd");
    linear(b, y, o2, l, "wo");
    op(b, "Add", tmp(b, x2, "resid"), 2, x, y);

    char fn[64], g[64], u[64], sg[64], si[64], h[64], d[64];
    snprintf(w, sizeof w, "l%d.ffn_norm", l);
    rmsnorm(b, fn, x2, w);
    linear(b, g, fn, l, "w_gate");
    linear(b, u, fn, l, "w_up");
    op(b, "Sigmoid", tmp(b, sg, "sig"), 1, g);
    op(b, "Mul", tmp(b, si, "silu"), 2, g, sg);
    op(b, "Mul", tmp(b, h, "swiglu"), 2, si, u);
    linear(b, d, h, l, "w_down");
    op(b, "Add", tmp(b, x, "resid"), 2, x2, d);
}

typedef struct {
    char name[32];
    const char *dtype, *role;
    int layer, ndim;
    int64_t shape[4];
} io_desc;

/* The graph of n new tokens over ctx slots; its inputs / outputs are listed into io (room for
 * 5 + 4 * layers + 1 entries), *n_io set. image_in: it also takes image_features [1, n, hidden]
 * and image_mask [1, n, 1] (1: the position's embedding is its image_features row, 0: the
 * token's; exact either way). */
static evlm_status build_graph(const evlm_decoder *d, const wfile *w, const char *gname, int n,
                               int ctx, bool image_in, const char *path, io_desc *io, int *n_io) {
    const evlm_decoder_config *c = &d->cfg;
    const int64_t N = n, P = ctx - n, C = ctx, H = c->hidden_size, V = c->vocab_size;
    const int64_t NH = c->n_heads, KV = c->n_kv_heads, HD = c->head_dim, G = NH / KV;
    evlm_onnx *g;
    EVLM_TRY(evlm_onnx_new(gname, EXPORT_OPSET, &g));
    gb b = {g, w, c, n, (int)P, 0, "attention_mask"};
    int m = 0;
#define IO(nm, ly, dt, rl, nd, ...)                                                                \
    do {                                                                                           \
        io_desc e = {"", dt, rl, ly, nd, __VA_ARGS__};                                             \
        if ((ly) < 0)                                                                              \
            snprintf(e.name, sizeof e.name, "%s", nm);                                             \
        else                                                                                       \
            snprintf(e.name, sizeof e.name, "%s_%d", nm, (int)(ly));                               \
        io[m++] = e;                                                                               \
    } while (0)
    IO("input_ids", -1, "int64", "input_ids", 2, {1, N});
    IO("position_ids", -1, "int64", "position_ids", 2, {1, N});
    IO("attention_mask", -1, "float32", "attention_mask", 4, {1, 1, N, C});
    if (image_in) {
        IO("image_features", -1, "float32", "image_features", 3, {1, N, H});
        IO("image_mask", -1, "float32", "image_mask", 3, {1, N, 1});
    }
    for (int l = 0; l < c->n_layers; l++) {
        IO("past_key", l, "float32", "past_key", 4, {1, KV, P, HD});
        IO("past_value", l, "float32", "past_value", 4, {1, KV, P, HD});
    }
    const int n_inputs = m;
    IO("logits", -1, "float32", "logits", 3, {1, N, V});
    for (int l = 0; l < c->n_layers; l++) {
        IO("present_key", l, "float32", "present_key", 4, {1, KV, N, HD});
        IO("present_value", l, "float32", "present_value", 4, {1, KV, N, HD});
    }
#undef IO
    *n_io = m;
    for (int i = 0; i < m; i++)
        (i < n_inputs ? evlm_onnx_input : evlm_onnx_output)(
            g, io[i].name, strcmp(io[i].dtype, "int64") ? EVLM_ONNX_F32 : EVLM_ONNX_I64, io[i].ndim,
            io[i].shape);
    for (int i = 0; i < w->n; i++)
        evlm_onnx_init_external(g, w->e[i].name, EVLM_ONNX_F32, w->e[i].ndim, w->e[i].shape,
                                WEIGHTS_FILE, w->e[i].offset);
    /* constants */
    const_f32(&b, "c.eps", c->rms_norm_eps);
    const_f32(&b, "c.minus1", -1.0f);
    const_f32(&b, "c.scale", 1.0f / sqrtf((float)HD));
    const_i64(&b, "c.zero", 1, (const int64_t[]){0});
    const_i64(&b, "c.half", 1, (const int64_t[]){HD / 2});
    const_i64(&b, "c.hd", 1, (const int64_t[]){HD});
    const_i64(&b, "c.axis3", 1, (const int64_t[]){3});
    const_i64(&b, "c.shape_q", 4, (const int64_t[]){1, N, NH, HD});
    const_i64(&b, "c.shape_kv", 4, (const int64_t[]){1, N, KV, HD});
    const_i64(&b, "c.shape_qg", 4, (const int64_t[]){1, KV, G * N, HD});
    const_i64(&b, "c.shape_heads", 4, (const int64_t[]){1, NH, N, HD});
    const_i64(&b, "c.shape_qd", 3, (const int64_t[]){1, N, NH * HD});
    const_i64(&b, "c.shape_rope", 4, (const int64_t[]){1, 1, N, HD});
    const_i64(&b, "c.shape_rows", 2, (const int64_t[]){N, H});
    const_i64(&b, "c.shape_logits", 3, (const int64_t[]){1, N, V});
    /* per graph: the embedding, the RoPE rows of the positions, the mask repeated per group */
    char x[64], t[64];
    op(&b, "Gather", tmp(&b, x, "embd"), 2, "embed_tokens", "input_ids");
    if (image_in) { /* x * (1 - mask) + image_features * mask */
        char keep[64], kx[64], fx[64];
        const_f32(&b, "c.one", 1.0f);
        op(&b, "Sub", tmp(&b, keep, "keep"), 2, "c.one", "image_mask");
        op(&b, "Mul", tmp(&b, kx, "tok"), 2, x, keep);
        op(&b, "Mul", tmp(&b, fx, "img"), 2, "image_features", "image_mask");
        op(&b, "Add", tmp(&b, x, "embd"), 2, kx, fx);
    }
    op(&b, "Gather", tmp(&b, t, "cos"), 2, "rope_cos", "position_ids");
    op(&b, "Reshape", "rope.cos", 2, t, "c.shape_rope");
    op(&b, "Gather", tmp(&b, t, "sin"), 2, "rope_sin", "position_ids");
    op(&b, "Reshape", "rope.sin", 2, t, "c.shape_rope");
    const char *masks[EXPORT_MAX_GROUP];
    for (int i = 0; i < G; i++) masks[i] = "attention_mask";
    if (G > 1) {
        concat(&b, "mask.group", 2, (int)G, masks);
        b.mask = "mask.group";
    }
    for (int l = 0; l < c->n_layers; l++) layer(&b, x, l);
    char xn[64], rows[64], lg[64];
    rmsnorm(&b, xn, x, "norm");
    op(&b, "Reshape", tmp(&b, rows, "rows"), 2, xn, "c.shape_rows");
    int nd = evlm_onnx_node(
        g, "Gemm", 2,
        (const char *[]){rows, d->lm_head != d->tok_embd ? "lm_head" : "embed_tokens"}, 1,
        (const char *[]){tmp(&b, lg, "head")});
    evlm_onnx_attr_int(g, nd, "transB", 1);
    op(&b, "Reshape", "logits", 2, lg, "c.shape_logits");
    evlm_status st = evlm_onnx_save(g, path);
    evlm_onnx_free(g);
    return st;
}

/* ---- manifest and folder -------------------------------------------------------------------- */

static cJSON *io_json(const io_desc *io, int from, int to) {
    cJSON *a = cJSON_CreateArray();
    for (int i = from; i < to && a; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "name", io[i].name);
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int j = 0; j < io[i].ndim; j++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)io[i].shape[j]));
        cJSON_AddStringToObject(o, "dtype", io[i].dtype);
        cJSON_AddStringToObject(o, "role", io[i].role);
        if (io[i].layer >= 0) cJSON_AddNumberToObject(o, "layer", io[i].layer);
    }
    return a;
}

static void add_graph(cJSON *graphs, const char *name, const char *file, int n, int ctx,
                      const io_desc *io, int n_io) {
    int n_in = 0;
    while (n_in < n_io && strcmp(io[n_in].role, "logits")) n_in++;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(graphs, o);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddNumberToObject(o, "n_tokens", n);
    cJSON_AddNumberToObject(o, "past_len", ctx - n);
    cJSON_AddItemToObject(o, "inputs", io_json(io, 0, n_in));
    cJSON_AddItemToObject(o, "outputs", io_json(io, n_in, n_io));
}

static char *manifest(const evlm_model *model, const evlm_decoder *d, int ar, int ctx,
                      uint64_t wbytes, const char *f_pre, const io_desc *io_pre, int n_pre,
                      const char *f_dec, const io_desc *io_dec, int n_dec, cJSON *vis) {
    const evlm_decoder_config *c = &d->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "evlm-onnx");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "precision", "fp32");
    cJSON_AddNumberToObject(j, "opset", EXPORT_OPSET);
    cJSON_AddNumberToObject(j, "ar", ar);
    cJSON_AddNumberToObject(j, "ctx", ctx);
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "architecture", c->architecture);
    cJSON_AddStringToObject(m, "model_type", c->model_type);
    cJSON_AddNumberToObject(m, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(m, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(m, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(m, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(m, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(m, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(m, "bos_token_id", c->bos_token_id);
    cJSON *eos = cJSON_AddArrayToObject(m, "eos_token_ids"); /* those evlm_generate stops at */
    const int32_t *eos_ids;
    int n_eos = evlm_model_eos_ids(model, &eos_ids);
    for (int i = 0; i < n_eos; i++) cJSON_AddItemToArray(eos, cJSON_CreateNumber(eos_ids[i]));
    bool mrope = c->mrope_section[0] || c->mrope_section[1];
    cJSON_AddStringToObject(m, "rope", mrope ? "mrope-text" : "rope");
    if (mrope)
        cJSON_AddStringToObject(m, "rope_note",
                                "M-RoPE with equal temporal / height / width positions: exact for "
                                "text-only prompts; image positions are not exported yet");
    cJSON *w = cJSON_AddObjectToObject(j, "weights");
    cJSON_AddStringToObject(w, "file", WEIGHTS_FILE);
    cJSON_AddNumberToObject(w, "bytes", (double)wbytes);
    cJSON_AddStringToObject(w, "dtype", "float32");
    cJSON_AddStringToObject(w, "shared_by",
                            "every graph (ONNX external data: location, offset, "
                            "length)");
    cJSON *kv = cJSON_AddObjectToObject(j, "kv");
    cJSON_AddStringToObject(kv, "dtype", "float32");
    cJSON_AddStringToObject(kv, "layout",
                            "[1, n_kv_heads, slots, head_dim] per layer and key / "
                            "value; keys after RoPE");
    cJSON_AddStringToObject(kv, "past",
                            "past_len = ctx - n_tokens slots: the cache's first past_len "
                            "entries (unused ones any value, hidden by the mask)");
    cJSON_AddStringToObject(kv, "present", "new_rows");
    cJSON_AddStringToObject(kv, "present_note",
                            "present_* hold the n_tokens new rows only; the runner writes them "
                            "into its cache after the rows it has");
    cJSON *mk = cJSON_AddObjectToObject(j, "mask");
    cJSON_AddStringToObject(mk, "kind", "additive");
    cJSON_AddNumberToObject(mk, "visible", 0);
    cJSON_AddNumberToObject(mk, "hidden", EXPORT_MASK_HIDDEN);
    cJSON_AddStringToObject(mk, "columns",
                            "past_len past slots, then the n_tokens new tokens (ctx in all)");
    cJSON *graphs = cJSON_AddArrayToObject(j, "graphs");
    add_graph(graphs, "prefill", f_pre, ar, ctx, io_pre, n_pre);
    add_graph(graphs, "decode", f_dec, 1, ctx, io_dec, n_dec);
    if (vis) { /* onnx_vision.c's graph and "vision" object */
        cJSON *vg = cJSON_DetachItemFromObject(vis, "graphs"), *vg0;
        while (vg && (vg0 = cJSON_DetachItemFromArray(vg, 0))) cJSON_AddItemToArray(graphs, vg0);
        cJSON_Delete(vg);
        cJSON *vi = cJSON_DetachItemFromObject(vis, "vision");
        if (vi) cJSON_AddItemToObject(j, "vision", vi);
        cJSON_AddStringToObject(j, "prefill_images",
                                "the prefill graph's inputs image_features [1, ar, hidden] and "
                                "image_mask [1, ar, 1]: where the mask is 1 the position's "
                                "embedding is its image_features row (the vision graph's rows "
                                "in order at the image_token_id positions), elsewhere the "
                                "token's; text-only prompts pass zeros");
    } else if (evlm_model_has_vision(model))
        cJSON_AddStringToObject(j, "vision_note",
                                "no vision graph in this export (--tiles 0, or a tower "
                                "not exported yet: Qwen2-VL's): text-only prompts");
    cJSON *parts = cJSON_AddArrayToObject(j, "parts");
    cJSON *p0 = cJSON_CreateObject();
    cJSON_AddItemToArray(parts, p0);
    cJSON_AddNumberToObject(p0, "first_layer", 0);
    cJSON_AddNumberToObject(p0, "n_layers", c->n_layers);
    cJSON_AddStringToObject(p0, "weights", WEIGHTS_FILE);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

/* dir must be absent or an empty folder */
static evlm_status check_dest(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno == ENOENT ? EVLM_OK : evlm__fail(EVLM_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return evlm__fail(EVLM_ERR_IO, "%s: exists and is not a folder", dir);
    DIR *dp = opendir(dir);
    if (!dp) return evlm__fail(EVLM_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
    closedir(dp);
    return empty ? EVLM_OK
                 : evlm__fail(EVLM_ERR_IO,
                              "%s: exists and is not empty (the export writes a new "
                              "folder)",
                              dir);
}

static evlm_status check_params(const evlm_decoder_config *c, const evlm_onnx_params *p, int *ctx) {
    if (p->precision && strcmp(p->precision, "fp32"))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "precision '%s': only fp32 is exported so far (fp16 and the QDQ "
                          "precisions w8a16 / w4a16 / w8a8 are not yet)",
                          p->precision);
    if (p->ar < 2 || p->ar > 8192)
        return evlm__fail(EVLM_ERR_ARG, "ar = %d: the prefill graph takes 2 to 8192 tokens", p->ar);
    int train = c->max_position_embeddings;
    *ctx = p->ctx ? p->ctx : (train > 0 && train < 1024 ? train : 1024);
    if (*ctx <= p->ar)
        return evlm__fail(EVLM_ERR_ARG, "ctx = %d must be larger than ar = %d (past + new tokens)",
                          *ctx, p->ar);
    if (*ctx > (1 << 20) || (train > 0 && *ctx > train))
        return evlm__fail(EVLM_ERR_ARG, "ctx = %d is past the model's trained context (%d)", *ctx,
                          train);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads ||
        c->n_heads / c->n_kv_heads > EXPORT_MAX_GROUP || c->head_dim > 1024 || c->head_dim % 2)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: %d heads over %d kv heads of %d: not an exportable attention",
                          c->architecture, c->n_heads, c->n_kv_heads, c->head_dim);
    return EVLM_OK;
}

evlm_status evlm_export_onnx(const evlm_model *model, const char *dir,
                             const evlm_onnx_params *params) {
    evlm_onnx_params p = params ? *params : evlm_onnx_default_params();
    const evlm_decoder *d = evlm__model_decoder(model);
    const evlm_decoder_config *c = &d->cfg;
    int ctx = 0, n_tiles = 0;
    EVLM_TRY(check_params(c, &p, &ctx));
    EVLM_TRY(evlm__onnx_vision_plan(model, p.tiles, &n_tiles));
    if (!dir || !*dir) return evlm__fail(EVLM_ERR_ARG, "no output folder");
    EVLM_TRY(check_dest(dir));

    size_t dl = strlen(dir);
    char *tmpdir = malloc(dl + 16), *path = malloc(dl + 64);
    size_t n_io = 5 + 4 * (size_t)c->n_layers + 1;
    io_desc *io_pre = calloc(n_io, sizeof *io_pre), *io_dec = calloc(n_io, sizeof *io_dec);
    wfile w = {0};
    char f_pre[32], *man = NULL;
    const char *files[6] = {WEIGHTS_FILE,          f_pre,
                            "decoder_ar1.onnx",    "manifest.json",
                            EVLM_ONNX_VISION_FILE, EVLM_ONNX_VISION_WEIGHTS};
    cJSON *vis = NULL;
    evlm_status st = EVLM_OK;
    bool made = false;
    if (!tmpdir || !path || !io_pre || !io_dec) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting to %s", dir);
        goto done;
    }
    while (dl > 1 && dir[dl - 1] == '/') dl--; /* "out/" -> "out.tmp.XXXXXX" */
    snprintf(tmpdir, dl + 16, "%.*s.tmp.XXXXXX", (int)dl, dir);
    if (!mkdtemp(tmpdir)) {
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot create a folder beside it: %s", dir,
                        strerror(errno));
        goto done;
    }
    made = true;
    snprintf(f_pre, sizeof f_pre, "decoder_ar%d.onnx", p.ar);

    snprintf(path, dl + 64, "%s/%s", tmpdir, WEIGHTS_FILE);
    w.path = path;
    if (!(w.f = fopen(path, "wb"))) {
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    st = write_weights(d, ctx, &w);
    if (st == EVLM_OK && (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0))
        st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fclose(w.f) != 0 && st == EVLM_OK)
        st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (st != EVLM_OK) goto done;

    int n_pre = 0, n_dec = 0;
    snprintf(path, dl + 64, "%s/%s", tmpdir, f_pre);
    if ((st = build_graph(d, &w, "prefill", p.ar, ctx, n_tiles > 0, path, io_pre, &n_pre)) !=
        EVLM_OK)
        goto done;
    snprintf(path, dl + 64, "%s/%s", tmpdir, "decoder_ar1.onnx");
    if ((st = build_graph(d, &w, "decode", 1, ctx, false, path, io_dec, &n_dec)) != EVLM_OK)
        goto done;
    if (n_tiles > 0) {
        vis = cJSON_CreateObject();
        if (!vis || !cJSON_AddArrayToObject(vis, "graphs")) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory writing manifest.json");
            goto done;
        }
        if ((st = evlm__onnx_vision_write(model, tmpdir, n_tiles, EXPORT_OPSET, vis,
                                          cJSON_GetObjectItem(vis, "graphs"))) != EVLM_OK)
            goto done;
    }
    man = manifest(model, d, p.ar, ctx, w.off, f_pre, io_pre, n_pre, "decoder_ar1.onnx", io_dec,
                   n_dec, vis);
    if (!man) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory writing manifest.json");
        goto done;
    }
    snprintf(path, dl + 64, "%s/manifest.json", tmpdir);
    if ((st = evlm_write_file_atomic(path, man, strlen(man))) != EVLM_OK) goto done;
    if (chmod(tmpdir, 0755) != 0 || rename(tmpdir, dir) != 0)
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot move the export in place: %s", dir,
                        strerror(errno));
    else
        made = false;
done:
    if (made) { /* leave nothing behind */
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(path, dl + 64, "%s/%s", tmpdir, files[i]);
            unlink(path);
        }
        rmdir(tmpdir);
    }
    free(man);
    cJSON_Delete(vis);
    free(w.e);
    free(io_pre);
    free(io_dec);
    free(tmpdir);
    free(path);
    return st;
}

#endif
