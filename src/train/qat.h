/*
 * qat.h - Q4_0 fake quantization for quantization-aware training: a float matrix replaced by its
 * ggml Q4_0 round trip (quantize_row_q4_0_ref then dequantize, per block of 32 along a row), the
 * straight-through estimator passing the gradient of the rounded matrix to the float one
 * unchanged (the caller accumulates dW into the float matrix's gradient).
 * Not here: which matrices are quantized (tdecoder.c: the decoder's q, k, v, o, gate, up, down
 * whose input width is a multiple of 32).
 */
#ifndef EVLM_TRAIN_QAT_H
#define EVLM_TRAIN_QAT_H

#include "train/ops.h"

#include <stdbool.h>

/* Whether a matrix of input width cols is fake-quantized (cols a multiple of 32). */
bool evlm_tqat_applies(int cols);

/* dst (rows, cols) = dequantize(quantize_q4_0(w)) row by row (cols a multiple of 32); rows are
 * split over the pool's threads (bitwise the same for any count). */
void evlm_tqat_fake_quant(const evlm_tops *o, float *dst, const float *w, int rows, int cols);

#endif
