// Timing harness for the attacks and certificates, driven by bench/bench_attacks.py (which
// times equivalent torch loops on the same machine). Not a test.
//   bench-attacks MODEL INPUTS.f32 LABELS.i64 B THREADS REPS
// Prints {"op", "ms_min", "ms_median", "iterations_mean", "success"} per op: pgd40 (linf,
// eps 0.1, step 0.01, random start), deepfool (l2, defaults), certify_l2, certify_linf.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "relureg.h"

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL INPUTS.f32 LABELS.i64 B THREADS REPS\n", argv[0]);
        return 2;
    }
    rr_set_num_threads(atoi(argv[5]));
    const int reps = atoi(argv[6]);
    rr_error err = {0};
    rr_model *m = NULL;
    if (rr_model_load_file(argv[1], &m, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const size_t B = (size_t)atol(argv[4]), D = rr_model_input_size(m);
    const size_t K = (size_t)rr_model_num_classes(m), T = D < 128 ? D : 128;
    float *x = slurp(argv[2], B * D * sizeof(float));
    int64_t *y = slurp(argv[3], B * sizeof(int64_t));
    // As the daemon plans them: K rows per sample for attacks, T for certificates.
    rr_workspace *wsa = NULL, *wsc = NULL;
    rr_workspace_params wpa = {.max_batch = B, .rows_per_sample = K};
    rr_workspace_params wpc = {.max_batch = B, .rows_per_sample = T};
    if (rr_workspace_new(m, &wpa, &wsa, &err) != RR_OK ||
        rr_workspace_new(m, &wpc, &wsc, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *adv = malloc(B * D * sizeof(float)), *l2 = malloc(B * 4), *linf = malloc(B * 4);
    bool *succ = malloc(B), *exact = malloc(B);
    int64_t *pred = malloc(B * 8);
    int *it = malloc(B * sizeof(int));
    double *d = malloc(3 * B * sizeof(double));
    double *t = malloc((size_t)reps * sizeof(double));
    const char *ops[] = {"pgd40", "deepfool", "certify_l2", "certify_linf"};
    const int nops = getenv("BENCH_NO_CERT") ? 2 : 4;
    for (int o = 0; o < nops; o++) {
        double iters = 0, nsucc = 0;
        for (int r = -1; r < reps; r++) {
            rr_status st;
            double t0 = now_ms();
            if (o < 2) {
                rr_attack_params p;
                rr_attack_params_init(&p, o == 0 ? RR_ATTACK_PGD : RR_ATTACK_DEEPFOOL);
                if (o == 0) {
                    p.epsilon = 0.1;
                    p.step_size = 0.01;
                    p.steps = 40;
                } else {
                    p.norm = RR_NORM_L2;
                }
                rr_attack_result res = {adv, succ, l2, linf, pred, it, 0, 0, NULL};
                st = rr_attack(m, wsa, x, y, B, &p, &res, &err);
            } else {
                rr_certify_params p = {.norm = o == 2 ? RR_NORM_L2 : RR_NORM_LINF, .labels = y};
                rr_certify_result res = {pred, d,    d + B, d + 2 * B, exact,
                                         adv,  NULL, NULL,  NULL,      NULL};
                st = rr_certify(m, wsc, x, B, &p, &res, &err);
            }
            if (st != RR_OK) {
                fprintf(stderr, "%s: %s\n", ops[o], err.msg);
                return 1;
            }
            if (r >= 0)
                t[r] = now_ms() - t0;
        }
        for (size_t b = 0; b < B; b++) {
            iters += o < 2 ? it[b] : 0;
            nsucc += o < 2 ? succ[b] : exact[b];
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        printf("{\"op\": \"%s\", \"ms_min\": %.3f, \"ms_median\": %.3f, \"iterations_mean\": %.3f, "
               "\"success\": %.0f}\n",
               ops[o], t[0], t[reps / 2], iters / (double)B, nsucc);
    }
    rr_workspace_free(wsa);
    rr_workspace_free(wsc);
    rr_model_release(m);
    return 0;
}
