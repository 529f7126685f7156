/*
 * chat_template.c - finding a model folder's chat template, and rendering it over a
 * conversation with the Jinja subset of jinja.h (see chat_template.h).
 *
 * Variables given to the template, as transformers gives them: messages, add_generation_prompt,
 * bos_token / eos_token (from tokenizer_config.json; a string or an old-style {"content": ...}
 * dict; undefined when absent), tools = none, documents = none, plus the built-in
 * raise_exception(msg) (apply fails with EVLM_ERR_ARG and that message).
 *
 * Message content: a list of {"type": "text", "text": ...} / {"type": "image"} dicts when the
 * template mentions 'type' (quoted or as `.type`), else one string: the text parts joined with
 * "\n", images dropped.
 * Not here: tool calls, generation masks, multiple named templates other than "default".
 */
#include "tokenizer/chat_template.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "tokenizer/jinja.h"

#include <stdlib.h>
#include <string.h>

struct evlm_chat_template {
    evlm_jtpl *tpl;
    char *bos, *eos; /* NULL = undefined */
    bool content_as_list;
};

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

void evlm_chat_template_free(evlm_chat_template *t) {
    if (!t) return;
    evlm__jinja_free(t->tpl);
    free(t->bos);
    free(t->eos);
    free(t);
}

static bool mentions_type(const char *src) {
    return strstr(src, "'type'") || strstr(src, "\"type\"") || strstr(src, ".type");
}

evlm_status evlm_chat_template_new(const char *name, const char *source, const char *bos_token,
                                   const char *eos_token, evlm_chat_template **out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "chat template: out is NULL");
    *out = NULL;
    if (!name) name = "chat template";
    if (!source) return evlm__fail(EVLM_ERR_ARG, "%s: no template source", name);
    evlm_chat_template *t = calloc(1, sizeof *t);
    if (!t) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", name);
    evlm_status st = evlm__jinja_parse(name, source, strlen(source), &t->tpl);
    if (st == EVLM_OK) {
        t->bos = dupstr(bos_token);
        t->eos = dupstr(eos_token);
        if ((bos_token && !t->bos) || (eos_token && !t->eos))
            st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", name);
    }
    if (st != EVLM_OK) {
        evlm_chat_template_free(t);
        return st;
    }
    t->content_as_list = mentions_type(source);
    *out = t;
    return EVLM_OK;
}

/* ---- loading ----------------------------------------------------------------------------- */

/* A special token of tokenizer_config.json: "tok" or {"content": "tok", ...}. */
static evlm_status special_token(const char *file, const cJSON *cfg, const char *key,
                                 const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return EVLM_OK;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return EVLM_OK;
    }
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) {
            *out = c->valuestring;
            return EVLM_OK;
        }
    }
    return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be a string or {\"content\": ...}",
                      file, key);
}

/* "chat_template" of tokenizer_config.json: a string, or [{name, template}] ("default"). */
static evlm_status config_template(const char *file, const cJSON *cfg, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return EVLM_OK;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return EVLM_OK;
    }
    if (!cJSON_IsArray(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: \"chat_template\" must be a string or a list",
                          file);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(n) || !cJSON_IsString(tp))
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: \"chat_template\" entries must be {\"name\", \"template\"}",
                              file);
        if (strcmp(n->valuestring, "default") == 0) {
            *out = tp->valuestring;
            return EVLM_OK;
        }
    }
    return evlm__fail(EVLM_ERR_UNSUPPORTED,
                      "%s: \"chat_template\" lists named templates but none is \"default\"", file);
}

evlm_status evlm_chat_template_load(const char *dir, evlm_chat_template **out) {
    if (!dir) return evlm__fail(EVLM_ERR_ARG, "chat template: folder is NULL");
    evlm_dir d = evlm_dir_folder(dir);
    return evlm_chat_template_load_dir(&d, out);
}

evlm_status evlm_chat_template_load_dir(const evlm_dir *d, evlm_chat_template **out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "chat template: out is NULL");
    *out = NULL;
    const char *dir = d->path;
    char p_json[4096], p_jinja[4096], p_cfg[4096];
    EVLM_TRY(evlm_dir_name(d, "chat_template.json", p_json, sizeof p_json));
    EVLM_TRY(evlm_dir_name(d, "chat_template.jinja", p_jinja, sizeof p_jinja));
    EVLM_TRY(evlm_dir_name(d, "tokenizer_config.json", p_cfg, sizeof p_cfg));

    cJSON *cfg = NULL, *tj = NULL;
    char *jinja_src = NULL;
    const char *bos = NULL, *eos = NULL, *src = NULL, *name = NULL;
    evlm_status st = EVLM_OK;
    if (evlm_dir_has(d, "tokenizer_config.json")) {
        st = evlm_json_load_dir(d, "tokenizer_config.json", &cfg);
        if (st == EVLM_OK) st = special_token(p_cfg, cfg, "bos_token", &bos);
        if (st == EVLM_OK) st = special_token(p_cfg, cfg, "eos_token", &eos);
    }
    if (st == EVLM_OK && evlm_dir_has(d, "chat_template.json")) {
        st = evlm_json_load_dir(d, "chat_template.json", &tj);
        if (st == EVLM_OK) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(tj, "chat_template");
            if (cJSON_IsString(v)) {
                src = v->valuestring;
                name = p_json;
            } else {
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: field \"chat_template\" must be a string",
                                p_json);
            }
        }
    }
    if (st == EVLM_OK && !src && evlm_dir_has(d, "chat_template.jinja")) {
        size_t n;
        st = evlm_dir_read(d, "chat_template.jinja", EVLM_JINJA_MAX_SOURCE, &jinja_src, &n);
        if (st == EVLM_OK && strlen(jinja_src) != n)
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: contains a NUL byte", p_jinja);
        src = jinja_src;
        name = p_jinja;
    }
    if (st == EVLM_OK && !src && cfg) {
        st = config_template(p_cfg, cfg, &src);
        name = p_cfg;
    }
    if (st == EVLM_OK && !src)
        st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                        "%s: no chat template (chat_template.json, chat_template.jinja or "
                        "tokenizer_config.json \"chat_template\")",
                        dir);
    if (st == EVLM_OK) st = evlm_chat_template_new(name, src, bos, eos, out);
    cJSON_Delete(cfg);
    cJSON_Delete(tj);
    free(jinja_src);
    return st;
}

