/*
 * cmd_qat.c - `evlm qat -m MODEL -o OUT.gguf --type q4_0|q8_0|q4_1 --data FILE.jsonl ...`:
 * quantization-aware training in the fine-tuning loop (evlm_finetune with a QAT description,
 * include/evlm_train.h): the forward fake-quantizes as OUT.gguf stores, the float model is the
 * distillation teacher by default (kl on the logits), --learn-scales trains the block scales; the
 * GGUF is written by evlm_qat_export. The run's working folder (checkpoint/, log.json, loss.png)
 * is OUT.gguf.train/ unless --work-dir says otherwise.
 * Not here: the fake quantization and the export (src/train), the shared options
 * (cmd_finetune.c).
 */
#include "cli.h"
#include "evlm_train.h"
#include "train_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: evlm qat -m MODEL -o OUT.gguf --type q4_0|q8_0|q4_1 --data FILE.jsonl [--text FILE] "
    "[options]\n"
    "  -m MODEL             a float Hugging Face model folder\n"
    "  -o OUT.gguf          the quantized model (the blocks the training forward used)\n"
    "  --type T             q4_0, q8_0 or q4_1: the decoder's matrices, embedding and head\n"
    "  --vision T           the vision tower's and connector's type (--type)\n"
    "  --teacher T          distill from T (kl on the logits); default: the float MODEL itself\n"
    "  --no-teacher         no teacher: cross-entropy on the data through the quantized forward\n"
    "  --temp T             the teacher's temperature (1)\n"
    "  --learn-scales       train each block's scale (LSQ; q4_0 and q8_0)\n"
    "  --work-dir DIR       checkpoint/, log.json, loss.png (OUT.gguf.train)\n"
    "  (--eval scores the float master weights; a stop by --stop-after / --budget-minutes writes\n"
    "  OUT.gguf from the current weights, a --resume run rewrites it)\n";

int evlm_cmd_qat(int argc, char **argv) {
    cli_train t;
    cli_train_init(&t);
    evlm_finetune_qat q = {0};
    evlm_finetune_distill d = {0};
    bool no_teacher = false;
    const char *work = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_train_opt(&t, argc, argv, &i)) continue;
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            q.out_gguf = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--type"))
            q.type = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--vision"))
            q.vision = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--teacher"))
            d.teacher = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--no-teacher"))
            no_teacher = true;
        else if (!strcmp(a, "--temp"))
            d.temperature = cli_double(argc, argv, &i, 1e-3, 1e3);
        else if (!strcmp(a, "--learn-scales"))
            q.learn_scales = true;
        else if (!strcmp(a, "--work-dir"))
            work = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            fputs(cli_train_usage, stdout);
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!q.out_gguf) cli_die("no output given (-o OUT.gguf)");
    if (!q.type) cli_die("no type given (--type q4_0|q8_0|q4_1)");
    if (no_teacher && d.teacher) cli_die("--teacher and --no-teacher exclude each other");
    char work_buf[4096];
    if (!work) {
        if (snprintf(work_buf, sizeof work_buf, "%s.train", q.out_gguf) >= (int)sizeof work_buf)
            cli_die("%s: path too long", q.out_gguf);
        work = work_buf;
    }
    t.p.out_dir = work;
    t.p.qat = &q;
    if (!no_teacher) t.p.distill = &d; /* kl, alpha 0: the teacher's soft targets alone */
    evlm_finetune_result r;
    cli_train_run(&t, "qat", &r);
    cli_train_summary(&r);
    printf("; %s written (working folder %s)\n", q.out_gguf, work);
    return 0;
}
