/*
 * loop.c - fine-tuning (evlm_finetune, include/evlm_train.h): data, the update loop (gradient
 * accumulation, clipping, AdamW, the schedule), periodic evaluation through the caller's hook,
 * checkpoints, the JSON log and the final Hugging Face folder. The same loop distills (a
 * forward-only teacher, EVLM_TLOSS_DISTILL steps, the projections stepped beside the model's
 * parameters) and trains quantization-aware (evlm_tmodel_set_qat, the learned scales stepped
 * likewise, the GGUF written by evlm_qat_export instead of the folder). A GGUF evlm wrote is a
 * source too (its side files read from its embedded copies). --budget-minutes fits the schedule's
 * length to the time left after every update (at the mean pace so far).
 * Determinism: for a fixed seed, options and thread count the run is a function of its inputs;
 * a checkpoint holds everything that state depends on (weights, moments, update count, the
 * PRNG state at the start of the current epoch and the position in its order, the extra sets),
 * so a resumed run produces the same bytes as a straight one (not with a budget: the clock
 * decides its length).
 * Not here: the model's forward / backward (tmodel), the optimizer's arithmetic (adamw.c), the
 * items (data.c), the folders' formats (checkpoint.c), printing (the command's callback).
 */
#include "core/file.h"
#include "core/status.h"
#include "evlm_train.h"
#include "io/gguf.h"
#include "io/hf_export.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/distill.h"
#include "train/qat.h"
#include "train/params.h"
#include "train/tmodel.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

evlm_finetune_params evlm_finetune_default_params(void) {
    return (evlm_finetune_params){.epochs = 1,
                                  .batch = 8,
                                  .accum = 1,
                                  .lr = 1e-4,
                                  .clip = 1.0,
                                  .seed = 42,
                                  .dtype = "source"};
}

typedef struct step_rec {
    int64_t step, epoch;
    double loss, lr, grad_norm, tok_s;
} step_rec;

typedef struct eval_rec {
    int64_t step;
    double accuracy;
} eval_rec;

typedef struct run {
    const evlm_finetune_params *p;
    char ckpt[4096], model_dir[4096], log[4096], eval_dir[4096];
    evlm_model *model;
    evlm_tmodel *tm;
    evlm_tparams *tp;
    evlm_tdata data;
    int *order;
    evlm_tseq *seqs;
    step_rec *steps; /* [total] */
    eval_rec *evals; /* [total + 1] */
    int64_t n_steps, n_evals, total;
    char *options;   /* JSON */
    evlm_dir src;    /* the model's files: its folder, or the files its GGUF embeds */
    evlm_gguf *gguf; /* a GGUF source, open for its embedded files */
    /* distillation: the teacher (its own model, or NULL: the student's own loaded model) */
    evlm_model *teacher_model;
    evlm_tmodel *teacher;
    evlm_distill dspec;
    char targets[4096]; /* --generate-targets: the teacher's answers (OUT_DIR/targets.jsonl) */
    /* the parameter sets stepped together: the model's, distillation projections, QAT scales */
    evlm_tparams *sets[3];
    int n_sets;
    evlm_ckpt_dtype dtype;
    int max_tokens; /* rows of one batch: batch x the longest item */
} run;

/* ---- options ------------------------------------------------------------------------------- */

static cJSON *globs_json(const char *const *g, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(g[i]));
    return a;
}

/* The options a resumed run must share with the saved one (steps, epochs, evaluation, saving
 * and the budget may change). */
