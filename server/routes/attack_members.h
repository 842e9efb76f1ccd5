// The JSON members of an /attacks request and of a /robustness report's "attack" object (api.md),
// in api.md's order, which the member lists in error messages quote. The options among them
// are librelureg's (attack.h, rr_attack_options); tests/unit/server/test_attack_members.c
// checks that every option a client may set is here, and nothing else.
#ifndef RRD_ROUTES_ATTACK_MEMBERS_H
#define RRD_ROUTES_ATTACK_MEMBERS_H

// The options every attack request may carry beyond the common ones (not stages: answered only).
#define OPTION_MEMBERS                                                                             \
    "overshoot max_iter binary_search_steps learning_rate c confidence theta gamma beta h "        \
    "queries p_init suite"
// POST /v1/models/{name}/attacks.
#define ATTACKS_MEMBERS                                                                            \
    "inputs labels version async timeout_ms attack norm epsilon step_size steps random_start "     \
    "restarts targeted target_labels seed " OPTION_MEMBERS
// The "attack" object of /robustness: no inputs, labels, epsilon or targets (the report's).
#define REPORT_ATTACK_MEMBERS                                                                      \
    "attack norm step_size steps random_start restarts seed " OPTION_MEMBERS

#endif
