// Element types, shapes and the small helpers every module shares: overflow-checked sizes,
// 64-byte aligned allocation, and conversion of stored tensors (possibly unaligned, possibly
// F64/F16/BF16) to float32.
//
// Tensors in librelureg are plain row-major (C order) arrays with a separate shape; kernels
// take `float *` plus sizes. rr_shape is what files and requests carry.
// Thread rules: all functions are pure; no global state.
#ifndef RR_CORE_TENSOR_H
#define RR_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

// The safetensors element types (huggingface/safetensors `enum Dtype`). relureg computes in
// F32 and accepts F64/F16/BF16 by conversion; the others are known so that files holding them
// are parsed and then rejected by name ("unsupported dtype X for tensor Y").
typedef enum rr_dtype {
    RR_DTYPE_BOOL,
    RR_DTYPE_U8,
    RR_DTYPE_I8,
    RR_DTYPE_F8_E5M2,
    RR_DTYPE_F8_E4M3,
    RR_DTYPE_F8_E8M0,
    RR_DTYPE_F8_E4M3FNUZ,
    RR_DTYPE_F8_E5M2FNUZ,
    RR_DTYPE_I16,
    RR_DTYPE_U16,
    RR_DTYPE_F16,
    RR_DTYPE_BF16,
    RR_DTYPE_I32,
    RR_DTYPE_U32,
    RR_DTYPE_F32,
    RR_DTYPE_C64,
    RR_DTYPE_F64,
    RR_DTYPE_I64,
    RR_DTYPE_U64,
    RR_DTYPE_F4,
    RR_DTYPE_F6_E2M3,
    RR_DTYPE_F6_E3M2,
    RR_DTYPE_COUNT
} rr_dtype;

// Name as written in safetensors headers ("F32"); static storage.
const char *rr_dtype_name(rr_dtype dt);
// Looks up a safetensors dtype name of `len` bytes; returns false when unknown.
bool rr_dtype_from_name(const char *name, size_t len, rr_dtype *out);
// Bits per element (4, 6, 8, 16, 32 or 64).
unsigned rr_dtype_bits(rr_dtype dt);
// True for F32, F64, F16, BF16: the float types relureg converts to float32.
bool rr_dtype_is_float(rr_dtype dt);

#define RR_MAX_DIMS 8

typedef struct rr_shape {
    int ndim;                 // 0 for a scalar
    int64_t dim[RR_MAX_DIMS]; // each >= 0
} rr_shape;

// Product of the dimensions into *numel; false on overflow of size_t.
bool rr_shape_numel(const rr_shape *s, size_t *numel);
// Writes "[2, 3, 4]" into buf (always NUL-terminated, truncated to cap).
void rr_shape_format(const rr_shape *s, char *buf, size_t cap);
bool rr_shape_equal(const rr_shape *a, const rr_shape *b);

// Overflow-checked size arithmetic: false when the result does not fit.
static inline bool rr_size_mul(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool rr_size_add(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

// 64-byte aligned, uninitialised allocation (size rounded up to 64); NULL on failure.
// Owned: release with rr_aligned_free. Fallible by design (request-sized).
void *rr_aligned_alloc(size_t nbytes);
void rr_aligned_free(void *p);

// Converts n elements of a float dtype (F32, F64, F16, BF16) at `src` to float32 at `dst`.
// `src` may be unaligned (it is read through memcpy) and is little-endian. Values that do not
// fit float32 become +-Inf (callers check finiteness where it matters).
void rr_convert_to_f32(float *dst, const void *src, rr_dtype dt, size_t n);

// IEEE half / bfloat16 bit patterns to float32 (exact: every such value is a float32).
float rr_f16_to_f32(uint16_t h);
float rr_bf16_to_f32(uint16_t h);

// True when every element of x[0..n) is finite.
bool rr_all_finite(const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
