/*
 * test_llamacpp.c - the files evlm writes in llama.cpp's layout, checked against what
 * llama.cpp's loaders require (tests/data/llamacpp_required.json, read from llama.cpp's source):
 * every key with its type, every tensor with its name, shape and type (1-D tensors F32), and no
 * tensor the list does not name (llama.cpp's text loader refuses extra tensors). Files: the
 * fixtures llama-tiny (text), smolvlm-tiny (idefics3) and qwen2vl-tiny (qwen2vl_merger) and the
 * bundled scene model (idefics3), each with its dtypes kept and with Q8_0 matrices.
 *
 * Then the pair read back from llama.cpp's metadata alone: every "evlm.*" key stripped from the
 * language model file (the tokenizer, chat template, config and image processor rebuilt from
 * tokenizer.ggml.*, tokenizer.chat_template, <arch>.* and clip.vision.*), loaded with its mmproj:
 * the same prompt ids and bit-identical prompt logits as the Hugging Face folder (dtypes kept:
 * BF16 -> F32 for 1-D tensors is exact; the folder seen without its config's "dtype", which
 * llama.cpp's metadata does not carry: see dtype_free_view), and on the scene model the same
 * greedy answers (ids) on three scenes-dev items.
 * Also: a hand-built ggml Q5_0 tensor (llama-quantize's Q4_K_M fallback) reads as the exact Q8_0
 * blocks. Not here: running llama.cpp itself (make interop).
 */
#include "core/json.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

/* ---- the list ---------------------------------------------------------------------------- */

typedef struct sym {
    const char *name;
    int64_t v;
} sym;

/* "a*b/c" over numbers and symbols, left to right; -1 for "*" (any). */
static int64_t eval(const char *e, const sym *s, int ns, bool *ok) {
    if (!strcmp(e, "*")) return -1;
    int64_t acc = 0;
    char op = '=';
    while (*e) {
        char tok[64];
        size_t n = strcspn(e, "*/");
        snprintf(tok, sizeof tok, "%.*s", (int)n, e);
        int64_t v = -1;
        if (tok[0] >= '0' && tok[0] <= '9') v = atoll(tok);
        for (int i = 0; i < ns && v < 0; i++)
            if (!strcmp(s[i].name, tok)) v = s[i].v;
        if (v < 0) *ok = false;
        acc = op == '=' ? v : op == '*' ? acc * v : (v ? acc / v : 0);
        e += n;
        if (*e) op = *e++;
    }
    return acc;
}

static uint32_t u32_or(const evlm_gguf *g, const char *key, uint32_t dflt) {
    uint32_t v = dflt;
    if (evlm_gguf_find_key(g, key) >= 0 && evlm_gguf_get_u32(g, key, &v) != EVLM_OK) v = dflt;
    return v;
}

static void check_keys(const evlm_gguf *g, const cJSON *keys, const char *what) {
    const cJSON *k;
    cJSON_ArrayForEach(k, keys) {
        const char *name = cJSON_GetObjectItem(k, "name")->valuestring;
        const char *type = cJSON_GetObjectItem(k, "type")->valuestring;
        bool req = !cJSON_IsFalse(cJSON_GetObjectItem(k, "required"));
        long i = evlm_gguf_find_key(g, name);
        CHECKF(i >= 0 || !req, "%s: key %s missing", what, name);
        if (i < 0) continue;
        evlm_gguf_vtype el, t = evlm_gguf_kv_type(g, (size_t)i, &el);
        evlm_gguf_vtype want = !strcmp(type, "u32")    ? EVLM_GGUF_U32
                               : !strcmp(type, "f32")  ? EVLM_GGUF_F32
                               : !strcmp(type, "str")  ? EVLM_GGUF_STRING
                               : !strcmp(type, "bool") ? EVLM_GGUF_BOOL
                                                       : EVLM_GGUF_ARRAY;
        evlm_gguf_vtype want_el = !strcmp(type, "arr_str")   ? EVLM_GGUF_STRING
                                  : !strcmp(type, "arr_i32") ? EVLM_GGUF_I32
                                  : !strcmp(type, "arr_f32") ? EVLM_GGUF_F32
                                                             : want;
        CHECKF(t == want && el == want_el, "%s: key %s is not %s", what, name, type);
    }
}

