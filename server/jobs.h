// Async jobs (api.md: any compute request with "async": true is answered 202 {"job": id}):
// a job holds the parsed task, runs in the pool's batch lane (pool.h) without the --timeout-s
// deadline, and keeps its answer for GET /v1/jobs/{id}; DELETE cancels it.
// Ids are 128 random bits in hex, after "INSTANCE-" when the replica has a name (--instance):
// jobs live in the replica that accepted them (serving.md §7.3), and the prefix lets a balancer
// route /v1/jobs/{id} back to it.
//
// Bounds, fair between clients (by address):
// - at most `max` jobs are held; when full, the oldest finished job of the client holding the
//   most is dropped;
// - a client has at most `per_client` jobs queued or running;
// - finished answers take at most `budget` bytes in all; beyond it the oldest answer of the
//   client holding the most bytes is evicted (its GET answers 410);
// - a finished job's GET answer is built once, when it finishes (on the worker), and served
//   without a copy.
// Thread rules: safe from any thread.
#ifndef RRD_JOBS_H
#define RRD_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "server.h"

typedef struct rrd_job rrd_job;

typedef struct rrd_jobs_config {
    size_t max;           // jobs held
    size_t per_client;    // jobs queued or running per client address
    size_t budget;        // bytes of finished answers
    const char *instance; // the replica's name ("" or NULL: none; valid per config.c), copied
} rrd_jobs_config;

rrd_jobs *rrd_jobs_new(const rrd_jobs_config *cfg);
void rrd_jobs_free(rrd_jobs *j);

typedef enum rrd_jobs_refusal {
    RRD_JOBS_OK,
    RRD_JOBS_FULL,
    RRD_JOBS_CLIENT,
    RRD_JOBS_QUEUE
} rrd_jobs_refusal;

// Creates a job of `client` for the task (taken) and queues it on the pool. Returns the job,
// retained, or NULL (the task is then freed) with *why: the table is full of unfinished jobs,
// the client has its share running, or the pool refused.
rrd_job *rrd_jobs_submit(rrd_jobs *j, rrd_pool *pool, rrd_task *t, const char *client,
                         rrd_jobs_refusal *why);
rrd_job *rrd_jobs_get(rrd_jobs *j, const char *id); // retained; NULL when unknown
void rrd_job_release(rrd_job *job);
const char *rrd_job_id(const rrd_job *job);
// Asks a queued or running job to stop; false when unknown.
bool rrd_jobs_cancel(rrd_jobs *j, const char *id);
// The GET answer: a finished job's prebuilt document (served without a copy), 410 when its
// answer was evicted, else {"job", "status", "progress"}. Takes the reference on job.
void rrd_job_respond(rrd_request *r, rrd_job *job);
// {"job", "status", "progress"} (no result).
json_t *rrd_job_json(rrd_job *job);

typedef struct rrd_jobs_stats {
    size_t held, bytes;
    unsigned long long evicted;
} rrd_jobs_stats;
void rrd_jobs_stats_get(rrd_jobs *j, rrd_jobs_stats *out);

#endif
