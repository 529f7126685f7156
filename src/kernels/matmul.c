/* matmul.c - gemm over the thread pool (see matmul.h). */
#include "kernels/matmul.h"
#include "kernels/kernels.h"
#include "quant/repack.h"

typedef struct {
    const evlm_kernels *kn;
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    const evlm_q8a *xq; /* non-NULL: int8 path */
    const evlm_tensor *w;
    const float *bias;
    int m, n, k;
    float *scratch;
    size_t scratch_stride;
    evlm_q8a *qbuf; /* where quant_fn writes xq */
} gemm_task;

static void gemm_fn(void *arg, int ith, int nth) {
    const gemm_task *t = arg;
    int n0, n1;
    if (evlm_type_is_r16(t->w->type)) { /* whole groups of 16 interleaved rows per thread */
        evlm_split_rows((t->n + EVLM_R16 - 1) / EVLM_R16, ith, nth, &n0, &n1);
        n0 *= EVLM_R16;
        n1 = n1 * EVLM_R16 < t->n ? n1 * EVLM_R16 : t->n;
    } else {
        evlm_split_rows(t->n, ith, nth, &n0, &n1);
    }
    if (n0 >= n1) return;
    if (t->xq)
        t->kn->gemm_q(t->y, t->ldy, t->xq, (size_t)t->k / EVLM_QK, t->w->data, t->w->nb[1],
                      t->w->type, t->m, n0, n1, t->k);
    else
        t->kn->gemm(t->y, t->ldy, t->x, t->ldx, t->w->data, t->w->nb[1], t->w->type, t->m, n0, n1,
                    t->k, t->scratch + (size_t)ith * t->scratch_stride);
    if (t->bias)
        for (int i = 0; i < t->m; i++)
            for (int j = n0; j < n1; j++) t->y[(size_t)i * t->ldy + j] += t->bias[j];
}

/* activation rows [r0, r1) of this thread into int8 blocks (rows are independent: any split
 * gives the same bytes) */
static void quant_fn(void *arg, int ith, int nth) {
    const gemm_task *t = arg;
    int r0, r1;
    evlm_split_rows(t->m, ith, nth, &r0, &r1);
    size_t kb = (size_t)t->k / EVLM_QK;
    for (int i = r0; i < r1; i++)
        t->kn->quantize_act(t->x + (size_t)i * t->ldx, t->qbuf + (size_t)i * kb, t->k);
}

size_t evlm_matmul_qbuf_blocks(int max_m, int max_k) {
    return (size_t)max_m * (size_t)((max_k + EVLM_QK - 1) / EVLM_QK);
}

void evlm_matmul(const evlm_matmul_env *env, float *y, size_t ldy, const float *x, size_t ldx,
                 const evlm_tensor *w, const float *bias, int m) {
    gemm_task t = {evlm_kernels_get(), y, ldy, x, ldx, NULL, w, bias, m, (int)w->ne[1],
                   (int)w->ne[0], env->scratch, env->scratch_stride, NULL};
    size_t kb = (size_t)t.k / EVLM_QK;
    if (evlm_type_is_quant(w->type) && env->act == EVLM_ACT_INT8 && env->qbuf &&
        (size_t)m * kb <= env->qbuf_blocks) {
        t.xq = t.qbuf = env->qbuf;
        /* prefill: quantizing 512 rows on one thread would idle the others for ~4% of the gemm */
        if (m >= 8 && (double)m * (double)t.k >= 65536.0) evlm_pool_run(env->pool, quant_fn, &t);
        else quant_fn(&t, 0, 1);
    }
    /* below ~64k multiply-adds the hand-off to the pool costs more than it saves */
    if ((double)m * (double)t.n * (double)t.k < 65536.0) gemm_fn(&t, 0, 1);
    else evlm_pool_run(env->pool, gemm_fn, &t);
}
