/*
 * adamw.h - the optimizer of the training loops: AdamW as torch.optim.AdamW computes it
 * (decoupled weight decay w -= lr * wd * w, then the moment updates and the bias-corrected
 * step), global-norm gradient clipping as torch.nn.utils.clip_grad_norm_, and the learning-rate
 * schedule (linear warmup, then cosine decay to a floor).
 * Everything works on the trainable parameters of an evlm_tparams only (frozen ones keep their
 * weights and moments) and allocates nothing. Sums run in a fixed order (double accumulators):
 * results do not depend on the thread count.
 * Not here: gradient accumulation (the loop sums micro-batches with evlm_tstep.grad_scale =
 * 1 / accum), checkpoints of the moments (checkpoint.c).
 */
#ifndef EVLM_TRAIN_ADAMW_H
#define EVLM_TRAIN_ADAMW_H

#include "train/params.h"

#include <stdint.h>

typedef struct evlm_adamw_params {
    double beta1, beta2, eps, weight_decay; /* double, as torch's Python scalars */
} evlm_adamw_params;

/* torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8, weight_decay 0.01. */
evlm_adamw_params evlm_adamw_default_params(void);

/* The global L2 norm of the trainable parameters' gradients. */
double evlm_adamw_grad_norm(const evlm_tparams *tp);

/* Clips as clip_grad_norm_(max_norm): with n the global norm, every trainable gradient is
 * multiplied by min(1, max_norm / (n + 1e-6)). Returns n (before clipping). max_norm <= 0:
 * no clipping, the norm is still returned. */
double evlm_adamw_clip(evlm_tparams *tp, double max_norm);
/* The same over several sets trained together (the model's, distillation projections, QAT
 * scales): one global norm over all of them (for one set, exactly evlm_adamw_clip). */
double evlm_adamw_clip_sets(evlm_tparams *const *sets, int n_sets, double max_norm);

/* One AdamW update of every trainable parameter at learning rate lr; step is the 1-based
 * count of updates so far including this one (bias correction 1 - beta^step). */
void evlm_adamw_step(evlm_tparams *tp, const evlm_adamw_params *p, double lr, int64_t step);

/* ---- schedule ------------------------------------------------------------------------------
 * lr(s) for the 0-based update s of total: s < warmup: lr * (s + 1) / warmup (the first update
 * already moves); then min_lr + (lr - min_lr) * (1 + cos(pi * q)) / 2 with q = (s - warmup) /
 * (total - warmup) (q capped at 1). warmup 0 and total 0: constant lr. */
typedef struct evlm_lr_schedule {
    double lr, min_lr;
    int64_t warmup, total;
} evlm_lr_schedule;

double evlm_lr_at(const evlm_lr_schedule *s, int64_t step);

#endif
