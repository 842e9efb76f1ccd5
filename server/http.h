// libmicrohttpd callbacks of reluregd (http.c).
#ifndef RRD_HTTP_H
#define RRD_HTTP_H

#include "server.h"

enum MHD_Result rrd_http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls);
void rrd_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe);

#endif
