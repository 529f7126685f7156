/*
 * test_types.c - walks the type tables (core/tensor.h evlm_type_traits, quant/types.h
 * evlm_type_ops) row by row, so a new type is checked by adding its rows:
 *   - every type has a unique name, a block of 1 (plain) or 32 (block-quantized, R16-packable:
 *     an even fp16 header, whole 4-byte groups of quants) and a size that fits one-block buffers;
 *   - an R16 form and its file type name each other and share block, size and kind; in-memory
 *     forms have no file name; the float R16 elements are 2 or 4 bytes (repack.c copies those);
 *   - GGUF ids and names, and safetensors dtypes, are unique and look back up to the type; the
 *     GGUF ids are ggml's numbers; every safetensors dtype parses back from a header;
 *   - every type with a from-float function round-trips a row within its bound (below), and its
 *     R16 form gives back the rows byte for byte and as the same floats; the reference dot
 *     matches a double dot of the dequantized rows.
 * Round-trip bounds per element, with amax the block's largest |x|: F32 exact; F16 2^-11 |x|
 * (2^-25 below the normal range); BF16 2^-8 |x|; Q8_0 amax (1/254 + 2^-11); Q4_0 amax (1/8 +
 * 2^-11: the clamp at q = 15 costs a full step, see test_quants.c); Q4_1 amax (1/15 + 3 2^-11),
 * each rounded up a little. A new convertible type must add its bound to bound_of().
 * The kernels' per-type entries (kernels/ref_impl.h) are checked against the kinds: every entry
 * array of every SIMD file built for this architecture (x86-64: avx2, avx512, avx512vnni; AArch64:
 * neon, dotprod, i8mm; checked as data, whether or not this CPU runs them) has an entry for
 * exactly the types of the kind it handles, none for an R16 form, and every R16 form finds its
 * kernels through r16_base.
 * Not here: the exact ggml bytes of each format and the tight bounds (test_quants.c).
 */
#include "core/tensor.h"
#include "io/gguf.h"
#include "kernels/ref_impl.h"
#include "io/safetensors.h"
#include "quant/kquants.h"
#include "quant/quants.h"
#include "quant/repack.h"
#include "quant/sparse24.h"
#include "quant/types.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

static unsigned seed = 4242;
static float frand(void) { /* [-1, 1) */
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / 8388608.0f - 1.0f;
}

static const evlm_type_traits *tr(int t) {
    return evlm_type_traits_of((evlm_type)t);
}

