// Async jobs (see jobs.h).
#include "jobs.h"

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "problem.h"

enum { QUEUED, RUNNING, DONE, FAILED, CANCELLED };

// A reference-counted answer text.
typedef struct doc {
    atomic_int refs;
    size_t len;
    char text[];
} doc;

static void doc_release(void *p)
{
    doc *d = p;
    if (d && atomic_fetch_sub(&d->refs, 1) == 1)
        free(d);
}
static const char *status_names[] = {"queued", "running", "done", "failed", "cancelled"};

struct rrd_job {
    atomic_int refs;
    char id[104]; // "INSTANCE-" (up to 65 bytes) + 32 hex digits
    char client[64];
    atomic_int status;
    rrd_task *task;
    rrd_out out;
    double created;
    rrd_work work; // the hand-off to the pool
    rrd_jobs *owner;
    // A finished job's GET answer, built once by the worker; NULL before, and after eviction.
    // Set and dropped under owner->mu; an answer being sent holds its own reference.
    struct doc *doc;
    size_t doc_len;
    bool evicted;
};

struct rrd_jobs {
    pthread_mutex_t mu;
    rrd_job **items; // by age, oldest first
    size_t n;
    rrd_jobs_config cfg;
    char prefix[66]; // "INSTANCE-" or ""
    size_t bytes;    // sum of doc_len over items
    unsigned long long evicted;
};

static void job_free(rrd_job *job)
{
    if (job->task)
        job->task->free(job->task);
    free(job->out.body);
    doc_release(job->doc);
    free(job);
}

void rrd_job_release(rrd_job *job)
{
    if (job && atomic_fetch_sub(&job->refs, 1) == 1)
        job_free(job);
}

