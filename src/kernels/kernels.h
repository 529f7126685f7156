/*
 * kernels.h - the table of compute kernels, chosen once at start-up.
 *
 * `ref` (ref.c) is the scalar ground truth and is always built; SIMD tables (per-ISA files
 * compiled with their own flags) plug into the same struct and are compared against it in
 * tests. EVLM_ISA=ref|avx2|avx512|avx512vnni|neon overrides the choice. Kernels are
 * single-threaded and work on a row range; callers split rows across the thread pool so results
 * do not depend on the thread count. Not here: threading, memory planning (src/model).
 */
#ifndef EVLM_KERNELS_KERNELS_H
#define EVLM_KERNELS_KERNELS_H

#include "core/tensor.h"
#include "quant/quants.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct evlm_kernels {
    const char *name;
    /* Y (m, n) = X (m, k) @ W^T for W rows [n0, n1), W (n, k) of any float or quantized type wt
     * (quantized rows are dequantized: the --act f32 path) with a row stride of ldw bytes;
     * *_R16 weights as in gemm_q (n0 a multiple of 16).
     * ldx / ldy in floats. scratch: k floats. */
    void (*gemm)(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                 evlm_type wt, int m, int n0, int n1, int k, float *scratch);
    /* y (n) = x * rsqrt(mean(x^2) + eps) * w */
    void (*rmsnorm)(float *y, const float *x, const float *w, int n, float eps);
    /* g (n) = silu(g) * u */
    void (*silu_mul)(float *g, const float *u, int n);
    /* Rotary embedding, rotate-half convention (HF Llama): x (n_heads, head_dim) in place with
     * cos / sin (head_dim / 2) of this position. */
    void (*rope)(float *x, int n_heads, int head_dim, const float *cos, const float *sin);
    /* One query row against n_kv cached keys / values (rows of head_dim floats, stride ld):
     * out (head_dim) = softmax(q . K^T * scale) @ V. mask: NULL (all visible) or n_kv bytes,
     * 0 = hidden (at least one visible). scores: n_kv floats. */
    void (*attn_row)(float *out, const float *q, const float *k, const float *v, int n_kv,
                     int head_dim, size_t ld, float scale, const uint8_t *mask, float *scores);
    /* y (n) = (x - mean) * rsqrt(var + eps) * w + b, biased variance over n (LayerNorm) */
    void (*layernorm)(float *y, const float *x, const float *w, const float *b, int n, float eps);
    /* x (n) = gelu(x) in place, tanh approximation (transformers' gelu_pytorch_tanh) */
    void (*gelu_tanh)(float *x, int n);
    /* Dynamic activation quantization: x (k floats, k a multiple of 32) -> k / 32 blocks. */
    void (*quantize_act)(const float *x, evlm_q8a *y, int k);
    /* Y (m, n) = Xq (m rows of k / 32 blocks, row stride ldx blocks) @ W^T for W rows [n0, n1)
     * of quantized type wt (Q8_0 / Q4_0 / Q4_1, the k-quants), row stride ldw bytes; int8 dot
     * products.
     * The *_R16 types (quant/repack.h, quant/kquant_repack.h): w is the matrix base, ldw its base
     * row bytes, n0 a multiple of 16 (n1 need not be: only rows below n1 are written). Every output
     * element is the same float operations whatever m, n0, n1 (token trees rely on it). */
    void (*gemm_q)(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w, size_t ldw,
                   evlm_type wt, int m, int n0, int n1, int k);
    /* attn_row for n_q <= EVLM_ATTN_ROWS query rows that share one key / value head (the heads of
     * a GQA group, the tokens of a tree): row i (q[i] -> out[i], head_dim floats) sees the keys
     * t < n_kv[i] with t < n_pre or mask[i][t - n_pre] != 0 (mask NULL or mask[i] NULL: all), at
     * least one. Each row is bitwise this table's attn_row with the equivalent mask row; the keys
     * and values are read once for all rows (keys outer, rows inner). scores: n_q * max(n_kv)
     * floats. */
    void (*attn_rows)(float *const *out, const float *const *q, int n_q, const float *k,
                      const float *v, size_t ld, const int *n_kv, int n_pre,
                      const uint8_t *const *mask, int head_dim, float scale, float *scores);
    /* Largest of x[0, n) (n >= 1, no NaN): the same value in every table (max is exact). */
    float (*max)(const float *x, int n);
    /* Attention of n_q query rows against n_kv >= 1 keys / values for long sequences (the
     * vision tower, prompt prefill): out row i (head_dim floats, row stride ldo) =
     * softmax(q_i . K^T * scale) @ V over the keys it sees, with q rows of stride ldq and k / v
     * rows of stride ldkv (in floats). kv0 < 0: every row sees all n_kv keys; kv0 >= 0 (causal):
     * row i sees keys [0, kv0 + i] (n_kv >= kv0 + n_q). SIMD tables tile queries and keys with
     * an online (flash-style) softmax and a vector exp; row i depends only on q_i, its keys and
     * V (bitwise the same for any n_q or split of the rows), not bit-exact with ref. scratch:
     * evlm_attn_tile_scratch(n_kv, head_dim) floats. */
    void (*attn_tile)(float *out, size_t ldo, const float *q, size_t ldq, int n_q, const float *k,
                      const float *v, size_t ldkv, int n_kv, int head_dim, float scale, int kv0,
                      float *scratch);

    /* ---- training (train/ops.c; ref_train.c, x86_*_train.c, arm_train.c) ---- */
    /* C (m, n) = (acc ? C : 0) + op(A) (m, k) @ op(B) (k, n), C rows ldc floats apart. A's
     * element (i, p) is a[i * lda + p], or a[p * lda + i] when a_t; B's (p, j) is b[p * ldb + j],
     * or b[j * ldb + p] when b_t. SIMD tables pack panels of A and B into scratch
     * (EVLM_SGEMM_SCRATCH floats) and sum each element in blocks of k: per element the float
     * operations depend on k and a_t alone, never on m, n or where the element sits (so any
     * split of C over threads gives the same bits). */
    void (*sgemm)(float *c, size_t ldc, const float *a, size_t lda, bool a_t, const float *b,
                  size_t ldb, bool b_t, int m, int n, int k, bool acc, float *scratch);
    /* dx (n) += rstd * (dy * w - x * rstd^2 * mean(dy * w * x)): RMSNorm's input gradient */
    void (*rmsnorm_bwd)(float *dx, const float *dy, const float *x, const float *w, float rstd,
                        int n);
    /* dx (n) += rstd * (g - mean(g) - xh * mean(g * xh)), g = dy * w, xh = (x - mean) * rstd */
    void (*layernorm_bwd)(float *dx, const float *dy, const float *x, const float *w, float mean,
                          float rstd, int n);
    /* dg = dh * u * s * (1 + g (1 - s)), du = dh * g * s (s = sigmoid(g)); either may be NULL */
    void (*swiglu_bwd)(float *dg, float *du, const float *dh, const float *g, const float *u,
                       int n);
    /* dx = dy * gelu_tanh'(x) (dx may alias dy) */
    void (*gelu_tanh_bwd)(float *dx, const float *dy, const float *x, int n);
    /* x (n) = exp(x - mx) in place, 0 where x - mx < -87.3 (x = -INFINITY: masked); returns the
     * sum of the results (attention's softmax rows in training) */
    float (*exp_sum)(float *x, int n, float mx);
} evlm_kernels;

