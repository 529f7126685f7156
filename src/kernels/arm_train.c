/*
 * arm_train.c - the "neon" table's training kernels (kernels.h, "training"): sgemm as
 * sgemm_walk.h's packed walk with an 8 x 12 register tile (24 q-register accumulators, three B
 * vectors, A packed, as two vectors used by lane), and 4-lane versions of rmsnorm_bwd,
 * layernorm_bwd, swiglu_bwd, gelu_tanh_bwd and exp_sum (a vector exp as arm_neon.c's exp4);
 * tails of fewer than 4 elements in scalar code (the same formulas). Checked under qemu only:
 * no timing on real ARM cores yet.
 *
 * NEON is part of the AArch64 base ISA: no flags; on other architectures this file is empty.
 * Not bit-exact with `ref`: sums are blocked (sgemm: k in blocks of SG_KC, FMA) or 4 lanes
 * wide, exp is a polynomial; test_train_ops bounds the differences. Not here: threading.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <stdbool.h>

/* ---- sgemm: 8 x 12 micro-kernel ------------------------------------------------------------ */

#define FMA_ROW(r, a, l)                                                                           \
    t[r][0] = vfmaq_laneq_f32(t[r][0], b0, a, l);                                                  \
    t[r][1] = vfmaq_laneq_f32(t[r][1], b1, a, l);                                                  \
    t[r][2] = vfmaq_laneq_f32(t[r][2], b2, a, l)

EVLM__INLINE void ukr_8x12(int kc, const float *ap, const float *bp, float *c, size_t ldc,
                           bool add) {
    float32x4_t t[8][3];
    EVLM__UNROLL
    for (int r = 0; r < 8; r++) t[r][0] = t[r][1] = t[r][2] = vdupq_n_f32(0.0f);
    for (int p = 0; p < kc; p++, ap += 8, bp += 12) {
        float32x4_t b0 = vld1q_f32(bp), b1 = vld1q_f32(bp + 4), b2 = vld1q_f32(bp + 8);
        float32x4_t a0 = vld1q_f32(ap), a1 = vld1q_f32(ap + 4);
        FMA_ROW(0, a0, 0);
        FMA_ROW(1, a0, 1);
        FMA_ROW(2, a0, 2);
        FMA_ROW(3, a0, 3);
        FMA_ROW(4, a1, 0);
        FMA_ROW(5, a1, 1);
        FMA_ROW(6, a1, 2);
        FMA_ROW(7, a1, 3);
    }
    EVLM__UNROLL
    for (int r = 0; r < 8; r++) {
        float *cr = c + (size_t)r * ldc;
        EVLM__UNROLL
        for (int j = 0; j < 3; j++) {
            float32x4_t v = t[r][j];
            if (add) v = vaddq_f32(vld1q_f32(cr + 4 * j), v);
            vst1q_f32(cr + 4 * j, v);
        }
    }
}

#define SG_MR   8
#define SG_NR   12
#define SG_KC   256
#define SG_MC   192
#define SG_NC   768
#define SG_UKR  ukr_8x12
#define SG_NAME evlm__neon_sgemm
#include "kernels/sgemm_walk.h"

/* ---- element-wise backward ------------------------------------------------------------------ */

EVLM__INLINE float32x4_t exp4(float32x4_t x) {
    uint32x4_t keep = vcgeq_f32(x, vdupq_n_f32(-87.3f));
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.0f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), keep));
}

/* 1 / (1 + e^(-v)) */
EVLM__INLINE float32x4_t sigmoid4(float32x4_t v) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    return vdivq_f32(one, vaddq_f32(one, exp4(vnegq_f32(v))));
}

void evlm__neon_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w, float rstd,
                            int n) {
    float32x4_t s = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        s = vfmaq_f32(s, vmulq_f32(vld1q_f32(dy + i), vld1q_f32(w + i)), vld1q_f32(x + i));
    float dot = vaddvq_f32(s);
    for (int j = i; j < n; j++) dot += dy[j] * w[j] * x[j];
    float c = rstd * rstd * dot / (float)n;
    float32x4_t vr = vdupq_n_f32(rstd), vc = vdupq_n_f32(c);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t g = vmulq_f32(vld1q_f32(dy + i), vld1q_f32(w + i));
        float32x4_t d = vfmsq_f32(g, vld1q_f32(x + i), vc);
        vst1q_f32(dx + i, vfmaq_f32(vld1q_f32(dx + i), vr, d));
    }
    for (; i < n; i++) dx[i] += rstd * (dy[i] * w[i] - x[i] * c);
}

