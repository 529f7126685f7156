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
 *
 * Quantized weights: quantize_act must equal ref bit for bit (qs, d, s). gemm_q sums exact int32
 * block dot products and differs from ref only in float order, so the bound is
 * (kb + 16) * FLT_EPSILON * sum_b |dw dx| sum_j |wq_j xq_j| (+ |m s| for Q4_1): ref's sequential
 * sum of kb block terms plus the SIMD lane sums, each within a multiple of eps of sum |terms|.
 * Shapes: k = 32, 64, 96, 4128; m = 1, 3, 17, 40 (more than a register tile / L2 chunk); row
 * ranges with n0 > 0; padded strides; zero blocks, ties, extreme scales, Q8_0 -128 weights.
 */
#include "core/tensor.h"
#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"
#include "test.h"

#include <float.h>
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
                    float *y = malloc(sizeof(float) * ldy * m),
                          *yr = malloc(sizeof(float) * ldy * m);
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
                                    fprintf(stderr,
                                            "%s gemm wrote outside [n0, n1): m%d n%d k%d c%d\n",
                                            kn->name, m, n, k, c);
                                continue;
                            }
                            double mag = 1e-6;
                            for (int j = 0; j < k; j++)
                                mag += fabs((double)x[(size_t)i * ldx + j] *
                                            (double)wf[(size_t)c * k + j]);
                            double e = fabs((double)got - (double)want) / mag;
                            if (e > worst) worst = e;
                            if (!(e <= 1e-5) && bad++ < 5)
                                fprintf(stderr,
                                        "%s gemm %s m%d n%d k%d [%d,%d]: %g vs %g (rel %g)\n",
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
        /* only the sum of squares is reordered (all terms positive): a relative bound per element
         */
        for (int i = 0; i < n; i++)
            if (!(fabs((double)y[i] - (double)yr[i]) <= 1e-5 * fabs((double)yr[i]) + 1e-30) &&
                bad++ < 5)
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

/* ---- quantized weights ----------------------------------------------------------------------- */

static const evlm_type QTYPES[] = {EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1};

/* An activation row of k floats with hard blocks: block b % 8 is 0 random, 1 all zero, 2 ties
 * (amax 127, so d = 1 and x.5 lands exactly on a tie), 3 huge (1e15), 4 tiny (1e-15), 5 mixed
 * huge and tiny, 6 +-max constant (qs = +-127), 7 one nonzero element. */
static void make_act(float *x, int k, int salt) {
    for (int b = 0; b < k / 32; b++) {
        float *v = x + b * 32;
        int kind = (b + salt) % 8;
        for (int j = 0; j < 32; j++) {
            float r = frand();
            switch (kind) {
            case 1:
                v[j] = 0.0f;
                break;
            case 2:
                v[j] = j == 0 ? 127.0f : (float)((int)(r * 120.0f)) + (j % 2 ? 0.5f : -0.5f);
                break;
            case 3:
                v[j] = r * 1e15f;
                break;
            case 4:
                v[j] = r * 1e-15f;
                break;
            case 5:
                v[j] = j % 3 ? r * 1e-20f : r * 1e12f;
                break;
            case 6:
                v[j] = j % 2 ? 3.0f : -3.0f;
                break;
            case 7:
                v[j] = j == 5 ? -r - 1.0f : 0.0f;
                break;
            default:
                v[j] = r * (float)(1 + b % 5);
                break;
            }
        }
    }
}

static void test_quantize_act(const evlm_kernels *kn) {
    static const int ks[] = {32, 64, 96, 4128};
    int bad = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
        for (int salt = 0; salt < 8; salt++) {
            int k = ks[ki], kb = k / 32;
            float *x = malloc(sizeof(float) * k);
            evlm_q8a *q = malloc(sizeof(evlm_q8a) * (kb + 1)),
                     *qr = malloc(sizeof(evlm_q8a) * (kb + 1));
            make_act(x, k, salt);
            memset(q, 0x5a, sizeof(evlm_q8a) * (kb + 1));
            memset(qr, 0x5a, sizeof(evlm_q8a) * (kb + 1));
            evlm_kernels_ref.quantize_act(x, qr, k);
            kn->quantize_act(x, q, k);
            /* bitwise: d, s, qs and the untouched block after the row */
            for (int b = 0; b <= kb; b++)
                if (memcmp(&q[b], &qr[b], sizeof(evlm_q8a)) != 0 && bad++ < 5)
                    fprintf(stderr, "%s quantize_act k%d salt%d block %d differs (d %g vs %g)\n",
                            kn->name, k, salt, b, (double)q[b].d, (double)qr[b].d);
            free(x), free(q), free(qr);
        }
    CHECKF(bad == 0, "%s quantize_act: %d blocks differ from ref", kn->name, bad);
}

/* A quantized W (n rows of kb blocks, stride ldw bytes) with every code value: random bytes
 * (Q8_0 -128 included), fp16 scales of random size and sign, some zero-scale and all-zero blocks.
 */
static void make_qweights(void *w, size_t ldw, evlm_type wt, int n, int kb) {
    size_t bs = evlm_type_size(wt);
    for (int r = 0; r < n; r++)
        for (int b = 0; b < kb; b++) {
            unsigned char *blk = (unsigned char *)w + (size_t)r * ldw + (size_t)b * bs;
            for (size_t j = 0; j < bs; j++) blk[j] = (unsigned char)(frand() * 128.0f + 128.0f);
            if ((r + b) % 11 == 3) memset(blk, 0, bs);
            uint16_t d =
                evlm_f32_to_f16((r + b) % 13 == 5 ? 0.0f : frand() * 0.02f * (float)(1 + b % 7));
            memcpy(blk, &d, 2);
            if (wt == EVLM_TYPE_Q4_1) {
                uint16_t m = evlm_f32_to_f16(frand() * 0.1f);
                memcpy(blk + 2, &m, 2);
            }
        }
}

/* sum over blocks of |dw dx| sum_j |wq_j xq_j| (+ |m s|): the magnitude gemm_q's error scales with
 */
static double qdot_mag(evlm_type wt, const void *w, const evlm_q8a *x, int kb) {
    double mag = 0;
    for (int b = 0; b < kb; b++) {
        double s = 0, d, extra = 0;
        if (wt == EVLM_TYPE_Q8_0) {
            const evlm_block_q8_0 *q = (const evlm_block_q8_0 *)w + b;
            for (int j = 0; j < 32; j++) s += fabs((double)q->qs[j] * x[b].qs[j]);
            d = evlm_f16_to_f32(q->d);
        } else if (wt == EVLM_TYPE_Q4_0) {
            const evlm_block_q4_0 *q = (const evlm_block_q4_0 *)w + b;
            for (int j = 0; j < 16; j++)
                s += fabs((double)((q->qs[j] & 15) - 8) * x[b].qs[j]) +
                     fabs((double)((q->qs[j] >> 4) - 8) * x[b].qs[j + 16]);
            d = evlm_f16_to_f32(q->d);
        } else {
            const evlm_block_q4_1 *q = (const evlm_block_q4_1 *)w + b;
            for (int j = 0; j < 16; j++)
                s += fabs((double)(q->qs[j] & 15) * x[b].qs[j]) +
                     fabs((double)(q->qs[j] >> 4) * x[b].qs[j + 16]);
            d = evlm_f16_to_f32(q->d);
            extra = fabs((double)evlm_f16_to_f32(q->m) * (double)x[b].s);
        }
        mag += fabs(d * (double)x[b].d) * s + extra;
    }
    return mag;
}

static void test_gemm_q(const evlm_kernels *kn) {
    static const int ms[] = {1, 3, 17, 40}, ns[] = {1, 6, 13};
    static const int ks[] = {32, 64, 96, 4128};
    int bad = 0;
    double worst = 0;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                    evlm_type wt = QTYPES[ti];
                    int m = ms[mi], n = ns[ni], k = ks[ki], kb = k / 32;
                    int n0 = n > 2 ? 1 : 0, n1 = n > 2 ? n - 1 : n;
                    size_t ldx = (size_t)kb + 1, ldy = (size_t)n + 3;
                    size_t ldw =
                        evlm_row_bytes(wt, k) + 6; /* padded; blocks need only 2-byte alignment */
                    float *xf = malloc(sizeof(float) * k);
                    evlm_q8a *x = malloc(sizeof(evlm_q8a) * ldx * m);
                    void *w = malloc(ldw * n);
                    float *y = malloc(sizeof(float) * ldy * m),
                          *yr = malloc(sizeof(float) * ldy * m);
                    for (int i = 0; i < m; i++) {
                        make_act(xf, k, i);
                        evlm_kernels_ref.quantize_act(xf, x + (size_t)i * ldx, k);
                    }
                    make_qweights(w, ldw, wt, n, kb);
                    for (size_t i = 0; i < ldy * m; i++) y[i] = yr[i] = SENTINEL;
                    evlm_kernels_ref.gemm_q(yr, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
                    kn->gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
                    for (int i = 0; i < m; i++)
                        for (int c = 0; c < (int)ldy; c++) {
                            float got = y[(size_t)i * ldy + c], want = yr[(size_t)i * ldy + c];
                            if (c < n0 || c >= n1) {
                                if (got != SENTINEL && bad++ < 5)
                                    fprintf(stderr,
                                            "%s gemm_q wrote outside [n0, n1): m%d n%d k%d c%d\n",
                                            kn->name, m, n, k, c);
                                continue;
                            }
                            double mag = qdot_mag(wt, (const char *)w + (size_t)c * ldw,
                                                  x + (size_t)i * ldx, kb);
                            double eps = (double)FLT_EPSILON;
                            double e = fabs((double)got - (double)want),
                                   tol = (kb + 16) * eps * mag;
                            if (mag > 0 && e / (eps * mag) > worst) worst = e / (eps * mag);
                            if (!(e <= tol) && bad++ < 5)
                                fprintf(stderr,
                                        "%s gemm_q %s m%d n%d k%d [%d,%d]: %g vs %g (mag %g)\n",
                                        kn->name, evlm_type_name(wt), m, n, k, i, c, (double)got,
                                        (double)want, mag);
                        }
                    free(xf), free(x), free(w), free(y), free(yr);
                }
    CHECKF(bad == 0, "%s gemm_q: %d bad elements", kn->name, bad);
    printf("%s gemm_q: worst |d| / (eps sum|terms|) = %.3g\n", kn->name, worst);
}

/* The dequantizing gemm's y against ref's yr (W in ggml layout, row stride ldw, type wt; shown
 * as `shown`): 1e-5 of sum_j |x_j w_j| inside [n0, n1), untouched (SENTINEL) outside. Returns the
 * bad elements; prints the first few (bad_so_far counts earlier ones). */
static int check_deq(const char *name, evlm_type wt, evlm_type shown, const float *x, size_t ldx,
                     const void *w, size_t ldw, const float *y, const float *yr, size_t ldy, int m,
                     int n0, int n1, int k, float *wf, int bad_so_far) {
    int bad = 0;
    for (int i = 0; i < m; i++)
        for (int c = 0; c < (int)ldy; c++) {
            float got = y[(size_t)i * ldy + c], want = yr[(size_t)i * ldy + c];
            if (c < n0 || c >= n1) {
                if (got != SENTINEL) bad++;
                continue;
            }
            evlm_dequantize_row(wt, (const char *)w + (size_t)c * ldw, wf, k);
            double mag = 1e-30;
            for (int j = 0; j < k; j++) mag += fabs((double)x[(size_t)i * ldx + j] * (double)wf[j]);
            if (!(fabs((double)got - (double)want) <= 1e-5 * mag) && bad_so_far + bad++ < 5)
                fprintf(stderr, "%s gemm %s m%d k%d [%d,%d]: %g vs %g\n", name,
                        evlm_type_name(shown), m, k, i, c, (double)got, (double)want);
        }
    return bad;
}

/* The `gemm` entry with quantized weights (act f32: rows dequantized) against ref's; f is the
 * gemm under test, named for messages. */
static void check_gemm_deq(const char *name,
                           void (*f)(float *, size_t, const float *, size_t, const void *, size_t,
                                     evlm_type, int, int, int, int, float *)) {
    static const int ms[] = {1, 5}, ks[] = {32, 64, 4128};
    int bad = 0;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t mi = 0; mi < 2; mi++)
            for (size_t ki = 0; ki < 3; ki++) {
                evlm_type wt = QTYPES[ti];
                int m = ms[mi], k = ks[ki], n = 7, n0 = 2, n1 = 6;
                size_t ldx = (size_t)k + 3, ldy = (size_t)n + 1, ldw = evlm_row_bytes(wt, k) + 2;
                float *x = malloc(sizeof(float) * ldx * m), *wf = malloc(sizeof(float) * k);
                void *w = malloc(ldw * n);
                float *y = malloc(sizeof(float) * ldy * m), *yr = malloc(sizeof(float) * ldy * m);
                float *scratch = malloc(sizeof(float) * k);
                for (size_t i = 0; i < ldx * m; i++) x[i] = frand();
                make_qweights(w, ldw, wt, n, k / 32);
                for (size_t i = 0; i < ldy * m; i++) y[i] = yr[i] = SENTINEL;
                evlm_kernels_ref.gemm(yr, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
                f(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
                bad += check_deq(name, wt, wt, x, ldx, w, ldw, y, yr, ldy, m, n0, n1, k, wf, bad);
                free(x), free(wf), free(w), free(y), free(yr), free(scratch);
            }
    CHECKF(bad == 0, "%s gemm (dequantizing): %d bad elements", name, bad);
}

/* gemm_q and the dequantizing gemm on 16-row interleaved weights (quant/repack.h) against ref
 * on the same rows in ggml layout, with the gemm_q bound above (and check_gemm_deq's 1e-5 for the
 * float path). Each output must be the same bits whatever m, n0 and n1 (lookahead's token trees
 * compare rows of different batches): every result of a batch is compared with row i computed
 * alone (m = 1) over the group range [16 * (c / 16), c + 1). Shapes: a partial last group
 * (n = 37), n1 inside a group, n0 = 16, m past the register tiles, k = 32 ... 4128. */
static void test_gemm_r16(const evlm_kernels *kn) {
    static const int ms[] = {1, 2, 3, 5, 8, 17}, ks[] = {32, 96, 4128};
    static const int ranges[][3] = {{16, 0, 16}, {37, 0, 37}, {37, 16, 35}, {64, 16, 64}};
    int bad = 0, not_same = 0;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t ri = 0; ri < sizeof ranges / sizeof *ranges; ri++)
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                evlm_type wt = QTYPES[ti], rt = evlm_type_r16(wt);
                int n = ranges[ri][0], n0 = ranges[ri][1], n1 = ranges[ri][2], k = ks[ki],
                    kb = k / 32;
                int mmax = 17;
                size_t ldw = evlm_row_bytes(wt, k), ldx = (size_t)kb, ldy = (size_t)n + 2;
                void *w = malloc(ldw * n), *wr = malloc(evlm_r16_bytes(rt, n, k));
                float *xf = malloc(sizeof(float) * (k + 3) * mmax),
                      *scratch = malloc(sizeof(float) * k);
                evlm_q8a *x = malloc(sizeof(evlm_q8a) * ldx * mmax);
                float *y = malloc(sizeof(float) * ldy * mmax),
                      *yr = malloc(sizeof(float) * ldy * mmax);
                float *y1 = malloc(sizeof(float) * ldy), *wf = malloc(sizeof(float) * k);
                make_qweights(w, ldw, wt, n, kb);
                evlm_repack_r16(wt, w, ldw, n, k, wr);
                for (int i = 0; i < mmax; i++) {
                    make_act(xf + (size_t)i * (k + 3), k, i);
                    evlm_kernels_ref.quantize_act(xf + (size_t)i * (k + 3), x + (size_t)i * ldx, k);
                }
                for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
                    int m = ms[mi];
                    for (size_t i = 0; i < ldy * m; i++) y[i] = yr[i] = SENTINEL;
                    evlm_kernels_ref.gemm_q(yr, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
                    kn->gemm_q(y, ldy, x, ldx, wr, ldw, rt, m, n0, n1, k);
                    for (int i = 0; i < m; i++)
                        for (int c = 0; c < (int)ldy; c++) {
                            float got = y[(size_t)i * ldy + c], want = yr[(size_t)i * ldy + c];
                            if (c < n0 || c >= n1) {
                                if (got != SENTINEL && bad++ < 5)
                                    fprintf(stderr,
                                            "%s gemm_q %s wrote outside [%d, %d): m%d c%d\n",
                                            kn->name, evlm_type_name(rt), n0, n1, m, c);
                                continue;
                            }
                            double mag = qdot_mag(wt, (const char *)w + (size_t)c * ldw,
                                                  x + (size_t)i * ldx, kb);
                            double e = fabs((double)got - (double)want), eps = (double)FLT_EPSILON;
                            if (!(e <= (kb + 16) * eps * mag) && bad++ < 5)
                                fprintf(stderr,
                                        "%s gemm_q %s m%d n%d k%d [%d,%d]: %g vs %g (mag %g)\n",
                                        kn->name, evlm_type_name(rt), m, n, k, i, c, (double)got,
                                        (double)want, mag);
                            /* the same bits computed alone, over the smallest group range holding c
                             */
                            int g0 = c / EVLM_R16 * EVLM_R16;
                            y1[c] = SENTINEL;
                            kn->gemm_q(y1, ldy, x + (size_t)i * ldx, ldx, wr, ldw, rt, 1, g0, c + 1,
                                       k);
                            if (memcmp(&y1[c], &got, sizeof got) != 0 && not_same++ < 5)
                                fprintf(
                                    stderr,
                                    "%s gemm_q %s m%d k%d [%d,%d]: %.9g in a batch, %.9g alone\n",
                                    kn->name, evlm_type_name(rt), m, k, i, c, (double)got,
                                    (double)y1[c]);
                        }
                    /* act f32: the dequantizing gemm reads the interleaved rows too */
                    if (m > 5) continue;
                    for (size_t i = 0; i < ldy * m; i++) y[i] = yr[i] = SENTINEL;
                    evlm_kernels_ref.gemm(yr, ldy, xf, (size_t)k + 3, w, ldw, wt, m, n0, n1, k,
                                          scratch);
                    kn->gemm(y, ldy, xf, (size_t)k + 3, wr, ldw, rt, m, n0, n1, k, scratch);
                    bad += check_deq(kn->name, wt, rt, xf, (size_t)k + 3, w, ldw, y, yr, ldy, m, n0,
                                     n1, k, wf, bad);
                }
                free(w), free(wr), free(xf), free(scratch), free(x), free(y), free(yr), free(y1),
                    free(wf);
            }
    CHECKF(bad == 0, "%s R16 gemm_q / gemm: %d bad elements", kn->name, bad);
    CHECKF(not_same == 0, "%s R16 gemm_q: %d elements depend on m / n0 / n1", kn->name, not_same);
}

