/*
 * test_onnx.c - the ONNX writer (src/io/onnx.c) and the decoder export (evlm_export_onnx): a tiny
 * graph written, packed and read back through protobuf-c's unpack of the same generated structs
 * (IR and opset, inputs / outputs with shapes and dtypes, inline and external initializers with
 * location / offset / length, nodes with int / ints / float attributes); bad names and shapes
 * make the save fail naming the tensor; the export of llama-tiny (../shared) reads back as two
 * graphs sharing one weight file at the same offsets, and hostile settings are refused naming
 * "ar", "ctx", "precision", "tiles"; smolvlm-tiny's export adds the vision graph (its I/O, its own
 * weight file) and the prefill graph's image inputs; the QDQ exports (w8a16 on sa8255, w4a16 on
 * sa8255) read back with a QuantizeLinear -> DequantizeLinear pair at every point the manifest
 * lists (uint16 activations, uint8 KV at the target's 8 bits), int8 per-channel / int4 per-block
 * weight initializers with their scales, and encodings.json naming exactly the graph's quantized
 * tensors; w4a16 on the V68 target and a QDQ precision without calibration are refused; llama-tiny
 * split into 2 parts (--parts) reads back as four graphs: part 0 from input_ids to hidden_states,
 * part 1 from hidden_states_in to logits, the past / present of each part's layers only, each
 * part's graphs on its own weight file (the layers' tensors in exactly one), and 3 parts of 2
 * layers refused; the export's part split of Llama-3.2-3B's config for sa8295 (w8a16, fp32 as
 * fp16) is the planner's, part for part. Running
 * the graphs is cli_onnx.sh's, cli_onnx_vlm.sh's and cli_onnx_qdq.sh's (ONNX Runtime); a build
 * without the ONNX writer only checks that the export says so.
 */
#include "test.h"

#include "core/file.h"
#include "evlm.h"
#include "evlm_npu.h"
#include "npu/onnx_parts.h"
#include "npu/plan.h"

#ifdef EVLM_ONNX
#include "io/onnx.h"
#include "onnx.pb-c.h"
#endif

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef EVLM_ONNX

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (!strcmp(n->attribute[i]->name, name)) return n->attribute[i];
    return NULL;
}

static const char *ext_value(const Onnx__TensorProto *t, const char *key) {
    for (size_t i = 0; i < t->n_external_data; i++)
        if (!strcmp(t->external_data[i]->key, key)) return t->external_data[i]->value;
    return NULL;
}

static void test_writer(const char *tmp) {
    evlm_onnx *g;
    CHECK_OK(evlm_onnx_new("tiny", 17, &g));
    if (!g) return;
    const int64_t xs[2] = {2, 3}, ws[2] = {3, 4}, bs[1] = {4}, ys[2] = {2, 4};
    const float bias[4] = {1, 2, 3, 4};
    evlm_onnx_input(g, "x", EVLM_ONNX_F32, 2, xs);
    evlm_onnx_input(g, "ids", EVLM_ONNX_I64, 2, xs);
    evlm_onnx_output(g, "y", EVLM_ONNX_F32, 2, ys);
    evlm_onnx_init_external(g, "w", EVLM_ONNX_F32, 2, ws, "weights.bin", 128);
    evlm_onnx_init(g, "b", EVLM_ONNX_F32, 1, bs, bias);
    float two = 2.0f;
    evlm_onnx_init(g, "two", EVLM_ONNX_F32, 0, NULL, &two);
    int n0 = evlm_onnx_node(g, "MatMul", 2, (const char *[]){"x", "w"}, 1, (const char *[]){"xw"});
    int n1 =
        evlm_onnx_node(g, "Gemm", 3, (const char *[]){"x", "w", "b"}, 1, (const char *[]){"y"});
    evlm_onnx_attr_int(g, n1, "transB", 1);
    evlm_onnx_attr_ints(g, n1, "perm", 3, (const int64_t[]){0, 2, 1});
    evlm_onnx_attr_float(g, n1, "alpha", 0.5f);
    CHECK(n0 == 0 && n1 == 1);
    CHECK_OK(evlm_onnx_status(g));
    char path[512];
    snprintf(path, sizeof path, "%s/tiny.onnx", tmp);
    CHECK_OK(evlm_onnx_save(g, path));
    uint8_t *buf;
    size_t n;
    CHECK_OK(evlm_onnx_pack(g, &buf, &n));
    evlm_onnx_free(g);
    /* the file holds the packed bytes */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f) {
        uint8_t *fb = malloc(n + 1);
        CHECK(fb && fread(fb, 1, n + 1, f) == n && !memcmp(fb, buf, n));
        free(fb);
        fclose(f);
    }
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    free(buf);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->has_ir_version && m->ir_version == 8 && !strcmp(m->producer_name, "evlm"));
    CHECK(m->n_opset_import == 1 && !strcmp(m->opset_import[0]->domain, "") &&
          m->opset_import[0]->version == 17);
    const Onnx__GraphProto *gr = m->graph;
    CHECK(gr && !strcmp(gr->name, "tiny") && gr->n_input == 2 && gr->n_output == 1);
    if (gr && gr->n_input == 2) {
        const Onnx__TypeProto__Tensor *tt = gr->input[1]->type->tensor_type;
        CHECK(!strcmp(gr->input[1]->name, "ids") && tt->elem_type == 7);
        CHECK(tt->shape->n_dim == 2 && tt->shape->dim[0]->dim_value == 2 &&
              tt->shape->dim[1]->dim_value == 3);
        CHECK(gr->output[0]->type->tensor_type->elem_type == 1);
    }
    CHECK(gr && gr->n_initializer == 3);
    if (gr && gr->n_initializer == 3) {
        const Onnx__TensorProto *w = gr->initializer[0], *b = gr->initializer[1],
                                *s = gr->initializer[2];
        CHECK(!strcmp(w->name, "w") && w->data_location == 1 && !w->has_raw_data);
        CHECK(w->n_dims == 2 && w->dims[0] == 3 && w->dims[1] == 4 && w->data_type == 1);
        CHECK(ext_value(w, "location") && !strcmp(ext_value(w, "location"), "weights.bin"));
        CHECK(ext_value(w, "offset") && !strcmp(ext_value(w, "offset"), "128"));
        CHECK(ext_value(w, "length") && !strcmp(ext_value(w, "length"), "48"));
        CHECK(b->has_raw_data && b->raw_data.len == 16 && !memcmp(b->raw_data.data, bias, 16));
        CHECK(s->n_dims == 0 && s->raw_data.len == 4 && !memcmp(s->raw_data.data, &two, 4));
    }
    CHECK(gr && gr->n_node == 2);
    if (gr && gr->n_node == 2) {
        const Onnx__NodeProto *nd = gr->node[1];
        CHECK(!strcmp(nd->op_type, "Gemm") && nd->n_input == 3 && !strcmp(nd->input[2], "b") &&
              nd->n_output == 1 && !strcmp(nd->output[0], "y"));
        const Onnx__AttributeProto *a = find_attr(nd, "transB"), *p = find_attr(nd, "perm"),
                                   *al = find_attr(nd, "alpha");
        CHECK(a && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT && a->i == 1);
        CHECK(p && p->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && p->n_ints == 3 &&
              p->ints[1] == 2);
        CHECK(al && al->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT && al->f == 0.5f);
        CHECK(gr->node[0]->n_attribute == 0 && strcmp(gr->node[0]->name, nd->name));
    }
    onnx__model_proto__free_unpacked(m, NULL);
}

