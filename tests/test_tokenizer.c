/*
 * test_tokenizer.c - the tokenizer against Hugging Face tokenizers' own outputs.
 *
 * 1. Fixtures (llama-tiny, smolvlm-tiny, qwen2vl-tiny): every ref_tokenizer.json case must
 *    encode (parse_special, no add_special) to exactly the reference ids and decode back to
 *    exactly the reference text.
 * 2. The real 49,280-token SmolVLM tokenizer: load time, vocab size, special-token prompts.
 * 3. A Llama-2 / SentencePiece-style tokenizer.json (what the llama2.c converter writes):
 *    Prepend / Replace normalizers, byte fallback, fuse_unk, BOS template, Strip decoder.
 * 4. Hostile input: malformed files, unsupported components, invalid UTF-8, bad ids.
 * Part 3 and 4 need no shared data; 1 and 2 are skipped (return 77) without it.
 */
#include "core/json.h"
#include "tokenizer/tokenizer.h"

#include "test.h"

#include <stdint.h>
#include <time.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#endif

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static bool ids_eq(const evlm_ids *a, const int32_t *b, size_t n) {
    return a->len == n && (n == 0 || memcmp(a->data, b, n * sizeof *b) == 0);
}

/* ---- 1. fixtures ------------------------------------------------------------------------ */

static void test_fixture(const char *shared, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/fixtures/%s/tokenizer.json", shared, name);
    evlm_tokenizer *tok = NULL;
    CHECK_OK(evlm_tokenizer_load(path, &tok));
    if (!tok) return;
    snprintf(path, sizeof path, "%s/fixtures/%s/ref_tokenizer.json", shared, name);
    cJSON *ref = NULL;
    CHECK_OK(evlm_json_load(path, &ref));
    if (!ref) {
        evlm_tokenizer_free(tok);
        return;
    }
    int n_cases = 0, n_bad_enc = 0, n_bad_dec = 0;
    for (const cJSON *c = ref->child; c; c = c->next, n_cases++) {
        const cJSON *jt = cJSON_GetObjectItem(c, "text"), *ji = cJSON_GetObjectItem(c, "ids"),
                    *jd = cJSON_GetObjectItem(c, "decoded");
        if (!cJSON_IsString(jt) || !cJSON_IsArray(ji) || !cJSON_IsString(jd)) {
            CHECKF(0, "%s: case %d malformed", name, n_cases);
            continue;
        }
        size_t n_ref = (size_t)cJSON_GetArraySize(ji);
        int32_t *want = malloc((n_ref ? n_ref : 1) * sizeof *want);
        size_t k = 0;
        for (const cJSON *x = ji->child; x; x = x->next) want[k++] = (int32_t)x->valuedouble;
        const char *text = jt->valuestring;
        evlm_ids got = {0};
        evlm_status st = evlm_tokenizer_encode(tok, text, strlen(text), true, false, &got);
        bool ok = st == EVLM_OK && ids_eq(&got, want, n_ref);
        if (!ok && n_bad_enc++ < 5) {
            fprintf(stderr, "FAIL %s encode case %d: \"%s\" (%s)\n", name, n_cases, text,
                    st == EVLM_OK ? "ids differ" : evlm_last_error());
            print_ids("expected", want, n_ref);
            print_ids("got     ", got.data, got.len);
        }
        CHECK(ok);
        evlm_str dec = {0};
        st = evlm_tokenizer_decode(tok, want, n_ref, false, &dec);
        const char *d = dec.data ? dec.data : "";
        ok = st == EVLM_OK && strcmp(d, jd->valuestring) == 0;
        if (!ok && n_bad_dec++ < 5)
            fprintf(stderr,
                    "FAIL %s decode case %d:\n    expected \"%s\"\n    got      \"%s\" (%s)\n",
                    name, n_cases, jd->valuestring, d, st == EVLM_OK ? "" : evlm_last_error());
        CHECK(ok);
        evlm_str_free(&dec);
        evlm_ids_free(&got);
        free(want);
    }
    printf("%s: %d cases, %d encode and %d decode mismatches\n", name, n_cases, n_bad_enc,
           n_bad_dec);
    CHECK(n_cases > 0);
    cJSON_Delete(ref);
    evlm_tokenizer_free(tok);
}

/* ---- 2. the real SmolVLM tokenizer ----------------------------------------------------- */

