/*
 * cmd_prune_structured.c - `evlm prune --structured -m DIR -o OUT [--heads N]
 * [--ffn N] [--layers N] [--vision-heads N] [--vision-ffn N] [--vision-layers N] | --ratio P
 * [--calib FILE ...] [--calib-tokens N] [--calib-items N] [--threads N] [--json]`: structured
 * pruning (evlm_prune_structured) to a Hugging Face folder, or a GGUF file when OUT ends in
 * .gguf, with a progress bar on stderr and a report of what was removed per layer. Each N is
 * what remains. evlm prune hands every command line with --structured here.
 * Not here: unstructured / N:M pruning (evlm prune).
 */
#include "cli.h"
#include "evlm_compress.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: evlm prune --structured -m DIR -o OUT_DIR|OUT.gguf [options]\n"
           "  --heads N          attention heads kept per decoder layer (a multiple of the kv\n"
           "                     heads: heads go inside each group; else of the group size:\n"
           "                     whole kv groups go)\n"
           "  --ffn N            FFN width kept\n"
           "  --layers N         decoder layers kept (the least influential go)\n"
           "  --vision-ffn N     SigLIP MLP width kept; --vision-layers N: its first N layers\n"
           "  --vision-heads N   (refused: SigLIP's head_dim follows hidden_size / heads)\n"
           "  --ratio P          instead: remove fraction P of the decoder's non-embedding\n"
           "                     parameters, heads / channels / layers chosen by importance\n"
           "  --calib FILE       calibration text, or a .jsonl of {image, question, answer}\n"
           "                     (repeatable; needed to remove anything from the decoder)\n"
           "  --calib-tokens N   text tokens used (2048); --calib-items N: items used (16)\n"
           "  -t THREADS, --json, -q (no progress bar)\n");
}

static void print_mask(const uint8_t *m, int n, int max_list) {
    int removed = 0;
    for (int i = 0; i < n; i++) removed += !m[i];
    if (!removed) {
        printf("none");
        return;
    }
    if (removed > max_list) {
        printf("%d", removed);
        return;
    }
    const char *sep = "";
    for (int i = 0; i < n; i++)
        if (!m[i]) {
            printf("%s%d", sep, i);
            sep = ",";
        }
}

