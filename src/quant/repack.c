/* repack.c - 16-row interleaved quantized matrices (see repack.h). */
#include "quant/repack.h"
#include "quant/quants.h"

#include <math.h>
#include <string.h>

evlm_type evlm_type_r16(evlm_type base) {
    switch (base) {
    case EVLM_TYPE_Q8_0: return EVLM_TYPE_Q8_0_R16;
    case EVLM_TYPE_Q4_0: return EVLM_TYPE_Q4_0_R16;
    case EVLM_TYPE_Q4_1: return EVLM_TYPE_Q4_1_R16;
    case EVLM_TYPE_F32: return EVLM_TYPE_F32_R16;
    case EVLM_TYPE_F16: return EVLM_TYPE_F16_R16;
    case EVLM_TYPE_BF16: return EVLM_TYPE_BF16_R16;
    default: return EVLM_TYPE_COUNT;
    }
}

evlm_type evlm_type_r16_base(evlm_type rt) {
    switch (rt) {
    case EVLM_TYPE_Q8_0_R16: return EVLM_TYPE_Q8_0;
    case EVLM_TYPE_Q4_0_R16: return EVLM_TYPE_Q4_0;
    case EVLM_TYPE_Q4_1_R16: return EVLM_TYPE_Q4_1;
    case EVLM_TYPE_F32_R16: return EVLM_TYPE_F32;
    case EVLM_TYPE_F16_R16: return EVLM_TYPE_F16;
    case EVLM_TYPE_BF16_R16: return EVLM_TYPE_BF16;
    default: return EVLM_TYPE_COUNT;
    }
}

size_t evlm_r16_bytes(evlm_type rt, int64_t n, int64_t k) {
    int64_t groups = (n + EVLM_R16 - 1) / EVLM_R16;
    return (size_t)groups * EVLM_R16 * evlm_row_bytes(rt, k);
}

/* Where the pieces of (row lane r, block column) sit inside one block column of a group:
 * scale at 2r, min (Q4_1) at 32 + 2r, the 4-byte group c of the row at qs0 + 64c + 4r. */
static size_t qs_offset(evlm_type base) { return base == EVLM_TYPE_Q4_1 ? 64 : 32; }

static int n_chunks(evlm_type base) { return base == EVLM_TYPE_Q8_0 ? 8 : 4; }

/* offset of the qs bytes inside a ggml block */
static size_t block_qs(evlm_type base) { return base == EVLM_TYPE_Q4_1 ? 4 : 2; }

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
                const T *row = (const T *)(const void *)((const char *)src + (size_t)(g * EVLM_R16 + r) * ldw); \
                for (int64_t j = j0; j < j1; j++) gd[(size_t)j * EVLM_R16 + (size_t)r] = row[j];   \
            }                                                                                      \
        }                                                                                          \
    }
static void repack_float(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k, char *dst) {
    if (evlm_type_size(base) == 4) {
        REPACK_FLOAT(uint32_t)
    } else {
        REPACK_FLOAT(uint16_t)
    }
}

void evlm_repack_r16(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k, void *dst) {
    evlm_type rt = evlm_type_r16(base);
    if (evlm_type_is_r16_float(rt)) { /* only a partial last group needs zeros first */
        size_t gb = EVLM_R16 * evlm_row_bytes(base, k);
        if (n % EVLM_R16) memset((char *)dst + (size_t)(n / EVLM_R16) * gb, 0, gb);
        repack_float(base, src, ldw, n, k, dst);
        return;
    }
    size_t bs = evlm_type_size(base), col = EVLM_R16 * bs, q0 = qs_offset(base), bq = block_qs(base);
    int64_t kb = k / EVLM_QK, groups = (n + EVLM_R16 - 1) / EVLM_R16;
    memset(dst, 0, evlm_r16_bytes(rt, n, k));
    for (int64_t g = 0; g < groups; g++) {
        char *gd = (char *)dst + (size_t)g * (size_t)kb * col;
        for (int r = 0; r < EVLM_R16 && g * EVLM_R16 + r < n; r++) {
            const char *row = (const char *)src + (size_t)(g * EVLM_R16 + r) * ldw;
            for (int64_t b = 0; b < kb; b++) {
                const char *blk = row + (size_t)b * bs;
                char *cd = gd + (size_t)b * col;
                memcpy(cd + 2 * r, blk, 2); /* d */
                if (base == EVLM_TYPE_Q4_1) memcpy(cd + 32 + 2 * r, blk + 2, 2); /* m */
                for (int c = 0; c < n_chunks(base); c++) memcpy(cd + q0 + 64 * c + 4 * r, blk + bq + 4 * c, 4);
            }
        }
    }
}

