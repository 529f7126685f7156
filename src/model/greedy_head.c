/* greedy_head.c - greedy ids from an int8 copy of the head plus exact candidates (see
 * greedy_head.h). */
#include "model/greedy_head.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "quant/repack.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PIECE_GROUPS 48 /* groups of 16 rows per work piece of the int8 pass */
#define MAX_GROUP_SHARE                                                                            \
    2 /* more than half the groups as candidates: the full float head is cheaper */

/* ---- the int8 copy ------------------------------------------------------------------------- */

typedef struct {
    evlm_greedy_head *h;
    int n, k, groups;
    atomic_int next;
    double *err, *norm; /* per thread: largest sums of squares seen */
    atomic_int bad;     /* a non-finite weight (1) or no memory (2) */
} init_task;

/* One row into Q8_0 blocks and the sums of squares of w - w~ and of w~ (w~: the blocks' values). */
static void quantize_row(const float *x, evlm_block_q8_0 *b, int k, double *e2, double *n2) {
    evlm_quantize_row_q8_0(x, b, k);
    double se = 0, sn = 0;
    for (int i = 0; i < k / EVLM_QK; i++) {
        const double d = (double)evlm_f16_to_f32(b[i].d);
        for (int j = 0; j < EVLM_QK; j++) {
            double deq = d * b[i].qs[j], diff = (double)x[i * EVLM_QK + j] - deq;
            se += diff * diff;
            sn += deq * deq;
        }
    }
    *e2 = se;
    *n2 = sn;
}

static void init_fn(void *arg, int ith, int nth) {
    (void)nth;
    init_task *t = arg;
    const int k = t->k, kb = k / EVLM_QK;
    float *row = malloc(sizeof(float) * (size_t)k);
    evlm_block_q8_0 *blk = malloc(sizeof(evlm_block_q8_0) * (size_t)kb * EVLM_R16);
    double emax = 0, nmax = 0;
    if (!row || !blk) {
        atomic_store(&t->bad, 2);
    } else {
        const size_t gbytes = (size_t)EVLM_R16 * t->h->q.nb[1];
        for (int g; (g = atomic_fetch_add(&t->next, 1)) < t->groups;) {
            int r0 = g * EVLM_R16, rows = t->n - r0 < EVLM_R16 ? t->n - r0 : EVLM_R16;
            for (int r = 0; r < rows; r++) {
                evlm_r16_dequantize_row(t->h->w->type, t->h->w->data, k, r0 + r, row);
                for (int j = 0; j < k; j++)
                    if (!isfinite(row[j])) atomic_store(&t->bad, 1);
                double e2, n2;
                quantize_row(row, blk + (size_t)r * kb, k, &e2, &n2);
                if (e2 > emax) emax = e2;
                if (n2 > nmax) nmax = n2;
            }
            evlm_repack_r16(EVLM_TYPE_Q8_0, blk, t->h->q.nb[1], rows, k,
                            (char *)t->h->q.data + (size_t)g * gbytes);
        }
    }
    t->err[ith] = emax;
    t->norm[ith] = nmax;
    free(row);
    free(blk);
}

