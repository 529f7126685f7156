/* awq.c - activation-aware scale search and the folds that make it free at run time (see awq.h). */
#include "compress/awq.h"

#include "compress/rtn.h"
#include "core/status.h"
#include "quant/quants.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

evlm_awq_params evlm_awq_default_params(void) {
    evlm_awq_params p = {20, 512};
    return p;
}

void evlm_awq_scales(const float *mean_abs, int64_t k, float alpha, float *s) {
    float mx = 0.0f, mn = INFINITY;
    for (int64_t j = 0; j < k; j++) {
        float v = alpha == 0.0f ? 1.0f : powf(mean_abs[j], alpha);
        s[j] = v > 1e-4f ? v : 1e-4f; /* silent channels: a floor, not a zero scale */
        mx = fmaxf(mx, s[j]);
        mn = fminf(mn, s[j]);
    }
    /* centre the scales geometrically: keeps W diag(s) in the range of W (alpha = 0: s = 1) */
    float c = (float)sqrt((double)mx * (double)mn);
    for (int64_t j = 0; j < k; j++) s[j] /= c;
}

/* ---- the search: rows of all linears of the group, split over threads ------------------- */

typedef struct search {
    evlm_type t;
    const evlm_awq_linear *lin;
    int n_lin;
    int64_t k, n_all, m; /* input width, rows of all linears, calibration rows */
    const float *x;      /* m x k */
    float *xs;           /* m x k: diag(s)^-1 x for the current s */
    const float *s;
    double *row_loss; /* n_all: 0 (float outputs) or the loss of the current s, per row */
    double *row_ref;  /* n_all: sum_i (w . x_i)^2 */
    float *scratch;   /* per thread: k (scaled row) + k (its error) floats + a block row */
    size_t scratch_per;
    int phase; /* 0: row_ref, 1: loss for s */
} search;

static const float *row_of(const search *a, int64_t r) {
    for (int i = 0; i < a->n_lin; i++) {
        if (r < a->lin[i].n) return a->lin[i].w + r * a->k;
        r -= a->lin[i].n;
    }
    return NULL;
}

/* float dot with 8 partial sums (vectorizes without -ffast-math); the error vectors it is used
 * on are small, so its rounding is relative to the error measured, not to W x */