/* Every listed tensor present (when required) with its shape and type; no other tensor. */
static void check_tensors(const evlm_gguf *g, const cJSON *list, int n_blocks, const sym *s, int ns,
                          const char *what) {
    size_t seen = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const char *pat = cJSON_GetObjectItem(e, "name")->valuestring;
        bool per_block = strstr(pat, "{i}") != NULL;
        bool req = !cJSON_IsFalse(cJSON_GetObjectItem(e, "required"));
        bool f32 = cJSON_IsTrue(cJSON_GetObjectItem(e, "f32"));
        bool conv = cJSON_IsTrue(cJSON_GetObjectItem(e, "conv"));
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        for (int b = 0; b < (per_block ? n_blocks : 1); b++) {
            char name[256];
            const char *at = strstr(pat, "{i}");
            if (at)
                snprintf(name, sizeof name, "%.*s%d%s", (int)(at - pat), pat, b, at + 3);
            else
                snprintf(name, sizeof name, "%s", pat);
            const evlm_tensor *t = evlm_gguf_tensor_find(g, name);
            CHECKF(t || !req, "%s: tensor %s missing", what, name);
            if (!t) continue;
            seen++;
            int nd = cJSON_GetArraySize(shape);
            bool ok = t->n_dims == nd;
            for (int d = 0; d < nd && ok; d++) {
                bool sym_ok = true;
                int64_t v = eval(cJSON_GetArrayItem(shape, d)->valuestring, s, ns, &sym_ok);
                CHECKF(sym_ok, "%s: %s: unknown symbol in the list", what, name);
                if (v >= 0 && v != t->ne[d]) ok = false;
            }
            CHECKF(ok, "%s: tensor %s has shape [%lld %lld %lld %lld] (%d dims)", what, name,
                   (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                   (long long)t->ne[3], t->n_dims);
            CHECKF(!f32 || t->type == EVLM_TYPE_F32, "%s: tensor %s is %s, not F32", what, name,
                   evlm_type_name(t->type));
            CHECKF(!conv || t->type == EVLM_TYPE_F32 || t->type == EVLM_TYPE_F16,
                   "%s: tensor %s is %s, not F32 / F16", what, name, evlm_type_name(t->type));
            CHECKF(t->n_dims > 1 || t->type == EVLM_TYPE_F32, "%s: 1-D tensor %s is %s", what, name,
                   evlm_type_name(t->type));
        }
    }
    CHECKF(seen == evlm_gguf_tensor_count(g), "%s: %zu tensors, %zu of them in the list", what,
           evlm_gguf_tensor_count(g), seen);
}

static void check_text(const cJSON *req, const char *path) {
    evlm_gguf *g = NULL;
    CHECK_OK(evlm_gguf_open(path, &g));
    if (!g) return;
    const char *s;
    size_t n;
    char arch[32] = "";
    if (evlm_gguf_get_str(g, "general.architecture", &s, &n) == EVLM_OK && n < sizeof arch)
        snprintf(arch, sizeof arch, "%.*s", (int)n, s);
    const cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(req, "text"), arch);
    CHECKF(a != NULL, "%s: architecture '%s' not in the list", path, arch);
    if (a) {
        char k[128];
#define KEY(x) (snprintf(k, sizeof k, "%s." x, arch), k)
        evlm_gguf_vtype el;
        size_t n_tok = 0;
        evlm_gguf_get_arr_n(g, "tokenizer.ggml.tokens", &el, &n_tok);
        int64_t n_embd = u32_or(g, KEY("embedding_length"), 0),
                n_head = u32_or(g, KEY("attention.head_count"), 1);
        sym s2[] = {
            {"n_embd", n_embd},
            {"n_ff", u32_or(g, KEY("feed_forward_length"), 0)},
            {"n_head", n_head},
            {"n_head_kv", u32_or(g, KEY("attention.head_count_kv"), (uint32_t)n_head)},
            {"n_embd_head", u32_or(g, KEY("attention.key_length"), (uint32_t)(n_embd / n_head))},
            {"n_vocab", u32_or(g, KEY("vocab_size"), (uint32_t)n_tok)},
        };
        int blocks = (int)u32_or(g, KEY("block_count"), 0);
#undef KEY
        check_keys(g, cJSON_GetObjectItem(a, "keys"), path);
        check_tensors(g, cJSON_GetObjectItem(a, "tensors"), blocks, s2, 6, path);
        size_t n_tt = 0;
        evlm_gguf_get_arr_n(g, "tokenizer.ggml.token_type", &el, &n_tt);
        CHECKF(n_tt == n_tok && n_tok > 0, "%s: %zu token types for %zu tokens", path, n_tt, n_tok);
        const evlm_tensor *emb = evlm_gguf_tensor_find(g, "token_embd.weight");
        CHECKF(emb && emb->ne[1] == (int64_t)n_tok, "%s: %zu tokens for the embedding's rows", path,
               n_tok);
    }
    evlm_gguf_close(g);
}

