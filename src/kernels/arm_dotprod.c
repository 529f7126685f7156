/*
 * arm_dotprod.c - gemm_q for Q8_0 / Q4_0 / Q4_1 weights with the ARMv8.2 dot product (SDOT,
 * vdotq_s32): 4 int8 products summed into each int32 lane in one instruction.
 *
 * Compiled with -march=armv8.2-a+dotprod for this file only (CMakeLists.txt); dispatch.c puts
 * evlm__neon_dotprod_gemm_q into the "neon" table only when getauxval(AT_HWCAP) has
 * HWCAP_ASIMDDP, so the rest of the library stays ARMv8.0. Empty on other architectures.
 * Same tiles, block scaling and float order as arm_neon.c's vmull_s8 version (block sums are
 * exact int32 either way; only which products share a lane differs, hence the float rounding).
 * Q4_0's nibbles are made signed (q - 8) before the dot; Q4_1's stay 0..15, which SDOT reads as
 * non-negative int8. Not here: i8mm (SMMLA), activation quantization (arm_neon.c).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)

#include <arm_neon.h>
#include <string.h>

#define EVLM__INLINE static inline __attribute__((always_inline))

EVLM__INLINE float h2f(const char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return evlm_f16_to_f32(h);
}

/* MR activation rows x NR weight rows over kb blocks (see arm_neon.c's qtile) */
EVLM__INLINE void qtile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                        size_t ldw, int kb, evlm_type wt, int MR, int NR) {
    size_t bs = evlm_type_size(wt);
    float32x4_t acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc[i][r] = vdupq_n_f32(0.0f);
    for (int b = 0; b < kb; b++) {
        int8x16_t w0[4], w1[4]; /* elements 0..15 and 16..31 of each weight block */
        float dw[4], dm[4];
        for (int r = 0; r < NR; r++) {
            const char *blk = w + (size_t)r * ldw + (size_t)b * bs;
            if (wt == EVLM_TYPE_Q8_0) {
                w0[r] = vld1q_s8((const int8_t *)(blk + 2));
                w1[r] = vld1q_s8((const int8_t *)(blk + 18));
            } else {
                uint8x16_t p = vld1q_u8((const uint8_t *)blk + (wt == EVLM_TYPE_Q4_0 ? 2 : 4));
                w0[r] = vreinterpretq_s8_u8(vandq_u8(p, vdupq_n_u8(0x0f)));
                w1[r] = vreinterpretq_s8_u8(vshrq_n_u8(p, 4));
                if (wt == EVLM_TYPE_Q4_0) {
                    w0[r] = vsubq_s8(w0[r], vdupq_n_s8(8));
                    w1[r] = vsubq_s8(w1[r], vdupq_n_s8(8));
                }
            }
            dw[r] = h2f(blk);
            dm[r] = wt == EVLM_TYPE_Q4_1 ? h2f(blk + 2) : 0.0f;
        }
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            int8x16_t x0 = vld1q_s8(xb->qs), x1 = vld1q_s8(xb->qs + 16);
            for (int r = 0; r < NR; r++) {
                int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
                acc[i][r] = vfmaq_n_f32(acc[i][r], vcvtq_f32_s32(p), dw[r] * xb->d);
                if (wt == EVLM_TYPE_Q4_1)
                    acc[i][r] = vaddq_f32(acc[i][r], vdupq_n_f32(dm[r] * (xb->s * 0.25f)));
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) y[(size_t)i * ldy + r] = vaddvq_f32(acc[i][r]);
}

#define QTILE(T, MR, NR)                                                                           \
    static void qtile_##T##_##MR##x##NR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,       \
                                        const char *w, size_t ldw, int kb) {                       \
        qtile(y, ldy, x, ldx, w, ldw, kb, EVLM_TYPE_##T, MR, NR);                                  \
    }
/* clang-format off */
#define QTILES(T)                                                                                  \
    QTILE(T, 1, 1) QTILE(T, 2, 1) QTILE(T, 3, 1) QTILE(T, 4, 1)                                    \
    QTILE(T, 1, 2) QTILE(T, 2, 2) QTILE(T, 3, 2) QTILE(T, 4, 2) QTILE(T, 1, 4)                     \
    static const evlm__qtile_fn qtiles_##T[3][4] = {                                               \
        {qtile_##T##_1x1, qtile_##T##_2x1, qtile_##T##_3x1, qtile_##T##_4x1},                      \
        {qtile_##T##_1x2, qtile_##T##_2x2, qtile_##T##_3x2, qtile_##T##_4x2},                      \
        {qtile_##T##_1x4, NULL, NULL, NULL}};
/* clang-format on */
QTILES(Q8_0)
QTILES(Q4_0)
QTILES(Q4_1)

void evlm__neon_dotprod_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                               size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    const evlm__qtile_fn(*tiles)[4];
    switch (wt) {
    case EVLM_TYPE_Q8_0:
        tiles = qtiles_Q8_0;
        break;
    case EVLM_TYPE_Q4_0:
        tiles = qtiles_Q4_0;
        break;
    case EVLM_TYPE_Q4_1:
        tiles = qtiles_Q4_1;
        break;
    default:
        evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    evlm__neon_gemm_q_tiles(tiles, y, ldy, x, ldx, w, ldw, m, n0, n1, k);
}

#else
typedef int evlm__arm_dotprod_empty; /* ISO C forbids an empty translation unit */
#endif
