/*
 * cmd_bench.c - `evlm bench -m MODEL [--image FILE] [-p N_PROMPT] [-n N_GEN] [-t T] [-r REPS]
 * [--json]`: one warm-up, then REPS repetitions of prefill + greedy decode in a fresh cache.
 * Prints the median and spread (min..max) of image-encode ms, prefill tok/s, TTFT ms and decode
 * tok/s with the achieved GFLOP/s (prefill: 2 x decoder-layer parameters per token) and GB/s
 * (decode: layer matrices + lm_head bytes per token), plus peak RSS, CPU utilization and model
 * bytes. With
 * --json the last line is one object whose medians use run --json's keys.
 * The prompt is N_PROMPT ids taken from a fixed English text (repeated), after the image when
 * one is given; decode never stops early (eos is ignored) so every repetition makes N_GEN tokens.
 * --lookahead / --prompt-lookup decode several tokens per pass (the table adds tokens per pass).
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_text[] =
    "The driver keeps both hands on the wheel while the car moves through light traffic on a "
    "clear afternoon. A child in the back seat looks out of the window and smiles at the trees. ";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double med, lo, hi;
} stat3;

static stat3 stats(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    stat3 s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

/* Decode tok/s (median of reps) and tokens per pass of one lookahead setting. */
static double decode_speed(evlm_model *m, const evlm_prompt *pr, const cli_model_opts *o, int n_gen,
                           int reps, evlm_lookahead_params la, double *per_pass) {
    size_t n_ids;
    evlm_prompt_ids(pr, &n_ids);
    evlm_context_params cp =
        cli_context_params(o, (int)n_ids + n_gen + 1 + cli_lookahead_room(&la));
    evlm_context *ctx;
    cli_check(evlm_context_new(m, &cp, &ctx));
    cli_apply_sim(ctx);
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = n_gen;
    gp.ignore_eos = true;
    gp.lookahead = la;
    double v[64], a[64];
    for (int r = 0; r < reps; r++) {
        cli_check(evlm_context_truncate(ctx, 0));
        evlm_gen_result g;
        cli_check(evlm_generate(ctx, pr, &gp, NULL, NULL, &g));
        v[r] = g.n_gen > 1 && g.decode_ms > 0 ? (g.n_gen - 1) * 1e3 / g.decode_ms : 0;
        a[r] = g.n_steps ? (double)(g.n_gen - 1) / g.n_steps : 1;
        evlm_gen_result_free(&g);
    }
    evlm_context_free(ctx);
    *per_pass = stats(a, reps).med;
    return stats(v, reps).med;
}

/* --tune-lookahead: every setting of a grid on this model and prompt, fastest last. */
static int tune_lookahead(evlm_model *m, const evlm_prompt *pr, const cli_model_opts *o, int n_gen,
                          int reps, bool json) {
    static const int grid[][4] = {
        {0, 0, 0, 0},   {0, 3, 1, 0}, {0, 4, 1, 0}, {0, 5, 1, 0}, {0, 4, 2, 0},
        {0, 6, 2, 0},   {1, 3, 1, 0}, {2, 3, 2, 0}, {2, 4, 2, 0}, {3, 3, 3, 0},
        {3, 4, 3, 0},   {4, 4, 4, 0}, {5, 4, 5, 0}, {5, 5, 5, 0}, {7, 5, 7, 0},
        {10, 5, 10, 0}, {0, 0, 0, 4}, {0, 0, 0, 8}, {2, 4, 2, 6}, {4, 4, 4, 8},
    };
    const int n = (int)(sizeof grid / sizeof *grid);
    if (reps > 64) reps = 64;
    int best = 0;
    double speed[sizeof grid / sizeof *grid], pass[sizeof grid / sizeof *grid];
    if (!json)
        printf("| lookahead W,N,G | prompt lookup | decode tok/s | tokens/pass | vs plain "
               "|\n|---|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        evlm_lookahead_params la = {grid[i][0], grid[i][1], grid[i][2], grid[i][3]};
        speed[i] = decode_speed(m, pr, o, n_gen, reps, la, &pass[i]);
        if (speed[i] > speed[best]) best = i;
        if (!json)
            printf("| %d,%d,%d | %d | %.1f | %.2f | %.2fx |\n", la.window, la.ngram, la.guesses,
                   la.prompt_lookup, speed[i], pass[i], speed[0] > 0 ? speed[i] / speed[0] : 0);
        fflush(stdout);
    }
    const int *b = grid[best];
    if (!json) {
        if (best == 0)
            printf("\nbest: plain decoding (no setting beats one token per pass here)\n");
        else
            printf("\nbest: --lookahead %d,%d,%d%s%.0d (%.2fx plain)\n", b[0], b[1], b[2],
                   b[3] ? " --prompt-lookup " : "", b[3], speed[best] / speed[0]);
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "window", b[0]);
        cJSON_AddNumberToObject(j, "ngram", b[1]);
        cJSON_AddNumberToObject(j, "guesses", b[2]);
        cJSON_AddNumberToObject(j, "prompt_lookup", b[3]);
        cJSON_AddNumberToObject(j, "decode_tok_s", speed[best]);
        cJSON_AddNumberToObject(j, "plain_decode_tok_s", speed[0]);
        cJSON_AddNumberToObject(j, "accepted_per_step", pass[best]);
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    return 0;
}

