/*
 * family_idefics3.c - Idefics3 / SmolVLM: a SigLIP vision tower, the pixel-shuffle connector and
 * Idefics3's image processor (tiles + a global image per picture), prompts whose "<image>"
 * markers are expanded in the text before tokenization (vision/idefics3_prompt.h).
 * Not here: the decoder (decoder.h), the tower's numerics (vision/siglip.c).
 */
#include "core/status.h"
#include "core/sysinfo.h"
#include "model/model_impl.h"
#include "vision/idefics3_prompt.h"
#include "vision/idefics3_proc.h"
#include "vision/siglip.h"
#include "vision/idefics3_config.h"

#include <stdlib.h>
#include <string.h>

typedef struct idefics3 {
    evlm_idefics3_config vcfg;
    evlm_idefics3_proc proc;
    evlm_siglip siglip;
    evlm_siglip_state vstate; /* planned at load for the largest tile grid; one image at a time */
    int max_tiles;
} idefics3;

/* The encoder's activations are planned for the largest tile grid the processor can produce
 * (bigger batches run in chunks). */
static evlm_status load(evlm_model *m, const evlm_dir *d, const evlm_model_params *p) {
    idefics3 *v = calloc(1, sizeof *v);
    if (!v) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    m->family_state = v;
    EVLM_TRY(evlm_idefics3_config_load_dir(d, &v->vcfg));
    EVLM_TRY(evlm_idefics3_proc_load_dir(d, &v->proc));
    if (p->image_splitting != EVLM_SPLIT_CONFIG)
        v->proc.do_image_splitting = p->image_splitting == EVLM_SPLIT_ON;
    EVLM_TRY(evlm_siglip_init(&v->siglip, &v->vcfg, m->weights));
    m->has_vision = true;
    int rows = 0, cols = 0, tiles = 1;
    int edge = v->proc.longest_edge > 0 ? v->proc.longest_edge : 2048;
    if (evlm_idefics3_plan(&v->proc, edge, edge, &rows, &cols, &tiles) != EVLM_OK) tiles = 1;
    v->max_tiles = tiles < 1 ? 1 : tiles > 17 ? 17 : tiles;
    EVLM_TRY(evlm_siglip_state_init(&v->vstate, &v->siglip, v->max_tiles, evlm_pool_size(m->pool)));
    v->vstate.mm.act = m->act;
    return EVLM_OK;
}

static void release(evlm_model *m) {
    idefics3 *v = m->family_state;
    if (!v) return;
    evlm_siglip_state_release(&v->vstate);
    evlm_siglip_release(&v->siglip);
    free(v);
    m->family_state = NULL;
}

static void matrices(evlm_model *m, evlm_matrix_fn fn, void *user) {
    idefics3 *v = m->family_state;
    for (int l = 0; l < v->siglip.cfg.n_layers; l++) {
        evlm_siglip_layer *ly = &v->siglip.layers[l];
        fn(user, &ly->wq, EVLM_ROLE_VISION_ATTN, l);
        fn(user, &ly->wk, EVLM_ROLE_VISION_ATTN, l);
        fn(user, &ly->wv, EVLM_ROLE_VISION_ATTN, l);
        fn(user, &ly->wo, EVLM_ROLE_VISION_ATTN, l);
        fn(user, &ly->fc1, EVLM_ROLE_VISION_MLP, l);
        fn(user, &ly->fc2, EVLM_ROLE_VISION_MLP, l);
    }
    fn(user, &v->siglip.proj, EVLM_ROLE_CONNECTOR, -1);
}

/* What prompt and prompt_pixels share: each image processed into px[i] (tiles), the text with
 * its "<image>" markers expanded and tokenized into ids, checked to hold one image token per
 * feature row; *total_tiles: the tiles of all images. The caller frees px[0 .. n_images). */
