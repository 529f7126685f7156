/*
 * qat.c - fake quantization (qat.h): ggml's reference quantizer and dequantizer (quant/quants.h)
 * one block of 32 at a time, rows split over the pool; the rule of which tensor gets which type
 * (a mirror of compress/quantize.c); a model's QAT state (the fake-quantized copies, the LSQ
 * scales and their backward).
 * Not here: the layer walks that read the copies (tdecoder.c, tvision.c), the export.
 */
#include "train/qat.h"

#include "core/status.h"
#include "evlm_compress.h"
#include "quant/types.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLK_MAX 34 /* bytes of the largest block (Q8_0) */

bool evlm_tqat_applies(int cols) {
    return cols > 0 && cols % EVLM_QK == 0;
}

bool evlm_tqat_type_ok(evlm_type t) {
    return t == EVLM_TYPE_Q4_0 || t == EVLM_TYPE_Q4_1 || t == EVLM_TYPE_Q8_0;
}

typedef struct {
    float *dst;
    const float *w;
    int rows, cols;
    evlm_type t;
} fq_task;

/* the qat_ce loss's Q4_0 path, kept as it was (its gradients are fixtures) */
static void fq_fn(void *arg, int ith, int nth) {
    const fq_task *t = arg;
    int r0, r1;
    evlm_split_rows(t->rows, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        const float *x = t->w + (size_t)r * t->cols;
        float *y = t->dst + (size_t)r * t->cols;
        for (int b = 0; b < t->cols; b += EVLM_QK) {
            evlm_block_q4_0 q;
            evlm_quantize_row_q4_0(x + b, &q, EVLM_QK);
            evlm_dequantize_row_q4_0(&q, y + b, EVLM_QK);
        }
    }
}

void evlm_tqat_fake_quant(const evlm_tops *o, float *dst, const float *w, int rows, int cols) {
    fq_task t = {dst, w, rows, cols, EVLM_TYPE_Q4_0};
    if (o && o->pool)
        evlm_pool_run(o->pool, fq_fn, &t);
    else
        fq_fn(&t, 0, 1);
}

static void fq_type_fn(void *arg, int ith, int nth) {
    const fq_task *t = arg;
    int r0, r1;
    evlm_split_rows(t->rows, ith, nth, &r0, &r1);
    _Alignas(16) unsigned char blk[BLK_MAX];
    for (int r = r0; r < r1; r++) {
        const float *x = t->w + (size_t)r * t->cols;
        float *y = t->dst + (size_t)r * t->cols;
        for (int b = 0; b < t->cols; b += EVLM_QK) {
            evlm_quantize_row(t->t, x + b, blk, EVLM_QK);
            evlm_dequantize_row(t->t, blk, y + b, EVLM_QK);
        }
    }
}

void evlm_tqat_fake_quant_type(const evlm_tops *o, evlm_type t, float *dst, const float *w,
                               int rows, int cols) {
    fq_task k = {dst, w, rows, cols, t};
    if (o && o->pool)
        evlm_pool_run(o->pool, fq_type_fn, &k);
    else
        fq_type_fn(&k, 0, 1);
}

/* Mirror of compress/quantize.c: classify() gives decoder matrices, embedding and head `type`,
 * the vision roles `vision`, the rest its own type; can_hold() then keeps the file type of a
 * tensor that cannot hold the choice. */
evlm_type evlm_tqat_rule(int role, evlm_type src_type, int n_dims, int64_t cols, evlm_type type,
                         evlm_type vision) {
    if (role < 0 || role >= EVLM_ROLE_COUNT) return src_type;
    evlm_type to = role <= EVLM_ROLE_HEAD ? type : vision;
    if (to == src_type) return to;
    if (!evlm_type_is_file_float(src_type)) return src_type;
    if (evlm_type_is_quant(to))
        return n_dims == 2 && cols % evlm_type_block(to) == 0 ? to : src_type;
    return evlm_type_is_file_float(to) ? to : src_type;
}

/* ---- LSQ ----------------------------------------------------------------------------------- */

