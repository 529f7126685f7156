/*
 * arm_dotprod.c - gemm_q for Q8_0 / Q4_0 / Q4_1 weights with the ARMv8.2 dot product (SDOT,
 * vdotq_s32): 4 int8 products summed into each int32 lane in one instruction.
 *
 * Compiled with -march=armv8.2-a+dotprod for this file only (CMakeLists.txt); dispatch.c puts
 * evlm__neon_dotprod_gemm_q into the "neon" table only when getauxval(AT_HWCAP) has
 * HWCAP_ASIMDDP, so the rest of the library stays ARMv8.0. Empty on other architectures.
 * Row-major weights: arm_q8.h's tiles, as arm_neon.c's but with SDOT for the dot product (block
 * sums are exact int32 either way; only which products share a lane differs, hence the float
 * rounding). Q4_0's nibbles are made signed (q - 8) before the dot; Q4_1's stay 0..15, which
 * SDOT reads as non-negative int8. Both layouts are walked by q8_walk.c.
 * 16-row interleaved weights (Q8_0_R16 / Q4_0_R16 / Q4_1_R16, quant/repack.h): SDOT by lane
 * (vdotq_laneq_s32), one int32 lane per weight row, 16 rows per block column in 4 registers;
 * bitwise equal to ref (exact block sums, then ref's float steps per row without FMA), so also
 * the same bits for any m, n0, n1. Tiles of 1 or 2 activation rows; see the R16 section for
 * instruction counts. Not here: i8mm (SMMLA: arm_i8mm.c, which hands m = 1 and the row-major
 * types back to this file's gemm_q), activation quantization (arm_neon.c).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)

#include <arm_neon.h>
#include <string.h>

/* the row-major tiles with SDOT (arm_q8.h) */
#define QT_DOT(acc, a, b) vdotq_s32(acc, a, b)
#include "kernels/arm_q8.h"

/* ---- 16-row interleaved weights (*_R16, quant/repack.h) -------------------------------------- */

/* A tile is MR = 1 or 2 activation rows x one group of 16 weight rows over kb block columns. Per
 * block column and activation row, each quarter register of a 64-byte chunk (rows 4q .. 4q+3,
 * 4 bytes each) meets the same 4 activation bytes in every row lane: SDOT by lane. The 4 int32
 * lanes of s[i][q] are then the exact block sums of rows 4q .. 4q+3, and the float step per row
 * is ref's, operation for operation (quants.c: acc += d * dx * isum [+ m * s], no FMA), so every
 * output is bitwise ref's and cannot depend on m, n0, n1 or the tile.
 *
 * Per block column of a group and activation row: Q8_0 32 loads of 16 bytes and 32 SDOT; Q4_0 /
 * Q4_1 16 loads, 16 AND + 16 USHR (nibbles 0..15 are non-negative int8), 32 SDOT, and for Q4_0
 * 2 SADDLV + 4 SUB for the -8 (isum - 8 * sum(x.qs): exact, and cheaper than 32 SUBs on the
 * nibbles). Float: 4 FCVTL(2) of the scales (+4 for Q4_1's mins), 4 SCVTF, 8 FMUL, 4 FADD (+8 for
 * m * s). GCC 12 -O3 makes the m = 1 loops 95 instructions per 544 bytes (Q8_0), 116 per 288
 * (Q4_0) and 127 per 320 (Q4_1, 8 of them keeping accumulators on the stack).
 * Expected throughput, estimated and not measured (no ARM hardware here): a Cortex-X4 class core
 * (4 vector pipes) needs ~14 cycles per Q8_0 and ~23 per Q4_0 block column, 20-40 bytes a cycle,
 * so decode is DRAM bound with a few threads; an A7xx (2 pipes) does about half that. m > 1
 * shares each loaded (and unpacked) weight register between 2 activation rows: 153 instructions
 * per 64 SDOT (Q8_0), 202 (Q4). Tiles of 4 rows would share more, but their 16 float + 16 int
 * accumulators make GCC spill enough to cost more per SDOT than 2-row tiles. */

/* s[i][q] += quarter q of the 64-byte chunk at p (rows 4q .. 4q+3, 4 bytes each) . the 4
 * activation bytes in lane L of xv[i], for the MR rows i; L must be a literal (SDOT's lane is an
 * immediate). Loads one register at a time: GCC allocates ld1 {4 registers} badly (it hoists
 * them and spills through the stack). */
#define Q8_CHUNK(p, xv, L)                                                                         \
    do {                                                                                           \
        for (int q = 0; q < 4; q++) {                                                              \
            int8x16_t wq = vld1q_s8((p) + 16 * q);                                                 \
            for (int i = 0; i < MR; i++) s[i][q] = vdotq_laneq_s32(s[i][q], wq, (xv)[i], L);       \
        }                                                                                          \
    } while (0)

/* Q4 chunk L: low nibbles are elements 4L .. 4L+3 (lane L of x0), high ones 16 + 4L .. (x1);
 * nibbles 0..15 are non-negative int8 for SDOT */
