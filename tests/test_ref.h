/*
 * test_ref.h - helpers for tests that compare with reference outputs: max-abs metrics and a
 * reader of ref_outputs.safetensors that accepts any rank (pixel_values is 5-D, beyond the
 * engine's 4-D tensor views).
 */
#ifndef EVLM_TEST_REF_H
#define EVLM_TEST_REF_H

#include "core/file.h"
#include "core/json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float max_abs(const float *a, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(a[i]) > m ? fabsf(a[i]) : m;
    return m;
}

static inline float max_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
    return m;
}

static inline int all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

typedef struct {
    char *data;
    size_t size, base;
    cJSON *hdr;
} st_file;

static inline int st_open(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    if (evlm_read_file(path, 256u << 20, &f->data, &f->size) != EVLM_OK || f->size < 8) return 0;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)f->data[i];
    if (hl > f->size - 8) return 0;
    f->base = 8 + (size_t)hl;
    return evlm_json_parse(path, f->data + 8, (size_t)hl, &f->hdr) == EVLM_OK;
}

static inline void st_close(st_file *f) {
    cJSON_Delete(f->hdr);
    free(f->data);
}

/* A malloc'd copy of tensor `name` of dtype with numel elements of elt bytes, or NULL. */
static inline void *st_get(const st_file *f, const char *name, const char *dtype, size_t numel,
                           size_t elt) {
    const cJSON *t = cJSON_GetObjectItem(f->hdr, name);
    const cJSON *dt = cJSON_GetObjectItem(t, "dtype"), *shape = cJSON_GetObjectItem(t, "shape");
    const cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, dtype) != 0 || !cJSON_IsArray(shape) ||
        cJSON_GetArraySize(off) != 2)
        return NULL;
    size_t n = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) n *= (size_t)d->valuedouble;
    size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    size_t e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    if (n != numel || e - b != numel * elt || f->base + e > f->size) return NULL;
    void *out = malloc(numel * elt);
    memcpy(out, f->data + f->base + b, numel * elt);
    return out;
}

#endif