/* A bad call makes the whole graph fail (sticky), naming what was wrong; nothing is written. */
static void test_writer_errors(const char *tmp) {
    const int64_t bad[2] = {2, 0}, ok2[2] = {2, 2};
    const float z[4] = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/bad.onnx", tmp);
    evlm_onnx *g;
    CHECK(evlm_onnx_new("", 17, &g) == EVLM_ERR_ARG && !g);
    CHECK(evlm_onnx_new("g", 0, &g) == EVLM_ERR_ARG && !g);

    CHECK_OK(evlm_onnx_new("g", 17, &g));
    evlm_onnx_input(g, "x", EVLM_ONNX_F32, 2, bad);
    evlm_onnx_init(g, "later", EVLM_ONNX_F32, 2, ok2, z); /* ignored after the failure */
    CHECK(evlm_onnx_save(g, path) == EVLM_ERR_ARG && strstr(evlm_last_error(), "'x'"));
    CHECK(access(path, F_OK) != 0);
    evlm_onnx_free(g);

    CHECK_OK(evlm_onnx_new("g", 17, &g));
    evlm_onnx_init(g, "w", (evlm_onnx_dtype)99, 2, ok2, z);
    CHECK(evlm_onnx_status(g) == EVLM_ERR_ARG && strstr(evlm_last_error(), "'w'"));
    evlm_onnx_free(g);

    CHECK_OK(evlm_onnx_new("g", 17, &g));
    evlm_onnx_init_external(g, "w", EVLM_ONNX_F32, 9, ok2, "f.bin", 0);
    CHECK(evlm_onnx_status(g) == EVLM_ERR_ARG);
    evlm_onnx_free(g);

    CHECK_OK(evlm_onnx_new("g", 17, &g));
    evlm_onnx_node(g, "Add", 2, (const char *[]){"a", ""}, 1, (const char *[]){"c"});
    CHECK(evlm_onnx_status(g) == EVLM_ERR_ARG);
    evlm_onnx_free(g);

    CHECK_OK(evlm_onnx_new("g", 17, &g));
    evlm_onnx_attr_int(g, 3, "axis", 1);
    CHECK(evlm_onnx_status(g) == EVLM_ERR_ARG && strstr(evlm_last_error(), "axis"));
    evlm_onnx_free(g);
}

static Onnx__ModelProto *read_model(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    Onnx__ModelProto *m = NULL;
    if (b && fread(b, 1, (size_t)n, f) == (size_t)n)
        m = onnx__model_proto__unpack(NULL, (size_t)n, b);
    free(b);
    fclose(f);
    return m;
}

