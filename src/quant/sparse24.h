/*
 * sparse24.h - 2:4-sparse weight matrices (the *_S24 types), built at load beside the R16
 * repack (quant/repack.h) from a file matrix in which every aligned group of 4 consecutive
 * inputs (along ne[0]) holds at least 2 exact zeros in its stored values (Q8_0: the int8 quants,
 * whatever the scale; F32 / F16 / BF16: the values, +0 or -0). Files stay standard: a 2:4 matrix
 * is an ordinary Q8_0 / float tensor holding zeros; only memory holds the compact form.
 *
 * Each group of 4 keeps 2 values (the non-zero ones, padded with zeros at the lowest free
 * positions), in ascending position, and a pair code (0..5) for their positions:
 *   code 0: (0,1)  1: (0,2)  2: (0,3)  3: (1,2)  4: (1,3)  5: (2,3)
 * 3 bits would do; a nibble per group keeps the decoding one table lookup (vpermd / tbl), so
 * positions cost 1 bit per weight, the same as 2-bit positions. Rows are interleaved 16 at a time
 * like the R16 forms (ceil(n / 16) groups of 16 rows, the last padded with zero rows):
 *
 *   Q8_0_S24: per group, kb = k / 32 block columns of 352 bytes (22 per row and block, against
 *             Q8_0's 34): d[16] (fp16, row r's Q8_0 scale at r), then 4 chunks c = 0..3 of 64
 *             bytes: for r = 0..15 the 4 kept int8 of row r from inputs 8c .. 8c+7 (2 of group
 *             2c, then 2 of group 2c+1), then 64 code bytes: byte 16c + r holds row r's code of
 *             group 2c (low nibble) and of group 2c+1 (high nibble).
 *   F32_S24 / F16_S24 / BF16_S24: per group, k / 2 kept columns of 16 values (kept column t of
 *             row r at index 16t + r, t = 2 * (group) + slot; values in the file's dtype), then
 *             k / 8 code chunks of 16 bytes (chunk p, byte r: row r's codes of groups 2p (low
 *             nibble) and 2p + 1 (high)). k a multiple of 8. Per 8 inputs and row: 4 values and
 *             1 byte (the traits' block of 8: 17 / 9 / 9 bytes).
 *
 * The kernels either expand a chunk's kept int8 back to the dense R16 chunks (one byte shuffle per
 * 16 rows x 4 inputs) and run the dense tile, or gather the activations each kept value meets
 * (from the codes); the int8 block sums are the dense ones and the float steps the dense tile's,
 * and the float chains drop only the zero terms (fma(0, x, acc) = acc for finite x): bitwise the
 * dense kernel's result. An S24 matrix keeps ne = {k, n}; nb[1] is its own row bytes
 * (evlm_row_bytes of the S24 type), so a group is 16 * nb[1] bytes. evlm_type_is_r16 is true for
 * these types (16-row groups, r16_base their file type), and the R16 accessors of repack.h
 * (get_block, dequantize_row, dot_ref, dot_f32_ref, evlm_matrix_row_f32) read them too.
 *
 * Not here: the kernels (src/kernels: x86_*_s24*.c, arm_s24.c), when to build them (io/weights.c:
 * at load, off with EVLM_SPARSE=0 or evlm_model_params.keep_dense), pruning (src/compress).
 */
#ifndef EVLM_QUANT_SPARSE24_H
#define EVLM_QUANT_SPARSE24_H

#include "core/tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* Positions of the two kept values of pair code c (c < 6). */
extern const uint8_t evlm_s24_pos[6][2];

static inline bool evlm_type_is_s24(evlm_type t) {
    return evlm_type_traits_of(t)->s24;
}
/* Q8_0 -> Q8_0_S24, F16 -> F16_S24 ...; EVLM_TYPE_COUNT for a type that has no 2:4 form. */
evlm_type evlm_type_s24(evlm_type base);
/* Whether rows [0, n) of a base-type matrix (row stride ldw bytes, k columns) are 2:4: every
 * aligned group of 4 inputs holds at least 2 exact zeros, and k suits the form (a multiple of 32
 * for Q8_0, of 8 for floats). One pass, stops at the first dense group. */
bool evlm_s24_check(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k);
/* Packs rows [0, n) (evlm_s24_check true) into dst (evlm_r16_bytes(evlm_type_s24(base), n, k)
 * bytes: whole groups, padding rows zero). */
void evlm_repack_s24(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k, void *dst);
/* Q8_0_S24: block b of row r back as one 34-byte Q8_0 block (zeros restored). */
void evlm_s24_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b, void *out);
/* Row r to k floats, value for value the base row (either kind). */
void evlm_s24_dequantize_row(evlm_type rt, const void *data, int64_t k, int64_t r, float *y);
/* dot(row r of a float S24 matrix, x) as the dense R16 kernels compute it: acc = fmaf(w, x[j],
 * acc) for j = 0 .. k - 1 from acc = 0, the dropped zeros included. */
float evlm_s24_dot_f32_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const float *x);

#endif
