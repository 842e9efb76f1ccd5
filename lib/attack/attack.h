// Adversarial perturbations (../shared/spec/math.md, "Attacks"): FGSM, PGD, BIM, DeepFool,
// C&W L2, JSMA, EAD, ZOO, APGD-CE, APGD-T, FAB-T, Square and the AutoAttack ensemble on a
// batch, with the defaults and sources math.md
// names.
//
// Every attack clips to the model's input_range where math.md says (after each step for the
// iterative ones), draws its randomness from (seed, sample index) streams so that a sample's
// outcome depends on nothing else, runs batched (one forward / backward per step for the whole
// batch, OpenMP across samples where GEMM is not the shape), and reports per sample the
// adversarial input, success, L2 and L-inf norms of the perturbation, the prediction on the
// adversarial input and the iterations used.
// Threads and determinism as the rest of librelureg; results do not depend on the thread
// count. Errors: RR_EINVAL (field = the option) for options out of math.md's ranges,
// RR_ENONFINITE, RR_ENOMEM, RR_ECANCELLED (abort callback).
#ifndef RR_ATTACK_ATTACK_H
#define RR_ATTACK_ATTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control.h"
#include "core/status.h"
#include "nn/model.h"
#include "nn/workspace.h"
#include "reg/reg.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RR_ATTACK_DEFAULT (__builtin_nan(""))

typedef enum rr_attack_name {
    RR_ATTACK_FGSM,
    RR_ATTACK_PGD,
    RR_ATTACK_BIM,
    RR_ATTACK_DEEPFOOL,
    RR_ATTACK_CW_L2,
    RR_ATTACK_JSMA,
    RR_ATTACK_EAD,
    RR_ATTACK_ZOO,
    RR_ATTACK_APGD_CE,    // APGD on the cross-entropy (Croce & Hein 2020, AutoAttack APGDAttack)
    RR_ATTACK_APGD_T,     // APGD on the targeted DLR loss, n = min(9, K - 1) targets
    RR_ATTACK_SQUARE,     // Square Attack (square.c)
    RR_ATTACK_FAB_T,      // targeted FAB (fab.c)
    RR_ATTACK_AUTOATTACK, // the ensemble of a suite (autoattack.c)
} rr_attack_name;

// AutoAttack suites (math.md): standard = apgd_ce -> apgd_t -> fab_t -> square (Croce & Hein),
// fast = apgd_ce -> apgd_t (relureg's own).
typedef enum rr_autoattack_suite { RR_SUITE_STANDARD, RR_SUITE_FAST } rr_autoattack_suite;

typedef enum rr_norm { RR_NORM_LINF, RR_NORM_L2 } rr_norm;

