/*
 * test_train_loop.c - the training loop's parts on their own: AdamW against torch.optim.AdamW
 * (numbers from tests/data/adamw_ref.py), the learning-rate schedule, gradient clipping, the
 * data order and batches, data errors naming file:line, the assistant-turn targets on the scene
 * model's chat template, and checkpoints (byte-exact round trip, resume of the optimizer equal to
 * a straight run, no temporary folder left behind when a save fails, the final HF folder loads).
 * Not here: the model's forward / backward (tmodel), the finetune command (cli_finetune.sh).
 */
#include "core/file.h"
#include "core/status.h"
#include "io/safetensors.h"
#include "test.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/data.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a hand-built parameter set: A (3x4) and B (5) trainable, C (2) frozen ------------------ */

typedef struct {
    evlm_tparams tp;
    evlm_tparam p[3];
} hand_set;

static void hand_init(hand_set *h) {
    memset(h, 0, sizeof *h);
    const char *names[3] = {"A", "B", "C"};
    size_t ns[3] = {12, 5, 2}, off = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(h->p[i].name, sizeof h->p[i].name, "%s", names[i]);
        h->p[i].n_dims = i == 0 ? 2 : 1;
        h->p[i].shape[0] = i == 0 ? 3 : (int64_t)ns[i];
        h->p[i].shape[1] = i == 0 ? 4 : 1;
        h->p[i].off = off;
        h->p[i].n = ns[i];
        h->p[i].src_type = EVLM_TYPE_BF16;
        h->p[i].trainable = i < 2;
        off += ns[i];
    }
    h->tp.p = h->p;
    h->tp.n = 3;
    h->tp.n_floats = off;
    h->tp.mem = calloc(4 * off, sizeof(float));
    h->tp.w = h->tp.mem;
    h->tp.g = h->tp.w + off;
    h->tp.m = h->tp.g + off;
    h->tp.v = h->tp.m + off;
    for (int i = 0; i < 3; i++) {
        int k = i + 1;
        for (size_t j = 0; j < h->p[i].n; j++)
            h->tp.w[h->p[i].off + j] = (float)(0.5 * sin(0.37 * (double)j + k));
    }
}

static void hand_grads(hand_set *h, int step) {
    for (int i = 0; i < 3; i++) {
        int k = i + 1;
        for (size_t j = 0; j < h->p[i].n; j++)
            h->tp.g[h->p[i].off + j] =
                (float)(sin(0.91 * (double)j + 1.3 * step + k) * (1.0 + 0.5 * step));
    }
}

/* tests/data/adamw_ref.py, torch 1.13.1 */
static const double ref_norms[] = {4.18493462, 7.18473959, 8.67109489};
static const float ref_A_w[] = {0.380036801,  0.464076966,  0.498717457,   0.477833748,
                                0.334123343,  0.15238443,   -0.0949880332, -0.251040697,
                                -0.382794648, -0.445541233, -0.448277503,  -0.437019974};
static const float ref_A_m[] = {-0.0337157324, 0.111242257, 0.170264676,  0.0977561697,
                                -0.0502698123, -0.15946193, -0.145468354, -0.0190992504,
                                0.122024186,   0.168882906, 0.0852781311, -0.0642047226};
static const float ref_A_v[] = {0.00176657527, 0.00960242003, 0.0113679525,  0.0026612333,
                                0.0051904181,  0.0126495799,  0.00644105487, 0.00204433803,
                                0.0104216076,  0.0106861135,  0.00217837235, 0.00611043442};
static const float ref_B_w[] = {0.430817872, 0.361107528, 0.241781831, 0.0434688032, -0.158314764};
static const float ref_B_m[] = {0.122402787, 0.168807924, 0.0848075077, -0.0647074357,
                                -0.164235339};
static const float ref_B_v[] = {0.0104499459, 0.0106589496, 0.0021634344, 0.00614496833,
                                0.0126765333};
static const double lrs[5] = {1e-2, 3e-2, 2e-2, 5e-3, 1e-2};
static const double clips[5] = {0, 1.5, 0, 0.7, 100};

static float max_rel(const float *got, const float *want, size_t n) {
    float mx = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmaxf(mx, fabsf(want[i]));
        d = fmaxf(d, fabsf(got[i] - want[i]));
    }
    return d / mx;
}

