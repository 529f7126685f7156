/*
 * importance.c - head, FFN channel and layer importance from calibration activations
 * (importance.h), through the decoder's matmul-input observer and residual observer of a
 * context running the calibration prompts. Sums are in double; rows are every position of every
 * prompt (prefill chunks are observed as they run).
 * Not here: the decisions (structured.c); the vision tower (it has no observer: structured.c
 * ranks its units by weight norms).
 */
#include "compress/importance.h"
#include "core/status.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void on_matmul(void *user, int layer, const char *group, const float *x, int m, int k) {
    evlm__importance *imp = user;
    if (imp->st != EVLM_OK || layer < 0 || layer >= imp->n_layers) return;
    if (!strcmp(group, "attn_o") && k == imp->n_heads * imp->head_dim) {
        double *h = imp->head + (size_t)layer * imp->n_heads;
        for (int r = 0; r < m; r++)
            for (int j = 0; j < imp->n_heads; j++) {
                const float *s = x + (size_t)r * k + (size_t)j * imp->head_dim;
                double ss = 0;
                for (int d = 0; d < imp->head_dim; d++) ss += (double)s[d] * (double)s[d];
                h[j] += sqrt(ss);
            }
        if (layer == 0) imp->rows += m;
    } else if (!strcmp(group, "ffn_down") && k == imp->ffn) {
        double *c = imp->chan + (size_t)layer * imp->ffn;
        for (int r = 0; r < m; r++)
            for (int j = 0; j < k; j++) c[j] += fabs((double)x[(size_t)r * k + j]);
    }
}

static void on_residual(void *user, int layer, const char *group, const float *x, int m, int k) {
    evlm__importance *imp = user;
    (void)group;
    if (imp->st != EVLM_OK || k != imp->hidden || m < 1) return;
    if (layer > 0 && imp->prev_layer == layer - 1 && imp->prev_rows == m) {
        for (int r = 0; r < m; r++) {
            const float *a = imp->prev + (size_t)r * k, *b = x + (size_t)r * k;
            double ab = 0, aa = 0, bb = 0;
            for (int j = 0; j < k; j++) {
                ab += (double)a[j] * (double)b[j];
                aa += (double)a[j] * (double)a[j];
                bb += (double)b[j] * (double)b[j];
            }
            double cosv = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0;
            imp->infl[layer - 1] += 1.0 - cosv;
        }
    }
    if (layer >= imp->n_layers) {
        imp->prev_layer = -1;
        return;
    }
    if (m > imp->prev_rows || !imp->prev) {
        float *np = realloc(imp->prev, sizeof(float) * (size_t)m * (size_t)k);
        if (!np) {
            imp->st = evlm__fail(EVLM_ERR_NOMEM, "importance: out of memory");
            return;
        }
        imp->prev = np;
    }
    memcpy(imp->prev, x, sizeof(float) * (size_t)m * (size_t)k);
    imp->prev_rows = m;
    imp->prev_layer = layer;
}

void evlm__importance_free(evlm__importance *imp) {
    free(imp->head);
    free(imp->chan);
    free(imp->infl);
    free(imp->prev);
    memset(imp, 0, sizeof *imp);
}

evlm_status evlm__importance_measure(evlm_model *m, const evlm__calib_set *cs,
                                     void (*progress)(void *, const char *, int, int), void *user,
                                     evlm__importance *imp) {
    memset(imp, 0, sizeof *imp);
    const evlm_decoder_config *cfg = evlm__model_config(m);
    imp->n_layers = cfg->n_layers;
    imp->n_heads = cfg->n_heads;
    imp->head_dim = cfg->head_dim;
    imp->ffn = cfg->intermediate_size;
    imp->hidden = cfg->hidden_size;
    imp->prev_layer = -1;
    imp->head = calloc((size_t)cfg->n_layers * (size_t)cfg->n_heads, sizeof(double));
    imp->chan = calloc((size_t)cfg->n_layers * (size_t)cfg->intermediate_size, sizeof(double));
    imp->infl = calloc((size_t)cfg->n_layers, sizeof(double));
    if (!imp->head || !imp->chan || !imp->infl) {
        evlm__importance_free(imp);
        return evlm__fail(EVLM_ERR_NOMEM, "importance: out of memory");
    }
    int max = 1;
    for (int i = 0; i < cs->n; i++) {
        size_t n;
        evlm_prompt_ids(cs->prompts[i], &n);
        if ((int)n > max) max = (int)n;
    }
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = max;
    evlm_context *c;
    evlm_status st = evlm_context_new(m, &cp, &c);
    if (st != EVLM_OK) {
        evlm__importance_free(imp);
        return st;
    }
    evlm__context_observe(c, on_matmul, imp);
    evlm__context_observe_residual(c, on_residual, imp);
    for (int i = 0; i < cs->n && st == EVLM_OK; i++) {
        if (progress) progress(user, "importance", i, cs->n);
        imp->prev_layer = -1;
        st = evlm_context_truncate(c, 0);
        if (st == EVLM_OK) st = evlm_decode_prompt(c, cs->prompts[i], NULL, false);
        if (st == EVLM_OK) st = imp->st;
    }
    if (progress && st == EVLM_OK) progress(user, "importance", cs->n, cs->n);
    evlm_context_free(c);
    if (st != EVLM_OK) evlm__importance_free(imp);
    return st;
}
