/*
 * test_llama_fixture.c - conformance of the float32 Llama path with transformers on
 * ../shared/fixtures/llama-tiny: prompt ids, logits of every position within
 * 1e-3 * max(1, max|ref|), greedy ids with the KV cache exactly, and results that do not
 * depend on the thread count or on the prefill batch size.
 */
#include "core/json.h"
#include "io/safetensors.h"
#include "test.h"
#include "test_ref.h"

/* Greedy decoding with the cache: prefill, then one token per step. */
static void greedy(evlm_model *m, const int32_t *ids, int n, int steps, int32_t *out, int n_batch) {
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = n + steps;
    cp.n_batch = n_batch;
    evlm_context *ctx;
    CHECK_OK(evlm_context_new(m, &cp, &ctx));
    int V = evlm_model_n_vocab(m);
    float *lg = malloc(sizeof(float) * (size_t)V);
    CHECK_OK(evlm_decode(ctx, ids, n, lg, false));
    for (int s = 0; s < steps; s++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        out[s] = best;
        if (s + 1 < steps) CHECK_OK(evlm_decode(ctx, &out[s], 1, lg, false));
    }
    free(lg);
    evlm_context_free(ctx);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *meta;
    CHECK_OK(evlm_json_load(path, &meta));
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    evlm_weights *ref;
    CHECK_OK(evlm_weights_open(path, &ref));
    if (!meta || !ref) return test_done();

    evlm_model *m[2] = {0};
    for (int t = 0; t < 2; t++) {
        evlm_model_params mp = evlm_model_default_params();
        mp.n_threads = t + 1;
        CHECK_OK(evlm_model_load(dir, &mp, &m[t]));
        if (!m[t]) return test_done();
    }
    const int V = evlm_model_n_vocab(m[0]);
    const cJSON *prompts = cJSON_GetObjectItem(meta, "prompts"), *p;
    int pi = 0;
    cJSON_ArrayForEach(p, prompts) {
        const char *text = cJSON_GetObjectItem(p, "text")->valuestring;
        int32_t *ids;
        size_t n;
        CHECK_OK(evlm_tokenize(m[0], text, strlen(text), true, false, &ids, &n));
        const cJSON *want_ids = cJSON_GetObjectItem(p, "input_ids");
        CHECKF((int)n == cJSON_GetArraySize(want_ids), "prompt %d: %zu ids, want %d", pi, n,
               cJSON_GetArraySize(want_ids));
        for (size_t i = 0; i < n && (int)i < cJSON_GetArraySize(want_ids); i++)
            CHECK(ids[i] == cJSON_GetArrayItem(want_ids, (int)i)->valueint);

        /* logits of every position, 1 and 2 threads, whole-prompt and 7-token batches */
        char name[64];
        snprintf(name, sizeof name, "p%d.logits", pi);
        const evlm_tensor *rl = evlm_weights_find(ref, name);
        CHECK(rl && rl->ne[0] == V && rl->ne[1] == (int64_t)n);
        float *lg[3];
        for (int r = 0; r < 3; r++) {
            lg[r] = malloc(sizeof(float) * (size_t)V * n);
            evlm_context_params cp = evlm_context_default_params();
            cp.n_ctx = (int)n;
            cp.n_batch = r == 2 ? 7 : 0;
            evlm_context *ctx;
            CHECK_OK(evlm_context_new(m[r == 1], &cp, &ctx));
            CHECK_OK(evlm_decode(ctx, ids, (int)n, lg[r], true));
            evlm_context_free(ctx);
        }
        if (rl) {
            const float *want = rl->data;
            size_t cnt = (size_t)V * n;
            float tol = 1e-3f * fmaxf(1.0f, max_abs(want, cnt)), d = max_diff(lg[0], want, cnt);
            printf("prompt %d: %zu tokens, max |ours - ref| = %.3g (tolerance %.3g)\n", pi, n,
                   (double)d, (double)tol);
            CHECKF(d <= tol, "prompt %d logits differ by %g > %g", pi, (double)d, (double)tol);
        }
        CHECK(memcmp(lg[0], lg[1], sizeof(float) * (size_t)V * n) == 0); /* thread count */
        /* batch size: 7-token chunks take attn_row, a whole prompt of >= 32 tokens the tiled
         * attention (another float order); both far inside the reference tolerance */
        float db = max_diff(lg[0], lg[2], (size_t)V * n),
              tb = 1e-5f * fmaxf(1.0f, max_abs(lg[0], (size_t)V * n));
        printf("prompt %d: whole prompt vs 7-token batches: max diff %.3g (bound %.3g)\n", pi,
               (double)db, (double)tb);
        CHECK(n < 32 ? db == 0.0f : db <= tb);
        for (int r = 0; r < 3; r++) free(lg[r]);

        /* greedy continuation with the KV cache, exact */
        const cJSON *want_gen = cJSON_GetObjectItem(p, "greedy_ids");
        int steps = cJSON_GetArraySize(want_gen);
        int32_t got[64];
        greedy(m[1], ids, (int)n, steps, got, 0);
        int same = 1;
        for (int s = 0; s < steps; s++) same &= got[s] == cJSON_GetArrayItem(want_gen, s)->valueint;
        CHECKF(same, "prompt %d: greedy ids differ from the reference", pi);
        int32_t got_small[64];
        greedy(m[0], ids, (int)n, steps, got_small, 3); /* chunked prefill gives the same */
        CHECK(memcmp(got, got_small, sizeof(int32_t) * (size_t)steps) == 0);

        /* the decoded continuation matches the reference text */
        char *txt;
        CHECK_OK(evlm_detokenize(m[0], got, (size_t)steps, false, &txt));
        CHECK(txt && strcmp(txt, cJSON_GetObjectItem(p, "greedy_text")->valuestring) == 0);
        free(txt);
        free(ids);
        pi++;
    }
    CHECK(pi >= 2);

    /* a full context and bad ids are errors, not crashes */
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 4;
    evlm_context *ctx;
    CHECK_OK(evlm_context_new(m[0], &cp, &ctx));
    int32_t five[5] = {1, 2, 3, 4, 5}, bad = V + 7;
    CHECK(evlm_decode(ctx, five, 5, NULL, false) == EVLM_ERR_RANGE);
    CHECK(evlm_decode(ctx, &bad, 1, NULL, false) == EVLM_ERR_RANGE);
    CHECK(strstr(evlm_last_error(), "vocabulary") != NULL);
    evlm_context_free(ctx);

    for (int t = 0; t < 2; t++) evlm_model_free(m[t]);
    evlm_weights_free(ref);
    cJSON_Delete(meta);
    return test_done();
}
