/*
 * x86_avx512.c - the "avx512" table: the gemm of x86_avx2.c 16 lanes wide (F32 / F16 via
 * _mm512_cvtph_ps / BF16 by shifting; F32_R16 / F16_R16 / BF16_R16 go to x86_avx512_r16f.c,
 * quantized weights to x86_avx2_quant.c's dequantizing gemm), rmsnorm, rope, silu_mul,
 * gelu_tanh (a vector exp, exp16), layernorm, max, attn_row, and attn_tile / attn_rows as
 * attn_walk.h's walks with this file's primitives. quantize_act and gemm_q are
 * x86_avx2_quant.c's; dispatch.c's "avx512vnni" table swaps in x86_avx512_quant.c's.
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c for this file only
 * (CMakeLists.txt); dispatch.c uses it only when cpuid reports all of them. Tails (k % 16) use
 * masked loads, which never touch the masked-off bytes, instead of a scalar loop. Not bit-exact
 * with `ref` where sums are reordered or exp is exp16 (16-lane FMA accumulation; tests bound
 * the difference relative to sum |x_j w_j|); bit-exact: rope and the per-element scaling of
 * rmsnorm. Not here: threading, int8 / VNNI paths.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

/* built only with this file's flags (CMakeLists.txt), so dispatch.c knows it exists */
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) &&                        \
    defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>

/* The 16 (masked: first popcount(mk)) weights from element j of a row of type wt, as float. */
EVLM__INLINE __m512 load16(const void *w, int j, evlm_type wt, __mmask16 mk) {
    if (wt == EVLM_TYPE_F32) return _mm512_maskz_loadu_ps(mk, (const float *)w + j);
    __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + j);
    if (wt == EVLM_TYPE_F16) return _mm512_cvtph_ps(h);
    /* BF16 is the top half of an F32: widen and shift into place */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 weights from element j, unmasked */
EVLM__INLINE __m512 load16_full(const void *w, int j, evlm_type wt) {
    if (wt == EVLM_TYPE_F32) return _mm512_loadu_ps((const float *)w + j);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)w + j));
    if (wt == EVLM_TYPE_F16) return _mm512_cvtph_ps(h);
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

static float dot_f32(const float *x, const void *w, int k) {
    return dot(x, w, k, EVLM_TYPE_F32);
}

/* ---- gemm ----------------------------------------------------------------------------------
 * Every output element is one dot product summed the same way whatever the path: a single
 * 16-lane FMA accumulator along k (a masked chunk for k % 16), then hsum16's fixed tree. So a
 * row of Y is bitwise the same for any m, row range or tile it falls in (lookahead relies on it).
 * Speed comes from register tiles instead: MR rows of x times NR weight rows share their loads
 * (MR x NR accumulators), and F16 / BF16 weights are widened once per tile, not once per x row. */

/* sum of the 16 lanes: halves added down to 4 lanes, then (0 + 2) + (1 + 3) */
EVLM__INLINE float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

#define GEMM_MR       4 /* x rows per tile */
#define GEMM_NR       6 /* weight rows per tile (m > 1) */
#define GEMM_NR1      8 /* weight rows per tile at m = 1: 8 FMA chains hide the latency */
#define GEMM_L2_BYTES (384 * 1024) /* weight rows per chunk: x tiles re-read once per chunk */

/* Y[0..MR)[0..NR) = X[0..MR) . W[0..NR) over k, MR <= 4. A macro rather than an inline function,
 * with one small accumulator array per x row, so GCC keeps every accumulator in a register (one
 * array of MR x NR vectors is too big for its scalarization and goes through the stack). */
#define GEMM_TILE_ROW(MR, NR, r, a, xload)                                                         \
    if (MR > r) {                                                                                  \
        __m512 xv = xload;                                                                         \
        for (int c = 0; c < NR; c++) a[c] = _mm512_fmadd_ps(xv, wv[c], a[c]);                      \
    }
#define GEMM_TILE_STEP(MR, NR, wload, xload)                                                       \
    for (int c = 0; c < NR; c++) wv[c] = wload;                                                    \
    GEMM_TILE_ROW(MR, NR, 0, a0, xload(0))                                                         \
    GEMM_TILE_ROW(MR, NR, 1, a1, xload(1))                                                         \
    GEMM_TILE_ROW(MR, NR, 2, a2, xload(2))                                                         \
    GEMM_TILE_ROW(MR, NR, 3, a3, xload(3))
