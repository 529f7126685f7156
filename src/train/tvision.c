/*
 * tvision.c - the Idefics3 / SmolVLM vision tower and connector for training (tvision.h): the
 * forward that keeps its activations and the backward into the parameter gradients.
 *
 * Walk (shapes per pass of T tiles, N patches each, M = T * N rows, D wide, F the MLP width,
 * R = T * tokens_per_tile connector rows of DS = D * scale^2):
 *   patches (M, C*p*p) = tiles unfolded in the Conv2d weight's (c, ky, kx) order
 *   x_0 (M, D) = patches @ Wp^T + bp, + pos[pos_id] (NaViT ids: evlm_siglip_position_ids)
 *   layer l: h1 = LN1(x_l); q, k, v = h1 @ W^T + b; a = attn(q, k, v) per tile, all queries,
 *            padding patches masked as keys; x_mid = a @ Wo^T + bo + x_l;
 *            h2 = LN2(x_mid); u = h2 @ W1^T + b1; x_{l+1} = gelu(u) @ W2^T + b2 + x_mid
 *   y (M, D) = post_LN(x_L); shuf (R, DS) = pixel shuffle of y; features = shuf @ Wproj^T
 * Kept for the backward: patches, every x_l, x_mid, q, k, v, a, lse, u, the norms' mean /
 * rstd, y, shuf; h1, h2 and gelu(u) are recomputed in the backward (cheap row ops, bit-identical
 * to the forward's: 2 D + F floats per patch and layer saved). The backward runs the walk in
 * reverse with the ops' backward passes (ops.h); the pixel shuffle and the position gather are
 * permutations / scatter-adds done here, in row order, so the results are deterministic for a fixed
 * thread count. Not here: the ops' numerics (ops.c), preprocessing, the decoder (tdecoder.c), the
 * gradient of the pixels.
 */
#include "train/tvision.h"
#include "core/status.h"
#include "model/model.h"
#include "train/qat.h"
#include "vision/siglip.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
    LP_LN1_W,
    LP_LN1_B,
    LP_Q_W,
    LP_Q_B,
    LP_K_W,
    LP_K_B,
    LP_V_W,
    LP_V_B,
    LP_O_W,
    LP_O_B,
    LP_LN2_W,
    LP_LN2_B,
    LP_FC1_W,
    LP_FC1_B,
    LP_FC2_W,
    LP_FC2_B,
    LP_COUNT
};

/* each layer parameter's name and shape (PyTorch order) in units: 'D' hidden, 'F' MLP, 0 none */
static const struct {
    const char *name;
    char d0, d1;
} k_layer[LP_COUNT] = {
    {"layer_norm1.weight", 'D', 0},
    {"layer_norm1.bias", 'D', 0},
    {"self_attn.q_proj.weight", 'D', 'D'},
    {"self_attn.q_proj.bias", 'D', 0},
    {"self_attn.k_proj.weight", 'D', 'D'},
    {"self_attn.k_proj.bias", 'D', 0},
    {"self_attn.v_proj.weight", 'D', 'D'},
    {"self_attn.v_proj.bias", 'D', 0},
    {"self_attn.out_proj.weight", 'D', 'D'},
    {"self_attn.out_proj.bias", 'D', 0},
    {"layer_norm2.weight", 'D', 0},
    {"layer_norm2.bias", 'D', 0},
    {"mlp.fc1.weight", 'F', 'D'},
    {"mlp.fc1.bias", 'F', 0},
    {"mlp.fc2.weight", 'D', 'F'},
    {"mlp.fc2.bias", 'D', 0},
};

enum { EP_PATCH_W, EP_PATCH_B, EP_POS, EP_POST_W, EP_POST_B, EP_PROJ, EP_COUNT };

/* one layer's activations, (M, D) unless noted */
typedef struct layer_act {
    float *x_in, *q, *k, *v, *att, *x_mid;
    float *u;                             /* (M, F) fc1 output before the GELU */
    float *lse;                           /* (n_heads, M) */
    float *mean1, *rstd1, *mean2, *rstd2; /* (M) */
} layer_act;

