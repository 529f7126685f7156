/*
 * ops.c - the float32 training ops of ops.h but attention (ops_attn.c): linear through the
 * table's sgemm, RMSNorm, LayerNorm, SwiGLU, GELU (tanh), RoPE, add; the scratch plan.
 *
 * Every output element is computed by one thread in a fixed order, whatever the thread count:
 * row ops split rows; linear splits C (y, dx or dW) by rows or columns (sgemm's per-element
 * operations depend on k only, so the split does not change a bit; dW is never split over its
 * reduction m); the norms' dw / db split the output columns (each element summed over all rows
 * in row order by one thread). Results are therefore independent of the thread count.
 * Not here: the SIMD kernels (kernels/x86_*_train.c, arm_train.c), attention, the model's walk.
 */
#include "train/ops.h"
#include "train/ops_impl.h"

#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EVLM_TOPS_ALIGN 16 /* floats: per-thread scratch rows start on 64-byte boundaries */

static size_t round_up(size_t n) {
    return (n + EVLM_TOPS_ALIGN - 1) / EVLM_TOPS_ALIGN * EVLM_TOPS_ALIGN;
}

void evlm__tops_run(const evlm_tops *o, evlm_task_fn fn, void *arg) {
    if (o->pool)
        evlm_pool_run(o->pool, fn, arg);
    else
        fn(arg, 0, 1);
}
#define tops_run evlm__tops_run

evlm_status evlm_tops_init(evlm_tops *o, evlm_pool *pool, const evlm_kernels *k, int max_dim,
                           int max_seq, int head_dim) {
    memset(o, 0, sizeof *o);
    if (max_dim < 1 || max_seq < 0 || head_dim < 0)
        return evlm__fail(EVLM_ERR_ARG, "train ops: bad plan (max_dim %d, max_seq %d, head_dim %d)",
                          max_dim, max_seq, head_dim);
    o->pool = pool;
    o->k = k ? k : evlm_kernels_get();
    int nth = pool ? evlm_pool_size(pool) : 1;
    /* per thread: sgemm's packed panels, then attention's (ops_attn.c) block of scores and
     * one of their gradients (EVLM__ATTN_QB rows x max_seq keys each; head_dim does not count:
     * out, dq, dk and dv are written in place) */
    size_t need = EVLM_SGEMM_SCRATCH + 2 * (size_t)EVLM__ATTN_QB * (size_t)max_seq;
    (void)head_dim;
    o->scratch_stride = round_up(need);
    /* reserved for callers' row reductions (2 max_dim floats a thread): the ops here split
     * their reductions by output column instead and do not use it */
    o->reduce_stride = round_up(2 * (size_t)max_dim);
    o->scratch = aligned_alloc(64, o->scratch_stride * (size_t)nth * sizeof(float));
    o->reduce = aligned_alloc(64, o->reduce_stride * (size_t)nth * sizeof(float));
    if (!o->scratch || !o->reduce) {
        evlm_tops_release(o);
        return evlm__fail(EVLM_ERR_NOMEM, "train ops: scratch of %zu floats per thread x %d",
                          o->scratch_stride + o->reduce_stride, nth);
    }
    return EVLM_OK;
}

void evlm_tops_release(evlm_tops *o) {
    free(o->scratch);
    free(o->reduce);
    memset(o, 0, sizeof *o);
}

/* ---- linear ------------------------------------------------------------------------------- */

typedef struct lin_job {
    const evlm_tops *o;
    float *c;
    size_t ldc, lda, ldb;
    const float *a, *b, *bias;
    bool a_t, b_t, acc;
    int m, n, k;
    /* db: column sums of dy (m rows of n) */
    float *db;
    const float *dy;
} lin_job;

#define LIN_UNIT 48 /* C is split in multiples of 48 rows or columns (whole register tiles) */

/* Thread ith's block of C: rows (m >= n) or columns, in whole units; the kernel's per-element
 * operations do not depend on the block, so neither do the results. */
static void lin_task(void *arg, int ith, int nth) {
    const lin_job *j = arg;
    bool by_rows = j->m >= j->n;
    int units = ((by_rows ? j->m : j->n) + LIN_UNIT - 1) / LIN_UNIT, u0, u1;
    evlm_split_rows(units, ith, nth, &u0, &u1);
    int lim = by_rows ? j->m : j->n, e0 = u0 * LIN_UNIT, e1 = u1 * LIN_UNIT;
    if (e1 > lim) e1 = lim;
    if (e0 >= e1) return;
    float *scratch = j->o->scratch + (size_t)ith * j->o->scratch_stride;
    int r0 = by_rows ? e0 : 0, r1 = by_rows ? e1 : j->m;
    int c0 = by_rows ? 0 : e0, c1 = by_rows ? j->n : e1;
    bool acc = j->acc;
    if (j->bias) {
        for (int r = r0; r < r1; r++)
            memcpy(j->c + (size_t)r * j->ldc + c0, j->bias + c0, sizeof(float) * (size_t)(c1 - c0));
        acc = true;
    }
    const float *a = j->a_t ? j->a + r0 : j->a + (size_t)r0 * j->lda;
    const float *b = j->b_t ? j->b + (size_t)c0 * j->ldb : j->b + c0;
    j->o->k->sgemm(j->c + (size_t)r0 * j->ldc + c0, j->ldc, a, j->lda, j->a_t, b, j->ldb, j->b_t,
                   r1 - r0, c1 - c0, j->k, acc, scratch);
}

