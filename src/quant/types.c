/* types.c - the row functions table (see types.h) and the conversions by type that read it. Not
 * here: the block formats' own code (quants.c). */
#include "quant/types.h"
#include "quant/kquants.h"

#include <string.h>

/* ---- plain float types: element by element, through memcpy so any alignment is fine -------- */

static void f32_to_float(const void *x, float *y, int64_t n) {
    memcpy(y, x, sizeof(float) * (size_t)n);
}

static void f32_from_float(const float *x, void *y, int64_t n) {
    memcpy(y, x, sizeof(float) * (size_t)n);
}

static void f16_to_float(const void *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const char *)x + 2 * i, 2);
        y[i] = evlm_f16_to_f32(h);
    }
}

static void f16_from_float(const float *x, void *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = evlm_f32_to_f16(x[i]);
        memcpy((char *)y + 2 * i, &h, 2);
    }
}

static void bf16_to_float(const void *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const char *)x + 2 * i, 2);
        y[i] = evlm_bf16_to_f32(h);
    }
}

static void bf16_from_float(const float *x, void *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = evlm_f32_to_bf16(x[i]);
        memcpy((char *)y + 2 * i, &h, 2);
    }
}

/* ---- block types: quants.c, its typed quantizers behind the table's signature ---------------- */

static void q8_0_from_float(const float *x, void *y, int64_t n) {
    evlm_quantize_row_q8_0(x, y, n);
}
static void q4_0_from_float(const float *x, void *y, int64_t n) {
    evlm_quantize_row_q4_0(x, y, n);
}
static void q4_1_from_float(const float *x, void *y, int64_t n) {
    evlm_quantize_row_q4_1(x, y, n);
}

static void q4_K_from_float(const float *x, void *y, int64_t n) {
    evlm_quantize_row_q4_K(x, y, n);
}
static void q5_K_from_float(const float *x, void *y, int64_t n) {
    evlm_quantize_row_q5_K(x, y, n);
}
static void q6_K_from_float(const float *x, void *y, int64_t n) {
    evlm_quantize_row_q6_K(x, y, n);
}

/* ---- the table: a row per type of core/tensor.c; rows left out are all NULL --------------- */

const evlm_type_ops evlm__type_ops[EVLM_TYPE_COUNT + 1] = {
    [EVLM_TYPE_F32] = {f32_to_float, f32_from_float, NULL},
    [EVLM_TYPE_F16] = {f16_to_float, f16_from_float, NULL},
    [EVLM_TYPE_BF16] = {bf16_to_float, bf16_from_float, NULL},
    [EVLM_TYPE_Q8_0] = {evlm_dequantize_row_q8_0, q8_0_from_float, evlm_vec_dot_q8_0_ref},
    [EVLM_TYPE_Q4_0] = {evlm_dequantize_row_q4_0, q4_0_from_float, evlm_vec_dot_q4_0_ref},
    [EVLM_TYPE_Q4_1] = {evlm_dequantize_row_q4_1, q4_1_from_float, evlm_vec_dot_q4_1_ref},
    [EVLM_TYPE_Q4_K] = {evlm_dequantize_row_q4_K, q4_K_from_float, evlm_vec_dot_q4_K_ref},
    [EVLM_TYPE_Q5_K] = {evlm_dequantize_row_q5_K, q5_K_from_float, evlm_vec_dot_q5_K_ref},
    [EVLM_TYPE_Q6_K] = {evlm_dequantize_row_q6_K, q6_K_from_float, evlm_vec_dot_q6_K_ref},
};

void evlm_quantize_row(evlm_type t, const float *x, void *y, int64_t n) {
    const evlm_type_ops *o = evlm_type_ops_of(t);
    if (o->from_float) o->from_float(x, y, n);
}

void evlm_dequantize_row(evlm_type t, const void *x, float *y, int64_t n) {
    const evlm_type_ops *o = evlm_type_ops_of(t);
    if (o->to_float) o->to_float(x, y, n);
}

float evlm_vec_dot_q_ref(evlm_type t, const void *w, const evlm_q8a *x, int64_t n) {
    const evlm_type_ops *o = evlm_type_ops_of(t);
    return o->dot_q8a ? o->dot_q8a(w, x, n) : 0.0f;
}

evlm_type evlm_type_parse(const char *name) {
    evlm_type t = name ? evlm_type_from_gguf_name(name) : EVLM_TYPE_COUNT;
    return t != EVLM_TYPE_COUNT && evlm_type_ops_of(t)->from_float ? t : EVLM_TYPE_COUNT;
}
