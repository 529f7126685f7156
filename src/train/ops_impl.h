/*
 * ops_impl.h - private to src/train's ops (ops.c, ops_attn.c): the pool runner and the
 * attention block size the scratch plan (evlm_tops_init) is sized for. Not a public header.
 */
#ifndef EVLM_TRAIN_OPS_IMPL_H
#define EVLM_TRAIN_OPS_IMPL_H

#include "train/ops.h"

/* Query rows per attention block: scores of EVLM__ATTN_QB rows x the sequence's keys. */
#define EVLM__ATTN_QB 64

/* fn(arg, ith, nth) on the pool's threads (o->pool NULL: once, on this thread). */
void evlm__tops_run(const evlm_tops *o, evlm_task_fn fn, void *arg);

#endif
