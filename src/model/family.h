/*
 * family.h - the seam between the generic model (model.c, prompt.c) and a model family.
 *
 * Every family runs the same text decoder (llama.h); a family adds what is its own: which
 * config.json architectures it recognizes, the vision tower + connector + image processor it
 * loads and binds after the decoder, the matrices of those parts (with their roles, for the
 * compression passes), and how a prompt with images becomes tokens + image features. A family
 * is one file that fills an evlm_family and one line in the registry (family.c); model.c only
 * dispatches. docs/HOWTO-add-a-model.md is the recipe.
 * Not here: the decoder itself, tokenization, the chat template (generic, from the folder).
 */
#ifndef EVLM_MODEL_FAMILY_H
#define EVLM_MODEL_FAMILY_H

#include "core/buf.h"
#include "core/file.h"
#include "core/tensor.h"
#include "vision/image.h"
#include "evlm.h"

/* What a matrix does, for the compression passes (decoder roles come first). */
typedef enum evlm_matrix_role {
    EVLM_ROLE_ATTN_Q = 0,
    EVLM_ROLE_ATTN_K,
    EVLM_ROLE_ATTN_V,
    EVLM_ROLE_ATTN_O,
    EVLM_ROLE_MLP_GATE,
    EVLM_ROLE_MLP_UP,
    EVLM_ROLE_MLP_DOWN,
    EVLM_ROLE_EMBED,       /* token embedding */
    EVLM_ROLE_HEAD,        /* output head (the embedding itself when tied) */
    EVLM_ROLE_VISION_ATTN, /* vision tower: q / k / v / fused qkv / output of attention */
    EVLM_ROLE_VISION_MLP,  /* vision tower: MLP matrices */
    EVLM_ROLE_CONNECTOR,   /* vision -> text projection (Idefics3 connector, Qwen2-VL merger) */
    EVLM_ROLE_COUNT
} evlm_matrix_role;

/* One bound matrix: slot is the binding's pointer (a pass may point it at another tensor for a
 * while, e.g. to measure one matrix quantized); layer is -1 outside layers. */
typedef void (*evlm_matrix_fn)(void *user, const evlm_tensor **slot, evlm_matrix_role role,
                               int layer);

typedef struct evlm_prompt {
    evlm_ids ids;
    float *features; /* [n_feat_rows][hidden] */
    int n_feat_rows;
    int32_t image_token;
    double image_ms;
    int32_t *mrope; /* M-RoPE models with images: [3][n] positions from 0; NULL otherwise */
    int32_t mdelta; /* next position - n after this prompt */
} evlm_prompt;

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
} evlm_family;

/* The family serving a config.json architecture; NULL when none does. */
const evlm_family *evlm__family_find(const char *architecture);
/* The registry, for tests and listings: families[i] for i < count. */
const evlm_family *const *evlm__families(int *count);

/* Every matrix of the model (decoder layers, embedding, head, then the family's), in order. */
void evlm__model_matrices(evlm_model *m, evlm_matrix_fn fn, void *user);

/* Shared by the families' prompt builders. */
evlm_status evlm__prompt_tokenize(const evlm_model *m, const char *text, size_t len, bool add_special,
                                  evlm_ids *out);
evlm_status evlm__image_input_load(const evlm_image_input *in, int index, evlm_image *img);

#endif
