/*
 * adamw.c - AdamW, gradient clipping and the learning-rate schedule (see adamw.h).
 * The update follows torch.optim.AdamW's single-tensor path (torch 1.13) operation by
 * operation, in float32 with the scalar factors formed in double as Python forms them, so a
 * few steps agree with torch to float32 rounding (tests/test_train_loop.c). Not here: the loop.
 */
#include "train/adamw.h"

#include <math.h>

evlm_adamw_params evlm_adamw_default_params(void) {
    return (evlm_adamw_params){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
}

double evlm_adamw_grad_norm(const evlm_tparams *tp) {
    double ss = 0;
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        if (!p->trainable) continue;
        const float *g = tp->g + p->off;
        for (size_t j = 0; j < p->n; j++) ss += (double)g[j] * (double)g[j];
    }
    return sqrt(ss);
}

double evlm_adamw_clip(evlm_tparams *tp, double max_norm) {
    return evlm_adamw_clip_sets(&tp, 1, max_norm);
}

double evlm_adamw_clip_sets(evlm_tparams *const *sets, int n_sets, double max_norm) {
    double n = 0; /* one set: its norm as it is (sqrt(n^2) could round differently) */
    if (n_sets == 1) {
        n = evlm_adamw_grad_norm(sets[0]);
    } else {
        for (int k = 0; k < n_sets; k++) {
            double nk = evlm_adamw_grad_norm(sets[k]);
            n += nk * nk;
        }
        n = sqrt(n);
    }
    if (max_norm <= 0) return n;
    double coef = max_norm / (n + 1e-6);
    if (coef >= 1.0) return n;
    float c = (float)coef;
    for (int k = 0; k < n_sets; k++) {
        evlm_tparams *tp = sets[k];
        for (int i = 0; i < tp->n; i++) {
            const evlm_tparam *p = &tp->p[i];
            if (!p->trainable) continue;
            float *g = tp->g + p->off;
            for (size_t j = 0; j < p->n; j++) g[j] *= c;
        }
    }
    return n;
}

void evlm_adamw_step(evlm_tparams *tp, const evlm_adamw_params *ap, double lr, int64_t step) {
    /* torch: param.mul_(1 - lr * wd); exp_avg.mul_(b1).add_(g, alpha = 1 - b1);
     * exp_avg_sq.mul_(b2).addcmul_(g, g, value = 1 - b2);
     * denom = (exp_avg_sq.sqrt() / sqrt(1 - b2^t)).add_(eps);
     * param.addcdiv_(exp_avg, denom, value = -lr / (1 - b1^t)) */
    double b1 = ap->beta1, b2 = ap->beta2;
    float decay = (float)(1.0 - lr * ap->weight_decay);
    float a1 = (float)(1.0 - b1), a2 = (float)(1.0 - b2);
    float fb1 = (float)b1, fb2 = (float)b2;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float eps = (float)ap->eps;
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        if (!p->trainable) continue;
        float *w = tp->w + p->off, *m = tp->m + p->off, *v = tp->v + p->off;
        const float *g = tp->g + p->off;
        for (size_t j = 0; j < p->n; j++) {
            float gj = g[j];
            w[j] *= decay;
            m[j] = m[j] * fb1 + gj * a1;
            v[j] = v[j] * fb2 + gj * gj * a2;
            float denom = sqrtf(v[j]) / bc2_sqrt + eps;
            w[j] += -step_size * (m[j] / denom);
        }
    }
}

double evlm_lr_at(const evlm_lr_schedule *s, int64_t step) {
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    if (s->total <= s->warmup) return s->lr;
    double q = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (q > 1) q = 1;
    return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(acos(-1.0) * q));
}
