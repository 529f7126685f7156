/*
 * sim.c - evlm_npu_sim (include/evlm_npu.h): a context computes with the numerics of an ONNX
 * export (evlm export-onnx, manifest.json's "quantization"), as AIMET's QuantSim does: every
 * quantized weight replaced by its dequantized export value (read from the export's weight file,
 * int8 / int4 values times their scales, float16 widened), and at every activation point of the
 * manifest (the inputs of the q/k/v, o, gate/up, down matmuls and of the head; the query after
 * RoPE; the key and value rows entering the KV cache, at the target's KV bits) a QuantizeLinear ->
 * DequantizeLinear
 * with the export's scale and zero point (round half to even, saturating; qdq.h).
 *
 * The simulation belongs to the context (its own decoder view and tables, freed with it); the
 * model is untouched, and a context without one runs the unchanged forward pass (the decoder's
 * transform hook is a NULL check). A quantized vision graph (the export's vision.quantization) is
 * simulated by sim_vision.c; prompts made by evlm_npu_sim_prompt_new encode their images with it
 * (the model's vision state and pool, under its vision_mu, as every prompt). Not here: the softmax
 * probabilities and the elementwise ops in reduced precision (the export keeps them float;
 * docs/NPU.md), fp16 activations.
 */
#include "evlm_npu.h"

#include "core/file.h"
#include "core/status.h"
#include "model/model.h"
#include "npu/qdq.h"
#include "npu/sim_io.h"
#include "npu/sim_vision.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float scale;
    int32_t zp, qmax;
} sim_point;

typedef struct {
    evlm_decoder dec;           /* the model's, with the export's weights */
    evlm_decoder_layer *layers; /* dec.layers */
    evlm_tensor *mats;          /* the dequantized matrices' views */
    float **data;               /* their values */
    int n_mats;
    sim_point *pts; /* by evlm__qdq_index; NULL without activation points */
    int n_pts, n_layers;
    evlm__sim_vision *vis; /* the quantized vision graph's numerics (sim_vision.c); NULL: float */
} npu_sim;

static void sim_free(void *p) {
    npu_sim *s = p;
    if (!s) return;
    for (int i = 0; i < s->n_mats; i++) free(s->data[i]);
    free(s->data);
    free(s->mats);
    free(s->layers);
    free(s->pts);
    evlm__sim_vision_free(s->vis);
    free(s);
}

static void sim_transform(void *user, int layer, const char *group, float *x, int m, int k) {
    const npu_sim *s = user;
    int idx = evlm__qdq_index(s->n_layers, layer, group);
    if (idx < 0 || idx >= s->n_pts) return;
    const sim_point p = s->pts[idx];
    for (size_t i = 0; i < (size_t)m * (size_t)k; i++)
        x[i] = evlm__qdq_fake(x[i], p.scale, p.zp, p.qmax);
}

