/*
 * onnx_decoder.c - evlm_export_onnx (include/evlm_npu.h): the text decoder as two static-shape
 * float32 ONNX graphs for ONNX Runtime and its QNN execution provider, AR-N prefill and AR-1
 * decode, sharing one external weight file, described by manifest.json; past the target's
 * per-graph limit (or as evlm_onnx_params.parts forces) split by layer ranges into parts, each
 * with its own weight file and both graphs, the hidden states handed on as graph I/O.
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
 * RoPE rotate-half from cos / sin tables [C, head_dim] gathered by position_ids (M-RoPE, Qwen2-VL:
 * position_ids [3, 1, n], the three gathered rows masked by section and summed); GQA by folding
 * each kv head's query heads into rows ([1, kv, group * n, head_dim]) against a mask repeated
 * group times (4-D tensors only); linear layers as MatMul with weights stored [in, out]; the
 * head as Gemm(transB) over the [vocab, hidden] table, so a tied embedding is stored once (a split
 * export: once more in the last part).
 *
 * It reads the model through model/model.h alone. Not here: the vision encoder (onnx_vision.c;
 * here only the prefill graph's image_features / image_mask inputs and the manifest entries;
 * Qwen2-VL's tower is not exported, its features are a graph input), the split's arithmetic (the
 * planner's, through onnx_parts.h).
 */
#include "evlm_npu.h"

#include "compress/calib.h"
#include "compress/gptq.h"
#include "core/file.h"
#include "core/status.h"
#include "io/onnx.h"
#include "model/model.h"
#include "npu/onnx_parts.h"
#include "npu/onnx_vision.h"
#include "npu/plan.h"
#include "npu/qdq.h"
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
#define EXPORT_OPSET_QDQ   21 /* uint16 activations, int4 blocked weights (DequantizeLinear-21) */
#define EXPORT_MASK_HIDDEN (-65504.0f) /* the lowest float16: the same mask serves fp16 graphs */
#define EXPORT_ALIGN       64
#define WEIGHTS_FILE       "decoder.weights.bin"
#define EXPORT_MAX_GROUP   64 /* query heads per kv head */

evlm_onnx_params evlm_onnx_default_params(void) {
    evlm_onnx_params p = {.ar = 128, .ctx = 0, .precision = NULL, .calib_tokens = 2048};
    return p;
}

evlm_status evlm__onnx_split(const evlm_decoder_config *c, const evlm_npu_target_info *t,
                             evlm_npu_precision prec, int ar, int ctx, int forced,
                             evlm__onnx_part *parts, int *n) {
    const int L = c->n_layers;
    *n = 0;
    if (forced < 0 || forced > L || forced > EVLM_PLAN_MAX_PARTS)
        return evlm__fail(EVLM_ERR_ARG,
                          "parts = %d: the decoder's %d layers split into 1 to %d parts", forced, L,
                          L < EVLM_PLAN_MAX_PARTS ? L : EVLM_PLAN_MAX_PARTS);
    if (forced > 0 || !t) {
        const int k = forced > 0 ? forced : 1;
        for (int i = 0; i < k; i++)
            parts[i] = (evlm__onnx_part){.first = (int)((int64_t)i * L / k),
                                         .end = (int)((int64_t)(i + 1) * L / k),
                                         .embedding = i == 0,
                                         .head = i == k - 1};
        *n = k;
        return EVLM_OK;
    }
    /* the planner's split of the text decoder at this precision (fp32 runs as fp16 on the HTP) */
    evlm__plan_model m;
    memset(&m, 0, sizeof m);
    m.text = *c;
    m.vision = EVLM_PLAN_VISION_NONE;
    evlm_plan_params pp = evlm_plan_default_params();
    pp.target = t->name;
    pp.precision = prec == EVLM_NPU_DEFAULT ? EVLM_NPU_FP16 : prec;
    pp.ar = ar;
    pp.n_ctx = ctx;
    evlm_plan *plan = malloc(sizeof *plan);
    if (!plan) return evlm__fail(EVLM_ERR_NOMEM, "out of memory planning the part split");
    evlm_status st = evlm__plan_compute(&m, &pp, 1.0, 1.0, plan);
    if (st == EVLM_OK && (plan->n_parts < 1 || plan->n_parts > EVLM_PLAN_MAX_PARTS))
        st = evlm__fail(EVLM_ERR_UNSUPPORTED, "target %s: %d graph parts (at most %d)", t->name,
                        plan->n_parts, EVLM_PLAN_MAX_PARTS);
    for (int i = 0, at = 0; st == EVLM_OK && i < plan->n_parts; i++) {
        const evlm_plan_part *pp_i = &plan->parts[i];
        evlm__onnx_part *o = &parts[i];
        o->first = pp_i->first_layer >= 0 ? pp_i->first_layer : at;
        o->end = pp_i->first_layer >= 0 ? pp_i->last_layer + 1 : o->first;
        o->embedding = pp_i->embedding;
        o->head = pp_i->head;
        at = o->end;
    }
    if (st == EVLM_OK) *n = plan->n_parts;
    free(plan);
    return st;
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
    evlm_onnx_dtype dtype; /* 0: float32 */
} wentry;

/* A quantized (or float16) matrix of the export: its stored tensor "name", "name.scale" and
 * "name.zp" (QDQ), how it is laid out, where its values sit in the weight file. */
typedef struct {
    char name[64];
    int layer;       /* -1: the head */
    int out, in;     /* output / input channels */
    bool transposed; /* stored [in, out] (MatMul) rather than [out, in] (Gemm transB) */
    int bits;        /* 8, 4 or 16 (float16) */
    int part;        /* the part whose weight file holds it */
    uint64_t q_off, s_off;
    double rel_err, rtn_rel_err; /* GPTQ: ||X (W - Q)^T||^2 / ||X W^T||^2 on the calibration
                                    rows, of its weights and of round-to-nearest's; -1: none */
} qweight;

/* What a quantized export needs while it writes and builds (NULL for fp32). */
typedef struct {
    evlm_npu_precision prec;
    int act_bits, kv_bits;
    evlm_qdq_point *pts; /* [n_layers * QDQ_N_GROUPS + 1] */
    char (*tensor)[64];  /* the float tensor each point quantizes, named by the first graph */
    int n_pts;
    qweight *qw;
    int n_qw, cap_qw;
    bool mismatch;                      /* the graphs named a point's tensor differently (a bug) */
    const evlm_npu_target_info *target; /* NULL: generic */
    int n_calib_rows;
    int cur_part;      /* the part being written */
    bool gptq;         /* weights by GPTQ (evlm_onnx_params.method) rather than rounding */
    bool calib_images; /* the calibration items' images were encoded too */
    evlm_calib *calib; /* GPTQ: X^T X of every matmul input group, from the calibration */
    evlm_pool *pool;
} qdq_state;

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
    e->dtype = EVLM_ONNX_F32;
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

/* Matrix t ([out rows] x [in cols]) quantized as q->prec: int8 symmetric per output channel,
 * int4 symmetric per block of QDQ_BLOCK input channels, or float16; values stored [in, out]
 * when transposed (MatMul), [out, in] otherwise (Gemm transB), then float32 scales shaped as
 * DequantizeLinear wants them ([out]; blocks: [in / B, out] or [out, in / B]), then zero
 * points of the value type (zeros). */
