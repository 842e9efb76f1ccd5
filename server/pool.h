// Compute workers (api.md --threads / --workers): W threads each running one computation at
// a time with max(1, threads / W) OpenMP threads, and a bounded queue of 2W waiting tasks;
// beyond it rrd_pool_submit refuses (the caller answers 503 + Retry-After). libmicrohttpd's
// threads only do I/O and parsing. Each worker keeps its last workspace warm: fresh memory
// costs a page fault per page on first touch, so reusing it matters for latency.
#ifndef RRD_POOL_H
#define RRD_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "relureg.h"

typedef struct rrd_pool rrd_pool;
typedef struct rrd_worker rrd_worker;

typedef void (*rrd_work_fn)(void *arg, rrd_worker *w);

rrd_pool *rrd_pool_new(int workers, int threads_total, size_t queue_cap);
// Runs what is queued to completion, then joins the workers.
void rrd_pool_free(rrd_pool *p);
// false when the queue is full (nothing was queued).
bool rrd_pool_submit(rrd_pool *p, rrd_work_fn fn, void *arg);
size_t rrd_pool_depth(rrd_pool *p); // queued, not yet running
size_t rrd_pool_busy(rrd_pool *p);  // running

// Called by a task when its computation is over and before it answers: the worker no longer
// counts as busy for admission (rrd_pool_submit), though it finishes the task's epilogue.
void rrd_worker_release(rrd_worker *w);

// A workspace for m with room for `batch` samples and `rows` rows per sample, reused from the
// worker's last call when it fits. Owned by the worker (valid until its next call).
rr_workspace *rrd_worker_workspace(rrd_worker *w, rr_model *m, size_t batch, size_t rows,
                                   rr_error *err);

#endif
