/*
 * cmd_run.c - `evlm run -m DIR [--image FILE ...] -p TEXT [--raw] [-n N] [--temp T] [--top-k K]
 * [--top-p P]
 * [--min-p P] [--repeat-penalty R] [--seed S] [--stop STR] [--lookahead W,N,G|auto]
 * [--prompt-lookup N]
 * [-t THREADS] [-c CTX] [--json]`:
 * streams the answer to stdout; with --json prints one object at the end instead.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool print_piece(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static const char *k_stop_names[] = {"length", "eos", "stop_string", "callback", "context"};

static void usage(void) {
    printf(
        "usage: evlm run -m DIR -p TEXT [options]\n"
        "  --image FILE        an image (PNG/JPEG), repeatable; with --raw the prompt holds one "
        "<image> each\n"
        "  --raw               use the prompt as written (default: chat template, one user turn)\n"
        "  -n N                most tokens to generate (256)\n"
        "  --temp T            temperature; 0 = greedy (0)\n"
        "  --top-k K, --top-p P, --min-p P, --repeat-penalty R   sampling filters (off)\n"
        "  --seed S            random seed (0 = fixed default)\n"
        "  --stop STR          stop when STR appears (up to %d)\n"
        "  -t THREADS          threads (physical cores)\n"
        "  -c CTX              context length (prompt + n)\n" CLI_LOOKAHEAD_HELP CLI_SIM_HELP
        "  --json              print one JSON object with ids, text and timings at the end\n",
        EVLM_MAX_STOP);
}

int evlm_cmd_run(int argc, char **argv) {
    cli_model_opts o = {0};
    evlm_gen_params gp = evlm_gen_default_params();
    bool json = false, la_auto = false;
    int n_stop = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_model_opt(&o, argc, argv, &i)) continue;
        if (cli_lookahead_opt(&gp.lookahead, &la_auto, argc, argv, &i)) continue;
        if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            gp.n_predict = cli_int(argc, argv, &i, 0, 1 << 20);
        else if (!strcmp(a, "--temp"))
            gp.sampling.temp = (float)cli_double(argc, argv, &i, 0, 100);
        else if (!strcmp(a, "--top-k"))
            gp.sampling.top_k = cli_int(argc, argv, &i, 0, 1 << 24);
        else if (!strcmp(a, "--top-p"))
            gp.sampling.top_p = (float)cli_double(argc, argv, &i, 1e-6, 1);
        else if (!strcmp(a, "--min-p"))
            gp.sampling.min_p = (float)cli_double(argc, argv, &i, 0, 1);
        else if (!strcmp(a, "--repeat-penalty"))
            gp.sampling.repeat_penalty = (float)cli_double(argc, argv, &i, 1e-3, 100);
        else if (!strcmp(a, "--seed"))
            gp.sampling.seed = (uint64_t)cli_double(argc, argv, &i, 0, 9007199254740991.0);
        else if (!strcmp(a, "--stop")) {
            if (n_stop >= EVLM_MAX_STOP - 1) cli_die("at most %d stop strings", EVLM_MAX_STOP - 1);
            gp.stop[n_stop++] = cli_value(argc, argv, &i);
        } else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    evlm_model *m = cli_load_model(&o);
    cli_lookahead_resolve(&gp.lookahead, la_auto, m);
    double t_request =
        evlm_time_ms(); /* the request: template, tokenization, context, generation */
    evlm_prompt *pr = cli_prompt(m, &o);
    size_t n;
    const int32_t *ids = evlm_prompt_ids(pr, &n);
    evlm_context_params cp = cli_context_params(&o, (int)n + (gp.n_predict > 0 ? gp.n_predict : 1) +
                                                        cli_lookahead_room(&gp.lookahead));
    if ((size_t)cp.n_ctx < n + 1)
        cli_die("the prompt has %zu tokens, the context only %d", n, cp.n_ctx);
    evlm_context *ctx;
    cli_check(evlm_context_new(m, &cp, &ctx));
    cli_apply_sim(ctx);
    double setup_ms = evlm_time_ms() - t_request;

    evlm_gen_result r;
    cli_check(evlm_generate(ctx, pr, &gp, json ? NULL : print_piece, NULL, &r));
    if (!json) {
        fputc('\n', stdout);
    } else {
        int threads = evlm_model_n_threads(m);
        cJSON *j = cJSON_CreateObject();
        cJSON *pi = cJSON_AddArrayToObject(j, "prompt_ids");
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(pi, cJSON_CreateNumber(ids[i]));
        cJSON *oi = cJSON_AddArrayToObject(j, "output_ids");
        for (int i = 0; i < r.n_gen; i++) cJSON_AddItemToArray(oi, cJSON_CreateNumber(r.ids[i]));
        cJSON_AddStringToObject(j, "text", r.text);
        cJSON_AddNumberToObject(j, "n_prompt", r.n_prompt);
        cJSON_AddNumberToObject(j, "n_gen", r.n_gen);
        cJSON_AddStringToObject(j, "stop_reason", k_stop_names[r.stop_reason]);
        cJSON_AddNumberToObject(j, "ttft_ms", setup_ms + r.ttft_ms);
        cJSON_AddNumberToObject(j, "image_ms", evlm_prompt_image_ms(pr));
        cJSON_AddNumberToObject(j, "n_image_tokens", evlm_prompt_n_image_tokens(pr));
        cJSON_AddNumberToObject(j, "prefill_tok_s",
                                r.prefill_ms > 0 ? r.n_prompt * 1e3 / r.prefill_ms : 0);
        cJSON_AddNumberToObject(j, "decode_tok_s",
                                r.n_gen > 1 && r.decode_ms > 0 ? (r.n_gen - 1) * 1e3 / r.decode_ms
                                                               : 0);
        cJSON_AddNumberToObject(j, "peak_rss_mb", evlm_peak_rss_mb());
        cJSON_AddNumberToObject(j, "cpu_util", r.wall_ms > 0 ? r.cpu_ms / r.wall_ms / threads : 0);
        cJSON_AddNumberToObject(j, "threads", threads);
        cJSON_AddNumberToObject(j, "decode_steps", r.n_steps);
        cJSON_AddNumberToObject(j, "accepted_per_step",
                                r.n_steps ? (double)(r.n_gen - 1) / r.n_steps : 0);
        char *s = cJSON_PrintUnformatted(j);
        if (!s) cli_die("out of memory");
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    evlm_gen_result_free(&r);
    evlm_prompt_free(pr);
    evlm_context_free(ctx);
    evlm_model_free(m);
    return 0;
}
