/*
 * cmd_prompt.c - `evlm prompt -m MODEL [--image FILE] -p TEXT [--raw] [--ids-out FILE]
 * [--pixels-out FILE]` and `evlm prompt -m MODEL --detok 1,2,3`: what an outside runner (e.g.
 * scripts/ort_run.mjs over an export-onnx folder) needs from evlm beyond the forward passes.
 * The first form prints {"ids": [...], "n_image_tokens", "n_tiles", "tile"} (with an image also
 * "image_token_id"; Qwen2-VL: "mrope_positions" [3][n] and "mrope_next", the graphs' positions):
 * the prompt's ids exactly as `evlm run` builds them (chat template unless --raw, image markers
 * expanded), optionally the ids as int64 to --ids-out, and the image's pixel_values
 * [n_tiles][3][tile][tile] as raw float32 to --pixels-out (evlm_onnx_image_pixels) and evlm's
 * own image features [rows][hidden] to --features-out (to check a vision graph). The second
 * prints {"text": ...}: the ids detokenized as `evlm run` shows an answer (special tokens
 * skipped). Public API only. Not here: running any model pass beyond evlm's own image encoding
 * inside the prompt (which also checks the image-token count).
 */
#include "cli.h"
#include "evlm_npu.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: evlm prompt -m MODEL [--image FILE] -p TEXT [--raw] [--ids-out FILE]\n"
           "                  [--pixels-out FILE] [--features-out FILE] [--patches-out FILE]\n"
           "       evlm prompt -m MODEL --detok 1,2,3\n"
           "  --ids-out FILE     the prompt ids as int64 little-endian\n"
           "  --pixels-out FILE  the image's pixel_values [tiles][3][S][S] as float32\n"
           "  --features-out FILE  evlm's image features [rows][hidden] as float32\n"
           "  --patches-out FILE  Qwen2-VL: the image's patch rows [t*h*w][patch_dim] as\n"
           "                  float32 (prints \"grid\": [t, h, w])\n"
           "  --detok IDS        print {\"text\": ...} of comma-separated ids\n");
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) cli_die("%s: cannot write", path);
}

static void print_json(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) cli_die("out of memory");
    puts(s);
    free(s);
    cJSON_Delete(j);
}

static int detok(evlm_model *m, const char *list) {
    size_t n = 0, cap = 16;
    int32_t *ids = malloc(sizeof *ids * cap);
    for (const char *p = list; ids && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) cli_die("--detok: '%s' is not a list of ids", list);
        if (n == cap) {
            int32_t *g = realloc(ids, sizeof *ids * (cap *= 2));
            if (!g) break;
            ids = g;
        }
        ids[n++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') cli_die("--detok: '%s' is not a list of ids", list);
    }
    if (!ids) cli_die("out of memory");
    char *text = NULL;
    cli_check(evlm_detokenize(m, ids, n, true, &text));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "text", text);
    print_json(j);
    free(text);
    free(ids);
    return 0;
}

int evlm_cmd_prompt(int argc, char **argv) {
    cli_model_opts o = {0};
    const char *ids_out = NULL, *pixels_out = NULL, *detok_ids = NULL, *features_out = NULL;
    const char *patches_out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_model_opt(&o, argc, argv, &i)) continue;
        if (!strcmp(a, "--ids-out"))
            ids_out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--pixels-out"))
            pixels_out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--features-out"))
            features_out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--patches-out"))
            patches_out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--detok"))
            detok_ids = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!o.model) cli_die("no model given (-m MODEL)");
    if (pixels_out && o.n_images != 1) cli_die("--pixels-out needs exactly one --image");
    if (patches_out && o.n_images != 1) cli_die("--patches-out needs exactly one --image");
    evlm_model *m = cli_load_model(&o);
    if (detok_ids) {
        int rc = detok(m, detok_ids);
        evlm_model_free(m);
        return rc;
    }
    if (!o.prompt) cli_die("no prompt given (-p TEXT)");
    evlm_prompt *pr = cli_prompt(m, &o);
    size_t n;
    const int32_t *ids = evlm_prompt_ids(pr, &n);
    cJSON *j = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(j, "ids");
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    cJSON_AddNumberToObject(j, "n_image_tokens", evlm_prompt_n_image_tokens(pr));
    if (evlm_onnx_prompt_image_token(pr) >= 0)
        cJSON_AddNumberToObject(j, "image_token_id", evlm_onnx_prompt_image_token(pr));
    int32_t next = 0;
    const int32_t *mpos = evlm_onnx_prompt_positions(pr, &next);
    if (mpos) { /* M-RoPE: the graphs' position_ids [3, 1, n] */
        cJSON *mp = cJSON_AddArrayToObject(j, "mrope_positions");
        for (int sec = 0; sec < 3; sec++) {
            cJSON *row = cJSON_CreateArray();
            cJSON_AddItemToArray(mp, row);
            for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber(mpos[(size_t)sec * n + i]));
        }
        cJSON_AddNumberToObject(j, "mrope_next", next);
    }
    if (ids_out) {
        int64_t *w = malloc(sizeof *w * (n ? n : 1));
        if (!w) cli_die("out of memory");
        for (size_t i = 0; i < n; i++) w[i] = ids[i];
        write_all(ids_out, w, sizeof *w * n);
        free(w);
    }
    if (pixels_out) {
        evlm_image_input img = {.path = o.images[0]};
        float *px = NULL;
        int n_tiles = 0, tile = 0;
        cli_check(evlm_onnx_image_pixels(m, &img, &px, &n_tiles, &tile));
        write_all(pixels_out, px, sizeof(float) * 3 * (size_t)n_tiles * (size_t)tile * tile);
        free(px);
        cJSON_AddNumberToObject(j, "n_tiles", n_tiles);
        cJSON_AddNumberToObject(j, "tile", tile);
    }
    if (patches_out) { /* Qwen2-VL: the vision graph's patch rows */
        evlm_image_input img = {.path = o.images[0]};
        float *px = NULL;
        int gt = 0, gh = 0, gw = 0, pd = 0;
        cli_check(evlm_onnx_image_patches(m, &img, &px, &gt, &gh, &gw, &pd));
        write_all(patches_out, px, sizeof(float) * (size_t)gt * (size_t)gh * (size_t)gw * pd);
        free(px);
        cJSON *gr = cJSON_AddArrayToObject(j, "grid");
        cJSON_AddItemToArray(gr, cJSON_CreateNumber(gt));
        cJSON_AddItemToArray(gr, cJSON_CreateNumber(gh));
        cJSON_AddItemToArray(gr, cJSON_CreateNumber(gw));
        cJSON_AddNumberToObject(j, "patch_dim", pd);
    }
    if (features_out) {
        int rows = 0, width = 0;
        const float *f = evlm_onnx_prompt_features(m, pr, &rows, &width);
        write_all(features_out, f, sizeof(float) * (size_t)rows * (size_t)width);
        cJSON_AddNumberToObject(j, "n_feature_rows", rows);
    }
    print_json(j);
    evlm_prompt_free(pr);
    evlm_model_free(m);
    return 0;
}
