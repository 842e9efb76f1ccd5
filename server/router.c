// Route matching (see router.h). The table lists every resource of api.md.
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "routes/routes.h"

// A compute route, named as its descriptor rrd_route_NAME (routes/routes.h), which
// rrd_route_compute runs.
// clang-format off
#define COMPUTE(pattern, name) {"POST", pattern, rrd_route_compute, #name, &rrd_route_##name}
// clang-format on

static const rrd_route routes[] = {
    {"GET", "/v1/health/live", rrd_route_health_live, "health", NULL},
    {"GET", "/v1/health/ready", rrd_route_health_ready, "health", NULL},
    {"GET", "/metrics", rrd_route_metrics, "metrics", NULL},
    {"GET", "/v1/models", rrd_route_models_list, "models", NULL},
    {"PUT", "/v1/models/{name}", rrd_route_model_put, "model_put", NULL},
    {"GET", "/v1/models/{name}", rrd_route_model_get, "model_get", NULL},
    {"DELETE", "/v1/models/{name}", rrd_route_model_delete, "model_delete", NULL},
    {"GET", "/v1/models/{name}/weights", rrd_route_model_weights, "model_weights", NULL},
    COMPUTE("/v1/models/{name}/predict", predict),
    COMPUTE("/v1/models/{name}/jacobian", jacobian),
    COMPUTE("/v1/models/{name}/regularizers", regularizers),
    COMPUTE("/v1/models/{name}/connections", connections),
    COMPUTE("/v1/models/{name}/attacks", attacks),
    COMPUTE("/v1/models/{name}/certify", certify),
    COMPUTE("/v1/models/{name}/robustness", robustness),
    {"GET", "/v1/jobs/{id}", rrd_route_job_get, "jobs", NULL},
    {"DELETE", "/v1/jobs/{id}", rrd_route_job_delete, "jobs", NULL},
    {"GET", "/v1/datasets/{name}/{split}", rrd_route_dataset, "datasets", NULL},
    {"GET", "/v2", rrd_route_v2_server, "v2", NULL},
    {"GET", "/v2/health/live", rrd_route_v2_live, "v2", NULL},
    {"GET", "/v2/health/ready", rrd_route_v2_ready, "v2", NULL},
    {"GET", "/v2/models/{name}", rrd_route_v2_model, "v2", NULL},
    {"GET", "/v2/models/{name}/ready", rrd_route_v2_model_ready, "v2", NULL},
    COMPUTE("/v2/models/{name}/infer", v2_infer),
    {"GET", "/v2/models/{name}/versions/{v}", rrd_route_v2_model, "v2", NULL},
    {"GET", "/v2/models/{name}/versions/{v}/ready", rrd_route_v2_model_ready, "v2", NULL},
    COMPUTE("/v2/models/{name}/versions/{v}/infer", v2_infer),
    {"GET", "/", rrd_route_static, "static", NULL},
    {"GET", "/static/*", rrd_route_static, "static", NULL},
};

// Matches one pattern; fills params on success.
static bool match(const char *pat, const char *path, char params[3][128])
{
    int np = 0;
    while (*pat && *path) {
        if (pat[0] == '*')
            return true; // the rest of the path, whatever it is
        if (pat[0] == '{') {
            const char *close = strchr(pat, '}');
            size_t n = strcspn(path, "/");
            if (close == NULL || n == 0 || n >= 128 || np >= 3)
                return false;
            memcpy(params[np], path, n);
            params[np++][n] = '\0';
            pat = close + 1;
            path += n;
            continue;
        }
        if (*pat != *path)
            return false;
        pat++;
        path++;
    }
    return (*pat == '\0' || strcmp(pat, "*") == 0) && *path == '\0';
}

const rrd_route *rrd_route_match(const char *method, const char *path, char params[3][128],
                                 bool *path_known, char *allow, size_t allow_cap)
{
    *path_known = false;
    if (allow_cap)
        allow[0] = '\0';
    const rrd_route *hit = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char tmp[3][128] = {{0}};
        if (!match(routes[i].pattern, path, tmp))
            continue;
        *path_known = true;
        size_t used = strlen(allow);
        if (used + 10 < allow_cap && !strstr(allow, routes[i].method))
            snprintf(allow + used, allow_cap - used, "%s%s", used ? ", " : "", routes[i].method);
        if (hit == NULL && strcmp(routes[i].method, method) == 0) {
            hit = &routes[i];
            memcpy(params, tmp, sizeof tmp);
        }
    }
    return hit;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t rrd_url_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p; p++) {
        const int hi = p[0] == '%' ? hex(p[1]) : -1, lo = hi >= 0 ? hex(p[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p; // "%00" (and any malformed escape) stays as sent
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}
