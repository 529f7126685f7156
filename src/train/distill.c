/*
 * distill.c - the distillation losses (distill.h): parsing of the loss and layer map, the row
 * losses (alpha CE + (1 - alpha) kl | rkl | jsd over the target rows, one row per thread task),
 * the planned state (projections as their own parameter set, scratch), the hidden-state MSE
 * and the attention-map KL with their backward hooks.
 * The attention probabilities are never stored: both models' are recomputed from the q, k
 * (after RoPE) and log-sum-exp their forwards keep, exp(q.k scale - lse) as the forward's
 * softmax, so the term costs no memory beyond a per-thread row of keys.
 * Not here: the batch walk, the teacher's forward (tmodel.c), the decoder's layers (tdecoder.c).
 */
#include "train/distill.h"

#include "core/status.h"
#include "train/loss.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the description ------------------------------------------------------------------------ */

evlm_distill evlm_distill_default(void) {
    evlm_distill d;
    memset(&d, 0, sizeof d);
    d.logit = EVLM_DLOGIT_KL;
    d.beta = 0.5f;
    d.temperature = 1.0f;
    return d;
}

evlm_status evlm_distill_parse_loss(const char *s, evlm_distill *d) {
    if (!s) return evlm__fail(EVLM_ERR_ARG, "no distillation loss given");
    if (!strcmp(s, "kl")) {
        d->logit = EVLM_DLOGIT_KL;
        return EVLM_OK;
    }
    if (!strcmp(s, "rkl")) {
        d->logit = EVLM_DLOGIT_RKL;
        return EVLM_OK;
    }
    if (!strncmp(s, "jsd:", 4)) {
        char *end = NULL;
        double b = strtod(s + 4, &end);
        if (end == s + 4 || *end || !(b > 0 && b < 1))
            return evlm__fail(EVLM_ERR_ARG, "distillation loss '%s': jsd:BETA needs BETA in (0, 1)",
                              s);
        d->logit = EVLM_DLOGIT_JSD;
        d->beta = (float)b;
        return EVLM_OK;
    }
    return evlm__fail(EVLM_ERR_ARG, "distillation loss '%s': expected kl, rkl or jsd:BETA", s);
}

evlm_status evlm_distill_parse_map(const char *s, evlm_distill *d) {
    if (!s || !*s) return evlm__fail(EVLM_ERR_ARG, "an empty layer map");
    if (!strcmp(s, "auto")) {
        d->n_map = 0;
        return EVLM_OK;
    }
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end = NULL;
        long a = strtol(p, &end, 10), b;
        if (end == p || *end != ':' || a < 0 || a > 1000000)
            return evlm__fail(EVLM_ERR_ARG, "layer map '%s': pair %d is not S:T", s, n + 1);
        p = end + 1;
        b = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || b < 0 || b > 1000000)
            return evlm__fail(EVLM_ERR_ARG, "layer map '%s': pair %d is not S:T", s, n + 1);
        if (n == EVLM_DISTILL_MAX_MAP)
            return evlm__fail(EVLM_ERR_ARG, "layer map '%s': more than %d pairs", s,
                              EVLM_DISTILL_MAX_MAP);
        d->map_s[n] = (int)a;
        d->map_t[n++] = (int)b;
        p = *end ? end + 1 : end;
        if (*end && !*p) return evlm__fail(EVLM_ERR_ARG, "layer map '%s' ends with ','", s);
    }
    d->n_map = n;
    return EVLM_OK;
}

int evlm_distill_auto_layer(int i, int S, int T) {
    long t = lround((double)(i + 1) * (double)T / (double)S) - 1;
    return t < 0 ? 0 : t >= T ? T - 1 : (int)t;
}

evlm_status evlm_distill_resolve_map(const evlm_distill *d, int S, int T, int *map_s, int *map_t,
                                     int *n_map) {
    *n_map = 0;
    if (d->n_map == 0) {
        if (S > EVLM_DISTILL_MAX_MAP)
            return evlm__fail(EVLM_ERR_ARG, "the auto layer map takes at most %d student layers",
                              EVLM_DISTILL_MAX_MAP);
        for (int i = 0; i < S; i++) {
            map_s[i] = i;
            map_t[i] = evlm_distill_auto_layer(i, S, T);
        }
        *n_map = S;
        return EVLM_OK;
    }
    for (int i = 0; i < d->n_map; i++) {
        if (d->map_s[i] < 0 || d->map_s[i] >= S || d->map_t[i] < 0 || d->map_t[i] >= T)
            return evlm__fail(EVLM_ERR_ARG,
                              "layer map pair %d (%d:%d): the student has layers 0..%d, the "
                              "teacher 0..%d",
                              i + 1, d->map_s[i], d->map_t[i], S - 1, T - 1);
        map_s[i] = d->map_s[i];
        map_t[i] = d->map_t[i];
    }
    *n_map = d->n_map;
    return EVLM_OK;
}

