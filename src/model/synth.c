/*
 * synth.c - evlm_model_synth: a random-weight model folder for a Hugging Face config.json, so
 * benchmarks need no downloads. The config's architecture picks the family (family.h), whose
 * synth hook lists the tensors (the decoder's through evlm__synth_decoder, here); they are
 * generated in that order from one splitmix64 stream (matrices ~ U(-a, a) with the std of
 * N(0, 0.02), norms 1, biases 0) and written as model.safetensors. config.json is copied (or
 * becomes a Llama text config for text_only), the tokenizer / chat template / processor files
 * of the config's folder are copied as they are, and a byte-level tokenizer is written when
 * there is none. Same arguments, same bytes.
 * Not here: loading the result (evlm_model_load), any family's tensor names but the decoder's.
 */
#include "core/buf.h"
#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/family.h"

#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct synth {
    evlm_tensor *v;
    char **names;
    int n, cap;
    evlm_type type;
    bool sparse24; /* evlm_synth_params.sparse24 */
    uint64_t rng;
    size_t bytes;
} synth;

static float uniform(uint64_t *s) { /* splitmix64 -> [-1, 1) */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* evlm_synth_add: every tensor has the model's type; random values only for RANDOM. */
static evlm_status add(void *user, const char *name, evlm_synth_kind kind, int nd,
                       const int64_t *shape) {
    synth *s = user;
    if (nd < 1 || nd > 4)
        return evlm__fail(EVLM_ERR_ARG, "synth: tensor %s has %d dimensions", name, nd);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        evlm_tensor *v = realloc(s->v, sizeof *s->v * (size_t)cap);
        if (v) s->v = v;
        char **names = realloc(s->names, sizeof *s->names * (size_t)cap);
        if (names) s->names = names;
        if (!v || !names) return evlm__fail(EVLM_ERR_NOMEM, "out of memory for tensor %s", name);
        s->cap = cap;
    }
    evlm_tensor *t = &s->v[s->n];
    memset(t, 0, sizeof *t);
    char *nm = strdup(name);
    if (!nm) return evlm__fail(EVLM_ERR_NOMEM, "out of memory for tensor %s", name);
    t->name = nm;
    t->type = s->type;
    t->n_dims = nd;
    for (int i = 0; i < 4; i++) t->ne[i] = i < nd ? shape[nd - 1 - i] : 1;
    evlm_tensor_set_contiguous(t);
    size_t n = (size_t)evlm_tensor_nelements(t), es = evlm_type_size(t->type);
    void *data = malloc(n * es);
    if (!data) {
        free(nm);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory for tensor %s (%zu MB)", name,
                          n * es >> 20);
    }
    t->data = data;
    s->names[s->n++] = nm;
    const float a = 0.02f * sqrtf(3.0f); /* U(-a, a) has std 0.02 */
    const bool prune = s->sparse24 && kind == EVLM_SYNTH_RANDOM && nd == 2 && t->ne[0] % 4 == 0 &&
                       !strstr(name, "embed") && !strstr(name, "lm_head");
    float g[4];
    for (size_t i = 0; i < n; i++) {
        float x = kind == EVLM_SYNTH_RANDOM ? a * uniform(&s->rng)
                  : kind == EVLM_SYNTH_ONES ? 1.0f
                                            : 0.0f;
        if (prune) { /* the 2 smallest |x| of each group of 4 (the lower index on ties) to 0 */
            g[i % 4] = x;
            if (i % 4 != 3) continue;
            int lo0 = 0;
            for (int j = 1; j < 4; j++)
                if (fabsf(g[j]) < fabsf(g[lo0])) lo0 = j;
            int lo1 = lo0 == 0 ? 1 : 0;
            for (int j = 0; j < 4; j++)
                if (j != lo0 && fabsf(g[j]) < fabsf(g[lo1])) lo1 = j;
            g[lo0] = g[lo1] = 0.0f;
            for (size_t j = i - 3; j <= i; j++) {
                float v = g[j % 4];
                if (t->type == EVLM_TYPE_F32)
                    ((float *)data)[j] = v;
                else if (t->type == EVLM_TYPE_F16)
                    ((uint16_t *)data)[j] = evlm_f32_to_f16(v);
                else
                    ((uint16_t *)data)[j] = evlm_f32_to_bf16(v);
            }
            continue;
        }
        if (t->type == EVLM_TYPE_F32)
            ((float *)data)[i] = x;
        else if (t->type == EVLM_TYPE_F16)
            ((uint16_t *)data)[i] = evlm_f32_to_f16(x);
        else
            ((uint16_t *)data)[i] = evlm_f32_to_bf16(x);
    }
    s->bytes += n * es;
    return EVLM_OK;
}

bool evlm__synth_qkv_bias(const evlm_decoder_config *c) {
    return c->attention_bias || !strcmp(c->model_type, "qwen2");
}

evlm_status evlm__synth_put(evlm_synth_add fn, void *user, evlm_synth_kind kind, int nd, int64_t d0,
                            int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof name)
        return evlm__fail(EVLM_ERR_ARG, "synth: tensor name too long");
    const int64_t shape[4] = {d0, d1, d2, d3};
    return fn(user, name, kind, nd, shape);
}

