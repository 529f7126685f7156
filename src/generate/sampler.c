/*
 * sampler.c - next-token selection from logits: repetition penalty, greedy, top-k, temperature,
 * top-p, min-p and a seeded draw (the evlm_sampler_* functions of evlm.h).
 *
 * Order of operations (as llama.cpp and Hugging Face generate):
 *   1. repetition penalty over the last repeat_last_n ids of the history (CTRL-style: a positive
 *      logit is divided by the penalty, a non-positive one multiplied; each distinct id is
 *      penalized once however often it occurs). repeat_last_n = 0 disables it, -1 uses the whole
 *      history. Ids outside [0, n_vocab) in the history are ignored.
 *   2. temp <= 0 (negative included): greedy argmax, lowest id on ties. Greedy ignores top-k,
 *      top-p and min-p (they never change the argmax).
 *   3. otherwise: top-k (0 or >= n_vocab = off), softmax of logits / temp over the survivors,
 *      top-p (keep the smallest prefix of the probability-sorted candidates whose cumulative
 *      probability reaches top_p; always at least one), min-p (drop tokens with
 *      p < min_p * p_max), renormalize and draw with xoshiro256** seeded through splitmix64.
 * NaN logits never win and get probability 0. Sorting is by probability descending, then id
 * ascending, so results are deterministic for a seed and do not depend on the platform's qsort.
 *
 * Seeds: the same seed gives the same sequence of draws. seed 0 is NOT "random": it selects a
 * fixed default seed, so runs are reproducible unless the caller passes its own entropy.
 * There is no global state; each sampler owns its PRNG.
 *
 * Memory: all scratch (probabilities, candidate ids, the penalty bitmap) is allocated once in
 * evlm_sampler_new (n_vocab <= 1<<24); evlm_sampler_sample never allocates.
 * Not here: mirostat, typical-p, grammar constraints, beam search.
 */
#include "core/status.h"
#include "generate/lookahead.h"
#include "evlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB    (1 << 24)
#define DEFAULT_SEED 0x9e3779b97f4a7c15ull

struct evlm_sampler {
    evlm_sampler_params p;
    int n_vocab;
    uint64_t rng[4];
    float *prob;   /* [n_vocab] logits, then probabilities, of the candidates */
    int32_t *cand; /* [n_vocab] candidate ids */
    uint8_t *seen; /* [n_vocab / 8] penalty bitmap, all zero between calls */
};

/* ---- PRNG --------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double uniform01(uint64_t s[4]) {
    return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53;
}

/* ---- API ---------------------------------------------------------------------------------- */

evlm_sampler_params evlm_sampler_default_params(void) {
    evlm_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temp = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0;
    return p;
}

evlm_status evlm_sampler_new(const evlm_sampler_params *params, int n_vocab, evlm_sampler **out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "sampler: out is NULL");
    *out = NULL;
    evlm_sampler_params p = params ? *params : evlm_sampler_default_params();
    if (n_vocab <= 0 || n_vocab > MAX_VOCAB)
        return evlm__fail(EVLM_ERR_ARG, "sampler: n_vocab = %d is out of range [1, %d]", n_vocab,
                          MAX_VOCAB);
    if (isnan(p.temp)) return evlm__fail(EVLM_ERR_ARG, "sampler: temp is NaN");
    if (p.top_k < 0) return evlm__fail(EVLM_ERR_ARG, "sampler: top_k = %d < 0", p.top_k);
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
        return evlm__fail(EVLM_ERR_ARG, "sampler: top_p = %g is outside (0, 1]", (double)p.top_p);
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        return evlm__fail(EVLM_ERR_ARG, "sampler: min_p = %g is outside [0, 1]", (double)p.min_p);
    if (!(p.repeat_penalty > 0.0f) || isinf(p.repeat_penalty))
        return evlm__fail(EVLM_ERR_ARG, "sampler: repeat_penalty = %g must be finite and > 0",
                          (double)p.repeat_penalty);
    if (p.repeat_last_n < -1)
        return evlm__fail(EVLM_ERR_ARG, "sampler: repeat_last_n = %d (use -1 for all, 0 for off)",
                          p.repeat_last_n);

    evlm_sampler *s = calloc(1, sizeof *s);
    if (!s) return evlm__fail(EVLM_ERR_NOMEM, "sampler: out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->seen = calloc((size_t)n_vocab / 8 + 1, 1);
    if (!s->prob || !s->cand || !s->seen) {
        evlm_sampler_free(s);
        return evlm__fail(EVLM_ERR_NOMEM, "sampler: out of memory (n_vocab = %d)", n_vocab);
    }
    uint64_t x = p.seed ? p.seed : DEFAULT_SEED;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    *out = s;
    return EVLM_OK;
}

void evlm_sampler_free(evlm_sampler *s) {
    if (!s) return;
    free(s->prob);
    free(s->cand);
    free(s->seen);
    free(s);
}

/* ---- steps -------------------------------------------------------------------------------- */

static void apply_penalty(evlm_sampler *s, float *logits, const int32_t *hist, size_t n_hist) {
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->p.repeat_last_n == 0 || !hist || n_hist == 0) return;
    size_t win = s->p.repeat_last_n < 0 ? n_hist : (size_t)s->p.repeat_last_n;
    size_t start = n_hist > win ? n_hist - win : 0;
    for (size_t i = start; i < n_hist; i++) {
        int32_t id = hist[i];
        if (id < 0 || id >= s->n_vocab) continue;
        uint8_t bit = (uint8_t)(1u << (id & 7));
        if (s->seen[id >> 3] & bit) continue;
        s->seen[id >> 3] |= bit;
        logits[id] = logits[id] > 0.0f ? logits[id] / pen : logits[id] * pen;
    }
    for (size_t i = start; i < n_hist; i++) /* leave the bitmap clean for the next call */
        if (hist[i] >= 0 && hist[i] < s->n_vocab) s->seen[hist[i] >> 3] = 0;
}

