/*
 * bench_gemm.c - single-thread speed of the kernels whose inner loops are register tiles, for
 * every available table: the float-weight `gemm` at decode (m = 1) and prefill (m = 64, 512)
 * shapes of SmolLM2-135M (k = 576 and k = 1536); `attn_tile` at the SigLIP shape (1024 queries x
 * 1024 keys, head_dim 64) and a causal prefill (512 x 512); `attn_rows` for a GQA group (3 rows)
 * and a token tree (16 rows) after a 2000-token cache, next to attn_row once per row; and the int8
 * `gemm_q` on Q8_0 / Q4_0 / Q4_1 weights and their *_R16 forms at m = 1 and 64. Each result is
 * checked against `ref` before timing; the time is this thread's CPU time (so other processes on
 * a shared machine do not count), the median of 5 runs of ~60 ms.
 * Usage: bench_gemm [f32|f16|bf16 ...] [attn] [rows] [q8]: the float gemm for the types named,
 * and the sections named; no argument: gemm for bf16 and f32, attn and rows (bench_quant has
 * the int8 kernels' full table, wall-clock).
 * Not here: threading (the pool splits rows; see evlm bench).
 */
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "quant/quants.h"
#include "quant/repack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

/* this thread's CPU time in ms */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const evlm_kernels *kn;
    float *y, *scratch;
    const float *x;
    const void *w;
    evlm_type t;
    int m, n, k;
} gemm_call;

static void run_gemm(const gemm_call *c) {
    c->kn->gemm(c->y, (size_t)c->n, c->x, (size_t)c->k, c->w, evlm_type_size(c->t) * (size_t)c->k,
                c->t, c->m, 0, c->n, c->k, c->scratch);
}

/* median ms per call of f(arg) over 5 timed batches of ~60 ms each, after one warm-up call */
static double time_median(void (*f)(const void *), const void *arg) {
    double med[5];
    f(arg);
    for (int r = 0; r < 5; r++) {
        int reps = 0;
        double t0 = cpu_ms(), el;
        do {
            f(arg);
            reps++;
            el = cpu_ms() - t0;
        } while (el < 60);
        med[r] = el / reps;
    }
    qsort(med, 5, sizeof *med, cmp_double);
    return med[2];
}

static void run_gemm_v(const void *c) {
    run_gemm(c);
}

static int bench_gemm(const evlm_type *types, int n_types) {
    static const int ms[] = {1, 64, 512};
    static const struct {
        int n, k;
        const char *what;
    } shapes[] = {{1536, 576, "gate/up"}, {576, 1536, "down"}};
    static const char *tables[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    printf("| m x n x k | use | weights | kernel | ms/call | GFLOP/s "
           "|\n|---|---|---|---|---:|---:|\n");
    unsigned seed = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            int m = ms[mi], n = shapes[si].n, k = shapes[si].k;
            float *x = malloc(sizeof(float) * (size_t)m * k),
                  *y = malloc(sizeof(float) * (size_t)m * n);
            float *y_ref = malloc(sizeof(float) * (size_t)m * n),
                  *scratch = malloc(sizeof(float) * (size_t)k);
            void *w = malloc(sizeof(float) * (size_t)n * k);
            if (!x || !y || !y_ref || !scratch || !w) return 1;
            for (size_t i = 0; i < (size_t)m * k; i++) x[i] = frand(&seed);
            for (int ti = 0; ti < n_types; ti++) {
                evlm_type t = types[ti];
                for (size_t i = 0; i < (size_t)n * k; i++) {
                    float v = frand(&seed);
                    if (t == EVLM_TYPE_F32)
                        ((float *)w)[i] = v;
                    else if (t == EVLM_TYPE_F16)
                        ((uint16_t *)w)[i] = evlm_f32_to_f16(v);
                    else
                        ((uint16_t *)w)[i] = evlm_f32_to_bf16(v);
                }
                gemm_call c = {&evlm_kernels_ref, y_ref, scratch, x, w, t, m, n, k};
                run_gemm(&c);
                c.y = y;
                for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
                    c.kn = evlm_kernels_by_name(tables[ki]);
                    if (!c.kn || (m == 512 && !strcmp(tables[ki], "ref")))
                        continue;                                    /* ref: too slow */
                    if (!strcmp(tables[ki], "avx512vnni")) continue; /* same float gemm as avx512 */
                    run_gemm(&c);
                    double err = 0;
                    for (size_t i = 0; i < (size_t)m * n; i++)
                        err = fmax(err, fabs((double)(y[i] - y_ref[i])));
                    if (err > 1e-3) {
                        printf("| %s differs from ref by %g |\n", c.kn->name, err);
                        return 1;
                    }
                    double ms_ = time_median(run_gemm_v, &c);
                    printf("| %d x %d x %d | %s | %s | %s | %.3f | %.1f |\n", m, n, k,
                           shapes[si].what, evlm_type_name(t), c.kn->name, ms_,
                           2.0 * m * n * k / ms_ / 1e6);
                    fflush(stdout);
                }
            }
            free(x), free(y), free(y_ref), free(scratch), free(w);
        }
    return 0;
}

