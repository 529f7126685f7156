/* calib.c - calibration statistics of linear-layer inputs (see calib.h). */
#include "compress/calib.h"

#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 8 /* rows folded into xtx per pass over it (reuses each xtx row from cache) */

struct evlm_calib {
    evlm_calib_params p;
    evlm_calib_stat *st;
    int n, cap;
    size_t bytes;
    evlm_status status;
    char err[256];
    double *xd; /* [CHUNK][k] scratch */
    size_t xd_cap;
};

evlm_calib_params evlm_calib_default_params(void) {
    evlm_calib_params p = {EVLM_CALIB_ALL_LAYERS, true, true, false, 512, (size_t)4 << 30,
                           0x9e3779b97f4a7c15ull};
    return p;
}

evlm_status evlm_calib_new(const evlm_calib_params *p, evlm_calib **out) {
    *out = NULL;
    if (!p || p->reservoir_rows < 0 || p->layer < EVLM_CALIB_ALL_LAYERS)
        return evlm__fail(EVLM_ERR_ARG, "calib: bad parameters (reservoir_rows %d, layer %d)",
                          p ? p->reservoir_rows : 0, p ? p->layer : 0);
    evlm_calib *c = calloc(1, sizeof *c);
    if (!c) return evlm__fail(EVLM_ERR_NOMEM, "calib: out of memory");
    c->p = *p;
    *out = c;
    return EVLM_OK;
}

static void stat_release(evlm_calib_stat *s) {
    free(s->xtx);
    free(s->abs_sum);
    free(s->rows);
}

void evlm_calib_free(evlm_calib *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) stat_release(&c->st[i]);
    free(c->st);
    free(c->xd);
    free(c);
}

void evlm_calib_select_layer(evlm_calib *c, int layer) {
    for (int i = 0; i < c->n; i++) stat_release(&c->st[i]);
    c->n = 0;
    c->bytes = 0;
    c->p.layer = layer;
}

evlm_status evlm_calib_status(const evlm_calib *c) {
    return c->status;
}
const char *evlm_calib_error(const evlm_calib *c) {
    return c->err;
}
int evlm_calib_count(const evlm_calib *c) {
    return c->n;
}
size_t evlm_calib_bytes(const evlm_calib *c) {
    return c->bytes + c->xd_cap * sizeof(double);
}

size_t evlm_calib_stat_bytes(const evlm_calib_params *p, int k) {
    size_t kk = (size_t)(k > 0 ? k : 0), b = 0;
    if (p->hessian) b += kk * kk * sizeof(double);
    if (p->act_stats) b += kk * sizeof(double) + (size_t)p->reservoir_rows * kk * sizeof(float);
    return b;
}

static int find_index(const evlm_calib *c, int layer, const char *group) {
    for (int i = 0; i < c->n; i++)
        if (c->st[i].layer == layer && strcmp(c->st[i].group, group) == 0) return i;
    return -1;
}

const evlm_calib_stat *evlm_calib_find(const evlm_calib *c, int layer, const char *group) {
    int i = find_index(c, layer, group);
    return i >= 0 ? &c->st[i] : NULL;
}

void evlm_calib_mean_abs(const evlm_calib_stat *st, float *out) {
    for (int j = 0; j < st->k; j++)
        out[j] =
            st->abs_sum && st->n_rows > 0 ? (float)(st->abs_sum[j] / (double)st->n_rows) : 0.0f;
}

/* Keeps the first error (observers cannot return one). */
static void fail(evlm_calib *c, evlm_status st) {
    if (c->status != EVLM_OK) return;
    c->status = st;
    snprintf(c->err, sizeof c->err, "%s", evlm_last_error());
}

static evlm_calib_stat *stat_new(evlm_calib *c, int layer, const char *group, int k) {
    size_t need = evlm_calib_stat_bytes(&c->p, k);
    if (strlen(group) >= sizeof c->st[0].group) {
        fail(c, evlm__fail(EVLM_ERR_ARG, "calib: group name '%s' too long", group));
        return NULL;
    }
    /* k*k doubles: refuse widths whose square would overflow before any allocation */
    if ((uint64_t)k > (uint64_t)1 << 20 ||
        (c->p.max_bytes && (need > c->p.max_bytes || c->bytes > c->p.max_bytes - need))) {
        fail(c, evlm__fail(
                    EVLM_ERR_NOMEM,
                    "calib: layer %d %s (k = %d) needs %zu bytes; %zu of max_bytes %zu are in use "
                    "(collect one layer at a time)",
                    layer, group, k, need, c->bytes, c->p.max_bytes));
        return NULL;
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        evlm_calib_stat *st = realloc(c->st, sizeof *st * (size_t)cap);
        if (!st) goto nomem;
        c->st = st;
        c->cap = cap;
    }
    evlm_calib_stat s = {0};
    s.layer = layer;
    strcpy(s.group, group);
    s.k = k;
    s.cap = c->p.act_stats ? c->p.reservoir_rows : 0;
    s.rng = c->p.seed ^ ((uint64_t)(layer + 2) * 0x9e3779b97f4a7c15ull) ^ (uint64_t)group[0] << 56;
    if (c->p.hessian && !(s.xtx = calloc((size_t)k * (size_t)k, sizeof(double)))) goto nomem;
    if (c->p.act_stats && !(s.abs_sum = calloc((size_t)k, sizeof(double)))) goto nomem_s;
    if (s.cap && !(s.rows = malloc(sizeof(float) * (size_t)s.cap * (size_t)k))) goto nomem_s;
    c->st[c->n] = s;
    c->bytes += need;
    return &c->st[c->n++];
nomem_s:
    stat_release(&s);
nomem:
    fail(c, evlm__fail(EVLM_ERR_NOMEM, "calib: out of memory for layer %d %s (k = %d)", layer,
                       group, k));
    return NULL;
}

