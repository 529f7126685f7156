/*
 * idefics3_config.c - Idefics3 vision / connector settings from config.json (see
 * idefics3_config.h).
 *
 * Layouts: transformers 5.x writes a lean "vision_config" (model_type "idefics3_vision");
 * 4.x (SmolVLM releases) writes every PretrainedConfig attribute, with extra keys such as
 * "max_image_size" and "use_base_siglip" that do not change the tower and are ignored here.
 * Fields inside vision_config / text_config are reported as "<file>: vision_config: field ...".
 * Not here: checking the config against the weights (siglip.c does, tensor by tensor).
 */
#include "vision/idefics3_config.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An optional integer field: *out keeps its default when absent. */
/* The sub-object `key` of root, NULL when absent or null; an error when not an object. */
static evlm_status sub_object(const char *file, const cJSON *root, const char *key,
                              const cJSON **out) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return EVLM_OK;
    if (!cJSON_IsObject(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be an object", file, key);
    *out = v;
    return EVLM_OK;
}

static evlm_status parse_config(const char *file, const cJSON *root, void *out) {
    evlm_idefics3_config *c = out;
    if (!cJSON_IsObject(root)) return evlm__fail(EVLM_ERR_FORMAT, "%s: not a JSON object", file);
    const cJSON *vc, *tc;
    EVLM_TRY(sub_object(file, root, "vision_config", &vc));
    EVLM_TRY(sub_object(file, root, "text_config", &tc));
    char vfile[4200], tfile[4200];
    snprintf(vfile, sizeof vfile, "%s: vision_config", file);
    snprintf(tfile, sizeof tfile, "%s: text_config", file);

    /* transformers' Idefics3VisionConfig defaults */
    c->hidden_size = 1152;
    c->intermediate_size = 3072;
    c->n_layers = 12;
    c->n_heads = 16;
    c->num_channels = 3;
    c->image_size = 224;
    c->patch_size = 32;
    double eps = 1e-6;
    const char *act = "gelu_pytorch_tanh";
    EVLM_TRY(evlm_json_int32(vfile, vc, "hidden_size", 1, 65536, &c->hidden_size));
    EVLM_TRY(evlm_json_int32(vfile, vc, "intermediate_size", 1, 1 << 20, &c->intermediate_size));
    EVLM_TRY(evlm_json_int32(vfile, vc, "num_hidden_layers", 1, 1024, &c->n_layers));
    EVLM_TRY(evlm_json_int32(vfile, vc, "num_attention_heads", 1, 1024, &c->n_heads));
    EVLM_TRY(evlm_json_int32(vfile, vc, "num_channels", 1, 16, &c->num_channels));
    EVLM_TRY(evlm_json_int32(vfile, vc, "image_size", 1, 8192, &c->image_size));
    EVLM_TRY(evlm_json_int32(vfile, vc, "patch_size", 1, 8192, &c->patch_size));
    if (vc) {
        EVLM_TRY(evlm_json_num(vfile, vc, "layer_norm_eps", &eps));
        EVLM_TRY(evlm_json_str(vfile, vc, "hidden_act", &act));
    }
    if (!(eps > 0.0 && eps < 1.0))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"layer_norm_eps\" = %g is out of range (0, 1)", vfile, eps);
    c->layer_norm_eps = (float)eps;
    if (strcmp(act, "gelu_pytorch_tanh") != 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: field \"hidden_act\" = \"%s\" is not supported (gelu_pytorch_tanh)",
                          vfile, act);
    if (c->hidden_size % c->n_heads != 0)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"hidden_size\" = %d is not a multiple of "
                          "\"num_attention_heads\" = %d",
                          vfile, c->hidden_size, c->n_heads);
    c->head_dim = c->hidden_size / c->n_heads;
    /* a valid Conv2d with stride = kernel: the last image_size % patch_size pixels are unused
     * (SmolVLM 2.2B: 384 / 14 -> 27 patches) */
    if (c->patch_size > c->image_size)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"patch_size\" = %d exceeds \"image_size\" = %d", vfile,
                          c->patch_size, c->image_size);
    c->patches_per_side = c->image_size / c->patch_size;
    if (c->patches_per_side > 256)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: %d patches per side (image_size / patch_size) exceed 256", vfile,
                          c->patches_per_side);
    c->num_patches = c->patches_per_side * c->patches_per_side;
    if ((int64_t)c->num_channels * c->patch_size * c->patch_size > (1 << 20))
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: patch of %d x %d x %d values is too large",
                          vfile, c->num_channels, c->patch_size, c->patch_size);

    /* transformers' Idefics3Config defaults */
    c->scale_factor = 2;
    c->image_token_id = 128257;
    EVLM_TRY(evlm_json_int32(file, root, "scale_factor", 1, 256, &c->scale_factor));
    EVLM_TRY(evlm_json_int32(file, root, "image_token_id", 0, INT32_MAX, &c->image_token_id));
    if (c->patches_per_side % c->scale_factor != 0)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"scale_factor\" = %d does not divide the %d patches per "
                          "side of the vision tower",
                          file, c->scale_factor, c->patches_per_side);
    c->tokens_per_tile = c->num_patches / (c->scale_factor * c->scale_factor);
    if ((int64_t)c->hidden_size * c->scale_factor * c->scale_factor > (1 << 22))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: connector input of %d x %d^2 values is too large", file,
                          c->hidden_size, c->scale_factor);

    /* LlamaConfig's default width when text_config (or its hidden_size) is absent */
    c->text_hidden_size = 4096;
    EVLM_TRY(evlm_json_int32(tfile, tc, "hidden_size", 1, 65536, &c->text_hidden_size));
    return EVLM_OK;
}

evlm_status evlm_idefics3_config_parse(const char *what, const char *json, size_t len,
                                       evlm_idefics3_config *cfg) {
    return evlm_json_parse_into(what, json, len, parse_config, cfg, sizeof *cfg);
}

evlm_status evlm_idefics3_config_load(const char *dir, evlm_idefics3_config *cfg) {
    evlm_dir d = evlm_dir_folder(dir);
    return evlm_idefics3_config_load_dir(&d, cfg);
}

evlm_status evlm_idefics3_config_load_dir(const evlm_dir *d, evlm_idefics3_config *cfg) {
    return evlm_json_load_dir_into(d, "config.json", parse_config, cfg, sizeof *cfg);
}
