// The BLAS policy: the OpenMP build of OpenBLAS is the one linked, the kernel choice does what
// core/blas.h says whatever OPENBLAS_CORETYPE holds, and sgemm's row-major wrapper computes
// what it says for every transpose combination.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "relureg.h"
#include "core/blas_impl.h" // rr__sgemm: the library-internal kernels under test

Test(blas, linked_openblas_is_the_openmp_build)
{
    rr_error err = {0};
    cr_expect_eq(rr_blas_check(&err), RR_OK, "%s (config: %s)", err.msg, rr_blas_config());
}

// ---- kernel choice (core/blas.h): what the code decides, on any machine ----

Test(blas, core_ranks)
{
    cr_expect_eq(rr_blas_core_rank("SkylakeX"), 3);
    cr_expect_eq(rr_blas_core_rank("cooperlake"), 3); // OpenBLAS matches names in any case
    cr_expect_eq(rr_blas_core_rank("Haswell"), 2);
    cr_expect_eq(rr_blas_core_rank("Zen"), 2);
    cr_expect_eq(rr_blas_core_rank("Sandybridge"), 1);
    cr_expect_eq(rr_blas_core_rank("Prescott"), 0);
    cr_expect_eq(rr_blas_core_rank(NULL), 0);
}

Test(blas, restart_decision)
{
    static const struct {
        const char *env, *loaded, *best, *want;
    } t[] = {
        // Nothing set: restart only when OpenBLAS fell back below the CPU's best.
        {NULL, "Prescott", "SkylakeX", "SkylakeX"},
        {NULL, "Haswell", "SkylakeX", "SkylakeX"},
        {NULL, "Sandybridge", "Haswell", "Haswell"},
        {"", "Prescott", "Haswell", "Haswell"}, // empty is unset
        {NULL, "Cooperlake", "SkylakeX", NULL}, // as good: keep
        {NULL, "SkylakeX", "Haswell", NULL},    // better than cpuid says: keep
        {NULL, "Haswell", "Haswell", NULL},
        {NULL, "Prescott", NULL, NULL}, // no known core for this CPU
        // Set by the user (these machines set Haswell on AVX-512 CPUs): always respected.
        {"Haswell", "Haswell", "SkylakeX", NULL},
        {"Prescott", "Prescott", "SkylakeX", NULL},
        {"SkylakeX", "SkylakeX", "SkylakeX", NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        const char *got = rr_blas_core_to_request(t[i].env, t[i].loaded, t[i].best);
        cr_expect((got == NULL) == (t[i].want == NULL) && (got == NULL || !strcmp(got, t[i].want)),
                  "env %s, loaded %s, best %s: got %s, want %s", t[i].env ? t[i].env : "unset",
                  t[i].loaded, t[i].best ? t[i].best : "-", got ? got : "no restart",
                  t[i].want ? t[i].want : "no restart");
    }
}

// This binary's main chose its kernels as every shipped binary does: the user's value when
// one is set, else kernels that fit the CPU. (`make unit` runs the suite both ways.)
Test(blas, this_program_follows_the_policy)
{
    const char *env = getenv("OPENBLAS_CORETYPE"), *best = rr_blas_best_core();
    if (env && env[0])
        cr_expect(strcasecmp(rr_blas_core(), env) == 0,
                  "OPENBLAS_CORETYPE=%s is set but OpenBLAS runs %s kernels (%s)", env,
                  rr_blas_core(), rr_blas_config());
    else
        cr_expect(rr_blas_core_fits_cpu(),
                  "OPENBLAS_CORETYPE is unset and OpenBLAS runs %s kernels on a CPU fit for %s "
                  "(%s)",
                  rr_blas_core(), best ? best : "-", rr_blas_config());
}

// blas-probe (tests/probe/blas_probe.c) run with `assignments` added to this environment (and
// OPENBLAS_CORETYPE removed first): "LOADED BEST" into `out`.
static bool probe(const char *assignments, char *out, size_t n)
{
    const char *bin = getenv("RR_BLAS_PROBE");
    cr_assert(bin != NULL, "RR_BLAS_PROBE names build/<variant>/blas-probe (set by make unit)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env -u OPENBLAS_CORETYPE %s '%s' 2>&1", assignments, bin);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL);
    const bool got = fgets(out, (int)n, p) != NULL;
    const int rc = pclose(p);
    out[strcspn(out, "\n")] = '\0';
    cr_expect(got && rc == 0, "%s: exit %d, printed '%s'", cmd, rc, got ? out : "");
    return got && rc == 0;
}

Test(blas, a_program_restarts_onto_fitting_kernels)
{
    const char *best = rr_blas_best_core();
    char line[256], loaded[64], b[64];
    // OpenBLAS fell back to Prescott by itself (simulated: the probe forgets the variable that
    // made it): the program restarts onto the best core, or keeps Prescott when none is known.
    if (probe("OPENBLAS_CORETYPE=Prescott RR_PROBE_FORGET_CORETYPE=1", line, sizeof line)) {
        cr_assert_eq(sscanf(line, "%63s %63s", loaded, b), 2, "'%s'", line);
        cr_expect_str_eq(loaded, best ? best : "Prescott", "after a fallback: %s", line);
    }
    // Nothing set at all: whatever OpenBLAS picks, the program ends on kernels that fit.
    if (probe("", line, sizeof line)) {
        cr_assert_eq(sscanf(line, "%63s %63s", loaded, b), 2, "'%s'", line);
        cr_expect(rr_blas_core_rank(loaded) >= rr_blas_core_rank(best), "unset: %s", line);
    }
    // A weaker core set by the user is respected: no restart.
    if (probe("OPENBLAS_CORETYPE=Sandybridge", line, sizeof line)) {
        cr_assert_eq(sscanf(line, "%63s %63s", loaded, b), 2, "'%s'", line);
        cr_expect_str_eq(loaded, "Sandybridge", "set by the user: %s", line);
    }
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
                      1.0f, C, 2, NULL);
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
