/*
 * arm_neon.c - AArch64 NEON kernels (the "neon" table): gemm for F32 / F16 / BF16 weights (decode
 * tiles prefetch 1.5 KB ahead in each of their rows) and, dequantizing, for Q8_0 / Q4_0 / Q4_1
 * and their 16-row interleaved *_R16 forms (quant/repack.h: a row gathered from its group, then
 * the F32 tiles); rmsnorm, rope, layernorm's sums, quantize_act; silu_mul, gelu_tanh and
 * attn_row's softmax with a vector exp (exp4: the Cephes polynomial of the x86 files' exp8 /
 * exp16, within a few ulp of expf); max; an int8 gemm_q with vmull_s8 for CPUs without dotprod
 * (Cortex-A53 class): row-major tiles (arm_q8.h's, with this file's dot product), and for *_R16
 * one activation row against a group of 16 weight rows, each weight register (4 rows x 4 bytes)
 * against 4 broadcast activation bytes (exact int16 products widened pairwise to int32; see the
 * R16 section), walked by q8_walk.c; attn_tile (flash-style: 16 queries in lanes x 64 keys,
 * online softmax with exp4) and attn_rows as attn_walk.h's walks with this file's primitives.
 *
 * NEON is part of the AArch64 base ISA, so this file needs no flags; on other architectures it
 * is empty. dispatch.c swaps in gemm_q from arm_dotprod.c (SDOT) when the CPU reports dotprod,
 * from arm_i8mm.c (SMMLA for m >= 2) when it also reports i8mm.
 * Not bit-exact with `ref` where sums are reordered or exp is exp4: every dot product of gemm /
 * attn_row / rmsnorm sums in 4 lanes with FMA (one accumulator per output element, so an
 * element's value does not depend on m, the row range or the tile it falls in), attn_row packs
 * the visible keys' scores before its exp and lane sums (so a row is the same in a token tree as
 * decoded alone: token trees stay lossless), silu_mul / gelu_tanh use exp4 (gelu as x / (1 +
 * e^-2t)), attn_tile sums its scores over d and its outputs over keys in order with FMA and uses
 * exp4 (a row is still bitwise the same for any n_q or split of the rows, as kernels.h requires).
 * Bit-exact with `ref`: rope, quantize_act, the dequantized weight values, gemm on F32_R16 /
 * F16_R16 / BF16_R16 weights (arm_neon_r16f.c: ref's FMA chain per output), gemm_q on *_R16
 * weights (exact block sums, then ref's float steps per row; so are arm_dotprod.c's and
 * arm_i8mm.c's), the per-element scaling steps of rmsnorm / layernorm (no FMA there; the file is
 * compiled with ISO C's fp-contract off like ref.c).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

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
    /* FCVT, not a call: a call in the tile makes GCC keep its accumulators on the stack */
    if (wt == EVLM_TYPE_F16)
        return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
    return evlm_bf16_to_f32(h);
}

/* Decode (the 1 x 8 tiles: every weight read once, 8 rows at a time) asks for the line
 * GEMM_PF_BYTES ahead in each row of the tile, one per 64 bytes of progress, as the x86 tiles do:
 * hardware prefetchers follow a sequential stream or two, not 8 interleaved ones. Past the end of
 * a row that is the next rows or the next matrix; PRFM never faults. */
#define GEMM_PF_BYTES 1536

/* acc[i][r] += x_i[j .. j+3] * w_r[j .. j+3] */
#define FTILE_STEP(j)                                                                              \
    do {                                                                                           \
        float32x4_t xv[4], wv[8];                                                                  \
        EVLM__UNROLL for (int i = 0; i < MR; i++) xv[i] = vld1q_f32(x + (size_t)i * ldx + (j));    \
        EVLM__UNROLL for (int r = 0; r < NR; r++) wv[r] = load4(w + (size_t)r * ldw, (j), wt);     \
        EVLM__UNROLL for (int i = 0; i < MR; i++) EVLM__UNROLL for (int r = 0; r < NR; r++)        \
            acc[i][r] = vfmaq_f32(acc[i][r], xv[i], wv[r]);                                        \
    } while (0)

/* y[i][r] = x_i . w_r for MR rows of x and NR weight rows: each x block of 4 is loaded once per
 * NR rows and each weight block once per MR rows. Element (i, r) has its own accumulator and the
 * same order (4 lanes, FMA, lane sum, scalar tail) in every tile shape, prefetching or not. */
