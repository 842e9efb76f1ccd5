// POST /v1/models/{name}/predict: logits, probabilities, predictions and, per sample, the
// activation pattern hash (equal hashes <=> the same linear region Q(x)).
#include <stdio.h>
#include <stdlib.h>

#include "../pool.h"
#include "routes.h"

static void run(rrd_task *t, rrd_worker *w, rrd_out *out)
{
    rrd_compute *c = (rrd_compute *)t;
    const rr_model *m = c->entry->model;
    const size_t B = c->B, K = (size_t)rr_model_num_classes(m);
    rr_error err = {0};
    rr_workspace *ws = rrd_worker_workspace(w, c->entry->model, B, 1, &err);
    float *z = malloc(B * K * sizeof(float)), *p = malloc(B * K * sizeof(float));
    uint64_t *h = malloc(B * sizeof(uint64_t));
    rr_status st = ws ? RR_OK : err.code;
    if (st == RR_OK && (!z || !p || !h))
        st = rr_error_set(&err, RR_ENOMEM, "", "out of memory");
    if (st == RR_OK)
        st = rr_forward(m, ws, c->x, B, z, NULL, h, &err);
    if (st != RR_OK) {
        rrd_problem_from(out, st, &err);
        free(z);
        free(p);
        free(h);
        return;
    }
    rrd_resp resp;
    rrd_resp_init(&resp, t->binary);
    json_t *preds = json_array(), *hashes = json_array();
    rr_softmax(z, B, K, p);
    for (size_t b = 0; b < B; b++) {
        const float *zb = z + b * K;
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            best = zb[k] > zb[best] ? k : best;
        json_array_append_new(preds, json_integer((json_int_t)best));
        char hex[20];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h[b]);
        json_array_append_new(hashes, json_string(hex));
    }
    const rr_shape sk = {.ndim = 2, .dim = {(int64_t)B, (int64_t)K}};
    rrd_resp_tensor(&resp, resp.root, "logits", "/logits", &sk, z, true);
    rrd_resp_tensor(&resp, resp.root, "probabilities", "/probabilities", &sk, p, true);
    json_object_set_new(resp.root, "predictions", preds);
    json_object_set_new(resp.root, "activation_pattern_hash", hashes);
    rrd_compute_stamp(c, resp.root);
    rrd_resp_finish(&resp, 200, out);
    free(h);
}

static void cost(const rrd_compute *c, rrd_route_cost *q)
{
    q->out_values = 2.0 * (double)c->B * rr_model_num_classes(c->entry->model);
}

const rrd_compute_route rrd_route_predict = {
    .name = "predict",
    .what = "a predict request",
    .members = "inputs labels version seed async timeout_ms",
    .cost = cost,
    .run = run,
};
