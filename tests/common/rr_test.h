// Shared test helpers: tolerance checks with a useful failure report, file loading, and the
// location of generated reference cases ($RR_REF_DIR, set by the Makefile).
#ifndef RR_TESTS_COMMON_RR_TEST_H
#define RR_TESTS_COMMON_RR_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Checks |got[i] - want[i]| <= atol + rtol * |want[i]| for all i (llm.c's t_eff). On failure
// prints the name, max abs / rel error, the worst index and the first 5 failing pairs, and
// fails the current Criterion test. Returns true when everything is within tolerance.
bool rr_expect_allclose(const char *name, const float *got, const double *want, size_t n,
                        double rtol, double atol);
bool rr_expect_allclose_d(const char *name, const double *got, const double *want, size_t n,
                          double rtol, double atol);

// Reads a whole file into a malloc'd buffer (caller frees); NULL (and a Criterion failure
// message) when it cannot be read.
uint8_t *rr_test_read_file(const char *path, size_t *len);

// Directory of generated reference cases: $RR_REF_DIR, else "build/ref".
const char *rr_test_ref_dir(void);

#endif