/* gemm on 16-row interleaved float weights (F32_R16 / F16_R16 / BF16_R16): every table gives
 * ref's bits (repack.h's fma chain), for every m (1 .. 4 stream along k, 5 .. 100 take the
 * chunked path: k > 256 crosses chunks, m > 96 row blocks), partial groups, n0 = 16 and n1 inside
 * a group; and ref's result is the plain product of the unpacked rows within gemm's 1e-5 bound
 * (so the layout is the matrix's, not merely self-consistent). */
static void test_gemm_r16f(const evlm_kernels *kn) {
    static const int ms[] = {1, 2, 3, 4, 5, 8, 9, 13, 100}, ks[] = {1, 7, 64, 300};
    static const int ranges[][3] = {{16, 0, 16}, {37, 0, 37}, {37, 16, 35}, {80, 16, 80}};
    static const evlm_type types[] = {EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_BF16};
    int bad = 0, not_ref = 0;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t ri = 0; ri < sizeof ranges / sizeof *ranges; ri++)
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                evlm_type wt = types[ti], rt = evlm_type_r16(wt);
                int n = ranges[ri][0], n0 = ranges[ri][1], n1 = ranges[ri][2], k = ks[ki],
                    mmax = 100;
                size_t ldw = evlm_row_bytes(wt, k), ldx = (size_t)k + 3, ldy = (size_t)n + 2;
                void *w = malloc(ldw * n), *wr = malloc(evlm_r16_bytes(rt, n, k));
                float *wf = malloc(sizeof(float) * n * k), *x = malloc(sizeof(float) * ldx * mmax);
                float *y = malloc(sizeof(float) * ldy * mmax),
                      *yr = malloc(sizeof(float) * ldy * mmax);
                float *yp = malloc(sizeof(float) * ldy * mmax),
                      *scratch = malloc(sizeof(float) * k);
                make_weights(w, ldw, wf, wt, n, k);
                evlm_repack_r16(wt, w, ldw, n, k, wr);
                for (size_t i = 0; i < ldx * mmax; i++) x[i] = frand();
                for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
                    int m = ms[mi];
                    for (size_t i = 0; i < ldy * m; i++) y[i] = yr[i] = yp[i] = SENTINEL;
                    evlm_kernels_ref.gemm(yr, ldy, x, ldx, wr, ldw, rt, m, n0, n1, k, scratch);
                    kn->gemm(y, ldy, x, ldx, wr, ldw, rt, m, n0, n1, k, scratch);
                    if (kn == &evlm_kernels_ref)
                        evlm_kernels_ref.gemm(yp, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
                    for (int i = 0; i < m; i++)
                        for (int c = 0; c < (int)ldy; c++) {
                            size_t at = (size_t)i * ldy + c;
                            if (c < n0 || c >= n1) {
                                if (y[at] != SENTINEL && bad++ < 5)
                                    fprintf(stderr, "%s gemm %s wrote outside [%d, %d): m%d c%d\n",
                                            kn->name, evlm_type_name(rt), n0, n1, m, c);
                                continue;
                            }
                            if (memcmp(&y[at], &yr[at], sizeof(float)) != 0 && not_ref++ < 5)
                                fprintf(stderr, "%s gemm %s m%d n%d k%d [%d,%d]: %.9g, ref %.9g\n",
                                        kn->name, evlm_type_name(rt), m, n, k, i, c, (double)y[at],
                                        (double)yr[at]);
                            if (kn != &evlm_kernels_ref) continue;
                            double mag = 1e-6;
                            for (int j = 0; j < k; j++)
                                mag += fabs((double)x[(size_t)i * ldx + j] *
                                            (double)wf[(size_t)c * k + j]);
                            if (!(fabs((double)yr[at] - (double)yp[at]) <= 1e-5 * mag) && bad++ < 5)
                                fprintf(stderr,
                                        "ref gemm %s m%d n%d k%d [%d,%d]: %g, unpacked %g\n",
                                        evlm_type_name(rt), m, n, k, i, c, (double)yr[at],
                                        (double)yp[at]);
                        }
                }
                free(w), free(wr), free(wf), free(x), free(y), free(yr), free(yp), free(scratch);
            }
    CHECKF(bad == 0, "%s R16 float gemm: %d bad elements", kn->name, bad);
    CHECKF(not_ref == 0, "%s R16 float gemm: %d elements differ from ref's bits", kn->name,
           not_ref);
}

