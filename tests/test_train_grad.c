/*
 * test_train_grad.c - the training engine's gradients (src/train: tmodel, tdecoder, loss, qat)
 * against ../shared/fixtures/grad (torch autograd, float32): llama-tiny and smolvlm-tiny, every
 * loss (ce, kd, rkl, hidden, qat_ce), under ref and every x86 kernel table this CPU runs; every
 * tensor within max |g - g_ref| <= 1e-3 max |g_ref| + 1e-6 and the loss within 1e-4 relative
 * (the fixtures' README). Also: a Qwen2 with q/k/v biases (synthesized, random biases) against
 * central finite differences, the same for smolvlm-tiny's text-only sequence, frozen parameters
 * get nothing and leave the rest unchanged, grad_scale halves, two runs and 1 / 2 / 3 threads are
 * bitwise equal, over-long batches and Qwen2-VL are refused with clear messages.
 */
#include "core/file.h"
#include "core/json.h"
#include "evlm_npu.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "test.h"
#include "train/tmodel.h"

#include <stdint.h>
#include <stdlib.h>

static const char *const k_losses[] = {"ce", "kd", "rkl", "hidden", "qat_ce"};

typedef struct tbatch {
    evlm_tseq seq[8];
    int32_t *ids[8];
    uint8_t *target[8];
    float *pixels[8];
    int n_seq, n_tokens, n_tiles;
    float temperature;
    double loss[5], norm[5];
} tbatch;

static void tbatch_free(tbatch *b) {
    for (int s = 0; s < b->n_seq; s++) {
        free(b->ids[s]);
        free(b->target[s]);
        free(b->pixels[s]);
    }
    memset(b, 0, sizeof *b);
}

/* batch.json of a fixture (only_text: the sequences without images) */
static bool load_batch(const char *dir, evlm_model *m, bool only_text, tbatch *b) {
    memset(b, 0, sizeof *b);
    char path[4200];
    snprintf(path, sizeof path, "%s/batch.json", dir);
    cJSON *root;
    CHECK_OK(evlm_json_load(path, &root));
    if (!root) return false;
    const cJSON *seqs = cJSON_GetObjectItem(root, "sequences"), *js;
    b->temperature = (float)cJSON_GetObjectItem(root, "temperature")->valuedouble;
    const cJSON *losses = cJSON_GetObjectItem(root, "losses");
    for (int l = 0; l < 5; l++) {
        const cJSON *o = cJSON_GetObjectItem(losses, k_losses[l]);
        b->loss[l] = cJSON_GetObjectItem(o, "loss")->valuedouble;
        b->norm[l] = cJSON_GetObjectItem(o, "grad_norm")->valuedouble;
    }
    cJSON_ArrayForEach(js, seqs) {
        const cJSON *imgs = cJSON_GetObjectItem(js, "images");
        if (only_text && imgs) continue;
        int s = b->n_seq++, n = cJSON_GetArraySize(cJSON_GetObjectItem(js, "ids")), i = 0;
        b->ids[s] = malloc(sizeof(int32_t) * (size_t)n);
        b->target[s] = calloc((size_t)n, 1);
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(js, "ids")) b->ids[s][i++] = it->valueint;
        for (int t = cJSON_GetObjectItem(js, "loss_from")->valueint; t < n - 1; t++)
            b->target[s][t] = 1;
        b->seq[s] = (evlm_tseq){b->ids[s], n, b->target[s], NULL, NULL, 0};
        if (imgs) {
            char ip[4400];
            snprintf(ip, sizeof ip, "%s/%s", dir, cJSON_GetArrayItem(imgs, 0)->valuestring);
            evlm_image_input in = {.path = ip};
            int tile;
            CHECK_OK(evlm_onnx_image_pixels(m, &in, &b->pixels[s], &b->seq[s].n_tiles, &tile));
            b->seq[s].pixels = b->pixels[s];
            b->n_tiles += b->seq[s].n_tiles;
        }
        b->n_tokens += n;
    }
    cJSON_Delete(root);
    return true;
}

