/*
 * gguf_llamacpp.c - a GGUF model (and its mmproj) as the Hugging Face files evlm's loaders read
 * (see gguf_llamacpp.h): verbatim when evlm wrote them, else rebuilt from llama.cpp's metadata.
 *
 * The rebuilt files hold what the loaders read and no more. Their meaning follows llama.cpp:
 * llama-model.cpp / llama-hparams (<arch>.* keys), llama-vocab.cpp (tokenizer.ggml.*, the
 * pre-tokenizer names' regexes), tools/mtmd/clip.cpp (clip.* keys); the Hugging Face side is
 * what transformers' config classes and tokenizers' JSON call the same things.
 */
#include "io/gguf_llamacpp.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "io/gguf_mmproj.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_SYNTH = 5 };
static const char *const k_synth[N_SYNTH] = {"config.json", "tokenizer.json",
                                             "tokenizer_config.json", "chat_template.jinja",
                                             "processor_config.json"};

struct evlm_llamacpp {
    evlm_gguf *g, *mm;
    bool synth;          /* no evlm.file.config.json: files rebuilt from the metadata */
    char *text[N_SYNTH]; /* rebuilt files, made on first use */
    evlm_status st[N_SYNTH];
    char msg[N_SYNTH][512]; /* why a file could not be rebuilt */
    bool made[N_SYNTH];
};

/* ---- small readers of optional keys -------------------------------------------------------- */

static bool has(const evlm_gguf *g, const char *key) {
    return g && evlm_gguf_find_key(g, key) >= 0;
}

static evlm_status opt_u32(const evlm_gguf *g, const char *key, uint32_t dflt, uint32_t *v) {
    *v = dflt;
    return has(g, key) ? evlm_gguf_get_u32(g, key, v) : EVLM_OK;
}

static evlm_status opt_f32(const evlm_gguf *g, const char *key, float dflt, float *v) {
    *v = dflt;
    return has(g, key) ? evlm_gguf_get_f32(g, key, v) : EVLM_OK;
}

/* A string key as a NUL-terminated copy in buf (cap bytes). */
static evlm_status get_strz(const evlm_gguf *g, const char *key, char *buf, size_t cap) {
    const char *s;
    size_t n;
    EVLM_TRY(evlm_gguf_get_str(g, key, &s, &n));
    if (n >= cap || memchr(s, 0, n))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s' is too long", evlm_gguf_path(g), key);
    memcpy(buf, s, n);
    buf[n] = 0;
    return EVLM_OK;
}

/* The id of token `tok` in tokenizer.ggml.tokens, or -1. */
static int32_t token_id(const evlm_gguf *g, const char *tok) {
    evlm_gguf_vtype el;
    size_t n, len = strlen(tok), l;
    const char *s;
    if (evlm_gguf_get_arr_n(g, "tokenizer.ggml.tokens", &el, &n) != EVLM_OK) {
        evlm__clear_error();
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (evlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &l) == EVLM_OK && l == len &&
            !memcmp(s, tok, len))
            return (int32_t)i;
    evlm__clear_error();
    return -1;
}

