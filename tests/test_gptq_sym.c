/*
 * test_gptq_sym.c - GPTQ onto the ONNX export's symmetric grids (evlm_gptq_quantize_sym in
 * src/compress/gptq.c: int8 per output channel, int4 per block of 64 input columns, float32
 * scales), against independent references:
 *   - least squares: every weight of the first LS_ROWS rows, at the moment GPTQ quantizes it (the
 *     trace), equals the optimum of a direct solve (normal equations by Cholesky here) with the
 *     columns already quantized fixed to their dequantized values, with a partial last group
 *     (k = 160 = 64 + 64 + 32) and lazy-update blocks of 64 and 128 columns;
 *   - every code is round-half-even(trace / scale) saturated at +-qmax on its group's scale, and
 *     per-channel int8's scale is amax(original row) / 127;
 *   - a diagonal Hessian gives exactly evlm_gptq_sym_round (the export's round to nearest);
 *   - the reported error equals ||X (W - Q)^T||^2 measured on the rows, and evlm_gptq_sym_error
 *     gives the same; output error <= round-to-nearest on correlated inputs for both grids;
 *     results do not depend on the thread count;
 *   - bad grids and arguments are refused.
 * Not here: the ggml block grids (test_gptq), the export that writes these codes (cli_onnx_qdq.sh).
 */
#include "compress/calib.h"
#include "compress/gptq.h"
#include "core/threadpool.h"
#include "test.h"

#include <stdint.h>

#define LS_ROWS 4 /* rows checked against the direct least-squares solve */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* (0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) {
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