#define GEMM_TILE_STORE(MR, NR, r, a)                                                              \
    if (MR > r)                                                                                    \
        for (int c = 0; c < NR; c++) y[(size_t)r * ldy + c] = hsum16(a[c]);
/* Streaming tiles (m <= GEMM_MR) request the line GEMM_PF_BYTES ahead in each of their rows, one
 * per 64 bytes of progress (see gemm_avx512) */
#define GEMM_PREFETCH_AHEAD(MR, NR, wt)                                                            \
    if (pf && ((size_t)j * es) % 64 == 0)                                                          \
        for (int c = 0; c < NR; c++)                                                               \
            _mm_prefetch(pf + (size_t)c * ldw + (size_t)j * es, _MM_HINT_T0);
#define GEMM_PF_BYTES 1536 /* prefetch distance along a row (tuned by measurement) */
#define GEMM_XFULL(r) _mm512_loadu_ps(x + (size_t)(r)*ldx + j)
#define GEMM_XTAIL(r) _mm512_maskz_loadu_ps(mk, x + (size_t)(r)*ldx + j)
#define GEMM_TILE_BODY(MR, NR, wt)                                                                 \
    const size_t es = evlm_type_traits_of(wt)->size; /* bytes per weight */                        \
    __m512 a0[NR], a1[NR], a2[NR], a3[NR], wv[NR];                                                 \
    for (int c = 0; c < NR; c++) a0[c] = a1[c] = a2[c] = a3[c] = _mm512_setzero_ps();              \
    int j = 0;                                                                                     \
    for (; j + 16 <= k; j += 16) {                                                                 \
        GEMM_PREFETCH_AHEAD(MR, NR, wt)                                                            \
        GEMM_TILE_STEP(MR, NR, load16_full(w + (size_t)c * ldw, j, wt), GEMM_XFULL)                \
    }                                                                                              \
    if (j < k) {                                                                                   \
        __mmask16 mk = (__mmask16)((1u << (k - j)) - 1u);                                          \
        GEMM_TILE_STEP(MR, NR, load16(w + (size_t)c * ldw, j, wt, mk), GEMM_XTAIL)                 \
    }                                                                                              \
    GEMM_TILE_STORE(MR, NR, 0, a0)                                                                 \
    GEMM_TILE_STORE(MR, NR, 1, a1)                                                                 \
    GEMM_TILE_STORE(MR, NR, 2, a2)                                                                 \
    GEMM_TILE_STORE(MR, NR, 3, a3)

/* evlm__f_tile (ref_impl.h); pf: this tile's w + GEMM_PF_BYTES, the addresses to prefetch ahead
 * of the loads (decode tiles only), or NULL */

