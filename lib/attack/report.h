// Robustness report over a labelled batch (api.md, POST /robustness): clean accuracy,
// robust accuracy per epsilon under one attack, DeepFool rho_adv, mean certified radius,
// the smallest listed epsilon that breaks each sample, and the gradient-masking flags.
//
// The epsilon-bounded attacks (fgsm, pgd, bim, apgd_ce, apgd_t, square, autoattack) run once
// per listed epsilon, on the samples classified correctly (a misclassified sample is broken at
// every epsilon); the minimum-norm attacks (deepfool, cw_l2, ead, jsma, zoo, fab_t) run once,
// and a sample counts as broken at epsilon when the attack succeeded with ||x' - x|| <=
// epsilon in the report's norm.
// deepfool_rho is the mean ||r||_2 / ||x||_2 of l2 DeepFool (math.md defaults) over the
// correctly classified samples it broke (NaN when there is none); mean_certified_radius is
// the mean over all samples of rr_certify's radius about the labels (0 when misclassified).
// Progress reports the fraction of the attack runs done; abort stops with RR_ECANCELLED.
// Threads and determinism as the rest of librelureg. Errors: RR_EINVAL (field "epsilons": not
// 1 to 64 values >= 0; the attack's options as rr_attack_resolve; labels out of [0, K)),
// RR_ENONFINITE ("inputs"), RR_ENOMEM, RR_ECANCELLED.
#ifndef RR_ATTACK_REPORT_H
#define RR_ATTACK_REPORT_H

#include "attack/attack.h"
#include "attack/certify.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_robustness_params {
    rr_norm norm;           // of epsilons, of the attack and of the certified radius
    const double *epsilons; // n_eps values >= 0 (1 to 64)
    size_t n_eps;
    rr_attack_params attack; // name and options; epsilon, norm, targeted and control are set here
    rr_control control;      // abort and progress of the whole report (attack.control unused)
} rr_robustness_params;

typedef struct rr_robustness_flags {
    double zero_gradient_fraction;      // samples whose clean input gradient is exactly 0
    double nonfinite_gradient_fraction; // ... is not finite
    int black_box_only;                 // autoattack at the largest epsilon: samples broken by
                                        // the square stage after every gradient stage failed
    bool non_monotone;                  // robust accuracy higher at a larger epsilon
    int certified_broken;               // broken at an epsilon below the certified radius
    bool flagged;
} rr_robustness_flags;

typedef struct rr_robustness_result {
    double clean_accuracy;
    double *robust_accuracy; // [n_eps], caller-owned
    double deepfool_rho;
    double mean_certified_radius;
    double *per_sample_min_epsilon; // [B], caller-owned: 0 misclassified, NAN when never broken
    int *broken_by; // [B] or NULL, caller-owned; autoattack: the stage (rr_attack_name) that
                    // broke the sample at the largest epsilon, -1 for none
    rr_robustness_flags flags;
    long gradient_calls, forward_calls;
} rr_robustness_result;

// Reports on x [B, D] with labels [B] (borrowed). Plan ws with rows_per_sample >= max(K,
// min(D, 128)) for whole chunks (smaller plans work, in smaller chunks). The caller-owned
// arrays of *out must be allocated for n_eps / B entries as marked.
rr_status rr_robustness(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                        size_t B, const rr_robustness_params *p, rr_robustness_result *out,
                        rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
