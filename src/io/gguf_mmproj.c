/*
 * gguf_mmproj.c - llama.cpp's vision projector file (mmproj): clip names, clip.* keys, the
 * writer and the views back under Hugging Face names (see gguf_mmproj.h).
 *
 * The names and keys follow llama.cpp's gguf-py (constants.py, tensor_mapping.py) and
 * convert_hf_to_gguf.py (conversion/smolvlm.py, qwenvl.py, base.py MmprojModel); what its clip
 * loader requires is listed in tests/data/llamacpp_required.json and checked by test_llamacpp.
 * Not here: Qwen2.5-VL (window attention, SiLU gate), other projectors, audio encoders.
 */
#include "io/gguf_mmproj.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "quant/quants.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------ */

enum { SPLIT_NONE = 0, SPLIT_TIME = 2, SPLIT_QKV = 3 };

typedef struct vname {
    const char *hf;   /* after the vision prefix (top) or "<layers>N." (layer) */
    const char *clip; /* the full clip name (top) or after "v.blk.N." (layer) */
    int split;
} vname;

typedef struct projector {
    evlm_mmproj_kind kind;
    const char *type_name;   /* clip.projector_type */
    const char *prefixes[3]; /* vision tower prefixes, first = default */
    const char *layers;      /* layer list under the prefix */
    const vname *top, *layer;
    size_t n_top, n_layer;
    const char *connector_hf, *connector_clip; /* outside the prefix (Idefics3) */
} projector;

static const vname k_idefics3_top[] = {
    {"embeddings.patch_embedding.weight", "v.patch_embd.weight", 0},
    {"embeddings.patch_embedding.bias", "v.patch_embd.bias", 0},
    {"embeddings.position_embedding.weight", "v.position_embd.weight", 0},
    {"post_layernorm.weight", "v.post_ln.weight", 0},
    {"post_layernorm.bias", "v.post_ln.bias", 0},
};
static const vname k_idefics3_layer[] = {
    {"self_attn.q_proj.weight", "attn_q.weight", 0},
    {"self_attn.q_proj.bias", "attn_q.bias", 0},
    {"self_attn.k_proj.weight", "attn_k.weight", 0},
    {"self_attn.k_proj.bias", "attn_k.bias", 0},
    {"self_attn.v_proj.weight", "attn_v.weight", 0},
    {"self_attn.v_proj.bias", "attn_v.bias", 0},
    {"self_attn.out_proj.weight", "attn_out.weight", 0},
    {"self_attn.out_proj.bias", "attn_out.bias", 0},
    {"layer_norm1.weight", "ln1.weight", 0},
    {"layer_norm1.bias", "ln1.bias", 0},
    {"layer_norm2.weight", "ln2.weight", 0},
    {"layer_norm2.bias", "ln2.bias", 0},
    {"mlp.fc1.weight", "ffn_up.weight", 0},
    {"mlp.fc1.bias", "ffn_up.bias", 0},
    {"mlp.fc2.weight", "ffn_down.weight", 0},
    {"mlp.fc2.bias", "ffn_down.bias", 0},
};
static const vname k_qwen2vl_top[] = {
    {"patch_embed.proj.weight", "v.patch_embd.weight", SPLIT_TIME},
    {"merger.ln_q.weight", "v.post_ln.weight", 0},
    {"merger.ln_q.bias", "v.post_ln.bias", 0},
    {"merger.mlp.0.weight", "mm.0.weight", 0},
    {"merger.mlp.0.bias", "mm.0.bias", 0},
    {"merger.mlp.2.weight", "mm.2.weight", 0},
    {"merger.mlp.2.bias", "mm.2.bias", 0},
};
static const vname k_qwen2vl_layer[] = {
    {"attn.qkv.weight", "attn_q.weight", SPLIT_QKV}, /* attn_q, attn_k, attn_v */
    {"attn.qkv.bias", "attn_q.bias", SPLIT_QKV},
    {"attn.proj.weight", "attn_out.weight", 0},
    {"attn.proj.bias", "attn_out.bias", 0},
    {"norm1.weight", "ln1.weight", 0},
    {"norm1.bias", "ln1.bias", 0},
    {"norm2.weight", "ln2.weight", 0},
    {"norm2.bias", "ln2.bias", 0},
    {"mlp.fc1.weight", "ffn_up.weight", 0},
    {"mlp.fc1.bias", "ffn_up.bias", 0},
    {"mlp.fc2.weight", "ffn_down.weight", 0},
    {"mlp.fc2.bias", "ffn_down.bias", 0},
};
#define N_OF(a) (sizeof a / sizeof *a)