#define TILE_FN(T, MR, NR)                                                                         \
    static void tile_##T##_##MR##x##NR(float *y, size_t ldy, const float *x, size_t ldx,           \
                                       const char *w, size_t ldw, int k, const char *pf) {         \
        GEMM_TILE_BODY(MR, NR, EVLM_TYPE_##T)                                                      \
    }
#define TILE_SET(T)                                                                                \
    TILE_FN(T, 1, 1)                                                                               \
    TILE_FN(T, 2, 1)                                                                               \
    TILE_FN(T, 3, 1)                                                                               \
    TILE_FN(T, 4, 1)                                                                               \
    TILE_FN(T, 1, 6)                                                                               \
    TILE_FN(T, 2, 6)                                                                               \
    TILE_FN(T, 3, 6)                                                                               \
    TILE_FN(T, 4, 6)                                                                               \
    TILE_FN(T, 1, 8)                                                                               \
    static const evlm__f_tile tiles_##T[3][GEMM_MR + 1] = {                                        \
        {NULL, tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1},                    \
        {NULL, tile_##T##_1x6, tile_##T##_2x6, tile_##T##_3x6, tile_##T##_4x6},                    \
        {NULL, tile_##T##_1x8, NULL, NULL, NULL}};
TILE_SET(F32)
TILE_SET(F16)
TILE_SET(BF16)

/* the float gemm's tile sets per file type (ref_impl.h) */
const evlm__f_set evlm__avx512_gemm_f[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = tiles_F32,
    [EVLM_TYPE_F16] = tiles_F16,
    [EVLM_TYPE_BF16] = tiles_BF16,
};

/* Y (m, n) = X (m, k) @ W^T, W rows [n0, n1): chunks of weight rows that stay in L2; in each,
 * tiles of MR x rows (in L1) against NR weight rows at a time, leftovers one row at a time */
static void gemm_avx512(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                        evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    if (evlm_type_traits_of(wt)->s24 && evlm_type_traits_of(wt)->is_float) { /* 2:4 forms */
        evlm__avx512_gemm_s24f(y, ldy, x, ldx, w, wt, m, n0, n1, k);
        return;
    }
    const evlm__f_set set = (unsigned)wt < EVLM_TYPE_COUNT ? evlm__avx512_gemm_f[wt] : NULL;
    if (!set) { /* float R16 forms by their base's entry, block types dequantized */
        const evlm_type base = evlm_type_r16_base(wt);
        if ((unsigned)base < EVLM_TYPE_COUNT && evlm__avx512_r16f[base])
            evlm__avx512_gemm_r16f(y, ldy, x, ldx, w, wt, m, n0, n1, k);
        else
            evlm__avx2_gemm_deq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
        return;
    }
    const int nr = m == 1 ? GEMM_NR1 : GEMM_NR;
    const evlm__f_tile *wide = set[m == 1 ? 2 : 1], *narrow = set[0];
    size_t row_bytes = (size_t)k * evlm_type_size(wt) + 64;
    int nc = (int)(GEMM_L2_BYTES / row_bytes) / nr * nr;
    if (nc < nr) nc = nr;
    const char *wb = (const char *)w;
    /* decode reads each weight once, NR rows at a time: the hardware prefetcher keeps up with one
     * sequential stream but not with NR interleaved ones (short rows end before it even ramps
     * up), so tiles ask for GEMM_PF_BYTES ahead in each of their rows (past a short row that is
     * the next rows, past the share the next matrix; a prefetch never faults) */
    const bool stream =
        m <= GEMM_MR; /* one x tile: every weight is read once (decode, token trees) */
    for (int c0 = n0; c0 < n1; c0 += nc) {
        int c1 = n1 - c0 > nc ? c0 + nc : n1;
        for (int i = 0; i < m; i += GEMM_MR) {
            int mr = m - i < GEMM_MR ? m - i : GEMM_MR;
            const float *xi = x + (size_t)i * ldx;
            float *yi = y + (size_t)i * ldy;
            int n = c0;
            for (; n + nr <= c1; n += nr) {
                const char *pf = stream ? wb + (size_t)n * ldw + GEMM_PF_BYTES : NULL;
                wide[mr](yi + n, ldy, xi, ldx, wb + (size_t)n * ldw, ldw, k, pf);
            }
            for (; n < c1; n++)
                narrow[mr](yi + n, ldy, xi, ldx, wb + (size_t)n * ldw, ldw, k, NULL);
        }
    }
}

/* ---- elementwise: exp, max, silu_mul, gelu_tanh, layernorm ----------------------------------- */

/* e^x within ~2 ulp (Cephes expf polynomial on x - n ln2, then scalef by 2^n); e^-inf = 0,
 * inputs above 88 give e^88. */
EVLM__INLINE __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

EVLM__INLINE __mmask16 tail_mask(int left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* largest of x[0, n): 32 lanes, masked tail loads keep the lanes they do not load */
static float max_avx512(const float *x, int n) {
    __m512 a = _mm512_set1_ps(x[0]), b = a;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a = _mm512_max_ps(a, _mm512_loadu_ps(x + i));
        b = _mm512_max_ps(b, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < n; i += 16) a = _mm512_max_ps(a, _mm512_mask_loadu_ps(a, tail_mask(n - i), x + i));
    return _mm512_reduce_max_ps(_mm512_max_ps(a, b));
}

/* g = g / (1 + e^-g) * u, as ref with a vector exp */
static void silu_mul_avx512(float *g, const float *u, int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 s =
            _mm512_div_ps(v, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
        _mm512_mask_storeu_ps(g + i, mk, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(mk, u + i)));
    }
}

/* 0.5 x (1 + tanh(u)) computed as x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): the same
 * function without the cancellation of 1 + tanh(u) for large negative x */
static void gelu_tanh_avx512(float *x, int n) {
    const __m512 k2 = _mm512_set1_ps(-2.0f * 0.7978845608028654f), c = _mm512_set1_ps(0.044715f);
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        __m512 u = _mm512_mul_ps(k2, _mm512_fmadd_ps(_mm512_mul_ps(c, v), _mm512_mul_ps(v, v), v));
        _mm512_mask_storeu_ps(x + i, mk, _mm512_div_ps(v, _mm512_add_ps(one, exp16(u))));
    }
}

/* ref's two passes (mean, then centred variance) with 16-lane sums */
static void layernorm_avx512(float *y, const float *x, const float *w, const float *b, int n,
                             float eps) {
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16)
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    float mean = hsum16(s) / (float)n;
    __m512 vm = _mm512_set1_ps(mean), ss = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 d = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + i), vm);
        ss = _mm512_fmadd_ps(d, d, ss);
    }
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(hsum16(ss) / (float)n + eps));
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), inv);
        __m512 r = _mm512_add_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, w + i)),
                                 _mm512_maskz_loadu_ps(mk, b + i));
        _mm512_mask_storeu_ps(y + i, mk, r);
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

