/* lookahead.c - lookahead decoding and prompt lookup (see lookahead.h). */
#include "generate/lookahead.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#define PL_MATCH_MAX  3 /* longest history tail that prompt lookup matches */
#define PL_CANDIDATES 2
#define POOL_PER_KEY  8 /* n-grams kept per first token; G of them are verified per pass */

struct evlm_lookahead {
    int W, N, G, D, V;
    const evlm_model *m;     /* its end-of-generation ids end an answer's n-grams */
    int32_t *levels;         /* [N-1][W] */
    evlm_ngram_cache *cache; /* the n-gram pool (the caller's, kept across answers, or own) */
    bool own_cache;
    /* one step's batch */
    int max_batch, max_nodes;
    int32_t *ids, *depth, *tok_next;
    uint8_t *mask;
    int *out_rows, *parent, *row_out; /* row_out: logits row of a batch row, or -1 */
    int32_t *top_out;
    int32_t *pred; /* greedy id of each logits row of the batch */
    uint64_t rng;
};

static uint32_t next_rand(evlm_lookahead *la) {
    la->rng = la->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(la->rng >> 33);
}

evlm_status evlm_lookahead_new(const evlm_lookahead_params *p, const evlm_sampler_params *sp,
                               const int32_t *prompt, size_t n_prompt, evlm_model *m,
                               evlm_ngram_cache *cache, evlm_lookahead **out) {
    const int n_vocab = evlm_model_n_vocab(m);
    *out = NULL;
    if (!evlm_sampler_is_greedy(sp))
        return evlm__fail(EVLM_ERR_ARG,
                          "lookahead / prompt lookup need greedy decoding (temperature 0, "
                          "no repetition penalty): they are lossless only for greedy");
    bool grams = p->window > 0 || p->guesses > 0;
    if (p->window < 0 || p->window > 64 || (grams && (p->ngram < 2 || p->ngram > 16)) ||
        p->guesses < 0 || p->guesses > 64 || p->prompt_lookup < 0 || p->prompt_lookup > 64)
        return evlm__fail(EVLM_ERR_ARG,
                          "lookahead W,N,G = %d,%d,%d / prompt lookup %d out of range "
                          "(W <= 64, 2 <= N <= 16, G <= 64, prompt lookup <= 64)",
                          p->window, p->ngram, p->guesses, p->prompt_lookup);
    if (n_prompt == 0 || n_vocab < 1) return evlm__fail(EVLM_ERR_ARG, "lookahead needs a prompt");
    evlm_lookahead *la = calloc(1, sizeof *la);
    if (!la) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    la->W = p->window;
    la->N = grams ? p->ngram : 0;
    la->G = grams ? p->guesses : 0;
    la->D = p->prompt_lookup;
    la->V = n_vocab;
    la->m = m;
    la->rng = 0x9e3779b97f4a7c15ull;
    int L = la->N ? la->N - 1 : 0;
    la->max_nodes = la->G * L + PL_CANDIDATES * la->D;
    la->max_batch = 1 + L * la->W + la->max_nodes;
    size_t B = (size_t)la->max_batch;
    la->levels = malloc(sizeof(int32_t) * ((size_t)L * la->W + 1));
    la->ids = malloc(sizeof(int32_t) * B);
    la->depth = malloc(sizeof(int32_t) * B);
    la->tok_next = malloc(sizeof(int32_t) * B);
    la->mask = malloc(B * B);
    la->out_rows = malloc(sizeof(int) * B);
    la->parent = malloc(sizeof(int) * B);
    la->row_out = malloc(sizeof(int) * B);
    la->top_out = malloc(sizeof(int32_t) * ((size_t)la->W + 1));
    la->pred = malloc(sizeof(int32_t) * B);
    if (!la->levels || !la->ids || !la->depth || !la->tok_next || !la->mask || !la->out_rows ||
        !la->parent || !la->row_out || !la->top_out || !la->pred) {
        evlm_lookahead_free(la);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory planning lookahead buffers");
    }
    evlm_status st = EVLM_OK;
    if (la->G) {
        la->cache = cache;
        if (!cache) {
            st = evlm_ngram_cache_new(m, &la->cache);
            la->own_cache = st == EVLM_OK;
        }
        if (st == EVLM_OK)
            st = evlm__ngram_cache_shape(la->cache, n_vocab, la->N - 1,
                                         la->G > POOL_PER_KEY ? la->G : POOL_PER_KEY);
        if (st != EVLM_OK) {
            evlm_lookahead_free(la);
            return st;
        }
    }
    /* the Jacobi window starts from tokens drawn from the prompt */
    for (int i = 0; i < L * la->W; i++) la->levels[i] = prompt[next_rand(la) % n_prompt];
    *out = la;
    return EVLM_OK;
}

