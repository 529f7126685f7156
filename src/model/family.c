/*
 * family.c - the registry of model families (family.h): one line per family, looked up by the
 * config's architecture. Adding a family adds its line here and nothing else in this file.
 */
#include "model/family.h"

#include <string.h>

extern const evlm_family evlm_family_llama, evlm_family_idefics3, evlm_family_qwen2vl;

static const evlm_family *const k_families[] = {
    &evlm_family_llama,
    &evlm_family_idefics3,
    &evlm_family_qwen2vl,
};

const evlm_family *const *evlm__families(int *count) {
    *count = (int)(sizeof k_families / sizeof *k_families);
    return k_families;
}

const evlm_family *evlm__family_find(const char *architecture) {
    for (size_t i = 0; i < sizeof k_families / sizeof *k_families; i++)
        for (const char *const *a = k_families[i]->architectures; *a; a++)
            if (strcmp(*a, architecture) == 0) return k_families[i];
    return NULL;
}
