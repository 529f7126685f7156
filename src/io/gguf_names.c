/*
 * gguf_names.c - Hugging Face <-> llama.cpp tensor names, llama.cpp metadata and the folder
 * export (see gguf_names.h).
 *
 * The metadata follows convert_hf_to_gguf.py for Llama / Qwen2: hyper-parameters under the
 * architecture's name, a gpt2 BPE tokenizer (vocabulary by id, holes and the tail up to the
 * config's vocab_size filled with "[PADn]" tokens of type UNUSED, added special tokens
 * CONTROL, other added tokens USER_DEFINED), merges as "a b", and tokenizer.ggml.pre chosen from
 * the pre-tokenizer's shape ("smollm", "qwen2", "gpt-2" or "default").
 *
 * Not here: llama3 rope scaling for llama.cpp (it wants a rope_freqs tensor; evlm itself reads
 * the verbatim config.json), the mmproj vision file of llama.cpp (gguf_mmproj.c).
 */
#include "io/gguf_names.h"
#include "io/gguf_mmproj.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "quant/quants.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------ */

static const char *const k_layer_names[][2] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
#define N_LAYER_NAMES (sizeof k_layer_names / sizeof *k_layer_names)

static int emit(char *out, size_t cap, const char *a, const char *b, const char *c) {
    int n = snprintf(out, cap, "%s%s%s", a, b, c);
    return n >= 0 && (size_t)n < cap ? 1 : -1;
}

static int copy_name(const char *s, char *out, size_t cap) {
    return emit(out, cap, s, "", "") < 0 ? -1 : 0;
}

/* "N." at s (N decimal without leading zeros, < 1e6): length of "N." into *len, N as text. */
static int layer_index(const char *s, size_t *len) {
    size_t i = 0;
    while (isdigit((unsigned char)s[i]) && i < 7) i++;
    if (i == 0 || i > 6 || s[i] != '.' || (s[0] == '0' && i > 1)) return 0;
    *len = i + 1;
    return 1;
}

int evlm_gguf_name_to_llama(const char *hf, const char *prefix, char *out, size_t cap) {
    size_t pn = strlen(prefix);
    if (strcmp(hf, "lm_head.weight") == 0) return emit(out, cap, "output.weight", "", "");
    if (strncmp(hf, prefix, pn) != 0) return copy_name(hf, out, cap);
    const char *r = hf + pn;
    if (strcmp(r, "embed_tokens.weight") == 0) return emit(out, cap, "token_embd.weight", "", "");
    if (strcmp(r, "norm.weight") == 0) return emit(out, cap, "output_norm.weight", "", "");
    size_t ln;
    if (strncmp(r, "layers.", 7) != 0 || !layer_index(r + 7, &ln)) return copy_name(hf, out, cap);
    const char *suffix = r + 7 + ln;
    for (size_t i = 0; i < N_LAYER_NAMES; i++) {
        if (strcmp(suffix, k_layer_names[i][0]) == 0) {
            char blk[16];
            snprintf(blk, sizeof blk, "blk.%.*s", (int)ln, r + 7);
            return emit(out, cap, blk, k_layer_names[i][1], "");
        }
    }
    return copy_name(hf, out, cap);
}

int evlm_gguf_name_to_hf(const char *g, const char *prefix, char *out, size_t cap) {
    if (strcmp(g, "output.weight") == 0) return emit(out, cap, "lm_head.weight", "", "");
    if (strcmp(g, "token_embd.weight") == 0)
        return emit(out, cap, prefix, "embed_tokens.weight", "");
    if (strcmp(g, "output_norm.weight") == 0) return emit(out, cap, prefix, "norm.weight", "");
    size_t ln;
    if (strncmp(g, "blk.", 4) != 0 || !layer_index(g + 4, &ln)) return copy_name(g, out, cap);
    const char *suffix = g + 4 + ln;
    for (size_t i = 0; i < N_LAYER_NAMES; i++) {
        if (strcmp(suffix, k_layer_names[i][1]) == 0) {
            char mid[24];
            snprintf(mid, sizeof mid, "layers.%.*s", (int)ln, g + 4);
            int n = snprintf(out, cap, "%s%s%s", prefix, mid, k_layer_names[i][0]);
            return n >= 0 && (size_t)n < cap ? 1 : -1;
        }
    }
    return copy_name(g, out, cap);
}

