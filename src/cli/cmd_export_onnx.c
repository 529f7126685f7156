/*
 * cmd_export_onnx.c - `evlm export-onnx -m MODEL -o DIR [--precision P] [--target T]
 * [--calib FILE] [--method rtn|gptq] [--ar N] [--ctx C] [--tiles T] [--grid HxW] [--parts K]`: the
 * text decoder as static-shape ONNX graphs (AR-N prefill, AR-1 decode, shared weights,
 * manifest.json; include/evlm_npu.h, docs/NPU.md), and a SmolVLM / Qwen2-VL vision graph. Prints
 * {"dir":
 * ..., "ar": N} on success. Not here: running the graphs (scripts/ort_run.mjs does, in ONNX
 * Runtime).
 */
#include "cli.h"
#include "evlm_npu.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf(
        "usage: evlm export-onnx -m MODEL -o DIR [--precision P] [--target T] [--calib FILE]\n"
        "                        [--method rtn|gptq] [--ar N] [--ctx C] [--parts K] [-t THREADS]\n"
        "  -o DIR        a new (or empty) folder: decoder_arN.onnx, decoder_ar1.onnx,\n"
        "                decoder.weights.bin, manifest.json (+ encodings.json for QDQ)\n"
        "  --precision   fp32 (default), fp16 (float16 weights), w8a16, w8a8, w4a16 (QDQ)\n"
        "  --target      sa8295, sa8255, sa8775 or generic (default): KV bits, int4 support\n"
        "  --calib FILE  calibration text or .jsonl dataset (QDQ precisions need it)\n"
        "  --method M    QDQ weights: rtn (round to nearest, default) or gptq (GPTQ onto\n"
        "                the same grids with the Hessian of the --calib tokens)\n"
        "  --calib-tokens N  tokens used (default 2048)\n"
        "  --calib-images  gptq: the .jsonl items once more with their images, so GPTQ's\n"
        "                Hessians see the image-token rows (VLMs; encodings: text only)\n"
        "  --ar N        tokens of the prefill graph (default 128)\n"
        "  --ctx C       context window of both graphs, > N (default min(1024, trained))\n"
        "  --parts K     split the decoder into K parts of even layer ranges (default: as\n"
        "                the target's per-graph limit needs, the planner's split)\n"
        "  --tiles T     image tiles of the vision graph vision.onnx (Idefics3 / SmolVLM;\n"
        "                default: the most the processor makes of one image; 0: none)\n"
        "  --image-splitting on|off  the processor's tiling (default: its config's)\n"
        "  --grid HxW    Qwen2-VL: vision.onnx for images of H x W patches (the grid\n"
        "                `evlm prompt --image` prints; default: no vision graph)\n");
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
        } else if (!strcmp(a, "--target"))
            p.target = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--calib"))
            p.calib = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--method"))
            p.method = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--calib-images"))
            p.calib_images = true;
        else if (!strcmp(a, "--grid")) {
            const char *v = cli_value(argc, argv, &i);
            char tail;
            if (sscanf(v, "%dx%d%c", &p.grid_h, &p.grid_w, &tail) != 2 || p.grid_h < 1 ||
                p.grid_w < 1 || p.grid_h > 4096 || p.grid_w > 4096)
                cli_die("--grid '%s': expected ROWSxCOLS in patches, e.g. 4x6", v);
        } else if (!strcmp(a, "--calib-tokens"))
            p.calib_tokens = cli_int(argc, argv, &i, 2, 1 << 24);
        else if (!strcmp(a, "--ar"))
            p.ar = cli_int(argc, argv, &i, 2, 8192);
        else if (!strcmp(a, "--tiles")) {
            p.tiles = cli_int(argc, argv, &i, 0, 64);
            if (p.tiles == 0) p.tiles = -1;
        } else if (!strcmp(a, "--parts"))
            p.parts = cli_int(argc, argv, &i, 1, 64);
        else if (!strcmp(a, "--ctx"))
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
    if (p.target && strcmp(p.target, "generic")) { /* the planner: does the context fit? */
        evlm_plan_params pp = evlm_plan_default_params();
        pp.target = p.target;
        pp.ar = p.ar;
        pp.n_ctx = p.ctx;
        if (p.precision && strcmp(p.precision, "fp32"))
            cli_check(evlm_npu_precision_parse(p.precision, &pp.precision));
        else
            pp.precision = EVLM_NPU_FP16; /* fp32 graphs run in fp16 on the HTP */
        evlm_plan pl;
        if (pp.precision != EVLM_NPU_W4A16) { /* w4a16 on V68: the export names the limit */
            cli_check(evlm_plan_model(o.model, &pp, &pl));
            if (!pl.fits) cli_die("target %s: %s", p.target, pl.why);
        }
    }
    evlm_model *m = cli_load_model(&o);
    evlm_status st = evlm_export_onnx(m, out, &p);
    evlm_model_free(m);
    cli_check(st);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dir", out);
    cJSON_AddNumberToObject(j, "ar", p.ar);
    if (p.tiles > 0) cJSON_AddNumberToObject(j, "tiles", p.tiles);
    if (p.parts > 0) cJSON_AddNumberToObject(j, "parts", p.parts);
    char *s = cJSON_PrintUnformatted(j);
    if (!s) cli_die("out of memory");
    puts(s);
    free(s);
    cJSON_Delete(j);
    return 0;
}