/* ---- row losses ----------------------------------------------------------------------------- */

typedef struct {
    float *z;
    const float *zt;
    const int32_t *y;
    int n, V;
    const evlm_distill *d;
    float scale;
    bool grad;
    double *ce, *lg;
} drow_task;

/* log(sum exp(a[j] * inv)): float exponentials, a double sum (as loss.c) */
static float row_lse(const float *a, int V, float inv) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++)
        if (a[j] * inv > mx) mx = a[j] * inv;
    double s = 0;
    for (int j = 0; j < V; j++) s += (double)expf(a[j] * inv - mx);
    return mx + (float)log(s);
}

/* jsd: log(M / p_S) = log((1 - beta) + beta p_T / p_S), exactly 0 when the rows agree */
static double jsd_lm(double beta, float lpt, float lps) {
    return log1p(beta * expm1((double)lpt - (double)lps));
}

static void drow(const drow_task *t, int r) {
    const int V = t->V;
    const evlm_distill *d = t->d;
    float *z = t->z + (size_t)r * V;
    const float *zt = t->zt ? t->zt + (size_t)r * V : NULL;
    const float alpha = d->alpha, tau = d->temperature, inv = 1.0f / tau;
    const double beta = d->beta;
    const bool use_ce = alpha > 0, use_lg = d->logit != EVLM_DLOGIT_NONE && alpha < 1 && zt;
    const int32_t y = t->y ? t->y[r] : 0;
    float lse1 = 0, ls = 0, lt = 0;
    double ce = 0, f = 0, G = 0;
    if (use_ce) {
        lse1 = row_lse(z, V, 1.0f);
        ce = (double)lse1 - (double)z[y];
    }
    if (use_lg) {
        ls = row_lse(z, V, inv);
        lt = row_lse(zt, V, inv);
        for (int j = 0; j < V; j++) {
            const float lpt = zt[j] * inv - lt, lps = z[j] * inv - ls;
            switch (d->logit) {
            case EVLM_DLOGIT_KL:
                f += (double)(expf(lpt) * (lpt - lps));
                break;
            case EVLM_DLOGIT_RKL:
                f += (double)(expf(lps) * (lps - lpt));
                break;
            default: { /* jsd */
                const double lm = jsd_lm(beta, lpt, lps), pt = exp((double)lpt),
                             ps = exp((double)lps);
                f += beta * pt * ((double)lpt - (double)lps - lm) - (1 - beta) * ps * lm;
                G -=
                    (1 - beta) * ps * lm; /* sum p_S g, g = d jsd / d p_S = (1 - beta) log(p_S/M) */
                break;
            }
            }
        }
        if (d->logit == EVLM_DLOGIT_RKL) G = f;
    }
    t->ce[r] = use_ce ? ce : 0;
    t->lg[r] = use_lg ? (double)tau * (double)tau * f : 0;
    if (!t->grad) return;
    const float ca = t->scale * alpha, cl = t->scale * (1.0f - alpha) * tau;
    const float Gf = (float)G;
    for (int j = 0; j < V; j++) {
        float gz = use_ce ? ca * expf(z[j] - lse1) : 0.0f;
        if (use_lg) {
            const float lpt = zt[j] * inv - lt, lps = z[j] * inv - ls;
            switch (d->logit) {
            case EVLM_DLOGIT_KL:
                gz += cl * (expf(lps) - expf(lpt));
                break;
            case EVLM_DLOGIT_RKL:
                gz += cl * expf(lps) * (lps - lpt - Gf);
                break;
            default: {
                const double g = -(1 - beta) * jsd_lm(beta, lpt, lps);
                gz += cl * (float)(exp((double)lps) * (g - G));
                break;
            }
            }
        }
        z[j] = gz;
    }
    if (use_ce) z[y] -= ca;
}

