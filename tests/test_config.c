/* test_config.c - config.json / generation_config.json parsing: the real fixture configs
 * (transformers 4.x and 5.x layouts, nested text_config) and inline edge cases. */
#include "core/status.h"
#include "io/hf_config.h"
#include "test.h"

#define BASE                                                                                       \
    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "                  \
    "\"num_attention_heads\": 4, \"vocab_size\": 100"

static evlm_status parse2(const char *json, const char *gen, evlm_decoder_config *cfg) {
    return evlm_decoder_config_parse("m/config.json", json, strlen(json), gen,
                                     gen ? strlen(gen) : 0, cfg);
}

static evlm_status parse(const char *json, evlm_decoder_config *cfg) {
    return parse2(json, NULL, cfg);
}

/* Must fail with st and a message containing `field` and the file name. */
static void expect_fail2(const char *json, const char *gen, evlm_status st, const char *field,
                         const char *file) {
    evlm_decoder_config cfg;
    evlm_status got = parse2(json, gen, &cfg);
    CHECKF(got == st, "status %d (want %d) for %s: %s", (int)got, (int)st, json, evlm_last_error());
    CHECKF(strstr(evlm_last_error(), field) != NULL, "'%s' not in: %s", field, evlm_last_error());
    CHECKF(strstr(evlm_last_error(), file) != NULL, "'%s' not in: %s", file, evlm_last_error());
}

static void expect_fail(const char *json, evlm_status st, const char *field) {
    expect_fail2(json, NULL, st, field, "config.json");
}

