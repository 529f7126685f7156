/*
 * cmd_quality.c - `evlm quality -m REF -q QUANT [--text FILE] [--dataset FILE.jsonl] [-c CHUNK]
 * [--max-tokens N] [-n N] [-t T] [--json]`: how much a compressed model departs from its
 * reference, as llama-perplexity --kl-divergence measures it.
 *
 * Text: the file is tokenized once (the tokenizer's BOS rule applies), cut into chunks of CHUNK
 * tokens (default 256) evaluated in a fresh context by both models; every position but each
 * chunk's first predicts the next token. Reported: the perplexity of both models, the mean and
 * 99th percentile of KL(P_ref || P_quant) over positions, and how often both pick the same top-1
 * token. Dataset: the same KL, perplexity and top-1 figures over the answers as the models see
 * them in use (image and question through the chat template, then the reference answer's turn
 * teacher-forced: every position that predicts one of its tokens, the end of turn included), and
 * the accuracy of both models (greedy answers, exact match, as `evlm eval`).
 * The two models must share a vocabulary. `--sim DIR` (an ONNX export, evlm_npu_sim): QUANT
 * computes with that export's numerics; -q may then be left out (QUANT = REF), so the report is
 * the float model against its simulated NPU numerics.
 */
#include "cli.h"
#include "dataset.h"
#include "evlm_npu.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* log-softmax of x [n] into out, in double */
static void log_softmax(const float *x, int n, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = (double)x[i] > mx ? (double)x[i] : mx;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

typedef struct {
    double nll_ref, nll_q, *kl;
    long n, cap, same_top1;
} text_stats;

/* One predicted position: reference logits a, compared logits b [V], the token that follows;
 * pr / pq [V] are scratch. */
static void add_position(text_stats *ts, const float *a, const float *b, int V, int32_t next,
                         double *pr, double *pq) {
    log_softmax(a, V, pr);
    log_softmax(b, V, pq);
    ts->nll_ref -= pr[next];
    ts->nll_q -= pq[next];
    double kl = 0;
    int ta = 0, tb = 0;
    for (int v = 0; v < V; v++) {
        kl += exp(pr[v]) * (pr[v] - pq[v]);
        if (a[v] > a[ta]) ta = v;
        if (b[v] > b[tb]) tb = v;
    }
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? 2 * ts->cap : 1024;
        ts->kl = realloc(ts->kl, sizeof(double) * (size_t)ts->cap);
        if (!ts->kl) cli_die("out of memory");
    }
    ts->kl[ts->n++] = kl > 0 ? kl : 0;
    ts->same_top1 += ta == tb;
}

static void eval_text(evlm_model *ref, evlm_model *q, const char *path, const cli_model_opts *o,
                      int chunk, int max_tokens, bool progress, text_stats *ts) {
    size_t len;
    char *text = cli_read_file(path, (size_t)1 << 30, &len);
    int32_t *ids;
    size_t n_ids;
    cli_check(evlm_tokenize(ref, text, len, false, true, &ids, &n_ids));
    free(text);
    if (max_tokens > 0 && n_ids > (size_t)max_tokens) n_ids = (size_t)max_tokens;
    if (n_ids < 2) cli_die("%s: fewer than 2 tokens", path);
    const int V = evlm_model_n_vocab(ref);
    evlm_context_params cp = cli_context_params(o, chunk);
    evlm_context *cr, *cq;
    cli_check(evlm_context_new(ref, &cp, &cr));
    cli_check(evlm_context_new(q, &cp, &cq));
    if (o->sim) cli_check(evlm_npu_sim(cq, o->sim));
    float *lr = malloc(sizeof(float) * (size_t)V * (size_t)chunk);
    float *lq = malloc(sizeof(float) * (size_t)V * (size_t)chunk);
    double *pr = malloc(sizeof(double) * (size_t)V), *pq = malloc(sizeof(double) * (size_t)V);
    if (!lr || !lq || !pr || !pq) cli_die("out of memory");
    for (size_t at = 0; at + 1 < n_ids; at += (size_t)chunk) {
        int n = (int)(n_ids - at < (size_t)chunk ? n_ids - at : (size_t)chunk);
        if (n < 2) break;
        cli_check(evlm_context_truncate(cr, 0));
        cli_check(evlm_context_truncate(cq, 0));
        cli_check(evlm_decode(cr, ids + at, n, lr, true));
        cli_check(evlm_decode(cq, ids + at, n, lq, true));
        for (int i = 0; i + 1 < n; i++)
            add_position(ts, lr + (size_t)i * V, lq + (size_t)i * V, V, ids[at + (size_t)i + 1], pr,
                         pq);
        if (progress) fprintf(stderr, "\rtext: %zu / %zu tokens", at + (size_t)n, n_ids);
    }
    if (progress) fputc('\n', stderr);
    free(lr), free(lq), free(pr), free(pq), free(ids);
    evlm_context_free(cr);
    evlm_context_free(cq);
}

