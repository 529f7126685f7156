/*
 * x86_avx2_kquant_r16.c - AVX2 int8 gemm_q for the interleaved k-quants Q4_K_R16 / Q5_K_R16 /
 * Q6_K_R16 (kquant_r16_body.h with each group as two 8-row halves, vpmaddubsw + vpmaddwd), reached
 * from evlm__avx2_gemm_q (the avx2 and plain avx512 tables). Not here: the row-major k-quants
 * (x86_avx2_kquant.c), the VNNI version (x86_avx512_kquant_r16.c).
 */
#include "kernels/ref_impl.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define KR_ROWS 8
typedef __m256i kr_i;
typedef __m256 kr_f;

EVLM__INLINE kr_i kr_load(const char *p) {
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}
EVLM__INLINE kr_i kr_b4(const int8_t *p) { /* 4 activation bytes in every 32-bit lane */
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
/* the products of unsigned weights (<= 63) and int8 activations fit int16 pairs (2 * 63 * 128) */
EVLM__INLINE kr_i kr_dot(kr_i acc, kr_i u8, kr_i s8) {
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
}
EVLM__INLINE kr_i kr_zero(void) {
    return _mm256_setzero_si256();
}
EVLM__INLINE kr_i kr_set8(int v) {
    return _mm256_set1_epi8((char)v);
}
EVLM__INLINE kr_i kr_set32(int v) {
    return _mm256_set1_epi32(v);
}
EVLM__INLINE kr_i kr_and(kr_i a, kr_i b) {
    return _mm256_and_si256(a, b);
}
EVLM__INLINE kr_i kr_or(kr_i a, kr_i b) {
    return _mm256_or_si256(a, b);
}
EVLM__INLINE kr_i kr_add(kr_i a, kr_i b) {
    return _mm256_add_epi32(a, b);
}
EVLM__INLINE kr_i kr_sub(kr_i a, kr_i b) {
    return _mm256_sub_epi32(a, b);
}
EVLM__INLINE kr_i kr_mul32(kr_i a, kr_i b) {
    return _mm256_mullo_epi32(a, b);
}
#define kr_srl16(v, n) _mm256_srli_epi16((v), (n))
#define kr_sll16(v, n) _mm256_slli_epi16((v), (n))
typedef __m128i kr_b; /* the low 8 bytes: one per row */
EVLM__INLINE kr_b kr_bload(const uint8_t *p) {
    return _mm_loadl_epi64((const __m128i *)(const void *)p);
}
EVLM__INLINE kr_b kr_band(kr_b a, int m) {
    return _mm_and_si128(a, _mm_set1_epi8((char)m));
}
EVLM__INLINE kr_b kr_bor(kr_b a, kr_b b) {
    return _mm_or_si128(a, b);
}
#define kr_bsrl16(v, n) _mm_srli_epi16((v), (n))
EVLM__INLINE kr_i kr_bwiden(kr_b b) { /* to 32-bit lanes */
    return _mm256_cvtepu8_epi32(b);
}
/* 16-bit lanes shifted left by n (right by -n when n < 0), logical */
EVLM__INLINE kr_i kr_shl16v(kr_i v, int n) {
    return n >= 0 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(n))
                  : _mm256_srl_epi16(v, _mm_cvtsi32_si128(-n));
}
EVLM__INLINE kr_i kr_s8(const int8_t *p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}
EVLM__INLINE kr_f kr_cvt(kr_i v) {
    return _mm256_cvtepi32_ps(v);
}
EVLM__INLINE kr_f kr_fzero(void) {
    return _mm256_setzero_ps();
}
EVLM__INLINE kr_f kr_fset(float v) {
    return _mm256_set1_ps(v);
}
EVLM__INLINE kr_f kr_fma(kr_f a, kr_f b, kr_f c) { /* a * b + c */
    return _mm256_fmadd_ps(a, b, c);
}
EVLM__INLINE kr_f kr_fnma(kr_f a, kr_f b, kr_f c) { /* c - a * b */
    return _mm256_fnmadd_ps(a, b, c);
}
EVLM__INLINE kr_f kr_h2f(const char *p) { /* 8 fp16 */
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}
EVLM__INLINE void kr_store(float *y, kr_f v, int n) { /* lanes [0, n) */
    if (n == KR_ROWS) {
        _mm256_storeu_ps(y, v);
        return;
    }
    float t[KR_ROWS];
    _mm256_storeu_ps(t, v);
    memcpy(y, t, sizeof(float) * (size_t)n);
}

#define KR_NAME evlm__avx2_gemm_q_kqr16
#include "kernels/kquant_r16_body.h"

#else
typedef int evlm__x86_avx2_kquant_r16_empty; /* ISO C forbids an empty translation unit */
#endif
