// What the routes share (see routes.h): model look-up, and the compute routes' skeleton: the
// parse of inputs, labels, version pin and seed, the one exit for refusals, the cost estimate
// from the route's descriptor and the hand-off to a worker or a job.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../jobs.h"
#include "../router.h"
#include "routes.h"

rrd_loaded *rrd_route_entry(rrd_request *r)
{
    const char *name = r->params[0];
    if (!rrd_valid_model_name(name)) {
        rrd_problem(r, RRD_P_INVALID, "name",
                    "model name '%.64s' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}", name);
        return NULL;
    }
    rrd_loaded *l = rrd_registry_get(r->srv->models, name);
    if (l == NULL)
        rrd_problem_no_model(r, name);
    return l;
}

void rrd_problem_no_model(rrd_request *r, const char *name)
{
    // The names of the loaded models, as many as fit in the detail; the closest first when
    // the name looks like a typo of one.
    char names[360] = "";
    size_t used = 0, n_more = 0;
    rrd_loaded **items = NULL;
    const size_t n = rrd_registry_list(r->srv->models, &items);
    for (size_t i = 0; i < n; i++) {
        const size_t len = strlen(items[i]->name);
        if (n_more == 0 && used + len + 3 < sizeof names)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "",
                                     items[i]->name);
        else
            n_more++;
    }
    char cands[sizeof names];
    snprintf(cands, sizeof cands, "%s", names);
    for (char *p = cands; *p; p++)
        if (*p == ',')
            *p = ' ';
    size_t m = 0;
    const char *near = rrd_suggest(name, cands, &m);
    for (size_t i = 0; i < n; i++)
        rrd_loaded_release(items[i]);
    free(items);
    if (n == 0)
        rrd_problem(r, RRD_P_NOT_FOUND, "name",
                    "no model named '%s'; no models are loaded (PUT /v1/models/{name} uploads one, "
                    "--models-dir loads a folder at start)",
                    name);
    else if (near)
        rrd_problem(r, RRD_P_NOT_FOUND, "name",
                    "no model named '%s': did you mean '%.*s'? The loaded models are: %s%s", name,
                    (int)m, near, names, n_more ? ", ..." : "");
    else
        rrd_problem(r, RRD_P_NOT_FOUND, "name", "no model named '%s'; the loaded models are: %s%s",
                    name, names, n_more ? ", ..." : "");
}

bool rrd_wants_binary(const rrd_request *r)
{
    return r->accept && strstr(r->accept, "application/vnd.safetensors") != NULL;
}

bool rrd_only_members(json_t *obj, const char *allowed, const char *where, rrd_out *out)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t n = strlen(key);
        const char *p = allowed;
        bool ok = false;
        while (*p && !ok) {
            while (*p == ' ')
                p++;
            size_t m = strcspn(p, " ");
            ok = m == n && strncmp(p, key, n) == 0;
            p += m;
        }
        if (!ok) {
            size_t m = 0;
            const char *near = rrd_suggest(key, allowed, &m);
            if (near)
                rrd_problem_out(out, RRD_P_INVALID, key,
                                "unknown member '%.64s' in %s: did you mean '%.*s'? (members: %s)",
                                key, where, (int)m, near, allowed);
            else
                rrd_problem_out(out, RRD_P_INVALID, key,
                                "unknown member '%.64s' in %s (members: %s)", key, where, allowed);
            return false;
        }
    }
    return true;
}

void rrd_compute_free(rrd_task *t)
{
    rrd_compute *c = (rrd_compute *)t;
    if (c->free_extra)
        c->free_extra(c->extra);
    rrd_doc_clear(&c->doc);
    free(c->x);
    free(c->y);
    rrd_loaded_release(c->entry);
    free(c);
}

rrd_batch_fault rrd_compute_batch(const rr_shape *s, const rr_shape *in, bool allow_single,
                                  size_t max_batch, size_t *B, bool *single)
{
    // [B, ...input_shape], or input_shape alone for one sample.
    bool batch = s->ndim == in->ndim + 1, one = allow_single && s->ndim == in->ndim;
    for (int i = 0; i < in->ndim && (batch || one); i++) {
        batch = batch && s->dim[i + 1] == in->dim[i];
        one = one && s->dim[i] == in->dim[i];
    }
    *single = !batch;
    *B = batch ? (size_t)s->dim[0] : 1;
    if (!batch && !one)
        return RRD_BATCH_SHAPE;
    if (*B == 0)
        return RRD_BATCH_EMPTY;
    return *B > max_batch ? RRD_BATCH_OVER : RRD_BATCH_OK;
}