typedef struct {
    evlm_model *ref, *q;
    evlm_context *cr, *cq;
    const char *sim;
    int V, n_items;
    float *lr, *lq;
    size_t cap_rows;
    double *pr, *pq;
    bool progress;
    text_stats ts;
} answer_kl;

/* Logits [n_ans, V] of one model at the positions that predict the answer turn's tokens: the
 * prompt's last position, then every answer token but the last. */
static void answer_logits(evlm_context *ctx, const evlm_prompt *p, const int32_t *ans, size_t n_ans,
                          float *logits, int V) {
    cli_check(evlm_context_truncate(ctx, 0));
    cli_check(evlm_decode_prompt(ctx, p, logits, false));
    if (n_ans > 1) cli_check(evlm_decode(ctx, ans, (int)n_ans - 1, logits + V, true));
}

static void answer_kl_item(void *arg, const cli_dataset_item *it) {
    answer_kl *k = arg;
    evlm_image_input in = {.path = it->image};
    int n_img = it->image ? 1 : 0;
    char *text, *turn;
    cli_check(evlm_chat_prompt(k->ref, it->question, n_img, &text));
    cli_check(evlm_chat_answer(k->ref, it->question, n_img, it->answer, &turn));
    int32_t *ans;
    size_t n_ans;
    cli_check(evlm_tokenize(k->ref, turn, strlen(turn), true, false, &ans, &n_ans));
    if (n_ans == 0) cli_die("line %d: empty answer", it->line);
    if (n_ans > k->cap_rows) {
        k->cap_rows = n_ans;
        k->lr = realloc(k->lr, sizeof(float) * (size_t)k->V * n_ans);
        k->lq = realloc(k->lq, sizeof(float) * (size_t)k->V * n_ans);
        if (!k->lr || !k->lq) cli_die("out of memory");
    }
    evlm_prompt *pr, *pq;
    cli_check(cli_prompt_new(k->ref, k->cr, text, false, &in, n_img, &pr));
    cli_set_sim(k->sim); /* the compared side sees the images through the export, if any */
    cli_check(cli_prompt_new(k->q, k->cq, text, false, &in, n_img, &pq));
    cli_set_sim(NULL);
    answer_logits(k->cr, pr, ans, n_ans, k->lr, k->V);
    answer_logits(k->cq, pq, ans, n_ans, k->lq, k->V);
    for (size_t i = 0; i < n_ans; i++)
        add_position(&k->ts, k->lr + i * (size_t)k->V, k->lq + i * (size_t)k->V, k->V, ans[i],
                     k->pr, k->pq);
    if (k->progress) fprintf(stderr, "\ranswers: %d items, %ld tokens", ++k->n_items, k->ts.n);
    evlm_prompt_free(pr);
    evlm_prompt_free(pq);
    free(ans);
    free(turn);
    free(text);
}

/* KL over the answers of a question-answer set as the models see them in use: image, chat
 * template, then the reference answer's turn (answer and end of turn) teacher-forced. */
static void eval_answers(evlm_model *ref, evlm_model *q, const char *dataset,
                         const cli_model_opts *o, bool progress, text_stats *ts) {
    answer_kl k = {.ref = ref, .q = q, .sim = o->sim, .progress = progress};
    k.V = evlm_model_n_vocab(ref);
    evlm_context_params cp = cli_context_params(o, 0);
    cli_check(evlm_context_new(ref, &cp, &k.cr));
    cli_check(evlm_context_new(q, &cp, &k.cq));
    if (o->sim) cli_check(evlm_npu_sim(k.cq, o->sim));
    k.pr = malloc(sizeof(double) * (size_t)k.V);
    k.pq = malloc(sizeof(double) * (size_t)k.V);
    if (!k.pr || !k.pq) cli_die("out of memory");
    cli_dataset_each(dataset, answer_kl_item, &k);
    if (progress) fputc('\n', stderr);
    *ts = k.ts;
    free(k.lr), free(k.lq), free(k.pr), free(k.pq);
    evlm_context_free(k.cr);
    evlm_context_free(k.cq);
}

/* Appends the rows of a KL measurement (kl sorted in place) to table and its numbers to j under
 * keys with prefix (text: "", answers: "answer_"). */