int evlm_gguf_is_qk(const char *g) {
    size_t ln;
    if (strncmp(g, "blk.", 4) != 0 || !layer_index(g + 4, &ln)) return 0;
    const char *s = g + 4 + ln;
    if (!strcmp(s, "attn_q.weight") || !strcmp(s, "attn_q.bias")) return 1;
    if (!strcmp(s, "attn_k.weight") || !strcmp(s, "attn_k.bias")) return 2;
    return 0;
}

/* HF head rows: [first half | second half] of each head; llama.cpp: the two halves interleaved,
 * llama row h*hd + 2i + j = HF row h*hd + j*hd/2 + i. */
int64_t evlm_gguf_qk_src_row(int64_t row, int64_t hd, bool to_llama) {
    int64_t h = row / hd, r = row % hd, half = hd / 2;
    if (to_llama) return h * hd + (r % 2) * half + r / 2;
    return h * hd + 2 * (r % half) + r / half;
}

const char *evlm_gguf_hf_text_prefix(const evlm_weights *w) {
    static const char *const prefixes[] = {"model.text_model.", "model.language_model.", "model."};
    char name[96];
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        snprintf(name, sizeof name, "%sembed_tokens.weight", prefixes[i]);
        if (evlm_weights_find(w, name)) return prefixes[i];
    }
    return NULL;
}

evlm_type evlm_gguf_store_type(int n_dims, evlm_type want) {
    const evlm_type_traits *tt = evlm_type_traits_of(want);
    if (n_dims <= 1 && (evlm_type_is_file_float(want) || evlm_type_is_file_quant(want) || tt->kq))
        return EVLM_TYPE_F32;
    return want;
}

const char *evlm_gguf_arch_for(const evlm_decoder_config *cfg) {
    if (strncmp(cfg->model_type, "qwen2", 5) == 0)
        return cfg->mrope_section[0] || cfg->mrope_section[1] || cfg->mrope_section[2] ? "qwen2vl"
                                                                                       : "qwen2";
    return "llama";
}

/* ---- metadata --------------------------------------------------------------------------- */

static evlm_status put_hparams(evlm_gguf_writer *w, const evlm_decoder_config *c) {
    const char *a = evlm_gguf_arch_for(c);
    char k[96];
#define KEY(name) (snprintf(k, sizeof k, "%s." name, a), k)
    EVLM_TRY(evlm_gguf_writer_set_str(w, "general.architecture", a));
    if (c->architecture[0]) EVLM_TRY(evlm_gguf_writer_set_str(w, "general.name", c->architecture));
    EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size));
    EVLM_TRY(
        evlm_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings));
    EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size));
    EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers));
    EVLM_TRY(
        evlm_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size));
    EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads));
    EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads));
    EVLM_TRY(evlm_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_norm_eps));
    EVLM_TRY(evlm_gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)c->rope_theta));
    EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim));
    if ((int64_t)c->head_dim * c->n_heads != c->hidden_size) {
        EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim));
        EVLM_TRY(evlm_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim));
    }
    if (c->rope_type == EVLM_ROPE_LINEAR) {
        EVLM_TRY(evlm_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear"));
        EVLM_TRY(evlm_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor));
    }
    if (strcmp(a, "qwen2vl") == 0) {
        int32_t sec[4] = {c->mrope_section[0], c->mrope_section[1], c->mrope_section[2], 0};
        EVLM_TRY(evlm_gguf_writer_set_arr_i32(w, KEY("rope.dimension_sections"), sec, 4));
    }
#undef KEY
    return EVLM_OK;
}

/* llama.cpp's name for the pre-tokenizer, from its shape in tokenizer.json. */
static const char *pre_name(const cJSON *root, const char *arch) {
    if (strncmp(arch, "qwen2", 5) == 0) return "qwen2";
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (!cJSON_IsString(type)) return "default";
    if (strcmp(type->valuestring, "ByteLevel") == 0) return "gpt-2";
    if (strcmp(type->valuestring, "Sequence") != 0) return "default";
    int digits = 0, bytelevel = 0, other = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers")) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsString(t))
            other++;
        else if (!strcmp(t->valuestring, "Digits") &&
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "individual_digits")))
            digits++;
        else if (!strcmp(t->valuestring, "ByteLevel"))
            bytelevel++;
        else
            other++;
    }
    return digits == 1 && bytelevel == 1 && !other ? "smollm" : "default";
}

