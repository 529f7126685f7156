/*
 * model.c - the public model / context / text API of include/evlm.h, gluing the readers
 * (src/io), the tokenizer and chat template (src/tokenizer) and the decoder (src/model).
 *
 * A model folder or GGUF file is served by the family (family.h) that recognizes its config's
 * architecture: the shared decoder is bound here, the family loads the rest. A missing chat
 * template is not a load error: it is reported when a chat prompt is asked for.
 */
#include "core/file.h"
#include "core/status.h"
#include "core/json.h"
#include "io/gguf.h"
#include "io/gguf_llamacpp.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "quant/repack.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "model/model_impl.h"

#include <stdint.h>

#include <stdlib.h>
#include <string.h>

evlm_model_params evlm_model_default_params(void) {
    evlm_model_params p = {0};
    return p;
}

evlm_context_params evlm_context_default_params(void) {
    evlm_context_params p = {0};
    return p;
}

static evlm_status find_family(const char *dir, const evlm_decoder_config *cfg,
                               const evlm_family **out) {
    *out = evlm__family_find(cfg->architecture);
    if (*out) return EVLM_OK;
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s/config.json: architecture \"%s\" is not supported",
                      dir, cfg->architecture);
}

/* A GGUF file (by its magic), as opposed to a model folder. */
static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

/* Weight matrices are interleaved for the kernels unless EVLM_REPACK=0 (comparisons). */
static bool want_repack(void) {
    const char *e = getenv("EVLM_REPACK");
    return !(e && strcmp(e, "0") == 0);
}

/* 2:4 matrices take their sparse form (quant/sparse24.h) unless EVLM_SPARSE=0 (comparisons). */
static bool want_sparse(void) {
    const char *e = getenv("EVLM_SPARSE");
    return !(e && strcmp(e, "0") == 0);
}

/* Greedy ids through an int8 copy of a float head (greedy_head.h) when the head is a large part of
 * a decode pass: at least GREEDY_HEAD_MIN_VOCAB rows and 1 / GREEDY_HEAD_MIN_SHARE of the bytes a
 * token reads (small decoders with large vocabularies; for an 8B Llama the copy would cost 0.5 GB
 * of memory for a few percent of speed: docs/PERFORMANCE.md). */
#define GREEDY_HEAD_MIN_VOCAB 8192
#define GREEDY_HEAD_MIN_SHARE 8
static evlm_status build_greedy_head(evlm_model *m) {
    const evlm_tensor *w = m->decoder.lm_head;
    if (!evlm_type_is_r16_float(w->type) || w->ne[1] < GREEDY_HEAD_MIN_VOCAB ||
        w->ne[0] % EVLM_QK ||
        evlm_tensor_nbytes(w) * GREEDY_HEAD_MIN_SHARE < evlm_model_decode_bytes(m))
        return EVLM_OK;
    evlm_status st = evlm_greedy_head_init(&m->decoder.greedy, w, m->pool);
    if (st == EVLM_ERR_ARG) { /* non-finite weights: the full head finds its argmax */
        evlm__clear_error();
        return EVLM_OK;
    }
    return st;
}