/* Both graphs reference the same weights at the same offsets, inside the weight file. */
static void test_export_graphs(const char *out, int n_layers) {
    char p1[700], p2[700], pw[700];
    snprintf(p1, sizeof p1, "%s/decoder_ar4.onnx", out);
    snprintf(p2, sizeof p2, "%s/decoder_ar1.onnx", out);
    snprintf(pw, sizeof pw, "%s/decoder.weights.bin", out);
    Onnx__ModelProto *a = read_model(p1), *b = read_model(p2);
    struct stat st;
    CHECK(a && b && stat(pw, &st) == 0);
    if (!a || !b || stat(pw, &st) != 0) goto done;
    CHECK(a->graph->n_input == (size_t)(3 + 2 * n_layers));
    CHECK(a->graph->n_output == (size_t)(1 + 2 * n_layers));
    CHECK(b->graph->n_input == a->graph->n_input && b->graph->n_output == a->graph->n_output);
    CHECK(!strcmp(a->graph->output[0]->name, "logits"));
    size_t n_ext = 0, same = 0, inside = 0;
    for (size_t i = 0; i < a->graph->n_initializer; i++) {
        const Onnx__TensorProto *t = a->graph->initializer[i];
        if (t->data_location != 1) continue;
        n_ext++;
        const char *loc = ext_value(t, "location"), *off = ext_value(t, "offset"),
                   *len = ext_value(t, "length");
        if (loc && off && len && !strcmp(loc, "decoder.weights.bin") &&
            strtoull(off, NULL, 10) + strtoull(len, NULL, 10) <= (unsigned long long)st.st_size)
            inside++;
        for (size_t j = 0; j < b->graph->n_initializer; j++) {
            const Onnx__TensorProto *u = b->graph->initializer[j];
            if (!strcmp(u->name, t->name) && u->data_location == 1 && off &&
                ext_value(u, "offset") && !strcmp(ext_value(u, "offset"), off))
                same++;
        }
    }
    /* embedding, cos, sin, final norm, 2 norms + 7 matrices per layer (llama-tiny: no biases) */
    CHECKF(n_ext == (size_t)(4 + 9 * n_layers), "%zu external initializers", n_ext);
    CHECK(same == n_ext && inside == n_ext);
done:
    if (a) onnx__model_proto__free_unpacked(a, NULL);
    if (b) onnx__model_proto__free_unpacked(b, NULL);
}

static void rm_export(const char *out) {
    const char *files[] = {"decoder_ar4.onnx", "decoder_ar1.onnx", "decoder.weights.bin",
                           "manifest.json",    "vision.onnx",      "vision.weights.bin",
                           "encodings.json"};
    char p[700];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        unlink(p);
    }
    rmdir(out);
}

/* SmolVLM: the vision graph of 2 tiles (its I/O, its weights external and inside its own file),
 * the prefill graph's two image inputs, the pixel values of the reference image; a vision graph
 * asked of a text model is refused. */
static void test_export_vision(const char *shared, const char *tmp) {
    char dir[512], out[560], p[700];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(out, sizeof out, "%s/export_vis", tmp);
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return;
    evlm_onnx_params par = evlm_onnx_default_params();
    par.ar = 4;
    par.ctx = 16;
    par.tiles = 65;
    CHECK(evlm_export_onnx(m, out, &par) == EVLM_ERR_ARG && strstr(evlm_last_error(), "tiles"));
    par.tiles = 2;
    CHECK_OK(evlm_export_onnx(m, out, &par));
    snprintf(p, sizeof p, "%s/vision.onnx", out);
    Onnx__ModelProto *v = read_model(p);
    snprintf(p, sizeof p, "%s/decoder_ar4.onnx", out);
    Onnx__ModelProto *a = read_model(p);
    snprintf(p, sizeof p, "%s/vision.weights.bin", out);
    struct stat st;
    CHECK(v && a && stat(p, &st) == 0);
    if (v && a && stat(p, &st) == 0) {
        const Onnx__GraphProto *g = v->graph;
        CHECK(g->n_input == 1 && !strcmp(g->input[0]->name, "pixel_values"));
        CHECK(g->n_output == 1 && !strcmp(g->output[0]->name, "image_features"));
        const Onnx__TensorShapeProto *si = g->input[0]->type->tensor_type->shape,
                                     *so = g->output[0]->type->tensor_type->shape;
        CHECK(si->n_dim == 4 && si->dim[0]->dim_value == 2 && si->dim[1]->dim_value == 3 &&
              si->dim[2]->dim_value == 64 && si->dim[3]->dim_value == 64);
        CHECK(so->n_dim == 2 && so->dim[0]->dim_value == 32 && so->dim[1]->dim_value == 64);
        size_t n_ext = 0, inside = 0;
        for (size_t i = 0; i < g->n_initializer; i++) {
            const Onnx__TensorProto *t = g->initializer[i];
            if (t->data_location != 1) continue;
            n_ext++;
            const char *loc = ext_value(t, "location"), *off = ext_value(t, "offset"),
                       *len = ext_value(t, "length");
            if (loc && off && len && !strcmp(loc, "vision.weights.bin") &&
                strtoull(off, NULL, 10) + strtoull(len, NULL, 10) <= (unsigned long long)st.st_size)
                inside++;
        }
        CHECK(n_ext > 0 && inside == n_ext);
        size_t img = 0;
        for (size_t i = 0; i < a->graph->n_input; i++)
            img += !strcmp(a->graph->input[i]->name, "image_features") ||
                   !strcmp(a->graph->input[i]->name, "image_mask");
        CHECK(img == 2);
    }
    if (v) onnx__model_proto__free_unpacked(v, NULL);
    if (a) onnx__model_proto__free_unpacked(a, NULL);
    rm_export(out);
    /* the graph's input for the reference image: 2 x 2 tiles + the global image of 64 x 64 */
    snprintf(p, sizeof p, "%s/ref_image.png", dir);
    evlm_image_input img = {.path = p};
    float *px = NULL;
    int n_tiles = 0, tile = 0;
    CHECK_OK(evlm_onnx_image_pixels(m, &img, &px, &n_tiles, &tile));
    CHECK(px && n_tiles == 5 && tile == 64);
    free(px);
    evlm_model_free(m);
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cJSON *j = NULL;
    if (b && fread(b, 1, (size_t)n, f) == (size_t)n) j = cJSON_ParseWithLength(b, (size_t)n);
    free(b);
    fclose(f);
    return j;
}