/* code and whether it was clamped, ggml's rounding: Q4_0 nibble(v + 8.5) - 8, Q8_0 roundf */
static int lsq_code(evlm_type t, float v, int *clamped) {
    *clamped = 0;
    if (t == EVLM_TYPE_Q4_0) {
        float b = v + 8.5f;
        if (!(b == b) || b < 0.0f) {
            *clamped = -1;
            return -8;
        }
        if (b >= 16.0f) {
            *clamped = 1;
            return 7;
        }
        return (int)b - 8;
    }
    float r = roundf(v);
    if (!(r == r) || r < -127.0f) {
        *clamped = -1;
        return -127;
    }
    if (r > 127.0f) {
        *clamped = 1;
        return 127;
    }
    return (int)r;
}

static float lsq_d(float s, uint16_t *h) {
    *h = evlm_f32_to_f16(s);
    return evlm_f16_to_f32(*h);
}

void evlm_tqat_lsq_row(evlm_type t, const float *w, const float *s, void *blk, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++, w += EVLM_QK) {
        uint16_t h;
        const float d = lsq_d(s[b], &h), id = d != 0.0f ? 1.0f / d : 0.0f;
        int c;
        if (t == EVLM_TYPE_Q4_0) {
            evlm_block_q4_0 *y = (evlm_block_q4_0 *)blk + b;
            y->d = h;
            for (int j = 0; j < EVLM_QK / 2; j++) {
                int q0 = lsq_code(t, w[j] * id, &c) + 8;
                int q1 = lsq_code(t, w[EVLM_QK / 2 + j] * id, &c) + 8;
                y->qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        } else {
            evlm_block_q8_0 *y = (evlm_block_q8_0 *)blk + b;
            y->d = h;
            for (int j = 0; j < EVLM_QK; j++) y->qs[j] = (int8_t)lsq_code(t, w[j] * id, &c);
        }
    }
}

void evlm_tqat_lsq_row_bwd(evlm_type t, const float *w, const float *s, const float *g, float *dw,
                           float *ds, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        uint16_t h;
        const float d = lsq_d(s[b], &h), id = d != 0.0f ? 1.0f / d : 0.0f;
        double acc = 0;
        for (int j = 0; j < EVLM_QK; j++) {
            const int64_t k = b * EVLM_QK + j;
            const float v = w[k] * id;
            int c, q = lsq_code(t, v, &c);
            if (c) {
                acc += (double)g[k] * q;
            } else {
                if (dw) dw[k] += g[k];
                acc += (double)g[k] * ((double)q - (double)v);
            }
        }
        if (ds) ds[b] += (float)acc;
    }
}

/* ---- a model's state ----------------------------------------------------------------------- */

void evlm_tqat_release(evlm_tqat *q) {
    free(q->stored);
    free(q->fq_off);
    free(q->scale_of);
    free(q->fq);
    free(q->fg);
    evlm_tparams_release(&q->scales);
    memset(q, 0, sizeof *q);
}

static int64_t p_cols(const evlm_tparam *p) {
    return p->shape[p->n_dims - 1];
}

/* the quantizer's d of each block of w (n floats): the LSQ initialization */
static void init_scales(evlm_type t, const float *w, float *s, size_t n) {
    _Alignas(16) unsigned char blk[BLK_MAX];
    for (size_t b = 0; b < n / EVLM_QK; b++) {
        evlm_quantize_row(t, w + b * EVLM_QK, blk, EVLM_QK);
        uint16_t h;
        memcpy(&h, blk, sizeof h); /* d is the first field of every block type */
        s[b] = evlm_f16_to_f32(h);
    }
}

