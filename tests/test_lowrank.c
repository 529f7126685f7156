/*
 * test_lowrank.c - low-rank factorization and compensation (src/compress/lowrank*.c) and the
 * factored linear of the runtime (model/decoder.c):
 *   - SVD, ASVD and whitened factors at full rank reproduce the matrix within 1e-5 * max|W|
 *     (float factors of a double SVD);
 *   - SVD-LLM: the whitened truncation error measured directly on the calibration rows,
 *     ||(W - B A) X^T||^2 / N, equals the dropped singular values' energy sum_{i >= r} s_i^2
 *     (relative 1e-9, no damping), and is never above plain SVD's at the same rank; every
 *     method's energies e_i add up to its direct truncation error;
 *   - a factored llama-tiny (Hugging Face folder and GGUF) gives the logits of the dense model
 *     whose W is B A computed in float (within 1e-4 * max(1, |logit|); the GGUF file bit for bit
 *     the folder); W + B A (compensation) likewise;
 *     and the same bits with 1 and 3 threads;
 *   - hostile factor shapes are load errors naming the tensor;
 *   - quantization with compensation of rank 0 writes the plain quantized file byte for byte;
 *     a rank-8 compensation lowers every compensated matrix's output error.
 */
#include "compress/lowrank.h"
#include "core/file.h"
#include "evlm_compress.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/model.h"
#include "quant/quants.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift, [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}

/* ---- the factorization of one matrix -------------------------------------------------------- */

static void full_rank(evlm__lr_mode mode, int64_t n, int64_t k) {
    const int N = 300;
    float *w = malloc(sizeof(float) * (size_t)(n * k)),
          *x = malloc(sizeof(float) * (size_t)(N * k));
    double *xtx = calloc((size_t)(k * k), sizeof(double));
    float *mean = calloc((size_t)k, sizeof(float));
    for (int64_t i = 0; i < n * k; i++) w[i] = (float)urand();
    for (int r = 0; r < N; r++)
        for (int64_t j = 0; j < k; j++) x[r * k + j] = (float)(urand() * (1 + (double)j / 4));
    for (int r = 0; r < N; r++)
        for (int64_t a = 0; a < k; a++) {
            mean[a] += fabsf(x[r * k + a]) / (float)N;
            for (int64_t b = 0; b < k; b++)
                xtx[a * k + b] += (double)x[r * k + a] * (double)x[r * k + b];
        }
    evlm__lr d;
    CHECK_OK(
        evlm__lr_decompose(mode, w, n, k, mode == EVLM_LR_SVD ? NULL : xtx, N, mean, 0.5, 0, &d));
    float *a = malloc(sizeof(float) * (size_t)(d.kmax * k)),
          *b = malloc(sizeof(float) * (size_t)(n * d.kmax));
    evlm__lr_factors(&d, d.kmax, a, b);
    double mx = 0, err = 0;
    for (int64_t o = 0; o < n; o++)
        for (int64_t j = 0; j < k; j++) {
            double y = 0;
            for (int64_t i = 0; i < d.kmax; i++)
                y += (double)b[o * d.kmax + i] * (double)a[i * k + j];
            err = fmax(err, fabs(y - (double)w[o * k + j]));
            mx = fmax(mx, fabs((double)w[o * k + j]));
        }
    CHECKF(err <= 1e-5 * mx, "mode %d %lldx%lld: full rank max error %.3g of max %.3g", (int)mode,
           (long long)n, (long long)k, err, mx);
    evlm__lr_free(&d);
    free(a);
    free(b);
    free(w);
    free(x);
    free(xtx);
    free(mean);
}

/* direct ||(W - W_r) X^T||^2 / N in double from the decomposition's own (double) factors */
static double direct_error(const evlm__lr *d, const float *w, const float *x, int N, int64_t r) {
    const int64_t n = d->n, k = d->k;
    double err = 0;
    double *wr = malloc(sizeof(double) * (size_t)(n * k));
    for (int64_t o = 0; o < n; o++)
        for (int64_t j = 0; j < k; j++) {
            double y = 0;
            for (int64_t i = 0; i < r; i++)
                y += d->u[o * d->kmax + i] * d->sigma[i] * d->z[i * k + j];
            wr[o * k + j] = (double)w[o * k + j] - y;
        }
    for (int s = 0; s < N; s++)
        for (int64_t o = 0; o < n; o++) {
            double y = 0;
            for (int64_t j = 0; j < k; j++) y += wr[o * k + j] * (double)x[s * k + j];
            err += y * y;
        }
    free(wr);
    return err / N;
}

