/* kquant_repack.c - the k-quants' 16-row interleaved forms (see kquant_repack.h): one table of
 * fields per type, the same copy loops both ways. */
#include "quant/kquant_repack.h"
#include "quant/kquants.h"
#include "quant/repack.h"

#include <stdbool.h>

#include <string.h>

typedef struct {
    int src, len, unit; /* the field's offset and bytes in a ggml block, its unit in bytes */
} kq_field;

/* the fields in their order in a super-block column (their start there: 16 * the lengths
 * before them) */
static const kq_field q4k_fields[] = {{0, 2, 2}, {2, 2, 2}, {4, 12, 1}, {16, 128, 4}, {0, 0, 0}};
static const kq_field q5k_fields[] = {{0, 2, 2},   {2, 2, 2},    {4, 12, 1},
                                      {16, 32, 4}, {48, 128, 4}, {0, 0, 0}};
/* Q6_K: per 128-element half h and i = 0..7, the 4-byte units ql[64h + 4i], ql[64h + 32 + 4i]
 * and qh[32h + 4i] side by side, so the kernel reads a column in one sequential stream */
#define Q6_I(h, i)                                                                                 \
    {64 * (h) + 4 * (i), 4, 4}, {64 * (h) + 32 + 4 * (i), 4, 4}, {                                 \
        128 + 32 * (h) + 4 * (i), 4, 4                                                             \
    }
#define Q6_H(h)                                                                                    \
    Q6_I(h, 0), Q6_I(h, 1), Q6_I(h, 2), Q6_I(h, 3), Q6_I(h, 4), Q6_I(h, 5), Q6_I(h, 6), Q6_I(h, 7)
static const kq_field q6k_fields[] = {{208, 2, 2}, {192, 16, 1}, Q6_H(0), Q6_H(1), {0, 0, 0}};
#undef Q6_H
#undef Q6_I

static const kq_field *fields_of(evlm_type base) {
    return base == EVLM_TYPE_Q4_K   ? q4k_fields
           : base == EVLM_TYPE_Q5_K ? q5k_fields
           : base == EVLM_TYPE_Q6_K ? q6k_fields
                                    : NULL;
}

/* one block between ggml's bytes and lane r of a super-block column: from -> to, to_col says
 * which of the two is the column */
static void move_block(const kq_field *f, const char *from, char *to, int r, bool to_col) {
    size_t start = 0;
    for (; f->len; f++) {
        const size_t unit = (size_t)f->unit;
        for (size_t u = 0; u < (size_t)f->len / unit; u++) {
            size_t c = start + EVLM_R16 * unit * u + unit * (size_t)r,
                   b = (size_t)f->src + unit * u;
            memcpy(to + (to_col ? c : b), from + (to_col ? b : c), unit);
        }
        start += (size_t)EVLM_R16 * (size_t)f->len;
    }
}

void evlm__kq_repack_r16(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k,
                         void *dst) {
    const kq_field *f = fields_of(base);
    const evlm_type rt = evlm_type_r16(base);
    memset(dst, 0, evlm_r16_bytes(rt, n, k));
    if (!f) return;
    const size_t bs = evlm_type_size(base), col = EVLM_R16 * bs;
    const int64_t kb = k / EVLM_QK_K, groups = (n + EVLM_R16 - 1) / EVLM_R16;
    for (int64_t g = 0; g < groups; g++)
        for (int r = 0; r < EVLM_R16 && g * EVLM_R16 + r < n; r++) {
            const char *row = (const char *)src + (size_t)(g * EVLM_R16 + r) * ldw;
            for (int64_t b = 0; b < kb; b++)
                move_block(f, row + (size_t)b * bs,
                           (char *)dst + ((size_t)g * (size_t)kb + (size_t)b) * col, r, true);
        }
}

void evlm__kq_r16_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b,
                            void *out) {
    const evlm_type base = evlm_type_r16_base(rt);
    const kq_field *f = fields_of(base);
    if (!f) return;
    const size_t col = EVLM_R16 * evlm_type_size(base);
    const int64_t kb = k / EVLM_QK_K;
    const char *c = (const char *)data + ((size_t)(r / EVLM_R16) * (size_t)kb + (size_t)b) * col;
    move_block(f, c, out, (int)(r % EVLM_R16), false);
}
