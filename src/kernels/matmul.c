/* matmul.c - gemm over the thread pool (see matmul.h). */
#include "kernels/matmul.h"
#include "kernels/kernels.h"

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
} gemm_task;

static void gemm_fn(void *arg, int ith, int nth) {
    const gemm_task *t = arg;
    int n0, n1;
    evlm_split_rows(t->n, ith, nth, &n0, &n1);
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

size_t evlm_matmul_qbuf_blocks(int max_m, int max_k) {
    return (size_t)max_m * (size_t)((max_k + EVLM_QK - 1) / EVLM_QK);
}

void evlm_matmul(const evlm_matmul_env *env, float *y, size_t ldy, const float *x, size_t ldx,
                 const evlm_tensor *w, const float *bias, int m) {
    gemm_task t = {evlm_kernels_get(), y, ldy, x, ldx, NULL, w, bias, m, (int)w->ne[1],
                   (int)w->ne[0], env->scratch, env->scratch_stride};
    size_t kb = (size_t)t.k / EVLM_QK;
    if (evlm_type_is_quant(w->type) && env->act == EVLM_ACT_INT8 && env->qbuf &&
        (size_t)m * kb <= env->qbuf_blocks) {
        for (int i = 0; i < m; i++) t.kn->quantize_act(x + (size_t)i * ldx, env->qbuf + (size_t)i * kb, t.k);
        t.xq = env->qbuf;
    }
    /* below ~64k multiply-adds the hand-off to the pool costs more than it saves */
    if ((double)m * (double)t.n * (double)t.k < 65536.0) gemm_fn(&t, 0, 1);
    else evlm_pool_run(env->pool, gemm_fn, &t);
}
