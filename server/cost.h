// What a request will cost, estimated when it is parsed (before it is queued): the model's
// forward FLOPs per sample (rr_model_forward_flops) times the forward-pass equivalents the
// request needs per sample (route, regularizers and gradients asked for, steps x restarts,
// queries, targets, epsilons), times the batch, over this machine's FLOP rate measured at
// start-up, plus per pass a fixed overhead and the weights streamed once (what dominates at
// small batches). Each cost class (route and variant, e.g. "attacks/pgd")
// then learns a correction from the times it measures (an exponential average of
// measured / estimated), so repeated requests, an orchestrator's bread and butter, are
// estimated well whatever the formula's error. Thread rules: safe from any thread.
#ifndef RRD_COST_H
#define RRD_COST_H

#include <stdbool.h>
#include <stddef.h>

#include "relureg.h"

typedef struct rrd_cost_est {
    char cls[40];  // cost class: "predict", "attacks/pgd", "regularizers/jacobian+params", ...
    double flops;  // the formula's FLOPs for the whole request
    double raw_s;  // the formula's seconds
    double cost_s; // raw_s times the class's learned correction: what the scheduler uses
} rrd_cost_est;

// Measures this machine's per-pass overhead, weight bandwidth and FLOP rate (on one thread and
// on `threads`) from forward passes of synthetic MLPs: about 50 ms.
void rrd_cost_calibrate(int threads);
// What rrd_cost_calibrate found: GFLOP/s on one thread and on all, GB/s, seconds per pass.
void rrd_cost_rates(double *gflops_1, double *gflops_all, double *gbytes_s, double *overhead);

// Fills e from the FLOPs of the request (passes x B x forward FLOPs per sample) and the values
// its answer holds (rendering JSON costs about 300 ns a value, binary about 2).
void rrd_cost_estimate(rrd_cost_est *e, const char *cls, const rr_model *m, double passes, size_t B,
                       double out_values, bool binary);
// Fills e from a formula of the caller's (seconds), with the class's learned correction: for
// work that is not a pass through a model (a model upload, the dataset route).
void rrd_cost_seconds(rrd_cost_est *e, const char *cls, double seconds);
// A finished computation of class e->cls took `seconds`: updates the class's correction and
// the per-class figures that /metrics shows.
void rrd_cost_observe(const rrd_cost_est *e, double seconds);

// Forward-pass equivalents per sample (worst case: attacks that stop early cost less).
double rrd_cost_passes_attack(const rr_attack_params *ap, int K);
// A certificate (region and decision distances): measured about 8 + 25 K passes on the bench
// MLP; a robustness report adds one and DeepFool to its attack at each epsilon.
double rrd_cost_passes_certify(int K);
double rrd_cost_passes_regs(const rr_reg_spec *specs, size_t n, bool grad_inputs, bool grad_params,
                            int K);
// Whether an /attacks request of this attack always runs in the batch lane, whatever its
// estimate (C&W, EAD, ZOO and AutoAttack: their cost follows the data more than their options).
bool rrd_cost_long_attack(rr_attack_name n);
// "attacks/pgd", ... into cls (cap bytes).
void rrd_cost_class_attack(char *cls, size_t cap, const char *route, const rr_attack_params *ap);

// Appends the per-class figures in Prometheus text to *buf (malloc'd, grown as needed).
typedef void (*rrd_cost_put_fn)(void *ctx, const char *fmt, ...);
void rrd_cost_render(rrd_cost_put_fn put, void *ctx);

#endif
