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

// "of": "logits" (the default) or "log_probabilities".
static bool parse(rrd_compute *c, const rrd_config *cfg, rrd_out *out)
{
    (void)cfg;
    opts *o = c->extra;
    json_t *of = json_object_get(c->doc.root, "of");
    const char *s = json_string_value(of);
    if (of && !(s && (strcmp(s, "logits") == 0 || strcmp(s, "log_probabilities") == 0)))
        return rrd_invalid(out, "of", "of must be \"logits\" or \"log_probabilities\"");
    o->of = s && strcmp(s, "log_probabilities") == 0 ? RR_JACOBIAN_LOG_PROBABILITIES
                                                     : RR_JACOBIAN_LOGITS;
    return true;
}

// One forward pass and K backward rows.
static void cost(const rrd_compute *c, rrd_route_cost *q)
{
    const int K = rr_model_num_classes(c->entry->model);
    q->out_values = (double)c->B * K * (double)rr_model_input_size(c->entry->model);
    q->passes = 1 + K;
}

const rrd_compute_route rrd_route_jacobian = {
    .name = "jacobian",
    .what = "a jacobian request",
    .members = "inputs labels of version seed async timeout_ms",
    .opts_size = sizeof(opts),
    .opts_free = free,
    .parse = parse,
    .cost = cost,
    .run = run,
};