typedef struct {
    const evlm_kernels *kn;
    float *o, *scratch;
    const float *q, *k, *v;
    size_t ld;
    int nq, nkv, hd, kv0;
} attn_call;

static void run_attn(const void *p) {
    const attn_call *c = p;
    c->kn->attn_tile(c->o, c->ld, c->q, c->ld, c->nq, c->k, c->v, c->ld, c->nkv, c->hd, 0.125f,
                     c->kv0, c->scratch);
}

/* attn_tile at the SigLIP shape (1024 queries x 1024 keys, head_dim 64, rows of 768 floats) and
 * a causal prefill (512 x 512, kv0 = 0) */
static int bench_attn(void) {
    static const struct {
        int nq, nkv, kv0;
        const char *what;
    } shapes[] = {{1024, 1024, -1, "SigLIP"}, {512, 512, 0, "causal prefill"}};
    const int hd = 64, nmax = 1024;
    const size_t ld = 768;
    unsigned seed = 7;
    float *q = malloc(sizeof(float) * ld * nmax), *k = malloc(sizeof(float) * ld * nmax);
    float *v = malloc(sizeof(float) * ld * nmax), *o = malloc(sizeof(float) * ld * nmax);
    float *o_ref = malloc(sizeof(float) * ld * nmax);
    float *scratch = malloc(sizeof(float) * evlm_attn_tile_scratch(nmax, hd));
    if (!q || !k || !v || !o || !o_ref || !scratch) return 1;
    for (size_t i = 0; i < ld * nmax; i++)
        q[i] = 2.0f * frand(&seed), k[i] = 2.0f * frand(&seed), v[i] = frand(&seed);
    static const char *tables[] = {"ref", "avx2", "avx512", "neon"};
    printf("\n| attn_tile, head_dim %d | kernel | ms/head | GFLOP/s |\n|---|---|---:|---:|\n", hd);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        attn_call c = {&evlm_kernels_ref, o_ref, scratch,       q, k, v, ld, shapes[si].nq,
                       shapes[si].nkv,    hd,    shapes[si].kv0};
        run_attn(&c);
        c.o = o;
        /* score and output products over the keys each query sees */
        double flop =
            4.0 * hd * (shapes[si].kv0 < 0 ? (double)c.nq * c.nkv : 0.5 * c.nq * (c.nq + 1.0));
        for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
            c.kn = evlm_kernels_by_name(tables[ki]);
            if (!c.kn) continue;
            run_attn(&c);
            double err = 0;
            for (int i = 0; i < c.nq; i++)
                for (int d = 0; d < hd; d++)
                    err = fmax(err,
                               fabs((double)(o[(size_t)i * ld + d] - o_ref[(size_t)i * ld + d])));
            if (err > 1e-4) {
                printf("| %s attn_tile differs from ref by %g |\n", c.kn->name, err);
                return 1;
            }
            double ms_ = time_median(run_attn, &c);
            printf("| %d x %d %s | %s | %.3f | %.1f |\n", c.nq, c.nkv, shapes[si].what, c.kn->name,
                   ms_, flop / ms_ / 1e6);
            fflush(stdout);
        }
    }
    free(q), free(k), free(v), free(o), free(o_ref), free(scratch);
    return 0;
}

typedef struct {
    const evlm_kernels *kn;
    float *const *out;
    const float *const *q;
    const float *k, *v;
    float *scores;
    const int *n_kv;
    const uint8_t *const *mask;
    size_t ld;
    int nq, n_pre, hd;
    bool one_by_one; /* attn_row per row instead of one attn_rows call */
} rows_call;

static void run_rows(const void *p) {
    const rows_call *c = p;
    if (!c->one_by_one) {
        c->kn->attn_rows(c->out, c->q, c->nq, c->k, c->v, c->ld, c->n_kv, c->n_pre, c->mask, c->hd,
                         0.125f, c->scores);
        return;
    }
    uint8_t m1[2048 + EVLM_ATTN_ROWS];
    for (int i = 0; i < c->nq; i++) {
        const uint8_t *mi = NULL;
        if (c->mask && c->mask[i]) {
            for (int t = 0; t < c->n_kv[i]; t++) m1[t] = t < c->n_pre || c->mask[i][t - c->n_pre];
            mi = m1;
        }
        c->kn->attn_row(c->out[i], c->q[i], c->k, c->v, c->n_kv[i], c->hd, c->ld, 0.125f, mi,
                        c->scores);
    }
}

