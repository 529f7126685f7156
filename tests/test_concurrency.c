/*
 * test_concurrency.c - the thread-safety contract at the top of evlm.h, on the scene VLM of
 * ../shared/models/scenes-vlm: one loaded model, several contexts decoding from several threads
 * at once, each with its own pool and sampler, give the ids of a sequential run (and of a run
 * with another thread count). The threads prepare their prompts at once too: chat template,
 * tokenization, image decoding and encoding (the encoder takes turns inside the model). Jobs
 * cover plain greedy decoding (the int8 greedy head), lookahead with prompt lookup, and seeded
 * sampling. Also: two threads tokenizing and detokenizing at once, and the last error kept per
 * thread. Meant to run under ThreadSanitizer as well (make test-tsan).
 *
 * Not here: one context from two threads (the contract forbids it), speed.
 */
#include "evlm.h"
#include "test.h"

#include <pthread.h>

#define N_JOBS    4
#define N_PREDICT 24

typedef struct {
    const char *question;
    const char *image; /* file in datasets/scenes-dev, or NULL: a text-only prompt */
    bool lookahead;
    bool sample;
} job_spec;

static const job_spec k_jobs[N_JOBS] = {
    {"Describe the image.", "car_030.png", false, false},
    {"Is the driver drowsy?", "fatigue_000.png", true, false},
    {"What color is the car?", NULL, false, true},
    {"What emotion does the child show?", "child_060.png", false, false},
};

/* One job: everything a thread touches, so the threads share only the model. */
typedef struct {
    evlm_model *m;
    const char *dataset;
    const job_spec *spec;
    int n_threads; /* of the context */
    pthread_barrier_t *start;
    evlm_status st;
    char err[512];
    int32_t ids[N_PREDICT];
    int n_ids, n_image_tokens;
} job;

static evlm_status run_job(job *j) {
    const job_spec *s = j->spec;
    char *text = NULL, path[4200];
    evlm_prompt *p = NULL;
    evlm_context *c = NULL;
    evlm_gen_result r = {0};
    evlm_status st = evlm_chat_prompt(j->m, s->question, s->image ? 1 : 0, &text);
    if (st == EVLM_OK) {
        snprintf(path, sizeof path, "%s/%s", j->dataset, s->image ? s->image : "");
        evlm_image_input img = {.path = path};
        st = evlm_prompt_new(j->m, text, false, s->image ? &img : NULL, s->image ? 1 : 0, &p);
    }
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = j->n_threads;
    if (st == EVLM_OK) st = evlm_context_new(j->m, &cp, &c);
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = N_PREDICT;
    gp.ignore_eos = true; /* the same amount of work in every job */
    if (s->lookahead)
        gp.lookahead =
            (evlm_lookahead_params){.window = 4, .ngram = 3, .guesses = 4, .prompt_lookup = 4};
    if (s->sample) {
        gp.sampling.temp = 0.8f;
        gp.sampling.top_k = 40;
        gp.sampling.seed = 1234;
    }
    if (st == EVLM_OK) st = evlm_generate(c, p, &gp, NULL, NULL, &r);
    if (st == EVLM_OK) {
        j->n_ids = r.n_gen < N_PREDICT ? r.n_gen : N_PREDICT;
        memcpy(j->ids, r.ids, sizeof(int32_t) * (size_t)j->n_ids);
        j->n_image_tokens = evlm_prompt_n_image_tokens(p);
    }
    evlm_gen_result_free(&r);
    evlm_context_free(c);
    evlm_prompt_free(p);
    free(text);
    return st;
}

static void *job_thread(void *arg) {
    job *j = arg;
    if (j->start) pthread_barrier_wait(j->start);
    j->st = run_job(j);
    snprintf(j->err, sizeof j->err, "%s", evlm_last_error());
    return NULL;
}

