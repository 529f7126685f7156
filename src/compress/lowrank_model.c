/*
 * lowrank_model.c - evlm_lowrank (evlm_compress.h): the decoder matrices of a Hugging Face folder
 * factored into "<proj>.lowrank_a" [r, in] and "<proj>.lowrank_b" [out, r] by plain SVD, ASVD or
 * SVD-LLM (lowrank.h), the ranks given or chosen per matrix for a parameter budget, written as a
 * GGUF file (the quantize container) or a Hugging Face folder, then measured (output error per
 * matrix on the calibration rows, the written model's mean KL against the source).
 *
 * Rank allocation for a ratio: every candidate matrix starts at one rank step; steps of rank
 * are then given, one at a time, to the matrix whose next step removes the most relative output
 * energy (its share of tr(W C W^T)) per parameter it costs, while the budget allows; a matrix
 * whose factored size would reach its dense size goes dense instead. Calibration (when given)
 * runs the float model once over all layers (statistics are of the source model's inputs, not
 * re-collected after earlier layers are factored).
 *
 * Not here: the vision tower and connector (left dense), the embedding and head (left dense),
 * layer-by-layer calibration for models whose covariances do not fit in memory at once.
 */
#include "compress/lowrank.h"
#include "compress/pipeline.h"
#include "core/file.h"
#include "core/status.h"
#include "io/gguf_names.h"
#include "io/safetensors.h"
#include "quant/quants.h"

#include <dirent.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESERVOIR 256

evlm_lowrank_params evlm_lowrank_default_params(void) {
    evlm_lowrank_params p;
    memset(&p, 0, sizeof p);
    p.method = EVLM_LRMETHOD_SVD;
    p.alpha = 0.5;
    p.type = EVLM_TYPE_F16;
    p.calib_tokens = 2048;
    p.calib_items = 16;
    return p;
}

void evlm_lowrank_report_free(evlm_lowrank_report *r) {
    free(r->t);
    memset(r, 0, sizeof *r);
}

/* one decoder matrix */
typedef struct lrm {
    const evlm_tensor *src;
    int layer;
    const char *group;
    int64_t n, k;
    bool keep;       /* a keep pattern leaves it dense */
    double *e;       /* [kmax] energies (relative: divided by the total) */
    int64_t kmax, r; /* r = 0: dense */
    char name_a[192], name_b[192];
    void *a, *b; /* factors in the output type */
    double rel_err;
} lrm;

typedef struct {
    lrm *t;
    int n, cap;
    evlm_status st;
} collect_walk;

static void collect_one(void *user, const evlm_tensor **slot, evlm_matrix_role role, int layer) {
    static const char *const groups[] = {"attn_qkv",    "attn_qkv",    "attn_qkv", "attn_o",
                                         "ffn_gate_up", "ffn_gate_up", "ffn_down"};
    collect_walk *c = user;
    if (c->st != EVLM_OK || role > EVLM_ROLE_MLP_DOWN) return;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        lrm *nt = realloc(c->t, sizeof *nt * (size_t)cap);
        if (!nt) {
            c->st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            return;
        }
        c->t = nt;
        c->cap = cap;
    }
    lrm *x = &c->t[c->n++];
    memset(x, 0, sizeof *x);
    x->src = *slot;
    x->layer = layer;
    x->group = groups[role];
    x->n = x->src->ne[1];
    x->k = x->src->ne[0];
}

static const char *stem_end(const char *name) {
    size_t len = strlen(name);
    return len > 7 && !strcmp(name + len - 7, ".weight") ? name + len - 7 : NULL;
}

typedef struct lctx {
    const evlm_lowrank_params *p;
    qctx q;
    evlm_quantize_params qp; /* the calibration settings in quantize's form */
    lrm *t;
    int n;
    int64_t step; /* rank granularity: 32 for block-quantized factors */
} lctx;

static void progress(const lctx *c, const char *stage, int done, int total) {
    if (c->p->progress) c->p->progress(c->p->user, stage, done, total);
}

