/*
 * x86_avx512_kquant.c - AVX-512 VNNI int8 gemm_q for the k-quants Q4_K / Q5_K / Q6_K
 * (x86_kquant_body.h with vpdpbusd on 256-bit lanes, AVX512VL), reached from
 * evlm__avx512vnni_gemm_q. Not here: the 32-element types (x86_avx512_quant.c), the AVX2
 * version (x86_avx2_kquant.c).
 */
#include "kernels/ref_impl.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__FMA__) && \
    defined(__F16C__)

#define KQ_DOT(acc, u8, s8) _mm256_dpbusd_epi32((acc), (u8), (s8))
#define KQ_NAME             evlm__avx512vnni_gemm_q_kq
#include "kernels/x86_kquant_body.h"

#else
typedef int evlm__x86_avx512_kquant_empty; /* ISO C forbids an empty translation unit */
#endif
