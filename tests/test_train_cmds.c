/*
 * test_train_cmds.c - the loop behind `evlm qat` (evlm_finetune with a QAT description, the float
 * model as distillation teacher, learned scales) on ../shared/fixtures/llama-tiny (skipped
 * without it): the GGUF it writes, decoded by the runtime (f32 activations) on the fixture's
 * prompts, gives the logits of the training graph's fake-quantized forward rebuilt from the run's
 * checkpoint (weights and learned scales, 16-bit tensors rounded as the export stores them)
 * within 1e-4 x the logits' range (test_train_qat's tolerance); the same forward from the
 * untrained weights does not (the training moved them: the check can fail). Also: the loop's
 * refusals (unknown QAT type, a GGUF as QAT input) name the argument.
 * Not here: the commands' options and resumes (tests/cli_distill.sh, tests/cli_qat.sh).
 */
#include "core/json.h"
#include "core/status.h"
#include "evlm_train.h"
#include "model/model.h"
#include "test.h"
#include "train/checkpoint.h"
#include "train/qat.h"
#include "train/tmodel.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tmp[] = "/tmp/evlm_cmds_XXXXXX";

static evlm_model *load(const char *path, bool keep_layout) {
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 2;
    mp.keep_layout = keep_layout;
    mp.keep_dense = keep_layout;
    mp.f32_act = true;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(path, &mp, &m));
    return m;
}

/* max |runtime - training| over every position of the fixture's prompts, and the logits' range */
static void compare(evlm_tmodel *tm, evlm_model *rt, const char *dir, double *diff, double *range) {
    char path[4400];
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *root = NULL;
    CHECK_OK(evlm_json_load(path, &root));
    const int V = evlm__model_config(rt)->vocab_size;
    *diff = 0;
    *range = 0;
    const cJSON *pr;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(root, "prompts")) {
        int32_t ids[256];
        uint8_t tg[256];
        int n = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "input_ids")) ids[n++] = x->valueint;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "greedy_ids")) ids[n++] = x->valueint;
        memset(tg, 1, (size_t)n);
        evlm_tseq s = {.ids = ids, .n = n, .target = tg};
        evlm_tbatch b = {&s, 1};
        float *zt = malloc(sizeof(float) * (size_t)n * V), *zr = malloc(sizeof(float) * n * V);
        int nt = 0;
        CHECK_OK(evlm_tmodel_logits(tm, &b, zt, &nt));
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = 512;
        evlm_context *ctx = NULL;
        CHECK_OK(evlm_context_new(rt, &cp, &ctx));
        if (ctx) CHECK_OK(evlm_decode(ctx, ids, n, zr, true));
        CHECK(nt == n - 1);
        float lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; ctx && k < (size_t)nt * V; k++) {
            double d = fabs((double)zt[k] - (double)zr[k]);
            *diff = d > *diff || d != d ? d : *diff;
            lo = zt[k] < lo ? zt[k] : lo;
            hi = zt[k] > hi ? zt[k] : hi;
        }
        const double span = (double)hi - (double)lo;
        *range = span > *range ? span : *range;
        evlm_context_free(ctx);
        free(zt);
        free(zr);
    }
    cJSON_Delete(root);
}

static void test_qat_run(const char *dir) {
    char text[600], work[600], out[600], ckpt[700];
    snprintf(text, sizeof text, "%s/t.txt", g_tmp);
    snprintf(work, sizeof work, "%s/q.gguf.train", g_tmp);
    snprintf(out, sizeof out, "%s/q.gguf", g_tmp);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint", work);
    FILE *f = fopen(text, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("Once upon a time there was a little car.\nIt drove to the city.\n\nThe driver was "
          "tired and stopped near a tall tree.\n\nA bird sang on the roof of the house.\n",
          f);
    fclose(f);
    evlm_finetune_params p = evlm_finetune_default_params();
    evlm_finetune_qat q = {.type = "q4_0", .learn_scales = true, .out_gguf = out};
    evlm_finetune_distill d = {0}; /* the float model itself, kl */
    p.model = dir;
    p.text = text;
    p.out_dir = work;
    p.steps = 4;
    p.batch = 2;
    p.ctx = 16;
    p.lr = 1e-2;
    p.n_threads = 2;
    p.qat = &q;
    p.distill = &d;
    evlm_finetune_result r;
    CHECK_OK(evlm_finetune(&p, &r));
    CHECK(r.steps == 4 && isfinite(r.loss) && r.loss > 0);

    /* the training graph rebuilt from the checkpoint */
    evlm_model *m = load(dir, true), *rt = load(out, false);
    evlm_tmodel *tm = NULL, *t0 = NULL;
    evlm_tmodel_params tpar = {.n_threads = 2, .max_tokens = 256};
    if (m) CHECK_OK(evlm_tmodel_new(m, &tpar, &tm));
    if (m) CHECK_OK(evlm_tmodel_new(m, &tpar, &t0));
    if (!tm || !t0 || !rt) goto done;
    CHECK_OK(evlm_tmodel_set_qat(tm, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0, true));
    CHECK_OK(evlm_tmodel_set_qat(t0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0, true));
    evlm_tparams *sc = evlm_tmodel_qat_scales(tm);
    CHECK(sc != NULL);
    evlm_ckpt_state st;
    char *opts = NULL;
    CHECK_OK(evlm_ckpt_load_ex(ckpt, evlm_tmodel_params_of(tm), &sc, 1, &st, &opts));
    free(opts);
    CHECK(st.step == 4);
    evlm_tqat_round_floats(evlm_tmodel_qat(tm), evlm_tmodel_params_of(tm));
    double diff, range, d0, range0;
    compare(tm, rt, dir, &diff, &range);
    compare(t0, rt, dir, &d0, &range0);
    printf("evlm qat q4_0 + learned scales: runtime vs training logits max |diff| %.3g (range "
           "%.3g); the untrained forward: %.3g\n",
           diff, range, d0);
    CHECKF(diff <= 1e-4 * range, "%.3g > 1e-4 * %.3g", diff, range);
    CHECK(d0 > 1e-2 * range);

    /* refusals */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad", g_tmp);
    p.out_dir = bad;
    q.type = "q5_k";
    CHECK(evlm_finetune(&p, &r) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "q5_k") != NULL);
    q.type = "q4_0";
    p.model = out; /* a GGUF */
    CHECK(evlm_finetune(&p, &r) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "float model folder") != NULL);
done:
    evlm_tmodel_free(tm);
    evlm_tmodel_free(t0);
    if (m) evlm_model_free(m);
    if (rt) evlm_model_free(rt);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return test_done();
    if (!mkdtemp(g_tmp)) return 1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    test_qat_run(dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_done();
}
