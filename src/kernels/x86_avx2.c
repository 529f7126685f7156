/*
 * x86_avx2.c - the "avx2" table (AVX2 + FMA + F16C): gemm for F32 / F16 / BF16 weights (register
 * tiles of 8-lane FMA chains; F32_R16 / F16_R16 / BF16_R16 go to x86_avx2_r16f.c, quantized
 * weights to x86_avx2_quant.c's dequantizing gemm), rmsnorm, rope, silu_mul, gelu_tanh (a vector
 * exp, exp8), layernorm, max, attn_row, and attn_tile / attn_rows as attn_walk.h's walks with
 * this file's primitives; quantize_act and gemm_q are x86_avx2_quant.c's. Every op is SIMD here.
 *
 * Compiled with -mavx2 -mfma -mf16c for this file only (CMakeLists.txt) and picked at run time
 * by dispatch.c after cpuid says the CPU has all three; on other architectures the file is
 * empty. Not bit-exact with `ref` where sums are reordered or exp is exp8: the dot products of
 * gemm / attn_row / rmsnorm sum in 8 lanes with FMA (tests bound the difference relative to
 * sum |x_j w_j|); half-precision weights convert exactly to float, so F16 / BF16 see no error
 * beyond that reordering. Bit-exact with `ref`: rope and the per-element scaling of rmsnorm.
 * Each row of gemm, attn_row / attn_rows and attn_tile is the same bits whatever batch, row
 * range or tile it falls in (see each section).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

/* built only with this file's flags (CMakeLists.txt), so dispatch.c knows it exists */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>

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

static float dot_f32(const float *x, const void *w, int k) {
    return dot(x, w, k, EVLM_TYPE_F32);
}

/* ---- gemm ----------------------------------------------------------------------------------
 * Every output element is one dot product summed the same way whatever the path: a single
 * 8-lane FMA accumulator along k (a zero-padded chunk for k % 8), then hsum8's fixed tree. So a
 * row of Y is bitwise the same for any m, row range or tile it falls in (lookahead relies on it).
 * Speed comes from register tiles instead: MR rows of x times NR weight rows share their loads
 * (MR x NR accumulators), and F16 / BF16 weights are widened once per tile, not once per x row. */

#define GEMM_MR       4 /* x rows per tile */
#define GEMM_NR       3 /* weight rows per tile (m > 1): 12 accumulators + 3 weights + 1 x = 16 ymm */
#define GEMM_NR1      4            /* weight rows per tile at m = 1 */
#define GEMM_L2_BYTES (256 * 1024) /* weight rows per chunk: x tiles re-read once per chunk */

static const int32_t lane_mask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* the last n < 8 weights from element j, zero-padded to 8 */
EVLM__INLINE __m256 load8_tail(const void *w, int j, evlm_type wt, int n) {
    if (wt == EVLM_TYPE_F32)
        return _mm256_maskload_ps(
            (const float *)w + j,
            _mm256_loadu_si256((const __m256i *)(const void *)(lane_mask + 8 - n)));
    uint16_t h[8] = {0};
    memcpy(h, (const uint16_t *)w + j, sizeof(uint16_t) * (size_t)n);
    return load8(h, 0, wt);
}

/* Y[0..MR)[0..NR) = X[0..MR) . W[0..NR) over k, MR <= 4. A macro rather than an inline function,
 * with one small accumulator array per x row, so GCC keeps every accumulator in a register. */
#define GEMM_TILE_ROW(MR, NR, r, a, xload)                                                         \
    if (MR > r) {                                                                                  \
        __m256 xv = xload;                                                                         \
        for (int c = 0; c < NR; c++) a[c] = _mm256_fmadd_ps(xv, wv[c], a[c]);                      \
    }
#define GEMM_TILE_STEP(MR, NR, wload, xload)                                                       \
    for (int c = 0; c < NR; c++) wv[c] = wload;                                                    \
    GEMM_TILE_ROW(MR, NR, 0, a0, xload(0))                                                         \
    GEMM_TILE_ROW(MR, NR, 1, a1, xload(1))                                                         \
    GEMM_TILE_ROW(MR, NR, 2, a2, xload(2))                                                         \
    GEMM_TILE_ROW(MR, NR, 3, a3, xload(3))
#define GEMM_TILE_STORE(MR, NR, r, a)                                                              \
    if (MR > r)                                                                                    \
        for (int c = 0; c < NR; c++) y[(size_t)r * ldy + c] = hsum8(a[c]);
