/*
 * llama2c.h - import of llama2.c checkpoints and tokenizers into a Hugging Face folder.
 *
 * Reads a llama2.c v0 checkpoint (header of 7 int32: dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size (negative = unshared classifier), seq_len; then float32 weights in
 * run.c's order) and its tokenizer.bin (max_token_length, then per token: float score,
 * int32 len, bytes), and writes OUT_DIR/config.json, generation_config.json, model.safetensors
 * (F32, HF names and HF's q/k row permutation for rotary halves), tokenizer.json (SentencePiece-
 * style BPE: byte fallback, "▁" spaces, merges ordered by the score of the merged piece,
 * TemplateProcessing adding BOS), tokenizer_config.json. Every size is checked against the
 * file size; writes are atomic.
 */
#ifndef EVLM_IO_LLAMA2C_H
#define EVLM_IO_LLAMA2C_H

/* The entry point, evlm_llama2c_convert, is public (evlm.h). */
#include "evlm.h"

#endif
