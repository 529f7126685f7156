/*
 * test_train_qat.c - quantization-aware training (src/train/qat.h, evlm_tmodel_set_qat,
 * evlm_qat_export):
 *   1. fake quantization of Q4_0 / Q4_1 / Q8_0 equals dequantize(quantize()) of quants.h bit
 *      for bit (random rows, zero blocks, ties, huge values), the qat_ce path equals Q4_0's;
 *   2. LSQ: block scales initialized to the quantizer's d reproduce it; the scale gradient
 *      against central finite differences over the neighbouring fp16 scales (blocks away from
 *      rounding boundaries: codes fixed, so the difference quotient is sum g q and LSQ's
 *      sum g (q - w / d) differs by sum over the unclamped g w / d), the weight gradient is g
 *      inside the clamp range and 0 outside;
 *   then on ../shared/fixtures (skipped without it):
 *   3. llama-tiny, for each type: which tensor is stored in which type equals a GGUF that
 *      evlm_quantize (rtn) writes of the same folder; a few SGD steps move the weights; the
 *      export stores exactly the blocks the training forward used (byte compare of every
 *      quantized matrix but Q / K, whose rows llama.cpp permutes); the runtime (evlm_model_load,
 *      f32_act) decodes the fixture prompts to the training forward's logits within
 *      1e-4 * (max - min of the logits); the untrained file's logits do not (the check can fail);
 *      with learned scales (Q4_0): the same, and the scales' gradient through the model against
 *      finite differences of the loss;
 *   4. smolvlm-tiny: the tower's matrices of width 48 stay float, fc2 (96) and the connector
 *      (192) are quantized, as quantize does; the image prompt's runtime logits (tower included)
 *      equal the training forward's after SGD steps on the tower and decoder.
 */
#include "core/json.h"
#include "core/status.h"
#include "evlm_compress.h"
#include "evlm_train.h"
#include "io/weights.h"
#include "model/family.h"
#include "model/model.h"
#include "quant/quants.h"
#include "io/gguf_names.h"
#include "test.h"
#include "train/qat.h"
#include "train/tmodel.h"

#include <stdint.h>
#include <unistd.h>

static char g_tmp[] = "/tmp/evlm_qat_XXXXXX";

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* ---- 1. fake quantization -------------------------------------------------------------------- */

static void test_fake_quant(void) {
    enum { ROWS = 7, COLS = 128 };
    static float w[ROWS * COLS], fq[ROWS * COLS], ref[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) w[i] = frand() * (i % 5 == 0 ? 3.0f : 0.05f);
    for (int j = 0; j < 32; j++) w[COLS + j] = 0.0f;                              /* a zero block */
    for (int j = 0; j < 32; j++) w[2 * COLS + j] = (j % 2 ? 1.0f : -1.0f) * 0.5f; /* ties */
    w[3 * COLS + 5] = 6.0e4f; /* near fp16's range */
    const evlm_type types[] = {EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1, EVLM_TYPE_Q8_0};
    static unsigned char blk[COLS / 32 * 34];
    for (int k = 0; k < 3; k++) {
        evlm_tqat_fake_quant_type(NULL, types[k], fq, w, ROWS, COLS);
        for (int r = 0; r < ROWS; r++) {
            evlm_quantize_row(types[k], w + r * COLS, blk, COLS);
            evlm_dequantize_row(types[k], blk, ref + r * COLS, COLS);
        }
        CHECKF(memcmp(fq, ref, sizeof fq) == 0, "%s fake quant != quants.h round trip",
               evlm_type_name(types[k]));
    }
    evlm_tqat_fake_quant(NULL, ref, w, ROWS, COLS);
    evlm_tqat_fake_quant_type(NULL, EVLM_TYPE_Q4_0, fq, w, ROWS, COLS);
    CHECK(memcmp(fq, ref, sizeof fq) == 0);
    CHECK(evlm_tqat_rule(EVLM_ROLE_MLP_UP, EVLM_TYPE_BF16, 2, 48, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0) ==
          EVLM_TYPE_BF16);
    CHECK(evlm_tqat_rule(EVLM_ROLE_CONNECTOR, EVLM_TYPE_BF16, 2, 192, EVLM_TYPE_Q8_0,
                         EVLM_TYPE_Q4_1) == EVLM_TYPE_Q4_1);
    CHECK(evlm_tqat_rule(-1, EVLM_TYPE_F32, 2, 64, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0) ==
          EVLM_TYPE_F32);
}

