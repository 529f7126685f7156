/*
 * dispatch.c - picks the kernel table at start-up: the best one this CPU supports, unless
 * EVLM_ISA names another. Only `ref` exists so far; SIMD tables register here as they land.
 */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const evlm_kernels *evlm_kernels_by_name(const char *name) {
    if (strcmp(name, "ref") == 0) return &evlm_kernels_ref;
    return NULL;
}

const evlm_kernels *evlm_kernels_get(void) {
    static const evlm_kernels *chosen;
    if (chosen) return chosen;
    const evlm_kernels *k = &evlm_kernels_ref;
    const char *env = getenv("EVLM_ISA");
    if (env && *env) {
        const evlm_kernels *e = evlm_kernels_by_name(env);
        if (e) k = e;
    }
    chosen = k;
    return chosen;
}
