/*
 * test_sparse24.c - the 2:4-sparse forms (quant/sparse24.h) and their kernels:
 *   - the pattern check: a 2:4 matrix passes; one group with 3 non-zeros, or a k the form cannot
 *     hold, keeps a matrix dense;
 *   - rows read back (evlm_matrix_row_f32, evlm_r16_get_block) equal the file rows, value for
 *     value (Q8_0 blocks byte for byte);
 *   - under every kernel table built for this CPU (ref, avx2, avx512, avx512vnni; neon under
 *     qemu), gemm_q on Q8_0_S24 and gemm on F32_S24 / F16_S24 / BF16_S24 give bitwise the same
 *     outputs as the same table's dense R16 kernel on the zeroed matrix, for m = 1 .. 17 rows of
 *     x, partial last 16-row groups, odd numbers of blocks / 8-column chunks, and a row split
 *     at a group boundary (the threads' pieces); the float forms also equal ref's dense R16
 *     chain bitwise (the R16 invariant); the dequantizing gemm (act f32) reads Q8_0_S24 as the
 *     dense R16 matrix, bitwise.
 * The matrices hold every pair code and groups with 3 and 4 zeros; x is finite and holds no
 * zeros. Bitwise because the int8 block sums are exact integers and the float steps are the dense
 * kernel's, and the float chains drop only terms fma(+-0, x, acc) = acc (acc starts at +0 and
 * never becomes -0).
 * Not here: a whole model (cli_sparse24.sh: greedy ids with and without the sparse forms).
 */
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/quants.h"
#include "quant/repack.h"
#include "quant/sparse24.h"
#include "quant/types.h"
#include "test.h"

#include <stdint.h>

static unsigned seed = 2424;
static unsigned urand(void) {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
}
static float frand(void) { /* [-1, 1), never 0 */
    float v = (float)urand() / 8388608.0f - 1.0f;
    return v == 0.0f ? 0.5f : v;
}

/* which positions of group q of row r are zeroed: 2 of them (every pair over the groups), or
 * 3 or 4 now and then */
static void zero_mask(int r, int q, int z[4]) {
    static const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
    for (int i = 0; i < 4; i++) z[i] = 0;
    unsigned u = urand();
    const int *p = pairs[(unsigned)(r * 7 + q) % 6];
    z[p[0]] = z[p[1]] = 1;
    if (u % 11 == 0) z[(p[0] + 1) % 4 == p[1] ? (p[1] + 1) % 4 : (p[0] + 1) % 4] = 1;
    if (u % 23 == 0) z[0] = z[1] = z[2] = z[3] = 1;
}

/* an n x k 2:4 matrix of type base (row-major, contiguous) */
static void *make_matrix(evlm_type base, int n, int k) {
    float *row = malloc(sizeof(float) * (size_t)k);
    size_t rb = evlm_row_bytes(base, k);
    char *w = malloc(rb * (size_t)n);
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < k; j++) row[j] = frand();
        int z[4];
        if (base == EVLM_TYPE_Q8_0) {
            evlm_block_q8_0 *b = (evlm_block_q8_0 *)(void *)(w + (size_t)r * rb);
            evlm_quantize_row(base, row, b, k);
            for (int q = 0; q < k / 4; q++) {
                zero_mask(r, q, z);
                for (int i = 0; i < 4; i++)
                    if (z[i]) b[(4 * q + i) / EVLM_QK].qs[(4 * q + i) % EVLM_QK] = 0;
            }
        } else {
            for (int q = 0; q < k / 4; q++) {
                zero_mask(r, q, z);
                for (int i = 0; i < 4; i++)
                    if (z[i]) row[4 * q + i] = 0.0f;
            }
            evlm_quantize_row(base, row, w + (size_t)r * rb, k);
        }
    }
    free(row);
    return w;
}

static evlm_tensor view(evlm_type t, int n, int k, void *data) {
    evlm_tensor v = {.name = "w", .type = t, .n_dims = 2, .ne = {k, n, 1, 1}, .data = data};
    evlm_tensor_set_contiguous(&v);
    return v;
}

