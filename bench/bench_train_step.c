/*
 * bench_train_step.c - speed of one training step (train/tmodel.h: forward, ce loss over every
 * position but the last, backward) on a model folder, or on random weights for a config.json
 * (synthesized into a temporary folder). Prints the forward-only and full step times (median of
 * the runs after a warm-up), tokens/s, 6 x parameters x tokens / time as GFLOP/s and the peak
 * resident memory; the FLOPs also with the parameters a text batch multiplies (no vision tower,
 * no input embedding beside a separate head). The machine may be shared: rerun for stable numbers.
 * Usage: bench_train_step MODEL_DIR|CONFIG.json [batch 8] [seq 256] [threads 2] [runs 3].
 * Not here: the optimizer (a step's gradient only), vision tiles (text batches).
 */
#include "core/status.h"
#include "train/tmodel.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_train_step MODEL_DIR|CONFIG.json [batch] [seq] [threads] "
                        "[runs]\n");
        return 1;
    }
    const char *model = argv[1];
    int B = argc > 2 ? atoi(argv[2]) : 8, T = argc > 3 ? atoi(argv[3]) : 256;
    int threads = argc > 4 ? atoi(argv[4]) : 2, runs = argc > 5 ? atoi(argv[5]) : 3;
    if (B < 1 || T < 2 || threads < 1 || runs < 1 || runs > 64) return 1;
    char tmp[] = "/tmp/evlm_bench_train_XXXXXX";
    size_t ml = strlen(model);
    if (ml > 5 && !strcmp(model + ml - 5, ".json")) {
        if (!mkdtemp(tmp)) return 1;
        evlm_synth_params sp = evlm_synth_default_params();
        sp.config = model;
        sp.out_dir = tmp;
        if (evlm_model_synth(&sp, NULL, NULL) != EVLM_OK) {
            fprintf(stderr, "synth: %s\n", evlm_last_error());
            return 1;
        }
        model = tmp;
    }
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = 1;
    evlm_model *m;
    if (evlm_model_load(model, &mp, &m) != EVLM_OK) {
        fprintf(stderr, "load: %s\n", evlm_last_error());
        return 1;
    }
    evlm_tmodel_params tp = {threads, B * T, 0, NULL, false};
    evlm_tmodel *tm;
    if (evlm_tmodel_new(m, &tp, &tm) != EVLM_OK) {
        fprintf(stderr, "tmodel: %s\n", evlm_last_error());
        return 1;
    }
    const int V = evlm_model_n_vocab(m);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * T);
    uint8_t *tg = malloc((size_t)B * T);
    evlm_tseq *seq = calloc((size_t)B, sizeof *seq);
    uint64_t r = 1;
    for (int i = 0; i < B * T; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((r >> 33) % (uint64_t)V);
        tg[i] = 1;
    }
    for (int s = 0; s < B; s++)
        seq[s] = (evlm_tseq){ids + (size_t)s * T, T, tg + (size_t)s * T, NULL, NULL, 0};
    evlm_tbatch b = {seq, B};
    const evlm_tparams *p = evlm_tmodel_params_of(tm);
    /* every parameter (the 6 x parameters x tokens), and those a text batch multiplies
     * with: not the vision tower / connector, not the input embedding beside a separate head (a
     * lookup; a tied embedding is the head's matrix and counts) */
    double n_params = 0, n_mm = 0;
    bool untied = false;
    for (int i = 0; i < p->n; i++) untied |= strstr(p->p[i].name, "lm_head.weight") != NULL;
    for (int i = 0; i < p->n; i++) {
        const char *nm = p->p[i].name;
        n_params += (double)p->p[i].n;
        if (strstr(nm, "vision_model.") || strstr(nm, "connector.") ||
            (untied && strstr(nm, "embed_tokens.weight")))
            continue;
        n_mm += (double)p->p[i].n;
    }
    double t_fwd[64], t_step[64];
    evlm_tresult res;
    for (int it = 0; it <= runs; it++) {
        evlm_tstep fw = {EVLM_TLOSS_CE, 1.0f, NULL, 1.0f, true}, st = fw;
        st.no_backward = false;
        double t0 = now_s();
        if (evlm_tmodel_step(tm, &b, &fw, &res) != EVLM_OK) break;
        double t1 = now_s();
        if (evlm_tmodel_step(tm, &b, &st, &res) != EVLM_OK) break;
        double t2 = now_s();
        if (it > 0) {
            t_fwd[it - 1] = t1 - t0;
            t_step[it - 1] = t2 - t1;
        }
    }
    qsort(t_fwd, (size_t)runs, sizeof(double), cmp_d);
    qsort(t_step, (size_t)runs, sizeof(double), cmp_d);
    double f = t_fwd[runs / 2], s = t_step[runs / 2], tok = (double)B * T;
    printf("| model | batch | threads | params | forward ms | step ms | tokens/s | 6NT GFLOP/s | "
           "matmul params | 6 N_mm T GFLOP/s | peak RSS MB | loss |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    printf(
        "| %s | %d x %d | %d | %.1fM | %.0f | %.0f | %.0f | %.1f | %.1fM | %.1f | %ld | %.4f |\n",
        argv[1], B, T, threads, n_params / 1e6, f * 1e3, s * 1e3, tok / s,
        6 * n_params * tok / s / 1e9, n_mm / 1e6, 6 * n_mm * tok / s / 1e9, peak_rss_kb() / 1024,
        res.loss);
    evlm_tmodel_free(tm);
    evlm_model_free(m);
    free(ids);
    free(tg);
    free(seq);
    if (model == tmp) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    return 0;
}