static void test_rows(void) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        const char *nm = a->name ? a->name : "(null)";
        CHECKF(a->name && a->name[0] && strcmp(a->name, "?") != 0, "type %d has no name", t);
        for (int u = 0; u < t; u++) CHECKF(strcmp(nm, tr(u)->name) != 0, "%s named twice", nm);
        CHECK(evlm_type_name((evlm_type)t) == a->name);
        CHECK(evlm_type_size((evlm_type)t) == a->size && evlm_type_block((evlm_type)t) == a->block);
        CHECKF(a->size > 0 && a->size <= EVLM_TYPE_MAX_BLOCK_BYTES, "%s: size %zu", nm, a->size);
        CHECKF(!(a->is_float && a->is_quant), "%s: float and quantized", nm);
        CHECK(evlm_row_bytes((evlm_type)t, 3 * a->block) == 3 * a->size);
        CHECK(evlm_type_is_quant((evlm_type)t) == a->is_quant);
        CHECK(evlm_type_is_file_float((evlm_type)t) == (a->is_float && !a->memory_only));
        CHECK(evlm_type_is_file_quant((evlm_type)t) == (a->is_quant && !a->memory_only));
        if (a->is_quant) { /* the layout quants.h and repack.h assume */
            CHECKF(a->block == EVLM_QK, "%s: block %d", nm, a->block);
            CHECKF(a->head > 0 && a->head % 2 == 0 && (a->size - (size_t)a->head) % 4 == 0 &&
                       (size_t)a->head < a->size,
                   "%s: header %d of a %zu-byte block", nm, a->head, a->size);
        } else if (a->kq) { /* k-quants: 256-element super-blocks (kquants.h); in memory only:
                             * their interleaved forms (kquant_repack.h) */
            CHECKF(a->block == EVLM_QK_K && a->head == 0 && !a->is_float &&
                       a->memory_only == (a->r16_base != EVLM_TYPE_COUNT),
                   "%s: a k-quant with block %d, head %d", nm, a->block, a->head);
        } else {
            CHECKF(a->block == (a->s24 ? 8 : 1) && a->head == 0, "%s: block %d, head %d", nm,
                   a->block, a->head);
        }
        /* kinds: exactly the types that convert from float, and back, are float or quantized */
        const evlm_type_ops *o = evlm_type_ops_of((evlm_type)t);
        bool values = (a->is_float || a->is_quant || a->kq) && !a->memory_only;
        CHECKF(!o->from_float || values, "%s converts from float", nm);
        CHECKF(!!o->to_float == values, "%s: to_float %s", nm, o->to_float ? "set" : "missing");
        CHECKF(!!o->dot_q8a == ((a->is_quant || a->kq) && !a->memory_only), "%s: dot_q8a", nm);
    }
    /* any value outside the enum reads the last row */
    const evlm_type bad[] = {EVLM_TYPE_COUNT, (evlm_type)(EVLM_TYPE_COUNT + 7), (evlm_type)-1};
    for (int i = 0; i < 3; i++) {
        CHECK(strcmp(evlm_type_name(bad[i]), "?") == 0);
        CHECK(evlm_type_size(bad[i]) == 0 && evlm_type_block(bad[i]) == 1);
        CHECK(!evlm_type_is_quant(bad[i]) && !evlm_type_is_r16(bad[i]));
        CHECK(evlm_type_r16(bad[i]) == EVLM_TYPE_COUNT &&
              evlm_type_r16_base(bad[i]) == EVLM_TYPE_COUNT);
        CHECK(evlm_gguf_ggml_type(bad[i]) == -1 && !evlm_type_traits_of(bad[i])->st_dtype);
        const evlm_type_ops *o = evlm_type_ops_of(bad[i]);
        CHECK(!o->to_float && !o->from_float && !o->dot_q8a);
    }
}

static void test_r16_pairs(void) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        if (a->r16 != EVLM_TYPE_COUNT) {
            const evlm_type_traits *r = tr(a->r16);
            CHECKF(r->r16_base == (evlm_type)t, "%s -> %s -> back to %s", a->name, r->name,
                   evlm_type_name(r->r16_base));
            CHECKF(!a->memory_only && r->memory_only && r->r16 == EVLM_TYPE_COUNT,
                   "%s / %s: file and in-memory forms", a->name, r->name);
            CHECKF(r->block == a->block && r->size == a->size && r->head == a->head &&
                       r->is_float == a->is_float && r->is_quant == a->is_quant,
                   "%s / %s differ", a->name, r->name);
            CHECK(evlm_type_r16((evlm_type)t) == a->r16 && evlm_type_is_r16(a->r16));
            CHECK(evlm_type_is_r16_float(a->r16) == a->is_float);
            if (a->is_float)
                CHECKF(a->size == 2 || a->size == 4, "%s: %zu-byte elements", r->name, a->size);
        }
        if (a->r16_base != EVLM_TYPE_COUNT)
            CHECKF(tr(a->r16_base)->r16 == (evlm_type)t ||
                       (a->s24 && evlm_type_s24(a->r16_base) == (evlm_type)t),
                   "%s is not the R16 or 2:4 form of %s", a->name, evlm_type_name(a->r16_base));
        CHECK(evlm_type_r16_base((evlm_type)t) == a->r16_base);
        CHECK(evlm_type_is_r16((evlm_type)t) == (a->r16_base != EVLM_TYPE_COUNT));
        if (a->memory_only)
            CHECKF(a->gguf_id < 0 && !a->gguf_name && !a->st_dtype, "in-memory %s has a file name",
                   a->name);
    }
}

