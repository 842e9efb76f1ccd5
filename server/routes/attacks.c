// POST /v1/models/{name}/attacks, /certify and /robustness (api.md): adversarial batches,
// linear-region certificates and robustness reports. Options are parsed and range-checked
// here (422 before any compute starts); librelureg computes.
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pool.h"
#include "routes.h"

#define ATTACK_NAMES                                                                               \
    "fgsm, pgd, bim, deepfool, cw_l2, jsma, ead, zoo, apgd_ce, apgd_t, fab_t, square, autoattack"

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

#define BAD(field, ...)                                                                            \
    do {                                                                                           \
        rrd_problem_out(out, RRD_P_INVALID, field, __VA_ARGS__);                                   \
        return false;                                                                              \
    } while (0)

static bool parse_norm(json_t *v, rr_norm *n, rr_norm dflt, rrd_out *out)
{
    if (!v) {
        *n = dflt;
        return true;
    }
    const char *s = json_string_value(v);
    if (s && !strcmp(s, "linf"))
        *n = RR_NORM_LINF;
    else if (s && !strcmp(s, "l2"))
        *n = RR_NORM_L2;
    else
        BAD("norm", "norm must be \"linf\" or \"l2\"");
    return true;
}

// The attack options of `obj` (the /attacks body, or /robustness' "attack" object). With
// in_report, epsilon, targeted and target_labels are not accepted and seed is read here.
static bool parse_attack(json_t *obj, bool in_report, uint64_t top_seed, size_t B, int K,
                         int max_steps, opts *o, rrd_out *out)
{
    static const char *NUMS[] = {"epsilon", "step_size",  "overshoot", "learning_rate",
                                 "c",       "confidence", "theta",     "gamma",
                                 "beta",    "h",          "p_init"};
    static const char *INTS[] = {"steps", "restarts", "max_iter", "binary_search_steps", "queries"};
    const char *allowed =
        in_report ? "attack norm step_size steps random_start restarts seed overshoot "
                    "max_iter binary_search_steps learning_rate c confidence theta "
                    "gamma beta h queries p_init suite"
                  : "inputs labels version async timeout_ms attack norm epsilon step_size steps "
                    "random_start restarts targeted target_labels seed overshoot "
                    "max_iter binary_search_steps learning_rate c confidence theta "
                    "gamma beta h queries p_init suite";
    if (!rrd_only_members(obj, allowed, in_report ? "the attack object" : "an attacks request",
                          out))
        return false;
    const char *name = json_string_value(json_object_get(obj, "attack"));
    if (!name)
        BAD("attack", "attack must be one of " ATTACK_NAMES);
    rr_attack_name id;
    if (!rr_attack_name_parse(name, &id)) {
        size_t m = 0;
        const char *near = rrd_suggest(name, ATTACK_NAMES, &m);
        if (near)
            BAD("attack", "unknown attack '%.64s': did you mean '%.*s'? (" ATTACK_NAMES ")", name,
                (int)m, near);
        BAD("attack", "unknown attack '%.64s' (" ATTACK_NAMES ")", name);
    }
    rr_attack_params p;
    rr_attack_params_init(&p, id);
    if (!parse_norm(json_object_get(obj, "norm"), &p.norm, RR_NORM_LINF, out))
        return false;
    double *dst[] = {&p.epsilon, &p.step_size,  &p.overshoot, &p.learning_rate,
                     &p.c,       &p.confidence, &p.theta,     &p.gamma,
                     &p.beta,    &p.h,          &p.p_init};
    for (size_t k = 0; k < sizeof NUMS / sizeof NUMS[0]; k++) {
        json_t *v = json_object_get(obj, NUMS[k]);
        if (!v)
            continue;
        if (rrd_json_f32_overflow(v, NUMS[k], out))
            return false;
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            BAD(NUMS[k], "%s must be a number", NUMS[k]);
        *dst[k] = json_number_value(v);
    }
    int *idst[] = {&p.steps, &p.restarts, &p.max_iter, &p.binary_search_steps, &p.queries};
    for (size_t k = 0; k < sizeof INTS / sizeof INTS[0]; k++) {
        json_t *v = json_object_get(obj, INTS[k]);
        if (!v)
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max_steps)
            BAD(INTS[k], "%s must be an integer in [1, %d]", INTS[k], max_steps);
        *idst[k] = (int)json_integer_value(v);
    }
    json_t *rs = json_object_get(obj, "random_start");
    if (rs) {
        if (!json_is_boolean(rs))
            BAD("random_start", "random_start must be true or false");
        p.random_start = json_is_true(rs);
    }
    json_t *su = json_object_get(obj, "suite");
    if (su) {
        const char *sn = json_string_value(su);
        if (p.name != RR_ATTACK_AUTOATTACK)
            BAD("suite", "suite is an option of autoattack only");
        if (sn && !strcmp(sn, "standard"))
            p.suite = RR_SUITE_STANDARD;
        else if (sn && !strcmp(sn, "fast"))
            p.suite = RR_SUITE_FAST;
        else
            BAD("suite", "suite must be \"standard\" or \"fast\"");
    }
    p.seed = top_seed;
    json_t *sd = json_object_get(obj, "seed");
    if (in_report && sd) {
        if (!json_is_integer(sd) || json_integer_value(sd) < 0)
            BAD("seed", "seed must be an integer >= 0");
        p.seed = (uint64_t)json_integer_value(sd);
    }
    json_t *tg = json_object_get(obj, "targeted"), *tl = json_object_get(obj, "target_labels");
    if (tg && !json_is_boolean(tg))
        BAD("targeted", "targeted must be true or false");
    if (json_is_true(tg)) {
        if (p.name == RR_ATTACK_DEEPFOOL || p.name == RR_ATTACK_APGD_CE)
            BAD("targeted", "%s is untargeted", name);
        if (p.name == RR_ATTACK_APGD_T || p.name == RR_ATTACK_FAB_T)
            BAD("targeted",
                "%s chooses its own targets (the classes ranked 2nd to (n+1)th "
                "by the clean logits, n = min(9, K - 1))",
                name);
        if (!json_is_array(tl) || json_array_size(tl) != B)
            BAD("target_labels", "targeted requires target_labels, %zu integers", B);
        o->targets = malloc(B * sizeof(int64_t));
        if (!o->targets) {
            rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
            return false;
        }
        for (size_t b = 0; b < B; b++) {
            json_t *v = json_array_get(tl, b);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= K)
                BAD("target_labels", "target_labels[%zu] must be an integer in [0, %d)", b, K);
            o->targets[b] = json_integer_value(v);
        }
        p.targeted = true;
        p.target_labels = o->targets;
    } else if (tl && p.name == RR_ATTACK_FAB_T) {
        BAD("target_labels", "fab_t chooses its own targets (the classes ranked 2nd to (n+1)th "
                             "by the clean logits, n = min(9, K - 1))");
    } else if (tl) {
        BAD("target_labels", "target_labels needs \"targeted\": true");
    }
    p.max_steps = max_steps;
    rr_error err = {0};
    if (rr_attack_resolve(&p, K, &o->ap, &err) != RR_OK) {
        rrd_problem_from(out, err.code, &err);
        return false;
    }
    // The echo: the attack's own options, resolved.
    const rr_attack_params *a = &o->ap;
    json_t *e = json_pack("{s:s}", "attack", name);
    switch (a->name) {
        case RR_ATTACK_FGSM:
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            if (!in_report)
                json_object_set_new(e, "epsilon", json_real(a->epsilon));
            break;
        case RR_ATTACK_PGD:
        case RR_ATTACK_BIM:
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            if (!in_report)
                json_object_set_new(e, "epsilon", json_real(a->epsilon));
            json_object_set_new(e, "step_size", json_real(a->step_size));
            json_object_set_new(e, "steps", json_integer(a->steps));
            json_object_set_new(e, "random_start", json_boolean(a->random_start));
            json_object_set_new(e, "restarts", json_integer(a->restarts));
            break;
        case RR_ATTACK_APGD_CE:
        case RR_ATTACK_APGD_T:
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            if (!in_report)
                json_object_set_new(e, "epsilon", json_real(a->epsilon));
            json_object_set_new(e, "steps", json_integer(a->steps));
            json_object_set_new(e, "restarts", json_integer(a->restarts));
            break;
        case RR_ATTACK_DEEPFOOL:
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            json_object_set_new(e, "overshoot", json_real(a->overshoot));
            json_object_set_new(e, "max_iter", json_integer(a->max_iter));
            break;
        case RR_ATTACK_CW_L2:
        case RR_ATTACK_EAD:
        case RR_ATTACK_ZOO:
            json_object_set_new(e, "binary_search_steps", json_integer(a->binary_search_steps));
            json_object_set_new(e, "max_iter", json_integer(a->max_iter));
            json_object_set_new(e, "learning_rate", json_real(a->learning_rate));
            json_object_set_new(e, "c", json_real(a->c));
            json_object_set_new(e, "confidence", json_real(a->confidence));
            if (a->name == RR_ATTACK_EAD)
                json_object_set_new(e, "beta", json_real(a->beta));
            if (a->name == RR_ATTACK_ZOO)
                json_object_set_new(e, "h", json_real(a->h));
            break;
        case RR_ATTACK_JSMA:
            json_object_set_new(e, "theta", json_real(a->theta));
            json_object_set_new(e, "gamma", json_real(a->gamma));
            break;
        case RR_ATTACK_FAB_T:
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            if (!in_report && isfinite(a->epsilon))
                json_object_set_new(e, "epsilon", json_real(a->epsilon));
            json_object_set_new(e, "steps", json_integer(a->steps));
            json_object_set_new(e, "restarts", json_integer(a->restarts));
            break;
        case RR_ATTACK_AUTOATTACK: {
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            if (!in_report)
                json_object_set_new(e, "epsilon", json_real(a->epsilon));
            json_object_set_new(e, "suite",
                                json_string(a->suite == RR_SUITE_FAST ? "fast" : "standard"));
            const rr_attack_name *st;
            const size_t ns = rr_autoattack_stages(a->suite, &st);
            json_t *sa = json_array();
            for (size_t k = 0; k < ns; k++)
                json_array_append_new(sa, json_string(rr_attack_name_string(st[k])));
            json_object_set_new(e, "stages", sa);
            if (a->steps > 0)
                json_object_set_new(e, "steps", json_integer(a->steps));
            if (a->restarts > 0)
                json_object_set_new(e, "restarts", json_integer(a->restarts));
            if (a->queries > 0)
                json_object_set_new(e, "queries", json_integer(a->queries));
            break;
        }
        case RR_ATTACK_SQUARE:
            json_object_set_new(e, "norm", json_string(a->norm == RR_NORM_L2 ? "l2" : "linf"));
            if (!in_report)
                json_object_set_new(e, "epsilon", json_real(a->epsilon));
            json_object_set_new(e, "queries", json_integer(a->queries));
            json_object_set_new(e, "p_init", json_real(a->p_init));
            json_object_set_new(e, "restarts", json_integer(a->restarts));
            break;
    }
    if (!in_report)
        json_object_set_new(e, "targeted", json_boolean(a->targeted));
    json_object_set_new(e, "seed", json_integer((json_int_t)a->seed));
    o->echo = e;
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

