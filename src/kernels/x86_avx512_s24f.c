/*
 * x86_avx512_s24f.c - the avx512 tables' gemm on the float 2:4-sparse forms (F32_S24 / F16_S24 /
 * BF16_S24, quant/sparse24.h). For each group of 4 inputs the two kept columns of 16 rows are
 * loaded once; the pair codes of the 16 rows (one nibble each) become the positions of the two
 * kept values (vpermd through a table), and each row's two activations are gathered from the 4
 * inputs (vpermps): two fmas per group instead of the dense four. Each output is the dense R16
 * chain acc = fma(w[j], x[j], acc), j = 0 .. k - 1 from 0, less its zero terms, which change
 * nothing for finite x (acc starts at +0 and never becomes -0; fma(+-0, x, acc) = acc): bitwise
 * evlm__ref_gemm on the restored row and the dense F*_R16 kernels (quant/repack.h), for any m,
 * n0, n1. (An infinite or NaN activation makes the dense chain NaN and may not make this one.)
 * Measured against expanding the 4 dense columns in registers (masked moves, the dense 4 fmas):
 * that version ran decode at 1.10x the dense speed, this one faster (docs/PERFORMANCE.md).
 *
 * Tiles of G groups x MR rows of x over all of k (decode: 8 groups, 8 independent chains; more
 * rows: 4 groups x 2 rows, 2 groups x 4 rows), weights streamed once per row tile. Compiled with
 * the avx512 flags (CMakeLists.txt); empty elsewhere. Not here: the int8 form (x86_avx512_s24q.c),
 * k-chunked prefill blocking (a prefill reads each group once per 4 rows of x: measured in
 * docs/PERFORMANCE.md).
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"
#include "quant/sparse24.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__F16C__)

#include <immintrin.h>

/* positions of the first / second kept value per pair code (7: never a position) */
static const int32_t k_p0[16] = {0, 0, 0, 1, 1, 2, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
static const int32_t k_p1[16] = {1, 2, 3, 2, 3, 3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};

/* kept column t of a group (16 values of type base) as floats */
EVLM__INLINE __m512 load16(const char *p, evlm_type base) {
    if (base == EVLM_TYPE_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    if (base == EVLM_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* y rows [0, MR) x outputs [0, lim) of G groups (gs bytes apart from w) over all k columns. Per
 * group of 4 inputs: the two kept columns (16 rows each), the positions of the two kept values per
 * row from the codes (vpermd through k_p0 / k_p1; vpermd reads the low 4 bits, the low nibble as
 * it is), and the activations they meet gathered from x[4q .. 4q+3] (vpermps), two fmas in input
 * order: the dense chain less its zero terms, which change nothing (acc starts at +0 and never
 * becomes -0, and fma(0, x, acc) = acc for finite x). */
EVLM__INLINE void s24f_tile(float *y, size_t ldy, const float *x, size_t ldx, const char *w,
                            size_t gs, int k, int lim, evlm_type base, int G, int MR) {
    const size_t es = evlm_type_size(base), cs = EVLM_R16 * es; /* bytes of a kept column */
    const __m512i tp0 = _mm512_loadu_si512(k_p0), tp1 = _mm512_loadu_si512(k_p1);
    __m512 acc[8][4];
    for (int g = 0; g < G; g++)
        for (int i = 0; i < MR; i++) acc[g][i] = _mm512_setzero_ps();
    for (int p = 0; p < k / 8; p++) {
        __m512i codes[8];
        for (int g = 0; g < G; g++)
            codes[g] = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                (const __m128i *)(const void *)(w + (size_t)g * gs + (size_t)(k / 2) * cs +
                                                16 * (size_t)p)));
        for (int h = 0; h < 2; h++) {
            const int q = 2 * p + h; /* the group of inputs 4q .. 4q + 3 */
            __m512 xv[4];
            for (int i = 0; i < MR; i++)
                xv[i] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + (size_t)i * ldx + (size_t)(4 * q)));
            for (int g = 0; g < G; g++) {
                const char *gw = w + (size_t)g * gs;
                __m512i c = h ? _mm512_srli_epi32(codes[g], 4) : codes[g];
                __m512i p0 = _mm512_permutexvar_epi32(c, tp0);
                __m512i p1 = _mm512_permutexvar_epi32(c, tp1);
                __m512 k0 = load16(gw + (size_t)(2 * q) * cs, base);
                __m512 k1 = load16(gw + (size_t)(2 * q + 1) * cs, base);
                for (int i = 0; i < MR; i++) {
                    acc[g][i] = _mm512_fmadd_ps(k0, _mm512_permutexvar_ps(p0, xv[i]), acc[g][i]);
                    acc[g][i] = _mm512_fmadd_ps(k1, _mm512_permutexvar_ps(p1, xv[i]), acc[g][i]);
                }
            }
        }
    }
    for (int g = 0; g < G; g++) {
        int rows = lim - EVLM_R16 * g < EVLM_R16 ? lim - EVLM_R16 * g : EVLM_R16;
        __mmask16 mask = (__mmask16)((1u << rows) - 1);
        for (int i = 0; i < MR; i++)
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + EVLM_R16 * g, mask, acc[g][i]);
    }
}