/* steps [from, to) of the reference run */
static void run_steps(hand_set *h, int from, int to, double *norms, int *n_norms) {
    evlm_adamw_params ap = evlm_adamw_default_params();
    ap.weight_decay = 0.1;
    for (int s = from; s < to; s++) {
        memset(h->tp.g, 0, h->tp.n_floats * sizeof(float));
        hand_grads(h, s);
        if (clips[s] > 0) {
            double n = evlm_adamw_clip(&h->tp, clips[s]);
            if (norms) norms[(*n_norms)++] = n;
        }
        evlm_adamw_step(&h->tp, &ap, lrs[s], s + 1);
    }
}

static void test_adamw_vs_torch(void) {
    hand_set h;
    hand_init(&h);
    float c0[2] = {h.tp.w[17], h.tp.w[18]};
    double norms[5];
    int nn = 0;
    run_steps(&h, 0, 5, norms, &nn);
    CHECK(nn == 3);
    for (int i = 0; i < 3 && i < nn; i++)
        CHECKF(fabs(norms[i] - ref_norms[i]) <= 1e-6 * ref_norms[i], "norm %d: %.9g vs %.9g", i,
               norms[i], ref_norms[i]);
    const float *w = h.tp.w, *m = h.tp.m, *v = h.tp.v;
    float e[6] = {max_rel(w, ref_A_w, 12),     max_rel(m, ref_A_m, 12),
                  max_rel(v, ref_A_v, 12),     max_rel(w + 12, ref_B_w, 5),
                  max_rel(m + 12, ref_B_m, 5), max_rel(v + 12, ref_B_v, 5)};
    for (int i = 0; i < 6; i++)
        CHECKF(e[i] <= 1e-6f, "tensor %d (A w/m/v, B w/m/v): max error %.3g of the largest", i,
               (double)e[i]);
    /* frozen: untouched, no moments */
    CHECK(h.tp.w[17] == c0[0] && h.tp.w[18] == c0[1]);
    CHECK(h.tp.m[17] == 0 && h.tp.v[18] == 0);
    free(h.tp.mem);
}

static void test_schedule_and_clip(void) {
    evlm_lr_schedule s = {.lr = 1e-3, .min_lr = 1e-4, .warmup = 10, .total = 110};
    CHECK(fabs(evlm_lr_at(&s, 0) - 1e-4) < 1e-12);
    CHECK(fabs(evlm_lr_at(&s, 9) - 1e-3) < 1e-12);
    CHECK(fabs(evlm_lr_at(&s, 10) - 1e-3) < 1e-12);
    CHECK(fabs(evlm_lr_at(&s, 60) - 5.5e-4) < 1e-12);
    CHECK(fabs(evlm_lr_at(&s, 110) - 1e-4) < 1e-12);
    CHECK(fabs(evlm_lr_at(&s, 500) - 1e-4) < 1e-12);
    bool mono = true;
    for (int i = 11; i <= 110; i++) mono &= evlm_lr_at(&s, i) <= evlm_lr_at(&s, i - 1);
    CHECK(mono);
    evlm_lr_schedule c = {.lr = 3e-4};
    CHECK(evlm_lr_at(&c, 0) == 3e-4 && evlm_lr_at(&c, 1000) == 3e-4);

    hand_set h;
    hand_init(&h);
    for (size_t i = 0; i < h.tp.n_floats; i++) h.tp.g[i] = 2.0f; /* C frozen: not counted */
    double n = evlm_adamw_grad_norm(&h.tp);
    CHECK(fabs(n - sqrt(17.0 * 4.0)) < 1e-9);
    float before[19];
    memcpy(before, h.tp.g, sizeof before);
    CHECK(fabs(evlm_adamw_clip(&h.tp, 100.0) - n) < 1e-12);
    CHECK(!memcmp(before, h.tp.g, sizeof before)); /* under the bound: unchanged */
    evlm_adamw_clip(&h.tp, 1.0);
    CHECK(fabs(evlm_adamw_grad_norm(&h.tp) - 1.0) < 1e-5);
    CHECK(h.tp.g[17] == 2.0f && h.tp.g[18] == 2.0f); /* frozen gradient untouched */
    free(h.tp.mem);
}

/* ---- order and batches ------------------------------------------------------------------- */

