/*
 * family_qwen2vl.c - Qwen2-VL: its vision tower (Conv3d patches, 2-D rotary) + PatchMerger and
 * processor (dynamic resolution); each <|image_pad|> of a prompt grows to its image's merged
 * patch count after tokenization, and the prompt carries 3-D M-RoPE positions from
 * get_rope_index (text resumes after the image's largest position).
 * Not here: the decoder (decoder.h; M-RoPE itself), the tower's numerics (vision/qwen2vl_vit.c).
 */
#include "core/json.h"
#include "core/status.h"
#include "core/sysinfo.h"
#include "model/model_impl.h"
#include "vision/qwen2vl_proc.h"
#include "vision/qwen2vl_vit.h"

#include <stdlib.h>
#include <string.h>

typedef struct qwen2vl {
    evlm_qwen2vl_proc proc;
    evlm_qwen2vl_vision_config cfg;
    evlm_qwen2vl_vit vit;
    evlm_qwen2vl_vit_state state; /* planned for max_patches, grown for a larger image */
    int max_patches;
    int32_t image_token, vision_start, vision_end;
} qwen2vl;

/* An optional integer token id at the top of config.json. */
static evlm_status config_token(const evlm_dir *d, const char *key, int32_t dflt, int32_t *out) {
    cJSON *root;
    char file[4096];
    EVLM_TRY(evlm_dir_name(d, "config.json", file, sizeof file));
    EVLM_TRY(evlm_json_load_dir(d, "config.json", &root));
    int64_t v = dflt;
    evlm_status st = evlm_json_int(file, root, key, 0, INT32_MAX, &v);
    cJSON_Delete(root);
    *out = (int32_t)v;
    return st;
}

/* Activations planned for up to 1024 patches (a 448x448 image), grown when a larger image
 * comes. */
static evlm_status load(evlm_model *m, const evlm_dir *d, const evlm_model_params *p) {
    (void)p;
    qwen2vl *v = calloc(1, sizeof *v);
    if (!v) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    m->family_state = v;
    EVLM_TRY(evlm_qwen2vl_proc_load_dir(d, &v->proc));
    EVLM_TRY(evlm_qwen2vl_vision_config_load_dir(d, &v->cfg));
    if (v->cfg.hidden_size != m->cfg.hidden_size)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s/config.json: vision_config.hidden_size %d is not the text width %d",
                          d->path, v->cfg.hidden_size, m->cfg.hidden_size);
    EVLM_TRY(config_token(d, "image_token_id", 151655, &v->image_token));
    EVLM_TRY(config_token(d, "vision_start_token_id", 151652, &v->vision_start));
    EVLM_TRY(config_token(d, "vision_end_token_id", 151653, &v->vision_end));
    EVLM_TRY(evlm_qwen2vl_vit_init(&v->vit, &v->cfg, m->weights));
    m->has_vision = true;
    int64_t cap = v->proc.max_pixels / ((int64_t)v->proc.patch_size * v->proc.patch_size);
    v->max_patches = (int)(cap < 1024 ? (cap < 4 ? 4 : cap) : 1024);
    EVLM_TRY(
        evlm_qwen2vl_vit_state_init(&v->state, &v->vit, v->max_patches, evlm_pool_size(m->pool)));
    v->state.mm.act = m->act;
    return EVLM_OK;
}

static void release(evlm_model *m) {
    qwen2vl *v = m->family_state;
    if (!v) return;
    evlm_qwen2vl_vit_state_release(&v->state);
    evlm_qwen2vl_vit_release(&v->vit);
    free(v);
    m->family_state = NULL;
}

static void matrices(evlm_model *m, evlm_matrix_fn fn, void *user) {
    qwen2vl *v = m->family_state;
    for (int l = 0; l < v->cfg.depth; l++) {
        evlm_qwen2vl_vit_layer *ly = &v->vit.layers[l];
        fn(user, &ly->qkv, EVLM_ROLE_VISION_ATTN, l);
        fn(user, &ly->proj, EVLM_ROLE_VISION_ATTN, l);
        fn(user, &ly->fc1, EVLM_ROLE_VISION_MLP, l);
        fn(user, &ly->fc2, EVLM_ROLE_VISION_MLP, l);
    }
    fn(user, &v->vit.mlp0, EVLM_ROLE_CONNECTOR, -1);
    fn(user, &v->vit.mlp2, EVLM_ROLE_CONNECTOR, -1);
}

