/*
 * arm_neon.c - AArch64 NEON kernels (the "neon" table): gemm for F32 / F16 / BF16 weights and,
 * dequantizing, for Q8_0 / Q4_0 / Q4_1; rmsnorm, rope, attn_row, layernorm's sums,
 * quantize_act, and an int8 gemm_q with vmull_s8 for CPUs without dotprod. silu_mul,
 * gelu_tanh and attn_tile are the scalar `ref` kernels (their expf / tanhf stay libm's; a
 * flash-style attn_tile with a vector exp, as the x86 tables have, is still to do).
 *
 * NEON is part of the AArch64 base ISA, so this file needs no flags; on other architectures it
 * is empty. dispatch.c swaps in gemm_q from arm_dotprod.c (SDOT) when the CPU reports dotprod.
 * Not bit-exact with `ref` where sums are reordered: every dot product of gemm / attn_row /
 * rmsnorm sums in 4 lanes with FMA (one accumulator per output element, so an element's value
 * does not depend on m, the row range or the tile it falls in: token trees stay lossless).
 * Bit-exact with `ref`: rope, quantize_act, the dequantized weight values, the per-element
 * scaling steps of rmsnorm / layernorm (no FMA there; the file is compiled with ISO C's
 * fp-contract off like ref.c).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define EVLM__INLINE static inline __attribute__((always_inline))

/* ---- float gemm ------------------------------------------------------------------------------ */