static char *options_json(const evlm_finetune_params *p) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", p->model);
    cJSON_AddStringToObject(j, "data", p->data ? p->data : "");
    cJSON_AddStringToObject(j, "text", p->text ? p->text : "");
    cJSON_AddNumberToObject(j, "batch", p->batch);
    cJSON_AddNumberToObject(j, "accum", p->accum);
    cJSON_AddNumberToObject(j, "ctx", p->ctx);
    cJSON_AddNumberToObject(j, "lr", p->lr);
    cJSON_AddNumberToObject(j, "min_lr", p->min_lr);
    cJSON_AddNumberToObject(j, "warmup", (double)p->warmup);
    cJSON_AddNumberToObject(j, "weight_decay", p->weight_decay);
    cJSON_AddNumberToObject(j, "clip", p->clip);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, p->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "threads", p->n_threads);
    cJSON_AddItemToObject(j, "train", globs_json(p->train, p->n_train));
    cJSON_AddItemToObject(j, "freeze", globs_json(p->freeze, p->n_freeze));
    if (p->distill) {
        const evlm_finetune_distill *d = p->distill;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "teacher", d->teacher ? d->teacher : "(the model itself)");
        cJSON_AddStringToObject(o, "loss", d->loss ? d->loss : "kl");
        cJSON_AddNumberToObject(o, "temperature", d->temperature > 0 ? d->temperature : 1);
        cJSON_AddNumberToObject(o, "alpha", d->alpha);
        cJSON_AddNumberToObject(o, "hidden_weight", d->hidden_weight);
        cJSON_AddStringToObject(o, "layer_map", d->layer_map ? d->layer_map : "auto");
        cJSON_AddNumberToObject(o, "attn_weight", d->attn_weight);
        cJSON_AddBoolToObject(o, "generate_targets", d->generate_targets);
        cJSON_AddItemToObject(j, "distill", o);
    }
    if (p->qat) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", p->qat->type ? p->qat->type : "");
        cJSON_AddStringToObject(o, "vision", p->qat->vision ? p->qat->vision : "");
        cJSON_AddBoolToObject(o, "learn_scales", p->qat->learn_scales);
        cJSON_AddItemToObject(j, "qat", o);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static evlm_status check_options(const char *dir, const char *saved, const char *now) {
    cJSON *a = cJSON_Parse(saved), *b = cJSON_Parse(now);
    evlm_status st = EVLM_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, b) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(a, e->string);
        if (!o || !cJSON_Compare(o, e, true)) {
            char *was = o ? cJSON_PrintUnformatted(o) : NULL;
            char *is = cJSON_PrintUnformatted(e);
            st = evlm__fail(EVLM_ERR_ARG,
                            "%s: saved with %s = %s, this run has %s: a resumed run needs the "
                            "same options",
                            dir, e->string, was ? was : "(none)", is ? is : "?");
            free(was);
            free(is);
            break;
        }
    }
    /* a distillation / QAT checkpoint is not resumed as another kind of run */
    static const char *const kinds[2] = {"distill", "qat"};
    for (int k = 0; k < 2 && st == EVLM_OK; k++)
        if (cJSON_HasObjectItem(a, kinds[k]) && !cJSON_HasObjectItem(b, kinds[k]))
            st = evlm__fail(EVLM_ERR_ARG,
                            "%s: saved by a %s run, this run is not one: a resumed run needs the "
                            "same options",
                            dir, kinds[k]);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return st;
}

/* ---- log ----------------------------------------------------------------------------------- */

static evlm_status write_log(run *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON *o = cJSON_Parse(r->options);
    cJSON_AddItemToObject(j, "options", o ? o : cJSON_CreateObject());
    cJSON_AddNumberToObject(j, "total_steps", (double)r->total);
    cJSON *st = cJSON_CreateArray();
    for (int64_t i = 0; i < r->n_steps; i++) {
        const step_rec *s = &r->steps[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "step", (double)s->step);
        cJSON_AddNumberToObject(e, "epoch", (double)s->epoch);
        cJSON_AddNumberToObject(e, "loss", s->loss);
        cJSON_AddNumberToObject(e, "lr", s->lr);
        cJSON_AddNumberToObject(e, "grad_norm", s->grad_norm);
        cJSON_AddNumberToObject(e, "tokens_per_s", s->tok_s);
        cJSON_AddItemToArray(st, e);
    }
    cJSON_AddItemToObject(j, "steps", st);
    cJSON *ev = cJSON_CreateArray();
    for (int64_t i = 0; i < r->n_evals; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "step", (double)r->evals[i].step);
        cJSON_AddNumberToObject(e, "accuracy", r->evals[i].accuracy);
        cJSON_AddItemToArray(ev, e);
    }
    cJSON_AddItemToObject(j, "evals", ev);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", r->log);
    evlm_status rc = evlm_write_file_atomic(r->log, s, strlen(s));
    free(s);
    return rc;
}