EVLM__INLINE void ftile(float *y, size_t ldy, const float *x, size_t ldx, const char *w, size_t ldw,
                        int k, evlm_type wt, int MR, int NR) {
    float32x4_t acc[4][8];
    EVLM__UNROLL for (int i = 0; i < MR; i++) EVLM__UNROLL for (int r = 0; r < NR; r++) acc[i][r] =
        vdupq_n_f32(0.0f);
    int j = 0;
    if (MR == 1 && NR == 8) {
        const int es = (int)evlm_type_traits_of(wt)->size, line = 64 / es; /* per 64 bytes */
        for (; j + line <= k; j += line) {
            EVLM__UNROLL for (int r = 0; r < NR; r++)
                __builtin_prefetch(w + (size_t)r * ldw + (size_t)j * es + GEMM_PF_BYTES);
            EVLM__UNROLL for (int jj = 0; jj < line; jj += 4) FTILE_STEP(j + jj);
        }
    }
    for (; j + 4 <= k; j += 4) FTILE_STEP(j);
    EVLM__UNROLL for (int i = 0; i < MR; i++) EVLM__UNROLL for (int r = 0; r < NR; r++) {
        float s = vaddvq_f32(acc[i][r]);
        for (int t = j; t < k; t++) s += x[(size_t)i * ldx + t] * load1(w + (size_t)r * ldw, t, wt);
        y[(size_t)i * ldy + r] = s;
    }
}

