/*
 * cmd_info.c - `evlm info -m PATH [--json]`: architecture, parameter count and every tensor
 * with its dtype, shape and bytes. PATH is a model folder, a .safetensors / index file or a .gguf.
 * 2:4 matrices (quant/sparse24.h: held in memory as their kept half) are marked, with the bytes a
 * loaded model holds (one pass over each candidate matrix).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void shape_str(const evlm_tensor_info *t, char *buf, size_t cap) {
    /* PyTorch order (outermost first), as users see it in transformers */
    size_t o = 0;
    buf[0] = 0;
    for (int d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, d == 0 ? "%lld" : ", %lld", (long long)t->shape[d]);
}

static long long n_elements(const evlm_tensor_info *t) {
    long long n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

int evlm_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model"))
            path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: evlm info -m PATH [--json]\n");
            return 0;
        } else
            cli_die("unknown option '%s'", argv[i]);
    }
    if (!path) cli_die("no model given (-m PATH)");
    struct stat st;
    if (stat(path, &st) != 0) cli_die("%s: no such file or folder", path);
    evlm_model_info *info;
    cli_check(evlm_model_info_open(path, &info));
    const evlm_text_config *cfg = evlm_model_info_config(info);
    size_t n = evlm_model_info_n_tensors(info);
    long long params = 0, bytes = 0, mem = 0, n24 = 0;
    for (size_t i = 0; i < n; i++) {
        evlm_tensor_info t = evlm_model_info_tensor(info, i);
        params += n_elements(&t);
        bytes += (long long)t.bytes;
        mem += (long long)t.mem_bytes;
        n24 += t.sparse24;
    }
    char shape[128];
    if (json) {
        printf("{\"path\": \"%s\"", path);
        if (cfg)
            printf(
                ", \"architecture\": \"%s\", \"model_type\": \"%s\", \"n_layers\": %d, "
                "\"hidden_size\": %d, "
                "\"n_heads\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, "
                "\"vocab_size\": %d, \"rope_theta\": %g, \"tie_word_embeddings\": %s",
                cfg->architecture, cfg->model_type, cfg->n_layers, cfg->hidden_size, cfg->n_heads,
                cfg->n_kv_heads, cfg->head_dim, cfg->intermediate_size, cfg->vocab_size,
                cfg->rope_theta, cfg->tie_word_embeddings ? "true" : "false");
        printf(
            ", \"n_params\": %lld, \"n_bytes\": %lld, \"n_sparse24\": %lld, \"mem_bytes\": %lld, "
            "\"tensors\": [",
            params, bytes, n24, mem);
        for (size_t i = 0; i < n; i++) {
            evlm_tensor_info t = evlm_model_info_tensor(info, i);
            shape_str(&t, shape, sizeof shape);
            printf("%s{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [%s], \"bytes\": %zu, "
                   "\"sparse24\": %s, \"mem_bytes\": %zu}",
                   i ? ", " : "", t.name, evlm_type_name(t.type), shape, t.bytes,
                   t.sparse24 ? "true" : "false", t.mem_bytes);
        }
        printf("]}\n");
    } else {
        printf("path:         %s\n", path);
        if (cfg) {
            printf("architecture: %s (%s)\n", cfg->architecture, cfg->model_type);
            printf(
                "text model:   %d layers, hidden %d, %d heads / %d kv heads, head_dim %d, ffn %d, "
                "vocab %d, rope theta %g%s\n",
                cfg->n_layers, cfg->hidden_size, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim,
                cfg->intermediate_size, cfg->vocab_size, cfg->rope_theta,
                cfg->tie_word_embeddings ? ", tied embeddings" : "");
        }
        printf("parameters:   %lld (%zu tensors, %.2f MB)\n", params, n, (double)bytes / 1e6);
        if (n24)
            printf(
                "2:4 sparse:   %lld matrices (every group of 4 inputs holds 2 zeros): %.2f MB in "
                "memory with their 2:4 forms (%.3f bytes per weight overall; EVLM_SPARSE=0: "
                "%.2f MB)\n",
                n24, (double)mem / 1e6, params ? (double)mem / (double)params : 0.0,
                (double)bytes / 1e6);
        printf("\n%-64s %-5s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
        for (size_t i = 0; i < n; i++) {
            evlm_tensor_info t = evlm_model_info_tensor(info, i);
            shape_str(&t, shape, sizeof shape);
            printf("%-64s %-5s %-16s %12zu%s\n", t.name, evlm_type_name(t.type), shape, t.bytes,
                   t.sparse24 ? " (2:4)" : "");
        }
    }
    evlm_model_info_free(info);
    return 0;
}
