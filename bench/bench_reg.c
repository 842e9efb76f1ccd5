// Timing harness for the regularizers, driven by bench/bench_reg.py (which times torch double
// backprop on the same machine). Not a test.
//   bench-reg MODEL.safetensors B THREADS REPS
// Prints two JSON objects per regularizer, {"op": name, "ms_min": ..., "ms_median": ...}: value
// + per-sample values + grad_inputs, and (name+params) the same plus grad_parameters.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "relureg.h"

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL B THREADS REPS\n", argv[0]);
        return 2;
    }
    rr_set_num_threads(atoi(argv[3]));
    const int reps = atoi(argv[4]);
    rr_error err = {0};
    rr_model *m = NULL;
    if (rr_model_load_file(argv[1], &m, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const size_t B = (size_t)atol(argv[2]), D = rr_model_input_size(m);
    const size_t K = (size_t)rr_model_num_classes(m), NP = rr_model_param_array_size(m);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    if (rr_workspace_new(m, &wp, &ws, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *x = malloc(B * D * sizeof(float));
    int64_t *y = malloc(B * sizeof(int64_t));
    for (size_t i = 0; i < B * D; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t b = 0; b < B; b++)
        y[b] = (int64_t)(b % K);
    float *ps = malloc(B * sizeof(float)), *gx = malloc(B * D * sizeof(float));
    float *gp = malloc(NP * sizeof(float));
    const struct {
        const char *name;
        rr_reg_spec spec;
    } regs[] = {
        {"cross_entropy", {.name = RR_REG_CROSS_ENTROPY}},
        {"input_gradient", {.name = RR_REG_INPUT_GRADIENT}},
        {"jacobian", {.name = RR_REG_JACOBIAN}},
        {"jacobian_projection", {.name = RR_REG_JACOBIAN, .estimator = RR_REG_PROJECTION}},
        {"cross_lipschitz", {.name = RR_REG_CROSS_LIPSCHITZ}},
        {"curvature_fd", {.name = RR_REG_CURVATURE}},
        {"curvature_hessian", {.name = RR_REG_CURVATURE, .method = RR_REG_HESSIAN}},
        {"curvature_trace", {.name = RR_REG_CURVATURE, .method = RR_REG_TRACE}},
    };
    double *t = malloc((size_t)reps * sizeof(double));
    for (size_t i = 0; i < sizeof regs / sizeof regs[0]; i++)
        for (int with_params = 0; with_params < 2; with_params++) {
            rr_reg_result res = {
                .per_sample = ps, .grad_inputs = gx, .grad_parameters = with_params ? gp : NULL};
            rr_reg_params p = {.regs = &regs[i].spec, .nregs = 1};
            for (int r = -2; r < reps; r++) {
                double t0 = now_ms();
                if (rr_reg_compute(m, ws, x, y, B, &p, &res, NULL, &err) != RR_OK) {
                    fprintf(stderr, "%s: %s\n", regs[i].name, err.msg);
                    return 1;
                }
                if (r >= 0)
                    t[r] = now_ms() - t0;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            printf("{\"op\": \"%s%s\", \"ms_min\": %.4f, \"ms_median\": %.4f}\n", regs[i].name,
                   with_params ? "+params" : "", t[0], t[reps / 2]);
            fflush(stdout);
        }
    free(t);
    free(gp);
    free(gx);
    free(ps);
    free(y);
    free(x);
    rr_workspace_free(ws);
    rr_model_release(m);
    return 0;
}
