// relureg-eval: a robustness evaluation (rr_robustness) of a model on a Fashion-MNIST range,
// whole or in shards that merge into the same report, bit for bit.
//
//   relureg-eval run   ... [--report FILE]          the whole range: the report
//   relureg-eval run   ... --shards N --shard I --out DIR
//                      shard I of N (I from JOB_COMPLETION_INDEX when --shard is not given,
//                      as in a Kubernetes Indexed Job): DIR/part-I-of-N.json, written atomically
//   relureg-eval merge DIR [--report FILE]        the report from DIR's N parts
//
// Shard I holds contiguous rows of the n samples: whole blocks of --block samples (by dataset
// index), blocks [I nb / N, (I + 1) nb / N) of the nb. rr_robustness computes block by block and
// every attack draws its randomness from (seed, dataset index) (report.h, sample_offset), so a
// part holds exactly those rows' outcomes of the whole run, and the merge summarizes the
// concatenated outcomes with rr_robustness_summarize, the function rr_robustness summarizes
// with: the merged report is byte for byte the unsharded one for any N. A part records the
// evaluation's config (model sha256, data, attack, epsilons) and the merge refuses parts whose
// config differs, a missing part and a part of another N.
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "relureg.h"
#include "sha256.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define PART_FORMAT  "relureg-eval/part/1"

