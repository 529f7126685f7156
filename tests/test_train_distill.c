/*
 * test_train_distill.c - the distillation losses (src/train/distill.c, the distill step of
 * tmodel.c): the row losses (alpha CE + (1 - alpha) kl | rkl | jsd:BETA at temperature tau)
 * against torch autograd (tests/data/distill_rows_ref.json, tools/make_distill_ref.py); a
 * teacher distilled into itself has loss 0 and gradient 0 for kl / rkl / jsd / hidden /
 * attention; a student of other widths, layer and head counts (synthesized) against central
 * finite differences for every term, the projection included; a few SGD steps through the
 * projection lower the loss; parsing, the auto layer map, plan errors.
 * Needs ../shared (the llama-tiny tokenizer for the synthesized models); skips without it.
 */
#include "core/file.h"
#include "core/json.h"
#include "core/threadpool.h"
#include "evlm_npu.h"
#include "test.h"
#include "train/distill.h"
#include "train/tmodel.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- the row losses against torch ---------------------------------------------------------- */

static void rows_vs_torch(void) {
    const char *src = getenv("EVLM_SRC");
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/data/distill_rows_ref.json", src ? src : ".");
    cJSON *root = NULL;
    CHECK_OK(evlm_json_load(path, &root));
    if (!root) return;
    const int n = cJSON_GetObjectItem(root, "n")->valueint,
              V = cJSON_GetObjectItem(root, "V")->valueint;
    float *z0 = malloc(sizeof(float) * (size_t)n * V), *zt = malloc(sizeof(float) * (size_t)n * V);
    float *z = malloc(sizeof(float) * (size_t)n * V);
    int32_t y[16];
    double ce[16], lg[16];
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "z")) z0[i++] = (float)it->valuedouble;
    i = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "zt")) zt[i++] = (float)it->valuedouble;
    i = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "y")) y[i++] = it->valueint;
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        evlm_distill d = evlm_distill_default();
        const char *kind = cJSON_GetObjectItem(c, "logit")->valuestring;
        char spec[64];
        d.beta = (float)cJSON_GetObjectItem(c, "beta")->valuedouble;
        snprintf(spec, sizeof spec, "%s:%g", kind, (double)d.beta);
        if (!strcmp(kind, "none"))
            d.logit = EVLM_DLOGIT_NONE;
        else
            CHECK_OK(evlm_distill_parse_loss(strcmp(kind, "jsd") ? kind : spec, &d));
        d.temperature = (float)cJSON_GetObjectItem(c, "tau")->valuedouble;
        d.alpha = (float)cJSON_GetObjectItem(c, "alpha")->valuedouble;
        CHECK_OK(evlm_distill_check(&d));
        memcpy(z, z0, sizeof(float) * (size_t)n * V);
        evlm_tloss_distill_rows(NULL, z, zt, y, n, V, &d, 1.0f / (float)n, true, ce, lg);
        const cJSON *rce = cJSON_GetObjectItem(c, "ce"), *rlg = cJSON_GetObjectItem(c, "lg"),
                    *rg = cJSON_GetObjectItem(c, "grad");
        double worst = 0;
        for (int r = 0; r < n; r++) {
            double a = cJSON_GetArrayItem(rce, r)->valuedouble,
                   b = cJSON_GetArrayItem(rlg, r)->valuedouble;
            CHECKF(fabs(ce[r] - a) <= 1e-5 * fabs(a) + 1e-6 &&
                       fabs(lg[r] - b) <= 1e-5 * fabs(b) + 1e-6,
                   "%s tau %g alpha %g row %d: ce %.9g / %.9g, logit term %.9g / %.9g (torch)",
                   spec, (double)d.temperature, (double)d.alpha, r, ce[r], a, lg[r], b);
        }
        double gmax = 0;
        for (int j = 0; j < n * V; j++)
            gmax = fmax(gmax, fabs(cJSON_GetArrayItem(rg, j)->valuedouble));
        for (int j = 0; j < n * V; j++)
            worst = fmax(worst, fabs((double)z[j] - cJSON_GetArrayItem(rg, j)->valuedouble));
        CHECKF(worst <= 1e-5 * gmax + 1e-7, "%s tau %g alpha %g: gradient off by %.3g (max %.3g)",
               spec, (double)d.temperature, (double)d.alpha, worst, gmax);
        /* the forward alone gives the same row terms and leaves z */
        memcpy(z, z0, sizeof(float) * (size_t)n * V);
        double ce2[16], lg2[16];
        evlm_tloss_distill_rows(NULL, z, zt, y, n, V, &d, 1.0f, false, ce2, lg2);
        CHECK(!memcmp(ce2, ce, sizeof(double) * (size_t)n) &&
              !memcmp(lg2, lg, sizeof(double) * (size_t)n) &&
              !memcmp(z, z0, sizeof(float) * (size_t)n * V));
        n_cases++;
    }
    CHECKF(n_cases == 8, "%d torch cases", n_cases);
    printf("row losses: %d cases against torch\n", n_cases);
    free(z0);
    free(zt);
    free(z);
    cJSON_Delete(root);
}