evlm_status evlm_greedy_head_init(evlm_greedy_head *h, const evlm_tensor *w, evlm_pool *pool) {
    memset(h, 0, sizeof *h);
    const int64_t k = w->ne[0], n = w->ne[1];
    if (!evlm_type_is_r16_float(w->type) || k % EVLM_QK || k < EVLM_QK || n < 1 ||
        n > INT32_MAX / 2)
        return evlm__fail(EVLM_ERR_ARG,
                          "%s: the int8 argmax head needs a float interleaved matrix "
                          "with a multiple of 32 columns",
                          w->name ? w->name : "head");
    h->w = w;
    h->q = *w;
    h->q.type = EVLM_TYPE_Q8_0_R16;
    h->q.nb[1] = evlm_row_bytes(EVLM_TYPE_Q8_0, k);
    size_t bytes = evlm_r16_bytes(EVLM_TYPE_Q8_0_R16, n, k);
    h->q.data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!h->q.data)
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory for the int8 copy of the head");
    const int nth = pool ? evlm_pool_size(pool) : 1;
    double *maxima = calloc(2 * (size_t)nth, sizeof(double));
    if (!maxima) {
        evlm_greedy_head_release(h);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory for the int8 copy of the head");
    }
    init_task t = {.h = h,
                   .n = (int)n,
                   .k = (int)k,
                   .groups = (int)((n + EVLM_R16 - 1) / EVLM_R16),
                   .err = maxima,
                   .norm = maxima + nth};
    atomic_init(&t.next, 0);
    atomic_init(&t.bad, 0);
    if (pool && nth > 1)
        evlm_pool_run(pool, init_fn, &t);
    else
        init_fn(&t, 0, 1);
    int bad = atomic_load(&t.bad);
    if (bad) {
        free(maxima);
        evlm_greedy_head_release(h);
        return bad == 2
                   ? evlm__fail(EVLM_ERR_NOMEM, "out of memory for the int8 copy of the head")
                   : evlm__fail(EVLM_ERR_ARG, "%s: non-finite weights", w->name ? w->name : "head");
    }
    for (int i = 0; i < nth; i++) {
        if (t.err[i] > h->err_max) h->err_max = t.err[i];
        if (t.norm[i] > h->norm_max) h->norm_max = t.norm[i];
    }
    free(maxima);
    /* sums of squares -> norms, rounded up past sqrt's last-bit error */
    h->err_max = sqrt(h->err_max) * (1 + 1e-12);
    h->norm_max = sqrt(h->norm_max) * (1 + 1e-12);
    return EVLM_OK;
}

void evlm_greedy_head_release(evlm_greedy_head *h) {
    free(h->q.data);
    memset(h, 0, sizeof *h);
}

size_t evlm_greedy_head_bytes(const evlm_greedy_head *h) {
    return h->q.data ? evlm_r16_bytes(EVLM_TYPE_Q8_0_R16, h->q.ne[1], h->q.ne[0]) : 0;
}

/* ---- work buffers -------------------------------------------------------------------------- */

evlm_status evlm_greedy_work_init(evlm_greedy_work *wk, int n, int k) {
    memset(wk, 0, sizeof *wk);
    int groups = (n + EVLM_R16 - 1) / EVLM_R16;
    wk->y = malloc(sizeof(float) * EVLM_GREEDY_ROWS * (size_t)n);
    wk->pmax = malloc(sizeof(float) * EVLM_GREEDY_ROWS * (size_t)(groups / PIECE_GROUPS + 1));
    wk->xq = malloc(sizeof(evlm_q8a) * EVLM_GREEDY_ROWS * (size_t)(k / EVLM_QK + 1));
    wk->groups = malloc(sizeof(int32_t) * (size_t)groups);
    if (!wk->y || !wk->pmax || !wk->xq || !wk->groups) {
        evlm_greedy_work_release(wk);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory for the greedy head's buffers");
    }
    return EVLM_OK;
}

void evlm_greedy_work_release(evlm_greedy_work *wk) {
    free(wk->y);
    free(wk->pmax);
    free(wk->xq);
    free(wk->groups);
    memset(wk, 0, sizeof *wk);
}

/* ---- one call ------------------------------------------------------------------------------ */

typedef struct {
    const evlm_kernels *kn;
    const evlm_greedy_head *h;
    const evlm_matmul_env *env;
    evlm_greedy_work *wk;
    const float *x;
    size_t ldx;
    int m, n, k, groups, n_pieces;
    const int32_t *list; /* exact pass: groups to evaluate */
    atomic_int next;
} pass_task;

/* any of y[n0, n1) >= thr */
static bool range_reaches(const float *y, int n0, int n1, double thr) {
    for (int r = n0; r < n1; r++)
        if ((double)y[r] >= thr) return true;
    return false;
}