static evlm_status wf_qmatrix(wfile *w, qdq_state *q, const char *name, int layer,
                              const char *group, const evlm_tensor *t, bool transposed) {
    const int64_t in = t->ne[0], out = t->ne[1];
    const int bits = q->prec == EVLM_NPU_FP16 ? 16 : q->prec == EVLM_NPU_W4A16 ? 4 : 8;
    const int64_t nb = bits == 4 ? (in + QDQ_BLOCK - 1) / QDQ_BLOCK : 1;
    const int64_t n = in * out, n_sc = out * nb;
    float *wf = malloc(sizeof(float) * (size_t)n), *sc = malloc(sizeof(float) * (size_t)n_sc);
    int8_t *qv = malloc((size_t)n), *codes = malloc((size_t)n);
    uint16_t *hv = bits == 16 ? malloc(sizeof(uint16_t) * (size_t)n) : NULL;
    uint8_t *packed = calloc((size_t)(bits == 4 ? (n + 1) / 2 : n) + 1, 1);
    evlm_status st = EVLM_OK;
    if (!wf || !sc || !qv || !codes || !packed || (bits == 16 && !hv)) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting %s", name);
        goto done;
    }
    if (q->n_qw == q->cap_qw) {
        int cap = q->cap_qw ? 2 * q->cap_qw : 64;
        qweight *e = realloc(q->qw, sizeof *e * (size_t)cap);
        if (!e) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory listing the exported weights");
            goto done;
        }
        q->qw = e;
        q->cap_qw = cap;
    }
    for (int64_t o = 0; o < out; o++) evlm_matrix_row_f32(t, o, wf + o * in);
    /* int8 per output channel / int4 per block of QDQ_BLOCK: rounded, or GPTQ on the same grid */
    evlm_gptq_sym g = {bits == 4 ? 7 : 127, bits == 4 ? QDQ_BLOCK : in, codes, sc};
    double rel = -1, rtn_rel = -1;
    const evlm_calib_stat *cs = q->calib ? evlm_calib_find(q->calib, layer, group) : NULL;
    if (bits != 16 && cs && cs->xtx && cs->n_rows > 0) {
        double err, ref;
        evlm_gptq_result res;
        evlm_gptq_sym_round(&g, wf, out, in);
        st = evlm_gptq_sym_error(&g, wf, out, in, cs->xtx, &err, &ref);
        rtn_rel = ref > 0 ? err / ref : 0;
        if (st == EVLM_OK)
            st = evlm_gptq_quantize_sym(&g, wf, out, in, cs->xtx, cs->n_rows, NULL, q->pool, &res);
        if (st != EVLM_OK) {
            evlm__fail_prefix(st, "%s", name);
            goto done;
        }
        rel = res.rel_err;
    } else if (bits != 16)
        evlm_gptq_sym_round(&g, wf, out, in);
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            int64_t at = transposed ? i * out + o : o * in + i;
            if (hv)
                hv[at] = evlm_f32_to_f16(wf[o * in + i]);
            else
                qv[at] = codes[o * in + i];
        }
    qweight *e = &q->qw[q->n_qw++];
    e->rel_err = rel;
    e->rtn_rel_err = rtn_rel;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->layer = layer;
    e->out = (int)out;
    e->in = (int)in;
    e->transposed = transposed;
    e->bits = bits;
    e->part = q->cur_part;
    int64_t d0 = transposed ? in : out, d1 = transposed ? out : in;
    if ((st = wf_begin(w, name, 2, d0, d1)) != EVLM_OK) goto done;
    e->q_off = w->off;
    if (bits == 16) {
        w->e[w->n - 1].dtype = EVLM_ONNX_F16;
        st = wf_write(w, hv, sizeof(uint16_t) * (size_t)n);
        goto done;
    }
    w->e[w->n - 1].dtype = bits == 4 ? EVLM_ONNX_I4 : EVLM_ONNX_I8;
    if (bits == 4)
        for (int64_t i = 0; i < n; i++)
            packed[i / 2] |= (uint8_t)(((uint8_t)qv[i] & 0xF) << (i % 2 ? 4 : 0));
    if ((st = wf_write(w, bits == 4 ? packed : (const void *)qv,
                       (size_t)(bits == 4 ? (n + 1) / 2 : n))) != EVLM_OK)
        goto done;
    /* scales as DequantizeLinear takes them */
    char nm[80];
    float *sl = malloc(sizeof(float) * (size_t)n_sc);
    if (!sl) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting %s", name);
        goto done;
    }
    for (int64_t o = 0; o < out; o++)
        for (int64_t kb = 0; kb < nb; kb++)
            sl[transposed ? kb * out + o : o * nb + kb] = sc[o * nb + kb];
    snprintf(nm, sizeof nm, "%s.scale", name);
    if (bits == 8)
        st = wf_begin(w, nm, 1, out, 0);
    else
        st = wf_begin(w, nm, 2, transposed ? nb : out, transposed ? out : nb);
    e->s_off = w->off;
    if (st == EVLM_OK) st = wf_write(w, sl, sizeof(float) * (size_t)n_sc);
    free(sl);
    memset(packed, 0, (size_t)(bits == 4 ? (n_sc + 1) / 2 : n_sc));
    snprintf(nm, sizeof nm, "%s.zp", name);
    if (st == EVLM_OK) {
        if (bits == 8)
            st = wf_begin(w, nm, 1, out, 0);
        else
            st = wf_begin(w, nm, 2, transposed ? nb : out, transposed ? out : nb);
    }
    if (st == EVLM_OK) {
        w->e[w->n - 1].dtype = bits == 4 ? EVLM_ONNX_I4 : EVLM_ONNX_I8;
        st = wf_write(w, packed, (size_t)(bits == 4 ? (n_sc + 1) / 2 : n_sc));
    }
done:
    free(wf);
    free(codes);
    free(sc);
    free(qv);
    free(hv);
    free(packed);
    return st;
}

static const wentry *wf_find(const wfile *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) return &w->e[i];
    return NULL;
}

/* cos | sin tables [ctx, head_dim], both halves alike (rotate-half), as the decoder's */
static evlm_status write_rope(const evlm_decoder *d, int ctx, wfile *w) {
    const int HD = d->cfg.head_dim, half = HD / 2;
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
    return st;
}

/* The weights of part pt: the embedding (part 0; also the last part's head table when the head is
 * tied and float32), the RoPE tables (parts with layers), its layers, the final norm and head. */
static evlm_status write_weights(const evlm_decoder *d, int ctx, wfile *w, qdq_state *q,
                                 const evlm__onnx_part *pt) {
    const evlm_decoder_config *c = &d->cfg;
    const int H = c->hidden_size, F = c->intermediate_size, HD = c->head_dim;
    const int QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    const bool tied = d->lm_head == d->tok_embd;
    char nm[64];
    if (pt->embedding || (pt->head && tied && !q))
        EVLM_TRY(wf_matrix(w, "embed_tokens", d->tok_embd, false));
    if (pt->head && !tied && !q) EVLM_TRY(wf_matrix(w, "lm_head", d->lm_head, false));
    if (pt->first < pt->end) EVLM_TRY(write_rope(d, ctx, w));
    for (int l = pt->first; l < pt->end; l++) {
        const evlm_decoder_layer *ly = &d->layers[l];
        const struct {
            const char *name, *group; /* the calibration group of its input */
            const evlm_tensor *w;
            const float *b;
            int nb;
        } mats[] = {{"wq", "attn_qkv", ly->wq, ly->bq, QD},
                    {"wk", "attn_qkv", ly->wk, ly->bk, KD},
                    {"wv", "attn_qkv", ly->wv, ly->bv, KD},
                    {"wo", "attn_o", ly->wo, ly->bo, H},
                    {"w_gate", "ffn_gate_up", ly->w_gate, ly->b_gate, F},
                    {"w_up", "ffn_gate_up", ly->w_up, ly->b_up, F},
                    {"w_down", "ffn_down", ly->w_down, ly->b_down, H}};
        snprintf(nm, sizeof nm, "l%d.attn_norm", l);
        EVLM_TRY(wf_floats(w, nm, ly->attn_norm, H));
        snprintf(nm, sizeof nm, "l%d.ffn_norm", l);
        EVLM_TRY(wf_floats(w, nm, ly->ffn_norm, H));
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
            snprintf(nm, sizeof nm, "l%d.%s", l, mats[i].name);
            EVLM_TRY(q ? wf_qmatrix(w, q, nm, l, mats[i].group, mats[i].w, true)
                       : wf_matrix(w, nm, mats[i].w, true));
            if (!mats[i].b) continue;
            snprintf(nm, sizeof nm, "l%d.%s.bias", l, mats[i].name);
            EVLM_TRY(wf_floats(w, nm, mats[i].b, mats[i].nb));
        }
    }
    if (!pt->head) return EVLM_OK;
    if (q) EVLM_TRY(wf_qmatrix(w, q, "lm_head.q", -1, "lm_head", d->lm_head, false));
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
    qdq_state *q;     /* NULL: float32 */
    bool first;       /* the first graph names the points' tensors; the second must agree */
    const char *pfx;  /* intermediate names' prefix: "p{k}_" in a split export, else "" */
} gb;