static const projector k_projectors[] = {
    {EVLM_MMPROJ_IDEFICS3,
     "idefics3",
     {"model.vision_model.", NULL, NULL},
     "encoder.layers.",
     k_idefics3_top,
     k_idefics3_layer,
     N_OF(k_idefics3_top),
     N_OF(k_idefics3_layer),
     "model.connector.modality_projection.proj.weight",
     "mm.model.fc.weight"},
    {EVLM_MMPROJ_QWEN2VL,
     "qwen2vl_merger",
     {"visual.", "model.visual.", NULL},
     "blocks.",
     k_qwen2vl_top,
     k_qwen2vl_layer,
     N_OF(k_qwen2vl_top),
     N_OF(k_qwen2vl_layer),
     NULL,
     NULL},
};

static const projector *proj_of(evlm_mmproj_kind k) {
    for (size_t i = 0; i < N_OF(k_projectors); i++)
        if (k_projectors[i].kind == k) return &k_projectors[i];
    return NULL;
}

const char *evlm_mmproj_type_name(evlm_mmproj_kind k) {
    const projector *p = proj_of(k);
    return p ? p->type_name : "none";
}

evlm_mmproj_kind evlm_mmproj_kind_from_name(const char *s, size_t n) {
    for (size_t i = 0; i < N_OF(k_projectors); i++)
        if (strlen(k_projectors[i].type_name) == n && !memcmp(k_projectors[i].type_name, s, n))
            return k_projectors[i].kind;
    return EVLM_MMPROJ_NONE;
}

evlm_mmproj_kind evlm_mmproj_kind_of(const evlm_weights *w, const char **prefix) {
    char name[256];
    for (size_t i = 0; i < N_OF(k_projectors); i++) {
        const projector *p = &k_projectors[i];
        for (int k = 0; k < 3 && p->prefixes[k]; k++) {
            snprintf(name, sizeof name, "%s%s", p->prefixes[k], p->top[0].hf);
            if (!evlm_weights_find(w, name)) continue;
            if (prefix) *prefix = p->prefixes[k];
            return p->kind;
        }
    }
    return EVLM_MMPROJ_NONE;
}

/* "N." at s: N (< 1e6) and the length of "N."; 0 when s does not start so. */
static int layer_num(const char *s, int *layer, size_t *len) {
    size_t i = 0;
    while (isdigit((unsigned char)s[i]) && i < 7) i++;
    if (i == 0 || i > 6 || s[i] != '.' || (s[0] == '0' && i > 1)) return 0;
    *layer = atoi(s);
    *len = i + 1;
    return 1;
}

/* The entry of Hugging Face tensor hf (prefix pre), its layer (-1: top) into *layer. */
static const vname *find_hf(const projector *p, const char *pre, const char *hf, int *layer) {
    size_t pn = strlen(pre), ln = strlen(p->layers), n;
    *layer = -1;
    if (strncmp(hf, pre, pn) != 0) return NULL;
    const char *r = hf + pn;
    for (size_t i = 0; i < p->n_top; i++)
        if (!strcmp(r, p->top[i].hf)) return &p->top[i];
    if (strncmp(r, p->layers, ln) != 0 || !layer_num(r + ln, layer, &n)) return NULL;
    for (size_t i = 0; i < p->n_layer; i++)
        if (!strcmp(r + ln + n, p->layer[i].hf)) return &p->layer[i];
    return NULL;
}