evlm_status evlm_model_load(const char *path, const evlm_model_params *params, evlm_model **out) {
    *out = NULL;
    if (!path || !*path) return evlm__fail(EVLM_ERR_ARG, "no model path given");
    evlm_model_params p = params ? *params : evlm_model_default_params();
    evlm_llamacpp *g = NULL;
    evlm_dir d = evlm_dir_folder(path);
    if (is_gguf(path)) {
        EVLM_TRY(evlm_llamacpp_open(path, p.mmproj, &g));
        d.get = evlm_llamacpp_file;
        d.ctx = g;
    } else if (p.mmproj) {
        return evlm__fail(EVLM_ERR_ARG, "%s: an mmproj file goes with a GGUF model file", path);
    } else if (!evlm_dir_has(&d, "config.json")) {
        return evlm__fail(EVLM_ERR_IO, "%s: not a model folder (no config.json) nor a GGUF file",
                          path);
    }

    char *tok_json = NULL;
    size_t tok_len = 0;
    char file[4096];
    evlm_model *m = calloc(1, sizeof *m);
    evlm_status st;
    if (!m) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&m->vision_mu, NULL);
    if ((st = evlm_decoder_config_load_dir(&d, &m->cfg)) != EVLM_OK) goto fail;
    if ((st = find_family(path, &m->cfg, &m->family)) != EVLM_OK) goto fail;
    st = g ? evlm_llamacpp_weights(g, &m->weights) : evlm_weights_open(path, &m->weights);
    if (st != EVLM_OK) goto fail;
    m->act = p.f32_act ? EVLM_ACT_F32 : EVLM_ACT_INT8;
    if ((st = evlm_decoder_init(&m->decoder, &m->cfg, m->weights)) != EVLM_OK) goto fail;
    if ((st = evlm_dir_name(&d, "tokenizer.json", file, sizeof file)) != EVLM_OK) goto fail;
    if ((st = evlm_dir_read(&d, "tokenizer.json", EVLM_JSON_MAX_FILE, &tok_json, &tok_len)) !=
        EVLM_OK)
        goto fail;
    if ((st = evlm_tokenizer_from_json(file, tok_json, tok_len, &m->tok)) != EVLM_OK) goto fail;
    if (evlm_tokenizer_n_vocab(m->tok) > m->cfg.vocab_size) {
        st = evlm__fail(EVLM_ERR_FORMAT,
                        "%s: tokenizer has %d tokens but the model's vocab_size is %d", file,
                        evlm_tokenizer_n_vocab(m->tok), m->cfg.vocab_size);
        goto fail;
    }
    if (evlm_chat_template_load_dir(&d, &m->tmpl) != EVLM_OK) {
        snprintf(m->tmpl_error, sizeof m->tmpl_error, "%s", evlm_last_error());
        m->tmpl = NULL;
    }
    m->n_eos = m->cfg.n_eos;
    memcpy(m->eos, m->cfg.eos_token_ids, sizeof m->eos);
    m->n_threads = p.n_threads > 0 ? p.n_threads : evlm_physical_cores();
    if ((st = evlm_pool_new(m->n_threads, &m->pool)) != EVLM_OK) goto fail;
    if (m->family->load && (st = m->family->load(m, &d, &p)) != EVLM_OK) {
        if (g && evlm_llamacpp_no_vision(g))
            evlm__fail_prefix(st,
                              "%s: a language model file without its vision projector (give "
                              "--mmproj FILE, or put mmproj-<file name> beside it)",
                              path);
        goto fail;
    }
    /* the matrices the layers bound, interleaved for the kernels (quantized ones only for int8
     * activations: the f32 path dequantizes rows) */
    if (!p.keep_layout && want_repack() &&
        (st = evlm_weights_repack(m->weights, m->act == EVLM_ACT_INT8, true,
                                  !p.keep_dense && want_sparse(), m->pool)) != EVLM_OK)
        goto fail;
    if (!p.float_head && (st = build_greedy_head(m)) != EVLM_OK) goto fail;
    free(tok_json);
    evlm_llamacpp_free(g); /* the weight set keeps the maps */
    evlm__clear_error();
    *out = m;
    return EVLM_OK;
fail:
    free(tok_json);
    evlm_model_free(m);
    evlm_llamacpp_free(g);
    return st;
}

void evlm_model_free(evlm_model *m) {
    if (!m) return;
    evlm_pool_free(m->pool);
    if (m->family && m->family->free) m->family->free(m);
    evlm_chat_template_free(m->tmpl);
    evlm_tokenizer_free(m->tok);
    evlm_decoder_release(&m->decoder);
    evlm_weights_free(m->weights);
    pthread_mutex_destroy(&m->vision_mu);
    free(m);
}

int evlm_model_n_vocab(const evlm_model *m) {
    return m->cfg.vocab_size;
}
int evlm_model_n_ctx_train(const evlm_model *m) {
    return m->cfg.max_position_embeddings;
}
int evlm_model_n_threads(const evlm_model *m) {
    return m->n_threads;
}

size_t evlm_model_weight_bytes(const evlm_model *m) {
    size_t b = 0;
    for (size_t i = 0; i < evlm_weights_count(m->weights); i++)
        b += evlm_tensor_nbytes(evlm_weights_at(m->weights, i));
    return b;
}

int evlm_model_eos_ids(const evlm_model *m, const int32_t **ids) {
    *ids = m->eos;
    return m->n_eos;
}

bool evlm_model_is_eos(const evlm_model *m, int32_t id) {
    for (int i = 0; i < m->n_eos; i++)
        if (m->eos[i] == id) return true;
    return false;
}

/* ---- context ------------------------------------------------------------------------------ */