static void drow_fn(void *arg, int ith, int nth) {
    const drow_task *t = arg;
    int r0, r1;
    evlm_split_rows(t->n, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) drow(t, r);
}

void evlm_tloss_distill_rows(const evlm_tops *o, float *z, const float *zt, const int32_t *y, int n,
                             int V, const evlm_distill *d, float scale, bool grad, double *row_ce,
                             double *row_logit) {
    drow_task t = {z, zt, y, n, V, d, scale, grad, row_ce, row_logit};
    if (o && o->pool)
        evlm_pool_run(o->pool, drow_fn, &t);
    else
        drow_fn(&t, 0, 1);
}

/* ---- the planned state ---------------------------------------------------------------------- */

struct evlm_distill_state {
    evlm_distill d;
    int n_map, map_s[EVLM_DISTILL_MAX_MAP], map_t[EVLM_DISTILL_MAX_MAP];
    int Ls, Lt, Hs, Ht, NHs, NHt, NKVs, NKVt, HDs, HDt;
    int max_tokens, nth;
    evlm_pool *pool;
    evlm_tparams proj; /* n == n_map when the widths differ and the hidden term is on, else 0 */
    evlm_tops ops;     /* the projections' GEMMs (widths of both models) */
    float *e;          /* [max_tokens][Ht] */
    float *scr;        /* per thread: scr_stride floats */
    size_t scr_stride;
    float *c;    /* [NHs][max_tokens]: sum_j P g of each row and head */
    double *row; /* [max_tokens] */
    /* armed for a step */
    const evlm_tdecoder *s, *t;
    evlm_distill_rows r;
    float hid_scale, attn_scale;
    bool hid_done[EVLM_DISTILL_MAX_MAP]; /* the backward reached map entry i's stream */
};

static size_t al16(size_t n) {
    return (n + 15) & ~(size_t)15;
}

void evlm_distill_state_free(evlm_distill_state *st) {
    if (!st) return;
    evlm_tparams_release(&st->proj);
    evlm_tops_release(&st->ops);
    free(st->e);
    free(st->scr);
    free(st->c);
    free(st->row);
    free(st);
}

evlm_tparams *evlm_distill_state_params(evlm_distill_state *st) {
    return st && st->proj.n > 0 ? &st->proj : NULL;
}

const evlm_distill *evlm_distill_state_spec(const evlm_distill_state *st) {
    return &st->d;
}

evlm_status evlm_distill_state_set(evlm_distill_state *st, const evlm_distill *d) {
    EVLM_TRY(evlm_distill_check(d));
    if ((d->hidden_weight > 0 && !st->e) || (d->attn_weight > 0 && !st->scr))
        return evlm__fail(EVLM_ERR_ARG,
                          "the %s term was not planned (plan the distillation with its weight > 0)",
                          d->hidden_weight > 0 && !st->e ? "hidden" : "attention");
    const int n_map = st->d.n_map;
    int ms[EVLM_DISTILL_MAX_MAP], mt[EVLM_DISTILL_MAX_MAP];
    memcpy(ms, st->d.map_s, sizeof ms);
    memcpy(mt, st->d.map_t, sizeof mt);
    st->d = *d;
    st->d.n_map = n_map;
    memcpy(st->d.map_s, ms, sizeof ms);
    memcpy(st->d.map_t, mt, sizeof mt);
    return EVLM_OK;
}

bool evlm_distill_has_hidden(const evlm_distill_state *st) {
    return st->e != NULL;
}

bool evlm_distill_has_attn(const evlm_distill_state *st) {
    return st->scr != NULL;
}

