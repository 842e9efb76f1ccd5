// safetensors reader and writer (../shared/spec/model-format.md, "safetensors layout").
//
// Reader: rr_safetensors_parse validates a whole file held in memory and indexes it without
// copying tensor bytes: each rr_st_tensor points into the caller's buffer, which must outlive
// the parsed object. Tensor data may be unaligned (other writers do not pad), so it is only
// ever read through memcpy (rr_st_tensor_to_f32 / _to_i64), never cast.
// Writer: collects tensors (borrowed until finish) and metadata (copied), then lays the file
// out as the reference writer does: header padded with spaces to a multiple of 8, tensors
// sorted by descending dtype alignment then name, no gaps.
// Thread rules: a parsed object is immutable and may be read from many threads at once; a
// writer serves one thread at a time. Nothing here has global state.
#ifndef RR_IO_SAFETENSORS_H
#define RR_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Default cap on the JSON header length N (the reference reader's MAX_HEADER_SIZE).
#define RR_ST_DEFAULT_MAX_HEADER ((size_t)100000000)

typedef struct rr_st_tensor {
    const char *name; // borrowed from the parsed object, NUL-terminated
    rr_dtype dtype;
    rr_shape shape;
    size_t numel;        // product of shape (1 for a scalar)
    size_t nbytes;       // end - begin
    size_t begin;        // offsets relative to the first byte after the header
    const uint8_t *data; // borrowed: points into the parsed buffer; may be unaligned
} rr_st_tensor;

typedef struct rr_safetensors rr_safetensors;

// Parses and validates `buf` (len bytes, borrowed; must outlive *out). Rejects, each with
// RR_EFORMAT and a message naming what is wrong: a file shorter than 8 bytes; a header length
// N above `max_header` (0 = RR_ST_DEFAULT_MAX_HEADER) or beyond the file; a header that is not
// valid UTF-8 JSON, not an object, or has duplicate keys; a tensor entry that is not an object
// of exactly {dtype, shape, data_offsets}; an unknown dtype; a shape that is not an array of
// non-negative integers, has more than RR_MAX_DIMS dimensions, or whose product overflows;
// data_offsets that are not two non-negative integers with begin <= end, that lie outside the
// data, overlap, leave gaps, or do not cover the data section exactly; a byte length that is
// not numel * bits / 8; a __metadata__ that is not an object of strings.
// On success *out is owned (rr_safetensors_free).
rr_status rr_safetensors_parse(const uint8_t *buf, size_t len, size_t max_header,
                               rr_safetensors **out, rr_error *err);

// No-op on NULL.
void rr_safetensors_free(rr_safetensors *st);

// Tensors in file order (ascending data offset). Borrowed, valid while st lives.
size_t rr_safetensors_count(const rr_safetensors *st);
const rr_st_tensor *rr_safetensors_at(const rr_safetensors *st, size_t i);
// NULL when no tensor has that name.
const rr_st_tensor *rr_safetensors_find(const rr_safetensors *st, const char *name);

// __metadata__ entries in header order, and lookup by key (NULL when absent). Borrowed.
size_t rr_safetensors_metadata_count(const rr_safetensors *st);
const char *rr_safetensors_metadata_key(const rr_safetensors *st, size_t i);
const char *rr_safetensors_metadata_value(const rr_safetensors *st, size_t i);
const char *rr_safetensors_metadata(const rr_safetensors *st, const char *key);

// Copies a float tensor (F32, F64, F16, BF16) into dst[numel] as float32. Any other dtype is
// RR_EDTYPE "unsupported dtype X for tensor Y" with field = the tensor name.
rr_status rr_st_tensor_to_f32(const rr_st_tensor *t, float *dst, rr_error *err);
// Copies an integer tensor (I64, I32) into dst[numel]; other dtypes as above.
rr_status rr_st_tensor_to_i64(const rr_st_tensor *t, int64_t *dst, rr_error *err);

// ---- writer ----
typedef struct rr_st_writer rr_st_writer;

// Owned (rr_st_writer_free, a no-op on NULL); NULL when out of memory.
rr_st_writer *rr_st_writer_new(void);
void rr_st_writer_free(rr_st_writer *w);

// Adds a tensor. `name` is copied; `data` (numel * bits / 8 bytes, little-endian) is borrowed
// until rr_st_writer_finish returns. RR_EINVAL for a duplicate or empty name, a name equal to
// "__metadata__", ndim > RR_MAX_DIMS or a negative dimension; RR_ENOMEM on allocation failure.
rr_status rr_st_writer_add(rr_st_writer *w, const char *name, rr_dtype dtype, const int64_t *shape,
                           int ndim, const void *data, rr_error *err);
// Sets a __metadata__ entry (both strings copied; a second call with the same key replaces it).
// RR_EINVAL when either is not valid UTF-8, RR_ENOMEM.
rr_status rr_st_writer_set_metadata(rr_st_writer *w, const char *key, const char *value,
                                    rr_error *err);
// Serialises the file. *out is owned by the caller (free()), *len its size. RR_EINVAL for a
// tensor name that is not valid UTF-8 (field = the name), RR_ENOMEM.
rr_status rr_st_writer_finish(rr_st_writer *w, uint8_t **out, size_t *len, rr_error *err);

#ifdef __cplusplus
}
#endif

#endif
