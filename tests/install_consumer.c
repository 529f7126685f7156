/*
 * install_consumer.c - an application built against an installed evlm (tests/cli_install.sh
 * compiles it with `pkg-config --cflags --libs evlm`), as an in-car program would use it: one
 * model shared by two threads, each with its own context, asking about a camera image at once.
 *
 * usage: install_consumer MODEL_DIR [IMAGE] [--serial]
 * Answers greedily with 16 tokens (end of generation ignored) once on the main thread, then on
 * two threads at the same time (--serial: one after the other); exit 0 when all three gave the
 * same ids. Uses evlm.h alone: no internal header is installed, so none can slip in.
 * Not here: checks of the answers themselves (tests/cli_smolvlm.sh), timings.
 */
#include <evlm.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_GEN 16

typedef struct {
    evlm_context *ctx;
    const char *image;
    int32_t ids[N_GEN];
    int n;
    evlm_status st;
    char err[512];
} job;

/* One answer in the job's own context: chat prompt (with the image when given), greedy. */
static void *answer(void *arg) {
    job *j = arg;
    evlm_model *m = evlm_context_model(j->ctx);
    evlm_image_input img = {.path = j->image};
    int n_img = j->image ? 1 : 0;
    char *text = NULL;
    evlm_prompt *p = NULL;
    evlm_gen_result r = {0};
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = N_GEN;
    gp.sampling.temp = 0;
    gp.ignore_eos = true;
    j->st = evlm_chat_prompt(m, n_img ? "Describe the image." : "Describe a car.", n_img, &text);
    if (j->st == EVLM_OK) j->st = evlm_prompt_new(m, text, false, &img, n_img, &p);
    if (j->st == EVLM_OK) j->st = evlm_context_truncate(j->ctx, 0);
    if (j->st == EVLM_OK) j->st = evlm_generate(j->ctx, p, &gp, NULL, NULL, &r);
    if (j->st == EVLM_OK) {
        j->n = r.n_gen < N_GEN ? r.n_gen : N_GEN;
        memcpy(j->ids, r.ids, sizeof(int32_t) * (size_t)j->n);
        printf("answer: %s\n", r.text);
    } else {
        snprintf(j->err, sizeof j->err, "%s", evlm_last_error());
    }
    evlm_gen_result_free(&r);
    evlm_prompt_free(p);
    free(text);
    return NULL;
}

static int same(const job *a, const job *b) {
    return a->n == b->n && !memcmp(a->ids, b->ids, sizeof(int32_t) * (size_t)a->n);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: install_consumer MODEL_DIR [IMAGE] [--serial]\n");
        return 2;
    }
    const char *image = argc > 2 && strcmp(argv[2], "--serial") ? argv[2] : NULL;
    int serial = !strcmp(argv[argc - 1], "--serial");
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 2;
    evlm_model *m;
    if (evlm_model_load(argv[1], &mp, &m) != EVLM_OK) {
        fprintf(stderr, "load: %s\n", evlm_last_error());
        return 1;
    }
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 512;
    job ref = {.image = image}, a = {.image = image}, b = {.image = image};
    if (evlm_context_new(m, &cp, &a.ctx) != EVLM_OK ||
        evlm_context_new(m, &cp, &b.ctx) != EVLM_OK) {
        fprintf(stderr, "context: %s\n", evlm_last_error());
        return 1;
    }
    ref.ctx = a.ctx;
    answer(&ref); /* the sequential reference */

    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, answer, &a) != 0) return 1;
    if (serial) pthread_join(ta, NULL);
    if (pthread_create(&tb, NULL, answer, &b) != 0) return 1;
    if (!serial) pthread_join(ta, NULL);
    pthread_join(tb, NULL);

    int rc = 0;
    const job *jobs[3] = {&ref, &a, &b};
    for (int i = 0; i < 3; i++)
        if (jobs[i]->st != EVLM_OK) {
            fprintf(stderr, "answer %d: %s\n", i, jobs[i]->err);
            rc = 1;
        }
    if (!rc && (ref.n != N_GEN || !same(&ref, &a) || !same(&ref, &b))) {
        fprintf(stderr, "the %s answers differ from the sequential one (%d, %d, %d ids)\n",
                serial ? "one-after-the-other" : "concurrent", ref.n, a.n, b.n);
        rc = 1;
    }
    evlm_context_free(a.ctx);
    evlm_context_free(b.ctx);
    evlm_model_free(m);
    if (!rc) printf("ok: %d ids, the same from both threads and from the main thread\n", N_GEN);
    return rc;
}