evlm_status evlm__synth_decoder(const evlm_decoder_config *c, const char *p, bool qkv_bias,
                                evlm_synth_add fn, void *u) {
    const int64_t H = c->hidden_size, F = c->intermediate_size,
                  QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim,
                  V = c->vocab_size;
    const evlm_synth_kind W = EVLM_SYNTH_RANDOM, N = EVLM_SYNTH_ONES, B = EVLM_SYNTH_ZEROS;
    EVLM_TRY(evlm__synth_put(fn, u, W, 2, V, H, 0, 0, "%sembed_tokens.weight", p));
    for (int l = 0; l < c->n_layers; l++) {
#define L(sfx, kind, nd, a, b)                                                                     \
    EVLM_TRY(evlm__synth_put(fn, u, kind, nd, a, b, 0, 0, "%slayers.%d." sfx, p, l))
        L("input_layernorm.weight", N, 1, H, 0);
        L("post_attention_layernorm.weight", N, 1, H, 0);
        L("self_attn.q_proj.weight", W, 2, QD, H);
        L("self_attn.k_proj.weight", W, 2, KD, H);
        L("self_attn.v_proj.weight", W, 2, KD, H);
        L("self_attn.o_proj.weight", W, 2, H, QD);
        if (qkv_bias) {
            L("self_attn.q_proj.bias", B, 1, QD, 0);
            L("self_attn.k_proj.bias", B, 1, KD, 0);
            L("self_attn.v_proj.bias", B, 1, KD, 0);
        }
        L("mlp.gate_proj.weight", W, 2, F, H);
        L("mlp.up_proj.weight", W, 2, F, H);
        L("mlp.down_proj.weight", W, 2, H, F);
        if (c->mlp_bias) {
            L("mlp.gate_proj.bias", B, 1, F, 0);
            L("mlp.up_proj.bias", B, 1, F, 0);
            L("mlp.down_proj.bias", B, 1, H, 0);
        }
#undef L
    }
    EVLM_TRY(evlm__synth_put(fn, u, N, 1, H, 0, 0, 0, "%snorm.weight", p));
    if (!c->tie_word_embeddings)
        EVLM_TRY(evlm__synth_put(fn, u, W, 2, V, H, 0, 0, "lm_head.weight"));
    return EVLM_OK;
}

static evlm_status copy_if_present(const char *src_dir, const char *out, const char *name) {
    char a[4096], b[4096];
    EVLM_TRY(evlm_path_join(a, sizeof a, src_dir, name));
    if (!evlm_file_exists(a)) return EVLM_OK;
    char *data;
    size_t n;
    EVLM_TRY(evlm_read_file(a, (size_t)1 << 30, &data, &n));
    evlm_status st = evlm_path_join(b, sizeof b, out, name);
    if (st == EVLM_OK) st = evlm_write_file_atomic(b, data, n);
    free(data);
    return st;
}

