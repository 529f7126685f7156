/*
 * quantize.c - the quantization pipeline of evlm_quantize (the steps are described in
 * evlm_compress.h): calibration, per-matrix quantization, mixed-precision allocation, the GGUF
 * export and the checks of the written file.
 * The methods (rtn, awq, gptq) plug in through pipeline.h's interface; the model is seen through
 * model/model.h (its matrices with their roles).
 * Not here: the GGUF container (io/gguf*), the methods and the quantizers themselves.
 */
#include "compress/pipeline.h"
#include "compress/calib.h"
#include "compress/calib_set.h"
#include "compress/gptq.h"
#include "compress/prune.h"
#include "compress/rtn.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "io/gguf_names.h"
#include "quant/quants.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KL_ROWS   512 /* positions whose float distributions are kept for KL */
#define RESERVOIR 256

void evlm__q_progress(const qctx *q, const char *stage, int done, int total) {
    if (q->p->progress) q->p->progress(q->p->user, stage, done, total);
}

evlm_quantize_params evlm_quantize_default_params(void) {
    evlm_quantize_params p;
    memset(&p, 0, sizeof p);
    p.type = EVLM_TYPE_Q8_0;
    p.vision = EVLM_TYPE_Q8_0;
    p.calib_tokens = 2048;
    p.calib_items = 16;
    p.lowrank_type = EVLM_TYPE_F16;
    return p;
}

void evlm_quantize_report_free(evlm_quantize_report *r) {
    free(r->t);
    memset(r, 0, sizeof *r);
}

static double type_bits(evlm_type t) {
    return 8.0 * (double)evlm_type_size(t) / evlm_type_block(t);
}

static bool can_hold(const evlm_tensor *t, evlm_type to) {
    if (to == t->type) return true;
    if (!evlm_type_is_file_float(t->type)) return false;
    if (evlm_type_is_quant(to) || evlm_type_traits_of(to)->kq)
        return t->n_dims == 2 && t->ne[0] % evlm_type_block(to) == 0;
    return evlm_type_is_file_float(to);
}

/* ---- which tensor is what ---------------------------------------------------------------------
 */

static qt *find(qctx *q, const evlm_tensor *t) {
    for (int i = 0; i < q->n; i++)
        if (q->t[i].src == t) return &q->t[i];
    return NULL;
}

qt *evlm__q_find_name(qctx *q, const char *name) {
    for (int i = 0; i < q->n; i++)
        if (!strcmp(q->t[i].src->name, name)) return &q->t[i];
    return NULL;
}

static void mark(qctx *q, const evlm_tensor *t, int kind) {
    qt *x = t ? find(q, t) : NULL;
    if (x && x->kind == K_OTHER) x->kind = kind;
}

typedef struct {
    qctx *q;
    qt *embed;
    evlm_status st;
} classify_walk;

/* One matrix of the model (family.h): decoder matrices carry their calibration group and the
 * binding the sensitivity pass swaps; the embedding and head are quantized like the decoder;
 * the vision tower and connector take the vision type. */
static void classify_one(void *user, const evlm_tensor **slot, evlm_matrix_role role, int layer) {
    static const char *const groups[] = {
        [EVLM_ROLE_ATTN_Q] = "attn_qkv",      [EVLM_ROLE_ATTN_K] = "attn_qkv",
        [EVLM_ROLE_ATTN_V] = "attn_qkv",      [EVLM_ROLE_ATTN_O] = "attn_o",
        [EVLM_ROLE_MLP_GATE] = "ffn_gate_up", [EVLM_ROLE_MLP_UP] = "ffn_gate_up",
        [EVLM_ROLE_MLP_DOWN] = "ffn_down",
    };
    classify_walk *c = user;
    qctx *q = c->q;
    if (c->st != EVLM_OK) return;
    if (role <= EVLM_ROLE_MLP_DOWN) {
        qt *x = find(q, *slot);
        if (!x) {
            c->st =
                evlm__fail(EVLM_ERR_FORMAT, "layer %d: a matrix is not in the weight set", layer);
            return;
        }
        x->kind = K_LM;
        x->slot = slot;
        x->layer = layer;
        x->group = groups[role];
        q->lm[layer * 7 + (int)role] = x;
    } else if (role == EVLM_ROLE_EMBED) {
        mark(q, *slot, K_EMBED);
        c->embed = find(q, *slot);
        if (c->embed) c->embed->slot = slot;
    } else if (role == EVLM_ROLE_HEAD) {
        mark(q, *slot, K_EMBED);
        qt *h = find(q, *slot);
        if (h) h->head = true;
        if (h && h == c->embed)
            h->slot2 = slot; /* tied */
        else if (h)
            h->slot = slot;
    } else {
        mark(q, *slot, K_VISION);
    }
}

