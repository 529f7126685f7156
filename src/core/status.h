/*
 * status.h - the error channel of the library: a status code plus a thread-local message.
 *
 * Every failing function calls evlm__fail() once, at the place that knows the file / field /
 * offset at fault, and returns its status upward unchanged. Callers may prefix context with
 * evlm__fail_prefix(). Nothing here prints.
 */
#ifndef EVLM_CORE_STATUS_H
#define EVLM_CORE_STATUS_H

#include "evlm.h"

#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define EVLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EVLM_PRINTF(a, b)
#endif

/* Sets the last error message and returns st. */
evlm_status evlm__fail(evlm_status st, const char *fmt, ...) EVLM_PRINTF(2, 3);
/* Prepends "prefix: " to the current message; returns st. */
evlm_status evlm__fail_prefix(evlm_status st, const char *fmt, ...) EVLM_PRINTF(2, 3);
void evlm__clear_error(void);

/* Propagate a non-OK status. */
#define EVLM_TRY(expr)                                                                             \
    do {                                                                                           \
        evlm_status evlm__st = (expr);                                                             \
        if (evlm__st != EVLM_OK) return evlm__st;                                                  \
    } while (0)

/* Invariants of the code itself (not of input data): abort with a message. */
#define EVLM_ASSERT(x)                                                                             \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "evlm: assertion failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
