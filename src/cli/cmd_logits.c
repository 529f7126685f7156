/*
 * cmd_logits.c - `evlm logits -m DIR -p TEXT [--raw] --out FILE`: the logits of every prompt
 * position as little-endian float32 [n_tokens][n_vocab] (written atomically), and
 * {"ids": [...], "n_vocab": V} on stdout.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int evlm_cmd_logits(int argc, char **argv) {
    cli_model_opts o = {0};
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_model_opt(&o, argc, argv, &i)) continue;
        if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "-o"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: evlm logits -m DIR [--image FILE ...] -p TEXT [--raw] --out FILE [-t "
                   "THREADS]\n" CLI_SIM_HELP);
            return 0;
        } else
            cli_die("unknown option '%s'", argv[i]);
    }
    if (!out) cli_die("no output file given (--out FILE)");
    evlm_model *m = cli_load_model(&o);
    evlm_prompt *pr = cli_prompt(m, &o);
    size_t n;
    const int32_t *ids = evlm_prompt_ids(pr, &n);
    evlm_context_params cp = cli_context_params(&o, (int)n);
    if ((size_t)cp.n_ctx < n)
        cli_die("the prompt has %zu tokens, more than the context (%d)", n, cp.n_ctx);
    evlm_context *ctx;
    cli_check(evlm_context_new(m, &cp, &ctx));
    cli_apply_sim(ctx);
    size_t V = (size_t)evlm_model_n_vocab(m);
    float *logits = malloc(sizeof(float) * V * n);
    if (!logits) cli_die("out of memory for %zu x %zu logits", n, V);
    cli_check(evlm_decode_prompt(ctx, pr, logits, true));
    /* the host is little-endian (x86-64, ARM64): float32 bytes are written as they are */
    cli_write_file_atomic(out, logits, sizeof(float) * V * n);
    printf("{\"ids\": [");
    for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    printf("], \"n_vocab\": %zu}\n", V);
    free(logits);
    evlm_prompt_free(pr);
    evlm_context_free(ctx);
    evlm_model_free(m);
    return 0;
}
