/*
 * family_llama.c - text-only Llama-family causal LMs (Llama 2/3, SmolLM2, TinyLlama, Mistral,
 * Qwen2): the shared decoder is all they need, so every hook is empty.
 */
#include "model/family.h"

static const char *const k_archs[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                      NULL};

const evlm_family evlm_family_llama = {
    .name = "llama",
    .architectures = k_archs,
};