static const Onnx__TensorProto *find_init(const Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, name)) return g->initializer[i];
    return NULL;
}

/* The QDQ structure of out's prefill graph against its manifest and encodings.json. */
static void test_qdq_graph(const char *out, int n_layers, bool int4) {
    char p[700];
    snprintf(p, sizeof p, "%s/decoder_ar4.onnx", out);
    Onnx__ModelProto *m = read_model(p);
    snprintf(p, sizeof p, "%s/manifest.json", out);
    cJSON *man = read_json(p);
    snprintf(p, sizeof p, "%s/encodings.json", out);
    cJSON *enc = read_json(p);
    CHECK(m && man && enc);
    if (!m || !man || !enc) goto done;
    const Onnx__GraphProto *g = m->graph;
    CHECK(m->n_opset_import == 1 && m->opset_import[0]->version == 21);
    const cJSON *q = cJSON_GetObjectItem(man, "quantization");
    const cJSON *acts = cJSON_GetObjectItem(q, "activations"),
                *ws = cJSON_GetObjectItem(q, "weights");
    const int n_pts = 7 * n_layers + 1, n_w = 7 * n_layers + 1;
    CHECKF(cJSON_GetArraySize(acts) == n_pts, "%d points", cJSON_GetArraySize(acts));
    CHECKF(cJSON_GetArraySize(ws) == n_w, "%d weights", cJSON_GetArraySize(ws));
    const cJSON *ae = cJSON_GetObjectItem(enc, "activation_encodings"),
                *pe = cJSON_GetObjectItem(enc, "param_encodings");
    CHECK(cJSON_GetArraySize(ae) == n_pts && cJSON_GetArraySize(pe) == n_w);
    /* every QuantizeLinear: its input is a point's tensor with an encoding of the same scale */
    int n_q = 0, n_dq = 0, n_block = 0, matched = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (!strcmp(nd->op_type, "DequantizeLinear")) {
            n_dq++;
            const Onnx__AttributeProto *bs = find_attr(nd, "block_size");
            if (bs && bs->i == 64) n_block++;
            continue;
        }
        if (strcmp(nd->op_type, "QuantizeLinear")) continue;
        n_q++;
        const Onnx__TensorProto *sc = find_init(g, nd->input[1]), *zp = find_init(g, nd->input[2]);
        const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(ae, nd->input[0]), 0);
        if (!sc || !zp || !e || sc->raw_data.len != 4) continue;
        float s;
        memcpy(&s, sc->raw_data.data, 4);
        int bits = (int)cJSON_GetObjectItem(e, "bitwidth")->valuedouble;
        if ((float)cJSON_GetObjectItem(e, "scale")->valuedouble == s &&
            zp->data_type == (bits == 16 ? 4 : 2))
            matched++;
    }
    CHECKF(n_q == n_pts && matched == n_pts, "%d QuantizeLinear, %d matched", n_q, matched);
    CHECKF(n_dq == n_pts + n_w, "%d DequantizeLinear", n_dq);
    CHECK(n_block == (int4 ? n_w : 0));
    /* the KV points are 8-bit (sa8255), the others 16-bit */
    int kv8 = 0, a16 = 0;
    for (int i = 0; i < n_pts; i++) {
        const cJSON *e = cJSON_GetArrayItem(acts, i);
        const char *grp = cJSON_GetObjectItem(e, "group")->valuestring;
        int bits = (int)cJSON_GetObjectItem(e, "bits")->valuedouble;
        bool kv = !strncmp(grp, "kv_", 3);
        kv8 += kv && bits == 8;
        a16 += !kv && bits == 16;
        CHECK(cJSON_GetObjectItem(ae, cJSON_GetObjectItem(e, "tensor")->valuestring) != NULL);
    }
    CHECK(kv8 == 2 * n_layers && a16 == n_pts - 2 * n_layers);
    /* weights: int8 / int4 values, float scales shaped for DequantizeLinear, listed in
     * param_encodings (one entry per output channel, or per block) */
    const Onnx__TensorProto *wq = find_init(g, "l0.wq"), *wqs = find_init(g, "l0.wq.scale");
    CHECK(wq && wqs);
    if (wq && wqs) {
        CHECK(wq->data_type == (int4 ? 22 : 3) && wq->n_dims == 2);
        CHECK(wqs->data_type == 1 && wqs->n_dims == (int4 ? 2u : 1u));
        int64_t out_ch = wq->dims[1], blocks = int4 ? (wq->dims[0] + 63) / 64 : 1;
        CHECK(wqs->dims[wqs->n_dims - 1] == out_ch);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(pe, "l0.wq")) == out_ch * blocks);
    }
    CHECK(cJSON_GetObjectItem(pe, "lm_head.q") != NULL);
