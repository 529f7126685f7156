/*
 * test_gguf.c - the GGUF container: the writer's bytes against a layout written out by hand
 * from the spec, a round trip of every metadata type and tensor type, data alignment, the
 * atomic writer (a failed or cancelled write leaves neither the file nor a temp file), name
 * mapping both ways for the three text prefixes and llama.cpp's Q/K row order, a table of
 * hostile headers built byte by byte (each must fail with a message naming the file), and,
 * with ../shared, the export of the llama-tiny and qwen2vl-tiny fixtures read back as weight
 * sets equal to the safetensors ones.
 *
 * EVLM_GGUF_CORPUS=dir writes the fuzz seed corpus (fuzz/corpus/fuzz_gguf) there.
 */
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "io/safetensors.h"
#include "quant/quants.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

static char g_dir[256];

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* files in g_dir whose name starts with `stem` */
static int count_files(const char *stem) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, stem, strlen(stem)) == 0) n++;
    if (d) closedir(d);
    return n;
}

static uint8_t *slurp(const char *path, size_t *n) {
    char *d = NULL;
    if (evlm_read_file(path, 1u << 30, &d, n) != EVLM_OK) return NULL;
    return (uint8_t *)d;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rndf(void) {
    return (float)(rnd() % 20001) / 10000.0f - 1.0f;
}

/* ---- a byte builder for hand-made files --------------------------------------------------- */

typedef struct bb {
    uint8_t d[8192];
    size_t n;
} bb;

static void b_raw(bb *b, const void *p, size_t n) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void b_le(bb *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) b->d[b->n++] = (uint8_t)(v >> (8 * i));
}
static void b_str(bb *b, const char *s) {
    b_le(b, strlen(s), 8);
    b_raw(b, s, strlen(s));
}
static void b_pad(bb *b, size_t a) {
    while (b->n % a) b->d[b->n++] = 0;
}
static void b_head(bb *b, uint64_t n_t, uint64_t n_kv) {
    b->n = 0;
    b_raw(b, "GGUF", 4);
    b_le(b, 3, 4);
    b_le(b, n_t, 8);
    b_le(b, n_kv, 8);
}
/* a tensor info: n_dims dims from ne */
static void b_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t off) {
    b_str(b, name);
    b_le(b, n_dims, 4);
    for (uint32_t i = 0; i < n_dims; i++) b_le(b, ne[i], 8);
    b_le(b, type, 4);
    b_le(b, off, 8);
}

/* ---- 1. the writer's bytes against the spec ----------------------------------------------- */

static void test_exact_bytes(void) {
    char path[512];
    tmp_path(path, sizeof path, "exact.gguf");
    evlm_gguf_writer *w;
    CHECK_OK(evlm_gguf_writer_new(&w));
    CHECK_OK(evlm_gguf_writer_set_u32(w, "a", 7));
    float data[2] = {1.0f, 2.0f};
    int64_t ne[1] = {2};
    CHECK_OK(evlm_gguf_writer_add_tensor(w, "t", EVLM_TYPE_F32, 1, ne, data));
    CHECK_OK(evlm_gguf_writer_write(w, path, NULL, NULL));
    evlm_gguf_writer_free(w);

    bb want = {0};
    b_head(&want, 1, 1);
    b_str(&want, "a");
    b_le(&want, 4, 4); /* u32 */
    b_le(&want, 7, 4);
    uint64_t ne2[1] = {2};
    b_tinfo(&want, "t", 1, ne2, 0, 0);
    CHECK(want.n == 74);
    b_pad(&want, 32);
    b_raw(&want, data, 8);
    b_pad(&want, 32);
    size_t n;
    uint8_t *got = slurp(path, &n);
    CHECKF(got && n == want.n && memcmp(got, want.d, n) == 0, "writer bytes differ (%zu vs %zu)", n,
           want.n);
    free(got);
}

/* ---- 2. round trip ------------------------------------------------------------------------ */

static const evlm_type k_types[] = {EVLM_TYPE_F32,  EVLM_TYPE_F16,  EVLM_TYPE_BF16,
                                    EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1};
#define N_TYPES (sizeof k_types / sizeof *k_types)

typedef struct rt_tensor {
    char name[32];
    int n_dims;
    int64_t ne[4];
    uint8_t *data;
    size_t nb;
} rt_tensor;

static void make_tensors(rt_tensor *ts) {
    for (size_t i = 0; i < N_TYPES; i++) {
        rt_tensor *t = &ts[i];
        evlm_type ty = k_types[i];
        snprintf(t->name, sizeof t->name, "t.%s", evlm_type_name(ty));
        t->n_dims = 1 + (int)(i % 3);
        int64_t ne[4] = {64, 3, 2, 1};
        for (int d = 0; d < 4; d++) t->ne[d] = d < t->n_dims ? ne[d] : 1;
        int64_t nel = t->ne[0] * t->ne[1] * t->ne[2], rows = nel / 64;
        t->nb = evlm_row_bytes(ty, 64) * (size_t)rows;
        t->data = malloc(t->nb);
        float row[64];
        for (int64_t r = 0; r < rows; r++) {
            for (int k = 0; k < 64; k++) row[k] = rndf();
            evlm_quantize_row(ty, row, t->data + (size_t)r * evlm_row_bytes(ty, 64), 64);
        }
    }
}

static int progress_calls;
static int count_progress(void *ctx, uint64_t done, uint64_t total) {
    (void)ctx;
    progress_calls++;
    return done > total;
}

