/*
 * arm_neon_kquant.c - base-NEON int8 gemm_q for the k-quants Q4_K / Q5_K / Q6_K against
 * evlm_q8a activations (vmull_s8 + vpadalq_s16: no dotprod needed), reached from the neon and
 * dotprod tables' gemm_q. Each 32 weights meet one activation block: an exact int32 sum of
 * products, scaled in float by d * scale * x.d (Q6_K: per 16), minimums through x.s; the same
 * products as ref, summed in another order.
 * Not here: the 32-element types (arm_neon.c, arm_dotprod.c), an SDOT version.
 */
#include "kernels/ref_impl.h"

#if defined(__aarch64__)

#include "quant/kquants.h"

#include <arm_neon.h>

static inline float kq_h2f(uint16_t h) {
    return evlm_f16_to_f32(h);
}

/* sum of the 16 products of two int8 vectors (|products| <= 63 * 128: exact in int16 pairs) */
static inline int32_t dot16(int8x16_t a, int8x16_t b) {
    int32x4_t acc = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    acc = vpadalq_s16(acc, vmull_high_s8(a, b));
    return vaddvq_s32(acc);
}

static float dot_q45(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, float d,
                     float dmin, const evlm_q8a *x) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), one = vdupq_n_u8(1);
    float acc = 0.0f;
    for (int g = 0; g < 4; g++) {
        int s0, m0, s1, m1;
        evlm_kq_scale_min(scales, 2 * g, &s0, &m0);
        evlm_kq_scale_min(scales, 2 * g + 1, &s1, &m1);
        const evlm_q8a *a0 = x + 2 * g, *a1 = a0 + 1;
        int32_t i0 = 0, i1 = 0;
        for (int h = 0; h < 2; h++) {
            uint8x16_t q = vld1q_u8(qs + 32 * g + 16 * h);
            uint8x16_t lo = vandq_u8(q, m4), hi = vshrq_n_u8(q, 4);
            if (qh) {
                uint8x16_t b = vld1q_u8(qh + 16 * h);
                lo = vorrq_u8(
                    lo, vshlq_n_u8(vandq_u8(vshlq_u8(b, vdupq_n_s8((int8_t)(-2 * g))), one), 4));
                hi = vorrq_u8(
                    hi,
                    vshlq_n_u8(vandq_u8(vshlq_u8(b, vdupq_n_s8((int8_t)(-2 * g - 1))), one), 4));
            }
            i0 += dot16(vreinterpretq_s8_u8(lo), vld1q_s8(a0->qs + 16 * h));
            i1 += dot16(vreinterpretq_s8_u8(hi), vld1q_s8(a1->qs + 16 * h));
        }
        acc += d * (float)s0 * a0->d * (float)i0 - dmin * (float)m0 * a0->s;
        acc += d * (float)s1 * a1->d * (float)i1 - dmin * (float)m1 * a1->s;
    }
    return acc;
}

static float dot_q6(const evlm_block_q6_K *b, const evlm_q8a *x) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m2 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    const float d = kq_h2f(b->d);
    float acc = 0.0f;
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++) {
            const int j = 4 * h + c; /* activation block j: 16-element sub-blocks 2j, 2j + 1 */
            const evlm_q8a *a = x + j;
            int32_t is[2];
            for (int s = 0; s < 2; s++) {
                uint8x16_t l = vld1q_u8(b->ql + 64 * h + 32 * (c & 1) + 16 * s);
                uint8x16_t lo = c >= 2 ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
                uint8x16_t hb = vandq_u8(
                    vshlq_u8(vld1q_u8(b->qh + 32 * h + 16 * s), vdupq_n_s8((int8_t)(-2 * c))), m2);
                int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hb, 4))), k32);
                is[s] = dot16(q, vld1q_s8(a->qs + 16 * s));
            }
            acc += d * a->d * (float)(b->scales[2 * j] * is[0] + b->scales[2 * j + 1] * is[1]);
        }
    return acc;
}

void evlm__neon_gemm_q_kq(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                          size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    const int nb = k / EVLM_QK_K;
    for (int n = n0; n < n1; n++) {
        const char *row = (const char *)w + (size_t)n * ldw;
        for (int i = 0; i < m; i++) {
            const evlm_q8a *xi = x + (size_t)i * ldx;
            float v = 0.0f;
            for (int s = 0; s < nb; s++, xi += 8) {
                if (wt == EVLM_TYPE_Q4_K) {
                    const evlm_block_q4_K *b = (const evlm_block_q4_K *)(const void *)row + s;
                    v += dot_q45(b->qs, NULL, b->scales, kq_h2f(b->d), kq_h2f(b->dmin), xi);
                } else if (wt == EVLM_TYPE_Q5_K) {
                    const evlm_block_q5_K *b = (const evlm_block_q5_K *)(const void *)row + s;
                    v += dot_q45(b->qs, b->qh, b->scales, kq_h2f(b->d), kq_h2f(b->dmin), xi);
                } else {
                    v += dot_q6((const evlm_block_q6_K *)(const void *)row + s, xi);
                }
            }
            y[(size_t)i * ldy + n] = v;
        }
    }
}

#else
typedef int evlm__arm_neon_kquant_empty; /* ISO C forbids an empty translation unit */
#endif
