// main() of the Criterion test binaries (unit and reference), in place of Criterion's own: it
// chooses the OpenBLAS kernels the way every shipped binary does (core/blas.h), then runs the
// tests, so that they run the kernels users get.
#include <criterion/criterion.h>

#include "relureg.h"

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