/* A fresh intermediate name "t{k}_{what}" into buf (64 bytes). */
static const char *tmp(gb *b, char *buf, const char *what) {
    snprintf(buf, 64, "%st%d_%s", b->pfx, b->k++, what);
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

/* The float weight a MatMul / Gemm reads for the stored weight `name`: the name itself (fp32),
 * its Cast to float (fp16) or its DequantizeLinear (int8 per channel on the output axis, int4
 * per block on the input axis) into out. */
static const char *weight(gb *b, char *out, const char *name, bool transposed) {
    if (!b->q) return name;
    if (b->q->prec == EVLM_NPU_FP16) {
        snprintf(out, 64, "%s.f32", name);
        int nd = evlm_onnx_node(b->g, "Cast", 1, &name, 1, (const char *[]){out});
        evlm_onnx_attr_int(b->g, nd, "to", EVLM_ONNX_F32);
        return out;
    }
    char sn[80], zn[80];
    snprintf(sn, sizeof sn, "%s.scale", name);
    snprintf(zn, sizeof zn, "%s.zp", name);
    snprintf(out, 64, "%s.dq", name);
    int nd = evlm_onnx_node(b->g, "DequantizeLinear", 3, (const char *[]){name, sn, zn}, 1,
                            (const char *[]){out});
    if (b->q->prec == EVLM_NPU_W4A16) {
        evlm_onnx_attr_int(b->g, nd, "axis", transposed ? 0 : 1);
        evlm_onnx_attr_int(b->g, nd, "block_size", QDQ_BLOCK);
    } else
        evlm_onnx_attr_int(b->g, nd, "axis", transposed ? 1 : 0);
    return out;
}

/* Activation x quantized at point idx: QuantizeLinear -> DequantizeLinear into out (a fresh
 * name, or `dst` when given); x itself without quantization. */
static const char *qdq(gb *b, char *out, const char *x, int idx, const char *dst) {
    if (!b->q || b->q->prec == EVLM_NPU_FP16) {
        if (dst) op(b, "Identity", dst, 1, x);
        return dst ? dst : x;
    }
    if (b->first)
        snprintf(b->q->tensor[idx], 64, "%s", x);
    else if (strcmp(b->q->tensor[idx], x))
        b->q->mismatch = true;
    char sn[32], zn[32], qn[64];
    snprintf(sn, sizeof sn, "qp%d.scale", idx);
    snprintf(zn, sizeof zn, "qp%d.zp", idx);
    const evlm_qdq_point *p = &b->q->pts[idx];
    evlm_onnx_init(b->g, sn, EVLM_ONNX_F32, 0, NULL, &p->scale);
    if (p->bits == 16) {
        uint16_t z = (uint16_t)p->zp;
        evlm_onnx_init(b->g, zn, EVLM_ONNX_U16, 0, NULL, &z);
    } else {
        uint8_t z = (uint8_t)p->zp;
        evlm_onnx_init(b->g, zn, EVLM_ONNX_U8, 0, NULL, &z);
    }
    op(b, "QuantizeLinear", tmp(b, qn, "q"), 3, x, sn, zn);
    if (dst) snprintf(out, 64, "%s", dst);
    op(b, "DequantizeLinear", dst ? dst : tmp(b, out, "dq"), 3, qn, sn, zn);
    return out;
}

static int point(const gb *b, int l, const char *group) {
    return evlm__qdq_index(b->c->n_layers, l, group);
}

/* y = x W (+ bias) for the weight "l{l}.{w}" */
static void linear(gb *b, char *y, const char *x, int l, const char *w) {
    char wn[64], bn[64], t[64], wd[64];
    snprintf(wn, sizeof wn, "l%d.%s", l, w);
    snprintf(bn, sizeof bn, "l%d.%s.bias", l, w);
    if (b->q) {
        const char *f = weight(b, wd, wn, true);
        snprintf(wn, sizeof wn, "%s", f);
    }
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
    /* opset 18 moved ReduceMean's axes from an attribute to an input */
    int nd = evlm_onnx_node(b->g, "ReduceMean", b->q ? 2 : 1, (const char *[]){sq, "c.axes"}, 1,
                            (const char *[]){tmp(b, ms, "ms")});
    if (!b->q) evlm_onnx_attr_ints(b->g, nd, "axes", 1, (const int64_t[]){-1});
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
    char xq[64];
    const char *xi = qdq(b, xq, xn, point(b, l, "attn_qkv"), NULL);
    linear(b, q, xi, l, "wq");
    linear(b, k, xi, l, "wk");
    linear(b, v, xi, l, "wv");
    op(b, "Reshape", tmp(b, t, "q4"), 2, q, "c.shape_q");
    transpose(b, qt, t, perm_heads);
    op(b, "Reshape", tmp(b, t, "k4"), 2, k, "c.shape_kv");
    transpose(b, kt, t, perm_heads);
    snprintf(pk, sizeof pk, "present_key_%d", l);
    snprintf(pv, sizeof pv, "present_value_%d", l);
    rope(b, tmp(b, qr, "q_rope"), qt);
    char kf[64], vf[64], tq[64];
    snprintf(kf, sizeof kf, "l%d.key", l);
    snprintf(vf, sizeof vf, "l%d.value", l);
    const bool kvq = b->q && b->q->prec != EVLM_NPU_FP16;
    rope(b, kvq ? kf : pk, kt);
    if (kvq) qdq(b, tq, kf, point(b, l, "kv_key"), pk);
    op(b, "Reshape", tmp(b, t, "v4"), 2, v, "c.shape_kv");
    int nd = evlm_onnx_node(b->g, "Transpose", 1, (const char *[]){t}, 1,
                            (const char *[]){kvq ? vf : pv});
    evlm_onnx_attr_ints(b->g, nd, "perm", 4, perm_heads);
    if (kvq) qdq(b, tq, vf, point(b, l, "kv_value"), pv);
    char past_k[64], past_v[64];
    snprintf(past_k, sizeof past_k, "past_key_%d", l);
    snprintf(past_v, sizeof past_v, "past_value_%d", l);
    concat(b, tmp(b, ka, "k_all"), 2, 2, (const char *[]){past_k, pk});
    concat(b, tmp(b, va, "v_all"), 2, 2, (const char *[]){past_v, pv});
    /* the G query heads of a kv head as G * N rows: [1, KV, G * N, HD] */
    char qq[64];
    op(b, "Reshape", tmp(b, qg, "q_group"), 2, qdq(b, qq, qr, point(b, l, "attn_q"), NULL),
       "c.shape_qg");
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
    char oq[64];
    linear(b, y, qdq(b, oq, o2, point(b, l, "attn_o"), NULL), l, "wo");
    op(b, "Add", tmp(b, x2, "resid"), 2, x, y);

    char fn[64], g[64], u[64], sg[64], si[64], h[64], d[64];
    snprintf(w, sizeof w, "l%d.ffn_norm", l);
    rmsnorm(b, fn, x2, w);
    char fq[64], hq[64];
    const char *fi = qdq(b, fq, fn, point(b, l, "ffn_gate_up"), NULL);
    linear(b, g, fi, l, "w_gate");
    linear(b, u, fi, l, "w_up");
    op(b, "Sigmoid", tmp(b, sg, "sig"), 1, g);
    op(b, "Mul", tmp(b, si, "silu"), 2, g, sg);
    op(b, "Mul", tmp(b, h, "swiglu"), 2, si, u);
    linear(b, d, qdq(b, hq, h, point(b, l, "ffn_down"), NULL), l, "w_down");
    op(b, "Add", tmp(b, x, "resid"), 2, x2, d);
}

typedef struct {
    char name[32];
    const char *dtype, *role;
    int layer, ndim;
    int64_t shape[4];
} io_desc;

/* The graph of part pt for n new tokens over ctx slots, its weights in the file wname; its
 * inputs / outputs are listed into io (room for 5 + 4 * layers + 1 entries), *n_io and *n_in
 * (the inputs) set. image_in: it also takes image_features [1, n, hidden] and image_mask
 * [1, n, 1] (1: the position's embedding is its image_features row, 0: the token's; exact
 * either way). A part without the embedding takes hidden_states_in [1, n, hidden], one without
 * the head gives hidden_states [1, n, hidden] (both role hidden_states): the residual stream
 * after its last layer. */
static evlm_status build_graph(const evlm_decoder *d, const wfile *w, qdq_state *q, bool first,
                               const char *gname, int n, int ctx, bool image_in, const char *path,
                               const evlm__onnx_part *pt, const char *wname, const char *pfx,
                               io_desc *io, int *n_io, int *n_in) {
    const evlm_decoder_config *c = &d->cfg;
    const int64_t N = n, P = ctx - n, C = ctx, H = c->hidden_size, V = c->vocab_size;
    const int64_t NH = c->n_heads, KV = c->n_kv_heads, HD = c->head_dim, G = NH / KV;
    const bool layers = pt->first < pt->end;
    evlm_onnx *g;
    EVLM_TRY(evlm_onnx_new(gname, q ? EXPORT_OPSET_QDQ : EXPORT_OPSET, &g));
    gb b = {g, w, c, n, (int)P, 0, "attention_mask", q, first, pfx};
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
    if (pt->embedding)
        IO("input_ids", -1, "int64", "input_ids", 2, {1, N});
    else
        IO("hidden_states_in", -1, "float32", "hidden_states", 3, {1, N, H});
    const bool mrope = c->mrope_section[0] || c->mrope_section[1];
    if (mrope) /* Qwen2-VL: temporal / height / width positions, as transformers' [3, batch, n] */
        IO("position_ids", -1, "int64", "position_ids", 3, {3, 1, N});
    else
        IO("position_ids", -1, "int64", "position_ids", 2, {1, N});
    IO("attention_mask", -1, "float32", "attention_mask", 4, {1, 1, N, C});
    if (image_in) {
        IO("image_features", -1, "float32", "image_features", 3, {1, N, H});
        IO("image_mask", -1, "float32", "image_mask", 3, {1, N, 1});
    }
    for (int l = pt->first; l < pt->end; l++) {
        IO("past_key", l, "float32", "past_key", 4, {1, KV, P, HD});
        IO("past_value", l, "float32", "past_value", 4, {1, KV, P, HD});
    }
    const int n_inputs = m;
    if (pt->head)
        IO("logits", -1, "float32", "logits", 3, {1, N, V});
    else
        IO("hidden_states", -1, "float32", "hidden_states", 3, {1, N, H});
    for (int l = pt->first; l < pt->end; l++) {
        IO("present_key", l, "float32", "present_key", 4, {1, KV, N, HD});
        IO("present_value", l, "float32", "present_value", 4, {1, KV, N, HD});
    }
#undef IO
    *n_io = m;
    *n_in = n_inputs;
    for (int i = 0; i < m; i++)
        (i < n_inputs ? evlm_onnx_input : evlm_onnx_output)(
            g, io[i].name, strcmp(io[i].dtype, "int64") ? EVLM_ONNX_F32 : EVLM_ONNX_I64, io[i].ndim,
            io[i].shape);
    for (int i = 0; i < w->n; i++)
        evlm_onnx_init_external(g, w->e[i].name, w->e[i].dtype, w->e[i].ndim, w->e[i].shape, wname,
                                w->e[i].offset);
    /* constants (those a part without layers or head would not use left out) */
    if (layers || pt->head) const_f32(&b, "c.eps", c->rms_norm_eps);
    if (layers) {
        const_f32(&b, "c.minus1", -1.0f);
        const_f32(&b, "c.scale", 1.0f / sqrtf((float)HD));
        const_i64(&b, "c.zero", 1, (const int64_t[]){0});
        const_i64(&b, "c.half", 1, (const int64_t[]){HD / 2});
        const_i64(&b, "c.hd", 1, (const int64_t[]){HD});
        const_i64(&b, "c.axis3", 1, (const int64_t[]){3});
    }
    if (q && (layers || pt->head)) const_i64(&b, "c.axes", 1, (const int64_t[]){-1});
    if (layers) {
        const_i64(&b, "c.shape_q", 4, (const int64_t[]){1, N, NH, HD});
        const_i64(&b, "c.shape_kv", 4, (const int64_t[]){1, N, KV, HD});
        const_i64(&b, "c.shape_qg", 4, (const int64_t[]){1, KV, G * N, HD});
        const_i64(&b, "c.shape_heads", 4, (const int64_t[]){1, NH, N, HD});
        const_i64(&b, "c.shape_qd", 3, (const int64_t[]){1, N, NH * HD});
        if (!mrope) const_i64(&b, "c.shape_rope", 4, (const int64_t[]){1, 1, N, HD});
    }
    if (pt->head) {
        const_i64(&b, "c.shape_rows", 2, (const int64_t[]){N, H});
        const_i64(&b, "c.shape_logits", 3, (const int64_t[]){1, N, V});
    }
    /* per graph: the embedding, the RoPE rows of the positions, the mask repeated per group */
    char x[64], t[64];
    if (pt->embedding)
        op(&b, "Gather", tmp(&b, x, "embd"), 2, "embed_tokens", "input_ids");
    else
        snprintf(x, sizeof x, "%s", "hidden_states_in");
    if (image_in) { /* x * (1 - mask) + image_features * mask; fixed names, not tmp(): the
                       graphs' later names (the QDQ points') must match the decode graph's */
        const_f32(&b, "c.one", 1.0f);
        op(&b, "Sub", "img.keep", 2, "c.one", "image_mask");
        op(&b, "Mul", "img.tok", 2, x, "img.keep");
        op(&b, "Mul", "img.feat", 2, "image_features", "image_mask");
        op(&b, "Add", "img.embd", 2, "img.tok", "img.feat");
        snprintf(x, sizeof x, "%s", "img.embd");
    }
    if (layers && !mrope) {
        op(&b, "Gather", tmp(&b, t, "cos"), 2, "rope_cos", "position_ids");
        op(&b, "Reshape", "rope.cos", 2, t, "c.shape_rope");
        op(&b, "Gather", tmp(&b, t, "sin"), 2, "rope_sin", "position_ids");
        op(&b, "Reshape", "rope.sin", 2, t, "c.shape_rope");
    } else if (layers) { /* M-RoPE: frequency j (and j + HD/2) from its section's position */
        float *sel = calloc((size_t)(3 * HD), sizeof *sel);
        if (!sel) {
            evlm_onnx_free(g);
            return evlm__fail(EVLM_ERR_NOMEM, "out of memory building %s", path);
        }
        for (int64_t j = 0, sec = 0, end = c->mrope_section[0]; j < HD / 2; j++) {
            while (j >= end && sec < 2) end += c->mrope_section[++sec];
            sel[sec * HD + j] = sel[sec * HD + j + HD / 2] = 1.0f;
        }
        evlm_onnx_init(g, "c.mrope_select", EVLM_ONNX_F32, 4, (const int64_t[]){3, 1, 1, HD}, sel);
        free(sel);
        const_i64(&b, "c.axis0", 1, (const int64_t[]){0});
        /* [3, 1, N, HD] rows x one-hot [3, 1, 1, HD], summed over the sections: exact (x + 0) */
        char u[64];
        op(&b, "Gather", tmp(&b, t, "cos3"), 2, "rope_cos", "position_ids");
        op(&b, "Mul", tmp(&b, u, "cos_sel"), 2, t, "c.mrope_select");
        op(&b, "ReduceSum", "rope.cos", 2, u, "c.axis0");
        op(&b, "Gather", tmp(&b, t, "sin3"), 2, "rope_sin", "position_ids");
        op(&b, "Mul", tmp(&b, u, "sin_sel"), 2, t, "c.mrope_select");
        op(&b, "ReduceSum", "rope.sin", 2, u, "c.axis0");
    }
    const char *masks[EXPORT_MAX_GROUP];
    for (int i = 0; i < G; i++) masks[i] = "attention_mask";
    if (G > 1 && layers) {
        concat(&b, "mask.group", 2, (int)G, masks);
        b.mask = "mask.group";
    }
    for (int l = pt->first; l < pt->end; l++) layer(&b, x, l);
    if (!pt->head) {
        op(&b, "Identity", "hidden_states", 1, x);
        evlm_status st = evlm_onnx_save(g, path);
        evlm_onnx_free(g);
        return st;
    }
    char xn[64], rows[64], lg[64];
    rmsnorm(&b, xn, x, "norm");
    op(&b, "Reshape", tmp(&b, rows, "rows"), 2, xn, "c.shape_rows");
    char rq[64], hw[64];
    const char *head = d->lm_head != d->tok_embd ? "lm_head" : "embed_tokens";
    if (q) head = weight(&b, hw, "lm_head.q", false);
    int nd = evlm_onnx_node(
        g, "Gemm", 2, (const char *[]){qdq(&b, rq, rows, point(&b, -1, "lm_head"), NULL), head}, 1,
        (const char *[]){tmp(&b, lg, "head")});
    evlm_onnx_attr_int(g, nd, "transB", 1);
    op(&b, "Reshape", "logits", 2, lg, "c.shape_logits");
    evlm_status st = evlm_onnx_save(g, path);
    evlm_onnx_free(g);
    return st;
}

/* ---- calibration ---------------------------------------------------------------------------- */

#define CALIB_CHUNK     256
#define CALIB_IMAGE_CTX 4096 /* the context of a calibration item with its image */

/* the decoder's transform hook, read-only: min / max of every point */
static void calib_fn(void *user, int layer, const char *group, float *x, int m, int k) {
    qdq_state *q = user;
    int idx = evlm__qdq_index((q->n_pts - 1) / QDQ_N_GROUPS, layer, group);
    if (idx < 0) return;
    evlm_qdq_point *p = &q->pts[idx];
    for (size_t i = 0; i < (size_t)m * (size_t)k; i++) {
        p->min = x[i] < p->min ? x[i] : p->min;
        p->max = x[i] > p->max ? x[i] : p->max;
    }
    if (!strcmp(group, "attn_qkv") && layer == 0) q->n_calib_rows += m;
}

/* Token sequences of the calibration file: a text's tokens in chunks of CALIB_CHUNK (up to
 * tokens in all), or a .jsonl dataset's question (through the chat template) + answer each. */
static evlm_status calib_seqs(const evlm_model *model, const char *path, int tokens, int32_t **ids,
                              size_t *n, size_t **ends, size_t *n_seq) {
    char *data;
    size_t len;
    *ids = NULL;
    *ends = NULL;
    *n = *n_seq = 0;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &data, &len));
    size_t pl = strlen(path);
    evlm_status st = EVLM_OK;
    if (pl < 6 || strcmp(path + pl - 6, ".jsonl")) {
        st = evlm_tokenize(model, data, len, false, true, ids, n);
        if (st == EVLM_OK && *n < 2) st = evlm__fail(EVLM_ERR_ARG, "%s: fewer than 2 tokens", path);
        if (st == EVLM_OK && *n > (size_t)tokens) *n = (size_t)tokens;
        size_t k = (*n + CALIB_CHUNK - 1) / CALIB_CHUNK;
        if (st == EVLM_OK && !(*ends = malloc(sizeof **ends * (k ? k : 1))))
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == EVLM_OK && i < k; i++)
            (*ends)[i] = (i + 1) * CALIB_CHUNK < *n ? (i + 1) * CALIB_CHUNK : *n;
        if (st == EVLM_OK) *n_seq = k;
        free(data);
        return st;
    }
    int line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line && st == EVLM_OK && *n < (size_t)tokens;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        cJSON *item = cJSON_Parse(line);
        const cJSON *qs = cJSON_GetObjectItem(item, "question"),
                    *ans = cJSON_GetObjectItem(item, "answer");
        char *chat = NULL;
        int32_t *t = NULL;
        size_t nt = 0;
        if (!cJSON_IsString(qs) || (ans && !cJSON_IsString(ans)))
            st = evlm__fail(EVLM_ERR_FORMAT, "%s:%d: expected {\"question\", \"answer\"} strings",
                            path, line_no);
        if (st == EVLM_OK) st = evlm_chat_prompt(model, qs->valuestring, 0, &chat);
        if (st == EVLM_ERR_UNSUPPORTED) /* no chat template: the question as written */
            st = (chat = strdup(qs->valuestring)) ? EVLM_OK
                                                  : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        size_t cl = chat ? strlen(chat) : 0, al = ans ? strlen(ans->valuestring) : 0;
        char *full = st == EVLM_OK ? malloc(cl + al + 1) : NULL;
        if (st == EVLM_OK && !full) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (st == EVLM_OK) {
            memcpy(full, chat, cl);
            if (al) memcpy(full + cl, ans->valuestring, al);
            full[cl + al] = 0;
            st = evlm_tokenize(model, full, cl + al, true, false, &t, &nt);
        }
        if (nt > CALIB_CHUNK) nt = CALIB_CHUNK;
        int32_t *ni = st == EVLM_OK && nt ? realloc(*ids, sizeof **ids * (*n + nt)) : *ids;
        size_t *ne = st == EVLM_OK && nt ? realloc(*ends, sizeof **ends * (*n_seq + 1)) : *ends;
        if (ni) *ids = ni;
        if (ne) *ends = ne;
        if (st == EVLM_OK && nt && (!ni || !ne)) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (st == EVLM_OK && nt) {
            memcpy(*ids + *n, t, sizeof *t * nt);
            *n += nt;
            (*ends)[(*n_seq)++] = *n;
        }
        free(t);
        free(full);
        free(chat);
        cJSON_Delete(item);
    }
    free(data);
    if (st == EVLM_OK && !*n_seq) st = evlm__fail(EVLM_ERR_ARG, "%s: no calibration items", path);
    return st;
}

