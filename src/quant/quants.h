/*
 * quants.h - block-quantized formats and their scalar reference (quantize / dequantize / dot).
 *
 * Weight blocks are byte-for-byte ggml's Q8_0, Q4_0 and Q4_1 (32 elements, fp16 scales, the same
 * nibble order), so a GGUF written by evlm is read by llama.cpp and back. Activations are
 * quantized on the fly into evlm_q8a blocks: 32 int8 values with a float scale per block and the
 * scaled sum that Q4_1 needs (ggml's block_q8_1 idea, with float fields). Per-block activation
 * scales (not one per row) keep outlier channels from flattening a whole row.
 *
 * These are the ground truth: SIMD kernels (src/kernels) must match them. Not here: the
 * calibration-aware quantizers (src/compress), the matmul driver (kernels/matmul.c).
 */
#ifndef EVLM_QUANT_QUANTS_H
#define EVLM_QUANT_QUANTS_H

#include "core/tensor.h"

#include <assert.h>
#include <stdint.h>

#define EVLM_QK 32 /* elements per block, every quantized type */

typedef struct {
    uint16_t d; /* fp16 scale */
    int8_t qs[EVLM_QK];
} evlm_block_q8_0;

typedef struct {
    uint16_t d;              /* fp16 scale */
    uint8_t qs[EVLM_QK / 2]; /* element j in the low nibble of byte j, j + 16 in the high one; value
                                (q - 8) * d */
} evlm_block_q4_0;

typedef struct {
    uint16_t d, m;           /* fp16 scale and minimum */
    uint8_t qs[EVLM_QK / 2]; /* as Q4_0; value q * d + m */
} evlm_block_q4_1;

/* An activation block: x ~= d * qs; s = d * sum(qs). */
typedef struct {
    float d, s;
    int8_t qs[EVLM_QK];
} evlm_q8a;

static_assert(sizeof(evlm_block_q8_0) == 34, "Q8_0 block must match ggml");
static_assert(sizeof(evlm_block_q4_0) == 18, "Q4_0 block must match ggml");
static_assert(sizeof(evlm_block_q4_1) == 20, "Q4_1 block must match ggml");
static_assert(sizeof(evlm_q8a) == 40, "activation block layout");

/* Row quantizers exactly as ggml's quantize_row_*_ref (n a multiple of 32). */
void evlm_quantize_row_q8_0(const float *x, evlm_block_q8_0 *y, int64_t n);
void evlm_quantize_row_q4_0(const float *x, evlm_block_q4_0 *y, int64_t n);
void evlm_quantize_row_q4_1(const float *x, evlm_block_q4_1 *y, int64_t n);
/* Rows of blocks back to float, exactly as ggml's dequantize_row_* (n a multiple of 32). */
void evlm_dequantize_row_q8_0(const void *x, float *y, int64_t n);
void evlm_dequantize_row_q4_0(const void *x, float *y, int64_t n);
void evlm_dequantize_row_q4_1(const void *x, float *y, int64_t n);
/* dot(row of n elements, n / 32 activation blocks), block by block in order. */
float evlm_vec_dot_q8_0_ref(const void *w, const evlm_q8a *x, int64_t n);
float evlm_vec_dot_q4_0_ref(const void *w, const evlm_q8a *x, int64_t n);
float evlm_vec_dot_q4_1_ref(const void *w, const evlm_q8a *x, int64_t n);
/* Any type to or from float32 through its row of the type table (quant/types.h): nothing for a
 * type without the function (n a multiple of the block). */
void evlm_quantize_row(evlm_type t, const float *x, void *y, int64_t n);
void evlm_dequantize_row(evlm_type t, const void *x, float *y, int64_t n);
/* Activations: d = max|x| / 127, qs = round(x / d). */
void evlm_quantize_act_ref(const float *x, evlm_q8a *y, int64_t n);
/* dot(w row of type t, activation row) over n elements, in block order (the reference); 0 for a
 * type that is not block-quantized. */
float evlm_vec_dot_q_ref(evlm_type t, const void *w, const evlm_q8a *x, int64_t n);

#endif
