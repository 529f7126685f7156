/*
 * ref_impl.h - private to src/kernels: the scalar reference kernels by name, so SIMD tables can
 * reuse the ops they do not vectorize, the SIMD tables themselves (declared here, defined in
 * their per-ISA files, which compile to nothing on other architectures), and the walks the
 * per-ISA files share with their tile types and shapes (q8_walk.c for the int8 gemm_q,
 * r16f_walk.c for the float R16 gemm; attn_tile / attn_rows are the template attn_walk.h).
 * Not a public header.
 */
#ifndef EVLM_KERNELS_REF_IMPL_H
#define EVLM_KERNELS_REF_IMPL_H

#include "kernels/kernels.h"

#include <stdbool.h>

/* For the per-ISA files: always-inline helpers, and an unroll request GCC 12 needs on loops over
 * accumulator arrays (without it the array lives on the stack, a store per iteration). */
#define EVLM__INLINE static inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
#define EVLM__UNROLL _Pragma("GCC unroll 16")
#else
#define EVLM__UNROLL
#endif

/* Rows of int8 activations (k / 32 blocks each) that fit a 192 KB chunk of L2, a multiple of 4
 * (at least 4): the int8 gemm_q walks stream each weight row once per chunk. */
static inline int evlm__act_chunk_rows(int k) {
    int kb = k / EVLM_QK;
    int mc = (int)((192u * 1024u) / ((size_t)(kb > 0 ? kb : 1) * sizeof(evlm_q8a))) & ~3;
    return mc < 4 ? 4 : mc;
}

void evlm__ref_gemm(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                    evlm_type wt, int m, int n0, int n1, int k, float *scratch);
void evlm__ref_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
void evlm__ref_silu_mul(float *g, const float *u, int n);
float evlm__ref_max(const float *x, int n);
void evlm__ref_rope(float *x, int n_heads, int head_dim, const float *cos, const float *sin);
void evlm__ref_attn_row(float *out, const float *q, const float *k, const float *v, int n_kv,
                        int head_dim, size_t ld, float scale, const uint8_t *mask, float *scores);
float evlm__ref_softmax_exp(float *scores, int n, float mx);
void evlm__ref_attn_rows(float *const *out, const float *const *q, int n_q, const float *k,
                         const float *v, size_t ld, const int *n_kv, int n_pre,
                         const uint8_t *const *mask, int head_dim, float scale, float *scores);
void evlm__ref_attn_tile(float *out, size_t ldo, const float *q, size_t ldq, int n_q,
                         const float *k, const float *v, size_t ldkv, int n_kv, int head_dim,
                         float scale, int kv0, float *scratch);
void evlm__ref_layernorm(float *y, const float *x, const float *w, const float *b, int n,
                         float eps);
void evlm__ref_gelu_tanh(float *x, int n);
void evlm__ref_quantize_act(const float *x, evlm_q8a *y, int k);
void evlm__ref_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                      size_t ldw, evlm_type wt, int m, int n0, int n1, int k);

/* The training kernels' ground truth (ref_train.c) and the SIMD versions (x86_avx2_train.c,
 * x86_avx512_train.c, arm_train.c: defined only on their architecture). */
#define EVLM__TRAIN_DECL(isa)                                                                      \
    void evlm__##isa##_sgemm(float *c, size_t ldc, const float *a, size_t lda, bool a_t,           \
                             const float *b, size_t ldb, bool b_t, int m, int n, int k, bool acc,  \
                             float *scratch);                                                      \
    void evlm__##isa##_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w,     \
                                   float rstd, int n);                                             \
    void evlm__##isa##_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w,   \
                                     float mean, float rstd, int n);                               \
    void evlm__##isa##_swiglu_bwd(float *dg, float *du, const float *dh, const float *g,           \
                                  const float *u, int n);                                          \
    void evlm__##isa##_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int n);           \
    float evlm__##isa##_exp_sum(float *x, int n, float mx);
EVLM__TRAIN_DECL(ref)
EVLM__TRAIN_DECL(avx2)
EVLM__TRAIN_DECL(avx512)
EVLM__TRAIN_DECL(neon)
/* the training entries of a table, for its initializer */
#define EVLM__TRAIN_ENTRIES(isa)                                                                   \
    .sgemm = evlm__##isa##_sgemm, .rmsnorm_bwd = evlm__##isa##_rmsnorm_bwd,                        \
    .layernorm_bwd = evlm__##isa##_layernorm_bwd, .swiglu_bwd = evlm__##isa##_swiglu_bwd,          \
    .gelu_tanh_bwd = evlm__##isa##_gelu_tanh_bwd, .exp_sum = evlm__##isa##_exp_sum

