// A deliberately naive float64 implementation of a model's forward pass (direct loops over
// windows and weights, no im2col, no BLAS, no batching) and the test helpers built on it:
// random models, activation patterns, and central finite differences in float64.
//
// It reads layer geometry from the loaded model's op list but computes everything itself, so
// it checks the optimized float32 kernels; the torch reference tests check both against an
// independent implementation.
#ifndef RR_TESTS_COMMON_NAIVE_H
#define RR_TESTS_COMMON_NAIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relureg.h"

// Builds a model from an architecture document with random weights (seeded, uniform in
// +-scale/sqrt(fan_in)), batchnorm statistics away from trivial (mean in +-0.5, var in
// [0.5, 2]), stored as `dtype` (F32, F64, F16 or BF16). Fails the test and returns NULL on
// any error.
rr_model *rr_test_model(const char *arch_json, uint64_t seed, double scale, rr_dtype dtype);

// A model with the architecture of `like` and the parameters theta (rr_param layout of like),
// rounded to float32. Fails the test and returns NULL on error.
rr_model *rr_test_model_like(const rr_model *like, const double *theta);

// The model's parameters as doubles in the rr_param layout (rr_model_param_array_size entries).
double *rr_test_params(const rr_model *m);

// Naive float64 forward of one sample x [D] with parameters theta (rr_param layout): writes
// logits [K] and, when pattern is not NULL, the activation pattern (model.h layout). When
// margin is not NULL it receives the smallest relative distance of any relu input or max-pool
// top-two gap from a tie (as the torch reference draws inputs), 1 when there is none.
void rr_naive_forward(const rr_model *m, const double *theta, const double *x, double *logits,
                      uint8_t *pattern, double *margin);

// Fills x [n] with uniform values in [lo, hi) from a splitmix64 stream.
void rr_test_fill(double *x, size_t n, double lo, double hi, uint64_t *state);
double rr_test_uniform(uint64_t *state);

// Draws a sample whose margin is at least min_margin (at most 1000 tries); false otherwise.
bool rr_test_draw_sample(const rr_model *m, const double *theta, double *x, double lo, double hi,
                         double min_margin, uint64_t *state);

#endif
