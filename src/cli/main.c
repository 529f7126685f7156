/* main.c - the evlm command: dispatches to subcommands (placeholder until the CLI lands). */
#include "evlm.h"

#include <stdio.h>

int main(void) {
    fprintf(stderr, "evlm: no subcommands yet\n");
    return 1;
}
