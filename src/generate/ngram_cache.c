/*
 * ngram_cache.c - the n-gram pool of lookahead decoding (see evlm_ngram_cache in evlm.h): for
 * each first token, up to `per_key` distinct continuations of len tokens, the oldest replaced
 * first. Filled by the lookahead branch and by the accepted answer; verified drafts never change
 * the output, so a pool kept across generations only changes speed.
 */
#include "core/status.h"
#include "generate/lookahead.h"

#include <stdlib.h>
#include <string.h>

/* Slots of one first token, kept in recency order: slot 0 is the newest. */
typedef struct {
    int n; /* n-grams stored */
} entry;

struct evlm_ngram_cache {
    int n_vocab, len, per_key;
    int32_t *head; /* [n_vocab]: entry index, or -1 */
    entry *entries;
    int32_t *grams; /* [entry][per_key][len] */
    int32_t *prev;  /* [entry][per_key]: the token before the first one, -1 unknown */
    int n_entries, cap_entries;
};

evlm_status evlm_ngram_cache_new(const evlm_model *m, evlm_ngram_cache **out) {
    *out = NULL;
    evlm_ngram_cache *c = calloc(1, sizeof *c);
    if (!c) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    c->n_vocab = evlm_model_n_vocab(m);
    c->head = malloc(sizeof(int32_t) * (size_t)c->n_vocab);
    if (!c->head) {
        free(c);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < c->n_vocab; i++) c->head[i] = -1;
    *out = c;
    return EVLM_OK;
}

void evlm_ngram_cache_free(evlm_ngram_cache *c) {
    if (!c) return;
    free(c->head);
    free(c->entries);
    free(c->grams);
    free(c->prev);
    free(c);
}

evlm_status evlm__ngram_cache_shape(evlm_ngram_cache *c, int n_vocab, int len, int per_key) {
    if (n_vocab != c->n_vocab)
        return evlm__fail(EVLM_ERR_ARG,
                          "the n-gram cache was made for a vocabulary of %d tokens, not %d",
                          c->n_vocab, n_vocab);
    if (c->len == len && c->per_key == per_key) return EVLM_OK;
    for (int i = 0; i < c->n_vocab; i++) c->head[i] = -1; /* another shape: start over */
    free(c->entries);
    free(c->grams);
    free(c->prev);
    c->entries = NULL;
    c->grams = NULL;
    c->prev = NULL;
    c->n_entries = c->cap_entries = 0;
    c->len = len;
    c->per_key = per_key;
    return EVLM_OK;
}

static evlm_status grow(evlm_ngram_cache *c) {
    int cap = c->cap_entries ? 2 * c->cap_entries : 256;
    size_t slots = (size_t)cap * (size_t)c->per_key;
    entry *ne = realloc(c->entries, sizeof *ne * (size_t)cap);
    if (ne) c->entries = ne;
    int32_t *ng = ne ? realloc(c->grams, sizeof(int32_t) * slots * (size_t)c->len) : NULL;
    if (ng) c->grams = ng;
    int32_t *np = ng ? realloc(c->prev, sizeof(int32_t) * slots) : NULL;
    if (!np) return evlm__fail(EVLM_ERR_NOMEM, "out of memory growing the n-gram cache");
    c->prev = np;
    c->cap_entries = cap;
    return EVLM_OK;
}

evlm_status evlm__ngram_cache_add(evlm_ngram_cache *c, int32_t prev, int32_t key,
                                  const int32_t *gram) {
    const int L = c->len, K = c->per_key;
    if (key < 0 || key >= c->n_vocab || K < 1) return EVLM_OK;
    int e = c->head[key];
    if (e < 0) {
        if (c->n_entries == c->cap_entries) EVLM_TRY(grow(c));
        e = c->n_entries++;
        c->entries[e].n = 0;
        c->head[key] = e;
    }
    entry *pe = &c->entries[e];
    int32_t *g = c->grams + (size_t)e * K * L, *pv = c->prev + (size_t)e * K;
    /* an n-gram seen again moves to the front (with its newest context); else the oldest goes */
    int at = pe->n < K ? pe->n : K - 1;
    for (int i = 0; i < pe->n; i++)
        if (!memcmp(g + (size_t)i * L, gram, sizeof(int32_t) * (size_t)L)) {
            at = i;
            if (prev < 0) prev = pv[i];
            break;
        }
    if (at == pe->n) pe->n++;
    memmove(g + L, g, sizeof(int32_t) * (size_t)at * L);
    memmove(pv + 1, pv, sizeof(int32_t) * (size_t)at);
    memcpy(g, gram, sizeof(int32_t) * (size_t)L);
    pv[0] = prev;
    return EVLM_OK;
}

int evlm__ngram_cache_pick(const evlm_ngram_cache *c, int32_t prev, int32_t key, int max,
                           const int32_t **out) {
    if (key < 0 || key >= c->n_vocab || c->head[key] < 0) return 0;
    int e = c->head[key], n = c->entries[e].n, k = 0;
    const int32_t *g = c->grams + (size_t)e * c->per_key * c->len,
                  *pv = c->prev + (size_t)e * c->per_key;
    /* first the n-grams that followed the same two tokens, then the rest, newest first */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && k < max; i++)
            if ((pv[i] == prev && prev >= 0) == (pass == 0)) out[k++] = g + (size_t)i * c->len;
    return k;
}