/* The clip name of part `part` of an entry. */
static int clip_name(const vname *v, int layer, int part, char *out, size_t cap) {
    int n;
    if (layer < 0)
        n = snprintf(out, cap, "%s%s", v->clip, v->split == SPLIT_TIME && part ? ".1" : "");
    else
        n = snprintf(out, cap, "v.blk.%d.%s", layer, v->clip);
    if (n < 0 || (size_t)n >= cap) return -1;
    if (v->split == SPLIT_QKV) out[n - strlen(v->clip) + 5] = "qkv"[part]; /* attn_q -> _k / _v */
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------- */

typedef struct mfill {
    const evlm_tensor *src;
    int split, part;
    float *row; /* shared scratch: a whole source row (or 1-D vector) */
} mfill;

/* Rows of a clip tensor from its Hugging Face source: a slice of rows (qkv), a slice of a
 * vector (qkv bias), or one time step of a Conv3d kernel (ne {P*P, T, C, D} -> {P, P, C, D}). */
static evlm_status mfill_rows(void *ctx, const evlm_tensor *t, int64_t row0, int64_t n, void *dst) {
    const mfill *f = ctx;
    const evlm_tensor *s = f->src;
    int64_t ne0 = t->ne[0];
    size_t out_row = evlm_row_bytes(t->type, ne0);
    for (int64_t r = row0; r < row0 + n; r++) {
        char *d = (char *)dst + (size_t)(r - row0) * out_row;
        if (t->n_dims == 1) { /* one row: the whole vector, or its slice */
            evlm_dequantize_row(s->type, s->data, f->row, s->ne[0]);
            evlm_quantize_row(t->type, f->row + (f->split == SPLIT_QKV ? f->part * ne0 : 0), d,
                              ne0);
            continue;
        }
        if (f->split == SPLIT_TIME) { /* float kernels: element offsets are byte offsets */
            int64_t P = ne0, T = s->ne[1], q = r / P, y = r % P;
            size_t el = evlm_type_size(s->type);
            const char *sp = (const char *)s->data + (size_t)(((q * T + f->part) * P + y) * P) * el;
            evlm_dequantize_row(s->type, sp, f->row, P);
            evlm_quantize_row(t->type, f->row, d, P);
            continue;
        }
        int64_t sr = f->split == SPLIT_QKV ? f->part * t->ne[1] + r : r;
        const char *sp = (const char *)s->data + (size_t)sr * s->nb[1];
        if (s->type == t->type) {
            memcpy(d, sp, out_row);
            continue;
        }
        evlm_dequantize_row(s->type, sp, f->row, ne0);
        evlm_quantize_row(t->type, f->row, d, ne0);
    }
    return EVLM_OK;
}

static evlm_status put_arr3(evlm_gguf_writer *gw, const char *file, const cJSON *pp,
                            const char *key, const char *gkey) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(pp, key);
    float v[3];
    if (cJSON_GetArraySize(a) != 3)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: \"%s\" is not an array of 3 numbers", file, key);
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: \"%s\" is not an array of 3 numbers", file,
                              key);
        v[i] = (float)e->valuedouble;
    }
    return evlm_gguf_writer_set_arr_f32(gw, gkey, v, 3);
}