static void roundtrip(const evlm_tokenizer *tok, const char *text) {
    evlm_ids ids = {0};
    evlm_str s = {0};
    CHECK_OK(evlm_tokenizer_encode(tok, text, strlen(text), true, false, &ids));
    CHECK_OK(evlm_tokenizer_decode(tok, ids.data, ids.len, false, &s));
    CHECKF(s.data && strcmp(s.data, text) == 0, "round trip of \"%s\" gave \"%s\"", text,
           s.data ? s.data : "(null)");
    evlm_str_free(&s);
    evlm_ids_free(&ids);
}

static bool has_id(const evlm_ids *ids, int32_t id) {
    for (size_t i = 0; i < ids->len; i++)
        if (ids->data[i] == id) return true;
    return false;
}

static void test_smolvlm_real(const char *shared) {
    char path[4096];
    snprintf(path, sizeof path, "%s/reference/smolvlm-256m-instruct/tokenizer.json", shared);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("SKIP smolvlm-256m-instruct: %s not found\n", path);
        return;
    }
    fclose(f);
    evlm_tokenizer *tok = NULL;
    double t0 = now_ms();
    CHECK_OK(evlm_tokenizer_load(path, &tok));
    double ms = now_ms() - t0;
    /* reported, not asserted: timings belong to benchmarks (a loaded CI machine is slow) */
    printf("smolvlm-256m-instruct tokenizer.json: loaded in %.1f ms\n", ms);
    if (!tok) return;
    CHECKF(evlm_tokenizer_n_vocab(tok) == 49280, "n_vocab %d", evlm_tokenizer_n_vocab(tok));

    const char *prompt = "<|im_start|>User:<image>What is the plate?<end_of_utterance>\nAssistant:";
    int32_t im_start = evlm_tokenizer_token_id(tok, "<|im_start|>");
    int32_t image = evlm_tokenizer_token_id(tok, "<image>");
    int32_t eou = evlm_tokenizer_token_id(tok, "<end_of_utterance>");
    CHECK(im_start >= 0 && image >= 0 && eou >= 0);
    CHECK(evlm_tokenizer_is_special(tok, im_start) && evlm_tokenizer_is_special(tok, image));
    CHECK(evlm_tokenizer_token_str(tok, image) &&
          !strcmp(evlm_tokenizer_token_str(tok, image), "<image>"));
    evlm_ids ids = {0};
    CHECK_OK(evlm_tokenizer_encode(tok, prompt, strlen(prompt), true, false, &ids));
    CHECK(ids.len > 0 && ids.data[0] == im_start);
    CHECK(has_id(&ids, image) && has_id(&ids, eou));
    evlm_str s = {0};
    CHECK_OK(evlm_tokenizer_decode(tok, ids.data, ids.len, false, &s));
    CHECK(s.data && !strcmp(s.data, prompt));
    evlm_str_free(&s);
    CHECK_OK(evlm_tokenizer_decode(tok, ids.data, ids.len, true, &s));
    CHECKF(s.data && !strcmp(s.data, "User:What is the plate?\nAssistant:"), "skip_special: \"%s\"",
           s.data ? s.data : "");
    evlm_str_free(&s);
    /* without parse_special the markers are plain text */
    size_t n_special = ids.len;
    ids.len = 0;
    CHECK_OK(evlm_tokenizer_encode(tok, prompt, strlen(prompt), false, false, &ids));
    CHECK(!has_id(&ids, image) && !has_id(&ids, im_start) && ids.len > n_special);
    evlm_ids_free(&ids);

    roundtrip(tok, "Hello, world! The plate reads B-MW 2451.");
    roundtrip(tok, "  multiple   spaces\tand\ttabs\n\nnewlines  ");
    roundtrip(tok, "emoji 😀 accents éàü 日本語 한국어 ∑∫");
    roundtrip(tok, "<row_1_col_1><fake_token_around_image><global-img>");

    /* a long run of whitespace and text: no regex stack trouble */
    size_t big = 1 << 20;
    char *text = malloc(big + 16);
    memset(text, ' ', big);
    memcpy(text + big, "end 1234 done", 14);
    t0 = now_ms();
    CHECK_OK(evlm_tokenizer_encode(tok, text, big + 13, true, false, &ids));
    printf("1 MiB of spaces: %zu ids in %.1f ms\n", ids.len, now_ms() - t0);
    evlm_ids_free(&ids);
    free(text);
    evlm_tokenizer_free(tok);
}