/* llama.cpp's use_more_bits (llama-quant.cpp): the first and last eighth of n layers and every
 * third layer between */
static bool more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The Q4_K_M mix of llama.cpp for one matrix given Q4_K: attention v and ffn down of the layers
 * more_bits picks, and the output head (a tied embedding is the head), at Q6_K. */
static evlm_type kq_mix_type(const qctx *q, const qt *x) {
    const int n_layers = evlm__model_config(q->m)->n_layers;
    if (x->head) return EVLM_TYPE_Q6_K;
    if (x->kind != K_LM || x->layer < 0 || x->layer >= n_layers) return x->to;
    qt *const *row = q->lm + x->layer * 7;
    if ((row[EVLM_ROLE_ATTN_V] == x || row[EVLM_ROLE_MLP_DOWN] == x) &&
        more_bits(x->layer, n_layers))
        return EVLM_TYPE_Q6_K;
    return x->to;
}

static evlm_status classify(qctx *q) {
    const evlm_quantize_params *p = q->p;
    classify_walk c = {q, NULL, EVLM_OK};
    evlm__model_matrices(q->m, classify_one, &c);
    EVLM_TRY(c.st);
    EVLM_TRY(evlm__q_mark_factors(q)); /* quantize_lowrank.c */
    for (int i = 0; i < q->n; i++) {
        qt *x = &q->t[i];
        x->rel_err = x->kl = x->sparsity = -1;
        x->method = "float";
        switch (x->kind) {
        case K_LM:
            x->to = p->type;
            break;
        case K_EMBED:
        case K_LOWRANK:
            x->to = p->type;
            break;
        case K_VISION:
            x->to = p->vision;
            break;
        default:
            x->to = x->src->type;
            break;
        }
        if (x->kind != K_OTHER && !p->keep_dtype && evlm_type_traits_of(x->to)->kq) {
            if (p->kq_mix && x->to == EVLM_TYPE_Q4_K) x->to = kq_mix_type(q, x);
            /* widths that do not split into 256s: Q8_0 (llama.cpp takes Q5_0 / Q5_1 / Q8_0,
             * which evlm does not all have) */
            if (!can_hold(x->src, x->to) && can_hold(x->src, EVLM_TYPE_Q8_0))
                x->to = EVLM_TYPE_Q8_0;
        }
        if (x->kind != K_OTHER && (p->keep_dtype || !can_hold(x->src, x->to)))
            x->to = x->src->type; /* keep_dtype: evlm prune without a type */
        for (int k = 0; k < p->n_keep; k++) {
            if (fnmatch(p->keep[k].pattern, x->src->name, 0) != 0) continue;
            if (!can_hold(x->src, p->keep[k].type))
                return evlm__fail(EVLM_ERR_ARG,
                                  "keep pattern '%s': tensor '%s' (%s, %lld columns) cannot be "
                                  "stored as %s",
                                  p->keep[k].pattern, x->src->name, evlm_type_name(x->src->type),
                                  (long long)x->src->ne[0], evlm_type_name(p->keep[k].type));
            x->to = p->keep[k].type;
            x->pinned = true;
        }
        if (x->kind != K_OTHER)
            x->method = x->pinned                                            ? "keep"
                        : evlm_type_is_quant(x->to) || x->to != x->src->type ? "rtn"
                                                                             : "float";
    }
    return EVLM_OK;
}

/* ---- the calibration set ------------------------------------------------------------------------
 */

static evlm_status load_calib(qctx *q) {
    evlm__calib_set cs = {0};
    evlm_status st = EVLM_OK;
    if (q->p->calib_text)
        st = evlm__calib_set_text(&cs, q->m, q->p->calib_text, q->p->calib_tokens);
    if (st == EVLM_OK && q->p->calib_jsonl)
        st = evlm__calib_set_jsonl(&cs, q->m, q->p->calib_jsonl, q->p->calib_items);
    q->prompts = cs.prompts; /* freed with q */
    q->texts = cs.texts;
    q->images = cs.images;
    q->n_prompts = cs.n;
    return st;
}

