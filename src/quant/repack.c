/* repack.c - 16-row interleaved quantized matrices (see repack.h). */
#include "quant/repack.h"
#include "quant/kquant_repack.h"
#include "quant/kquants.h"
#include "quant/quants.h"
#include "quant/sparse24.h"

#include <math.h>
#include <string.h>

size_t evlm_r16_bytes(evlm_type rt, int64_t n, int64_t k) {
    int64_t groups = (n + EVLM_R16 - 1) / EVLM_R16;
    return (size_t)groups * EVLM_R16 * evlm_row_bytes(rt, k);
}

/* Where the pieces of (row lane r, block column) sit inside one block column of a group: the
 * block's fp16 fields h (d, then m for Q4_1: head / 2 of them) at 32h + 2r, then its quants in
 * 4-byte groups c at qs0 + 64c + 4r (qs0 = 16 * head, after the 16 rows' fp16 fields). */
static size_t qs_offset(evlm_type base) {
    return EVLM_R16 * (size_t)evlm_type_traits_of(base)->head;
}

static int n_chunks(evlm_type base) {
    const evlm_type_traits *tt = evlm_type_traits_of(base);
    return (int)(tt->size - (size_t)tt->head) / 4;
}

/* offset of the qs bytes inside a ggml block */
static size_t block_qs(evlm_type base) {
    return (size_t)evlm_type_traits_of(base)->head;
}

/* float types: element (r, j) to (r / 16) * 16k + 16j + r % 16. Typed copies in blocks of 64
 * columns, so the 16 rows are read as short sequential runs and each written block (2 / 4 KB)
 * stays in L1: a 3 GB model is interleaved at every load. */
#define REPACK_FLOAT(T)                                                                            \
    for (int64_t g = 0; g * EVLM_R16 < n; g++) {                                                   \
        T *gd = (T *)(void *)dst + (size_t)g * EVLM_R16 * (size_t)k;                               \
        int rows = n - g * EVLM_R16 < EVLM_R16 ? (int)(n - g * EVLM_R16) : EVLM_R16;               \
        for (int64_t j0 = 0; j0 < k; j0 += 64) {                                                   \
            int64_t j1 = k - j0 < 64 ? k : j0 + 64;                                                \
            for (int r = 0; r < rows; r++) {                                                       \
                const T *row = (const T *)(const void *)((const char *)src +                       \
                                                         (size_t)(g * EVLM_R16 + r) * ldw);        \
                for (int64_t j = j0; j < j1; j++) gd[(size_t)j * EVLM_R16 + (size_t)r] = row[j];   \
            }                                                                                      \
        }                                                                                          \
    }
static void repack_float(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k,
                         char *dst) {
    if (evlm_type_size(base) == 4) {
        REPACK_FLOAT(uint32_t)
    } else {
        REPACK_FLOAT(uint16_t)
    }
}

void evlm_repack_r16(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k, void *dst) {
    evlm_type rt = evlm_type_r16(base);
    if (evlm_type_traits_of(base)->kq) { /* kquant_repack.h */
        evlm__kq_repack_r16(base, src, ldw, n, k, dst);
        return;
    }
    if (evlm_type_is_r16_float(rt)) { /* only a partial last group needs zeros first */
        size_t gb = EVLM_R16 * evlm_row_bytes(base, k);
        if (n % EVLM_R16) memset((char *)dst + (size_t)(n / EVLM_R16) * gb, 0, gb);
        repack_float(base, src, ldw, n, k, dst);
        return;
    }
    size_t bs = evlm_type_size(base), col = EVLM_R16 * bs, q0 = qs_offset(base),
           bq = block_qs(base);
    int nc = n_chunks(base);
    int64_t kb = k / EVLM_QK, groups = (n + EVLM_R16 - 1) / EVLM_R16;
    memset(dst, 0, evlm_r16_bytes(rt, n, k));
    for (int64_t g = 0; g < groups; g++) {
        char *gd = (char *)dst + (size_t)g * (size_t)kb * col;
        for (int r = 0; r < EVLM_R16 && g * EVLM_R16 + r < n; r++) {
            const char *row = (const char *)src + (size_t)(g * EVLM_R16 + r) * ldw;
            for (int64_t b = 0; b < kb; b++) {
                const char *blk = row + (size_t)b * bs;
                char *cd = gd + (size_t)b * col;
                for (size_t h = 0; h < bq / 2; h++) /* d (and m) */
                    memcpy(cd + 2 * EVLM_R16 * h + 2 * r, blk + 2 * h, 2);
                for (int c = 0; c < nc; c++) memcpy(cd + q0 + 64 * c + 4 * r, blk + bq + 4 * c, 4);
            }
        }
    }
}