/* "<image>" (the generic marker of raw prompts) -> <|vision_start|><|image_pad|><|vision_end|> */
static evlm_status markers(const char *text, evlm_str *out) {
    static const char k_img[] = "<image>", k_q[] = "<|vision_start|><|image_pad|><|vision_end|>";
    for (const char *at; (at = strstr(text, k_img)); text = at + sizeof k_img - 1) {
        EVLM_TRY(evlm_str_append(out, text, (size_t)(at - text)));
        EVLM_TRY(evlm_str_append(out, k_q, sizeof k_q - 1));
    }
    return evlm_str_append(out, text, strlen(text));
}

/* One <|image_pad|> per image, grown to its merged patch count after tokenization. */
static evlm_status prompt(evlm_model *m, evlm_prompt *p, const char *text, bool add_special,
                          const evlm_image_input *images, int n_images) {
    qwen2vl *v = m->family_state;
    if (p->vision_hook && n_images > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "a quantized Qwen2-VL tower is not simulated (its vision graph is "
                          "float32)");
    evlm_status st = EVLM_OK;
    evlm_str marked = {0};
    evlm_ids raw = {0};
    evlm_qwen2vl_pixels px[64];
    int32_t grids[64 * 3];
    memset(px, 0, sizeof px);
    double t0 = evlm_time_ms();
    int total = 0;
    const int32_t pad = v->image_token;
    for (int i = 0; i < n_images; i++) {
        evlm_image img = {0};
        if ((st = evlm__image_input_load(&images[i], i, &img)) != EVLM_OK) goto done;
        st = evlm_qwen2vl_preprocess(&v->proc, &img, &px[i]);
        evlm_image_free(&img);
        if (st != EVLM_OK) {
            if (images[i].path) evlm__fail_prefix(st, "%s", images[i].path);
            goto done;
        }
        grids[3 * i] = px[i].grid_t;
        grids[3 * i + 1] = px[i].grid_h;
        grids[3 * i + 2] = px[i].grid_w;
        total += px[i].n_tokens;
    }
    if ((st = markers(text, &marked)) != EVLM_OK) goto done;
    if ((st = evlm_tokenizer_encode(m->tok, marked.data, marked.len, true, add_special, &raw)) !=
        EVLM_OK)
        goto done;
    int n_pads = 0;
    for (size_t i = 0; i < raw.len; i++) n_pads += raw.data[i] == pad;
    if (n_pads != n_images) {
        st = evlm__fail(EVLM_ERR_ARG,
                        "the prompt has %d image markers (<|image_pad|> or <image>) for %d images",
                        n_pads, n_images);
        goto done;
    }
    for (size_t i = 0, img = 0; i < raw.len; i++) {
        int reps = raw.data[i] == pad ? px[img++].n_tokens : 1;
        for (int r = 0; r < reps && st == EVLM_OK; r++) st = evlm_ids_push(&p->ids, raw.data[i]);
        if (st != EVLM_OK) goto done;
    }
    if (p->ids.len == 0) {
        st = evlm__fail(EVLM_ERR_ARG, "the prompt is empty after tokenization");
        goto done;
    }
    if (n_images == 0) goto done;
    const size_t H = (size_t)m->cfg.hidden_size, n = p->ids.len;
    p->n_feat_rows = total;
    p->image_token = pad;
    p->features = malloc(sizeof(float) * H * (size_t)total);
    p->mrope = malloc(sizeof(int32_t) * 3 * n);
    if (!p->features || !p->mrope) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory for %d image tokens", total);
        goto done;
    }
    float *dst = p->features;
    pthread_mutex_lock(&m->vision_mu);
    for (int i = 0; i < n_images && st == EVLM_OK; i++) {
        if (px[i].n_patches > v->max_patches) { /* a larger image than planned: grow once */
            evlm_qwen2vl_vit_state_release(&v->state);
            st = evlm_qwen2vl_vit_state_init(&v->state, &v->vit, px[i].n_patches,
                                             evlm_pool_size(m->pool));
            if (st != EVLM_OK) {
                v->max_patches = 0; /* nothing planned now: the next image plans again */
                break;
            }
            v->max_patches = px[i].n_patches;
            v->state.mm.act = m->act;
        }
        st = evlm_qwen2vl_vit_encode(&v->vit, &v->state, m->pool, px[i].pixel_values, px[i].grid_t,
                                     px[i].grid_h, px[i].grid_w, dst);
        dst += (size_t)px[i].n_tokens * H;
    }
    pthread_mutex_unlock(&m->vision_mu);
    if (st != EVLM_OK) goto done;
    st = evlm_qwen2vl_rope_index(p->ids.data, (int)n, pad, v->cfg.spatial_merge_size, grids,
                                 n_images, p->mrope, &p->mdelta);
    p->image_ms = evlm_time_ms() - t0;
