// IDX reader over zlib (see idx.h).
#include "train/idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *rr_fashion_mnist_class_name(int k)
{
    static const char *const names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                          "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                          "Bag",         "Ankle boot"};
    return k >= 0 && k < 10 ? names[k] : NULL;
}

static rr_status read_exact(gzFile f, void *buf, size_t n, const char *path, rr_error *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0)
            return rr_error_set(err, RR_EFORMAT, "path", "%s: truncated IDX data", path);
        p += got;
        n -= (size_t)got;
    }
    return RR_OK;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

// Opens an IDX file of unsigned bytes with nd dimensions; returns the sizes.
static rr_status open_idx(const char *path, int nd, uint32_t *dims, gzFile *out, rr_error *err)
{
    gzFile f = gzopen(path, "rb");
    if (f == NULL)
        return rr_error_set(err, RR_EIO, "path", "cannot open %s: %s", path,
                            errno ? strerror(errno) : "gzopen failed");
    unsigned char hdr[4 + 4 * 3];
    rr_status st = read_exact(f, hdr, 4 + 4 * (size_t)nd, path, err);
    if (st == RR_OK && (hdr[0] || hdr[1] || hdr[2] != 0x08 || hdr[3] != nd))
        st = rr_error_set(err, RR_EFORMAT, "path",
                          "%s is not an IDX file of unsigned bytes with %d dimensions", path, nd);
    for (int i = 0; st == RR_OK && i < nd; i++)
        dims[i] = be32(hdr + 4 + 4 * i);
    if (st != RR_OK) {
        gzclose(f);
        return st;
    }
    *out = f;
    return RR_OK;
}

rr_status rr_idx_load(const char *images_gz, const char *labels_gz, size_t offset, size_t limit,
                      rr_dataset *out, rr_error *err)
{
    memset(out, 0, sizeof *out);
    gzFile fi = NULL, fl = NULL;
    uint32_t di[3], dl[1];
    unsigned char *raw = NULL;
    rr_status st;
    if ((st = open_idx(images_gz, 3, di, &fi, err)) || (st = open_idx(labels_gz, 1, dl, &fl, err)))
        goto out;
    if (di[0] != dl[0]) {
        st = rr_error_set(err, RR_EFORMAT, "path", "%u images but %u labels", di[0], dl[0]);
        goto out;
    }
    if (offset > di[0])
        offset = di[0];
    size_t n = di[0] - offset;
    if (limit && limit < n)
        n = limit;
    const size_t px = (size_t)di[1] * di[2];
    if (gzseek(fi, (z_off_t)(16 + offset * px), SEEK_SET) < 0 ||
        gzseek(fl, (z_off_t)(8 + offset), SEEK_SET) < 0) {
        st = rr_error_set(err, RR_EFORMAT, "path", "cannot seek to sample %zu", offset);
        goto out;
    }
    out->images = malloc((n ? n : 1) * px * sizeof(float));
    out->labels = malloc((n ? n : 1) * sizeof(int64_t));
    raw = malloc((n ? n : 1) * px);
    if (!out->images || !out->labels || !raw) {
        st = rr_error_set(err, RR_ENOMEM, "", "out of memory for %zu images", n);
        goto out;
    }
    if ((st = read_exact(fi, raw, n * px, images_gz, err)))
        goto out;
    for (size_t i = 0; i < n * px; i++)
        out->images[i] = (float)raw[i] / 255.0f;
    if ((st = read_exact(fl, raw, n, labels_gz, err)))
        goto out;
    for (size_t i = 0; i < n; i++)
        out->labels[i] = raw[i];
    out->n = n;
    out->rows = di[1];
    out->cols = di[2];
out:
    free(raw);
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    if (st != RR_OK)
        rr_dataset_clear(out);
    return st;
}

rr_status rr_fashion_mnist_load(const char *dir, bool train, size_t offset, size_t limit,
                                rr_dataset *out, rr_error *err)
{
    char im[512], lb[512];
    const char *split = train ? "train" : "t10k";
    if (dir == NULL)
        return rr_error_set(err, RR_EINVAL, "dir", "no directory given for Fashion-MNIST");
    snprintf(im, sizeof im, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lb, sizeof lb, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    return rr_idx_load(im, lb, offset, limit, out, err);
}

void rr_dataset_clear(rr_dataset *d)
{
    if (d == NULL)
        return;
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
