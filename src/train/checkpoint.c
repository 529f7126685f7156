/*
 * checkpoint.c - checkpoint folders and the final Hugging Face folder of a training run (see
 * checkpoint.h). Tensors go through the safetensors writer and reader of src/io; the folder is
 * made atomic here (temporary folder, fsync, rename). Not here: the loop's options (opaque
 * JSON text to this file).
 */
#include "train/checkpoint.h"
#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/hf_export.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int evlm__ckpt_fail_after;

#define CKPT_FORMAT  "evlm-checkpoint"
#define CKPT_VERSION 1

static const char *const moment_file[2] = {"adam_m.safetensors", "adam_v.safetensors"};

/* A float32 view of parameter p's slice of buf (ggml order: ne[0] innermost). */
static evlm_tensor view_of(const evlm_tparam *p, float *buf) {
    evlm_tensor t = {0};
    t.name = p->name;
    t.type = EVLM_TYPE_F32;
    t.n_dims = p->n_dims > 0 ? p->n_dims : 1;
    for (int d = 0; d < EVLM_MAX_DIMS; d++) t.ne[d] = 1;
    for (int d = 0; d < p->n_dims; d++) t.ne[d] = p->shape[p->n_dims - 1 - d];
    evlm_tensor_set_contiguous(&t);
    t.data = buf + p->off;
    return t;
}

static evlm_status sync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return evlm__fail(EVLM_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    return EVLM_OK;
}