static char *print_json(cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

/* ---- config.json ------------------------------------------------------------------------------
 */

static evlm_status text_config(const evlm_gguf *g, const char *arch, cJSON *o) {
    char k[128];
    uint32_t n_embd, n_layer, n_ff, n_head, n_kv, ctx, hd, vocab;
    float eps, theta;
    evlm_gguf_vtype el;
    size_t n_tok = 0;
#define KEY(name) (snprintf(k, sizeof k, "%s." name, arch), k)
    EVLM_TRY(evlm_gguf_get_u32(g, KEY("embedding_length"), &n_embd));
    EVLM_TRY(evlm_gguf_get_u32(g, KEY("block_count"), &n_layer));
    EVLM_TRY(evlm_gguf_get_u32(g, KEY("feed_forward_length"), &n_ff));
    EVLM_TRY(evlm_gguf_get_u32(g, KEY("attention.head_count"), &n_head));
    EVLM_TRY(opt_u32(g, KEY("attention.head_count_kv"), n_head, &n_kv));
    EVLM_TRY(opt_u32(g, KEY("context_length"), 2048, &ctx));
    EVLM_TRY(evlm_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &eps));
    EVLM_TRY(opt_f32(g, KEY("rope.freq_base"), 10000.0f, &theta));
    if (n_head == 0 || n_head > 65536 || n_embd % n_head)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: head count %u does not divide %u",
                          evlm_gguf_path(g), n_head, n_embd);
    EVLM_TRY(opt_u32(g, KEY("attention.key_length"), n_embd / n_head, &hd));
    EVLM_TRY(evlm_gguf_get_arr_n(g, "tokenizer.ggml.tokens", &el, &n_tok));
    EVLM_TRY(opt_u32(g, KEY("vocab_size"), (uint32_t)n_tok, &vocab));
    const evlm_tensor *emb = evlm_gguf_tensor_find(g, "token_embd.weight");
    if (emb && emb->n_dims == 2 && emb->ne[1] > (int64_t)vocab) vocab = (uint32_t)emb->ne[1];
    /* no "dtype": llama.cpp's metadata does not say in which precision the model was trained,
     * so RoPE is computed in f32 as llama.cpp does (a Hugging Face folder saved as bf16 gets
     * transformers' bf16 RoPE tables: the logits then differ by float rounding) */
    bool qwen = !strncmp(arch, "qwen2", 5);
    cJSON_AddStringToObject(o, "model_type",
                            qwen ? (strcmp(arch, "qwen2vl") ? "qwen2" : "qwen2_vl_text") : "llama");
    cJSON_AddNumberToObject(o, "hidden_size", n_embd);
    cJSON_AddNumberToObject(o, "intermediate_size", n_ff);
    cJSON_AddNumberToObject(o, "num_hidden_layers", n_layer);
    cJSON_AddNumberToObject(o, "num_attention_heads", n_head);
    cJSON_AddNumberToObject(o, "num_key_value_heads", n_kv);
    cJSON_AddNumberToObject(o, "head_dim", hd);
    cJSON_AddNumberToObject(o, "max_position_embeddings", ctx);
    cJSON_AddNumberToObject(o, "rms_norm_eps", eps);
    cJSON_AddNumberToObject(o, "vocab_size", vocab);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "attention_bias",
                          evlm_gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", !evlm_gguf_tensor_find(g, "output.weight"));
    uint32_t id;
    if (has(g, "tokenizer.ggml.bos_token_id")) {
        EVLM_TRY(evlm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id));
        cJSON_AddNumberToObject(o, "bos_token_id", id);
    }
    if (has(g, "tokenizer.ggml.eos_token_id")) {
        EVLM_TRY(evlm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id));
        cJSON_AddNumberToObject(o, "eos_token_id", id);
    }
    cJSON *rope = cJSON_AddObjectToObject(o, "rope_parameters");
    cJSON_AddNumberToObject(rope, "rope_theta", theta);
    cJSON_AddStringToObject(rope, "rope_type", "default");
    if (has(g, KEY("rope.scaling.type"))) {
        char type[32];
        float f;
        EVLM_TRY(get_strz(g, k, type, sizeof type));
        EVLM_TRY(evlm_gguf_get_f32(g, KEY("rope.scaling.factor"), &f));
        if (strcmp(type, "linear") != 0)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: rope scaling '%s' is not supported",
                              evlm_gguf_path(g), type);
        cJSON_ReplaceItemInObject(rope, "rope_type", cJSON_CreateString("linear"));
        cJSON_AddNumberToObject(rope, "factor", f);
    }
    if (!strcmp(arch, "qwen2vl")) {
        int32_t sec[4] = {0};
        EVLM_TRY(evlm_gguf_get_arr_i32(g, KEY("rope.dimension_sections"), sec, 4));
        cJSON_AddItemToObject(rope, "mrope_section", cJSON_CreateIntArray(sec, 3));
        cJSON_AddStringToObject(rope, "type", "mrope");
    }
#undef KEY
    return EVLM_OK;
}

