/*
 * arm_i8mm.c - gemm_q for 16-row interleaved weights (Q8_0_R16 / Q4_0_R16 / Q4_1_R16,
 * quant/repack.h) with the int8 matrix multiply of ARMv8.6 (SMMLA, vmmlaq_s32: a 2x8 int8 block
 * times an 8x2 one into 2x2 int32 lanes): two activation rows against two weight rows per
 * instruction, for m >= 2 (prompt prefill, token trees).
 *
 * Compiled with -march=armv8.2-a+dotprod+i8mm for this file only (CMakeLists.txt: not
 * armv8.6-a, whose other features an i8mm core such as Neoverse V1 (v8.4) may lack); dispatch.c
 * puts evlm__neon_i8mm_gemm_q into the "neon" table only when the hwcaps report both dotprod and
 * i8mm. m = 1 (decode) and the row-major Q8_0 / Q4_0 / Q4_1 types go to arm_dotprod.c's gemm_q:
 * one activation row would fill only half of each SMMLA, and SDOT by lane needs no shuffles.
 * Bitwise equal to ref and to arm_dotprod.c on every R16 element (exact int32 block sums, then
 * the same per-row float steps without FMA), so an element has the same bits whichever m, n0,
 * n1 or kernel computed it. The tiles are walked by q8_walk.c. Empty on other architectures.
 * Not here: activation quantization (arm_neon.c), float gemm.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_MATMUL_INT8) && defined(__ARM_FEATURE_DOTPROD)

#include <arm_neon.h>
#include <string.h>

/* A tile is 2 activation rows (a, b) x one group of 16 weight rows over kb block columns.
 * SMMLA wants each operand as two 8-byte rows of the same 8 elements: for the activations the
 * 64-bit halves of a and b zipped (ZIP1 / ZIP2 .2D), for the weights two consecutive 64-byte
 * chunks c, c + 1 (elements 4c .. 4c+7): a 16-byte load of each holds rows 4q .. 4q+3, 4 bytes a
 * row, and ZIP1 / ZIP2 .4S of the two gives rows (4q, 4q+1) and (4q+2, 4q+3), 8 bytes a row.
 * acc32[j] then holds the block sums (a, 2j), (a, 2j+1), (b, 2j), (b, 2j+1); 8 ZIP .2D per block
 * column sort them back into rows 4q .. 4q+3 of a and of b, the lanes of arm_dotprod.c's
 * s[i][q], and the float step is that file's, operation for operation (ref's
 * acc + ((d * dx) * isum [+ m * s]), no FMA): an element's bits do not depend on the kernel.
 * Per block column: Q8_0 32 loads of 16 bytes, 32 ZIP .4S, 32 SMMLA (SDOT by lane: 64 SDOT for
 * the same 2 rows); Q4_0 / Q4_1 16 loads, 16 ZIP, 16 AND + 16 USHR, 32 SMMLA (nibbles 0..15 are
 * non-negative int8; Q4_0's -8 as isum - 8 * sum(x.qs), exact). Plus 4 ZIP for the activations
 * and 8 to sort the sums. An odd last activation row is paired with itself (one row stored).
 * GCC 12 -O3 makes the loops 152 instructions per block column (Q8_0; 2 accumulators kept on the
 * stack), 193 (Q4_0) and 192 (Q4_1), against 153 / 204 / 202 for arm_dotprod.c's 2-row tiles:
 * the SMMLAs halve the multiply instructions but the ZIPs that make their 8-byte rows out of the
 * 4-byte interleave take most of that back, so the gain depends on how a core issues SMMLA
 * against SDOT and ZIP (not measured: no ARM hardware here). A layout interleaved by 8 bytes for
 * this kernel would drop the 32 weight ZIPs (ggml's q4_0_4x8 does that); not in quant/repack.h. */

/* load_h16 (arm_q8.h) */
#include "kernels/arm_q8.h"

EVLM__INLINE int8x16_t zip1_64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
EVLM__INLINE int8x16_t zip2_64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
EVLM__INLINE int8x16_t zip1_32(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s32(vzip1q_s32(vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b)));
}
EVLM__INLINE int8x16_t zip2_32(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s32(vzip2q_s32(vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b)));
}

