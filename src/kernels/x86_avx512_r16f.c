/*
 * x86_avx512_r16f.c - gemm for float weights with 16 rows interleaved (F32_R16 / F16_R16 /
 * BF16_R16, quant/repack.h), AVX-512. Column j of a group is one 16-lane vector (16 outputs), so
 * x[j] broadcast and one FMA advance 16 outputs: no horizontal sums, one sequential weight stream
 * per group, and each weight vector serves the MR rows of x of a tile.
 *
 * Each output is repack.h's chain acc = fma(w, x[j], acc) for j = 0 .. k - 1 in one lane:
 * bitwise ref's (evlm__ref_gemm) for any m, tile, thread split or k chunk (a chunk leaves its
 * accumulators in y and the next one reloads them, which is exact).
 *
 * The walk over the matrix is r16f_walk.c's; this file supplies the tiles and their shape.
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>
#include <stdbool.h>

#define R16F_PF_BYTES 2048 /* prefetch distance in each group's stream (decode) */

/* column j of a group (16 values) widened to float */
EVLM__INLINE __m512 load_col(const char *p, evlm_type bt) {
    if (bt == EVLM_TYPE_F32) return _mm512_loadu_ps((const float *)(const void *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    if (bt == EVLM_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* One accumulator array per x row (GCC keeps them in registers; one MR x G array goes through
 * the stack). */
#define R16F_INIT(MR, G, r, a)                                                                     \
    if (MR > r)                                                                                    \
        for (int g = 0; g < G; g++)                                                                \
            a[g] = first ? _mm512_setzero_ps()                                                     \
                         : _mm512_maskz_loadu_ps(g == G - 1 ? last : 0xffff,                       \
                                                 y + (size_t)(r)*ldy + 16 * g);
#define R16F_ROW(MR, G, r, a)                                                                      \
    if (MR > r) {                                                                                  \
        __m512 xv = _mm512_set1_ps(x[(size_t)(r)*ldx + j]);                                        \
        for (int g = 0; g < G; g++) a[g] = _mm512_fmadd_ps(wv[g], xv, a[g]);                       \
    }
#define R16F_STORE(MR, G, r, a)                                                                    \
    if (MR > r)                                                                                    \
        for (int g = 0; g < G; g++)                                                                \
            _mm512_mask_storeu_ps(y + (size_t)(r)*ldy + 16 * g, g == G - 1 ? last : 0xffff, a[g]);
#define R16F_ROWS(OP, MR, G)                                                                       \
    OP(MR, G, 0, a0)                                                                               \
    OP(MR, G, 1, a1)                                                                               \
    OP(MR, G, 2, a2)                                                                               \
    OP(MR, G, 3, a3) OP(MR, G, 4, a4) OP(MR, G, 5, a5) OP(MR, G, 6, a6) OP(MR, G, 7, a7)

/* an evlm__r16f_tile (ref_impl.h); the last group's lanes past lim are masked */

#define R16F_TILE(T, MR, G)                                                                        \
    static void tile_##T##_##MR##x##G(float *y, size_t ldy, const float *x, size_t ldx,            \
                                      const char *w, size_t gs, int j0, int j1, bool first,        \
                                      int lim, bool pf) {                                          \
        const evlm_type bt = EVLM_TYPE_##T;                                                        \
        const int ll = lim - 16 * (G - 1); /* lanes of the last group, 1..16 */                    \
        const __mmask16 last = (__mmask16)(ll >= 16 ? 0xffffu : (1u << ll) - 1u);                  \
        const size_t cs = 16 * evlm_type_traits_of(bt)->size; /* bytes per column */               \
        __m512 a0[G], a1[G], a2[G], a3[G], a4[G], a5[G], a6[G], a7[G], wv[G];                      \
        R16F_ROWS(R16F_INIT, MR, G)                                                                \
        for (int j = j0; j < j1; j++) {                                                            \
            const char *wj = w + (size_t)j * cs;                                                   \
            if (pf && ((size_t)j * cs) % 64 == 0)                                                  \
                for (int g = 0; g < G; g++)                                                        \
                    _mm_prefetch(wj + (size_t)g * gs + R16F_PF_BYTES, _MM_HINT_T0);                \
            for (int g = 0; g < G; g++) wv[g] = load_col(wj + (size_t)g * gs, bt);                 \
            R16F_ROWS(R16F_ROW, MR, G)                                                             \
        }                                                                                          \
        R16F_ROWS(R16F_STORE, MR, G)                                                               \
    }

/* tiles[G - 1][MR - 1]: G = 1..3 with MR = 1..8, G = 4 with MR = 1..6 (at most 24 accumulators) */
#define R16F_TILES_G(T, G)                                                                         \
    R16F_TILE(T, 1, G)                                                                             \
    R16F_TILE(T, 2, G)                                                                             \
    R16F_TILE(T, 3, G)                                                                             \
    R16F_TILE(T, 4, G) R16F_TILE(T, 5, G) R16F_TILE(T, 6, G) R16F_TILE(T, 7, G) R16F_TILE(T, 8, G)
#define R16F_ROW_OF(T, G)                                                                          \
    {                                                                                              \
        tile_##T##_1x##G, tile_##T##_2x##G, tile_##T##_3x##G, tile_##T##_4x##G, tile_##T##_5x##G,  \
            tile_##T##_6x##G, tile_##T##_7x##G, tile_##T##_8x##G                                   \
    }
/* a macro of macros, laid out by hand */
/* clang-format off */
#define R16F_SET(T)                                                                                \
    R16F_TILES_G(T, 1)                                                                             \
    R16F_TILES_G(T, 2)                                                                             \
    R16F_TILES_G(T, 3)                                                                             \
    R16F_TILE(T, 1, 4) R16F_TILE(T, 2, 4) R16F_TILE(T, 3, 4) R16F_TILE(T, 4, 4)                    \
    R16F_TILE(T, 5, 4) R16F_TILE(T, 6, 4)                                                          \
    static const evlm__r16f_tile tiles_##T[4][8] = {                                                     \
        R16F_ROW_OF(T, 1), R16F_ROW_OF(T, 2), R16F_ROW_OF(T, 3),                                   \
        {tile_##T##_1x4, tile_##T##_2x4, tile_##T##_3x4, tile_##T##_4x4, tile_##T##_5x4,           \
         tile_##T##_6x4, 0, 0}};
/* clang-format on */
R16F_SET(F32)
R16F_SET(F16)
R16F_SET(BF16)

/* the tiles per file type, for its R16 form (ref_impl.h) */
const evlm__r16f_set evlm__avx512_r16f[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = tiles_F32,
    [EVLM_TYPE_F16] = tiles_F16,
    [EVLM_TYPE_BF16] = tiles_BF16,
};

/* decode: 4 groups per tile up to 6 rows (24 accumulators), 3 for 7-8; prefill 8 rows x 3 groups */
static const evlm__r16f_shape k_shape = {8, {0, 4, 4, 4, 4, 4, 4, 3, 3}, 8, 3};

void evlm__avx512_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                            evlm_type wt, int m, int n0, int n1, int k) {
    evlm__r16f_walk(&k_shape, evlm__avx512_r16f[evlm_type_r16_base(wt)], y, ldy, x, ldx, w, wt, m,
                    n0, n1, k);
}

#else
typedef int evlm__x86_avx512_r16f_empty; /* ISO C forbids an empty translation unit */
#endif
