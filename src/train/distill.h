/*
 * distill.h - the distillation losses of a training step (issue 18, item 1, the model / loss
 * layer): the description of a distillation step (logit loss kl | rkl | jsd:BETA at temperature
 * tau with the tau^2 factor, alpha mixing with the ground truth's cross-entropy, hidden-state MSE
 * through a layer map with learned projections when the widths differ, attention-map KL), the
 * row losses over logits, and the state a student plans once for a teacher (the projections as
 * their own parameter set, the scratch of the hidden and attention terms).
 *
 * Conventions (docs/DISTILL-LOSSES.md):
 *   kl:  tau^2 KL(p_T || p_S); rkl: tau^2 KL(p_S || p_T), p = softmax(z / tau);
 *   jsd: tau^2 JSD_beta(p_T || p_S) = tau^2 [beta KL(p_T || M) + (1 - beta) KL(p_S || M)],
 *        M = beta p_T + (1 - beta) p_S (GKD's generalized JSD; beta -> 0 tends to beta KL(p_T||p_S)
 *        (scaled), beta -> 1 to (1 - beta) KL(p_S||p_T) (scaled));
 *   loss = alpha CE + (1 - alpha) logit + hidden_weight hidden + attn_weight attn, each the mean
 *   of its own: CE and logit over the target rows; hidden over mapped layers x rows x teacher
 *   width of (P h_S - h_T)^2 (P the projection, identity when the widths agree); attn over
 *   mapped layers x rows of KL(A_T || A_S), A = the causal attention probabilities of a row
 *   averaged over the model's own heads (each model averages its heads first, so head counts may
 *   differ).
 * Not here: the batch walk and the teacher's forward (tmodel.c), the decoder (tdecoder.c), the
 * fine-tuning loop (loop.c), the optimizer.
 */
#ifndef EVLM_TRAIN_DISTILL_H
#define EVLM_TRAIN_DISTILL_H

#include "train/ops.h"
#include "train/params.h"
#include "train/tdecoder.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum evlm_dlogit {
    EVLM_DLOGIT_NONE = 0, /* no logit term (alpha then weighs CE alone) */
    EVLM_DLOGIT_KL,       /* tau^2 KL(p_T || p_S) */
    EVLM_DLOGIT_RKL,      /* tau^2 KL(p_S || p_T) */
    EVLM_DLOGIT_JSD,      /* tau^2 JSD_beta(p_T || p_S), M = beta p_T + (1 - beta) p_S */
} evlm_dlogit;

#define EVLM_DISTILL_MAX_MAP 256

typedef struct evlm_distill {
    evlm_dlogit logit;
    float beta;        /* jsd: in (0, 1) */
    float temperature; /* > 0 when logit != none */
    float alpha;       /* [0, 1]: the ground truth's CE weight, (1 - alpha) the logit term's */
    float hidden_weight;
    float attn_weight;
    int n_map; /* 0: "auto" (every student layer i -> round((i + 1) T / S) - 1) */
    int map_s[EVLM_DISTILL_MAX_MAP], map_t[EVLM_DISTILL_MAX_MAP]; /* 0-based layer indices */
} evlm_distill;

/* kl, temperature 1, alpha 0, no hidden / attention term, auto map. */
evlm_distill evlm_distill_default(void);
/* The ranges: temperature > 0 (with a logit term), beta in (0, 1) (jsd), alpha in [0, 1],
 * weights >= 0. */
evlm_status evlm_distill_check(const evlm_distill *d);
/* "kl" | "rkl" | "jsd:BETA" (BETA in (0, 1)) into d->logit / d->beta; errors name the text. */
evlm_status evlm_distill_parse_loss(const char *s, evlm_distill *d);
/* "auto" | "S:T,S:T,..." into d->n_map / map_s / map_t (ranges are checked at planning). */
evlm_status evlm_distill_parse_map(const char *s, evlm_distill *d);
/* The auto map's teacher layer of student layer i of S, for a teacher of T layers. */
int evlm_distill_auto_layer(int i, int S, int T);
/* d's layer map resolved for S student / T teacher layers into map_s / map_t (n_map returned):
 * auto when d->n_map == 0; an out-of-range pair is an EVLM_ERR_ARG naming it. */
