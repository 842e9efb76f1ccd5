// Status codes and the error record every fallible librelureg call fills.
//
// Each fallible function returns an rr_status and takes `rr_error *err` last (may be NULL).
// rr_error_set keeps the first error recorded, formats printf-style into fixed buffers and
// never allocates, so it is safe on out-of-memory paths. `field` names the culprit
// ("inputs", "layers[3].weight"); the daemon turns it into the problem+json `field` member.
// Thread rules: an rr_error belongs to one call; nothing here has global state.
#ifndef RR_CORE_STATUS_H
#define RR_CORE_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

// The codes callers switch on (jansson's json_error_code): the message is for people, never to
// be searched. Values are stable (new codes are appended), so they may be stored or sent.
typedef enum rr_status {
    RR_OK = 0,
    RR_ENOMEM = 1,       // a request-sized allocation failed
    RR_EINVAL = 2,       // an argument or option is out of its range
    RR_ESHAPE = 3,       // shapes disagree; a model tensor is missing, extra or mis-shaped
    RR_EFORMAT = 4,      // bytes are not a valid file / document of the expected format
    RR_ENONFINITE = 5,   // NaN or Inf where finite values are required
    RR_ENOTFOUND = 6,    // a named object does not exist
    RR_EUNSUPPORTED = 7, // well-formed but outside what relureg implements (layer option, size,
                         // format version); a tensor's element type is RR_EDTYPE
    RR_EIO = 8,          // the operating system refused a read or write
    RR_ECANCELLED = 9,   // the abort callback asked to stop
    RR_EINTERNAL = 10,   // a broken invariant that is not the caller's fault
    RR_EDTYPE = 11,      // a known element type relureg does not take there ("unsupported dtype
                         // F16 for tensor labels"; field = the tensor)
} rr_status;

// One more than the largest code: the size of a table indexed by rr_status.
#define RR_STATUS_COUNT 12

typedef struct rr_error {
    rr_status code; // RR_OK until the first error
    char field[64]; // what is at fault, "" when not about one field
    char msg[256];  // human-readable detail
} rr_error;

// Short description of a status (RR_ESHAPE -> "shape mismatch"), never NULL, static storage.
const char *rr_status_str(rr_status s);

// Records an error unless `err` is NULL or already holds one; returns `code` so callers can
// write `return rr_error_set(err, RR_EINVAL, "h", "h must be > 0, got %g", h);`.
// `field` may be NULL. Never allocates.
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
rr_status
rr_error_set(rr_error *err, rr_status code, const char *field, const char *fmt, ...);

// Clears `err` (no-op when NULL).
void rr_error_clear(rr_error *err);

// Always-on internal invariant check (ggml's GGML_ASSERT). Never for anything a client or a
// file can reach: those return a status.
#define RR_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: RR_ASSERT(%s) failed\n", __FILE__, __LINE__, #x);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