static void check_mmproj(const cJSON *req, const char *path) {
    evlm_gguf *g = NULL;
    CHECK_OK(evlm_gguf_open(path, &g));
    if (!g) return;
    const char *s;
    size_t n;
    char pt[64] = "";
    if (evlm_gguf_get_str(g, "clip.projector_type", &s, &n) == EVLM_OK && n < sizeof pt)
        snprintf(pt, sizeof pt, "%.*s", (int)n, s);
    const cJSON *mm = cJSON_GetObjectItem(req, "mmproj"), *p = cJSON_GetObjectItem(mm, pt);
    CHECKF(p != NULL, "%s: projector '%s' not in the list", path, pt);
    if (p) {
        int64_t patch = u32_or(g, "clip.vision.patch_size", 1),
                side = u32_or(g, "clip.vision.image_size", 0) / (patch ? patch : 1);
        uint32_t merge = !strcmp(pt, "idefics3")
                             ? u32_or(g, "clip.vision.projector.scale_factor", 2)
                             : u32_or(g, "clip.vision.spatial_merge_size", 2);
        sym s2[] = {
            {"n_embd", u32_or(g, "clip.vision.embedding_length", 0)},
            {"n_ff", u32_or(g, "clip.vision.feed_forward_length", 0)},
            {"proj_dim", u32_or(g, "clip.vision.projection_dim", 0)},
            {"patch", patch},
            {"n_patches", side * side},
            {"n_merge", merge},
        };
        check_keys(g, cJSON_GetObjectItem(mm, "common_keys"), path);
        check_keys(g, cJSON_GetObjectItem(p, "keys"), path);
        check_tensors(g, cJSON_GetObjectItem(p, "tensors"),
                      (int)u32_or(g, "clip.vision.block_count", 0), s2, 6, path);
        float mean[3];
        CHECK_OK(evlm_gguf_get_arr_f32(g, "clip.vision.image_mean", mean, 3));
    }
    evlm_gguf_close(g);
}

/* ---- stripping evlm's keys ------------------------------------------------------------------ */

