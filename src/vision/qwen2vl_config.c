/*
 * qwen2vl_config.c - Qwen2-VL vision / merger settings from config.json (see qwen2vl_config.h).
 */
#include "vision/qwen2vl_config.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"

#include <stdio.h>
#include <string.h>

static evlm_status parse_config(const char *file, const cJSON *root, void *out) {
    evlm_qwen2vl_vision_config *c = out;
    if (!cJSON_IsObject(root)) return evlm__fail(EVLM_ERR_FORMAT, "%s: not a JSON object", file);
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (vc && cJSON_IsNull(vc)) vc = NULL;
    if (vc && !cJSON_IsObject(vc))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"vision_config\" must be an object", file);
    char vf[4200];
    snprintf(vf, sizeof vf, "%s: vision_config", file);

    /* Qwen2VLVisionConfig defaults */
    c->depth = 32;
    c->embed_dim = 1280;
    c->hidden_size = 3584;
    c->n_heads = 16;
    c->in_channels = 3;
    c->patch_size = 14;
    c->spatial_merge_size = 2;
    c->temporal_patch_size = 2;
    double mlp_ratio = 4.0;
    const char *act = "quick_gelu";
    EVLM_TRY(evlm_json_int32(vf, vc, "depth", 1, 1024, &c->depth));
    EVLM_TRY(evlm_json_int32(vf, vc, "embed_dim", 1, 65536, &c->embed_dim));
    EVLM_TRY(evlm_json_int32(vf, vc, "hidden_size", 1, 65536, &c->hidden_size));
    EVLM_TRY(evlm_json_int32(vf, vc, "num_heads", 1, 1024, &c->n_heads));
    EVLM_TRY(evlm_json_int32(vf, vc, "in_chans", 1, 16, &c->in_channels));
    EVLM_TRY(evlm_json_int32(vf, vc, "in_channels", 1, 16, &c->in_channels));
    EVLM_TRY(evlm_json_int32(vf, vc, "patch_size", 1, 1024, &c->patch_size));
    EVLM_TRY(evlm_json_int32(vf, vc, "spatial_merge_size", 1, 64, &c->spatial_merge_size));
    EVLM_TRY(evlm_json_int32(vf, vc, "temporal_patch_size", 1, 16, &c->temporal_patch_size));
    if (vc) {
        EVLM_TRY(evlm_json_num(vf, vc, "mlp_ratio", &mlp_ratio));
        EVLM_TRY(evlm_json_str(vf, vc, "hidden_act", &act));
    }
    if (strcmp(act, "quick_gelu") == 0)
        c->act = EVLM_QWEN2VL_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0)
        c->act = EVLM_QWEN2VL_GELU;
    else if (strcmp(act, "gelu_pytorch_tanh") == 0)
        c->act = EVLM_QWEN2VL_GELU_TANH;
    else
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: field \"hidden_act\" = \"%s\" is not supported (quick_gelu, gelu, "
                          "gelu_pytorch_tanh)",
                          vf, act);
    double mlp = (double)c->embed_dim * mlp_ratio;
    if (!(mlp >= 1.0 && mlp <= (double)(1 << 20)))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"mlp_ratio\" = %g gives %g MLP units", vf,
                          mlp_ratio, mlp);
    c->mlp_dim = (int)mlp; /* int(embed_dim * mlp_ratio) */
    if (c->embed_dim % c->n_heads != 0 || (c->embed_dim / c->n_heads) % 4 != 0)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"embed_dim\" = %d over \"num_heads\" = %d must give a head "
                          "size that is a multiple of 4",
                          vf, c->embed_dim, c->n_heads);
    c->head_dim = c->embed_dim / c->n_heads;
    if (c->head_dim / 4 > 256)
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: head size %d exceeds 1024", vf, c->head_dim);
    int64_t pd = (int64_t)c->in_channels * c->temporal_patch_size * c->patch_size * c->patch_size;
    int64_t md = (int64_t)c->embed_dim * c->spatial_merge_size * c->spatial_merge_size;
    if (pd > (1 << 22) || md > (1 << 22))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: patch (%lld values) or merged row (%lld) too large", vf,
                          (long long)pd, (long long)md);
    c->patch_dim = (int)pd;
    c->merged_dim = (int)md;
    c->layer_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    return EVLM_OK;
}

evlm_status evlm_qwen2vl_vision_config_parse(const char *what, const char *json, size_t len,
                                             evlm_qwen2vl_vision_config *cfg) {
    return evlm_json_parse_into(what, json, len, parse_config, cfg, sizeof *cfg);
}

evlm_status evlm_qwen2vl_vision_config_load(const char *dir, evlm_qwen2vl_vision_config *cfg) {
    evlm_dir d = evlm_dir_folder(dir);
    return evlm_qwen2vl_vision_config_load_dir(&d, cfg);
}

evlm_status evlm_qwen2vl_vision_config_load_dir(const evlm_dir *d,
                                                evlm_qwen2vl_vision_config *cfg) {
    return evlm_json_load_dir_into(d, "config.json", parse_config, cfg, sizeof *cfg);
}
