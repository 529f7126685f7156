/*
 * train_opts.h - what `evlm finetune`, `evlm distill` and `evlm qat` share (cmd_finetune.c):
 * the fine-tuning loop's options, the progress bar, the --eval hook, the loss curve, the summary
 * line. Each command adds its own options and fills its part of evlm_finetune_params.
 * Not here: the training (src/train, include/evlm_train.h).
 */
#ifndef EVLM_CLI_TRAIN_OPTS_H
#define EVLM_CLI_TRAIN_OPTS_H

#include "evlm_train.h"

#include <stdbool.h>

#define CLI_TRAIN_MAX_GLOBS 64

typedef struct cli_train {
    evlm_finetune_params p;
    const char *train[CLI_TRAIN_MAX_GLOBS], *freeze[CLI_TRAIN_MAX_GLOBS];
    bool bar;
    int threads;
} cli_train;

/* The help lines of the shared options (-m apart: qat takes a float folder only). */
extern const char *const cli_train_usage_model;
extern const char *const cli_train_usage;

void cli_train_init(cli_train *t);
/* Consumes argv[*i] (and its value) when it is a shared option. */
bool cli_train_opt(cli_train *t, int argc, char **argv, int *i);
/* Checks the required options, runs evlm_finetune (dies with the library's error), draws
 * OUT_DIR/loss.png. cmd names the command in messages. */
void cli_train_run(cli_train *t, const char *cmd, evlm_finetune_result *r);
/* "N updates, last loss L[, eval accuracy A], S s" (no newline). */
void cli_train_summary(const evlm_finetune_result *r);

#endif
