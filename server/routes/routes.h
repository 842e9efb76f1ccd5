// Route handlers (one file per resource) and what they share: model look-up, the common
// parse of compute requests (inputs, labels, version pin, async), and the task that carries
// a parsed compute request to a worker.
#ifndef RRD_ROUTES_H
#define RRD_ROUTES_H

#include "../problem.h"
#include "../registry.h"
#include "../server.h"
#include "../tensor_json.h"

// ---- handlers ----
void rrd_route_health_live(rrd_request *r);
void rrd_route_health_ready(rrd_request *r);
void rrd_route_metrics(rrd_request *r);
void rrd_route_models_list(rrd_request *r);
void rrd_route_model_put(rrd_request *r);
void rrd_route_model_get(rrd_request *r);
void rrd_route_model_delete(rrd_request *r);
void rrd_route_model_weights(rrd_request *r);
void rrd_route_predict(rrd_request *r);
void rrd_route_jacobian(rrd_request *r);
void rrd_route_regularizers(rrd_request *r);
void rrd_route_connections(rrd_request *r);
void rrd_route_attacks(rrd_request *r);
void rrd_route_certify(rrd_request *r);
void rrd_route_robustness(rrd_request *r);
void rrd_route_job_get(rrd_request *r);
void rrd_route_job_delete(rrd_request *r);
void rrd_route_dataset(rrd_request *r);
void rrd_route_v2_server(rrd_request *r);
void rrd_route_v2_live(rrd_request *r);
void rrd_route_v2_ready(rrd_request *r);
void rrd_route_v2_model(rrd_request *r);
void rrd_route_v2_model_ready(rrd_request *r);
void rrd_route_v2_infer(rrd_request *r);
void rrd_route_static(rrd_request *r);

// ---- shared ----

// The registry entry named by path parameter 0, retained; answers 422 (bad name) or 404 and
// returns NULL otherwise.
rrd_loaded *rrd_route_entry(rrd_request *r);

// True when the client asked for application/vnd.safetensors answers.
bool rrd_wants_binary(const rrd_request *r);

// A parsed compute request: what every compute route reads before its own options.
typedef struct rrd_compute {
    rrd_task base;     // first: the worker's view
    rrd_loaded *entry; // retained model entry
    rrd_doc doc;       // the request document (options are read from doc.root)
    float *x;          // inputs [B, D] (owned)
    size_t B;
    bool single;   // the request sent one sample without the batch dimension
    int64_t *y;    // labels [B] (owned) or NULL
    uint64_t seed; // "seed" (default 0)
    void *extra;   // route-specific parsed options (freed with free_extra)
    void (*free_extra)(void *);
} rrd_compute;

// Parses the body, inputs (shape [B, ...input_shape] or input_shape), labels (when
// labels_required, or when present: length B, values in [0, K)), "version" (409 on
// mismatch), "seed" and --max-batch. On failure answers the request and returns NULL.
rrd_compute *rrd_compute_parse(rrd_request *r, bool labels_required,
                               void (*run)(rrd_task *, rrd_worker *, rrd_out *));
// Hands the parsed request to a worker: a job when "async" is true (202 {"job"}), else
// synchronously.
void rrd_compute_dispatch(rrd_request *r, rrd_compute *c);
void rrd_compute_free(rrd_task *t);

// The JSON answer's common members: "model", "version", and "elapsed_ms" since submission.
void rrd_compute_stamp(const rrd_compute *c, json_t *root);
// [B, lead, input_shape...] (lead 0: [B, input_shape...]); a single sample is a batch of one.
rr_shape rrd_compute_shape(const rrd_compute *c, size_t lead);

// 404 for a model name that is not loaded, listing the models that are (and the closest one
// when the name looks like a typo).
void rrd_problem_no_model(rrd_request *r, const char *name);

// Checks that the document's members are all in `allowed` (space separated); 422 otherwise.
bool rrd_only_members(json_t *obj, const char *allowed, const char *where, rrd_out *out);

#endif
