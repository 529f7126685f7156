/*
 * cmd_info.c - `evlm info -m PATH [--json]`: architecture, parameter count and every tensor
 * with its dtype, shape and bytes. PATH is a model folder, a .safetensors / index file or a .gguf.
 */
#include "cli/cli.h"
#include "core/file.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void shape_str(const evlm_tensor *t, char *buf, size_t cap) {
    /* PyTorch order (outermost first), as users see it in transformers */
    size_t o = 0;
    buf[0] = 0;
    for (int d = t->n_dims - 1; d >= 0 && o < cap; d--)
        o += (size_t)snprintf(buf + o, cap - o, d == t->n_dims - 1 ? "%lld" : ", %lld", (long long)t->ne[d]);
}

int evlm_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: evlm info -m PATH [--json]\n");
            return 0;
        } else cli_die("unknown option '%s'", argv[i]);
    }
    if (!path) cli_die("no model given (-m PATH)");
    struct stat st;
    if (stat(path, &st) != 0) cli_die("%s: no such file or folder", path);
    bool have_cfg = false;
    evlm_llama_config cfg;
    if (S_ISDIR(st.st_mode)) {
        char cfg_path[4096];
        cli_check(evlm_path_join(cfg_path, sizeof cfg_path, path, "config.json"));
        if (evlm_file_exists(cfg_path)) {
            cli_check(evlm_llama_config_load(path, &cfg));
            have_cfg = true;
        }
    }
    evlm_weights *w;
    FILE *f = S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
    char magic[4] = {0};
    bool gguf = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    if (gguf) { /* the config travels inside the file */
        evlm_gguf *g;
        cli_check(evlm_gguf_open(path, &g));
        const char *text;
        size_t len;
        if (evlm_gguf_file_text(g, "config.json", &text, &len) == EVLM_OK) {
            cli_check(evlm_llama_config_parse(path, text, len, NULL, 0, &cfg));
            have_cfg = true;
        }
        cli_check(evlm_gguf_weights(g, &w));
        evlm_gguf_close(g);
    } else {
        cli_check(evlm_weights_open(path, &w));
    }
    size_t n = evlm_weights_count(w);
    long long params = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        params += evlm_tensor_nelements(t);
        bytes += (long long)evlm_tensor_nbytes(t);
    }
    char shape[128];
    if (json) {
        printf("{\"path\": \"%s\"", path);
        if (have_cfg)
            printf(", \"architecture\": \"%s\", \"model_type\": \"%s\", \"n_layers\": %d, \"hidden_size\": %d, "
                   "\"n_heads\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, "
                   "\"vocab_size\": %d, \"rope_theta\": %g, \"tie_word_embeddings\": %s",
                   cfg.architecture, cfg.model_type, cfg.n_layers, cfg.hidden_size, cfg.n_heads,
                   cfg.n_kv_heads, cfg.head_dim, cfg.intermediate_size, cfg.vocab_size, cfg.rope_theta,
                   cfg.tie_word_embeddings ? "true" : "false");
        printf(", \"n_params\": %lld, \"n_bytes\": %lld, \"tensors\": [", params, bytes);
        for (size_t i = 0; i < n; i++) {
            const evlm_tensor *t = evlm_weights_at(w, i);
            shape_str(t, shape, sizeof shape);
            printf("%s{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [%s], \"bytes\": %zu}", i ? ", " : "",
                   t->name, evlm_type_name(t->type), shape, evlm_tensor_nbytes(t));
        }
        printf("]}\n");
    } else {
        printf("path:         %s\n", path);
        if (have_cfg) {
            printf("architecture: %s (%s)\n", cfg.architecture, cfg.model_type);
            printf("text model:   %d layers, hidden %d, %d heads / %d kv heads, head_dim %d, ffn %d, "
                   "vocab %d, rope theta %g%s\n",
                   cfg.n_layers, cfg.hidden_size, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                   cfg.intermediate_size, cfg.vocab_size, cfg.rope_theta,
                   cfg.tie_word_embeddings ? ", tied embeddings" : "");
        }
        printf("parameters:   %lld (%zu tensors, %.2f MB)\n", params, n, (double)bytes / 1e6);
        printf("\n%-64s %-5s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
        for (size_t i = 0; i < n; i++) {
            const evlm_tensor *t = evlm_weights_at(w, i);
            shape_str(t, shape, sizeof shape);
            printf("%-64s %-5s %-16s %12zu\n", t->name, evlm_type_name(t->type), shape, evlm_tensor_nbytes(t));
        }
    }
    evlm_weights_free(w);
    return 0;
}
