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
 * Decode and token trees (m <= 8): one pass along k over 4 (3 for m > 6) groups at a time,
 * prefetching ahead in each group's stream. Prefill: chunks of R16F_KC columns (3 groups' chunk stays in L1) times
 * blocks of R16F_MC rows of x (in L2), tiles of 8 rows x 3 groups (24 accumulators).
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>
#include <stdbool.h>

#define R16F_STREAM_M 8     /* up to this many x rows: one pass, every weight read once */
#define R16F_KC 256         /* columns per chunk otherwise */
#define R16F_MC 96          /* x rows per L2 block */
#define R16F_PF_BYTES 2048  /* prefetch distance in each group's stream (decode) */

/* column j of a group (16 values) widened to float */
#define R16F_ES(bt) ((bt) == EVLM_TYPE_F32 ? 4u : 2u)
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
                         : _mm512_maskz_loadu_ps(g == G - 1 ? last : 0xffff, y + (size_t)(r) * ldy + 16 * g);
#define R16F_ROW(MR, G, r, a)                                                                      \
    if (MR > r) {                                                                                  \
        __m512 xv = _mm512_set1_ps(x[(size_t)(r) * ldx + j]);                                      \
        for (int g = 0; g < G; g++) a[g] = _mm512_fmadd_ps(wv[g], xv, a[g]);                       \
    }
#define R16F_STORE(MR, G, r, a)                                                                    \
    if (MR > r)                                                                                    \
        for (int g = 0; g < G; g++)                                                                \
            _mm512_mask_storeu_ps(y + (size_t)(r) * ldy + 16 * g, g == G - 1 ? last : 0xffff, a[g]);
#define R16F_ROWS(OP, MR, G)                                                                       \
    OP(MR, G, 0, a0) OP(MR, G, 1, a1) OP(MR, G, 2, a2) OP(MR, G, 3, a3)                            \
    OP(MR, G, 4, a4) OP(MR, G, 5, a5) OP(MR, G, 6, a6) OP(MR, G, 7, a7)

/* y rows [0, MR), outputs [0, 16 G) (the last group's lanes masked by `last`) over columns
 * [j0, j1) of G groups starting at w (gs bytes apart); first: the accumulators start at 0, else
 * at y's values. pf: prefetch R16F_PF_BYTES ahead in every group. */
typedef void (*r16f_tile)(float *y, size_t ldy, const float *x, size_t ldx, const char *w,
                          size_t gs, int j0, int j1, bool first, __mmask16 last, bool pf);

#define R16F_TILE(T, MR, G)                                                                        \
    static void tile_##T##_##MR##x##G(float *y, size_t ldy, const float *x, size_t ldx,            \
                                      const char *w, size_t gs, int j0, int j1, bool first,        \
                                      __mmask16 last, bool pf) {                                   \
        const evlm_type bt = EVLM_TYPE_##T;                                                        \
        const size_t cs = 16 * R16F_ES(bt); /* bytes per column */                                 \
        __m512 a0[G], a1[G], a2[G], a3[G], a4[G], a5[G], a6[G], a7[G], wv[G];                      \
        R16F_ROWS(R16F_INIT, MR, G)                                                                \
        for (int j = j0; j < j1; j++) {                                                            \
            const char *wj = w + (size_t)j * cs;                                                   \
            if (pf && ((size_t)j * cs) % 64 == 0)                                                  \
                for (int g = 0; g < G; g++) _mm_prefetch(wj + (size_t)g * gs + R16F_PF_BYTES, _MM_HINT_T0); \
            for (int g = 0; g < G; g++) wv[g] = load_col(wj + (size_t)g * gs, bt);                 \
            R16F_ROWS(R16F_ROW, MR, G)                                                             \
        }                                                                                          \
        R16F_ROWS(R16F_STORE, MR, G)                                                               \
    }

