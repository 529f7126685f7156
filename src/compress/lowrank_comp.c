/*
 * lowrank_comp.c - low-rank compensation of quantization error inside evlm_quantize (pipeline.h,
 * evlm__q_lowrank_comp): for every quantized decoder matrix, E = W - Q(W) whitened by the
 * Cholesky factor L of its calibration covariance C = X^T X / N and truncated (the SVD of E L, as
 * LQER / QERA do in closed form), so that W x ~ Q(W) x + B (A x) with the smallest output error
 * on the calibration inputs for the rank. Ranks: one for all, or steps of rank handed out
 * greedily, each to the matrix whose next step removes the most output error (relative to the
 * matrix's output energy tr(W C W^T)) per bit it costs, until the extra bits per weight are spent.
 *
 * Not here: AWQ (its scaled matrices see scaled inputs: not done), the vision tower, the
 * embedding and head; the runtime (model/decoder.c adds the path).
 */
#include "compress/lowrank.h"
#include "compress/pipeline.h"
#include "core/status.h"
#include "quant/quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void evlm__lrcomp_free(evlm__lrcomp *c) {
    for (int i = 0; i < c->n; i++) {
        free((void *)(uintptr_t)c->t[i].name);
        free(c->t[i].data);
    }
    free(c->t);
    free(c->of);
    free(c->rel_err);
    memset(c, 0, sizeof *c);
}

typedef struct cand {
    qt *x;
    const evlm_calib_stat *cs;
    double *e; /* relative energies of E's components */
    int64_t kmax, r;
} cand;

static double bits_of(evlm_type t) {
    return 8.0 * (double)evlm_type_size(t) / evlm_type_block(t);
}

/* E = W - Q(W) of x, floats n x k; w receives W */
static evlm_status error_matrix(const qt *x, float **w_out, float **e_out) {
    const int64_t n = x->src->ne[1], k = x->src->ne[0];
    float *w = evlm__q_widen(x->src), *e = malloc(sizeof(float) * (size_t)(n * k));
    if (!w || !e) {
        free(w);
        free(e);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", x->src->name);
    }
    const size_t rb = evlm_row_bytes(x->to, k);
    for (int64_t r = 0; r < n; r++) {
        evlm_dequantize_row(x->to, (const char *)x->qdata + (size_t)r * rb, e + r * k, k);
        for (int64_t j = 0; j < k; j++) e[r * k + j] = w[r * k + j] - e[r * k + j];
    }
    *w_out = w;
    *e_out = e;
    return EVLM_OK;
}

/* tr(W C W^T) with C = xtx / n_rows */
static double out_energy(const float *w, int64_t n, int64_t k, const evlm_calib_stat *cs) {
    double t = 0;
    for (int64_t o = 0; o < n; o++) {
        const float *row = w + o * k;
        for (int64_t a = 0; a < k; a++) {
            double acc = 0;
            for (int64_t b = 0; b < k; b++) acc += cs->xtx[a * k + b] * (double)row[b];
            t += (double)row[a] * acc;
        }
    }
    return t / (double)(cs->n_rows > 0 ? cs->n_rows : 1);
}

static evlm_status decompose(const cand *c, const float *e, evlm__lr *d) {
    const int64_t n = c->x->src->ne[1], k = c->x->src->ne[0];
    evlm_status st =
        evlm__lr_decompose(EVLM_LR_WHITEN, e, n, k, c->cs->xtx, c->cs->n_rows, NULL, 0, 1e-6, d);
    return st == EVLM_OK ? st : evlm__fail_prefix(st, "%s", c->x->src->name);
}

/* greedy steps of rank within the bit budget */
static void allocate(cand *cs, int n, int64_t step, double budget_bits, double fbits) {
    double used = 0;
    for (;;) {
        int best = -1;
        double best_score = 0;
        for (int i = 0; i < n; i++) {
            cand *c = &cs[i];
            int64_t to = c->r + step;
            if (to > c->kmax) continue;
            double cost = (double)step * (double)(c->x->src->ne[0] + c->x->src->ne[1]) * fbits;
            if (used + cost > budget_bits) continue;
            double g = 0;
            for (int64_t j = c->r; j < to; j++) g += c->e[j];
            if (best < 0 || g / cost > best_score) {
                best = i;
                best_score = g / cost;
            }
        }
        if (best < 0 || best_score <= 0) break;
        cs[best].r += step;
        used += (double)step * (double)(cs[best].x->src->ne[0] + cs[best].x->src->ne[1]) * fbits;
    }
}

