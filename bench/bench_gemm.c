/*
 * bench_gemm.c - single-thread GFLOP/s of the float-weight `gemm` entry of every available table
 * at decode (m = 1) and prefill (m = 64, 512) shapes of SmolLM2-135M (k = 576 and k = 1536), and
 * of the `attn_tile` entry at the SigLIP shape (1024 queries x 1024 keys, head_dim 64). Each
 * result is checked against `ref` before timing; the time is this thread's CPU time (so other
 * processes on a shared machine do not count), the median of 5 runs of ~60 ms. Usage: bench_gemm [f32|f16|bf16 ...]
 * (default bf16 and f32). Not here: threading (the pool splits rows; see evlm bench).
 */
#include "core/tensor.h"
#include "kernels/kernels.h"

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

/* median ms per call over 5 timed batches of ~60 ms each */
static double time_gemm(const gemm_call *c) {
    double med[5];
    run_gemm(c);
    for (int r = 0; r < 5; r++) {
        int reps = 0;
        double t0 = cpu_ms(), el;
        do {
            run_gemm(c);
            reps++;
            el = cpu_ms() - t0;
        } while (el < 60);
        med[r] = el / reps;
    }
    qsort(med, 5, sizeof *med, cmp_double);
    return med[2];
}

static int bench_gemm(const evlm_type *types, int n_types) {
    static const int ms[] = {1, 64, 512};
    static const struct {
        int n, k;
        const char *what;
    } shapes[] = {{1536, 576, "gate/up"}, {576, 1536, "down"}};
    static const char *tables[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    printf("| m x n x k | use | weights | kernel | ms/call | GFLOP/s |\n|---|---|---|---|---:|---:|\n");
    unsigned seed = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            int m = ms[mi], n = shapes[si].n, k = shapes[si].k;
            float *x = malloc(sizeof(float) * (size_t)m * k), *y = malloc(sizeof(float) * (size_t)m * n);
            float *y_ref = malloc(sizeof(float) * (size_t)m * n), *scratch = malloc(sizeof(float) * (size_t)k);
            void *w = malloc(sizeof(float) * (size_t)n * k);
            if (!x || !y || !y_ref || !scratch || !w) return 1;
            for (size_t i = 0; i < (size_t)m * k; i++) x[i] = frand(&seed);
            for (int ti = 0; ti < n_types; ti++) {
                evlm_type t = types[ti];
                for (size_t i = 0; i < (size_t)n * k; i++) {
                    float v = frand(&seed);
                    if (t == EVLM_TYPE_F32) ((float *)w)[i] = v;
                    else if (t == EVLM_TYPE_F16) ((uint16_t *)w)[i] = evlm_f32_to_f16(v);
                    else ((uint16_t *)w)[i] = evlm_f32_to_bf16(v);
                }
                gemm_call c = {&evlm_kernels_ref, y_ref, scratch, x, w, t, m, n, k};
                run_gemm(&c);
                c.y = y;
                for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
                    c.kn = evlm_kernels_by_name(tables[ki]);
                    if (!c.kn || (m == 512 && !strcmp(tables[ki], "ref"))) continue; /* ref: too slow */
                    if (!strcmp(tables[ki], "avx512vnni")) continue; /* same float gemm as avx512 */
                    run_gemm(&c);
                    double err = 0;
                    for (size_t i = 0; i < (size_t)m * n; i++) err = fmax(err, fabs((double)(y[i] - y_ref[i])));
                    if (err > 1e-3) {
                        printf("| %s differs from ref by %g |\n", c.kn->name, err);
                        return 1;
                    }
                    double ms_ = time_gemm(&c);
                    printf("| %d x %d x %d | %s | %s | %s | %.3f | %.1f |\n", m, n, k, shapes[si].what,
                           evlm_type_name(t), c.kn->name, ms_, 2.0 * m * n * k / ms_ / 1e6);
                    fflush(stdout);
                }
            }
            free(x), free(y), free(y_ref), free(scratch), free(w);
        }
    return 0;
}

/* attn_tile at the SigLIP shape: 1024 queries x 1024 keys, head_dim 64, rows of 768 floats */
static int bench_attn(void) {
    const int nq = 1024, nkv = 1024, hd = 64;
    const size_t ld = 768;
    unsigned seed = 7;
    float *q = malloc(sizeof(float) * ld * nq), *k = malloc(sizeof(float) * ld * nkv);
    float *v = malloc(sizeof(float) * ld * nkv), *o = malloc(sizeof(float) * ld * nq);
    float *o_ref = malloc(sizeof(float) * ld * nq);
    float *scratch = malloc(sizeof(float) * evlm_attn_tile_scratch(nkv, hd));
    if (!q || !k || !v || !o || !o_ref || !scratch) return 1;
    for (size_t i = 0; i < ld * nq; i++) q[i] = 2.0f * frand(&seed), k[i] = 2.0f * frand(&seed), v[i] = frand(&seed);
    float scale = 0.125f;
    evlm_kernels_ref.attn_tile(o_ref, ld, q, ld, nq, k, v, ld, nkv, hd, scale, -1, scratch);
    static const char *tables[] = {"ref", "avx2", "avx512", "neon"};
    printf("\n| attn_tile %d x %d, head_dim %d | ms/head | GFLOP/s |\n|---|---:|---:|\n", nq, nkv, hd);
    for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
        const evlm_kernels *kn = evlm_kernels_by_name(tables[ki]);
        if (!kn) continue;
        kn->attn_tile(o, ld, q, ld, nq, k, v, ld, nkv, hd, scale, -1, scratch);
        double err = 0;
        for (int i = 0; i < nq; i++)
            for (int d = 0; d < hd; d++)
                err = fmax(err, fabs((double)(o[(size_t)i * ld + d] - o_ref[(size_t)i * ld + d])));
        if (err > 1e-4) {
            printf("| %s attn_tile differs from ref by %g |\n", kn->name, err);
            return 1;
        }
        double med[5];
        for (int r = 0; r < 5; r++) {
            int reps = 0;
            double t0 = cpu_ms(), el;
            do {
                kn->attn_tile(o, ld, q, ld, nq, k, v, ld, nkv, hd, scale, -1, scratch);
                reps++;
                el = cpu_ms() - t0;
            } while (el < 60);
            med[r] = el / reps;
        }
        qsort(med, 5, sizeof *med, cmp_double);
        printf("| %s | %.3f | %.1f |\n", kn->name, med[2], 4.0 * nq * nkv * hd / med[2] / 1e6);
        fflush(stdout);
    }
    free(q), free(k), free(v), free(o), free(o_ref), free(scratch);
    return 0;
}

int main(int argc, char **argv) {
    evlm_type types[3] = {EVLM_TYPE_BF16, EVLM_TYPE_F32, EVLM_TYPE_F16};
    int n_types = 2;
    if (argc > 1) {
        n_types = 0;
        for (int i = 1; i < argc && n_types < 3; i++) {
            if (!strcmp(argv[i], "attn")) continue;
            types[n_types++] = !strcmp(argv[i], "f32") ? EVLM_TYPE_F32
                               : !strcmp(argv[i], "f16") ? EVLM_TYPE_F16
                                                         : EVLM_TYPE_BF16;
        }
    }
    if (n_types > 0 && bench_gemm(types, n_types)) return 1;
    return bench_attn();
}
