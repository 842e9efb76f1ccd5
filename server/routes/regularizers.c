// POST /v1/models/{name}/regularizers (api.md): values, per-sample values and, on request,
// gradients with respect to the inputs and to every parameter, for a list of regularizers
// computed in one librelureg call (one forward pass, one Jacobian).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pool.h"
#include "routes.h"

typedef struct opts {
    rr_reg_spec *specs;
    json_t **echo; // per regularizer: the request's entry, with the seed it used
    size_t n;
    bool grad_inputs, grad_params, sum;
} opts;

static void free_opts(void *p)
{
    opts *o = p;
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->n; i++)
        json_decref(o->echo[i]);
    free(o->echo);
    free(o->specs);
    free(o);
}

// RFC 6901: "~" -> "~0", "/" -> "~1".
static void pointer_escape(char *out, size_t cap, const char *s)
{
    size_t k = 0;
    for (; *s && k + 3 < cap; s++) {
        if (*s == '~' || *s == '/') {
            out[k++] = '~';
            out[k++] = *s == '~' ? '0' : '1';
        } else {
            out[k++] = *s;
        }
    }
    out[k] = '\0';
}

// The answer: the loss, then per regularizer its request entry with value, per-sample values
// and the gradients asked for (res[i].grad_inputs is taken).
static void render(const rrd_compute *c, const opts *o, rr_reg_result *res, const rr_reg_loss *loss,
                   rrd_out *out)
{
    const rr_model *m = c->entry->model;
    const size_t B = c->B;
    rrd_resp resp;
    rrd_resp_init(&resp, c->base.binary);
    json_t *ps = json_array();
    for (size_t b = 0; b < B; b++)
        json_array_append_new(ps, rrd_json_number(loss->per_sample[b]));
    json_object_set_new(
        resp.root, "loss",
        json_pack("{s:o, s:o}", "value", rrd_json_number(loss->value), "per_sample", ps));
    json_t *list = json_array();
    json_object_set_new(resp.root, "regularizers", list);
    const rr_shape sx = rrd_compute_shape(c, 0);
    for (size_t i = 0; i < o->n; i++) {
        json_t *e = json_deep_copy(o->echo[i]);
        json_array_append_new(list, e);
        json_object_set_new(e, "value", rrd_json_number(res[i].value));
        if (o->specs[i].name == RR_REG_WEIGHT_DECAY) {
            json_object_set_new(e, "per_sample", json_null());
        } else {
            json_t *a = json_array();
            for (size_t b = 0; b < B; b++)
                json_array_append_new(a, rrd_json_number(res[i].per_sample[b]));
            json_object_set_new(e, "per_sample", a);
        }
        char ptr[320];
        if (res[i].grad_inputs) {
            snprintf(ptr, sizeof ptr, "/regularizers/%zu/grad_inputs", i);
            rrd_resp_tensor(&resp, e, "grad_inputs", ptr, &sx, res[i].grad_inputs, true);
            res[i].grad_inputs = NULL;
        }
        if (res[i].grad_parameters) {
            json_t *gp = json_object();
            json_object_set_new(e, "grad_parameters", gp);
            for (size_t k = 0; k < rr_model_num_param_tensors(m); k++) {
                const rr_param *pr = rr_model_param(m, k);
                char esc[256];
                pointer_escape(esc, sizeof esc, pr->name);
                snprintf(ptr, sizeof ptr, "/regularizers/%zu/grad_parameters/%s", i, esc);
                rrd_resp_tensor(&resp, gp, pr->name, ptr, &pr->shape,
                                res[i].grad_parameters + pr->offset, false);
            }
        }
    }
    json_object_set_new(resp.root, "reduction", json_string(o->sum ? "sum" : "mean"));
    rrd_compute_stamp(c, resp.root);
    rrd_resp_finish(&resp, 200, out);
}