static void test_round_trip(void) {
    char path[512];
    tmp_path(path, sizeof path, "rt.gguf");
    rt_tensor ts[N_TYPES];
    make_tensors(ts);
    evlm_gguf_writer *w;
    CHECK_OK(evlm_gguf_writer_new(&w));
    CHECK_OK(evlm_gguf_writer_set_str(w, "s", "h\xc3\xa9llo"));
    CHECK_OK(evlm_gguf_writer_set_strn(w, "s0", "a\0b", 3));
    CHECK_OK(evlm_gguf_writer_set_u32(w, "u32", 4000000000u));
    CHECK_OK(evlm_gguf_writer_set_i32(w, "i32", -123456));
    CHECK_OK(evlm_gguf_writer_set_u64(w, "u64", 0x123456789abcdefull));
    CHECK_OK(evlm_gguf_writer_set_f32(w, "f32", 1e-5f));
    CHECK_OK(evlm_gguf_writer_set_bool(w, "bt", true));
    CHECK_OK(evlm_gguf_writer_set_bool(w, "bf", false));
    const char *strs[3] = {"x", "", "z z"};
    CHECK_OK(evlm_gguf_writer_set_arr_str(w, "as", strs, NULL, 3));
    int32_t iv[4] = {1, -2, INT32_MAX, INT32_MIN};
    CHECK_OK(evlm_gguf_writer_set_arr_i32(w, "ai", iv, 4));
    float fv[3] = {0.5f, -1e30f, 3.25f};
    CHECK_OK(evlm_gguf_writer_set_arr_f32(w, "af", fv, 3));
    CHECK_OK(evlm_gguf_writer_set_arr_i32(w, "a_empty", NULL, 0));
    CHECK(evlm_gguf_writer_set_u32(w, "u32", 1) == EVLM_ERR_ARG);                /* key twice */
    CHECK(evlm_gguf_writer_set_u32(w, "general.alignment", 64) == EVLM_ERR_ARG); /* the writer's */
    for (size_t i = 0; i < N_TYPES; i++)
        CHECK_OK(evlm_gguf_writer_add_tensor(w, ts[i].name, k_types[i], ts[i].n_dims, ts[i].ne,
                                             ts[i].data));
    int64_t bad_ne[2] = {48, 2};
    CHECK(evlm_gguf_writer_add_tensor(w, "bad", EVLM_TYPE_Q4_0, 2, bad_ne, ts[0].data) ==
          EVLM_ERR_ARG);
    CHECK(evlm_gguf_writer_add_tensor(w, ts[0].name, EVLM_TYPE_F32, 1, ts[0].ne, ts[0].data) ==
          EVLM_ERR_ARG);
    progress_calls = 0;
    CHECK_OK(evlm_gguf_writer_write(w, path, count_progress, NULL));
    CHECK(progress_calls >= (int)N_TYPES);
    evlm_gguf_writer_free(w);

    evlm_gguf *g;
    CHECK_OK(evlm_gguf_open(path, &g));
    if (!g) return;
    const char *s;
    size_t n;
    CHECK_OK(evlm_gguf_get_str(g, "s", &s, &n));
    CHECK(n == 6 && memcmp(s, "h\xc3\xa9llo", 6) == 0);
    CHECK_OK(evlm_gguf_get_str(g, "s0", &s, &n));
    CHECK(n == 3 && memcmp(s, "a\0b", 3) == 0);
    uint32_t u;
    int32_t i32;
    uint64_t u64;
    float f;
    bool b;
    CHECK_OK(evlm_gguf_get_u32(g, "u32", &u));
    CHECK(u == 4000000000u);
    CHECK(evlm_gguf_get_i32(g, "u32", &i32) == EVLM_ERR_FORMAT); /* does not fit */
    CHECK_OK(evlm_gguf_get_i32(g, "i32", &i32));
    CHECK(i32 == -123456);
    CHECK(evlm_gguf_get_u32(g, "i32", &u) == EVLM_ERR_FORMAT); /* negative */
    CHECK_OK(evlm_gguf_get_u64(g, "u64", &u64));
    CHECK(u64 == 0x123456789abcdefull);
    CHECK_OK(evlm_gguf_get_u64(g, "u32", &u64));
    CHECK(u64 == 4000000000u);
    CHECK_OK(evlm_gguf_get_f32(g, "f32", &f));
    CHECK(f == 1e-5f);
    CHECK_OK(evlm_gguf_get_bool(g, "bt", &b));
    CHECK(b);
    CHECK_OK(evlm_gguf_get_bool(g, "bf", &b));
    CHECK(!b);
    CHECK(evlm_gguf_get_f32(g, "s", &f) == EVLM_ERR_FORMAT);
    CHECK(strstr(evlm_last_error(), "rt.gguf") && strstr(evlm_last_error(), "'s'"));
    CHECK(evlm_gguf_get_u32(g, "missing", &u) == EVLM_ERR_FORMAT);
    CHECK(strstr(evlm_last_error(), "missing") != NULL);
    evlm_gguf_vtype et;
    CHECK_OK(evlm_gguf_get_arr_n(g, "as", &et, &n));
    CHECK(et == EVLM_GGUF_STRING && n == 3);
    for (size_t k = 0; k < 3; k++) {
        CHECK_OK(evlm_gguf_get_arr_str(g, "as", k, &s, &n));
        CHECK(n == strlen(strs[k]) && memcmp(s, strs[k], n) == 0);
    }
    CHECK(evlm_gguf_get_arr_str(g, "as", 3, &s, &n) != EVLM_OK);
    int32_t iv2[4];
    CHECK_OK(evlm_gguf_get_arr_i32(g, "ai", iv2, 4));
    CHECK(memcmp(iv, iv2, sizeof iv) == 0);
    CHECK(evlm_gguf_get_arr_i32(g, "ai", iv2, 3) == EVLM_ERR_FORMAT);
    float fv2[3];
    CHECK_OK(evlm_gguf_get_arr_f32(g, "af", fv2, 3));
    CHECK(memcmp(fv, fv2, sizeof fv) == 0);
    CHECK(evlm_gguf_get_arr_f32(g, "ai", fv2, 3) == EVLM_ERR_FORMAT);
    CHECK_OK(evlm_gguf_get_arr_n(g, "a_empty", &et, &n));
    CHECK(n == 0 && et == EVLM_GGUF_I32);
    CHECK(evlm_gguf_kv_count(g) == 12);
    CHECK(strcmp(evlm_gguf_kv_key(g, 0), "s") == 0 && evlm_gguf_find_key(g, "af") == 10);

    CHECK(evlm_gguf_alignment(g) == 32 && evlm_gguf_data_offset(g) % 32 == 0);
    CHECK(evlm_gguf_tensor_count(g) == N_TYPES);
    size_t mapped;
    uint8_t *file = slurp(path, &mapped);
    for (size_t i = 0; i < N_TYPES; i++) {
        const evlm_tensor *t = evlm_gguf_tensor_find(g, ts[i].name);
        CHECKF(t && t == evlm_gguf_tensor_at(g, i), "%s", ts[i].name);
        if (!t) continue;
        CHECK(t->type == k_types[i] && t->n_dims == ts[i].n_dims);
        CHECK(memcmp(t->ne, ts[i].ne, sizeof t->ne) == 0);
        CHECK(evlm_tensor_nbytes(t) == ts[i].nb && memcmp(t->data, ts[i].data, ts[i].nb) == 0);
        /* data offsets aligned from the start of the file */
        size_t at =
            (size_t)((const uint8_t *)t->data - (const uint8_t *)evlm_gguf_tensor_at(g, 0)->data) +
            evlm_gguf_data_offset(g);
        CHECKF(at % 32 == 0, "%s at %zu", ts[i].name, at);
        CHECK(file && memcmp(file + at, ts[i].data, ts[i].nb) == 0);
    }
    /* the same image from memory */
    evlm_gguf *gm;
    CHECK_OK(evlm_gguf_from_memory("mem.gguf", file, mapped, &gm));
    CHECK(gm && evlm_gguf_tensor_count(gm) == N_TYPES);
    evlm_gguf_close(gm);

    /* weight set: no llama.cpp names here, so the names stay; quantized matrices pass get_matrix */
    evlm_weights *ws;
    CHECK_OK(evlm_gguf_weights(g, &ws));
    evlm_gguf_close(g); /* the set keeps the map */
    if (ws) {
        CHECK(evlm_weights_count(ws) == N_TYPES);
        const evlm_tensor *t;
        CHECK_OK(evlm_weights_get_matrix(ws, "t.Q4_0", 64, 3, &t));
        CHECK(t && memcmp(t->data, ts[4].data, ts[4].nb) == 0);
        CHECK_OK(evlm_weights_get_matrix(ws, "t.F16", 64, 3, &t));
        float v[64];
        CHECK_OK(evlm_weights_get_vector(ws, "t.F32", 64, v));
        CHECK(memcmp(v, ts[0].data, sizeof v) == 0);
        CHECK(evlm_weights_get_vector(ws, "t.Q8_0", 64, v) == EVLM_ERR_UNSUPPORTED); /* quantized */
        CHECK(evlm_weights_check_float(ws, "t.Q4_0", evlm_weights_find(ws, "t.Q4_0")) ==
              EVLM_ERR_UNSUPPORTED);
        evlm_weights_free(ws);
    }
    free(file);
    for (size_t i = 0; i < N_TYPES; i++) free(ts[i].data);
}

