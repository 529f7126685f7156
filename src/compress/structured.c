/*
 * structured.c - structured pruning (evlm_prune_structured, evlm_compress.h): whole attention
 * heads, FFN channels and decoder layers removed by importance measured on calibration
 * activations (importance.h), written as a standard model of smaller uniform dimensions: a
 * Hugging Face folder (io/hf_export.h) or evlm's GGUF container of one (io/gguf_names.h).
 *
 * What is removed, per decoder layer (the same counts in every kept layer, so the config stays
 * uniform):
 *   - heads: q / k / v rows and o_proj columns of the removed heads, their q / k / v bias
 *     elements too. GQA: `heads` (query heads kept per layer) must keep the groups whole in one
 *     of two ways. When heads is a multiple of num_key_value_heads, every kv head is kept and each
 *     group keeps its heads / n_kv most important query heads (the KV cache is unchanged, the
 *     removal is as fine as the model allows). Otherwise, when heads is a multiple of the group
 *     size n_heads / n_kv, whole kv groups go with their query heads (the groups of least summed
 *     importance; k / v rows go too and the KV cache shrinks). Anything else is refused: a query
 *     head without its kv head, or groups of unequal size, is not a standard model. The first
 *     rule wins when both apply. head_dim is kept and written into config.json explicitly.
 *   - FFN channels: gate / up rows and down_proj columns (their biases when present) of the
 *     channels of least importance, per layer.
 *   - layers: the blocks of least influence, whole; the rest renumbered in order.
 *
 * `ratio` (remove a fraction P of the decoder's non-embedding parameters): a greedy walk over
 * three kinds of step, each uniform across layers: drop the least influential remaining layer;
 * drop one query head from every kv group of every kept layer (the least important remaining one
 * of each group); drop 32 FFN channels from every kept layer (the least important remaining
 * ones; 32 keeps the width a multiple of the int8 block). Each step's cost is the importance it
 * removes relative to the mean importance of its kind (a unit of average importance is taken to
 * be worth its parameters; Minitron's ranking of units by importance per parameter saved, with
 * ShortGPT's block influence for layers, whose typical value is the median over layers: the
 * first layer's influence is an outlier several times the others'), averaged over the kept layers,
 * so costs of the three kinds compare per parameter. The cheapest step that does not remove more
 * than what is left to remove is taken until at least P is removed (a layer, which may be a large
 * share of the parameters, is passed over near the end while a smaller step fits, so the result
 * lands within one head or FFN step above P; when every step overshoots, the one that loses the
 * least importance in all, cost x parameters, finishes). The report gives what was reached.
 * Within-group head removal only: whole kv groups go only when asked with `heads`.
 *
 * The vision tower (Idefics3 / SmolVLM's SigLIP) has no activation observer: `vision_ffn` ranks
 * its MLP channels by ||fc1 row|| * ||fc2 column|| (weights), `vision_layers` keeps the first N
 * encoder layers (the tower truncated, as VLMs that read an earlier layer's features do).
 * `vision_heads` is refused: transformers derives SigLIP's head_dim from hidden_size / heads
 * (there is no head_dim field), so a tower with fewer heads would not load there.
 *
 * Not here: recovery of the lost quality (distillation), unstructured or N:M pruning, other
 * vision towers (Qwen2-VL's is refused with vision settings), quantized inputs (a float Hugging
 * Face folder is read).
 */
#include "compress/calib_set.h"
#include "compress/importance.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "io/gguf_names.h"
#include "io/hf_export.h"
#include "model/model.h"
#include "quant/quants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FFN_STEP 32

evlm_prune_structured_params evlm_prune_structured_default_params(void) {
    evlm_prune_structured_params p;
    memset(&p, 0, sizeof p);
    p.calib_tokens = 2048;
    p.calib_items = 16;
    return p;
}

void evlm_prune_structured_report_free(evlm_prune_structured_report *r) {
    if (!r) return;
    if (r->layer)
        for (int l = 0; l < r->layers_before; l++) {
            free(r->layer[l].head_mask);
            free(r->layer[l].ffn_mask);
        }
    free(r->layer);
    memset(r, 0, sizeof *r);
}

/* ---- the plan: what each layer keeps ------------------------------------------------------- */

typedef struct plan {
    int L, NH, NKV, HD, F, H;
    uint8_t *layer_keep; /* [L] */
    uint8_t *head_keep;  /* [L][NH] */
    uint8_t *kv_keep;    /* [L][NKV] */
    uint8_t *ffn_keep;   /* [L][F] */
    int heads, kv, ffn, layers;
    /* vision */
    int vL, vF, vlayers, vffn;
    uint8_t *vffn_keep; /* [vL][vF] */
} plan;

static void plan_free(plan *p) {
    free(p->layer_keep);
    free(p->head_keep);
    free(p->kv_keep);
    free(p->ffn_keep);
    free(p->vffn_keep);
}

/* indices of v[0..n) sorted by value descending (ties: lower index first) */
typedef struct ranked {
    double v;
    int i;
} ranked;

static int by_value_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* idx: the indices of v[0..n) by value, largest first (ties: lower index first). No global
 * state (several prunings may run at once); false when out of memory. */
static bool sort_desc(const double *v, int n, int *idx) {
    ranked *r = malloc(sizeof *r * (size_t)(n > 0 ? n : 1));
    if (!r) return false;
    for (int i = 0; i < n; i++) r[i] = (ranked){v[i], i};
    qsort(r, (size_t)n, sizeof *r, by_value_desc);
    for (int i = 0; i < n; i++) idx[i] = r[i].i;
    free(r);
    return true;
}