static evlm_status prepare(evlm_model *m, const char *text, bool add_special,
                           const evlm_image_input *images, int n_images, evlm_idefics3_pixels *px,
                           evlm_ids *ids, int *total_tiles) {
    idefics3 *v = m->family_state;
    evlm_status st = EVLM_OK;
    evlm_str expanded = {0};
    evlm_image_grid grids[64];
    *total_tiles = 0;
    for (int i = 0; i < n_images; i++) {
        evlm_image img = {0};
        if ((st = evlm__image_input_load(&images[i], i, &img)) != EVLM_OK) goto done;
        st = evlm_idefics3_preprocess(&v->proc, &img, &px[i]);
        evlm_image_free(&img);
        if (st != EVLM_OK) {
            if (images[i].path) evlm__fail_prefix(st, "%s", images[i].path);
            goto done;
        }
        grids[i].rows = px[i].n_rows;
        grids[i].cols = px[i].n_cols;
        *total_tiles += px[i].n_tiles;
    }
    if ((st = evlm_idefics3_expand(text, grids, n_images, v->vcfg.tokens_per_tile, &expanded)) !=
        EVLM_OK)
        goto done;
    if ((st = evlm__prompt_tokenize(m, expanded.data, expanded.len, add_special, ids)) != EVLM_OK)
        goto done;
    if (*total_tiles > 0) {
        int n_tok = 0, n_rows = *total_tiles * v->vcfg.tokens_per_tile;
        for (size_t i = 0; i < ids->len; i++) n_tok += ids->data[i] == v->vcfg.image_token_id;
        if (n_tok != n_rows)
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "the expanded prompt has %d image tokens for %d image features "
                            "(does the tokenizer know <image>?)",
                            n_tok, n_rows);
    }
done:
    evlm_str_free(&expanded);
    return st;
}

/* Tiles per image, markers expanded in the text before tokenization. */
static evlm_status prompt(evlm_model *m, evlm_prompt *p, const char *text, bool add_special,
                          const evlm_image_input *images, int n_images) {
    idefics3 *v = m->family_state;
    evlm_idefics3_pixels px[64];
    memset(px, 0, sizeof px);
    double t0 = evlm_time_ms();
    int total_tiles = 0;
    evlm_status st = prepare(m, text, add_special, images, n_images, px, &p->ids, &total_tiles);
    if (st == EVLM_OK && total_tiles > 0) {
        const size_t H = (size_t)m->cfg.hidden_size, per_tile = (size_t)v->vcfg.tokens_per_tile;
        p->n_feat_rows = (int)(total_tiles * per_tile);
        p->image_token = v->vcfg.image_token_id;
        p->features = malloc(sizeof(float) * H * (size_t)p->n_feat_rows);
        if (!p->features) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory for %d image tokens", p->n_feat_rows);
            goto done;
        }
        float *dst = p->features;
        /* a hook (NPU simulation, calibration) holds for this prompt's encoding alone */
        const evlm_vision_hook *hk = p->vision_hook;
        const evlm_siglip *tower = hk && hk->tower ? hk->tower : &v->siglip;
        pthread_mutex_lock(&m->vision_mu);
        v->vstate.transform = hk ? hk->transform : NULL;
        v->vstate.transform_user = hk ? hk->user : NULL;
        for (int i = 0; i < n_images && st == EVLM_OK; i++) {
            st = evlm_siglip_encode(tower, &v->vstate, m->pool, px[i].pixel_values,
                                    px[i].pixel_attention_mask, px[i].n_tiles, dst);
            dst += (size_t)px[i].n_tiles * per_tile * H;
        }
        v->vstate.transform = NULL;
        v->vstate.transform_user = NULL;
        pthread_mutex_unlock(&m->vision_mu);
    }
    p->image_ms = n_images ? evlm_time_ms() - t0 : 0;
done:
    for (int i = 0; i < n_images; i++) evlm_idefics3_pixels_free(&px[i]);
    return st;
}

/* The ids of prompt, and the processed tiles of every image concatenated in order. */
static evlm_status prompt_pixels(evlm_model *m, const char *text, bool add_special,
                                 const evlm_image_input *images, int n_images, evlm_ids *ids,
                                 float **pixels, uint8_t **mask, int *n_tiles) {
    idefics3 *v = m->family_state;
    evlm_idefics3_pixels px[64];
    memset(px, 0, sizeof px);
    int total = 0;
    evlm_status st = prepare(m, text, add_special, images, n_images, px, ids, &total);
    if (st == EVLM_OK && total > 0) {
        const size_t S2 = (size_t)v->vcfg.image_size * (size_t)v->vcfg.image_size;
        const size_t per_tile = (size_t)v->vcfg.num_channels * S2;
        *pixels = malloc(sizeof(float) * per_tile * (size_t)total);
        *mask = malloc(S2 * (size_t)total);
        if (!*pixels || !*mask) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory for the %d tiles of a prompt", total);
            goto done;
        }
        size_t at = 0;
        for (int i = 0; i < n_images; i++) {
            if (px[i].tile != v->vcfg.image_size) {
                st = evlm__fail(EVLM_ERR_FORMAT,
                                "image %d: the processor makes %d-pixel tiles, the tower takes %d",
                                i, px[i].tile, v->vcfg.image_size);
                goto done;
            }
            memcpy(*pixels + at * per_tile, px[i].pixel_values,
                   sizeof(float) * per_tile * (size_t)px[i].n_tiles);
            memcpy(*mask + at * S2, px[i].pixel_attention_mask, S2 * (size_t)px[i].n_tiles);
            at += (size_t)px[i].n_tiles;
        }
        *n_tiles = total;
    }