/* 4 weights from element j of a row of type wt, as float (exact for all three types). */
EVLM__INLINE float32x4_t load4(const void *w, int j, evlm_type wt) {
    if (wt == EVLM_TYPE_F32) return vld1q_f32((const float *)w + j);
    uint16x4_t h = vld1_u16((const uint16_t *)w + j);
    if (wt == EVLM_TYPE_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    /* BF16 is the top half of an F32: widen and shift into place */
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

EVLM__INLINE float load1(const void *w, int j, evlm_type wt) {
    if (wt == EVLM_TYPE_F32) return ((const float *)w)[j];
    uint16_t h = ((const uint16_t *)w)[j];
    return wt == EVLM_TYPE_F16 ? evlm_f16_to_f32(h) : evlm_bf16_to_f32(h);
}

/* y[i][r] = x_i . w_r for MR rows of x and NR weight rows: each x block of 4 is loaded once per
 * NR rows and each weight block once per MR rows. Element (i, r) has its own accumulator and the
 * same order (4 lanes, FMA, lane sum, scalar tail) in every tile shape. */
EVLM__INLINE void ftile(float *y, size_t ldy, const float *x, size_t ldx, const char *w, size_t ldw,
                        int k, evlm_type wt, int MR, int NR) {
    float32x4_t acc[4][8];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc[i][r] = vdupq_n_f32(0.0f);
    int j = 0;
    for (; j + 4 <= k; j += 4) {
        float32x4_t xv[4], wv[8];
        for (int i = 0; i < MR; i++) xv[i] = vld1q_f32(x + (size_t)i * ldx + j);
        for (int r = 0; r < NR; r++) wv[r] = load4(w + (size_t)r * ldw, j, wt);
        for (int i = 0; i < MR; i++)
            for (int r = 0; r < NR; r++) acc[i][r] = vfmaq_f32(acc[i][r], xv[i], wv[r]);
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) {
            float s = vaddvq_f32(acc[i][r]);
            for (int t = j; t < k; t++)
                s += x[(size_t)i * ldx + t] * load1(w + (size_t)r * ldw, t, wt);
            y[(size_t)i * ldy + r] = s;
        }
}

typedef void (*ftile_fn)(float *, size_t, const float *, size_t, const char *, size_t, int);

#define FTILE(T, MR, NR)                                                                           \
    static void ftile_##T##_##MR##x##NR(float *y, size_t ldy, const float *x, size_t ldx,          \
                                        const char *w, size_t ldw, int k) {                        \
        ftile(y, ldy, x, ldx, w, ldw, k, EVLM_TYPE_##T, MR, NR);                                   \
    }
/* [0]: one weight row, 1..4 x rows; [1]: four weight rows; [2]: 1 x 8 (a single x row: 8
 * independent FMA chains hide the latency) */
/* clang-format off */
#define FTILES(T)                                                                                  \
    FTILE(T, 1, 1) FTILE(T, 2, 1) FTILE(T, 3, 1) FTILE(T, 4, 1)                                    \
    FTILE(T, 1, 4) FTILE(T, 2, 4) FTILE(T, 3, 4) FTILE(T, 4, 4) FTILE(T, 1, 8)                     \
    static const ftile_fn ftiles_##T[3][4] = {                                                     \
        {ftile_##T##_1x1, ftile_##T##_2x1, ftile_##T##_3x1, ftile_##T##_4x1},                      \
        {ftile_##T##_1x4, ftile_##T##_2x4, ftile_##T##_3x4, ftile_##T##_4x4},                      \
        {ftile_##T##_1x8, NULL, NULL, NULL}};
/* clang-format on */
FTILES(F32)
FTILES(F16)
FTILES(BF16)

/* Y (m, n) = X (m, k) @ W^T for W rows [n0, n1) with tiles from `tiles`. */
static void gemm_tiles(const ftile_fn (*tiles)[4], float *y, size_t ldy, const float *x, size_t ldx,
                       const char *w, size_t ldw, int m, int n0, int n1, int k) {
    for (int n = n0; n < n1;) {
        int nr = m == 1 && n1 - n >= 8 ? 8 : n1 - n >= 4 ? 4 : 1;
        for (int i = 0; i < m; i += 4) {
            int mr = m - i < 4 ? m - i : 4;
            tiles[nr == 8 ? 2 : nr == 4][nr == 8 ? 0 : mr - 1](y + (size_t)i * ldy + n, ldy,
                                                               x + (size_t)i * ldx, ldx,
                                                               w + (size_t)n * ldw, ldw, k);
        }
        n += nr;
    }
}

/* One Q8_0 / Q4_0 / Q4_1 row to float, value for value as evlm_dequantize_row (q * d, then + m). */
static void dequant_row(const char *blk, float *dst, int k, evlm_type wt) {
    size_t bs = evlm_type_size(wt);
    for (int b = 0; b < k / EVLM_QK; b++, blk += bs, dst += EVLM_QK) {
        uint16_t hd, hm = 0;
        memcpy(&hd, blk, 2);
        if (wt == EVLM_TYPE_Q4_1) memcpy(&hm, blk + 2, 2);
        float32x4_t d = vdupq_n_f32(evlm_f16_to_f32(hd)), mn = vdupq_n_f32(evlm_f16_to_f32(hm));
        int16x8_t q[4];
        if (wt == EVLM_TYPE_Q8_0) {
            int8x16_t a = vld1q_s8((const int8_t *)(blk + 2)),
                      c = vld1q_s8((const int8_t *)(blk + 18));
            q[0] = vmovl_s8(vget_low_s8(a)), q[1] = vmovl_s8(vget_high_s8(a));
            q[2] = vmovl_s8(vget_low_s8(c)), q[3] = vmovl_s8(vget_high_s8(c));
        } else {
            uint8x16_t p = vld1q_u8((const uint8_t *)blk + (wt == EVLM_TYPE_Q4_0 ? 2 : 4));
            int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(p, vdupq_n_u8(0x0f)));
            int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(p, 4));
            if (wt == EVLM_TYPE_Q4_0)
                lo = vsubq_s8(lo, vdupq_n_s8(8)), hi = vsubq_s8(hi, vdupq_n_s8(8));
            q[0] = vmovl_s8(vget_low_s8(lo)), q[1] = vmovl_s8(vget_high_s8(lo));
            q[2] = vmovl_s8(vget_low_s8(hi)), q[3] = vmovl_s8(vget_high_s8(hi));
        }
        for (int h = 0; h < 4; h++) {
            float32x4_t f0 = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q[h]))), d);
            float32x4_t f1 = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(q[h]))), d);
            if (wt == EVLM_TYPE_Q4_1) f0 = vaddq_f32(f0, mn), f1 = vaddq_f32(f1, mn);
            vst1q_f32(dst + 8 * h, f0);
            vst1q_f32(dst + 8 * h + 4, f1);
        }
    }
}