rrd_jobs *rrd_jobs_new(const rrd_jobs_config *cfg)
{
    rrd_jobs *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->cfg = *cfg;
    if (cfg->instance && cfg->instance[0])
        snprintf(j->prefix, sizeof j->prefix, "%.64s-", cfg->instance);
    j->cfg.instance = NULL;
    j->items = calloc(cfg->max ? cfg->max : 1, sizeof *j->items);
    if (j->items == NULL) {
        free(j);
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    return j;
}

void rrd_jobs_free(rrd_jobs *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n; i++)
        rrd_job_release(j->items[i]);
    free(j->items);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

// Writes 32 hex digits and a NUL (33 bytes) to out.
static void random_id(char *out)
{
    unsigned char b[16];
    int fd = open("/dev/urandom", O_RDONLY);
    ssize_t got = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof b) { // no urandom: time and address, still unique per process
        double t = rrd_now();
        memcpy(b, &t, 8);
        uintptr_t a = (uintptr_t)out;
        memcpy(b + 8, &a, 8);
    }
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static bool finished(const rrd_job *job)
{
    const int st = atomic_load(&job->status);
    return st != QUEUED && st != RUNNING;
}

// ---- fairness (under j->mu) ----

// The client with the most of `what` (bytes of answers, or finished jobs): its oldest
// finished job's index, or -1.
static long victim(rrd_jobs *j, bool by_bytes)
{
    const char *worst = NULL;
    size_t worst_amount = 0;
    for (size_t i = 0; i < j->n; i++) {
        const rrd_job *a = j->items[i];
        if (!finished(a) || (by_bytes && a->doc == NULL))
            continue;
        size_t amount = 0;
        for (size_t k = 0; k < j->n; k++) {
            const rrd_job *b = j->items[k];
            if (strcmp(a->client, b->client) == 0 && finished(b))
                amount += by_bytes ? b->doc_len : 1;
        }
        if (amount > worst_amount) {
            worst_amount = amount;
            worst = a->client;
        }
    }
    for (size_t i = 0; worst && i < j->n; i++) // items are oldest first
        if (finished(j->items[i]) && strcmp(j->items[i]->client, worst) == 0 &&
            (!by_bytes || j->items[i]->doc))
            return (long)i;
    return -1;
}

static void evict_answers(rrd_jobs *j)
{
    while (j->bytes > j->cfg.budget) {
        long i = victim(j, true);
        if (i < 0)
            return;
        rrd_job *job = j->items[i];
        j->bytes -= job->doc_len;
        doc_release(job->doc);
        job->doc = NULL;
        job->doc_len = 0;
        job->evicted = true;
        j->evicted++;
    }
}

static void remove_at(rrd_jobs *j, size_t i)
{
    rrd_job *job = j->items[i];
    j->bytes -= job->doc_len;
    memmove(j->items + i, j->items + i + 1, (j->n - i - 1) * sizeof *j->items);
    j->n--;
    rrd_job_release(job);
}

// ---- running ----

// The GET answer of a finished job: {"job", "status", "progress", "result" | "error"}, with
// the answer's JSON text spliced in as it is (no parse, no re-render).
static void build_doc(rrd_job *job, int st)
{
    const char *member = st == DONE ? "result" : st == FAILED ? "error" : NULL;
    char head[256];
    int hl = snprintf(head, sizeof head, "{\"job\":\"%s\",\"status\":\"%s\",\"progress\":%s%s%s%s",
                      job->id, status_names[st], st == DONE ? "1" : "0",
                      member && job->out.body ? ",\"" : "", member && job->out.body ? member : "",
                      member && job->out.body ? "\":" : "");
    const size_t bl = member && job->out.body ? job->out.len : 0;
    doc *d = malloc(sizeof *d + (size_t)hl + bl + 2);
    if (d == NULL)
        return; // GET then answers without the result, as for a running job
    atomic_init(&d->refs, 1);
    memcpy(d->text, head, (size_t)hl);
    if (bl)
        memcpy(d->text + hl, job->out.body, bl);
    d->text[hl + bl] = '}';
    d->text[hl + bl + 1] = '\0';
    d->len = (size_t)hl + bl + 1;
    free(job->out.body);
    job->out.body = NULL;
    job->out.len = 0;
    rrd_jobs *j = job->owner;
    pthread_mutex_lock(&j->mu);
    job->doc = d;
    job->doc_len = d->len;
    bool held = false;
    for (size_t i = 0; i < j->n && !held; i++)
        held = j->items[i] == job;
    if (held) {
        j->bytes += job->doc_len;
        evict_answers(j);
    }
    pthread_mutex_unlock(&j->mu);
}

static void job_run(rrd_work *wk, rrd_worker *w)
{
    rrd_job *job = (rrd_job *)((char *)wk - offsetof(rrd_job, work));
    int expected = QUEUED, st;
    if (atomic_load(&job->task->ctl.cancel) ||
        !atomic_compare_exchange_strong(&job->status, &expected, RUNNING)) {
        st = CANCELLED;
    } else {
        const double t0 = rrd_now();
        job->task->run(job->task, w, &job->out);
        job->task->compute_s = rrd_now() - t0;
        atomic_store(&job->task->ctl.progress, 1.0);
        st = atomic_load(&job->task->ctl.cancel) ? CANCELLED
             : job->out.status < 400             ? DONE
                                                 : FAILED;
        if (st == DONE)
            rrd_cost_observe(&job->task->cost, job->task->compute_s);
    }
    rrd_worker_release(w);
    build_doc(job, st);
    atomic_store(&job->status, st);
    rrd_job_release(job); // the pool's reference
}

// Never ran: the pool stopped (jobs have no deadline, so they never expire in the queue).
static void job_drop(rrd_work *wk, bool stopping)
{
    (void)stopping;
    rrd_job *job = (rrd_job *)((char *)wk - offsetof(rrd_job, work));
    build_doc(job, CANCELLED);
    atomic_store(&job->status, CANCELLED);
    rrd_job_release(job); // the pool's reference
}

rrd_job *rrd_jobs_submit(rrd_jobs *j, rrd_pool *pool, rrd_task *t, const char *client,
                         rrd_jobs_refusal *why)
{
    *why = RRD_JOBS_OK;
    rrd_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        t->free(t);
        *why = RRD_JOBS_QUEUE;
        return NULL;
    }
    atomic_init(&job->refs, 3); // the table, the pool, the caller
    atomic_init(&job->status, QUEUED);
    job->task = t;
    job->owner = j;
    job->created = rrd_now();
    snprintf(job->client, sizeof job->client, "%s", client ? client : "");
    t->t_submit = job->created;
    t->binary = false; // job results are JSON
    t->ctl.deadline = 0;
    size_t np = strlen(j->prefix);
    memcpy(job->id, j->prefix, np);
    random_id(job->id + np);
    pthread_mutex_lock(&j->mu);
    size_t active = 0;
    for (size_t i = 0; i < j->n; i++)
        active += !finished(j->items[i]) && strcmp(j->items[i]->client, job->client) == 0;
    if (active >= j->cfg.per_client) {
        *why = RRD_JOBS_CLIENT;
    } else {
        if (j->n == j->cfg.max) { // make room: the busiest client's oldest finished job
            long i = victim(j, false);
            if (i >= 0)
                remove_at(j, (size_t)i);
        }
        if (j->n < j->cfg.max)
            j->items[j->n++] = job;
        else
            *why = RRD_JOBS_FULL;
    }
    pthread_mutex_unlock(&j->mu);
    if (*why != RRD_JOBS_OK) {
        job_free(job);
        return NULL;
    }
    job->work = (rrd_work){job_run, job_drop};
    double wait;
    bool full;
    if (!rrd_pool_submit(pool, &job->work, RRD_LANE_BATCH, t->cost.cost_s, 0, &wait, &full)) {
        // Not queued: take it out of the table again.
        pthread_mutex_lock(&j->mu);
        for (size_t i = 0; i < j->n; i++)
            if (j->items[i] == job) {
                memmove(j->items + i, j->items + i + 1, (j->n - i - 1) * sizeof *j->items);
                j->n--;
                break;
            }
        pthread_mutex_unlock(&j->mu);
        job_free(job);
        *why = RRD_JOBS_QUEUE;
        return NULL;
    }
    return job;
}