static evlm_status make_config(const evlm_llamacpp *l, char **out) {
    char arch[32];
    EVLM_TRY(get_strz(l->g, "general.architecture", arch, sizeof arch));
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "qwen2vl"))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: architecture '%s' is not supported (llama, qwen2, qwen2vl)",
                          evlm_gguf_path(l->g), arch);
    cJSON *root = cJSON_CreateObject(), *text = cJSON_CreateObject();
    evlm_status st = text_config(l->g, arch, text);
    const evlm_gguf *mm = l->mm;
    evlm_mmproj_kind kind = EVLM_MMPROJ_NONE;
    if (st == EVLM_OK && mm) {
        const char *pt;
        size_t pn;
        st = evlm_gguf_get_str(mm, "clip.projector_type", &pt, &pn);
        if (st == EVLM_OK) kind = evlm_mmproj_kind_from_name(pt, pn);
    }
    uint32_t hidden = 0, ff = 0, layers = 0, heads = 0, image = 0, patch = 0, sf = 2;
    float eps = 1e-6f;
    if (st == EVLM_OK && mm) st = evlm_gguf_get_u32(mm, "clip.vision.embedding_length", &hidden);
    if (st == EVLM_OK && mm) st = evlm_gguf_get_u32(mm, "clip.vision.feed_forward_length", &ff);
    if (st == EVLM_OK && mm) st = evlm_gguf_get_u32(mm, "clip.vision.block_count", &layers);
    if (st == EVLM_OK && mm) st = evlm_gguf_get_u32(mm, "clip.vision.attention.head_count", &heads);
    if (st == EVLM_OK && mm) st = evlm_gguf_get_u32(mm, "clip.vision.image_size", &image);
    if (st == EVLM_OK && mm) st = evlm_gguf_get_u32(mm, "clip.vision.patch_size", &patch);
    if (st == EVLM_OK && mm)
        st = opt_f32(mm, "clip.vision.attention.layer_norm_epsilon", 1e-6f, &eps);
    if (st == EVLM_OK && kind == EVLM_MMPROJ_IDEFICS3) {
        st = opt_u32(mm, "clip.vision.projector.scale_factor", 2, &sf);
        cJSON_AddItemToObject(
            root, "architectures",
            cJSON_CreateStringArray((const char *[]){"Idefics3ForConditionalGeneration"}, 1));
        cJSON_AddStringToObject(root, "model_type", "idefics3");
        cJSON_AddNumberToObject(root, "image_token_id", token_id(l->g, "<image>"));
        cJSON_AddNumberToObject(root, "scale_factor", sf);
        cJSON *v = cJSON_AddObjectToObject(root, "vision_config");
        cJSON_AddStringToObject(v, "model_type", "idefics3_vision");
        cJSON_AddNumberToObject(v, "hidden_size", hidden);
        cJSON_AddNumberToObject(v, "intermediate_size", ff);
        cJSON_AddNumberToObject(v, "num_hidden_layers", layers);
        cJSON_AddNumberToObject(v, "num_attention_heads", heads);
        cJSON_AddNumberToObject(v, "image_size", image);
        cJSON_AddNumberToObject(v, "patch_size", patch);
        cJSON_AddNumberToObject(v, "layer_norm_eps", eps);
        cJSON_AddNumberToObject(v, "num_channels", 3);
        cJSON_AddStringToObject(v, "hidden_act", "gelu_pytorch_tanh");
    } else if (st == EVLM_OK && kind == EVLM_MMPROJ_QWEN2VL) {
        uint32_t proj = 0, merge = 2;
        st = evlm_gguf_get_u32(mm, "clip.vision.projection_dim", &proj);
        if (st == EVLM_OK) st = opt_u32(mm, "clip.vision.spatial_merge_size", 2, &merge);
        /* the MLP width from its tensor: the converter writes the language model's width as
         * feed_forward_length */
        const evlm_tensor *up = evlm_gguf_tensor_find(mm, "v.blk.0.ffn_up.weight");
        if (st == EVLM_OK && (!up || up->n_dims != 2 || hidden == 0 || up->ne[1] % hidden))
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: no v.blk.0.ffn_up.weight of a whole MLP ratio",
                            evlm_gguf_path(mm));
        cJSON_AddItemToObject(
            root, "architectures",
            cJSON_CreateStringArray((const char *[]){"Qwen2VLForConditionalGeneration"}, 1));
        cJSON_AddStringToObject(root, "model_type", "qwen2_vl");
        cJSON_AddNumberToObject(root, "image_token_id", token_id(l->g, "<|image_pad|>"));
        cJSON_AddNumberToObject(root, "vision_start_token_id", token_id(l->g, "<|vision_start|>"));
        cJSON_AddNumberToObject(root, "vision_end_token_id", token_id(l->g, "<|vision_end|>"));
        cJSON *v = cJSON_AddObjectToObject(root, "vision_config");
        cJSON_AddStringToObject(v, "model_type", "qwen2_vl_vision");
        cJSON_AddNumberToObject(v, "depth", layers);
        cJSON_AddNumberToObject(v, "embed_dim", hidden);
        cJSON_AddNumberToObject(v, "hidden_size", proj);
        cJSON_AddNumberToObject(v, "mlp_ratio", up && hidden ? (double)(up->ne[1] / hidden) : 4);
        cJSON_AddNumberToObject(v, "num_heads", heads);
        cJSON_AddNumberToObject(v, "patch_size", patch);
        cJSON_AddNumberToObject(v, "spatial_merge_size", merge);
        cJSON_AddNumberToObject(v, "temporal_patch_size", 2);
        cJSON_AddNumberToObject(v, "in_channels", 3);
        cJSON_AddStringToObject(v, "hidden_act", "quick_gelu");
    } else if (st == EVLM_OK && mm) {
        st = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: projector type not supported",
                        evlm_gguf_path(mm));
    } else if (st == EVLM_OK) {
        const char *a = !strcmp(arch, "llama") ? "LlamaForCausalLM" : "Qwen2ForCausalLM";
        if (!strcmp(arch, "qwen2vl"))
            st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                            "%s: a qwen2vl language model needs its mmproj file (--mmproj)",
                            evlm_gguf_path(l->g));
        cJSON_AddItemToObject(root, "architectures", cJSON_CreateStringArray(&a, 1));
    }
    if (st == EVLM_OK && !mm) { /* a text model: the text config at the top */
        cJSON *e;
        cJSON_ArrayForEach(e, text) cJSON_AddItemToObject(root, e->string, cJSON_Duplicate(e, 1));
        cJSON_Delete(text);
    } else {
        if (st == EVLM_OK) {
            const cJSON *tie = cJSON_GetObjectItemCaseSensitive(text, "tie_word_embeddings");
            cJSON_AddBoolToObject(root, "tie_word_embeddings", cJSON_IsTrue(tie));
        }
        cJSON_AddItemToObject(root, "text_config", text);
    }
    if (st != EVLM_OK) {
        cJSON_Delete(root);
        return st;
    }
    *out = print_json(root);
    return *out ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
}

