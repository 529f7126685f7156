/*
 * cmd_plan.c - `evlm plan -m MODEL|CONFIG.json --target T [--precision P] [--ctx C] [--json]`:
 * will the model run on the target's Hexagon NPU (memory against the NPU-addressable memory and
 * the per-graph limit, the part split) and how fast (roofline image encode, time to first token,
 * decode tok/s), through the public planner API (evlm_npu.h). `--targets` prints the table of
 * targets with the source of every number.
 *
 * Not here: the accounting and the targets' numbers (src/npu), any run on a device.
 */
#include "cli.h"
#include "evlm_npu.h"

#include <stdio.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

static void usage(FILE *f) {
    fprintf(f, "usage: evlm plan -m MODEL|CONFIG.json [--target T] [--precision P] [--ctx C] "
               "[--json]\n"
               "       evlm plan --targets\n"
               "  -m, --model PATH   a config.json, a model folder or a GGUF file (no weights "
               "needed)\n"
               "  --target T         sa8295 (default), sa8255, sa8775\n"
               "  --precision P      fp16, w8a16, w8a8, w4a16 (int4 block weights, V69+), w4 (int4 "
               "per-channel,\n"
               "                     fp16 activations); default w4a16, or w4 on V68\n"
               "  -c, --ctx C        context length of the static graphs (default 4096)\n"
               "  --ar N             prompt-processor graph length (default 128)\n"
               "  --prompt N         prompt tokens for the time to first token (default one "
               "chunk)\n"
               "  --tiles N          image tiles per image for the encode estimate (default 1)\n"
               "  --max-parts N      most graph parts the deployment accepts (default: no bound)\n"
               "  --json             one JSON object\n"
               "  --targets          the targets table with the source of every number\n");
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            printf("\\n");
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_targets(bool json) {
    size_t n = evlm_npu_n_targets();
    if (json) printf("[");
    for (size_t i = 0; i < n; i++) {
        const evlm_npu_target_info *t = evlm_npu_target_at(i);
        if (json) {
            printf("%s{\"name\": \"%s\", \"soc\": \"%s\", \"hexagon\": %d, \"tops\": %g, "
                   "\"dram_gb_s\": %g, \"vtcm_mib\": %g, \"graph_limit_bytes\": %lld, "
                   "\"addressable_bytes\": %lld, \"kv_bits\": %d, \"int4_block\": %s, "
                   "\"sources\": ",
                   i ? ", " : "", t->name, t->soc, t->hexagon, t->tops, t->dram_gb_s, t->vtcm_mib,
                   (long long)t->graph_limit, (long long)t->addressable, t->kv_bits,
                   t->int4_block ? "true" : "false");
            json_str(t->sources);
            printf("}");
        } else {
            printf("%s (%s): Hexagon V%d, %g TOPS, %g GB/s, VTCM %g MiB, %.2f GiB per graph, "
                   "%.2f GiB addressable, %d-bit KV, int4 block weights %s\n",
                   t->name, t->soc, t->hexagon, t->tops, t->dram_gb_s, t->vtcm_mib,
                   (double)t->graph_limit / GIB, (double)t->addressable / GIB, t->kv_bits,
                   t->int4_block ? "yes" : "no");
            const char *s = t->sources;
            while (*s) {
                const char *e = strchr(s, '\n');
                int len = e ? (int)(e - s) : (int)strlen(s);
                printf("    %.*s\n", len, s);
                s += len + (e ? 1 : 0);
            }
        }
    }
    if (json) printf("]\n");
}

static void print_json(const char *path, const evlm_plan *p) {
    const evlm_npu_target_info *t = p->target;
    const evlm_plan_calibration *cal = evlm_plan_calibration_point();
    printf("{\"model\": ");
    json_str(path);
    printf(", \"model_type\": ");
    json_str(p->model_type);
    printf(", \"target\": \"%s\", \"soc\": \"%s\", \"hexagon\": %d, \"precision\": \"%s\", "
           "\"n_ctx\": %d, \"ar\": %d, \"n_prompt\": %d, \"n_tiles\": %d",
           t->name, t->soc, t->hexagon, evlm_npu_precision_name(p->precision), p->n_ctx, p->ar,
           p->n_prompt, p->n_tiles);
    printf(", \"params\": {\"layers\": %lld, \"embedding\": %lld, \"head\": %lld, \"vision\": "
           "%lld, \"connector\": %lld, \"total\": %lld}, \"params_file\": %lld",
           (long long)p->params_layers, (long long)p->params_embedding, (long long)p->params_head,
           (long long)p->params_vision, (long long)p->params_connector, (long long)p->params_total,
           (long long)p->params_file);
    printf(", \"fits\": %s, \"why\": ", p->fits ? "true" : "false");
    json_str(p->why);
    printf(", \"weights_bytes\": %lld, \"text_weights_bytes\": %lld, \"vision_weights_bytes\": "
           "%lld, \"kv_bits\": %d, \"kv_bytes\": %lld, \"activation_bytes\": %lld, "
           "\"overhead_bytes\": %lld, \"total_bytes\": %lld, \"limit_bytes\": %lld, "
           "\"graph_limit_bytes\": %lld, \"max_ctx\": %d",
           (long long)p->weights_bytes, (long long)p->text_weights_bytes,
           (long long)p->vision_weights_bytes, p->kv_bits, (long long)p->kv_bytes,
           (long long)p->activation_bytes, (long long)p->overhead_bytes, (long long)p->total_bytes,
           (long long)p->limit_bytes, (long long)p->graph_limit, p->max_ctx);
    printf(", \"parts\": %d, \"vision_parts\": %d, \"part_split\": [", p->n_parts,
           p->n_vision_parts);
    int np = p->n_parts < EVLM_PLAN_MAX_PARTS ? p->n_parts : EVLM_PLAN_MAX_PARTS;
    for (int i = 0; i < np; i++) {
        const evlm_plan_part *q = &p->parts[i];
        printf("%s{\"first_layer\": %d, \"last_layer\": %d, \"embedding\": %s, \"head\": %s, "
               "\"bytes\": %lld}",
               i ? ", " : "", q->first_layer, q->last_layer, q->embedding ? "true" : "false",
               q->head ? "true" : "false", (long long)q->bytes);
    }
    printf("], \"bytes_per_token\": %.0f, \"flops_per_token\": %.0f, \"decode_tok_s\": %.4g, "
           "\"ttft_ms\": %.4g, \"ttft_full_ms\": %.4g, \"image_encode_ms\": %.4g, "
           "\"eff_bandwidth\": %.4g, \"eff_compute\": %.4g, \"calibration\": ",
           p->bytes_per_token, p->flops_per_token, p->decode_tok_s, p->ttft_ms, p->ttft_full_ms,
           p->image_encode_ms, p->eff_bandwidth, p->eff_compute);
    json_str(cal->source);
    printf("}\n");
}

static void print_text(const char *path, const evlm_plan *p) {
    const evlm_npu_target_info *t = p->target;
    const evlm_plan_calibration *cal = evlm_plan_calibration_point();
    printf("model:        %s (%s)\n", path, p->model_type);
    printf("target:       %s (%s, Hexagon V%d, %g TOPS, %g GB/s, VTCM %g MiB)\n", t->name, t->soc,
           t->hexagon, t->tops, t->dram_gb_s, t->vtcm_mib);
    printf("precision:    %s, %d-bit KV cache, context %d, prompt graph AR-%d\n",
           evlm_npu_precision_name(p->precision), p->kv_bits, p->n_ctx, p->ar);
    printf("parameters:   %.1f M: layers %.1f M, embedding %.1f M, head %.1f M",
           (double)p->params_total / 1e6, (double)p->params_layers / 1e6,
           (double)p->params_embedding / 1e6, (double)p->params_head / 1e6);
    if (p->params_vision || p->params_connector)
        printf(", vision %.1f M, connector %.1f M", (double)p->params_vision / 1e6,
               (double)p->params_connector / 1e6);
    if (p->params_file >= 0) printf(" (%.1f M in the tensors)", (double)p->params_file / 1e6);
    printf("\n");
    printf("memory:       weights %.1f MiB + KV %.1f MiB + activations %.1f MiB + overhead %.1f "
           "MiB = %.2f GiB of %.2f GiB\n",
           (double)p->weights_bytes / MIB, (double)p->kv_bytes / MIB,
           (double)p->activation_bytes / MIB, (double)p->overhead_bytes / MIB,
           (double)p->total_bytes / GIB, (double)p->limit_bytes / GIB);
    printf("parts:        %d decoder part%s under %.2f GiB per graph", p->n_parts,
           p->n_parts == 1 ? "" : "s", (double)p->graph_limit / GIB);
    if (p->n_vision_parts)
        printf(", %d vision part%s", p->n_vision_parts, p->n_vision_parts == 1 ? "" : "s");
    printf("\n");
    int np = p->n_parts < EVLM_PLAN_MAX_PARTS ? p->n_parts : EVLM_PLAN_MAX_PARTS;
    for (int i = 0; i < np; i++) {
        const evlm_plan_part *q = &p->parts[i];
        printf("  part %-3d    %s", i + 1, q->embedding ? "embedding" : "");
        if (q->first_layer >= 0)
            printf("%slayers %d-%d", q->embedding ? ", " : "", q->first_layer, q->last_layer);
        if (q->head) printf("%shead", q->embedding || q->first_layer >= 0 ? ", " : "");
        printf(", %.1f MiB\n", (double)q->bytes / MIB);
    }
    printf("fits:         %s: %s\n", p->fits ? "yes" : "no", p->why);
    if (p->max_ctx > 0) printf("largest ctx:  %d\n", p->max_ctx);
    printf("decode:       %.2f tok/s (%.1f MiB read per token)\n", p->decode_tok_s,
           p->bytes_per_token / MIB);
    printf("first token:  %.0f ms for %d prompt tokens, %.0f ms for %d\n", p->ttft_ms, p->n_prompt,
           p->ttft_full_ms, p->n_ctx);
    if (p->image_encode_ms > 0)
        printf("image encode: %.0f ms for %d tile%s\n", p->image_encode_ms, p->n_tiles,
               p->n_tiles == 1 ? "" : "s");
    printf("calibrated:   %.3f of peak bandwidth, %.3f of peak compute, from %s %s on %s\n",
           p->eff_bandwidth, p->eff_compute, cal->model, evlm_npu_precision_name(cal->precision),
           cal->target);
}

int evlm_cmd_plan(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, targets = false;
    evlm_plan_params params = evlm_plan_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--config"))
            path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--target"))
            params.target = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--precision")) {
            const char *v = cli_value(argc, argv, &i);
            if (evlm_npu_precision_parse(v, &params.precision) != EVLM_OK)
                cli_die("--precision %s: takes fp16, w8a16, w8a8, w4a16 or w4", v);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx"))
            params.n_ctx = cli_int(argc, argv, &i, 1, 1 << 24);
        else if (!strcmp(a, "--ar"))
            params.ar = cli_int(argc, argv, &i, 1, 1 << 24);
        else if (!strcmp(a, "--prompt"))
            params.n_prompt = cli_int(argc, argv, &i, 1, 1 << 24);
        else if (!strcmp(a, "--tiles"))
            params.n_tiles = cli_int(argc, argv, &i, 1, 1024);
        else if (!strcmp(a, "--max-parts"))
            params.max_parts = cli_int(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "--targets"))
            targets = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (targets) {
        print_targets(json);
        return 0;
    }
    if (!path) cli_die("no model given (-m MODEL|CONFIG.json)");
    if (!evlm_npu_target_find(params.target)) {
        char names[128] = "";
        for (size_t i = 0; i < evlm_npu_n_targets(); i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "",
                     evlm_npu_target_at(i)->name);
        }
        cli_die("--target %s: unknown target (known: %s)", params.target, names);
    }
    evlm_plan plan;
    cli_check(evlm_plan_model(path, &params, &plan));
    if (json)
        print_json(path, &plan);
    else
        print_text(path, &plan);
    return 0;
}
