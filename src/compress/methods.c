/*
 * methods.c - the registry of compression methods (pipeline.h): one line per method.
 */
#include "compress/pipeline.h"

extern const evlm__qmethod evlm__qmethod_rtn, evlm__qmethod_awq, evlm__qmethod_gptq;

static const evlm__qmethod *const k_methods[] = {
    &evlm__qmethod_rtn,
    &evlm__qmethod_awq,
    &evlm__qmethod_gptq,
};

const evlm__qmethod *evlm__qmethod_find(evlm_qmethod id) {
    for (size_t i = 0; i < sizeof k_methods / sizeof *k_methods; i++)
        if (k_methods[i]->id == id) return k_methods[i];
    return NULL;
}
