// IDX datasets (LeCun's MNIST format, gzip-compressed, read through zlib), and Fashion-MNIST's
// four files in a directory the caller names (Debian's dataset-fashion-mnist installs them in
// /usr/share/datasets/fashion-mnist; where they are is the program's business, not the
// library's).
//
// An IDX file is a big-endian header (magic 0x0000 08 nd: unsigned bytes, nd dimensions, then
// nd uint32 sizes) followed by the data. Images become float32 in [0, 1] ([n, 1, rows, cols]
// per sample, the model input layout), labels int64.
// Ownership: rr_dataset is caller storage; rr_dataset_clear frees what a load allocated (a
// failed load frees what it allocated itself). Thread rules: no shared state; one dataset per
// caller, or read-only sharing once loaded.
#ifndef RR_TRAIN_IDX_H
#define RR_TRAIN_IDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rr_dataset {
    size_t n; // samples
    size_t rows, cols;
    float *images;   // [n, rows * cols], values in [0, 1] (owned)
    int64_t *labels; // [n] (owned)
} rr_dataset;

// Loads at most `limit` samples (0 = all) from the two gzip IDX files, from `offset`.
// RR_EIO when a file cannot be read, RR_EFORMAT when it is not IDX or the two disagree.
rr_status rr_idx_load(const char *images_gz, const char *labels_gz, size_t offset, size_t limit,
                      rr_dataset *out, rr_error *err);
// The train (60000) or test (10000) split of Fashion-MNIST: {train,t10k}-{images-idx3,
// labels-idx1}-ubyte.gz under `dir`. Errors as rr_idx_load; RR_EINVAL for a NULL dir.
rr_status rr_fashion_mnist_load(const char *dir, bool train, size_t offset, size_t limit,
                                rr_dataset *out, rr_error *err);
// Frees what a load allocated and zeroes *d; no-op on NULL.
void rr_dataset_clear(rr_dataset *d);

// The name of Fashion-MNIST class k in [0, 10) ("T-shirt/top", ...), NULL for other k; static
// storage.
const char *rr_fashion_mnist_class_name(int k);

#ifdef __cplusplus
}
#endif

#endif