/* Only defined when built for x86-64 (x86_avx2.c / x86_avx512.c with their per-file flags). */
extern const evlm_kernels evlm_kernels_avx2;
extern const evlm_kernels evlm_kernels_avx512;

/* Quantized-weight kernels, x86-64 only: x86_avx2_quant.c (AVX2 + FMA + F16C; also used by the
 * avx512 table) and x86_avx512_quant.c (AVX-512 + VNNI; the "avx512vnni" table of dispatch.c).
 * *_gemm_deq is the `gemm` entry for Q8_0 / Q4_0 / Q4_1 weights (other types go to ref). */
void evlm__avx2_quantize_act(const float *x, evlm_q8a *y, int k);
void evlm__avx2_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                       size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx2_gemm_deq(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                         size_t ldw, evlm_type wt, int m, int n0, int n1, int k, float *scratch);
/* the corrections of q8_walk.c's *_R16 walk (evlm__q8_corr), for both x86 int8 files */
void evlm__avx2_q8_corr(int32_t *c, const evlm_q8a *x, int nb, int32_t mul);
void evlm__avx512vnni_quantize_act(const float *x, evlm_q8a *y, int k);
void evlm__avx512vnni_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                             size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx512vnni_gemm_deq(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                               size_t ldw, evlm_type wt, int m, int n0, int n1, int k,
                               float *scratch);
/* gemm_q for the k-quants Q4_K / Q5_K / Q6_K: AVX2 and VNNI (x86_kquant_body.h), NEON
 * (arm_neon_kquant.c) */
