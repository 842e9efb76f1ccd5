// reluregd: the relureg HTTP daemon (api.md). Parses its settings, checks the BLAS build,
// preloads --models-dir, serves with libmicrohttpd (an epoll thread pool for I/O, compute on
// the worker pool), prints one "reluregd listening on http://HOST:PORT" line once it accepts
// connections, and on SIGTERM / SIGINT stops accepting, drains in-flight requests, exits 0.
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "jobs.h"
#include "metrics.h"
#include "pool.h"
#include "registry.h"
#include "router.h"
#include "server.h"

// Every *.safetensors in dir, named after the file's stem; invalid names and files are
// skipped with a log line.
static void preload(rrd_server *s)
{
    const char *dir = s->cfg.models_dir;
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "reluregd: cannot open --models-dir %s: %s\n", dir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *suffix = ".safetensors";
        size_t n = strlen(e->d_name), sl = strlen(suffix);
        if (n <= sl || strcmp(e->d_name + n - sl, suffix) != 0)
            continue;
        char name[256], path[2048];
        snprintf(name, sizeof name, "%.*s", (int)(n - sl), e->d_name);
        if (!rrd_valid_model_name(name)) {
            fprintf(stderr, "reluregd: skipping %s: '%s' is not a valid model name\n", e->d_name,
                    name);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
            fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1)) &&
            fread(buf, 1, (size_t)len, f) != (size_t)len) {
            free(buf);
            buf = NULL;
        }
        if (f)
            fclose(f);
        rr_model *m = NULL;
        rr_error err = {0};
        if (buf == NULL || rrd_model_load(buf, (size_t)len, &m, &err) != RR_OK) {
            fprintf(stderr, "reluregd: skipping %s: %s\n", path,
                    buf ? err.msg : "cannot read the file");
            free(buf);
            continue;
        }
        bool created;
        if (rrd_registry_put(s->models, name, m, buf, (size_t)len, &created) > 0)
            fprintf(stderr, "reluregd: loaded model '%s' from %s\n", name, path);
    }
    closedir(d);
}

// Registry, metrics, jobs, the worker pool and the parsers' pool; false when out of memory.
static bool start_parts(rrd_server *s)
{
    s->models = rrd_registry_new();
    s->metrics = rrd_metrics_new();
    const rrd_jobs_config jc = {.max = s->cfg.jobs_max,
                                .per_client = s->cfg.jobs_per_client,
                                .budget = s->cfg.jobs_max_bytes,
                                .instance = s->cfg.instance};
    s->jobs = rrd_jobs_new(&jc);
    s->pool = rrd_pool_new(s->cfg.workers, s->cfg.threads, s->cfg.queue_max);
    s->parsers = rrd_pool_new(2, 2, s->cfg.queue_max);
    return s->models && s->metrics && s->jobs && s->pool && s->parsers;
}

// Descriptors: as many as the hard limit allows; connections within them (128 kept for the
// rest). Returns the connection limit to serve with.
static unsigned raise_nofile(unsigned max_conns)
{
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        nofile.rlim_cur < (rlim_t)max_conns + 128)
        max_conns = nofile.rlim_cur > 256 ? (unsigned)nofile.rlim_cur - 128 : 128;
    return max_conns;
}

