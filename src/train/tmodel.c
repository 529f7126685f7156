/*
 * tmodel.c - a model being trained (tmodel.h): the parameter set, the decoder's training state,
 * the vision tower's when the model has one, the batch packing, the loss walk over the target
 * rows in blocks of LOGIT_ROWS (logits never exist for all rows at once) and the teacher's
 * forward for kd / rkl / hidden. Everything a step needs is planned at creation.
 * Not here: the layer walk (tdecoder.c), the tower (tvision.c), the losses' rows (loss.c).
 */
#include "train/tmodel.h"

#include "core/status.h"
#include "core/sysinfo.h"
#include "core/threadpool.h"
#include "model/model_impl.h"
#include "train/distill.h"
#include "train/loss.h"
#include "train/ops.h"
#include "train/qat.h"
#include "train/tdecoder.h"
#include "train/tvision.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* target rows whose logits exist at once (the head's dW is read and written once a block) */
#define LOGIT_ROWS 128

struct evlm_tmodel {
    evlm_model *model;
    evlm_tparams tp;
    evlm_pool *pool;
    evlm_tops ops;
    evlm_tdecoder dec;
    evlm_tvision *vis; /* NULL: text only */
    evlm_tqat *qat;    /* configured QAT (evlm_tmodel_set_qat); NULL: none */
    int max_tokens, max_tiles;
    bool forward_only;   /* weights only: no backward */
    int32_t image_token; /* -1: none */
    /* vision geometry, from the tower's parameters */
    int channels, tile, per_tile;
    /* the packed batch */
    int n, n_seq, n_tiles, n_img, n_targets;
    int32_t *ids, *pos, *tids;
    int *seq_off, *seq_len, *trows;
    float *pixels;     /* [max_tiles][C][S][S] */
    uint8_t *mask;     /* [max_tiles][S][S] */
    float *img, *dimg; /* [max_tiles * per_tile][H] */
    /* the head's rows */
    float *xg, *xf, *frstd, *dxf, *dxg; /* [max_tokens][H], frstd [max_tokens] */
    float *z, *zt;                      /* [LOGIT_ROWS][V] */
    double row_loss[LOGIT_ROWS], row_loss2[LOGIT_ROWS];
    evlm_distill_state *ds; /* NULL: no distillation planned */
};