/* log-softmax of x [n] into out (float) */
static void log_softmax(const float *x, int n, float *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = (double)x[i] > mx ? (double)x[i] : mx;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++) out[i] = (float)((double)x[i] - lse);
}

static double kl_row(const float *ref_logp, const float *logits, int n, float *tmp) {
    log_softmax(logits, n, tmp);
    double kl = 0;
    for (int i = 0; i < n; i++)
        kl += exp((double)ref_logp[i]) * ((double)ref_logp[i] - (double)tmp[i]);
    return kl > 0 ? kl : 0;
}

static int prompt_len(const evlm_prompt *pr) {
    size_t n;
    evlm_prompt_ids(pr, &n);
    return (int)n;
}

static evlm_status new_ctx(evlm_model *m, const qctx *q, evlm_context **out) {
    int max = 1;
    for (int i = 0; i < q->n_prompts; i++)
        max = prompt_len(q->prompts[i]) > max ? prompt_len(q->prompts[i]) : max;
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = max;
    return evlm_context_new(m, &cp, out);
}

/* Mean KL of model m over the kept positions against the float distributions. */
static evlm_status mean_kl(const qctx *q, evlm_model *m, double *out) {
    const int V = evlm_model_n_vocab(m);
    evlm_context *c;
    EVLM_TRY(new_ctx(m, q, &c));
    float *lg = NULL, *tmp = malloc(sizeof(float) * (size_t)V);
    double sum = 0;
    int row = 0;
    evlm_status st = tmp ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < q->n_kl_prompts && st == EVLM_OK; i++) {
        int n = prompt_len(q->prompts[i]);
        float *nl = realloc(lg, sizeof(float) * (size_t)V * (size_t)n);
        if (!nl) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            break;
        }
        lg = nl;
        if ((st = evlm_context_truncate(c, 0)) != EVLM_OK) break;
        if ((st = evlm_decode_prompt(c, q->prompts[i], lg, true)) != EVLM_OK) break;
        for (int r = 0; r < n && row < q->kl_rows; r++, row++)
            sum += kl_row(q->ref_logp + (size_t)row * V, lg + (size_t)r * V, V, tmp);
    }
    free(lg);
    free(tmp);
    evlm_context_free(c);
    *out = row ? sum / row : 0;
    return st;
}

/* One pass of q->m (as its slots now are) over the calibration set into q->calib's observer:
 * sequential pruning's statistics of layer l behind the already pruned layers 0..l-1. */
evlm_status evlm__q_observe_pass(qctx *q) {
    evlm_context *c;
    EVLM_TRY(new_ctx(q->m, q, &c));
    evlm__context_observe(c, evlm_calib_observe, q->calib);
    evlm_status st = EVLM_OK;
    for (int i = 0; i < q->n_prompts && st == EVLM_OK; i++) {
        st = evlm_context_truncate(c, 0);
        if (st == EVLM_OK) st = evlm_decode_prompt(c, q->prompts[i], NULL, false);
    }
    evlm_context_free(c);
    if (st == EVLM_OK && evlm_calib_status(q->calib) != EVLM_OK)
        st = evlm__fail(evlm_calib_status(q->calib), "calibration: %s", evlm_calib_error(q->calib));
    return st;
}

/* The float model over the calibration set: statistics of every matmul input, and the float
 * next-token distributions of the first positions. */