static void test_file_names(void) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        CHECKF((a->gguf_id >= 0) == (a->gguf_name != NULL), "%s: GGUF id %d, name %s", a->name,
               a->gguf_id, a->gguf_name ? a->gguf_name : "none");
        CHECK(evlm_gguf_ggml_type((evlm_type)t) == a->gguf_id);
        if (a->gguf_id >= 0) {
            evlm_type back = EVLM_TYPE_COUNT;
            CHECKF(evlm_gguf_from_ggml_type((uint32_t)a->gguf_id, &back) && back == (evlm_type)t,
                   "GGUF id %d of %s reads back as %s", a->gguf_id, a->name, evlm_type_name(back));
            CHECKF(evlm_type_from_gguf_name(a->gguf_name) == (evlm_type)t, "GGUF name %s",
                   a->gguf_name);
        }
        if (a->st_dtype)
            CHECKF(evlm_type_from_st_dtype(a->st_dtype) == (evlm_type)t, "dtype %s", a->st_dtype);
        for (int u = 0; u < t; u++) {
            const evlm_type_traits *b = tr(u);
            CHECKF(a->gguf_id < 0 || a->gguf_id != b->gguf_id, "GGUF id %d twice", a->gguf_id);
            CHECKF(!a->gguf_name || !b->gguf_name || strcmp(a->gguf_name, b->gguf_name) != 0,
                   "GGUF name %s twice", a->gguf_name);
            CHECKF(!a->st_dtype || !b->st_dtype || strcmp(a->st_dtype, b->st_dtype) != 0,
                   "dtype %s twice", a->st_dtype);
        }
    }
    /* ggml's GGML_TYPE_* numbers (ggml.h) */
    static const struct {
        const char *name;
        int id;
    } ggml[] = {{"f32", 0},   {"f16", 1},   {"q4_0", 2}, {"q4_1", 3}, {"q8_0", 8}, {"q4_K", 12},
                {"q5_K", 13}, {"q6_K", 14}, {"i8", 24},  {"i32", 26}, {"i64", 27}, {"bf16", 30}};
    for (size_t i = 0; i < sizeof ggml / sizeof *ggml; i++) {
        evlm_type t = evlm_type_from_gguf_name(ggml[i].name);
        CHECKF(t != EVLM_TYPE_COUNT && tr(t)->gguf_id == ggml[i].id, "%s is GGML type %d",
               ggml[i].name, ggml[i].id);
    }
    CHECK(evlm_type_from_gguf_name("Q8_0") == EVLM_TYPE_COUNT); /* case-sensitive */
    CHECK(evlm_type_from_st_dtype("bf16") == EVLM_TYPE_COUNT);
    CHECK(evlm_type_from_gguf_id(4) == EVLM_TYPE_COUNT); /* ggml's retired Q4_2 */
}

/* every safetensors dtype parses back from a one-tensor header */
static void test_st_parse(void) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const char *dt = tr(t)->st_dtype;
        if (!dt) continue;
        size_t bytes = 4 * tr(t)->size;
        char img[256];
        int hl = snprintf(img + 8, sizeof img - 8 - 64,
                          "{\"x\":{\"dtype\":\"%s\",\"shape\":[4],"
                          "\"data_offsets\":[0,%zu]}}",
                          dt, bytes);
        CHECK(hl > 0 && (size_t)hl < sizeof img - 8 - 64);
        for (int i = 0; i < 8; i++) img[i] = (char)(((uint64_t)hl >> (8 * i)) & 0xff);
        memset(img + 8 + hl, 0, bytes);
        evlm_weights *w = NULL;
        CHECK_OK(evlm_weights_from_memory(dt, img, 8 + (size_t)hl + bytes, &w));
        const evlm_tensor *x = w ? evlm_weights_find(w, "x") : NULL;
        CHECKF(x && x->type == (evlm_type)t, "dtype %s parses as %s", dt,
               x ? evlm_type_name(x->type) : "nothing");
        evlm_weights_free(w);
    }
}

