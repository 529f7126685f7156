/* tensor.c - the type traits table and IEEE half conversions (see tensor.h). Not here: the
 * row functions of the types (quant/types.c). */
#include "core/tensor.h"

#define T(x) EVLM_TYPE_##x
#define NONE EVLM_TYPE_COUNT

/* The only list of types: a new one is a row here (and in quant/types.c). Columns: name,
 * elements per block, bytes per block, fp16 header bytes of a block, float?, quantized?, in
 * memory only?, R16 form, the type an R16 form is built from, GGML_TYPE_* id, ggml name,
 * safetensors dtype, KV cache element (0: never), 2:4-sparse form?, k-quant? */
const evlm_type_traits evlm__type_traits[EVLM_TYPE_COUNT + 1] = {
    [T(F32)] = {"F32", 1, 4, 0, 1, 0, 0, T(F32_R16), NONE, 0, "f32", "F32", EVLM_TYPE_KV_VALUES, 0},
    [T(F16)] = {"F16", 1, 2, 0, 1, 0, 0, T(F16_R16), NONE, 1, "f16", "F16", EVLM_TYPE_KV_VALUES, 0},
    [T(BF16)] = {"BF16", 1, 2, 0, 1, 0, 0, T(BF16_R16), NONE, 30, "bf16", "BF16", 0, 0},
    [T(I64)] = {"I64", 1, 8, 0, 0, 0, 0, NONE, NONE, 27, "i64", "I64", 0, 0},
    [T(I32)] = {"I32", 1, 4, 0, 0, 0, 0, NONE, NONE, 26, "i32", "I32", 0, 0},
    [T(I8)] = {"I8", 1, 1, 0, 0, 0, 0, NONE, NONE, 24, "i8", "I8", EVLM_TYPE_KV_SCALED, 0},
    [T(U8)] = {"U8", 1, 1, 0, 0, 0, 0, NONE, NONE, -1, NULL, "U8", 0, 0},
    [T(Q8_0)] = {"Q8_0", 32, 34, 2, 0, 1, 0, T(Q8_0_R16), NONE, 8, "q8_0", NULL, 0, 0},
    [T(Q4_0)] = {"Q4_0", 32, 18, 2, 0, 1, 0, T(Q4_0_R16), NONE, 2, "q4_0", NULL, 0, 0},
    [T(Q4_1)] = {"Q4_1", 32, 20, 4, 0, 1, 0, T(Q4_1_R16), NONE, 3, "q4_1", NULL, 0, 0},
    [T(Q8_0_R16)] = {"Q8_0_R16", 32, 34, 2, 0, 1, 1, NONE, T(Q8_0), -1, NULL, NULL, 0, 0},
    [T(Q4_0_R16)] = {"Q4_0_R16", 32, 18, 2, 0, 1, 1, NONE, T(Q4_0), -1, NULL, NULL, 0, 0},
    [T(Q4_1_R16)] = {"Q4_1_R16", 32, 20, 4, 0, 1, 1, NONE, T(Q4_1), -1, NULL, NULL, 0, 0},
    [T(F32_R16)] = {"F32_R16", 1, 4, 0, 1, 0, 1, NONE, T(F32), -1, NULL, NULL, 0, 0},
    [T(F16_R16)] = {"F16_R16", 1, 2, 0, 1, 0, 1, NONE, T(F16), -1, NULL, NULL, 0, 0},
    [T(BF16_R16)] = {"BF16_R16", 1, 2, 0, 1, 0, 1, NONE, T(BF16), -1, NULL, NULL, 0, 0},
    [T(Q8_0_S24)] = {"Q8_0_S24", 32, 22, 2, 0, 1, 1, NONE, T(Q8_0), -1, NULL, NULL, 0, 1},
    [T(F32_S24)] = {"F32_S24", 8, 17, 0, 1, 0, 1, NONE, T(F32), -1, NULL, NULL, 0, 1},
    [T(F16_S24)] = {"F16_S24", 8, 9, 0, 1, 0, 1, NONE, T(F16), -1, NULL, NULL, 0, 1},
    [T(BF16_S24)] = {"BF16_S24", 8, 9, 0, 1, 0, 1, NONE, T(BF16), -1, NULL, NULL, 0, 1},
    [T(Q4_K)] = {"Q4_K", 256, 144, 0, 0, 0, 0, T(Q4_K_R16), NONE, 12, "q4_K", NULL, 0, 0, 1},
    [T(Q5_K)] = {"Q5_K", 256, 176, 0, 0, 0, 0, T(Q5_K_R16), NONE, 13, "q5_K", NULL, 0, 0, 1},
    [T(Q6_K)] = {"Q6_K", 256, 210, 0, 0, 0, 0, T(Q6_K_R16), NONE, 14, "q6_K", NULL, 0, 0, 1},
    [T(Q4_K_R16)] = {"Q4_K_R16", 256, 144, 0, 0, 0, 1, NONE, T(Q4_K), -1, NULL, NULL, 0, 0, 1},
    [T(Q6_K_R16)] = {"Q6_K_R16", 256, 210, 0, 0, 0, 1, NONE, T(Q6_K), -1, NULL, NULL, 0, 0, 1},
    [T(Q5_K_R16)] = {"Q5_K_R16", 256, 176, 0, 0, 0, 1, NONE, T(Q5_K), -1, NULL, NULL, 0, 0, 1},
    [NONE] = {"?", 1, 0, 0, 0, 0, 0, NONE, NONE, -1, NULL, NULL, 0, 0},
};

