/*
 * onnx.c - the ONNX model writer (see onnx.h): fills the protobuf-c structs generated from
 * onnx.proto and lets protobuf-c serialize them. Every string, array and message the model
 * points to is allocated here and freed by evlm_onnx_free. Not here: reading ONNX files (the
 * tests use protobuf-c's unpack directly), validation beyond names and shapes.
 */
#include "io/onnx.h"
#include "core/file.h"
#include "core/status.h"

#include "onnx.pb-c.h"

#include <stdlib.h>
#include <string.h>

struct evlm_onnx {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    size_t cap_node, cap_init, cap_in, cap_out;
    void **owned; /* every allocation the structs point to, except the growing arrays */
    size_t n_owned, cap_owned;
    evlm_status err;
};

size_t evlm_onnx_dtype_size(evlm_onnx_dtype dt) {
    switch (dt) {
    case EVLM_ONNX_F32:
        return 4;
    case EVLM_ONNX_U8:
        return 1;
    case EVLM_ONNX_I8:
        return 1;
    case EVLM_ONNX_U16:
        return 2;
    case EVLM_ONNX_I16:
        return 2;
    case EVLM_ONNX_I32:
        return 4;
    case EVLM_ONNX_I64:
        return 8;
    case EVLM_ONNX_F16:
        return 2;
    case EVLM_ONNX_I4:
        return 1;
    }
    return 0;
}

const char *evlm_onnx_dtype_name(evlm_onnx_dtype dt) {
    switch (dt) {
    case EVLM_ONNX_F32:
        return "float32";
    case EVLM_ONNX_U8:
        return "uint8";
    case EVLM_ONNX_I8:
        return "int8";
    case EVLM_ONNX_U16:
        return "uint16";
    case EVLM_ONNX_I16:
        return "int16";
    case EVLM_ONNX_I32:
        return "int32";
    case EVLM_ONNX_I64:
        return "int64";
    case EVLM_ONNX_F16:
        return "float16";
    case EVLM_ONNX_I4:
        return "int4";
    }
    return "?";
}

/* ---- allocation -------------------------------------------------------------------------- */

static bool failed(evlm_onnx *g) {
    return g->err != EVLM_OK;
}

static void set_err(evlm_onnx *g, evlm_status st) {
    if (g->err == EVLM_OK) g->err = st;
}

static void oom(evlm_onnx *g) {
    set_err(g, evlm__fail(EVLM_ERR_NOMEM, "out of memory building ONNX graph '%s'",
                          g->graph.name ? g->graph.name : "?"));
}

static void *gnew(evlm_onnx *g, size_t n) {
    if (failed(g)) return NULL;
    if (g->n_owned == g->cap_owned) {
        size_t cap = g->cap_owned ? 2 * g->cap_owned : 64;
        void **p = realloc(g->owned, cap * sizeof *p);
        if (!p) {
            oom(g);
            return NULL;
        }
        g->owned = p;
        g->cap_owned = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        oom(g);
        return NULL;
    }
    g->owned[g->n_owned++] = p;
    return p;
}

static char *gstr(evlm_onnx *g, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = gnew(g, n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Appends item to the array *arr of *n items and capacity *cap. */
static bool push(evlm_onnx *g, void ***arr, size_t *n, size_t *cap, void *item) {
    if (failed(g) || !item) return false;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        void **p = realloc(*arr, c * sizeof *p);
        if (!p) {
            oom(g);
            return false;
        }
        *arr = p;
        *cap = c;
    }
    (*arr)[(*n)++] = item;
    return true;
}

static bool check_name(evlm_onnx *g, const char *what, const char *name) {
    if (failed(g)) return false;
    if (!name || !*name) {
        set_err(
            g, evlm__fail(EVLM_ERR_ARG, "ONNX graph '%s': %s without a name", g->graph.name, what));
        return false;
    }
    return true;
}

/* The element count of a static shape, or 0 (error recorded) when it is not one. */
static uint64_t check_shape(evlm_onnx *g, const char *name, int ndim, const int64_t *shape) {
    if (failed(g)) return 0;
    if (ndim < 0 || ndim > EVLM_ONNX_MAX_DIMS) {
        set_err(g, evlm__fail(EVLM_ERR_ARG, "ONNX tensor '%s': %d dimensions (at most %d)", name,
                              ndim, EVLM_ONNX_MAX_DIMS));
        return 0;
    }
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || (uint64_t)shape[i] > ((uint64_t)1 << 40) / n) {
            set_err(g, evlm__fail(EVLM_ERR_ARG, "ONNX tensor '%s': dimension %d is %lld", name, i,
                                  (long long)shape[i]));
            return 0;
        }
        n *= (uint64_t)shape[i];
    }
    return n;
}

