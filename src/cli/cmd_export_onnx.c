/*
 * cmd_export_onnx.c - `evlm export-onnx -m MODEL -o DIR [--precision fp32] [--ar N] [--ctx C]
 * [--tiles T]`: the text decoder as static-shape ONNX graphs (AR-N prefill, AR-1 decode, shared
 * weights, manifest.json; include/evlm_npu.h, docs/NPU.md), and a SmolVLM's vision graph. Prints
 * {"dir": ..., "ar": N} on success. Not here: running the graphs (scripts/ort_run.mjs does, in ONNX
 * Runtime).
 */
#include "cli.h"
#include "evlm_npu.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: evlm export-onnx -m MODEL -o DIR [--precision fp32] [--ar N] [--ctx C] [-t "
           "THREADS]\n"
           "  -o DIR        a new (or empty) folder: decoder_arN.onnx, decoder_ar1.onnx,\n"
           "                decoder.weights.bin, manifest.json\n"
           "  --precision   fp32 (the only one so far)\n"
           "  --ar N        tokens of the prefill graph (default 128)\n"
           "  --ctx C       context window of both graphs, > N (default min(1024, trained))\n"
           "  --tiles T     image tiles of the vision graph vision.onnx (Idefics3 / SmolVLM;\n"
           "                default: the most the processor makes of one image; 0: none)\n"
           "  --image-splitting on|off  the processor's tiling (default: its config's)\n");
}

int evlm_cmd_export_onnx(int argc, char **argv) {
    cli_model_opts o = {0};
    evlm_onnx_params p = evlm_onnx_default_params();
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-t") ||
            !strcmp(a, "--threads") || !strcmp(a, "--image-splitting")) {
            cli_model_opt(&o, argc, argv, &i);
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--precision")) {
            p.precision = cli_value(argc, argv, &i);
            if (strcmp(p.precision, "fp32"))
                cli_die("--precision '%s': only fp32 is exported so far", p.precision);
        } else if (!strcmp(a, "--ar"))
            p.ar = cli_int(argc, argv, &i, 2, 8192);
        else if (!strcmp(a, "--tiles")) {
            p.tiles = cli_int(argc, argv, &i, 0, 64);
            if (p.tiles == 0) p.tiles = -1;
        } else if (!strcmp(a, "--ctx"))
            p.ctx = cli_int(argc, argv, &i, 3, 1 << 20);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!o.model) cli_die("no model given (-m MODEL)");
    if (!out) cli_die("no output folder given (-o DIR)");
    if (p.ctx && p.ctx <= p.ar)
        cli_die("--ctx %d must be larger than --ar %d (past + new tokens)", p.ctx, p.ar);
    evlm_model *m = cli_load_model(&o);
    evlm_status st = evlm_export_onnx(m, out, &p);
    evlm_model_free(m);
    cli_check(st);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dir", out);
    cJSON_AddNumberToObject(j, "ar", p.ar);
    if (p.tiles > 0) cJSON_AddNumberToObject(j, "tiles", p.tiles);
    char *s = cJSON_PrintUnformatted(j);
    if (!s) cli_die("out of memory");
    puts(s);
    free(s);
    cJSON_Delete(j);
    return 0;
}
