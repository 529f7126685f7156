/*
 * idefics3_config.h - the Idefics3 / SmolVLM vision tower and connector settings of config.json.
 *
 * Reads "vision_config" (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * image_size, patch_size, num_channels, layer_norm_eps, hidden_act), the top-level
 * "scale_factor" and "image_token_id", and "text_config"."hidden_size" (the width the connector
 * projects to), as transformers 4.x and 5.x write them. Absent fields take the defaults of
 * transformers' Idefics3VisionConfig / Idefics3Config (and LlamaConfig for the text width).
 * Every number is range-checked and the pixel shuffle must divide the patch grid evenly;
 * errors name the file and field.
 *
 * Not here: the text decoder's config (io/hf_config.h), the image processor's settings
 * (preprocessor_config.json, src/vision/idefics3_proc.h).
 */
#ifndef EVLM_VISION_IDEFICS3_CONFIG_H
#define EVLM_VISION_IDEFICS3_CONFIG_H

#include "core/file.h"
#include "evlm.h"

typedef struct evlm_idefics3_config {
    /* vision_config */
    int hidden_size;       /* D, default 1152 */
    int intermediate_size; /* default 3072 */
    int n_layers;          /* default 12 */
    int n_heads;           /* default 16 */
    int head_dim;          /* D / n_heads */
    int image_size;        /* tile side in pixels, default 224 */
    int patch_size;        /* default 32 */
    int num_channels;      /* default 3 */
    float layer_norm_eps;  /* default 1e-6 */
    /* top level */
    int scale_factor;     /* pixel shuffle factor, default 2 */
    int image_token_id;   /* default 128257 */
    int text_hidden_size; /* text_config.hidden_size, default 4096 */
    /* derived */
    int patches_per_side; /* image_size / patch_size (rounded down, as the Conv2d does) */
    int num_patches;      /* patches_per_side^2 */
    int tokens_per_tile;  /* num_patches / scale_factor^2 */
} evlm_idefics3_config;

/* dir: the model folder (reads dir/config.json). */
evlm_status evlm_idefics3_config_load(const char *dir, evlm_idefics3_config *cfg);
evlm_status evlm_idefics3_config_load_dir(const evlm_dir *d, evlm_idefics3_config *cfg);
/* Same from JSON text; `what` names it in errors (e.g. the path). */
evlm_status evlm_idefics3_config_parse(const char *what, const char *json, size_t len,
                                       evlm_idefics3_config *cfg);

#endif
