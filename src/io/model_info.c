/*
 * model_info.c - a model on disk described without loading it (evlm_model_info_*, evlm.h):
 * the text configuration and every tensor's name, type, shape and bytes, from a Hugging Face
 * folder, one .safetensors file or index, or a GGUF file (whose config.json travels inside).
 * Not here: checks that the model can run (evlm_model_load does them), conversion of any kind.
 */
#include "core/file.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/gguf_llamacpp.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "quant/repack.h"
#include "quant/sparse24.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(EVLM_MAX_DIMS <= 4, "evlm_tensor_info.shape holds every dimension of a view");

struct evlm_model_info {
    evlm_weights *w;
    int8_t *s24; /* per tensor: -1 not checked yet, 0 dense, 1 a 2:4 matrix */
    bool have_cfg;
    evlm_text_config cfg;
};

static void text_config(const evlm_decoder_config *c, evlm_text_config *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->architecture, sizeof o->architecture, "%s", c->architecture);
    snprintf(o->model_type, sizeof o->model_type, "%s", c->model_type);
    o->n_layers = c->n_layers;
    o->hidden_size = c->hidden_size;
    o->intermediate_size = c->intermediate_size;
    o->vocab_size = c->vocab_size;
    o->n_heads = c->n_heads;
    o->n_kv_heads = c->n_kv_heads;
    o->head_dim = c->head_dim;
    o->rope_theta = c->rope_theta;
    o->tie_word_embeddings = c->tie_word_embeddings;
}

/* The weights (and config.json when the path has one) of a folder, safetensors file or GGUF. */
static evlm_status open_info(const char *path, evlm_model_info *info) {
    struct stat st;
    if (stat(path, &st) != 0) return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    evlm_decoder_config cfg;
    if (S_ISDIR(st.st_mode)) {
        char cfg_path[4096];
        EVLM_TRY(evlm_path_join(cfg_path, sizeof cfg_path, path, "config.json"));
        if (evlm_file_exists(cfg_path)) {
            EVLM_TRY(evlm_decoder_config_load(path, &cfg));
            text_config(&cfg, &info->cfg);
            info->have_cfg = true;
        }
    }
    FILE *f = S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
    char magic[4] = {0};
    bool gguf = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    if (!gguf) return evlm_weights_open(path, &info->w);
    evlm_llamacpp *g; /* evlm's file, or llama.cpp's (with mmproj-<name> beside it) */
    EVLM_TRY(evlm_llamacpp_open(path, NULL, &g));
    const char *text;
    size_t len;
    evlm_status s = EVLM_OK;
    if (evlm_llamacpp_file(g, "config.json", &text, &len) == EVLM_OK) {
        s = evlm_decoder_config_parse(path, text, len, NULL, 0, &cfg);
        if (s == EVLM_OK) {
            text_config(&cfg, &info->cfg);
            info->have_cfg = true;
        }
    }
    if (s == EVLM_OK) s = evlm_llamacpp_weights(g, &info->w);
    evlm_llamacpp_free(g); /* the weight set keeps the maps */
    return s;
}

evlm_status evlm_model_info_open(const char *path, evlm_model_info **out) {
    *out = NULL;
    evlm_model_info *info = calloc(1, sizeof *info);
    if (!info) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status s = open_info(path, info);
    if (s != EVLM_OK) {
        evlm_model_info_free(info);
        return s;
    }
    evlm__clear_error(); /* a GGUF without an embedded config.json is no error */
    *out = info;
    return EVLM_OK;
}

void evlm_model_info_free(evlm_model_info *info) {
    if (!info) return;
    evlm_weights_free(info->w);
    free(info->s24);
    free(info);
}

const evlm_text_config *evlm_model_info_config(const evlm_model_info *info) {
    return info->have_cfg ? &info->cfg : NULL;
}

size_t evlm_model_info_n_tensors(const evlm_model_info *info) {
    return evlm_weights_count(info->w);
}

evlm_tensor_info evlm_model_info_tensor(const evlm_model_info *info, size_t i) {
    evlm_tensor_info ti = {0};
    if (i >= evlm_weights_count(info->w)) return ti;
    const evlm_tensor *t = evlm_weights_at(info->w, i);
    ti.name = t->name;
    ti.type = t->type;
    ti.n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims && d < 4; d++) ti.shape[d] = t->ne[t->n_dims - 1 - d];
    ti.bytes = ti.mem_bytes = evlm_tensor_nbytes(t);
    /* the runtime's 2:4 test (io/weights.c): a 2-D matrix of 16 rows or more with a 2:4 form */
    evlm_model_info *mi = (evlm_model_info *)(uintptr_t)info; /* the cache only */
    if (!mi->s24 && (mi->s24 = malloc(evlm_weights_count(info->w))))
        memset(mi->s24, -1, evlm_weights_count(info->w));
    if (mi->s24 && mi->s24[i] < 0) {
        evlm_type st = evlm_type_s24(t->type);
        mi->s24[i] = st != EVLM_TYPE_COUNT && t->n_dims == 2 && t->ne[1] >= EVLM_R16 &&
                     t->nb[1] == evlm_row_bytes(t->type, t->ne[0]) &&
                     evlm_s24_check(t->type, t->data, t->nb[1], t->ne[1], t->ne[0]);
    }
    if (mi->s24 && mi->s24[i] == 1) {
        ti.sparse24 = true;
        ti.mem_bytes = evlm_r16_bytes(evlm_type_s24(t->type), t->ne[1], t->ne[0]);
    }
    return ti;
}
