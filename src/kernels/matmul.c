/* matmul.c - gemm over the thread pool (see matmul.h). */
#include "kernels/matmul.h"
#include "kernels/kernels.h"
#include "quant/repack.h"

#include <stdatomic.h>
#include <stdbool.h>

#define MAX_OUTS          8 /* products per hand-off (evlm_matmul_n splits longer lists) */
#define CHUNKS_PER_THREAD 6 /* work pieces per thread and product: the faster thread takes more */
#define MIN_CHUNK_BYTES   (48 * 1024) /* ... but each piece reads at least this much weight */

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
    /* the work list: product o is units [0, units[o]) (rows, or groups of 16 for interleaved
     * matrices) in pieces of chunk[o] units, global pieces [first[o], first[o + 1]) */
    int units[MAX_OUTS], chunk[MAX_OUTS], first[MAX_OUTS + 1];
    atomic_int next; /* the next piece to take */
} gemm_task;

/* Pieces are taken from a shared counter, so a thread that runs faster (memory bandwidth is
 * shared and uneven) does more of them. Which thread computes a row does not change its bits:
 * each output element's float operations are fixed by its row alone (kernels.h), so results stay
 * independent of the thread count and of the schedule. */
static void gemm_fn(void *arg, int ith, int nth) {
    (void)nth;
    gemm_task *t = arg;
    int o = 0;
    for (;;) {
        int p = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (p >= t->first[t->n_outs]) break;
        while (p >= t->first[o + 1]) o++;
        const evlm_matmul_out *out = &t->outs[o];
        const evlm_tensor *w = out->w;
        int n = (int)w->ne[1], u0 = (p - t->first[o]) * t->chunk[o];
        int u1 = u0 + t->chunk[o] < t->units[o] ? u0 + t->chunk[o] : t->units[o], n0 = u0, n1 = u1;
        if (evlm_type_is_r16(w->type)) {
            n0 = u0 * EVLM_R16;
            n1 = u1 * EVLM_R16 < n ? u1 * EVLM_R16 : n;
        }
        if (t->xq && (evlm_type_is_quant(w->type) || evlm_type_traits_of(w->type)->kq))
            t->kn->gemm_q(out->y, out->ldy, t->xq, (size_t)t->k / EVLM_QK, w->data, w->nb[1],
                          w->type, t->m, n0, n1, t->k);
        else
            t->kn->gemm(out->y, out->ldy, t->x, t->ldx, w->data, w->nb[1], w->type, t->m, n0, n1,
                        t->k, t->scratch + (size_t)ith * t->scratch_stride);
        if (out->bias)
            for (int i = 0; i < t->m; i++)
                for (int j = n0; j < n1; j++) out->y[(size_t)i * out->ldy + j] += out->bias[j];
    }
}

/* the work list of t for nth threads (see gemm_task) */
static void plan_pieces(gemm_task *t, int nth) {
    t->first[0] = 0;
    for (int o = 0; o < t->n_outs; o++) {
        const evlm_tensor *w = t->outs[o].w;
        bool r16 = evlm_type_is_r16(w->type);
        int n = (int)w->ne[1], units = r16 ? (n + EVLM_R16 - 1) / EVLM_R16 : n;
        size_t unit_bytes = (r16 ? EVLM_R16 : 1) * evlm_row_bytes(w->type, w->ne[0]);
        int c = (units + nth * CHUNKS_PER_THREAD - 1) / (nth * CHUNKS_PER_THREAD);
        int cmin = unit_bytes ? (int)((MIN_CHUNK_BYTES + unit_bytes - 1) / unit_bytes) : 1;
        if (c < cmin) c = cmin;
        t->units[o] = units;
        t->chunk[o] = c;
        t->first[o + 1] = t->first[o] + (units + c - 1) / c;
    }
    atomic_init(&t->next, 0);
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
    if (n_outs > MAX_OUTS) {
        evlm_matmul_n(env, x, ldx, m, outs, MAX_OUTS);
        evlm_matmul_n(env, x, ldx, m, outs + MAX_OUTS, n_outs - MAX_OUTS);
        return;
    }
    int k = (int)outs[0].w->ne[0];
    gemm_task t = {.kn = evlm_kernels_get(),
                   .x = x,
                   .ldx = ldx,
                   .m = m,
                   .k = k,
                   .outs = outs,
                   .n_outs = n_outs,
                   .scratch = env->scratch,
                   .scratch_stride = env->scratch_stride};
    bool quant = false;
    double macs = 0;
    for (int o = 0; o < n_outs; o++) {
        quant = quant || evlm_type_is_quant(outs[o].w->type) ||
                evlm_type_traits_of(outs[o].w->type)->kq;
        macs += (double)m * (double)outs[o].w->ne[1] * (double)k;
    }
    size_t kb = (size_t)k / EVLM_QK;
    if (quant && env->act == EVLM_ACT_INT8 && env->qbuf && (size_t)m * kb <= env->qbuf_blocks) {
        t.xq = t.qbuf = env->qbuf;
        /* prefill: quantizing 512 rows on one thread would idle the others through it */
        if (m >= 8 && (double)m * (double)k >= 65536.0)
            evlm_pool_run(env->pool, quant_fn, &t);
        else
            quant_fn(&t, 0, 1);
    }
    /* below ~64k multiply-adds the hand-off to the pool costs more than it saves */
    bool alone = macs < 65536.0;
    plan_pieces(&t, alone ? 1 : evlm_pool_size(env->pool));
    if (alone)
        gemm_fn(&t, 0, 1);
    else
        evlm_pool_run(env->pool, gemm_fn, &t);
}

void evlm_matmul(const evlm_matmul_env *env, float *y, size_t ldy, const float *x, size_t ldx,
                 const evlm_tensor *w, const float *bias, int m) {
    evlm_matmul_out out = {y, ldy, w, bias};
    evlm_matmul_n(env, x, ldx, m, &out, 1);
}
