/*
 * loss.h - the training losses over rows of logits (ce, kd, rkl; qat_ce is ce on the logits of
 * the fake-quantized model) and the hidden-state MSE, each with its gradient.
 *
 * The row losses take a block of rows [n][V] of student logits, computed only for the target
 * rows (tmodel.c walks the targets in blocks so a 49k vocabulary never has all rows at once);
 * the gradient scale * d(row loss)/d(logits) is written over the logits in place. Each row's loss
 * goes to row_loss[r] (double) so the caller sums them in a fixed order. Rows are split over the
 * pool's threads; a row is computed by one thread, so results do not depend on the thread count.
 * Not here: the logits themselves, the head's backward (tmodel.c).
 */
#ifndef EVLM_TRAIN_LOSS_H
#define EVLM_TRAIN_LOSS_H

#include "train/ops.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* -log softmax(z)[y]; z := scale * (softmax(z) - onehot(y)) when grad. */
void evlm_tloss_ce_rows(const evlm_tops *o, float *z, const int32_t *y, int n, int V, float scale,
                        bool grad, double *row_loss);

/* tau^2 KL(softmax(zt / tau) || softmax(z / tau)); z := scale * tau * (p_s - p_t) when grad. */
void evlm_tloss_kd_rows(const evlm_tops *o, float *z, const float *zt, int n, int V, float tau,
                        float scale, bool grad, double *row_loss);

/* tau^2 KL(softmax(z / tau) || softmax(zt / tau)); z := scale * tau * p_s * (c - sum p_s c)
 * with c = log p_s - log p_t, when grad. */
void evlm_tloss_rkl_rows(const evlm_tops *o, float *z, const float *zt, int n, int V, float tau,
                         float scale, bool grad, double *row_loss);

/* The sum of (h - ht)^2 over n elements (in a fixed order); when d is not NULL,
 * d += scale * 2 * (h - ht). */
double evlm_tloss_sq_err(float *d, const float *h, const float *ht, size_t n, float scale);

#endif
