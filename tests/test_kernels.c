/*
 * test_kernels.c - every kernel table this CPU runs (ref, avx2, avx512) against `ref` on random
 * data: gemm for F32 / F16 / BF16 weights over awkward shapes (k around the 8 / 16 / 32 / 64
 * lane and unroll boundaries), a row range [n0, n1) inside the matrix and padded ldx / ldy /
 * ldw; rmsnorm and attn_row likewise. Also EVLM_ISA's fallback. Not here: timing (bench/).
 *
 * Metric for dot products: |simd - ref| / (sum_j |x_j w_j| + 1e-6) <= 1e-5 per element. SIMD
 * sums in a different order (lanes, FMA); the error of any float summation order is bounded by
 * a multiple of eps * sum |terms|, so this is a bound on reordering, not on the sum itself
 * (which may cancel to near zero).
 */
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "test.h"

#include <stdint.h>

static unsigned seed = 12345;
static float frand(void) { /* [-1, 1) */
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / 8388608.0f - 1.0f;
}

static const float SENTINEL = -12345.5f;

/* Fills a W (n, k) of type wt with row stride ldw bytes; wf gets the exact float values. */
static void make_weights(void *w, size_t ldw, float *wf, evlm_type wt, int n, int k) {
    for (int r = 0; r < n; r++) {
        char *row = (char *)w + (size_t)r * ldw;
        for (int j = 0; j < k; j++) {
            float v = frand();
            if (wt == EVLM_TYPE_F32) {
                ((float *)(void *)row)[j] = v;
            } else if (wt == EVLM_TYPE_F16) {
                uint16_t h = evlm_f32_to_f16(v);
                ((uint16_t *)(void *)row)[j] = h;
                v = evlm_f16_to_f32(h);
            } else {
                uint16_t h = evlm_f32_to_bf16(v);
                ((uint16_t *)(void *)row)[j] = h;
                v = evlm_bf16_to_f32(h);
            }
            wf[(size_t)r * k + j] = v;
        }
    }
}

static void test_gemm(const evlm_kernels *kn) {
    static const int ms[] = {1, 3, 7}, ns[] = {1, 5, 64};
    static const int ks[] = {1, 7, 8, 15, 16, 17, 31, 33, 64, 100, 1000, 4097};
    static const evlm_type types[] = {EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_BF16};
    int bad = 0;
    double worst = 0;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t mi = 0; mi < 3; mi++)
            for (size_t ni = 0; ni < 3; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                    evlm_type wt = types[ti];
                    int m = ms[mi], n = ns[ni], k = ks[ki];
                    /* a strict sub-range where the matrix has more than one row */
                    int n0 = n > 2 ? 1 : 0, n1 = n > 2 ? n - 1 - (n > 8 ? 2 : 0) : n;
                    size_t es = evlm_type_size(wt), ldx = (size_t)k + 3, ldy = (size_t)n + 5;
                    size_t ldw = es * ((size_t)k + 3); /* padded and, for k odd, unaligned */
                    float *x = malloc(sizeof(float) * ldx * m), *wf = malloc(sizeof(float) * n * k);
                    void *w = malloc(ldw * n);
                    float *y = malloc(sizeof(float) * ldy * m), *yr = malloc(sizeof(float) * ldy * m);
                    float *scratch = malloc(sizeof(float) * k);
                    for (size_t i = 0; i < ldx * m; i++) x[i] = frand();
                    make_weights(w, ldw, wf, wt, n, k);
                    for (size_t i = 0; i < ldy * m; i++) y[i] = yr[i] = SENTINEL;
                    evlm_kernels_ref.gemm(yr, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
                    kn->gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
                    for (int i = 0; i < m; i++)
                        for (int c = 0; c < (int)ldy; c++) {
                            float got = y[(size_t)i * ldy + c], want = yr[(size_t)i * ldy + c];
                            if (c < n0 || c >= n1) {
                                if (got != SENTINEL && bad++ < 5)
                                    fprintf(stderr, "%s gemm wrote outside [n0, n1): m%d n%d k%d c%d\n",
                                            kn->name, m, n, k, c);
                                continue;
                            }
                            double mag = 1e-6;
                            for (int j = 0; j < k; j++)
                                mag += fabs((double)x[(size_t)i * ldx + j] * (double)wf[(size_t)c * k + j]);
                            double e = fabs((double)got - (double)want) / mag;
                            if (e > worst) worst = e;
                            if (!(e <= 1e-5) && bad++ < 5)
                                fprintf(stderr, "%s gemm %s m%d n%d k%d [%d,%d]: %g vs %g (rel %g)\n",
                                        kn->name, evlm_type_name(wt), m, n, k, i, c, (double)got,
                                        (double)want, e);
                        }
                    free(x), free(wf), free(w), free(y), free(yr), free(scratch);
                }
    CHECKF(bad == 0, "%s gemm: %d bad elements", kn->name, bad);
    printf("%s gemm: worst |d| / sum|x w| = %.3g\n", kn->name, worst);
}

