/*
 * ops_attn.c - attention over packed sequences for training (ops.h): forward keeping each row's
 * log-sum-exp, backward recomputing the probabilities from it; both as GEMMs on blocks of
 * EVLM__ATTN_QB query rows through the table's sgemm, with the table's exp_sum for the
 * softmax rows.
 *
 * Forward, per task (sequence, head), per query block [i0, i1): S = Q K^T over the keys the
 * block can see ([0, i1) when causal, else the whole sequence), each row scaled, masked
 * (causal, key_valid: -inf), exponentiated from its max and normalized (P), lse = max +
 * log(sum); out = P V. A row that sees no key gets P = 0, so out = 0, and lse = -INFINITY.
 * Backward, per task (sequence, kv head) so dk / dv rows are one task's: for each head of the
 * group in order, each query block: P again from lse, dP = dO V^T, D_i = dO_i . out_i,
 * dS = P (dP - D) scale; dQ = dS K (written), dK += dS^T Q, dV += P^T dO (dk / dv zeroed at the
 * task's start, then summed over heads and blocks in order). Deterministic and independent of the
 * thread count. lse is (n_heads, m), m the end of the last sequence; rows outside every
 * sequence are not touched. Not here: a fused flash kernel (the blocks of
 * scores live in the per-thread scratch), dropout, attention bias.
 */
#include "train/ops.h"
#include "train/ops_impl.h"

#include "core/status.h"

#include <math.h>
#include <string.h>

typedef struct attn_job {
    const evlm_tops *o;
    const evlm_top_attn_shape *sh;
    float *out, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *cout, *clse;
    int m; /* lse's row stride (attn_rows) */
} attn_job;

static int attn_rows(const evlm_top_attn_shape *sh) {
    int m = 0;
    for (int s = 0; s < sh->n_seq; s++)
        if (sh->seq_off[s] + sh->seq_len[s] > m) m = sh->seq_off[s] + sh->seq_len[s];
    return m;
}

/* Row i of a block (tend scores of its sequence's keys [0, tend)): scaled, -inf where the row
 * may not look; returns the largest (-inf: it sees no key). Straight loops (vectorized). */
static float attn_mask_row(const evlm_kernels *kn, const evlm_top_attn_shape *sh, float *row, int i,
                           int tend, int off) {
    int lim = sh->causal && i + 1 < tend ? i + 1 : tend;
    float sc = sh->scale;
    for (int t = 0; t < lim; t++) row[t] *= sc;
    for (int t = lim; t < tend; t++) row[t] = -INFINITY;
    if (sh->key_valid) {
        const uint8_t *kv = sh->key_valid + off;
        for (int t = 0; t < lim; t++)
            if (!kv[t]) row[t] = -INFINITY;
    }
    return lim > 0 ? kn->max(row, lim) : -INFINITY;
}

static void attn_fwd_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const evlm_top_attn_shape *sh = j->sh;
    const evlm_kernels *kn = j->o->k;
    int hd = sh->head_dim, nh = sh->n_heads, group = nh / sh->n_kv_heads;
    size_t ldq = (size_t)nh * hd, ldk = (size_t)sh->n_kv_heads * hd;
    float *sg = j->o->scratch + (size_t)ith * j->o->scratch_stride;
    float *S = sg + EVLM_SGEMM_SCRATCH;
    int t0, t1;
    evlm_split_rows(sh->n_seq * nh, ith, nth, &t0, &t1);
    for (int it = t0; it < t1; it++) {
        int s = it / nh, h = it % nh, off = sh->seq_off[s], len = sh->seq_len[s], kh = h / group;
        /* evlm_tops_init's max_seq bounds every sequence */
        EVLM_ASSERT((size_t)EVLM__ATTN_QB * len <= j->o->scratch_stride - EVLM_SGEMM_SCRATCH);
        const float *Q = j->q + (size_t)off * ldq + (size_t)h * hd;
        const float *K = j->k + (size_t)off * ldk + (size_t)kh * hd;
        const float *V = j->v + (size_t)off * ldk + (size_t)kh * hd;
        float *O = j->out + (size_t)off * ldq + (size_t)h * hd;
        float *lse = j->lse + (size_t)h * j->m + off;
        for (int i0 = 0; i0 < len; i0 += EVLM__ATTN_QB) {
            int i1 = len - i0 < EVLM__ATTN_QB ? len : i0 + EVLM__ATTN_QB, nb = i1 - i0;
            int tend = sh->causal ? i1 : len;
            kn->sgemm(S, (size_t)tend, Q + (size_t)i0 * ldq, ldq, false, K, ldk, true, nb, tend, hd,
                      false, sg);
            for (int i = i0; i < i1; i++) {
                float *row = S + (size_t)(i - i0) * tend;
                float mx = attn_mask_row(kn, sh, row, i, tend, off);
                if (mx == -INFINITY) {
                    memset(row, 0, sizeof(float) * (size_t)tend);
                    lse[i] = -INFINITY;
                    continue;
                }
                float sum = kn->exp_sum(row, tend, mx), inv = 1.0f / sum;
                for (int t = 0; t < tend; t++) row[t] *= inv;
                lse[i] = mx + logf(sum);
            }
            kn->sgemm(O + (size_t)i0 * ldq, ldq, S, (size_t)tend, false, V, ldk, false, nb, hd,
                      tend, false, sg);
        }
    }
}