static void test_inline(void) {
    evlm_decoder_config c;
    /* defaults */
    CHECK_OK(parse("{" BASE "}", &c));
    CHECK(c.n_kv_heads == 4 && c.head_dim == 16 && c.rope_theta == 10000.0);
    CHECK(c.rope_type == EVLM_ROPE_DEFAULT && !c.tie_word_embeddings && c.bos_token_id == -1);
    CHECK(c.n_eos == 0 && strcmp(c.hidden_act, "silu") == 0 && c.architecture[0] == 0);
    CHECK(c.max_position_embeddings == 2048 && c.rms_norm_eps > 0);

    /* 4.x: rope_theta + rope_scaling llama3 */
    CHECK_OK(parse("{" BASE ", \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, "
                   "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                   "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}}",
                   &c));
    CHECK(c.rope_type == EVLM_ROPE_LLAMA3 && c.rope_theta == 500000.0 && c.rope_factor == 8.0f);
    CHECK(c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f);
    CHECK(c.rope_original_max_pos == 8192);
    /* 4.x legacy "type" key, linear */
    CHECK_OK(parse("{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", &c));
    CHECK(c.rope_type == EVLM_ROPE_LINEAR && c.rope_factor == 2.0f && c.rope_theta == 10000.0);
    CHECK_OK(parse("{" BASE ", \"rope_scaling\": null, \"rope_theta\": 100000}", &c));
    CHECK(c.rope_type == EVLM_ROPE_DEFAULT && c.rope_theta == 100000.0);
    /* 5.x rope_parameters */
    CHECK_OK(parse("{" BASE ", \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": "
                   "\"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": "
                   "4.0, \"original_max_position_embeddings\": 8192}}",
                   &c));
    CHECK(c.rope_type == EVLM_ROPE_LLAMA3 && c.rope_theta == 500000.0 && c.rope_factor == 32.0f);
    CHECK_OK(parse("{" BASE ", \"rope_parameters\": {\"rope_theta\": 1e6, \"rope_type\": "
                   "\"default\", \"type\": \"mrope\", \"mrope_section\": [2, 3, 3]}}",
                   &c));
    CHECK(c.rope_type == EVLM_ROPE_DEFAULT && c.rope_theta == 1e6);
    CHECK_OK(parse("{" BASE ", \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 3, "
                   "3]}, \"rope_theta\": 1e6}",
                   &c));
    CHECK(c.rope_type == EVLM_ROPE_DEFAULT && c.rope_theta == 1e6);
    /* unsupported and malformed rope */
    expect_fail("{" BASE ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
                EVLM_ERR_UNSUPPORTED, "rope_scaling.rope_type");
    expect_fail("{" BASE ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 4.0}}",
                EVLM_ERR_UNSUPPORTED, "rope_scaling.type");
    expect_fail("{" BASE ", \"rope_parameters\": {\"rope_type\": \"yarn\"}}", EVLM_ERR_UNSUPPORTED,
                "rope_parameters.rope_type");
    expect_fail("{" BASE ", \"rope_scaling\": {\"rope_type\": \"linear\"}}", EVLM_ERR_FORMAT,
                "rope_scaling.factor");
    expect_fail("{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
                "\"low_freq_factor\": 4, \"high_freq_factor\": 1, "
                "\"original_max_position_embeddings\": 8192}}",
                EVLM_ERR_FORMAT, "high_freq_factor");
    expect_fail("{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
                "\"low_freq_factor\": 1, \"high_freq_factor\": 4}}",
                EVLM_ERR_FORMAT, "original_max_position_embeddings");
    expect_fail("{" BASE ", \"rope_scaling\": \"linear\"}", EVLM_ERR_FORMAT, "rope_scaling");
    expect_fail("{" BASE ", \"rope_scaling\": {\"rope_type\": 3}}", EVLM_ERR_FORMAT,
                "rope_scaling.rope_type");
    expect_fail("{" BASE ", \"rope_theta\": -1}", EVLM_ERR_FORMAT, "rope_theta");
    expect_fail("{" BASE ", \"rope_theta\": \"big\"}", EVLM_ERR_FORMAT, "rope_theta");

    /* eos: int, list, null; generation_config overrides */
    CHECK_OK(parse("{" BASE ", \"eos_token_id\": [2, 7, 9], \"bos_token_id\": 1}", &c));
    CHECK(c.n_eos == 3 && c.eos_token_ids[0] == 2 && c.eos_token_ids[2] == 9 &&
          c.bos_token_id == 1);
    CHECK_OK(parse2("{" BASE ", \"eos_token_id\": 2}", "{\"eos_token_id\": [5, 6]}", &c));
    CHECK(c.n_eos == 2 && c.eos_token_ids[0] == 5 && c.eos_token_ids[1] == 6);
    CHECK_OK(parse2("{" BASE ", \"eos_token_id\": 2}",
                    "{\"eos_token_id\": null, \"bos_token_id\": 0}", &c));
    CHECK(c.n_eos == 1 && c.eos_token_ids[0] == 2 && c.bos_token_id == 0);
    CHECK_OK(parse2("{" BASE "}", "{\"eos_token_id\": 4}", &c));
    CHECK(c.n_eos == 1 && c.eos_token_ids[0] == 4);
    expect_fail("{" BASE ", \"eos_token_id\": [1,2,3,4,5,6,7,8,9]}", EVLM_ERR_UNSUPPORTED,
                "eos_token_id");
    expect_fail("{" BASE ", \"eos_token_id\": [1, \"2\"]}", EVLM_ERR_FORMAT, "eos_token_id");
    expect_fail("{" BASE ", \"eos_token_id\": -3}", EVLM_ERR_FORMAT, "eos_token_id");
    expect_fail("{" BASE ", \"eos_token_id\": \"</s>\"}", EVLM_ERR_FORMAT, "eos_token_id");
    expect_fail2("{" BASE "}", "{\"eos_token_id\": 1.5}", EVLM_ERR_FORMAT, "eos_token_id",
                 "m/generation_config.json");
    expect_fail2("{" BASE "}", "{\"eos_token_id\": ", EVLM_ERR_FORMAT, "invalid JSON",
                 "generation_config.json");
    expect_fail2("{" BASE "}", "[]", EVLM_ERR_FORMAT, "object", "generation_config.json");

    /* architecture / model_type / text_config */
    CHECK_OK(parse("{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", " BASE
                   ", \"tie_word_embeddings\": true, \"attention_bias\": true, \"head_dim\": 32}",
                   &c));
    CHECK(strcmp(c.architecture, "LlamaForCausalLM") == 0 && strcmp(c.model_type, "llama") == 0);
    CHECK(c.tie_word_embeddings && c.attention_bias && !c.mlp_bias && c.head_dim == 32);
    CHECK_OK(parse("{\"model_type\": \"idefics3\", \"vocab_size\": 7, \"tie_word_embeddings\": "
                   "true, \"text_config\": {\"hidden_size\": 32, \"intermediate_size\": 64, "
                   "\"num_hidden_layers\": 1, \"num_attention_heads\": 2}}",
                   &c));
    CHECK(c.vocab_size == 7 && c.hidden_size == 32 && c.tie_word_embeddings && c.head_dim == 16);
    CHECK(strcmp(c.model_type, "idefics3") == 0);
    /* text_config wins over the top level */
    CHECK_OK(parse("{\"vocab_size\": 7, \"tie_word_embeddings\": true, \"text_config\": {" BASE
                   ", \"tie_word_embeddings\": false}}",
                   &c));
    CHECK(c.vocab_size == 100 && !c.tie_word_embeddings);
    expect_fail("{\"text_config\": [1]}", EVLM_ERR_FORMAT, "text_config");
    expect_fail("{\"architectures\": [], " BASE "}", EVLM_ERR_FORMAT, "architectures");
    expect_fail("{\"architectures\": \"Llama\", " BASE "}", EVLM_ERR_FORMAT, "architectures");
    expect_fail("{\"architectures\": [\"" /* 70 chars */
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"], " BASE
                "}",
                EVLM_ERR_FORMAT, "architectures");
    expect_fail("{\"model_type\": 5, " BASE "}", EVLM_ERR_FORMAT, "model_type");
    expect_fail("{" BASE ", \"hidden_act\": \"gelu_pytorch_tanh_approximate\"}", EVLM_ERR_FORMAT,
                "hidden_act");

    /* missing, wrong types, out of range */
    expect_fail("{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"vocab_size\": 100}",
                EVLM_ERR_FORMAT, "\"num_attention_heads\"");
    expect_fail("{\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 4, \"vocab_size\": 100}",
                EVLM_ERR_FORMAT, "\"hidden_size\"");
    expect_fail("{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 4, \"vocab_size\": null}",
                EVLM_ERR_FORMAT, "\"vocab_size\"");
    expect_fail("{" BASE ", \"num_key_value_heads\": \"2\"}", EVLM_ERR_FORMAT,
                "num_key_value_heads");
    expect_fail("{" BASE ", \"tie_word_embeddings\": 1}", EVLM_ERR_FORMAT, "tie_word_embeddings");
    expect_fail("{" BASE ", \"rms_norm_eps\": \"1e-5\"}", EVLM_ERR_FORMAT, "rms_norm_eps");
    expect_fail("{" BASE ", \"rms_norm_eps\": 0}", EVLM_ERR_FORMAT, "rms_norm_eps");
    expect_fail("{" BASE ", \"num_key_value_heads\": 2.5}", EVLM_ERR_FORMAT, "num_key_value_heads");
    expect_fail("{\"hidden_size\": 70000, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 4, \"vocab_size\": 100}",
                EVLM_ERR_FORMAT, "hidden_size");
    expect_fail("{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2000, "
                "\"num_attention_heads\": 4, \"vocab_size\": 100}",
                EVLM_ERR_FORMAT, "num_hidden_layers");
    expect_fail("{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 0, \"vocab_size\": 100}",
                EVLM_ERR_FORMAT, "num_attention_heads");
    expect_fail("{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 4, \"vocab_size\": 16777217}",
                EVLM_ERR_FORMAT, "vocab_size");
    expect_fail("{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 4, \"vocab_size\": 1e30}",
                EVLM_ERR_FORMAT, "vocab_size");
    expect_fail("{" BASE ", \"num_key_value_heads\": 3}", EVLM_ERR_FORMAT, "num_key_value_heads");
    expect_fail("{" BASE ", \"head_dim\": 15}", EVLM_ERR_FORMAT, "head_dim");
    expect_fail("{" BASE ", \"head_dim\": 2048}", EVLM_ERR_FORMAT, "head_dim");
    expect_fail("{\"hidden_size\": 66, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                "\"num_attention_heads\": 4, \"vocab_size\": 100}",
                EVLM_ERR_FORMAT, "hidden_size");
    expect_fail("{" BASE ", \"max_position_embeddings\": 0}", EVLM_ERR_FORMAT,
                "max_position_embeddings");
    expect_fail("{" BASE ", \"bos_token_id\": -5}", EVLM_ERR_FORMAT, "bos_token_id");
    expect_fail("[1, 2]", EVLM_ERR_FORMAT, "object");
    expect_fail("{" BASE, EVLM_ERR_FORMAT, "invalid JSON");
    expect_fail("", EVLM_ERR_FORMAT, "invalid JSON");
}

