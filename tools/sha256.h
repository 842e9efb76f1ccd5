// SHA-256 (FIPS 180-4) for relureg-eval's provenance fields: the model file and the data slice
// a part was computed from. Incremental: init, update any number of times, final.
#ifndef RR_TOOLS_SHA256_H
#define RR_TOOLS_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256 {
    uint32_t h[8];
    uint64_t len; // bytes so far
    uint8_t buf[64];
    size_t nbuf;
} sha256;

void sha256_init(sha256 *s);
void sha256_update(sha256 *s, const void *data, size_t n);
// The digest as 64 lowercase hex digits and a NUL into hex[65].
void sha256_final_hex(sha256 *s, char hex[65]);

#endif
