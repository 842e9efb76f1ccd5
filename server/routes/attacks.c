// POST /v1/models/{name}/attacks, /certify and /robustness (api.md): adversarial batches,
// linear-region certificates and robustness reports. Options are parsed and checked here (422
// before any compute starts) from librelureg's table of the attacks and their options
// (attack.h), which also drives the echo; librelureg resolves and computes.
#include <math.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pool.h"
#include "attack_members.h"
#include "routes.h"

// ---- the attacks and their options ----

// The attacks, their options and which attack takes what are librelureg's table (attack.h,
// rr_attack_infos / rr_attack_options): it drives the parsing and the echo below. What stays
// here is transport: the JSON members a request may carry (attack_members.h) and the lane an
// attack runs in (cost.c, rrd_cost_long_attack).

// "fgsm, pgd, ..., autoattack" into buf.
static const char *attack_names(char *buf, size_t cap)
{
    const rr_attack_info *ai;
    const size_t n = rr_attack_infos(&ai);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", ai[i].name);
    return buf;
}

// broken_by as JSON: stage names, null for none.
static json_t *stage_array(const int *bb, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *s = bb[i] >= 0 ? rr_attack_name_string((rr_attack_name)bb[i]) : NULL;
        json_array_append_new(a, s ? json_string(s) : json_null());
    }
    return a;
}

typedef struct opts {
    rr_attack_params ap; // resolved
    int64_t *targets;    // owned
    json_t *echo;        // the options as answered (resolved defaults, seed)
    rr_norm norm;        // certify / robustness
    double *eps;         // robustness
    size_t neps;
    size_t sample_offset; // robustness: the global index of inputs[0] (shards)
    bool per_sample;      // robustness: answer the per-sample outcomes too
} opts;

static void free_opts(void *p)
{
    opts *o = p;
    if (!o)
        return;
    free(o->targets);
    free(o->eps);
    json_decref(o->echo);
    free(o);
}

static const char *norm_name(rr_norm n)
{
    return n == RR_NORM_L2 ? "l2" : "linf";
}

static bool parse_norm(json_t *v, rr_norm *n, rr_norm dflt, rrd_out *out)
{
    const char *s = json_string_value(v);
    if (!v)
        *n = dflt;
    else if (s && !strcmp(s, "linf"))
        *n = RR_NORM_LINF;
    else if (s && !strcmp(s, "l2"))
        *n = RR_NORM_L2;
    else
        return rrd_invalid(out, "norm", "norm must be \"linf\" or \"l2\"");
    return true;
}

// ---- parsing ----

// The attack that "attack" names.
static const rr_attack_info *parse_name(json_t *obj, rrd_out *out)
{
    char names[200];
    const char *name = json_string_value(json_object_get(obj, "attack"));
    rr_attack_name id;
    if (!name) {
        rrd_invalid(out, "attack", "attack must be one of %s", attack_names(names, sizeof names));
    } else if (!rr_attack_name_parse(name, &id)) {
        size_t m = 0;
        const char *near = rrd_suggest(name, attack_names(names, sizeof names), &m);
        if (near)
            rrd_invalid(out, "attack", "unknown attack '%.64s': did you mean '%.*s'? (%s)", name,
                        (int)m, near, names);
        else
            rrd_invalid(out, "attack", "unknown attack '%.64s' (%s)", name, names);
    } else {
        return rr_attack_info_of(id);
    }
    return NULL;
}

