// GET / and GET /static/*: the dashboard page and its assets, from --static-dir. Paths are
// checked segment by segment (no "..", no hidden files); only regular files inside the folder
// once symbolic links are resolved are served.
#define _DEFAULT_SOURCE // realpath
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "routes.h"

static const char *media_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".mjs", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".json", "application/json"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".txt", "text/plain; charset=utf-8"}};
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

void rrd_route_static(rrd_request *r)
{
    const char *rel = strcmp(r->url, "/") == 0 ? "index.html" : r->url + strlen("/static/");
    // Every segment must be a plain name.
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || p[0] == '.') {
            rrd_problem(r, RRD_P_NOT_FOUND, NULL, "no file at %s", r->url);
            return;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", r->srv->cfg.static_dir, rel);
    // A symbolic link inside the folder may point anywhere (/etc/passwd): the file served is
    // the one the path resolves to, and only when that lies inside the resolved folder. The
    // resolved path is opened without following a link again.
    char *real = realpath(path, NULL), *root = realpath(r->srv->cfg.static_dir, NULL);
    const size_t rn = root ? strlen(root) : 0;
    const bool inside = real && root && strncmp(real, root, rn) == 0 &&
                        (real[rn] == '/' || (rn > 0 && root[rn - 1] == '/'));
    const int fd = inside ? open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    free(real);
    free(root);
    struct stat sb;
    FILE *f = fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? fdopen(fd, "rb") : NULL;
    if (f == NULL && fd >= 0)
        close(fd);
    if (f == NULL) {
        rrd_problem(r, RRD_P_NOT_FOUND, NULL, "no file at %s", r->url);
        return;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
    fclose(f);
    if (buf == NULL || n != (size_t)sb.st_size) {
        free(buf);
        rrd_problem(r, RRD_P_UNAVAILABLE, NULL, "cannot read %s", r->url);
        return;
    }
    rrd_respond_take(r, 200, media_type(path), buf, n);
    rrd_add_header(r, "Cache-Control", "no-cache");
}
