// relureg-train: trains a ReLU net on Fashion-MNIST (Debian's dataset-fashion-mnist) with
// cross-entropy + lambda * any regularizer of librelureg, shows progress, and writes a model
// file whose __metadata__["relureg.training"] records dataset, architecture, regularizer,
// lambda, epochs, seed and clean test accuracy. With --evaluate it prints, as JSON, a model's
// test accuracy and the mean values of the regularizers on test images; with --robustness, the
// robustness columns of docs/results.md on the first N test images (--test-limit, 1000).
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relureg.h"

// Where Debian's dataset-fashion-mnist puts the files.
#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static const char *usage =
    "usage: relureg-train --out FILE [options]\n"
    "       relureg-train --evaluate MODEL [--test-limit N]\n"
    "       relureg-train --robustness MODEL [--test-limit N (1000)]\n"
    "  --arch mlp|cnn|small      architecture preset (default mlp); --arch-file FILE for JSON\n"
    "  --regularizer NAME        none (default), input_gradient, jacobian, cross_lipschitz,\n"
    "                            curvature, weight_decay\n"
    "  --lambda L                weight of the regularizer (default 0)\n"
    "  --method M --h H --norm N --unsquared --projections N   regularizer options\n"
    "  --epochs E (5) --batch B (128) --lr LR (1e-3) --optimizer adam|sgd --momentum MU (0.9)\n"
    "  --seed S (0) --train-limit N --test-limit N --threads N --quiet\n"
    "  --data DIR                Fashion-MNIST's gzip IDX files (default " DEFAULT_DATA ")\n";

// ---- architecture presets (input [1, 28, 28] in [0, 1], 10 classes) ----
#define HEAD                                                                                       \
    "{\"format\": \"relureg/1\", \"input_shape\": [1, 28, 28], \"num_classes\": 10, "              \
    "\"input_range\": [0.0, 1.0], \"layers\": ["

static const struct {
    const char *name, *arch;
} presets[] = {
    {"mlp",
     HEAD "{\"type\": \"flatten\"},"
          "{\"type\": \"linear\", \"name\": \"1\", \"in_features\": 784, \"out_features\": 256},"
          "{\"type\": \"relu\"},"
          "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 256, \"out_features\": 256},"
          "{\"type\": \"relu\"},"
          "{\"type\": \"linear\", \"name\": \"5\", \"in_features\": 256, \"out_features\": 10}]}"},
    {"cnn",
     HEAD "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 1, \"out_channels\": 16, "
          "\"kernel_size\": [3, 3], \"padding\": [1, 1]},"
          "{\"type\": \"relu\"},"
          "{\"type\": \"maxpool2d\", \"kernel_size\": [2, 2]},"
          "{\"type\": \"conv2d\", \"name\": \"3\", \"in_channels\": 16, \"out_channels\": 32, "
          "\"kernel_size\": [3, 3], \"padding\": [1, 1]},"
          "{\"type\": \"relu\"},"
          "{\"type\": \"maxpool2d\", \"kernel_size\": [2, 2]},"
          "{\"type\": \"flatten\"},"
          "{\"type\": \"linear\", \"name\": \"7\", \"in_features\": 1568, \"out_features\": 10}]}"},
    {"small",
     HEAD "{\"type\": \"flatten\"},"
          "{\"type\": \"linear\", \"name\": \"1\", \"in_features\": 784, \"out_features\": 64},"
          "{\"type\": \"relu\"},"
          "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 64, \"out_features\": 10}]}"},
};

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