/* Q8_0 chunks c, c + 1 at p (elements 4c .. 4c+7) against xk, those elements of rows a and b */
#define Q8_PAIR(p, xk)                                                                             \
    do {                                                                                           \
        EVLM__UNROLL for (int q = 0; q < 4; q++) {                                                 \
            int8x16_t w0 = vld1q_s8((p) + 16 * q), w1 = vld1q_s8((p) + 64 + 16 * q);               \
            acc32[2 * q] = vmmlaq_s32(acc32[2 * q], xk, zip1_32(w0, w1));                          \
            acc32[2 * q + 1] = vmmlaq_s32(acc32[2 * q + 1], xk, zip2_32(w0, w1));                  \
        }                                                                                          \
    } while (0)

/* Q4 chunks c, c + 1 at p: the low nibbles are elements 4c .. 4c+7 (xlo), the high ones
 * 16 + 4c .. 16 + 4c+7 (xhi); zipped before the unpacking (half the ZIPs) */
#define Q4_PAIR(p, xlo, xhi)                                                                       \
    do {                                                                                           \
        EVLM__UNROLL for (int q = 0; q < 4; q++) {                                                 \
            int8x16_t u0 = vld1q_s8((p) + 16 * q), u1 = vld1q_s8((p) + 64 + 16 * q);               \
            int8x16_t z[2] = {zip1_32(u0, u1), zip2_32(u0, u1)};                                   \
            EVLM__UNROLL for (int h = 0; h < 2; h++) {                                             \
                uint8x16_t zu = vreinterpretq_u8_s8(z[h]);                                         \
                int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(zu, vdupq_n_u8(0x0f)));                \
                int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(zu, 4));                             \
                acc32[2 * q + h] = vmmlaq_s32(acc32[2 * q + h], xlo, lo);                          \
                acc32[2 * q + h] = vmmlaq_s32(acc32[2 * q + h], xhi, hi);                          \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* y[r] = a[r / 4] lane r % 4 for r < nv (rows >= n1 are not ours) */
EVLM__INLINE void store_row(float *y, const float32x4_t a[4], int nv) {
    float tmp[EVLM_R16], *dst = nv == EVLM_R16 ? y : tmp;
    EVLM__UNROLL for (int q = 0; q < 4; q++) vst1q_f32(dst + 4 * q, a[q]);
    if (dst == tmp) memcpy(y, tmp, sizeof(float) * (size_t)nv);
}

/* y rows a (and b when two) for rows r < nv of the group at gw (kb block columns); xb == xa
 * for an odd last row */
EVLM__INLINE void mm_tile(float *y, size_t ldy, const evlm_q8a *xa, const evlm_q8a *xb,
                          const char *gw, int kb, int nv, int two, evlm_type base) {
    const size_t col = EVLM_R16 * evlm_type_traits_of(base)->size;
    const size_t q0 = EVLM_R16 * (size_t)evlm_type_traits_of(base)->head;
    const int q4_1 = base == EVLM_TYPE_Q4_1;
    const evlm_q8a *xr[2] = {xa, xb};
    float32x4_t acc[2][4];
    EVLM__UNROLL for (int i = 0; i < 2; i++) EVLM__UNROLL for (int q = 0; q < 4; q++) acc[i][q] =
        vdupq_n_f32(0.0f);
    for (int b = 0; b < kb; b++) {
        const char *cd = gw + (size_t)b * col;
        const int8_t *qs = (const int8_t *)(cd + q0); /* past the 16 rows' fp16 fields */
        int8x16_t x0a = vld1q_s8(xa[b].qs), x1a = vld1q_s8(xa[b].qs + 16);
        int8x16_t x0b = vld1q_s8(xb[b].qs), x1b = vld1q_s8(xb[b].qs + 16);
        /* elements 0..7, 8..15, 16..23, 24..31 of rows a (low 8 bytes) and b (high 8) */
        int8x16_t xk0 = zip1_64(x0a, x0b), xk1 = zip2_64(x0a, x0b);
        int8x16_t xk2 = zip1_64(x1a, x1b), xk3 = zip2_64(x1a, x1b);
        /* Q4_0's -8 as 8 * sum(x.qs) per row, taken now so x0a .. x1b die before the SMMLAs */
        int32_t ca = 0, cb = 0;
        if (base == EVLM_TYPE_Q4_0) {
            ca = 8 * (vaddlvq_s8(x0a) + vaddlvq_s8(x1a));
            cb = 8 * (vaddlvq_s8(x0b) + vaddlvq_s8(x1b));
        }
        int32x4_t acc32[8];
        EVLM__UNROLL for (int j = 0; j < 8; j++) acc32[j] = vdupq_n_s32(0);
        if (base == EVLM_TYPE_Q8_0) {
            Q8_PAIR(qs, xk0);
            Q8_PAIR(qs + 128, xk1);
            Q8_PAIR(qs + 256, xk2);
            Q8_PAIR(qs + 384, xk3);
        } else {
            Q4_PAIR(qs, xk0, xk2);
            Q4_PAIR(qs + 128, xk1, xk3);
        }
        int32x4_t s[2][4];
        EVLM__UNROLL for (int q = 0; q < 4; q++) {
            int64x2_t lo = vreinterpretq_s64_s32(acc32[2 * q]);
            int64x2_t hi = vreinterpretq_s64_s32(acc32[2 * q + 1]);
            s[0][q] = vreinterpretq_s32_s64(vzip1q_s64(lo, hi));
            s[1][q] = vreinterpretq_s32_s64(vzip2q_s64(lo, hi));
        }
        if (base == EVLM_TYPE_Q4_0) {
            EVLM__UNROLL for (int q = 0; q < 4; q++) s[0][q] = vsubq_s32(s[0][q], vdupq_n_s32(ca));
            EVLM__UNROLL for (int q = 0; q < 4; q++) s[1][q] = vsubq_s32(s[1][q], vdupq_n_s32(cb));
        }
        float32x4_t dw[4], dm[4];
        load_h16(cd, dw);
        if (q4_1) load_h16(cd + 32, dm);
        EVLM__UNROLL for (int i = 0; i < 2; i++) {
            const evlm_q8a *xi = xr[i] + b;
            EVLM__UNROLL for (int q = 0; q < 4; q++) {
                float32x4_t t = vmulq_f32(vmulq_n_f32(dw[q], xi->d), vcvtq_f32_s32(s[i][q]));
                if (q4_1) t = vaddq_f32(t, vmulq_n_f32(dm[q], xi->s));
                acc[i][q] = vaddq_f32(acc[i][q], t);
            }
        }
    }
    store_row(y, acc[0], nv);
    if (two) store_row(y + ldy, acc[1], nv);
}

/* evlm__q8r16_tile of 1 activation row (paired with itself, one row stored) or 2 (all blocks in
 * one pass: first is always true) */
#define MMTILE(T)                                                                                  \
    static void mm_##T##_1(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                    \
                           const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,      \
                           bool first) {                                                           \
        (void)ldx, (void)corr, (void)ldc, (void)first;                                             \
        mm_tile(y, ldy, x, x, gw, nb, rows < EVLM_R16 ? rows : EVLM_R16, 0, EVLM_TYPE_##T);        \
    }                                                                                              \
    static void mm_##T##_2(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                    \
                           const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,      \
                           bool first) {                                                           \
        (void)corr, (void)ldc, (void)first;                                                        \
        mm_tile(y, ldy, x, x + ldx, gw, nb, rows < EVLM_R16 ? rows : EVLM_R16, 1, EVLM_TYPE_##T);  \
    }                                                                                              \
    static const evlm__q8r16_tile mm_tiles_##T[2][2] = {{mm_##T##_1, NULL}, {mm_##T##_2, NULL}};
MMTILE(Q8_0)
MMTILE(Q4_0)
MMTILE(Q4_1)

/* activation rows in chunks that stay in L2 (evlm__act_chunk_rows, as arm_dotprod.c); per chunk
 * each group of 16 weight rows is streamed once from memory and met by pairs of activation rows */
static const evlm__q8r16_shape k_r16_shape = {0, 2, false};

/* the int8 entries per block type (ref_impl.h): R16 forms only, no zero point */
const evlm__q8_kern evlm__i8mm_q8[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = {NULL, mm_tiles_Q8_0, 0},
    [EVLM_TYPE_Q4_0] = {NULL, mm_tiles_Q4_0, 0},
    [EVLM_TYPE_Q4_1] = {NULL, mm_tiles_Q4_1, 0},
};

void evlm__neon_i8mm_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                            size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    /* the row-major types (no entry here) and m = 1 go to arm_dotprod.c */
    if (m < 2 || !evlm__q8_gemm(evlm__i8mm_q8, NULL, &k_r16_shape, NULL, y, ldy, x, ldx, w, ldw, wt,
                                m, n0, n1, k))
        evlm__neon_dotprod_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

#else
typedef int evlm__arm_i8mm_empty; /* ISO C forbids an empty translation unit */
#endif
