// The route table: method + path pattern ({param} segments, a trailing * for the rest) ->
// handler and a fixed name for metrics and logs; a compute route also names its descriptor
// (routes/routes.h), which its handler, rrd_route_compute, runs.
#ifndef RRD_ROUTER_H
#define RRD_ROUTER_H

#include <stdbool.h>

#include "server.h"

typedef void (*rrd_handler)(rrd_request *r);

struct rrd_route {
    const char *method;
    const char *pattern;
    rrd_handler fn;
    const char *name;
    const struct rrd_compute_route *compute; // compute routes: what rrd_route_compute runs
};

// The route for method and path, filling params (at most 3). NULL when none matches; then
// *path_known says whether the path matched with another method (405) or not (404), and
// allow receives the methods the path accepts ("GET, PUT").
const rrd_route *rrd_route_match(const char *method, const char *path, char params[3][128],
                                 bool *path_known, char *allow, size_t allow_cap);

// libmicrohttpd's unescape callback (MHD_OPTION_UNESCAPE_CALLBACK): decodes %HH in place as
// MHD's own does, except %00, which stays the three characters "%00". MHD would write a NUL
// into the path, and every C string after it would stop there: PUT /v1/models/a%00b would
// create 'a'. Kept literal, the segment fails the model-name rule (422) or names no file
// (404). Returns the new length.
size_t rrd_url_unescape(void *cls, struct MHD_Connection *c, char *s);

#endif
