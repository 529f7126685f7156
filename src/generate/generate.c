/*
 * generate.c - the generation loop: prefill the prompt, then sample one token per forward
 * pass until an eos id, a stop string, n_predict or a full context (see evlm.h).
 *
 * Text streaming: after each token the whole answer is detokenized (special tokens skipped) and
 * only the stable part is handed to the callback: a trailing U+FFFD (an incomplete UTF-8
 * sequence of byte-level tokens) and any tail that could still become a stop string are held
 * back. Answers are short, so re-decoding is cheaper than it sounds and always exact.
 * Lookahead / prompt lookup (lookahead.c) hand back several greedy tokens per pass; each goes
 * through the same emission path. Not here: batching of several sequences.
 */
#include "core/buf.h"
#include "core/status.h"
#include "core/sysinfo.h"
#include "generate/lookahead.h"
#include "evlm.h"

#include <stdlib.h>
#include <string.h>

evlm_gen_params evlm_gen_default_params(void) {
    evlm_gen_params p;
    memset(&p, 0, sizeof p);
    p.n_predict = 256;
    p.sampling = evlm_sampler_default_params();
    return p;
}

void evlm_gen_result_free(evlm_gen_result *r) {
    free(r->ids);
    free(r->text);
    r->ids = NULL;
    r->text = NULL;
}

/* Length of the longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_prefix_tail(const char *text, size_t len, const evlm_gen_params *p) {
    size_t best = 0;
    for (int s = 0; s < EVLM_MAX_STOP && p->stop[s]; s++) {
        size_t sl = strlen(p->stop[s]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > best; k--)
            if (k <= len && memcmp(text + len - k, p->stop[s], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* Earliest occurrence of any stop string, or -1. */