int evlm_tloss_parse(const char *s) {
    static const char *const names[] = {"ce", "kd", "rkl", "hidden", "qat_ce"};
    for (int i = 0; s && i < 5; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

const char *evlm_tloss_name(evlm_tloss l) {
    static const char *const names[] = {"ce", "kd", "rkl", "hidden", "qat_ce", "distill"};
    return (unsigned)l < 6 ? names[l] : "?";
}

evlm_tparams *evlm_tmodel_params_of(evlm_tmodel *tm) {
    return &tm->tp;
}

const evlm_model *evlm_tmodel_model(const evlm_tmodel *tm) {
    return tm->model;
}

evlm_status evlm_tmodel_set_qat(evlm_tmodel *tm, evlm_type decoder_type, evlm_type vision_type,
                                bool learn_scales) {
    if (tm->dec.n_factored > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "quantization-aware training of a decoder with low-rank factored "
                          "matrices (%d) is not built: train the factored model in float, then "
                          "quantize it",
                          tm->dec.n_factored);
    evlm_tqat *q = calloc(1, sizeof *q);
    if (!q) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    evlm_status st = evlm_tqat_init(q, tm->model, &tm->tp, decoder_type, vision_type, learn_scales);
    if (st != EVLM_OK) {
        free(q);
        return st;
    }
    if (tm->qat) evlm_tqat_release(tm->qat);
    free(tm->qat);
    tm->qat = q;
    tm->dec.qat = q;
    if (tm->vis) evlm_tvision_set_qat(tm->vis, q);
    return EVLM_OK;
}

const evlm_tqat *evlm_tmodel_qat(const evlm_tmodel *tm) {
    return tm->qat;
}

evlm_tparams *evlm_tmodel_qat_scales(evlm_tmodel *tm) {
    return tm->qat && tm->qat->learn_scales ? &tm->qat->scales : NULL;
}

void evlm_tmodel_free(evlm_tmodel *tm) {
    if (!tm) return;
    evlm_distill_state_free(tm->ds);
    if (tm->qat) evlm_tqat_release(tm->qat);
    free(tm->qat);
    evlm_tvision_free(tm->vis);
    evlm_tdecoder_release(&tm->dec);
    evlm_tops_release(&tm->ops);
    evlm_pool_free(tm->pool);
    evlm_tparams_release(&tm->tp);
    free(tm->ids);
    free(tm->pos);
    free(tm->tids);
    free(tm->seq_off);
    free(tm->seq_len);
    free(tm->trows);
    free(tm->pixels);
    free(tm->mask);
    free(tm->img);
    free(tm->dimg);
    free(tm->xg);
    free(tm->xf);
    free(tm->frstd);
    free(tm->dxf);
    free(tm->dxg);
    free(tm->z);
    free(tm->zt);
    free(tm);
}

/* The parameter whose name ends with suffix, or NULL. */
static const evlm_tparam *find_suffix(const evlm_tparams *tp, const char *suffix) {
    size_t ls = strlen(suffix);
    for (int i = 0; i < tp->n; i++) {
        size_t ln = strlen(tp->p[i].name);
        if (ln >= ls && !strcmp(tp->p[i].name + ln - ls, suffix)) return &tp->p[i];
    }
    return NULL;
}

/* Channels, tile side and feature rows per tile of a SigLIP tower + pixel-shuffle connector,
 * from the shapes of its patch embedding [vH, C, P, P], position embedding [NP, vH] and
 * projection [H, vH * s^2]. */
static evlm_status vision_geometry(evlm_tmodel *tm) {
    const evlm_tparam *pe = find_suffix(&tm->tp, "embeddings.patch_embedding.weight");
    const evlm_tparam *pos = find_suffix(&tm->tp, "embeddings.position_embedding.weight");
    const evlm_tparam *proj = find_suffix(&tm->tp, "modality_projection.proj.weight");
    if (!pe || !pos || !proj || pe->n_dims != 4 || pos->n_dims != 2 || proj->n_dims != 2)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "the vision tower's patch / position embedding or the connector's "
                          "projection is missing or not of the expected rank");
    int64_t vh = pe->shape[0], np = pos->shape[0], side = (int64_t)lround(sqrt((double)np));
    int64_t s2 = vh > 0 ? proj->shape[1] / vh : 0;
    if (side * side != np || s2 < 1 || np % s2 || pe->shape[2] < 1)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "vision tower shapes: %lld positions, %lld -> %lld "
                          "connector inputs do not make a square tile grid",
                          (long long)np, (long long)vh, (long long)proj->shape[1]);
    tm->channels = (int)pe->shape[1];
    tm->tile = (int)(side * pe->shape[2]);
    tm->per_tile = (int)(np / s2);
    return EVLM_OK;
}

#define ALLOC(field, count)                                                                        \
    do {                                                                                           \
        size_t n_ = (size_t)(count);                                                               \
        tm->field = calloc(n_ ? n_ : 1, sizeof *tm->field);                                        \
        if (!tm->field) goto nomem;                                                                \
    } while (0)

