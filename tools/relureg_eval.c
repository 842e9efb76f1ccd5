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
#include <stddef.h>
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

// "relureg-eval: MESSAGE" on stderr; returns rc.
static int vreport(int rc, const char *fmt, va_list ap)
{
    fputs("relureg-eval: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    return rc;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int rc = vreport(1, fmt, ap);
    va_end(ap);
    return rc;
}

// A usage error: exit status 2 (the Indexed Job does not retry it, k8s/eval/job.yaml).
static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int rc = vreport(2, fmt, ap);
    va_end(ap);
    return rc;
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

// The report's parameters from the config: the attack and its options, sample_offset the
// global index of the first row. Returns the attack.
static rr_attack_name report_params(const config *c, size_t sample_offset, rr_robustness_params *p)
{
    rr_attack_name an = RR_ATTACK_PGD;
    rr_attack_name_parse(c->attack, &an);
    *p = (rr_robustness_params){.norm = strcmp(c->norm, "l2") == 0 ? RR_NORM_L2 : RR_NORM_LINF,
                                .epsilons = c->eps,
                                .n_eps = c->neps,
                                .sample_offset = sample_offset,
                                .block = c->block};
    rr_attack_params_init(&p->attack, an);
    p->attack.seed = c->seed;
    p->attack.steps = c->steps;
    p->attack.restarts = c->restarts;
    p->attack.queries = c->queries;
    p->attack.step_size = c->step_size;
    if (c->suite)
        p->attack.suite = strcmp(c->suite, "fast") == 0 ? RR_SUITE_FAST : RR_SUITE_STANDARD;
    return an;
}

// Shard I of N (rows [lo, hi) of ds) as a part file's document: the config, the rows and a
// sha256 of their images and labels, timing and call counts, and the per-sample outcomes.
static json_t *part_json(const config *c, json_t *cfg, const rr_dataset *ds, size_t lo, size_t hi,
                         size_t I, size_t N, double secs, const rr_robustness_result *r)
{
    const size_t D = ds->rows * ds->cols, B = hi - lo;
    sha256 h;
    sha256_init(&h);
    sha256_update(&h, ds->images + lo * D, B * D * sizeof(float));
    sha256_update(&h, ds->labels + lo, B * sizeof(int64_t));
    char slice_sha[65];
    sha256_final_hex(&h, slice_sha);
    return json_pack("{s:s, s:O, s:I, s:I, s:[I, I], s:s, s:s, s:f, s:I, s:I, s:o}", "format",
                     PART_FORMAT, "config", cfg, "shard", (json_int_t)I, "shards", (json_int_t)N,
                     "rows", (json_int_t)lo, (json_int_t)hi, "slice_sha256", slice_sha, "model",
                     c->model, "seconds", secs, "gradient_calls", (json_int_t)r->gradient_calls,
                     "forward_calls", (json_int_t)r->forward_calls, "samples",
                     samples_json(r->samples, B, c->neps));
}

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
    rr_robustness_params p;
    const rr_attack_name an = report_params(c, c->offset + lo, &p);
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
    doc = part_json(c, cfg, &ds, lo, hi, I, N, secs, &r);
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

// Loads dir's part-I-of-N.json files (one N, all of them present) into (*parts)[I]; returns
// 0, else 1 after a message (*parts then holds what was read, to release).
static int read_parts(const char *dir, json_t ***parts, long *N)
{
    *parts = NULL;
    *N = -1;
    DIR *d = opendir(dir);
    if (!d)
        return fail("%s: %s", dir, strerror(errno));
    size_t found = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        long i, n;
        int end = 0;
        if (sscanf(de->d_name, "part-%ld-of-%ld.json%n", &i, &n, &end) != 2 || de->d_name[end] != 0)
            continue;
        if (n < 1 || n > 1000000 || i < 0 || i >= n) {
            rc = fail("%s/%s: not a part name", dir, de->d_name);
        } else if (*N < 0 && (*parts = calloc((size_t)n, sizeof **parts)) == NULL) {
            rc = fail("out of memory");
        } else if (*N >= 0 && n != *N) {
            rc = fail("%s holds parts of %ld and of %ld shards", dir, *N, n);
        } else {
            *N = n;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            json_error_t je;
            json_t *j = json_load_file(path, 0, &je);
            if (!j) {
                rc = fail("%s: %s", path, je.text);
            } else {
                json_decref((*parts)[i]);
                (*parts)[i] = j;
                found++;
            }
        }
    }
    closedir(d);
    if (rc != 0)
        return rc;
    if (*N < 0)
        return fail("%s holds no part-I-of-N.json", dir);
    for (long i = 0; i < *N; i++)
        if (!(*parts)[i])
            return fail("%s: part-%ld-of-%ld.json is missing (%zu of %ld parts present)", dir, i,
                        *N, found, *N);
    return 0;
}

