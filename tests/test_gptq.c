/*
 * test_gptq.c - GPTQ (src/compress/gptq.c) against independent references:
 *   - xtx collected by the calibration observer equals a direct double sum;
 *   - least squares: every weight, at the moment GPTQ quantizes it (the trace), equals the
 *     optimum of a direct solve, min over w' of (w - w')^T H (w - w') with the columns already
 *     quantized fixed to their dequantized values (normal equations solved here by Cholesky),
 *     for damp 0 (pure argmin ||X (w - w')^T||) and damp 0.01 (H + lambda I), in one column
 *     block and in blocks of 32 (so the lazy updates between blocks are checked too);
 *   - with one Q8_0 block per row the block scale is round(amax(w)/127) and every code is the
 *     rounding of the least-squares value on that grid;
 *   - output error <= round-to-nearest for Q8_0 / Q4_0 / Q4_1 on correlated inputs;
 *   - a diagonal Hessian gives exactly the bytes of evlm_quantize_row (same rounding rules);
 *   - the blocks dequantize (evlm_dequantize_row) to the reported reconstruction error, measured
 *     again directly on the rows; results do not depend on the thread count;
 *   - degenerate inputs: dead (all-zero) input columns, all-zero weight rows, n = 0, no rows,
 *     k not a multiple of 32, NaN, unsupported types.
 */
#include "compress/calib.h"
#include "compress/gptq.h"
#include "compress/rtn.h"
#include "core/threadpool.h"
#include "quant/quants.h"
#include "test.h"

#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* (0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) {
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

/* X (N x k): an AR(1) walk over the channels (neighbours correlate at 0.8) with a few loud
 * channels, like real activations; dead[] columns are zero. */
static void make_x(float *x, int N, int k, const int *dead, int n_dead) {
    for (int i = 0; i < N; i++) {
        double prev = gauss();
        for (int j = 0; j < k; j++) {
            prev = 0.8 * prev + 0.6 * gauss();
            double loud = j % 13 == 3 ? 6.0 : 1.0;
            x[i * k + j] = (float)(prev * loud);
        }
        for (int d = 0; d < n_dead; d++) x[i * k + dead[d]] = 0.0f;
    }
}

static void make_w(float *w, int n, int k) {
    for (int i = 0; i < n * k; i++) w[i] = (float)(0.05 * gauss());
}

static void xtx_direct(const float *x, int N, int k, double *h) {
    memset(h, 0, sizeof(double) * (size_t)k * (size_t)k);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) h[i * k + j] += (double)x[r * k + i] * (double)x[r * k + j];
}