/* rope: rotate-half without FMA in every table, so bit for bit ref's (head_dim 2 .. 160, tails) */
static void test_rope(const evlm_kernels *kn) {
    static const int hds[] = {2, 8, 14, 16, 34, 64, 80, 128, 160};
    int bad = 0;
    for (size_t hi = 0; hi < sizeof hds / sizeof *hds; hi++) {
        int hd = hds[hi], nh = 3, half = hd / 2;
        float *x = malloc(sizeof(float) * nh * hd), *xr = malloc(sizeof(float) * nh * hd);
        float *c = malloc(sizeof(float) * half), *sn = malloc(sizeof(float) * half);
        for (int i = 0; i < nh * hd; i++) x[i] = xr[i] = 4.0f * frand();
        for (int i = 0; i < half; i++) c[i] = frand(), sn[i] = frand();
        evlm_kernels_ref.rope(xr, nh, hd, c, sn);
        kn->rope(x, nh, hd, c, sn);
        if (memcmp(x, xr, sizeof(float) * nh * hd) != 0 && bad++ < 3)
            fprintf(stderr, "%s rope head_dim %d differs from ref\n", kn->name, hd);
        free(x), free(xr), free(c), free(sn);
    }
    CHECKF(bad == 0, "%s rope: %d head sizes differ from ref", kn->name, bad);
}

