/*
 * hf_config.h - the Llama-family text configuration from a Hugging Face folder.
 *
 * Reads config.json as transformers 4.x and 5.x write it: a nested "text_config" (VLMs) is
 * used when present; head_dim (default hidden/heads); rope_theta or rope_parameters.rope_theta;
 * rope_scaling / rope_parameters with rope_type "default", "linear" or "llama3" (and M-RoPE's
 * mrope_section); tie_word_embeddings,
 * rms_norm_eps, attention_bias, mlp_bias. generation_config.json (optional) supplies eos ids
 * (int or list), overriding config.json's. Every number is range-checked; errors name the
 * file and field. Not here: vision configs (src/vision), tokenizer settings (src/tokenizer).
 */
#ifndef EVLM_IO_HF_CONFIG_H
#define EVLM_IO_HF_CONFIG_H

#include "evlm.h"

#include <stdbool.h>
#include <stdint.h>

#define EVLM_MAX_EOS 8

typedef enum evlm_rope_type {
    EVLM_ROPE_DEFAULT = 0,
    EVLM_ROPE_LINEAR,
    EVLM_ROPE_LLAMA3,
} evlm_rope_type;

typedef struct evlm_decoder_config {
    char architecture[64]; /* architectures[0], e.g. "LlamaForCausalLM" */
    char model_type[32];   /* e.g. "llama", "idefics3" (top-level) */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int n_layers;
    int n_heads;
    int n_kv_heads; /* default n_heads */
    int head_dim;   /* default hidden_size / n_heads */
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta; /* default 10000 */
    evlm_rope_type rope_type;
    float rope_factor;           /* linear and llama3 */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int rope_original_max_pos;   /* llama3 original_max_position_embeddings */
    int mrope_section[3];        /* M-RoPE (Qwen2-VL): frequencies per temporal / height / width
                                    position, summing to head_dim / 2; all 0 for plain RoPE */
    bool tie_word_embeddings;    /* default: true if the lm_head tensor is absent is decided by the
                                    loader; this is config's value (default false) */
    bool attention_bias;
    bool mlp_bias;
    char hidden_act[16]; /* "silu" */
    char dtype[16];   /* dtype the text model was saved from ("bfloat16", "float32", "" unknown) */
    int bos_token_id; /* -1 when absent */
    int n_eos;
    int32_t eos_token_ids[EVLM_MAX_EOS];
} evlm_decoder_config;

#include "core/file.h"

/* dir: the model folder (or, _dir, the files a container embeds). */
evlm_status evlm_decoder_config_load(const char *dir, evlm_decoder_config *cfg);
evlm_status evlm_decoder_config_load_dir(const evlm_dir *d, evlm_decoder_config *cfg);
/* Same from already-parsed JSON text (fuzzer / tests); gen_json may be NULL. */
evlm_status evlm_decoder_config_parse(const char *what, const char *json, size_t len,
                                      const char *gen_json, size_t gen_len,
                                      evlm_decoder_config *cfg);

#endif