static void gemm_neon(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                      evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    const char *wc = w;
    switch (wt) {
    case EVLM_TYPE_F32:
        gemm_tiles(ftiles_F32, y, ldy, x, ldx, wc, ldw, m, n0, n1, k);
        return;
    case EVLM_TYPE_F16:
        gemm_tiles(ftiles_F16, y, ldy, x, ldx, wc, ldw, m, n0, n1, k);
        return;
    case EVLM_TYPE_BF16:
        gemm_tiles(ftiles_BF16, y, ldy, x, ldx, wc, ldw, m, n0, n1, k);
        return;
    default:
        break;
    }
    if (!evlm_type_is_quant(wt) || evlm_type_is_r16(wt) || k % EVLM_QK) {
        evlm__ref_gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
        return;
    }
    /* quantized weights, act f32: each row dequantized once into scratch, then as an F32 row */
    for (int n = n0; n < n1; n++) {
        dequant_row(wc + (size_t)n * ldw, scratch, k, wt);
        gemm_tiles(ftiles_F32, y + n, ldy, x, ldx, (const char *)scratch, 0, m, 0, 1, k);
    }
}

/* ---- row ops --------------------------------------------------------------------------------- */

/* sum x_i y_i in 4 lanes x 4 accumulators, then the scalar tail */
static float dot_f32(const float *x, const float *y, int n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

/* y = x * rsqrt(mean(x^2) + eps) * w; the scaling is the same per-element product as ref */
static void rmsnorm_neon(float *y, const float *x, const float *w, int n, float eps) {
    float inv = 1.0f / sqrtf(dot_f32(x, x, n) / (float)n + eps);
    float32x4_t vinv = vdupq_n_f32(inv);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vmulq_f32(vld1q_f32(w + i), vmulq_f32(vld1q_f32(x + i), vinv)));
    for (; i < n; i++) y[i] = w[i] * (x[i] * inv);
}

/* as ref: mean, then the centred variance (sums reordered in lanes); the per-element
 * (x - mean) * inv * w + b in ref's order without FMA */
static void layernorm_neon(float *y, const float *x, const float *w, const float *b, int n,
                           float eps) {
    float32x4_t s4 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) s4 = vaddq_f32(s4, vld1q_f32(x + i));
    float sum = vaddvq_f32(s4);
    for (; i < n; i++) sum += x[i];
    float mean = sum / (float)n;
    float32x4_t vm = vdupq_n_f32(mean), q4 = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t c = vsubq_f32(vld1q_f32(x + i), vm);
        q4 = vfmaq_f32(q4, c, c);
    }
    float ss = vaddvq_f32(q4);
    for (; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    float32x4_t vinv = vdupq_n_f32(inv);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t c =
            vmulq_f32(vmulq_f32(vsubq_f32(vld1q_f32(x + i), vm), vinv), vld1q_f32(w + i));
        vst1q_f32(y + i, vaddq_f32(c, vld1q_f32(b + i)));
    }
    for (; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* rotate-half RoPE with ref's operations (no FMA), so bit-exact */
static void rope_neon(float *x, int n_heads, int head_dim, const float *cos, const float *sin) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        int i = 0;
        for (; i + 4 <= half; i += 4) {
            float32x4_t a = vld1q_f32(v + i), b = vld1q_f32(v + i + half);
            float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
            vst1q_f32(v + i, vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s)));
            vst1q_f32(v + i + half, vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s)));
        }
        for (; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

/* out (head_dim) = softmax(q . K^T * scale) @ V; exp stays scalar expf as in ref */
static void attn_row_neon(float *out, const float *q, const float *k, const float *v, int n_kv,
                          int head_dim, size_t ld, float scale, const uint8_t *mask,
                          float *scores) {
    float mx = -INFINITY;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) {
            scores[t] = -INFINITY; /* exp gives exactly 0 */
            continue;
        }
        float s = dot_f32(q, k + (size_t)t * ld, head_dim) * scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    float inv = evlm__ref_softmax_exp(scores, n_kv, mx);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        const float *vr = v + (size_t)t * ld;
        float p = scores[t] * inv;
        float32x4_t vp = vdupq_n_f32(p);
        int i = 0;
        for (; i + 4 <= head_dim; i += 4)
            vst1q_f32(out + i, vfmaq_f32(vld1q_f32(out + i), vp, vld1q_f32(vr + i)));
        for (; i < head_dim; i++) out[i] += p * vr[i];
    }
}

