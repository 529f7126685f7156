/*
 * fuzz_safetensors.c - libFuzzer harness for the safetensors reader: parses the input as one
 * safetensors image and touches the first and last byte of every tensor, so a view that points
 * outside the input is caught by ASan. Seed corpus: fuzz/corpus/fuzz_safetensors/.
 */
#include "io/safetensors.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    evlm_weights *w = NULL;
    if (evlm_weights_from_memory("fuzz.safetensors", data, size, &w) != EVLM_OK) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < evlm_weights_count(w); i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        size_t nb = evlm_tensor_nbytes(t);
        if (nb) {
            const uint8_t *p = t->data;
            sink ^= p[0];
            sink ^= p[nb - 1];
        }
        if (evlm_weights_find(w, t->name) != t) __builtin_trap();
    }
    (void)sink;
    evlm_weights_free(w);
    return 0;
}
