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
    if (rr_model_load_file(path, &m, &err) ||
        rr_fashion_mnist_load(data, false, 0, n ? n : 1000, &test, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    n = test.n;
    const size_t D = rr_model_input_size(m), K = (size_t)rr_model_num_classes(m);
    const double eps[3] = {0.05, 0.1, 0.2};
    double ra[3], *mine = malloc(n * sizeof(double));
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = 256, .rows_per_sample = K > 128 ? K : 128};
    rr_robustness_params rp = {.norm = RR_NORM_LINF, .epsilons = eps, .n_eps = 3};
    rr_attack_params_init(&rp.attack, RR_ATTACK_PGD);
    rp.attack.step_size = 0.01;
    rp.attack.steps = 40;
    rr_robustness_result rr = {.robust_accuracy = ra, .per_sample_min_epsilon = mine};
    struct timespec a0, a1;
    clock_gettime(CLOCK_MONOTONIC, &a0);
    if (rr_workspace_new(m, &wp, &ws, &err) ||
        rr_robustness(m, ws, test.images, test.labels, n, &rp, &rr, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    const rr_robustness_flags pgd_flags = rr.flags;
    // AutoAttack (suite standard, math.md defaults, seed 0) at the same epsilons.
    struct timespec b0, b1;
    clock_gettime(CLOCK_MONOTONIC, &b0);
    double aa_ra[3];
    int *bb = malloc(n * sizeof(int));
    rr_robustness_params ap = rp;
    rr_attack_params_init(&ap.attack, RR_ATTACK_AUTOATTACK);
    rr_robustness_result aa = {
        .robust_accuracy = aa_ra, .per_sample_min_epsilon = mine, .broken_by = bb};
    if (rr_robustness(m, ws, test.images, test.labels, n, &ap, &aa, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
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
    json_t *aaj = json_pack("{s:[f, f, f], s:o, s:o, s:f}", "robust_accuracy", aa_ra[0], aa_ra[1],
                            aa_ra[2], "flags", flags_json(&aa.flags), "broken_by", by, "seconds",
                            (b1.tv_sec - b0.tv_sec) + (b1.tv_nsec - b0.tv_nsec) * 1e-9);
    free(bb);
    // Certified l2 radius.
    double *d = malloc(3 * n * sizeof(double));
    float *adv = malloc(n * D * sizeof(float)), *l2 = malloc(n * 4), *linf = malloc(n * 4);
    int64_t *pred = malloc(n * 8);
    bool *ex = malloc(n), *succ = malloc(n);
    int *it = malloc(n * sizeof(int));
    rr_certify_params cp = {.norm = RR_NORM_L2, .labels = test.labels};
    rr_certify_result cr = {pred, d, d + n, d + 2 * n, ex, adv, NULL, NULL, NULL, NULL};
    if (rr_certify(m, ws, test.images, n, &cp, &cr, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    double rsum = 0, nexact = 0;
    for (size_t i = 0; i < n; i++) {
        rsum += d[2 * n + i];
        nexact += ex[i];
    }
    // C&W L2 on the correctly classified among the first 250.
    const size_t nc = n < 250 ? n : 250;
    rr_attack_params cw;
    rr_attack_params_init(&cw, RR_ATTACK_CW_L2);
    rr_attack_result ar = {adv, succ, l2, linf, pred, it, 0, 0, NULL};
    if (rr_attack(m, ws, test.images, test.labels, nc, &cw, &ar, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    // Which of them were correct: a forward pass on the clean images.
    float *z = malloc(nc * K * sizeof(float));
    if (rr_forward(m, ws, test.images, nc, z, NULL, NULL, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    double cwsum = 0;
    size_t cwn = 0, correct = 0;
    for (size_t i = 0; i < nc; i++) {
        size_t best = 0;
        for (size_t k = 1; k < K; k++)
            best = z[i * K + k] > z[i * K + best] ? k : best;
        if ((int64_t)best != test.labels[i])
            continue;
        correct++;
        if (succ[i]) {
            cwsum += l2[i];
            cwn++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &a1);
    json_t *out = json_pack(
        "{s:s, s:I, s:f, s:[f, f, f], s:[f, f, f], s:o, s:o, s:o, s:f, s:f, s:I, s:o, s:I, s:I, "
        "s:f}",
        "model", path, "samples", (json_int_t)n, "clean_accuracy", rr.clean_accuracy, "epsilons",
        eps[0], eps[1], eps[2], "pgd40_robust_accuracy", ra[0], ra[1], ra[2], "pgd40_flags",
        flags_json(&pgd_flags), "autoattack", aaj, "deepfool_rho",
        isnan(rr.deepfool_rho) ? json_null() : json_real(rr.deepfool_rho), "mean_certified_l2",
        rsum / (double)n, "exact_fraction", nexact / (double)n, "cw_samples", (json_int_t)nc,
        "cw_mean_l2", cwn ? json_real(cwsum / (double)cwn) : json_null(), "cw_broken",
        (json_int_t)cwn, "cw_correct", (json_int_t)correct, "seconds",
        (a1.tv_sec - a0.tv_sec) + (a1.tv_nsec - a0.tv_nsec) * 1e-9);
    char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
    puts(s);
    free(s);
    json_decref(out);
    free(mine);
    free(d);
    free(adv);
    free(l2);
    free(linf);
    free(pred);
    free(ex);
    free(succ);
    free(it);
    free(z);
    rr_workspace_free(ws);
    rr_dataset_clear(&test);
    rr_model_release(m);
    return 0;
}

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    const char *arch_name = "mlp", *arch_file = NULL, *out = NULL, *reg_name = "none";
    const char *data = DEFAULT_DATA, *eval_path = NULL, *robust_path = NULL;
    rr_reg_spec spec = {0};
    double lambda = 0, lr = 1e-3, momentum = 0.9;
    int epochs = 5, threads = 0;
    long batch = 128, train_limit = 0, test_limit = 0;
    unsigned long long seed = 0;
    bool quiet = false, sgd = false;
    enum {
        O_ARCH = 256,
        O_ARCH_FILE,
        O_REG,
        O_LAMBDA,
        O_METHOD,
        O_H,
        O_NORM,
        O_UNSQ,
        O_PROJ,
        O_EPOCHS,
        O_BATCH,
        O_LR,
        O_OPT,
        O_MOM,
        O_SEED,
        O_TRAIN_LIMIT,
        O_TEST_LIMIT,
        O_DATA,
        O_THREADS,
        O_QUIET,
        O_OUT,
        O_EVAL,
        O_ROBUST,
        O_HELP
    };
    static const struct option opts[] = {{"arch", 1, 0, O_ARCH},
                                         {"arch-file", 1, 0, O_ARCH_FILE},
                                         {"regularizer", 1, 0, O_REG},
                                         {"lambda", 1, 0, O_LAMBDA},
                                         {"method", 1, 0, O_METHOD},
                                         {"h", 1, 0, O_H},
                                         {"norm", 1, 0, O_NORM},
                                         {"unsquared", 0, 0, O_UNSQ},
                                         {"projections", 1, 0, O_PROJ},
                                         {"epochs", 1, 0, O_EPOCHS},
                                         {"batch", 1, 0, O_BATCH},
                                         {"lr", 1, 0, O_LR},
                                         {"optimizer", 1, 0, O_OPT},
                                         {"momentum", 1, 0, O_MOM},
                                         {"seed", 1, 0, O_SEED},
                                         {"train-limit", 1, 0, O_TRAIN_LIMIT},
                                         {"test-limit", 1, 0, O_TEST_LIMIT},
                                         {"data", 1, 0, O_DATA},
                                         {"threads", 1, 0, O_THREADS},
                                         {"quiet", 0, 0, O_QUIET},
                                         {"out", 1, 0, O_OUT},
                                         {"evaluate", 1, 0, O_EVAL},
                                         {"robustness", 1, 0, O_ROBUST},
                                         {"help", 0, 0, O_HELP},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
            case O_ARCH:
                arch_name = optarg;
                break;
            case O_ARCH_FILE:
                arch_file = optarg;
                break;
            case O_REG:
                reg_name = optarg;
                break;
            case O_LAMBDA:
                lambda = atof(optarg);
                break;
            case O_METHOD:
                spec.method = strcmp(optarg, "hessian") == 0 ? RR_REG_HESSIAN
                              : strcmp(optarg, "trace") == 0 ? RR_REG_TRACE
                                                             : RR_REG_FINITE_DIFFERENCE;
                break;
            case O_H:
                spec.h = atof(optarg);
                break;
            case O_NORM:
                spec.norm = strcmp(optarg, "l1") == 0 ? RR_REG_NORM_L1 : RR_REG_NORM_L2;
                break;
            case O_UNSQ:
                spec.unsquared = true;
                break;
            case O_PROJ:
                spec.estimator = RR_REG_PROJECTION;
                spec.projections = atoi(optarg);
                break;
            case O_EPOCHS:
                epochs = atoi(optarg);
                break;
            case O_BATCH:
                batch = atol(optarg);
                break;
            case O_LR:
                lr = atof(optarg);
                break;
            case O_OPT:
                sgd = strcmp(optarg, "sgd") == 0;
                break;
            case O_MOM:
                momentum = atof(optarg);
                break;
            case O_SEED:
                seed = strtoull(optarg, NULL, 10);
                break;
            case O_TRAIN_LIMIT:
                train_limit = atol(optarg);
                break;
            case O_TEST_LIMIT:
                test_limit = atol(optarg);
                break;
            case O_DATA:
                data = optarg;
                break;
            case O_THREADS:
                threads = atoi(optarg);
                break;
            case O_QUIET:
                quiet = true;
                break;
            case O_OUT:
                out = optarg;
                break;
            case O_EVAL:
                eval_path = optarg;
                break;
            case O_ROBUST:
                robust_path = optarg;
                break;
            default:
                fputs(usage, stderr);
                return c == O_HELP ? 0 : 2;
        }
    }
    if (threads > 0)
        rr_set_num_threads(threads);
    rr_error err = {0};
    if (rr_blas_check(&err) != RR_OK) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    if (eval_path)
        return evaluate(eval_path, (size_t)test_limit, data);
    if (robust_path)
        return robustness(robust_path, (size_t)test_limit, data);
    if (out == NULL || batch < 1 || epochs < 1) {
        fputs(usage, stderr);
        return 2;
    }
    const bool has_reg = strcmp(reg_name, "none") != 0;
    if (has_reg && parse_reg(reg_name, &spec) != 0) {
        fprintf(stderr, "relureg-train: unknown regularizer '%s'\n", reg_name);
        return 2;
    }
    if (has_reg && rr_reg_spec_check(&spec, 10, 0, &err) != RR_OK) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 2;
    }
    char *arch_text = NULL;
    if (arch_file) {
        if ((arch_text = read_text(arch_file)) == NULL) {
            fprintf(stderr, "relureg-train: cannot read %s: %s\n", arch_file, strerror(errno));
            return 1;
        }
    } else {
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
            if (strcmp(presets[i].name, arch_name) == 0)
                arch_text = strdup(presets[i].arch);
        if (arch_text == NULL) {
            fprintf(stderr, "relureg-train: unknown architecture preset '%s'\n", arch_name);
            return 2;
        }
    }
    char *arch = with_class_names(arch_text);
    free(arch_text);
    rr_model *m = NULL;
    rr_dataset train = {0}, test = {0};
    if (arch == NULL || rr_model_create(arch, &m, &err) || rr_model_init(m, seed, &err) ||
        rr_fashion_mnist_load(data, true, 0, (size_t)train_limit, &train, &err) ||
        rr_fashion_mnist_load(data, false, 0, (size_t)test_limit, &test, &err)) {
        fprintf(stderr, "relureg-train: %s\n", arch ? err.msg : "invalid architecture JSON");
        return 1;
    }
    if (!quiet) {
        char lam[40] = "";
        if (has_reg)
            snprintf(lam, sizeof lam, ", lambda %g", lambda);
        fprintf(stderr, "relureg-train: %s, %zu parameters, %zu training images, %s%s\n",
                arch_file ? arch_file : arch_name, rr_model_num_param_elements(m), train.n,
                has_reg ? reg_name : "cross-entropy only", lam);
    }
    progress_ctx pc = {.quiet = quiet};
    rr_train_params tp = {
        .batch = (size_t)batch,
        .epochs = epochs,
        .seed = seed,
        .reg = has_reg ? &spec : NULL,
        .lambda = lambda,
        .optim = {.kind = sgd ? RR_OPTIM_SGD : RR_OPTIM_ADAM, .lr = lr, .momentum = momentum},
        .report = show,
        .report_ctx = &pc};
    const time_t t0 = time(NULL);
    double acc = 0, loss = 0;
    if (rr_train(m, &train, &tp, &err) || rr_evaluate(m, &test, 0, &acc, &loss, &err)) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    json_t *rec = json_pack("{s:s, s:s, s:o, s:f, s:i, s:I, s:f, s:I, s:I}", "dataset",
                            "fashion-mnist", "architecture", arch_file ? arch_file : arch_name,
                            "regularizer", has_reg ? reg_json(reg_name, &spec) : json_null(),
                            "lambda", has_reg ? lambda : 0.0, "epochs", epochs, "seed",
                            (json_int_t)seed, "test_accuracy", acc, "train_samples",
                            (json_int_t)train.n, "train_seconds", (json_int_t)(time(NULL) - t0));
    char *rec_s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(6));
    const char *meta[] = {"relureg.training", rec_s};
    uint8_t *buf = NULL;
    size_t len = 0;
    FILE *f = NULL;
    if (rr_model_save(m, meta, 1, &buf, &len, &err) != RR_OK) {
        fprintf(stderr, "relureg-train: %s\n", err.msg);
        return 1;
    }
    // Write to a temporary name, then rename: an interrupted run leaves no half model.
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    if ((f = fopen(tmp, "wb")) == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0 ||
        rename(tmp, out) != 0) {
        fprintf(stderr, "relureg-train: cannot write %s: %s\n", out, strerror(errno));
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "relureg-train: test accuracy %.2f%% (loss %.4f), wrote %s\n", 100 * acc,
                loss, out);
    free(buf);
    free(rec_s);
    json_decref(rec);
    free(arch);
    rr_dataset_clear(&train);
    rr_dataset_clear(&test);
    rr_model_release(m);
    return 0;
}
