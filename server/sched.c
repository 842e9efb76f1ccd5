// The compute scheduler's policy (see sched.h): an earliest-deadline-first heap for the
// interactive lane, a FIFO ring for the batch lane, and one record per worker slot.
#include "sched.h"

#include <math.h>
#include <stdlib.h>

typedef struct slot {
    bool busy;
    rrd_lane lane;
    double start, cost;
} slot;

struct rrd_sched {
    int workers;
    size_t cap;
    rrd_sched_item *heap; // interactive: min-heap on (deadline or +inf, seq)
    size_t nheap;
    rrd_sched_item *ring; // batch: FIFO
    size_t head, nring;
    slot *slots;
    size_t running[RRD_NLANES];
    unsigned long long seq;
};

static double key(const rrd_sched_item *it)
{
    return it->deadline > 0 ? it->deadline : INFINITY;
}

static bool before(const rrd_sched_item *a, const rrd_sched_item *b)
{
    const double ka = key(a), kb = key(b);
    return ka < kb || (ka == kb && a->seq < b->seq);
}

rrd_sched *rrd_sched_new(int workers, size_t cap)
{
    rrd_sched *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->workers = workers < 2 ? 2 : workers;
    s->cap = cap ? cap : 1;
    s->heap = calloc(s->cap, sizeof *s->heap);
    s->ring = calloc(s->cap, sizeof *s->ring);
    s->slots = calloc((size_t)s->workers, sizeof *s->slots);
    if (!s->heap || !s->ring || !s->slots) {
        rrd_sched_free(s);
        return NULL;
    }
    return s;
}

void rrd_sched_free(rrd_sched *s)
{
    if (s == NULL)
        return;
    free(s->heap);
    free(s->ring);
    free(s->slots);
    free(s);
}

int rrd_sched_workers(const rrd_sched *s)
{
    return s->workers;
}

int rrd_sched_batch_slots(const rrd_sched *s)
{
    return s->workers - 1;
}

size_t rrd_sched_queued(const rrd_sched *s, rrd_lane lane)
{
    return lane == RRD_LANE_INTERACTIVE ? s->nheap : s->nring;
}

size_t rrd_sched_running(const rrd_sched *s, rrd_lane lane)
{
    return s->running[lane];
}

// ---- the interactive heap ----

static void heap_push(rrd_sched *s, rrd_sched_item it)
{
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&it, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = it;
}

