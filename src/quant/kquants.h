/*
 * kquants.h - ggml's k-quants Q4_K, Q5_K and Q6_K: super-blocks of 256 weights, byte-for-byte
 * ggml's block_q4_K / block_q5_K / block_q6_K (the files llama-quantize writes and published
 * GGUFs hold), their scalar reference quantizers (the same scale search and rounding as ggml's
 * quantize_row_*_K_ref), dequantizers, and dots with int8 activations.
 *
 * Two activation forms:
 *  - evlm_q8a (quants.h, 32 values per block, a float scale each): the dot of the type table
 *    (quant/types.h dot_q8a), so the int8 gemm driver that feeds the other block types feeds
 *    these too; a Q4_K / Q5_K sub-block of 32 is one activation block, a Q6_K pair of 16s too.
 *  - evlm_block_q8_K (ggml's block_q8_K: 256 values, one float scale, sums of 16): ggml's own
 *    pairing, kept for comparisons with llama.cpp's numbers.
 *
 * Inputs must be finite (as ggml's: NaN / inf give unspecified codes). A super-block whose scale
 * passes the fp16 range (|x| above ~1e9 in a block) overflows d to inf, as in ggml.
 *
 * Not here: the 32-element formats (quants.h), SIMD kernels (src/kernels), the importance-
 * weighted quantizers (ggml's quantize_*_K with an imatrix) and choosing types per tensor
 * (src/compress).
 */
#ifndef EVLM_QUANT_KQUANTS_H
#define EVLM_QUANT_KQUANTS_H

#include "quant/quants.h"

#include <assert.h>
#include <stdint.h>

#define EVLM_QK_K 256 /* elements per super-block */

/* Q4_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit minimum packed in scales[12]
 * (sub-blocks 0..3: low 6 bits of scales[j] / scales[j + 4]; 4..7: low nibbles in
 * scales[j + 4], the top 2 bits in the high 2 bits of scales[j - 4] / scales[j]). Value of
 * element (sub-block s, q): d * sc[s] * q - dmin * m[s]. qs: 64 elements per 32 bytes, the first
 * 32 in the low nibbles, the next 32 in the high ones. */
typedef struct {
    uint16_t d, dmin; /* fp16 super-scales of the scales and of the minimums */
    uint8_t scales[12];
    uint8_t qs[EVLM_QK_K / 2];
} evlm_block_q4_K;

/* Q5_K: as Q4_K with a fifth bit per element in qh: element l of the 64-group g (l < 32 in the
 * low nibble, l >= 32 in the high one) has its bit 2g (low) or 2g + 1 (high) in qh[l % 32]. */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[EVLM_QK_K / 8];
    uint8_t qs[EVLM_QK_K / 2];
} evlm_block_q5_K;

/* Q6_K: 16 sub-blocks of 16 with an int8 scale each; value d * scales[s] * (q - 32), q 6-bit.
 * Per 128 elements: ql (64 bytes) holds the low nibbles (elements l and l + 64 in byte l, l + 32
 * and l + 96 in byte l + 32), qh (32 bytes) the top 2 bits of l, l + 32, l + 64, l + 96 at bits
 * 0, 2, 4, 6 of byte l. d comes last. */
typedef struct {
    uint8_t ql[EVLM_QK_K / 2];
    uint8_t qh[EVLM_QK_K / 4];
    int8_t scales[EVLM_QK_K / 16];
    uint16_t d;
} evlm_block_q6_K;

/* ggml's activation block for the k-quants: x ~= d * qs, bsums[i] = sum of qs[16 i .. 16 i + 15].
 */
typedef struct {
    float d;
    int8_t qs[EVLM_QK_K];
    int16_t bsums[EVLM_QK_K / 16];
} evlm_block_q8_K;

static_assert(sizeof(evlm_block_q4_K) == 144, "Q4_K block must match ggml");
static_assert(sizeof(evlm_block_q5_K) == 176, "Q5_K block must match ggml");
static_assert(sizeof(evlm_block_q6_K) == 210, "Q6_K block must match ggml");
static_assert(sizeof(evlm_block_q8_K) == 292, "Q8_K block must match ggml");

/* Row quantizers with ggml's quantize_row_*_K_ref scale search and rounding (n a multiple of
 * 256): the same bytes llama-quantize writes for the same float rows without an imatrix. */
void evlm_quantize_row_q4_K(const float *x, evlm_block_q4_K *y, int64_t n);
void evlm_quantize_row_q5_K(const float *x, evlm_block_q5_K *y, int64_t n);
void evlm_quantize_row_q6_K(const float *x, evlm_block_q6_K *y, int64_t n);
void evlm_quantize_row_q8_K(const float *x, evlm_block_q8_K *y, int64_t n);
/* Rows back to float, as ggml's dequantize_row_*_K (n a multiple of 256; any alignment of x). */
void evlm_dequantize_row_q4_K(const void *x, float *y, int64_t n);
void evlm_dequantize_row_q5_K(const void *x, float *y, int64_t n);
void evlm_dequantize_row_q6_K(const void *x, float *y, int64_t n);
/* dot(row of n elements, n / 32 activation blocks), sub-block by sub-block in order: the
 * reference of the int8 kernels (the type table's dot_q8a). */
float evlm_vec_dot_q4_K_ref(const void *w, const evlm_q8a *x, int64_t n);
float evlm_vec_dot_q5_K_ref(const void *w, const evlm_q8a *x, int64_t n);
float evlm_vec_dot_q6_K_ref(const void *w, const evlm_q8a *x, int64_t n);
/* acc plus the terms of one super-block blk of type t (Q4_K / Q5_K / Q6_K) against its 8
 * activation blocks, in the order of the row dots above (which chain it from acc = 0): so a row
 * gathered block by block (an R16 form, quant/kquant_repack.h) gives the row dot's bits. */
float evlm_kq_dot_block(evlm_type t, const void *blk, const evlm_q8a *x, float acc);
/* dot(row of n elements, n / 256 ggml activation blocks): ggml's vec_dot_*_K_q8_K pairing. */
float evlm_vec_dot_q4_K_q8_K(const void *w, const evlm_block_q8_K *x, int64_t n);
float evlm_vec_dot_q5_K_q8_K(const void *w, const evlm_block_q8_K *x, int64_t n);
float evlm_vec_dot_q6_K_q8_K(const void *w, const evlm_block_q8_K *x, int64_t n);

/* The 6-bit scale and minimum of sub-block j (0..7) of a Q4_K / Q5_K block's scales[12]. */
static inline void evlm_kq_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

#endif
