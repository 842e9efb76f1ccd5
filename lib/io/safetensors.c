// safetensors reader and writer (see safetensors.h; validation rules: model-format.md and
// shared/notes/serving.md §2.2, the reference reader's).
#include "io/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct rr_safetensors {
    rr_st_tensor *tensors; // ascending begin
    size_t ntensors;
    const rr_st_tensor **by_name; // sorted by name, for binary search
    char **meta_keys, **meta_values;
    size_t nmeta;
};

static int cmp_begin(const void *a, const void *b)
{
    const rr_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const rr_st_tensor *const *)a)->name, (*(const rr_st_tensor *const *)b)->name);
}

void rr_safetensors_free(rr_safetensors *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->ntensors; i++)
        free((char *)st->tensors[i].name);
    free(st->tensors);
    free(st->by_name);
    for (size_t i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st);
}

static uint64_t read_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

// Parses one tensor entry `obj` named `name` into t (name not yet set).
static rr_status parse_entry(const char *name, json_t *obj, size_t data_len, rr_st_tensor *t,
                             rr_error *err)
{
    if (!json_is_object(obj))
        return rr_error_set(err, RR_EFORMAT, name, "header entry '%.80s' is not an object", name);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return rr_error_set(err, RR_EFORMAT, name, "tensor '%.80s' has unknown member '%.40s'",
                                name, key);
    }
    json_t *dt = json_object_get(obj, "dtype"), *shape = json_object_get(obj, "shape"),
           *offs = json_object_get(obj, "data_offsets");
    if (!dt || !shape || !offs)
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s' needs dtype, shape and data_offsets", name);
    if (!json_is_string(dt))
        return rr_error_set(err, RR_EFORMAT, name, "tensor '%.80s': dtype must be a string", name);
    if (!rr_dtype_from_name(json_string_value(dt), json_string_length(dt), &t->dtype))
        return rr_error_set(err, RR_EFORMAT, name, "tensor '%.80s': unknown dtype '%.20s'", name,
                            json_string_value(dt));
    if (!json_is_array(shape))
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s': shape must be an array of integers", name);
    size_t nd = json_array_size(shape);
    if (nd > RR_MAX_DIMS)
        return rr_error_set(err, RR_EUNSUPPORTED, name,
                            "tensor '%.80s' has %zu dimensions, at most %d are supported", name, nd,
                            RR_MAX_DIMS);
    t->shape.ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return rr_error_set(err, RR_EFORMAT, name,
                                "tensor '%.80s': shape entries must be non-negative integers",
                                name);
        t->shape.dim[i] = json_integer_value(d);
    }
    size_t bits;
    if (!rr_shape_numel(&t->shape, &t->numel) ||
        !rr_size_mul(t->numel, rr_dtype_bits(t->dtype), &bits))
        return rr_error_set(err, RR_EFORMAT, name, "tensor '%.80s': shape product overflows", name);
    if (bits % 8)
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s': %zu elements of %s do not fill whole bytes", name,
                            t->numel, rr_dtype_name(t->dtype));
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)) ||
        json_integer_value(json_array_get(offs, 0)) < 0 ||
        json_integer_value(json_array_get(offs, 1)) < 0)
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s': data_offsets must be two non-negative integers", name);
    uint64_t b = (uint64_t)json_integer_value(json_array_get(offs, 0));
    uint64_t e = (uint64_t)json_integer_value(json_array_get(offs, 1));
    if (b > e)
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s': data_offsets [%llu, %llu] end before they begin", name,
                            (unsigned long long)b, (unsigned long long)e);
    if (e > data_len)
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s': data_offsets end at %llu, beyond the %zu data bytes",
                            name, (unsigned long long)e, data_len);
    t->begin = (size_t)b;
    t->nbytes = (size_t)(e - b);
    if (t->nbytes != bits / 8)
        return rr_error_set(err, RR_EFORMAT, name,
                            "tensor '%.80s': %zu bytes for %zu elements of %s (expected %zu)", name,
                            t->nbytes, t->numel, rr_dtype_name(t->dtype), bits / 8);
    return RR_OK;
}