/* ---- 3. atomic writer --------------------------------------------------------------------- */

static evlm_status fail_fill(void *ctx, const evlm_tensor *t, int64_t row0, int64_t n, void *dst) {
    (void)ctx;
    (void)t;
    memset(dst, 0, (size_t)n * t->nb[1]);
    if (row0 + n >= t->ne[1]) return evlm__fail(EVLM_ERR_IO, "producer failed");
    return EVLM_OK;
}

static evlm_status ok_fill(void *ctx, const evlm_tensor *t, int64_t row0, int64_t n, void *dst) {
    (void)ctx;
    float *o = dst;
    for (int64_t r = 0; r < n; r++)
        for (int64_t k = 0; k < t->ne[0]; k++) o[r * t->ne[0] + k] = (float)((row0 + r) * 1000 + k);
    return EVLM_OK;
}

static int cancel_at_once(void *ctx, uint64_t done, uint64_t total) {
    (void)ctx;
    (void)done;
    (void)total;
    return 1;
}

static void test_atomic(void) {
    char path[512];
    tmp_path(path, sizeof path, "atomic.gguf");
    int64_t ne[2] = {1 << 16, 40}; /* 10 MiB of F32: several chunks */
    evlm_gguf_writer *w;
    CHECK_OK(evlm_gguf_writer_new(&w));
    CHECK_OK(evlm_gguf_writer_add_tensor_fill(w, "x", EVLM_TYPE_F32, 2, ne, fail_fill, NULL));
    evlm_status st = evlm_gguf_writer_write(w, path, NULL, NULL);
    CHECK(st == EVLM_ERR_IO && strstr(evlm_last_error(), "'x'") &&
          strstr(evlm_last_error(), "producer failed"));
    CHECK(count_files("atomic.gguf") == 0);
    evlm_gguf_writer_free(w);

    CHECK_OK(evlm_gguf_writer_new(&w));
    CHECK_OK(evlm_gguf_writer_add_tensor_fill(w, "x", EVLM_TYPE_F32, 2, ne, ok_fill, NULL));
    CHECK(evlm_gguf_writer_write(w, path, cancel_at_once, NULL) != EVLM_OK);
    CHECK(count_files("atomic.gguf") == 0);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.gguf", g_dir);
    CHECK(evlm_gguf_writer_write(w, bad, NULL, NULL) == EVLM_ERR_IO);
    CHECK_OK(evlm_gguf_writer_write(w, path, NULL, NULL));
    CHECK(count_files("atomic.gguf") == 1);
    evlm_gguf_writer_free(w);
    evlm_gguf *g;
    CHECK_OK(evlm_gguf_open(path, &g));
    const evlm_tensor *t = g ? evlm_gguf_tensor_find(g, "x") : NULL;
    CHECK(t && ((const float *)t->data)[39 * 65536 + 5] == 39005.0f);
    evlm_gguf_close(g);
    unlink(path);
}

