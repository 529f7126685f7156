/*
 * llama2c.c - import of llama2.c checkpoints and tokenizers into a Hugging Face folder
 * (see llama2c.h).
 *
 * Weights: run.c's legacy "v0" layout is a 7-int32 header followed by float32 arrays in a
 * fixed order (memory_map_weights). The file size must be exactly what the header implies,
 * with or without the classifier. Tensors that need no change are written straight from the
 * mmap; q_proj / k_proj rows are permuted because llama2.c's RoPE rotates adjacent pairs
 * (2i, 2i+1) of each head while Hugging Face Llama rotates halves (i, i + head_dim/2):
 * HF row h*hd + j*hd/2 + i = llama2.c row h*hd + 2i + j (transformers' convert_llama_weights_to_hf
 * `permute`). The rotation frequencies are the same (theta 10000), so attention is unchanged.
 *
 * Tokenizer: llama2.c's encode repeatedly merges the adjacent pair whose concatenation is in
 * the vocabulary with the highest score. Hugging Face BPE merges by rank instead, so every
 * split t = a + b (at UTF-8 character boundaries, a and b ordinary pieces) becomes a merge,
 * ranked by score(t) descending, then id of t, then split position. Pieces keep llama2.c's
 * ids; ' ' is written as SentencePiece's U+2581; ids 0, 1, 2 are <unk>, <s>, </s>.
 *
 * Not here: the quantized "v1/v2" llama2.c exports (version header), big-endian hosts.
 */
#include "io/llama2c.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MARK         "\xe2\x96\x81" /* U+2581, SentencePiece's word boundary */
#define MAX_TOKENIZER_FILE (1u << 30)
#define MAX_TOKEN_LEN      (1 << 16)

typedef struct l2c_config {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared; /* classifier tied to the embedding (vocab_size > 0 in the file) */
    int head_size, kv_dim;
} l2c_config;

static int32_t rd_i32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)rd_i32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int host_is_little_endian(void) {
    uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ---- checkpoint ------------------------------------------------------------------------- */

static evlm_status read_header(const char *path, const evlm_map *m, l2c_config *c) {
    if (m->size < 28)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %zu bytes, too short for the 28-byte header", path,
                          m->size);
    const uint8_t *p = m->data;
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = rd_i32(p + 4 * i);
    static const char *names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                   "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t hi[7] = {65536, 1 << 20, 1024, 1024, 1024, 1 << 24, 1 << 24};
    for (int i = 0; i < 7; i++) {
        int32_t v = h[i];
        if (i == 5 && v < 0 && v != INT32_MIN) v = -v;
        if (v < 1 || v > hi[i])
            return evlm__fail(EVLM_ERR_FORMAT, "%s: header %s = %d is out of range [1, %d]", path,
                              names[i], h[i], hi[i]);
    }
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->shared = h[5] > 0;
    c->vocab_size = h[5] > 0 ? h[5] : -h[5];
    c->seq_len = h[6];
    if (c->dim % c->n_heads || (c->dim / c->n_heads) % 2)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: header dim %d is not n_heads %d times an even head size", path,
                          c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: header n_heads %d is not a multiple of n_kv_heads %d", path,
                          c->n_heads, c->n_kv_heads);
    if (c->vocab_size < 3)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: header vocab_size %d is below 3 (<unk>, <s>, </s>)",
                          path, c->vocab_size);
    c->head_size = c->dim / c->n_heads;
    c->kv_dim = c->head_size * c->n_kv_heads;

    /* all factors are bounded above, so these products fit in 64 bits */
    uint64_t L = (uint64_t)c->n_layers, D = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim;
    uint64_t V = (uint64_t)c->vocab_size, KV = (uint64_t)c->kv_dim;
    uint64_t floats = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D +
                      3 * L * D * H + D + (uint64_t)c->seq_len * (uint64_t)c->head_size;
    if (!c->shared) floats += V * D;
    uint64_t want = 28 + 4 * floats;
    if ((uint64_t)m->size != want)
        return evlm__fail(
            EVLM_ERR_FORMAT,
            "%s: file is %zu bytes but its header (dim %d, hidden_dim %d, n_layers %d, "
            "n_heads %d, n_kv_heads %d, vocab_size %d%s, seq_len %d) implies %llu",
            path, m->size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
            c->vocab_size, c->shared ? " shared" : " unshared", c->seq_len,
            (unsigned long long)want);
    return EVLM_OK;
}

