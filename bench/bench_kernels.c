/*
 * bench_kernels.c - throughput of the matmul kernels of every available table, checked against
 * `ref` before timing (llm.c dev/cpu style). Prints a Markdown table: shape, weight type,
 * kernel, ms per call, GFLOP/s, weight GB/s.
 */
#include "core/sysinfo.h"
#include "core/tensor.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

int main(void) {
    static const struct {
        int m, n, k;
        const char *what;
    } shapes[] = {
        {1, 576, 576, "decode q_proj (SmolLM2-135M)"},
        {1, 1536, 576, "decode gate (SmolLM2-135M)"},
        {64, 1536, 576, "prefill 64 gate (SmolLM2-135M)"},
    };
    static const evlm_type types[] = {EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_BF16};
    static const char *tables[] = {"ref", "avx2", "avx512", "neon"};
    printf("| shape (m x n x k) | use | weights | kernel | ms/call | GFLOP/s | weight GB/s |\n");
    printf("|---|---|---|---|---:|---:|---:|\n");
    unsigned seed = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int m = shapes[si].m, n = shapes[si].n, k = shapes[si].k;
        float *x = malloc(sizeof(float) * (size_t)m * k),
              *y = malloc(sizeof(float) * (size_t)m * n);
        float *y_ref = malloc(sizeof(float) * (size_t)m * n),
              *scratch = malloc(sizeof(float) * (size_t)k);
        float *wf = malloc(sizeof(float) * (size_t)n * k);
        void *w = malloc(sizeof(float) * (size_t)n * k);
        for (size_t i = 0; i < (size_t)m * k; i++) x[i] = frand(&seed);
        for (size_t i = 0; i < (size_t)n * k; i++) wf[i] = frand(&seed);
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            evlm_type t = types[ti];
            size_t es = evlm_type_size(t);
            for (size_t i = 0; i < (size_t)n * k; i++) {
                if (t == EVLM_TYPE_F32)
                    ((float *)w)[i] = wf[i];
                else if (t == EVLM_TYPE_F16)
                    ((uint16_t *)w)[i] = evlm_f32_to_f16(wf[i]);
                else
                    ((uint16_t *)w)[i] = evlm_f32_to_bf16(wf[i]);
            }
            evlm_kernels_ref.gemm(y_ref, n, x, k, w, es * k, t, m, 0, n, k, scratch);
            for (size_t ki = 0; ki < sizeof tables / sizeof *tables; ki++) {
                const evlm_kernels *kn = evlm_kernels_by_name(tables[ki]);
                if (!kn) continue;
                kn->gemm(y, n, x, k, w, es * k, t, m, 0, n, k, scratch);
                double err = 0;
                for (size_t i = 0; i < (size_t)m * n; i++)
                    err = fmax(err, fabs((double)(y[i] - y_ref[i])));
                if (err > 1e-3) {
                    printf("| %s: %s differs from ref by %g |\n", shapes[si].what, kn->name, err);
                    return 1;
                }
                for (int w_ = 0; w_ < 3; w_++)
                    kn->gemm(y, n, x, k, w, es * k, t, m, 0, n, k, scratch);
                int reps = 0;
                double t0 = evlm_time_ms(), el;
                do {
                    kn->gemm(y, n, x, k, w, es * k, t, m, 0, n, k, scratch);
                    reps++;
                    el = evlm_time_ms() - t0;
                } while (el < 300);
                double ms = el / reps;
                printf("| %d x %d x %d | %s | %s | %s | %.3f | %.2f | %.2f |\n", m, n, k,
                       shapes[si].what, evlm_type_name(t), kn->name, ms, 2.0 * m * n * k / ms / 1e6,
                       (double)es * n * k / ms / 1e6);
            }
        }
        free(x), free(y), free(y_ref), free(scratch), free(wf), free(w);
    }
    return 0;
}
