/*
 * cmd_quality.c - `evlm quality -m REF -q QUANT [--text FILE] [--dataset FILE.jsonl] [-c CHUNK]
 * [--max-tokens N] [-n N] [-t T] [--json]`: how much a compressed model departs from its
 * reference, as llama-perplexity --kl-divergence measures it.
 *
 * Text: the file is tokenized once (the tokenizer's BOS rule applies), cut into chunks of CHUNK
 * tokens (default 256) evaluated in a fresh context by both models; every position but each
 * chunk's first predicts the next token. Reported: the perplexity of both models, the mean and
 * 99th percentile of KL(P_ref || P_quant) over positions, and how often both pick the same top-1
 * token. Dataset: the accuracy of both models (greedy answers, exact match, as `evlm eval`).
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
    long n, same_top1;
} text_stats;

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
    ts->kl = malloc(sizeof(double) * n_ids);
    if (!lr || !lq || !pr || !pq || !ts->kl) cli_die("out of memory");
    for (size_t at = 0; at + 1 < n_ids; at += (size_t)chunk) {
        int n = (int)(n_ids - at < (size_t)chunk ? n_ids - at : (size_t)chunk);
        if (n < 2) break;
        cli_check(evlm_context_truncate(cr, 0));
        cli_check(evlm_context_truncate(cq, 0));
        cli_check(evlm_decode(cr, ids + at, n, lr, true));
        cli_check(evlm_decode(cq, ids + at, n, lq, true));
        for (int i = 0; i + 1 < n; i++) {
            const float *a = lr + (size_t)i * V, *b = lq + (size_t)i * V;
            log_softmax(a, V, pr);
            log_softmax(b, V, pq);
            int32_t next = ids[at + (size_t)i + 1];
            ts->nll_ref -= pr[next];
            ts->nll_q -= pq[next];
            double kl = 0;
            int ta = 0, tb = 0;
            for (int v = 0; v < V; v++) {
                kl += exp(pr[v]) * (pr[v] - pq[v]);
                if (a[v] > a[ta]) ta = v;
                if (b[v] > b[tb]) tb = v;
            }
            ts->kl[ts->n++] = kl > 0 ? kl : 0;
            ts->same_top1 += ta == tb;
        }
        if (progress) fprintf(stderr, "\rtext: %zu / %zu tokens", at + (size_t)n, n_ids);
    }
    if (progress) fputc('\n', stderr);
    free(lr), free(lq), free(pr), free(pq), free(ids);
    evlm_context_free(cr);
    evlm_context_free(cq);
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
        qsort(ts.kl, (size_t)ts.n, sizeof(double), cmp_double);
        double mean = 0;
        for (long i = 0; i < ts.n; i++) mean += ts.kl[i];
        mean /= (double)ts.n;
        double p99 = ts.kl[(long)(0.99 * (double)(ts.n - 1))];
        double ppl_r = exp(ts.nll_ref / (double)ts.n), ppl_q = exp(ts.nll_q / (double)ts.n);
        double top1 = (double)ts.same_top1 / (double)ts.n;
        tl +=
            snprintf(table + tl, sizeof table - (size_t)tl,
                     "| perplexity (%ld tokens) | %.4f | %.4f |\n| KL divergence mean | | %.6f |\n"
                     "| KL divergence p99 | | %.6f |\n| top-1 agreement | | %.2f %% |\n",
                     ts.n, ppl_r, ppl_q, mean, p99, 100 * top1);
        cJSON_AddNumberToObject(j, "n_tokens", (double)ts.n);
        cJSON_AddNumberToObject(j, "ppl_ref", ppl_r);
        cJSON_AddNumberToObject(j, "ppl_quant", ppl_q);
        cJSON_AddNumberToObject(j, "kl_mean", mean);
        cJSON_AddNumberToObject(j, "kl_p99", p99);
        cJSON_AddNumberToObject(j, "top1_agreement", top1);
        free(ts.kl);
    }
    if (dataset) {
        evlm_gen_params gp = evlm_gen_default_params();
        gp.n_predict = n_predict;
        cli_eval_result rr, rq;
        evlm_context_params cp = cli_context_params(&o, 0);
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
