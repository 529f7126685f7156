/*
 * cli.h - shared pieces of the evlm command: argument parsing helpers, error exits and the
 * command's own file reading / writing.
 *
 * Only the CLI prints and exits: every failure is one line "evlm <cmd>: <reason>" on stderr
 * and exit code 1. Results go to stdout. The commands use the library through its public
 * headers alone (evlm.h, evlm_compress.h), as any application would; cmd_synth.c is the one
 * exception left (it writes model folders with the library's internal writers).
 */
#ifndef EVLM_CLI_CLI_H
#define EVLM_CLI_CLI_H

#include "evlm.h"

#include <stdbool.h>

typedef int (*evlm_cmd_fn)(int argc, char **argv);

int evlm_cmd_tokenize(int argc, char **argv);
int evlm_cmd_logits(int argc, char **argv);
int evlm_cmd_run(int argc, char **argv);
int evlm_cmd_info(int argc, char **argv);
int evlm_cmd_convert(int argc, char **argv);
int evlm_cmd_eval(int argc, char **argv);
int evlm_cmd_bench(int argc, char **argv);
int evlm_cmd_synth(int argc, char **argv);
int evlm_cmd_quality(int argc, char **argv);
int evlm_cmd_quantize(int argc, char **argv);
int evlm_cmd_export_gguf(int argc, char **argv);
int evlm_cmd_prune(int argc, char **argv);
int evlm_cmd_export_onnx(int argc, char **argv);
int evlm_cmd_plan(int argc, char **argv);
int evlm_cmd_prompt(int argc, char **argv);
int evlm_cmd_lowrank(int argc, char **argv);
int evlm_cmd_grad(int argc, char **argv);
int evlm_cmd_finetune(int argc, char **argv);
int evlm_cmd_distill(int argc, char **argv);
int evlm_cmd_qat(int argc, char **argv);

/* quantize and prune (cmd_quantize.c, cmd_prune.c): the progress bar of every offline command
 * (quantize, prune, prune --structured, lowrank; user: a bool *, on), the
 * per-tensor report as a table or JSON, and the pruning options (--prune METHOD, --sparsity S,
 * --pattern N:M, --vision-sparsity S, --vision-pattern N:M at argv[*i]; true if used). */
struct evlm_quantize_report;
struct evlm_prune_params;
void cli_quant_bar(void *user, const char *stage, int done, int total);
void cli_quant_report(const char *out, const struct evlm_quantize_report *r, bool json);
bool cli_prune_opt(struct evlm_prune_params *p, int argc, char **argv, int *i);
int evlm_cmd_prune_structured(int argc, char **argv);

/* Name of the running subcommand, for messages. */
extern const char *cli_cmd;

/* Prints "evlm CMD: message" and exits 1. */
_Noreturn void cli_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Exits with evlm_last_error() when st != OK. */
void cli_check(evlm_status st);

/* The value after option argv[*i] (advances *i). */
const char *cli_value(int argc, char **argv, int *i);
int cli_int(int argc, char **argv, int *i, int lo, int hi);
/* The calibration options of the offline commands at argv[*i]: --calib FILE (a .jsonl file is
 * {image, question, answer} items, anything else text), --calib-tokens N, --calib-items N; true
 * when argv[*i] was one of them (its value consumed). */
bool cli_calib_opt(const char **text, const char **jsonl, int *tokens, int *items, int argc,
                   char **argv, int *i);
double cli_double(int argc, char **argv, int *i, double lo, double hi);
/* Reads all of stdin (bounded). */
char *cli_read_stdin(size_t *len);
/* Reads a whole file into a malloc'd, NUL-terminated buffer (at most max_size bytes). */
char *cli_read_file(const char *path, size_t max_size, size_t *len);
/* Writes data to path atomically: a temporary file in the same folder, fsync, rename. */
void cli_write_file_atomic(const char *path, const void *data, size_t n);

