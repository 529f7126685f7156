/*
 * model.h - what the library's other layers (the compression passes in src/compress, and the
 * pruning, low-rank, distillation and QAT passes to come) see of a model and a context beyond
 * include/evlm.h: the weight set, the decoder's config and the model's pool, the walk over its
 * matrices with their roles (the bindings themselves, which a pass may swap for a while), a
 * context's observer of matmul inputs, and prompts of ready ids. The layouts stay private to
 * src/model (model_impl.h).
 */
#ifndef EVLM_MODEL_MODEL_H
#define EVLM_MODEL_MODEL_H

#include "core/threadpool.h"
#include "evlm.h"
#include "evlm_compress.h"
#include "io/hf_config.h"
#include "io/weights.h"
#include "model/decoder.h"

/* One bound matrix: slot is the binding's pointer; layer is -1 outside layers. */
typedef void (*evlm_matrix_fn)(void *user, const evlm_tensor **slot, evlm_matrix_role role,
                               int layer);

/* Every matrix of the model (decoder layers, embedding, head, then the family's), in order. */
void evlm__model_matrices(evlm_model *m, evlm_matrix_fn fn, void *user);

const evlm_weights *evlm__model_weights(const evlm_model *m);
const evlm_decoder_config *evlm__model_config(const evlm_model *m);
/* The bound text decoder, read-only (its norms, biases and matrices: the ONNX export walks it). */
const evlm_decoder *evlm__model_decoder(const evlm_model *m);
evlm_pool *evlm__model_pool(const evlm_model *m);
/* Whether decoder layer `layer`'s matrix of role (ATTN_Q .. MLP_DOWN) is bound with a bias. */
bool evlm__model_has_bias(const evlm_model *m, int layer, evlm_matrix_role role);
/* The decoder's tensor-name prefix ("model." or "model.text_model." ...). */
const char *evlm__model_text_prefix(const evlm_model *m);

/* Calls fn with the input of every matmul c's forward passes run (NULL: none), on the thread
 * that decodes. */
void evlm__context_observe(evlm_context *c, evlm_decoder_observer fn, void *user);
/* Calls fn with the residual stream entering each decoder layer and leaving the last
 * (evlm_decoder_state.residual; NULL: none), on the thread that decodes. */
void evlm__context_observe_residual(evlm_context *c, evlm_decoder_observer fn, void *user);
/* Calls fn at the same points, and at each new key / value row, letting it rewrite the values
 * (evlm_decoder_transform; NULL: none), on the thread that decodes. */
void evlm__context_transform(evlm_context *c, evlm_decoder_transform fn, void *user);
/* Attaches a simulation to c (src/npu/sim.c): c computes with decoder d from now on (NULL: the
 * model's) and calls sim_free(sim) when freed or when another simulation replaces it. */
void evlm__context_set_sim(evlm_context *c, const evlm_decoder *d, void *sim,
                           void (*sim_free)(void *));

/* The tower numerics a prompt's images are encoded with (src/npu: NPU simulation and the
 * calibration of a quantized vision graph). tower: the family's tower with other weights (an
 * evlm_siglip for Idefics3; NULL: the model's); transform: called on the encoding thread, under
 * the model's vision_mu, with each quantization point's activations x [m][k] as they are made
 * (layer -1 for the points outside the layers; groups: npu/qdq_vision.h), free to rewrite them;
 * NULL: none. Only the Idefics3 family takes a hook (the others refuse one). */
typedef struct evlm_vision_hook {
    const void *tower;
    void (*transform)(void *user, int layer, const char *group, float *x, int m, int k);
    void *user;
} evlm_vision_hook;

/* evlm_prompt_new with the images encoded through hook (NULL: evlm_prompt_new). */
evlm_status evlm__prompt_new_hooked(evlm_model *m, const char *text, bool add_special,
                                    const evlm_image_input *images, int n_images,
                                    const evlm_vision_hook *hook, evlm_prompt **out);
/* The simulation attached to c when it was attached with sim_free, else NULL. */
void *evlm__context_sim(const evlm_context *c, void (*sim_free)(void *));

/* A prompt of ready token ids (no images); the image features a prompt carries
 * ([n_rows][hidden], NULL without images). */
evlm_status evlm__prompt_from_ids(const int32_t *ids, size_t n, evlm_prompt **out);
const float *evlm__prompt_features(const evlm_prompt *p, int *n_rows);

/* The Idefics3 / SmolVLM vision parts of m, read-only (the ONNX export of the tower walks them,
 * src/npu/onnx_vision.c): false when m is not of that family. max_tiles: the tiles of the
 * largest image the processor makes (its longest_edge squared, splitting as loaded). */
struct evlm_siglip;
struct evlm_idefics3_proc;
bool evlm__model_idefics3(const evlm_model *m, const struct evlm_siglip **tower,
                          const struct evlm_idefics3_proc **proc, int *max_tiles);

/* The Qwen2-VL vision parts of m, read-only (the ONNX export of its tower, src/npu/onnx_vision.c):
 * false when m is not of that family. image_token: the <|image_pad|> id. */
struct evlm_qwen2vl_vit;
struct evlm_qwen2vl_proc;
bool evlm__model_qwen2vl(const evlm_model *m, const struct evlm_qwen2vl_vit **tower,
                         const struct evlm_qwen2vl_proc **proc, int32_t *image_token);

#endif
