// POST /v1/models/{name}/connections: the per-sample quantities of math.md "The connections".
#include <stdlib.h>

#include "../pool.h"
#include "routes.h"

typedef struct opts {
    double h;
} opts;

static void run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    const opts *o = c->extra;
    rr_model *m = c->entry->model;
    const size_t B = c->B, K = (size_t)rr_model_num_classes(m);
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, m, B, K, &err);
    double *v = malloc(10 * B * sizeof(double));
    bool *left = malloc(B * sizeof(bool));
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!v || !left))
        st = rr_error_set(&err, RR_ENOMEM, "", "out of memory");
    rr_connections cn;
    double **slots[10] = {&cn.jacobian_fro2,        &cn.centered_jacobian_fro2,
                          &cn.input_gradient_norm2, &cn.input_gradient_bound,
                          &cn.hessian_trace,        &cn.hessian_max_eigenvalue,
                          &cn.residual_norm2,       &cn.curvature_fd,
                          &cn.curvature_hessian,    &cn.curvature_ratio};
    static const char *names[10] = {"jacobian_fro2",        "centered_jacobian_fro2",
                                    "input_gradient_norm2", "input_gradient_bound",
                                    "hessian_trace",        "hessian_max_eigenvalue",
                                    "residual_norm2",       "curvature_fd",
                                    "curvature_hessian",    "curvature_ratio"};
    for (int i = 0; v && i < 10; i++)
        *slots[i] = v + (size_t)i * B;
    cn.left_region = left;
    if (st == RR_OK)
        st = rr_connections_compute(m, ws, c->x, c->y, B, o->h, &cn, &err);
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
    } else {
        json_t *doc = json_object();
        for (int i = 0; i < 10; i++) {
            json_t *a = json_array();
            for (size_t b = 0; b < B; b++)
                json_array_append_new(a, rrd_json_number((*slots[i])[b]));
            json_object_set_new(doc, names[i], a);
        }
        json_t *a = json_array();
        for (size_t b = 0; b < B; b++)
            json_array_append_new(a, json_boolean(left[b]));
        json_object_set_new(doc, "left_region", a);
        json_object_set_new(doc, "h", json_real(o->h));
        rrd_compute_stamp(c, doc);
        rrd_out_json(out, 200, doc);
    }
    free(v);
    free(left);
}

// "h": the finite-difference step (math.md's default when absent).
static bool parse(rrd_compute *c, const rrd_config *cfg, rrd_out *out)
{
    (void)cfg;
    opts *o = c->extra;
    json_t *h = json_object_get(c->doc.root, "h");
    if (rrd_json_f32_overflow(h, "h", out))
        return false;
    if (h && !(json_is_number(h) && json_number_value(h) > 0))
        return rrd_invalid(out, "h", "h must be a number > 0");
    o->h = h ? json_number_value(h) : RR_REG_DEFAULT_H;
    return true;
}

static void cost(const rrd_compute *c, rrd_route_cost *q)
{
    q->passes = 4 + 4.0 * rr_model_num_classes(c->entry->model);
}

const rrd_compute_route rrd_route_connections = {
    .name = "connections",
    .what = "a connections request",
    .members = "inputs labels h version seed async timeout_ms",
    .labels_required = true,
    .opts_size = sizeof(opts),
    .opts_free = free,
    .parse = parse,
    .cost = cost,
    .run = run,
};
