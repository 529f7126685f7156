/* test_chat_template.c - chat templates: the SmolVLM, SmolLM2 and Qwen2-VL templates rendered
 * exactly, the Jinja subset (whitespace control with trim_blocks / lstrip_blocks, expressions,
 * scoping, namespaces, filters, tests), folder loading, and load / render errors. */
#include "core/file.h"
#include "tokenizer/chat_template.h"
#include "test.h"

#include <unistd.h>

static const char *SMOLLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

/* Qwen2-VL-2B-Instruct's chat_template (JSON-decoded: the \n are real newlines). */
static const char *QWEN2VL =
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for "
    "message in messages %}{% if loop.first and message['role'] != 'system' "
    "%}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif "
    "%}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ "
    "message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set "
    "image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ "
    "image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif "
    "content['type'] == 'video' or 'video' in content %}{% set video_count.value = "
    "video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif "
    "%}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] "
    "}}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}";

static const char *SMOLVLM =
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if "
    "message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line "
    "in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif "
    "line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% "
    "endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

static const evlm_chat_part IMG_Q[2] = {{EVLM_PART_IMAGE, NULL},
                                        {EVLM_PART_TEXT, "What is the plate?"}};
static const evlm_chat_part HI[1] = {{EVLM_PART_TEXT, "Hi"}};

/* Renders src over msgs; returns the malloc'd output or NULL (status in *st). */
static char *render(const char *src, const evlm_chat_msg *msgs, int n, bool gen,
                    evlm_status *st_out) {
    evlm_chat_template *t = NULL;
    evlm_status st = evlm_chat_template_new("test", src, "<s>", "</s>", &t);
    char *res = NULL;
    if (st == EVLM_OK) {
        evlm_str out = {0};
        st = evlm_chat_template_apply(t, msgs, n, gen, &out);
        if (st == EVLM_OK)
            res = out.data ? out.data : calloc(1, 1);
        else
            evlm_str_free(&out);
    }
    evlm_chat_template_free(t);
    if (st_out) *st_out = st;
    return res;
}

#define EXPECT_RENDER(src, msgs, n, gen, want)                                                     \
    do {                                                                                           \
        evlm_status e_st;                                                                          \
        char *e_got = render(src, msgs, n, gen, &e_st);                                            \
        CHECKF(e_st == EVLM_OK && e_got && strcmp(e_got, want) == 0, "got [%s] want [%s] (%s)",    \
               e_got ? e_got : "(null)", want, evlm_last_error());                                 \
        free(e_got);                                                                               \
    } while (0)

/* Renders an expression-only template with no messages. */
#define EXPECT_EXPR(src, want) EXPECT_RENDER(src, NULL, 0, false, want)

static void test_smolvlm(void) {
    evlm_chat_msg m = {"user", IMG_Q, 2};
    EXPECT_RENDER(SMOLVLM, &m, 1, true,
                  "<|im_start|>User:<image>What is the plate?<end_of_utterance>\nAssistant:");
    evlm_chat_msg h = {"user", HI, 1};
    EXPECT_RENDER(SMOLVLM, &h, 1, true, "<|im_start|>User: Hi<end_of_utterance>\nAssistant:");
    EXPECT_RENDER(SMOLVLM, &h, 1, false, "<|im_start|>User: Hi<end_of_utterance>\n");
    const evlm_chat_part a[1] = {{EVLM_PART_TEXT, "A plate."}};
    evlm_chat_msg conv[3] = {{"user", IMG_Q, 2}, {"assistant", a, 1}, {"user", HI, 1}};
    EXPECT_RENDER(SMOLVLM, conv, 3, true,
                  "<|im_start|>User:<image>What is the plate?<end_of_utterance>\n"
                  "Assistant: A plate.<end_of_utterance>\nUser: Hi<end_of_utterance>\nAssistant:");
}