/* keep[i] = 1 for the `keep` largest of v[0..n) */
static evlm_status keep_top(const double *v, int n, int keep, uint8_t *mask) {
    if (n <= 0) return EVLM_OK;
    int *idx = malloc(sizeof(int) * (size_t)n);
    if (!idx || !sort_desc(v, n, idx)) {
        free(idx);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    memset(mask, 0, (size_t)n);
    for (int i = 0; i < keep && i < n; i++) mask[idx[i]] = 1;
    free(idx);
    return EVLM_OK;
}

/* Heads of layer l: `heads` query heads kept by the GQA rule of the file's opening comment. */
static evlm_status plan_heads(plan *p, const evlm__importance *imp, int l, int heads) {
    const int NH = p->NH, NKV = p->NKV, G = NH / NKV;
    uint8_t *hk = p->head_keep + (size_t)l * NH, *kk = p->kv_keep + (size_t)l * NKV;
    const double *hv = imp->head + (size_t)l * NH;
    if (heads % NKV == 0) {
        for (int g = 0; g < NKV; g++) {
            kk[g] = 1;
            EVLM_TRY(keep_top(hv + (size_t)g * G, G, heads / NKV, hk + (size_t)g * G));
        }
    } else {
        double gs[1024];
        for (int g = 0; g < NKV; g++) {
            gs[g] = 0;
            for (int j = 0; j < G; j++) gs[g] += hv[g * G + j];
        }
        EVLM_TRY(keep_top(gs, NKV, heads / G, kk));
        for (int h = 0; h < NH; h++) hk[h] = kk[h / G];
    }
    return EVLM_OK;
}

static int64_t layer_params(const plan *p, int heads, int kv, int ffn, bool qkv_bias) {
    int64_t H = p->H, HD = p->HD;
    int64_t attn = H * HD * (2 * (int64_t)heads + 2 * (int64_t)kv);
    if (qkv_bias) attn += HD * (heads + 2 * (int64_t)kv);
    return attn + 3 * H * (int64_t)ffn + 2 * H;
}

/* The `ratio` walk (opening comment). Sets p->heads / ffn / layers and the masks. */
static evlm_status plan_ratio(plan *p, const evlm__importance *imp, double ratio, bool qkv_bias,
                              bool mlp_bias) {
    const int L = p->L, NH = p->NH, NKV = p->NKV, G = NH / NKV, F = p->F;
    int *horder = malloc(sizeof(int) * (size_t)L * NH); /* per layer and group: ascending */
    int *forder = malloc(sizeof(int) * (size_t)L * F);  /* per layer: ascending */
    double *hmean = malloc(sizeof(double) * (size_t)L), *fmean = malloc(sizeof(double) * L);
    if (!horder || !forder || !hmean || !fmean) {
        free(horder);
        free(forder);
        free(hmean);
        free(fmean);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    /* the layers' typical influence: their median (the first layer's influence is an outlier
     * several times the others', which would make every other layer look cheap) */
    double imean = 0;
    int *lo = malloc(sizeof(int) * (size_t)L);
    bool ok = lo && sort_desc(imp->infl, L, lo);
    if (ok)
        imean =
            L % 2 ? imp->infl[lo[L / 2]] : (imp->infl[lo[L / 2 - 1]] + imp->infl[lo[L / 2]]) / 2;
    free(lo);
    for (int l = 0; l < L; l++) {
        const double *hv = imp->head + (size_t)l * NH, *fv = imp->chan + (size_t)l * F;
        hmean[l] = fmean[l] = 0;
        for (int h = 0; h < NH; h++) hmean[l] += hv[h] / NH;
        for (int j = 0; j < F; j++) fmean[l] += fv[j] / F;
        for (int g = 0; g < NKV; g++) {
            int *o = horder + (size_t)l * NH + (size_t)g * G;
            ok = ok && sort_desc(hv + (size_t)g * G, G, o);
            for (int a = 0, b = G - 1; a < b; a++, b--) { /* ascending */
                int t = o[a];
                o[a] = o[b];
                o[b] = t;
            }
        }
        int *o = forder + (size_t)l * F;
        ok = ok && sort_desc(fv, F, o);
        for (int a = 0, b = F - 1; a < b; a++, b--) {
            int t = o[a];
            o[a] = o[b];
            o[b] = t;
        }
    }
    if (!ok) {
        free(horder);
        free(forder);
        free(hmean);
        free(fmean);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    memset(p->layer_keep, 1, (size_t)L);
    int kept_layers = L, qpg = G, ffn = F; /* q heads per group, FFN width */
    const int64_t total = (int64_t)L * layer_params(p, NH, NKV, F, qkv_bias) + p->H;
    const double target = ratio * (double)total;
    double removed = 0;
    (void)mlp_bias;
    while (removed < target) {
        /* the three candidate steps: cost (relative importance removed) and parameters saved */
        double cost[3] = {(double)INFINITY, (double)INFINITY, (double)INFINITY},
               saves[3] = {0, 0, 0};
        int layer = -1, n_ch = 0;
        const int64_t per_layer = layer_params(p, NKV * qpg, NKV, ffn, qkv_bias);
        if (kept_layers > 1 && imean > 0) { /* a layer */
            for (int l = 0; l < L; l++)
                if (p->layer_keep[l] && !(imp->infl[l] / imean >= cost[0])) {
                    cost[0] = imp->infl[l] / imean;
                    layer = l;
                }
            saves[0] = (double)per_layer;
        }
        if (qpg > 1) { /* a query head per group */
            double c = 0;
            for (int l = 0; l < L; l++) {
                if (!p->layer_keep[l]) continue;
                double s = 0;
                for (int g = 0; g < NKV; g++) {
                    int h = g * G + horder[(size_t)l * NH + (size_t)g * G + (G - qpg)];
                    s += imp->head[(size_t)l * NH + h];
                }
                c += hmean[l] > 0 ? s / (NKV * hmean[l]) : 0;
            }
            cost[1] = c / kept_layers;
            saves[1] = (double)kept_layers *
                       (double)(per_layer - layer_params(p, NKV * (qpg - 1), NKV, ffn, qkv_bias));
        }
        if (ffn > FFN_STEP) { /* FFN_STEP channels */
            n_ch = ffn - FFN_STEP >= FFN_STEP ? FFN_STEP : ffn - FFN_STEP;
            double c = 0;
            for (int l = 0; l < L; l++) {
                if (!p->layer_keep[l]) continue;
                double s = 0;
                for (int j = 0; j < n_ch; j++)
                    s += imp->chan[(size_t)l * F + forder[(size_t)l * F + (F - ffn) + j]];
                c += fmean[l] > 0 ? s / (n_ch * fmean[l]) : 0;
            }
            cost[2] = c / kept_layers;
            saves[2] = (double)kept_layers *
                       (double)(per_layer - layer_params(p, NKV * qpg, NKV, ffn - n_ch, qkv_bias));
        }
        /* the cheapest step per parameter that does not overshoot what is left; when every step
         * overshoots, the one that loses the least importance in all (cost x parameters) */
        int kind = -1;
        for (int pass = 0; pass < 2 && kind < 0; pass++)
            for (int k = 0; k < 3; k++) {
                if (!isfinite(cost[k]) || (!pass && saves[k] > target - removed)) continue;
                double a = pass ? cost[k] * saves[k] : cost[k];
                double b = kind < 0 ? 0 : pass ? cost[kind] * saves[kind] : cost[kind];
                if (kind < 0 || a < b) kind = k;
            }
        if (kind < 0) break; /* nothing left to remove */
        if (kind == 0) {
            p->layer_keep[layer] = 0;
            kept_layers--;
        } else if (kind == 1) {
            qpg--;
        } else {
            ffn -= n_ch;
        }
        removed += saves[kind];
    }
    p->layers = kept_layers;
    p->heads = NKV * qpg;
    p->kv = NKV;
    p->ffn = ffn;
    for (int l = 0; l < L; l++) {
        memset(p->kv_keep + (size_t)l * NKV, 1, (size_t)NKV);
        memset(p->head_keep + (size_t)l * NH, 0, (size_t)NH);
        for (int g = 0; g < NKV; g++)
            for (int j = G - qpg; j < G; j++)
                p->head_keep[(size_t)l * NH + (size_t)g * G +
                             horder[(size_t)l * NH + (size_t)g * G + j]] = 1;
        memset(p->ffn_keep + (size_t)l * F, 0, (size_t)F);
        for (int j = F - ffn; j < F; j++)
            p->ffn_keep[(size_t)l * F + forder[(size_t)l * F + j]] = 1;
    }
    free(horder);
    free(forder);
    free(hmean);
    free(fmean);
    return EVLM_OK;
}

/* ---- the tensors of the output -------------------------------------------------------------- */

typedef struct names {
    const char *m[1024][7]; /* [layer][role] decoder matrix names */
    const char *vfc1[256], *vfc2[256];
    int n_vision_layers;
} names;

static void collect_name(void *user, const evlm_tensor **slot, evlm_matrix_role role, int layer) {
    names *n = user;
    const char *name = *slot ? (*slot)->name : NULL;
    if (!name || layer < 0) return;
    if (role <= EVLM_ROLE_MLP_DOWN && layer < 1024) n->m[layer][role] = name;
    if (role == EVLM_ROLE_VISION_MLP) {
        if (layer + 1 > n->n_vision_layers) n->n_vision_layers = layer + 1;
        if (layer >= 256) return;
        if (!n->vfc1[layer])
            n->vfc1[layer] = name;
        else
            n->vfc2[layer] = name;
    }
}

/* "<...>layers.<i>.<rest>" after `prefix`: i, and rest at *rest; -1 if not such a name. */
static int layer_of(const char *name, const char *prefix, const char **rest) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || strncmp(name + pl, "layers.", 7) != 0) return -1;
    const char *s = name + pl + 7;
    char *end;
    long i = strtol(s, &end, 10);
    if (end == s || *end != '.' || i < 0 || i > 100000) return -1;
    *rest = end + 1;
    return (int)i;
}

/* name with ".weight" replaced by ".bias" into out; false if it does not end in ".weight" */
static bool bias_name(const char *w, char *out, size_t cap) {
    size_t n = strlen(w);
    if (n < 7 || strcmp(w + n - 7, ".weight") != 0 || n + 1 > cap) return false;
    memcpy(out, w, n - 7);
    memcpy(out + n - 7, ".bias", 6);
    return true;
}

typedef struct outset {
    evlm_tensor *t;
    char **names;
    void **bufs;
    size_t n, cap;
} outset;

static evlm_status out_add(outset *o, const evlm_tensor *src, const char *name, void *owned) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        evlm_tensor *t = realloc(o->t, sizeof *t * cap);
        if (t) o->t = t;
        char **nm = t ? realloc(o->names, sizeof *nm * cap) : NULL;
        if (nm) o->names = nm;
        void **b = nm ? realloc(o->bufs, sizeof *b * cap) : NULL;
        if (!b) {
            free(owned);
            return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        }
        o->bufs = b;
        o->cap = cap;
    }
    char *nm = strdup(name);
    if (!nm) {
        free(owned);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    o->t[o->n] = *src;
    o->t[o->n].name = nm;
    o->names[o->n] = nm;
    o->bufs[o->n] = owned;
    o->n++;
    return EVLM_OK;
}

