/*
 * lookahead.h - private to src/generate: several greedy tokens per forward pass (see
 * evlm_lookahead_params in evlm.h) with output identical to one-token greedy decoding.
 *
 * One step evaluates, in one batched pass over the cache: the current token (emitted, not yet in
 * the cache), the lookahead branch (a 2-D Jacobi window: level l, column j at position offset
 * l + j + 1, seeing level 0 up to column j and its own column below it), and a trie of draft
 * continuations of the current token (pooled n-grams and prompt-lookup matches), each node
 * seeing only its ancestors. The greedy walk down the trie accepts the longest verified draft;
 * the cache keeps the current token and the accepted drafts, the rest is dropped. Not here:
 * sampling (refused: verification by argmax is only lossless for greedy decoding).
 */
#ifndef EVLM_DECODE_LOOKAHEAD_H
#define EVLM_DECODE_LOOKAHEAD_H

#include "evlm.h"

typedef struct evlm_lookahead evlm_lookahead;

/* Most tokens one step accepts (drafts are at most 64 deep). */
#define EVLM_LOOKAHEAD_MAX_ACCEPT 66

/* Checks p (and that sampling is greedy) and plans buffers for the model's vocabulary. cache:
 * the n-gram pool to use and grow (NULL: a private one for this answer). */
evlm_status evlm_lookahead_new(const evlm_lookahead_params *p, const evlm_sampler_params *sp,
                               const int32_t *prompt, size_t n_prompt, evlm_model *m,
                               evlm_ngram_cache *cache, evlm_lookahead **out);
void evlm_lookahead_free(evlm_lookahead *la);
/* Tokens one step may evaluate at most (the caller falls back to one-token steps when the
 * context has less room). */
int evlm_lookahead_batch(const evlm_lookahead *la);
/* One pass. hist[0 .. n_hist) is every token so far (prompt + answer); its last one,
 * hist[n_hist - 1], is the current token: emitted but not yet in the cache (there is no separate
 * argument for it). Writes the greedy continuation, *n_acc = 1 .. EVLM_LOOKAHEAD_MAX_ACCEPT
 * tokens, to acc: the last of them is the new current token (not in the cache), the others are
 * in the cache after hist[n_hist - 1]. */
evlm_status evlm_lookahead_step(evlm_lookahead *la, evlm_context *ctx, const int32_t *hist,
                                size_t n_hist, int32_t *acc, int *n_acc);

int32_t evlm__argmax(const float *x, int n);

/* The n-gram pool (ngram_cache.c): continuations of len tokens, per_key per first token (the
 * newest kept), each with the token that came before its first one (prev, -1 unknown); a new
 * shape empties it. */
evlm_status evlm__ngram_cache_shape(evlm_ngram_cache *c, int n_vocab, int len, int per_key);
evlm_status evlm__ngram_cache_add(evlm_ngram_cache *c, int32_t prev, int32_t key,
                                  const int32_t *gram);
/* Up to max continuations of key into out, best first: those stored with the same prev (a
 * two-token context predicts better than one), then the others, newest first. */
int evlm__ngram_cache_pick(const evlm_ngram_cache *c, int32_t prev, int32_t key, int max,
                           const int32_t **out);

#endif
