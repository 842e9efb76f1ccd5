// Counters and histograms for /metrics (see metrics.h).
#include "metrics.h"

#include "cost.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5,   1,     2.5,  5,     10,   30,  60};
#define NB         (sizeof buckets / sizeof buckets[0])
#define MAX_ROUTES 48
#define MAX_CODES  16

typedef struct route_stats {
    char name[48];
    int codes[MAX_CODES];
    unsigned long long count_by_code[MAX_CODES];
    int ncodes;
    unsigned long long hist[NB + 1]; // the last is +Inf
    double sum;
    unsigned long long count;
} route_stats;

struct rrd_metrics {
    pthread_mutex_t mu;
    route_stats routes[MAX_ROUTES];
    int nroutes;
    unsigned long long bytes_in, bytes_out;
};

rrd_metrics *rrd_metrics_new(void)
{
    rrd_metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void rrd_metrics_free(rrd_metrics *m)
{
    if (m) {
        pthread_mutex_destroy(&m->mu);
        free(m);
    }
}

void rrd_metrics_request(rrd_metrics *m, const char *route, int status, double seconds,
                         size_t bytes_in, size_t bytes_out)
{
    pthread_mutex_lock(&m->mu);
    route_stats *r = NULL;
    for (int i = 0; i < m->nroutes && !r; i++)
        if (strcmp(m->routes[i].name, route) == 0)
            r = &m->routes[i];
    if (r == NULL && m->nroutes < MAX_ROUTES) {
        r = &m->routes[m->nroutes++];
        snprintf(r->name, sizeof r->name, "%s", route);
    }
    if (r) {
        int c = 0;
        while (c < r->ncodes && r->codes[c] != status)
            c++;
        if (c == r->ncodes && r->ncodes < MAX_CODES)
            r->codes[r->ncodes++] = status;
        if (c < r->ncodes)
            r->count_by_code[c]++;
        size_t b = 0;
        while (b < NB && seconds > buckets[b])
            b++;
        r->hist[b]++;
        r->sum += seconds;
        r->count++;
    }
    m->bytes_in += bytes_in;
    m->bytes_out += bytes_out;
    pthread_mutex_unlock(&m->mu);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
put(sbuf *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t ncap = (s->cap ? 2 * s->cap : 4096) + (size_t)n;
        char *p = realloc(s->p, ncap);
        if (p == NULL)
            return;
        s->p = p;
        s->cap = ncap;
    }
}

static void put_v(void *ctx, const char *fmt, ...)
{
    sbuf *s = ctx;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    put(s, "%s", line);
}

// Requests by route and code, their latency histograms, bytes in and out (under m->mu).
static void render_requests(sbuf *s, const rrd_metrics *m)
{
    put(s, "# HELP relureg_requests_total HTTP requests answered, by route and status code.\n"
           "# TYPE relureg_requests_total counter\n");
    for (int i = 0; i < m->nroutes; i++)
        for (int c = 0; c < m->routes[i].ncodes; c++)
            put(s, "relureg_requests_total{route=\"%s\",code=\"%d\"} %llu\n", m->routes[i].name,
                m->routes[i].codes[c], m->routes[i].count_by_code[c]);
    put(s, "# HELP relureg_request_duration_seconds Time from the first byte of a request to "
           "its answer.\n# TYPE relureg_request_duration_seconds histogram\n");
    for (int i = 0; i < m->nroutes; i++) {
        const route_stats *r = &m->routes[i];
        unsigned long long cum = 0;
        for (size_t b = 0; b < NB; b++) {
            cum += r->hist[b];
            put(s, "relureg_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                r->name, buckets[b], cum);
        }
        cum += r->hist[NB];
        put(s, "relureg_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", r->name,
            cum);
        put(s, "relureg_request_duration_seconds_sum{route=\"%s\"} %.6f\n", r->name, r->sum);
        put(s, "relureg_request_duration_seconds_count{route=\"%s\"} %llu\n", r->name, r->count);
    }
    put(s,
        "# HELP relureg_received_bytes_total Request body bytes received.\n"
        "# TYPE relureg_received_bytes_total counter\nrelureg_received_bytes_total %llu\n",
        m->bytes_in);
    put(s,
        "# HELP relureg_sent_bytes_total Response body bytes sent.\n"
        "# TYPE relureg_sent_bytes_total counter\nrelureg_sent_bytes_total %llu\n",
        m->bytes_out);
}

// The two-lane queue and the workers.
static void render_queue(sbuf *s, const rrd_pool_stats *ps)
{
    static const char *const lanes[] = {"interactive", "batch"};
    put(s, "# HELP relureg_queue_depth Compute tasks waiting for a worker, by lane.\n"
           "# TYPE relureg_queue_depth gauge\n");
    for (int l = 0; l < RRD_NLANES; l++)
        put(s, "relureg_queue_depth{lane=\"%s\"} %zu\n", lanes[l], ps->queued[l]);
    put(s, "# HELP relureg_workers_busy Compute workers running a task, by lane.\n"
           "# TYPE relureg_workers_busy gauge\n");
    for (int l = 0; l < RRD_NLANES; l++)
        put(s, "relureg_workers_busy{lane=\"%s\"} %zu\n", lanes[l], ps->running[l]);
    put(s,
        "# HELP relureg_workers Compute workers (the batch lane may hold all but one).\n"
        "# TYPE relureg_workers gauge\nrelureg_workers %d\n",
        ps->workers);
    put(s, "# HELP relureg_queue_wait_seconds_total Time tasks spent queued before a worker "
           "took them, by lane.\n# TYPE relureg_queue_wait_seconds_total counter\n");
    for (int l = 0; l < RRD_NLANES; l++)
        put(s, "relureg_queue_wait_seconds_total{lane=\"%s\"} %.6f\n", lanes[l], ps->wait_sum[l]);
    put(s, "# HELP relureg_queue_started_total Tasks a worker took from the queue, by lane.\n"
           "# TYPE relureg_queue_started_total counter\n");
    for (int l = 0; l < RRD_NLANES; l++)
        put(s, "relureg_queue_started_total{lane=\"%s\"} %llu\n", lanes[l], ps->started[l]);
    put(s,
        "# HELP relureg_queue_refused_total Tasks refused at admission: reason deadline (the "
        "estimated wait plus cost would pass the deadline) or full (the queue's memory bound).\n"
        "# TYPE relureg_queue_refused_total counter\n"
        "relureg_queue_refused_total{reason=\"deadline\"} %llu\n"
        "relureg_queue_refused_total{reason=\"full\"} %llu\n",
        ps->refused_time, ps->refused_full);
    put(s,
        "# HELP relureg_queue_expired_total Queued tasks dropped unrun: their deadline passed.\n"
        "# TYPE relureg_queue_expired_total counter\nrelureg_queue_expired_total %llu\n",
        ps->expired);
}

// Models, jobs and connections.
static void render_state(sbuf *s, size_t models, const rrd_jobs_stats *js,
                         const rrd_conns_stats *cs)
{
    put(s,
        "# HELP relureg_models_loaded Models in the registry.\n"
        "# TYPE relureg_models_loaded gauge\nrelureg_models_loaded %zu\n",
        models);
    put(s,
        "# HELP relureg_jobs Async jobs held (any status).\n"
        "# TYPE relureg_jobs gauge\nrelureg_jobs %zu\n",
        js->held);
    put(s,
        "# HELP relureg_jobs_answer_bytes Bytes of finished job answers held (--jobs-max-mb).\n"
        "# TYPE relureg_jobs_answer_bytes gauge\nrelureg_jobs_answer_bytes %zu\n"
        "# HELP relureg_jobs_evicted_total Finished job answers evicted to stay in budget.\n"
        "# TYPE relureg_jobs_evicted_total counter\nrelureg_jobs_evicted_total %llu\n",
        js->bytes, js->evicted);
    put(s,
        "# HELP relureg_connections Open client connections.\n"
        "# TYPE relureg_connections gauge\nrelureg_connections %zu\n"
        "# HELP relureg_connections_closed_total Connections closed by the server: headers "
        "too slow (or idle too long), body too slow, answer read too slow, or the oldest "
        "waiting for headers when near --max-conns.\n"
        "# TYPE relureg_connections_closed_total counter\n"
        "relureg_connections_closed_total{reason=\"headers\"} %llu\n"
        "relureg_connections_closed_total{reason=\"body\"} %llu\n"
        "relureg_connections_closed_total{reason=\"send\"} %llu\n"
        "relureg_connections_closed_total{reason=\"full\"} %llu\n"
        "# HELP relureg_requests_abandoned_total Computations cancelled because their client "
        "closed the connection before the answer.\n"
        "# TYPE relureg_requests_abandoned_total counter\n"
        "relureg_requests_abandoned_total %llu\n",
        cs->open, cs->closed_header, cs->closed_body, cs->closed_send, cs->closed_full,
        cs->abandoned);
}

char *rrd_metrics_render(rrd_metrics *m, int inflight, const rrd_pool_stats *ps,
                         const rrd_conns_stats *cs, const rrd_jobs_stats *js, size_t models,
                         size_t *len)
{
    sbuf s = {0};
    pthread_mutex_lock(&m->mu);
    render_requests(&s, m);
    pthread_mutex_unlock(&m->mu);
    put(&s,
        "# HELP relureg_requests_in_flight Requests being received, computed or answered.\n"
        "# TYPE relureg_requests_in_flight gauge\nrelureg_requests_in_flight %d\n",
        inflight);
    render_queue(&s, ps);
    rrd_cost_render(put_v, &s);
    render_state(&s, models, js, cs);
    *len = s.len;
    return s.p;
}