static void out_free(outset *o) {
    for (size_t i = 0; i < o->n; i++) {
        free(o->names[i]);
        free(o->bufs[i]);
    }
    free(o->t);
    free(o->names);
    free(o->bufs);
}

/* A copy of t keeping rows (ne[1], or the elements of a vector) where rmask[i / rdiv] and
 * columns (ne[0] of a matrix) where cmask[j / cdiv]; a NULL mask keeps all. */
static evlm_status slice(const evlm_tensor *t, const uint8_t *rmask, int rdiv, const uint8_t *cmask,
                         int cdiv, evlm_tensor *out, void **buf) {
    if (!evlm_type_is_file_float(t->type) || t->n_dims > 2)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "tensor '%s': type %s; structured pruning reads float (F32 / F16 / "
                          "BF16) matrices and vectors",
                          t->name, evlm_type_name(t->type));
    const size_t es = evlm_type_size(t->type);
    const bool vec = t->n_dims == 1;
    const int64_t rows = vec ? t->ne[0] : t->ne[1], cols = vec ? 1 : t->ne[0];
    int64_t nr = 0, nc = 0;
    for (int64_t r = 0; r < rows; r++) nr += !rmask || rmask[r / rdiv];
    for (int64_t c = 0; c < cols; c++) nc += vec || !cmask || cmask[c / cdiv];
    char *d = malloc(es * (size_t)(nr * nc) + 1);
    if (!d) return evlm__fail(EVLM_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    char *w = d;
    for (int64_t r = 0; r < rows; r++) {
        if (rmask && !rmask[r / rdiv]) continue;
        const char *src = vec ? (const char *)t->data + (size_t)r * t->nb[0]
                              : (const char *)t->data + (size_t)r * t->nb[1];
        if (vec || !cmask) {
            memcpy(w, src, es * (size_t)cols);
            w += es * (size_t)cols;
            continue;
        }
        for (int64_t c = 0; c < cols; c++)
            if (cmask[c / cdiv]) {
                memcpy(w, src + (size_t)c * t->nb[0], es);
                w += es;
            }
    }
    *out = *t;
    if (vec)
        out->ne[0] = nr;
    else {
        out->ne[0] = nc;
        out->ne[1] = nr;
    }
    out->data = d;
    evlm_tensor_set_contiguous(out);
    *buf = d;
    return EVLM_OK;
}