static evlm_status decompose(lctx *c, lrm *x, evlm__lr *d) {
    const evlm_calib_stat *st = c->q.calib ? evlm_calib_find(c->q.calib, x->layer, x->group) : NULL;
    if (st && st->k != x->k) st = NULL;
    float *w = evlm__q_widen(x->src), *mean = NULL;
    if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", x->src->name);
    evlm__lr_mode mode = c->p->method == EVLM_LRMETHOD_ASVD      ? EVLM_LR_ASVD
                         : c->p->method == EVLM_LRMETHOD_SVD_LLM ? EVLM_LR_WHITEN
                                                                 : EVLM_LR_SVD;
    evlm_status s = EVLM_OK;
    if (mode != EVLM_LR_SVD && (!st || !st->xtx || !st->n_rows))
        s = evlm__fail(EVLM_ERR_ARG, "%s: no calibration inputs reached this matrix", x->src->name);
    if (s == EVLM_OK && mode == EVLM_LR_ASVD) {
        mean = malloc(sizeof(float) * (size_t)x->k);
        if (!mean) s = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (mean) evlm_calib_mean_abs(st, mean);
    }
    if (s == EVLM_OK)
        s = evlm__lr_decompose(mode, w, x->n, x->k, st ? st->xtx : NULL, st ? st->n_rows : 0, mean,
                               c->p->alpha, 1e-6, d);
    free(w);
    free(mean);
    if (s != EVLM_OK) return evlm__fail_prefix(s, "%s", x->src->name);
    return EVLM_OK;
}

static bool factored_pays(int64_t r, int64_t n, int64_t k) {
    return r >= 1 && r * (n + k) < n * k;
}

/* ---- ranks ---------------------------------------------------------------------------------- */

static int64_t cost(const lrm *x, int64_t r) {
    return r > 0 ? r * (x->n + x->k) : x->n * x->k;
}

static double gain(const lrm *x, int64_t from, int64_t to) {
    double g = 0;
    for (int64_t i = from; i < to && i < x->kmax; i++) g += x->e[i];
    return g;
}

static evlm_status allocate(lctx *c) {
    const int64_t step = c->step;
    int64_t total = 0, used = 0;
    for (int i = 0; i < c->n; i++) {
        lrm *x = &c->t[i];
        total += x->n * x->k;
        if (x->keep || !factored_pays(step, x->n, x->k)) {
            x->r = 0;
            used += x->n * x->k;
        } else {
            x->r = step;
            used += cost(x, step);
        }
    }
    const double budget = c->p->ratio * (double)total;
    if ((double)used > budget)
        return evlm__fail(EVLM_ERR_ARG,
                          "ratio %.3f: the matrices at the smallest rank (%lld) already hold %.3f "
                          "of the parameters",
                          c->p->ratio, (long long)step, (double)used / (double)total);
    for (;;) {
        int best = -1;
        double best_score = 0;
        int64_t best_to = 0, best_cost = 0;
        for (int i = 0; i < c->n; i++) {
            lrm *x = &c->t[i];
            if (x->r == 0) continue; /* dense */
            int64_t to = x->r + step, extra;
            if (to > x->kmax || !factored_pays(to, x->n, x->k)) {
                to = 0; /* going dense */
                extra = x->n * x->k - cost(x, x->r);
            } else {
                extra = step * (x->n + x->k);
            }
            if ((double)(used + extra) > budget) continue;
            double g = to ? gain(x, x->r, to) : gain(x, x->r, x->kmax);
            double score = g / (double)(extra > 0 ? extra : 1);
            if (best < 0 || score > best_score) {
                best = i;
                best_score = score;
                best_to = to;
                best_cost = extra;
            }
        }
        if (best < 0 || best_score <= 0) break;
        c->t[best].r = best_to;
        used += best_cost;
    }
    return EVLM_OK;
}

/* ---- factors --------------------------------------------------------------------------------- */