static void whitened_error(void) {
    const int64_t n = 32, k = 24;
    const int N = 200;
    float *w = malloc(sizeof(float) * (size_t)(n * k)),
          *x = malloc(sizeof(float) * (size_t)(N * k));
    double *xtx = calloc((size_t)(k * k), sizeof(double));
    float *mean = calloc((size_t)k, sizeof(float));
    for (int64_t i = 0; i < n * k; i++) w[i] = (float)urand();
    for (int r = 0; r < N; r++) { /* correlated, unevenly scaled inputs */
        double c = urand();
        for (int64_t j = 0; j < k; j++)
            x[r * k + j] = (float)((urand() + 2 * c * (j % 3 == 0)) * (1 + (double)(j % 5)));
    }
    for (int r = 0; r < N; r++)
        for (int64_t a = 0; a < k; a++) {
            mean[a] += fabsf(x[r * k + a]) / (float)N;
            for (int64_t b = 0; b < k; b++)
                xtx[a * k + b] += (double)x[r * k + a] * (double)x[r * k + b];
        }
    evlm__lr wh, sv, as;
    CHECK_OK(evlm__lr_decompose(EVLM_LR_WHITEN, w, n, k, xtx, N, NULL, 0, 0, &wh));
    CHECK_OK(evlm__lr_decompose(EVLM_LR_SVD, w, n, k, xtx, N, NULL, 0, 0, &sv));
    CHECK_OK(evlm__lr_decompose(EVLM_LR_ASVD, w, n, k, xtx, N, mean, 0.5, 0, &as));
    const int64_t ranks[] = {1, 4, 12, 23};
    for (size_t t = 0; t < sizeof ranks / sizeof *ranks; t++) {
        int64_t r = ranks[t];
        double dropped = 0;
        for (int64_t i = r; i < wh.kmax; i++) dropped += wh.sigma[i] * wh.sigma[i];
        double e_wh = direct_error(&wh, w, x, N, r), e_sv = direct_error(&sv, w, x, N, r),
               e_as = direct_error(&as, w, x, N, r);
        CHECKF(fabs(e_wh - dropped) <= 1e-9 * dropped,
               "rank %lld: whitened error %.12g, dropped "
               "energy %.12g",
               (long long)r, e_wh, dropped);
        CHECKF(e_wh <= e_sv * (1 + 1e-12) && e_wh <= e_as * (1 + 1e-12),
               "rank %lld: whitened %.6g, svd %.6g, asvd %.6g", (long long)r, e_wh, e_sv, e_as);
        CHECKF(fabs(evlm__lr_tail(&sv, r) - e_sv) <= 1e-9 * e_sv, "svd energies %.12g vs %.12g",
               evlm__lr_tail(&sv, r), e_sv);
        CHECKF(fabs(evlm__lr_tail(&as, r) - e_as) <= 1e-9 * e_as, "asvd energies %.12g vs %.12g",
               evlm__lr_tail(&as, r), e_as);
        CHECKF(fabs(evlm__lr_tail(&wh, r) - e_wh) <= 1e-9 * e_wh, "whitened energies");
    }
    evlm__lr_free(&wh);
    evlm__lr_free(&sv);
    evlm__lr_free(&as);
    free(w);
    free(x);
    free(xtx);
    free(mean);
}

/* ---- model folders -------------------------------------------------------------------------- */

static char tmp_root[64];