/* One weight entry of the manifest into s->mats[i] ([out][in] floats). */
static evlm_status load_weight(npu_sim *s, int i, const cJSON *e, FILE *f, const char *path) {
    const char *name = evlm__sim_str(e, "name"), *dt = evlm__sim_str(e, "dtype");
    const int64_t out = (int64_t)evlm__sim_num(e, "out", 0),
                  in = (int64_t)evlm__sim_num(e, "in", 0);
    const bool tr = !strcmp(evlm__sim_str(e, "layout"), "[in, out]");
    const int bits = !strcmp(dt, "int8")      ? 8
                     : !strcmp(dt, "int4")    ? 4
                     : !strcmp(dt, "float16") ? 16
                                              : 0;
    if (!bits || out < 1 || in < 1 || out * in > ((int64_t)1 << 34))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: weight '%s': bad dtype or shape", path, name);
    const int64_t n = out * in, block = bits == 4 ? (int64_t)evlm__sim_num(e, "block_size", 0) : in;
    if (block < 1) return evlm__fail(EVLM_ERR_FORMAT, "%s: weight '%s': no block_size", path, name);
    const int64_t nb = (in + block - 1) / block;
    size_t bytes = (size_t)(bits == 16 ? 2 * n : bits == 4 ? (n + 1) / 2 : n);
    uint8_t *raw = malloc(bytes);
    float *sc = bits == 16 ? NULL : malloc(sizeof(float) * (size_t)(out * nb));
    float *w = malloc(sizeof(float) * (size_t)n);
    s->data[i] = w;
    evlm_status st = raw && w && (bits == 16 || sc)
                         ? EVLM_OK
                         : evlm__fail(EVLM_ERR_NOMEM, "out of memory reading weight '%s'", name);
    if (st == EVLM_OK)
        st = evlm__sim_read_at(f, path, (uint64_t)evlm__sim_num(e, "offset", -1), raw, bytes);
    if (st == EVLM_OK && sc)
        st = evlm__sim_read_at(f, path, (uint64_t)evlm__sim_num(e, "scale_offset", -1), sc,
                               sizeof(float) * (size_t)(out * nb));
    for (int64_t o = 0; st == EVLM_OK && o < out; o++)
        for (int64_t c = 0; c < in; c++) {
            int64_t at = tr ? c * out + o : o * in + c;
            float v;
            if (bits == 16) {
                uint16_t h;
                memcpy(&h, raw + 2 * at, 2);
                v = evlm_f16_to_f32(h);
            } else {
                int q;
                if (bits == 8)
                    q = (int8_t)raw[at];
                else {
                    int nib = (raw[at / 2] >> (at % 2 ? 4 : 0)) & 0xF;
                    q = nib >= 8 ? nib - 16 : nib;
                }
                int64_t kb = c / block;
                float scale = sc[tr ? kb * out + o : o * nb + kb];
                v = (float)q * scale; /* DequantizeLinear: (q - 0) * scale in float */
            }
            w[o * in + c] = v;
        }
    free(raw);
    free(sc);
    if (st != EVLM_OK) return st;
    evlm_tensor *t = &s->mats[i];
    memset(t, 0, sizeof *t);
    t->name = NULL;
    t->type = EVLM_TYPE_F32;
    t->n_dims = 2;
    for (int d = 0; d < EVLM_MAX_DIMS; d++) t->ne[d] = 1;
    t->ne[0] = in;
    t->ne[1] = out;
    t->nb[0] = sizeof(float);
    t->nb[1] = sizeof(float) * (size_t)in;
    for (int d = 2; d < EVLM_MAX_DIMS; d++) t->nb[d] = t->nb[1] * (size_t)out;
    t->data = w;
    /* bind it in place of the model's matrix */
    int layer = (int)evlm__sim_num(e, "layer", -2);
    const evlm_decoder_config *c = &s->dec.cfg;
    if (layer == -1 && !strcmp(name, "lm_head.q")) {
        if (out != c->vocab_size || in != c->hidden_size) goto shape;
        s->dec.lm_head = t;
        return EVLM_OK;
    }
    char want[64];
    if (layer < 0 || layer >= c->n_layers) goto shape;
    evlm_decoder_layer *ly = &s->layers[layer];
    const struct {
        const char *n;
        const evlm_tensor **slot;
    } slots[] = {{"wq", &ly->wq},        {"wk", &ly->wk},         {"wv", &ly->wv},
                 {"wo", &ly->wo},        {"w_gate", &ly->w_gate}, {"w_up", &ly->w_up},
                 {"w_down", &ly->w_down}};
    for (size_t j = 0; j < sizeof slots / sizeof *slots; j++) {
        snprintf(want, sizeof want, "l%d.%s", layer, slots[j].n);
        if (strcmp(want, name)) continue;
        if ((*slots[j].slot)->ne[0] != in || (*slots[j].slot)->ne[1] != out) goto shape;
        *slots[j].slot = t;
        return EVLM_OK;
    }
shape:
    return evlm__fail(EVLM_ERR_FORMAT,
                      "%s: weight '%s' (%lld x %lld) is not a matrix of this model", path, name,
                      (long long)out, (long long)in);
}

