/*
 * bpe.c - the BPE model: open-addressing hash tables for the vocab (string -> id) and the
 * merges ((left id, right id) -> rank, merged id), and the merge loop of one pre-token.
 *
 * Mirrors tokenizers' models/bpe/model.rs merge_word (continuing_subword_prefix,
 * end_of_word_suffix, byte_fallback "<0xXX>" pieces, unk_token with fuse_unk, ignore_merges)
 * and word.rs merge_all: a min-heap of candidate merges ordered by rank, then by position
 * (leftmost first on ties), stale entries skipped when the pair no longer yields the same id.
 * Not here: dropout (refused at load: it is random), the word cache (speed only).
 */
#include "core/status.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- string -> id ----------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

evlm_status evlm__tk_strmap_init(tk_strmap *m, size_t n_expected) {
    memset(m, 0, sizeof *m);
    if (n_expected > (size_t)EVLM_TK_MAX_ID * 4) n_expected = (size_t)EVLM_TK_MAX_ID * 4;
    size_t cap = pow2_at_least(n_expected * 2 + 1);
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (hash table)");
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    m->mask = cap - 1;
    return EVLM_OK;
}

static evlm_status strmap_rehash(tk_strmap *m, const char *pool) {
    size_t cap = (m->mask + 1) * 2;
    int32_t *slot = malloc(cap * sizeof *slot);
    if (!slot) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (hash table)");
    memset(slot, 0xff, cap * sizeof *slot);
    for (size_t e = 0; e < m->n; e++) {
        size_t h = (size_t)hash_bytes(pool + m->ent[e].off, m->ent[e].len) & (cap - 1);
        while (slot[h] >= 0) h = (h + 1) & (cap - 1);
        slot[h] = (int32_t)e;
    }
    free(m->slot);
    m->slot = slot;
    m->mask = cap - 1;
    return EVLM_OK;
}

evlm_status evlm__tk_strmap_put(tk_strmap *m, const char *pool, uint32_t off, uint32_t len,
                                int32_t id) {
    const char *s = pool + off;
    size_t h = (size_t)hash_bytes(s, len) & m->mask;
    for (int32_t e; (e = m->slot[h]) >= 0; h = (h + 1) & m->mask) {
        if (m->ent[e].len == len && memcmp(pool + m->ent[e].off, s, len) == 0) {
            m->ent[e].id = id; /* later key wins */
            return EVLM_OK;
        }
    }
    if (m->n >= (size_t)INT32_MAX - 1)
        return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: hash table too large");
    if (m->n == m->cap_ent) {
        size_t nc = m->cap_ent ? m->cap_ent * 2 : 256;
        tk_entry *ent = realloc(m->ent, nc * sizeof *ent);
        if (!ent) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (hash table)");
        m->ent = ent;
        m->cap_ent = nc;
    }
    m->ent[m->n] = (tk_entry){off, len, id};
    m->slot[h] = (int32_t)m->n++;
    if (m->n * 2 > m->mask + 1) return strmap_rehash(m, pool);
    return EVLM_OK;
}

int32_t evlm__tk_strmap_get(const tk_strmap *m, const char *pool, const char *s, size_t n) {
    if (!m->slot) return -1;
    size_t h = (size_t)hash_bytes(s, n) & m->mask;
    for (int32_t e; (e = m->slot[h]) >= 0; h = (h + 1) & m->mask)
        if (m->ent[e].len == n && memcmp(pool + m->ent[e].off, s, n) == 0) return m->ent[e].id;
    return -1;
}

void evlm__tk_strmap_free(tk_strmap *m) {
    free(m->ent);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- (id, id) -> (rank, merged id) ------------------------------------------------------ */

static size_t pair_hash(uint64_t k, size_t mask) {
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 32 ^ k) & mask;
}

