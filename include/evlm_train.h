/*
 * evlm_train.h - public C API of evlm's training engine (src/train): one gradient of a batch
 * (evlm_grad, the `evlm grad` command) and fine-tuning (evlm_finetune, `evlm finetune`).
 *
 * Gradients are those of float32 master weights whatever the file stores; the decoder of the
 * Llama family (Llama, SmolLM2, Qwen2) and Idefics3 / SmolVLM (tower + connector) are
 * trainable; Qwen2-VL is refused (EVLM_ERR_UNSUPPORTED). docs/TRAINING.md is the account.
 * Errors name the file, line or parameter at fault (evlm_last_error). Outputs are written
 * atomically (a temporary file or folder renamed into place).
 *
 * Threads: each call runs on its own pool of n_threads workers; calls on different models may
 * run at once.
 */
#ifndef EVLM_TRAIN_H
#define EVLM_TRAIN_H

#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- one gradient ------------------------------------------------------------------------
 * The batch file is the gradient fixtures' batch.json (../shared/fixtures/grad/README.md):
 * "sequences": [{ids, loss_from, images?}], "temperature". */
typedef struct evlm_grad_params {
    const char *model;   /* model folder or file */
    const char *batch;   /* batch.json */
    const char *loss;    /* "ce", "kd", "rkl", "hidden", "qat_ce" */
    const char *teacher; /* kd / rkl / hidden: the teacher model; NULL otherwise */
    const char *out;     /* GRADS.safetensors (float32, every parameter under its HF name);
                            NULL: not written */
    int n_threads;       /* 0 = physical cores */
} evlm_grad_params;

typedef struct evlm_grad_result {
    double loss;
    double grad_norm; /* global L2 norm over every parameter's gradient */
    int n_params;     /* tensors */
    int n_targets;
} evlm_grad_result;

EVLM_API evlm_grad_params evlm_grad_default_params(void);
EVLM_API evlm_status evlm_grad(const evlm_grad_params *p, evlm_grad_result *r);

/* ---- fine-tuning --------------------------------------------------------------------------
 * src/train/loop.c. Items: data (.jsonl of {image, question, answer}: the prompt `evlm eval`
 * builds, loss on the answer turn) and / or text (a text file, loss on every token), shuffled per
 * epoch from seed, batches of `batch` sequences, `accum` batches per update (AdamW, global-norm
 * clipping, linear warmup then cosine decay to min_lr). out_dir receives:
 *   model/        the final Hugging Face folder (every evlm command loads it)
 *   checkpoint/   weights, AdamW moments, step, data order (resume continues bit-identically
 *                 with the same options and thread count)
 *   log.json      options, per update {step, loss, lr, grad_norm, tokens_per_s}, evals
 * Everything is written atomically. */
typedef struct evlm_finetune_progress {
    int64_t step, total; /* updates done, planned */
    int64_t epoch;       /* current epoch (0-based) */
    double loss, lr, grad_norm;
    double tokens_per_s; /* rows (prompt and answer tokens) per second over the run so far */
    double elapsed_s, eta_s;
    double eval_accuracy; /* 0..1 after an evaluation at this step, else -1 */
} evlm_finetune_progress;

/* Distillation in the fine-tuning loop (`evlm distill`, docs/DISTILL-LOSSES.md): the teacher runs
 * forward on every batch (same vocabulary as the student; refused otherwise), the loss is
 * alpha CE + (1 - alpha) logit + hidden_weight hidden + attn_weight attn. The hidden term's
 * projections (when the widths differ) are trained with the student (AdamW, no weight decay),
 * kept in the checkpoint and never written to the student's model folder. */
typedef struct evlm_finetune_distill {
    const char *teacher;   /* model folder or GGUF; NULL (qat only): the student's own float
                              weights as loaded */
    const char *loss;      /* "kl" (NULL), "rkl", "jsd:BETA" */
    double temperature;    /* 0: 1 */
    double alpha;          /* the ground truth's CE weight in [0, 1] (0) */
    double hidden_weight;  /* hidden-state MSE weight (0: none) */
    const char *layer_map; /* "auto" (NULL) or "S:T,S:T,..." (0-based layers) */
    double attn_weight;    /* attention-map KL weight (0: none) */
    bool generate_targets; /* the teacher's greedy answers replace the data's answers (black
                              box): generated before training into OUT_DIR/targets.jsonl,
                              reused when there (a resume does not regenerate) */
    int target_tokens;     /* most tokens of a generated answer (0: 64, as evlm eval) */
} evlm_finetune_distill;