void evlm_r16_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b,
                        void *out) {
    if (evlm_type_is_s24(rt)) {
        evlm_s24_get_block(rt, data, k, r, b, out);
        return;
    }
    if (evlm_type_traits_of(rt)->kq) {
        evlm__kq_r16_get_block(rt, data, k, r, b, out);
        return;
    }
    evlm_type base = evlm_type_r16_base(rt);
    int64_t kb = k / EVLM_QK;
    char *blk = out;
    size_t bs = evlm_type_size(base), col = EVLM_R16 * bs, q0 = qs_offset(base),
           bq = block_qs(base);
    int lane = (int)(r % EVLM_R16), nc = n_chunks(base);
    const char *cd = (const char *)data + ((size_t)(r / EVLM_R16) * (size_t)kb + (size_t)b) * col;
    for (size_t h = 0; h < bq / 2; h++) memcpy(blk + 2 * h, cd + 2 * EVLM_R16 * h + 2 * lane, 2);
    for (int c = 0; c < nc; c++) memcpy(blk + bq + 4 * c, cd + q0 + 64 * c + 4 * lane, 4);
}

void evlm_r16_get_row(evlm_type rt, const void *data, int64_t k, int64_t r, void *blocks) {
    size_t bs = evlm_type_size(evlm_type_r16_base(rt));
    for (int64_t b = 0; b < k / evlm_type_block(rt); b++)
        evlm_r16_get_block(rt, data, k, r, b, (char *)blocks + (size_t)b * bs);
}

/* address of element (r, 0) of a float R16 matrix; element j is 16 * j values further */
static const char *float_elem0(evlm_type rt, const void *data, int64_t k, int64_t r) {
    size_t es = evlm_type_size(rt);
    return (const char *)data +
           ((size_t)(r / EVLM_R16) * EVLM_R16 * (size_t)k + (size_t)(r % EVLM_R16)) * es;
}

void evlm_r16_dequantize_row(evlm_type rt, const void *data, int64_t k, int64_t r, float *y) {
    if (evlm_type_is_s24(rt)) {
        evlm_s24_dequantize_row(rt, data, k, r, y);
        return;
    }
    evlm_type base = evlm_type_r16_base(rt);
    if (evlm_type_is_r16_float(rt)) {
        /* element j of the row is EVLM_R16 elements after element j - 1: gathered 64 at a time,
         * then converted as one contiguous row of the base type */
        const char *p = float_elem0(rt, data, k, r);
        size_t es = evlm_type_size(rt), step = EVLM_R16 * es;
        uint32_t buf[64]; /* 64 elements of up to 4 bytes */
        for (int64_t j0 = 0; j0 < k; j0 += 64) {
            int64_t nj = k - j0 < 64 ? k - j0 : 64;
            const char *src = p + (size_t)j0 * step;
            if (es == 4)
                for (int64_t j = 0; j < nj; j++) memcpy(&buf[j], src + (size_t)j * step, 4);
            else
                for (int64_t j = 0; j < nj; j++)
                    memcpy((char *)buf + 2 * j, src + (size_t)j * step, 2);
            evlm_dequantize_row(base, buf, y + j0, nj);
        }
        return;
    }
    char blk[EVLM_TYPE_MAX_BLOCK_BYTES]; /* one block at a time: no row-sized buffer */
    const int bl = evlm_type_block(rt);
    for (int64_t b = 0; b < k / bl; b++) {
        evlm_r16_get_block(rt, data, k, r, b, blk);
        evlm_dequantize_row(base, blk, y + b * bl, bl);
    }
}

float evlm_r16_dot_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const evlm_q8a *x) {
    evlm_type base = evlm_type_r16_base(rt);
    char blk[EVLM_TYPE_MAX_BLOCK_BYTES];
    float acc = 0.0f; /* ((0 + t0) + t1) + ...: the float operations of the row's own dot */
    if (evlm_type_traits_of(rt)->kq) { /* super-blocks continue the chain (kquants.h) */
        for (int64_t b = 0; b < k / EVLM_QK_K; b++) {
            evlm_r16_get_block(rt, data, k, r, b, blk);
            acc = evlm_kq_dot_block(base, blk, x + b * (EVLM_QK_K / EVLM_QK), acc);
        }
        return acc;
    }
    for (int64_t b = 0; b < k / EVLM_QK; b++) {
        evlm_r16_get_block(rt, data, k, r, b, blk);
        acc += evlm_vec_dot_q_ref(base, blk, x + b, EVLM_QK);
    }
    return acc;
}

float evlm_r16_dot_f32_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const float *x) {
    if (evlm_type_is_s24(rt)) return evlm_s24_dot_f32_ref(rt, data, k, r, x);
    evlm_type base = evlm_type_r16_base(rt);
    const char *p = float_elem0(rt, data, k, r);
    size_t step = EVLM_R16 * evlm_type_size(rt);
    float acc = 0.0f;
    for (int64_t j = 0; j < k; j++) {
        float w;
        evlm_dequantize_row(base, p + (size_t)j * step, &w, 1);
        acc = fmaf(w, x[j], acc);
    }
    return acc;
}

void evlm_matrix_row_f32(const evlm_tensor *t, int64_t r, float *y) {
    if (evlm_type_is_r16(t->type))
        evlm_r16_dequantize_row(t->type, t->data, t->ne[0], r, y);
    else
        evlm_dequantize_row(t->type, (const char *)t->data + (size_t)r * t->nb[1], y, t->ne[0]);
}
