// The run-time version (see version.h).
#include "core/version.h"

const char *rr_version(void)
{
    return RR_VERSION;
}
