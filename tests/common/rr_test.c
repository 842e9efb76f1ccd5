// Shared test helpers (see rr_test.h).
#include "rr_test.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>

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

int rr_test_list_cases(const char *prefix, rr_ref_case *out, int cap)
{
    DIR *d = opendir(rr_test_ref_dir());
    int n = 0;
    if (d == NULL)
        return 0;
    const char *suffix = ".model.safetensors";
    const size_t pl = strlen(prefix), sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, pl) == 0 && len > sl && len - sl < sizeof out->name &&
            strcmp(e->d_name + len - sl, suffix) == 0) {
            if (out && n < cap) {
                memcpy(out[n].name, e->d_name, len - sl);
                out[n].name[len - sl] = '\0';
            }
            n++;
        }
    }
    closedir(d);
    return n;
}

const rr_st_tensor *rr_test_need(const rr_safetensors *st, const char *name)
{
    const rr_st_tensor *t = rr_safetensors_find(st, name);
    cr_assert_not_null(t, "case file lacks tensor %s", name);
    return t;
}

void rr_test_compare_ref(const char *what, const float *got, const rr_st_tensor *want_t, size_t n,
                         double rtol, double atol_rel)
{
    cr_assert_eq(want_t->numel, n, "%s: %zu reference values, %zu computed", what, want_t->numel,
                 n);
    cr_assert_eq(want_t->dtype, RR_DTYPE_F64, "%s: %s is not F64", what, want_t->name);
    double *want = malloc((n ? n : 1) * sizeof(double)), mx = 0;
    cr_assert_not_null(want);
    memcpy(want, want_t->data, n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
    rr_expect_allclose(what, got, want, n, rtol, atol_rel * (mx > 0 ? mx : 1));
    free(want);
}