static evlm_model *load(const char *dir) {
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = 2;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(dir, &mp, &m));
    return m;
}

static evlm_tmodel *tnew_as(evlm_model *m, const tbatch *b, const evlm_kernels *k, int threads,
                            bool forward_only) {
    evlm_tmodel_params p = {threads, b->n_tokens, b->n_tiles, k, forward_only};
    evlm_tmodel *tm = NULL;
    CHECK_OK(evlm_tmodel_new(m, &p, &tm));
    return tm;
}

static evlm_tmodel *tnew(evlm_model *m, const tbatch *b, const evlm_kernels *k, int threads) {
    return tnew_as(m, b, k, threads, false);
}

/* a teacher: weights only */
static evlm_tmodel *tnew_teacher(evlm_model *m, const tbatch *b, const evlm_kernels *k) {
    evlm_tmodel *t = tnew_as(m, b, k, 2, true);
    if (t) CHECK(evlm_tmodel_params_of(t)->g == NULL);
    return t;
}

static evlm_status step(evlm_tmodel *tm, evlm_tmodel *teacher, const tbatch *b, int loss,
                        float scale, evlm_tresult *r) {
    evlm_tstep s = {(evlm_tloss)loss, b->temperature, teacher, scale, false};
    evlm_tbatch tb = {b->seq, b->n_seq};
    return evlm_tmodel_step(tm, &tb, &s, r);
}

