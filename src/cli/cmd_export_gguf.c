/*
 * cmd_export_gguf.c - `evlm export-gguf -m DIR -o OUT.gguf [--type f16|bf16|f32] [--format
 * llamacpp|evlm] [--mmproj PATH] [--json] [-q]`: a Hugging Face folder as float GGUF, by default
 * in llama.cpp's layout (the language model in OUT.gguf, a VLM's vision projector in
 * mmproj-OUT.gguf): the file convert_hf_to_gguf.py would write, for llama.cpp and its
 * llama-quantize. The conversion is evlm_quantize's with a float type (no quantization).
 */
#include "cli.h"
#include "evlm_compress.h"

#include <stdio.h>
#include <string.h>

int evlm_cmd_export_gguf(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = "llamacpp", *mmproj = NULL;
    char mmproj_buf[4096];
    bool json = false, show = true;
    evlm_quantize_params p = evlm_quantize_default_params();
    p.type = EVLM_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            in = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--type")) {
            const char *v = cli_value(argc, argv, &i);
            p.type = evlm_type_parse(v);
            if (p.type != EVLM_TYPE_F16 && p.type != EVLM_TYPE_BF16 && p.type != EVLM_TYPE_F32)
                cli_die("--type takes f16, bf16 or f32, not '%s' (evlm quantize writes the "
                        "quantized types)",
                        v);
        } else if (cli_format_opt(&format, &mmproj, argc, argv, &i))
            ;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            p.n_threads = cli_int(argc, argv, &i, 1, 512);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
            show = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm export-gguf -m DIR -o OUT.gguf [--type f16|bf16|f32] [options]\n"
                   "  --type T              the matrices' float type (f16, the default; 1-D "
                   "tensors are f32)\n"
                   "  --format llamacpp     (default) llama.cpp's layout: OUT.gguf and, for a VLM, "
                   "mmproj-OUT.gguf\n"
                   "  --mmproj PATH         the vision projector's file name\n"
                   "  --format evlm         evlm's single file (also keeps the Hugging Face "
                   "files)\n"
                   "  -t THREADS, --json, -q (no progress bar)\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!in) cli_die("no model given (-m DIR)");
    if (!out) cli_die("no output file given (-o OUT.gguf)");
    if (mmproj && strcmp(format, "llamacpp")) cli_die("--mmproj goes with --format llamacpp");
    if (!strcmp(format, "llamacpp"))
        p.mmproj = mmproj ? mmproj : cli_mmproj_default(out, mmproj_buf, sizeof mmproj_buf);
    p.vision = p.type;
    show = show && !json;
    p.progress = cli_quant_bar;
    p.user = &show;
    evlm_quantize_report r;
    cli_check(evlm_quantize(in, out, &p, &r));
    cli_quant_report(out, &r, json);
    evlm_quantize_report_free(&r);
    return 0;
}