/* evlm__neon_f_tile (ref_impl.h) */

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
    static const evlm__neon_f_tile ftiles_##T[3][4] = {                                                     \
        {ftile_##T##_1x1, ftile_##T##_2x1, ftile_##T##_3x1, ftile_##T##_4x1},                      \
        {ftile_##T##_1x4, ftile_##T##_2x4, ftile_##T##_3x4, ftile_##T##_4x4},                      \
        {ftile_##T##_1x8, NULL, NULL, NULL}};
/* clang-format on */
FTILES(F32)
FTILES(F16)
FTILES(BF16)

/* the float gemm's tile sets per file type (ref_impl.h) */
const evlm__neon_f_set evlm__neon_gemm_f[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = ftiles_F32,
    [EVLM_TYPE_F16] = ftiles_F16,
    [EVLM_TYPE_BF16] = ftiles_BF16,
};

/* Y (m, n) = X (m, k) @ W^T for W rows [n0, n1) with tiles from `tiles`. */
static void gemm_tiles(evlm__neon_f_set tiles, float *y, size_t ldy, const float *x, size_t ldx,
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

/* One Q8_0 / Q4_0 / Q4_1 block (ggml bytes) to 32 floats, value for value as
 * evlm_dequantize_row (q * d, then + m). */
EVLM__INLINE void dequant_block(const char *blk, float *dst, evlm_type wt) {
    const size_t q0 = (size_t)evlm_type_traits_of(wt)->head; /* the quants after d (and m) */
    uint16_t hd, hm = 0;
    memcpy(&hd, blk, 2);
    if (wt == EVLM_TYPE_Q4_1) memcpy(&hm, blk + 2, 2);
    float32x4_t d = vdupq_n_f32(evlm_f16_to_f32(hd)), mn = vdupq_n_f32(evlm_f16_to_f32(hm));
    int16x8_t q[4];
    if (wt == EVLM_TYPE_Q8_0) {
        int8x16_t a = vld1q_s8((const int8_t *)(blk + q0));
        int8x16_t c = vld1q_s8((const int8_t *)(blk + q0 + 16));
        q[0] = vmovl_s8(vget_low_s8(a)), q[1] = vmovl_s8(vget_high_s8(a));
        q[2] = vmovl_s8(vget_low_s8(c)), q[3] = vmovl_s8(vget_high_s8(c));
    } else {
        uint8x16_t p = vld1q_u8((const uint8_t *)blk + q0);
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

EVLM__INLINE void dequant_row(const char *blk, float *dst, int k, evlm_type wt) {
    const size_t bs = evlm_type_traits_of(wt)->size;
    for (int b = 0; b < k / EVLM_QK; b++)
        dequant_block(blk + (size_t)b * bs, dst + (size_t)b * EVLM_QK, wt);
}

#define DEQ_ROW(T)                                                                                 \
    static void deq_##T(const void *w, float *dst, int k) {                                        \
        dequant_row(w, dst, k, EVLM_TYPE_##T);                                                     \
    }
DEQ_ROW(Q8_0)
DEQ_ROW(Q4_0)
DEQ_ROW(Q4_1)

/* the dequantizing gemm's row decoders per block type (ref_impl.h) */
const evlm__deq_row evlm__neon_deq[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = deq_Q8_0,
    [EVLM_TYPE_Q4_0] = deq_Q4_0,
    [EVLM_TYPE_Q4_1] = deq_Q4_1,
};

/* float types by their entry, float R16 forms by their base's, block types (and their R16 forms)
 * dequantized by their base's row decoder; the rest to ref */
static void gemm_neon(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                      evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    const char *wc = w;
    const evlm_type base = evlm_type_is_r16(wt) ? evlm_type_r16_base(wt) : wt;
    if ((unsigned)base >= EVLM_TYPE_COUNT ||
        (evlm_type_traits_of(wt)->s24 && evlm_type_traits_of(wt)->is_float)) { /* float 2:4: ref */
        evlm__ref_gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
        return;
    }
    if (base == wt && evlm__neon_gemm_f[wt]) {
        gemm_tiles(evlm__neon_gemm_f[wt], y, ldy, x, ldx, wc, ldw, m, n0, n1, k);
        return;
    }
    if (base != wt && evlm__neon_r16f[base]) {
        evlm__neon_gemm_r16f(y, ldy, x, ldx, w, wt, m, n0, n1, k);
        return;
    }
    const evlm__deq_row deq = evlm__neon_deq[base];
    if (!deq || k % EVLM_QK) {
        evlm__ref_gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
        return;
    }
    /* quantized weights, act f32: each row dequantized once into scratch, then as an F32 row */
    for (int n = n0; n < n1; n++) {
        evlm__deq_matrix_row(wc, ldw, wt, n, scratch, k, deq);
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

/* e^x within ~2 ulp (Cephes expf polynomial on r = x - n ln2, n = round(x / ln2), then times 2^n
 * made in the exponent bits): exactly 0 below -87.3 (e^-inf included; no subnormal results),
 * inputs above 88 give e^88. Same polynomial as exp8 / exp16 of the x86 files. */
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

/* g / (1 + e^-g) * u, as ref with a vector exp */
EVLM__INLINE float32x4_t silu_mul4(float32x4_t g, float32x4_t u) {
    float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g))));
    return vmulq_f32(s, u);
}

static float max_neon(const float *x, int n) {
    float32x4_t a = vdupq_n_f32(x[0]), b = a;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a = vmaxq_f32(a, vld1q_f32(x + i));
        b = vmaxq_f32(b, vld1q_f32(x + i + 4));
    }
    float r = vmaxvq_f32(vmaxq_f32(a, b));
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

static void silu_mul_neon(float *g, const float *u, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(g + i, silu_mul4(vld1q_f32(g + i), vld1q_f32(u + i)));
    if (i < n) { /* the tail through a padded vector, so every element takes the same path */
        float tg[4] = {0}, tu[4] = {0};
        memcpy(tg, g + i, sizeof(float) * (size_t)(n - i));
        memcpy(tu, u + i, sizeof(float) * (size_t)(n - i));
        vst1q_f32(tg, silu_mul4(vld1q_f32(tg), vld1q_f32(tu)));
        memcpy(g + i, tg, sizeof(float) * (size_t)(n - i));
    }
}

/* 0.5 x (1 + tanh(t)) computed as x / (1 + e^(-2t)), t = sqrt(2/pi) (x + 0.044715 x^3): the same
 * function without the cancellation of 1 + tanh(t) for large negative x (as the x86 tables) */
EVLM__INLINE float32x4_t gelu4(float32x4_t v) {
    float32x4_t t = vfmaq_f32(v, vmulq_f32(vdupq_n_f32(0.044715f), v), vmulq_f32(v, v));
    t = vmulq_f32(vdupq_n_f32(-2.0f * 0.7978845608028654f), t);
    return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), exp4(t)));
}

static void gelu_tanh_neon(float *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, gelu4(vld1q_f32(x + i)));
    if (i < n) {
        float t[4] = {0};
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        vst1q_f32(t, gelu4(vld1q_f32(t)));
        memcpy(x + i, t, sizeof(float) * (size_t)(n - i));
    }
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

/* out[c0 .. c0 + 4 NV) = sum over the visible keys t of p_j v_t (p: the packed weights), NV
 * vectors of accumulators in registers; one FMA chain per element in key order */
EVLM__INLINE void attn_v_block(float *out, const float *v, size_t ld, int n_kv, const uint8_t *mask,
                               const float *p, int c0, int NV) {
    float32x4_t acc[16];
    EVLM__UNROLL for (int c = 0; c < NV; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int t = 0, j = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        const float *vr = v + (size_t)t * ld + c0;
        float32x4_t vp = vdupq_n_f32(p[j++]);
        EVLM__UNROLL for (int c = 0; c < NV; c++) acc[c] =
            vfmaq_f32(acc[c], vp, vld1q_f32(vr + 4 * c));
    }
    EVLM__UNROLL for (int c = 0; c < NV; c++) vst1q_f32(out + c0 + 4 * c, acc[c]);
}

#define ATTN_V(NV)                                                                                 \
    static void attn_v##NV(float *out, const float *v, size_t ld, int n_kv, const uint8_t *mask,   \
                           const float *p, int c0) {                                               \
        attn_v_block(out, v, ld, n_kv, mask, p, c0, NV);                                           \
    }