static long find_stop(const char *text, const evlm_gen_params *p) {
    long best = -1;
    for (int s = 0; s < EVLM_MAX_STOP && p->stop[s]; s++) {
        if (!*p->stop[s]) continue;
        const char *hit = strstr(text, p->stop[s]);
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}

/* The answer so far, and what was handed to the callback. */
typedef struct {
    const evlm_gen_params *p;
    evlm_model *m;
    evlm_text_cb cb;
    void *user;
    evlm_ids out, hist;
    evlm_str text;
    size_t emitted;
    evlm_gen_result *res;
} gen_state;

/* Appends one generated id; returns EVLM_OK and sets res->stop_reason when the answer ends. */
static evlm_status emit(gen_state *g, int32_t id) {
    evlm_gen_result *res = g->res;
    EVLM_TRY(evlm_ids_push(&g->out, id));
    EVLM_TRY(evlm_ids_push(&g->hist, id));
    if (!g->p->ignore_eos && evlm_model_is_eos(g->m, id)) {
        res->stop_reason = EVLM_STOP_EOS;
        return EVLM_OK;
    }
    char *t;
    EVLM_TRY(evlm_detokenize(g->m, g->out.data, g->out.len, true, &t));
    free(g->text.data);
    g->text.data = t;
    g->text.len = strlen(t);
    long stop_at = find_stop(g->text.data, g->p);
    size_t stable = g->text.len;
    if (stop_at >= 0) {
        stable = (size_t)stop_at;
    } else {
        while (stable >= 3 && !memcmp(g->text.data + stable - 3, "\xEF\xBF\xBD", 3)) stable -= 3;
        stable -= stop_prefix_tail(g->text.data, stable, g->p);
    }
    if (g->cb && stable > g->emitted) {
        if (!g->cb(g->user, g->text.data + g->emitted, stable - g->emitted))
            res->stop_reason = EVLM_STOP_CALLBACK;
        g->emitted = stable;
    }
    if (stop_at >= 0) {
        g->text.data[stop_at] = 0;
        g->text.len = (size_t)stop_at;
        res->stop_reason = EVLM_STOP_STRING;
    }
    return EVLM_OK;
}

evlm_status evlm_generate(evlm_context *ctx, const evlm_prompt *pr, const evlm_gen_params *params,
                          evlm_text_cb cb, void *user, evlm_gen_result *res) {
    memset(res, 0, sizeof *res);
    size_t n_prompt;
    const int32_t *prompt = evlm_prompt_ids(pr, &n_prompt);
    evlm_gen_params p = params ? *params : evlm_gen_default_params();
    if (n_prompt == 0) return evlm__fail(EVLM_ERR_ARG, "empty prompt");
    if (p.n_predict < 0) return evlm__fail(EVLM_ERR_ARG, "n_predict must be >= 0");
    evlm_model *m = evlm_context_model(ctx);
    const int V = evlm_model_n_vocab(m);
    double t0 = evlm_time_ms(), c0 = evlm_cpu_time_ms();

    gen_state g = {&p, m, cb, user, {0}, {0}, {0}, 0, res};
    evlm_sampler *smp = NULL;
    evlm_lookahead *la = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    evlm_status st = EVLM_OK;
    const bool greedy = evlm_sampler_is_greedy(&p.sampling); /* ids without logits */
    bool use_la =
        p.lookahead.window > 0 || p.lookahead.guesses > 0 || p.lookahead.prompt_lookup > 0;
    if (!logits) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = evlm_sampler_new(&p.sampling, V, &smp)) != EVLM_OK) goto done;
    if (use_la && (st = evlm_lookahead_new(&p.lookahead, &p.sampling, prompt, n_prompt, m, p.ngrams,
                                           &la)) != EVLM_OK)
        goto done;
    if ((st = evlm_ids_append(&g.hist, prompt, n_prompt)) != EVLM_OK) goto done;
    int32_t first = 0;
    st = greedy ? evlm_decode_prompt_greedy(ctx, pr, &first)
                : evlm_decode_prompt(ctx, pr, logits, false);
    if (st != EVLM_OK) goto done;
    res->prefill_ms = evlm_time_ms() - t0;
    res->n_prompt = (int)n_prompt;

    double t_first = 0;
    res->stop_reason = EVLM_STOP_LENGTH;
    if (p.n_predict > 0) {
        int32_t id = greedy ? first : evlm_sampler_sample(smp, logits, g.hist.data, g.hist.len);
        t_first = evlm_time_ms();
        res->ttft_ms = t_first - t0;
        if ((st = emit(&g, id)) != EVLM_OK) goto done;
    }
    while (res->stop_reason == EVLM_STOP_LENGTH && (int)g.out.len < p.n_predict) {
        int room = evlm_context_n_ctx(ctx) - evlm_context_n_past(ctx);
        if (room < 1) {
            res->stop_reason = EVLM_STOP_CONTEXT;
            break;
        }
        int32_t last = g.out.data[g.out.len - 1];
        res->n_steps++;
        if (la && room >= evlm_lookahead_batch(la)) {
            int32_t acc[EVLM_LOOKAHEAD_MAX_ACCEPT];
            int n_acc = 0;
            if ((st = evlm_lookahead_step(la, ctx, g.hist.data, g.hist.len, acc, &n_acc)) !=
                EVLM_OK)
                goto done;
            for (int i = 0;
                 i < n_acc && res->stop_reason == EVLM_STOP_LENGTH && (int)g.out.len < p.n_predict;
                 i++)
                if ((st = emit(&g, acc[i])) != EVLM_OK) goto done;
            continue;
        }
        int32_t id;
        if (greedy) {
            if ((st = evlm_decode_greedy(ctx, &last, 1, &id, false)) != EVLM_OK) goto done;
        } else {
            if ((st = evlm_decode(ctx, &last, 1, logits, false)) != EVLM_OK) goto done;
            id = evlm_sampler_sample(smp, logits, g.hist.data, g.hist.len);
        }
        if ((st = emit(&g, id)) != EVLM_OK) goto done;
    }
    /* flush what was held back for a stop string that never came */
    if (res->stop_reason != EVLM_STOP_STRING && res->stop_reason != EVLM_STOP_CALLBACK && cb &&
        g.text.len > g.emitted)
        cb(user, g.text.data + g.emitted, g.text.len - g.emitted);
    res->decode_ms = g.out.len > 0 ? evlm_time_ms() - t_first : 0;
done:
    res->wall_ms = evlm_time_ms() - t0;
    res->cpu_ms = evlm_cpu_time_ms() - c0;
    evlm_lookahead_free(la);
    evlm_sampler_free(smp);
    free(logits);
    evlm_ids_free(&g.hist);
    if (st != EVLM_OK) {
        evlm_ids_free(&g.out);
        evlm_str_free(&g.text);
        return st;
    }
    if (!g.text.data && (st = evlm_str_append(&g.text, "", 0)) != EVLM_OK) {
        evlm_ids_free(&g.out);
        return st;
    }
    res->ids = g.out.data;
    res->n_gen = (int)g.out.len;
    res->text = g.text.data;
    return EVLM_OK;
}
