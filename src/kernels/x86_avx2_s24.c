/*
 * x86_avx2_s24.c - AVX2 kernels on the 2:4-sparse forms (quant/sparse24.h), for the avx2 table
 * and the avx512 table on CPUs without VNNI (both use x86_avx2_quant.c for int8):
 *   - gemm_q on Q8_0_S24: per 8-row half and 32-byte half chunk of kept int8, the activation
 *     bytes the kept weights meet gathered in registers (vpshufb, indices from the pair codes
 *     through vpermd tables); the exact block sums (|w| times x with w's sign, as
 *     x86_avx2_quant.c) and the float step p = float(isum) * dx, acc = fma(dw, p, acc) are the
 *     dense R16 tile's, so every output is bitwise its result on the zeroed matrix, whatever m,
 *     n0, n1 (expanding the kept bytes back to dense chunks instead ran decode at 1.18x the dense
 *     speed, this faster: docs/PERFORMANCE.md);
 *   - gemm on F32_S24 / F16_S24 / BF16_S24: per group of 4 inputs, each row's two kept values
 *     times their activations gathered from the 4 inputs (vpermps), two fmas in input order:
 *     the dense chain less its zero terms, bitwise ref and the dense F*_R16 kernels for finite
 *     activations (x86_avx512_s24f.c says why).
 * Compiled with -mavx2 -mfma -mf16c (CMakeLists.txt); empty elsewhere. Not here: Q4 2:4 forms.
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"
#include "quant/sparse24.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

/* ---- int8: Q8_0_S24 ---------------------------------------------------------------------------
 */

#define S24_MC 64 /* as x86_avx2_quant.c's R16 walk */
#define S24_MR 4

/* per pair code: the bytes of x[16 h .. 16 h + 15] that a row's 4 kept values meet, for the
 * first (A) and second (B) group of an even or odd chunk (x86_avx512_s24q.c); vpermd reads the
 * low 3 bits of an index. Codes 6 and 7 never occur. */
static const int32_t k_ta[2][8] = {
    {0x00000100, 0x00000200, 0x00000300, 0x00000201, 0x00000301, 0x00000302},
    {0x00000908, 0x00000a08, 0x00000b08, 0x00000a09, 0x00000b09, 0x00000b0a}};
static const int32_t k_tb[2][8] = {
    {0x05040000, 0x06040000, 0x07040000, 0x06050000, 0x07050000, 0x07060000},
    {0x0d0c0000, 0x0e0c0000, 0x0f0c0000, 0x0e0d0000, 0x0f0d0000, 0x0f0e0000}};

EVLM__INLINE __m256i load8i(const int32_t *p) {
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* MR activation rows x the rows of one group below `rows` (via a temporary when partial) over nb
 * block columns of gw (352 bytes each), from 0 (first) or from y. Per 8-row half and chunk, the
 * activation bytes the kept weights meet are gathered (vpshufb, indices from the codes through
 * vpermd tables), then |w| times x with w's sign (vpmaddubsw: pairs <= 2 * 127 * 128, no
 * saturation) as x86_avx2_quant.c: exact block sums, the dense ones, and its float step. */