static void copy_side_files(const char *from, const char *to) {
    static const char *const files[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                        "generation_config.json"};
    char a[4096], b[4096];
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

static void write_model(const char *src, const char *dir, const evlm_tensor *t, size_t n) {
    copy_side_files(src, dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(evlm_safetensors_write(p, t, n));
}

static int g_threads; /* 0: the default */

static float *logits_of(const char *model, int *V, int n) {
    evlm_model *m = NULL;
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = g_threads;
    CHECK_OK(evlm_model_load(model, &mp, &m));
    if (!m) return NULL;
    *V = evlm_model_n_vocab(m);
    int32_t ids[12];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 5) % *V);
    evlm_prompt *p = NULL;
    CHECK_OK(evlm__prompt_from_ids(ids, (size_t)n, &p));
    float *lg = NULL;
    if (p) {
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = n + 4;
        evlm_context *c;
        CHECK_OK(evlm_context_new(m, &cp, &c));
        lg = malloc(sizeof(float) * (size_t)n * (size_t)*V);
        CHECK_OK(evlm_decode_prompt(c, p, lg, true));
        evlm_context_free(c);
        evlm_prompt_free(p);
    }
    evlm_model_free(m);
    return lg;
}

static double max_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, s = 1;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    *scale = s;
    return d;
}

static bool ends_with(const char *s, const char *x) {
    size_t a = strlen(s), b = strlen(x);
    return a >= b && !strcmp(s + a - b, x);
}

/* The tensors of `factored` with every (a, b) pair replaced by "<stem>.weight" = B A in float
 * (plus the dense weight of `base` when the pair sits beside one: compensation). Returns the
 * count; the views' data and names are malloc'd into keep[]. */
static size_t densify(const evlm_weights *f, const evlm_weights *base, evlm_tensor *out,
                      void **keep, size_t *n_keep) {
    size_t n = 0;
    for (size_t i = 0; i < evlm_weights_count(f); i++) {
        const evlm_tensor *t = evlm_weights_at(f, i);
        if (ends_with(t->name, ".lowrank_b")) continue;
        if (!ends_with(t->name, ".lowrank_a")) {
            char stem[256];
            snprintf(stem, sizeof stem, "%s", t->name);
            if (ends_with(stem, ".weight")) { /* a dense weight with a pair beside it: added */
                char an[256];
                snprintf(an, sizeof an, "%.*s.lowrank_a", (int)(strlen(stem) - 7), stem);
                if (evlm_weights_find(f, an)) continue;
            }
            out[n++] = *t;
            continue;
        }
        char stem[200], bn[256], wn[256];
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(t->name) - 10), t->name);
        snprintf(bn, sizeof bn, "%s.lowrank_b", stem);
        snprintf(wn, sizeof wn, "%s.weight", stem);
        const evlm_tensor *b = evlm_weights_find(f, bn), *w0 = evlm_weights_find(base, wn);
        const evlm_tensor *wf = evlm_weights_find(f, wn);
        int64_t r = t->ne[1], k = t->ne[0], o = b->ne[1];
        float *a = malloc(sizeof(float) * (size_t)(r * k)),
              *bb = malloc(sizeof(float) * (size_t)(o * r));
        float *w = malloc(sizeof(float) * (size_t)(o * k));
        evlm_dequantize_row(t->type, t->data, a, r * k);
        evlm_dequantize_row(b->type, b->data, bb, o * r);
        for (int64_t y = 0; y < o; y++)
            for (int64_t j = 0; j < k; j++) {
                double acc = 0;
                for (int64_t q = 0; q < r; q++) acc += (double)bb[y * r + q] * (double)a[q * k + j];
                w[y * k + j] = (float)acc;
            }
        if (wf && w0) { /* W + B A */
            float *d = malloc(sizeof(float) * (size_t)(o * k));
            evlm_dequantize_row(w0->type, w0->data, d, o * k);
            for (int64_t e = 0; e < o * k; e++) w[e] = (float)((double)w[e] + (double)d[e]);
            free(d);
        }
        char *nm = strdup(wn);
        keep[(*n_keep)++] = nm;
        keep[(*n_keep)++] = w;
        free(a);
        free(bb);
        evlm_tensor v;
        memset(&v, 0, sizeof v);
        v.name = nm;
        v.type = EVLM_TYPE_F32;
        v.n_dims = 2;
        v.ne[0] = k;
        v.ne[1] = o;
        v.ne[2] = v.ne[3] = 1;
        v.data = w;
        evlm_tensor_set_contiguous(&v);
        out[n++] = v;
    }
    return n;
}