evlm_status evlm_tmodel_new(evlm_model *model, const evlm_tmodel_params *p, evlm_tmodel **out) {
    *out = NULL;
    if (!model || !p) return evlm__fail(EVLM_ERR_ARG, "no model or parameters");
    /* what has a backward: the Llama-family decoder (no M-RoPE), and of the vision sides
     * only Idefics3 / SmolVLM's (model.h's accessor, no family names here) */
    if (model->cfg.mrope_section[0] || model->cfg.mrope_section[1] ||
        (model->has_vision && !evlm__model_idefics3(model, NULL, NULL, NULL)))
        return evlm__fail(
            EVLM_ERR_UNSUPPORTED,
            "training %s is not supported: Llama-family decoders and Idefics3 / SmolVLM "
            "have a backward, Qwen2-VL's M-RoPE and window attention do not",
            model->cfg.architecture);
    if (p->max_tokens < 2 || p->max_tiles < 0 || p->max_tiles > 4096)
        return evlm__fail(EVLM_ERR_ARG,
                          "max_tokens %d / max_tiles %d: at least 2 tokens and "
                          "0 .. 4096 tiles",
                          p->max_tokens, p->max_tiles);
    evlm_tmodel *tm = calloc(1, sizeof *tm);
    if (!tm) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    tm->model = model;
    tm->max_tokens = p->max_tokens;
    tm->max_tiles = model->has_vision ? p->max_tiles : 0;
    tm->image_token = -1;
    tm->forward_only = p->forward_only;
    evlm_status st = p->forward_only ? evlm_tparams_from_weights_frozen(&tm->tp, model->weights)
                                     : evlm_tparams_from_weights(&tm->tp, model->weights);
    if (st != EVLM_OK) goto fail;
    int n_threads = p->n_threads > 0 ? p->n_threads : evlm_physical_cores();
    if ((st = evlm_pool_new(n_threads < 1 ? 1 : n_threads, &tm->pool)) != EVLM_OK) goto fail;
    if ((st = evlm_tdecoder_init(&tm->dec, &model->decoder, &tm->tp, p->max_tokens)) != EVLM_OK)
        goto fail;
    const int H = tm->dec.H, V = tm->dec.V;
    int max_dim = tm->dec.F > H ? tm->dec.F : H;
    if (tm->dec.QD > max_dim) max_dim = tm->dec.QD;
    if (V > max_dim) max_dim = V; /* the head's rows */
    int max_seq = p->max_tokens, head_dim = tm->dec.HD < 128 ? 128 : tm->dec.HD;
    if (model->has_vision) {
        if ((st = vision_geometry(tm)) != EVLM_OK) goto fail;
        for (int i = 0; i < tm->tp.n; i++) /* the tower's widths and patch counts */
            for (int d = 0; d < tm->tp.p[i].n_dims; d++)
                if (tm->tp.p[i].shape[d] > max_dim && strstr(tm->tp.p[i].name, "vision"))
                    max_dim = (int)tm->tp.p[i].shape[d];
        if (max_dim > max_seq) max_seq = max_dim;
        /* the family's image token: what Idefics3 prompts expand an image's rows into */
        tm->image_token = evlm_tokenizer_token_id(model->tok, "<image>");
        if (tm->image_token < 0 || tm->image_token >= V) {
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s: the tokenizer has no '<image>' token in the vocabulary",
                            evlm_weights_path(model->weights));
            goto fail;
        }
        if (tm->max_tiles > 0) {
            st = evlm_tvision_new(model, &tm->tp, tm->max_tiles, &tm->vis);
            if (st != EVLM_OK) goto fail;
            int vd = 0, vs = 0, vh = 0;
            evlm_tvision_tops_need(tm->vis, &vd, &vs, &vh);
            max_dim = vd > max_dim ? vd : max_dim;
            max_seq = vs > max_seq ? vs : max_seq;
            head_dim = vh > head_dim ? vh : head_dim;
            if (evlm_tvision_tokens_per_tile(tm->vis) != tm->per_tile) {
                st = evlm__fail(EVLM_ERR_FORMAT,
                                "the vision tower gives %d rows a tile, its shapes say %d",
                                evlm_tvision_tokens_per_tile(tm->vis), tm->per_tile);
                goto fail;
            }
        }
    }
    if ((st = evlm_tops_init(&tm->ops, tm->pool, p->kernels, max_dim, max_seq, head_dim)) !=
        EVLM_OK)
        goto fail;
    const size_t T = (size_t)p->max_tokens;
    ALLOC(ids, T);
    ALLOC(pos, T);
    ALLOC(tids, T);
    ALLOC(seq_off, T);
    ALLOC(seq_len, T);
    ALLOC(trows, T);
    ALLOC(xg, T * H);
    ALLOC(xf, T * H);
    ALLOC(frstd, T);
    ALLOC(dxf, T * H);
    ALLOC(dxg, T * H);
    ALLOC(z, (size_t)LOGIT_ROWS * V);
    ALLOC(zt, (size_t)LOGIT_ROWS * V);
    if (tm->max_tiles > 0) {
        const size_t S = (size_t)tm->tile, rows = (size_t)tm->max_tiles * tm->per_tile;
        ALLOC(pixels, (size_t)tm->max_tiles * tm->channels * S * S);
        ALLOC(mask, (size_t)tm->max_tiles * S * S);
        ALLOC(img, rows * H);
        ALLOC(dimg, rows * H);
    }
    *out = tm;
    return EVLM_OK;