// Options. A double left NaN (RR_ATTACK_DEFAULT) or an integer <= 0 takes the default of
// math.md ("Attacks"); rr_attack_params_init sets every field to "default". Explicit values
// out of math.md's "Ranges" are RR_EINVAL naming the option (integers are checked by the
// caller, which sees what the user sent: 0 here is indistinguishable from "default").
typedef struct rr_attack_params {
    rr_attack_name name;
    rr_norm norm;                 // every attack but jsma / cw_l2 / ead / zoo: linf (default) or l2
    double epsilon;               // fgsm / pgd / bim / apgd_* / square / autoattack (linf 0.3,
                                  // l2 1.0); fab_t: the bound a result must meet to count
                                  // (default +inf: none)
    double step_size;             // pgd / bim alpha (linf 0.01, l2 0.2); apgd_*: not settable
    int steps;                    // pgd / bim (40); apgd_* (100, per restart and target);
                                  // fab_t per target (100)
    int random_start;             // pgd: -1 default (true), 0 false, 1 true; bim is always false;
                                  // apgd_* always start at random (0 is RR_EINVAL)
    int restarts;                 // pgd / bim / apgd_* / fab_t / square (1; apgd_t: per target)
    bool targeted;                // fgsm, pgd, bim, cw_l2, ead, jsma, zoo, square: reach targets
                                  // (apgd_*, fab_t, autoattack choose their own: RR_EINVAL)
    const int64_t *target_labels; // [B] when targeted (borrowed)
    uint64_t seed;
    // The RNG stream of each sample: sample b draws from (seed, sample_ids[b]); NULL = its
    // position b. A caller attacking a subset of a batch (the robustness report, the
    // AutoAttack ensemble) passes the original indices, so a sample's outcome does not
    // depend on which other samples are attacked with it. Borrowed, [B].
    const size_t *sample_ids;
    double overshoot;          // deepfool (0.02)
    int max_iter;              // deepfool (50), cw_l2 / ead (1000 per binary step), zoo (10),
                               // jsma (ceil(gamma * D / 2) when left default)
    int candidates;            // deepfool: top classes considered (10)
    int binary_search_steps;   // cw_l2, ead (9); zoo (1)
    double learning_rate;      // cw_l2, ead (1e-2); zoo (1e-2)
    double c;                  // cw_l2, ead initial constant (1e-3); zoo (1e-3)
    double confidence;         // cw_l2, ead, zoo kappa (0)
    double theta;              // jsma (1.0)
    double gamma;              // jsma (0.1)
    double beta;               // ead (1e-2)
    double h;                  // zoo coordinate step (1e-4)
    rr_autoattack_suite suite; // autoattack (standard); its stages take steps, restarts and
                               // queries when given, their own defaults otherwise
    int queries;               // square: iterations after the first query (5000, at most
                               // max_steps when left default)
    double p_init;             // square: initial fraction of features in a square (0.8)
    int max_steps;             // the largest value any count may take (0 = 10000)
    rr_control control;        // abort polled every step; progress: fraction of the steps done
} rr_attack_params;

typedef struct rr_attack_result {
    float *adversarial;   // [B, D]
    bool *success;        // [B]: prediction != label (untargeted) or == target; fab_t with
                          // a finite epsilon also needs ||x' - x|| <= epsilon (else x' = x)
    float *l2, *linf;     // [B] norms of adversarial - input
    int64_t *predictions; // [B] argmax on the adversarial input
    int *iterations;      // [B] steps / iterations used (square: queries, the first included)
    long gradient_calls;  // model gradients evaluated (ZOO: 0)
    long forward_calls;   // model forward passes (batched calls)
    int *broken_by;       // [B] or NULL; autoattack: the stage (an rr_attack_name) whose point
                          // is the sample's adversarial input, -1 for none (still robust, or
                          // misclassified clean)
} rr_attack_result;

// The stages of an AutoAttack suite, in order; returns their count.
size_t rr_autoattack_stages(rr_autoattack_suite s, const rr_attack_name **stages);

// The API name of an attack ("pgd", "apgd_ce", "autoattack", ...; api.md), NULL for none;
// and the attack of a name (false when there is none). Both read the table below.
const char *rr_attack_name_string(rr_attack_name n);
bool rr_attack_name_parse(const char *s, rr_attack_name *out);

// ---- the attacks and their options: one table (options.c) ----
//
// What the API (api.md) exposes of rr_attack_params, and which attack takes what. The daemon
// parses a request's options, checks its targets and echoes the resolved options from it, and
// rr_attack_resolve checks ranges and targets with it. Everything here is read-only, static
// and owned by the library: pointers stay valid for the life of the process, and any thread
// may read them at any time.

// How an option is held in rr_attack_params and written in the API.
typedef enum rr_attack_option_type {
    RR_ATTACK_OPTION_NUMBER, // double; RR_ATTACK_DEFAULT (NaN) = the attack's default. The API
                             // takes a finite number; [lo, hi] (lo excluded when lo_open) is
                             // checked by rr_attack_resolve
    RR_ATTACK_OPTION_COUNT,  // int in [1, max_steps]; <= 0 = the attack's default
    RR_ATTACK_OPTION_BOOL,   // int: 0 false, 1 true; < 0 = the attack's default
    RR_ATTACK_OPTION_NORM,   // rr_norm: "linf" | "l2"
    RR_ATTACK_OPTION_SUITE,  // rr_autoattack_suite: "standard" | "fast"
    RR_ATTACK_OPTION_STAGES, // answered, never set: the suite's stages (rr_autoattack_stages),
                             // a list of attack names; offset is the suite's
} rr_attack_option_type;

