/*
 * fuzz_chat_template.c - libFuzzer harness for the chat-template Jinja subset: the input is
 * template source; it is parsed, rendered over a fixed two-message conversation (an image and
 * text from the user, text from the assistant) and freed. Errors are expected; crashes, leaks
 * and sanitizer reports are not. The seed corpus is fuzz/corpus/fuzz_chat_template/.
 */
#include "tokenizer/chat_template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 16)) return 0;
    char *src = malloc(size + 1);
    if (!src) return 0;
    if (size) memcpy(src, data, size);
    src[size] = 0; /* an embedded NUL just ends the template early */
    evlm_chat_template *t = NULL;
    if (evlm_chat_template_new("fuzz", src, "<s>", "</s>", &t) == EVLM_OK) {
        static const evlm_chat_part user[2] = {{EVLM_PART_IMAGE, NULL},
                                               {EVLM_PART_TEXT, "What is in the image?"}};
        static const evlm_chat_part bot[1] = {{EVLM_PART_TEXT, "A cat on a mat."}};
        const evlm_chat_msg msgs[2] = {{"user", user, 2}, {"assistant", bot, 1}};
        for (int gen = 0; gen < 2; gen++) {
            evlm_str out = {0};
            (void)evlm_chat_template_apply(t, msgs, 2, gen != 0, &out);
            evlm_str_free(&out);
        }
        evlm_chat_template_free(t);
    }
    free(src);
    return 0;
}