static double max_abs_d(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

/* Every tensor of ref against the gradients; returns the worst error / allowed ratio. */
static double compare_ref(const evlm_tparams *tp, const char *ref_path, const char *what) {
    evlm_weights *ref;
    CHECK_OK(evlm_weights_open(ref_path, &ref));
    if (!ref) return INFINITY;
    double worst = 0;
    for (size_t i = 0; i < evlm_weights_count(ref); i++) {
        const evlm_tensor *t = evlm_weights_at(ref, i);
        const evlm_tparam *p = evlm_tparams_find(tp, t->name);
        CHECKF(p && p->n == (size_t)evlm_tensor_nelements(t), "%s: %s missing or mis-sized", what,
               t->name);
        if (!p || p->n != (size_t)evlm_tensor_nelements(t)) continue;
        const float *r = t->data, *g = tp->g + p->off;
        double rmax = max_abs_d(r, p->n), err = 0;
        for (size_t j = 0; j < p->n; j++)
            if (fabs((double)g[j] - (double)r[j]) > err) err = fabs((double)g[j] - (double)r[j]);
        double allowed = 1e-3 * rmax + 1e-6;
        CHECKF(err <= allowed, "%s: %s: max error %.3g, allowed %.3g", what, t->name, err, allowed);
        if (err / allowed > worst) worst = err / allowed;
    }
    evlm_weights_free(ref);
    return worst;
}

static double grad_norm(const evlm_tparams *tp) {
    double s = 0;
    for (size_t i = 0; i < tp->n_floats; i++) s += (double)tp->g[i] * (double)tp->g[i];
    return sqrt(s);
}

/* The fixture dir: every loss under kernel table k. */
static void fixture_case(const char *name, const char *gdir, evlm_model *m, evlm_model *tm_model,
                         const tbatch *b, const evlm_kernels *k) {
    evlm_tmodel *tm = tnew(m, b, k, 2), *te = tnew_teacher(tm_model, b, k);
    if (!tm || !te) goto done;
    for (int l = 0; l < 5; l++) {
        char what[256], ref[4400];
        snprintf(what, sizeof what, "%s %s [%s]", name, k_losses[l], k->name);
        evlm_tparams *tp = evlm_tmodel_params_of(tm);
        evlm_tparams_zero_grad(tp);
        evlm_tresult r;
        evlm_status st = step(tm, te, b, l, 1.0f, &r);
        CHECKF(st == EVLM_OK, "%s: %s", what, evlm_last_error());
        if (st != EVLM_OK) continue;
        CHECKF(fabs(r.loss - b->loss[l]) <= 1e-4 * fabs(b->loss[l]), "%s: loss %.9g, torch %.9g",
               what, r.loss, b->loss[l]);
        double gn = grad_norm(tp);
        CHECKF(fabs(gn - b->norm[l]) <= 1e-3 * b->norm[l], "%s: grad norm %.9g, torch %.9g", what,
               gn, b->norm[l]);
        snprintf(ref, sizeof ref, "%s/grads_%s.safetensors", gdir, k_losses[l]);
        double worst = compare_ref(tp, ref, what);
        printf("%-32s loss %.7f (torch %.7f)  worst error %.3f of tolerance\n", what, r.loss,
               b->loss[l], worst);
    }
done:
    evlm_tmodel_free(te);
    evlm_tmodel_free(tm);
}

/* Central differences of the loss along a random direction u of each tensor named: the
 * directional derivative g . u against (L(w + h u) - L(w - h u)) / 2h. */
static void fd_check(const char *what, evlm_tmodel *tm, evlm_tmodel *te, const tbatch *b, int loss,
                     const char *const *names, int n_names) {
    evlm_tparams *tp = evlm_tmodel_params_of(tm);
    evlm_tresult r;
    evlm_tparams_zero_grad(tp);
    CHECK_OK(step(tm, te, b, loss, 1.0f, &r));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_names; i++) {
        const evlm_tparam *p = evlm_tparams_find(tp, names[i]);
        CHECKF(p != NULL, "%s: no parameter %s", what, names[i]);
        if (!p) continue;
        float *w = tp->w + p->off, *u = malloc(sizeof(float) * p->n);
        const float *g = tp->g + p->off;
        double dot = 0, wn = 0, gn = 0;
        for (size_t j = 0; j < p->n; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            u[j] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
            dot += (double)g[j] * (double)u[j];
            wn += (double)u[j] * (double)u[j];
            gn += (double)g[j] * (double)g[j];
        }
        const double h = 2e-3 / sqrt(wn / (double)p->n); /* ~2e-3 per element */
        double lp, lm;
        evlm_tstep s = {(evlm_tloss)loss, b->temperature, te, 1.0f, true};
        evlm_tbatch tb = {b->seq, b->n_seq};
        for (size_t j = 0; j < p->n; j++) w[j] += (float)h * u[j];
        CHECK_OK(evlm_tmodel_step(tm, &tb, &s, &r));
        lp = r.loss;
        for (size_t j = 0; j < p->n; j++) w[j] -= 2.0f * (float)h * u[j];
        CHECK_OK(evlm_tmodel_step(tm, &tb, &s, &r));
        lm = r.loss;
        for (size_t j = 0; j < p->n; j++) w[j] += (float)h * u[j];
        double fd = (lp - lm) / (2 * h), tol = 2e-2 * sqrt(gn * wn) + 1e-4;
        CHECKF(fabs(fd - dot) <= tol, "%s: %s: g.u %.6g, finite difference %.6g (tolerance %.3g)",
               what, names[i], dot, fd, tol);
        free(u);
    }
}

/* Two sequences of 90 and 70 random ids below 680, 157 targets: more than one block of the
 * head's rows. */
static void random_batch(tbatch *bp) {
    tbatch b = {0};
    static int32_t ids[160];
    static uint8_t tg[160];
    uint64_t rs = 7;
    for (int i = 0; i < 160; i++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((rs >> 33) % 680);
        tg[i] = i != 89 && i != 159 && i != 5;
    }
    b.seq[0] = (evlm_tseq){ids, 90, tg, NULL, NULL, 0};
    b.seq[1] = (evlm_tseq){ids + 90, 70, tg + 90, NULL, NULL, 0};
    b.n_seq = 2;
    b.n_tokens = 160;
    b.temperature = 2.0f;
    *bp = b;
}

/* kd / rkl between models of different widths (a random student of width 96 and 1 layer,
 * llama-tiny as the teacher), 157 targets: the losses against ones computed here in double
 * from both models' inference logits (evlm_decode). */