struct evlm_tvision {
    evlm_idefics3_config c;
    evlm_tparams *tp;
    int max_tiles, n_tiles; /* n_tiles: of the last forward (0: none yet) */
    const evlm_tparam **lp; /* [n_layers][LP_COUNT] */
    const evlm_tparam *ep[EP_COUNT];
    layer_act *la;                   /* [n_layers] */
    float *patches;                  /* (M, CPP) */
    float *x_last, *y;               /* (M, D): x_L and post_LN(x_L) */
    float *mean_p, *rstd_p;          /* (M) */
    float *shuf;                     /* (R, DS) */
    float *hbuf;                     /* (M, D): LN1 / LN2 output, recomputed in the backward */
    float *stat;                     /* (2 M): the recomputed norms' mean / rstd */
    float *dres, *dh, *dq, *dk, *dv; /* (M, D) backward */
    float *dF, *gbuf;                /* (M, F) backward; gbuf: gelu(u) in both passes */
    float *dshuf;                    /* (R, DS) */
    int32_t *pos_ids;                /* (M) */
    uint8_t *key_valid;              /* (M) 1 = real patch */
    int *seq_off, *seq_len;          /* (max_tiles) */
    void *arena;
    const evlm_tqat *qat; /* configured QAT; NULL: none */
};

static const float *W(const evlm_tvision *v, const evlm_tparam *p) {
    if (v->qat) return evlm_tqat_w(v->qat, p); /* fake-quantized under QAT */
    return v->tp->w + p->off;
}
/* the gradient of a trainable parameter, NULL for a frozen one */
static float *G(const evlm_tvision *v, const evlm_tparam *p) {
    if (v->qat) {
        float *g = evlm_tqat_g(v->qat, p); /* LSQ: the rounded matrix's gradient */
        if (g) return g;
    }
    return p->trainable ? v->tp->g + p->off : NULL;
}

void evlm_tvision_set_qat(evlm_tvision *v, const evlm_tqat *q) {
    v->qat = q;
}

/* the parameter prefix + name with shape d0 (, d1 ...): n_dims dims, PyTorch order */
static evlm_status bind(evlm_tparams *tp, const char *prefix, const char *name, int n_dims,
                        const int64_t *shape, const evlm_tparam **out) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const evlm_tparam *p = evlm_tparams_find(tp, full);
    if (!p) return evlm__fail(EVLM_ERR_FORMAT, "vision training: parameter '%s' not found", full);
    bool ok = p->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = p->shape[i] == shape[i];
    if (!ok) {
        char got[96] = "", want[96] = "";
        for (int i = 0; i < p->n_dims && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)p->shape[i]);
        for (int i = 0; i < n_dims; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "",
                     (long long)shape[i]);
        return evlm__fail(EVLM_ERR_FORMAT,
                          "vision training: parameter '%s' has shape [%s], the config implies [%s]",
                          full, got, want);
    }
    *out = p;
    return EVLM_OK;
}

static evlm_status bind_all(evlm_tvision *v) {
    const evlm_idefics3_config *c = &v->c;
    const int64_t D = c->hidden_size, F = c->intermediate_size, P = c->patch_size;
    const int64_t S2 = (int64_t)c->scale_factor * c->scale_factor;
    const char *prefix = evlm_tparams_find(v->tp, "model.vision_model.embeddings.patch_embedding."
                                                  "weight")
                             ? "model."
                             : "";
    char pre[160];
    const int64_t patch[4] = {D, c->num_channels, P, P}, pos[2] = {c->num_patches, D};
    const int64_t vecD[1] = {D}, proj[2] = {c->text_hidden_size, D * S2};
    snprintf(pre, sizeof pre, "%svision_model.", prefix);
    EVLM_TRY(bind(v->tp, pre, "embeddings.patch_embedding.weight", 4, patch, &v->ep[EP_PATCH_W]));
    EVLM_TRY(bind(v->tp, pre, "embeddings.patch_embedding.bias", 1, vecD, &v->ep[EP_PATCH_B]));
    EVLM_TRY(bind(v->tp, pre, "embeddings.position_embedding.weight", 2, pos, &v->ep[EP_POS]));
    EVLM_TRY(bind(v->tp, pre, "post_layernorm.weight", 1, vecD, &v->ep[EP_POST_W]));
    EVLM_TRY(bind(v->tp, pre, "post_layernorm.bias", 1, vecD, &v->ep[EP_POST_B]));
    EVLM_TRY(
        bind(v->tp, prefix, "connector.modality_projection.proj.weight", 2, proj, &v->ep[EP_PROJ]));
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(pre, sizeof pre, "%svision_model.encoder.layers.%d.", prefix, l);
        for (int i = 0; i < LP_COUNT; i++) {
            const int64_t shape[2] = {k_layer[i].d0 == 'F' ? F : D, k_layer[i].d1 == 'F' ? F : D};
            EVLM_TRY(bind(v->tp, pre, k_layer[i].name, k_layer[i].d1 ? 2 : 1, shape,
                          &v->lp[(size_t)l * LP_COUNT + (size_t)i]));
        }
    }
    return EVLM_OK;
}

