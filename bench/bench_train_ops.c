/*
 * bench_train_ops.c - speed of the training ops (train/ops.h) against the machine's FMA peak.
 *
 * The peak: a register-only loop of independent FMAs (AVX-512 zmm and AVX2 ymm where cpuid has
 * them, compiled for those ISAs with target attributes), on 1 and 2 threads at once; the best
 * is "peak". Then the three GEMM layouts of a linear layer at the SmolLM2-135M training shapes
 * (batch 8 x 256 tokens = 2048 rows; hidden 576, FFN 1536): y = x w^T, dx = dy w, dW += dy^T x,
 * through evlm_top_linear / evlm_top_linear_bwd on a pool of 1 and 2 threads, and the
 * element-wise backward ops. Wall-clock time, median of 5 runs after a warm-up; prints Markdown
 * tables. The machine may be shared: rerun for stable numbers.
 * Usage: bench_train_ops [threads_max (default 2)]. EVLM_ISA picks the kernel table.
 * Not here: the model's step (tdecoder), attention (see the ops' test for correctness).
 */
#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "train/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- FMA peak ---------------------------------------------------------------------------- */
#if defined(__x86_64__)
#include <immintrin.h>
#define PEAK_ITERS 200000000L /* FMA instructions per accumulator row: ~0.1-0.3 s */

__attribute__((target("avx512f,fma"))) static double peak_avx512(long iters) {
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long t = 0; t < iters; t++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    return (double)out[0] + (double)iters * 12 * 32;
}

__attribute__((target("avx2,fma"))) static double peak_avx2(long iters) {
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long t = 0; t < iters; t++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return (double)out[0] + (double)iters * 12 * 16;
}

typedef struct {
    int wide; /* 1: avx512 */
    long iters;
    double flops, secs;
} peak_arg;

static void *peak_thread(void *p) {
    peak_arg *a = p;
    double t0 = now_s();
    double f = a->wide ? peak_avx512(a->iters) : peak_avx2(a->iters);
    a->secs = now_s() - t0;
    a->flops = (double)a->iters * 12 * (a->wide ? 32 : 16); /* f keeps the loop alive */
    if (f < 0) a->flops = 0;
    return NULL;
}

/* GFLOP/s of nth threads running the loop at once (sum over threads) */
static double peak_gflops(int wide, int nth) {
    pthread_t th[16];
    peak_arg args[16];
    double tot = 0;
    for (int i = 0; i < nth; i++) {
        args[i] = (peak_arg){.wide = wide, .iters = PEAK_ITERS / (wide ? 2 : 1)};
        pthread_create(&th[i], NULL, peak_thread, &args[i]);
    }
    for (int i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
        tot += args[i].flops / args[i].secs;
    }
    return tot * 1e-9;
}
#endif

/* ---- ops --------------------------------------------------------------------------------- */
typedef struct {
    const evlm_tops *o;
    int kind; /* 0 fwd, 1 dx, 2 dW, 3 rmsnorm_bwd, 4 swiglu_bwd, 5 gelu_bwd */
    float *x, *w, *y, *dy, *dx, *dw, *aux;
    int m, n, k;
} op_call;

static void run_op(const op_call *c) {
    switch (c->kind) {
    case 0:
        evlm_top_linear(c->o, c->y, c->x, c->w, NULL, c->m, c->n, c->k);
        break;
    case 1:
        evlm_top_linear_bwd(c->o, c->dx, false, NULL, NULL, c->dy, c->x, c->w, c->m, c->n, c->k);
        break;
    case 2:
        evlm_top_linear_bwd(c->o, NULL, false, c->dw, NULL, c->dy, c->x, c->w, c->m, c->n, c->k);
        break;
    case 3:
        evlm_top_rmsnorm_bwd(c->o, c->dx, NULL, c->dy, c->x, c->w, c->aux, c->m, c->k);
        break;
    case 4:
        evlm_top_swiglu_bwd(c->o, c->dx, c->dw, c->dy, c->x, c->y, (size_t)c->m * c->k);
        break;
    default:
        evlm_top_gelu_tanh_bwd(c->o, c->dx, c->dy, c->x, (size_t)c->m * c->k);
        break;
    }
}

