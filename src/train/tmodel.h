/*
 * tmodel.h - a model being trained: its parameters (params.h), the forward pass that keeps
 * what the backward needs, the backward, and the losses. The seam between the training loops
 * (finetune, distill, qat, the grad command) and the model code (tdecoder.c, tvision.c,
 * loss.c).
 *
 * A batch is a list of sequences evaluated each on its own (positions from 0, causal), packed
 * one after another into the rows of one pass (no padding rows): the attention never crosses a
 * sequence. A sequence of a vision model may carry the processed tiles of its image (pixel
 * values as the image processor gives them); their features replace the embeddings of its image
 * tokens, in order, as in inference. Activations live in one arena planned for (max_tokens,
 * max_tiles) at creation; a batch beyond it is an EVLM_ERR_ARG naming the limit.
 * Families: Llama-style decoders (Llama, SmolLM2, Qwen2 with biases) and Idefics3 / SmolVLM
 * (SigLIP tower + pixel-shuffle connector). Qwen2-VL is refused with EVLM_ERR_UNSUPPORTED
 * (its M-RoPE / window-attention backward is not built).
 *
 * Threads: a tmodel is used by one thread at a time; it runs its ops on its own pool.
 */
#ifndef EVLM_TRAIN_TMODEL_H
#define EVLM_TRAIN_TMODEL_H

#include "evlm.h"
#include "train/params.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct evlm_tmodel evlm_tmodel;
struct evlm_tqat;

typedef struct evlm_tseq {
    const int32_t *ids; /* [n], image tokens already expanded */
    int n;
    const uint8_t *target;     /* [n]: 1 where position t (t < n - 1) predicts ids[t + 1] in the
                                  loss; NULL: none (a sequence used only for the hidden loss) */
    const float *pixels;       /* [n_tiles][C][S][S] processed tiles, or NULL */
    const uint8_t *pixel_mask; /* [n_tiles][S][S] nonzero = real pixel, or NULL (all real) */
    int n_tiles;
} evlm_tseq;

typedef struct evlm_tbatch {
    const evlm_tseq *seq;
    int n_seq;
} evlm_tbatch;

typedef enum evlm_tloss {
    EVLM_TLOSS_CE = 0,  /* cross-entropy of the targets */
    EVLM_TLOSS_KD,      /* tau^2 KL(teacher || student) at temperature tau */
    EVLM_TLOSS_RKL,     /* tau^2 KL(student || teacher) */
    EVLM_TLOSS_HIDDEN,  /* MSE of every layer's residual stream against the teacher's */
    EVLM_TLOSS_QAT_CE,  /* CE through Q4_0 fake-quantized decoder matrices (straight-through) */
    EVLM_TLOSS_DISTILL, /* distillation (train/distill.h): alpha CE + (1 - alpha) kl | rkl | jsd,
                           + hidden-state MSE + attention-map KL; needs evlm_tmodel_plan_distill,
                           whose temperature it uses (evlm_tstep.temperature is ignored) */
} evlm_tloss;

struct evlm_distill;

/* Parses "ce" / "kd" / "rkl" / "hidden" / "qat_ce" (not "distill": it needs a plan); -1 when
 * unknown. */
int evlm_tloss_parse(const char *s);
const char *evlm_tloss_name(evlm_tloss l);

typedef struct evlm_tmodel_params {
    int n_threads;  /* 0 = physical cores */
    int max_tokens; /* most rows of one batch (all its sequences together) */
    int max_tiles;  /* most image tiles of one batch (0 for text-only training) */
    const struct evlm_kernels *kernels; /* the ops' kernel table; NULL: evlm_kernels_get() */
    bool forward_only; /* a teacher / evaluation: weights only (evlm_tparams_from_weights_frozen),
                          every step must set no_backward */
} evlm_tmodel_params;

/* The parameters of a loaded model (evlm_model_load with keep_layout) as a model to train.
 * The model must outlive the tmodel (its config, tokenizer, processor are used, its weights
 * only copied). */
evlm_status evlm_tmodel_new(evlm_model *model, const evlm_tmodel_params *p, evlm_tmodel **out);
void evlm_tmodel_free(evlm_tmodel *tm);