static evlm_status store(evlm_type t, const float *f, int64_t rows, int64_t cols, void **out) {
    size_t rb = evlm_row_bytes(t, cols);
    char *d = malloc(rb * (size_t)rows);
    if (!d) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; r < rows; r++) evlm_quantize_row(t, f + r * cols, d + (size_t)r * rb, cols);
    *out = d;
    return EVLM_OK;
}

static evlm_status add_factor(evlm__lrcomp *out, const qt *x, const char *suffix, evlm_type t,
                              int64_t cols, int64_t rows, void *data) {
    const char *name = x->src->name;
    size_t len = strlen(name);
    if (len > 7 && !strcmp(name + len - 7, ".weight")) len -= 7;
    char *nm = malloc(len + 16);
    if (!nm) {
        free(data);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    snprintf(nm, len + 16, "%.*s%s", (int)len, name, suffix);
    evlm_tensor *v = &out->t[out->n];
    memset(v, 0, sizeof *v);
    v->name = nm;
    v->type = t;
    v->n_dims = 2;
    v->ne[0] = cols;
    v->ne[1] = rows;
    v->ne[2] = v->ne[3] = 1;
    v->data = data;
    evlm_tensor_set_contiguous(v);
    out->of[out->n] = x;
    out->rel_err[out->n] = -1;
    out->n++;
    out->bits += (double)(rows * cols) * bits_of(t);
    return EVLM_OK;
}

/* factors of c at rank c->r into out, with the compensated output error on the reservoir */
static evlm_status factor(const qctx *q, const cand *c, evlm__lrcomp *out) {
    const evlm_type t = q->p->lowrank_type;
    const int64_t n = c->x->src->ne[1], k = c->x->src->ne[0], r = c->r;
    float *w = NULL, *e = NULL;
    EVLM_TRY(error_matrix(c->x, &w, &e));
    evlm__lr d;
    evlm_status st = decompose(c, e, &d);
    float *a = malloc(sizeof(float) * (size_t)(r * k)),
          *b = malloc(sizeof(float) * (size_t)(n * r));
    float *tmp = malloc(sizeof(float) * (size_t)(r > k ? r : k));
    void *qa = NULL, *qb = NULL;
    if (st == EVLM_OK && (!a || !b || !tmp)) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    if (st == EVLM_OK) {
        evlm__lr_factors(&d, r, a, b);
        st = store(t, a, r, k, &qa);
    }
    if (st == EVLM_OK) st = store(t, b, n, r, &qb);
    evlm__lr_free(&d);
    double err = 0, ref = 0;
    if (st == EVLM_OK) { /* what the file holds: E - B' A' on the calibration rows */
        for (int64_t i = 0; i < r; i++)
            evlm_dequantize_row(t, (const char *)qa + (size_t)i * evlm_row_bytes(t, k), a + i * k,
                                k);
        for (int64_t o = 0; o < n; o++)
            evlm_dequantize_row(t, (const char *)qb + (size_t)o * evlm_row_bytes(t, r), b + o * r,
                                r);
        for (int s = 0; s < c->cs->n_kept; s++) {
            const float *xr = c->cs->rows + (size_t)s * (size_t)k;
            for (int64_t i = 0; i < r; i++) {
                double acc = 0;
                for (int64_t j = 0; j < k; j++) acc += (double)a[i * k + j] * (double)xr[j];
                tmp[i] = (float)acc;
            }
            for (int64_t o = 0; o < n; o++) {
                double y = 0, ye = 0;
                for (int64_t j = 0; j < k; j++) {
                    y += (double)w[o * k + j] * (double)xr[j];
                    ye += (double)e[o * k + j] * (double)xr[j];
                }
                for (int64_t i = 0; i < r; i++) ye -= (double)b[o * r + i] * (double)tmp[i];
                err += ye * ye;
                ref += y * y;
            }
        }
    }
    free(a);
    free(b);
    free(tmp);
    free(w);
    free(e);
    if (st != EVLM_OK) {
        free(qa);
        free(qb);
        return st;
    }
    EVLM_TRY(add_factor(out, c->x, ".lowrank_a", t, k, r, qa));
    out->rel_err[out->n - 1] = ref > 0 ? err / ref : 0;
    EVLM_TRY(add_factor(out, c->x, ".lowrank_b", t, r, n, qb));
    out->rel_err[out->n - 1] = ref > 0 ? err / ref : 0;
    return EVLM_OK;
}

evlm_status evlm__q_lowrank_comp(qctx *q, int64_t el, evlm__lrcomp *out) {
    memset(out, 0, sizeof *out);
    const evlm_quantize_params *p = q->p;
    if (p->lowrank_comp <= 0 && p->lowrank_bpw <= 0) return EVLM_OK;
    const int64_t step = evlm_type_is_quant(p->lowrank_type) ? 32 : 1;
    cand *cs = calloc((size_t)q->n + 1, sizeof *cs);
    int n = 0;
    if (!cs) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < q->n; i++) {
        qt *x = &q->t[i];
        if (x->kind != K_LM || !x->qdata || !evlm_type_is_quant(x->to) || !x->group) continue;
        const evlm_calib_stat *st = evlm_calib_find(q->calib, x->layer, x->group);
        if (!st || !st->xtx || st->k != x->src->ne[0] || st->n_rows < 1) continue;
        int64_t kmax = x->src->ne[0] < x->src->ne[1] ? x->src->ne[0] : x->src->ne[1];
        cs[n++] = (cand){x, st, NULL, kmax / step * step, 0};
    }
    evlm_status st = EVLM_OK;
    if (p->lowrank_comp > 0) {
        for (int i = 0; i < n; i++)
            cs[i].r = p->lowrank_comp < cs[i].kmax ? p->lowrank_comp : cs[i].kmax;
    } else {
        for (int i = 0; i < n && st == EVLM_OK; i++) { /* the energies of each error */
            evlm__q_progress(q, "lowrank", i, 2 * n);
            float *w = NULL, *e = NULL;
            evlm__lr d;
            if ((st = error_matrix(cs[i].x, &w, &e)) != EVLM_OK) break;
            if ((st = decompose(&cs[i], e, &d)) == EVLM_OK) {
                double tot = out_energy(w, cs[i].x->src->ne[1], cs[i].x->src->ne[0], cs[i].cs);
                cs[i].e = malloc(sizeof(double) * (size_t)d.kmax);
                if (!cs[i].e) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
                for (int64_t j = 0; cs[i].e && j < d.kmax; j++)
                    cs[i].e[j] = tot > 0 ? d.e[j] / tot : 0;
                evlm__lr_free(&d);
            }
            free(w);
            free(e);
        }
        if (st == EVLM_OK)
            allocate(cs, n, step, p->lowrank_bpw * (double)el, bits_of(p->lowrank_type));
    }
    if (st == EVLM_OK) {
        out->t = calloc((size_t)(2 * n + 1), sizeof *out->t);
        out->of = calloc((size_t)(2 * n + 1), sizeof *out->of);
        out->rel_err = calloc((size_t)(2 * n + 1), sizeof *out->rel_err);
        if (!out->t || !out->of || !out->rel_err) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n && st == EVLM_OK; i++) {
        evlm__q_progress(q, "lowrank", n + i, 2 * n);
        if (cs[i].r > 0) st = factor(q, &cs[i], out);
    }
    if (st == EVLM_OK) evlm__q_progress(q, "lowrank", 2 * n, 2 * n);
    for (int i = 0; i < n; i++) free(cs[i].e);
    free(cs);
    if (st != EVLM_OK) evlm__lrcomp_free(out);
    return st;
}
