/* gptq.c - GPTQ into ggml block formats and onto the ONNX export's symmetric grids (see
 * gptq.h). One column sweep serves both: a grid (the table below) says how many columns share a
 * scale, chooses the scale from the current weights and rounds a weight onto it. */
#include "compress/gptq.h"

#include "compress/rtn.h"
#include "core/status.h"
#include "quant/quants.h"

#include <lapacke.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define COL_TILE                                                                                   \
    512 /* columns of U streamed per lazy-update tile (128 x 512 floats stay in L2)                \
         */

evlm_gptq_params evlm_gptq_default_params(void) {
    evlm_gptq_params p = {0.01, 128, 4, NULL};
    return p;
}

/* ---- the block grids, the same arithmetic as quant/quants.c ------------------------------- */

static float inverse(float d) {
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    return isfinite(id) ? id : 0.0f;
}

static int8_t round_i8(float v) {
    if (!(v == v)) return 0;
    v = roundf(v);
    return (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);
}

static int nibble(float v) {
    if (!(v == v) || v < 0.0f) return 0;
    return v >= 15.0f ? 15 : (int)v;
}

/* One block's grid, fixed when its first column is reached. */
typedef struct grid {
    float id, dq, mq,
        min; /* inverse float scale, fp16-rounded scale, fp16-rounded min, float min */
} grid;

/* A block type's grid: init chooses it from the 32 current weights x and writes the block header
 * at blk; put rounds x (element j of the block) onto it, stores its code and returns the
 * dequantized value. */
typedef struct grid_fns {
    grid (*init)(const float *x, void *blk);
    float (*put)(const grid *g, float x, int j, void *blk);
} grid_fns;

