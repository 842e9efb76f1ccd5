// rr__sgemm, the deterministic parallel product (core/blas.h): its plan, its results against
// a double reference in every transpose with edge tiles in both dimensions and split K, bit-
// identical results at 1, 3, 16 and 64 threads, and the parallelism it really gets: every
// sgemm call OpenBLAS receives is recorded (the unit binary is linked with
// -Wl,--wrap=cblas_sgemm), so a product cut into too few tasks, or tasks run outside the
// team, fails here on any machine, whatever its core count.
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas_impl.h"
#include "naive.h"
#include "nn/workspace_impl.h"

// ---- the recorder ----

#define MAX_CALLS 4096
typedef struct call {
    int m, n, k, ldc, team, thread;
} call;
static call calls[MAX_CALLS];
static atomic_int ncalls;
static atomic_bool recording;

// cblas_sgemm's parameters, for the declarations of the real function and the wrapper.
#define SGEMM_PARAMS                                                                               \
    OPENBLAS_CONST enum CBLAS_ORDER order, OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,                 \
        OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint M,                          \
        OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha,            \
        OPENBLAS_CONST float *A, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,              \
        OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,                           \
        OPENBLAS_CONST blasint ldc
void __real_cblas_sgemm(SGEMM_PARAMS);
void __wrap_cblas_sgemm(SGEMM_PARAMS);

void __wrap_cblas_sgemm(SGEMM_PARAMS)
{
    if (atomic_load(&recording)) {
        int i = atomic_fetch_add(&ncalls, 1);
        if (i < MAX_CALLS)
            calls[i] = (call){M, N, K, ldc, omp_get_num_threads(), omp_get_thread_num()};
    }
    __real_cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void record(bool on)
{
    if (on)
        atomic_store(&ncalls, 0);
    atomic_store(&recording, on);
}

// ---- helpers ----

static float *random_matrix(size_t n, uint64_t *st)
{
    float *a = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(rr_test_uniform(st) - 0.5);
    return a;
}

typedef struct product {
    bool ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A, *B, *C0; // C0: C before the product (beta != 0 accumulates onto it)
} product;

static product product_new(bool ta, bool tb, size_t M, size_t N, size_t K, float beta,
                           uint64_t seed)
{
    uint64_t st = seed;
    // Leading dimensions past the operands' widths, so that strides are exercised.
    product p = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = 1.5f, .beta = beta};
    p.lda = (ta ? M : K) + 3;
    p.ldb = (tb ? K : N) + 5;
    p.ldc = N + 2;
    p.A = random_matrix((ta ? K : M) * p.lda, &st);
    p.B = random_matrix((tb ? N : K) * p.ldb, &st);
    p.C0 = random_matrix(M * p.ldc, &st);
    return p;
}

static void product_free(product *p)
{
    free(p->A);
    free(p->B);
    free(p->C0);
}

static float *product_run(const product *p, int threads, float *split)
{
    float *C = malloc(p->M * p->ldc * sizeof(float));
    memcpy(C, p->C0, p->M * p->ldc * sizeof(float));
    rr_set_num_threads(threads);
    rr__sgemm(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C,
              p->ldc, split);
    rr_set_num_threads(1);
    return C;
}