/* Floats of scratch sgemm needs in any table (packed panels of A and B). */
#define EVLM_SGEMM_SCRATCH ((size_t)1 << 19)

#define EVLM_ATTN_ROWS 16 /* most rows of one attn_rows call */

/* Whether row i of an attn_rows call sees key t. */
static inline bool evlm_attn_rows_sees(const int *n_kv, int n_pre, const uint8_t *const *mask,
                                       int i, int t) {
    return t < n_kv[i] && (t < n_pre || !mask || !mask[i] || mask[i][t - n_pre]);
}

/* Floats of scratch attn_tile needs in any table: ref's n_kv scores, or the SIMD tables' query
 * block (<= 64 queries: q^T and o^T of head_dim x 64, scores of 64 keys x 64, max and sum). */
static inline size_t evlm_attn_tile_scratch(int n_kv, int head_dim) {
    return (size_t)(n_kv > 0 ? n_kv : 0) + 64 * (2 * (size_t)(head_dim > 0 ? head_dim : 0) + 66);
}

/* The table in use (set at first call from cpuid / hwcaps and EVLM_ISA). */
const evlm_kernels *evlm_kernels_get(void);
/* A table by name ("ref", ...), or NULL if not built / not supported by this CPU. */
const evlm_kernels *evlm_kernels_by_name(const char *name);

extern const evlm_kernels evlm_kernels_ref;

#endif