// "version" (409 when it is not the entry's), "seed", "async" and "timeout_ms" (which may
// bring the request's deadline forward).
static bool read_controls(rrd_compute *c, rrd_request *r, rrd_out *o)
{
    json_t *root = c->doc.root;
    json_t *ver = json_object_get(root, "version");
    if (ver && !json_is_integer(ver))
        return rrd_invalid(o, "version", "version must be an integer");
    if (ver && json_integer_value(ver) != c->entry->version) {
        rrd_problem_out(o, RRD_P_VERSION, "version",
                        "model '%s' is at version %d, the request pins version %lld",
                        c->entry->name, c->entry->version, (long long)json_integer_value(ver));
        return false;
    }
    json_t *seed = json_object_get(root, "seed");
    if (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0))
        return rrd_invalid(o, "seed", "seed must be an integer >= 0");
    if (seed)
        c->seed = (uint64_t)json_integer_value(seed);
    json_t *as = json_object_get(root, "async");
    if (as && !json_is_boolean(as))
        return rrd_invalid(o, "async", "async must be true or false");
    json_t *tm = json_object_get(root, "timeout_ms");
    if (tm) {
        const double ms = json_number_value(tm);
        if (!json_is_number(tm) || !(ms > 0) || !isfinite(ms))
            return rrd_invalid(o, "timeout_ms", "timeout_ms must be a number of milliseconds > 0");
        if (r->t0 + ms * 1e-3 < r->deadline)
            r->deadline = r->t0 + ms * 1e-3;
    }
    return true;
}

// "inputs": a batch, or one sample, of the model's input shape.
static bool read_inputs(rrd_compute *c, size_t max_batch, rrd_out *o)
{
    const rr_shape *in = rr_model_input_shape(c->entry->model);
    rr_shape s;
    if (!rrd_doc_tensor(&c->doc, "inputs", true, &s, &c->x, o))
        return false;
    switch (rrd_compute_batch(&s, in, true, max_batch, &c->B, &c->single)) {
        case RRD_BATCH_OK:
            return true;
        case RRD_BATCH_SHAPE: {
            char have[96], want[96];
            rr_shape_format(&s, have, sizeof have);
            rr_shape_format(in, want, sizeof want);
            rrd_problem_out(o, RRD_P_SHAPE, "inputs",
                            "inputs has shape %s, model '%s' expects [B, %s (or %s for one sample)",
                            have, c->entry->name, want + 1, want);
            return false;
        }
        case RRD_BATCH_EMPTY:
            rrd_problem_out(o, RRD_P_SHAPE, "inputs", "inputs holds no samples");
            return false;
        case RRD_BATCH_OVER:
            rrd_problem_out(o, RRD_P_BATCH_SIZE, "inputs",
                            "batch of %zu samples is over --max-batch (%zu)", c->B, max_batch);
            return false;
    }
    return false;
}

// "labels": B class indices in [0, K).
static bool read_labels(rrd_compute *c, bool required, rrd_out *o)
{
    const size_t K = (size_t)rr_model_num_classes(c->entry->model);
    size_t ny = 0;
    if (!rrd_doc_labels(&c->doc, "labels", required, &ny, &c->y, o))
        return false;
    if (c->y && ny != c->B) {
        rrd_problem_out(o, RRD_P_SHAPE, "labels", "labels has %zu entries for %zu samples", ny,
                        c->B);
        return false;
    }
    for (size_t i = 0; c->y && i < ny; i++)
        if (c->y[i] < 0 || c->y[i] >= (int64_t)K)
            return rrd_invalid(o, "labels", "labels[%zu] = %lld is out of range [0, %zu)", i,
                               (long long)c->y[i], K);
    return true;
}

bool rrd_compute_read(rrd_compute *c, rrd_request *r, bool labels_required, rrd_out *out)
{
    c->base.binary = rrd_wants_binary(r);
    return rrd_doc_parse(&c->doc, r, out) && read_controls(c, r, out) &&
           read_inputs(c, r->srv->cfg.max_batch, out) && read_labels(c, labels_required, out);
}