typedef struct want {
    const char *dir, *arch, *model_type;
    int hidden, inter, layers, heads, kv, head_dim, vocab, max_pos;
    double theta;
    float eps;
    int tie, bos, eos;
} want;

static void test_real(const char *shared) {
    static const want ws[] = {
        {"fixtures/llama-tiny", "LlamaForCausalLM", "llama", 64, 160, 2, 4, 2, 16, 680, 512, 1e4,
         1e-5f, 1, 1, 2},
        {"fixtures/smolvlm-tiny", "Idefics3ForConditionalGeneration", "idefics3", 64, 160, 2, 4, 2,
         16, 680, 512, 1e4, 1e-5f, 0, 1, 2},
        {"fixtures/qwen2vl-tiny", "Qwen2VLForConditionalGeneration", "qwen2_vl", 64, 160, 2, 4, 2,
         16, 700, 1024, 1e6, 1e-6f, 1, 151643, 151645},
        {"models/scenes-vlm", "Idefics3ForConditionalGeneration", "idefics3", 256, 704, 6, 4, 2, 64,
         49280, 2048, 1e5, 1e-5f, 1, 1, 49279},
        {"reference/smolvlm-256m-instruct", "Idefics3ForConditionalGeneration", "idefics3", 576,
         1536, 30, 9, 3, 64, 49280, 8192, 1e5, 1e-5f, 0, 1, 2},
    };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        const want *w = &ws[i];
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", shared, w->dir);
        evlm_decoder_config c;
        evlm_status st = evlm_decoder_config_load(dir, &c);
        CHECKF(st == EVLM_OK, "%s: %s", w->dir, evlm_last_error());
        if (st != EVLM_OK) continue;
        CHECKF(strcmp(c.architecture, w->arch) == 0, "%s: arch %s", w->dir, c.architecture);
        CHECKF(strcmp(c.model_type, w->model_type) == 0, "%s: model_type %s", w->dir, c.model_type);
        CHECKF(c.hidden_size == w->hidden && c.intermediate_size == w->inter &&
                   c.n_layers == w->layers && c.n_heads == w->heads && c.n_kv_heads == w->kv &&
                   c.head_dim == w->head_dim,
               "%s: dims %d %d %d %d %d %d", w->dir, c.hidden_size, c.intermediate_size, c.n_layers,
               c.n_heads, c.n_kv_heads, c.head_dim);
        CHECKF(c.vocab_size == w->vocab && c.max_position_embeddings == w->max_pos,
               "%s: vocab %d max_pos %d", w->dir, c.vocab_size, c.max_position_embeddings);
        CHECKF(c.rope_theta == w->theta && c.rope_type == EVLM_ROPE_DEFAULT, "%s: theta %g", w->dir,
               c.rope_theta);
        CHECKF(c.rms_norm_eps == w->eps, "%s: eps %g", w->dir, (double)c.rms_norm_eps);
        CHECKF(c.tie_word_embeddings == (w->tie != 0), "%s: tie %d", w->dir, c.tie_word_embeddings);
        CHECKF(c.bos_token_id == w->bos && c.n_eos == 1 && c.eos_token_ids[0] == w->eos,
               "%s: bos %d eos n=%d [0]=%d", w->dir, c.bos_token_id, c.n_eos, c.eos_token_ids[0]);
        CHECK(strcmp(c.hidden_act, "silu") == 0 && !c.attention_bias && !c.mlp_bias);
    }
    evlm_decoder_config c;
    CHECK(evlm_decoder_config_load("/nonexistent/model", &c) == EVLM_ERR_IO);
    CHECK(strstr(evlm_last_error(), "config.json") != NULL);
}

int main(void) {
    test_inline();
    const char *shared = test_shared_dir();
    if (shared) test_real(shared);
    return test_done();
}
