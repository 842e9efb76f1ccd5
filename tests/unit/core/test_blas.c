// The BLAS policy: the OpenMP build of OpenBLAS is the one linked, and sgemm's row-major
// wrapper computes what it says for every transpose combination.
#include <criterion/criterion.h>
#include <math.h>

#include "relureg.h"

char *openblas_get_corename(void);

Test(blas, linked_openblas_is_the_openmp_build)
{
    rr_error err = {0};
    cr_expect_eq(rr_blas_check(&err), RR_OK, "%s (config: %s)", err.msg, rr_blas_config());
}

// OpenBLAS 0.3.21 falls back to Prescott kernels on CPU models it does not know; blas.c then
// re-executes the program with OPENBLAS_CORETYPE set (4.4x faster sgemm on AVX-512 machines).
Test(blas, kernels_fit_the_cpu)
{
    const char *best = rr_blas_best_core();
    cr_expect(rr_blas_core_fits_cpu(), "OpenBLAS runs %s kernels on a CPU fit for %s (%s)",
              openblas_get_corename(), best ? best : "-", rr_blas_config());
}

Test(blas, sgemm_all_transposes)
{
    // op(A) is 3x4, op(B) is 4x2.
    float A[12], At[12], Bm[8], Bt[8];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++)
            A[i * 4 + k] = At[k * 3 + i] = (float)(i * 4 + k + 1) / 7.0f;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 2; j++)
            Bm[k * 2 + j] = Bt[j * 4 + k] = (float)(k - 2 * j) / 3.0f;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float C[6];
            for (int i = 0; i < 6; i++)
                C[i] = 1.0f; // beta = 1 accumulates onto 1
            rr__sgemm(ta, tb, 3, 2, 4, 2.0f, ta ? At : A, ta ? 3 : 4, tb ? Bt : Bm, tb ? 4 : 2,
                      1.0f, C, 2);
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 2; j++) {
                    double s = 1.0;
                    for (int k = 0; k < 4; k++)
                        s += 2.0 * A[i * 4 + k] * Bm[k * 2 + j];
                    cr_expect(fabs(C[i * 2 + j] - s) < 1e-5, "ta=%d tb=%d C[%d][%d]=%g want %g", ta,
                              tb, i, j, C[i * 2 + j], s);
                }
        }
}