/* A byte-level BPE tokenizer of the 256 byte symbols (GPT-2's byte-to-unicode map). */
static evlm_status write_byte_tokenizer(const char *out) {
    evlm_str j = {0};
    evlm_status st = evlm_str_appendz(
        &j, "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null, "
            "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
            "\"trim_offsets\": true, \"use_regex\": true}, \"post_processor\": null, "
            "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
            "\"trim_offsets\": true, \"use_regex\": true}, \"model\": {\"type\": \"BPE\", "
            "\"dropout\": null, \"unk_token\": null, \"byte_fallback\": false, \"vocab\": {");
    int extra = 0;
    for (int b = 0; b < 256 && st == EVLM_OK; b++) {
        int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 256 + extra++;
        char u[8];
        if (cp < 0x80)
            snprintf(u, sizeof u, "%c", cp);
        else
            snprintf(u, sizeof u, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", cp);
        st = evlm_str_appendf(&j, "%s\"%s\": %d", b ? ", " : "", u, b);
    }
    if (st == EVLM_OK) st = evlm_str_appendz(&j, "}, \"merges\": []}}\n");
    char path[4096];
    if (st == EVLM_OK) st = evlm_path_join(path, sizeof path, out, "tokenizer.json");
    if (st == EVLM_OK) st = evlm_write_file_atomic(path, j.data, j.len);
    evlm_str_free(&j);
    return st;
}

/* The Llama config of a VLM's language model (text_only). */
static evlm_status write_text_config(const char *path, const evlm_decoder_config *c) {
    evlm_str j = {0};
    evlm_status st = evlm_str_appendf(
        &j,
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": "
        "%d, "
        "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
        "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
        "\"max_position_embeddings\": %d, "
        "\"rms_norm_eps\": %g, \"rope_theta\": %.17g, \"tie_word_embeddings\": %s, "
        "\"attention_bias\": %s, "
        "\"mlp_bias\": %s, \"hidden_act\": \"silu\", \"torch_dtype\": \"%s\"",
        c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
        c->vocab_size, c->max_position_embeddings, (double)c->rms_norm_eps, c->rope_theta,
        c->tie_word_embeddings ? "true" : "false", evlm__synth_qkv_bias(c) ? "true" : "false",
        c->mlp_bias ? "true" : "false", c->dtype[0] ? c->dtype : "bfloat16");
    if (st == EVLM_OK && c->bos_token_id >= 0)
        st = evlm_str_appendf(&j, ", \"bos_token_id\": %d", c->bos_token_id);
    if (st == EVLM_OK && c->n_eos)
        st = evlm_str_appendf(&j, ", \"eos_token_id\": %d", c->eos_token_ids[0]);
    if (st == EVLM_OK) st = evlm_str_appendz(&j, "}\n");
    if (st == EVLM_OK) st = evlm_write_file_atomic(path, j.data, j.len);
    evlm_str_free(&j);
    return st;
}

/* config.json, then the tokenizer / chat template (from tok_dir when given) and processor
 * files; a byte-level tokenizer when none came. */
static evlm_status write_files(const evlm_synth_params *p, const evlm_synth_cfg *c,
                               bool text_config) {
    char path[4096], cfgdir[4096];
    EVLM_TRY(evlm_path_join(path, sizeof path, p->out_dir, "config.json"));
    if (text_config)
        EVLM_TRY(write_text_config(path, c->text));
    else
        EVLM_TRY(evlm_write_file_atomic(path, c->json, c->len));
    snprintf(cfgdir, sizeof cfgdir, "%s", p->config);
    const char *src_dir = dirname(cfgdir);
    static const char *files[] = {
        "tokenizer.json",         "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json",      "chat_template.json",    "chat_template.jinja",
        "generation_config.json", "processor_config.json", "preprocessor_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (p->text_only && (strstr(files[i], "processor") != NULL)) continue;
        bool tok_file = strstr(files[i], "token") || strstr(files[i], "chat_template");
        EVLM_TRY(copy_if_present(p->tokenizer_dir && tok_file ? p->tokenizer_dir : src_dir,
                                 p->out_dir, files[i]));
    }
    EVLM_TRY(evlm_path_join(path, sizeof path, p->out_dir, "tokenizer.json"));
    if (!evlm_file_exists(path)) EVLM_TRY(write_byte_tokenizer(p->out_dir));
    return EVLM_OK;
}

evlm_synth_params evlm_synth_default_params(void) {
    return (evlm_synth_params){.dtype = "bf16", .seed = 1};
}

evlm_status evlm_model_synth(const evlm_synth_params *p, int *n_tensors, size_t *bytes) {
    if (n_tensors) *n_tensors = 0;
    if (bytes) *bytes = 0;
    if (!p || !p->config || !p->out_dir)
        return evlm__fail(EVLM_ERR_ARG, "evlm_model_synth: config and out_dir are required");
    synth s = {.rng = p->seed, .sparse24 = p->sparse24};
    const char *dtype = p->dtype ? p->dtype : "bf16";
    if (!strcmp(dtype, "bf16"))
        s.type = EVLM_TYPE_BF16;
    else if (!strcmp(dtype, "f16"))
        s.type = EVLM_TYPE_F16;
    else if (!strcmp(dtype, "f32"))
        s.type = EVLM_TYPE_F32;
    else
        return evlm__fail(EVLM_ERR_ARG, "dtype must be bf16, f16 or f32, not '%s'", dtype);

    char *json;
    size_t len;
    EVLM_TRY(evlm_read_file(p->config, (size_t)16 << 20, &json, &len));
    evlm_decoder_config text;
    evlm_status st = evlm_decoder_config_parse(p->config, json, len, NULL, 0, &text);
    const evlm_family *f = st == EVLM_OK ? evlm__family_find(text.architecture) : NULL;
    if (st == EVLM_OK && !f)
        st = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported by synth",
                        p->config, text.architecture);
    const evlm_synth_cfg c = {
        .file = p->config, .json = json, .len = len, .text = &text, .text_only = p->text_only};
    if (st == EVLM_OK)
        st = f->synth ? f->synth(&c, add, &s)
                      : evlm__synth_decoder(&text, "model.", evlm__synth_qkv_bias(&text), add, &s);
    char path[4096];
    if (st == EVLM_OK) st = evlm_mkdir(p->out_dir);
    if (st == EVLM_OK) st = evlm_path_join(path, sizeof path, p->out_dir, "model.safetensors");
    if (st == EVLM_OK) st = evlm_safetensors_write(path, s.v, (size_t)s.n);
    /* a family with parts of its own whose hook took text_only: its decoder is a Llama one */
    if (st == EVLM_OK) st = write_files(p, &c, p->text_only && f->load);
    if (st == EVLM_OK && n_tensors) *n_tensors = s.n;
    if (st == EVLM_OK && bytes) *bytes = s.bytes;
    for (int i = 0; i < s.n; i++) {
        free(s.v[i].data);
        free(s.names[i]);
    }
    free(s.v);
    free(s.names);
    free(json);
    return st;
}