#define GEMM_XFULL(r) _mm256_loadu_ps(x + (size_t)(r)*ldx + j)
#define GEMM_XTAIL(r) _mm256_maskload_ps(x + (size_t)(r)*ldx + j, xm)
/* Streaming tiles (m <= GEMM_MR) request the line GEMM_PF_BYTES ahead in each of their rows, one
 * per 64 bytes of progress (see gemm_avx2) */
#define GEMM_PREFETCH_AHEAD(MR, NR, wt)                                                            \
    if (pf && ((size_t)j * es) % 64 == 0)                                                          \
        for (int c = 0; c < NR; c++)                                                               \
            _mm_prefetch(pf + (size_t)c * ldw + (size_t)j * es, _MM_HINT_T0);
#define GEMM_PF_BYTES 1536 /* prefetch distance along a row (tuned by measurement) */
#define GEMM_TILE_BODY(MR, NR, wt)                                                                 \
    const size_t es = evlm_type_traits_of(wt)->size; /* bytes per weight */                        \
    __m256 a0[NR], a1[NR], a2[NR], a3[NR], wv[NR];                                                 \
    for (int c = 0; c < NR; c++) a0[c] = a1[c] = a2[c] = a3[c] = _mm256_setzero_ps();              \
    int j = 0;                                                                                     \
    for (; j + 8 <= k; j += 8) {                                                                   \
        GEMM_PREFETCH_AHEAD(MR, NR, wt)                                                            \
        GEMM_TILE_STEP(MR, NR, load8(w + (size_t)c * ldw, j, wt), GEMM_XFULL)                      \
    }                                                                                              \
    if (j < k) {                                                                                   \
        __m256i xm = _mm256_loadu_si256((const __m256i *)(const void *)(lane_mask + 8 - (k - j))); \
        GEMM_TILE_STEP(MR, NR, load8_tail(w + (size_t)c * ldw, j, wt, k - j), GEMM_XTAIL)          \
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
    TILE_FN(T, 1, 3)                                                                               \
    TILE_FN(T, 2, 3)                                                                               \
    TILE_FN(T, 3, 3)                                                                               \
    TILE_FN(T, 4, 3)                                                                               \
    TILE_FN(T, 1, 4)                                                                               \
    static const evlm__f_tile tiles_##T[3][GEMM_MR + 1] = {                                        \
        {NULL, tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1},                    \
        {NULL, tile_##T##_1x3, tile_##T##_2x3, tile_##T##_3x3, tile_##T##_4x3},                    \
        {NULL, tile_##T##_1x4, NULL, NULL, NULL}};
TILE_SET(F32)
TILE_SET(F16)
TILE_SET(BF16)

/* the float gemm's tile sets per file type (ref_impl.h) */
const evlm__f_set evlm__avx2_gemm_f[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = tiles_F32,
    [EVLM_TYPE_F16] = tiles_F16,
    [EVLM_TYPE_BF16] = tiles_BF16,
};

/* Y (m, n) = X (m, k) @ W^T, W rows [n0, n1): chunks of weight rows that stay in L2; in each,
 * tiles of MR x rows (in L1) against NR weight rows at a time, leftovers one row at a time */
static void gemm_avx2(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                      evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    if (evlm_type_traits_of(wt)->s24 && evlm_type_traits_of(wt)->is_float) { /* 2:4 forms */
        evlm__avx2_gemm_s24f(y, ldy, x, ldx, w, wt, m, n0, n1, k);
        return;
    }
    const evlm__f_set set = (unsigned)wt < EVLM_TYPE_COUNT ? evlm__avx2_gemm_f[wt] : NULL;
    if (!set) { /* float R16 forms by their base's entry, block types dequantized */
        const evlm_type base = evlm_type_r16_base(wt);
        if ((unsigned)base < EVLM_TYPE_COUNT && evlm__avx2_r16f[base])
            evlm__avx2_gemm_r16f(y, ldy, x, ldx, w, wt, m, n0, n1, k);
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

/* e^x within ~2 ulp (Cephes expf polynomial on x - n ln2, then 2^n through the exponent bits);
 * x below -87.3 (e^-inf included) gives 0, above 88 gives e^88. */
EVLM__INLINE __m256 exp8(__m256 x) {
    __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

/* lanes [0, left) of a load / store (left < 8: a tail) */
EVLM__INLINE __m256i lanes(int left) {
    return _mm256_loadu_si256(
        (const __m256i *)(const void *)(lane_mask + 8 - (left < 8 ? left : 8)));
}

/* largest of x[0, n): 16 lanes, then the tree of the halves and a scalar tail */
static float max_avx2(const float *x, int n) {
    __m256 a = _mm256_set1_ps(x[0]), b = a;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
        b = _mm256_max_ps(b, _mm256_loadu_ps(x + i + 8));
    }
    a = _mm256_max_ps(a, b);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float r = _mm_cvtss_f32(m);
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* g = g / (1 + e^-g) * u, as ref with a vector exp */
static void silu_mul_avx2(float *g, const float *u, int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 v = _mm256_maskload_ps(g + i, mk);
        __m256 s =
            _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
        _mm256_maskstore_ps(g + i, mk, _mm256_mul_ps(s, _mm256_maskload_ps(u + i, mk)));
    }
}

/* 0.5 x (1 + tanh(u)) computed as x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): the same
 * function without the cancellation of 1 + tanh(u) for large negative x */
static void gelu_tanh_avx2(float *x, int n) {
    const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 v = _mm256_maskload_ps(x + i, mk);
        __m256 u = _mm256_mul_ps(k2, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        _mm256_maskstore_ps(x + i, mk, _mm256_div_ps(v, _mm256_add_ps(one, exp8(u))));
    }
}

/* ref's two passes (mean, then centred variance) with 8-lane sums */
static void layernorm_avx2(float *y, const float *x, const float *w, const float *b, int n,
                           float eps) {
    __m256 s = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) s = _mm256_add_ps(s, _mm256_maskload_ps(x + i, lanes(n - i)));
    float mean = hsum8(s) / (float)n;
    __m256 vm = _mm256_set1_ps(mean), ss = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm),
                                 _mm256_castsi256_ps(mk));
        ss = _mm256_fmadd_ps(d, d, ss);
    }
    __m256 inv = _mm256_set1_ps(1.0f / sqrtf(hsum8(ss) / (float)n + eps));
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), inv);
        __m256 r = _mm256_add_ps(_mm256_mul_ps(d, _mm256_maskload_ps(w + i, mk)),
                                 _mm256_maskload_ps(b + i, mk));
        _mm256_maskstore_ps(y + i, mk, r);
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

