/*
 * fuzz_config.c - libFuzzer harness for config.json parsing: the input up to the first NUL byte
 * is config.json, the rest (if any) generation_config.json. Seed corpus: fuzz/corpus/fuzz_config/.
 */
#include "io/hf_config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const char *nul = size ? memchr(text, 0, size) : NULL;
    size_t n = nul ? (size_t)(nul - text) : size;
    const char *gen = nul ? nul + 1 : NULL;
    size_t gen_n = nul ? size - n - 1 : 0;
    evlm_decoder_config cfg;
    if (evlm_decoder_config_parse("config.json", size ? text : "", n, gen, gen_n, &cfg) ==
        EVLM_OK) {
        /* invariants a caller relies on */
        if (cfg.n_heads % cfg.n_kv_heads || cfg.head_dim % 2 || cfg.n_eos > EVLM_MAX_EOS)
            __builtin_trap();
    }
    return 0;
}
