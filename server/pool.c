// The compute worker pool (see pool.h): the scheduler of sched.h under one mutex, a condition
// the idle workers wait on, and per-worker warm workspaces.
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "server.h"

// Warm workspaces a worker keeps, one per model, least recently used evicted first: a
// dashboard comparing a few models does not reallocate on every request. Their bytes stay
// under WS_KEEP_BYTES beside the one in use.
#define WS_SLOTS      4
#define WS_KEEP_BYTES ((size_t)512 << 20)

typedef struct ws_slot {
    rr_model *model; // retained: the model the workspace was planned for (NULL: empty)
    rr_workspace *ws;
    size_t batch, rows;
    unsigned long long used; // the worker's use counter when last returned
} ws_slot;

struct rrd_worker {
    rrd_pool *pool; // NULL for an inline (I/O thread) worker
    pthread_t thread;
    int slot;
    ws_slot ws[WS_SLOTS];
    unsigned long long uses;
    bool released; // the running task called rrd_worker_release
};

struct rrd_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rrd_sched *sched;
    bool stop;
    int nworkers, threads;
    rrd_worker *workers;
    double wait_sum[RRD_NLANES];
    unsigned long long started[RRD_NLANES], expired, refused_time, refused_full;
    pthread_t reaper;
    bool has_reaper;
    double next_deadline; // earliest deadline queued (0: none), for the reaper
};

#define MAX_EXPIRED  32
#define MIN_THREAD_S 1e-3 // estimated compute worth one more OpenMP thread

static void slot_clear(ws_slot *s)
{
    rr_workspace_free(s->ws);
    rr_model_release(s->model);
    *s = (ws_slot){0};
}

static void worker_clear(rrd_worker *w)
{
    for (int i = 0; i < WS_SLOTS; i++)
        slot_clear(&w->ws[i]);
}

