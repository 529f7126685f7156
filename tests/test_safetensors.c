/* test_safetensors.c - safetensors writer/reader round trip, sharded indexes, hostile headers
 * (each must fail with a message naming the file, never crash), and the real fixtures. */
#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static char g_dir[] = "/tmp/evlm_st_XXXXXX";

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static void write_raw(const char *name, const void *data, size_t n) {
    char p[512];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (!f) return;
    if (n) CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* A safetensors file: 8-byte length hlen (as given), header text, data_len zero bytes. */
static void write_st(const char *name, uint64_t hlen, const char *header, size_t data_len) {
    size_t hn = strlen(header);
    size_t n = 8 + hn + data_len;
    uint8_t *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, header, hn);
    write_raw(name, buf, n);
    free(buf);
}

static void write_st_auto(const char *name, const char *header, size_t data_len) {
    write_st(name, strlen(header), header, data_len);
}

/* Opening name (in g_dir) must fail with status want and a message naming `mention`. */
static void expect_fail(const char *name, evlm_status want, const char *mention) {
    char p[512];
    path_in(p, sizeof p, name);
    evlm_weights *w = (evlm_weights *)1;
    evlm_status st = evlm_weights_open(p, &w);
    CHECKF(st == want, "%s: status %d (want %d): %s", name, (int)st, (int)want, evlm_last_error());
    CHECKF(strstr(evlm_last_error(), mention) != NULL, "%s: message lacks '%s': %s", name, mention,
           evlm_last_error());
    CHECK(w == NULL);
    evlm_weights_free(w == (evlm_weights *)1 ? NULL : w);
}

/* ---- round trip ------------------------------------------------------------------------- */

typedef struct spec {
    const char *name;
    evlm_type type;
    int n_dims;
    int64_t ne[4];
} spec;

static const spec k_specs[] = {
    {"model.embed.weight", EVLM_TYPE_F32, 2, {5, 3, 1, 1}},
    {"half", EVLM_TYPE_F16, 1, {7, 1, 1, 1}},
    {"brain \"quoted\"\\name", EVLM_TYPE_BF16, 3, {4, 3, 2, 1}},
    {"ids", EVLM_TYPE_I64, 4, {3, 2, 1, 2}},
    {"scalar", EVLM_TYPE_U8, 0, {1, 1, 1, 1}},
    {"empty", EVLM_TYPE_F32, 2, {4, 0, 1, 1}},
    {"i32", EVLM_TYPE_I32, 1, {3, 1, 1, 1}},
    {"i8", EVLM_TYPE_I8, 2, {3, 3, 1, 1}},
};
#define N_SPECS (sizeof k_specs / sizeof k_specs[0])

static void make_tensors(evlm_tensor *ts, uint8_t **bufs) {
    for (size_t i = 0; i < N_SPECS; i++) {
        evlm_tensor *t = &ts[i];
        memset(t, 0, sizeof *t);
        t->name = k_specs[i].name;
        t->type = k_specs[i].type;
        t->n_dims = k_specs[i].n_dims;
        memcpy(t->ne, k_specs[i].ne, sizeof t->ne);
        evlm_tensor_set_contiguous(t);
        size_t nb = evlm_tensor_nbytes(t);
        bufs[i] = malloc(nb ? nb : 1);
        for (size_t k = 0; k < nb; k++) bufs[i][k] = (uint8_t)(k * 7 + i * 31 + 1);
        t->data = nb ? bufs[i] : NULL;
    }
}

static void check_same(const evlm_weights *w, const evlm_tensor *ts, size_t n) {
    CHECK(evlm_weights_count(w) == n);
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_find(w, ts[i].name);
        CHECKF(t != NULL, "tensor '%s' missing", ts[i].name);
        if (!t) continue;
        CHECK(strcmp(t->name, ts[i].name) == 0);
        CHECK(t->type == ts[i].type);
        CHECK(t->n_dims == ts[i].n_dims);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == ts[i].ne[d] && t->nb[d] == ts[i].nb[d]);
        size_t nb = evlm_tensor_nbytes(t);
        CHECK(nb == evlm_tensor_nbytes(&ts[i]));
        if (nb) CHECKF(memcmp(t->data, ts[i].data, nb) == 0, "tensor '%s' bytes", t->name);
    }
}

