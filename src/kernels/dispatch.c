/*
 * dispatch.c - picks the kernel table at start-up: the best one this CPU supports, unless
 * EVLM_ISA names another that is built and supported. An unknown or unsupported EVLM_ISA falls
 * back to the best table without a word (the library never prints). x86-64 asks cpuid through
 * __builtin_cpu_supports, which also checks that the OS saves the wide registers (XCR0).
 *
 * "avx512vnni" is the avx512 table with the quantized-weight entries (quantize_act, gemm_q and
 * gemm for Q8_0 / Q4_0 / Q4_1 weights) from x86_avx512_quant.c; VNNI is not on every AVX-512 CPU,
 * so it is a table of its own, preferred when present. Plain "avx512" uses the AVX2 quant kernels.
 * AArch64: one "neon" table, whose gemm_q comes from arm_dotprod.c / arm_i8mm.c when the hwcaps
 * report dotprod / dotprod + i8mm.
 *
 * Thread safety: evlm_kernels_get chooses once (pthread_once), at the first call from any thread;
 * the derived tables are filled once the same way. Not here: switching tables at run time.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* EVLM_X86_SIMD: CMake compiled x86_avx2.c / x86_avx512.c with their flags (x86-64 only) */
#if defined(__x86_64__) && defined(EVLM_X86_SIMD)
#include <cpuid.h>

/* F16C from cpuid leaf 1 (ECX bit 29): clang before 15 has no "f16c" for __builtin_cpu_supports */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

/* x86_avx512.c is compiled with all of these (and FMA / F16C), so the compiler may use any */
static int cpu_has_avx512(void) {
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
}

/* x86_avx512_quant.c is compiled with the avx512 flags plus -mavx512vnni */
static int cpu_has_avx512vnni(void) {
    return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
}

/* Q8_0 / Q4_0 / Q4_1 weights to the dequantizing VNNI-file gemm, the rest to avx512's */
static void gemm_avx512vnni(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                            size_t ldw, evlm_type wt, int m, int n0, int n1, int k,
                            float *scratch) {
    if (evlm_type_is_quant(wt))
        evlm__avx512vnni_gemm_deq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
    else
        evlm_kernels_avx512.gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
}

/* the avx512 table is const in another file: copied once, then the quant entries replaced */
static evlm_kernels avx512vnni_table;
static pthread_once_t avx512vnni_once = PTHREAD_ONCE_INIT;

static void avx512vnni_init(void) {
    avx512vnni_table = evlm_kernels_avx512;
    avx512vnni_table.name = "avx512vnni";
    avx512vnni_table.gemm = gemm_avx512vnni;
    avx512vnni_table.quantize_act = evlm__avx512vnni_quantize_act;
    avx512vnni_table.gemm_q = evlm__avx512vnni_gemm_q;
}

static const evlm_kernels *avx512vnni(void) {
    if (!cpu_has_avx512vnni()) return NULL;
    pthread_once(&avx512vnni_once, avx512vnni_init);
    return &avx512vnni_table;
}
#endif

/* AArch64: NEON is the base ISA, so "neon" is always there; dotprod (SDOT, ARMv8.2) and i8mm
 * (SMMLA, ARMv8.6) are optional, asked of the kernel through the hwcaps (Linux only; elsewhere
 * plain NEON). With dotprod the "neon" table gets arm_dotprod.c's gemm_q, with i8mm as well
 * arm_i8mm.c's (which hands m = 1 and the row-major types to arm_dotprod.c). EVLM_ARM_DOTPROD:
 * CMake compiled both files with their -march flags. */
#if defined(__aarch64__)
#if defined(EVLM_ARM_DOTPROD) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
static int cpu_has_dotprod(void) {
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}
static int cpu_has_i8mm(void) {
    return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
}

#endif

static evlm_kernels neon_table;
static pthread_once_t neon_once = PTHREAD_ONCE_INIT;

static void neon_init(void) {
    neon_table = evlm_kernels_neon;
#if defined(EVLM_ARM_DOTPROD) && defined(__linux__)
    if (cpu_has_dotprod())
        neon_table.gemm_q = cpu_has_i8mm() ? evlm__neon_i8mm_gemm_q : evlm__neon_dotprod_gemm_q;
#endif
}

static const evlm_kernels *neon(void) {
    pthread_once(&neon_once, neon_init);
    return &neon_table;
}
#endif

const evlm_kernels *evlm_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &evlm_kernels_ref;
#if defined(__x86_64__) && defined(EVLM_X86_SIMD)
    if (strcmp(name, "avx2") == 0) return cpu_has_avx2() ? &evlm_kernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return cpu_has_avx512() ? &evlm_kernels_avx512 : NULL;
    if (strcmp(name, "avx512vnni") == 0) return avx512vnni();
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return neon();
#endif
    return NULL;
}

static const evlm_kernels *best(void) {
    static const char *const order[] = {"avx512vnni", "avx512", "avx2", "neon"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const evlm_kernels *k = evlm_kernels_by_name(order[i]);
        if (k) return k;
    }
    return &evlm_kernels_ref;
}

/* The table is chosen once per process (pthread_once): every thread, context and model then uses
 * the same kernels, and a later change of EVLM_ISA has no effect. */
static const evlm_kernels *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const evlm_kernels *k = NULL;
    const char *env = getenv("EVLM_ISA");
    if (env && *env) k = evlm_kernels_by_name(env);
    chosen = k ? k : best();
}

const evlm_kernels *evlm_kernels_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}