/* bound = rel |x| + blk amax + abs, or false when the type has none yet */
static bool bound_of(evlm_type t, double *rel, double *blk, double *abs_) {
    *rel = *blk = *abs_ = 0.0;
    switch (t) {
    case EVLM_TYPE_F32:
        return true;
    case EVLM_TYPE_F16:
        *rel = 0x1p-11, *abs_ = 0x1p-25;
        return true;
    case EVLM_TYPE_BF16:
        *rel = 0x1p-8;
        return true;
    case EVLM_TYPE_Q8_0:
        *blk = 1.0 / 254 + 0x1p-11 + 1e-6;
        return true;
    case EVLM_TYPE_Q4_0:
        *blk = 1.0 / 8 + 0x1p-11 + 1e-6;
        return true;
    case EVLM_TYPE_Q4_1:
        *blk = 1.0 / 15 + 3 * 0x1p-11 + 1e-6;
        return true;
    default:
        return false;
    }
}

/* blocks of different ranges: random, offset, constant, zero, large, tiny */
static void make_row(float *x, int n) {
    for (int b = 0; b < n / 32; b++)
        for (int j = 0; j < 32; j++) {
            float r = frand(), *v = x + b * 32 + j;
            switch (b % 6) {
            case 0:
                *v = r;
                break;
            case 1:
                *v = 100.0f + 0.1f * r;
                break;
            case 2:
                *v = -3.0f;
                break;
            case 3:
                *v = 0.0f;
                break;
            case 4:
                *v = r * 1000.0f;
                break;
            default:
                *v = r * 1e-3f * (float)(1 + j);
                break;
            }
        }
}

static void test_round_trips(void) {
    enum { K = 32 * 36 };
    static float x[K], y[K], z[K];
    static unsigned char q[K * 8];
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_ops *o = evlm_type_ops_of((evlm_type)t);
        const char *nm = tr(t)->name;
        if (!o->from_float || K % tr(t)->block) continue; /* k-quants: test_kquants.c */
        double rel, blk, abs_;
        if (!bound_of((evlm_type)t, &rel, &blk, &abs_)) {
            CHECKF(0, "%s converts from float but has no round-trip bound in test_types.c", nm);
            continue;
        }
        int bad = 0;
        for (int rep = 0; rep < 4; rep++) {
            make_row(x, K);
            o->from_float(x, q, K);
            o->to_float(q, y, K);
            evlm_dequantize_row((evlm_type)t, q, z, K); /* the by-type entry reads the same row */
            bad += memcmp(y, z, sizeof y) != 0;
            for (int b = 0; b < K / 32; b++) {
                double amax = 0.0;
                for (int j = 0; j < 32; j++) amax = fmax(amax, fabs((double)x[b * 32 + j]));
                for (int j = 0; j < 32; j++) {
                    double xv = x[b * 32 + j], e = fabs(xv - (double)y[b * 32 + j]);
                    double bound =
                        rel * fabs(xv) + blk * amax + abs_ + 4.0 * (double)FLT_EPSILON * amax;
                    if (!(e <= bound) && bad++ < 5)
                        fprintf(stderr, "%s: %.9g -> %.9g (bound %g)\n", nm, xv,
                                (double)y[b * 32 + j], bound);
                }
            }
        }
        CHECKF(bad == 0, "%s round trip: %d elements over the bound", nm, bad);
    }
}

/* R16 forms: rows back byte for byte (block types) and as the same floats as the file type's
 * rows; the reference dot of a block type against a double dot of its dequantized row */