/* ---- 3. a Llama-2 / SentencePiece-style tokenizer ---------------------------------------- */

#define SP "\xE2\x96\x81" /* U+2581 */

static char *llama_json(void) {
    evlm_str s = {0};
    evlm_str_appendz(
        &s,
        "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n"
        "\"added_tokens\": ["
        "{\"id\": 0, \"content\": \"<unk>\", \"single_word\": false, \"lstrip\": false, "
        "\"rstrip\": false, \"normalized\": false, \"special\": true},"
        "{\"id\": 1, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false, "
        "\"rstrip\": false, \"normalized\": false, \"special\": true},"
        "{\"id\": 2, \"content\": \"</s>\", \"single_word\": false, \"lstrip\": false, "
        "\"rstrip\": false, \"normalized\": false, \"special\": true}],\n"
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
        "{\"type\": \"Prepend\", \"prepend\": \"" SP "\"},"
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SP "\"}]},\n"
        "\"pre_tokenizer\": null,\n"
        "\"post_processor\": {\"type\": \"TemplateProcessing\", "
        "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
        "\"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
        "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 1}}, "
        "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
        "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},\n"
        "\"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \"" SP "\"}, \"content\": \" \"},"
        "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
        "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n"
        "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", "
        "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
        "\"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,\n"
        "\"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
    for (int b = 0; b < 256; b++) evlm_str_appendf(&s, ", \"<0x%02X>\": %d", b, 3 + b);
    static const char *pieces[] = {SP,   "h",    "e",     "l",        "o",  "he",
                                   "ll", "llo",  "hello", SP "hello", "w",  "r",
                                   "d",  SP "w", "or",    SP "wor",   "ld", SP "world"};
    for (int i = 0; i < (int)(sizeof pieces / sizeof *pieces); i++)
        evlm_str_appendf(&s, ", \"%s\": %d", pieces[i], 259 + i);
    evlm_str_appendz(&s, "},\n\"merges\": [[\"h\", \"e\"], [\"l\", \"l\"], [\"ll\", \"o\"], "
                         "[\"he\", \"llo\"], [\"" SP "\", \"hello\"], [\"" SP "\", \"w\"], "
                         "[\"o\", \"r\"], \"" SP "w or\", [\"l\", \"d\"], [\"" SP
                         "wor\", \"ld\"]]}}\n");
    return s.data;
}

static void check_encode(const evlm_tokenizer *tok, const char *text, bool add_special,
                         const int32_t *want, size_t n) {
    evlm_ids ids = {0};
    CHECK_OK(evlm_tokenizer_encode(tok, text, strlen(text), true, add_special, &ids));
    bool ok = ids_eq(&ids, want, n);
    if (!ok) {
        fprintf(stderr, "FAIL encode \"%s\"\n", text);
        print_ids("expected", want, n);
        print_ids("got     ", ids.data, ids.len);
    }
    CHECK(ok);
    evlm_ids_free(&ids);
}

static void check_decode(const evlm_tokenizer *tok, const int32_t *ids, size_t n, bool skip,
                         const char *want) {
    evlm_str s = {0};
    CHECK_OK(evlm_tokenizer_decode(tok, ids, n, skip, &s));
    CHECKF(s.data && !strcmp(s.data, want), "decode: expected \"%s\", got \"%s\"", want,
           s.data ? s.data : "(null)");
    evlm_str_free(&s);
}

static void test_llama_style(void) {
    char *json = llama_json();
    evlm_tokenizer *tok = NULL;
    CHECK_OK(evlm_tokenizer_from_json("llama-test.json", json, strlen(json), &tok));
    if (!tok) {
        free(json);
        return;
    }
    CHECK(evlm_tokenizer_n_vocab(tok) == 259 + 18);
    int32_t hello = evlm_tokenizer_token_id(tok, SP "hello"),
            world = evlm_tokenizer_token_id(tok, SP "world");
    int32_t sp = evlm_tokenizer_token_id(tok, SP), h = evlm_tokenizer_token_id(tok, "h");
    CHECK(hello == 259 + 9 && world == 259 + 17);
    CHECK(evlm_tokenizer_token_id(tok, "<0xC3>") == 3 + 0xC3);

    check_encode(tok, "hello", true, (int32_t[]){1, hello}, 2);
    check_encode(tok, "hello", false, (int32_t[]){hello}, 1);
    check_encode(tok, "hello world", false, (int32_t[]){hello, world}, 2);
    /* é is not in the vocab: its UTF-8 bytes */
    check_encode(tok, "\xC3\xA9", false, (int32_t[]){sp, 3 + 0xC3, 3 + 0xA9}, 3);
    check_encode(tok, "h\xC3\xA9", true, (int32_t[]){1, sp, h, 3 + 0xC3, 3 + 0xA9}, 5);
    /* special tokens in the text; the piece after one gets its own "▁" (Prepend) */
    check_encode(tok, "<s>hello</s>", false, (int32_t[]){1, hello, 2}, 3);
    check_encode(tok, "", true, (int32_t[]){1}, 1);

    check_decode(tok, (int32_t[]){1, hello, world}, 3, true, "hello world");
    check_decode(tok, (int32_t[]){1, hello, world}, 3, false, "<s> hello world");
    check_decode(tok, (int32_t[]){hello, world, 2}, 3, false, "hello world</s>");
    check_decode(tok, (int32_t[]){sp, 3 + 0xC3, 3 + 0xA9}, 3, false, "\xC3\xA9");
    check_decode(tok, (int32_t[]){1, sp, h, 3 + 0xC3, 3 + 0xA9, world}, 6, true, "h\xC3\xA9 world");
    /* a lone continuation byte: one U+FFFD per byte, as the reference */
    check_decode(tok, (int32_t[]){hello, 3 + 0xA9, 3 + 0xA9}, 3, false,
                 "hello\xEF\xBF\xBD\xEF\xBF\xBD");

    /* round trips through encode + decode (skip the BOS) */
    static const char *texts[] = {"hello world",
                                  "h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC",
                                  "  two leading", "tabs\tand\nnewlines", "\xF0\x9F\x98\x80!"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        evlm_ids ids = {0};
        evlm_str s = {0};
        CHECK_OK(evlm_tokenizer_encode(tok, texts[i], strlen(texts[i]), true, true, &ids));
        CHECK(ids.len > 0 && ids.data[0] == 1);
        CHECK_OK(evlm_tokenizer_decode(tok, ids.data, ids.len, true, &s));
        /* Strip removes one leading space: the one Prepend added */
        CHECKF(s.data && !strcmp(s.data, texts[i]), "round trip \"%s\" -> \"%s\"", texts[i],
               s.data ? s.data : "");
        evlm_str_free(&s);
        evlm_ids_free(&ids);
    }
    evlm_tokenizer_free(tok);

    /* without byte fallback, unknown characters become one fused <unk> */
    char *p = strstr(json, "\"byte_fallback\": true");
    memcpy(p, "\"byte_fallback\":false", 21);
    CHECK_OK(evlm_tokenizer_from_json("llama-nofallback.json", json, strlen(json), &tok));
    if (tok) {
        check_encode(tok, "\xC3\xA9\xC3\xA9 hello", false, (int32_t[]){sp, 0, hello}, 3);
        evlm_tokenizer_free(tok);
    }
    free(json);
}

/* ---- 4. hostile input -------------------------------------------------------------------- */

static void expect_load_error(const char *json, evlm_status want, const char *needle) {
    evlm_tokenizer *tok = NULL;
    evlm_status st = evlm_tokenizer_from_json("hostile.json", json, strlen(json), &tok);
    CHECKF(st == want && tok == NULL, "%s: status %d (%s)", json, (int)st, evlm_last_error());
    if (needle)
        CHECKF(strstr(evlm_last_error(), needle) != NULL, "error \"%s\" does not name \"%s\"",
               evlm_last_error(), needle);
    evlm_tokenizer_free(tok);
}

#define MINI_MODEL                                                                                 \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a " \
    "b\"]}"

static void test_hostile(void) {
    expect_load_error("{\"model\": ", EVLM_ERR_FORMAT, "hostile.json");
    expect_load_error("", EVLM_ERR_FORMAT, NULL);
    expect_load_error("[]", EVLM_ERR_FORMAT, NULL);
    expect_load_error("{}", EVLM_ERR_FORMAT, "model");
    expect_load_error(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
        EVLM_ERR_FORMAT, "model.merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                      "\"merges\": [[\"a\", \"b\"]]}}",
                      EVLM_ERR_FORMAT, "\"ab\"");
    expect_load_error(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}",
        EVLM_ERR_FORMAT, "model.merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
                      EVLM_ERR_FORMAT, "model.vocab");
    expect_load_error(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 3000000}, \"merges\": []}}",
        EVLM_ERR_FORMAT, NULL);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}",
                      EVLM_ERR_FORMAT, NULL);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xff\": 0}, \"merges\": []}}",
                      EVLM_ERR_FORMAT, "UTF-8");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", EVLM_ERR_UNSUPPORTED,
                      "WordPiece");
    expect_load_error("{\"normalizer\": {\"type\": \"BertNormalizer\"}, " MINI_MODEL "}",
                      EVLM_ERR_UNSUPPORTED, "BertNormalizer");
    expect_load_error(
        "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
        "{\"type\": \"Precompiled\"}]}, " MINI_MODEL "}",
        EVLM_ERR_UNSUPPORTED, "normalizer.normalizers[1]");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, " MINI_MODEL "}",
                      EVLM_ERR_UNSUPPORTED, "Whitespace");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                      "\"behavior\": \"Isolated\"}, " MINI_MODEL "}",
                      EVLM_ERR_UNSUPPORTED, "pre_tokenizer.pattern");
    expect_load_error("{\"decoder\": {\"type\": \"WordPiece\"}, " MINI_MODEL "}",
                      EVLM_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error(
        "{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
        "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}], \"special_tokens\": "
        "{\"<s>\": {\"id\": \"<s>\", \"ids\": [99], \"tokens\": [\"<s>\"]}}}, " MINI_MODEL "}",
        EVLM_ERR_FORMAT, "post_processor.single[0]");
    expect_load_error("{\"truncation\": {\"max_length\": 8}, " MINI_MODEL "}", EVLM_ERR_UNSUPPORTED,
                      "truncation");
    expect_load_error("{\"added_tokens\": [{\"id\": 5}], " MINI_MODEL "}", EVLM_ERR_FORMAT,
                      "added_tokens[0]");
    expect_load_error(
        "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}",
        EVLM_ERR_UNSUPPORTED, "dropout");

    /* a minimal valid tokenizer: no normalizer, pre-tokenizer or decoder */
    const char *mini = "{" MINI_MODEL "}";
    evlm_tokenizer *tok = NULL;
    CHECK_OK(evlm_tokenizer_from_json("mini.json", mini, strlen(mini), &tok));
    if (!tok) return;
    evlm_ids ids = {0};
    CHECK_OK(evlm_tokenizer_encode(tok, "abxab", 5, true, true, &ids));
    CHECK(ids.len == 2 && ids.data[0] == 2 && ids.data[1] == 2); /* x has no token, no unk */
    static const char *bad[] = {
        "\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "ok\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t before = ids.len;
        evlm_status st = evlm_tokenizer_encode(tok, bad[i], strlen(bad[i]), true, false, &ids);
        CHECKF(st == EVLM_ERR_ARG, "invalid UTF-8 case %zu: status %d", i, (int)st);
        CHECK(ids.len == before);
    }
    CHECK(strstr(evlm_last_error(), "UTF-8") != NULL);
    CHECK(evlm_tokenizer_encode(tok, NULL, 3, true, false, &ids) == EVLM_ERR_ARG);
    evlm_str s = {0};
    static const int32_t bad_ids[][2] = {{0, -1}, {0, 3}, {INT32_MAX, 0}, {INT32_MIN, 1}};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++)
        CHECK(evlm_tokenizer_decode(tok, bad_ids[i], 2, false, &s) == EVLM_ERR_RANGE);
    CHECK(s.len == 0);
    CHECK_OK(evlm_tokenizer_decode(tok, (int32_t[]){2, 0}, 2, false, &s));
    CHECK(s.data && !strcmp(s.data, "ab a")); /* no decoder: joined with spaces */
    CHECK(evlm_tokenizer_token_id(tok, "zz") == -1 && evlm_tokenizer_token_str(tok, 7) == NULL);
    evlm_str_free(&s);
    evlm_ids_free(&ids);
    evlm_tokenizer_free(tok);

    CHECK(evlm_tokenizer_load("/nonexistent/tokenizer.json", &tok) == EVLM_ERR_IO && !tok);
}

