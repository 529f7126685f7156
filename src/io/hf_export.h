/*
 * hf_export.h - a Hugging Face model folder written from a tensor list and a config: the
 * offline passes that change a model's shapes (structured pruning, low rank) write their result
 * as a standard folder that evlm and transformers-style loaders read.
 * Not here: choosing the tensors or editing the config (the passes do), GGUF (gguf_names.h
 * converts a finished folder).
 */
#ifndef EVLM_IO_HF_EXPORT_H
#define EVLM_IO_HF_EXPORT_H

#include "core/file.h"
#include "core/tensor.h"
#include "evlm.h"

#include <stddef.h>

/* Writes out_dir: config.json (config_json, text), model.safetensors (tensors, contiguous, in
 * their own dtypes) and src_dir's other Hugging Face side files copied verbatim
 * (generation_config.json, tokenizer files, processor / chat template files). Atomic: everything
 * goes into a temporary folder beside out_dir, fsynced and renamed to out_dir at the end;
 * nothing is left behind on failure. out_dir must not exist (it is never replaced). */
evlm_status evlm_hf_export(const char *src_dir, const char *out_dir, const char *config_json,
                           const evlm_tensor *tensors, size_t n);

/* The same with the side files read through src: a folder, or the files a GGUF evlm wrote
 * embeds ("evlm.file.<name>"), so a model trained from a GGUF gets its tokenizer, processor and
 * chat template back. */
evlm_status evlm_hf_export_from(const evlm_dir *src, const char *out_dir, const char *config_json,
                                const evlm_tensor *tensors, size_t n);

/* A new empty folder "<base>.tmp.XXXXXX" beside base (path into out, cap bytes). */
evlm_status evlm_hf_temp_dir(const char *base, char *out, size_t cap);
/* Removes folder path and the plain files in it (no recursion); best effort. */
void evlm_hf_remove_dir(const char *path);

#endif