/* ---- the white-box terms on raw activations against torch ---------------------------------- */

static int read_floats(const cJSON *root, const char *key, float *dst, int max) {
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, key)) {
        if (i < max) dst[i] = (float)it->valuedouble;
        i++;
    }
    return i;
}

/* lse [NH][n] of the causal attention within the sequences (the forward's, from q and k) */
static void fill_lse(evlm_tdecoder *d, const int *off, const int *len, int n_seq) {
    const float scale = 1.0f / sqrtf((float)d->HD);
    for (int s = 0; s < n_seq; s++)
        for (int i = off[s]; i < off[s] + len[s]; i++)
            for (int h = 0; h < d->NH; h++) {
                double sc[64], mx = -1e300, sum = 0;
                const float *q = d->q + (size_t)i * d->QD + (size_t)h * d->HD;
                for (int j = off[s]; j <= i; j++) {
                    const float *k =
                        d->k + (size_t)j * d->KD + (size_t)(h / (d->NH / d->NKV)) * d->HD;
                    float dd = 0.0f;
                    for (int x = 0; x < d->HD; x++) dd += q[x] * k[x];
                    sc[j - off[s]] = (double)(dd * scale);
                    mx = fmax(mx, sc[j - off[s]]);
                }
                for (int j = off[s]; j <= i; j++) sum += exp(sc[j - off[s]] - mx);
                d->lse[(size_t)h * (size_t)(off[n_seq - 1] + len[n_seq - 1]) + i] =
                    (float)(mx + log(sum));
            }
}

static double worst_vs(const float *a, const cJSON *root, const char *key, int n, double *gmax) {
    double w = 0, m = 0;
    for (int i = 0; i < n; i++) {
        const double r = cJSON_GetArrayItem(cJSON_GetObjectItem(root, key), i)->valuedouble;
        w = fmax(w, fabs((double)a[i] - r));
        m = fmax(m, fabs(r));
    }
    *gmax = m;
    return w;
}