EVLM__INLINE void s24_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *gw,
                           int nb, int rows, bool first, int MR) {
    const size_t col = EVLM_R16 * evlm_type_size(EVLM_TYPE_Q8_0_S24);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i ta0 = load8i(k_ta[0]), ta1 = load8i(k_ta[1]);
    const __m256i tb0 = load8i(k_tb[0]), tb1 = load8i(k_tb[1]);
    float tmp[S24_MR][EVLM_R16];
    float *yo = y;
    size_t ldo = ldy;
    if (rows < EVLM_R16) { /* partial last group: never write past n1 */
        yo = tmp[0], ldo = EVLM_R16;
        for (int i = 0; i < MR; i++)
            for (int r = 0; r < EVLM_R16; r++)
                tmp[i][r] = r < rows && !first ? y[(size_t)i * ldy + r] : 0.0f;
    }
    __m256 acc[S24_MR][2];
    for (int i = 0; i < MR; i++)
        for (int h = 0; h < 2; h++)
            acc[i][h] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(yo + (size_t)i * ldo + 8 * h);
    for (int b = 0; b < nb; b++, gw += col) {
        __m256i xh[S24_MR][2];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < 2; j++)
                xh[i][j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    (const __m128i *)(const void *)(x[(size_t)i * ldx + b].qs + 16 * j)));
        for (int h = 0; h < 2; h++) { /* rows 8h .. 8h + 7 */
            __m256i is[S24_MR];
            for (int i = 0; i < MR; i++) is[i] = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i kept =
                    _mm256_loadu_si256((const __m256i *)(const void *)(gw + 32 + 64 * c + 32 * h));
                __m256i codes = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *)(const void *)(gw + 288 + 16 * c + 8 * h)));
                __m256i idx = _mm256_or_si256(
                    _mm256_permutevar8x32_epi32(c & 1 ? ta1 : ta0, codes),
                    _mm256_permutevar8x32_epi32(c & 1 ? tb1 : tb0, _mm256_srli_epi32(codes, 4)));
                __m256i wa = _mm256_abs_epi8(kept);
                for (int i = 0; i < MR; i++) {
                    __m256i xs = _mm256_sign_epi8(_mm256_shuffle_epi8(xh[i][c / 2], idx), kept);
                    is[i] = _mm256_add_epi32(is[i],
                                             _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xs), ones));
                }
            }
            __m256 dw =
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(gw + 16 * h)));
            for (int i = 0; i < MR; i++) {
                const evlm_q8a *xb = x + (size_t)i * ldx + b;
                __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(is[i]), _mm256_set1_ps(xb->d));
                acc[i][h] = _mm256_fmadd_ps(dw, p, acc[i][h]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(yo + (size_t)i * ldo + 8 * h, acc[i][h]);
    if (yo != y)
        for (int i = 0; i < MR; i++)
            for (int r = 0; r < rows; r++) y[(size_t)i * ldy + r] = tmp[i][r];
}

#define S24_TILE(MR)                                                                               \
    static void s24_tile_##MR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                 \
                              const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,   \
                              bool first) {                                                        \
        (void)corr, (void)ldc;                                                                     \
        s24_tile(y, ldy, x, ldx, gw, nb, rows, first, MR);                                         \
    }
S24_TILE(1)
S24_TILE(2)
S24_TILE(3)
S24_TILE(4)
static const evlm__q8r16_tile s24_tiles[S24_MR][2] = {
    {s24_tile_1}, {s24_tile_2}, {s24_tile_3}, {s24_tile_4}};
static const evlm__q8r16_shape k_shape = {S24_MC, S24_MR, true};