typedef struct build {
    const plan *p;
    const names *nm;
    const char *prefix;    /* the decoder's */
    char vprefix[256];     /* the vision encoder's "<...>layers." prefix, "" when none */
    int *new_index, *vnew; /* [L], [vL]: -1 removed */
    outset out;
} build;

/* The output form of source tensor t (dropped, renamed, sliced). */
static evlm_status add_tensor(build *b, const evlm_tensor *t) {
    const plan *p = b->p;
    const char *rest;
    char name[512], bn[512];
    int l = layer_of(t->name, b->prefix, &rest);
    if (l >= 0 && l < p->L) {
        if (b->new_index[l] < 0) return EVLM_OK;
        if (snprintf(name, sizeof name, "%slayers.%d.%s", b->prefix, b->new_index[l], rest) >=
            (int)sizeof name)
            return evlm__fail(EVLM_ERR_ARG, "tensor '%s': name too long", t->name);
        const uint8_t *hk = p->head_keep + (size_t)l * p->NH, *kk = p->kv_keep + (size_t)l * p->NKV,
                      *fk = p->ffn_keep + (size_t)l * p->F;
        for (int role = 0; role <= EVLM_ROLE_MLP_DOWN; role++) {
            const char *mn = b->nm->m[l][role];
            if (!mn) continue;
            bool is_w = !strcmp(mn, t->name);
            bool is_b = !is_w && bias_name(mn, bn, sizeof bn) && !strcmp(bn, t->name);
            if (!is_w && !is_b) continue;
            const uint8_t *rm = NULL, *cm = NULL;
            int rd = 1, cd = 1;
            switch (role) {
            case EVLM_ROLE_ATTN_Q:
                rm = hk, rd = p->HD;
                break;
            case EVLM_ROLE_ATTN_K:
            case EVLM_ROLE_ATTN_V:
                rm = kk, rd = p->HD;
                break;
            case EVLM_ROLE_ATTN_O:
                if (is_w) cm = hk, cd = p->HD;
                break;
            case EVLM_ROLE_MLP_GATE:
            case EVLM_ROLE_MLP_UP:
                rm = fk;
                break;
            default: /* down */
                if (is_w) cm = fk;
                break;
            }
            if (!rm && !cm) break;
            evlm_tensor s;
            void *buf;
            EVLM_TRY(slice(t, rm, rd, cm, cd, &s, &buf));
            return out_add(&b->out, &s, name, buf);
        }
        return out_add(&b->out, t, name, NULL);
    }
    if (b->vprefix[0] && !strncmp(t->name, b->vprefix, strlen(b->vprefix))) {
        const char *s = t->name + strlen(b->vprefix);
        char *end;
        long vl = strtol(s, &end, 10);
        if (end != s && *end == '.' && vl >= 0 && vl < p->vL) {
            if (b->vnew[vl] < 0) return EVLM_OK;
            snprintf(name, sizeof name, "%s%d%s", b->vprefix, b->vnew[vl], end);
            const uint8_t *fk = p->vffn_keep ? p->vffn_keep + (size_t)vl * p->vF : NULL;
            const char *fc1 = b->nm->vfc1[vl], *fc2 = b->nm->vfc2[vl];
            bool w1 = fc1 && !strcmp(fc1, t->name),
                 b1 = fc1 && bias_name(fc1, bn, sizeof bn) && !strcmp(bn, t->name);
            bool w2 = fc2 && !strcmp(fc2, t->name);
            if (fk && (w1 || b1 || w2)) {
                evlm_tensor sl;
                void *buf;
                EVLM_TRY(slice(t, w2 ? NULL : fk, 1, w2 ? fk : NULL, 1, &sl, &buf));
                return out_add(&b->out, &sl, name, buf);
            }
            return out_add(&b->out, t, name, NULL);
        }
    }
    return out_add(&b->out, t, t->name, NULL);
}

