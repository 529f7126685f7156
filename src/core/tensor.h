/*
 * tensor.h - element types and the plain tensor view used everywhere inside evlm.
 *
 * Shapes follow ggml: ne[0] is the fastest-varying (innermost) dimension and nb[i] is the byte
 * stride of dimension i. A PyTorch / safetensors shape [rows, cols] is ne = {cols, rows}, so a
 * Linear weight [out_features, in_features] has ne[0] = in, ne[1] = out.
 * A view never owns its data (weights are mmapped, activations live in an arena).
 */
#ifndef EVLM_CORE_TENSOR_H
#define EVLM_CORE_TENSOR_H

#include "evlm.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EVLM_MAX_DIMS 4

/* evlm_type and evlm_type_name are public (evlm.h). The block layouts of the quantized types are
 * in quant/quants.h; the *_R16 interleavings, built at load, in quant/repack.h. */

typedef struct evlm_tensor {
    const char *name; /* owned by whoever produced the view */
    evlm_type type;
    int n_dims;
    int64_t ne[EVLM_MAX_DIMS]; /* unused dims are 1 */
    size_t nb[EVLM_MAX_DIMS];
    void *data;
} evlm_tensor;

/* Elements per block: 1 for plain types, 32 for the quantized ones. */
int evlm_type_block(evlm_type t);
/* Bytes of one block (of one element for plain types); 0 for an invalid type. */
size_t evlm_type_size(evlm_type t);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t evlm_row_bytes(evlm_type t, int64_t n);
static inline int evlm_type_is_quant(evlm_type t) { return t >= EVLM_TYPE_Q8_0 && t <= EVLM_TYPE_Q4_1_R16; }
/* Number of elements (product of ne). */
int64_t evlm_tensor_nelements(const evlm_tensor *t);
/* Bytes of a contiguous tensor (nelements / block * block bytes). */
size_t evlm_tensor_nbytes(const evlm_tensor *t);
/* Fills nb for a contiguous layout from type and ne. */
void evlm_tensor_set_contiguous(evlm_tensor *t);

/* ---- half-precision conversions (exact in the float direction) ---- */

static inline float evlm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t evlm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float evlm_f16_to_f32(uint16_t h);
uint16_t evlm_f32_to_f16(float f);

#endif
