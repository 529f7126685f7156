/*
 * cmd_grad.c - `evlm grad -m MODEL --batch BATCH.json --loss ce|kd|rkl|hidden|qat_ce
 * [--teacher DIR] [-o GRADS.safetensors] [--json] [-t N]`: one forward and backward of a batch
 * (evlm_grad), every parameter's float32 gradient under its Hugging Face name, and the loss and
 * global gradient norm on stdout.
 */
#include "cli.h"
#include "evlm_train.h"

#include <stdio.h>
#include <string.h>

int evlm_cmd_grad(int argc, char **argv) {
    evlm_grad_params p = evlm_grad_default_params();
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            p.model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--batch"))
            p.batch = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--loss"))
            p.loss = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--teacher"))
            p.teacher = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            p.out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            p.n_threads = cli_int(argc, argv, &i, 1, 1024);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: evlm grad -m MODEL --batch BATCH.json --loss ce|kd|rkl|hidden|qat_ce "
                   "[--teacher DIR] -o GRADS.safetensors [--json] [-t THREADS]\n"
                   "  one forward and backward of the batch (the format of "
                   "../shared/fixtures/grad/README.md);\n"
                   "  writes every parameter's float32 gradient under its Hugging Face name and "
                   "prints the loss and global gradient norm\n");
            return 0;
        } else
            cli_die("unknown option '%s'", a);
    }
    if (!p.model) cli_die("no model given (-m MODEL)");
    if (!p.batch) cli_die("no batch given (--batch BATCH.json)");
    if (!p.out) cli_die("no output file given (-o GRADS.safetensors)");
    evlm_grad_result r;
    cli_check(evlm_grad(&p, &r));
    if (json)
        printf("{\"loss\": %.9g, \"grad_norm\": %.9g}\n", r.loss, r.grad_norm);
    else
        printf("loss %.6f  grad norm %.6f  (%d targets, %d parameters) -> %s\n", r.loss,
               r.grad_norm, r.n_targets, r.n_params, p.out);
    return 0;
}
