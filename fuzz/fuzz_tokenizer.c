/*
 * fuzz_tokenizer.c - libFuzzer harness for the tokenizer: the input is encoded (with and
 * without parse_special) by two embedded tokenizers, and the ids decoded back; an input
 * that starts with '{' is also loaded as a tokenizer.json.
 *
 * The tokenizers are built in memory (no files needed): a byte-level BPE (NFC, Split regex,
 * Digits, ByteLevel, added tokens with lstrip / rstrip / single_word / normalized) and a
 * SentencePiece-style BPE (Prepend / Replace, byte fallback, fuse_unk, Metaspace pieces,
 * ByteFallback / Fuse / Strip decoders). Invalid UTF-8 must be refused, never crash.
 */
#include "core/buf.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* UTF-8 of a code point < 0x800 (the byte-level alphabet) */
static void put_cp(evlm_str *s, unsigned cp) {
    char b[2];
    if (cp < 0x80) {
        b[0] = (char)cp;
        evlm_str_append(s, b, 1);
    } else {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        evlm_str_append(s, b, 2);
    }
}

static unsigned byte_char(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256 + b;
    if (b <= 0xA0) return 256 + 33 + (b - 0x7F);
    return 256 + 67;
}

/* JSON string body of one byte-level character (escaping '"' and '\\') */
static void put_json_char(evlm_str *s, unsigned b) {
    unsigned cp = byte_char(b);
    if (cp == '"' || cp == '\\') evlm_str_append(s, "\\", 1);
    put_cp(s, cp);
}

static char *bytelevel_json(void) {
    evlm_str s = {0};
    evlm_str_appendz(
        &s,
        "{\"added_tokens\": ["
        "{\"id\": 256, \"content\": \"<|im_start|>\", \"special\": true, \"normalized\": false},"
        "{\"id\": 257, \"content\": \"<image>\", \"special\": true, \"normalized\": false, "
        "\"lstrip\": true, \"rstrip\": true},"
        "{\"id\": 258, \"content\": \"word\", \"special\": false, \"normalized\": true, "
        "\"single_word\": true}],"
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]},"
        "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re)|[^\\\\r\\\\n\\\\p{L}"
        "\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
        "\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
        "{\"type\": \"Digits\", \"individual_digits\": true},"
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}]},"
        "\"post_processor\": {\"type\": \"ByteLevel\"},"
        "\"decoder\": {\"type\": \"ByteLevel\"},"
        "\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (unsigned b = 0; b < 256; b++) {
        evlm_str_appendz(&s, b ? ", \"" : "\"");
        put_json_char(&s, b);
        evlm_str_appendf(&s, "\": %u", b);
    }
    /* merges of a few common pairs: "Ġt", "he", "Ġthe" -> ids 259.. */
    evlm_str_appendz(&s,
                     ", \"\xC4\xA0t\": 259, \"he\": 260, \"\xC4\xA0the\": 261, \"in\": 262},"
                     "\"merges\": [\"\xC4\xA0 t\", \"h e\", [\"\xC4\xA0t\", \"he\"], \"i n\"]}}");
    return s.data;
}

#define SP "\xE2\x96\x81"

static char *llama_json(void) {
    evlm_str s = {0};
    evlm_str_appendz(
        &s,
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true, "
        "\"normalized\": false}, {\"id\": 1, \"content\": \"<s>\", \"special\": true, "
        "\"normalized\": false}, {\"id\": 2, \"content\": \"</s>\", \"special\": true, "
        "\"normalized\": false}],"
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", "
        "\"prepend\": \"" SP "\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
        "\"content\": \"" SP "\"}]},"
        "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"" SP "\", "
        "\"prepend_scheme\": \"first\", \"split\": true},"
        "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
        "{\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
        "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},"
        "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
        "\"pattern\": {\"String\": \"" SP "\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, "
        "{\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": "
        "1}]},"
        "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, "
        "\"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
    for (int b = 0; b < 256; b += 3) evlm_str_appendf(&s, ", \"<0x%02X>\": %d", b, 3 + b);
    evlm_str_appendz(&s,
                     ", \"" SP "\": 300, \"a\": 301, \"b\": 302, \"ab\": 303, \"" SP "ab\": 304},"
                     "\"merges\": [\"a b\", \"" SP " ab\"]}}");
    return s.data;
}

static evlm_tokenizer *g_tok[2];

static void init(void) {
    static int done;
    if (done) return;
    done = 1;
    char *j[2] = {bytelevel_json(), llama_json()};
    for (int i = 0; i < 2; i++) {
        if (evlm_tokenizer_from_json("fuzz-embedded.json", j[i], strlen(j[i]), &g_tok[i]) !=
            EVLM_OK) {
            fprintf(stderr, "fuzz_tokenizer: embedded tokenizer %d: %s\n", i, evlm_last_error());
            abort();
        }
        free(j[i]);
    }
}

static void run(const evlm_tokenizer *tok, const uint8_t *data, size_t size, bool special) {
    evlm_ids ids = {0};
    evlm_str s = {0};
    if (evlm_tokenizer_encode(tok, (const char *)data, size, special, special, &ids) == EVLM_OK) {
        (void)evlm_tokenizer_decode(tok, ids.data, ids.len, false, &s);
        s.len = 0;
        (void)evlm_tokenizer_decode(tok, ids.data, ids.len, true, &s);
    }
    /* the raw bytes as ids, in and out of range */
    int n_vocab = evlm_tokenizer_n_vocab(tok);
    ids.len = 0;
    for (size_t i = 0; i < size && i < 64; i++) evlm_ids_push(&ids, (int32_t)(data[i] * 2) - 4);
    s.len = 0;
    (void)evlm_tokenizer_decode(tok, ids.data, ids.len, false, &s);
    (void)n_vocab;
    evlm_str_free(&s);
    evlm_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    for (int i = 0; i < 2; i++) {
        run(g_tok[i], data, size, true);
        run(g_tok[i], data, size, false);
    }
    if (size > 0 && data[0] == '{') {
        evlm_tokenizer *tok = NULL;
        if (evlm_tokenizer_from_json("fuzz-input.json", (const char *)data, size, &tok) ==
            EVLM_OK) {
            run(tok, (const uint8_t *)"Hello world 123 <s> \xC3\xA9", 22, true);
            evlm_tokenizer_free(tok);
        }
    }
    return 0;
}
