// One-block scratch carving (lib/core/carve.c): alignment, parts inside the block and
// disjoint, a part of 0 elements, overflow refused.
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/carve.h"
#include "core/tensor.h"

Test(carve, carve_aligned_disjoint_inside)
{
    rr_error err = {0};
    float *f = NULL;
    double *d = NULL;
    char *c = NULL;
    size_t *s = NULL;
    int64_t *i = NULL;
    bool *b = NULL;
    const rr__carve_part parts[] = {RR__CARVE_PART(f, 7),    RR__CARVE_PART(d, 3),
                                    RR__CARVE_PART(c, 1),    RR__CARVE_PART(s, 0),
                                    RR__CARVE_PART(i, 1000), RR__CARVE_PART(b, 65)};
    const size_t np = sizeof parts / sizeof parts[0];
    char *block = rr__carve(&err, parts, np);
    cr_assert(block != NULL);
    size_t total = 0;
    for (size_t k = 0; k < np; k++)
        total += (parts[k].n * parts[k].size + 63) / 64 * 64;
    for (size_t k = 0; k < np; k++) {
        const char *p = *parts[k].ptr;
        cr_assert(p != NULL, "part %zu", k);
        cr_assert((uintptr_t)p % RR__CARVE_ALIGN == 0, "part %zu at %p is not aligned", k, p);
        cr_assert(p >= block && p + parts[k].n * parts[k].size <= block + total,
                  "part %zu outside the block", k);
        for (size_t q = 0; q < np; q++) {
            const char *r = *parts[q].ptr;
            const size_t nk = parts[k].n * parts[k].size, nq = parts[q].n * parts[q].size;
            if (q != k && nk && nq)
                cr_assert(p + nk <= r || r + nq <= p, "parts %zu and %zu overlap", k, q);
        }
    }
    // Every byte written through its part reads back.
    for (size_t k = 0; k < np; k++)
        memset(*parts[k].ptr, (int)(k + 1), parts[k].n * parts[k].size);
    for (size_t k = 0; k < np; k++)
        for (size_t j = 0; j < parts[k].n * parts[k].size; j++)
            cr_assert(((const unsigned char *)*parts[k].ptr)[j] == k + 1, "part %zu byte %zu", k,
                      j);
    rr_aligned_free(block);
}

Test(carve, carve_refuses_overflow)
{
    rr_error err = {0};
    double *d = NULL;
    float *f = NULL;
    const rr__carve_part big[] = {RR__CARVE_PART(f, 16), RR__CARVE_PART(d, SIZE_MAX / 4)};
    cr_assert(rr__carve(&err, big, 2) == NULL);
    cr_assert(err.code == RR_ENOMEM);
    rr_error err2 = {0};
    const rr__carve_part two[] = {RR__CARVE_PART(f, SIZE_MAX / 8),
                                  RR__CARVE_PART(d, SIZE_MAX / 16)};
    cr_assert(rr__carve(&err2, two, 2) == NULL);
    cr_assert(err2.code == RR_ENOMEM);
    // n * size wrapping round to a small number (8 bytes).
    rr_error err3 = {0};
    const rr__carve_part wrap[] = {RR__CARVE_PART(d, SIZE_MAX / 8 + 2)};
    cr_assert(rr__carve(&err3, wrap, 1) == NULL);
    cr_assert(err3.code == RR_ENOMEM);
}