static void parent_of(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        out[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(out, cap, ".");
}

static evlm_status fault(int *written, const char *tmp) {
    (*written)++;
    if (evlm__ckpt_fail_after > 0 && *written >= evlm__ckpt_fail_after)
        return evlm__fail(EVLM_ERR_IO, "%s: injected failure after %d files", tmp, *written);
    return EVLM_OK;
}

static char *state_json(const evlm_tparams *tp, const evlm_ckpt_state *st) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(j, "version", CKPT_VERSION);
    char num[32];
    /* 64-bit values as decimal strings: a JSON number (double) would round them */
    snprintf(num, sizeof num, "%" PRId64, st->step);
    cJSON_AddStringToObject(j, "step", num);
    snprintf(num, sizeof num, "%" PRIu64, st->rng);
    cJSON_AddStringToObject(j, "rng", num);
    snprintf(num, sizeof num, "%" PRId64, st->epoch);
    cJSON_AddStringToObject(j, "epoch", num);
    snprintf(num, sizeof num, "%" PRId64, st->pos);
    cJSON_AddStringToObject(j, "pos", num);
    cJSON *opt = cJSON_Parse(st->options_json ? st->options_json : "{}");
    cJSON_AddItemToObject(j, "options", opt ? opt : cJSON_CreateObject());
    cJSON *tr = cJSON_CreateArray();
    for (int i = 0; i < tp->n; i++)
        if (tp->p[i].trainable) cJSON_AddItemToArray(tr, cJSON_CreateString(tp->p[i].name));
    cJSON_AddItemToObject(j, "trainable", tr);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

/* The extra parameter sets (distillation projections, QAT scales) in one file: each parameter's
 * weights under its name, its moments under "<name>.adam_m" / "<name>.adam_v". */
static evlm_status write_extra(const char *tmp, evlm_tparams *const *extra, int n_extra) {
    size_t n = 0, k = 0;
    for (int e = 0; e < n_extra; e++) n += (size_t)extra[e]->n;
    if (n == 0) return EVLM_OK;
    evlm_tensor *views = malloc(sizeof *views * 3 * n);
    char(*names)[176] = malloc(sizeof *names * 3 * n);
    if (!views || !names) {
        free(views);
        free(names);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", tmp);
    }
    for (int e = 0; e < n_extra; e++)
        for (int i = 0; i < extra[e]->n; i++) {
            const evlm_tparam *p = &extra[e]->p[i];
            float *buf[3] = {extra[e]->w, extra[e]->m, extra[e]->v};
            const char *suffix[3] = {"", ".adam_m", ".adam_v"};
            for (int b = 0; b < 3; b++, k++) {
                snprintf(names[k], sizeof names[k], "%s%s", p->name, suffix[b]);
                views[k] = view_of(p, buf[b]);
                views[k].name = names[k];
            }
        }
    char path[4096];
    evlm_status s = evlm_path_join(path, sizeof path, tmp, "extra.safetensors");
    if (s == EVLM_OK) s = evlm_safetensors_write(path, views, k);
    free(views);
    free(names);
    return s;
}

static evlm_status fill(const char *tmp, const evlm_tparams *tp, evlm_tparams *const *extra,
                        int n_extra, const evlm_ckpt_state *st) {
    char path[4096];
    int written = 0;
    EVLM_TRY(write_extra(tmp, extra, n_extra));
    evlm_tensor *views = malloc(sizeof *views * (size_t)(tp->n > 0 ? tp->n : 1));
    if (!views) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", tmp);
    evlm_status s = evlm_path_join(path, sizeof path, tmp, "weights.safetensors");
    for (int i = 0; i < tp->n && s == EVLM_OK; i++) views[i] = view_of(&tp->p[i], tp->w);
    if (s == EVLM_OK) s = evlm_safetensors_write(path, views, (size_t)tp->n);
    if (s == EVLM_OK) s = fault(&written, tmp);
    for (int k = 0; k < 2 && s == EVLM_OK; k++) {
        size_t n = 0;
        for (int i = 0; i < tp->n; i++)
            if (tp->p[i].trainable) views[n++] = view_of(&tp->p[i], k ? tp->v : tp->m);
        s = evlm_path_join(path, sizeof path, tmp, moment_file[k]);
        if (s == EVLM_OK) s = evlm_safetensors_write(path, views, n);
        if (s == EVLM_OK) s = fault(&written, tmp);
    }
    free(views);
    EVLM_TRY(s);
    char *js = state_json(tp, st);
    if (!js) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", tmp);
    s = evlm_path_join(path, sizeof path, tmp, "state.json");
    if (s == EVLM_OK) s = evlm_write_file_atomic(path, js, strlen(js));
    free(js);
    if (s == EVLM_OK) s = fault(&written, tmp);
    EVLM_TRY(s);
    return sync_path(tmp);
}

evlm_status evlm_ckpt_save(const char *dir, const evlm_tparams *tp, const evlm_ckpt_state *st) {
    return evlm_ckpt_save_ex(dir, tp, NULL, 0, st);
}

evlm_status evlm_ckpt_save_ex(const char *dir, const evlm_tparams *tp, evlm_tparams *const *extra,
                              int n_extra, const evlm_ckpt_state *st) {
    char tmp[4096], old[4096 + 16], parent[4096];
    struct stat sb;
    bool exists = lstat(dir, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode))
        return evlm__fail(EVLM_ERR_ARG, "%s exists and is not a checkpoint folder", dir);
    EVLM_TRY(evlm_hf_temp_dir(dir, tmp, sizeof tmp));
    evlm_status s = fill(tmp, tp, extra, n_extra, st);
    if (s == EVLM_OK && exists) {
        /* an old checkpoint moves aside (rename onto an empty folder of a fresh name) */
        char base[4096 + 8];
        snprintf(base, sizeof base, "%s.old", dir);
        s = evlm_hf_temp_dir(base, old, sizeof old);
        if (s == EVLM_OK && rename(dir, old) != 0) {
            s = evlm__fail(EVLM_ERR_IO, "%s: cannot move the previous checkpoint aside: %s", dir,
                           strerror(errno));
            rmdir(old);
        }
    }
    if (s == EVLM_OK && rename(tmp, dir) != 0) {
        s = evlm__fail(EVLM_ERR_IO, "%s: rename from %s: %s", dir, tmp, strerror(errno));
        if (exists) rename(old, dir); /* put the previous one back */
    }
    if (s != EVLM_OK) {
        evlm_hf_remove_dir(tmp);
        return s;
    }
    if (exists) evlm_hf_remove_dir(old);
    parent_of(dir, parent, sizeof parent);
    return sync_path(parent);
}

