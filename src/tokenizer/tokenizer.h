/*
 * tokenizer.h - Hugging Face tokenizers (tokenizer.json) reimplemented in C.
 *
 * Supported: model BPE (byte-level, or SentencePiece-style with byte_fallback / fuse_unk /
 * unk_token; merges as "a b" strings or [a, b] pairs; ignore_merges);
 * normalizers NFC, NFKC, Sequence, Prepend, Replace, Lowercase (optional); pre-tokenizers Sequence,
 * ByteLevel (add_prefix_space, use_regex), Split (String or Regex pattern via PCRE2 with
 * Unicode classes, behavior Isolated/Removed/MergedWithPrevious/MergedWithNext/Contiguous,
 * invert), Digits (individual_digits), Metaspace; post-processor TemplateProcessing (single)
 * and ByteLevel; decoders ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence.
 * Added tokens (special or not; lstrip / rstrip / normalized / single_word) are matched in the
 * raw text before normalization, as the reference does, when parse_special is set.
 * Anything else in tokenizer.json is reported as unsupported, naming the field.
 * Invalid UTF-8 input is an error, not garbage.
 */
#ifndef EVLM_TOKENIZER_TOKENIZER_H
#define EVLM_TOKENIZER_TOKENIZER_H

#include "core/buf.h"
#include "evlm.h"

#include <stdbool.h>
#include <stdint.h>

/* evlm_tokenizer, evlm_tokenizer_load / _free and the malloc'd-array wrappers
 * evlm_tokenizer_tokenize / _detokenize (tokenizer_api.c) are public (evlm.h). */

/* From a tokenizer.json image in memory (fuzzer, tests). */
evlm_status evlm_tokenizer_from_json(const char *what, const char *json, size_t len,
                                     evlm_tokenizer **out);

/* Appends the ids of text to out. parse_special: added tokens in text are recognized;
 * when false, special added tokens are plain text (tokenizers' split_special_tokens) while
 * non-special added tokens are still matched, as the reference does.
 * add_special: the post-processor's tokens (e.g. BOS) are added. On error out is unchanged. */
evlm_status evlm_tokenizer_encode(const evlm_tokenizer *tok, const char *text, size_t len,
                                  bool parse_special, bool add_special, evlm_ids *out);
/* Appends the text of ids to out (tokenizers' decode with the configured decoder).
 * skip_special: special added tokens are dropped. Unknown ids are an error. */
evlm_status evlm_tokenizer_decode(const evlm_tokenizer *tok, const int32_t *ids, size_t n,
                                  bool skip_special, evlm_str *out);

int evlm_tokenizer_n_vocab(const evlm_tokenizer *tok); /* model vocab + added tokens (max id + 1) */
/* Id of an exact token string (vocab or added token), or -1. */
int32_t evlm_tokenizer_token_id(const evlm_tokenizer *tok, const char *token);
/* The raw token string of id (as in vocab), or NULL. */
const char *evlm_tokenizer_token_str(const evlm_tokenizer *tok, int32_t id);
bool evlm_tokenizer_is_special(const evlm_tokenizer *tok, int32_t id);

#endif