evlm_status evlm_tqat_init(evlm_tqat *q, const evlm_model *m, const evlm_tparams *tp,
                           evlm_type type, evlm_type vision, bool learn_scales) {
    memset(q, 0, sizeof *q);
    if (!evlm_tqat_type_ok(type) || !evlm_tqat_type_ok(vision))
        return evlm__fail(EVLM_ERR_ARG, "qat types: %s / %s, each must be Q4_0, Q4_1 or Q8_0",
                          evlm_type_name(type), evlm_type_name(vision));
    if (learn_scales && (type == EVLM_TYPE_Q4_1 || vision == EVLM_TYPE_Q4_1))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "learn_scales with Q4_1: its block minimum is not learned (use Q4_0 "
                          "or Q8_0)");
    const int n = tp->n;
    q->tp = tp;
    q->learn_scales = learn_scales;
    q->stored = malloc(sizeof *q->stored * (size_t)n);
    q->fq_off = malloc(sizeof *q->fq_off * (size_t)n);
    q->scale_of = malloc(sizeof *q->scale_of * (size_t)n);
    int *role = malloc(sizeof *role * (size_t)n);
    if (!q->stored || !q->fq_off || !q->scale_of || !role) {
        free(role);
        evlm_tqat_release(q);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) role[i] = -1;
    const int nm = evlm_model_n_matrices(m);
    for (int j = 0; j < nm; j++) {
        evlm_matrix_info info;
        if (evlm_model_matrix(m, j, &info) != EVLM_OK || !info.name) continue;
        const evlm_tparam *p = evlm_tparams_find(tp, info.name);
        if (p) role[p - tp->p] = (int)info.role;
    }
    size_t off = 0, n_sc = 0, sc_floats = 0;
    for (int i = 0; i < n; i++) {
        const evlm_tparam *p = &tp->p[i];
        q->stored[i] = evlm_tqat_rule(role[i], p->src_type, p->n_dims, p_cols(p), type, vision);
        q->fq_off[i] = SIZE_MAX;
        q->scale_of[i] = -1;
        if (!evlm_type_is_quant(q->stored[i])) continue;
        q->fq_off[i] = off;
        off += (p->n + 15) & ~(size_t)15;
        if (learn_scales) {
            q->scale_of[i] = (int)n_sc++;
            sc_floats += ((p->n / EVLM_QK) + 15) & ~(size_t)15;
        }
    }
    free(role);
    q->fq_floats = off;
    q->fq = aligned_alloc(64, (off ? off : 16) * sizeof(float));
    if (learn_scales) q->fg = aligned_alloc(64, (off ? off : 16) * sizeof(float));
    if (!q->fq || (learn_scales && !q->fg)) {
        evlm_tqat_release(q);
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB of fake-quantized matrices",
                          (off * sizeof(float)) >> 20);
    }
    if (learn_scales && n_sc > 0) {
        evlm_tparams *s = &q->scales;
        s->p = calloc(n_sc, sizeof *s->p);
        s->mem = aligned_alloc(64, 4 * sc_floats * sizeof(float));
        if (!s->p || !s->mem) {
            evlm_tqat_release(q);
            return evlm__fail(EVLM_ERR_NOMEM, "out of memory for the block scales");
        }
        memset(s->mem, 0, 4 * sc_floats * sizeof(float));
        s->n = (int)n_sc;
        s->n_floats = sc_floats;
        s->w = s->mem;
        s->g = s->w + sc_floats;
        s->m = s->g + sc_floats;
        s->v = s->m + sc_floats;
        size_t so = 0;
        for (int i = 0; i < n; i++) {
            if (q->scale_of[i] < 0) continue;
            const evlm_tparam *p = &tp->p[i];
            evlm_tparam *sp = &s->p[q->scale_of[i]];
            if (snprintf(sp->name, sizeof sp->name, "qat.scale.%s", p->name) >=
                (int)sizeof sp->name) {
                evlm_tqat_release(q);
                return evlm__fail(EVLM_ERR_FORMAT, "tensor name '%s' is too long for its scales",
                                  p->name);
            }
            sp->n_dims = 2;
            sp->shape[0] = (int64_t)(p->n / p_cols(p));
            sp->shape[1] = p_cols(p) / EVLM_QK;
            sp->shape[2] = sp->shape[3] = 1;
            sp->n = p->n / EVLM_QK;
            sp->off = so;
            sp->src_type = EVLM_TYPE_F32;
            sp->trainable = true;
            init_scales(q->stored[i], tp->w + p->off, s->w + so, p->n);
            so += (sp->n + 15) & ~(size_t)15;
        }
    }
    if (learn_scales) memset(q->fg, 0, (off ? off : 16) * sizeof(float));
    return EVLM_OK;
}

void evlm_tqat_blocks(const evlm_tqat *q, int i, void *dst) {
    const evlm_tparam *p = &q->tp->p[i];
    const evlm_type t = q->stored[i];
    const int64_t cols = p_cols(p), rows = (int64_t)(p->n / (size_t)cols);
    const size_t row_bytes = evlm_row_bytes(t, cols);
    const float *w = q->tp->w + p->off;
    const float *s = q->scale_of[i] >= 0 ? q->scales.w + q->scales.p[q->scale_of[i]].off : NULL;
    for (int64_t r = 0; r < rows; r++) {
        char *y = (char *)dst + (size_t)r * row_bytes;
        if (s)
            evlm_tqat_lsq_row(t, w + r * cols, s + r * (cols / EVLM_QK), y, cols);
        else
            evlm_quantize_row(t, w + r * cols, y, cols);
    }
}