// Starts libmicrohttpd on --host:--port (s->port: the bound port); returns 0, else the exit
// status after a message.
static int listen_http(rrd_server *s)
{
    static struct sockaddr_in addr4;
    static struct sockaddr_in6 addr6;
    addr4 = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)s->cfg.port)};
    addr6 =
        (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->cfg.port)};
    const struct sockaddr *sa;
    // poll(2), level-triggered: libmicrohttpd 0.9.75's epoll mode does not notice a client that
    // sent its headers and closed at once (the end of stream came with the data, and its
    // edge-triggered loop never reads again), which held a slot for the inactivity timeout.
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, s->cfg.host, &addr4.sin_addr) == 1) {
        sa = (const struct sockaddr *)&addr4;
    } else if (inet_pton(AF_INET6, s->cfg.host, &addr6.sin6_addr) == 1) {
        sa = (const struct sockaddr *)&addr6;
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "reluregd: --host must be an IPv4 or IPv6 address, got '%s'\n",
                s->cfg.host);
        return 2;
    }
    const unsigned max_conns = raise_nofile((unsigned)s->cfg.max_conns);
    const rrd_conns_config cc = {.header_timeout_s = s->cfg.header_timeout_s,
                                 .min_rate = s->cfg.min_rate_kbs * 1024,
                                 .max_conns = max_conns};
    s->conns = rrd_conns_new(&cc);
    if (s->conns == NULL) {
        fprintf(stderr, "reluregd: out of memory at start-up\n");
        return 1;
    }
    s->mhd = MHD_start_daemon(
        flags, (uint16_t)s->cfg.port, NULL, NULL, rrd_http_access, s, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(3 * s->cfg.header_timeout_s), MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.max_conns_per_ip,
        MHD_OPTION_UNESCAPE_CALLBACK, rrd_url_unescape, NULL, MHD_OPTION_NOTIFY_CONNECTION,
        rrd_conns_notify, s->conns, MHD_OPTION_NOTIFY_COMPLETED, rrd_http_completed, s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        256u, MHD_OPTION_END);
    if (s->mhd == NULL) {
        fprintf(stderr, "reluregd: cannot listen on %s:%d: %s\n", s->cfg.host, s->cfg.port,
                strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->cfg.port;
    return 0;
}

// The start-up line: threads, BLAS and the cost model's rates.
static void announce(const rrd_server *s)
{
    double g1, gall, bw, ovh;
    rrd_cost_rates(&g1, &gall, &bw, &ovh);
    fprintf(stderr,
            "reluregd: %d compute threads, %d workers, BLAS %s, cost model %.1f GFLOP/s on 1 "
            "thread, %.1f on %d, %.1f GB/s, %.1f us a pass%s%s\n",
            s->cfg.threads, s->cfg.workers, rr_blas_config(), g1, gall, s->cfg.threads, bw,
            ovh * 1e6, s->cfg.instance[0] ? ", instance " : "", s->cfg.instance);
    printf("reluregd listening on http://%s:%d\n", s->cfg.host, s->port);
    fflush(stdout);
}

// After SIGTERM / SIGINT: not ready, stop accepting, let in-flight requests finish (up to the
// timeout), then free everything.
static void drain_and_stop(rrd_server *s, int sig)
{
    fprintf(stderr, "reluregd: %s, draining %d requests\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            atomic_load(&s->inflight));
    atomic_store(&s->ready, false);
    const struct timespec tick = {0, 10 * 1000 * 1000};
    // Keep serving, unready, while balancers notice (Kubernetes removes the endpoint).
    const double grace_end = rrd_now() + s->cfg.drain_grace_s;
    while (rrd_now() < grace_end)
        nanosleep(&tick, NULL);
    MHD_socket listen_fd = MHD_quiesce_daemon(s->mhd);
    // What has not started never will: queued requests are answered 503, queued jobs end
    // cancelled. Running ones get --drain-grace-s more to finish, then are cancelled (the
    // library polls for that between chunks), and the rest is bounded by a few seconds.
    const size_t dropped = rrd_pool_drop_queued(s->parsers) + rrd_pool_drop_queued(s->pool);
    double until = rrd_now() + s->cfg.drain_grace_s;
    while (atomic_load(&s->inflight) > 0 && rrd_now() < until)
        nanosleep(&tick, NULL);
    rrd_http_cancel_all();
    until = rrd_now() + 5;
    while (atomic_load(&s->inflight) > 0 && rrd_now() < until)
        nanosleep(&tick, NULL);
    fprintf(stderr, "reluregd: %zu queued tasks dropped, %d requests left at exit\n", dropped,
            atomic_load(&s->inflight));
    MHD_stop_daemon(s->mhd);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    rrd_conns_free(s->conns);
    rrd_pool_free(s->parsers);
    rrd_pool_free(s->pool);
    rrd_jobs_free(s->jobs);
    rrd_registry_free(s->models);
    rrd_metrics_free(s->metrics);
    fprintf(stderr, "reluregd: stopped\n");
}

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    static rrd_server srv;
    rrd_server *s = &srv;
    int rc = rrd_config_parse(&s->cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    rr_error err = {0};
    if (rr_blas_check(&err) != RR_OK) {
        fprintf(stderr, "reluregd: %s\n", err.msg);
        return 1;
    }
    // jansson hashes with a random seed; set it once before any thread starts.
    json_object_seed(0);

    // Signals: SIGPIPE ignored; SIGTERM / SIGINT taken by sigwait below, so every thread
    // (created after this) inherits the mask.
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    // The cost model's rates, measured on this machine before serving (about 50 ms). After
    // the signal mask: the OpenMP threads it starts must not take SIGTERM.
    rrd_cost_calibrate(s->cfg.threads);
    if (!start_parts(s)) {
        fprintf(stderr, "reluregd: out of memory at start-up\n");
        return 1;
    }
    if (s->cfg.models_dir[0])
        preload(s);
    if ((rc = listen_http(s)) != 0)
        return rc;
    atomic_store(&s->ready, true);
    announce(s);
    int sig = 0;
    sigwait(&stop, &sig);
    drain_and_stop(s, sig);
    return 0;
}
