/*
 * test_train_lowrank.c - training through low-rank factored decoder matrices (src/train/
 * tdecoder.c: y = B (A x) + b, and y = W x + b + B (A x) beside a dense W) on llama-tiny
 * (../shared/fixtures):
 *   - full rank, exactly: four matrices of the fixture factored as A = I, B = W (in <= out) or
 *     A = W, B = I (out < in), one more in the compensation form (W kept, A [4, in] and
 *     B [out, 4] random), the rest dense; the reference is the dense model whose weight of the
 *     compensated matrix is W + B A (float32 of a double sum): the same function, so the CE
 *     loss equals the reference's within 1e-5 relative, every shared parameter's gradient
 *     (the compensated W's included) equals the reference's, and the factors' gradients equal
 *     the chain rule of the reference's gradient G of the matrix: dB = G A^T, dA = B^T G
 *     (computed here in double), each within max |g - g_ref| <= 1e-5 max |g_ref| + 1e-8
 *     (float32 sums in another association; measured: at most 1.1e-6 of max |g_ref| under
 *     every kernel table);
 *   - low rank: evlm_lowrank at rank 8 with one layer's MLP kept dense (a mix) trains: the CE
 *     loss falls over 6 AdamW updates, --freeze-style globs leave A's gradients at zero while B
 *     learns, and the folder it exports (factors under their names, no dense weight) loads in
 *     the runtime with logits equal to the training forward's within 1e-4 * (max - min) of the
 *     logits (test_train_qat's bound), which differ from the untrained file's;
 *   - hidden-state distillation of the rank-8 student from the dense teacher runs and its loss
 *     falls; QAT (configured and the qat_ce loss) is refused with a message naming the factors.
 */
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "evlm_compress.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/model.h"
#include "test.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/distill.h"
#include "train/tmodel.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tmp[] = "/tmp/evlm_trlr_XXXXXX";

/* ---- batches -------------------------------------------------------------------------------- */

typedef struct seqs {
    evlm_tseq s[4];
    int32_t *ids[4];
    uint8_t *tg[4];
    int n;
} seqs;

static void seqs_free(seqs *q) {
    for (int i = 0; i < q->n; i++) {
        free(q->ids[i]);
        free(q->tg[i]);
    }
    memset(q, 0, sizeof *q);
}

/* the fixture's prompts, input + greedy ids, every position a target */
static void llama_seqs(const char *dir, seqs *q) {
    char path[4400];
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *root = NULL;
    CHECK_OK(evlm_json_load(path, &root));
    const cJSON *pr;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(root, "prompts")) {
        if (q->n == 4) break;
        int32_t ids[256];
        int n = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "input_ids")) ids[n++] = x->valueint;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "greedy_ids")) ids[n++] = x->valueint;
        int i = q->n++;
        q->ids[i] = malloc(sizeof(int32_t) * (size_t)n);
        q->tg[i] = malloc((size_t)n);
        memcpy(q->ids[i], ids, sizeof(int32_t) * (size_t)n);
        memset(q->tg[i], 1, (size_t)n);
        q->s[i] = (evlm_tseq){.ids = q->ids[i], .n = n, .target = q->tg[i]};
    }
    cJSON_Delete(root);
}

/* ---- model folders -------------------------------------------------------------------------- */

static void copy_side_files(const char *from, const char *to) {
    static const char *const files[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                        "generation_config.json"};
    char a[4400], b[4400];
    evlm_mkdir(to);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(a, sizeof a, "%s/%s", from, files[i]);
        snprintf(b, sizeof b, "%s/%s", to, files[i]);
        char *data;
        size_t len;
        if (evlm_read_file(a, 1 << 26, &data, &len) != EVLM_OK) continue;
        CHECK_OK(evlm_write_file_atomic(b, data, len));
        free(data);
    }
}

static evlm_model *load(const char *path, bool keep_layout) {
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 2;
    mp.keep_layout = keep_layout;
    mp.f32_act = true;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(path, &mp, &m));
    return m;
}

