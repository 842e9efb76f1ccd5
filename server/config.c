// Flags and environment variables of reluregd (see config.h).
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage =
    "usage: reluregd [options]   (each also settable by the environment variable shown)\n"
    "  --host H          RELUREG_HOST        listen address (127.0.0.1)\n"
    "  --port P          RELUREG_PORT        port (8080; 0 picks a free one)\n"
    "  --threads N       RELUREG_THREADS     total compute threads (cores)\n"
    "  --workers W       RELUREG_WORKERS     concurrent compute requests (2, at least 2:\n"
    "                                        long work never holds the last one)\n"
    "  --inline-us U     RELUREG_INLINE_US   requests estimated below U microseconds run on\n"
    "                                        the thread that parsed them (100; 0: never)\n"
    "  --long-ms L       RELUREG_LONG_MS     requests estimated above L ms, robustness\n"
    "                                        reports and async jobs go to the batch lane (500)\n"
    "  --queue-max Q     RELUREG_QUEUE_MAX   compute tasks queued at most (4096); admission\n"
    "                                        is by deadline, this bounds memory\n"
    "  --max-conns N     RELUREG_MAX_CONNS   open connections at most (4096); near it the\n"
    "                                        oldest ones waiting for headers are closed\n"
    "  --max-conns-per-ip N RELUREG_MAX_CONNS_PER_IP  per client address (512)\n"
    "  --header-timeout-s T RELUREG_HEADER_TIMEOUT_S  a request's headers must arrive within\n"
    "                                        T s of connecting or of the previous answer (10)\n"
    "  --min-rate-kbs R  RELUREG_MIN_RATE_KBS  slowest body upload and answer download, KiB/s\n"
    "                                        after T s of grace (16)\n"
    "  --jobs-max N      RELUREG_JOBS_MAX    async jobs held (1024)\n"
    "  --jobs-per-client N RELUREG_JOBS_PER_CLIENT  unfinished jobs per client address (64)\n"
    "  --jobs-max-mb M   RELUREG_JOBS_MAX_MB finished job answers held, MiB (1024); beyond it\n"
    "                                        the oldest of the client holding most are evicted\n"
    "  --models-dir D    RELUREG_MODELS_DIR  load every *.safetensors in D at start\n"
    "  --token-file F    RELUREG_TOKEN_FILE  bearer token required for PUT/DELETE of models\n"
    "  --cors-origin O   RELUREG_CORS_ORIGIN allowed browser origin (CORS)\n"
    "  --max-body-mb M   RELUREG_MAX_BODY_MB largest request body (64)\n"
    "  --max-batch B     RELUREG_MAX_BATCH   largest batch (4096)\n"
    "  --max-steps S     RELUREG_MAX_STEPS   largest iteration/count field (10000)\n"
    "  --timeout-s T     RELUREG_TIMEOUT_S   synchronous compute deadline (300)\n"
    "  --static-dir D    RELUREG_STATIC_DIR  dashboard files (clients/js)\n"
    "  --data-dir D      RELUREG_DATA_DIR    Fashion-MNIST IDX files (Debian's dataset path)\n"
    "  --drain-grace-s S RELUREG_DRAIN_GRACE_S  after SIGTERM, serve S seconds with readiness\n"
    "                                        503 before draining (1)\n"
    "  --instance NAME   RELUREG_INSTANCE    this replica's name (a valid model name): job\n"
    "                                        ids become NAME-<32 hex>, so a balancer can route\n"
    "                                        /v1/jobs/NAME-... back to it (none: plain ids)\n"
    "  --quiet                               no access log\n";

static int set_str(char *dst, size_t cap, const char *v, const char *what)
{
    if (strlen(v) >= cap) {
        fprintf(stderr, "reluregd: %s is too long\n", what);
        return 2;
    }
    strcpy(dst, v);
    return 0;
}

static int set_long(long *dst, const char *v, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "reluregd: %s must be an integer in [%ld, %ld], got '%s'\n", what, lo, hi,
                v);
        return 2;
    }
    *dst = x;
    return 0;
}