// The per-sample outcomes of the N parts, checked against part 0's config and in row order,
// into s [n]; their call counts summed into *gc and *fc. Returns 0, else 1 after a message.
static int gather_parts(json_t **parts, long N, const json_t *cfg, size_t n, size_t off, size_t G,
                        size_t neps, rr_robustness_sample *s, long *gc, long *fc)
{
    size_t at = 0;
    *gc = *fc = 0;
    for (long i = 0; i < N; i++) {
        const json_t *p = parts[i];
        const json_t *rows = json_object_get(p, "rows");
        const size_t lo = (size_t)json_integer_value(json_array_get(rows, 0)),
                     hi = (size_t)json_integer_value(json_array_get(rows, 1));
        const char *fmt = json_string_value(json_object_get(p, "format"));
        if (!fmt || strcmp(fmt, PART_FORMAT) != 0 ||
            json_integer_value(json_object_get(p, "shard")) != i)
            return fail("part-%ld-of-%ld.json: not a part of format %s for shard %ld", i, N,
                        PART_FORMAT, i);
        if (!json_equal(json_object_get(p, "config"), cfg))
            return fail("part-%ld-of-%ld.json: its config differs from part-0-of-%ld.json's "
                        "(another model, data range, attack or epsilons)",
                        i, N, N);
        const size_t want = shard_bound(off, n, G, (size_t)N, (size_t)i + 1);
        if (lo != at || hi != want)
            return fail("part-%ld-of-%ld.json: rows [%zu, %zu), expected [%zu, %zu)", i, N, lo, hi,
                        at, want);
        if (!samples_read(json_object_get(p, "samples"), hi - lo, neps, s + lo))
            return fail("part-%ld-of-%ld.json: malformed per-sample results", i, N);
        *gc += (long)json_integer_value(json_object_get(p, "gradient_calls"));
        *fc += (long)json_integer_value(json_object_get(p, "forward_calls"));
        at = hi;
    }
    return 0;
}

