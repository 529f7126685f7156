/*
 * gptq.h - GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
 * Pre-trained Transformers") into ggml's Q8_0 / Q4_0 / Q4_1 blocks.
 *
 * W is n rows (outputs) x k columns (inputs), row-major float; the calibration inputs X (N rows)
 * enter only through xtx = X^T X (calib.h collects it), and H = 2/N xtx. The steps:
 *   - dead inputs (H_jj = 0: the channel was always 0): H_jj = 1 and column j of W = 0;
 *   - damping: H += lambda I, lambda = damp * mean(diag H) (retried x10 if not positive definite);
 *   - U = upper Cholesky factor of H^-1 (LAPACKE dpotrf, dpotri, dpotrf), so H^-1 = U^T U;
 *   - columns in order, in blocks of block_cols with lazy updates of the columns right of the
 *     block: quantize column j, then spread its error over the remaining columns,
 *     w[j+1:] -= (w_j - q_j) / U_jj * U[j, j+1:], which is the least-squares optimum of the
 *     remaining weights given the columns already fixed (tested against a direct solve);
 *   - every 32 consecutive columns of a row form one block whose scale (and min for Q4_1) is
 *     chosen when its first column is reached, from the current error-compensated weights, with
 *     exactly the rules of evlm_quantize_row_q8_0 / q4_0 / q4_1 (with a diagonal H the output is
 *     bit-identical to round-to-nearest); later columns of the block are rounded and clamped to
 *     that block's grid.
 * Rows are independent, so threads split rows and the output does not depend on their number.
 * Memory: k*k doubles (the factorization) + k*k floats (U) + n*k floats (working weights).
 * The same sweep writes the ONNX export's QDQ weights (src/npu, qdq.h) onto a symmetric grid
 * (evlm_gptq_sym): codes in [-qmax, qmax] (int8: 127, int4: 7), one float32 scale per `group`
 * consecutive columns (int4: 64; group >= k: one per output channel, int8), the scale amax / qmax
 * of the group's weights as they stand when its first column is reached (for per-channel int8:
 * the original row), each code round-half-even(w / scale) saturated, dequantized as code * scale
 * (ONNX DequantizeLinear with zero point 0). With a diagonal Hessian this is exactly
 * evlm_gptq_sym_round (plain rounding), the export's round-to-nearest.
 * The same column loop prunes (SparseGPT, Frantar & Alistarh 2023, evlm_gptq_run below): a
 * pruned column's value becomes exactly 0 and its error is spread like a rounding error. The mask
 * is given (fixed: Wanda / magnitude masks, kept exactly through quantization) or chosen on the
 * way (adaptive): per row, per block of block_cols columns at the block's first column, the
 * round(S * i2) - round(S * i1) columns of least w_j^2 / U_jj^2 (current compensated weights);
 * for N:M, per group of M columns when its first column is reached (all the groups of a 32-column
 * quantization block at that block's start when quantizing, so its grid sees the final zeros).
 * Quantized types need an exact zero on the grid: Q8_0 and Q4_0 (Q4_1's min is refused). With
 * t = F32 the loop only prunes and writes float rows.
 * Not here: act-order (columns by decreasing H_jj), which conflicts with fixed 32-column blocks.
 */
#ifndef EVLM_COMPRESS_GPTQ_H
#define EVLM_COMPRESS_GPTQ_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "evlm.h"

#include <math.h>
#include <stdint.h>

typedef struct evlm_gptq_params {
    double damp;     /* relative damping (default 0.01) */
    int block_cols;  /* lazy-update block, a multiple of 32 (default 128) */
    int max_retries; /* damping x10 per retry while H is not positive definite (default 4) */
    float *trace;    /* nullable, n x k: receives each weight as it was just before it was
                        quantized (the error-compensated value); for tests and diagnostics */
} evlm_gptq_params;

