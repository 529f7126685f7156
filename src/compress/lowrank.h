/*
 * lowrank.h - low-rank factorization of one matrix, W [n = out, k = in] ~ B A with A [r, k] and
 * B [n, r], in three flavours that differ only in the input transform T applied before the SVD
 * (M = W T = U S V^T, B = U_r S_r^1/2, A = S_r^1/2 V_r^T T^-1):
 *   - plain SVD: T = I (truncation minimizes the weight-space error ||W - B A||_F);
 *   - ASVD: T = diag(s), s_j = (mean |x_j|)^alpha over the calibration inputs (alpha 0.5);
 *   - SVD-LLM / whitening: T = L, the Cholesky factor of the input covariance C = X^T X / N
 *     (damped): ||(W - B A) L||_F^2 is then the dropped singular values' energy, which is the
 *     output error on the calibration rows (exactly so without damping).
 * The same whitened factorization of E = W - Q(W) is the closed-form low-rank compensation of
 * quantization error (LQER / QERA).
 *
 * Whatever the transform, each component i carries its activation-space energy
 * e_i = s_i^2 z_i^T C z_i (z_i = T^-T v_i, C the undamped covariance, or I without calibration):
 * the components are orthogonal in U, so the output error of keeping r of them is the sum of the
 * dropped e_i; rank allocation across matrices (lowrank.c, quantize.c) uses these.
 *
 * Not here: which matrices, the files (lowrank_model.c), the runtime (model/decoder.c).
 * Double precision throughout, LAPACKE dgesdd / dpotrf / dtrtrs.
 */
#ifndef EVLM_COMPRESS_LOWRANK_H
#define EVLM_COMPRESS_LOWRANK_H

#include "evlm.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum evlm__lr_mode { EVLM_LR_SVD = 0, EVLM_LR_ASVD, EVLM_LR_WHITEN } evlm__lr_mode;

/* A decomposition of one n x k matrix (row-major doubles). */
typedef struct evlm__lr {
    int64_t n, k, kmax; /* kmax = min(n, k) */
    double *sigma;      /* [kmax] singular values of W T, decreasing */
    double *u;          /* [n][kmax] */
    double *z;          /* [kmax][k] row i: z_i = T^-T v_i (A's row i is sqrt(sigma_i) z_i) */
    double *e;          /* [kmax] activation-space energy of component i */
    double total;       /* sum of e: the output energy tr(W C W^T) */
} evlm__lr;

/* Decomposes w (n x k floats). xtx: sum of x x^T over n_rows calibration rows (k x k), needed by
 * ASVD's scales only through abs_mean (k mean |x_j|, may be NULL without calibration) and by
 * whitening (required); NULL: energies in weight space. alpha: ASVD's exponent. damp: the
 * covariance's ridge for whitening, relative to its mean diagonal (0 allowed when it is
 * positive definite; raised tenfold up to 1 when the Cholesky factorization fails). */
evlm_status evlm__lr_decompose(evlm__lr_mode mode, const float *w, int64_t n, int64_t k,
                               const double *xtx, int64_t n_rows, const float *abs_mean,
                               double alpha, double damp, evlm__lr *out);
void evlm__lr_free(evlm__lr *d);

/* The first r components as floats: a [r][k], b [n][r] (row-major, b = U_r S^1/2). */
void evlm__lr_factors(const evlm__lr *d, int64_t r, float *a, float *b);

/* Output energy of the components r.. (what keeping r of them loses). */
double evlm__lr_tail(const evlm__lr *d, int64_t r);

#endif