/* ---- 2. LSQ --------------------------------------------------------------------------------- */

static float f16_step(float s, int dir) { /* the neighbouring fp16 value */
    uint16_t h = evlm_f32_to_f16(s);
    int mag = h & 0x7fff;
    int neg = h >> 15;
    mag += (neg ? -dir : dir);
    return evlm_f16_to_f32((uint16_t)((neg << 15) | mag));
}

/* sum g * dequant(blocks of w with scale s) */
static double lsq_loss(evlm_type t, const float *w, float s, const float *g) {
    unsigned char blk[34];
    float y[32];
    evlm_tqat_lsq_row(t, w, &s, blk, 32);
    evlm_dequantize_row(t, blk, y, 32);
    double l = 0;
    for (int j = 0; j < 32; j++) l += (double)g[j] * (double)y[j];
    return l;
}

static bool codes_equal(evlm_type t, const float *w, float s0, float s1) {
    unsigned char a[34], b[34];
    evlm_tqat_lsq_row(t, w, &s0, a, 32);
    evlm_tqat_lsq_row(t, w, &s1, b, 32);
    return memcmp(a + 2, b + 2, t == EVLM_TYPE_Q4_0 ? 16 : 32) == 0;
}

static void test_lsq(void) {
    const evlm_type types[] = {EVLM_TYPE_Q4_0, EVLM_TYPE_Q8_0};
    for (int k = 0; k < 2; k++) {
        const evlm_type t = types[k];
        const int qmax = t == EVLM_TYPE_Q4_0 ? 7 : 127;
        int checked = 0, clamped_seen = 0, bad_init = 0;
        for (int trial = 0; trial < 4000 && checked < 40; trial++) {
            float w[32], g[32], dw[32] = {0}, ds = 0;
            for (int j = 0; j < 32; j++) {
                w[j] = frand() * 0.1f;
                g[j] = frand();
            }
            unsigned char blk[34], ref[34];
            float s;
            evlm_quantize_row(t, w, ref, 32);
            uint16_t h;
            memcpy(&h, ref, 2);
            s = evlm_f16_to_f32(h);
            /* at init the blocks are the quantizer's but for the codes computed from fp16(d)
             * instead of d: compare the dequantized values within a code's rounding */
            evlm_tqat_lsq_row(t, w, &s, blk, 32);
            bad_init += memcmp(blk, ref, 2) != 0;
            if (trial % 3 == 1) s *= 0.7f; /* some elements clamp */
            s = evlm_f16_to_f32(evlm_f32_to_f16(s));
            const float sp = f16_step(s, 1), sm = f16_step(s, -1);
            if (!codes_equal(t, w, s, sp) || !codes_equal(t, w, s, sm)) continue;
            evlm_tqat_lsq_row_bwd(t, w, &s, g, dw, &ds, 32);
            const double fd =
                (lsq_loss(t, w, sp, g) - lsq_loss(t, w, sm, g)) / ((double)sp - (double)sm);
            double inside = 0;
            int ok_dw = 1;
            for (int j = 0; j < 32; j++) {
                const double v = (double)(w[j] * (1.0f / s));
                const bool in = v >= -qmax - 1.5 + (t == EVLM_TYPE_Q8_0) && v < qmax + 0.5;
                if (in) inside += (double)g[j] * v;
                clamped_seen += !in;
                ok_dw &= dw[j] == (in ? g[j] : 0.0f);
            }
            CHECKF(fabs((double)ds - (fd - inside)) <= 1e-4 * (fabs(fd) + fabs(inside) + 1.0),
                   "%s: LSQ ds %.6g, finite differences - inside %.6g", evlm_type_name(t),
                   (double)ds, fd - inside);
            CHECK(ok_dw);
            checked++;
        }
        printf("LSQ %s: %d blocks checked, %d clamped elements\n", evlm_type_name(t), checked,
               clamped_seen);
        CHECK(checked >= 20);
        CHECK(clamped_seen > 0);
        CHECK(bad_init == 0);
    }
}

