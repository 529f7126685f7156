/*
 * kquant_repack.h - the 16-row interleaved forms of the k-quants (Q4_K_R16, Q5_K_R16, Q6_K_R16),
 * built at load like the *_R16 forms of repack.h and reached through its functions
 * (evlm_repack_r16, evlm_r16_get_block, ...), which call these for a k-quant base.
 *
 * A Q4_K / Q5_K / Q6_K matrix of n rows and k columns (kb = k / 256 super-blocks per row) becomes
 * ceil(n / 16) groups of 16 rows (the last one padded with zero rows). Group g is kb super-block
 * columns of 16 * (block bytes) bytes each (2304 / 2816 / 3360), so the buffer is the source's size
 * plus the padding, and an R16 matrix keeps ne = {k, n} and nb[1] = its base's row bytes, as in
 * repack.h. Each field of a ggml block is cut into units of 1, 2 or 4 bytes, and unit u of the 16
 * rows' field is one run of 16 units (row r's at r): a field of L bytes in units of U takes
 * 16 L bytes, unit u of row r at (field start) + 16 U u + U r. Super-block column b of group g:
 *
 *   Q4_K_R16 (2304 bytes):  d[16] (fp16, 32 bytes), dmin[16] (32), then the 12 scale bytes in
 *                           units of 1 (192: byte j of the 16 rows at 64 + 16 j), then qs in
 *                           units of 4: 32 chunks c of 64 bytes at 256 + 64 c, row r's
 *                           qs[4c .. 4c+3] at + 4r. Chunk c = 8p + i holds elements 4i .. 4i+3
 *                           of sub-block 2p (low nibbles) and of sub-block 2p + 1 (high ones).
 *   Q5_K_R16 (2816 bytes):  as Q4_K_R16 with qh in units of 4 between the scales and qs (512:
 *                           8 chunks of 64 bytes at 256 + 64 i, row r's qh[4i .. 4i+3] at + 4r:
 *                           bit 2p / 2p + 1 of byte 4i + l is the fifth bit of element 4i + l of
 *                           sub-block 2p / 2p + 1), then qs at 768 as Q4_K_R16's.
 *   Q6_K_R16 (3360 bytes):  d[16] (fp16, 32 bytes), the 16 int8 scales in units of 1 (256: scale
 *                           s of the 16 rows at 32 + 16 s), then the quants in units of 4: for the
 *                           128-element half h and i = 0..7, three chunks of 64 bytes at
 *                           288 + 1536 h + 192 i: row r's ql[64h + 4i ..] (the low nibbles of
 *                           elements 4i .. 4i+3 of the half, low, and of 64 + 4i .., high), its
 *                           ql[64h + 32 + 4i ..] (elements 32 + 4i .. and 96 + 4i ..), and its
 *                           qh[32h + 4i ..] (their top 2 bits: bits 0, 2, 4, 6 for elements 4i,
 *                           32 + 4i, 64 + 4i, 96 + 4i and the next three), each at + 4r: the
 *                           kernels read a column as one sequential stream.
 *
 * So a 512-bit load of a qs / ql / qh chunk holds one 32-bit lane per row (AVX2 reads 8-row
 * halves, NEON 4-row quarters): one vpdpbusd / SDOT against 4 broadcast activation bytes gives
 * 16 row sums, and the 16 rows' scales, minimums and d come as vectors of bytes or fp16.
 *
 * Not here: the kernels (src/kernels/kquant_r16_body.h and its includers), when to repack
 * (src/io/weights.c).
 */
#ifndef EVLM_QUANT_KQUANT_REPACK_H
#define EVLM_QUANT_KQUANT_REPACK_H

#include "core/tensor.h"

#include <stdint.h>

/* Byte offsets of the fields inside one super-block column of 16 rows (see above). */
#define EVLM_Q4K_R16_D    0
#define EVLM_Q4K_R16_DMIN 32
#define EVLM_Q4K_R16_SC   64
#define EVLM_Q4K_R16_QS   256
#define EVLM_Q5K_R16_D    0
#define EVLM_Q5K_R16_DMIN 32
#define EVLM_Q5K_R16_SC   64
#define EVLM_Q5K_R16_QH   256
#define EVLM_Q5K_R16_QS   768
#define EVLM_Q6K_R16_D    0
#define EVLM_Q6K_R16_SC   32
#define EVLM_Q6K_R16_Q    288 /* + 1536 h + 192 i: ql, ql + 32, qh chunks */

/* Interleaves rows [0, n) of a Q4_K / Q5_K / Q6_K matrix (row stride ldw bytes, k a multiple of
 * 256) into dst (evlm_r16_bytes of its R16 form); padding rows are zero. */
void evlm__kq_repack_r16(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k,
                         void *dst);
/* Super-block b of row r of a Q4_K_R16 / Q5_K_R16 / Q6_K_R16 matrix (k columns) back as ggml's
 * block. */
void evlm__kq_r16_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b,
                            void *out);

#endif