#undef T
#undef NONE

size_t evlm_type_size(evlm_type t) {
    return evlm_type_traits_of(t)->size;
}

int evlm_type_block(evlm_type t) {
    return evlm_type_traits_of(t)->block;
}

size_t evlm_row_bytes(evlm_type t, int64_t n) {
    return (size_t)(n / evlm_type_block(t)) * evlm_type_size(t);
}

const char *evlm_type_name(evlm_type t) {
    return evlm_type_traits_of(t)->name;
}

evlm_type evlm_type_from_gguf_id(uint32_t id) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++)
        if (evlm__type_traits[t].gguf_id >= 0 && (uint32_t)evlm__type_traits[t].gguf_id == id)
            return (evlm_type)t;
    return EVLM_TYPE_COUNT;
}

evlm_type evlm_type_from_gguf_name(const char *name) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++)
        if (evlm__type_traits[t].gguf_name && strcmp(evlm__type_traits[t].gguf_name, name) == 0)
            return (evlm_type)t;
    return EVLM_TYPE_COUNT;
}

evlm_type evlm_type_from_st_dtype(const char *dtype) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++)
        if (evlm__type_traits[t].st_dtype && strcmp(evlm__type_traits[t].st_dtype, dtype) == 0)
            return (evlm_type)t;
    return EVLM_TYPE_COUNT;
}

int64_t evlm_tensor_nelements(const evlm_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < EVLM_MAX_DIMS; i++) n *= t->ne[i];
    return n;
}

size_t evlm_tensor_nbytes(const evlm_tensor *t) {
    return (size_t)(evlm_tensor_nelements(t) / evlm_type_block(t->type)) * evlm_type_size(t->type);
}

void evlm_tensor_set_contiguous(evlm_tensor *t) {
    t->nb[0] = evlm_type_size(t->type);
    t->nb[1] = evlm_row_bytes(t->type, t->ne[0]);
    for (int i = 2; i < EVLM_MAX_DIMS; i++) t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
}

float evlm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, overflow to inf, NaN preserved. */
uint16_t evlm_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {                                  /* subnormal or zero in f16 */
        if (a < 0x33000000u) return (uint16_t)sign;         /* < 2^-25 rounds to 0 */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t out = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) out++;
    return (uint16_t)(sign | out);
}
