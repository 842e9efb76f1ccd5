// libFuzzer harness: model files (safetensors + architecture) through rr_model_load, and for
// every file that loads and is small, the kernels on it: forward with pattern and hash, the
// Jacobian, a JVP and a VJP to inputs and parameters. Nothing a file says may crash, leak
// or read out of bounds. Seeds: tests/fuzz/make_model_seeds.py (make fuzz).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rr_model *m = NULL;
    if (rr_model_load(data, size, &m, NULL) != RR_OK)
        return 0;
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m), B = 2;
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K, .budget_bytes = 64 << 20};
    // Keep each execution cheap: skip models whose single sample is large.
    if (D <= 4096 && K <= 64 && rr_model_param_array_size(m) <= (1 << 20) &&
        rr_workspace_new(m, &wp, &ws, NULL) == RR_OK) {
        float *x = calloc(B * D, sizeof(float)), *z = calloc(B * K, sizeof(float));
        float *J = calloc(B * K * D, sizeof(float)), *g = calloc(B * K, sizeof(float));
        float *gx = calloc(B * D, sizeof(float));
        float *gp = calloc(rr_model_param_array_size(m) + 1, sizeof(float));
        uint8_t *pat = calloc(B * rr_model_pattern_bytes(m) + 1, 1);
        uint64_t h[2];
        for (size_t i = 0; i < B * D; i++)
            x[i] = (float)((int)(i % 7) - 3) * 0.25f;
        for (size_t i = 0; i < B * K; i++)
            g[i] = 1.0f;
        rr_forward(m, ws, x, B, z, pat, h, NULL);
        rr_jacobian(m, ws, x, B, RR_JACOBIAN_LOG_PROBABILITIES, J, NULL, NULL);
        rr_jvp(m, ws, x, B, x, 1, z, NULL, NULL);
        rr_vjp(m, ws, x, B, g, gx, gp, NULL);
        free(pat);
        free(gp);
        free(gx);
        free(g);
        free(J);
        free(z);
        free(x);
        rr_workspace_free(ws);
    }
    rr_model_release(m);
    return 0;
}
