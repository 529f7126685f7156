/*
 * cmd_synth.c - `evlm synth --config CONFIG.json -o OUT_DIR [--dtype bf16|f16|f32] [--text-only]
 * [--seed S]`: a random-weight model for a Hugging Face config, so benchmarks need no downloads.
 * Matrices ~ U(-a, a) with the std of N(0, 0.02), norms 1, biases 0 (deterministic per seed).
 * The config's folder provides the tokenizer, chat template and processor files, copied as they
 * are; without them a byte-level tokenizer (256 byte tokens, no merges) is synthesized.
 * --text-only writes just the language model of a VLM config as a Llama-style folder.
 * Supported: Llama-family decoders (Qwen2 gets its q/k/v biases), Idefics3 / SmolVLM and
 * Qwen2-VL. --tokenizer DIR takes the tokenizer files from another folder.
 */
#include "cli/cli.h"
#include "core/buf.h"
#include "core/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/quants.h"
#include "vision/qwen2vl_vit.h"
#include "vision/vision_config.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    evlm_tensor *v;
    char **names;
    int n, cap;
    evlm_type type;
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

/* kind: 'w' random matrix, 'n' ones, 'b' zeros. Shape in PyTorch order (outermost first). */
static void add(synth *s, const char *name, char kind, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, sizeof *s->v * (size_t)s->cap);
        s->names = realloc(s->names, sizeof *s->names * (size_t)s->cap);
        if (!s->v || !s->names) cli_die("out of memory");
    }
    int64_t dims[4] = {d0, d1, d2, d3};
    evlm_tensor *t = &s->v[s->n];
    memset(t, 0, sizeof *t);
    s->names[s->n] = strdup(name);
    t->name = s->names[s->n];
    t->type = kind == 'w' ? s->type : (s->type == EVLM_TYPE_F32 ? EVLM_TYPE_F32 : s->type);
    t->n_dims = nd;
    for (int i = 0; i < 4; i++) t->ne[i] = i < nd ? dims[nd - 1 - i] : 1;
    evlm_tensor_set_contiguous(t);
    size_t n = (size_t)evlm_tensor_nelements(t), es = evlm_type_size(t->type);
    t->data = malloc(n * es);
    if (!t->data) cli_die("out of memory for tensor %s (%zu MB)", name, n * es >> 20);
    const float a = 0.02f * sqrtf(3.0f); /* U(-a, a) has std 0.02 */
    float x[1024]; /* drawn in order, converted to the dtype a chunk at a time */
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        size_t m = n - i0 < 1024 ? n - i0 : 1024;
        for (size_t i = 0; i < m; i++)
            x[i] = kind == 'w' ? a * uniform(&s->rng) : kind == 'n' ? 1.0f : 0.0f;
        evlm_quantize_row(t->type, x, (char *)t->data + i0 * es, (int64_t)m);
    }
    s->bytes += n * es;
    s->n++;
}

static void text_tensors(synth *s, const evlm_llama_config *c, const char *p, bool qkv_bias) {
    char nm[256];
    const int64_t H = c->hidden_size, F = c->intermediate_size, QD = (int64_t)c->n_heads * c->head_dim,
                  KD = (int64_t)c->n_kv_heads * c->head_dim, V = c->vocab_size;
    snprintf(nm, sizeof nm, "%sembed_tokens.weight", p);
    add(s, nm, 'w', 2, V, H, 0, 0);
    for (int l = 0; l < c->n_layers; l++) {
#define L(suffix, kind, nd, a, b)                                                                  \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "%slayers.%d.%s", p, l, suffix);                                   \
        add(s, nm, kind, nd, a, b, 0, 0);                                                          \
    } while (0)
        L("input_layernorm.weight", 'n', 1, H, 0);
        L("post_attention_layernorm.weight", 'n', 1, H, 0);
        L("self_attn.q_proj.weight", 'w', 2, QD, H);
        L("self_attn.k_proj.weight", 'w', 2, KD, H);
        L("self_attn.v_proj.weight", 'w', 2, KD, H);
        L("self_attn.o_proj.weight", 'w', 2, H, QD);
        if (qkv_bias) {
            L("self_attn.q_proj.bias", 'b', 1, QD, 0);
            L("self_attn.k_proj.bias", 'b', 1, KD, 0);
            L("self_attn.v_proj.bias", 'b', 1, KD, 0);
        }
        L("mlp.gate_proj.weight", 'w', 2, F, H);
        L("mlp.up_proj.weight", 'w', 2, F, H);
        L("mlp.down_proj.weight", 'w', 2, H, F);
        if (c->mlp_bias) {
            L("mlp.gate_proj.bias", 'b', 1, F, 0);
            L("mlp.up_proj.bias", 'b', 1, F, 0);
            L("mlp.down_proj.bias", 'b', 1, H, 0);
        }
#undef L
    }
    snprintf(nm, sizeof nm, "%snorm.weight", p);
    add(s, nm, 'n', 1, H, 0, 0, 0);
    if (!c->tie_word_embeddings) add(s, "lm_head.weight", 'w', 2, V, H, 0, 0);
}