done:
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    cJSON_Delete(man);
    cJSON_Delete(enc);
}

/* A context simulating the export computes finite logits that differ from the float model's
 * (ONNX Runtime's agreement with them is cli_onnx_qdq.sh's); another context is untouched. */
static void test_sim(evlm_model *m, const char *out) {
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 32;
    evlm_context *a = NULL, *b = NULL;
    CHECK_OK(evlm_context_new(m, &cp, &a));
    CHECK_OK(evlm_context_new(m, &cp, &b));
    if (!a || !b) goto done;
    CHECK_OK(evlm_npu_sim(a, out));
    const int32_t ids[5] = {1, 45, 49, 263, 93};
    const int V = evlm_model_n_vocab(m);
    float *la = malloc(sizeof(float) * (size_t)V * 5), *lb = malloc(sizeof(float) * (size_t)V * 5);
    if (la && lb) {
        CHECK_OK(evlm_decode(a, ids, 5, la, true));
        CHECK_OK(evlm_decode(b, ids, 5, lb, true));
        int finite = 1, differ = 0;
        for (int i = 0; i < 5 * V; i++) {
            finite &= isfinite(la[i]) != 0;
            differ += la[i] != lb[i];
        }
        CHECK(finite && differ > 0);
    }
    free(la);
    free(lb);
    CHECK(evlm_npu_sim(a, "/nonexistent") == EVLM_ERR_IO);
done:
    evlm_context_free(a);
    evlm_context_free(b);
}

static void test_export_qdq(evlm_model *m, const char *tmp) {
    char out[600], cal[600];
    snprintf(out, sizeof out, "%s/export_qdq", tmp);
    snprintf(cal, sizeof cal, "%s/calib.txt", tmp);
    FILE *f = fopen(cal, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 8; i++)
        fprintf(f, "Once upon a time a little robot read %d books about the quick brown fox.\n", i);
    fclose(f);
    evlm_onnx_params p = evlm_onnx_default_params();
    p.ar = 4;
    p.ctx = 16;
    p.precision = "w8a16";
    p.target = "sa8255";
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_ARG && strstr(evlm_last_error(), "calib"));
    p.calib = cal;
    p.precision = "w4a16";
    p.target = "sa8295";
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_UNSUPPORTED &&
          strstr(evlm_last_error(), "V68") && strstr(evlm_last_error(), "int4"));
    p.target = "sa9999";
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_ARG && strstr(evlm_last_error(), "target"));
    CHECK(access(out, F_OK) != 0);
    p.target = "sa8255";
    for (int k = 0; k < 2; k++) {
        p.precision = k ? "w4a16" : "w8a16";
        CHECK_OK(evlm_export_onnx(m, out, &p));
        test_qdq_graph(out, 2, k == 1);
        test_sim(m, out);
        rm_export(out);
    }
    unlink(cal);
}

