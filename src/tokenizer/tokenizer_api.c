/*
 * tokenizer_api.c - the public calls on a standalone tokenizer (evlm.h): ids and text in
 * malloc'd arrays over the evlm_ids / evlm_str containers of tokenizer.h.
 * Not here: the tokenizer itself (tokenizer.c, bpe.c, pretok.c, decoder.c); a loaded model's
 * tokenizer goes through evlm_tokenize / evlm_detokenize (model/model.c).
 */
#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>

evlm_status evlm_tokenizer_tokenize(const evlm_tokenizer *tok, const char *text, size_t len,
                                    bool parse_special, bool add_special, int32_t **ids,
                                    size_t *n_ids) {
    evlm_ids v = {0};
    *ids = NULL;
    *n_ids = 0;
    evlm_status st = evlm_tokenizer_encode(tok, text, len, parse_special, add_special, &v);
    if (st == EVLM_OK && !v.data && !(v.data = malloc(sizeof(int32_t)))) /* valid when empty */
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    if (st != EVLM_OK) {
        evlm_ids_free(&v);
        return st;
    }
    *ids = v.data;
    *n_ids = v.len;
    return EVLM_OK;
}

evlm_status evlm_tokenizer_detokenize(const evlm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                      bool skip_special, char **text, size_t *len) {
    evlm_str s = {0};
    *text = NULL;
    *len = 0;
    evlm_status st = evlm_tokenizer_decode(tok, ids, n_ids, skip_special, &s);
    if (st == EVLM_OK && !s.data) st = evlm_str_append(&s, "", 0);
    if (st != EVLM_OK) {
        evlm_str_free(&s);
        return st;
    }
    *text = s.data;
    *len = s.len;
    return EVLM_OK;
}