/* ---- load ---------------------------------------------------------------------------------- */

static const evlm_tparam *find_param(const evlm_tparams *tp, const char *name) {
    for (int i = 0; i < tp->n; i++)
        if (!strcmp(tp->p[i].name, name)) return &tp->p[i];
    return NULL;
}

static evlm_status json_i64(const cJSON *j, const char *key, const char *file, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    char *end = NULL;
    if (cJSON_IsString(v)) {
        errno = 0;
        long long x = strtoll(v->valuestring, &end, 10);
        if (errno == 0 && end != v->valuestring && !*end) {
            *out = x;
            return EVLM_OK;
        }
    }
    return evlm__fail(EVLM_ERR_FORMAT, "%s: \"%s\" missing or not an integer string", file, key);
}

/* Copies every tensor of file that tp selects (all, or the trainable ones) into buf. */
static evlm_status read_tensors(const char *dir, const char *name, evlm_tparams *tp, float *buf,
                                bool trainable_only) {
    char path[4096];
    EVLM_TRY(evlm_path_join(path, sizeof path, dir, name));
    evlm_weights *ws;
    EVLM_TRY(evlm_weights_open(path, &ws));
    evlm_status s = EVLM_OK;
    size_t want = 0;
    for (int i = 0; i < tp->n && s == EVLM_OK; i++) {
        const evlm_tparam *p = &tp->p[i];
        if (trainable_only && !p->trainable) continue;
        want++;
        const evlm_tensor *t = evlm_weights_find(ws, p->name);
        if (!t)
            s = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor %s missing", path, p->name);
        else if (t->type != EVLM_TYPE_F32 || (size_t)evlm_tensor_nelements(t) != p->n)
            s = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor %s is not float32 of %zu elements", path,
                           p->name, p->n);
        else
            memcpy(buf + p->off, t->data, p->n * sizeof(float));
    }
    if (s == EVLM_OK && evlm_weights_count(ws) != want)
        s = evlm__fail(EVLM_ERR_FORMAT, "%s: %zu tensors, the model being trained has %zu", path,
                       evlm_weights_count(ws), want);
    evlm_weights_free(ws);
    return s;
}

static evlm_status read_extra(const char *dir, evlm_tparams *const *extra, int n_extra) {
    size_t want = 0;
    for (int e = 0; e < n_extra; e++) want += 3 * (size_t)extra[e]->n;
    if (want == 0) return EVLM_OK;
    char path[4096];
    EVLM_TRY(evlm_path_join(path, sizeof path, dir, "extra.safetensors"));
    if (!evlm_file_exists(path))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s missing: the checkpoint has no distillation projections / QAT "
                          "scales, this run has",
                          path);
    evlm_weights *ws;
    EVLM_TRY(evlm_weights_open(path, &ws));
    evlm_status s = EVLM_OK;
    for (int e = 0; e < n_extra && s == EVLM_OK; e++)
        for (int i = 0; i < extra[e]->n && s == EVLM_OK; i++) {
            const evlm_tparam *p = &extra[e]->p[i];
            float *buf[3] = {extra[e]->w, extra[e]->m, extra[e]->v};
            const char *suffix[3] = {"", ".adam_m", ".adam_v"};
            for (int b = 0; b < 3 && s == EVLM_OK; b++) {
                char name[176];
                snprintf(name, sizeof name, "%s%s", p->name, suffix[b]);
                const evlm_tensor *t = evlm_weights_find(ws, name);
                if (!t)
                    s = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor %s missing", path, name);
                else if (t->type != EVLM_TYPE_F32 || (size_t)evlm_tensor_nelements(t) != p->n)
                    s = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor %s is not float32 of %zu elements",
                                   path, name, p->n);
                else
                    memcpy(buf[b] + p->off, t->data, p->n * sizeof(float));
            }
        }
    if (s == EVLM_OK && evlm_weights_count(ws) != want)
        s = evlm__fail(EVLM_ERR_FORMAT, "%s: %zu tensors, this run has %zu", path,
                       evlm_weights_count(ws), want);
    evlm_weights_free(ws);
    if (s == EVLM_OK)
        for (int e = 0; e < n_extra; e++)
            memset(extra[e]->g, 0, extra[e]->n_floats * sizeof(float));
    return s;
}