static void maps_vs_torch(void) {
    const char *src = getenv("EVLM_SRC");
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/data/distill_maps_ref.json", src ? src : ".");
    cJSON *root = NULL;
    CHECK_OK(evlm_json_load(path, &root));
    if (!root) return;
    int off[2] = {0, 0}, len[2];
    len[0] = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "lens"), 0)->valueint;
    len[1] = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "lens"), 1)->valueint;
    off[1] = len[0];
    const int n = len[0] + len[1], Hs = cJSON_GetObjectItem(root, "width_s")->valueint,
              Ht = cJSON_GetObjectItem(root, "width_t")->valueint;
    evlm_tdecoder ds, dt;
    memset(&ds, 0, sizeof ds);
    memset(&dt, 0, sizeof dt);
    evlm_tdecoder *dd[2] = {&ds, &dt};
    const char *side[2] = {"student", "teacher"}, *qn[2] = {"qs", "qt"}, *kn[2] = {"ks", "kt"};
    for (int m = 0; m < 2; m++) {
        const cJSON *sh = cJSON_GetObjectItem(root, side[m]);
        evlm_tdecoder *d = dd[m];
        d->L = 1;
        d->H = m ? Ht : Hs;
        d->NH = cJSON_GetObjectItem(sh, "nh")->valueint;
        d->NKV = cJSON_GetObjectItem(sh, "nkv")->valueint;
        d->HD = cJSON_GetObjectItem(sh, "hd")->valueint;
        d->QD = d->NH * d->HD;
        d->KD = d->NKV * d->HD;
        d->V = 10;
        d->max_tokens = n;
        d->x = calloc((size_t)2 * n * d->H, sizeof(float));
        d->q = calloc((size_t)n * d->QD, sizeof(float));
        d->k = calloc((size_t)n * d->KD, sizeof(float));
        d->lse = calloc((size_t)n * d->NH, sizeof(float));
        CHECK(read_floats(root, qn[m], d->q, n * d->QD) == n * d->QD);
        CHECK(read_floats(root, kn[m], d->k, n * d->KD) == n * d->KD);
        fill_lse(d, off, len, 2);
    }
    CHECK(read_floats(root, "h_s", ds.x + (size_t)n * Hs, n * Hs) == n * Hs);
    CHECK(read_floats(root, "h_t", dt.x + (size_t)n * Ht, n * Ht) == n * Ht);
    evlm_pool *pool = NULL;
    CHECK_OK(evlm_pool_new(2, &pool));
    evlm_distill d = evlm_distill_default();
    d.logit = EVLM_DLOGIT_NONE;
    d.hidden_weight = 1.0f;
    d.attn_weight = 1.0f;
    evlm_distill_state *st = NULL;
    if (pool) CHECK_OK(evlm_distill_state_new(&d, &ds, &dt, pool, NULL, n, &st));
    evlm_tparams *pp = st ? evlm_distill_state_params(st) : NULL;
    CHECK(pp && pp->n == 1 && pp->p[0].shape[0] == Ht && pp->p[0].shape[1] == Hs);
    if (pp) {
        /* identity-like start, then the reference's W */
        CHECK(pp->w[0] == 1.0f && pp->w[1] == 0.0f && pp->w[(size_t)Hs + 1] == 1.0f);
        CHECK(read_floats(root, "W", pp->w, Ht * Hs) == Ht * Hs);
        const evlm_distill_rows r = {n, 2, off, len};
        double hid, att, gm;
        evlm_distill_forward(st, &d, &ds, &dt, &r, &hid, &att);
        const double rh = cJSON_GetObjectItem(root, "hidden")->valuedouble,
                     ra = cJSON_GetObjectItem(root, "attn")->valuedouble;
        CHECKF(fabs(hid - rh) <= 1e-5 * rh && fabs(att - ra) <= 1e-5 * ra,
               "hidden %.9g / %.9g, attention %.9g / %.9g (torch)", hid, rh, att, ra);
        evlm_distill_arm(st, &d, &ds, &dt, &r, 1.0f);
        float *dq = calloc((size_t)n * ds.QD, sizeof(float)), *dk = calloc((size_t)n * ds.KD, 4);
        float *dx = calloc((size_t)n * Hs, sizeof(float));
        evlm_distill_attn_hook(st, 0, dq, dk);
        double w = worst_vs(dq, root, "dqs", n * ds.QD, &gm);
        CHECKF(w <= 1e-5 * gm, "attention: dq off by %.3g (max %.3g)", w, gm);
        w = worst_vs(dk, root, "dks", n * ds.KD, &gm);
        CHECKF(w <= 1e-5 * gm, "attention: dk off by %.3g (max %.3g)", w, gm);
        evlm_tparams_zero_grad(pp);
        evlm_distill_hidden_hook(st, 1, ds.x + (size_t)n * Hs, dx);
        w = worst_vs(dx, root, "dhs", n * Hs, &gm);
        CHECKF(w <= 1e-5 * gm, "hidden: dh off by %.3g (max %.3g)", w, gm);
        w = worst_vs(pp->g, root, "dW", Ht * Hs, &gm);
        CHECKF(w <= 1e-5 * gm, "hidden: dW off by %.3g (max %.3g)", w, gm);
        printf("white-box terms on raw activations: hidden %.6g, attention %.6g (torch %.6g, "
               "%.6g)\n",
               hid, att, rh, ra);
        free(dq);
        free(dk);
        free(dx);
    }
    evlm_distill_state_free(st);
    evlm_pool_free(pool);
    for (int m = 0; m < 2; m++) {
        free(dd[m]->x);
        free(dd[m]->q);
        free(dd[m]->k);
        free(dd[m]->lse);
    }
    cJSON_Delete(root);
}

/* ---- parsing -------------------------------------------------------------------------------- */

static void parse_cases(void) {
    evlm_distill d = evlm_distill_default();
    CHECK_OK(evlm_distill_parse_loss("rkl", &d));
    CHECK(d.logit == EVLM_DLOGIT_RKL);
    CHECK_OK(evlm_distill_parse_loss("jsd:0.25", &d));
    CHECK(d.logit == EVLM_DLOGIT_JSD && d.beta == 0.25f);
    const char *bad[] = {"jsd", "jsd:0", "jsd:1", "jsd:x", "jsd:0.5x", "kd", ""};
    for (int i = 0; i < 7; i++) {
        evlm_status st = evlm_distill_parse_loss(bad[i], &d);
        CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), bad[i]), "'%s': %d %s", bad[i],
               (int)st, evlm_last_error());
    }
    CHECK_OK(evlm_distill_parse_map("0:1,1:3", &d));
    CHECK(d.n_map == 2 && d.map_s[1] == 1 && d.map_t[1] == 3);
    CHECK_OK(evlm_distill_parse_map("auto", &d));
    CHECK(d.n_map == 0);
    const char *badm[] = {"0:", ":1", "0:1,", "a:b", "0-1"};
    for (int i = 0; i < 5; i++)
        CHECKF(evlm_distill_parse_map(badm[i], &d) == EVLM_ERR_ARG, "map '%s' accepted", badm[i]);
    /* auto: student layer i of S -> round((i + 1) T / S) - 1 */
    const int want36[3] = {1, 3, 5}, want23[2] = {1, 2}, want46[4] = {1, 2, 4, 5};
    for (int i = 0; i < 3; i++) CHECK(evlm_distill_auto_layer(i, 3, 6) == want36[i]);
    for (int i = 0; i < 2; i++) CHECK(evlm_distill_auto_layer(i, 2, 3) == want23[i]);
    for (int i = 0; i < 4; i++) CHECK(evlm_distill_auto_layer(i, 4, 6) == want46[i]);
    CHECK(evlm_distill_auto_layer(0, 4, 1) == 0); /* clamped */
}

