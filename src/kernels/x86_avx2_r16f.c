/*
 * x86_avx2_r16f.c - gemm for float weights with 16 rows interleaved (F32_R16 / F16_R16 /
 * BF16_R16, quant/repack.h), AVX2 + FMA + F16C: x86_avx512_r16f.c with a group's column split
 * into two 8-lane halves. Column j of a group is two vectors (16 outputs), so x[j] broadcast and
 * two FMAs advance 16 outputs: no horizontal sums, one sequential weight stream per group, and
 * each weight vector serves the MR rows of x of a tile.
 *
 * Each output is repack.h's chain acc = fma(w, x[j], acc) for j = 0 .. k - 1 in one lane:
 * bitwise ref's (evlm__ref_gemm) for any m, tile, thread split or k chunk (a chunk leaves its
 * accumulators in y and the next one reloads them, which is exact).
 *
 * 16 ymm registers bound the tiles to at most 12 accumulators (MR x 2G), leaving room for the
 * weight halves and the x broadcast. Decode and token trees (m <= 4): 4 / 3 / 2 / 1 groups per
 * tile for m = 1 / 2 / 3 / 4; prefill: 6 rows x 1 group. The walk over the matrix is
 * r16f_walk.c's.
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <stdbool.h>

#define R16F_PF_BYTES 2048 /* prefetch distance in each group's stream (decode) */