/* A .jsonl dataset's items with their images (p->calib_images): each item's question (through
 * the chat template, one image marker) + answer as a prompt with its image encoded, decoded by c,
 * up to p's token budget (image tokens included). */
static evlm_status calib_image_items(const evlm_model *model, const evlm_onnx_params *p,
                                     evlm_context *c) {
    char *data;
    size_t len;
    const char *path = p->calib;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &data, &len));
    const char *slash = strrchr(path, '/');
    int base_len = slash ? (int)(slash - path) : 1;
    const char *base = slash ? path : ".";
    evlm_model *m = (evlm_model *)(uintptr_t)model; /* encoding an image only reads the model */
    const size_t budget = (size_t)(p->calib_tokens > 0 ? p->calib_tokens : 2048);
    size_t used = 0;
    int line_no = 0, n_items = 0;
    char *save = NULL;
    evlm_status st = EVLM_OK;
    for (char *line = strtok_r(data, "\n", &save); line && st == EVLM_OK && used < budget;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        cJSON *item = cJSON_Parse(line);
        const cJSON *img = cJSON_GetObjectItem(item, "image"),
                    *qs = cJSON_GetObjectItem(item, "question"),
                    *ans = cJSON_GetObjectItem(item, "answer");
        char *chat = NULL, *full = NULL, img_path[4096];
        evlm_prompt *pr = NULL;
        if (!cJSON_IsString(qs) || !cJSON_IsString(img) || (ans && !cJSON_IsString(ans)))
            st = evlm__fail(EVLM_ERR_FORMAT, "expected {\"image\", \"question\", \"answer\"} "
                                             "strings (calib_images)");
        if (st == EVLM_OK) {
            if (img->valuestring[0] == '/')
                snprintf(img_path, sizeof img_path, "%s", img->valuestring);
            else
                snprintf(img_path, sizeof img_path, "%.*s/%s", base_len, base, img->valuestring);
            st = evlm_chat_prompt(model, qs->valuestring, 1, &chat);
        }
        size_t cl = chat ? strlen(chat) : 0, al = ans ? strlen(ans->valuestring) : 0;
        if (st == EVLM_OK && !(full = malloc(cl + al + 1)))
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (st == EVLM_OK) {
            memcpy(full, chat, cl);
            if (al) memcpy(full + cl, ans->valuestring, al);
            full[cl + al] = 0;
            evlm_image_input in = {.path = img_path};
            st = evlm_prompt_new(m, full, false, &in, 1, &pr);
        }
        size_t n = 0;
        if (st == EVLM_OK) evlm_prompt_ids(pr, &n);
        if (st == EVLM_OK && (int)n > evlm_context_n_ctx(c))
            st = evlm__fail(EVLM_ERR_ARG, "%zu tokens: past the calibration context %d", n,
                            evlm_context_n_ctx(c));
        if (st == EVLM_OK) st = evlm_context_truncate(c, 0);
        if (st == EVLM_OK) st = evlm_decode_prompt(c, pr, NULL, false);
        if (st != EVLM_OK) evlm__fail_prefix(st, "%s:%d", path, line_no);
        used += n;
        n_items++;
        evlm_prompt_free(pr);
        free(full);
        free(chat);
        cJSON_Delete(item);
    }
    free(data);
    if (st == EVLM_OK && !n_items) st = evlm__fail(EVLM_ERR_ARG, "%s: no calibration items", path);
    return st;
}

