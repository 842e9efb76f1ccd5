// Shared test helpers (see rr_test.h).
#include "rr_test.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static bool allclose(const char *name, const float *gf, const double *gd, const double *want,
                     size_t n, double rtol, double atol)
{
    double max_abs = 0, max_rel = 0;
    size_t worst = 0, nbad = 0;
    double worst_excess = -1;
    for (size_t i = 0; i < n; i++) {
        double got = gf ? (double)gf[i] : gd[i];
        double diff = fabs(got - want[i]);
        double tol = atol + rtol * fabs(want[i]);
        if (!(diff <= tol))
            nbad++;
        if (diff > max_abs)
            max_abs = diff;
        double rel = diff / (fabs(want[i]) > 0 ? fabs(want[i]) : 1);
        if (rel > max_rel)
            max_rel = rel;
        double excess = isnan(diff) ? INFINITY : diff - tol;
        if (excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    if (nbad == 0)
        return true;
    cr_log_error("%s: %zu of %zu elements outside |got-want| <= %g + %g*|want|; max abs %.3e, "
                 "max rel %.3e, worst index %zu",
                 name, nbad, n, atol, rtol, max_abs, max_rel, worst);
    size_t shown = 0;
    for (size_t i = 0; i < n && shown < 5; i++) {
        double got = gf ? (double)gf[i] : gd[i];
        double diff = fabs(got - want[i]);
        if (!(diff <= atol + rtol * fabs(want[i]))) {
            cr_log_error("  [%zu] got %.9g want %.9g", i, got, want[i]);
            shown++;
        }
    }
    cr_expect_fail("%s does not match (worst index %zu)", name, worst);
    return false;
}

bool rr_expect_allclose(const char *name, const float *got, const double *want, size_t n,
                        double rtol, double atol)
{
    return allclose(name, got, NULL, want, n, rtol, atol);
}

bool rr_expect_allclose_d(const char *name, const double *got, const double *want, size_t n,
                          double rtol, double atol)
{
    return allclose(name, NULL, got, want, n, rtol, atol);
}

uint8_t *rr_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cr_log_error("cannot open %s", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

const char *rr_test_ref_dir(void)
{
    const char *d = getenv("RR_REF_DIR");
    return d && *d ? d : "build/ref";
}