enum {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER = 4,
    TOK_UNUSED = 5,
    TOK_BYTE = 6
};

/* Whether the normalizer puts "▁" before the text (sentencepiece's add_dummy_prefix): a
 * Prepend "▁" normalizer, alone or in a Sequence. */
static bool prepends_space(const cJSON *root) {
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(nz, "normalizers");
    const cJSON *e = cJSON_IsArray(list) ? list->child : nz;
    for (; e; e = cJSON_IsArray(list) ? e->next : NULL) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(e, "prepend");
        if (cJSON_IsString(t) && !strcmp(t->valuestring, "Prepend") && cJSON_IsString(pp) &&
            !strcmp(pp->valuestring, "\u2581"))
            return true;
    }
    return false;
}
#define MAX_VOCAB (16 << 20)

/* merges: "a b" strings, or ["a", "b"] pairs (tokenizers >= 0.20) joined with a space */
static evlm_status put_merges(evlm_gguf_writer *w, const char *what, const cJSON *merges) {
    evlm_status st = EVLM_OK;
    const cJSON *e;
    int nm = cJSON_GetArraySize(merges);
    char **ms = calloc((size_t)nm + 1, sizeof *ms);
    if (!ms) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    int k = 0;
    cJSON_ArrayForEach(e, merges) {
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
        if (cJSON_IsString(e)) {
            ms[k] = strdup(e->valuestring);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(a) &&
                   cJSON_IsString(b)) {
            size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
            if ((ms[k] = malloc(la + lb + 2))) {
                memcpy(ms[k], a->valuestring, la);
                ms[k][la] = ' ';
                memcpy(ms[k] + la + 1, b->valuestring, lb + 1);
            }
        } else {
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s: tokenizer.json: merge %d is neither \"a b\" nor [a, b]", what, k);
            break;
        }
        if (!ms[k++]) {
            st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
    }
    if (st == EVLM_OK)
        st = evlm_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL,
                                          (size_t)k);
    for (int i = 0; i < k; i++) free(ms[i]);
    free(ms);
    return st;
}

/* bos / eos ids and whether BOS is added */
static evlm_status put_specials(evlm_gguf_writer *w, const evlm_decoder_config *cfg,
                                const cJSON *root) {
    if (cfg->bos_token_id >= 0)
        EVLM_TRY(evlm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
                                          (uint32_t)cfg->bos_token_id));
    if (cfg->n_eos > 0)
        EVLM_TRY(evlm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
                                          (uint32_t)cfg->eos_token_ids[0]));
    /* BOS is added when the post-processor's single template starts with a special token */
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "single");
    bool add_bos =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, 0), "SpecialToken") != NULL;
    return evlm_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
}

/* llama.cpp's "llama" (sentencepiece) vocabulary of a byte-fallback BPE: the tokens, a score
 * per token (the merge that makes it: earlier merges score higher, as sentencepiece's scores order
 * them; tokens no merge makes score lowest), byte tokens "<0xHH>" of type BYTE, the unknown
 * token, and the leading "▁" llama.cpp adds when the normalizer prepends one. */