static int read_token(rrd_config *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "reluregd: cannot read token file %s: %s\n", path, strerror(errno));
        return 2;
    }
    // The first line, whole: a token longer than the buffer or holding a NUL byte is refused,
    // never cut short (a cut token would accept every token sharing its prefix).
    char buf[sizeof cfg->token];
    size_t n = 0;
    bool nul = false;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        nul = nul || c == '\0';
        if (n < sizeof buf)
            buf[n] = (char)c;
        n++;
    }
    fclose(f);
    if (n > 0 && n <= sizeof buf && buf[n - 1] == '\r')
        n--;
    if (n == 0) {
        fprintf(stderr, "reluregd: token file %s is empty\n", path);
        return 2;
    }
    if (n >= sizeof buf) {
        fprintf(stderr,
                "reluregd: token file %s holds a token of %zu bytes, longer than the "
                "%zu this server accepts\n",
                path, n, sizeof buf - 1);
        return 2;
    }
    if (nul) {
        fprintf(stderr, "reluregd: token file %s holds a NUL byte in its token\n", path);
        return 2;
    }
    buf[n] = '\0';
    memcpy(cfg->token, buf, n + 1);
    return 0;
}

// The model-name rule (api.md): the name becomes a job id prefix, so it must stay one URL path
// segment and never be "." or "..".
static bool valid_instance(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char c = v[i];
        const bool alnum =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

// Applies one setting by name (flag name without dashes) from a string value.
static int apply(rrd_config *cfg, const char *name, const char *v)
{
    long x;
    int rc;
    if (strcmp(name, "host") == 0)
        return set_str(cfg->host, sizeof cfg->host, v, "--host");
    if (strcmp(name, "port") == 0) {
        if ((rc = set_long(&x, v, 0, 65535, "--port")))
            return rc;
        cfg->port = (int)x;
    } else if (strcmp(name, "threads") == 0) {
        if ((rc = set_long(&x, v, 1, 1024, "--threads")))
            return rc;
        cfg->threads = (int)x;
    } else if (strcmp(name, "workers") == 0) {
        if ((rc = set_long(&x, v, 1, 256, "--workers")))
            return rc;
        cfg->workers = x < 2 ? 2 : (int)x;
    } else if (strcmp(name, "inline-us") == 0) {
        if ((rc = set_long(&x, v, 0, 1000000, "--inline-us")))
            return rc;
        cfg->inline_us = (double)x;
    } else if (strcmp(name, "long-ms") == 0) {
        if ((rc = set_long(&x, v, 1, 86400000, "--long-ms")))
            return rc;
        cfg->long_ms = (double)x;
    } else if (strcmp(name, "max-conns") == 0) {
        if ((rc = set_long(&x, v, 16, 1 << 20, "--max-conns")))
            return rc;
        cfg->max_conns = (int)x;
    } else if (strcmp(name, "max-conns-per-ip") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 20, "--max-conns-per-ip")))
            return rc;
        cfg->max_conns_per_ip = (int)x;
    } else if (strcmp(name, "header-timeout-s") == 0) {
        if ((rc = set_long(&x, v, 1, 3600, "--header-timeout-s")))
            return rc;
        cfg->header_timeout_s = (double)x;
    } else if (strcmp(name, "min-rate-kbs") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 20, "--min-rate-kbs")))
            return rc;
        cfg->min_rate_kbs = (double)x;
    } else if (strcmp(name, "jobs-max") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 20, "--jobs-max")))
            return rc;
        cfg->jobs_max = (size_t)x;
    } else if (strcmp(name, "jobs-per-client") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 20, "--jobs-per-client")))
            return rc;
        cfg->jobs_per_client = (size_t)x;
    } else if (strcmp(name, "jobs-max-mb") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 24, "--jobs-max-mb")))
            return rc;
        cfg->jobs_max_bytes = (size_t)x << 20;
    } else if (strcmp(name, "queue-max") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 20, "--queue-max")))
            return rc;
        cfg->queue_max = (size_t)x;
    } else if (strcmp(name, "models-dir") == 0) {
        return set_str(cfg->models_dir, sizeof cfg->models_dir, v, "--models-dir");
    } else if (strcmp(name, "token-file") == 0) {
        return read_token(cfg, v);
    } else if (strcmp(name, "cors-origin") == 0) {
        return set_str(cfg->cors_origin, sizeof cfg->cors_origin, v, "--cors-origin");
    } else if (strcmp(name, "max-body-mb") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 16, "--max-body-mb")))
            return rc;
        cfg->max_body = (size_t)x << 20;
    } else if (strcmp(name, "max-batch") == 0) {
        if ((rc = set_long(&x, v, 1, 1 << 24, "--max-batch")))
            return rc;
        cfg->max_batch = (size_t)x;
    } else if (strcmp(name, "max-steps") == 0) {
        if ((rc = set_long(&x, v, 1, 100000000, "--max-steps")))
            return rc;
        cfg->max_steps = (int)x;
    } else if (strcmp(name, "timeout-s") == 0) {
        if ((rc = set_long(&x, v, 1, 86400 * 7, "--timeout-s")))
            return rc;
        cfg->timeout_s = (double)x;
    } else if (strcmp(name, "static-dir") == 0) {
        return set_str(cfg->static_dir, sizeof cfg->static_dir, v, "--static-dir");
    } else if (strcmp(name, "drain-grace-s") == 0) {
        if ((rc = set_long(&x, v, 0, 600, "--drain-grace-s")))
            return rc;
        cfg->drain_grace_s = (double)x;
    } else if (strcmp(name, "data-dir") == 0) {
        return set_str(cfg->data_dir, sizeof cfg->data_dir, v, "--data-dir");
    } else if (strcmp(name, "instance") == 0) {
        if (v[0] != '\0' && !valid_instance(v)) {
            fprintf(stderr,
                    "reluregd: --instance must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, got '%s'\n",
                    v);
            return 2;
        }
        return set_str(cfg->instance, sizeof cfg->instance, v, "--instance");
    }
    return 0;
}