static void product_check(const product *p, const float *C)
{
    double worst = 0.0;
    for (size_t i = 0; i < p->M; i++)
        for (size_t j = 0; j < p->N; j++) {
            double s = 0.0, mag = 0.0;
            for (size_t k = 0; k < p->K; k++) {
                double a = p->ta ? p->A[k * p->lda + i] : p->A[i * p->lda + k];
                double b = p->tb ? p->B[j * p->ldb + k] : p->B[k * p->ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            const double want = p->alpha * s + p->beta * p->C0[i * p->ldc + j];
            // float32 products summed over K: relative to the magnitude of the terms.
            const double err =
                fabs(C[i * p->ldc + j] - want) /
                (fabs(p->alpha) * mag + fabs(p->beta * p->C0[i * p->ldc + j]) + 1e-30);
            worst = err > worst ? err : worst;
        }
    cr_expect(worst < 1e-5, "ta=%d tb=%d %zux%zux%zu beta=%g: worst relative error %.3g", p->ta,
              p->tb, p->M, p->N, p->K, p->beta, worst);
    // The padding columns of C are never written.
    for (size_t i = 0; i < p->M; i++)
        for (size_t j = p->N; j < p->ldc; j++)
            cr_expect(C[i * p->ldc + j] == p->C0[i * p->ldc + j], "padding C[%zu][%zu] written", i,
                      j);
}

// Shapes: edge tiles in both dimensions (sides not multiples of the tile alignment), a split
// K, a split K with edge tiles and a short last chunk, one task, one row, one column.
// Every shape but the tiny ones is cut into several tasks (checked below), with edge tiles.
static const size_t shapes[][3] = {{203, 517, 600}, {7, 9, 600000},   {20, 40, 100000},
                                   {300, 700, 160}, {3, 2, 4},        {1, 1500, 2000},
                                   {1500, 1, 2000}, {256, 1024, 1024}};

// ---- tests ----

Test(gemm, plan_covers_the_product_and_depends_on_the_shape_only)
{
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        rr__gemm_plan p;
        rr__sgemm_plan(M, N, K, &p);
        cr_expect(p.gm * p.tm >= M && (p.gm - 1) * p.tm < M, "%zux%zux%zu: rows", M, N, K);
        cr_expect(p.gn * p.tn >= N && (p.gn - 1) * p.tn < N, "%zux%zux%zu: columns", M, N, K);
        cr_expect(p.ks * p.kc >= K && (p.ks - 1) * p.kc < K, "%zux%zux%zu: K chunks", M, N, K);
        cr_expect((p.ks - 1) * M * N <= RR__GEMM_SPLIT_FLOATS, "%zux%zux%zu: split scratch", M, N,
                  K);
        cr_expect(p.tm == M || p.tm % 16 == 0, "%zux%zux%zu: tile rows %zu", M, N, K, p.tm);
        cr_expect(p.tn == N || p.tn % 16 == 0, "%zux%zux%zu: tile columns %zu", M, N, K, p.tn);
        // The same plan whatever the thread count of the caller.
        rr_set_num_threads(7);
        rr__gemm_plan q;
        rr__sgemm_plan(M, N, K, &q);
        rr_set_num_threads(1);
        cr_expect(memcmp(&p, &q, sizeof p) == 0, "%zux%zux%zu: plan changed with threads", M, N, K);
        if (2.0 * M * N * K >= 64e6)
            cr_expect(rr__sgemm_tasks(&p) > 1, "%zux%zux%zu: one task", M, N, K);
    }
    rr__gemm_plan p;
    rr__sgemm_plan(7, 9, 600000, &p);
    cr_expect(p.ks > 1, "a small output over a long K is split along K (ks = %zu)", p.ks);
    rr__sgemm_plan(20, 40, 100000, &p);
    cr_expect(p.ks > 1 && p.gm > 1 && p.gn > 1, "split K with edge tiles: %zu x %zu x %zu", p.gm,
              p.gn, p.ks);
    rr__sgemm_plan(256, 1024, 1024, &p);
    cr_expect(rr__sgemm_tasks(&p) >= 16, "256x1024x1024: %zu tasks", rr__sgemm_tasks(&p));
    rr__sgemm_plan(2048, 2048, 2048, &p);
    cr_expect(rr__sgemm_tasks(&p) >= 64, "2048^3: %zu tasks", rr__sgemm_tasks(&p));
}

Test(gemm, matches_a_double_reference_in_every_transpose)
{
    float *split = malloc(RR__GEMM_SPLIT_FLOATS * sizeof(float));
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++) {
            const float beta = t == 0 ? 1.0f : t == 1 ? 0.0f : 0.5f;
            product p = product_new(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], beta,
                                    17 + s * 4 + (uint64_t)t);
            float *C = product_run(&p, 3, split);
            product_check(&p, C);
            free(C);
            product_free(&p);
        }
    free(split);
}

Test(gemm, bit_identical_at_1_3_16_and_64_threads)
{
    float *split = malloc(RR__GEMM_SPLIT_FLOATS * sizeof(float));
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        product p =
            product_new(s & 1, s & 2, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 101 + s);
        float *C1 = product_run(&p, 1, split);
        static const int threads[] = {3, 16, 64};
        for (size_t t = 0; t < 3; t++) {
            float *C = product_run(&p, threads[t], split);
            cr_expect(memcmp(C, C1, p.M * p.ldc * sizeof(float)) == 0,
                      "%zux%zux%zu: %d threads differ from 1", p.M, p.N, p.K, threads[t]);
            free(C);
        }
        free(C1);
        product_free(&p);
    }
    free(split);
}

// The recorded calls as products: runs of consecutive calls with the same ldc and K (the
// products of a pass run one after the other). For each run: its calls, how many of them ran
// in a team of `team` threads, and its flops.
typedef struct run {
    int ncalls, in_team;
    double flops;
} run;

static int runs_of(run *runs, int cap, int team)
{
    int n = 0, total = atomic_load(&ncalls);
    cr_assert_lt(total, MAX_CALLS, "more calls than the recorder holds");
    for (int i = 0; i < total; i++) {
        if (i == 0 || calls[i].ldc != calls[i - 1].ldc || calls[i].k != calls[i - 1].k) {
            cr_assert_lt(n, cap);
            runs[n++] = (run){0};
        }
        run *r = &runs[n - 1];
        r->ncalls++;
        r->in_team += calls[i].team == team;
        r->flops += 2.0 * calls[i].m * calls[i].n * calls[i].k;
    }
    return n;
}