/* ---- int8 activations and weights ------------------------------------------------------------ */

/* x (k) -> k / 32 blocks, bit for bit as ref: d = max|x| / 127, id = 1 / d (0 when d is 0 or its
 * inverse overflows), qs = roundf(x * id) saturated (FCVTAS rounds ties away like roundf and
 * gives 0 for NaN), s = d * sum(qs). */
static void quantize_act_neon(const float *x, evlm_q8a *y, int k) {
    for (int b = 0; b < k / EVLM_QK; b++, x += EVLM_QK) {
        float32x4_t v[8], mx = vdupq_n_f32(0.0f);
        for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(x + 4 * j);
            mx = vmaxnmq_f32(mx, vabsq_f32(v[j])); /* maxNum ignores NaN, as fmaxf */
        }
        float amax = vmaxnmvq_f32(mx), d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!isfinite(id)) id = 0.0f;
        float32x4_t vid = vdupq_n_f32(id);
        int16x8_t h[4];
        int32x4_t sum = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {
            int32x4_t a = vcvtaq_s32_f32(vmulq_f32(v[2 * j], vid));
            int32x4_t c = vcvtaq_s32_f32(vmulq_f32(v[2 * j + 1], vid));
            h[j] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(c));
        }
        int8x16_t q0 = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
        int8x16_t q1 = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
        vst1q_s8(y[b].qs, q0);
        vst1q_s8(y[b].qs + 16, q1);
        sum = vpadalq_s16(sum, vpaddlq_s8(q0));
        sum = vpadalq_s16(sum, vpaddlq_s8(q1));
        y[b].d = d;
        y[b].s = d * (float)vaddvq_s32(sum);
    }
}

EVLM__INLINE float h2f(const char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return evlm_f16_to_f32(h);
}

