/*
 * generate.c - the generation loop: prefill the prompt, then sample one token per forward
 * pass until an eos id, a stop string, n_predict or a full context (see evlm.h).
 *
 * Text streaming: after each token the whole answer is detokenized (special tokens skipped) and
 * only the stable part is handed to the callback: a trailing U+FFFD (an incomplete UTF-8
 * sequence of byte-level tokens) and any tail that could still become a stop string are held
 * back. Answers are short, so re-decoding is cheaper than it sounds and always exact.
 * Not here: lookahead / speculative decoding (a later module), batching of several sequences.
 */
#include "core/buf.h"
#include "core/status.h"
#include "core/sysinfo.h"
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

    evlm_sampler *smp = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    evlm_ids hist = {0}, out = {0};
    evlm_str text = {0};
    evlm_status st = EVLM_OK;
    if (!logits) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = evlm_sampler_new(&p.sampling, V, &smp)) != EVLM_OK) goto done;
    if ((st = evlm_ids_append(&hist, prompt, n_prompt)) != EVLM_OK) goto done;
    if ((st = evlm_decode_prompt(ctx, pr, logits, false)) != EVLM_OK) goto done;
    res->prefill_ms = evlm_time_ms() - t0;
    res->n_prompt = (int)n_prompt;

    size_t emitted = 0;
    double t_first = 0;
    res->stop_reason = EVLM_STOP_LENGTH;
    for (int i = 0; i < p.n_predict; i++) {
        int32_t id = evlm_sampler_sample(smp, logits, hist.data, hist.len);
        if (i == 0) {
            t_first = evlm_time_ms();
            res->ttft_ms = t_first - t0;
        }
        if ((st = evlm_ids_push(&out, id)) != EVLM_OK || (st = evlm_ids_push(&hist, id)) != EVLM_OK)
            goto done;
        if (evlm_model_is_eos(m, id)) {
            res->stop_reason = EVLM_STOP_EOS;
            break;
        }
        free(text.data);
        text = (evlm_str){0};
        char *t;
        if ((st = evlm_detokenize(m, out.data, out.len, true, &t)) != EVLM_OK) goto done;
        text.data = t;
        text.len = strlen(t);
        long stop_at = find_stop(text.data, &p);
        size_t stable = text.len;
        if (stop_at >= 0) {
            stable = (size_t)stop_at;
        } else {
            while (stable >= 3 && !memcmp(text.data + stable - 3, "\xEF\xBF\xBD", 3)) stable -= 3;
            stable -= stop_prefix_tail(text.data, stable, &p);
        }
        if (cb && stable > emitted) {
            if (!cb(user, text.data + emitted, stable - emitted)) res->stop_reason = EVLM_STOP_CALLBACK;
            emitted = stable;
        }
        if (stop_at >= 0) {
            text.data[stop_at] = 0;
            text.len = (size_t)stop_at;
            res->stop_reason = EVLM_STOP_STRING;
        }
        if (res->stop_reason != EVLM_STOP_LENGTH) break;
        if (i + 1 == p.n_predict) break;
        if (evlm_context_n_past(ctx) >= evlm_context_n_ctx(ctx)) {
            res->stop_reason = EVLM_STOP_CONTEXT;
            break;
        }
        if ((st = evlm_decode(ctx, &id, 1, logits, false)) != EVLM_OK) goto done;
    }
    /* flush what was held back for a stop string that never came */
    if (res->stop_reason != EVLM_STOP_STRING && res->stop_reason != EVLM_STOP_CALLBACK && cb &&
        text.len > emitted)
        cb(user, text.data + emitted, text.len - emitted);
    res->decode_ms = out.len > 0 ? evlm_time_ms() - t_first : 0;
done:
    res->wall_ms = evlm_time_ms() - t0;
    res->cpu_ms = evlm_cpu_time_ms() - c0;
    evlm_sampler_free(smp);
    free(logits);
    evlm_ids_free(&hist);
    if (st != EVLM_OK) {
        evlm_ids_free(&out);
        evlm_str_free(&text);
        return st;
    }
    if (!text.data && (st = evlm_str_append(&text, "", 0)) != EVLM_OK) {
        evlm_ids_free(&out);
        return st;
    }
    res->ids = out.data;
    res->n_gen = (int)out.len;
    res->text = text.data;
    return EVLM_OK;
}