static opts *new_opts(rrd_request *r, rrd_compute *c)
{
    opts *o = calloc(1, sizeof *o);
    c->extra = o;
    c->free_extra = free_opts;
    if (!o)
        rrd_problem_out(&r->out, RRD_P_UNAVAILABLE, NULL, "out of memory");
    return o;
}

static void fail(rrd_request *r, rrd_compute *c)
{
    r->responded = true;
    rrd_compute_free(&c->base);
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

void rrd_route_attacks(rrd_request *r)
{
    rrd_compute *c = rrd_compute_parse(r, true, run_attack);
    if (c == NULL)
        return;
    opts *o = new_opts(r, c);
    const int K = rr_model_num_classes(c->entry->model);
    if (!o ||
        !parse_attack(c->doc.root, false, c->seed, c->B, K, r->srv->cfg.max_steps, o, &r->out))
        return fail(r, c);
    json_t *ev = json_object_get(c->doc.root, "epsilon");
    if (ev && !eps_within_range(c, o->ap.norm, json_number_value(ev), "epsilon", &r->out))
        return fail(r, c);
    char cls[40];
    rrd_cost_class_attack(cls, sizeof cls, "attacks", &o->ap);
    c->base.out_values = (double)c->B * (double)rr_model_input_size(c->entry->model);
    rrd_task_estimate(r->srv, &c->base, cls, rrd_cost_passes_attack(&o->ap, K), c->B);
    rrd_compute_dispatch(r, c);
}

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

void rrd_route_certify(rrd_request *r)
{
    rrd_compute *c = rrd_compute_parse(r, false, run_certify);
    if (c == NULL)
        return;
    opts *o = new_opts(r, c);
    if (!o ||
        !rrd_only_members(c->doc.root, "inputs labels norm version seed async timeout_ms",
                          "a certify request", &r->out) ||
        !parse_norm(json_object_get(c->doc.root, "norm"), &o->norm, RR_NORM_L2, &r->out))
        return fail(r, c);
    c->base.out_values = (double)c->B * (double)rr_model_input_size(c->entry->model);
    rrd_task_estimate(r->srv, &c->base, "certify",
                      rrd_cost_passes_certify(rr_model_num_classes(c->entry->model)), c->B);
    rrd_compute_dispatch(r, c);
}

// ---- /robustness ----

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
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!ra || !mine || (ens && !bb)))
        st = rr_error_set(&err, RR_ENOMEM, NULL, "out of memory for the report");
    rr_robustness_result res = {
        .robust_accuracy = ra, .per_sample_min_epsilon = mine, .broken_by = bb};
    if (st == RR_OK) {
        rr_robustness_params p = {.norm = o->norm,
                                  .epsilons = o->eps,
                                  .n_eps = o->neps,
                                  .attack = o->ap,
                                  .control = rrd_ctl_control(&t->ctl)};
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
        rrd_compute_stamp(c, doc);
        rrd_out_json(out, 200, doc);
    }
    free(ra);
    free(mine);
    free(bb);
}

