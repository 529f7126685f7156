/* buf.c - growable strings and id arrays (see buf.h). */
#include "core/buf.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static evlm_status grow(void **data, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return EVLM_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return evlm__fail(EVLM_ERR_NOMEM, "buffer too large");
        nc *= 2;
    }
    void *p = realloc(*data, nc * elem);
    if (!p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory (%zu bytes)", nc * elem);
    *data = p;
    *cap = nc;
    return EVLM_OK;
}

evlm_status evlm_str_append(evlm_str *s, const char *p, size_t n) {
    void *d = s->data;
    EVLM_TRY(grow(&d, &s->cap, s->len + n + 1, 1));
    s->data = d;
    if (n) memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = 0;
    return EVLM_OK;
}

evlm_status evlm_str_appendz(evlm_str *s, const char *z) {
    return evlm_str_append(s, z, strlen(z));
}

evlm_status evlm_str_appendf(evlm_str *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return evlm__fail(EVLM_ERR_ARG, "bad format string");
    void *d = s->data;
    EVLM_TRY(grow(&d, &s->cap, s->len + (size_t)n + 1, 1));
    s->data = d;
    va_start(ap, fmt);
    vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
    return EVLM_OK;
}

void evlm_str_free(evlm_str *s) {
    free(s->data);
    s->data = NULL;
    s->len = s->cap = 0;
}

evlm_status evlm_ids_push(evlm_ids *v, int32_t id) {
    return evlm_ids_append(v, &id, 1);
}

evlm_status evlm_ids_append(evlm_ids *v, const int32_t *ids, size_t n) {
    void *d = v->data;
    EVLM_TRY(grow(&d, &v->cap, v->len + n, sizeof(int32_t)));
    v->data = d;
    if (n) memcpy(v->data + v->len, ids, n * sizeof(int32_t));
    v->len += n;
    return EVLM_OK;
}

void evlm_ids_free(evlm_ids *v) {
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
