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
        rrd_resp resp;
        rrd_resp_init(&resp, t->binary);
        json_t *ps = json_array();
        for (size_t b = 0; b < B; b++)
            json_array_append_new(ps, rrd_json_number(loss_ps[b]));
        json_object_set_new(
            resp.root, "loss",
            json_pack("{s:o, s:o}", "value", rrd_json_number(loss.value), "per_sample", ps));
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

// One entry of "regularizers" into a spec; the echo is the entry (plus the seed it uses).
#define REG_NAMES "cross_entropy input_gradient jacobian cross_lipschitz curvature weight_decay"

static bool parse_spec(json_t *e, size_t i, uint64_t top_seed, int max_steps, int K, rr_reg_spec *s,
                       json_t **echo, rrd_out *out)
{
    char where[32], field[128];
    snprintf(where, sizeof where, "regularizers[%zu]", i);
    if (!json_is_object(e)) {
        rrd_problem_out(out, RRD_P_INVALID, where,
                        "%s must be a regularizer's name (\"jacobian\") or an object "
                        "({\"name\": \"jacobian\", ...})",
                        where);
        return false;
    }
    json_t *name = json_object_get(e, "name");
    const char *n = json_string_value(name);
    snprintf(field, sizeof field, "%s.name", where);
    memset(s, 0, sizeof *s);
    const char *allowed;
    if (n == NULL) {
        rrd_problem_out(out, RRD_P_INVALID, field, "%s needs a \"name\"", where);
        return false;
    } else if (strcmp(n, "cross_entropy") == 0) {
        s->name = RR_REG_CROSS_ENTROPY;
        allowed = "name";
    } else if (strcmp(n, "input_gradient") == 0) {
        s->name = RR_REG_INPUT_GRADIENT;
        allowed = "name norm";
    } else if (strcmp(n, "jacobian") == 0) {
        s->name = RR_REG_JACOBIAN;
        allowed = "name estimator projections directions seed";
    } else if (strcmp(n, "cross_lipschitz") == 0) {
        s->name = RR_REG_CROSS_LIPSCHITZ;
        allowed = "name";
    } else if (strcmp(n, "curvature") == 0) {
        s->name = RR_REG_CURVATURE;
        allowed = "name method h squared";
    } else if (strcmp(n, "weight_decay") == 0) {
        s->name = RR_REG_WEIGHT_DECAY;
        allowed = "name";
    } else {
        size_t m = 0;
        const char *near = rrd_suggest(n, REG_NAMES, &m);
        rrd_problem_out(out, RRD_P_INVALID, field,
                        "unknown regularizer '%.40s'%s%.*s%s (cross_entropy, input_gradient, "
                        "jacobian, cross_lipschitz, curvature, weight_decay)",
                        n, near ? ": did you mean '" : "", near ? (int)m : 0, near ? near : "",
                        near ? "'?" : "");
        return false;
    }
    if (!rrd_only_members(e, allowed, where, out))
        return false;
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
static void estimate(rrd_request *r, rrd_compute *c, const opts *o)
{
    static const char *const short_names[] = {"ce", "ig", "jac", "cl", "curv", "wd"};
    char cls[40] = "regularizers/";
    for (size_t i = 0; i < o->n && i < 4; i++) {
        const size_t u = strlen(cls);
        snprintf(cls + u, sizeof cls - u, "%s%s", i ? "+" : "", short_names[o->specs[i].name]);
    }
    if (o->grad_params) {
        const size_t u = strlen(cls);
        snprintf(cls + u, sizeof cls - u, "+params");
    }
    const int K = rr_model_num_classes(c->entry->model);
    const rr_model *m = c->entry->model;
    c->base.out_values =
        (double)o->n *
        ((double)c->B + (o->grad_inputs ? (double)c->B * rr_model_input_size(m) : 0) +
         (o->grad_params ? (double)rr_model_param_array_size(m) : 0));
    rrd_task_estimate(r->srv, &c->base, cls,
                      rrd_cost_passes_regs(o->specs, o->n, o->grad_inputs, o->grad_params, K),
                      c->B);
}

void rrd_route_regularizers(rrd_request *r)
{
    rrd_compute *c = rrd_compute_parse(r, true, run);
    if (c == NULL)
        return;
    rrd_out *out = &r->out;
    opts *o = calloc(1, sizeof *o);
    c->extra = o;
    c->free_extra = free_opts;
    json_t *root = c->doc.root, *regs = json_object_get(root, "regularizers");
    json_t *grads = json_object_get(root, "gradients"), *red = json_object_get(root, "reduction");
    const int K = rr_model_num_classes(c->entry->model);
    if (o == NULL) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        goto fail;
    }
    if (!rrd_only_members(root,
                          "inputs labels regularizers gradients reduction version seed "
                          "async timeout_ms",
                          "a regularizers request", out))
        goto fail;
    if (!json_is_array(regs) || json_array_size(regs) == 0 || json_array_size(regs) > 64) {
        rrd_problem_out(out, RRD_P_INVALID, "regularizers",
                        "regularizers must be a list of 1 to 64 regularizers, each a name "
                        "(\"jacobian\") or an object ({\"name\": \"jacobian\", ...})");
        goto fail;
    }
    // A bare name is short for {"name": name} (an extension of api.md's object form; the
    // answer echoes the object form).
    for (size_t i = 0; i < json_array_size(regs); i++) {
        json_t *e = json_array_get(regs, i);
        if (json_is_string(e) &&
            json_array_set_new(regs, i, json_pack("{s:s}", "name", json_string_value(e))) != 0) {
            rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
            goto fail;
        }
    }
    if (red && !(str_is(red, "mean") || str_is(red, "sum"))) {
        rrd_problem_out(out, RRD_P_INVALID, "reduction", "reduction must be \"mean\" or \"sum\"");
        goto fail;
    }
    o->sum = str_is(red, "sum");
    if (grads) {
        if (!json_is_array(grads)) {
            rrd_problem_out(out, RRD_P_INVALID, "gradients",
                            "gradients must be a list of \"inputs\" and/or \"parameters\"");
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(grads); i++) {
            json_t *g = json_array_get(grads, i);
            if (str_is(g, "inputs"))
                o->grad_inputs = true;
            else if (str_is(g, "parameters"))
                o->grad_params = true;
            else {
                rrd_problem_out(out, RRD_P_INVALID, "gradients",
                                "gradients may list \"inputs\" and \"parameters\" only");
                goto fail;
            }
        }
    }
    o->n = json_array_size(regs);
    o->specs = calloc(o->n, sizeof *o->specs);
    o->echo = calloc(o->n, sizeof *o->echo);
    if (!o->specs || !o->echo) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < o->n; i++)
        if (!parse_spec(json_array_get(regs, i), i, c->seed, r->srv->cfg.max_steps, K, &o->specs[i],
                        &o->echo[i], out))
            goto fail;
    estimate(r, c, o);
    rrd_compute_dispatch(r, c);
    return;
fail:
    r->responded = true;
    rrd_compute_free(&c->base);
}
