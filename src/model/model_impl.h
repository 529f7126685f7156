/*
 * model_impl.h - private layout of evlm_model and evlm_context, shared by model.c (loading,
 * text API) and prompt.c (multimodal prompts).
 *
 * Threads (the contract is at the top of evlm.h): after load the model is read-only except for
 * the vision encoder's state, which vision_mu guards together with the model's pool. Decoding
 * runs on the context's own pool and state, never on the model's; a context's calibration
 * observer (state.observe) is called on the thread decoding it, never from the pool's workers.
 */
#ifndef EVLM_MODEL_IMPL_H
#define EVLM_MODEL_IMPL_H

#include "core/threadpool.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/llama.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "vision/idefics3_proc.h"
#include "vision/qwen2vl_proc.h"
#include "vision/qwen2vl_vit.h"
#include "vision/siglip.h"
#include "vision/vision_config.h"

#include <pthread.h>

struct evlm_model {
    evlm_llama_config cfg;
    evlm_weights *weights;
    evlm_llama llama;
    evlm_tokenizer *tok;
    evlm_chat_template *tmpl;
    char tmpl_error[512]; /* why there is no template */
    evlm_pool *pool; /* load-time work (repack, greedy head) and, under vision_mu, image encoding */
    int n_threads;
    pthread_mutex_t vision_mu; /* one image encoding at a time: pool, vstate, qstate, qmax_* */
    evlm_act act; /* what quantized matmuls multiply: int8 (default) or f32 activations */
    int32_t eos[EVLM_MAX_EOS];
    int n_eos;
    /* vision; has_vision false for text-only models */
    bool has_vision;
    enum { EVLM_VLM_IDEFICS3 = 1, EVLM_VLM_QWEN2VL } vlm;
    /* Idefics3 / SmolVLM */
    evlm_vision_config vcfg;
    evlm_idefics3_proc proc;
    evlm_siglip siglip;
    evlm_siglip_state vstate; /* planned at load for the largest tile grid; one image at a time */
    int max_tiles;
    /* Qwen2-VL */
    evlm_qwen2vl_proc qproc;
    evlm_qwen2vl_vision_config qvcfg;
    evlm_qwen2vl_vit qvit;
    evlm_qwen2vl_vit_state qstate; /* planned for qmax_patches, grown for a larger image */
    int qmax_patches;
    int32_t q_image_token, q_vision_start, q_vision_end;
};

/* Internal to evlm (the compression passes): a prompt of ready token ids (no images), the image
 * features a prompt carries ([n_rows][hidden], NULL without images), and the decoder state. */
evlm_status evlm__prompt_from_ids(const int32_t *ids, size_t n, evlm_prompt **out);
const float *evlm__prompt_features(const evlm_prompt *p, int *n_rows);

struct evlm_context {
    evlm_model *model;
    evlm_pool *pool; /* this context's workers: decoding never touches the model's pool */
    evlm_llama_state state;
    int32_t *tree_pos; /* positions of evlm_decode_tree's batch, grown, never per step */
    int tree_cap;
};

#endif
