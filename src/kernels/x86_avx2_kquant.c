/*
 * x86_avx2_kquant.c - AVX2 int8 gemm_q for the k-quants Q4_K / Q5_K / Q6_K (x86_kquant_body.h
 * with vpmaddubsw + vpmaddwd), reached from evlm__avx2_gemm_q. Not here: the 32-element types
 * (x86_avx2_quant.c), the VNNI version (x86_avx512_kquant.c).
 */
#include "kernels/ref_impl.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define KQ_DOT(acc, u8, s8)                                                                        \
    _mm256_add_epi32((acc),                                                                        \
                     _mm256_madd_epi16(_mm256_maddubs_epi16((u8), (s8)), _mm256_set1_epi16(1)))
#define KQ_NAME evlm__avx2_gemm_q_kq
#include "kernels/x86_kquant_body.h"

#else
typedef int evlm__x86_avx2_kquant_empty; /* ISO C forbids an empty translation unit */
#endif
