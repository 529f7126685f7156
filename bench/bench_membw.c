/*
 * bench_membw.c - the machine's memory read bandwidth right now: T threads (argument, default 2)
 * each sum their own 256 MB slice of a buffer far larger than the caches with 512-bit-friendly
 * loads the compiler vectorizes, best of 5 passes. Decode is bound by this figure, and on a
 * shared VM it moves between runs, so `make bench` prints it beside the decode rates. Prints
 * one line: `read GB/s: X`.
 */
#include "core/sysinfo.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLICE ((size_t)256 << 20)

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} slice;

static void *reader(void *arg) {
    slice *s = arg;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i + 8 <= s->n; i += 8) {
        a0 += s->p[i], a1 += s->p[i + 1], a2 += s->p[i + 2], a3 += s->p[i + 3];
        a4 += s->p[i + 4], a5 += s->p[i + 5], a6 += s->p[i + 6], a7 += s->p[i + 7];
    }
    s->sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    return NULL;
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 2;
    if (T < 1 || T > 64) {
        fprintf(stderr, "bench_membw: threads must be 1..64\n");
        return 1;
    }
    uint64_t *buf = malloc(SLICE * (size_t)T);
    if (!buf) {
        fprintf(stderr, "bench_membw: out of memory\n");
        return 1;
    }
    memset(buf, 1, SLICE * (size_t)T); /* touch every page before timing */
    slice s[64];
    pthread_t th[64];
    double best = 0;
    uint64_t check = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = evlm_time_ms();
        for (int i = 0; i < T; i++) {
            s[i] = (slice){buf + (size_t)i * (SLICE / 8), SLICE / 8, 0};
            pthread_create(&th[i], NULL, reader, &s[i]);
        }
        for (int i = 0; i < T; i++) {
            pthread_join(th[i], NULL);
            check += s[i].sum;
        }
        double gbs = (double)SLICE * T / ((evlm_time_ms() - t0) * 1e6);
        if (gbs > best) best = gbs;
    }
    printf("read GB/s: %.1f (threads %d, checksum %llu)\n", best, T,
           (unsigned long long)(check & 0xff));
    free(buf);
    return 0;
}