/* path without its "evlm.*" keys, to out (tensors as they are). */
static evlm_status strip(const char *path, const char *out) {
    evlm_gguf *g;
    EVLM_TRY(evlm_gguf_open(path, &g));
    evlm_gguf_writer *w;
    evlm_status st = evlm_gguf_writer_new(&w);
    for (size_t i = 0; st == EVLM_OK && i < evlm_gguf_kv_count(g); i++) {
        const char *k = evlm_gguf_kv_key(g, i);
        if (!strncmp(k, "evlm.", 5) || !strcmp(k, "general.alignment")) continue;
        evlm_gguf_vtype el, t = evlm_gguf_kv_type(g, i, &el);
        const char *s;
        size_t n;
        uint32_t u;
        int32_t v;
        float f;
        bool b;
        switch (t) {
        case EVLM_GGUF_STRING:
            st = evlm_gguf_get_str(g, k, &s, &n);
            if (st == EVLM_OK) st = evlm_gguf_writer_set_strn(w, k, s, n);
            break;
        case EVLM_GGUF_U32:
            st = evlm_gguf_get_u32(g, k, &u);
            if (st == EVLM_OK) st = evlm_gguf_writer_set_u32(w, k, u);
            break;
        case EVLM_GGUF_I32:
            st = evlm_gguf_get_i32(g, k, &v);
            if (st == EVLM_OK) st = evlm_gguf_writer_set_i32(w, k, v);
            break;
        case EVLM_GGUF_F32:
            st = evlm_gguf_get_f32(g, k, &f);
            if (st == EVLM_OK) st = evlm_gguf_writer_set_f32(w, k, f);
            break;
        case EVLM_GGUF_BOOL:
            st = evlm_gguf_get_bool(g, k, &b);
            if (st == EVLM_OK) st = evlm_gguf_writer_set_bool(w, k, b);
            break;
        case EVLM_GGUF_ARRAY: {
            st = evlm_gguf_get_arr_n(g, k, &el, &n);
            if (st != EVLM_OK) break;
            if (el == EVLM_GGUF_STRING) {
                const char **ss = calloc(n + 1, sizeof *ss);
                size_t *ls = calloc(n + 1, sizeof *ls);
                for (size_t j = 0; j < n && st == EVLM_OK; j++)
                    st = evlm_gguf_get_arr_str(g, k, j, &ss[j], &ls[j]);
                if (st == EVLM_OK) st = evlm_gguf_writer_set_arr_str(w, k, ss, ls, n);
                free(ss);
                free(ls);
            } else if (el == EVLM_GGUF_F32) {
                float *a = calloc(n + 1, sizeof *a);
                st = evlm_gguf_get_arr_f32(g, k, a, n);
                if (st == EVLM_OK) st = evlm_gguf_writer_set_arr_f32(w, k, a, n);
                free(a);
            } else {
                int32_t *a = calloc(n + 1, sizeof *a);
                st = evlm_gguf_get_arr_i32(g, k, a, n);
                if (st == EVLM_OK) st = evlm_gguf_writer_set_arr_i32(w, k, a, n);
                free(a);
            }
            break;
        }
        default:
            st = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: key %s: type %d not copied", path, k, t);
        }
    }
    for (size_t i = 0; st == EVLM_OK && i < evlm_gguf_tensor_count(g); i++) {
        const evlm_tensor *t = evlm_gguf_tensor_at(g, i);
        st = evlm_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    if (st == EVLM_OK) st = evlm_gguf_writer_write(w, out, NULL, NULL);
    evlm_gguf_writer_free(w);
    evlm_gguf_close(g);
    return st;
}

/* ---- models ---------------------------------------------------------------------------------- */

static evlm_type all_q8(void *ctx, const char *name, const evlm_tensor *t,
                        const evlm_tensor **src) {
    (void)src;
    (void)ctx;
    (void)name;
    if (t->n_dims == 2 && t->ne[0] % 32 == 0 &&
        (t->type == EVLM_TYPE_BF16 || t->type == EVLM_TYPE_F16 || t->type == EVLM_TYPE_F32))
        return EVLM_TYPE_Q8_0;
    return t->type;
}

static evlm_model *load(const char *path, const char *mmproj) {
    evlm_model_params mp = evlm_model_default_params();
    mp.mmproj = mmproj;
    mp.n_threads = 2;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(path, &mp, &m));
    return m;
}

/* Prompt ids and all prompt logits. */
static float *logits_of(evlm_model *m, const char *text, const char *image, int32_t **ids,
                        size_t *n_out) {
    int V = evlm_model_n_vocab(m);
    evlm_image_input img = {.path = image};
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, image ? 1 : 0, &p));
    if (!p) return NULL;
    size_t n;
    const int32_t *pi = evlm_prompt_ids(p, &n);
    *ids = malloc(n * sizeof **ids);
    memcpy(*ids, pi, n * sizeof **ids);
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = (int)n + 4;
    evlm_context *c = NULL;
    float *lg = malloc(sizeof(float) * n * (size_t)V);
    CHECK_OK(evlm_context_new(m, &cp, &c));
    if (c) CHECK_OK(evlm_decode_prompt(c, p, lg, true));
    *n_out = n;
    evlm_context_free(c);
    evlm_prompt_free(p);
    return lg;
}

