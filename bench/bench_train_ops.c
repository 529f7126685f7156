/*
 * bench_train_ops.c - speed of the training ops (train/ops.h) against the machine's FMA peak.
 *
 * The peak: a register-only loop of independent FMAs (AVX-512 zmm and AVX2 ymm where cpuid has
 * them, compiled for those ISAs with target attributes), on 1 and 2 threads at once; the best
 * is "peak". Then the three GEMM layouts of a linear layer at the SmolLM2-135M training shapes
 * (batch 8 x 256 tokens = 2048 rows; hidden 576, FFN 1536): y = x w^T, dx = dy w, dW += dy^T x,
 * through evlm_top_linear / evlm_top_linear_bwd on a pool of 1 and 2 threads, and the
 * element-wise backward ops. Wall-clock time, the best of 5 runs after a warm-up (the peak: best
 * of 3), so that other load on a shared machine counts as little as it can; Markdown tables.
 * Usage: bench_train_ops [threads_max (default 2)]. EVLM_ISA picks the kernel table.
 * Last, one SmolLM2-135M decoder layer forward + backward through the ops (norms, linears, RoPE,
 * causal attention, SwiGLU) against the peak: the share of the 40 % target the ops reach.
 * Not here: the model's step (tdecoder: embeddings, LM head, loss), the optimizer.
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
#define PEAK_ITERS 60000000L /* loop trips (AVX2; AVX-512 half): ~0.1 s each */

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

/* GFLOP/s of nth threads running the loop at once (sum over threads), best of 3 */
static double peak_once(int wide, int nth);
static double peak_gflops(int wide, int nth) {
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double g = peak_once(wide, nth);
        if (g > best) best = g;
    }
    return best;
}