/* rotate-half RoPE, 16 pairs per step: mul, mul, sub / add without FMA, so the bits are ref's */
static void rope_avx512(float *x, int n_heads, int head_dim, const float *cos, const float *sin) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i += 16) {
            __mmask16 mk = tail_mask(half - i);
            __m512 a = _mm512_maskz_loadu_ps(mk, v + i),
                   b = _mm512_maskz_loadu_ps(mk, v + i + half);
            __m512 c = _mm512_maskz_loadu_ps(mk, cos + i), s = _mm512_maskz_loadu_ps(mk, sin + i);
            _mm512_mask_storeu_ps(v + i, mk,
                                  _mm512_sub_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(b, s)));
            _mm512_mask_storeu_ps(v + i + half, mk,
                                  _mm512_add_ps(_mm512_mul_ps(b, c), _mm512_mul_ps(a, s)));
        }
    }
}

/* q . k for a head: one 16-lane accumulator per 16 dims (head_dim <= 64 in 4 chains), then
 * hsum16 */
EVLM__INLINE float head_dot(const float *q, const float *k, int hd) {
    if (hd == 64) {
        __m512 a0 = _mm512_mul_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(k));
        __m512 a1 = _mm512_mul_ps(_mm512_loadu_ps(q + 16), _mm512_loadu_ps(k + 16));
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 32), _mm512_loadu_ps(k + 32), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 48), _mm512_loadu_ps(k + 48), a1);
        return hsum16(_mm512_add_ps(a0, a1));
    }
    return dot_f32(q, k, hd);
}

/* out (head_dim) = softmax(q . K^T * scale) @ V. The visible keys' scores are packed to the
 * front of `scores` first, so the vector exp16 and the lane sums see the same sequence whether
 * hidden keys sit between them (a token tree) or not (the same tokens decoded one by one): a row
 * is bitwise the same in any batch. The weighted sum of V rows stays in registers for
 * head_dim <= 128. */
/* e^(s - mx) over the nl packed scores in place; returns 1 / their sum */
static float softmax_packed(float *scores, int nl, float mx) {
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (int j = 0; j < nl; j += 16) {
        __mmask16 mk = tail_mask(nl - j);
        __m512 e = _mm512_maskz_mov_ps(
            mk, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, scores + j), vmx)));
        _mm512_mask_storeu_ps(scores + j, mk, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    return 1.0f / hsum16(vsum);
}

static void attn_row_avx512(float *out, const float *q, const float *k, const float *v, int n_kv,
                            int head_dim, size_t ld, float scale, const uint8_t *mask,
                            float *scores) {
    float mx = -INFINITY;
    int nl = 0;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        float s = head_dot(q, k + (size_t)t * ld, head_dim) * scale;
        scores[nl++] = s;
        if (s > mx) mx = s;
    }
    const float inv = softmax_packed(scores, nl, mx);
    const bool in_regs = head_dim <= 128 && head_dim % 16 == 0;
    const int nv = head_dim / 16;
    __m512 acc[8];
    for (int c = 0; c < 8; c++) acc[c] = _mm512_setzero_ps();
    if (!in_regs)
        for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0, j = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        const float *vr = v + (size_t)t * ld;
        __m512 vp = _mm512_set1_ps(scores[j++] * inv);
        if (in_regs) {
            for (int c = 0; c < nv; c++)
                acc[c] = _mm512_fmadd_ps(vp, _mm512_loadu_ps(vr + 16 * c), acc[c]);
            continue;
        }
        for (int i = 0; i < head_dim; i += 16) {
            __mmask16 mk = tail_mask(head_dim - i);
            _mm512_mask_storeu_ps(out + i, mk,
                                  _mm512_fmadd_ps(vp, _mm512_maskz_loadu_ps(mk, vr + i),
                                                  _mm512_maskz_loadu_ps(mk, out + i)));
        }
    }
    if (in_regs)
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