static grid q8_0_init(const float *x, void *blk) {
    grid g = {0};
    float amax = 0.0f;
    for (int j = 0; j < EVLM_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    evlm_block_q8_0 *b = blk;
    b->d = evlm_f32_to_f16(d);
    g.id = inverse(d);
    g.dq = evlm_f16_to_f32(b->d);
    return g;
}

static grid q4_0_init(const float *x, void *blk) {
    grid g = {0};
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < EVLM_QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = max / -8.0f;
    evlm_block_q4_0 *b = blk;
    b->d = evlm_f32_to_f16(d);
    memset(b->qs, 0, sizeof b->qs);
    g.id = inverse(d);
    g.dq = evlm_f16_to_f32(b->d);
    return g;
}

static grid q4_1_init(const float *x, void *blk) {
    grid g = {0};
    float min = INFINITY, max = -INFINITY;
    for (int j = 0; j < EVLM_QK; j++) {
        min = fminf(min, x[j]);
        max = fmaxf(max, x[j]);
    }
    float d = (max - min) / 15.0f;
    evlm_block_q4_1 *b = blk;
    b->d = evlm_f32_to_f16(d);
    b->m = evlm_f32_to_f16(min);
    memset(b->qs, 0, sizeof b->qs);
    g.id = inverse(d);
    g.dq = evlm_f16_to_f32(b->d);
    g.mq = evlm_f16_to_f32(b->m);
    g.min = min;
    return g;
}

static float q8_0_put(const grid *g, float x, int j, void *blk) {
    int8_t q = round_i8(x * g->id);
    ((evlm_block_q8_0 *)blk)->qs[j] = q;
    return (float)q * g->dq;
}

/* nibble q of element j into a Q4 block's qs (j < 16 low, else high) */
static void put_nibble(uint8_t *qs, int j, int q) {
    if (j < EVLM_QK / 2)
        qs[j] |= (uint8_t)q;
    else
        qs[j - EVLM_QK / 2] |= (uint8_t)(q << 4);
}

static float q4_0_put(const grid *g, float x, int j, void *blk) {
    int q = nibble(x * g->id + 8.5f);
    put_nibble(((evlm_block_q4_0 *)blk)->qs, j, q);
    return (float)(q - 8) * g->dq;
}

static float q4_1_put(const grid *g, float x, int j, void *blk) {
    int q = nibble((x - g->min) * g->id + 0.5f);
    put_nibble(((evlm_block_q4_1 *)blk)->qs, j, q);
    return (float)q * g->dq + g->mq;
}

/* the block types GPTQ can write; other rows are empty */
static const grid_fns k_grids[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = {q8_0_init, q8_0_put},
    [EVLM_TYPE_Q4_0] = {q4_0_init, q4_0_put},
    [EVLM_TYPE_Q4_1] = {q4_1_init, q4_1_put},
};

/* ---- the export's symmetric grids (gptq.h) ---------------------------------------------- */

/* A group's scale from its m current weights x (written to *scale). */
static grid sym_init(const evlm_gptq_sym *sg, const float *x, int64_t m, float *scale) {
    grid g = {0};
    float amax = 0.0f;
    for (int64_t j = 0; j < m; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    g.dq = evlm_gptq_sym_scale(amax, sg->qmax);
    *scale = g.dq;
    return g;
}

static float sym_put(const evlm_gptq_sym *sg, const grid *g, float x, int8_t *code) {
    int8_t q = evlm_gptq_sym_code(x, g->dq, sg->qmax);
    *code = q;
    return (float)q * g->dq; /* DequantizeLinear: (q - 0) * scale */
}

static int64_t sym_groups(const evlm_gptq_sym *sg, int64_t k) {
    return sg->group >= k ? 1 : (k + sg->group - 1) / sg->group;
}

/* Row r of the grid's codes times their scales. */
static void sym_row(const evlm_gptq_sym *sg, int64_t r, int64_t k, float *out) {
    const int64_t gs = sg->group < k ? sg->group : k, nb = sym_groups(sg, k);
    for (int64_t i = 0; i < k; i++)
        out[i] = (float)sg->codes[r * k + i] * sg->scales[r * nb + i / gs];
}

void evlm_gptq_sym_round(const evlm_gptq_sym *sg, const float *w, int64_t n, int64_t k) {
    const int64_t gs = sg->group < k ? sg->group : k, nb = sym_groups(sg, k);
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            int64_t i0 = b * gs, i1 = i0 + gs < k ? i0 + gs : k;
            grid g = sym_init(sg, w + r * k + i0, i1 - i0, &sg->scales[r * nb + b]);
            for (int64_t i = i0; i < i1; i++) sym_put(sg, &g, w[r * k + i], &sg->codes[r * k + i]);
        }
}

/* ---- H^-1 = U^T U ---------------------------------------------------------------------- */

/* h (k x k, row-major, symmetric) damped in place with lambda = damp * mean diag; on success the
 * upper triangle (row-major) of h holds U with (h + lambda I)^-1 = U^T U. A row-major upper
 * triangle is a column-major lower one, so LAPACK works in place without transposes.
 * Returns the LAPACK info (> 0: not positive definite). */
static lapack_int chol_inverse_upper(double *h, int64_t k, double damp) {
    double mean = 0.0;
    for (int64_t i = 0; i < k; i++) mean += h[i * k + i];
    mean /= (double)k;
    for (int64_t i = 0; i < k; i++) h[i * k + i] += damp * mean;
    lapack_int kk = (lapack_int)k;
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', kk, h, kk);
    if (info == 0) info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', kk, h, kk);
    if (info == 0) info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', kk, h, kk);
    return info;
}

/* ---- the column sweep over a range of rows ---------------------------------------------- */

typedef struct sweep {
    evlm_type t;
    int64_t n, k, bc;
    const float *u; /* k x k, upper triangle valid */
    float *w;       /* n x k working weights */
    float *err;     /* n x bc scaled errors of the current block, per thread slice of rows */
    void *out;
    size_t rb;
    float *trace;
    const float *w0;   /* original weights (for the error) */
    const double *xtx; /* undamped, for the error */
    double *row_err, *row_ref;
    float *deq; /* nth x k: a dequantized row per thread */
    int nth;
    evlm_status st;
    /* pruning: mask (n x k, 1 = zero; NULL: none), adaptive when the selection is on */
    uint8_t *mask;
    bool quant;    /* t is a block type (else F32 rows) */
    bool adaptive; /* choose the mask on the way (SparseGPT) */
    double sparsity;
    int keep_n, group_m;
    struct cand *cand;        /* nth x max(bc, 32): candidates of a selection, per thread */
    const evlm_gptq_sym *sym; /* non-NULL: this symmetric grid instead of the block type t */
} sweep;

typedef struct cand {
    float score;
    int j;
} cand;

/* ascending score, then column: a total order, so the selection does not depend on qsort */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Sets mrow[j] for the cnt columns of [j0, j1) of least w_j^2 / U_jj^2. */
static void select_least(const sweep *s, const float *w, uint8_t *mrow, int64_t j0, int64_t j1,
                         int64_t cnt, cand *c) {
    int64_t m = j1 - j0;
    for (int64_t j = j0; j < j1; j++) {
        float d = s->u[j * s->k + j];
        c[j - j0] = (cand){w[j] * w[j] / (d * d), (int)j};
        mrow[j] = 0;
    }
    qsort(c, (size_t)m, sizeof *c, cand_cmp);
    for (int64_t t = 0; t < cnt && t < m; t++) mrow[c[t].j] = 1;
}

/* The adaptive selection due at column i of a row (block bounds i1, i2). */
static void select_at(const sweep *s, const float *w, uint8_t *mrow, int64_t i, int64_t i1,
                      int64_t i2, cand *c) {
    if (s->group_m > 0) {
        int64_t g = s->quant ? EVLM_QK : s->group_m;
        if (i % g) return;
        for (int64_t j0 = i; j0 < i + g && j0 < i2; j0 += s->group_m)
            select_least(s, w, mrow, j0, j0 + s->group_m, s->group_m - s->keep_n, c);
    } else if (i == i1) {
        int64_t cnt = llround(s->sparsity * (double)i2) - llround(s->sparsity * (double)i1);
        select_least(s, w, mrow, i1, i2, cnt, c);
    }
}

/* The 32 weights of the block at column i as the pruning inside the block will leave them: the
 * pruned ones 0, their errors spread over the block's later columns (rounding errors left out).
 * Pruning moves the weights it compensates far more than rounding does, so a grid chosen from
 * the weights before that would clip them. */
static void grid_lookahead(const sweep *s, const float *w, const uint8_t *mrow, int64_t i,
                           float *z) {
    for (int j = 0; j < EVLM_QK; j++) z[j] = w[i + j];
    for (int t = 0; t < EVLM_QK; t++) {
        if (!mrow[i + t]) continue;
        const float *urow = s->u + (i + t) * s->k + i;
        float d = z[t] / urow[t];
        z[t] = 0.0f;
        for (int j = t + 1; j < EVLM_QK; j++) z[j] -= d * urow[j];
    }
}

/* e^T xtx e and w0^T xtx w0 of one row, e = w0 - deq (dead inputs skipped) */
static void row_error(const float *w0, const float *deq, int64_t k, const double *xtx, double *err,
                      double *ref) {
    double se = 0.0, sr = 0.0;
    for (int64_t i = 0; i < k; i++) {
        const double *h = xtx + i * k;
        double ei = (double)w0[i] - (double)deq[i];
        if (h[i] == 0.0) continue; /* dead input: its whole row of xtx is 0 */
        double he = 0.0, hw = 0.0;
        for (int64_t j = 0; j < k; j++) {
            double wj = (double)w0[j];
            he += h[j] * (wj - (double)deq[j]);
            hw += h[j] * wj;
        }
        se += ei * he;
        sr += (double)w0[i] * hw;
    }
    *err = se;
    *ref = sr;
}

static void sweep_rows(sweep *s, int64_t r0, int64_t r1, float *deq, cand *cd) {
    const int64_t k = s->k, bc = s->bc;
    const evlm_gptq_sym *sg = s->sym;
    const int64_t gs = sg ? (sg->group < k ? sg->group : k) : EVLM_QK; /* columns per scale */
    const int64_t nb = sg ? sym_groups(sg, k) : 0;
    for (int64_t i1 = 0; i1 < k; i1 += bc) {
        int64_t i2 = i1 + bc < k ? i1 + bc : k;
        for (int64_t r = r0; r < r1; r++) {
            float *w = s->w + r * k, *e = s->err + r * bc, *tr = s->trace ? s->trace + r * k : NULL;
            char *orow = sg ? NULL : (char *)s->out + (size_t)r * s->rb;
            uint8_t *mrow = s->mask ? s->mask + r * k : NULL;
            const grid_fns *gf = sg ? NULL : &k_grids[s->t];
            grid g = {0};
            void *blk = NULL;
            if (sg && i1 % gs) /* a group that began in an earlier lazy block: its scale */
                g.dq = sg->scales[r * nb + i1 / gs];
            for (int64_t i = i1; i < i2; i++) {
                if (s->adaptive) select_at(s, w, mrow, i, i1, i2, cd);
                if (sg && i % gs == 0)
                    g = sym_init(sg, w + i, i + gs < k ? gs : k - i, &sg->scales[r * nb + i / gs]);
                else if (!sg && s->quant && i % EVLM_QK == 0) {
                    blk = orow + (size_t)(i / EVLM_QK) * evlm_type_size(s->t);
                    if (mrow) { /* the grid of the weights that stay */
                        float z[EVLM_QK];
                        grid_lookahead(s, w, mrow, i, z);
                        g = gf->init(z, blk);
                    } else {
                        g = gf->init(w + i, blk);
                    }
                }
                float x = w[i];
                if (tr) tr[i] = x;
                bool zero = mrow && mrow[i];
                float q;
                if (sg)
                    q = sym_put(sg, &g, x, &sg->codes[r * k + i]);
                else if (s->quant) /* 0 is on the Q8_0 / Q4_0 grids: code 0, nibble 8 */
                    q = gf->put(&g, zero ? 0.0f : x, (int)(i % EVLM_QK), blk);
                else
                    q = ((float *)(void *)orow)[i] = zero ? 0.0f : x;
                const float *urow = s->u + i * k;
                float d = (x - q) / urow[i];
                e[i - i1] = d;
                for (int64_t j = i + 1; j < i2; j++) w[j] -= d * urow[j];
            }
        }
        /* lazy update of the columns right of the block: W[:, i2:] -= E U[i1:i2, i2:] */
        for (int64_t c0 = i2; c0 < k; c0 += COL_TILE) {
            int64_t c1 = c0 + COL_TILE < k ? c0 + COL_TILE : k;
            for (int64_t r = r0; r < r1; r++) {
                float *w = s->w + r * k;
                const float *e = s->err + r * bc;
                for (int64_t t = 0; t < i2 - i1; t++) {
                    const float *urow = s->u + (i1 + t) * k;
                    float d = e[t];
                    for (int64_t j = c0; j < c1; j++) w[j] -= d * urow[j];
                }
            }
        }
    }
    /* per-row output error against the original weights, from the undamped xtx */
    for (int64_t r = r0; r < r1; r++) {
        if (sg)
            sym_row(sg, r, k, deq);
        else if (s->quant)
            evlm_dequantize_row(s->t, (const char *)s->out + (size_t)r * s->rb, deq, k);
        else
            memcpy(deq, (const char *)s->out + (size_t)r * s->rb, sizeof(float) * (size_t)k);
        row_error(s->w0 + r * k, deq, k, s->xtx, &s->row_err[r], &s->row_ref[r]);
    }
}

static void sweep_task(void *arg, int ith, int nth) {
    sweep *s = arg;
    int r0, r1;
    evlm_split_rows((int)s->n, ith, nth, &r0, &r1);
    size_t nc = (size_t)(s->bc > EVLM_QK ? s->bc : EVLM_QK);
    if (r0 < r1) sweep_rows(s, r0, r1, s->deq + (size_t)ith * (size_t)s->k, s->cand + ith * nc);
}

/* Checks a pruning request against the shape (k) and output type. */
static evlm_status check_prune(const evlm_gptq_prune *pr, evlm_type t, int64_t k) {
    if (t == EVLM_TYPE_Q4_1 && (pr->mask || pr->sparsity > 0.0 || pr->group_m > 0))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "gptq: Q4_1 has no exact zero on its grid (prune into Q8_0 or Q4_0)");
    if (!(pr->sparsity >= 0.0 && pr->sparsity < 1.0))
        return evlm__fail(EVLM_ERR_ARG, "gptq: sparsity %g is not in [0, 1)", pr->sparsity);
    if (pr->group_m != 0) {
        if (pr->sparsity > 0.0)
            return evlm__fail(EVLM_ERR_ARG, "gptq: both a sparsity and an N:M pattern");
        if (pr->group_m < 1 || EVLM_QK % pr->group_m || pr->keep_n < 0 ||
            pr->keep_n > pr->group_m || k % pr->group_m)
            return evlm__fail(EVLM_ERR_ARG,
                              "gptq: pattern %d:%d (N <= M, M dividing 32 and the %lld inputs)",
                              pr->keep_n, pr->group_m, (long long)k);
    }
    return EVLM_OK;
}

