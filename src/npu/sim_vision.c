/*
 * sim_vision.c - the vision half of evlm_npu_sim (sim_vision.h): the Idefics3 / SmolVLM tower
 * with an export's QDQ vision-graph numerics. Its state: a copy of the model's evlm_siglip whose
 * matrices (the patch Conv, q / k / v / o, fc1 / fc2 per layer, the connector's projection) are
 * the export's int8 codes times their per-channel scales in float32 (what DequantizeLinear
 * gives), 16-row interleaved (F32_R16) like the model's own float matrices, so every output is
 * one fma chain along k under every kernel table (the row-major F32 path sums in an order of
 * each table's own: at uint8 those last-bit differences flip codes, docs/NPU.md), and the
 * activation encodings of every qdq_vision.h point, applied by the tower's
 * transform hook as QuantizeLinear -> DequantizeLinear (qdq.h's evlm__qdq_fake). Prompts reach
 * it through evlm_npu_sim_prompt_new (sim.c), which hands this hook to the family's image
 * encoding for that prompt alone, under the model's vision_mu.
 *
 * Not here: a quantized Qwen2-VL tower (its vision graph stays float32), the decoder's numerics
 * (sim.c), the softmax and elementwise ops in reduced precision (float in the graph too).
 */
#include "npu/sim_vision.h"

#include "core/status.h"
#include "npu/qdq_vision.h"
#include "npu/sim_io.h"
#include "quant/repack.h"
#include "vision/siglip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float scale;
    int32_t zp, qmax;
} vpoint;

struct evlm__sim_vision {
    evlm_siglip tower;         /* the model's, with the export's matrices */
    evlm_siglip_layer *layers; /* tower.layers */
    evlm_tensor *mats;         /* the dequantized matrices' views */
    float **data;
    int n_mats;
    vpoint *pts;
    int n_pts, L;
    evlm_vision_hook hook;
};

void evlm__sim_vision_free(evlm__sim_vision *v) {
    if (!v) return;
    for (int i = 0; i < v->n_mats; i++) free(v->data[i]);
    free(v->data);
    free(v->mats);
    free(v->layers);
    free(v->pts);
    free(v);
}

const evlm_vision_hook *evlm__sim_vision_hook(const evlm__sim_vision *v) {
    return v ? &v->hook : NULL;
}

static void vtransform(void *user, int layer, const char *group, float *x, int m, int k) {
    const evlm__sim_vision *v = user;
    int idx = evlm__qdqv_index(v->L, layer, group);
    if (idx < 0) return;
    const vpoint p = v->pts[idx];
    for (size_t i = 0; i < (size_t)m * (size_t)k; i++)
        x[i] = evlm__qdq_fake(x[i], p.scale, p.zp, p.qmax);
}

/* The slot of the tower a weight entry names, or NULL. */
static const evlm_tensor **slot_of(evlm__sim_vision *v, const char *name) {
    if (!strcmp(name, "proj")) return &v->tower.proj;
    char want[32];
    for (int l = 0; l < v->L; l++) {
        evlm_siglip_layer *ly = &v->layers[l];
        const struct {
            const char *n;
            const evlm_tensor **s;
        } t[] = {{"q", &ly->wq}, {"k", &ly->wk},    {"v", &ly->wv},
                 {"o", &ly->wo}, {"fc1", &ly->fc1}, {"fc2", &ly->fc2}};
        for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
            snprintf(want, sizeof want, "l%d.%s", l, t[i].n);
            if (!strcmp(want, name)) return t[i].s;
        }
    }
    return NULL;
}

/* Weight entry e into v->mats[i] and its slot in the tower. */
static evlm_status load_weight(evlm__sim_vision *v, int i, const cJSON *e, FILE *f,
                               const char *path) {
    const char *name = evlm__sim_str(e, "name");
    const int64_t out = (int64_t)evlm__sim_num(e, "out", 0),
                  in = (int64_t)evlm__sim_num(e, "in", 0);
    const bool conv = !strcmp(name, "patch.w");
    const evlm_tensor *ref = conv ? &v->tower.patch_w : NULL;
    const evlm_tensor **slot = conv ? NULL : slot_of(v, name);
    if (slot) ref = *slot;
    if (!ref || strcmp(evlm__sim_str(e, "dtype"), "int8") || ref->ne[0] != in ||
        ref->ne[1] != out || strcmp(evlm__sim_str(e, "layout"), conv ? "[out, in]" : "[in, out]"))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: vision weight '%s' (%lld x %lld) is not an int8 matrix of this "
                          "model's tower",
                          path, name, (long long)out, (long long)in);
    const int64_t n = out * in;
    int8_t *codes = malloc((size_t)n);
    float *sc = malloc(sizeof(float) * (size_t)out), *w = malloc(sizeof(float) * (size_t)n);
    v->data[i] = w;
    evlm_status st =
        codes && sc && w ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory reading '%s'", name);
    if (st == EVLM_OK)
        st = evlm__sim_read_at(f, path, (uint64_t)evlm__sim_num(e, "offset", -1), codes, (size_t)n);
    if (st == EVLM_OK)
        st = evlm__sim_read_at(f, path, (uint64_t)evlm__sim_num(e, "scale_offset", -1), sc,
                               sizeof(float) * (size_t)out);
    for (int64_t o = 0; st == EVLM_OK && o < out; o++)
        for (int64_t c = 0; c < in; c++) /* DequantizeLinear: (q - 0) * scale in float */
            w[o * in + c] = (float)codes[conv ? o * in + c : c * out + o] * sc[o];
    free(codes);
    free(sc);
    if (st != EVLM_OK) return st;
    /* 16-row interleaved (quant/repack.h), as the model's own float matrices are bound: each
     * output one fma chain along k from 0, the same bits under every kernel table */
    size_t rb = evlm_r16_bytes(EVLM_TYPE_F32_R16, out, in);
    float *r = aligned_alloc(64, (rb + 63) & ~(size_t)63);
    if (!r) return evlm__fail(EVLM_ERR_NOMEM, "out of memory repacking '%s'", name);
    evlm_repack_r16(EVLM_TYPE_F32, w, sizeof(float) * (size_t)in, out, in, r);
    free(w);
    v->data[i] = w = r;
    evlm_tensor *t = &v->mats[i];
    memset(t, 0, sizeof *t);
    t->type = EVLM_TYPE_F32_R16;
    t->n_dims = 2;
    for (int d = 0; d < EVLM_MAX_DIMS; d++) t->ne[d] = 1;
    t->ne[0] = in;
    t->ne[1] = out;
    t->nb[0] = sizeof(float);
    t->nb[1] = sizeof(float) * (size_t)in;
    for (int d = 2; d < EVLM_MAX_DIMS; d++) t->nb[d] = t->nb[1] * (size_t)out;
    t->data = w;
    if (conv)
        v->tower.patch_w = *t;
    else
        *slot = t;
    return EVLM_OK;
}