static int64_t jint(const cJSON *o, const char *key, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

/* The clip.* keys (MmprojModel.set_gguf_parameters and the projector's own). */
static evlm_status put_meta(evlm_gguf_writer *gw, const char *dir, const projector *p,
                            const evlm_decoder_config *cfg) {
    char path[4096], pfile[4096];
    cJSON *root = NULL, *proot = NULL;
    const cJSON *pp = NULL;
    EVLM_TRY(evlm_path_join(path, sizeof path, dir, "config.json"));
    EVLM_TRY(evlm_json_load(path, &root));
    evlm_dir d = evlm_dir_folder(dir);
    evlm_status st = evlm_json_image_processor(&d, &proot, &pp, pfile, sizeof pfile);
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (st == EVLM_OK && !cJSON_IsObject(vc))
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: no \"vision_config\" object", path);
    bool qwen = p->kind == EVLM_MMPROJ_QWEN2VL;
    int64_t hidden = qwen ? jint(vc, "embed_dim", 0) : jint(vc, "hidden_size", 0);
    int64_t ff = qwen ? jint(vc, "hidden_size", 0) : jint(vc, "intermediate_size", 0);
    int64_t layers = qwen ? jint(vc, "depth", 0) : jint(vc, "num_hidden_layers", 0);
    int64_t heads = qwen ? jint(vc, "num_heads", 0) : jint(vc, "num_attention_heads", 0);
    int64_t image = jint(vc, "image_size", qwen ? 560 : 0), patch = jint(vc, "patch_size", 0);
    if (st == EVLM_OK && (hidden <= 0 || ff <= 0 || layers <= 0 || heads <= 0 || image <= 0 ||
                          patch <= 0 || hidden > UINT32_MAX || ff > UINT32_MAX || layers > 4096 ||
                          heads > 4096 || image > 1 << 20 || patch > 1 << 20))
        st = evlm__fail(EVLM_ERR_FORMAT,
                        "%s: vision_config lacks a valid size (hidden, intermediate, layers, "
                        "heads, image_size, patch_size)",
                        path);
#define TRY(x)                                                                                     \
    if (st == EVLM_OK) st = (x)
    TRY(evlm_gguf_writer_set_str(gw, "general.architecture", "clip"));
    TRY(evlm_gguf_writer_set_str(gw, "general.type", "mmproj"));
    if (cfg->architecture[0]) TRY(evlm_gguf_writer_set_str(gw, "general.name", cfg->architecture));
    TRY(evlm_gguf_writer_set_bool(gw, "clip.has_vision_encoder", true));
    TRY(evlm_gguf_writer_set_str(gw, "clip.projector_type", p->type_name));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.projection_dim", (uint32_t)cfg->hidden_size));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.image_size", (uint32_t)image));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.patch_size", (uint32_t)patch));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.embedding_length", (uint32_t)hidden));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.feed_forward_length", (uint32_t)ff));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.block_count", (uint32_t)layers));
    TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.attention.head_count", (uint32_t)heads));
    TRY(put_arr3(gw, pfile, pp, "image_mean", "clip.vision.image_mean"));
    TRY(put_arr3(gw, pfile, pp, "image_std", "clip.vision.image_std"));
    if (qwen) {
        /* the processor's pixel limits: llama.cpp's qwen2vl projector keeps its own (8 to 4096
         * tokens) but reads these keys for others; evlm reads them back */
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(pp, "size");
        int64_t lo = jint(size, "shortest_edge", jint(pp, "min_pixels", 56 * 56));
        int64_t hi = jint(size, "longest_edge", jint(pp, "max_pixels", 28 * 28 * 1280));
        if (st == EVLM_OK && (lo <= 0 || hi < lo || hi > UINT32_MAX))
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: min / max pixels invalid", pfile);
        TRY(evlm_gguf_writer_set_f32(gw, "clip.vision.attention.layer_norm_epsilon", 1e-6f));
        TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.image_min_pixels", (uint32_t)lo));
        TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.image_max_pixels", (uint32_t)hi));
    } else {
        const cJSON *eps = cJSON_GetObjectItemCaseSensitive(vc, "layer_norm_eps");
        float e = cJSON_IsNumber(eps) ? (float)eps->valuedouble : 1e-5f;
        int64_t sf = jint(root, "scale_factor", 2);
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(pp, "size");
        int64_t edge = jint(size, "longest_edge", image);
        if (st == EVLM_OK && (sf <= 0 || sf > 64 || edge <= 0 || edge > 1 << 20))
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: scale_factor or size.longest_edge invalid", path);
        TRY(evlm_gguf_writer_set_f32(gw, "clip.vision.attention.layer_norm_epsilon", e));
        TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.projector.scale_factor", (uint32_t)sf));
        TRY(evlm_gguf_writer_set_bool(gw, "clip.use_gelu", true));
        TRY(evlm_gguf_writer_set_u32(gw, "clip.vision.preproc_image_size", (uint32_t)edge));
    }