/* A resumed run keeps the log's records up to the checkpoint's step (when the log is there). */
static void read_log(run *r, int64_t upto) {
    char *text;
    size_t len;
    if (!evlm_file_exists(r->log) || evlm_read_file(r->log, (size_t)1 << 30, &text, &len)) {
        evlm__clear_error();
        return;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "steps")) {
        double s = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "step"));
        if (!(s >= 1 && s <= (double)upto) || r->n_steps >= r->total) continue;
        r->steps[r->n_steps++] =
            (step_rec){(int64_t)s,
                       (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "epoch")),
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "loss")),
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "lr")),
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "grad_norm")),
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "tokens_per_s"))};
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "evals")) {
        double s = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "step"));
        if (!(s >= 0 && s <= (double)upto) || r->n_evals > r->total) continue;
        r->evals[r->n_evals++] = (eval_rec){
            (int64_t)s, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "accuracy"))};
    }
    cJSON_Delete(j);
}

/* ---- folders ------------------------------------------------------------------------------- */

/* The final model folder, replacing one a previous run left (moved aside, removed after). */
static evlm_status write_model(run *r, const char *dir) {
    struct stat sb;
    char old[4096 + 16] = "";
    if (lstat(dir, &sb) == 0) {
        char base[4096 + 8];
        snprintf(base, sizeof base, "%s.old", dir);
        EVLM_TRY(evlm_hf_temp_dir(base, old, sizeof old));
        if (rename(dir, old) != 0) {
            rmdir(old);
            return evlm__fail(EVLM_ERR_IO, "%s: cannot move the previous model aside: %s", dir,
                              strerror(errno));
        }
    }
    evlm_status st = evlm_ckpt_export_from(r->tp, &r->src, dir, r->dtype);
    if (old[0]) {
        if (st == EVLM_OK)
            evlm_hf_remove_dir(old);
        else
            rename(old, dir);
    }
    return st;
}

static evlm_status evaluate(run *r, int64_t step, double *acc) {
    const evlm_finetune_params *p = r->p;
    evlm_hf_remove_dir(r->eval_dir); /* a crashed run's leftover */
    EVLM_TRY(evlm_ckpt_export_from(r->tp, &r->src, r->eval_dir, r->dtype));
    *acc = p->eval_fn(p->user, r->eval_dir, p->eval);
    evlm_hf_remove_dir(r->eval_dir);
    if (*acc < 0)
        return evlm__fail(EVLM_ERR_ARG, "%s: evaluation at step %" PRId64 " failed", p->eval, step);
    r->evals[r->n_evals++] = (eval_rec){step, *acc};
    return EVLM_OK;
}

/* ---- the run ------------------------------------------------------------------------------- */

static evlm_status gguf_file(const void *ctx, const char *name, const char **data, size_t *len) {
    return evlm_gguf_file_text(ctx, name, data, len);
}