/* rotate-half RoPE, 8 pairs per step: mul, mul, sub / add without FMA, so the bits are ref's */
static void rope_avx2(float *x, int n_heads, int head_dim, const float *cos, const float *sin) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        int i = 0;
        for (; i + 8 <= half; i += 8) {
            __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + half);
            __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
            _mm256_storeu_ps(v + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
            _mm256_storeu_ps(v + i + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
        }
        if (i <
            half) { /* the tail through padded copies (a scalar tail could be contracted to FMA) */
            float a[8] = {0}, b[8] = {0}, c[8] = {0}, sn[8] = {0};
            for (int t = 0; t < half - i; t++)
                a[t] = v[i + t], b[t] = v[i + half + t], c[t] = cos[i + t], sn[t] = sin[i + t];
            __m256 va = _mm256_loadu_ps(a), vb = _mm256_loadu_ps(b), vc = _mm256_loadu_ps(c),
                   vs = _mm256_loadu_ps(sn);
            _mm256_storeu_ps(a, _mm256_sub_ps(_mm256_mul_ps(va, vc), _mm256_mul_ps(vb, vs)));
            _mm256_storeu_ps(b, _mm256_add_ps(_mm256_mul_ps(vb, vc), _mm256_mul_ps(va, vs)));
            for (int t = 0; t < half - i; t++) v[i + t] = a[t], v[i + half + t] = b[t];
        }
    }
}

/* out (head_dim) = softmax(q . K^T * scale) @ V. As the avx512 table: visible keys' scores
 * packed to the front of `scores`, so exp8 and the lane sums see the same sequence in a token
 * tree as one token at a time (bitwise the same row in any batch); V sums in registers for
 * head_dim <= 64. */
/* e^(s - mx) over the nl packed scores in place; returns 1 / their sum */
static float softmax_packed(float *scores, int nl, float mx) {
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= nl; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx));
        _mm256_storeu_ps(scores + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (j < nl) { /* the tail through a zero-padded copy: padded lanes give e^-inf = 0 */
        float tmp[8];
        for (int i = 0; i < 8; i++) tmp[i] = j + i < nl ? scores[j + i] : -INFINITY;
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(tmp), vmx));
        _mm256_storeu_ps(tmp, e);
        for (int i = 0; j + i < nl; i++) scores[j + i] = tmp[i];
        vsum = _mm256_add_ps(vsum, e);
    }
    return 1.0f / hsum8(vsum);
}