static const char *usage =
    "usage: relureg-eval run --model FILE [options] [--report FILE]\n"
    "       relureg-eval run --model FILE [options] --shards N [--shard I] --out DIR\n"
    "       relureg-eval merge DIR [--report FILE]\n"
    "  --model FILE        the model (.safetensors)\n"
    "  --data DIR          Fashion-MNIST's gzip IDX files (default " DEFAULT_DATA ")\n"
    "  --split test|train  (default test)\n"
    "  --offset O          first sample of the split (default 0)\n"
    "  --limit N           samples from --offset (default 0: to the end of the split)\n"
    "  --attack NAME       pgd (default), fgsm, bim, apgd_ce, apgd_t, square, autoattack, ...\n"
    "  --suite S           autoattack: standard (default) or fast\n"
    "  --steps N --step-size A --restarts R --queries Q   attack options (math.md defaults)\n"
    "  --seed S            the attack's seed (default 0)\n"
    "  --norm linf|l2      (default linf)\n"
    "  --epsilons E,...    (default 0.05,0.1,0.2)\n"
    "  --shards N          split the range into N shards and compute one (default: whole)\n"
    "  --shard I           the shard to compute, 0 <= I < N (default $JOB_COMPLETION_INDEX)\n"
    "  --out DIR           where a shard writes part-I-of-N.json (created when missing)\n"
    "  --report FILE       where the report goes (default stdout)\n"
    "  --threads T         OpenMP threads (default: all cores)\n"
    "  --batch B           samples per workspace chunk (default 256)\n"
    "  --block G           samples per report block; shards are whole blocks (default 64)\n"
    "  --help\n"
    "env: JOB_COMPLETION_INDEX (the shard when --shard is not given)\n"
    "exit status: 0 done, 1 failed (model, data, I/O, a merge's parts), 2 usage error\n";

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("relureg-eval: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

// A usage error: exit status 2 (the Indexed Job does not retry it, k8s/eval/job.yaml).
static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("relureg-eval: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

// ---- numbers in JSON: doubles round-trip exactly (%.17g); NaN is null, +-inf "inf" ----

static json_t *num(double v)
{
    if (isnan(v))
        return json_null();
    if (isinf(v))
        return json_string(v > 0 ? "inf" : "-inf");
    return json_real(v);
}

static bool get_num(const json_t *j, double *v)
{
    if (json_is_null(j))
        *v = NAN;
    else if (json_is_string(j) && strcmp(json_string_value(j), "inf") == 0)
        *v = INFINITY;
    else if (json_is_string(j) && strcmp(json_string_value(j), "-inf") == 0)
        *v = -INFINITY;
    else if (json_is_number(j))
        *v = json_number_value(j);
    else
        return false;
    return true;
}

// ---- the evaluation's config ----

typedef struct config {
    const char *model, *data, *split, *attack, *suite, *norm;
    size_t offset, limit;
    int steps, restarts, queries;
    double step_size;
    uint64_t seed;
    double eps[64];
    size_t neps;
    int threads;
    size_t batch, block;
} config;

// Row of the boundary before block j of the n rows from global index off (blocks of G by global
// index, rr_robustness_params.block): shard I of N holds the blocks [I nb / N, (I + 1) nb / N).
static size_t shard_bound(size_t off, size_t n, size_t G, size_t N, size_t I)
{
    if (n == 0)
        return 0;
    const size_t nb = (off + n - 1) / G - off / G + 1, j = I * nb / N;
    if (j == 0)
        return 0;
    if (j >= nb)
        return n;
    return (off / G + j) * G - off;
}

static bool parse_epsilons(const char *s, config *c)
{
    c->neps = 0;
    while (*s) {
        char *end;
        errno = 0;
        const double v = strtod(s, &end);
        if (end == s || errno || !(v >= 0) || !isfinite(v) || c->neps == 64)
            return false;
        c->eps[c->neps++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return false;
    }
    return c->neps > 0;
}

static bool file_sha256(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    sha256 h;
    sha256_init(&h);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(&h, buf, n);
    const bool ok = !ferror(f);
    fclose(f);
    sha256_final_hex(&h, hex);
    return ok;
}

// What every part of an evaluation shares, and the report repeats: the model's sha256, the data
// range, the attack with its options as given, the norm and the epsilons.
static json_t *config_json(const config *c, const char *model_sha, size_t n)
{
    json_t *atk = json_pack("{s:s, s:I}", "attack", c->attack, "seed", (json_int_t)c->seed);
    if (c->suite)
        json_object_set_new(atk, "suite", json_string(c->suite));
    if (c->steps > 0)
        json_object_set_new(atk, "steps", json_integer(c->steps));
    if (c->restarts > 0)
        json_object_set_new(atk, "restarts", json_integer(c->restarts));
    if (c->queries > 0)
        json_object_set_new(atk, "queries", json_integer(c->queries));
    if (!isnan(c->step_size))
        json_object_set_new(atk, "step_size", json_real(c->step_size));
    json_t *eps = json_array();
    for (size_t e = 0; e < c->neps; e++)
        json_array_append_new(eps, json_real(c->eps[e]));
    return json_pack("{s:s, s:{s:s, s:s, s:I, s:I}, s:o, s:s, s:o, s:I}", "model_sha256", model_sha,
                     "data", "dataset", "fashion-mnist", "split", c->split, "offset",
                     (json_int_t)c->offset, "samples", (json_int_t)n, "attack", atk, "norm",
                     c->norm, "epsilons", eps, "block", (json_int_t)c->block);
}

// The report: the config, the summary of the outcomes (rr_robustness_summarize's) and the call
// counts (per block, so a merge's sums are the whole run's).
static json_t *report_json(json_t *cfg, const rr_robustness_result *r, size_t n, size_t neps,
                           bool autoattack)
{
    json_t *doc = json_object();
    json_object_set(doc, "config", cfg);
    json_object_set_new(doc, "gradient_calls", json_integer(r->gradient_calls));
    json_object_set_new(doc, "forward_calls", json_integer(r->forward_calls));
    json_object_set_new(doc, "clean_accuracy", num(r->clean_accuracy));
    json_t *ra = json_array();
    for (size_t e = 0; e < neps; e++)
        json_array_append_new(ra, num(r->robust_accuracy[e]));
    json_object_set_new(doc, "robust_accuracy", ra);
    json_object_set_new(doc, "deepfool_rho", num(r->deepfool_rho));
    json_object_set_new(doc, "mean_certified_radius", num(r->mean_certified_radius));
    json_t *mine = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(mine, num(r->per_sample_min_epsilon[i]));
    json_object_set_new(doc, "per_sample_min_epsilon", mine);
    if (autoattack) {
        json_t *bb = json_array();
        for (size_t i = 0; i < n; i++) {
            const char *s =
                r->broken_by[i] < 0 ? NULL : rr_attack_name_string((rr_attack_name)r->broken_by[i]);
            json_array_append_new(bb, s ? json_string(s) : json_null());
        }
        json_object_set_new(doc, "broken_by", bb);
    }
    const rr_robustness_flags *f = &r->flags;
    json_object_set_new(
        doc, "flags",
        json_pack("{s:b, s:o, s:o, s:i, s:b, s:i}", "flagged", f->flagged, "zero_gradient_fraction",
                  num(f->zero_gradient_fraction), "nonfinite_gradient_fraction",
                  num(f->nonfinite_gradient_fraction), "black_box_only", f->black_box_only,
                  "non_monotone", f->non_monotone, "certified_broken", f->certified_broken));
    return doc;
}

// Writes doc to path ("-" or NULL: stdout) through path.tmp.PID and rename, so that a reader (the
// merge, a retried pod) sees the whole file or none.
static int write_json(json_t *doc, const char *path)
{
    const size_t flags = JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17);
    if (!path || strcmp(path, "-") == 0) {
        if (json_dumpf(doc, stdout, flags) || fputc('\n', stdout) == EOF || fflush(stdout))
            return fail("cannot write the report to stdout");
        return 0;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return fail("%s: %s", tmp, strerror(errno));
    int bad = json_dumpf(doc, f, flags) || fputc('\n', f) == EOF || fflush(f) || fsync(fileno(f));
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return fail("cannot write %s", path);
    }
    return 0;
}

// ---- per-sample outcomes in a part ----

static json_t *samples_json(const rr_robustness_sample *s, size_t n, size_t neps)
{
    json_t *c = json_array(), *z = json_array(), *nf = json_array(), *br = json_array(),
           *rho = json_array(), *cr = json_array(), *bb = json_array();
    char bits[65];
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(c, json_integer(s[i].correct));
        json_array_append_new(z, json_integer(s[i].zero_gradient));
        json_array_append_new(nf, json_integer(s[i].nonfinite_gradient));
        for (size_t e = 0; e < neps; e++)
            bits[e] = (s[i].broken >> e & 1) ? '1' : '0';
        bits[neps] = 0;
        json_array_append_new(br, json_string(bits));
        json_array_append_new(rho, num(s[i].deepfool_rho));
        json_array_append_new(cr, num(s[i].certified_radius));
        json_array_append_new(bb, json_integer(s[i].broken_by));
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "correct", c, "zero_gradient", z,
                     "nonfinite_gradient", nf, "broken", br, "deepfool_rho", rho,
                     "certified_radius", cr, "broken_by", bb);
}

// Reads n outcomes of a part into s; false when the part is malformed.
static bool samples_read(const json_t *j, size_t n, size_t neps, rr_robustness_sample *s)
{
    const char *keys[] = {"correct",      "zero_gradient",    "nonfinite_gradient", "broken",
                          "deepfool_rho", "certified_radius", "broken_by"};
    const json_t *a[7];
    for (int k = 0; k < 7; k++) {
        a[k] = json_object_get(j, keys[k]);
        if (!json_is_array(a[k]) || json_array_size(a[k]) != n)
            return false;
    }
    for (size_t i = 0; i < n; i++) {
        rr_robustness_sample *o = &s[i];
        const json_t *bits = json_array_get(a[3], i);
        if (!json_is_integer(json_array_get(a[0], i)) ||
            !json_is_integer(json_array_get(a[1], i)) ||
            !json_is_integer(json_array_get(a[2], i)) ||
            !json_is_integer(json_array_get(a[6], i)) || !json_is_string(bits) ||
            strlen(json_string_value(bits)) != neps)
            return false;
        o->correct = json_integer_value(json_array_get(a[0], i)) != 0;
        o->zero_gradient = json_integer_value(json_array_get(a[1], i)) != 0;
        o->nonfinite_gradient = json_integer_value(json_array_get(a[2], i)) != 0;
        o->broken_by = (int)json_integer_value(json_array_get(a[6], i));
        o->broken = 0;
        for (size_t e = 0; e < neps; e++)
            o->broken |= (uint64_t)(json_string_value(bits)[e] == '1') << e;
        if (!get_num(json_array_get(a[4], i), &o->deepfool_rho) ||
            !get_num(json_array_get(a[5], i), &o->certified_radius))
            return false;
    }
    return true;
}

// ---- run ----

static int run(const config *c, long shards, long shard, const char *out_dir, const char *report)
{
    rr_error err = {0};
    rr_model *m = NULL;
    rr_workspace *ws = NULL;
    rr_dataset ds = {0};
    json_t *cfg = NULL, *doc = NULL;
    rr_robustness_sample *s = NULL;
    double *ra = NULL, *mine = NULL;
    int *bb = NULL, rc = 1;
    char model_sha[65];
    if (!file_sha256(c->model, model_sha))
        return fail("%s: %s", c->model, strerror(errno));
    if (rr_model_load_file(c->model, &m, &err) ||
        rr_fashion_mnist_load(c->data, strcmp(c->split, "train") == 0, c->offset, c->limit, &ds,
                              &err)) {
        fail("%s", err.msg);
        goto done;
    }
    const size_t n = ds.n, D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    if (D != ds.rows * ds.cols) {
        fail("the model takes %zu inputs, the images have %zu", D, ds.rows * ds.cols);
        goto done;
    }
    const size_t N = shards > 0 ? (size_t)shards : 1, I = shards > 0 ? (size_t)shard : 0;
    const size_t lo = shard_bound(c->offset, n, c->block, N, I),
                 hi = shard_bound(c->offset, n, c->block, N, I + 1), B = hi - lo;
    rr_attack_name an;
    rr_attack_name_parse(c->attack, &an);
    rr_robustness_params p = {.norm = strcmp(c->norm, "l2") == 0 ? RR_NORM_L2 : RR_NORM_LINF,
                              .epsilons = c->eps,
                              .n_eps = c->neps,
                              .sample_offset = c->offset + lo,
                              .block = c->block};
    rr_attack_params_init(&p.attack, an);
    p.attack.seed = c->seed;
    p.attack.steps = c->steps;
    p.attack.restarts = c->restarts;
    p.attack.queries = c->queries;
    p.attack.step_size = c->step_size;
    if (c->suite)
        p.attack.suite = strcmp(c->suite, "fast") == 0 ? RR_SUITE_FAST : RR_SUITE_STANDARD;
    s = malloc((B ? B : 1) * sizeof *s);
    ra = malloc(c->neps * sizeof *ra);
    mine = malloc((B ? B : 1) * sizeof *mine);
    bb = malloc((B ? B : 1) * sizeof *bb);
    if (!s || !ra || !mine || !bb) {
        fail("out of memory");
        goto done;
    }
    rr_robustness_result r = {
        .robust_accuracy = ra, .per_sample_min_epsilon = mine, .broken_by = bb, .samples = s};
    rr_workspace_params wp = {.max_batch = c->batch, .rows_per_sample = K > 128 ? K : 128};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rr_workspace_new(m, &wp, &ws, &err) ||
        rr_robustness(m, ws, ds.images + lo * D, ds.labels + lo, B, &p, &r, &err)) {
        fail("%s%s%s", err.field[0] ? err.field : "", err.field[0] ? ": " : "", err.msg);
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    cfg = config_json(c, model_sha, n);
    if (shards <= 0) {
        // The whole range: the summary rr_robustness computed is the report.
        doc = report_json(cfg, &r, n, c->neps, an == RR_ATTACK_AUTOATTACK);
        rc = write_json(doc, report);
        fprintf(stderr, "relureg-eval: %zu samples in %.2f s\n", n, secs);
        goto done;
    }
    sha256 h;
    sha256_init(&h);
    sha256_update(&h, ds.images + lo * D, B * D * sizeof(float));
    sha256_update(&h, ds.labels + lo, B * sizeof(int64_t));
    char slice_sha[65];
    sha256_final_hex(&h, slice_sha);
    doc = json_pack("{s:s, s:O, s:I, s:I, s:[I, I], s:s, s:s, s:f, s:I, s:I, s:o}", "format",
                    PART_FORMAT, "config", cfg, "shard", (json_int_t)I, "shards", (json_int_t)N,
                    "rows", (json_int_t)lo, (json_int_t)hi, "slice_sha256", slice_sha, "model",
                    c->model, "seconds", secs, "gradient_calls", (json_int_t)r.gradient_calls,
                    "forward_calls", (json_int_t)r.forward_calls, "samples",
                    samples_json(s, B, c->neps));
    char path[4096];
    snprintf(path, sizeof path, "%s/part-%zu-of-%zu.json", out_dir, I, N);
    rc = write_json(doc, path);
    if (rc == 0)
        fprintf(stderr, "relureg-eval: shard %zu of %zu, rows [%zu, %zu) in %.2f s: %s\n", I, N, lo,
                hi, secs, path);
done:
    json_decref(doc);
    json_decref(cfg);
    free(s);
    free(ra);
    free(mine);
    free(bb);
    rr_workspace_free(ws);
    rr_dataset_clear(&ds);
    rr_model_release(m);
    return rc;
}

// ---- merge ----

static int merge(const char *dir, const char *report)
{
    DIR *d = opendir(dir);
    if (!d)
        return fail("%s: %s", dir, strerror(errno));
    // The parts present: part-I-of-N.json, one N.
    long N = -1;
    size_t found = 0;
    json_t **parts = NULL;
    int rc = 1;
    struct dirent *de;
    while ((de = readdir(d))) {
        long i, n;
        int end = 0;
        if (sscanf(de->d_name, "part-%ld-of-%ld.json%n", &i, &n, &end) != 2 || de->d_name[end] != 0)
            continue;
        if (n < 1 || n > 1000000 || i < 0 || i >= n) {
            closedir(d);
            return fail("%s/%s: not a part name", dir, de->d_name);
        }
        if (N < 0) {
            N = n;
            parts = calloc((size_t)N, sizeof *parts);
            if (!parts) {
                closedir(d);
                return fail("out of memory");
            }
        } else if (n != N) {
            closedir(d);
            fail("%s holds parts of %ld and of %ld shards", dir, N, n);
            goto done;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        if (!j) {
            closedir(d);
            fail("%s: %s", path, je.text);
            goto done;
        }
        json_decref(parts[i]);
        parts[i] = j;
        found++;
    }
    closedir(d);
    if (N < 0)
        return fail("%s holds no part-I-of-N.json", dir);
    for (long i = 0; i < N; i++)
        if (!parts[i]) {
            fail("%s: part-%ld-of-%ld.json is missing (%zu of %ld parts present)", dir, i, N, found,
                 N);
            goto done;
        }
    json_t *cfg = json_object_get(parts[0], "config");
    const json_t *eps = json_object_get(cfg, "epsilons");
    const json_t *data = json_object_get(cfg, "data");
    const size_t n = (size_t)json_integer_value(json_object_get(data, "samples")),
                 off = (size_t)json_integer_value(json_object_get(data, "offset")),
                 G = (size_t)json_integer_value(json_object_get(cfg, "block")),
                 neps = json_array_size(eps);
    if (!json_is_object(cfg) || neps < 1 || neps > 64 || G < 1) {
        fail("part-0-of-%ld.json: no config", N);
        goto done;
    }
    rr_robustness_sample *s = malloc((n ? n : 1) * sizeof *s);
    double *ra = malloc(neps * sizeof *ra), *mine = malloc((n ? n : 1) * sizeof *mine), e[64];
    int *bb = malloc((n ? n : 1) * sizeof *bb);
    for (size_t k = 0; k < neps; k++)
        e[k] = json_number_value(json_array_get(eps, k));
    size_t at = 0;
    long gc = 0, fc = 0;
    for (long i = 0; i < N && s && ra && mine && bb; i++) {
        const json_t *p = parts[i];
        const json_t *rows = json_object_get(p, "rows");
        const size_t lo = (size_t)json_integer_value(json_array_get(rows, 0)),
                     hi = (size_t)json_integer_value(json_array_get(rows, 1));
        const char *fmt = json_string_value(json_object_get(p, "format"));
        if (!fmt || strcmp(fmt, PART_FORMAT) != 0 ||
            json_integer_value(json_object_get(p, "shard")) != i) {
            fail("part-%ld-of-%ld.json: not a part of format %s for shard %ld", i, N, PART_FORMAT,
                 i);
            goto bad;
        }
        if (!json_equal(json_object_get(p, "config"), cfg)) {
            fail("part-%ld-of-%ld.json: its config differs from part-0-of-%ld.json's (another "
                 "model, data range, attack or epsilons)",
                 i, N, N);
            goto bad;
        }
        const size_t want = shard_bound(off, n, G, (size_t)N, (size_t)i + 1);
        if (lo != at || hi != want) {
            fail("part-%ld-of-%ld.json: rows [%zu, %zu), expected [%zu, %zu)", i, N, lo, hi, at,
                 want);
            goto bad;
        }
        if (!samples_read(json_object_get(p, "samples"), hi - lo, neps, s + lo)) {
            fail("part-%ld-of-%ld.json: malformed per-sample results", i, N);
            goto bad;
        }
        gc += (long)json_integer_value(json_object_get(p, "gradient_calls"));
        fc += (long)json_integer_value(json_object_get(p, "forward_calls"));
        at = hi;
    }
    if (!s || !ra || !mine || !bb) {
        fail("out of memory");
        goto bad;
    }
    rr_error err = {0};
    rr_robustness_result r = {.robust_accuracy = ra,
                              .per_sample_min_epsilon = mine,
                              .broken_by = bb,
                              .gradient_calls = gc,
                              .forward_calls = fc};
    if (rr_robustness_summarize(s, n, e, neps, &r, &err)) {
        fail("%s", err.msg);
        goto bad;
    }
    rr_attack_name an;
    const char *aname =
        json_string_value(json_object_get(json_object_get(cfg, "attack"), "attack"));
    const bool aa = aname && rr_attack_name_parse(aname, &an) && an == RR_ATTACK_AUTOATTACK;
    json_t *doc = report_json(cfg, &r, n, neps, aa);
    rc = write_json(doc, report);
    json_decref(doc);
    if (rc == 0)
        fprintf(stderr, "relureg-eval: merged %ld parts, %zu samples\n", N, n);
bad:
    free(s);
    free(ra);
    free(mine);
    free(bb);
done:
    for (long i = 0; i < N; i++)
        json_decref(parts[i]);
    free(parts);
    return rc;
}

// ---- main ----

enum {
    O_MODEL = 256,
    O_DATA,
    O_SPLIT,
    O_OFFSET,
    O_LIMIT,
    O_ATTACK,
    O_SUITE,
    O_STEPS,
    O_STEP_SIZE,
    O_RESTARTS,
    O_QUERIES,
    O_SEED,
    O_NORM,
    O_EPSILONS,
    O_SHARDS,
    O_SHARD,
    O_OUT,
    O_REPORT,
    O_THREADS,
    O_BATCH,
    O_BLOCK,
    O_HELP
};

static bool parse_count(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    *v = strtol(s, &end, 10);
    return *s && !*end && !errno && *v >= lo && *v <= hi;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 2 || (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "merge") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    const bool is_merge = strcmp(argv[1], "merge") == 0;
    config c = {.data = DEFAULT_DATA,
                .split = "test",
                .attack = "pgd",
                .norm = "linf",
                .step_size = NAN,
                .batch = 256,
                .block = RR_ROBUSTNESS_BLOCK,
                .eps = {0.05, 0.1, 0.2},
                .neps = 3};
    long shards = 0, shard = -1;
    const char *out_dir = NULL, *report = NULL;
    static const struct option longs[] = {{"model", 1, 0, O_MODEL},
                                          {"data", 1, 0, O_DATA},
                                          {"split", 1, 0, O_SPLIT},
                                          {"offset", 1, 0, O_OFFSET},
                                          {"limit", 1, 0, O_LIMIT},
                                          {"attack", 1, 0, O_ATTACK},
                                          {"suite", 1, 0, O_SUITE},
                                          {"steps", 1, 0, O_STEPS},
                                          {"step-size", 1, 0, O_STEP_SIZE},
                                          {"restarts", 1, 0, O_RESTARTS},
                                          {"queries", 1, 0, O_QUERIES},
                                          {"seed", 1, 0, O_SEED},
                                          {"norm", 1, 0, O_NORM},
                                          {"epsilons", 1, 0, O_EPSILONS},
                                          {"shards", 1, 0, O_SHARDS},
                                          {"shard", 1, 0, O_SHARD},
                                          {"out", 1, 0, O_OUT},
                                          {"report", 1, 0, O_REPORT},
                                          {"threads", 1, 0, O_THREADS},
                                          {"batch", 1, 0, O_BATCH},
                                          {"block", 1, 0, O_BLOCK},
                                          {"help", 0, 0, O_HELP},
                                          {0, 0, 0, 0}};
    optind = 2;
    int o;
    long v;
    rr_attack_name an;
    while ((o = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (o) {
            case O_MODEL:
                c.model = optarg;
                break;
            case O_DATA:
                c.data = optarg;
                break;
            case O_SPLIT:
                if (strcmp(optarg, "test") != 0 && strcmp(optarg, "train") != 0)
                    return bad_usage("--split must be test or train");
                c.split = optarg;
                break;
            case O_OFFSET:
            case O_LIMIT:
                if (!parse_count(optarg, 0, 1000000000, &v))
                    return bad_usage("--%s must be an integer >= 0",
                                     o == O_OFFSET ? "offset" : "limit");
                *(o == O_OFFSET ? &c.offset : &c.limit) = (size_t)v;
                break;
            case O_ATTACK:
                if (!rr_attack_name_parse(optarg, &an))
                    return bad_usage("--attack: unknown attack %s", optarg);
                c.attack = optarg;
                break;
            case O_SUITE:
                if (strcmp(optarg, "standard") != 0 && strcmp(optarg, "fast") != 0)
                    return bad_usage("--suite must be standard or fast");
                c.suite = optarg;
                break;
            case O_STEPS:
            case O_RESTARTS:
            case O_QUERIES:
                if (!parse_count(optarg, 1, 1000000, &v))
                    return bad_usage("--%s must be an integer >= 1", longs[o - O_MODEL].name);
                *(o == O_STEPS ? &c.steps : o == O_RESTARTS ? &c.restarts : &c.queries) = (int)v;
                break;
            case O_STEP_SIZE: {
                char *end;
                c.step_size = strtod(optarg, &end);
                if (*end || !(c.step_size > 0) || !isfinite(c.step_size))
                    return bad_usage("--step-size must be a number > 0");
                break;
            }
            case O_SEED: {
                char *end;
                errno = 0;
                c.seed = strtoull(optarg, &end, 10);
                if (!*optarg || *end || errno || *optarg == '-')
                    return bad_usage("--seed must be an integer >= 0");
                break;
            }
            case O_NORM:
                if (strcmp(optarg, "linf") != 0 && strcmp(optarg, "l2") != 0)
                    return bad_usage("--norm must be linf or l2");
                c.norm = optarg;
                break;
            case O_EPSILONS:
                if (!parse_epsilons(optarg, &c))
                    return bad_usage("--epsilons must be 1 to 64 comma-separated numbers >= 0");
                break;
            case O_SHARDS:
                if (!parse_count(optarg, 1, 1000000, &shards))
                    return bad_usage("--shards must be an integer >= 1");
                break;
            case O_SHARD:
                if (!parse_count(optarg, 0, 1000000, &shard))
                    return bad_usage("--shard must be an integer >= 0");
                break;
            case O_OUT:
                out_dir = optarg;
                break;
            case O_REPORT:
                report = optarg;
                break;
            case O_THREADS:
                if (!parse_count(optarg, 1, 4096, &v))
                    return bad_usage("--threads must be an integer >= 1");
                c.threads = (int)v;
                break;
            case O_BATCH:
                if (!parse_count(optarg, 1, 1 << 20, &v))
                    return bad_usage("--batch must be an integer >= 1");
                c.batch = (size_t)v;
                break;
            case O_BLOCK:
                if (!parse_count(optarg, 1, 1 << 20, &v))
                    return bad_usage("--block must be an integer >= 1");
                c.block = (size_t)v;
                break;
            case O_HELP:
                fputs(usage, stdout);
                return 0;
            default:
                fputs(usage, stderr);
                return 2;
        }
    }
    if (is_merge) {
        if (optind != argc - 1)
            return bad_usage("merge takes one directory (relureg-eval merge DIR [--report FILE])");
        return merge(argv[optind], report);
    }
    if (optind != argc)
        return bad_usage("unexpected argument %s", argv[optind]);
    if (!c.model)
        return bad_usage("--model is required");
    if (shards > 0) {
        if (shard < 0 && shards == 1)
            shard = 0;
        if (shard < 0) {
            const char *ix = getenv("JOB_COMPLETION_INDEX");
            if (!ix || !parse_count(ix, 0, 1000000, &shard))
                return bad_usage("--shards needs --shard I or JOB_COMPLETION_INDEX");
        }
        if (shard >= shards)
            return bad_usage("shard %ld is not below --shards %ld", shard, shards);
        if (!out_dir)
            return bad_usage("--shards needs --out DIR");
        if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
            return fail("%s: %s", out_dir, strerror(errno));
    } else if (shard >= 0 || out_dir) {
        return bad_usage("--shard and --out go with --shards N");
    }
    if (c.threads > 0)
        rr_set_num_threads(c.threads);
    return run(&c, shards, shard, out_dir, report);
}