void rrd_route_robustness(rrd_request *r)
{
    rrd_compute *c = rrd_compute_parse(r, true, run_robustness);
    if (c == NULL)
        return;
    opts *o = new_opts(r, c);
    rrd_out *out = &r->out;
    if (!o)
        return fail(r, c);
    json_t *root = c->doc.root, *eps = json_object_get(root, "epsilons");
    json_t *atk = json_object_get(root, "attack");
    if (!rrd_only_members(root, "inputs labels norm epsilons attack version seed async timeout_ms",
                          "a robustness request", out) ||
        !parse_norm(json_object_get(root, "norm"), &o->norm, RR_NORM_LINF, out))
        return fail(r, c);
    if (!json_is_array(eps) || json_array_size(eps) < 1 || json_array_size(eps) > 64) {
        rrd_problem_out(out, RRD_P_INVALID, "epsilons",
                        "epsilons must be an array of 1 to 64 numbers");
        return fail(r, c);
    }
    o->neps = json_array_size(eps);
    o->eps = malloc(o->neps * sizeof(double));
    if (!o->eps) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return fail(r, c);
    }
    for (size_t i = 0; i < o->neps; i++) {
        json_t *v = json_array_get(eps, i);
        if (rrd_json_f32_overflow(v, "epsilons", out))
            return fail(r, c);
        if (!json_is_number(v) || !(json_number_value(v) >= 0) || !isfinite(json_number_value(v))) {
            rrd_problem_out(out, RRD_P_INVALID, "epsilons", "epsilons[%zu] must be a number >= 0",
                            i);
            return fail(r, c);
        }
        o->eps[i] = json_number_value(v);
        char field[32];
        snprintf(field, sizeof field, "epsilons[%zu]", i);
        if (!eps_within_range(c, o->norm, o->eps[i], field, out))
            return fail(r, c);
    }
    json_t *dflt = NULL;
    if (!atk)
        atk = dflt = json_pack("{s:s}", "attack", "pgd");
    if (!json_is_object(atk)) {
        rrd_problem_out(out, RRD_P_INVALID, "attack", "attack must be an object");
        return fail(r, c);
    }
    json_t *an = json_object_get(atk, "norm");
    rr_norm anorm;
    if (an && (!parse_norm(an, &anorm, o->norm, out) || anorm != o->norm)) {
        if (!r->out.status)
            rrd_problem_out(out, RRD_P_INVALID, "attack.norm",
                            "attack.norm must equal the report's norm");
        json_decref(dflt);
        return fail(r, c);
    }
    json_t *copy = json_deep_copy(atk);
    json_object_set_new(copy, "norm", json_string(o->norm == RR_NORM_L2 ? "l2" : "linf"));
    const int K = rr_model_num_classes(c->entry->model);
    const bool ok = parse_attack(copy, true, c->seed, c->B, K, r->srv->cfg.max_steps, o, out);
    json_decref(copy);
    json_decref(dflt);
    if (!ok)
        return fail(r, c);
    char cls[40];
    rrd_cost_class_attack(cls, sizeof cls, "robustness", &o->ap);
    rr_attack_params df = {.name = RR_ATTACK_DEEPFOOL};
    rrd_task_estimate(r->srv, &c->base, cls,
                      1 + (double)o->neps * rrd_cost_passes_attack(&o->ap, K) +
                          rrd_cost_passes_certify(K) + rrd_cost_passes_attack(&df, K),
                      c->B);
    rrd_compute_dispatch(r, c);
}
