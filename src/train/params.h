/*
 * params.h - the trainable parameter set: every tensor of a model as float32 master weights,
 * with their gradients and AdamW moments, carved from one allocation by a size table
 * (llm.c's malloc_and_point_parameters): the training step allocates nothing.
 *
 * Built from a model's weight set (loaded with keep_layout: file layout, any stored type; F16 /
 * BF16 widened, Q8_0 / Q4_0 / Q4_1 dequantized), in the set's order; names are the Hugging
 * Face names, shapes PyTorch order. A parameter is trainable unless frozen by the globs.
 * Not here: what the parameters mean (tdecoder.c, tvision.c), the optimizer (adamw.c).
 */
#ifndef EVLM_TRAIN_PARAMS_H
#define EVLM_TRAIN_PARAMS_H

#include "evlm.h"
#include "io/weights.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct evlm_tparam {
    char name[160];
    int n_dims;
    int64_t shape[4];   /* PyTorch order, outermost first */
    size_t off, n;      /* floats: w[off .. off + n) is this parameter (likewise g, m, v) */
    evlm_type src_type; /* the type the file stored (the output folder keeps it by default) */
    bool trainable;
} evlm_tparam;

typedef struct evlm_tparams {
    evlm_tparam *p;
    int n;
    size_t n_floats;      /* total floats of one of w / g / m / v */
    float *w, *g, *m, *v; /* weights, gradients, first and second moments: n_floats each */
    void *mem;            /* the one allocation behind w, g, m, v */
} evlm_tparams;

/* Every tensor of ws as a float32 parameter (all trainable, gradients and moments zero).
 * Errors name the tensor (a type that cannot be widened). */
evlm_status evlm_tparams_from_weights(evlm_tparams *tp, const evlm_weights *ws);
/* The weights alone (a teacher, an evaluation): g, m, v NULL, nothing trainable, a quarter of
 * the memory. */
evlm_status evlm_tparams_from_weights_frozen(evlm_tparams *tp, const evlm_weights *ws);
void evlm_tparams_release(evlm_tparams *tp);

/* The parameter named name, or NULL. */
const evlm_tparam *evlm_tparams_find(const evlm_tparams *tp, const char *name);
/* Its weights / gradient, or NULL when absent (the gradient: also in a frozen set). */
float *evlm_tparams_w(const evlm_tparams *tp, const char *name);
float *evlm_tparams_g(const evlm_tparams *tp, const char *name);

/* Chooses the trainable parameters: with n_train > 0 only names matching one of train (fnmatch
 * globs, e.g. "model.text_model.layers.*"), else all; then names matching a freeze glob are
 * frozen. Returns the number trainable; 0 is an EVLM_ERR_ARG naming the globs. */
evlm_status evlm_tparams_select(evlm_tparams *tp, const char *const *train, int n_train,
                                const char *const *freeze, int n_freeze, int *n_trainable);

/* Sets every gradient to zero. */
void evlm_tparams_zero_grad(evlm_tparams *tp);

#endif
