// A program that uses librelureg as an outsider does: the installed headers through
// <relureg.h>, the library through pkg-config (tests/unit/check_install.sh). It checks the
// version three ways, builds and initialises a small model, runs a forward pass, a regularizer
// with its control callbacks (one pass that continues, one that cancels), an attack, and an
// error path switched on its code. Exits 0 when all is well; argv[1] is relureg.pc's Version.
#include <relureg.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ARCH                                                                                       \
    "{\"format\": \"relureg/1\", \"input_shape\": [4], \"num_classes\": 3, \"layers\": ["          \
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 4, \"out_features\": 8},"            \
    "{\"type\": \"relu\"},"                                                                        \
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 8, \"out_features\": 3}]}"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "consumer.c:%d: %s\n", __LINE__, #cond);                               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct counts {
    int polls, stop_after;
} counts;

static bool on_abort(void *ctx)
{
    counts *c = ctx;
    return ++c->polls > c->stop_after;
}

int main(int argc, char **argv)
{
    CHECK(strcmp(rr_version(), RR_VERSION) == 0);
    CHECK(argc > 1 && strcmp(argv[1], RR_VERSION) == 0);
    CHECK(RR_VERSION_HEX ==
          ((RR_VERSION_MAJOR << 16) | (RR_VERSION_MINOR << 8) | RR_VERSION_PATCH));

    rr_error err = {0};
    rr_model *m = NULL;
    CHECK(rr_model_create("{", &m, &err) == RR_EFORMAT && m == NULL);
    switch (err.code) {
        case RR_EFORMAT:
            CHECK(err.msg[0] != '\0');
            break;
        default:
            CHECK(!"the code of a malformed architecture is RR_EFORMAT");
    }
    rr_error_clear(&err);

    if (rr_model_create(ARCH, &m, &err) != RR_OK || rr_model_init(m, 1, &err) != RR_OK) {
        fprintf(stderr, "consumer.c: %s\n", err.msg);
        return 1;
    }
    CHECK(rr_model_num_param_tensors(m) == 4);
    CHECK(rr_model_num_param_elements(m) == 4 * 8 + 8 + 8 * 3 + 3);
    CHECK(rr_model_param_array_size(m) >= rr_model_num_param_elements(m));

    enum { B = 2, D = 4, K = 3 };
    const float x[B * D] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f};
    const int64_t y[B] = {0, 2};
    rr_workspace *ws = NULL;
    const rr_workspace_params wp = {.max_batch = B, .rows_per_sample = K};
    CHECK(rr_workspace_new(m, &wp, &ws, &err) == RR_OK);
    float logits[B * K];
    CHECK(rr_forward(m, ws, x, B, logits, NULL, NULL, &err) == RR_OK);
    for (int i = 0; i < B * K; i++)
        CHECK(isfinite(logits[i]));

    // A regularizer, polled and let through; then one stopped at the first poll.
    const rr_reg_spec jac = {.name = RR_REG_JACOBIAN};
    counts c = {.stop_after = 1000};
    rr_reg_params p = {.regs = &jac, .nregs = 1, .control = {.abort = on_abort, .abort_ctx = &c}};
    float per_sample[B];
    rr_reg_result r = {.per_sample = per_sample};
    CHECK(rr_reg_compute(m, ws, x, y, B, &p, &r, NULL, &err) == RR_OK);
    CHECK(c.polls > 0 && r.value > 0);
    counts stop = {.stop_after = 0};
    p.control.abort_ctx = &stop;
    rr_error_clear(&err);
    CHECK(rr_reg_compute(m, ws, x, y, B, &p, &r, NULL, &err) == RR_ECANCELLED);
    CHECK(err.code == RR_ECANCELLED);

    // An attack.
    rr_attack_params ap;
    rr_attack_params_init(&ap, RR_ATTACK_FGSM);
    ap.epsilon = 0.1;
    float adv[B * D], l2[B], linf[B];
    bool success[B];
    int64_t pred[B];
    int iters[B];
    rr_attack_result ar = {adv, success, l2, linf, pred, iters, 0, 0, NULL};
    rr_error_clear(&err);
    CHECK(rr_attack(m, ws, x, y, B, &ap, &ar, &err) == RR_OK);
    for (int b = 0; b < B; b++)
        CHECK(linf[b] <= 0.1f + 1e-6f);

    rr_workspace_free(ws);
    rr_model_release(m);
    if (failures == 0)
        printf("consumer (C): relureg %s, %s\n", rr_version(), "all checks passed");
    return failures != 0;
}
