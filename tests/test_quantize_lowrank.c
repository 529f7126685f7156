/*
 * test_quantize_lowrank.c - GPTQ of a low-rank factor B (src/compress/quantize_lowrank.c): the
 * statistics of B's inputs A x come from those of x, Q(A) X^T X Q(A)^T; here against X A^T
 * formed row by row from random calibration rows X (brute force), within 1e-12 relative.
 * The end-to-end half (low rank, then quantize, through the CLI) is tests/cli_lowrank_quantize.sh.
 */
#include "compress/pipeline.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift, [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}

static void through(int64_t n, int64_t r, int64_t k) {
    double *x = malloc(sizeof(double) * (size_t)(n * k)), *xtx = calloc((size_t)(k * k), 8);
    double *y = calloc((size_t)(n * r), 8), *want = calloc((size_t)(r * r), 8);
    double *got = malloc(sizeof(double) * (size_t)(r * r));
    float *a = malloc(sizeof(float) * (size_t)(r * k));
    CHECK(x && xtx && y && want && got && a);
    if (!x || !xtx || !y || !want || !got || !a) return;
    for (int64_t i = 0; i < n * k; i++) x[i] = urand() * (1 + i % 5); /* uneven channels */
    for (int64_t i = 0; i < r * k; i++) a[i] = (float)urand();
    for (int64_t s = 0; s < n; s++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) xtx[i * k + j] += x[s * k + i] * x[s * k + j];
    for (int64_t s = 0; s < n; s++) /* y = X A^T, then Y^T Y */
        for (int64_t i = 0; i < r; i++)
            for (int64_t c = 0; c < k; c++) y[s * r + i] += x[s * k + c] * (double)a[i * k + c];
    for (int64_t s = 0; s < n; s++)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < r; j++) want[i * r + j] += y[s * r + i] * y[s * r + j];
    CHECK_OK(evlm__q_xtx_through(a, r, k, xtx, got));
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < r * r; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    CHECKF(worst <= 1e-12 * scale, "r %lld, k %lld: |got - want| %g of %g", (long long)r,
           (long long)k, worst, scale);
    for (int64_t i = 0; i < r; i++) /* symmetric, both halves */
        for (int64_t j = 0; j < r; j++) CHECK(got[i * r + j] == got[j * r + i]);
    free(x);
    free(xtx);
    free(y);
    free(want);
    free(got);
    free(a);
}

int main(void) {
    through(50, 3, 7);
    through(200, 32, 64);
    through(10, 40, 33); /* more inputs A x than rows: singular, still exact */
    return test_done();
}