bool evlm_sampler_is_greedy(const evlm_sampler_params *p) {
    return (!(p->temp > 0.0f) || p->top_k == 1) &&
           (p->repeat_penalty == 1.0f || p->repeat_last_n == 0);
}

int32_t evlm__argmax(const float *x, int n) {
    int32_t best = 0;
    float bv = -INFINITY;
    bool found = false;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i])) continue;
        if (!found || x[i] > bv) {
            bv = x[i];
            best = i;
            found = true;
        }
    }
    return best;
}

/* Ordering of candidates: higher value first, then lower id. v is indexed by id. */
static bool before(const float *v, int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
}

/* Rearranges c[0..n) so that its first k elements are the k best (in any order). */
static void select_top(const float *v, int32_t *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        /* median of three as pivot keeps sorted inputs linear */
        int mid = lo + (hi - lo) / 2;
        int32_t a = c[lo], b = c[mid], d = c[hi], piv;
        if (before(v, a, b))
            piv = before(v, b, d) ? b : (before(v, a, d) ? d : a);
        else
            piv = before(v, a, d) ? a : (before(v, b, d) ? d : b);
        int i = lo, j = hi;
        while (i <= j) {
            while (before(v, c[i], piv)) i++;
            while (before(v, piv, c[j])) j--;
            if (i <= j) {
                int32_t t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

static void sift_down(const float *v, int32_t *c, int root, int n) {
    for (;;) {
        int child = 2 * root + 1;
        if (child >= n) return;
        /* min-heap on the ordering (worst candidate at the root) */
        if (child + 1 < n && before(v, c[child], c[child + 1])) child++;
        if (!before(v, c[root], c[child])) return;
        int32_t t = c[root];
        c[root] = c[child];
        c[child] = t;
        root = child;
    }
}

/* Heapsort: O(n log n) worst case, no allocation, deterministic (the ordering is total). */
static void sort_desc(const float *v, int32_t *c, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(v, c, i, n);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = c[0];
        c[0] = c[end];
        c[end] = t;
        sift_down(v, c, 0, end);
    }
}

int32_t evlm_sampler_sample(evlm_sampler *s, float *logits, const int32_t *history,
                            size_t n_history) {
    if (!s || !logits) {
        evlm__fail(EVLM_ERR_ARG, "sampler: NULL sampler or logits");
        return -1;
    }
    const int n = s->n_vocab;
    apply_penalty(s, logits, history, n_history);
    if (!(s->p.temp > 0.0f)) return evlm__argmax(logits, n);
    if (s->p.top_k == 1) return evlm__argmax(logits, n);

    float *v = s->prob; /* indexed by id */
    int32_t *c = s->cand;
    int nc = 0;
    for (int i = 0; i < n; i++) {
        v[i] = isnan(logits[i]) ? -INFINITY : logits[i];
        c[nc++] = i;
    }

    /* top-k: partial selection, the k best end up (sorted) at the front */
    bool sorted = false;
    if (s->p.top_k > 0 && s->p.top_k < nc) {
        select_top(v, c, nc, s->p.top_k);
        nc = s->p.top_k;
        sort_desc(v, c, nc);
        sorted = true;
    }

    /* softmax with temperature over the candidates; double sum for large vocabularies */
    float vmax = -INFINITY;
    for (int i = 0; i < nc; i++)
        if (v[c[i]] > vmax) vmax = v[c[i]];
    if (vmax == -INFINITY) return evlm__argmax(logits, n); /* nothing finite: fall back */
    const float inv_t = 1.0f / s->p.temp;
    double sum = 0.0;
    for (int i = 0; i < nc; i++) {
        float p = expf((v[c[i]] - vmax) * inv_t);
        v[c[i]] = p;
        sum += (double)p;
    }

    /* top-p: grow the sorted prefix only as far as needed (select the best m, double m) */
    if (s->p.top_p < 1.0f) {
        const double target = (double)s->p.top_p * sum;
        int m = sorted ? nc : (nc < 64 ? nc : 64);
        for (;;) {
            if (!sorted) {
                if (m < nc) select_top(v, c, nc, m);
                sort_desc(v, c, m);
            }
            double cum = 0.0;
            int keep = -1;
            for (int i = 0; i < m; i++) {
                cum += (double)v[c[i]];
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep > 0) {
                nc = keep;
                break;
            }
            if (m == nc) break; /* rounding: keep everything */
            m = m > nc / 2 ? nc : 2 * m;
        }
    }

    /* min-p relative to the most likely candidate (the max is 1 after exp(x - max)) */
    if (s->p.min_p > 0.0f) {
        float pmax = 0.0f;
        for (int i = 0; i < nc; i++)
            if (v[c[i]] > pmax) pmax = v[c[i]];
        float thr = s->p.min_p * pmax;
        int w = 0;
        for (int i = 0; i < nc; i++)
            if (v[c[i]] >= thr) c[w++] = c[i];
        nc = w; /* the max always survives */
    }

    double total = 0.0;
    for (int i = 0; i < nc; i++) total += (double)v[c[i]];
    double u = uniform01(s->rng) * total, acc = 0.0;
    for (int i = 0; i < nc; i++) {
        acc += (double)v[c[i]];
        if (u < acc) return c[i];
    }
    /* rounding put u at the very end: the last candidate with non-zero probability */
    for (int i = nc - 1; i >= 0; i--)
        if (v[c[i]] > 0.0f) return c[i];
    return c[0];
}
