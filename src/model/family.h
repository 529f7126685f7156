/*
 * family.h - the seam between the generic model (model.c, prompt.c) and a model family.
 *
 * Every family runs the same text decoder (decoder.h); a family adds what is its own: which
 * config.json architectures it recognizes, the vision tower + connector + image processor it
 * loads and binds after the decoder, the matrices of those parts (with their roles, for the
 * compression passes), how a prompt with images becomes tokens + image features, and the
 * tensors of a random-weight model for a config (evlm_model_synth, synth.c). A family is one
 * file that fills an evlm_family and one line in the registry (family.c); model.c only
 * dispatches. docs/HOWTO-add-a-model.md is the recipe.
 * Not here: the decoder itself, tokenization, the chat template (generic, from the folder).
 */
#ifndef EVLM_MODEL_FAMILY_H
#define EVLM_MODEL_FAMILY_H

#include "core/buf.h"
#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/hf_config.h"
#include "vision/image.h"
#include "evlm.h"
#include "model/model.h"

typedef struct evlm_prompt {
    evlm_ids ids;
    float *features; /* [n_feat_rows][hidden] */
    int n_feat_rows;
    int32_t image_token;
    double image_ms;
    int32_t *mrope; /* M-RoPE models with images: [3][n] positions from 0; NULL otherwise */
    int32_t mdelta; /* next position - n after this prompt */
    /* while the prompt is made (evlm__prompt_new_hooked): the numerics its images are encoded
     * with (NPU simulation, calibration); NULL: the model's float tower */
    const evlm_vision_hook *vision_hook;
} evlm_prompt;

/* What evlm_model_synth gives a family: the config.json it synthesizes a model for (file names
 * it in errors; json is the whole text, for the family's own sections) and its text config. */
typedef struct evlm_synth_cfg {
    const char *file;
    const char *json;
    size_t len;
    const evlm_decoder_config *text;
    bool text_only; /* the language model alone, as a Llama folder */
} evlm_synth_cfg;

typedef enum evlm_synth_kind {
    EVLM_SYNTH_RANDOM = 0, /* U(-a, a) with the std of N(0, 0.02): matrices, embeddings */
    EVLM_SYNTH_ONES,       /* norm weights */
    EVLM_SYNTH_ZEROS,      /* biases */
} evlm_synth_kind;

/* Adds one tensor; shape[0..n_dims) in PyTorch order (outermost first). Random values are drawn
 * in the order of the calls, so a family lists its tensors in a fixed order. */
typedef evlm_status (*evlm_synth_add)(void *user, const char *name, evlm_synth_kind kind,
                                      int n_dims, const int64_t *shape);

typedef struct evlm_family {
    const char *name;                 /* "llama", "idefics3", ... */
    const char *const *architectures; /* config.json "architectures" it serves, NULL-terminated */
    /* After the decoder is bound: load and bind the family's own parts, set m->has_vision and
     * m->family_state. NULL: a text-only family. */
    evlm_status (*load)(evlm_model *m, const evlm_dir *d, const evlm_model_params *p);
    void (*free)(evlm_model *m); /* releases what load made (called after a failed load too) */
    /* Calls fn for each matrix load bound (the decoder's are listed by model.c). */
    void (*matrices)(evlm_model *m, evlm_matrix_fn fn, void *user);
    /* Fills p->ids (and image features) from a raw prompt text with n_images images; NULL:
     * plain tokenization, no images. */
    evlm_status (*prompt)(evlm_model *m, evlm_prompt *p, const char *text, bool add_special,
                          const evlm_image_input *images, int n_images);
    /* Training inputs of the same prompt (evlm__prompt_pixels): the ids exactly as prompt makes
     * them, and the processed tiles of the images instead of their features: pixels
     * [n_tiles][C][S][S], mask [n_tiles][S][S] (nonzero = real pixel), malloc'd, tiles of the
     * images in order (n_tiles 0 and both NULL without images). NULL: the family has none. */
    evlm_status (*prompt_pixels)(evlm_model *m, const char *text, bool add_special,
                                 const evlm_image_input *images, int n_images, evlm_ids *ids,
                                 float **pixels, uint8_t **mask, int *n_tiles);
    /* Lists every tensor of a model for c (evlm__synth_decoder for the decoder, then the
     * family's parts; only the decoder's, under "model.", when c->text_only, or an
     * EVLM_ERR_UNSUPPORTED naming "text_only" when the text model needs the rest). NULL: the
     * decoder alone (evlm__synth_decoder under "model."). */
    evlm_status (*synth)(const evlm_synth_cfg *c, evlm_synth_add add, void *user);
} evlm_family;

/* The family serving a config.json architecture; NULL when none does. */
const evlm_family *evlm__family_find(const char *architecture);
/* The registry, for tests and listings: families[i] for i < count. */
const evlm_family *const *evlm__families(int *count);

/* A prompt's training inputs (the family's prompt_pixels): ids (image tokens expanded, as
 * evlm_prompt_new makes them; the caller frees them with evlm_ids_free, and *ids must be empty),
 * pixels / mask / n_tiles of its images (malloc'd, the caller frees; NULL / 0 without images).
 * Text-only families tokenize; a vision family without the hook (Qwen2-VL) is an
 * EVLM_ERR_UNSUPPORTED naming it. On error nothing is left allocated. */
evlm_status evlm__prompt_pixels(evlm_model *m, const char *text, bool add_special,
                                const evlm_image_input *images, int n_images, evlm_ids *ids,
                                float **pixels, uint8_t **mask, int *n_tiles);

/* Shared by the families' prompt builders. */
evlm_status evlm__prompt_tokenize(const evlm_model *m, const char *text, size_t len,
                                  bool add_special, evlm_ids *out);
evlm_status evlm__image_input_load(const evlm_image_input *in, int index, evlm_image *img);

/* Shared by the families' synth hooks (synth.c). evlm__synth_put: add() of a tensor named
 * printf(fmt, ...) with shape d0..d3 (the first n_dims of them, PyTorch order).
 * evlm__synth_decoder: the decoder's tensors under prefix ("model." or e.g. "model.text_model."):
 * embedding, per layer the two norms, q/k/v/o (+ q/k/v biases when qkv_bias), gate/up/down
 * (+ biases when c->mlp_bias), the final norm, lm_head unless tied. */
evlm_status evlm__synth_put(evlm_synth_add add, void *user, evlm_synth_kind kind, int n_dims,
                            int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    EVLM_PRINTF(9, 10);
evlm_status evlm__synth_decoder(const evlm_decoder_config *c, const char *prefix, bool qkv_bias,
                                evlm_synth_add add, void *user);
/* Whether a text config has q/k/v biases: attention_bias, or a Qwen2 model. */
bool evlm__synth_qkv_bias(const evlm_decoder_config *c);

#endif