/* ---- models --------------------------------------------------------------------------------- */

static bool synth(const char *tmp, const char *name, const char *cfg_json, const char *tok,
                  uint64_t seed, char *dir, size_t dir_len) {
    char cfg[4400];
    snprintf(cfg, sizeof cfg, "%s/%s.json", tmp, name);
    snprintf(dir, dir_len, "%s/%s", tmp, name);
    CHECK_OK(evlm_write_file_atomic(cfg, cfg_json, strlen(cfg_json)));
    evlm_synth_params sp = evlm_synth_default_params();
    sp.config = cfg;
    sp.out_dir = dir;
    sp.dtype = "f32";
    sp.tokenizer_dir = tok;
    sp.seed = seed;
    evlm_status st = evlm_model_synth(&sp, NULL, NULL);
    CHECK_OK(st);
    return st == EVLM_OK;
}

static evlm_model *load(const char *dir) {
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = 2;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(dir, &mp, &m));
    return m;
}

static evlm_tmodel *tnew(evlm_model *m, int tokens, bool forward_only) {
    evlm_tmodel_params p = {2, tokens, 0, NULL, forward_only};
    evlm_tmodel *tm = NULL;
    CHECK_OK(evlm_tmodel_new(m, &p, &tm));
    return tm;
}

/* Norm weights and biases of a synthesized model made random (synth writes ones / zeros) and
 * its matrices scaled, so the models are far from uniform and from one another. */
static void perturb(evlm_tparams *tp, uint64_t seed, float mat_scale) {
    for (int i = 0; i < tp->n; i++) {
        const bool norm = strstr(tp->p[i].name, "norm") != NULL;
        for (size_t j = 0; j < tp->p[i].n; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            float r = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
            float *w = tp->w + tp->p[i].off + j;
            *w = norm ? *w + 0.6f * r : *w * mat_scale;
        }
    }
}

#define NTOK 34
static int32_t g_ids[NTOK];
static uint8_t g_tg[NTOK];

static evlm_tbatch batch(evlm_tseq *seq) {
    uint64_t rs = 11;
    for (int i = 0; i < NTOK; i++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        g_ids[i] = (int32_t)((rs >> 33) % 680);
        g_tg[i] = i != 3 && i != 25;
    }
    seq[0] = (evlm_tseq){g_ids, 20, g_tg, NULL, NULL, 0};
    seq[1] = (evlm_tseq){g_ids + 20, 14, g_tg + 20, NULL, NULL, 0};
    return (evlm_tbatch){seq, 2};
}

static evlm_status dstep(evlm_tmodel *tm, evlm_tmodel *te, bool grad, evlm_tresult *r) {
    evlm_tseq seq[2];
    evlm_tbatch b = batch(seq);
    evlm_tstep s = {EVLM_TLOSS_DISTILL, 1.0f, te, 1.0f, !grad};
    return evlm_tmodel_step(tm, &b, &s, r);
}

static double max_abs(const evlm_tparams *tp) {
    double m = 0;
    for (int i = 0; i < tp->n; i++)
        for (size_t j = 0; j < tp->p[i].n; j++) m = fmax(m, fabs((double)tp->g[tp->p[i].off + j]));
    return m;
}

typedef struct {
    const char *name;
    const char *loss; /* NULL: no logit term */
    float tau, alpha, hidden, attn;
} dcase;

static evlm_distill desc(const dcase *c) {
    evlm_distill d = evlm_distill_default();
    d.logit = EVLM_DLOGIT_NONE;
    if (c->loss) CHECK_OK(evlm_distill_parse_loss(c->loss, &d));
    d.temperature = c->tau;
    d.alpha = c->alpha;
    d.hidden_weight = c->hidden;
    d.attn_weight = c->attn;
    return d;
}

