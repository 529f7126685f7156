/*
 * dataset.h - question-answer sets for eval and quality: lines of {image, question, answer,
 * optional scenario} answered through the chat template and scored by exact match after
 * trimming whitespace. Image paths are relative to the dataset's folder.
 */
#ifndef EVLM_CLI_DATASET_H
#define EVLM_CLI_DATASET_H

#include "evlm.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct {
    char key[256];
    int n, correct;
} cli_tally;

typedef struct {
    cli_tally *v;
    int n, cap;
} cli_tallies;

typedef struct cli_eval_result {
    int n, correct;
    cli_tallies scenario, question;
    double ttft_ms;           /* mean */
    double decode_tok_s;      /* over all answers */
    double accepted_per_step; /* generated tokens per decode pass */
} cli_eval_result;

/* One item of a set: image is the resolved path (relative paths are taken from the set's folder)
 * or NULL, image_field the path as the line gives it; scenario may be NULL. Valid during the
 * callback only. */
typedef struct {
    const char *question, *answer, *scenario, *image, *image_field;
    int line;
} cli_dataset_item;
typedef void (*cli_dataset_fn)(void *ctx, const cli_dataset_item *item);
/* Calls fn for every item of the set, in file order; returns how many. Dies with a message
 * naming the line on a bad one, and on a set with no items. */
int cli_dataset_each(const char *dataset, cli_dataset_fn fn, void *ctx);

/* Answers every item with m (one context made with cp). verbose: one line per item
 * on stderr; progress: a running count on stderr. Dies with a message naming the line on bad input.
 */
void cli_eval_dataset(evlm_model *m, const char *dataset, const evlm_gen_params *gp,
                      const evlm_context_params *cp, bool verbose, bool progress,
                      cli_eval_result *r);
void cli_eval_result_free(cli_eval_result *r);
void cli_print_tallies(const char *title, const cli_tallies *t);
cJSON *cli_json_tallies(const cli_tallies *t);

#endif
