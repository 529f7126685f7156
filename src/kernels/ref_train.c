/*
 * ref_train.c - the scalar ground truth of the training kernels (kernels.h, "training"): sgemm
 * in its transposed layouts, the RMSNorm / LayerNorm input-gradient rows, SwiGLU's and GELU's
 * backward, exp_sum (softmax rows). Straight loops, each sum in index order; the SIMD tables
 * (x86_*_train.c, arm_train.c) are compared against these in test_train_ops. Not here:
 * threading (train/ops.c).
 */
#include "kernels/ref_impl.h"

#include <math.h>

void evlm__ref_sgemm(float *c, size_t ldc, const float *a, size_t lda, bool a_t, const float *b,
                     size_t ldb, bool b_t, int m, int n, int k, bool acc, float *scratch) {
    (void)scratch;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) {
                float av = a_t ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float bv = b_t ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += av * bv;
            }
            float *ci = c + (size_t)i * ldc + j;
            *ci = acc ? *ci + s : s;
        }
}

void evlm__ref_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w, float rstd,
                           int n) {
    float dot = 0.0f;
    for (int i = 0; i < n; i++) dot += dy[i] * w[i] * x[i];
    float c = rstd * rstd * dot / (float)n;
    for (int i = 0; i < n; i++) dx[i] += rstd * (dy[i] * w[i] - x[i] * c);
}

void evlm__ref_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w, float mean,
                             float rstd, int n) {
    float sg = 0.0f, sgx = 0.0f;
    for (int i = 0; i < n; i++) {
        float g = dy[i] * w[i];
        sg += g;
        sgx += g * (x[i] - mean) * rstd;
    }
    sg /= (float)n;
    sgx /= (float)n;
    for (int i = 0; i < n; i++) dx[i] += rstd * (dy[i] * w[i] - sg - (x[i] - mean) * rstd * sgx);
}

void evlm__ref_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                          int n) {
    for (int i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i])), d = dh[i];
        if (du) du[i] = d * g[i] * s;
        if (dg) dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

void evlm__ref_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int n) {
    const float k = 0.7978845608028654f, c = 0.044715f; /* sqrt(2 / pi) */
    for (int i = 0; i < n; i++) {
        float v = x[i];
        float t = tanhf(k * (v + c * v * v * v));
        dx[i] =
            dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * k * (1.0f + 3.0f * c * v * v));
    }
}

float evlm__ref_exp_sum(float *x, int n, float mx) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        float d = x[i] - mx;
        x[i] = d < -87.3f ? 0.0f : expf(d);
        sum += x[i];
    }
    return sum;
}
