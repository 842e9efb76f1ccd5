// The library's version: the one place it is written. The Makefile reads these three numbers
// for the shared library's file name and soname and for relureg.pc, so a release changes them
// here and nowhere else.
//
// RR_VERSION* describe the headers a program was compiled against; rr_version() the library it
// runs with (they differ when a program built against one release loads another's .so).
// Until 1.0 the API may change in any minor release: the soname carries major.minor.
#ifndef RR_CORE_VERSION_H
#define RR_CORE_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define RR_VERSION_MAJOR 0
#define RR_VERSION_MINOR 1
#define RR_VERSION_PATCH 0

#define RR__STR(x)  #x
#define RR__XSTR(x) RR__STR(x)
// "0.1.0"
#define RR_VERSION                                                                                 \
    RR__XSTR(RR_VERSION_MAJOR) "." RR__XSTR(RR_VERSION_MINOR) "." RR__XSTR(RR_VERSION_PATCH)
// 0xMMmmpp, for comparisons in the preprocessor: #if RR_VERSION_HEX >= 0x000100
#define RR_VERSION_HEX ((RR_VERSION_MAJOR << 16) | (RR_VERSION_MINOR << 8) | RR_VERSION_PATCH)

// The version of the library linked at run time, "major.minor.patch"; static storage. Thread
// safe (a constant).
const char *rr_version(void);

#ifdef __cplusplus
}
#endif

#endif