void evlm__neon_gemm_q_kq(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                          size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx2_gemm_q_kq(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                          size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx512vnni_gemm_q_kq(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                                size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
/* ... and for their interleaved forms Q4_K_R16 / Q5_K_R16 / Q6_K_R16 (quant/kquant_repack.h): AVX2
 * and VNNI (kquant_r16_body.h), NEON plain and SDOT (arm_neon_kquant_r16.c) */
void evlm__avx2_gemm_q_kqr16(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                             size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx512vnni_gemm_q_kqr16(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,
                                   const void *w, size_t ldw, evlm_type wt, int m, int n0, int n1,
                                   int k);
void evlm__neon_gemm_q_kqr16(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                             size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__dotprod_gemm_q_kqr16(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                                size_t ldw, evlm_type wt, int m, int n0, int n1, int k);

/* The int8 gemm_q (Q8_0 / Q4_0 / Q4_1 and their *_R16 forms): the per-ISA files supply register
 * tiles and a shape, q8_walk.c walks the activation rows and [n0, n1) with them.
 * Row-major weights: a tile computes MR activation rows (1..4) x NR weight rows over kb blocks;
 * tiles[0][MR - 1] is MR x 1, tiles[1][MR - 1] MR x nr, tiles[2][0] 1 x nr1 (the single-row
 * chunks of decode). */
typedef void (*evlm__q8_tile)(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                              size_t ldw, int kb);
typedef struct {
    int nr1, nr; /* weight rows per wide tile: one activation row in the chunk / more */
} evlm__q8_shape;
void evlm__q8_walk(const evlm__q8_shape *s, const evlm__q8_tile (*tiles)[4], float *y, size_t ldy,
                   const evlm_q8a *x, size_t ldx, const void *w, size_t ldw, int m, int n0, int n1,
                   int k);
/* *_R16 weights: a tile computes MR activation rows (x, stride ldx blocks) x the rows r < rows of
 * one group (never writing y past them) over nb block columns from gw (the group's block column
 * b0), starting from 0 (first) or from y (later block chunks); corr (when the walk has an offset):
 * per activation row (stride ldc) and block, -off times the block's byte sum. tiles[MR - 1][0]
 * and, if not NULL, tiles[MR - 1][1] are called in turn (tiles that each cover half a group). */
typedef void (*evlm__q8r16_tile)(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,
                                 const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,
                                 bool first);
typedef struct {
    int mc;       /* activation rows per chunk; 0: evlm__act_chunk_rows(k) */
    int mr;       /* activation rows per tile (tiles[mr - 1] the largest) */
    bool split_k; /* blocks in chunks whose corrections fit 4096 int32, partial sums through y
                   * (else all blocks in one pass: the tiles ignore first, and off must be 0) */
} evlm__q8r16_shape;
/* c[b] = mul * (sum of the 32 int8 of activation block x[b]) for b < nb (exact) */
typedef void (*evlm__q8_corr)(int32_t *c, const evlm_q8a *x, int nb, int32_t mul);
void evlm__q8r16_walk(const evlm__q8r16_shape *s, const evlm__q8r16_tile (*tiles)[2],
                      evlm__q8_corr corr_fn, int32_t off, float *y, size_t ldy, const evlm_q8a *x,
                      size_t ldx, const void *w, size_t ldw, evlm_type base, int m, int n0, int n1,
                      int k);

/* ---- per-type kernel entries ----------------------------------------------------------------
 * Each ISA file registers its kernels per weight type in arrays indexed by evlm_type, filled
 * where the kernels are defined (designated initializers: const data, nothing at start-up), and
 * its entry points look the type up instead of switching on it. A *_R16 form has no entry of its
 * own: it is looked up through its base (evlm_type_traits.r16_base), so a block type is its enum
 * value, its traits and ops rows and one entry per array here. The lookup happens once per call
 * of gemm / gemm_q; inside a tile the type is a compile-time constant (each tile is instantiated
 * per type), so the format's own branches and its sizes (read from the traits table once per
 * tile call, not per block) cost nothing per element. test_types checks that every table has an
 * entry for every type of the kinds it handles. */

/* One block type's int8 gemm_q kernels: its row-major tiles, the tiles of its R16 form, and the
 * zero point of those R16 tiles (they compute on bytes offset by off; the walk adds -off times
 * each activation block's byte sum: x86_avx2_quant.c Q4_0 8, x86_avx512_quant.c Q8_0 128 and
 * Q4_0 8, 0 elsewhere). NULL tiles: that layout has no kernel in this file. */
typedef struct {
    const evlm__q8_tile (*tiles)[4];
    const evlm__q8r16_tile (*r16)[2];
    int32_t off;
} evlm__q8_kern;
/* gemm_q with the entry of wt in kern (an R16 form through its base): q8_walk.c's walks. Returns
 * false, computing nothing, when kern has no kernel for wt. */
bool evlm__q8_gemm(const evlm__q8_kern kern[EVLM_TYPE_COUNT], const evlm__q8_shape *s,
                   const evlm__q8r16_shape *rs, evlm__q8_corr corr_fn, float *y, size_t ldy,
                   const evlm_q8a *x, size_t ldx, const void *w, size_t ldw, evlm_type wt, int m,
                   int n0, int n1, int k);
/* The dequantizing gemm's row decoder of one block type: k elements (k a multiple of 32) of the
 * row at w (the type's file layout) to floats, value for value as evlm_dequantize_row. */
typedef void (*evlm__deq_row)(const void *w, float *dst, int k);
/* Row n of a block matrix of type wt (row-major, ldw bytes apart, or its R16 form: each block
 * gathered back into ggml bytes, quant/repack.h) to k floats through deq, its base's decoder. */
void evlm__deq_matrix_row(const void *w, size_t ldw, evlm_type wt, int n, float *dst, int k,
                          evlm__deq_row deq);

/* Float R16 gemm (F32_R16 / F16_R16 / BF16_R16, quant/repack.h). A tile computes y rows [0, MR)
 * and outputs [0, lim) (lim <= 16 G: the last group may be partial; nothing past lim is read or
 * written) over columns [j0, j1) of G groups starting at w (gs bytes apart); first: the
 * accumulators start at 0, else at y's values; pf: prefetch ahead in every group. The per-ISA
 * files supply tiles[G - 1][MR - 1] and a shape; r16f_walk.c walks the matrix with them. */
typedef void (*evlm__r16f_tile)(float *y, size_t ldy, const float *x, size_t ldx, const char *w,
                                size_t gs, int j0, int j1, bool first, int lim, bool pf);
typedef struct {
    int stream_m;    /* m <= stream_m: one pass along k ... */
    int stream_g[9]; /* ... stream_g[m] groups per tile (stream_m <= 8) */
    int mr, g;       /* otherwise tiles of mr rows x g groups */
} evlm__r16f_shape;
void evlm__r16f_walk(const evlm__r16f_shape *s, const evlm__r16f_tile (*tiles)[8], float *y,
                     size_t ldy, const float *x, size_t ldx, const void *w, evlm_type wt, int m,
                     int n0, int n1, int k);
/* A float type's R16 tiles (tiles[G - 1][MR - 1]), registered per file type (F32 / F16 / BF16)
 * and looked up through r16_base. */
typedef const evlm__r16f_tile (*evlm__r16f_set)[8];
/* The entries (w the matrix base, n0 a multiple of 16); each output bitwise evlm__ref_gemm's. */
void evlm__avx512_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                            evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx2_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                          evlm_type wt, int m, int n0, int n1, int k);
void evlm__neon_gemm_r16f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                          evlm_type wt, int m, int n0, int n1, int k);

/* 2:4-sparse forms (quant/sparse24.h), x86-64 only: gemm_q on Q8_0_S24 (x86_avx512_s24q.c for
 * the avx512vnni table, x86_avx2_s24.c for avx2 / avx512) and gemm on F32_S24 / F16_S24 /
 * BF16_S24 (x86_avx512_s24f.c, x86_avx2_s24.c): each output bitwise the dense R16 kernel's of the
 * same table on the zeroed matrix. Other tables (NEON without dotprod, NEON floats) take ref's,
 * which are the NEON R16 kernels' bits (evlm__q8_gemm refuses S24 forms). */
void evlm__avx512vnni_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                                 size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx2_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                           size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx512_gemm_s24f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                            evlm_type wt, int m, int n0, int n1, int k);
void evlm__avx2_gemm_s24f(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                          evlm_type wt, int m, int n0, int n1, int k);
/* AArch64 with dotprod (arm_s24.c): gemm_q on Q8_0_S24, bitwise ref's */
void evlm__dotprod_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                              size_t ldw, evlm_type wt, int m, int n0, int n1, int k);

/* The float gemm's register tiles of x86_avx2.c / x86_avx512.c: MR rows of x (1..4) x NR weight
 * rows over k; pf: the addresses to prefetch ahead (decode) or NULL. A file type's set is
 * set[0][MR] (NR = 1), set[1][MR] (NR wide), set[2][1] (1 x the decode width). */
typedef void (*evlm__f_tile)(float *y, size_t ldy, const float *x, size_t ldx, const char *w,
                             size_t ldw, int k, const char *pf);
typedef const evlm__f_tile (*evlm__f_set)[5];

/* The per-type entries of each file (x86-64 or AArch64 only; see above), for the tests. */
extern const evlm__f_set evlm__avx2_gemm_f[EVLM_TYPE_COUNT], evlm__avx512_gemm_f[EVLM_TYPE_COUNT];
extern const evlm__r16f_set evlm__avx2_r16f[EVLM_TYPE_COUNT], evlm__avx512_r16f[EVLM_TYPE_COUNT];
extern const evlm__deq_row evlm__avx2_deq[EVLM_TYPE_COUNT];
extern const evlm__deq_row evlm__avx512vnni_deq[EVLM_TYPE_COUNT];
extern const evlm__q8_kern evlm__avx2_q8[EVLM_TYPE_COUNT], evlm__avx512vnni_q8[EVLM_TYPE_COUNT];
/* arm_neon.c's float tiles take no pf (they prefetch by shape): [0][MR - 1], [1][MR - 1],
 * [2][0] as q8_walk.c's int8 tiles */
typedef void (*evlm__neon_f_tile)(float *y, size_t ldy, const float *x, size_t ldx, const char *w,
                                  size_t ldw, int k);
typedef const evlm__neon_f_tile (*evlm__neon_f_set)[4];
extern const evlm__neon_f_set evlm__neon_gemm_f[EVLM_TYPE_COUNT];
extern const evlm__r16f_set evlm__neon_r16f[EVLM_TYPE_COUNT];
extern const evlm__deq_row evlm__neon_deq[EVLM_TYPE_COUNT];
/* arm_i8mm.c registers R16 forms only (row-major types and m = 1 go to arm_dotprod.c) */
extern const evlm__q8_kern evlm__neon_q8[EVLM_TYPE_COUNT], evlm__dotprod_q8[EVLM_TYPE_COUNT];
extern const evlm__q8_kern evlm__i8mm_q8[EVLM_TYPE_COUNT];

/* AArch64 only: arm_neon.c (NEON, the base ISA there: the "neon" table) and arm_dotprod.c (SDOT,
 * compiled with -march=armv8.2-a+dotprod; dispatch.c puts its gemm_q into "neon" when the hwcaps
 * report dotprod). */
extern const evlm_kernels evlm_kernels_neon;
void evlm__neon_dotprod_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                               size_t ldw, evlm_type wt, int m, int n0, int n1, int k);
/* arm_i8mm.c (SMMLA, -march=armv8.2-a+dotprod+i8mm): gemm_q when the hwcaps report i8mm too */
void evlm__neon_i8mm_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                            size_t ldw, evlm_type wt, int m, int n0, int n1, int k);

#endif
