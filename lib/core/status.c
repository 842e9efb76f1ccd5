// Status names and the error record (see status.h).
#include "core/status.h"

#include <stdarg.h>
#include <string.h>

const char *rr_status_str(rr_status s)
{
    switch (s) {
        case RR_OK:
            return "ok";
        case RR_ENOMEM:
            return "out of memory";
        case RR_EINVAL:
            return "invalid argument";
        case RR_ESHAPE:
            return "shape mismatch";
        case RR_EFORMAT:
            return "malformed input";
        case RR_ENONFINITE:
            return "non-finite value";
        case RR_ENOTFOUND:
            return "not found";
        case RR_EUNSUPPORTED:
            return "unsupported";
        case RR_EIO:
            return "i/o error";
        case RR_ECANCELLED:
            return "cancelled";
        case RR_EINTERNAL:
            return "internal error";
        case RR_EDTYPE:
            return "unsupported dtype";
    }
    return "unknown status";
}

rr_status rr_error_set(rr_error *err, rr_status code, const char *field, const char *fmt, ...)
{
    if (err == NULL || err->code != RR_OK)
        return code;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void rr_error_clear(rr_error *err)
{
    if (err != NULL)
        memset(err, 0, sizeof *err);
}
