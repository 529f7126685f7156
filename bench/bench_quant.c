/*
 * bench_quant.c - throughput of the quantized-weight kernels of every available table: gemm_q
 * (int8 activations) for Q8_0 / Q4_0 / Q4_1 and the k-quants Q4_K / Q6_K at decode (m = 1: weight
 * GB/s, the memory-bound number) and prefill (m = 64: GOPS, 2 m n k per call) shapes, and the
 * dequantizing `gemm` (act f32) at m = 1 for comparison, each also on the 16-row interleaved copy
 * of the weights (the *_R16 types models use after load; SIMD tables only). Single thread. Each
 * kernel is checked against `ref` before it is timed (same bound as tests/test_kernels.c, loosely).
 * Prints a Markdown table.
 */
#include "core/sysinfo.h"
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "quant/repack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

/* ms per call of f(arg), after 3 warm-up calls, repeated for at least 300 ms */
static double time_ms(void (*f)(void *), void *arg) {
    for (int i = 0; i < 3; i++) f(arg);
    int reps = 0;
    double t0 = evlm_time_ms(), el;
    do {
        f(arg);
        reps++;
        el = evlm_time_ms() - t0;
    } while (el < 300);
    return el / reps;
}

typedef struct {
    const evlm_kernels *kn;
    float *y, *x, *scratch;
    evlm_q8a *xq;
    void *w;
    size_t ldw;
    evlm_type wt;
    int m, n, k;
} call;

static void run_gemm_q(void *p) {
    call *c = p;
    c->kn->gemm_q(c->y, (size_t)c->n, c->xq, (size_t)c->k / 32, c->w, c->ldw, c->wt, c->m, 0, c->n,
                  c->k);
}

static void run_gemm(void *p) {
    call *c = p;
    c->kn->gemm(c->y, (size_t)c->n, c->x, (size_t)c->k, c->w, c->ldw, c->wt, c->m, 0, c->n, c->k,
                c->scratch);
}

static void run_quantize(void *p) {
    call *c = p;
    for (int i = 0; i < c->m; i++)
        c->kn->quantize_act(c->x + (size_t)i * c->k, c->xq + (size_t)i * (c->k / 32), c->k);
}

/* max |y - ref| / max |ref|: a smoke check (the tests hold the real bound) */
static double rel_err(const float *y, const float *yr, size_t n) {
    double e = 0, mx = 1e-30;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)y[i] - (double)yr[i]));
        mx = fmax(mx, fabs((double)yr[i]));
    }
    return e / mx;
}

/* The same product on the 16-row interleaved copy of the weights (quant/repack.h, what models
 * use after load), checked against ref on the ggml layout (yr). Returns nonzero on a mismatch. */
static int bench_r16(call *c, void *wr, const float *yr, size_t wbytes) {
    static const char *tables[] = {"avx2", "avx512", "avx512vnni", "neon"}; /* ref: slow, known */
    evlm_type t = c->wt, rt = evlm_type_r16(t);
    int m = c->m, n = c->n, k = c->k;
    evlm_repack_r16(t, c->w, c->ldw, n, k, wr);
    call r = *c;
    r.w = wr;
    r.wt = rt;
    for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
        const evlm_kernels *kn = evlm_kernels_by_name(tables[ki]);
        if (!kn) continue;
        r.kn = kn;
        run_gemm_q(&r);
        if (rel_err(r.y, yr, (size_t)m * n) > 1e-4) {
            printf("| %s gemm_q %s differs from ref |\n", kn->name, evlm_type_name(rt));
            return 1;
        }
        double ms = time_ms(run_gemm_q, &r);
        printf("| %d x %d x %d | %s | %s | gemm_q | %.4f | %.2f | %.1f |\n", m, n, k,
               evlm_type_name(rt), kn->name, ms, (double)wbytes / ms / 1e6,
               2.0 * m * n * k / ms / 1e6);
        if (m == 1) {
            double msf = time_ms(run_gemm, &r);
            printf("| %d x %d x %d | %s | %s | gemm (f32 act) | %.4f | %.2f | %.1f |\n", m, n, k,
                   evlm_type_name(rt), kn->name, msf, (double)wbytes / msf / 1e6,
                   2.0 * m * n * k / msf / 1e6);
        }
    }
    return 0;
}