ATTN_V(16)
ATTN_V(8)
ATTN_V(4)
ATTN_V(2)
ATTN_V(1)

/* out (head_dim) = softmax(q . K^T * scale) @ V. The visible keys' scores are packed to the
 * front of `scores` first, so the vector exp4 and the lane sums see the same sequence whether
 * hidden keys sit between them (a token tree) or not (the same tokens decoded one by one): a row
 * is bitwise the same in any batch. V is summed in blocks of up to 64 columns held in registers
 * (one pass over the keys per block; head_dim 128 takes two), columns past the last multiple of 4
 * in a scalar loop. */
/* e^(s - mx) over the nl packed scores, then each times 1 / their sum, in place */
static void softmax_packed(float *scores, int nl, float mx) {
    const float32x4_t vmx = vdupq_n_f32(mx);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    int j = 0;
    for (; j + 4 <= nl; j += 4) {
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(scores + j), vmx));
        vst1q_f32(scores + j, e);
        vsum = vaddq_f32(vsum, e);
    }
    if (j < nl) { /* padded with -inf: e = 0 in the spare lanes */
        float t4[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(t4, scores + j, sizeof(float) * (size_t)(nl - j));
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(t4), vmx));
        vst1q_f32(t4, e);
        memcpy(scores + j, t4, sizeof(float) * (size_t)(nl - j));
        vsum = vaddq_f32(vsum, e);
    }
    const float inv = 1.0f / vaddvq_f32(vsum);
    for (j = 0; j < nl; j++) scores[j] *= inv;
}

static void attn_row_neon(float *out, const float *q, const float *k, const float *v, int n_kv,
                          int head_dim, size_t ld, float scale, const uint8_t *mask,
                          float *scores) {
    float mx = -INFINITY;
    int nl = 0;
    for (int t = 0; t < n_kv; t++) {
        if (mask && !mask[t]) continue;
        float s = dot_f32(q, k + (size_t)t * ld, head_dim) * scale;
        scores[nl++] = s;
        if (s > mx) mx = s;
    }
    softmax_packed(scores, nl, mx);
    int h4 = head_dim & ~3, c0 = 0;
    for (; c0 + 64 <= h4; c0 += 64) attn_v16(out, v, ld, n_kv, mask, scores, c0);
    if (h4 - c0 >= 32) attn_v8(out, v, ld, n_kv, mask, scores, c0), c0 += 32;
    if (h4 - c0 >= 16) attn_v4(out, v, ld, n_kv, mask, scores, c0), c0 += 16;
    if (h4 - c0 >= 8) attn_v2(out, v, ld, n_kv, mask, scores, c0), c0 += 8;
    if (h4 - c0 >= 4) attn_v1(out, v, ld, n_kv, mask, scores, c0), c0 += 4;
    for (int i = h4; i < head_dim; i++) {
        float s = 0.0f;
        for (int t = 0, jj = 0; t < n_kv; t++)
            if (!mask || mask[t]) s += scores[jj++] * v[(size_t)t * ld + i];
        out[i] = s;
    }
}

