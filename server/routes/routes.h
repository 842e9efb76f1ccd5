// Route handlers (one file per resource) and what they share: model look-up, and for the
// compute routes one descriptor each (members, labels, option parser, cost, run) that one
// skeleton, rrd_route_compute, drives: the common parse (inputs, labels, version pin, seed,
// async, timeout), the route's options, the cost estimate and the hand-off to a worker.
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
void rrd_route_job_get(rrd_request *r);
void rrd_route_job_delete(rrd_request *r);
void rrd_route_dataset(rrd_request *r);
void rrd_route_v2_server(rrd_request *r);
void rrd_route_v2_live(rrd_request *r);
void rrd_route_v2_ready(rrd_request *r);
void rrd_route_v2_model(rrd_request *r);
void rrd_route_v2_model_ready(rrd_request *r);
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

// What a request of a compute route costs (cost.h), filled by the route's cost hook: the cost
// class, forward-pass equivalents per sample, the values the answer holds, and whether it is of
// a long kind that always runs in the batch lane whatever its estimate.
typedef struct rrd_route_cost {
    char cls[40];      // preset to the route's name
    double passes;     // preset to 1
    double out_values; // preset to 0
    bool long_kind;    // preset to the route's long_kind
} rrd_route_cost;

// ---- compute routes: one descriptor each (the route table's `compute`) ----
//
// A compute route is its descriptor, like a command in redis' command table: rrd_route_compute
// looks the model up, reads the common members (inputs, labels, version, seed, async,
// timeout_ms; see rrd_compute_read), checks the document holds only `members`, runs the route's
// option parser, estimates the cost and hands the task to a worker or a job. Every refusal
// before the hand-off goes through one exit that answers the problem and frees the task.
typedef struct rrd_compute_route {
    const char *name;              // the cost class, or its prefix ("attacks" -> "attacks/pgd")
    const char *what;              // how errors name the document: "a predict request"
    const char *members;           // the members a document may have (space separated); NULL: any
    bool labels_required;          // 422 without "labels"
    bool long_kind;                // always the batch lane (robustness reports)
    size_t opts_size;              // bytes of the route's options (c->extra, zeroed); 0: none
    void (*opts_free)(void *opts); // frees the options and what they own
    // Replaces rrd_compute_read for a route with its own body format (KServe v2). false after
    // writing the problem into out.
    bool (*read)(rrd_compute *c, rrd_request *r, rrd_out *out);
    // Reads and range-checks the route's own members into c->extra; false after writing the
    // problem into out (rrd_invalid). NULL: the route has none.
    bool (*parse)(rrd_compute *c, const rrd_config *cfg, rrd_out *out);
    // The cost of the parsed request; NULL keeps the presets (one pass, the route's name).
    void (*cost)(const rrd_compute *c, rrd_route_cost *q);
    // Computes on a worker and writes the answer (or the problem) into out.
    void (*run)(rrd_task *t, rrd_worker *w, rrd_out *out);
} rrd_compute_route;

extern const rrd_compute_route rrd_route_predict, rrd_route_jacobian, rrd_route_regularizers,
    rrd_route_connections, rrd_route_attacks, rrd_route_certify, rrd_route_robustness,
    rrd_route_v2_infer;

// The handler of every compute route: runs r->route->compute as described above.
void rrd_route_compute(rrd_request *r);

// The common members: the body, "version" (409 on mismatch), "seed", "async", "timeout_ms",
// inputs (shape [B, ...input_shape] or input_shape; rrd_compute_batch) and labels (when
// labels_required, or when present: length B, values in [0, K)). false after writing the
// problem into out.
bool rrd_compute_read(rrd_compute *c, rrd_request *r, bool labels_required, rrd_out *out);

// How a tensor of shape s fails to be a batch for a model of input shape `in`.
typedef enum rrd_batch_fault {
    RRD_BATCH_OK,
    RRD_BATCH_SHAPE, // neither [B, in...] nor (when allow_single) in alone
    RRD_BATCH_EMPTY, // B = 0
    RRD_BATCH_OVER,  // B over --max-batch
} rrd_batch_fault;
// Sets *B, and *single when s is `in` alone (one sample, allowed with allow_single). Callers
// word the refusal: the v1 routes and KServe v2 answer in their own terms.
rrd_batch_fault rrd_compute_batch(const rr_shape *s, const rr_shape *in, bool allow_single,
                                  size_t max_batch, size_t *B, bool *single);

void rrd_compute_free(rrd_task *t);

// The JSON answer's common members: "model", "version", and "elapsed_ms" since submission.
void rrd_compute_stamp(const rrd_compute *c, json_t *root);
// [B, lead, input_shape...] (lead 0: [B, input_shape...]); a single sample is a batch of one.
rr_shape rrd_compute_shape(const rrd_compute *c, size_t lead);

// Writes a 422 invalid-request problem naming `field` into out and returns false: how option
// parsers fail (`return rrd_invalid(out, "h", "h must be a number > 0");`).
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
bool rrd_invalid(rrd_out *out, const char *field, const char *fmt, ...);

// 404 for a model name that is not loaded, listing the models that are (and the closest one
// when the name looks like a typo).
void rrd_problem_no_model(rrd_request *r, const char *name);

// Checks that the document's members are all in `allowed` (space separated); 422 otherwise.
bool rrd_only_members(json_t *obj, const char *allowed, const char *where, rrd_out *out);

#endif