/* The distillation description and the QAT types from the options (errors name the option). */
static evlm_status parse_specs(run *r, bool from_gguf, evlm_type *qt, evlm_type *qv) {
    const evlm_finetune_params *p = r->p;
    const evlm_finetune_distill *d = p->distill;
    if (d) {
        r->dspec = evlm_distill_default();
        if (d->loss) EVLM_TRY(evlm_distill_parse_loss(d->loss, &r->dspec));
        r->dspec.temperature = d->temperature > 0 ? (float)d->temperature : 1.0f;
        r->dspec.alpha = (float)d->alpha;
        r->dspec.hidden_weight = (float)d->hidden_weight;
        r->dspec.attn_weight = (float)d->attn_weight;
        if (d->layer_map) {
            if (d->hidden_weight <= 0 && d->attn_weight <= 0)
                return evlm__fail(EVLM_ERR_ARG,
                                  "--layer-map needs a hidden or attention term (--hidden-loss W "
                                  "or --attn-loss W)");
            EVLM_TRY(evlm_distill_parse_map(d->layer_map, &r->dspec));
        }
        EVLM_TRY(evlm_distill_check(&r->dspec));
        if (!d->teacher && !p->qat)
            return evlm__fail(EVLM_ERR_ARG, "distillation needs a teacher (--teacher T)");
        if (d->generate_targets && (!d->teacher || !p->data))
            return evlm__fail(EVLM_ERR_ARG,
                              "--generate-targets needs a teacher and question-answer data "
                              "(--data FILE.jsonl)");
    }
    if (p->qat) {
        const evlm_finetune_qat *q = p->qat;
        *qt = q->type ? evlm_type_parse(q->type) : EVLM_TYPE_COUNT;
        *qv = q->vision ? evlm_type_parse(q->vision) : *qt;
        if (*qt == EVLM_TYPE_COUNT || !evlm_tqat_type_ok(*qt))
            return evlm__fail(EVLM_ERR_ARG, "qat: unknown type '%s' (q4_0, q8_0, q4_1)",
                              q->type ? q->type : "");
        if (*qv == EVLM_TYPE_COUNT || !evlm_tqat_type_ok(*qv))
            return evlm__fail(EVLM_ERR_ARG, "qat: unknown vision type '%s' (q4_0, q8_0, q4_1)",
                              q->vision);
        if (!q->out_gguf) return evlm__fail(EVLM_ERR_ARG, "qat: no output GGUF given");
        if (from_gguf)
            return evlm__fail(EVLM_ERR_ARG,
                              "%s: qat trains a float model folder (the export reads its "
                              "tensors), not a GGUF",
                              p->model);
    }
    return EVLM_OK;
}

/* The same probe text tokenized by both models: different tokenizers of one size are refused
 * (the logits would be compared id by id). */
static evlm_status same_tokenizer(const evlm_model *s, const evlm_model *t, const char *teacher) {
    static const char probe[] = "The quick brown fox jumps over the lazy dog. 0123456789, "
                                "Hello world! Was ist das? \u00e9t\u00e9";
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    evlm_status st = evlm_tokenize(s, probe, strlen(probe), false, false, &a, &na);
    if (st == EVLM_OK) st = evlm_tokenize(t, probe, strlen(probe), false, false, &b, &nb);
    if (st == EVLM_OK && (na != nb || memcmp(a, b, na * sizeof *a)))
        st = evlm__fail(EVLM_ERR_ARG,
                        "%s: the teacher's tokenizer is not the student's (the same text gives "
                        "other ids): distillation needs one vocabulary",
                        teacher);
    free(a);
    free(b);
    return st;
}

/* The teacher (a forward-only model: its own file, or the student's float weights as loaded)
 * and the distillation plan; the sets stepped beside the model's. */
static evlm_status setup_teacher(run *r, const evlm_tmodel_params *tmp) {
    const evlm_finetune_params *p = r->p;
    const evlm_finetune_distill *d = p->distill;
    evlm_tmodel_params tt = *tmp;
    tt.forward_only = true;
    evlm_model *tm = r->model;
    if (d->teacher) {
        evlm_model_params mp = evlm_model_default_params();
        mp.n_threads = p->n_threads;
        mp.keep_layout = true;
        mp.keep_dense = true;
        EVLM_TRY(evlm_model_load(d->teacher, &mp, &r->teacher_model));
        tm = r->teacher_model;
        EVLM_TRY(same_tokenizer(r->model, tm, d->teacher));
    }
    evlm_status st = evlm_tmodel_new(tm, &tt, &r->teacher);
    if (st != EVLM_OK) return evlm__fail_prefix(st, "teacher %s", d->teacher ? d->teacher : "");
    st = evlm_tmodel_plan_distill(r->tm, r->teacher, &r->dspec);
    if (st != EVLM_OK)
        return evlm__fail_prefix(st, "teacher %s", d->teacher ? d->teacher : "(the model itself)");
    evlm_tparams *proj = evlm_tmodel_distill_params(r->tm);
    if (proj) r->sets[r->n_sets++] = proj;
    return EVLM_OK;
}

