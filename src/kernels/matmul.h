/*
 * matmul.h - the matmul driver every model uses: the kernel table's gemm over the thread
 * pool, output rows split so each element is computed by one thread in a fixed order (results
 * do not depend on the thread count). Small products run on the calling thread.
 *
 * Quantized weights (Q8_0 / Q4_0 / Q4_1) take int8 activations by default: the rows of x are
 * quantized once into env->qbuf (per 32-element block scales) and multiplied with the int8 dot
 * kernels (gemm_q); act = EVLM_ACT_F32 dequantizes weight rows instead (slower, exact weights).
 */
#ifndef EVLM_KERNELS_MATMUL_H
#define EVLM_KERNELS_MATMUL_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "quant/quants.h"

typedef enum evlm_act { EVLM_ACT_INT8 = 0, EVLM_ACT_F32 } evlm_act;

/* What a matmul needs besides its operands, planned once per model state. */
typedef struct evlm_matmul_env {
    evlm_pool *pool;
    float *scratch; /* per thread: scratch_stride floats (>= k), thread i's at i * stride */
    size_t scratch_stride;
    evlm_q8a *qbuf; /* room for qbuf_blocks activation blocks (m * k / 32) */
    size_t qbuf_blocks;
    evlm_act act;
} evlm_matmul_env;

/* Activation blocks a state must plan for products of up to max_m rows of max_k columns. */
size_t evlm_matmul_qbuf_blocks(int max_m, int max_k);

/* One product of evlm_matmul_n: y (m, w->ne[1], row stride ldy floats) = x @ w^T (+ bias). */
typedef struct evlm_matmul_out {
    float *y;
    size_t ldy;
    const evlm_tensor *w;
    const float *bias; /* nullable */
} evlm_matmul_out;

/* Several products of one x (m rows, ldx floats apart; every w has x's ne[0] columns) in one
 * hand-off to the pool: q / k / v, gate / up. x is quantized once for the int8 path. Each output
 * element is the same bits as evlm_matmul would give. */
void evlm_matmul_n(const evlm_matmul_env *env, const float *x, size_t ldx, int m,
                   const evlm_matmul_out *outs, int n_outs);
/* y (m, w->ne[1]) = x (m, w->ne[0]) @ w^T (+ bias). ldx / ldy in floats. */
void evlm_matmul(const evlm_matmul_env *env, float *y, size_t ldy, const float *x, size_t ldx,
                 const evlm_tensor *w, const float *bias, int m);

#endif