static void test_quant(const evlm_kernels *kn) {
    test_quantize_act(kn);
    test_gemm_q(kn);
    test_gemm_r16(kn);
    check_gemm_deq(kn->name, kn->gemm);
}

/* evlm_matmul on Q8_0 weights (int8 path, activation rows quantized across the pool for prefill
 * sizes): bitwise the same for 1 and 3 threads, and equal to ref's quantize_act + gemm_q within
 * the gemm_q bound. */
static void test_matmul_q(void) {
    enum { M = 24, N = 37, K = 4096 };
    evlm_type wt = EVLM_TYPE_Q8_0;
    size_t ldw = evlm_row_bytes(wt, K);
    float *x = malloc(sizeof(float) * M * K), *y1 = malloc(sizeof(float) * M * N);
    float *y3 = malloc(sizeof(float) * M * N), *yr = malloc(sizeof(float) * M * N);
    float *scratch = malloc(sizeof(float) * 3 * K);
    size_t qb = evlm_matmul_qbuf_blocks(M, K);
    evlm_q8a *qbuf = malloc(sizeof(evlm_q8a) * qb), *xq = malloc(sizeof(evlm_q8a) * qb);
    void *w = malloc(ldw * N);
    for (int i = 0; i < M; i++) make_act(x + (size_t)i * K, K, i);
    make_qweights(w, ldw, wt, N, K / 32);
    evlm_tensor wt_ = {"w", wt, 2, {K, N, 1, 1}, {evlm_type_size(wt), ldw, ldw * N, ldw * N}, w};
    for (int i = 0; i < M; i++)
        evlm_kernels_ref.quantize_act(x + (size_t)i * K, xq + (size_t)i * (K / 32), K);
    evlm_kernels_ref.gemm_q(yr, N, xq, K / 32, w, ldw, wt, M, 0, N, K);
    evlm_pool *pool = NULL;
    CHECK_OK(evlm_pool_new(3, &pool));
    evlm_matmul_env env = {NULL, scratch, K, qbuf, qb, EVLM_ACT_INT8};
    evlm_matmul(&env, y1, N, x, K, &wt_, NULL, M);
    env.pool = pool;
    evlm_matmul(&env, y3, N, x, K, &wt_, NULL, M);
    CHECK(memcmp(y1, y3, sizeof(float) * M * N) == 0);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int c = 0; c < N; c++) {
            double mag =
                qdot_mag(wt, (const char *)w + (size_t)c * ldw, xq + (size_t)i * (K / 32), K / 32);
            if (!(fabs((double)y3[i * N + c] - (double)yr[i * N + c]) <=
                  (K / 32 + 16) * (double)FLT_EPSILON * mag))
                bad++;
        }
    CHECKF(bad == 0, "matmul Q8_0: %d elements off ref", bad);
    evlm_pool_free(pool);
    free(x), free(y1), free(y3), free(yr), free(scratch), free(qbuf), free(xq), free(w);
}

