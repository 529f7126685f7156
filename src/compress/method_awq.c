/*
 * method_awq.c - AWQ-style activation-aware scaling, layer by layer (awq.h): per group of
 * matrices that share an input (q/k/v, o, gate/up, down), scales searched on the calibration
 * rows, applied to the consumers' columns and folded exactly into the producer (the RMSNorm
 * before q/k/v and gate/up, v_proj's rows before o, up_proj's rows before down), then round to
 * nearest. A group no calibration row reached, or with a float or pinned consumer, is plain RTN.
 */
#include "compress/awq.h"
#include "compress/pipeline.h"
#include "core/status.h"
#include "quant/quants.h"

#include <stdio.h>
#include <stdlib.h>

/* Float copy of a 1-D tensor by name into x->fdata (the replacement written to the file). */
static float *float_copy(qctx *q, const char *name) {
    qt *x = evlm__q_find_name(q, name);
    if (!x) return NULL;
    if (!x->fdata) {
        int64_t n = evlm_tensor_nelements(x->src);
        x->fdata = malloc(sizeof(float) * (size_t)n);
        if (!x->fdata) return NULL;
        evlm_dequantize_row(x->src->type, x->src->data, x->fdata, n);
        x->to = EVLM_TYPE_F32; /* a folded norm must stay exact */
        evlm__q_set_view(x, EVLM_TYPE_F32, x->fdata);
    }
    return x->fdata;
}

static evlm_status awq_layer(qctx *q, int l) {
    const evlm_decoder_config *c = evlm__model_config(q->m);
    const evlm_tensor *mats[7];
    float *w[7] = {0};
    bool changed[7] = {0}; /* scaled columns or folded rows */
    qt *x[7];
    evlm_status st = EVLM_OK;
    for (int i = 0; i < 7 && st == EVLM_OK; i++) {
        x[i] = q->lm[l * 7 + i]; /* ATTN_Q .. MLP_DOWN */
        mats[i] = x[i]->src;
        w[i] = evlm__q_widen(mats[i]);
        if (!w[i]) st = evlm__fail(EVLM_ERR_NOMEM, "layer %d: out of memory", l);
    }
    char name[320];
    const char *pre = evlm__model_text_prefix(q->m);
    static const struct {
        const char *group;
        int first, count; /* consumers */
    } groups[4] = {{"attn_qkv", 0, 3}, {"attn_o", 3, 1}, {"ffn_gate_up", 4, 2}, {"ffn_down", 6, 1}};
    for (int g = 0; g < 4 && st == EVLM_OK; g++) {
        const evlm_calib_stat *cs = evlm_calib_find(q->calib, l, groups[g].group);
        if (!cs || cs->n_kept == 0) continue; /* no calibration rows reached it: plain RTN */
        bool all_quant = true;
        for (int i = 0; i < groups[g].count; i++)
            all_quant = all_quant && evlm_type_is_quant(x[groups[g].first + i]->to) &&
                        !x[groups[g].first + i]->pinned;
        if (!all_quant) continue; /* a float or pinned consumer: nothing to protect */
        int64_t k = cs->k;
        float *mean = malloc(sizeof(float) * (size_t)k), *s = malloc(sizeof(float) * (size_t)k);
        if (!mean || !s) {
            free(mean), free(s);
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            break;
        }
        evlm_calib_mean_abs(cs, mean);
        if (g == 1) st = evlm_awq_tie_heads(mean, c->n_heads, c->n_kv_heads, c->head_dim);
        evlm_awq_linear lin[3];
        for (int i = 0; i < groups[g].count; i++)
            lin[i] = (evlm_awq_linear){w[groups[g].first + i], mats[groups[g].first + i]->ne[1]};
        evlm_awq_params ap = evlm_awq_default_params();
        evlm_awq_result res;
        evlm_type t = x[groups[g].first]->to;
        if (st == EVLM_OK)
            st = evlm_awq_search(t, lin, groups[g].count, k, mean, cs->rows, cs->n_kept, &ap,
                                 evlm__model_pool(q->m), s, &res);
        for (int i = 0; i < groups[g].count && st == EVLM_OK; i++)
            evlm_awq_scale_cols(w[groups[g].first + i], mats[groups[g].first + i]->ne[1], k, s);
        if (st == EVLM_OK) { /* fold diag(s)^-1 into the producer */
            float *b = NULL;
            if (g == 0 || g == 2) {
                snprintf(name, sizeof name, "%slayers.%d.%s", pre, l,
                         g == 0 ? "input_layernorm.weight" : "post_attention_layernorm.weight");
                float *norm = float_copy(q, name);
                st = norm ? evlm_awq_fold_norm(norm, k, s)
                          : evlm__fail(EVLM_ERR_FORMAT, "no tensor '%s'", name);
            } else if (g == 1) {
                snprintf(name, sizeof name, "%slayers.%d.self_attn.v_proj.bias", pre, l);
                if (evlm__model_has_bias(q->m, l, EVLM_ROLE_ATTN_V)) b = float_copy(q, name);
                st = evlm_awq_fold_v_proj(w[2], b, c->hidden_size, s, c->n_heads, c->n_kv_heads,
                                          c->head_dim);
            } else {
                snprintf(name, sizeof name, "%slayers.%d.mlp.up_proj.bias", pre, l);
                if (evlm__model_has_bias(q->m, l, EVLM_ROLE_MLP_UP)) b = float_copy(q, name);
                st = evlm_awq_fold_rows(w[5], b, c->hidden_size, s, k);
            }
        }
        for (int i = 0; i < groups[g].count; i++) {
            x[groups[g].first + i]->method = "awq";
            changed[groups[g].first + i] = true;
        }
        if (g == 1) changed[2] = true; /* v_proj rows */
        if (g == 3) changed[5] = true; /* up_proj rows */
        free(mean);
        free(s);
    }
    for (int i = 0; i < 7 && st == EVLM_OK; i++) {
        const char *method = x[i]->method;
        if (x[i]->pinned) continue;
        if (evlm_type_is_quant(x[i]->to)) {
            st = evlm__qmethod_find(EVLM_QMETHOD_RTN)->matrix(q, x[i], w[i]);
        } else if (changed[i]) { /* a float matrix that took a scale or a fold */
            x[i]->fdata = w[i];
            w[i] = NULL;
            x[i]->to = EVLM_TYPE_F32;
            evlm__q_set_view(x[i], EVLM_TYPE_F32, x[i]->fdata);
        }
        x[i]->method = method;
    }
    for (int i = 0; i < 7; i++) free(w[i]);
    return st;
}

const evlm__qmethod evlm__qmethod_awq = {
    .id = EVLM_QMETHOD_AWQ,
    .title = "AWQ",
    .name = "awq",
    .calibration = true,
    .layer = awq_layer,
};