static rrd_sched_item heap_pop(rrd_sched *s)
{
    rrd_sched_item top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

// ---- estimates ----

// The earliest of `n` free times after assigning each cost to the earliest-free worker.
static void assign(double *free_at, int n, double cost)
{
    int j = 0;
    for (int i = 1; i < n; i++)
        if (free_at[i] < free_at[j])
            j = i;
    free_at[j] += cost;
}

static double earliest(const double *free_at, int n)
{
    double m = n > 0 ? free_at[0] : 0;
    for (int i = 1; i < n; i++)
        m = free_at[i] < m ? free_at[i] : m;
    return m;
}

static double remaining(const slot *sl, double now)
{
    const double r = sl->start + sl->cost - now;
    return r > 0 ? r : 0;
}

double rrd_sched_wait(const rrd_sched *s, rrd_lane lane, double deadline, double now)
{
    double free_at[256];
    int n = 0;
    free_at[0] = 0;
    if (lane == RRD_LANE_INTERACTIVE) {
        // Every worker, as the running tasks leave it; then the queued interactive tasks that
        // an earliest-deadline-first order puts before this one.
        for (int i = 0; i < s->workers && n < 256; i++)
            free_at[n++] = s->slots[i].busy ? remaining(&s->slots[i], now) : 0;
        const double k = deadline > 0 ? deadline : INFINITY;
        for (size_t i = 0; i < s->nheap; i++)
            if (key(&s->heap[i]) <= k)
                assign(free_at, n, s->heap[i].cost);
    } else {
        // The batch slots, as the running batch tasks leave them; then the batch queue.
        for (int i = 0; i < s->workers && n < 256; i++)
            if (s->slots[i].busy && s->slots[i].lane == RRD_LANE_BATCH)
                free_at[n++] = remaining(&s->slots[i], now);
        while (n < s->workers - 1 && n < 256)
            free_at[n++] = 0;
        for (size_t i = 0; i < s->nring; i++)
            assign(free_at, n, s->ring[(s->head + i) % s->cap].cost);
    }
    return earliest(free_at, n);
}

bool rrd_sched_push(rrd_sched *s, rrd_sched_item it, double now, double *wait, bool *full)
{
    const double w = rrd_sched_wait(s, it.lane, it.deadline, now);
    *wait = w;
    *full = s->nheap + s->nring >= s->cap;
    // An idle worker always takes the task: the estimate orders the queue, it does not
    // judge a request alone (its deadline cancels it if it runs too long).
    if (*full || (it.deadline > 0 && w > 0 && now + w + it.cost > it.deadline))
        return false;
    it.enqueued = now;
    it.seq = s->seq++;
    if (it.lane == RRD_LANE_INTERACTIVE)
        heap_push(s, it);
    else
        s->ring[(s->head + s->nring++) % s->cap] = it;
    return true;
}

static bool expired(const rrd_sched_item *it, double now)
{
    return it->deadline > 0 && now > it->deadline;
}

bool rrd_sched_pop(rrd_sched *s, int slot_i, double now, rrd_sched_item *out,
                   rrd_sched_item *expired_out, size_t max_expired, size_t *n_expired)
{
    *n_expired = 0;
    bool got = false;
    while (!got && s->nheap > 0) {
        if (expired(&s->heap[0], now)) {
            if (*n_expired == max_expired)
                return false; // let the caller answer these first
            expired_out[(*n_expired)++] = heap_pop(s);
            continue;
        }
        *out = heap_pop(s);
        got = true;
    }
    while (!got && s->nring > 0 && (int)s->running[RRD_LANE_BATCH] < s->workers - 1) {
        rrd_sched_item it = s->ring[s->head];
        s->head = (s->head + 1) % s->cap;
        s->nring--;
        if (expired(&it, now)) {
            expired_out[(*n_expired)++] = it;
            if (*n_expired == max_expired)
                return false;
            continue;
        }
        *out = it;
        got = true;
    }
    if (got) {
        slot *sl = &s->slots[slot_i];
        *sl = (slot){true, out->lane, now, out->cost};
        s->running[out->lane]++;
    }
    return got;
}

size_t rrd_sched_expire(rrd_sched *s, double now, rrd_sched_item *out, size_t max, double *next)
{
    size_t n = 0;
    double nx = INFINITY;
    // The heap: keep what has not expired, then restore the heap order.
    size_t k = 0;
    for (size_t i = 0; i < s->nheap; i++) {
        if (n < max && expired(&s->heap[i], now))
            out[n++] = s->heap[i];
        else
            s->heap[k++] = s->heap[i];
    }
    if (k != s->nheap) {
        s->nheap = 0;
        for (size_t i = 0; i < k; i++)
            heap_push(s, s->heap[i]);
    }
    if (s->nheap > 0 && s->heap[0].deadline > 0)
        nx = s->heap[0].deadline;
    // The ring, in order.
    k = 0;
    const size_t m = s->nring;
    for (size_t i = 0; i < m; i++) {
        rrd_sched_item it = s->ring[(s->head + i) % s->cap];
        if (n < max && expired(&it, now)) {
            out[n++] = it;
        } else {
            s->ring[(s->head + k++) % s->cap] = it;
            if (it.deadline > 0 && it.deadline < nx)
                nx = it.deadline;
        }
    }
    s->nring = k;
    *next = isinf(nx) ? 0 : nx;
    return n;
}

void rrd_sched_done(rrd_sched *s, int slot_i)
{
    slot *sl = &s->slots[slot_i];
    if (sl->busy) {
        s->running[sl->lane]--;
        sl->busy = false;
    }
}

size_t rrd_sched_drain(rrd_sched *s, rrd_sched_item *out, size_t max)
{
    size_t n = 0;
    while (n < max && s->nheap > 0)
        out[n++] = heap_pop(s);
    while (n < max && s->nring > 0) {
        out[n++] = s->ring[s->head];
        s->head = (s->head + 1) % s->cap;
        s->nring--;
    }
    return n;
}