static void vision_tensors(synth *s, const evlm_vision_config *v) {
    char nm[256];
    const int64_t D = v->hidden_size, F = v->intermediate_size, P = v->patch_size, C = v->num_channels;
    const char *p = "model.vision_model.";
    snprintf(nm, sizeof nm, "%sembeddings.patch_embedding.weight", p);
    add(s, nm, 'w', 4, D, C, P, P);
    snprintf(nm, sizeof nm, "%sembeddings.patch_embedding.bias", p);
    add(s, nm, 'b', 1, D, 0, 0, 0);
    snprintf(nm, sizeof nm, "%sembeddings.position_embedding.weight", p);
    add(s, nm, 'w', 2, v->num_patches, D, 0, 0);
    static const char *lin[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int l = 0; l < v->n_layers; l++) {
        for (int k = 1; k <= 2; k++) {
            snprintf(nm, sizeof nm, "%sencoder.layers.%d.layer_norm%d.weight", p, l, k);
            add(s, nm, 'n', 1, D, 0, 0, 0);
            snprintf(nm, sizeof nm, "%sencoder.layers.%d.layer_norm%d.bias", p, l, k);
            add(s, nm, 'b', 1, D, 0, 0, 0);
        }
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "%sencoder.layers.%d.self_attn.%s.weight", p, l, lin[k]);
            add(s, nm, 'w', 2, D, D, 0, 0);
            snprintf(nm, sizeof nm, "%sencoder.layers.%d.self_attn.%s.bias", p, l, lin[k]);
            add(s, nm, 'b', 1, D, 0, 0, 0);
        }
        snprintf(nm, sizeof nm, "%sencoder.layers.%d.mlp.fc1.weight", p, l);
        add(s, nm, 'w', 2, F, D, 0, 0);
        snprintf(nm, sizeof nm, "%sencoder.layers.%d.mlp.fc1.bias", p, l);
        add(s, nm, 'b', 1, F, 0, 0, 0);
        snprintf(nm, sizeof nm, "%sencoder.layers.%d.mlp.fc2.weight", p, l);
        add(s, nm, 'w', 2, D, F, 0, 0);
        snprintf(nm, sizeof nm, "%sencoder.layers.%d.mlp.fc2.bias", p, l);
        add(s, nm, 'b', 1, D, 0, 0, 0);
    }
    snprintf(nm, sizeof nm, "%spost_layernorm.weight", p);
    add(s, nm, 'n', 1, D, 0, 0, 0);
    snprintf(nm, sizeof nm, "%spost_layernorm.bias", p);
    add(s, nm, 'b', 1, D, 0, 0, 0);
    add(s, "model.connector.modality_projection.proj.weight", 'w', 2, v->text_hidden_size,
        D * v->scale_factor * v->scale_factor, 0, 0);
}

/* Qwen2-VL's tower: the Conv3d kernel [D, C, T, p, p] is written as [D, C, T, p*p] (the same
 * bytes; a 5-D tensor loads folded to exactly this view). */
