// POST /v1/models/{name}/jacobian: the exact input Jacobian [B, K, ...input_shape] of the
// logits or, with "of": "log_probabilities", of log softmax.
#include <stdlib.h>
#include <string.h>

#include "../pool.h"
#include "routes.h"

typedef struct opts {
    rr_jacobian_of of;
} opts;

static void run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    const opts *o = c->extra;
    const rr_model *m = c->entry->model;
    const size_t B = c->B, K = (size_t)rr_model_num_classes(m), D = rr_model_input_size(m);
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, c->entry->model, B, K, &err);
    float *J = malloc(B * K * D * sizeof(float));
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && J == NULL)
        st = rr_error_set(&err, RR_ENOMEM, "", "out of memory for the Jacobian");
    if (st == RR_OK)
        st = rr_jacobian(m, ws, c->x, B, o->of, J, NULL, &err);
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        free(J);
        return;
    }
    rrd_resp resp;
    rrd_resp_init(&resp, t->binary);
    const rr_shape s = rrd_compute_shape(c, K);
    rrd_resp_tensor(&resp, resp.root, "jacobian", "/jacobian", &s, J, true);
    json_object_set_new(resp.root, "of",
                        json_string(o->of == RR_JACOBIAN_LOGITS ? "logits" : "log_probabilities"));
    rrd_compute_stamp(c, resp.root);
    rrd_resp_finish(&resp, 200, out);
}

void rrd_route_jacobian(rrd_request *r)
{
    rrd_compute *c = rrd_compute_parse(r, false, run);
    if (c == NULL)
        return;
    opts *o = calloc(1, sizeof *o);
    c->extra = o;
    c->free_extra = free;
    json_t *of = json_object_get(c->doc.root, "of");
    rrd_out *out = &r->out;
    if (o == NULL) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory");
    } else if (!rrd_only_members(c->doc.root, "inputs labels of version seed async timeout_ms",
                                 "a jacobian request", out)) {
    } else if (of &&
               !(json_is_string(of) && (strcmp(json_string_value(of), "logits") == 0 ||
                                        strcmp(json_string_value(of), "log_probabilities") == 0))) {
        rrd_problem_out(out, RRD_P_INVALID, "of",
                        "of must be \"logits\" or "
                        "\"log_probabilities\"");
    } else {
        o->of = of && strcmp(json_string_value(of), "log_probabilities") == 0
                    ? RR_JACOBIAN_LOG_PROBABILITIES
                    : RR_JACOBIAN_LOGITS;
        c->base.out_values = (double)c->B * rr_model_num_classes(c->entry->model) *
                             (double)rr_model_input_size(c->entry->model);
        rrd_task_estimate(r->srv, &c->base, "jacobian", 1 + rr_model_num_classes(c->entry->model),
                          c->B);
        rrd_compute_dispatch(r, c);
        return;
    }
    r->responded = true;
    rrd_compute_free(&c->base);
}