nomem:
    st = evlm__fail(EVLM_ERR_NOMEM, "out of memory planning the training state");
fail:
    evlm_tmodel_free(tm);
    return st;
}

/* ---- a step -------------------------------------------------------------------------------- */

/* Packs b into the rows of one pass: ids, positions, sequences, target rows, tiles. */
static evlm_status pack(evlm_tmodel *tm, const evlm_tbatch *b) {
    if (!b || b->n_seq < 1 || !b->seq) return evlm__fail(EVLM_ERR_ARG, "an empty batch");
    int n = 0, nt = 0, tiles = 0, n_img = 0;
    for (int s = 0; s < b->n_seq; s++) {
        const evlm_tseq *q = &b->seq[s];
        if (q->n < 1 || !q->ids)
            return evlm__fail(EVLM_ERR_ARG, "sequence %d of the batch is empty", s);
        const int ctx = tm->model->cfg.max_position_embeddings;
        if (ctx > 0 && q->n > ctx)
            return evlm__fail(EVLM_ERR_ARG,
                              "sequence %d has %d tokens, more than the model's context (%d)", s,
                              q->n, ctx);
        if (q->n > tm->max_tokens - n)
            return evlm__fail(EVLM_ERR_ARG,
                              "the batch has more than %d tokens (max_tokens) at sequence %d",
                              tm->max_tokens, s);
        if (q->n_tiles < 0 || (q->n_tiles > 0 && !q->pixels))
            return evlm__fail(EVLM_ERR_ARG, "sequence %d: %d tiles without pixels", s, q->n_tiles);
        if (q->n_tiles > 0 && tm->max_tiles == 0)
            return evlm__fail(EVLM_ERR_ARG,
                              tm->model->has_vision
                                  ? "sequence %d has an image, the model was planned for no tiles"
                                  : "sequence %d has an image, the model has no vision tower",
                              s);
        if (q->n_tiles > tm->max_tiles - tiles)
            return evlm__fail(EVLM_ERR_ARG,
                              "the batch has more than %d tiles (max_tiles) at "
                              "sequence %d",
                              tm->max_tiles, s);
        tm->seq_off[s] = n;
        tm->seq_len[s] = q->n;
        int seq_img = 0;
        for (int t = 0; t < q->n; t++) {
            tm->ids[n + t] = q->ids[t];
            tm->pos[n + t] = t;
            seq_img += tm->image_token >= 0 && q->ids[t] == tm->image_token;
            if (q->target && t < q->n - 1 && q->target[t]) {
                tm->trows[nt] = n + t;
                tm->tids[nt++] = q->ids[t + 1];
            }
        }
        if (seq_img != q->n_tiles * tm->per_tile && (seq_img || q->n_tiles))
            return evlm__fail(EVLM_ERR_ARG,
                              "sequence %d has %d image tokens for %d tiles of %d "
                              "feature rows each",
                              s, seq_img, q->n_tiles, tm->per_tile);
        if (q->n_tiles > 0) {
            const size_t S2 = (size_t)tm->tile * tm->tile,
                         px = (size_t)q->n_tiles * tm->channels * S2;
            memcpy(tm->pixels + (size_t)tiles * tm->channels * S2, q->pixels, sizeof(float) * px);
            if (q->pixel_mask) {
                memcpy(tm->mask + (size_t)tiles * S2, q->pixel_mask, (size_t)q->n_tiles * S2);
            } else {
                memset(tm->mask + (size_t)tiles * S2, 1, (size_t)q->n_tiles * S2);
            }
            n_img += seq_img;
        }
        tiles += q->n_tiles;
        n += q->n;
    }
    tm->n = n;
    tm->n_seq = b->n_seq;
    tm->n_targets = nt;
    tm->n_tiles = tiles;
    tm->n_img = n_img;
    return EVLM_OK;
}