static int report_kl(text_stats *ts, const char *what, const char *prefix, char *table, size_t cap,
                     cJSON *j) {
    qsort(ts->kl, (size_t)ts->n, sizeof(double), cmp_double);
    double mean = 0;
    for (long i = 0; i < ts->n; i++) mean += ts->kl[i];
    mean /= (double)ts->n;
    double p99 = ts->kl[(long)(0.99 * (double)(ts->n - 1))];
    double ppl_r = exp(ts->nll_ref / (double)ts->n), ppl_q = exp(ts->nll_q / (double)ts->n);
    double top1 = (double)ts->same_top1 / (double)ts->n;
    int tl = snprintf(table, cap,
                      "| %s perplexity (%ld tokens) | %.4f | %.4f |\n| %s KL divergence mean | | "
                      "%.6f |\n| %s KL divergence p99 | | %.6f |\n| %s top-1 agreement | | %.2f "
                      "%% |\n",
                      what, ts->n, ppl_r, ppl_q, what, mean, what, p99, what, 100 * top1);
    char key[64];
#define PUT(name, v)                                                                               \
    snprintf(key, sizeof key, "%s%s", prefix, name);                                               \
    cJSON_AddNumberToObject(j, key, v)
    PUT("n_tokens", (double)ts->n);
    PUT("ppl_ref", ppl_r);
    PUT("ppl_quant", ppl_q);
    PUT("kl_mean", mean);
    PUT("kl_p99", p99);
    PUT("top1_agreement", top1);
#undef PUT
    free(ts->kl);
    return tl;
}

int evlm_cmd_quality(int argc, char **argv) {
    cli_model_opts o = {0};
    const char *quant = NULL, *text = NULL, *dataset = NULL, *quant_mmproj = NULL;
    int chunk = 256, max_tokens = 16384, n_predict = 64;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_model_opt(&o, argc, argv, &i)) continue;
        if (!strcmp(a, "-q") || !strcmp(a, "--quant"))
            quant = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--quant-mmproj"))
            quant_mmproj = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--text"))
            text = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dataset"))
            dataset = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--chunk"))
            chunk = cli_int(argc, argv, &i, 2, 1 << 16);
        else if (!strcmp(a, "--max-tokens"))
            max_tokens = cli_int(argc, argv, &i, 0, 1 << 30);
        else if (!strcmp(a, "-n"))
            n_predict = cli_int(argc, argv, &i, 1, 4096);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm quality -m REF -q QUANT [--text FILE] [--dataset FILE.jsonl] "
                   "[--chunk N]\n"
                   "                    [--max-tokens N] [-n N] [-t THREADS] [--json] [--sim DIR]\n"
                   "  --mmproj F / --quant-mmproj F: the vision projector of a llama.cpp GGUF -m / "
                   "-q\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    cli_set_sim(NULL); /* the simulation is the quantized side's only (below) */
    if (!quant && o.sim) quant = o.model;
    if (!quant) cli_die("no quantized model given (-q PATH, or --sim DIR)");
    if (!text && !dataset)
        cli_die("nothing to measure: give --text FILE and/or --dataset FILE.jsonl");
    if (o.n_ctx) chunk = o.n_ctx;
    o.n_ctx = 0; /* the chunk is the context */
    evlm_model *ref = cli_load_model(&o);
    cli_model_opts oq = o;
    oq.model = quant;
    oq.mmproj = quant_mmproj;
    evlm_model *q = cli_load_model(&oq);
    if (evlm_model_n_vocab(ref) != evlm_model_n_vocab(q))
        cli_die("the models' vocabularies differ (%d vs %d tokens)", evlm_model_n_vocab(ref),
                evlm_model_n_vocab(q));
    cJSON *j = cJSON_CreateObject();
    char table[4096];
    int tl =
        snprintf(table, sizeof table, "| metric | %s | %s |\n|---|---:|---:|\n", o.model, quant);
    if (text) {
        text_stats ts = {0};
        eval_text(ref, q, text, &o, chunk, max_tokens, !json, &ts);
        tl += report_kl(&ts, "text", "", table + tl, sizeof table - (size_t)tl, j);
    }
    if (dataset) {
        evlm_gen_params gp = evlm_gen_default_params();
        gp.n_predict = n_predict;
        cli_eval_result rr, rq;
        evlm_context_params cp = cli_context_params(&o, 0);
        text_stats ts = {0};
        eval_answers(ref, q, dataset, &o, !json, &ts);
        tl += report_kl(&ts, "answers", "answer_", table + tl, sizeof table - (size_t)tl, j);
        cli_eval_dataset(ref, dataset, &gp, &cp, false, !json, &rr);
        cli_set_sim(o.sim);
        cli_eval_dataset(q, dataset, &gp, &cp, false, !json, &rq);
        cli_set_sim(NULL);
        double ar = (double)rr.correct / rr.n, aq = (double)rq.correct / rq.n;
        snprintf(table + tl, sizeof table - (size_t)tl,
                 "| accuracy (%d items) | %.1f %% | %.1f %% |\n", rr.n, 100 * ar, 100 * aq);
        cJSON_AddNumberToObject(j, "accuracy_ref", ar);
        cJSON_AddNumberToObject(j, "accuracy_quant", aq);
        cJSON_AddNumberToObject(j, "n_items", rr.n);
        cli_eval_result_free(&rr);
        cli_eval_result_free(&rq);
    }
    if (!json) {
        fputs(table, stdout);
    } else {
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
    }
    cJSON_Delete(j);
    evlm_model_free(q);
    evlm_model_free(ref);
    return 0;
}
