// safetensors reader and writer: round trips of every float dtype, scalars, empty tensors,
// JSON-pointer and unicode names and metadata; unaligned data read correctly; and the case
// folders tests/cases/safetensors/<case>/{input.bin, expect}, one per rejection listed in
// model-format.md plus corruptions of a valid file, each expected status + message substring.
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"
#include "rr_test.h"

#define CASES_DIR "tests/cases/safetensors"

Test(safetensors, round_trip_every_float_dtype_and_names)
{
    rr_error err = {0};
    rr_st_writer *w = rr_st_writer_new();
    const float f[3] = {1.5f, -2.0f, 3.25f};
    const double d[2] = {0.1, -7.0};
    const uint16_t h[2] = {0x3c00, 0xc000}; // F16 1, -2
    const uint16_t bf[1] = {0x3f80};        // BF16 1
    const int64_t s = 42, shape3[1] = {3}, shape2[1] = {2}, shape1[1] = {1}, empty[2] = {0, 5};
    cr_assert_eq(rr_st_writer_add(w, "/regularizers/0/grad_parameters/3.body.0.weight",
                                  RR_DTYPE_F32, shape3, 1, f, &err),
                 RR_OK);
    cr_assert_eq(rr_st_writer_add(w, "d", RR_DTYPE_F64, shape2, 1, d, &err), RR_OK);
    cr_assert_eq(rr_st_writer_add(w, "h\xc3\xa9", RR_DTYPE_F16, shape2, 1, h, &err), RR_OK);
    cr_assert_eq(rr_st_writer_add(w, "bf", RR_DTYPE_BF16, shape1, 1, bf, &err), RR_OK);
    cr_assert_eq(rr_st_writer_add(w, "scalar", RR_DTYPE_I64, NULL, 0, &s, &err), RR_OK);
    cr_assert_eq(rr_st_writer_add(w, "empty", RR_DTYPE_F32, empty, 2, NULL, &err), RR_OK);
    cr_expect_eq(rr_st_writer_add(w, "d", RR_DTYPE_F32, shape1, 1, f, NULL), RR_EINVAL,
                 "duplicate names are refused");
    cr_assert_eq(rr_st_writer_set_metadata(w, "k", "v", &err), RR_OK);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(rr_st_writer_finish(w, &buf, &len, &err), RR_OK, "%s", err.msg);
    rr_st_writer_free(w);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    cr_expect_eq((8 + n) % 8, 0, "header padded to a multiple of 8");

    rr_safetensors *st = NULL;
    cr_assert_eq(rr_safetensors_parse(buf, len, 0, &st, &err), RR_OK, "%s", err.msg);
    cr_expect_eq(rr_safetensors_count(st), 6);
    cr_expect_str_eq(rr_safetensors_metadata(st, "k"), "v");
    float got[3];
    cr_assert_eq(
        rr_st_tensor_to_f32(
            rr_safetensors_find(st, "/regularizers/0/grad_parameters/3.body.0.weight"), got, &err),
        RR_OK);
    cr_expect(memcmp(got, f, sizeof f) == 0);
    cr_assert_eq(rr_st_tensor_to_f32(rr_safetensors_find(st, "d"), got, &err), RR_OK);
    cr_expect(got[0] == 0.1f && got[1] == -7.0f);
    cr_assert_eq(rr_st_tensor_to_f32(rr_safetensors_find(st, "h\xc3\xa9"), got, &err), RR_OK);
    cr_expect(got[0] == 1.0f && got[1] == -2.0f);
    cr_assert_eq(rr_st_tensor_to_f32(rr_safetensors_find(st, "bf"), got, &err), RR_OK);
    cr_expect(got[0] == 1.0f);
    int64_t sv;
    const rr_st_tensor *ts = rr_safetensors_find(st, "scalar");
    cr_expect_eq(ts->shape.ndim, 0);
    cr_expect_eq(ts->numel, 1);
    cr_assert_eq(rr_st_tensor_to_i64(ts, &sv, &err), RR_OK);
    cr_expect_eq(sv, 42);
    const rr_st_tensor *te = rr_safetensors_find(st, "empty");
    cr_expect(te->numel == 0 && te->nbytes == 0 && te->shape.dim[1] == 5);
    // Element size descending, then name: F64 and I64 first.
    cr_expect(rr_safetensors_at(st, 0)->dtype == RR_DTYPE_F64 ||
              rr_safetensors_at(st, 0)->dtype == RR_DTYPE_I64);
    rr_error e2 = {0};
    cr_expect_eq(rr_st_tensor_to_i64(rr_safetensors_find(st, "d"), &sv, &e2), RR_EDTYPE);
    cr_expect_str_eq(e2.msg, "unsupported dtype F64 for tensor d");
    cr_expect_str_eq(e2.field, "d");
    rr_safetensors_free(st);
    free(buf);
}