/* The projections: n matrices [Ht][Hs], identity on the shared leading widths, trainable. */
static evlm_status proj_new(evlm_tparams *tp, int n, int Ht, int Hs) {
    memset(tp, 0, sizeof *tp);
    tp->p = calloc((size_t)n, sizeof *tp->p);
    if (!tp->p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory for the projections");
    const size_t each = al16((size_t)Ht * Hs);
    tp->n = n;
    tp->n_floats = each * (size_t)n;
    tp->mem = aligned_alloc(64, 4 * tp->n_floats * sizeof(float));
    if (!tp->mem) {
        evlm_tparams_release(tp);
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB for the projections",
                          (4 * tp->n_floats * sizeof(float)) >> 20);
    }
    memset(tp->mem, 0, 4 * tp->n_floats * sizeof(float));
    tp->w = tp->mem;
    tp->g = tp->w + tp->n_floats;
    tp->m = tp->g + tp->n_floats;
    tp->v = tp->m + tp->n_floats;
    for (int i = 0; i < n; i++) {
        evlm_tparam *p = &tp->p[i];
        snprintf(p->name, sizeof p->name, "distill.proj.%d.weight", i);
        p->n_dims = 2;
        p->shape[0] = Ht;
        p->shape[1] = Hs;
        p->off = each * (size_t)i;
        p->n = (size_t)Ht * Hs;
        p->src_type = EVLM_TYPE_F32;
        p->trainable = true;
        for (int r = 0; r < Ht && r < Hs; r++) tp->w[p->off + (size_t)r * Hs + r] = 1.0f;
    }
    return EVLM_OK;
}

evlm_status evlm_distill_check(const evlm_distill *d) {
    if (!d) return evlm__fail(EVLM_ERR_ARG, "distillation: no description");
    if (d->logit < EVLM_DLOGIT_NONE || d->logit > EVLM_DLOGIT_JSD)
        return evlm__fail(EVLM_ERR_ARG, "distillation: unknown logit loss %d", (int)d->logit);
    if (d->logit != EVLM_DLOGIT_NONE && !(d->temperature > 0))
        return evlm__fail(EVLM_ERR_ARG, "distillation: the temperature must be > 0 (got %g)",
                          (double)d->temperature);
    if (d->logit == EVLM_DLOGIT_JSD && !(d->beta > 0 && d->beta < 1))
        return evlm__fail(EVLM_ERR_ARG, "distillation: jsd's beta must be in (0, 1) (got %g)",
                          (double)d->beta);
    if (!(d->alpha >= 0 && d->alpha <= 1))
        return evlm__fail(EVLM_ERR_ARG, "distillation: alpha must be in [0, 1] (got %g)",
                          (double)d->alpha);
    if (!(d->hidden_weight >= 0) || !(d->attn_weight >= 0))
        return evlm__fail(EVLM_ERR_ARG,
                          "distillation: the hidden / attention weights must be >= 0");
    return EVLM_OK;
}

evlm_status evlm_distill_state_new(const evlm_distill *d, const evlm_tdecoder *s,
                                   const evlm_tdecoder *t, evlm_pool *pool, const evlm_kernels *k,
                                   int max_tokens, evlm_distill_state **out) {
    *out = NULL;
    if (!s || !t || !pool) return evlm__fail(EVLM_ERR_ARG, "distillation: no models");
    EVLM_TRY(evlm_distill_check(d));
    if (s->V != t->V)
        return evlm__fail(EVLM_ERR_ARG, "the teacher's vocabulary (%d) is not the student's (%d)",
                          t->V, s->V);
    if (max_tokens > t->max_tokens)
        return evlm__fail(EVLM_ERR_ARG, "the teacher was planned for %d tokens, the student %d",
                          t->max_tokens, max_tokens);
    evlm_distill_state *st = calloc(1, sizeof *st);
    if (!st) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    st->d = *d;
    st->Ls = s->L, st->Lt = t->L, st->Hs = s->H, st->Ht = t->H;
    st->NHs = s->NH, st->NHt = t->NH, st->NKVs = s->NKV, st->NKVt = t->NKV;
    st->HDs = s->HD, st->HDt = t->HD;
    st->max_tokens = max_tokens;
    st->pool = pool;
    st->nth = evlm_pool_size(pool);
    evlm_status e = EVLM_OK;
    if (d->hidden_weight > 0 || d->attn_weight > 0)
        e = evlm_distill_resolve_map(d, s->L, t->L, st->map_s, st->map_t, &st->n_map);
    const size_t T = (size_t)max_tokens;
    if (e == EVLM_OK && d->hidden_weight > 0) {
        const int mx = s->H > t->H ? s->H : t->H;
        e = evlm_tops_init(&st->ops, pool, k, mx, max_tokens, 128);
        if (e == EVLM_OK && s->H != t->H) e = proj_new(&st->proj, st->n_map, t->H, s->H);
        if (e == EVLM_OK && !(st->e = malloc(sizeof(float) * T * (size_t)t->H)))
            e = evlm__fail(EVLM_ERR_NOMEM, "out of memory for the hidden term");
    }
    if (e == EVLM_OK && d->attn_weight > 0) {
        st->scr_stride = al16((size_t)(s->NH + 3) * T);
        st->scr = malloc(sizeof(float) * st->scr_stride * (size_t)st->nth);
        st->c = malloc(sizeof(float) * (size_t)s->NH * T);
        st->row = malloc(sizeof(double) * T);
        if (!st->scr || !st->c || !st->row)
            e = evlm__fail(EVLM_ERR_NOMEM, "out of memory for the attention term");
    }
    if (e != EVLM_OK) {
        evlm_distill_state_free(st);
        return e;
    }
    *out = st;
    return EVLM_OK;
}