/* rows x cols F32 view in PyTorch order [rows, cols]. */
static evlm_tensor mat(const char *name, const float *data, int64_t rows, int64_t cols) {
    evlm_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.type = EVLM_TYPE_F32;
    t.n_dims = rows > 0 ? 2 : 1;
    t.ne[0] = cols;
    t.ne[1] = rows > 0 ? rows : 1;
    t.ne[2] = t.ne[3] = 1;
    evlm_tensor_set_contiguous(&t);
    t.data = (void *)(uintptr_t)data;
    return t;
}

/* HF row order from llama2.c's for one projection of n_heads heads (rows x cols). */
static void permute_rows(float *dst, const float *src, int n_heads, int head_size, int cols) {
    int half = head_size / 2;
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < half; i++)
                memcpy(dst + ((size_t)h * head_size + (size_t)j * half + i) * cols,
                       src + ((size_t)h * head_size + 2 * (size_t)i + j) * cols,
                       (size_t)cols * sizeof(float));
}

static evlm_status write_weights(const char *path, const evlm_map *m, const l2c_config *c) {
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    size_t KV = (size_t)c->kv_dim, L = (size_t)c->n_layers;
    const float *p = (const float *)(const void *)((const uint8_t *)m->data + 28);
    const float *emb = p;
    p += V * D;
    const float *rms_att = p;
    p += L * D;
    const float *wq = p;
    p += L * D * D;
    const float *wk = p;
    p += L * KV * D;
    const float *wv = p;
    p += L * KV * D;
    const float *wo = p;
    p += L * D * D;
    const float *rms_ffn = p;
    p += L * D;
    const float *w1 = p;
    p += L * H * D;
    const float *w2 = p;
    p += L * D * H;
    const float *w3 = p;
    p += L * H * D;
    const float *rms_final = p;
    p += D;
    p += (size_t)c->seq_len * (size_t)c->head_size; /* freq_cis_real + freq_cis_imag */
    const float *wcls = c->shared ? NULL : p;

    size_t n_t = 2 + 9 * L + (c->shared ? 0 : 1);
    evlm_tensor *ts = calloc(n_t, sizeof *ts);
    char(*names)[96] = calloc(n_t, sizeof *names);
    float *perm = malloc(L * (D * D + KV * D) * sizeof(float));
    if (!ts || !names || !perm) {
        free(ts);
        free(names);
        free(perm);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t k = 0;
#define ADD(rows, cols, data, ...)                                                                 \
    do {                                                                                           \
        snprintf(names[k], sizeof names[k], __VA_ARGS__);                                          \
        ts[k] = mat(names[k], data, rows, cols);                                                   \
        k++;                                                                                       \
    } while (0)
    ADD((int64_t)V, (int64_t)D, emb, "model.embed_tokens.weight");
    for (size_t l = 0; l < L; l++) {
        float *q = perm + l * (D * D + KV * D), *kk = q + D * D;
        permute_rows(q, wq + l * D * D, c->n_heads, c->head_size, c->dim);
        permute_rows(kk, wk + l * KV * D, c->n_kv_heads, c->head_size, c->dim);
        ADD(0, (int64_t)D, rms_att + l * D, "model.layers.%zu.input_layernorm.weight", l);
        ADD((int64_t)D, (int64_t)D, q, "model.layers.%zu.self_attn.q_proj.weight", l);
        ADD((int64_t)KV, (int64_t)D, kk, "model.layers.%zu.self_attn.k_proj.weight", l);
        ADD((int64_t)KV, (int64_t)D, wv + l * KV * D, "model.layers.%zu.self_attn.v_proj.weight",
            l);
        ADD((int64_t)D, (int64_t)D, wo + l * D * D, "model.layers.%zu.self_attn.o_proj.weight", l);
        ADD(0, (int64_t)D, rms_ffn + l * D, "model.layers.%zu.post_attention_layernorm.weight", l);
        ADD((int64_t)H, (int64_t)D, w1 + l * H * D, "model.layers.%zu.mlp.gate_proj.weight", l);
        ADD((int64_t)D, (int64_t)H, w2 + l * D * H, "model.layers.%zu.mlp.down_proj.weight", l);
        ADD((int64_t)H, (int64_t)D, w3 + l * H * D, "model.layers.%zu.mlp.up_proj.weight", l);
    }
    ADD(0, (int64_t)D, rms_final, "model.norm.weight");
    if (wcls) ADD((int64_t)V, (int64_t)D, wcls, "lm_head.weight");
#undef ADD
    EVLM_ASSERT(k == n_t);
    evlm_status st = evlm_safetensors_write(path, ts, n_t);
    free(ts);
    free(names);
    free(perm);
    return st;
}

static evlm_status write_configs(const char *out_dir, const l2c_config *c) {
    evlm_str s = {0};
    evlm_status st =
        evlm_str_appendf(&s,
                         "{\n"
                         "  \"architectures\": [\"LlamaForCausalLM\"],\n"
                         "  \"attention_bias\": false,\n"
                         "  \"attention_dropout\": 0.0,\n"
                         "  \"bos_token_id\": 1,\n"
                         "  \"eos_token_id\": 2,\n"
                         "  \"head_dim\": %d,\n"
                         "  \"hidden_act\": \"silu\",\n"
                         "  \"hidden_size\": %d,\n"
                         "  \"initializer_range\": 0.02,\n"
                         "  \"intermediate_size\": %d,\n"
                         "  \"max_position_embeddings\": %d,\n"
                         "  \"mlp_bias\": false,\n"
                         "  \"model_type\": \"llama\",\n"
                         "  \"num_attention_heads\": %d,\n"
                         "  \"num_hidden_layers\": %d,\n"
                         "  \"num_key_value_heads\": %d,\n"
                         "  \"pretraining_tp\": 1,\n"
                         "  \"rms_norm_eps\": 1e-05,\n"
                         "  \"rope_scaling\": null,\n"
                         "  \"rope_theta\": 10000.0,\n"
                         "  \"tie_word_embeddings\": %s,\n"
                         "  \"torch_dtype\": \"float32\",\n"
                         "  \"transformers_version\": \"4.46.0\",\n"
                         "  \"use_cache\": true,\n"
                         "  \"vocab_size\": %d\n"
                         "}\n",
                         c->head_size, c->dim, c->hidden_dim, c->seq_len, c->n_heads, c->n_layers,
                         c->n_kv_heads, c->shared ? "true" : "false", c->vocab_size);
    char path[4096];
    if (st == EVLM_OK) st = evlm_path_join(path, sizeof path, out_dir, "config.json");
    if (st == EVLM_OK) st = evlm_write_file_atomic(path, s.data, s.len);
    evlm_str_free(&s);
    EVLM_TRY(st);
    static const char gen[] = "{\n"
                              "  \"_from_model_config\": true,\n"
                              "  \"bos_token_id\": 1,\n"
                              "  \"eos_token_id\": 2,\n"
                              "  \"transformers_version\": \"4.46.0\"\n"
                              "}\n";
    EVLM_TRY(evlm_path_join(path, sizeof path, out_dir, "generation_config.json"));
    return evlm_write_file_atomic(path, gen, sizeof gen - 1);
}

/* ---- tokenizer -------------------------------------------------------------------------- */

typedef struct l2c_vocab {
    int n;
    char **piece; /* HF form: ' ' -> U+2581; ids 0..2 renamed */
    size_t *len;
    float *score;
    uint8_t *skip;  /* duplicate of an earlier piece: not in the vocab map */
    uint8_t *byte;  /* "<0xHH>" byte-fallback piece */
    int32_t *slots; /* hash of piece -> id (-1 empty) */
    size_t slot_cap;
} l2c_vocab;

static void vocab_free(l2c_vocab *v) {
    if (v->piece)
        for (int i = 0; i < v->n; i++) free(v->piece[i]);
    free(v->piece);
    free(v->len);
    free(v->score);
    free(v->skip);
    free(v->byte);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static size_t vocab_slot(const l2c_vocab *v, const char *s, size_t n) {
    size_t mask = v->slot_cap - 1, i = (size_t)hash_bytes(s, n) & mask;
    while (v->slots[i] >= 0) {
        int id = v->slots[i];
        if (v->len[id] == n && memcmp(v->piece[id], s, n) == 0) break;
        i = (i + 1) & mask;
    }
    return i;
}

static int vocab_find(const l2c_vocab *v, const char *s, size_t n) {
    return v->slots[vocab_slot(v, s, n)];
}

/* Strict UTF-8 (no overlongs, surrogates or NUL). */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < (size_t)len) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

static int is_hex(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static int is_byte_piece(const uint8_t *s, size_t n) {
    return n == 6 && memcmp(s, "<0x", 3) == 0 && is_hex(s[3]) && is_hex(s[4]) && s[5] == '>';
}

static evlm_status read_tokenizer(const char *path, int n_vocab, l2c_vocab *v) {
    memset(v, 0, sizeof *v);
    char *buf;
    size_t size;
    EVLM_TRY(evlm_read_file(path, MAX_TOKENIZER_FILE, &buf, &size));
    const uint8_t *p = (const uint8_t *)buf, *end = p + size;
    evlm_status st = EVLM_OK;
    v->n = n_vocab;
    v->piece = calloc((size_t)n_vocab, sizeof *v->piece);
    v->len = calloc((size_t)n_vocab, sizeof *v->len);
    v->score = calloc((size_t)n_vocab, sizeof *v->score);
    v->skip = calloc((size_t)n_vocab, 1);
    v->byte = calloc((size_t)n_vocab, 1);
    v->slot_cap = 16;
    while (v->slot_cap < (size_t)n_vocab * 2) v->slot_cap *= 2;
    v->slots = malloc(v->slot_cap * sizeof *v->slots);
    if (!v->piece || !v->len || !v->score || !v->skip || !v->byte || !v->slots) {
        st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memset(v->slots, 0xff, v->slot_cap * sizeof *v->slots);
    if (size < 4) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: %zu bytes, too short for max_token_length", path,
                        size);
        goto done;
    }
    int32_t max_len = rd_i32(p);
    p += 4;
    if (max_len < 1 || max_len > MAX_TOKEN_LEN) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: max_token_length %d is out of range [1, %d]", path,
                        max_len, MAX_TOKEN_LEN);
        goto done;
    }
    static const char *special[3] = {"<unk>", "<s>", "</s>"};
    for (int id = 0; id < n_vocab; id++) {
        size_t off = (size_t)(p - (const uint8_t *)buf);
        if (end - p < 8) {
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s: truncated at byte %zu: piece %d of %d is missing (the model's "
                            "vocab_size is %d)",
                            path, off, id, n_vocab, n_vocab);
            goto done;
        }
        float score = rd_f32(p);
        int32_t len = rd_i32(p + 4);
        p += 8;
        if (!isfinite(score)) {
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: piece %d (byte %zu): score is not finite", path,
                            id, off);
            goto done;
        }
        if (len < 1 || len > max_len || len > end - p) {
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s: piece %d (byte %zu): length %d is out of range [1, %d] or past "
                            "the end of the file",
                            path, id, off, len, max_len);
            goto done;
        }
        const uint8_t *s = p;
        p += len;
        if (!valid_utf8(s, (size_t)len)) {
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: piece %d (byte %zu) is not valid UTF-8", path, id,
                            off);
            goto done;
        }
        v->score[id] = score;
        v->byte[id] = (uint8_t)is_byte_piece(s, (size_t)len);
        evlm_str hf = {0};
        if (id < 3) {
            st = evlm_str_appendz(&hf, special[id]);
        } else {
            for (int32_t i = 0; i < len && st == EVLM_OK; i++)
                st = s[i] == ' ' ? evlm_str_appendz(&hf, SPACE_MARK)
                                 : evlm_str_append(&hf, (const char *)s + i, 1);
        }
        if (st != EVLM_OK) {
            evlm_str_free(&hf);
            goto done;
        }
        v->piece[id] = hf.data;
        v->len[id] = hf.len;
        size_t slot = vocab_slot(v, hf.data, hf.len);
        if (v->slots[slot] >= 0)
            v->skip[id] = 1; /* duplicate: the first id keeps the piece */
        else
            v->slots[slot] = id;
    }
    if (p != end)
        st = evlm__fail(EVLM_ERR_FORMAT,
                        "%s: %zu trailing bytes after the %d pieces (vocabulary larger than the "
                        "model's?)",
                        path, (size_t)(end - p), n_vocab);