static void teacher_shape_case(const char *llama, const char *tmp) {
    char cfg[4400], dir[4400];
    snprintf(cfg, sizeof cfg, "%s/wide.json", tmp);
    snprintf(dir, sizeof dir, "%s/wide", tmp);
    const char *cj = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                     "\"hidden_size\": 96, \"intermediate_size\": 160, \"num_hidden_layers\": 1, "
                     "\"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 16, "
                     "\"vocab_size\": 680, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true, "
                     "\"torch_dtype\": \"float32\", \"max_position_embeddings\": 512}";
    CHECK_OK(evlm_write_file_atomic(cfg, cj, strlen(cj)));
    evlm_synth_params sp = evlm_synth_default_params();
    sp.config = cfg;
    sp.out_dir = dir;
    sp.dtype = "f32";
    sp.tokenizer_dir = llama;
    sp.seed = 3;
    CHECK_OK(evlm_model_synth(&sp, NULL, NULL));
    /* the student is the wide random model, the teacher llama-tiny (its logits far from
     * uniform, so a teacher row read at the student's width would show) */
    evlm_model *s = load(dir), *t = load(llama), *si = NULL, *ti = NULL;
    CHECK_OK(evlm_model_load(dir, NULL, &si));
    CHECK_OK(evlm_model_load(llama, NULL, &ti));
    tbatch b;
    random_batch(&b);
    evlm_tmodel *ts = s ? tnew(s, &b, NULL, 2) : NULL, *tt = t ? tnew_teacher(t, &b, NULL) : NULL;
    if (!ts || !tt || !si || !ti) goto done;
    const int V = 680;
    float *zs = malloc(sizeof(float) * 90 * V), *zt = malloc(sizeof(float) * 90 * V);
    for (int l = EVLM_TLOSS_KD; l <= EVLM_TLOSS_RKL; l++) {
        double ref = 0;
        int nt = 0;
        for (int q = 0; q < b.n_seq; q++) {
            const evlm_tseq *sq = &b.seq[q];
            evlm_model *ms[2] = {si, ti};
            float *zz[2] = {zs, zt};
            for (int w = 0; w < 2; w++) {
                evlm_context_params cp = evlm_context_default_params();
                cp.n_ctx = sq->n;
                evlm_context *c = NULL;
                CHECK_OK(evlm_context_new(ms[w], &cp, &c));
                if (c) CHECK_OK(evlm_decode(c, sq->ids, sq->n, zz[w], true));
                evlm_context_free(c);
            }
            for (int r = 0; r < sq->n - 1; r++) {
                if (!sq->target[r]) continue;
                const float *a = zs + (size_t)r * V, *c = zt + (size_t)r * V;
                double ma = -1e300, mc = -1e300, sa = 0, sc = 0, kl = 0;
                for (int j = 0; j < V; j++) {
                    ma = fmax(ma, (double)a[j] / 2.0);
                    mc = fmax(mc, (double)c[j] / 2.0);
                }
                for (int j = 0; j < V; j++) {
                    sa += exp((double)a[j] / 2.0 - ma);
                    sc += exp((double)c[j] / 2.0 - mc);
                }
                for (int j = 0; j < V; j++) {
                    double la = (double)a[j] / 2.0 - ma - log(sa),
                           lc = (double)c[j] / 2.0 - mc - log(sc);
                    kl += l == EVLM_TLOSS_KD ? exp(lc) * (lc - la) : exp(la) * (la - lc);
                }
                ref += 4.0 * kl;
                nt++;
            }
        }
        ref /= nt;
        evlm_tresult r;
        evlm_tstep st = {(evlm_tloss)l, 2.0f, tt, 1.0f, true};
        CHECK_OK(evlm_tmodel_step(ts, &(evlm_tbatch){b.seq, b.n_seq}, &st, &r));
        CHECKF(r.n_targets == nt && fabs(r.loss - ref) <= 1e-4 * ref + 1e-6,
               "%s with a narrower teacher: %.9g, from the inference logits %.9g (%d / %d targets)",
               k_losses[l], r.loss, ref, r.n_targets, nt);
    }
    free(zs);
    free(zt);
done:
    evlm_tmodel_free(tt);
    evlm_tmodel_free(ts);
    evlm_model_free(si);
    evlm_model_free(ti);
    evlm_model_free(s);
    evlm_model_free(t);
}