static void test_rmsnorm(const evlm_kernels *kn) {
    static const int ns[] = {1, 7, 8, 15, 16, 17, 33, 64, 576, 1001};
    int bad = 0;
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
        int n = ns[ni];
        float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
        float *y = malloc(sizeof(float) * (n + 1)), *yr = malloc(sizeof(float) * (n + 1));
        for (int i = 0; i < n; i++) x[i] = frand(), w[i] = frand();
        y[n] = yr[n] = SENTINEL;
        evlm_kernels_ref.rmsnorm(yr, x, w, n, 1e-5f);
        kn->rmsnorm(y, x, w, n, 1e-5f);
        /* only the sum of squares is reordered (all terms positive): a relative bound per element */
        for (int i = 0; i < n; i++)
            if (!(fabs((double)y[i] - (double)yr[i]) <= 1e-5 * fabs((double)yr[i]) + 1e-30) && bad++ < 5)
                fprintf(stderr, "%s rmsnorm n%d [%d]: %g vs %g\n", kn->name, n, i, (double)y[i],
                        (double)yr[i]);
        if (y[n] != SENTINEL) bad++;
        free(x), free(w), free(y), free(yr);
    }
    CHECKF(bad == 0, "%s rmsnorm: %d bad elements", kn->name, bad);
}

static void test_attn_row(const evlm_kernels *kn) {
    static const int hds[] = {1, 7, 8, 16, 17, 64, 100};
    static const int nkvs[] = {1, 5, 33, 300};
    int bad = 0;
    for (size_t hi = 0; hi < sizeof hds / sizeof *hds; hi++)
        for (size_t ti = 0; ti < sizeof nkvs / sizeof *nkvs; ti++) {
            int hd = hds[hi], nkv = nkvs[ti];
            size_t ld = (size_t)hd + 5;
            float scale = 1.0f / sqrtf((float)hd);
            float *q = malloc(sizeof(float) * hd), *k = malloc(sizeof(float) * ld * nkv);
            float *v = malloc(sizeof(float) * ld * nkv), *sc = malloc(sizeof(float) * nkv);
            float *o = malloc(sizeof(float) * (hd + 1)), *orf = malloc(sizeof(float) * (hd + 1));
            for (int i = 0; i < hd; i++) q[i] = frand();
            for (size_t i = 0; i < ld * nkv; i++) k[i] = frand(), v[i] = frand();
            o[hd] = orf[hd] = SENTINEL;
            evlm_kernels_ref.attn_row(orf, q, k, v, nkv, hd, ld, scale, NULL, sc);
            kn->attn_row(o, q, k, v, nkv, hd, ld, scale, NULL, sc);
            /* scores move by ~eps * sum |q k| * scale, the weighted sum by ~eps per term; with
             * |q|, |k|, |v| <= 1 and the weights summing to 1 that is well below 1e-5 absolute */
            for (int i = 0; i < hd; i++)
                if (!(fabs((double)o[i] - (double)orf[i]) <= 1e-5) && bad++ < 5)
                    fprintf(stderr, "%s attn_row hd%d nkv%d [%d]: %g vs %g\n", kn->name, hd, nkv, i,
                            (double)o[i], (double)orf[i]);
            if (o[hd] != SENTINEL) bad++;
            free(q), free(k), free(v), free(sc), free(o), free(orf);
        }
    CHECKF(bad == 0, "%s attn_row: %d bad elements", kn->name, bad);
}

int main(void) {
    static const char *names[] = {"ref", "avx2", "avx512", "neon"};
    int n_tables = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const evlm_kernels *kn = evlm_kernels_by_name(names[i]);
        if (!kn) {
            printf("%s: not built or not supported by this CPU\n", names[i]);
            continue;
        }
        CHECK(strcmp(kn->name, names[i]) == 0);
        CHECK(kn->gemm && kn->rmsnorm && kn->silu_mul && kn->rope && kn->attn_row &&
              kn->layernorm && kn->gelu_tanh);
        n_tables++;
        test_gemm(kn);
        test_rmsnorm(kn);
        test_attn_row(kn);
    }
    CHECK(n_tables >= 1);
    CHECK(evlm_kernels_by_name("no-such-isa") == NULL);
    CHECK(evlm_kernels_by_name(NULL) == NULL);

    /* EVLM_ISA: an unknown name falls back to a supported table (set before the first get) */
    setenv("EVLM_ISA", "no-such-isa", 1);
    const evlm_kernels *g = evlm_kernels_get();
    CHECK(g != NULL && evlm_kernels_by_name(g->name) == g);
    CHECK(evlm_kernels_get() == g);
    return test_done();
}
