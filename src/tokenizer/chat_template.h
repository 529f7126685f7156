/*
 * chat_template.h - rendering Hugging Face chat templates (the Jinja subset they use).
 *
 * Sources, in order: chat_template.json ("chat_template"), chat_template.jinja,
 * tokenizer_config.json ("chat_template": a string, or a list of {name, template} where
 * "default" is taken). Supported Jinja: {{ }}, {% if/elif/else/endif %}, {% for x in xs %}
 * with loop.first/last/index/index0/length, {% set %}, {%- -%} whitespace control, string /
 * int / bool / none literals, list and dict literals, [] and . access, + ~ == != < > <= >= and or
 * not in, `is defined/none/string/mapping/iterable`, filters capitalize, trim, length, upper,
 * lower, tojson, string, and raise_exception(). Anything else fails at load with the template
 * name and the offending construct: an unknown template is reported, never guessed.
 *
 * Messages carry parts. Content is passed to the template as a list of
 * {"type": "text", "text": ...} / {"type": "image"} dicts when the template inspects part types
 * (it mentions 'type'), else as a plain string (the text parts joined, images dropped).
 */
#ifndef EVLM_TOKENIZER_CHAT_TEMPLATE_H
#define EVLM_TOKENIZER_CHAT_TEMPLATE_H

#include "core/file.h"
#include "core/buf.h"
#include "evlm.h"

#include <stdbool.h>

typedef struct evlm_chat_template evlm_chat_template;

typedef enum { EVLM_PART_TEXT, EVLM_PART_IMAGE } evlm_part_type;

typedef struct evlm_chat_part {
    evlm_part_type type;
    const char *text; /* EVLM_PART_TEXT */
} evlm_chat_part;

typedef struct evlm_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const evlm_chat_part *parts;
    int n_parts;
} evlm_chat_msg;

/* Loads the template of a model folder. No template at all: EVLM_ERR_UNSUPPORTED with a
 * message saying so (callers suggest --raw). */
evlm_status evlm_chat_template_load(const char *dir, evlm_chat_template **out);
evlm_status evlm_chat_template_load_dir(const evlm_dir *d, evlm_chat_template **out);
/* From template source text (tests, fuzzer). bos/eos fill the bos_token / eos_token variables
 * (may be NULL). */
evlm_status evlm_chat_template_new(const char *name, const char *source, const char *bos_token,
                                   const char *eos_token, evlm_chat_template **out);
void evlm_chat_template_free(evlm_chat_template *t);

evlm_status evlm_chat_template_apply(const evlm_chat_template *t, const evlm_chat_msg *msgs,
                                     int n_msgs, bool add_generation_prompt, evlm_str *out);

#endif