evlm_status evlm__tk_pairmap_init(tk_pairmap *m, size_t n_expected) {
    memset(m, 0, sizeof *m);
    size_t cap = pow2_at_least(n_expected * 2 + 1);
    m->key = malloc(cap * sizeof *m->key);
    m->rank = malloc(cap * sizeof *m->rank);
    m->merged = malloc(cap * sizeof *m->merged);
    if (!m->key || !m->rank || !m->merged) {
        evlm__tk_pairmap_free(m);
        return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (merges table)");
    }
    memset(m->key, 0xff, cap * sizeof *m->key);
    m->mask = cap - 1;
    return EVLM_OK;
}

/* The table is sized for all merges up front (n_expected), so it never fills. */
void evlm__tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t h = pair_hash(k, m->mask);
    while (m->key[h] != UINT64_MAX && m->key[h] != k) h = (h + 1) & m->mask;
    if (m->key[h] == UINT64_MAX) m->n++;
    m->key[h] = k; /* a later duplicate overwrites, as the reference's HashMap collect */
    m->rank[h] = rank;
    m->merged[h] = merged;
}

bool evlm__tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, uint32_t *rank,
                          int32_t *merged) {
    if (!m->key) return false;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t h = pair_hash(k, m->mask); m->key[h] != UINT64_MAX; h = (h + 1) & m->mask) {
        if (m->key[h] == k) {
            *rank = m->rank[h];
            *merged = m->merged[h];
            return true;
        }
    }
    return false;
}

void evlm__tk_pairmap_free(tk_pairmap *m) {
    free(m->key);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ---- merge_word / merge_all ------------------------------------------------------------- */

typedef struct sym {
    int32_t id, prev, next;
    uint32_t len; /* bytes covered; 0 = merged away */
} sym;

typedef struct cand {
    uint32_t rank, pos;
    int32_t merged;
} cand;

typedef struct word {
    sym *s;
    size_t n, cap;
    cand *h;
    size_t hn, hcap;
} word;

static evlm_status word_add(word *w, int32_t id, size_t len) {
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        sym *s = realloc(w->s, nc * sizeof *s);
        if (!s) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (bpe)");
        w->s = s;
        w->cap = nc;
    }
    int32_t i = (int32_t)w->n;
    if (i > 0) w->s[i - 1].next = i;
    w->s[w->n++] = (sym){id, i - 1, -1, (uint32_t)len};
    return EVLM_OK;
}

static bool cand_less(cand a, cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static evlm_status heap_push(word *w, cand c) {
    if (w->hn == w->hcap) {
        size_t nc = w->hcap ? w->hcap * 2 : 64;
        cand *h = realloc(w->h, nc * sizeof *h);
        if (!h) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (bpe)");
        w->h = h;
        w->hcap = nc;
    }
    size_t i = w->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = c;
    return EVLM_OK;
}

static cand heap_pop(word *w) {
    cand top = w->h[0], last = w->h[--w->hn];
    size_t i = 0, n = w->hn;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        cand best = last;
        if (l < n && cand_less(w->h[l], best)) {
            m = l;
            best = w->h[l];
        }
        if (r < n && cand_less(w->h[r], best)) m = r;
        if (m == i) break;
        w->h[i] = w->h[m];
        i = m;
    }
    if (n) w->h[i] = last;
    return top;
}

static evlm_status merge_all(const tk_pairmap *mm, word *w) {
    uint32_t rank;
    int32_t merged;
    for (size_t i = 0; i + 1 < w->n; i++)
        if (evlm__tk_pairmap_get(mm, w->s[i].id, w->s[i + 1].id, &rank, &merged))
            EVLM_TRY(heap_push(w, (cand){rank, (uint32_t)i, merged}));
    while (w->hn) {
        cand top = heap_pop(w);
        sym *cur = &w->s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        size_t next_pos = (size_t)cur->next;
        sym right = w->s[next_pos];
        /* an expired entry: the pair changed since it was queued */
        if (!evlm__tk_pairmap_get(mm, cur->id, right.id, &rank, &merged) || merged != top.merged)
            continue;
        cur->id = top.merged;
        cur->len += right.len;
        cur->next = right.next;
        w->s[next_pos].len = 0;
        if (right.next >= 0 && (size_t)right.next < w->n) w->s[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const sym *p = &w->s[cur->prev];
            if (evlm__tk_pairmap_get(mm, p->id, cur->id, &rank, &merged))
                EVLM_TRY(heap_push(w, (cand){rank, (uint32_t)cur->prev, merged}));
        }
        if (cur->next >= 0 && (size_t)cur->next < w->n) {
            const sym *nx = &w->s[cur->next];
            if (evlm__tk_pairmap_get(mm, cur->id, nx->id, &rank, &merged))
                EVLM_TRY(heap_push(w, (cand){rank, top.pos, merged}));
        }
    }
    return EVLM_OK;
}