static evlm_status store(const lctx *c, const float *f, int64_t rows, int64_t cols, void **out) {
    size_t rb = evlm_row_bytes(c->p->type, cols);
    char *d = malloc(rb * (size_t)rows);
    if (!d) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; r < rows; r++)
        evlm_quantize_row(c->p->type, f + r * cols, d + (size_t)r * rb, cols);
    *out = d;
    return EVLM_OK;
}

/* x's factors at rank x->r in the output type, and the output error of what is stored */
static evlm_status factor(lctx *c, lrm *x, const evlm__lr *d) {
    const int64_t r = x->r, n = x->n, k = x->k;
    float *a = malloc(sizeof(float) * (size_t)(r * k)),
          *b = malloc(sizeof(float) * (size_t)(n * r));
    float *w = evlm__q_widen(x->src);
    evlm_status st = a && b && w ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    if (st == EVLM_OK) {
        evlm__lr_factors(d, r, a, b);
        st = store(c, a, r, k, &x->a);
    }
    if (st == EVLM_OK) st = store(c, b, n, r, &x->b);
    /* what the file holds, back to float: W' = B' A' */
    for (int64_t i = 0; st == EVLM_OK && i < r; i++)
        evlm_dequantize_row(c->p->type,
                            (const char *)x->a + (size_t)i * evlm_row_bytes(c->p->type, k),
                            a + i * k, k);
    for (int64_t o = 0; st == EVLM_OK && o < n; o++)
        evlm_dequantize_row(c->p->type,
                            (const char *)x->b + (size_t)o * evlm_row_bytes(c->p->type, r),
                            b + o * r, r);
    if (st == EVLM_OK) {
        const evlm_calib_stat *cs =
            c->q.calib ? evlm_calib_find(c->q.calib, x->layer, x->group) : NULL;
        double err = 0, ref = 0;
        float *t = malloc(sizeof(float) * (size_t)r);
        if (!t) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (st == EVLM_OK && cs && cs->n_kept > 0 && cs->k == k) {
            for (int s = 0; s < cs->n_kept; s++) { /* ||(W - B A) x||^2 / ||W x||^2 */
                const float *xr = cs->rows + (size_t)s * (size_t)k;
                for (int64_t i = 0; i < r; i++) {
                    double acc = 0;
                    for (int64_t j = 0; j < k; j++) acc += (double)a[i * k + j] * (double)xr[j];
                    t[i] = (float)acc;
                }
                for (int64_t o = 0; o < n; o++) {
                    double y = 0, y2 = 0;
                    for (int64_t j = 0; j < k; j++) y += (double)w[o * k + j] * (double)xr[j];
                    for (int64_t i = 0; i < r; i++) y2 += (double)b[o * r + i] * (double)t[i];
                    err += (y - y2) * (y - y2);
                    ref += y * y;
                }
            }
        } else if (st == EVLM_OK) { /* weight space */
            for (int64_t o = 0; o < n; o++)
                for (int64_t j = 0; j < k; j++) {
                    double y2 = 0;
                    for (int64_t i = 0; i < r; i++)
                        y2 += (double)b[o * r + i] * (double)a[i * k + j];
                    double y = w[o * k + j];
                    err += (y - y2) * (y - y2);
                    ref += y * y;
                }
        }
        free(t);
        x->rel_err = ref > 0 ? err / ref : 0;
    }
    free(a);
    free(b);
    free(w);
    return st;
}

/* ---- writing -------------------------------------------------------------------------------- */

static const lrm *find_factored(const lctx *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (c->t[i].r > 0 && !strcmp(c->t[i].src->name, name)) return &c->t[i];
    return NULL;
}

static evlm_type type_for(void *ctx, const char *name, const evlm_tensor *t,
                          const evlm_tensor **src) {
    (void)src;
    return find_factored(ctx, name) ? EVLM_TYPE_COUNT : t->type; /* factored: left out */
}

static int write_progress(void *ctx, uint64_t done, uint64_t total) {
    progress(ctx, "write", (int)(done >> 20), (int)(total >> 20));
    return 0;
}