/* Quantization-aware training in the fine-tuning loop (`evlm qat`, docs/QAT.md): the forward
 * fake-quantizes as the exported GGUF stores, learned block scales (LSQ) are stepped and
 * checkpointed with the weights; at the end the 16-bit tensors are rounded as the export stores
 * them and out_gguf is written (evlm_qat_export) instead of model/. The model must be a folder. */
typedef struct evlm_finetune_qat {
    const char *type;     /* "q4_0", "q8_0", "q4_1" */
    const char *vision;   /* the vision tower's and connector's type; NULL: type */
    bool learn_scales;    /* LSQ block scales (q4_0, q8_0) */
    const char *out_gguf; /* the GGUF written at the end */
} evlm_finetune_qat;

typedef struct evlm_finetune_params {
    const char *model;   /* a Hugging Face model folder, or a GGUF evlm wrote (its dequantized
                            tensors are the master weights; its embedded files the side files) */
    const char *data;    /* .jsonl question-answer items, or NULL */
    const char *text;    /* a text file, or NULL (data and / or text) */
    const char *out_dir; /* created if missing */
    int64_t steps;       /* updates; 0: epochs decides */
    int epochs;          /* when steps is 0 (default 1) */
    int batch, accum;    /* sequences per batch (8), batches per update (1) */
    int ctx;             /* most tokens of one item; 0: min(the model's context, 2048) */
    double lr, min_lr;   /* peak and final learning rate (1e-4, 0) */
    int64_t warmup;      /* updates of linear warmup (0) */
    double weight_decay; /* AdamW's decoupled decay (0.0) */
    double clip;         /* global gradient norm bound (1.0; 0: none) */
    uint64_t seed;
    int n_threads;            /* 0 = physical cores */
    const char *const *train; /* trainable parameter globs (none: all) */
    int n_train;
    const char *const *freeze; /* frozen parameter globs */
    int n_freeze;
    const char *eval;      /* .jsonl scored every eval_every updates and at the end, or NULL */
    int64_t eval_every;    /* 0: only at the end */
    int64_t save_every;    /* checkpoint every N updates (0: only at the end) */
    const char *resume;    /* a checkpoint folder to continue from, or NULL */
    double budget_minutes; /* the time training may take (0: none): after every update the
                              schedule's length becomes the updates that fit in the time left at
                              the mean pace so far (at most steps / epochs), so the decay ends
                              with the time; it stops then (checkpoint and model written) */
    int64_t stop_after;    /* stop likewise after this update (a run in pieces); 0: none */
    const char *dtype;     /* the model folder's tensors: "source" (default: as the model stored
                              them; a quantized tensor: its config's float dtype, else f32),
                              "bf16", "f32" */
    /* called after every update (may be NULL) */
    void (*progress)(void *user, const evlm_finetune_progress *p);
    /* scores the model folder model_dir on dataset: accuracy 0..1, negative on failure (the
     * command runs `evlm eval`'s scoring here); NULL: eval is an error */
    double (*eval_fn)(void *user, const char *model_dir, const char *dataset);
    void *user;
    const evlm_finetune_distill *distill; /* distillation (NULL: none) */
    const evlm_finetune_qat *qat;         /* quantization-aware training (NULL: none) */
} evlm_finetune_params;

typedef struct evlm_finetune_result {
    int64_t steps;        /* updates done in all (a resumed run counts the earlier ones) */
    double loss;          /* of the last update */
    double eval_accuracy; /* the last evaluation, -1 when none */
    double seconds;       /* this run's time */
    bool budget_stop;     /* stopped by budget_minutes */
} evlm_finetune_result;

EVLM_API evlm_finetune_params evlm_finetune_default_params(void);
EVLM_API evlm_status evlm_finetune(const evlm_finetune_params *p, evlm_finetune_result *r);

/* ---- quantization-aware training ------------------------------------------------------------
 * The model side is src/train/qat.h (fake quantization, learnable block scales) configured on a
 * model being trained (evlm_tmodel_set_qat, src/train/tmodel.h); docs/QAT.md is the account.
 * evlm_qat_export writes the trained model as the GGUF the runtime loads, with the writer and
 * metadata of evlm_quantize (evlm_compress.h): every quantized matrix stored as exactly the
 * blocks the training forward used (learned scales: d = the scale rounded to fp16, the codes
 * from it), every other tensor converted from its float32 weights to the type evlm_quantize keeps
 * for it (the folder's dtype: BF16 norms stay BF16). model_dir is the Hugging Face folder the
 * model was loaded from (its config, tokenizer and tensor list). Atomic. */
typedef struct evlm_tmodel evlm_tmodel;
EVLM_API evlm_status evlm_qat_export(evlm_tmodel *tm, const char *model_dir, const char *out_gguf);

#ifdef __cplusplus
}
#endif

#endif