// The architecture with class names added.
static char *with_class_names(const char *arch)
{
    json_t *a = json_loads(arch, 0, NULL);
    if (!a)
        return NULL;
    json_t *names = json_array();
    for (int k = 0; k < 10; k++)
        json_array_append_new(names, json_string(rr_fashion_mnist_class_name(k)));
    if (json_object_get(a, "class_names") == NULL)
        json_object_set_new(a, "class_names", names);
    else
        json_decref(names);
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static int parse_reg(const char *name, rr_reg_spec *s)
{
    if (strcmp(name, "input_gradient") == 0)
        s->name = RR_REG_INPUT_GRADIENT;
    else if (strcmp(name, "jacobian") == 0)
        s->name = RR_REG_JACOBIAN;
    else if (strcmp(name, "cross_lipschitz") == 0)
        s->name = RR_REG_CROSS_LIPSCHITZ;
    else if (strcmp(name, "curvature") == 0)
        s->name = RR_REG_CURVATURE;
    else if (strcmp(name, "weight_decay") == 0)
        s->name = RR_REG_WEIGHT_DECAY;
    else if (strcmp(name, "cross_entropy") == 0)
        s->name = RR_REG_CROSS_ENTROPY;
    else
        return -1;
    return 0;
}

static const char *method_name(rr_reg_method m)
{
    return m == RR_REG_HESSIAN ? "hessian" : m == RR_REG_TRACE ? "trace" : "finite_difference";
}

// The regularizer as the REST API names it, for the training record.
static json_t *reg_json(const char *name, const rr_reg_spec *s)
{
    json_t *o = json_pack("{s:s}", "name", name);
    if (s->name == RR_REG_CURVATURE) {
        json_object_set_new(o, "method", json_string(method_name(s->method)));
        json_object_set_new(o, "h", json_real(s->h > 0 ? s->h : RR_REG_DEFAULT_H));
        json_object_set_new(o, "squared", json_boolean(!s->unsquared));
    }
    if (s->name == RR_REG_INPUT_GRADIENT)
        json_object_set_new(o, "norm", json_string(s->norm == RR_REG_NORM_L1 ? "l1" : "l2"));
    if (s->name == RR_REG_JACOBIAN && s->estimator == RR_REG_PROJECTION) {
        json_object_set_new(o, "estimator", json_string("projection"));
        json_object_set_new(o, "projections", json_integer(s->projections ? s->projections : 1));
    }
    return o;
}

typedef struct progress_ctx {
    bool quiet;
    int last_epoch;
} progress_ctx;

static void show(void *ctx, const rr_train_progress *p)
{
    progress_ctx *c = ctx;
    if (c->quiet)
        return;
    const int width = 24, fill = (int)(width * p->step / p->steps);
    fprintf(stderr,
            "\repoch %d/%d [%.*s%.*s] %zu/%zu loss %.4f reg %.4g acc %5.1f%% %4.0fs "
            "elapsed, %4.0fs left ",
            p->epoch, p->epochs, fill, "########################", width - fill,
            "........................", p->step, p->steps, p->loss, p->reg, 100 * p->accuracy,
            p->elapsed_s, p->eta_s);
    if (p->step == p->steps)
        fputc('\n', stderr);
    c->last_epoch = p->epoch;
}

static int evaluate(const char *path, size_t test_limit, const char *data)
{
    rr_error err = {0};
    rr_model *m = NULL;
    rr_dataset test = {0};
    if (rr_model_load_file(path, &m, &err) ||
        rr_fashion_mnist_load(data, false, 0, test_limit, &test, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    double acc, loss;
    if (rr_evaluate(m, &test, 0, &acc, &loss, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    // Mean regularizer values on the first 1000 test images (their definitions, math.md).
    const size_t n = test.n < 1000 ? test.n : 1000;
    rr_reg_spec specs[] = {
        {.name = RR_REG_INPUT_GRADIENT},
        {.name = RR_REG_JACOBIAN},
        {.name = RR_REG_CROSS_LIPSCHITZ},
        {.name = RR_REG_CURVATURE},
        {.name = RR_REG_CURVATURE, .method = RR_REG_TRACE},
    };
    const char *keys[] = {"input_gradient", "jacobian", "cross_lipschitz", "curvature_fd",
                          "curvature_trace"};
    rr_reg_result res[5] = {{0}};
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = 256, .rows_per_sample = 10};
    rr_reg_params p = {.regs = specs, .nregs = 5};
    if (rr_workspace_new(m, &wp, &ws, &err) ||
        rr_reg_compute(m, ws, test.images, test.labels, n, &p, res, NULL, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    json_t *out = json_pack("{s:s, s:f, s:f, s:I}", "model", path, "test_accuracy", acc,
                            "test_loss", loss, "test_samples", (json_int_t)test.n);
    json_t *regs = json_object();
    for (int i = 0; i < 5; i++)
        json_object_set_new(regs, keys[i], json_real(res[i].value));
    json_object_set_new(out, "regularizers", regs);
    for (size_t i = 0; i < rr_model_metadata_count(m); i++)
        if (strcmp(rr_model_metadata_key(m, i), "relureg.training") == 0)
            json_object_set_new(out, "training",
                                json_loads(rr_model_metadata_value(m, i), 0, NULL));
    char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
    puts(s);
    free(s);
    json_decref(out);
    rr_workspace_free(ws);
    rr_dataset_clear(&test);
    rr_model_release(m);
    return 0;
}

static json_t *flags_json(const rr_robustness_flags *f)
{
    return json_pack("{s:b, s:f, s:f, s:i, s:b, s:i}", "flagged", f->flagged,
                     "zero_gradient_fraction", f->zero_gradient_fraction,
                     "nonfinite_gradient_fraction", f->nonfinite_gradient_fraction,
                     "black_box_only", f->black_box_only, "non_monotone", f->non_monotone,
                     "certified_broken", f->certified_broken);
}

// AutoAttack (suite standard, math.md defaults, seed 0) at the epsilons of rp: its robust
// accuracy, flags, who broke what and its wall time, as JSON; NULL after a message.
static json_t *autoattack_json(const rr_model *m, rr_workspace *ws, const rr_dataset *test,
                               const rr_robustness_params *rp, double *mine)
{
    const size_t n = test->n;
    struct timespec b0, b1;
    clock_gettime(CLOCK_MONOTONIC, &b0);
    double ra[3];
    int *bb = malloc(n * sizeof(int));
    rr_robustness_params ap = *rp;
    rr_attack_params_init(&ap.attack, RR_ATTACK_AUTOATTACK);
    rr_robustness_result aa = {
        .robust_accuracy = ra, .per_sample_min_epsilon = mine, .broken_by = bb};
    rr_error err = {0};
    if (bb == NULL || rr_robustness(m, ws, test->images, test->labels, n, &ap, &aa, &err)) {
        fprintf(stderr, "relureg-train: %s\n", bb ? err.msg : "out of memory");
        free(bb);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &b1);
    const rr_attack_name *stages;
    const size_t ns = rr_autoattack_stages(RR_SUITE_STANDARD, &stages);
    json_t *by = json_object();
    for (size_t k = 0; k < ns; k++) {
        json_int_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += bb[i] == (int)stages[k];
        json_object_set_new(by, rr_attack_name_string(stages[k]), json_integer(c));
    }
    free(bb);
    return json_pack("{s:[f, f, f], s:o, s:o, s:f}", "robust_accuracy", ra[0], ra[1], ra[2],
                     "flags", flags_json(&aa.flags), "broken_by", by, "seconds",
                     (b1.tv_sec - b0.tv_sec) + (b1.tv_nsec - b0.tv_nsec) * 1e-9);
}

// The mean certified l2 radius about the labels and the fraction of exact certificates.
static int certified_l2(const rr_model *m, rr_workspace *ws, const rr_dataset *test,
                        double *mean_radius, double *exact_fraction)
{
    const size_t n = test->n, D = rr_model_input_size(m);
    double *d = malloc(3 * n * sizeof(double));
    float *adv = malloc(n * D * sizeof(float));
    int64_t *pred = malloc(n * sizeof(int64_t));
    bool *ex = malloc(n);
    rr_certify_params cp = {.norm = RR_NORM_L2, .labels = test->labels};
    rr_certify_result cr = {pred, d, d + n, d + 2 * n, ex, adv, NULL, NULL, NULL, NULL};
    rr_error err = {0};
    int rc = 0;
    if (!d || !adv || !pred || !ex || rr_certify(m, ws, test->images, n, &cp, &cr, &err)) {
        fprintf(stderr, "relureg-train: %s\n", d && adv && pred && ex ? err.msg : "out of memory");
        rc = 1;
    } else {
        double rsum = 0, nexact = 0;
        for (size_t i = 0; i < n; i++) {
            rsum += d[2 * n + i];
            nexact += ex[i];
        }
        *mean_radius = rsum / (double)n;
        *exact_fraction = nexact / (double)n;
    }
    free(d);
    free(adv);
    free(pred);
    free(ex);
    return rc;
}

// C&W L2 (defaults) on the first nc images: among those classified correctly, how many it
// broke and the mean l2 norm of their perturbations.
typedef struct cw_summary {
    size_t correct, broken;
    double l2_sum;
} cw_summary;

static int cw_l2(const rr_model *m, rr_workspace *ws, const rr_dataset *test, size_t nc,
                 cw_summary *out)
{
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    float *adv = malloc(nc * D * sizeof(float)), *l2 = malloc(nc * sizeof(float));
    float *linf = malloc(nc * sizeof(float)), *z = malloc(nc * K * sizeof(float));
    int64_t *pred = malloc(nc * sizeof(int64_t));
    bool *succ = malloc(nc);
    int *it = malloc(nc * sizeof(int));
    rr_attack_params cw;
    rr_attack_params_init(&cw, RR_ATTACK_CW_L2);
    rr_attack_result ar = {adv, succ, l2, linf, pred, it, 0, 0, NULL};
    rr_error err = {0};
    int rc = 0;
    *out = (cw_summary){0};
    if (!adv || !l2 || !linf || !z || !pred || !succ || !it) {
        fputs("relureg-train: out of memory\n", stderr);
        rc = 1;
    } else if (rr_attack(m, ws, test->images, test->labels, nc, &cw, &ar, &err) ||
               rr_forward(m, ws, test->images, nc, z, NULL, NULL, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        rc = 1;
    } else {
        for (size_t i = 0; i < nc; i++) {
            size_t best = 0;
            for (size_t k = 1; k < K; k++)
                best = z[i * K + k] > z[i * K + best] ? k : best;
            if ((int64_t)best != test->labels[i])
                continue;
            out->correct++;
            if (succ[i]) {
                out->l2_sum += l2[i];
                out->broken++;
            }
        }
    }
    free(adv);
    free(l2);
    free(linf);
    free(z);
    free(pred);
    free(succ);
    free(it);
    return rc;
}

// Robustness of a model on the first n test images: PGD-40 linf robust accuracy at 0.05, 0.1
// and 0.2 (step 0.01, random start, seed 0), l2 DeepFool rho, C&W L2 (defaults) mean norm over
// the correctly classified samples it broke (first min(n, 250) images), mean certified l2
// radius (about the labels; misclassified samples count 0), and AutoAttack (suite standard,
// defaults) at the same epsilons with its gradient-masking flags and who broke what.
static int robustness(const char *path, size_t n, const char *data)
{
    rr_error err = {0};
    rr_model *m = NULL;
    rr_dataset test = {0};
    rr_workspace *ws = NULL;
    double *mine = NULL;
    json_t *aaj = NULL;
    int rc = 1;
    if (rr_model_load_file(path, &m, &err) ||
        rr_fashion_mnist_load(data, false, 0, n ? n : 1000, &test, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        goto out;
    }
    n = test.n;
    const size_t K = (size_t)rr_model_num_classes(m);
    const double eps[3] = {0.05, 0.1, 0.2};
    double ra[3];
    mine = malloc(n * sizeof(double));
    rr_workspace_params wp = {.max_batch = 256, .rows_per_sample = K > 128 ? K : 128};
    rr_robustness_params rp = {.norm = RR_NORM_LINF, .epsilons = eps, .n_eps = 3};
    rr_attack_params_init(&rp.attack, RR_ATTACK_PGD);
    rp.attack.step_size = 0.01;
    rp.attack.steps = 40;
    rr_robustness_result rr = {.robust_accuracy = ra, .per_sample_min_epsilon = mine};
    struct timespec a0, a1;
    clock_gettime(CLOCK_MONOTONIC, &a0);
    if (mine == NULL || rr_workspace_new(m, &wp, &ws, &err) ||
        rr_robustness(m, ws, test.images, test.labels, n, &rp, &rr, &err)) {
        fprintf(stderr, "relureg-train: %s\n", mine ? err.msg : "out of memory");
        goto out;
    }
    double radius = 0, exact = 0;
    cw_summary cw;
    const size_t nc = n < 250 ? n : 250;
    if ((aaj = autoattack_json(m, ws, &test, &rp, mine)) == NULL ||
        certified_l2(m, ws, &test, &radius, &exact) || cw_l2(m, ws, &test, nc, &cw))
        goto out;
    clock_gettime(CLOCK_MONOTONIC, &a1);
    json_t *o = json_pack(
        "{s:s, s:I, s:f, s:[f, f, f], s:[f, f, f], s:o, s:O, s:o, s:f, s:f, s:I, s:o, s:I, s:I, "
        "s:f}",
        "model", path, "samples", (json_int_t)n, "clean_accuracy", rr.clean_accuracy, "epsilons",
        eps[0], eps[1], eps[2], "pgd40_robust_accuracy", ra[0], ra[1], ra[2], "pgd40_flags",
        flags_json(&rr.flags), "autoattack", aaj, "deepfool_rho",
        isnan(rr.deepfool_rho) ? json_null() : json_real(rr.deepfool_rho), "mean_certified_l2",
        radius, "exact_fraction", exact, "cw_samples", (json_int_t)nc, "cw_mean_l2",
        cw.broken ? json_real(cw.l2_sum / (double)cw.broken) : json_null(), "cw_broken",
        (json_int_t)cw.broken, "cw_correct", (json_int_t)cw.correct, "seconds",
        (a1.tv_sec - a0.tv_sec) + (a1.tv_nsec - a0.tv_nsec) * 1e-9);
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    puts(s);
    free(s);
    json_decref(o);
    rc = 0;
out:
    json_decref(aaj);
    free(mine);
    rr_workspace_free(ws);
    rr_dataset_clear(&test);
    rr_model_release(m);
    return rc;
}

// ---- command line ----
typedef struct train_args {
    const char *arch_name, *arch_file, *out, *reg_name, *data, *eval_path, *robust_path;
    rr_reg_spec spec;
    double lambda, lr, momentum;
    int epochs, threads;
    long batch, train_limit, test_limit;
    unsigned long long seed;
    bool quiet, sgd;
} train_args;

// Options that store their argument as is: one row each (the rest are special-cased in
// set_option).
typedef enum { A_STR, A_DBL, A_INT, A_LONG, A_U64, A_FLAG, A_SPECIAL } arg_kind;
#define ARG(name, kind, field)                                                                     \
    {                                                                                              \
        name, kind, offsetof(train_args, field)                                                    \
    }
static const struct {
    const char *name;
    arg_kind kind;
    size_t offset;
} args_table[] = {
    ARG("arch", A_STR, arch_name),
    ARG("arch-file", A_STR, arch_file),
    ARG("regularizer", A_STR, reg_name),
    ARG("lambda", A_DBL, lambda),
    ARG("h", A_DBL, spec.h),
    ARG("unsquared", A_FLAG, spec.unsquared),
    ARG("epochs", A_INT, epochs),
    ARG("batch", A_LONG, batch),
    ARG("lr", A_DBL, lr),
    ARG("momentum", A_DBL, momentum),
    ARG("seed", A_U64, seed),
    ARG("train-limit", A_LONG, train_limit),
    ARG("test-limit", A_LONG, test_limit),
    ARG("data", A_STR, data),
    ARG("threads", A_INT, threads),
    ARG("quiet", A_FLAG, quiet),
    ARG("out", A_STR, out),
    ARG("evaluate", A_STR, eval_path),
    ARG("robustness", A_STR, robust_path),
    {"method", A_SPECIAL, 0},
    {"norm", A_SPECIAL, 0},
    {"projections", A_SPECIAL, 0},
    {"optimizer", A_SPECIAL, 0},
};
#undef ARG
#define N_ARGS   (sizeof args_table / sizeof args_table[0])
#define OPT_BASE 256 // getopt_long values of the table's rows: OPT_BASE + row

static void set_option(train_args *a, size_t i, const char *v)
{
    char *field = (char *)a + args_table[i].offset;
    const char *name = args_table[i].name;
    switch (args_table[i].kind) {
        case A_STR:
            *(const char **)field = v;
            break;
        case A_DBL:
            *(double *)field = atof(v);
            break;
        case A_INT:
            *(int *)field = atoi(v);
            break;
        case A_LONG:
            *(long *)field = atol(v);
            break;
        case A_U64:
            *(unsigned long long *)field = strtoull(v, NULL, 10);
            break;
        case A_FLAG:
            *(bool *)field = true;
            break;
        case A_SPECIAL:
            if (strcmp(name, "method") == 0)
                a->spec.method = strcmp(v, "hessian") == 0 ? RR_REG_HESSIAN
                                 : strcmp(v, "trace") == 0 ? RR_REG_TRACE
                                                           : RR_REG_FINITE_DIFFERENCE;
            else if (strcmp(name, "norm") == 0)
                a->spec.norm = strcmp(v, "l1") == 0 ? RR_REG_NORM_L1 : RR_REG_NORM_L2;
            else if (strcmp(name, "projections") == 0) {
                a->spec.estimator = RR_REG_PROJECTION;
                a->spec.projections = atoi(v);
            } else if (strcmp(name, "optimizer") == 0)
                a->sgd = strcmp(v, "sgd") == 0;
            break;
    }
}

// Fills *a from argv; returns -1 to go on, else the exit status (usage printed).
static int parse_args(int argc, char **argv, train_args *a)
{
    *a = (train_args){.arch_name = "mlp",
                      .reg_name = "none",
                      .data = DEFAULT_DATA,
                      .lr = 1e-3,
                      .momentum = 0.9,
                      .epochs = 5,
                      .batch = 128};
    struct option opts[N_ARGS + 2];
    for (size_t i = 0; i < N_ARGS; i++)
        opts[i] = (struct option){args_table[i].name, args_table[i].kind != A_FLAG, NULL,
                                  OPT_BASE + (int)i};
    opts[N_ARGS] = (struct option){"help", 0, NULL, OPT_BASE + (int)N_ARGS};
    opts[N_ARGS + 1] = (struct option){0, 0, 0, 0};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c < OPT_BASE || c >= OPT_BASE + (int)N_ARGS) {
            fputs(usage, stderr);
            return c == OPT_BASE + (int)N_ARGS ? 0 : 2;
        }
        set_option(a, (size_t)(c - OPT_BASE), optarg);
    }
    return -1;
}

// *arch = the architecture JSON of --arch-file or the --arch preset, with class names. Returns
// 0, else the exit status after a message on stderr.
static int load_arch(const train_args *a, char **arch)
{
    char *text = NULL;
    if (a->arch_file) {
        if ((text = read_text(a->arch_file)) == NULL) {
            fprintf(stderr, "relureg-train: cannot read %s: %s\n", a->arch_file, strerror(errno));
            return 1;
        }
    } else {
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
            if (strcmp(presets[i].name, a->arch_name) == 0)
                text = strdup(presets[i].arch);
        if (text == NULL) {
            fprintf(stderr, "relureg-train: unknown architecture preset '%s'\n", a->arch_name);
            return 2;
        }
    }
    *arch = with_class_names(text);
    free(text);
    if (*arch == NULL) {
        fputs("relureg-train: invalid architecture JSON\n", stderr);
        return 1;
    }
    return 0;
}

// Writes m with the training record to path through a temporary name, then rename: an
// interrupted run leaves no half model.
static int save_model(const rr_model *m, const char *record, const char *path, rr_error *err)
{
    const char *meta[] = {"relureg.training", record};
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rr_model_save(m, meta, 1, &buf, &len, err) != RR_OK) {
        fprintf(stderr, "relureg-train: %s\n", err->msg);
        return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    const bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f && fclose(f) != 0)
        f = NULL;
    free(buf);
    if (!ok || !f || rename(tmp, path) != 0) {
        fprintf(stderr, "relureg-train: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

// The training record of relureg.training (model-format.md).
static char *training_record(const train_args *a, bool has_reg, double acc, size_t n_train,
                             time_t seconds)
{
    json_t *rec =
        json_pack("{s:s, s:s, s:o, s:f, s:i, s:I, s:f, s:I, s:I}", "dataset", "fashion-mnist",
                  "architecture", a->arch_file ? a->arch_file : a->arch_name, "regularizer",
                  has_reg ? reg_json(a->reg_name, &a->spec) : json_null(), "lambda",
                  has_reg ? a->lambda : 0.0, "epochs", a->epochs, "seed", (json_int_t)a->seed,
                  "test_accuracy", acc, "train_samples", (json_int_t)n_train, "train_seconds",
                  (json_int_t)seconds);
    char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(rec);
    return s;
}

// Trains the --arch model on the training set and writes it to --out.
static int train(const train_args *a, const char *arch, bool has_reg)
{
    rr_error err = {0};
    rr_model *m = NULL;
    rr_dataset tr = {0}, test = {0};
    int rc = 1;
    if (rr_model_create(arch, &m, &err) || rr_model_init(m, a->seed, &err) ||
        rr_fashion_mnist_load(a->data, true, 0, (size_t)a->train_limit, &tr, &err) ||
        rr_fashion_mnist_load(a->data, false, 0, (size_t)a->test_limit, &test, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        goto out;
    }
    if (!a->quiet) {
        char lam[40] = "";
        if (has_reg)
            snprintf(lam, sizeof lam, ", lambda %g", a->lambda);
        fprintf(stderr, "relureg-train: %s, %zu parameters, %zu training images, %s%s\n",
                a->arch_file ? a->arch_file : a->arch_name, rr_model_num_param_elements(m), tr.n,
                has_reg ? a->reg_name : "cross-entropy only", lam);
    }
    progress_ctx pc = {.quiet = a->quiet};
    rr_train_params tp = {.batch = (size_t)a->batch,
                          .epochs = a->epochs,
                          .seed = a->seed,
                          .reg = has_reg ? &a->spec : NULL,
                          .lambda = a->lambda,
                          .optim = {.kind = a->sgd ? RR_OPTIM_SGD : RR_OPTIM_ADAM,
                                    .lr = a->lr,
                                    .momentum = a->momentum},
                          .report = show,
                          .report_ctx = &pc};
    const time_t t0 = time(NULL);
    double acc = 0, loss = 0;
    if (rr_train(m, &tr, &tp, &err) || rr_evaluate(m, &test, 0, &acc, &loss, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        goto out;
    }
    char *rec = training_record(a, has_reg, acc, tr.n, time(NULL) - t0);
    rc = rec ? save_model(m, rec, a->out, &err) : 1;
    free(rec);
    if (rc == 0 && !a->quiet)
        fprintf(stderr, "relureg-train: test accuracy %.2f%% (loss %.4f), wrote %s\n", 100 * acc,
                loss, a->out);
out:
    rr_dataset_clear(&tr);
    rr_dataset_clear(&test);
    rr_model_release(m);
    return rc;
}

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (a.threads > 0)
        rr_set_num_threads(a.threads);
    rr_error err = {0};
    if (rr_blas_check(&err) != RR_OK) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    if (a.eval_path)
        return evaluate(a.eval_path, (size_t)a.test_limit, a.data);
    if (a.robust_path)
        return robustness(a.robust_path, (size_t)a.test_limit, a.data);
    if (a.out == NULL || a.batch < 1 || a.epochs < 1) {
        fputs(usage, stderr);
        return 2;
    }
    const bool has_reg = strcmp(a.reg_name, "none") != 0;
    if (has_reg && parse_reg(a.reg_name, &a.spec) != 0) {
        fprintf(stderr, "relureg-train: unknown regularizer '%s'\n", a.reg_name);
        return 2;
    }
    if (has_reg && rr_reg_spec_check(&a.spec, 10, 0, &err) != RR_OK) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 2;
    }
    char *arch = NULL;
    if ((rc = load_arch(&a, &arch)) != 0)
        return rc;
    rc = train(&a, arch, has_reg);
    free(arch);
    return rc;
}
