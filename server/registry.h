// The loaded models, by name (api.md "models"): each entry keeps the model, the bytes it was
// uploaded as (GET .../weights answers them byte-identical), its version and load time.
// Entries are reference counted: a request retains the entry it computes with, so a PUT that
// replaces the model or a DELETE frees the old one only when the last request using it ends.
// Thread rules: every function is safe from any thread (one mutex; no work under it).
#ifndef RRD_REGISTRY_H
#define RRD_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relureg.h"

typedef struct rrd_loaded {
    atomic_int refs;
    char name[72];
    rr_model *model; // owned reference
    uint8_t *bytes;  // the file as uploaded (owned)
    size_t len;
    int version;        // 1 for a new name, +1 per replacement (monotonic across deletes)
    char loaded_at[32]; // RFC 3339 UTC
    uint64_t hash;      // FNV-1a 64 of bytes, computed once by rrd_registry_put
    char etag[24];      // "\"<16 hex>\"": the HTTP entity tag of bytes
} rrd_loaded;

typedef struct rrd_registry rrd_registry;

rrd_registry *rrd_registry_new(void);
void rrd_registry_free(rrd_registry *r);

// The entry for name, retained (release with rrd_loaded_release); NULL when absent.
rrd_loaded *rrd_registry_get(rrd_registry *r, const char *name);
void rrd_loaded_release(rrd_loaded *l);

// Adds or atomically replaces name with model and bytes (both taken), hashing the bytes
// first (outside the lock: call it from a worker for large files). Returns the new
// version; *created tells whether the name was new. NULL model never happens (callers load
// first). Returns -1 when out of memory (model and bytes are freed).
int rrd_registry_put(rrd_registry *r, const char *name, rr_model *model, uint8_t *bytes, size_t len,
                     bool *created);
// Removes name; false when absent. In-flight users keep their references.
bool rrd_registry_delete(rrd_registry *r, const char *name);
// Every entry, retained, sorted by name: *out is malloc'd (free it after releasing each).
size_t rrd_registry_list(rrd_registry *r, rrd_loaded ***out);
size_t rrd_registry_count(rrd_registry *r);

// rr_model_load, then the check that the model can run at all: one sample's workspace at the
// budget requests use (RR_WORKSPACE_DEFAULT_BUDGET), else RR_EINVAL naming the limit (422 at
// PUT, skipped at --models-dir preload). *out owned (rr_model_release).
rr_status rrd_model_load(const uint8_t *bytes, size_t len, rr_model **out, rr_error *err);

// api.md: model names match [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
bool rrd_valid_model_name(const char *name);

#endif
