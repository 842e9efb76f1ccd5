// Compute workers (api.md --threads / --workers) running the scheduler of sched.h: W threads
// (at least 2), each running one task at a time. A task starting while n tasks run (itself
// included) gets max(1, threads / n) OpenMP threads, so a lone request uses every core and
// concurrent ones share them. libmicrohttpd's threads only do I/O, parsing and the cheapest
// computations (http.c runs those inline on a per-thread worker, rrd_worker_inline). Each
// worker keeps its last workspace warm: fresh memory costs a page fault per page on first
// touch, so reusing it matters for latency.
// Thread rules: every function is safe from any thread.
#ifndef RRD_POOL_H
#define RRD_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "relureg.h"
#include "sched.h"

typedef struct rrd_pool rrd_pool;
typedef struct rrd_worker rrd_worker;

// A unit of work, embedded in the caller's task. Exactly one of run and drop is called, on a
// worker thread (drop also from rrd_pool_free's thread): run when the task starts, drop when
// it never will (its deadline passed in the queue, or the pool stopped).
typedef struct rrd_work {
    void (*run)(struct rrd_work *wk, rrd_worker *w);
    void (*drop)(struct rrd_work *wk, bool stopping);
} rrd_work;

rrd_pool *rrd_pool_new(int workers, int threads_total, size_t queue_cap);
// Drops what is queued (drop with stopping = true), waits for the running tasks, joins.
void rrd_pool_free(rrd_pool *p);
// Drops what is queued now (shutdown: running tasks go on). Returns how many were dropped.
size_t rrd_pool_drop_queued(rrd_pool *p);
// Queues wk in `lane` with its estimated cost (seconds) and deadline (rrd_now() seconds; 0 =
// none). false when it was refused: *wait is the estimated wait in seconds, *full says the
// refusal was for room rather than time.
bool rrd_pool_submit(rrd_pool *p, rrd_work *wk, rrd_lane lane, double cost, double deadline,
                     double *wait, bool *full);

typedef struct rrd_pool_stats {
    size_t queued[RRD_NLANES], running[RRD_NLANES];
    int workers, threads;
    double wait_sum[RRD_NLANES]; // seconds from queueing to start, summed over started tasks
    unsigned long long started[RRD_NLANES], expired, refused_time, refused_full;
} rrd_pool_stats;
void rrd_pool_stats_get(rrd_pool *p, rrd_pool_stats *out);

// Called by a task when its computation is over and before it answers: the worker no longer
// counts as running for the scheduler, though it finishes the task's epilogue.
void rrd_worker_release(rrd_worker *w);

// The calling I/O thread's own worker, for computations run inline (created on first use, one
// OpenMP thread, freed when the thread exits). NULL when out of memory.
rrd_worker *rrd_worker_inline(void);

// A workspace for m with room for `batch` samples and `rows` rows per sample, reused when the
// worker kept one for m that fits (it keeps one per model for its last few models). Owned by
// the worker (valid until its next call).
rr_workspace *rrd_worker_workspace(rrd_worker *w, rr_model *m, size_t batch, size_t rows,
                                   rr_error *err);

#endif