/* ---- the fixtures --------------------------------------------------------------------------- */

typedef struct seqs {
    evlm_tseq s[4];
    int32_t *ids[4];
    uint8_t *tg[4];
    int n;
} seqs;

static void seqs_free(seqs *q) {
    for (int i = 0; i < q->n; i++) {
        free(q->ids[i]);
        free(q->tg[i]);
    }
    memset(q, 0, sizeof *q);
}

static void seqs_add(seqs *q, const int32_t *ids, int n) {
    int i = q->n++;
    q->ids[i] = malloc(sizeof(int32_t) * (size_t)n);
    q->tg[i] = malloc((size_t)n);
    memcpy(q->ids[i], ids, sizeof(int32_t) * (size_t)n);
    memset(q->tg[i], 1, (size_t)n);
    q->s[i] = (evlm_tseq){.ids = q->ids[i], .n = n, .target = q->tg[i]};
}

/* the llama fixture's prompts, input + greedy ids */
static void llama_seqs(const char *dir, seqs *q) {
    char path[4400];
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *root = NULL;
    CHECK_OK(evlm_json_load(path, &root));
    const cJSON *pr;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(root, "prompts")) {
        int32_t ids[256];
        int n = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "input_ids")) ids[n++] = x->valueint;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "greedy_ids")) ids[n++] = x->valueint;
        seqs_add(q, ids, n);
    }
    cJSON_Delete(root);
}

/* a few SGD steps of ce on every trainable parameter (and the scales): the weights move */
static void sgd(evlm_tmodel *tm, const evlm_tbatch *b, int steps, float lr) {
    evlm_tparams *tp = evlm_tmodel_params_of(tm), *sc = evlm_tmodel_qat_scales(tm);
    for (int it = 0; it < steps; it++) {
        evlm_tparams_zero_grad(tp);
        if (sc) evlm_tparams_zero_grad(sc);
        evlm_tstep st = {.loss = EVLM_TLOSS_CE, .grad_scale = 1.0f};
        evlm_tresult r;
        CHECK_OK(evlm_tmodel_step(tm, b, &st, &r));
        for (size_t i = 0; i < tp->n_floats; i++) tp->w[i] -= lr * tp->g[i];
        for (size_t i = 0; sc && i < sc->n_floats; i++) sc->w[i] -= 1e-3f * lr * sc->g[i];
    }
}

/* max |runtime - training| over the target rows of each sequence, and max - min of the logits */
static void compare_logits(evlm_tmodel *tm, const seqs *q, evlm_model *rt, double *diff,
                           double *range) {
    const int V = evlm__model_config(rt)->vocab_size;
    *diff = 0;
    *range = 0;
    for (int i = 0; i < q->n; i++) {
        const int n = q->s[i].n;
        float *zt = malloc(sizeof(float) * (size_t)n * V), *zr = malloc(sizeof(float) * n * V);
        evlm_tbatch b = {&q->s[i], 1};
        int nt = 0;
        CHECK_OK(evlm_tmodel_logits(tm, &b, zt, &nt));
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = 512;
        evlm_context *ctx = NULL;
        CHECK_OK(evlm_context_new(rt, &cp, &ctx));
        if (ctx) CHECK_OK(evlm_decode(ctx, q->ids[i], n, zr, true));
        CHECK(nt == n - 1);
        float lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; ctx && k < (size_t)nt * V; k++) {
            double d = fabs((double)zt[k] - (double)zr[k]);
            *diff = d > *diff || d != d ? d : *diff;
            lo = zt[k] < lo ? zt[k] : lo;
            hi = zt[k] > hi ? zt[k] : hi;
        }
        *range = ((double)hi - (double)lo) > *range ? ((double)hi - (double)lo) : *range;
        evlm_context_free(ctx);
        free(zt);
        free(zr);
    }
}

