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
// Blocks and shards: rows are reported in blocks, the rows whose global index (sample_offset +
// row) divided by `block` (default RR_ROBUSTNESS_BLOCK) is the same: every step (clean pass,
// attack runs, DeepFool, certificate) runs on one block at a time, and every attack draws its
// randomness from (seed, global index) (attack.h, sample_ids). A sample's outcome is then a
// function of its block alone: BLAS rounds a row differently with the row count of the product
// (OpenBLAS's edge kernels), so a whole-batch step would tie it to the batch. Hence the
// per-sample outcomes (rr_robustness_sample) of rows [a, b) of a batch, run with sample_offset
// = a, equal rows [a, b) of the whole batch's whenever a and b are multiples of block (or b is
// the batch's end); and rr_robustness_summarize, which rr_robustness itself calls, rebuilds
// the report from the concatenated samples with the same floating-point sums in the same
// order: bit for bit the whole batch's report. gradient_calls and forward_calls are not part
// of the summary; being counted per block, a whole run's are the sums of its shards'.
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
    size_t sample_offset;    // the global index of row 0 (RNG streams, blocks); default 0
    size_t block;            // rows per block (above); 0 = RR_ROBUSTNESS_BLOCK
} rr_robustness_params;

// The default block: small enough for shards of a few hundred samples, large enough for
// efficient products.
#define RR_ROBUSTNESS_BLOCK 64

// One sample's outcome: what the summary is computed from.
typedef struct rr_robustness_sample {
    bool correct;            // clean prediction == label
    bool zero_gradient;      // clean input gradient exactly 0
    bool nonfinite_gradient; // ... not finite
    uint64_t broken;         // bit e: broken at epsilons[e] (every bit when misclassified)
    double deepfool_rho;     // ||r||_2 / ||x||_2 of l2 DeepFool when it broke the sample, else
                             // NAN (misclassified: NAN)
    double certified_radius; // rr_certify's radius about the label (0 when misclassified)
    int broken_by;           // autoattack: the stage that broke it at the largest epsilon; -1
} rr_robustness_sample;

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
    rr_robustness_sample *samples; // [B] or NULL, caller-owned: the per-sample outcomes
} rr_robustness_result;

// Reports on x [B, D] with labels [B] (borrowed). Plan ws with rows_per_sample >= max(K,
// min(D, 128)) for whole chunks (smaller plans work, in smaller chunks). The caller-owned
// arrays of *out must be allocated for n_eps / B entries as marked.
rr_status rr_robustness(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                        size_t B, const rr_robustness_params *p, rr_robustness_result *out,
                        rr_error *err);

// The report of B samples from their outcomes s [B] (in sample order) and the epsilons (1 to
// 64 values >= 0): clean_accuracy, robust_accuracy, deepfool_rho, mean_certified_radius,
// per_sample_min_epsilon, broken_by (when non-NULL) and flags of *out; gradient_calls,
// forward_calls and samples are left alone. B = 0 gives accuracies 0 and NaN means.
// Errors: RR_EINVAL ("epsilons").
rr_status rr_robustness_summarize(const rr_robustness_sample *s, size_t B, const double *epsilons,
                                  size_t n_eps, rr_robustness_result *out, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
