// libmicrohttpd glue (see server.h for a request's life): bounded body accumulation, routing,
// answers with X-Request-Id and CORS headers, suspension while a worker computes, metrics
// and one access-log line per request in the request-completed callback.
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "jobs.h"
#include "metrics.h"
#include "pool.h"
#include "problem.h"
#include "router.h"

double rrd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---- answers ----

void rrd_respond_take(rrd_request *r, int status, const char *type, char *body, size_t len)
{
    rrd_out_drop_body(&r->out);
    r->out.status = status;
    r->out.body = body;
    r->out.len = len;
    snprintf(r->out.type, sizeof r->out.type, "%s", type);
    r->responded = true;
}

void rrd_respond_borrow(rrd_request *r, int status, const char *type, const void *body, size_t len,
                        void (*release)(void *), void *ctx)
{
    rrd_respond_take(r, status, type, (char *)body, len);
    r->out.release = release;
    r->out.release_ctx = ctx;
}

void rrd_respond(rrd_request *r, int status, const char *type, const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    rrd_respond_take(r, status, type, copy, len);
}

void rrd_out_json(rrd_out *out, int status, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(doc);
    if (s == NULL) {
        rrd_problem_out(out, RRD_P_UNAVAILABLE, NULL, "out of memory rendering the answer");
        return;
    }
    rrd_out_drop_body(out);
    out->status = status;
    out->body = s;
    out->len = strlen(s);
    snprintf(out->type, sizeof out->type, "application/json; charset=utf-8");
    out->retry_after = 0;
}

void rrd_respond_json(rrd_request *r, int status, json_t *doc)
{
    rrd_out_json(&r->out, status, doc);
    r->responded = true;
}

void rrd_add_header(rrd_request *r, const char *name, const char *value)
{
    if (r->nhdr < (int)(sizeof r->hdr / sizeof r->hdr[0])) {
        snprintf(r->hdr[r->nhdr].name, sizeof r->hdr[r->nhdr].name, "%s", name);
        snprintf(r->hdr[r->nhdr].value, sizeof r->hdr[r->nhdr].value, "%s", value);
        r->nhdr++;
    }
}

static atomic_bool cancel_all;

void rrd_http_cancel_all(void)
{
    atomic_store(&cancel_all, true);
}

bool rrd_ctl_abort(void *p)
{
    rrd_ctl *c = p;
    if (atomic_load(&c->cancel) || atomic_load(&cancel_all))
        return true;
    if (c->deadline > 0 && rrd_now() > c->deadline) {
        c->timed_out = true;
        return true;
    }
    return false;
}

static void ctl_progress(void *p, double f)
{
    atomic_store(&((rrd_ctl *)p)->progress, f);
}

rr_control rrd_ctl_control(rrd_ctl *ctl)
{
    return (rr_control){
        .abort = rrd_ctl_abort, .abort_ctx = ctl, .progress = ctl_progress, .progress_ctx = ctl};
}

// ---- compute ----

// Long work (over --long-ms, or of a long kind: the route's descriptor says which) waits in
// the batch lane, so that it never holds up the interactive requests.
static void choose_lane(rrd_server *s, rrd_task *t, bool long_kind)
{
    const bool is_long = long_kind || t->cost.cost_s * 1e3 >= s->cfg.long_ms;
    t->lane = is_long ? RRD_LANE_BATCH : RRD_LANE_INTERACTIVE;
}

void rrd_task_estimate(rrd_server *s, rrd_task *t, const char *cls, double passes, size_t B,
                       bool long_kind)
{
    rrd_cost_estimate(&t->cost, cls, t->model, passes, B, t->out_values, t->binary);
    choose_lane(s, t, long_kind);
}

void rrd_task_cost(rrd_server *s, rrd_task *t, const char *cls, double seconds)
{
    rrd_cost_seconds(&t->cost, cls, seconds);
    choose_lane(s, t, false);
}

// Runs the task into r->out and records what it cost.
static void compute(rrd_request *r, rrd_task *t, rrd_worker *w)
{
    const double t0 = rrd_now();
    t->run(t, w, &r->out);
    t->compute_s = rrd_now() - t0;
    if (t->ctl.timed_out && r->out.status != 503)
        rrd_problem_out(&r->out, RRD_P_TIMEOUT, NULL,
                        "the computation ran past the request's deadline (%g s) and was "
                        "cancelled",
                        r->deadline - r->t0);
    else if (r->out.status < 400)
        rrd_cost_observe(&t->cost, t->compute_s);
}

