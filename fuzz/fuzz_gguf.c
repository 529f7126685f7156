/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader: parses the input from memory, reads
 * every metadata value through the typed getters, touches the first and last byte of every
 * tensor (a view outside the input is caught by ASan), then builds the weight set (names
 * mapped, llama Q/K rows copied back) and looks every tensor up; then reads it as a llama.cpp
 * model with itself as mmproj (gguf_llamacpp.h: the rebuilt Hugging Face files). Seed corpus:
 * fuzz/corpus/fuzz_gguf/ (written by tests/test_gguf.c with EVLM_GGUF_CORPUS=dir).
 */
#include "io/gguf.h"
#include "io/gguf_llamacpp.h"
#include "io/safetensors.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const evlm_tensor *t, volatile uint8_t *sink) {
    size_t nb = evlm_tensor_nbytes(t);
    if (!nb) return;
    const uint8_t *p = t->data;
    *sink ^= p[0];
    *sink ^= p[nb - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    evlm_gguf *g = NULL;
    if (evlm_gguf_from_memory("fuzz.gguf", data, size, &g) != EVLM_OK) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < evlm_gguf_kv_count(g); i++) {
        const char *key = evlm_gguf_kv_key(g, i), *s;
        size_t n;
        uint32_t u;
        int32_t i32;
        uint64_t u64;
        float f, fa[4];
        bool b;
        int32_t ia[4];
        if (evlm_gguf_find_key(g, key) != (long)i) __builtin_trap();
        if (evlm_gguf_get_str(g, key, &s, &n) == EVLM_OK && n) sink ^= (uint8_t)s[n - 1];
        (void)evlm_gguf_get_u32(g, key, &u);
        (void)evlm_gguf_get_i32(g, key, &i32);
        (void)evlm_gguf_get_u64(g, key, &u64);
        (void)evlm_gguf_get_f32(g, key, &f);
        (void)evlm_gguf_get_bool(g, key, &b);
        (void)evlm_gguf_get_arr_i32(g, key, ia, 4);
        (void)evlm_gguf_get_arr_f32(g, key, fa, 4);
        evlm_gguf_vtype et;
        if (evlm_gguf_get_arr_n(g, key, &et, &n) == EVLM_OK && et == EVLM_GGUF_STRING) {
            for (size_t k = 0; k < n; k++)
                if (evlm_gguf_get_arr_str(g, key, k, &s, &n) == EVLM_OK && n)
                    sink ^= (uint8_t)s[n - 1];
        }
    }
    for (size_t i = 0; i < evlm_gguf_tensor_count(g); i++) {
        const evlm_tensor *t = evlm_gguf_tensor_at(g, i);
        touch(t, &sink);
        if (evlm_gguf_tensor_find(g, t->name) != t) __builtin_trap();
    }
    evlm_weights *w = NULL;
    if (evlm_gguf_weights(g, &w) == EVLM_OK) {
        for (size_t i = 0; i < evlm_weights_count(w); i++) {
            const evlm_tensor *t = evlm_weights_at(w, i);
            touch(t, &sink);
            if (evlm_weights_find(w, t->name) != t) __builtin_trap();
        }
    }
    evlm_gguf_close(g); /* the set keeps the data alive */
    evlm_weights_free(w);
    /* the input as a llama.cpp model and as its own mmproj: the Hugging Face files rebuilt from
     * its metadata, the weight set of the pair */
    evlm_gguf *lm = NULL, *mm = NULL;
    evlm_llamacpp *l = NULL;
    bool opened = evlm_gguf_from_memory("fuzz.gguf", data, size, &lm) == EVLM_OK &&
                  evlm_gguf_from_memory("mmproj-fuzz.gguf", data, size, &mm) == EVLM_OK;
    evlm_status st = opened ? evlm_llamacpp_wrap(lm, mm, &l) : EVLM_ERR_ARG;
    if (opened) lm = mm = NULL; /* wrap took them over, also on failure */
    if (st == EVLM_OK) {
        static const char *const files[] = {"config.json", "tokenizer.json",
                                            "tokenizer_config.json", "chat_template.jinja",
                                            "processor_config.json"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            const char *text;
            size_t n;
            if (evlm_llamacpp_file(l, files[i], &text, &n) == EVLM_OK && n)
                sink ^= (uint8_t)text[n - 1];
        }
        w = NULL;
        if (evlm_llamacpp_weights(l, &w) == EVLM_OK)
            for (size_t i = 0; i < evlm_weights_count(w); i++) touch(evlm_weights_at(w, i), &sink);
        evlm_llamacpp_free(l);
        evlm_weights_free(w);
    }
    evlm_gguf_close(lm);
    evlm_gguf_close(mm);
    (void)sink;
    return 0;
}
