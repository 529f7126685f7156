/*
 * cmd_quantize.c - `evlm quantize -m DIR -o OUT.gguf --type q8_0|q4_0|q4_1|q4_k|q5_k|q6_k|q4_k_m
 * [--calib FILE ...]
 * [--method rtn|awq|gptq] [--keep PATTERN[=TYPE] ...] [--target-bpw X | --max-size MB]
 * [--vision q8_0|q4_0|q4_1|f16] [--calib-tokens N] [--calib-items N] [--json]
 * [--prune magnitude|wanda|sparsegpt --sparsity S | --pattern N:M ...] [--format llamacpp
 * [--mmproj PATH]]`: one GGUF file (or llama.cpp's pair: the language model + mmproj-OUT.gguf)
 * with a per-tensor report (type, method, output error on calibration rows, sensitivity) and a
 * progress bar on stderr. --calib takes a text file or a .jsonl dataset (repeatable).
 */
#include "cli.h"
#include "evlm_compress.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a type evlm_quantize_row can write, by its ggml name (q4_0, bf16, ...; the k-quants also in
 * lower case: q4_k as ggml's q4_K) */
static bool parse_type(const char *s, evlm_type *t) {
    static const struct {
        const char *name;
        evlm_type t;
    } kq[] = {{"q4_k", EVLM_TYPE_Q4_K}, {"q5_k", EVLM_TYPE_Q5_K}, {"q6_k", EVLM_TYPE_Q6_K}};
    for (size_t i = 0; i < sizeof kq / sizeof *kq; i++)
        if (!strcmp(s, kq[i].name)) {
            *t = kq[i].t;
            return true;
        }
    evlm_type f = evlm_type_parse(s);
    if (f == EVLM_TYPE_COUNT) return false;
    *t = f;
    return true;
}