/* Removes the files of an export folder, then the folder. */
static void rm_dir(const char *out) {
    DIR *dp = opendir(out);
    struct dirent *e;
    char p[1024];
    while (dp && (e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", out, e->d_name);
            unlink(p);
        }
    if (dp) closedir(dp);
    rmdir(out);
}

/* SmolVLM w8a16 for sa8255: the QDQ vision graph (opset 21, one QuantizeLinear per point of the
 * manifest's vision.quantization, int8 weights) calibrated on a .jsonl's images; a prompt made
 * through the simulation (evlm_npu_sim_prompt_new) has the same rows as the float one, moved by
 * the quantization (nonzero, small), and through an fp32 export's simulation the float tower's
 * bits; a text calibration of a vision export refused, nothing written. */
static void test_export_vision_qdq(const char *shared, const char *tmp) {
    char dir[512], out[560], out2[560], cal[600], txt[600], img[600], p[700];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(img, sizeof img, "%s/ref_image.png", dir);
    snprintf(out, sizeof out, "%s/export_visq", tmp);
    snprintf(out2, sizeof out2, "%s/export_visf", tmp);
    snprintf(cal, sizeof cal, "%s/calib_vis.jsonl", tmp);
    snprintf(txt, sizeof txt, "%s/calib_vis.txt", tmp);
    FILE *f = fopen(cal, "w"), *g = fopen(txt, "w");
    CHECK(f && g);
    if (!f || !g) {
        if (f) fclose(f);
        if (g) fclose(g);
        return;
    }
    for (int i = 0; i < 2; i++)
        fprintf(f, "{\"image\": \"%s\", \"question\": \"What is it %d?\", \"answer\": \"A.\"}\n",
                img, i);
    fprintf(g, "The little robot read about the quick brown fox.\n");
    fclose(f);
    fclose(g);
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return;
    evlm_onnx_params par = evlm_onnx_default_params();
    par.ar = 4;
    par.ctx = 16;
    par.precision = "w8a16";
    par.target = "sa8255";
    par.calib = txt;
    CHECK(evlm_export_onnx(m, out, &par) == EVLM_ERR_ARG &&
          strstr(evlm_last_error(), "calibration images"));
    CHECK(access(out, F_OK) != 0);
    par.calib = cal;
    CHECK_OK(evlm_export_onnx(m, out, &par));
    snprintf(p, sizeof p, "%s/manifest.json", out);
    cJSON *man = read_json(p);
    const cJSON *vq = cJSON_GetObjectItem(cJSON_GetObjectItem(man, "vision"), "quantization");
    int n_pts = cJSON_GetArraySize(cJSON_GetObjectItem(vq, "activations"));
    CHECK(vq && n_pts > 2 && (n_pts - 2) % 7 == 0);
    snprintf(p, sizeof p, "%s/vision.onnx", out);
    Onnx__ModelProto *v = read_model(p);
    CHECK(v != NULL);
    if (v) {
        int nq = 0, n_i8 = 0;
        for (size_t i = 0; i < v->graph->n_node; i++)
            nq += !strcmp(v->graph->node[i]->op_type, "QuantizeLinear");
        for (size_t i = 0; i < v->graph->n_initializer; i++)
            n_i8 += v->graph->initializer[i]->data_type == EVLM_ONNX_I8;
        CHECK(nq == n_pts);
        CHECK(n_i8 == 2 * cJSON_GetArraySize(cJSON_GetObjectItem(vq, "weights")));
        CHECK(v->n_opset_import == 1 && v->opset_import[0]->version == 21);
        onnx__model_proto__free_unpacked(v, NULL);
    }
    cJSON_Delete(man);
    par.precision = NULL; /* fp32 */
    par.target = NULL;
    par.calib = NULL;
    CHECK_OK(evlm_export_onnx(m, out2, &par));
    const char *text = "<|im_start|>User:<image>What is it?<end_of_utterance>\nAssistant:";
    evlm_image_input in = {.path = img};
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 64;
    evlm_context *cq = NULL, *cf = NULL;
    evlm_prompt *pf = NULL, *pq = NULL, *pf2 = NULL;
    CHECK_OK(evlm_context_new(m, &cp, &cq));
    CHECK_OK(evlm_context_new(m, &cp, &cf));
    if (cq && cf) {
        CHECK_OK(evlm_npu_sim(cq, out));
        CHECK_OK(evlm_npu_sim(cf, out2));
        CHECK_OK(evlm_prompt_new(m, text, true, &in, 1, &pf));
        CHECK_OK(evlm_npu_sim_prompt_new(cq, text, true, &in, 1, &pq));
        CHECK_OK(evlm_npu_sim_prompt_new(cf, text, true, &in, 1, &pf2));
    }
    int nf = 0, nq = 0, n2 = 0, w = 0;
    const float *ff = pf ? evlm_onnx_prompt_features(m, pf, &nf, &w) : NULL;
    const float *fq = pq ? evlm_onnx_prompt_features(m, pq, &nq, NULL) : NULL;
    const float *f2 = pf2 ? evlm_onnx_prompt_features(m, pf2, &n2, NULL) : NULL;
    CHECK(ff && fq && f2 && nf > 0 && nq == nf && n2 == nf);
    if (ff && fq && f2 && nq == nf && n2 == nf) {
        double worst = 0, big = 0;
        for (size_t i = 0; i < (size_t)nf * (size_t)w; i++) {
            double d = fabs((double)fq[i] - (double)ff[i]);
            worst = d > worst ? d : worst;
            big = fabs(ff[i]) > big ? fabs(ff[i]) : big;
        }
        CHECK(worst > 0 && worst < 0.1 * big); /* quantized, and close */
        CHECK(!memcmp(ff, f2, sizeof(float) * (size_t)nf * (size_t)w));
    }
    evlm_prompt_free(pf);
    evlm_prompt_free(pq);
    evlm_prompt_free(pf2);
    evlm_context_free(cq);
    evlm_context_free(cf);
    evlm_model_free(m);
    rm_dir(out);
    rm_dir(out2);
    unlink(cal);
    unlink(txt);
}

static const char *dim_str(const Onnx__ValueInfoProto *v, char *buf, size_t cap) {
    const Onnx__TensorShapeProto *sh = v->type->tensor_type->shape;
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; sh && i < sh->n_dim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%lld,", (long long)sh->dim[i]->dim_value);
    return buf;
}

/* llama-tiny (2 layers) in 2 parts: the graphs' I/O, the hidden_states hand-over, each part's
 * graphs on its own weight file at the same offsets, every layer tensor in its part alone. */
static void test_export_parts(evlm_model *m, const char *tmp) {
    char out[560], p[700];
    snprintf(out, sizeof out, "%s/parts", tmp);
    evlm_onnx_params pp = evlm_onnx_default_params();
    pp.ar = 4;
    pp.ctx = 16;
    pp.parts = 3;
    CHECK(evlm_export_onnx(m, out, &pp) == EVLM_ERR_ARG && strstr(evlm_last_error(), "parts = 3") &&
          strstr(evlm_last_error(), "2 layers"));
    CHECK(access(out, F_OK) != 0);
    pp.parts = 2;
    CHECK_OK(evlm_export_onnx(m, out, &pp));
    Onnx__ModelProto *g[2][2] = {{NULL, NULL}, {NULL, NULL}};
    for (int k = 0; k < 2; k++)
        for (int d = 0; d < 2; d++) {
            snprintf(p, sizeof p, "%s/decoder_p%d_ar%d.onnx", out, k, d ? 1 : 4);
            g[k][d] = read_model(p);
            CHECKF(g[k][d] != NULL, "%s", p);
        }
    if (!g[0][0] || !g[0][1] || !g[1][0] || !g[1][1]) goto done;
    for (int k = 0; k < 2; k++)
        for (int d = 0; d < 2; d++) {
            const Onnx__GraphProto *gr = g[k][d]->graph;
            const char *in0 = k ? "hidden_states_in" : "input_ids";
            const char *out0 = k ? "logits" : "hidden_states";
            char pk[32], pv[32];
            CHECK(gr->n_input == 5 && gr->n_output == 3);
            if (gr->n_input != 5 || gr->n_output != 3) continue;
            CHECK(!strcmp(gr->input[0]->name, in0) && !strcmp(gr->output[0]->name, out0));
            snprintf(pk, sizeof pk, "past_key_%d", k);
            snprintf(pv, sizeof pv, "past_value_%d", k);
            CHECK(!strcmp(gr->input[3]->name, pk) && !strcmp(gr->input[4]->name, pv));
            snprintf(pk, sizeof pk, "present_key_%d", k);
            snprintf(pv, sizeof pv, "present_value_%d", k);
            CHECK(!strcmp(gr->output[1]->name, pk) && !strcmp(gr->output[2]->name, pv));
            char wf[40];
            snprintf(wf, sizeof wf, "decoder_p%d.weights.bin", k);
            for (size_t i = 0; i < gr->n_initializer; i++) {
                const Onnx__TensorProto *t = gr->initializer[i];
                if (t->data_location != 1) continue;
                const char *loc = ext_value(t, "location");
                CHECKF(loc && !strcmp(loc, wf), "%s of part %d in %s", t->name, k, loc);
                int l = -1;
                if (sscanf(t->name, "l%d.", &l) == 1) CHECKF(l == k, "%s in part %d", t->name, k);
                /* the part's other graph: the same tensor at the same offset */
                const Onnx__GraphProto *o = g[k][!d]->graph;
                bool same = false;
                for (size_t j = 0; j < o->n_initializer && !same; j++)
                    same = !strcmp(o->initializer[j]->name, t->name) &&
                           !strcmp(ext_value(o->initializer[j], "offset"), ext_value(t, "offset"));
                CHECKF(same, "%s: not shared by part %d's graphs", t->name, k);
            }
        }
    /* the hand-over: part 0's hidden_states is part 1's hidden_states_in, [1, n, hidden] */
    for (int d = 0; d < 2; d++) {
        char a[64], b[64];
        dim_str(g[0][d]->graph->output[0], a, sizeof a);
        dim_str(g[1][d]->graph->input[0], b, sizeof b);
        CHECKF(!strcmp(a, b) && !strcmp(a, d ? "1,1,64," : "1,4,64,"), "%s vs %s", a, b);
    }
    snprintf(p, sizeof p, "%s/manifest.json", out);
    cJSON *man = read_json(p);
    CHECK(man != NULL);
    const cJSON *parts = cJSON_GetObjectItem(man, "parts");
    CHECK(cJSON_GetArraySize(parts) == 2);
    CHECK(!cJSON_GetObjectItem(cJSON_GetObjectItem(man, "weights"), "file"));
    for (int k = 0; k < 2 && cJSON_GetArraySize(parts) == 2; k++) {
        const cJSON *pt = cJSON_GetArrayItem(parts, k);
        CHECK(cJSON_GetObjectItem(pt, "first_layer")->valueint == k &&
              cJSON_GetObjectItem(pt, "n_layers")->valueint == 1);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(pt, "embedding")) == (k == 0));
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(pt, "head")) == (k == 1));
    }
    cJSON_Delete(man);
