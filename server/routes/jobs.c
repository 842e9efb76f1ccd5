// GET /v1/jobs/{id} (status, progress, result) and DELETE /v1/jobs/{id} (cancel).
#include "../jobs.h"
#include "routes.h"

void rrd_route_job_get(rrd_request *r)
{
    rrd_job *job = rrd_jobs_get(r->srv->jobs, r->params[0]);
    if (job == NULL) {
        rrd_problem(r, RRD_P_NOT_FOUND, "id", "no job '%.100s' on this replica", r->params[0]);
        return;
    }
    rrd_job_respond(r, job);
}

void rrd_route_job_delete(rrd_request *r)
{
    if (!rrd_jobs_cancel(r->srv->jobs, r->params[0])) {
        rrd_problem(r, RRD_P_NOT_FOUND, "id", "no job '%.100s' on this replica", r->params[0]);
        return;
    }
    rrd_job *job = rrd_jobs_get(r->srv->jobs, r->params[0]);
    rrd_respond_json(r, 200, job ? rrd_job_json(job) : json_object());
    rrd_job_release(job);
}
