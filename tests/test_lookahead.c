/*
 * test_lookahead.c - token trees and lookahead / prompt-lookup decoding.
 *
 * 1. evlm_decode_tree: the logits of every node of a branching tree equal, bit for bit, those of
 *    decoding that node's path one token at a time (the property that makes verification exact),
 *    and evlm_context_keep leaves a cache that continues exactly like the plain one.
 * 2. evlm_generate with lookahead and/or prompt lookup gives the ids of plain greedy decoding on
 *    the llama-tiny fixture, the converted llama2.c aidreams260K and stories260K models and the
 *    bundled scene VLM,
 *    for several prompts, lengths and W,N,G settings, and takes fewer passes on the real models.
 * 3. Sampling with lookahead is refused with a message; bad trees are errors.
 * 4. Greedy ids without logits (evlm_decode_greedy / evlm_decode_tree_greedy, the int8 greedy
 *    head of the scene VLM) are the argmax of the logits, token by token and in trees.
 */
#include "generate/lookahead.h"
#include "io/llama2c.h"
#include "test.h"

#include <unistd.h>

static float *alloc_logits(const evlm_model *m, int rows) {
    return malloc(sizeof(float) * (size_t)evlm_model_n_vocab(m) * (size_t)rows);
}

static evlm_context *new_ctx(evlm_model *m, int n_ctx) {
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = n_ctx;
    evlm_context *c = NULL;
    CHECK_OK(evlm_context_new(m, &cp, &c));
    return c;
}

/* Tree: root r0 = a; children b (row 1), c (row 2); b's child d (row 3); c's child e (row 4). */
static void test_tree(evlm_model *m) {
    const int V = evlm_model_n_vocab(m);
    const int32_t prompt[] = {1, 5, 9, 13, 17, 21};
    const int32_t ids[5] = {30, 31, 32, 33, 34};
    const int32_t depth[5] = {0, 1, 1, 2, 2};
    const int parent[5] = {-1, 0, 0, 1, 2};
    uint8_t mask[25] = {0};
    for (int r = 0; r < 5; r++)
        for (int a = r; a >= 0; a = parent[a]) mask[r * 5 + a] = 1;
    const int rows[5] = {0, 1, 2, 3, 4};
    float *tree = alloc_logits(m, 5), *seq = alloc_logits(m, 3);
    evlm_context *c = new_ctx(m, 64);
    CHECK_OK(evlm_decode(c, prompt, 6, NULL, false));
    /* greedy ids of the same tree (evlm_decode_tree_greedy): the argmax of each row's logits */
    int32_t top[5];
    CHECK_OK(evlm_decode_tree_greedy(c, ids, depth, mask, 5, rows, 5, top));
    CHECK_OK(evlm_context_truncate(c, 6));
    CHECK_OK(evlm_decode_tree(c, ids, depth, mask, 5, rows, 5, tree));
    CHECK(evlm_context_n_past(c) == 11);
    for (int r = 0; r < 5; r++)
        CHECKF(top[r] == evlm__argmax(tree + (size_t)r * V, V),
               "tree row %d: greedy id %d, argmax of its logits %d", r, top[r],
               evlm__argmax(tree + (size_t)r * V, V));
    /* each path, one token at a time */
    const int paths[2][3] = {{0, 1, 3}, {0, 2, 4}};
    for (int p = 0; p < 2; p++) {
        evlm_context *s = new_ctx(m, 64);
        CHECK_OK(evlm_decode(s, prompt, 6, NULL, false));
        for (int k = 0; k < 3; k++)
            CHECK_OK(evlm_decode(s, &ids[paths[p][k]], 1, seq + (size_t)k * V, false));
        for (int k = 0; k < 3; k++)
            CHECKF(!memcmp(seq + (size_t)k * V, tree + (size_t)paths[p][k] * V,
                           sizeof(float) * (size_t)V),
                   "path %d node %d: tree logits differ from sequential decoding", p, paths[p][k]);
        evlm_context_free(s);
    }
    /* keep the second path (rows 0, 2, 4), then continue: same as the sequential cache */
    const int keep[3] = {6, 8, 10};
    CHECK_OK(evlm_context_keep(c, 6, keep, 3));
    CHECK(evlm_context_n_past(c) == 9);
    evlm_context *s = new_ctx(m, 64);
    CHECK_OK(evlm_decode(s, prompt, 6, NULL, false));
    const int32_t path[3] = {30, 32, 34};
    CHECK_OK(evlm_decode(s, path, 3, NULL, false));
    int32_t next = 40;
    CHECK_OK(evlm_decode(s, &next, 1, seq, false));
    CHECK_OK(evlm_decode(c, &next, 1, tree, false));
    CHECK(!memcmp(seq, tree, sizeof(float) * (size_t)V));
    /* malformed trees */
    uint8_t bad[25];
    memcpy(bad, mask, sizeof bad);
    bad[1 * 5 + 3] = 1; /* sees a later row */
    CHECK(evlm_decode_tree(c, ids, depth, bad, 5, rows, 5, tree) == EVLM_ERR_ARG);
    bad[1 * 5 + 3] = 0;
    bad[2 * 5 + 2] = 0; /* does not see itself */
    CHECK(evlm_decode_tree(c, ids, depth, bad, 5, rows, 5, tree) == EVLM_ERR_ARG);
    const int back[2] = {3, 1};
    CHECK(evlm_decode_tree(c, ids, depth, mask, 5, back, 2, tree) == EVLM_ERR_ARG);
    CHECK(evlm_context_n_past(c) == 10);
    const int wrong[2] = {12, 11};
    CHECK(evlm_context_keep(c, 9, wrong, 2) == EVLM_ERR_ARG);
    evlm_context_free(s);
    evlm_context_free(c);
    free(tree);
    free(seq);
}

