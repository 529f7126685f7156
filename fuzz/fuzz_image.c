/*
 * fuzz_image.c - libFuzzer harness for the image decoders, the resampler and the Idefics3
 * processor: decodes the input (PNG or JPEG, limit 4096x4096), then resizes it to a few sizes
 * with the filter picked by the input's length, runs a small Idefics3 preprocessing, and reads
 * every output byte so that a short write is caught by MSan / a wrong size by ASan.
 * Seed corpus: fuzz/corpus/fuzz_image/ (small valid, truncated and hostile files).
 */
#include "vision/idefics3_proc.h"
#include "vision/image.h"
#include "vision/resample.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    evlm_image_limits lim = {(int64_t)4096 * 4096};
    evlm_image im;
    if (evlm_image_decode("fuzz.img", data, size, &lim, &im) != EVLM_OK) {
        if (im.rgb) __builtin_trap(); /* failures leave the output empty */
        return 0;
    }
    if (im.w <= 0 || im.h <= 0 || (int64_t)im.w * im.h > lim.max_pixels) __builtin_trap();
    volatile uint8_t sink = 0;
    const int sizes[4][2] = {{1, 1}, {7, 5}, {33, 64}, {im.w + 3, im.h > 1 ? im.h / 2 : 1}};
    evlm_resample filter = (evlm_resample)(size % 6);
    for (int i = 0; i < 4; i++) {
        evlm_image out;
        if (evlm_resize_rgb8(&im, sizes[i][0], sizes[i][1], filter, &out) != EVLM_OK) continue;
        if (out.w != sizes[i][0] || out.h != sizes[i][1]) __builtin_trap();
        for (size_t k = 0; k < (size_t)out.w * out.h * 3; k++) sink ^= out.rgb[k];
        evlm_image_free(&out);
    }
    evlm_idefics3_proc p = evlm_idefics3_proc_default();
    p.longest_edge = 64;
    p.max_image_size = 32;
    p.resample = filter;
    evlm_idefics3_pixels px;
    if (evlm_idefics3_preprocess(&p, &im, &px) == EVLM_OK) {
        if (px.n_tiles != (px.n_rows ? px.n_rows * px.n_cols + 1 : 1)) __builtin_trap();
        size_t n = (size_t)px.n_tiles * 3 * 32 * 32;
        float acc = 0;
        for (size_t k = 0; k < n; k++) acc += px.pixel_values[k];
        sink ^= (uint8_t)(acc != acc);
        evlm_idefics3_pixels_free(&px);
    }
    (void)sink;
    evlm_image_free(&im);
    return 0;
}