evlm_status evlm_ckpt_load(const char *dir, evlm_tparams *tp, evlm_ckpt_state *st, char **options) {
    return evlm_ckpt_load_ex(dir, tp, NULL, 0, st, options);
}

evlm_status evlm_ckpt_load_ex(const char *dir, evlm_tparams *tp, evlm_tparams *const *extra,
                              int n_extra, evlm_ckpt_state *st, char **options) {
    if (options) *options = NULL;
    char path[4096];
    EVLM_TRY(evlm_path_join(path, sizeof path, dir, "state.json"));
    char *text;
    size_t len;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 26, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    evlm_status s = EVLM_OK;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (!j || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, CKPT_FORMAT) || !cJSON_IsNumber(ver))
        s = evlm__fail(EVLM_ERR_FORMAT, "%s: not an evlm checkpoint", path);
    else if (ver->valueint != CKPT_VERSION)
        s = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: checkpoint version %d (this evlm reads %d)", path,
                       ver->valueint, CKPT_VERSION);
    evlm_ckpt_state got = {0};
    if (s == EVLM_OK) s = json_i64(j, "step", path, &got.step);
    if (s == EVLM_OK) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "rng");
        char *end = NULL;
        if (!cJSON_IsString(r) || (got.rng = strtoull(r->valuestring, &end, 10), *end))
            s = evlm__fail(EVLM_ERR_FORMAT, "%s: \"rng\" missing or not an integer string", path);
    }
    if (s == EVLM_OK) s = json_i64(j, "epoch", path, &got.epoch);
    if (s == EVLM_OK) s = json_i64(j, "pos", path, &got.pos);
    if (s == EVLM_OK) {
        /* the trainable set must be the one saved */
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(j, "trainable");
        int n_tr = 0;
        for (int i = 0; i < tp->n; i++) n_tr += tp->p[i].trainable;
        if (!cJSON_IsArray(tr) || cJSON_GetArraySize(tr) != n_tr)
            s = evlm__fail(EVLM_ERR_ARG, "%s: saved with %d trainable parameters, this run has %d",
                           path, cJSON_IsArray(tr) ? cJSON_GetArraySize(tr) : -1, n_tr);
        const cJSON *e;
        cJSON_ArrayForEach(e, tr) {
            if (s != EVLM_OK) break;
            const evlm_tparam *p = cJSON_IsString(e) ? find_param(tp, e->valuestring) : NULL;
            if (!p || !p->trainable)
                s = evlm__fail(EVLM_ERR_ARG,
                               "%s: parameter %s was trainable, it is not in this run", path,
                               cJSON_IsString(e) ? e->valuestring : "?");
        }
    }
    if (s == EVLM_OK && options) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "options");
        *options = o ? cJSON_PrintUnformatted(o) : strdup("{}");
        if (!*options) s = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    }
    cJSON_Delete(j);
    if (s == EVLM_OK) s = read_tensors(dir, "weights.safetensors", tp, tp->w, false);
    if (s == EVLM_OK) s = read_tensors(dir, moment_file[0], tp, tp->m, true);
    if (s == EVLM_OK) s = read_tensors(dir, moment_file[1], tp, tp->v, true);
    if (s == EVLM_OK) s = read_extra(dir, extra, n_extra);
    if (s != EVLM_OK) {
        if (options) {
            free(*options);
            *options = NULL;
        }
        return s;
    }
    memset(tp->g, 0, tp->n_floats * sizeof(float));
    *st = got;
    return EVLM_OK;
}

/* ---- the final model folder ---------------------------------------------------------------- */