/* ---- config.json -------------------------------------------------------------------------- */

static evlm_status set_int(cJSON *o, const char *key, int v) {
    cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (it) {
        cJSON_SetNumberValue(it, v);
        return EVLM_OK;
    }
    if (!cJSON_AddNumberToObject(o, key, v))
        return evlm__fail(EVLM_ERR_NOMEM, "config.json: out of memory");
    return EVLM_OK;
}

/* layer_types (transformers 5) keeps the entries of the kept layers */
static void trim_layer_types(cJSON *o, const uint8_t *keep, int L) {
    cJSON *lt = cJSON_GetObjectItemCaseSensitive(o, "layer_types");
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != L) return;
    for (int l = L - 1; l >= 0; l--)
        if (!keep[l]) cJSON_DeleteItemFromArray(lt, l);
}

static evlm_status edit_config(cJSON *root, const plan *p, bool vision) {
    cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    cJSON *blocks[2] = {cJSON_IsObject(tc) ? tc : root, NULL};
    /* a 5.x Qwen2-VL config may repeat the text fields at its root: keep them consistent */
    if (blocks[0] != root && cJSON_GetObjectItemCaseSensitive(root, "num_hidden_layers"))
        blocks[1] = root;
    for (int i = 0; i < 2 && blocks[i]; i++) {
        cJSON *o = blocks[i];
        EVLM_TRY(set_int(o, "num_attention_heads", p->heads));
        EVLM_TRY(set_int(o, "num_key_value_heads", p->kv));
        EVLM_TRY(set_int(o, "head_dim", p->HD));
        EVLM_TRY(set_int(o, "intermediate_size", p->ffn));
        EVLM_TRY(set_int(o, "num_hidden_layers", p->layers));
        trim_layer_types(o, p->layer_keep, p->L);
        cJSON *mw = cJSON_GetObjectItemCaseSensitive(o, "max_window_layers");
        if (cJSON_IsNumber(mw) && mw->valueint > p->layers) cJSON_SetNumberValue(mw, p->layers);
    }
    if (vision) {
        cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
        if (!cJSON_IsObject(vc))
            return evlm__fail(EVLM_ERR_FORMAT, "config.json: no \"vision_config\" object");
        EVLM_TRY(set_int(vc, "intermediate_size", p->vffn));
        EVLM_TRY(set_int(vc, "num_hidden_layers", p->vlayers));
    }
    return EVLM_OK;
}

/* ---- the pass -------------------------------------------------------------------------------- */

static evlm_status check_params(const evlm_prune_structured_params *q) {
    if (!(q->ratio >= 0 && q->ratio < 1))
        return evlm__fail(EVLM_ERR_ARG, "ratio = %g: must be in [0, 1) (the fraction removed)",
                          q->ratio);
    const struct {
        const char *name;
        int v;
    } c[] = {{"heads", q->heads},           {"ffn", q->ffn},
             {"layers", q->layers},         {"vision_heads", q->vision_heads},
             {"vision_ffn", q->vision_ffn}, {"vision_layers", q->vision_layers}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        if (c[i].v < 0)
            return evlm__fail(EVLM_ERR_ARG, "%s = %d: must be >= 1 (what remains; 0 keeps all)",
                              c[i].name, c[i].v);
    if (q->ratio > 0 && (q->heads || q->ffn || q->layers))
        return evlm__fail(EVLM_ERR_ARG,
                          "ratio = %g: give either ratio or heads / ffn / layers, not both",
                          q->ratio);
    if (q->vision_heads)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "vision_heads = %d: not supported (transformers derives the SigLIP "
                          "head_dim from hidden_size / heads, so the tower cannot lose heads "
                          "and stay a standard model)",
                          q->vision_heads);
    return EVLM_OK;
}

