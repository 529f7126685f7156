/*
 * ngram_cache.c - the n-gram pool of lookahead decoding (see evlm_ngram_cache in evlm.h): for
 * each first token, up to `per_key` distinct continuations of len tokens, the oldest replaced
 * first. Filled by the lookahead branch and by the accepted answer; verified drafts never change
 * the output, so a pool kept across generations only changes speed.
 */
#include "core/status.h"
#include "decode/lookahead.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int n, next; /* n-grams stored, ring position of the next replacement */
} entry;

struct evlm_ngram_cache {
    int n_vocab, len, per_key;
    int32_t *head; /* [n_vocab]: entry index, or -1 */
    entry *entries;
    int32_t *grams; /* [entry][per_key][len] */
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
    free(c);
}

evlm_status evlm__ngram_cache_shape(evlm_ngram_cache *c, int n_vocab, int len, int per_key) {
    if (n_vocab != c->n_vocab)
        return evlm__fail(EVLM_ERR_ARG, "the n-gram cache was made for a vocabulary of %d tokens, not %d",
                          c->n_vocab, n_vocab);
    if (c->len == len && c->per_key == per_key) return EVLM_OK;
    for (int i = 0; i < c->n_vocab; i++) c->head[i] = -1; /* another shape: start over */
    free(c->entries);
    free(c->grams);
    c->entries = NULL;
    c->grams = NULL;
    c->n_entries = c->cap_entries = 0;
    c->len = len;
    c->per_key = per_key;
    return EVLM_OK;
}

evlm_status evlm__ngram_cache_add(evlm_ngram_cache *c, int32_t key, const int32_t *gram) {
    const int L = c->len;
    if (key < 0 || key >= c->n_vocab || c->per_key < 1) return EVLM_OK;
    int e = c->head[key];
    if (e < 0) {
        if (c->n_entries == c->cap_entries) {
            int cap = c->cap_entries ? 2 * c->cap_entries : 256;
            entry *ne = realloc(c->entries, sizeof *ne * (size_t)cap);
            if (!ne) return evlm__fail(EVLM_ERR_NOMEM, "out of memory growing the n-gram cache");
            c->entries = ne;
            int32_t *ng = realloc(c->grams, sizeof(int32_t) * (size_t)cap * c->per_key * L);
            if (!ng) return evlm__fail(EVLM_ERR_NOMEM, "out of memory growing the n-gram cache");
            c->grams = ng;
            c->cap_entries = cap;
        }
        e = c->n_entries++;
        c->entries[e] = (entry){0, 0};
        c->head[key] = e;
    }
    entry *pe = &c->entries[e];
    int32_t *g = c->grams + (size_t)e * c->per_key * L;
    for (int i = 0; i < pe->n; i++)
        if (!memcmp(g + (size_t)i * L, gram, sizeof(int32_t) * (size_t)L)) return EVLM_OK;
    int at = pe->n < c->per_key ? pe->n++ : pe->next;
    if (pe->n == c->per_key) pe->next = (at + 1) % c->per_key;
    memcpy(g + (size_t)at * L, gram, sizeof(int32_t) * (size_t)L);
    return EVLM_OK;
}

int evlm__ngram_cache_get(const evlm_ngram_cache *c, int32_t key, const int32_t **grams) {
    if (key < 0 || key >= c->n_vocab || c->head[key] < 0) return 0;
    int e = c->head[key];
    *grams = c->grams + (size_t)e * c->per_key * c->len;
    return c->entries[e].n;
}
