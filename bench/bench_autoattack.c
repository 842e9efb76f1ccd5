// Timing harness for APGD-CE and the AutoAttack ensemble, driven by bench/bench_autoattack.py
// (which times a batched torch transcription of APGD-CE on the same machine). Not a test.
//   bench-autoattack MODEL INPUTS.f32 LABELS.i64 B THREADS REPS ATTACK EPS
// ATTACK is apgd_ce (linf, 100 steps, 1 restart: the defaults) or standard / fast (the
// AutoAttack suite, linf). Prints one JSON line: {"op", "ms_min", "ms_median", "clean",
// "success", "gradient_calls", "forward_calls"} and, for a suite, "broken_by" {stage: count}
// and "stage_s" {stage: seconds}; "clean" is the number of samples classified correctly at
// the clean input. An untimed warm-up run precedes the REPS timed ones of apgd_ce (a suite
// runs for seconds to minutes: no warm-up).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "relureg.h"

// Stage times from the progress callback: the ensemble maps stage s onto [s/S, (s+1)/S] and
// every stage reports reaching its end, so stage s ends when the fraction first reaches (s+1)/S
// (the clean forward pass counts to stage 0; stages not run end with the last one run).
typedef struct stage_clock {
    size_t S;
    double t0, end[8]; // ms; end[s] < 0 until stage s ends
} stage_clock;

static void on_progress(void *ctx, double f)
{
    stage_clock *c = ctx;
    for (size_t s = 0; s < c->S; s++)
        if (c->end[s] < 0 && f >= (double)(s + 1) / (double)c->S - 1e-9)
            c->end[s] = now_ms();
}

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    if (argc != 9) {
        fprintf(stderr, "usage: %s MODEL INPUTS.f32 LABELS.i64 B THREADS REPS ATTACK EPS\n",
                argv[0]);
        return 2;
    }
    rr_set_num_threads(atoi(argv[5]));
    const int reps = atoi(argv[6]) > 0 ? atoi(argv[6]) : 1;
    const char *op = argv[7];
    const bool aa = strcmp(op, "apgd_ce") != 0;
    if (aa && strcmp(op, "standard") != 0 && strcmp(op, "fast") != 0) {
        fprintf(stderr, "ATTACK is apgd_ce, standard or fast, not %s\n", op);
        return 2;
    }
    rr_error err = {0};
    rr_model *m = NULL;
    if (rr_model_load_file(argv[1], &m, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const size_t B = (size_t)atol(argv[4]), D = rr_model_input_size(m);
    const size_t K = (size_t)rr_model_num_classes(m);
    float *x = slurp(argv[2], B * D * sizeof(float));
    int64_t *y = slurp(argv[3], B * sizeof(int64_t));
    // As the daemon plans attacks: K rows per sample (FAB-T needs them).
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    if (rr_workspace_new(m, &wp, &ws, &err) != RR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *adv = malloc(B * D * sizeof(float)), *l2 = malloc(B * 4), *linf = malloc(B * 4);
    bool *succ = malloc(B);
    int64_t *pred = malloc(B * 8);
    int *it = malloc(B * sizeof(int)), *by = malloc(B * sizeof(int));
    double *t = malloc((size_t)reps * sizeof(double));
    rr_attack_params p;
    rr_attack_params_init(&p, aa ? RR_ATTACK_AUTOATTACK : RR_ATTACK_APGD_CE);
    p.norm = RR_NORM_LINF;
    p.epsilon = atof(argv[8]);
    if (aa)
        p.suite = strcmp(op, "fast") == 0 ? RR_SUITE_FAST : RR_SUITE_STANDARD;
    rr_attack_result res = {adv, succ, l2, linf, pred, it, 0, 0, aa ? by : NULL};
    const rr_attack_name *stages = NULL;
    stage_clock clk = {.S = aa ? rr_autoattack_stages(p.suite, &stages) : 0};
    if (aa) {
        p.control.progress = on_progress;
        p.control.progress_ctx = &clk;
    }
    for (int r = aa ? 0 : -1; r < reps; r++) {
        res.gradient_calls = res.forward_calls = 0;
        for (size_t s = 0; s < clk.S; s++)
            clk.end[s] = -1.0;
        double t0 = clk.t0 = now_ms();
        if (rr_attack(m, ws, x, y, B, &p, &res, &err) != RR_OK) {
            fprintf(stderr, "%s: %s\n", op, err.msg);
            return 1;
        }
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    // Clean accuracy from one forward pass (the attacks leave misclassified samples alone and
    // count them as successes).
    float *z = malloc(B * K * sizeof(float));
    if (rr_forward(m, ws, x, B, z, NULL, NULL, &err) != RR_OK) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return 1;
    }
    size_t nsucc = 0, clean = 0;
    for (size_t b = 0; b < B; b++) {
        nsucc += succ[b];
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            best = z[b * K + k] > z[b * K + best] ? k : best;
        clean += (int64_t)best == y[b];
    }
    printf("{\"op\": \"%s\", \"ms_min\": %.3f, \"ms_median\": %.3f, \"clean\": %zu, "
           "\"success\": %zu, \"gradient_calls\": %ld, \"forward_calls\": %ld",
           op, t[0], t[reps / 2], clean, nsucc, res.gradient_calls, res.forward_calls);
    if (aa) {
        // broken_by counts and seconds per stage, of the last run.
        printf(", \"broken_by\": {");
        for (size_t s = 0; s < clk.S; s++) {
            size_t n = 0;
            for (size_t b = 0; b < B; b++)
                n += by[b] == (int)stages[s];
            printf("%s\"%s\": %zu", s ? ", " : "", rr_attack_name_string(stages[s]), n);
        }
        printf("}, \"stage_s\": {");
        for (size_t s = 0; s < clk.S; s++) {
            const double prev = s ? clk.end[s - 1] : clk.t0;
            printf("%s\"%s\": %.3f", s ? ", " : "", rr_attack_name_string(stages[s]),
                   (clk.end[s] - prev) / 1e3);
        }
        printf("}");
    }
    printf("}\n");
    free(z);
    free(t);
    free(by);
    free(it);
    free(pred);
    free(succ);
    free(linf);
    free(l2);
    free(adv);
    free(y);
    free(x);
    rr_workspace_free(ws);
    rr_model_release(m);
    return 0;
}
