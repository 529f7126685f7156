/*
 * loss.c - the training losses (loss.h): softmax rows with float exponentials and double sums, one
 * row per thread task, gradients written over the logits. Not here: the logits, the head's backward
 * (tmodel.c).
 */
#include "train/loss.h"

#include <math.h>

typedef enum { ROW_CE, ROW_KD, ROW_RKL } row_kind;

typedef struct {
    row_kind kind;
    float *z;
    const float *zt;
    const int32_t *y;
    int n, V;
    float tau, scale;
    bool grad;
    double *row_loss;
} row_task;

/* log(sum exp(a[j] * inv)) over a[0..V): float exponentials, a double sum */
static float row_lse(const float *a, int V, float inv) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++)
        if (a[j] * inv > mx) mx = a[j] * inv;
    double s = 0;
    for (int j = 0; j < V; j++) s += (double)expf(a[j] * inv - mx);
    return mx + (float)log(s);
}

static void ce_row(float *z, int32_t y, int V, float scale, bool grad, double *loss) {
    const float lse = row_lse(z, V, 1.0f);
    *loss = (double)lse - (double)z[y];
    if (!grad) return;
    for (int j = 0; j < V; j++) z[j] = scale * expf(z[j] - lse);
    z[y] -= scale;
}

/* kd and rkl: log p_s, log p_t at temperature tau of row j */
static void kd_row(float *z, const float *zt, int V, float tau, float scale, bool grad,
                   double *loss) {
    const float inv = 1.0f / tau, ls = row_lse(z, V, inv), lt = row_lse(zt, V, inv);
    double kl = 0;
    for (int j = 0; j < V; j++) {
        float lpt = zt[j] * inv - lt, lps = z[j] * inv - ls;
        kl += (double)(expf(lpt) * (lpt - lps));
    }
    *loss = (double)tau * (double)tau * kl;
    if (!grad) return;
    const float c = scale * tau;
    for (int j = 0; j < V; j++) z[j] = c * (expf(z[j] * inv - ls) - expf(zt[j] * inv - lt));
}

static void rkl_row(float *z, const float *zt, int V, float tau, float scale, bool grad,
                    double *loss) {
    const float inv = 1.0f / tau, ls = row_lse(z, V, inv), lt = row_lse(zt, V, inv);
    double f = 0;
    for (int j = 0; j < V; j++) {
        float lpt = zt[j] * inv - lt, lps = z[j] * inv - ls;
        f += (double)(expf(lps) * (lps - lpt));
    }
    *loss = (double)tau * (double)tau * f;
    if (!grad) return;
    const float c = scale * tau, ff = (float)f;
    for (int j = 0; j < V; j++) {
        float lpt = zt[j] * inv - lt, lps = z[j] * inv - ls;
        z[j] = c * expf(lps) * (lps - lpt - ff);
    }
}

static void rows_fn(void *arg, int ith, int nth) {
    const row_task *t = arg;
    int r0, r1;
    evlm_split_rows(t->n, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        float *z = t->z + (size_t)r * t->V;
        const float *zt = t->zt ? t->zt + (size_t)r * t->V : NULL;
        switch (t->kind) {
        case ROW_CE:
            ce_row(z, t->y[r], t->V, t->scale, t->grad, &t->row_loss[r]);
            break;
        case ROW_KD:
            kd_row(z, zt, t->V, t->tau, t->scale, t->grad, &t->row_loss[r]);
            break;
        case ROW_RKL:
            rkl_row(z, zt, t->V, t->tau, t->scale, t->grad, &t->row_loss[r]);
            break;
        }
    }
}

static void run_rows(const evlm_tops *o, row_task *t) {
    if (o && o->pool)
        evlm_pool_run(o->pool, rows_fn, t);
    else
        rows_fn(t, 0, 1);
}

void evlm_tloss_ce_rows(const evlm_tops *o, float *z, const int32_t *y, int n, int V, float scale,
                        bool grad, double *row_loss) {
    row_task t = {ROW_CE, z, NULL, y, n, V, 1.0f, scale, grad, row_loss};
    run_rows(o, &t);
}

void evlm_tloss_kd_rows(const evlm_tops *o, float *z, const float *zt, int n, int V, float tau,
                        float scale, bool grad, double *row_loss) {
    row_task t = {ROW_KD, z, zt, NULL, n, V, tau, scale, grad, row_loss};
    run_rows(o, &t);
}

void evlm_tloss_rkl_rows(const evlm_tops *o, float *z, const float *zt, int n, int V, float tau,
                         float scale, bool grad, double *row_loss) {
    row_task t = {ROW_RKL, z, zt, NULL, n, V, tau, scale, grad, row_loss};
    run_rows(o, &t);
}

double evlm_tloss_sq_err(float *d, const float *h, const float *ht, size_t n, float scale) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        float e = h[i] - ht[i];
        s += (double)e * (double)e;
        if (d) d[i] += scale * 2.0f * e;
    }
    return s;
}