void evlm_r16_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b, void *out) {
    evlm_type base = evlm_type_r16_base(rt);
    int64_t kb = k / EVLM_QK;
    char *blk = out;
    size_t bs = evlm_type_size(base), col = EVLM_R16 * bs, q0 = qs_offset(base), bq = block_qs(base);
    int lane = (int)(r % EVLM_R16);
    const char *cd = (const char *)data + ((size_t)(r / EVLM_R16) * (size_t)kb + (size_t)b) * col;
    memcpy(blk, cd + 2 * lane, 2);
    if (base == EVLM_TYPE_Q4_1) memcpy(blk + 2, cd + 32 + 2 * lane, 2);
    for (int c = 0; c < n_chunks(base); c++) memcpy(blk + bq + 4 * c, cd + q0 + 64 * c + 4 * lane, 4);
}

void evlm_r16_get_row(evlm_type rt, const void *data, int64_t k, int64_t r, void *blocks) {
    size_t bs = evlm_type_size(evlm_type_r16_base(rt));
    for (int64_t b = 0; b < k / EVLM_QK; b++) evlm_r16_get_block(rt, data, k, r, b, (char *)blocks + (size_t)b * bs);
}

/* address of element (r, 0) of a float R16 matrix; element j is 16 * j values further */
static const char *float_elem0(evlm_type rt, const void *data, int64_t k, int64_t r) {
    size_t es = evlm_type_size(rt);
    return (const char *)data + ((size_t)(r / EVLM_R16) * EVLM_R16 * (size_t)k + (size_t)(r % EVLM_R16)) * es;
}

void evlm_r16_dequantize_row(evlm_type rt, const void *data, int64_t k, int64_t r, float *y) {
    evlm_type base = evlm_type_r16_base(rt);
    if (evlm_type_is_r16_float(rt)) {
        /* element j of the row is EVLM_R16 elements after element j - 1 */
        const char *p = float_elem0(rt, data, k, r);
        if (rt == EVLM_TYPE_F32_R16)
            for (int64_t j = 0; j < k; j++) y[j] = ((const float *)(const void *)p)[j * EVLM_R16];
        else if (rt == EVLM_TYPE_F16_R16)
            for (int64_t j = 0; j < k; j++) y[j] = evlm_f16_to_f32(((const uint16_t *)(const void *)p)[j * EVLM_R16]);
        else
            for (int64_t j = 0; j < k; j++) y[j] = evlm_bf16_to_f32(((const uint16_t *)(const void *)p)[j * EVLM_R16]);
        return;
    }
    char blk[sizeof(evlm_block_q8_0)]; /* one block at a time: no row-sized buffer */
    for (int64_t b = 0; b < k / EVLM_QK; b++) {
        evlm_r16_get_block(rt, data, k, r, b, blk);
        evlm_dequantize_row(base, blk, y + b * EVLM_QK, EVLM_QK);
    }
}

float evlm_r16_dot_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const evlm_q8a *x) {
    evlm_type base = evlm_type_r16_base(rt);
    char blk[sizeof(evlm_block_q8_0)];
    float acc = 0.0f; /* ((0 + t0) + t1) + ...: the float operations of the row's own dot */
    for (int64_t b = 0; b < k / EVLM_QK; b++) {
        evlm_r16_get_block(rt, data, k, r, b, blk);
        acc += evlm_vec_dot_q_ref(base, blk, x + b, EVLM_QK);
    }
    return acc;
}

float evlm_r16_dot_f32_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const float *x) {
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
    if (evlm_type_is_r16(t->type)) evlm_r16_dequantize_row(t->type, t->data, t->ne[0], r, y);
    else evlm_dequantize_row(t->type, (const char *)t->data + (size_t)r * t->nb[1], y, t->ne[0]);
}