/* ---- attn_tile, attn_rows: attn_walk.h's walks --------------------------------------------
 * attn_tile: blocks of 16 queries (four vectors), 4 dims of a key or value row per load used by
 * lane (FMA by element: still one FMA per d in order), exp4 (exactly 0 for hidden keys);
 * attn_rows: attn_row's dot_f32 and softmax_packed (the weights come out scaled), the output
 * sums in memory with the fused multiply-adds attn_row keeps in registers (columns past the last
 * multiple of 4: its unfused scalar sums). */

/* o[0, n) += p v[0, n) */
EVLM__INLINE void axpy(float *o, float p, const float *v, int n) {
    const int n4 = n & ~3;
    float32x4_t vp = vdupq_n_f32(p);
    for (int c = 0; c < n4; c += 4)
        vst1q_f32(o + c, vfmaq_f32(vld1q_f32(o + c), vp, vld1q_f32(v + c)));
    for (int c = n4; c < n; c++) o[c] += p * v[c];
}

/* v with lanes [0, lo) set to -inf */
EVLM__INLINE float32x4_t hide_below(float32x4_t v, int lo) {
    static const int32_t lane_idx[4] = {0, 1, 2, 3};
    uint32x4_t hide = vcltq_s32(vld1q_s32(lane_idx), vdupq_n_s32(lo));
    return vbslq_f32(hide, vdupq_n_f32(-INFINITY), v);
}

#define AT_V                  float32x4_t
#define AT_VL                 4
#define AT_QV                 4
#define AT_ZERO()             vdupq_n_f32(0.0f)
#define AT_SET1(f)            vdupq_n_f32(f)
#define AT_BCAST(p)           vdupq_n_f32(*(p))
#define AT_LOAD(p)            vld1q_f32(p)
#define AT_STORE(p, v)        vst1q_f32(p, v)
#define AT_ADD(a, b)          vaddq_f32(a, b)
#define AT_SUB(a, b)          vsubq_f32(a, b)
#define AT_MUL(a, b)          vmulq_f32(a, b)
#define AT_MAX(a, b)          vmaxq_f32(a, b)
#define AT_FMA(acc, v, b)     vfmaq_f32(acc, v, b)
#define AT_DG                 4
#define AT_KG                 float32x4_t
#define AT_KLOAD(p)           vld1q_f32(p)
#define AT_KFMA(acc, v, g, L) vfmaq_laneq_f32(acc, v, g, L)
#define AT_EXP(v)             exp4(v)
#define AT_EXP_P(s, mx)       exp4(vsubq_f32(s, mx)) /* exp4(-inf) = 0 */
#define AT_HIDE(v, lo)        hide_below(v, lo)
#define AT_DOT(q, k, n)       dot_f32(q, k, n)
#define AT_SOFTMAX(s, nl, mx) (softmax_packed(s, nl, mx), 1.0f)
#define AT_WEIGHT(s, f)       ((void)(f), (s))
#define AT_AXPY(o, p, v, n)   axpy(o, p, v, n)
#define AT_UNROLL_SOFTMAX     EVLM__UNROLL
#include "kernels/attn_walk.h"

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

/* sum of a * b over 16 int8 pairs into 4 int32 lanes (exact: int16 products, pairwise widened) */
EVLM__INLINE int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* the row-major tiles with vmull_s8 (arm_q8.h) */
#define QT_DOT(acc, a, b) dot16(acc, a, b)
#include "kernels/arm_q8.h"

/* ---- int8 gemm on 16-row interleaved weights (*_R16, quant/repack.h) ------------------------- */

/* One activation row x one group of 16 weight rows over kb block columns. A 16-byte load from a
 * chunk holds rows 4q .. 4q+3 (4 bytes each); the 4 activation bytes they meet are broadcast to
 * every 32-bit lane, multiplied exactly into int16 (SMULL / SMULL2: rows 4q, 4q+1 and 4q+2,
 * 4q+3) and widened pairwise into int32 (SADALP), two lanes per row, which one ADDP per quarter
 * folds into the row's exact block sum. Then ref's float steps per row (quants.c: acc += d * dx
 * * isum [+ m * s], no FMA): every output is bitwise ref's, whatever m, n0, n1.
 * Q8_0 per block column: 32 loads of 16 bytes, 8 DUP, 64 SMULL(2), 64 SADALP, 4 ADDP. Q4_0 /
 * Q4_1: 16 loads, 16 AND + 16 USHR, 8 DUP, 64 SMULL(2) / SMLAL(2) summed in int16 (8 nibble
 * products of at most 15 * 128 a lane: exact), 8 SADDLP + 4 ADDP, Q4_0 then 2 SADDLV + 4 SUB for
 * the -8 (isum - 8 * sum(x.qs)). Float as arm_dotprod.c: ~24 a block column. GCC 12 -O3: about
 * 200 instructions per Q8_0 block column and 170 per Q4 one, no spills; 4 NEON instructions per
 * 16 multiply-adds against SDOT's one, so on in-order A53 / A55-class cores this is compute
 * bound (~1 NEON op a cycle: roughly 3 bytes of Q8_0 and 1.7 of Q4 a cycle, estimated). One
 * activation row per tile (8 int32 or int16 accumulators and 4 float ones: more rows would
 * spill); for m > 1 the group is re-read from cache for each row. */