/* ---- 4. names ----------------------------------------------------------------------------- */

static void test_names(void) {
    static const char *const prefixes[] = {"model.", "model.text_model.", "model.language_model."};
    static const char *const pairs[][2] = {
        {"embed_tokens.weight", "token_embd.weight"},
        {"norm.weight", "output_norm.weight"},
        {"layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"layers.11.post_attention_layernorm.weight", "blk.11.ffn_norm.weight"},
        {"layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight"},
        {"layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias"},
        {"layers.3.self_attn.k_proj.weight", "blk.3.attn_k.weight"},
        {"layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
        {"layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"layers.3.self_attn.v_proj.bias", "blk.3.attn_v.bias"},
        {"layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"layers.29.mlp.gate_proj.weight", "blk.29.ffn_gate.weight"},
        {"layers.29.mlp.up_proj.weight", "blk.29.ffn_up.weight"},
        {"layers.105.mlp.down_proj.weight", "blk.105.ffn_down.weight"},
    };
    char hf[256], gg[256], back[256];
    for (size_t p = 0; p < 3; p++) {
        for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
            snprintf(hf, sizeof hf, "%s%s", prefixes[p], pairs[i][0]);
            CHECKF(evlm_gguf_name_to_llama(hf, prefixes[p], gg, sizeof gg) == 1 &&
                       strcmp(gg, pairs[i][1]) == 0,
                   "%s -> %s", hf, gg);
            CHECKF(evlm_gguf_name_to_hf(pairs[i][1], prefixes[p], back, sizeof back) == 1 &&
                       strcmp(back, hf) == 0,
                   "%s -> %s", pairs[i][1], back);
        }
        CHECK(evlm_gguf_name_to_llama("lm_head.weight", prefixes[p], gg, sizeof gg) == 1 &&
              strcmp(gg, "output.weight") == 0);
        CHECK(evlm_gguf_name_to_hf("output.weight", prefixes[p], back, sizeof back) == 1 &&
              strcmp(back, "lm_head.weight") == 0);
    }
    /* no llama.cpp name: unchanged both ways */
    static const char *const kept[] = {
        "model.vision_model.encoder.layers.0.self_attn.q_proj.weight",
        "model.connector.modality_projection.proj.weight",
        "model.visual.blocks.0.attn.qkv.weight",
        "model.layers.01.mlp.up_proj.weight",
        "model.layers.x.mlp.up_proj.weight",
        "model.layers.0.mlp.act.weight",
        "model.text_model.layers.0.mlp.up_proj.weight",
        "blk.0.ffn_up.weightx"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        CHECKF(evlm_gguf_name_to_llama(kept[i], "model.", gg, sizeof gg) == 0 &&
                   strcmp(gg, kept[i]) == 0,
               "%s", gg);
        CHECKF(evlm_gguf_name_to_hf(kept[i], "model.", gg, sizeof gg) == 0 &&
                   strcmp(gg, kept[i]) == 0,
               "%s", gg);
    }
    CHECK(evlm_gguf_name_to_llama("model.layers.0.mlp.up_proj.weight", "model.", gg, 8) == -1);
    CHECK(evlm_gguf_is_qk("blk.2.attn_q.weight") == 1 &&
          evlm_gguf_is_qk("blk.2.attn_k.bias") == 2 &&
          evlm_gguf_is_qk("blk.2.attn_v.weight") == 0 && evlm_gguf_is_qk("attn_q.weight") == 0);

    /* convert_hf_to_gguf.py's permute: reshape(n_head, 2, hd/2, ...).swapaxes(1, 2) */
    static const int64_t want4[8] = {0, 2, 1, 3, 4, 6, 5, 7}, want6[6] = {0, 3, 1, 4, 2, 5};
    for (int64_t r = 0; r < 8; r++) CHECK(evlm_gguf_qk_src_row(r, 4, true) == want4[r]);
    for (int64_t r = 0; r < 6; r++) CHECK(evlm_gguf_qk_src_row(r, 6, true) == want6[r]);
    for (int64_t r = 0; r < 128; r++)
        CHECK(evlm_gguf_qk_src_row(evlm_gguf_qk_src_row(r, 64, true), 64, false) == r);
}

/* ---- 5. hostile headers ------------------------------------------------------------------- */

/* A small valid file: kv general.alignment (u32 32), kv "k" (string), one F32 tensor [8] and
 * one Q8_0 tensor [32, 2] at offset 32. */
static void valid_file(bb *b, uint32_t align) {
    b_head(b, 2, 2);
    b_str(b, "general.alignment");
    b_le(b, 4, 4);
    b_le(b, align, 4);
    b_str(b, "k");
    b_le(b, 8, 4);
    b_str(b, "value");
    uint64_t ne1[1] = {8}, ne2[2] = {32, 2};
    b_tinfo(b, "a", 1, ne1, 0, 0);
    b_tinfo(b, "b", 2, ne2, 8, align > 32 ? align : 32);
    b_pad(b, align);
    size_t data = b->n;
    for (int i = 0; i < 8; i++) b_le(b, 0x3f800000u, 4);
    b->n = data + (align > 32 ? align : 32);
    memset(b->d + data + 32, 0, b->n - data - 32);
    for (int i = 0; i < 2 * 34; i++) b->d[b->n++] = (uint8_t)(i == 0 || i == 34 ? 0 : 1);
}

typedef struct hostile {
    const char *what;
    void (*make)(bb *b);
    const char *expect; /* substring of the message */
} hostile;

#define H(name) static void h_##name(bb *b)
H(bad_magic) {
    valid_file(b, 32);
    b->d[0] = 'X';
}
H(version2) {
    valid_file(b, 32);
    b->d[4] = 2;
}
H(huge_kv_count) {
    valid_file(b, 32);
    memset(b->d + 16, 0xff, 8);
}
H(huge_tensor_count) {
    valid_file(b, 32);
    memset(b->d + 8, 0xff, 7);
}
H(huge_key_len) {
    valid_file(b, 32);
    memset(b->d + 24, 0xff, 8);
    b->d[31] = 0x7f;
}
H(bad_value_type) {
    valid_file(b, 32);
    b->d[24 + 8 + 17] = 99;
}
H(alignment_3) {
    valid_file(b, 32);
    b->d[24 + 8 + 17 + 4] = 3;
}
H(alignment_i32) {
    valid_file(b, 32);
    b->d[24 + 8 + 17] = 5;
}
H(alignment_2mib) {
    b->n = 0;
    valid_file(b, 32);
    b->d[24 + 8 + 17 + 4] = 0;
    b->d[24 + 8 + 17 + 6] = 0x20;
}
H(huge_string_value) {
    valid_file(b, 32);
    size_t at = 24 + 8 + 17 + 8 + 8 + 1 + 4;
    memset(b->d + at, 0xee, 8);
}
static void kv_then_tensor(bb *b, const void *kv, size_t kvn) {
    b_head(b, 1, 1);
    b_raw(b, kv, kvn);
    uint64_t ne[1] = {8};
    b_tinfo(b, "a", 1, ne, 0, 0);
    b_pad(b, 32);
    b->n += 32;
}
H(nested_array) {
    bb kv = {0};
    b_str(&kv, "arr");
    b_le(&kv, 9, 4);
    b_le(&kv, 9, 4);
    b_le(&kv, 1, 8);
    b_le(&kv, 4, 4);
    b_le(&kv, 0, 8);
    kv_then_tensor(b, kv.d, kv.n);
}
H(bad_array_type) {
    bb kv = {0};
    b_str(&kv, "arr");
    b_le(&kv, 9, 4);
    b_le(&kv, 13, 4);
    b_le(&kv, 1, 8);
    b_le(&kv, 0, 8);
    kv_then_tensor(b, kv.d, kv.n);
}
H(huge_array_count) {
    bb kv = {0};
    b_str(&kv, "arr");
    b_le(&kv, 9, 4);
    b_le(&kv, 10, 4);
    b_le(&kv, (uint64_t)1 << 61, 8);
    kv_then_tensor(b, kv.d, kv.n);
}
H(huge_string_array) {
    bb kv = {0};
    b_str(&kv, "arr");
    b_le(&kv, 9, 4);
    b_le(&kv, 8, 4);
    b_le(&kv, (uint64_t)1 << 40, 8);
    kv_then_tensor(b, kv.d, kv.n);
}
H(bool_2) {
    bb kv = {0};
    b_str(&kv, "flag");
    b_le(&kv, 7, 4);
    b_le(&kv, 2, 1);
    kv_then_tensor(b, kv.d, kv.n);
}
H(duplicate_key) {
    bb kv = {0};
    b_head(b, 0, 2);
    for (int i = 0; i < 2; i++) {
        b_str(&kv, "dup");
        b_le(&kv, 4, 4);
        b_le(&kv, 1, 4);
    }
    b_raw(b, kv.d, kv.n);
}
H(empty_key) {
    b_head(b, 0, 1);
    b_str(b, "");
    b_le(b, 4, 4);
    b_le(b, 1, 4);
}
static void one_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t off, size_t data) {
    b_head(b, 1, 0);
    b_tinfo(b, name, n_dims, ne, type, off);
    b_pad(b, 32);
    memset(b->d + b->n, 0, data);
    b->n += data;
}
H(n_dims_0) {
    uint64_t ne[1] = {8};
    one_tensor(b, "t", 0, ne, 0, 0, 64);
}
H(n_dims_5) {
    uint64_t ne[5] = {1, 1, 1, 1, 8};
    one_tensor(b, "t", 5, ne, 0, 0, 64);
}
H(ne_zero) {
    uint64_t ne[2] = {8, 0};
    one_tensor(b, "t", 2, ne, 0, 0, 64);
}
H(ne_overflow) {
    uint64_t ne[3] = {1ull << 32, 1ull << 32, 4};
    one_tensor(b, "t", 3, ne, 0, 0, 64);
}
H(ne_bytes_overflow) {
    uint64_t ne[2] = {1ull << 31, 1ull << 31};
    one_tensor(b, "t", 2, ne, 0, 0, 64);
}
H(ne_negative) {
    uint64_t ne[1] = {~0ull};
    one_tensor(b, "t", 1, ne, 0, 0, 64);
}
H(bad_ggml_type) {
    uint64_t ne[1] = {8};
    one_tensor(b, "t", 1, ne, 99, 0, 64);
}
H(q4_0_ne0_48) {
    uint64_t ne[2] = {48, 1};
    one_tensor(b, "t", 2, ne, 2, 0, 64);
}
H(offset_misaligned) {
    uint64_t ne[1] = {8};
    one_tensor(b, "t", 1, ne, 0, 4, 64);
}
H(offset_past_end) {
    uint64_t ne[1] = {8};
    one_tensor(b, "t", 1, ne, 0, 64, 64);
}
H(offset_huge) {
    uint64_t ne[1] = {8};
    one_tensor(b, "t", 1, ne, 0, ~0ull - 31, 64);
}
H(data_short) {
    uint64_t ne[1] = {8};
    one_tensor(b, "t", 1, ne, 0, 0, 31);
}
H(duplicate_tensor) {
    uint64_t ne[1] = {8};
    b_head(b, 2, 0);
    b_tinfo(b, "t", 1, ne, 0, 0);
    b_tinfo(b, "t", 1, ne, 0, 32);
    b_pad(b, 32);
    b->n += 64;
}
H(name_with_nul) {
    uint64_t ne[1] = {8};
    one_tensor(b, "ab", 1, ne, 0, 0, 64);
    b->d[24 + 8] = 0;
}
#undef H

static const hostile k_hostile[] = {
    {"bad_magic", h_bad_magic, "magic"},
    {"version2", h_version2, "version 2"},
    {"huge_kv_count", h_huge_kv_count, "cannot fit"},
    {"huge_tensor_count", h_huge_tensor_count, "cannot fit"},
    {"huge_key_len", h_huge_key_len, "string length"},
    {"bad_value_type", h_bad_value_type, "unknown value type 99"},
    {"alignment_3", h_alignment_3, "general.alignment"},
    {"alignment_i32", h_alignment_i32, "general.alignment"},
    {"alignment_2mib", h_alignment_2mib, "general.alignment"},
    {"huge_string_value", h_huge_string_value, "'k'"},
    {"nested_array", h_nested_array, "arrays of arrays"},
    {"bad_array_type", h_bad_array_type, "element type 13"},
    {"huge_array_count", h_huge_array_count, "'arr'"},
    {"huge_string_array", h_huge_string_array, "'arr'"},
    {"bool_2", h_bool_2, "'flag'"},
    {"duplicate_key", h_duplicate_key, "'dup' appears twice"},
    {"empty_key", h_empty_key, "metadata key"},
    {"n_dims_0", h_n_dims_0, "'t': 0 dimensions"},
    {"n_dims_5", h_n_dims_5, "'t': 5 dimensions"},
    {"ne_zero", h_ne_zero, "'t': ne[1]"},
    {"ne_overflow", h_ne_overflow, "'t': ne[1]"},
    {"ne_bytes_overflow", h_ne_bytes_overflow, "'t'"},
    {"ne_negative", h_ne_negative, "'t': ne[0]"},
    {"bad_ggml_type", h_bad_ggml_type, "ggml type 99"},
    {"q4_0_ne0_48", h_q4_0_ne0_48, "multiple of 32"},
    {"offset_misaligned", h_offset_misaligned, "not a multiple of the alignment"},
    {"offset_past_end", h_offset_past_end, "'t': bytes"},
    {"offset_huge", h_offset_huge, "'t': bytes"},
    {"data_short", h_data_short, "'t': bytes"},
    {"duplicate_tensor", h_duplicate_tensor, "'t' appears twice"},
    {"name_with_nul", h_name_with_nul, "tensor name"},
};

static void test_hostile(void) {
    /* the valid base parses, with both alignments */
    bb b = {0};
    evlm_gguf *g = NULL;
    for (uint32_t a = 32; a <= 64; a *= 2) {
        valid_file(&b, a);
        CHECKF(evlm_gguf_from_memory("base.gguf", b.d, b.n, &g) == EVLM_OK, "align %u: %s", a,
               evlm_last_error());
        if (!g) continue;
        const evlm_tensor *t = evlm_gguf_tensor_find(g, "b");
        CHECK(evlm_gguf_alignment(g) == a && t && t->type == EVLM_TYPE_Q8_0 && t->ne[1] == 2);
        CHECK(t && (size_t)((const uint8_t *)t->data - b.d) % a == 0);
        evlm_gguf_close(g);
        g = NULL;
    }
    /* truncated at every byte: fails until the last tensor's bytes are all there */
    valid_file(&b, 32);
    size_t need = b.n; /* the Q8_0 tensor ends the file */
    for (size_t cut = 0; cut < b.n; cut++) {
        evlm_status st = evlm_gguf_from_memory("cut.gguf", b.d, cut, &g);
        if (cut < need) {
            CHECKF(st != EVLM_OK && strstr(evlm_last_error(), "cut.gguf"), "cut at %zu: %s", cut,
                   evlm_last_error());
        }
        evlm_gguf_close(g);
        g = NULL;
    }
    for (size_t i = 0; i < sizeof k_hostile / sizeof *k_hostile; i++) {
        memset(&b, 0, sizeof b);
        k_hostile[i].make(&b);
        char what[64];
        snprintf(what, sizeof what, "%s.gguf", k_hostile[i].what);
        evlm_status st = evlm_gguf_from_memory(what, b.d, b.n, &g);
        CHECKF(st != EVLM_OK && strstr(evlm_last_error(), what) &&
                   strstr(evlm_last_error(), k_hostile[i].expect),
               "%s: status %d, '%s'", what, st, evlm_last_error());
        evlm_gguf_close(g);
        g = NULL;
    }
}

/* ---- 6. export of the fixtures ------------------------------------------------------------ */

static evlm_type keep_type(void *ctx, const char *name, const evlm_tensor *t,
                           const evlm_tensor **src) {
    (void)src;
    (void)ctx;
    (void)name;
    return t->type;
}

static evlm_type q8_matrices(void *ctx, const char *name, const evlm_tensor *t,
                             const evlm_tensor **src) {
    (void)src;
    (void)ctx;
    (void)name;
    return t->n_dims == 2 && t->ne[0] % 32 == 0 ? EVLM_TYPE_Q8_0 : t->type;
}

static void test_export(const char *shared, const char *fixture, const char *arch,
                        const char *prefix) {
    char dir[512], out[512], path[600];
    snprintf(dir, sizeof dir, "%s/fixtures/%s", shared, fixture);
    snprintf(out, sizeof out, "%s/%s.gguf", g_dir, fixture);
    for (int mode = 0; mode < 2; mode++) {
        CHECK_OK(evlm_gguf_export_hf(dir, out, mode ? q8_matrices : keep_type, NULL, NULL, NULL));
        evlm_gguf *g = NULL;
        evlm_weights *ref = NULL, *got = NULL;
        CHECK_OK(evlm_gguf_open(out, &g));
        CHECK_OK(evlm_weights_open(dir, &ref));
        if (!g || !ref) goto next;
        const char *s;
        size_t n;
        CHECK_OK(evlm_gguf_get_str(g, "general.architecture", &s, &n));
        CHECKF(n == strlen(arch) && memcmp(s, arch, n) == 0, "%s: arch %.*s", fixture, (int)n, s);
        CHECK_OK(evlm_gguf_get_str(g, "evlm.text_prefix", &s, &n));
        CHECK(n == strlen(prefix) && memcmp(s, prefix, n) == 0);
        /* verbatim files */
        snprintf(path, sizeof path, "%s/config.json", dir);
        char *cfg_text;
        size_t cfg_len;
        CHECK_OK(evlm_read_file(path, 1 << 20, &cfg_text, &cfg_len));
        CHECK_OK(evlm_gguf_file_text(g, "config.json", &s, &n));
        CHECK(n == cfg_len && memcmp(s, cfg_text, n) == 0);
        free(cfg_text);
        CHECK(evlm_gguf_file_text(g, "nope.json", &s, &n) == EVLM_ERR_FORMAT);
        /* hyper-parameters against config.json */
        evlm_decoder_config cfg;
        CHECK_OK(evlm_decoder_config_load(dir, &cfg));
        char key[128];
        uint32_t u;
        float f;
        snprintf(key, sizeof key, "%s.block_count", arch);
        CHECK(evlm_gguf_get_u32(g, key, &u) == EVLM_OK && (int)u == cfg.n_layers);
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
        CHECK(evlm_gguf_get_u32(g, key, &u) == EVLM_OK && (int)u == cfg.n_kv_heads);
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
        CHECK(evlm_gguf_get_f32(g, key, &f) == EVLM_OK && f == cfg.rms_norm_eps);
        /* tokens against tokenizer.json's vocab, by id */
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        cJSON *tj = NULL;
        CHECK_OK(evlm_json_load(path, &tj));
        size_t n_tok = 0;
        CHECK_OK(evlm_gguf_get_arr_n(g, "tokenizer.ggml.tokens", NULL, &n_tok));
        CHECK((int)n_tok >= cfg.vocab_size);
        const cJSON *e;
        int bad = 0, seen = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(
                                  cJSON_GetObjectItemCaseSensitive(tj, "model"), "vocab")) {
            if (evlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", (size_t)e->valueint, &s, &n) !=
                    EVLM_OK ||
                n != strlen(e->string) || memcmp(s, e->string, n) != 0)
                bad++;
            seen++;
        }
        CHECKF(bad == 0 && seen > 100, "%s: %d of %d tokens differ", fixture, bad, seen);
        size_t n_merges = 0;
        CHECK_OK(evlm_gguf_get_arr_n(g, "tokenizer.ggml.merges", NULL, &n_merges));
        CHECK((int)n_merges == cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                                   cJSON_GetObjectItemCaseSensitive(tj, "model"), "merges")));
        cJSON_Delete(tj);

        /* the weight set equals the safetensors one: same names and shapes; bytes equal when
         * kept (Q/K rows went to llama.cpp order and back), Q8_0 within its rounding */
        CHECK_OK(evlm_gguf_weights(g, &got));
        if (!got) goto next;
        CHECK(evlm_weights_count(got) == evlm_weights_count(ref));
        int mismatches = 0;
        double max_rel = 0;
        for (size_t i = 0; i < evlm_weights_count(ref); i++) {
            const evlm_tensor *r = evlm_weights_at(ref, i), *t = evlm_weights_find(got, r->name);
            if (!t || memcmp(t->ne, r->ne, sizeof t->ne) != 0 ||
                t->n_dims != (r->n_dims ? r->n_dims : 1)) {
                mismatches++;
                continue;
            }
            if (t->type == r->type) {
                mismatches += memcmp(t->data, r->data, evlm_tensor_nbytes(r)) != 0;
                continue;
            }
            int64_t rows = evlm_tensor_nelements(r) / r->ne[0];
            float *a = malloc(sizeof(float) * (size_t)r->ne[0] * 2), *bq = a + r->ne[0];
            for (int64_t k = 0; k < rows; k++) {
                evlm_dequantize_row(r->type, (const char *)r->data + (size_t)k * r->nb[1], a,
                                    r->ne[0]);
                evlm_dequantize_row(t->type, (const char *)t->data + (size_t)k * t->nb[1], bq,
                                    r->ne[0]);
                float amax = 0;
                for (int64_t c = 0; c < r->ne[0]; c++) amax = fmaxf(amax, fabsf(a[c]));
                for (int64_t c = 0; c < r->ne[0]; c++) {
                    double rel =
                        fabs((double)a[c] - (double)bq[c]) / (amax > 0 ? (double)amax : 1.0);
                    if (rel > max_rel) max_rel = rel;
                }
            }
            free(a);
        }
        CHECKF(mismatches == 0, "%s mode %d: %d tensors differ", fixture, mode, mismatches);
        /* Q8_0: |error| <= d/2 + 127 * |d - fp16(d)| <= (1/2 + 127 * 2^-11) * amax/127 < amax/220
         */
        CHECKF(max_rel <= 1.0 / 220, "%s: Q8_0 error %g", fixture, max_rel);
    next:
        evlm_weights_free(got);
        evlm_weights_free(ref);
        evlm_gguf_close(g);
    }
    unlink(out);
}

