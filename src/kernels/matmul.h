/*
 * matmul.h - the matmul driver every model uses: the kernel table's gemm over the thread
 * pool, output rows split so each element is computed by one thread in a fixed order (results
 * do not depend on the thread count). Small products run on the calling thread.
 */
#ifndef EVLM_KERNELS_MATMUL_H
#define EVLM_KERNELS_MATMUL_H

#include "core/tensor.h"
#include "core/threadpool.h"

/* y (m, w->ne[1]) = x (m, w->ne[0]) @ w^T (+ bias). ldx / ldy in floats. scratch holds
 * w->ne[0] floats per thread, thread i's at scratch + i * scratch_stride. */
void evlm_matmul(evlm_pool *pool, float *y, size_t ldy, const float *x, size_t ldx,
                 const evlm_tensor *w, const float *bias, int m, float *scratch,
                 size_t scratch_stride);

#endif