static void test_roundtrip(void) {
    evlm_tensor ts[N_SPECS];
    uint8_t *bufs[N_SPECS];
    make_tensors(ts, bufs);
    char p[512];
    path_in(p, sizeof p, "rt.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts, N_SPECS));

    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(p, &w));
    if (w) {
        check_same(w, ts, N_SPECS);
        /* header order is kept */
        for (size_t i = 0; i < N_SPECS; i++)
            CHECK(strcmp(evlm_weights_at(w, i)->name, ts[i].name) == 0);
        CHECK(evlm_weights_at(w, N_SPECS) == NULL);
        CHECK(evlm_weights_find(w, "nope") == NULL);
        CHECK(strstr(evlm_weights_path(w), "rt.safetensors") != NULL);
        const evlm_tensor *t;
        int64_t ne[2] = {5, 3};
        CHECK_OK(evlm_weights_get(w, "model.embed.weight", 2, ne, &t));
        CHECK(t && t->ne[1] == 3);
        CHECK_OK(evlm_weights_get(w, "half", 0, NULL, &t));
        int64_t bad[2] = {3, 5};
        CHECK(evlm_weights_get(w, "model.embed.weight", 2, bad, &t) == EVLM_ERR_FORMAT);
        CHECK(strstr(evlm_last_error(), "model.embed.weight") && t == NULL);
        CHECK(strstr(evlm_last_error(), "rt.safetensors") != NULL);
        CHECK(evlm_weights_get(w, "model.embed.weight", 1, ne, &t) == EVLM_ERR_FORMAT);
        CHECK(evlm_weights_get(w, "absent", 0, NULL, &t) == EVLM_ERR_FORMAT);
        CHECK(strstr(evlm_last_error(), "absent") != NULL);
    }
    evlm_weights_free(w);

    /* file layout: header padded to 8 with spaces, data right after */
    char *raw;
    size_t n;
    CHECK_OK(evlm_read_file(p, 1 << 20, &raw, &n));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)raw[i];
    CHECK(hlen % 8 == 0 && raw[8] == '{' && 8 + hlen <= n);
    size_t data = 0;
    for (size_t i = 0; i < N_SPECS; i++) data += evlm_tensor_nbytes(&ts[i]);
    CHECK(8 + hlen + data == n);
    CHECK(memcmp(raw + 8 + hlen, bufs[0], evlm_tensor_nbytes(&ts[0])) == 0);

    /* the same image from memory */
    w = NULL;
    CHECK_OK(evlm_weights_from_memory("mem.safetensors", raw, n, &w));
    if (w) check_same(w, ts, N_SPECS);
    evlm_weights_free(w);
    /* every truncation of a valid file fails cleanly */
    int bad_ok = 0;
    for (size_t k = 0; k + 1 < n; k += 3) {
        w = NULL;
        if (evlm_weights_from_memory("cut.safetensors", raw, k, &w) == EVLM_OK)
            bad_ok++;
        else
            CHECK(strstr(evlm_last_error(), "cut.safetensors") != NULL);
        evlm_weights_free(w);
    }
    /* cutting only trailing zero-size data could still parse; cutting real data cannot */
    CHECKF(bad_ok == 0, "%d truncations parsed", bad_ok);
    free(raw);

    /* the writer rejects duplicate names and non-contiguous views */
    evlm_tensor two[2] = {ts[0], ts[0]};
    CHECK(evlm_safetensors_write(p, two, 2) == EVLM_ERR_ARG);
    evlm_tensor nc = ts[0];
    nc.nb[1] = 4;
    CHECK(evlm_safetensors_write(p, &nc, 1) == EVLM_ERR_ARG);
    for (size_t i = 0; i < N_SPECS; i++) free(bufs[i]);
}

/* ---- sharded ---------------------------------------------------------------------------- */