static void qwen2vl_tensors(synth *s, const evlm_qwen2vl_vision_config *v) {
    char nm[256];
    const int64_t D = v->embed_dim, F = v->mlp_dim, P = v->patch_size, T = v->temporal_patch_size,
                  C = v->in_channels, MD = v->merged_dim;
    add(s, "visual.patch_embed.proj.weight", 'w', 4, D, C, T, P * P);
    for (int l = 0; l < v->depth; l++) {
#define V(suffix, kind, nd, a, b)                                                                  \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "visual.blocks.%d.%s", l, suffix);                                 \
        add(s, nm, kind, nd, a, b, 0, 0);                                                          \
    } while (0)
        V("norm1.weight", 'n', 1, D, 0);
        V("norm1.bias", 'b', 1, D, 0);
        V("norm2.weight", 'n', 1, D, 0);
        V("norm2.bias", 'b', 1, D, 0);
        V("attn.qkv.weight", 'w', 2, 3 * D, D);
        V("attn.qkv.bias", 'b', 1, 3 * D, 0);
        V("attn.proj.weight", 'w', 2, D, D);
        V("attn.proj.bias", 'b', 1, D, 0);
        V("mlp.fc1.weight", 'w', 2, F, D);
        V("mlp.fc1.bias", 'b', 1, F, 0);
        V("mlp.fc2.weight", 'w', 2, D, F);
        V("mlp.fc2.bias", 'b', 1, D, 0);
#undef V
    }
    add(s, "visual.merger.ln_q.weight", 'n', 1, D, 0, 0, 0);
    add(s, "visual.merger.ln_q.bias", 'b', 1, D, 0, 0, 0);
    add(s, "visual.merger.mlp.0.weight", 'w', 2, MD, MD, 0, 0);
    add(s, "visual.merger.mlp.0.bias", 'b', 1, MD, 0, 0, 0);
    add(s, "visual.merger.mlp.2.weight", 'w', 2, v->hidden_size, MD, 0, 0);
    add(s, "visual.merger.mlp.2.bias", 'b', 1, v->hidden_size, 0, 0, 0);
}

static void copy_if_present(const char *src_dir, const char *out, const char *name) {
    char a[4096], b[4096];
    cli_check(evlm_path_join(a, sizeof a, src_dir, name));
    if (!evlm_file_exists(a)) return;
    char *data;
    size_t n;
    cli_check(evlm_read_file(a, (size_t)1 << 30, &data, &n));
    cli_check(evlm_path_join(b, sizeof b, out, name));
    cli_check(evlm_write_file_atomic(b, data, n));
    free(data);
}

/* A byte-level BPE tokenizer of the 256 byte symbols (GPT-2's byte-to-unicode map). */
static void write_byte_tokenizer(const char *out) {
    evlm_str j = {0};
    cli_check(evlm_str_appendz(&j, "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null, "
                                   "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                                   "\"trim_offsets\": true, \"use_regex\": true}, \"post_processor\": null, "
                                   "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                                   "\"trim_offsets\": true, \"use_regex\": true}, \"model\": {\"type\": \"BPE\", "
                                   "\"dropout\": null, \"unk_token\": null, \"byte_fallback\": false, \"vocab\": {"));
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 256 + extra++;
        char u[8];
        if (cp < 0x80) snprintf(u, sizeof u, "%c", cp);
        else snprintf(u, sizeof u, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", cp);
        cli_check(evlm_str_appendf(&j, "%s\"%s\": %d", b ? ", " : "", u, b));
    }
    cli_check(evlm_str_appendz(&j, "}, \"merges\": []}}\n"));
    char path[4096];
    cli_check(evlm_path_join(path, sizeof path, out, "tokenizer.json"));
    cli_check(evlm_write_file_atomic(path, j.data, j.len));
    evlm_str_free(&j);
}

