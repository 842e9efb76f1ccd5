// Prometheus text exposition 0.0.4 for GET /metrics (serving.md §5.1): requests by route and
// status, a latency histogram per route, requests in flight, queue depth, models loaded and
// bytes in / out. Thread rules: safe from any thread (one mutex).
#ifndef RRD_METRICS_H
#define RRD_METRICS_H

#include <stddef.h>

#include "conns.h"
#include "jobs.h"
#include "pool.h"

typedef struct rrd_metrics rrd_metrics;

rrd_metrics *rrd_metrics_new(void);
void rrd_metrics_free(rrd_metrics *m);
// Records a finished request of `route` (a fixed route name, not the raw path).
void rrd_metrics_request(rrd_metrics *m, const char *route, int status, double seconds,
                         size_t bytes_in, size_t bytes_out);
// The exposition text (malloc'd) with the gauges given by the caller, the scheduler's figures
// and the cost model's (cost.h).
char *rrd_metrics_render(rrd_metrics *m, int inflight, const rrd_pool_stats *ps,
                         const rrd_conns_stats *cs, const rrd_jobs_stats *js, size_t models,
                         size_t *len);

#endif