// One option into its field of p (v present).
static bool parse_option(const rr_attack_option *op, json_t *v, int max_steps, rr_attack_params *p,
                         rrd_out *out)
{
    void *field = (char *)p + op->offset;
    const char *sv = json_string_value(v);
    switch (op->type) {
        case RR_ATTACK_OPTION_NORM:
            return parse_norm(v, field, RR_NORM_LINF, out);
        case RR_ATTACK_OPTION_NUMBER:
            if (rrd_json_f32_overflow(v, op->name, out))
                return false;
            if (!json_is_number(v) || !isfinite(json_number_value(v)))
                return rrd_invalid(out, op->name, "%s must be a number", op->name);
            *(double *)field = json_number_value(v);
            return true;
        case RR_ATTACK_OPTION_COUNT:
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > max_steps)
                return rrd_invalid(out, op->name, "%s must be an integer in [1, %d]", op->name,
                                   max_steps);
            *(int *)field = (int)json_integer_value(v);
            return true;
        case RR_ATTACK_OPTION_BOOL:
            if (!json_is_boolean(v))
                return rrd_invalid(out, op->name, "%s must be true or false", op->name);
            *(int *)field = json_is_true(v);
            return true;
        case RR_ATTACK_OPTION_SUITE:
            if (!rr_attack_takes(p->name, op))
                return rrd_invalid(out, "suite", "suite is an option of autoattack only");
            if (sv && !strcmp(sv, "standard"))
                *(rr_autoattack_suite *)field = RR_SUITE_STANDARD;
            else if (sv && !strcmp(sv, "fast"))
                *(rr_autoattack_suite *)field = RR_SUITE_FAST;
            else
                return rrd_invalid(out, "suite", "suite must be \"standard\" or \"fast\"");
            return true;
        case RR_ATTACK_OPTION_STAGES:
            return true; // not a member: rrd_only_members refused it
    }
    return true;
}

// "targeted" and "target_labels" (B classes in [0, K)) into p; the labels go to o->targets.
static bool parse_targets(json_t *obj, const rr_attack_info *a, size_t B, int K,
                          rr_attack_params *p, opts *o, rrd_out *out)
{
    const char *name = a->name;
    json_t *tg = json_object_get(obj, "targeted"), *tl = json_object_get(obj, "target_labels");
    if (tg && !json_is_boolean(tg))
        return rrd_invalid(out, "targeted", "targeted must be true or false");
    if (!json_is_true(tg) && tl && a->id == RR_ATTACK_FAB_T)
        return rrd_invalid(out, "target_labels",
                           "fab_t chooses its own targets (the classes ranked 2nd to (n+1)th "
                           "by the clean logits, n = min(9, K - 1))");
    if (!json_is_true(tg) && tl)
        return rrd_invalid(out, "target_labels", "target_labels needs \"targeted\": true");
    if (!json_is_true(tg))
        return true;
    // autoattack's targets are refused by rr_attack_resolve, after the labels and the ranges
    // are checked (which its answers have always named first).
    if (a->targets == RR_ATTACK_TARGETS_NONE && a->id != RR_ATTACK_AUTOATTACK)
        return rrd_invalid(out, "targeted", "%s is untargeted", name);
    if (a->targets == RR_ATTACK_TARGETS_OWN)
        return rrd_invalid(out, "targeted",
                           "%s chooses its own targets (the classes ranked 2nd to (n+1)th "
                           "by the clean logits, n = min(9, K - 1))",
                           name);
    if (!json_is_array(tl) || json_array_size(tl) != B)
        return rrd_invalid(out, "target_labels", "targeted requires target_labels, %zu integers",
                           B);
    o->targets = malloc(B * sizeof(int64_t));
    if (!o->targets) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return false;
    }
    for (size_t b = 0; b < B; b++) {
        json_t *v = json_array_get(tl, b);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= K)
            return rrd_invalid(out, "target_labels",
                               "target_labels[%zu] must be an integer in [0, %d)", b, K);
        o->targets[b] = json_integer_value(v);
    }
    p->targeted = true;
    p->target_labels = o->targets;
    return true;
}

// ---- echo ----

// An option's resolved value as answered; NULL when `if_set` and it is not set.
static json_t *option_json(const rr_attack_option *op, const rr_attack_params *a, bool if_set)
{
    const void *field = (const char *)a + op->offset;
    switch (op->type) {
        case RR_ATTACK_OPTION_NORM:
            return json_string(norm_name(*(const rr_norm *)field));
        case RR_ATTACK_OPTION_NUMBER: {
            const double v = *(const double *)field;
            return if_set && !isfinite(v) ? NULL : json_real(v);
        }
        case RR_ATTACK_OPTION_COUNT: {
            const int v = *(const int *)field;
            return if_set && v <= 0 ? NULL : json_integer(v);
        }
        case RR_ATTACK_OPTION_BOOL:
            return json_boolean(*(const int *)field);
        case RR_ATTACK_OPTION_SUITE:
            return json_string(a->suite == RR_SUITE_FAST ? "fast" : "standard");
        case RR_ATTACK_OPTION_STAGES: {
            const rr_attack_name *st;
            const size_t ns = rr_autoattack_stages(a->suite, &st);
            json_t *sa = json_array();
            for (size_t k = 0; k < ns; k++)
                json_array_append_new(sa, json_string(rr_attack_name_string(st[k])));
            return sa;
        }
    }
    return NULL;
}

