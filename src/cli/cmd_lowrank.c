/*
 * cmd_lowrank.c - `evlm lowrank -m DIR -o OUT (--rank R | --ratio P) [--method svd|asvd|svd-llm]
 * [--calib FILE ...] [--keep PATTERN ...] [--type f16|f32|bf16|q8_0|q4_0] [--alpha A]
 * [--calib-tokens N] [--calib-items N] [-t N] [--json]`: the decoder matrices factored into two
 * thin matrices (evlm_lowrank), a GGUF file (OUT.gguf) or a Hugging Face folder, with a report
 * per matrix (rank, parameters, relative output error on the calibration rows) and the written
 * model's mean KL against the source. Not here: the algorithms (src/compress/lowrank*.c).
 */
#include "cli.h"
#include "evlm_compress.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *method_name(evlm_lrmethod m) {
    return m == EVLM_LRMETHOD_ASVD ? "asvd" : m == EVLM_LRMETHOD_SVD_LLM ? "svd-llm" : "svd";
}

int evlm_cmd_lowrank(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *keep[32];
    evlm_lowrank_params p = evlm_lowrank_default_params();
    int n_keep = 0;
    bool json = false, show = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            in = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--rank"))
            p.rank = cli_int(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--ratio"))
            p.ratio = cli_double(argc, argv, &i, 1e-6, 0.999999);
        else if (!strcmp(a, "--alpha"))
            p.alpha = cli_double(argc, argv, &i, 1e-3, 4);
        else if (!strcmp(a, "--method")) {
            const char *v = cli_value(argc, argv, &i);
            if (!strcmp(v, "svd"))
                p.method = EVLM_LRMETHOD_SVD;
            else if (!strcmp(v, "asvd"))
                p.method = EVLM_LRMETHOD_ASVD;
            else if (!strcmp(v, "svd-llm"))
                p.method = EVLM_LRMETHOD_SVD_LLM;
            else
                cli_die("--method takes svd, asvd or svd-llm, not '%s'", v);
        } else if (!strcmp(a, "--type")) {
            const char *v = cli_value(argc, argv, &i);
            evlm_type t = evlm_type_parse(v);
            if (t != EVLM_TYPE_F16 && t != EVLM_TYPE_F32 && t != EVLM_TYPE_BF16 &&
                t != EVLM_TYPE_Q8_0 && t != EVLM_TYPE_Q4_0)
                cli_die("--type takes f16, f32, bf16, q8_0 or q4_0, not '%s'", v);
            p.type = t;
        } else if (cli_calib_opt(&p.calib_text, &p.calib_jsonl, &p.calib_tokens, &p.calib_items,
                                 argc, argv, &i)) {
            /* done: calibration option */
        } else if (!strcmp(a, "--keep")) {
            if (n_keep == 32) cli_die("at most 32 --keep patterns");
            keep[n_keep++] = cli_value(argc, argv, &i);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            p.n_threads = cli_int(argc, argv, &i, 1, 512);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
            show = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm lowrank -m DIR -o OUT.gguf|OUT_DIR (--rank R | --ratio P) "
                   "[options]\n"
                   "  --method svd|asvd|svd-llm  plain SVD (default), activation-aware scaling, "
                   "whitening\n"
                   "  --rank R              every decoder matrix at rank R (when that is smaller "
                   "than dense)\n"
                   "  --ratio P             keep fraction P of the decoder matrices' parameters, "
                   "ranks by sensitivity\n"
                   "  --calib FILE          calibration text, or a .jsonl of {image, question, "
                   "answer} (repeatable)\n"
                   "  --keep PATTERN        matrices whose tensor name matches the glob stay "
                   "dense (repeatable)\n"
                   "  --type TYPE           the factors: f16 (default), f32, bf16, q8_0, q4_0\n"
                   "  --alpha A             ASVD's exponent (0.5)\n"
                   "  --calib-tokens N, --calib-items N, -t THREADS, --json, -q\n"
                   "OUT ending in .gguf: a GGUF file; else a Hugging Face folder.\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!in) cli_die("no model given (-m DIR)");
    if (!out) cli_die("no output given (-o OUT.gguf or -o OUT_DIR)");
    if ((p.rank > 0) == (p.ratio > 0)) cli_die("give --rank R or --ratio P (one of them)");
    if (p.method != EVLM_LRMETHOD_SVD && !p.calib_text && !p.calib_jsonl)
        cli_die("--method %s needs calibration data (--calib FILE)", method_name(p.method));
    p.keep = keep;
    p.n_keep = n_keep;
    show = show && !json;
    p.progress = cli_quant_bar;
    p.user = &show;
    evlm_lowrank_report r;
    cli_check(evlm_lowrank(in, out, &p, &r));
    if (!json) {
        printf("| matrix | rows x cols | rank | parameters | rel. output error |\n"
               "|---|---|---:|---:|---:|\n");
        for (int i = 0; i < r.n; i++) {
            const evlm_lowrank_matrix_report *t = &r.t[i];
            char rank[32] = "dense", err[32] = "";
            if (t->rank) {
                snprintf(rank, sizeof rank, "%d", t->rank);
                snprintf(err, sizeof err, "%.3e", t->rel_err);
            }
            printf("| %s | %lld x %lld | %s | %lld | %s |\n", t->name, (long long)t->rows,
                   (long long)t->cols, rank, (long long)t->params, err);
        }
        printf("\n%s (%s): decoder matrices %lld -> %lld parameters (%.3f)", out,
               method_name(p.method), (long long)r.dense_params, (long long)r.params,
               r.dense_params ? (double)r.params / (double)r.dense_params : 0);
        if (r.kl_mean >= 0)
            printf("; mean KL vs the source %.5f over %d calibration positions", r.kl_mean,
                   r.n_calib_rows);
        printf("\n");
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddStringToObject(j, "method", method_name(p.method));
        cJSON_AddNumberToObject(j, "dense_params", (double)r.dense_params);
        cJSON_AddNumberToObject(j, "params", (double)r.params);
        cJSON_AddNumberToObject(j, "kl_mean", r.kl_mean);
        cJSON *ts = cJSON_AddArrayToObject(j, "matrices");
        for (int i = 0; i < r.n; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", r.t[i].name);
            cJSON_AddNumberToObject(t, "rows", (double)r.t[i].rows);
            cJSON_AddNumberToObject(t, "cols", (double)r.t[i].cols);
            cJSON_AddNumberToObject(t, "rank", r.t[i].rank);
            cJSON_AddNumberToObject(t, "params", (double)r.t[i].params);
            cJSON_AddNumberToObject(t, "rel_err", r.t[i].rel_err);
            cJSON_AddItemToArray(ts, t);
        }
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    evlm_lowrank_report_free(&r);
    return 0;
}
