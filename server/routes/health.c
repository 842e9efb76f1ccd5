// GET /v1/health/live, /v1/health/ready and /metrics.
#include <stdlib.h>

#include "../jobs.h"
#include "../metrics.h"
#include "../pool.h"
#include "routes.h"

void rrd_route_health_live(rrd_request *r)
{
    rrd_respond_json(r, 200, json_pack("{s:s}", "status", "live"));
}

void rrd_route_health_ready(rrd_request *r)
{
    if (atomic_load(&r->srv->ready))
        rrd_respond_json(r, 200,
                         json_pack("{s:s, s:I}", "status", "ready", "models",
                                   (json_int_t)rrd_registry_count(r->srv->models)));
    else
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "starting or draining");
}

void rrd_route_metrics(rrd_request *r)
{
    rrd_server *s = r->srv;
    size_t len = 0;
    rrd_pool_stats ps;
    rrd_conns_stats cs;
    rrd_jobs_stats js;
    rrd_pool_stats_get(s->pool, &ps);
    rrd_conns_stats_get(s->conns, &cs);
    rrd_jobs_stats_get(s->jobs, &js);
    char *text = rrd_metrics_render(s->metrics, atomic_load(&s->inflight), &ps, &cs, &js,
                                    rrd_registry_count(s->models), &len);
    if (text == NULL) {
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    rrd_respond_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