static evlm_model *load(const char *path, bool keep_layout) {
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 2;
    mp.keep_layout = keep_layout;
    mp.f32_act = true;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(path, &mp, &m));
    return m;
}

/* every tensor of a is stored in b's type; quantized non-Q/K matrices hold exactly q's blocks */
static void compare_files(const char *ours, const char *theirs, const evlm_tqat *q) {
    evlm_model *a = load(ours, true), *b = load(theirs, true);
    if (!a || !b) goto done;
    const evlm_weights *wa = evlm__model_weights(a), *wb = evlm__model_weights(b);
    CHECK(evlm_weights_count(wa) == evlm_weights_count(wb));
    int same_type = 1, blocks = 0, same_blocks = 1, n_quant = 0;
    for (size_t i = 0; i < evlm_weights_count(wa); i++) {
        const evlm_tensor *ta = evlm_weights_at(wa, i);
        const evlm_tensor *tb = evlm_weights_find(wb, ta->name);
        if (!tb || tb->type != ta->type) {
            fprintf(stderr, "%s: %s here, %s in quantize's file\n", ta->name,
                    evlm_type_name(ta->type), tb ? evlm_type_name(tb->type) : "absent");
            same_type = 0;
        }
        const evlm_tparam *p = evlm_tparams_find(q->tp, ta->name);
        CHECK(p != NULL);
        if (!p) continue;
        const int k = (int)(p - q->tp->p);
        /* 1-D tensors are written F32 (gguf_names.h): the same values, widened */
        CHECK(evlm_gguf_store_type(ta->n_dims, q->stored[k]) == ta->type);
        if (!evlm_type_is_quant(ta->type)) continue;
        n_quant++;
        if (strstr(ta->name, "q_proj") || strstr(ta->name, "k_proj")) continue;
        size_t bytes = evlm_tensor_nbytes(ta);
        void *mine = malloc(bytes);
        evlm_tqat_blocks(q, k, mine);
        same_blocks &= memcmp(mine, ta->data, bytes) == 0;
        blocks++;
        free(mine);
    }
    printf("%s: %d quantized tensors, %d compared byte for byte\n", ours, n_quant, blocks);
    CHECK(same_type);
    CHECK(same_blocks && blocks > 0);
done:
    evlm_model_free(a);
    evlm_model_free(b);
}