evlm_status evlm_context_new(evlm_model *m, const evlm_context_params *params, evlm_context **out) {
    *out = NULL;
    evlm_context_params p = params ? *params : evlm_context_default_params();
    int n_ctx = p.n_ctx;
    if (n_ctx <= 0) {
        n_ctx = m->cfg.max_position_embeddings > 0 ? m->cfg.max_position_embeddings : 4096;
        if (n_ctx > 4096) n_ctx = 4096;
    }
    int n_batch = p.n_batch > 0 ? p.n_batch : 512;
    if (n_batch > n_ctx) n_batch = n_ctx;
    evlm_context *c = calloc(1, sizeof *c);
    if (!c) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    c->model = m;
    static const evlm_type kv_types[] = {EVLM_TYPE_F32, EVLM_TYPE_F16, EVLM_TYPE_I8};
    if ((unsigned)p.kv > EVLM_KV_INT8) {
        free(c);
        return evlm__fail(EVLM_ERR_ARG, "unknown KV cache type %d", (int)p.kv);
    }
    /* the context's own workers: contexts of one model decode at once from several threads */
    evlm_status st = evlm_pool_new(p.n_threads > 0 ? p.n_threads : m->n_threads, &c->pool);
    if (st == EVLM_OK)
        st = evlm_decoder_state_init(&c->state, &m->decoder, n_ctx, n_batch,
                                     evlm_pool_size(c->pool), kv_types[p.kv]);
    c->state.mm.act = m->act;
    if (st != EVLM_OK) {
        evlm_pool_free(c->pool);
        free(c);
        return st;
    }
    *out = c;
    return EVLM_OK;
}

void evlm_context_free(evlm_context *c) {
    if (!c) return;
    if (c->sim_free) c->sim_free(c->sim);
    evlm_decoder_state_release(&c->state);
    evlm_pool_free(c->pool);
    free(c->tree_pos);
    free(c);
}

int evlm_context_n_past(const evlm_context *c) {
    return c->state.n_past;
}

evlm_model *evlm_context_model(evlm_context *c) {
    return c->model;
}
int evlm_context_n_ctx(const evlm_context *c) {
    return c->state.n_ctx;
}

evlm_status evlm_context_truncate(evlm_context *c, int n_past) {
    if (n_past < 0 || n_past > c->state.n_past)
        return evlm__fail(EVLM_ERR_ARG, "cannot truncate the context to %d (it holds %d)", n_past,
                          c->state.n_past);
    c->state.n_past = n_past;
    /* M-RoPE contexts: positions after an image trail the slots; an empty context starts over
     * (a cut inside an earlier prompt keeps that prompt's offset) */
    if (n_past == 0) c->state.pos_offset = 0;
    return EVLM_OK;
}

evlm_status evlm_decode(evlm_context *c, const int32_t *ids, int n, float *logits,
                        bool all_logits) {
    if (!ids) return evlm__fail(EVLM_ERR_ARG, "no token ids");
    return evlm_decoder_forward(evlm__ctx_decoder(c), &c->state, c->pool, ids, NULL, NULL, n,
                                logits, all_logits);
}

evlm_status evlm_decode_greedy(evlm_context *c, const int32_t *ids, int n, int32_t *top, bool all) {
    if (!ids || !top) return evlm__fail(EVLM_ERR_ARG, "no token ids or no room for the greedy ids");
    evlm_decoder_batch b = {.n = n, .ids = ids, .top = top, .all_logits = all};
    return evlm_decoder_decode(evlm__ctx_decoder(c), &c->state, c->pool, &b);
}

static evlm_status decode_tree(evlm_context *c, const int32_t *ids, const int32_t *depth,
                               const uint8_t *mask, int n, const int *out_rows, int n_out,
                               float *logits, int32_t *top) {
    if (!ids || !depth || !mask || n < 1)
        return evlm__fail(EVLM_ERR_ARG, "empty or incomplete token tree");
    if (n > c->tree_cap) {
        int32_t *np = realloc(c->tree_pos, sizeof(int32_t) * (size_t)n);
        if (!np) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        c->tree_pos = np;
        c->tree_cap = n;
    }
    int32_t *pos = c->tree_pos;
    int base = c->state.n_past + c->state.pos_offset;
    for (int i = 0; i < n; i++)
        pos[i] = base + (depth[i] >= 0 && depth[i] <= n ? depth[i] : -base - 1);
    evlm_decoder_batch b = {.n = n,
                            .ids = ids,
                            .pos = pos,
                            .mask = mask,
                            .logits = logits,
                            .out_rows = out_rows,
                            .n_out = n_out,
                            .top = top};
    return evlm_decoder_decode(evlm__ctx_decoder(c), &c->state, c->pool, &b);
}

