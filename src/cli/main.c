/*
 * main.c - the evlm command: dispatches to its subcommands.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    evlm_cmd_fn fn;
    const char *help;
} k_cmds[] = {
    {"run", evlm_cmd_run,
     "generate an answer: run -m DIR -p TEXT [--raw] [-n N] [--temp T] ... [--json]"},
    {"logits", evlm_cmd_logits, "dump prompt logits: logits -m DIR -p TEXT [--raw] --out FILE"},
    {"eval", evlm_cmd_eval, "score a QA set: eval -m DIR --dataset FILE.jsonl [--json]"},
    {"bench", evlm_cmd_bench,
     "speed: bench -m DIR [--image FILE] [-p N] [-n N] [-t T] [-r R] [--json]"},
    {"quantize", evlm_cmd_quantize,
     "compress: quantize -m DIR -o OUT.gguf --type q8_0|q4_0|q4_1 [--calib FILE] [--method "
     "rtn|awq|gptq] ..."},
    {"export-gguf", evlm_cmd_export_gguf,
     "float GGUF for llama.cpp: export-gguf -m DIR -o OUT.gguf [--type f16|bf16|f32] (+ "
     "mmproj-OUT.gguf)"},
    {"prune", evlm_cmd_prune,
     "sparsify: prune -m DIR -o OUT.gguf --method magnitude|wanda|sparsegpt --sparsity S | "
     "--pattern 2:4 ..."},
    {"lowrank", evlm_cmd_lowrank,
     "factor matrices: lowrank -m DIR -o OUT (--rank R | --ratio P) [--method "
     "svd|asvd|svd-llm] [--calib FILE] ..."},
    {"quality", evlm_cmd_quality,
     "compare with a reference: quality -m REF -q QUANT [--text FILE] [--dataset FILE.jsonl] "
     "[--json]"},
    {"synth", evlm_cmd_synth,
     "random weights: synth --config CONFIG.json -o OUT_DIR [--dtype bf16|f16|f32] [--text-only]"},
    {"tokenize", evlm_cmd_tokenize,
     "JSON strings on stdin to id arrays: tokenize -m DIR [--decode]"},
    {"info", evlm_cmd_info, "describe a model: info -m PATH [--json]"},
    {"export-onnx", evlm_cmd_export_onnx,
     "ONNX graphs for the NPU: export-onnx -m MODEL -o DIR [--precision fp32] [--ar N] [--ctx C]"},
    {"prompt", evlm_cmd_prompt,
     "prompt ids / pixel values for outside runners: prompt -m DIR [--image F] -p TEXT ..."},
    {"grad", evlm_cmd_grad,
     "one gradient: grad -m DIR --batch BATCH.json --loss ce|kd|rkl|hidden|qat_ce [--teacher "
     "DIR] -o GRADS.safetensors [--json]"},
    {"plan", evlm_cmd_plan, "NPU fit and speed: plan -m MODEL|CONFIG.json --target T [--json]"},
    {"convert", evlm_cmd_convert, "import: convert --from llama2c MODEL.bin TOKENIZER.bin OUT_DIR"},
    {"finetune", evlm_cmd_finetune,
     "train: finetune -m DIR --data FILE.jsonl [--text FILE] -o OUT [--steps N] [--resume DIR]"},
    {"distill", evlm_cmd_distill,
     "distillation: distill --teacher T -m STUDENT -o OUT --data FILE.jsonl [--loss kl|rkl|jsd:B] "
     "[--hidden-loss W]"},
    {"qat", evlm_cmd_qat,
     "quantization-aware training: qat -m DIR -o OUT.gguf --type q4_0|q8_0|q4_1 --data "
     "FILE.jsonl [--learn-scales]"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: evlm COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof *k_cmds; i++)
        fprintf(f, "  %-9s %s\n", k_cmds[i].name, k_cmds[i].help);
    fprintf(f, "\n`evlm COMMAND --help` describes the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof *k_cmds; i++) {
        if (!strcmp(argv[1], k_cmds[i].name)) {
            cli_cmd = k_cmds[i].name;
            return k_cmds[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "evlm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
