/* matmul.c - gemm over the thread pool (see matmul.h). */
#include "kernels/matmul.h"
#include "kernels/kernels.h"
#include "quant/repack.h"

#include <stdbool.h>

typedef struct {
    const evlm_kernels *kn;
    const float *x;
    size_t ldx;
    const evlm_q8a *xq; /* non-NULL: int8 path for the quantized weights */
    int m, k;
    const evlm_matmul_out *outs;
    int n_outs;
    float *scratch;
    size_t scratch_stride;
    evlm_q8a *qbuf; /* where quant_fn writes xq */
} gemm_task;

/* This thread's share of every product: rows split per weight matrix (whole groups of 16 for
 * interleaved ones), so a row's thread and its float operations do not depend on the others. */
static void gemm_fn(void *arg, int ith, int nth) {
    const gemm_task *t = arg;
    for (int o = 0; o < t->n_outs; o++) {
        const evlm_matmul_out *out = &t->outs[o];
        const evlm_tensor *w = out->w;
        int n = (int)w->ne[1], n0, n1;
        if (evlm_type_is_r16(w->type)) {
            evlm_split_rows((n + EVLM_R16 - 1) / EVLM_R16, ith, nth, &n0, &n1);
            n0 *= EVLM_R16;
            n1 = n1 * EVLM_R16 < n ? n1 * EVLM_R16 : n;
        } else {
            evlm_split_rows(n, ith, nth, &n0, &n1);
        }
        if (n0 >= n1) continue;
        if (t->xq && evlm_type_is_quant(w->type))
            t->kn->gemm_q(out->y, out->ldy, t->xq, (size_t)t->k / EVLM_QK, w->data, w->nb[1], w->type, t->m,
                          n0, n1, t->k);
        else
            t->kn->gemm(out->y, out->ldy, t->x, t->ldx, w->data, w->nb[1], w->type, t->m, n0, n1, t->k,
                        t->scratch + (size_t)ith * t->scratch_stride);
        if (out->bias)
            for (int i = 0; i < t->m; i++)
                for (int j = n0; j < n1; j++) out->y[(size_t)i * out->ldy + j] += out->bias[j];
    }
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

void evlm_matmul_n(const evlm_matmul_env *env, const float *x, size_t ldx, int m,
                   const evlm_matmul_out *outs, int n_outs) {
    if (n_outs < 1) return;
    int k = (int)outs[0].w->ne[0];
    gemm_task t = {evlm_kernels_get(), x, ldx, NULL, m, k, outs, n_outs, env->scratch, env->scratch_stride, NULL};
    bool quant = false;
    double macs = 0;
    for (int o = 0; o < n_outs; o++) {
        quant = quant || evlm_type_is_quant(outs[o].w->type);
        macs += (double)m * (double)outs[o].w->ne[1] * (double)k;
    }
    size_t kb = (size_t)k / EVLM_QK;
    if (quant && env->act == EVLM_ACT_INT8 && env->qbuf && (size_t)m * kb <= env->qbuf_blocks) {
        t.xq = t.qbuf = env->qbuf;
        /* prefill: quantizing 512 rows on one thread would idle the others for ~4% of the gemm */
        if (m >= 8 && (double)m * (double)k >= 65536.0) evlm_pool_run(env->pool, quant_fn, &t);
        else quant_fn(&t, 0, 1);
    }
    /* below ~64k multiply-adds the hand-off to the pool costs more than it saves */
    if (macs < 65536.0) gemm_fn(&t, 0, 1);
    else evlm_pool_run(env->pool, gemm_fn, &t);
}

void evlm_matmul(const evlm_matmul_env *env, float *y, size_t ldy, const float *x, size_t ldx,
                 const evlm_tensor *w, const float *bias, int m) {
    evlm_matmul_out out = {y, ldy, w, bias};
    evlm_matmul_n(env, x, ldx, m, &out, 1);
}
