/*
 * arm_neon_r16f.c - gemm for float weights with 16 rows interleaved (F32_R16 / F16_R16 /
 * BF16_R16, quant/repack.h), AArch64 NEON: x86_avx512_r16f.c with a group's column split into
 * four 4-lane quarters. Column j of a group is four vectors (16 outputs), so x[j] and four FMLAs
 * (by element) advance 16 outputs: no horizontal sums, one sequential weight stream per group,
 * and each weight vector serves the MR rows of x of a tile.
 *
 * Each output is repack.h's chain acc = fma(w, x[j], acc) for j = 0 .. k - 1 in one lane
 * (vfmaq_n_f32 is a fused FMLA): bitwise ref's (evlm__ref_gemm) for any m, tile, thread split or
 * k chunk (a chunk leaves its accumulators in y and the next one reloads them, which is exact).
 *
 * 32 q registers: at most 20 accumulators (MR x 4G), since GCC's scheduler loads a column's 4G
 * weight quarters and MR x values up front (6 x 1 = 24 + 4 + 6 spilled three accumulators).
 * Decode and token trees (m <= 4): 2 groups per tile (1 for m = 3, 4); prefill: 5 rows x 1
 * group. The walk over the matrix is r16f_walk.c's.
 *
 * NEON is the AArch64 base ISA: no flags; on other architectures the file is empty.
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <stdbool.h>
#include <string.h>

#define R16F_PF_BYTES 2048 /* prefetch distance in each group's stream (decode) */

/* quarter q of column j of a group (4 values at p) widened to float */
EVLM__INLINE float32x4_t load_quarter(const char *p, evlm_type bt) {
    if (bt == EVLM_TYPE_F32) return vld1q_f32((const float *)(const void *)p);
    uint16x4_t h = vld1_u16((const uint16_t *)(const void *)p);
    if (bt == EVLM_TYPE_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* the first n (1..3) of 4 outputs: through a buffer, never touching y past them */
EVLM__INLINE float32x4_t load_part(const float *y, int n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(t, y, sizeof(float) * (size_t)n);
    return vld1q_f32(t);
}
EVLM__INLINE void store_part(float *y, float32x4_t a, int n) {
    float t[4];
    vst1q_f32(t, a);
    memcpy(y, t, sizeof(float) * (size_t)n);
}

/* One accumulator array per x row, every loop over one unrolled (GCC keeps them in registers).
 * Vector v holds outputs [4v, 4v + 4) of the tile; only outputs < lim are read or written (the
 * last group's rows past n1). */
#define R16F_INIT(MR, G, r, a)                                                                     \
    if (MR > r) {                                                                                  \
        EVLM__UNROLL for (int v = 0; v < 4 * G; v++) {                                             \
            const float *yv = y + (size_t)(r)*ldy + 4 * v;                                         \
            a[v] = first              ? vdupq_n_f32(0.0f)                                          \
                   : 4 * v + 4 <= lim ? vld1q_f32(yv)                                              \
                   : 4 * v < lim      ? load_part(yv, lim - 4 * v)                                 \
                                      : vdupq_n_f32(0.0f);                                              \
        }                                                                                          \
    }
#define R16F_COL(MR, G, r, a)                                                                      \
    if (MR > r) a[v] = vfmaq_n_f32(a[v], wq, xs[r]);
#define R16F_STORE(MR, G, r, a)                                                                    \
    if (MR > r) {                                                                                  \
        EVLM__UNROLL for (int v = 0; v < 4 * G; v++) {                                             \
            float *yv = y + (size_t)(r)*ldy + 4 * v;                                               \
            if (4 * v + 4 <= lim)                                                                  \
                vst1q_f32(yv, a[v]);                                                               \
            else if (4 * v < lim)                                                                  \
                store_part(yv, a[v], lim - 4 * v);                                                 \
        }                                                                                          \
    }
#define R16F_ROWS(OP, MR, G)                                                                       \
    OP(MR, G, 0, a0) OP(MR, G, 1, a1) OP(MR, G, 2, a2) OP(MR, G, 3, a3) OP(MR, G, 4, a4)

/* an evlm__r16f_tile (ref_impl.h) */

#define R16F_TILE(T, MR, G)                                                                        \
    static void tile_##T##_##MR##x##G(float *y, size_t ldy, const float *x, size_t ldx,            \
                                      const char *w, size_t gs, int j0, int j1, bool first,        \
                                      int lim, bool pf) {                                          \
        const evlm_type bt = EVLM_TYPE_##T;                                                        \
        /* bytes per quarter column, per column (the element size from the traits) */              \
        const size_t qs = 4 * evlm_type_traits_of(bt)->size, cs = 4 * qs;                          \
        float32x4_t a0[4 * G], a1[4 * G], a2[4 * G], a3[4 * G], a4[4 * G];                         \
        R16F_ROWS(R16F_INIT, MR, G)                                                                \
        for (int j = j0; j < j1; j++) {                                                            \
            const char *wj = w + (size_t)j * cs;                                                   \
            if (pf && ((size_t)j * cs) % 64 == 0)                                                  \
                EVLM__UNROLL for (int g = 0; g < G; g++)                                           \
                    __builtin_prefetch(wj + (size_t)g * gs + R16F_PF_BYTES);                       \
            float xs[MR];                                                                          \
            EVLM__UNROLL for (int r = 0; r < MR; r++) xs[r] = x[(size_t)r * ldx + j];              \
            EVLM__UNROLL for (int v = 0; v < 4 * G; v++) {                                         \
                float32x4_t wq =                                                                   \
                    load_quarter(wj + (size_t)(v / 4) * gs + (size_t)(v % 4) * qs, bt);            \
                R16F_ROWS(R16F_COL, MR, G)                                                         \
            }                                                                                      \
        }                                                                                          \
        R16F_ROWS(R16F_STORE, MR, G)                                                               \
    }

/* tiles[G - 1][MR - 1]: G = 1 with MR = 1..5, G = 2 with MR = 1..2 */
/* a macro of macros, laid out by hand */
/* clang-format off */
#define R16F_SET(T)                                                                                \
    R16F_TILE(T, 1, 1) R16F_TILE(T, 2, 1) R16F_TILE(T, 3, 1) R16F_TILE(T, 4, 1)                    \
    R16F_TILE(T, 5, 1) R16F_TILE(T, 1, 2) R16F_TILE(T, 2, 2)                                       \
    static const evlm__r16f_tile tiles_##T[4][8] = {                                               \
        {tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1, tile_##T##_5x1},          \
        {tile_##T##_1x2, tile_##T##_2x2, 0, 0, 0}};
/* clang-format on */
R16F_SET(F32)
R16F_SET(F16)
R16F_SET(BF16)

/* the tiles per file type, for its R16 form (ref_impl.h) */
const evlm__r16f_set evlm__neon_r16f[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = tiles_F32,
    [EVLM_TYPE_F16] = tiles_F16,
    [EVLM_TYPE_BF16] = tiles_BF16,
};

/* decode: 2 groups per tile for m <= 2, else 1; prefill 5 rows x 1 group (20 accumulators) */
static const evlm__r16f_shape k_shape = {4, {0, 2, 2, 1, 1}, 5, 1};

void evlm__neon_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                          evlm_type wt, int m, int n0, int n1, int k) {
    evlm__r16f_walk(&k_shape, evlm__neon_r16f[evlm_type_r16_base(wt)], y, ldy, x, ldx, w, wt, m, n0,
                    n1, k);
}

#else
typedef int evlm__arm_neon_r16f_empty; /* ISO C forbids an empty translation unit */
#endif