/* "mmproj-<file name>" beside out, in buf (cap bytes); dies when it does not fit. */
const char *cli_mmproj_default(const char *out, char *buf, size_t cap);
/* Consumes --format llamacpp|evlm and --mmproj PATH at argv[*i]; true if used. */
bool cli_format_opt(const char **format, const char **mmproj, int argc, char **argv, int *i);

/* Options shared by the commands that run a model. */
typedef struct cli_model_opts {
    const char *model;
    const char *prompt;
    bool raw;
    int threads;
    int n_ctx;
    const char *images[16]; /* --image FILE, in order */
    int n_images;
    evlm_kv_type kv;            /* --kv f32|f16|int8 */
    bool f32_act;               /* --act f32 */
    bool float_head;            /* --head float */
    evlm_image_splitting split; /* --image-splitting on|off */
    const char *sim;            /* --sim DIR: an ONNX export's numerics (evlm_npu_sim) */
    const char *mmproj;         /* --mmproj FILE: llama.cpp's vision projector of a GGUF model */
} cli_model_opts;

/* Attaches the --sim export's simulation to ctx (nothing without --sim); dies on failure. */
void cli_apply_sim(evlm_context *ctx);
/* Sets (NULL: clears) the export cli_apply_sim attaches, for commands with several models. */
void cli_set_sim(const char *dir);
/* evlm_prompt_new, or with --sim, a context carrying the simulation and images: the images
 * encoded through the export's (quantized) vision numerics (evlm_npu_sim_prompt_new). */
evlm_status cli_prompt_new(evlm_model *m, evlm_context *ctx, const char *text, bool add_special,
                           const evlm_image_input *images, int n_images, evlm_prompt **out);

/* Consumes -m/--model, --mmproj, -p/--prompt, --raw, --image, -t/--threads, -c/--ctx, --kv,
 * --act, --head, --image-splitting at argv[*i];
 * true if used. */
bool cli_model_opt(cli_model_opts *o, int argc, char **argv, int *i);
/* The prompt: --raw tokenizes the text as written (special tokens parsed, the tokenizer's
 * post-processor applied, e.g. BOS; one "<image>" per --image); otherwise the chat template
 * wraps it as a user turn carrying the images. Images are decoded and encoded here (with --sim,
 * through the export's vision numerics, on a small context carrying the simulation). */
evlm_prompt *cli_prompt(evlm_model *m, const cli_model_opts *o);
/* Consumes --lookahead W,N,G|auto and --prompt-lookup N at argv[*i]; true if used. "auto" is
 * resolved by cli_lookahead_resolve once the model is loaded. */
bool cli_lookahead_opt(evlm_lookahead_params *la, bool *la_auto, int argc, char **argv, int *i);
void cli_lookahead_resolve(evlm_lookahead_params *la, bool la_auto, const evlm_model *m);
#define CLI_LOOKAHEAD_HELP                                                                         \
    "  --lookahead W,N,G   lookahead decoding (window, n-gram size, guesses) or 'auto'; greedy "   \
    "only\n"                                                                                       \
    "  --prompt-lookup N   also verify up to N tokens copied from the prompt / answer; greedy "    \
    "only\n"                                                                                       \
    "  --head int8|float   greedy ids through an int8 copy of a float head (default, same ids) "   \
    "or not\n"
#define CLI_SIM_HELP                                                                               \
    "  --sim DIR           compute with the numerics of an export-onnx folder (docs/NPU.md)\n"
/* Context parameters from the options: -c (or n_ctx when -c is absent) and --kv. */
evlm_context_params cli_context_params(const cli_model_opts *o, int n_ctx);
/* Cache slots one lookahead step may need beyond the answer (0 when off). */
int cli_lookahead_room(const evlm_lookahead_params *la);
/* Loads the model with the options' thread count. */
evlm_model *cli_load_model(const cli_model_opts *o);

#endif
