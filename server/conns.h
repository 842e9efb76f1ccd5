// Connection protection (nginx's client_header_timeout / client_body_timeout / send_timeout
// and limit_conn, redis's maxclients): every connection is tracked from accept to close with
// the phase it is in, and a reaper thread closes (shutdown(2); libmicrohttpd then sees the
// end of the stream and cleans up) any connection that
//   - has not completed a request's headers within --header-timeout-s of its start or of its
//     previous answer (slowloris; idle keep-alive connections too),
//   - sends its body or reads its answer slower than --min-rate-kbs after a grace of
//     --header-timeout-s (slow bodies, unread large answers),
// and, when the total comes near --max-conns, the oldest connections waiting for headers
// first. A connection whose request is computing (suspended) is left alone: its deadline
// bounds it; but when its client has gone (the peer closed: a client that gave up, a
// browser's AbortSignal), its computation is cancelled (rrd_conns_watch), so that nobody's
// cores go on computing an answer nobody will read. libmicrohttpd enforces --max-conns and
// --max-conns-per-ip at accept.
// Thread rules: the notify callback and the phase setters are called from libmicrohttpd's
// threads (and a worker, for rrd_conns_phase on resume); everything is under one mutex.
#ifndef RRD_CONNS_H
#define RRD_CONNS_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct rrd_conns rrd_conns;

typedef enum rrd_conn_phase {
    RRD_CONN_HEADERS, // reading a request's headers, or idle between requests
    RRD_CONN_BODY,    // reading a body
    RRD_CONN_COMPUTE, // the request is being answered (parsed, queued or computing)
    RRD_CONN_SEND,    // the answer is being sent
} rrd_conn_phase;

typedef struct rrd_conns_config {
    double header_timeout_s; // headers within this, and the grace before rates count
    double min_rate;         // bytes per second, body and answer
    size_t max_conns;        // the reaper keeps the total under 90 % of this
} rrd_conns_config;

rrd_conns *rrd_conns_new(const rrd_conns_config *cfg);
// Stops the reaper and frees the table (after MHD_stop_daemon).
void rrd_conns_free(rrd_conns *c);

// MHD_OPTION_NOTIFY_CONNECTION's callback (cls: the rrd_conns).
void rrd_conns_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

// The phase of `connection` from now on; bytes: the body's or the answer's length (0 else).
void rrd_conns_phase(rrd_conns *c, struct MHD_Connection *connection, rrd_conn_phase phase,
                     size_t bytes);
// While `connection` stays in the COMPUTE phase: set *cancel when its client closes the
// connection (checked by the reaper, under the table's mutex; the next phase change forgets
// the pointer, so it must stay valid until then).
void rrd_conns_watch(rrd_conns *c, struct MHD_Connection *connection, atomic_bool *cancel);
// Body bytes received so far on `connection` grew by n.
void rrd_conns_received(rrd_conns *c, struct MHD_Connection *connection, size_t n);

typedef struct rrd_conns_stats {
    size_t open;
    unsigned long long closed_header, closed_body, closed_send, closed_full;
    unsigned long long abandoned; // computations cancelled because their client left
} rrd_conns_stats;
void rrd_conns_stats_get(rrd_conns *c, rrd_conns_stats *out);

#endif