Test(safetensors, reads_unaligned_tensors_through_memcpy)
{
    // A header of odd length, no padding: the F32 data starts at an odd address.
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const size_t hl = strlen(hdr);
    cr_assert(hl % 2 == 1 || hl % 4 != 0);
    uint8_t *buf = malloc(8 + hl + 8 + 1), *p = buf + 1; // +1: misalign the whole file too
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(p + 8, hdr, hl);
    const float v[2] = {3.5f, -1.25f};
    memcpy(p + 8 + hl, v, 8);
    rr_safetensors *st = NULL;
    rr_error err = {0};
    cr_assert_eq(rr_safetensors_parse(p, 8 + hl + 8, 0, &st, &err), RR_OK, "%s", err.msg);
    float got[2];
    const rr_st_tensor *t = rr_safetensors_find(st, "x");
    cr_expect(((uintptr_t)t->data & 3) != 0, "the test data should be misaligned");
    cr_assert_eq(rr_st_tensor_to_f32(t, got, &err), RR_OK);
    cr_expect(got[0] == 3.5f && got[1] == -1.25f);
    rr_safetensors_free(st);
    free(buf);
}

Test(safetensors, header_cap_is_configurable)
{
    const char *hdr = "{}      ";
    uint8_t buf[16] = {8};
    memcpy(buf + 8, hdr, 8);
    rr_safetensors *st = NULL;
    cr_expect_eq(rr_safetensors_parse(buf, 16, 4, &st, NULL), RR_EFORMAT, "a 4-byte cap");
    cr_expect_eq(rr_safetensors_parse(buf, 16, 8, &st, NULL), RR_OK);
    rr_safetensors_free(st);
}

static const char *status_for(const char *name)
{
    for (int s = RR_OK; s < RR_STATUS_COUNT; s++)
        if (strcmp(rr_status_str((rr_status)s), name) == 0)
            return rr_status_str((rr_status)s);
    return NULL;
}

Test(safetensors, case_folders)
{
    DIR *d = opendir(CASES_DIR);
    cr_assert_not_null(d, "cannot open %s (run from the repository root)", CASES_DIR);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".py"))
            continue;
        char path[512], expect_status[64] = "", needle[256] = "";
        snprintf(path, sizeof path, "%s/%s/expect", CASES_DIR, e->d_name);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "%s: no expect file", e->d_name);
        cr_assert(fgets(expect_status, sizeof expect_status, f) != NULL);
        if (fgets(needle, sizeof needle, f) == NULL)
            needle[0] = '\0';
        fclose(f);
        expect_status[strcspn(expect_status, "\n")] = '\0';
        needle[strcspn(needle, "\n")] = '\0';
        cr_assert_not_null(status_for(expect_status), "%s: unknown status '%s'", e->d_name,
                           expect_status);
        snprintf(path, sizeof path, "%s/%s/input.bin", CASES_DIR, e->d_name);
        size_t len;
        uint8_t *buf = rr_test_read_file(path, &len);
        cr_assert_not_null(buf);
        rr_safetensors *st = NULL;
        rr_error err = {0};
        rr_status got = rr_safetensors_parse(buf, len, 0, &st, &err);
        cr_expect_str_eq(rr_status_str(got), expect_status, "%s: expected %s, got %s (%s)",
                         e->d_name, expect_status, rr_status_str(got), err.msg);
        cr_expect(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", e->d_name,
                  err.msg, needle);
        if (got == RR_OK) // a valid file converts every float tensor
            for (size_t i = 0; i < rr_safetensors_count(st); i++) {
                const rr_st_tensor *t = rr_safetensors_at(st, i);
                float *tmp = malloc((t->numel + 1) * sizeof(float));
                if (rr_dtype_is_float(t->dtype))
                    cr_expect_eq(rr_st_tensor_to_f32(t, tmp, NULL), RR_OK);
                free(tmp);
            }
        rr_safetensors_free(st);
        free(buf);
        n++;
    }
    closedir(d);
    cr_expect(n >= 25, "only %d safetensors cases", n);
}

// Every truncation of a valid file is rejected (never read past the end), none crashes.
Test(safetensors, every_truncation_of_a_valid_file_is_rejected)
{
    size_t len;
    uint8_t *buf = rr_test_read_file(CASES_DIR "/ok_two_tensors/input.bin", &len);
    cr_assert_not_null(buf);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        rr_safetensors *st = NULL;
        cr_expect_neq(rr_safetensors_parse(cut, n, 0, &st, NULL), RR_OK, "truncated to %zu", n);
        rr_safetensors_free(st);
        free(cut);
    }
    // and flipping any single byte of the header never crashes
    for (size_t i = 0; i < len; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, buf, len);
        c[i] ^= 0x5a;
        rr_safetensors *st = NULL;
        rr_safetensors_parse(c, len, 0, &st, NULL);
        rr_safetensors_free(st);
        free(c);
    }
    free(buf);
}
