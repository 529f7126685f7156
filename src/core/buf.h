/*
 * buf.h - growable byte strings and int32 id arrays, the two dynamic containers of evlm.
 * Used on load / tokenization paths; the per-token forward pass never allocates.
 */
#ifndef EVLM_CORE_BUF_H
#define EVLM_CORE_BUF_H

#include "evlm.h"

#include <stddef.h>
#include <stdint.h>

typedef struct evlm_str {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len, cap;
} evlm_str;

typedef struct evlm_ids {
    int32_t *data;
    size_t len, cap;
} evlm_ids;

evlm_status evlm_str_append(evlm_str *s, const char *p, size_t n);
evlm_status evlm_str_appendz(evlm_str *s, const char *z);
evlm_status evlm_str_appendf(evlm_str *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void evlm_str_free(evlm_str *s);

evlm_status evlm_ids_push(evlm_ids *v, int32_t id);
evlm_status evlm_ids_append(evlm_ids *v, const int32_t *ids, size_t n);
void evlm_ids_free(evlm_ids *v);

#endif
