/*
 * test_smolvlm_fixture.c - the SmolVLM (Idefics3) language path with image features against
 * transformers on ../shared/fixtures/smolvlm-tiny: the reference pixel_values go through the
 * vision tower + connector, the features replace the <image> tokens of the reference prompt,
 * and the logits of all 120 positions must be within 1e-3 * max(1, max|ref|); the 16 greedy ids
 * decoded with the KV cache must be exact. (Image decoding and preprocessing are tested on their
 * own in test_idefics3_proc.)
 */
#include "core/threadpool.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "vision/siglip.h"
#include "vision/idefics3_config.h"
#include "test.h"
#include "test_ref.h"

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    st_file ref;
    CHECK(st_open(path, &ref));
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *meta;
    CHECK_OK(evlm_json_load(path, &meta));

    evlm_decoder_config cfg;
    evlm_idefics3_config vcfg;
    evlm_weights *w;
    CHECK_OK(evlm_decoder_config_load(dir, &cfg));
    CHECK_OK(evlm_idefics3_config_load(dir, &vcfg));
    CHECK_OK(evlm_weights_open(dir, &w));
    evlm_decoder lm;
    evlm_siglip vm;
    CHECK_OK(evlm_decoder_init(&lm, &cfg, w));
    CHECK_OK(evlm_siglip_init(&vm, &vcfg, w));
    evlm_pool *pool;
    CHECK_OK(evlm_pool_new(2, &pool));

    const int T = 5, S = 64, TOK = 16, H = cfg.hidden_size, V = cfg.vocab_size, N = 120;
    float *pix = st_get(&ref, "pixel_values", "F32", (size_t)T * 3 * S * S, 4);
    float *want_logits = st_get(&ref, "logits", "F32", (size_t)N * V, 4);
    int64_t *ids64 = st_get(&ref, "input_ids", "I64", N, 8);
    CHECK(pix && want_logits && ids64);
    if (!pix || !want_logits || !ids64) return test_done();

    evlm_siglip_state vs;
    CHECK_OK(evlm_siglip_state_init(&vs, &vm, T, 2));
    float *feats = malloc(sizeof(float) * (size_t)T * TOK * H);
    CHECK_OK(evlm_siglip_encode(&vm, &vs, pool, pix, NULL, T, feats));

    int32_t ids[120];
    int n_img = 0;
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)ids64[i];
        n_img += ids[i] == vcfg.image_token_id;
    }
    CHECK(n_img == T * TOK);

    /* all logits in one prefill, and in 7-token chunks */
    for (int chunked = 0; chunked < 2; chunked++) {
        evlm_decoder_state s;
        CHECK_OK(evlm_decoder_state_init(&s, &lm, N + 16, chunked ? 7 : N, 2, EVLM_TYPE_F32));
        float *lg = malloc(sizeof(float) * (size_t)N * V);
        evlm_decoder_inject inj = {vcfg.image_token_id, feats, T * TOK, 0};
        CHECK_OK(evlm_decoder_forward(&lm, &s, pool, ids, NULL, &inj, N, lg, true));
        CHECK(inj.used == T * TOK);
        float tol = 1e-3f * fmaxf(1.0f, max_abs(want_logits, (size_t)N * V));
        float d = max_diff(lg, want_logits, (size_t)N * V);
        printf("logits (%s): max |ours - ref| = %.3g (tolerance %.3g)\n",
               chunked ? "7-token chunks" : "one batch", (double)d, (double)tol);
        CHECK(d <= tol);

        /* greedy with the KV cache */
        const cJSON *want = cJSON_GetObjectItem(meta, "greedy_ids");
        int steps = cJSON_GetArraySize(want), same = 1;
        float *last = lg + (size_t)(N - 1) * V;
        for (int st = 0; st < steps; st++) {
            int32_t best = 0;
            for (int v = 1; v < V; v++)
                if (last[v] > last[best]) best = v;
            same &= best == cJSON_GetArrayItem(want, st)->valueint;
            if (st + 1 < steps)
                CHECK_OK(evlm_decoder_forward(&lm, &s, pool, &best, NULL, NULL, 1, last, false));
        }
        CHECKF(same, "greedy ids differ from the reference");
        free(lg);
        evlm_decoder_state_release(&s);
    }

    /* too few features for the image tokens is an error */
    evlm_decoder_state s;
    CHECK_OK(evlm_decoder_state_init(&s, &lm, N, N, 2, EVLM_TYPE_F32));
    evlm_decoder_inject few = {vcfg.image_token_id, feats, 10, 0};
    CHECK(evlm_decoder_forward(&lm, &s, pool, ids, NULL, &few, N, NULL, false) == EVLM_ERR_ARG);
    evlm_decoder_state_release(&s);

    free(feats);
    free(pix);
    free(want_logits);
    free(ids64);
    evlm_siglip_state_release(&vs);
    evlm_siglip_release(&vm);
    evlm_decoder_release(&lm);
    evlm_pool_free(pool);
    evlm_weights_free(w);
    cJSON_Delete(meta);
    st_close(&ref);
    return test_done();
}