static evlm_status setup(run *r) {
    const evlm_finetune_params *p = r->p;
    if (!p->model || !p->out_dir || (!p->data && !p->text))
        return evlm__fail(EVLM_ERR_ARG, "finetune needs a model, an output folder and data");
    if (p->batch < 1 || p->accum < 1 || p->lr <= 0 || p->steps < 0 || p->epochs < 0)
        return evlm__fail(EVLM_ERR_ARG, "finetune: batch, accum, lr must be positive");
    if (p->eval && !p->eval_fn)
        return evlm__fail(EVLM_ERR_ARG, "finetune: --eval needs an evaluation hook");
    struct stat sb;
    if (stat(p->model, &sb) != 0)
        return evlm__fail(EVLM_ERR_ARG, "%s: %s", p->model, strerror(errno));
    r->src = evlm_dir_folder(p->model);
    if (!S_ISDIR(sb.st_mode)) { /* a GGUF evlm wrote: its side files are embedded */
        EVLM_TRY(evlm_gguf_open(p->model, &r->gguf));
        r->src.get = gguf_file;
        r->src.ctx = r->gguf;
        if (!evlm_dir_has(&r->src, "config.json"))
            return evlm__fail(EVLM_ERR_ARG,
                              "%s: this GGUF embeds no config.json (evlm.file.*): finetune "
                              "trains a model folder or a GGUF evlm wrote",
                              p->model);
    }
    if (!p->dtype || !strcmp(p->dtype, "source"))
        r->dtype = EVLM_CKPT_SOURCE;
    else if (!strcmp(p->dtype, "bf16"))
        r->dtype = EVLM_CKPT_BF16;
    else if (!strcmp(p->dtype, "f32"))
        r->dtype = EVLM_CKPT_F32;
    else
        return evlm__fail(EVLM_ERR_ARG, "unknown dtype '%s' (source, bf16, f32)", p->dtype);
    evlm_type qt = EVLM_TYPE_COUNT, qv = EVLM_TYPE_COUNT;
    EVLM_TRY(parse_specs(r, r->gguf != NULL, &qt, &qv));
    EVLM_TRY(evlm_mkdir(p->out_dir));
    EVLM_TRY(evlm_path_join(r->ckpt, sizeof r->ckpt, p->out_dir, "checkpoint"));
    EVLM_TRY(evlm_path_join(r->model_dir, sizeof r->model_dir, p->out_dir, "model"));
    EVLM_TRY(evlm_path_join(r->log, sizeof r->log, p->out_dir, "log.json"));
    EVLM_TRY(evlm_path_join(r->eval_dir, sizeof r->eval_dir, p->out_dir, "eval-tmp"));
    const char *data = p->data;
    if (p->distill && p->distill->generate_targets) {
        /* black box: the teacher's answers, generated once (a resume finds them) */
        EVLM_TRY(evlm_path_join(r->targets, sizeof r->targets, p->out_dir, "targets.jsonl"));
        if (!evlm_file_exists(r->targets))
            EVLM_TRY(evlm_tdata_generate_targets(p->distill->teacher, p->data, r->targets,
                                                 p->distill->target_tokens, p->n_threads));
        data = r->targets;
    }

    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = p->n_threads;
    mp.keep_layout = true;
    mp.keep_dense = true;
    EVLM_TRY(evlm_model_load(p->model, &mp, &r->model));
    int ctx = p->ctx > 0 ? p->ctx : evlm_model_n_ctx_train(r->model);
    if (p->ctx <= 0 && ctx > 2048) ctx = 2048;
    if (data) EVLM_TRY(evlm_tdata_add_jsonl(&r->data, r->model, data, ctx));
    if (p->text) EVLM_TRY(evlm_tdata_add_text(&r->data, r->model, p->text, ctx));
    int longest = 0, tiles = 0;
    for (int i = 0; i < r->data.n; i++)
        if (r->data.items[i].n > longest) longest = r->data.items[i].n;
    for (int i = 0; i < r->data.n_images; i++)
        if (r->data.images[i].n_tiles > tiles) tiles = r->data.images[i].n_tiles;
    r->max_tokens = p->batch * longest;
    evlm_tmodel_params tmp = {
        .n_threads = p->n_threads, .max_tokens = r->max_tokens, .max_tiles = p->batch * tiles};
    EVLM_TRY(evlm_tmodel_new(r->model, &tmp, &r->tm));
    r->tp = evlm_tmodel_params_of(r->tm);
    int n_tr = 0;
    EVLM_TRY(evlm_tparams_select(r->tp, p->train, p->n_train, p->freeze, p->n_freeze, &n_tr));
    r->sets[r->n_sets++] = r->tp;
    if (p->qat) {
        EVLM_TRY(evlm_tmodel_set_qat(r->tm, qt, qv, p->qat->learn_scales));
        evlm_tparams *sc = evlm_tmodel_qat_scales(r->tm);
        if (sc) r->sets[r->n_sets++] = sc;
    }
    if (p->distill) EVLM_TRY(setup_teacher(r, &tmp));

    int64_t per_epoch =
        (r->data.n + p->batch - 1) / p->batch; /* every batch is full but the last */
    r->total = p->steps > 0
                   ? p->steps
                   : ((p->epochs > 0 ? p->epochs : 1) * per_epoch + p->accum - 1) / p->accum;
    r->order = malloc(sizeof *r->order * (size_t)r->data.n);
    r->seqs = malloc(sizeof *r->seqs * (size_t)p->batch);
    r->steps = calloc((size_t)r->total, sizeof *r->steps);
    r->evals = calloc((size_t)r->total + 1, sizeof *r->evals);
    r->options = options_json(p);
    if (!r->order || !r->seqs || !r->steps || !r->evals || !r->options)
        return evlm__fail(EVLM_ERR_NOMEM, "finetune: out of memory for %" PRId64 " steps",
                          r->total);
    return EVLM_OK;
}

