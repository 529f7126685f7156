/*
 * tdecoder.h - the Llama-family decoder being trained (Llama, SmolLM2, Qwen2 with q/k/v biases,
 * the text half of Idefics3 / SmolVLM): the float32 forward over packed sequences that keeps
 * what the backward needs, the final norm and tied / untied head for chosen rows, and the
 * backward that accumulates into the parameter set's gradients.
 *
 * The function is the one evlm runs (model/decoder.c): RMSNorm, rotate-half RoPE with the
 * decoder's inverse frequencies (bf16 rounding included) and tables cos / sin of (float)pos * inv,
 * GQA causal attention within each sequence, SwiGLU; image-token rows take feature rows.
 * Kept per layer: the residual stream entering the layer and after attention, the norms' rstd,
 * q and k after RoPE, v, the attention output and its log-sum-exp, the gate and up products.
 * Recomputed in the backward: the norm outputs and the SwiGLU product (cheap, H or F floats a
 * row). Everything lives in one arena planned at creation for max_tokens rows.
 * Low-rank factored matrices ("<proj>.lowrank_a" A [r, in], "<proj>.lowrank_b" B [out, r], as
 * evlm lowrank writes them) run as two linears, y = B (A x) + bias, or y = W x + bias + B (A x)
 * when the dense weight sits beside them (quantize's compensation form), as model/decoder.c
 * runs them; A, B (and W) are parameters like any other. A x is recomputed in the backward.
 * Not here: the losses (loss.c), the vision tower (tvision.c), the batch walk (tmodel.c).
 */
#ifndef EVLM_TRAIN_TDECODER_H
#define EVLM_TRAIN_TDECODER_H

#include "evlm.h"
#include "io/hf_config.h"
#include "train/ops.h"
#include "train/params.h"

#include <stdbool.h>
#include <stdint.h>

struct evlm_decoder;

enum { /* a layer's parameters */
       EVLM_TD_ATTN_NORM = 0,
       EVLM_TD_FFN_NORM,
       EVLM_TD_Q, /* the 7 matrices, in the decoder's matrix order */
       EVLM_TD_K,
       EVLM_TD_V,
       EVLM_TD_O,
       EVLM_TD_GATE,
       EVLM_TD_UP,
       EVLM_TD_DOWN,
       EVLM_TD_BQ, /* biases, NULL when absent: 7 in the same order */
       EVLM_TD_BK,
       EVLM_TD_BV,
       EVLM_TD_BO,
       EVLM_TD_BGATE,
       EVLM_TD_BUP,
       EVLM_TD_BDOWN,
       EVLM_TD_COUNT
};

typedef struct evlm_tdecoder {
    evlm_decoder_config cfg;
    int L, H, F, HD, NH, NKV, QD, KD, V;
    int max_tokens;
    evlm_tparams *tp;
    const evlm_tparam *(*lp)[EVLM_TD_COUNT]; /* [L]: the layers' parameters (NULL: absent) */
    const evlm_tparam *embed, *head, *norm;  /* head == embed when tied */
    const evlm_tparam *(*lr)[7][2];          /* [L]: matrix i's factors A, B (NULL: not factored) */
    int n_factored, lr_max_rank;             /* factored matrices, their largest rank */
    float *lr_t, *lr_dt, *lr_y; /* low-rank work: A x and its gradient [T][max rank], B (A x) of
                                   the compensation form [T][widest output] */
    float *rope_cos, *rope_sin; /* [max_tokens][HD / 2] */
    /* kept activations: [L + 1] / [L] slabs of max_tokens rows */
    float *x;               /* [L + 1][T][H]: the stream entering each layer; [L]: after the last */
    float *xmid;            /* [L][T][H]: after the attention's residual add */
    float *rstd1, *rstd2;   /* [L][T] */
    float *q, *k, *v, *att; /* [L][T][QD | KD] (q, k after RoPE) */
    float *lse;             /* [L][NH * T] */
    float *gate, *up;       /* [L][T][F] */
    /* work, one layer at a time */
    float *xn, *tmp, *dx, *dxn, *dq, *dk, *dv, *datt, *dg, *du, *hb, *dh, *rtmp;
    float *fq; /* QAT: the fake-quantized matrices, [L][7 matrices] (planned at the first use) */
    size_t fq_floats;
    bool fq_on; /* the forward / backward run on fq */
    void *arena;
    size_t arena_bytes;
    const struct evlm_tqat *qat; /* configured QAT (qat.h): the weights / gradients of quantized
                                    parameters go through it; NULL: none */
} evlm_tdecoder;

