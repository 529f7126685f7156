/*
 * awq.h - activation-aware weight scaling (after Lin et al. 2023, "AWQ"), searched per group of
 * linear layers that share one input (q/k/v, gate/up, o, down).
 *
 * Input channels that carry large activations matter more; scaling column j of W up by s_j
 * (and the input down by s_j) keeps W x unchanged in float but shrinks the relative rounding
 * error of the important columns. For alpha on a grid (0, 1/n_grid, ..., 1):
 *   s_j = max(mean|x_j|^alpha, 1e-4) / sqrt(max_j s * min_j s),
 * every weight W of the group is quantized as Q(W diag(s)) with the format's own quantizer, and
 * the error sum_W ||Q(W diag(s)) (diag(s)^-1 x) - W x||^2 is measured on the calibration rows
 * (calib.h's reservoir). alpha = 0 gives s = 1 exactly, i.e. plain round-to-nearest, and ties
 * keep the smaller alpha, so the chosen s is never worse than RTN on those rows.
 *
 * Using s: quantize W diag(s) (evlm_awq_scale_cols, then any quantizer, GPTQ included) and fold
 * diag(s)^-1 into the op that produces the input (the evlm_awq_fold_* helpers, on float copies).
 * Not here: the block-output loss of the original AWQ (we measure each linear's own output) and
 * weight clipping search.
 */
#ifndef EVLM_COMPRESS_AWQ_H
#define EVLM_COMPRESS_AWQ_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "evlm.h"

#include <stdint.h>

typedef struct evlm_awq_params {
    int n_grid;   /* alpha = i / n_grid, i = 0..n_grid (default 20) */
    int max_rows; /* use at most this many calibration rows (default 512; 0: all) */
} evlm_awq_params;

/* One linear layer of the group: w is n rows (outputs) x k (the shared input width). */
typedef struct evlm_awq_linear {
    const float *w;
    int64_t n;
} evlm_awq_linear;

typedef struct evlm_awq_result {
    float alpha;    /* the chosen exponent */
    double err;     /* output error with the chosen s, summed over the group's layers */
    double err_rtn; /* the same at alpha = 0 (round-to-nearest) */
    double ref;     /* sum ||W x||^2, for relative errors */
} evlm_awq_result;

evlm_awq_params evlm_awq_default_params(void);

/* The scales for one alpha (formula above) from mean |x_j| (k values >= 0) into s[k]. */
void evlm_awq_scales(const float *mean_abs, int64_t k, float alpha, float *s);

/* Searches alpha for the group lin[0..n_lin) on the rows x (n_rows x k); writes the best s[k].
 * pool may be NULL. */
evlm_status evlm_awq_search(evlm_type t, const evlm_awq_linear *lin, int n_lin, int64_t k,
                            const float *mean_abs, const float *x, int64_t n_rows,
                            const evlm_awq_params *p, evlm_pool *pool, float *s,
                            evlm_awq_result *res);

/* W (n x k) <- W diag(s): the matrix to quantize. */
void evlm_awq_scale_cols(float *w, int64_t n, int64_t k, const float *s);

/* Folds diag(s)^-1 into the producer of the scaled input (float copies, in place):
 *  - attn_qkv, ffn_gate_up: the RMSNorm weight g (k): g_j /= s_j;
 *  - ffn_down: up_proj (k rows of k_prev, bias b nullable): row j and b_j /= s_j;
 *  - attn_o: v_proj (n_kv_heads * head_dim rows of k_prev, bias nullable), where o_proj's input
 *    channel h * head_dim + d comes from v_proj row kvh(h) * head_dim + d; with grouped-query
 *    attention all q heads of one kv head must share the scale (evlm_awq_tie_heads), else
 *    EVLM_ERR_ARG. Each fold is exact in real arithmetic (see awq.c); in float it changes the
 *    outputs by a few ulps. */
evlm_status evlm_awq_fold_norm(float *g, int64_t k, const float *s);
evlm_status evlm_awq_fold_rows(float *w, float *b, int64_t k_prev, const float *s, int64_t k);
evlm_status evlm_awq_fold_v_proj(float *wv, float *bv, int64_t k_prev, const float *s, int n_heads,
                                 int n_kv_heads, int head_dim);

/* Averages mean_abs (n_heads * head_dim) over the q heads that share a kv head, so that the
 * scales of o_proj can be folded into v_proj under grouped-query attention. */
evlm_status evlm_awq_tie_heads(float *mean_abs, int n_heads, int n_kv_heads, int head_dim);

#endif
