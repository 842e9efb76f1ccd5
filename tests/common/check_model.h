// One checker for every kernel: builds a random model from an architecture document and
// compares, inside linear regions, the optimized float32 library against the naive float64
// forward (naive.h) and central finite differences of it:
//   forward logits and activation pattern (and its hash),
//   the Jacobian (logits and log-probabilities) against FD of the logits,
//   JVPs against J v, VJPs to the input against J^T g,
//   VJPs to every parameter against FD over that parameter of sum_b <g_b, z_b>.
#ifndef RR_TESTS_COMMON_CHECK_MODEL_H
#define RR_TESTS_COMMON_CHECK_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "relureg.h"

// float32 kernels against float64 references: a relative error around 1e-6..1e-5 is float32
// rounding through a few layers; 1e-4 leaves room for accumulation over long dot products.
#define RR_TEST_RTOL 1e-4
// Absolute floor, relative to the largest reference magnitude of the quantity, for entries
// that are zero or nearly so (sums of terms that cancel).
#define RR_TEST_ATOL_REL 1e-5

typedef struct rr_check_opts {
    size_t B;       // samples (default 3)
    double lo, hi;  // input box (default [-1, 1])
    double scale;   // weight scale (default 1.5)
    rr_dtype dtype; // stored weight dtype (default F32)
    size_t budget;  // workspace budget in bytes (0 = default) to force chunking
    uint64_t seed;
} rr_check_opts;

// Runs every check; failures are reported through Criterion. Returns the number of
// parameter elements whose gradient was checked by finite differences.
size_t rr_check_model(const char *arch_json, const rr_check_opts *opts);

#endif
