// reluregd's settings: api.md "Running the daemon" — each flag also settable by its
// environment variable, flags winning.
#ifndef RRD_CONFIG_H
#define RRD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct rrd_config {
    char host[256];          // --host (RELUREG_HOST), default 127.0.0.1
    int port;                // --port (RELUREG_PORT), default 8080; 0 picks a free port
    int threads;             // --threads (RELUREG_THREADS), total compute threads, default cores
    int workers;             // --workers (RELUREG_WORKERS), concurrent compute requests, default
                             // and minimum 2 (the batch lane holds at most workers - 1)
    double inline_us;        // --inline-us (RELUREG_INLINE_US): cheaper requests run inline (100)
    double long_ms;          // --long-ms (RELUREG_LONG_MS): costlier ones use the batch lane (500)
    size_t queue_max;        // --queue-max (RELUREG_QUEUE_MAX): queued tasks at most (4096)
    int max_conns;           // --max-conns (RELUREG_MAX_CONNS): open connections at most (4096,
                             // less when the descriptor limit is lower)
    int max_conns_per_ip;    // --max-conns-per-ip (RELUREG_MAX_CONNS_PER_IP): per address (512)
    double header_timeout_s; // --header-timeout-s (RELUREG_HEADER_TIMEOUT_S): 10
    double min_rate_kbs;     // --min-rate-kbs (RELUREG_MIN_RATE_KBS): body and answer rate, 16
    size_t jobs_max;         // --jobs-max (RELUREG_JOBS_MAX): async jobs held (1024)
    size_t jobs_per_client;  // --jobs-per-client (RELUREG_JOBS_PER_CLIENT): unfinished (64)
    size_t jobs_max_bytes;   // --jobs-max-mb (RELUREG_JOBS_MAX_MB): finished answers (1024 MiB)
    char models_dir[1024];   // --models-dir (RELUREG_MODELS_DIR)
    char token[256];         // read from --token-file (RELUREG_TOKEN_FILE); "" = no auth
    char cors_origin[256];   // --cors-origin (RELUREG_CORS_ORIGIN); "" = no CORS headers
    size_t max_body;         // --max-body-mb (RELUREG_MAX_BODY_MB), default 64 MiB, in bytes
    size_t max_batch;        // --max-batch (RELUREG_MAX_BATCH), default 4096
    int max_steps;           // --max-steps (RELUREG_MAX_STEPS), default 10000
    double timeout_s;        // --timeout-s (RELUREG_TIMEOUT_S), default 300
    char static_dir[1024];   // --static-dir (RELUREG_STATIC_DIR): the dashboard files
    char data_dir[1024];     // --data-dir (RELUREG_DATA_DIR): Fashion-MNIST IDX files
    double drain_grace_s;    // --drain-grace-s (RELUREG_DRAIN_GRACE_S), default 1: after SIGTERM,
                             // seconds of serving with readiness 503 before accepting stops
    char instance[65];       // --instance (RELUREG_INSTANCE): job id prefix "NAME-"; "" = none
    bool quiet;              // --quiet: no access log
} rrd_config;

// Fills cfg from defaults, the environment, then argv. Returns 0, or prints the problem and
// returns 2 (bad flag), or 1 when --help was asked.
int rrd_config_parse(rrd_config *cfg, int argc, char **argv);

#endif
