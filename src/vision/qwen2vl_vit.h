/*
 * qwen2vl_vit.h - the Qwen2-VL vision tower (Qwen2VisionTransformerPretrainedModel of
 * transformers 5) and its PatchMerger: weight binding and the float32 forward pass over
 * the patches of one image.
 *
 * Input: pixel rows [n_patches][C * T * p * p] and the grid (t, h, w) from the image processor
 * (src/vision/qwen2vl_proc.h), rows in merge-block order. Output: [n_patches / merge^2][hidden]
 * embeddings, one per <|image_pad|> token, in order. Matrices keep their file dtype (interleaved
 * 16 rows at a time at load, io/weights.h) and are widened inside the kernels; norms and biases
 * are widened once at load. The state plans
 * every activation for up to max_patches patches at creation: no allocation per image.
 *
 * Not here: preprocessing, the M-RoPE positions of the prompt (qwen2vl_proc.h), the language
 * model, Qwen2.5-VL (window attention, RMSNorm + SwiGLU blocks).
 */
#ifndef EVLM_VISION_QWEN2VL_VIT_H
#define EVLM_VISION_QWEN2VL_VIT_H

#include "core/file.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/weights.h"
#include "kernels/matmul.h"
#include "vision/qwen2vl_config.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct evlm_qwen2vl_vit_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (D) */
    const evlm_tensor *qkv, *proj;              /* (3D, D), (D, D) */
    const float *b_qkv, *b_proj;                /* (3D), (D) */
    const evlm_tensor *fc1, *fc2;               /* (F, D), (D, F) */
    const float *b_fc1, *b_fc2;                 /* (F), (D) */
} evlm_qwen2vl_vit_layer;

typedef struct evlm_qwen2vl_vit {
    evlm_qwen2vl_vision_config cfg;
    evlm_tensor patch_w; /* 2-D view of the Conv3d weight: (D, C*T*p*p) in (c, t, ky, kx) order */
    evlm_qwen2vl_vit_layer *layers;
    const float *ln_q_w, *ln_q_b;   /* merger LayerNorm (D) */
    const evlm_tensor *mlp0, *mlp2; /* (D*m^2, D*m^2), (hidden, D*m^2) */
    const float *b_mlp0, *b_mlp2;
    float inv_freq[256]; /* head_dim / 4 rotary frequencies (bf16-rounded for BF16 weights) */
    evlm_fstore floats;  /* owns the widened vectors */
    char prefix[32];     /* "model.visual.", "visual." */
} evlm_qwen2vl_vit;

/* Binds the tower and merger of cfg in w (which must outlive the model); tensor names under
 * "visual." or "model.visual.". Errors name the tensor (missing, wrong shape, wrong dtype). */
evlm_status evlm_qwen2vl_vit_init(evlm_qwen2vl_vit *m, const evlm_qwen2vl_vision_config *cfg,
                                  const evlm_weights *w);
void evlm_qwen2vl_vit_release(evlm_qwen2vl_vit *m);

/* Activations for images of up to max_patches patches (t * h * w). */
typedef struct evlm_qwen2vl_vit_state {
    int max_patches, n_threads;
    float *x, *xb, *qkv, *att; /* [N][D], [N][D], [N][3D], [N][D] */
    float *hb;                 /* [N][max(F, D*m^2)] */
    float *cos, *sin;          /* [N][head_dim / 2] */
    float *scratch;            /* per thread: max(k) floats + N attention scores */
    size_t scratch_per_thread;
    evlm_matmul_env mm;
    void *arena;
} evlm_qwen2vl_vit_state;

evlm_status evlm_qwen2vl_vit_state_init(evlm_qwen2vl_vit_state *s, const evlm_qwen2vl_vit *m,
                                        int max_patches, int n_threads);
void evlm_qwen2vl_vit_state_release(evlm_qwen2vl_vit_state *s);

/* Encodes one image: pixels [t*h*w][patch_dim] (rows as the processor writes them), grid
 * (t, h, w) in patches (h and w multiples of the merge size), out [t*h*w / m^2][hidden_size].
 * Attention spans each frame's h*w patches (one frame for a still image). The pool must have at
 * most the state's n_threads threads. */
evlm_status evlm_qwen2vl_vit_encode(const evlm_qwen2vl_vit *m, evlm_qwen2vl_vit_state *s,
                                    evlm_pool *pool, const float *pixels, int grid_t, int grid_h,
                                    int grid_w, float *out);

#endif
