/*
 * prompt.c - multimodal prompts (see evlm.h "prompts with images"): the Idefics3 prompt
 * expansion, image decoding + preprocessing + encoding, and the evaluation that places the
 * features at the image tokens.
 *
 * Two families: Idefics3 / SmolVLM (tiles + global image, text-level marker expansion) and
 * Qwen2-VL (dynamic resolution; each <|image_pad|> grows to the image's merged patch count after
 * tokenization; 3-D M-RoPE positions from get_rope_index, text resuming after the image's
 * largest position). The vision state is planned once at model load and belongs to the model:
 * image encoding holds the model's vision_mu, so prompts may be prepared from several threads
 * at once (decoding, preprocessing and tokenization run in parallel; the encoders take turns).
 * Evaluation runs on the context's pool.
 */
#include "core/status.h"
#include "core/sysinfo.h"
#include "model/idefics3_prompt.h"
#include "model/model_impl.h"
#include "vision/image.h"

#include <stdlib.h>
#include <string.h>

struct evlm_prompt {
    evlm_ids ids;
    float *features; /* [n_feat_rows][hidden] */
    int n_feat_rows;
    int32_t image_token;
    double image_ms;
    int32_t *mrope;  /* Qwen2-VL with images: [3][n] positions from 0; NULL otherwise */
    int32_t mdelta;  /* next position - n after this prompt */
};

bool evlm_model_has_vision(const evlm_model *m) { return m->has_vision; }

const int32_t *evlm_prompt_ids(const evlm_prompt *p, size_t *n) {
    *n = p->ids.len;
    return p->ids.data;
}

int evlm_prompt_n_image_tokens(const evlm_prompt *p) { return p->n_feat_rows; }
double evlm_prompt_image_ms(const evlm_prompt *p) { return p->image_ms; }

evlm_status evlm__prompt_from_ids(const int32_t *ids, size_t n, evlm_prompt **out) {
    *out = NULL;
    if (!ids || n == 0) return evlm__fail(EVLM_ERR_ARG, "empty prompt");
    evlm_prompt *p = calloc(1, sizeof *p);
    if (!p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = evlm_ids_append(&p->ids, ids, n);
    if (st != EVLM_OK) {
        evlm_prompt_free(p);
        return st;
    }
    *out = p;
    return EVLM_OK;
}

const float *evlm__prompt_features(const evlm_prompt *p, int *n_rows) {
    *n_rows = p->n_feat_rows;
    return p->features;
}

void evlm_prompt_free(evlm_prompt *p) {
    if (!p) return;
    evlm_ids_free(&p->ids);
    free(p->features);
    free(p->mrope);
    free(p);
}

static evlm_status load_image(const evlm_image_input *in, int index, evlm_image *img) {
    if (in->path) return evlm_image_load(in->path, NULL, img);
    if (!in->rgb) return evlm__fail(EVLM_ERR_ARG, "image %d has neither a path nor pixels", index);
    return evlm_image_from_rgb(in->rgb, in->width, in->height, in->stride, img);
}

/* Idefics3 / SmolVLM: tiles per image, markers expanded in the text before tokenization. */
static evlm_status prepare_idefics3(evlm_model *m, evlm_prompt *p, const char *text, bool add_special,
                                   const evlm_image_input *images, int n_images) {
    evlm_status st = EVLM_OK;
    evlm_str expanded = {0};
    evlm_image_grid grids[64];
    evlm_idefics3_pixels px[64];
    memset(px, 0, sizeof px);
    double t0 = evlm_time_ms();
    int total_tiles = 0;

    if (m->has_vision) {
        for (int i = 0; i < n_images; i++) {
            evlm_image img = {0};
            if ((st = load_image(&images[i], i, &img)) != EVLM_OK) goto done;
            st = evlm_idefics3_preprocess(&m->proc, &img, &px[i]);
            evlm_image_free(&img);
            if (st != EVLM_OK) {
                if (images[i].path) evlm__fail_prefix(st, "%s", images[i].path);
                goto done;
            }
            grids[i].rows = px[i].n_rows;
            grids[i].cols = px[i].n_cols;
            total_tiles += px[i].n_tiles;
        }
        if ((st = evlm_idefics3_expand(text, grids, n_images, m->vcfg.tokens_per_tile, &expanded)) != EVLM_OK)
            goto done;
        text = expanded.data;
    }
    if ((st = evlm_tokenizer_encode(m->tok, text, strlen(text), true, add_special, &p->ids)) != EVLM_OK)
        goto done;
    if (p->ids.len == 0) {
        st = evlm__fail(EVLM_ERR_ARG, "the prompt is empty after tokenization");
        goto done;
    }
    if (total_tiles > 0) {
        const size_t H = (size_t)m->cfg.hidden_size, per_tile = (size_t)m->vcfg.tokens_per_tile;
        p->n_feat_rows = (int)(total_tiles * per_tile);
        p->image_token = m->vcfg.image_token_id;
        p->features = malloc(sizeof(float) * H * (size_t)p->n_feat_rows);
        if (!p->features) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory for %d image tokens", p->n_feat_rows);
            goto done;
        }
        float *dst = p->features;
        pthread_mutex_lock(&m->vision_mu);
        for (int i = 0; i < n_images && st == EVLM_OK; i++) {
            st = evlm_siglip_encode(&m->siglip, &m->vstate, m->pool, px[i].pixel_values,
                                    px[i].pixel_attention_mask, px[i].n_tiles, dst);
            dst += (size_t)px[i].n_tiles * per_tile * H;
        }
        pthread_mutex_unlock(&m->vision_mu);
        if (st != EVLM_OK) goto done;
        int n_tok = 0;
        for (size_t i = 0; i < p->ids.len; i++) n_tok += p->ids.data[i] == p->image_token;
        if (n_tok != p->n_feat_rows) {
            st = evlm__fail(EVLM_ERR_FORMAT, "the expanded prompt has %d image tokens for %d image features "
                            "(does the tokenizer know <image>?)", n_tok, p->n_feat_rows);
            goto done;
        }
    }
    p->image_ms = n_images ? evlm_time_ms() - t0 : 0;
done:
    for (int i = 0; i < n_images; i++) evlm_idefics3_pixels_free(&px[i]);
    evlm_str_free(&expanded);
    return st;
}