static void test_r16_rows(void) {
    enum { N = 37, K = 160 };
    static float x[N * K], f[K], g[K];
    static unsigned char w[N * K * 8], r[48 * K * 8], row[K * 8];
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        const evlm_type_ops *o = evlm_type_ops_of((evlm_type)t);
        if (a->r16 == EVLM_TYPE_COUNT || !o->from_float || K % a->block)
            continue; /* k-quants: test_kquants.c */
        size_t rb = evlm_row_bytes((evlm_type)t, K);
        for (int i = 0; i < N * K; i++) x[i] = frand() * (float)(1 + i % 5);
        for (int i = 0; i < N; i++) o->from_float(x + i * K, w + (size_t)i * rb, K);
        CHECK(evlm_r16_bytes(a->r16, N, K) <= sizeof r);
        evlm_repack_r16((evlm_type)t, w, rb, N, K, r);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            o->to_float(w + (size_t)i * rb, f, K);
            evlm_r16_dequantize_row(a->r16, r, K, i, g);
            bad += memcmp(f, g, sizeof f) != 0;
            if (a->is_quant) {
                evlm_r16_get_row(a->r16, r, K, i, row);
                bad += memcmp(row, w + (size_t)i * rb, rb) != 0;
            }
        }
        CHECKF(bad == 0, "%s: %d rows differ after interleaving", a->name, bad);
    }
    /* the reference dot of each block type */
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_ops *o = evlm_type_ops_of((evlm_type)t);
        if (!o->dot_q8a || K % tr(t)->block) continue; /* k-quants: test_kquants.c */
        evlm_q8a act[K / 32];
        for (int j = 0; j < K; j++) x[j] = frand(), x[K + j] = frand() * 3.0f;
        o->from_float(x, w, K);
        o->to_float(w, f, K);
        evlm_quantize_act_ref(x + K, act, K);
        double want = 0.0, mag = 0.0;
        for (int j = 0; j < K; j++) {
            double p = (double)f[j] * (double)act[j / 32].d * act[j / 32].qs[j % 32];
            want += p, mag += fabs(p);
        }
        float got = o->dot_q8a(w, act, K);
        CHECKF(fabs((double)got - want) <= 1e-5 * mag, "%s dot: %g vs %g", tr(t)->name, (double)got,
               want);
        CHECK(evlm_vec_dot_q_ref((evlm_type)t, w, act, K) == got);
    }
}

/* ---- the kernels' per-type entries ---- */

/* the kinds of type an entry array is for */
static bool file_float(const evlm_type_traits *a) {
    return a->is_float && !a->memory_only;
}
#if defined(__x86_64__) || defined(__aarch64__)
static bool file_quant(const evlm_type_traits *a) {
    return a->is_quant && !a->memory_only;
}
static bool float_r16(const evlm_type_traits *a) { /* a file float type with an R16 form */
    return file_float(a) && a->r16 != EVLM_TYPE_COUNT;
}
static bool quant_r16(const evlm_type_traits *a) {
    return file_quant(a) && a->r16 != EVLM_TYPE_COUNT;
}
#if defined(__aarch64__)
static bool never(const evlm_type_traits *a) {
    (void)a;
    return false;
}
#endif

/* an entry array of file `file` (name `what`): has(t) says whether type t has an entry; the types
 * with one are exactly those of kind; R16 forms have none of their own, and each R16 form of a
 * kind-type base reaches that base's entry through r16_base. */
static void check_entries(const char *what, bool (*has)(int),
                          bool (*kind)(const evlm_type_traits *)) {
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        if (a->memory_only) {
            CHECKF(!has(t), "%s: an entry of its own for the R16 form %s", what, a->name);
            evlm_type b = a->r16_base;
            CHECKF(b < EVLM_TYPE_COUNT &&
                       (tr(b)->r16 == (evlm_type)t || evlm_type_s24(b) == (evlm_type)t),
                   "%s: %s has no base", what, a->name);
            if (b < EVLM_TYPE_COUNT && kind(tr(b)))
                CHECKF(has(b), "%s: %s finds no entry through its base %s", what, a->name,
                       tr(b)->name);
        } else {
            CHECKF(has(t) == kind(a), "%s: %s %s", what, a->name,
                   has(t) ? "has an entry but is not of its kind" : "has no entry");
        }
    }
}

#endif

#define HAS(name, expr)                                                                            \
    static bool name(int t) {                                                                      \
        return expr;                                                                               \
    }