static evlm_tmodel *tmodel_of(evlm_model *m) {
    evlm_tmodel_params tpar = {.n_threads = 2, .max_tokens = 256};
    evlm_tmodel *tm = NULL;
    if (m) CHECK_OK(evlm_tmodel_new(m, &tpar, &tm));
    return tm;
}

/* the matrices factored exactly: stem under "model.layers." and the form */
typedef struct fact {
    const char *stem;
    bool comp; /* W kept, A random [4, in], B random [out, 4] */
} fact;

static const fact k_fact[] = {
    {"0.self_attn.q_proj", false}, /* 64 x 64: A = I, B = W */
    {"0.mlp.down_proj", false},    /* out 64 < in 160: A = W, B = I */
    {"1.mlp.gate_proj", false},    /* out 160 > in 64: A = I, B = W */
    {"1.self_attn.k_proj", false}, /* out 32 < in 64: A = W, B = I */
    {"1.self_attn.o_proj", true},
};
#define N_FACT (int)(sizeof k_fact / sizeof *k_fact)

static uint64_t rng = 88172645463325252ull;
static float urand(void) { /* xorshift, [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

static evlm_tensor f32_view(const char *name, float *data, int64_t rows, int64_t cols) {
    evlm_tensor v;
    memset(&v, 0, sizeof v);
    v.name = name;
    v.type = EVLM_TYPE_F32;
    v.n_dims = 2;
    v.ne[0] = cols;
    v.ne[1] = rows;
    v.ne[2] = v.ne[3] = 1;
    v.data = data;
    evlm_tensor_set_contiguous(&v);
    return v;
}

/* dir = the fixture with k_fact's matrices factored at full rank, and the compensated one with
 * random A [4, in], B [out, 4] beside its W; ref = the fixture with that matrix's weight
 * W + B A (float32 of a double sum), the dense model of the same function. W: the widened
 * weights of the fixture's parameters. */
static void write_models(const char *fixture, const evlm_tparams *dense, const char *dir,
                         const char *ref) {
    evlm_weights *ws = NULL;
    CHECK_OK(evlm_weights_open(fixture, &ws));
    if (!ws) return;
    const size_t nw = evlm_weights_count(ws);
    evlm_tensor *t = calloc(nw + 2 * N_FACT, sizeof *t), *tr = calloc(nw, sizeof *tr);
    char names[2 * N_FACT][160];
    float *bufs[3 * N_FACT] = {0};
    size_t n = 0;
    for (size_t i = 0; i < nw; i++) {
        const evlm_tensor *w = evlm_weights_at(ws, i);
        tr[i] = *w;
        bool drop = false;
        for (int f = 0; f < N_FACT; f++) {
            char wn[160];
            snprintf(wn, sizeof wn, "model.layers.%s.weight", k_fact[f].stem);
            drop |= !k_fact[f].comp && !strcmp(w->name, wn);
        }
        if (!drop) t[n++] = *w;
    }
    for (int f = 0; f < N_FACT; f++) {
        char wn[160];
        snprintf(wn, sizeof wn, "model.layers.%s.weight", k_fact[f].stem);
        const evlm_tparam *p = evlm_tparams_find(dense, wn);
        CHECK(p != NULL);
        if (!p) continue;
        const int64_t out = p->shape[0], in = p->shape[1];
        const float *W = dense->w + p->off;
        int64_t r = out < in ? out : in;
        if (k_fact[f].comp) r = 4;
        float *A = calloc((size_t)(r * in), sizeof(float));
        float *B = calloc((size_t)(out * r), sizeof(float));
        if (k_fact[f].comp) {
            for (int64_t e = 0; e < r * in; e++) A[e] = 0.2f * urand();
            for (int64_t e = 0; e < out * r; e++) B[e] = 0.2f * urand();
            float *Wr = malloc(sizeof(float) * (size_t)(out * in));
            for (int64_t o = 0; o < out; o++)
                for (int64_t j = 0; j < in; j++) {
                    double acc = W[o * in + j];
                    for (int64_t k = 0; k < r; k++)
                        acc += (double)B[o * r + k] * (double)A[k * in + j];
                    Wr[o * in + j] = (float)acc;
                }
            bufs[2 * N_FACT + f] = Wr;
            for (size_t i = 0; i < nw; i++)
                if (!strcmp(tr[i].name, wn)) tr[i] = f32_view(tr[i].name, Wr, out, in);
        } else if (in <= out) {
            for (int64_t e = 0; e < in; e++) A[e * in + e] = 1.0f;
            memcpy(B, W, sizeof(float) * (size_t)(out * in));
        } else {
            memcpy(A, W, sizeof(float) * (size_t)(out * in));
            for (int64_t e = 0; e < out; e++) B[e * out + e] = 1.0f;
        }
        snprintf(names[2 * f], 160, "model.layers.%s.lowrank_a", k_fact[f].stem);
        snprintf(names[2 * f + 1], 160, "model.layers.%s.lowrank_b", k_fact[f].stem);
        bufs[2 * f] = A;
        bufs[2 * f + 1] = B;
        t[n++] = f32_view(names[2 * f], A, r, in);
        t[n++] = f32_view(names[2 * f + 1], B, out, r);
    }
    char path[4400];
    copy_side_files(fixture, dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(evlm_safetensors_write(path, t, n));
    copy_side_files(fixture, ref);
    snprintf(path, sizeof path, "%s/model.safetensors", ref);
    CHECK_OK(evlm_safetensors_write(path, tr, nw));
    for (int i = 0; i < 3 * N_FACT; i++) free(bufs[i]);
    free(t);
    free(tr);
    evlm_weights_free(ws);
}

/* max |g - ref| and max |ref| */
static void gdiff(const float *g, const double *ref, size_t n, double *d, double *mx) {
    *d = 0;
    *mx = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)g[i] - ref[i]);
        *d = e > *d || e != e ? e : *d;
        *mx = fmax(*mx, fabs(ref[i]));
    }
}

