/*
 * model_impl.h - private layout of evlm_model and evlm_context, shared by model.c (loading,
 * text API), prompt.c (multimodal prompts) and the family files (family.h).
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
#include "io/weights.h"
#include "model/family.h"
#include "model/decoder.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <pthread.h>

struct evlm_model {
    const evlm_family *family;
    evlm_decoder_config cfg;
    evlm_weights *weights;
    evlm_decoder decoder;
    evlm_tokenizer *tok;
    evlm_chat_template *tmpl;
    char tmpl_error[512]; /* why there is no template */
    evlm_pool *pool; /* load-time work (repack, greedy head) and, under vision_mu, image encoding */
    int n_threads;
    pthread_mutex_t
        vision_mu; /* one image encoding at a time: the pool, the family's encoder state */
    evlm_act act;  /* what quantized matmuls multiply: int8 (default) or f32 activations */
    int32_t eos[EVLM_MAX_EOS];
    int n_eos;
    bool has_vision;    /* set by the family's load */
    void *family_state; /* the family's own parts (vision tower, processor), owned by it */
};

struct evlm_context {
    evlm_model *model;
    evlm_pool *pool; /* this context's workers: decoding never touches the model's pool */
    evlm_decoder_state state;
    int32_t *tree_pos; /* positions of evlm_decode_tree's batch, grown, never per step */
    int tree_cap;
    /* NPU numerics simulation (src/npu/sim.c), owned by the context: the decoder it computes
     * with (the model's with the export's dequantized weights; NULL: the model's) */
    const evlm_decoder *sim_decoder;
    void *sim;
    void (*sim_free)(void *sim);
};

/* The decoder c computes with: the simulation's when one is attached. */
static inline const evlm_decoder *evlm__ctx_decoder(const evlm_context *c) {
    return c->sim_decoder ? c->sim_decoder : &c->model->decoder;
}

#endif
