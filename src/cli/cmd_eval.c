/*
 * cmd_eval.c - `evlm eval -m MODEL --dataset FILE.jsonl [--json] [-n N] [-t THREADS]`:
 * runs a question-answer set (lines of {image, question, answer, optional scenario}) through
 * the chat template with greedy decoding and scores exact matches after trimming whitespace.
 * Prints accuracy per scenario and per question, overall accuracy, mean TTFT and decode tok/s;
 * with --json the last line is one object (accuracy 0..1, per_scenario, per_question, ttft_ms,
 * decode_tok_s, n). Image paths are relative to the dataset's folder.
 */
#include "cli.h"
#include "dataset.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int evlm_cmd_eval(int argc, char **argv) {
    cli_model_opts o = {0};
    const char *dataset = NULL;
    bool json = false, verbose = false, la_auto = false;
    evlm_gen_params gp = evlm_gen_default_params();
    int n_predict = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_model_opt(&o, argc, argv, &i)) continue;
        if (cli_lookahead_opt(&gp.lookahead, &la_auto, argc, argv, &i)) continue;
        if (!strcmp(a, "--dataset"))
            dataset = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
            verbose = true;
        else if (!strcmp(a, "-n"))
            n_predict = cli_int(argc, argv, &i, 1, 4096);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm eval -m MODEL --dataset FILE.jsonl [--json] [-v] [-n N] [-t "
                   "THREADS]\n" CLI_LOOKAHEAD_HELP CLI_SIM_HELP);
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!dataset) cli_die("no dataset given (--dataset FILE.jsonl)");
    if (o.prompt || o.raw || o.n_images)
        cli_die("eval takes its prompts and images from the dataset");
    evlm_model *m = cli_load_model(&o);
    cli_lookahead_resolve(&gp.lookahead, la_auto, m);
    gp.n_predict = n_predict;
    cli_eval_result r;
    evlm_context_params cp = cli_context_params(&o, 0);
    cli_eval_dataset(m, dataset, &gp, &cp, verbose, !json && !verbose, &r);
    double acc = (double)r.correct / r.n;
    if (!json) {
        cli_print_tallies("scenario", &r.scenario);
        cli_print_tallies("question", &r.question);
        printf("\noverall: %d / %d = %.1f %%, mean TTFT %.1f ms, decode %.1f tok/s (%.2f tokens "
               "per pass)\n",
               r.correct, r.n, 100 * acc, r.ttft_ms, r.decode_tok_s, r.accepted_per_step);
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "accuracy", acc);
        cJSON_AddNumberToObject(j, "n", r.n);
        cJSON_AddItemToObject(j, "per_scenario", cli_json_tallies(&r.scenario));
        cJSON_AddItemToObject(j, "per_question", cli_json_tallies(&r.question));
        cJSON_AddNumberToObject(j, "ttft_ms", r.ttft_ms);
        cJSON_AddNumberToObject(j, "decode_tok_s", r.decode_tok_s);
        cJSON_AddNumberToObject(j, "accepted_per_step", r.accepted_per_step);
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    cli_eval_result_free(&r);
    evlm_model_free(m);
    return 0;
}