static evlm_tensor view(const char *name, evlm_type type, int64_t cols, int64_t rows, void *data) {
    evlm_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.type = type;
    t.n_dims = 2;
    t.ne[0] = cols;
    t.ne[1] = rows;
    t.ne[2] = t.ne[3] = 1;
    t.data = data;
    evlm_tensor_set_contiguous(&t);
    return t;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* A Hugging Face folder: every other file of in_dir copied, model.safetensors with the
 * factored matrices' weights replaced by their factors. */
static evlm_status write_folder(lctx *c, const char *in_dir, const char *out_dir,
                                const evlm_tensor *extra, size_t n_extra) {
    if (!evlm_type_is_file_float(c->p->type) || !evlm_type_traits_of(c->p->type)->st_dtype)
        return evlm__fail(EVLM_ERR_ARG,
                          "%s: a Hugging Face folder holds float factors (f32, f16, bf16), not %s",
                          out_dir, evlm_type_name(c->p->type));
    EVLM_TRY(evlm_mkdir(out_dir));
    DIR *dir = opendir(in_dir);
    if (!dir) return evlm__fail(EVLM_ERR_IO, "%s: cannot list the folder", in_dir);
    evlm_status st = EVLM_OK;
    char from[4096], to[4096];
    for (struct dirent *e = readdir(dir); e && st == EVLM_OK; e = readdir(dir)) {
        if (e->d_name[0] == '.' || ends_with(e->d_name, ".safetensors") ||
            !strcmp(e->d_name, "model.safetensors.index.json"))
            continue;
        if (evlm_path_join(from, sizeof from, in_dir, e->d_name) != EVLM_OK ||
            evlm_path_join(to, sizeof to, out_dir, e->d_name) != EVLM_OK) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: path too long", e->d_name);
            break;
        }
        char *data = NULL;
        size_t len = 0;
        if (!evlm_file_exists(from)) continue;
        if (evlm_read_file(from, (size_t)1 << 30, &data, &len) != EVLM_OK) continue; /* a dir */
        st = evlm_write_file_atomic(to, data, len);
        free(data);
    }
    closedir(dir);
    if (st != EVLM_OK) return st;
    const evlm_weights *w = evlm__model_weights(c->q.m);
    size_t nw = evlm_weights_count(w), n = 0;
    evlm_tensor *all = malloc(sizeof *all * (nw + n_extra));
    if (!all) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nw; i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        if (!find_factored(c, t->name)) all[n++] = *t;
    }
    for (size_t i = 0; i < n_extra; i++) all[n++] = extra[i];
    if (evlm_path_join(to, sizeof to, out_dir, "model.safetensors") != EVLM_OK)
        st = evlm__fail(EVLM_ERR_ARG, "%s: path too long", out_dir);
    if (st == EVLM_OK) st = evlm_safetensors_write(to, all, n);
    free(all);
    return st;
}

/* ---- the pass ------------------------------------------------------------------------------- */

static evlm_status check_params(const evlm_lowrank_params *p) {
    if (p->method != EVLM_LRMETHOD_SVD && p->method != EVLM_LRMETHOD_ASVD &&
        p->method != EVLM_LRMETHOD_SVD_LLM)
        return evlm__fail(EVLM_ERR_ARG, "method %d is not a low-rank method", (int)p->method);
    if ((p->rank > 0) == (p->ratio > 0))
        return evlm__fail(EVLM_ERR_ARG, "give rank or ratio (one of them)");
    if (p->rank < 0) return evlm__fail(EVLM_ERR_ARG, "rank %d is negative", p->rank);
    if (p->ratio < 0 || p->ratio >= 1)
        return evlm__fail(EVLM_ERR_ARG, "ratio %g is outside (0, 1)", p->ratio);
    if (p->method == EVLM_LRMETHOD_ASVD && !(p->alpha > 0 && p->alpha <= 4))
        return evlm__fail(EVLM_ERR_ARG, "alpha %g is outside (0, 4]", p->alpha);
    if (p->type != EVLM_TYPE_F32 && p->type != EVLM_TYPE_F16 && p->type != EVLM_TYPE_BF16 &&
        p->type != EVLM_TYPE_Q8_0 && p->type != EVLM_TYPE_Q4_0)
        return evlm__fail(EVLM_ERR_ARG, "type %s: factors are f32, f16, bf16, q8_0 or q4_0",
                          evlm_type_name(p->type));
    if (evlm_type_is_quant(p->type) && p->rank % 32)
        return evlm__fail(EVLM_ERR_ARG, "rank %d: %s factors need a multiple of 32", p->rank,
                          evlm_type_name(p->type));
    if (p->method != EVLM_LRMETHOD_SVD && !p->calib_text && !p->calib_jsonl)
        return evlm__fail(EVLM_ERR_ARG, "%s needs calibration data (calib_text or calib_jsonl)",
                          p->method == EVLM_LRMETHOD_ASVD ? "ASVD" : "SVD-LLM");
    return EVLM_OK;
}

