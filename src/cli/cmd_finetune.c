/*
 * cmd_finetune.c - `evlm finetune -m MODEL --data FILE.jsonl [--text FILE] -o OUT_DIR ...`:
 * fine-tunes a model folder (evlm_finetune, include/evlm_train.h) with a progress bar (loss,
 * learning rate, tokens/s, ETA), scores --eval sets with `evlm eval`'s own scoring
 * (cli_eval_dataset on the current weights, written as a model folder), and draws the loss curve
 * OUT_DIR/loss.png with gnuplot when it is installed.
 * Not here: the training itself (src/train), the folders' contents (see evlm_train.h).
 */
#include "cli.h"
#include "dataset.h"
#include "evlm_train.h"
#include "train_opts.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fmt_time(char *out, size_t cap, double s) {
    if (s < 0 || s > 1e7) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(out, cap, "%dh%02dm", t / 3600, t / 60 % 60);
    else
        snprintf(out, cap, "%dm%02ds", t / 60, t % 60);
}

static void bar(void *user, const evlm_finetune_progress *p) {
    const cli_train *ui = user;
    if (p->eval_accuracy >= 0)
        fprintf(stderr, "%sstep %lld: eval accuracy %.1f %%\n", ui->bar ? "\n" : "",
                (long long)p->step, 100 * p->eval_accuracy);
    if (!ui->bar) return;
    int width = 24, fill = p->total > 0 ? (int)((long long)width * p->step / p->total) : width;
    char eta[32];
    fmt_time(eta, sizeof eta, p->eta_s);
    fprintf(stderr, "\rstep %lld/%lld [%.*s%*s] loss %.4f lr %.2e |g| %.3g %.0f tok/s ETA %s   ",
            (long long)p->step, (long long)p->total, fill, "########################", width - fill,
            "", p->loss, p->lr, p->grad_norm, p->tokens_per_s, eta);
    if (p->step >= p->total) fputc('\n', stderr);
    fflush(stderr);
}

static double eval_hook(void *user, const char *model_dir, const char *dataset) {
    const cli_train *ui = user;
    cli_model_opts o = {0};
    o.model = model_dir;
    o.threads = ui->threads;
    evlm_model *m = cli_load_model(&o);
    evlm_gen_params gp = evlm_gen_default_params();
    gp.n_predict = 64;
    evlm_context_params cp = cli_context_params(&o, 0);
    cli_eval_result r;
    cli_eval_dataset(m, dataset, &gp, &cp, false, false, &r);
    double acc = r.n > 0 ? (double)r.correct / r.n : -1;
    cli_eval_result_free(&r);
    evlm_model_free(m);
    return acc;
}

/* OUT_DIR/loss.png from OUT_DIR/log.json (loss per update), when gnuplot is there. */
static void loss_png(const char *out_dir, const char *cmd) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "evlm %s: gnuplot not found: no loss.png (the curve is in log.json)\n",
                cmd);
        return;
    }
    char path[4096], dat[4200], png[4200], tmp_png[4300];
    snprintf(path, sizeof path, "%s/log.json", out_dir);
    size_t len;
    char *text = cli_read_file(path, (size_t)1 << 30, &len);
    cJSON *j = cJSON_Parse(text);
    free(text);
    snprintf(dat, sizeof dat, "%s/loss.dat.tmp", out_dir);
    FILE *f = fopen(dat, "w");
    if (!f) cli_die("%s: cannot write", dat);
    const cJSON *e, *steps = cJSON_GetObjectItemCaseSensitive(j, "steps");
    /* each update's loss and the mean of the last w (a batch's loss is noisy) */
    int n = 0, total = cJSON_GetArraySize(steps), w = total / 25 > 1 ? total / 25 : 1;
    double *ring = calloc((size_t)w, sizeof *ring), sum = 0;
    if (!ring) cli_die("out of memory");
    cJSON_ArrayForEach(e, steps) {
        double loss = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "loss"));
        sum += loss - ring[n % w];
        ring[n % w] = loss;
        n++;
        fprintf(f, "%.17g %.9g %.9g\n",
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "step")), loss,
                sum / (n < w ? n : w));
    }
    free(ring);
    fclose(f);
    cJSON_Delete(j);
    snprintf(png, sizeof png, "%s/loss.png", out_dir);
    snprintf(tmp_png, sizeof tmp_png, "%s/loss.png.tmp", out_dir);
    FILE *g = n ? popen("gnuplot 2>/dev/null", "w") : NULL;
    int rc = -1;
    if (g) {
        fprintf(g,
                "set terminal pngcairo size 800,480\nset output '%s'\nset xlabel 'update'\n"
                "set ylabel 'training loss'\nset grid\nset key top right\n"
                "plot '%s' using 1:2 with points pt 7 ps 0.4 lc rgb '#b0b0e0' title 'update', "
                "'' using 1:3 with lines lw 2.5 lc rgb '#3030a0' title 'mean of %d'\n",
                tmp_png, dat, w);
        rc = pclose(g);
    }
    unlink(dat);
    if (rc != 0 || rename(tmp_png, png) != 0) {
        unlink(tmp_png);
        fprintf(stderr, "evlm %s: gnuplot failed: no loss.png\n", cmd);
    }
}