static void test_order(void) {
    enum { N = 50 };
    int a[N], b[N], c[N];
    uint64_t r1 = 42, r2 = 42, r3 = 43;
    evlm_tdata_shuffle(a, N, &r1);
    evlm_tdata_shuffle(b, N, &r2);
    evlm_tdata_shuffle(c, N, &r3);
    CHECK(!memcmp(a, b, sizeof a) && r1 == r2);
    CHECK(memcmp(a, c, sizeof a) != 0);
    int seen[N] = {0}, fixed = 0;
    for (int i = 0; i < N; i++) seen[a[i]]++, fixed += a[i] == i;
    bool perm = true;
    for (int i = 0; i < N; i++) perm &= seen[i] == 1;
    CHECK(perm);
    CHECK(fixed < N / 2);
    /* the next epoch's order differs */
    evlm_tdata_shuffle(b, N, &r2);
    CHECK(memcmp(a, b, sizeof a) != 0);

    /* batches: lengths 5, 7, 3, 9 in order; B = 3, 16 rows */
    evlm_titem items[4];
    int32_t ids[9] = {0};
    uint8_t tg[9] = {0};
    int lens[4] = {5, 7, 3, 9};
    for (int i = 0; i < 4; i++) items[i] = (evlm_titem){ids, tg, lens[i], -1, i + 1};
    evlm_tdata d = {.items = items, .n = 4};
    int order[4] = {0, 1, 2, 3}, ns;
    evlm_tseq seqs[3];
    int64_t pos = 0;
    CHECK_OK(evlm_tdata_batch(&d, order, &pos, 3, 16, seqs, &ns));
    CHECK(ns == 3 && pos == 3 && seqs[0].n == 5 && seqs[2].n == 3);
    CHECK_OK(evlm_tdata_batch(&d, order, &pos, 3, 16, seqs, &ns));
    CHECK(ns == 1 && pos == 4 && seqs[0].n == 9);
    CHECK_OK(evlm_tdata_batch(&d, order, &pos, 3, 16, seqs, &ns));
    CHECK(ns == 0);
    pos = 0;
    CHECK_OK(evlm_tdata_batch(&d, order, &pos, 3, 11, seqs, &ns));
    CHECK(ns == 1 && pos == 1); /* 5 + 7 > 11 */
    pos = 3;
    CHECK(evlm_tdata_batch(&d, order, &pos, 3, 8, seqs, &ns) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "line 4") != NULL);
}

/* ---- data from files --------------------------------------------------------------------- */

static char tmpdir[1024];