done:
    for (int i = 0; i < n_images; i++) evlm_idefics3_pixels_free(&px[i]);
    return st;
}

/* The decoder under "model.text_model." (text_only: under "model.", a Llama model), the SigLIP
 * tower under "model.vision_model." and the connector. */
static evlm_status synth(const evlm_synth_cfg *c, evlm_synth_add add, void *u) {
    if (c->text_only)
        return evlm__synth_decoder(c->text, "model.", evlm__synth_qkv_bias(c->text), add, u);
    evlm_idefics3_config v;
    EVLM_TRY(evlm_idefics3_config_parse(c->file, c->json, c->len, &v));
    EVLM_TRY(
        evlm__synth_decoder(c->text, "model.text_model.", evlm__synth_qkv_bias(c->text), add, u));
    const int64_t D = v.hidden_size, F = v.intermediate_size, P = v.patch_size, C = v.num_channels;
    const evlm_synth_kind W = EVLM_SYNTH_RANDOM, N = EVLM_SYNTH_ONES, B = EVLM_SYNTH_ZEROS;
    const char *p = "model.vision_model.";
    EVLM_TRY(evlm__synth_put(add, u, W, 4, D, C, P, P, "%sembeddings.patch_embedding.weight", p));
    EVLM_TRY(evlm__synth_put(add, u, B, 1, D, 0, 0, 0, "%sembeddings.patch_embedding.bias", p));
    EVLM_TRY(evlm__synth_put(add, u, W, 2, v.num_patches, D, 0, 0,
                             "%sembeddings.position_embedding.weight", p));
    static const char *lin[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int l = 0; l < v.n_layers; l++) {
#define T(kind, nd, a, b, ...) EVLM_TRY(evlm__synth_put(add, u, kind, nd, a, b, 0, 0, __VA_ARGS__))
        for (int k = 1; k <= 2; k++) {
            T(N, 1, D, 0, "%sencoder.layers.%d.layer_norm%d.weight", p, l, k);
            T(B, 1, D, 0, "%sencoder.layers.%d.layer_norm%d.bias", p, l, k);
        }
        for (int k = 0; k < 4; k++) {
            T(W, 2, D, D, "%sencoder.layers.%d.self_attn.%s.weight", p, l, lin[k]);
            T(B, 1, D, 0, "%sencoder.layers.%d.self_attn.%s.bias", p, l, lin[k]);
        }
        T(W, 2, F, D, "%sencoder.layers.%d.mlp.fc1.weight", p, l);
        T(B, 1, F, 0, "%sencoder.layers.%d.mlp.fc1.bias", p, l);
        T(W, 2, D, F, "%sencoder.layers.%d.mlp.fc2.weight", p, l);
        T(B, 1, D, 0, "%sencoder.layers.%d.mlp.fc2.bias", p, l);
#undef T
    }
    EVLM_TRY(evlm__synth_put(add, u, N, 1, D, 0, 0, 0, "%spost_layernorm.weight", p));
    EVLM_TRY(evlm__synth_put(add, u, B, 1, D, 0, 0, 0, "%spost_layernorm.bias", p));
    return evlm__synth_put(add, u, W, 2, v.text_hidden_size, D * v.scale_factor * v.scale_factor, 0,
                           0, "model.connector.modality_projection.proj.weight");
}

extern const evlm_family evlm_family_idefics3;

bool evlm__model_idefics3(const evlm_model *m, const evlm_siglip **tower,
                          const evlm_idefics3_proc **proc, int *max_tiles) {
    if (!m || m->family != &evlm_family_idefics3 || !m->family_state) return false;
    const idefics3 *v = m->family_state;
    if (tower) *tower = &v->siglip;
    if (proc) *proc = &v->proc;
    if (max_tiles) *max_tiles = v->max_tiles;
    return true;
}

static const char *const k_archs[] = {"Idefics3ForConditionalGeneration",
                                      "SmolVLMForConditionalGeneration", NULL};

const evlm_family evlm_family_idefics3 = {
    .name = "idefics3",
    .architectures = k_archs,
    .load = load,
    .free = release,
    .matrices = matrices,
    .prompt = prompt,
    .prompt_pixels = prompt_pixels,
    .synth = synth,
};