static void test_smollm2(void) {
    evlm_chat_msg h = {"user", HI, 1};
    const char *want = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
                       "by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                       "<|im_start|>assistant\n";
    EXPECT_RENDER(SMOLLM2, &h, 1, true, want);
    /* the same template with raw newlines inside the literals (as JSON decoding gives) */
    char raw[1024];
    size_t k = 0;
    for (const char *p = SMOLLM2; *p && k + 1 < sizeof raw; p++) {
        if (p[0] == '\\' && p[1] == 'n') {
            raw[k++] = '\n';
            p++;
        } else {
            raw[k++] = *p;
        }
    }
    raw[k] = 0;
    EXPECT_RENDER(raw, &h, 1, true, want);
    /* a system message suppresses the default; text parts are joined into a string */
    const evlm_chat_part sys[1] = {{EVLM_PART_TEXT, "Be brief."}};
    const evlm_chat_part two[3] = {
        {EVLM_PART_TEXT, "a"}, {EVLM_PART_IMAGE, NULL}, {EVLM_PART_TEXT, "b"}};
    evlm_chat_msg conv[2] = {{"system", sys, 1}, {"user", two, 3}};
    EXPECT_RENDER(SMOLLM2, conv, 2, false,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n");
}

static void test_qwen2vl(void) {
    const evlm_chat_part parts[2] = {{EVLM_PART_IMAGE, NULL}, {EVLM_PART_TEXT, "Describe."}};
    evlm_chat_msg m = {"user", parts, 2};
    EXPECT_RENDER(QWEN2VL, &m, 1, true,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                  "<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
                  "<|im_start|>assistant\n");
    const evlm_chat_part sys[1] = {{EVLM_PART_TEXT, "Be brief."}};
    const evlm_chat_part a[1] = {{EVLM_PART_TEXT, "A cat."}};
    evlm_chat_msg conv[3] = {{"system", sys, 1}, {"user", parts, 2}, {"assistant", a, 1}};
    EXPECT_RENDER(QWEN2VL, conv, 3, false,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                  "<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
                  "<|im_start|>assistant\nA cat.<|im_end|>\n");
}

static void test_whitespace(void) {
    EXPECT_EXPR("{% if true %}\nA\n{% endif %}\nB", "A\nB");       /* trim_blocks */
    EXPECT_EXPR("  {% if true %}\n  X\n  {% endif %}\n", "  X\n"); /* lstrip_blocks */
    EXPECT_EXPR("a  {% if true %}b{% endif %}", "a  b");           /* not at line start */
    EXPECT_EXPR("x  {{- 'y' -}}  \n z", "xyz");                    /* - on variables */
    EXPECT_EXPR("a\n  {%- if true -%}\n  b\n{%- endif %}", "ab");  /* - on blocks */
    EXPECT_EXPR("  {%+ if true %}b{% endif %}", "  b");            /* + keeps indent */
    EXPECT_EXPR("{% if true +%}\nb{% endif %}", "\nb");            /* +%} keeps newline */
    EXPECT_EXPR("a{# note #}\nb", "ab");                           /* comments trim too */
    EXPECT_EXPR("  {# note #}\nb", "b");
    EXPECT_EXPR("  {{ 'x' }}\n", "  x"); /* no lstrip for {{, trailing newline dropped */
    EXPECT_EXPR("{{ 'x' }}\n\n", "x\n");
    EXPECT_EXPR("a\r\nb\rc", "a\nb\nc");
    EXPECT_EXPR("{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}\n", "  1\n  2\n");
    EXPECT_EXPR("{% set x = 1 %}\n{% if x %}\n    {{ 'y' }}\n{% endif %}\n", "    y\n");
}

static void test_expressions(void) {
    EXPECT_EXPR("{{ 1 + 2 }}|{{ 'a' ~ 1 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}",
                "3|a1|3|-4|1|2");
    EXPECT_EXPR("{{ 1 / 2 }}|{{ 2.0 }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 3 * 1.5 }}|{{ 1e-5 }}",
                "0.5|2.0|1e+20|0.30000000000000004|4.5|1e-05");
    EXPECT_EXPR("{{ [1, 'a', none, true, 'it\\'s'] }}", "[1, 'a', None, True, \"it's\"]");
    EXPECT_EXPR("{{ {'a': 1, 'b': [2, 'x\"y'], 'c': none, 'd': 'é'} | tojson }}",
                "{\"a\": 1, \"b\": [2, \"x\\\"y\"], \"c\": null, \"d\": \"é\"}");
    EXPECT_EXPR(
        "{{ 'héllo' | length }}|{{ 'hello'[1:3] }}|{{ [1, 2, 3][-1] }}|{{ [1, 2, 3][::-1] }}",
        "5|el|3|[3, 2, 1]");
    EXPECT_EXPR("{{ [0, 1, 2, 3, 4][1:-1] }}{{ [0, 1, 2, 3, 4][::2] }}{{ [0, 1, 2, 3, 4][3::-2] }}"
                "{{ [0, 1][5:] }}{{ 'abc'[::-1] }}",
                "[1, 2, 3][0, 2, 4][3, 1][]cba");
    EXPECT_EXPR("{{ 'héllo'[1] }}{{ 'héllo'[-4:] }}", "ééllo");
    EXPECT_EXPR("{{ 'ab' in 'cabd' }}{{ 'x' in {'x': 1} }}{{ 2 in [1, 2] }}{{ 3 not in [1, 2] }}",
                "TrueTrueTrueTrue");
    EXPECT_EXPR("{{ x is defined }}{{ x is not defined }}{{ none is none }}{{ 'a' is string }}"
                "{{ {} is mapping }}{{ [] is iterable }}{{ 1 is number }}",
                "FalseTrueTrueTrueTrueTrueTrue");
    EXPECT_EXPR("{{ '  hi  ' | trim | upper }}{{ 'hELLO wORLD' | capitalize }}{{ 'AbC' | lower }}",
                "HIHello worldabc");
    EXPECT_EXPR("{{ 'a' if false else 'b' }}{{ 'c' if true }}{{ 'd' if false }}", "bc");
    EXPECT_EXPR("{{ not 1 == 2 }}{{ 1 < 2 and 'b' > 'a' }}{{ 0 or 'z' }}{{ '' and 1 }}",
                "TrueTruez");
    EXPECT_EXPR("{{ 'a\\nb\\t\\u00e9\\x41' }}", "a\nb\téA");
    EXPECT_EXPR("{{ '  x '.strip() }}{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('x') }}"
                "{{ {'a': 1}.get('b', 2) }}{{ 'xAx'.lower() }}{{ '--a-'.rstrip('-') }}",
                "xTrueFalse2xax--a");
    EXPECT_EXPR("{{ none }}|{{ x }}|{{ true }}|{{ 42 | string }}{{ 'q' | tojson }}",
                "None||True|42\"q\"");
    EXPECT_EXPR("{{ {'a': 1}.a }}{{ {'a': {'b': 2}}['a'].b }}{{ [4, 5].1 }}{{ {}.missing }}",
                "125");
    EXPECT_EXPR("{{ 'a' 'b' }}{{ (1 + 2) * 3 }}{{ -(2) }}{{ 10 - 2 - 3 }}", "ab9-25");
}

static void test_statements(void) {
    EXPECT_EXPR(
        "{% set ns = namespace(c=0, s='') %}{% for i in [1, 2, 3] %}"
        "{% set ns.c = ns.c + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.c }}{{ ns.s }}",
        "6123");
    /* set inside a loop does not leak out of it */
    EXPECT_EXPR("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", "21");
    EXPECT_EXPR("{% for c in 'abc' %}{{ loop.index }}{{ c }}{% if not loop.last %},{% endif %}"
                "{% endfor %}",
                "1a,2b,3c");
    EXPECT_EXPR("{% for k in {'a': 1, 'b': 2} %}{{ k }}{{ loop.index0 }}{{ loop.length }}"
                "{{ loop.revindex }}{% endfor %}",
                "a022b121");
    EXPECT_EXPR("{% for x in [[1, 2], [3]] %}{% for y in x %}{{ loop.first }}{{ y }}{% endfor %}"
                "{% endfor %}",
                "True1False2True3");
    EXPECT_EXPR("{% for x in undefined_thing %}no{% endfor %}ok", "ok");
    EXPECT_EXPR("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}", "c");
    EXPECT_EXPR("{% if false %}a{% else %}{% if true %}b{% endif %}{% endif %}", "b");
    EXPECT_EXPR("{% generation %}gen{% endgeneration %}", "gen");
    EXPECT_EXPR("{{ bos_token }}x{{ eos_token }}", "<s>x</s>");
    EXPECT_EXPR("{{ add_generation_prompt }}{{ messages | length }}{{ tools }}", "False0None");
}

static void expect_fail(const char *src, evlm_status want, const char *needle) {
    evlm_chat_msg h = {"user", HI, 1};
    evlm_status st;
    char *got = render(src, &h, 1, true, &st);
    CHECKF(st == want && strstr(evlm_last_error(), needle) != NULL,
           "[%s]: status %d (want %d), message [%s] lacks [%s]", src, (int)st, (int)want,
           evlm_last_error(), needle);
    free(got);
}

static void test_errors(void) {
    /* unsupported constructs fail at load, naming the construct and where */
    expect_fail("{% macro f() %}x{% endmacro %}", EVLM_ERR_UNSUPPORTED,
                "unsupported Jinja tag 'macro' at line 1 col 4");
    expect_fail("{% call f() %}x{% endcall %}", EVLM_ERR_UNSUPPORTED, "'call'");
    expect_fail("{% include 'x' %}", EVLM_ERR_UNSUPPORTED, "'include'");
    expect_fail("hello\n{{ messages | foo }}", EVLM_ERR_UNSUPPORTED,
                "test: unsupported Jinja filter 'foo' at line 2 col 15");
    expect_fail("{{ x | join(', ') }}", EVLM_ERR_UNSUPPORTED, "filter 'join'");
    expect_fail("{{ x | tojson(indent=2) }}", EVLM_ERR_UNSUPPORTED, "tojson");
    expect_fail("{{ x is divisibleby(3) }}", EVLM_ERR_UNSUPPORTED, "test 'divisibleby'");
    expect_fail("{{ range(3) }}", EVLM_ERR_UNSUPPORTED, "function 'range'");
    expect_fail("{{ x.split(',') }}", EVLM_ERR_UNSUPPORTED, "method 'split'");
    expect_fail("{{ 2 ** 3 }}", EVLM_ERR_UNSUPPORTED, "'**'");
    expect_fail("{% for a, b in x %}{% endfor %}", EVLM_ERR_UNSUPPORTED, "tuple");
    expect_fail("{% for a in x %}{% else %}{% endfor %}", EVLM_ERR_UNSUPPORTED, "for-else");
    expect_fail("{% for a in x if a %}{% endfor %}", EVLM_ERR_UNSUPPORTED, "loop filter");
    expect_fail("{% break %}", EVLM_ERR_UNSUPPORTED, "'break'");
    /* syntax errors: EVLM_ERR_FORMAT with line/col */
    expect_fail("{% if x %}abc", EVLM_ERR_FORMAT, "expected 'endif'");
    expect_fail("a\n{{ 'abc }}", EVLM_ERR_FORMAT, "unterminated string literal at line 2 col 4");
    expect_fail("{{ x + }}", EVLM_ERR_FORMAT, "at line 1 col 8");
    expect_fail("{{ x ! }}", EVLM_ERR_FORMAT, "unexpected character '!'");
    expect_fail("{% endif %}", EVLM_ERR_FORMAT, "unexpected 'endif'");
    expect_fail("{{ x", EVLM_ERR_FORMAT, "unclosed '{{'");
    expect_fail("a\n  b {% if x", EVLM_ERR_FORMAT, "unclosed '{%' at line 2 col 5");
    expect_fail("{# x", EVLM_ERR_FORMAT, "unclosed comment");
    expect_fail("{{ [1, 2 }}", EVLM_ERR_FORMAT, "expected ']'");
    expect_fail("{% if %}{% endif %}", EVLM_ERR_FORMAT, "expected an expression");
    expect_fail("{{ 99999999999999999999 }}", EVLM_ERR_FORMAT, "too large");
    /* render errors */
    expect_fail("{% if messages[0]['role'] == 'user' %}{{ raise_exception('Roles must alternate') "
                "}}{% endif %}",
                EVLM_ERR_ARG, "Roles must alternate");
    expect_fail("{{ foo.bar }}", EVLM_ERR_ARG, "undefined value has no attribute");
    expect_fail("{{ 'a' + 1 }}", EVLM_ERR_ARG, "unsupported operand");
    expect_fail("{{ 1 // 0 }}", EVLM_ERR_ARG, "by zero");
    expect_fail("{% set x.y = 1 %}", EVLM_ERR_ARG, "cannot assign attribute");
    expect_fail("{% for i in 5 %}{% endfor %}", EVLM_ERR_ARG, "not iterable");
}

static void test_bounds(void) {
    /* nesting depth */
    char deep[4200];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 2000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 2000; i++) deep[k++] = ')';
    k += (size_t)snprintf(deep + k, sizeof deep - k, " }}");
    expect_fail(deep, EVLM_ERR_FORMAT, "nesting deeper");
    k = 0;
    for (int i = 0; i < 300; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{%% if 1 %%}");
    expect_fail(deep, EVLM_ERR_FORMAT, "nesting deeper");
    /* exponential string growth hits the output / memory bound */
    expect_fail("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}"
                "{% for c in '0123456789012345678901234567890123456789' %}"
                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
                EVLM_ERR_NOMEM, "");
    /* deeply nested values are refused, not recursed into */
    expect_fail("{% set ns = namespace(l=[]) %}{% for c in "
                "'0123456789012345678901234567890123456789012345678901234567890123456789' %}"
                "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
                EVLM_ERR_ARG, "nested too deeply");
    /* loops that never end in practice hit the step bound */
    expect_fail("{% set s = '0123456789012345678901234567890123456789' %}{% for a in s %}"
                "{% for b in s %}{% for c in s %}{% for d in s %}{% for e in s %}{% endfor %}"
                "{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
                EVLM_ERR_NOMEM, "steps");
}

static void test_api_errors(void) {
    evlm_chat_template *t = NULL;
    CHECK(evlm_chat_template_new("x", NULL, NULL, NULL, &t) == EVLM_ERR_ARG && t == NULL);
    CHECK_OK(evlm_chat_template_new("x", "{{ bos_token is defined }}", NULL, NULL, &t));
    evlm_str out = {0};
    CHECK_OK(evlm_chat_template_apply(t, NULL, 0, false, &out));
    CHECK(out.data && strcmp(out.data, "False") == 0);
    evlm_str_free(&out);
    evlm_chat_msg bad = {NULL, HI, 1};
    CHECK(evlm_chat_template_apply(t, &bad, 1, false, &out) == EVLM_ERR_ARG);
    const evlm_chat_part nul[1] = {{EVLM_PART_TEXT, NULL}};
    evlm_chat_msg bad2 = {"user", nul, 1};
    CHECK(evlm_chat_template_apply(t, &bad2, 1, false, &out) == EVLM_ERR_ARG);
    CHECK(evlm_chat_template_apply(t, NULL, 1, false, &out) == EVLM_ERR_ARG);
    CHECK(out.data == NULL);
    evlm_chat_template_free(t);
    evlm_chat_template_free(NULL);
    CHECK(evlm_chat_template_load(NULL, &t) == EVLM_ERR_ARG);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK_OK(evlm_write_file_atomic(p, text, strlen(text)));
}

static void remove_file(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

static void expect_load(const char *dir, const evlm_chat_msg *m, int n, const char *want) {
    evlm_chat_template *t = NULL;
    evlm_status st = evlm_chat_template_load(dir, &t);
    CHECKF(st == EVLM_OK, "%s: %s", dir, evlm_last_error());
    if (st != EVLM_OK) return;
    evlm_str out = {0};
    CHECK_OK(evlm_chat_template_apply(t, m, n, true, &out));
    CHECKF(out.data && strcmp(out.data, want) == 0, "got [%s] want [%s]", out.data ? out.data : "",
           want);
    evlm_str_free(&out);
    evlm_chat_template_free(t);
}

static void test_load_tmp(void) {
    char dir[] = "/tmp/evlm_chat_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    evlm_chat_msg h = {"user", HI, 1};
    /* nothing: unsupported, naming the files looked for */
    evlm_chat_template *t = (evlm_chat_template *)&t;
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_UNSUPPORTED && t == NULL);
    CHECK(strstr(evlm_last_error(), "no chat template") &&
          strstr(evlm_last_error(), "chat_template.jinja"));
    /* tokenizer_config.json: named templates, old-style {"content"} tokens */
    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": "
               "\"</s>\", \"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
               "{\"name\": \"default\", \"template\": \"{{ bos_token }}{% for m in messages "
               "%}[{{ m.role }}] {{ m.content }}{{ eos_token }}\\n{% endfor %}\"}]}");
    expect_load(dir, &h, 1, "<s>[user] Hi</s>\n");
    write_file(dir, "tokenizer_config.json",
               "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_UNSUPPORTED);
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": 5}");
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_FORMAT);
    write_file(dir, "tokenizer_config.json",
               "{\"eos_token\": \"</s>\", \"chat_template\": \"cfg {{ eos_token }}\"}");
    expect_load(dir, &h, 1, "cfg </s>");
    /* chat_template.jinja wins over the config, its trailing newline is dropped */
    write_file(dir, "chat_template.jinja", "jinja {{ messages[0].content }}\n");
    expect_load(dir, &h, 1, "jinja Hi");
    /* chat_template.json wins over both */
    write_file(dir, "chat_template.json", "{\"chat_template\": \"json {{ eos_token }}\"}");
    expect_load(dir, &h, 1, "json </s>");
    /* errors name the file */
    write_file(dir, "chat_template.json", "{\"chat_template\": \"{{ x | foo }}\"}");
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_UNSUPPORTED);
    CHECKF(strstr(evlm_last_error(), "chat_template.json: unsupported Jinja filter 'foo' at line "
                                     "1 col 8") != NULL,
           "%s", evlm_last_error());
    write_file(dir, "chat_template.json", "{\"template\": \"x\"}");
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_FORMAT);
    write_file(dir, "chat_template.json", "{not json");
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_FORMAT);
    remove_file(dir, "chat_template.json");
    remove_file(dir, "chat_template.jinja");
    remove_file(dir, "tokenizer_config.json");
    rmdir(dir);
}