static size_t check_dtype(evlm_onnx *g, const char *name, evlm_onnx_dtype dt) {
    size_t es = evlm_onnx_dtype_size(dt);
    if (!es && !failed(g))
        set_err(g,
                evlm__fail(EVLM_ERR_ARG, "ONNX tensor '%s': unknown data type %d", name, (int)dt));
    return es;
}

/* ---- the model ----------------------------------------------------------------------------- */

evlm_status evlm_onnx_new(const char *graph_name, int64_t opset, evlm_onnx **out) {
    *out = NULL;
    if (!graph_name || !*graph_name) return evlm__fail(EVLM_ERR_ARG, "ONNX graph without a name");
    if (opset < 1) return evlm__fail(EVLM_ERR_ARG, "ONNX opset %lld", (long long)opset);
    evlm_onnx *g = calloc(1, sizeof *g);
    if (!g) return evlm__fail(EVLM_ERR_NOMEM, "out of memory for an ONNX graph");
    onnx__model_proto__init(&g->model);
    onnx__graph_proto__init(&g->graph);
    onnx__operator_set_id_proto__init(&g->opset);
    g->graph.name = gstr(g, graph_name);
    g->opset.domain = gstr(g, "");
    g->opset.has_version = 1;
    g->opset.version = opset;
    g->opsets[0] = &g->opset;
    g->model.has_ir_version = 1;
    g->model.ir_version = 8; /* opset 17 and 18 go with IR version 8 */
    g->model.producer_name = gstr(g, "evlm");
    g->model.n_opset_import = 1;
    g->model.opset_import = g->opsets;
    g->model.graph = &g->graph;
    if (failed(g)) {
        evlm_status st = g->err;
        evlm_onnx_free(g);
        return st;
    }
    *out = g;
    return EVLM_OK;
}

void evlm_onnx_free(evlm_onnx *g) {
    if (!g) return;
    for (size_t i = 0; i < g->graph.n_node; i++) free(g->graph.node[i]->attribute);
    free(g->graph.node);
    free(g->graph.initializer);
    free(g->graph.input);
    free(g->graph.output);
    for (size_t i = 0; i < g->n_owned; i++) free(g->owned[i]);
    free(g->owned);
    free(g);
}