/* the 4 activation bytes in 32-bit lane L of xv, in every lane (L a literal) */
#define BCAST(xv, L) vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(xv), L))

/* Q8_0 chunk at p (elements 4c .. 4c+3 of each row) against lane L of xv */
#define Q8_CHUNK(p, xv, L)                                                                         \
    do {                                                                                           \
        int8x16_t xl = BCAST(xv, L);                                                               \
        for (int q = 0; q < 4; q++) {                                                              \
            int8x16_t wq = vld1q_s8((p) + 16 * q);                                                 \
            a[q] = vpadalq_s16(a[q], vmull_s8(vget_low_s8(wq), vget_low_s8(xl)));                  \
            c[q] = vpadalq_s16(c[q], vmull_high_s8(wq, xl));                                       \
        }                                                                                          \
    } while (0)

/* Q4 chunk L: low nibbles are elements 4L .. 4L+3 (lane L of x0), high ones 16 + 4L .. (x1) */
#define Q4_CHUNK(p, L)                                                                             \
    do {                                                                                           \
        int8x16_t xl0 = BCAST(x0, L), xl1 = BCAST(x1, L);                                          \
        for (int q = 0; q < 4; q++) {                                                              \
            uint8x16_t pq = vld1q_u8((const uint8_t *)(p) + 16 * q);                               \
            int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(pq, vdupq_n_u8(0x0f)));                    \
            int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(pq, 4));                                 \
            a16[q] = vmlal_s8(a16[q], vget_low_s8(lo), vget_low_s8(xl0));                          \
            a16[q] = vmlal_s8(a16[q], vget_low_s8(hi), vget_low_s8(xl1));                          \
            c16[q] = vmlal_high_s8(c16[q], lo, xl0);                                               \
            c16[q] = vmlal_high_s8(c16[q], hi, xl1);                                               \
        }                                                                                          \
    } while (0)

/* y[r] for rows r < nv of the group at gw (kb block columns) against one activation row x */
EVLM__INLINE void r16_row(float *y, const evlm_q8a *x, const char *gw, int kb, int nv,
                          evlm_type base) {
    const size_t col = EVLM_R16 * evlm_type_traits_of(base)->size;
    const size_t q0 = EVLM_R16 * (size_t)evlm_type_traits_of(base)->head;
    const int q4_1 = base == EVLM_TYPE_Q4_1;
    float32x4_t acc[4];
    for (int q = 0; q < 4; q++) acc[q] = vdupq_n_f32(0.0f);
    for (int b = 0; b < kb; b++) {
        const char *cd = gw + (size_t)b * col;
        const int8_t *qs = (const int8_t *)(cd + q0); /* past the 16 rows' fp16 fields */
        int8x16_t x0 = vld1q_s8(x[b].qs), x1 = vld1q_s8(x[b].qs + 16);
        int32x4_t s[4];
        if (base == EVLM_TYPE_Q8_0) {
            int32x4_t a[4], c[4];
            for (int q = 0; q < 4; q++) a[q] = c[q] = vdupq_n_s32(0);
            Q8_CHUNK(qs, x0, 0);
            Q8_CHUNK(qs + 64, x0, 1);
            Q8_CHUNK(qs + 128, x0, 2);
            Q8_CHUNK(qs + 192, x0, 3);
            Q8_CHUNK(qs + 256, x1, 0);
            Q8_CHUNK(qs + 320, x1, 1);
            Q8_CHUNK(qs + 384, x1, 2);
            Q8_CHUNK(qs + 448, x1, 3);
            for (int q = 0; q < 4; q++) s[q] = vpaddq_s32(a[q], c[q]);
        } else {
            int16x8_t a16[4], c16[4];
            for (int q = 0; q < 4; q++) a16[q] = c16[q] = vdupq_n_s16(0);
            Q4_CHUNK(qs, 0);
            Q4_CHUNK(qs + 64, 1);
            Q4_CHUNK(qs + 128, 2);
            Q4_CHUNK(qs + 192, 3);
            for (int q = 0; q < 4; q++) s[q] = vpaddq_s32(vpaddlq_s16(a16[q]), vpaddlq_s16(c16[q]));
            if (base == EVLM_TYPE_Q4_0) {
                int32x4_t corr = vdupq_n_s32(8 * (vaddlvq_s8(x0) + vaddlvq_s8(x1)));
                for (int q = 0; q < 4; q++) s[q] = vsubq_s32(s[q], corr);
            }
        }
        float32x4_t dw[4], dm[4];
        load_h16(cd, dw);
        if (q4_1) load_h16(cd + 32, dm);
        for (int q = 0; q < 4; q++) {
            float32x4_t t = vmulq_f32(vmulq_n_f32(dw[q], x[b].d), vcvtq_f32_s32(s[q]));
            if (q4_1) t = vaddq_f32(t, vmulq_n_f32(dm[q], x[b].s));
            acc[q] = vaddq_f32(acc[q], t);
        }
    }
    float tmp[EVLM_R16], *dst = nv == EVLM_R16 ? y : tmp;
    for (int q = 0; q < 4; q++) vst1q_f32(dst + 4 * q, acc[q]);
    if (dst == tmp) memcpy(y, tmp, sizeof(float) * (size_t)nv); /* rows >= n1: not ours */
}