evlm_status evlm_distill_state_check(const evlm_distill_state *st, const evlm_tdecoder *s,
                                     const evlm_tdecoder *t, int n) {
    if (s->L != st->Ls || s->H != st->Hs || t->L != st->Lt || t->H != st->Ht || t->NH != st->NHt ||
        t->HD != st->HDt || t->NKV != st->NKVt || t->V != s->V)
        return evlm__fail(EVLM_ERR_ARG,
                          "the teacher (%d layers, width %d, %d heads) is not the one the "
                          "distillation was planned for (%d layers, width %d, %d heads)",
                          t->L, t->H, t->NH, st->Lt, st->Ht, st->NHt);
    if (n > t->max_tokens || n > st->max_tokens)
        return evlm__fail(EVLM_ERR_ARG, "the teacher was planned for %d tokens, the batch has %d",
                          t->max_tokens, n);
    return EVLM_OK;
}

/* ---- hidden-state MSE ----------------------------------------------------------------------- */

static const float *stream(const evlm_tdecoder *d, int layer) {
    return d->x + (size_t)layer * d->max_tokens * d->H;
}

/* e (n, Ht) = P_m h (n, Hs) */
static void project(evlm_distill_state *st, int m, const float *h, int n) {
    const evlm_tparam *p = &st->proj.p[m];
    evlm_top_linear(&st->ops, st->e, h, st->proj.w + p->off, NULL, n, st->Ht, st->Hs);
}

static double hidden_sum(evlm_distill_state *st, const evlm_tdecoder *s, const evlm_tdecoder *t,
                         int n) {
    double sum = 0;
    const size_t cnt = (size_t)n * st->Ht;
    for (int m = 0; m < st->n_map; m++) {
        const float *hs = stream(s, st->map_s[m] + 1), *ht = stream(t, st->map_t[m] + 1);
        if (st->proj.n) {
            project(st, m, hs, n);
            sum += evlm_tloss_sq_err(NULL, st->e, ht, cnt, 0.0f);
        } else {
            sum += evlm_tloss_sq_err(NULL, hs, ht, cnt, 0.0f);
        }
    }
    return sum;
}

void evlm_distill_hidden_hook(void *user, int layer, const float *h, float *dx) {
    evlm_distill_state *st = user;
    const int n = st->r.n;
    const size_t cnt = (size_t)n * st->Ht;
    for (int m = 0; m < st->n_map; m++) {
        if (st->map_s[m] + 1 != layer) continue;
        st->hid_done[m] = true;
        const float *ht = stream(st->t, st->map_t[m] + 1);
        if (!dx && !st->proj.n) continue;
        if (!st->proj.n) {
            evlm_tloss_sq_err(dx, h, ht, cnt, st->hid_scale);
            continue;
        }
        const evlm_tparam *p = &st->proj.p[m];
        project(st, m, h, n);
        const float c = 2.0f * st->hid_scale;
        for (size_t i = 0; i < cnt; i++) st->e[i] = c * (st->e[i] - ht[i]);
        evlm_top_linear_bwd(&st->ops, dx, true, p->trainable ? st->proj.g + p->off : NULL, NULL,
                            st->e, h, st->proj.w + p->off, n, st->Ht, st->Hs);
    }
}

/* ---- attention-map KL ----------------------------------------------------------------------- */

typedef struct {
    const float *q, *k, *lse;
    int NH, NKV, HD, n;
    float scale;
} aside;