static void test_shared(void) {
    const char *sh = test_shared_dir();
    if (!sh) return;
    char dir[1024];
    evlm_chat_msg m = {"user", IMG_Q, 2};
    evlm_chat_msg h = {"user", HI, 1};
    const char *want = "<|im_start|>User:<image>What is the plate?<end_of_utterance>\nAssistant:";
    const char *dirs[2] = {"reference/smolvlm-256m-instruct", "models/scenes-vlm"};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/%s", sh, dirs[i]);
        expect_load(dir, &m, 1, want);
        expect_load(dir, &h, 1, "<|im_start|>User: Hi<end_of_utterance>\nAssistant:");
    }
    /* the .jinja file of scenes-vlm alone (a real newline before {% endfor %}) */
    char path[1200], *src = NULL;
    size_t n;
    snprintf(path, sizeof path, "%s/models/scenes-vlm/chat_template.jinja", sh);
    CHECK_OK(evlm_read_file(path, 1 << 20, &src, &n));
    if (src) {
        EXPECT_RENDER(src, &m, 1, true, want);
        free(src);
    }
    /* fixture folders have no template */
    snprintf(dir, sizeof dir, "%s/fixtures/llama-tiny", sh);
    evlm_chat_template *t = NULL;
    CHECK(evlm_chat_template_load(dir, &t) == EVLM_ERR_UNSUPPORTED && t == NULL);
    CHECK(strstr(evlm_last_error(), "no chat template") != NULL);
}

int main(void) {
    test_smolvlm();
    test_smollm2();
    test_qwen2vl();
    test_whitespace();
    test_expressions();
    test_statements();
    test_errors();
    test_bounds();
    test_api_errors();
    test_load_tmp();
    test_shared();
    return test_done();
}