static void qwen2_case(const char *llama, const char *tmp) {
    char cfg[4400], dir[4400];
    snprintf(cfg, sizeof cfg, "%s/qwen2.json", tmp);
    snprintf(dir, sizeof dir, "%s/qwen2", tmp);
    const char *cj = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", "
                     "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2, "
                     "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, "
                     "\"vocab_size\": 680, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, "
                     "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\"}";
    CHECK_OK(evlm_write_file_atomic(cfg, cj, strlen(cj)));
    evlm_synth_params sp = evlm_synth_default_params();
    sp.config = cfg;
    sp.out_dir = dir;
    sp.dtype = "f32";
    sp.tokenizer_dir = llama;
    CHECK_OK(evlm_model_synth(&sp, NULL, NULL));
    evlm_model *m = load(dir);
    if (!m) return;
    tbatch b;
    random_batch(&b);
    evlm_tmodel *tm = tnew(m, &b, NULL, 2);
    if (tm) {
        /* random biases (synth writes zeros) and norm weights, so their use is visible */
        evlm_tparams *tp = evlm_tmodel_params_of(tm);
        uint64_t seed = 42;
        for (int i = 0; i < tp->n; i++)
            if (strstr(tp->p[i].name, ".bias") || strstr(tp->p[i].name, "norm"))
                for (size_t j = 0; j < tp->p[i].n; j++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    float r = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
                    tp->w[tp->p[i].off + j] += strstr(tp->p[i].name, ".bias") ? 0.5f * r : 0.3f * r;
                }
        CHECK(evlm_tparams_find(tp, "model.layers.0.self_attn.q_proj.bias") != NULL);
        static const char *const names[] = {"model.layers.0.self_attn.q_proj.bias",
                                            "model.layers.0.self_attn.k_proj.bias",
                                            "model.layers.1.self_attn.v_proj.bias",
                                            "model.layers.0.self_attn.q_proj.weight",
                                            "model.layers.1.mlp.down_proj.weight",
                                            "model.layers.0.input_layernorm.weight",
                                            "model.norm.weight",
                                            "lm_head.weight",
                                            "model.embed_tokens.weight"};
        fd_check("qwen2 ce", tm, NULL, &b, EVLM_TLOSS_CE, names, 9);
    }
    evlm_tmodel_free(tm);
    evlm_model_free(m);
}