static evlm_status put_spm(evlm_gguf_writer *w, const char *what, const cJSON *root,
                           const char **tok, int32_t *tt, int64_t n) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    float *score = malloc((size_t)n * sizeof *score);
    if (!score) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    for (int64_t i = 0; i < n; i++) score[i] = -1e9f;
    int k = 0;
    const cJSON *e;
    char buf[1024];
    cJSON_ArrayForEach(e, merges) {
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
        int len = -1;
        if (cJSON_IsString(e)) { /* "a b": the pair without its space */
            const char *sp = strchr(e->valuestring, ' ');
            if (sp)
                len = snprintf(buf, sizeof buf, "%.*s%s", (int)(sp - e->valuestring),
                               e->valuestring, sp + 1);
        } else if (cJSON_IsString(a) && cJSON_IsString(b)) {
            len = snprintf(buf, sizeof buf, "%s%s", a->valuestring, b->valuestring);
        }
        k++;
        if (len < 0 || (size_t)len >= sizeof buf) continue;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(vocab, buf);
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < (double)n &&
            score[(int64_t)id->valuedouble] == -1e9f)
            score[(int64_t)id->valuedouble] = -(float)k;
    }
    int64_t unk_id = -1;
    for (int64_t i = 0; i < n; i++) {
        unsigned hx;
        char tail;
        if (tt[i] == TOK_NORMAL && strlen(tok[i]) == 6 &&
            sscanf(tok[i], "<0x%2X>%c", &hx, &tail) == 1)
            tt[i] = TOK_BYTE;
        if (cJSON_IsString(unk) && !strcmp(tok[i], unk->valuestring)) {
            tt[i] = TOK_UNKNOWN;
            unk_id = i;
        }
    }
    evlm_status st = evlm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (st == EVLM_OK)
        st = evlm_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, (size_t)n);
    if (st == EVLM_OK)
        st = evlm_gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", score, (size_t)n);
    if (st == EVLM_OK)
        st = evlm_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", tt, (size_t)n);
    if (st == EVLM_OK && unk_id >= 0)
        st = evlm_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id);
    if (st == EVLM_OK)
        st = evlm_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", prepends_space(root));
    free(score);
    return st;
}

static evlm_status put_tokenizer(evlm_gguf_writer *w, const char *what,
                                 const evlm_decoder_config *cfg, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0 || !cJSON_IsObject(vocab))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: tokenizer.json: only BPE models with a \"vocab\" object can be "
                          "written as a gpt2 GGUF tokenizer",
                          what);
    /* the vocabulary size: max id + 1, at least the config's */
    int64_t n = cfg->vocab_size > 0 ? cfg->vocab_size : 0;
    const cJSON *e;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *arr = pass ? added : vocab;
        cJSON_ArrayForEach(e, arr) {
            const cJSON *id = pass ? cJSON_GetObjectItemCaseSensitive(e, "id") : e;
            if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_VOCAB ||
                id->valuedouble != (double)(int64_t)id->valuedouble)
                return evlm__fail(EVLM_ERR_FORMAT, "%s: tokenizer.json: token id out of range",
                                  what);
            if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
        }
    }
    const char **tok = calloc((size_t)n + 1, sizeof *tok);
    int32_t *tt = calloc((size_t)n + 1, sizeof *tt);
    char *pads = malloc((size_t)n * 32 + 1);
    evlm_status st = EVLM_OK;
    if (!tok || !tt || !pads) st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    for (int pass = 0; pass < 2 && st == EVLM_OK; pass++) {
        const cJSON *arr = pass ? added : vocab;
        cJSON_ArrayForEach(e, arr) {
            const cJSON *id = pass ? cJSON_GetObjectItemCaseSensitive(e, "id") : e;
            const cJSON *content = pass ? cJSON_GetObjectItemCaseSensitive(e, "content") : NULL;
            const char *s =
                pass ? (cJSON_IsString(content) ? content->valuestring : NULL) : e->string;
            if (!s) {
                st = evlm__fail(EVLM_ERR_FORMAT,
                                "%s: tokenizer.json: added token without \"content\"", what);
                break;
            }
            int64_t i = (int64_t)id->valuedouble;
            tok[i] = s;
            tt[i] = !pass                                                          ? TOK_NORMAL
                    : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? TOK_CONTROL
                                                                                   : TOK_USER;
        }
    }
    for (int64_t i = 0; i < n && st == EVLM_OK; i++) {
        if (tok[i]) continue;
        snprintf(pads + i * 32, 32, "[PAD%lld]", (long long)i);
        tok[i] = pads + i * 32;
        tt[i] = TOK_UNUSED;
    }
    /* a byte-fallback BPE over "▁"-joined words (sentencepiece's, e.g. llama2.c's) is
     * llama.cpp's "llama" vocabulary: tokens with scores, no byte-level mapping */
    bool spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    if (st == EVLM_OK && spm) {
        st = put_spm(w, what, root, tok, tt, n);
    } else {
        if (st == EVLM_OK) st = evlm_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        if (st == EVLM_OK)
            st = evlm_gguf_writer_set_str(w, "tokenizer.ggml.pre",
                                          pre_name(root, evlm_gguf_arch_for(cfg)));
        if (st == EVLM_OK)
            st = evlm_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, (size_t)n);
        if (st == EVLM_OK)
            st = evlm_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", tt, (size_t)n);
    }
    free(tok);
    free(tt);
    free(pads);
    if (st != EVLM_OK) return st;
    if (!spm) EVLM_TRY(put_merges(w, what, merges));
    return put_specials(w, cfg, root);
}