// The attack's own options, resolved, in the order of its uses (but those a report sets, in a
// report); then targeted (not in a report) and seed.
static json_t *echo(const rr_attack_info *k, const rr_attack_params *a, bool in_report)
{
    json_t *e = json_pack("{s:s}", "attack", k->name);
    for (size_t i = 0; i < k->n_uses; i++) {
        const rr_attack_use *u = &k->uses[i];
        if (in_report && (u->flags & RR_ATTACK_USE_REPORT_SETS))
            continue;
        json_t *v = option_json(u->option, a, u->flags & RR_ATTACK_USE_IF_SET);
        if (v)
            json_object_set_new(e, u->option->name, v);
    }
    if (!in_report)
        json_object_set_new(e, "targeted", json_boolean(a->targeted));
    json_object_set_new(e, "seed", json_integer((json_int_t)a->seed));
    return e;
}

// The attack options of `obj` (the /attacks body, or /robustness' "attack" object) into
// o->ap, resolved, and o->echo. With in_report, epsilon, targeted and target_labels are not
// accepted and seed is read here.
static bool parse_attack(json_t *obj, bool in_report, uint64_t top_seed, size_t B, int K,
                         int max_steps, opts *o, rrd_out *out)
{
    if (in_report && !rrd_only_members(obj, REPORT_ATTACK_MEMBERS, "the attack object", out))
        return false;
    const rr_attack_info *a = parse_name(obj, out);
    if (a == NULL)
        return false;
    rr_attack_params p;
    rr_attack_params_init(&p, a->id);
    const rr_attack_option *ops;
    const size_t n_ops = rr_attack_options(&ops);
    for (size_t k = 0; k < n_ops; k++) {
        json_t *v = json_object_get(obj, ops[k].name);
        if (v && !parse_option(&ops[k], v, max_steps, &p, out))
            return false;
    }
    p.seed = top_seed;
    json_t *sd = json_object_get(obj, "seed");
    if (in_report && sd && (!json_is_integer(sd) || json_integer_value(sd) < 0))
        return rrd_invalid(out, "seed", "seed must be an integer >= 0");
    if (in_report && sd)
        p.seed = (uint64_t)json_integer_value(sd);
    if (!parse_targets(obj, a, B, K, &p, o, out))
        return false;
    p.max_steps = max_steps;
    rr_error err = {0};
    if (rr_attack_resolve(&p, K, &o->ap, &err) != RR_OK) {
        rrd_problem_from(out, err.code, &err);
        return false;
    }
    o->echo = echo(a, &o->ap, in_report);
    return true;
}

static json_t *bool_array(const bool *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_boolean(v[i]));
    return a;
}

static json_t *num_array(const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, rrd_json_number(v[i]));
    return a;
}

// ---- /attacks ----

