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

enum { QUEUED, RUNNING, DONE, FAILED, CANCELLED };
static const char *status_names[] = {"queued", "running", "done", "failed", "cancelled"};

struct rrd_job {
    atomic_int refs;
    char id[104]; // "INSTANCE-" (up to 65 bytes) + 32 hex digits
    atomic_int status;
    rrd_task *task;
    rrd_out out;
    double created;
    rrd_work work; // the hand-off to the pool
};

struct rrd_jobs {
    pthread_mutex_t mu;
    rrd_job **items;
    size_t n, max;
    char prefix[66]; // "INSTANCE-" or ""
};

static void job_free(rrd_job *job)
{
    if (job->task)
        job->task->free(job->task);
    free(job->out.body);
    free(job);
}

void rrd_job_release(rrd_job *job)
{
    if (job && atomic_fetch_sub(&job->refs, 1) == 1)
        job_free(job);
}

rrd_jobs *rrd_jobs_new(size_t max, const char *instance)
{
    rrd_jobs *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    if (instance && instance[0])
        snprintf(j->prefix, sizeof j->prefix, "%.64s-", instance);
    j->items = calloc(max, sizeof *j->items);
    j->max = max;
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

static void job_run(rrd_work *wk, rrd_worker *w)
{
    rrd_job *job = (rrd_job *)((char *)wk - offsetof(rrd_job, work));
    int expected = QUEUED;
    if (atomic_load(&job->task->ctl.cancel) ||
        !atomic_compare_exchange_strong(&job->status, &expected, RUNNING)) {
        atomic_store(&job->status, CANCELLED);
    } else {
        const double t0 = rrd_now();
        job->task->run(job->task, w, &job->out);
        job->task->compute_s = rrd_now() - t0;
        atomic_store(&job->task->ctl.progress, 1.0);
        int st = atomic_load(&job->task->ctl.cancel) ? CANCELLED
                 : job->out.status < 400             ? DONE
                                                     : FAILED;
        if (st == DONE)
            rrd_cost_observe(&job->task->cost, job->task->compute_s);
        atomic_store(&job->status, st);
    }
    rrd_job_release(job); // the pool's reference
}

// Never ran: the pool stopped (jobs have no deadline, so they never expire in the queue).
static void job_drop(rrd_work *wk, bool stopping)
{
    (void)stopping;
    rrd_job *job = (rrd_job *)((char *)wk - offsetof(rrd_job, work));
    atomic_store(&job->status, CANCELLED);
    rrd_job_release(job); // the pool's reference
}

rrd_job *rrd_jobs_submit(rrd_jobs *j, rrd_pool *pool, rrd_task *t)
{
    rrd_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        t->free(t);
        return NULL;
    }
    atomic_init(&job->refs, 3); // the table, the pool, the caller
    atomic_init(&job->status, QUEUED);
    job->task = t;
    job->created = rrd_now();
    t->t_submit = job->created;
    t->binary = false; // job results are JSON
    t->ctl.deadline = 0;
    size_t np = strlen(j->prefix);
    memcpy(job->id, j->prefix, np);
    random_id(job->id + np);
    pthread_mutex_lock(&j->mu);
    if (j->n == j->max) { // drop the oldest finished job
        for (size_t i = 0; i < j->n; i++) {
            int st = atomic_load(&j->items[i]->status);
            if (st != QUEUED && st != RUNNING) {
                rrd_job_release(j->items[i]);
                memmove(j->items + i, j->items + i + 1, (j->n - i - 1) * sizeof *j->items);
                j->n--;
                break;
            }
        }
    }
    bool ok = j->n < j->max;
    if (ok)
        j->items[j->n++] = job;
    pthread_mutex_unlock(&j->mu);
    if (!ok) {
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
    json_t *doc = json_pack("{s:s, s:s, s:f}", "job", job->id, "status", status_names[st],
                            "progress", progress);
    if ((st == DONE || st == FAILED) && job->out.body) {
        json_t *res = json_loadb(job->out.body, job->out.len, 0, NULL);
        if (res)
            json_object_set_new(doc, st == DONE ? "result" : "error", res);
    }
    return doc;
}

size_t rrd_jobs_count(rrd_jobs *j)
{
    pthread_mutex_lock(&j->mu);
    size_t n = j->n;
    pthread_mutex_unlock(&j->mu);
    return n;
}
