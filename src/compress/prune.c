/*
 * prune.c - magnitude and Wanda masks and the prune stage of the pipeline (prune.h).
 * SparseGPT is gptq.c's column loop (evlm_gptq_run) with an adaptive mask; this file picks the
 * statistics, the masks and the output (float rows in the source dtype, or quantized rows whose
 * zeros stay 0) and measures what was reached.
 * Not here: the column loop (gptq.c), structured pruning, sparse storage formats.
 */
#include "compress/prune.h"

#include "compress/gptq.h"
#include "compress/rtn.h"
#include "core/status.h"
#include "quant/quants.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

evlm_status evlm_prune_check(const char *what, double sparsity, int keep_n, int group_m,
                             int64_t k) {
    if (group_m != 0) {
        if (sparsity != 0.0)
            return evlm__fail(EVLM_ERR_ARG, "%s: give a sparsity or an N:M pattern, not both",
                              what);
        if (group_m < 1 || keep_n < 0 || keep_n > group_m || 32 % group_m)
            return evlm__fail(EVLM_ERR_ARG,
                              "%s: pattern %d:%d: want N:M with 0 <= N <= M and M dividing 32 "
                              "(2:4, 4:8)",
                              what, keep_n, group_m);
        if (k > 0 && k % group_m)
            return evlm__fail(EVLM_ERR_ARG, "%s: %lld inputs are not a multiple of M = %d", what,
                              (long long)k, group_m);
        return EVLM_OK;
    }
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return evlm__fail(EVLM_ERR_ARG, "%s: sparsity %g is not in [0, 1)", what, sparsity);
    return EVLM_OK;
}