/* Binds the parameters of dec (a bound decoder of the same weights) in tp and plans the arena
 * for max_tokens rows. Errors name the missing or mis-shaped parameter (a factor without the
 * other, a rank outside [1, min(in, out)]). */
evlm_status evlm_tdecoder_init(evlm_tdecoder *d, const struct evlm_decoder *dec, evlm_tparams *tp,
                               int max_tokens);
void evlm_tdecoder_release(evlm_tdecoder *d);

/* The packed rows of one pass. */
typedef struct evlm_tdec_rows {
    int n;              /* rows */
    const int32_t *ids; /* [n] */
    const int32_t *pos; /* [n] RoPE positions (< max_tokens) */
    int n_seq;
    const int *seq_off, *seq_len;
    int32_t image_token; /* rows with this id take feature rows; -1: none */
    const float *img;    /* [n_img][H] the i-th image-token row takes row i */
    int n_img;
} evlm_tdec_rows;

/* Sets whether the matrices run fake-quantized (Q4_0 round trip of the current weights, made
 * here; the first call allocates their buffer once). A decoder with low-rank factored matrices
 * is EVLM_ERR_UNSUPPORTED when on. */
evlm_status evlm_tdecoder_set_qat(evlm_tdecoder *d, const evlm_tops *o, bool on);

/* The forward pass over r's rows (ids checked against the vocabulary). */
evlm_status evlm_tdecoder_forward(evlm_tdecoder *d, const evlm_tops *o, const evlm_tdec_rows *r);

/* xg (nr, H) = the last stream's rows rows[0..nr), xf = rmsnorm(xg) with the final norm,
 * rstd (nr). */
void evlm_tdecoder_final_norm(const evlm_tdecoder *d, const evlm_tops *o, const int *rows, int nr,
                              float *xg, float *xf, float *rstd);
/* z (nr, V) = xf @ head^T. */
void evlm_tdecoder_logits(const evlm_tdecoder *d, const evlm_tops *o, const float *xf, int nr,
                          float *z);
/* From dz (nr, V): dxf (nr, H) written, the head's gradient accumulated (when trainable). */
void evlm_tdecoder_logits_bwd(const evlm_tdecoder *d, const evlm_tops *o, const float *dz,
                              const float *xf, int nr, float *dxf);

/* Starts a backward: d->dx (n, H) = 0. Then the losses add their gradients: */
void evlm_tdecoder_bwd_begin(evlm_tdecoder *d, int n);
/* the final norm's backward of dxf (nr, H), scattered into d->dx at rows (dxg: nr x H work). */
void evlm_tdecoder_final_norm_bwd(evlm_tdecoder *d, const evlm_tops *o, const int *rows, int nr,
                                  const float *dxf, const float *xg, const float *rstd, float *dxg);

/* Gradients of the residual stream after each layer from the hidden loss: called before the
 * backward passes layer l - 1 .. (l = L .. 1), hid(user, l, d->x + l * T * H, dx) adds to dx. */
typedef void (*evlm_tdec_hidden_fn)(void *user, int layer, const float *h, float *dx);

/* The backward through every layer from d->dx, then the embedding: rows of ordinary ids
 * scatter-add into the embedding's gradient, image-token rows go to dimg [n_img][H] (written;
 * NULL: dropped). hid may be NULL. Frozen parameters (not trainable) get nothing, and the walk
 * stops below the lowest layer with a trainable parameter when neither the embedding nor dimg
 * wants the stream's gradient (dimg is then left unwritten). */
void evlm_tdecoder_backward(evlm_tdecoder *d, const evlm_tops *o, const evlm_tdec_rows *r,
                            evlm_tdec_hidden_fn hid, void *hid_user, float *dimg);

/* Gradients of layer's attention probabilities from a loss on them (distillation's attention
 * term): called in the backward of each layer right after the attention's backward wrote dq,
 * dk (n rows, after RoPE); attn(user, layer, dq, dk) adds to them. */
typedef void (*evlm_tdec_attn_fn)(void *user, int layer, float *dq, float *dk);

/* evlm_tdecoder_backward with the attention hook too (attn may be NULL). */
void evlm_tdecoder_backward_ex(evlm_tdecoder *d, const evlm_tops *o, const evlm_tdec_rows *r,
                               evlm_tdec_hidden_fn hid, void *hid_user, evlm_tdec_attn_fn attn,
                               void *attn_user, float *dimg);

#endif
