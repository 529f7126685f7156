/*
 * q8_walk.c - the walks of the int8 gemm_q (kernels.h) over activation rows and weight rows,
 * shared by the per-ISA files that supply its register tiles and their shapes (ref_impl.h):
 * x86_avx2_quant.c (also the avx512 table's), x86_avx512_quant.c, arm_neon.c, arm_dotprod.c
 * and arm_i8mm.c. Compiled once, without ISA flags: the tiles are reached through pointers, one
 * call per tile and block range, so nothing per element goes through a call.
 *
 * Row-major weights (Q8_0 / Q4_0 / Q4_1): activation rows in chunks that stay in L2
 * (evlm__act_chunk_rows), weight rows in tiles streamed once per chunk (once in all for m <= the
 * chunk): nr1 weight rows per tile when the chunk is a single row (decode), nr otherwise, the
 * rows past the last whole tile one at a time; up to 4 activation rows per tile.
 *
 * 16-row interleaved weights (*_R16, quant/repack.h): activation rows in chunks (the shape's mc,
 * or evlm__act_chunk_rows), each group of 16 weight rows streamed once per chunk and met by tiles
 * of up to mr activation rows (one or two calls per tile: tiles that cover half a group each).
 * With split_k, blocks go in chunks whose int32 corrections (-off times an activation block's
 * byte sum, for tiles that compute on offset bytes) fit Q8_CORR, and a chunk's partial sums cross
 * to the next through y (exact: the next tile reloads them).
 *
 * The walks decide only which tile computes an output and when; every output is one tile's
 * arithmetic over all its blocks in order, the same whatever m, n0 or n1 (gemm_q's contract), so
 * the walks do not change any bits. evlm__q8_gemm looks a weight type up in a file's per-type
 * entries (ref_impl.h; an R16 form through its base) and runs the walk for it.
 * Not here: the tiles, quantize_act, dequantizing gemms.
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#define Q8_CORR 4096 /* int32 corrections of one (row chunk x block chunk), 16 KB of stack */

void evlm__q8_walk(const evlm__q8_shape *s, const evlm__q8_tile (*tiles)[4], float *y, size_t ldy,
                   const evlm_q8a *x, size_t ldx, const void *w, size_t ldw, int m, int n0, int n1,
                   int k) {
    int kb = k / EVLM_QK, mc = evlm__act_chunk_rows(k);
    for (int i0 = 0; i0 < m; i0 += mc) {
        int i1 = m - i0 < mc ? m : i0 + mc;
        int wide = i1 - i0 == 1 ? s->nr1 : s->nr, sel = i1 - i0 == 1 ? 2 : 1;
        for (int n = n0; n < n1;) {
            int nr = n1 - n >= wide ? wide : 1;
            const char *wr = (const char *)w + (size_t)n * ldw;
            for (int i = i0; i < i1; i += 4) {
                int mr = i1 - i < 4 ? i1 - i : 4;
                tiles[nr == 1 ? 0 : sel][mr - 1](y + (size_t)i * ldy + n, ldy, x + (size_t)i * ldx,
                                                 ldx, wr, ldw, kb);
            }
            n += nr;
        }
    }
}

void evlm__q8r16_walk(const evlm__q8r16_shape *s, const evlm__q8r16_tile (*tiles)[2],
                      evlm__q8_corr corr_fn, int32_t off, float *y, size_t ldy, const evlm_q8a *x,
                      size_t ldx, const void *w, size_t ldw, evlm_type base, int m, int n0, int n1,
                      int k) {
    if (m <= 0) return;
    const size_t col = EVLM_R16 * evlm_type_size(base); /* bytes of a group's block column */
    int32_t corr[Q8_CORR];
    int kb = k / EVLM_QK, mc = s->mc > 0 ? s->mc : evlm__act_chunk_rows(k);
    if (mc > m) mc = m;
    int kc = s->split_k ? Q8_CORR / mc : kb;
    if (kc > kb) kc = kb > 0 ? kb : 1; /* k = 0 still writes its zeros */
    for (int i0 = 0; i0 < m; i0 += mc) {
        int i1 = m - i0 < mc ? m : i0 + mc;
        for (int b0 = 0; b0 == 0 || b0 < kb; b0 += kc) {
            int nb = kb - b0 < kc ? kb - b0 : kc;
            if (off)
                for (int i = i0; i < i1; i++)
                    corr_fn(corr + (size_t)(i - i0) * kc, x + (size_t)i * ldx + b0, nb, -off);
            for (int g = n0 / EVLM_R16; g * EVLM_R16 < n1; g++) {
                const char *gw = (const char *)w + (size_t)g * EVLM_R16 * ldw + (size_t)b0 * col;
                for (int i = i0; i < i1; i += s->mr) {
                    int mr = i1 - i < s->mr ? i1 - i : s->mr;
                    for (int h = 0; h < 2 && tiles[mr - 1][h]; h++)
                        tiles[mr - 1][h](y + (size_t)i * ldy + (size_t)g * EVLM_R16, ldy,
                                         x + (size_t)i * ldx + b0, ldx,
                                         off ? corr + (size_t)(i - i0) * kc : NULL, (size_t)kc, gw,
                                         nb, n1 - g * EVLM_R16, b0 == 0);
                }
            }
        }
    }
}

bool evlm__q8_gemm(const evlm__q8_kern kern[EVLM_TYPE_COUNT], const evlm__q8_shape *s,
                   const evlm__q8r16_shape *rs, evlm__q8_corr corr_fn, float *y, size_t ldy,
                   const evlm_q8a *x, size_t ldx, const void *w, size_t ldw, evlm_type wt, int m,
                   int n0, int n1, int k) {
    const evlm_type base = evlm_type_is_r16(wt) ? evlm_type_r16_base(wt) : wt;
    if ((unsigned)base >= EVLM_TYPE_COUNT || evlm_type_traits_of(wt)->s24) return false;
    const evlm__q8_kern *e = &kern[base];
    if (base == wt) {
        if (!e->tiles) return false;
        evlm__q8_walk(s, e->tiles, y, ldy, x, ldx, w, ldw, m, n0, n1, k);
    } else {
        if (!e->r16) return false;
        evlm__q8r16_walk(rs, e->r16, corr_fn, e->off, y, ldy, x, ldx, w, ldw, base, m, n0, n1, k);
    }
    return true;
}

void evlm__deq_matrix_row(const void *w, size_t ldw, evlm_type wt, int n, float *dst, int k,
                          evlm__deq_row deq) {
    if (!evlm_type_is_r16(wt)) {
        deq((const char *)w + (size_t)n * ldw, dst, k);
        return;
    }
    char blk[EVLM_TYPE_MAX_BLOCK_BYTES];
    for (int b = 0; b < k / EVLM_QK; b++) {
        evlm_r16_get_block(wt, w, k, n, b, blk);
        deq(blk, dst + (size_t)b * EVLM_QK, EVLM_QK);
    }
}