/* Runs the float model over the calibration file with calib_fn watching, then encodes every
 * point. */
static evlm_status calibrate(const evlm_model *model, const evlm_onnx_params *p, qdq_state *q) {
    int32_t *ids = NULL;
    size_t n = 0, *ends = NULL, n_seq = 0;
    size_t pl = strlen(p->calib);
    const bool images = p->calib_images;
    if (images && (!q->gptq || !evlm_model_has_vision(model) || pl < 6 ||
                   strcmp(p->calib + pl - 6, ".jsonl")))
        return evlm__fail(EVLM_ERR_ARG,
                          "calib_images: feeds GPTQ's Hessians (method gptq) from a vision "
                          "model's .jsonl dataset with images (calib: %s)",
                          p->calib);
    EVLM_TRY(calib_seqs(model, p->calib, p->calib_tokens > 0 ? p->calib_tokens : 2048, &ids, &n,
                        &ends, &n_seq));
    for (int i = 0; i < q->n_pts; i++) {
        q->pts[i].min = INFINITY;
        q->pts[i].max = -INFINITY;
    }
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = CALIB_CHUNK;
    if (images) { /* room for an image's tokens */
        int train = evlm_model_n_ctx_train(model);
        cp.n_ctx = train > 0 && train < CALIB_IMAGE_CTX ? train : CALIB_IMAGE_CTX;
    }
    cp.n_batch = CALIB_CHUNK;
    evlm_context *c = NULL;
    const size_t V = (size_t)evlm__model_decoder(model)->cfg.vocab_size;
    float *lg = malloc(sizeof(float) * V * CALIB_CHUNK);
    /* a context only reads the model; the export's model is const to its caller */
    evlm_status st = lg ? evlm_context_new((evlm_model *)(uintptr_t)model, &cp, &c)
                        : evlm__fail(EVLM_ERR_NOMEM, "out of memory for calibration logits");
    if (st == EVLM_OK) evlm__context_transform(c, calib_fn, q);
    if (st == EVLM_OK && q->gptq) { /* GPTQ's Hessians: X^T X of every matmul input group */
        evlm_calib_params kp = evlm_calib_default_params();
        kp.hessian = true;
        kp.lm_head = true;
        kp.reservoir_rows = 0;
        if ((st = evlm_calib_new(&kp, &q->calib)) == EVLM_OK)
            evlm__context_observe(c, evlm_calib_observe, q->calib);
    }
    for (size_t i = 0, at = 0; st == EVLM_OK && i < n_seq; at = ends[i++]) {
        st = evlm_context_truncate(c, 0);
        if (st == EVLM_OK) st = evlm_decode(c, ids + at, (int)(ends[i] - at), lg, true);
    }
    /* the items again with their images, for the Hessians alone: the activation encodings stay
     * those of the text (docs/NPU.md: image rows in the ranges coarsen the 8-bit KV cache) */
    if (st == EVLM_OK && images) {
        evlm__context_transform(c, NULL, NULL);
        st = calib_image_items(model, p, c);
    }
    if (st == EVLM_OK && q->calib) st = evlm_calib_status(q->calib);
    if (st != EVLM_OK) evlm__fail_prefix(st, "calibration (%s)", p->calib);
    for (int i = 0; st == EVLM_OK && i < q->n_pts; i++) {
        if (!(q->pts[i].min <= q->pts[i].max)) q->pts[i].min = q->pts[i].max = 0;
        evlm__qdq_encode(&q->pts[i]);
    }
    evlm_context_free(c);
    free(lg);
    free(ids);
    free(ends);
    return st;
}

/* encodings.json in AIMET's format (version 0.6.1: lists of per-channel encodings, unsigned
 * offsets): activation_encodings keyed by the float tensor each QuantizeLinear reads,
 * param_encodings keyed by the quantized weight initializers, one entry per output channel
 * (int4: per block, output channel-major, with "block_size"). Weight scales are read back from
 * the values written, so this file and the graph cannot disagree. */
