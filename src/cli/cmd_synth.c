/*
 * cmd_synth.c - `evlm synth --config CONFIG.json -o OUT_DIR [--dtype bf16|f16|f32] [--text-only]
 * [--seed S] [--tokenizer DIR] [--pattern 2:4]`: a random-weight model for a Hugging Face config,
 * so benchmarks need no downloads (evlm_model_synth: matrices ~ U(-a, a) with the std of N(0,
 * 0.02), norms 1, biases 0, deterministic per seed; the config's tokenizer, chat template and
 * processor files copied, or a byte-level tokenizer synthesized). --text-only writes just the
 * language model of a VLM config as a Llama-style folder; --tokenizer DIR takes the tokenizer files
 * from DIR;
 * --pattern 2:4 zeroes the 2 smallest of every 4 inputs of each decoder matrix (2:4 benchmarks).
 * Not here: which tensors a model has (each family's synth hook in the library).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int evlm_cmd_synth(int argc, char **argv) {
    evlm_synth_params p = evlm_synth_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config"))
            p.config = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            p.out_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dtype"))
            p.dtype = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--pattern")) {
            const char *v = cli_value(argc, argv, &i);
            if (strcmp(v, "2:4")) cli_die("--pattern: only 2:4 is supported, not '%s'", v);
            p.sparse24 = true;
        } else if (!strcmp(a, "--text-only"))
            p.text_only = true;
        else if (!strcmp(a, "--tokenizer"))
            p.tokenizer_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--seed"))
            p.seed = (uint64_t)cli_int(argc, argv, &i, 0, 1 << 30);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm synth --config CONFIG.json -o OUT_DIR [--dtype bf16|f16|f32] "
                   "[--text-only] [--seed S] [--pattern 2:4]\n"
                   "                  [--tokenizer DIR]   (tokenizer files from DIR instead of "
                   "the config's folder)\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!p.config || !p.out_dir) cli_die("need --config CONFIG.json and -o OUT_DIR");
    if (strcmp(p.dtype, "bf16") && strcmp(p.dtype, "f16") && strcmp(p.dtype, "f32"))
        cli_die("--dtype must be bf16, f16 or f32, not '%s'", p.dtype);
    int n = 0;
    size_t bytes = 0;
    cli_check(evlm_model_synth(&p, &n, &bytes));
    fprintf(stderr, "synth: wrote %d tensors, %.1f MB (%s)\n", n, (double)bytes / 1e6, p.dtype);
    fprintf(stderr, "synth: wrote %s\n", p.out_dir);
    return 0;
}