evlm_status evlm_npu_sim(evlm_context *ctx, const char *dir) {
    if (!ctx || !dir) return evlm__fail(EVLM_ERR_ARG, "no context or no export folder");
    const evlm_decoder *md = evlm__model_decoder(evlm_context_model(ctx));
    const evlm_decoder_config *c = &md->cfg;
    if (md->lr_max_rank > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "the NPU simulation does not take low-rank factored matrices yet");
    size_t dl = strlen(dir);
    char *path = malloc(dl + 64);
    if (!path) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    snprintf(path, dl + 64, "%s/manifest.json", dir);
    char *text = NULL;
    size_t len = 0;
    evlm_status st = evlm_read_file(path, (size_t)1 << 28, &text, &len);
    cJSON *j = st == EVLM_OK ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    npu_sim *s = NULL;
    FILE *f = NULL;
    if (st != EVLM_OK) goto done;
    const cJSON *m = cJSON_GetObjectItem(j, "model"), *q = cJSON_GetObjectItem(j, "quantization");
    if (!j || strcmp(evlm__sim_str(j, "format"), "evlm-onnx") || !m) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: not an evlm ONNX export manifest", path);
        goto done;
    }
    if ((int)evlm__sim_num(m, "n_layers", -1) != c->n_layers ||
        (int)evlm__sim_num(m, "hidden_size", -1) != c->hidden_size ||
        (int)evlm__sim_num(m, "vocab_size", -1) != c->vocab_size) {
        st = evlm__fail(
            EVLM_ERR_ARG,
            "%s: exported from another model (%d layers, hidden %d, "
            "vocab %d; this one: %d, %d, %d)",
            path, (int)evlm__sim_num(m, "n_layers", -1), (int)evlm__sim_num(m, "hidden_size", -1),
            (int)evlm__sim_num(m, "vocab_size", -1), c->n_layers, c->hidden_size, c->vocab_size);
        goto done;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    s->dec = *md;
    s->n_layers = c->n_layers;
    s->layers = malloc(sizeof *s->layers * (size_t)c->n_layers);
    if (!s->layers) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(s->layers, md->layers, sizeof *s->layers * (size_t)c->n_layers);
    s->dec.layers = s->layers;
    if (!q) goto attach; /* fp32: the float model's numerics */
    const cJSON *ws = cJSON_GetObjectItem(q, "weights"),
                *as = cJSON_GetObjectItem(q, "activations");
    int nw = cJSON_GetArraySize(ws);
    s->mats = calloc((size_t)nw + 1, sizeof *s->mats);
    s->data = calloc((size_t)nw + 1, sizeof *s->data);
    if (!s->mats || !s->data) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* a split export names each weight's part file; one part: weights.file */
    const char *wdef = evlm__sim_str(cJSON_GetObjectItem(j, "weights"), "file");
    char cur[64] = "";
    for (int i = 0; i < nw && st == EVLM_OK; i++, s->n_mats++) {
        const cJSON *e = cJSON_GetArrayItem(ws, i);
        const char *fn = cJSON_GetObjectItem(e, "file") ? evlm__sim_str(e, "file") : wdef;
        if (!f || strcmp(fn, cur)) {
            if (f) fclose(f);
            snprintf(cur, sizeof cur, "%s", fn);
            snprintf(path, dl + 64, "%s/%s", dir, cur);
            if (!(f = fopen(path, "rb"))) {
                st = evlm__fail(EVLM_ERR_IO, "%s: cannot open", path);
                goto done;
            }
        }
        st = load_weight(s, i, e, f, path);
    }
    if (st != EVLM_OK) goto done;
    int na = cJSON_GetArraySize(as);
    if (na) {
        s->n_pts = c->n_layers * QDQ_N_GROUPS + 1;
        if (!(s->pts = calloc((size_t)s->n_pts, sizeof *s->pts))) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < s->n_pts; i++) s->pts[i].scale = 0;
    }
    for (int i = 0; i < na; i++) {
        const cJSON *e = cJSON_GetArrayItem(as, i);
        int idx = evlm__qdq_index(c->n_layers, (int)evlm__sim_num(e, "layer", -2),
                                  evlm__sim_str(e, "group"));
        int bits = (int)evlm__sim_num(e, "bits", 0);
        float scale = (float)evlm__sim_num(e, "scale", 0);
        if (idx < 0 || idx >= s->n_pts || (bits != 8 && bits != 16) || !(scale > 0)) {
            snprintf(path, dl + 64, "%s/manifest.json", dir);
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: activation point %d is malformed", path, i);
            goto done;
        }
        s->pts[idx] =
            (sim_point){scale, (int32_t)evlm__sim_num(e, "zero_point", 0), (1 << bits) - 1};
    }
    for (int i = 0; i < s->n_pts; i++)
        if (!(s->pts[i].scale > 0)) {
            snprintf(path, dl + 64, "%s/manifest.json", dir);
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: activation point %d is missing", path, i);
            goto done;
        }
    if ((st = evlm__sim_vision_load(evlm_context_model(ctx), dir, j, &s->vis)) != EVLM_OK)
        goto done;
attach:
    evlm__context_set_sim(ctx, &s->dec, s, sim_free);
    evlm__context_transform(ctx, s->pts ? sim_transform : NULL, s);
    s = NULL;
done:
    if (f) fclose(f);
    sim_free(s);
    cJSON_Delete(j);
    free(path);
    return st;
}

evlm_status evlm_npu_sim_prompt_new(evlm_context *ctx, const char *text, bool add_special,
                                    const evlm_image_input *images, int n_images,
                                    evlm_prompt **out) {
    if (!ctx || !out) return evlm__fail(EVLM_ERR_ARG, "evlm_npu_sim_prompt_new: NULL argument");
    const npu_sim *s = evlm__context_sim(ctx, sim_free);
    return evlm__prompt_new_hooked(evlm_context_model(ctx), text, add_special, images, n_images,
                                   s ? evlm__sim_vision_hook(s->vis) : NULL, out);
}
