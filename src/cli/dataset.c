/* dataset.c - question-answer sets for eval and quality (see dataset.h). */
#include "dataset.h"
#include "cli.h"

#include <ctype.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void count(cli_tallies *t, const char *key, bool ok) {
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
    cli_tally *x = &t->v[t->n++];
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

void cli_print_tallies(const char *title, const cli_tallies *t) {
    printf("\n| %s | n | correct | accuracy |\n|---|---:|---:|---:|\n", title);
    for (int i = 0; i < t->n; i++)
        printf("| %s | %d | %d | %.1f %% |\n", t->v[i].key, t->v[i].n, t->v[i].correct,
               100.0 * t->v[i].correct / t->v[i].n);
}

cJSON *cli_json_tallies(const cli_tallies *t) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < t->n; i++)
        cJSON_AddNumberToObject(o, t->v[i].key, (double)t->v[i].correct / t->v[i].n);
    return o;
}

void cli_eval_result_free(cli_eval_result *r) {
    free(r->scenario.v);
    free(r->question.v);
    memset(r, 0, sizeof *r);
}

int cli_dataset_each(const char *dataset, cli_dataset_fn fn, void *ctx) {
    size_t len;
    char *data = cli_read_file(dataset, (size_t)1 << 30, &len);
    char dsdir[4096];
    snprintf(dsdir, sizeof dsdir, "%s", dataset);
    const char *base = dirname(dsdir);
    int n = 0, line_no = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        line_no++;
        if (!*trim(line)) continue;
        cJSON *item = cJSON_Parse(line);
        const cJSON *img = cJSON_GetObjectItem(item, "image"),
                    *q = cJSON_GetObjectItem(item, "question");
        const cJSON *ans = cJSON_GetObjectItem(item, "answer"),
                    *sc = cJSON_GetObjectItem(item, "scenario");
        if (!item || !cJSON_IsString(q) || !cJSON_IsString(ans) || (img && !cJSON_IsString(img)))
            cli_die("%s:%d: expected {\"image\", \"question\", \"answer\"} strings", dataset,
                    line_no);
        char path[8192];
        cli_dataset_item it = {q->valuestring,
                               ans->valuestring,
                               cJSON_IsString(sc) ? sc->valuestring : NULL,
                               NULL,
                               img ? img->valuestring : NULL,
                               line_no};
        if (img) {
            if (img->valuestring[0] == '/')
                snprintf(path, sizeof path, "%s", img->valuestring);
            else
                snprintf(path, sizeof path, "%s/%s", base, img->valuestring);
            it.image = path;
        }
        fn(ctx, &it);
        n++;
        cJSON_Delete(item);
    }
    free(data);
    if (n == 0) cli_die("%s: no items", dataset);
    return n;
}

typedef struct {
    evlm_model *m;
    evlm_context *ctx;
    const evlm_gen_params *gp;
    bool verbose, progress;
    cli_eval_result *res;
    double ttft_sum, dec_tok, dec_ms, steps;
} eval_state;

static void eval_item(void *arg, const cli_dataset_item *it) {
    eval_state *e = arg;
    cli_eval_result *res = e->res;
    evlm_image_input in = {.path = it->image};
    int n_img = it->image ? 1 : 0;
    double t0 = evlm_time_ms();
    char *text;
    cli_check(evlm_chat_prompt(e->m, it->question, n_img, &text));
    evlm_prompt *pr;
    cli_check(cli_prompt_new(e->m, e->ctx, text, false, &in, n_img, &pr));
    free(text);
    double setup = evlm_time_ms() - t0;
    cli_check(evlm_context_truncate(e->ctx, 0));
    evlm_gen_result r;
    cli_check(evlm_generate(e->ctx, pr, e->gp, NULL, NULL, &r));
    char *got = trim(r.text);
    char *want_buf = strdup(it->answer);
    bool ok = !strcmp(got, trim(want_buf));
    res->n++;
    res->correct += ok;
    e->ttft_sum += setup + r.ttft_ms;
    if (r.n_gen > 1) {
        e->dec_tok += r.n_gen - 1;
        e->dec_ms += r.decode_ms;
        e->steps += r.n_steps;
    }
    count(&res->scenario, it->scenario ? it->scenario : "all", ok);
    count(&res->question, it->question, ok);
    if (e->verbose)
        fprintf(stderr, "%s %s | %s | got \"%s\" want \"%s\"\n", ok ? "ok  " : "FAIL",
                it->image_field ? it->image_field : "-", it->question, got, want_buf);
    else if (e->progress)
        fprintf(stderr, "\r%d done, %d correct", res->n, res->correct);
    free(want_buf);
    evlm_gen_result_free(&r);
    evlm_prompt_free(pr);
}

void cli_eval_dataset(evlm_model *m, const char *dataset, const evlm_gen_params *gp,
                      const evlm_context_params *cp, bool verbose, bool progress,
                      cli_eval_result *res) {
    memset(res, 0, sizeof *res);
    eval_state e = {.m = m, .verbose = verbose, .progress = progress, .res = res};
    cli_check(evlm_context_new(m, cp, &e.ctx));
    cli_apply_sim(e.ctx);
    /* one lookahead n-gram pool for the whole set, as a deployment would keep it */
    evlm_gen_params gpl = *gp;
    evlm_ngram_cache *cache = NULL;
    if (gp->lookahead.guesses > 0 && !gp->ngrams) {
        cli_check(evlm_ngram_cache_new(m, &cache));
        gpl.ngrams = cache;
    }
    e.gp = &gpl;
    cli_dataset_each(dataset, eval_item, &e);
    if (progress) fputc('\n', stderr);
    res->ttft_ms = e.ttft_sum / res->n;
    res->decode_tok_s = e.dec_ms > 0 ? e.dec_tok * 1e3 / e.dec_ms : 0;
    res->accepted_per_step = e.steps > 0 ? e.dec_tok / e.steps : 1.0;
    evlm_ngram_cache_free(cache);
    evlm_context_free(e.ctx);
}