static float dot8(const float *a, const float *b, int64_t k) {
    float acc[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= k; j += 8)
        for (int t = 0; t < 8; t++) acc[t] += a[j + t] * b[j + t];
    for (; j < k; j++) acc[0] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void search_task(void *arg, int ith, int nth) {
    search *a = arg;
    const int64_t k = a->k;
    float *ws = a->scratch + (size_t)ith * a->scratch_per, *e = ws + k;
    void *blocks = e + k;
    int r0, r1;
    evlm_split_rows((int)a->n_all, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *w = row_of(a, r);
        double loss = 0.0;
        if (a->phase == 0) {
            for (int64_t i = 0; i < a->m; i++) {
                const float *xi = a->x + i * k;
                double acc = 0.0;
                for (int64_t j = 0; j < k; j++) acc += (double)w[j] * (double)xi[j];
                loss += acc * acc;
            }
            a->row_ref[r] = loss;
            continue;
        }
        /* Q(W diag(s)) diag(s)^-1 x - W x = (Q(W diag(s)) - W diag(s)) diag(s)^-1 x */
        for (int64_t j = 0; j < k; j++) ws[j] = w[j] * a->s[j];
        evlm_quantize_row(a->t, ws, blocks, k);
        evlm_dequantize_row(a->t, blocks, e, k);
        for (int64_t j = 0; j < k; j++) e[j] -= ws[j];
        for (int64_t i = 0; i < a->m; i++) {
            double d = (double)dot8(e, a->xs + i * k, k);
            loss += d * d;
        }
        a->row_loss[r] = loss;
    }
}

static double group_loss(search *a, evlm_pool *pool) {
    if (pool)
        evlm_pool_run(pool, search_task, a);
    else
        search_task(a, 0, 1);
    const double *v = a->phase ? a->row_loss : a->row_ref;
    double sum = 0.0;
    for (int64_t r = 0; r < a->n_all; r++) sum += v[r]; /* fixed order */
    return sum;
}

evlm_status evlm_awq_search(evlm_type t, const evlm_awq_linear *lin, int n_lin, int64_t k,
                            const float *mean_abs, const float *x, int64_t n_rows,
                            const evlm_awq_params *p, evlm_pool *pool, float *s,
                            evlm_awq_result *res) {
    evlm_awq_params dp = evlm_awq_default_params();
    if (!p) p = &dp;
    memset(res, 0, sizeof *res);
    if (!lin || n_lin <= 0 || !mean_abs || !x || !s)
        return evlm__fail(EVLM_ERR_ARG, "awq: no layers, statistics or output");
    if (p->n_grid <= 0 || p->n_grid > 1000 || p->max_rows < 0)
        return evlm__fail(EVLM_ERR_ARG, "awq: bad parameters (n_grid %d, max_rows %d)", p->n_grid,
                          p->max_rows);
    if (n_rows <= 0) return evlm__fail(EVLM_ERR_ARG, "awq: no calibration rows");
    int64_t n_all = 0;
    for (int i = 0; i < n_lin; i++) {
        EVLM_TRY(evlm_compress_check_shape("awq", t, lin[i].n, k));
        if (!lin[i].w) return evlm__fail(EVLM_ERR_ARG, "awq: layer %d has no weights", i);
        for (int64_t e = 0; e < lin[i].n * k; e++)
            if (!isfinite(lin[i].w[e]))
                return evlm__fail(EVLM_ERR_ARG,
                                  "awq: layer %d: non-finite weight at row %lld, column %lld", i,
                                  (long long)(e / k), (long long)(e % k));
        n_all += lin[i].n;
    }
    if (n_all > INT32_MAX) return evlm__fail(EVLM_ERR_ARG, "awq: %lld rows", (long long)n_all);
    for (int64_t j = 0; j < k; j++)
        if (!(mean_abs[j] >= 0.0f) || !isfinite(mean_abs[j]))
            return evlm__fail(EVLM_ERR_ARG, "awq: statistics: bad mean |x| of channel %lld",
                              (long long)j);
    int64_t m = p->max_rows && n_rows > p->max_rows ? p->max_rows : n_rows;
    for (int64_t e = 0; e < m * k; e++)
        if (!isfinite(x[e])) return evlm__fail(EVLM_ERR_ARG, "awq: non-finite calibration input");

    int nth = pool ? evlm_pool_size(pool) : 1;
    search a = {t, lin, n_lin, k, n_all, m, x, NULL, NULL, NULL, NULL, NULL, 0, 0};
    double *rows2 = malloc(sizeof(double) * 2 * (size_t)n_all);
    a.scratch_per = (size_t)(2 * k) + (evlm_row_bytes(t, k) + sizeof(float) - 1) / sizeof(float);
    a.xs = malloc(sizeof(float) * (size_t)(m * k));
    a.row_loss = rows2;
    a.row_ref = rows2 ? rows2 + n_all : NULL;
    a.scratch = malloc(sizeof(float) * a.scratch_per * (size_t)nth);
    float *cand = malloc(sizeof(float) * (size_t)k);
    evlm_status st = EVLM_OK;
    if (!a.xs || !rows2 || !a.scratch || !cand) {
        st = evlm__fail(EVLM_ERR_NOMEM, "awq: out of memory (%lld rows x %lld calibration rows)",
                        (long long)n_all, (long long)m);
        goto done;
    }
    res->ref = group_loss(&a, pool); /* phase 0: ||W x||^2 */
    a.phase = 1;
    a.s = cand;
    double best = HUGE_VAL;
    for (int g = 0; g <= p->n_grid; g++) {
        float alpha = (float)g / (float)p->n_grid;
        evlm_awq_scales(mean_abs, k, alpha, cand);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++) a.xs[i * k + j] = x[i * k + j] / cand[j];
        double loss = group_loss(&a, pool);
        if (g == 0) res->err_rtn = loss;
        if (loss < best) { /* strict: ties keep the smaller alpha (RTN first) */
            best = loss;
            res->alpha = alpha;
            res->err = loss;
            memcpy(s, cand, sizeof(float) * (size_t)k);
        }
    }
done:
    free(a.xs);
    free(rows2);
    free(a.scratch);
    free(cand);
    return st;
}

