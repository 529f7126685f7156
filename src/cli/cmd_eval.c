/*
 * cmd_eval.c - `evlm eval -m MODEL --dataset FILE.jsonl [--json] [-n N] [-t THREADS]`:
 * runs a question-answer set (lines of {image, question, answer, optional scenario}) through
 * the chat template with greedy decoding and scores exact matches after trimming whitespace.
 * Prints accuracy per scenario and per question, overall accuracy, mean TTFT and decode tok/s;
 * with --json the last line is one object (accuracy 0..1, per_scenario, per_question, ttft_ms,
 * decode_tok_s, n). Image paths are relative to the dataset's folder.
 */
#include "cli/cli.h"
#include "core/file.h"
#include "core/sysinfo.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char key[256];
    int n, correct;
} tally;

typedef struct {
    tally *v;
    int n, cap;
} tallies;

static void count(tallies *t, const char *key, bool ok) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].key, key)) {
            t->v[i].n++;
            t->v[i].correct += ok;
            return;
        }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = realloc(t->v, sizeof *t->v * (size_t)t->cap);
        if (!t->v) cli_die("out of memory");
    }
    tally *x = &t->v[t->n++];
    snprintf(x->key, sizeof x->key, "%s", key);
    x->n = 1;
    x->correct = ok;
}

/* Trims ASCII whitespace in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static void print_tallies(const char *title, const tallies *t) {
    printf("\n| %s | n | correct | accuracy |\n|---|---:|---:|---:|\n", title);
    for (int i = 0; i < t->n; i++)
        printf("| %s | %d | %d | %.1f %% |\n", t->v[i].key, t->v[i].n, t->v[i].correct,
               100.0 * t->v[i].correct / t->v[i].n);
}

static cJSON *json_tallies(const tallies *t) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < t->n; i++)
        cJSON_AddNumberToObject(o, t->v[i].key, (double)t->v[i].correct / t->v[i].n);
    return o;
}

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
        if (!strcmp(a, "--dataset")) dataset = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "-n")) n_predict = cli_int(argc, argv, &i, 1, 4096);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm eval -m MODEL --dataset FILE.jsonl [--json] [-v] [-n N] [-t THREADS]\n" CLI_LOOKAHEAD_HELP);
            return 0;
        } else cli_die("unknown option '%s'", a);
    }
    if (!dataset) cli_die("no dataset given (--dataset FILE.jsonl)");
    if (o.prompt || o.raw || o.n_images) cli_die("eval takes its prompts and images from the dataset");
    char *data;
    size_t len;
    cli_check(evlm_read_file(dataset, (size_t)1 << 30, &data, &len));
    char dsdir[4096];
    snprintf(dsdir, sizeof dsdir, "%s", dataset);
    char *base = dirname(dsdir);

    evlm_model *m = cli_load_model(&o);
    cli_lookahead_resolve(&gp.lookahead, la_auto, m);
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = o.n_ctx;
    evlm_context *ctx;
    cli_check(evlm_context_new(m, &cp, &ctx));
    gp.n_predict = n_predict;

    tallies scen = {0}, ques = {0};
    int n = 0, correct = 0, line_no = 0;
    double ttft_sum = 0, dec_tok = 0, dec_ms = 0, steps = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        line_no++;
        if (!*trim(line)) continue;
        cJSON *item = cJSON_Parse(line);
        const cJSON *img = cJSON_GetObjectItem(item, "image"), *q = cJSON_GetObjectItem(item, "question");
        const cJSON *ans = cJSON_GetObjectItem(item, "answer"), *sc = cJSON_GetObjectItem(item, "scenario");
        if (!item || !cJSON_IsString(q) || !cJSON_IsString(ans) || (img && !cJSON_IsString(img)))
            cli_die("%s:%d: expected {\"image\", \"question\", \"answer\"} strings", dataset, line_no);
        char path[8192];
        evlm_image_input in = {0};
        int n_img = 0;
        if (img) {
            if (img->valuestring[0] == '/') snprintf(path, sizeof path, "%s", img->valuestring);
            else snprintf(path, sizeof path, "%s/%s", base, img->valuestring);
            in.path = path;
            n_img = 1;
        }
        double t0 = evlm_time_ms();
        char *text;
        cli_check(evlm_chat_prompt(m, q->valuestring, n_img, &text));
        evlm_prompt *pr;
        cli_check(evlm_prompt_new(m, text, false, &in, n_img, &pr));
        free(text);
        double setup = evlm_time_ms() - t0;
        cli_check(evlm_context_truncate(ctx, 0));
        evlm_gen_result r;
        cli_check(evlm_generate(ctx, pr, &gp, NULL, NULL, &r));
        char *got = trim(r.text);
        char *want_buf = strdup(ans->valuestring);
        bool ok = !strcmp(got, trim(want_buf));
        n++;
        correct += ok;
        ttft_sum += setup + r.ttft_ms;
        if (r.n_gen > 1) {
            dec_tok += r.n_gen - 1;
            dec_ms += r.decode_ms;
            steps += r.n_steps;
        }
        count(&scen, cJSON_IsString(sc) ? sc->valuestring : "all", ok);
        count(&ques, q->valuestring, ok);
        if (verbose)
            fprintf(stderr, "%s %s | %s | got \"%s\" want \"%s\"\n", ok ? "ok  " : "FAIL",
                    img ? img->valuestring : "-", q->valuestring, got, want_buf);
        else if (!json)
            fprintf(stderr, "\r%d done, %d correct", n, correct);
        free(want_buf);
        evlm_gen_result_free(&r);
        evlm_prompt_free(pr);
        cJSON_Delete(item);
    }
    if (!json && !verbose) fputc('\n', stderr);
    if (n == 0) cli_die("%s: no items", dataset);
    double acc = (double)correct / n, ttft = ttft_sum / n, tps = dec_ms > 0 ? dec_tok * 1e3 / dec_ms : 0;
    if (!json) {
        print_tallies("scenario", &scen);
        print_tallies("question", &ques);
        printf("\noverall: %d / %d = %.1f %%, mean TTFT %.1f ms, decode %.1f tok/s (%.2f tokens per pass)\n",
               correct, n, 100 * acc, ttft, tps, steps > 0 ? dec_tok / steps : 1.0);
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "accuracy", acc);
        cJSON_AddNumberToObject(j, "n", n);
        cJSON_AddItemToObject(j, "per_scenario", json_tallies(&scen));
        cJSON_AddItemToObject(j, "per_question", json_tallies(&ques));
        cJSON_AddNumberToObject(j, "ttft_ms", ttft);
        cJSON_AddNumberToObject(j, "decode_tok_s", tps);
        cJSON_AddNumberToObject(j, "accepted_per_step", steps > 0 ? dec_tok / steps : 0);
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    free(scen.v);
    free(ques.v);
    free(data);
    evlm_context_free(ctx);
    evlm_model_free(m);
    return 0;
}
