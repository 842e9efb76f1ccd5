// One-block scratch carving (llm.c style), shared by the attacks, the robustness report and
// training: the sizes of several typed arrays summed, one allocation, each array pointed at
// its own aligned slice, one free. Internal to librelureg (not in relureg.h).
#ifndef RR_CORE_CARVE_H
#define RR_CORE_CARVE_H

#include <stddef.h>

#include "core/status.h"

// One part of a carved scratch block: *ptr gets n elements of size bytes each.
typedef struct rr__carve_part {
    void **ptr;
    size_t n, size;
} rr__carve_part;
// The part for pointer p (any object pointer type) of n elements of *p.
#define RR__CARVE_PART(p, count)                                                                   \
    {                                                                                              \
        (void **)&(p), (count), sizeof *(p)                                                        \
    }
// Carves every part from one allocation (llm.c style): sizes summed with each part rounded up
// to RR__CARVE_ALIGN bytes, one rr_aligned_alloc, each *ptr pointed at its aligned, disjoint
// slice (a part of 0 elements gets a valid pointer too). Returns the block to free with
// rr_aligned_free, or NULL with RR_ENOMEM in err (also when the sizes overflow).
#define RR__CARVE_ALIGN 64
void *rr__carve(rr_error *err, const rr__carve_part *parts, size_t np);

#endif