static int ce_step(evlm_tmodel *tm, const seqs *q, double *loss) {
    evlm_tparams_zero_grad(evlm_tmodel_params_of(tm));
    evlm_tbatch b = {q->s, q->n};
    evlm_tstep st = {.loss = EVLM_TLOSS_CE, .grad_scale = 1.0f};
    evlm_tresult r;
    evlm_status s = evlm_tmodel_step(tm, &b, &st, &r);
    CHECK_OK(s);
    *loss = r.loss;
    return s == EVLM_OK;
}

static void test_full_rank(const char *fixture, const seqs *q) {
    char dir[600], ref[600];
    snprintf(dir, sizeof dir, "%s/full", g_tmp);
    snprintf(ref, sizeof ref, "%s/full_ref", g_tmp);
    {
        evlm_model *mf = load(fixture, true);
        evlm_tmodel *tf = tmodel_of(mf);
        if (tf) write_models(fixture, evlm_tmodel_params_of(tf), dir, ref);
        evlm_tmodel_free(tf);
        evlm_model_free(mf);
    }
    evlm_model *m0 = load(ref, true);
    evlm_tmodel *t0 = tmodel_of(m0);
    if (!t0) goto done0;
    const evlm_tparams *p0 = evlm_tmodel_params_of(t0);
    evlm_model *m1 = load(dir, true);
    evlm_tmodel *t1 = tmodel_of(m1);
    double l0 = 0, l1 = 0;
    if (!t1 || !ce_step(t0, q, &l0) || !ce_step(t1, q, &l1)) goto done1;
    const evlm_tparams *p1 = evlm_tmodel_params_of(t1);
    printf("full rank: loss %.9g, dense %.9g\n", l1, l0);
    CHECKF(fabs(l1 - l0) <= 1e-5 * fabs(l0), "loss %.9g vs the dense model's %.9g", l1, l0);
    /* every parameter both models have: the same gradient */
    int shared = 0;
    double worst = 0;
    for (int i = 0; i < p1->n; i++) {
        const evlm_tparam *a = &p1->p[i], *b = evlm_tparams_find(p0, a->name);
        if (!b) continue;
        double *gr = malloc(sizeof(double) * b->n), d, mx;
        for (size_t e = 0; e < b->n; e++) gr[e] = p0->g[b->off + e];
        gdiff(p1->g + a->off, gr, a->n, &d, &mx);
        CHECKF(a->n == b->n && d <= 1e-5 * mx + 1e-8, "%s: max |g - g_dense| %.3g (max %.3g)",
               a->name, d, mx);
        worst = fmax(worst, d / (mx + 1e-30));
        shared++;
        free(gr);
    }
    CHECK(shared == p0->n - (N_FACT - 1));
    printf("full rank: %d shared parameters, worst max |g - g_dense| / max |g_dense| %.3g\n",
           shared, worst);
    /* the factors: dB = G A^T, dA = B^T G */
    for (int f = 0; f < N_FACT; f++) {
        char wn[160], an[160], bn[160];
        snprintf(wn, sizeof wn, "model.layers.%s.weight", k_fact[f].stem);
        snprintf(an, sizeof an, "model.layers.%s.lowrank_a", k_fact[f].stem);
        snprintf(bn, sizeof bn, "model.layers.%s.lowrank_b", k_fact[f].stem);
        const evlm_tparam *pw = evlm_tparams_find(p0, wn), *pa = evlm_tparams_find(p1, an),
                          *pb = evlm_tparams_find(p1, bn);
        CHECK(pw && pa && pb && pa->trainable && pb->trainable);
        if (!pw || !pa || !pb) continue;
        CHECK((evlm_tparams_find(p1, wn) != NULL) == k_fact[f].comp);
        const int64_t out = pw->shape[0], in = pw->shape[1], r = pa->shape[0];
        const float *G = p0->g + pw->off, *A = p1->w + pa->off, *B = p1->w + pb->off;
        double *rb = calloc((size_t)(out * r), sizeof(double));
        double *ra = calloc((size_t)(r * in), sizeof(double));
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < r; k++) {
                double s = 0;
                for (int64_t j = 0; j < in; j++) s += (double)G[o * in + j] * (double)A[k * in + j];
                rb[o * r + k] = s;
            }
        for (int64_t k = 0; k < r; k++)
            for (int64_t j = 0; j < in; j++) {
                double s = 0;
                for (int64_t o = 0; o < out; o++) s += (double)B[o * r + k] * (double)G[o * in + j];
                ra[k * in + j] = s;
            }
        double db, mb, da, ma;
        gdiff(p1->g + pb->off, rb, pb->n, &db, &mb);
        gdiff(p1->g + pa->off, ra, pa->n, &da, &ma);
        printf("%-20s rank %3lld: dB max err %.3g (max %.3g), dA max err %.3g (max %.3g)\n",
               k_fact[f].stem, (long long)r, db, mb, da, ma);
        CHECKF(db <= 1e-5 * mb + 1e-8, "%s: dB = G A^T off by %.3g (max %.3g)", bn, db, mb);
        CHECKF(da <= 1e-5 * ma + 1e-8, "%s: dA = B^T G off by %.3g (max %.3g)", an, da, ma);
        CHECK(mb > 0 && ma > 0); /* a real comparison */
        free(ra);
        free(rb);
    }
    /* QAT refuses a factored decoder, naming why */
    CHECK(evlm_tmodel_set_qat(t1, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0, false) == EVLM_ERR_UNSUPPORTED);
    CHECK(strstr(evlm_last_error(), "low-rank") != NULL);
    {
        evlm_tbatch b = {q->s, q->n};
        evlm_tstep st = {.loss = EVLM_TLOSS_QAT_CE, .grad_scale = 1.0f};
        evlm_tresult r;
        CHECK(evlm_tmodel_step(t1, &b, &st, &r) == EVLM_ERR_UNSUPPORTED);
        CHECK(strstr(evlm_last_error(), "low-rank") != NULL);
    }
