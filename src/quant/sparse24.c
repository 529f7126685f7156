/*
 * sparse24.c - the 2:4-sparse forms (see sparse24.h): the pattern check, the packing and reading
 * rows back. Scalar and run once per matrix at load (one pass to check, one to pack); the
 * kernels that compute on these forms live in src/kernels. Not here: deciding which matrices to
 * pack (io/weights.c), anything about unstructured sparsity (stays dense).
 */
#include "quant/sparse24.h"
#include "quant/quants.h"
#include "quant/repack.h"
#include "quant/types.h"

#include <math.h>
#include <string.h>

const uint8_t evlm_s24_pos[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};

/* pair code of kept positions a < b */
static int pair_code(int a, int b) {
    static const int8_t code[4][4] = {{-1, 0, 1, 2}, {-1, -1, 3, 4}, {-1, -1, -1, 5}, {-1}};
    return code[a][b];
}

evlm_type evlm_type_s24(evlm_type base) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++)
        if (evlm__type_traits[t].s24 && evlm__type_traits[t].r16_base == base) return (evlm_type)t;
    return EVLM_TYPE_COUNT;
}

/* is value j of a row of type base (file layout) an exact zero; Q8_0 rows are read per block */
static bool is_zero(evlm_type base, const char *row, int64_t j) {
    if (base == EVLM_TYPE_Q8_0) {
        const evlm_block_q8_0 *b = (const evlm_block_q8_0 *)(const void *)row + j / EVLM_QK;
        return b->qs[j % EVLM_QK] == 0;
    }
    if (evlm_type_size(base) == 4) {
        uint32_t u;
        memcpy(&u, row + 4 * j, 4);
        return (u & 0x7fffffffu) == 0;
    }
    uint16_t h;
    memcpy(&h, row + 2 * j, 2);
    return (h & 0x7fffu) == 0;
}

static bool k_fits(evlm_type base, int64_t k) {
    if (evlm_type_s24(base) == EVLM_TYPE_COUNT || k <= 0) return false;
    return base == EVLM_TYPE_Q8_0 ? k % EVLM_QK == 0 : k % 8 == 0;
}

bool evlm_s24_check(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k) {
    if (!k_fits(base, k)) return false;
    for (int64_t r = 0; r < n; r++) {
        const char *row = (const char *)src + (size_t)r * ldw;
        for (int64_t j = 0; j < k; j += 4) {
            int z = is_zero(base, row, j) + is_zero(base, row, j + 1) + is_zero(base, row, j + 2) +
                    is_zero(base, row, j + 3);
            if (z < 2) return false;
        }
    }
    return true;
}

/* the kept positions of group j0 .. j0 + 3 of a row: the non-zero ones, then the lowest zero
 * ones, ascending; returns the pair code */
static int choose(evlm_type base, const char *row, int64_t j0, int *a, int *b) {
    int keep[4] = {0}, nk = 0;
    for (int i = 0; i < 4 && nk < 2; i++)
        if (!is_zero(base, row, j0 + i)) keep[i] = 1, nk++;
    for (int i = 0; i < 4 && nk < 2; i++)
        if (!keep[i]) keep[i] = 1, nk++;
    int p[2], np = 0;
    for (int i = 0; i < 4; i++)
        if (keep[i]) p[np++] = i;
    *a = p[0];
    *b = p[1];
    return pair_code(p[0], p[1]);
}

static void pack_q8(const void *src, size_t ldw, int64_t n, int64_t k, char *dst) {
    const size_t col = EVLM_R16 * evlm_type_size(EVLM_TYPE_Q8_0_S24);
    const int64_t kb = k / EVLM_QK, groups = (n + EVLM_R16 - 1) / EVLM_R16;
    memset(dst, 0, (size_t)groups * (size_t)kb * col);
    for (int64_t g = 0; g < groups; g++) {
        for (int r = 0; r < EVLM_R16 && g * EVLM_R16 + r < n; r++) {
            const char *row = (const char *)src + (size_t)(g * EVLM_R16 + r) * ldw;
            for (int64_t b = 0; b < kb; b++) {
                const evlm_block_q8_0 *blk = (const evlm_block_q8_0 *)(const void *)row + b;
                char *cd = dst + ((size_t)g * (size_t)kb + (size_t)b) * col;
                memcpy(cd + 2 * r, &blk->d, 2);
                for (int c = 0; c < 4; c++) {
                    uint8_t codes = 0;
                    for (int h = 0; h < 2; h++) {
                        int64_t j0 = b * EVLM_QK + 8 * c + 4 * h;
                        int pa, pb, code = choose(EVLM_TYPE_Q8_0, row, j0, &pa, &pb);
                        int8_t *kept = (int8_t *)(cd + 32 + 64 * c + 4 * r + 2 * h);
                        kept[0] = blk->qs[8 * c + 4 * h + pa];
                        kept[1] = blk->qs[8 * c + 4 * h + pb];
                        codes |= (uint8_t)(code << (4 * h));
                    }
                    cd[32 + 256 + 16 * c + r] = (char)codes;
                }
            }
        }
    }
}