static evlm_status run(lctx *c, const char *in_dir, const char *out, evlm_lowrank_report *rep) {
    const evlm_lowrank_params *p = c->p;
    collect_walk cw = {NULL, 0, 0, EVLM_OK};
    evlm__model_matrices(c->q.m, collect_one, &cw);
    c->t = cw.t;
    c->n = cw.n;
    EVLM_TRY(cw.st);
    if (evlm__model_decoder(c->q.m)->lr_max_rank > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: the model holds low-rank factors already",
                          in_dir);
    for (int i = 0; i < c->n; i++) {
        lrm *x = &c->t[i];
        if (!stem_end(x->src->name) || strlen(x->src->name) + 4 > sizeof x->name_a)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "tensor '%s': not a '<name>.weight' matrix",
                              x->src->name);
        int len = (int)(stem_end(x->src->name) - x->src->name);
        snprintf(x->name_a, sizeof x->name_a, "%.*s.lowrank_a", len, x->src->name);
        snprintf(x->name_b, sizeof x->name_b, "%.*s.lowrank_b", len, x->src->name);
        for (int j = 0; j < p->n_keep; j++)
            if (fnmatch(p->keep[j], x->src->name, 0) == 0) x->keep = true;
        if (!evlm_type_is_file_float(x->src->type)) x->keep = true; /* quantized source */
    }
    const bool calib = p->calib_text || p->calib_jsonl;
    if (calib) {
        EVLM_TRY(evlm__q_load_calib(&c->q));
        EVLM_TRY(evlm__q_calibrate(&c->q, true));
    }
    /* ranks */
    if (p->rank > 0) {
        for (int i = 0; i < c->n; i++) {
            lrm *x = &c->t[i];
            int64_t kmax = x->n < x->k ? x->n : x->k;
            x->r = x->keep || !factored_pays(p->rank, x->n, x->k) || p->rank > kmax ? 0 : p->rank;
        }
    } else {
        for (int i = 0; i < c->n; i++) { /* the energies of every candidate */
            lrm *x = &c->t[i];
            progress(c, "measure", i, c->n);
            if (x->keep) continue;
            evlm__lr d;
            EVLM_TRY(decompose(c, x, &d));
            x->kmax = d.kmax;
            x->e = malloc(sizeof(double) * (size_t)d.kmax);
            if (!x->e) {
                evlm__lr_free(&d);
                return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            }
            for (int64_t j = 0; j < d.kmax; j++) x->e[j] = d.total > 0 ? d.e[j] / d.total : 0;
            evlm__lr_free(&d);
        }
        progress(c, "measure", c->n, c->n);
        EVLM_TRY(allocate(c));
    }
    /* factors */
    size_t n_extra = 0;
    evlm_tensor *extra = calloc((size_t)c->n * 2 + 1, sizeof *extra);
    if (!extra) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = EVLM_OK;
    for (int i = 0; i < c->n && st == EVLM_OK; i++) {
        lrm *x = &c->t[i];
        progress(c, "factor", i, c->n);
        if (x->r == 0) continue;
        evlm__lr d;
        st = decompose(c, x, &d);
        if (st == EVLM_OK) st = factor(c, x, &d);
        evlm__lr_free(&d);
        if (st != EVLM_OK) break;
        extra[n_extra++] = view(x->name_a, p->type, x->k, x->r, x->a);
        extra[n_extra++] = view(x->name_b, p->type, x->r, x->n, x->b);
    }
    progress(c, "factor", c->n, c->n);
    if (st == EVLM_OK) {
        if (ends_with(out, ".gguf"))
            st = evlm_gguf_export_hf_extra(in_dir, out, type_for, c, extra, n_extra, write_progress,
                                           c);
        else
            st = write_folder(c, in_dir, out, extra, n_extra);
    }
    free(extra);
    if (st != EVLM_OK) return st;
    /* the report */
    rep->t = calloc((size_t)c->n, sizeof *rep->t);
    if (!rep->t) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n; i++) {
        const lrm *x = &c->t[i];
        evlm_lowrank_matrix_report *r = &rep->t[rep->n++];
        snprintf(r->name, sizeof r->name, "%s", x->src->name);
        r->rows = x->n;
        r->cols = x->k;
        r->rank = (int)x->r;
        r->params = cost(x, x->r);
        r->rel_err = x->r ? x->rel_err : 0;
        rep->dense_params += x->n * x->k;
        rep->params += r->params;
    }
    if (calib) {
        progress(c, "evaluate", 0, 1);
        evlm_model_params mp = evlm_model_default_params();
        mp.n_threads = p->n_threads;
        evlm_model *om = NULL;
        st = evlm_model_load(out, &mp, &om);
        if (st == EVLM_OK) st = evlm__q_mean_kl(&c->q, om, &rep->kl_mean);
        rep->n_calib_rows = c->q.kl_rows;
        evlm_model_free(om);
        progress(c, "evaluate", 1, 1);
    }
    return st;
}