/* A teacher distilled into itself: loss 0 and every gradient 0 (within 1e-7). */
static void self_case(const char *dir) {
    evlm_model *m = load(dir), *mt = load(dir);
    evlm_tmodel *tm = m ? tnew(m, NTOK, false) : NULL, *te = mt ? tnew(mt, NTOK, true) : NULL;
    if (!tm || !te) goto done;
    perturb(evlm_tmodel_params_of(tm), 5, 1.0f);
    perturb(evlm_tmodel_params_of(te), 5, 1.0f);
    static const dcase cases[] = {
        {"kl", "kl", 2.0f, 0, 0, 0},           {"rkl", "rkl", 1.5f, 0, 0, 0},
        {"jsd:0.3", "jsd:0.3", 2.0f, 0, 0, 0}, {"hidden", NULL, 1.0f, 0, 1.0f, 0},
        {"attention", NULL, 1.0f, 0, 0, 1.0f}, {"all", "jsd:0.7", 1.0f, 0, 0.5f, 2.0f}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        evlm_distill d = desc(&cases[i]);
        CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
        evlm_tparams *tp = evlm_tmodel_params_of(tm);
        evlm_tparams_zero_grad(tp);
        evlm_tresult r;
        CHECK_OK(dstep(tm, te, true, &r));
        const double g = max_abs(tp);
        CHECKF(fabs(r.loss) <= 1e-7 && g <= 1e-7,
               "self-distillation %s: loss %.3g, largest gradient %.3g (want 0)", cases[i].name,
               r.loss, g);
        printf("self-distillation %-9s loss %.3g, largest gradient %.3g\n", cases[i].name, r.loss,
               g);
    }
    /* the same model as teacher with other weights: not zero (the check can fail) */
    perturb(evlm_tmodel_params_of(tm), 9, 1.0f);
    evlm_distill d = desc(&cases[5]);
    CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
    evlm_tresult r;
    evlm_tparams_zero_grad(evlm_tmodel_params_of(tm));
    CHECK_OK(dstep(tm, te, true, &r));
    CHECKF(r.logit > 1e-6 && r.hidden > 1e-6 && r.attn > 1e-6 &&
               max_abs(evlm_tmodel_params_of(tm)) > 1e-6,
           "perturbed student: logit %.3g hidden %.3g attn %.3g", r.logit, r.hidden, r.attn);
done:
    evlm_tmodel_free(te);
    evlm_tmodel_free(tm);
    evlm_model_free(mt);
    evlm_model_free(m);
}

/* The distill step's kl (alpha 0) and hidden (auto map, equal shapes) are the engine's kd and
 * hidden losses: the same loss and gradients (within float rounding). */
static void same_as_kd_case(const char *dir) {
    evlm_model *m = load(dir), *mt = load(dir);
    evlm_tmodel *tm = m ? tnew(m, NTOK, false) : NULL, *te = mt ? tnew(mt, NTOK, true) : NULL;
    if (!tm || !te) goto done;
    perturb(evlm_tmodel_params_of(tm), 41, 1.5f);
    perturb(evlm_tmodel_params_of(te), 42, 2.0f);
    evlm_tparams *tp = evlm_tmodel_params_of(tm);
    float *g0 = malloc(sizeof(float) * tp->n_floats);
    for (int k = 0; k < 2 && g0; k++) {
        evlm_tseq seq[2];
        evlm_tbatch b = batch(seq);
        evlm_tstep s = {k ? EVLM_TLOSS_HIDDEN : EVLM_TLOSS_KD, 2.0f, te, 1.0f, false};
        evlm_tresult r0, r1;
        evlm_tparams_zero_grad(tp);
        CHECK_OK(evlm_tmodel_step(tm, &b, &s, &r0));
        memcpy(g0, tp->g, sizeof(float) * tp->n_floats);
        evlm_distill d = evlm_distill_default();
        d.temperature = 2.0f;
        if (k) {
            d.logit = EVLM_DLOGIT_NONE;
            d.hidden_weight = 1.0f;
        }
        CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
        evlm_tparams_zero_grad(tp);
        CHECK_OK(dstep(tm, te, true, &r1));
        double w = 0, gm = 0;
        for (size_t j = 0; j < tp->n_floats; j++) {
            w = fmax(w, fabs((double)tp->g[j] - (double)g0[j]));
            gm = fmax(gm, fabs((double)g0[j]));
        }
        CHECKF(fabs(r1.loss - r0.loss) <= 1e-5 * r0.loss && w <= 1e-4 * gm && gm > 0,
               "distill %s vs the %s loss: %.9g / %.9g, gradients off by %.3g (max %.3g)",
               k ? "hidden" : "kl", k ? "hidden" : "kd", r1.loss, r0.loss, w, gm);
    }
    free(g0);
done:
    evlm_tmodel_free(te);
    evlm_tmodel_free(tm);
    evlm_model_free(mt);
    evlm_model_free(m);
}

/* Central differences along a random direction of a parameter of tp against g . u. */
static void fd_one(const char *what, evlm_tmodel *tm, evlm_tmodel *te, evlm_tparams *tp,
                   const char *pname) {
    const evlm_tparam *p = evlm_tparams_find(tp, pname);
    CHECKF(p != NULL, "%s: no parameter %s", what, pname);
    if (!p) return;
    float *w = tp->w + p->off, *u = malloc(sizeof(float) * p->n);
    const float *g = tp->g + p->off;
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ p->n;
    double dot = 0, un = 0, gn = 0;
    for (size_t j = 0; j < p->n; j++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        u[j] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
        dot += (double)g[j] * (double)u[j];
        un += (double)u[j] * (double)u[j];
        gn += (double)g[j] * (double)g[j];
    }
    const double h = 2e-3 / sqrt(un / (double)p->n);
    evlm_tresult r;
    for (size_t j = 0; j < p->n; j++) w[j] += (float)h * u[j];
    CHECK_OK(dstep(tm, te, false, &r));
    const double lp = r.loss;
    for (size_t j = 0; j < p->n; j++) w[j] -= 2.0f * (float)h * u[j];
    CHECK_OK(dstep(tm, te, false, &r));
    const double lm = r.loss;
    for (size_t j = 0; j < p->n; j++) w[j] += (float)h * u[j];
    const double fd = (lp - lm) / (2 * h), tol = 2e-2 * sqrt(gn * un) + 1e-6;
    CHECKF(fabs(fd - dot) <= tol && gn > 0,
           "%s: %s: g.u %.6g, finite difference %.6g (tolerance %.3g, |g| %.3g)", what, pname, dot,
           fd, tol, sqrt(gn));
    free(u);
}