int evlm_cmd_bench(int argc, char **argv) {
    cli_model_opts o = {0};
    int n_prompt = 512, n_gen = 128, reps = 5;
    bool json = false, la_auto = false, tune = false;
    evlm_lookahead_params la = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_lookahead_opt(&la, &la_auto, argc, argv, &i)) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt"))
            n_prompt = cli_int(argc, argv, &i, 1, 1 << 16);
        else if (cli_model_opt(&o, argc, argv, &i))
            continue;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen"))
            n_gen = cli_int(argc, argv, &i, 1, 1 << 16);
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps"))
            reps = cli_int(argc, argv, &i, 1, 1000);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "--tune-lookahead"))
            tune = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm bench -m MODEL [--image FILE] [-p N_PROMPT] [-n N_GEN] [-t T] [-r "
                   "REPS] [--json]\n" CLI_LOOKAHEAD_HELP CLI_SIM_HELP
                   "  --tune-lookahead    measure a grid of lookahead settings on this model and "
                   "print the fastest\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (o.n_images > 1) cli_die("bench takes at most one --image");
    evlm_model *m = cli_load_model(&o);
    cli_lookahead_resolve(&la, la_auto, m);

    /* the prompt: [<image>] + the text of the first n_prompt ids of the repeated paragraph */
    size_t plen = strlen(k_text), reps_text = (size_t)n_prompt + 1;
    char *para = malloc(plen * reps_text + 1);
    if (!para) cli_die("out of memory");
    para[0] = 0;
    for (size_t i = 0; i < reps_text; i++) memcpy(para + i * plen, k_text, plen + 1);
    int32_t *tids;
    size_t nt;
    cli_check(evlm_tokenize(m, para, strlen(para), false, false, &tids, &nt));
    if (nt < (size_t)n_prompt) cli_die("the benchmark text gives only %zu tokens", nt);
    char *body;
    cli_check(evlm_detokenize(m, tids, (size_t)n_prompt, false, &body));
    free(tids);
    free(para);
    char *text = malloc(strlen(body) + 16);
    if (!text) cli_die("out of memory");
    sprintf(text, "%s%s", o.n_images ? "<image>" : "", body);
    free(body);
    evlm_image_input img = {.path = o.n_images ? o.images[0] : NULL};

    evlm_prompt *pr = NULL;
    size_t n_ids;
    cli_check(evlm_prompt_new(m, text, false, &img, o.n_images, &pr));
    evlm_prompt_ids(pr, &n_ids);
    int n_img_tok = evlm_prompt_n_image_tokens(pr);
    if (tune) {
        int rc = tune_lookahead(m, pr, &o, n_gen, reps, json);
        evlm_prompt_free(pr);
        free(text);
        evlm_model_free(m);
        return rc;
    }
    evlm_prompt_free(pr);
    evlm_context_params cp =
        cli_context_params(&o, (int)n_ids + n_gen + 1 + cli_lookahead_room(&la));
    evlm_context *ctx;
    cli_check(evlm_context_new(m, &cp, &ctx));
    cli_apply_sim(ctx);

    double *img_ms = calloc((size_t)reps, sizeof(double)),
           *pre = calloc((size_t)reps, sizeof(double));
    double *ttft = calloc((size_t)reps, sizeof(double)),
           *dec = calloc((size_t)reps, sizeof(double));
    double *aps = calloc((size_t)reps, sizeof(double));
    if (!img_ms || !pre || !ttft || !dec || !aps) cli_die("out of memory");
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = n_gen;
    gp.ignore_eos = true; /* every repetition decodes n_gen tokens */
    gp.lookahead = la;
    int n_eval = 0;
    double cpu0 = 0, wall0 = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        if (r == 0) {
            cpu0 = evlm_cpu_time_ms();
            wall0 = evlm_time_ms();
        }
        double t0 = evlm_time_ms();
        cli_check(evlm_prompt_new(m, text, false, &img, o.n_images, &pr));
        double t1 = evlm_time_ms();
        cli_check(evlm_context_truncate(ctx, 0));
        evlm_gen_result g;
        cli_check(evlm_generate(ctx, pr, &gp, NULL, NULL, &g));
        evlm_prompt_free(pr);
        n_eval = g.n_prompt;
        if (r >= 0) {
            img_ms[r] = t1 - t0; /* decode + preprocess + encode (+ tokenization) */
            pre[r] = g.n_prompt * 1e3 / g.prefill_ms;
            ttft[r] = t1 - t0 + g.ttft_ms;
            dec[r] = g.n_gen > 1 && g.decode_ms > 0 ? (g.n_gen - 1) * 1e3 / g.decode_ms : 0;
            aps[r] = g.n_steps ? (double)(g.n_gen - 1) / g.n_steps : 0;
        }
        evlm_gen_result_free(&g);
    }
    double cpu_util =
        (evlm_cpu_time_ms() - cpu0) / (evlm_time_ms() - wall0) / evlm_model_n_threads(m);
    stat3 si = stats(img_ms, reps), sp = stats(pre, reps), st = stats(ttft, reps),
          sd = stats(dec, reps);
    stat3 sa = stats(aps, reps);
    double bytes = (double)evlm_model_weight_bytes(m),
           params = (double)evlm_model_n_layer_params(m);
    double dbytes = (double)evlm_model_decode_bytes(m);
    double rss = evlm_peak_rss_mb();
    if (!json) {
        printf("model %s: %.1f MB of weights, %.1fM decoder-layer parameters; prompt %d tokens (%d "
               "image), "
               "%d generated, %d threads, %d reps\n\n",
               o.model, bytes / 1e6, params / 1e6, n_eval, n_img_tok, n_gen,
               evlm_model_n_threads(m), reps);
        printf("| metric | median | min | max | achieved |\n|---|---:|---:|---:|---:|\n");
        if (o.n_images)
            printf("| image encode ms | %.1f | %.1f | %.1f | |\n", si.med, si.lo, si.hi);
        printf("| prefill tok/s | %.1f | %.1f | %.1f | %.1f GFLOP/s |\n", sp.med, sp.lo, sp.hi,
               2 * params * sp.med / 1e9);
        printf("| TTFT ms | %.1f | %.1f | %.1f | |\n", st.med, st.lo, st.hi);
        printf("| decode tok/s | %.1f | %.1f | %.1f | %.1f GB/s |\n", sd.med, sd.lo, sd.hi,
               dbytes * sd.med / 1e9);
        if (la.window || la.guesses || la.prompt_lookup)
            printf("| tokens per decode pass | %.2f | %.2f | %.2f | lookahead %d,%d,%d, prompt "
                   "lookup %d |\n",
                   sa.med, sa.lo, sa.hi, la.window, la.ngram, la.guesses, la.prompt_lookup);
        printf("\npeak RSS %.1f MB, CPU utilization %.2f", rss, cpu_util);
        if (evlm_model_greedy_head_bytes(m))
            printf("; greedy head: int8 copy of the output head, %.1f MB",
                   evlm_model_greedy_head_bytes(m) / 1e6);
        printf("\n");
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "image_ms", si.med);
        cJSON_AddNumberToObject(j, "prefill_tok_s", sp.med);
        cJSON_AddNumberToObject(j, "ttft_ms", st.med);
        cJSON_AddNumberToObject(j, "decode_tok_s", sd.med);
        cJSON_AddNumberToObject(j, "peak_rss_mb", rss);
        cJSON_AddNumberToObject(j, "cpu_util", cpu_util);
        cJSON_AddNumberToObject(j, "model_bytes", bytes);
        cJSON_AddNumberToObject(j, "greedy_head_bytes", (double)evlm_model_greedy_head_bytes(m));
        cJSON_AddNumberToObject(j, "n_prompt", n_eval);
        cJSON_AddNumberToObject(j, "n_image_tokens", n_img_tok);
        cJSON_AddNumberToObject(j, "n_gen", n_gen);
        cJSON_AddNumberToObject(j, "threads", evlm_model_n_threads(m));
        cJSON_AddNumberToObject(j, "prefill_gflops", 2 * params * sp.med / 1e9);
        cJSON_AddNumberToObject(j, "decode_gb_s", dbytes * sd.med / 1e9);
        cJSON_AddNumberToObject(j, "accepted_per_step", sa.med);
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    free(img_ms), free(pre), free(ttft), free(dec), free(aps), free(text);
    evlm_context_free(ctx);
    evlm_model_free(m);
    return 0;
}