evlm_status evlm_lowrank(const char *in_dir, const char *out, const evlm_lowrank_params *params,
                         evlm_lowrank_report *rep) {
    memset(rep, 0, sizeof *rep);
    rep->kl_mean = -1;
    if (!in_dir || !out) return evlm__fail(EVLM_ERR_ARG, "evlm_lowrank: NULL path");
    evlm_lowrank_params p = params ? *params : evlm_lowrank_default_params();
    EVLM_TRY(check_params(&p));
    if (!ends_with(out, ".gguf") && !evlm_type_is_file_float(p.type))
        return evlm__fail(EVLM_ERR_ARG,
                          "%s: a Hugging Face folder holds float factors (f32, f16, bf16), not %s",
                          out, evlm_type_name(p.type));
    evlm_dir d = evlm_dir_folder(in_dir);
    if (!evlm_dir_has(&d, "config.json"))
        return evlm__fail(EVLM_ERR_ARG,
                          "%s: lowrank reads a Hugging Face model folder (config.json, "
                          "*.safetensors)",
                          in_dir);
    lctx c;
    memset(&c, 0, sizeof c);
    c.p = &p;
    c.step = evlm_type_is_quant(p.type) ? 32 : 1;
    c.qp = evlm_quantize_default_params();
    c.qp.calib_text = p.calib_text;
    c.qp.calib_jsonl = p.calib_jsonl;
    if (p.calib_tokens > 1) c.qp.calib_tokens = p.calib_tokens;
    if (p.calib_items > 0) c.qp.calib_items = p.calib_items;
    c.qp.progress = p.progress;
    c.qp.user = p.user;
    c.q.p = &c.qp;
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = p.n_threads;
    mp.keep_layout = true; /* the source tensors are read back */
    EVLM_TRY(evlm_model_load(in_dir, &mp, &c.q.m));
    evlm_status st = run(&c, in_dir, out, rep);
    for (int i = 0; i < c.n; i++) {
        free(c.t[i].e);
        free(c.t[i].a);
        free(c.t[i].b);
    }
    free(c.t);
    evlm__q_free_calib(&c.q);
    evlm_model_free(c.q.m);
    if (st != EVLM_OK) evlm_lowrank_report_free(rep);
    return st;
}