void cli_quant_bar(void *user, const char *stage, int done, int total) {
    bool *on = user;
    if (!*on) return;
    int width = 30, fill = total > 0 ? (int)((long)width * done / total) : width;
    fprintf(stderr, "\r%-12s [%.*s%*s] %d/%d", stage, fill, "##############################",
            width - fill, "", done, total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static const char *tname(evlm_type t) {
    return evlm_type_name(t);
}

static bool is_kquant(evlm_type t) {
    return t == EVLM_TYPE_Q4_K || t == EVLM_TYPE_Q5_K || t == EVLM_TYPE_Q6_K;
}

static bool is_quant(evlm_type t) {
    return t == EVLM_TYPE_Q8_0 || t == EVLM_TYPE_Q4_0 || t == EVLM_TYPE_Q4_1;
}

void cli_quant_report(const char *out, const evlm_quantize_report *r, bool json) {
    double zeros = 0, pruned = 0; /* over the pruned tensors */
    for (int i = 0; i < r->n; i++)
        if (r->t[i].sparsity >= 0) {
            zeros += r->t[i].sparsity * (double)r->t[i].n_elements;
            pruned += (double)r->t[i].n_elements;
        }
    if (!json) {
        printf("| tensor | from | to | method | rel. error | sensitivity (KL) | MB |%s\n"
               "|---|---|---|---|---:|---:|---:|%s\n",
               pruned > 0 ? " sparsity |" : "", pruned > 0 ? "---:|" : "");
        for (int i = 0; i < r->n; i++) {
            const evlm_quant_tensor_report *t = &r->t[i];
            char err[32] = "", kl[32] = "", sp[32] = "";
            if (t->rel_err >= 0) snprintf(err, sizeof err, "%.2e", t->rel_err);
            if (t->kl >= 0) snprintf(kl, sizeof kl, "%.2e", t->kl);
            if (pruned > 0)
                snprintf(sp, sizeof sp, t->sparsity >= 0 ? " %.4f |" : " |", t->sparsity);
            printf("| %s | %s | %s | %s | %s | %s | %.2f |%s\n", t->name, tname(t->from),
                   tname(t->to), t->method, err, kl, (double)t->bytes / 1e6, sp);
        }
        if (pruned > 0)
            printf("\npruned: %.0f of %.0f weights of the pruned matrices are 0 (%.2f %%)", zeros,
                   pruned, 100.0 * zeros / pruned);
        printf("\n%s: %.1f MB -> %.1f MB (%.2fx), %.3f bits per weight", out,
               (double)r->in_bytes / 1e6, (double)r->out_bytes / 1e6,
               r->out_bytes ? (double)r->in_bytes / (double)r->out_bytes : 0, r->bpw);
        if (r->kl_mean >= 0)
            printf("; mean KL vs float %.5f over %d calibration positions", r->kl_mean,
                   r->n_calib_rows);
        if (r->vision_cos >= 0) printf("; vision encoder cosine %.5f", r->vision_cos);
        printf("\n");
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", out);
        cJSON_AddNumberToObject(j, "in_bytes", (double)r->in_bytes);
        cJSON_AddNumberToObject(j, "out_bytes", (double)r->out_bytes);
        cJSON_AddNumberToObject(j, "bpw", r->bpw);
        cJSON_AddNumberToObject(j, "kl_mean", r->kl_mean);
        cJSON_AddNumberToObject(j, "vision_cos", r->vision_cos);
        cJSON_AddNumberToObject(j, "sparsity", pruned > 0 ? zeros / pruned : 0);
        cJSON *ts = cJSON_AddArrayToObject(j, "tensors");
        for (int i = 0; i < r->n; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", r->t[i].name);
            cJSON_AddStringToObject(t, "type", tname(r->t[i].to));
            cJSON_AddStringToObject(t, "method", r->t[i].method);
            cJSON_AddNumberToObject(t, "rel_err", r->t[i].rel_err);
            cJSON_AddNumberToObject(t, "kl", r->t[i].kl);
            cJSON_AddNumberToObject(t, "sparsity", r->t[i].sparsity);
            cJSON_AddNumberToObject(t, "bytes", (double)r->t[i].bytes);
            cJSON_AddItemToArray(ts, t);
        }
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
}

const char *cli_mmproj_default(const char *out, char *buf, size_t cap) {
    const char *slash = strrchr(out, '/');
    size_t dn = slash ? (size_t)(slash - out + 1) : 0;
    int n = snprintf(buf, cap, "%.*smmproj-%s", (int)dn, out, out + dn);
    if (n < 0 || (size_t)n >= cap) cli_die("output path too long");
    return buf;
}

bool cli_format_opt(const char **format, const char **mmproj, int argc, char **argv, int *i) {
    if (!strcmp(argv[*i], "--mmproj")) {
        *mmproj = cli_value(argc, argv, i);
        return true;
    }
    if (strcmp(argv[*i], "--format")) return false;
    *format = cli_value(argc, argv, i);
    if (strcmp(*format, "llamacpp") && strcmp(*format, "evlm"))
        cli_die("--format takes llamacpp or evlm, not '%s'", *format);
    return true;
}

int evlm_cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = "evlm", *mmproj = NULL;
    char mmproj_buf[4096];
    evlm_quantize_params p = evlm_quantize_default_params();
    evlm_quant_keep keep[32];
    char *keep_pat[32];
    int n_keep = 0, n_prune_keep = 0;
    const char *prune_keep[32];
    bool json = false, type_given = false, show = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            in = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--type")) {
            const char *v = cli_value(argc, argv, &i);
            p.kq_mix = !strcmp(v, "q4_k_m"); /* llama.cpp's Q4_K_M mix */
            if (p.kq_mix)
                p.type = EVLM_TYPE_Q4_K;
            else if (!parse_type(v, &p.type) || !(is_quant(p.type) || is_kquant(p.type)))
                cli_die("--type takes q8_0, q4_0, q4_1, q4_k, q5_k, q6_k or q4_k_m, not '%s'", v);
            type_given = true;
        } else if (!strcmp(a, "--vision")) {
            const char *v = cli_value(argc, argv, &i);
            if (!parse_type(v, &p.vision) || (!is_quant(p.vision) && p.vision != EVLM_TYPE_F16))
                cli_die("--vision takes q8_0, q4_0, q4_1 or f16, not '%s'", v);
        } else if (!strcmp(a, "--method")) {
            const char *v = cli_value(argc, argv, &i);
            if (!strcmp(v, "rtn"))
                p.method = EVLM_QMETHOD_RTN;
            else if (!strcmp(v, "awq"))
                p.method = EVLM_QMETHOD_AWQ;
            else if (!strcmp(v, "gptq"))
                p.method = EVLM_QMETHOD_GPTQ;
            else
                cli_die("--method takes rtn, awq or gptq, not '%s'", v);
        } else if (cli_calib_opt(&p.calib_text, &p.calib_jsonl, &p.calib_tokens, &p.calib_items,
                                 argc, argv, &i)) {
            /* done: calibration option */
        } else if (!strcmp(a, "--keep")) {
            if (n_keep == 32) cli_die("at most 32 --keep patterns");
            const char *v = cli_value(argc, argv, &i);
            keep_pat[n_keep] = strdup(v);
            if (!keep_pat[n_keep]) cli_die("out of memory");
            char *eq = strrchr(keep_pat[n_keep], '=');
            evlm_type t = EVLM_TYPE_F16;
            if (eq) {
                *eq = 0;
                if (!parse_type(eq + 1, &t))
                    cli_die("--keep %s: unknown type '%s' (q8_0, q4_0, q4_1, f16, bf16, f32)", v,
                            eq + 1);
            }
            keep[n_keep] = (evlm_quant_keep){keep_pat[n_keep], t};
            n_keep++;
        } else if (!strcmp(a, "--target-bpw"))
            p.target_bpw = cli_double(argc, argv, &i, 1, 32);
        else if (!strcmp(a, "--max-size"))
            p.max_size_mb = cli_double(argc, argv, &i, 0.001, 1e7);
        else if (!strcmp(a, "--lowrank-comp"))
            p.lowrank_comp = cli_int(argc, argv, &i, 0, 1 << 20);
        else if (!strcmp(a, "--lowrank-bpw"))
            p.lowrank_bpw = cli_double(argc, argv, &i, 0, 32);
        else if (!strcmp(a, "--lowrank-type")) {
            const char *v = cli_value(argc, argv, &i);
            if (!parse_type(v, &p.lowrank_type) ||
                (p.lowrank_type != EVLM_TYPE_F16 && p.lowrank_type != EVLM_TYPE_Q8_0))
                cli_die("--lowrank-type takes f16 or q8_0, not '%s'", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            p.n_threads = cli_int(argc, argv, &i, 1, 512);
        else if (cli_prune_opt(&p.prune, argc, argv, &i))
            ;
        else if (!strcmp(a, "--prune-keep")) {
            if (n_prune_keep == 32) cli_die("at most 32 --prune-keep patterns");
            prune_keep[n_prune_keep++] = cli_value(argc, argv, &i);
        } else if (cli_format_opt(&format, &mmproj, argc, argv, &i))
            ;
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
            show = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm quantize -m DIR -o OUT.gguf --type q8_0|q4_0|q4_1 [options]\n"
                   "  --type q4_k|q5_k|q6_k ggml's k-quants (method rtn: ggml's scale search); "
                   "q4_k_m: llama.cpp's\n"
                   "                        Q4_K_M mix (attn v / ffn down of some layers and the "
                   "head at q6_k)\n"
                   "  --calib FILE          calibration text, or a .jsonl of {image, question, "
                   "answer} (repeatable)\n"
                   "  --method rtn|awq|gptq round-to-nearest (default), activation-aware scaling, "
                   "or GPTQ\n"
                   "  --keep PATTERN[=TYPE] tensors whose Hugging Face name matches the glob keep "
                   "TYPE (f16)\n"
                   "  --target-bpw X        mixed precision: raise the most sensitive matrices to "
                   "q8_0 within X bits/weight\n"
                   "  --max-size MB         the same within a file size\n"
                   "  --vision TYPE         vision tower + connector matrices: q8_0 (default), "
                   "q4_0, q4_1, f16\n"
                   "  --prune M --sparsity S | --pattern N:M   prune first (magnitude, wanda, "
                   "sparsegpt; as evlm prune),\n"
                   "                        --prune-keep PATTERN: tensors left dense\n"
                   "  --lowrank-comp R      add a rank-R correction W - Q(W) ~ B A per decoder "
                   "matrix (needs --calib)\n"
                   "  --lowrank-bpw B       ... or the ranks that fit B extra bits per weight\n"
                   "  --lowrank-type T      the correction's factors: f16 (default) or q8_0\n"
                   "  --calib-tokens N      text tokens used (2048); --calib-items N: dataset "
                   "items used (16)\n"
                   "  --format llamacpp     the files llama.cpp runs: OUT.gguf (language model) "
                   "and, for a VLM,\n"
                   "                        mmproj-OUT.gguf (vision projector; --mmproj PATH "
                   "names it); default evlm:\n"
                   "                        one file that also keeps the Hugging Face files\n"
                   "  -t THREADS, --json, -q (no progress bar)\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!in) cli_die("no model given (-m DIR)");
    if (!out) cli_die("no output file given (-o OUT.gguf)");
    if (!type_given) cli_die("no --type given (q8_0, q4_0, q4_1, q4_k, q5_k, q6_k or q4_k_m)");
    if (p.target_bpw > 0 && p.max_size_mb > 0) cli_die("give --target-bpw or --max-size, not both");
    if (p.lowrank_comp > 0 && p.lowrank_bpw > 0)
        cli_die("give --lowrank-comp or --lowrank-bpw, not both");
    if ((p.lowrank_comp > 0 || p.lowrank_bpw > 0) && !p.calib_text && !p.calib_jsonl)
        cli_die("--lowrank-comp / --lowrank-bpw need calibration data (--calib FILE)");
    /* the library names the parameters; the command names its options */
    bool mixed = p.target_bpw > 0 || p.max_size_mb > 0;
    if ((p.method != EVLM_QMETHOD_RTN || mixed) && !p.calib_text && !p.calib_jsonl)
        cli_die("%s needs calibration data (--calib FILE)",
                p.method == EVLM_QMETHOD_AWQ    ? "--method awq"
                : p.method == EVLM_QMETHOD_GPTQ ? "--method gptq"
                                                : "mixed precision");
    p.keep = keep;
    p.n_keep = n_keep;
    if (mmproj && strcmp(format, "llamacpp")) cli_die("--mmproj goes with --format llamacpp");
    if (!strcmp(format, "llamacpp"))
        p.mmproj = mmproj ? mmproj : cli_mmproj_default(out, mmproj_buf, sizeof mmproj_buf);
    if ((p.prune.method == EVLM_PRUNE_WANDA || p.prune.method == EVLM_PRUNE_SPARSEGPT) &&
        !p.calib_text && !p.calib_jsonl)
        cli_die("--prune %s needs calibration data (--calib FILE)",
                p.prune.method == EVLM_PRUNE_WANDA ? "wanda" : "sparsegpt");
    p.prune.keep = prune_keep;
    p.prune.n_keep = n_prune_keep;
    show = show && !json;
    p.progress = cli_quant_bar;
    p.user = &show;
    evlm_quantize_report r;
    cli_check(evlm_quantize(in, out, &p, &r));
    cli_quant_report(out, &r, json);
    evlm_quantize_report_free(&r);
    for (int i = 0; i < n_keep; i++) free(keep_pat[i]);
    return 0;
}
