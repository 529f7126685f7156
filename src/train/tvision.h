/*
 * tvision.h - the Idefics3 / SmolVLM vision tower (SigLIP with NaViT position ids) and its
 * pixel-shuffle connector as a model being trained: the float32 forward pass over processed
 * tiles that keeps what the backward needs, and the backward that accumulates into the
 * gradients of the tower's and the connector's parameters (params.h, Hugging Face names).
 *
 * The forward computes what evlm_siglip_encode computes (vision/siglip.h): patch embedding as a
 * matmul over unfolded patches, position ids from each tile's pixel mask (bidirectional
 * attention over a tile's patches, padding patches masked as keys only), pre-LN blocks with a
 * GELU-tanh MLP, post-LayerNorm, pixel shuffle and the bias-free projection. Activations live in
 * one arena planned for max_tiles tiles at creation; a pass allocates nothing.
 * Not here: image preprocessing (vision/idefics3_proc.h, evlm__prompt_pixels in family.h), the
 * merge of the features into the decoder's embeddings (tmodel.c), the gradient of the pixels.
 *
 * Threads: a tvision is used by one thread at a time; its ops run on the evlm_tops' pool.
 */
#ifndef EVLM_TRAIN_TVISION_H
#define EVLM_TRAIN_TVISION_H

#include "evlm.h"
#include "train/ops.h"
#include "train/params.h"

#include <stdint.h>

typedef struct evlm_tvision evlm_tvision;

/* The tower and connector of an Idefics3-family model m, their parameters read from tp by name
 * ("model.vision_model...", "model.connector..."; without "model." too, as the file names
 * them). m must be of that family (EVLM_ERR_UNSUPPORTED otherwise) and tp must hold every
 * tensor of the tower with its shape (errors name the tensor). */
evlm_status evlm_tvision_new(const evlm_model *m, evlm_tparams *tp, int max_tiles,
                             evlm_tvision **out);

/* What the evlm_tops passed to forward / backward must be planned for (evlm_tops_init): rows
 * of up to max_dim floats, attention over up to max_seq keys of head_dim floats. */
void evlm_tvision_tops_need(const evlm_tvision *v, int *max_dim, int *max_seq, int *head_dim);

/* pixels [n_tiles][C][S][S] as the image processor gives them, mask NULL (all real) or
 * [n_tiles][S][S] (nonzero = real pixel); features [n_tiles * tokens_per_tile][text_hidden],
 * tiles in order. n_tiles in [1, max_tiles]; a tile whose mask is not a rectangle of real
 * patches is an EVLM_ERR_ARG naming it. */
evlm_status evlm_tvision_forward(evlm_tvision *v, const evlm_tops *o, const float *pixels,
                                 const uint8_t *mask, int n_tiles, float *features);

/* dfeatures like the last forward's features; accumulates into tp's gradients of the tower and
 * connector (parameters frozen in tp get nothing, and the walk stops below the lowest trainable
 * one; if every vision parameter is frozen, nothing runs). */
evlm_status evlm_tvision_backward(evlm_tvision *v, const evlm_tops *o, const float *dfeatures);

/* QAT (qat.h): the tower's quantized matrices run on q's fake-quantized copies (and, with
 * learnable scales, their gradients go to q's buffers); NULL: float. q must outlive its use. */
struct evlm_tqat;
void evlm_tvision_set_qat(evlm_tvision *v, const struct evlm_tqat *q);

void evlm_tvision_free(evlm_tvision *v);
int evlm_tvision_tokens_per_tile(const evlm_tvision *v);

#endif