static evlm_status check_counts(const evlm_prune_structured_params *q, const plan *p) {
    const int G = p->NH / p->NKV;
    if (q->heads > p->NH)
        return evlm__fail(EVLM_ERR_ARG, "heads = %d: the model has %d heads per layer", q->heads,
                          p->NH);
    if (q->heads && q->heads % p->NKV != 0 && q->heads % G != 0)
        return evlm__fail(EVLM_ERR_ARG,
                          "heads = %d: must be a multiple of num_key_value_heads = %d (heads "
                          "removed inside each kv group) or of the group size %d (whole kv "
                          "groups removed)",
                          q->heads, p->NKV, G);
    if (q->ffn > p->F)
        return evlm__fail(EVLM_ERR_ARG, "ffn = %d: the model's FFN width is %d", q->ffn, p->F);
    if (q->layers > p->L)
        return evlm__fail(EVLM_ERR_ARG, "layers = %d: the model has %d layers", q->layers, p->L);
    if ((q->vision_ffn || q->vision_layers) && !p->vL)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "vision_ffn / vision_layers: the model has no SigLIP (Idefics3 / "
                          "SmolVLM) vision tower");
    if (q->vision_ffn > p->vF)
        return evlm__fail(EVLM_ERR_ARG, "vision_ffn = %d: the tower's MLP width is %d",
                          q->vision_ffn, p->vF);
    if (q->vision_layers > p->vL)
        return evlm__fail(EVLM_ERR_ARG, "vision_layers = %d: the tower has %d layers",
                          q->vision_layers, p->vL);
    return EVLM_OK;
}

static double row_norm(const evlm_tensor *t, int64_t r, float *tmp) {
    evlm_dequantize_row(t->type, (const char *)t->data + (size_t)r * t->nb[1], tmp, t->ne[0]);
    double s = 0;
    for (int64_t j = 0; j < t->ne[0]; j++) s += (double)tmp[j] * (double)tmp[j];
    return s;
}

/* vision MLP channels by ||fc1 row|| * ||fc2 column|| */
static evlm_status plan_vision_ffn(plan *p, const evlm_weights *w, const names *nm) {
    p->vffn_keep = malloc((size_t)p->vL * (size_t)p->vF);
    double *v = malloc(sizeof(double) * (size_t)p->vF);
    float *tmp = malloc(sizeof(float) * (size_t)(p->vF > 65536 ? p->vF : 65536));
    evlm_status st =
        p->vffn_keep && v && tmp ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int l = 0; l < p->vL && st == EVLM_OK; l++) {
        const evlm_tensor *f1 = evlm_weights_find(w, nm->vfc1[l]),
                          *f2 = evlm_weights_find(w, nm->vfc2[l]);
        if (!f1 || !f2 || f1->ne[1] != p->vF || f2->ne[0] != p->vF || f1->ne[0] > 65536 ||
            f2->ne[1] > 65536 || !evlm_type_is_file_float(f1->type) ||
            !evlm_type_is_file_float(f2->type)) {
            st = evlm__fail(EVLM_ERR_FORMAT, "vision layer %d: unexpected MLP tensors", l);
            break;
        }
        for (int j = 0; j < p->vF; j++) v[j] = row_norm(f1, j, tmp);
        double *c = calloc((size_t)p->vF, sizeof(double));
        if (!c) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t r = 0; r < f2->ne[1]; r++) {
            evlm_dequantize_row(f2->type, (const char *)f2->data + (size_t)r * f2->nb[1], tmp,
                                f2->ne[0]);
            for (int j = 0; j < p->vF; j++) c[j] += (double)tmp[j] * (double)tmp[j];
        }
        for (int j = 0; j < p->vF; j++) v[j] = sqrt(v[j] * c[j]);
        free(c);
        st = keep_top(v, p->vF, p->vffn, p->vffn_keep + (size_t)l * p->vF);
    }
    free(v);
    free(tmp);
    return st;
}

static int64_t count_params(const evlm_tensor *t, size_t n, const char *prefix, int64_t *total) {
    int64_t dec = 0, all = 0;
    const char *rest;
    char norm[128];
    snprintf(norm, sizeof norm, "%snorm.weight", prefix);
    for (size_t i = 0; i < n; i++) {
        int64_t e = evlm_tensor_nelements(&t[i]);
        all += e;
        if (layer_of(t[i].name, prefix, &rest) >= 0 || !strcmp(t[i].name, norm)) dec += e;
    }
    *total = all;
    return dec;
}

static evlm_status fill_report(evlm_prune_structured_report *r, const plan *p,
                               const evlm__importance *imp, const int *new_index) {
    r->layer = calloc((size_t)p->L, sizeof *r->layer);
    if (!r->layer) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    r->layers_before = p->L;
    r->layers_after = p->layers;
    r->heads_before = p->NH;
    r->heads_after = p->heads;
    r->kv_heads_before = p->NKV;
    r->kv_heads_after = p->kv;
    r->ffn_before = p->F;
    r->ffn_after = p->ffn;
    r->vision_layers_before = p->vL;
    r->vision_layers_after = p->vlayers;
    r->vision_ffn_before = p->vF;
    r->vision_ffn_after = p->vffn;
    r->measured = imp->head != NULL;
    r->n_calib_rows = (int)imp->rows;
    for (int l = 0; l < p->L; l++) {
        evlm_prune_layer_report *x = &r->layer[l];
        x->kept = p->layer_keep[l];
        x->new_index = new_index[l];
        x->head_mask = malloc((size_t)p->NH);
        x->ffn_mask = malloc((size_t)p->F);
        if (!x->head_mask || !x->ffn_mask) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        memcpy(x->head_mask, p->head_keep + (size_t)l * p->NH, (size_t)p->NH);
        memcpy(x->ffn_mask, p->ffn_keep + (size_t)l * p->F, (size_t)p->F);
        x->influence = imp->infl && imp->rows ? imp->infl[l] / (double)imp->rows : -1;
        double ht = 0, hk = 0, ft = 0, fk = 0;
        for (int h = 0; h < p->NH; h++) {
            x->heads_kept += x->kept && x->head_mask[h];
            if (imp->head) {
                ht += imp->head[(size_t)l * p->NH + h];
                hk += x->head_mask[h] ? imp->head[(size_t)l * p->NH + h] : 0;
            }
        }
        for (int j = 0; imp->chan && j < p->F; j++) {
            ft += imp->chan[(size_t)l * p->F + j];
            fk += x->ffn_mask[j] ? imp->chan[(size_t)l * p->F + j] : 0;
        }
        x->head_keep = ht > 0 ? hk / ht : 1;
        x->ffn_keep = ft > 0 ? fk / ft : 1;
    }
    return EVLM_OK;
}

