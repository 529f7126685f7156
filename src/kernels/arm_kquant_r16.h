/*
 * arm_kquant_r16.h - the AArch64 vector helpers of kquant_r16_body.h (4 rows in the 4 lanes of
 * a 128-bit register), shared by arm_neon_kquant_r16.c (plain NEON: KR_DOT by vmull_s8 and
 * pairwise adds) and arm_dotprod_kquant_r16.c (SDOT), which define KR_DOT and KR_NAME, include
 * <arm_neon.h> and then this header. Not here: the tiles (kquant_r16_body.h).
 */
#include <string.h>

#define KR_ROWS 4
typedef int32x4_t kr_i; /* 4 rows' 32-bit lanes, read as 16 bytes where the body works on bytes */
typedef float32x4_t kr_f;

EVLM__INLINE kr_i kr_load(const char *p) {
    return vreinterpretq_s32_u8(vld1q_u8((const uint8_t *)p));
}
EVLM__INLINE kr_i kr_b4(const int8_t *p) { /* 4 activation bytes in every 32-bit lane */
    int32_t v;
    memcpy(&v, p, 4);
    return vdupq_n_s32(v);
}
EVLM__INLINE kr_i kr_dot(kr_i acc, kr_i u8, kr_i s8) { /* codes <= 63: signed bytes as they are */
    return KR_DOT(acc, vreinterpretq_s8_s32(u8), vreinterpretq_s8_s32(s8));
}
EVLM__INLINE kr_i kr_zero(void) {
    return vdupq_n_s32(0);
}
EVLM__INLINE kr_i kr_set8(int v) {
    return vreinterpretq_s32_u8(vdupq_n_u8((uint8_t)v));
}
EVLM__INLINE kr_i kr_set32(int v) {
    return vdupq_n_s32(v);
}
EVLM__INLINE kr_i kr_and(kr_i a, kr_i b) {
    return vandq_s32(a, b);
}
EVLM__INLINE kr_i kr_or(kr_i a, kr_i b) {
    return vorrq_s32(a, b);
}
EVLM__INLINE kr_i kr_add(kr_i a, kr_i b) {
    return vaddq_s32(a, b);
}
EVLM__INLINE kr_i kr_sub(kr_i a, kr_i b) {
    return vsubq_s32(a, b);
}
EVLM__INLINE kr_i kr_mul32(kr_i a, kr_i b) {
    return vmulq_s32(a, b);
}
#define kr_srl16(v, n) vreinterpretq_s32_u16(vshrq_n_u16(vreinterpretq_u16_s32(v), (n)))
#define kr_sll16(v, n) vreinterpretq_s32_u16(vshlq_n_u16(vreinterpretq_u16_s32(v), (n)))
typedef uint8x8_t kr_b; /* the low 4 bytes: one per row */
EVLM__INLINE kr_b kr_bload(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vreinterpret_u8_u32(vdup_n_u32(v));
}
EVLM__INLINE kr_b kr_band(kr_b a, int m) {
    return vand_u8(a, vdup_n_u8((uint8_t)m));
}
EVLM__INLINE kr_b kr_bor(kr_b a, kr_b b) {
    return vorr_u8(a, b);
}
#define kr_bsrl16(v, n) vreinterpret_u8_u16(vshr_n_u16(vreinterpret_u16_u8(v), (n)))
EVLM__INLINE kr_i kr_bwiden(kr_b b) { /* to 32-bit lanes */
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(b))));
}
/* 16-bit lanes shifted left by n (right by -n when n < 0), logical */
EVLM__INLINE kr_i kr_shl16v(kr_i v, int n) {
    return vreinterpretq_s32_u16(vshlq_u16(vreinterpretq_u16_s32(v), vdupq_n_s16((int16_t)n)));
}
EVLM__INLINE kr_i kr_s8(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    int16x8_t h = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(v)));
    return vmovl_s16(vget_low_s16(h));
}
EVLM__INLINE kr_f kr_cvt(kr_i v) {
    return vcvtq_f32_s32(v);
}
EVLM__INLINE kr_f kr_fzero(void) {
    return vdupq_n_f32(0.0f);
}
EVLM__INLINE kr_f kr_fset(float v) {
    return vdupq_n_f32(v);
}
EVLM__INLINE kr_f kr_fma(kr_f a, kr_f b, kr_f c) { /* a * b + c */
    return vfmaq_f32(c, a, b);
}
EVLM__INLINE kr_f kr_fnma(kr_f a, kr_f b, kr_f c) { /* c - a * b */
    return vfmsq_f32(c, a, b);
}
EVLM__INLINE kr_f kr_h2f(const char *p) { /* 4 fp16 (exact) */
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)p)));
}
EVLM__INLINE void kr_store(float *y, kr_f v, int n) { /* lanes [0, n) */
    if (n == KR_ROWS) {
        vst1q_f32(y, v);
        return;
    }
    float t[KR_ROWS];
    vst1q_f32(t, v);
    memcpy(y, t, sizeof(float) * (size_t)n);
}
