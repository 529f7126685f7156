/*
 * x86_avx512.c - AVX-512 kernels: the gemm of x86_avx2.c 16 lanes wide (F32 / F16 via
 * _mm512_cvtph_ps / BF16 by shifting), the sum of squares of rmsnorm, and the dot / axpy loops
 * of attn_row. Every other op is the scalar `ref` kernel.
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c for this file only
 * (CMakeLists.txt); dispatch.c uses it only when cpuid reports all of them. Tails (k % 16) use
 * masked loads, which never touch the masked-off bytes, instead of a scalar loop. Not bit-exact
 * with `ref` (4 x 16-lane FMA accumulation); tests bound the difference relative to
 * sum |x_j w_j|. Not here: threading, int8 / VNNI paths.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

/* built only with this file's flags (CMakeLists.txt), so dispatch.c knows it exists */
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <math.h>

#define EVLM__INLINE static inline __attribute__((always_inline))

/* The 16 (masked: first popcount(mk)) weights from element j of a row of type wt, as float. */
EVLM__INLINE __m512 load16(const void *w, int j, evlm_type wt, __mmask16 mk) {
    if (wt == EVLM_TYPE_F32) return _mm512_maskz_loadu_ps(mk, (const float *)w + j);
    __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + j);
    if (wt == EVLM_TYPE_F16) return _mm512_cvtph_ps(h);
    /* BF16 is the top half of an F32: widen and shift into place */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* x (k) . w (k) with 4 independent 16-lane accumulators. */
EVLM__INLINE float dot(const float *x, const void *w, int k, evlm_type wt) {
    const __mmask16 all = 0xffff;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int j = 0;
    for (; j + 64 <= k; j += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), load16(w, j, wt, all), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 16), load16(w, j + 16, wt, all), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 32), load16(w, j + 32, wt, all), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 48), load16(w, j + 48, wt, all), a3);
    }
    for (; j + 16 <= k; j += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), load16(w, j, wt, all), a0);
    if (j < k) {
        __mmask16 mk = (__mmask16)((1u << (k - j)) - 1u);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + j), load16(w, j, wt, mk), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float dot_f32(const float *x, const void *w, int k) { return dot(x, w, k, EVLM_TYPE_F32); }
static float dot_f16(const float *x, const void *w, int k) { return dot(x, w, k, EVLM_TYPE_F16); }
static float dot_bf16(const float *x, const void *w, int k) { return dot(x, w, k, EVLM_TYPE_BF16); }

/* One F16 / BF16 row to float (exact), so m > 1 rows of x reuse it without converting again. */
static void row_to_f32(float *dst, const void *w, int k, evlm_type wt) {
    for (int j = 0; j < k; j += 16) {
        __mmask16 mk = k - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - j)) - 1u);
        __m512 v = wt == EVLM_TYPE_F16 ? load16(w, j, EVLM_TYPE_F16, mk)
                                       : load16(w, j, EVLM_TYPE_BF16, mk);
        _mm512_mask_storeu_ps(dst + j, mk, v);
    }
}

/* Y (m, n) = X (m, k) @ W^T, W rows [n0, n1): one weight row at a time against all m rows of x */
static void gemm_avx512(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                        size_t ldw, evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
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
static void rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps) {
    float inv = 1.0f / sqrtf(dot_f32(x, x, n) / (float)n + eps);
    __m512 vinv = _mm512_set1_ps(inv);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 r = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, w + i),
                                 _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vinv));
        _mm512_mask_storeu_ps(y + i, mk, r);
    }
}

/* out (head_dim) = softmax(q . K^T * scale) @ V; exp stays scalar expf as in ref */
static void attn_row_avx512(float *out, const float *q, const float *k, const float *v, int n_kv,
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
        __m512 vp = _mm512_set1_ps(scores[t] * inv);
        for (int i = 0; i < head_dim; i += 16) {
            __mmask16 mk =
                head_dim - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (head_dim - i)) - 1u);
            __m512 r = _mm512_fmadd_ps(vp, _mm512_maskz_loadu_ps(mk, vr + i),
                                       _mm512_maskz_loadu_ps(mk, out + i));
            _mm512_mask_storeu_ps(out + i, mk, r);
        }
    }
}

const evlm_kernels evlm_kernels_avx512 = {
    .name = "avx512",
    .gemm = gemm_avx512,
    .rmsnorm = rmsnorm_avx512,
    .silu_mul = evlm__ref_silu_mul,
    .rope = evlm__ref_rope,
    .attn_row = attn_row_avx512,
    .layernorm = evlm__ref_layernorm,
    .gelu_tanh = evlm__ref_gelu_tanh,
    .quantize_act = evlm__avx2_quantize_act,
    .gemm_q = evlm__avx2_gemm_q,
};

#else
typedef int evlm__x86_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