evlm_status evlm_gptq_quantize(evlm_type t, const float *w, int64_t n, int64_t k, const double *xtx,
                               int64_t n_samples, const evlm_gptq_params *p, evlm_pool *pool,
                               void *out, evlm_gptq_result *res) {
    return evlm_gptq_run(t, w, n, k, xtx, n_samples, p, NULL, pool, out, res);
}

/* The sweep onto block type t or F32 (sym NULL; pr: pruning) or onto sym's grid (pr none),
 * after the caller's checks of the type, grid and pruning request. */
static evlm_status gptq_run(evlm_type t, const evlm_gptq_sym *sym, const float *w, int64_t n,
                            int64_t k, const double *xtx, int64_t n_samples,
                            const evlm_gptq_params *p, const evlm_gptq_prune *pr, evlm_pool *pool,
                            void *out, evlm_gptq_result *res) {
    bool quant = t != EVLM_TYPE_F32;
    if (!w || !xtx || !out)
        return evlm__fail(EVLM_ERR_ARG, "gptq: NULL weights, statistics or output");
    if (n_samples <= 0) return evlm__fail(EVLM_ERR_ARG, "gptq: no calibration rows");
    if (!(p->damp >= 0.0) || p->block_cols <= 0 || p->max_retries < 0)
        return evlm__fail(EVLM_ERR_ARG, "gptq: bad parameters (damp %g, block_cols %d)", p->damp,
                          p->block_cols);
    if (n > INT32_MAX) return evlm__fail(EVLM_ERR_ARG, "gptq: %lld rows", (long long)n);
    for (int64_t i = 0; i < n * k; i++)
        if (!isfinite(w[i]))
            return evlm__fail(EVLM_ERR_ARG, "gptq: non-finite weight at row %lld, column %lld",
                              (long long)(i / k), (long long)(i % k));
    for (int64_t i = 0; i < k * k; i++)
        if (!isfinite(xtx[i]) || (i / k == i % k && xtx[i] < 0.0))
            return evlm__fail(EVLM_ERR_ARG, "gptq: statistics: bad entry (%lld, %lld) of X^T X",
                              (long long)(i / k), (long long)(i % k));

    int nth = pool ? evlm_pool_size(pool) : 1;
    size_t kk = (size_t)k * (size_t)k;
    double *h = malloc(sizeof(double) * kk);
    float *u = malloc(sizeof(float) * kk);
    float *wk = malloc(sizeof(float) * (size_t)n * (size_t)k);
    float *err = malloc(sizeof(float) * (size_t)n * (size_t)p->block_cols);
    double *row_err = malloc(sizeof(double) * 2 * (size_t)n);
    float *deq = malloc(sizeof(float) * (size_t)k * (size_t)nth);
    bool adaptive = !pr->mask && (pr->sparsity > 0.0 || pr->group_m > 0);
    bool pruning = pr->mask || adaptive;
    size_t nc = (size_t)(p->block_cols > EVLM_QK ? p->block_cols : EVLM_QK);
    uint8_t *mask = pruning && !pr->mask_out ? malloc((size_t)n * (size_t)k) : pr->mask_out;
    cand *cd = adaptive ? malloc(sizeof(cand) * nc * (size_t)nth) : NULL;
    evlm_status st = EVLM_OK;
    if (!h || !u || !wk || !err || !row_err || !deq || (pruning && !mask) || (adaptive && !cd)) {
        st = evlm__fail(EVLM_ERR_NOMEM, "gptq: out of memory (k = %lld, n = %lld)", (long long)k,
                        (long long)n);
        goto done;
    }

    /* H = 2/N xtx; dead inputs get H_jj = 1 and a zero weight column */
    memcpy(wk, w, sizeof(float) * (size_t)n * (size_t)k);
    double scale = 2.0 / (double)n_samples;
    double damp = p->damp, tried = damp;
    lapack_int info = 1;
    for (int attempt = 0; attempt <= p->max_retries && info != 0; attempt++) {
        tried = damp;
        damp = damp > 0.0 ? damp * 10.0 : 1e-6; /* the next attempt's */
        res->dead_cols = 0;
        for (size_t i = 0; i < kk; i++) h[i] = xtx[i] * scale;
        for (int64_t j = 0; j < k; j++)
            if (h[j * k + j] == 0.0) {
                h[j * k + j] = 1.0;
                res->dead_cols++;
                for (int64_t r = 0; r < n; r++) wk[r * k + j] = 0.0f;
            }
        info = chol_inverse_upper(h, k, tried);
        if (info < 0) {
            st = evlm__fail(EVLM_ERR_ARG, "gptq: LAPACK argument %d rejected", (int)-info);
            goto done;
        }
        if (info == 0) res->damp_used = tried;
    }
    if (info != 0) {
        st = evlm__fail(
            EVLM_ERR_RANGE,
            "gptq: the damped Hessian is not positive definite (k = %lld, last damp %g, minor %d)",
            (long long)k, tried, (int)info);
        goto done;
    }
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) u[i * k + j] = j >= i ? (float)h[i * k + j] : 0.0f;
    /* U_jj > 0 on success of dpotrf; guard the division anyway */
    for (int64_t i = 0; i < k; i++)
        if (!(u[i * k + i] > 0.0f) || !isfinite(u[i * k + i])) {
            st = evlm__fail(EVLM_ERR_RANGE,
                            "gptq: degenerate inverse Hessian factor at column %lld", (long long)i);
            goto done;
        }

    if (pr->mask && mask) memcpy(mask, pr->mask, (size_t)n * (size_t)k);
    sweep s = {.t = t,
               .n = n,
               .k = k,
               .bc = p->block_cols,
               .u = u,
               .w = wk,
               .err = err,
               .out = out,
               .rb = sym     ? 0
                     : quant ? evlm_row_bytes(t, k)
                             : sizeof(float) * (size_t)k,
               .trace = p->trace,
               .w0 = w,
               .xtx = xtx,
               .row_err = row_err,
               .row_ref = row_err + n,
               .deq = deq,
               .nth = nth,
               .st = EVLM_OK,
               .mask = pruning ? mask : NULL,
               .quant = quant,
               .adaptive = adaptive,
               .sparsity = pr->sparsity,
               .keep_n = pr->keep_n,
               .group_m = pr->group_m,
               .cand = cd,
               .sym = sym};
    if (pool)
        evlm_pool_run(pool, sweep_task, &s);
    else
        sweep_task(&s, 0, 1);

    for (int64_t r = 0; r < n; r++) { /* in row order: the sum does not depend on threads */
        res->err += row_err[r];
        res->ref += row_err[n + r];
    }
    if (res->err < 0.0) res->err = 0.0;
    res->rel_err = res->ref > 0.0 ? res->err / res->ref : 0.0;