void evlm_lookahead_free(evlm_lookahead *la) {
    if (!la) return;
    free(la->levels);
    if (la->own_cache) evlm_ngram_cache_free(la->cache);
    free(la->ids);
    free(la->depth);
    free(la->tok_next);
    free(la->mask);
    free(la->out_rows);
    free(la->parent);
    free(la->row_out);
    free(la->top_out);
    free(la->pred);
    free(la);
}

int evlm_lookahead_batch(const evlm_lookahead *la) {
    return la->max_batch;
}

/* ---- the draft trie ---------------------------------------------------------------------------
 */

/* Inserts a draft continuation of the root (row 0) into the trie rows [first, *n). */
static void trie_add(evlm_lookahead *la, int first, int *n, const int32_t *draft, int len) {
    int node = 0;
    for (int d = 0; d < len && draft[d] >= 0; d++) { /* -1: the n-gram ended with its answer */
        int child = -1;
        for (int r = first; r < *n && child < 0; r++)
            if (la->parent[r] == node && la->ids[r] == draft[d]) child = r;
        if (child < 0) {
            if (*n >= la->max_batch) return;
            child = (*n)++;
            la->ids[child] = draft[d];
            la->parent[child] = node;
            la->depth[child] = node == 0 ? 1 : la->depth[node] + 1;
        }
        node = child;
    }
}

/* Prompt lookup: continuations of the latest earlier matches of the history's tail. */
static void add_prompt_drafts(evlm_lookahead *la, int first, int *n, const int32_t *hist,
                              size_t nh) {
    int found = 0;
    for (int len = PL_MATCH_MAX; len >= 1 && !found; len--) {
        if ((size_t)len >= nh) continue;
        const int32_t *tail = hist + nh - len;
        for (size_t i = nh - len; i-- > 0 && found < PL_CANDIDATES;) {
            if (memcmp(hist + i, tail, sizeof(int32_t) * (size_t)len)) continue;
            size_t start = i + (size_t)len, avail = nh - start;
            int dl = (size_t)la->D < avail ? la->D : (int)avail;
            if (dl < 1) continue;
            trie_add(la, first, n, hist + start, dl);
            found++;
        }
    }
}

/* ---- one step
 * ------------------------------------------------------------------------------------- */

