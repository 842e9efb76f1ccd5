// Request cost estimates (see cost.h).
#include "cost.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

// Per pass of a request: t = overhead + weight bytes / bandwidth + flops / rate. The weights
// are streamed once per pass whatever the batch (the batch is the GEMM dimension), which is
// what a batch of one costs; the FLOPs take over as the batch grows. Fitted at start-up from
// forward passes of a tiny MLP (the overhead) and of a 1.6 MB one at batch 1 (the bandwidth)
// and 256 (the rate, on one thread and on all). Defaults for a machine that could not be
// measured.
static double overhead_s = 5e-6, bandwidth = 10e9, rate_1 = 20e9, rate_all = 40e9;

#define MAX_CLASSES 96
#define ALPHA       0.3 // weight of the newest observation in the class's correction
#define MIN_LEARN_S 1e-3

typedef struct cls_stats {
    char name[40];
    double log_corr; // exponential average of log(measured / raw)
    unsigned long long n, learned;
    double raw_sum, est_sum, measured_sum; // seconds, over every observation
    double abs_log_err_raw, abs_log_err_est;
} cls_stats;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static cls_stats classes[MAX_CLASSES];
static int nclasses;

static const char *calib_arch =
    "{\"format\": \"relureg/1\", \"input_shape\": [256], \"num_classes\": 10, \"layers\": ["
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 256, \"out_features\": 512},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 512, \"out_features\": 512},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"4\", \"in_features\": 512, \"out_features\": 10}]}";
static const char *tiny_arch =
    "{\"format\": \"relureg/1\", \"input_shape\": [8], \"num_classes\": 3, \"layers\": ["
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 8, \"out_features\": 16},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 16, \"out_features\": 3}]}";

// The best of `reps` forward passes at batch B, in seconds; < 0 on failure.
static double time_forward(rr_model *m, size_t B, int reps)
{
    rr_error err = {0};
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = 1};
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    float *x = calloc(B * D, sizeof *x), *z = malloc(B * K * sizeof *z);
    double best = -1;
    if (x && z && rr_workspace_new(m, &wp, &ws, &err) == RR_OK) {
        for (size_t i = 0; i < B * D; i++)
            x[i] = (float)((i * 7919) % 1000) * 1e-3f;
        for (int r = 0; r < reps; r++) {
            const double t0 = rrd_now();
            if (rr_forward(m, ws, x, B, z, NULL, NULL, &err) != RR_OK)
                break;
            const double dt = rrd_now() - t0;
            best = best < 0 || dt < best ? dt : best;
        }
    }
    rr_workspace_free(ws);
    free(x);
    free(z);
    return best;
}

static double weight_bytes(const rr_model *m)
{
    return 4.0 * (double)rr_model_param_array_size(m);
}

void rrd_cost_calibrate(int threads)
{
    rr_model *m = NULL, *tiny = NULL;
    if (rr_model_create(calib_arch, &m, NULL) != RR_OK ||
        rr_model_create(tiny_arch, &tiny, NULL) != RR_OK) {
        rr_model_release(m);
        return;
    }
    const double F = rr_model_forward_flops(m), W = weight_bytes(m);
    const int saved = rr_get_num_threads();
    rr_set_num_threads(1);
    const double t0 = time_forward(tiny, 1, 200), t1 = time_forward(m, 1, 50);
    const double t256 = time_forward(m, 256, 5);
    rr_set_num_threads(threads);
    const double t256n = time_forward(m, 256, 5);
    rr_set_num_threads(saved);
    rr_model_release(m);
    rr_model_release(tiny);
    if (t0 <= 0 || t1 <= t0 || t256 <= t1 || t256n <= 0)
        return;
    overhead_s = t0;
    rate_1 = 255.0 * F / (t256 - t1);
    const double stream = t1 - t0 - F / rate_1;
    bandwidth = W / (stream > 1e-7 ? stream : 1e-7);
    rate_all = 256.0 * F / (t256n - (t1 - F / rate_1) > 0 ? t256n - (t1 - F / rate_1) : t256n);
    if (rate_all < rate_1)
        rate_all = rate_1;
}

void rrd_cost_rates(double *gflops_1, double *gflops_all, double *gbytes_s, double *overhead)
{
    *gflops_1 = rate_1 * 1e-9;
    *gflops_all = rate_all * 1e-9;
    *gbytes_s = bandwidth * 1e-9;
    *overhead = overhead_s;
}