evlm_status evlm_distill_resolve_map(const evlm_distill *d, int S, int T, int *map_s, int *map_t,
                                     int *n_map);

/* Row losses: z [n][V] student logits, zt [n][V] the teacher's, y [n] the next ids. row_ce[r] =
 * -log softmax(z)[y] (when alpha > 0, else 0), row_logit[r] = the logit term (tau^2 included;
 * 0 when none or alpha == 1). When grad, z := scale * d(alpha ce + (1 - alpha) logit)/dz. */
void evlm_tloss_distill_rows(const evlm_tops *o, float *z, const float *zt, const int32_t *y, int n,
                             int V, const evlm_distill *d, float scale, bool grad, double *row_ce,
                             double *row_logit);

/* ---- the state a student plans for a teacher ------------------------------------------------ */

typedef struct evlm_distill_state evlm_distill_state;

/* Plans d between the decoders s (student) and t (teacher) for max_tokens rows on pool (kernels
 * k): the resolved map, the projections (hidden term with other widths: "distill.proj.<i>.weight"
 * [teacher width, student width], identity-like init, trainable) and the scratch. */
evlm_status evlm_distill_state_new(const evlm_distill *d, const evlm_tdecoder *s,
                                   const evlm_tdecoder *t, evlm_pool *pool, const evlm_kernels *k,
                                   int max_tokens, evlm_distill_state **out);
void evlm_distill_state_free(evlm_distill_state *st);
/* The projections (NULL: none); kept out of the student's own parameters. */
evlm_tparams *evlm_distill_state_params(evlm_distill_state *st);
const evlm_distill *evlm_distill_state_spec(const evlm_distill_state *st);
/* New scalars for the next steps (the map stays the plan's; a term not planned is an error). */
evlm_status evlm_distill_state_set(evlm_distill_state *st, const evlm_distill *d);
/* Checks that s / t still have the planned shapes (a teacher swapped for another). */
evlm_status evlm_distill_state_check(const evlm_distill_state *st, const evlm_tdecoder *s,
                                     const evlm_tdecoder *t, int n);

/* The packed rows of the pass both models ran (same ids and sequences). */
typedef struct evlm_distill_rows {
    int n, n_seq;
    const int *seq_off, *seq_len;
} evlm_distill_rows;

/* Forward terms after both forwards: the hidden MSE mean and the attention KL mean (0 when d's
 * weight of the term is 0 or the term was not planned). d: this step's description (its map
 * and the projections are the plan's). */
void evlm_distill_forward(evlm_distill_state *st, const evlm_distill *d, const evlm_tdecoder *s,
                          const evlm_tdecoder *t, const evlm_distill_rows *r, double *hidden,
                          double *attn);

/* Arms the backward hooks for a step with gradient scale gs (d's weights and the means). */
void evlm_distill_arm(evlm_distill_state *st, const evlm_distill *d, const evlm_tdecoder *s,
                      const evlm_tdecoder *t, const evlm_distill_rows *r, float gs);
/* tdecoder hooks, user = the armed state: the hidden term's stream gradient (and the
 * projections'), the attention term's dq / dk (after RoPE) of a layer. */
void evlm_distill_hidden_hook(void *user, int layer, const float *h, float *dx);
void evlm_distill_attn_hook(void *user, int layer, float *dq, float *dk);
/* Whether the plan has the hidden / attention term (a step may only use planned terms). */
/* After the backward: the projections' gradients of map entries whose stream the backward did
 * not reach (it stops below the lowest layer with something to learn). */
void evlm_distill_finish(evlm_distill_state *st, const evlm_distill *d);
bool evlm_distill_has_hidden(const evlm_distill_state *st);
bool evlm_distill_has_attn(const evlm_distill_state *st);

#endif