done:
    free(buf);
    if (st != EVLM_OK) vocab_free(v);
    return st;
}

static evlm_status json_string(evlm_str *s, const char *z, size_t n) {
    EVLM_TRY(evlm_str_append(s, "\"", 1));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)z[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            EVLM_TRY(evlm_str_append(s, e, 2));
        } else if (c < 0x20) {
            EVLM_TRY(evlm_str_appendf(s, "\\u%04x", c));
        } else {
            EVLM_TRY(evlm_str_append(s, z + i, 1));
        }
    }
    return evlm_str_append(s, "\"", 1);
}

typedef struct merge {
    float score;
    int id;  /* merged piece t */
    int pos; /* byte offset of the split */
} merge;

static int cmp_merge(const void *pa, const void *pb) {
    const merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* An ordinary piece (not special, not a byte piece, not a duplicate). */
static int ordinary(const l2c_vocab *v, int id) {
    return id >= 3 && !v->byte[id] && !v->skip[id];
}

static evlm_status collect_merges(const l2c_vocab *v, merge **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t n = 0, cap = 0;
    merge *m = NULL;
    for (int id = 0; id < v->n; id++) {
        if (!ordinary(v, id)) continue;
        const char *t = v->piece[id];
        for (size_t pos = 1; pos < v->len[id]; pos++) {
            if (((uint8_t)t[pos] & 0xc0) == 0x80) continue; /* inside a character */
            int a = vocab_find(v, t, pos), b = vocab_find(v, t + pos, v->len[id] - pos);
            if (a < 0 || b < 0 || !ordinary(v, a) || !ordinary(v, b)) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                merge *nm = realloc(m, cap * sizeof *nm);
                if (!nm) {
                    free(m);
                    return evlm__fail(EVLM_ERR_NOMEM, "tokenizer merges: out of memory");
                }
                m = nm;
            }
            m[n++] = (merge){v->score[id], id, (int)pos};
        }
    }
    if (n) qsort(m, n, sizeof *m, cmp_merge);
    *out = m;
    *n_out = n;
    return EVLM_OK;
}