/* ---- tokenizer.json ------------------------------------------------------------------------- */

enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER = 4, TOK_UNUSED = 5 };

/* The pre-tokenizer (and normalizer) of a llama.cpp pre-tokenizer name (llama-vocab.cpp). */
static evlm_status add_pretok(const evlm_gguf *g, const char *pre, cJSON *root) {
    static const char k_qwen2[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static const char k_llama3[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "trim_offsets", true);
    bool split = !strcmp(pre, "qwen2") || !strcmp(pre, "llama-bpe");
    cJSON_AddBoolToObject(bl, "use_regex", !split);
    if (!strcmp(pre, "gpt-2") || !strcmp(pre, "default")) {
        cJSON_AddItemToObject(root, "normalizer", cJSON_CreateNull());
        cJSON_AddItemToObject(root, "pre_tokenizer", bl);
        return EVLM_OK;
    }
    if (!strcmp(pre, "smollm") || split) {
        cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(),
              *first = cJSON_CreateObject();
        cJSON_AddStringToObject(seq, "type", "Sequence");
        if (split) {
            cJSON_AddStringToObject(first, "type", "Split");
            cJSON *pat = cJSON_AddObjectToObject(first, "pattern");
            cJSON_AddStringToObject(pat, "Regex", !strcmp(pre, "qwen2") ? k_qwen2 : k_llama3);
            cJSON_AddStringToObject(first, "behavior", "Isolated");
            cJSON_AddBoolToObject(first, "invert", false);
        } else {
            cJSON_AddStringToObject(first, "type", "Digits");
            cJSON_AddBoolToObject(first, "individual_digits", true);
        }
        cJSON_AddItemToArray(list, first);
        cJSON_AddItemToArray(list, bl);
        cJSON_AddItemToObject(seq, "pretokenizers", list);
        if (!strcmp(pre, "qwen2")) {
            cJSON *nfc = cJSON_CreateObject();
            cJSON_AddStringToObject(nfc, "type", "NFC");
            cJSON_AddItemToObject(root, "normalizer", nfc);
        } else {
            cJSON_AddItemToObject(root, "normalizer", cJSON_CreateNull());
        }
        cJSON_AddItemToObject(root, "pre_tokenizer", seq);
        return EVLM_OK;
    }
    cJSON_Delete(bl);
    return evlm__fail(EVLM_ERR_UNSUPPORTED,
                      "%s: tokenizer.ggml.pre '%s' is not supported (gpt-2, default, smollm, "
                      "qwen2, llama-bpe)",
                      evlm_gguf_path(g), pre);
}

static evlm_status make_tokenizer(const evlm_gguf *g, char **out) {
    char model[32], pre[64] = "default";
    EVLM_TRY(get_strz(g, "tokenizer.ggml.model", model, sizeof model));
    if (strcmp(model, "gpt2") != 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: tokenizer.ggml.model '%s': only gpt2 (byte-level BPE) vocabularies "
                          "are rebuilt",
                          evlm_gguf_path(g), model);
    if (has(g, "tokenizer.ggml.pre")) EVLM_TRY(get_strz(g, "tokenizer.ggml.pre", pre, sizeof pre));
    evlm_gguf_vtype el;
    size_t n, nm = 0, nt = 0;
    EVLM_TRY(evlm_gguf_get_arr_n(g, "tokenizer.ggml.tokens", &el, &n));
    if (el != EVLM_GGUF_STRING || n == 0 || n > (16u << 20))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens: not 1..16M strings",
                          evlm_gguf_path(g));
    int32_t *types = calloc(n, sizeof *types);
    if (!types) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = EVLM_OK;
    if (has(g, "tokenizer.ggml.token_type")) {
        st = evlm_gguf_get_arr_n(g, "tokenizer.ggml.token_type", &el, &nt);
        if (st == EVLM_OK && nt != n)
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: %zu token types for %zu tokens",
                            evlm_gguf_path(g), nt, n);
        if (st == EVLM_OK) st = evlm_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", types, n);
    } else {
        for (size_t i = 0; i < n; i++) types[i] = TOK_NORMAL;
    }
    if (st == EVLM_OK) st = evlm_gguf_get_arr_n(g, "tokenizer.ggml.merges", &el, &nm);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *mdl = cJSON_CreateObject();
    cJSON_AddStringToObject(mdl, "type", "BPE");
    cJSON_AddBoolToObject(mdl, "fuse_unk", false);
    cJSON_AddBoolToObject(mdl, "byte_fallback", false);
    cJSON_AddBoolToObject(mdl, "ignore_merges", false);
    cJSON *vocab = cJSON_AddObjectToObject(mdl, "vocab");
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        const char *s;
        size_t len;
        st = evlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len);
        if (st != EVLM_OK) break;
        if (types[i] == TOK_UNUSED) continue; /* padding: no text maps to it */
        if (len + 1 > cap) {
            cap = 2 * (len + 1);
            char *nb = realloc(buf, cap);
            if (!nb) {
                st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        memcpy(buf, s, len);
        buf[len] = 0;
        if (strlen(buf) != len) {
            st =
                evlm__fail(EVLM_ERR_FORMAT, "%s: token %zu holds a NUL byte", evlm_gguf_path(g), i);
            break;
        }
        if (!cJSON_GetObjectItemCaseSensitive(vocab, buf))
            cJSON_AddNumberToObject(vocab, buf, (double)i);
        if (types[i] == TOK_CONTROL || types[i] == TOK_USER) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", buf);
            cJSON_AddBoolToObject(a, "single_word", false);
            cJSON_AddBoolToObject(a, "lstrip", false);
            cJSON_AddBoolToObject(a, "rstrip", false);
            cJSON_AddBoolToObject(a, "normalized", types[i] == TOK_USER);
            cJSON_AddBoolToObject(a, "special", types[i] == TOK_CONTROL);
            cJSON_AddItemToArray(added, a);
        }
    }
    cJSON *merges = cJSON_AddArrayToObject(mdl, "merges");
    for (size_t i = 0; i < nm && st == EVLM_OK; i++) {
        const char *s;
        size_t len;
        st = evlm_gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &s, &len);
        if (st != EVLM_OK) break;
        char *m = malloc(len + 1);
        if (!m) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(m, s, len);
        m[len] = 0;
        cJSON_AddItemToArray(merges, cJSON_CreateString(m));
        free(m);
    }
    free(buf);
    free(types);
    if (st == EVLM_OK) st = add_pretok(g, pre, root);
    bool add_bos = false;
    if (st == EVLM_OK && has(g, "tokenizer.ggml.add_bos_token"))
        st = evlm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    uint32_t bos = 0;
    if (st == EVLM_OK && add_bos) st = evlm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos);
    if (st == EVLM_OK && add_bos && bos < n) { /* "<bos> $A" */
        const char *s;
        size_t len;
        st = evlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", bos, &s, &len);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len < 255 ? len : 255), s);
        cJSON *pp = cJSON_CreateObject(), *single = cJSON_CreateArray();
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        cJSON *sp = cJSON_CreateObject(), *spi = cJSON_AddObjectToObject(sp, "SpecialToken");
        cJSON_AddStringToObject(spi, "id", name);
        cJSON_AddNumberToObject(spi, "type_id", 0);
        cJSON *sq = cJSON_CreateObject(), *sqi = cJSON_AddObjectToObject(sq, "Sequence");
        cJSON_AddStringToObject(sqi, "id", "A");
        cJSON_AddNumberToObject(sqi, "type_id", 0);
        cJSON_AddItemToArray(single, sp);
        cJSON_AddItemToArray(single, sq);
        cJSON_AddItemToObject(pp, "single", single);
        cJSON *sts = cJSON_AddObjectToObject(pp, "special_tokens");
        cJSON *e = cJSON_AddObjectToObject(sts, name);
        cJSON_AddStringToObject(e, "id", name);
        cJSON *ids = cJSON_CreateArray();
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(bos));
        cJSON_AddItemToObject(e, "ids", ids);
        cJSON *tokens = cJSON_CreateArray();
        cJSON_AddItemToArray(tokens, cJSON_CreateString(name));
        cJSON_AddItemToObject(e, "tokens", tokens);
        cJSON_AddItemToObject(root, "post_processor", pp);
    } else if (st == EVLM_OK) {
        cJSON_AddItemToObject(root, "post_processor", cJSON_CreateNull());
    }
    cJSON *dec = cJSON_CreateObject();
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", true);
    cJSON_AddBoolToObject(dec, "trim_offsets", true);
    cJSON_AddBoolToObject(dec, "use_regex", true);
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddItemToObject(root, "model", mdl);
    if (st != EVLM_OK) {
        cJSON_Delete(root);
        return st;
    }
    *out = print_json(root);
    return *out ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
}

