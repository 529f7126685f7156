/*
 * x86_avx512_kquant_r16.c - AVX-512 VNNI int8 gemm_q for the interleaved k-quants Q4_K_R16 /
 * Q5_K_R16 / Q6_K_R16 (kquant_r16_body.h with 16 rows in the 16 lanes of a 512-bit register,
 * vpdpbusd), reached from evlm__avx512vnni_gemm_q. Not here: the row-major k-quants
 * (x86_avx512_kquant.c), the AVX2 version (x86_avx2_kquant_r16.c, also the plain avx512 table's).
 */
#include "kernels/ref_impl.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__FMA__) && \
    defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define KR_ROWS 16
typedef __m512i kr_i;
typedef __m512 kr_f;

EVLM__INLINE kr_i kr_load(const char *p) {
    return _mm512_loadu_si512((const void *)p);
}
EVLM__INLINE kr_i kr_b4(const int8_t *p) { /* 4 activation bytes in every 32-bit lane */
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
EVLM__INLINE kr_i kr_dot(kr_i acc, kr_i u8, kr_i s8) {
    return _mm512_dpbusd_epi32(acc, u8, s8);
}
EVLM__INLINE kr_i kr_zero(void) {
    return _mm512_setzero_si512();
}
EVLM__INLINE kr_i kr_set8(int v) {
    return _mm512_set1_epi8((char)v);
}
EVLM__INLINE kr_i kr_set32(int v) {
    return _mm512_set1_epi32(v);
}
EVLM__INLINE kr_i kr_and(kr_i a, kr_i b) {
    return _mm512_and_si512(a, b);
}
EVLM__INLINE kr_i kr_or(kr_i a, kr_i b) {
    return _mm512_or_si512(a, b);
}
EVLM__INLINE kr_i kr_add(kr_i a, kr_i b) {
    return _mm512_add_epi32(a, b);
}
EVLM__INLINE kr_i kr_sub(kr_i a, kr_i b) {
    return _mm512_sub_epi32(a, b);
}
EVLM__INLINE kr_i kr_mul32(kr_i a, kr_i b) {
    return _mm512_mullo_epi32(a, b);
}
#define kr_srl16(v, n) _mm512_srli_epi16((v), (n))
#define kr_sll16(v, n) _mm512_slli_epi16((v), (n))
typedef __m128i kr_b; /* 16 bytes: one per row */
EVLM__INLINE kr_b kr_bload(const uint8_t *p) {
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}
EVLM__INLINE kr_b kr_band(kr_b a, int m) {
    return _mm_and_si128(a, _mm_set1_epi8((char)m));
}
EVLM__INLINE kr_b kr_bor(kr_b a, kr_b b) {
    return _mm_or_si128(a, b);
}
#define kr_bsrl16(v, n) _mm_srli_epi16((v), (n))
EVLM__INLINE kr_i kr_bwiden(kr_b b) { /* to 32-bit lanes */
    return _mm512_cvtepu8_epi32(b);
}
/* 16-bit lanes shifted left by n (right by -n when n < 0), logical */
EVLM__INLINE kr_i kr_shl16v(kr_i v, int n) {
    return n >= 0 ? _mm512_sll_epi16(v, _mm_cvtsi32_si128(n))
                  : _mm512_srl_epi16(v, _mm_cvtsi32_si128(-n));
}
EVLM__INLINE kr_i kr_s8(const int8_t *p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}
EVLM__INLINE kr_f kr_cvt(kr_i v) {
    return _mm512_cvtepi32_ps(v);
}
EVLM__INLINE kr_f kr_fzero(void) {
    return _mm512_setzero_ps();
}
EVLM__INLINE kr_f kr_fset(float v) {
    return _mm512_set1_ps(v);
}
EVLM__INLINE kr_f kr_fma(kr_f a, kr_f b, kr_f c) { /* a * b + c */
    return _mm512_fmadd_ps(a, b, c);
}
EVLM__INLINE kr_f kr_fnma(kr_f a, kr_f b, kr_f c) { /* c - a * b */
    return _mm512_fnmadd_ps(a, b, c);
}
EVLM__INLINE kr_f kr_h2f(const char *p) { /* 16 fp16 */
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
EVLM__INLINE void kr_store(float *y, kr_f v, int n) { /* lanes [0, n) */
    if (n == KR_ROWS)
        _mm512_storeu_ps(y, v);
    else
        _mm512_mask_storeu_ps(y, (__mmask16)((1u << n) - 1), v);
}

#define KR_NAME evlm__avx512vnni_gemm_q_kqr16
#include "kernels/kquant_r16_body.h"

#else
typedef int evlm__x86_avx512_kquant_r16_empty; /* ISO C forbids an empty translation unit */
#endif
