/*
 * prune.h - unstructured and N:M weight pruning (the prune stage of evlm_quantize; the public
 * parameters and their meaning are in evlm_compress.h):
 *   - evlm_prune_mask: the masks of magnitude (|W_ij|) and Wanda (|W_ij| * ||X_j||_2), compared
 *     within each output row (unstructured) or each group of M consecutive inputs (N:M);
 *   - the pipeline's stage: per decoder matrix the mask, then (SparseGPT) the column loop of
 *     gptq.h, which also quantizes in the same pass when the method is GPTQ; per vision matrix
 *     magnitude pruning.
 * Ties in a score go to the lower column first, so masks do not depend on the sort.
 * Not here: SparseGPT's column loop itself (gptq.c), structured pruning (heads, channels,
 * layers), sparse storage formats and kernels.
 */
#ifndef EVLM_COMPRESS_PRUNE_H
#define EVLM_COMPRESS_PRUNE_H

#include "compress/pipeline.h"
#include "evlm_compress.h"

#include <stdbool.h>
#include <stdint.h>

/* Checks an unstructured sparsity or an N:M pattern (group_m > 0) for matrices of k columns
 * (k <= 0: no shape check); what names the setting in the message. */
evlm_status evlm_prune_check(const char *what, double sparsity, int keep_n, int group_m, int64_t k);

/* mask (n x k, 1: pruned) of w (n x k): per row the llround(sparsity * k) least scores, or per
 * group of group_m inputs the group_m - keep_n least; score |w| (MAGNITUDE) or |w| * sqrt(sq[j])
 * (WANDA; sq[j] = sum of x_j^2 over the calibration rows, e.g. the diagonal of X^T X). */
evlm_status evlm_prune_mask(evlm_prune_method m, const float *w, int64_t n, int64_t k,
                            const double *sq, double sparsity, int keep_n, int group_m,
                            uint8_t *mask);

/* ---- the pipeline's stage (quantize.c) ---- */
/* The prune parameters of p against the quantization method and types; EVLM_OK when no pruning. */
evlm_status evlm__prune_validate(const evlm_quantize_params *p, const evlm__qmethod *meth);
/* Whether calibration must collect X^T X for the pruning (Wanda, SparseGPT). */
bool evlm__prune_needs_hessian(const evlm_quantize_params *p);
/* Whether decoder matrix x is pruned (a method is set and no keep pattern matches it). */
bool evlm__prune_applies(const qctx *q, const qt *x);
/* Prunes decoder matrix x (w: its float rows, n x k, used as scratch) and brings it to x->to
 * (quantizing through meth's algorithm where the pruning keeps zeros): sets x->qdata or
 * x->fdata, x->view, x->method, x->rel_err (against the unpruned float matrix), x->sparsity. */
evlm_status evlm__prune_matrix(qctx *q, qt *x, float *w, const evlm__qmethod *meth);
/* The decoder matrices of every layer, in layer order, for calibrated pruning (Wanda,
 * SparseGPT): layer l's statistics are gathered again with layers 0..l-1 already pruned (and
 * quantized) in the model, as SparseGPT and Wanda do; matrices left dense go through meth. */
evlm_status evlm__prune_layers(qctx *q, const evlm__qmethod *meth);
/* Magnitude pruning of the vision tower and connector matrices (their own setting). */
evlm_status evlm__prune_vision(qctx *q);

#endif
