/*
 * matrices.c - a model's matrices and what other layers see of a model (model.h): the walk over
 * every bound matrix with its role, the public listing of evlm_compress.h, the sums evlm.h
 * reports (decoder parameters, the bytes a token reads), and the accessors of model.h.
 * Not here: binding (decoder.c, the family files), what a pass does with a matrix (src/compress).
 */
#include "core/status.h"
#include "model/model_impl.h"
#include "quant/repack.h"

#include <stdint.h>

void evlm__model_matrices(evlm_model *m, evlm_matrix_fn fn, void *user) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        evlm_decoder_layer *y = &m->decoder.layers[l];
        const evlm_tensor **slots[] = {&y->wq,     &y->wk,   &y->wv,    &y->wo,
                                       &y->w_gate, &y->w_up, &y->w_down};
        for (int i = 0; i < 7; i++) /* a matrix stored only as low-rank factors has no weight */
            if (*slots[i]) fn(user, slots[i], (evlm_matrix_role)(EVLM_ROLE_ATTN_Q + i), l);
    }
    fn(user, &m->decoder.tok_embd, EVLM_ROLE_EMBED, -1);
    fn(user, &m->decoder.lm_head, EVLM_ROLE_HEAD, -1);
    if (m->family->matrices) m->family->matrices(m, fn, user);
}

/* The walk is read-only here: a const model is walked through its own pointer. */
static void walk(const evlm_model *m, evlm_matrix_fn fn, void *user) {
    evlm__model_matrices((evlm_model *)(uintptr_t)m, fn, user);
}

/* ---- the public listing ------------------------------------------------------------------- */

typedef struct {
    int want, at;
    evlm_matrix_info *out;
} find_walk;

static void find_one(void *user, const evlm_tensor **slot, evlm_matrix_role role, int layer) {
    find_walk *f = user;
    if (f->at++ != f->want || !f->out) return;
    const evlm_tensor *t = *slot;
    *f->out = (evlm_matrix_info){.name = t->name,
                                 .role = role,
                                 .layer = layer,
                                 .rows = t->ne[1],
                                 .cols = t->ne[0],
                                 .type = evlm_type_is_r16(t->type) ? evlm_type_r16_base(t->type)
                                                                   : t->type};
}

int evlm_model_n_matrices(const evlm_model *m) {
    find_walk f = {-1, 0, NULL};
    walk(m, find_one, &f);
    return f.at;
}

evlm_status evlm_model_matrix(const evlm_model *m, int i, evlm_matrix_info *out) {
    find_walk f = {i, 0, out};
    if (i >= 0) walk(m, find_one, &f);
    if (i < 0 || i >= f.at)
        return evlm__fail(EVLM_ERR_ARG, "matrix %d of a model with %d matrices", i, f.at);
    return EVLM_OK;
}

const char *evlm_matrix_role_name(evlm_matrix_role r) {
    static const char *const k_names[EVLM_ROLE_COUNT] = {
        [EVLM_ROLE_ATTN_Q] = "attn_q",
        [EVLM_ROLE_ATTN_K] = "attn_k",
        [EVLM_ROLE_ATTN_V] = "attn_v",
        [EVLM_ROLE_ATTN_O] = "attn_o",
        [EVLM_ROLE_MLP_GATE] = "mlp_gate",
        [EVLM_ROLE_MLP_UP] = "mlp_up",
        [EVLM_ROLE_MLP_DOWN] = "mlp_down",
        [EVLM_ROLE_EMBED] = "embed",
        [EVLM_ROLE_HEAD] = "head",
        [EVLM_ROLE_VISION_ATTN] = "vision_attn",
        [EVLM_ROLE_VISION_MLP] = "vision_mlp",
        [EVLM_ROLE_CONNECTOR] = "connector",
    };
    return (unsigned)r < EVLM_ROLE_COUNT ? k_names[r] : "?";
}

/* ---- sums --------------------------------------------------------------------------------- */

/* what a token's decoder pass reads: its layers' matrices */
typedef struct {
    int64_t params;
    size_t bytes;
} layer_sum;

static void add_layer_matrix(void *user, const evlm_tensor **slot, evlm_matrix_role role,
                             int layer) {
    (void)layer;
    layer_sum *s = user;
    if (role > EVLM_ROLE_MLP_DOWN) return;
    s->params += evlm_tensor_nelements(*slot);
    s->bytes += evlm_tensor_nbytes(*slot);
}

static layer_sum layer_matrices(const evlm_model *m) {
    layer_sum s = {0, 0};
    walk(m, add_layer_matrix, &s);
    for (int l = 0; l < m->cfg.n_layers; l++) /* the low-rank factors a token reads too */
        for (int i = 0; i < EVLM_DECODER_LR_COUNT; i++) {
            const struct evlm_decoder_lowrank *f = &m->decoder.layers[l].lr[i];
            if (!f->a) continue;
            s.params += evlm_tensor_nelements(f->a) + evlm_tensor_nelements(f->b);
            s.bytes += evlm_tensor_nbytes(f->a) + evlm_tensor_nbytes(f->b);
        }
    return s;
}

int64_t evlm_model_n_layer_params(const evlm_model *m) {
    return layer_matrices(m).params;
}

size_t evlm_model_greedy_head_bytes(const evlm_model *m) {
    return evlm_greedy_head_bytes(&m->decoder.greedy);
}

size_t evlm_model_decode_bytes(const evlm_model *m) {
    size_t b = m->decoder.greedy.q.data ? evlm_greedy_head_bytes(&m->decoder.greedy)
                                        : evlm_tensor_nbytes(m->decoder.lm_head);
    return b + layer_matrices(m).bytes;
}

/* ---- model.h ------------------------------------------------------------------------------ */

const evlm_weights *evlm__model_weights(const evlm_model *m) {
    return m->weights;
}
const evlm_decoder_config *evlm__model_config(const evlm_model *m) {
    return &m->cfg;
}
const evlm_decoder *evlm__model_decoder(const evlm_model *m) {
    return &m->decoder;
}
evlm_pool *evlm__model_pool(const evlm_model *m) {
    return m->pool;
}
const char *evlm__model_text_prefix(const evlm_model *m) {
    return m->decoder.prefix;
}

bool evlm__model_has_bias(const evlm_model *m, int layer, evlm_matrix_role role) {
    if (layer < 0 || layer >= m->cfg.n_layers) return false;
    const evlm_decoder_layer *y = &m->decoder.layers[layer];
    const float *b[] = {y->bq, y->bk, y->bv, y->bo, y->b_gate, y->b_up, y->b_down};
    return (unsigned)role < sizeof b / sizeof *b && b[role] != NULL;
}

void evlm__context_observe(evlm_context *c, evlm_decoder_observer fn, void *user) {
    c->state.observe = fn;
    c->state.observe_user = user;
}

void evlm__context_observe_residual(evlm_context *c, evlm_decoder_observer fn, void *user) {
    c->state.residual = fn;
    c->state.residual_user = user;
}

void evlm__context_transform(evlm_context *c, evlm_decoder_transform fn, void *user) {
    c->state.transform = fn;
    c->state.transform_user = user;
}

void evlm__context_set_sim(evlm_context *c, const evlm_decoder *d, void *sim,
                           void (*sim_free)(void *)) {
    if (c->sim_free) c->sim_free(c->sim);
    c->sim_decoder = d;
    c->sim = sim;
    c->sim_free = sim_free;
}

void *evlm__context_sim(const evlm_context *c, void (*sim_free)(void *)) {
    return c->sim && c->sim_free == sim_free ? c->sim : NULL;
}