/* The greedy answer ids (up to 24) to a chat question about an image. */
static int answer(evlm_model *m, const char *question, const char *image, int32_t *ids) {
    char *text = NULL;
    CHECK_OK(evlm_chat_prompt(m, question, 1, &text));
    if (!text) return -1;
    evlm_image_input img = {.path = image};
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, 1, &p));
    free(text);
    if (!p) return -1;
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 1024;
    evlm_context *c = NULL;
    CHECK_OK(evlm_context_new(m, &cp, &c));
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = 24;
    evlm_gen_result r = {0};
    int n = -1;
    if (c && evlm_generate(c, p, &gp, NULL, NULL, &r) == EVLM_OK) {
        n = r.n_gen;
        memcpy(ids, r.ids, (size_t)n * sizeof *ids);
    }
    evlm_gen_result_free(&r);
    evlm_context_free(c);
    evlm_prompt_free(p);
    return n;
}

/* A view of folder dir in view (symbolic links) whose config.json has no "dtype" /
 * "torch_dtype": the precision llama.cpp's metadata does not carry (evlm computes RoPE tables in
 * bf16 for a bf16 model, as transformers does; from llama.cpp's metadata in f32, as llama.cpp). */
static void dtype_free_view(const char *dir, const char *view) {
    static const char *const files[] = {"model.safetensors",       "tokenizer.json",
                                        "tokenizer_config.json",   "chat_template.json",
                                        "chat_template.jinja",     "preprocessor_config.json",
                                        "processor_config.json",   "generation_config.json",
                                        "special_tokens_map.json", "added_tokens.json"};
    char a[8400], b[8400];
    CHECK(mkdir(view, 0700) == 0);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(a, sizeof a, "%s/%s", dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", view, files[i]);
        if (access(a, R_OK) == 0) CHECK(symlink(a, b) == 0);
    }
    snprintf(a, sizeof a, "%s/config.json", dir);
    cJSON *cfg = NULL;
    CHECK_OK(evlm_json_load(a, &cfg));
    if (!cfg) return;
    cJSON *parts[3] = {cfg, cJSON_GetObjectItem(cfg, "text_config"),
                       cJSON_GetObjectItem(cfg, "vision_config")};
    for (int i = 0; i < 3; i++) {
        cJSON_DeleteItemFromObject(parts[i], "dtype");
        cJSON_DeleteItemFromObject(parts[i], "torch_dtype");
    }
    char *text = cJSON_Print(cfg);
    snprintf(b, sizeof b, "%s/config.json", view);
    FILE *f = fopen(b, "w");
    CHECK(f && text && fputs(text, f) >= 0);
    if (f) fclose(f);
    free(text);
    cJSON_Delete(cfg);
}

/* Removes the view made by dtype_free_view. */
static void remove_view(const char *view) {
    static const char *const files[] = {"model.safetensors",
                                        "tokenizer.json",
                                        "tokenizer_config.json",
                                        "chat_template.json",
                                        "chat_template.jinja",
                                        "preprocessor_config.json",
                                        "processor_config.json",
                                        "generation_config.json",
                                        "special_tokens_map.json",
                                        "added_tokens.json",
                                        "config.json"};
    char b[8400];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(b, sizeof b, "%s/%s", view, files[i]);
        unlink(b);
    }
    rmdir(view);
}

/* ---- ggml Q5_0 read as Q8_0 ----------------------------------------------------------------- */

static void put_u32(uint8_t **p, uint32_t v) {
    memcpy(*p, &v, 4);
    *p += 4;
}
static void put_u64(uint8_t **p, uint64_t v) {
    memcpy(*p, &v, 8);
    *p += 8;
}

/* A GGUF image with one ggml Q5_0 tensor "w" of 2 rows x 64 columns built by hand from chosen
 * 5-bit values q and scales; the reader must give Q8_0 blocks holding q - 16 and the same
 * scale (x = d * (q - 16) in both). */
