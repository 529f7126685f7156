/*
 * cmd_distill.c - `evlm distill --teacher T -m STUDENT -o OUT_DIR --data FILE.jsonl ...`:
 * knowledge distillation in the fine-tuning loop (evlm_finetune with a distillation description,
 * include/evlm_train.h): white-box terms (soft targets, hidden states through a layer map,
 * attention maps), black-box targets (--generate-targets) and the ground truth mixed in by
 * --alpha. OUT_DIR is laid out as `evlm finetune`'s (model/, checkpoint/, log.json, loss.png)
 * plus targets.jsonl with --generate-targets.
 * Not here: the losses and the loop (src/train), the shared options (cmd_finetune.c).
 */
#include "cli.h"
#include "evlm_train.h"
#include "train_opts.h"

#include <stdio.h>
#include <string.h>

static const char *k_usage =
    "usage: evlm distill --teacher T -m STUDENT -o OUT_DIR --data FILE.jsonl [--text FILE] "
    "[options]\n"
    "  --teacher T          the teacher: a model folder or GGUF with the student's vocabulary\n"
    "  -o OUT_DIR           receives model/ (the student), checkpoint/, log.json, loss.png\n"
    "  --loss kl|rkl|jsd:BETA  the soft-target loss, tau^2 KL(T||S), KL(S||T) or the generalized\n"
    "                       JSD with BETA in (0, 1) (kl)\n"
    "  --temp T             temperature of the soft targets (1)\n"
    "  --alpha A            weight of the ground truth's cross-entropy, 1 - A the soft "
    "targets' (0)\n"
    "  --hidden-loss W      + W x the MSE of the hidden states (a learned projection when the "
    "widths\n"
    "                       differ: trained, checkpointed, not part of the student) (0: none)\n"
    "  --layer-map auto|S:T,...  student layer S matched to teacher layer T (0-based; auto: "
    "evenly)\n"
    "  --attn-loss W        + W x the KL of the head-averaged attention maps (0: none)\n"
    "  --generate-targets   the teacher's greedy answers replace the data's answers (black box;\n"
    "                       generated once into OUT_DIR/targets.jsonl, reused on resume)\n"
    "  --target-tokens N    most tokens of a generated answer (64)\n"
    "  --dtype source|bf16|f32  tensors of the result (as `evlm finetune`)\n";

int evlm_cmd_distill(int argc, char **argv) {
    cli_train t;
    cli_train_init(&t);
    evlm_finetune_distill d = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_train_opt(&t, argc, argv, &i)) continue;
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            t.p.out_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--teacher"))
            d.teacher = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--loss"))
            d.loss = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--temp"))
            d.temperature = cli_double(argc, argv, &i, 1e-3, 1e3);
        else if (!strcmp(a, "--alpha"))
            d.alpha = cli_double(argc, argv, &i, 0, 1);
        else if (!strcmp(a, "--hidden-loss"))
            d.hidden_weight = cli_double(argc, argv, &i, 0, 1e6);
        else if (!strcmp(a, "--layer-map"))
            d.layer_map = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--attn-loss"))
            d.attn_weight = cli_double(argc, argv, &i, 0, 1e6);
        else if (!strcmp(a, "--generate-targets"))
            d.generate_targets = true;
        else if (!strcmp(a, "--target-tokens"))
            d.target_tokens = cli_int(argc, argv, &i, 1, 4096);
        else if (!strcmp(a, "--dtype"))
            t.p.dtype = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            fputs(cli_train_usage_model, stdout);
            fputs(cli_train_usage, stdout);
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!d.teacher) cli_die("no teacher given (--teacher T)");
    if (!t.p.out_dir) cli_die("no output folder given (-o OUT_DIR)");
    t.p.distill = &d;
    evlm_finetune_result r;
    cli_train_run(&t, "distill", &r);
    cli_train_summary(&r);
    printf("; student in %s/model\n", t.p.out_dir);
    return 0;
}
