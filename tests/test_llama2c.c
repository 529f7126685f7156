/* test_llama2c.c - llama2.c import: a synthetic checkpoint + tokenizer (always run: q/k row
 * permutation, merges, duplicates, truncated and oversized inputs), then the real
 * aidreams260K.bin + tok512.bin from ../shared when present. */
#include "core/file.h"
#include "core/status.h"
#include "io/hf_config.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <unistd.h>

static char g_dir[] = "/tmp/evlm_l2c_XXXXXX";

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    if (n) CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void put_i32(uint8_t **p, int32_t v) {
    memcpy(*p, &v, 4);
    *p += 4;
}

/* HF row of llama2.c row r within a projection of heads of size hs. */
static int hf_row(int r, int hs) {
    int h = r / hs, k = r % hs, i = k / 2, j = k % 2;
    return h * hs + j * (hs / 2) + i;
}

static cJSON *load_json(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *data;
    size_t n;
    if (evlm_read_file(p, 64u << 20, &data, &n) != EVLM_OK) return NULL;
    cJSON *j = cJSON_ParseWithLength(data, n);
    free(data);
    return j;
}

static int merge_is(const cJSON *merges, int i, const char *a, const char *b) {
    const cJSON *m = cJSON_GetArrayItem(merges, i);
    return cJSON_GetArraySize(m) == 2 && strcmp(cJSON_GetArrayItem(m, 0)->valuestring, a) == 0 &&
           strcmp(cJSON_GetArrayItem(m, 1)->valuestring, b) == 0;
}

/* Conversion must fail with st, naming `mention`, and leave no config.json behind. */
static void expect_fail(const char *model, const char *tok, evlm_status st, const char *mention) {
    char out[512];
    path_in(out, sizeof out, "failed_out");
    evlm_status got = evlm_llama2c_convert(model, tok, out);
    CHECKF(got == st, "status %d (want %d): %s", (int)got, (int)st, evlm_last_error());
    CHECKF(strstr(evlm_last_error(), mention) != NULL, "'%s' not in: %s", mention,
           evlm_last_error());
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", out);
    CHECK(!evlm_file_exists(p));
}

/* ---- synthetic -------------------------------------------------------------------------- */

enum { S_DIM = 8, S_HID = 6, S_L = 2, S_H = 2, S_KV = 1, S_V = 11, S_SEQ = 4, S_HS = 4 };

