// The compute scheduler's policy, without threads or clocks (pool.c runs it; the unit tests
// drive it with a fake clock): two lanes, admission by time, earliest deadline first.
//
// - Every task carries an estimated cost (seconds, cost.h) and a deadline (absolute seconds
//   of the caller's clock; 0 = none).
// - Lanes (Triton's priority levels, TF Serving's separate batch queue): INTERACTIVE tasks
//   run earliest deadline first and may take any worker; BATCH tasks (async jobs, long
//   synchronous work) run first in, first out on at most `workers - 1` workers at once, so
//   one worker is always left to interactive work.
// - Admission by time, not by count: a task is refused when its estimated start (a list
//   schedule of the running tasks' remaining costs and of the queued tasks that would run
//   before it) plus its own cost passes its deadline. The estimated wait comes back for
//   Retry-After. Capacity bounds the queue's memory only.
// - A queued task whose deadline passed is expired at the next pop instead of run.
// Thread rules: none; the caller serialises every call.
#ifndef RRD_SCHED_H
#define RRD_SCHED_H

#include <stdbool.h>
#include <stddef.h>

typedef enum rrd_lane { RRD_LANE_INTERACTIVE, RRD_LANE_BATCH, RRD_NLANES } rrd_lane;

typedef struct rrd_sched_item {
    void *arg;       // the caller's task
    double cost;     // estimated seconds of compute, >= 0
    double deadline; // absolute seconds; 0 = none
    double enqueued; // set by push
    rrd_lane lane;
    unsigned long long seq; // set by push: ties in deadline go first in, first out
} rrd_sched_item;

typedef struct rrd_sched rrd_sched;

// workers >= 2 (pool.c makes sure); cap: queued tasks held at most, over both lanes.
rrd_sched *rrd_sched_new(int workers, size_t cap);
void rrd_sched_free(rrd_sched *s);

// The estimated wait (seconds from now) before a task of that lane and deadline would start.
double rrd_sched_wait(const rrd_sched *s, rrd_lane lane, double deadline, double now);
// Queues `it` when it can meet its deadline and there is room: true. Otherwise false, with
// *wait the estimated wait (>= 0) and *full true when the refusal is for room, not time.
bool rrd_sched_push(rrd_sched *s, rrd_sched_item it, double now, double *wait, bool *full);
// The next task for the free worker `slot`: removes it from its queue and marks the slot
// running it. Expired tasks met on the way are moved to expired[] (at most max_expired, their
// count in *n_expired) for the caller to answer. false when nothing may run now.
bool rrd_sched_pop(rrd_sched *s, int slot, double now, rrd_sched_item *out, rrd_sched_item *expired,
                   size_t max_expired, size_t *n_expired);
// Removes every queued task whose deadline passed into out[] (at most max); returns their
// count. *next is the earliest deadline still queued (0: none).
size_t rrd_sched_expire(rrd_sched *s, double now, rrd_sched_item *out, size_t max, double *next);
// The task on `slot` finished (or no longer needs the worker).
void rrd_sched_done(rrd_sched *s, int slot);
// Removes every queued task into out[] (at most max; their count is returned): shutdown.
size_t rrd_sched_drain(rrd_sched *s, rrd_sched_item *out, size_t max);

size_t rrd_sched_queued(const rrd_sched *s, rrd_lane lane);
size_t rrd_sched_running(const rrd_sched *s, rrd_lane lane);
int rrd_sched_workers(const rrd_sched *s);
// Most BATCH tasks running at once: workers - 1.
int rrd_sched_batch_slots(const rrd_sched *s);

#endif
