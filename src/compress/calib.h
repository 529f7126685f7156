/*
 * calib.h - calibration statistics of linear-layer inputs, fed by the decoder's observer.
 *
 * For every (layer, group) the forward pass reports (see evlm_decoder_observer in model/decoder.h:
 * "attn_qkv", "attn_o", "ffn_gate_up", "ffn_down", "lm_head"), a collector keeps
 *   - xtx: the running sum of x x^T over all rows (k x k doubles, full square): GPTQ's Hessian
 *     is H = 2/N xtx (gptq.h takes xtx and N);
 *   - abs_sum: per input channel, the sum of |x_j| (mean |x_j| = abs_sum / n_rows): AWQ's scales;
 *   - a reservoir of up to reservoir_rows input rows (Algorithm R, deterministic seed), on which
 *     AWQ measures the output error of each candidate scaling.
 * Memory is bounded: a collector refuses (EVLM_ERR_NOMEM) a new (layer, group) whose statistics
 * would take it past max_bytes, and evlm_calib_bytes() reports what it holds. Collecting only one
 * layer at a time (evlm_calib_select_layer) supports sequential layer-by-layer quantization,
 * where layer l+1's inputs are gathered after layers 0..l are quantized.
 *
 * The observer returns nothing, so a collector keeps its first error: check evlm_calib_status()
 * after the calibration forward passes. Not here: running the model (the caller does), the
 * quantizers (gptq.h, awq.h).
 */
#ifndef EVLM_COMPRESS_CALIB_H
#define EVLM_COMPRESS_CALIB_H

#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVLM_CALIB_ALL_LAYERS (-2) /* layer -1 is the output head */

typedef struct evlm_calib_params {
    int layer;          /* EVLM_CALIB_ALL_LAYERS, or the one layer to collect (-1: lm_head) */
    bool hessian;       /* collect xtx (k*k doubles per group) */
    bool act_stats;     /* collect abs_sum and the row reservoir */
    bool lm_head;       /* with EVLM_CALIB_ALL_LAYERS: include the output head too */
    int reservoir_rows; /* rows kept per group (default 512); 0: none */
    size_t max_bytes;   /* bound on all statistics (default 4 GiB); 0: unbounded */
    uint64_t seed;      /* reservoir sampling */
} evlm_calib_params;

typedef struct evlm_calib_stat {
    int layer; /* -1: lm_head */
    char group[16];
    int k;          /* input width */
    int64_t n_rows; /* rows observed */
    double *xtx;    /* [k][k] sum of x x^T (symmetric, both halves filled); NULL if not collected */
    double *abs_sum; /* [k] sum of |x_j|; NULL if not collected */
    float *rows;     /* [n_kept][k] the reservoir */
    int n_kept, cap;
    uint64_t rng;
} evlm_calib_stat;

typedef struct evlm_calib evlm_calib;

evlm_calib_params evlm_calib_default_params(void);
evlm_status evlm_calib_new(const evlm_calib_params *p, evlm_calib **out);
void evlm_calib_free(evlm_calib *c);

/* The observer: pass as evlm_decoder_state.observe with observe_user = the collector. */
void evlm_calib_observe(void *user, int layer, const char *group, const float *x, int m, int k);

/* First error met while observing (EVLM_OK if none); the message is in evlm_last_error() of the
 * thread that observed, and evlm_calib_error() keeps a copy. */
evlm_status evlm_calib_status(const evlm_calib *c);
const char *evlm_calib_error(const evlm_calib *c);

/* Drops all statistics and collects only `layer` from now on (or EVLM_CALIB_ALL_LAYERS). */
void evlm_calib_select_layer(evlm_calib *c, int layer);

/* Statistics of (layer, group), or NULL when none were collected. */
const evlm_calib_stat *evlm_calib_find(const evlm_calib *c, int layer, const char *group);
int evlm_calib_count(const evlm_calib *c);

/* Bytes held by all statistics, and what one group of input width k would take. */
size_t evlm_calib_bytes(const evlm_calib *c);
size_t evlm_calib_stat_bytes(const evlm_calib_params *p, int k);

/* mean |x_j| of a statistic into out[k] (zeros when no rows). */
void evlm_calib_mean_abs(const evlm_calib_stat *st, float *out);

#endif
