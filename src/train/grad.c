/*
 * grad.c - evlm_grad (evlm_train.h): one forward and backward of a batch file (the gradient
 * fixtures' batch.json), the loss and global gradient norm, every parameter's gradient written
 * as float32 safetensors under its Hugging Face name (atomically).
 * Not here: the model's walk (tmodel.c), the command line (cli/cmd_grad.c).
 */
#include "evlm_train.h"

#include "core/json.h"
#include "core/status.h"
#include "core/tensor.h"
#include "evlm_npu.h"
#include "io/safetensors.h"
#include "train/tmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

evlm_grad_params evlm_grad_default_params(void) {
    evlm_grad_params p = {0};
    p.loss = "ce";
    return p;
}

typedef struct gbatch {
    evlm_tseq *seq;
    int n_seq, n_tokens, n_tiles;
    float temperature;
    int32_t **ids;
    uint8_t **target;
    float **pixels;
} gbatch;

static void gbatch_free(gbatch *b) {
    for (int s = 0; s < b->n_seq; s++) {
        if (b->ids) free(b->ids[s]);
        if (b->target) free(b->target[s]);
        if (b->pixels) free(b->pixels[s]);
    }
    free(b->ids);
    free(b->target);
    free(b->pixels);
    free(b->seq);
    memset(b, 0, sizeof *b);
}

/* The folder of path (with its trailing '/'), into dir. */
static void dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) + 1 : 0;
    if (n >= cap) n = cap - 1;
    memcpy(dir, path, n);
    dir[n] = 0;
}

static evlm_status load_seq(const char *file, const cJSON *js, int s, evlm_model *m,
                            const char *dir, gbatch *b) {
    if (!cJSON_IsObject(js))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: sequences[%d] is not an object", file, s);
    const cJSON *ids = cJSON_GetObjectItem(js, "ids");
    int n = cJSON_GetArraySize(ids);
    if (!cJSON_IsArray(ids) || n < 2)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: sequences[%d].ids is not an array of 2 or more ids",
                          file, s);
    b->ids[s] = malloc(sizeof(int32_t) * (size_t)n);
    b->target[s] = calloc((size_t)n, 1);
    if (!b->ids[s] || !b->target[s]) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    const int V = evlm_model_n_vocab(m);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ids) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 0 || it->valuedouble >= V)
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: sequences[%d].ids[%d] is not a token id in [0, %d)", file, s, i,
                              V);
        b->ids[s][i++] = (int32_t)it->valuedouble;
    }
    int loss_from = n / 2;
    char key[64];
    snprintf(key, sizeof key, "sequences[%d].loss_from", s);
    const cJSON *lf = cJSON_GetObjectItem(js, "loss_from");
    if (lf) {
        if (!cJSON_IsNumber(lf) || lf->valuedouble != floor(lf->valuedouble) ||
            lf->valuedouble < 0 || lf->valuedouble > n - 1)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: %s is not an integer in [0, %d]", file, key,
                              n - 1);
        loss_from = (int)lf->valuedouble;
    }
    for (int t = loss_from; t < n - 1; t++) b->target[s][t] = 1;
    evlm_tseq *q = &b->seq[s];
    q->ids = b->ids[s];
    q->n = n;
    q->target = b->target[s];
    const cJSON *imgs = cJSON_GetObjectItem(js, "images");
    if (imgs && !cJSON_IsNull(imgs)) {
        if (!cJSON_IsArray(imgs) || cJSON_GetArraySize(imgs) != 1 ||
            !cJSON_IsString(cJSON_GetArrayItem(imgs, 0)))
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: sequences[%d].images must be an array of one image path", file,
                              s);
        if (!evlm_model_has_vision(m))
            return evlm__fail(EVLM_ERR_ARG,
                              "%s: sequences[%d] has an image, the model has no vision tower", file,
                              s);
        const char *name = cJSON_GetArrayItem(imgs, 0)->valuestring;
        char path[4096];
        if (snprintf(path, sizeof path, "%s%s", name[0] == '/' ? "" : dir, name) >=
            (int)sizeof path)
            return evlm__fail(EVLM_ERR_ARG, "%s: sequences[%d]: image path too long", file, s);
        evlm_image_input in = {.path = path};
        int tiles = 0, tile = 0;
        evlm_status st = evlm_onnx_image_pixels(m, &in, &b->pixels[s], &tiles, &tile);
        if (st != EVLM_OK)
            return evlm__fail_prefix(st, "%s: sequences[%d] image '%s'", file, s, path);
        q->pixels = b->pixels[s];
        q->n_tiles = tiles;
        b->n_tiles += tiles;
    }
    b->n_tokens += n;
    return EVLM_OK;
}

