/*
 * siglip.h - the Idefics3 / SmolVLM vision tower (a SigLIP-style ViT with NaViT position
 * buckets) and its connector (pixel shuffle + bias-free projection): weight binding and the
 * batched float32 forward pass over image tiles.
 *
 * Input: tiles of pixel_values [C][S][S] (S = image_size), already resized and normalised by the
 * image processor, with an optional pixel_attention_mask [S][S] (nonzero = real pixel). Output:
 * [tokens_per_tile][text_hidden] embeddings per tile, ready to replace the <image> tokens of the
 * prompt in order. Matrices keep their file dtype (F32/F16/BF16; interleaved 16 rows at a time
 * at load, io/weights.h) and are widened inside the kernels; norms, biases and the position
 * table are widened once at load. The state
 * plans every activation for up to max_tiles tiles at creation: no allocation per image.
 * Not here: image decoding / resizing / splitting (src/vision/idefics3_proc.h), the merge of the
 * embeddings into the prompt (the model code).
 */
#ifndef EVLM_VISION_SIGLIP_H
#define EVLM_VISION_SIGLIP_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/weights.h"
#include "kernels/matmul.h"
#include "vision/idefics3_config.h"

#include <stdint.h>

typedef struct evlm_siglip_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (D) */
    const evlm_tensor *wq, *wk, *wv, *wo;       /* (D, D) */
    const float *bq, *bk, *bv, *bo;             /* (D) */
    const evlm_tensor *fc1, *fc2;               /* (F, D), (D, F) */
    const float *b_fc1, *b_fc2;                 /* (F), (D) */
} evlm_siglip_layer;

typedef struct evlm_siglip {
    evlm_idefics3_config cfg;
    evlm_tensor patch_w;   /* 2-D view of the Conv2d weight: (D, C*p*p) in (c, ky, kx) order */
    const float *patch_b;  /* (D) */
    const float *pos_embd; /* (num_patches, D) widened */
    const float *post_ln_w, *post_ln_b;
    const evlm_tensor *proj; /* (text_hidden, D * scale^2) */
    evlm_siglip_layer *layers;
    evlm_fstore floats; /* owns the widened vectors */
    char prefix[64];    /* "model." or "" */
} evlm_siglip;

/* Binds the tower and connector of cfg in w (which must outlive the model). Errors name the
 * tensor (missing, wrong shape, wrong dtype). */
evlm_status evlm_siglip_init(evlm_siglip *m, const evlm_idefics3_config *cfg,
                             const evlm_weights *w);
void evlm_siglip_release(evlm_siglip *m);

/* Activations for up to max_tiles tiles per pass (longer batches run in chunks). */
typedef struct evlm_siglip_state {
    int max_tiles, n_threads;
    float *patches;                  /* [T*N][C*p*p] */
    float *x, *xb, *q, *k, *v, *att; /* [T*N][D] */
    float *hb;                       /* [T*N][F] */
    float *shuf;                     /* [T*tokens][D*s^2] */
    int32_t *pos_ids;                /* [T*N] */
    uint8_t *patch_mask;             /* [T*N] */
    int32_t *n_valid;                /* [T] valid patches per tile */
    float *scratch;                  /* per thread: max(k) weight-row floats + N attention scores */
    size_t scratch_per_thread;
    evlm_matmul_env mm; /* scratch + int8 activation blocks when weights are quantized */
    /* NPU simulation / calibration of a quantized vision graph (src/npu, qdq_vision.h): called
     * on the encoding thread with each quantization point's activations [m][k] right after they
     * are made (the patch rows, the inputs of q/k/v, q, k, v, the inputs of o, fc1, fc2, the
     * shuffled rows); NULL (the default): the float tower, unchanged. Its owner sets it for one
     * encoding and clears it (the model's vision_mu guards the state) */
    void (*transform)(void *user, int layer, const char *group, float *x, int m, int k);
    void *transform_user;
    void *arena;
    size_t arena_bytes;
} evlm_siglip_state;

evlm_status evlm_siglip_state_init(evlm_siglip_state *s, const evlm_siglip *m, int max_tiles,
                                   int n_threads);
void evlm_siglip_state_release(evlm_siglip_state *s);

/* Encodes n_tiles tiles: pixels [n_tiles][C][S][S], mask NULL (all real) or
 * [n_tiles][S][S] (nonzero = real pixel), out [n_tiles][tokens_per_tile][text_hidden].
 * The pool must have at most the state's n_threads threads. A tile whose mask has no real pixel,
 * or more / fewer real patches than (real patches in its first column) x (in its first row),
 * which transformers rejects too, is an EVLM_ERR_ARG naming the tile. */
evlm_status evlm_siglip_encode(const evlm_siglip *m, evlm_siglip_state *s, evlm_pool *pool,
                               const float *pixels, const uint8_t *mask, int n_tiles, float *out);

/* Position ids of one tile from its patch mask [G][G] (nonzero = patch has a real pixel), as
 * transformers' Idefics3VisionEmbeddings computes them (bucketized fractional coordinates;
 * padding patches get 0). Returns the number of real patches, or -1 (error set) when the mask
 * is empty or its real patches are not (first-column count) x (first-row count). */
int evlm_siglip_position_ids(const evlm_idefics3_config *cfg, const uint8_t *patch_mask,
                             int32_t *pos_ids);

#endif