/* silu_mul, gelu_tanh and layernorm against ref. The SIMD exp is within a few ulp of expf, so
 * silu_mul's bound is relative (1e-6 |ref| + 1e-30); gelu's SIMD form x / (1 + e^-2u) avoids
 * ref's cancellation in 1 + tanh(u) for x << 0, where ref itself is only good to ~eps |x|, so its
 * bound is 1e-6 (|ref| + |x| eps-scaled); layernorm reorders the mean / variance sums: 1e-5
 * relative to |w| |x - mean| / sigma + |b| + |w| (the mean's reordering error over sigma). */
static void test_elementwise(const evlm_kernels *kn) {
    static const int ns[] = {1, 7, 8, 15, 16, 17, 33, 64, 768, 1001};
    int bad = 0;
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
        int n = ns[ni];
        float *g = malloc(sizeof(float) * (n + 1)), *gr = malloc(sizeof(float) * (n + 1));
        float *u = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n),
              *b = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++) {
            /* wide range: large |x| reaches the exp clamps; a few exact zeros and huge values */
            g[i] = gr[i] = i % 13 == 5 ? 0.0f : i % 17 == 3 ? 120.0f * frand() : 12.0f * frand();
            u[i] = frand(), w[i] = frand(), b[i] = frand();
        }
        g[n] = gr[n] = SENTINEL;
        evlm_kernels_ref.silu_mul(gr, u, n);
        kn->silu_mul(g, u, n);
        for (int i = 0; i <= n; i++)
            if (!(fabs((double)g[i] - (double)gr[i]) <= 1e-6 * fabs((double)gr[i]) + 1e-30) &&
                bad++ < 5)
                fprintf(stderr, "%s silu_mul n%d [%d]: %g vs %g\n", kn->name, n, i, (double)g[i],
                        (double)gr[i]);
        for (int i = 0; i < n; i++) g[i] = gr[i] = i % 11 == 4 ? 40.0f * frand() : 6.0f * frand();
        float *x0 = malloc(sizeof(float) * n);
        memcpy(x0, g, sizeof(float) * n);
        evlm_kernels_ref.gelu_tanh(gr, n);
        kn->gelu_tanh(g, n);
        for (int i = 0; i <= n; i++) {
            double xa = i < n ? fabs((double)x0[i]) : 0;
            if (!(fabs((double)g[i] - (double)gr[i]) <=
                  1e-6 * fabs((double)gr[i]) + 2e-7 * xa + 1e-30) &&
                bad++ < 5)
                fprintf(stderr, "%s gelu_tanh n%d [%d]: %g vs %g\n", kn->name, n, i, (double)g[i],
                        (double)gr[i]);
        }
        /* layernorm on an offset input (mean far from 0 tests the centred variance) */
        for (int i = 0; i < n; i++) x0[i] = 3.0f + frand();
        evlm_kernels_ref.layernorm(gr, x0, w, b, n, 1e-6f);
        kn->layernorm(g, x0, w, b, n, 1e-6f);
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++) mean += (double)x0[i];
        mean /= n;
        for (int i = 0; i < n; i++) var += ((double)x0[i] - mean) * ((double)x0[i] - mean);
        double inv = 1.0 / sqrt(var / n + 1e-6);
        /* either mean is off by rounding of the order of sqrt(n) eps |mean| (x > 0 here) */
        double dmean = 4.0 * sqrt((double)n) * (double)FLT_EPSILON * fabs(mean);
        for (int i = 0; i <= n; i++) {
            double tol = i < n ? 1e-5 * (fabs((double)w[i]) * fabs((double)x0[i] - mean) * inv +
                                         fabs((double)b[i])) +
                                     fabs((double)w[i]) * dmean * inv
                               : 0;
            if (!(fabs((double)g[i] - (double)gr[i]) <= tol + 1e-30) && bad++ < 5)
                fprintf(stderr, "%s layernorm n%d [%d]: %g vs %g\n", kn->name, n, i, (double)g[i],
                        (double)gr[i]);
        }
        free(g), free(gr), free(u), free(w), free(b), free(x0);
    }
    CHECKF(bad == 0, "%s silu_mul / gelu_tanh / layernorm: %d bad elements", kn->name, bad);
}