#undef TRY
    cJSON_Delete(root);
    cJSON_Delete(proot);
    return st;
}

/* The type a vision tensor is stored in (convert_hf_to_gguf.py's rules, see the header). */
static evlm_type clip_type(const projector *p, const vname *v, const evlm_tensor *t,
                           evlm_type want) {
    bool embd = !strncmp(v->clip, "v.patch_embd", 12) || !strncmp(v->clip, "v.position_embd", 15);
    if (embd && p->kind == EVLM_MMPROJ_IDEFICS3) return EVLM_TYPE_F32;
    if (v->split == SPLIT_TIME) /* ggml's CPU convolution (im2col) takes F16 / F32 kernels:
                                   an F16 source stays F16, others widen exactly to F32 */
        return t->type == EVLM_TYPE_F16 && want != EVLM_TYPE_F32 ? EVLM_TYPE_F16 : EVLM_TYPE_F32;
    return evlm_gguf_store_type(t->n_dims, want);
}

evlm_status evlm_mmproj_write(const char *hf_dir, const evlm_weights *w,
                              const evlm_decoder_config *cfg, const char *path,
                              evlm_gguf_type_fn type_for, void *ctx, evlm_gguf_progress_fn progress,
                              void *progress_ctx) {
    const char *pre = NULL;
    const projector *p = proj_of(evlm_mmproj_kind_of(w, &pre));
    if (!p)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: no vision tower llama.cpp's mmproj knows (idefics3, qwen2vl)",
                          hf_dir);
    size_t n = evlm_weights_count(w);
    mfill *fills = calloc(3 * n + 1, sizeof *fills);
    int64_t max_row = 1;
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        if (t->ne[0] > max_row) max_row = t->ne[0];
    }
    float *scratch = malloc((size_t)max_row * sizeof *scratch);
    evlm_gguf_writer *gw = NULL;
    evlm_status st = fills && scratch ? evlm_gguf_writer_new(&gw)
                                      : evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", hf_dir);
    if (st == EVLM_OK) st = put_meta(gw, hf_dir, p, cfg);
    size_t nf = 0;
    char gname[256];
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        int layer = -1;
        const vname *v = find_hf(p, pre, t->name, &layer);
        vname conn = {t->name, p->connector_clip, 0};
        if (!v && p->connector_hf && !strcmp(t->name, p->connector_hf)) v = &conn;
        if (!v) {
            if (!strncmp(t->name, pre, strlen(pre)))
                st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                                "%s: vision tensor '%s' has no name in llama.cpp's %s projector",
                                hf_dir, t->name, p->type_name);
            continue; /* the language model's */
        }
        const evlm_tensor *src = t;
        evlm_type want = type_for ? type_for(ctx, t->name, t, &src) : t->type;
        if (want == EVLM_TYPE_COUNT) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: vision tensor '%s' left out: mmproj needs it",
                            hf_dir, t->name);
            break;
        }
        if (!src || src->n_dims != t->n_dims || memcmp(src->ne, t->ne, sizeof t->ne)) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s': replacement data of another shape",
                            hf_dir, t->name);
            break;
        }
        evlm_type to = clip_type(p, v, t, want);
        int parts = v->split ? v->split : 1;
        for (int k = 0; k < parts && st == EVLM_OK; k++) {
            int64_t ne[EVLM_MAX_DIMS];
            memcpy(ne, t->ne, sizeof ne);
            int n_dims = t->n_dims ? t->n_dims : 1;
            if (v->split == SPLIT_QKV) {
                int64_t *rows = &ne[n_dims == 1 ? 0 : 1];
                if (*rows % 3) {
                    st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': rows not a multiple of 3",
                                    hf_dir, t->name);
                    break;
                }
                *rows /= 3;
            } else if (v->split == SPLIT_TIME) { /* {P*P, T, C, D} -> {P, P, C, D} */
                int64_t P = 1;
                while (P * P < t->ne[0]) P++;
                if (n_dims != 4 || P * P != t->ne[0] || t->ne[1] != 2 ||
                    !evlm_type_is_file_float(src->type)) {
                    st = evlm__fail(EVLM_ERR_FORMAT,
                                    "%s: tensor '%s': not a float Conv3d kernel of 2 time steps",
                                    hf_dir, t->name);
                    break;
                }
                ne[0] = ne[1] = P;
            }
            if (evlm_gguf_ggml_type(to) < 0 || ne[0] % evlm_type_block(to)) {
                st = evlm__fail(EVLM_ERR_UNSUPPORTED,
                                "%s: tensor '%s': %lld columns cannot be stored as %s", hf_dir,
                                t->name, (long long)ne[0], evlm_type_name(to));
                break;
            }
            if (clip_name(v, layer, k, gname, sizeof gname) < 0) {
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': name too long", hf_dir, t->name);
                break;
            }
            fills[nf] = (mfill){.src = src, .split = v->split, .part = k, .row = scratch};
            if (!v->split && src->type == to)
                st = evlm_gguf_writer_add_tensor(gw, gname, to, n_dims, ne, src->data);
            else
                st = evlm_gguf_writer_add_tensor_fill(gw, gname, to, n_dims, ne, mfill_rows,
                                                      &fills[nf]);
            nf++;
        }
    }
    if (st == EVLM_OK) st = evlm_gguf_writer_write(gw, path, progress, progress_ctx);
    evlm_gguf_writer_free(gw);
    free(fills);
    free(scratch);
    return st;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* The entry of a clip name, its layer and part. */