static void test_llama(const char *dir, evlm_type type, bool learn) {
    char out[600], rtn[600];
    snprintf(out, sizeof out, "%s/qat_%s%s.gguf", g_tmp, evlm_type_name(type), learn ? "_lsq" : "");
    snprintf(rtn, sizeof rtn, "%s/rtn_%s.gguf", g_tmp, evlm_type_name(type));
    evlm_model *m = load(dir, true);
    if (!m) return;
    evlm_tmodel_params tpar = {.n_threads = 2, .max_tokens = 128};
    evlm_tmodel *tm = NULL;
    CHECK_OK(evlm_tmodel_new(m, &tpar, &tm));
    if (!tm) goto done;
    if (type == EVLM_TYPE_Q4_1 && !learn) { /* refusals, with the argument named */
        CHECK(evlm_qat_export(tm, dir, out) == EVLM_ERR_ARG);
        CHECK(strstr(evlm_last_error(), "evlm_tmodel_set_qat") != NULL);
        CHECK(evlm_tmodel_set_qat(tm, EVLM_TYPE_F16, type, false) == EVLM_ERR_ARG);
        CHECK(strstr(evlm_last_error(), "F16") != NULL);
        CHECK(evlm_tmodel_set_qat(tm, type, type, true) == EVLM_ERR_UNSUPPORTED);
        CHECK(strstr(evlm_last_error(), "Q4_1") != NULL);
        CHECK(evlm_tmodel_qat(tm) == NULL);
        CHECK_OK(evlm_tmodel_set_qat(tm, EVLM_TYPE_Q8_0, EVLM_TYPE_Q8_0, true)); /* then replaced */
    }
    CHECK_OK(evlm_tmodel_set_qat(tm, type, type, learn));
    seqs q = {0};
    llama_seqs(dir, &q);
    evlm_tbatch b = {q.s, q.n};
    CHECK((evlm_tmodel_qat_scales(tm) != NULL) == learn);
    if (learn) {
        const evlm_tparams *sc = evlm_tmodel_qat_scales(tm);
        CHECK(sc->n > 0 && !strncmp(sc->p[0].name, "qat.scale.", 10));
    }
    sgd(tm, &b, 3, 0.01f);
    evlm_tqat_round_floats(evlm_tmodel_qat(tm), evlm_tmodel_params_of(tm));
    CHECK_OK(evlm_qat_export(tm, dir, out));
    evlm_quantize_params qp = evlm_quantize_default_params();
    qp.type = qp.vision = type;
    qp.n_threads = 2;
    if (access(rtn, F_OK) != 0) CHECK_OK(evlm_quantize(dir, rtn, &qp, NULL));
    compare_files(out, rtn, evlm_tmodel_qat(tm));
    evlm_model *rt = load(out, false), *r0 = load(rtn, false);
    if (rt && r0) {
        double diff, range, d0, r0range;
        compare_logits(tm, &q, rt, &diff, &range);
        compare_logits(tm, &q, r0, &d0, &r0range);
        printf("llama-tiny %s%s: runtime vs training logits max |diff| %.3g (range %.3g); the "
               "untrained file: %.3g\n",
               evlm_type_name(type), learn ? " + learned scales" : "", diff, range, d0);
        CHECKF(diff <= 1e-4 * range, "%.3g > 1e-4 * %.3g", diff, range);
        CHECK(d0 > 1e-2 * range); /* the training moved the weights: a real comparison */
    }
    evlm_model_free(rt);
    evlm_model_free(r0);
    seqs_free(&q);
done:
    evlm_tmodel_free(tm);
    evlm_model_free(m);
}

/* LSQ through the model: dL/ds of a block against the loss at the neighbouring fp16 scales
 * (codes unchanged), corrected by sum over the block of g_w * w / d (see test_lsq) */