typedef struct {
    int32_t *ids;
    int n, steps;
} gen_out;

static gen_out generate_with(evlm_model *m, const char *text, const char *image, int n_predict,
                             evlm_lookahead_params la, evlm_ngram_cache *cache) {
    gen_out o = {0};
    evlm_image_input img = {.path = image};
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, image ? 1 : 0, &p));
    if (!p) return o;
    size_t n;
    evlm_prompt_ids(p, &n);
    evlm_context *c = new_ctx(m, (int)n + n_predict + 160);
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = n_predict;
    gp.lookahead = la;
    gp.ngrams = cache;
    evlm_gen_result r;
    CHECK_OK(evlm_generate(c, p, &gp, NULL, NULL, &r));
    o.ids = r.ids;
    o.n = r.n_gen;
    o.steps = r.n_steps;
    r.ids = NULL;
    evlm_gen_result_free(&r);
    evlm_context_free(c);
    evlm_prompt_free(p);
    return o;
}

static gen_out generate(evlm_model *m, const char *text, const char *image, int n_predict,
                        evlm_lookahead_params la) {
    return generate_with(m, text, image, n_predict, la, NULL);
}

/* Plain greedy decoding through the full logits (evlm_decode + argmax), step by step, against
 * the ids of evlm_generate (which asks for greedy ids only: the int8 greedy head when the model
 * has one). */
static void check_greedy_head(evlm_model *m, const char *name, const char *text, const char *image,
                              int n_predict) {
    const int V = evlm_model_n_vocab(m);
    gen_out ref = generate(m, text, image, n_predict, (evlm_lookahead_params){0});
    evlm_image_input img = {.path = image};
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, image ? 1 : 0, &p));
    if (!p || !ref.ids) return;
    size_t n;
    evlm_prompt_ids(p, &n);
    evlm_context *c = new_ctx(m, (int)n + n_predict + 8);
    float *lg = alloc_logits(m, 1);
    CHECK_OK(evlm_decode_prompt(c, p, lg, false));
    int same = 0;
    for (int i = 0; i < ref.n; i++) {
        int32_t id = evlm__argmax(lg, V);
        if (id != ref.ids[i]) break;
        same++;
        CHECK_OK(evlm_decode(c, &id, 1, lg, false));
    }
    CHECKF(same == ref.n && ref.n > 4,
           "%s: greedy ids and the argmax of the logits part at token %d of %d", name, same, ref.n);
    free(lg);
    free(ref.ids);
    evlm_context_free(c);
    evlm_prompt_free(p);
}

/* One n-gram cache kept across answers: still the plain ids, and the repeated answer takes
 * fewer passes than the first time. */