static void run_attack(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    opts *o = c->extra;
    rr_model *m = c->entry->model;
    const size_t B = c->B, D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, m, B, K, &err);
    float *adv = malloc(B * D * sizeof(float)), *l2 = malloc(B * sizeof(float)),
          *linf = malloc(B * sizeof(float));
    bool *succ = malloc(B * sizeof(bool));
    int64_t *pred = malloc(B * sizeof(int64_t));
    int *it = malloc(B * sizeof(int));
    const bool ens = o->ap.name == RR_ATTACK_AUTOATTACK;
    int *bb = ens ? malloc(B * sizeof(int)) : NULL;
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!adv || !l2 || !linf || !succ || !pred || !it || (ens && !bb)))
        st = rr_error_set(&err, RR_ENOMEM, NULL, "out of memory for the attack");
    rr_attack_result r = {adv, succ, l2, linf, pred, it, 0, 0, bb};
    if (st == RR_OK) {
        rr_attack_params p = o->ap;
        p.control = rrd_ctl_control(&t->ctl);
        st = rr_attack(m, ws, c->x, c->y, B, &p, &r, &err);
    }
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        free(adv);
    } else {
        rrd_resp resp;
        rrd_resp_init(&resp, t->binary);
        json_object_update(resp.root, o->echo);
        const rr_shape sx = rrd_compute_shape(c, 0);
        rrd_resp_tensor(&resp, resp.root, "adversarial", "/adversarial", &sx, adv, true);
        json_t *l2a = json_array(), *lia = json_array(), *pa = json_array(), *ia = json_array();
        for (size_t b = 0; b < B; b++) {
            json_array_append_new(l2a, rrd_json_number(l2[b]));
            json_array_append_new(lia, rrd_json_number(linf[b]));
            json_array_append_new(pa, json_integer(pred[b]));
            json_array_append_new(ia, json_integer(it[b]));
        }
        json_object_set_new(resp.root, "perturbation_norms",
                            json_pack("{s:o, s:o}", "l2", l2a, "linf", lia));
        json_object_set_new(resp.root, "success", bool_array(succ, B));
        json_object_set_new(resp.root, "predictions", pa);
        json_object_set_new(resp.root, "iterations", ia);
        if (ens)
            json_object_set_new(resp.root, "broken_by", stage_array(bb, B));
        json_object_set_new(resp.root, "gradient_calls", json_integer(r.gradient_calls));
        json_object_set_new(resp.root, "forward_calls", json_integer(r.forward_calls));
        rrd_compute_stamp(c, resp.root);
        rrd_resp_finish(&resp, 200, out);
    }
    free(l2);
    free(linf);
    free(succ);
    free(pred);
    free(it);
    free(bb);
}

// An epsilon larger than the model's input box is a mistake (a value in other units, as 8
// for 8/255): the ball then covers every valid input and the answer means nothing. The box
// [lo, hi]^D has linf diameter hi - lo and l2 diameter (hi - lo) sqrt(D). Models without an
// input_range accept any epsilon.
static bool eps_within_range(const rrd_compute *c, rr_norm norm, double eps, const char *field,
                             rrd_out *out)
{
    float lo, hi;
    if (!rr_model_input_range(c->entry->model, &lo, &hi))
        return true;
    const double span = (double)hi - (double)lo;
    const bool l2 = norm == RR_NORM_L2;
    const double most = l2 ? span * sqrt((double)rr_model_input_size(c->entry->model)) : span;
    if (!(eps > most))
        return true;
    rrd_problem_out(out, RRD_P_INVALID, field,
                    "%s = %g is larger than the input range allows: model '%s' has input_range "
                    "[%g, %g], so no two valid inputs are more than %g apart in %s; the %s ball "
                    "would cover every input (give epsilon in the units of the inputs, e.g. "
                    "8/255 = 0.0314 rather than 8)",
                    field, eps, c->entry->name, (double)lo, (double)hi, most, l2 ? "l2" : "linf",
                    l2 ? "l2" : "linf");
    return false;
}

static bool parse_attacks(rrd_compute *c, const rrd_config *cfg, rrd_out *out)
{
    opts *o = c->extra;
    const int K = rr_model_num_classes(c->entry->model);
    if (!parse_attack(c->doc.root, false, c->seed, c->B, K, cfg->max_steps, o, out))
        return false;
    json_t *ev = json_object_get(c->doc.root, "epsilon");
    return !ev || eps_within_range(c, o->ap.norm, json_number_value(ev), "epsilon", out);
}

// "attacks/NAME": the attack's forward-pass equivalents; C&W, EAD, ZOO and AutoAttack always
// run in the batch lane.
static void cost_attacks(const rrd_compute *c, rrd_route_cost *q)
{
    const opts *o = c->extra;
    rrd_cost_class_attack(q->cls, sizeof q->cls, "attacks", &o->ap);
    q->out_values = (double)c->B * (double)rr_model_input_size(c->entry->model);
    q->passes = rrd_cost_passes_attack(&o->ap, rr_model_num_classes(c->entry->model));
    q->long_kind = rrd_cost_long_attack(o->ap.name);
}

