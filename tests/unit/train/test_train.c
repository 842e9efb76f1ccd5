// Training: the IDX reader on the Debian Fashion-MNIST files and on corrupt ones, the
// optimizers against their update formulas, and a short training run that must learn
// (and give the same weights for the same seed).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "relureg.h"

// Where Debian's dataset-fashion-mnist installs the files (the library knows no default).
#define FASHION_MNIST "/usr/share/datasets/fashion-mnist"

Test(idx, fashion_mnist_needs_a_directory_and_names_its_classes)
{
    rr_dataset d = {0};
    rr_error err = {0};
    cr_expect_eq(rr_fashion_mnist_load(NULL, false, 0, 1, &d, &err), RR_EINVAL);
    cr_expect_str_eq(err.field, "dir");
    cr_expect_str_eq(rr_fashion_mnist_class_name(0), "T-shirt/top");
    cr_expect_str_eq(rr_fashion_mnist_class_name(9), "Ankle boot");
    cr_expect_null(rr_fashion_mnist_class_name(10));
    cr_expect_null(rr_fashion_mnist_class_name(-1));
}

Test(idx, reads_fashion_mnist_from_the_debian_package)
{
    rr_dataset d = {0};
    rr_error err = {0};
    cr_assert_eq(rr_fashion_mnist_load(FASHION_MNIST, false, 100, 50, &d, &err), RR_OK, "%s",
                 err.msg);
    cr_expect_eq(d.n, 50);
    cr_expect_eq(d.rows, 28);
    cr_expect_eq(d.cols, 28);
    double mx = 0;
    for (size_t i = 0; i < d.n * 784; i++) {
        cr_assert(d.images[i] >= 0 && d.images[i] <= 1);
        mx = fmax(mx, d.images[i]);
    }
    cr_expect(mx == 1.0, "pixels reach 255");
    for (size_t i = 0; i < d.n; i++)
        cr_assert(d.labels[i] >= 0 && d.labels[i] < 10);
    // The offset is honoured: sample 100 read alone equals sample 0 of the window above.
    rr_dataset one = {0};
    cr_assert_eq(rr_fashion_mnist_load(FASHION_MNIST, false, 100, 1, &one, &err), RR_OK);
    cr_expect(memcmp(one.images, d.images, 784 * sizeof(float)) == 0);
    cr_expect_eq(one.labels[0], d.labels[0]);
    rr_dataset_clear(&one);
    rr_dataset_clear(&d);
}

static void write_gz(const char *path, const unsigned char *data, size_t n)
{
    gzFile f = gzopen(path, "wb");
    cr_assert_not_null(f);
    gzwrite(f, data, (unsigned)n);
    gzclose(f);
}

Test(idx, rejects_corrupt_files)
{
    const unsigned char bad_magic[] = {0, 0, 9, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4};
    const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, 1, 7};
    const unsigned char short_images[] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1};
    write_gz("/tmp/rr_bad_images.gz", bad_magic, sizeof bad_magic);
    write_gz("/tmp/rr_labels.gz", labels, sizeof labels);
    write_gz("/tmp/rr_short_images.gz", short_images, sizeof short_images);
    rr_dataset d = {0};
    rr_error err = {0};
    cr_expect_eq(rr_idx_load("/tmp/rr_bad_images.gz", "/tmp/rr_labels.gz", 0, 0, &d, &err),
                 RR_EFORMAT);
    rr_error err2 = {0};
    cr_expect_eq(rr_idx_load("/tmp/rr_short_images.gz", "/tmp/rr_labels.gz", 0, 0, &d, &err2),
                 RR_EFORMAT);
    cr_expect(strstr(err2.msg, "truncated") != NULL, "%s", err2.msg);
    cr_expect_eq(rr_idx_load("/nonexistent.gz", "/tmp/rr_labels.gz", 0, 0, &d, NULL), RR_EIO);
    cr_expect_null(d.images);
}

