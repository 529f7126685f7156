/*
 * hf_config.c - the Llama-family text configuration from config.json (see hf_config.h).
 *
 * Layouts handled: plain decoders (every field top-level), and VLMs whose text decoder sits in
 * "text_config" (Idefics3 / SmolVLM, Qwen2-VL in transformers 5.x). A field missing from
 * text_config is looked up at the top level (Qwen2-VL keeps tie_word_embeddings there, some
 * Idefics3 configs vocab_size). RoPE: "rope_theta" (4.x) or "rope_parameters" (5.x), scaling
 * from "rope_parameters" or "rope_scaling" with rope_type (or legacy "type") default / linear /
 * llama3; Qwen2-VL's "mrope" is read as default (the multimodal section split is the vision
 * code's business). Every number is range-checked.
 *
 * Not here: vision_config, tokenizer settings, checking the config against the weights.
 */
#include "io/hf_config.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cfg_src {
    const char *file;
    const cJSON *text; /* text_config, or the root */
    const cJSON *root;
} cfg_src;

/* The object that holds key: text_config first, then the top level. */
static const cJSON *holder(const cfg_src *s, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->text, key);
    if (v && !cJSON_IsNull(v)) return s->text;
    if (s->text != s->root) {
        v = cJSON_GetObjectItemCaseSensitive(s->root, key);
        if (v && !cJSON_IsNull(v)) return s->root;
    }
    return NULL;
}

static evlm_status get_int(const cfg_src *s, const char *key, int required, int64_t lo, int64_t hi,
                           int *out) {
    const cJSON *h = holder(s, key);
    if (!h) {
        if (required) return evlm__fail(EVLM_ERR_FORMAT, "%s: missing field \"%s\"", s->file, key);
        return EVLM_OK;
    }
    int64_t v = 0;
    EVLM_TRY(evlm_json_int(s->file, h, key, lo, hi, &v));
    *out = (int)v;
    return EVLM_OK;
}

static evlm_status get_bool(const cfg_src *s, const char *key, bool *out) {
    const cJSON *h = holder(s, key);
    return h ? evlm_json_bool(s->file, h, key, out) : EVLM_OK;
}

/* Copies a string field into a fixed buffer; too long is an error. */
static evlm_status copy_str(const char *file, const char *key, const char *v, char *out,
                            size_t cap) {
    size_t n = strlen(v);
    if (n >= cap)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" is longer than %zu characters", file,
                          key, cap - 1);
    memcpy(out, v, n + 1);
    return EVLM_OK;
}

/* eos_token_id: an int or a list of ints; null leaves the list untouched. */
static evlm_status parse_eos(const char *file, const cJSON *obj, evlm_decoder_config *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
    if (!v || cJSON_IsNull(v)) return EVLM_OK;
    if (cJSON_IsNumber(v)) {
        int64_t id = 0;
        EVLM_TRY(evlm_json_int(file, obj, "eos_token_id", 0, INT32_MAX, &id));
        cfg->n_eos = 1;
        cfg->eos_token_ids[0] = (int32_t)id;
        return EVLM_OK;
    }
    if (!cJSON_IsArray(v))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"eos_token_id\" must be an integer or a list of integers",
                          file);
    int n = cJSON_GetArraySize(v);
    if (n > EVLM_MAX_EOS)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: field \"eos_token_id\" lists %d ids (at most %d supported)", file, n,
                          EVLM_MAX_EOS);
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || d != floor(d) || d < 0 || d > (double)INT32_MAX)
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: field \"eos_token_id\"[%d] must be an integer in [0, %d]", file,
                              k, INT32_MAX);
        cfg->eos_token_ids[k++] = (int32_t)d;
    }
    cfg->n_eos = k;
    return EVLM_OK;
}

/* A required positive float of a rope block ("rope_scaling.factor"). */
static evlm_status rope_num(const char *file, const char *block, const cJSON *rp, const char *key,
                            double lo, double hi, float *out) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", block, key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rp, key);
    if (!v || cJSON_IsNull(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: missing field \"%s\"", file, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be a number in [%g, %g]", file,
                          name, lo, hi);
    *out = (float)v->valuedouble;
    return EVLM_OK;
}