static void fd_case(const char *sdir, const char *tdir) {
    evlm_model *ms = load(sdir), *mt = load(tdir);
    evlm_tmodel *tm = ms ? tnew(ms, NTOK, false) : NULL, *te = mt ? tnew(mt, NTOK, true) : NULL;
    if (!tm || !te) goto done;
    perturb(evlm_tmodel_params_of(tm), 21, 2.0f);
    perturb(evlm_tmodel_params_of(te), 22, 2.5f);
    static const dcase cases[] = {{"kl", "kl", 2.0f, 0.3f, 0, 0},
                                  {"rkl", "rkl", 1.5f, 0, 0, 0},
                                  {"jsd:0.25", "jsd:0.25", 2.0f, 0.5f, 0, 0},
                                  {"hidden", NULL, 1.0f, 0, 1.0f, 0},
                                  {"attention", NULL, 1.0f, 0, 0, 1.0f},
                                  {"all", "jsd:0.6", 1.5f, 0.2f, 0.5f, 3.0f}};
    static const char *const names[] = {"model.layers.0.self_attn.q_proj.weight",
                                        "model.layers.0.self_attn.k_proj.weight",
                                        "model.layers.1.self_attn.v_proj.weight",
                                        "model.layers.1.mlp.down_proj.weight",
                                        "model.layers.0.input_layernorm.weight",
                                        "model.norm.weight",
                                        "model.embed_tokens.weight"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        evlm_distill d = desc(&cases[i]);
        if (cases[i].hidden > 0 || cases[i].attn > 0)
            CHECK_OK(evlm_distill_parse_map("0:1,1:2", &d));
        CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
        evlm_tparams *tp = evlm_tmodel_params_of(tm), *pp = evlm_tmodel_distill_params(tm);
        CHECK((cases[i].hidden > 0) == (pp != NULL));
        evlm_tparams_zero_grad(tp);
        if (pp) {
            evlm_tparams_zero_grad(pp);
            perturb(pp, 31, 1.0f); /* away from the identity-like start */
            for (size_t j = 0; j < pp->n_floats; j++) pp->w[j] += 0.05f * sinf((float)j);
        }
        evlm_tresult r;
        CHECK_OK(dstep(tm, te, true, &r));
        printf("fd %-9s loss %.6g (ce %.4g logit %.4g hidden %.4g attn %.4g)\n", cases[i].name,
               r.loss, r.ce, r.logit, r.hidden, r.attn);
        char what[64];
        snprintf(what, sizeof what, "distill %s", cases[i].name);
        /* the norm weights get no gradient from the attention term alone (q, k only) */
        for (int k = 0; k < 7; k++) {
            if (cases[i].attn > 0 && cases[i].hidden == 0 && !cases[i].loss &&
                (k == 2 || k == 3 || k == 5))
                continue; /* layer 1's v and MLP, the final norm do not reach the maps */
            if (cases[i].hidden > 0 && !cases[i].loss && cases[i].attn == 0 && k == 5)
                continue; /* the final norm does not reach the streams */
            fd_one(what, tm, te, tp, names[k]);
        }
        if (pp) {
            fd_one(what, tm, te, pp, "distill.proj.0.weight");
            fd_one(what, tm, te, pp, "distill.proj.1.weight");
        }
    }
done:
    evlm_tmodel_free(te);
    evlm_tmodel_free(tm);
    evlm_model_free(mt);
    evlm_model_free(ms);
}