static int merge(const char *dir, const char *report)
{
    json_t **parts = NULL;
    long N = -1;
    int rc = read_parts(dir, &parts, &N);
    json_t *cfg = rc == 0 ? json_object_get(parts[0], "config") : NULL;
    const json_t *eps = json_object_get(cfg, "epsilons");
    const json_t *data = json_object_get(cfg, "data");
    const size_t n = (size_t)json_integer_value(json_object_get(data, "samples")),
                 off = (size_t)json_integer_value(json_object_get(data, "offset")),
                 G = (size_t)json_integer_value(json_object_get(cfg, "block")),
                 neps = json_array_size(eps);
    rr_robustness_sample *s = NULL;
    double *ra = NULL, *mine = NULL, e[64];
    int *bb = NULL;
    if (rc != 0)
        goto done;
    rc = 1;
    if (!json_is_object(cfg) || neps < 1 || neps > 64 || G < 1) {
        fail("part-0-of-%ld.json: no config", N);
        goto done;
    }
    s = malloc((n ? n : 1) * sizeof *s);
    ra = malloc(neps * sizeof *ra);
    mine = malloc((n ? n : 1) * sizeof *mine);
    bb = malloc((n ? n : 1) * sizeof *bb);
    if (!s || !ra || !mine || !bb) {
        fail("out of memory");
        goto done;
    }
    for (size_t k = 0; k < neps; k++)
        e[k] = json_number_value(json_array_get(eps, k));
    long gc, fc;
    if (gather_parts(parts, N, cfg, n, off, G, neps, s, &gc, &fc) != 0)
        goto done;
    rr_error err = {0};
    rr_robustness_result r = {.robust_accuracy = ra,
                              .per_sample_min_epsilon = mine,
                              .broken_by = bb,
                              .gradient_calls = gc,
                              .forward_calls = fc};
    if (rr_robustness_summarize(s, n, e, neps, &r, &err)) {
        fail("%s", err.msg);
        goto done;
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
done:
    free(s);
    free(ra);
    free(mine);
    free(bb);
    for (long i = 0; i < N; i++)
        json_decref(parts[i]);
    free(parts);
    return rc;
}

// ---- main ----

// The command line: the evaluation's config, and where its shard and outputs go.
typedef struct args {
    config c;
    long offset, limit, steps, restarts, queries, threads, batch, block, shards, shard;
    const char *out_dir, *report;
} args;

typedef enum arg_kind {
    A_STR,    // stored as is
    A_CHOICE, // one of the words of `choices`
    A_COUNT,  // an integer in [lo, hi] (long)
    A_POS,    // a finite number > 0 (double)
    A_U64,    // an integer >= 0 (uint64_t)
    A_ATTACK, // an attack name of librelureg
    A_EPS,    // 1 to 64 comma-separated numbers >= 0
} arg_kind;

#define F(field) offsetof(args, field)
static const struct arg_spec {
    const char *name;
    arg_kind kind;
    size_t off;
    long lo, hi;
    const char *choices;
} ARGS[] = {
    {"model", A_STR, F(c.model), 0, 0, NULL},
    {"data", A_STR, F(c.data), 0, 0, NULL},
    {"split", A_CHOICE, F(c.split), 0, 0, "test train"},
    {"offset", A_COUNT, F(offset), 0, 1000000000, NULL},
    {"limit", A_COUNT, F(limit), 0, 1000000000, NULL},
    {"attack", A_ATTACK, F(c.attack), 0, 0, NULL},
    {"suite", A_CHOICE, F(c.suite), 0, 0, "standard fast"},
    {"steps", A_COUNT, F(steps), 1, 1000000, NULL},
    {"step-size", A_POS, F(c.step_size), 0, 0, NULL},
    {"restarts", A_COUNT, F(restarts), 1, 1000000, NULL},
    {"queries", A_COUNT, F(queries), 1, 1000000, NULL},
    {"seed", A_U64, F(c.seed), 0, 0, NULL},
    {"norm", A_CHOICE, F(c.norm), 0, 0, "linf l2"},
    {"epsilons", A_EPS, F(c), 0, 0, NULL},
    {"shards", A_COUNT, F(shards), 1, 1000000, NULL},
    {"shard", A_COUNT, F(shard), 0, 1000000, NULL},
    {"out", A_STR, F(out_dir), 0, 0, NULL},
    {"report", A_STR, F(report), 0, 0, NULL},
    {"threads", A_COUNT, F(threads), 1, 4096, NULL},
    {"batch", A_COUNT, F(batch), 1, 1 << 20, NULL},
    {"block", A_COUNT, F(block), 1, 1 << 20, NULL},
};
#undef F
#define N_ARGS   (sizeof ARGS / sizeof ARGS[0])
#define OPT_BASE 256 // getopt_long's value for row i of ARGS: OPT_BASE + i

static bool parse_count(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    *v = strtol(s, &end, 10);
    return *s && !*end && !errno && *v >= lo && *v <= hi;
}

// Whether word is one of the space-separated words of list.
static bool is_word_in(const char *word, const char *list)
{
    const size_t n = strlen(word);
    for (const char *p = list; *p;) {
        const size_t m = strcspn(p, " ");
        if (m == n && strncmp(p, word, n) == 0)
            return true;
        p += m + (p[m] == ' ');
    }
    return false;
}

// Stores v as option row r asks; returns -1, else the exit status after a message.
static int set_arg(args *a, const struct arg_spec *r, const char *v)
{
    void *field = (char *)a + r->off;
    char *end;
    switch (r->kind) {
        case A_STR:
            *(const char **)field = v;
            return -1;
        case A_CHOICE: {
            if (is_word_in(v, r->choices)) {
                *(const char **)field = v;
                return -1;
            }
            const size_t first = strcspn(r->choices, " ");
            return bad_usage("--%s must be %.*s or %s", r->name, (int)first, r->choices,
                             r->choices + first + 1);
        }
        case A_COUNT:
            if (parse_count(v, r->lo, r->hi, (long *)field))
                return -1;
            return bad_usage("--%s must be an integer >= %ld", r->name, r->lo);
        case A_POS:
            *(double *)field = strtod(v, &end);
            if (*end || !(*(double *)field > 0) || !isfinite(*(double *)field))
                return bad_usage("--%s must be a number > 0", r->name);
            return -1;
        case A_U64:
            errno = 0;
            *(uint64_t *)field = strtoull(v, &end, 10);
            if (!*v || *end || errno || *v == '-')
                return bad_usage("--%s must be an integer >= 0", r->name);
            return -1;
        case A_ATTACK: {
            rr_attack_name an;
            if (!rr_attack_name_parse(v, &an))
                return bad_usage("--attack: unknown attack %s", v);
            *(const char **)field = v;
            return -1;
        }
        case A_EPS:
            if (!parse_epsilons(v, &a->c))
                return bad_usage("--epsilons must be 1 to 64 comma-separated numbers >= 0");
            return -1;
    }
    return -1;
}

// Fills *a from argv[2..]; returns -1 to go on, else the exit status.
static int parse_args(int argc, char **argv, args *a)
{
    *a = (args){.c = {.data = DEFAULT_DATA,
                      .split = "test",
                      .attack = "pgd",
                      .norm = "linf",
                      .step_size = NAN,
                      .eps = {0.05, 0.1, 0.2},
                      .neps = 3},
                .batch = 256,
                .block = RR_ROBUSTNESS_BLOCK,
                .shard = -1};
    struct option longs[N_ARGS + 2];
    for (size_t i = 0; i < N_ARGS; i++)
        longs[i] = (struct option){ARGS[i].name, 1, NULL, OPT_BASE + (int)i};
    longs[N_ARGS] = (struct option){"help", 0, NULL, OPT_BASE + (int)N_ARGS};
    longs[N_ARGS + 1] = (struct option){0, 0, 0, 0};
    optind = 2;
    int o, rc;
    while ((o = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (o == OPT_BASE + (int)N_ARGS) {
            fputs(usage, stdout);
            return 0;
        }
        if (o < OPT_BASE || o > OPT_BASE + (int)N_ARGS) {
            fputs(usage, stderr);
            return 2;
        }
        if ((rc = set_arg(a, &ARGS[o - OPT_BASE], optarg)) >= 0)
            return rc;
    }
    config *c = &a->c;
    c->offset = (size_t)a->offset, c->limit = (size_t)a->limit;
    c->steps = (int)a->steps, c->restarts = (int)a->restarts, c->queries = (int)a->queries;
    c->threads = (int)a->threads, c->batch = (size_t)a->batch, c->block = (size_t)a->block;
    return -1;
}

// The shard of a run with --shards: --shard or JOB_COMPLETION_INDEX, below --shards, and its
// output directory; returns -1 to go on, else the exit status.
static int check_shard(args *a)
{
    if (a->shards <= 0)
        return a->shard >= 0 || a->out_dir ? bad_usage("--shard and --out go with --shards N") : -1;
    if (a->shard < 0 && a->shards == 1)
        a->shard = 0;
    if (a->shard < 0) {
        const char *ix = getenv("JOB_COMPLETION_INDEX");
        if (!ix || !parse_count(ix, 0, 1000000, &a->shard))
            return bad_usage("--shards needs --shard I or JOB_COMPLETION_INDEX");
    }
    if (a->shard >= a->shards)
        return bad_usage("shard %ld is not below --shards %ld", a->shard, a->shards);
    if (!a->out_dir)
        return bad_usage("--shards needs --out DIR");
    if (mkdir(a->out_dir, 0777) != 0 && errno != EEXIST)
        return fail("%s: %s", a->out_dir, strerror(errno));
    return -1;
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
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (strcmp(argv[1], "merge") == 0) {
        if (optind != argc - 1)
            return bad_usage("merge takes one directory (relureg-eval merge DIR [--report FILE])");
        return merge(argv[optind], a.report);
    }
    if (optind != argc)
        return bad_usage("unexpected argument %s", argv[optind]);
    if (!a.c.model)
        return bad_usage("--model is required");
    if ((rc = check_shard(&a)) >= 0)
        return rc;
    if (a.c.threads > 0)
        rr_set_num_threads(a.c.threads);
    return run(&a.c, a.shards, a.shard, a.out_dir, a.report);
}
