/*
 * prompt.c - prompts (see evlm.h "prompts with images"): the prompt object, its preparation
 * through the model's family (family.h: tokens, image features, M-RoPE positions; plain
 * tokenization for text-only families), and the evaluation that places the features at the
 * image tokens and M-RoPE positions after the context's next position.
 * The families' vision state is planned once at model load and belongs to the model: image
 * encoding holds the model's vision_mu, so prompts may be prepared from several threads at once
 * (decoding, preprocessing and tokenization run in parallel; the encoders take turns).
 * Evaluation runs on the context's pool.
 */
#include "core/status.h"
#include "core/sysinfo.h"
#include "model/model_impl.h"
#include "vision/image.h"

#include <stdlib.h>
#include <string.h>

bool evlm_model_has_vision(const evlm_model *m) {
    return m->has_vision;
}

const int32_t *evlm_prompt_ids(const evlm_prompt *p, size_t *n) {
    *n = p->ids.len;
    return p->ids.data;
}

int evlm_prompt_n_image_tokens(const evlm_prompt *p) {
    return p->n_feat_rows;
}
double evlm_prompt_image_ms(const evlm_prompt *p) {
    return p->image_ms;
}

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

evlm_status evlm__image_input_load(const evlm_image_input *in, int index, evlm_image *img) {
    if (in->path) return evlm_image_load(in->path, NULL, img);
    if (!in->rgb) return evlm__fail(EVLM_ERR_ARG, "image %d has neither a path nor pixels", index);
    return evlm_image_from_rgb(in->rgb, in->width, in->height, in->stride, img);
}

evlm_status evlm__prompt_tokenize(const evlm_model *m, const char *text, size_t len,
                                  bool add_special, evlm_ids *out) {
    EVLM_TRY(evlm_tokenizer_encode(m->tok, text, len, true, add_special, out));
    if (out->len == 0) return evlm__fail(EVLM_ERR_ARG, "the prompt is empty after tokenization");
    return EVLM_OK;
}

evlm_status evlm_prompt_new(evlm_model *m, const char *text, bool add_special,
                            const evlm_image_input *images, int n_images, evlm_prompt **out) {
    return evlm__prompt_new_hooked(m, text, add_special, images, n_images, NULL, out);
}

evlm_status evlm__prompt_new_hooked(evlm_model *m, const char *text, bool add_special,
                                    const evlm_image_input *images, int n_images,
                                    const evlm_vision_hook *hook, evlm_prompt **out) {
    *out = NULL;
    if (!text) return evlm__fail(EVLM_ERR_ARG, "no prompt text");
    if (n_images < 0 || n_images > 64)
        return evlm__fail(EVLM_ERR_ARG, "bad image count %d", n_images);
    if (n_images > 0 && !m->has_vision)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "this model (%s) has no vision tower: images cannot be used",
                          m->cfg.architecture);
    evlm_prompt *p = calloc(1, sizeof *p);
    if (!p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    p->vision_hook = hook;
    evlm_status st = m->family->prompt
                         ? m->family->prompt(m, p, text, add_special, images, n_images)
                         : evlm__prompt_tokenize(m, text, strlen(text), add_special, &p->ids);
    p->vision_hook = NULL; /* the hook lives only while the prompt is made */
    if (st != EVLM_OK) {
        evlm_prompt_free(p);
        return st;
    }
    *out = p;
    return EVLM_OK;
}

evlm_status evlm__prompt_pixels(evlm_model *m, const char *text, bool add_special,
                                const evlm_image_input *images, int n_images, evlm_ids *ids,
                                float **pixels, uint8_t **mask, int *n_tiles) {
    if (!m || !ids || !pixels || !mask || !n_tiles)
        return evlm__fail(EVLM_ERR_ARG, "evlm__prompt_pixels: NULL argument");
    *pixels = NULL;
    *mask = NULL;
    *n_tiles = 0;
    if (!text) return evlm__fail(EVLM_ERR_ARG, "no prompt text");
    if (n_images < 0 || n_images > 64)
        return evlm__fail(EVLM_ERR_ARG, "bad image count %d", n_images);
    if (n_images > 0 && !m->has_vision)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "this model (%s) has no vision tower: images cannot be used",
                          m->cfg.architecture);
    evlm_status st;
    if (m->family->prompt_pixels)
        st = m->family->prompt_pixels(m, text, add_special, images, n_images, ids, pixels, mask,
                                      n_tiles);
    else if (!m->family->prompt)
        st = evlm__prompt_tokenize(m, text, strlen(text), add_special, ids);
    else
        st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                        "%s (family %s): prompts cannot be made into training inputs (no "
                        "backward for its vision tower)",
                        m->cfg.architecture, m->family->name);
    if (st != EVLM_OK) {
        evlm_ids_free(ids);
        free(*pixels);
        free(*mask);
        *pixels = NULL;
        *mask = NULL;
        *n_tiles = 0;
    }
    return st;
}

/* the prompt's batch with logits or greedy ids (top) */
static evlm_status decode_prompt(evlm_context *ctx, const evlm_prompt *p, float *logits,
                                 int32_t *top, bool all) {
    evlm_decoder_state *s = &ctx->state;
    evlm_decoder_inject inj = {p->image_token, p->features, p->n_feat_rows, 0};
    evlm_decoder_batch b = {.n = (int)p->ids.len,
                            .ids = p->ids.data,
                            .inject = p->n_feat_rows ? &inj : NULL,
                            .logits = logits,
                            .top = top,
                            .all_logits = all};
    if (!p->mrope) return evlm_decoder_decode(evlm__ctx_decoder(ctx), s, ctx->pool, &b);
    /* M-RoPE: the prompt's positions start where the context's next position is */
    const size_t n = p->ids.len;
    int32_t *pos = malloc(sizeof(int32_t) * 3 * n);
    if (!pos) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    const int32_t base = s->n_past + s->pos_offset;
    for (size_t i = 0; i < 3 * n; i++) pos[i] = p->mrope[i] + base;
    b.pos = b.mrope_pos = pos;
    b.inject = &inj;
    evlm_status st = evlm_decoder_decode(evlm__ctx_decoder(ctx), s, ctx->pool, &b);
    if (st == EVLM_OK) s->pos_offset += p->mdelta;
    free(pos);
    return st;
}

evlm_status evlm_decode_prompt(evlm_context *ctx, const evlm_prompt *p, float *logits,
                               bool all_logits) {
    return decode_prompt(ctx, p, logits, NULL, all_logits);
}

evlm_status evlm_decode_prompt_greedy(evlm_context *ctx, const evlm_prompt *p, int32_t *top) {
    if (!top) return evlm__fail(EVLM_ERR_ARG, "no room for the greedy id");
    return decode_prompt(ctx, p, NULL, top, false);
}