typedef struct evlm_gptq_result {
    double err, ref;  /* ||X (W - Q)^T||^2 and ||X W^T||^2 from xtx (undamped) */
    double rel_err;   /* err / ref (0 when ref = 0) */
    double damp_used; /* the relative damping that made H positive definite */
    int64_t dead_cols;
} evlm_gptq_result;

evlm_gptq_params evlm_gptq_default_params(void);

/* Pruning inside the column loop (see the top). All zero: no pruning. */
typedef struct evlm_gptq_prune {
    const uint8_t *mask; /* n x k fixed mask (1: the weight becomes 0), or NULL */
    double sparsity;     /* adaptive, unstructured: fraction of each row set to 0, [0, 1) */
    int keep_n, group_m; /* adaptive N:M: keep keep_n of every group_m inputs (32 % group_m = 0) */
    uint8_t *mask_out;   /* nullable, n x k: receives the mask used */
} evlm_gptq_prune;

/* Quantizes w (n x k) with xtx (k x k, full symmetric square) gathered from n_samples rows into
 * out (n rows of evlm_row_bytes(t, k) bytes). pool may be NULL (one thread). */
evlm_status evlm_gptq_quantize(evlm_type t, const float *w, int64_t n, int64_t k, const double *xtx,
                               int64_t n_samples, const evlm_gptq_params *p, evlm_pool *pool,
                               void *out, evlm_gptq_result *res);

/* The export's symmetric grid (above): where GPTQ writes, n x k codes and n x groups scales
 * (groups = ceil(k / group), 1 when group >= k). */
typedef struct evlm_gptq_sym {
    int qmax;      /* largest code: 127 (int8), 7 (int4) */
    int64_t group; /* columns per scale */
    int8_t *codes; /* out: [n][k] */
    float *scales; /* out: [n][groups] */
} evlm_gptq_sym;

/* The grid's scale of a group whose largest |w| is amax (1 for an all-zero group). */
static inline float evlm_gptq_sym_scale(float amax, int qmax) {
    return amax > 0 ? amax / (float)qmax : 1.0f;
}

/* w's code on a grid of scale s: round half to even, saturated at +-qmax. */
static inline int8_t evlm_gptq_sym_code(float w, float s, int qmax) {
    float r = nearbyintf(w / s);
    return (int8_t)(r < (float)-qmax ? (float)-qmax : r > (float)qmax ? (float)qmax : r);
}

/* Round-to-nearest onto the grid: every group's scale from its own weights, then each code. */
void evlm_gptq_sym_round(const evlm_gptq_sym *g, const float *w, int64_t n, int64_t k);

/* GPTQ of w (n x k) onto g's grid, fills g->codes and g->scales; the rest as
 * evlm_gptq_quantize (p->block_cols must be a multiple of g->group unless group >= k). */
evlm_status evlm_gptq_quantize_sym(const evlm_gptq_sym *g, const float *w, int64_t n, int64_t k,
                                   const double *xtx, int64_t n_samples, const evlm_gptq_params *p,
                                   evlm_pool *pool, evlm_gptq_result *res);

/* err = ||X (W - Q)^T||^2 and ref = ||X W^T||^2 of g's codes and scales (as evlm_gptq_result). */
evlm_status evlm_gptq_sym_error(const evlm_gptq_sym *g, const float *w, int64_t n, int64_t k,
                                const double *xtx, double *err, double *ref);
/* evlm_gptq_quantize with pruning: t is Q8_0 / Q4_0 (out: quantized rows; pruned weights are
 * exactly 0 once dequantized) or F32 (out: n x k floats, pruning only); pr NULL: no pruning. */
evlm_status evlm_gptq_run(evlm_type t, const float *w, int64_t n, int64_t k, const double *xtx,
                          int64_t n_samples, const evlm_gptq_params *p, const evlm_gptq_prune *pr,
                          evlm_pool *pool, void *out, evlm_gptq_result *res);

#endif