static evlm_tdec_rows rows_of(const evlm_tmodel *tm) {
    evlm_tdec_rows r = {tm->n,
                        tm->ids,
                        tm->pos,
                        tm->n_seq,
                        tm->seq_off,
                        tm->seq_len,
                        tm->n_tiles ? tm->image_token : -1,
                        tm->n_tiles ? tm->img : NULL,
                        tm->n_img};
    return r;
}

/* Packs b and runs the forward (vision, decoder, final norm of the target rows). */
static evlm_status forward(evlm_tmodel *tm, const evlm_tbatch *b, bool qat, bool head) {
    EVLM_TRY(pack(tm, b));
    if (tm->qat) { /* configured QAT replaces qat_ce's fixed path */
        evlm_tqat_refresh(tm->qat, &tm->ops);
        qat = false;
    }
    if (tm->n_tiles > 0)
        EVLM_TRY(
            evlm_tvision_forward(tm->vis, &tm->ops, tm->pixels, tm->mask, tm->n_tiles, tm->img));
    EVLM_TRY(evlm_tdecoder_set_qat(&tm->dec, &tm->ops, qat));
    evlm_tdec_rows r = rows_of(tm);
    EVLM_TRY(evlm_tdecoder_forward(&tm->dec, &tm->ops, &r));
    if (head && tm->n_targets > 0)
        evlm_tdecoder_final_norm(&tm->dec, &tm->ops, tm->trows, tm->n_targets, tm->xg, tm->xf,
                                 tm->frstd);
    return EVLM_OK;
}

evlm_status evlm_tmodel_logits(evlm_tmodel *tm, const evlm_tbatch *b, float *z, int *n_targets) {
    *n_targets = 0;
    EVLM_TRY(forward(tm, b, false, true));
    const size_t H = (size_t)tm->dec.H, V = (size_t)tm->dec.V;
    for (int c0 = 0; c0 < tm->n_targets; c0 += LOGIT_ROWS) {
        const int nr = tm->n_targets - c0 < LOGIT_ROWS ? tm->n_targets - c0 : LOGIT_ROWS;
        evlm_tdecoder_logits(&tm->dec, &tm->ops, tm->xf + (size_t)c0 * H, nr, z + (size_t)c0 * V);
    }
    *n_targets = tm->n_targets;
    return EVLM_OK;
}

typedef struct {
    const evlm_tmodel *teacher;
    int n;
    float scale;
} hidden_ctx;

static void hidden_grad(void *user, int layer, const float *h, float *dx) {
    const hidden_ctx *c = user;
    const evlm_tdecoder *t = &c->teacher->dec;
    const float *ht = t->x + (size_t)layer * t->max_tokens * t->H;
    evlm_tloss_sq_err(dx, h, ht, (size_t)c->n * t->H, c->scale);
}

