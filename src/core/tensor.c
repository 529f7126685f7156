/* tensor.c - type table and IEEE half conversions (see tensor.h). */
#include "core/tensor.h"

static const struct {
    const char *name;
    size_t size;
    int block;
} k_types[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_F32] = {"F32", 4}, [EVLM_TYPE_F16] = {"F16", 2}, [EVLM_TYPE_BF16] = {"BF16", 2},
    [EVLM_TYPE_I64] = {"I64", 8}, [EVLM_TYPE_I32] = {"I32", 4}, [EVLM_TYPE_I8] = {"I8", 1},
    [EVLM_TYPE_U8] = {"U8", 1},
    [EVLM_TYPE_Q8_0] = {"Q8_0", 34, 32}, [EVLM_TYPE_Q4_0] = {"Q4_0", 18, 32},
    [EVLM_TYPE_Q4_1] = {"Q4_1", 20, 32},
    [EVLM_TYPE_Q8_0_R16] = {"Q8_0_R16", 34, 32}, [EVLM_TYPE_Q4_0_R16] = {"Q4_0_R16", 18, 32},
    [EVLM_TYPE_Q4_1_R16] = {"Q4_1_R16", 20, 32},
    [EVLM_TYPE_F32_R16] = {"F32_R16", 4}, [EVLM_TYPE_F16_R16] = {"F16_R16", 2},
    [EVLM_TYPE_BF16_R16] = {"BF16_R16", 2},
};

size_t evlm_type_size(evlm_type t) { return (unsigned)t < EVLM_TYPE_COUNT ? k_types[t].size : 0; }

int evlm_type_block(evlm_type t) {
    return (unsigned)t < EVLM_TYPE_COUNT && k_types[t].block ? k_types[t].block : 1;
}

size_t evlm_row_bytes(evlm_type t, int64_t n) {
    return (size_t)(n / evlm_type_block(t)) * evlm_type_size(t);
}

const char *evlm_type_name(evlm_type t) {
    return (unsigned)t < EVLM_TYPE_COUNT ? k_types[t].name : "?";
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
    if (a < 0x38800000u) {                                   /* subnormal or zero in f16 */
        if (a < 0x33000000u) return (uint16_t)sign;          /* < 2^-25 rounds to 0 */
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