static evlm_status load_batch(const char *path, evlm_model *m, gbatch *b) {
    memset(b, 0, sizeof *b);
    b->temperature = 1.0f;
    cJSON *root = NULL;
    EVLM_TRY(evlm_json_load(path, &root));
    evlm_status st = EVLM_OK;
    const cJSON *seqs = cJSON_GetObjectItem(root, "sequences");
    int n = cJSON_GetArraySize(seqs);
    if (!cJSON_IsObject(root) || !cJSON_IsArray(seqs) || n < 1 || n > 1 << 16) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: no \"sequences\" array of 1 or more sequences", path);
        goto done;
    }
    double temp = 1.0;
    if ((st = evlm_json_num(path, root, "temperature", &temp)) != EVLM_OK) goto done;
    if (!(temp > 0) || temp > 1e4) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: temperature %g is not in (0, 1e4]", path, temp);
        goto done;
    }
    b->temperature = (float)temp;
    b->seq = calloc((size_t)n, sizeof *b->seq);
    b->ids = calloc((size_t)n, sizeof *b->ids);
    b->target = calloc((size_t)n, sizeof *b->target);
    b->pixels = calloc((size_t)n, sizeof *b->pixels);
    b->n_seq = n;
    if (!b->seq || !b->ids || !b->target || !b->pixels) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    for (int s = 0; s < n && st == EVLM_OK; s++)
        st = load_seq(path, cJSON_GetArrayItem(seqs, s), s, m, dir, b);
done:
    cJSON_Delete(root);
    if (st != EVLM_OK) gbatch_free(b);
    return st;
}

static evlm_status load_tmodel(const char *path, int threads, const gbatch *b, evlm_model **m,
                               evlm_tmodel **tm) {
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = threads;
    EVLM_TRY(evlm_model_load(path, &mp, m));
    evlm_tmodel_params tp = {threads, b->n_tokens < 2 ? 2 : b->n_tokens, b->n_tiles, NULL, true};
    return evlm_tmodel_new(*m, &tp, tm);
}

static evlm_status write_grads(const char *out, const evlm_tparams *tp) {
    evlm_tensor *ts = calloc((size_t)tp->n, sizeof *ts);
    if (!ts) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        evlm_tensor *t = &ts[i];
        t->name = p->name;
        t->type = EVLM_TYPE_F32;
        t->n_dims = p->n_dims;
        for (int d = 0; d < EVLM_MAX_DIMS; d++) t->ne[d] = 1;
        for (int d = 0; d < p->n_dims; d++) t->ne[d] = p->shape[p->n_dims - 1 - d];
        evlm_tensor_set_contiguous(t);
        t->data = tp->g + p->off;
    }
    evlm_status st = evlm_safetensors_write(out, ts, (size_t)tp->n);
    free(ts);
    return st;
}

evlm_status evlm_grad(const evlm_grad_params *p, evlm_grad_result *r) {
    memset(r, 0, sizeof *r);
    if (!p || !p->model || !p->batch) return evlm__fail(EVLM_ERR_ARG, "no model or batch file");
    int loss = evlm_tloss_parse(p->loss ? p->loss : "ce");
    if (loss < 0)
        return evlm__fail(EVLM_ERR_ARG, "unknown loss '%s' (ce, kd, rkl, hidden, qat_ce)", p->loss);
    const bool distill =
        loss == EVLM_TLOSS_KD || loss == EVLM_TLOSS_RKL || loss == EVLM_TLOSS_HIDDEN;
    if (distill && !p->teacher)
        return evlm__fail(EVLM_ERR_ARG, "the %s loss needs a teacher model", p->loss);
    evlm_model *m = NULL, *tm_model = NULL;
    evlm_tmodel *tm = NULL, *teacher = NULL;
    gbatch b = {0};
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = p->n_threads;
    evlm_status st = evlm_model_load(p->model, &mp, &m);
    if (st == EVLM_OK) st = load_batch(p->batch, m, &b);
    if (st == EVLM_OK) {
        evlm_tmodel_params tp = {p->n_threads, b.n_tokens, b.n_tiles, NULL, false};
        st = evlm_tmodel_new(m, &tp, &tm);
    }
    if (st == EVLM_OK && distill)
        st = load_tmodel(p->teacher, p->n_threads, &b, &tm_model, &teacher);
    evlm_tresult res = {0};
    if (st == EVLM_OK) {
        evlm_tstep step = {(evlm_tloss)loss, b.temperature, teacher, 1.0f, false};
        evlm_tparams_zero_grad(evlm_tmodel_params_of(tm));
        st = evlm_tmodel_step(tm, &(evlm_tbatch){b.seq, b.n_seq}, &step, &res);
    }
    if (st == EVLM_OK) {
        const evlm_tparams *tp = evlm_tmodel_params_of(tm);
        double ss = 0;
        for (size_t i = 0; i < tp->n_floats; i++) ss += (double)tp->g[i] * (double)tp->g[i];
        r->loss = res.loss;
        r->grad_norm = sqrt(ss);
        r->n_params = tp->n;
        r->n_targets = res.n_targets;
        if (p->out) st = write_grads(p->out, tp);
    }
    evlm_tmodel_free(teacher);
    evlm_model_free(tm_model);
    evlm_tmodel_free(tm);
    evlm_model_free(m);
    gbatch_free(&b);
    return st;
}
