/*
 * ops.h - the float32 training ops: each forward beside its backward, spread over the thread
 * pool through the kernel table (kernels.h: ref + AVX2 + AVX-512 + NEON).
 *
 * Layout: row-major, m rows (tokens or patches) of contiguous floats unless a stride is given.
 * Gradient conventions, for every op: input gradients (dx ...) are WRITTEN unless the op says
 * "accumulates" (the residual stream's dx, parameter gradients dw / db always accumulate, so a
 * step can sum micro-batches). Any gradient pointer may be NULL: not wanted, not computed.
 * Work is split so each output element is computed by one thread in a fixed order; reductions
 * over rows (dw, db of norms, dW of linears) are done in a fixed order too: results depend on
 * the thread count only where a doc line says so, and are then deterministic for a fixed count.
 * The ops allocate nothing: what they need beyond their arguments comes from evlm_tops (planned
 * once per model state). Not here: the model's walk (tdecoder.c, tvision.c), losses (loss.c).
 */
#ifndef EVLM_TRAIN_OPS_H
#define EVLM_TRAIN_OPS_H

#include "core/threadpool.h"
#include "kernels/kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The ops' environment: pool, kernel table, per-thread scratch sized at init. */
typedef struct evlm_tops {
    evlm_pool *pool;
    const evlm_kernels *k;
    float *scratch; /* per thread: scratch_stride floats, thread i's at i * scratch_stride */
    size_t scratch_stride;
    float *reduce; /* per thread partial sums of row reductions: reduce_stride floats each */
    size_t reduce_stride;
} evlm_tops;

/* Plans scratch for rows of up to max_dim floats and attention over up to max_seq keys of
 * head_dim floats (pool's thread count; k NULL: evlm_kernels_get()). */
evlm_status evlm_tops_init(evlm_tops *o, evlm_pool *pool, const evlm_kernels *k, int max_dim,
                           int max_seq, int head_dim);
void evlm_tops_release(evlm_tops *o);

/* ---- linear: y (m, n) = x (m, k) @ w (n, k)^T (+ b (n)) ------------------------------------ */
void evlm_top_linear(const evlm_tops *o, float *y, const float *x, const float *w, const float *b,
                     int m, int n, int k);
/* dx (m, k) = dy (m, n) @ w (n, k) (accumulates when dx_acc); dw (n, k) += dy^T @ x;
 * db (n) += column sums of dy. */
void evlm_top_linear_bwd(const evlm_tops *o, float *dx, bool dx_acc, float *dw, float *db,
                         const float *dy, const float *x, const float *w, int m, int n, int k);

/* ---- RMSNorm: y (m, n) = x * rstd * w, rstd (m) = 1 / sqrt(mean(x^2) + eps) ---------------- */
void evlm_top_rmsnorm(const evlm_tops *o, float *y, float *rstd, const float *x, const float *w,
                      int m, int n, float eps);
/* dx (m, n) accumulates; dw (n) accumulates. rstd from the forward. */
void evlm_top_rmsnorm_bwd(const evlm_tops *o, float *dx, float *dw, const float *dy, const float *x,
                          const float *w, const float *rstd, int m, int n);

/* ---- LayerNorm: y = (x - mean) * rstd * w + b (biased variance) ---------------------------- */
void evlm_top_layernorm(const evlm_tops *o, float *y, float *mean, float *rstd, const float *x,
                        const float *w, const float *b, int m, int n, float eps);
/* dx (m, n) accumulates; dw, db (n) accumulate. */
void evlm_top_layernorm_bwd(const evlm_tops *o, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, const float *mean, const float *rstd,
                            int m, int n);

/* ---- SwiGLU: h (n) = silu(g) * u; GELU (tanh approximation): y = gelu(x) ------------------ */
void evlm_top_swiglu(const evlm_tops *o, float *h, const float *g, const float *u, size_t n);
/* dg, du (n) written from dh. */
void evlm_top_swiglu_bwd(const evlm_tops *o, float *dg, float *du, const float *dh, const float *g,
                         const float *u, size_t n);
void evlm_top_gelu_tanh(const evlm_tops *o, float *y, const float *x, size_t n);
/* dx (n) written (may alias dy). */
void evlm_top_gelu_tanh_bwd(const evlm_tops *o, float *dx, const float *dy, const float *x,
                            size_t n);

/* ---- RoPE (rotate-half, as evlm_kernels.rope): x (m, n_heads * head_dim) in place ----------
 * Row r uses cos / sin row pos[r] of tables [*][head_dim / 2]. inverse: rotate by -angle (the
 * backward of the forward rotation: apply it to dx). */
void evlm_top_rope(const evlm_tops *o, float *x, int m, int n_heads, int head_dim, const float *cos,
                   const float *sin, const int32_t *pos, bool inverse);

/* ---- attention over packed sequences ------------------------------------------------------
 * Rows [seq_off[s], seq_off[s] + seq_len[s]) form sequence s; a row sees only keys of its own
 * sequence: those at or before it when causal, all of them otherwise, and never a key whose
 * key_valid byte is 0 (padding; NULL: all valid; a row that sees no key gets out = 0).
 * q, out: (m, n_heads * head_dim); k, v: (m, n_kv_heads * head_dim) (GQA: head h reads kv head
 * h / (n_heads / n_kv_heads)). lse (n_heads, m): the log-sum-exp of each row's scaled scores,
 * kept for the backward. scale: usually 1 / sqrt(head_dim). A row that sees no key has
 * lse = -INFINITY and no gradient. m (lse's row stride) is taken as the end of the last
 * sequence (max of seq_off + seq_len): rows past it, or outside every sequence, are not touched
 * and have no lse row. evlm_tops_init's max_seq bounds seq_len. Computed as GEMMs on blocks of
 * query rows (ops_attn.c). */
typedef struct evlm_top_attn_shape {
    int n_seq;
    const int *seq_off, *seq_len;
    int n_heads, n_kv_heads, head_dim;
    bool causal;
    const uint8_t *key_valid; /* (m) or NULL */
    float scale;
} evlm_top_attn_shape;

void evlm_top_attn(const evlm_tops *o, const evlm_top_attn_shape *sh, float *out, float *lse,
                   const float *q, const float *k, const float *v);
/* dq (like q), dk, dv (like k, v) written; out and lse from the forward. */
void evlm_top_attn_bwd(const evlm_tops *o, const evlm_top_attn_shape *sh, float *dq, float *dk,
                       float *dv, const float *dout, const float *q, const float *k, const float *v,
                       const float *out, const float *lse);

/* ---- element-wise helpers ------------------------------------------------------------------ */
/* y (n) += x (n) */
void evlm_top_add(const evlm_tops *o, float *y, const float *x, size_t n);

#endif
