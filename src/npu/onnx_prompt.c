/*
 * onnx_prompt.c - what a runner of the exported graphs needs from an evlm prompt beyond its ids
 * (include/evlm_npu.h): the M-RoPE positions of a Qwen2-VL image prompt (the decoder graphs'
 * position_ids [3, 1, n]) and the token id whose positions take image features.
 *
 * Not here: computing the positions (the family's prompt hook, vision/qwen2vl_proc.c's
 * get_rope_index), the features (evlm_onnx_prompt_features).
 */
#include "evlm_npu.h"

#include "model/family.h"

const int32_t *evlm_onnx_prompt_positions(const evlm_prompt *p, int32_t *next) {
    if (next) *next = p ? (int32_t)p->ids.len + (p->mrope ? p->mdelta : 0) : 0;
    return p ? p->mrope : NULL;
}

int32_t evlm_onnx_prompt_image_token(const evlm_prompt *p) {
    return p && p->n_feat_rows > 0 ? p->image_token : -1;
}