static evlm_status calibrate(qctx *q, bool hessian) {
    evlm_calib_params cpar = evlm_calib_default_params();
    cpar.hessian = hessian;
    cpar.act_stats = true;
    cpar.reservoir_rows = RESERVOIR;
    EVLM_TRY(evlm_calib_new(&cpar, &q->calib));
    const int V = evlm_model_n_vocab(q->m);
    int rows = 0;
    for (int i = 0; i < q->n_prompts && rows < KL_ROWS; i++, q->n_kl_prompts++)
        rows += prompt_len(q->prompts[i]);
    q->kl_rows = rows < KL_ROWS ? rows : KL_ROWS;
    q->ref_logp = malloc(sizeof(float) * (size_t)V * (size_t)q->kl_rows);
    if (!q->ref_logp)
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory for %d calibration distributions",
                          q->kl_rows);
    evlm_context *c;
    EVLM_TRY(new_ctx(q->m, q, &c));
    evlm__context_observe(c, evlm_calib_observe, q->calib);
    float *lg = NULL;
    int row = 0;
    evlm_status st = EVLM_OK;
    for (int i = 0; i < q->n_prompts && st == EVLM_OK; i++) {
        evlm__q_progress(q, "calibrate", i, q->n_prompts);
        int n = prompt_len(q->prompts[i]);
        bool keep = i < q->n_kl_prompts;
        if (keep) {
            float *nl = realloc(lg, sizeof(float) * (size_t)V * (size_t)n);
            if (!nl) {
                st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
                break;
            }
            lg = nl;
        }
        if ((st = evlm_context_truncate(c, 0)) != EVLM_OK) break;
        if ((st = evlm_decode_prompt(c, q->prompts[i], keep ? lg : NULL, keep)) != EVLM_OK) break;
        for (int r = 0; keep && r < n && row < q->kl_rows; r++, row++)
            log_softmax(lg + (size_t)r * V, V, q->ref_logp + (size_t)row * V);
    }
    evlm__q_progress(q, "calibrate", q->n_prompts, q->n_prompts);
    free(lg);
    evlm_context_free(c);
    if (st == EVLM_OK && evlm_calib_status(q->calib) != EVLM_OK)
        st = evlm__fail(evlm_calib_status(q->calib), "calibration: %s", evlm_calib_error(q->calib));
    return st;
}

/* ---- quantizing one matrix ---------------------------------------------------------------------
 */

float *evlm__q_widen(const evlm_tensor *t) {
    int64_t n = t->ne[1], k = t->ne[0];
    float *w = malloc(sizeof(float) * (size_t)(n * k));
    if (!w) return NULL;
    for (int64_t r = 0; r < n; r++)
        evlm_dequantize_row(t->type, (const char *)t->data + (size_t)r * t->nb[1], w + r * k, k);
    return w;
}

void evlm__q_set_view(qt *x, evlm_type type, void *data) {
    x->view = *x->src;
    x->view.type = type;
    x->view.data = data;
    evlm_tensor_set_contiguous(&x->view);
}

/* Error of quantized q of float w: on the calibration rows of its group, else in weight space. */
double evlm__q_rel_error(const qctx *q, const qt *x, const float *w, const void *qd) {
    int64_t n = x->src->ne[1], k = x->src->ne[0];
    double err = 0, ref = 0;
    const evlm_calib_stat *st =
        q->calib && x->group ? evlm_calib_find(q->calib, x->layer, x->group) : NULL;
    if (st && st->n_kept > 0 && st->k == k) {
        if (evlm_quant_error_rows(x->to, w, qd, n, k, st->rows, st->n_kept, &err, &ref) != EVLM_OK)
            return -1;
        return ref > 0 ? err / ref : 0;
    }
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!row) return -1;
    for (int64_t r = 0; r < n; r++) {
        evlm_dequantize_row(x->to, (const char *)qd + (size_t)r * evlm_row_bytes(x->to, k), row, k);
        for (int64_t j = 0; j < k; j++) {
            double d = (double)w[r * k + j] - (double)row[j];
            err += d * d;
            ref += (double)w[r * k + j] * (double)w[r * k + j];
        }
    }
    free(row);
    return ref > 0 ? err / ref : 0;
}

evlm_status evlm__q_alloc(qt *x) {
    free(x->qdata);
    x->qdata = malloc(evlm_row_bytes(x->to, x->src->ne[0]) * (size_t)x->src->ne[1]);
    if (!x->qdata) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", x->src->name);
    return EVLM_OK;
}

void evlm__q_finish(const qctx *q, qt *x, const float *w) {
    evlm__q_set_view(x, x->to, x->qdata);
    x->rel_err = evlm__q_rel_error(q, x, w, x->qdata);
}

/* ---- mixed precision ----------------------------------------------------------------------------
 */

static bool adjustable(const qt *x) {
    return (x->kind == K_LM || x->kind == K_EMBED) && !x->pinned && x->slot &&
           evlm_type_is_quant(x->to);
}