static evlm_status check_teacher(const evlm_tmodel *tm, const evlm_tmodel *te, evlm_tloss l) {
    if (!te) return evlm__fail(EVLM_ERR_ARG, "the %s loss needs a teacher", evlm_tloss_name(l));
    const evlm_tdecoder *a = &tm->dec, *b = &te->dec;
    if (a->V != b->V)
        return evlm__fail(EVLM_ERR_ARG, "the teacher's vocabulary (%d) is not the student's (%d)",
                          b->V, a->V);
    if (l == EVLM_TLOSS_HIDDEN && (a->L != b->L || a->H != b->H))
        return evlm__fail(EVLM_ERR_ARG,
                          "the hidden loss needs the teacher's shape: %d x %d layers / width, "
                          "the student has %d x %d",
                          b->L, b->H, a->L, a->H);
    if (te->max_tokens < tm->n)
        return evlm__fail(EVLM_ERR_ARG, "the teacher was planned for %d tokens, the batch has %d",
                          te->max_tokens, tm->n);
    return EVLM_OK;
}

/* ---- distillation (train/distill.h) --------------------------------------------------------- */

evlm_status evlm_tmodel_plan_distill(evlm_tmodel *tm, const evlm_tmodel *teacher,
                                     const struct evlm_distill *d) {
    if (!tm || !teacher || teacher == tm)
        return evlm__fail(EVLM_ERR_ARG, "distillation needs a teacher other than the student");
    evlm_distill_state *st = NULL;
    EVLM_TRY(evlm_distill_state_new(d, &tm->dec, &teacher->dec, tm->pool, tm->ops.k, tm->max_tokens,
                                    &st));
    evlm_distill_state_free(tm->ds);
    tm->ds = st;
    return EVLM_OK;
}

evlm_tparams *evlm_tmodel_distill_params(evlm_tmodel *tm) {
    return tm->ds ? evlm_distill_state_params(tm->ds) : NULL;
}

evlm_status evlm_tmodel_set_distill(evlm_tmodel *tm, const struct evlm_distill *d) {
    if (!tm->ds)
        return evlm__fail(EVLM_ERR_ARG, "no distillation planned (evlm_tmodel_plan_distill)");
    return evlm_distill_state_set(tm->ds, d);
}