/* bos_token / eos_token strings (chat templates use them). */
static evlm_status make_tokenizer_config(const evlm_gguf *g, char **out) {
    cJSON *root = cJSON_CreateObject();
    static const char *const keys[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token"},
                                          {"tokenizer.ggml.eos_token_id", "eos_token"}};
    for (int k = 0; k < 2; k++) {
        uint32_t id;
        const char *s;
        size_t len;
        if (!has(g, keys[k][0])) continue;
        evlm_status st = evlm_gguf_get_u32(g, keys[k][0], &id);
        if (st == EVLM_OK) st = evlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", id, &s, &len);
        if (st != EVLM_OK) {
            cJSON_Delete(root);
            return st;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len < 255 ? len : 255), s);
        cJSON_AddStringToObject(root, keys[k][1], name);
    }
    *out = print_json(root);
    return *out ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
}

static evlm_status make_template(const evlm_gguf *g, char **out) {
    const char *s;
    size_t n;
    if (!has(g, "tokenizer.chat_template"))
        return evlm__fail(EVLM_ERR_IO, "%s: no tokenizer.chat_template", evlm_gguf_path(g));
    EVLM_TRY(evlm_gguf_get_str(g, "tokenizer.chat_template", &s, &n));
    if (memchr(s, 0, n))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tokenizer.chat_template holds a NUL byte",
                          evlm_gguf_path(g));
    *out = malloc(n + 1);
    if (!*out) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    memcpy(*out, s, n);
    (*out)[n] = 0;
    return EVLM_OK;
}

