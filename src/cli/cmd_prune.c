/*
 * cmd_prune.c - `evlm prune -m MODEL -o OUT.gguf [--calib FILE ...]
 * --method magnitude|wanda|sparsegpt (--sparsity S | --pattern N:M) [--keep PATTERN ...]
 * [--vision-sparsity S | --vision-pattern N:M] [--type T] [-t N] [--json] [-q]`: unstructured or
 * N:M pruning of the decoder matrices (and, by magnitude, of the vision tower + connector) into
 * one GGUF file, through the quantize pipeline (evlm_quantize with prune parameters): the
 * matrices keep their source float dtype unless --type asks for another (q8_0 / q4_0 quantize in
 * the same pass: GPTQ after a calibrated method, round to nearest after magnitude). Also the
 * pruning options `evlm quantize` shares (cli_prune_opt).
 * With --structured the command is structured pruning (cmd_prune_structured.c): whole heads,
 * FFN channels and layers.
 */
#include "cli.h"
#include "evlm_compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "N:M" with 0 <= N <= M; the library checks the rest (M dividing 32 and the columns) */
static void parse_pattern(const char *opt, const char *v, int *n, int *m) {
    char *end;
    long a = strtol(v, &end, 10), b = -1;
    if (end != v && *end == ':') {
        const char *s = end + 1;
        b = strtol(s, &end, 10);
        if (end == s) b = -1;
    }
    if (b < 1 || *end || a < 0 || a > b || 32 % b)
        cli_die("%s takes N:M with N <= M and M dividing 32 (2:4, 4:8), not '%s'", opt, v);
    *n = (int)a;
    *m = (int)b;
}

static double parse_sparsity(const char *opt, const char *v) {
    char *end;
    double s = strtod(v, &end);
    if (end == v || *end || !(s >= 0.0 && s < 1.0))
        cli_die("%s takes a fraction in [0, 1), not '%s'", opt, v);
    return s;
}

static evlm_prune_method parse_method(const char *opt, const char *v) {
    if (!strcmp(v, "magnitude")) return EVLM_PRUNE_MAGNITUDE;
    if (!strcmp(v, "wanda")) return EVLM_PRUNE_WANDA;
    if (!strcmp(v, "sparsegpt")) return EVLM_PRUNE_SPARSEGPT;
    cli_die("%s takes magnitude, wanda or sparsegpt, not '%s'", opt, v);
}

bool cli_prune_opt(struct evlm_prune_params *p, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--prune")) {
        p->method = parse_method(a, cli_value(argc, argv, i));
    } else if (!strcmp(a, "--sparsity")) {
        p->sparsity = parse_sparsity(a, cli_value(argc, argv, i));
    } else if (!strcmp(a, "--pattern")) {
        parse_pattern(a, cli_value(argc, argv, i), &p->keep_n, &p->group_m);
    } else if (!strcmp(a, "--vision-sparsity")) {
        p->vision_sparsity = parse_sparsity(a, cli_value(argc, argv, i));
    } else if (!strcmp(a, "--vision-pattern")) {
        parse_pattern(a, cli_value(argc, argv, i), &p->vision_keep_n, &p->vision_group_m);
    } else {
        return false;
    }
    if (p->sparsity > 0 && p->group_m > 0) cli_die("give --sparsity or --pattern, not both");
    if (p->vision_sparsity > 0 && p->vision_group_m > 0)
        cli_die("give --vision-sparsity or --vision-pattern, not both");
    return true;
}