static double peak_once(int wide, int nth) {
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
    int kind; /* 0 fwd, 1 dx, 2 dW, 3 rmsnorm_bwd, 4 swiglu_bwd, 5 gelu_bwd, 6 attn, 7 attn_bwd */
    float *x, *w, *y, *dy, *dx, *dw, *aux, *lse;
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
    case 5:
        evlm_top_gelu_tanh_bwd(c->o, c->dx, c->dy, c->x, (size_t)c->m * c->k);
        break;
    default: {
        /* SmolLM2-135M: 8 sequences of 256, 9 heads / 3 kv heads of 64, causal; q = x (m, 576),
         * k / v from w (m, 192 each), out = y, dq / dk / dv into dx / dw */
        static const int off[8] = {0, 256, 512, 768, 1024, 1280, 1536, 1792};
        static const int len[8] = {256, 256, 256, 256, 256, 256, 256, 256};
        evlm_top_attn_shape sh = {8, off, len, 9, 3, 64, true, NULL, 0.125f};
        const float *k = c->w, *v = c->w + (size_t)c->m * 192;
        if (c->kind == 6)
            evlm_top_attn(c->o, &sh, c->y, c->lse, c->x, k, v);
        else
            evlm_top_attn_bwd(c->o, &sh, c->dx, c->dw, c->dw + (size_t)c->m * 192, c->dy, c->x, k,
                              v, c->y, c->lse);
    } break;
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
    return t[0];
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

/* ---- one decoder layer of SmolLM2-135M, forward and backward, through the ops ------------ */
enum { L_T = 2048, L_S = 256, L_D = 576, L_F = 1536, L_H = 9, L_KV = 3, L_HD = 64 };

typedef struct {
    float *x, *h, *rs1, *q, *k, *v, *a, *lse, *x2, *h2, *rs2, *g, *u, *s, *y;
    float *wq, *wk, *wv, *wo, *wg, *wu, *wd, *n1, *n2, *cs, *sn;
    float *dwq, *dwk, *dwv, *dwo, *dwg, *dwu, *dwd, *dn1, *dn2;
    float *dy, *dx2, *ds, *dg, *du, *dh, *da, *dq, *dk, *dv, *dx;
    int32_t *pos;
    int off[L_T / L_S], len[L_T / L_S];
} layer_bufs;

static void layer_step(const evlm_tops *o, layer_bufs *b) {
    evlm_top_attn_shape sh = {L_T / L_S, b->off, b->len, L_H, L_KV, L_HD, true, NULL, 0.125f};
    const size_t TD = (size_t)L_T * L_D, TF = (size_t)L_T * L_F;
    /* forward */
    evlm_top_rmsnorm(o, b->h, b->rs1, b->x, b->n1, L_T, L_D, 1e-5f);
    evlm_top_linear(o, b->q, b->h, b->wq, NULL, L_T, L_D, L_D);
    evlm_top_linear(o, b->k, b->h, b->wk, NULL, L_T, L_KV * L_HD, L_D);
    evlm_top_linear(o, b->v, b->h, b->wv, NULL, L_T, L_KV * L_HD, L_D);
    evlm_top_rope(o, b->q, L_T, L_H, L_HD, b->cs, b->sn, b->pos, false);
    evlm_top_rope(o, b->k, L_T, L_KV, L_HD, b->cs, b->sn, b->pos, false);
    evlm_top_attn(o, &sh, b->a, b->lse, b->q, b->k, b->v);
    memcpy(b->x2, b->x, TD * sizeof(float));
    evlm_top_linear(o, b->y, b->a, b->wo, NULL, L_T, L_D, L_D);
    evlm_top_add(o, b->x2, b->y, TD);
    evlm_top_rmsnorm(o, b->h2, b->rs2, b->x2, b->n2, L_T, L_D, 1e-5f);
    evlm_top_linear(o, b->g, b->h2, b->wg, NULL, L_T, L_F, L_D);
    evlm_top_linear(o, b->u, b->h2, b->wu, NULL, L_T, L_F, L_D);
    evlm_top_swiglu(o, b->s, b->g, b->u, TF);
    evlm_top_linear(o, b->y, b->s, b->wd, NULL, L_T, L_D, L_F);
    /* backward from dy (the residual stream's gradient) */
    memcpy(b->dx2, b->dy, TD * sizeof(float));
    evlm_top_linear_bwd(o, b->ds, false, b->dwd, NULL, b->dy, b->s, b->wd, L_T, L_D, L_F);
    evlm_top_swiglu_bwd(o, b->dg, b->du, b->ds, b->g, b->u, TF);
    evlm_top_linear_bwd(o, b->dh, false, b->dwg, NULL, b->dg, b->h2, b->wg, L_T, L_F, L_D);
    evlm_top_linear_bwd(o, b->dh, true, b->dwu, NULL, b->du, b->h2, b->wu, L_T, L_F, L_D);
    evlm_top_rmsnorm_bwd(o, b->dx2, b->dn2, b->dh, b->x2, b->n2, b->rs2, L_T, L_D);
    evlm_top_linear_bwd(o, b->da, false, b->dwo, NULL, b->dx2, b->a, b->wo, L_T, L_D, L_D);
    evlm_top_attn_bwd(o, &sh, b->dq, b->dk, b->dv, b->da, b->q, b->k, b->v, b->a, b->lse);
    evlm_top_rope(o, b->dq, L_T, L_H, L_HD, b->cs, b->sn, b->pos, true);
    evlm_top_rope(o, b->dk, L_T, L_KV, L_HD, b->cs, b->sn, b->pos, true);
    evlm_top_linear_bwd(o, b->dh, false, b->dwq, NULL, b->dq, b->h, b->wq, L_T, L_D, L_D);
    evlm_top_linear_bwd(o, b->dh, true, b->dwk, NULL, b->dk, b->h, b->wk, L_T, L_KV * L_HD, L_D);
    evlm_top_linear_bwd(o, b->dh, true, b->dwv, NULL, b->dv, b->h, b->wv, L_T, L_KV * L_HD, L_D);
    memcpy(b->dx, b->dx2, TD * sizeof(float));
    evlm_top_rmsnorm_bwd(o, b->dx, b->dn1, b->dh, b->x, b->n1, b->rs1, L_T, L_D);
}

static float *rnd(size_t n);

/* seconds per layer step (best of 5); flops: the model FLOPs, 6 x parameters x tokens
 * (the linears' forward, dx and dW; norms' weights too), mfu_flops; hw_flops adds the causal
 * attention's useful half (forward 2 GEMMs, backward 5 with the recomputed scores) */
static double layer_bench(const evlm_tops *o, double *mfu_flops, double *hw_flops) {
    layer_bufs b;
    size_t TD = (size_t)L_T * L_D, TF = (size_t)L_T * L_F, TK = (size_t)L_T * L_KV * L_HD;
    float **bufs[] = {&b.x,  &b.h,   &b.q,  &b.a,  &b.x2, &b.h2, &b.y,
                      &b.dy, &b.dx2, &b.dh, &b.da, &b.dq, &b.dx};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) *bufs[i] = rnd(TD);
    float **fb[] = {&b.g, &b.u, &b.s, &b.ds, &b.dg, &b.du};
    for (size_t i = 0; i < sizeof fb / sizeof *fb; i++) *fb[i] = rnd(TF);
    b.k = rnd(TK), b.v = rnd(TK), b.dk = rnd(TK), b.dv = rnd(TK);
    b.rs1 = rnd(L_T), b.rs2 = rnd(L_T), b.lse = rnd((size_t)L_H * L_T);
    b.wq = rnd((size_t)L_D * L_D), b.wo = rnd((size_t)L_D * L_D), b.dwq = rnd((size_t)L_D * L_D);
    b.dwo = rnd((size_t)L_D * L_D), b.wk = rnd((size_t)L_D * L_KV * L_HD);
    b.wv = rnd((size_t)L_D * L_KV * L_HD), b.dwk = rnd((size_t)L_D * L_KV * L_HD);
    b.dwv = rnd((size_t)L_D * L_KV * L_HD);
    b.wg = rnd((size_t)L_D * L_F), b.wu = rnd((size_t)L_D * L_F), b.wd = rnd((size_t)L_D * L_F);
    b.dwg = rnd((size_t)L_D * L_F), b.dwu = rnd((size_t)L_D * L_F), b.dwd = rnd((size_t)L_D * L_F);
    b.n1 = rnd(L_D), b.n2 = rnd(L_D), b.dn1 = rnd(L_D), b.dn2 = rnd(L_D);
    b.cs = rnd((size_t)L_S * L_HD / 2), b.sn = rnd((size_t)L_S * L_HD / 2);
    b.pos = malloc(sizeof(int32_t) * L_T);
    for (int i = 0; i < L_T; i++) b.pos[i] = i % L_S;
    for (int s = 0; s < L_T / L_S; s++) b.off[s] = s * L_S, b.len[s] = L_S;
    for (size_t i = 0; i < TD; i++) b.x[i] *= 4.0f, b.dy[i] *= 0.01f;
    for (int i = 0; i < L_D; i++) b.n1[i] += 1.0f, b.n2[i] += 1.0f;
    double t[5];
    layer_step(o, &b);
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        layer_step(o, &b);
        t[r] = now_s() - t0;
    }
    qsort(t, 5, sizeof *t, cmp_double);
    double mm = 2.0 * L_T * L_D * (2.0 * L_D + 2.0 * L_KV * L_HD + 3.0 * L_F);
    double at = 2.0 * (double)L_S * L_S * L_HD * L_H * (L_T / L_S); /* QK^T + PV, causal half */
    *mfu_flops = 6.0 * ((double)L_D * (2 * L_D + 2 * L_KV * L_HD + 3 * L_F) + 2 * L_D) * L_T;
    *hw_flops = 3.0 * mm + 3.5 * at;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(*bufs[i]);
    for (size_t i = 0; i < sizeof fb / sizeof *fb; i++) free(*fb[i]);
    float *rest[] = {b.k,   b.v,   b.dk,  b.dv, b.rs1, b.rs2, b.lse, b.wq, b.wo,
                     b.dwq, b.dwo, b.wk,  b.wv, b.dwk, b.dwv, b.wg,  b.wu, b.wd,
                     b.dwg, b.dwu, b.dwd, b.n1, b.n2,  b.dn1, b.dn2, b.cs, b.sn};
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++) free(rest[i]);
    free(b.pos);
    return t[0];
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
        {"gelu_tanh_bwd", 5, 0, 1536},  {"attention fwd", 6, 0, 0},  {"attention bwd", 7, 0, 0},
    };
    size_t big = (size_t)M * 1536;
    float *x = rnd(big), *w = rnd((size_t)1536 * 1536), *y = rnd(big), *dy = rnd(big);
    float *dx = rnd(big), *dw = rnd(big), *aux = rnd(M), *lse = rnd((size_t)9 * M);
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
            op_call oc = {&o, cases[c].kind, x,   w, y,          dy,        dx,
                          dw, aux,           lse, M, cases[c].n, cases[c].k};
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
            } else if (cases[c].kind >= 6) {
                /* the causal half: QK^T and PV forward, 5 GEMMs of that size backward */
                double f = 2.0 * 256 * 256 * 64 * 9 * 8 * (cases[c].kind == 6 ? 1.0 : 2.5);
                printf("| %s | 8 x 256 tokens, 9 / 3 heads of 64 | %d | %.2f | %.1f |",
                       cases[c].name, t, s * 1e3, f / s * 1e-9);
                if (peak[t] > 0)
                    printf(" %.0f %% |\n", 100.0 * f / s * 1e-9 / peak[t]);
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
    printf("\nOne SmolLM2-135M decoder layer, forward + backward (2048 tokens = 8 x 256, "
           "causal):\n\n");
    printf("| threads | ms | GFLOP/s (with attention) | MFU: 6 P T / time / peak |\n"
           "|---|---|---|---|\n");
    for (int t = 1; t <= tmax; t++) {
        evlm_pool *pool = NULL;
        evlm_tops o;
        if (evlm_pool_new(t, &pool) != EVLM_OK ||
            evlm_tops_init(&o, pool, NULL, L_F, L_S, L_HD) != EVLM_OK) {
            fprintf(stderr, "bench_train_ops: %s\n", evlm_last_error());
            return 1;
        }
        double mf, hf, s = layer_bench(&o, &mf, &hf);
        printf("| %d | %.1f | %.1f |", t, s * 1e3, hf / s * 1e-9);
        if (peak[t] > 0)
            printf(" %.0f %% |\n", 100.0 * mf / s * 1e-9 / peak[t]);
        else
            printf(" - |\n");
        evlm_tops_release(&o);
        evlm_pool_free(pool);
    }
    free(x), free(w), free(y), free(dy), free(dx), free(dw), free(aux), free(lse);
    return 0;
}
