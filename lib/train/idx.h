// IDX datasets (LeCun's MNIST format, gzip-compressed, read through zlib): Fashion-MNIST from
// the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/).
//
// An IDX file is a big-endian header (magic 0x0000 08 nd: unsigned bytes, nd dimensions, then
// nd uint32 sizes) followed by the data. Images become float32 in [0, 1] ([n, 1, rows, cols]
// per sample, the model input layout), labels int64.
// Ownership: rr_dataset is caller storage; rr_dataset_clear frees what a load allocated.
#ifndef RR_TRAIN_IDX_H
#define RR_TRAIN_IDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define RR_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

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
// The train (60000) or test (10000) split of Fashion-MNIST under dir (NULL: the Debian path).
rr_status rr_fashion_mnist_load(const char *dir, bool train, size_t offset, size_t limit,
                                rr_dataset *out, rr_error *err);
void rr_dataset_clear(rr_dataset *d);

// The ten Fashion-MNIST class names, in label order.
extern const char *const rr_fashion_mnist_classes[10];

#endif