static evlm_status parse_rope(const cfg_src *s, evlm_decoder_config *cfg) {
    const char *file = s->file;
    cfg->rope_theta = 10000.0;
    cfg->rope_type = EVLM_ROPE_DEFAULT;
    cfg->rope_factor = 1.0f;
    cfg->rope_low_freq_factor = 1.0f;
    cfg->rope_high_freq_factor = 4.0f;
    cfg->rope_original_max_pos = 0;

    const cJSON *h = holder(s, "rope_theta");
    if (h) EVLM_TRY(evlm_json_num(file, h, "rope_theta", &cfg->rope_theta));

    const char *block = "rope_parameters";
    const cJSON *rp = NULL;
    h = holder(s, block);
    if (!h) {
        block = "rope_scaling";
        h = holder(s, block);
    }
    if (h) {
        rp = cJSON_GetObjectItemCaseSensitive(h, block);
        if (!cJSON_IsObject(rp))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be an object", file, block);
    }
    if (rp) {
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta");
        if (th && !cJSON_IsNull(th)) {
            if (!cJSON_IsNumber(th) || !isfinite(th->valuedouble))
                return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s.rope_theta\" must be a number",
                                  file, block);
            cfg->rope_theta = th->valuedouble;
        }
        const char *key = "rope_type";
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rp, key);
        if (!ty || cJSON_IsNull(ty)) {
            key = "type";
            ty = cJSON_GetObjectItemCaseSensitive(rp, key);
        }
        const char *type = "default";
        if (ty && !cJSON_IsNull(ty)) {
            if (!cJSON_IsString(ty))
                return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s.%s\" must be a string", file,
                                  block, key);
            type = ty->valuestring;
        }
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(rp, "mrope_section");
        if (ms && !cJSON_IsNull(ms)) {
            int sum = 0;
            if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
                return evlm__fail(EVLM_ERR_FORMAT,
                                  "%s: field \"%s.mrope_section\" must be a list of 3 integers",
                                  file, block);
            for (int i = 0; i < 3; i++) {
                const cJSON *v = cJSON_GetArrayItem(ms, i);
                if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 512 ||
                    v->valuedouble != (double)(int)v->valuedouble)
                    return evlm__fail(
                        EVLM_ERR_FORMAT,
                        "%s: field \"%s.mrope_section[%d]\" must be an integer in [0, 512]", file,
                        block, i);
                cfg->mrope_section[i] = (int)v->valuedouble;
                sum += cfg->mrope_section[i];
            }
            if (sum * 2 != cfg->head_dim)
                return evlm__fail(
                    EVLM_ERR_FORMAT,
                    "%s: field \"%s.mrope_section\" sums to %d, not head_dim / 2 = %d", file, block,
                    sum, cfg->head_dim / 2);
        }
        if (strcmp(type, "default") == 0 || strcmp(type, "mrope") == 0) {
            cfg->rope_type = EVLM_ROPE_DEFAULT;
        } else if (strcmp(type, "linear") == 0) {
            cfg->rope_type = EVLM_ROPE_LINEAR;
            EVLM_TRY(rope_num(file, block, rp, "factor", 1e-3, 1e6, &cfg->rope_factor));
        } else if (strcmp(type, "llama3") == 0) {
            cfg->rope_type = EVLM_ROPE_LLAMA3;
            EVLM_TRY(rope_num(file, block, rp, "factor", 1e-3, 1e6, &cfg->rope_factor));
            EVLM_TRY(rope_num(file, block, rp, "low_freq_factor", 1e-6, 1e6,
                              &cfg->rope_low_freq_factor));
            EVLM_TRY(rope_num(file, block, rp, "high_freq_factor", 1e-6, 1e6,
                              &cfg->rope_high_freq_factor));
            if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
                return evlm__fail(EVLM_ERR_FORMAT,
                                  "%s: field \"%s.high_freq_factor\" must exceed low_freq_factor",
                                  file, block);
            int64_t orig = -1;
            EVLM_TRY(
                evlm_json_int(file, rp, "original_max_position_embeddings", 1, 1 << 24, &orig));
            if (orig < 0)
                return evlm__fail(EVLM_ERR_FORMAT,
                                  "%s: missing field \"%s.original_max_position_embeddings\"", file,
                                  block);
            cfg->rope_original_max_pos = (int)orig;
        } else {
            return evlm__fail(EVLM_ERR_UNSUPPORTED,
                              "%s: field \"%s.%s\" = \"%s\" is not supported (default, linear, "
                              "llama3)",
                              file, block, key, type);
        }
    }
    if (!(cfg->rope_theta > 0.0 && cfg->rope_theta <= 1e12))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"rope_theta\" = %g is out of range (0, 1e12]", file,
                          cfg->rope_theta);
    return EVLM_OK;
}