static void test_check(void) {
    void *w = make_matrix(EVLM_TYPE_Q8_0, 20, 64);
    size_t rb = evlm_row_bytes(EVLM_TYPE_Q8_0, 64);
    CHECK(evlm_s24_check(EVLM_TYPE_Q8_0, w, rb, 20, 64));
    CHECK(!evlm_s24_check(EVLM_TYPE_Q8_0, w, rb, 20, 48)); /* k not a multiple of 32 */
    evlm_block_q8_0 *b = (evlm_block_q8_0 *)(void *)((char *)w + 13 * rb);
    b[1].qs[4] = b[1].qs[5] = b[1].qs[6] = 3, b[1].qs[7] = 0; /* one group with 3 non-zeros */
    CHECK(!evlm_s24_check(EVLM_TYPE_Q8_0, w, rb, 20, 64));
    CHECK(evlm_s24_check(EVLM_TYPE_Q8_0, w, rb, 13, 64)); /* the rows before it are 2:4 */
    free(w);
    static const evlm_type fl[] = {EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_BF16};
    for (int t = 0; t < 3; t++) {
        w = make_matrix(fl[t], 17, 24);
        rb = evlm_row_bytes(fl[t], 24);
        CHECK(evlm_s24_check(fl[t], w, rb, 17, 24));
        CHECK(!evlm_s24_check(fl[t], w, rb, 17, 20)); /* k not a multiple of 8 */
        float one = 1.0f;
        char *row = (char *)w + 16 * rb;
        evlm_quantize_row(fl[t], &one, row + 8 * evlm_type_size(fl[t]), 1);
        evlm_quantize_row(fl[t], &one, row + 9 * evlm_type_size(fl[t]), 1);
        evlm_quantize_row(fl[t], &one, row + 10 * evlm_type_size(fl[t]), 1);
        CHECK(!evlm_s24_check(fl[t], w, rb, 17, 24));
        free(w);
    }
    CHECK(evlm_type_s24(EVLM_TYPE_Q4_0) == EVLM_TYPE_COUNT);
    CHECK(!evlm_s24_check(EVLM_TYPE_Q4_0, NULL, 0, 0, 32));
}

/* the dense R16 and the S24 copies of a base matrix */
typedef struct {
    evlm_type base;
    int n, k;
    void *src, *r16, *s24;
    evlm_tensor tb, tr, ts;
} pair;

static pair make_pair(evlm_type base, int n, int k) {
    pair p = {.base = base, .n = n, .k = k};
    p.src = make_matrix(base, n, k);
    size_t rb = evlm_row_bytes(base, k);
    evlm_type rt = evlm_type_r16(base), st = evlm_type_s24(base);
    p.r16 = aligned_alloc(64, (evlm_r16_bytes(rt, n, k) + 63) / 64 * 64);
    p.s24 = aligned_alloc(64, (evlm_r16_bytes(st, n, k) + 63) / 64 * 64);
    evlm_repack_r16(base, p.src, rb, n, k, p.r16);
    evlm_repack_s24(base, p.src, rb, n, k, p.s24);
    p.tb = view(base, n, k, p.src);
    p.tr = view(rt, n, k, p.r16);
    p.tr.nb[1] = rb; /* an R16 matrix keeps its base's row bytes */
    p.ts = view(st, n, k, p.s24);
    return p;
}

static void free_pair(pair *p) {
    free(p->src);
    free(p->r16);
    free(p->s24);
}

static void test_rows(void) {
    static const evlm_type types[] = {EVLM_TYPE_Q8_0, EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_BF16};
    for (int t = 0; t < 4; t++) {
        int k = types[t] == EVLM_TYPE_Q8_0 ? 96 : 40;
        pair p = make_pair(types[t], 37, k);
        float a[96], b[96];
        int bad = 0;
        for (int r = 0; r < p.n; r++) {
            evlm_matrix_row_f32(&p.tb, r, a);
            evlm_matrix_row_f32(&p.ts, r, b);
            for (int j = 0; j < k; j++) bad += a[j] != b[j];
            if (types[t] == EVLM_TYPE_Q8_0)
                for (int blk = 0; blk < k / EVLM_QK; blk++) {
                    char x[34], y[34];
                    evlm_r16_get_block(p.ts.type, p.s24, k, r, blk, x);
                    bad += memcmp(x, (char *)p.src + (size_t)r * p.tb.nb[1] + 34 * (size_t)blk,
                                  34) != 0;
                    evlm_r16_get_block(p.tr.type, p.r16, k, r, blk, y);
                    bad += memcmp(x, y, 34) != 0;
                }
        }
        CHECKF(bad == 0, "%s: %d rows / blocks differ from the file's", evlm_type_name(p.ts.type),
               bad);
        /* Bytes: the S24 form is 22 / 34 of Q8_0, 9 / 16 of F16 / BF16, 17 / 32 of F32 */
        CHECK(evlm_tensor_nbytes(&p.ts) * evlm_type_size(types[t]) * evlm_type_block(p.ts.type) ==
              evlm_tensor_nbytes(&p.tb) * evlm_type_size(p.ts.type) * evlm_type_block(types[t]));
        free_pair(&p);
    }
}

/* gemm_q of one table on a pair: S24 vs R16 (and its pieces split at a group boundary) */
static int check_q(const evlm_kernels *kn, const pair *p, const evlm_q8a *xq, int m) {
    size_t ldy = (size_t)p->n, ldx = (size_t)p->k / EVLM_QK;
    float *yd = calloc((size_t)m * ldy, sizeof(float)),
          *ys = calloc((size_t)m * ldy, sizeof(float));
    float *yp = calloc((size_t)m * ldy, sizeof(float));
    kn->gemm_q(yd, ldy, xq, ldx, p->r16, p->tr.nb[1], p->tr.type, m, 0, p->n, p->k);
    kn->gemm_q(ys, ldy, xq, ldx, p->s24, p->ts.nb[1], p->ts.type, m, 0, p->n, p->k);
    int split = p->n > EVLM_R16 ? EVLM_R16 : p->n;
    kn->gemm_q(yp, ldy, xq, ldx, p->s24, p->ts.nb[1], p->ts.type, m, 0, split, p->k);
    kn->gemm_q(yp, ldy, xq, ldx, p->s24, p->ts.nb[1], p->ts.type, m, split, p->n, p->k);
    int bad = memcmp(yd, ys, sizeof(float) * (size_t)m * ldy) != 0;
    bad += memcmp(yd, yp, sizeof(float) * (size_t)m * ldy) != 0;
    free(yd), free(ys), free(yp);
    return bad;
}