evlm_status evlm_tvision_new(const evlm_model *m, evlm_tparams *tp, int max_tiles,
                             evlm_tvision **out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "evlm_tvision_new: NULL argument");
    *out = NULL;
    if (!m || !tp) return evlm__fail(EVLM_ERR_ARG, "evlm_tvision_new: NULL argument");
    const evlm_siglip *tower = NULL;
    if (!evlm__model_idefics3(m, &tower, NULL, NULL))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "vision training: only the Idefics3 / SmolVLM tower has a backward "
                          "(this model's family has none)");
    if (max_tiles < 1 || max_tiles > 4096)
        return evlm__fail(EVLM_ERR_ARG, "vision training: max_tiles %d is not in [1, 4096]",
                          max_tiles);
    evlm_tvision *v = calloc(1, sizeof *v);
    if (!v) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    v->c = tower->cfg;
    v->tp = tp;
    v->max_tiles = max_tiles;
    const evlm_idefics3_config *c = &v->c;
    const size_t L = (size_t)c->n_layers, T = (size_t)max_tiles, M = T * (size_t)c->num_patches;
    const size_t D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    const size_t CPP = (size_t)c->num_channels * c->patch_size * c->patch_size;
    const size_t R = T * (size_t)c->tokens_per_tile;
    const size_t DS = D * (size_t)c->scale_factor * (size_t)c->scale_factor;
    const size_t NH = (size_t)c->n_heads;
    v->lp = calloc(L * LP_COUNT, sizeof *v->lp);
    v->la = calloc(L, sizeof *v->la);
    evlm_status st = EVLM_OK;
    if (!v->lp || !v->la) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = bind_all(v)) != EVLM_OK) goto fail;

    /* the config bounds every factor (idefics3_config.c), so only the total needs a check */
    const size_t per_layer = M * (6 * D + F) + M * NH + 4 * M;
    const size_t n_floats = L * per_layer + M * CPP + 2 * M * D + 2 * M + R * DS + M * D + 2 * M +
                            5 * M * D + 2 * M * F + R * DS;
    const size_t bytes = n_floats * sizeof(float) + M * sizeof(int32_t) + 2 * T * sizeof(int) + M;
    if (n_floats > ((size_t)1 << 38) || M > ((size_t)1 << 30)) {
        st =
            evlm__fail(EVLM_ERR_NOMEM, "vision training: %d tiles need too much memory", max_tiles);
        goto fail;
    }
    v->arena = calloc(bytes, 1);
    if (!v->arena) {
        st = evlm__fail(EVLM_ERR_NOMEM,
                        "vision training: cannot allocate %zu MB of activations for %d tiles",
                        bytes >> 20, max_tiles);
        goto fail;
    }
    float *p = v->arena;