static evlm_status parse_config(const char *file, const cJSON *root, evlm_decoder_config *cfg) {
    if (!cJSON_IsObject(root)) return evlm__fail(EVLM_ERR_FORMAT, "%s: not a JSON object", file);
    cfg_src s = {file, root, root};
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (tc && !cJSON_IsNull(tc)) {
        if (!cJSON_IsObject(tc))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"text_config\" must be an object", file);
        s.text = tc;
    }

    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (arch && !cJSON_IsNull(arch)) {
        const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
        if (!cJSON_IsString(a0))
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: field \"architectures\" must be a non-empty list of strings",
                              file);
        EVLM_TRY(copy_str(file, "architectures", a0->valuestring, cfg->architecture,
                          sizeof cfg->architecture));
    }
    const char *str = NULL;
    EVLM_TRY(evlm_json_str(file, root, "model_type", &str));
    if (str) EVLM_TRY(copy_str(file, "model_type", str, cfg->model_type, sizeof cfg->model_type));

    EVLM_TRY(get_int(&s, "vocab_size", 1, 1, 1 << 24, &cfg->vocab_size));
    EVLM_TRY(get_int(&s, "hidden_size", 1, 1, 65536, &cfg->hidden_size));
    EVLM_TRY(get_int(&s, "intermediate_size", 1, 1, 1 << 20, &cfg->intermediate_size));
    EVLM_TRY(get_int(&s, "num_hidden_layers", 1, 1, 1024, &cfg->n_layers));
    EVLM_TRY(get_int(&s, "num_attention_heads", 1, 1, 1024, &cfg->n_heads));
    cfg->n_kv_heads = cfg->n_heads;
    EVLM_TRY(get_int(&s, "num_key_value_heads", 0, 1, 1024, &cfg->n_kv_heads));
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: field \"num_attention_heads\" = %d is not a multiple of "
                          "\"num_key_value_heads\" = %d",
                          file, cfg->n_heads, cfg->n_kv_heads);
    cfg->head_dim = 0;
    EVLM_TRY(get_int(&s, "head_dim", 0, 1, 1024, &cfg->head_dim));
    if (!cfg->head_dim) {
        if (cfg->hidden_size % cfg->n_heads != 0)
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: field \"hidden_size\" = %d is not a multiple of "
                              "\"num_attention_heads\" = %d (and no \"head_dim\")",
                              file, cfg->hidden_size, cfg->n_heads);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
        if (cfg->head_dim > 1024)
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: head size %d (hidden_size / heads) exceeds 1024", file,
                              cfg->head_dim);
    }
    if (cfg->head_dim % 2)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"head_dim\" = %d must be even (RoPE pairs)",
                          file, cfg->head_dim);
    cfg->max_position_embeddings = 2048;
    EVLM_TRY(get_int(&s, "max_position_embeddings", 0, 1, 1 << 24, &cfg->max_position_embeddings));

    double eps = 1e-6;
    const cJSON *h = holder(&s, "rms_norm_eps");
    if (h) EVLM_TRY(evlm_json_num(file, h, "rms_norm_eps", &eps));
    if (!(eps > 0.0 && eps < 1.0))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"rms_norm_eps\" = %g is out of range (0, 1)",
                          file, eps);
    cfg->rms_norm_eps = (float)eps;

    EVLM_TRY(parse_rope(&s, cfg));

    EVLM_TRY(get_bool(&s, "tie_word_embeddings", &cfg->tie_word_embeddings));
    EVLM_TRY(get_bool(&s, "attention_bias", &cfg->attention_bias));
    EVLM_TRY(get_bool(&s, "mlp_bias", &cfg->mlp_bias));

    strcpy(cfg->hidden_act, "silu");
    h = holder(&s, "hidden_act");
    if (h) {
        EVLM_TRY(evlm_json_str(file, h, "hidden_act", &str));
        EVLM_TRY(copy_str(file, "hidden_act", str, cfg->hidden_act, sizeof cfg->hidden_act));
    }

    /* the dtype the (text) model was saved from: "dtype" (5.x) or "torch_dtype" (4.x) */
    cfg->dtype[0] = 0;
    const char *dkeys[2] = {"dtype", "torch_dtype"};
    for (int k = 0; k < 2 && !cfg->dtype[0]; k++) {
        h = holder(&s, dkeys[k]);
        if (h) {
            EVLM_TRY(evlm_json_str(file, h, dkeys[k], &str));
            EVLM_TRY(copy_str(file, dkeys[k], str, cfg->dtype, sizeof cfg->dtype));
        }
    }

    EVLM_TRY(get_int(&s, "bos_token_id", 0, 0, INT32_MAX, &cfg->bos_token_id));
    h = holder(&s, "eos_token_id");
    if (h) EVLM_TRY(parse_eos(file, h, cfg));
    return EVLM_OK;
}

