/*
 * repack.h - weight matrices with 16 rows interleaved (the *_R16 types), built at load time so
 * the kernels read 16 weight rows per instruction: one activation group against 16 quantized
 * rows (int8 dot products), or one activation value against 16 float rows (one FMA, 16 outputs
 * in the 16 lanes).
 *
 * A Q8_0 / Q4_0 / Q4_1 matrix of n rows and k columns (kb = k / 32 blocks per row) becomes
 * ceil(n / 16) groups of 16 rows (the last one padded with zero rows). Group g is kb block
 * columns of 16 * (block bytes) bytes each, so a group is 16 rows' bytes and the whole buffer
 * is evlm_r16_bytes(): the same size as the source (plus the padding). Block column b of group g:
 *
 *   Q8_0_R16 (544 bytes):  d[16] (fp16, row r's scale at r), then 8 chunks c = 0..7 of 64 bytes:
 *                          chunk c = for r = 0..15 the 4 int8 values of elements 4c .. 4c+3 of
 *                          row r's block (ggml's signed qs, unchanged).
 *   Q4_0_R16 (288 bytes):  d[16], then 4 chunks c = 0..3 of 64 bytes: for r = 0..15 the 4 bytes
 *                          qs[4c .. 4c+3] of row r's block (ggml's nibbles unchanged: byte j
 *                          holds element j low and element j + 16 high).
 *   Q4_1_R16 (320 bytes):  d[16], m[16] (fp16), then the 4 chunks of Q4_0_R16.
 *
 * So a 512-bit register loaded from a chunk holds one 32-bit lane per row: vpdpbusd / SDOT
 * against a broadcast group of 4 activation bytes gives 16 row sums at once, and the 16 scales
 * are one fp16 vector. The layout is the same on every ISA (AVX2 reads 8-row halves, NEON
 * 4-row quarters). Inside a tensor an R16 matrix keeps ne = {k, n} and nb[1] = the row bytes of
 * its base type; row r is lane r % 16 of group r / 16 (groups 16 * nb[1] bytes apart).
 *
 * An F32 / F16 / BF16 matrix of n rows and k columns becomes ceil(n / 16) groups (the last one
 * padded with zero rows) of k columns of 16 values: element (r, j) sits at index
 * (r / 16) * 16k + 16j + r % 16 (F32_R16 / F16_R16 / BF16_R16, values unchanged). A group is one
 * sequential stream; the kernels load column j of a group as one vector (16 lanes = 16 outputs)
 * and multiply it by x[j] broadcast, so each output is the chain fma(w[r][j], x[j], acc) for
 * j = 0, 1, ..., k - 1 from acc = 0, in one lane, the same for any number of x rows, any ISA and
 * evlm_r16_dot_f32_ref (bitwise). An R16 matrix keeps ne = {k, n} and nb[1] = the row bytes of
 * its base type; groups are 16 * nb[1] bytes apart.
 *
 * The k-quants' forms Q4_K_R16 / Q6_K_R16 (256-element super-blocks) are laid out in
 * kquant_repack.h; the functions here take them too (blocks are then super-blocks).
 *
 * Not here: the kernels (src/kernels), when to repack (src/model: at load, EVLM_REPACK=0 off).
 */
#ifndef EVLM_QUANT_REPACK_H
#define EVLM_QUANT_REPACK_H

#include "core/tensor.h"
#include "quant/quants.h"

#include <stdbool.h>
#include <stdint.h>

#define EVLM_R16 16 /* rows per interleaved group */

/* Q8_0 -> Q8_0_R16, BF16 -> BF16_R16 etc. (the table's r16); EVLM_TYPE_COUNT for a type that
 * has no interleaved form. */
static inline evlm_type evlm_type_r16(evlm_type base) {
    return evlm_type_traits_of(base)->r16;
}
/* Q8_0_R16 -> Q8_0 etc. (the table's r16_base); EVLM_TYPE_COUNT for a type that is not
 * interleaved. */
static inline evlm_type evlm_type_r16_base(evlm_type rt) {
    return evlm_type_traits_of(rt)->r16_base;
}
/* any interleaved type (quantized or float) */
static inline bool evlm_type_is_r16(evlm_type t) {
    return evlm_type_traits_of(t)->r16_base != EVLM_TYPE_COUNT;
}
static inline bool evlm_type_is_r16_float(evlm_type t) {
    return evlm_type_is_r16(t) && evlm_type_traits_of(t)->is_float;
}
/* Bytes of an n x k matrix of R16 type rt (n rounded up to a whole group). */
size_t evlm_r16_bytes(evlm_type rt, int64_t n, int64_t k);
/* Interleaves rows [0, n) of a base-type matrix (row stride ldw bytes; k a multiple of 32 for
 * the quantized types) into dst (evlm_r16_bytes(evlm_type_r16(base), n, k) bytes); padding rows
 * are zero. */
void evlm_repack_r16(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k, void *dst);
/* Block b of row r of an R16 matrix (k columns) back as one block of the base type (out: its
 * 34 / 18 / 20 bytes; a k-quant's super-block: 144 / 210). */
void evlm_r16_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b, void *out);
/* Row r of an R16 matrix (k columns) back as k / 32 blocks of the base type (k / 256 for a
 * k-quant). */
void evlm_r16_get_row(evlm_type rt, const void *data, int64_t k, int64_t r, void *blocks);
/* dot(row r, activation row of k / 32 blocks): bitwise evlm_vec_dot_q_ref of the base row. */
float evlm_r16_dot_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const evlm_q8a *x);
/* Row r to float: value for value evlm_dequantize_row of the base row (any R16 type). */
void evlm_r16_dequantize_row(evlm_type rt, const void *data, int64_t k, int64_t r, float *y);
/* dot(row r of a float R16 matrix, x (k floats)) as the kernels compute it: acc = fmaf(w, x[j],
 * acc) for j = 0 .. k - 1 from acc = 0. */
float evlm_r16_dot_f32_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const float *x);

/* Row r of a 2-D weight matrix of any type (F32 / F16 / BF16 / quantized / R16) as k floats. */
void evlm_matrix_row_f32(const evlm_tensor *t, int64_t r, float *y);

#endif