static void attn_row_avx2(float *out, const float *q, const float *k, const float *v, int n_kv,
                          int head_dim, size_t ld, float scale, const uint8_t *mask,
                          float *scores) {
    float mx = -INFINITY;
    int nl = 0;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        float s = dot_f32(q, k + (size_t)t * ld, head_dim) * scale;
        scores[nl++] = s;
        if (s > mx) mx = s;
    }
    const float inv = softmax_packed(scores, nl, mx);
    const bool in_regs = head_dim <= 64 && head_dim % 8 == 0;
    const int nv = head_dim / 8;
    __m256 acc[8];
    for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
    if (!in_regs)
        for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0, jj = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        const float *vr = v + (size_t)t * ld;
        float p = scores[jj++] * inv;
        __m256 vp = _mm256_set1_ps(p);
        if (in_regs) {
            for (int c = 0; c < nv; c++)
                acc[c] = _mm256_fmadd_ps(vp, _mm256_loadu_ps(vr + 8 * c), acc[c]);
            continue;
        }
        int i = 0;
        for (; i + 8 <= head_dim; i += 8)
            _mm256_storeu_ps(
                out + i, _mm256_fmadd_ps(vp, _mm256_loadu_ps(vr + i), _mm256_loadu_ps(out + i)));
        for (; i < head_dim; i++) out[i] += p * vr[i];
    }
    if (in_regs)
        for (int c = 0; c < nv; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

/* ---- attn_tile, attn_rows: attn_walk.h's walks --------------------------------------------
 * attn_tile: blocks of 16 queries (two vectors); attn_rows: attn_row's dot_f32, softmax_packed
 * and its V sums in memory (8-lane FMAs, unfused scalar tail). */

/* o[0, n) += p v[0, n): attn_row's steps when its sums live in memory */
EVLM__INLINE void axpy(float *o, float p, const float *v, int n) {
    __m256 vp = _mm256_set1_ps(p);
    int c = 0;
    for (; c + 8 <= n; c += 8)
        _mm256_storeu_ps(o + c,
                         _mm256_fmadd_ps(vp, _mm256_loadu_ps(v + c), _mm256_loadu_ps(o + c)));
    for (; c < n; c++) o[c] += p * v[c];
}

/* v with lanes [0, lo) set to -inf */
EVLM__INLINE __m256 hide_below(__m256 v, int lo) {
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 hide = _mm256_cmp_ps(lane, _mm256_set1_ps((float)lo), _CMP_LT_OQ);
    return _mm256_blendv_ps(v, _mm256_set1_ps(-INFINITY), hide);
}

#define AT_V                  __m256
#define AT_VL                 8
#define AT_QV                 2
#define AT_ZERO()             _mm256_setzero_ps()
#define AT_SET1(f)            _mm256_set1_ps(f)
#define AT_BCAST(p)           _mm256_broadcast_ss(p)
#define AT_LOAD(p)            _mm256_loadu_ps(p)
#define AT_STORE(p, v)        _mm256_storeu_ps(p, v)
#define AT_ADD(a, b)          _mm256_add_ps(a, b)
#define AT_SUB(a, b)          _mm256_sub_ps(a, b)
#define AT_MUL(a, b)          _mm256_mul_ps(a, b)
#define AT_MAX(a, b)          _mm256_max_ps(a, b)
#define AT_FMA(acc, v, b)     _mm256_fmadd_ps(b, v, acc)
#define AT_DG                 1
#define AT_KG                 __m256
#define AT_KLOAD(p)           _mm256_broadcast_ss(p)
#define AT_KFMA(acc, v, g, L) _mm256_fmadd_ps(g, v, acc)
#define AT_EXP(v)             exp8(v)
#define AT_EXP_P(s, mx)       exp8(_mm256_sub_ps(s, mx)) /* exp8(-inf) = 0 */
#define AT_HIDE(v, lo)        hide_below(v, lo)
#define AT_DOT(q, k, n)       dot_f32(q, k, n)
#define AT_SOFTMAX(s, nl, mx) softmax_packed(s, nl, mx)
#define AT_WEIGHT(s, f)       ((s) * (f))
#define AT_AXPY(o, p, v, n)   axpy(o, p, v, n)
#define AT_UNROLL_SOFTMAX
#include "kernels/attn_walk.h"

const evlm_kernels evlm_kernels_avx2 = {
    .name = "avx2",
    .gemm = gemm_avx2,
    .rmsnorm = rmsnorm_avx2,
    .silu_mul = silu_mul_avx2,
    .rope = rope_avx2,
    .attn_row = attn_row_avx2,
    .layernorm = layernorm_avx2,
    .gelu_tanh = gelu_tanh_avx2,
    .quantize_act = evlm__avx2_quantize_act,
    .gemm_q = evlm__avx2_gemm_q,
    .attn_tile = attn_tile_simd,
    .max = max_avx2,
    .attn_rows = attn_rows_simd,
    EVLM__TRAIN_ENTRIES(avx2),
};

#else
typedef int evlm__x86_avx2_empty; /* ISO C forbids an empty translation unit */
#endif