static evlm_status tokenizer_json(const l2c_vocab *v, evlm_str *s) {
    static const char *special[3] = {"<unk>", "<s>", "</s>"};
    EVLM_TRY(evlm_str_appendz(s, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n"
                                 "  \"padding\": null,\n  \"added_tokens\": [\n"));
    for (int i = 0; i < 3; i++)
        EVLM_TRY(evlm_str_appendf(s,
                                  "    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, "
                                  "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                                  "\"special\": true}%s\n",
                                  i, special[i], i < 2 ? "," : ""));
    EVLM_TRY(evlm_str_appendz(
        s,
        "  ],\n"
        "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
        "{\"type\": \"Prepend\", \"prepend\": \"" SPACE_MARK "\"}, "
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SPACE_MARK
        "\"}]},\n"
        "  \"pre_tokenizer\": null,\n"
        "  \"post_processor\": {\"type\": \"TemplateProcessing\", "
        "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
        "\"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
        "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 1}}, "
        "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
        "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},\n"
        "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \"" SPACE_MARK
        "\"}, \"content\": \" \"}, "
        "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
        "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n"
        "  \"model\": {\n"
        "    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": \"<unk>\",\n"
        "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
        "    \"fuse_unk\": true,\n    \"byte_fallback\": true,\n    \"ignore_merges\": false,\n"
        "    \"vocab\": {"));
    int first = 1;
    for (int id = 0; id < v->n; id++) {
        if (v->skip[id]) continue;
        EVLM_TRY(evlm_str_appendz(s, first ? "\n      " : ",\n      "));
        first = 0;
        EVLM_TRY(json_string(s, v->piece[id], v->len[id]));
        EVLM_TRY(evlm_str_appendf(s, ": %d", id));
    }
    EVLM_TRY(evlm_str_appendz(s, "\n    },\n    \"merges\": ["));
    merge *m;
    size_t n_m;
    EVLM_TRY(collect_merges(v, &m, &n_m));
    evlm_status st = EVLM_OK;
    for (size_t i = 0; i < n_m && st == EVLM_OK; i++) {
        const char *t = v->piece[m[i].id];
        size_t pos = (size_t)m[i].pos;
        st = evlm_str_appendz(s, i ? ",\n      [" : "\n      [");
        if (st == EVLM_OK) st = json_string(s, t, pos);
        if (st == EVLM_OK) st = evlm_str_appendz(s, ", ");
        if (st == EVLM_OK) st = json_string(s, t + pos, v->len[m[i].id] - pos);
        if (st == EVLM_OK) st = evlm_str_appendz(s, "]");
    }
    free(m);
    EVLM_TRY(st);
    return evlm_str_appendz(s, "\n    ]\n  }\n}\n");
}

