// RFC 9457 problem+json answers (api.md "Errors"): {"type", "title", "status", "detail",
// "field"?, "error"} where "error" repeats detail for KServe / Triton clients. One place maps
// librelureg statuses to HTTP codes (style.md §3).
#ifndef RRD_PROBLEM_H
#define RRD_PROBLEM_H

#include "server.h"

typedef enum rrd_problem_kind {
    RRD_P_MALFORMED,       // 400 /problems/malformed-body
    RRD_P_UNAUTHORIZED,    // 401 /problems/unauthorized
    RRD_P_NOT_FOUND,       // 404 /problems/not-found
    RRD_P_METHOD,          // 405 /problems/method-not-allowed
    RRD_P_VERSION,         // 409 /problems/version-mismatch
    RRD_P_BODY_SIZE,       // 413 /problems/body-too-large
    RRD_P_BATCH_SIZE,      // 413 /problems/batch-too-large
    RRD_P_MEDIA_TYPE,      // 415 /problems/unsupported-media-type
    RRD_P_INVALID,         // 422 /problems/invalid-request
    RRD_P_SHAPE,           // 422 /problems/shape-mismatch
    RRD_P_NONFINITE,       // 422 /problems/non-finite
    RRD_P_DTYPE,           // 422 /problems/unsupported-dtype
    RRD_P_UNAVAILABLE,     // 503 /problems/unavailable (not ready, draining, out of memory)
    RRD_P_QUEUE_FULL,      // 503 /problems/queue-full
    RRD_P_TIMEOUT,         // 503 /problems/timeout
    RRD_P_INTERNAL,        // 500 /problems/internal (a bug)
    RRD_P_BAD_REQUEST,     // 400 /problems/bad-request (the HTTP request itself, e.g. no Host)
    RRD_P_GONE,            // 410 /problems/result-evicted (a job's answer, past --jobs-max-mb)
    RRD_P_NOT_IMPLEMENTED, // 501 /problems/not-implemented (e.g. a transfer coding)
} rrd_problem_kind;

int rrd_problem_status(rrd_problem_kind k);
const char *rrd_problem_type(rrd_problem_kind k);

// Renders a problem into out (printf-style detail; field may be NULL). 503s get Retry-After.
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void rrd_problem_out(rrd_out *out, rrd_problem_kind k, const char *field, const char *fmt, ...);

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void rrd_problem(rrd_request *r, rrd_problem_kind k, const char *field, const char *fmt, ...);

// The problem for a librelureg error, chosen by its code alone (one table in problem.c):
// ENOMEM -> 503 unavailable, EINVAL/EUNSUPPORTED -> 422 invalid-request, ESHAPE -> 422
// shape-mismatch, ENONFINITE -> 422 non-finite, EDTYPE -> 422 unsupported-dtype, EFORMAT -> 400,
// ENOTFOUND -> 404, ECANCELLED -> 503 timeout, EIO/EINTERNAL (and unknown codes) -> 500.
void rrd_problem_from(rrd_out *out, rr_status st, const rr_error *err);

// "Did you mean": the word of `candidates` (separated by spaces or commas) closest to `word` by
// edit distance (insertions, deletions, substitutions and swaps of neighbours, case-insensitive),
// when it is close enough to be a typo (at most 2 edits and fewer than half of word's letters);
// otherwise NULL. The answer points into `candidates` and is `*len` characters long.
const char *rrd_suggest(const char *word, const char *candidates, size_t *len);

#endif