static char *encodings(const qdq_state *q, FILE *const *wfs) {
    cJSON *j = cJSON_CreateObject();
    cJSON *acts = cJSON_AddObjectToObject(j, "activation_encodings");
    for (int i = 0; i < q->n_pts; i++) {
        const evlm_qdq_point *p = &q->pts[i];
        cJSON *a = cJSON_AddArrayToObject(acts, q->tensor[i]);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(a, e);
        cJSON_AddNumberToObject(e, "bitwidth", p->bits);
        cJSON_AddStringToObject(e, "dtype", "int");
        cJSON_AddStringToObject(e, "is_symmetric", "False");
        cJSON_AddNumberToObject(e, "max", (double)p->scale * ((1 << p->bits) - 1 - p->zp));
        cJSON_AddNumberToObject(e, "min", -(double)p->scale * p->zp);
        cJSON_AddNumberToObject(e, "offset", -p->zp);
        cJSON_AddNumberToObject(e, "scale", p->scale);
    }
    cJSON *pars = cJSON_AddObjectToObject(j, "param_encodings");
    for (int i = 0; i < q->n_qw; i++) {
        const qweight *w = &q->qw[i];
        FILE *wf = wfs[w->part];
        int64_t nb = w->bits == 4 ? (w->in + QDQ_BLOCK - 1) / QDQ_BLOCK : 1;
        float *sc = malloc(sizeof(float) * (size_t)(w->out * nb));
        if (!sc || !wf || fseeko(wf, (off_t)w->s_off, SEEK_SET) ||
            fread(sc, sizeof(float), (size_t)(w->out * nb), wf) != (size_t)(w->out * nb)) {
            free(sc);
            cJSON_Delete(j);
            return NULL;
        }
        cJSON *a = cJSON_AddArrayToObject(pars, w->name);
        int half = 1 << (w->bits - 1);
        for (int64_t o = 0; o < w->out; o++)
            for (int64_t kb = 0; kb < nb; kb++) {
                float s = sc[w->transposed ? kb * w->out + o : o * nb + kb];
                cJSON *e = cJSON_CreateObject();
                cJSON_AddItemToArray(a, e);
                cJSON_AddNumberToObject(e, "bitwidth", w->bits);
                cJSON_AddStringToObject(e, "dtype", "int");
                cJSON_AddStringToObject(e, "is_symmetric", "True");
                cJSON_AddNumberToObject(e, "max", (double)s * (half - 1));
                cJSON_AddNumberToObject(e, "min", -(double)s * half);
                cJSON_AddNumberToObject(e, "offset", -half);
                cJSON_AddNumberToObject(e, "scale", s);
                if (w->bits == 4) cJSON_AddNumberToObject(e, "block_size", QDQ_BLOCK);
            }
        free(sc);
    }
    cJSON_AddArrayToObject(j, "excluded_layers");
    cJSON *qa = cJSON_AddObjectToObject(j, "quantizer_args");
    cJSON_AddNumberToObject(qa, "activation_bitwidth", q->act_bits);
    cJSON_AddNumberToObject(qa, "param_bitwidth", q->qw && q->n_qw ? q->qw[0].bits : 8);
    cJSON_AddStringToObject(qa, "dtype", "int");
    cJSON_AddBoolToObject(qa, "per_channel_quantization", true);
    cJSON_AddStringToObject(qa, "quant_scheme", "post_training_tf");
    cJSON_AddStringToObject(j, "version", "0.6.1");
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
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
        if (!strcmp(io[i].role, "position_ids"))
            cJSON_AddStringToObject(o, "layout",
                                    io[i].ndim == 3
                                        ? "mrope: [3 (temporal, height, width), 1, n_tokens], "
                                          "model.mrope_section frequencies each"
                                        : "[1, n_tokens]");
    }
    return a;
}

static void add_graph(cJSON *graphs, const char *name, int part, const char *file, int n, int ctx,
                      const io_desc *io, int n_in, int n_io) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(graphs, o);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "part", part);
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddNumberToObject(o, "n_tokens", n);
    cJSON_AddNumberToObject(o, "past_len", ctx - n);
    cJSON_AddItemToObject(o, "inputs", io_json(io, 0, n_in));
    cJSON_AddItemToObject(o, "outputs", io_json(io, n_in, n_io));
}

/* manifest.json's "quantization": the precision's scheme, every activation point (tensor,
 * layer, group, bits, scale, zero point, calibration range) and every quantized weight (where
 * its values and scales sit in the weight file: what --sim reads). */
static void quant_json(cJSON *j, const qdq_state *q, const char *calib, int n_parts,
                       char (*wnames)[48]) {
    cJSON *o = cJSON_AddObjectToObject(j, "quantization");
    cJSON_AddStringToObject(o, "scheme",
                            q->prec == EVLM_NPU_FP16
                                ? "float16 weights (Cast to float), float32 activations"
                                : "QDQ: weights symmetric (int8 per output channel, int4 per "
                                  "block of input channels), activations asymmetric unsigned "
                                  "per tensor");
    cJSON_AddStringToObject(o, "rounding", "half to even, saturating (ONNX QuantizeLinear)");
    if (q->prec != EVLM_NPU_FP16) {
        cJSON_AddNumberToObject(o, "activation_bits", q->act_bits);
        cJSON_AddNumberToObject(o, "kv_bits", q->kv_bits);
        cJSON_AddStringToObject(o, "statistic",
                                "min / max over every calibration token (no percentile), "
                                "widened to include 0");
        cJSON_AddStringToObject(o, "calibration", calib ? calib : "");
        cJSON_AddNumberToObject(o, "calibration_tokens", q->n_calib_rows);
        cJSON_AddBoolToObject(o, "calibration_images", q->calib_images);
        cJSON_AddStringToObject(o, "weight_method",
                                q->gptq ? "gptq (on the grids above, Hessian of the calibration "
                                          "tokens' matmul inputs, damp 0.01, no act-order)"
                                        : "rtn");
        cJSON *a = cJSON_AddArrayToObject(o, "activations");
        int L = (q->n_pts - 1) / QDQ_N_GROUPS;
        for (int i = 0; i < q->n_pts; i++) {
            const evlm_qdq_point *p = &q->pts[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(a, e);
            cJSON_AddNumberToObject(e, "index", i);
            cJSON_AddStringToObject(e, "tensor", q->tensor[i]);
            cJSON_AddNumberToObject(e, "layer", i < L * QDQ_N_GROUPS ? i / QDQ_N_GROUPS : -1);
            cJSON_AddStringToObject(
                e, "group", i < L * QDQ_N_GROUPS ? evlm__qdq_groups[i % QDQ_N_GROUPS] : "lm_head");
            cJSON_AddStringToObject(e, "dtype", p->bits == 16 ? "uint16" : "uint8");
            cJSON_AddNumberToObject(e, "bits", p->bits);
            cJSON_AddNumberToObject(e, "scale", p->scale);
            cJSON_AddNumberToObject(e, "zero_point", p->zp);
            cJSON_AddNumberToObject(e, "min", p->min);
            cJSON_AddNumberToObject(e, "max", p->max);
        }
    }
    cJSON *w = cJSON_AddArrayToObject(o, "weights");
    for (int i = 0; i < q->n_qw; i++) {
        const qweight *x = &q->qw[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(w, e);
        cJSON_AddStringToObject(e, "name", x->name);
        cJSON_AddNumberToObject(e, "layer", x->layer);
        cJSON_AddStringToObject(e, "dtype",
                                x->bits == 16  ? "float16"
                                : x->bits == 4 ? "int4"
                                               : "int8");
        cJSON_AddNumberToObject(e, "out", x->out);
        cJSON_AddNumberToObject(e, "in", x->in);
        cJSON_AddStringToObject(e, "layout", x->transposed ? "[in, out]" : "[out, in]");
        if (n_parts > 1) cJSON_AddStringToObject(e, "file", wnames[x->part]);
        cJSON_AddNumberToObject(e, "offset", (double)x->q_off);
        if (x->bits != 16) {
            cJSON_AddNumberToObject(e, "scale_offset", (double)x->s_off);
            cJSON_AddNumberToObject(e, "axis", x->bits == 4 ? !x->transposed : x->transposed);
            if (x->bits == 4) cJSON_AddNumberToObject(e, "block_size", QDQ_BLOCK);
        }
        if (x->rel_err >= 0) { /* GPTQ: its output error on the calibration rows and RTN's */
            cJSON_AddNumberToObject(e, "calib_rel_err", x->rel_err);
            cJSON_AddNumberToObject(e, "rtn_calib_rel_err", x->rtn_rel_err);
        }
    }
}

/* One decoder part of the export: its layers, files and graphs' inputs / outputs. */
typedef struct {
    evlm__onnx_part pt;
    char f_pre[48], f_dec[48];
    uint64_t bytes;
    io_desc *io_pre, *io_dec;
    int n_pre, n_dec, in_pre, in_dec;
} xpart;

static char *manifest(const evlm_model *model, const evlm_decoder *d, int ar, int ctx,
                      const xpart *xp, int np, char (*wnames)[48], bool forced, cJSON *vis,
                      bool image_in, const qdq_state *q, const char *prec, const char *calib,
                      const evlm_npu_target_info *tgt) {
    const evlm_decoder_config *c = &d->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "evlm-onnx");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "precision", prec);
    cJSON_AddStringToObject(j, "target", tgt ? tgt->name : "generic");
    cJSON_AddNumberToObject(j, "opset", q ? EXPORT_OPSET_QDQ : EXPORT_OPSET);
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
    cJSON_AddStringToObject(m, "rope", mrope ? "mrope" : "rope");
    if (mrope) {
        cJSON *ms = cJSON_AddArrayToObject(m, "mrope_section");
        for (int i = 0; i < 3; i++)
            cJSON_AddItemToArray(ms, cJSON_CreateNumber(c->mrope_section[i]));
        cJSON_AddStringToObject(m, "rope_note",
                                "M-RoPE (Qwen2-VL): position_ids [3, 1, n] hold each token's "
                                "temporal, height and width positions (transformers' "
                                "get_rope_index; `evlm prompt` prints them as mrope_positions); "
                                "rotary frequencies [0, s0) take the temporal one, [s0, s0 + s1) "
                                "the height, the rest the width (s = mrope_section, in pairs of "
                                "head_dim / 2); text tokens have three equal positions, and "
                                "after a prompt the positions go on from mrope_next");
    }
    cJSON *w = cJSON_AddObjectToObject(j, "weights");
    uint64_t wbytes = 0;
    for (int k = 0; k < np; k++) wbytes += xp[k].bytes;
    if (np == 1) cJSON_AddStringToObject(w, "file", wnames[0]);
    cJSON_AddNumberToObject(w, "bytes", (double)wbytes);
    cJSON_AddStringToObject(w, "dtype", q ? prec : "float32");
    cJSON_AddStringToObject(w, "shared_by",
                            np == 1 ? "every graph (ONNX external data: location, offset, "
                                      "length)"
                                    : "each part's file by that part's prefill and decode graphs "
                                      "(ONNX external data: location, offset, length); parts[i]"
                                      ".weights");
    cJSON *kv = cJSON_AddObjectToObject(j, "kv");
    cJSON_AddStringToObject(kv, "dtype", "float32");
    if (q && q->prec != EVLM_NPU_FP16) {
        cJSON_AddNumberToObject(kv, "quantized_bits", q->kv_bits);
        cJSON_AddStringToObject(kv, "quantized_note",
                                "present_* leave the graph through QuantizeLinear -> "
                                "DequantizeLinear (the kv_key / kv_value points): float32 "
                                "values on the uint grid of the target's KV precision");
    }
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
    for (int k = 0; k < np; k++) {
        add_graph(graphs, "prefill", k, xp[k].f_pre, ar, ctx, xp[k].io_pre, xp[k].in_pre,
                  xp[k].n_pre);
        add_graph(graphs, "decode", k, xp[k].f_dec, 1, ctx, xp[k].io_dec, xp[k].in_dec,
                  xp[k].n_dec);
    }
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
    } else if (image_in) {
        cJSON_AddStringToObject(j, "prefill_images",
                                "the prefill graph's inputs image_features [1, ar, hidden] and "
                                "image_mask [1, ar, 1]: where the mask is 1 the position's "
                                "embedding is its image_features row (the image's merged "
                                "feature rows in order at the image-token positions), elsewhere "
                                "the token's; text-only prompts pass zeros");
        cJSON_AddStringToObject(j, "vision_note",
                                "no vision graph (Qwen2-VL's is one patch grid: export with "
                                "--grid HxW): the image features come from elsewhere, e.g. evlm "
                                "(`evlm prompt --image F --features-out FILE`, with the "
                                "prompt's image_token_id and mrope_positions)");
    } else if (evlm_model_has_vision(model))
        cJSON_AddStringToObject(j, "vision_note",
                                "no vision graph in this export (--tiles 0): text-only prompts");
    cJSON_AddStringToObject(j, "parts_split",
                            forced ? "forced (evlm_onnx_params.parts / --parts): even layer ranges"
                            : tgt  ? "the planner's (evlm plan) under the target's per-graph limit"
                                   : "one part (no target: no per-graph limit)");
    cJSON_AddStringToObject(j, "parts_note",
                            "run in order: part 0 from input_ids, each next part from the "
                            "previous part's hidden_states output (its hidden_states_in input), "
                            "the last part gives logits; each part holds the KV cache of its "
                            "layers; all parts take position_ids and attention_mask alike");
    cJSON *parts = cJSON_AddArrayToObject(j, "parts");
    for (int k = 0; k < np; k++) {
        cJSON *p0 = cJSON_CreateObject();
        cJSON_AddItemToArray(parts, p0);
        cJSON_AddNumberToObject(p0, "index", k);
        cJSON_AddNumberToObject(p0, "first_layer", xp[k].pt.first);
        cJSON_AddNumberToObject(p0, "n_layers", xp[k].pt.end - xp[k].pt.first);
        cJSON_AddBoolToObject(p0, "embedding", xp[k].pt.embedding);
        cJSON_AddBoolToObject(p0, "head", xp[k].pt.head);
        cJSON_AddStringToObject(p0, "weights", wnames[k]);
        cJSON_AddNumberToObject(p0, "weights_bytes", (double)xp[k].bytes);
        cJSON_AddStringToObject(p0, "prefill", xp[k].f_pre);
        cJSON_AddStringToObject(p0, "decode", xp[k].f_dec);
    }
    if (q) quant_json(j, q, calib, np, wnames);
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

