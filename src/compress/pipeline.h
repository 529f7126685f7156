/*
 * pipeline.h - private to src/compress: the state of one evlm_quantize run (every tensor of the
 * model with its target type and result, the calibration set and statistics) and the method
 * interface the passes implement. quantize.c runs the pipeline; each method_*.c file is one
 * method (rtn, gptq, awq), registered in methods.c.
 * Not here: the numerical algorithms (rtn.h, gptq.h, awq.h, calib.h), the model (model/model.h).
 */
#ifndef EVLM_COMPRESS_PIPELINE_H
#define EVLM_COMPRESS_PIPELINE_H

#include "compress/calib.h"
#include "core/tensor.h"
#include "evlm_compress.h"
#include "model/model.h"

#include <stdbool.h>

enum { K_OTHER = 0, K_LM, K_EMBED, K_VISION, K_LOWRANK /* a decoder matrix's low-rank factor */ };

/* One tensor of the model and what the pipeline makes of it. */
typedef struct qt {
    const evlm_tensor *src; /* the weight set's view */
    int kind;
    const evlm_tensor **slot, **slot2; /* the decoder's pointers to it (sensitivity swaps) */
    int layer;
    const char *group; /* LM: its calibration group */
    evlm_type to;
    bool pinned;
    bool head;    /* the output head (a tied embedding too) */
    void *qdata;  /* quantized rows of type `to` (owned), or NULL: the export converts src */
    float *fdata; /* replacement float rows (AWQ folds), F32, owned */
    evlm_tensor view;
    double rel_err, kl;
    const char *method;
    double sparsity; /* pruned: the fraction of zeros written (prune.h); -1: not pruned */
} qt;

typedef struct qctx {
    const evlm_quantize_params *p;
    evlm_model *m;
    qt *t;
    int n;
    qt **lm; /* [layer * 7 + role]: the decoder matrices by layer and role (ATTN_Q .. MLP_DOWN) */
    evlm_prompt **prompts; /* calibration set */
    char **texts,
        **images; /* per prompt: the text and image of dataset items (NULL for text chunks) */
    int n_prompts;
    int n_kl_prompts; /* the first prompts, whose float log-probabilities are kept */
    float *ref_logp;  /* [kl rows][V] */
    int kl_rows;
    evlm_calib *calib;
} qctx;

/* ---- the method interface ------------------------------------------------------------------
 * A method turns the decoder's float matrices into their target types (x->to). A per-matrix
 * method (matrix) gets each matrix the pipeline has to quantize, widened to float; a layer-wise
 * method (layer) handles a whole decoder layer at once (groups of matrices that share an input,
 * folds into the layer's norms and producers). Either way the result lands in x->qdata (or
 * x->fdata for float replacements) with x->view, x->rel_err and x->method set. */
typedef struct evlm__qmethod {
    evlm_qmethod id;
    const char *name;  /* in reports: "rtn", "awq", "gptq" */
    const char *title; /* in messages: "AWQ" */
    bool calibration;  /* needs calibration statistics of the matrix inputs */
    bool hessian;      /* ... including x x^T per input group */
    evlm_status (*matrix)(qctx *q, qt *x, const float *w);
    evlm_status (*layer)(qctx *q, int layer);
} evlm__qmethod;

/* The method of an evlm_qmethod id; NULL for an unknown id. */
const evlm__qmethod *evlm__qmethod_find(evlm_qmethod id);

/* ---- shared by the pipeline and the methods ---- */
void evlm__q_progress(const qctx *q, const char *stage, int done, int total);
qt *evlm__q_find_name(qctx *q, const char *name);
/* t's rows widened to float (n x k, malloc'd); NULL when out of memory. */
float *evlm__q_widen(const evlm_tensor *t);
/* x->view: x->src's shape with another type and data. */
void evlm__q_set_view(qt *x, evlm_type type, void *data);
/* Relative error of quantized rows qd of float w: on the calibration rows of x's group, else in
 * weight space; -1 when it cannot be measured. */
double evlm__q_rel_error(const qctx *q, const qt *x, const float *w, const void *qd);
/* Room for x's quantized rows in x->qdata (n rows of type x->to). */
evlm_status evlm__q_alloc(qt *x);
/* One forward pass of q->m over the calibration prompts feeding q->calib (no logits kept). */
evlm_status evlm__q_observe_pass(qctx *q);
/* After x->qdata is filled from float w: x->view and x->rel_err. */
void evlm__q_finish(const qctx *q, qt *x, const float *w);

/* ---- low-rank compensation of quantization error (lowrank_comp.c) ----
 * After the method: for the quantized decoder matrices, E = W - Q(W) factored against the
 * calibration covariance (lowrank.h, whitening), at p->lowrank_comp or within p->lowrank_bpw extra
 * bits per weight of the file's el elements; factors "<proj>.lowrank_a" / ".lowrank_b" in
 * p->lowrank_type. */
typedef struct evlm__lrcomp {
    evlm_tensor *t;  /* [n]: a, b of each compensated matrix (names and data owned) */
    const qt **of;   /* [n]: the matrix each factor belongs to */
    double *rel_err; /* [n]: ||(W - Q - B A) x||^2 / ||W x||^2 after compensation */
    int n;
    double bits; /* bits the factors take */
} evlm__lrcomp;
evlm_status evlm__q_lowrank_comp(qctx *q, int64_t el, evlm__lrcomp *out);
void evlm__lrcomp_free(evlm__lrcomp *c);

/* ---- a model stored with low-rank factors (quantize_lowrank.c) ----
 * check: the combinations done (rtn or gptq; no AWQ, pruning or compensation on top);
 * mark: the factors as K_LOWRANK (before the types are chosen); factors: their round to nearest
 * or GPTQ into x->qdata (after the decoder's matrices). */
evlm_status evlm__q_lowrank_check(const qctx *q, const char *in_dir);
evlm_status evlm__q_mark_factors(qctx *q);
evlm_status evlm__q_factors(qctx *q);
/* The X^T X of the inputs A x from that of x: out (r x r) = a (r x k rows) xtx (k x k) a^T. */
evlm_status evlm__q_xtx_through(const float *a, int64_t r, int64_t k, const double *xtx,
                                double *out);

/* ---- the calibration set, for the passes beside quantization (lowrank_model.c) ----
 * q->p gives calib_text / calib_jsonl / calib_tokens / calib_items, q->m the float model. */
evlm_status evlm__q_load_calib(qctx *q);
/* Statistics of every matmul input (xtx too when hessian), the float distributions for KL. */
evlm_status evlm__q_calibrate(qctx *q, bool hessian);
/* Mean KL of m over the kept calibration positions against the float model. */
evlm_status evlm__q_mean_kl(const qctx *q, evlm_model *m, double *out);
/* Frees the prompts, the statistics and the distributions. */
void evlm__q_free_calib(qctx *q);

#endif
