// Dtypes, shapes, aligned allocation and float conversion (see tensor.h).
#define _DEFAULT_SOURCE // madvise
#include "core/tensor.h"

#include <sys/mman.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
} dtypes[RR_DTYPE_COUNT] = {
    [RR_DTYPE_BOOL] = {"BOOL", 8},
    [RR_DTYPE_U8] = {"U8", 8},
    [RR_DTYPE_I8] = {"I8", 8},
    [RR_DTYPE_F8_E5M2] = {"F8_E5M2", 8},
    [RR_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [RR_DTYPE_F8_E8M0] = {"F8_E8M0", 8},
    [RR_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [RR_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [RR_DTYPE_I16] = {"I16", 16},
    [RR_DTYPE_U16] = {"U16", 16},
    [RR_DTYPE_F16] = {"F16", 16},
    [RR_DTYPE_BF16] = {"BF16", 16},
    [RR_DTYPE_I32] = {"I32", 32},
    [RR_DTYPE_U32] = {"U32", 32},
    [RR_DTYPE_F32] = {"F32", 32},
    [RR_DTYPE_C64] = {"C64", 64},
    [RR_DTYPE_F64] = {"F64", 64},
    [RR_DTYPE_I64] = {"I64", 64},
    [RR_DTYPE_U64] = {"U64", 64},
    [RR_DTYPE_F4] = {"F4", 4},
    [RR_DTYPE_F6_E2M3] = {"F6_E2M3", 6},
    [RR_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
};

const char *rr_dtype_name(rr_dtype dt)
{
    return (unsigned)dt < RR_DTYPE_COUNT ? dtypes[dt].name : "?";
}

bool rr_dtype_from_name(const char *name, size_t len, rr_dtype *out)
{
    for (int i = 0; i < RR_DTYPE_COUNT; i++) {
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, name, len) == 0) {
            *out = (rr_dtype)i;
            return true;
        }
    }
    return false;
}

unsigned rr_dtype_bits(rr_dtype dt)
{
    return (unsigned)dt < RR_DTYPE_COUNT ? dtypes[dt].bits : 0;
}

bool rr_dtype_is_float(rr_dtype dt)
{
    return dt == RR_DTYPE_F32 || dt == RR_DTYPE_F64 || dt == RR_DTYPE_F16 || dt == RR_DTYPE_BF16;
}

bool rr_shape_numel(const rr_shape *s, size_t *numel)
{
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (s->dim[i] < 0 || !rr_size_mul(n, (size_t)s->dim[i], &n))
            return false;
    }
    *numel = n;
    return true;
}

void rr_shape_format(const rr_shape *s, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < s->ndim && used < cap; i++)
        used +=
            (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)s->dim[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

bool rr_shape_equal(const rr_shape *a, const rr_shape *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

// Blocks of at least HUGE bytes are aligned to it and offered to transparent huge pages:
// first touches of fresh memory cost a page fault per 4 KiB, which on this kind of VM is
// several microseconds each (measured: ~10% of a CNN backward pass on a new workspace).
#define HUGE ((size_t)2 << 20)

void *rr_aligned_alloc(size_t nbytes)
{
    void *p = NULL;
    size_t rounded;
    if (!rr_size_add(nbytes, 63, &rounded))
        return NULL;
    rounded &= ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    if (posix_memalign(&p, rounded >= HUGE ? HUGE : 64, rounded) != 0)
        return NULL;
    if (rounded >= HUGE)
        madvise(p, rounded & ~(HUGE - 1), MADV_HUGEPAGE); // a hint: failure is harmless
    return p;
}

void rr_aligned_free(void *p)
{
    free(p);
}

float rr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            // Subnormal half: renormalise into a float32 normal.
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); // Inf or NaN (payload kept)
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float rr_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void rr_convert_to_f32(float *dst, const void *src, rr_dtype dt, size_t n)
{
    const unsigned char *s = src;
    switch (dt) {
        case RR_DTYPE_F32:
            memcpy(dst, s, n * sizeof(float));
            break;
        case RR_DTYPE_F64:
            for (size_t i = 0; i < n; i++) {
                double v;
                memcpy(&v, s + 8 * i, 8);
                dst[i] = (float)v;
            }
            break;
        case RR_DTYPE_F16:
            for (size_t i = 0; i < n; i++) {
                uint16_t v;
                memcpy(&v, s + 2 * i, 2);
                dst[i] = rr_f16_to_f32(v);
            }
            break;
        case RR_DTYPE_BF16:
            for (size_t i = 0; i < n; i++) {
                uint16_t v;
                memcpy(&v, s + 2 * i, 2);
                dst[i] = rr_bf16_to_f32(v);
            }
            break;
        default:
            RR_ASSERT(!"rr_convert_to_f32: not a float dtype");
    }
}

bool rr_all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}
