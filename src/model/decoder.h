/*
 * decoder.h - the text decoder every family runs: Llama-style blocks (Llama 2/3, SmolLM2,
 * TinyLlama, Qwen2 with q/k/v biases, the text halves of SmolVLM and Qwen2-VL with M-RoPE):
 * weight binding and the float32 forward pass.
 *
 * One code path evaluates a batch of n tokens against the KV cache: prefill passes the prompt
 * (in chunks of n_batch), decode passes one token, lookahead / prompt-lookup verification passes
 * a tree of guesses with its own positions and visibility mask. Batch token i always lands in
 * cache slot n_past + i; its RoPE position is separate (M-RoPE models and token trees need that).
 * Inputs are token ids or ready embeddings (vision features). Matrices keep their file type
 * (F32/F16/BF16 or Q8_0/Q4_0/Q4_1) and are copied once at load into the 16-row interleaved
 * layout of the kernels (io/weights.h: evlm_weights_repack_r16; file layout with keep_layout),
 * widened or int8-multiplied inside the kernels; small vectors (norms, biases) are widened once
 * at load. The context plans all activations at
 * creation: no allocation per token.
 */
#ifndef EVLM_MODEL_DECODER_H
#define EVLM_MODEL_DECODER_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/hf_config.h"
#include "io/weights.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "model/greedy_head.h"

typedef struct evlm_decoder_layer {
    const float *attn_norm, *ffn_norm; /* (hidden) */
    const evlm_tensor *wq, *wk, *wv, *wo;
    const float *bq, *bk, *bv, *bo; /* NULL when absent */
    const evlm_tensor *w_gate, *w_up, *w_down;
    const float *b_gate, *b_up, *b_down;
    /* Low-rank factors by matrix (q, k, v, o, gate, up, down: EVLM_DECODER_LR_*), a NULL when
     * the matrix has none. A matrix stored as "<proj>.lowrank_a" [r, in] (ne {in, r}) and
     * "<proj>.lowrank_b" [out, r] (ne {r, out}) runs y = B (A x) (+ bias) when its
     * "<proj>.weight" is absent (then that matrix pointer is NULL), and y = W x + B (A x)
     * (+ bias) beside it (compensation of quantization error). docs/COMPRESSION.md, "Low rank". */
    struct evlm_decoder_lowrank {
        const evlm_tensor *a, *b;
    } lr[7];
} evlm_decoder_layer;

enum { /* index of a layer's matrix in evlm_decoder_layer.lr (the order of the matrix walk) */
       EVLM_DECODER_LR_Q = 0,
       EVLM_DECODER_LR_K,
       EVLM_DECODER_LR_V,
       EVLM_DECODER_LR_O,
       EVLM_DECODER_LR_GATE,
       EVLM_DECODER_LR_UP,
       EVLM_DECODER_LR_DOWN,
       EVLM_DECODER_LR_COUNT
};
/* The Hugging Face name stem of matrix i ("self_attn.q_proj", ... "mlp.down_proj"). */
const char *evlm_decoder_matrix_stem(int i);

typedef struct evlm_decoder {
    evlm_decoder_config cfg;
    const evlm_tensor *tok_embd; /* (vocab, hidden) */
    const evlm_tensor *lm_head;  /* tok_embd when tied */
    const float *out_norm;
    evlm_decoder_layer *layers;
    evlm_fstore floats; /* owns the widened norms and biases */
    char prefix[64];    /* "model." or "model.text_model." ... */
    bool rope_bf16;     /* round RoPE frequencies to bf16: the config says the model was bf16 */
    evlm_greedy_head
        greedy;      /* int8 copy of a float head for greedy ids (greedy.q.data NULL: none) */
    int lr_max_rank; /* the largest rank of the layers' low-rank factors; 0: none */
    int lr_no_dense; /* factored matrices stored without their dense weight */
} evlm_decoder;

/* Binds the weights of cfg in w (which must outlive the model). Errors name the tensor. */
evlm_status evlm_decoder_init(evlm_decoder *m, const evlm_decoder_config *cfg,
                              const evlm_weights *w);
void evlm_decoder_release(evlm_decoder *m);
/* The RoPE inverse frequencies [head_dim / 2] the forward pass uses (rope_type adjustments,
 * bf16 rounding included); the tables are cos / sin of (float)pos * inv[i]. */
void evlm_decoder_rope_inv_freq(const evlm_decoder *m, float *inv);

/* Called with the input of every matmul (calibration statistics): layer (-1 for the output
 * head), the projection group ("attn_qkv", "attn_o", "ffn_gate_up", "ffn_down", "lm_head"),
 * and x (m rows of k floats). */
typedef void (*evlm_decoder_observer)(void *user, int layer, const char *group, const float *x,
                                      int m, int k);

/* Called, when set, with every matmul input right after the observer and before the matmul
 * reads it (the same groups), and with each new token's key (after RoPE) and value rows before
 * they enter the KV cache (groups "kv_key", "kv_value": m = 1 row of n_kv_heads * head_dim)
 * and each new token's query row after RoPE ("attn_q", m = 1 row of n_heads * head_dim):
 * it may rewrite x in place (NPU numerics simulation, src/npu/sim.c) or only read it (the ONNX
 * export's calibration). NULL: the forward pass is unchanged. */