static void test_llama_lsq_fd(const char *dir) {
    evlm_model *m = load(dir, true);
    if (!m) return;
    evlm_tmodel_params tpar = {.n_threads = 2, .max_tokens = 128};
    evlm_tmodel *tm = NULL;
    CHECK_OK(evlm_tmodel_new(m, &tpar, &tm));
    if (!tm) goto done;
    CHECK_OK(evlm_tmodel_set_qat(tm, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0, true));
    seqs q = {0};
    llama_seqs(dir, &q);
    evlm_tbatch b = {q.s, q.n};
    evlm_tparams *tp = evlm_tmodel_params_of(tm), *sc = evlm_tmodel_qat_scales(tm);
    evlm_tparams_zero_grad(tp);
    evlm_tparams_zero_grad(sc);
    evlm_tstep st = {.loss = EVLM_TLOSS_CE, .grad_scale = 1.0f}, ev = st;
    ev.no_backward = true;
    evlm_tresult r;
    CHECK_OK(evlm_tmodel_step(tm, &b, &st, &r));
    /* the mlp.down_proj of layer 0: the blocks of largest |ds| whose codes stay */
    const char *name = "model.layers.0.mlp.down_proj.weight";
    const evlm_tparam *p = evlm_tparams_find(tp, name);
    char sname[200];
    snprintf(sname, sizeof sname, "qat.scale.%s", name);
    const evlm_tparam *ps = evlm_tparams_find(sc, sname);
    CHECK(p && ps);
    if (!p || !ps) goto out;
    const int64_t cols = p->shape[1];
    int tested = 0, good = 0;
    for (int pass = 0; pass < 6; pass++) {
        size_t best = SIZE_MAX;
        float bv = 0;
        for (size_t k = 0; k < ps->n; k++) {
            float v = fabsf(sc->g[ps->off + k]); /* the largest not yet taken */
            if (v > bv) {
                bv = v;
                best = k;
            }
        }
        if (best == SIZE_MAX) break;
        float *s = sc->w + ps->off + best;
        const float s0 = *s, sp = f16_step(s0, 1), sm = f16_step(s0, -1);
        const float *w =
            tp->w + p->off + (best / (size_t)(cols / 32)) * cols + (best % (cols / 32)) * 32;
        const float gs = sc->g[ps->off + best];
        sc->g[ps->off + best] = 0; /* taken */
        if (!codes_equal(EVLM_TYPE_Q4_0, w, s0, sp) || !codes_equal(EVLM_TYPE_Q4_0, w, s0, sm))
            continue;
        const float *gw = tp->g + p->off + (size_t)(w - (tp->w + p->off));
        double corr = 0;
        const float d = evlm_f16_to_f32(evlm_f32_to_f16(s0));
        for (int j = 0; j < 32; j++) corr += (double)gw[j] * (double)(w[j] * (1.0f / d));
        double lp, lm;
        *s = sp;
        CHECK_OK(evlm_tmodel_step(tm, &b, &ev, &r));
        lp = r.loss;
        *s = sm;
        CHECK_OK(evlm_tmodel_step(tm, &b, &ev, &r));
        lm = r.loss;
        *s = s0;
        const double fd = (lp - lm) / ((double)sp - (double)sm);
        const double want = fd - corr;
        printf(
            "LSQ through llama-tiny: block %zu: ds %.5g, finite differences - sum g_w w/d %.5g\n",
            best, (double)gs, want);
        tested++;
        good += fabs((double)gs - want) <= 0.05 * fabs(want) + 1e-4;
    }
    CHECK(tested >= 2);
    CHECK(good == tested);
    /* frozen weights: the scales still learn, the weights get nothing */
    for (int i = 0; i < tp->n; i++) tp->p[i].trainable = false;
    evlm_tparams_zero_grad(tp);
    evlm_tparams_zero_grad(sc);
    CHECK_OK(evlm_tmodel_step(tm, &b, &st, &r));
    double gw = 0, gsc = 0;
    for (size_t i = 0; i < tp->n_floats; i++) gw += fabs((double)tp->g[i]);
    for (size_t i = 0; i < sc->n_floats; i++) gsc += fabs((double)sc->g[i]);
    CHECK(gw == 0 && gsc > 0);
out:
    seqs_free(&q);
done:
    evlm_tmodel_free(tm);
    evlm_model_free(m);
}

