/*
 * sgemm_walk.h - private to src/kernels: the blocked, packed float32 GEMM walk of the training
 * sgemm entry (kernels.h), a template included once by each SIMD training file
 * (x86_avx2_train.c, x86_avx512_train.c, arm_train.c) after it defines:
 *   SG_MR, SG_NR       the register tile (rows of C x columns of C)
 *   SG_KC, SG_MC, SG_NC  cache blocks of k, m and n (SG_MC a multiple of SG_MR, SG_NC of SG_NR,
 *                      SG_KC * (SG_NC + SG_MC) <= EVLM_SGEMM_SCRATCH); optionally SG_KC_AT and
 *                      SG_NC_AT, the blocks when A is transposed (a_t: its pack reads SG_KC_AT
 *                      rows far apart, so it may want a smaller k block)
 *   SG_UKR(kc, ap, bp, c, ldc, add)  the micro-kernel: the SG_MR x SG_NR tile
 *                      t = sum over p < kc of ap[p * SG_MR + r] * bp[p * SG_NR + j], one FMA
 *                      chain per element from 0 in p order, then c = add ? c + t : t
 *   SG_NAME            the entry's name.
 * and may define SG_UKR_A(kc, a, lda, bp, c, ldc, add): the same micro-kernel reading A in place
 * (a[r * lda + p], row-major A: no transposing pack), the same operations in the same order;
 * or, instead of both, SG_TILE(kc, ad, lda, ap, bp, c, ldc, add, nr) (ad: A in place, or NULL:
 * packed at ap) with SG_TILE_COLS(nr), the columns it writes for a tile of nr <= SG_NR valid
 * ones (narrower kernels for the last columns, same operations per element), and SG_TILE_DIRECT
 * if it takes A in place.
 * The walk (Goto / BLIS order): for each SG_NC block of columns, each SG_KC block of k: pack B
 * (k x n panel, SG_NR columns interleaved) into scratch; for each SG_MC block of rows: pack A
 * (SG_MR rows interleaved, zero-padded), then run the micro-kernel over the tiles, partial edge
 * tiles through a local tile (same float operations, so every element's value depends on k
 * only). Not here: threading (train/ops.c splits C), the micro-kernels themselves.
 */
#ifndef SG_NAME
#error "define SG_MR, SG_NR, SG_KC, SG_MC, SG_NC, SG_UKR or SG_TILE, and SG_NAME first"
#endif

#include <string.h>

#ifndef SG_TILE
#ifdef SG_UKR_A
#define SG_TILE(kc, ad, lda, ap, bp, c, ldc, add, nr)                                              \
    ((ad) ? SG_UKR_A(kc, ad, lda, bp, c, ldc, add) : SG_UKR(kc, ap, bp, c, ldc, add))
#define SG_TILE_DIRECT 1
#else
#define SG_TILE(kc, ad, lda, ap, bp, c, ldc, add, nr)                                              \
    ((void)(ad), (void)(lda), SG_UKR(kc, ap, bp, c, ldc, add))
#endif
#define SG_TILE_COLS(nr) SG_NR
#endif

#ifndef SG_KC_AT
#define SG_KC_AT SG_KC
#define SG_NC_AT SG_NC
#endif

_Static_assert(SG_MC % SG_MR == 0 && SG_NC % SG_NR == 0 && SG_NC_AT % SG_NR == 0,
               "sgemm blocks must hold whole tiles");
_Static_assert((size_t)SG_KC *(SG_NC + SG_MC) <= EVLM_SGEMM_SCRATCH &&
                   (size_t)SG_KC_AT * (SG_NC_AT + SG_MC) <= EVLM_SGEMM_SCRATCH,
               "sgemm scratch too small");

/* A rows [i0, i0 + mc), columns [p0, p0 + kc) into SG_MR-row micro-panels (p-major) */
static void sg_pack_a(float *ap, const float *a, size_t lda, bool a_t, int i0, int mc, int p0,
                      int kc) {
    for (int ir = 0; ir < mc; ir += SG_MR, ap += (size_t)SG_MR * kc) {
        int mr = mc - ir < SG_MR ? mc - ir : SG_MR;
        if (a_t) {
            for (int p = 0; p < kc; p++) {
                const float *src = a + (size_t)(p0 + p) * lda + i0 + ir;
                float *dst = ap + (size_t)p * SG_MR;
                int r = 0;
                for (; r < mr; r++) dst[r] = src[r];
                for (; r < SG_MR; r++) dst[r] = 0.0f;
            }
        } else {
            for (int r = 0; r < SG_MR; r++) {
                if (r >= mr) {
                    for (int p = 0; p < kc; p++) ap[(size_t)p * SG_MR + r] = 0.0f;
                    continue;
                }
                const float *src = a + (size_t)(i0 + ir + r) * lda + p0;
                for (int p = 0; p < kc; p++) ap[(size_t)p * SG_MR + r] = src[p];
            }
        }
    }
}