evlm_status evlm__sim_vision_load(const evlm_model *m, const char *dir, const cJSON *j,
                                  evlm__sim_vision **out) {
    *out = NULL;
    const cJSON *vis = cJSON_GetObjectItem(j, "vision");
    const cJSON *q = cJSON_GetObjectItem(vis, "quantization");
    if (!q) return EVLM_OK; /* a float32 vision graph, or none */
    const evlm_siglip *tw = NULL;
    size_t dl = strlen(dir) + 64;
    char *path = malloc(dl);
    if (!path) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    snprintf(path, dl, "%s/manifest.json", dir);
    if (!evlm__model_idefics3(m, &tw, NULL, NULL)) {
        evlm_status st = evlm__fail(EVLM_ERR_ARG,
                                    "%s: a quantized SigLIP vision graph, and this model has "
                                    "no Idefics3 / SmolVLM tower",
                                    path);
        free(path);
        return st;
    }
    const cJSON *ws = cJSON_GetObjectItem(q, "weights"),
                *as = cJSON_GetObjectItem(q, "activations");
    const int L = tw->cfg.n_layers, nw = cJSON_GetArraySize(ws), na = cJSON_GetArraySize(as);
    evlm__sim_vision *v = calloc(1, sizeof *v);
    FILE *f = NULL;
    evlm_status st = EVLM_OK;
    if (v) {
        v->tower = *tw;
        v->L = L;
        v->n_pts = evlm__qdqv_count(L);
        v->layers = malloc(sizeof *v->layers * (size_t)L);
        v->mats = calloc((size_t)nw + 1, sizeof *v->mats);
        v->data = calloc((size_t)nw + 1, sizeof *v->data);
        v->pts = calloc((size_t)v->n_pts, sizeof *v->pts);
    }
    if (!v || !v->layers || !v->mats || !v->data || !v->pts) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(v->layers, tw->layers, sizeof *v->layers * (size_t)L);
    v->tower.layers = v->layers;
    if (nw != 6 * L + 2 || na != v->n_pts) {
        st = evlm__fail(EVLM_ERR_FORMAT,
                        "%s: vision.quantization lists %d weights and %d activation points; "
                        "this model's tower has %d and %d",
                        path, nw, na, 6 * L + 2, v->n_pts);
        goto done;
    }
    for (int i = 0; i < na; i++) {
        const cJSON *e = cJSON_GetArrayItem(as, i);
        int idx =
            evlm__qdqv_index(L, (int)evlm__sim_num(e, "layer", -2), evlm__sim_str(e, "group"));
        int bits = (int)evlm__sim_num(e, "bits", 0);
        float scale = (float)evlm__sim_num(e, "scale", 0);
        int zp = (int)evlm__sim_num(e, "zero_point", -1);
        if (idx < 0 || (bits != 8 && bits != 16) || !(scale > 0) || zp < 0 || zp >= (1 << bits) ||
            v->pts[idx].scale > 0) {
            st =
                evlm__fail(EVLM_ERR_FORMAT, "%s: vision activation point %d is malformed", path, i);
            goto done;
        }
        v->pts[idx] = (vpoint){scale, zp, (1 << bits) - 1};
    }
    snprintf(path, dl, "%s/%s", dir, evlm__sim_str(vis, "weights"));
    if (strchr(evlm__sim_str(vis, "weights"), '/') || !*evlm__sim_str(vis, "weights") ||
        !(f = fopen(path, "rb"))) {
        st = evlm__fail(EVLM_ERR_IO, "%s: cannot open the vision weights", path);
        goto done;
    }
    for (int i = 0; i < nw && st == EVLM_OK; i++, v->n_mats++)
        st = load_weight(v, i, cJSON_GetArrayItem(ws, i), f, path);
    if (st != EVLM_OK) goto done;
    /* every matrix replaced: none may still be the model's */
    bool all = v->tower.patch_w.data != tw->patch_w.data && v->tower.proj != tw->proj;
    for (int l = 0; l < L; l++) {
        const evlm_siglip_layer *a = &v->layers[l], *b = &tw->layers[l];
        all = all && a->wq != b->wq && a->wk != b->wk && a->wv != b->wv && a->wo != b->wo &&
              a->fc1 != b->fc1 && a->fc2 != b->fc2;
    }
    if (!all) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: vision.quantization misses a matrix of the tower",
                        path);
        goto done;
    }
    v->hook = (evlm_vision_hook){&v->tower, vtransform, v};
    *out = v;
    v = NULL;
done:
    if (f) fclose(f);
    evlm__sim_vision_free(v);
    free(path);
    return st;
}