int rrd_config_parse(rrd_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->host, "127.0.0.1");
    cfg->port = 8080;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (int)cores : 1;
    cfg->workers = 2;
    cfg->inline_us = 100;
    cfg->long_ms = 500;
    cfg->queue_max = 4096;
    cfg->max_conns = 4096;
    cfg->max_conns_per_ip = 512;
    cfg->header_timeout_s = 10;
    cfg->min_rate_kbs = 16;
    cfg->jobs_max = 1024;
    cfg->jobs_per_client = 64;
    cfg->jobs_max_bytes = (size_t)1024 << 20;
    cfg->max_body = (size_t)64 << 20;
    cfg->max_batch = 4096;
    cfg->max_steps = 10000;
    cfg->timeout_s = 300;
    cfg->drain_grace_s = 1;
    strcpy(cfg->static_dir, "clients/js");
    strcpy(cfg->data_dir, "/usr/share/datasets/fashion-mnist");

    static const struct {
        const char *flag, *env;
    } vars[] = {{"host", "RELUREG_HOST"},
                {"port", "RELUREG_PORT"},
                {"threads", "RELUREG_THREADS"},
                {"workers", "RELUREG_WORKERS"},
                {"inline-us", "RELUREG_INLINE_US"},
                {"long-ms", "RELUREG_LONG_MS"},
                {"queue-max", "RELUREG_QUEUE_MAX"},
                {"max-conns", "RELUREG_MAX_CONNS"},
                {"max-conns-per-ip", "RELUREG_MAX_CONNS_PER_IP"},
                {"header-timeout-s", "RELUREG_HEADER_TIMEOUT_S"},
                {"min-rate-kbs", "RELUREG_MIN_RATE_KBS"},
                {"jobs-max", "RELUREG_JOBS_MAX"},
                {"jobs-per-client", "RELUREG_JOBS_PER_CLIENT"},
                {"jobs-max-mb", "RELUREG_JOBS_MAX_MB"},
                {"models-dir", "RELUREG_MODELS_DIR"},
                {"token-file", "RELUREG_TOKEN_FILE"},
                {"cors-origin", "RELUREG_CORS_ORIGIN"},
                {"max-body-mb", "RELUREG_MAX_BODY_MB"},
                {"max-batch", "RELUREG_MAX_BATCH"},
                {"max-steps", "RELUREG_MAX_STEPS"},
                {"timeout-s", "RELUREG_TIMEOUT_S"},
                {"static-dir", "RELUREG_STATIC_DIR"},
                {"data-dir", "RELUREG_DATA_DIR"},
                {"drain-grace-s", "RELUREG_DRAIN_GRACE_S"},
                {"instance", "RELUREG_INSTANCE"}};
    const size_t nvars = sizeof vars / sizeof vars[0];
    for (size_t i = 0; i < nvars; i++) {
        const char *v = getenv(vars[i].env);
        int rc;
        if (v && *v && (rc = apply(cfg, vars[i].flag, v)))
            return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(a, "--quiet") == 0) {
            cfg->quiet = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "reluregd: unexpected argument '%s'\n%s", a, usage);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        char key[64];
        const char *val;
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - name), name);
            val = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "reluregd: %s needs a value\n", a);
                return 2;
            }
            snprintf(key, sizeof key, "%s", name);
            val = argv[++i];
        }
        bool known = false;
        for (size_t k = 0; k < nvars; k++)
            known |= strcmp(vars[k].flag, key) == 0;
        if (!known) {
            fprintf(stderr, "reluregd: unknown flag --%s\n%s", key, usage);
            return 2;
        }
        int rc = apply(cfg, key, val);
        if (rc)
            return rc;
    }
    return 0;
}