/* gemm (float x) of one table: S24 vs R16 vs ref's R16 */
static int check_f(const evlm_kernels *kn, const pair *p, const float *x, int m) {
    size_t ldy = (size_t)p->n, ldx = (size_t)p->k;
    float *yd = calloc((size_t)m * ldy, sizeof(float)),
          *ys = calloc((size_t)m * ldy, sizeof(float));
    float *yr = calloc((size_t)m * ldy, sizeof(float)),
          *yp = calloc((size_t)m * ldy, sizeof(float));
    float *scratch = malloc(sizeof(float) * (size_t)p->k);
    kn->gemm(yd, ldy, x, ldx, p->r16, p->tr.nb[1], p->tr.type, m, 0, p->n, p->k, scratch);
    kn->gemm(ys, ldy, x, ldx, p->s24, p->ts.nb[1], p->ts.type, m, 0, p->n, p->k, scratch);
    int split = p->n > EVLM_R16 ? EVLM_R16 : p->n;
    kn->gemm(yp, ldy, x, ldx, p->s24, p->ts.nb[1], p->ts.type, m, 0, split, p->k, scratch);
    kn->gemm(yp, ldy, x, ldx, p->s24, p->ts.nb[1], p->ts.type, m, split, p->n, p->k, scratch);
    int bad = memcmp(yd, ys, sizeof(float) * (size_t)m * ldy) != 0;
    bad += memcmp(yd, yp, sizeof(float) * (size_t)m * ldy) != 0;
    if (p->base != EVLM_TYPE_Q8_0) { /* the float R16 chain is ref's in every table */
        evlm_kernels_ref.gemm(yr, ldy, x, ldx, p->r16, p->tr.nb[1], p->tr.type, m, 0, p->n, p->k,
                              scratch);
        bad += memcmp(yd, yr, sizeof(float) * (size_t)m * ldy) != 0;
    }
    free(yd), free(ys), free(yr), free(yp), free(scratch);
    return bad;
}

static void test_kernels(const evlm_kernels *kn) {
    static const int shapes[][2] = {{16, 32}, {37, 96}, {50, 160}, {5, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        pair p = make_pair(EVLM_TYPE_Q8_0, shapes[s][0], shapes[s][1]);
        int k = p.k, bad = 0, badf = 0;
        float *x = malloc(sizeof(float) * 17 * (size_t)k);
        evlm_q8a *xq = malloc(sizeof(evlm_q8a) * 17 * (size_t)(k / EVLM_QK));
        for (int i = 0; i < 17 * k; i++) x[i] = frand();
        for (int i = 0; i < 17; i++) kn->quantize_act(x + (size_t)i * k, xq + i * (k / EVLM_QK), k);
        for (int m = 1; m <= 17; m++) {
            bad += check_q(kn, &p, xq, m);
            if (m <= 5 || m == 17) badf += check_f(kn, &p, x, m);
        }
        CHECKF(bad == 0, "%s gemm_q Q8_0_S24 %d x %d: %d of 34 comparisons differ from Q8_0_R16",
               kn->name, p.n, k, bad);
        CHECKF(badf == 0, "%s gemm (act f32) Q8_0_S24 %d x %d: %d differ", kn->name, p.n, k, badf);
        free(x), free(xq);
        free_pair(&p);
    }
    static const evlm_type fl[] = {EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_BF16};
    static const int fshapes[][2] = {{16, 8}, {37, 24}, {50, 136}, {7, 40}, {70, 264}};
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < sizeof fshapes / sizeof *fshapes; s++) {
            pair p = make_pair(fl[t], fshapes[s][0], fshapes[s][1]);
            float *x = malloc(sizeof(float) * 17 * (size_t)p.k);
            for (int i = 0; i < 17 * p.k; i++) x[i] = frand();
            int bad = 0;
            for (int m = 1; m <= 17; m++) bad += check_f(kn, &p, x, m);
            CHECKF(bad == 0, "%s gemm %s %d x %d: %d differences from the dense R16 kernel",
                   kn->name, evlm_type_name(p.ts.type), p.n, p.k, bad);
            free(x);
            free_pair(&p);
        }
}

int main(void) {
    test_check();
    test_rows();
    static const char *names[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const evlm_kernels *kn = evlm_kernels_by_name(names[i]);
        if (!kn) {
            printf("%s: not built or not supported by this CPU\n", names[i]);
            continue;
        }
        test_kernels(kn);
    }
    return test_done();
}