static rr_status parse_metadata(json_t *meta, rr_safetensors *st, rr_error *err)
{
    if (!json_is_object(meta))
        return rr_error_set(err, RR_EFORMAT, "__metadata__",
                            "__metadata__ must be an object of strings");
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof(char *));
    st->meta_values = calloc(n ? n : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val)
    {
        if (!json_is_string(val))
            return rr_error_set(err, RR_EFORMAT, "__metadata__",
                                "__metadata__ value for '%.80s' is not a string", key);
        st->meta_keys[st->nmeta] = strdup(key);
        st->meta_values[st->nmeta] = strdup(json_string_value(val));
        st->nmeta++;
        if (!st->meta_keys[st->nmeta - 1] || !st->meta_values[st->nmeta - 1])
            return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    }
    return RR_OK;
}

// The 8-byte header length N: within max_header and the file; the data section follows.
static rr_status header_length(const uint8_t *buf, size_t len, size_t max_header, uint64_t *N,
                               rr_error *err)
{
    if (len < 8)
        return rr_error_set(err, RR_EFORMAT, "header",
                            "safetensors file of %zu bytes is shorter than its 8-byte header "
                            "length",
                            len);
    *N = read_u64le(buf);
    if (*N > max_header)
        return rr_error_set(err, RR_EFORMAT, "header",
                            "safetensors header length %llu exceeds the limit of %zu bytes",
                            (unsigned long long)*N, max_header);
    if (*N > len - 8)
        return rr_error_set(err, RR_EFORMAT, "header",
                            "safetensors header length %llu runs past the end of the %zu-byte "
                            "file",
                            (unsigned long long)*N, len);
    return RR_OK;
}

// The header's entries into st: metadata, and one tensor per other member.
static rr_status parse_header(json_t *root, size_t data_len, rr_safetensors *st, rr_error *err)
{
    if (!json_is_object(root))
        return rr_error_set(err, RR_EFORMAT, "header", "safetensors header is not a JSON object");
    size_t n = json_object_size(root);
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->by_name = calloc(n ? n : 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name)
        return rr_error_set(err, RR_ENOMEM, "", "out of memory");
    const char *key;
    json_t *val;
    rr_status rc;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(val, st, err)))
                return rc;
            continue;
        }
        rr_st_tensor *t = &st->tensors[st->ntensors];
        if ((rc = parse_entry(key, val, data_len, t, err)))
            return rc;
        if ((t->name = strdup(key)) == NULL)
            return rr_error_set(err, RR_ENOMEM, "", "out of memory");
        st->ntensors++;
    }
    return RR_OK;
}

// Sorted by offset, the tensors must tile the data section exactly: no gap, no overlap, no
// trailing bytes (overlap is a known amplification attack). Points each tensor at its bytes
// and sorts the name index.
static rr_status tile_data(rr_safetensors *st, const uint8_t *data, size_t data_len, rr_error *err)
{
    qsort(st->tensors, st->ntensors, sizeof *st->tensors, cmp_begin);
    size_t expect = 0;
    for (size_t i = 0; i < st->ntensors; i++) {
        rr_st_tensor *t = &st->tensors[i];
        if (t->begin != expect)
            return rr_error_set(err, RR_EFORMAT, t->name,
                                "tensor '%.80s' begins at byte %zu of the data, expected %zu "
                                "(tensors must be contiguous, without gaps or overlaps)",
                                t->name, t->begin, expect);
        expect = t->begin + t->nbytes;
        t->data = data + t->begin;
        st->by_name[i] = t;
    }
    if (expect != data_len)
        return rr_error_set(err, RR_EFORMAT, "header",
                            "the tensors cover %zu bytes but the file holds %zu data bytes", expect,
                            data_len);
    qsort(st->by_name, st->ntensors, sizeof *st->by_name, cmp_name);
    return RR_OK;
}

