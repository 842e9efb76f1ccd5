// Timing helpers shared by the bench harnesses (bench_*.c). Not a test.
#ifndef RR_BENCH_UTIL_H
#define RR_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

// The first n bytes of a file (exits when it cannot read them).
static inline void *slurp(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    void *p = malloc(n);
    if (!f || !p || fread(p, 1, n, f) != n) {
        fprintf(stderr, "cannot read %zu bytes of %s\n", n, path);
        exit(1);
    }
    fclose(f);
    return p;
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// qsort comparator for doubles (medians of repeated timings).
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
