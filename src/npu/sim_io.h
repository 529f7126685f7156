/*
 * sim_io.h - private to src/npu's simulation (sim.c, sim_vision.c): the lenient manifest getters
 * and the bounded weight-file read both readers of an export folder use.
 * Not here: the quantization arithmetic (qdq.h), what a manifest means (the readers).
 */
#ifndef EVLM_NPU_SIM_IO_H
#define EVLM_NPU_SIM_IO_H

#include "core/status.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* o[key] as a number, or dflt when absent or not a number. */
static inline double evlm__sim_num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* o[key] as a string, or "" when absent or not a string. */
static inline const char *evlm__sim_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Reads n bytes at off of f (the file path) into buf; an error naming path when it cannot. */
static inline evlm_status evlm__sim_read_at(FILE *f, const char *path, uint64_t off, void *buf,
                                            size_t n) {
    if (fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(buf, 1, n, f) != n)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: cannot read %zu bytes at %llu (truncated?)", path,
                          n, (unsigned long long)off);
    return EVLM_OK;
}

#endif
