/* kquants.c - scalar reference of the k-quants Q4_K / Q5_K / Q6_K and of the Q8_K activations
 * (see kquants.h). The quantizers follow ggml's *_ref functions operation by operation (the same
 * float expressions in the same order, ties to even), because equal bytes need equal roundings.
 * Not here: the 32-element formats (quants.c), the type table (types.c). */
#include "quant/kquants.h"

#include <math.h>
#include <string.h>

/* below this a group counts as all zeros (ggml's GROUP_MAX_EPS) */
#define KQ_EPS 1e-15f

/* round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer part in
 * the low mantissa bits (the float addition does the rounding) */
static int round_even(float v) {
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

static float h2f(uint16_t h) {
    return evlm_f16_to_f32(h);
}

/* ---- Q4_K / Q5_K: an asymmetric (scale, min) per 32, searched by weighted least squares ---- */

/* Codes L in [0, nmax] and (scale, -min) for x[0..n) with x ~= scale * L + min, min <= 0: the
 * plain range fit first, then nstep + 1 trial inverse scales (rmin + rdelta * is + nmax) /
 * range, each refined by the weighted least-squares (scale, min) for its codes; the fit of least
 * weighted squared error wins. ggml's make_qkx2_quants with use_mad false. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(round_even(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_even(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float wl = w[i] * (float)l;
            sum_l += wl;
            sum_l2 += wl * (float)l;
            sum_xl += wl * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float s = (sum_w * sum_xl - sum_x * sum_l) / D;
        float m = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (m > 0) {
            m = 0;
            s = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = s * (float)Laux[i] + m - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = s;
            min = m;
        }
    }
    *neg_min = -min;
    return scale;
}

/* One super-block of Q4_K (nmax 15) or Q5_K (31): the 8 (scale, min) fits, their 6-bit codes
 * into scales[12], the fp16 super-scales, and the final codes L[256] against the stored
 * scales (sub-blocks whose stored scale is 0 keep the fit's codes, as ggml's do). */
static void kq_super_block(const float *x, int nmax, float rmin, float rdelta, int nstep,
                           uint8_t scales12[12], uint16_t *d_out, uint16_t *dmin_out,
                           uint8_t L[EVLM_QK_K]) {
    uint8_t Laux[32];
    float w[32], sc[8], mn[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xj[l]);
        sc[j] = fit_scale_min(32, nmax, xj, w, L + 32 * j, &mn[j], Laux, rmin, rdelta, nstep);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mn[j] > max_min) max_min = mn[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(scales12, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)round_even(inv_scale * sc[j]),
                lm = (uint8_t)round_even(inv_min * mn[j]);
        ls = ls > 63 ? 63 : ls;
        lm = lm > 63 ? 63 : lm;
        if (j < 4) {
            scales12[j] = ls;
            scales12[j + 4] = lm;
        } else {
            scales12[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
            scales12[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales12[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = evlm_f32_to_f16(max_scale / 63.0f);
    *dmin_out = evlm_f32_to_f16(max_min / 63.0f);
    const float d = h2f(*d_out), dmin = h2f(*dmin_out);
    for (int j = 0; j < 8; j++) {
        int s, m;
        evlm_kq_scale_min(scales12, j, &s, &m);
        const float dj = d * (float)s;
        if (!dj) continue;
        const float mj = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(round_even((x[32 * j + l] + mj) / dj), 0, nmax);
    }
}

void evlm_quantize_row_q4_K(const float *x, evlm_block_q4_K *y, int64_t n) {
    uint8_t L[EVLM_QK_K];
    for (int64_t i = 0; i < n / EVLM_QK_K; i++, x += EVLM_QK_K) {
        kq_super_block(x, 15, -1.0f, 0.1f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * g + l] = (uint8_t)(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
    }
}

void evlm_quantize_row_q5_K(const float *x, evlm_block_q5_K *y, int64_t n) {
    uint8_t L[EVLM_QK_K];
    for (int64_t i = 0; i < n / EVLM_QK_K; i++, x += EVLM_QK_K) {
        kq_super_block(x, 31, -0.5f, 0.1f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
                y[i].qs[32 * g + l] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
            }
    }
}

/* ---- Q6_K: a symmetric scale per 16, searched over 19 trial scales ------------------------- */

/* Codes L = l + nmax, l in [-nmax, nmax - 1], and the scale for x[0..n) with x ~= scale * l: the
 * scale that maps the largest-magnitude value to -nmax, then 18 nearby trials, each refined by the
 * least-squares scale with weights x^2; the best fit by that weighted error wins. ggml's
 * make_qx_quants with rmse_type 1 and no importance weights. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < KQ_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_even(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(round_even(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void evlm_quantize_row_q6_K(const float *x, evlm_block_q6_K *y, int64_t n) {
    int8_t L[EVLM_QK_K];
    float sc[16];
    for (int64_t i = 0; i < n / EVLM_QK_K; i++, x += EVLM_QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int s = 0; s < 16; s++) {
            sc[s] = fit_scale_sym(16, 32, x + 16 * s, L + 16 * s);
            if (fabsf(sc[s]) > max_abs) {
                max_abs = fabsf(sc[s]);
                max_scale = sc[s];
            }
        }
        if (max_abs < KQ_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.0f / max_scale;
        y[i].d = evlm_f32_to_f16(1 / iscale);
        for (int s = 0; s < 16; s++) {
            int v = round_even(iscale * sc[s]);
            y[i].scales[s] = (int8_t)(v > 127 ? 127 : v);
        }
        const float d = h2f(y[i].d);
        for (int s = 0; s < 16; s++) {
            const float ds = d * (float)y[i].scales[s];
            if (!ds) continue;
            for (int l = 0; l < 16; l++)
                L[16 * s + l] = (int8_t)(32 + clampi(round_even(x[16 * s + l] / ds), -32, 31));
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                  ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* ---- Q8_K activations ---------------------------------------------------------------------- */

void evlm_quantize_row_q8_K(const float *x, evlm_block_q8_K *y, int64_t n) {
    for (int64_t i = 0; i < n / EVLM_QK_K; i++, x += EVLM_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < EVLM_QK_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < EVLM_QK_K; j++) {
            int v = round_even(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < EVLM_QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- element access shared by dequantize and the dots -------------------------------------- */

/* code (0..15 / 0..31) of element e (0..255) of a Q4_K / Q5_K block's qs (and qh) */
static int q4k_code(const uint8_t *qs, int e) {
    int g = e / 64, r = e % 64;
    return r < 32 ? qs[32 * g + r] & 0x0f : qs[32 * g + r - 32] >> 4;
}
static int q5k_code(const uint8_t *qs, const uint8_t *qh, int e) {
    int g = e / 64, r = e % 64;
    return q4k_code(qs, e) | (((qh[r % 32] >> (2 * g + (r >= 32))) & 1) << 4);
}
/* value (-32..31) of element e of a Q6_K block */
static int q6k_value(const evlm_block_q6_K *b, int e) {
    int h = e / 128, c = (e % 128) / 32, l = e % 32;
    int lo = (b->ql[64 * h + 32 * (c & 1) + l] >> (c >= 2 ? 4 : 0)) & 0x0f;
    int hi = (b->qh[32 * h + l] >> (2 * c)) & 3;
    return (lo | (hi << 4)) - 32;
}

void evlm_dequantize_row_q4_K(const void *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / EVLM_QK_K; i++) {
        evlm_block_q4_K b;
        memcpy(&b, (const char *)x + (size_t)i * sizeof b, sizeof b);
        const float d = h2f(b.d), dmin = h2f(b.dmin);
        for (int j = 0; j < 8; j++) {
            int s, m;
            evlm_kq_scale_min(b.scales, j, &s, &m);
            const float dj = d * (float)s, mj = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                y[i * EVLM_QK_K + 32 * j + l] = dj * (float)q4k_code(b.qs, 32 * j + l) - mj;
        }
    }
}

void evlm_dequantize_row_q5_K(const void *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / EVLM_QK_K; i++) {
        evlm_block_q5_K b;
        memcpy(&b, (const char *)x + (size_t)i * sizeof b, sizeof b);
        const float d = h2f(b.d), dmin = h2f(b.dmin);
        for (int j = 0; j < 8; j++) {
            int s, m;
            evlm_kq_scale_min(b.scales, j, &s, &m);
            const float dj = d * (float)s, mj = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                y[i * EVLM_QK_K + 32 * j + l] = dj * (float)q5k_code(b.qs, b.qh, 32 * j + l) - mj;
        }
    }
}

void evlm_dequantize_row_q6_K(const void *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / EVLM_QK_K; i++) {
        evlm_block_q6_K b;
        memcpy(&b, (const char *)x + (size_t)i * sizeof b, sizeof b);
        const float d = h2f(b.d);
        for (int e = 0; e < EVLM_QK_K; e++)
            y[i * EVLM_QK_K + e] = d * (float)b.scales[e / 16] * (float)q6k_value(&b, e);
    }
}

/* ---- dots ---------------------------------------------------------------------------------- */

/* One super-block's terms added to acc one sub-block at a time: the row dots below are these
 * chained from acc = 0, so evlm_kq_dot_block continues a row's sum bit for bit. */
static float dot_block_q4_K(const evlm_block_q4_K *b, const evlm_q8a *x, float acc) {
    const float d = h2f(b->d), dmin = h2f(b->dmin);
    for (int j = 0; j < 8; j++) {
        const evlm_q8a *a = x + j;
        int s, m, isum = 0;
        evlm_kq_scale_min(b->scales, j, &s, &m);
        for (int l = 0; l < 32; l++) isum += q4k_code(b->qs, 32 * j + l) * a->qs[l];
        acc += d * (float)s * a->d * (float)isum - dmin * (float)m * a->s;
    }
    return acc;
}

static float dot_block_q5_K(const evlm_block_q5_K *b, const evlm_q8a *x, float acc) {
    const float d = h2f(b->d), dmin = h2f(b->dmin);
    for (int j = 0; j < 8; j++) {
        const evlm_q8a *a = x + j;
        int s, m, isum = 0;
        evlm_kq_scale_min(b->scales, j, &s, &m);
        for (int l = 0; l < 32; l++) isum += q5k_code(b->qs, b->qh, 32 * j + l) * a->qs[l];
        acc += d * (float)s * a->d * (float)isum - dmin * (float)m * a->s;
    }
    return acc;
}

static float dot_block_q6_K(const evlm_block_q6_K *b, const evlm_q8a *x, float acc) {
    const float d = h2f(b->d);
    for (int j = 0; j < 8; j++) { /* activation block j: the 16-sub-blocks 2j and 2j + 1 */
        const evlm_q8a *a = x + j;
        int isum = 0;
        for (int h = 0; h < 2; h++) {
            int part = 0;
            for (int l = 0; l < 16; l++)
                part += q6k_value(b, 32 * j + 16 * h + l) * a->qs[16 * h + l];
            isum += b->scales[2 * j + h] * part;
        }
        acc += d * a->d * (float)isum;
    }
    return acc;
}

float evlm_kq_dot_block(evlm_type t, const void *blk, const evlm_q8a *x, float acc) {
    switch (t) {
    case EVLM_TYPE_Q4_K:
        return dot_block_q4_K(blk, x, acc);
    case EVLM_TYPE_Q5_K:
        return dot_block_q5_K(blk, x, acc);
    case EVLM_TYPE_Q6_K:
        return dot_block_q6_K(blk, x, acc);
    default:
        return acc;
    }
}

float evlm_vec_dot_q4_K_ref(const void *w, const evlm_q8a *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n / EVLM_QK_K; i++)
        acc = dot_block_q4_K((const evlm_block_q4_K *)w + i, x + i * 8, acc);
    return acc;
}

float evlm_vec_dot_q5_K_ref(const void *w, const evlm_q8a *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n / EVLM_QK_K; i++)
        acc = dot_block_q5_K((const evlm_block_q5_K *)w + i, x + i * 8, acc);
    return acc;
}

float evlm_vec_dot_q6_K_ref(const void *w, const evlm_q8a *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n / EVLM_QK_K; i++)
        acc = dot_block_q6_K((const evlm_block_q6_K *)w + i, x + i * 8, acc);
    return acc;
}

float evlm_vec_dot_q4_K_q8_K(const void *w, const evlm_block_q8_K *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n / EVLM_QK_K; i++) {
        const evlm_block_q4_K *b = (const evlm_block_q4_K *)w + i;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int s, m, isum = 0;
            evlm_kq_scale_min(b->scales, j, &s, &m);
            for (int l = 0; l < 32; l++) isum += q4k_code(b->qs, 32 * j + l) * x[i].qs[32 * j + l];
            sumi += s * isum;
            summ += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        acc += h2f(b->d) * x[i].d * (float)sumi - h2f(b->dmin) * x[i].d * (float)summ;
    }
    return acc;
}

float evlm_vec_dot_q5_K_q8_K(const void *w, const evlm_block_q8_K *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n / EVLM_QK_K; i++) {
        const evlm_block_q5_K *b = (const evlm_block_q5_K *)w + i;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int s, m, isum = 0;
            evlm_kq_scale_min(b->scales, j, &s, &m);
            for (int l = 0; l < 32; l++)
                isum += q5k_code(b->qs, b->qh, 32 * j + l) * x[i].qs[32 * j + l];
            sumi += s * isum;
            summ += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        acc += h2f(b->d) * x[i].d * (float)sumi - h2f(b->dmin) * x[i].d * (float)summ;
    }
    return acc;
}

float evlm_vec_dot_q6_K_q8_K(const void *w, const evlm_block_q8_K *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n / EVLM_QK_K; i++) {
        const evlm_block_q6_K *b = (const evlm_block_q6_K *)w + i;
        int sumi = 0;
        for (int s = 0; s < 16; s++) {
            int part = 0;
            for (int l = 0; l < 16; l++) part += q6k_value(b, 16 * s + l) * x[i].qs[16 * s + l];
            sumi += b->scales[s] * part;
        }
        acc += h2f(b->d) * x[i].d * (float)sumi;
    }
    return acc;
}