evlm_status evlm_gguf_put_llama_meta(evlm_gguf_writer *w, const char *what,
                                     const evlm_decoder_config *cfg, const char *tokenizer_json,
                                     size_t tokenizer_len, const char *chat_template) {
    if (!w || !cfg || !tokenizer_json)
        return evlm__fail(EVLM_ERR_ARG, "evlm_gguf_put_llama_meta: NULL argument");
    if (!what) what = "model";
    EVLM_TRY(put_hparams(w, cfg));
    cJSON *root;
    if (evlm_json_parse(what, tokenizer_json, tokenizer_len, &root) != EVLM_OK)
        return evlm__fail_prefix(EVLM_ERR_FORMAT, "tokenizer.json");
    evlm_status st = put_tokenizer(w, what, cfg, root);
    cJSON_Delete(root);
    if (st == EVLM_OK && chat_template)
        st = evlm_gguf_writer_set_str(w, "tokenizer.chat_template", chat_template);
    return st;
}

const char *const evlm_hf_side_files[] = {
    "config.json",           "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.json",    "chat_template.jinja",     "preprocessor_config.json",
    "processor_config.json",
};
const size_t evlm_hf_n_side_files = sizeof evlm_hf_side_files / sizeof *evlm_hf_side_files;

evlm_status evlm_gguf_put_hf_files(evlm_gguf_writer *w, const char *dir, int *n_put) {
    if (n_put) *n_put = 0;
    for (size_t i = 0; i < evlm_hf_n_side_files; i++) {
        char path[4096], key[128];
        EVLM_TRY(evlm_path_join(path, sizeof path, dir, evlm_hf_side_files[i]));
        if (!evlm_file_exists(path)) continue;
        char *text;
        size_t n;
        EVLM_TRY(evlm_read_file(path, EVLM_JSON_MAX_FILE, &text, &n));
        snprintf(key, sizeof key, "evlm.file.%s", evlm_hf_side_files[i]);
        evlm_status st = evlm_gguf_writer_set_strn(w, key, text, n);
        free(text);
        EVLM_TRY(st);
        if (n_put) (*n_put)++;
    }
    return EVLM_OK;
}

/* ---- export ----------------------------------------------------------------------------- */

typedef struct conv {
    const evlm_tensor *src;
    int64_t head_dim; /* > 0: Q/K rows go to llama.cpp's order */
    float *row;       /* shared scratch, ne[0] (or the whole 1-D vector) floats */
} conv;

static evlm_status conv_fill(void *ctx, const evlm_tensor *t, int64_t row0, int64_t n, void *dst) {
    const conv *c = ctx;
    const evlm_tensor *s = c->src;
    int64_t ne0 = t->ne[0];
    if (t->n_dims == 1 && c->head_dim) { /* a bias: permute elements */
        evlm_dequantize_row(s->type, s->data, c->row + ne0, ne0);
        for (int64_t i = 0; i < ne0; i++)
            c->row[i] = c->row[ne0 + evlm_gguf_qk_src_row(i, c->head_dim, true)];
        evlm_quantize_row(t->type, c->row, dst, ne0);
        return EVLM_OK;
    }
    for (int64_t r = row0; r < row0 + n; r++) {
        int64_t sr = c->head_dim ? evlm_gguf_qk_src_row(r, c->head_dim, true) : r;
        if (s->type == t->type) { /* already converted: only the row order changes */
            memcpy((char *)dst + (size_t)(r - row0) * t->nb[1],
                   (const char *)s->data + (size_t)sr * s->nb[1], t->nb[1]);
            continue;
        }
        evlm_dequantize_row(s->type, (const char *)s->data + (size_t)sr * s->nb[1], c->row, ne0);
        evlm_quantize_row(t->type, c->row, (char *)dst + (size_t)(r - row0) * t->nb[1], ne0);
    }
    return EVLM_OK;
}