/* C (m, n) (+)= op(A) @ op(B) over the pool (kernels.h's sgemm layouts) */
static void tops_gemm(const evlm_tops *o, float *c, size_t ldc, const float *a, size_t lda,
                      bool a_t, const float *b, size_t ldb, bool b_t, const float *bias, int m,
                      int n, int k, bool acc) {
    if (m <= 0 || n <= 0) return;
    lin_job j = {.o = o,
                 .c = c,
                 .ldc = ldc,
                 .a = a,
                 .lda = lda,
                 .a_t = a_t,
                 .b = b,
                 .ldb = ldb,
                 .b_t = b_t,
                 .bias = bias,
                 .m = m,
                 .n = n,
                 .k = k,
                 .acc = acc};
    tops_run(o, lin_task, &j);
}

void evlm_top_linear(const evlm_tops *o, float *y, const float *x, const float *w, const float *b,
                     int m, int n, int k) {
    /* y = x (m, k) @ (w (n, k))^T: B (p, j) = w[j * k + p] */
    tops_gemm(o, y, (size_t)n, x, (size_t)k, false, w, (size_t)k, true, b, m, n, k, false);
}

/* db columns [c0, c1) of this thread, each summed over all m rows in row order */
static void lin_db_task(void *arg, int ith, int nth) {
    const lin_job *j = arg;
    int c0, c1;
    evlm_split_rows(j->n, ith, nth, &c0, &c1);
    for (int r = 0; r < j->m; r++) {
        const float *dyr = j->dy + (size_t)r * j->n;
        for (int c = c0; c < c1; c++) j->db[c] += dyr[c];
    }
}

void evlm_top_linear_bwd(const evlm_tops *o, float *dx, bool dx_acc, float *dw, float *db,
                         const float *dy, const float *x, const float *w, int m, int n, int k) {
    /* dx (m, k) = dy (m, n) @ w (n, k) */
    if (dx)
        tops_gemm(o, dx, (size_t)k, dy, (size_t)n, false, w, (size_t)k, false, NULL, m, k, n,
                  dx_acc);
    /* dw (n, k) += dy^T (n, m) @ x (m, k): A (i, p) = dy[p * n + i]; each element is one
     * thread's sum over all m rows (C is split by rows or columns of dw, never by m) */
    if (dw)
        tops_gemm(o, dw, (size_t)k, dy, (size_t)n, true, x, (size_t)k, false, NULL, n, k, m, true);
    if (db) {
        lin_job j = {.o = o, .db = db, .dy = dy, .m = m, .n = n};
        tops_run(o, lin_db_task, &j);
    }
}

/* ---- norms -------------------------------------------------------------------------------- */

typedef struct norm_job {
    const evlm_kernels *k;
    float *y, *mean, *rstd, *dx, *dw, *db;
    const float *x, *w, *b, *dy, *cmean, *crstd;
    int m, n;
    float eps;
} norm_job;

static void rms_fwd_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int r0, r1;
    evlm_split_rows(j->m, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        const float *xr = j->x + (size_t)r * j->n;
        float *yr = j->y + (size_t)r * j->n;
        float ss = 0.0f;
        for (int i = 0; i < j->n; i++) ss += xr[i] * xr[i];
        float rs = 1.0f / sqrtf(ss / (float)j->n + j->eps);
        if (j->rstd) j->rstd[r] = rs;
        for (int i = 0; i < j->n; i++) yr[i] = xr[i] * rs * j->w[i];
    }
}

void evlm_top_rmsnorm(const evlm_tops *o, float *y, float *rstd, const float *x, const float *w,
                      int m, int n, float eps) {
    norm_job j = {.y = y, .rstd = rstd, .x = x, .w = w, .m = m, .n = n, .eps = eps};
    tops_run(o, rms_fwd_task, &j);
}

static void rms_dx_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int r0, r1;
    evlm_split_rows(j->m, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        size_t off = (size_t)r * j->n;
        j->k->rmsnorm_bwd(j->dx + off, j->dy + off, j->x + off, j->w, j->crstd[r], j->n);
    }
}

