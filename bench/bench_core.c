// Timing harness for the core kernels, driven by bench/bench_core.py (which times PyTorch on
// the same machine and prints the ratios). Not a test: nothing here asserts.
//
//   bench-core sgemm N THREADS REPS             OpenBLAS's own threaded sgemm at N^3
//   bench-core rrgemm N THREADS REPS            relureg's deterministic product at N^3
//   bench-core MODEL.safetensors B THREADS REPS forward, jacobian and backward-to-parameters
// Prints one JSON object per line: {"op": ..., "ms_min": ..., "ms_median": ...}.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "relureg.h"
#include "core/blas_impl.h" // rr__sgemm, rr__sgemm_native

static void report(const char *op, double *t, int reps)
{
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    printf("{\"op\": \"%s\", \"ms_min\": %.4f, \"ms_median\": %.4f}\n", op, t[0], t[reps / 2]);
    fflush(stdout);
}

static int bench_sgemm(size_t N, int reps, bool ours)
{
    float *A = rr_aligned_alloc(N * N * sizeof(float)), *Bm = rr_aligned_alloc(N * N * 4),
          *C = rr_aligned_alloc(N * N * 4);
    for (size_t i = 0; i < N * N; i++)
        A[i] = Bm[i] = (float)(i % 7) * 0.1f;
    double *t = malloc((size_t)reps * sizeof(double));
    float *split = rr_aligned_alloc(RR__GEMM_SPLIT_FLOATS * sizeof(float));
    for (int r = -1; r < reps; r++) {
        double t0 = now_ms();
        if (ours)
            rr__sgemm(false, false, N, N, N, 1.0f, A, N, Bm, N, 0.0f, C, N, split);
        else
            rr__sgemm_native(N, N, N, A, Bm, C);
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    report(ours ? "rrgemm" : "sgemm", t, reps);
    rr_aligned_free(split);
    free(t);
    rr_aligned_free(A);
    rr_aligned_free(Bm);
    rr_aligned_free(C);
    return 0;
}

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    if (argc != 5) {
        fprintf(stderr, "usage: %s sgemm|rrgemm N THREADS REPS | MODEL B THREADS REPS\n", argv[0]);
        return 2;
    }
    rr_set_num_threads(atoi(argv[3]));
    int reps = atoi(argv[4]);
    if (strcmp(argv[1], "sgemm") == 0 || strcmp(argv[1], "rrgemm") == 0)
        return bench_sgemm((size_t)atol(argv[2]), reps, strcmp(argv[1], "rrgemm") == 0);

    rr_error err = {0};
    rr_model *m = NULL;
    if (rr_model_load_file(argv[1], &m, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const size_t B = (size_t)atol(argv[2]), D = rr_model_input_size(m);
    const size_t K = (size_t)rr_model_num_classes(m);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    if (rr_workspace_new(m, &wp, &ws, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *x = malloc(B * D * sizeof(float)), *z = malloc(B * K * sizeof(float));
    float *J = malloc(B * K * D * sizeof(float)), *g = malloc(B * K * sizeof(float));
    float *gp = malloc(rr_model_param_array_size(m) * sizeof(float));
    int64_t *y = malloc(B * sizeof(int64_t));
    for (size_t i = 0; i < B * D; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t b = 0; b < B; b++)
        y[b] = (int64_t)(b % K);
    double *t = malloc((size_t)reps * sizeof(double));

    // forward: logits only
    for (int r = -2; r < reps; r++) {
        double t0 = now_ms();
        rr_forward(m, ws, x, B, z, NULL, NULL, NULL);
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    report("forward", t, reps);

    // exact Jacobian of the logits [B, K, D]
    for (int r = -2; r < reps; r++) {
        double t0 = now_ms();
        rr_jacobian(m, ws, x, B, RR_JACOBIAN_LOGITS, J, NULL, NULL);
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    report("jacobian", t, reps);

    // forward + mean cross-entropy + backward to every parameter
    for (int r = -2; r < reps; r++) {
        double t0 = now_ms();
        rr_cross_entropy_backward(m, ws, x, y, B, NULL, NULL, NULL, gp, NULL);
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    report("backward", t, reps);

    free(t);
    free(y);
    free(gp);
    free(g);
    free(J);
    free(z);
    free(x);
    rr_workspace_free(ws);
    rr_model_release(m);
    return 0;
}