static void run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    const opts *o = c->extra;
    rr_model *m = c->entry->model;
    const size_t B = c->B, K = (size_t)rr_model_num_classes(m), D = rr_model_input_size(m);
    const size_t NP = rr_model_param_array_size(m);
    size_t rows = K;
    for (size_t i = 0; i < o->n; i++)
        if ((size_t)o->specs[i].projections > rows)
            rows = (size_t)o->specs[i].projections;
    rr_error err = {0};
    rr_status st = RR_OK;
    rr_workspace *ws = rrd_worker_workspace(w, m, B, rows, &err);
    if (ws == NULL)
        st = err.code;
    rr_reg_result *res = calloc(o->n, sizeof *res);
    float *loss_ps = malloc(B * sizeof(float));
    if (st == RR_OK && (!res || !loss_ps))
        st = rr_error_set(&err, RR_ENOMEM, "", "out of memory");
    for (size_t i = 0; st == RR_OK && i < o->n; i++) {
        res[i].per_sample = malloc(B * sizeof(float));
        res[i].grad_inputs = o->grad_inputs ? malloc(B * D * sizeof(float)) : NULL;
        res[i].grad_parameters = o->grad_params ? malloc((NP ? NP : 1) * sizeof(float)) : NULL;
        if (!res[i].per_sample || (o->grad_inputs && !res[i].grad_inputs) ||
            (o->grad_params && !res[i].grad_parameters))
            st = rr_error_set(&err, RR_ENOMEM, "", "out of memory for the gradients");
    }
    rr_reg_loss loss = {.per_sample = loss_ps};
    if (st == RR_OK) {
        rr_reg_params p = {.regs = o->specs,
                           .nregs = o->n,
                           .sum = o->sum,
                           .max_projections = 0,
                           .control = rrd_ctl_control(&t->ctl)};
        st = rr_reg_compute(m, ws, c->x, c->y, B, &p, res, &loss, &err);
    }
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
    } else {
        render(c, o, res, &loss, out);
    }
    for (size_t i = 0; res && i < o->n; i++) {
        free(res[i].per_sample);
        free(res[i].grad_inputs);
        free(res[i].grad_parameters);
    }
    free(res);
    free(loss_ps);
}

static bool str_is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

// The regularizers (api.md) and the members of each one's entry.
#define REG_NAMES "cross_entropy input_gradient jacobian cross_lipschitz curvature weight_decay"
static const struct reg_kind {
    const char *name;
    rr_reg_name id;
    const char *members;
} KINDS[] = {
    {"cross_entropy", RR_REG_CROSS_ENTROPY, "name"},
    {"input_gradient", RR_REG_INPUT_GRADIENT, "name norm"},
    {"jacobian", RR_REG_JACOBIAN, "name estimator projections directions seed"},
    {"cross_lipschitz", RR_REG_CROSS_LIPSCHITZ, "name"},
    {"curvature", RR_REG_CURVATURE, "name method h squared"},
    {"weight_decay", RR_REG_WEIGHT_DECAY, "name"},
};

// The entry's kind from its "name"; NULL after writing the problem into out.
static const struct reg_kind *spec_kind(json_t *e, const char *where, rrd_out *out)
{
    char field[128];
    snprintf(field, sizeof field, "%s.name", where);
    const char *n = json_string_value(json_object_get(e, "name"));
    if (n == NULL) {
        rrd_invalid(out, field, "%s needs a \"name\"", where);
        return NULL;
    }
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++)
        if (strcmp(n, KINDS[k].name) == 0)
            return &KINDS[k];
    size_t m = 0;
    const char *near = rrd_suggest(n, REG_NAMES, &m);
    rrd_invalid(out, field,
                "unknown regularizer '%.40s'%s%.*s%s (cross_entropy, input_gradient, "
                "jacobian, cross_lipschitz, curvature, weight_decay)",
                n, near ? ": did you mean '" : "", near ? (int)m : 0, near ? near : "",
                near ? "'?" : "");
    return NULL;
}