static void compare_logits(const char *what, const char *a, const char *b, double tol,
                           bool bitwise) {
    int V = 0, V2 = 0;
    const int n = 10;
    float *la = logits_of(a, &V, n), *lb = logits_of(b, &V2, n);
    CHECK(la && lb && V == V2);
    if (la && lb && V == V2) {
        double scale, d = max_diff(lb, la, (size_t)n * (size_t)V, &scale);
        if (bitwise)
            CHECKF(!memcmp(la, lb, sizeof(float) * (size_t)n * (size_t)V),
                   "%s: not bit for bit (max diff %.3g)", what, d);
        else
            CHECKF(d <= tol * scale, "%s: max logit diff %.3g > %.1g * %.3g", what, d, tol, scale);
        printf("%s: max logit diff %.3g (scale %.3g)\n", what, d, scale);
    }
    free(la);
    free(lb);
}

static void factored_models(const char *fixture) {
    char fact[256], gguf[256], dense[256], comp[256], comp_dense[256];
    snprintf(fact, sizeof fact, "%s/fact", tmp_root);
    snprintf(gguf, sizeof gguf, "%s/fact.gguf", tmp_root);
    snprintf(dense, sizeof dense, "%s/dense", tmp_root);
    snprintf(comp, sizeof comp, "%s/comp", tmp_root);
    snprintf(comp_dense, sizeof comp_dense, "%s/comp_dense", tmp_root);
    evlm_lowrank_params p = evlm_lowrank_default_params();
    p.rank = 7;
    p.type = EVLM_TYPE_F32;
    evlm_lowrank_report rep;
    CHECK_OK(evlm_lowrank(fixture, fact, &p, &rep));
    int factored = 0;
    for (int i = 0; i < rep.n; i++) factored += rep.t[i].rank == 7;
    CHECKF(factored == 14, "%d of 14 matrices factored at rank 7", factored);
    CHECK(rep.params < rep.dense_params);
    evlm_lowrank_report_free(&rep);
    CHECK_OK(evlm_lowrank(fixture, gguf, &p, &rep));
    evlm_lowrank_report_free(&rep);

    evlm_weights *f = NULL, *base = NULL;
    CHECK_OK(evlm_weights_open(fact, &f));
    CHECK_OK(evlm_weights_open(fixture, &base));
    if (!f || !base) return;
    size_t cap = evlm_weights_count(f) + evlm_weights_count(base) + 8, n_keep = 0;
    evlm_tensor *t = calloc(cap, sizeof *t);
    void **keep = calloc(4 * cap, sizeof *keep);
    size_t n = densify(f, base, t, keep, &n_keep);
    write_model(fixture, dense, t, n);
    compare_logits("factored folder vs dense B A", dense, fact, 1e-4, false);
    compare_logits("factored GGUF vs folder", fact, gguf, 0, true);
    g_threads = 1; /* the factored paths' bits do not depend on the thread count */
    int V1 = 0, V3 = 0;
    float *l1 = logits_of(fact, &V1, 10);
    g_threads = 3;
    float *l3 = logits_of(fact, &V3, 10);
    g_threads = 0;
    CHECK(l1 && l3 && V1 == V3 && !memcmp(l1, l3, sizeof(float) * 10 * (size_t)V1));
    free(l1);
    free(l3);

    /* compensation: the fixture's own weights plus the factors beside them */
    size_t m = 0;
    for (size_t i = 0; i < evlm_weights_count(base); i++) t[m++] = *evlm_weights_at(base, i);
    for (size_t i = 0; i < evlm_weights_count(f); i++)
        if (ends_with(evlm_weights_at(f, i)->name, ".lowrank_a") ||
            ends_with(evlm_weights_at(f, i)->name, ".lowrank_b"))
            t[m++] = *evlm_weights_at(f, i);
    write_model(fixture, comp, t, m);
    evlm_weights *cw = NULL;
    CHECK_OK(evlm_weights_open(comp, &cw));
    if (cw) {
        n = densify(cw, base, t, keep, &n_keep);
        write_model(fixture, comp_dense, t, n);
        compare_logits("W + B A vs dense", comp_dense, comp, 1e-4, false);
        evlm_weights_free(cw);
    }
    for (size_t i = 0; i < n_keep; i++) free(keep[i]);
    free(keep);
    free(t);
    evlm_weights_free(f);
    evlm_weights_free(base);
}