/* X (N x k): channels correlated at 0.8 with a few loud ones, like real activations */
static void make_x(float *x, int N, int k) {
    for (int i = 0; i < N; i++) {
        double prev = gauss();
        for (int j = 0; j < k; j++) {
            prev = 0.8 * prev + 0.6 * gauss();
            x[i * k + j] = (float)(prev * (j % 13 == 3 ? 6.0 : 1.0));
        }
    }
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
    for (int i = 0; i < m; i++) {
        for (int t = 0; t < i; t++) b[i] -= a[i * m + t] * b[t];
        b[i] /= a[i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) {
        for (int t = i + 1; t < m; t++) b[i] -= a[t * m + i] * b[t];
        b[i] /= a[i * m + i];
    }
    return 0;
}

/* Dequantized row r of a grid */
static void deq_row(const evlm_gptq_sym *g, int r, int k, float *q) {
    int gs = g->group < k ? (int)g->group : k, nb = (k + gs - 1) / gs;
    for (int i = 0; i < k; i++) q[i] = (float)g->codes[r * k + i] * g->scales[r * nb + i / gs];
}

/* ||X (W - Q)^T||^2 on the rows themselves */
static double direct_err(const evlm_gptq_sym *g, const float *w, const float *x, int n, int k,
                         int N) {
    float *q = malloc(sizeof(float) * (size_t)k);
    double e = 0.0;
    for (int r = 0; r < n; r++) {
        deq_row(g, r, k, q);
        for (int s = 0; s < N; s++) {
            double y = 0.0;
            for (int i = 0; i < k; i++)
                y += (double)x[s * k + i] * ((double)w[r * k + i] - (double)q[i]);
            e += y * y;
        }
    }
    free(q);
    return e;
}

typedef struct {
    int8_t *codes;
    float *scales;
    evlm_gptq_sym g;
} grid_buf;

static void grid_alloc(grid_buf *b, int qmax, int64_t group, int n, int k) {
    int64_t gs = group < k ? group : k, nb = (k + gs - 1) / gs;
    b->codes = malloc((size_t)n * (size_t)k);
    b->scales = malloc(sizeof(float) * (size_t)(n * nb));
    b->g = (evlm_gptq_sym){qmax, group, b->codes, b->scales};
}

static void grid_free(grid_buf *b) {
    free(b->codes);
    free(b->scales);
}

/* One grid: least squares, codes, scale rule, error, RTN comparison, threads. */
static void check_grid(int qmax, int64_t group, int block_cols, evlm_pool *pool) {
    const int n = 12, k = 160, N = 400;
    float *x = malloc(sizeof(float) * (size_t)N * k), *w = malloc(sizeof(float) * (size_t)n * k);
    float *trace = malloc(sizeof(float) * (size_t)n * k), *q = malloc(sizeof(float) * (size_t)k);
    double *xtx = malloc(sizeof(double) * (size_t)k * k), *h = malloc(sizeof(double) * k * k);
    double *a = malloc(sizeof(double) * (size_t)k * k), *bv = malloc(sizeof(double) * k);
    make_x(x, N, k);
    for (int i = 0; i < n * k; i++) w[i] = (float)(0.05 * gauss());
    xtx_direct(x, N, k, xtx);
    grid_buf g, r, t;
    grid_alloc(&g, qmax, group, n, k);
    grid_alloc(&r, qmax, group, n, k);
    grid_alloc(&t, qmax, group, n, k);
    evlm_gptq_params p = evlm_gptq_default_params();
    p.block_cols = block_cols;
    p.trace = trace;
    evlm_gptq_result res;
    CHECK_OK(evlm_gptq_quantize_sym(&g.g, w, n, k, xtx, N, &p, NULL, &res));

    /* least squares under H = 2/N xtx + damp * mean diag, against the trace */
    double mean = 0.0, wmax = 0.0, worst = 0.0;
    for (int i = 0; i < k * k; i++) h[i] = xtx[i] * 2.0 / N;
    for (int i = 0; i < k; i++) mean += h[i * k + i] / k;
    for (int i = 0; i < k; i++) h[i * k + i] += res.damp_used * mean;
    for (int i = 0; i < n * k; i++) wmax = fmax(wmax, fabs((double)w[i]));
    const int gs = group < k ? (int)group : k, nb = (k + gs - 1) / gs;
    int bad_code = 0;
    for (int row = 0; row < n; row++) {
        deq_row(&g.g, row, k, q);
        for (int j = 0; j < k && row < LS_ROWS; j++) { /* direct solves: O(k^4) a row */
            int m = k - j;
            for (int i = 0; i < m; i++) {
                for (int c = 0; c < m; c++) a[i * m + c] = h[(j + i) * k + j + c];
                double v = 0.0;
                for (int c = 0; c < k; c++) {
                    double wc = (double)w[row * k + c];
                    v += h[(j + i) * k + c] * (c < j ? wc - (double)q[c] : wc);
                }
                bv[i] = v;
            }
            double ls = chol_solve(a, bv, m) ? (double)NAN : bv[0];
            double d = fabs(ls - (double)trace[row * k + j]) / wmax;
            if (!(d <= worst)) worst = d;
        }
        for (int j = 0; j < k; j++) { /* the traced value rounded onto its group's scale */
            float s = g.scales[row * nb + j / gs], v = nearbyintf(trace[row * k + j] / s);
            v = v < -qmax ? (float)-qmax : v > qmax ? (float)qmax : v;
            if ((float)g.codes[row * k + j] != v) bad_code++;
        }
        if (group >= k) { /* per channel: the original row's amax */
            float amax = 0.0f;
            for (int j = 0; j < k; j++) amax = fmaxf(amax, fabsf(w[row * k + j]));
            CHECK(g.scales[row] == amax / (float)qmax);
        }
    }
    CHECKF(worst < 2e-5, "qmax %d group %lld: least squares off by %.3g of max |w|", qmax,
           (long long)group, worst);
    CHECKF(bad_code == 0, "qmax %d group %lld: %d codes off their grid", qmax, (long long)group,
           bad_code);

    /* the reported error is the error on the rows; sym_error agrees */
    double direct = direct_err(&g.g, w, x, n, k, N), e2, f2;
    CHECKF(fabs(res.err - direct) <= 1e-6 * direct + 1e-12, "err %.9g, direct %.9g", res.err,
           direct);
    CHECK_OK(evlm_gptq_sym_error(&g.g, w, n, k, xtx, &e2, &f2));
    CHECK(fabs(e2 - res.err) <= 1e-9 * res.err + 1e-15 && fabs(f2 - res.ref) <= 1e-9 * res.ref);

    /* no worse than round to nearest */
    evlm_gptq_sym_round(&r.g, w, n, k);
    double rtn = direct_err(&r.g, w, x, n, k, N);
    CHECKF(direct <= rtn, "qmax %d group %lld: GPTQ %.6g > RTN %.6g", qmax, (long long)group,
           direct, rtn);
    printf("qmax %3d group %4lld block %d: rel err GPTQ %.3e, RTN %.3e\n", qmax, (long long)group,
           block_cols, direct / res.ref, rtn / res.ref);

    /* threads */
    p.trace = NULL;
    CHECK_OK(evlm_gptq_quantize_sym(&t.g, w, n, k, xtx, N, &p, pool, &res));
    CHECK(!memcmp(t.codes, g.codes, (size_t)n * k) &&
          !memcmp(t.scales, g.scales, sizeof(float) * (size_t)(n * nb)));

    /* diagonal Hessian: exactly round to nearest */
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) xtx[i * k + j] = i == j ? 1.0 + (double)(i % 7) : 0.0;
    CHECK_OK(evlm_gptq_quantize_sym(&t.g, w, n, k, xtx, N, &p, pool, &res));
    CHECK(!memcmp(t.codes, r.codes, (size_t)n * k) &&
          !memcmp(t.scales, r.scales, sizeof(float) * (size_t)(n * nb)));

    grid_free(&g), grid_free(&r), grid_free(&t);
    free(x), free(w), free(trace), free(q), free(xtx), free(h), free(a), free(bv);
}