static void sync_run(rrd_work *wk, rrd_worker *w)
{
    rrd_request *r = (rrd_request *)((char *)wk - offsetof(rrd_request, work));
    compute(r, r->task, w);
    r->responded = true;
    rrd_worker_release(w);
    MHD_resume_connection(r->conn); // a barrier: the answer is visible to the I/O thread
}

static void sync_drop(rrd_work *wk, bool stopping)
{
    rrd_request *r = (rrd_request *)((char *)wk - offsetof(rrd_request, work));
    if (stopping)
        rrd_problem_out(&r->out, RRD_P_UNAVAILABLE, NULL,
                        "the server is shutting down; the request was not run");
    else
        rrd_problem_out(&r->out, RRD_P_TIMEOUT, NULL,
                        "the request waited past its deadline (%g s) for a worker and was not "
                        "run",
                        r->deadline - r->t0);
    r->out.retry_after = 1;
    r->responded = true;
    MHD_resume_connection(r->conn);
}

// Set by rrd_submit when it queued the request: read by route_run on the same thread, which
// must then not touch the request (a worker may already have answered and freed it).
static _Thread_local bool submitted;

void rrd_submit(rrd_request *r, rrd_task *t)
{
    rrd_server *s = r->srv;
    r->task = t;
    t->t_submit = rrd_now();
    t->ctl.deadline = r->deadline;
    if (t->cost.cls[0] == '\0')
        rrd_task_estimate(s, t, "other", 1, 1, false);
    // Inline by the formula's estimate, not the learned one: what a request measures on a
    // loaded machine (preemption, a cold workspace) must not push the tiniest requests onto
    // the hand-off they are too small for.
    if (t->lane == RRD_LANE_INTERACTIVE && t->cost.raw_s * 1e6 <= s->cfg.inline_us) {
        rrd_worker *w = r->parse_worker ? r->parse_worker : rrd_worker_inline();
        if (w != NULL) {
            r->inline_run = r->parse_worker == NULL;
            compute(r, t, w);
            r->responded = true;
            return;
        }
    }
    // Suspend before queueing, so that a fast worker cannot resume first (a request parsed
    // on a worker is suspended already).
    const bool was_suspended = r->suspended;
    r->work = (rrd_work){sync_run, sync_drop};
    if (!was_suspended) {
        MHD_suspend_connection(r->conn);
        r->suspended = true;
    }
    double wait = 0;
    bool full = false;
    // A client that leaves cancels its computation (conns.h); the flag lives in the task,
    // which outlives the watch (rrd_http_completed resets the phase before freeing it).
    rrd_conns_watch(s->conns, r->conn, &t->ctl.cancel);
    if (rrd_pool_submit(s->pool, &r->work, t->lane, t->cost.cost_s, r->deadline, &wait, &full)) {
        submitted = true; // from here on another worker owns the request
        return;
    }
    if (!was_suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
    if (full)
        rrd_problem(r, RRD_P_QUEUE_FULL, NULL,
                    "the compute queue is full; retry in about %.1f s (the estimated wait)", wait);
    else
        rrd_problem(r, RRD_P_QUEUE_FULL, NULL,
                    "this request would not finish by its deadline: about %.3f s of waiting "
                    "for a worker plus about %.3f s of compute is past its %.3f s; retry in "
                    "about %.1f s, or allow more time (timeout_ms)",
                    wait, t->cost.cost_s, r->deadline - rrd_now(), wait);
    // Whole seconds (RFC 9110), to the nearest: the detail has the estimate itself.
    r->out.retry_after = wait < 1.5 ? 1 : (int)lround(wait);
}

// ---- the access handler ----

static void add_headers(rrd_server *s, rrd_request *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Type", r->out.type[0] ? r->out.type : "text/plain");
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (s->cfg.cors_origin[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", s->cfg.cors_origin);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "X-Request-Id, Retry-After, Inference-Header-Content-Length");
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    if (r->out.retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", r->out.retry_after);
        MHD_add_response_header(resp, "Retry-After", v);
    }
    if (r->out.header_len > 0) {
        char v[24];
        snprintf(v, sizeof v, "%zu", r->out.header_len);
        MHD_add_response_header(resp, "Inference-Header-Content-Length", v);
    }
    for (int i = 0; i < r->nhdr; i++)
        MHD_add_response_header(resp, r->hdr[i].name, r->hdr[i].value);
}

static enum MHD_Result queue(rrd_server *s, rrd_request *r)
{
    struct MHD_Response *resp;
    if (r->out.release) {
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            r->out.len, r->out.body, r->out.release, r->out.release_ctx);
        if (resp) { // now MHD's to release
            r->out.release = NULL;
            r->out.body = NULL;
        }
    } else if (r->out.body) {
        resp = MHD_create_response_from_buffer(r->out.len, r->out.body, MHD_RESPMEM_MUST_FREE);
        if (resp)
            r->out.body = NULL; // now MHD's
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL)
        return MHD_NO;
    rrd_conns_phase(s->conns, r->conn, RRD_CONN_SEND, r->out.len);
    add_headers(s, r, resp);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->out.status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void preflight(rrd_server *s, rrd_request *r)
{
    rrd_respond(r, 204, "text/plain", "", 0);
    if (s->cfg.cors_origin[0]) {
        rrd_add_header(r, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
        rrd_add_header(r, "Access-Control-Allow-Headers",
                       "Content-Type, Accept, Authorization, X-Request-Id, "
                       "Inference-Header-Content-Length");
        rrd_add_header(r, "Access-Control-Max-Age", "600");
    }
}

// Request bodies larger than this are parsed (and validated) on a worker, not on the I/O
// thread: parsing JSON runs at a few hundred MB/s, so a 64 KiB body is about the cost of the
// hand-off, and an 8 MB one would stall every other connection of that thread for 30 ms.
#define PARSE_INLINE_MAX (64 * 1024)

// The route handler on a parser thread (for a large body; its own small pool, so that reading
// a request never waits behind computations): it answers at once (an error, an inline
// computation, 202 for a job) or queues the computation, which then answers.
static void route_run(rrd_work *wk, rrd_worker *w)
{
    rrd_request *r = (rrd_request *)((char *)wk - offsetof(rrd_request, work));
    r->parse_worker = w;
    submitted = false;
    r->route->fn(r);
    if (submitted)
        return; // the computation is queued: its worker answers
    r->parse_worker = NULL;
    r->responded = true;
    MHD_resume_connection(r->conn);
}

static void route_drop(rrd_work *wk, bool stopping)
{
    rrd_request *r = (rrd_request *)((char *)wk - offsetof(rrd_request, work));
    rrd_problem_out(&r->out, stopping ? RRD_P_UNAVAILABLE : RRD_P_TIMEOUT, NULL,
                    stopping ? "the server is shutting down; the request was not read"
                             : "the request waited past its deadline to be read");
    r->out.retry_after = 1;
    r->responded = true;
    MHD_resume_connection(r->conn);
}

static void offload(rrd_server *s, rrd_request *r)
{
    r->work = (rrd_work){route_run, route_drop};
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    double wait = 0;
    bool full = false;
    const double cost = 20e-6 + (double)r->body_len / 300e6;
    if (rrd_pool_submit(s->parsers, &r->work, RRD_LANE_INTERACTIVE, cost, r->deadline, &wait,
                        &full))
        return;
    r->suspended = false;
    MHD_resume_connection(r->conn);
    rrd_problem(r, RRD_P_QUEUE_FULL, NULL,
                full ? "the compute queue is full; retry in about %.1f s"
                     : "this request would wait about %.1f s for a worker to read it, past its "
                       "deadline",
                wait);
    r->out.retry_after = wait < 1.5 ? 1 : (int)lround(wait);
}

static void dispatch(rrd_server *s, rrd_request *r)
{
    if (r->too_large) {
        rrd_problem(r, RRD_P_BODY_SIZE, NULL,
                    "the request body is larger than --max-body-mb "
                    "(%zu MiB)",
                    s->cfg.max_body >> 20);
        return;
    }
    if (strcmp(r->method, "OPTIONS") == 0) {
        preflight(s, r);
        return;
    }
    bool known;
    char allow[64];
    r->route = rrd_route_match(r->method, r->url, r->params, &known, allow, sizeof allow);
    if (r->route == NULL) {
        if (known) {
            rrd_problem(r, RRD_P_METHOD, NULL, "%s is not allowed on %s (allowed: %s)", r->method,
                        r->url, allow);
            rrd_add_header(r, "Allow", allow);
        } else {
            rrd_problem(r, RRD_P_NOT_FOUND, NULL, "no resource at %s", r->url);
        }
        return;
    }
    if (r->body_len > PARSE_INLINE_MAX) {
        offload(s, r);
        return;
    }
    r->route->fn(r);
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

// X-Request-Id: echoed when the client sent a sane one, else generated.
static void request_id(rrd_request *r)
{
    const char *id = header(r->conn, "X-Request-Id");
    bool ok = id && *id && strlen(id) < sizeof r->request_id;
    for (const char *p = id; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("-_.:", *p);
    if (ok) {
        snprintf(r->request_id, sizeof r->request_id, "%s", id);
        return;
    }
    static atomic_ulong counter;
    snprintf(r->request_id, sizeof r->request_id, "%d-%lx-%lu", r->srv->port,
             (unsigned long)time(NULL), atomic_fetch_add(&counter, 1) + 1);
}

static void client_address(rrd_request *r)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = i ? i->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client,
                  sizeof r->client);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client,
                  sizeof r->client);
    else
        snprintf(r->client, sizeof r->client, "unknown");
}

enum MHD_Result rrd_http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    rrd_server *s = cls;
    rrd_request *r = *con_cls;
    if (r == NULL) {
        if ((r = calloc(1, sizeof *r)) == NULL || (r->url = strdup(url)) == NULL) {
            free(r);
            return MHD_NO;
        }
        r->srv = s;
        r->conn = conn;
        r->t0 = rrd_now();
        r->deadline = r->t0 + s->cfg.timeout_s;
        snprintf(r->method, sizeof r->method, "%s", method);
        request_id(r);
        client_address(r);
        r->content_type = header(conn, "Content-Type");
        r->accept = header(conn, "Accept");
        atomic_fetch_add(&s->inflight, 1);
        *con_cls = r;
        rrd_conns_phase(s->conns, conn, RRD_CONN_BODY, 0);
        // RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400.
        if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && header(conn, "Host") == NULL) {
            rrd_problem(r, RRD_P_BAD_REQUEST, "Host",
                        "an HTTP/1.1 request must carry a Host header (RFC 9112, 3.2)");
            return queue(s, r);
        }
        // RFC 9112 6.1: a transfer coding the server does not understand is 501 (MHD would
        // otherwise wait for a body it cannot delimit).
        const char *te = header(conn, "Transfer-Encoding");
        if (te && strcasecmp(te, "chunked") != 0) {
            rrd_problem(r, RRD_P_NOT_IMPLEMENTED, "Transfer-Encoding",
                        "transfer coding '%.40s' is not supported: send the body as is, with "
                        "Content-Length, or chunked",
                        te);
            return queue(s, r);
        }
        // A declared length over the limit is refused before reading the body.
        const char *cl = header(conn, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) {
            r->too_large = true;
            dispatch(s, r);
            return queue(s, r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        rrd_conns_received(s->conns, conn, n);
        if (r->too_large || r->responded)
            return MHD_YES; // discard what follows a refusal
        if (r->body_len + n > s->cfg.max_body) {
            r->too_large = true;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 16384;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            uint8_t *b = realloc(r->body, cap);
            if (b == NULL) {
                rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory receiving the body");
                return MHD_YES;
            }
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->suspended) {
        // Called again after a worker resumed us: its answer is in r->out (the resume was
        // the barrier). Nothing else writes the request now.
        return queue(s, r);
    }
    if (!r->responded) {
        rrd_conns_phase(s->conns, conn, RRD_CONN_COMPUTE, 0);
        dispatch(s, r);
        // Once suspended, the request belongs to a worker until it resumes the connection:
        // read nothing of it here.
        if (r->suspended)
            return MHD_YES;
    }
    return queue(s, r);
}

void rrd_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    rrd_server *s = cls;
    rrd_request *r = *con_cls;
    if (r == NULL)
        return;
    // Idle until the next request's headers (which must come within --header-timeout-s).
    rrd_conns_phase(s->conns, conn, RRD_CONN_HEADERS, 0);
    const double dt = rrd_now() - r->t0;
    const int status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? r->out.status : 0;
    const char *route = r->route ? r->route->name : "unmatched";
    rrd_metrics_request(s->metrics, route, status ? status : 499, dt, r->body_len, r->out.len);
    if (!s->cfg.quiet) {
        char cost[128] = "";
        if (r->task && r->task->cost.cls[0])
            snprintf(cost, sizeof cost, " cost=%s:%.3fms/%.3fms%s", r->task->cost.cls,
                     r->task->cost.cost_s * 1e3, r->task->compute_s * 1e3,
                     r->inline_run                     ? ":inline"
                     : r->task->lane == RRD_LANE_BATCH ? ":batch"
                                                       : "");
        fprintf(stderr, "%s %s %d %.1fms in=%zu out=%zu id=%s%s%s\n", r->method, r->url, status,
                dt * 1e3, r->body_len, r->out.len, r->request_id, cost,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection dropped)");
    }
    if (r->task)
        r->task->free(r->task);
    rrd_out_drop_body(&r->out);
    free(r->body);
    free(r->url);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}
