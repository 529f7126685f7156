/*
 * types.h - the row functions of each tensor type: one evlm_type_ops row per evlm_type, in the
 * enum's order, beside the plain-data row of core/tensor.h (evlm_type_traits: names, sizes,
 * kinds, R16 pairs, GGUF and safetensors names).
 *
 * Why two tables and not one: core depends on nothing, and a type's functions are code over its
 * bytes, which lives in quant (block structs, quants.h) on top of core. Both tables are indexed
 * by the enum and both are const data, filled where they are defined (nothing to register at
 * start-up). A new format is its enum value, its row in core/tensor.c, its row here (and its
 * functions in quants.c) and its kernels; the test test_types walks both tables.
 *
 * Not here: the SIMD kernels and their choice (src/kernels), R16 row access (repack.h).
 */
#ifndef EVLM_QUANT_TYPES_H
#define EVLM_QUANT_TYPES_H

#include "core/tensor.h"
#include "quant/quants.h"

#include <stdint.h>

typedef struct evlm_type_ops {
    /* n elements (a multiple of the block) to float; any alignment of x. NULL: the type has no
     * float value (integers, R16 forms: see evlm_r16_dequantize_row). */
    void (*to_float)(const void *x, float *y, int64_t n);
    /* n floats to the type (ggml's rounding for the block types); any alignment of y. NULL: the
     * type is never a conversion target. */
    void (*from_float)(const float *x, void *y, int64_t n);
    /* block types and k-quants: dot(row of n elements, n / 32 activation blocks) in block order,
     * the scalar reference of the int8 kernels; NULL otherwise. */
    float (*dot_q8a)(const void *w, const evlm_q8a *x, int64_t n);
} evlm_type_ops;

/* The table, one row per type and a last all-NULL row ([EVLM_TYPE_COUNT]) for invalid values. */
extern const evlm_type_ops evlm__type_ops[EVLM_TYPE_COUNT + 1];
static inline const evlm_type_ops *evlm_type_ops_of(evlm_type t) {
    return &evlm__type_ops[(unsigned)t < EVLM_TYPE_COUNT ? t : EVLM_TYPE_COUNT];
}

#endif