static evlm_status parse_generation(const char *file, const cJSON *root, evlm_decoder_config *cfg) {
    if (!cJSON_IsObject(root)) return evlm__fail(EVLM_ERR_FORMAT, "%s: not a JSON object", file);
    EVLM_TRY(parse_eos(file, root, cfg));
    if (cfg->bos_token_id < 0) {
        int64_t bos = -1;
        EVLM_TRY(evlm_json_int(file, root, "bos_token_id", 0, INT32_MAX, &bos));
        cfg->bos_token_id = (int)bos;
    }
    return EVLM_OK;
}

evlm_status evlm_decoder_config_parse(const char *what, const char *json, size_t len,
                                      const char *gen_json, size_t gen_len,
                                      evlm_decoder_config *cfg) {
    if (!what) what = "config.json";
    if (!json || !cfg) return evlm__fail(EVLM_ERR_ARG, "%s: NULL argument", what);
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_token_id = -1;

    /* generation_config.json sits beside config.json */
    char gen_what[4096];
    const char *slash = strrchr(what, '/');
    int dn = slash ? (int)(slash - what) : 0;
    snprintf(gen_what, sizeof gen_what, "%.*s%sgeneration_config.json", dn, what, slash ? "/" : "");

    cJSON *root = NULL;
    EVLM_TRY(evlm_json_parse(what, json, len, &root));
    evlm_status st = parse_config(what, root, cfg);
    cJSON_Delete(root);
    if (st == EVLM_OK && gen_json) {
        cJSON *gen = NULL;
        st = evlm_json_parse(gen_what, gen_json, gen_len, &gen);
        if (st == EVLM_OK) st = parse_generation(gen_what, gen, cfg);
        cJSON_Delete(gen);
    }
    if (st != EVLM_OK) {
        memset(cfg, 0, sizeof *cfg);
        cfg->bos_token_id = -1;
    }
    return st;
}

evlm_status evlm_decoder_config_load(const char *dir, evlm_decoder_config *cfg) {
    evlm_dir d = evlm_dir_folder(dir);
    return evlm_decoder_config_load_dir(&d, cfg);
}

evlm_status evlm_decoder_config_load_dir(const evlm_dir *d, evlm_decoder_config *cfg) {
    char path[4096];
    EVLM_TRY(evlm_dir_name(d, "config.json", path, sizeof path));
    char *json = NULL, *gen = NULL;
    size_t n = 0, gn = 0;
    EVLM_TRY(evlm_dir_read(d, "config.json", EVLM_JSON_MAX_FILE, &json, &n));
    evlm_status st = EVLM_OK;
    if (evlm_dir_has(d, "generation_config.json"))
        st = evlm_dir_read(d, "generation_config.json", EVLM_JSON_MAX_FILE, &gen, &gn);
    if (st == EVLM_OK) st = evlm_decoder_config_parse(path, json, n, gen, gn, cfg);
    free(json);
    free(gen);
    return st;
}