/* Solves A y = b in place (A m x m SPD, row-major; destroyed). Returns 0 on success. */
static int chol_solve(double *a, double *b, int m) {
    for (int j = 0; j < m; j++) {
        double d = a[j * m + j];
        for (int t = 0; t < j; t++) d -= a[j * m + t] * a[j * m + t];
        if (!(d > 0.0)) return 1;
        a[j * m + j] = sqrt(d);
        for (int i = j + 1; i < m; i++) {
            double v = a[i * m + j];
            for (int t = 0; t < j; t++) v -= a[i * m + t] * a[j * m + t];
            a[i * m + j] = v / a[j * m + j];
        }
    }
    for (int i = 0; i < m; i++) { /* L z = b */
        for (int t = 0; t < i; t++) b[i] -= a[i * m + t] * b[t];
        b[i] /= a[i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) { /* L^T y = z */
        for (int t = i + 1; t < m; t++) b[i] -= a[t * m + i] * b[t];
        b[i] /= a[i * m + i];
    }
    return 0;
}

/* The reference H of GPTQ: 2/N xtx, dead diagonal 1, + damp * mean diag. */
static void ref_hessian(const double *xtx, int N, int k, double damp, double *h) {
    double mean = 0.0;
    for (int i = 0; i < k * k; i++) h[i] = xtx[i] * 2.0 / N;
    for (int i = 0; i < k; i++) {
        if (h[i * k + i] == 0.0) h[i * k + i] = 1.0;
        mean += h[i * k + i] / k;
    }
    for (int i = 0; i < k; i++) h[i * k + i] += damp * mean;
}

/* Least-squares value of weight j of row w given q[0..j) fixed (the rest free), under h. */
static double ls_value(const double *h, const float *w, const float *q, int k, int j, double *a,
                       double *b) {
    int m = k - j;
    for (int i = 0; i < m; i++) {
        for (int t = 0; t < m; t++) a[i * m + t] = h[(j + i) * k + j + t];
        /* grad = 0: H_FF w'_F = H_FF w_F + H_FP (w_P - q_P) */
        double v = 0.0;
        for (int t = 0; t < k; t++)
            v += h[(j + i) * k + t] * (t < j ? (double)w[t] - (double)q[t] : 0.0);
        for (int t = 0; t < m; t++) v += h[(j + i) * k + j + t] * (double)w[j + t];
        b[i] = v;
    }
    if (chol_solve(a, b, m)) return (double)NAN;
    return b[0];
}

/* Every traced value against the least-squares optimum; returns the worst |diff| / max|w|. */
static double check_ls(evlm_type t, const float *w, int n, int k, const double *xtx, int N,
                       double damp, const void *out, const float *trace, const int *dead,
                       int n_dead) {
    double *h = malloc(sizeof(double) * (size_t)k * k), *a = malloc(sizeof(double) * (size_t)k * k);
    double *b = malloc(sizeof(double) * (size_t)k);
    float *q = malloc(sizeof(float) * (size_t)k), *w0 = malloc(sizeof(float) * (size_t)k);
    ref_hessian(xtx, N, k, damp, h);
    double worst = 0.0, wmax = 0.0;
    for (int i = 0; i < n * k; i++) wmax = fmax(wmax, fabs((double)w[i]));
    size_t rb = evlm_row_bytes(t, k);
    for (int r = 0; r < n; r++) {
        evlm_dequantize_row(t, (const char *)out + rb * (size_t)r, q, k);
        memcpy(w0, w + (size_t)r * k, sizeof(float) * (size_t)k);
        for (int d = 0; d < n_dead; d++) w0[dead[d]] = 0.0f; /* GPTQ zeroes dead columns first */
        for (int j = 0; j < k; j++) {
            double v = ls_value(h, w0, q, k, j, a, b);
            double diff = fabs(v - (double)trace[r * k + j]) / wmax;
            if (!(diff <= worst)) worst = diff; /* NaN sticks */
        }
    }
    free(h), free(a), free(b), free(q), free(w0);
    return worst;
}

static const evlm_type types[3] = {EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1};

static void test_gptq_small(void) {
    enum { n = 8, k = 64, N = 256 };
    static float x[N * k], w[n * k], trace[n * k];
    static double xtx[k * k];
    make_x(x, N, k, NULL, 0);
    make_w(w, n, k);
    xtx_direct(x, N, k, xtx);

    /* the observer's xtx (fed in uneven chunks) equals the direct sum */
    evlm_calib_params cp = evlm_calib_default_params();
    evlm_calib *c = NULL;
    CHECK_OK(evlm_calib_new(&cp, &c));
    for (int r0 = 0; r0 < N;) {
        int m = r0 % 3 == 0 ? 37 : 11;
        if (m > N - r0) m = N - r0;
        evlm_calib_observe(c, 0, "attn_qkv", x + (size_t)r0 * k, m, k);
        r0 += m;
    }
    CHECK(evlm_calib_status(c) == EVLM_OK);
    const evlm_calib_stat *st = evlm_calib_find(c, 0, "attn_qkv");
    CHECK(st && st->n_rows == N && st->k == k);
    double maxd = 0.0;
    for (int i = 0; st && i < k * k; i++)
        maxd = fmax(maxd, fabs(st->xtx[i] - xtx[i]) / (1.0 + fabs(xtx[i])));
    CHECKF(maxd < 1e-12, "calib xtx differs by %g", maxd);
    evlm_calib_free(c);

    for (int ti = 0; ti < 3; ti++) {
        evlm_type t = types[ti];
        size_t bytes = evlm_row_bytes(t, k) * n;
        void *out = malloc(bytes), *rtn = malloc(bytes);
        for (int di = 0; di < 3; di++) { /* damp 0, 0.01, and 0.01 with lazy updates (32 columns) */
            evlm_gptq_params p = evlm_gptq_default_params();
            p.damp = di ? 0.01 : 0.0;
            p.block_cols = di == 2 ? 32 : 128;
            p.trace = trace;
            evlm_gptq_result res;
            CHECK_OK(evlm_gptq_quantize(t, w, n, k, xtx, N, &p, NULL, out, &res));
            double worst = check_ls(t, w, n, k, xtx, N, p.damp, out, trace, NULL, 0);
            CHECKF(worst < 2e-5,
                   "%s damp %g: traced weights differ from least squares by %g of max|w|",
                   evlm_type_name(t), p.damp, worst);

            /* (b) the blocks reproduce the reported error, also measured on the rows themselves */
            double e_rows, r_rows, e_h, r_h;
            CHECK_OK(evlm_quant_error_rows(t, w, out, n, k, x, N, &e_rows, &r_rows));
            CHECK_OK(evlm_quant_error_xtx(t, w, out, n, k, xtx, &e_h, &r_h));
            CHECKF(fabs(e_rows - res.err) <= 1e-6 * res.err &&
                       fabs(r_rows - res.ref) <= 1e-9 * res.ref,
                   "%s: reported err %g ref %g, rows give %g %g", evlm_type_name(t), res.err,
                   res.ref, e_rows, r_rows);
            CHECK(fabs(e_h - res.err) <= 1e-9 * res.err &&
                  fabs(res.rel_err - res.err / res.ref) < 1e-15);

            /* (a) never worse than round-to-nearest */
            double e_rtn, r_rtn;
            CHECK_OK(evlm_rtn_quantize(t, w, n, k, rtn));
            CHECK_OK(evlm_quant_error_xtx(t, w, rtn, n, k, xtx, &e_rtn, &r_rtn));
            CHECKF(res.err <= e_rtn, "%s: gptq %g > rtn %g", evlm_type_name(t), res.err, e_rtn);
            printf("%s damp %.2f block %3d: rel err gptq %.3e rtn %.3e (ratio %.3f), LS dev %.1e\n",
                   evlm_type_name(t), p.damp, p.block_cols, res.rel_err, e_rtn / r_rtn,
                   res.err / e_rtn, worst);
            if (t != EVLM_TYPE_Q8_0)
                CHECKF(res.err < 0.8 * e_rtn, "%s: gptq gains little", evlm_type_name(t));
        }
        free(out);
        free(rtn);
    }
}

/* One Q8_0 block per row: the grid is fixed by the original row, every code is the rounding of
 * the least-squares value onto it. */
static void test_one_block_q8(void) {
    enum { n = 8, k = 32, N = 256 };
    static float x[N * k], w[n * k], trace[n * k];
    static double xtx[k * k], h[k * k], a[k * k], b[k];
    make_x(x, N, k, NULL, 0);
    make_w(w, n, k);
    xtx_direct(x, N, k, xtx);
    evlm_block_q8_0 out[n];
    evlm_gptq_params p = evlm_gptq_default_params();
    p.damp = 0.0;
    p.trace = trace;
    evlm_gptq_result res;
    CHECK_OK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, xtx, N, &p, NULL, out, &res));
    ref_hessian(xtx, N, k, 0.0, h);
    int bad = 0, ties = 0;
    for (int r = 0; r < n; r++) {
        float amax = 0.0f, q[k];
        for (int j = 0; j < k; j++) amax = fmaxf(amax, fabsf(w[r * k + j]));
        float d = amax / 127.0f, id = 1.0f / d;
        CHECK(out[r].d == evlm_f32_to_f16(d));
        evlm_dequantize_row(EVLM_TYPE_Q8_0, &out[r], q, k);
        for (int j = 0; j < k; j++) {
            double v = ls_value(h, w + r * k, q, k, j, a, b), pos = v * (double)id;
            double want = fmin(127.0, fmax(-128.0, round(pos)));
            if (fabs(fabs(pos - trunc(pos)) - 0.5) < 1e-3)
                ties++; /* float may round either way */
            else if (out[r].qs[j] != (int8_t)want)
                bad++;
        }
    }
    CHECKF(bad == 0, "%d codes are not the rounding of the least-squares value (%d near ties)", bad,
           ties);
}