typedef struct cand {
    float score;
    int64_t j;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Marks the cnt least-scored of w[j0, j1) in mask. */
static void least(const float *w, const double *sq, int64_t j0, int64_t j1, int64_t cnt,
                  uint8_t *mask, cand *c) {
    for (int64_t j = j0; j < j1; j++) {
        float s = fabsf(w[j]);
        if (sq) s = (float)((double)s * sqrt(sq[j]));
        c[j - j0] = (cand){s, j};
        mask[j] = 0;
    }
    qsort(c, (size_t)(j1 - j0), sizeof *c, cand_cmp);
    for (int64_t t = 0; t < cnt; t++) mask[c[t].j] = 1;
}

evlm_status evlm_prune_mask(evlm_prune_method m, const float *w, int64_t n, int64_t k,
                            const double *sq, double sparsity, int keep_n, int group_m,
                            uint8_t *mask) {
    if (m != EVLM_PRUNE_MAGNITUDE && m != EVLM_PRUNE_WANDA)
        return evlm__fail(EVLM_ERR_ARG, "prune: method %d has no fixed mask", (int)m);
    if (n <= 0 || k <= 0 || !w || !mask)
        return evlm__fail(EVLM_ERR_ARG, "prune: bad matrix %lld x %lld", (long long)n,
                          (long long)k);
    if (m == EVLM_PRUNE_WANDA && !sq)
        return evlm__fail(EVLM_ERR_ARG, "prune: wanda needs the input norms");
    EVLM_TRY(evlm_prune_check("prune", sparsity, keep_n, group_m, k));
    cand *c = malloc(sizeof *c * (size_t)k);
    if (!c) return evlm__fail(EVLM_ERR_NOMEM, "prune: out of memory (k = %lld)", (long long)k);
    const double *s = m == EVLM_PRUNE_WANDA ? sq : NULL;
    int64_t cnt = llround(sparsity * (double)k);
    for (int64_t r = 0; r < n; r++) {
        const float *wr = w + r * k;
        uint8_t *mr = mask + r * k;
        if (group_m > 0)
            for (int64_t j0 = 0; j0 < k; j0 += group_m)
                least(wr, s, j0, j0 + group_m, group_m - keep_n, mr, c);
        else
            least(wr, s, 0, k, cnt, mr, c);
    }
    free(c);
    return EVLM_OK;
}

/* ---- the pipeline's stage ------------------------------------------------------------------ */

static const evlm_prune_params *pp(const qctx *q) {
    return &q->p->prune;
}

evlm_status evlm__prune_validate(const evlm_quantize_params *p, const evlm__qmethod *meth) {
    const evlm_prune_params *r = &p->prune;
    bool vision = r->vision_sparsity != 0.0 || r->vision_group_m != 0;
    if (r->method == EVLM_PRUNE_NONE && !vision) return EVLM_OK;
    if ((int)r->method < 0 || r->method > EVLM_PRUNE_SPARSEGPT)
        return evlm__fail(EVLM_ERR_ARG, "prune.method %d is not a pruning method", (int)r->method);
    if (r->method != EVLM_PRUNE_NONE)
        EVLM_TRY(evlm_prune_check("prune", r->sparsity, r->keep_n, r->group_m, 0));
    if (vision)
        EVLM_TRY(evlm_prune_check("prune.vision", r->vision_sparsity, r->vision_keep_n,
                                  r->vision_group_m, 0));
    if (r->n_keep < 0 || (r->n_keep > 0 && !r->keep))
        return evlm__fail(EVLM_ERR_ARG, "prune.keep: %d patterns without a list", r->n_keep);
    if ((r->method == EVLM_PRUNE_WANDA || r->method == EVLM_PRUNE_SPARSEGPT) && !p->calib_text &&
        !p->calib_jsonl)
        return evlm__fail(EVLM_ERR_ARG,
                          "prune: %s needs calibration data (calib_text or "
                          "calib_jsonl); magnitude needs none",
                          r->method == EVLM_PRUNE_WANDA ? "wanda" : "sparsegpt");
    if (meth->layer)
        return evlm__fail(EVLM_ERR_ARG,
                          "prune: %s folds scales around the weights and would not keep the "
                          "zeros: quantize pruned models with rtn or gptq",
                          meth->title);
    if (!p->keep_dtype && (p->type == EVLM_TYPE_Q4_1 || (vision && p->vision == EVLM_TYPE_Q4_1)))
        return evlm__fail(EVLM_ERR_ARG,
                          "prune: Q4_1 has no exact zero (its min shifts the grid): prune into "
                          "Q8_0, Q4_0 or a float type");
    return EVLM_OK;
}

bool evlm__prune_needs_hessian(const evlm_quantize_params *p) {
    return p->prune.method == EVLM_PRUNE_WANDA || p->prune.method == EVLM_PRUNE_SPARSEGPT;
}

static bool kept_dense(const evlm_prune_params *r, const char *name) {
    for (int i = 0; i < r->n_keep; i++)
        if (fnmatch(r->keep[i], name, 0) == 0) return true;
    return false;
}

bool evlm__prune_applies(const qctx *q, const qt *x) {
    return pp(q)->method != EVLM_PRUNE_NONE && x->kind == K_LM && !x->pinned &&
           !kept_dense(pp(q), x->src->name);
}

/* Output error of the written matrix wq (float rows) against w0: on the calibration rows of x's
 * group when there are some, else in weight space. */
static double rel_error(const qctx *q, const qt *x, const float *w0, const float *wq) {
    int64_t n = x->src->ne[1], k = x->src->ne[0];
    const evlm_calib_stat *st =
        q->calib && x->group ? evlm_calib_find(q->calib, x->layer, x->group) : NULL;
    double err = 0, ref = 0;
    if (st && st->n_kept > 0 && st->k == k) {
        for (int64_t r = 0; r < n; r++) {
            const float *a = w0 + r * k, *b = wq + r * k;
            for (int i = 0; i < st->n_kept; i++) {
                const float *xr = st->rows + (size_t)i * (size_t)k;
                double da = 0, db = 0;
                for (int64_t j = 0; j < k; j++) {
                    da += (double)a[j] * (double)xr[j];
                    db += (double)b[j] * (double)xr[j];
                }
                err += (da - db) * (da - db);
                ref += da * da;
            }
        }
    } else {
        for (int64_t i = 0; i < n * k; i++) {
            double d = (double)w0[i] - (double)wq[i];
            err += d * d;
            ref += (double)w0[i] * (double)w0[i];
        }
    }
    return ref > 0 ? err / ref : 0;
}

/* Rounds float rows to a float file type (what the export will write) in place. */
static evlm_status round_to(evlm_type t, float *w, int64_t n, int64_t k) {
    if (t == EVLM_TYPE_F32) return EVLM_OK;
    void *row = malloc(evlm_row_bytes(t, k));
    if (!row) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; r < n; r++) {
        evlm_quantize_row(t, w + r * k, row, k);
        evlm_dequantize_row(t, row, w + r * k, k);
    }
    free(row);
    return EVLM_OK;
}

/* x's final float rows (what the file holds, dequantized) into wq; the zero fraction. */
static double written(const qt *x, float *wq) {
    int64_t n = x->src->ne[1], k = x->src->ne[0];
    if (x->qdata)
        for (int64_t r = 0; r < n; r++)
            evlm_dequantize_row(x->to,
                                (const char *)x->qdata + (size_t)r * evlm_row_bytes(x->to, k),
                                wq + r * k, k);
    else
        memcpy(wq, x->fdata, sizeof(float) * (size_t)(n * k));
    int64_t z = 0;
    for (int64_t i = 0; i < n * k; i++) z += wq[i] == 0.0f;
    return (double)z / (double)(n * k);
}