evlm_status evlm_decode_tree(evlm_context *c, const int32_t *ids, const int32_t *depth,
                             const uint8_t *mask, int n, const int *out_rows, int n_out,
                             float *logits) {
    return decode_tree(c, ids, depth, mask, n, out_rows, n_out, logits, NULL);
}

evlm_status evlm_decode_tree_greedy(evlm_context *c, const int32_t *ids, const int32_t *depth,
                                    const uint8_t *mask, int n, const int *out_rows, int n_out,
                                    int32_t *top) {
    if (!top) return evlm__fail(EVLM_ERR_ARG, "no room for the greedy ids");
    return decode_tree(c, ids, depth, mask, n, out_rows, n_out, NULL, top);
}

evlm_status evlm_context_keep(evlm_context *c, int base, const int *slots, int n_keep) {
    return evlm_decoder_kv_keep(evlm__ctx_decoder(c), &c->state, base, slots, n_keep);
}

/* ---- text ----------------------------------------------------------------------------------- */

evlm_status evlm_tokenize(const evlm_model *m, const char *text, size_t len, bool parse_special,
                          bool add_special, int32_t **ids, size_t *n_ids) {
    evlm_ids v = {0};
    *ids = NULL;
    *n_ids = 0;
    evlm_status st = evlm_tokenizer_encode(m->tok, text, len, parse_special, add_special, &v);
    if (st != EVLM_OK) {
        evlm_ids_free(&v);
        return st;
    }
    if (!v.data) v.data = malloc(sizeof(int32_t)); /* a valid pointer even when empty */
    *ids = v.data;
    *n_ids = v.len;
    return EVLM_OK;
}

evlm_status evlm_detokenize(const evlm_model *m, const int32_t *ids, size_t n_ids,
                            bool skip_special, char **text) {
    evlm_str s = {0};
    *text = NULL;
    /* ids the model has but the tokenizer lacks (a vocabulary padded for alignment, e.g. Qwen2's
     * 151936 rows for 151665 tokens) decode to nothing when special tokens are skipped */
    const int n_tok = evlm_tokenizer_n_vocab(m->tok);
    int32_t *kept = NULL;
    if (skip_special) {
        size_t n = 0;
        for (size_t i = 0; i < n_ids; i++) n += ids[i] >= n_tok && ids[i] < m->cfg.vocab_size;
        if (n) {
            kept = malloc(sizeof(int32_t) * (n_ids - n + 1));
            if (!kept) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            size_t k = 0;
            for (size_t i = 0; i < n_ids; i++)
                if (!(ids[i] >= n_tok && ids[i] < m->cfg.vocab_size)) kept[k++] = ids[i];
            ids = kept;
            n_ids = k;
        }
    }
    evlm_status st = evlm_tokenizer_decode(m->tok, ids, n_ids, skip_special, &s);
    free(kept);
    if (st == EVLM_OK && !s.data) st = evlm_str_append(&s, "", 0);
    if (st != EVLM_OK) {
        evlm_str_free(&s);
        return st;
    }
    *text = s.data;
    return EVLM_OK;
}

evlm_status evlm_chat_prompt(const evlm_model *m, const char *user_text, int n_images,
                             char **prompt) {
    *prompt = NULL;
    if (!m->tmpl) return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s", m->tmpl_error);
    if (n_images < 0 || n_images > 64)
        return evlm__fail(EVLM_ERR_ARG, "bad image count %d", n_images);
    evlm_chat_part parts[65];
    for (int i = 0; i < n_images; i++) parts[i] = (evlm_chat_part){EVLM_PART_IMAGE, NULL};
    parts[n_images] = (evlm_chat_part){EVLM_PART_TEXT, user_text};
    evlm_chat_msg msg = {"user", parts, n_images + 1};
    evlm_str s = {0};
    evlm_status st = evlm_chat_template_apply(m->tmpl, &msg, 1, true, &s);
    if (st != EVLM_OK) {
        evlm_str_free(&s);
        return st;
    }
    *prompt = s.data;
    return EVLM_OK;
}