/* Freezing: the frozen tensors get exactly nothing, the others what a full run gives. */
static void freeze_case(evlm_model *m, const tbatch *b) {
    evlm_tmodel *tm = tnew(m, b, NULL, 2);
    if (!tm) return;
    evlm_tparams *tp = evlm_tmodel_params_of(tm);
    evlm_tresult r;
    evlm_tparams_zero_grad(tp);
    CHECK_OK(step(tm, NULL, b, EVLM_TLOSS_CE, 1.0f, &r));
    float *full = malloc(sizeof(float) * tp->n_floats);
    memcpy(full, tp->g, sizeof(float) * tp->n_floats);
    /* bitwise repeatable */
    evlm_tparams_zero_grad(tp);
    CHECK_OK(step(tm, NULL, b, EVLM_TLOSS_CE, 1.0f, &r));
    CHECK(memcmp(full, tp->g, sizeof(float) * tp->n_floats) == 0);
    /* grad_scale: half the gradient */
    evlm_tparams_zero_grad(tp);
    CHECK_OK(step(tm, NULL, b, EVLM_TLOSS_CE, 0.5f, &r));
    double worst = 0;
    for (size_t i = 0; i < tp->n_floats; i++) {
        double e = fabs((double)tp->g[i] - 0.5 * (double)full[i]);
        if (e > worst) worst = e;
    }
    CHECKF(worst < 1e-5, "grad_scale 0.5: off by %g", worst);
    /* the thread count changes nothing (1, 2, 3 workers: bitwise) */
    for (int threads = 1; threads <= 3; threads += 2) {
        evlm_tmodel *t2 = tnew(m, b, NULL, threads);
        if (!t2) break;
        evlm_tparams *p2 = evlm_tmodel_params_of(t2);
        evlm_tparams_zero_grad(p2);
        CHECK_OK(step(t2, NULL, b, EVLM_TLOSS_CE, 1.0f, &r));
        CHECKF(memcmp(full, p2->g, sizeof(float) * tp->n_floats) == 0,
               "%d threads: other gradients than 2 threads", threads);
        evlm_tmodel_free(t2);
    }
    const char *freeze[] = {"*.mlp.*", "*norm*"};
    int n_train = 0;
    CHECK_OK(evlm_tparams_select(tp, NULL, 0, freeze, 2, &n_train));
    CHECK(n_train > 0 && n_train < tp->n);
    evlm_tparams_zero_grad(tp);
    CHECK_OK(step(tm, NULL, b, EVLM_TLOSS_CE, 1.0f, &r));
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        bool same = true, zero = true;
        for (size_t j = 0; j < p->n; j++) {
            same &= tp->g[p->off + j] == full[p->off + j];
            zero &= tp->g[p->off + j] == 0.0f;
        }
        if (p->trainable)
            CHECKF(same, "freezing others changed the gradient of %s", p->name);
        else
            CHECKF(zero, "frozen %s got a gradient", p->name);
    }
    /* only the last layer: the walk stops above layer 0, its gradients still the full run's */
    const char *last[] = {"*layers.1.*"};
    CHECK_OK(evlm_tparams_select(tp, last, 1, NULL, 0, &n_train));
    evlm_tparams_zero_grad(tp);
    CHECK_OK(step(tm, NULL, b, EVLM_TLOSS_CE, 1.0f, &r));
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        bool ok = true;
        for (size_t j = 0; j < p->n; j++)
            ok &= tp->g[p->off + j] == (p->trainable ? full[p->off + j] : 0.0f);
        CHECKF(ok, "training layer 1 only: %s (trainable %d) differs", p->name, p->trainable);
    }
    /* a forward-only model has no backward, and nothing to select */
    evlm_tmodel *fo = tnew_as(m, b, NULL, 1, true);
    if (fo) {
        evlm_status st = step(fo, NULL, b, EVLM_TLOSS_CE, 1.0f, &r);
        CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), "no_backward"), "status %d: %s",
               (int)st, evlm_last_error());
        evlm_tstep ev = {EVLM_TLOSS_CE, 1.0f, NULL, 1.0f, true};
        evlm_tresult r2;
        CHECK_OK(evlm_tmodel_step(fo, &(evlm_tbatch){b->seq, b->n_seq}, &ev, &r2));
        CHECK(fabs(r2.loss - b->loss[EVLM_TLOSS_CE]) <= 1e-4 * b->loss[EVLM_TLOSS_CE]);
        CHECK(evlm_tparams_select(evlm_tmodel_params_of(fo), NULL, 0, NULL, 0, NULL) ==
              EVLM_ERR_ARG);
        evlm_tmodel_free(fo);
    }
    const char *none[] = {"nothing.matches"};
    CHECK(evlm_tparams_select(tp, none, 1, NULL, 0, &n_train) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "nothing.matches") != NULL);
    free(full);
    evlm_tmodel_free(tm);
    /* a sequence longer than the model's context (llama-tiny: 512 positions) */
    {
        static int32_t ids[600];
        static uint8_t tg[600];
        for (int i = 0; i < 600; i++) ids[i] = 1 + i % 300, tg[i] = 1;
        tbatch lb = {0};
        lb.seq[0] = (evlm_tseq){ids, 600, tg, NULL, NULL, 0};
        lb.n_seq = 1;
        lb.n_tokens = 600;
        evlm_tmodel *tl = tnew(m, &lb, NULL, 1);
        evlm_status st = tl ? step(tl, NULL, &lb, EVLM_TLOSS_CE, 1.0f, &r) : EVLM_OK;
        CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), "context (512)"), "status %d: %s",
               (int)st, evlm_last_error());
        evlm_tmodel_free(tl);
    }
    /* a batch beyond max_tokens */
    tbatch small = *b;
    small.n_tokens = b->seq[0].n;
    tm = tnew(m, &small, NULL, 1);
    if (tm) {
        evlm_status st = step(tm, NULL, b, EVLM_TLOSS_CE, 1.0f, &r);
        CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), "max_tokens"), "status %d: %s",
               (int)st, evlm_last_error());
    }
    evlm_tmodel_free(tm);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char tmp[] = "/tmp/evlm_train_grad_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    const char *const tables[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    static const char *const fixtures[] = {"llama-tiny", "smolvlm-tiny"};
    char llama_dir[4200];
    snprintf(llama_dir, sizeof llama_dir, "%s/fixtures/llama-tiny", shared);
    for (int f = 0; f < 2; f++) {
        char dir[4200], gdir[4200], tdir[4300];
        snprintf(dir, sizeof dir, "%s/fixtures/%s", shared, fixtures[f]);
        snprintf(gdir, sizeof gdir, "%s/fixtures/grad/%s", shared, fixtures[f]);
        snprintf(tdir, sizeof tdir, "%s/teacher", gdir);
        evlm_model *m = load(dir), *te = load(tdir);
        tbatch b;
        if (!m || !te || !load_batch(gdir, m, false, &b)) return test_done();
        CHECK(f == 0 || b.n_tiles == 5); /* smolvlm-tiny: 4 tiles and the global image */
        for (size_t k = 0; k < sizeof tables / sizeof *tables; k++) {
            const evlm_kernels *kt = evlm_kernels_by_name(tables[k]);
            if (!kt) {
                printf("%s: kernel table %s not on this CPU\n", fixtures[f], tables[k]);
                continue;
            }
            fixture_case(fixtures[f], gdir, m, te, &b, kt);
        }
        if (f == 0) freeze_case(m, &b);
        if (f == 1) { /* the text-only sequence against finite differences, every loss */
            tbatch tb;
            if (load_batch(gdir, m, true, &tb)) {
                evlm_tmodel *tm = tnew(m, &tb, NULL, 2), *tt = tnew_teacher(te, &tb, NULL);
                static const char *const names[] = {
                    "model.text_model.layers.0.self_attn.k_proj.weight",
                    "model.text_model.layers.1.mlp.gate_proj.weight",
                    "model.text_model.layers.1.post_attention_layernorm.weight",
                    "model.text_model.embed_tokens.weight"};
                for (int l = 0; tm && tt && l < 4; l++) {
                    char what[64];
                    snprintf(what, sizeof what, "smolvlm text %s", k_losses[l]);
                    fd_check(what, tm, tt, &tb, l, names, l == EVLM_TLOSS_HIDDEN ? 3 : 4);
                }
                evlm_tmodel_free(tt);
                evlm_tmodel_free(tm);
                tbatch_free(&tb);
            }
        }
        tbatch_free(&b);
        evlm_model_free(te);
        evlm_model_free(m);
    }
    qwen2_case(llama_dir, tmp);
    teacher_shape_case(llama_dir, tmp);

    /* Qwen2-VL is refused with a clear message */
    char qdir[4200];
    snprintf(qdir, sizeof qdir, "%s/fixtures/qwen2vl-tiny", shared);
    evlm_model *q = load(qdir);
    if (q) {
        evlm_tmodel_params p = {1, 16, 0, NULL, false};
        evlm_tmodel *tm = NULL;
        evlm_status st = evlm_tmodel_new(q, &p, &tm);
        CHECKF(st == EVLM_ERR_UNSUPPORTED && strstr(evlm_last_error(), "Qwen2-VL") && !tm,
               "status %d: %s", (int)st, evlm_last_error());
        evlm_model_free(q);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_done();
}
