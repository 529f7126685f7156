/*
 * gguf_names.h - what makes a GGUF file a llama.cpp model and an evlm model at once: tensor
 * names (Hugging Face <-> llama.cpp), llama.cpp's Q/K row order for "llama", the metadata keys
 * llama.cpp reads (hyper-parameters, gpt2 tokenizer, chat template), the original Hugging Face
 * files kept verbatim as "evlm.file.<name>", and the whole-folder export.
 *
 * Names: the text model's Hugging Face prefix is "model." (Llama, SmolLM), "model.text_model."
 * (SmolVLM / Idefics3) or "model.language_model." (Qwen2-VL); the writer records it in
 * "evlm.text_prefix" so that the reader gives back the exact original names. Tensors llama.cpp
 * has no name for (vision tower, connector) keep their Hugging Face name.
 *
 * Two layouts: evlm's own file (the vision tensors in the same file under their Hugging Face
 * names: one file, but llama.cpp refuses it for a VLM) and llama.cpp's (the language model file
 * plus the mmproj file, evlm_gguf_export_llamacpp).
 * Not here: the container itself (gguf.h), the mmproj file's names and keys (gguf_mmproj.h).
 */
#ifndef EVLM_IO_GGUF_NAMES_H
#define EVLM_IO_GGUF_NAMES_H

#include "core/tensor.h"
#include "evlm.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hugging Face -> llama.cpp name. Returns 1 (mapped), 0 (no llama.cpp name: copied unchanged)
 * or -1 (does not fit in cap). prefix: the text model's prefix, e.g. "model.". */
int evlm_gguf_name_to_llama(const char *hf, const char *prefix, char *out, size_t cap);
/* The inverse; same return values. */
int evlm_gguf_name_to_hf(const char *gguf_name, const char *prefix, char *out, size_t cap);
/* 1 for blk.N.attn_q.{weight,bias}, 2 for blk.N.attn_k.*, else 0 (llama.cpp names). */
int evlm_gguf_is_qk(const char *gguf_name);
/* llama.cpp's "llama" architecture stores Q and K rows permuted per head of head_dim rows
 * (convert_hf_to_gguf.py's permute: interleaved RoPE pairs). Row `row` of the destination comes
 * from the returned source row; to_llama: Hugging Face -> llama.cpp order, else the inverse. */
int64_t evlm_gguf_qk_src_row(int64_t row, int64_t head_dim, bool to_llama);
/* The text prefix of a Hugging Face weight set (the one with "<prefix>embed_tokens.weight"),
 * or NULL. */
const char *evlm_gguf_hf_text_prefix(const evlm_weights *w);
/* The type a tensor of n_dims dimensions is stored in when `want` was asked for: 1-D tensors
 * (norm weights, biases, a scalar) are F32, as llama.cpp's converter writes them (its CPU ops
 * take F32 there: a BF16 norm weight aborts them); everything else as asked. Exact: every float
 * type widens to F32 without rounding. */
evlm_type evlm_gguf_store_type(int n_dims, evlm_type want);
/* "llama", "qwen2" or "qwen2vl" (M-RoPE) for a config. */
const char *evlm_gguf_arch_for(const evlm_decoder_config *cfg);

/* The keys llama.cpp needs for the language model: general.architecture, <arch>.* hyper-
 * parameters, tokenizer.ggml.* (gpt2 BPE from tokenizer.json text: vocabulary ordered by id and
 * padded to the config's vocab_size, token types, merges "a b", bos / eos ids) and
 * tokenizer.chat_template when chat_template is non-NULL. Errors name `what` (the folder). */
evlm_status evlm_gguf_put_llama_meta(evlm_gguf_writer *w, const char *what,
                                     const evlm_decoder_config *cfg, const char *tokenizer_json,
                                     size_t tokenizer_len, const char *chat_template);
/* The Hugging Face side files a model folder may carry (config.json, tokenizer.json, ...). */
extern const char *const evlm_hf_side_files[];
extern const size_t evlm_hf_n_side_files;
/* Every Hugging Face side file of dir that exists (config.json, tokenizer.json, ...) as
 * "evlm.file.<name>"; *n_put receives how many (may be NULL). */
evlm_status evlm_gguf_put_hf_files(evlm_gguf_writer *w, const char *dir, int *n_put);

/* Type to store a tensor in: called once per tensor with its Hugging Face name and view (in the
 * file's dtype). Return the type (for float tensors any float or block-quantized file type with
 * a GGUF id, k-quants included, core/tensor.h; integer tensors must keep their own type), or
 * EVLM_TYPE_COUNT to
 * leave the tensor out (llama.cpp refuses a text model file with extra tensors, so a
 * llama.cpp-loadable file leaves out the vision tower).
 * *src (preset to t) may be pointed at replacement data of the same shape, valid until the write:
 * float rows to convert (calibrated weights), or rows already of the returned type (GPTQ blocks),
 * in Hugging Face row order. */
typedef evlm_type (*evlm_gguf_type_fn)(void *ctx, const char *hf_name, const evlm_tensor *t,
                                       const evlm_tensor **src);

/* Converts a Hugging Face folder (config.json, tokenizer.json, safetensors weights) to one GGUF
 * file: weights converted per tensor (evlm_quantize_row) to type_for(ctx, ...) (NULL: keep the
 * dtype), llama.cpp names and metadata, the text prefix and the Hugging Face files. Atomic. */
evlm_status evlm_gguf_export_hf(const char *hf_dir, const char *out_path,
                                evlm_gguf_type_fn type_for, void *ctx,
                                evlm_gguf_progress_fn progress, void *progress_ctx);
/* The same with n_extra tensors appended after the folder's (new tensors such as low-rank
 * factors, "<proj>.lowrank_a" / ".lowrank_b"): each stored under its Hugging Face name as given
 * (type, shape, contiguous data valid until the write), with no llama.cpp name and no Q / K row
 * permutation. */
evlm_status evlm_gguf_export_hf_extra(const char *hf_dir, const char *out_path,
                                      evlm_gguf_type_fn type_for, void *ctx,
                                      const evlm_tensor *extra, size_t n_extra,
                                      evlm_gguf_progress_fn progress, void *progress_ctx);

/* llama.cpp's layout (what convert_hf_to_gguf.py writes): out_path holds the language model
 * only (llama.cpp names, metadata, 1-D tensors F32; evlm's keys ride along: llama.cpp ignores
 * them), and for a VLM mmproj_path the vision tower + connector as llama.cpp's mmproj file
 * (gguf_mmproj.h); *wrote_mmproj (may be NULL) says whether it was written. Tensors llama.cpp
 * has no name for (added tensors, unknown ones) are an error. Both files atomic; when the
 * mmproj fails the language model file is removed. */
evlm_status evlm_gguf_export_llamacpp(const char *hf_dir, const char *out_path,
                                      const char *mmproj_path, bool *wrote_mmproj,
                                      evlm_gguf_type_fn type_for, void *ctx,
                                      const evlm_tensor *extra, size_t n_extra,
                                      evlm_gguf_progress_fn progress, void *progress_ctx);

#endif