#define CARVE(dst, count)                                                                          \
    do {                                                                                           \
        (dst) = p;                                                                                 \
        p += (count);                                                                              \
    } while (0)
    for (size_t l = 0; l < L; l++) {
        layer_act *a = &v->la[l];
        CARVE(a->x_in, M * D);
        CARVE(a->q, M * D);
        CARVE(a->k, M * D);
        CARVE(a->v, M * D);
        CARVE(a->att, M * D);
        CARVE(a->x_mid, M * D);
        CARVE(a->u, M * F);
        CARVE(a->lse, M * NH);
        CARVE(a->mean1, M);
        CARVE(a->rstd1, M);
        CARVE(a->mean2, M);
        CARVE(a->rstd2, M);
    }
    CARVE(v->patches, M * CPP);
    CARVE(v->x_last, M * D);
    CARVE(v->y, M * D);
    CARVE(v->mean_p, M);
    CARVE(v->rstd_p, M);
    CARVE(v->shuf, R * DS);
    CARVE(v->hbuf, M * D);
    CARVE(v->stat, 2 * M);
    CARVE(v->dres, M * D);
    CARVE(v->dh, M * D);
    CARVE(v->dq, M * D);
    CARVE(v->dk, M * D);
    CARVE(v->dv, M * D);
    CARVE(v->dF, M * F);
    CARVE(v->gbuf, M * F);
    CARVE(v->dshuf, R * DS);
#undef CARVE
    v->pos_ids = (int32_t *)p;
    v->seq_off = (int *)(v->pos_ids + M);
    v->seq_len = v->seq_off + T;
    v->key_valid = (uint8_t *)(v->seq_len + T);
    *out = v;
    return EVLM_OK;
fail:
    evlm_tvision_free(v);
    return st;
}

void evlm_tvision_free(evlm_tvision *v) {
    if (!v) return;
    free(v->arena);
    free(v->la);
    free(v->lp);
    free(v);
}

int evlm_tvision_tokens_per_tile(const evlm_tvision *v) {
    return v->c.tokens_per_tile;
}