// A task for the route's model with zeroed options; NULL after answering the request.
static rrd_compute *compute_new(rrd_request *r, const rrd_compute_route *d)
{
    rrd_loaded *entry = rrd_route_entry(r);
    if (entry == NULL)
        return NULL;
    rrd_compute *c = calloc(1, sizeof *c);
    void *extra = d->opts_size ? calloc(1, d->opts_size) : NULL;
    if (c == NULL || (d->opts_size && extra == NULL)) {
        free(c);
        free(extra);
        rrd_loaded_release(entry);
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return NULL;
    }
    c->entry = entry;
    c->base.run = d->run;
    c->base.free = rrd_compute_free;
    c->base.model = entry->model;
    c->base.version = entry->version;
    snprintf(c->base.model_name, sizeof c->base.model_name, "%s", entry->name);
    c->extra = extra;
    c->free_extra = d->opts_free;
    return c;
}

// The route's cost hook on top of the presets, into the task's estimate and lane.
static void estimate(rrd_request *r, rrd_compute *c, const rrd_compute_route *d)
{
    rrd_route_cost q = {.passes = 1, .long_kind = d->long_kind};
    snprintf(q.cls, sizeof q.cls, "%s", d->name);
    if (d->cost)
        d->cost(c, &q);
    c->base.out_values = q.out_values;
    rrd_task_estimate(r->srv, &c->base, q.cls, q.passes, c->B, q.long_kind);
}

// Hands the parsed request to a worker: a job when "async" is true (202 {"job"}), else
// synchronously.
static void dispatch(rrd_request *r, rrd_compute *c)
{
    if (json_is_true(json_object_get(c->doc.root, "async"))) {
        rrd_jobs_refusal why;
        rrd_job *job = rrd_jobs_submit(r->srv->jobs, r->srv->pool, &c->base, r->client, &why);
        if (job == NULL) {
            if (why == RRD_JOBS_CLIENT)
                rrd_problem(r, RRD_P_QUEUE_FULL, NULL,
                            "this client (%s) has %zu jobs queued or running, the most one "
                            "client may have (--jobs-per-client); retry when one finishes",
                            r->client, r->srv->cfg.jobs_per_client);
            else
                rrd_problem(r, RRD_P_QUEUE_FULL, NULL,
                            "the job table is full of unfinished jobs or the compute queue is "
                            "full; retry shortly");
            r->out.retry_after = 1;
            return;
        }
        char loc[96];
        snprintf(loc, sizeof loc, "/v1/jobs/%s", rrd_job_id(job));
        rrd_add_header(r, "Location", loc);
        rrd_respond_json(r, 202,
                         json_pack("{s:s, s:s}", "job", rrd_job_id(job), "status", "queued"));
        rrd_job_release(job);
        return;
    }
    rrd_submit(r, &c->base);
}

void rrd_route_compute(rrd_request *r)
{
    const rrd_compute_route *d = r->route->compute;
    rrd_compute *c = compute_new(r, d);
    if (c == NULL)
        return;
    rrd_out *out = &r->out;
    const bool ok =
        (d->read ? d->read(c, r, out) : rrd_compute_read(c, r, d->labels_required, out)) &&
        (d->members == NULL || rrd_only_members(c->doc.root, d->members, d->what, out)) &&
        (d->parse == NULL || d->parse(c, &r->srv->cfg, out));
    if (!ok) { // the one exit of a refused request: out holds the problem
        r->responded = true;
        rrd_compute_free(&c->base);
        return;
    }
    estimate(r, c, d);
    dispatch(r, c);
}

void rrd_compute_stamp(const rrd_compute *c, json_t *root)
{
    json_object_set_new(root, "model", json_string(c->entry->name));
    json_object_set_new(root, "version", json_integer(c->entry->version));
    json_object_set_new(root, "elapsed_ms", json_real((rrd_now() - c->base.t_submit) * 1e3));
}

rr_shape rrd_compute_shape(const rrd_compute *c, size_t lead)
{
    const rr_shape *in = rr_model_input_shape(c->entry->model);
    rr_shape s = {0};
    s.dim[s.ndim++] = (int64_t)c->B; // a single sample is answered as a batch of one
    if (lead)
        s.dim[s.ndim++] = (int64_t)lead;
    for (int i = 0; i < in->ndim; i++)
        s.dim[s.ndim++] = in->dim[i];
    return s;
}

bool rrd_invalid(rrd_out *out, const char *field, const char *fmt, ...)
{
    char detail[512]; // as problem.c's
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    rrd_problem_out(out, RRD_P_INVALID, field, "%s", detail);
    return false;
}
