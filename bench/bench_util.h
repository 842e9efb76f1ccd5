// Timing helpers shared by the bench harnesses (bench_*.c). Not a test.
#ifndef RR_BENCH_UTIL_H
#define RR_BENCH_UTIL_H

#include <time.h>

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
