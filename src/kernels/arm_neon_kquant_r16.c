/*
 * arm_neon_kquant_r16.c - base-NEON int8 gemm_q for the interleaved k-quants Q4_K_R16 /
 * Q5_K_R16 / Q6_K_R16 (kquant_r16_body.h with arm_kquant_r16.h's 4-row vectors; the 4-byte dot by
 * vmull_s8 and pairwise adds, no dotprod needed), reached from the neon table's gemm_q. Not here:
 * the SDOT version (arm_dotprod_kquant_r16.c), the row-major k-quants (arm_neon_kquant.c).
 */
#include "kernels/ref_impl.h"

#if defined(__aarch64__)

#include <arm_neon.h>

/* acc + the sums of 4 products of each 32-bit lane (|products| <= 63 * 128: exact in int16) */
static inline int32x4_t kr_dot_neon(int32x4_t acc, int8x16_t a, int8x16_t b) {
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    int32x4_t hi = vpaddlq_s16(vmull_high_s8(a, b));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
}
#define KR_DOT(acc, a, b) kr_dot_neon((acc), (a), (b))
#define KR_NAME           evlm__neon_gemm_q_kqr16
#include "kernels/arm_kquant_r16.h"
#include "kernels/kquant_r16_body.h"

#else
typedef int evlm__arm_neon_kquant_r16_empty; /* ISO C forbids an empty translation unit */
#endif