/* attn_tile against ref (attn_row per query, exact softmax): |d| <= (1e-6 + 8 eps max_t S_t)
 * sum_t p_t |v_t| per element (p from double), where S_t = scale sum_d |q_d k_d| bounds the
 * rounding of a score (both sides compute scores in float, in different orders, and a score
 * error of delta moves p_t by a factor of about e^delta), with query blocks / key blocks / head_dim
 * around the tile sizes, padded strides and a sentinel after each output row. Rows must not depend
 * on the call: the whole batch equals one call per row, bit for bit (what thread-count independence
 * needs). */
static void test_attn_tile(const evlm_kernels *kn) {
    static const int nqs[] = {1, 5, 16, 65, 130};
    static const int nkvs[] = {1, 3, 64, 65, 200};
    static const int hds[] = {1, 7, 16, 17, 64, 72};
    int bad = 0;
    double worst = 0;
    for (size_t a = 0; a < sizeof nqs / sizeof *nqs; a++)
        for (size_t bi = 0; bi < sizeof nkvs / sizeof *nkvs; bi++)
            for (size_t ci = 0; ci < sizeof hds / sizeof *hds; ci++)
                for (int causal = 0; causal < 2; causal++) {
                    int nq = nqs[a], nkv = nkvs[bi], hd = hds[ci];
                    if (causal && nkv < nq) continue;
                    int kv0 = causal ? nkv - nq : -1; /* causal: row i sees keys [0, kv0 + i] */
                    size_t ld = (size_t)hd + 3, ldo = (size_t)hd + 1;
                    float scale = 1.0f / sqrtf((float)hd);
                    float *q = malloc(sizeof(float) * ld * nq),
                          *k = malloc(sizeof(float) * ld * nkv);
                    float *v = malloc(sizeof(float) * ld * nkv);
                    float *o = malloc(sizeof(float) * ldo * nq),
                          *o1 = malloc(sizeof(float) * ldo * nq);
                    float *orf = malloc(sizeof(float) * ldo * nq);
                    float *scratch = malloc(sizeof(float) * evlm_attn_tile_scratch(nkv, hd));
                    double *p = malloc(sizeof(double) * nkv);
                    for (size_t i = 0; i < ld * nq; i++) q[i] = 3.0f * frand();
                    for (size_t i = 0; i < ld * nkv; i++) k[i] = 3.0f * frand(), v[i] = frand();
                    for (size_t i = 0; i < ldo * nq; i++) o[i] = o1[i] = orf[i] = SENTINEL;
                    evlm_kernels_ref.attn_tile(orf, ldo, q, ld, nq, k, v, ld, nkv, hd, scale, kv0,
                                               scratch);
                    kn->attn_tile(o, ldo, q, ld, nq, k, v, ld, nkv, hd, scale, kv0, scratch);
                    /* each row alone (causal: over exactly its keys), then rows [1, nq) in one call
                     */
                    for (int i = 0; i < nq; i++)
                        kn->attn_tile(o1 + (size_t)i * ldo, ldo, q + (size_t)i * ld, ld, 1, k, v,
                                      ld, causal ? kv0 + i + 1 : nkv, hd, scale,
                                      causal ? kv0 + i : -1, scratch);
                    if (memcmp(o, o1, sizeof(float) * ldo * nq) != 0 && bad++ < 5)
                        fprintf(stderr,
                                "%s attn_tile nq%d nkv%d hd%d causal%d: rows differ from one-row "
                                "calls\n",
                                kn->name, nq, nkv, hd, causal);
                    if (nq > 1) {
                        kn->attn_tile(o1 + ldo, ldo, q + ld, ld, nq - 1, k, v, ld, nkv, hd, scale,
                                      causal ? kv0 + 1 : -1, scratch);
                        if (memcmp(o + ldo, o1 + ldo, sizeof(float) * ldo * (nq - 1)) != 0 &&
                            bad++ < 5)
                            fprintf(
                                stderr,
                                "%s attn_tile nq%d nkv%d hd%d causal%d: rows differ when split\n",
                                kn->name, nq, nkv, hd, causal);
                    }
                    for (int i = 0; i < nq; i++) {
                        double mx = -1e300, sum = 0, smax = 0;
                        const int nvis = causal ? kv0 + i + 1 : nkv;
                        for (int t = 0; t < nvis; t++) {
                            double s = 0, sa = 0;
                            for (int d = 0; d < hd; d++) {
                                double qk =
                                    (double)q[(size_t)i * ld + d] * (double)k[(size_t)t * ld + d];
                                s += qk, sa += fabs(qk);
                            }
                            p[t] = s * (double)scale;
                            if (p[t] > mx) mx = p[t];
                            if (sa * (double)scale > smax) smax = sa * (double)scale;
                        }
                        double tol = 1e-6 + 8.0 * (double)FLT_EPSILON * smax;
                        for (int t = 0; t < nvis; t++) sum += (p[t] = exp(p[t] - mx));
                        for (int d = 0; d <= (int)hd; d++) {
                            float got = o[(size_t)i * ldo + d], want = orf[(size_t)i * ldo + d];
                            if (d == hd) {
                                if (got != SENTINEL && bad++ < 5)
                                    fprintf(stderr, "%s attn_tile wrote past head_dim\n", kn->name);
                                continue;
                            }
                            double mag = 1e-30;
                            for (int t = 0; t < nvis; t++)
                                mag += p[t] / sum * fabs((double)v[(size_t)t * ld + d]);
                            double e = fabs((double)got - (double)want) / mag;
                            if (e / tol > worst) worst = e / tol;
                            if (!(e <= tol) && bad++ < 5)
                                fprintf(stderr,
                                        "%s attn_tile nq%d nkv%d hd%d [%d,%d]: %g vs %g (rel %g)\n",
                                        kn->name, nq, nkv, hd, i, d, (double)got, (double)want, e);
                        }
                    }
                    free(q), free(k), free(v), free(o), free(o1), free(orf), free(scratch), free(p);
                }
    CHECKF(bad == 0, "%s attn_tile: %d bad elements", kn->name, bad);
    printf("%s attn_tile: worst |d| / (sum p|v| bound) = %.3g\n", kn->name, worst);
}