static const vname *find_clip(const projector *p, const char *g, int *layer, int *part) {
    size_t n;
    *layer = -1;
    *part = 0;
    for (size_t i = 0; i < p->n_top; i++) {
        size_t cl = strlen(p->top[i].clip);
        if (strncmp(g, p->top[i].clip, cl) != 0) continue;
        if (!g[cl]) return &p->top[i];
        if (p->top[i].split == SPLIT_TIME && !strcmp(g + cl, ".1")) {
            *part = 1;
            return &p->top[i];
        }
    }
    if (strncmp(g, "v.blk.", 6) != 0 || !layer_num(g + 6, layer, &n)) return NULL;
    const char *s = g + 6 + n;
    for (size_t i = 0; i < p->n_layer; i++) {
        const vname *v = &p->layer[i];
        if (!strcmp(s, v->clip)) return v;
        if (v->split == SPLIT_QKV && strlen(s) == strlen(v->clip) && !strncmp(s, v->clip, 5) &&
            (s[5] == 'k' || s[5] == 'v') && !strcmp(s + 6, v->clip + 6)) {
            *part = s[5] == 'k' ? 1 : 2;
            return v;
        }
    }
    return NULL;
}

static bool same_shape(const evlm_tensor *a, const evlm_tensor *b) {
    return a->type == b->type && a->n_dims == b->n_dims && !memcmp(a->ne, b->ne, sizeof a->ne);
}

