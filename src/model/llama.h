/*
 * llama.h - the Llama-family decoder (Llama 2/3, SmolLM2, TinyLlama, Qwen2 with q/k/v biases,
 * and the text half of SmolVLM): weight binding and the float32 forward pass.
 *
 * One code path evaluates a batch of n tokens at consecutive positions against the KV cache:
 * prefill passes the prompt (in chunks of n_batch), decode passes one token. Inputs are token
 * ids or ready embeddings (vision features). Weights stay mmapped in their file dtype
 * (F32/F16/BF16) and are widened inside the kernels; small vectors (norms, biases) are widened
 * once at load. The context plans all activations at creation: no allocation per token.
 */
#ifndef EVLM_MODEL_LLAMA_H
#define EVLM_MODEL_LLAMA_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

typedef struct evlm_llama_layer {
    const float *attn_norm, *ffn_norm; /* (hidden) */
    const evlm_tensor *wq, *wk, *wv, *wo;
    const float *bq, *bk, *bv, *bo; /* NULL when absent */
    const evlm_tensor *w_gate, *w_up, *w_down;
    const float *b_gate, *b_up, *b_down;
} evlm_llama_layer;

typedef struct evlm_llama {
    evlm_llama_config cfg;
    const evlm_tensor *tok_embd; /* (vocab, hidden) */
    const evlm_tensor *lm_head;  /* tok_embd when tied */
    const float *out_norm;
    evlm_llama_layer *layers;
    float *f32_store; /* owns the widened norms and biases */
    char prefix[64];  /* "model." or "model.text_model." ... */
    bool rope_bf16;   /* round RoPE frequencies to bf16: the config says the model was bf16 */
} evlm_llama;

/* Binds the weights of cfg in w (which must outlive the model). Errors name the tensor. */
evlm_status evlm_llama_init(evlm_llama *m, const evlm_llama_config *cfg, const evlm_weights *w);
void evlm_llama_release(evlm_llama *m);

/* Per-sequence state: KV cache, rope tables, activation arena. */
typedef struct evlm_llama_state {
    int n_ctx, n_batch, n_past;
    float *k_cache, *v_cache; /* [layer][kv_head][n_ctx][head_dim] */
    float *rope_cos, *rope_sin; /* [n_ctx][head_dim/2] */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2; /* [n_batch][...] */
    float *scratch;  /* per thread: max(k) floats for weight rows + n_ctx attention scores */
    size_t scratch_per_thread;
    void *arena;
    size_t arena_bytes;
} evlm_llama_state;

evlm_status evlm_llama_state_init(evlm_llama_state *s, const evlm_llama *m, int n_ctx, int n_batch,
                                  int n_threads);
void evlm_llama_state_release(evlm_llama_state *s);

/* Image features that replace the embeddings of image-token positions: the i-th occurrence
 * of image_token in ids takes row i of rows [n_rows][hidden]. */
typedef struct evlm_llama_inject {
    int32_t image_token;
    const float *rows;
    int n_rows;
    int used; /* rows consumed so far (advanced by the forward pass) */
} evlm_llama_inject;

/* Evaluates n tokens (ids, or embd [n][hidden] when ids is NULL) at positions n_past.. and
 * appends them to the cache. inject (nullable) supplies image features for ids. logits: NULL,
 * [n_vocab] for the last token, or [n][n_vocab] when all_logits. */
evlm_status evlm_llama_forward(const evlm_llama *m, evlm_llama_state *s, evlm_pool *pool,
                               const int32_t *ids, const float *embd, evlm_llama_inject *inject,
                               int n, float *logits, bool all_logits);

#endif