rr_status rr_safetensors_parse(const uint8_t *buf, size_t len, size_t max_header,
                               rr_safetensors **out, rr_error *err)
{
    *out = NULL;
    if (max_header == 0)
        max_header = RR_ST_DEFAULT_MAX_HEADER;
    uint64_t N = 0;
    rr_status rc = header_length(buf, len, max_header, &N, err);
    if (rc != RR_OK)
        return rc;
    const size_t data_len = len - 8 - (size_t)N;
    const uint8_t *data = buf + 8 + N;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)N, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return rr_error_set(err, RR_EFORMAT, "header",
                            "safetensors header is not valid JSON: %s (line %d, column %d, byte "
                            "%d)",
                            jerr.text, jerr.line, jerr.column, jerr.position);
    rr_safetensors *st = calloc(1, sizeof *st);
    if (st == NULL)
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
    else if ((rc = parse_header(root, data_len, st, err)) == RR_OK)
        rc = tile_data(st, data, data_len, err);
    json_decref(root);
    if (rc != RR_OK) {
        rr_safetensors_free(st);
        return rc;
    }
    *out = st;
    return RR_OK;
}

size_t rr_safetensors_count(const rr_safetensors *st)
{
    return st->ntensors;
}

const rr_st_tensor *rr_safetensors_at(const rr_safetensors *st, size_t i)
{
    return i < st->ntensors ? &st->tensors[i] : NULL;
}

const rr_st_tensor *rr_safetensors_find(const rr_safetensors *st, const char *name)
{
    size_t lo = 0, hi = st->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0)
            return st->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t rr_safetensors_metadata_count(const rr_safetensors *st)
{
    return st->nmeta;
}

const char *rr_safetensors_metadata_key(const rr_safetensors *st, size_t i)
{
    return i < st->nmeta ? st->meta_keys[i] : NULL;
}

const char *rr_safetensors_metadata_value(const rr_safetensors *st, size_t i)
{
    return i < st->nmeta ? st->meta_values[i] : NULL;
}

const char *rr_safetensors_metadata(const rr_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_values[i];
    return NULL;
}

rr_status rr_st_tensor_to_f32(const rr_st_tensor *t, float *dst, rr_error *err)
{
    if (!rr_dtype_is_float(t->dtype))
        return rr_error_set(err, RR_EDTYPE, t->name, "unsupported dtype %s for tensor %s",
                            rr_dtype_name(t->dtype), t->name);
    rr_convert_to_f32(dst, t->data, t->dtype, t->numel);
    return RR_OK;
}

rr_status rr_st_tensor_to_i64(const rr_st_tensor *t, int64_t *dst, rr_error *err)
{
    if (t->dtype == RR_DTYPE_I64) {
        memcpy(dst, t->data, t->numel * sizeof(int64_t));
    } else if (t->dtype == RR_DTYPE_I32) {
        for (size_t i = 0; i < t->numel; i++) {
            int32_t v;
            memcpy(&v, t->data + 4 * i, 4);
            dst[i] = v;
        }
    } else {
        return rr_error_set(err, RR_EDTYPE, t->name, "unsupported dtype %s for tensor %s",
                            rr_dtype_name(t->dtype), t->name);
    }
    return RR_OK;
}

// ---- writer ----

typedef struct wtensor {
    char *name;
    rr_dtype dtype;
    rr_shape shape;
    size_t nbytes;
    const void *data;
} wtensor;

struct rr_st_writer {
    wtensor *t;
    size_t n, cap;
    json_t *meta; // object of strings, NULL until set
};

rr_st_writer *rr_st_writer_new(void)
{
    return calloc(1, sizeof(rr_st_writer));
}