int evlm_cmd_synth(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *dtype = "bf16", *tok_dir = NULL;
    bool text_only = false;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) config = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dtype")) dtype = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--text-only")) text_only = true;
        else if (!strcmp(a, "--tokenizer")) tok_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)cli_int(argc, argv, &i, 0, 1 << 30);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm synth --config CONFIG.json -o OUT_DIR [--dtype bf16|f16|f32] [--text-only] [--seed S]\n"
                   "                  [--tokenizer DIR]   (tokenizer files from DIR instead of the config's folder)\n");
            return 0;
        } else cli_die("unknown option '%s'", a);
    }
    if (!config || !out) cli_die("need --config CONFIG.json and -o OUT_DIR");
    synth s = {0};
    s.type = evlm_type_from_gguf_name(dtype); /* the float types by their ggml names */
    if (!evlm_type_is_file_float(s.type))
        cli_die("--dtype must be bf16, f16 or f32, not '%s'", dtype);
    s.rng = seed;

    char *json;
    size_t len;
    cli_check(evlm_read_file(config, (size_t)16 << 20, &json, &len));
    evlm_llama_config c;
    cli_check(evlm_llama_config_parse(config, json, len, NULL, 0, &c));
    bool qwen2vl = strstr(c.architecture, "Qwen2VL") != NULL;
    bool vlm = strstr(c.architecture, "Idefics3") || strstr(c.architecture, "SmolVLM");
    bool known = vlm || qwen2vl || strstr(c.architecture, "Llama") || strstr(c.architecture, "Qwen2ForCausalLM") ||
                 strstr(c.architecture, "Mistral");
    if (!known) cli_die("%s: architecture \"%s\" is not supported by synth", config, c.architecture);
    evlm_vision_config vc;
    if (vlm && !text_only) cli_check(evlm_vision_config_parse(config, json, len, &vc));
    evlm_qwen2vl_vision_config qvc;
    if (qwen2vl && !text_only) cli_check(evlm_qwen2vl_vision_config_parse(config, json, len, &qvc));
    bool qkv_bias = c.attention_bias || !strcmp(c.model_type, "qwen2") || qwen2vl;
    text_tensors(&s, &c, vlm && !text_only ? "model.text_model." : "model.", qkv_bias);
    if (vlm && !text_only) vision_tensors(&s, &vc);
    if (qwen2vl && !text_only) qwen2vl_tensors(&s, &qvc);
    if (qwen2vl && text_only) cli_die("--text-only: write the Qwen2 text config itself (M-RoPE needs the VLM)");

    cli_check(evlm_mkdir(out));
    char path[4096];
    cli_check(evlm_path_join(path, sizeof path, out, "model.safetensors"));
    fprintf(stderr, "synth: writing %d tensors, %.1f MB (%s)\n", s.n, (double)s.bytes / 1e6, dtype);
    cli_check(evlm_safetensors_write(path, s.v, (size_t)s.n));

    char cfgdir[4096];
    snprintf(cfgdir, sizeof cfgdir, "%s", config);
    const char *src_dir = dirname(cfgdir);
    cli_check(evlm_path_join(path, sizeof path, out, "config.json"));
    if (vlm && text_only) {
        evlm_str j = {0};
        cli_check(evlm_str_appendf(&j,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
            "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, "
            "\"rms_norm_eps\": %g, \"rope_theta\": %.17g, \"tie_word_embeddings\": %s, \"attention_bias\": %s, "
            "\"mlp_bias\": %s, \"hidden_act\": \"silu\", \"torch_dtype\": \"%s\"",
            c.hidden_size, c.intermediate_size, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size,
            c.max_position_embeddings, (double)c.rms_norm_eps, c.rope_theta, c.tie_word_embeddings ? "true" : "false",
            qkv_bias ? "true" : "false", c.mlp_bias ? "true" : "false", c.dtype[0] ? c.dtype : "bfloat16"));
        if (c.bos_token_id >= 0) cli_check(evlm_str_appendf(&j, ", \"bos_token_id\": %d", c.bos_token_id));
        if (c.n_eos) cli_check(evlm_str_appendf(&j, ", \"eos_token_id\": %d", c.eos_token_ids[0]));
        cli_check(evlm_str_appendz(&j, "}\n"));
        cli_check(evlm_write_file_atomic(path, j.data, j.len));
        evlm_str_free(&j);
    } else {
        cli_check(evlm_write_file_atomic(path, json, len));
    }
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "added_tokens.json", "chat_template.json", "chat_template.jinja",
                                  "generation_config.json", "processor_config.json",
                                  "preprocessor_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (text_only && (strstr(files[i], "processor") != NULL)) continue;
        bool tok_file = strstr(files[i], "token") || strstr(files[i], "chat_template");
        copy_if_present(tok_dir && tok_file ? tok_dir : src_dir, out, files[i]);
    }
    cli_check(evlm_path_join(path, sizeof path, out, "tokenizer.json"));
    if (!evlm_file_exists(path)) write_byte_tokenizer(out);
    fprintf(stderr, "synth: wrote %s\n", out);
    for (int i = 0; i < s.n; i++) {
        free(s.v[i].data);
        free(s.names[i]);
    }
    free(s.v);
    free(s.names);
    free(json);
    return 0;
}
