/* test_sampler.c - greedy, top-k/top-p/min-p, temperature statistics, seeding, repetition
 * penalty and parameter validation of evlm_sampler. */
#include "evlm.h"
#include "test.h"

#include <stdint.h>

static evlm_sampler *make(evlm_sampler_params p, int n_vocab) {
    evlm_sampler *s = NULL;
    CHECK_OK(evlm_sampler_new(&p, n_vocab, &s));
    return s;
}

static void test_defaults(void) {
    evlm_sampler_params p = evlm_sampler_default_params();
    CHECK(p.temp == 0.0f && p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0.0f);
    CHECK(p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.seed == 0);
}

static void test_greedy(void) {
    evlm_sampler *s = make(evlm_sampler_default_params(), 6);
    float l[6] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f, -5.0f};
    CHECK(evlm_sampler_sample(s, l, NULL, 0) == 1); /* tie 1/3: lowest id */
    float l2[6] = {-9, -8, -7, -6, -5, -4};
    CHECK(evlm_sampler_sample(s, l2, NULL, 0) == 5);
    float l3[6] = {NAN, -1, NAN, 2, 1, 0};
    CHECK(evlm_sampler_sample(s, l3, NULL, 0) == 3); /* NaN never wins */
    evlm_sampler_free(s);

    /* negative temperature is greedy too, and greedy ignores top-p/min-p */
    evlm_sampler_params p = evlm_sampler_default_params();
    p.temp = -1.0f;
    p.top_p = 0.1f;
    p.min_p = 0.9f;
    s = make(p, 6);
    float l4[6] = {0, 0, 5, 5, 1, 1};
    CHECK(evlm_sampler_sample(s, l4, NULL, 0) == 2);
    evlm_sampler_free(s);

    /* top_k = 1 with any temperature is the argmax */
    p = evlm_sampler_default_params();
    p.temp = 5.0f;
    p.top_k = 1;
    s = make(p, 6);
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        float l5[6] = {1, 2, 7, 7, 3, 0};
        if (evlm_sampler_sample(s, l5, NULL, 0) != 2) ok = 0;
    }
    CHECK(ok);
    evlm_sampler_free(s);
}

static void draw_seq(uint64_t seed, int32_t *out, int n) {
    evlm_sampler_params p = evlm_sampler_default_params();
    p.temp = 1.0f;
    p.seed = seed;
    evlm_sampler *s = make(p, 100);
    for (int i = 0; i < n; i++) {
        float l[100];
        for (int j = 0; j < 100; j++) l[j] = (float)(j % 7) * 0.1f;
        out[i] = evlm_sampler_sample(s, l, NULL, 0);
    }
    evlm_sampler_free(s);
}

static void test_seed(void) {
    int32_t a[64], b[64], c[64], d[64];
    draw_seq(42, a, 64);
    draw_seq(42, b, 64);
    draw_seq(43, c, 64);
    draw_seq(0, d, 64);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    int32_t e[64];
    draw_seq(0, e, 64); /* seed 0 = fixed default: reproducible */
    CHECK(memcmp(d, e, sizeof d) == 0);
}