int main(void) {
    static const struct {
        int m, n, k;
    } shapes[] = {{1, 576, 576},   {1, 1536, 1536}, {1, 8960, 1536},
                  {1, 1536, 8960}, {64, 576, 576},  {64, 1536, 1536}};
    static const evlm_type types[] = {EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1,
                                      EVLM_TYPE_Q4_K, EVLM_TYPE_Q6_K};
    static const char *tables[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    printf("| m x n x k | weights | kernel | path | ms/call | weight GB/s | GOPS |\n");
    printf("|---|---|---|---|---:|---:|---:|\n");
    unsigned seed = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int m = shapes[si].m, n = shapes[si].n, k = shapes[si].k;
        float *x = malloc(sizeof(float) * (size_t)m * k),
              *wf = malloc(sizeof(float) * (size_t)n * k);
        float *y = malloc(sizeof(float) * (size_t)m * n),
              *yr = malloc(sizeof(float) * (size_t)m * n);
        float *scratch = malloc(sizeof(float) * (size_t)k);
        evlm_q8a *xq = malloc(sizeof(evlm_q8a) * (size_t)m * (k / 32));
        void *w = malloc(sizeof(float) * (size_t)n * k),
             *wr = malloc(sizeof(float) * (size_t)n * k);
        for (size_t i = 0; i < (size_t)m * k; i++) x[i] = frand(&seed);
        for (size_t i = 0; i < (size_t)n * k; i++) wf[i] = frand(&seed);
        for (int i = 0; i < m; i++)
            evlm_quantize_act_ref(x + (size_t)i * k, xq + (size_t)i * (k / 32), k);
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            evlm_type t = types[ti];
            if (k % evlm_type_block(t)) continue; /* k-quants: whole super-blocks */
            size_t ldw = evlm_row_bytes(t, k), wbytes = ldw * (size_t)n;
            for (int r = 0; r < n; r++)
                evlm_quantize_row(t, wf + (size_t)r * k, (char *)w + (size_t)r * ldw, k);
            call c = {&evlm_kernels_ref, yr, x, scratch, xq, w, ldw, t, m, n, k};
            run_gemm_q(&c);
            for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
                const evlm_kernels *kn = evlm_kernels_by_name(tables[ki]);
                if (!kn) continue;
                c.kn = kn;
                c.y = y;
                run_gemm_q(&c);
                if (rel_err(y, yr, (size_t)m * n) > 1e-4) {
                    printf("| %s gemm_q %s differs from ref |\n", kn->name, evlm_type_name(t));
                    return 1;
                }
                double ms = time_ms(run_gemm_q, &c);
                printf("| %d x %d x %d | %s | %s | gemm_q | %.4f | %.2f | %.1f |\n", m, n, k,
                       evlm_type_name(t), kn->name, ms, (double)wbytes / ms / 1e6,
                       2.0 * m * n * k / ms / 1e6);
                if (m == 1) { /* the act f32 path: the same product from float activations */
                    double msf = time_ms(run_gemm, &c);
                    printf("| %d x %d x %d | %s | %s | gemm (f32 act) | %.4f | %.2f | %.1f |\n", m,
                           n, k, evlm_type_name(t), kn->name, msf, (double)wbytes / msf / 1e6,
                           2.0 * m * n * k / msf / 1e6);
                }
            }
            if (bench_r16(&c, wr, yr, wbytes)) return 1;
        }
        if (m > 1)
            for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
                const evlm_kernels *kn = evlm_kernels_by_name(tables[ki]);
                if (!kn) continue;
                call c = {kn, y, x, scratch, xq, w, 0, EVLM_TYPE_Q8_0, m, n, k};
                double ms = time_ms(run_quantize, &c);
                printf("| %d x %d | act | %s | quantize_act | %.4f | %.2f (f32 in) | |\n", m, k,
                       kn->name, ms, 4.0 * m * k / ms / 1e6);
            }
        free(x), free(wf), free(y), free(yr), free(scratch), free(xq), free(w), free(wr);
    }
    return 0;
}
