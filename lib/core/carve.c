// One-block scratch carving (carve.h).
#include "core/carve.h"

#include "core/tensor.h" // rr_aligned_alloc

void *rr__carve(rr_error *err, const rr__carve_part *parts, size_t np)
{
    size_t total = 0;
    for (size_t i = 0; i < np; i++) {
        const size_t bytes = parts[i].n * parts[i].size;
        const size_t padded = (bytes + RR__CARVE_ALIGN - 1) & ~(size_t)(RR__CARVE_ALIGN - 1);
        if ((parts[i].size && bytes / parts[i].size != parts[i].n) || padded < bytes ||
            total + padded < total) {
            rr_error_set(err, RR_ENOMEM, NULL, "scratch size overflows");
            return NULL;
        }
        total += padded;
    }
    char *block = rr_aligned_alloc(total ? total : RR__CARVE_ALIGN);
    if (!block) {
        rr_error_set(err, RR_ENOMEM, NULL, "out of memory for scratch (%zu bytes)", total);
        return NULL;
    }
    char *p = block;
    for (size_t i = 0; i < np; i++) {
        *parts[i].ptr = p;
        p += (parts[i].n * parts[i].size + RR__CARVE_ALIGN - 1) & ~(size_t)(RR__CARVE_ALIGN - 1);
    }
    return block;
}
