/*
 * checkpoint.h - what a training run saves and resumes from, and the model folder it ends with.
 *
 * A checkpoint is a folder: weights.safetensors (every parameter, float32 master weights),
 * adam_m.safetensors and adam_v.safetensors (the moments of the trainable ones), state.json
 * (format, update count, the data order's PRNG state and position, the run's options as the
 * loop wrote them, the trainable set). Gradients are not kept: a checkpoint is taken between
 * updates, when they are zero. Loading it into the same parameter set restores every byte, so a
 * resumed run continues bit-identically (same options, data and thread count).
 * Saving is atomic: everything goes to a temporary folder beside dir, fsynced, then renamed to
 * dir (an existing dir is moved aside first and removed once the new one is in place); nothing
 * is left behind on failure.
 * Not here: when to save (loop.c), the optimizer's arithmetic (adamw.c).
 */
#ifndef EVLM_TRAIN_CHECKPOINT_H
#define EVLM_TRAIN_CHECKPOINT_H

#include "core/file.h"
#include "evlm.h"
#include "train/params.h"

#include <stdint.h>

typedef struct evlm_ckpt_state {
    int64_t step;             /* optimizer updates done */
    uint64_t rng;             /* the data order's PRNG state */
    int64_t epoch, pos;       /* data order position: epoch, next item of its order */
    const char *options_json; /* save: the run's options (a JSON object), or NULL */
} evlm_ckpt_state;

evlm_status evlm_ckpt_save(const char *dir, const evlm_tparams *tp, const evlm_ckpt_state *st);

/* Restores tp's weights and moments (gradients zeroed) and st. The checkpoint must hold every
 * parameter of tp with the same element count, and the same trainable set. options (may be
 * NULL): a malloc'd copy of the options JSON ("{}" when none was saved). Errors name the file and
 * the tensor. */
evlm_status evlm_ckpt_load(const char *dir, evlm_tparams *tp, evlm_ckpt_state *st, char **options);

/* The same with extra parameter sets trained beside tp (the distillation projections, the QAT
 * scales: every parameter of them trainable), kept in extra.safetensors: weights under their
 * names, moments under "<name>.adam_m" / "<name>.adam_v". Loading needs the same sets. */
evlm_status evlm_ckpt_save_ex(const char *dir, const evlm_tparams *tp, evlm_tparams *const *extra,
                              int n_extra, const evlm_ckpt_state *st);
evlm_status evlm_ckpt_load_ex(const char *dir, evlm_tparams *tp, evlm_tparams *const *extra,
                              int n_extra, evlm_ckpt_state *st, char **options);

/* Test hook: when > 0, a save fails (EVLM_ERR_IO) after writing that many of its files. */
extern int evlm__ckpt_fail_after;

/* ---- the final model folder ---------------------------------------------------------------- */
typedef enum evlm_ckpt_dtype {
    EVLM_CKPT_SOURCE = 0, /* each tensor as the file stored it (F32 / F16 / BF16; a quantized
                             source (a GGUF) and a GGUF's 1-D tensors, stored F32 for llama.cpp,
                             become the config's torch_dtype, F32 if none) */
    EVLM_CKPT_BF16,
    EVLM_CKPT_F32,
} evlm_ckpt_dtype;

/* Writes out_dir (must not exist; atomic, evlm_hf_export): config.json and the side files of the
 * model folder src_dir, model.safetensors with every parameter of tp under its name in dtype. */
evlm_status evlm_ckpt_export(const evlm_tparams *tp, const char *src_dir, const char *out_dir,
                             evlm_ckpt_dtype dtype);
/* The same from src: a folder, or a GGUF evlm wrote (config and side files embedded). */
evlm_status evlm_ckpt_export_from(const evlm_tparams *tp, const evlm_dir *src, const char *out_dir,
                                  evlm_ckpt_dtype dtype);

#endif