void evlm_awq_scale_cols(float *w, int64_t n, int64_t k, const float *s) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < k; j++) w[r * k + j] *= s[j];
}

/* ---- folds: why each is exact -------------------------------------------------------------
 * The quantized layer computes Q(W diag(s)) u, so its input must become u = diag(s)^-1 x.
 *  - RMSNorm: y_j = x_j / rms(x) * g_j; rms(x) does not involve g, so g_j / s_j gives y_j / s_j.
 *  - ffn_down's input is h_j = silu(gate_j) * up_j, a product per channel: up_j / s_j (row j of
 *    up_proj and its bias) gives h_j / s_j.
 *  - o_proj's input channel (h, d) is sum_t p_t v_t[kvh(h), d], a combination of the value
 *    channel (kvh(h), d) over tokens with weights that do not depend on v; scaling v_proj row
 *    (kvh, d) and its bias by 1/s scales every q head that reads that kv head, hence the tie.
 * (Inputs of an int8 / f16 KV cache are rounded after the scaling, which is not exact.) */

static evlm_status check_scales(const float *s, int64_t k) {
    for (int64_t j = 0; j < k; j++)
        if (!(s[j] > 0.0f) || !isfinite(s[j]))
            return evlm__fail(EVLM_ERR_ARG, "awq fold: scale %lld is %g", (long long)j,
                              (double)s[j]);
    return EVLM_OK;
}

evlm_status evlm_awq_fold_norm(float *g, int64_t k, const float *s) {
    EVLM_TRY(check_scales(s, k));
    for (int64_t j = 0; j < k; j++) g[j] /= s[j];
    return EVLM_OK;
}

evlm_status evlm_awq_fold_rows(float *w, float *b, int64_t k_prev, const float *s, int64_t k) {
    EVLM_TRY(check_scales(s, k));
    for (int64_t j = 0; j < k; j++) {
        for (int64_t i = 0; i < k_prev; i++) w[j * k_prev + i] /= s[j];
        if (b) b[j] /= s[j];
    }
    return EVLM_OK;
}

evlm_status evlm_awq_fold_v_proj(float *wv, float *bv, int64_t k_prev, const float *s, int n_heads,
                                 int n_kv_heads, int head_dim) {
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return evlm__fail(EVLM_ERR_ARG, "awq fold: bad heads (%d q, %d kv, dim %d)", n_heads,
                          n_kv_heads, head_dim);
    int group = n_heads / n_kv_heads;
    EVLM_TRY(check_scales(s, (int64_t)n_heads * head_dim));
    for (int h = 0; h < n_heads; h++)
        for (int d = 0; d < head_dim; d++)
            if (s[h * head_dim + d] != s[(h / group) * group * head_dim + d])
                return evlm__fail(EVLM_ERR_ARG,
                                  "awq fold: o_proj scales differ between q heads %d and %d that "
                                  "share kv head %d "
                                  "(tie them with evlm_awq_tie_heads)",
                                  (h / group) * group, h, h / group);
    for (int kvh = 0; kvh < n_kv_heads; kvh++)
        for (int d = 0; d < head_dim; d++) {
            float sj = s[kvh * group * head_dim + d];
            int64_t row = (int64_t)kvh * head_dim + d;
            for (int64_t i = 0; i < k_prev; i++) wv[row * k_prev + i] /= sj;
            if (bv) bv[row] /= sj;
        }
    return EVLM_OK;
}

evlm_status evlm_awq_tie_heads(float *mean_abs, int n_heads, int n_kv_heads, int head_dim) {
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return evlm__fail(EVLM_ERR_ARG, "awq: bad heads (%d q, %d kv, dim %d)", n_heads, n_kv_heads,
                          head_dim);
    int group = n_heads / n_kv_heads;
    for (int kvh = 0; kvh < n_kv_heads; kvh++)
        for (int d = 0; d < head_dim; d++) {
            double sum = 0.0;
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                sum += (double)mean_abs[h * head_dim + d];
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                mean_abs[h * head_dim + d] = (float)(sum / group);
        }
    return EVLM_OK;
}