static void test_synthetic(void) {
    /* weights: unshared classifier (negative vocab_size) */
    size_t kv = S_KV * S_HS;
    size_t floats = S_V * S_DIM + S_L * S_DIM + S_L * S_DIM * S_DIM + 2 * S_L * kv * S_DIM +
                    S_L * S_DIM * S_DIM + S_L * S_DIM + 3 * S_L * S_DIM * S_HID + S_DIM +
                    S_SEQ * S_HS + S_V * S_DIM;
    size_t msize = 28 + 4 * floats;
    uint8_t *model = malloc(msize + 8);
    uint8_t *p = model;
    int32_t hdr[7] = {S_DIM, S_HID, S_L, S_H, S_KV, -S_V, S_SEQ};
    for (int i = 0; i < 7; i++) put_i32(&p, hdr[i]);
    float *w = (float *)(void *)(model + 28);
    for (size_t i = 0; i < floats; i++) w[i] = (float)i;
    memset(model + msize, 0, 8);

    /* tokenizer: specials, a byte piece, chars, two merged pieces, a duplicate */
    static const struct {
        const char *s;
        float score;
    } pieces[S_V] = {{"<unk>", 0}, {"\n<s>\n", 0},   {"\n</s>\n", 0}, {"<0x0A>", 0},
                     {"a", -10},   {"b", -10},       {" ", -10},      {"ab", -1},
                     {" ab", -2},  {"\xc3\xa9", -5}, {"b", -3}};
    uint8_t tok[512], *q = tok;
    put_i32(&q, 8);
    for (int i = 0; i < S_V; i++) {
        memcpy(q, &pieces[i].score, 4);
        q += 4;
        put_i32(&q, (int32_t)strlen(pieces[i].s));
        memcpy(q, pieces[i].s, strlen(pieces[i].s));
        q += strlen(pieces[i].s);
    }
    size_t tsize = (size_t)(q - tok);

    char mpath[512], tpath[512], out[512];
    path_in(mpath, sizeof mpath, "syn.bin");
    path_in(tpath, sizeof tpath, "syn_tok.bin");
    path_in(out, sizeof out, "syn_out");
    write_file(mpath, model, msize);
    write_file(tpath, tok, tsize);
    CHECK_OK(evlm_llama2c_convert(mpath, tpath, out));

    char sp[600];
    snprintf(sp, sizeof sp, "%s/model.safetensors", out);
    evlm_weights *ws = NULL;
    CHECK_OK(evlm_weights_open(sp, &ws));
    if (ws) {
        CHECK(evlm_weights_count(ws) == 2 + 9 * S_L + 1);
        const evlm_tensor *t;
        int64_t qne[2] = {S_DIM, S_DIM}, kne[2] = {S_DIM, (int64_t)kv}, lm[2] = {S_DIM, S_V};
        int64_t dn[2] = {S_HID, S_DIM}, nne[1] = {S_DIM};
        CHECK_OK(evlm_weights_get(ws, "lm_head.weight", 2, lm, &t));
        if (t) CHECK(((const float *)t->data)[0] == (float)(floats - S_V * S_DIM));
        CHECK_OK(evlm_weights_get(ws, "model.layers.1.mlp.down_proj.weight", 2, dn, &t));
        CHECK_OK(evlm_weights_get(ws, "model.norm.weight", 1, nne, &t));
        /* q: layer 1, every element */
        size_t wq0 = S_V * S_DIM + S_L * S_DIM;
        CHECK_OK(evlm_weights_get(ws, "model.layers.1.self_attn.q_proj.weight", 2, qne, &t));
        int bad = 0;
        for (int r = 0; t && r < S_DIM; r++)
            for (int c = 0; c < S_DIM; c++)
                if (((const float *)t->data)[hf_row(r, S_HS) * S_DIM + c] !=
                    w[wq0 + S_DIM * S_DIM + (size_t)r * S_DIM + c])
                    bad++;
        CHECKF(bad == 0, "%d q elements misplaced", bad);
        /* row 1 of head 0 (pair element j=1 of i=0) goes to row hs/2 */
        if (t) CHECK(((const float *)t->data)[2 * S_DIM] == w[wq0 + S_DIM * S_DIM + S_DIM]);
        size_t wk0 = wq0 + S_L * S_DIM * S_DIM;
        CHECK_OK(evlm_weights_get(ws, "model.layers.0.self_attn.k_proj.weight", 2, kne, &t));
        bad = 0;
        for (int r = 0; t && r < (int)kv; r++)
            for (int c = 0; c < S_DIM; c++)
                if (((const float *)t->data)[hf_row(r, S_HS) * S_DIM + c] !=
                    w[wk0 + (size_t)r * S_DIM + c])
                    bad++;
        CHECKF(bad == 0, "%d k elements misplaced", bad);
        /* v is not permuted */
        CHECK_OK(evlm_weights_get(ws, "model.layers.0.self_attn.v_proj.weight", 2, kne, &t));
        if (t) CHECK(memcmp(t->data, &w[wk0 + S_L * kv * S_DIM], kv * S_DIM * 4) == 0);
    }
    evlm_weights_free(ws);

    evlm_decoder_config c;
    CHECK_OK(evlm_decoder_config_load(out, &c));
    CHECK(c.hidden_size == S_DIM && c.intermediate_size == S_HID && c.n_layers == S_L);
    CHECK(c.n_heads == S_H && c.n_kv_heads == S_KV && c.vocab_size == S_V && c.head_dim == S_HS);
    CHECK(!c.tie_word_embeddings && c.max_position_embeddings == S_SEQ);
    CHECK(c.n_eos == 1 && c.eos_token_ids[0] == 2 && c.bos_token_id == 1);

    cJSON *tj = load_json(out, "tokenizer.json");
    CHECK(tj != NULL);
    if (tj) {
        const cJSON *model_j = cJSON_GetObjectItem(tj, "model");
        const cJSON *vocab = cJSON_GetObjectItem(model_j, "vocab");
        const cJSON *merges = cJSON_GetObjectItem(model_j, "merges");
        CHECK(cJSON_GetArraySize(vocab) == S_V - 1); /* the duplicate "b" is dropped */
        CHECK(cJSON_GetObjectItem(vocab, "<s>")->valueint == 1);
        CHECK(cJSON_GetObjectItem(vocab, "\xe2\x96\x81"
                                         "ab")
                  ->valueint == 8);
        CHECK(cJSON_GetObjectItem(vocab, "\xe2\x96\x81")->valueint == 6);
        CHECK(cJSON_GetObjectItem(vocab, "b")->valueint == 5);
        CHECK(cJSON_GetObjectItem(vocab, "<0x0A>")->valueint == 3);
        CHECK(cJSON_GetArraySize(merges) == 2);
        CHECK(merge_is(merges, 0, "a", "b"));
        CHECK(merge_is(merges, 1, "\xe2\x96\x81", "ab"));
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(tj, "added_tokens")) == 3);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(model_j, "byte_fallback")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(tj, "pre_tokenizer")));
    }
    cJSON_Delete(tj);
    cJSON *tc = load_json(out, "tokenizer_config.json");
    CHECK(tc && strcmp(cJSON_GetObjectItem(tc, "tokenizer_class")->valuestring,
                       "LlamaTokenizerFast") == 0);
    cJSON_Delete(tc);

    /* hostile copies */
    char bad_m[512], bad_t[512];
    path_in(bad_m, sizeof bad_m, "bad_model.bin");
    path_in(bad_t, sizeof bad_t, "bad_tok.bin");
    write_file(bad_m, model, msize - 1);
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "bad_model.bin");
    write_file(bad_m, model, msize + 4);
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "bad_model.bin");
    write_file(bad_m, model, msize - S_V * S_DIM * 4); /* unshared header, no classifier */
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "bad_model.bin");
    write_file(bad_m, model, 20);
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "bad_model.bin");
    int32_t saved;
    memcpy(&saved, model + 12, 4);
    int32_t zero = 0, three = 3;
    memcpy(model + 12, &zero, 4); /* n_heads 0 */
    write_file(bad_m, model, msize);
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "n_heads");
    memcpy(model + 12, &three, 4); /* dim 8 not divisible by 3 heads */
    write_file(bad_m, model, msize);
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "bad_model.bin");
    memcpy(model + 12, &saved, 4);
    int32_t huge = INT32_MIN;
    memcpy(model + 20, &huge, 4); /* vocab_size INT32_MIN */
    write_file(bad_m, model, msize);
    expect_fail(bad_m, tpath, EVLM_ERR_FORMAT, "vocab_size");
    expect_fail("/nonexistent/model.bin", tpath, EVLM_ERR_IO, "/nonexistent/model.bin");
    expect_fail(mpath, "/nonexistent/tok.bin", EVLM_ERR_IO, "/nonexistent/tok.bin");

    for (size_t cut = 0; cut < tsize; cut += 5) {
        write_file(bad_t, tok, cut);
        expect_fail(mpath, bad_t, EVLM_ERR_FORMAT, "bad_tok.bin");
    }
    uint8_t big[600];
    memcpy(big, tok, tsize);
    memset(big + tsize, 0, 9);
    write_file(bad_t, big, tsize + 9);
    expect_fail(mpath, bad_t, EVLM_ERR_FORMAT, "trailing");
    /* a piece longer than max_token_length, and invalid UTF-8 */
    memcpy(big, tok, tsize);
    int32_t one = 1;
    memcpy(big, &one, 4);
    write_file(bad_t, big, tsize);
    expect_fail(mpath, bad_t, EVLM_ERR_FORMAT, "bad_tok.bin");
    memcpy(big, tok, tsize);
    uint8_t *last = big + tsize - 2; /* "b" of the last piece, "é" before it */
    last[-8 - 1] = 0xff;
    write_file(bad_t, big, tsize);
    expect_fail(mpath, bad_t, EVLM_ERR_FORMAT, "UTF-8");
    free(model);
}

