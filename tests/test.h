/*
 * test.h - the minimal test harness: CHECK macros, a pass/fail tally and the shared-data
 * lookup. A test binary returns 0 (all passed), 1 (failures) or 77 (skipped: CTest's
 * SKIP_RETURN_CODE), and prints "N passed, N failed" as its last line.
 */
#ifndef EVLM_TEST_H
#define EVLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            t_pass++;                                                                              \
        } else {                                                                                   \
            t_fail++;                                                                              \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            t_pass++;                                                                              \
        } else {                                                                                   \
            t_fail++;                                                                              \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Status-returning call expected to succeed; prints evlm_last_error() otherwise. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        evlm_status t_st = (expr);                                                                 \
        CHECKF(t_st == EVLM_OK, "%s", evlm_last_error());                                          \
    } while (0)

static inline int test_done(void) {
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* ../shared folder (from EVLM_SHARED), or NULL after printing why the test skips. */
static inline const char *test_shared_dir(void) {
    const char *d = getenv("EVLM_SHARED");
    char probe[4096];
    if (d && snprintf(probe, sizeof probe, "%s/fixtures/README.md", d) < (int)sizeof probe) {
        FILE *f = fopen(probe, "r");
        if (f) {
            fclose(f);
            return d;
        }
    }
    printf("SKIP: shared data not found (set EVLM_SHARED or place it at ../shared)\n");
    return NULL;
}

#endif