/* int8 pass: pieces of PIECE_GROUPS groups, each followed by its rows' maxima (while hot) */
static void approx_fn(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    pass_task *t = arg;
    evlm_greedy_work *wk = t->wk;
    const size_t kb = (size_t)t->k / EVLM_QK;
    for (int p; (p = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < t->n_pieces;) {
        int g0 = p * PIECE_GROUPS,
            g1 = g0 + PIECE_GROUPS < t->groups ? g0 + PIECE_GROUPS : t->groups;
        int n0 = g0 * EVLM_R16, n1 = g1 * EVLM_R16 < t->n ? g1 * EVLM_R16 : t->n;
        t->kn->gemm_q(wk->y, (size_t)t->n, wk->xq, kb, t->h->q.data, t->h->q.nb[1], t->h->q.type,
                      t->m, n0, n1, t->k);
        for (int i = 0; i < t->m; i++)
            wk->pmax[(size_t)i * t->n_pieces + p] =
                t->kn->max(wk->y + (size_t)i * t->n + n0, n1 - n0);
    }
}

/* exact pass: the head's own float kernel on the listed groups, every row of x */
static void exact_fn(void *arg, int ith, int nth) {
    (void)nth;
    pass_task *t = arg;
    const evlm_tensor *w = t->h->w;
    float *scratch = t->env->scratch + (size_t)ith * t->env->scratch_stride;
    for (int p; (p = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < t->n_pieces;) {
        int n0 = t->list[p] * EVLM_R16, n1 = n0 + EVLM_R16 < t->n ? n0 + EVLM_R16 : t->n;
        t->kn->gemm(t->wk->y, (size_t)t->n, t->x, t->ldx, w->data, w->nb[1], w->type, t->m, n0, n1,
                    t->k, scratch);
    }
}

/* lowest index of the largest value, NaN skipped (evlm__argmax's rule) */
static int32_t argmax_range(const float *y, int n0, int n1, int32_t best, float *bv, bool *found) {
    for (int r = n0; r < n1; r++) {
        if (isnan(y[r])) continue;
        if (!*found || y[r] > *bv) {
            *bv = y[r];
            best = r;
            *found = true;
        }
    }
    return best;
}

static void full_head(const evlm_tensor *w, const evlm_matmul_env *env, evlm_greedy_work *wk,
                      const float *x, size_t ldx, int m, int32_t *top) {
    const int n = (int)w->ne[1];
    evlm_matmul(env, wk->y, (size_t)n, x, ldx, w, NULL, m);
    for (int i = 0; i < m; i++) {
        float bv = 0;
        bool found = false;
        top[i] = argmax_range(wk->y + (size_t)i * n, 0, n, 0, &bv, &found);
    }
    wk->n_full += m;
}

void evlm_greedy_argmax(const evlm_greedy_head *h, const evlm_tensor *w, const evlm_matmul_env *env,
                        evlm_greedy_work *wk, const float *x, size_t ldx, int m, int32_t *top) {
    if (!h || m < 1) {
        if (m > 0) full_head(w, env, wk, x, ldx, m, top);
        return;
    }
    const evlm_kernels *kn = evlm_kernels_get();
    const int n = (int)w->ne[1], k = (int)w->ne[0], kb = k / EVLM_QK,
              groups = (n + EVLM_R16 - 1) / EVLM_R16;
    const double u = ldexp(1.0, -24), gamma = (k + 16) * u / (1 - (k + 16) * u);
    double bound[EVLM_GREEDY_ROWS];
    for (int i = 0; i < m; i++) {
        const float *xi = x + (size_t)i * ldx;
        evlm_q8a *qi = wk->xq + (size_t)i * kb;
        double x2 = 0, e2 = 0;
        for (int j = 0; j < k; j++) x2 += (double)xi[j] * (double)xi[j];
        if (!isfinite(x2)) { /* NaN / Inf: no int8 blocks for these */
            full_head(w, env, wk, x, ldx, m, top);
            return;
        }
        kn->quantize_act(xi, qi, k);
        for (int j = 0; j < k; j++) {
            double d = (double)xi[j] - (double)qi[j / EVLM_QK].d * qi[j / EVLM_QK].qs[j % EVLM_QK];
            e2 += d * d;
        }
        double X = sqrt(x2) * (1 + 1e-12), E = sqrt(e2) * (1 + 1e-12);
        /* |exact - a| <= err |x| (1 + gamma) + norm (|x - x~| + gamma (2 |x| + |x - x~|)), and a
         * margin for this double arithmetic; |w| |x| must stay far from overflow */
        double b = h->err_max * X * (1 + gamma) + h->norm_max * (E + gamma * (2 * X + E));
        if (!isfinite(b) || (h->err_max + h->norm_max) * X > 1e36) {
            full_head(w, env, wk, x, ldx, m, top);
            return;
        }
        bound[i] = b * (1 + 1e-6) + 1e-30;
    }

    pass_task t = {.kn = kn,
                   .h = h,
                   .env = env,
                   .wk = wk,
                   .x = x,
                   .ldx = ldx,
                   .m = m,
                   .n = n,
                   .k = k,
                   .groups = groups,
                   .n_pieces = (groups + PIECE_GROUPS - 1) / PIECE_GROUPS};
    atomic_init(&t.next, 0);
    evlm_pool_run(env->pool, approx_fn, &t);

    /* candidate groups of any row: some a within 2B of the row's largest a (only pieces whose
     * largest a gets there are looked into) */
    double thr[EVLM_GREEDY_ROWS];
    const int np = t.n_pieces;
    for (int i = 0; i < m; i++) {
        const float *pm = wk->pmax + (size_t)i * np;
        float mx = pm[0];
        for (int p = 1; p < np; p++) mx = pm[p] > mx ? pm[p] : mx;
        if (!isfinite(mx)) {
            full_head(w, env, wk, x, ldx, m, top);
            return;
        }
        thr[i] = (double)mx - 2 * bound[i];
    }
    int nl = 0;
    for (int p = 0; p < np; p++) {
        bool any = false;
        for (int i = 0; i < m && !any; i++) any = (double)wk->pmax[(size_t)i * np + p] >= thr[i];
        if (!any) continue;
        int g1 = (p + 1) * PIECE_GROUPS < groups ? (p + 1) * PIECE_GROUPS : groups;
        for (int g = p * PIECE_GROUPS; g < g1; g++) {
            int n0 = g * EVLM_R16, n1 = n0 + EVLM_R16 < n ? n0 + EVLM_R16 : n;
            bool cand = false;
            for (int i = 0; i < m && !cand; i++)
                cand = range_reaches(wk->y + (size_t)i * n, n0, n1, thr[i]);
            if (cand) wk->groups[nl++] = g;
        }
    }
    if (nl > groups / MAX_GROUP_SHARE) {
        full_head(w, env, wk, x, ldx, m, top);
        return;
    }
    wk->n_groups += nl;

    /* exact values of the candidate groups (over the approximate ones), then the argmax there: the
     * true argmax is among them and every row outside is strictly below it */
    t.list = wk->groups;
    t.n_pieces = nl;
    atomic_init(&t.next, 0);
    if (nl > 4)
        evlm_pool_run(env->pool, exact_fn, &t);
    else
        exact_fn(&t, 0, 1);
    for (int i = 0; i < m; i++) {
        const float *y = wk->y + (size_t)i * n;
        float bv = 0;
        bool found = false;
        int32_t best = 0;
        for (int j = 0; j < nl; j++) {
            int n0 = wk->groups[j] * EVLM_R16, n1 = n0 + EVLM_R16 < n ? n0 + EVLM_R16 : n;
            best = argmax_range(y, n0, n1, best, &bv, &found);
        }
        top[i] = best;
    }
}