static evlm_status merge_word(const evlm_tokenizer *t, const char *s, size_t n, word *w,
                              char *key) {
    const char *pool = t->pool.data;
    int32_t unk_id = -1;
    size_t unk_len = 0;
    bool unk = false;
    size_t i = 0;
    while (i < n) {
        size_t k = 1;
        while (i + k < n && ((uint8_t)s[i + k] & 0xC0) == 0x80) k++;
        bool first = i == 0, last = i + k == n;
        const char *cs = s + i;
        size_t cn = k;
        if ((t->prefix_len && !first) || (t->suffix_len && last)) {
            cn = 0;
            if (t->prefix_len && !first) {
                memcpy(key, pool + t->prefix_off, t->prefix_len);
                cn = t->prefix_len;
            }
            memcpy(key + cn, s + i, k);
            cn += k;
            if (t->suffix_len && last) {
                memcpy(key + cn, pool + t->suffix_off, t->suffix_len);
                cn += t->suffix_len;
            }
            cs = key;
        }
        int32_t id = evlm__tk_strmap_get(&t->vocab, pool, cs, cn);
        if (id >= 0) {
            if (unk) {
                EVLM_TRY(word_add(w, unk_id, unk_len));
                unk = false;
            }
            EVLM_TRY(word_add(w, id, k));
            i += k;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t b = 0; b < cn && all; b++) all = t->byte_ids[(uint8_t)cs[b]] >= 0;
            if (all) { /* as the reference, a pending unk is not flushed before the bytes */
                for (size_t b = 0; b < cn; b++)
                    EVLM_TRY(word_add(w, t->byte_ids[(uint8_t)cs[b]], 1));
                i += k;
                continue;
            }
        }
        if (t->has_unk) {
            if (t->unk_id < 0)
                return evlm__fail(EVLM_ERR_FORMAT,
                                  "tokenizer: model.unk_token is not in the vocab");
            if (unk && t->fuse_unk) {
                unk_len += k;
            } else {
                if (unk) EVLM_TRY(word_add(w, unk_id, unk_len));
                unk = true;
                unk_id = t->unk_id;
                unk_len = k;
            }
        }
        i += k;
    }
    if (unk) EVLM_TRY(word_add(w, unk_id, unk_len));
    return merge_all(&t->merges, w);
}

evlm_status evlm__tk_bpe(const evlm_tokenizer *t, const char *s, size_t n, evlm_ids *out) {
    if (n == 0) return EVLM_OK;
    if (t->ignore_merges) {
        int32_t id = evlm__tk_strmap_get(&t->vocab, t->pool.data, s, n);
        if (id >= 0) return evlm_ids_push(out, id);
    }
    word w = {0};
    char *key = NULL;
    evlm_status st = EVLM_OK;
    if (t->prefix_len || t->suffix_len) {
        key = malloc((size_t)t->prefix_len + t->suffix_len + 4);
        if (!key) st = evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (bpe)");
    }
    if (st == EVLM_OK) st = merge_word(t, s, n, &w, key);
    for (size_t i = 0; i < w.n && st == EVLM_OK; i++)
        if (w.s[i].len) st = evlm_ids_push(out, w.s[i].id);
    free(w.s);
    free(w.h);
    free(key);
    return st;
}