static void check_q5_0(void) {
    uint8_t img[1024] = {0}, *p = img;
    memcpy(p, "GGUF", 4);
    p += 4;
    put_u32(&p, 3);
    put_u64(&p, 1); /* tensors */
    put_u64(&p, 0); /* keys */
    put_u64(&p, 1);
    *p++ = 'w';
    put_u32(&p, 2);
    put_u64(&p, 64);
    put_u64(&p, 2);
    put_u32(&p, 6); /* GGML_TYPE_Q5_0 */
    put_u64(&p, 0);
    p = img + ((size_t)(p - img) + 31) / 32 * 32;
    int q[4][32];
    const uint16_t d[4] = {0x3c00, 0x3800, 0xb400, 0x2e66}; /* 1, 0.5, -0.25, ~0.1 */
    for (int b = 0; b < 4; b++) {
        uint32_t qh = 0;
        memcpy(p, &d[b], 2);
        for (int j = 0; j < 32; j++) q[b][j] = (j * 7 + b * 5) % 32;
        for (int j = 0; j < 16; j++) {
            p[6 + j] = (uint8_t)((q[b][j] & 15) | (q[b][j + 16] & 15) << 4);
            qh |= (uint32_t)(q[b][j] >> 4) << j | (uint32_t)(q[b][j + 16] >> 4) << (j + 16);
        }
        memcpy(p + 2, &qh, 4);
        p += 22;
    }
    evlm_gguf *g = NULL;
    CHECK_OK(evlm_gguf_from_memory("q5_0.gguf", img, (size_t)(p - img), &g));
    const evlm_tensor *t = g ? evlm_gguf_tensor_find(g, "w") : NULL;
    CHECK(t && t->type == EVLM_TYPE_Q8_0 && t->ne[0] == 64 && t->ne[1] == 2);
    int bad = 0;
    for (int b = 0; t && b < 4; b++) {
        const uint8_t *y = (const uint8_t *)t->data + b * 34;
        uint16_t dd;
        memcpy(&dd, y, 2);
        bad += dd != d[b];
        for (int j = 0; j < 32; j++) bad += (int8_t)y[2 + j] != q[b][j] - 16;
    }
    CHECKF(t && !bad, "Q5_0 read as Q8_0: %d values differ", bad);
    evlm_gguf_close(g);
}