/* attn_rows: every row bitwise this table's attn_row with the equivalent full mask row, for GQA
 * groups and token trees (a visible prefix n_pre, per-row masks after it, rows without a mask,
 * per-row key counts), head sizes on and off the vector width */
static void test_attn_rows(const evlm_kernels *kn) {
    enum { NK = 300, HD = 200 };
    static const int dims[] = {8, 12, 16, 64, 80, 128, 200};
    float *k = malloc(sizeof(float) * NK * HD), *v = malloc(sizeof(float) * NK * HD);
    float *q = malloc(sizeof(float) * EVLM_ATTN_ROWS * HD),
          *o = malloc(sizeof(float) * EVLM_ATTN_ROWS * HD);
    float *ref = malloc(sizeof(float) * HD), *scores = malloc(sizeof(float) * EVLM_ATTN_ROWS * NK);
    uint8_t *masks = malloc(EVLM_ATTN_ROWS * NK), full[NK];
    for (int i = 0; i < NK * HD; i++) k[i] = frand(), v[i] = frand();
    int bad = 0, cases = 0;
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
        for (int trial = 0; trial < 12; trial++) {
            const int hd = dims[d], n_q = 1 + (trial * 5) % EVLM_ATTN_ROWS,
                      base = 1 + (trial * 37) % 250;
            const int n_pre = trial % 3 == 0 ? base : trial % 3 == 1 ? 0 : base / 2;
            int n_kv[EVLM_ATTN_ROWS];
            float *outs[EVLM_ATTN_ROWS];
            const float *qs[EVLM_ATTN_ROWS];
            const uint8_t *ms[EVLM_ATTN_ROWS];
            for (int i = 0; i < n_q; i++) {
                n_kv[i] = base + (trial % 2 ? i : 0); /* a tree's rows see one more key each */
                if (n_kv[i] > NK) n_kv[i] = NK;
                for (int c = 0; c < hd; c++) q[i * HD + c] = 2 * frand();
                uint8_t *m = masks + i * NK;
                for (int t = 0; t < NK; t++) m[t] = frand() > -0.3f;
                m[n_kv[i] - 1 - n_pre >= 0 ? n_kv[i] - 1 - n_pre : 0] =
                    1; /* sees at least its own key */
                ms[i] = i % 4 == 3 ? NULL : m;
                qs[i] = q + i * HD;
                outs[i] = o + i * HD;
            }
            kn->attn_rows(outs, qs, n_q, k, v, HD, n_kv, n_pre, trial % 5 == 4 ? NULL : ms, hd,
                          0.125f, scores);
            for (int i = 0; i < n_q; i++) {
                for (int t = 0; t < n_kv[i]; t++)
                    full[t] = evlm_attn_rows_sees(n_kv, n_pre, trial % 5 == 4 ? NULL : ms, i, t);
                kn->attn_row(ref, qs[i], k, v, n_kv[i], hd, HD, 0.125f, full, scores);
                bad += memcmp(ref, outs[i], sizeof(float) * (size_t)hd) != 0;
                cases++;
            }
        }
    CHECKF(bad == 0, "%s attn_rows: %d of %d rows differ from attn_row", kn->name, bad, cases);
    free(k);
    free(v);
    free(q);
    free(o);
    free(ref);
    free(scores);
    free(masks);
}

