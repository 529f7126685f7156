/*
 * gguf_llamacpp.h - a GGUF model as evlm loads it: evlm's own file, or llama.cpp's pair (the
 * language model file + its mmproj) written by evlm, by convert_hf_to_gguf.py or by
 * llama-quantize.
 *
 * The model loaders read Hugging Face files by name (core/file.h evlm_dir). A file evlm wrote
 * carries them verbatim ("evlm.file.<name>"); for a file described by llama.cpp's metadata alone
 * they are rebuilt from it: config.json from the <arch>.* and clip.vision.* keys,
 * tokenizer.json from the tokenizer.ggml.* arrays (gpt2 BPE: tokens, token types, merges, the
 * pre-tokenizer name mapped to its regexes, bos / eos, add_bos), tokenizer_config.json (bos /
 * eos strings), chat_template.jinja from tokenizer.chat_template and processor_config.json from
 * the mmproj's clip.vision.* keys (image size, patch size, mean / std, scale factor).
 *
 * Not here: the tensors' names (gguf_names.h, gguf_mmproj.h), sentencepiece (llama) vocabularies
 * (an error names them), pre-tokenizers other than gpt-2 / smollm / qwen2 / llama-bpe.
 */
#ifndef EVLM_IO_GGUF_LLAMACPP_H
#define EVLM_IO_GGUF_LLAMACPP_H

#include "io/gguf.h"
#include "io/weights.h"

#include <stdbool.h>

typedef struct evlm_llamacpp evlm_llamacpp;

/* Opens model file path and its mmproj: mmproj_path, or (NULL) "mmproj-<file name>" beside it
 * when that exists and path holds no vision tensor. */
evlm_status evlm_llamacpp_open(const char *path, const char *mmproj_path, evlm_llamacpp **out);
void evlm_llamacpp_free(evlm_llamacpp *l);
evlm_gguf *evlm_llamacpp_gguf(const evlm_llamacpp *l);
/* The mmproj file, or NULL. */
evlm_gguf *evlm_llamacpp_mmproj(const evlm_llamacpp *l);
/* True when neither the file nor an mmproj holds vision tensors (a VLM's language model file
 * alone). */
bool evlm_llamacpp_no_vision(const evlm_llamacpp *l);
/* An evlm_dir getter (ctx: the evlm_llamacpp): the file's "evlm.file.<name>", else the file
 * rebuilt from llama.cpp's metadata (when the model carries no config.json); text valid while
 * l lives. */
evlm_status evlm_llamacpp_file(const void *ctx, const char *name, const char **data, size_t *len);
/* The weight set of both files under Hugging Face names (evlm_gguf_weights_pair). */
evlm_status evlm_llamacpp_weights(evlm_llamacpp *l, evlm_weights **out);

#endif
