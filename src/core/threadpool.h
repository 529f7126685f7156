/*
 * threadpool.h - a persistent pool of worker threads for the forward pass.
 *
 * evlm_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once on each of nth threads (the caller
 * is thread 0) and returns when all are done. Work is split by the callee using ith/nth so that
 * each output element is computed by exactly one thread in a fixed order: results never depend
 * on the thread count. Workers spin briefly for the next job, then sleep on a condition
 * variable; the caller spins for the workers, yielding its core after a while (more threads
 * than cores). A pool runs one job at a time for one caller at a time: its owner (a context, or
 * the model under its vision lock) serializes the calls. Not here: work stealing, nested
 * parallelism, jobs from several threads at once.
 */
#ifndef EVLM_CORE_THREADPOOL_H
#define EVLM_CORE_THREADPOOL_H

#include "evlm.h"

typedef struct evlm_pool evlm_pool;
typedef void (*evlm_task_fn)(void *arg, int ith, int nth);

evlm_status evlm_pool_new(int n_threads, evlm_pool **out);
void evlm_pool_free(evlm_pool *pool);
int evlm_pool_size(const evlm_pool *pool);
void evlm_pool_run(evlm_pool *pool, evlm_task_fn fn, void *arg);

/* Rows [*r0, *r1) of n for thread ith of nth (contiguous, balanced). */
static inline void evlm_split_rows(int n, int ith, int nth, int *r0, int *r1) {
    int per = n / nth, rem = n % nth;
    *r0 = ith * per + (ith < rem ? ith : rem);
    *r1 = *r0 + per + (ith < rem ? 1 : 0);
}

/* Physical cores (falls back to online CPUs). */
int evlm_physical_cores(void);

#endif