typedef struct rr_attack_option {
    const char *name; // the API's name ("epsilon")
    rr_attack_option_type type;
    size_t offset;     // of its field in rr_attack_params
    double lo, hi;     // NUMBER: the range math.md "Ranges" gives (hi may be +inf)
    bool lo_open;      // NUMBER: lo itself is out of range
    const char *range; // NUMBER: the range as error messages write it ("> 0"), else NULL
} rr_attack_option;

// How an attack uses one of its options (rr_attack_use.flags). IF_SET: answered only when set
// (a finite number, a count > 0). REPORT_SETS: a robustness report sets it (epsilon: each of
// its epsilons), so a report's attack neither takes nor answers it.
#define RR_ATTACK_USE_IF_SET      0x1u
#define RR_ATTACK_USE_REPORT_SETS 0x2u

typedef struct rr_attack_use {
    const rr_attack_option *option; // an entry of rr_attack_options
    unsigned flags;                 // RR_ATTACK_USE_*
} rr_attack_use;

// Who picks an attack's targets (math.md "Ranges").
typedef enum rr_attack_targets {
    RR_ATTACK_TARGETS_GIVEN, // untargeted, or targeted at the caller's target_labels
    RR_ATTACK_TARGETS_NONE,  // untargeted only: deepfool, apgd_ce, autoattack
    RR_ATTACK_TARGETS_OWN,   // the classes ranked 2nd to (n+1)th by the clean logits
                             // (n = min(9, K - 1)): apgd_t, fab_t
} rr_attack_targets;

typedef struct rr_attack_info {
    rr_attack_name id;
    const char *name; // the API's name ("pgd")
    rr_attack_targets targets;
    const rr_attack_use *uses; // [n_uses]: the options it takes, in the order answers echo them
    size_t n_uses;
} rr_attack_info;

// Every option in *out ([count], read-only), in the order a request's options are read and
// checked (so that of several bad options the same one is named first); returns the count.
size_t rr_attack_options(const rr_attack_option **out);
// The option named `name` (an entry of rr_attack_options), NULL for none.
const rr_attack_option *rr_attack_option_find(const char *name);
// Every attack in *out ([count], read-only), in api.md's order (the order lists of attack
// names in messages follow); returns the count.
size_t rr_attack_infos(const rr_attack_info **out);
// The entry of attack n, NULL for none.
const rr_attack_info *rr_attack_info_of(rr_attack_name n);
// Whether attack n takes option o (o is in its uses); false for an unknown n or a NULL o. An
// option an attack does not take is still range-checked by rr_attack_resolve when given, and
// otherwise ignored (apgd_*, autoattack refuse step_size; only autoattack takes suite).
bool rr_attack_takes(rr_attack_name n, const rr_attack_option *o);

// Every option at "default" in *p (caller storage), control empty.
void rr_attack_params_init(rr_attack_params *p, rr_attack_name name);
// Resolves defaults for a model with K classes and checks ranges into *out (caller storage;
// answers echo it). RR_EINVAL naming the option out of range (rr_attack_option's lo, hi,
// range; counts in [1, max_steps]), or "targeted" / "target_labels" for an attack whose
// targets are not RR_ATTACK_TARGETS_GIVEN.
rr_status rr_attack_resolve(const rr_attack_params *in, int K, rr_attack_params *out,
                            rr_error *err);

// Runs the attack on x [B, D] with labels [B] (borrowed) and fills the caller-owned arrays of
// *out. All result arrays but broken_by must be non-NULL. Plan ws with rows_per_sample >= K
// for DeepFool / JSMA / FAB-T / autoattack.
rr_status rr_attack(const rr_model *m, rr_workspace *ws, const float *x, const int64_t *labels,
                    size_t B, const rr_attack_params *p, rr_attack_result *out, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