void evlm_tvision_tops_need(const evlm_tvision *v, int *max_dim, int *max_seq, int *head_dim) {
    const evlm_idefics3_config *c = &v->c;
    int d = c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size;
    int cpp = c->num_channels * c->patch_size * c->patch_size;
    int ds = c->hidden_size * c->scale_factor * c->scale_factor;
    d = d > cpp ? d : cpp;
    d = d > ds ? d : ds;
    d = d > c->text_hidden_size ? d : c->text_hidden_size;
    if (max_dim) *max_dim = d;
    if (max_seq) *max_seq = c->num_patches;
    if (head_dim) *head_dim = c->head_dim;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* patch masks (a patch is real when one of its pixels is), position ids, attention layout */
static evlm_status plan_tiles(evlm_tvision *v, const uint8_t *mask, int T) {
    const evlm_idefics3_config *c = &v->c;
    const int N = c->num_patches, G = c->patches_per_side, P = c->patch_size, S = c->image_size;
    for (int t = 0; t < T; t++) {
        uint8_t *pm = v->key_valid + (size_t)t * N;
        if (!mask) {
            memset(pm, 1, (size_t)N);
        } else {
            const uint8_t *pxm = mask + (size_t)t * S * S;
            for (int py = 0; py < G; py++)
                for (int px = 0; px < G; px++) {
                    uint8_t any = 0;
                    for (int ky = 0; ky < P && !any; ky++) {
                        const uint8_t *row = pxm + ((size_t)py * P + ky) * S + (size_t)px * P;
                        for (int kx = 0; kx < P; kx++) any |= row[kx];
                    }
                    pm[py * G + px] = any != 0;
                }
        }
        if (evlm_siglip_position_ids(c, pm, v->pos_ids + (size_t)t * N) < 0)
            return evlm__fail_prefix(EVLM_ERR_ARG, "vision training: tile %d", t);
        v->seq_off[t] = t * N;
        v->seq_len[t] = N;
    }
    return EVLM_OK;
}

static evlm_top_attn_shape attn_shape(const evlm_tvision *v) {
    const evlm_idefics3_config *c = &v->c;
    evlm_top_attn_shape sh = {
        .n_seq = v->n_tiles,
        .seq_off = v->seq_off,
        .seq_len = v->seq_len,
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_heads,
        .head_dim = c->head_dim,
        .causal = false,
        .key_valid = v->key_valid,
        .scale = (float)(1.0 / sqrt((double)c->head_dim)),
    };
    return sh;
}

/* row r of the (T * tokens, D * s^2) shuffle holds, at k = (dy * s + dx) * D + d, element d of
 * patch (h2 * s + dy, w2 * s + dx) of its tile (Idefics3Connector.pixel_shuffle); this returns
 * the patch row (of the M rows) of block (dy, dx) of shuffled row r */
static size_t shuffle_src(const evlm_idefics3_config *c, int r, int dy, int dx) {
    const int G = c->patches_per_side, sf = c->scale_factor, GS = G / sf;
    const int TPT = c->tokens_per_tile, tile = r / TPT, h2 = (r % TPT) / GS, w2 = (r % TPT) % GS;
    return (size_t)tile * c->num_patches + (size_t)(h2 * sf + dy) * G + (size_t)(w2 * sf + dx);
}

evlm_status evlm_tvision_forward(evlm_tvision *v, const evlm_tops *o, const float *pixels,
                                 const uint8_t *mask, int n_tiles, float *features) {
    if (!v || !o || !pixels || !features)
        return evlm__fail(EVLM_ERR_ARG, "evlm_tvision_forward: NULL argument");
    if (n_tiles < 1 || n_tiles > v->max_tiles)
        return evlm__fail(EVLM_ERR_ARG,
                          "vision training: %d tiles in one pass, the model was planned for 1 to "
                          "%d (max_tiles)",
                          n_tiles, v->max_tiles);
    const evlm_idefics3_config *c = &v->c;
    const int N = c->num_patches, G = c->patches_per_side, P = c->patch_size, S = c->image_size;
    const int D = c->hidden_size, F = c->intermediate_size, M = n_tiles * N;
    const int CPP = c->num_channels * P * P, sf = c->scale_factor;
    const int R = n_tiles * c->tokens_per_tile, DS = D * sf * sf;
    v->n_tiles = 0;
    EVLM_TRY(plan_tiles(v, mask, n_tiles));
    v->n_tiles = n_tiles;

    /* embeddings: unfold, Conv2d as a linear, + position rows */
    for (int r = 0; r < M; r++) {
        const int tile = r / N, py = (r % N) / G, px = (r % N) % G;
        const float *img = pixels + (size_t)tile * c->num_channels * S * S;
        float *dst = v->patches + (size_t)r * CPP;
        for (int ch = 0; ch < c->num_channels; ch++)
            for (int ky = 0; ky < P; ky++) {
                memcpy(dst, img + ((size_t)ch * S + (size_t)py * P + ky) * S + (size_t)px * P,
                       sizeof(float) * (size_t)P);
                dst += P;
            }
    }
    float *x = c->n_layers ? v->la[0].x_in : v->x_last;
    evlm_top_linear(o, x, v->patches, W(v, v->ep[EP_PATCH_W]), W(v, v->ep[EP_PATCH_B]), M, D, CPP);
    const float *pos = W(v, v->ep[EP_POS]);
    for (int r = 0; r < M; r++) {
        float *xr = x + (size_t)r * D;
        const float *pe = pos + (size_t)v->pos_ids[r] * D;
        for (int i = 0; i < D; i++) xr[i] += pe[i];
    }

    const evlm_top_attn_shape sh = attn_shape(v);
    const float eps = c->layer_norm_eps;
    for (int l = 0; l < c->n_layers; l++) {
        const evlm_tparam *const *lp = v->lp + (size_t)l * LP_COUNT;
        layer_act *a = &v->la[l];
        float *x_out = l + 1 < c->n_layers ? v->la[l + 1].x_in : v->x_last;
        evlm_top_layernorm(o, v->hbuf, a->mean1, a->rstd1, a->x_in, W(v, lp[LP_LN1_W]),
                           W(v, lp[LP_LN1_B]), M, D, eps);
        evlm_top_linear(o, a->q, v->hbuf, W(v, lp[LP_Q_W]), W(v, lp[LP_Q_B]), M, D, D);
        evlm_top_linear(o, a->k, v->hbuf, W(v, lp[LP_K_W]), W(v, lp[LP_K_B]), M, D, D);
        evlm_top_linear(o, a->v, v->hbuf, W(v, lp[LP_V_W]), W(v, lp[LP_V_B]), M, D, D);
        evlm_top_attn(o, &sh, a->att, a->lse, a->q, a->k, a->v);
        evlm_top_linear(o, a->x_mid, a->att, W(v, lp[LP_O_W]), W(v, lp[LP_O_B]), M, D, D);
        evlm_top_add(o, a->x_mid, a->x_in, (size_t)M * D);
        evlm_top_layernorm(o, v->hbuf, a->mean2, a->rstd2, a->x_mid, W(v, lp[LP_LN2_W]),
                           W(v, lp[LP_LN2_B]), M, D, eps);
        evlm_top_linear(o, a->u, v->hbuf, W(v, lp[LP_FC1_W]), W(v, lp[LP_FC1_B]), M, F, D);
        evlm_top_gelu_tanh(o, v->gbuf, a->u, (size_t)M * F);
        evlm_top_linear(o, x_out, v->gbuf, W(v, lp[LP_FC2_W]), W(v, lp[LP_FC2_B]), M, D, F);
        evlm_top_add(o, x_out, a->x_mid, (size_t)M * D);
    }
    evlm_top_layernorm(o, v->y, v->mean_p, v->rstd_p, v->x_last, W(v, v->ep[EP_POST_W]),
                       W(v, v->ep[EP_POST_B]), M, D, eps);

    /* connector: pixel shuffle, bias-free projection */
    for (int r = 0; r < R; r++) {
        float *dst = v->shuf + (size_t)r * DS;
        for (int dy = 0; dy < sf; dy++)
            for (int dx = 0; dx < sf; dx++, dst += D)
                memcpy(dst, v->y + shuffle_src(c, r, dy, dx) * D, sizeof(float) * (size_t)D);
    }
    evlm_top_linear(o, features, v->shuf, W(v, v->ep[EP_PROJ]), NULL, R, c->text_hidden_size, DS);
    return EVLM_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

static bool layer_trainable(const evlm_tvision *v, int l) {
    for (int i = 0; i < LP_COUNT; i++)
        if (G(v, v->lp[(size_t)l * LP_COUNT + (size_t)i])) return true; /* or LSQ scales */
    return false;
}

evlm_status evlm_tvision_backward(evlm_tvision *v, const evlm_tops *o, const float *dfeatures) {
    if (!v || !o || !dfeatures)
        return evlm__fail(EVLM_ERR_ARG, "evlm_tvision_backward: NULL argument");
    if (v->n_tiles < 1)
        return evlm__fail(EVLM_ERR_ARG, "vision training: backward without a forward");
    const evlm_idefics3_config *c = &v->c;
    const int L = c->n_layers, D = c->hidden_size, F = c->intermediate_size;
    const int N = c->num_patches, M = v->n_tiles * N, sf = c->scale_factor;
    const int R = v->n_tiles * c->tokens_per_tile, DS = D * sf * sf;
    const int CPP = c->num_channels * c->patch_size * c->patch_size;

    /* lowest: the first stage (0 = embeddings, 1 + l = layer l, L + 1 = post norm) with a
     * trainable parameter; the walk goes no lower */
    const bool emb =
        v->ep[EP_PATCH_W]->trainable || v->ep[EP_PATCH_B]->trainable || v->ep[EP_POS]->trainable;
    int lowest = -1;
    if (emb) lowest = 0;
    for (int l = 0; l < L && lowest < 0; l++)
        if (layer_trainable(v, l)) lowest = 1 + l;
    if (lowest < 0 && (v->ep[EP_POST_W]->trainable || v->ep[EP_POST_B]->trainable)) lowest = L + 1;
    if (lowest < 0 && !G(v, v->ep[EP_PROJ])) return EVLM_OK; /* all frozen */

    evlm_top_linear_bwd(o, lowest >= 0 ? v->dshuf : NULL, false, G(v, v->ep[EP_PROJ]), NULL,
                        dfeatures, v->shuf, W(v, v->ep[EP_PROJ]), R, c->text_hidden_size, DS);
    if (lowest < 0) return EVLM_OK;

    /* un-shuffle into dh (every patch row is written once), then the post norm */
    for (int r = 0; r < R; r++) {
        const float *src = v->dshuf + (size_t)r * DS;
        for (int dy = 0; dy < sf; dy++)
            for (int dx = 0; dx < sf; dx++, src += D)
                memcpy(v->dh + shuffle_src(c, r, dy, dx) * D, src, sizeof(float) * (size_t)D);
    }
    memset(v->dres, 0, sizeof(float) * (size_t)M * D);
    evlm_top_layernorm_bwd(o, lowest <= L ? v->dres : NULL, G(v, v->ep[EP_POST_W]),
                           G(v, v->ep[EP_POST_B]), v->dh, v->x_last, W(v, v->ep[EP_POST_W]),
                           v->mean_p, v->rstd_p, M, D);

    const evlm_top_attn_shape sh = attn_shape(v);
    for (int l = L - 1; l >= 0 && lowest <= 1 + l; l--) {
        const evlm_tparam *const *lp = v->lp + (size_t)l * LP_COUNT;
        const layer_act *a = &v->la[l];
        const bool below = lowest < 1 + l; /* d x_l is needed */
        /* MLP: dres = d x_{l+1} -> d x_mid (residual + LN2's backward) */
        evlm_top_gelu_tanh(o, v->gbuf, a->u, (size_t)M * F);
        evlm_top_linear_bwd(o, v->dF, false, G(v, lp[LP_FC2_W]), G(v, lp[LP_FC2_B]), v->dres,
                            v->gbuf, W(v, lp[LP_FC2_W]), M, D, F);
        evlm_top_gelu_tanh_bwd(o, v->dF, v->dF, a->u, (size_t)M * F);
        evlm_top_layernorm(o, v->hbuf, v->stat, v->stat + M, a->x_mid, W(v, lp[LP_LN2_W]),
                           W(v, lp[LP_LN2_B]), M, D, c->layer_norm_eps);
        evlm_top_linear_bwd(o, v->dh, false, G(v, lp[LP_FC1_W]), G(v, lp[LP_FC1_B]), v->dF, v->hbuf,
                            W(v, lp[LP_FC1_W]), M, F, D);
        evlm_top_layernorm_bwd(o, v->dres, G(v, lp[LP_LN2_W]), G(v, lp[LP_LN2_B]), v->dh, a->x_mid,
                               W(v, lp[LP_LN2_W]), a->mean2, a->rstd2, M, D);
        /* attention: dres = d x_mid -> d x_l */
        evlm_top_linear_bwd(o, v->dh, false, G(v, lp[LP_O_W]), G(v, lp[LP_O_B]), v->dres, a->att,
                            W(v, lp[LP_O_W]), M, D, D);
        evlm_top_attn_bwd(o, &sh, v->dq, v->dk, v->dv, v->dh, a->q, a->k, a->v, a->att, a->lse);
        evlm_top_layernorm(o, v->hbuf, v->stat, v->stat + M, a->x_in, W(v, lp[LP_LN1_W]),
                           W(v, lp[LP_LN1_B]), M, D, c->layer_norm_eps);
        evlm_top_linear_bwd(o, v->dh, false, G(v, lp[LP_Q_W]), G(v, lp[LP_Q_B]), v->dq, v->hbuf,
                            W(v, lp[LP_Q_W]), M, D, D);
        evlm_top_linear_bwd(o, v->dh, true, G(v, lp[LP_K_W]), G(v, lp[LP_K_B]), v->dk, v->hbuf,
                            W(v, lp[LP_K_W]), M, D, D);
        evlm_top_linear_bwd(o, v->dh, true, G(v, lp[LP_V_W]), G(v, lp[LP_V_B]), v->dv, v->hbuf,
                            W(v, lp[LP_V_W]), M, D, D);
        evlm_top_layernorm_bwd(o, below ? v->dres : NULL, G(v, lp[LP_LN1_W]), G(v, lp[LP_LN1_B]),
                               v->dh, a->x_in, W(v, lp[LP_LN1_W]), a->mean1, a->rstd1, M, D);
    }
    if (lowest > 0) return EVLM_OK;

    /* embeddings: scatter-add into the position rows in row order, then the patch linear */
    float *gpos = G(v, v->ep[EP_POS]);
    if (gpos)
        for (int r = 0; r < M; r++) {
            float *gr = gpos + (size_t)v->pos_ids[r] * D;
            const float *dr = v->dres + (size_t)r * D;
            for (int i = 0; i < D; i++) gr[i] += dr[i];
        }
    evlm_top_linear_bwd(o, NULL, false, G(v, v->ep[EP_PATCH_W]), G(v, v->ep[EP_PATCH_B]), v->dres,
                        v->patches, W(v, v->ep[EP_PATCH_W]), M, D, CPP);
    return EVLM_OK;
}
