/*
 * arm_dotprod_kquant_r16.c - SDOT int8 gemm_q for the interleaved k-quants Q4_K_R16 / Q5_K_R16 /
 * Q6_K_R16 (kquant_r16_body.h with arm_kquant_r16.h's 4-row vectors), compiled with
 * -march=armv8.2-a+dotprod and reached from arm_dotprod.c's gemm_q. Not here: the plain NEON
 * version (arm_neon_kquant_r16.c).
 */
#include "kernels/ref_impl.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)

#include <arm_neon.h>

#define KR_DOT(acc, a, b) vdotq_s32((acc), (a), (b))
#define KR_NAME           evlm__dotprod_gemm_q_kqr16
#include "kernels/arm_kquant_r16.h"
#include "kernels/kquant_r16_body.h"

#else
typedef int evlm__arm_dotprod_kquant_r16_empty; /* ISO C forbids an empty translation unit */
#endif