static evlm_status read_text(const char *dir, const char *name, char **text, size_t *n) {
    char path[4096];
    *text = NULL;
    EVLM_TRY(evlm_path_join(path, sizeof path, dir, name));
    if (!evlm_file_exists(path)) return EVLM_OK;
    return evlm_read_file(path, EVLM_JSON_MAX_FILE, text, n);
}

/* chat_template.jinja, else "chat_template" of chat_template.json or tokenizer_config.json
 * (malloc'd; NULL when none). */
static evlm_status find_chat_template(const char *dir, char **out) {
    size_t n;
    EVLM_TRY(read_text(dir, "chat_template.jinja", out, &n));
    if (*out) return EVLM_OK;
    static const char *const files[] = {"chat_template.json", "tokenizer_config.json"};
    for (size_t i = 0; i < 2 && !*out; i++) {
        char *text;
        EVLM_TRY(read_text(dir, files[i], &text, &n));
        if (!text) continue;
        cJSON *root;
        evlm_status st = evlm_json_parse(files[i], text, n, &root);
        free(text);
        EVLM_TRY(st);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
        if (cJSON_IsString(t) && !(*out = strdup(t->valuestring)))
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        cJSON_Delete(root);
        EVLM_TRY(st);
    }
    return EVLM_OK;
}

/* text_only (llama.cpp's layout): tensors with no llama.cpp name are left to the mmproj file
 * (vision tower, connector) or refused (llama.cpp refuses a file with tensors it does not
 * load). */
static evlm_status add_weights(evlm_gguf_writer *gw, const char *dir, const evlm_weights *w,
                               const evlm_decoder_config *cfg, const char *prefix,
                               evlm_gguf_type_fn type_for, void *ctx, conv *convs, float *scratch,
                               bool text_only, const char *vision_prefix) {
    bool llama = strcmp(evlm_gguf_arch_for(cfg), "llama") == 0;
    char gname[EVLM_GGUF_MAX_NAME + 160], back[EVLM_GGUF_MAX_NAME + 160];
    for (size_t i = 0; i < evlm_weights_count(w); i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        if (evlm_gguf_name_to_llama(t->name, prefix, gname, sizeof gname) < 0 ||
            evlm_gguf_name_to_hf(gname, prefix, back, sizeof back) < 0 ||
            strcmp(back, t->name) != 0)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: tensor '%s' has no reversible GGUF name",
                              dir, t->name);
        if (text_only && evlm_gguf_name_to_llama(t->name, prefix, gname, sizeof gname) == 0) {
            if ((vision_prefix && !strncmp(t->name, vision_prefix, strlen(vision_prefix))) ||
                !strncmp(t->name, "model.connector.", 16))
                continue; /* the mmproj file's */
            return evlm__fail(EVLM_ERR_UNSUPPORTED,
                              "%s: tensor '%s' has no llama.cpp name: llama.cpp refuses a file "
                              "with it (write evlm's own GGUF instead)",
                              dir, t->name);
        }
        const evlm_tensor *src = t;
        evlm_type to = type_for ? type_for(ctx, t->name, t, &src) : t->type;
        if (to == EVLM_TYPE_COUNT) continue; /* left out */
        to = evlm_gguf_store_type(t->n_dims, to);
        if (!src || src->n_dims != t->n_dims || memcmp(src->ne, t->ne, sizeof t->ne))
            return evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s': replacement data of another shape",
                              dir, t->name);
        t = src;
        int qk = llama ? evlm_gguf_is_qk(gname) : 0;
        int64_t ne[EVLM_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        int n_dims = t->n_dims ? t->n_dims : 1; /* a scalar becomes [1] */
        if (to == t->type && !qk) {
            if (evlm_gguf_ggml_type(to) < 0)
                return evlm__fail(EVLM_ERR_UNSUPPORTED,
                                  "%s: tensor '%s': dtype %s has no GGUF type", dir, t->name,
                                  evlm_type_name(to));
            EVLM_TRY(evlm_gguf_writer_add_tensor(gw, gname, to, n_dims, ne, t->data));
            continue;
        }
        if ((!evlm_type_is_file_float(t->type) && t->type != to) || evlm_gguf_ggml_type(to) < 0 ||
            (!evlm_type_is_file_float(to) && !evlm_type_is_quant(to) &&
             !evlm_type_traits_of(to)->kq))
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: tensor '%s': cannot convert %s to %s", dir,
                              t->name, evlm_type_name(t->type), evlm_type_name(to));
        if (ne[0] % evlm_type_block(to))
            return evlm__fail(EVLM_ERR_UNSUPPORTED,
                              "%s: tensor '%s': %lld columns are not a multiple of %d for %s", dir,
                              t->name, (long long)ne[0], evlm_type_block(to), evlm_type_name(to));
        convs[i] = (conv){.src = t, .row = scratch};
        if (qk) {
            int heads = qk == 1 ? cfg->n_heads : cfg->n_kv_heads;
            int64_t rows = n_dims == 1 ? ne[0] : ne[1];
            if (n_dims > 2 || heads <= 0 || rows % (2 * heads))
                return evlm__fail(EVLM_ERR_FORMAT,
                                  "%s: tensor '%s': %lld rows do not split into %d heads", dir,
                                  t->name, (long long)rows, heads);
            convs[i].head_dim = rows / heads;
        }
        EVLM_TRY(evlm_gguf_writer_add_tensor_fill(gw, gname, to, n_dims, ne, conv_fill, &convs[i]));
    }
    return EVLM_OK;
}