static cls_stats *find(const char *name, bool add)
{
    for (int i = 0; i < nclasses; i++)
        if (strcmp(classes[i].name, name) == 0)
            return &classes[i];
    if (!add || nclasses == MAX_CLASSES)
        return NULL;
    cls_stats *c = &classes[nclasses++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

void rrd_cost_estimate(rrd_cost_est *e, const char *cls, const rr_model *m, double passes, size_t B,
                       double out_values, bool binary)
{
    e->flops = passes * (double)B * rr_model_forward_flops(m);
    // Small batches run near one thread's rate (little to split); large ones use them all.
    const double rate = B >= 16 ? rate_all : rate_1;
    const double per_pass = overhead_s + weight_bytes(m) / bandwidth;
    rrd_cost_seconds(e, cls,
                     per_pass * (passes > 1 ? passes : 1) + e->flops / rate +
                         out_values * (binary ? 2e-9 : 300e-9));
}

void rrd_cost_seconds(rrd_cost_est *e, const char *cls, double seconds)
{
    snprintf(e->cls, sizeof e->cls, "%s", cls);
    e->raw_s = seconds;
    pthread_mutex_lock(&mu);
    const cls_stats *c = find(cls, false);
    const double corr = c && c->learned ? exp(c->log_corr) : 1.0;
    pthread_mutex_unlock(&mu);
    e->cost_s = e->raw_s * corr;
}

void rrd_cost_observe(const rrd_cost_est *e, double seconds)
{
    if (!(e->raw_s > 0) || !(seconds > 0))
        return;
    pthread_mutex_lock(&mu);
    cls_stats *c = find(e->cls, true);
    if (c) {
        // Under a millisecond a measurement carries more of the scheduler's noise (a thread's
        // wake-up, a workspace's first touch) than of the formula's error: it is counted in the
        // figures but does not move the correction.
        if (seconds >= MIN_LEARN_S || e->raw_s >= MIN_LEARN_S) {
            const double l = log(seconds / e->raw_s), lim = log(1e4);
            c->log_corr = c->learned == 0 ? l : (1 - ALPHA) * c->log_corr + ALPHA * l;
            c->log_corr = c->log_corr > lim ? lim : c->log_corr < -lim ? -lim : c->log_corr;
            c->learned++;
        }
        c->n++;
        c->raw_sum += e->raw_s;
        c->est_sum += e->cost_s;
        c->measured_sum += seconds;
        c->abs_log_err_raw += fabs(log(e->raw_s / seconds));
        c->abs_log_err_est += fabs(log(e->cost_s / seconds));
    }
    pthread_mutex_unlock(&mu);
}

static int targets(int K)
{
    return K - 1 < 9 ? K - 1 : 9;
}

double rrd_cost_passes_attack(const rr_attack_params *ap, int K)
{
    const double steps = ap->steps > 0 ? ap->steps : 100,
                 restarts = ap->restarts > 0 ? ap->restarts : 1;
    const double it = ap->max_iter > 0 ? ap->max_iter : 50;
    const double bss = ap->binary_search_steps > 0 ? ap->binary_search_steps : 9;
    const double queries = ap->queries > 0 ? ap->queries : 5000;
    switch (ap->name) {
        case RR_ATTACK_FGSM:
            return 3;
        case RR_ATTACK_PGD:
        case RR_ATTACK_BIM:
        case RR_ATTACK_APGD_CE:
            return 1 + 2 * steps * restarts;
        case RR_ATTACK_APGD_T:
            return 1 + 2 * steps * restarts * targets(K);
        case RR_ATTACK_FAB_T:
            return 1 + 4 * steps * restarts * targets(K);
        case RR_ATTACK_SQUARE:
            return 1 + queries * restarts;
        case RR_ATTACK_DEEPFOOL:
            // Typically a few iterations, not max_iter (about 60 x fewer on the bench MLP).
            return 1 + (it < 4 ? it : 4) * (1 + (ap->candidates > 0 ? ap->candidates : 10));
        case RR_ATTACK_CW_L2:
        case RR_ATTACK_EAD:
            return 1 + 2 * bss * (ap->max_iter > 0 ? ap->max_iter : 1000);
        case RR_ATTACK_ZOO:
            return 1 + 256 * bss * it;
        case RR_ATTACK_JSMA:
            return 1 + it * (1 + K);
        case RR_ATTACK_AUTOATTACK:
            // Every stage at its default on every sample: an upper bound (stages attack only the
            // samples still standing); the class's correction learns the usual fraction.
            return 1 + 200 + 200.0 * targets(K) +
                   (ap->suite == RR_SUITE_STANDARD ? 400.0 * targets(K) + 5000 : 0);
    }
    return 1;
}

bool rrd_cost_long_attack(rr_attack_name n)
{
    switch (n) {
        case RR_ATTACK_CW_L2:
        case RR_ATTACK_EAD:
        case RR_ATTACK_ZOO:
        case RR_ATTACK_AUTOATTACK:
            return true;
        case RR_ATTACK_FGSM:
        case RR_ATTACK_PGD:
        case RR_ATTACK_BIM:
        case RR_ATTACK_DEEPFOOL:
        case RR_ATTACK_JSMA:
        case RR_ATTACK_APGD_CE:
        case RR_ATTACK_APGD_T:
        case RR_ATTACK_FAB_T:
        case RR_ATTACK_SQUARE:
            return false;
    }
    return false;
}

double rrd_cost_passes_certify(int K)
{
    return 8 + 25.0 * K;
}

double rrd_cost_passes_regs(const rr_reg_spec *specs, size_t n, bool grad_inputs, bool grad_params,
                            int K)
{
    double p = 1; // the shared forward pass
    const double g = (grad_inputs ? 1 : 0) + (grad_params ? 2 : 0);
    for (size_t i = 0; i < n; i++) {
        const rr_reg_spec *s = &specs[i];
        double rows = 1; // backward rows the regularizer needs
        switch (s->name) {
            case RR_REG_CROSS_ENTROPY:
            case RR_REG_INPUT_GRADIENT:
                rows = 1;
                break;
            case RR_REG_JACOBIAN:
            case RR_REG_CROSS_LIPSCHITZ:
                rows = s->estimator == RR_REG_PROJECTION && s->projections > 0 ? s->projections : K;
                break;
            case RR_REG_CURVATURE:
                rows = s->method == RR_REG_FINITE_DIFFERENCE ? 3 : K + 1;
                break;
            case RR_REG_WEIGHT_DECAY:
                rows = 0;
                break;
        }
        // Each row: one backward pass; gradients of it: a tangent and a second backward pass.
        p += rows * (1 + (g > 0 ? 1 + g : 0));
    }
    return p;
}

void rrd_cost_class_attack(char *cls, size_t cap, const char *route, const rr_attack_params *ap)
{
    snprintf(cls, cap, "%s/%s", route, rr_attack_name_string(ap->name));
}

void rrd_cost_render(rrd_cost_put_fn put, void *ctx)
{
    pthread_mutex_lock(&mu);
    put(ctx, "# HELP relureg_cost_model_gflops The sgemm rate the cost model was calibrated to "
             "at start-up (threads: 1 or all).\n# TYPE relureg_cost_model_gflops gauge\n");
    put(ctx, "relureg_cost_model_gflops{threads=\"1\"} %.2f\n", rate_1 * 1e-9);
    put(ctx, "relureg_cost_model_gflops{threads=\"all\"} %.2f\n", rate_all * 1e-9);
    put(ctx,
        "# HELP relureg_cost_model_bandwidth_bytes_per_second The rate weights stream at.\n"
        "# TYPE relureg_cost_model_bandwidth_bytes_per_second gauge\n"
        "relureg_cost_model_bandwidth_bytes_per_second %.4g\n",
        bandwidth);
    put(ctx,
        "# HELP relureg_cost_model_overhead_seconds The fixed cost of one pass.\n"
        "# TYPE relureg_cost_model_overhead_seconds gauge\n"
        "relureg_cost_model_overhead_seconds %.9f\n",
        overhead_s);
    put(ctx, "# HELP relureg_compute_seconds_total Measured compute time by cost class.\n"
             "# TYPE relureg_compute_seconds_total counter\n");
    for (int i = 0; i < nclasses; i++)
        put(ctx, "relureg_compute_seconds_total{class=\"%s\"} %.6f\n", classes[i].name,
            classes[i].measured_sum);
    put(ctx, "# HELP relureg_cost_estimated_seconds_total Estimated compute time by cost class "
             "(estimator: formula = the FLOP formula alone, learned = with the class's "
             "correction, what the scheduler uses).\n"
             "# TYPE relureg_cost_estimated_seconds_total counter\n");
    for (int i = 0; i < nclasses; i++) {
        put(ctx, "relureg_cost_estimated_seconds_total{class=\"%s\",estimator=\"formula\"} %.6f\n",
            classes[i].name, classes[i].raw_sum);
        put(ctx, "relureg_cost_estimated_seconds_total{class=\"%s\",estimator=\"learned\"} %.6f\n",
            classes[i].name, classes[i].est_sum);
    }
    put(ctx, "# HELP relureg_cost_log_error_total Sum of |ln(estimated / measured)| by cost class: "
             "divided by relureg_cost_observations_total, exp of it is the typical factor "
             "the estimate is off by.\n# TYPE relureg_cost_log_error_total counter\n");
    for (int i = 0; i < nclasses; i++) {
        put(ctx, "relureg_cost_log_error_total{class=\"%s\",estimator=\"formula\"} %.6f\n",
            classes[i].name, classes[i].abs_log_err_raw);
        put(ctx, "relureg_cost_log_error_total{class=\"%s\",estimator=\"learned\"} %.6f\n",
            classes[i].name, classes[i].abs_log_err_est);
    }
    put(ctx, "# TYPE relureg_cost_observations_total counter\n");
    for (int i = 0; i < nclasses; i++)
        put(ctx, "relureg_cost_observations_total{class=\"%s\"} %llu\n", classes[i].name,
            classes[i].n);
    pthread_mutex_unlock(&mu);
}