typedef struct {
    evlm_tqat *q;
    int i;
    bool bwd;
} st_task;

/* rows of parameter i: the forward copy (blocks then their dequantization), or the LSQ
 * backward of its fg */
static void state_fn(void *arg, int ith, int nth) {
    const st_task *k = arg;
    evlm_tqat *q = k->q;
    const evlm_tparam *p = &q->tp->p[k->i];
    const evlm_type t = q->stored[k->i];
    const int64_t cols = p_cols(p);
    const int rows = (int)(p->n / (size_t)cols), nb = (int)(cols / EVLM_QK);
    const float *w = q->tp->w + p->off;
    float *y = q->fq + q->fq_off[k->i];
    const evlm_tparam *sp = q->scale_of[k->i] >= 0 ? &q->scales.p[q->scale_of[k->i]] : NULL;
    const float *s = sp ? q->scales.w + sp->off : NULL;
    int r0, r1;
    evlm_split_rows(rows, ith, nth, &r0, &r1);
    _Alignas(16) unsigned char blk[BLK_MAX];
    for (int r = r0; r < r1; r++) {
        const float *wr = w + (size_t)r * cols;
        if (k->bwd) {
            float *g = q->fg + q->fq_off[k->i] + (size_t)r * cols;
            float *dw = p->trainable && q->tp->g ? q->tp->g + p->off + (size_t)r * cols : NULL;
            float *ds = sp && sp->trainable ? q->scales.g + sp->off + (size_t)r * nb : NULL;
            evlm_tqat_lsq_row_bwd(t, wr, s + (size_t)r * nb, g, dw, ds, cols);
            memset(g, 0, sizeof(float) * (size_t)cols);
            continue;
        }
        for (int b = 0; b < nb; b++) {
            const float *x = wr + (size_t)b * EVLM_QK;
            if (s)
                evlm_tqat_lsq_row(t, x, s + (size_t)r * nb + b, blk, EVLM_QK);
            else
                evlm_quantize_row(t, x, blk, EVLM_QK);
            evlm_dequantize_row(t, blk, y + (size_t)r * cols + (size_t)b * EVLM_QK, EVLM_QK);
        }
    }
}

static void run_all(evlm_tqat *q, const evlm_tops *o, bool bwd) {
    for (int i = 0; i < q->tp->n; i++) {
        if (q->fq_off[i] == SIZE_MAX) continue;
        st_task k = {q, i, bwd};
        if (o && o->pool)
            evlm_pool_run(o->pool, state_fn, &k);
        else
            state_fn(&k, 0, 1);
    }
}

void evlm_tqat_refresh(evlm_tqat *q, const evlm_tops *o) {
    run_all(q, o, false);
}

void evlm_tqat_backward(evlm_tqat *q, const evlm_tops *o) {
    if (q->learn_scales) run_all(q, o, true);
}

const float *evlm_tqat_w(const evlm_tqat *q, const evlm_tparam *p) {
    const size_t i = (size_t)(p - q->tp->p);
    if (q->fq_off[i] != SIZE_MAX) return q->fq + q->fq_off[i];
    return q->tp->w + p->off;
}

float *evlm_tqat_g(const evlm_tqat *q, const evlm_tparam *p) {
    if (!q->learn_scales) return NULL;
    const size_t i = (size_t)(p - q->tp->p);
    return q->fq_off[i] != SIZE_MAX ? q->fg + q->fq_off[i] : NULL;
}

void evlm_tqat_round_floats(const evlm_tqat *q, evlm_tparams *tp) {
    for (int i = 0; i < tp->n && i < q->tp->n; i++) {
        const evlm_type t = q->stored[i];
        if (t != EVLM_TYPE_F16 && t != EVLM_TYPE_BF16) continue;
        float *w = tp->w + tp->p[i].off;
        for (size_t k = 0; k < tp->p[i].n; k++) {
            uint16_t h;
            evlm_quantize_row(t, w + k, &h, 1);
            evlm_dequantize_row(t, &h, w + k, 1);
        }
    }
}