static evlm_type text_only(void *ctx, const char *name, const evlm_tensor *t,
                           const evlm_tensor **src) {
    (void)src;
    (void)ctx;
    return strstr(name, "vision") || strstr(name, "connector") ? EVLM_TYPE_COUNT : t->type;
}

/* the vision tower left out: only llama.cpp names remain */
static void test_export_text_only(const char *shared) {
    char dir[512], out[512];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(out, sizeof out, "%s/text_only.gguf", g_dir);
    CHECK_OK(evlm_gguf_export_hf(dir, out, text_only, NULL, NULL, NULL));
    evlm_gguf *g = NULL;
    CHECK_OK(evlm_gguf_open(out, &g));
    int foreign = 0;
    for (size_t i = 0; i < evlm_gguf_tensor_count(g); i++) {
        const char *n = evlm_gguf_tensor_at(g, i)->name;
        foreign += strncmp(n, "blk.", 4) && strcmp(n, "token_embd.weight") &&
                   strcmp(n, "output_norm.weight") && strcmp(n, "output.weight");
    }
    CHECK(g && evlm_gguf_tensor_count(g) > 10 && foreign == 0);
    evlm_gguf_close(g);
    unlink(out);
}

/* ---- seed corpus -------------------------------------------------------------------------- */

static void write_corpus(const char *dir) {
    char path[600];
    bb b = {0};
    valid_file(&b, 32);
    snprintf(path, sizeof path, "%s/valid_two_tensors", dir);
    evlm_write_file_atomic(path, b.d, b.n);
    valid_file(&b, 64);
    snprintf(path, sizeof path, "%s/valid_align64", dir);
    evlm_write_file_atomic(path, b.d, b.n);
    for (size_t i = 0; i < sizeof k_hostile / sizeof *k_hostile; i += 3) {
        memset(&b, 0, sizeof b);
        k_hostile[i].make(&b);
        snprintf(path, sizeof path, "%s/%s", dir, k_hostile[i].what);
        evlm_write_file_atomic(path, b.d, b.n);
    }
    /* a llama-named file with metadata of every kind, written by the writer */
    evlm_gguf_writer *w;
    if (evlm_gguf_writer_new(&w) != EVLM_OK) return;
    evlm_gguf_writer_set_str(w, "general.architecture", "llama");
    evlm_gguf_writer_set_u32(w, "llama.attention.head_count", 2);
    evlm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 1);
    evlm_gguf_writer_set_str(w, "evlm.text_prefix", "model.text_model.");
    const char *toks[3] = {"a", "b", "ab"};
    evlm_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3);
    int32_t tt[3] = {1, 1, 3};
    evlm_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", tt, 3);
    float fs[2] = {1, 2};
    evlm_gguf_writer_set_arr_f32(w, "x.f", fs, 2);
    evlm_gguf_writer_set_bool(w, "x.b", true);
    evlm_gguf_writer_set_u64(w, "x.u64", 5);
    evlm_gguf_writer_set_f32(w, "x.f32", 0.5f);
    evlm_gguf_writer_set_str(w, "evlm.file.config.json", "{\"model_type\":\"llama\"}");
    static float q[8 * 32], k[4 * 32], bias[8];
    int64_t neq[2] = {32, 8}, nek[2] = {32, 4}, neb[1] = {8};
    evlm_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", EVLM_TYPE_F32, 2, neq, q);
    evlm_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", EVLM_TYPE_F32, 2, nek, k);
    evlm_gguf_writer_add_tensor(w, "blk.0.attn_q.bias", EVLM_TYPE_F32, 1, neb, bias);
    evlm_gguf_writer_add_tensor(w, "token_embd.weight", EVLM_TYPE_Q4_1, 2, neq, q);
    evlm_gguf_writer_add_tensor(w, "model.vision_model.x", EVLM_TYPE_BF16, 1, neb, bias);
    snprintf(path, sizeof path, "%s/valid_llama_meta", dir);
    evlm_gguf_writer_write(w, path, NULL, NULL);
    evlm_gguf_writer_free(w);
}