/* ---- attn_tile, attn_rows: attn_walk.h's walks --------------------------------------------
 * attn_tile: blocks of 64 queries (four vectors); attn_rows: attn_row's head_dot,
 * softmax_packed and the fused multiply-adds attn_row keeps in registers, here in memory. */

/* o[0, n) += p v[0, n), one FMA per element; unmasked but for the tail, so stores forward to
 * the next key's loads */
EVLM__INLINE void axpy(float *o, float p, const float *v, int n) {
    __m512 vp = _mm512_set1_ps(p);
    int c = 0;
    for (; c + 16 <= n; c += 16)
        _mm512_storeu_ps(o + c,
                         _mm512_fmadd_ps(vp, _mm512_loadu_ps(v + c), _mm512_loadu_ps(o + c)));
    if (c < n) {
        __mmask16 mk = tail_mask(n - c);
        _mm512_mask_storeu_ps(o + c, mk,
                              _mm512_fmadd_ps(vp, _mm512_maskz_loadu_ps(mk, v + c),
                                              _mm512_maskz_loadu_ps(mk, o + c)));
    }
}

/* v with lanes [0, lo) set to -inf */
EVLM__INLINE __m512 hide_below(__m512 v, int lo) {
    __mmask16 hide = lo <= 0 ? 0 : lo >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << lo) - 1u);
    return _mm512_mask_mov_ps(v, hide, _mm512_set1_ps(-INFINITY));
}

/* e^(s - mx), 0 where s = -inf (exp16 clamps its input) */
EVLM__INLINE __m512 exp_p(__m512 s, __m512 mx) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ),
                               exp16(_mm512_sub_ps(s, mx)));
}

#define AT_V                  __m512
#define AT_VL                 16
#define AT_QV                 4
#define AT_ZERO()             _mm512_setzero_ps()
#define AT_SET1(f)            _mm512_set1_ps(f)
#define AT_BCAST(p)           _mm512_set1_ps(*(p))
#define AT_LOAD(p)            _mm512_loadu_ps(p)
#define AT_STORE(p, v)        _mm512_storeu_ps(p, v)
#define AT_ADD(a, b)          _mm512_add_ps(a, b)
#define AT_SUB(a, b)          _mm512_sub_ps(a, b)
#define AT_MUL(a, b)          _mm512_mul_ps(a, b)
#define AT_MAX(a, b)          _mm512_max_ps(a, b)
#define AT_FMA(acc, v, b)     _mm512_fmadd_ps(b, v, acc)
#define AT_DG                 1
#define AT_KG                 __m512
#define AT_KLOAD(p)           _mm512_set1_ps(*(p))
#define AT_KFMA(acc, v, g, L) _mm512_fmadd_ps(g, v, acc)
#define AT_EXP(v)             exp16(v)
#define AT_EXP_P(s, mx)       exp_p(s, mx)
#define AT_HIDE(v, lo)        hide_below(v, lo)
#define AT_DOT(q, k, n)       head_dot(q, k, n)
#define AT_SOFTMAX(s, nl, mx) softmax_packed(s, nl, mx)
#define AT_WEIGHT(s, f)       ((s) * (f))
#define AT_AXPY(o, p, v, n)   axpy(o, p, v, n)
#define AT_UNROLL_SOFTMAX
#include "kernels/attn_walk.h"

const evlm_kernels evlm_kernels_avx512 = {
    .name = "avx512",
    .gemm = gemm_avx512,
    .rmsnorm = rmsnorm_avx512,
    .silu_mul = silu_mul_avx512,
    .rope = rope_avx512,
    .attn_row = attn_row_avx512,
    .layernorm = layernorm_avx512,
    .gelu_tanh = gelu_tanh_avx512,
    .quantize_act = evlm__avx2_quantize_act,
    .gemm_q = evlm__avx2_gemm_q,
    .attn_tile = attn_tile_simd,
    .max = max_avx512,
    .attn_rows = attn_rows_simd,
    EVLM__TRAIN_ENTRIES(avx512),
};

#else
typedef int evlm__x86_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