static aside side_of(const evlm_tdecoder *d, int layer, int n) {
    const size_t T = (size_t)d->max_tokens;
    aside a = {d->q + (size_t)layer * T * d->QD,
               d->k + (size_t)layer * T * d->KD,
               d->lse + (size_t)layer * d->NH * T,
               d->NH,
               d->NKV,
               d->HD,
               n,
               1.0f / sqrtf((float)d->HD)};
    return a;
}

/* the forward's probability of key j for row i, head h (the same float steps as ops.c) */
static float prob(const aside *a, int h, int i, int j) {
    const float *q = a->q + (size_t)i * a->NH * a->HD + (size_t)h * a->HD;
    const float *k = a->k + (size_t)j * a->NKV * a->HD + (size_t)(h / (a->NH / a->NKV)) * a->HD;
    float d = 0.0f;
    for (int x = 0; x < a->HD; x++) d += q[x] * k[x];
    d *= a->scale;
    return expf(d - a->lse[(size_t)h * a->n + i]);
}

#define A_TINY 1e-30f

/* the head mean of row i, key j */
static float head_mean(const aside *a, int i, int j, float *ph) {
    float m = 0.0f;
    for (int h = 0; h < a->NH; h++) {
        float p = prob(a, h, i, j);
        if (ph) ph[h] = p;
        m += p;
    }
    return m / (float)a->NH;
}

typedef struct {
    evlm_distill_state *st;
    aside s, t;
    const evlm_distill_rows *r;
    bool grad;
    float w; /* d(total)/d(sum of row KLs) */
    float *dq, *dk;
} attn_task;

static int seq_of(const evlm_distill_rows *r, int i) {
    for (int s = 0; s < r->n_seq; s++)
        if (i >= r->seq_off[s] && i < r->seq_off[s] + r->seq_len[s]) return s;
    return -1;
}

/* rows: the KL of row i, and with grad its c[h][i] and dq row i */
static void attn_rows_fn(void *arg, int ith, int nth) {
    const attn_task *a = arg;
    evlm_distill_state *st = a->st;
    const int NH = a->s.NH, HD = a->s.HD, n = a->r->n, T = st->max_tokens;
    float *pc = st->scr + (size_t)ith * st->scr_stride; /* [NH][T] */
    float *as = pc + (size_t)NH * T, *at = as + T, *g = at + T;
    int r0, r1;
    evlm_split_rows(n, ith, nth, &r0, &r1);
    for (int i = r0; i < r1; i++) {
        const int sq = seq_of(a->r, i);
        st->row[i] = 0;
        if (sq < 0) continue;
        const int j0 = a->r->seq_off[sq], len = i - j0 + 1;
        double kl = 0;
        for (int jj = 0; jj < len; jj++) {
            float m = 0.0f;
            for (int h = 0; h < NH; h++) {
                float p = prob(&a->s, h, i, j0 + jj);
                pc[(size_t)h * len + jj] = p;
                m += p;
            }
            as[jj] = m / (float)NH;
            at[jj] = head_mean(&a->t, i, j0 + jj, NULL);
            if (at[jj] > 0)
                kl += (double)at[jj] *
                      (log((double)at[jj]) - log((double)(as[jj] > A_TINY ? as[jj] : A_TINY)));
            g[jj] = -(at[jj] / (as[jj] > A_TINY ? as[jj] : A_TINY)) / (float)NH;
        }
        st->row[i] = kl;
        if (!a->grad) continue;
        const int group = NH / a->s.NKV;
        for (int h = 0; h < NH; h++) {
            const float *ph = pc + (size_t)h * len;
            float c = 0.0f;
            for (int jj = 0; jj < len; jj++) c += ph[jj] * g[jj];
            st->c[(size_t)h * n + i] = c;
            float *dq = a->dq + (size_t)i * NH * HD + (size_t)h * HD;
            const float f = a->w * a->s.scale;
            for (int jj = 0; jj < len; jj++) {
                const float ds = f * ph[jj] * (g[jj] - c);
                if (ds == 0.0f) continue;
                const float *k =
                    a->s.k + (size_t)(j0 + jj) * a->s.NKV * HD + (size_t)(h / group) * HD;
                for (int x = 0; x < HD; x++) dq[x] += ds * k[x];
            }
        }
    }
}