/* Float result w (owned from here) as x's replacement rows in its float type. */
static evlm_status set_float(qt *x, float *w) {
    evlm_status st = round_to(x->to, w, x->src->ne[1], x->src->ne[0]);
    if (st != EVLM_OK) {
        free(w);
        return st;
    }
    free(x->fdata);
    x->fdata = w;
    evlm__q_set_view(x, EVLM_TYPE_F32, x->fdata);
    return EVLM_OK;
}

static void zero_masked(float *w, const uint8_t *mask, int64_t nk) {
    for (int64_t i = 0; i < nk; i++)
        if (mask[i]) w[i] = 0.0f;
}

evlm_status evlm__prune_matrix(qctx *q, qt *x, float *w, const evlm__qmethod *meth) {
    const evlm_prune_params *r = pp(q);
    int64_t n = x->src->ne[1], k = x->src->ne[0], nk = n * k;
    bool quant = evlm_type_is_quant(x->to);
    const evlm_calib_stat *st =
        q->calib && x->group ? evlm_calib_find(q->calib, x->layer, x->group) : NULL;
    bool stats = st && st->xtx && st->k == k && st->n_rows > 0;
    evlm_prune_method m = stats ? r->method : EVLM_PRUNE_MAGNITUDE; /* nothing reached it */
    bool gptq = quant && stats && meth->id == EVLM_QMETHOD_GPTQ;
    EVLM_TRY(evlm_prune_check(x->src->name, r->sparsity, r->keep_n, r->group_m, k));
    float *w0 = malloc(sizeof(float) * (size_t)nk), *wq = NULL;
    uint8_t *mask = malloc((size_t)nk);
    double *sq = NULL;
    evlm_status s = w0 && mask ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    if (s == EVLM_OK) memcpy(w0, w, sizeof(float) * (size_t)nk);
    evlm_gptq_params gp = evlm_gptq_default_params();
    evlm_gptq_result res;
    if (s == EVLM_OK && m != EVLM_PRUNE_SPARSEGPT) {
        if (m == EVLM_PRUNE_WANDA) {
            sq = malloc(sizeof(double) * (size_t)k);
            if (!sq) s = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            for (int64_t j = 0; s == EVLM_OK && j < k; j++) sq[j] = st->xtx[j * k + j];
        }
        if (s == EVLM_OK)
            s = evlm_prune_mask(m, w, n, k, sq, r->sparsity, r->keep_n, r->group_m, mask);
        if (s == EVLM_OK) zero_masked(w, mask, nk);
        if (s == EVLM_OK && quant) {
            s = evlm__q_alloc(x);
            evlm_gptq_prune fixed = {.mask = mask};
            if (s == EVLM_OK)
                s = gptq ? evlm_gptq_run(x->to, w, n, k, st->xtx, st->n_rows, &gp, &fixed,
                                         evlm__model_pool(q->m), x->qdata, &res)
                         : evlm_rtn_quantize(x->to, w, n, k, x->qdata);
            if (s == EVLM_OK) evlm__q_set_view(x, x->to, x->qdata);
        } else if (s == EVLM_OK) {
            float *f = malloc(sizeof(float) * (size_t)nk);
            if (!f) s = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            if (f) memcpy(f, w, sizeof(float) * (size_t)nk);
            if (s == EVLM_OK) s = set_float(x, f);
        }
        x->method = m == EVLM_PRUNE_WANDA ? (!quant ? "wanda"
                                             : gptq ? "wanda+gptq"
                                                    : "wanda+rtn")
                                          : (!quant ? "magnitude"
                                             : gptq ? "magnitude+gptq"
                                                    : "magnitude+rtn");
    } else if (s == EVLM_OK) {
        evlm_gptq_prune ad = {
            .sparsity = r->sparsity, .keep_n = r->keep_n, .group_m = r->group_m, .mask_out = mask};
        if (gptq) { /* SparseGPT and GPTQ in one pass */
            s = evlm__q_alloc(x);
            if (s == EVLM_OK)
                s = evlm_gptq_run(x->to, w, n, k, st->xtx, st->n_rows, &gp, &ad,
                                  evlm__model_pool(q->m), x->qdata, &res);
            if (s == EVLM_OK) evlm__q_set_view(x, x->to, x->qdata);
            x->method = "sparsegpt+gptq";
        } else {
            float *f = malloc(sizeof(float) * (size_t)nk);
            s = f ? evlm_gptq_run(EVLM_TYPE_F32, w, n, k, st->xtx, st->n_rows, &gp, &ad,
                                  evlm__model_pool(q->m), f, &res)
                  : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            if (s == EVLM_OK && quant) { /* the zeros map to 0 on Q8_0 / Q4_0 */
                s = evlm__q_alloc(x);
                if (s == EVLM_OK) s = evlm_rtn_quantize(x->to, f, n, k, x->qdata);
                if (s == EVLM_OK) evlm__q_set_view(x, x->to, x->qdata);
                free(f);
            } else if (s == EVLM_OK) {
                s = set_float(x, f);
            } else {
                free(f);
            }
            x->method = quant ? "sparsegpt+rtn" : "sparsegpt";
        }
    }
    if (s == EVLM_OK) {
        wq = malloc(sizeof(float) * (size_t)nk);
        if (!wq) s = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    if (s == EVLM_OK) {
        x->sparsity = written(x, wq);
        x->rel_err = rel_error(q, x, w0, wq);
    }
    free(w0);
    free(wq);
    free(mask);
    free(sq);
    return s == EVLM_OK ? s : evlm__fail_prefix(s, "%s", x->src->name);
}

evlm_status evlm__prune_layers(qctx *q, const evlm__qmethod *meth) {
    const int n_layers = evlm__model_config(q->m)->n_layers;
    const evlm_tensor **orig = calloc((size_t)n_layers * 7, sizeof *orig);
    if (!orig) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = EVLM_OK;
    for (int l = 0; l < n_layers && st == EVLM_OK; l++) {
        evlm__q_progress(q, "prune", l, n_layers);
        if (l > 0) { /* layer 0's inputs do not depend on any pruning */
            evlm_calib_select_layer(q->calib, l);
            st = evlm__q_observe_pass(q);
        }
        for (int i = 0; i < 7 && st == EVLM_OK; i++) {
            qt *x = q->lm[l * 7 + i];
            if (!x) continue;
            bool prune = evlm__prune_applies(q, x);
            if (x->pinned || !(evlm_type_is_quant(x->to) || prune)) continue;
            float *w = evlm__q_widen(x->src);
            st = !w      ? evlm__fail(EVLM_ERR_NOMEM, "out of memory")
                 : prune ? evlm__prune_matrix(q, x, w, meth)
                         : meth->matrix(q, x, w);
            free(w);
            if (st == EVLM_OK && x->slot && (x->qdata || x->fdata)) {
                orig[l * 7 + i] = *x->slot;
                *x->slot = &x->view; /* the next layers' inputs come through the pruned one */
            }
        }
    }
    for (int i = 0; i < n_layers * 7; i++)
        if (orig[i]) *q->lm[i]->slot = orig[i];
    free(orig);
    if (st == EVLM_OK) evlm__q_progress(q, "prune", n_layers, n_layers);
    return st;
}

evlm_status evlm__prune_vision(qctx *q) {
    const evlm_prune_params *r = pp(q);
    if (r->vision_sparsity == 0.0 && r->vision_group_m == 0) return EVLM_OK;
    int total = 0, done = 0;
    for (int i = 0; i < q->n; i++) total += q->t[i].kind == K_VISION;
    for (int i = 0; i < q->n; i++) {
        qt *x = &q->t[i];
        if (x->kind != K_VISION || x->pinned || x->src->n_dims != 2 || kept_dense(r, x->src->name))
            continue;
        evlm__q_progress(q, "prune vision", done++, total);
        int64_t n = x->src->ne[1], k = x->src->ne[0], nk = n * k;
        EVLM_TRY(evlm_prune_check(x->src->name, r->vision_sparsity, r->vision_keep_n,
                                  r->vision_group_m, k));
        float *w = evlm__q_widen(x->src), *wq = malloc(sizeof(float) * (size_t)nk);
        uint8_t *mask = malloc((size_t)nk);
        evlm_status s = w && wq && mask ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (s == EVLM_OK)
            s = evlm_prune_mask(EVLM_PRUNE_MAGNITUDE, w, n, k, NULL, r->vision_sparsity,
                                r->vision_keep_n, r->vision_group_m, mask);
        if (s == EVLM_OK) {
            memcpy(wq, w, sizeof(float) * (size_t)nk);
            zero_masked(wq, mask, nk);
        }
        if (s == EVLM_OK && evlm_type_is_quant(x->to)) {
            s = evlm__q_alloc(x);
            if (s == EVLM_OK) s = evlm_rtn_quantize(x->to, wq, n, k, x->qdata);
            if (s == EVLM_OK) evlm__q_set_view(x, x->to, x->qdata);
            x->method = "magnitude+rtn";
        } else if (s == EVLM_OK) {
            float *f = malloc(sizeof(float) * (size_t)nk);
            if (f) memcpy(f, wq, sizeof(float) * (size_t)nk);
            s = f ? set_float(x, f) : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            x->method = "magnitude";
        }
        if (s == EVLM_OK) {
            x->sparsity = written(x, wq);
            x->rel_err = rel_error(q, x, w, wq);
        }
        free(w);
        free(wq);
        free(mask);
        if (s != EVLM_OK) return evlm__fail_prefix(s, "%s", x->src->name);
    }
    evlm__q_progress(q, "prune vision", total, total);
    return EVLM_OK;
}