/* The precision and target settings into q (q->prec = EVLM_NPU_DEFAULT for fp32). */
static evlm_status check_precision(const evlm_onnx_params *p, qdq_state *q) {
    q->prec = EVLM_NPU_DEFAULT;
    q->target = NULL;
    if (p->target && strcmp(p->target, "generic") && !(q->target = evlm_npu_target_find(p->target)))
        return evlm__fail(EVLM_ERR_ARG, "target '%s': not one of sa8295, sa8255, sa8775, generic",
                          p->target);
    if (p->method && strcmp(p->method, "rtn") && strcmp(p->method, "gptq"))
        return evlm__fail(EVLM_ERR_ARG, "method '%s': export-onnx takes rtn or gptq", p->method);
    if (!p->precision || !strcmp(p->precision, "fp32")) {
        if (p->method && strcmp(p->method, "rtn"))
            return evlm__fail(EVLM_ERR_ARG,
                              "method '%s' with precision 'fp32': GPTQ needs a quantized "
                              "precision (w8a16, w8a8, w4a16)",
                              p->method);
        return EVLM_OK;
    }
    if (evlm_npu_precision_parse(p->precision, &q->prec) != EVLM_OK || q->prec == EVLM_NPU_W4 ||
        q->prec == EVLM_NPU_DEFAULT)
        return evlm__fail(EVLM_ERR_ARG,
                          "precision '%s': export-onnx takes fp32, fp16, w8a16, w8a8, w4a16",
                          p->precision);
    const evlm_npu_target_info *t = q->target;
    if (q->prec == EVLM_NPU_W4A16 && t && !t->int4_block)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "precision 'w4a16' on target %s: %s is Hexagon V%d, which has no int4 "
                          "per-block weights (V69 and later); use w8a16 or w8a8",
                          t->name, t->soc, t->hexagon);
    q->gptq = p->method && !strcmp(p->method, "gptq");
    q->calib_images = p->calib_images;
    if (q->gptq && q->prec == EVLM_NPU_FP16)
        return evlm__fail(EVLM_ERR_ARG,
                          "method 'gptq' with precision 'fp16': GPTQ needs an integer weight "
                          "grid (w8a16, w8a8, w4a16)");
    q->act_bits = q->prec == EVLM_NPU_W8A8 ? 8 : 16;
    q->kv_bits = t ? t->kv_bits : q->act_bits;
    if (q->prec != EVLM_NPU_FP16 && !p->calib)
        return evlm__fail(EVLM_ERR_ARG,
                          "precision '%s' needs calibration data (calib: a text or .jsonl file) "
                          "for its activation encodings",
                          p->precision);
    return EVLM_OK;
}

static evlm_status check_params(const evlm_decoder_config *c, const evlm_onnx_params *p, int *ctx) {
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

/* Removes every file of the temporary folder, then the folder. */
static void remove_tmp(const char *tmpdir, char *path, size_t cap) {
    DIR *dp = opendir(tmpdir);
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, cap, "%s/%s", tmpdir, e->d_name);
            unlink(path);
        }
    if (dp) closedir(dp);
    rmdir(tmpdir);
}