evlm_status evlm_gguf_export_hf(const char *hf_dir, const char *out_path,
                                evlm_gguf_type_fn type_for, void *ctx,
                                evlm_gguf_progress_fn progress, void *progress_ctx) {
    return evlm_gguf_export_hf_extra(hf_dir, out_path, type_for, ctx, NULL, 0, progress,
                                     progress_ctx);
}

static evlm_status add_extra(evlm_gguf_writer *gw, const char *dir, const char *prefix,
                             const evlm_tensor *extra, size_t n_extra) {
    char gname[EVLM_GGUF_MAX_NAME + 160];
    for (size_t i = 0; i < n_extra; i++) {
        const evlm_tensor *t = &extra[i];
        if (evlm_gguf_name_to_llama(t->name, prefix, gname, sizeof gname) != 0 ||
            strcmp(gname, t->name) != 0)
            return evlm__fail(EVLM_ERR_ARG, "%s: extra tensor '%s' would take a llama.cpp name",
                              dir, t->name);
        if (evlm_gguf_ggml_type(t->type) < 0)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s has no GGUF type",
                              dir, t->name, evlm_type_name(t->type));
        EVLM_TRY(evlm_gguf_writer_add_tensor(gw, t->name, t->type, t->n_dims ? t->n_dims : 1, t->ne,
                                             t->data));
    }
    return EVLM_OK;
}

/* mmproj: NULL (evlm's file: every tensor, under llama.cpp names where it has them) or the
 * projector file of llama.cpp's layout (see evlm_gguf_export_llamacpp). */