int main(void) {
    evlm_pool *pool = NULL;
    CHECK_OK(evlm_pool_new(3, &pool));
    check_grid(7, 64, 128, pool);    /* int4 per block of 64 (the export's w4a16) */
    check_grid(7, 64, 64, pool);     /* lazy blocks of one group */
    check_grid(127, 160, 128, pool); /* int8 per output channel (w8a16, w8a8): group >= k */
    check_grid(127, 1 << 20, 64, pool);

    /* bad grids and arguments */
    float w[64] = {0};
    double xtx[64 * 64] = {0};
    for (int i = 0; i < 64; i++) xtx[i * 64 + i] = 1.0;
    int8_t codes[64];
    float sc[2];
    evlm_gptq_sym g = {7, 48, codes, sc};
    evlm_gptq_result res;
    CHECK(evlm_gptq_quantize_sym(&g, w, 1, 64, xtx, 4, NULL, NULL, &res) == EVLM_ERR_ARG);
    g.group = 32;
    CHECK_OK(evlm_gptq_quantize_sym(&g, w, 1, 64, xtx, 4, NULL, NULL, &res));
    CHECK(sc[0] == 1.0f && sc[1] == 1.0f && codes[0] == 0); /* all-zero groups: scale 1 */
    g.qmax = 0;
    CHECK(evlm_gptq_quantize_sym(&g, w, 1, 64, xtx, 4, NULL, NULL, &res) == EVLM_ERR_ARG);
    g.qmax = 7;
    g.group = 0;
    CHECK(evlm_gptq_quantize_sym(&g, w, 1, 64, xtx, 4, NULL, NULL, &res) == EVLM_ERR_ARG);
    g.group = 32;
    CHECK(evlm_gptq_quantize_sym(&g, w, 0, 64, xtx, 4, NULL, NULL, &res) == EVLM_ERR_ARG);
    CHECK(evlm_gptq_quantize_sym(&g, w, 1, 64, xtx, 0, NULL, NULL, &res) == EVLM_ERR_ARG);
    CHECK(evlm_gptq_quantize_sym(NULL, w, 1, 64, xtx, 4, NULL, NULL, &res) == EVLM_ERR_ARG);
    w[5] = NAN;
    CHECK(evlm_gptq_quantize_sym(&g, w, 1, 64, xtx, 4, NULL, NULL, &res) == EVLM_ERR_ARG);
    evlm_pool_free(pool);
    return test_done();
}
