/*
 * test_greedy_head.c - the greedy head (model/greedy_head.h): evlm_greedy_argmax gives, bit for
 * bit, the argmax of the full float head's logits (evlm_matmul, then evlm__argmax: lowest id on
 * ties, NaN skipped) for F32 / F16 / BF16 heads with a partial last group, and
 *   - random heads and activations: few candidate groups, no fallback to the full head;
 *   - exact ties between rows in different groups: the lowest id;
 *   - near-ties that the int8 copy orders the other way round (the test counts them: the bound
 *     and the exact pass are what get these right);
 *   - activation outliers, zero rows, NaN and huge activations (the full head takes over).
 * Runs under every kernel table (EVLM_ISA).
 */
#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "model/greedy_head.h"
#include "quant/repack.h"
#include "test.h"

#include <stdint.h>

int32_t evlm__argmax(const float *x, int n);

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void) {
    double u = uniform() + 1e-300, v = uniform();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

typedef struct {
    evlm_tensor t;
    evlm_greedy_head h;
    int n, k;
} head;

/* W (n x k floats, rounded to type) as an R16 tensor with its int8 copy */
static void head_make(head *hd, const float *w, int n, int k, evlm_type type, evlm_pool *pool) {
    size_t es = evlm_type_size(type), row = es * (size_t)k;
    char *src = malloc(row * (size_t)n);
    for (size_t i = 0; i < (size_t)n * k; i++) {
        if (type == EVLM_TYPE_F32)
            memcpy(src + i * 4, &w[i], 4);
        else {
            uint16_t v = type == EVLM_TYPE_F16 ? evlm_f32_to_f16(w[i]) : evlm_f32_to_bf16(w[i]);
            memcpy(src + i * 2, &v, 2);
        }
    }
    evlm_type rt = evlm_type_r16(type);
    void *dst = aligned_alloc(64, (evlm_r16_bytes(rt, n, k) + 63) / 64 * 64);
    evlm_repack_r16(type, src, row, n, k, dst);
    free(src);
    memset(hd, 0, sizeof *hd);
    hd->t.name = "head";
    hd->t.type = rt;
    hd->t.n_dims = 2;
    hd->t.ne[0] = k;
    hd->t.ne[1] = n;
    hd->t.ne[2] = hd->t.ne[3] = 1;
    hd->t.nb[0] = es;
    hd->t.nb[1] = row;
    hd->t.data = dst;
    hd->n = n;
    hd->k = k;
    CHECK_OK(evlm_greedy_head_init(&hd->h, &hd->t, pool));
}

static void head_free(head *hd) {
    evlm_greedy_head_release(&hd->h);
    free(hd->t.data);
}

typedef struct {
    evlm_matmul_env env;
    evlm_greedy_work wk;
    float *y;
    int approx_wrong; /* rows whose int8 argmax is not the exact one */
    int64_t fallback, groups,
        calls; /* of the greedy head's calls: rows sent to the full head, candidate groups */
} bench;

static void bench_init(bench *b, evlm_pool *pool, int n, int k) {
    memset(b, 0, sizeof *b);
    int nth = evlm_pool_size(pool);
    b->env.pool = pool;
    b->env.scratch_stride = (size_t)k;
    b->env.scratch = malloc(sizeof(float) * (size_t)k * (size_t)nth);
    b->env.qbuf_blocks = evlm_matmul_qbuf_blocks(EVLM_GREEDY_ROWS, k);
    b->env.qbuf = malloc(sizeof(evlm_q8a) * b->env.qbuf_blocks);
    b->y = malloc(sizeof(float) * (size_t)n * EVLM_GREEDY_ROWS);
    CHECK_OK(evlm_greedy_work_init(&b->wk, n, k));
}

static void bench_free(bench *b) {
    free(b->env.scratch);
    free(b->env.qbuf);
    free(b->y);
    evlm_greedy_work_release(&b->wk);
}

/* evlm_greedy_argmax on m rows of x against the full head's argmax; returns the expected ids in
 * want */
static void check_rows(bench *b, head *hd, const float *x, int m, const char *what, int32_t *want) {
    const int n = hd->n, k = hd->k;
    int32_t got[EVLM_GREEDY_ROWS], full[EVLM_GREEDY_ROWS], exp[EVLM_GREEDY_ROWS];
    evlm_matmul(&b->env, b->y, (size_t)n, x, (size_t)k, &hd->t, NULL, m);
    for (int i = 0; i < m; i++) exp[i] = evlm__argmax(b->y + (size_t)i * n, n);
    int64_t f0 = b->wk.n_full, g0 = b->wk.n_groups;
    evlm_greedy_argmax(&hd->h, &hd->t, &b->env, &b->wk, x, (size_t)k, m, got);
    b->fallback += b->wk.n_full - f0;
    b->groups += b->wk.n_groups - g0;
    b->calls++;
    evlm_greedy_argmax(NULL, &hd->t, &b->env, &b->wk, x, (size_t)k, m, full);
    for (int i = 0; i < m; i++) {
        CHECKF(got[i] == exp[i], "%s, row %d of %d: greedy head id %d, full head argmax %d", what,
               i, m, got[i], exp[i]);
        CHECKF(full[i] == exp[i], "%s, row %d: full-head path id %d, argmax %d", what, i, full[i],
               exp[i]);
    }
    /* how the int8 copy alone would have chosen (for the near-tie count) */
    evlm_matmul_env e8 = b->env;
    evlm_matmul(&e8, b->y, (size_t)n, x, (size_t)k, &hd->h.q, NULL, m);
    for (int i = 0; i < m; i++) b->approx_wrong += evlm__argmax(b->y + (size_t)i * n, n) != exp[i];
    if (want) memcpy(want, exp, sizeof(int32_t) * (size_t)m);
}

static void test_random(evlm_pool *pool, evlm_type type, int n, int k) {
    float *w = malloc(sizeof(float) * (size_t)n * k),
          *x = malloc(sizeof(float) * EVLM_GREEDY_ROWS * (size_t)k);
    for (size_t i = 0; i < (size_t)n * k; i++) w[i] = 0.05f * gauss();
    head hd;
    head_make(&hd, w, n, k, type, pool);
    bench b;
    bench_init(&b, pool, n, k);
    char what[96];
    for (int trial = 0; trial < 12; trial++) {
        int m = 1 + trial % EVLM_GREEDY_ROWS;
        /* activations like a hidden state: one row of the head (a confident pick) plus noise */
        for (int i = 0; i < m; i++) {
            int r = (int)(uniform() * n);
            for (int j = 0; j < k; j++)
                x[(size_t)i * k + j] = 20 * w[(size_t)r * k + j] + 0.3f * gauss();
        }
        snprintf(what, sizeof what, "%s %dx%d random, trial %d", evlm_type_name(type), n, k, trial);
        check_rows(&b, &hd, x, m, what, NULL);
    }
    int groups = (n + 15) / 16;
    CHECKF(b.fallback == 0 || n < 2000, "%s: %ld rows fell back to the full head", what,
           (long)b.fallback);
    CHECKF(b.groups <= b.calls * groups / 4, "%s: %ld candidate groups in %ld calls of %d", what,
           (long)b.groups, (long)b.calls, groups);
    printf("%s: %.1f candidate groups of %d per call\n", what, (double)b.groups / (double)b.calls,
           groups);
    bench_free(&b);
    head_free(&hd);
    free(w);
    free(x);
}

/* exact ties across groups, and near-ties the int8 copy gets wrong */
static void test_ties(evlm_pool *pool) {
    const int n = 1000, k = 64;
    float *w = malloc(sizeof(float) * (size_t)n * k), x[EVLM_GREEDY_ROWS * 64];
    for (size_t i = 0; i < (size_t)n * k; i++) w[i] = 0.05f * gauss();
    /* rows 5, 300 and 999 equal; x along them: a three-way exact tie, lowest id wins */
    for (int j = 0; j < k; j++) w[300 * k + j] = w[999 * k + j] = w[5 * k + j] = 0.2f * gauss();
    head hd;
    head_make(&hd, w, n, k, EVLM_TYPE_F32, pool);
    bench b;
    bench_init(&b, pool, n, k);
    for (int j = 0; j < k; j++) x[j] = w[5 * k + j];
    int32_t want[EVLM_GREEDY_ROWS];
    check_rows(&b, &hd, x, 1, "three equal rows", want);
    CHECKF(want[0] == 5, "the tie test does not tie (argmax %d)", want[0]);
    head_free(&hd);

    /* near-ties: 400 pairs (row 2i, row 2i + 501) that differ in the last bits of a few values;
     * activations along one pair: the int8 copy cannot tell the pair apart, the float chain can */
    for (int p = 0; p < 240; p++) {
        int a = 2 * p, c = 2 * p + 501;
        for (int j = 0; j < k; j++)
            w[(size_t)c * k + j] = w[(size_t)a * k + j] * (1 + 3e-7f * gauss());
    }
    head_make(&hd, w, n, k, EVLM_TYPE_F32, pool);
    b.approx_wrong = 0;
    for (int trial = 0; trial < 60; trial++) {
        int m = 1 + trial % EVLM_GREEDY_ROWS;
        for (int i = 0; i < m; i++) {
            int a = 2 * (int)(uniform() * 240);
            for (int j = 0; j < k; j++) x[i * k + j] = 10 * w[(size_t)a * k + j];
        }
        check_rows(&b, &hd, x, m, "near-tie pair", NULL);
    }
    printf("near-ties: %d rows where the int8 copy alone picks another id\n", b.approx_wrong);
    CHECKF(b.approx_wrong > 0,
           "no near-tie fooled the int8 copy: the test does not exercise the bound");
    bench_free(&b);
    head_free(&hd);
    free(w);
}

/* The int8 copy orders two rows the wrong way round by a wide margin, once through the activation
 * blocks (an outlier makes a block's scale so coarse that small values become 0) and once through
 * a weight block (same with a weight outlier): only a bound of the right size keeps the true
 * winner among the candidates. */
static void test_flips(evlm_pool *pool) {
    const int n = 300, k = 64;
    float *w = calloc((size_t)n * k, sizeof(float)), x[64];
    for (size_t i = 0; i < (size_t)n * k; i++) w[i] = 1e-3f * gauss();
    /* activations: x0 = 1000, x1..31 = 1 (quantized to 0), block 1 zero */
    for (int j = 0; j < k; j++) x[j] = j == 0 ? 1000.0f : j < 32 ? 1.0f : 0.0f;
    for (int j = 0; j < k; j++)
        w[40 * k + j] = j >= 1 && j < 32 ? 0.1f : 0.0f;                /* exact 3.1, int8 0 */
    for (int j = 0; j < k; j++) w[7 * k + j] = j == 0 ? 0.003f : 0.0f; /* exact 3.0, int8 3.0 */
    head hd;
    head_make(&hd, w, n, k, EVLM_TYPE_F32, pool);
    bench b;
    bench_init(&b, pool, n, k);
    int32_t want[1];
    check_rows(&b, &hd, x, 1, "activation block flip", want);
    CHECKF(want[0] == 40 && b.approx_wrong == 1,
           "activation flip not set up (argmax %d, int8 wrong %d)", want[0], b.approx_wrong);
    head_free(&hd);
    /* weights: row 40 = 1 at column 0, 0.003 at 1..31 (int8 0); row 7 = 0.09 at column 32 */
    for (int j = 0; j < k; j++) w[40 * k + j] = j == 0 ? 1.0f : j < 32 ? 0.003f : 0.0f;
    for (int j = 0; j < k; j++) w[7 * k + j] = j == 32 ? 0.09f : 0.0f;
    for (int j = 0; j < k; j++) x[j] = j >= 1 && j < 33 ? 1.0f : 0.0f;
    head_make(&hd, w, n, k, EVLM_TYPE_F32, pool);
    b.approx_wrong = 0;
    check_rows(&b, &hd, x, 1, "weight block flip", want);
    CHECKF(want[0] == 40 && b.approx_wrong == 1,
           "weight flip not set up (argmax %d, int8 wrong %d)", want[0], b.approx_wrong);
    bench_free(&b);
    head_free(&hd);
    free(w);
}

/* outliers, zeros, NaN, overflow-sized activations */
static void test_odd_inputs(evlm_pool *pool) {
    const int n = 777, k = 96;
    float *w = malloc(sizeof(float) * (size_t)n * k), x[4 * 96];
    for (size_t i = 0; i < (size_t)n * k; i++) w[i] = 0.05f * gauss();
    head hd;
    head_make(&hd, w, n, k, EVLM_TYPE_BF16, pool);
    bench b;
    bench_init(&b, pool, n, k);
    for (int j = 0; j < 4 * k; j++) x[j] = gauss();
    x[7] = 3e4f; /* one outlier: a coarse activation block */
    x[k + 5] = -1e5f;
    check_rows(&b, &hd, x, 2, "activation outliers", NULL);
    memset(x, 0, sizeof x);
    int32_t want[4];
    check_rows(&b, &hd, x, 1, "zero activations", want);
    CHECK(want[0] == 0);
    int64_t full0 = b.fallback;
    for (int j = 0; j < 2 * k; j++) x[j] = gauss();
    x[k + 3] = NAN;
    check_rows(&b, &hd, x, 2, "a NaN activation", NULL);
    x[k + 3] = 1e38f;
    check_rows(&b, &hd, x, 2, "an activation of 1e38", NULL);
    CHECKF(b.fallback >= full0 + 4, "non-finite or huge activations did not take the full head");
    bench_free(&b);
    head_free(&hd);
    free(w);
}

static void test_refused(evlm_pool *pool) {
    float w[64 * 48];
    for (int i = 0; i < 64 * 48; i++) w[i] = 0.1f * gauss();
    head hd;
    head_make(&hd, w, 64, 32, EVLM_TYPE_F32, pool);
    head_free(&hd);
    /* not interleaved, or k not a multiple of 32, or non-finite weights: no int8 copy */
    evlm_tensor t = {.name = "plain",
                     .type = EVLM_TYPE_F32,
                     .n_dims = 2,
                     .ne = {32, 64, 1, 1},
                     .nb = {4, 128, 0, 0},
                     .data = w};
    evlm_greedy_head h;
    CHECK(evlm_greedy_head_init(&h, &t, pool) == EVLM_ERR_ARG);
    w[100] = INFINITY;
    void *dst = aligned_alloc(64, evlm_r16_bytes(EVLM_TYPE_F32_R16, 64, 32));
    evlm_repack_r16(EVLM_TYPE_F32, w, 128, 64, 32, dst);
    t.type = EVLM_TYPE_F32_R16;
    t.data = dst;
    CHECK(evlm_greedy_head_init(&h, &t, pool) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "non-finite") != NULL);
    free(dst);
}

int main(void) {
    evlm_pool *pool;
    CHECK_OK(evlm_pool_new(2, &pool));
    printf("kernels: %s\n", evlm_kernels_get()->name);
    test_random(pool, EVLM_TYPE_BF16, 3001, 256);
    test_random(pool, EVLM_TYPE_F16, 1030, 64);
    test_random(pool, EVLM_TYPE_F32, 517, 128);
    test_ties(pool);
    test_flips(pool);
    test_odd_inputs(pool);
    test_refused(pool);
    evlm_pool_free(pool);
    return test_done();
}