evlm_tparams *evlm_tmodel_params_of(evlm_tmodel *tm);

/* Quantization-aware training (qat.h): from now on every step's forward runs the decoder's
 * matrices, embedding and head fake-quantized to decoder_type and the vision tower's and
 * connector's to vision_type (Q4_0, Q4_1, Q8_0), chosen as `evlm quantize` chooses them (a
 * matrix that cannot hold the type stays float), whatever the loss; the gradient goes straight
 * through. learn_scales: each block's scale becomes a trainable parameter (LSQ; Q4_0 / Q8_0),
 * kept apart from the model's (evlm_tmodel_qat_scales) and never written to a Hugging Face
 * folder. Called again, it replaces the configuration (learned scales restart). Without it the
 * qat_ce loss keeps its own fixed Q4_0 path. */
evlm_status evlm_tmodel_set_qat(evlm_tmodel *tm, evlm_type decoder_type, evlm_type vision_type,
                                bool learn_scales);
/* The QAT state (NULL when not configured); its scales (NULL without learn_scales): a parameter
 * set the optimizer steps beside evlm_tmodel_params_of's. */
const struct evlm_tqat *evlm_tmodel_qat(const evlm_tmodel *tm);
evlm_tparams *evlm_tmodel_qat_scales(evlm_tmodel *tm);
const evlm_model *evlm_tmodel_model(const evlm_tmodel *tm);

typedef struct evlm_tstep {
    evlm_tloss loss;
    float temperature;    /* kd / rkl */
    evlm_tmodel *teacher; /* kd / rkl / hidden: forward only, never changed */
    float grad_scale;     /* gradients of this batch are multiplied by it (accumulation) */
    bool no_backward;     /* forward and loss only (evaluation) */
} evlm_tstep;

typedef struct evlm_tresult {
    double loss;   /* the batch's loss (mean over its targets / elements) */
    int n_targets; /* target positions in the batch */
    int n_tokens;  /* rows of the batch */
    /* distill: the terms, unweighted (loss = alpha ce + (1 - alpha) logit + w_h hidden + w_a attn)
     */
    double ce, logit, hidden, attn;
} evlm_tresult;

/* The forward alone (under the QAT configuration when there is one): z [n_targets][V] = the
 * logits of the batch's target rows in order (sequence by sequence, position by position), as
 * the loss sees them. For checks against the runtime (a QAT export) and evaluations. */
evlm_status evlm_tmodel_logits(evlm_tmodel *tm, const evlm_tbatch *b, float *z, int *n_targets);

/* One forward and backward: the loss of the batch, and grad_scale * d(loss)/d(parameter)
 * ADDED to the gradient of every trainable parameter (frozen ones get nothing, and the work
 * for them is skipped where it can be). */
evlm_status evlm_tmodel_step(evlm_tmodel *tm, const evlm_tbatch *b, const evlm_tstep *s,
                             evlm_tresult *r);

/* Plans distillation of tm from teacher (a forward-only tmodel of the same vocabulary, planned
 * for at least tm's max_tokens; its shape is checked at every step): the layer map, the
 * projections of the hidden term when the widths differ ("distill.proj.<i>.weight", trainable,
 * identity-like init) and the scratch of the hidden / attention terms, once (a step allocates
 * nothing). Replaces an earlier plan. Then steps with loss EVLM_TLOSS_DISTILL and this teacher. */
evlm_status evlm_tmodel_plan_distill(evlm_tmodel *tm, const evlm_tmodel *teacher,
                                     const struct evlm_distill *d);
/* The distillation's own trainable parameters (the projections; NULL: none): the optimizer steps
 * them like the model's, they are not part of the student's parameters or output. */
evlm_tparams *evlm_tmodel_distill_params(evlm_tmodel *tm);
/* Changes the planned description's scalars for the next steps (logit loss, beta, temperature,
 * alpha, weights: a schedule), allocating nothing; the layer map stays the plan's, and a term
 * the plan has not (hidden / attention weight 0 at planning) cannot be switched on. */
evlm_status evlm_tmodel_set_distill(evlm_tmodel *tm, const struct evlm_distill *d);

#endif