static void teardown(run *r) {
    evlm_tmodel_free(r->tm);
    evlm_tmodel_free(r->teacher);
    if (r->teacher_model) evlm_model_free(r->teacher_model);
    if (r->model) evlm_model_free(r->model);
    evlm_tdata_free(&r->data);
    free(r->order);
    free(r->seqs);
    free(r->steps);
    free(r->evals);
    free(r->options);
    if (r->gguf) evlm_gguf_close(r->gguf);
}

static evlm_status save(run *r, int64_t step, uint64_t epoch_rng, int64_t epoch, int64_t pos) {
    evlm_ckpt_state ck = {step, epoch_rng, epoch, pos, r->options};
    EVLM_TRY(evlm_ckpt_save_ex(r->ckpt, r->tp, r->sets + 1, r->n_sets - 1, &ck));
    return write_log(r);
}

static evlm_status train(run *r, evlm_finetune_result *res) {
    const evlm_finetune_params *p = r->p;
    evlm_tparams *tp = r->tp;
    evlm_ckpt_state ck = {.rng = p->seed};
    if (p->resume) {
        char *saved = NULL;
        EVLM_TRY(evlm_ckpt_load_ex(p->resume, tp, r->sets + 1, r->n_sets - 1, &ck, &saved));
        evlm_status st = check_options(p->resume, saved, r->options);
        free(saved);
        EVLM_TRY(st);
        if (ck.pos < 0 || ck.pos > r->data.n || ck.step < 0 || ck.epoch < 0)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: data position %" PRId64 " of %d items",
                              p->resume, ck.pos, r->data.n);
        read_log(r, ck.step);
    }
    int64_t step = ck.step, epoch = ck.epoch, pos = ck.pos;
    /* the order of an epoch comes from the PRNG state at its start (what a checkpoint keeps) */
    uint64_t epoch_rng = ck.rng, rng = ck.rng;
    evlm_tdata_shuffle(r->order, r->data.n, &rng);
    evlm_adamw_params ap = evlm_adamw_default_params();
    ap.weight_decay = p->weight_decay;
    evlm_lr_schedule sched = {
        .lr = p->lr, .min_lr = p->min_lr, .warmup = p->warmup, .total = r->total};
    evlm_adamw_params ap_aux = ap; /* projections and scales: no decay toward zero */
    ap_aux.weight_decay = 0;
    evlm_tstep ts = {.loss = r->teacher ? EVLM_TLOSS_DISTILL : EVLM_TLOSS_CE,
                     .teacher = r->teacher,
                     .grad_scale = 1.0f / (float)p->accum};
    const double t0 = evlm_time_ms(), budget_ms = p->budget_minutes * 60e3;
    double rows = 0, eval_ms = 0;
    const int64_t start = step, total_req = r->total;
    res->eval_accuracy = r->n_evals ? r->evals[r->n_evals - 1].accuracy : -1;
    while (step < r->total) {
        for (int k = 0; k < r->n_sets; k++) evlm_tparams_zero_grad(r->sets[k]);
        double loss = 0;
        for (int a = 0; a < p->accum; a++) {
            if (pos == r->data.n) { /* next epoch: a fresh order from the running PRNG */
                epoch++;
                epoch_rng = rng;
                evlm_tdata_shuffle(r->order, r->data.n, &rng);
                pos = 0;
            }
            int n_seq = 0;
            EVLM_TRY(evlm_tdata_batch(&r->data, r->order, &pos, p->batch, r->max_tokens, r->seqs,
                                      &n_seq));
            evlm_tbatch b = {r->seqs, n_seq};
            evlm_tresult tr;
            evlm_status st = evlm_tmodel_step(r->tm, &b, &ts, &tr);
            if (st != EVLM_OK)
                return evlm__fail_prefix(st, "step %" PRId64 ", epoch %" PRId64, step + 1, epoch);
            loss += tr.loss / p->accum;
            rows += tr.n_tokens;
        }
        double norm = evlm_adamw_clip_sets(r->sets, r->n_sets, p->clip);
        double lr = evlm_lr_at(&sched, step);
        evlm_adamw_step(tp, &ap, lr, step + 1);
        for (int k = 1; k < r->n_sets; k++) evlm_adamw_step(r->sets[k], &ap_aux, lr, step + 1);
        step++;
        double ms = evlm_time_ms() - t0;
        /* throughput over training time: evaluations are not counted */
        step_rec rec = {step, epoch, loss,
                        lr,   norm,  ms > eval_ms ? rows * 1e3 / (ms - eval_ms) : 0};
        r->steps[r->n_steps++] = rec;
        if (budget_ms > 0) {
            /* the schedule fits the budget: after every update, as many updates as the time left
             * allows at the mean pace so far (never more than steps / epochs ask), so the decay
             * ends when the time does even if the pace changes (a slow first update, a shared
             * machine) */
            double per = (ms - eval_ms) / (double)(step - start);
            int64_t fit = per > 0 ? step + (int64_t)((budget_ms - ms) / per) : total_req;
            if (fit > total_req) fit = total_req;
            if (fit < step) fit = step;
            r->total = sched.total = fit;
        }
        res->loss = loss;
        bool budget_stop =
            ((budget_ms > 0 && ms >= budget_ms) || step == p->stop_after) && step < r->total;
        double acc = -1;
        if (p->eval &&
            (step == r->total || budget_stop || (p->eval_every > 0 && step % p->eval_every == 0))) {
            double e0 = evlm_time_ms();
            EVLM_TRY(evaluate(r, step, &acc));
            res->eval_accuracy = acc;
            eval_ms += evlm_time_ms() - e0;
        }
        if (p->progress) {
            double per = (evlm_time_ms() - t0) / (double)(step - start);
            evlm_finetune_progress pr = {step,      r->total, epoch,
                                         loss,      lr,       norm,
                                         rec.tok_s, ms / 1e3, per * (double)(r->total - step) / 1e3,
                                         acc};
            p->progress(p->user, &pr);
        }
        if (step == r->total || budget_stop || (p->save_every > 0 && step % p->save_every == 0))
            EVLM_TRY(save(r, step, epoch_rng, epoch, pos));
        if (budget_stop) {
            res->budget_stop = true;
            break;
        }
    }
    if (step == start) EVLM_TRY(save(r, step, epoch_rng, epoch, pos)); /* nothing left to do */
    res->steps = step;
    res->seconds = (evlm_time_ms() - t0) / 1e3;
    if (p->qat) { /* the GGUF, from the weights as the export stores them */
        evlm_tqat_round_floats(evlm_tmodel_qat(r->tm), tp);
        return evlm_qat_export(r->tm, p->model, p->qat->out_gguf);
    }
    return write_model(r, r->model_dir);
}

evlm_status evlm_finetune(const evlm_finetune_params *p, evlm_finetune_result *res) {
    memset(res, 0, sizeof *res);
    run r = {.p = p};
    evlm_status st = setup(&r);
    if (st == EVLM_OK) st = train(&r, res);
    teardown(&r);
    return st;
}