/* A diagonal Hessian (uncorrelated inputs): nothing to compensate, output == evlm_quantize_row. */
static void test_diagonal_is_rtn(void) {
    enum { n = 5, k = 96 };
    static float w[n * k];
    static double xtx[k * k];
    make_w(w, n, k);
    w[7] = 0.9f; /* an outlier */
    for (int i = 0; i < k; i++) xtx[i * k + i] = 0.5 + urand();
    for (int ti = 0; ti < 3; ti++) {
        evlm_type t = types[ti];
        size_t bytes = evlm_row_bytes(t, k) * n;
        void *g = malloc(bytes), *r = malloc(bytes);
        evlm_gptq_result res;
        CHECK_OK(evlm_gptq_quantize(t, w, n, k, xtx, 100, NULL, NULL, g, &res));
        CHECK_OK(evlm_rtn_quantize(t, w, n, k, r));
        CHECKF(memcmp(g, r, bytes) == 0, "%s: diagonal H differs from round-to-nearest",
               evlm_type_name(t));
        free(g);
        free(r);
    }
}

/* Wider layer: 2 threads == 1 thread bitwise; the block width of the lazy updates changes only
 * float rounding. */
static void test_threads_blocks(void) {
    enum { n = 37, k = 320, N = 400 };
    float *x = malloc(sizeof(float) * N * k), *w = malloc(sizeof(float) * n * k);
    double *xtx = malloc(sizeof(double) * k * k);
    make_x(x, N, k, NULL, 0);
    make_w(w, n, k);
    xtx_direct(x, N, k, xtx);
    size_t bytes = evlm_row_bytes(EVLM_TYPE_Q4_0, k) * n;
    char *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    evlm_pool *pool = NULL;
    CHECK_OK(evlm_pool_new(3, &pool));
    evlm_gptq_result ra, rb, rc;
    CHECK_OK(evlm_gptq_quantize(EVLM_TYPE_Q4_0, w, n, k, xtx, N, NULL, NULL, a, &ra));
    CHECK_OK(evlm_gptq_quantize(EVLM_TYPE_Q4_0, w, n, k, xtx, N, NULL, pool, b, &rb));
    CHECK(memcmp(a, b, bytes) == 0 && ra.err == rb.err);
    evlm_gptq_params p = evlm_gptq_default_params();
    p.block_cols = 32;
    CHECK_OK(evlm_gptq_quantize(EVLM_TYPE_Q4_0, w, n, k, xtx, N, &p, pool, c, &rc));
    int same = 0;
    for (size_t i = 0; i < bytes; i++) same += a[i] == c[i];
    CHECKF(same >= 0.97 * (double)bytes && fabs(rc.rel_err - ra.rel_err) < 0.02 * ra.rel_err,
           "block 32 vs 128: %d of %zu bytes equal, rel err %g vs %g", same, bytes, rc.rel_err,
           ra.rel_err);
    double e_rtn, r_rtn;
    CHECK_OK(evlm_rtn_quantize(EVLM_TYPE_Q4_0, w, n, k, c));
    CHECK_OK(evlm_quant_error_xtx(EVLM_TYPE_Q4_0, w, c, n, k, xtx, &e_rtn, &r_rtn));
    printf("q4_0 %dx%d: rel err gptq %.3e rtn %.3e\n", n, k, ra.rel_err, e_rtn / r_rtn);
    CHECK(ra.err < e_rtn);
    evlm_pool_free(pool);
    free(x), free(w), free(xtx), free(a), free(b), free(c);
}