/* ---- hostile factor shapes ------------------------------------------------------------------ */

static void hostile(const char *fixture) {
    static const struct {
        const char *what;
        int64_t a_ne[2], b_ne[2]; /* ne = {cols, rows}; a_ne[0] = 0: no a; b_ne[0] = 0: no b */
        int a_dims;
        const char *names; /* in the message */
    } cases[] = {
        {"a without b", {64, 4}, {0, 0}, 2, "q_proj.lowrank_b"},
        {"b without a", {0, 0}, {4, 64}, 2, "q_proj.lowrank_a"},
        {"rank mismatch", {64, 4}, {5, 64}, 2, "q_proj.lowrank_b"},
        {"wrong in", {63, 4}, {4, 64}, 2, "q_proj.lowrank_a"},
        {"wrong out", {64, 4}, {4, 65}, 2, "q_proj.lowrank_b"},
        {"rank above min(in, out)", {64, 65}, {65, 64}, 2, "q_proj.lowrank_a"},
        {"1-D factor", {256, 1}, {4, 64}, 1, "q_proj.lowrank_a"},
        {"rank 0", {64, 0}, {0, 64}, 2, "q_proj.lowrank"},
    };
    evlm_weights *base = NULL;
    CHECK_OK(evlm_weights_open(fixture, &base));
    if (!base) return;
    size_t nb = evlm_weights_count(base);
    evlm_tensor *t = calloc(nb + 2, sizeof *t);
    float *zeros = calloc(65 * 65, sizeof(float));
    char dir[256];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n = 0;
        for (size_t i = 0; i < nb; i++) {
            const evlm_tensor *w = evlm_weights_at(base, i);
            if (!strcmp(w->name, "model.layers.0.self_attn.q_proj.weight")) continue;
            t[n++] = *w;
        }
        for (int f = 0; f < 2; f++) {
            const int64_t *ne = f ? cases[c].b_ne : cases[c].a_ne;
            bool rank0 = !strcmp(cases[c].what, "rank 0");
            if (ne[0] == 0 && !rank0) continue;
            evlm_tensor v;
            memset(&v, 0, sizeof v);
            v.name = f ? "model.layers.0.self_attn.q_proj.lowrank_b"
                       : "model.layers.0.self_attn.q_proj.lowrank_a";
            v.type = EVLM_TYPE_F32;
            v.n_dims = f ? 2 : cases[c].a_dims;
            v.ne[0] = ne[0];
            v.ne[1] = v.n_dims == 2 ? ne[1] : 1;
            v.ne[2] = v.ne[3] = 1;
            v.data = zeros;
            evlm_tensor_set_contiguous(&v);
            t[n++] = v;
        }
        snprintf(dir, sizeof dir, "%s/hostile%zu", tmp_root, c);
        copy_side_files(fixture, dir);
        char p[512];
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        if (evlm_safetensors_write(p, t, n) != EVLM_OK) { /* the writer refuses the shape */
            printf("%s: the writer refuses it (%s)\n", cases[c].what, evlm_last_error());
            CHECK(strstr(evlm_last_error(), "lowrank") != NULL);
            continue;
        }
        evlm_model *m = NULL;
        evlm_status st = evlm_model_load(dir, NULL, &m);
        CHECKF(st != EVLM_OK && strstr(evlm_last_error(), cases[c].names),
               "%s: status %d, message '%s'", cases[c].what, (int)st, evlm_last_error());
        printf("%s: %s\n", cases[c].what, evlm_last_error());
        evlm_model_free(m);
    }
    free(zeros);
    free(t);
    evlm_weights_free(base);
}