evlm_status evlm_lookahead_step(evlm_lookahead *la, evlm_context *ctx, const int32_t *hist,
                                size_t n_hist, int32_t *acc, int *n_acc) {
    const int W = la->W, L = la->N ? la->N - 1 : 0;
    const int32_t cur = hist[n_hist - 1];
    int n = 1;
    la->ids[0] = cur;
    la->depth[0] = 0;
    la->parent[0] = -1;
    /* lookahead branch: level l, column j at row 1 + l * W + j */
    for (int l = 0; l < L; l++)
        for (int j = 0; j < W; j++, n++) {
            la->ids[n] = la->levels[l * W + j];
            la->depth[n] = l + j + 1;
            la->parent[n] = -1;
        }
    const int first = n;
    if (la->D) add_prompt_drafts(la, first, &n, hist, n_hist);
    if (la->G) {
        const int32_t *g[64];
        int ng =
            evlm__ngram_cache_pick(la->cache, n_hist >= 2 ? hist[n_hist - 2] : -1, cur, la->G, g);
        for (int i = 0; i < ng; i++) trie_add(la, first, &n, g[i], L);
    }

    /* masks: the root, the Jacobi window's diagonal-history pattern, the trie's ancestor paths */
    memset(la->mask, 0, (size_t)n * (size_t)n);
    for (int r = 0; r < n; r++) la->mask[(size_t)r * n + r] = la->mask[(size_t)r * n] = 1;
    for (int l = 0; l < L; l++)
        for (int j = 0; j < W; j++) {
            uint8_t *row = la->mask + (size_t)(1 + l * W + j) * n;
            for (int c = 0; c <= j; c++) row[1 + c] = 1;        /* level 0 up to column j */
            for (int k = 1; k < l; k++) row[1 + k * W + j] = 1; /* its own column below it */
        }
    for (int r = first; r < n; r++)
        for (int a = la->parent[r]; a > 0; a = la->parent[a]) la->mask[(size_t)r * n + a] = 1;

    /* logits for the root, the window's top level and every trie node */
    int n_out = 0;
    for (int r = 0; r < n; r++) {
        bool top = r >= 1 + (L - 1) * W && r < first && L > 0;
        la->row_out[r] = (r == 0 || top || r >= first) ? n_out : -1;
        if (la->row_out[r] >= 0) la->out_rows[n_out++] = r;
    }
    evlm_context *c = ctx;
    const int base = evlm_context_n_past(c);
    EVLM_TRY(
        evlm_decode_tree_greedy(c, la->ids, la->depth, la->mask, n, la->out_rows, n_out, la->pred));

    /* greedy walk down the trie */
    int node = 0, k = 0, na = 0;
    int slots[EVLM_LOOKAHEAD_MAX_ACCEPT];
    slots[0] = base;
    for (;;) {
        int32_t pred = la->pred[la->row_out[node]];
        acc[na++] = pred;
        int child = -1;
        for (int r = first; r < n && child < 0; r++)
            if (la->parent[r] == node && la->ids[r] == pred) child = r;
        if (child < 0) break;
        node = child;
        slots[++k] = base + child;
    }
    *n_acc = na;
    EVLM_TRY(evlm_context_keep(c, base, slots, k + 1));

    /* the accepted tokens' n-grams into the pool: answers repeat their own phrases */
    if (la->G) {
        int32_t seq[16 + EVLM_LOOKAHEAD_MAX_ACCEPT];
        int have = n_hist < (size_t)L + 1 ? (int)n_hist : L + 1,
            ns = 0; /* + 1: prev of the first gram */
        for (int i = 0; i < have; i++) seq[ns++] = hist[n_hist - (size_t)have + (size_t)i];
        for (int i = 0; i < na; i++) seq[ns++] = acc[i];
        for (int end = have; end < ns; end++)
            if (end - L >= 0)
                EVLM_TRY(evlm__ngram_cache_add(la->cache, end - L >= 1 ? seq[end - L - 1] : -1,
                                               seq[end - L], seq + end - L + 1));
        /* at the end of the answer, the n-grams of its last tokens too (shorter, padded with -1):
         * the next answer's ending is drafted as well */
        int e = have;
        while (e < ns && !evlm_model_is_eos(la->m, seq[e])) e++;
        for (int st = e - L + 1 > 0 ? e - L + 1 : 0; e < ns && st < e; st++) {
            int32_t gram[16];
            for (int j = 0; j < L; j++) gram[j] = st + 1 + j <= e ? seq[st + 1 + j] : -1;
            EVLM_TRY(evlm__ngram_cache_add(la->cache, st >= 1 ? seq[st - 1] : -1, seq[st], gram));
        }
    }

    /* the window's new top level, its n-grams into the pool, then the levels shift down */
    if (L > 0 && W > 0) {
        int32_t gram[16];
        for (int j = 0; j < W; j++) {
            int r = 1 + (L - 1) * W + j;
            la->top_out[j] = la->pred[la->row_out[r]];
            for (int l = 1; l < L; l++) gram[l - 1] = la->levels[l * W + j];
            gram[L - 1] = la->top_out[j];
            if (la->G) EVLM_TRY(evlm__ngram_cache_add(la->cache, -1, la->levels[j], gram));
        }
        memmove(la->levels, la->levels + W, sizeof(int32_t) * (size_t)(L - 1) * W);
        memcpy(la->levels + (size_t)(L - 1) * W, la->top_out, sizeof(int32_t) * (size_t)W);
    }
    return EVLM_OK;
}

/* ---- defaults ------------------------------------------------------------------------------- */

/* Decode reads every weight once per pass, so while a pass is bound by memory bandwidth, a few
 * more rows cost little; a model that lives in the core's caches is bound by compute and pays for
 * every extra row (a pass of k rows costs about k tokens), so there no draft can win. The
 * thresholds below come from `evlm bench --tune-lookahead` and `evlm eval` runs on models of
 * each size class (tiny cache-resident models, the scene VLM, the SmolLM2-135M shape): the
 * figures are in docs/PERFORMANCE.md. */
evlm_lookahead_params evlm_lookahead_auto(const evlm_model *m) {
    double mb_per_core = (double)evlm_model_decode_bytes(m) / 1e6 / evlm_model_n_threads(m);
    evlm_lookahead_params p = {0};
    if (mb_per_core < 4)
        p = (evlm_lookahead_params){0, 0, 0, 0}; /* cache-resident: plain */
    else if (mb_per_core < 512)
        p = (evlm_lookahead_params){0, 4, 1, 0};
    else
        p = (evlm_lookahead_params){0, 4, 2, 4};
    return p;
}
