/*
 * bench_sparse24.c - the 2:4 kernels against the dense R16 ones on the same 2:4-zeroed weights,
 * one thread: gemm_q on Q8_0_R16 vs Q8_0_S24 and gemm on F16_R16 vs F16_S24, at decode (m = 1,
 * over 8 matrices of 8960 x 1536 so the weights stream from DRAM, not L3: the bandwidth-bound
 * case) and prefill (m = 64, one matrix) shapes, for every SIMD table this CPU runs. The two forms
 * alternate over 5 rounds; medians. Prints a Markdown table: ms per pass, the bytes each form
 * reads per pass and their GB/s, and the 2:4 / dense speed ratio.
 * BENCH_TABLE=NAME runs one table.
 * Not here: correctness (tests/test_sparse24.c), whole models (scripts/bench_sparse24.sh).
 */
#include "core/sysinfo.h"
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "quant/repack.h"
#include "quant/sparse24.h"
#include "quant/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_MAT 8
#define ROWS  8960
#define COLS  1536

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

/* a 2:4 matrix of type base (2 smallest of 4 zeroed), as its R16 and S24 forms */
static void make(evlm_type base, unsigned seed, void **r16, void **s24) {
    float *row = malloc(sizeof(float) * COLS);
    size_t rb = evlm_row_bytes(base, COLS);
    char *src = malloc(rb * ROWS);
    for (int r = 0; r < ROWS; r++) {
        for (int j = 0; j < COLS; j++) row[j] = frand(&seed);
        for (int q = 0; q < COLS / 4; q++) {
            float *g = row + 4 * q;
            int lo0 = 0, lo1;
            for (int j = 1; j < 4; j++)
                if (fabsf(g[j]) < fabsf(g[lo0])) lo0 = j;
            lo1 = lo0 ? 0 : 1;
            for (int j = 0; j < 4; j++)
                if (j != lo0 && fabsf(g[j]) < fabsf(g[lo1])) lo1 = j;
            g[lo0] = g[lo1] = 0.0f;
        }
        evlm_quantize_row(base, row, src + (size_t)r * rb, COLS);
    }
    size_t b1 = evlm_r16_bytes(evlm_type_r16(base), ROWS, COLS);
    size_t b2 = evlm_r16_bytes(evlm_type_s24(base), ROWS, COLS);
    *r16 = aligned_alloc(64, (b1 + 63) / 64 * 64);
    *s24 = aligned_alloc(64, (b2 + 63) / 64 * 64);
    evlm_repack_r16(base, src, rb, ROWS, COLS, *r16);
    evlm_repack_s24(base, src, rb, ROWS, COLS, *s24);
    free(src);
    free(row);
}

typedef struct {
    const evlm_kernels *kn;
    evlm_type wt;
    void **w;
    int n_mat, m;
    float *y, *x, *scratch;
    evlm_q8a *xq;
} job;

static void pass(const job *j) {
    size_t ldw = evlm_row_bytes(evlm_type_is_s24(j->wt) ? j->wt : evlm_type_r16_base(j->wt), COLS);
    for (int i = 0; i < j->n_mat; i++) {
        if (evlm_type_is_quant(j->wt))
            j->kn->gemm_q(j->y, ROWS, j->xq, COLS / EVLM_QK, j->w[i], ldw, j->wt, j->m, 0, ROWS,
                          COLS);
        else
            j->kn->gemm(j->y, ROWS, j->x, COLS, j->w[i], ldw, j->wt, j->m, 0, ROWS, COLS,
                        j->scratch);
    }
}

static double time_pass(const job *j) {
    pass(j);
    int reps = 0;
    double t0 = evlm_time_ms(), el;
    do {
        pass(j);
        reps++;
        el = evlm_time_ms() - t0;
    } while (el < 400);
    return el / reps;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    static const char *names[] = {"avx2", "avx512", "avx512vnni", "neon"};
    static const evlm_type bases[] = {EVLM_TYPE_Q8_0, EVLM_TYPE_F16};
    void *r16[2][N_MAT], *s24[2][N_MAT];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < N_MAT; i++) make(bases[b], 1234u + (unsigned)i, &r16[b][i], &s24[b][i]);
    float *x = malloc(sizeof(float) * 64 * COLS), *y = malloc(sizeof(float) * 64 * ROWS);
    float *scratch = malloc(sizeof(float) * COLS);
    evlm_q8a *xq = malloc(sizeof(evlm_q8a) * 64 * (COLS / EVLM_QK));
    unsigned seed = 99;
    for (int i = 0; i < 64 * COLS; i++) x[i] = frand(&seed);
    printf("| table | weights | m | dense R16 ms | 2:4 ms | dense GB/s | 2:4 GB/s | 2:4 / dense "
           "speed |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const evlm_kernels *kn = evlm_kernels_by_name(names[t]);
        const char *only = getenv("BENCH_TABLE"); /* one table, e.g. avx512vnni */
        if (!kn || (only && *only && strcmp(only, names[t]))) continue;
        for (int i = 0; i < 64; i++)
            kn->quantize_act(x + (size_t)i * COLS, xq + (size_t)i * (COLS / EVLM_QK), COLS);
        for (int b = 0; b < 2; b++)
            for (int mi = 0; mi < 2; mi++) {
                int m = mi ? 64 : 1, nm = mi ? 1 : N_MAT;
                job jd = {kn, evlm_type_r16(bases[b]), r16[b], nm, m, y, x, scratch, xq};
                job js = {kn, evlm_type_s24(bases[b]), s24[b], nm, m, y, x, scratch, xq};
                double td[5], ts[5];
                for (int r = 0; r < 5; r++) {
                    td[r] = time_pass(&jd);
                    ts[r] = time_pass(&js);
                }
                qsort(td, 5, sizeof *td, cmp);
                qsort(ts, 5, sizeof *ts, cmp);
                double bd = (double)evlm_r16_bytes(jd.wt, ROWS, COLS) * nm,
                       bs = (double)evlm_r16_bytes(js.wt, ROWS, COLS) * nm;
                printf("| %s | %s | %d | %.3f | %.3f | %.1f | %.1f | %.2fx |\n", kn->name,
                       evlm_type_name(bases[b]), m, td[2], ts[2], bd / td[2] / 1e6,
                       bs / ts[2] / 1e6, td[2] / ts[2]);
                fflush(stdout);
            }
    }
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < N_MAT; i++) free(r16[b][i]), free(s24[b][i]);
    free(x), free(y), free(scratch), free(xq);
    return 0;
}