int evlm_cmd_prune_structured(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    evlm_prune_structured_params p = evlm_prune_structured_default_params();
    bool json = false, show = true, structured = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            in = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--structured"))
            structured = true;
        else if (!strcmp(a, "--heads"))
            p.heads = cli_int(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--ffn"))
            p.ffn = cli_int(argc, argv, &i, 1, 1 << 24);
        else if (!strcmp(a, "--layers"))
            p.layers = cli_int(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--vision-heads"))
            p.vision_heads = cli_int(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--vision-ffn"))
            p.vision_ffn = cli_int(argc, argv, &i, 1, 1 << 24);
        else if (!strcmp(a, "--vision-layers"))
            p.vision_layers = cli_int(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--ratio")) {
            p.ratio = cli_double(argc, argv, &i, 0, 1);
            if (!(p.ratio > 0 && p.ratio < 1))
                cli_die("--ratio %g: must be in (0, 1) (the fraction of the decoder's "
                        "non-embedding parameters removed)",
                        p.ratio);
        } else if (cli_calib_opt(&p.calib_text, &p.calib_jsonl, &p.calib_tokens, &p.calib_items,
                                 argc, argv, &i)) {
            /* done: calibration option */
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
    if (!out) cli_die("no output given (-o OUT_DIR or -o OUT.gguf)");
    if (!structured) cli_die("--structured is required (unstructured pruning: evlm prune)");
    if (p.ratio > 0 && (p.heads || p.ffn || p.layers))
        cli_die("give --ratio or --heads / --ffn / --layers, not both");
    bool removes = p.ratio > 0 || p.heads || p.ffn || p.layers;
    if (removes && !p.calib_text && !p.calib_jsonl)
        cli_die("removing decoder heads, channels or layers measures their importance on "
                "calibration data: give --calib FILE");
    show = show && !json;
    p.progress = cli_quant_bar;
    p.user = &show;
    evlm_prune_structured_report r;
    cli_check(evlm_prune_structured(in, out, &p, &r));
    double kept = r.params_before ? (double)r.params_after / (double)r.params_before : 1;
    if (!json) {
        printf("| layer | kept as | influence | heads kept | heads removed | head norm kept | "
               "FFN channels removed | FFN magnitude kept |\n"
               "|---:|---:|---:|---:|---|---:|---:|---:|\n");
        for (int l = 0; l < r.layers_before; l++) {
            const evlm_prune_layer_report *x = &r.layer[l];
            char infl[32] = "", nl[16] = "removed";
            if (x->influence >= 0) snprintf(infl, sizeof infl, "%.4f", x->influence);
            if (x->kept) snprintf(nl, sizeof nl, "%d", x->new_index);
            printf("| %d | %s | %s | %d | ", l, nl, infl, x->heads_kept);
            if (x->kept)
                print_mask(x->head_mask, r.heads_before, 16);
            else
                printf("all");
            printf(" | %.3f | ", x->kept ? x->head_keep : 0.0);
            if (x->kept)
                print_mask(x->ffn_mask, r.ffn_before, 0);
            else
                printf("all");
            printf(" | %.3f |\n", x->kept ? x->ffn_keep : 0.0);
        }
        printf("\n%s: layers %d -> %d, heads %d -> %d (kv %d -> %d), FFN %d -> %d", out,
               r.layers_before, r.layers_after, r.heads_before, r.heads_after, r.kv_heads_before,
               r.kv_heads_after, r.ffn_before, r.ffn_after);
        if (r.vision_layers_before)
            printf(", vision layers %d -> %d, vision FFN %d -> %d", r.vision_layers_before,
                   r.vision_layers_after, r.vision_ffn_before, r.vision_ffn_after);
        printf("\ndecoder non-embedding parameters %lld -> %lld (%.1f %% removed); all "
               "parameters %lld -> %lld",
               (long long)r.params_before, (long long)r.params_after, 100.0 * (1 - kept),
               (long long)r.total_before, (long long)r.total_after);
        if (r.measured) printf("; importance over %d calibration positions", r.n_calib_rows);
        printf("\n");
    } else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddNumberToObject(j, "layers_before", r.layers_before);
        cJSON_AddNumberToObject(j, "layers_after", r.layers_after);
        cJSON_AddNumberToObject(j, "heads_before", r.heads_before);
        cJSON_AddNumberToObject(j, "heads_after", r.heads_after);
        cJSON_AddNumberToObject(j, "kv_heads_before", r.kv_heads_before);
        cJSON_AddNumberToObject(j, "kv_heads_after", r.kv_heads_after);
        cJSON_AddNumberToObject(j, "ffn_before", r.ffn_before);
        cJSON_AddNumberToObject(j, "ffn_after", r.ffn_after);
        cJSON_AddNumberToObject(j, "vision_layers_after", r.vision_layers_after);
        cJSON_AddNumberToObject(j, "vision_ffn_after", r.vision_ffn_after);
        cJSON_AddNumberToObject(j, "params_before", (double)r.params_before);
        cJSON_AddNumberToObject(j, "params_after", (double)r.params_after);
        cJSON_AddNumberToObject(j, "total_before", (double)r.total_before);
        cJSON_AddNumberToObject(j, "total_after", (double)r.total_after);
        cJSON_AddNumberToObject(j, "calib_rows", r.n_calib_rows);
        cJSON *ls = cJSON_AddArrayToObject(j, "layers");
        for (int l = 0; l < r.layers_before; l++) {
            const evlm_prune_layer_report *x = &r.layer[l];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddBoolToObject(o, "kept", x->kept);
            cJSON_AddNumberToObject(o, "new_index", x->new_index);
            cJSON_AddNumberToObject(o, "influence", x->influence);
            cJSON_AddNumberToObject(o, "heads_kept", x->heads_kept);
            cJSON_AddNumberToObject(o, "head_norm_kept", x->head_keep);
            cJSON_AddNumberToObject(o, "ffn_magnitude_kept", x->ffn_keep);
            cJSON *hm = cJSON_AddArrayToObject(o, "heads_removed");
            for (int h = 0; h < r.heads_before; h++)
                if (!x->head_mask[h]) cJSON_AddItemToArray(hm, cJSON_CreateNumber(h));
            cJSON_AddItemToArray(ls, o);
        }
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    }
    evlm_prune_structured_report_free(&r);
    return 0;
}