/* keys: dk row j from every row i >= j of its sequence (c from the rows pass) */
static void attn_keys_fn(void *arg, int ith, int nth) {
    const attn_task *a = arg;
    evlm_distill_state *st = a->st;
    const int NH = a->s.NH, HD = a->s.HD, n = a->r->n, group = NH / a->s.NKV;
    float *ph = st->scr + (size_t)ith * st->scr_stride;
    const float f = a->w * a->s.scale;
    int r0, r1;
    evlm_split_rows(n, ith, nth, &r0, &r1);
    for (int j = r0; j < r1; j++) {
        const int sq = seq_of(a->r, j);
        if (sq < 0) continue;
        const int end = a->r->seq_off[sq] + a->r->seq_len[sq];
        float *dk = a->dk + (size_t)j * a->s.NKV * HD;
        for (int i = j; i < end; i++) {
            float as = head_mean(&a->s, i, j, ph), at = head_mean(&a->t, i, j, NULL);
            const float g = -(at / (as > A_TINY ? as : A_TINY)) / (float)NH;
            for (int h = 0; h < NH; h++) {
                const float ds = f * ph[h] * (g - st->c[(size_t)h * n + i]);
                if (ds == 0.0f) continue;
                const float *q = a->s.q + (size_t)i * NH * HD + (size_t)h * HD;
                float *d = dk + (size_t)(h / group) * HD;
                for (int x = 0; x < HD; x++) d[x] += ds * q[x];
            }
        }
    }
}

static double attn_sum(evlm_distill_state *st, const evlm_tdecoder *s, const evlm_tdecoder *t,
                       const evlm_distill_rows *r) {
    double sum = 0;
    for (int m = 0; m < st->n_map; m++) {
        attn_task a = {st,
                       side_of(s, st->map_s[m], r->n),
                       side_of(t, st->map_t[m], r->n),
                       r,
                       false,
                       0.0f,
                       NULL,
                       NULL};
        evlm_pool_run(st->pool, attn_rows_fn, &a);
        for (int i = 0; i < r->n; i++) sum += st->row[i];
    }
    return sum;
}

void evlm_distill_attn_hook(void *user, int layer, float *dq, float *dk) {
    evlm_distill_state *st = user;
    for (int m = 0; m < st->n_map; m++) {
        if (st->map_s[m] != layer) continue;
        attn_task a = {st,
                       side_of(st->s, layer, st->r.n),
                       side_of(st->t, st->map_t[m], st->r.n),
                       &st->r,
                       true,
                       st->attn_scale,
                       dq,
                       dk};
        evlm_pool_run(st->pool, attn_rows_fn, &a);
        evlm_pool_run(st->pool, attn_keys_fn, &a);
    }
}

/* ---- a step --------------------------------------------------------------------------------- */

void evlm_distill_forward(evlm_distill_state *st, const evlm_distill *d, const evlm_tdecoder *s,
                          const evlm_tdecoder *t, const evlm_distill_rows *r, double *hidden,
                          double *attn) {
    *hidden = *attn = 0;
    if (st->n_map == 0) return;
    if (d->hidden_weight > 0 && st->e)
        *hidden = hidden_sum(st, s, t, r->n) / ((double)st->n_map * r->n * st->Ht);
    if (d->attn_weight > 0 && st->scr) *attn = attn_sum(st, s, t, r) / ((double)st->n_map * r->n);
}

void evlm_distill_arm(evlm_distill_state *st, const evlm_distill *d, const evlm_tdecoder *s,
                      const evlm_tdecoder *t, const evlm_distill_rows *r, float gs) {
    st->s = s;
    st->t = t;
    st->r = *r;
    const double nm = st->n_map > 0 ? st->n_map : 1;
    st->hid_scale = (float)((double)gs * (double)d->hidden_weight / (nm * r->n * st->Ht));
    st->attn_scale = (float)((double)gs * (double)d->attn_weight / (nm * r->n));
    memset(st->hid_done, 0, sizeof st->hid_done);
}

void evlm_distill_finish(evlm_distill_state *st, const evlm_distill *d) {
    if (!(d->hidden_weight > 0) || !st->proj.n) return;
    for (int m = 0; m < st->n_map; m++) /* below the backward's stop: dW alone */
        if (!st->hid_done[m])
            evlm_distill_hidden_hook(st, st->map_s[m] + 1, stream(st->s, st->map_s[m] + 1), NULL);
}