static void test_frequencies(void) {
    const float logit[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    const float temps[2] = {1.0f, 0.7f};
    for (int t = 0; t < 2; t++) {
        evlm_sampler_params p = evlm_sampler_default_params();
        p.temp = temps[t];
        p.seed = 1234;
        evlm_sampler *s = make(p, 4);
        int cnt[4] = {0};
        const int N = 20000;
        for (int i = 0; i < N; i++) {
            float l[4];
            memcpy(l, logit, sizeof l);
            int32_t id = evlm_sampler_sample(s, l, NULL, 0);
            CHECK(id >= 0 && id < 4);
            if (id >= 0 && id < 4) cnt[id]++;
        }
        double z = 0, q[4];
        for (int j = 0; j < 4; j++) z += exp((double)logit[j] / (double)temps[t]);
        for (int j = 0; j < 4; j++) {
            q[j] = exp((double)logit[j] / (double)temps[t]) / z;
            double f = (double)cnt[j] / N;
            CHECKF(fabs(f - q[j]) < 0.01, "T=%g token %d: freq %.4f vs p %.4f", (double)temps[t], j,
                   f, q[j]);
        }
        evlm_sampler_free(s);
    }
}

/* Counts how often each of n ids is drawn over `draws` samples. */
static void histogram(evlm_sampler_params p, const float *logit, int n, int draws, int *cnt) {
    evlm_sampler *s = make(p, n);
    memset(cnt, 0, (size_t)n * sizeof *cnt);
    float *l = malloc((size_t)n * sizeof *l);
    for (int i = 0; i < draws; i++) {
        memcpy(l, logit, (size_t)n * sizeof *l);
        int32_t id = evlm_sampler_sample(s, l, NULL, 0);
        if (id >= 0 && id < n) cnt[id]++;
    }
    free(l);
    evlm_sampler_free(s);
}

static void test_filters(void) {
    /* probabilities 0.4 0.3 0.2 0.1 (logits = log p, temp 1) */
    float logit[4] = {logf(0.3f), logf(0.1f), logf(0.4f), logf(0.2f)};
    int cnt[4];
    evlm_sampler_params p = evlm_sampler_default_params();
    p.temp = 1.0f;
    p.seed = 7;

    p.top_p = 0.65f; /* 0.4 + 0.3 = 0.7 >= 0.65: ids 2 and 0 */
    histogram(p, logit, 4, 5000, cnt);
    CHECK(cnt[1] == 0 && cnt[3] == 0 && cnt[0] > 0 && cnt[2] > 0);
    CHECKF(fabs(cnt[2] / 5000.0 - 0.4 / 0.7) < 0.03, "renormalized top-p: %d", cnt[2]);

    p.top_p = 0.3f; /* the top token alone covers it */
    histogram(p, logit, 4, 2000, cnt);
    CHECK(cnt[2] == 2000);

    p.top_p = 1.0f;
    p.min_p = 0.6f; /* keep p >= 0.24: ids 2 (0.4) and 0 (0.3) */
    histogram(p, logit, 4, 5000, cnt);
    CHECK(cnt[1] == 0 && cnt[3] == 0 && cnt[0] > 0 && cnt[2] > 0);

    p.min_p = 0.0f;
    p.top_k = 3; /* drops id 1 */
    histogram(p, logit, 4, 5000, cnt);
    CHECK(cnt[1] == 0 && cnt[0] > 0 && cnt[2] > 0 && cnt[3] > 0);

    /* large vocabulary: top-p over a peaked distribution never picks the tail */
    enum { NV = 50000 };
    float *big = malloc(NV * sizeof *big);
    for (int i = 0; i < NV; i++) big[i] = -10.0f - (float)(i % 13);
    big[777] = 5.0f;
    big[31337] = 4.5f;
    big[4242] = 4.0f;
    int *bc = malloc(NV * sizeof *bc);
    p = evlm_sampler_default_params();
    p.temp = 1.0f;
    p.top_p = 0.9f;
    p.seed = 99;
    histogram(p, big, NV, 3000, bc);
    int tail = 3000 - bc[777] - bc[31337] - bc[4242];
    CHECK(tail == 0 && bc[777] > 0 && bc[31337] > 0);
    /* top-k + top-p + min-p together */
    p.top_k = 40;
    p.min_p = 0.5f; /* p(31337)/p(777) = e^-0.5 = 0.61 >= 0.5, e^-1 = 0.37 < 0.5 */
    histogram(p, big, NV, 3000, bc);
    CHECK(bc[777] + bc[31337] == 3000 && bc[4242] == 0);
    free(big);
    free(bc);
}

static void test_penalty(void) {
    evlm_sampler_params p = evlm_sampler_default_params();
    p.repeat_penalty = 2.0f;
    evlm_sampler *s = make(p, 5);
    float l[5] = {3.0f, 2.0f, 1.0f, -1.0f, -1.5f};
    int32_t hist[4] = {0, 0, 0, 7};                    /* 7 is out of range: ignored */
    CHECK(evlm_sampler_sample(s, l, hist, 4) == 1);    /* 3 / 2 = 1.5 < 2 */
    CHECK(l[0] == 1.5f && l[1] == 2.0f);               /* divided once, not three times */
    float l2[5] = {-1.0f, -1.2f, -3.0f, -4.0f, -5.0f}; /* negative: multiplied */
    int32_t h2[1] = {0};
    CHECK(evlm_sampler_sample(s, l2, h2, 1) == 1 && l2[0] == -2.0f);
    evlm_sampler_free(s);

    /* window: only the last repeat_last_n ids count */
    p.repeat_last_n = 2;
    s = make(p, 5);
    float l3[5] = {3.0f, 2.0f, 1.0f, 0, 0};
    int32_t h3[3] = {0, 4, 4};
    CHECK(evlm_sampler_sample(s, l3, h3, 3) == 0);
    evlm_sampler_free(s);
    p.repeat_last_n = 0; /* off */
    s = make(p, 5);
    float l4[5] = {3.0f, 2.0f, 1.0f, 0, 0};
    CHECK(evlm_sampler_sample(s, l4, hist, 4) == 0 && l4[0] == 3.0f);
    evlm_sampler_free(s);
}

static void test_invalid(void) {
    evlm_sampler *s = (evlm_sampler *)&s; /* must be reset to NULL on failure */
    evlm_sampler_params p = evlm_sampler_default_params();
    CHECK(evlm_sampler_new(&p, 0, &s) == EVLM_ERR_ARG && s == NULL);
    CHECK(evlm_sampler_new(&p, -3, &s) == EVLM_ERR_ARG);
    CHECK(evlm_sampler_new(&p, (1 << 24) + 1, &s) == EVLM_ERR_ARG);
    p.top_p = 0.0f;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "top_p") != NULL);
    p.top_p = 1.5f;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    p.top_p = NAN;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    p = evlm_sampler_default_params();
    p.top_k = -1;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    p = evlm_sampler_default_params();
    p.min_p = 1.5f;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    p = evlm_sampler_default_params();
    p.repeat_penalty = 0.0f;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    p = evlm_sampler_default_params();
    p.temp = NAN;
    CHECK(evlm_sampler_new(&p, 10, &s) == EVLM_ERR_ARG);
    p = evlm_sampler_default_params();
    p.temp = -0.5f; /* accepted: greedy */
    CHECK_OK(evlm_sampler_new(&p, 10, &s));
    evlm_sampler_free(s);
    CHECK_OK(evlm_sampler_new(NULL, 10, &s)); /* NULL params = defaults */
    CHECK(evlm_sampler_sample(s, NULL, NULL, 0) == -1);
    evlm_sampler_free(s);
    evlm_sampler_free(NULL);
}

int main(void) {
    test_defaults();
    test_greedy();
    test_seed();
    test_frequencies();
    test_filters();
    test_penalty();
    test_invalid();
    return test_done();
}