/* ---- processor_config.json ------------------------------------------------------------------- */

static evlm_status make_processor(const evlm_gguf *mm, char **out) {
    if (!mm) return evlm__fail(EVLM_ERR_IO, "no mmproj file: no image processor");
    const char *pt;
    size_t pn;
    EVLM_TRY(evlm_gguf_get_str(mm, "clip.projector_type", &pt, &pn));
    evlm_mmproj_kind kind = evlm_mmproj_kind_from_name(pt, pn);
    float mean[3], std[3];
    uint32_t image, patch;
    EVLM_TRY(evlm_gguf_get_arr_f32(mm, "clip.vision.image_mean", mean, 3));
    EVLM_TRY(evlm_gguf_get_arr_f32(mm, "clip.vision.image_std", std, 3));
    EVLM_TRY(evlm_gguf_get_u32(mm, "clip.vision.image_size", &image));
    EVLM_TRY(evlm_gguf_get_u32(mm, "clip.vision.patch_size", &patch));
    if (patch == 0 || image == 0 || image % patch)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: image size %u is not a multiple of patch size %u",
                          evlm_gguf_path(mm), image, patch);
    cJSON *root = cJSON_CreateObject(), *ip = cJSON_AddObjectToObject(root, "image_processor");
    cJSON_AddBoolToObject(ip, "do_convert_rgb", true);
    cJSON_AddBoolToObject(ip, "do_resize", true);
    cJSON_AddBoolToObject(ip, "do_rescale", true);
    cJSON_AddBoolToObject(ip, "do_normalize", true);
    cJSON_AddNumberToObject(ip, "rescale_factor", 1.0 / 255.0);
    cJSON_AddItemToObject(ip, "image_mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(ip, "image_std", cJSON_CreateFloatArray(std, 3));
    evlm_status st = EVLM_OK;
    if (kind == EVLM_MMPROJ_IDEFICS3) {
        uint32_t sf = 2, edge = image;
        st = opt_u32(mm, "clip.vision.projector.scale_factor", 2, &sf);
        if (st == EVLM_OK) st = opt_u32(mm, "clip.vision.preproc_image_size", image, &edge);
        if (st == EVLM_OK && (sf == 0 || (image / patch) % sf))
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: scale factor %u does not divide %u patches",
                            evlm_gguf_path(mm), sf, image / patch);
        cJSON_AddStringToObject(ip, "image_processor_type", "Idefics3ImageProcessor");
        cJSON_AddBoolToObject(ip, "do_pad", true);
        cJSON_AddBoolToObject(ip, "do_image_splitting", true);
        cJSON_AddNumberToObject(ip, "resample", 1);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(ip, "size"), "longest_edge", edge);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(ip, "max_image_size"), "longest_edge",
                                image);
        uint32_t side = sf ? image / patch / sf : 0;
        cJSON_AddNumberToObject(root, "image_seq_len", side * side);
    } else if (kind == EVLM_MMPROJ_QWEN2VL) {
        uint32_t lo = 56 * 56, hi = 28 * 28 * 1280, merge = 2;
        st = opt_u32(mm, "clip.vision.image_min_pixels", lo, &lo);
        if (st == EVLM_OK) st = opt_u32(mm, "clip.vision.image_max_pixels", hi, &hi);
        if (st == EVLM_OK) st = opt_u32(mm, "clip.vision.spatial_merge_size", 2, &merge);
        cJSON_AddStringToObject(ip, "image_processor_type", "Qwen2VLImageProcessor");
        cJSON_AddNumberToObject(ip, "resample", 3);
        cJSON_AddNumberToObject(ip, "patch_size", patch);
        cJSON_AddNumberToObject(ip, "merge_size", merge);
        cJSON_AddNumberToObject(ip, "temporal_patch_size", 2);
        cJSON *size = cJSON_AddObjectToObject(ip, "size");
        cJSON_AddNumberToObject(size, "shortest_edge", lo);
        cJSON_AddNumberToObject(size, "longest_edge", hi);
    } else {
        st = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: projector '%.*s' not supported",
                        evlm_gguf_path(mm), (int)(pn > 64 ? 64 : pn), pt);
    }
    if (st != EVLM_OK) {
        cJSON_Delete(root);
        return st;
    }
    *out = print_json(root);
    return *out ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
}