static evlm_status sensitivity(qctx *q) {
    int total = 0, done = 0;
    for (int i = 0; i < q->n; i++) total += adjustable(&q->t[i]);
    for (int i = 0; i < q->n; i++) {
        qt *x = &q->t[i];
        if (!adjustable(x)) continue;
        evlm__q_progress(q, "sensitivity", done++, total);
        float *w = evlm__q_widen(x->src);
        if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", x->src->name);
        int64_t n = x->src->ne[1], k = x->src->ne[0];
        void *qd = malloc(evlm_row_bytes(q->p->type, k) * (size_t)n);
        evlm_status st = qd ? evlm_rtn_quantize(q->p->type, w, n, k, qd)
                            : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        free(w);
        if (st == EVLM_OK) {
            evlm_tensor tmp = *x->src;
            tmp.type = q->p->type;
            tmp.data = qd;
            evlm_tensor_set_contiguous(&tmp);
            const evlm_tensor *orig = *x->slot;
            *x->slot = &tmp; /* only this matrix quantized */
            if (x->slot2) *x->slot2 = &tmp;
            st = mean_kl(q, q->m, &x->kl);
            *x->slot = orig;
            if (x->slot2) *x->slot2 = orig;
        }
        free(qd);
        EVLM_TRY(st);
    }
    evlm__q_progress(q, "sensitivity", total, total);
    return EVLM_OK;
}

static double file_bits(const qctx *q, int64_t *elements) {
    double bits = 0;
    int64_t el = 0;
    for (int i = 0; i < q->n; i++) {
        int64_t e = evlm_tensor_nelements(q->t[i].src);
        bits += (double)e * type_bits(q->t[i].to);
        el += e;
    }
    *elements = el;
    return bits;
}

/* Raises the most sensitive matrices (KL per extra bit) to Q8_0 while the budget allows. */
static evlm_status allocate(qctx *q) {
    int64_t el;
    double bits = file_bits(q, &el);
    double budget = q->p->target_bpw > 0 ? q->p->target_bpw * (double)el : 1e300;
    if (q->p->max_size_mb > 0 && q->p->max_size_mb * 8e6 < budget) budget = q->p->max_size_mb * 8e6;
    if (bits > budget)
        return evlm__fail(EVLM_ERR_ARG,
                          "the budget (%.3f bits per weight) is below what type %s gives "
                          "(%.3f): choose a smaller type or a larger budget",
                          budget / (double)el, evlm_type_name(q->p->type), bits / (double)el);
    for (;;) {
        qt *best = NULL;
        double best_score = 0;
        for (int i = 0; i < q->n; i++) {
            qt *x = &q->t[i];
            if (!adjustable(x) || x->to == EVLM_TYPE_Q8_0 || x->kl <= 0) continue;
            double extra = (double)evlm_tensor_nelements(x->src) *
                           (type_bits(EVLM_TYPE_Q8_0) - type_bits(x->to));
            if (bits + extra > budget) continue;
            double score = x->kl / extra;
            if (!best || score > best_score) {
                best = x;
                best_score = score;
            }
        }
        if (!best) break;
        bits += (double)evlm_tensor_nelements(best->src) *
                (type_bits(EVLM_TYPE_Q8_0) - type_bits(best->to));
        best->to = EVLM_TYPE_Q8_0;
    }
    return EVLM_OK;
}

/* ---- writing
 * --------------------------------------------------------------------------------------- */

static evlm_type type_for(void *ctx, const char *name, const evlm_tensor *t,
                          const evlm_tensor **src) {
    qctx *q = ctx;
    (void)t;
    qt *x = evlm__q_find_name(q, name);
    if (!x) return t->type;
    if (x->qdata || x->fdata) *src = &x->view;
    return x->to;
}

static int write_progress(void *ctx, uint64_t done, uint64_t total) {
    const qctx *q = ctx;
    evlm__q_progress(q, "write", (int)(done >> 20), (int)(total >> 20));
    return 0;
}

/* Cosine similarity of the image features (encoder + connector) of the written model with the
 * float model's, over the calibration images (mean over images). */
static evlm_status vision_cosine(const qctx *q, evlm_model *qm, double *out) {
    double sum = 0;
    int n = 0;
    *out = -1;
    for (int i = 0; i < q->n_prompts; i++) {
        int rows_f = 0, rows_q = 0;
        const float *f = evlm__prompt_features(q->prompts[i], &rows_f);
        if (!f || !rows_f || !q->images[i]) continue;
        evlm_image_input in = {.path = q->images[i]};
        evlm_prompt *pq;
        EVLM_TRY(evlm_prompt_new(qm, q->texts[i], false, &in, 1, &pq));
        const float *g = evlm__prompt_features(pq, &rows_q);
        if (g && rows_q == rows_f) {
            size_t len = (size_t)rows_f * (size_t)evlm__model_config(qm)->hidden_size;
            double dot = 0, na = 0, nb = 0;
            for (size_t j = 0; j < len; j++) {
                dot += (double)f[j] * (double)g[j];
                na += (double)f[j] * (double)f[j];
                nb += (double)g[j] * (double)g[j];
            }
            sum += na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
            n++;
        }
        evlm_prompt_free(pq);
    }
    if (n) *out = sum / n;
    return EVLM_OK;
}