/* sum of a * b over 16 int8 pairs into 4 int32 lanes (exact: int16 products, pairwise widened) */
EVLM__INLINE int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* MR activation rows x NR weight rows over kb blocks; per element the block sums are exact int32
 * lanes, scaled by dw * dx and summed in 4 float lanes in block order (+ m * s / 4 per lane). */
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
                if (wt == EVLM_TYPE_Q4_0)
                    w0[r] = vsubq_s8(w0[r], vdupq_n_s8(8)), w1[r] = vsubq_s8(w1[r], vdupq_n_s8(8));
            }
            dw[r] = h2f(blk);
            dm[r] = wt == EVLM_TYPE_Q4_1 ? h2f(blk + 2) : 0.0f;
        }
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            int8x16_t x0 = vld1q_s8(xb->qs), x1 = vld1q_s8(xb->qs + 16);
            for (int r = 0; r < NR; r++) {
                int32x4_t p = dot16(dot16(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
                acc[i][r] = vfmaq_n_f32(acc[i][r], vcvtq_f32_s32(p), dw[r] * xb->d);
                if (wt == EVLM_TYPE_Q4_1)
                    acc[i][r] = vaddq_f32(acc[i][r], vdupq_n_f32(dm[r] * (xb->s * 0.25f)));
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) y[(size_t)i * ldy + r] = vaddvq_f32(acc[i][r]);
}

typedef evlm__qtile_fn qtile_fn;

#define QTILE(T, MR, NR)                                                                           \
    static void qtile_##T##_##MR##x##NR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,       \
                                        const char *w, size_t ldw, int kb) {                       \
        qtile(y, ldy, x, ldx, w, ldw, kb, EVLM_TYPE_##T, MR, NR);                                  \
    }
/* [0]: one weight row; [1]: two (several activation rows); [2]: 1 x 4 (one activation row) */
/* clang-format off */
#define QTILES(T)                                                                                  \
    QTILE(T, 1, 1) QTILE(T, 2, 1) QTILE(T, 3, 1) QTILE(T, 4, 1)                                    \
    QTILE(T, 1, 2) QTILE(T, 2, 2) QTILE(T, 3, 2) QTILE(T, 4, 2) QTILE(T, 1, 4)                     \
    static const qtile_fn qtiles_##T[3][4] = {                                                     \
        {qtile_##T##_1x1, qtile_##T##_2x1, qtile_##T##_3x1, qtile_##T##_4x1},                      \
        {qtile_##T##_1x2, qtile_##T##_2x2, qtile_##T##_3x2, qtile_##T##_4x2},                      \
        {qtile_##T##_1x4, NULL, NULL, NULL}};
/* clang-format on */
QTILES(Q8_0)
QTILES(Q4_0)
QTILES(Q4_1)

static void gemm_q_neon(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                        size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    const qtile_fn(*tiles)[4];
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

/* Activation rows in chunks that stay in L2, weight rows in tiles streamed once per chunk (once
 * in all for m <= the chunk); shared with arm_dotprod.c, whose tiles have the same shapes. */
void evlm__neon_gemm_q_tiles(const evlm__qtile_fn (*tiles)[4], float *y, size_t ldy,
                             const evlm_q8a *x, size_t ldx, const void *w, size_t ldw, int m,
                             int n0, int n1, int k) {
    int kb = k / EVLM_QK;
    size_t row_bytes = (size_t)(kb > 0 ? kb : 1) * sizeof(evlm_q8a);
    int mc = (int)((192u * 1024u) / row_bytes) & ~3;
    if (mc < 4) mc = 4;
    for (int i0 = 0; i0 < m; i0 += mc) {
        int i1 = m - i0 < mc ? m : i0 + mc;
        int wide = i1 - i0 == 1 ? 4 : 2, sel = i1 - i0 == 1 ? 2 : 1;
        for (int n = n0; n < n1;) {
            int nr = n1 - n >= wide ? wide : 1;
            const char *wr = (const char *)w + (size_t)n * ldw;
            for (int i = i0; i < i1; i += 4) {
                int mr = i1 - i < 4 ? i1 - i : 4;
                tiles[nr == 1 ? 0 : sel][mr - 1](y + (size_t)i * ldy + n, ldy, x + (size_t)i * ldx,
                                                 ldx, wr, ldw, kb);
            }
            n += nr;
        }
    }
}

const evlm_kernels evlm_kernels_neon = {
    .name = "neon",
    .gemm = gemm_neon,
    .rmsnorm = rmsnorm_neon,
    .silu_mul = evlm__ref_silu_mul,
    .rope = rope_neon,
    .attn_row = attn_row_neon,
    .layernorm = layernorm_neon,
    .gelu_tanh = evlm__ref_gelu_tanh,
    .quantize_act = quantize_act_neon,
    .gemm_q = gemm_q_neon,
    .attn_tile = evlm__ref_attn_tile,
};

#else
typedef int evlm__arm_neon_empty; /* ISO C forbids an empty translation unit */
#endif