// The options of an entry (those its kind allows: rrd_only_members ran first).
static bool spec_options(json_t *e, const char *where, uint64_t top_seed, int max_steps,
                         rr_reg_spec *s, rrd_out *out)
{
    char field[128];
    json_t *v;
#define BAD(member, ...)                                                                           \
    do {                                                                                           \
        snprintf(field, sizeof field, "%s.%s", where, member);                                     \
        rrd_problem_out(out, RRD_P_INVALID, field, __VA_ARGS__);                                   \
        return false;                                                                              \
    } while (0)
    if ((v = json_object_get(e, "norm"))) {
        if (str_is(v, "l1"))
            s->norm = RR_REG_NORM_L1;
        else if (!str_is(v, "l2"))
            BAD("norm", "norm must be \"l2\" or \"l1\"");
    }
    if ((v = json_object_get(e, "estimator"))) {
        if (str_is(v, "projection"))
            s->estimator = RR_REG_PROJECTION;
        else if (!str_is(v, "exact"))
            BAD("estimator", "estimator must be \"exact\" or \"projection\"");
    }
    if ((v = json_object_get(e, "directions"))) {
        if (str_is(v, "onehot"))
            s->directions = RR_REG_ONEHOT;
        else if (!str_is(v, "sphere"))
            BAD("directions", "directions must be \"sphere\" or \"onehot\"");
    }
    if ((v = json_object_get(e, "projections"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max_steps)
            BAD("projections", "projections must be an integer in [1, %d]", max_steps);
        s->projections = (int)json_integer_value(v);
    }
    s->seed = top_seed;
    if ((v = json_object_get(e, "seed"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            BAD("seed", "seed must be an integer >= 0");
        s->seed = (uint64_t)json_integer_value(v);
    }
    if ((v = json_object_get(e, "method"))) {
        if (str_is(v, "hessian"))
            s->method = RR_REG_HESSIAN;
        else if (str_is(v, "trace"))
            s->method = RR_REG_TRACE;
        else if (!str_is(v, "finite_difference"))
            BAD("method", "method must be \"finite_difference\", \"hessian\" or \"trace\"");
    }
    if ((v = json_object_get(e, "h"))) {
        snprintf(field, sizeof field, "%s.h", where);
        if (rrd_json_f32_overflow(v, field, out))
            return false;
        if (!json_is_number(v) || !(json_number_value(v) > 0))
            BAD("h", "h must be a number > 0");
        s->h = json_number_value(v);
    }
    if ((v = json_object_get(e, "squared"))) {
        if (!json_is_boolean(v))
            BAD("squared", "squared must be true or false");
        s->unsquared = json_is_false(v);
    }
#undef BAD
    return true;
}

// One entry of "regularizers" into a spec; the echo is the entry (plus the seed it uses).
static bool parse_spec(json_t *e, size_t i, uint64_t top_seed, int max_steps, int K, rr_reg_spec *s,
                       json_t **echo, rrd_out *out)
{
    char where[32], field[128];
    snprintf(where, sizeof where, "regularizers[%zu]", i);
    if (!json_is_object(e))
        return rrd_invalid(out, where,
                           "%s must be a regularizer's name (\"jacobian\") or an object "
                           "({\"name\": \"jacobian\", ...})",
                           where);
    memset(s, 0, sizeof *s);
    const struct reg_kind *kind = spec_kind(e, where, out);
    if (kind == NULL)
        return false;
    s->name = kind->id;
    if (!rrd_only_members(e, kind->members, where, out))
        return false;
    if (!spec_options(e, where, top_seed, max_steps, s, out))
        return false;
    rr_error err = {0};
    if (rr_reg_spec_check(s, K, max_steps, &err) != RR_OK) {
        snprintf(field, sizeof field, "%s.%s", where, err.field);
        rrd_problem_out(out, RRD_P_INVALID, field, "%s: %s", where, err.msg);
        return false;
    }
    *echo = json_deep_copy(e);
    if (s->name == RR_REG_JACOBIAN && s->estimator == RR_REG_PROJECTION)
        json_object_set_new(*echo, "seed", json_integer((json_int_t)s->seed));
    return true;
}

// Cost class "regularizers/NAME+NAME[+params]" and its forward-pass equivalents.
static void cost(const rrd_compute *c, rrd_route_cost *q)
{
    static const char *const short_names[] = {"ce", "ig", "jac", "cl", "curv", "wd"};
    const opts *o = c->extra;
    snprintf(q->cls, sizeof q->cls, "regularizers/");
    for (size_t i = 0; i < o->n && i < 4; i++) {
        const size_t u = strlen(q->cls);
        snprintf(q->cls + u, sizeof q->cls - u, "%s%s", i ? "+" : "",
                 short_names[o->specs[i].name]);
    }
    if (o->grad_params) {
        const size_t u = strlen(q->cls);
        snprintf(q->cls + u, sizeof q->cls - u, "+params");
    }
    const int K = rr_model_num_classes(c->entry->model);
    const rr_model *m = c->entry->model;
    q->out_values = (double)o->n *
                    ((double)c->B + (o->grad_inputs ? (double)c->B * rr_model_input_size(m) : 0) +
                     (o->grad_params ? (double)rr_model_param_array_size(m) : 0));
    q->passes = rrd_cost_passes_regs(o->specs, o->n, o->grad_inputs, o->grad_params, K);
}

// "gradients": a list of "inputs" and / or "parameters".
static bool parse_gradients(json_t *grads, opts *o, rrd_out *out)
{
    if (!json_is_array(grads))
        return rrd_invalid(out, "gradients",
                           "gradients must be a list of \"inputs\" and/or \"parameters\"");
    for (size_t i = 0; i < json_array_size(grads); i++) {
        json_t *g = json_array_get(grads, i);
        if (str_is(g, "inputs"))
            o->grad_inputs = true;
        else if (str_is(g, "parameters"))
            o->grad_params = true;
        else
            return rrd_invalid(out, "gradients",
                               "gradients may list \"inputs\" and \"parameters\" only");
    }
    return true;
}

static bool parse(rrd_compute *c, const rrd_config *cfg, rrd_out *out)
{
    opts *o = c->extra;
    json_t *root = c->doc.root, *regs = json_object_get(root, "regularizers");
    json_t *grads = json_object_get(root, "gradients"), *red = json_object_get(root, "reduction");
    const int K = rr_model_num_classes(c->entry->model);
    if (!json_is_array(regs) || json_array_size(regs) == 0 || json_array_size(regs) > 64)
        return rrd_invalid(out, "regularizers",
                           "regularizers must be a list of 1 to 64 regularizers, each a name "
                           "(\"jacobian\") or an object ({\"name\": \"jacobian\", ...})");
    // A bare name is short for {"name": name} (an extension of api.md's object form; the
    // answer echoes the object form).
    for (size_t i = 0; i < json_array_size(regs); i++) {
        json_t *e = json_array_get(regs, i);
        if (json_is_string(e) &&
            json_array_set_new(regs, i, json_pack("{s:s}", "name", json_string_value(e))) != 0) {
            rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
            return false;
        }
    }
    if (red && !(str_is(red, "mean") || str_is(red, "sum")))
        return rrd_invalid(out, "reduction", "reduction must be \"mean\" or \"sum\"");
    o->sum = str_is(red, "sum");
    if (grads && !parse_gradients(grads, o, out))
        return false;
    o->n = json_array_size(regs);
    o->specs = calloc(o->n, sizeof *o->specs);
    o->echo = calloc(o->n, sizeof *o->echo);
    if (!o->specs || !o->echo) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < o->n; i++)
        if (!parse_spec(json_array_get(regs, i), i, c->seed, cfg->max_steps, K, &o->specs[i],
                        &o->echo[i], out))
            return false;
    return true;
}

const rrd_compute_route rrd_route_regularizers = {
    .name = "regularizers",
    .what = "a regularizers request",
    .members = "inputs labels regularizers gradients reduction version seed async timeout_ms",
    .labels_required = true,
    .opts_size = sizeof(opts),
    .opts_free = free_opts,
    .parse = parse,
    .cost = cost,
    .run = run,
};