void evlm__avx2_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                           size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    evlm__q8r16_walk(&k_shape, s24_tiles, NULL, 0, y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

/* ---- float: F32_S24 / F16_S24 / BF16_S24 ------------------------------------------------------
 */

static const int32_t k_p0[8] = {0, 0, 0, 1, 1, 2, 7, 7}; /* first kept position per code */
static const int32_t k_p1[8] = {1, 2, 3, 2, 3, 3, 7, 7}; /* second */

EVLM__INLINE __m256 load8(const char *p, evlm_type base) {
    if (base == EVLM_TYPE_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (base == EVLM_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* y rows [0, MR) x the U half groups (8 rows each; half u is rows 8 (u % 2) of group u / 2, the
 * groups gs bytes apart from w) below lim, over all k columns: per group of 4 inputs the two kept
 * values of each row meet their activations gathered from x[4q .. 4q+3] (vpermps; positions from
 * the codes through vpermd, which reads their low 3 bits), two fmas in input order (the dense
 * chain less its zero terms: the same bits for finite x, see x86_avx512_s24f.c) */
EVLM__INLINE void s24f_tile(float *y, size_t ldy, const float *x, size_t ldx, const char *w,
                            size_t gs, int k, int lim, evlm_type base, int U, int MR) {
    const size_t es = evlm_type_size(base), cs = EVLM_R16 * es;
    const __m256i tp0 = _mm256_loadu_si256((const __m256i *)(const void *)k_p0);
    const __m256i tp1 = _mm256_loadu_si256((const __m256i *)(const void *)k_p1);
    __m256 acc[4][4];
    for (int u = 0; u < U; u++)
        for (int i = 0; i < MR; i++) acc[u][i] = _mm256_setzero_ps();
    for (int p = 0; p < k / 8; p++) {
        __m256i codes[4];
        for (int u = 0; u < U; u++)
            codes[u] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                (const __m128i *)(const void *)(w + (size_t)(u / 2) * gs + (size_t)(k / 2) * cs +
                                                16 * (size_t)p + 8 * (size_t)(u % 2))));
        for (int h = 0; h < 2; h++) {
            const int q = 2 * p + h;
            __m256 xv[4];
            for (int i = 0; i < MR; i++)
                xv[i] = _mm256_broadcast_ps(
                    (const __m128 *)(const void *)(x + (size_t)i * ldx + (size_t)(4 * q)));
            for (int u = 0; u < U; u++) {
                const char *gw = w + (size_t)(u / 2) * gs + 8 * (size_t)(u % 2) * es;
                __m256i c = h ? _mm256_srli_epi32(codes[u], 4) : codes[u];
                __m256i p0 = _mm256_permutevar8x32_epi32(tp0, c);
                __m256i p1 = _mm256_permutevar8x32_epi32(tp1, c);
                __m256 k0 = load8(gw + (size_t)(2 * q) * cs, base);
                __m256 k1 = load8(gw + (size_t)(2 * q + 1) * cs, base);
                for (int i = 0; i < MR; i++) {
                    acc[u][i] = _mm256_fmadd_ps(k0, _mm256_permutevar8x32_ps(xv[i], p0), acc[u][i]);
                    acc[u][i] = _mm256_fmadd_ps(k1, _mm256_permutevar8x32_ps(xv[i], p1), acc[u][i]);
                }
            }
        }
    }
    for (int u = 0; u < U; u++) {
        int r0 = 8 * u, rows = lim - r0 < 8 ? lim - r0 : 8;
        if (rows <= 0) break;
        for (int i = 0; i < MR; i++) {
            float *yr = y + (size_t)i * ldy + (size_t)r0;
            if (rows == 8) {
                _mm256_storeu_ps(yr, acc[u][i]);
            } else {
                float t[8];
                _mm256_storeu_ps(t, acc[u][i]);
                for (int r = 0; r < rows; r++) yr[r] = t[r];
            }
        }
    }
}

typedef void (*s24f_fn)(float *y, size_t ldy, const float *x, size_t ldx, const char *w, size_t gs,
                        int k, int lim);
#define S24F_TILE(T, U, MR)                                                                        \
    static void s24f_##T##_##U##_##MR(float *y, size_t ldy, const float *x, size_t ldx,            \
                                      const char *w, size_t gs, int k, int lim) {                  \
        s24f_tile(y, ldy, x, ldx, w, gs, k, lim, EVLM_TYPE_##T, U, MR);                            \
    }
/* U = 2 (one group) or 4 (two groups); MR rows of x */
/* clang-format off */
#define S24F_TILES(T)                                                                              \
    S24F_TILE(T, 2, 1) S24F_TILE(T, 2, 2) S24F_TILE(T, 2, 3) S24F_TILE(T, 2, 4)                    \
    S24F_TILE(T, 4, 1) S24F_TILE(T, 4, 2)                                                          \
    static const s24f_fn s24f_##T[2][4] = {                                                        \
        {s24f_##T##_2_1, s24f_##T##_2_2, s24f_##T##_2_3, s24f_##T##_2_4},                          \
        {s24f_##T##_4_1, s24f_##T##_4_2, NULL, NULL}};
/* clang-format on */
S24F_TILES(F32)
S24F_TILES(F16)
S24F_TILES(BF16)

void evlm__avx2_gemm_s24f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                          evlm_type wt, int m, int n0, int n1, int k) {
    const evlm_type base = evlm_type_r16_base(wt);
    const s24f_fn(*set)[4] = base == EVLM_TYPE_F32   ? s24f_F32
                             : base == EVLM_TYPE_F16 ? s24f_F16
                                                     : s24f_BF16;
    const size_t gs = EVLM_R16 * evlm_row_bytes(wt, k);
    const int g0 = n0 / EVLM_R16, g1 = (n1 + EVLM_R16 - 1) / EVLM_R16;
    const int gmax = m <= 2 ? 2 : 1, mr = m <= 2 ? m : 4;
    for (int g = g0; g < g1; g += gmax) {
        int G = g1 - g < gmax ? g1 - g : gmax;
        int lim = (g + G) * EVLM_R16 <= n1 ? G * EVLM_R16 : n1 - g * EVLM_R16;
        for (int i = 0; i < m; i += mr) {
            int r = m - i < mr ? m - i : mr;
            set[G - 1][r - 1](y + (size_t)i * ldy + (size_t)g * EVLM_R16, ldy, x + (size_t)i * ldx,
                              ldx, (const char *)w + (size_t)g * gs, gs, k, lim);
        }
    }
}

#else
typedef int evlm__x86_avx2_s24_empty; /* ISO C forbids an empty translation unit */
#endif