/* B rows (k) [p0, p0 + kc), columns [j0, j0 + nc) into SG_NR-column micro-panels (p-major) */
static void sg_pack_b(float *bp, const float *b, size_t ldb, bool b_t, int p0, int kc, int j0,
                      int nc) {
    for (int jr = 0; jr < nc; jr += SG_NR, bp += (size_t)SG_NR * kc) {
        int nr = nc - jr < SG_NR ? nc - jr : SG_NR;
        if (!b_t) {
            for (int p = 0; p < kc; p++) {
                const float *src = b + (size_t)(p0 + p) * ldb + j0 + jr;
                float *dst = bp + (size_t)p * SG_NR;
                if (nr == SG_NR) {
                    memcpy(dst, src, sizeof(float) * SG_NR);
                } else {
                    int j = 0;
                    for (; j < nr; j++) dst[j] = src[j];
                    for (; j < SG_NR; j++) dst[j] = 0.0f;
                }
            }
        } else {
            /* columns of op(B) are rows of b: 4 of them at a time, so each p writes 16 bytes */
            int j = 0;
            for (; j + 4 <= nr; j += 4) {
                const float *s0 = b + (size_t)(j0 + jr + j) * ldb + p0;
                const float *s1 = s0 + ldb, *s2 = s1 + ldb, *s3 = s2 + ldb;
                for (int p = 0; p < kc; p++) {
                    float *dst = bp + (size_t)p * SG_NR + j;
                    dst[0] = s0[p], dst[1] = s1[p], dst[2] = s2[p], dst[3] = s3[p];
                }
            }
            for (; j < nr; j++) {
                const float *src = b + (size_t)(j0 + jr + j) * ldb + p0;
                for (int p = 0; p < kc; p++) bp[(size_t)p * SG_NR + j] = src[p];
            }
            for (; j < SG_NR; j++)
                for (int p = 0; p < kc; p++) bp[(size_t)p * SG_NR + j] = 0.0f;
        }
    }
}

void SG_NAME(float *c, size_t ldc, const float *a, size_t lda, bool a_t, const float *b, size_t ldb,
             bool b_t, int m, int n, int k, bool acc, float *scratch) {
    /* the blocks depend on k and the layout only, so every element's operations do too */
    const int kcb = a_t ? SG_KC_AT : SG_KC, ncb = a_t ? SG_NC_AT : SG_NC;
    float *bp = scratch, *ap = scratch + (size_t)kcb * ncb;
#ifdef SG_TILE_DIRECT /* SG_TILE reads a row-major A in place */
    bool direct = !a_t;
#else
    const bool direct = false;
#endif
    if (k <= 0) {
        if (!acc)
            for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, sizeof(float) * (size_t)n);
        return;
    }
    for (int jc = 0; jc < n; jc += ncb) {
        int nc = n - jc < ncb ? n - jc : ncb;
        for (int pc = 0; pc < k; pc += kcb) {
            int kc = k - pc < kcb ? k - pc : kcb;
            bool add = acc || pc > 0;
            sg_pack_b(bp, b, ldb, b_t, pc, kc, jc, nc);
            for (int ic = 0; ic < m; ic += SG_MC) {
                int mc = m - ic < SG_MC ? m - ic : SG_MC;
                if (!direct) {
                    sg_pack_a(ap, a, lda, a_t, ic, mc, pc, kc);
                } else if (mc % SG_MR) { /* only the partial panel of rows is packed */
                    int full = mc - mc % SG_MR;
                    sg_pack_a(ap + (size_t)full * kc, a, lda, a_t, ic + full, mc - full, pc, kc);
                }
                for (int jr = 0; jr < nc; jr += SG_NR) {
                    const float *bpj = bp + (size_t)jr * kc;
                    int nr = nc - jr < SG_NR ? nc - jr : SG_NR;
                    for (int ir = 0; ir < mc; ir += SG_MR) {
                        const float *api = ap + (size_t)ir * kc;
                        int mr = mc - ir < SG_MR ? mc - ir : SG_MR;
                        float *cc = c + (size_t)(ic + ir) * ldc + jc + jr;
                        float t[SG_MR * SG_NR];
                        const float *ad =
                            direct && mr == SG_MR ? a + (size_t)(ic + ir) * lda + pc : NULL;
                        if (mr == SG_MR && SG_TILE_COLS(nr) == nr) {
                            SG_TILE(kc, ad, lda, api, bpj, cc, ldc, add, nr);
                            continue;
                        }
                        SG_TILE(kc, ad, lda, api, bpj, t, (size_t)SG_NR, false, nr);
                        for (int r = 0; r < mr; r++)
                            for (int j = 0; j < nr; j++) {
                                float *e = cc + (size_t)r * ldc + j;
                                *e = add ? *e + t[r * SG_NR + j] : t[r * SG_NR + j];
                            }
                    }
                }
            }
        }
    }
}
