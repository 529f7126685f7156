/*
 * prompt.c - multimodal prompts (see evlm.h "prompts with images"): the Idefics3 prompt
 * expansion, image decoding + preprocessing + encoding, and the evaluation that places the
 * features at the image tokens.
 *
 * The vision state is planned once at model load, so one prompt is prepared at a time per
 * model. Not here: other VLM families (Qwen2-VL comes as its own processor and tower).
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
};

bool evlm_model_has_vision(const evlm_model *m) { return m->has_vision; }

const int32_t *evlm_prompt_ids(const evlm_prompt *p, size_t *n) {
    *n = p->ids.len;
    return p->ids.data;
}

int evlm_prompt_n_image_tokens(const evlm_prompt *p) { return p->n_feat_rows; }
double evlm_prompt_image_ms(const evlm_prompt *p) { return p->image_ms; }

void evlm_prompt_free(evlm_prompt *p) {
    if (!p) return;
    evlm_ids_free(&p->ids);
    free(p->features);
    free(p);
}

static evlm_status load_image(const evlm_image_input *in, int index, evlm_image *img) {
    if (in->path) return evlm_image_load(in->path, NULL, img);
    if (!in->rgb) return evlm__fail(EVLM_ERR_ARG, "image %d has neither a path nor pixels", index);
    return evlm_image_from_rgb(in->rgb, in->width, in->height, in->stride, img);
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
        for (int i = 0; i < n_images; i++) {
            if ((st = evlm_siglip_encode(&m->siglip, &m->vstate, m->pool, px[i].pixel_values,
                                         px[i].pixel_attention_mask, px[i].n_tiles, dst)) != EVLM_OK)
                goto done;
            dst += (size_t)px[i].n_tiles * per_tile * H;
        }
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
    if (st != EVLM_OK) {
        evlm_prompt_free(p);
        return st;
    }
    *out = p;
    return EVLM_OK;
}

evlm_status evlm_decode_prompt(evlm_context *ctx, const evlm_prompt *p, float *logits, bool all_logits) {
    evlm_model *m = ctx->model;
    evlm_llama_inject inj = {p->image_token, p->features, p->n_feat_rows, 0};
    return evlm_llama_forward(&m->llama, &ctx->state, m->pool, p->ids.data, NULL,
                              p->n_feat_rows ? &inj : NULL, (int)p->ids.len, logits, all_logits);
}