static void check_cache(evlm_model *m, const char *name, const char *const *prompts, int n_prompts,
                        const char *image, int n_predict) {
    evlm_ngram_cache *cache;
    CHECK_OK(evlm_ngram_cache_new(m, &cache));
    const evlm_lookahead_params la = {0, 6, 3, 0};
    int first_steps = 0, again_steps = 0;
    for (int round = 0; round < 2; round++)
        for (int p = 0; p < n_prompts; p++) {
            gen_out ref = generate(m, prompts[p], image, n_predict, (evlm_lookahead_params){0});
            gen_out got = generate_with(m, prompts[p], image, n_predict, la, cache);
            CHECKF(ref.n == got.n && ref.ids && got.ids &&
                       !memcmp(ref.ids, got.ids, sizeof(int32_t) * (size_t)ref.n),
                   "%s: prompt %d round %d with a kept n-gram cache: ids differ from greedy", name,
                   p, round);
            *(round ? &again_steps : &first_steps) += got.steps;
            free(ref.ids);
            free(got.ids);
        }
    printf("%s: passes with a kept n-gram cache: first round %d, second %d\n", name, first_steps,
           again_steps);
    CHECK(again_steps < first_steps);
    evlm_ngram_cache_free(cache);
}

/* Every setting gives the plain ids; returns plain passes / fewest lookahead passes. */
static double check_same(evlm_model *m, const char *name, const char *const *prompts, int n_prompts,
                         const char *image, const int *lens, int n_lens) {
    static const evlm_lookahead_params settings[] = {
        {2, 2, 2, 0}, {3, 3, 3, 0}, {5, 4, 5, 0}, {7, 5, 7, 0}, {0, 0, 0, 6},
        {4, 4, 4, 8}, {1, 3, 0, 3}, {0, 5, 3, 0}, /* drafts from the pool of the answer's own
                                                     n-grams only */
    };
    const int n_settings = (int)(sizeof settings / sizeof *settings);
    double plain_steps = 0, best_steps = 1e30;
    for (int s = 0; s < n_settings; s++) {
        double steps = 0;
        for (int p = 0; p < n_prompts; p++)
            for (int l = 0; l < n_lens; l++) {
                gen_out ref = generate(m, prompts[p], image, lens[l], (evlm_lookahead_params){0});
                gen_out got = generate(m, prompts[p], image, lens[l], settings[s]);
                CHECKF(ref.n == got.n && ref.ids && got.ids &&
                           !memcmp(ref.ids, got.ids, sizeof(int32_t) * (size_t)ref.n),
                       "%s: prompt %d, n %d, lookahead %d,%d,%d pl %d: ids differ from greedy",
                       name, p, lens[l], settings[s].window, settings[s].ngram, settings[s].guesses,
                       settings[s].prompt_lookup);
                if (s == 0) plain_steps += ref.steps;
                steps += got.steps;
                free(ref.ids);
                free(got.ids);
            }
        if (steps < best_steps) best_steps = steps;
    }
    double ratio = plain_steps / best_steps;
    printf("%s: plain passes / fewest lookahead passes = %.2f\n", name, ratio);
    return ratio;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return test_done();
    test_tree(m);

    const char *tiny_prompts[] = {"Hello world", "The license",
                                  "<|im_start|>user\nWhat is this?<|im_end|>\n"};
    const int tiny_lens[] = {1, 7, 40};
    check_same(m, "llama-tiny", tiny_prompts, 3, NULL, tiny_lens, 3);

    /* sampling is refused */
    evlm_prompt *p;
    CHECK_OK(evlm_prompt_new(m, "Hello", false, NULL, 0, &p));
    evlm_context *c = new_ctx(m, 64);
    evlm_gen_params gp = evlm_gen_default_params();
    gp.sampling.temp = 0.7f;
    gp.lookahead = (evlm_lookahead_params){3, 3, 3, 0};
    evlm_gen_result r;
    CHECK(evlm_generate(c, p, &gp, NULL, NULL, &r) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "greedy") != NULL);
    evlm_context_free(c);
    evlm_prompt_free(p);
    evlm_model_free(m);

    /* the real llama2.c model, converted */
    char tmp[] = "/tmp/evlm_la_XXXXXX", out[4200], mb[4200], tb[4200];
    if (mkdtemp(tmp)) {
        snprintf(mb, sizeof mb, "%s/reference/llama2c/aidreams260K.bin", shared);
        snprintf(tb, sizeof tb, "%s/reference/llama2c/tok512.bin", shared);
        snprintf(out, sizeof out, "%s/aid", tmp);
        CHECK_OK(evlm_llama2c_convert(mb, tb, out));
        if (evlm_model_load(out, NULL, &m) == EVLM_OK) {
            const char *aid_prompts[] = {"Once upon a time", "I love", "The cat"};
            const int aid_lens[] = {12, 120};
            double ratio = check_same(m, "aidreams260K", aid_prompts, 3, NULL, aid_lens, 2);
            check_cache(m, "aidreams260K", aid_prompts, 3, NULL, 60);
            CHECKF(ratio > 1.3, "aidreams260K: lookahead saves too few passes (%.2f)", ratio);
            evlm_model_free(m);
        }
        /* stories260K (TinyStories) with aidreams' tokenizer: the text is not its own, the ids are
         */
        snprintf(mb, sizeof mb, "%s/reference/llama2c/stories260K.bin", shared);
        snprintf(out, sizeof out, "%s/stories", tmp);
        CHECK_OK(evlm_llama2c_convert(mb, tb, out));
        if (evlm_model_load(out, NULL, &m) == EVLM_OK) {
            const char *st_prompts[] = {"Once upon a time", "Lily"};
            const int st_lens[] = {10, 150};
            double ratio = check_same(m, "stories260K", st_prompts, 2, NULL, st_lens, 2);
            CHECKF(ratio > 1.3, "stories260K: lookahead saves too few passes (%.2f)", ratio);
            evlm_model_free(m);
        }
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        CHECK(system(cmd) == 0);
    }

    /* the VLM fixtures with their images: SmolVLM (image tokens injected in the prompt) and
     * Qwen2-VL (M-RoPE: the tree's text positions continue after the image's 3-D ones) */
    static const struct {
        const char *dir, *prompt;
    } vlm_fixtures[] = {
        {"smolvlm-tiny",
         "<|im_start|>User:<image>What is the plate number?<end_of_utterance>\nAssistant:"},
        {"qwen2vl-tiny", "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe "
                         "the image.<|im_end|>\n"
                         "<|im_start|>assistant\n"},
    };
    for (size_t f = 0; f < sizeof vlm_fixtures / sizeof *vlm_fixtures; f++) {
        char fdir[4200], fimg[4300];
        snprintf(fdir, sizeof fdir, "%s/fixtures/%s", shared, vlm_fixtures[f].dir);
        snprintf(fimg, sizeof fimg, "%s/ref_image.png", fdir);
        CHECK_OK(evlm_model_load(fdir, NULL, &m));
        if (!m) continue;
        const char *q[] = {vlm_fixtures[f].prompt};
        const int lens[] = {3, 30};
        check_same(m, vlm_fixtures[f].dir, q, 1, fimg, lens, 2);
        evlm_model_free(m);
    }

    /* the bundled scene VLM: image prompts */
    const char *src = getenv("EVLM_SRC");
    char sdir[4096], img[4200];
    snprintf(sdir, sizeof sdir, "%s/models/scenes-vlm", src ? src : ".");
    snprintf(img, sizeof img, "%s/samples/car_030.png", sdir);
    if (evlm_model_load(sdir, NULL, &m) == EVLM_OK) {
        const char *q[] = {
            "<|im_start|>User:<image>Describe the image.<end_of_utterance>\nAssistant:",
            "<|im_start|>User:<image>What is the license plate?<end_of_utterance>\nAssistant:",
        };
        const int lens[] = {24};
        CHECKF(evlm_model_greedy_head_bytes(m) == 49280 / 16 * 16 * 8 * 34,
               "scenes-vlm: greedy head of %zu bytes (an int8 copy of the 49280 x 256 bf16 head "
               "expected)",
               evlm_model_greedy_head_bytes(m));
        test_tree(m);
        for (int i = 0; i < 2; i++) check_greedy_head(m, "scenes-vlm", q[i], img, 40);
        check_same(m, "scenes-vlm", q, 2, img, lens, 1);
        check_cache(m, "scenes-vlm", q, 2, img, 24);
        evlm_model_free(m);
        /* --head float: no copy */
        evlm_model_params mp = evlm_model_default_params();
        mp.float_head = true;
        CHECK_OK(evlm_model_load(sdir, &mp, &m));
        if (m) CHECK(evlm_model_greedy_head_bytes(m) == 0);
        evlm_model_free(m);
    } else {
        printf("scenes-vlm not found at %s: skipped\n", sdir);
    }
    return test_done();
}
