// reluregd's shared types: the server, a request's state, the output of a computation and the
// task a worker runs. Transport only: every computation is a librelureg call.
//
// Life of a request (http.c): libmicrohttpd calls the access handler with the headers, then
// with body chunks (copied into the request's buffer, bounded by --max-body-mb), then once
// more; the route handler then either answers at once (cheap routes) or parses and validates
// the request into a task that a compute worker runs (pool.c) while the connection is
// suspended; the worker writes an rrd_out and resumes the connection, whose next call queues
// the response. Async requests become jobs (jobs.c). The request is freed in MHD's
// request-completed callback, so no error path can leak.
#ifndef RRD_SERVER_H
#define RRD_SERVER_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "conns.h"
#include "cost.h"
#include "pool.h"
#include "relureg.h"

typedef struct rrd_server rrd_server;
typedef struct rrd_registry rrd_registry;
typedef struct rrd_pool rrd_pool;
typedef struct rrd_jobs rrd_jobs;
typedef struct rrd_metrics rrd_metrics;
typedef struct rrd_worker rrd_worker;
typedef struct rrd_route rrd_route;

// A finished answer: status, body (malloc'd, owned) and its media type, plus a Retry-After
// header for 503s.
typedef struct rrd_out {
    int status;
    char *body;
    size_t len;
    char type[64];
    int retry_after;   // seconds, 0 = none
    size_t header_len; // > 0: the Inference-Header-Content-Length of a binary v2 answer
    // A body borrowed rather than owned (served without a copy): release(release_ctx) is
    // called once the answer is sent or dropped.
    void (*release)(void *ctx);
    void *release_ctx;
} rrd_out;

// Cancellation and progress of a running computation (a synchronous request's deadline, or a
// job's DELETE).
typedef struct rrd_ctl {
    double deadline; // monotonic seconds; 0 = none
    atomic_bool cancel;
    _Atomic double progress; // in [0, 1]
    bool timed_out;          // set by the abort check when the deadline passed
} rrd_ctl;

// Work for a compute worker. Route files embed it as the first member of their own struct.
typedef struct rrd_task {
    void (*run)(struct rrd_task *t, rrd_worker *w, rrd_out *out);
    void (*free)(struct rrd_task *t);
    rr_model *model; // retained for the task's life (registry.c)
    char model_name[72];
    int version;
    bool binary; // answer as application/vnd.safetensors
    double t_submit;
    rrd_ctl ctl;
    rrd_cost_est cost; // estimated at parse time (rrd_task_estimate)
    rrd_lane lane;     // where the scheduler runs it (rrd_task_estimate)
    double compute_s;  // measured: the run itself, once it ran
    double out_values; // values the answer will hold (set by the route, for the estimate)
} rrd_task;

// Sets t->cost from the route's cost class and forward-pass equivalents per sample, and
// t->lane: BATCH for work longer than --long-ms or of a long kind (long_kind: what the route's
// descriptor says, e.g. robustness reports, AutoAttack, C&W / EAD, ZOO), else INTERACTIVE.
void rrd_task_estimate(rrd_server *s, rrd_task *t, const char *cls, double passes, size_t B,
                       bool long_kind);
// The same for work that is not a pass through a model: the route's own estimate in seconds.
void rrd_task_cost(rrd_server *s, rrd_task *t, const char *cls, double seconds);

typedef struct rrd_request {
    rrd_server *srv;
    struct MHD_Connection *conn;
    char method[16];
    char *url;              // the path, owned
    const rrd_route *route; // NULL until routed
    char params[3][128];    // path parameters in pattern order
    char request_id[80];
    char client[64]; // the client's address (jobs are shared fairly between addresses)
    const char *content_type, *accept; // borrowed from MHD, valid during the request
    uint8_t *body;                     // the request body (owned), body_len bytes, NUL-terminated
    size_t body_len, body_cap;
    bool too_large; // the body went over --max-body-mb
    bool responded; // out holds the answer
    bool suspended;
    rrd_out out;
    struct {
        char name[40];
        char value[160];
    } hdr[4]; // extra response headers
    int nhdr;
    double t0;       // arrival, monotonic seconds
    double deadline; // rrd_now() seconds by which the answer is due (--timeout-s, timeout_ms)
    rrd_task *task;  // submitted synchronous task, freed with the request
    rrd_work work;   // the task's hand-off to the pool
    bool inline_run; // computed on the I/O thread
    rrd_worker *parse_worker; // the worker running the route handler (large bodies), or NULL
} rrd_request;

struct rrd_server {
    rrd_config cfg;
    struct MHD_Daemon *mhd;
    rrd_registry *models;
    rrd_pool *pool;
    rrd_pool *parsers; // two threads that parse large request bodies (http.c)
    rrd_jobs *jobs;
    rrd_metrics *metrics;
    rrd_conns *conns;    // connection phases and their deadlines (conns.h)
    atomic_bool ready;   // false while starting and draining
    atomic_int inflight; // requests between first byte and completion
    int port;            // the bound port
};

// Monotonic time in seconds.
double rrd_now(void);

// ---- answers (http.c) ----
// Sets the answer to `body` (copied) with the given status and type.
void rrd_respond(rrd_request *r, int status, const char *type, const char *body, size_t len);
// Frees an answer's body, or releases it when it was borrowed (rrd_respond_borrow): every
// writer of an rrd_out replaces its body through this.
void rrd_out_drop_body(rrd_out *o);
// Takes ownership of a malloc'd body.
void rrd_respond_take(rrd_request *r, int status, const char *type, char *body, size_t len);
// Answers `len` bytes at `body` without copying them; release(ctx) runs when they are no
// longer needed.
void rrd_respond_borrow(rrd_request *r, int status, const char *type, const void *body, size_t len,
                        void (*release)(void *), void *ctx);
// Dumps a JSON value (stolen) as the answer.
void rrd_respond_json(rrd_request *r, int status, json_t *doc);
void rrd_out_json(rrd_out *out, int status, json_t *doc);
void rrd_add_header(rrd_request *r, const char *name, const char *value);

// Runs a task (owned by the request from here on): inline on this I/O thread when its
// estimated cost is below --inline-us, else queued for a worker in its lane with the request
// suspended until the worker answers. Refuses at once with 503 + Retry-After (the estimated
// wait) when the wait plus the cost would pass the request's deadline.
void rrd_submit(rrd_request *r, rrd_task *t);

// The abort callback librelureg polls: true once the deadline passed, cancel was set, or
// rrd_http_cancel_all was called (shutdown).
bool rrd_ctl_abort(void *ctl);
// The rr_control of a computation run for a task: rrd_ctl_abort, and progress stored into
// ctl->progress (what GET /v1/jobs/{id} reports).
rr_control rrd_ctl_control(rrd_ctl *ctl);
void rrd_http_cancel_all(void);

#endif