/* ---- real files ------------------------------------------------------------------------- */

static void test_real(const char *shared) {
    char mpath[4096], tpath[4096], out[512];
    snprintf(mpath, sizeof mpath, "%s/reference/llama2c/aidreams260K.bin", shared);
    snprintf(tpath, sizeof tpath, "%s/reference/llama2c/tok512.bin", shared);
    path_in(out, sizeof out, "aidreams");
    CHECK_OK(evlm_llama2c_convert(mpath, tpath, out));

    evlm_map raw;
    CHECK_OK(evlm_map_file(mpath, &raw));
    const float *w = (const float *)(const void *)((const uint8_t *)raw.data + 28);
    enum { D = 64, H = 172, L = 4, V = 512, HS = 16 };
    char sp[600];
    snprintf(sp, sizeof sp, "%s/model.safetensors", out);
    evlm_weights *ws = NULL;
    CHECK_OK(evlm_weights_open(out, &ws)); /* the folder */
    if (ws && raw.data) {
        CHECK(evlm_weights_count(ws) == 2 + 9 * L);
        CHECK(evlm_weights_find(ws, "lm_head.weight") == NULL);
        const evlm_tensor *t;
        int64_t emb[2] = {D, V}, sq[2] = {D, D}, up[2] = {D, H}, down[2] = {H, D}, n1[1] = {D};
        CHECK_OK(evlm_weights_get(ws, "model.embed_tokens.weight", 2, emb, &t));
        if (t) CHECK(memcmp(t->data, w, (size_t)V * D * 4) == 0);
        for (int l = 0; l < L; l++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_proj.weight", l);
            CHECK_OK(evlm_weights_get(ws, name, 2, sq, &t));
            snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
            CHECK_OK(evlm_weights_get(ws, name, 2, up, &t));
            snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
            CHECK_OK(evlm_weights_get(ws, name, 2, down, &t));
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            CHECK_OK(evlm_weights_get(ws, name, 1, n1, &t));
        }
        /* q_proj of layer 2 is the pair -> halves permutation of wq */
        const float *wq = w + (size_t)V * D + (size_t)L * D + (size_t)2 * D * D;
        CHECK_OK(evlm_weights_get(ws, "model.layers.2.self_attn.q_proj.weight", 2, sq, &t));
        static const int rows[][2] = {{0, 0},  {1, 5},   {2, 63}, {15, 7},
                                      {16, 1}, {33, 40}, {63, 63}};
        for (size_t k = 0; t && k < sizeof rows / sizeof rows[0]; k++) {
            int r = rows[k][0], c = rows[k][1];
            CHECKF(((const float *)t->data)[hf_row(r, HS) * D + c] == wq[r * D + c],
                   "q row %d col %d", r, c);
        }
        if (t) CHECK(((const float *)t->data)[8 * D] == wq[1 * D]); /* row 1 -> row 8 */
        /* rms_final sits right after the last w3 */
        const float *fin = w + (size_t)V * D + (size_t)L * D + 4 * (size_t)L * D * D +
                           (size_t)L * D + 3 * (size_t)L * D * H;
        CHECK_OK(evlm_weights_get(ws, "model.norm.weight", 1, n1, &t));
        if (t) CHECK(memcmp(t->data, fin, D * 4) == 0);
    }
    evlm_weights_free(ws);

    evlm_decoder_config c;
    CHECK_OK(evlm_decoder_config_load(out, &c));
    CHECK(c.hidden_size == D && c.intermediate_size == H && c.n_layers == L && c.n_heads == 4);
    CHECK(c.n_kv_heads == 4 && c.vocab_size == V && c.tie_word_embeddings);
    CHECK(c.max_position_embeddings == 128 && c.rope_theta == 10000.0);

    cJSON *tj = load_json(out, "tokenizer.json");
    CHECK(tj != NULL);
    if (tj) {
        const cJSON *m = cJSON_GetObjectItem(tj, "model");
        const cJSON *vocab = cJSON_GetObjectItem(m, "vocab");
        const cJSON *merges = cJSON_GetObjectItem(m, "merges");
        CHECK(cJSON_GetArraySize(vocab) == V);
        CHECK(cJSON_GetObjectItem(vocab, "\xe2\x96\x81"
                                         "a")
                  ->valueint == 262);
        CHECK(cJSON_GetObjectItem(vocab, "<0x0A>")->valueint == 13);
        CHECK(cJSON_GetObjectItem(vocab, "</s>")->valueint == 2);
        CHECK(cJSON_GetArraySize(merges) > 150);
        CHECK(merge_is(merges, 0, "i", "n")); /* id 259, the best-scored piece */
        CHECK(merge_is(merges, 1, "e", "s"));
        CHECK(merge_is(merges, 3, "\xe2\x96\x81", "a"));
    }
    cJSON_Delete(tj);

    /* truncated / oversized copies of the real files */
    char bad[512];
    path_in(bad, sizeof bad, "aidreams_cut.bin");
    write_file(bad, raw.data, raw.size - 4);
    expect_fail(bad, tpath, EVLM_ERR_FORMAT, "aidreams_cut.bin");
    uint8_t *bigger = malloc(raw.size + (size_t)V * D * 4);
    memcpy(bigger, raw.data, raw.size);
    memset(bigger + raw.size, 0, (size_t)V * D * 4);
    write_file(bad, bigger, raw.size + (size_t)V * D * 4); /* shared header + a classifier */
    expect_fail(bad, tpath, EVLM_ERR_FORMAT, "aidreams_cut.bin");
    free(bigger);
    char *tok;
    size_t tn;
    CHECK_OK(evlm_read_file(tpath, 1 << 20, &tok, &tn));
    path_in(bad, sizeof bad, "tok_cut.bin");
    write_file(bad, tok, tn / 2);
    expect_fail(mpath, bad, EVLM_ERR_FORMAT, "tok_cut.bin");
    char *tok2 = malloc(tn + 16);
    memcpy(tok2, tok, tn);
    memset(tok2 + tn, 'x', 16);
    write_file(bad, tok2, tn + 16);
    expect_fail(mpath, bad, EVLM_ERR_FORMAT, "tok_cut.bin");
    free(tok2);
    free(tok);
    evlm_unmap(&raw);
}

int main(void) {
    CHECK(mkdtemp(g_dir) != NULL);
    test_synthetic();
    const char *shared = test_shared_dir();
    if (shared) test_real(shared);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done();
}
