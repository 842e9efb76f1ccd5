// Shared test helpers: tolerance checks with a useful failure report, file loading, and the
// location of generated reference cases ($RR_REF_DIR, set by the Makefile).
#ifndef RR_TESTS_COMMON_RR_TEST_H
#define RR_TESTS_COMMON_RR_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relureg.h"

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

// ---- generated reference cases (tests/reference) ----
// A case is a pair PREFIX*.model.safetensors + PREFIX*.case.safetensors in rr_test_ref_dir().
typedef struct rr_ref_case {
    char name[32]; // file name without ".model.safetensors"
} rr_ref_case;

// The cases whose name starts with prefix: writes up to cap of them to out (may be NULL) and
// returns how many there are (0 when the directory is missing).
int rr_test_list_cases(const char *prefix, rr_ref_case *out, int cap);

// The tensor `name` of a parsed case file; fails the current test when it is missing.
const rr_st_tensor *rr_test_need(const rr_safetensors *st, const char *name);

// Compares got [n] with the F64 reference tensor want (numel n, checked) under rtol and an
// absolute floor of atol_rel times the reference's largest magnitude (1 when all zero), as
// rr_expect_allclose.
void rr_test_compare_ref(const char *what, const float *got, const rr_st_tensor *want, size_t n,
                         double rtol, double atol_rel);

#endif
