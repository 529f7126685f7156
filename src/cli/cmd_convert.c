/*
 * cmd_convert.c - `evlm convert --from llama2c MODEL.bin TOKENIZER.bin OUT_DIR`: writes a
 * Hugging Face style folder that every other command loads.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int evlm_cmd_convert(int argc, char **argv) {
    const char *from = NULL, *pos[3];
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--from"))
            from = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: evlm convert --from llama2c MODEL.bin TOKENIZER.bin OUT_DIR\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1])
            cli_die("unknown option '%s'", argv[i]);
        else if (n_pos < 3)
            pos[n_pos++] = argv[i];
        else
            cli_die("too many arguments");
    }
    if (!from) cli_die("no source format given (--from llama2c)");
    if (strcmp(from, "llama2c") != 0)
        cli_die("unknown source format '%s' (supported: llama2c)", from);
    if (n_pos != 3) cli_die("expected MODEL.bin TOKENIZER.bin OUT_DIR");
    cli_check(evlm_llama2c_convert(pos[0], pos[1], pos[2]));
    fprintf(stderr, "wrote %s\n", pos[2]);
    return 0;
}
