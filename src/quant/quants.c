/* quants.c - scalar reference for the block formats (see quants.h). Not here: choosing the
 * function by type (types.c). */
#include "quant/quants.h"

#include <math.h>

/* 1 / d, or 0 when d is 0 or so small (subnormal) that the inverse overflows. */
static float inverse(float d) {
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    return isfinite(id) ? id : 0.0f;
}

/* round-half-away (roundf) into int8, saturating; NaN becomes 0 (as a defined result, not UB).
 * Clamping first changes nothing (roundf of [127, 127.5) is 127, and so on) and leaves |v| <= 128,
 * where the int conversion truncates exactly and v - t is exact: no libm call per element. */
static int8_t round_i8(float v) {
    if (!(v == v)) return 0;
    v = v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v;
    int t = (int)v;
    float f = v - (float)t;
    return (int8_t)(t + (f >= 0.5f) - (f <= -0.5f));
}

/* truncation toward zero into [0, 15] of a value biased to be non-negative (ggml's (int8_t)(x
 * + 8.5f)) */
static int nibble(float v) {
    if (!(v == v) || v < 0.0f) return 0;
    return v >= 15.0f ? 15 : (int)v;
}

void evlm_quantize_row_q8_0(const float *x, evlm_block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++, x += EVLM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < EVLM_QK; j++) /* fmaxf without the call: NaN is skipped alike */
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        float d = amax / 127.0f, id = inverse(d);
        y[b].d = evlm_f32_to_f16(d);
        for (int j = 0; j < EVLM_QK; j++) y[b].qs[j] = round_i8(x[j] * id);
    }
}

void evlm_quantize_row_q4_0(const float *x, evlm_block_q4_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++, x += EVLM_QK) {
        float amax = 0.0f, max = 0.0f; /* the value of largest magnitude, sign kept */
        for (int j = 0; j < EVLM_QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.0f, id = inverse(d);
        y[b].d = evlm_f32_to_f16(d);
        for (int j = 0; j < EVLM_QK / 2; j++) {
            int q0 = nibble(x[j] * id + 8.5f), q1 = nibble(x[EVLM_QK / 2 + j] * id + 8.5f);
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void evlm_quantize_row_q4_1(const float *x, evlm_block_q4_1 *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++, x += EVLM_QK) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < EVLM_QK; j++) {
            min = fminf(min, x[j]);
            max = fmaxf(max, x[j]);
        }
        float d = (max - min) / 15.0f, id = inverse(d);
        y[b].d = evlm_f32_to_f16(d);
        y[b].m = evlm_f32_to_f16(min);
        for (int j = 0; j < EVLM_QK / 2; j++) {
            int q0 = nibble((x[j] - min) * id + 0.5f);
            int q1 = nibble((x[EVLM_QK / 2 + j] - min) * id + 0.5f);
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void evlm_dequantize_row_q8_0(const void *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        const evlm_block_q8_0 *q = (const evlm_block_q8_0 *)x + b;
        float d = evlm_f16_to_f32(q->d);
        for (int j = 0; j < EVLM_QK; j++) y[b * EVLM_QK + j] = (float)q->qs[j] * d;
    }
}

void evlm_dequantize_row_q4_0(const void *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        const evlm_block_q4_0 *q = (const evlm_block_q4_0 *)x + b;
        float d = evlm_f16_to_f32(q->d);
        for (int j = 0; j < EVLM_QK / 2; j++) {
            y[b * EVLM_QK + j] = (float)((q->qs[j] & 0x0f) - 8) * d;
            y[b * EVLM_QK + j + EVLM_QK / 2] = (float)((q->qs[j] >> 4) - 8) * d;
        }
    }
}

void evlm_dequantize_row_q4_1(const void *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        const evlm_block_q4_1 *q = (const evlm_block_q4_1 *)x + b;
        float d = evlm_f16_to_f32(q->d), m = evlm_f16_to_f32(q->m);
        for (int j = 0; j < EVLM_QK / 2; j++) {
            y[b * EVLM_QK + j] = (float)(q->qs[j] & 0x0f) * d + m;
            y[b * EVLM_QK + j + EVLM_QK / 2] = (float)(q->qs[j] >> 4) * d + m;
        }
    }
}

void evlm_quantize_act_ref(const float *x, evlm_q8a *y, int64_t n) {
    for (int64_t b = 0; b < n / EVLM_QK; b++, x += EVLM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < EVLM_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = inverse(d);
        int sum = 0;
        for (int j = 0; j < EVLM_QK; j++) {
            y[b].qs[j] = round_i8(x[j] * id);
            sum += y[b].qs[j];
        }
        y[b].d = d;
        y[b].s = d * (float)sum;
    }
}

float evlm_vec_dot_q8_0_ref(const void *w, const evlm_q8a *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        const evlm_block_q8_0 *q = (const evlm_block_q8_0 *)w + b;
        int isum = 0;
        for (int j = 0; j < EVLM_QK; j++) isum += q->qs[j] * x[b].qs[j];
        acc += evlm_f16_to_f32(q->d) * x[b].d * (float)isum;
    }
    return acc;
}

float evlm_vec_dot_q4_0_ref(const void *w, const evlm_q8a *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        const evlm_block_q4_0 *q = (const evlm_block_q4_0 *)w + b;
        int isum = 0;
        for (int j = 0; j < EVLM_QK / 2; j++)
            isum += ((q->qs[j] & 0x0f) - 8) * x[b].qs[j] +
                    ((q->qs[j] >> 4) - 8) * x[b].qs[j + EVLM_QK / 2];
        acc += evlm_f16_to_f32(q->d) * x[b].d * (float)isum;
    }
    return acc;
}

float evlm_vec_dot_q4_1_ref(const void *w, const evlm_q8a *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / EVLM_QK; b++) {
        const evlm_block_q4_1 *q = (const evlm_block_q4_1 *)w + b;
        int isum = 0;
        for (int j = 0; j < EVLM_QK / 2; j++)
            isum += (q->qs[j] & 0x0f) * x[b].qs[j] + (q->qs[j] >> 4) * x[b].qs[j + EVLM_QK / 2];
        acc += evlm_f16_to_f32(q->d) * x[b].d * (float)isum + evlm_f16_to_f32(q->m) * x[b].s;
    }
    return acc;
}