static evlm_status write_tokenizer(const char *out_dir, const l2c_vocab *v) {
    evlm_str s = {0};
    evlm_status st = tokenizer_json(v, &s);
    char path[4096];
    if (st == EVLM_OK) st = evlm_path_join(path, sizeof path, out_dir, "tokenizer.json");
    if (st == EVLM_OK) st = evlm_write_file_atomic(path, s.data, s.len);
    evlm_str_free(&s);
    EVLM_TRY(st);
    static const char cfg[] = "{\n"
                              "  \"add_bos_token\": true,\n"
                              "  \"add_eos_token\": false,\n"
                              "  \"bos_token\": \"<s>\",\n"
                              "  \"eos_token\": \"</s>\",\n"
                              "  \"unk_token\": \"<unk>\",\n"
                              "  \"tokenizer_class\": \"LlamaTokenizerFast\"\n"
                              "}\n";
    EVLM_TRY(evlm_path_join(path, sizeof path, out_dir, "tokenizer_config.json"));
    return evlm_write_file_atomic(path, cfg, sizeof cfg - 1);
}

/* ---- conversion ------------------------------------------------------------------------- */

evlm_status evlm_llama2c_convert(const char *model_bin, const char *tokenizer_bin,
                                 const char *out_dir) {
    if (!model_bin || !tokenizer_bin || !out_dir)
        return evlm__fail(EVLM_ERR_ARG, "llama2c convert: NULL path");
    if (!host_is_little_endian())
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: llama2.c import needs a little-endian host",
                          model_bin);
    evlm_map m;
    EVLM_TRY(evlm_map_file(model_bin, &m));
    l2c_config c;
    memset(&c, 0, sizeof c);
    l2c_vocab v;
    memset(&v, 0, sizeof v);
    /* read and check both inputs before writing anything */
    evlm_status st = read_header(model_bin, &m, &c);
    if (st == EVLM_OK) st = read_tokenizer(tokenizer_bin, c.vocab_size, &v);
    if (st == EVLM_OK) st = evlm_mkdir(out_dir);
    char path[4096];
    if (st == EVLM_OK) st = evlm_path_join(path, sizeof path, out_dir, "model.safetensors");
    if (st == EVLM_OK) st = write_weights(path, &m, &c);
    if (st == EVLM_OK) st = write_configs(out_dir, &c);
    if (st == EVLM_OK) st = write_tokenizer(out_dir, &v);
    vocab_free(&v);
    evlm_unmap(&m);
    return st;
}