/* ---- the handle ------------------------------------------------------------------------------ */

static bool has_vision_tensors(const evlm_gguf *g) {
    static const char *const pre[] = {"v.", "mm.", "model.vision_model.", "visual.",
                                      "model.visual."};
    for (size_t i = 0; i < evlm_gguf_tensor_count(g); i++)
        for (size_t k = 0; k < sizeof pre / sizeof *pre; k++)
            if (!strncmp(evlm_gguf_tensor_at(g, i)->name, pre[k], strlen(pre[k]))) return true;
    return false;
}

evlm_status evlm_llamacpp_open(const char *path, const char *mmproj_path, evlm_llamacpp **out) {
    *out = NULL;
    evlm_llamacpp *l = calloc(1, sizeof *l);
    if (!l) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = evlm_gguf_open(path, &l->g);
    char sib[4096];
    if (st == EVLM_OK && !mmproj_path && !has_vision_tensors(l->g)) {
        const char *slash = strrchr(path, '/');
        size_t dn = slash ? (size_t)(slash - path + 1) : 0;
        int k = snprintf(sib, sizeof sib, "%.*smmproj-%s", (int)dn, path, path + dn);
        if (k > 0 && (size_t)k < sizeof sib && evlm_file_exists(sib)) mmproj_path = sib;
    }
    if (st == EVLM_OK && mmproj_path) {
        st = evlm_gguf_open(mmproj_path, &l->mm);
        if (st == EVLM_OK && !has(l->mm, "clip.projector_type"))
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: not an mmproj file (no clip.projector_type)",
                            mmproj_path);
    }
    if (st == EVLM_OK) l->synth = !has(l->g, "evlm.file.config.json");
    if (st != EVLM_OK) {
        evlm_llamacpp_free(l);
        return st;
    }
    *out = l;
    return EVLM_OK;
}

