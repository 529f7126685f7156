/*
 * x86_avx2.c - AVX2 + FMA + F16C kernels: gemm for F32 / F16 / BF16 weights, the sum of squares
 * of rmsnorm, and the dot / axpy loops of attn_row. Every other op is the scalar `ref` kernel.
 *
 * Compiled with -mavx2 -mfma -mf16c for this file only (CMakeLists.txt) and picked at run time
 * by dispatch.c after cpuid says the CPU has all three; on other architectures the file is
 * empty. Not bit-exact with `ref`: the dot products sum in 4 x 8 lanes with FMA, so results
 * differ by reordering (tests bound the difference relative to sum |x_j w_j|). Half-precision
 * weights convert exactly to float, so F16 / BF16 see no error beyond that reordering.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

/* built only with this file's flags (CMakeLists.txt), so dispatch.c knows it exists */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <math.h>

#define EVLM__INLINE static inline __attribute__((always_inline))

EVLM__INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 weights from element j of a row of type wt, as float (exact for all three types). */
EVLM__INLINE __m256 load8(const void *w, int j, evlm_type wt) {
    if (wt == EVLM_TYPE_F32) return _mm256_loadu_ps((const float *)w + j);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)w + j));
    if (wt == EVLM_TYPE_F16) return _mm256_cvtph_ps(h);
    /* BF16 is the top half of an F32: widen and shift into place */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

EVLM__INLINE float load1(const void *w, int j, evlm_type wt) {
    if (wt == EVLM_TYPE_F32) return ((const float *)w)[j];
    uint16_t h = ((const uint16_t *)w)[j];
    return wt == EVLM_TYPE_F16 ? evlm_f16_to_f32(h) : evlm_bf16_to_f32(h);
}

/* x (k) . w (k): 4 independent accumulators hide the FMA latency; scalar tail for k % 8. */
EVLM__INLINE float dot(const float *x, const void *w, int k, evlm_type wt) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 32 <= k; j += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), load8(w, j, wt), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), load8(w, j + 8, wt), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 16), load8(w, j + 16, wt), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 24), load8(w, j + 24, wt), a3);
    }
    for (; j + 8 <= k; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), load8(w, j, wt), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; j < k; j++) s += x[j] * load1(w, j, wt);
    return s;
}

static float dot_f32(const float *x, const void *w, int k) { return dot(x, w, k, EVLM_TYPE_F32); }
static float dot_f16(const float *x, const void *w, int k) { return dot(x, w, k, EVLM_TYPE_F16); }
static float dot_bf16(const float *x, const void *w, int k) { return dot(x, w, k, EVLM_TYPE_BF16); }

/* One F16 / BF16 row to float (exact), so m > 1 rows of x reuse it without converting again. */
static void row_to_f32(float *dst, const void *w, int k, evlm_type wt) {
    int j = 0;
    if (wt == EVLM_TYPE_F16)
        for (; j + 8 <= k; j += 8) _mm256_storeu_ps(dst + j, load8(w, j, EVLM_TYPE_F16));
    else
        for (; j + 8 <= k; j += 8) _mm256_storeu_ps(dst + j, load8(w, j, EVLM_TYPE_BF16));
    for (; j < k; j++) dst[j] = load1(w, j, wt);
}

/* Y (m, n) = X (m, k) @ W^T, W rows [n0, n1): one weight row at a time against all m rows of x */
static void gemm_avx2(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                      evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    float (*dotf)(const float *, const void *, int);
    switch (wt) {
    case EVLM_TYPE_F32: dotf = dot_f32; break;
    case EVLM_TYPE_F16: dotf = dot_f16; break;
    case EVLM_TYPE_BF16: dotf = dot_bf16; break;
    default: evlm__avx2_gemm_deq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch); return;
    }
    for (int n = n0; n < n1; n++) {
        const void *wr = (const char *)w + (size_t)n * ldw;
        float (*f)(const float *, const void *, int) = dotf;
        if (m > 1 && wt != EVLM_TYPE_F32) {
            row_to_f32(scratch, wr, k, wt);
            wr = scratch;
            f = dot_f32;
        }
        for (int i = 0; i < m; i++) y[(size_t)i * ldy + n] = f(x + (size_t)i * ldx, wr, k);
    }
}

/* y (n) = x * rsqrt(mean(x^2) + eps) * w; the scaling is the same per-element product as ref */
static void rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps) {
    float inv = 1.0f / sqrtf(dot_f32(x, x, n) / (float)n + eps);
    __m256 vinv = _mm256_set1_ps(inv);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(w + i),
                                              _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)));
    for (; i < n; i++) y[i] = w[i] * (x[i] * inv);
}

/* out (head_dim) = softmax(q . K^T * scale) @ V; exp stays scalar expf as in ref */
static void attn_row_avx2(float *out, const float *q, const float *k, const float *v, int n_kv,
                          int head_dim, size_t ld, float scale, const uint8_t *mask, float *scores) {
    float mx = -INFINITY;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) {
            scores[t] = -INFINITY; /* exp gives exactly 0 */
            continue;
        }
        float s = dot_f32(q, k + (size_t)t * ld, head_dim) * scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    float inv = evlm__ref_softmax_exp(scores, n_kv, mx);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        const float *vr = v + (size_t)t * ld;
        float p = scores[t] * inv;
        __m256 vp = _mm256_set1_ps(p);
        int i = 0;
        for (; i + 8 <= head_dim; i += 8)
            _mm256_storeu_ps(out + i,
                             _mm256_fmadd_ps(vp, _mm256_loadu_ps(vr + i), _mm256_loadu_ps(out + i)));
        for (; i < head_dim; i++) out[i] += p * vr[i];
    }
}

const evlm_kernels evlm_kernels_avx2 = {
    .name = "avx2",
    .gemm = gemm_avx2,
    .rmsnorm = rmsnorm_avx2,
    .silu_mul = evlm__ref_silu_mul,
    .rope = evlm__ref_rope,
    .attn_row = attn_row_avx2,
    .layernorm = evlm__ref_layernorm,
    .gelu_tanh = evlm__ref_gelu_tanh,
    .quantize_act = evlm__avx2_quantize_act,
    .gemm_q = evlm__avx2_gemm_q,
};

#else
typedef int evlm__x86_avx2_empty; /* ISO C forbids an empty translation unit */
#endif