#define Q4_CHUNK(p, L)                                                                             \
    do {                                                                                           \
        for (int q = 0; q < 4; q++) {                                                              \
            uint8x16_t pq = vld1q_u8((const uint8_t *)(p) + 16 * q);                               \
            int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(pq, vdupq_n_u8(0x0f)));                    \
            int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(pq, 4));                                 \
            for (int i = 0; i < MR; i++) {                                                         \
                s[i][q] = vdotq_laneq_s32(s[i][q], lo, x0[i], L);                                  \
                s[i][q] = vdotq_laneq_s32(s[i][q], hi, x1[i], L);                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* y[i][r] for MR activation rows and rows r < nv of the group at gw (kb block columns) */
EVLM__INLINE void r16_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *gw,
                           int kb, int nv, evlm_type base, int MR) {
    const size_t col = EVLM_R16 * evlm_type_traits_of(base)->size;
    const size_t q0 = EVLM_R16 * (size_t)evlm_type_traits_of(base)->head;
    const int q4_1 = base == EVLM_TYPE_Q4_1;
    float32x4_t acc[2][4];
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < 4; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (int b = 0; b < kb; b++) {
        const char *cd = gw + (size_t)b * col;
        const int8_t *qs = (const int8_t *)(cd + q0); /* past the 16 rows' fp16 fields */
        int8x16_t x0[2], x1[2];
        int32x4_t s[2][4];
        for (int i = 0; i < MR; i++) {
            x0[i] = vld1q_s8(x[(size_t)i * ldx + b].qs);
            x1[i] = vld1q_s8(x[(size_t)i * ldx + b].qs + 16);
            for (int q = 0; q < 4; q++) s[i][q] = vdupq_n_s32(0);
        }
        if (base == EVLM_TYPE_Q8_0) {
            Q8_CHUNK(qs, x0, 0);
            Q8_CHUNK(qs + 64, x0, 1);
            Q8_CHUNK(qs + 128, x0, 2);
            Q8_CHUNK(qs + 192, x0, 3);
            Q8_CHUNK(qs + 256, x1, 0);
            Q8_CHUNK(qs + 320, x1, 1);
            Q8_CHUNK(qs + 384, x1, 2);
            Q8_CHUNK(qs + 448, x1, 3);
        } else {
            Q4_CHUNK(qs, 0);
            Q4_CHUNK(qs + 64, 1);
            Q4_CHUNK(qs + 128, 2);
            Q4_CHUNK(qs + 192, 3);
        }
        if (base == EVLM_TYPE_Q4_0)
            for (int i = 0; i < MR; i++) {
                int32x4_t c = vdupq_n_s32(8 * (vaddlvq_s8(x0[i]) + vaddlvq_s8(x1[i])));
                for (int q = 0; q < 4; q++) s[i][q] = vsubq_s32(s[i][q], c);
            }
        float32x4_t dw[4], dm[4];
        load_h16(cd, dw);
        if (q4_1) load_h16(cd + 32, dm);
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            for (int q = 0; q < 4; q++) {
                float32x4_t t = vmulq_f32(vmulq_n_f32(dw[q], xb->d), vcvtq_f32_s32(s[i][q]));
                if (q4_1) t = vaddq_f32(t, vmulq_n_f32(dm[q], xb->s));
                acc[i][q] = vaddq_f32(acc[i][q], t);
            }
        }
    }
    for (int i = 0; i < MR; i++) {
        float tmp[EVLM_R16], *yi = y + (size_t)i * ldy, *dst = nv == EVLM_R16 ? yi : tmp;
        for (int q = 0; q < 4; q++) vst1q_f32(dst + 4 * q, acc[i][q]);
        if (dst == tmp) memcpy(yi, tmp, sizeof(float) * (size_t)nv); /* rows >= n1: not ours */
    }
}

/* an evlm__q8r16_tile (all blocks in one pass: first is always true) */
#define R16TILE(T, MR)                                                                             \
    static void r16_##T##_##MR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                \
                               const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,  \
                               bool first) {                                                       \
        (void)corr, (void)ldc, (void)first;                                                        \
        r16_tile(y, ldy, x, ldx, gw, nb, rows < EVLM_R16 ? rows : EVLM_R16, EVLM_TYPE_##T, MR);    \
    }
/* clang-format off */
#define R16TILES(T)                                                                                \
    R16TILE(T, 1) R16TILE(T, 2)                                                                    \
    static const evlm__q8r16_tile r16tiles_##T[2][2] = {{r16_##T##_1, NULL}, {r16_##T##_2, NULL}};
/* clang-format on */
R16TILES(Q8_0)
R16TILES(Q4_0)
R16TILES(Q4_1)

/* R16: activation rows in chunks that stay in L2 (evlm__act_chunk_rows); per chunk each group of
 * 16 weight rows is streamed once from memory and met by tiles of 2 activation rows (later tiles
 * read it from L2) */
static const evlm__q8r16_shape k_r16_shape = {0, 2, false};

/* the int8 entries per block type (ref_impl.h); the R16 tiles take no zero point */
const evlm__q8_kern evlm__dotprod_q8[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = {qtiles_Q8_0, r16tiles_Q8_0, 0},
    [EVLM_TYPE_Q4_0] = {qtiles_Q4_0, r16tiles_Q4_0, 0},
    [EVLM_TYPE_Q4_1] = {qtiles_Q4_1, r16tiles_Q4_1, 0},
};

void evlm__neon_dotprod_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                               size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    if (wt == EVLM_TYPE_Q8_0_S24) { /* arm_s24.c */
        evlm__dotprod_gemm_q_s24(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (evlm_type_traits_of(wt)->kq) { /* arm_dotprod_kquant_r16.c; row-major: arm_neon_kquant.c */
        if (evlm_type_is_r16(wt))
            evlm__dotprod_gemm_q_kqr16(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        else
            evlm__neon_gemm_q_kq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (!evlm__q8_gemm(evlm__dotprod_q8, &k_qshape, &k_r16_shape, NULL, y, ldy, x, ldx, w, ldw, wt,
                       m, n0, n1, k))
        evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

#else
typedef int evlm__arm_dotprod_empty; /* ISO C forbids an empty translation unit */
#endif