#if defined(__x86_64__)
HAS(avx2_gemm, evlm__avx2_gemm_f[t] != NULL)
HAS(avx512_gemm, evlm__avx512_gemm_f[t] != NULL)
HAS(avx2_r16f, evlm__avx2_r16f[t] != NULL)
HAS(avx512_r16f, evlm__avx512_r16f[t] != NULL)
HAS(avx2_deq, evlm__avx2_deq[t] != NULL)
HAS(vnni_deq, evlm__avx512vnni_deq[t] != NULL)
HAS(avx2_q8, evlm__avx2_q8[t].tiles != NULL)
HAS(avx2_q8r16, evlm__avx2_q8[t].r16 != NULL)
HAS(vnni_q8, evlm__avx512vnni_q8[t].tiles != NULL)
HAS(vnni_q8r16, evlm__avx512vnni_q8[t].r16 != NULL)
#endif
#if defined(__aarch64__)
HAS(neon_gemm, evlm__neon_gemm_f[t] != NULL)
HAS(neon_r16f, evlm__neon_r16f[t] != NULL)
HAS(neon_deq, evlm__neon_deq[t] != NULL)
HAS(neon_q8, evlm__neon_q8[t].tiles != NULL)
HAS(neon_q8r16, evlm__neon_q8[t].r16 != NULL)
HAS(dotprod_q8, evlm__dotprod_q8[t].tiles != NULL)
HAS(dotprod_q8r16, evlm__dotprod_q8[t].r16 != NULL)
HAS(i8mm_q8, evlm__i8mm_q8[t].tiles != NULL)
HAS(i8mm_q8r16, evlm__i8mm_q8[t].r16 != NULL)
#endif

static void test_kernel_entries(void) {
    /* the tables are the avx2 / avx512 / avx512vnni / neon of dispatch.c: avx2 = x86_avx2.c with
     * x86_avx2_quant.c, avx512 = x86_avx512.c with x86_avx2_quant.c, avx512vnni = x86_avx512.c
     * with x86_avx512_quant.c; neon = arm_neon.c, with arm_dotprod.c / arm_i8mm.c's gemm_q */
#if defined(__x86_64__)
    check_entries("avx2 gemm tiles", avx2_gemm, file_float);
    check_entries("avx512 gemm tiles", avx512_gemm, file_float);
    check_entries("avx2 R16 float tiles", avx2_r16f, float_r16);
    check_entries("avx512 R16 float tiles", avx512_r16f, float_r16);
    check_entries("avx2 dequantizing rows", avx2_deq, file_quant);
    check_entries("avx512vnni dequantizing rows", vnni_deq, file_quant);
    check_entries("avx2 int8 tiles", avx2_q8, file_quant);
    check_entries("avx2 int8 R16 tiles", avx2_q8r16, quant_r16);
    check_entries("avx512vnni int8 tiles", vnni_q8, file_quant);
    check_entries("avx512vnni int8 R16 tiles", vnni_q8r16, quant_r16);
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) /* the x86 tiles' zero points are 0..255 */
        CHECK(evlm__avx2_q8[t].off >= 0 && evlm__avx512vnni_q8[t].off >= 0 &&
              evlm__avx2_q8[t].off < 256 && evlm__avx512vnni_q8[t].off < 256);
#endif
#if defined(__aarch64__)
    check_entries("neon gemm tiles", neon_gemm, file_float);
    check_entries("neon R16 float tiles", neon_r16f, float_r16);
    check_entries("neon dequantizing rows", neon_deq, file_quant);
    check_entries("neon int8 tiles", neon_q8, file_quant);
    check_entries("neon int8 R16 tiles", neon_q8r16, quant_r16);
    check_entries("dotprod int8 tiles", dotprod_q8, file_quant);
    check_entries("dotprod int8 R16 tiles", dotprod_q8r16, quant_r16);
    check_entries("i8mm int8 tiles (none: arm_dotprod.c's)", i8mm_q8, never);
    check_entries("i8mm int8 R16 tiles", i8mm_q8r16, quant_r16);
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) /* the ARM tiles take no correction */
        CHECK(!evlm__neon_q8[t].off && !evlm__dotprod_q8[t].off && !evlm__i8mm_q8[t].off);