/* "<image>" (the generic marker of raw prompts) -> Qwen2-VL's <|vision_start|><|image_pad|><|vision_end|> */
static evlm_status qwen2vl_markers(const char *text, evlm_str *out) {
    static const char k_img[] = "<image>", k_q[] = "<|vision_start|><|image_pad|><|vision_end|>";
    for (const char *at; (at = strstr(text, k_img)); text = at + sizeof k_img - 1) {
        EVLM_TRY(evlm_str_append(out, text, (size_t)(at - text)));
        EVLM_TRY(evlm_str_append(out, k_q, sizeof k_q - 1));
    }
    return evlm_str_append(out, text, strlen(text));
}

/* Qwen2-VL: one <|image_pad|> per image, grown to its merged patch count after tokenization. */
static evlm_status prepare_qwen2vl(evlm_model *m, evlm_prompt *p, const char *text, bool add_special,
                                  const evlm_image_input *images, int n_images) {
    evlm_status st = EVLM_OK;
    evlm_str marked = {0};
    evlm_ids raw = {0};
    evlm_qwen2vl_pixels px[64];
    int32_t grids[64 * 3];
    memset(px, 0, sizeof px);
    double t0 = evlm_time_ms();
    int total = 0;
    const int32_t pad = m->q_image_token;
    for (int i = 0; i < n_images; i++) {
        evlm_image img = {0};
        if ((st = load_image(&images[i], i, &img)) != EVLM_OK) goto done;
        st = evlm_qwen2vl_preprocess(&m->qproc, &img, &px[i]);
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
    if ((st = qwen2vl_markers(text, &marked)) != EVLM_OK) goto done;
    if ((st = evlm_tokenizer_encode(m->tok, marked.data, marked.len, true, add_special, &raw)) != EVLM_OK)
        goto done;
    int n_pads = 0;
    for (size_t i = 0; i < raw.len; i++) n_pads += raw.data[i] == pad;
    if (n_pads != n_images) {
        st = evlm__fail(EVLM_ERR_ARG, "the prompt has %d image markers (<|image_pad|> or <image>) for %d images",
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
        if (px[i].n_patches > m->qmax_patches) { /* a larger image than planned: grow once */
            evlm_qwen2vl_vit_state_release(&m->qstate);
            st = evlm_qwen2vl_vit_state_init(&m->qstate, &m->qvit, px[i].n_patches,
                                             evlm_pool_size(m->pool));
            if (st != EVLM_OK) {
                m->qmax_patches = 0; /* nothing planned now: the next image plans again */
                break;
            }
            m->qmax_patches = px[i].n_patches;
            m->qstate.mm.act = m->act;
        }
        st = evlm_qwen2vl_vit_encode(&m->qvit, &m->qstate, m->pool, px[i].pixel_values,
                                     px[i].grid_t, px[i].grid_h, px[i].grid_w, dst);
        dst += (size_t)px[i].n_tokens * H;
    }
    pthread_mutex_unlock(&m->vision_mu);
    if (st != EVLM_OK) goto done;
    st = evlm_qwen2vl_rope_index(p->ids.data, (int)n, pad, m->qvcfg.spatial_merge_size, grids, n_images,
                                 p->mrope, &p->mdelta);
    p->image_ms = evlm_time_ms() - t0;
done:
    for (int i = 0; i < n_images; i++) evlm_qwen2vl_pixels_free(&px[i]);
    evlm_str_free(&marked);
    evlm_ids_free(&raw);
    return st;
}

evlm_status evlm_prompt_new(evlm_model *m, const char *text, bool add_special,
                            const evlm_image_input *images, int n_images, evlm_prompt **out) {
    *out = NULL;
    if (!text) return evlm__fail(EVLM_ERR_ARG, "no prompt text");
    if (n_images < 0 || n_images > 64) return evlm__fail(EVLM_ERR_ARG, "bad image count %d", n_images);
    if (n_images > 0 && !m->has_vision)
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "this model (%s) has no vision tower: images cannot be used",
                          m->cfg.architecture);
    evlm_prompt *p = calloc(1, sizeof *p);
    if (!p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = m->vlm == EVLM_VLM_QWEN2VL ? prepare_qwen2vl(m, p, text, add_special, images, n_images)
                                                : prepare_idefics3(m, p, text, add_special, images, n_images);
    if (st != EVLM_OK) {
        evlm_prompt_free(p);
        return st;
    }
    *out = p;
    return EVLM_OK;
}

/* the prompt's batch with logits or greedy ids (top) */
static evlm_status decode_prompt(evlm_context *ctx, const evlm_prompt *p, float *logits, int32_t *top,
                                 bool all) {
    evlm_model *m = ctx->model;
    evlm_llama_state *s = &ctx->state;
    evlm_llama_inject inj = {p->image_token, p->features, p->n_feat_rows, 0};
    evlm_llama_batch b = {.n = (int)p->ids.len, .ids = p->ids.data, .inject = p->n_feat_rows ? &inj : NULL,
                          .logits = logits, .top = top, .all_logits = all};
    if (!p->mrope) return evlm_llama_decode(&m->llama, s, ctx->pool, &b);
    /* M-RoPE: the prompt's positions start where the context's next position is */
    const size_t n = p->ids.len;
    int32_t *pos = malloc(sizeof(int32_t) * 3 * n);
    if (!pos) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    const int32_t base = s->n_past + s->pos_offset;
    for (size_t i = 0; i < 3 * n; i++) pos[i] = p->mrope[i] + base;
    b.pos = b.mrope_pos = pos;
    b.inject = &inj;
    evlm_status st = evlm_llama_decode(&m->llama, s, ctx->pool, &b);
    if (st == EVLM_OK) s->pos_offset += p->mdelta;
    free(pos);
    return st;
}

evlm_status evlm_decode_prompt(evlm_context *ctx, const evlm_prompt *p, float *logits, bool all_logits) {
    return decode_prompt(ctx, p, logits, NULL, all_logits);
}

evlm_status evlm_decode_prompt_greedy(evlm_context *ctx, const evlm_prompt *p, int32_t *top) {
    if (!top) return evlm__fail(EVLM_ERR_ARG, "no room for the greedy id");
    return decode_prompt(ctx, p, NULL, top, false);
}
