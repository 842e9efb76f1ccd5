// problem+json rendering and the librelureg status -> HTTP mapping (see problem.h).
#include "problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

static const struct {
    int status;
    const char *type, *title;
} kinds[] = {
    [RRD_P_MALFORMED] = {400, "/problems/malformed-body", "Malformed request body"},
    [RRD_P_UNAUTHORIZED] = {401, "/problems/unauthorized", "Missing or invalid bearer token"},
    [RRD_P_NOT_FOUND] = {404, "/problems/not-found", "Not found"},
    [RRD_P_METHOD] = {405, "/problems/method-not-allowed", "Method not allowed"},
    [RRD_P_VERSION] = {409, "/problems/version-mismatch", "Model version mismatch"},
    [RRD_P_BODY_SIZE] = {413, "/problems/body-too-large", "Request body too large"},
    [RRD_P_BATCH_SIZE] = {413, "/problems/batch-too-large", "Batch too large"},
    [RRD_P_MEDIA_TYPE] = {415, "/problems/unsupported-media-type", "Unsupported media type"},
    [RRD_P_INVALID] = {422, "/problems/invalid-request", "Invalid request"},
    [RRD_P_SHAPE] = {422, "/problems/shape-mismatch", "Shape mismatch"},
    [RRD_P_NONFINITE] = {422, "/problems/non-finite", "Non-finite value"},
    [RRD_P_DTYPE] = {422, "/problems/unsupported-dtype", "Unsupported dtype"},
    [RRD_P_UNAVAILABLE] = {503, "/problems/unavailable", "Service unavailable"},
    [RRD_P_QUEUE_FULL] = {503, "/problems/queue-full", "Compute queue full"},
    [RRD_P_TIMEOUT] = {503, "/problems/timeout", "Computation timed out"},
    [RRD_P_INTERNAL] = {500, "/problems/internal", "Internal error"},
    [RRD_P_BAD_REQUEST] = {400, "/problems/bad-request", "Bad request"},
    [RRD_P_GONE] = {410, "/problems/result-evicted", "Job result evicted"},
    [RRD_P_NOT_IMPLEMENTED] = {501, "/problems/not-implemented", "Not implemented"},
};

// Lives here rather than in http.c: the fuzz harnesses link this file and tensor_json.c alone.
void rrd_out_drop_body(rrd_out *o)
{
    if (o->release) {
        o->release(o->release_ctx);
        o->release = NULL;
    } else {
        free(o->body);
    }
    o->body = NULL;
    o->len = 0;
}

int rrd_problem_status(rrd_problem_kind k)
{
    return kinds[k].status;
}

const char *rrd_problem_type(rrd_problem_kind k)
{
    return kinds[k].type;
}

static void render(rrd_out *out, rrd_problem_kind k, const char *field, const char *fmt, va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof detail, fmt, ap);
    json_t *doc =
        json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", kinds[k].type, "title", kinds[k].title,
                  "status", kinds[k].status, "detail", detail, "error", detail);
    if (doc && field && *field)
        json_object_set_new(doc, "field", json_string(field));
    rrd_out_drop_body(out);
    out->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (out->body == NULL) // out of memory, or detail not valid UTF-8: a fixed body
        out->body = strdup("{\"type\":\"/problems/internal\",\"status\":500}");
    out->len = out->body ? strlen(out->body) : 0;
    out->status = kinds[k].status;
    snprintf(out->type, sizeof out->type, "application/problem+json");
    out->retry_after = kinds[k].status == 503 ? 1 : 0;
    json_decref(doc);
}

void rrd_problem_out(rrd_out *out, rrd_problem_kind k, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    render(out, k, field, fmt, ap);
    va_end(ap);
}

void rrd_problem(rrd_request *r, rrd_problem_kind k, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    render(&r->out, k, field, fmt, ap);
    va_end(ap);
    r->responded = true;
}

// The one map from a librelureg status to a problem (style.md §3), switched on the code alone:
// the library's message is for people and is never searched. `detail` is the prefix followed by
// the library's message and the error's field is reported, except for a fixed detail (a
// cancelled computation says why it stopped, not where).
static const struct {
    rrd_problem_kind kind;
    const char *prefix;
    bool fixed;
} from_status[RR_STATUS_COUNT] = {
    [RR_ENOMEM] = {RRD_P_UNAVAILABLE, "out of memory: ", false},
    [RR_EINVAL] = {RRD_P_INVALID, "", false},
    [RR_ESHAPE] = {RRD_P_SHAPE, "", false},
    [RR_EFORMAT] = {RRD_P_MALFORMED, "", false},
    [RR_ENONFINITE] = {RRD_P_NONFINITE, "", false},
    [RR_ENOTFOUND] = {RRD_P_NOT_FOUND, "", false},
    [RR_EUNSUPPORTED] = {RRD_P_INVALID, "", false},
    [RR_EIO] = {RRD_P_INTERNAL, "internal error: ", false},
    [RR_ECANCELLED] = {RRD_P_TIMEOUT, "the computation was cancelled", true},
    [RR_EINTERNAL] = {RRD_P_INTERNAL, "internal error: ", false},
    [RR_EDTYPE] = {RRD_P_DTYPE, "", false},
};

void rrd_problem_from(rrd_out *out, rr_status st, const rr_error *err)
{
    if (st == RR_OK)
        return;
    // A code this table does not know is a bug on one side or the other: report it as one.
    if ((unsigned)st >= RR_STATUS_COUNT || from_status[st].prefix == NULL)
        st = RR_EINTERNAL;
    const char *field = err ? err->field : NULL, *msg = err && err->msg[0] ? err->msg : "";
    if (from_status[st].fixed)
        rrd_problem_out(out, from_status[st].kind, NULL, "%s", from_status[st].prefix);
    else
        rrd_problem_out(out, from_status[st].kind, field, "%s%s", from_status[st].prefix, msg);
}

// Optimal-string-alignment distance of a[0..n) and b[0..m), case-insensitive; words longer
// than 63 characters are not compared (RRD_FAR).
#define RRD_FAR 1000
static int edit_distance(const char *a, size_t n, const char *b, size_t m)
{
    if (n > 63 || m > 63)
        return RRD_FAR;
    int d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            const int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

const char *rrd_suggest(const char *word, const char *candidates, size_t *len)
{
    const size_t n = strlen(word);
    const char *best = NULL;
    int best_d = RRD_FAR;
    for (const char *p = candidates; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const size_t m = strcspn(p, " ,");
        if (m == 0)
            break;
        const int dist = edit_distance(word, n, p, m);
        if (dist < best_d) {
            best_d = dist;
            best = p;
            *len = m;
        }
        p += m;
    }
    if (best == NULL || best_d > 2 || 2 * (size_t)best_d >= n)
        return NULL;
    return best;
}