/* weights of the corpus' llama file: Q/K rows back in HF order, names mapped */
static void test_llama_weights(void) {
    char path[512];
    write_corpus(g_dir);
    snprintf(path, sizeof path, "%s/valid_llama_meta", g_dir);
    evlm_gguf *g;
    CHECK_OK(evlm_gguf_open(path, &g));
    if (!g) return;
    evlm_weights *w;
    CHECK_OK(evlm_gguf_weights(g, &w));
    evlm_gguf_close(g);
    if (!w) return;
    CHECK(evlm_weights_find(w, "model.text_model.layers.0.self_attn.q_proj.weight") != NULL);
    CHECK(evlm_weights_find(w, "model.text_model.layers.0.self_attn.q_proj.bias") != NULL);
    CHECK(evlm_weights_find(w, "model.text_model.embed_tokens.weight") != NULL);
    CHECK(evlm_weights_find(w, "model.vision_model.x") != NULL);
    evlm_weights_free(w);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/evlm_test_gguf.XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const char *corpus = getenv("EVLM_GGUF_CORPUS");
    if (corpus) write_corpus(corpus);
    test_exact_bytes();
    test_round_trip();
    test_atomic();
    test_names();
    test_hostile();
    test_llama_weights();
    const char *shared = test_shared_dir();
    if (shared) {
        test_export(shared, "llama-tiny", "llama", "model.");
        test_export(shared, "qwen2vl-tiny", "qwen2vl", "model."); /* the older layout */
        test_export(shared, "smolvlm-tiny", "llama", "model.text_model.");
        test_export_text_only(shared);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done();
}