const rrd_compute_route rrd_route_attacks = {
    .name = "attacks",
    .what = "an attacks request",
    .members = ATTACKS_MEMBERS,
    .labels_required = true,
    .opts_size = sizeof(opts),
    .opts_free = free_opts,
    .parse = parse_attacks,
    .cost = cost_attacks,
    .run = run_attack,
};

// ---- /certify ----

static void run_certify(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    opts *o = c->extra;
    rr_model *m = c->entry->model;
    const size_t B = c->B, D = rr_model_input_size(m);
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, m, B, D < 128 ? D : 128, &err);
    double *d = malloc(3 * B * sizeof(double));
    float *adv = malloc(B * D * sizeof(float));
    int64_t *pred = malloc(B * sizeof(int64_t));
    bool *exact = malloc(B * sizeof(bool));
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!d || !adv || !pred || !exact))
        st = rr_error_set(&err, RR_ENOMEM, NULL, "out of memory for certificates");
    if (st == RR_OK) {
        rr_certify_params p = {
            .norm = o->norm, .labels = c->y, .control = rrd_ctl_control(&t->ctl)};
        rr_certify_result cr = {pred, d, d + B, d + 2 * B, exact, adv, NULL, NULL, NULL, NULL};
        st = rr_certify(m, ws, c->x, B, &p, &cr, &err);
    }
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        free(adv);
    } else {
        rrd_resp resp;
        rrd_resp_init(&resp, t->binary);
        json_object_set_new(resp.root, "norm", json_string(o->norm == RR_NORM_L2 ? "l2" : "linf"));
        json_t *pa = json_array();
        for (size_t b = 0; b < B; b++)
            json_array_append_new(pa, json_integer(pred[b]));
        json_object_set_new(resp.root, "predictions", pa);
        json_object_set_new(resp.root, "decision_distance", num_array(d, B));
        json_object_set_new(resp.root, "region_distance", num_array(d + B, B));
        json_object_set_new(resp.root, "certified_radius", num_array(d + 2 * B, B));
        json_object_set_new(resp.root, "exact", bool_array(exact, B));
        const rr_shape sx = rrd_compute_shape(c, 0);
        rrd_resp_tensor(&resp, resp.root, "adversarial", "/adversarial", &sx, adv, true);
        rrd_compute_stamp(c, resp.root);
        rrd_resp_finish(&resp, 200, out);
    }
    free(d);
    free(pred);
    free(exact);
}

static bool parse_certify(rrd_compute *c, const rrd_config *cfg, rrd_out *out)
{
    (void)cfg;
    opts *o = c->extra;
    return parse_norm(json_object_get(c->doc.root, "norm"), &o->norm, RR_NORM_L2, out);
}

static void cost_certify(const rrd_compute *c, rrd_route_cost *q)
{
    q->out_values = (double)c->B * (double)rr_model_input_size(c->entry->model);
    q->passes = rrd_cost_passes_certify(rr_model_num_classes(c->entry->model));
}

const rrd_compute_route rrd_route_certify = {
    .name = "certify",
    .what = "a certify request",
    .members = "inputs labels norm version seed async timeout_ms",
    .opts_size = sizeof(opts),
    .opts_free = free_opts,
    .parse = parse_certify,
    .cost = cost_certify,
    .run = run_certify,
};

// ---- /robustness ----

// An exact double as a decimal string (17 significant digits; "nan", "inf", "-inf"): answers
// print numbers to 9 digits, and a merge of shards must sum the very doubles the daemon sums.
static json_t *exact_number(double v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.17g", v);
    return json_string(buf);
}

// "per_sample": the outcomes a report is summarized from (rr_robustness_sample), so that
// reports of shards merge into the whole batch's (api.md, sharded robustness).
static json_t *per_sample_json(const rr_robustness_sample *s, size_t B, size_t E)
{
    json_t *c = json_array(), *z = json_array(), *nf = json_array(), *br = json_array(),
           *rho = json_array(), *cr = json_array(), *bb = json_array();
    for (size_t i = 0; i < B; i++) {
        json_array_append_new(c, json_boolean(s[i].correct));
        json_array_append_new(z, json_boolean(s[i].zero_gradient));
        json_array_append_new(nf, json_boolean(s[i].nonfinite_gradient));
        json_t *bits = json_array();
        for (size_t e = 0; e < E; e++)
            json_array_append_new(bits, json_boolean(s[i].broken >> e & 1));
        json_array_append_new(br, bits);
        json_array_append_new(rho, exact_number(s[i].deepfool_rho));
        json_array_append_new(cr, exact_number(s[i].certified_radius));
        const char *n =
            s[i].broken_by >= 0 ? rr_attack_name_string((rr_attack_name)s[i].broken_by) : NULL;
        json_array_append_new(bb, n ? json_string(n) : json_null());
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "correct", c, "zero_gradient", z,
                     "nonfinite_gradient", nf, "broken", br, "deepfool_rho", rho,
                     "certified_radius", cr, "broken_by", bb);
}