static uint64_t next_rng(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xtx (upper triangle) += sum over r < m of xd[r] xd[r]^T */
static void add_outer(double *xtx, const double *xd, int m, int k) {
    for (int i = 0; i < k; i++) {
        double *h = xtx + (size_t)i * (size_t)k;
        for (int r = 0; r < m; r++) {
            const double *x = xd + (size_t)r * (size_t)k;
            double xi = x[i];
            if (xi == 0.0) continue;
            for (int j = i; j < k; j++) h[j] += xi * x[j];
        }
    }
}

void evlm_calib_observe(void *user, int layer, const char *group, const float *x, int m, int k) {
    evlm_calib *c = user;
    if (c->status != EVLM_OK || m <= 0) return;
    if (c->p.layer == EVLM_CALIB_ALL_LAYERS ? (layer < 0 && !c->p.lm_head) : layer != c->p.layer)
        return;
    if (!c->p.hessian && !c->p.act_stats) return;
    if (k <= 0 || !x || !group) {
        fail(c, evlm__fail(EVLM_ERR_ARG, "calib: layer %d: bad observation (k = %d)", layer, k));
        return;
    }
    int idx = find_index(c, layer, group);
    evlm_calib_stat *s = idx >= 0 ? &c->st[idx] : stat_new(c, layer, group, k);
    if (!s) return;
    if (s->k != k) {
        fail(c, evlm__fail(EVLM_ERR_ARG, "calib: layer %d %s: input width %d, was %d", layer, group,
                           k, s->k));
        return;
    }
    for (size_t i = 0; i < (size_t)m * (size_t)k; i++)
        if (!isfinite(x[i])) {
            fail(c, evlm__fail(EVLM_ERR_RANGE,
                               "calib: layer %d %s: non-finite input (row %zu, channel %zu)", layer,
                               group, i / (size_t)k, i % (size_t)k));
            return;
        }
    if (s->xtx) {
        size_t need = (size_t)CHUNK * (size_t)k;
        if (c->xd_cap < need) {
            double *xd = realloc(c->xd, sizeof(double) * need);
            if (!xd) {
                fail(c, evlm__fail(EVLM_ERR_NOMEM, "calib: out of memory (scratch)"));
                return;
            }
            c->xd = xd;
            c->xd_cap = need;
        }
        for (int r0 = 0; r0 < m; r0 += CHUNK) {
            int mm = m - r0 < CHUNK ? m - r0 : CHUNK;
            for (size_t i = 0; i < (size_t)mm * (size_t)k; i++)
                c->xd[i] = (double)x[(size_t)r0 * (size_t)k + i];
            add_outer(s->xtx, c->xd, mm, k);
        }
        for (int i = 0; i < k; i++) /* mirror: keep both halves valid between calls */
            for (int j = i + 1; j < k; j++)
                s->xtx[(size_t)j * (size_t)k + i] = s->xtx[(size_t)i * (size_t)k + j];
    }
    if (s->abs_sum)
        for (int r = 0; r < m; r++)
            for (int j = 0; j < k; j++) s->abs_sum[j] += fabs((double)x[(size_t)r * (size_t)k + j]);
    for (int r = 0; r < m && s->cap > 0; r++) {
        /* Algorithm R: row number t (0-based) replaces a random slot with probability cap / (t + 1)
         */
        int64_t t = s->n_rows + r;
        int64_t slot = t < s->cap ? t : (int64_t)(next_rng(&s->rng) % (uint64_t)(t + 1));
        if (slot < s->cap) {
            memcpy(s->rows + (size_t)slot * (size_t)k, x + (size_t)r * (size_t)k,
                   sizeof(float) * (size_t)k);
            if (slot >= s->n_kept) s->n_kept = (int)slot + 1;
        }
    }
    s->n_rows += m;
}