/* attn_rows after a 2000-token cache (head_dim 64, rows of 192 floats: 3 kv heads): a GQA group
 * of 3 query rows seeing every cached key, and a token tree of 16 rows whose row i sees the
 * cache, itself and the tree tokens j < i with (i - j) % 3 != 2 (an irregular mask); next to
 * attn_row once per row */
static int bench_rows(void) {
    const int hd = 64, n_cache = 2000, nmax = n_cache + EVLM_ATTN_ROWS;
    const size_t ld = 192;
    unsigned seed = 11;
    float *q = malloc(sizeof(float) * ld * EVLM_ATTN_ROWS), *k = malloc(sizeof(float) * ld * nmax);
    float *v = malloc(sizeof(float) * ld * nmax), *o = malloc(sizeof(float) * ld * EVLM_ATTN_ROWS);
    float *o_ref = malloc(sizeof(float) * ld * EVLM_ATTN_ROWS);
    float *scores = malloc(sizeof(float) * (size_t)nmax * EVLM_ATTN_ROWS);
    if (!q || !k || !v || !o || !o_ref || !scores) return 1;
    for (size_t i = 0; i < ld * EVLM_ATTN_ROWS; i++) q[i] = 2.0f * frand(&seed);
    for (size_t i = 0; i < ld * nmax; i++) k[i] = 2.0f * frand(&seed), v[i] = frand(&seed);
    uint8_t tree[EVLM_ATTN_ROWS][EVLM_ATTN_ROWS];
    const uint8_t *masks[EVLM_ATTN_ROWS];
    float *outs[EVLM_ATTN_ROWS], *outs_ref[EVLM_ATTN_ROWS];
    const float *qs[EVLM_ATTN_ROWS];
    int n_kv_group[EVLM_ATTN_ROWS], n_kv_tree[EVLM_ATTN_ROWS];
    for (int i = 0; i < EVLM_ATTN_ROWS; i++) {
        for (int j = 0; j < EVLM_ATTN_ROWS; j++)
            tree[i][j] = (uint8_t)(j == i || (j < i && (i - j) % 3 != 2));
        masks[i] = tree[i];
        outs[i] = o + (size_t)i * ld, outs_ref[i] = o_ref + (size_t)i * ld;
        qs[i] = q + (size_t)i * ld;
        n_kv_group[i] = n_cache;
        n_kv_tree[i] = n_cache + i + 1;
    }
    static const char *tables[] = {"ref", "avx2", "avx512", "neon"};
    printf("\n| attn_rows, head_dim %d, %d cached keys | kernel | call | ms/call "
           "|\n|---|---|---|---:|\n",
           hd, n_cache);
    for (int tr = 0; tr < 2; tr++) {
        rows_call c = {&evlm_kernels_ref,
                       outs_ref,
                       qs,
                       k,
                       v,
                       scores,
                       tr ? n_kv_tree : n_kv_group,
                       tr ? masks : NULL,
                       ld,
                       tr ? EVLM_ATTN_ROWS : 3,
                       n_cache,
                       hd,
                       false};
        run_rows(&c);
        c.out = outs;
        for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
            c.kn = evlm_kernels_by_name(tables[ki]);
            if (!c.kn) continue;
            for (int ob = 0; ob < 2; ob++) {
                c.one_by_one = ob;
                run_rows(&c);
                double err = 0;
                for (int i = 0; i < c.nq; i++)
                    for (int d = 0; d < hd; d++)
                        err = fmax(err, fabs((double)(outs[i][d] - outs_ref[i][d])));
                if (err > 1e-4) {
                    printf("| %s attn_rows differs from ref by %g |\n", c.kn->name, err);
                    return 1;
                }
                double ms_ = time_median(run_rows, &c);
                printf("| %d rows, %s | %s | %s | %.4f |\n", c.nq, tr ? "token tree" : "GQA group",
                       c.kn->name, ob ? "attn_row per row" : "attn_rows", ms_);
                fflush(stdout);
            }
        }
    }
    free(q), free(k), free(v), free(o), free(o_ref), free(scores);
    return 0;
}

typedef struct {
    const evlm_kernels *kn;
    float *y;
    const evlm_q8a *x;
    const void *w;
    size_t ldw;
    evlm_type t;
    int m, n, k;
} q8_call;

static void run_q8(const void *p) {
    const q8_call *c = p;
    c->kn->gemm_q(c->y, (size_t)c->n, c->x, (size_t)c->k / EVLM_QK, c->w, c->ldw, c->t, c->m, 0,
                  c->n, c->k);
}