const char *const cli_train_usage_model =
    "  -m MODEL             a model folder, or a GGUF evlm wrote (trained from its dequantized "
    "tensors)\n";

const char *const cli_train_usage =
    "  --data FILE.jsonl    {image, question, answer} items: the prompt `evlm eval` builds, loss "
    "on the answer\n"
    "  --text FILE          plain text (paragraphs cut to the context), loss on every token\n"
    "  --steps N | --epochs E   updates, or passes over the data (default 1 epoch)\n"
    "  --batch B            sequences per batch (8)\n"
    "  --accum A            batches per update (1)\n"
    "  --ctx N              most tokens of one item (the model's context, at most 2048)\n"
    "  --lr LR              peak learning rate (1e-4); --min-lr LR: the final one (0)\n"
    "  --warmup N           updates of linear warmup, then cosine decay (0)\n"
    "  --wd W               AdamW weight decay (0)\n"
    "  --clip C             global gradient norm bound (1; 0: none)\n"
    "  --seed S             data order (42)\n"
    "  -t, --threads N      threads (physical cores); results depend on it\n"
    "  --train PATTERN      train only matching parameters (glob; repeatable)\n"
    "  --freeze PATTERN     freeze matching parameters (glob; repeatable)\n"
    "  --eval FILE.jsonl    accuracy as `evlm eval` scores it, every --eval-every N updates and "
    "at the end\n"
    "  --save-every N       checkpoint every N updates (and at the end)\n"
    "  --resume DIR         continue from a checkpoint (same options: bit-identical)\n"
    "  --budget-minutes M   train for about M minutes: the schedule shrinks to the updates that "
    "fit\n"
    "                       (timed on the first), then stops (checkpoint and model written)\n"
    "  --stop-after N       stop after update N, checkpoint written (resume later with --resume)\n"
    "  --no-bar             no progress bar\n";

static const char *k_usage_head =
    "usage: evlm finetune -m MODEL --data FILE.jsonl [--text FILE] -o OUT_DIR [options]\n"
    "  -o OUT_DIR           receives model/ (the result), checkpoint/, log.json, loss.png\n"
    "  --dtype source|bf16|f32  tensors of the result (source: as the model stored them; a "
    "quantized\n"
    "                       tensor: the float dtype of the model's config, f32 if none)\n";

void cli_train_init(cli_train *t) {
    memset(t, 0, sizeof *t);
    t->p = evlm_finetune_default_params();
    t->bar = true;
}