int main(void) {
    check_q5_0();
    const char *shared = test_shared_dir(), *src = getenv("EVLM_SRC");
    if (!shared) return 77;
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/llamacpp_required.json", src ? src : ".");
    cJSON *req = NULL;
    CHECK_OK(evlm_json_load(path, &req));
    if (!req) return test_done();
    /* The folder is compared through its dtype-free view (dtype_free_view): bit-identical
     * logits (exact), except Qwen2-VL: its BF16 Conv3d kernel is stored F32 in the mmproj
     * (llama.cpp's convolution takes F16 / F32 only; the widening is exact) and evlm's patch
     * matmul then runs its F32 kernel instead of the BF16 one (another summation order):
     * 1e-3 * max |logit| there. */
    static const struct {
        const char *dir, *prompt;
        bool image, vision, exact;
    } cases[] = {
        {"fixtures/llama-tiny", "<|im_start|>user\nWhat is a license?<|im_end|>\n", false, false,
         true},
        {"fixtures/smolvlm-tiny",
         "<|im_start|>User:<image>Describe the image.<end_of_utterance>\nAssistant:", true, true,
         true},
        {"fixtures/qwen2vl-tiny",
         "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n", true,
         true, false},
        {"scene", "<|im_start|>User:<image>Describe the image.<end_of_utterance>\nAssistant:", true,
         true, true},
    };
    char tmp[] = "/tmp/evlm_llamacpp_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char dir[4096], png[4200], lm[4200], mm[4200], bare[4200];
        if (!strcmp(cases[c].dir, "scene"))
            snprintf(dir, sizeof dir, "%s/models/scenes-vlm", src ? src : ".");
        else
            snprintf(dir, sizeof dir, "%s/%s", shared, cases[c].dir);
        snprintf(png, sizeof png, "%s/ref_image.png", dir);
        if (!strcmp(cases[c].dir, "scene"))
            snprintf(png, sizeof png, "%s/datasets/scenes-dev/fatigue_000.png", shared);
        snprintf(lm, sizeof lm, "%s/lm.gguf", tmp);
        snprintf(mm, sizeof mm, "%s/mmproj-lm.gguf", tmp);
        snprintf(bare, sizeof bare, "%s/bare.gguf", tmp);
        if (access(png, R_OK) != 0 && cases[c].image) {
            printf("SKIP %s: %s not found\n", cases[c].dir, png);
            continue;
        }
        /* Q8_0 matrices: the list */
        bool wrote = false;
        CHECK_OK(evlm_gguf_export_llamacpp(dir, lm, mm, &wrote, all_q8, NULL, NULL, 0, NULL, NULL));
        CHECKF(wrote == cases[c].vision, "%s: mmproj written: %d", dir, wrote);
        check_text(req, lm);
        if (wrote) check_mmproj(req, mm);
        unlink(mm);
        /* dtypes kept: the list, then llama.cpp's metadata alone against the folder */
        CHECK_OK(evlm_gguf_export_llamacpp(dir, lm, mm, &wrote, NULL, NULL, NULL, 0, NULL, NULL));
        check_text(req, lm);
        if (wrote) check_mmproj(req, mm);
        CHECK_OK(strip(lm, bare));
        char view[4200];
        snprintf(view, sizeof view, "%s/view", tmp);
        dtype_free_view(dir, view);
        evlm_model *a = load(view, NULL), *b = load(bare, wrote ? mm : NULL);
        const char *img = cases[c].image ? png : NULL;
        if (a && b) {
            int32_t *ia = NULL, *ib = NULL;
            size_t na = 0, nb = 0;
            float *la = logits_of(a, cases[c].prompt, img, &ia, &na);
            float *lb = logits_of(b, cases[c].prompt, img, &ib, &nb);
            int V = evlm_model_n_vocab(a);
            CHECKF(na == nb && na > 0 && ia && ib && !memcmp(ia, ib, na * sizeof *ia),
                   "%s: prompt ids differ (%zu vs %zu)", dir, na, nb);
            bool same = V == evlm_model_n_vocab(b) && na == nb && la && lb;
            float d = 0, mx = 1;
            for (size_t i = 0; same && i < na * (size_t)V; i++) {
                d = fmaxf(d, fabsf(la[i] - lb[i]));
                mx = fmaxf(mx, fabsf(la[i]));
            }
            CHECKF(same && (cases[c].exact ? d == 0 : d <= 1e-3f * mx),
                   "%s: logits from llama.cpp's metadata differ from the folder's by %g", dir,
                   (double)d);
            printf("%s: %zu prompt ids equal; logits from metadata only: max |diff| %.3g "
                   "(largest |logit| %.3g; %s)\n",
                   cases[c].dir, na, (double)d, (double)mx,
                   cases[c].exact ? "must be 0" : "bound 1e-3 * largest");
            free(la);
            free(lb);
            free(ia);
            free(ib);
        }
        if (a && b && !strcmp(cases[c].dir, "scene")) { /* greedy answers on scenes-dev items */
            char jl[4200];
            snprintf(jl, sizeof jl, "%s/datasets/scenes-dev/dev.jsonl", shared);
            FILE *f = fopen(jl, "r");
            char line[4096];
            int items = 0, same = 0;
            while (f && items < 6 && fgets(line, sizeof line, f)) {
                if (items++ % 2) continue; /* every other item: three scenarios' worth */
                cJSON *it = cJSON_Parse(line);
                char im[4200];
                snprintf(im, sizeof im, "%s/datasets/scenes-dev/%s", shared,
                         cJSON_GetObjectItem(it, "image")->valuestring);
                const char *q = cJSON_GetObjectItem(it, "question")->valuestring;
                int32_t ga[24], gb[24];
                int n1 = answer(a, q, im, ga), n2 = answer(b, q, im, gb);
                bool eq = n1 > 0 && n1 == n2 && !memcmp(ga, gb, (size_t)n1 * sizeof *ga);
                CHECKF(eq, "scene: '%s' on %s: answers differ", q, im);
                same += eq;
                cJSON_Delete(it);
            }
            if (f) fclose(f);
            printf("scene: %d of 3 scenes-dev answers equal from metadata only\n", same);
        }
        evlm_model_free(a);
        evlm_model_free(b);
        unlink(lm);
        unlink(mm);
        unlink(bare);
        remove_view(view);
    }
    rmdir(tmp);
    cJSON_Delete(req);
    return test_done();
}