static evlm_status step_distill(evlm_tmodel *tm, const evlm_tbatch *b, const evlm_tstep *s,
                                evlm_tresult *r) {
    if (!tm->ds)
        return evlm__fail(EVLM_ERR_ARG, "the distill loss needs evlm_tmodel_plan_distill first");
    const evlm_distill *d = evlm_distill_state_spec(tm->ds);
    evlm_tmodel *te = s->teacher;
    if (!te || te == tm) return evlm__fail(EVLM_ERR_ARG, "the distill loss needs another teacher");
    if (tm->forward_only && !s->no_backward)
        return evlm__fail(EVLM_ERR_ARG, "a forward-only model (a teacher) has no backward: set "
                                        "no_backward");
    const bool use_ce = d->alpha > 0, use_lg = d->logit != EVLM_DLOGIT_NONE && d->alpha < 1;
    const bool rows = use_ce || use_lg;
    EVLM_TRY(forward(tm, b, false, rows));
    r->n_tokens = tm->n;
    r->n_targets = tm->n_targets;
    if (rows && tm->n_targets == 0)
        return evlm__fail(EVLM_ERR_ARG, "the batch has no target positions for the distill loss");
    EVLM_TRY(evlm_distill_state_check(tm->ds, &tm->dec, &te->dec, tm->n));
    /* the teacher only runs when a term reads it (--alpha 1 alone is cross-entropy) */
    if (use_lg || d->hidden_weight > 0 || d->attn_weight > 0)
        EVLM_TRY(forward(te, b, false, use_lg));
    const evlm_tdecoder *dd = &tm->dec;
    const size_t H = (size_t)dd->H, V = (size_t)dd->V;
    const float gs = s->grad_scale;
    const bool grad = !s->no_backward;
    if (rows) {
        const int nt = tm->n_targets;
        double sce = 0, slg = 0;
        for (int c0 = 0; c0 < nt; c0 += LOGIT_ROWS) {
            const int nr = nt - c0 < LOGIT_ROWS ? nt - c0 : LOGIT_ROWS;
            evlm_tdecoder_logits(dd, &tm->ops, tm->xf + (size_t)c0 * H, nr, tm->z);
            if (use_lg)
                evlm_tdecoder_logits(&te->dec, &te->ops, te->xf + (size_t)c0 * te->dec.H, nr,
                                     tm->zt);
            evlm_tloss_distill_rows(&tm->ops, tm->z, use_lg ? tm->zt : NULL, tm->tids + c0, nr,
                                    (int)V, d, gs / (float)nt, grad, tm->row_loss, tm->row_loss2);
            for (int i = 0; i < nr; i++) {
                sce += tm->row_loss[i];
                slg += tm->row_loss2[i];
            }
            if (grad)
                evlm_tdecoder_logits_bwd(dd, &tm->ops, tm->z, tm->xf + (size_t)c0 * H, nr,
                                         tm->dxf + (size_t)c0 * H);
        }
        r->ce = sce / nt;
        r->logit = slg / nt;
    }
    const evlm_distill_rows dr = {tm->n, tm->n_seq, tm->seq_off, tm->seq_len};
    evlm_distill_forward(tm->ds, d, dd, &te->dec, &dr, &r->hidden, &r->attn);
    r->loss = (use_ce ? (double)d->alpha * r->ce : 0) +
              (use_lg ? (1.0 - (double)d->alpha) * r->logit : 0) +
              (double)d->hidden_weight * r->hidden + (double)d->attn_weight * r->attn;
    if (!grad) return EVLM_OK;
    evlm_tdecoder_bwd_begin(&tm->dec, tm->n);
    if (rows)
        evlm_tdecoder_final_norm_bwd(&tm->dec, &tm->ops, tm->trows, tm->n_targets, tm->dxf, tm->xg,
                                     tm->frstd, tm->dxg);
    evlm_distill_arm(tm->ds, d, dd, &te->dec, &dr, gs);
    evlm_tdec_rows rr = rows_of(tm);
    evlm_tdecoder_backward_ex(
        &tm->dec, &tm->ops, &rr, d->hidden_weight > 0 ? evlm_distill_hidden_hook : NULL, tm->ds,
        d->attn_weight > 0 ? evlm_distill_attn_hook : NULL, tm->ds, tm->n_tiles ? tm->dimg : NULL);
    evlm_distill_finish(tm->ds, d);
    if (tm->n_tiles > 0) EVLM_TRY(evlm_tvision_backward(tm->vis, &tm->ops, tm->dimg));
    return EVLM_OK;
}