static void rms_dw_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int c0, c1;
    evlm_split_rows(j->n, ith, nth, &c0, &c1);
    for (int r = 0; r < j->m; r++) {
        const float *xr = j->x + (size_t)r * j->n, *dyr = j->dy + (size_t)r * j->n;
        float rs = j->crstd[r];
        for (int i = c0; i < c1; i++) j->dw[i] += dyr[i] * xr[i] * rs;
    }
}

void evlm_top_rmsnorm_bwd(const evlm_tops *o, float *dx, float *dw, const float *dy, const float *x,
                          const float *w, const float *rstd, int m, int n) {
    norm_job j = {
        .k = o->k, .dx = dx, .dw = dw, .dy = dy, .x = x, .w = w, .crstd = rstd, .m = m, .n = n};
    if (dx) tops_run(o, rms_dx_task, &j);
    if (dw) tops_run(o, rms_dw_task, &j);
}

static void ln_fwd_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int r0, r1;
    evlm_split_rows(j->m, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        const float *xr = j->x + (size_t)r * j->n;
        float *yr = j->y + (size_t)r * j->n;
        float s = 0.0f;
        for (int i = 0; i < j->n; i++) s += xr[i];
        float mu = s / (float)j->n, v = 0.0f;
        for (int i = 0; i < j->n; i++) v += (xr[i] - mu) * (xr[i] - mu);
        float rs = 1.0f / sqrtf(v / (float)j->n + j->eps);
        if (j->mean) j->mean[r] = mu;
        if (j->rstd) j->rstd[r] = rs;
        for (int i = 0; i < j->n; i++)
            yr[i] = (xr[i] - mu) * rs * j->w[i] + (j->b ? j->b[i] : 0.0f);
    }
}

void evlm_top_layernorm(const evlm_tops *o, float *y, float *mean, float *rstd, const float *x,
                        const float *w, const float *b, int m, int n, float eps) {
    norm_job j = {
        .y = y, .mean = mean, .rstd = rstd, .x = x, .w = w, .b = b, .m = m, .n = n, .eps = eps};
    tops_run(o, ln_fwd_task, &j);
}

static void ln_dx_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int r0, r1;
    evlm_split_rows(j->m, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        size_t off = (size_t)r * j->n;
        j->k->layernorm_bwd(j->dx + off, j->dy + off, j->x + off, j->w, j->cmean[r], j->crstd[r],
                            j->n);
    }
}

static void ln_dw_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int c0, c1;
    evlm_split_rows(j->n, ith, nth, &c0, &c1);
    for (int r = 0; r < j->m; r++) {
        const float *xr = j->x + (size_t)r * j->n, *dyr = j->dy + (size_t)r * j->n;
        float mu = j->cmean[r], rs = j->crstd[r];
        for (int i = c0; i < c1; i++) {
            if (j->dw) j->dw[i] += dyr[i] * (xr[i] - mu) * rs;
            if (j->db) j->db[i] += dyr[i];
        }
    }
}

void evlm_top_layernorm_bwd(const evlm_tops *o, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, const float *mean, const float *rstd,
                            int m, int n) {
    norm_job j = {.k = o->k,
                  .dx = dx,
                  .dw = dw,
                  .db = db,
                  .dy = dy,
                  .x = x,
                  .w = w,
                  .cmean = mean,
                  .crstd = rstd,
                  .m = m,
                  .n = n};
    if (dx) tops_run(o, ln_dx_task, &j);
    if (dw || db) tops_run(o, ln_dw_task, &j);
}

/* ---- element-wise ------------------------------------------------------------------------- */

typedef struct ew_job {
    const evlm_kernels *k;
    float *a, *b;
    const float *c, *d, *e;
    size_t n;
} ew_job;

/* Thread ith's elements: whole blocks of EW_ALIGN (the last block may be short), so a piece
 * starts at a multiple of EW_ALIGN whatever the thread count and each element meets the same
 * vector lane or scalar tail of the kernels (the NEON tails' scalar exp differs from exp4's
 * bits): results do not depend on the thread count. */
#define EW_ALIGN ((size_t)64)
static void ew_range(size_t n, int ith, int nth, size_t *i0, size_t *i1) {
    size_t nb = (n + EW_ALIGN - 1) / EW_ALIGN;
    size_t per = nb / (size_t)nth, rem = nb % (size_t)nth, t = (size_t)ith;
    size_t b0 = t * per + (t < rem ? t : rem), b1 = b0 + per + (t < rem ? 1 : 0);
    *i0 = b0 * EW_ALIGN < n ? b0 * EW_ALIGN : n;
    *i1 = b1 * EW_ALIGN < n ? b1 * EW_ALIGN : n;
}

/* pieces of at most 2^30 elements: the kernels count in int */
#define EW_PIECE ((size_t)1 << 30)