static void test_smolvlm(const char *dir) {
    char out[600], rtn[600], png[4400], path[4400];
    snprintf(out, sizeof out, "%s/qat_vlm.gguf", g_tmp);
    snprintf(rtn, sizeof rtn, "%s/rtn_vlm.gguf", g_tmp);
    snprintf(png, sizeof png, "%s/ref_image.png", dir);
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    evlm_model *m = load(dir, true);
    if (!m) return;
    cJSON *meta = NULL;
    CHECK_OK(evlm_json_load(path, &meta));
    const char *text = cJSON_GetObjectItem(meta, "prompt")->valuestring;
    evlm_image_input img = {.path = png};
    evlm_ids ids = {0};
    float *px = NULL;
    uint8_t *mask = NULL;
    int n_tiles = 0;
    CHECK_OK(evlm__prompt_pixels(m, text, false, &img, 1, &ids, &px, &mask, &n_tiles));
    evlm_tmodel_params tpar = {.n_threads = 2, .max_tokens = 160, .max_tiles = n_tiles};
    evlm_tmodel *tm = NULL;
    CHECK_OK(evlm_tmodel_new(m, &tpar, &tm));
    if (!tm || !px) goto done;
    CHECK_OK(evlm_tmodel_set_qat(tm, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_0, false));
    const evlm_tqat *q = evlm_tmodel_qat(tm);
    const char *const fl[] = {"model.vision_model.encoder.layers.0.self_attn.q_proj.weight",
                              "model.vision_model.encoder.layers.0.mlp.fc1.weight"};
    const char *const qt[] = {"model.vision_model.encoder.layers.0.mlp.fc2.weight",
                              "model.connector.modality_projection.proj.weight"};
    for (int i = 0; i < 2; i++) {
        const evlm_tparam *a = evlm_tparams_find(q->tp, fl[i]),
                          *c = evlm_tparams_find(q->tp, qt[i]);
        CHECK(a && c);
        if (a) CHECKF(q->stored[a - q->tp->p] == EVLM_TYPE_BF16, "%s", fl[i]);
        if (c) CHECKF(q->stored[c - q->tp->p] == EVLM_TYPE_Q4_0, "%s", qt[i]);
    }
    uint8_t *tg = malloc(ids.len);
    memset(tg, 1, ids.len);
    evlm_tseq s = {.ids = ids.data,
                   .n = (int)ids.len,
                   .target = tg,
                   .pixels = px,
                   .pixel_mask = mask,
                   .n_tiles = n_tiles};
    evlm_tbatch b = {&s, 1};
    sgd(tm, &b, 2, 0.01f);
    evlm_tqat_round_floats(q, evlm_tmodel_params_of(tm));
    CHECK_OK(evlm_qat_export(tm, dir, out));
    evlm_quantize_params qp = evlm_quantize_default_params();
    qp.type = qp.vision = EVLM_TYPE_Q4_0;
    qp.n_threads = 2;
    CHECK_OK(evlm_quantize(dir, rtn, &qp, NULL));
    compare_files(out, rtn, q);
    /* another folder's tensors are no export of this model */
    char llama[4400], bad[700];
    snprintf(llama, sizeof llama, "%s/../llama-tiny", dir);
    snprintf(bad, sizeof bad, "%s/bad.gguf", g_tmp);
    CHECK(evlm_qat_export(tm, llama, bad) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "not in the trained model") != NULL ||
          strstr(evlm_last_error(), "another size") != NULL);
    CHECK(access(bad, F_OK) != 0);
    evlm_model *rt = load(out, false);
    if (rt) {
        const int V = evlm__model_config(rt)->vocab_size, n = (int)ids.len;
        float *zt = malloc(sizeof(float) * (size_t)n * V), *zr = malloc(sizeof(float) * n * V);
        int nt = 0;
        CHECK_OK(evlm_tmodel_logits(tm, &b, zt, &nt));
        evlm_prompt *pr = NULL;
        evlm_context *ctx = NULL;
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = 512;
        CHECK_OK(evlm_prompt_new(rt, text, false, &img, 1, &pr));
        CHECK_OK(evlm_context_new(rt, &cp, &ctx));
        if (pr && ctx) CHECK_OK(evlm_decode_prompt(ctx, pr, zr, true));
        double diff = 0;
        float lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; k < (size_t)nt * V; k++) {
            double d = fabs((double)zt[k] - (double)zr[k]);
            diff = d > diff || d != d ? d : diff;
            lo = zt[k] < lo ? zt[k] : lo;
            hi = zt[k] > hi ? zt[k] : hi;
        }
        printf("smolvlm-tiny q4_0 (tower q4_0): runtime vs training logits over %d rows: max "
               "|diff| %.3g (range %.3g)\n",
               nt, diff, ((double)hi - (double)lo));
        CHECK(nt == n - 1);
        CHECKF(diff <= 1e-4 * (((double)hi - (double)lo)), "%.3g", diff);
        evlm_context_free(ctx);
        evlm_prompt_free(pr);
        free(zt);
        free(zr);
    }
    evlm_model_free(rt);
    free(tg);
done:
    evlm_ids_free(&ids);
    free(px);
    free(mask);
    cJSON_Delete(meta);
    evlm_tmodel_free(tm);
    evlm_model_free(m);
}

int main(void) {
    test_fake_quant();
    test_lsq();
    const char *shared = test_shared_dir();
    if (!shared) return test_done();
    if (!mkdtemp(g_tmp)) return 1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", shared);
    const evlm_type types[] = {EVLM_TYPE_Q4_0, EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_1};
    for (int k = 0; k < 3; k++) test_llama(dir, types[k], false);
    test_llama(dir, EVLM_TYPE_Q4_0, true);
    test_llama_lsq_fd(dir);
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    test_smolvlm(dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_done();
}