evlm_status evlm_tmodel_step(evlm_tmodel *tm, const evlm_tbatch *b, const evlm_tstep *s,
                             evlm_tresult *r) {
    memset(r, 0, sizeof *r);
    const evlm_tloss l = s->loss;
    if (l == EVLM_TLOSS_DISTILL) return step_distill(tm, b, s, r);
    if ((unsigned)l > EVLM_TLOSS_QAT_CE) return evlm__fail(EVLM_ERR_ARG, "unknown loss %d", l);
    const bool distill = l == EVLM_TLOSS_KD || l == EVLM_TLOSS_RKL || l == EVLM_TLOSS_HIDDEN;
    const bool rows_loss = l != EVLM_TLOSS_HIDDEN;
    if (distill && s->teacher == tm)
        return evlm__fail(EVLM_ERR_ARG, "the teacher must be another model");
    if ((l == EVLM_TLOSS_KD || l == EVLM_TLOSS_RKL) && !(s->temperature > 0))
        return evlm__fail(EVLM_ERR_ARG, "the %s loss needs a temperature > 0 (got %g)",
                          evlm_tloss_name(l), (double)s->temperature);
    if (tm->forward_only && !s->no_backward)
        return evlm__fail(EVLM_ERR_ARG, "a forward-only model (a teacher) has no backward: set "
                                        "no_backward");
    EVLM_TRY(forward(tm, b, l == EVLM_TLOSS_QAT_CE, rows_loss));
    r->n_tokens = tm->n;
    r->n_targets = tm->n_targets;
    if (rows_loss && tm->n_targets == 0)
        return evlm__fail(EVLM_ERR_ARG, "the batch has no target positions for the %s loss",
                          evlm_tloss_name(l));
    if (distill) {
        EVLM_TRY(check_teacher(tm, s->teacher, l));
        EVLM_TRY(forward(s->teacher, b, false, rows_loss));
    }
    const evlm_tdecoder *d = &tm->dec;
    const size_t H = (size_t)d->H, V = (size_t)d->V;
    const float gs = s->grad_scale;
    const bool grad = !s->no_backward;
    double sum = 0;
    if (rows_loss) {
        const int nt = tm->n_targets;
        const float scale = gs / (float)nt;
        for (int c0 = 0; c0 < nt; c0 += LOGIT_ROWS) {
            const int nr = nt - c0 < LOGIT_ROWS ? nt - c0 : LOGIT_ROWS;
            evlm_tdecoder_logits(d, &tm->ops, tm->xf + (size_t)c0 * H, nr, tm->z);
            if (l == EVLM_TLOSS_CE || l == EVLM_TLOSS_QAT_CE) {
                evlm_tloss_ce_rows(&tm->ops, tm->z, tm->tids + c0, nr, (int)V, scale, grad,
                                   tm->row_loss);
            } else {
                evlm_tmodel *te = s->teacher;
                /* the teacher's rows are of its own width */
                evlm_tdecoder_logits(&te->dec, &te->ops, te->xf + (size_t)c0 * te->dec.H, nr,
                                     tm->zt);
                if (l == EVLM_TLOSS_KD)
                    evlm_tloss_kd_rows(&tm->ops, tm->z, tm->zt, nr, (int)V, s->temperature, scale,
                                       grad, tm->row_loss);
                else
                    evlm_tloss_rkl_rows(&tm->ops, tm->z, tm->zt, nr, (int)V, s->temperature, scale,
                                        grad, tm->row_loss);
            }
            for (int i = 0; i < nr; i++) sum += tm->row_loss[i];
            if (grad)
                evlm_tdecoder_logits_bwd(d, &tm->ops, tm->z, tm->xf + (size_t)c0 * H, nr,
                                         tm->dxf + (size_t)c0 * H);
        }
        r->loss = sum / nt;
    } else {
        const evlm_tdecoder *t = &s->teacher->dec;
        for (int layer = 1; layer <= d->L; layer++)
            sum += evlm_tloss_sq_err(NULL, d->x + (size_t)layer * d->max_tokens * H,
                                     t->x + (size_t)layer * t->max_tokens * H, (size_t)tm->n * H,
                                     0.0f);
        r->loss = sum / ((double)d->L * tm->n * H);
    }
    if (!grad) return EVLM_OK;
    evlm_tdecoder_bwd_begin(&tm->dec, tm->n);
    if (rows_loss)
        evlm_tdecoder_final_norm_bwd(&tm->dec, &tm->ops, tm->trows, tm->n_targets, tm->dxf, tm->xg,
                                     tm->frstd, tm->dxg);
    hidden_ctx hc = {s->teacher, tm->n, (float)((double)gs / ((double)d->L * tm->n * H))};
    evlm_tdec_rows rr = rows_of(tm);
    evlm_tdecoder_backward(&tm->dec, &tm->ops, &rr, rows_loss ? NULL : hidden_grad, &hc,
                           tm->n_tiles ? tm->dimg : NULL);
    if (tm->n_tiles > 0) EVLM_TRY(evlm_tvision_backward(tm->vis, &tm->ops, tm->dimg));
    if (tm->qat) evlm_tqat_backward(tm->qat, &tm->ops);
    return EVLM_OK;
}