/* ---- compensation inside quantize ----------------------------------------------------------- */

static bool same_file(const char *a, const char *b) {
    char *da, *db;
    size_t la, lb;
    if (evlm_read_file(a, 1 << 28, &da, &la) != EVLM_OK) return false;
    if (evlm_read_file(b, 1 << 28, &db, &lb) != EVLM_OK) {
        free(da);
        return false;
    }
    bool same = la == lb && !memcmp(da, db, la);
    free(da);
    free(db);
    return same;
}

static void compensation(const char *fixture, const char *corpus) {
    char plain[256], zero[256], comp[256];
    snprintf(plain, sizeof plain, "%s/plain.gguf", tmp_root);
    snprintf(zero, sizeof zero, "%s/zero.gguf", tmp_root);
    snprintf(comp, sizeof comp, "%s/comp.gguf", tmp_root);
    evlm_quantize_params p = evlm_quantize_default_params();
    p.type = EVLM_TYPE_Q4_0;
    p.method = EVLM_QMETHOD_GPTQ;
    p.calib_text = corpus;
    p.calib_tokens = 512;
    evlm_quantize_report r0, rz, rc;
    CHECK_OK(evlm_quantize(fixture, plain, &p, &r0));
    p.lowrank_bpw = 1e-12; /* the compensation pass runs, and no rank fits */
    CHECK_OK(evlm_quantize(fixture, zero, &p, &rz));
    CHECKF(same_file(plain, zero), "rank-0 compensation changed the file");
    CHECK(rz.n == r0.n && rz.bpw == r0.bpw);
    p.lowrank_bpw = 0;
    p.lowrank_comp = 8;
    CHECK_OK(evlm_quantize(fixture, comp, &p, &rc));
    int n_lr = 0, better = 0;
    for (int i = 0; i < rc.n; i++) {
        if (strcmp(rc.t[i].method, "lowrank") || !ends_with(rc.t[i].name, ".lowrank_a")) continue;
        n_lr++;
        char wn[200];
        snprintf(wn, sizeof wn, "%.*s.weight", (int)(strlen(rc.t[i].name) - 10), rc.t[i].name);
        for (int j = 0; j < rc.n; j++)
            if (!strcmp(rc.t[j].name, wn) && rc.t[i].rel_err < rc.t[j].rel_err) better++;
    }
    CHECKF(n_lr == 14 && better == 14, "%d compensated matrices, %d with a lower error", n_lr,
           better);
    CHECKF(rc.bpw > r0.bpw, "bits per weight %.4f vs %.4f", rc.bpw, r0.bpw);
    CHECKF(rc.kl_mean < r0.kl_mean, "mean KL %.5f with compensation, %.5f without", rc.kl_mean,
           r0.kl_mean);
    printf("q4_0 gptq: KL %.5f (%.3f bpw); + rank 8: KL %.5f (%.3f bpw)\n", r0.kl_mean, r0.bpw,
           rc.kl_mean, rc.bpw);
    evlm_quantize_report_free(&r0);
    evlm_quantize_report_free(&rz);
    evlm_quantize_report_free(&rc);
}

int main(void) {
    full_rank(EVLM_LR_SVD, 40, 24);
    full_rank(EVLM_LR_SVD, 24, 40);
    full_rank(EVLM_LR_ASVD, 40, 24);
    full_rank(EVLM_LR_WHITEN, 24, 40);
    whitened_error();
    const char *shared = test_shared_dir();
    if (!shared) return test_done();
    snprintf(tmp_root, sizeof tmp_root, "/tmp/evlm_lowrank_XXXXXX");
    if (!mkdtemp(tmp_root)) {
        CHECK(!"mkdtemp");
        return test_done();
    }
    char fixture[4096], corpus[4096];
    snprintf(fixture, sizeof fixture, "%s/fixtures/llama-tiny", shared);
    snprintf(corpus, sizeof corpus, "%s/fixtures/corpus.txt", shared);
    factored_models(fixture);
    hostile(fixture);
    compensation(fixture, corpus);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return test_done();
}