/* ---- rendering --------------------------------------------------------------------------- */

evlm_status evlm_chat_template_apply(const evlm_chat_template *t, const evlm_chat_msg *msgs,
                                     int n_msgs, bool add_generation_prompt, evlm_str *out) {
    if (!t || !out || n_msgs < 0 || (n_msgs > 0 && !msgs))
        return evlm__fail(EVLM_ERR_ARG, "chat template: bad arguments");
    size_t n_parts = 0;
    for (int i = 0; i < n_msgs; i++) {
        if (!msgs[i].role || msgs[i].n_parts < 0 || (msgs[i].n_parts > 0 && !msgs[i].parts))
            return evlm__fail(EVLM_ERR_ARG, "chat template: message %d has no role or bad parts",
                              i);
        for (int j = 0; j < msgs[i].n_parts; j++) {
            const evlm_chat_part *p = &msgs[i].parts[j];
            if (p->type != EVLM_PART_TEXT && p->type != EVLM_PART_IMAGE)
                return evlm__fail(EVLM_ERR_ARG, "chat template: message %d part %d: bad type", i,
                                  j);
            if (p->type == EVLM_PART_TEXT && !p->text)
                return evlm__fail(EVLM_ERR_ARG, "chat template: message %d part %d: NULL text", i,
                                  j);
        }
        n_parts += (size_t)msgs[i].n_parts;
    }

    /* one allocation: message values, message dicts, part values, part dicts, joined strings */
    size_t nm = (size_t)n_msgs;
    evlm_jv *mv = calloc(nm ? nm : 1, sizeof *mv);
    evlm_jkv *mkv = calloc(nm ? nm * 2 : 1, sizeof *mkv);
    evlm_jv *pv = calloc(n_parts ? n_parts : 1, sizeof *pv);
    evlm_jkv *pkv = calloc(n_parts ? n_parts * 2 : 1, sizeof *pkv);
    evlm_str *joined = calloc(nm ? nm : 1, sizeof *joined);
    evlm_status st = EVLM_OK;
    if (!mv || !mkv || !pv || !pkv || !joined)
        st = evlm__fail(EVLM_ERR_NOMEM, "chat template: out of memory");
    size_t pi = 0;
    for (int i = 0; i < n_msgs && st == EVLM_OK; i++) {
        const evlm_chat_msg *m = &msgs[i];
        evlm_jkv *kv = &mkv[2 * (size_t)i];
        kv[0].key = "role";
        kv[0].klen = 4;
        kv[0].val = evlm_jv_str(m->role, strlen(m->role));
        kv[1].key = "content";
        kv[1].klen = 7;
        if (t->content_as_list) {
            size_t first = pi;
            for (int j = 0; j < m->n_parts; j++, pi++) {
                evlm_jkv *q = &pkv[2 * pi];
                q[0].key = "type";
                q[0].klen = 4;
                if (m->parts[j].type == EVLM_PART_IMAGE) {
                    q[0].val = evlm_jv_str("image", 5);
                    pv[pi] = evlm_jv_dict(q, 1);
                } else {
                    q[0].val = evlm_jv_str("text", 4);
                    q[1].key = "text";
                    q[1].klen = 4;
                    q[1].val = evlm_jv_str(m->parts[j].text, strlen(m->parts[j].text));
                    pv[pi] = evlm_jv_dict(q, 2);
                }
            }
            kv[1].val = evlm_jv_list(&pv[first], pi - first);
        } else {
            bool any = false;
            st = evlm_str_append(&joined[i], "", 0);
            for (int j = 0; j < m->n_parts && st == EVLM_OK; j++) {
                if (m->parts[j].type != EVLM_PART_TEXT) continue;
                if (any) st = evlm_str_append(&joined[i], "\n", 1);
                if (st == EVLM_OK) st = evlm_str_appendz(&joined[i], m->parts[j].text);
                any = true;
            }
            kv[1].val = evlm_jv_str(joined[i].data, joined[i].len);
        }
        mv[i] = evlm_jv_dict(kv, 2);
    }
    if (st == EVLM_OK) {
        evlm_jvar vars[6];
        int nv = 0;
        vars[nv].name = "messages";
        vars[nv++].val = evlm_jv_list(mv, nm);
        vars[nv].name = "add_generation_prompt";
        vars[nv++].val = evlm_jv_bool(add_generation_prompt);
        vars[nv].name = "tools";
        vars[nv++].val = evlm_jv_none();
        vars[nv].name = "documents";
        vars[nv++].val = evlm_jv_none();
        if (t->bos) {
            vars[nv].name = "bos_token";
            vars[nv++].val = evlm_jv_str(t->bos, strlen(t->bos));
        }
        if (t->eos) {
            vars[nv].name = "eos_token";
            vars[nv++].val = evlm_jv_str(t->eos, strlen(t->eos));
        }
        st = evlm__jinja_render(t->tpl, vars, nv, out);
    }
    if (joined)
        for (int i = 0; i < n_msgs; i++) evlm_str_free(&joined[i]);
    free(joined);
    free(mv);
    free(mkv);
    free(pv);
    free(pkv);
    return st;
}