static void pack_float(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k,
                       char *dst) {
    const size_t es = evlm_type_size(base);
    const size_t gbytes = EVLM_R16 * evlm_row_bytes(evlm_type_s24(base), k);
    const int64_t groups = (n + EVLM_R16 - 1) / EVLM_R16;
    memset(dst, 0, (size_t)groups * gbytes);
    for (int64_t g = 0; g < groups; g++) {
        char *gd = dst + (size_t)g * gbytes, *codes = gd + (size_t)(k / 2) * EVLM_R16 * es;
        for (int r = 0; r < EVLM_R16 && g * EVLM_R16 + r < n; r++) {
            const char *row = (const char *)src + (size_t)(g * EVLM_R16 + r) * ldw;
            for (int64_t q = 0; q < k / 4; q++) { /* group of inputs 4q .. 4q + 3 */
                int pa, pb, code = choose(base, row, 4 * q, &pa, &pb);
                memcpy(gd + ((size_t)(2 * q) * EVLM_R16 + (size_t)r) * es,
                       row + (size_t)(4 * q + pa) * es, es);
                memcpy(gd + ((size_t)(2 * q + 1) * EVLM_R16 + (size_t)r) * es,
                       row + (size_t)(4 * q + pb) * es, es);
                codes[(size_t)(q / 2) * EVLM_R16 + (size_t)r] |= (char)(code << (4 * (q % 2)));
            }
        }
    }
}

void evlm_repack_s24(evlm_type base, const void *src, size_t ldw, int64_t n, int64_t k, void *dst) {
    if (base == EVLM_TYPE_Q8_0)
        pack_q8(src, ldw, n, k, dst);
    else
        pack_float(base, src, ldw, n, k, dst);
}

void evlm_s24_get_block(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t b,
                        void *out) {
    const size_t col = EVLM_R16 * evlm_type_size(rt);
    const int64_t kb = k / EVLM_QK;
    const int lane = (int)(r % EVLM_R16);
    const char *cd = (const char *)data + ((size_t)(r / EVLM_R16) * (size_t)kb + (size_t)b) * col;
    evlm_block_q8_0 blk;
    memcpy(&blk.d, cd + 2 * lane, 2);
    memset(blk.qs, 0, sizeof blk.qs);
    for (int c = 0; c < 4; c++) {
        uint8_t codes = (uint8_t)cd[32 + 256 + 16 * c + lane];
        for (int h = 0; h < 2; h++) {
            const uint8_t *pos = evlm_s24_pos[(codes >> (4 * h)) & 15];
            const int8_t *kept = (const int8_t *)(cd + 32 + 64 * c + 4 * lane + 2 * h);
            blk.qs[8 * c + 4 * h + pos[0]] = kept[0];
            blk.qs[8 * c + 4 * h + pos[1]] = kept[1];
        }
    }
    memcpy(out, &blk, sizeof blk);
}

/* the 4 values of group q of row r of a float S24 matrix */
static void float_group(evlm_type rt, const void *data, int64_t k, int64_t r, int64_t q, float *y) {
    const evlm_type base = evlm_type_r16_base(rt);
    const size_t es = evlm_type_size(base);
    const int lane = (int)(r % EVLM_R16);
    const char *gd = (const char *)data + (size_t)(r / EVLM_R16) * EVLM_R16 * evlm_row_bytes(rt, k);
    const char *codes = gd + (size_t)(k / 2) * EVLM_R16 * es;
    uint8_t code = (uint8_t)codes[(size_t)(q / 2) * EVLM_R16 + (size_t)lane];
    const uint8_t *pos = evlm_s24_pos[(code >> (4 * (q % 2))) & 15];
    float v[2];
    for (int s = 0; s < 2; s++)
        evlm_dequantize_row(base, gd + ((size_t)(2 * q + s) * EVLM_R16 + (size_t)lane) * es, &v[s],
                            1);
    for (int i = 0; i < 4; i++) y[i] = 0.0f;
    y[pos[0]] = v[0];
    y[pos[1]] = v[1];
}

float evlm_s24_dot_f32_ref(evlm_type rt, const void *data, int64_t k, int64_t r, const float *x) {
    float acc = 0.0f, w[4];
    for (int64_t q = 0; q < k / 4; q++) {
        float_group(rt, data, k, r, q, w);
        for (int i = 0; i < 4; i++) acc = fmaf(w[i], x[4 * q + i], acc);
    }
    return acc;
}

void evlm_s24_dequantize_row(evlm_type rt, const void *data, int64_t k, int64_t r, float *y) {
    const evlm_type base = evlm_type_r16_base(rt);
    if (base == EVLM_TYPE_Q8_0) {
        evlm_block_q8_0 blk;
        for (int64_t b = 0; b < k / EVLM_QK; b++) {
            evlm_s24_get_block(rt, data, k, r, b, &blk);
            evlm_dequantize_row(base, &blk, y + b * EVLM_QK, EVLM_QK);
        }
        return;
    }
    for (int64_t q = 0; q < k / 4; q++) float_group(rt, data, k, r, q, y + 4 * q);
}
