/*
 * test_qwen2vl_model.c - Qwen2-VL through the public API on ../shared/fixtures/qwen2vl-tiny:
 * the reference prompt with ref_image.png expands to the reference input_ids (one
 * <|image_pad|> per merged patch), the logits of every position match transformers within
 * 1e-3 * max(1, max|ref|), the 16 greedy ids from evlm_generate (KV cache, text positions
 * resuming after the image) are exact, "<image>" works as the generic marker, and marker /
 * image count mismatches are errors.
 */
#include "test.h"
#include "test_ref.h"

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], path[4200], png[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/qwen2vl-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    snprintf(png, sizeof png, "%s/ref_image.png", dir);
    st_file ref;
    CHECK(st_open(path, &ref));
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *meta;
    CHECK_OK(evlm_json_load(path, &meta));
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return test_done();
    CHECK(evlm_model_has_vision(m));
    const int V = evlm_model_n_vocab(m), N = 31;
    const char *text = cJSON_GetObjectItem(meta, "prompt")->valuestring;
    evlm_image_input img = {.path = png};
    evlm_prompt *p;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, 1, &p));
    if (!p) return test_done();
    size_t n;
    const int32_t *ids = evlm_prompt_ids(p, &n);
    const cJSON *want_ids = cJSON_GetObjectItem(meta, "input_ids");
    int same = (int)n == cJSON_GetArraySize(want_ids);
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == cJSON_GetArrayItem(want_ids, (int)i)->valueint;
    CHECKF(same, "expanded prompt ids differ from the reference (%zu ids)", n);
    CHECK(evlm_prompt_n_image_tokens(p) == 6);

    float *want = st_get(&ref, "logits", "F32", (size_t)N * V, 4);
    float *lg = malloc(sizeof(float) * (size_t)N * V);
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 64;
    evlm_context *c;
    CHECK_OK(evlm_context_new(m, &cp, &c));
    CHECK_OK(evlm_decode_prompt(c, p, lg, true));
    if (want && n == (size_t)N) {
        float tol = 1e-3f * fmaxf(1.0f, max_abs(want, (size_t)N * V));
        float d = max_diff(lg, want, (size_t)N * V);
        printf("logits from the PNG: max |ours - ref| = %.3g (tolerance %.3g)\n", (double)d,
               (double)tol);
        CHECK(d <= tol);
    }
    /* greedy with the cache, through evlm_generate, twice in a row on one context */
    for (int round = 0; round < 2; round++) {
        CHECK_OK(evlm_context_truncate(c, 0));
        evlm_gen_params gp = evlm_gen_default_params();
        gp.n_predict = 16;
        gp.ignore_eos = true;
        evlm_gen_result r;
        CHECK_OK(evlm_generate(c, p, &gp, NULL, NULL, &r));
        const cJSON *g = cJSON_GetObjectItem(meta, "greedy_ids");
        int ok = r.n_gen == cJSON_GetArraySize(g);
        for (int i = 0; ok && i < r.n_gen; i++) ok = r.ids[i] == cJSON_GetArrayItem(g, i)->valueint;
        CHECKF(ok, "round %d: greedy ids differ from the reference", round);
        evlm_gen_result_free(&r);
    }
    evlm_context_free(c);
    evlm_prompt_free(p);

    /* "<image>" is the generic marker; counts must agree */
    evlm_prompt *q = NULL;
    CHECK_OK(evlm_prompt_new(m, "<|im_start|>user\n<image>Describe the image.<|im_end|>\n", false,
                             &img, 1, &q));
    if (q) {
        evlm_prompt_ids(q, &n);
        CHECK(evlm_prompt_n_image_tokens(q) == 6 && n > 6);
        evlm_prompt_free(q);
    }
    CHECK(evlm_prompt_new(m, "no marker here", false, &img, 1, &q) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "image markers") != NULL);
    free(lg);
    free(want);
    evlm_model_free(m);
    cJSON_Delete(meta);
    st_close(&ref);
    return test_done();
}