static void test_sharded(void) {
    evlm_tensor ts[N_SPECS];
    uint8_t *bufs[N_SPECS];
    make_tensors(ts, bufs);
    char p[512];
    CHECK_OK(evlm_mkdir(strcat(strcpy(p, g_dir), "/sharded")));
    path_in(p, sizeof p, "sharded/model-00001-of-00002.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts, 3));
    path_in(p, sizeof p, "sharded/model-00002-of-00002.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts + 3, N_SPECS - 3));
    const char *s1 = "model-00001-of-00002.safetensors", *s2 = "model-00002-of-00002.safetensors";
    char idx[2048];
    snprintf(
        idx, sizeof idx,
        "{\"metadata\": {\"total_size\": 1234}, \"weight_map\": {\"%s\": \"%s\", \"%s\": "
        "\"%s\", \"brain \\\"quoted\\\"\\\\name\": \"%s\", \"ids\": \"%s\", \"scalar\": \"%s\", "
        "\"empty\": \"%s\", \"i32\": \"%s\", \"i8\": \"%s\"}}",
        ts[0].name, s1, ts[1].name, s1, s1, s2, s2, s2, s2, s2);
    write_raw("sharded/model.safetensors.index.json", idx, strlen(idx));

    evlm_weights *w = NULL;
    path_in(p, sizeof p, "sharded");
    CHECK_OK(evlm_weights_open(p, &w)); /* folder -> index */
    if (w) check_same(w, ts, N_SPECS);
    evlm_weights_free(w);
    w = NULL;
    path_in(p, sizeof p, "sharded/model.safetensors.index.json");
    CHECK_OK(evlm_weights_open(p, &w));
    if (w) check_same(w, ts, N_SPECS);
    evlm_weights_free(w);

    /* a folder with only model.safetensors */
    path_in(p, sizeof p, "single");
    CHECK_OK(evlm_mkdir(p));
    path_in(p, sizeof p, "single/model.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts, N_SPECS));
    w = NULL;
    path_in(p, sizeof p, "single");
    CHECK_OK(evlm_weights_open(p, &w));
    if (w) check_same(w, ts, N_SPECS);
    evlm_weights_free(w);

    /* a folder with neither */
    path_in(p, sizeof p, "emptydir");
    CHECK_OK(evlm_mkdir(p));
    expect_fail("emptydir", EVLM_ERR_IO, "emptydir");

    /* hostile indexes */
    CHECK_OK(evlm_mkdir(strcat(strcpy(p, g_dir), "/bad")));
    path_in(p, sizeof p, "bad/model-00001-of-00002.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts, 3));
    path_in(p, sizeof p, "bad/model-00002-of-00002.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts + 3, 2));
    const char *dotdot = "{\"weight_map\": {\"half\": \"../rt.safetensors\"}}";
    write_raw("bad/dotdot.index.json", dotdot, strlen(dotdot));
    expect_fail("bad/dotdot.index.json", EVLM_ERR_FORMAT, "dotdot.index.json");
    const char *slash = "{\"weight_map\": {\"half\": \"/etc/passwd\"}}";
    write_raw("bad/slash.index.json", slash, strlen(slash));
    expect_fail("bad/slash.index.json", EVLM_ERR_FORMAT, "slash.index.json");
    const char *missing = "{\"weight_map\": {\"half\": \"model-00003-of-00003.safetensors\"}}";
    write_raw("bad/missing.index.json", missing, strlen(missing));
    expect_fail("bad/missing.index.json", EVLM_ERR_IO, "model-00003-of-00003.safetensors");
    char absent[512];
    snprintf(absent, sizeof absent, "{\"weight_map\": {\"half\": \"%s\", \"ghost\": \"%s\"}}", s1,
             s1);
    write_raw("bad/absent.index.json", absent, strlen(absent));
    expect_fail("bad/absent.index.json", EVLM_ERR_FORMAT, "ghost");
    snprintf(absent, sizeof absent, "{\"weight_map\": {\"half\": \"%s\", \"ids\": \"%s\"}}", s1,
             s1); /* ids lives in shard 2 */
    write_raw("bad/wrong.index.json", absent, strlen(absent));
    expect_fail("bad/wrong.index.json", EVLM_ERR_FORMAT, "wrong.index.json");
    const char *nomap = "{\"weights\": {}}";
    write_raw("bad/nomap.index.json", nomap, strlen(nomap));
    expect_fail("bad/nomap.index.json", EVLM_ERR_FORMAT, "nomap.index.json");
    const char *nothing = "{\"weight_map\": {}}";
    write_raw("bad/nothing.index.json", nothing, strlen(nothing));
    expect_fail("bad/nothing.index.json", EVLM_ERR_FORMAT, "nothing.index.json");
    write_raw("bad/broken.index.json", "{\"weight_map\": {", 16);
    expect_fail("bad/broken.index.json", EVLM_ERR_FORMAT, "broken.index.json");
    /* the same tensor in two shards */
    path_in(p, sizeof p, "bad/dup-b.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts, 1));
    path_in(p, sizeof p, "bad/dup-a.safetensors");
    CHECK_OK(evlm_safetensors_write(p, ts, 1));
    const char *dup2 = "{\"weight_map\": {\"model.embed.weight\": \"dup-a.safetensors\", \"x\": "
                       "\"dup-b.safetensors\"}}";
    write_raw("bad/dup2.index.json", dup2, strlen(dup2));
    expect_fail("bad/dup2.index.json", EVLM_ERR_FORMAT, "dup-");
    for (size_t i = 0; i < N_SPECS; i++) free(bufs[i]);
}

/* ---- hostile single files --------------------------------------------------------------- */

static void test_hostile(void) {
    write_raw("short.safetensors", "\x10\0\0\0\0", 5);
    expect_fail("short.safetensors", EVLM_ERR_FORMAT, "short.safetensors");
    write_raw("zero.safetensors", "", 0);
    expect_fail("zero.safetensors", EVLM_ERR_FORMAT, "zero.safetensors");

    write_st("hlen_big.safetensors", 1000, "{}", 4);
    expect_fail("hlen_big.safetensors", EVLM_ERR_FORMAT, "hlen_big.safetensors");
    write_st("hlen_max.safetensors", (uint64_t)EVLM_ST_MAX_HEADER + 1, "{}", 4);
    expect_fail("hlen_max.safetensors", EVLM_ERR_FORMAT, "hlen_max.safetensors");
    write_st("hlen_huge.safetensors", UINT64_MAX, "{}", 4);
    expect_fail("hlen_huge.safetensors", EVLM_ERR_FORMAT, "hlen_huge.safetensors");

    write_st_auto("badjson.safetensors", "{\"a\": {\"dtype\": ", 0);
    expect_fail("badjson.safetensors", EVLM_ERR_FORMAT, "badjson.safetensors");
    write_st_auto("array.safetensors", "[1, 2, 3]", 0);
    expect_fail("array.safetensors", EVLM_ERR_FORMAT, "array.safetensors");
    write_st_auto("notobj.safetensors", "{\"a\": 3}", 0);
    expect_fail("notobj.safetensors", EVLM_ERR_FORMAT, "notobj.safetensors");

    struct {
        const char *file, *header;
        size_t data;
        evlm_status st;
        const char *mention;
    } cases[] = {
        {"beyond.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         4, EVLM_ERR_FORMAT, "exceed the data size 4"},
        {"beyond2.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,"
         "18446744073709551616]}}",
         8, EVLM_ERR_FORMAT, "'w'"},
        {"order.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
         EVLM_ERR_FORMAT, "begin > end"},
        {"size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         EVLM_ERR_FORMAT, "'w'"},
        {"negdim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
         8, EVLM_ERR_FORMAT, "shape[0]"},
        {"fracdim.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, EVLM_ERR_FORMAT,
         "shape[0]"},
        {"strdim.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, EVLM_ERR_FORMAT,
         "shape[0]"},
        {"hugedim.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, EVLM_ERR_FORMAT,
         "'w'"},
        {"overflow.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}",
         8, EVLM_ERR_FORMAT, "overflow"},
        {"overflow2.safetensors",
         "{\"w\":{\"dtype\":\"I64\",\"shape\":[4503599627370496,4096],"
         "\"data_offsets\":[0,0]}}",
         8, EVLM_ERR_FORMAT, "overflow"},
        {"zero_overflow.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,0]}}",
         0, EVLM_OK, ""},
        {"fivedims.safetensors", /* a Conv3d kernel: the extra inner dim folds into ne[0] */
         "{\"w5\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, EVLM_OK,
         ""},
        {"ninedims.safetensors",
         "{\"w9\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         EVLM_ERR_UNSUPPORTED, "'w9'"},
        {"dtype.safetensors",
         "{\"wq\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8,
         EVLM_ERR_UNSUPPORTED, "F8_E4M3"},
        {"internal.safetensors", /* evlm's in-memory interleaved layout is not a file dtype */
         "{\"wq\":{\"dtype\":\"BF16_R16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
         EVLM_ERR_UNSUPPORTED, "BF16_R16"},
        {"internal2.safetensors",
         "{\"wq\":{\"dtype\":\"Q8_0_R16\",\"shape\":[32],\"data_offsets\":[0,34]}}", 40,
         EVLM_ERR_UNSUPPORTED, "Q8_0_R16"},
        {"dtype2.safetensors", "{\"wq\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,2]}}", 8,
         EVLM_ERR_FORMAT, "'wq'"},
        {"dup.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
         "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
         8, EVLM_ERR_FORMAT, "twice"},
        {"stroff.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[\"0\",\"2\"]}}", 8,
         EVLM_ERR_FORMAT, "data_offsets"},
        {"fracoff.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0.5,2.5]}}", 8, EVLM_ERR_FORMAT,
         "data_offsets"},
        {"negoff.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]}}",
         8, EVLM_ERR_FORMAT, "data_offsets"},
        {"threeoff.safetensors",
         "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2,4]}}", 8, EVLM_ERR_FORMAT,
         "data_offsets"},
        {"noshape.safetensors", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,2]}}", 8,
         EVLM_ERR_FORMAT, "shape"},
        {"meta.safetensors", "{\"__metadata__\": 5}", 0, EVLM_ERR_FORMAT, "__metadata__"},
        /* allowed: overlapping tensors, holes, unaligned data, metadata */
        {"overlap.safetensors",
         "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[1,9]},\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}"
         "}",
         16, EVLM_OK, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st_auto(cases[i].file, cases[i].header, cases[i].data);
        if (cases[i].st != EVLM_OK) {
            expect_fail(cases[i].file, cases[i].st, cases[i].file);
            CHECKF(strstr(evlm_last_error(), cases[i].mention) != NULL, "%s: '%s' not in: %s",
                   cases[i].file, cases[i].mention, evlm_last_error());
        } else {
            char p[512];
            path_in(p, sizeof p, cases[i].file);
            evlm_weights *w = NULL;
            CHECK_OK(evlm_weights_open(p, &w));
            evlm_weights_free(w);
        }
    }
    expect_fail("does_not_exist.safetensors", EVLM_ERR_IO, "does_not_exist.safetensors");
}

/* ---- real fixtures ---------------------------------------------------------------------- */

static void test_fixtures(const char *shared) {
    char p[4096];
    snprintf(p, sizeof p, "%s/fixtures/llama-tiny/model.safetensors", shared);
    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(p, &w));
    if (w) {
        CHECK(evlm_weights_count(w) == 20);
        const evlm_tensor *t;
        int64_t ne[2] = {64, 680};
        CHECK_OK(evlm_weights_get(w, "model.embed_tokens.weight", 2, ne, &t));
        CHECK(t && t->type == EVLM_TYPE_BF16 && t->nb[1] == 128);
        int64_t kne[2] = {64, 32};
        CHECK_OK(evlm_weights_get(w, "model.layers.1.self_attn.k_proj.weight", 2, kne, &t));
        CHECK(evlm_weights_find(w, "model.norm.weight") != NULL);
        CHECK(evlm_weights_find(w, "lm_head.weight") == NULL);
        /* bf16 weights of a trained-from-random model are small finite numbers */
        int sane = 1;
        if (t)
            for (int i = 0; i < 64 * 32; i++) {
                float f = evlm_bf16_to_f32(((const uint16_t *)t->data)[i]);
                if (!isfinite(f) || fabsf(f) > 100) sane = 0;
            }
        CHECK(sane);
    }
    evlm_weights_free(w);
    snprintf(p, sizeof p, "%s/fixtures/llama-tiny", shared);
    w = NULL;
    CHECK_OK(evlm_weights_open(p, &w)); /* folder */
    evlm_weights_free(w);

    snprintf(p, sizeof p, "%s/fixtures/llama-tiny/ref_outputs.safetensors", shared);
    w = NULL;
    CHECK_OK(evlm_weights_open(p, &w));
    if (w) {
        const evlm_tensor *ids, *logits;
        int64_t ine[1] = {26}, lne[2] = {680, 26};
        CHECK_OK(evlm_weights_get(w, "p0.input_ids", 1, ine, &ids));
        CHECK_OK(evlm_weights_get(w, "p0.logits", 2, lne, &logits));
        if (ids) {
            int64_t v[3];
            memcpy(v, ids->data, sizeof v); /* the data start may be unaligned */
            CHECK(ids->type == EVLM_TYPE_I64 && v[0] == 1 && v[1] == 87 && v[2] == 526);
        }
        CHECK(logits && logits->type == EVLM_TYPE_F32);
    }
    evlm_weights_free(w);
}

int main(void) {
    CHECK(mkdtemp(g_dir) != NULL);
    test_roundtrip();
    test_sharded();
    test_hostile();
    const char *shared = test_shared_dir();
    if (shared) test_fixtures(shared);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done();
}