static void run_robustness(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    opts *o = c->extra;
    rr_model *m = c->entry->model;
    const size_t B = c->B, D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const size_t T = D < 128 ? D : 128;
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, m, B, K > T ? K : T, &err);
    double *ra = malloc(o->neps * sizeof(double)), *mine = malloc(B * sizeof(double));
    const bool ens = o->ap.name == RR_ATTACK_AUTOATTACK;
    int *bb = ens ? malloc(B * sizeof(int)) : NULL;
    rr_robustness_sample *smp = o->per_sample ? malloc((B ? B : 1) * sizeof(*smp)) : NULL;
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!ra || !mine || (ens && !bb) || (o->per_sample && !smp)))
        st = rr_error_set(&err, RR_ENOMEM, NULL, "out of memory for the report");
    rr_robustness_result res = {
        .robust_accuracy = ra, .per_sample_min_epsilon = mine, .broken_by = bb, .samples = smp};
    if (st == RR_OK) {
        rr_robustness_params p = {.norm = o->norm,
                                  .epsilons = o->eps,
                                  .n_eps = o->neps,
                                  .attack = o->ap,
                                  .control = rrd_ctl_control(&t->ctl),
                                  .sample_offset = o->sample_offset};
        st = rr_robustness(m, ws, c->x, c->y, B, &p, &res, &err);
    }
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
    } else {
        json_t *doc = json_object();
        json_object_set_new(doc, "norm", json_string(o->norm == RR_NORM_L2 ? "l2" : "linf"));
        json_object_set_new(doc, "epsilons", num_array(o->eps, o->neps));
        json_object_set(doc, "attack", o->echo);
        json_object_set_new(doc, "clean_accuracy", json_real(res.clean_accuracy));
        json_object_set_new(doc, "robust_accuracy", num_array(ra, o->neps));
        json_object_set_new(doc, "deepfool_rho", rrd_json_number(res.deepfool_rho));
        json_object_set_new(doc, "mean_certified_radius",
                            rrd_json_number(res.mean_certified_radius));
        json_object_set_new(doc, "per_sample_min_epsilon", num_array(mine, B));
        if (ens)
            json_object_set_new(doc, "broken_by", stage_array(bb, B));
        const rr_robustness_flags *f = &res.flags;
        json_object_set_new(doc, "flags",
                            json_pack("{s:b, s:f, s:f, s:i, s:b, s:i}", "flagged", f->flagged,
                                      "zero_gradient_fraction", f->zero_gradient_fraction,
                                      "nonfinite_gradient_fraction", f->nonfinite_gradient_fraction,
                                      "black_box_only", f->black_box_only, "non_monotone",
                                      f->non_monotone, "certified_broken", f->certified_broken));
        json_object_set_new(doc, "gradient_calls", json_integer(res.gradient_calls));
        json_object_set_new(doc, "forward_calls", json_integer(res.forward_calls));
        if (o->sample_offset)
            json_object_set_new(doc, "sample_offset", json_integer((json_int_t)o->sample_offset));
        if (o->per_sample)
            json_object_set_new(doc, "per_sample", per_sample_json(smp, B, o->neps));
        rrd_compute_stamp(c, doc);
        rrd_out_json(out, 200, doc);
    }
    free(ra);
    free(mine);
    free(bb);
    free(smp);
}