/* half h of column j of a group (8 values at p) widened to float */
EVLM__INLINE __m256 load_half(const char *p, evlm_type bt) {
    if (bt == EVLM_TYPE_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (bt == EVLM_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* lanes [0, n) of 8 (none for n <= 0) */
EVLM__INLINE __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One accumulator array per x row (GCC keeps them in registers; one MR x 2G array goes through
 * the stack; so do these unless every loop over an array is unrolled). Vector v holds outputs
 * [8v, 8v + 8) of the tile; only outputs < lim are read or written (the last group's rows past
 * n1). */
#define R16F_INIT(MR, G, r, a)                                                                     \
    if (MR > r) {                                                                                  \
        EVLM__UNROLL for (int v = 0; v < 2 * G; v++) {                                             \
            const float *yv = y + (size_t)(r)*ldy + 8 * v;                                         \
            a[v] = first              ? _mm256_setzero_ps()                                        \
                   : 8 * v + 8 <= lim ? _mm256_loadu_ps(yv)                                        \
                                      : _mm256_maskload_ps(yv, lanes(lim - 8 * v));                \
        }                                                                                          \
    }
#define R16F_ROW(MR, G, r, a)                                                                      \
    if (MR > r) {                                                                                  \
        __m256 xv = _mm256_broadcast_ss(x + (size_t)(r)*ldx + j);                                  \
        EVLM__UNROLL for (int v = 0; v < 2 * G; v++) a[v] = _mm256_fmadd_ps(wv[v], xv, a[v]);      \
    }
#define R16F_COL(MR, G, r, a)                                                                      \
    if (MR > r) a[v] = _mm256_fmadd_ps(wq, xb[r], a[v]);
#define R16F_STORE(MR, G, r, a)                                                                    \
    if (MR > r) {                                                                                  \
        EVLM__UNROLL for (int v = 0; v < 2 * G; v++) {                                             \
            float *yv = y + (size_t)(r)*ldy + 8 * v;                                               \
            if (8 * v + 8 <= lim)                                                                  \
                _mm256_storeu_ps(yv, a[v]);                                                        \
            else if (8 * v < lim)                                                                  \
                _mm256_maskstore_ps(yv, lanes(lim - 8 * v), a[v]);                                 \
        }                                                                                          \
    }
#define R16F_ROWS(OP, MR, G)                                                                       \
    OP(MR, G, 0, a0)                                                                               \
    OP(MR, G, 1, a1) OP(MR, G, 2, a2) OP(MR, G, 3, a3) OP(MR, G, 4, a4) OP(MR, G, 5, a5)

/* The order of one column's FMAs, which is the order GCC allocates registers in (x86 schedules
 * only after allocation): row by row (the 2G weight vectors loaded first, one x broadcast live)
 * or, where the MR accumulator arrays, the MR broadcasts and one weight vector fit 16 registers,
 * vector by vector (else e.g. 1 x 4 keeps 8 weights, 8 accumulators and x live: one spills). */
#define R16F_BY_COLUMN(MR, G) ((MR) * (2 * (G) + 1) + 1 <= 16)

/* an evlm__r16f_tile (ref_impl.h) */

#define R16F_TILE(T, MR, G)                                                                        \
    static void tile_##T##_##MR##x##G(float *y, size_t ldy, const float *x, size_t ldx,            \
                                      const char *w, size_t gs, int j0, int j1, bool first,        \
                                      int lim, bool pf) {                                          \
        const evlm_type bt = EVLM_TYPE_##T;                                                        \
        /* bytes per half column, per column (the element size from the traits) */                 \
        const size_t hs = 8 * evlm_type_traits_of(bt)->size, cs = 2 * hs;                          \
        __m256 a0[2 * G], a1[2 * G], a2[2 * G], a3[2 * G], a4[2 * G], a5[2 * G], wv[2 * G];        \
        R16F_ROWS(R16F_INIT, MR, G)                                                                \
        for (int j = j0; j < j1; j++) {                                                            \
            const char *wj = w + (size_t)j * cs;                                                   \
            if (pf && ((size_t)j * cs) % 64 == 0)                                                  \
                EVLM__UNROLL for (int g = 0; g < G; g++)                                           \
                    _mm_prefetch(wj + (size_t)g * gs + R16F_PF_BYTES, _MM_HINT_T0);                \
            if (R16F_BY_COLUMN(MR, G)) {                                                           \
                __m256 xb[MR];                                                                     \
                EVLM__UNROLL for (int r = 0; r < MR; r++) xb[r] =                                  \
                    _mm256_broadcast_ss(x + (size_t)r * ldx + j);                                  \
                EVLM__UNROLL for (int v = 0; v < 2 * G; v++) {                                     \
                    __m256 wq = load_half(wj + (size_t)(v / 2) * gs + (size_t)(v % 2) * hs, bt);   \
                    R16F_ROWS(R16F_COL, MR, G)                                                     \
                }                                                                                  \
            } else {                                                                               \
                EVLM__UNROLL for (int v = 0; v < 2 * G; v++) wv[v] =                               \
                    load_half(wj + (size_t)(v / 2) * gs + (size_t)(v % 2) * hs, bt);               \
                R16F_ROWS(R16F_ROW, MR, G)                                                         \
            }                                                                                      \
        }                                                                                          \
        R16F_ROWS(R16F_STORE, MR, G)                                                               \
    }

/* tiles[G - 1][MR - 1]: G = 1 with MR = 1..6, G = 2 with MR = 1..3, G = 3 with MR = 1..2,
 * G = 4 with MR = 1 (at most 12 accumulators; decode uses G = 5 - m) */
/* a macro of macros, laid out by hand */
/* clang-format off */
#define R16F_SET(T)                                                                                \
    R16F_TILE(T, 1, 1) R16F_TILE(T, 2, 1) R16F_TILE(T, 3, 1) R16F_TILE(T, 4, 1)                    \
    R16F_TILE(T, 5, 1) R16F_TILE(T, 6, 1)                                                          \
    R16F_TILE(T, 1, 2) R16F_TILE(T, 2, 2) R16F_TILE(T, 3, 2)                                       \
    R16F_TILE(T, 1, 3) R16F_TILE(T, 2, 3)                                                          \
    R16F_TILE(T, 1, 4)                                                                             \
    static const evlm__r16f_tile tiles_##T[4][8] = {                                               \
        {tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1, tile_##T##_5x1,           \
         tile_##T##_6x1},                                                                          \
        {tile_##T##_1x2, tile_##T##_2x2, tile_##T##_3x2, 0, 0, 0},                                 \
        {tile_##T##_1x3, tile_##T##_2x3, 0, 0, 0, 0},                                              \
        {tile_##T##_1x4, 0, 0, 0, 0, 0}};
/* clang-format on */
R16F_SET(F32)
R16F_SET(F16)
R16F_SET(BF16)

/* the tiles per file type, for its R16 form (ref_impl.h) */
const evlm__r16f_set evlm__avx2_r16f[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = tiles_F32,
    [EVLM_TYPE_F16] = tiles_F16,
    [EVLM_TYPE_BF16] = tiles_BF16,
};

/* decode: 5 - m groups per tile (at most 12 accumulators); prefill 6 rows x 1 group */
static const evlm__r16f_shape k_shape = {4, {0, 4, 3, 2, 1}, 6, 1};

void evlm__avx2_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                          evlm_type wt, int m, int n0, int n1, int k) {
    evlm__r16f_walk(&k_shape, evlm__avx2_r16f[evlm_type_r16_base(wt)], y, ldy, x, ldx, w, wt, m, n0,
                    n1, k);
}

#else
typedef int evlm__x86_avx2_r16f_empty; /* ISO C forbids an empty translation unit */
#endif