done1:
    evlm_tmodel_free(t1);
    evlm_model_free(m1);
done0:
    evlm_tmodel_free(t0);
    evlm_model_free(m0);
}

/* ---- low rank: training, export, runtime ---------------------------------------------------- */

static void adam_steps(evlm_tmodel *tm, const seqs *q, int steps, double lr, double *first,
                       double *last) {
    evlm_tparams *tp = evlm_tmodel_params_of(tm);
    evlm_adamw_params ap = evlm_adamw_default_params();
    for (int it = 0; it < steps; it++) {
        double loss;
        if (!ce_step(tm, q, &loss)) return;
        if (it == 0) *first = loss;
        *last = loss;
        evlm_adamw_clip(tp, 1.0);
        evlm_adamw_step(tp, &ap, lr, it + 1);
    }
}

/* max |runtime - training| over the target rows of each sequence, and max - min of the logits */
static void compare_logits(evlm_tmodel *tm, const seqs *q, evlm_model *rt, double *diff,
                           double *range) {
    const int V = evlm_model_n_vocab(rt);
    *diff = 0;
    *range = 0;
    for (int i = 0; i < q->n; i++) {
        const int n = q->s[i].n;
        float *zt = malloc(sizeof(float) * (size_t)n * V), *zr = malloc(sizeof(float) * n * V);
        evlm_tbatch b = {&q->s[i], 1};
        int nt = 0;
        CHECK_OK(evlm_tmodel_logits(tm, &b, zt, &nt));
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = 512;
        evlm_context *ctx = NULL;
        CHECK_OK(evlm_context_new(rt, &cp, &ctx));
        if (ctx) CHECK_OK(evlm_decode(ctx, q->ids[i], n, zr, true));
        CHECK(nt == n - 1);
        float lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; ctx && k < (size_t)nt * V; k++) {
            double d = fabs((double)zt[k] - (double)zr[k]);
            *diff = d > *diff || d != d ? d : *diff;
            lo = zt[k] < lo ? zt[k] : lo;
            hi = zt[k] > hi ? zt[k] : hi;
        }
        *range = fmax(*range, (double)hi - (double)lo);
        evlm_context_free(ctx);
        free(zt);
        free(zr);
    }
}