/* evlm__q8r16_tile of one activation row (all blocks in one pass: first is always true) */
#define R16_TILE(T)                                                                                \
    static void r16_tile_##T(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                  \
                             const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,    \
                             bool first) {                                                         \
        (void)ldy, (void)ldx, (void)corr, (void)ldc, (void)first;                                  \
        r16_row(y, x, gw, nb, rows < EVLM_R16 ? rows : EVLM_R16, EVLM_TYPE_##T);                   \
    }                                                                                              \
    static const evlm__q8r16_tile r16_tiles_##T[1][2] = {{r16_tile_##T, NULL}};
R16_TILE(Q8_0)
R16_TILE(Q4_0)
R16_TILE(Q4_1)

/* R16: activation rows in chunks that stay in L2 (evlm__act_chunk_rows), each group streamed
 * from memory once per chunk and re-read from cache for each row */
static const evlm__q8r16_shape k_r16_shape = {0, 1, false};

/* the int8 entries per block type (ref_impl.h); the R16 tiles take no zero point */
const evlm__q8_kern evlm__neon_q8[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = {qtiles_Q8_0, r16_tiles_Q8_0, 0},
    [EVLM_TYPE_Q4_0] = {qtiles_Q4_0, r16_tiles_Q4_0, 0},
    [EVLM_TYPE_Q4_1] = {qtiles_Q4_1, r16_tiles_Q4_1, 0},
};

/* Y (m, n) = Xq (m, k) @ W^T for W rows [n0, n1): q8_walk.c's walks with this file's tiles;
 * types without an entry go to ref. */
static void gemm_q_neon(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                        size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    if (evlm_type_traits_of(wt)->kq) { /* arm_neon_kquant.c, arm_neon_kquant_r16.c */
        if (evlm_type_is_r16(wt))
            evlm__neon_gemm_q_kqr16(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        else
            evlm__neon_gemm_q_kq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (!evlm__q8_gemm(evlm__neon_q8, &k_qshape, &k_r16_shape, NULL, y, ldy, x, ldx, w, ldw, wt, m,
                       n0, n1, k))
        evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

const evlm_kernels evlm_kernels_neon = {
    .name = "neon",
    .gemm = gemm_neon,
    .rmsnorm = rmsnorm_neon,
    .silu_mul = silu_mul_neon,
    .rope = rope_neon,
    .attn_row = attn_row_neon,
    .layernorm = layernorm_neon,
    .gelu_tanh = gelu_tanh_neon,
    .quantize_act = quantize_act_neon,
    .gemm_q = gemm_q_neon,
    .attn_tile = attn_tile_simd,
    .max = max_neon,
    .attn_rows = attn_rows_simd,
    EVLM__TRAIN_ENTRIES(neon),
};

#else
typedef int evlm__arm_neon_empty; /* ISO C forbids an empty translation unit */
#endif
