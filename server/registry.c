// The model registry (see registry.h): a mutex-protected array of retained entries.
#include "registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct version_mark {
    char name[72];
    int version;
} version_mark;

struct rrd_registry {
    pthread_mutex_t mu;
    rrd_loaded **items;
    size_t n, cap;
    version_mark *past; // last versions of deleted names, so versions never repeat
    size_t npast, past_cap;
};

rrd_registry *rrd_registry_new(void)
{
    rrd_registry *r = calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->mu, NULL);
    return r;
}

void rrd_loaded_release(rrd_loaded *l)
{
    if (l && atomic_fetch_sub(&l->refs, 1) == 1) {
        rr_model_release(l->model);
        free(l->bytes);
        free(l);
    }
}

void rrd_registry_free(rrd_registry *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        rrd_loaded_release(r->items[i]);
    free(r->items);
    free(r->past);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static long find(const rrd_registry *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->items[i]->name, name) == 0)
            return (long)i;
    return -1;
}

rrd_loaded *rrd_registry_get(rrd_registry *r, const char *name)
{
    pthread_mutex_lock(&r->mu);
    long i = find(r, name);
    rrd_loaded *l = i >= 0 ? r->items[i] : NULL;
    if (l)
        atomic_fetch_add(&l->refs, 1);
    pthread_mutex_unlock(&r->mu);
    return l;
}

int rrd_registry_put(rrd_registry *r, const char *name, rr_model *model, uint8_t *bytes, size_t len,
                     bool *created)
{
    rrd_loaded *l = calloc(1, sizeof *l);
    if (l == NULL) {
        rr_model_release(model);
        free(bytes);
        return -1;
    }
    atomic_init(&l->refs, 1);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->model = model;
    l->bytes = bytes;
    l->len = len;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ bytes[i]) * 0x100000001b3ull;
    l->hash = h;
    snprintf(l->etag, sizeof l->etag, "\"%016llx\"", (unsigned long long)h);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(l->loaded_at, sizeof l->loaded_at, "%Y-%m-%dT%H:%M:%SZ", &tm);

    pthread_mutex_lock(&r->mu);
    long i = find(r, name);
    rrd_loaded *old = NULL;
    if (i >= 0) {
        old = r->items[i];
        l->version = old->version + 1;
        r->items[i] = l;
    } else {
        if (r->n == r->cap) {
            size_t ncap = r->cap ? 2 * r->cap : 8;
            rrd_loaded **items = realloc(r->items, ncap * sizeof *items);
            if (items == NULL) {
                pthread_mutex_unlock(&r->mu);
                rrd_loaded_release(l);
                return -1;
            }
            r->items = items;
            r->cap = ncap;
        }
        l->version = 1;
        for (size_t k = 0; k < r->npast; k++)
            if (strcmp(r->past[k].name, name) == 0)
                l->version = r->past[k].version + 1;
        r->items[r->n++] = l;
    }
    const int version = l->version;
    pthread_mutex_unlock(&r->mu);
    *created = old == NULL;
    rrd_loaded_release(old); // in-flight users keep it alive until they finish
    return version;
}

bool rrd_registry_delete(rrd_registry *r, const char *name)
{
    pthread_mutex_lock(&r->mu);
    long i = find(r, name);
    rrd_loaded *old = NULL;
    if (i >= 0) {
        old = r->items[i];
        r->items[i] = r->items[--r->n];
        // Remember its version so that a later PUT of the name does not reuse it.
        size_t k = 0;
        while (k < r->npast && strcmp(r->past[k].name, name) != 0)
            k++;
        if (k == r->npast && r->npast == r->past_cap) {
            size_t ncap = r->past_cap ? 2 * r->past_cap : 8;
            version_mark *p = realloc(r->past, ncap * sizeof *p);
            if (p) {
                r->past = p;
                r->past_cap = ncap;
            }
        }
        if (k < r->past_cap) {
            snprintf(r->past[k].name, sizeof r->past[k].name, "%s", name);
            r->past[k].version = old->version;
            if (k == r->npast)
                r->npast++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    rrd_loaded_release(old);
    return old != NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(rrd_loaded *const *)a)->name, (*(rrd_loaded *const *)b)->name);
}

size_t rrd_registry_list(rrd_registry *r, rrd_loaded ***out)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    rrd_loaded **items = malloc((n ? n : 1) * sizeof *items);
    if (items == NULL)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        items[i] = r->items[i];
        atomic_fetch_add(&items[i]->refs, 1);
    }
    pthread_mutex_unlock(&r->mu);
    if (items)
        qsort(items, n, sizeof *items, by_name);
    *out = items;
    return n;
}

size_t rrd_registry_count(rrd_registry *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

bool rrd_valid_model_name(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char c = name[i];
        const bool alnum =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

rr_status rrd_model_load(const uint8_t *bytes, size_t len, rr_model **out, rr_error *err)
{
    rr_model *m = NULL;
    rr_status st = rr_model_load(bytes, len, &m, err);
    if (st != RR_OK)
        return st;
    // Requests plan their workspace with the default budget (pool.c): a model whose single
    // sample needs more could only ever answer 503, a permanent fault dressed as a retryable
    // one, so it is refused here, as a bad file.
    const size_t need = rr_workspace_sample_bytes(m, 1), limit = RR_WORKSPACE_DEFAULT_BUDGET;
    if (need > limit) {
        rr_model_release(m);
        if (need == SIZE_MAX)
            return rr_error_set(err, RR_EINVAL, "layers",
                                "one sample needs more workspace than memory can address, over "
                                "the limit of %zu MiB per request: no request could run",
                                limit >> 20);
        return rr_error_set(err, RR_EINVAL, "layers",
                            "one sample needs %zu MiB of workspace, over the limit of %zu MiB "
                            "per request: no request could run on this model",
                            (need + ((size_t)1 << 20) - 1) >> 20, limit >> 20);
    }
    *out = m;
    return RR_OK;
}
