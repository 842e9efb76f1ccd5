// The attacks and their options (attack.h, "the attacks and their options"): one read-only
// table of the options of rr_attack_params that the API exposes (name, type, field, range) and
// one of the attacks (name, targets, the options each takes, in the order answers echo them).
// The daemon parses and echoes with them; rr_attack_resolve checks ranges and targets with them.
// Ranges: math.md "Ranges"; attacks and their options: api.md. No state: any thread, any time.
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "attack/attack.h"

// ---- options ----

// Indices into OPTIONS, so that the attacks' rows below can point at their options.
enum {
    O_NORM,
    O_EPSILON,
    O_STEP_SIZE,
    O_OVERSHOOT,
    O_LEARNING_RATE,
    O_C,
    O_CONFIDENCE,
    O_THETA,
    O_GAMMA,
    O_BETA,
    O_H,
    O_P_INIT,
    O_STEPS,
    O_RESTARTS,
    O_MAX_ITER,
    O_BINARY_SEARCH_STEPS,
    O_QUERIES,
    O_RANDOM_START,
    O_SUITE,
    O_STAGES,
    N_OPTIONS
};

// A number with its range, and an option of another type.
#define NUM(o, f, lo, lo_open, hi, range)                                                          \
    [o] = {#f, RR_ATTACK_OPTION_NUMBER, offsetof(rr_attack_params, f), lo, hi, lo_open, range}
#define OPT(o, f, type) [o] = {#f, type, offsetof(rr_attack_params, f), 0, 0, false, NULL}

// In the order a request's options are read and, for the numbers and counts, the order
// rr_attack_resolve checks their ranges (so that of several bad options the same one is named
// first).
static const rr_attack_option OPTIONS[N_OPTIONS] = {
    OPT(O_NORM, norm, RR_ATTACK_OPTION_NORM),
    NUM(O_EPSILON, epsilon, 0, false, INFINITY, ">= 0"),
    NUM(O_STEP_SIZE, step_size, 0, true, INFINITY, "> 0"),
    NUM(O_OVERSHOOT, overshoot, 0, false, INFINITY, ">= 0"),
    NUM(O_LEARNING_RATE, learning_rate, 0, true, INFINITY, "> 0"),
    NUM(O_C, c, 0, true, INFINITY, "> 0"),
    NUM(O_CONFIDENCE, confidence, 0, false, INFINITY, ">= 0"),
    NUM(O_THETA, theta, -1, false, 1, "in [-1, 1]"),
    NUM(O_GAMMA, gamma, 0, true, 1, "in (0, 1]"),
    NUM(O_BETA, beta, 0, false, INFINITY, ">= 0"),
    NUM(O_H, h, 0, true, INFINITY, "> 0"),
    NUM(O_P_INIT, p_init, 0, true, 1, "in (0, 1]"),
    OPT(O_STEPS, steps, RR_ATTACK_OPTION_COUNT),
    OPT(O_RESTARTS, restarts, RR_ATTACK_OPTION_COUNT),
    OPT(O_MAX_ITER, max_iter, RR_ATTACK_OPTION_COUNT),
    OPT(O_BINARY_SEARCH_STEPS, binary_search_steps, RR_ATTACK_OPTION_COUNT),
    OPT(O_QUERIES, queries, RR_ATTACK_OPTION_COUNT),
    OPT(O_RANDOM_START, random_start, RR_ATTACK_OPTION_BOOL),
    OPT(O_SUITE, suite, RR_ATTACK_OPTION_SUITE),
    // Answered, never read: its field is the suite's.
    [O_STAGES] = {"stages", RR_ATTACK_OPTION_STAGES, offsetof(rr_attack_params, suite), 0, 0, false,
                  NULL},
};
#undef NUM
#undef OPT

size_t rr_attack_options(const rr_attack_option **out)
{
    *out = OPTIONS;
    return N_OPTIONS;
}

const rr_attack_option *rr_attack_option_find(const char *name)
{
    for (size_t i = 0; name && i < N_OPTIONS; i++)
        if (!strcmp(OPTIONS[i].name, name))
            return &OPTIONS[i];
    return NULL;
}

// ---- attacks ----

// An option an attack takes; answered only when set; epsilon, which a report sets. (clang-format
// would spread each braced initializer over three lines.)
// clang-format off
#define USE(o)    {&OPTIONS[O_##o], 0}
#define IF_SET(o) {&OPTIONS[O_##o], RR_ATTACK_USE_IF_SET}
#define EPSILON   {&OPTIONS[O_EPSILON], RR_ATTACK_USE_REPORT_SETS}
// clang-format on
#define CW_FAMILY                                                                                  \
    USE(BINARY_SEARCH_STEPS), USE(MAX_ITER), USE(LEARNING_RATE), USE(C), USE(CONFIDENCE)
#define PGD_FAMILY USE(NORM), EPSILON, USE(STEP_SIZE), USE(STEPS), USE(RANDOM_START), USE(RESTARTS)

static const rr_attack_use FGSM[] = {USE(NORM), EPSILON};
static const rr_attack_use PGD[] = {PGD_FAMILY};
static const rr_attack_use DEEPFOOL[] = {USE(NORM), USE(OVERSHOOT), USE(MAX_ITER)};
static const rr_attack_use CW_L2[] = {CW_FAMILY};
static const rr_attack_use JSMA[] = {USE(THETA), USE(GAMMA)};
static const rr_attack_use EAD[] = {CW_FAMILY, USE(BETA)};
static const rr_attack_use ZOO[] = {CW_FAMILY, USE(H)};
static const rr_attack_use APGD[] = {USE(NORM), EPSILON, USE(STEPS), USE(RESTARTS)};
// fab_t is minimum-norm unless given a bound: epsilon is answered only when there is one.
static const rr_attack_use FAB_T[] = {
    USE(NORM),
    {&OPTIONS[O_EPSILON], RR_ATTACK_USE_IF_SET | RR_ATTACK_USE_REPORT_SETS},
    USE(STEPS),
    USE(RESTARTS)};
static const rr_attack_use SQUARE[] = {USE(NORM), EPSILON, USE(QUERIES), USE(P_INIT),
                                       USE(RESTARTS)};
// The ensemble's stages take steps, restarts and queries when given, their own defaults
// otherwise: those are answered only when given.
static const rr_attack_use AUTOATTACK[] = {
    USE(NORM), EPSILON, USE(SUITE), USE(STAGES), IF_SET(STEPS), IF_SET(RESTARTS), IF_SET(QUERIES)};

// clang-format off
#define ROW(id, name, targets, uses) {id, name, targets, uses, sizeof uses / sizeof uses[0]}
// clang-format on

// In api.md's order. autoattack is untargeted (rr_attack_resolve refuses targets), like
// deepfool and apgd_ce.
static const rr_attack_info ATTACKS[] = {
    ROW(RR_ATTACK_FGSM, "fgsm", RR_ATTACK_TARGETS_GIVEN, FGSM),
    ROW(RR_ATTACK_PGD, "pgd", RR_ATTACK_TARGETS_GIVEN, PGD),
    ROW(RR_ATTACK_BIM, "bim", RR_ATTACK_TARGETS_GIVEN, PGD),
    ROW(RR_ATTACK_DEEPFOOL, "deepfool", RR_ATTACK_TARGETS_NONE, DEEPFOOL),
    ROW(RR_ATTACK_CW_L2, "cw_l2", RR_ATTACK_TARGETS_GIVEN, CW_L2),
    ROW(RR_ATTACK_JSMA, "jsma", RR_ATTACK_TARGETS_GIVEN, JSMA),
    ROW(RR_ATTACK_EAD, "ead", RR_ATTACK_TARGETS_GIVEN, EAD),
    ROW(RR_ATTACK_ZOO, "zoo", RR_ATTACK_TARGETS_GIVEN, ZOO),
    ROW(RR_ATTACK_APGD_CE, "apgd_ce", RR_ATTACK_TARGETS_NONE, APGD),
    ROW(RR_ATTACK_APGD_T, "apgd_t", RR_ATTACK_TARGETS_OWN, APGD),
    ROW(RR_ATTACK_FAB_T, "fab_t", RR_ATTACK_TARGETS_OWN, FAB_T),
    ROW(RR_ATTACK_SQUARE, "square", RR_ATTACK_TARGETS_GIVEN, SQUARE),
    ROW(RR_ATTACK_AUTOATTACK, "autoattack", RR_ATTACK_TARGETS_NONE, AUTOATTACK),
};
#undef USE
#undef IF_SET
#undef EPSILON
#undef CW_FAMILY
#undef PGD_FAMILY
#undef ROW

#define N_ATTACKS (sizeof ATTACKS / sizeof ATTACKS[0])

size_t rr_attack_infos(const rr_attack_info **out)
{
    *out = ATTACKS;
    return N_ATTACKS;
}

const rr_attack_info *rr_attack_info_of(rr_attack_name n)
{
    for (size_t i = 0; i < N_ATTACKS; i++)
        if (ATTACKS[i].id == n)
            return &ATTACKS[i];
    return NULL;
}

bool rr_attack_takes(rr_attack_name n, const rr_attack_option *o)
{
    const rr_attack_info *a = rr_attack_info_of(n);
    for (size_t i = 0; a && o && i < a->n_uses; i++)
        if (a->uses[i].option == o)
            return true;
    return false;
}

const char *rr_attack_name_string(rr_attack_name n)
{
    const rr_attack_info *a = rr_attack_info_of(n);
    return a ? a->name : NULL;
}

bool rr_attack_name_parse(const char *s, rr_attack_name *out)
{
    for (size_t i = 0; s && i < N_ATTACKS; i++)
        if (!strcmp(ATTACKS[i].name, s)) {
            *out = ATTACKS[i].id;
            return true;
        }
    return false;
}