/* Joins the parts of a split tensor into one Hugging Face tensor in a new buffer. */
static evlm_status join(const evlm_gguf *mm, const vname *v, const evlm_tensor *parts[3],
                        evlm_tensor *out, void **buf) {
    const evlm_tensor *a = parts[0];
    int np = v->split;
    for (int k = 1; k < np; k++)
        if (!parts[k] || !same_shape(parts[k], a))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': its parts differ in type or shape",
                              evlm_gguf_path(mm), a->name);
    size_t nb = evlm_tensor_nbytes(a);
    char *d = malloc(nb * (size_t)np);
    if (!d) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", evlm_gguf_path(mm));
    *buf = d;
    *out = *a;
    if (v->split == SPLIT_QKV) { /* rows (or elements) concatenated */
        for (int k = 0; k < np; k++) memcpy(d + nb * (size_t)k, parts[k]->data, nb);
        out->ne[a->n_dims == 1 ? 0 : 1] *= 3;
    } else { /* {P, P, C, D} x 2 -> {P*P, 2, C, D} */
        if (a->n_dims != 4 || a->ne[0] != a->ne[1] || !evlm_type_is_file_float(a->type))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': not a float Conv2d kernel",
                              evlm_gguf_path(mm), a->name);
        size_t chunk = (size_t)(a->ne[0] * a->ne[1]) * evlm_type_size(a->type);
        int64_t nq = a->ne[2] * a->ne[3];
        for (int64_t q = 0; q < nq; q++)
            for (int k = 0; k < 2; k++)
                memcpy(d + ((size_t)q * 2 + (size_t)k) * chunk,
                       (const char *)parts[k]->data + (size_t)q * chunk, chunk);
        out->ne[0] = a->ne[0] * a->ne[1];
        out->ne[1] = 2;
    }
    out->data = d;
    evlm_tensor_set_contiguous(out);
    return EVLM_OK;
}

evlm_status evlm_mmproj_views(const evlm_gguf *mm, const char *prefix, evlm_tensor *views,
                              size_t *n, size_t cap, void **bufs, size_t *n_bufs) {
    const char *s;
    size_t len;
    EVLM_TRY(evlm_gguf_get_str(mm, "clip.projector_type", &s, &len));
    const projector *p = proj_of(evlm_mmproj_kind_from_name(s, len));
    if (!p)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: projector type '%.*s' is not supported (idefics3, qwen2vl_merger)",
                          evlm_gguf_path(mm), (int)(len > 64 ? 64 : len), s);
    if (!prefix) prefix = p->prefixes[0];
    size_t nt = evlm_gguf_tensor_count(mm);
    char hf[512];
    for (size_t i = 0; i < nt; i++) {
        const evlm_tensor *t = evlm_gguf_tensor_at(mm, i);
        int layer, part;
        const vname *v = find_clip(p, t->name, &layer, &part);
        bool conn = !v && p->connector_clip && !strcmp(t->name, p->connector_clip);
        if (!v && !conn)
            return evlm__fail(EVLM_ERR_UNSUPPORTED,
                              "%s: tensor '%s' is not one of llama.cpp's %s projector that evlm "
                              "reads",
                              evlm_gguf_path(mm), t->name, p->type_name);
        if (v && v->split && part) continue; /* joined with part 0 */
        if (*n >= cap)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: too many tensors", evlm_gguf_path(mm));
        int k;
        if (conn)
            k = snprintf(hf, sizeof hf, "%s", p->connector_hf);
        else if (layer < 0)
            k = snprintf(hf, sizeof hf, "%s%s", prefix, v->hf);
        else
            k = snprintf(hf, sizeof hf, "%s%s%d.%s", prefix, p->layers, layer, v->hf);
        if (k < 0 || (size_t)k >= sizeof hf)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': name too long", evlm_gguf_path(mm),
                              t->name);
        evlm_tensor out = *t;
        if (v && v->split) {
            const evlm_tensor *parts[3] = {t, NULL, NULL};
            char pn[256];
            for (int q = 1; q < v->split; q++) {
                if (clip_name(v, layer, q, pn, sizeof pn) < 0 ||
                    !(parts[q] = evlm_gguf_tensor_find(mm, pn)))
                    return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' has no partner '%s'",
                                      evlm_gguf_path(mm), t->name, pn);
            }
            EVLM_TRY(join(mm, v, parts, &out, &bufs[*n_bufs]));
            (*n_bufs)++;
        }
        out.name = strdup(hf);
        if (!out.name) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", evlm_gguf_path(mm));
        views[(*n)++] = out;
    }
    return EVLM_OK;
}