done:
    for (int k = 0; k < 2; k++)
        for (int d = 0; d < 2; d++)
            if (g[k][d]) onnx__model_proto__free_unpacked(g[k][d], NULL);
    rm_dir(out);
}

#endif

/* One source of truth: the export's part split of a config the planner splits (Llama-3.2-3B at
 * w8a16 on sa8295: 2 parts) is the planner's, part for part; fp32 splits as fp16; no target and
 * a forced count split evenly; a count past the layers is refused. No weights needed. */
static void test_split_agrees(void) {
    const char *src = getenv("EVLM_SRC");
    char path[600];
    snprintf(path, sizeof path, "%s/tests/data/llama-3.2-3b-config.json", src ? src : ".");
    char *json = NULL;
    size_t len = 0;
    CHECK_OK(evlm_read_file(path, 1 << 20, &json, &len));
    if (!json) return;
    evlm__plan_model pm;
    memset(&pm, 0, sizeof pm);
    CHECK_OK(evlm__plan_parse(path, json, len, &pm));
    const evlm_npu_target_info *t = evlm_npu_target_find("sa8295");
    const evlm_npu_precision precs[2] = {EVLM_NPU_W8A16, EVLM_NPU_DEFAULT /* fp32 */};
    evlm__onnx_part parts[EVLM_PLAN_MAX_PARTS];
    int n = 0;
    for (int i = 0; i < 2; i++) {
        evlm_plan_params pp = evlm_plan_default_params();
        pp.target = "sa8295";
        pp.precision = precs[i] == EVLM_NPU_DEFAULT ? EVLM_NPU_FP16 : precs[i];
        pp.n_ctx = 1024;
        pp.ar = 128;
        evlm_plan pl;
        CHECK_OK(evlm_plan_model(path, &pp, &pl));
        CHECK_OK(evlm__onnx_split(&pm.text, t, precs[i], 128, 1024, 0, parts, &n));
        printf("Llama-3.2-3B %s on sa8295: planner %d parts, export %d parts\n",
               i ? "fp32 (as fp16)" : "w8a16", pl.n_parts, n);
        CHECKF(n == pl.n_parts && n >= 2, "export %d parts, planner %d", n, pl.n_parts);
        for (int k = 0; k < n && n == pl.n_parts; k++) {
            const evlm_plan_part *a = &pl.parts[k];
            CHECK(parts[k].embedding == a->embedding && parts[k].head == a->head);
            if (a->first_layer >= 0)
                CHECK(parts[k].first == a->first_layer && parts[k].end == a->last_layer + 1);
            else
                CHECK(parts[k].first == parts[k].end);
        }
    }
    CHECK_OK(evlm__onnx_split(&pm.text, NULL, EVLM_NPU_W8A16, 128, 1024, 0, parts, &n));
    CHECK(n == 1 && parts[0].first == 0 && parts[0].end == 28 && parts[0].embedding &&
          parts[0].head);
    CHECK_OK(evlm__onnx_split(&pm.text, t, EVLM_NPU_W8A16, 128, 1024, 3, parts, &n));
    CHECK(n == 3 && parts[0].end == 9 && parts[1].first == 9 && parts[1].end == 18 &&
          parts[2].first == 18 && parts[2].end == 28 && !parts[1].embedding && !parts[1].head);
    CHECK(evlm__onnx_split(&pm.text, t, EVLM_NPU_W8A16, 128, 1024, 29, parts, &n) == EVLM_ERR_ARG &&
          strstr(evlm_last_error(), "28 layers"));
    free(json);
}