/* gemm_q: int8 activations against Q8_0 / Q4_0 / Q4_1 weights in the ggml layout and in the
 * 16-row interleaved one (*_R16), SmolLM2-135M's gate and down shapes at m = 1 and 64. The avx512
 * table runs avx2's int8 kernels (not timed twice); ref only at m = 1. */
static int bench_q8(void) {
    static const int ms[] = {1, 64};
    static const struct {
        int n, k;
        const char *what;
    } shapes[] = {{1536, 576, "gate/up"}, {576, 1536, "down"}};
    static const evlm_type types[] = {EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1};
    static const char *tables[] = {"ref", "avx2", "avx512vnni", "neon"};
    printf("\n| m x n x k | use | weights | kernel | ms/call | GOPS | weight GB/s |\n"
           "|---|---|---|---|---:|---:|---:|\n");
    unsigned seed = 3;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            int m = ms[mi], n = shapes[si].n, k = shapes[si].k;
            float *x = malloc(sizeof(float) * (size_t)m * k),
                  *wf = malloc(sizeof(float) * (size_t)k);
            float *y = malloc(sizeof(float) * (size_t)m * n),
                  *y_ref = malloc(sizeof(float) * (size_t)m * n);
            evlm_q8a *xq = malloc(sizeof(evlm_q8a) * (size_t)m * (k / EVLM_QK));
            void *w = malloc(sizeof(float) * (size_t)n * k),
                 *wr = malloc(sizeof(float) * (size_t)n * k);
            if (!x || !wf || !y || !y_ref || !xq || !w || !wr) return 1;
            for (size_t i = 0; i < (size_t)m * k; i++) x[i] = frand(&seed);
            for (int i = 0; i < m; i++)
                evlm_quantize_act_ref(x + (size_t)i * k, xq + (size_t)i * (k / EVLM_QK), k);
            for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
                evlm_type t = types[ti];
                size_t ldw = evlm_row_bytes(t, k);
                for (int r = 0; r < n; r++) {
                    for (int j = 0; j < k; j++) wf[j] = frand(&seed);
                    evlm_quantize_row(t, wf, (char *)w + (size_t)r * ldw, k);
                }
                evlm_repack_r16(t, w, ldw, n, k, wr);
                q8_call c = {&evlm_kernels_ref, y_ref, xq, w, ldw, t, m, n, k};
                run_q8(&c);
                c.y = y;
                double mx = 1e-30;
                for (size_t i = 0; i < (size_t)m * n; i++) mx = fmax(mx, fabs((double)y_ref[i]));
                for (int r16 = 0; r16 < 2; r16++) {
                    c.w = r16 ? wr : w;
                    c.t = r16 ? evlm_type_r16(t) : t;
                    for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
                        c.kn = evlm_kernels_by_name(tables[ki]);
                        if (!c.kn || (m > 1 && !strcmp(tables[ki], "ref"))) continue;
                        run_q8(&c);
                        double err = 0;
                        for (size_t i = 0; i < (size_t)m * n; i++)
                            err = fmax(err, fabs((double)(y[i] - y_ref[i])));
                        if (err / mx > 1e-4) {
                            printf("| %s gemm_q %s differs from ref by %g |\n", c.kn->name,
                                   evlm_type_name(c.t), err);
                            return 1;
                        }
                        double ms_ = time_median(run_q8, &c);
                        printf("| %d x %d x %d | %s | %s | %s | %.4f | %.1f | %.2f |\n", m, n, k,
                               shapes[si].what, evlm_type_name(c.t), c.kn->name, ms_,
                               2.0 * m * n * k / ms_ / 1e6, (double)ldw * n / ms_ / 1e6);
                        fflush(stdout);
                    }
                }
            }
            free(x), free(wf), free(y), free(y_ref), free(xq), free(w), free(wr);
        }
    return 0;
}

int main(int argc, char **argv) {
    evlm_type types[3] = {EVLM_TYPE_BF16, EVLM_TYPE_F32, EVLM_TYPE_F16};
    int n_types = 2;
    bool attn = argc == 1, rows = argc == 1, q8 = false;
    if (argc > 1) {
        n_types = 0;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "attn"))
                attn = true;
            else if (!strcmp(argv[i], "rows"))
                rows = true;
            else if (!strcmp(argv[i], "q8"))
                q8 = true;
            else if (n_types < 3)
                types[n_types++] = !strcmp(argv[i], "f32")   ? EVLM_TYPE_F32
                                   : !strcmp(argv[i], "f16") ? EVLM_TYPE_F16
                                                             : EVLM_TYPE_BF16;
        }
    }
    if (n_types > 0 && bench_gemm(types, n_types)) return 1;
    if (attn && bench_attn()) return 1;
    if (rows && bench_rows()) return 1;
    return q8 && bench_q8() ? 1 : 0;
}