Test(optim, adam_and_sgd_follow_their_formulas)
{
    float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f};
    rr_optim *o = NULL;
    rr_optim_params pa = {.kind = RR_OPTIM_ADAM, .lr = 0.1};
    cr_assert_eq(rr_optim_new(2, &pa, &o, NULL), RR_OK);
    rr_optim_step(o, w, g);
    // The first Adam step moves each weight by lr * sign(g) (up to eps).
    cr_expect(fabs(w[0] - 0.9) < 1e-6 && fabs(w[1] + 1.9) < 1e-6, "%g %g", w[0], w[1]);
    rr_optim_free(o);
    float v[1] = {1.0f}, gv[1] = {1.0f};
    rr_optim_params ps = {.kind = RR_OPTIM_SGD, .lr = 0.1, .momentum = 0.5};
    cr_assert_eq(rr_optim_new(1, &ps, &o, NULL), RR_OK);
    rr_optim_step(o, v, gv); // m = 1, w = 0.9
    rr_optim_step(o, v, gv); // m = 1.5, w = 0.75
    cr_expect(fabs(v[0] - 0.75) < 1e-6, "%g", v[0]);
    rr_optim_free(o);
    rr_optim_params bad = {.kind = RR_OPTIM_SGD, .lr = -1};
    cr_expect_eq(rr_optim_new(1, &bad, &o, NULL), RR_EINVAL);
}

static const char *small =
    "{\"format\": \"relureg/1\", \"input_shape\": [1, 28, 28], \"num_classes\": 10, \"layers\": ["
    "{\"type\": \"flatten\"},"
    "{\"type\": \"linear\", \"name\": \"1\", \"in_features\": 784, \"out_features\": 32},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 32, \"out_features\": 10}]}";

static rr_model *train_small(const rr_dataset *d, const rr_reg_spec *reg, double lambda)
{
    rr_model *m = NULL;
    rr_error err = {0};
    cr_assert_eq(rr_model_create(small, &m, &err), RR_OK, "%s", err.msg);
    cr_assert_eq(rr_model_init(m, 3, &err), RR_OK);
    rr_train_params p = {.batch = 64,
                         .epochs = 2,
                         .seed = 5,
                         .reg = reg,
                         .lambda = lambda,
                         .optim = {.kind = RR_OPTIM_ADAM, .lr = 3e-3}};
    cr_assert_eq(rr_train(m, d, &p, &err), RR_OK, "%s", err.msg);
    return m;
}

Test(train, learns_and_is_deterministic)
{
    rr_dataset tr = {0}, te = {0};
    cr_assert_eq(rr_fashion_mnist_load(FASHION_MNIST, true, 0, 4000, &tr, NULL), RR_OK);
    cr_assert_eq(rr_fashion_mnist_load(FASHION_MNIST, false, 0, 2000, &te, NULL), RR_OK);
    rr_model *a = train_small(&tr, NULL, 0), *b = train_small(&tr, NULL, 0);
    double acc;
    cr_assert_eq(rr_evaluate(a, &te, 0, &acc, NULL, NULL), RR_OK);
    // A 784-32-10 MLP after two epochs on 4000 images: well above chance (10%).
    cr_expect(acc > 0.70, "test accuracy %g", acc);
    const rr_param *pa = rr_model_param(a, 0), *pb = rr_model_param(b, 0);
    cr_expect(memcmp(pa->data, pb->data, pa->numel * sizeof(float)) == 0,
              "the same seed gives the same weights");
    // With a Jacobian penalty the trained net's ||J||_F^2 is smaller.
    rr_reg_spec jac = {.name = RR_REG_JACOBIAN};
    rr_model *c = train_small(&tr, &jac, 0.05);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = 256, .rows_per_sample = 10};
    double vals[2];
    rr_model *ms[2] = {a, c};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(rr_workspace_new(ms[i], &wp, &ws, NULL), RR_OK);
        rr_reg_result r = {0};
        rr_reg_params rp = {.regs = &jac, .nregs = 1};
        cr_assert_eq(rr_reg_compute(ms[i], ws, te.images, te.labels, 256, &rp, &r, NULL, NULL),
                     RR_OK);
        vals[i] = r.value;
        rr_workspace_free(ws);
    }
    cr_expect(vals[1] < 0.5 * vals[0], "||J||^2 %g with the penalty, %g without", vals[1], vals[0]);
    // The model file round-trips with its training record.
    uint8_t *buf;
    size_t len;
    const char *meta[] = {"relureg.training", "{\"epochs\": 2}"};
    cr_assert_eq(rr_model_save(a, meta, 1, &buf, &len, NULL), RR_OK);
    rr_model *back = NULL;
    cr_assert_eq(rr_model_load(buf, len, &back, NULL), RR_OK);
    cr_expect(memcmp(rr_model_param(back, 2)->data, rr_model_param(a, 2)->data,
                     rr_model_param(a, 2)->numel * sizeof(float)) == 0);
    cr_expect_str_eq(rr_model_metadata_value(back, 1), "{\"epochs\": 2}");
    free(buf);
    rr_model_release(back);
    rr_model_release(c);
    rr_model_release(b);
    rr_model_release(a);
    rr_dataset_clear(&te);
    rr_dataset_clear(&tr);
}