/* A quantized source (a GGUF) is written in the float dtype its embedded config names
 * (torch_dtype: bfloat16, float16, float32), float32 when it names none. */
static evlm_type out_type(evlm_type src, evlm_ckpt_dtype d, evlm_type quant_to) {
    if (d == EVLM_CKPT_F32) return EVLM_TYPE_F32;
    if (d == EVLM_CKPT_BF16) return EVLM_TYPE_BF16;
    if (src == EVLM_TYPE_F32 || src == EVLM_TYPE_F16 || src == EVLM_TYPE_BF16) return src;
    return quant_to;
}

/* A GGUF source (embedded side files) stores 1-D tensors F32 for llama.cpp (gguf_names.h): they
 * go back to the config's dtype like its quantized tensors (their values came from it). */
static evlm_type param_type(const evlm_tparam *p, const evlm_dir *src, evlm_ckpt_dtype d,
                            evlm_type quant_to) {
    if (src->get && d == EVLM_CKPT_SOURCE && p->n_dims <= 1 && p->src_type == EVLM_TYPE_F32)
        return quant_to;
    return out_type(p->src_type, d, quant_to);
}

static evlm_type config_dtype(const char *config) {
    cJSON *j = cJSON_Parse(config);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text_config");
    const char *keys[2] = {"dtype", "torch_dtype"}; /* transformers 5.x, 4.x */
    const cJSON *t = NULL;
    for (int k = 0; k < 4 && !cJSON_IsString(t); k++) /* the top level, then a text_config */
        t = cJSON_GetObjectItemCaseSensitive(k < 2 ? j : text, keys[k % 2]);
    evlm_type r = EVLM_TYPE_F32;
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "bfloat16")) r = EVLM_TYPE_BF16;
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "float16")) r = EVLM_TYPE_F16;
    cJSON_Delete(j);
    return r;
}

evlm_status evlm_ckpt_export(const evlm_tparams *tp, const char *src_dir, const char *out_dir,
                             evlm_ckpt_dtype dtype) {
    evlm_dir d = evlm_dir_folder(src_dir);
    return evlm_ckpt_export_from(tp, &d, out_dir, dtype);
}

evlm_status evlm_ckpt_export_from(const evlm_tparams *tp, const evlm_dir *src, const char *out_dir,
                                  evlm_ckpt_dtype dtype) {
    char *config;
    size_t len;
    EVLM_TRY(evlm_dir_read(src, "config.json", (size_t)1 << 24, &config, &len));
    const evlm_type qto = config_dtype(config);
    size_t bytes = 0;
    for (int i = 0; i < tp->n; i++)
        bytes += tp->p[i].n * evlm_type_size(param_type(&tp->p[i], src, dtype, qto));
    evlm_tensor *views = malloc(sizeof *views * (size_t)(tp->n > 0 ? tp->n : 1));
    unsigned char *buf = malloc(bytes ? bytes : 1);
    if (!views || !buf) {
        free(views);
        free(buf);
        free(config);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory (%zu bytes)", out_dir, bytes);
    }
    size_t at = 0;
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        evlm_tensor t = view_of(p, tp->w);
        t.type = param_type(p, src, dtype, qto);
        evlm_tensor_set_contiguous(&t);
        const float *w = tp->w + p->off;
        unsigned char *o = buf + at;
        if (t.type == EVLM_TYPE_F32) {
            memcpy(o, w, p->n * sizeof(float));
        } else {
            uint16_t *h = (uint16_t *)(void *)o;
            for (size_t k = 0; k < p->n; k++)
                h[k] = t.type == EVLM_TYPE_BF16 ? evlm_f32_to_bf16(w[k]) : evlm_f32_to_f16(w[k]);
        }
        t.data = o;
        views[i] = t;
        at += p->n * evlm_type_size(t.type);
    }
    evlm_status s = evlm_hf_export_from(src, out_dir, config, views, (size_t)tp->n);
    free(views);
    free(buf);
    free(config);
    return s;
}