evlm_status evlm_prune_structured(const char *in_dir, const char *out_path,
                                  const evlm_prune_structured_params *params,
                                  evlm_prune_structured_report *report) {
    evlm_prune_structured_report scratch_rep;
    evlm_prune_structured_report *rep = report ? report : &scratch_rep;
    memset(rep, 0, sizeof *rep);
    if (!in_dir || !out_path) return evlm__fail(EVLM_ERR_ARG, "evlm_prune_structured: NULL path");
    evlm_prune_structured_params q = params ? *params : evlm_prune_structured_default_params();
    EVLM_TRY(check_params(&q));
    if (q.calib_tokens < 2) q.calib_tokens = 2;
    if (q.calib_items < 1) q.calib_items = 1;
    evlm_dir d = evlm_dir_folder(in_dir);
    if (!evlm_dir_has(&d, "config.json"))
        return evlm__fail(EVLM_ERR_ARG,
                          "%s: structured pruning reads a Hugging Face model folder "
                          "(config.json, *.safetensors)",
                          in_dir);
    char out[4096];
    size_t ol = strlen(out_path);
    while (ol > 1 && out_path[ol - 1] == '/') ol--;
    if (ol == 0 || ol >= sizeof out)
        return evlm__fail(EVLM_ERR_ARG, "%s: bad output path", out_path);
    memcpy(out, out_path, ol);
    out[ol] = 0;
    const bool gguf = ol > 5 && !strcmp(out + ol - 5, ".gguf");

    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = q.n_threads;
    mp.keep_layout = true; /* the slices read the source tensors' bytes */
    evlm_model *m;
    EVLM_TRY(evlm_model_load(in_dir, &mp, &m));
    const evlm_decoder_config *cfg = evlm__model_config(m);
    const evlm_weights *w = evlm__model_weights(m);
    plan p = {0};
    names *nm = calloc(1, sizeof *nm);
    build b = {0};
    evlm__importance imp = {0};
    evlm__calib_set cs = {0};
    cJSON *conf = NULL;
    char *conf_text = NULL, tmpdir[4096] = "";
    evlm_status st = nm ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    p.L = cfg->n_layers, p.NH = cfg->n_heads, p.NKV = cfg->n_kv_heads, p.HD = cfg->head_dim;
    p.F = cfg->intermediate_size, p.H = cfg->hidden_size;
    if (st == EVLM_OK && p.L > 1024)
        st = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: more than 1024 layers", in_dir);
    if (st == EVLM_OK) evlm__model_matrices(m, collect_name, nm);
    const struct evlm_siglip *tower = NULL;
    if (st == EVLM_OK && evlm__model_idefics3(m, &tower, NULL, NULL) && nm->n_vision_layers) {
        const evlm_tensor *f1 = nm->vfc1[0] ? evlm_weights_find(w, nm->vfc1[0]) : NULL;
        const char *rest;
        int vl0 = -1;
        if (f1) {
            /* the encoder's "<...>layers." prefix, from fc1 of layer 0 */
            const char *at = strstr(nm->vfc1[0], "layers.0.");
            size_t n = at ? (size_t)(at - nm->vfc1[0]) + 7 : 0;
            if (at && n < sizeof b.vprefix) {
                memcpy(b.vprefix, nm->vfc1[0], n);
                b.vprefix[n] = 0;
                vl0 = 0;
            }
            (void)rest;
        }
        if (vl0 == 0 && nm->n_vision_layers <= 256) { /* else: vision settings refused */
            p.vL = nm->n_vision_layers;
            p.vF = (int)f1->ne[1];
        }
    }
    p.vlayers = q.vision_layers ? q.vision_layers : p.vL;
    p.vffn = q.vision_ffn ? q.vision_ffn : p.vF;
    if (st == EVLM_OK) st = check_counts(&q, &p);
    const bool qkv_bias = st == EVLM_OK && evlm__model_has_bias(m, 0, EVLM_ROLE_ATTN_Q);
    const bool mlp_bias = st == EVLM_OK && evlm__model_has_bias(m, 0, EVLM_ROLE_MLP_UP);
    const bool removes = q.ratio > 0 || (q.heads && q.heads < p.NH) || (q.ffn && q.ffn < p.F) ||
                         (q.layers && q.layers < p.L);
    const bool have_calib = q.calib_text || q.calib_jsonl;
    if (st == EVLM_OK && removes && !have_calib)
        st = evlm__fail(EVLM_ERR_ARG,
                        "removing decoder heads, channels or layers measures their importance "
                        "on calibration data: give calib_text or calib_jsonl");
    if (st == EVLM_OK) {
        p.layer_keep = malloc((size_t)p.L);
        p.head_keep = malloc((size_t)p.L * (size_t)p.NH);
        p.kv_keep = malloc((size_t)p.L * (size_t)p.NKV);
        p.ffn_keep = malloc((size_t)p.L * (size_t)p.F);
        b.new_index = malloc(sizeof(int) * (size_t)p.L);
        b.vnew = malloc(sizeof(int) * (size_t)(p.vL + 1));
        if (!p.layer_keep || !p.head_keep || !p.kv_keep || !p.ffn_keep || !b.new_index || !b.vnew)
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    if (st == EVLM_OK && have_calib && removes) {
        if (q.calib_text) st = evlm__calib_set_text(&cs, m, q.calib_text, q.calib_tokens);
        if (st == EVLM_OK && q.calib_jsonl)
            st = evlm__calib_set_jsonl(&cs, m, q.calib_jsonl, q.calib_items);
        if (st == EVLM_OK) st = evlm__importance_measure(m, &cs, q.progress, q.user, &imp);
    }
    if (st == EVLM_OK) {
        memset(p.layer_keep, 1, (size_t)p.L);
        memset(p.head_keep, 1, (size_t)p.L * (size_t)p.NH);
        memset(p.kv_keep, 1, (size_t)p.L * (size_t)p.NKV);
        memset(p.ffn_keep, 1, (size_t)p.L * (size_t)p.F);
        p.heads = p.NH, p.kv = p.NKV, p.ffn = p.F, p.layers = p.L;
        if (q.ratio > 0) {
            st = plan_ratio(&p, &imp, q.ratio, qkv_bias, mlp_bias);
        } else if (removes) {
            if (q.layers && q.layers < p.L) {
                st = keep_top(imp.infl, p.L, q.layers, p.layer_keep);
                p.layers = q.layers;
            }
            if (st == EVLM_OK && q.heads && q.heads < p.NH) {
                for (int l = 0; l < p.L && st == EVLM_OK; l++)
                    st = plan_heads(&p, &imp, l, q.heads);
                p.heads = q.heads;
                p.kv = q.heads % p.NKV == 0 ? p.NKV : q.heads / (p.NH / p.NKV);
            }
            if (st == EVLM_OK && q.ffn && q.ffn < p.F) {
                for (int l = 0; l < p.L && st == EVLM_OK; l++)
                    st = keep_top(imp.chan + (size_t)l * p.F, p.F, q.ffn,
                                  p.ffn_keep + (size_t)l * p.F);
                p.ffn = q.ffn;
            }
        }
    }
    if (st == EVLM_OK && q.vision_ffn && q.vision_ffn < p.vF) st = plan_vision_ffn(&p, w, nm);
    /* renumbering */
    if (st == EVLM_OK) {
        for (int l = 0, k = 0; l < p.L; l++) b.new_index[l] = p.layer_keep[l] ? k++ : -1;
        for (int l = 0; l < p.vL; l++) b.vnew[l] = l < p.vlayers ? l : -1;
        b.p = &p;
        b.nm = nm;
        b.prefix = evlm__model_text_prefix(m);
        size_t n = evlm_weights_count(w);
        for (size_t i = 0; i < n && st == EVLM_OK; i++) st = add_tensor(&b, evlm_weights_at(w, i));
    }
    /* config.json */
    if (st == EVLM_OK) st = evlm_json_load_dir(&d, "config.json", &conf);
    if (st == EVLM_OK) st = edit_config(conf, &p, p.vL && (p.vffn != p.vF || p.vlayers != p.vL));
    if (st == EVLM_OK) {
        conf_text = cJSON_Print(conf);
        if (!conf_text) st = evlm__fail(EVLM_ERR_NOMEM, "config.json: out of memory");
    }
    if (st == EVLM_OK && q.progress) q.progress(q.user, "write", 0, 1);
    if (st == EVLM_OK && !gguf) st = evlm_hf_export(in_dir, out, conf_text, b.out.t, b.out.n);
    if (st == EVLM_OK && gguf) {
        st = evlm_hf_temp_dir(out, tmpdir, sizeof tmpdir);
        if (st == EVLM_OK) {
            char folder[4096 + 16];
            snprintf(folder, sizeof folder, "%s/hf", tmpdir);
            st = evlm_hf_export(in_dir, folder, conf_text, b.out.t, b.out.n);
            if (st == EVLM_OK) st = evlm_gguf_export_hf(folder, out, NULL, NULL, NULL, NULL);
            evlm_hf_remove_dir(folder);
            evlm_hf_remove_dir(tmpdir);
        }
    }
    if (st == EVLM_OK && q.progress) q.progress(q.user, "write", 1, 1);
    if (st == EVLM_OK) st = fill_report(rep, &p, &imp, b.new_index);
    if (st == EVLM_OK) {
        size_t n = evlm_weights_count(w);
        evlm_tensor *src = malloc(sizeof *src * (n ? n : 1));
        if (!src) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        for (size_t i = 0; src && i < n; i++) src[i] = *evlm_weights_at(w, i);
        if (src) {
            rep->params_before = count_params(src, n, b.prefix, &rep->total_before);
            rep->params_after = count_params(b.out.t, b.out.n, b.prefix, &rep->total_after);
        }
        free(src);
    }
    if (st != EVLM_OK) evlm_prune_structured_report_free(rep);
    if (rep == &scratch_rep) evlm_prune_structured_report_free(rep);
    free(conf_text);
    cJSON_Delete(conf);
    out_free(&b.out);
    free(b.new_index);
    free(b.vnew);
    evlm__calib_set_free(&cs);
    evlm__importance_free(&imp);
    plan_free(&p);
    free(nm);
    evlm_model_free(m);
    return st;
}