static void test_export(const char *shared, const char *tmp) {
    char dir[512], out[560];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    snprintf(out, sizeof out, "%s/export", tmp);
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return;
    evlm_onnx_params p = evlm_onnx_default_params();
#ifndef EVLM_ONNX
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_UNSUPPORTED);
    evlm_model_free(m);
    return;
#else
    p.ar = 0;
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_ARG && strstr(evlm_last_error(), "ar = 0"));
    p.ar = 8;
    p.ctx = 8;
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_ARG && strstr(evlm_last_error(), "ctx = 8"));
    p.ctx = 100000;
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_ARG && strstr(evlm_last_error(), "ctx"));
    p.ctx = 32;
    p.precision = "int3";
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_ARG && strstr(evlm_last_error(), "precision"));
    CHECK(access(out, F_OK) != 0); /* nothing written */
    p.precision = "fp32";
    p.ar = 4;
    p.ctx = 16;
    p.tiles = 1;
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_UNSUPPORTED &&
          strstr(evlm_last_error(), "no vision tower"));
    evlm_image_input img = {.path = "x.png"};
    float *px = NULL;
    int n_tiles = 0, tile = 0;
    CHECK(evlm_onnx_image_pixels(m, &img, &px, &n_tiles, &tile) == EVLM_ERR_UNSUPPORTED && !px);
    CHECK(access(out, F_OK) != 0);
    p.tiles = 0;
    CHECK_OK(evlm_export_onnx(m, out, &p));
    test_export_graphs(out, 2);
    /* a second export into the now full folder is refused and leaves it as it was */
    CHECK(evlm_export_onnx(m, out, &p) == EVLM_ERR_IO && strstr(evlm_last_error(), "not empty"));
    char man[700];
    snprintf(man, sizeof man, "%s/manifest.json", out);
    CHECK(access(man, F_OK) == 0);
    rm_export(out);
    test_export_parts(m, tmp);
    test_export_qdq(m, tmp);
    evlm_model_free(m);
    test_export_vision(shared, tmp);
    test_export_vision_qdq(shared, tmp);
#endif
}

int main(void) {
    char tmp[] = "/tmp/evlm_test_onnx_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
#ifdef EVLM_ONNX
    test_writer(tmp);
    test_writer_errors(tmp);
    char p[600];
    snprintf(p, sizeof p, "%s/tiny.onnx", tmp);
    unlink(p);
#endif
    test_split_agrees();
    const char *shared = test_shared_dir();
    if (shared) test_export(shared, tmp);
    rmdir(tmp);
    return test_done();
}
