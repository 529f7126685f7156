/*
 * qwen2vl_config.h - the Qwen2-VL vision tower and merger settings of config.json
 * ("vision_config", Qwen2VLVisionConfig; absent fields take transformers' defaults). Every number
 * is range-checked; errors name the file and field.
 * Not here: the text decoder's config (io/hf_config.h), the image processor's settings
 * (src/vision/qwen2vl_proc.h), the tower itself (qwen2vl_vit.h).
 */
#ifndef EVLM_VISION_QWEN2VL_CONFIG_H
#define EVLM_VISION_QWEN2VL_CONFIG_H

#include "core/file.h"
#include "evlm.h"

typedef enum evlm_qwen2vl_act {
    EVLM_QWEN2VL_QUICK_GELU = 0, /* x * sigmoid(1.702 x), the Qwen2-VL default */
    EVLM_QWEN2VL_GELU,           /* exact erf GELU */
    EVLM_QWEN2VL_GELU_TANH,      /* gelu_pytorch_tanh */
} evlm_qwen2vl_act;

/* config.json "vision_config" (Qwen2VLVisionConfig; defaults are transformers'). */
typedef struct evlm_qwen2vl_vision_config {
    int depth;               /* blocks, default 32 */
    int embed_dim;           /* D, default 1280 */
    int n_heads;             /* default 16 */
    int head_dim;            /* D / n_heads, a multiple of 4 */
    int mlp_dim;             /* int(D * mlp_ratio), mlp_ratio default 4 */
    int patch_size;          /* default 14 */
    int temporal_patch_size; /* default 2 */
    int in_channels;         /* in_channels or in_chans, default 3 */
    int spatial_merge_size;  /* default 2 */
    int hidden_size;         /* merger output = the text width, default 3584 */
    evlm_qwen2vl_act act;    /* hidden_act, default quick_gelu */
    float layer_norm_eps;    /* 1e-6 (fixed in transformers) */
    float rope_theta;        /* 10000 (VisionRotaryEmbedding's default; the config's is unused) */
    /* derived */
    int patch_dim;  /* in_channels * temporal_patch_size * patch_size^2 */
    int merged_dim; /* D * spatial_merge_size^2 */
} evlm_qwen2vl_vision_config;

/* dir: the model folder (reads dir/config.json). */
evlm_status evlm_qwen2vl_vision_config_load(const char *dir, evlm_qwen2vl_vision_config *cfg);
evlm_status evlm_qwen2vl_vision_config_load_dir(const evlm_dir *d, evlm_qwen2vl_vision_config *cfg);
/* Same from JSON text (the whole config.json); `what` names it in errors. */
evlm_status evlm_qwen2vl_vision_config_parse(const char *what, const char *json, size_t len,
                                             evlm_qwen2vl_vision_config *cfg);

#endif