static void usage(void) {
    printf("usage: evlm prune -m DIR -o OUT.gguf --method magnitude|wanda|sparsegpt "
           "(--sparsity S | --pattern N:M) [options]\n"
           "  --calib FILE           calibration text, or a .jsonl of {image, question, answer} "
           "(repeatable); wanda and sparsegpt need it\n"
           "  --sparsity S           fraction of each row of every decoder matrix set to 0 "
           "(unstructured)\n"
           "  --pattern N:M          keep N of every M consecutive inputs (2:4, 4:8)\n"
           "  --keep PATTERN         tensors whose Hugging Face name matches the glob stay dense "
           "(repeatable)\n"
           "  --vision-sparsity S    the vision tower + connector too, by magnitude; or "
           "--vision-pattern N:M\n"
           "  --type T               write the matrices as T (q8_0, q4_0, f16, bf16, f32) instead "
           "of their source dtype;\n"
           "                         q8_0 / q4_0 quantize in the same pass (GPTQ after wanda / "
           "sparsegpt)\n"
           "  --calib-tokens N, --calib-items N, -t THREADS, --json, -q (no progress bar)\n");
}

int evlm_cmd_prune(int argc, char **argv) {
    static const char *const structured_only[] = {
        "--heads",      "--ffn",           "--layers", "--vision-heads",
        "--vision-ffn", "--vision-layers", "--ratio"};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--structured")) return evlm_cmd_prune_structured(argc, argv);
    for (int i = 1; i < argc; i++)
        for (size_t j = 0; j < sizeof structured_only / sizeof *structured_only; j++)
            if (!strcmp(argv[i], structured_only[j]))
                cli_die("%s is an option of structured pruning: add --structured", argv[i]);
    const char *in = NULL, *out = NULL;
    evlm_quantize_params p = evlm_quantize_default_params();
    const char *keep[32];
    int n_keep = 0;
    bool json = false, show = true, method_given = false;
    p.keep_dtype = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            in = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--method")) {
            p.prune.method = parse_method(a, cli_value(argc, argv, &i));
            method_given = true;
        } else if (!strcmp(a, "--prune"))
            cli_die("unknown option '%s' (the pruning method is --method)", a);
        else if (cli_prune_opt(&p.prune, argc, argv, &i))
            ;
        else if (!strcmp(a, "--type")) {
            const char *v = cli_value(argc, argv, &i);
            evlm_type t = evlm_type_parse(v);
            if (t != EVLM_TYPE_Q8_0 && t != EVLM_TYPE_Q4_0 && t != EVLM_TYPE_F16 &&
                t != EVLM_TYPE_BF16 && t != EVLM_TYPE_F32)
                cli_die("--type takes q8_0, q4_0, f16, bf16 or f32, not '%s' (q4_1 has no exact "
                        "zero)",
                        v);
            p.type = t;
            p.keep_dtype = false;
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
            usage();
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!in) cli_die("no model given (-m DIR)");
    if (!out) cli_die("no output file given (-o OUT.gguf)");
    if (!method_given) cli_die("no --method given (magnitude, wanda or sparsegpt)");
    if (p.prune.sparsity == 0 && p.prune.group_m == 0)
        cli_die("give --sparsity S or --pattern N:M");
    bool calibrated = p.prune.method != EVLM_PRUNE_MAGNITUDE;
    if (calibrated && !p.calib_text && !p.calib_jsonl)
        cli_die("--method %s needs calibration data (--calib FILE); magnitude needs none",
                p.prune.method == EVLM_PRUNE_WANDA ? "wanda" : "sparsegpt");
    if (!p.keep_dtype) {
        bool quant = p.type == EVLM_TYPE_Q8_0 || p.type == EVLM_TYPE_Q4_0;
        p.vision = quant ? EVLM_TYPE_Q8_0 : EVLM_TYPE_F16;
        if (quant && calibrated) p.method = EVLM_QMETHOD_GPTQ; /* one pass with the pruning */
    }
    p.prune.keep = keep;
    p.prune.n_keep = n_keep;
    show = show && !json;
    p.progress = cli_quant_bar;
    p.user = &show;
    evlm_quantize_report r;
    cli_check(evlm_quantize(in, out, &p, &r));
    cli_quant_report(out, &r, json);
    evlm_quantize_report_free(&r);
    return 0;
}