static Onnx__ValueInfoProto *value_info(evlm_onnx *g, const char *name, evlm_onnx_dtype dt,
                                        int ndim, const int64_t *shape) {
    if (!check_name(g, "a graph input or output", name)) return NULL;
    check_dtype(g, name, dt);
    check_shape(g, name, ndim, shape);
    Onnx__ValueInfoProto *vi = gnew(g, sizeof *vi);
    Onnx__TypeProto *tp = gnew(g, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = gnew(g, sizeof *tt);
    Onnx__TensorShapeProto *sp = gnew(g, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims = gnew(g, sizeof *dims * (size_t)ndim);
    if (failed(g)) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = gnew(g, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d->dim_value = shape[i];
        dims[i] = d;
    }
    sp->n_dim = (size_t)ndim;
    sp->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = (int32_t)dt;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = gstr(g, name);
    vi->type = tp;
    return failed(g) ? NULL : vi;
}

void evlm_onnx_input(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                     const int64_t *shape) {
    Onnx__ValueInfoProto *vi = value_info(g, name, dt, ndim, shape);
    push(g, (void ***)&g->graph.input, &g->graph.n_input, &g->cap_in, vi);
}

void evlm_onnx_output(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                      const int64_t *shape) {
    Onnx__ValueInfoProto *vi = value_info(g, name, dt, ndim, shape);
    push(g, (void ***)&g->graph.output, &g->graph.n_output, &g->cap_out, vi);
}

/* A tensor of name / dtype / shape; *bytes receives its data size. */
static Onnx__TensorProto *tensor(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                                 const int64_t *shape, uint64_t *bytes) {
    if (!check_name(g, "an initializer", name)) return NULL;
    size_t es = check_dtype(g, name, dt);
    uint64_t n = check_shape(g, name, ndim, shape);
    Onnx__TensorProto *t = gnew(g, sizeof *t);
    int64_t *dims = gnew(g, sizeof *dims * (size_t)ndim);
    if (failed(g)) return NULL;
    onnx__tensor_proto__init(t);
    if (ndim) memcpy(dims, shape, sizeof *dims * (size_t)ndim);
    t->n_dims = (size_t)ndim;
    t->dims = dims;
    t->has_data_type = 1;
    t->data_type = (int32_t)dt;
    t->name = gstr(g, name);
    *bytes = dt == EVLM_ONNX_I4 ? (n + 1) / 2 : n * es;
    return t;
}

void evlm_onnx_init(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                    const int64_t *shape, const void *data) {
    uint64_t bytes = 0;
    Onnx__TensorProto *t = tensor(g, name, dt, ndim, shape, &bytes);
    uint8_t *raw = t ? gnew(g, (size_t)bytes) : NULL;
    if (!raw) return;
    memcpy(raw, data, (size_t)bytes);
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)bytes;
    t->raw_data.data = raw;
    push(g, (void ***)&g->graph.initializer, &g->graph.n_initializer, &g->cap_init, t);
}

void evlm_onnx_init_external(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                             const int64_t *shape, const char *location, uint64_t offset) {
    uint64_t bytes = 0;
    Onnx__TensorProto *t = tensor(g, name, dt, ndim, shape, &bytes);
    if (!t || !check_name(g, "an external data file", location)) return;
    const char *keys[3] = {"location", "offset", "length"};
    char vals[3][32];
    snprintf(vals[1], sizeof vals[1], "%llu", (unsigned long long)offset);
    snprintf(vals[2], sizeof vals[2], "%llu", (unsigned long long)bytes);
    Onnx__StringStringEntryProto **ext = gnew(g, 3 * sizeof *ext);
    for (int i = 0; i < 3 && !failed(g); i++) {
        Onnx__StringStringEntryProto *e = gnew(g, sizeof *e);
        if (!e) return;
        onnx__string_string_entry_proto__init(e);
        e->key = gstr(g, keys[i]);
        e->value = gstr(g, i == 0 ? location : vals[i]);
        ext[i] = e;
    }
    if (failed(g)) return;
    t->n_external_data = 3;
    t->external_data = ext;
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    push(g, (void ***)&g->graph.initializer, &g->graph.n_initializer, &g->cap_init, t);
}

static char **names(evlm_onnx *g, int n, const char *const *v) {
    char **out = gnew(g, sizeof *out * (size_t)n);
    for (int i = 0; i < n && out; i++) {
        if (!check_name(g, "a node input or output", v[i])) return NULL;
        out[i] = gstr(g, v[i]);
    }
    return failed(g) ? NULL : out;
}

int evlm_onnx_node(evlm_onnx *g, const char *op_type, int n_in, const char *const *in, int n_out,
                   const char *const *out) {
    if (!check_name(g, "a node's op type", op_type)) return -1;
    if (n_in < 0 || n_out < 1) {
        set_err(g, evlm__fail(EVLM_ERR_ARG, "ONNX node %s: %d inputs, %d outputs", op_type, n_in,
                              n_out));
        return -1;
    }
    Onnx__NodeProto *nd = gnew(g, sizeof *nd);
    char **ins = names(g, n_in, in), **outs = names(g, n_out, out);
    if (failed(g)) return -1;
    onnx__node_proto__init(nd);
    char nm[96];
    snprintf(nm, sizeof nm, "%s_%zu", op_type, g->graph.n_node);
    nd->name = gstr(g, nm);
    nd->op_type = gstr(g, op_type);
    nd->domain = gstr(g, "");
    nd->n_input = (size_t)n_in;
    nd->input = ins;
    nd->n_output = (size_t)n_out;
    nd->output = outs;
    if (!push(g, (void ***)&g->graph.node, &g->graph.n_node, &g->cap_node, nd)) return -1;
    return (int)g->graph.n_node - 1;
}

static Onnx__AttributeProto *attr(evlm_onnx *g, int node, const char *name) {
    if (failed(g)) return NULL;
    if (node < 0 || (size_t)node >= g->graph.n_node) {
        set_err(g, evlm__fail(EVLM_ERR_ARG, "ONNX attribute '%s' of node %d: no such node",
                              name ? name : "?", node));
        return NULL;
    }
    if (!check_name(g, "an attribute", name)) return NULL;
    Onnx__NodeProto *nd = g->graph.node[node];
    Onnx__AttributeProto *a = gnew(g, sizeof *a);
    Onnx__AttributeProto **arr =
        a ? realloc(nd->attribute, sizeof *arr * (nd->n_attribute + 1)) : NULL;
    if (!arr) {
        if (a) oom(g);
        return NULL;
    }
    onnx__attribute_proto__init(a);
    a->name = gstr(g, name);
    arr[nd->n_attribute++] = a;
    nd->attribute = arr;
    return failed(g) ? NULL : a;
}

void evlm_onnx_attr_int(evlm_onnx *g, int node, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(g, node, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

void evlm_onnx_attr_ints(evlm_onnx *g, int node, const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = attr(g, node, name);
    int64_t *vals = a && n > 0 ? gnew(g, sizeof *vals * (size_t)n) : NULL;
    if (!vals) return;
    memcpy(vals, v, sizeof *vals * (size_t)n);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)n;
    a->ints = vals;
}

void evlm_onnx_attr_float(evlm_onnx *g, int node, const char *name, float v) {
    Onnx__AttributeProto *a = attr(g, node, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
}

evlm_status evlm_onnx_status(const evlm_onnx *g) {
    return g->err;
}

evlm_status evlm_onnx_pack(const evlm_onnx *g, uint8_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (g->err != EVLM_OK) return g->err;
    size_t len = onnx__model_proto__get_packed_size(&g->model);
    if (len >
        ((size_t)2 << 30) - 1) /* protobuf's limit: a graph past it needs more external data */
        return evlm__fail(EVLM_ERR_RANGE, "ONNX graph '%s' is %zu bytes, past protobuf's 2 GB",
                          g->graph.name, len);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return evlm__fail(EVLM_ERR_NOMEM, "out of memory serializing '%s'", g->graph.name);
    size_t got = onnx__model_proto__pack(&g->model, buf);
    if (got != len) {
        free(buf);
        return evlm__fail(EVLM_ERR_FORMAT, "ONNX graph '%s': packed %zu of %zu bytes",
                          g->graph.name, got, len);
    }
    *out = buf;
    *n = len;
    return EVLM_OK;
}

evlm_status evlm_onnx_save(const evlm_onnx *g, const char *path) {
    uint8_t *buf;
    size_t n;
    EVLM_TRY(evlm_onnx_pack(g, &buf, &n));
    evlm_status st = evlm_write_file_atomic(path, buf, n);
    free(buf);
    return st;
}