typedef void (*evlm_decoder_transform)(void *user, int layer, const char *group, float *x, int m,
                                       int k);

/* Per-sequence state: KV cache, rope tables, activation arena. */
typedef struct evlm_decoder_state {
    int n_ctx, n_batch, n_past;
    int pos_offset; /* RoPE position of slot i is i + pos_offset unless a batch gives positions */
    evlm_type kv_type;                          /* F32, F16 or I8 (one float scale per row) */
    void *k_cache, *v_cache;                    /* [layer][kv_head][n_ctx][head_dim] of kv_type */
    float *k_scale, *v_scale;                   /* I8: [layer][kv_head][n_ctx] */
    float *rope_cos, *rope_sin;                 /* [n_ctx][head_dim/2] */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2; /* [n_batch][...] */
    float *scratch; /* per thread: max(k) floats for weight rows + n_ctx attention scores */
    size_t scratch_per_thread;
    uint8_t *mask_rows; /* per thread: n_ctx bytes, one attention mask row */
    float *rope_tmp;    /* [n_batch][head_dim]: per-token cos | sin of M-RoPE */
    evlm_matmul_env mm;
    evlm_greedy_work
        greedy; /* greedy ids' buffers, planned at the first batch that asks for them */
    evlm_decoder_observer observe; /* nullable */
    void *observe_user;
    evlm_decoder_transform transform; /* nullable */
    void *transform_user;
    /* nullable: called (group "residual", k = hidden) with the residual stream entering each
     * layer l and, as layer n_layers, leaving the last one (layer importance); read only */
    evlm_decoder_observer residual;
    void *residual_user;
    void *arena;
    size_t arena_bytes;
    float *lr_t, *lr_y; /* low-rank paths: A x [n_batch][3 * lr_max_rank], B (A x) [n_batch][max
                           out]; NULL without factors */
} evlm_decoder_state;

evlm_status evlm_decoder_state_init(evlm_decoder_state *s, const evlm_decoder *m, int n_ctx,
                                    int n_batch, int n_threads, evlm_type kv_type);
void evlm_decoder_state_release(evlm_decoder_state *s);

/* Image features that replace the embeddings of image-token positions: the i-th occurrence
 * of image_token in ids takes row i of rows [n_rows][hidden]. */
typedef struct evlm_decoder_inject {
    int32_t image_token;
    const float *rows;
    int n_rows;
    int used; /* rows consumed so far (advanced by the forward pass) */
} evlm_decoder_inject;

/* A batch of tokens to evaluate. Token i goes to cache slot n_past + i. */
typedef struct evlm_decoder_batch {
    int n;
    const int32_t *ids;       /* [n] token ids, or NULL when embd is given */
    const float *embd;        /* [n][hidden] ready embeddings when ids is NULL */
    const int32_t *pos;       /* [n] RoPE positions (< n_ctx); NULL: slot + pos_offset */
    const int32_t *mrope_pos; /* [3][n] temporal / height / width positions for M-RoPE models;
                                 NULL: all three are pos */
    const uint8_t *mask;      /* [n][n] row i: which batch tokens token i sees (the cache before the
                                 batch is always seen); must be 0 above the diagonal and 1 on it.
                                 NULL: causal */
    evlm_decoder_inject *inject; /* nullable: image features for image-token ids */
    float *logits; /* NULL, [n_vocab] for the last token, [n][n_vocab] (all_logits), or
                      [n_out][n_vocab] for the rows listed in out_rows */
    bool all_logits;
    const int *out_rows; /* nullable: increasing batch rows whose logits are wanted */
    int n_out;
    int32_t *top; /* instead of logits (which must be NULL): the greedy id (argmax,
                     lowest id on ties) of each row logits would be given for; bitwise
                     the argmax of those logits, computed through m->greedy if built */
} evlm_decoder_batch;

/* Evaluates a batch and appends it to the cache (n_past += n). Errors leave n_past unchanged. */
evlm_status evlm_decoder_decode(const evlm_decoder *m, evlm_decoder_state *s, evlm_pool *pool,
                                const evlm_decoder_batch *b);

/* The common case: n tokens (ids, or embd [n][hidden]) at the next positions, causal. */
evlm_status evlm_decoder_forward(const evlm_decoder *m, evlm_decoder_state *s, evlm_pool *pool,
                                 const int32_t *ids, const float *embd, evlm_decoder_inject *inject,
                                 int n, float *logits, bool all_logits);

/* Keeps n_keep of the cache slots from base on (slots[j] >= base, increasing) by moving them to
 * base + j, and drops the rest: n_past = base + n_keep. Used after verifying guessed tokens. */
evlm_status evlm_decoder_kv_keep(const evlm_decoder *m, evlm_decoder_state *s, int base,
                                 const int *slots, int n_keep);

#endif
