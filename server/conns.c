// Connection protection (see conns.h): a list of open connections under one mutex, and a
// reaper thread that looks at it every 50 ms (at once when a new connection nears the limit).
#include "conns.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "server.h"

typedef struct conn {
    struct conn *prev, *next;
    int fd;
    rrd_conn_phase phase;
    double t_phase;      // when the phase began
    size_t bytes;        // body: received so far; send: the answer's length
    bool closing;        // shut down by the reaper, waiting for libmicrohttpd to notice
    atomic_bool *cancel; // COMPUTE: set when the client leaves (rrd_conns_watch), or NULL
} conn;

struct rrd_conns {
    rrd_conns_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn head; // sentinel of a circular list
    size_t n;
    bool stop, urgent;
    pthread_t reaper;
    bool has_reaper;
    unsigned long long closed_header, closed_body, closed_send, closed_full, abandoned;
};

static void close_conn(conn *k)
{
    // libmicrohttpd closes the descriptor only after its CLOSED notification, which takes the
    // mutex held here: the descriptor is still this connection's.
    k->closing = true;
    shutdown(k->fd, SHUT_RDWR);
}

// True when the peer has closed the connection: a read would give end of stream (or a reset).
// Bytes it sent ahead (a pipelined request) are left where they are.
static bool peer_gone(int fd)
{
    char b;
    const ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// Closes the oldest connections waiting for headers until the total is under `keep`.
static void trim(rrd_conns *c, size_t keep)
{
    size_t open = 0;
    for (conn *k = c->head.next; k != &c->head; k = k->next)
        open += !k->closing;
    while (open > keep) {
        conn *oldest = NULL;
        for (conn *k = c->head.next; k != &c->head; k = k->next)
            if (!k->closing && k->phase == RRD_CONN_HEADERS &&
                (oldest == NULL || k->t_phase < oldest->t_phase))
                oldest = k;
        if (oldest == NULL)
            return;
        close_conn(oldest);
        c->closed_full++;
        open--;
    }
}

static void *reaper_main(void *arg)
{
    rrd_conns *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (!c->urgent)
            pthread_cond_timedwait(&c->cv, &c->mu, &until);
        c->urgent = false;
        if (c->stop)
            break;
        const double now = rrd_now(), grace = c->cfg.header_timeout_s;
        for (conn *k = c->head.next; k != &c->head; k = k->next) {
            if (k->closing)
                continue;
            const double dt = now - k->t_phase;
            if (k->phase == RRD_CONN_HEADERS && dt > c->cfg.header_timeout_s) {
                close_conn(k);
                c->closed_header++;
            } else if (k->phase == RRD_CONN_BODY && dt > grace &&
                       (double)k->bytes < c->cfg.min_rate * dt) {
                close_conn(k);
                c->closed_body++;
            } else if (k->phase == RRD_CONN_SEND &&
                       dt > grace + (double)k->bytes / c->cfg.min_rate) {
                close_conn(k);
                c->closed_send++;
            } else if (k->phase == RRD_CONN_COMPUTE && k->cancel && peer_gone(k->fd)) {
                atomic_store(k->cancel, true);
                k->cancel = NULL;
                c->abandoned++;
            }
        }
        trim(c, c->cfg.max_conns * 9 / 10);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

rrd_conns *rrd_conns_new(const rrd_conns_config *cfg)
{
    rrd_conns *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->cfg = *cfg;
    c->head.next = c->head.prev = &c->head;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->has_reaper = pthread_create(&c->reaper, NULL, reaper_main, c) == 0;
    return c;
}

void rrd_conns_free(rrd_conns *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->has_reaper)
        pthread_join(c->reaper, NULL);
    while (c->head.next != &c->head) {
        conn *k = c->head.next;
        c->head.next = k->next;
        free(k);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void rrd_conns_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    rrd_conns *c = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn *k = calloc(1, sizeof *k);
        *socket_context = k;
        if (k == NULL || fd == NULL) {
            free(k);
            *socket_context = NULL;
            return;
        }
        k->fd = fd->connect_fd;
        k->phase = RRD_CONN_HEADERS;
        k->t_phase = rrd_now();
        pthread_mutex_lock(&c->mu);
        k->next = &c->head;
        k->prev = c->head.prev;
        c->head.prev->next = k;
        c->head.prev = k;
        c->n++;
        if (c->n > c->cfg.max_conns * 9 / 10) {
            c->urgent = true;
            pthread_cond_signal(&c->cv);
        }
        pthread_mutex_unlock(&c->mu);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn *k = *socket_context;
        if (k == NULL)
            return;
        pthread_mutex_lock(&c->mu);
        k->prev->next = k->next;
        k->next->prev = k->prev;
        c->n--;
        pthread_mutex_unlock(&c->mu);
        free(k);
        *socket_context = NULL;
    }
}

static conn *find(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

void rrd_conns_phase(rrd_conns *c, struct MHD_Connection *connection, rrd_conn_phase phase,
                     size_t bytes)
{
    conn *k = find(connection);
    if (k == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    k->phase = phase;
    k->t_phase = rrd_now();
    k->bytes = phase == RRD_CONN_SEND ? bytes : 0;
    k->cancel = NULL;
    pthread_mutex_unlock(&c->mu);
}

void rrd_conns_watch(rrd_conns *c, struct MHD_Connection *connection, atomic_bool *cancel)
{
    conn *k = find(connection);
    if (k == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    if (k->phase == RRD_CONN_COMPUTE)
        k->cancel = cancel;
    pthread_mutex_unlock(&c->mu);
}

void rrd_conns_received(rrd_conns *c, struct MHD_Connection *connection, size_t n)
{
    conn *k = find(connection);
    if (k == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    k->bytes += n;
    pthread_mutex_unlock(&c->mu);
}

void rrd_conns_stats_get(rrd_conns *c, rrd_conns_stats *out)
{
    pthread_mutex_lock(&c->mu);
    out->open = c->n;
    out->closed_header = c->closed_header;
    out->closed_body = c->closed_body;
    out->closed_send = c->closed_send;
    out->closed_full = c->closed_full;
    out->abandoned = c->abandoned;
    pthread_mutex_unlock(&c->mu);
}