/* ---- components beyond the fixtures (Split behaviors, Digits, Metaspace, added-token flags) */

static void test_components(void) {
    /* a byte-free word-level BPE over single characters, with pre-tokenizers under test */
    const char *base =
        "{\"added_tokens\": [{\"id\": 20, \"content\": \"<x>\", \"lstrip\": true, \"rstrip\": "
        "true, "
        "\"normalized\": false, \"special\": false}, {\"id\": 21, \"content\": \"AB\", "
        "\"single_word\": "
        "true, \"normalized\": true, \"special\": false}],"
        "\"normalizer\": {\"type\": \"Lowercase\"},"
        "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
        "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"MergedWithNext\"},"
        "{\"type\": \"Digits\", \"individual_digits\": false},"
        "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"first\", "
        "\"split\": true}]},"
        "\"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": "
        "\"first\"},"
        "\"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"vocab\": {\"?\": 0, \"_\": 1, "
        "\"a\": 2, "
        "\"b\": 3, \"-\": 4, \"1\": 5, \"2\": 6, \"_a\": 7, \"12\": 8, \"-a\": 9, \"_-\": 10, "
        "\"ab\": 21}, "
        "\"merges\": [\"_ a\", \"1 2\", \"- a\", \"_ -\"]}}";
    evlm_tokenizer *tok = NULL;
    CHECK_OK(evlm_tokenizer_from_json("components.json", base, strlen(base), &tok));
    if (!tok) return;
    /* "A-a12 b": lowercase -> "a-a12 b"; split MergedWithNext on '-' -> "a", "-a12 b";
     * digits contiguous -> "a", "-a", "12", " b"; metaspace (first only) -> "_a", "-a", "12", "_b"
     */
    check_encode(tok, "A-a12 b", false, (int32_t[]){7, 9, 8, 1, 3}, 5);
    /* lstrip / rstrip eat the spaces around <x>; "ab" (normalized "AB") only as a whole word */
    check_encode(tok, "a  <x>  b", false, (int32_t[]){7, 20, 3}, 3);
    check_encode(tok, "AB ab", false, (int32_t[]){21, 1, 21}, 3);
    check_encode(tok, "xab", false, (int32_t[]){1, 0, 2, 3}, 4); /* "_xab": x is unk */
    check_decode(tok, (int32_t[]){7, 1, 3}, 3, false, "a b");
    evlm_tokenizer_free(tok);
}

