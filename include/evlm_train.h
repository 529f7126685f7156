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
 * Declared by the loop (src/train/loop.c): evlm_finetune_params, evlm_finetune_default_params,
 * the progress callback and evlm_finetune. */

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
