/* status.c - thread-local last-error message (see status.h). */
#include "core/status.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_err[1024];

const char *evlm_last_error(void) {
    return g_err;
}

const char *evlm_status_str(evlm_status st) {
    switch (st) {
    case EVLM_OK:
        return "ok";
    case EVLM_ERR_ARG:
        return "invalid argument";
    case EVLM_ERR_IO:
        return "i/o error";
    case EVLM_ERR_FORMAT:
        return "bad file format";
    case EVLM_ERR_UNSUPPORTED:
        return "unsupported";
    case EVLM_ERR_NOMEM:
        return "out of memory";
    case EVLM_ERR_RANGE:
        return "out of range";
    }
    return "unknown status";
}

evlm_status evlm__fail(evlm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return st;
}

evlm_status evlm__fail_prefix(evlm_status st, const char *fmt, ...) {
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t pl = strlen(prefix), ol = strlen(old);
    if (pl > sizeof g_err - 3) pl = sizeof g_err - 3;
    if (ol > sizeof g_err - 3 - pl) ol = sizeof g_err - 3 - pl;
    memcpy(g_err, prefix, pl);
    memcpy(g_err + pl, ": ", 2);
    memcpy(g_err + pl + 2, old, ol);
    g_err[pl + 2 + ol] = 0;
    return st;
}

void evlm__clear_error(void) {
    g_err[0] = 0;
}
