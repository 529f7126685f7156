/*
 * r16f_walk.c - the walk of the float R16 gemm (F32_R16 / F16_R16 / BF16_R16, quant/repack.h)
 * over groups, columns and x rows, shared by the per-ISA files that supply its register tiles
 * (x86_avx512_r16f.c, x86_avx2_r16f.c, arm_neon_r16f.c; see ref_impl.h).
 *
 * Decode and token trees (m <= stream_m): one pass along k, stream_g[m] groups per tile,
 * prefetching ahead in each group's stream: every weight is read once. Otherwise chunks of
 * R16F_KC columns (a tile's groups stay in L1) times blocks of R16F_MC rows of x (in L2), tiles
 * of mr rows x g groups; the first row tile of a block prefetches, the others reuse its weights.
 * A k chunk leaves its accumulators in y and the next reloads them (exact), so every output is
 * the same fma chain whatever the path: the tiles' bits do not depend on this walk.
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#define R16F_KC 256 /* columns per chunk (m > stream_m) */
#define R16F_MC 96  /* x rows per L2 block */

void evlm__r16f_walk(const evlm__r16f_shape *s, const evlm__r16f_tile (*tiles)[8], float *y,
                     size_t ldy, const float *x, size_t ldx, const void *w, evlm_type wt, int m,
                     int n0, int n1, int k) {
    const size_t gs = (size_t)EVLM_R16 * (size_t)k * evlm_type_size(wt);
    const int g0 = n0 / EVLM_R16, g1 = (n1 + EVLM_R16 - 1) / EVLM_R16;
    const int tail = n1 - (g1 - 1) * EVLM_R16; /* valid rows of the last group, 1..16 */
    const char *wb = (const char *)w;
    if (m <= s->stream_m) {
        const int gmax = s->stream_g[m];
        for (int g = g0; g < g1; g += gmax) {
            int G = g1 - g < gmax ? g1 - g : gmax;
            int lim = g + G == g1 ? EVLM_R16 * (G - 1) + tail : EVLM_R16 * G;
            tiles[G - 1][m - 1](y + (size_t)g * EVLM_R16, ldy, x, ldx, wb + (size_t)g * gs, gs, 0,
                                k, true, lim, true);
        }
        return;
    }
    for (int j0 = 0; j0 < k; j0 += R16F_KC) {
        int j1 = k - j0 < R16F_KC ? k : j0 + R16F_KC;
        for (int i0 = 0; i0 < m; i0 += R16F_MC) {
            int i1 = m - i0 < R16F_MC ? m : i0 + R16F_MC;
            for (int g = g0; g < g1; g += s->g) {
                int G = g1 - g < s->g ? g1 - g : s->g;
                int lim = g + G == g1 ? EVLM_R16 * (G - 1) + tail : EVLM_R16 * G;
                for (int i = i0; i < i1; i += s->mr) {
                    int mr = i1 - i < s->mr ? i1 - i : s->mr;
                    tiles[G - 1][mr - 1](y + (size_t)i * ldy + (size_t)g * EVLM_R16, ldy,
                                         x + (size_t)i * ldx, ldx, wb + (size_t)g * gs, gs, j0, j1,
                                         j0 == 0, lim, i == i0);
                }
            }
        }
    }
}