void evlm__neon_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w,
                              float mean, float rstd, int n) {
    float32x4_t sg = vdupq_n_f32(0.0f), sgx = sg, vm = vdupq_n_f32(mean), vr = vdupq_n_f32(rstd);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = vmulq_f32(vld1q_f32(dy + i), vld1q_f32(w + i));
        float32x4_t xh = vmulq_f32(vsubq_f32(vld1q_f32(x + i), vm), vr);
        sg = vaddq_f32(sg, g);
        sgx = vfmaq_f32(sgx, g, xh);
    }
    float a = vaddvq_f32(sg), b = vaddvq_f32(sgx);
    for (int j = i; j < n; j++) {
        float g = dy[j] * w[j];
        a += g;
        b += g * (x[j] - mean) * rstd;
    }
    a /= (float)n;
    b /= (float)n;
    float32x4_t va = vdupq_n_f32(a), vb = vdupq_n_f32(b);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t g = vmulq_f32(vld1q_f32(dy + i), vld1q_f32(w + i));
        float32x4_t xh = vmulq_f32(vsubq_f32(vld1q_f32(x + i), vm), vr);
        float32x4_t d = vfmsq_f32(vsubq_f32(g, va), xh, vb);
        vst1q_f32(dx + i, vfmaq_f32(vld1q_f32(dx + i), vr, d));
    }
    for (; i < n; i++) dx[i] += rstd * (dy[i] * w[i] - a - (x[i] - mean) * rstd * b);
}

void evlm__neon_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                           int n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t vg = vld1q_f32(g + i), d = vld1q_f32(dh + i), s = sigmoid4(vg);
        if (du) vst1q_f32(du + i, vmulq_f32(d, vmulq_f32(vg, s)));
        if (dg) {
            float32x4_t f = vfmaq_f32(one, vg, vsubq_f32(one, s));
            float32x4_t v = vmulq_f32(vmulq_f32(d, vld1q_f32(u + i)), s);
            vst1q_f32(dg + i, vmulq_f32(v, f));
        }
    }
    if (i < n)
        evlm__ref_swiglu_bwd(dg ? dg + i : NULL, du ? du + i : NULL, dh + i, g + i, u + i, n - i);
}

/* d/dx of 0.5 x (1 + tanh(u)), u = k (x + c x^3): with s = sigmoid(2u) (= 0.5 (1 + tanh u)),
 * s + 2 x s (1 - s) k (1 + 3 c x^2): no cancellation for large |x| */
void evlm__neon_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int n) {
    const float32x4_t k = vdupq_n_f32(0.7978845608028654f), c = vdupq_n_f32(0.044715f);
    const float32x4_t c3 = vdupq_n_f32(3.0f * 0.044715f), one = vdupq_n_f32(1.0f);
    const float32x4_t two = vdupq_n_f32(2.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i), v2 = vmulq_f32(v, v);
        float32x4_t u = vmulq_f32(k, vfmaq_f32(v, vmulq_f32(c, v), v2));
        float32x4_t s = sigmoid4(vmulq_f32(two, u));
        float32x4_t du = vmulq_f32(k, vfmaq_f32(one, c3, v2));
        float32x4_t t = vmulq_f32(vmulq_f32(two, v), vmulq_f32(s, vsubq_f32(one, s)));
        float32x4_t d = vfmaq_f32(s, t, du);
        vst1q_f32(dx + i, vmulq_f32(d, vld1q_f32(dy + i)));
    }
    if (i < n) evlm__ref_gelu_tanh_bwd(dx + i, dy + i, x + i, n - i);
}

float evlm__neon_exp_sum(float *x, int n, float mx) {
    const float32x4_t vm = vdupq_n_f32(mx);
    float32x4_t s = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vm)); /* 0 below -87.3 */
        s = vaddq_f32(s, e);
        vst1q_f32(x + i, e);
    }
    return vaddvq_f32(s) + (i < n ? evlm__ref_exp_sum(x + i, n - i, mx) : 0.0f);
}

#else
typedef int evlm__arm_train_empty; /* ISO C forbids an empty translation unit */
#endif