static double time_op(const op_call *c) {
    double t[5];
    run_op(c);
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        run_op(c);
        t[r] = now_s() - t0;
    }
    qsort(t, 5, sizeof *t, cmp_double);
    return t[2];
}

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof *p);
    unsigned s = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

int main(int argc, char **argv) {
    int tmax = argc > 1 ? atoi(argv[1]) : 2;
    if (tmax < 1 || tmax > 16) tmax = 2;
    const evlm_kernels *kn = evlm_kernels_get();
    double peak[17] = {0};
    printf("kernel table: %s\n\n", kn->name);
#if defined(__x86_64__)
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f"), has2 = __builtin_cpu_supports("avx2");
    printf("| threads | AVX-512 FMA GFLOP/s | AVX2 FMA GFLOP/s |\n|---|---|---|\n");
    for (int t = 1; t <= tmax; t++) {
        double p512 = has512 ? peak_gflops(1, t) : 0, p2 = has2 ? peak_gflops(0, t) : 0;
        peak[t] = p512 > p2 ? p512 : p2;
        printf("| %d | %.1f | %.1f |\n", t, p512, p2);
    }
    printf("\n");
#else
    printf("FMA peak: not measured on this architecture (percentages left out)\n\n");
#endif
    const int M = 2048;
    static const struct {
        const char *name;
        int kind, n, k;
    } cases[] = {
        {"y = x w^T", 0, 1536, 576},    {"y = x w^T", 0, 576, 1536}, {"y = x w^T", 0, 576, 576},
        {"dx = dy w", 1, 1536, 576},    {"dx = dy w", 1, 576, 1536}, {"dW += dy^T x", 2, 1536, 576},
        {"dW += dy^T x", 2, 576, 1536}, {"rmsnorm_bwd", 3, 0, 576},  {"swiglu_bwd", 4, 0, 1536},
        {"gelu_tanh_bwd", 5, 0, 1536},
    };
    size_t big = (size_t)M * 1536;
    float *x = rnd(big), *w = rnd((size_t)1536 * 1536), *y = rnd(big), *dy = rnd(big);
    float *dx = rnd(big), *dw = rnd(big), *aux = rnd(M);
    for (int i = 0; i < M; i++) aux[i] = 1.0f + fabsf(aux[i]);
    printf("| op | m x n x k | threads | ms | GFLOP/s | %% of FMA peak "
           "|\n|---|---|---|---|---|---|\n");
    for (int t = 1; t <= tmax; t++) {
        evlm_pool *pool = NULL;
        evlm_tops o;
        if (evlm_pool_new(t, &pool) != EVLM_OK ||
            evlm_tops_init(&o, pool, NULL, 1536, 256, 64) != EVLM_OK) {
            fprintf(stderr, "bench_train_ops: %s\n", evlm_last_error());
            return 1;
        }
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            op_call oc = {&o, cases[c].kind, x, w, y, dy, dx, dw, aux, M, cases[c].n, cases[c].k};
            double s = time_op(&oc);
            if (cases[c].kind <= 2) {
                /* m x n x k of the GEMM itself: (2048, n, k), (2048, k, n), (n, k, 2048) */
                int gm = cases[c].kind == 2 ? cases[c].n : M;
                int gn = cases[c].kind == 0 ? cases[c].n : cases[c].k;
                int gk = cases[c].kind == 0 ? cases[c].k : cases[c].kind == 1 ? cases[c].n : M;
                double gf = 2.0 * gm * gn * gk / s * 1e-9;
                printf("| %s | %d x %d x %d | %d | %.2f | %.1f |", cases[c].name, gm, gn, gk, t,
                       s * 1e3, gf);
                if (peak[t] > 0)
                    printf(" %.0f %% |\n", 100.0 * gf / peak[t]);
                else
                    printf(" - |\n");
            } else {
                double gb = (double)M * cases[c].k * 4 * (cases[c].kind == 4 ? 5 : 3) / s * 1e-9;
                printf("| %s | %d x %d | %d | %.3f | (%.1f GB/s) | - |\n", cases[c].name, M,
                       cases[c].k, t, s * 1e3, gb);
            }
        }
        evlm_tops_release(&o);
        evlm_pool_free(pool);
    }
    free(x), free(w), free(y), free(dy), free(dx), free(dw), free(aux);
    return 0;
}