bool cli_train_opt(cli_train *t, int argc, char **argv, int *i) {
    evlm_finetune_params *p = &t->p;
    const char *a = argv[*i];
    if (!strcmp(a, "-m") || !strcmp(a, "--model"))
        p->model = cli_value(argc, argv, i);
    else if (!strcmp(a, "--data"))
        p->data = cli_value(argc, argv, i);
    else if (!strcmp(a, "--text"))
        p->text = cli_value(argc, argv, i);
    else if (!strcmp(a, "--steps"))
        p->steps = cli_int(argc, argv, i, 1, 1 << 30);
    else if (!strcmp(a, "--epochs"))
        p->epochs = cli_int(argc, argv, i, 1, 1 << 20);
    else if (!strcmp(a, "--batch"))
        p->batch = cli_int(argc, argv, i, 1, 4096);
    else if (!strcmp(a, "--accum"))
        p->accum = cli_int(argc, argv, i, 1, 4096);
    else if (!strcmp(a, "--ctx"))
        p->ctx = cli_int(argc, argv, i, 2, 1 << 20);
    else if (!strcmp(a, "--lr"))
        p->lr = cli_double(argc, argv, i, 1e-12, 10);
    else if (!strcmp(a, "--min-lr"))
        p->min_lr = cli_double(argc, argv, i, 0, 10);
    else if (!strcmp(a, "--warmup"))
        p->warmup = cli_int(argc, argv, i, 0, 1 << 30);
    else if (!strcmp(a, "--wd"))
        p->weight_decay = cli_double(argc, argv, i, 0, 10);
    else if (!strcmp(a, "--clip"))
        p->clip = cli_double(argc, argv, i, 0, 1e9);
    else if (!strcmp(a, "--seed"))
        p->seed = (uint64_t)cli_int(argc, argv, i, 0, 2147483647);
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
        p->n_threads = t->threads = cli_int(argc, argv, i, 0, 1024);
    else if (!strcmp(a, "--train") || !strcmp(a, "--freeze")) {
        bool tr = !strcmp(a, "--train");
        int *n = tr ? &p->n_train : &p->n_freeze;
        if (*n == CLI_TRAIN_MAX_GLOBS) cli_die("more than %d %s patterns", CLI_TRAIN_MAX_GLOBS, a);
        (tr ? t->train : t->freeze)[(*n)++] = cli_value(argc, argv, i);
    } else if (!strcmp(a, "--eval"))
        p->eval = cli_value(argc, argv, i);
    else if (!strcmp(a, "--eval-every"))
        p->eval_every = cli_int(argc, argv, i, 1, 1 << 30);
    else if (!strcmp(a, "--save-every"))
        p->save_every = cli_int(argc, argv, i, 1, 1 << 30);
    else if (!strcmp(a, "--resume"))
        p->resume = cli_value(argc, argv, i);
    else if (!strcmp(a, "--budget-minutes"))
        p->budget_minutes = cli_double(argc, argv, i, 1e-6, 1e7);
    else if (!strcmp(a, "--stop-after"))
        p->stop_after = cli_int(argc, argv, i, 1, 1 << 30);
    else if (!strcmp(a, "--no-bar"))
        t->bar = false;
    else
        return false;
    return true;
}

void cli_train_run(cli_train *t, const char *cmd, evlm_finetune_result *r) {
    evlm_finetune_params *p = &t->p;
    if (!p->model) cli_die("no model given (-m MODEL)");
    if (!p->out_dir) cli_die("no output given (-o)");
    if (!p->data && !p->text) cli_die("no data given (--data FILE.jsonl and / or --text FILE)");
    p->train = t->train;
    p->freeze = t->freeze;
    p->progress = bar;
    p->eval_fn = eval_hook;
    p->user = t;
    if (!isatty(2)) t->bar = false;
    cli_check(evlm_finetune(p, r));
    loss_png(p->out_dir, cmd);
}

void cli_train_summary(const evlm_finetune_result *r) {
    printf("%lld updates%s, last loss %.4f", (long long)r->steps,
           r->budget_stop ? " (stopped early: --budget-minutes / --stop-after)" : "", r->loss);
    if (r->eval_accuracy >= 0) printf(", eval accuracy %.1f %%", 100 * r->eval_accuracy);
    printf(", %.1f s", r->seconds);
}

int evlm_cmd_finetune(int argc, char **argv) {
    cli_train t;
    cli_train_init(&t);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_train_opt(&t, argc, argv, &i)) continue;
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            t.p.out_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dtype"))
            t.p.dtype = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage_head, stdout);
            fputs(cli_train_usage_model, stdout);
            fputs(cli_train_usage, stdout);
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!t.p.out_dir) cli_die("no output folder given (-o OUT_DIR)");
    evlm_finetune_result r;
    cli_train_run(&t, "finetune", &r);
    cli_train_summary(&r);
    printf("; model in %s/model\n", t.p.out_dir);
    return 0;
}