/* The step's result does not depend on the thread count: 1, 2, 3 threads bitwise equal. */
static void threads_case(const char *sdir, const char *tdir) {
    evlm_model *ms = load(sdir), *mt = load(tdir);
    evlm_tmodel *te = mt ? tnew(mt, NTOK, true) : NULL;
    float *ref = NULL;
    double ref_loss = 0;
    size_t nf = 0;
    if (!ms || !te) goto done;
    perturb(evlm_tmodel_params_of(te), 22, 2.5f);
    for (int th = 1; th <= 3; th++) {
        evlm_tmodel_params p = {th, NTOK, 0, NULL, false};
        evlm_tmodel *tm = NULL;
        CHECK_OK(evlm_tmodel_new(ms, &p, &tm));
        if (!tm) break;
        perturb(evlm_tmodel_params_of(tm), 21, 2.0f);
        static const dcase all = {"all", "jsd:0.6", 1.5f, 0.2f, 0.5f, 3.0f};
        evlm_distill d = desc(&all);
        CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
        evlm_tparams *tp = evlm_tmodel_params_of(tm), *pp = evlm_tmodel_distill_params(tm);
        evlm_tparams_zero_grad(tp);
        if (pp) evlm_tparams_zero_grad(pp);
        evlm_tresult r;
        CHECK_OK(dstep(tm, te, true, &r));
        if (!ref) {
            nf = tp->n_floats + (pp ? pp->n_floats : 0);
            ref = malloc(sizeof(float) * nf);
            memcpy(ref, tp->g, sizeof(float) * tp->n_floats);
            if (pp) memcpy(ref + tp->n_floats, pp->g, sizeof(float) * pp->n_floats);
            ref_loss = r.loss;
        } else {
            bool same = r.loss == ref_loss && !memcmp(ref, tp->g, sizeof(float) * tp->n_floats) &&
                        (!pp || !memcmp(ref + tp->n_floats, pp->g, sizeof(float) * pp->n_floats));
            CHECKF(same, "%d threads: loss %.9g vs %.9g, gradients differ from 1 thread's", th,
                   r.loss, ref_loss);
        }
        evlm_tmodel_free(tm);
    }
done:
    free(ref);
    evlm_tmodel_free(te);
    evlm_model_free(mt);
    evlm_model_free(ms);
}

/* Projections get their gradient even when the student's backward stops above their layer
 * (only the final norm trainable): the same as with everything trainable. */
static void frozen_case(const char *sdir, const char *tdir) {
    evlm_model *ms = load(sdir), *mt = load(tdir);
    evlm_tmodel *tm = ms ? tnew(ms, NTOK, false) : NULL, *te = mt ? tnew(mt, NTOK, true) : NULL;
    if (!tm || !te) goto done;
    perturb(evlm_tmodel_params_of(te), 22, 2.5f);
    evlm_distill d = evlm_distill_default();
    d.logit = EVLM_DLOGIT_NONE;
    d.hidden_weight = 1.0f;
    CHECK_OK(evlm_distill_parse_map("0:1,1:2", &d));
    CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
    evlm_tparams *tp = evlm_tmodel_params_of(tm), *pp = evlm_tmodel_distill_params(tm);
    if (!pp) goto done;
    evlm_tresult r;
    float *g = malloc(sizeof(float) * pp->n_floats);
    evlm_tparams_zero_grad(pp);
    CHECK_OK(dstep(tm, te, true, &r));
    memcpy(g, pp->g, sizeof(float) * pp->n_floats);
    const char *train[] = {"model.norm.weight"};
    int nt = 0;
    CHECK_OK(evlm_tparams_select(tp, train, 1, NULL, 0, &nt));
    evlm_tparams_zero_grad(pp);
    CHECK_OK(dstep(tm, te, true, &r));
    double gm = 0;
    for (size_t j = 0; j < pp->n_floats; j++) gm = fmax(gm, fabs((double)g[j]));
    CHECKF(gm > 0 && !memcmp(g, pp->g, sizeof(float) * pp->n_floats),
           "a frozen student: the projections' gradients differ from a trainable one's");
    free(g);
done:
    evlm_tmodel_free(te);
    evlm_tmodel_free(tm);
    evlm_model_free(mt);
    evlm_model_free(ms);
}

/* A student of other widths trains through the projections: the gradient reaches them and the
 * student, and a few SGD steps on both lower the loss. Also the plan's errors. */
