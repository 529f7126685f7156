/*
 * importance.h - importance of a decoder's structures measured on calibration activations, for
 * structured pruning (structured.c):
 *   - attention heads: the L2 norm of each head's slice of the o_proj input (the head's
 *     output), summed over calibration rows (Minitron's head importance);
 *   - FFN channels: |x_j| of the down_proj input (the SwiGLU activation), summed over rows
 *     (Minitron's neuron importance);
 *   - layers: 1 - cos(layer input, layer output) of the residual stream, summed over rows
 *     (ShortGPT's block influence), from the decoder's residual observer.
 * Not here: choosing what to remove or writing the model (structured.c), running other passes.
 */
#ifndef EVLM_COMPRESS_IMPORTANCE_H
#define EVLM_COMPRESS_IMPORTANCE_H

#include "compress/calib_set.h"
#include "evlm.h"

#include <stdint.h>

typedef struct evlm__importance {
    int n_layers, n_heads, head_dim, ffn, hidden;
    double *head; /* [n_layers][n_heads] */
    double *chan; /* [n_layers][ffn] */
    double *infl; /* [n_layers] */
    int64_t rows; /* calibration rows (positions) measured */
    /* while measuring: the residual stream entering the previous layer */
    float *prev;
    int prev_rows, prev_layer;
    evlm_status st;
} evlm__importance;

/* Runs m over the prompts of cs and fills imp (free with evlm__importance_free). progress
 * (nullable) is called per prompt with stage "importance". */
evlm_status evlm__importance_measure(evlm_model *m, const evlm__calib_set *cs,
                                     void (*progress)(void *, const char *, int, int), void *user,
                                     evlm__importance *imp);
void evlm__importance_free(evlm__importance *imp);

#endif
