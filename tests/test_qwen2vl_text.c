/*
 * test_qwen2vl_text.c - the Qwen2-VL language path against transformers on
 * ../shared/fixtures/qwen2vl-tiny: the reference image_embeds replace the <|image_pad|> tokens,
 * positions are the 3-D M-RoPE ids of get_rope_index (recomputed here from the grid, independently
 * of the library's version), q/k/v biases, tied embeddings; all 31 logits within
 * 1e-3 * max(1, max|ref|) in one batch and in 4-token chunks, then 16 greedy ids with the cache
 * (text positions continue after the image's largest index) exact. (The image processor and the
 * vision tower are tested in test_qwen2vl_vision.)
 */
#include "core/threadpool.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "test.h"
#include "test_ref.h"

/* get_rope_index for one image of grid (1, gh, gw) before merging 2x2. */
static int rope_index(const int32_t *ids, int n, int32_t image_tok, int gh, int gw, int32_t *pos3) {
    int next = 0, i = 0;
    while (i < n) {
        if (ids[i] != image_tok) {
            for (int d = 0; d < 3; d++) pos3[d * n + i] = next;
            next++;
            i++;
            continue;
        }
        int mh = gh / 2, mw = gw / 2, mx = next;
        for (int r = 0; r < mh; r++)
            for (int c = 0; c < mw; c++, i++) {
                pos3[0 * n + i] = next;
                pos3[1 * n + i] = next + r;
                pos3[2 * n + i] = next + c;
                if (next + r > mx) mx = next + r;
                if (next + c > mx) mx = next + c;
            }
        next = mx + 1;
    }
    return next; /* the next text position */
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/qwen2vl-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    st_file ref;
    CHECK(st_open(path, &ref));
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *meta;
    CHECK_OK(evlm_json_load(path, &meta));

    evlm_decoder_config cfg;
    evlm_weights *w;
    CHECK_OK(evlm_decoder_config_load(dir, &cfg));
    CHECK(cfg.mrope_section[0] == 2 && cfg.mrope_section[1] == 3 && cfg.mrope_section[2] == 3);
    CHECK_OK(evlm_weights_open(dir, &w));
    evlm_decoder lm;
    CHECK_OK(evlm_decoder_init(&lm, &cfg, w));
    CHECK(lm.layers[0].bq && lm.layers[0].bk && lm.layers[0].bv && !lm.layers[0].bo);
    evlm_pool *pool;
    CHECK_OK(evlm_pool_new(2, &pool));

    const int N = 31, H = cfg.hidden_size, V = cfg.vocab_size, IMG = 5, GH = 4, GW = 6;
    float *embeds = st_get(&ref, "image_embeds", "F32", (size_t)(GH * GW / 4) * H, 4);
    float *want = st_get(&ref, "logits", "F32", (size_t)N * V, 4);
    int64_t *ids64 = st_get(&ref, "input_ids", "I64", N, 8);
    CHECK(embeds && want && ids64);
    if (!embeds || !want || !ids64) return test_done();
    int32_t ids[31], pos3[3 * 31];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)ids64[i];
    int next_pos = rope_index(ids, N, IMG, GH, GW, pos3);
    CHECK(next_pos < N); /* the image's 6 tokens span 3 positions */

    for (int chunked = 0; chunked < 2; chunked++) {
        evlm_decoder_state s;
        CHECK_OK(evlm_decoder_state_init(&s, &lm, N + 16, chunked ? 4 : N, 2, EVLM_TYPE_F32));
        float *lg = malloc(sizeof(float) * (size_t)N * V);
        evlm_decoder_inject inj = {IMG, embeds, GH * GW / 4, 0};
        evlm_decoder_batch b = {.n = N,
                                .ids = ids,
                                .pos = pos3,
                                .mrope_pos = pos3,
                                .inject = &inj,
                                .logits = lg,
                                .all_logits = true};
        CHECK_OK(evlm_decoder_decode(&lm, &s, pool, &b));
        float tol = 1e-3f * fmaxf(1.0f, max_abs(want, (size_t)N * V));
        float d = max_diff(lg, want, (size_t)N * V);
        printf("logits (%s): max |ours - ref| = %.3g (tolerance %.3g)\n",
               chunked ? "4-token chunks" : "one batch", (double)d, (double)tol);
        CHECK(d <= tol);

        /* greedy with the cache: text positions continue from next_pos */
        s.pos_offset = next_pos - s.n_past;
        const cJSON *g = cJSON_GetObjectItem(meta, "greedy_ids");
        int steps = cJSON_GetArraySize(g), same = 1;
        float *last = lg + (size_t)(N - 1) * V;
        for (int st = 0; st < steps; st++) {
            int32_t best = 0;
            for (int v = 1; v < V; v++)
                if (last[v] > last[best]) best = v;
            same &= best == cJSON_GetArrayItem(g, st)->valueint;
            if (st + 1 < steps)
                CHECK_OK(evlm_decoder_forward(&lm, &s, pool, &best, NULL, NULL, 1, last, false));
        }
        CHECKF(same, "greedy ids differ from the reference");
        free(lg);
        evlm_decoder_state_release(&s);
    }
    free(embeds);
    free(want);
    free(ids64);
    evlm_decoder_release(&lm);
    evlm_pool_free(pool);
    evlm_weights_free(w);
    cJSON_Delete(meta);
    st_close(&ref);
    return test_done();
}
