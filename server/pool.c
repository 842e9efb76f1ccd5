// The compute worker pool (see pool.h): a ring of queued tasks under one mutex and condition.
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct item {
    rrd_work_fn fn;
    void *arg;
} item;

struct rrd_worker {
    rrd_pool *pool;
    pthread_t thread;
    int threads;
    rr_model *model; // retained: the model the cached workspace was planned for
    rr_workspace *ws;
    size_t ws_batch, ws_rows;
    bool released; // the running task called rrd_worker_release
};

struct rrd_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *ring;
    size_t cap, head, count, busy;
    size_t ring_size; // cap + workers: see rrd_pool_submit
    bool stop;
    int nworkers;
    rrd_worker *workers;
};

static void *worker_main(void *arg)
{
    rrd_worker *w = arg;
    rrd_pool *p = w->pool;
    rr_set_num_threads(w->threads); // this thread's OpenMP (and so BLAS) thread count
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->count == 0 && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->count == 0 && p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        item it = p->ring[p->head];
        p->head = (p->head + 1) % p->ring_size;
        p->count--;
        p->busy++;
        w->released = false;
        pthread_mutex_unlock(&p->mu);
        it.fn(it.arg, w);
        pthread_mutex_lock(&p->mu);
        if (!w->released)
            p->busy--;
        pthread_mutex_unlock(&p->mu);
    }
    rr_workspace_free(w->ws);
    rr_model_release(w->model);
    return NULL;
}

rrd_pool *rrd_pool_new(int workers, int threads_total, size_t queue_cap)
{
    rrd_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->cap = queue_cap ? queue_cap : 1;
    p->ring_size = p->cap + (size_t)workers;
    p->ring = calloc(p->ring_size, sizeof *p->ring);
    p->workers = calloc((size_t)workers, sizeof *p->workers);
    if (!p->ring || !p->workers) {
        free(p->ring);
        free(p->workers);
        free(p);
        return NULL;
    }
    const int each = threads_total / workers > 0 ? threads_total / workers : 1;
    for (int i = 0; i < workers; i++) {
        p->workers[i].pool = p;
        p->workers[i].threads = each;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
            break;
        p->nworkers++;
    }
    return p;
}

void rrd_pool_free(rrd_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i].thread, NULL);
    free(p->workers);
    free(p->ring);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

bool rrd_pool_submit(rrd_pool *p, rrd_work_fn fn, void *arg)
{
    pthread_mutex_lock(&p->mu);
    // At most nworkers running plus `cap` waiting. Running counts only until the task
    // releases its worker (before it answers), so a client that sends its next request as
    // soon as it reads the answer never finds the queue full because the worker has not yet
    // looped back; the ring holds cap + nworkers, the most that can then be queued.
    if (p->count + p->busy >= p->cap + (size_t)p->nworkers || p->stop) {
        pthread_mutex_unlock(&p->mu);
        return false;
    }
    p->ring[(p->head + p->count) % p->ring_size] = (item){fn, arg};
    p->count++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return true;
}

void rrd_worker_release(rrd_worker *w)
{
    rrd_pool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    if (!w->released) {
        w->released = true;
        p->busy--;
    }
    pthread_mutex_unlock(&p->mu);
}

size_t rrd_pool_depth(rrd_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->count;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t rrd_pool_busy(rrd_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->busy;
    pthread_mutex_unlock(&p->mu);
    return n;
}

rr_workspace *rrd_worker_workspace(rrd_worker *w, rr_model *m, size_t batch, size_t rows,
                                   rr_error *err)
{
    if (batch == 0)
        batch = 1;
    if (rows == 0)
        rows = 1;
    if (w->ws && w->model == m) {
        if (batch <= w->ws_batch && rows <= w->ws_rows)
            return w->ws;
        // Plan for at least the last sizes, so alternating small and large calls settle.
        batch = batch > w->ws_batch ? batch : w->ws_batch;
        rows = rows > w->ws_rows ? rows : w->ws_rows;
    }
    rr_workspace_free(w->ws);
    rr_model_release(w->model);
    w->ws = NULL;
    w->model = NULL;
    rr_workspace_params wp = {.max_batch = batch, .rows_per_sample = rows};
    if (rr_workspace_new(m, &wp, &w->ws, err) != RR_OK)
        return NULL;
    w->model = rr_model_retain(m);
    w->ws_batch = batch;
    w->ws_rows = rows;
    return w->ws;
}