/* Split on "-" with every behavior; merges across the delimiter show where the cuts are */
static void test_split_behaviors(void) {
    static const struct {
        const char *behavior, *invert, *text;
        int32_t ids[4];
        size_t n;
    } cases[] = {
        {"Removed", "false", "a-a", {0, 0}, 2},
        {"Isolated", "false", "a-a", {0, 1, 0}, 3},
        {"MergedWithPrevious", "false", "a-a", {2, 0}, 2},
        {"MergedWithNext", "false", "a-a", {0, 3}, 2},
        {"Contiguous", "false", "a-a", {0, 1, 0}, 3},
        {"Contiguous", "false", "a--a", {0, 4, 0}, 3},
        {"Isolated", "false", "a--a", {0, 1, 1, 0}, 4},
        {"MergedWithPrevious", "false", "a--a", {2, 1, 0}, 3},
        {"MergedWithNext", "false", "a--a", {0, 1, 3}, 3},
        {"Removed", "true", "a--a", {1, 1}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "
                 "\"behavior\": \"%s\", \"invert\": %s}, \"model\": {\"type\": \"BPE\", "
                 "\"vocab\": {\"a\": 0, \"-\": 1, \"a-\": 2, \"-a\": 3, \"--\": 4}, "
                 "\"merges\": [\"a -\", \"- a\", \"- -\"]}}",
                 cases[i].behavior, cases[i].invert);
        evlm_tokenizer *tok = NULL;
        CHECK_OK(evlm_tokenizer_from_json("split.json", json, strlen(json), &tok));
        if (!tok) continue;
        check_encode(tok, cases[i].text, false, cases[i].ids, cases[i].n);
        evlm_tokenizer_free(tok);
    }
}

int main(void) {
    test_llama_style();
    test_hostile();
    test_components();
    test_split_behaviors();
    const char *shared = test_shared_dir();
    if (!shared) {
        test_done();
        return t_fail ? 1 : 77;
    }
    test_fixture(shared, "llama-tiny");
    test_fixture(shared, "smolvlm-tiny");
    test_fixture(shared, "qwen2vl-tiny");
    test_smolvlm_real(shared);
    return test_done();
}
