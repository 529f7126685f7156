/*
 * dispatch.c - picks the kernel table at start-up: the best one this CPU supports, unless
 * EVLM_ISA names another that is built and supported. An unknown or unsupported EVLM_ISA falls
 * back to the best table without a word (the library never prints). x86-64 asks cpuid through
 * __builtin_cpu_supports, which also checks that the OS saves the wide registers (XCR0).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

#include <stdlib.h>
#include <string.h>

/* EVLM_X86_SIMD: CMake compiled x86_avx2.c / x86_avx512.c with their flags (x86-64 only) */
#if defined(__x86_64__) && defined(EVLM_X86_SIMD)
static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

/* x86_avx512.c is compiled with all of these (and FMA / F16C), so the compiler may use any */
static int cpu_has_avx512(void) {
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
}
#endif

const evlm_kernels *evlm_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &evlm_kernels_ref;
#if defined(__x86_64__) && defined(EVLM_X86_SIMD)
    if (strcmp(name, "avx2") == 0) return cpu_has_avx2() ? &evlm_kernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return cpu_has_avx512() ? &evlm_kernels_avx512 : NULL;
#endif
    return NULL;
}

static const evlm_kernels *best(void) {
    static const char *const order[] = {"avx512", "avx2"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const evlm_kernels *k = evlm_kernels_by_name(order[i]);
        if (k) return k;
    }
    return &evlm_kernels_ref;
}

const evlm_kernels *evlm_kernels_get(void) {
    static const evlm_kernels *chosen;
    if (chosen) return chosen;
    const evlm_kernels *k = NULL;
    const char *env = getenv("EVLM_ISA");
    if (env && *env) k = evlm_kernels_by_name(env);
    if (!k) k = best();
    chosen = k;
    return chosen;
}
