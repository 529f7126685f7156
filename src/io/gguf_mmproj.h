/*
 * gguf_mmproj.h - the vision projector file of llama.cpp's multimodal library (libmtmd: the
 * "mmproj" GGUF that llama-mtmd-cli takes with --mmproj): the vision tower and connector under
 * clip names ("v.*", "mm.*") with the clip.* keys llama.cpp's clip loader reads, written beside
 * the language model file; and read back under the Hugging Face names evlm's vision loaders
 * bind.
 *
 * Projectors: "idefics3" (SmolVLM / Idefics3: SigLIP tower + pixel shuffle + one linear) and
 * "qwen2vl_merger" (Qwen2-VL: its Conv3d patch embedding becomes two Conv2d kernels
 * "v.patch_embd.weight" / ".weight.1", its fused qkv three tensors attn_q / attn_k / attn_v, as
 * convert_hf_to_gguf.py splits them; reading joins them again in owned memory).
 * Types follow convert_hf_to_gguf.py: 1-D tensors F32, SigLIP's patch and position embeddings
 * F32 (Idefics3), Qwen2-VL's patch kernels F32 (F16 from an F16 source: llama.cpp's CPU
 * convolution aborts on BF16 or quantized kernels); matrices as the caller asks.
 *
 * Not here: the language model file (gguf_names.h), llama.cpp's image preprocessing.
 */
#ifndef EVLM_IO_GGUF_MMPROJ_H
#define EVLM_IO_GGUF_MMPROJ_H

#include "io/gguf.h"
#include "io/gguf_names.h"
#include "io/hf_config.h"
#include "io/weights.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum evlm_mmproj_kind {
    EVLM_MMPROJ_NONE = 0,
    EVLM_MMPROJ_IDEFICS3,
    EVLM_MMPROJ_QWEN2VL,
} evlm_mmproj_kind;

/* The projector of a weight set (by its vision tensors), and the Hugging Face prefix of its
 * vision tower into *prefix ("model.vision_model.", "visual.", "model.visual."); NONE when the
 * set has no vision tower evlm knows. */
evlm_mmproj_kind evlm_mmproj_kind_of(const evlm_weights *w, const char **prefix);
/* llama.cpp's clip.projector_type string of a kind, and back (NONE: unknown). */
const char *evlm_mmproj_type_name(evlm_mmproj_kind k);
evlm_mmproj_kind evlm_mmproj_kind_from_name(const char *s, size_t n);

/* Writes the mmproj file of Hugging Face folder hf_dir (weights w, text config cfg) to path,
 * atomically: every vision tensor of w converted to type_for(ctx, ...) (see gguf_names.h; NULL:
 * keep the dtype) under its clip name, and the clip.* keys from config.json and
 * preprocessor_config.json / processor_config.json. Tensors of w the projector does not know
 * are an error naming them. */
evlm_status evlm_mmproj_write(const char *hf_dir, const evlm_weights *w,
                              const evlm_decoder_config *cfg, const char *path,
                              evlm_gguf_type_fn type_for, void *ctx, evlm_gguf_progress_fn progress,
                              void *progress_ctx);

/* The tensors of an mmproj file as views under Hugging Face names (vision prefix `prefix`, NULL:
 * the projector's default), appended to views[*n] (cap entries); split tensors are joined into
 * buffers malloc'd and appended to bufs[*n_bufs] (cap entries; the caller frees them). Names
 * are malloc'd (the caller frees them). */
evlm_status evlm_mmproj_views(const evlm_gguf *mm, const char *prefix, evlm_tensor *views,
                              size_t *n, size_t cap, void **bufs, size_t *n_bufs);

#endif