void evlm_llamacpp_free(evlm_llamacpp *l) {
    if (!l) return;
    evlm_gguf_close(l->g);
    evlm_gguf_close(l->mm);
    for (int i = 0; i < N_SYNTH; i++) free(l->text[i]);
    free(l);
}

evlm_gguf *evlm_llamacpp_gguf(const evlm_llamacpp *l) {
    return l->g;
}

evlm_gguf *evlm_llamacpp_mmproj(const evlm_llamacpp *l) {
    return l->mm;
}

bool evlm_llamacpp_no_vision(const evlm_llamacpp *l) {
    return !l->mm && !has_vision_tensors(l->g);
}

evlm_status evlm_llamacpp_file(const void *ctx, const char *name, const char **data, size_t *len) {
    evlm_llamacpp *l = (evlm_llamacpp *)(uintptr_t)ctx; /* files are made on first use */
    if (!l->synth) return evlm_gguf_file_text(l->g, name, data, len);
    int i = 0;
    while (i < N_SYNTH && strcmp(name, k_synth[i]) != 0) i++;
    if (i == N_SYNTH)
        return evlm__fail(EVLM_ERR_IO, "%s: no %s (llama.cpp's metadata only)",
                          evlm_gguf_path(l->g), name);
    if (!l->made[i]) {
        l->made[i] = true;
        switch (i) {
        case 0:
            l->st[i] = make_config(l, &l->text[i]);
            break;
        case 1:
            l->st[i] = make_tokenizer(l->g, &l->text[i]);
            break;
        case 2:
            l->st[i] = make_tokenizer_config(l->g, &l->text[i]);
            break;
        case 3:
            l->st[i] = make_template(l->g, &l->text[i]);
            break;
        default:
            l->st[i] = make_processor(l->mm, &l->text[i]);
            break;
        }
        if (l->st[i] != EVLM_OK) snprintf(l->msg[i], sizeof l->msg[i], "%s", evlm_last_error());
    }
    if (l->st[i] != EVLM_OK) return evlm__fail(l->st[i], "%s", l->msg[i]);
    *data = l->text[i];
    *len = strlen(l->text[i]);
    return EVLM_OK;
}

evlm_status evlm_llamacpp_weights(evlm_llamacpp *l, evlm_weights **out) {
    return evlm_gguf_weights_pair(l->g, l->mm, out);
}