typedef void (*s24f_fn)(float *y, size_t ldy, const float *x, size_t ldx, const char *w, size_t gs,
                        int k, int lim);
#define S24F_TILE(T, G, MR)                                                                        \
    static void s24f_##T##_##G##_##MR(float *y, size_t ldy, const float *x, size_t ldx,            \
                                      const char *w, size_t gs, int k, int lim) {                  \
        s24f_tile(y, ldy, x, ldx, w, gs, k, lim, EVLM_TYPE_##T, G, MR);                            \
    }
/* [G - 1][MR - 1]: 1 x row: up to 8 groups; 2 rows: 4; 3 or 4 rows: 2 */
/* clang-format off */
#define S24F_TILES(T)                                                                              \
    S24F_TILE(T, 1, 1) S24F_TILE(T, 2, 1) S24F_TILE(T, 3, 1) S24F_TILE(T, 4, 1)                    \
    S24F_TILE(T, 5, 1) S24F_TILE(T, 6, 1) S24F_TILE(T, 7, 1) S24F_TILE(T, 8, 1)                    \
    S24F_TILE(T, 1, 2) S24F_TILE(T, 2, 2) S24F_TILE(T, 3, 2) S24F_TILE(T, 4, 2)                    \
    S24F_TILE(T, 1, 3) S24F_TILE(T, 2, 3) S24F_TILE(T, 1, 4) S24F_TILE(T, 2, 4)                    \
    static const s24f_fn s24f_##T[8][4] = {                                                        \
        {s24f_##T##_1_1, s24f_##T##_1_2, s24f_##T##_1_3, s24f_##T##_1_4},                          \
        {s24f_##T##_2_1, s24f_##T##_2_2, s24f_##T##_2_3, s24f_##T##_2_4},                          \
        {s24f_##T##_3_1, s24f_##T##_3_2, NULL, NULL}, {s24f_##T##_4_1, s24f_##T##_4_2, NULL, NULL}, \
        {s24f_##T##_5_1, NULL, NULL, NULL}, {s24f_##T##_6_1, NULL, NULL, NULL},                    \
        {s24f_##T##_7_1, NULL, NULL, NULL}, {s24f_##T##_8_1, NULL, NULL, NULL}};
/* clang-format on */
S24F_TILES(F32)
S24F_TILES(F16)
S24F_TILES(BF16)

void evlm__avx512_gemm_s24f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                            evlm_type wt, int m, int n0, int n1, int k) {
    const evlm_type base = evlm_type_r16_base(wt);
    const s24f_fn(*set)[4] = base == EVLM_TYPE_F32   ? s24f_F32
                             : base == EVLM_TYPE_F16 ? s24f_F16
                                                     : s24f_BF16;
    const size_t gs = EVLM_R16 * evlm_row_bytes(wt, k);
    const int g0 = n0 / EVLM_R16, g1 = (n1 + EVLM_R16 - 1) / EVLM_R16;
    const int gmax = m == 1 ? 8 : m == 2 ? 4 : 2, mr = m <= 2 ? m : 4;
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
typedef int evlm__x86_avx512_s24f_empty; /* ISO C forbids an empty translation unit */
#endif