/* max: the largest value exactly, for every length and position of the maximum */
static void test_max(const evlm_kernels *kn) {
    float x[300];
    int bad = 0;
    for (int n = 1; n <= 300; n += (n < 40 ? 1 : 37)) {
        for (int at = 0; at < n; at += (n < 40 ? 1 : 11)) {
            for (int i = 0; i < n; i++)
                x[i] = -1000.0f + (float)((i * 7919) % 997) - (i == n - 1 ? INFINITY : 0.0f);
            x[at] = 5000.0f + (float)at;
            float r = evlm_kernels_ref.max(x, n), g = kn->max(x, n);
            if (r != x[at] || g != r) bad++;
        }
        for (int i = 0; i < n; i++) x[i] = -(float)(i + 1); /* all negative: x[0] */
        if (kn->max(x, n) != -1.0f) bad++;
    }
    CHECKF(bad == 0, "%s max: %d wrong results", kn->name, bad);
}

int main(void) {
    static const char *names[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    int n_tables = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const evlm_kernels *kn = evlm_kernels_by_name(names[i]);
        if (!kn) {
            printf("%s: not built or not supported by this CPU\n", names[i]);
            continue;
        }
        CHECK(strcmp(kn->name, names[i]) == 0);
        CHECK(kn->gemm && kn->rmsnorm && kn->silu_mul && kn->rope && kn->attn_row &&
              kn->layernorm && kn->gelu_tanh && kn->max && kn->attn_rows);
        test_max(kn);
        test_attn_rows(kn);
        n_tables++;
        test_gemm(kn);
        test_gemm_r16f(kn);
        test_rmsnorm(kn);
        test_rope(kn);
        test_attn_row(kn);
        CHECK(kn->attn_tile != NULL);
        test_elementwise(kn);
        test_attn_tile(kn);
        CHECK(kn->quantize_act && kn->gemm_q);
        test_quant(kn);
    }
#if defined(__x86_64__)
    /* the dequantizing gemm of the AVX2 quant file, which the avx2 table's gemm may route to */
    if (evlm_kernels_by_name("avx2")) check_gemm_deq("avx2_gemm_deq", evlm__avx2_gemm_deq);
#endif
    CHECK(n_tables >= 1);
    test_matmul_q();
    CHECK(evlm_kernels_by_name("no-such-isa") == NULL);
    CHECK(evlm_kernels_by_name(NULL) == NULL);

    /* EVLM_ISA: an unknown name falls back to a supported table (set before the first get) */
    setenv("EVLM_ISA", "no-such-isa", 1);
    const evlm_kernels *g = evlm_kernels_get();
    CHECK(g != NULL && evlm_kernels_by_name(g->name) == g);
    CHECK(evlm_kernels_get() == g);
    return test_done();
}