// "epsilons": 1 to 64 numbers >= 0, each within the model's input range.
static bool parse_epsilons(rrd_compute *c, json_t *eps, opts *o, rrd_out *out)
{
    if (!json_is_array(eps) || json_array_size(eps) < 1 || json_array_size(eps) > 64)
        return rrd_invalid(out, "epsilons", "epsilons must be an array of 1 to 64 numbers");
    o->neps = json_array_size(eps);
    o->eps = malloc(o->neps * sizeof(double));
    if (!o->eps) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < o->neps; i++) {
        json_t *v = json_array_get(eps, i);
        if (rrd_json_f32_overflow(v, "epsilons", out))
            return false;
        if (!json_is_number(v) || !(json_number_value(v) >= 0) || !isfinite(json_number_value(v)))
            return rrd_invalid(out, "epsilons", "epsilons[%zu] must be a number >= 0", i);
        o->eps[i] = json_number_value(v);
        char field[32];
        snprintf(field, sizeof field, "epsilons[%zu]", i);
        if (!eps_within_range(c, o->norm, o->eps[i], field, out))
            return false;
    }
    return true;
}

// "attack": an object (default {"attack": "pgd"}) of /attacks' options but inputs, labels and
// epsilon, whose norm, when given, is the report's.
static bool parse_report_attack(rrd_compute *c, json_t *atk, int max_steps, opts *o, rrd_out *out)
{
    if (!json_is_object(atk))
        return rrd_invalid(out, "attack", "attack must be an object");
    json_t *an = json_object_get(atk, "norm");
    rr_norm anorm = o->norm;
    if (an && !parse_norm(an, &anorm, o->norm, out))
        return false;
    if (an && anorm != o->norm)
        return rrd_invalid(out, "attack.norm", "attack.norm must equal the report's norm");
    json_t *copy = json_deep_copy(atk);
    json_object_set_new(copy, "norm", json_string(norm_name(o->norm)));
    const int K = rr_model_num_classes(c->entry->model);
    const bool ok = parse_attack(copy, true, c->seed, c->B, K, max_steps, o, out);
    json_decref(copy);
    return ok;
}

static bool parse_robustness(rrd_compute *c, const rrd_config *cfg, rrd_out *out)
{
    opts *o = c->extra;
    json_t *root = c->doc.root, *atk = json_object_get(root, "attack");
    if (!parse_norm(json_object_get(root, "norm"), &o->norm, RR_NORM_LINF, out) ||
        !parse_epsilons(c, json_object_get(root, "epsilons"), o, out))
        return false;
    json_t *off = json_object_get(root, "sample_offset"), *ps = json_object_get(root, "per_sample");
    if (off && (!json_is_integer(off) || json_integer_value(off) < 0 ||
                json_integer_value(off) > ((json_int_t)1 << 53)))
        return rrd_invalid(out, "sample_offset", "sample_offset must be an integer >= 0");
    if (ps && !json_is_boolean(ps))
        return rrd_invalid(out, "per_sample", "per_sample must be a boolean");
    o->sample_offset = off ? (size_t)json_integer_value(off) : 0;
    o->per_sample = ps && json_is_true(ps);
    json_t *dflt = atk ? NULL : json_pack("{s:s}", "attack", "pgd");
    const bool ok = parse_report_attack(c, atk ? atk : dflt, cfg->max_steps, o, out);
    json_decref(dflt);
    return ok;
}

// "robustness/NAME": the clean pass, the attack at every epsilon, the certificate and DeepFool.
static void cost_robustness(const rrd_compute *c, rrd_route_cost *q)
{
    const opts *o = c->extra;
    const int K = rr_model_num_classes(c->entry->model);
    rrd_cost_class_attack(q->cls, sizeof q->cls, "robustness", &o->ap);
    rr_attack_params df = {.name = RR_ATTACK_DEEPFOOL};
    q->passes = 1 + (double)o->neps * rrd_cost_passes_attack(&o->ap, K) +
                rrd_cost_passes_certify(K) + rrd_cost_passes_attack(&df, K);
}

const rrd_compute_route rrd_route_robustness = {
    .name = "robustness",
    .what = "a robustness request",
    .members = "inputs labels norm epsilons attack sample_offset per_sample version seed async "
               "timeout_ms",
    .labels_required = true,
    .long_kind = true,
    .opts_size = sizeof(opts),
    .opts_free = free_opts,
    .parse = parse_robustness,
    .cost = cost_robustness,
    .run = run_robustness,
};