static void *worker_main(void *arg)
{
    rrd_worker *w = arg;
    rrd_pool *p = w->pool;
    rrd_sched_item expired[MAX_EXPIRED];
    pthread_mutex_lock(&p->mu);
    for (;;) {
        rrd_sched_item it;
        size_t nexp = 0;
        const double now = rrd_now();
        const bool got =
            !p->stop && rrd_sched_pop(p->sched, w->slot, now, &it, expired, MAX_EXPIRED, &nexp);
        p->expired += nexp;
        if (nexp > 0) {
            // Answer the expired ones outside the lock, then look again.
            pthread_mutex_unlock(&p->mu);
            for (size_t i = 0; i < nexp; i++) {
                rrd_work *wk = expired[i].arg;
                wk->drop(wk, false);
            }
            pthread_mutex_lock(&p->mu);
            if (!got)
                continue;
        }
        if (!got) {
            if (p->stop)
                break;
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        const size_t running = rrd_sched_running(p->sched, RRD_LANE_INTERACTIVE) +
                               rrd_sched_running(p->sched, RRD_LANE_BATCH);
        p->wait_sum[it.lane] += now - it.enqueued;
        p->started[it.lane]++;
        w->released = false;
        pthread_mutex_unlock(&p->mu);
        // This thread's OpenMP (and so BLAS) thread count for the task: a fair share of the
        // cores among the tasks running now, and no more than its work can use: below about
        // a millisecond per thread, waking a team costs more than it saves. (Results are the
        // same at any thread count: lib/core/blas.h.)
        int n = p->threads / (int)(running ? running : 1);
        const double by_work = it.cost / MIN_THREAD_S;
        n = by_work < n ? (int)by_work : n;
        rr_set_num_threads(n > 0 ? n : 1);
        rrd_work *wk = it.arg;
        wk->run(wk, w);
        pthread_mutex_lock(&p->mu);
        if (!w->released)
            rrd_sched_done(p->sched, w->slot);
        // A finished batch task may free a batch slot that another worker is waiting on.
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    worker_clear(w);
    return NULL;
}

// Answers queued tasks as their deadlines pass, even while every worker is busy (a worker
// would only meet them when it is free): a 5 ms tick, which looks at the queue only once the
// earliest queued deadline has passed.
static void *reaper_main(void *arg)
{
    rrd_pool *p = arg;
    const struct timespec tick = {0, 5 * 1000 * 1000};
    rrd_sched_item items[MAX_EXPIRED];
    for (;;) {
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        const double now = rrd_now();
        size_t n = 0;
        if (p->next_deadline > 0 && now > p->next_deadline) {
            double next;
            n = rrd_sched_expire(p->sched, now, items, MAX_EXPIRED, &next);
            p->next_deadline = n == MAX_EXPIRED ? now : next; // more: look again next tick
            p->expired += n;
        }
        pthread_mutex_unlock(&p->mu);
        for (size_t i = 0; i < n; i++) {
            rrd_work *wk = items[i].arg;
            wk->drop(wk, false);
        }
    }
}

rrd_pool *rrd_pool_new(int workers, int threads_total, size_t queue_cap)
{
    rrd_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    workers = workers < 2 ? 2 : workers;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = threads_total > 0 ? threads_total : 1;
    p->sched = rrd_sched_new(workers, queue_cap);
    p->workers = calloc((size_t)workers, sizeof *p->workers);
    if (!p->sched || !p->workers) {
        rrd_sched_free(p->sched);
        free(p->workers);
        free(p);
        return NULL;
    }
    for (int i = 0; i < workers; i++) {
        p->workers[i].pool = p;
        p->workers[i].slot = i;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
            break;
        p->nworkers++;
    }
    if (p->nworkers < 2) {
        rrd_pool_free(p);
        return NULL;
    }
    p->has_reaper = pthread_create(&p->reaper, NULL, reaper_main, p) == 0;
    return p;
}

size_t rrd_pool_drop_queued(rrd_pool *p)
{
    size_t total = 0;
    for (;;) {
        rrd_sched_item items[64];
        pthread_mutex_lock(&p->mu);
        const size_t n = rrd_sched_drain(p->sched, items, 64);
        pthread_mutex_unlock(&p->mu);
        for (size_t i = 0; i < n; i++) {
            rrd_work *wk = items[i].arg;
            wk->drop(wk, true);
        }
        total += n;
        if (n < 64)
            return total;
    }
}

void rrd_pool_free(rrd_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    rrd_pool_drop_queued(p);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i].thread, NULL);
    if (p->has_reaper)
        pthread_join(p->reaper, NULL);
    rrd_pool_drop_queued(p); // anything queued while the workers stopped
    rrd_sched_free(p->sched);
    free(p->workers);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

bool rrd_pool_submit(rrd_pool *p, rrd_work *wk, rrd_lane lane, double cost, double deadline,
                     double *wait, bool *full)
{
    const rrd_sched_item it = {.arg = wk, .cost = cost, .deadline = deadline, .lane = lane};
    pthread_mutex_lock(&p->mu);
    bool ok = false;
    *wait = 0;
    *full = p->stop;
    if (!p->stop)
        ok = rrd_sched_push(p->sched, it, rrd_now(), wait, full);
    if (ok) {
        pthread_cond_broadcast(&p->cv);
        if (deadline > 0 && (p->next_deadline == 0 || deadline < p->next_deadline))
            p->next_deadline = deadline;
    } else if (*full)
        p->refused_full++;
    else
        p->refused_time++;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

void rrd_pool_stats_get(rrd_pool *p, rrd_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    for (int l = 0; l < RRD_NLANES; l++) {
        out->queued[l] = rrd_sched_queued(p->sched, (rrd_lane)l);
        out->running[l] = rrd_sched_running(p->sched, (rrd_lane)l);
        out->wait_sum[l] = p->wait_sum[l];
        out->started[l] = p->started[l];
    }
    out->workers = p->nworkers;
    out->threads = p->threads;
    out->expired = p->expired;
    out->refused_time = p->refused_time;
    out->refused_full = p->refused_full;
    pthread_mutex_unlock(&p->mu);
}

void rrd_worker_release(rrd_worker *w)
{
    rrd_pool *p = w->pool;
    if (p == NULL)
        return; // inline
    pthread_mutex_lock(&p->mu);
    if (!w->released) {
        w->released = true;
        rrd_sched_done(p->sched, w->slot);
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

// ---- inline workers (one per I/O thread) ----

static pthread_key_t inline_key;
static pthread_once_t inline_once = PTHREAD_ONCE_INIT;

static void inline_free(void *arg)
{
    rrd_worker *w = arg;
    worker_clear(w);
    free(w);
}

static void inline_init(void)
{
    pthread_key_create(&inline_key, inline_free);
}

rrd_worker *rrd_worker_inline(void)
{
    pthread_once(&inline_once, inline_init);
    rrd_worker *w = pthread_getspecific(inline_key);
    if (w == NULL && (w = calloc(1, sizeof *w)) != NULL) {
        if (pthread_setspecific(inline_key, w) != 0) {
            free(w);
            return NULL;
        }
        rr_set_num_threads(1); // this I/O thread's computations stay on it
    }
    return w;
}

rr_workspace *rrd_worker_workspace(rrd_worker *w, rr_model *m, size_t batch, size_t rows,
                                   rr_error *err)
{
    if (batch == 0)
        batch = 1;
    if (rows == 0)
        rows = 1;
    ws_slot *s = NULL;
    for (int i = 0; i < WS_SLOTS && s == NULL; i++)
        if (w->ws[i].model == m)
            s = &w->ws[i];
    if (s && batch <= s->batch && rows <= s->rows) {
        s->used = ++w->uses;
        return s->ws;
    }
    if (s) {
        // Plan for at least the last sizes, so alternating small and large calls settle.
        batch = batch > s->batch ? batch : s->batch;
        rows = rows > s->rows ? rows : s->rows;
        slot_clear(s);
    } else {
        // An empty slot, else the least recently used.
        s = &w->ws[0];
        for (int i = 1; i < WS_SLOTS && s->model; i++)
            if (w->ws[i].model == NULL || w->ws[i].used < s->used)
                s = &w->ws[i];
        slot_clear(s);
    }
    rr_workspace_params wp = {.max_batch = batch, .rows_per_sample = rows};
    if (rr_workspace_new(m, &wp, &s->ws, err) != RR_OK)
        return NULL;
    s->model = rr_model_retain(m);
    s->batch = batch;
    s->rows = rows;
    s->used = ++w->uses;
    // The others, least recently used first, while they hold more than WS_KEEP_BYTES.
    for (;;) {
        size_t kept = 0;
        ws_slot *lru = NULL;
        for (int i = 0; i < WS_SLOTS; i++)
            if (w->ws[i].model && &w->ws[i] != s) {
                kept += rr_workspace_bytes(w->ws[i].ws);
                if (lru == NULL || w->ws[i].used < lru->used)
                    lru = &w->ws[i];
            }
        if (kept <= WS_KEEP_BYTES)
            break;
        slot_clear(lru);
    }
    return s->ws;
}