static void swiglu_task(void *arg, int ith, int nth) {
    const ew_job *j = arg;
    size_t i0, i1;
    ew_range(j->n, ith, nth, &i0, &i1);
    for (size_t i = i0; i < i1; i += EW_PIECE) {
        int len = (int)(i1 - i < EW_PIECE ? i1 - i : EW_PIECE);
        if (j->a != j->c) memcpy(j->a + i, j->c + i, sizeof(float) * (size_t)len);
        j->k->silu_mul(j->a + i, j->d + i, len);
    }
}

void evlm_top_swiglu(const evlm_tops *o, float *h, const float *g, const float *u, size_t n) {
    ew_job j = {.k = o->k, .a = h, .c = g, .d = u, .n = n};
    tops_run(o, swiglu_task, &j);
}

static void swiglu_bwd_task(void *arg, int ith, int nth) {
    const ew_job *j = arg;
    size_t i0, i1;
    ew_range(j->n, ith, nth, &i0, &i1);
    for (size_t i = i0; i < i1; i += EW_PIECE) {
        int len = (int)(i1 - i < EW_PIECE ? i1 - i : EW_PIECE);
        j->k->swiglu_bwd(j->a ? j->a + i : NULL, j->b ? j->b + i : NULL, j->c + i, j->d + i,
                         j->e + i, len);
    }
}

void evlm_top_swiglu_bwd(const evlm_tops *o, float *dg, float *du, const float *dh, const float *g,
                         const float *u, size_t n) {
    ew_job j = {.k = o->k, .a = dg, .b = du, .c = dh, .d = g, .e = u, .n = n};
    tops_run(o, swiglu_bwd_task, &j);
}

static void gelu_task(void *arg, int ith, int nth) {
    const ew_job *j = arg;
    size_t i0, i1;
    ew_range(j->n, ith, nth, &i0, &i1);
    for (size_t i = i0; i < i1; i += EW_PIECE) {
        int len = (int)(i1 - i < EW_PIECE ? i1 - i : EW_PIECE);
        if (j->a != j->c) memcpy(j->a + i, j->c + i, sizeof(float) * (size_t)len);
        j->k->gelu_tanh(j->a + i, len);
    }
}

void evlm_top_gelu_tanh(const evlm_tops *o, float *y, const float *x, size_t n) {
    ew_job j = {.k = o->k, .a = y, .c = x, .n = n};
    tops_run(o, gelu_task, &j);
}

static void gelu_bwd_task(void *arg, int ith, int nth) {
    const ew_job *j = arg;
    size_t i0, i1;
    ew_range(j->n, ith, nth, &i0, &i1);
    for (size_t i = i0; i < i1; i += EW_PIECE) {
        int len = (int)(i1 - i < EW_PIECE ? i1 - i : EW_PIECE);
        j->k->gelu_tanh_bwd(j->a + i, j->c + i, j->d + i, len);
    }
}

void evlm_top_gelu_tanh_bwd(const evlm_tops *o, float *dx, const float *dy, const float *x,
                            size_t n) {
    ew_job j = {.k = o->k, .a = dx, .c = dy, .d = x, .n = n};
    tops_run(o, gelu_bwd_task, &j);
}

static void add_task(void *arg, int ith, int nth) {
    const ew_job *j = arg;
    size_t i0, i1;
    ew_range(j->n, ith, nth, &i0, &i1);
    for (size_t i = i0; i < i1; i++) j->a[i] += j->c[i];
}

void evlm_top_add(const evlm_tops *o, float *y, const float *x, size_t n) {
    ew_job j = {.a = y, .c = x, .n = n};
    tops_run(o, add_task, &j);
}

/* ---- RoPE --------------------------------------------------------------------------------- */

typedef struct rope_job {
    float *x;
    int m, n_heads, head_dim;
    const float *cos, *sin;
    const int32_t *pos;
    bool inverse;
} rope_job;

static void rope_task(void *arg, int ith, int nth) {
    const rope_job *j = arg;
    int r0, r1, half = j->head_dim / 2;
    evlm_split_rows(j->m, ith, nth, &r0, &r1);
    float sgn = j->inverse ? -1.0f : 1.0f;
    for (int r = r0; r < r1; r++) {
        const float *c = j->cos + (size_t)j->pos[r] * half, *s = j->sin + (size_t)j->pos[r] * half;
        for (int h = 0; h < j->n_heads; h++) {
            float *v = j->x + ((size_t)r * j->n_heads + h) * j->head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], si = sgn * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void evlm_top_rope(const evlm_tops *o, float *x, int m, int n_heads, int head_dim, const float *cos,
                   const float *sin, const int32_t *pos, bool inverse) {
    rope_job j = {.x = x,
                  .m = m,
                  .n_heads = n_heads,
                  .head_dim = head_dim,
                  .cos = cos,
                  .sin = sin,
                  .pos = pos,
                  .inverse = inverse};
    tops_run(o, rope_task, &j);
}