void rr_st_writer_free(rr_st_writer *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

rr_status rr_st_writer_add(rr_st_writer *w, const char *name, rr_dtype dtype, const int64_t *shape,
                           int ndim, const void *data, rr_error *err)
{
    if (name == NULL || *name == '\0' || strcmp(name, "__metadata__") == 0)
        return rr_error_set(err, RR_EINVAL, "name", "invalid tensor name");
    if (ndim < 0 || ndim > RR_MAX_DIMS || (unsigned)dtype >= RR_DTYPE_COUNT)
        return rr_error_set(err, RR_EINVAL, name, "tensor '%.80s': invalid rank or dtype", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return rr_error_set(err, RR_EINVAL, name, "tensor '%.80s' added twice", name);
    rr_shape s = {.ndim = ndim};
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return rr_error_set(err, RR_EINVAL, name, "tensor '%.80s': negative dimension", name);
        s.dim[i] = shape[i];
    }
    size_t numel, bits;
    if (!rr_shape_numel(&s, &numel) || !rr_size_mul(numel, rr_dtype_bits(dtype), &bits) || bits % 8)
        return rr_error_set(err, RR_EINVAL, name, "tensor '%.80s': invalid size", name);
    if (w->n == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 8;
        wtensor *t = realloc(w->t, ncap * sizeof *t);
        if (t == NULL)
            return rr_error_set(err, RR_ENOMEM, name, "out of memory");
        w->t = t;
        w->cap = ncap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return rr_error_set(err, RR_ENOMEM, name, "out of memory");
    w->t[w->n++] =
        (wtensor){.name = copy, .dtype = dtype, .shape = s, .nbytes = bits / 8, .data = data};
    return RR_OK;
}

rr_status rr_st_writer_set_metadata(rr_st_writer *w, const char *key, const char *value,
                                    rr_error *err)
{
    if (w->meta == NULL && (w->meta = json_object()) == NULL)
        return rr_error_set(err, RR_ENOMEM, "__metadata__", "out of memory");
    json_t *v = json_string(value);
    if (v == NULL || json_object_set_new(w->meta, key, v) != 0)
        return rr_error_set(err, RR_EINVAL, "__metadata__",
                            "metadata '%.80s' is not valid UTF-8 or out of memory", key);
    return RR_OK;
}

// Reference writer order: descending element size, then name.
static int cmp_write(const void *a, const void *b)
{
    const wtensor *x = *(wtensor *const *)a, *y = *(wtensor *const *)b;
    unsigned bx = rr_dtype_bits(x->dtype), by = rr_dtype_bits(y->dtype);
    if (bx != by)
        return bx > by ? -1 : 1;
    return strcmp(x->name, y->name);
}

rr_status rr_st_writer_finish(rr_st_writer *w, uint8_t **out, size_t *len, rr_error *err)
{
    *out = NULL;
    *len = 0;
    rr_status rc = RR_OK;
    char *hdr = NULL;
    wtensor **order = calloc(w->n ? w->n : 1, sizeof *order);
    json_t *root = json_object();
    if (!order || !root) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < w->n; i++)
        order[i] = &w->t[i];
    qsort(order, w->n, sizeof *order, cmp_write);
    if (w->meta && json_object_set(root, "__metadata__", w->meta) != 0) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto out;
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        wtensor *t = order[i];
        json_t *shape = json_array();
        json_t *entry =
            json_pack("{s:s, s:o, s:[I, I]}", "dtype", rr_dtype_name(t->dtype), "shape", shape,
                      "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        int bad = entry == NULL;
        for (int d = 0; !bad && d < t->shape.ndim; d++)
            bad = json_array_append_new(shape, json_integer(t->shape.dim[d])) != 0;
        if (bad || json_object_set_new(root, t->name, entry) != 0) {
            rc = rr_error_set(err, RR_EINVAL, t->name,
                              "tensor name '%.80s' is not valid UTF-8, or out of memory", t->name);
            goto out;
        }
        off += t->nbytes;
    }
    hdr = json_dumps(root, JSON_COMPACT);
    if (hdr == NULL) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory");
        goto out;
    }
    size_t hl = strlen(hdr), padded = (8 + hl + 7) / 8 * 8 - 8, total;
    if (!rr_size_add(8 + padded, off, &total)) {
        rc = rr_error_set(err, RR_ENOMEM, "", "file too large");
        goto out;
    }
    uint8_t *buf = malloc(total ? total : 1);
    if (buf == NULL) {
        rc = rr_error_set(err, RR_ENOMEM, "", "out of memory for a %zu-byte file", total);
        goto out;
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    uint8_t *p = buf + 8 + padded;
    for (size_t i = 0; i < w->n; i++) {
        if (order[i]->nbytes)
            memcpy(p, order[i]->data, order[i]->nbytes);
        p += order[i]->nbytes;
    }
    *out = buf;
    *len = total;
out:
    free(hdr);
    json_decref(root);
    free(order);
    return rc;
}