/* Writes part k's weight file into tmpdir (its entries into w, reset) and builds its graphs. */
static evlm_status write_part(const evlm_decoder *d, qdq_state *q, int ctx, int ar, bool image_in,
                              const char *tmpdir, char *path, size_t cap, int k, int np,
                              const char *wname, xpart *x, wfile *w) {
    snprintf(path, cap, "%s/%s", tmpdir, wname);
    w->path = path;
    w->n = 0;
    w->off = 0;
    if (!(w->f = fopen(path, "wb")))
        return evlm__fail(EVLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (q) q->cur_part = k;
    evlm_status st = write_weights(d, ctx, w, q, &x->pt);
    if (st == EVLM_OK && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
        st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fclose(w->f) != 0 && st == EVLM_OK)
        st = evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    w->f = NULL;
    EVLM_TRY(st);
    x->bytes = w->off;
    char pfx[16] = "";
    if (np > 1) snprintf(pfx, sizeof pfx, "p%d_", k);
    snprintf(path, cap, "%s/%s", tmpdir, x->f_pre);
    EVLM_TRY(build_graph(d, w, q, true, "prefill", ar, ctx, image_in && x->pt.embedding, path,
                         &x->pt, wname, pfx, x->io_pre, &x->n_pre, &x->in_pre));
    snprintf(path, cap, "%s/%s", tmpdir, x->f_dec);
    return build_graph(d, w, q, false, "decode", 1, ctx, false, path, &x->pt, wname, pfx, x->io_dec,
                       &x->n_dec, &x->in_dec);
}

evlm_status evlm_export_onnx(const evlm_model *model, const char *dir,
                             const evlm_onnx_params *params) {
    evlm_onnx_params p = params ? *params : evlm_onnx_default_params();
    const evlm_decoder *d = evlm__model_decoder(model);
    const evlm_decoder_config *c = &d->cfg;
    int ctx = 0, n_tiles = 0, np = 0;
    qdq_state qs = {0};
    if (d->lr_max_rank > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "the ONNX export does not take low-rank factored matrices (*.lowrank_a "
                          "/ *.lowrank_b) yet");
    EVLM_TRY(check_precision(&p, &qs));
    EVLM_TRY(check_params(c, &p, &ctx));
    EVLM_TRY(evlm__onnx_vision_plan(model, p.tiles, &n_tiles));
    if (!dir || !*dir) return evlm__fail(EVLM_ERR_ARG, "no output folder");
    if ((p.grid_h > 0) != (p.grid_w > 0) || p.grid_h < 0 || p.grid_w < 0 ||
        (p.grid_h > 0 && (!evlm_model_has_vision(model) || n_tiles > 0 ||
                          !(c->mrope_section[0] || c->mrope_section[1]))))
        return evlm__fail(EVLM_ERR_ARG,
                          "grid = %dx%d: a Qwen2-VL vision graph's patch rows x columns (both "
                          "positive)",
                          p.grid_h, p.grid_w);
    evlm__onnx_part pts[EVLM_PLAN_MAX_PARTS];
    EVLM_TRY(evlm__onnx_split(c, qs.target, qs.prec, p.ar, ctx, p.parts, pts, &np));
    EVLM_TRY(check_dest(dir));
    size_t cl = p.calib ? strlen(p.calib) : 0;
    if (n_tiles > 0 && qs.prec != EVLM_NPU_DEFAULT && qs.prec != EVLM_NPU_FP16 &&
        (cl < 6 || strcmp(p.calib + cl - 6, ".jsonl")))
        return evlm__fail(EVLM_ERR_ARG,
                          "precision '%s' of a vision model: the quantized vision graph's "
                          "activation encodings come from calibration images; calib %s is not a "
                          ".jsonl dataset with images (give one, or --tiles 0 for the text "
                          "graphs alone)",
                          p.precision, p.calib ? p.calib : "(none)");
    qdq_state *q = qs.prec == EVLM_NPU_DEFAULT ? NULL : &qs;
    /* Qwen2-VL (M-RoPE): no vision graph (evlm__onnx_vision_plan says what is missing), but the
     * prefill graph takes image features computed elsewhere (evlm prompt --features-out) */
    const bool ext_images = n_tiles == 0 && p.tiles >= 0 && evlm_model_has_vision(model) &&
                            (c->mrope_section[0] || c->mrope_section[1]);
    const bool image_in = n_tiles > 0 || ext_images;
    char *enc = NULL;

    size_t dl = strlen(dir);
    const size_t cap = dl + 64;
    char *tmpdir = malloc(dl + 16), *path = malloc(cap);
    size_t n_io = 5 + 4 * (size_t)c->n_layers + 1;
    xpart *xp = calloc((size_t)np, sizeof *xp);
    io_desc *ios = calloc(2 * n_io * (size_t)np, sizeof *ios);
    char(*wnames)[48] = calloc((size_t)np, sizeof *wnames);
    FILE **wfs = calloc((size_t)np, sizeof *wfs);
    wfile w = {0};
    char *man = NULL;
    cJSON *vis = NULL;
    evlm_status st = EVLM_OK;
    bool made = false;
    if (!tmpdir || !path || !xp || !ios || !wnames || !wfs) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting to %s", dir);
        goto done;
    }
    for (int k = 0; k < np; k++) { /* one part keeps the unsplit export's file names */
        xp[k].pt = pts[k];
        xp[k].io_pre = ios + 2 * n_io * (size_t)k;
        xp[k].io_dec = xp[k].io_pre + n_io;
        if (np == 1) {
            snprintf(wnames[k], sizeof wnames[k], "%s", WEIGHTS_FILE);
            snprintf(xp[k].f_pre, sizeof xp[k].f_pre, "decoder_ar%d.onnx", p.ar);
            snprintf(xp[k].f_dec, sizeof xp[k].f_dec, "decoder_ar1.onnx");
        } else {
            snprintf(wnames[k], sizeof wnames[k], "decoder_p%d.weights.bin", k);
            snprintf(xp[k].f_pre, sizeof xp[k].f_pre, "decoder_p%d_ar%d.onnx", k, p.ar);
            snprintf(xp[k].f_dec, sizeof xp[k].f_dec, "decoder_p%d_ar1.onnx", k);
        }
    }
    if (q) {
        qs.n_pts = c->n_layers * QDQ_N_GROUPS + 1;
        qs.pts = calloc((size_t)qs.n_pts, sizeof *qs.pts);
        qs.tensor = calloc((size_t)qs.n_pts, sizeof *qs.tensor);
        if (!qs.pts || !qs.tensor) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory exporting to %s", dir);
            goto done;
        }
        for (int i = 0; i < qs.n_pts; i++) {
            int g = i % QDQ_N_GROUPS;
            bool kv = i < c->n_layers * QDQ_N_GROUPS && !strncmp(evlm__qdq_groups[g], "kv_", 3);
            qs.pts[i].bits = kv ? qs.kv_bits : qs.act_bits;
        }
        qs.pool = evlm__model_pool(model);
        if (qs.prec != EVLM_NPU_FP16 && (st = calibrate(model, &p, &qs)) != EVLM_OK) goto done;
    }
    while (dl > 1 && dir[dl - 1] == '/') dl--; /* "out/" -> "out.tmp.XXXXXX" */
    snprintf(tmpdir, dl + 16, "%.*s.tmp.XXXXXX", (int)dl, dir);
    if (!mkdtemp(tmpdir)) {
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot create a folder beside it: %s", dir,
                        strerror(errno));
        goto done;
    }
    made = true;
    for (int k = 0; k < np && st == EVLM_OK; k++)
        st = write_part(d, q, ctx, p.ar, image_in, tmpdir, path, cap, k, np, wnames[k], &xp[k], &w);
    if (st != EVLM_OK) goto done;
    if (q && qs.mismatch) {
        st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                        "the prefill and decode graphs name a point differently");
        goto done;
    }
    if (q && qs.prec != EVLM_NPU_FP16) {
        for (int k = 0; k < np; k++) {
            snprintf(path, cap, "%s/%s", tmpdir, wnames[k]);
            wfs[k] = fopen(path, "rb");
        }
        enc = encodings(&qs, wfs);
        for (int k = 0; k < np; k++)
            if (wfs[k]) fclose(wfs[k]);
        snprintf(path, cap, "%s/encodings.json", tmpdir);
        st = enc ? evlm_write_file_atomic(path, enc, strlen(enc))
                 : evlm__fail(EVLM_ERR_IO, "%s: cannot write the encodings", path);
        if (st != EVLM_OK) goto done;
    }
    if (n_tiles > 0 || (ext_images && p.grid_h > 0)) {
        vis = cJSON_CreateObject();
        if (!vis || !cJSON_AddArrayToObject(vis, "graphs")) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory writing manifest.json");
            goto done;
        }
        cJSON *vg = cJSON_GetObjectItem(vis, "graphs");
        const int vbits = q && qs.prec != EVLM_NPU_FP16 ? qs.act_bits : 0; /* QDQ tower */
        if ((st = n_tiles > 0 ? evlm__onnx_vision_write(model, tmpdir, n_tiles,
                                                        vbits ? EXPORT_OPSET_QDQ : EXPORT_OPSET,
                                                        vbits, p.calib, vis, vg)
                              : evlm__onnx_qwen2vl_write(model, tmpdir, p.grid_h, p.grid_w,
                                                         EXPORT_OPSET, vis, vg)) != EVLM_OK)
            goto done;
    }
    man = manifest(model, d, p.ar, ctx, xp, np, wnames, p.parts > 0, vis, image_in, q,
                   p.precision ? p.precision : "fp32", p.calib, qs.target);
    if (!man) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory writing manifest.json");
        goto done;
    }
    snprintf(path, cap, "%s/manifest.json", tmpdir);
    if ((st = evlm_write_file_atomic(path, man, strlen(man))) != EVLM_OK) goto done;
    if (chmod(tmpdir, 0755) != 0 || rename(tmpdir, dir) != 0)
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot move the export in place: %s", dir,
                        strerror(errno));
    else
        made = false;
done:
    if (made) remove_tmp(tmpdir, path, cap); /* leave nothing behind */
    free(man);
    cJSON_Delete(vis);
    free(enc);
    free(qs.pts);
    free(qs.tensor);
    evlm_calib_free(qs.calib);
    free(qs.qw);
    free(w.e);
    free(xp);
    free(ios);
    free(wnames);
    free(wfs);
    free(tmpdir);
    free(path);
    return st;
}

#endif