done:
    free(h);
    free(u);
    free(wk);
    free(err);
    free(row_err);
    free(deq);
    free(cd);
    if (mask != pr->mask_out) free(mask);
    return st;
}

evlm_status evlm_gptq_run(evlm_type t, const float *w, int64_t n, int64_t k, const double *xtx,
                          int64_t n_samples, const evlm_gptq_params *p, const evlm_gptq_prune *pr,
                          evlm_pool *pool, void *out, evlm_gptq_result *res) {
    evlm_gptq_params dp = evlm_gptq_default_params();
    evlm_gptq_prune none = {0};
    if (!p) p = &dp;
    if (!pr) pr = &none;
    memset(res, 0, sizeof *res);
    if (t != EVLM_TYPE_F32) {
        EVLM_TRY(evlm_compress_check_shape("gptq", t, n, k));
        if (!k_grids[t].init)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "gptq: no GPTQ grid for %s", evlm_type_name(t));
    } else if (n <= 0 || k <= 0 || k > ((int64_t)1 << 20)) {
        return evlm__fail(EVLM_ERR_ARG, "gptq: bad shape %lld x %lld", (long long)n, (long long)k);
    }
    EVLM_TRY(check_prune(pr, t, k));
    if (p->block_cols % EVLM_QK)
        return evlm__fail(EVLM_ERR_ARG, "gptq: bad parameters (damp %g, block_cols %d)", p->damp,
                          p->block_cols);
    return gptq_run(t, NULL, w, n, k, xtx, n_samples, p, pr, pool, out, res);
}