evlm_status evlm_quantize(const char *in_dir, const char *out_gguf,
                          const evlm_quantize_params *params, evlm_quantize_report *report) {
    evlm_quantize_report own;
    evlm_quantize_report *rep = report ? report : &own; /* report is optional */
    memset(rep, 0, sizeof *rep);
    rep->kl_mean = rep->vision_cos = -1;
    evlm_quantize_params p = params ? *params : evlm_quantize_default_params();
    bool float_type =
        p.type == EVLM_TYPE_F32 || p.type == EVLM_TYPE_F16 || p.type == EVLM_TYPE_BF16;
    const bool kq = evlm_type_traits_of(p.type)->kq;
    if (!p.keep_dtype && !evlm_type_is_file_quant(p.type) && !float_type && !kq)
        return evlm__fail(EVLM_ERR_ARG,
                          "type must be Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, F16, BF16 or F32");
    if (p.kq_mix && (p.type != EVLM_TYPE_Q4_K || p.keep_dtype))
        return evlm__fail(EVLM_ERR_ARG, "the Q4_K_M mix needs type Q4_K, not %s",
                          evlm_type_name(p.type));
    if (!p.keep_dtype && !evlm_type_is_file_quant(p.vision) && p.vision != EVLM_TYPE_F16 &&
        !(float_type && evlm_type_is_file_float(p.vision)))
        return evlm__fail(EVLM_ERR_ARG, "vision must be Q8_0, Q4_0, Q4_1 or F16");
    bool mixed = p.target_bpw > 0 || p.max_size_mb > 0;
    bool have_calib = p.calib_text || p.calib_jsonl;
    const evlm__qmethod *meth = evlm__qmethod_find(p.method);
    if (!meth)
        return evlm__fail(EVLM_ERR_ARG, "method %d is not a quantization method", (int)p.method);
    if ((p.keep_dtype || float_type) && p.method != EVLM_QMETHOD_RTN)
        return evlm__fail(EVLM_ERR_ARG, "method %s quantizes: type must be Q8_0, Q4_0 or Q4_1",
                          meth->name);
    if ((meth->calibration || mixed) && !have_calib)
        return evlm__fail(EVLM_ERR_ARG, "%s needs calibration data (calib_text or calib_jsonl)",
                          meth->calibration ? meth->title : "mixed precision");
    if (kq && !p.keep_dtype &&
        (p.method != EVLM_QMETHOD_RTN || mixed || p.prune.method != EVLM_PRUNE_NONE ||
         p.lowrank_comp > 0 || p.lowrank_bpw > 0))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s is written with ggml's own scale search (method rtn) only: awq, "
                          "gptq, mixed precision, pruning and low-rank compensation with k-quants "
                          "are not done",
                          evlm_type_name(p.type));
    EVLM_TRY(evlm__prune_validate(&p, meth));
    const bool lowrank = p.lowrank_comp > 0 || p.lowrank_bpw > 0;
    if (p.lowrank_comp < 0 || p.lowrank_bpw < 0 || (p.lowrank_comp > 0 && p.lowrank_bpw > 0))
        return evlm__fail(EVLM_ERR_ARG, "give lowrank_comp (>= 0) or lowrank_bpw (>= 0), not both");
    if (lowrank && p.lowrank_type != EVLM_TYPE_F16 && p.lowrank_type != EVLM_TYPE_Q8_0 &&
        p.lowrank_type != EVLM_TYPE_BF16 && p.lowrank_type != EVLM_TYPE_F32)
        return evlm__fail(EVLM_ERR_ARG, "lowrank_type: f16, q8_0, bf16 or f32, not %s",
                          evlm_type_name(p.lowrank_type));
    if (lowrank && evlm_type_is_quant(p.lowrank_type) && p.lowrank_comp % 32)
        return evlm__fail(EVLM_ERR_ARG, "lowrank_comp %d: %s factors need a multiple of 32",
                          p.lowrank_comp, evlm_type_name(p.lowrank_type));
    if (lowrank && !have_calib)
        return evlm__fail(EVLM_ERR_ARG,
                          "low-rank compensation needs calibration data (calib_text or "
                          "calib_jsonl)");
    if (lowrank && p.method == EVLM_QMETHOD_AWQ)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "low-rank compensation after AWQ is not done (use rtn or gptq)");
    if (lowrank && p.keep_dtype)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "low-rank compensation corrects a quantization: give a quantized type");
    if (p.calib_tokens < 2) p.calib_tokens = 2;
    if (p.calib_items < 1) p.calib_items = 1;
    evlm_dir d = evlm_dir_folder(in_dir);
    if (!evlm_dir_has(&d, "config.json"))
        return evlm__fail(
            EVLM_ERR_ARG,
            "%s: quantize reads a Hugging Face model folder (config.json, *.safetensors)", in_dir);

    qctx q = {0};
    q.p = &p;
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = p.n_threads;
    mp.keep_layout = true; /* widen / float_copy / the export read the source tensors' bytes */
    EVLM_TRY(evlm_model_load(in_dir, &mp, &q.m));
    evlm_model *qm = NULL;
    evlm_status st = EVLM_OK;
    const evlm_weights *weights = evlm__model_weights(q.m);
    const int n_layers = evlm__model_config(q.m)->n_layers;
    q.n = (int)evlm_weights_count(weights);
    q.t = calloc((size_t)q.n, sizeof *q.t);
    q.lm = calloc((size_t)n_layers * 7 + 1, sizeof *q.lm);
    if (!q.t || !q.lm) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == EVLM_OK && i < q.n; i++) q.t[i].src = evlm_weights_at(weights, (size_t)i);
    if (st == EVLM_OK) st = classify(&q);
    if (st == EVLM_OK) st = evlm__q_lowrank_check(&q, in_dir); /* factored models */
    if (st == EVLM_OK && have_calib) st = load_calib(&q);
    if (st == EVLM_OK && have_calib)
        st = calibrate(&q, meth->hessian || evlm__prune_needs_hessian(&p) || lowrank);
    if (st == EVLM_OK && mixed) st = sensitivity(&q);
    if (st == EVLM_OK && mixed) st = allocate(&q);
    /* the language model's matrices */
    int total = 0, done = 0;
    for (int i = 0; i < q.n; i++) total += q.t[i].kind == K_LM;
    if (st == EVLM_OK && evlm__prune_needs_hessian(&p)) {
        st = evlm__prune_layers(&q, meth); /* layer by layer behind the pruned layers */
    } else if (st == EVLM_OK && meth->layer) {
        for (int l = 0; l < n_layers && st == EVLM_OK; l++) {
            evlm__q_progress(&q, "quantize", l, n_layers);
            st = meth->layer(&q, l);
        }
    } else {
        for (int i = 0; i < q.n && st == EVLM_OK; i++) {
            qt *x = &q.t[i];
            bool prune = evlm__prune_applies(&q, x);
            bool kq_to = evlm_type_traits_of(x->to)->kq;
            if (x->kind != K_LM || x->pinned || !(evlm_type_is_quant(x->to) || kq_to || prune))
                continue;
            evlm__q_progress(&q, "quantize", done++, total);
            float *w = evlm__q_widen(x->src);
            st = !w      ? evlm__fail(EVLM_ERR_NOMEM, "out of memory")
                 : prune ? evlm__prune_matrix(&q, x, w, meth)
                         : meth->matrix(&q, x, w);
            free(w);
        }
    }
    if (st == EVLM_OK && !evlm__prune_needs_hessian(&p)) /* else the prune stage's bar */
        evlm__q_progress(&q, "quantize", total, total);
    if (st == EVLM_OK) st = evlm__q_factors(&q); /* low-rank factors: rtn or gptq */
    if (st == EVLM_OK) st = evlm__prune_vision(&q);
    int64_t el = 0;
    double bits = st == EVLM_OK ? file_bits(&q, &el) : 0;
    evlm__lrcomp comp = {0};
    bool wrote_mmproj = false;
    if (st == EVLM_OK && lowrank) st = evlm__q_lowrank_comp(&q, el, &comp);
    if (st == EVLM_OK)
        st = p.mmproj
                 ? evlm_gguf_export_llamacpp(in_dir, out_gguf, p.mmproj, &wrote_mmproj, type_for,
                                             &q, comp.t, (size_t)comp.n, write_progress, &q)
                 : evlm_gguf_export_hf_extra(in_dir, out_gguf, type_for, &q, comp.t, (size_t)comp.n,
                                             write_progress, &q);
    /* what was written */
    if (st == EVLM_OK) {
        rep->t = calloc((size_t)(q.n + comp.n), sizeof *rep->t);
        if (!rep->t) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    bits += comp.bits;
    for (int i = 0; st == EVLM_OK && i < q.n; i++) {
        const qt *x = &q.t[i];
        evlm_quant_tensor_report *r = &rep->t[rep->n++];
        snprintf(r->name, sizeof r->name, "%s", x->src->name);
        r->from = x->src->type;
        r->to = x->kind == K_OTHER ? x->to : evlm_gguf_store_type(x->src->n_dims, x->to);
        r->n_elements = evlm_tensor_nelements(x->src);
        r->bytes = (size_t)(r->n_elements / evlm_type_block(x->to)) * evlm_type_size(x->to);
        r->method = x->kind == K_OTHER ? (x->fdata ? "awq-fold" : "float") : x->method;
        r->rel_err = x->rel_err;
        r->kl = x->kl;
        r->sparsity = x->sparsity;
        rep->in_bytes += evlm_tensor_nbytes(x->src);
        rep->out_bytes += r->bytes;
    }
    for (int i = 0; st == EVLM_OK && i < comp.n; i++) { /* the compensation's factors */
        const evlm_tensor *f = &comp.t[i];
        evlm_quant_tensor_report *r = &rep->t[rep->n++];
        snprintf(r->name, sizeof r->name, "%s", f->name);
        r->from = r->to = f->type;
        r->n_elements = evlm_tensor_nelements(f);
        r->bytes = evlm_tensor_nbytes(f);
        r->method = "lowrank";
        r->rel_err = comp.rel_err[i];
        r->kl = -1;
        rep->out_bytes += r->bytes;
    }
    evlm__lrcomp_free(&comp);
    rep->bpw = el ? bits / (double)el : 0;
    /* the written model against float: KL over the calibration set, encoder cosine */
    if (st == EVLM_OK && have_calib) {
        evlm__q_progress(&q, "evaluate", 0, 1);
        mp.keep_layout = false; /* the written model as users will run it */
        mp.mmproj = wrote_mmproj ? p.mmproj : NULL;
        st = evlm_model_load(out_gguf, &mp, &qm);
        if (st == EVLM_OK) st = mean_kl(&q, qm, &rep->kl_mean);
        if (st == EVLM_OK) st = vision_cosine(&q, qm, &rep->vision_cos);
        rep->n_calib_rows = q.kl_rows;
        evlm__q_progress(&q, "evaluate", 1, 1);
    }
    evlm_model_free(qm);
    for (int i = 0; i < q.n; i++) {
        free(q.t[i].qdata);
        free(q.t[i].fdata);
    }
    free(q.t);
    free(q.lm);
    for (int i = 0; i < q.n_prompts; i++) {
        evlm_prompt_free(q.prompts[i]);
        free(q.texts[i]);
        free(q.images[i]);
    }
    free(q.prompts);
    free(q.texts);
    free(q.images);
    free(q.ref_logp);
    evlm_calib_free(q.calib);
    evlm_model_free(q.m);
    if (st != EVLM_OK || !report) evlm_quantize_report_free(rep);
    return st;
}

/* ---- for the other passes (pipeline.h) ---------------------------------------------------- */

evlm_status evlm__q_load_calib(qctx *q) {
    return load_calib(q);
}

evlm_status evlm__q_calibrate(qctx *q, bool hessian) {
    return calibrate(q, hessian);
}

evlm_status evlm__q_mean_kl(const qctx *q, evlm_model *m, double *out) {
    return mean_kl(q, m, out);
}

void evlm__q_free_calib(qctx *q) {
    for (int i = 0; i < q->n_prompts; i++) {
        evlm_prompt_free(q->prompts[i]);
        free(q->texts[i]);
        free(q->images[i]);
    }
    free(q->prompts);
    free(q->texts);
    free(q->images);
    free(q->ref_logp);
    evlm_calib_free(q->calib);
    q->prompts = NULL;
    q->texts = q->images = NULL;
    q->ref_logp = NULL;
    q->calib = NULL;
    q->n_prompts = q->n_kl_prompts = q->kl_rows = 0;
}