static evlm_status export_impl(const char *hf_dir, const char *out_path, const char *mmproj,
                               bool *wrote_mmproj, evlm_gguf_type_fn type_for, void *ctx,
                               const evlm_tensor *extra, size_t n_extra,
                               evlm_gguf_progress_fn progress, void *progress_ctx) {
    if (!hf_dir || !out_path) return evlm__fail(EVLM_ERR_ARG, "evlm_gguf_export_hf: NULL path");
    if (wrote_mmproj) *wrote_mmproj = false;
    evlm_decoder_config cfg;
    EVLM_TRY(evlm_decoder_config_load(hf_dir, &cfg));
    evlm_weights *w = NULL;
    evlm_gguf_writer *gw = NULL;
    char *tok = NULL, *tmpl = NULL;
    conv *convs = NULL;
    float *scratch = NULL;
    size_t tok_len = 0;
    evlm_status st = evlm_weights_open(hf_dir, &w);
    const char *prefix = st == EVLM_OK ? evlm_gguf_hf_text_prefix(w) : NULL;
    if (st == EVLM_OK && !prefix)
        st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                        "%s: no '*embed_tokens.weight' tensor (text prefix unknown)", hf_dir);
    if (st == EVLM_OK) st = read_text(hf_dir, "tokenizer.json", &tok, &tok_len);
    if (st == EVLM_OK && !tok) st = evlm__fail(EVLM_ERR_IO, "%s: no tokenizer.json", hf_dir);
    if (st == EVLM_OK) st = find_chat_template(hf_dir, &tmpl);
    if (st == EVLM_OK) st = evlm_gguf_writer_new(&gw);
    if (st == EVLM_OK) st = evlm_gguf_put_llama_meta(gw, hf_dir, &cfg, tok, tok_len, tmpl);
    if (st == EVLM_OK) st = evlm_gguf_writer_set_str(gw, "evlm.text_prefix", prefix);
    if (st == EVLM_OK) st = evlm_gguf_put_hf_files(gw, hf_dir, NULL);
    if (st == EVLM_OK) {
        int64_t max_row = 1;
        for (size_t i = 0; i < evlm_weights_count(w); i++) {
            const evlm_tensor *t = evlm_weights_at(w, i);
            int64_t r = t->n_dims <= 1 ? 2 * t->ne[0] : t->ne[0];
            if (r > max_row) max_row = r;
        }
        convs = calloc(evlm_weights_count(w) + 1, sizeof *convs);
        scratch = malloc((size_t)max_row * sizeof *scratch);
        if (!convs || !scratch) st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", hf_dir);
    }
    const char *vprefix = NULL;
    evlm_mmproj_kind vk = st == EVLM_OK ? evlm_mmproj_kind_of(w, &vprefix) : EVLM_MMPROJ_NONE;
    bool llamacpp = mmproj != NULL;
    if (st == EVLM_OK && llamacpp && n_extra)
        st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                        "%s: %zu added tensors (e.g. '%s') have no llama.cpp name: write evlm's "
                        "own GGUF for them",
                        hf_dir, n_extra, extra[0].name);
    if (st == EVLM_OK)
        st = add_weights(gw, hf_dir, w, &cfg, prefix, type_for, ctx, convs, scratch, llamacpp,
                         vprefix);
    if (st == EVLM_OK) st = add_extra(gw, hf_dir, prefix, extra, n_extra);
    if (st == EVLM_OK) st = evlm_gguf_writer_write(gw, out_path, progress, progress_ctx);
    if (st == EVLM_OK && llamacpp && vk != EVLM_MMPROJ_NONE) {
        st = evlm_mmproj_write(hf_dir, w, &cfg, mmproj, type_for, ctx, progress, progress_ctx);
        if (st == EVLM_OK && wrote_mmproj) *wrote_mmproj = true;
        if (st != EVLM_OK) remove(out_path); /* the pair or nothing */
    }
    evlm_gguf_writer_free(gw);
    evlm_weights_free(w);
    free(tok);
    free(tmpl);
    free(convs);
    free(scratch);
    return st;
}

evlm_status evlm_gguf_export_hf_extra(const char *hf_dir, const char *out_path,
                                      evlm_gguf_type_fn type_for, void *ctx,
                                      const evlm_tensor *extra, size_t n_extra,
                                      evlm_gguf_progress_fn progress, void *progress_ctx) {
    return export_impl(hf_dir, out_path, NULL, NULL, type_for, ctx, extra, n_extra, progress,
                       progress_ctx);
}

evlm_status evlm_gguf_export_llamacpp(const char *hf_dir, const char *out_path,
                                      const char *mmproj_path, bool *wrote_mmproj,
                                      evlm_gguf_type_fn type_for, void *ctx,
                                      const evlm_tensor *extra, size_t n_extra,
                                      evlm_gguf_progress_fn progress, void *progress_ctx) {
    if (!mmproj_path) return evlm__fail(EVLM_ERR_ARG, "evlm_gguf_export_llamacpp: no mmproj path");
    return export_impl(hf_dir, out_path, mmproj_path, wrote_mmproj, type_for, ctx, extra, n_extra,
                       progress, progress_ctx);
}