#endif
    /* KV cache elements: whole bytes of values, or int8 with a row scale */
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        CHECKF(a->kv == 0 || a->kv == EVLM_TYPE_KV_VALUES || a->kv == EVLM_TYPE_KV_SCALED,
               "%s: kv %d", a->name, a->kv);
        if (a->kv == EVLM_TYPE_KV_VALUES)
            CHECKF(file_float(a) && a->block == 1 && evlm_type_ops_of((evlm_type)t)->from_float,
                   "%s: a KV cache of values needs a plain float type", a->name);
        if (a->kv == EVLM_TYPE_KV_SCALED)
            CHECKF(a->size == 1 && !a->is_float && !a->is_quant, "%s: scaled rows are int8",
                   a->name);
    }
    CHECK(tr(EVLM_TYPE_F32)->kv && tr(EVLM_TYPE_F16)->kv && tr(EVLM_TYPE_I8)->kv);
    CHECK(!evlm_type_traits_of(EVLM_TYPE_COUNT)->kv);
}

/* 2:4 forms: one per base at most, in memory only, of their base's kind; a block holds half
 * the base's values, a nibble per 4 of them and the base's fp16 header; rows read back as the
 * base's after packing a 2:4 matrix of every base that has a form */
static void test_s24_rows(void) {
    enum { N = 21, K = 64 };
    static float x[N * K], f[K], g[K];
    static unsigned char w[N * K * 8], r[32 * K * 8];
    int n_forms = 0;
    for (int t = 0; t < EVLM_TYPE_COUNT; t++) {
        const evlm_type_traits *a = tr(t);
        if (!a->s24) {
            evlm_type st = evlm_type_s24((evlm_type)t);
            CHECKF(st == EVLM_TYPE_COUNT || (!a->memory_only && tr(st)->r16_base == (evlm_type)t),
                   "%s: 2:4 form %s", a->name, evlm_type_name(st));
            continue;
        }
        n_forms++;
        const evlm_type b = a->r16_base;
        const evlm_type_traits *bt = tr(b);
        CHECKF(b < EVLM_TYPE_COUNT && !bt->memory_only && evlm_type_s24(b) == (evlm_type)t,
               "%s: base %s", a->name, bt->name);
        CHECKF(a->memory_only && a->is_float == bt->is_float && a->is_quant == bt->is_quant &&
                   a->r16 == EVLM_TYPE_COUNT && evlm_type_is_r16((evlm_type)t) &&
                   evlm_type_is_s24((evlm_type)t),
               "%s: kind", a->name);
        size_t vb = (bt->size - (size_t)bt->head) / (size_t)bt->block; /* bytes per value */
        CHECKF(a->block % 8 == 0, "%s: block %d", a->name, a->block);
        CHECKF(a->size == (size_t)a->block / 2 * vb + (size_t)a->block / 8 + (size_t)bt->head &&
                   a->head == bt->head,
               "%s: %zu bytes per block of %d", a->name, a->size, a->block);
        const evlm_type_ops *o = evlm_type_ops_of(b);
        size_t rb = evlm_row_bytes(b, K);
        for (int i = 0; i < N * K; i++) x[i] = i % 4 == (i / K) % 3 || i % 4 == 3 ? 0.0f : frand();
        for (int i = 0; i < N; i++) o->from_float(x + i * K, w + (size_t)i * rb, K);
        CHECK(evlm_s24_check(b, w, rb, N, K));
        CHECK(evlm_r16_bytes((evlm_type)t, N, K) <= sizeof r);
        evlm_repack_s24(b, w, rb, N, K, r);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            o->to_float(w + (size_t)i * rb, f, K);
            evlm_r16_dequantize_row((evlm_type)t, r, K, i, g);
            bad += memcmp(f, g, sizeof f) != 0;
        }
        CHECKF(bad == 0, "%s: %d rows differ after packing", a->name, bad);
    }
    CHECK(n_forms >= 1);
}

int main(void) {
    test_rows();
    test_r16_pairs();
    test_s24_rows();
    test_file_names();
    test_st_parse();
    test_round_trips();
    test_r16_rows();
    test_kernel_entries();
    return test_done();
}