/* The jobs one after another (reference), or all at once on their own threads. */
static void run_jobs(job *jobs, bool concurrent) {
    if (!concurrent) {
        for (int i = 0; i < N_JOBS; i++) job_thread(&jobs[i]);
        return;
    }
    pthread_t th[N_JOBS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_JOBS);
    for (int i = 0; i < N_JOBS; i++) {
        jobs[i].start = &start;
        CHECK(pthread_create(&th[i], NULL, job_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < N_JOBS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
}

static void test_decode(evlm_model *m, const char *dataset) {
    job ref[N_JOBS], par[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        ref[i] = (job){.m = m, .dataset = dataset, .spec = &k_jobs[i], .n_threads = 1};
        par[i] = (job){.m = m, .dataset = dataset, .spec = &k_jobs[i], .n_threads = 2};
    }
    run_jobs(ref, false);
    run_jobs(par, true);
    for (int i = 0; i < N_JOBS; i++) {
        CHECKF(ref[i].st == EVLM_OK && par[i].st == EVLM_OK, "job %d: %s / %s", i, ref[i].err,
               par[i].err);
        CHECKF(ref[i].n_ids == N_PREDICT, "job %d: %d ids", i, ref[i].n_ids);
        CHECKF(ref[i].n_image_tokens == (k_jobs[i].image ? 16 : 0), "job %d: %d image tokens", i,
               ref[i].n_image_tokens);
        CHECK(par[i].n_image_tokens == ref[i].n_image_tokens);
        int diff = -1;
        for (int k = 0; k < ref[i].n_ids && diff < 0; k++)
            if (ref[i].ids[k] != par[i].ids[k]) diff = k;
        CHECKF(par[i].n_ids == ref[i].n_ids && diff < 0,
               "job %d (\"%s\"): concurrent ids differ from the sequential ones at %d", i,
               k_jobs[i].question, diff);
    }
    printf("%d jobs decoded at once: the ids of the sequential run\n", N_JOBS);
}

/* ---- text on a shared model ---------------------------------------------------------------- */

typedef struct {
    const evlm_model *m;
    const char *text;
    int reps;
    pthread_barrier_t *start;
    bool same; /* every round gave the first round's ids and the text back */
    size_t n_ids;
} tok_job;

static void *tok_thread(void *arg) {
    tok_job *t = arg;
    pthread_barrier_wait(t->start);
    int32_t *first = NULL;
    t->same = true;
    for (int r = 0; r < t->reps && t->same; r++) {
        int32_t *ids = NULL;
        size_t n = 0;
        char *back = NULL;
        if (evlm_tokenize(t->m, t->text, strlen(t->text), true, false, &ids, &n) != EVLM_OK ||
            evlm_detokenize(t->m, ids, n, false, &back) != EVLM_OK || strcmp(back, t->text) != 0)
            t->same = false;
        if (r == 0) {
            first = ids;
            t->n_ids = n;
            ids = NULL;
        } else if (t->same) {
            t->same = n == t->n_ids && memcmp(ids, first, sizeof(int32_t) * n) == 0;
        }
        free(ids);
        free(back);
    }
    free(first);
    return NULL;
}

static void test_tokenize(evlm_model *m) {
    static const char *texts[2] = {
        "<|im_start|>User: A red car with the plate AB 1234 stops; the driver yawns twice.",
        "Zwei Kinder lachen, ein drittes weint: \xc3\xa9t\xc3\xa9, caf\xc3\xa9, 12345 km/h!"
        "<end_of_utterance>",
    };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    tok_job t[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        t[i] = (tok_job){.m = m, .text = texts[i], .reps = 20, .start = &start};
        CHECK(pthread_create(&th[i], NULL, tok_thread, &t[i]) == 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++)
        CHECKF(t[i].same && t[i].n_ids > 5, "text %d: ids or text changed", i);
    /* and the ids of a tokenization on this thread alone */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(evlm_tokenize(m, texts[0], strlen(texts[0]), true, false, &ids, &n));
    CHECK(n == t[0].n_ids);
    free(ids);
}

/* ---- the last error is per thread ---------------------------------------------------------- */

static void *error_thread(void *arg) {
    const char **seen = arg;
    *seen = evlm_last_error()[0] ? "set" : "";
    return NULL;
}

static void test_last_error(evlm_model *m) {
    evlm_context *c = NULL;
    CHECK_OK(evlm_context_new(m, NULL, &c));
    if (!c) return;
    CHECK(evlm_context_truncate(c, 5) == EVLM_ERR_ARG && evlm_last_error()[0]);
    const char *seen = NULL;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, error_thread, (void *)&seen) == 0);
    pthread_join(th, NULL);
    CHECKF(seen && !seen[0], "another thread sees this thread's last error");
    CHECK(evlm_last_error()[0]);
    evlm_context_free(c);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], dataset[4096];
    snprintf(dir, sizeof dir, "%s/models/scenes-vlm", shared);
    snprintf(dataset, sizeof dataset, "%s/datasets/scenes-dev", shared);
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 2;                    /* the vision encoder's workers */
    mp.image_splitting = EVLM_SPLIT_OFF; /* one tile per image: quick under qemu and sanitizers */
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(dir, &mp, &m));
    if (!m) return test_done();
    test_decode(m, dataset);
    test_tokenize(m);
    test_last_error(m);
    evlm_model_free(m);
    return test_done();
}