static void write_text(const char *name, const char *text, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* add_jsonl fails with a message holding want (e.g. "bad.jsonl:2") */
static void expect_jsonl_error(evlm_model *m, const char *name, const char *text, int max_len,
                               const char *want, const char *want2) {
    char path[4096];
    write_text(name, text, path, sizeof path);
    evlm_tdata d = {0};
    evlm_status st = evlm_tdata_add_jsonl(&d, m, path, max_len);
    CHECKF(st != EVLM_OK, "%s accepted", name);
    const char *e = evlm_last_error();
    CHECKF(strstr(e, want) != NULL && (!want2 || strstr(e, want2) != NULL),
           "%s: error '%s' lacks '%s' / '%s'", name, e, want, want2 ? want2 : "");
    evlm_tdata_free(&d);
}

static void test_data(const char *shared) {
    char mdir[4096];
    snprintf(mdir, sizeof mdir, "%s/models/scenes-vlm", shared);
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 1;
    evlm_model *m;
    evlm_status st = evlm_model_load(mdir, &mp, &m);
    CHECK_OK(st);
    if (st != EVLM_OK) return;
    char path[4096];
    write_text("qa.jsonl",
               "{\"question\": \"Is the driver drowsy?\", \"answer\": \"Yes.\"}\n\n"
               "{\"question\": \"How many cars?\", \"answer\": \"Two cars.\", \"qtype\": \"n\"}\n",
               path, sizeof path);
    evlm_tdata d = {0};
    CHECK_OK(evlm_tdata_add_jsonl(&d, m, path, 256));
    CHECK(d.n == 2 && d.items[1].line == 3);
    if (d.n == 2) {
        /* the prompt is exactly what evlm eval tokenizes; the targets spell the answer turn */
        char *prompt;
        int32_t *pids;
        size_t np;
        CHECK_OK(evlm_chat_prompt(m, "How many cars?", 0, &prompt));
        CHECK_OK(evlm_tokenize(m, prompt, strlen(prompt), true, false, &pids, &np));
        const evlm_titem *it = &d.items[1];
        CHECK((size_t)it->n > np && !memcmp(it->ids, pids, np * sizeof *pids));
        int32_t tgt[64];
        int nt = 0, first = -1;
        for (int t = 0; t < it->n - 1; t++)
            if (it->target[t]) {
                if (first < 0) first = t;
                tgt[nt++] = it->ids[t + 1];
            }
        CHECK(first == (int)np - 1 && nt == it->n - (int)np);
        char *txt = NULL;
        CHECK_OK(evlm_detokenize(m, tgt, (size_t)nt, false, &txt));
        CHECKF(txt && !strcmp(txt, " Two cars.<end_of_utterance>"), "answer turn '%s'",
               txt ? txt : "");
        int t0 = 0;
        for (int t = 0; t < d.items[0].n; t++) t0 += d.items[0].target[t];
        CHECK(d.n_targets == t0 + nt);
        free(txt);
        free(prompt);
        free(pids);
    }
    evlm_tdata_free(&d);

    write_text("t.txt",
               "The driver looks at the road.\nBoth hands on the wheel.\n\n\n"
               "A car is parked on the left side of the street near a tree.\n",
               path, sizeof path);
    CHECK_OK(evlm_tdata_add_text(&d, m, path, 6));
    bool all = d.n >= 3 && d.items[0].line == 1 && d.items[d.n - 1].line == 5;
    int rows = 0;
    for (int i = 0; i < d.n; i++) {
        all &= d.items[i].n >= 2 && d.items[i].n <= 6 && d.items[i].image < 0;
        for (int t = 0; t < d.items[i].n - 1; t++) all &= d.items[i].target[t] == 1;
        rows += d.items[i].n;
    }
    CHECKF(all, "%d text items, first line %d, last line %d", d.n, d.n ? d.items[0].line : -1,
           d.n ? d.items[d.n - 1].line : -1);
    CHECK(d.n_targets == rows - d.n);
    evlm_tdata_free(&d);

    /* items with an image: the prompt ids evlm_prompt_new makes (as evlm eval feeds them), the
     * tiles processed once per image and shared */
    char img[2048];
    snprintf(img, sizeof img, "%s/datasets/scenes-dev/car_030.png", shared);
    if (evlm_file_exists(img)) {
        char line[8192];
        snprintf(line, sizeof line,
                 "{\"image\": \"%s\", \"question\": \"What color is the car?\", \"answer\": "
                 "\"Red.\"}\n{\"image\": \"%s\", \"question\": \"What brand is the car?\", "
                 "\"answer\": \"Audi.\"}\n{\"question\": \"Hi?\", \"answer\": \"Hello.\"}\n",
                 img, img);
        write_text("img.jsonl", line, path, sizeof path);
        CHECK_OK(evlm_tdata_add_jsonl(&d, m, path, 2048));
        CHECK(d.n == 3 && d.n_images == 1);
        if (d.n == 3 && d.n_images == 1) {
            CHECK(d.items[0].image == 0 && d.items[1].image == 0 && d.items[2].image == -1);
            CHECK(d.images[0].n_tiles > 0 && d.images[0].pixels && d.images[0].mask);
            char *prompt;
            CHECK_OK(evlm_chat_prompt(m, "What brand is the car?", 1, &prompt));
            evlm_image_input in = {.path = img};
            evlm_prompt *pr = NULL;
            CHECK_OK(evlm_prompt_new(m, prompt, false, &in, 1, &pr));
            size_t np = 0;
            const int32_t *pids = pr ? evlm_prompt_ids(pr, &np) : NULL;
            const evlm_titem *it = &d.items[1];
            CHECK(pids && (size_t)it->n > np && !memcmp(it->ids, pids, np * sizeof *pids));
            CHECK(np > 0 && it->target[np - 1] == 1 && (np < 2 || it->target[np - 2] == 0));
            evlm_tseq seqs[3];
            int order[3] = {0, 1, 2}, ns = 0;
            int64_t pos = 0;
            CHECK_OK(evlm_tdata_batch(&d, order, &pos, 3, 100000, seqs, &ns));
            CHECK(ns == 3 && seqs[1].pixels == d.images[0].pixels && seqs[0].n_tiles > 0 &&
                  seqs[2].pixels == NULL && seqs[2].n_tiles == 0);
            if (pr) evlm_prompt_free(pr);
            free(prompt);
        }
        evlm_tdata_free(&d);
    }

    expect_jsonl_error(m, "bad1.jsonl",
                       "{\"question\": \"q\", \"answer\": \"a\"}\nnot json at all\n", 256,
                       "bad1.jsonl:2", "JSON");
    expect_jsonl_error(m, "bad2.jsonl", "\n{\"question\": \"q\"}\n", 256, "bad2.jsonl:2", "answer");
    expect_jsonl_error(m, "bad3.jsonl",
                       "{\"question\": \"Is it?\", \"answer\": \"A very long answer that goes "
                       "on and on and on.\"}\n",
                       12, "bad3.jsonl:1", "context");
    expect_jsonl_error(m, "bad4.jsonl",
                       "{\"question\": \"q\", \"answer\": \"a\"}\n"
                       "{\"image\": \"nope.png\", \"question\": \"q\", \"answer\": \"a\"}\n",
                       256, "bad4.jsonl:2", "nope.png");
    expect_jsonl_error(m, "bad5.jsonl", "", 256, "bad5.jsonl", "no items");
    evlm_model_free(m);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void test_checkpoint(void) {
    char ck[2048], ckdir[1100];
    snprintf(ckdir, sizeof ckdir, "%s/ck", tmpdir);
    CHECK_OK(evlm_mkdir(ckdir));
    snprintf(ck, sizeof ck, "%s/step", ckdir);
    /* straight: 5 steps; resumed: 2 steps, save, load into a fresh set, 3 more */
    hand_set a, b, c;
    hand_init(&a);
    run_steps(&a, 0, 5, NULL, NULL);
    hand_init(&b);
    run_steps(&b, 0, 2, NULL, NULL);
    memset(b.tp.g, 0, b.tp.n_floats * sizeof(float));
    evlm_ckpt_state st = {.step = 2,
                          .rng = 0xfedcba9876543210ull,
                          .epoch = 3,
                          .pos = 17,
                          .options_json = "{\"lr\": 0.01, \"seed\": 7}"};
    CHECK_OK(evlm_ckpt_save(ck, &b.tp, &st));
    CHECK(count_entries(ckdir) == 1);
    hand_init(&c);
    for (size_t i = 0; i < c.tp.n_floats; i++) c.tp.g[i] = 1; /* load zeroes gradients */
    evlm_ckpt_state got = {0};
    char *opts = NULL;
    CHECK_OK(evlm_ckpt_load(ck, &c.tp, &got, &opts));
    CHECK(!memcmp(b.tp.mem, c.tp.mem, 4 * b.tp.n_floats * sizeof(float)));
    CHECK(got.step == 2 && got.rng == st.rng && got.epoch == 3 && got.pos == 17);
    CHECKF(opts && strstr(opts, "\"seed\":7"), "options %s", opts ? opts : "");
    free(opts);
    run_steps(&c, 2, 5, NULL, NULL);
    CHECK(!memcmp(a.tp.m, c.tp.m, 2 * a.tp.n_floats * sizeof(float)));
    CHECK(!memcmp(a.tp.w, c.tp.w, a.tp.n_floats * sizeof(float)));

    /* a failing save (after 1, 2, 3 of its 3 files + state) leaves the previous checkpoint as
     * it was and nothing else behind */
    for (int k = 1; k <= 3; k++) {
        evlm__ckpt_fail_after = k;
        evlm_ckpt_state st2 = {.step = 5};
        CHECK(evlm_ckpt_save(ck, &a.tp, &st2) == EVLM_ERR_IO);
        evlm__ckpt_fail_after = 0;
        CHECKF(count_entries(ckdir) == 1, "after failure %d: %d entries", k, count_entries(ckdir));
        CHECK_OK(evlm_ckpt_load(ck, &c.tp, &got, NULL));
        CHECK(got.step == 2);
    }
    /* replacing works and leaves one folder */
    evlm_ckpt_state st3 = {.step = 5};
    CHECK_OK(evlm_ckpt_save(ck, &a.tp, &st3));
    CHECK(count_entries(ckdir) == 1);
    CHECK_OK(evlm_ckpt_load(ck, &c.tp, &got, NULL));
    CHECK(got.step == 5 && !memcmp(a.tp.w, c.tp.w, a.tp.n_floats * sizeof(float)));

    /* another trainable set is refused, naming the parameter */
    c.p[2].trainable = true;
    CHECK(evlm_ckpt_load(ck, &c.tp, &got, NULL) == EVLM_ERR_ARG);
    c.p[2].trainable = false;
    c.p[1].trainable = false;
    c.p[2].trainable = true;
    CHECK(evlm_ckpt_load(ck, &c.tp, &got, NULL) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "B") != NULL);
    free(a.tp.mem);
    free(b.tp.mem);
    free(c.tp.mem);
}

/* ---- the final folder --------------------------------------------------------------------- */

static void test_export(const char *shared) {
    char src[2048], out[2048], out32[2048], path[2100];
    snprintf(src, sizeof src, "%s/fixtures/llama-tiny", shared);
    snprintf(out, sizeof out, "%s/model", tmpdir);
    snprintf(out32, sizeof out32, "%s/model32", tmpdir);
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    evlm_weights *ws;
    CHECK_OK(evlm_weights_open(path, &ws));
    size_t n = evlm_weights_count(ws), total = 0;
    evlm_tparam *ps = calloc(n, sizeof *ps);
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_at(ws, i);
        snprintf(ps[i].name, sizeof ps[i].name, "%s", t->name);
        ps[i].n_dims = t->n_dims;
        for (int d = 0; d < t->n_dims; d++) ps[i].shape[d] = t->ne[t->n_dims - 1 - d];
        ps[i].n = (size_t)evlm_tensor_nelements(t);
        ps[i].off = total;
        ps[i].src_type = t->type;
        total += ps[i].n;
    }
    evlm_tparams tp = {.p = ps, .n = (int)n, .n_floats = total};
    tp.mem = tp.w = calloc(total, sizeof(float));
    bool bf16 = true;
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_at(ws, i);
        bf16 &= t->type == EVLM_TYPE_BF16;
        const uint16_t *h = t->data;
        for (size_t j = 0; j < ps[i].n && t->type == EVLM_TYPE_BF16; j++)
            tp.w[ps[i].off + j] = evlm_bf16_to_f32(h[j]);
    }
    CHECK(bf16);
    CHECK_OK(evlm_ckpt_export(&tp, src, out, EVLM_CKPT_SOURCE));
    CHECK(evlm_ckpt_export(&tp, src, out, EVLM_CKPT_SOURCE) == EVLM_ERR_ARG); /* never replaced */
    CHECK_OK(evlm_ckpt_export(&tp, src, out32, EVLM_CKPT_F32));
    /* source dtype: the same bytes as the file; f32: the master weights */
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    evlm_weights *w2 = NULL, *w3 = NULL;
    CHECK_OK(evlm_weights_open(path, &w2));
    snprintf(path, sizeof path, "%s/model.safetensors", out32);
    CHECK_OK(evlm_weights_open(path, &w3));
    bool same = w2 && w3 && evlm_weights_count(w2) == n && evlm_weights_count(w3) == n;
    for (size_t i = 0; same && i < n; i++) {
        const evlm_tensor *a = evlm_weights_at(ws, i);
        const evlm_tensor *b = evlm_weights_find(w2, a->name);
        const evlm_tensor *c = evlm_weights_find(w3, a->name);
        same = b && c && b->type == a->type && c->type == EVLM_TYPE_F32 &&
               !memcmp(a->ne, b->ne, sizeof a->ne) && !memcmp(a->ne, c->ne, sizeof a->ne) &&
               !memcmp(a->data, b->data, evlm_tensor_nbytes(a)) &&
               !memcmp(c->data, tp.w + ps[i].off, ps[i].n * sizeof(float));
    }
    CHECK(same);
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    CHECK(evlm_file_exists(path));
    evlm_weights_free(w2);
    evlm_weights_free(w3);
    /* both load as models */
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 1;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(out, &mp, &m));
    if (m) evlm_model_free(m);
    m = NULL;
    CHECK_OK(evlm_model_load(out32, &mp, &m));
    if (m) evlm_model_free(m);
    evlm_weights_free(ws);
    free(tp.mem);
    free(ps);
}

int main(void) {
    test_adamw_vs_torch();
    test_schedule_and_clip();
    test_order();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/evlm_test_train_loop.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_checkpoint();
    const char *shared = test_shared_dir();
    if (shared) {
        test_data(shared);
        test_export(shared);
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_done();
}