static void test_degenerate(void) {
    enum { n = 6, k = 64, N = 200 };
    static float x[N * k], w[n * k], trace[n * k];
    static double xtx[k * k];
    const int dead[2] = {5, 40};
    make_x(x, N, k, dead, 2);
    make_w(w, n, k);
    for (int j = 0; j < k; j++) w[2 * k + j] = 0.0f; /* an all-zero weight row */
    xtx_direct(x, N, k, xtx);
    for (int ti = 0; ti < 3; ti++) {
        evlm_type t = types[ti];
        size_t rb = evlm_row_bytes(t, k);
        void *out = malloc(rb * n);
        float q[k];
        evlm_gptq_params p = evlm_gptq_default_params();
        p.trace = trace;
        evlm_gptq_result res;
        CHECK_OK(evlm_gptq_quantize(t, w, n, k, xtx, N, &p, NULL, out, &res));
        CHECK(res.dead_cols == 2 && res.damp_used == 0.01);
        double worst = check_ls(t, w, n, k, xtx, N, 0.01, out, trace, dead, 2);
        CHECKF(worst < 2e-5, "%s with dead columns: LS deviation %g", evlm_type_name(t), worst);
        evlm_dequantize_row(t, (char *)out + 2 * rb, q, k);
        int zero = 1;
        for (int j = 0; j < k; j++) zero &= q[j] == 0.0f;
        CHECK(zero);
        if (t != EVLM_TYPE_Q4_1) /* Q4_1's grid need not contain 0 */
            for (int r = 0; r < n; r++) {
                evlm_dequantize_row(t, (char *)out + (size_t)r * rb, q, k);
                CHECK(q[5] == 0.0f && q[40] == 0.0f);
            }
        double e, ref;
        CHECK_OK(evlm_quant_error_rows(t, w, out, n, k, x, N, &e, &ref));
        CHECK(fabs(e - res.err) <= 1e-6 * res.err);
        free(out);
    }

    /* no inputs at all: every column dead, the layer quantizes to zeros, error 0 */
    static double zero_h[k * k];
    evlm_block_q8_0 zb[n * 2];
    evlm_gptq_result res;
    CHECK_OK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, zero_h, N, NULL, NULL, zb, &res));
    CHECK(res.dead_cols == k && res.err == 0.0 && res.ref == 0.0 && res.rel_err == 0.0);

    /* errors, with messages */
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, 0, k, xtx, N, NULL, NULL, zb, &res) ==
          EVLM_ERR_ARG);
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, xtx, 0, NULL, NULL, zb, &res) ==
          EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "no calibration rows") != NULL);
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, 48, xtx, N, NULL, NULL, zb, &res) ==
          EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "multiple of 32") != NULL);
    CHECK(evlm_gptq_quantize(EVLM_TYPE_F16, w, n, k, xtx, N, NULL, NULL, zb, &res) ==
          EVLM_ERR_UNSUPPORTED);
    evlm_gptq_params p = evlm_gptq_default_params();
    p.block_cols = 100;
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, xtx, N, &p, NULL, zb, &res) == EVLM_ERR_ARG);
    w[3] = NAN;
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, xtx, N, NULL, NULL, zb, &res) ==
          EVLM_ERR_ARG);
    CHECK(evlm_rtn_quantize(EVLM_TYPE_Q8_0, w, n, k, zb) == EVLM_ERR_ARG);
    w[3] = 0.0f;
    xtx[1] = (double)NAN;
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, xtx, N, NULL, NULL, zb, &res) ==
          EVLM_ERR_ARG);
    xtx[1] = 0.0;
    /* an indefinite "Hessian" (not from data): damping retries, then a clean error */
    for (int i = 0; i < k * k; i++) xtx[i] = i % (k + 1) == 0 ? 1.0 : 0.0;
    xtx[1] = xtx[k] = 1e12;
    p = evlm_gptq_default_params();
    p.max_retries = 1;
    CHECK(evlm_gptq_quantize(EVLM_TYPE_Q8_0, w, n, k, xtx, N, &p, NULL, zb, &res) ==
          EVLM_ERR_RANGE);
    CHECK(strstr(evlm_last_error(), "positive definite") != NULL);
}

int main(void) {
    test_gptq_small();
    test_one_block_q8();
    test_diagonal_is_rtn();
    test_threads_blocks();
    test_degenerate();
    return test_done();
}