done:
    for (int i = 0; i < n_images; i++) evlm_qwen2vl_pixels_free(&px[i]);
    evlm_str_free(&marked);
    evlm_ids_free(&raw);
    return st;
}

/* The decoder under "model." (always with q/k/v biases), the tower under "visual." and the
 * merger. The Conv3d kernel [D, C, T, p, p] is written as [D, C, T, p*p] (the same bytes; a 5-D
 * tensor loads folded to exactly this view). No text_only: the decoder needs M-RoPE and the
 * VLM's positions. */
static evlm_status synth(const evlm_synth_cfg *c, evlm_synth_add add, void *u) {
    if (c->text_only)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: text_only: the Qwen2-VL text model needs M-RoPE and the "
                          "VLM; write the Qwen2 text config itself",
                          c->file);
    evlm_qwen2vl_vision_config v;
    EVLM_TRY(evlm_qwen2vl_vision_config_parse(c->file, c->json, c->len, &v));
    EVLM_TRY(evlm__synth_decoder(c->text, "model.", true, add, u));
    const int64_t D = v.embed_dim, F = v.mlp_dim, P = v.patch_size, T = v.temporal_patch_size,
                  C = v.in_channels, MD = v.merged_dim;
    const evlm_synth_kind W = EVLM_SYNTH_RANDOM, N = EVLM_SYNTH_ONES, B = EVLM_SYNTH_ZEROS;
    EVLM_TRY(evlm__synth_put(add, u, W, 4, D, C, T, P * P, "visual.patch_embed.proj.weight"));
    for (int l = 0; l < v.depth; l++) {
#define V(sfx, kind, nd, a, b)                                                                     \
    EVLM_TRY(evlm__synth_put(add, u, kind, nd, a, b, 0, 0, "visual.blocks.%d." sfx, l))
        V("norm1.weight", N, 1, D, 0);
        V("norm1.bias", B, 1, D, 0);
        V("norm2.weight", N, 1, D, 0);
        V("norm2.bias", B, 1, D, 0);
        V("attn.qkv.weight", W, 2, 3 * D, D);
        V("attn.qkv.bias", B, 1, 3 * D, 0);
        V("attn.proj.weight", W, 2, D, D);
        V("attn.proj.bias", B, 1, D, 0);
        V("mlp.fc1.weight", W, 2, F, D);
        V("mlp.fc1.bias", B, 1, F, 0);
        V("mlp.fc2.weight", W, 2, D, F);
        V("mlp.fc2.bias", B, 1, D, 0);
#undef V
    }
    EVLM_TRY(evlm__synth_put(add, u, N, 1, D, 0, 0, 0, "visual.merger.ln_q.weight"));
    EVLM_TRY(evlm__synth_put(add, u, B, 1, D, 0, 0, 0, "visual.merger.ln_q.bias"));
    EVLM_TRY(evlm__synth_put(add, u, W, 2, MD, MD, 0, 0, "visual.merger.mlp.0.weight"));
    EVLM_TRY(evlm__synth_put(add, u, B, 1, MD, 0, 0, 0, "visual.merger.mlp.0.bias"));
    EVLM_TRY(evlm__synth_put(add, u, W, 2, v.hidden_size, MD, 0, 0, "visual.merger.mlp.2.weight"));
    return evlm__synth_put(add, u, B, 1, v.hidden_size, 0, 0, 0, "visual.merger.mlp.2.bias");
}

extern const evlm_family evlm_family_qwen2vl;

bool evlm__model_qwen2vl(const evlm_model *m, const evlm_qwen2vl_vit **tower,
                         const evlm_qwen2vl_proc **proc, int32_t *image_token) {
    if (!m || m->family != &evlm_family_qwen2vl || !m->family_state) return false;
    const qwen2vl *v = m->family_state;
    if (tower) *tower = &v->vit;
    if (proc) *proc = &v->proc;
    if (image_token) *image_token = v->image_token;
    return true;
}

static const char *const k_archs[] = {"Qwen2VLForConditionalGeneration", NULL};

const evlm_family evlm_family_qwen2vl = {
    .name = "qwen2vl",
    .architectures = k_archs,
    .load = load,
    .free = release,
    .matrices = matrices,
    .prompt = prompt,
    .synth = synth,
};