/* tiles[G - 1][MR - 1]: G = 1..3 with MR = 1..8, G = 4 with MR = 1..6 (at most 24 accumulators) */
#define R16F_TILES_G(T, G)                                                                         \
    R16F_TILE(T, 1, G) R16F_TILE(T, 2, G) R16F_TILE(T, 3, G) R16F_TILE(T, 4, G)                    \
    R16F_TILE(T, 5, G) R16F_TILE(T, 6, G) R16F_TILE(T, 7, G) R16F_TILE(T, 8, G)
#define R16F_ROW_OF(T, G)                                                                          \
    {tile_##T##_1x##G, tile_##T##_2x##G, tile_##T##_3x##G, tile_##T##_4x##G,                       \
     tile_##T##_5x##G, tile_##T##_6x##G, tile_##T##_7x##G, tile_##T##_8x##G}
#define R16F_SET(T)                                                                                \
    R16F_TILES_G(T, 1)                                                                             \
    R16F_TILES_G(T, 2)                                                                             \
    R16F_TILES_G(T, 3)                                                                             \
    R16F_TILE(T, 1, 4) R16F_TILE(T, 2, 4) R16F_TILE(T, 3, 4) R16F_TILE(T, 4, 4)                    \
    R16F_TILE(T, 5, 4) R16F_TILE(T, 6, 4)                                                          \
    static const r16f_tile tiles_##T[4][8] = {                                                     \
        R16F_ROW_OF(T, 1), R16F_ROW_OF(T, 2), R16F_ROW_OF(T, 3),                                   \
        {tile_##T##_1x4, tile_##T##_2x4, tile_##T##_3x4, tile_##T##_4x4, tile_##T##_5x4,           \
         tile_##T##_6x4, 0, 0}};
R16F_SET(F32)
R16F_SET(F16)
R16F_SET(BF16)

void evlm__avx512_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                            evlm_type wt, int m, int n0, int n1, int k) {
    const r16f_tile(*set)[8];
    switch (wt) {
    case EVLM_TYPE_F32_R16: set = tiles_F32; break;
    case EVLM_TYPE_F16_R16: set = tiles_F16; break;
    default: set = tiles_BF16; break;
    }
    const size_t gs = (size_t)EVLM_R16 * (size_t)k * evlm_type_size(wt);
    const int g0 = n0 / EVLM_R16, g1 = (n1 + EVLM_R16 - 1) / EVLM_R16;
    const __mmask16 tail = n1 % EVLM_R16 ? (__mmask16)((1u << (n1 % EVLM_R16)) - 1u) : (__mmask16)0xffff;
    const char *wb = (const char *)w;
    if (m <= R16F_STREAM_M) {
        const int gmax = m <= 6 ? 4 : 3;
        for (int g = g0; g < g1; g += gmax) {
            int G = g1 - g < gmax ? g1 - g : gmax;
            set[G - 1][m - 1](y + (size_t)g * EVLM_R16, ldy, x, ldx, wb + (size_t)g * gs, gs, 0, k, true,
                              g + G == g1 ? tail : (__mmask16)0xffff, true);
        }
        return;
    }
    for (int j0 = 0; j0 < k; j0 += R16F_KC) {
        int j1 = k - j0 < R16F_KC ? k : j0 + R16F_KC;
        for (int i0 = 0; i0 < m; i0 += R16F_MC) {
            int i1 = m - i0 < R16F_MC ? m : i0 + R16F_MC;
            for (int g = g0; g < g1; g += 3) {
                int G = g1 - g < 3 ? g1 - g : 3;
                __mmask16 last = g + G == g1 ? tail : (__mmask16)0xffff;
                for (int i = i0; i < i1; i += 8) {
                    int mr = i1 - i < 8 ? i1 - i : 8;
                    /* the first row tile brings the weights in (prefetching), the others reuse them */
                    set[G - 1][mr - 1](y + (size_t)i * ldy + (size_t)g * EVLM_R16, ldy, x + (size_t)i * ldx, ldx,
                                       wb + (size_t)g * gs, gs, j0, j1, j0 == 0, last, i == i0);
                }
            }
        }
    }
}

#else
typedef int evlm__x86_avx512_r16f_empty; /* ISO C forbids an empty translation unit */
#endif