rrd_job *rrd_jobs_get(rrd_jobs *j, const char *id)
{
    rrd_job *job = NULL;
    pthread_mutex_lock(&j->mu);
    for (size_t i = 0; i < j->n && !job; i++)
        if (strcmp(j->items[i]->id, id) == 0) {
            job = j->items[i];
            atomic_fetch_add(&job->refs, 1);
        }
    pthread_mutex_unlock(&j->mu);
    return job;
}

const char *rrd_job_id(const rrd_job *job)
{
    return job->id;
}

bool rrd_jobs_cancel(rrd_jobs *j, const char *id)
{
    rrd_job *job = rrd_jobs_get(j, id);
    if (job == NULL)
        return false;
    atomic_store(&job->task->ctl.cancel, true);
    int expected = QUEUED;
    atomic_compare_exchange_strong(&job->status, &expected, CANCELLED);
    rrd_job_release(job);
    return true;
}

json_t *rrd_job_json(rrd_job *job)
{
    const int st = atomic_load(&job->status);
    const double progress = st == DONE ? 1.0 : atomic_load(&job->task->ctl.progress);
    return json_pack("{s:s, s:s, s:f}", "job", job->id, "status", status_names[st], "progress",
                     progress);
}

void rrd_job_respond(rrd_request *r, rrd_job *job)
{
    rrd_jobs *j = job->owner;
    pthread_mutex_lock(&j->mu);
    doc *d = finished(job) ? job->doc : NULL;
    if (d)
        atomic_fetch_add(&d->refs, 1); // the answer's own: eviction may drop the job's
    const bool evicted = job->evicted;
    pthread_mutex_unlock(&j->mu);
    if (d) {
        rrd_respond_borrow(r, 200, "application/json; charset=utf-8", d->text, d->len, doc_release,
                           d);
        rrd_job_release(job);
        return;
    }
    if (evicted)
        rrd_problem(r, RRD_P_GONE, "id",
                    "job '%s' finished, but its answer was evicted to keep finished answers "
                    "within --jobs-max-mb (the oldest of the client holding the most go "
                    "first); run it again",
                    job->id);
    else
        rrd_respond_json(r, 200, rrd_job_json(job));
    rrd_job_release(job);
}

void rrd_jobs_stats_get(rrd_jobs *j, rrd_jobs_stats *out)
{
    pthread_mutex_lock(&j->mu);
    out->held = j->n;
    out->bytes = j->bytes;
    out->evicted = j->evicted;
    pthread_mutex_unlock(&j->mu);
}