static void test_low_rank(const char *fixture, const seqs *q) {
    char dir[600], out[600];
    snprintf(dir, sizeof dir, "%s/rank8", g_tmp);
    snprintf(out, sizeof out, "%s/rank8_trained", g_tmp);
    evlm_lowrank_params lp = evlm_lowrank_default_params();
    lp.rank = 8;
    lp.type = EVLM_TYPE_F32;
    lp.n_threads = 2;
    const char *keep[] = {"*layers.1.mlp.*"};
    lp.keep = keep;
    lp.n_keep = 1;
    evlm_lowrank_report rep;
    CHECK_OK(evlm_lowrank(fixture, dir, &lp, &rep));
    int factored = 0;
    for (int i = 0; i < rep.n; i++) factored += rep.t[i].rank == 8;
    CHECKF(factored == 11, "%d of 14 matrices factored (3 kept dense)", factored);
    evlm_lowrank_report_free(&rep);

    evlm_model *m = load(dir, true), *teacher_m = load(fixture, true);
    evlm_tmodel *tm = tmodel_of(m);
    if (!tm || !teacher_m) goto done;
    evlm_tparams *tp = evlm_tmodel_params_of(tm);
    /* a --freeze glob on A: its gradients stay zero, B's do not */
    const char *fr[] = {"*.lowrank_a"};
    int nt = 0;
    CHECK_OK(evlm_tparams_select(tp, NULL, 0, fr, 1, &nt));
    double loss;
    ce_step(tm, q, &loss);
    double ga = 0, gb = 0;
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        const size_t ln = strlen(p->name);
        const bool a = ln > 10 && !strcmp(p->name + ln - 10, ".lowrank_a"),
                   b = ln > 10 && !strcmp(p->name + ln - 10, ".lowrank_b");
        for (size_t e = 0; e < p->n; e++) {
            if (a) ga = fmax(ga, fabs(tp->g[p->off + e]));
            if (b) gb = fmax(gb, fabs(tp->g[p->off + e]));
        }
    }
    CHECKF(ga == 0 && gb > 0, "frozen A: max |dA| %.3g, max |dB| %.3g", ga, gb);
    CHECK_OK(evlm_tparams_select(tp, NULL, 0, NULL, 0, &nt));

    double first = 0, last = 0;
    adam_steps(tm, q, 6, 3e-3, &first, &last);
    printf("rank 8 (11 factored, 3 dense): CE %.4f -> %.4f over 6 updates\n", first, last);
    CHECKF(last < first - 0.05, "the loss does not fall: %.4f -> %.4f", first, last);

    /* the exported folder: factors under their names, loaded by the runtime */
    /* float32 out: the file's other tensors are bf16, which would round the trained weights */
    CHECK_OK(evlm_ckpt_export(tp, dir, out, EVLM_CKPT_F32));
    evlm_weights *ws = NULL;
    CHECK_OK(evlm_weights_open(out, &ws));
    if (ws) {
        CHECK(evlm_weights_find(ws, "model.layers.0.self_attn.q_proj.lowrank_a") != NULL);
        CHECK(evlm_weights_find(ws, "model.layers.0.self_attn.q_proj.lowrank_b") != NULL);
        CHECK(evlm_weights_find(ws, "model.layers.0.self_attn.q_proj.weight") == NULL);
        CHECK(evlm_weights_find(ws, "model.layers.1.mlp.up_proj.weight") != NULL);
        evlm_weights_free(ws);
    }
    evlm_model *rt = load(out, false), *r0 = load(dir, false);
    if (rt && r0) {
        double diff, range, d0, range0;
        compare_logits(tm, q, rt, &diff, &range);
        compare_logits(tm, q, r0, &d0, &range0);
        printf("rank 8 trained: runtime vs training logits max |diff| %.3g (range %.3g); the "
               "untrained file: %.3g\n",
               diff, range, d0);
        CHECKF(diff <= 1e-4 * range, "%.3g > 1e-4 * %.3g", diff, range);
        CHECK(d0 > 1e-2 * range); /* the training moved the factors: a real comparison */
    }
    evlm_model_free(rt);
    evlm_model_free(r0);

    /* hidden-state distillation of the factored student from the dense teacher */
    {
        evlm_tmodel_params tpar = {.n_threads = 2, .max_tokens = 256, .forward_only = true};
        evlm_tmodel *te = NULL;
        CHECK_OK(evlm_tmodel_new(teacher_m, &tpar, &te));
        evlm_distill d = evlm_distill_default();
        d.alpha = 0.0f;
        d.temperature = 1.0f;
        d.hidden_weight = 1.0f;
        if (te) CHECK_OK(evlm_tmodel_plan_distill(tm, te, &d));
        evlm_adamw_params ap = evlm_adamw_default_params();
        double h0 = 0, h1 = 0;
        evlm_tbatch b = {q->s, q->n};
        for (int it = 0; te && it < 6; it++) {
            evlm_tparams_zero_grad(tp);
            evlm_tstep st = {EVLM_TLOSS_DISTILL, 1.0f, te, 1.0f, false};
            evlm_tresult r;
            CHECK_OK(evlm_tmodel_step(tm, &b, &st, &r));
            if (it == 0) h0 = r.hidden;
            h1 = r.hidden;
            evlm_adamw_step(tp, &ap, 3e-3, it + 1);
        }
        printf("rank 8 distilled: hidden-state MSE %.5g -> %.5g over 6 updates\n", h0, h1);
        CHECKF(h0 > 0 && h1 < h0, "hidden-state loss %.5g -> %.5g", h0, h1);
        evlm_tmodel_free(te);
    }
done:
    evlm_tmodel_free(tm);
    evlm_model_free(m);
    evlm_model_free(teacher_m);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return test_done();
    if (!mkdtemp(g_tmp)) return 1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    seqs q = {0};
    llama_seqs(dir, &q);
    CHECK(q.n > 0);
    if (q.n > 0) {
        test_full_rank(dir, &q);
        test_low_rank(dir, &q);
    }
    seqs_free(&q);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_done();
}