evlm_status evlm_gptq_quantize_sym(const evlm_gptq_sym *sg, const float *w, int64_t n, int64_t k,
                                   const double *xtx, int64_t n_samples, const evlm_gptq_params *p,
                                   evlm_pool *pool, evlm_gptq_result *res) {
    evlm_gptq_params dp = evlm_gptq_default_params();
    if (!p) p = &dp;
    memset(res, 0, sizeof *res);
    if (!sg || !sg->codes || !sg->scales) return evlm__fail(EVLM_ERR_ARG, "gptq: no output grid");
    if (n <= 0 || k <= 0 || k > INT32_MAX)
        return evlm__fail(EVLM_ERR_ARG, "gptq: bad shape %lld x %lld", (long long)n, (long long)k);
    if (sg->qmax < 1 || sg->qmax > 127 || sg->group < 1)
        return evlm__fail(EVLM_ERR_ARG, "gptq: bad grid (qmax %d, group %lld)", sg->qmax,
                          (long long)sg->group);
    /* a group's scale comes from its current weights: the lazy updates must have reached them */
    if (sg->group < k && p->block_cols % sg->group)
        return evlm__fail(EVLM_ERR_ARG, "gptq: block_cols %d is not a multiple of the group %lld",
                          p->block_cols, (long long)sg->group);
    evlm_gptq_prune none = {0};
    return gptq_run(EVLM_TYPE_COUNT, sg, w, n, k, xtx, n_samples, p, &none, pool, sg->codes, res);
}

evlm_status evlm_gptq_sym_error(const evlm_gptq_sym *g, const float *w, int64_t n, int64_t k,
                                const double *xtx, double *err, double *ref) {
    float *deq = malloc(sizeof(float) * (size_t)(k > 0 ? k : 1));
    if (!deq) return evlm__fail(EVLM_ERR_NOMEM, "gptq: out of memory");
    *err = *ref = 0.0;
    for (int64_t r = 0; r < n; r++) {
        double e, f;
        sym_row(g, r, k, deq);
        row_error(w + r * k, deq, k, xtx, &e, &f);
        *err += e;
        *ref += f;
    }
    if (*err < 0.0) *err = 0.0;
    free(deq);
    return EVLM_OK;
}