void evlm_top_attn(const evlm_tops *o, const evlm_top_attn_shape *sh, float *out, float *lse,
                   const float *q, const float *k, const float *v) {
    attn_job j = {
        .o = o, .sh = sh, .out = out, .lse = lse, .q = q, .k = k, .v = v, .m = attn_rows(sh)};
    evlm__tops_run(o, attn_fwd_task, &j);
}

static void attn_bwd_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const evlm_top_attn_shape *sh = j->sh;
    const evlm_kernels *kn = j->o->k;
    int hd = sh->head_dim, nh = sh->n_heads, nkv = sh->n_kv_heads, group = nh / nkv;
    size_t ldq = (size_t)nh * hd, ldk = (size_t)nkv * hd;
    float *sg = j->o->scratch + (size_t)ith * j->o->scratch_stride;
    float *P = sg + EVLM_SGEMM_SCRATCH;
    int t0, t1;
    evlm_split_rows(sh->n_seq * nkv, ith, nth, &t0, &t1);
    for (int it = t0; it < t1; it++) {
        int s = it / nkv, kh = it % nkv, off = sh->seq_off[s], len = sh->seq_len[s];
        EVLM_ASSERT((size_t)2 * EVLM__ATTN_QB * len <= j->o->scratch_stride - EVLM_SGEMM_SCRATCH);
        float *dP = P + (size_t)EVLM__ATTN_QB * len;
        const float *K = j->k + (size_t)off * ldk + (size_t)kh * hd;
        const float *V = j->v + (size_t)off * ldk + (size_t)kh * hd;
        float *dK = j->dk ? j->dk + (size_t)off * ldk + (size_t)kh * hd : NULL;
        float *dV = j->dv ? j->dv + (size_t)off * ldk + (size_t)kh * hd : NULL;
        for (int r = 0; r < len; r++) {
            if (dK) memset(dK + (size_t)r * ldk, 0, sizeof(float) * (size_t)hd);
            if (dV) memset(dV + (size_t)r * ldk, 0, sizeof(float) * (size_t)hd);
        }
        for (int h = kh * group; h < (kh + 1) * group; h++) {
            const float *Q = j->q + (size_t)off * ldq + (size_t)h * hd;
            const float *dO = j->dout + (size_t)off * ldq + (size_t)h * hd;
            const float *O = j->cout + (size_t)off * ldq + (size_t)h * hd;
            float *dQ = j->dq ? j->dq + (size_t)off * ldq + (size_t)h * hd : NULL;
            const float *lse = j->clse + (size_t)h * j->m + off;
            for (int i0 = 0; i0 < len; i0 += EVLM__ATTN_QB) {
                int i1 = len - i0 < EVLM__ATTN_QB ? len : i0 + EVLM__ATTN_QB, nb = i1 - i0;
                int tend = sh->causal ? i1 : len;
                size_t ld = (size_t)tend;
                kn->sgemm(P, ld, Q + (size_t)i0 * ldq, ldq, false, K, ldk, true, nb, tend, hd,
                          false, sg);
                kn->sgemm(dP, ld, dO + (size_t)i0 * ldq, ldq, false, V, ldk, true, nb, tend, hd,
                          false, sg);
                for (int i = i0; i < i1; i++) {
                    float *pr = P + (size_t)(i - i0) * ld, *dpr = dP + (size_t)(i - i0) * ld;
                    if (lse[i] == -INFINITY) { /* saw no key: no gradient */
                        memset(pr, 0, sizeof(float) * ld);
                        memset(dpr, 0, sizeof(float) * ld);
                        continue;
                    }
                    attn_mask_row(kn, sh, pr, i, tend, off);
                    kn->exp_sum(pr, tend, lse[i]);
                    const float *doi = dO + (size_t)i * ldq, *oi = O + (size_t)i * ldq;
                    float D = 0.0f;
                    for (int d = 0; d < hd; d++) D += doi[d] * oi[d];
                    for (int t = 0; t < tend; t++) dpr[t] = pr[t] * (dpr[t] - D) * sh->scale;
                }
                if (dQ)
                    kn->sgemm(dQ + (size_t)i0 * ldq, ldq, dP, ld, false, K, ldk, false, nb, hd,
                              tend, false, sg);
                if (dK)
                    kn->sgemm(dK, ldk, dP, ld, true, Q + (size_t)i0 * ldq, ldq, false, tend, hd, nb,
                              true, sg);
                if (dV)
                    kn->sgemm(dV, ldk, P, ld, true, dO + (size_t)i0 * ldq, ldq, false, tend, hd, nb,
                              true, sg);
            }
        }
    }
}

void evlm_top_attn_bwd(const evlm_tops *o, const evlm_top_attn_shape *sh, float *dq, float *dk,
                       float *dv, const float *dout, const float *q, const float *k, const float *v,
                       const float *out, const float *lse) {
    attn_job j = {.o = o,
                  .sh = sh,
                  .dq = dq,
                  .dk = dk,
                  .dv = dv,
                  .dout = dout,
                  .q = q,
                  .k = k,
                  .v = v,
                  .cout = out,
                  .clse = lse,
                  .m = attn_rows(sh)};
    evlm__tops_run(o, attn_bwd_task, &j);
}