Test(gemm, a_256x1024x1024_product_runs_as_16_parallel_tasks_at_16_threads)
{
    product p = product_new(false, true, 256, 1024, 1024, 0.0f, 5);
    record(true);
    float *C = product_run(&p, 16, NULL);
    record(false);
    run runs[4];
    cr_assert_eq(runs_of(runs, 4, 16), 1);
    cr_expect(runs[0].ncalls >= 16, "the product ran as %d sgemm calls", runs[0].ncalls);
    cr_expect(runs[0].in_team == runs[0].ncalls, "%d of %d calls ran outside a team of 16",
              runs[0].ncalls - runs[0].in_team, runs[0].ncalls);
    free(C);
    product_free(&p);
}

// Records the sgemm calls of one rr_vjp of a model (batch B, D inputs, 10 classes) at 16
// threads, on a workspace planned at one thread (a worker's first request may have run on one).
static void record_vjp_at_16_threads(const char *spec, size_t B, size_t D)
{
    rr_model *m = rr_test_model(spec, 3, 1.0, RR_DTYPE_F32);
    cr_assert_not_null(m);
    uint64_t st = 4;
    float *x = random_matrix(B * D, &st), *g = random_matrix(B * 10, &st);
    float *gx = malloc(B * D * sizeof(float)), *gp = malloc(rr_model_param_array_size(m) * 4);
    rr_set_num_threads(1);
    rr_workspace *ws = NULL;
    rr_workspace_params wp = {.max_batch = B, .rows_per_sample = 1};
    cr_assert_eq(rr_workspace_new(m, &wp, &ws, NULL), RR_OK);
    rr_set_num_threads(16);
    record(true);
    cr_assert_eq(rr_vjp(m, ws, x, B, g, gx, gp, NULL), RR_OK);
    record(false);
    rr_set_num_threads(1);
    rr_workspace_free(ws);
    rr_model_release(m);
    free(x);
    free(g);
    free(gx);
    free(gp);
}

// The same through a model: every GEMM of the MLP 784-1024-1024-10's forward pass and its
// backward pass to the parameters, at batch 256 and 16 threads, on a workspace planned at one
// thread (a worker's first request may have run on one).
static const char *mlp =
    "{\"format\": \"relureg/1\", \"input_shape\": [784], \"num_classes\": 10, \"layers\": ["
    "{\"type\": \"linear\", \"name\": \"0\", \"in_features\": 784, \"out_features\": 1024},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"2\", \"in_features\": 1024, \"out_features\": 1024},"
    "{\"type\": \"relu\"},"
    "{\"type\": \"linear\", \"name\": \"4\", \"in_features\": 1024, \"out_features\": 10}]}";

Test(gemm, every_large_product_of_a_model_runs_in_parallel_at_16_threads)
{
    record_vjp_at_16_threads(mlp, 256, 784);
    // Every product of at least a 256x1024x784's work: forward 784->1024 and 1024->1024,
    // backward to the inputs of both, weight gradients [1024, 784] and [1024, 1024].
    run runs[64];
    int n = runs_of(runs, 64, 16), large = 0;
    for (int i = 0; i < n; i++)
        if (runs[i].flops >= 2.0 * 256 * 1024 * 784) {
            large++;
            cr_expect(runs[i].ncalls >= 16, "product %d ran as %d sgemm calls", i, runs[i].ncalls);
            cr_expect(runs[i].in_team == runs[i].ncalls,
                      "product %d: %d of %d calls outside a "
                      "team of 16",
                      i, runs[i].ncalls - runs[i].in_team, runs[i].ncalls);
        }
    cr_expect(large == 6, "%d large products, expected 6", large);
}

// Convolutions run their blocks of rows in a parallel loop with one serial sgemm per block,
// on per-thread buffers: on a workspace planned at one thread and then used at 16, each of
// those calls still runs in a team of 16 (the buffers grow with the call's threads).
static const char *cnn =
    "{\"format\": \"relureg/1\", \"input_shape\": [1, 28, 28], \"num_classes\": 10, \"layers\": ["
    "{\"type\": \"conv2d\", \"name\": \"0\", \"in_channels\": 1, \"out_channels\": 8, "
    "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"relu\"}, {\"type\": \"flatten\"},"
    "{\"type\": \"linear\", \"name\": \"3\", \"in_features\": 6272, \"out_features\": 10}]}";

Test(gemm, convolution_blocks_run_on_every_thread_of_the_call)
{
    record_vjp_at_16_threads(cnn, 64, 784);
    // Forward and input backward: C is [8, 4 * 784] per block; weight gradient: C is [8, 9].
    int n = 0, in_team = 0, total = atomic_load(&ncalls);
    for (int i = 0; i < total; i++)
        if (calls[i].ldc == 4 * 784 || calls[i].ldc == 9) {
            n++;
            in_team += calls[i].team == 16;
        }
    cr_expect(n >= 16 * 2, "%d convolution calls", n);
    cr_expect(in_team == n, "%d of %d convolution calls ran outside a team of 16", n - in_team, n);
}
