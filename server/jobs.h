// Async jobs (api.md: any compute request with "async": true is answered 202 {"job": id}):
// a job holds the parsed task, runs on the compute pool like a synchronous request (without
// the --timeout-s deadline), and keeps its answer for GET /v1/jobs/{id}; DELETE cancels it.
// Ids are 128 random bits in hex, after "INSTANCE-" when the replica has a name (--instance):
// jobs live in the replica that accepted them (serving.md §7.3), and the prefix lets a balancer
// route /v1/jobs/{id} back to it. At most `max` jobs are held; the oldest finished ones are
// dropped first.
// Thread rules: safe from any thread.
#ifndef RRD_JOBS_H
#define RRD_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "server.h"

typedef struct rrd_job rrd_job;

// instance: the replica's name ("" or NULL for none; at most 64 characters, a valid model
// name, checked by config.c), copied.
rrd_jobs *rrd_jobs_new(size_t max, const char *instance);
void rrd_jobs_free(rrd_jobs *j);
// Creates a job for the task (taken) and queues it on the pool. Returns the job, retained,
// or NULL when the job table or the queue is full (the task is then freed).
rrd_job *rrd_jobs_submit(rrd_jobs *j, rrd_pool *pool, rrd_task *t);
rrd_job *rrd_jobs_get(rrd_jobs *j, const char *id); // retained; NULL when unknown
void rrd_job_release(rrd_job *job);
const char *rrd_job_id(const rrd_job *job);
// Asks a queued or running job to stop; false when unknown.
bool rrd_jobs_cancel(rrd_jobs *j, const char *id);
// {"job", "status", "progress", "result"? (the answer's JSON), "error"? (its problem)}.
json_t *rrd_job_json(rrd_job *job);
size_t rrd_jobs_count(rrd_jobs *j);

#endif