static void train_case(const char *sdir, const char *tdir) {
    evlm_model *ms = load(sdir), *mt = load(tdir);
    evlm_tmodel *tm = ms ? tnew(ms, NTOK, false) : NULL, *te = mt ? tnew(mt, NTOK, true) : NULL;
    if (!tm || !te) goto done;
    perturb(evlm_tmodel_params_of(te), 22, 2.5f);
    evlm_distill d = evlm_distill_default();
    CHECK_OK(evlm_distill_parse_map("0:5", &d));
    d.hidden_weight = 1.0f;
    evlm_status st = evlm_tmodel_plan_distill(tm, te, &d);
    CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), "0:5"), "%d %s", (int)st,
           evlm_last_error());
    evlm_tresult r;
    evlm_tstep s0 = {EVLM_TLOSS_DISTILL, 1.0f, te, 1.0f, false};
    evlm_tseq seq[2];
    evlm_tbatch b = batch(seq);
    evlm_tmodel *fresh = tnew(ms, NTOK, false);
    st = fresh ? evlm_tmodel_step(fresh, &b, &s0, &r) : EVLM_ERR_ARG;
    CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), "plan"), "unplanned: %s",
           evlm_last_error());
    evlm_tmodel_free(fresh);

    d = evlm_distill_default(); /* kl at tau 2, auto map, hidden + attention */
    d.temperature = 2.0f;
    d.alpha = 0.1f;
    d.hidden_weight = 1.0f;
    d.attn_weight = 1.0f;
    CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
    evlm_tparams *tp = evlm_tmodel_params_of(tm), *pp = evlm_tmodel_distill_params(tm);
    CHECK(pp && pp->n == 2 && pp->p[0].shape[0] == 64 && pp->p[0].shape[1] == 48 &&
          !strcmp(pp->p[1].name, "distill.proj.1.weight"));
    CHECK(!evlm_tparams_find(tp, "distill.proj.0.weight"));
    if (!pp) goto done;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: kl + CE + hidden + attention; pass 1: the hidden term alone (through the
         * projections). Steps of gradient descent sized so that the linearized loss drops by 10 %
         * a step (step = 0.1 loss / |g|^2 over the student and the projections together). */
        if (pass == 1) {
            evlm_distill h = d;
            h.logit = EVLM_DLOGIT_NONE;
            h.alpha = 0;
            h.attn_weight = 0;
            CHECK_OK(evlm_tmodel_set_distill(tm, &h));
        }
        double first = 0, last = 0;
        for (int it = 0; it < 6; it++) {
            evlm_tparams_zero_grad(tp);
            evlm_tparams_zero_grad(pp);
            CHECK_OK(dstep(tm, te, true, &r));
            if (it == 0) {
                first = r.loss;
                CHECKF(max_abs(pp) > 1e-6 && (pass == 1 || max_abs(tp) > 1e-6),
                       "the gradient reaches the projections (%.3g) and the student (%.3g)",
                       max_abs(pp), max_abs(tp));
            }
            last = r.loss;
            printf("descent %d.%d: loss %.6f (ce %.4f kl %.4f hidden %.4f attn %.4f)\n", pass, it,
                   r.loss, r.ce, r.logit, r.hidden, r.attn);
            evlm_tparams *sets[2] = {tp, pp};
            double g2 = 0;
            for (int k = 0; k < 2; k++)
                for (size_t j = 0; j < sets[k]->n_floats; j++)
                    g2 += (double)sets[k]->g[j] * (double)sets[k]->g[j];
            const float lr = (float)(0.1 * r.loss / (g2 > 0 ? g2 : 1));
            for (int k = 0; k < 2; k++)
                for (size_t j = 0; j < sets[k]->n_floats; j++) sets[k]->w[j] -= lr * sets[k]->g[j];
        }
        CHECKF(last < 0.9 * first, "pass %d: 6 descent steps: loss %.6f -> %.6f", pass, first,
               last);
    }
    /* a schedule: new scalars, no new term */
    d.alpha = 0.5f;
    CHECK_OK(evlm_tmodel_set_distill(tm, &d));
    d.attn_weight = 0;
    d.hidden_weight = 0;
    CHECK_OK(evlm_tmodel_set_distill(tm, &d));
    d.temperature = 0;
    CHECK(evlm_tmodel_set_distill(tm, &d) == EVLM_ERR_ARG);
done:
    evlm_tmodel_free(te);
    evlm_tmodel_free(tm);
    evlm_model_free(mt);
    evlm_model_free(ms);
}

int main(void) {
    rows_vs_torch();
    maps_vs_torch();
    parse_cases();
    const char *shared = test_shared_dir();
    if (!shared) {
        printf("SKIP the model cases: ../shared (the llama-tiny tokenizer) is absent\n");
        return test_done();
    }
    char tmp[] = "/tmp/evlm_train_distill_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char tok[4200], tdir[4400], sdir[4400];
    snprintf(tok, sizeof tok, "%s/fixtures/llama-tiny", shared);
    const char *tj = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                     "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 3, "
                     "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, "
                     "\"vocab_size\": 680, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": false, "
                     "\"torch_dtype\": \"float32\", \"max_position_embeddings\": 512}";
    const char *sj = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                     "\"hidden_size\": 48, \"intermediate_size\": 80, \"num_hidden_layers\": 2, "
                     "\"num_attention_heads\": 3, \"num_key_value_heads\": 1, \"head_dim\": 16, "
                     "\"vocab_size\": 680, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true, "
                     "\"torch_dtype\": \"float32\", \"max_position_embeddings\": 512}";
    if (synth(tmp, "teacher", tj, tok, 1, tdir, sizeof tdir) &&
        synth(tmp, "student", sj, tok, 2, sdir, sizeof sdir)) {
        self_case(tdir);
        same_as_kd_case(tdir);
        fd_case(sdir, tdir);
        train_case(sdir, tdir);
        threads_case(sdir, tdir);
        frozen_case(sdir, tdir);
    }
    char cmd[4500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("could not remove %s\n", tmp);
    return test_done();
}
