// relureg: the command-line client of reluregd (the REST contract: shared/spec/api.md and
// api/openapi.yaml). One process sends one request with libcurl and renders the answer, either
// for people (one line per model or per sample) or, with --json, as the server's JSON re-indented
// with every token, numbers included, exactly as the server wrote it. Errors are RFC 9457
// problems printed as "relureg: <status> <title>: <detail>". Exit status: 0 success, 1 an error
// (server problem, connection, file), 2 a usage error.
// It uses libcurl and jansson only (not librelureg). Single-threaded; every allocation is
// checked and freed, and answers of any size are read into a growing buffer.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

// Exit statuses, also the return value of every command-level function.
enum { OK = 0, FAIL = 1, USAGE = 2 };

#define DEFAULT_URL       "http://127.0.0.1:8080"
#define FIRST_FEW         6 // per-sample values shown per regularizer in the human form
#define CONNECT_TIMEOUT_S 10L
#define TENSOR_PRECISION  9   // float32 round-trips through 9 significant digits (api.md)
#define POLL_MS           200 // how often jobs wait polls the job
#define BAR_WIDTH         30  // the progress bar's cells

// The synopsis, printed after a usage error, then the rest of --help.
static const char usage_text[] =
    "usage: relureg [--url URL] [--token FILE] [--json] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  list                            the models the server holds\n"
    "  put NAME FILE.safetensors       upload a model, or replace it (version + 1)\n"
    "  delete NAME                     unload a model\n"
    "  predict NAME INPUTS.json        predicted class and its probability per sample\n"
    "  regularizers NAME INPUTS.json --reg SPEC [--reg SPEC ...] [--gradients inputs,parameters]\n"
    "                                  regularizer values (and gradients)\n"
    "  attack NAME INPUTS.json --attack ATTACK [--norm linf|l2] [--epsilon E] [--steps N]\n"
    "         [--seed S] [--set KEY=VALUE ...] [--out ADV.json]\n"
    "                                  adversarial examples; --out writes the adversarial tensor\n"
    "  certify NAME INPUTS.json [--norm l2|linf]\n"
    "                                  linear-region certified radius per sample\n"
    "  jacobian NAME INPUTS.json [--of logits|log_probabilities]\n"
    "                                  the input Jacobian's shape and per-sample ||J||_F^2\n"
    "  connections NAME INPUTS.json [--h H]\n"
    "                                  the quantities that connect the regularizers\n"
    "  robustness NAME INPUTS.json --epsilons E,... [--norm linf|l2] [--attack ATTACK]\n"
    "         [--steps N] [--seed S] [--set KEY=VALUE ...] [--no-wait]\n"
    "                                  a robustness report, run as a job with a progress bar;\n"
    "                                  --no-wait prints the job id and returns\n"
    "  jobs status ID | jobs wait ID | jobs cancel ID\n"
    "                                  an async job: its state, wait for it (progress bar,\n"
    "                                  then its result), or cancel it\n";
static const char help_text[] =
    "\n"
    "options:\n"
    "  --url URL       the server (default $RELUREG_URL, else " DEFAULT_URL ")\n"
    "  --token FILE    file holding the bearer token for put and delete\n"
    "                  (default $RELUREG_TOKEN_FILE)\n"
    "  --json          print the server's JSON answer, pretty-printed, instead of the human form\n"
    "  --labels L,...  labels for the compute commands (replace the file's)\n"
    "  -h, --help      this help\n"
    "\n"
    "INPUTS.json is a request body object (\"inputs\", maybe \"labels\" and other fields), a bare\n"
    "JSON array of inputs, or a tensor object {\"shape\", \"datatype\", \"data\"} such as --out\n"
    "writes; \"-\" reads standard input. Command-line options replace the file's members.\n"
    "SPEC is name[:key=value,...], e.g. jacobian:estimator=projection,projections=2 or\n"
    "curvature:method=hessian. Values in JSON number syntax become numbers, true/false/null\n"
    "JSON literals, anything else a string; --set also takes JSON arrays and objects.\n"
    "For robustness, --attack, --steps, --seed and --set go into the \"attack\" object.\n"
    "The progress bar goes to standard error; the result to standard output.\n"
    "\n"
    "exit status: 0 success, 1 error (a problem answer, no connection, a bad file), 2 usage\n";

// ---- small utilities ----

static void oom(void)
{
    fprintf(stderr, "relureg: out of memory\n");
}

// Prints "relureg: <message>" and the usage to stderr; returns USAGE.
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("relureg: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    fputs(usage_text, stderr);
    fputs("(relureg --help describes the options)\n", stderr);
    return USAGE;
}

// A growing byte buffer, always NUL-terminated once non-empty. Owned by its user; buf_clear
// frees it.
typedef struct buf {
    char *data;
    size_t len; // bytes used, without the terminating NUL
    size_t cap; // bytes allocated
} buf;

static void buf_clear(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

// Appends n bytes; false when out of memory (the buffer is unchanged then).
static bool buf_append(buf *b, const void *data, size_t n)
{
    if (n > SIZE_MAX - 1 - b->len)
        return false;
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return false;
        b->data = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static bool buf_puts(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

// Concatenates a NULL-terminated list of strings. Returns owned memory (free), NULL when out of
// memory.
static char *str_cat(const char *first, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        size_t l = strlen(s);
        if (l > SIZE_MAX - 1 - n) {
            va_end(ap);
            return NULL;
        }
        n += l;
    }
    va_end(ap);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char *p = out;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        size_t l = strlen(s);
        memcpy(p, s, l);
        p += l;
    }
    va_end(ap);
    *p = '\0';
    return out;
}

// ---- command-line values as JSON ----

// A JSON string of s[0..n) into *out (owned). Returns OK, USAGE when s is not UTF-8 (message
// names `what`) or FAIL when out of memory.
static int string_new(const char *s, size_t n, const char *what, json_t **out)
{
    *out = json_stringn(s, n);
    if (*out)
        return OK;
    // json_stringn fails on invalid UTF-8 and when out of memory; tell them apart.
    json_t *raw = json_stringn_nocheck(s, n);
    if (raw) {
        json_decref(raw);
        return usage_error("%s: '%.*s' is not valid UTF-8", what, (int)n, s);
    }
    oom();
    return FAIL;
}

// Whether s is a number in JSON syntax (a leading '.' is also accepted, as in "0.5" written
// ".5"); *integral says it has neither fraction nor exponent.
static bool is_number(const char *s, bool *integral)
{
    const char *p = s;
    *integral = true;
    if (*p == '-')
        p++;
    bool digits = false;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits = true;
    }
    if (*p == '.') {
        *integral = false;
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
        digits = true;
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        *integral = false;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

// Turns the command-line value s of `what` into JSON: numbers (integers when integral and in
// range), true/false/null, with allow_json a JSON array or object, else a string. *out is owned.
// Returns OK, FAIL (out of memory) or USAGE (message printed).
static int value_parse(const char *s, bool allow_json, const char *what, json_t **out)
{
    bool integral;
    *out = NULL;
    if (is_number(s, &integral)) {
        if (integral) {
            errno = 0;
            char *end;
            long long v = strtoll(s, &end, 10);
            if (errno == 0 && *end == '\0') {
                *out = json_integer((json_int_t)v);
                goto done;
            }
        }
        errno = 0;
        double d = strtod(s, NULL);
        if (!isfinite(d))
            return usage_error("%s: %s is not a finite number", what, s);
        *out = json_real(d);
    } else if (strcmp(s, "true") == 0) {
        *out = json_true();
    } else if (strcmp(s, "false") == 0) {
        *out = json_false();
    } else if (strcmp(s, "null") == 0) {
        *out = json_null();
    } else if (allow_json && (s[0] == '[' || s[0] == '{')) {
        json_error_t e;
        *out = json_loads(s, JSON_REJECT_DUPLICATES, &e);
        if (!*out)
            return usage_error("%s: %s is not valid JSON: %s", what, s, e.text);
    } else {
        return string_new(s, strlen(s), what, out);
    }
done:
    if (!*out) {
        oom();
        return FAIL;
    }
    return OK;
}

// Splits s at commas into items (each non-empty) and calls item() on each, in order. Works on a
// copy; returns item()'s first non-OK status, FAIL when out of memory, USAGE for an empty item.
static int split_commas(const char *s, const char *what, int (*item)(const char *, void *),
                        void *ctx)
{
    char *copy = strdup(s);
    if (!copy) {
        oom();
        return FAIL;
    }
    int rc = OK;
    for (char *p = copy; rc == OK;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p == '\0')
            rc = usage_error("%s: empty item in '%s'", what, s);
        else
            rc = item(p, ctx);
        if (!comma)
            break;
        p = comma + 1;
    }
    free(copy);
    return rc;
}

// One item of a typed list (--labels, --epsilons, --gradients): parsed as a JSON value, checked
// by is(), appended to arr.
typedef struct typed_list {
    json_t *arr;
    const char *flag, *expected; // "--labels", "an integer"
    int (*is)(const json_t *);
} typed_list;

static int json_kind_integer(const json_t *v)
{
    return json_is_integer(v);
}
static int json_kind_number(const json_t *v)
{
    return json_is_number(v);
}
// "--gradients 1" is a mistake the server would also reject; say so here.
static int json_kind_string(const json_t *v)
{
    return json_is_string(v);
}

static int typed_item(const char *s, void *ctx)
{
    const typed_list *l = ctx;
    json_t *v;
    int rc = value_parse(s, false, l->flag, &v);
    if (rc != OK)
        return rc;
    if (!l->is(v)) {
        json_decref(v);
        return usage_error("%s: '%s' is not %s", l->flag, s, l->expected);
    }
    if (json_array_append_new(l->arr, v) != 0) {
        oom();
        return FAIL;
    }
    return OK;
}

// Adds "key=value" to the object ctx; a key given twice, or "name", is a usage error.
static int option_item(const char *s, void *ctx)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s)
        return usage_error("--reg: '%s' is not key=value", s);
    char *key = strndup(s, (size_t)(eq - s));
    if (!key) {
        oom();
        return FAIL;
    }
    int rc = OK;
    json_t *v = NULL;
    if (strcmp(key, "name") == 0 || json_object_get(ctx, key)) {
        rc = usage_error("--reg: '%s' is given twice", key);
        goto out;
    }
    rc = value_parse(eq + 1, false, "--reg", &v);
    if (rc != OK)
        goto out;
    if (json_object_set_new(ctx, key, v) != 0) {
        // set_new takes v on failure too; a key that is not UTF-8 is the likely cause.
        rc = usage_error("--reg: the key '%s' is not valid UTF-8", key);
    }
out:
    free(key);
    return rc;
}

// Parses a regularizer SPEC "name[:key=value,...]" into {"name": name, key: value, ...} and
// appends it to regs.
static int reg_parse(const char *spec, json_t *regs)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n == 0)
        return usage_error("--reg: '%s' has no regularizer name", spec);
    json_t *name, *reg = json_object();
    if (!reg) {
        oom();
        return FAIL;
    }
    int rc = string_new(spec, n, "--reg", &name);
    if (rc != OK)
        goto out;
    if (json_object_set_new(reg, "name", name) != 0) {
        oom();
        rc = FAIL;
        goto out;
    }
    if (colon && colon[1] == '\0') {
        rc = usage_error("--reg: '%s' has a ':' but no options", spec);
        goto out;
    }
    if (colon && (rc = split_commas(colon + 1, "--reg", option_item, reg)) != OK)
        goto out;
    if (json_array_append(regs, reg) != 0) {
        oom();
        rc = FAIL;
    }
out:
    json_decref(reg);
    return rc;
}

// ---- HTTP ----

typedef struct client {
    char *base; // the server URL without trailing slashes (owned)
    char *auth; // "Authorization: Bearer ..." (owned), NULL without --token
    bool json;  // --json: print answers verbatim
} client;

typedef struct response {
    long status; // HTTP status
    buf body;    // the answer's bytes (owned)
    bool oom;    // the body did not fit in memory
} response;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    response *r = ctx;
    // Returning less than given makes curl stop with CURLE_WRITE_ERROR.
    if ((size != 0 && nmemb > SIZE_MAX / size) || !buf_append(&r->body, data, size * nmemb)) {
        r->oom = true;
        return 0;
    }
    return size * nmemb;
}

static bool header_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return false;
    *list = l;
    return true;
}

// What a request sends: nothing, a JSON text (body, len) or a file (upload, upload_len; -1 when
// the size is unknown, which makes curl send it chunked).
typedef struct payload {
    const char *content_type;
    const char *body;
    size_t len;
    FILE *upload;
    curl_off_t upload_len;
} payload;

// Sends METHOD base+path and reads the whole answer into r (the caller clears r->body). With
// auth the bearer token goes along. Returns OK when an answer arrived (whatever its status),
// else FAIL with a message printed.
static int http(const client *c, const char *method, const char *path, const payload *p, bool auth,
                response *r)
{
    int rc = FAIL;
    char err[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    char *url = str_cat(c->base, path, NULL);
    char *ct = p && p->content_type ? str_cat("Content-Type: ", p->content_type, NULL) : NULL;
    CURL *h = curl_easy_init();
    if (!url || (p && p->content_type && !ct) || !h)
        goto oom;
    if (!header_add(&headers, "Accept: application/json"))
        goto oom;
    if (ct && !header_add(&headers, ct))
        goto oom;
    if (auth && c->auth && !header_add(&headers, c->auth))
        goto oom;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK)                                             \
            goto setopt;                                                                           \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, err);
    SET(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    // No CURLOPT_NOSIGNAL: this process has one thread, and without it curl ignores SIGPIPE
    // while it talks to a server that closes early (an early 401 or 413 during an upload).
    SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    SET(CURLOPT_USERAGENT, "relureg/1 libcurl/" LIBCURL_VERSION);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, r);
    if (p && p->upload) {
        // PUT, streamed from the file by curl's default read function (fread).
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READDATA, p->upload);
        SET(CURLOPT_INFILESIZE_LARGE, p->upload_len);
    } else if (p && p->body) {
        SET(CURLOPT_POSTFIELDS, p->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
        !(p && p->upload && strcmp(method, "PUT") == 0))
        SET(CURLOPT_CUSTOMREQUEST, method);
#undef SET

    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        if (r->oom) {
            fprintf(stderr, "relureg: %s %s: the answer does not fit in memory\n", method, url);
            goto out;
        }
        // The error buffer says more ("Failed to connect to ... port ...") than the code's text.
        fprintf(stderr, "relureg: %s %s: %s\n", method, url, err[0] ? err : curl_easy_strerror(cc));
        goto out;
    }
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status) != CURLE_OK) {
        fprintf(stderr, "relureg: %s %s: no HTTP status\n", method, url);
        goto out;
    }
    rc = OK;
    goto out;
setopt:
    fprintf(stderr, "relureg: this libcurl cannot be configured for the request (%s)\n",
            err[0] ? err : "curl_easy_setopt failed");
    goto out;
oom:
    oom();
out:
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    free(ct);
    free(url);
    return rc;
}

// ---- answers ----

// Writes the JSON text s[0..n) (already known to be valid) indented by two spaces, every token
// as the server wrote it: numbers keep their digits, strings their escapes.
static void print_pretty(FILE *f, const char *s, size_t n)
{
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        switch (ch) {
            case '"': {
                size_t j = i + 1;
                while (j < n && s[j] != '"')
                    j += s[j] == '\\' ? 2 : 1;
                size_t end = j < n ? j + 1 : n;
                fwrite(s + i, 1, end - i, f);
                i = end - 1;
                break;
            }
            case '{':
            case '[': {
                size_t j = i + 1;
                while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
                    j++;
                putc(ch, f);
                if (j < n && (s[j] == '}' || s[j] == ']')) {
                    putc(s[j], f); // {} and [] stay on one line
                    i = j;
                    break;
                }
                depth++;
                putc('\n', f);
                for (int k = 0; k < depth; k++)
                    fputs("  ", f);
                break;
            }
            case '}':
            case ']':
                depth--;
                putc('\n', f);
                for (int k = 0; k < depth; k++)
                    fputs("  ", f);
                putc(ch, f);
                break;
            case ',':
                putc(',', f);
                putc('\n', f);
                for (int k = 0; k < depth; k++)
                    fputs("  ", f);
                break;
            case ':':
                fputs(": ", f);
                break;
            case ' ':
            case '\t':
            case '\n':
            case '\r':
                break;
            default:
                putc(ch, f);
        }
    }
    putc('\n', f);
}

// Prints at most max bytes of s, control characters as '?', for a non-JSON error answer.
static void print_snippet(FILE *f, const char *s, size_t n, size_t max)
{
    for (size_t i = 0; i < n && i < max; i++)
        putc(iscntrl((unsigned char)s[i]) ? '?' : s[i], f);
    if (n > max)
        fputs("...", f);
}

// Turns an answer into a document. A non-2xx answer is a problem (RFC 9457): it is printed as
// "relureg: <status> <title>: <detail>" and FAIL returned. A 2xx answer with a body must be JSON;
// *doc gets it (owned; NULL for an empty body) and with --json it is printed.
static int answer(const client *c, const response *r, json_t **doc)
{
    *doc = NULL;
    const char *body = r->body.data ? r->body.data : "";
    json_error_t e;
    json_t *d = r->body.len ? json_loadb(body, r->body.len, 0, &e) : NULL;
    if (r->status < 200 || r->status > 299) {
        const char *title = json_string_value(json_object_get(d, "title"));
        const char *detail = json_string_value(json_object_get(d, "detail"));
        if (title) {
            fprintf(stderr, "relureg: %ld %s%s%s\n", r->status, title, detail ? ": " : "",
                    detail ? detail : "");
        } else {
            fprintf(stderr, "relureg: %ld (not a problem+json answer)%s", r->status,
                    r->body.len ? ": " : "");
            print_snippet(stderr, body, r->body.len, 200);
            putc('\n', stderr);
        }
        json_decref(d);
        return FAIL;
    }
    if (r->body.len && !d) {
        fprintf(stderr, "relureg: the server's answer is not JSON (%s at byte %d): ", e.text,
                e.position);
        print_snippet(stderr, body, r->body.len, 200);
        putc('\n', stderr);
        return FAIL;
    }
    if (c->json && d)
        print_pretty(stdout, body, r->body.len);
    *doc = d;
    return OK;
}

// ---- the human form ----

// Prints a JSON scalar left-aligned in width columns: integers as such, reals with 6 significant
// digits, null as null_as (api.md renders non-finite results as null), booleans yes/no.
static void put_value(json_t *v, int width, const char *null_as)
{
    if (json_is_integer(v))
        printf("%-*" JSON_INTEGER_FORMAT, width, json_integer_value(v));
    else if (json_is_real(v))
        printf("%-*.6g", width, json_real_value(v));
    else if (json_is_null(v))
        printf("%-*s", width, null_as);
    else if (json_is_boolean(v))
        printf("%-*s", width, json_is_true(v) ? "yes" : "no");
    else if (json_is_string(v))
        printf("%-*s", width, json_string_value(v));
    else
        printf("%-*s", width, "?");
}

// Prints ", key=value" (" (key=value" for the first), booleans as true/false.
static void put_option(const char *key, json_t *v, bool *first)
{
    printf("%s%s=", *first ? " (" : ", ", key);
    if (json_is_boolean(v))
        fputs(json_is_true(v) ? "true" : "false", stdout);
    else
        put_value(v, 0, "null");
    *first = false;
}

// Appends a shape array as "[1, 8, 8]" (or "?" when it is not one).
static bool shape_format(buf *b, json_t *shape)
{
    if (!json_is_array(shape))
        return buf_puts(b, "?");
    bool ok = buf_puts(b, "[");
    size_t i;
    json_t *d;
    json_array_foreach(shape, i, d)
    {
        char num[32]; // an integer needs at most 20 characters
        if (json_is_integer(d))
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(d));
        else
            snprintf(num, sizeof num, "?");
        ok = ok && (i == 0 || buf_puts(b, ", ")) && buf_puts(b, num);
    }
    return ok && buf_puts(b, "]");
}

static int render_list(json_t *doc)
{
    json_t *models = json_object_get(doc, "models");
    if (!json_is_array(models)) {
        fprintf(stderr, "relureg: the answer has no \"models\" array\n");
        return FAIL;
    }
    // Two passes: column widths first (names are up to 64 characters, shapes any length).
    int wname = 4, wshape = 11;
    size_t i;
    json_t *m;
    buf shape = {0};
    json_array_foreach(models, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        size_t l = name ? strlen(name) : 1;
        wname = l > (size_t)wname ? (l > 200 ? 200 : (int)l) : wname;
        shape.len = 0;
        if (!shape_format(&shape, json_object_get(m, "input_shape")))
            goto oom;
        wshape = shape.len > (size_t)wshape ? (shape.len > 200 ? 200 : (int)shape.len) : wshape;
    }
    printf("%-*s  %-7s  %-*s  %-7s  %-10s  %s\n", wname, "NAME", "VERSION", wshape, "INPUT_SHAPE",
           "CLASSES", "PARAMETERS", "LAYERS");
    json_array_foreach(models, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        shape.len = 0;
        if (!shape_format(&shape, json_object_get(m, "input_shape")))
            goto oom;
        printf("%-*s  ", wname, name ? name : "?");
        put_value(json_object_get(m, "version"), 7, "-");
        printf("  %-*s  ", wshape, shape.data);
        put_value(json_object_get(m, "num_classes"), 7, "-");
        fputs("  ", stdout);
        put_value(json_object_get(m, "parameter_count"), 10, "-");
        fputs("  ", stdout);
        put_value(json_object_get(m, "layers"), 0, "-");
        putc('\n', stdout);
    }
    buf_clear(&shape);
    return OK;
oom:
    buf_clear(&shape);
    oom();
    return FAIL;
}

// The flat data of a tensor in the object form {"shape", "datatype", "data"} and its number of
// rows (shape[0]); NULL when v is not one.
static json_t *tensor_data(json_t *v, size_t *rows)
{
    json_t *shape = json_object_get(v, "shape"), *data = json_object_get(v, "data");
    if (!json_is_array(data) || !json_is_array(shape) || json_array_size(shape) == 0 ||
        !json_is_integer(json_array_get(shape, 0)) ||
        json_integer_value(json_array_get(shape, 0)) <= 0)
        return NULL;
    *rows = (size_t)json_integer_value(json_array_get(shape, 0));
    return data;
}

static int render_predict(json_t *doc)
{
    json_t *pred = json_object_get(doc, "predictions");
    if (!json_is_array(pred)) {
        fprintf(stderr, "relureg: the answer has no \"predictions\" array\n");
        return FAIL;
    }
    size_t B = 0;
    json_t *probs = tensor_data(json_object_get(doc, "probabilities"), &B);
    size_t K = probs && B ? json_array_size(probs) / B : 0;
    printf("%-6s  %-5s  %s\n", "SAMPLE", "CLASS", "PROBABILITY");
    size_t b;
    json_t *v;
    json_array_foreach(pred, b, v)
    {
        printf("%-6zu  ", b);
        put_value(v, 5, "-");
        fputs("  ", stdout);
        // The top probability: the largest of the sample's row.
        json_t *top = NULL;
        for (size_t k = 0; b < B && k < K; k++) {
            json_t *p = json_array_get(probs, b * K + k);
            if (json_is_number(p) && (!top || json_number_value(p) > json_number_value(top)))
                top = p;
        }
        put_value(top, 0, "-");
        putc('\n', stdout);
    }
    return OK;
}

// "value V  per_sample a b c ... (+N more)"
static void put_values(json_t *entry)
{
    fputs("value ", stdout);
    put_value(json_object_get(entry, "value"), 0, "null");
    json_t *ps = json_object_get(entry, "per_sample");
    if (!json_is_array(ps))
        return;
    fputs("  per_sample", stdout);
    size_t n = json_array_size(ps);
    for (size_t i = 0; i < n && i < FIRST_FEW; i++) {
        putc(' ', stdout);
        put_value(json_array_get(ps, i), 0, "null");
    }
    if (n > FIRST_FEW)
        printf(" ... (+%zu more)", n - FIRST_FEW);
}

static int render_regularizers(json_t *doc)
{
    json_t *regs = json_object_get(doc, "regularizers");
    if (!json_is_array(regs)) {
        fprintf(stderr, "relureg: the answer has no \"regularizers\" array\n");
        return FAIL;
    }
    buf shape = {0};
    json_t *loss = json_object_get(doc, "loss");
    if (json_is_object(loss)) {
        fputs("loss (cross_entropy)  ", stdout);
        put_values(loss);
        putc('\n', stdout);
    }
    size_t i;
    json_t *reg;
    json_array_foreach(regs, i, reg)
    {
        const char *name = json_string_value(json_object_get(reg, "name"));
        fputs(name ? name : "?", stdout);
        // Its options as the server echoed them (seed included), in the answer's order.
        bool first = true;
        const char *key;
        json_t *v;
        json_object_foreach(reg, key, v)
        {
            if (!strcmp(key, "name") || !strcmp(key, "value") || !strcmp(key, "per_sample") ||
                !strcmp(key, "grad_inputs") || !strcmp(key, "grad_parameters") ||
                json_is_object(v) || json_is_array(v))
                continue;
            put_option(key, v, &first);
        }
        fputs(first ? "  " : ")  ", stdout);
        put_values(reg);
        putc('\n', stdout);
        json_t *gi = json_object_get(reg, "grad_inputs");
        if (gi) {
            shape.len = 0;
            if (!shape_format(&shape, json_object_get(gi, "shape")))
                goto oom;
            printf("  grad_inputs %s\n", shape.data);
        }
        json_t *gp = json_object_get(reg, "grad_parameters");
        if (json_is_object(gp)) {
            fputs("  grad_parameters", stdout);
            json_object_foreach(gp, key, v)
            {
                shape.len = 0;
                if (!shape_format(&shape, json_object_get(v, "shape")))
                    goto oom;
                printf(" %s %s", key, shape.data);
            }
            putc('\n', stdout);
        }
    }
    buf_clear(&shape);
    return OK;
oom:
    buf_clear(&shape);
    oom();
    return FAIL;
}

static int render_attack(json_t *doc)
{
    json_t *success = json_object_get(doc, "success");
    json_t *norms = json_object_get(doc, "perturbation_norms");
    json_t *pred = json_object_get(doc, "predictions");
    if (!json_is_array(success)) {
        fprintf(stderr, "relureg: the answer has no \"success\" array\n");
        return FAIL;
    }
    size_t B = json_array_size(success), broken = 0;
    for (size_t b = 0; b < B; b++)
        broken += json_is_true(json_array_get(success, b));
    const char *attack = json_string_value(json_object_get(doc, "attack"));
    fputs(attack ? attack : "attack", stdout);
    static const char *const shown[] = {"norm", "epsilon", "steps", "seed"};
    bool first = true;
    for (size_t i = 0; i < sizeof shown / sizeof *shown; i++) {
        json_t *v = json_object_get(doc, shown[i]);
        if (v)
            put_option(shown[i], v, &first);
    }
    printf("%s: %zu of %zu succeeded\n", first ? "" : ")", broken, B);
    printf("%-6s  %-7s  %-12s  %-12s  %s\n", "SAMPLE", "SUCCESS", "L2", "LINF", "PREDICTION");
    for (size_t b = 0; b < B; b++) {
        printf("%-6zu  ", b);
        put_value(json_array_get(success, b), 7, "-");
        fputs("  ", stdout);
        put_value(json_array_get(json_object_get(norms, "l2"), b), 12, "null");
        fputs("  ", stdout);
        put_value(json_array_get(json_object_get(norms, "linf"), b), 12, "null");
        fputs("  ", stdout);
        put_value(json_array_get(pred, b), 0, "-");
        putc('\n', stdout);
    }
    return OK;
}

static int render_certify(json_t *doc)
{
    json_t *pred = json_object_get(doc, "predictions");
    json_t *radius = json_object_get(doc, "certified_radius");
    json_t *exact = json_object_get(doc, "exact");
    if (!json_is_array(pred)) {
        fprintf(stderr, "relureg: the answer has no \"predictions\" array\n");
        return FAIL;
    }
    const char *norm = json_string_value(json_object_get(doc, "norm"));
    if (norm)
        printf("norm %s\n", norm);
    printf("%-6s  %-10s  %-16s  %s\n", "SAMPLE", "PREDICTION", "CERTIFIED_RADIUS", "EXACT");
    size_t b;
    json_t *v;
    json_array_foreach(pred, b, v)
    {
        printf("%-6zu  ", b);
        put_value(v, 10, "-");
        fputs("  ", stdout);
        // A +inf radius (no decision boundary, no region boundary) is rendered null (api.md).
        put_value(json_array_get(radius, b), 16, "inf");
        fputs("  ", stdout);
        put_value(json_array_get(exact, b), 0, "-");
        putc('\n', stdout);
    }
    return OK;
}

static int render_jacobian(json_t *doc)
{
    json_t *jac = json_object_get(doc, "jacobian");
    size_t B = 0;
    json_t *data = tensor_data(jac, &B);
    if (!data) {
        fprintf(stderr, "relureg: the answer has no \"jacobian\" tensor\n");
        return FAIL;
    }
    buf shape = {0};
    if (!shape_format(&shape, json_object_get(jac, "shape"))) {
        oom();
        return FAIL;
    }
    const char *of = json_string_value(json_object_get(doc, "of"));
    printf("jacobian of %s, shape %s\n", of ? of : "logits", shape.data);
    buf_clear(&shape);
    // Per sample, the squared Frobenius norm of its [K, ...input_shape] block (as /connections'
    // jacobian_fro2 for of=logits).
    const size_t n = json_array_size(data) / B;
    printf("%-6s  %s\n", "SAMPLE", "JACOBIAN_FRO2");
    for (size_t b = 0; b < B; b++) {
        double ss = 0;
        for (size_t i = 0; i < n; i++) {
            const double v = json_number_value(json_array_get(data, b * n + i));
            ss += v * v;
        }
        printf("%-6zu  %.6g\n", b, ss);
    }
    return OK;
}

// A table of per-sample arrays: SAMPLE, then one column per member (null as "inf").
static int render_columns(json_t *doc, const char *const *keys, size_t nkeys)
{
    json_t *first = json_object_get(doc, keys[0]);
    if (!json_is_array(first)) {
        fprintf(stderr, "relureg: the answer has no \"%s\" array\n", keys[0]);
        return FAIL;
    }
    printf("%-6s", "SAMPLE");
    for (size_t k = 0; k < nkeys; k++) {
        printf("  ");
        for (const char *p = keys[k]; *p; p++)
            putc(toupper((unsigned char)*p), stdout);
        printf("%*s", (int)(strlen(keys[k]) < 12 ? 12 - strlen(keys[k]) : 0), "");
    }
    putc('\n', stdout);
    for (size_t b = 0; b < json_array_size(first); b++) {
        printf("%-6zu", b);
        for (size_t k = 0; k < nkeys; k++) {
            fputs("  ", stdout);
            const int w = strlen(keys[k]) < 12 ? 12 : (int)strlen(keys[k]);
            put_value(json_array_get(json_object_get(doc, keys[k]), b), w, "inf");
        }
        putc('\n', stdout);
    }
    return OK;
}

static int render_connections(json_t *doc)
{
    static const char *const keys[] = {"jacobian_fro2", "input_gradient_norm2", "hessian_trace",
                                       "curvature_ratio", "left_region"};
    return render_columns(doc, keys, sizeof keys / sizeof *keys);
}

static int render_robustness(json_t *doc)
{
    json_t *eps = json_object_get(doc, "epsilons"), *ra = json_object_get(doc, "robust_accuracy");
    if (!json_is_array(ra)) {
        fprintf(stderr, "relureg: the answer has no \"robust_accuracy\" array\n");
        return FAIL;
    }
    json_t *atk = json_object_get(doc, "attack");
    const char *name =
        json_string_value(json_is_object(atk) ? json_object_get(atk, "attack") : atk);
    const char *norm = json_string_value(json_object_get(doc, "norm"));
    printf("robustness under %s (%s)\n", name ? name : "the attack", norm ? norm : "?");
    fputs("clean accuracy         ", stdout);
    put_value(json_object_get(doc, "clean_accuracy"), 0, "null");
    fputs("\ndeepfool rho           ", stdout);
    put_value(json_object_get(doc, "deepfool_rho"), 0, "null");
    fputs("\nmean certified radius  ", stdout);
    put_value(json_object_get(doc, "mean_certified_radius"), 0, "inf");
    json_t *flags = json_object_get(doc, "flags");
    fputs("\ngradient masking       ", stdout);
    fputs(json_is_true(json_object_get(flags, "flagged")) ? "flagged" : "not flagged", stdout);
    printf("\n%-12s  %s\n", "EPSILON", "ROBUST_ACCURACY");
    for (size_t i = 0; i < json_array_size(ra); i++) {
        put_value(json_array_get(eps, i), 12, "?");
        fputs("  ", stdout);
        put_value(json_array_get(ra, i), 0, "null");
        putc('\n', stdout);
    }
    return OK;
}

// The human form of any compute answer (a job's result), told by its members.
static int render_any(json_t *doc)
{
    if (json_object_get(doc, "robust_accuracy"))
        return render_robustness(doc);
    if (json_object_get(doc, "regularizers"))
        return render_regularizers(doc);
    if (json_object_get(doc, "success"))
        return render_attack(doc);
    if (json_object_get(doc, "certified_radius"))
        return render_certify(doc);
    if (json_object_get(doc, "curvature_ratio"))
        return render_connections(doc);
    if (json_object_get(doc, "jacobian"))
        return render_jacobian(doc);
    return render_predict(doc);
}

// ---- commands ----

enum cmd {
    CMD_LIST,
    CMD_PUT,
    CMD_DELETE,
    CMD_PREDICT,
    CMD_REGULARIZERS,
    CMD_ATTACK,
    CMD_CERTIFY,
    CMD_JACOBIAN,
    CMD_CONNECTIONS,
    CMD_ROBUSTNESS,
    CMD_JOBS
};

static const struct command {
    const char *name;
    int npos;          // positional arguments
    const char *route; // the compute route under /v1/models/NAME, or NULL
} commands[] = {
    [CMD_LIST] = {"list", 0, NULL},
    [CMD_PUT] = {"put", 2, NULL},
    [CMD_DELETE] = {"delete", 1, NULL},
    [CMD_PREDICT] = {"predict", 2, "/predict"},
    [CMD_REGULARIZERS] = {"regularizers", 2, "/regularizers"},
    [CMD_ATTACK] = {"attack", 2, "/attacks"},
    [CMD_CERTIFY] = {"certify", 2, "/certify"},
    [CMD_JACOBIAN] = {"jacobian", 2, "/jacobian"},
    [CMD_CONNECTIONS] = {"connections", 2, "/connections"},
    [CMD_ROBUSTNESS] = {"robustness", 2, "/robustness"},
    [CMD_JOBS] = {"jobs", 2, NULL},
};
#define NCOMMANDS (int)(sizeof commands / sizeof *commands)
#define ALL       ((1u << NCOMMANDS) - 1)
#define BIT(c)    (1u << (c))
#define COMPUTE                                                                                    \
    (BIT(CMD_PREDICT) | BIT(CMD_REGULARIZERS) | BIT(CMD_ATTACK) | BIT(CMD_CERTIFY) |               \
     BIT(CMD_JACOBIAN) | BIT(CMD_CONNECTIONS) | BIT(CMD_ROBUSTNESS))
#define ATTACKS (BIT(CMD_ATTACK) | BIT(CMD_ROBUSTNESS))

enum opt {
    OPT_URL,
    OPT_TOKEN,
    OPT_JSON,
    OPT_HELP,
    OPT_LABELS,
    OPT_REG,
    OPT_GRADIENTS,
    OPT_ATTACK,
    OPT_NORM,
    OPT_EPSILON,
    OPT_STEPS,
    OPT_SEED,
    OPT_SET,
    OPT_OUT,
    OPT_OF,
    OPT_H,
    OPT_EPSILONS,
    OPT_NO_WAIT,
    NOPTS
};

static const struct opt_def {
    const char *name;
    bool value;    // takes a value (--name VALUE or --name=VALUE)
    unsigned cmds; // the commands it applies to
} options[NOPTS] = {
    [OPT_URL] = {"--url", true, ALL},
    [OPT_TOKEN] = {"--token", true, ALL},
    [OPT_JSON] = {"--json", false, ALL},
    [OPT_HELP] = {"--help", false, ALL},
    [OPT_LABELS] = {"--labels", true, COMPUTE},
    [OPT_REG] = {"--reg", true, BIT(CMD_REGULARIZERS)},
    [OPT_GRADIENTS] = {"--gradients", true, BIT(CMD_REGULARIZERS)},
    [OPT_ATTACK] = {"--attack", true, ATTACKS},
    [OPT_NORM] = {"--norm", true, ATTACKS | BIT(CMD_CERTIFY)},
    [OPT_EPSILON] = {"--epsilon", true, BIT(CMD_ATTACK)},
    [OPT_STEPS] = {"--steps", true, ATTACKS},
    [OPT_SEED] = {"--seed", true, ATTACKS},
    [OPT_SET] = {"--set", true, ATTACKS},
    [OPT_OUT] = {"--out", true, BIT(CMD_ATTACK)},
    [OPT_OF] = {"--of", true, BIT(CMD_JACOBIAN)},
    [OPT_H] = {"--h", true, BIT(CMD_CONNECTIONS)},
    [OPT_EPSILONS] = {"--epsilons", true, BIT(CMD_ROBUSTNESS)},
    [OPT_NO_WAIT] = {"--no-wait", false, BIT(CMD_ROBUSTNESS)},
};

// The parsed command line. Strings are borrowed from argv or the environment; json_t members are
// owned (opts_clear).
typedef struct opts {
    const char *url, *token_file, *out;
    bool json, help, no_wait;
    int cmd;            // enum cmd, -1 before the command
    const char *pos[2]; // NAME, FILE
    int npos;
    unsigned seen; // bit per enum opt given
    json_t *body;  // members the options set in the request body, applied last
    json_t *regs;  // --reg, in order
} opts;

static void opts_clear(opts *o)
{
    json_decref(o->body);
    json_decref(o->regs);
}

// Applies one option with its value (NULL for flags) to o.
static int opt_apply(opts *o, enum opt id, const char *val)
{
    json_t *v = NULL;
    int rc = OK;
    const char *member = NULL; // the body member the option sets
    switch (id) {
        case OPT_URL:
            o->url = val;
            return OK;
        case OPT_TOKEN:
            o->token_file = val;
            return OK;
        case OPT_JSON:
            o->json = true;
            return OK;
        case OPT_HELP:
            o->help = true;
            return OK;
        case OPT_OUT:
            o->out = val;
            return OK;
        case OPT_NO_WAIT:
            o->no_wait = true;
            return OK;
        case OPT_OF:
            member = "of";
            if ((rc = string_new(val, strlen(val), options[id].name, &v)) != OK)
                return rc;
            break;
        case OPT_H:
            member = "h";
            if ((rc = value_parse(val, false, options[id].name, &v)) != OK)
                return rc;
            if (!json_is_number(v))
                rc = usage_error("--h: '%s' is not a number", val);
            break;
        case OPT_EPSILONS:
            member = "epsilons";
            if (!(v = json_array()))
                goto oom;
            rc = split_commas(val, options[id].name, typed_item,
                              &(typed_list){v, "--epsilons", "a number", json_kind_number});
            break;
        case OPT_REG:
            return reg_parse(val, o->regs);
        case OPT_LABELS:
        case OPT_GRADIENTS:
            member = id == OPT_LABELS ? "labels" : "gradients";
            if (!(v = json_array()))
                goto oom;
            rc = split_commas(val, options[id].name, typed_item,
                              id == OPT_LABELS
                                  ? &(typed_list){v, "--labels", "an integer", json_kind_integer}
                                  : &(typed_list){v, "--gradients", "a name", json_kind_string});
            break;
        case OPT_ATTACK:
        case OPT_NORM:
            member = id == OPT_ATTACK ? "attack" : "norm";
            if ((rc = string_new(val, strlen(val), options[id].name, &v)) != OK)
                return rc;
            break;
        case OPT_EPSILON:
        case OPT_STEPS:
        case OPT_SEED:
            member = id == OPT_EPSILON ? "epsilon" : id == OPT_STEPS ? "steps" : "seed";
            if ((rc = value_parse(val, false, options[id].name, &v)) != OK)
                return rc;
            if (id == OPT_EPSILON ? !json_is_number(v) : !json_is_integer(v))
                rc = usage_error("%s: '%s' is not %s", options[id].name, val,
                                 id == OPT_EPSILON ? "a number" : "an integer");
            break;
        case OPT_SET: {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val)
                return usage_error("--set: '%s' is not key=value", val);
            char *key = strndup(val, (size_t)(eq - val));
            if (!key)
                goto oom;
            rc = value_parse(eq + 1, true, "--set", &v);
            if (rc == OK && json_object_set(o->body, key, v) != 0)
                rc = usage_error("--set: the key '%s' is not valid UTF-8", key);
            free(key);
            json_decref(v);
            return rc;
        }
        case NOPTS:
            break;
    }
    if (rc == OK && member && json_object_set(o->body, member, v) != 0)
        goto oom;
    json_decref(v);
    return rc;
oom:
    json_decref(v);
    oom();
    return FAIL;
}

static int opts_parse(opts *o, int argc, char **argv)
{
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (dashdash || a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->cmd < 0) {
                for (int c = 0; c < NCOMMANDS; c++)
                    if (strcmp(a, commands[c].name) == 0)
                        o->cmd = c;
                if (o->cmd < 0 && strcmp(a, "help") == 0)
                    o->help = true;
                else if (o->cmd < 0)
                    return usage_error("unknown command '%s'", a);
            } else if (o->npos < commands[o->cmd].npos) {
                o->pos[o->npos++] = a;
            } else {
                return usage_error("%s: unexpected argument '%s'", commands[o->cmd].name, a);
            }
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = true;
            continue;
        }
        if (strcmp(a, "-h") == 0)
            a = "--help";
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        int id = -1;
        for (int k = 0; k < NOPTS; k++)
            if (strlen(options[k].name) == n && strncmp(a, options[k].name, n) == 0)
                id = k;
        if (id < 0)
            return usage_error("unknown option '%.*s'", (int)n, a);
        const char *val = NULL;
        if (options[id].value) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return usage_error("%s needs a value", options[id].name);
        } else if (eq) {
            return usage_error("%s takes no value", options[id].name);
        }
        o->seen |= 1u << id;
        int rc = opt_apply(o, (enum opt)id, val);
        if (rc != OK)
            return rc;
    }
    if (o->help)
        return OK;
    if (o->cmd < 0)
        return usage_error("no command");
    const struct command *c = &commands[o->cmd];
    for (int k = 0; k < NOPTS; k++)
        if ((o->seen & (1u << k)) && !(options[k].cmds & BIT(o->cmd)))
            return usage_error("%s does not apply to %s", options[k].name, c->name);
    if (o->npos < c->npos)
        return usage_error("%s needs %s", c->name,
                           c->npos == 1         ? "NAME"
                           : o->cmd == CMD_PUT  ? "NAME FILE.safetensors"
                           : o->cmd == CMD_JOBS ? "status|wait|cancel ID"
                                                : "NAME INPUTS.json");
    if (o->cmd == CMD_JOBS && strcmp(o->pos[0], "status") != 0 && strcmp(o->pos[0], "wait") != 0 &&
        strcmp(o->pos[0], "cancel") != 0)
        return usage_error("jobs: unknown action '%s' (status, wait or cancel)", o->pos[0]);
    if (o->cmd == CMD_REGULARIZERS && json_array_size(o->regs) == 0)
        return usage_error("regularizers needs at least one --reg SPEC");
    if (o->cmd == CMD_ATTACK && !json_object_get(o->body, "attack"))
        return usage_error("attack needs --attack NAME (fgsm, pgd, bim, deepfool, cw_l2, ...)");
    return OK;
}

// Escapes a model name as one path segment, so that "a/b" reaches the server as a name it
// rejects rather than as another route. Returns owned memory (free), NULL when out of memory.
static char *model_path(const char *name, const char *suffix)
{
    char *esc = curl_easy_escape(NULL, name, 0);
    if (!esc)
        return NULL;
    char *path = str_cat("/v1/models/", esc, suffix ? suffix : "", NULL);
    curl_free(esc);
    return path;
}

static int cmd_list(const client *c)
{
    response r = {0};
    json_t *doc = NULL;
    int rc = http(c, "GET", "/v1/models", NULL, false, &r);
    if (rc == OK)
        rc = answer(c, &r, &doc);
    if (rc == OK && !c->json)
        rc = render_list(doc);
    json_decref(doc);
    buf_clear(&r.body);
    return rc;
}

static int cmd_put(const client *c, const char *name, const char *file)
{
    int rc = FAIL;
    response r = {0};
    json_t *doc = NULL;
    char *path = model_path(name, NULL);
    FILE *f = fopen(file, "rb");
    struct stat st;
    if (!path) {
        oom();
        goto out;
    }
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "relureg: cannot read %s: %s\n", file, strerror(errno));
        goto out;
    }
    payload p = {.content_type = "application/vnd.safetensors",
                 .upload = f,
                 .upload_len = S_ISREG(st.st_mode) ? (curl_off_t)st.st_size : -1};
    if ((rc = http(c, "PUT", path, &p, true, &r)) != OK)
        goto out;
    if (ferror(f)) {
        fprintf(stderr, "relureg: reading %s failed\n", file);
        rc = FAIL;
        goto out;
    }
    if ((rc = answer(c, &r, &doc)) != OK || c->json)
        goto out;
    const char *got = json_string_value(json_object_get(doc, "name"));
    json_t *created = json_object_get(doc, "created");
    printf("%s version ", got ? got : name);
    put_value(json_object_get(doc, "version"), 0, "?");
    printf(" (%s)\n", (created ? json_is_true(created) : r.status == 201) ? "created" : "replaced");
out:
    json_decref(doc);
    buf_clear(&r.body);
    if (f)
        fclose(f);
    free(path);
    return rc;
}

static int cmd_delete(const client *c, const char *name)
{
    response r = {0};
    json_t *doc = NULL;
    char *path = model_path(name, NULL);
    if (!path) {
        oom();
        return FAIL;
    }
    int rc = http(c, "DELETE", path, NULL, true, &r);
    if (rc == OK)
        rc = answer(c, &r, &doc);
    if (rc == OK && !c->json)
        printf("%s deleted\n", name);
    json_decref(doc);
    buf_clear(&r.body);
    free(path);
    return rc;
}

// Reads INPUTS.json ("-": standard input) into a request body: an object with "inputs" is the
// body, a bare array or a tensor object {"shape", "data", ...} becomes {"inputs": it}.
static int body_load(const char *file, json_t **out)
{
    json_error_t e;
    *out = NULL;
    json_t *d = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &e)
                                       : json_load_file(file, JSON_REJECT_DUPLICATES, &e);
    if (!d) {
        if (e.line > 0)
            fprintf(stderr, "relureg: %s:%d:%d: %s\n", file, e.line, e.column, e.text);
        else
            fprintf(stderr, "relureg: %s: %s\n", file, e.text);
        return FAIL;
    }
    if (json_is_object(d) && json_object_get(d, "inputs")) {
        *out = d;
        return OK;
    }
    if (json_is_array(d) ||
        (json_is_object(d) && json_object_get(d, "shape") && json_object_get(d, "data"))) {
        json_t *body = json_object();
        if (!body || json_object_set_new(body, "inputs", d) != 0) {
            json_decref(body);
            oom();
            return FAIL;
        }
        *out = body;
        return OK;
    }
    fprintf(stderr,
            "relureg: %s: expected an object with \"inputs\", an array of inputs or a tensor "
            "object with \"shape\" and \"data\"\n",
            file);
    json_decref(d);
    return FAIL;
}

// ---- jobs ----

// Draws "[#####.....]  42% running" on standard error, over the previous one.
static void progress_bar(double p, const char *status)
{
    if (!(p >= 0))
        p = 0;
    if (p > 1)
        p = 1;
    const int full = (int)(p * BAR_WIDTH + 0.5);
    fputc('\r', stderr);
    fputc('[', stderr);
    for (int i = 0; i < BAR_WIDTH; i++)
        fputc(i < full ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%% %-9s", (int)(p * 100 + 0.5), status);
    fflush(stderr);
}

static void sleep_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

// GET or DELETE /v1/jobs/ID into *doc (owned). With --json the answer is printed.
static int job_call(const client *c, const char *method, const char *id, json_t **doc)
{
    response r = {0};
    client quiet = *c;
    quiet.json = false;
    char *esc = curl_easy_escape(NULL, id, 0);
    char *path = esc ? str_cat("/v1/jobs/", esc, NULL) : NULL;
    curl_free(esc);
    if (!path) {
        oom();
        return FAIL;
    }
    int rc = http(c, method, path, NULL, false, &r);
    if (rc == OK)
        rc = answer(&quiet, &r, doc);
    buf_clear(&r.body);
    free(path);
    return rc;
}

// Polls job id until it ends, drawing the progress bar; *result (owned) is its result when done.
// A failed job prints its problem, a cancelled one says so; both return FAIL.
static int job_wait(const client *c, const char *id, json_t **result)
{
    *result = NULL;
    for (;;) {
        json_t *doc = NULL;
        if (job_call(c, "GET", id, &doc) != OK) {
            fputc('\n', stderr);
            return FAIL;
        }
        const char *st = json_string_value(json_object_get(doc, "status"));
        progress_bar(json_number_value(json_object_get(doc, "progress")), st ? st : "?");
        if (st && strcmp(st, "done") == 0) {
            progress_bar(1, st);
            fputc('\n', stderr);
            *result = json_incref(json_object_get(doc, "result"));
            json_decref(doc);
            return OK;
        }
        if (st && (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)) {
            fputc('\n', stderr);
            json_t *e = json_object_get(doc, "error");
            if (strcmp(st, "cancelled") == 0) {
                fprintf(stderr, "relureg: job %s was cancelled\n", id);
            } else {
                const char *title = json_string_value(json_object_get(e, "title"));
                const char *detail = json_string_value(json_object_get(e, "detail"));
                fprintf(stderr, "relureg: job %s failed: %" JSON_INTEGER_FORMAT "%s%s%s%s\n", id,
                        json_integer_value(json_object_get(e, "status")), title ? " " : "",
                        title ? title : "", detail ? ": " : "", detail ? detail : "");
            }
            json_decref(doc);
            return FAIL;
        }
        json_decref(doc);
        sleep_ms(POLL_MS);
    }
}

// Prints a job's result: the human form, or with --json the result as JSON.
static int result_print(const client *c, json_t *result)
{
    if (!result) {
        fprintf(stderr, "relureg: the finished job has no result\n");
        return FAIL;
    }
    if (!c->json)
        return render_any(result);
    if (json_dumpf(result, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) != 0)
        return FAIL;
    putc('\n', stdout);
    return OK;
}

static int cmd_jobs(const client *c, const char *action, const char *id)
{
    json_t *doc = NULL;
    int rc;
    if (strcmp(action, "wait") == 0) {
        if ((rc = job_wait(c, id, &doc)) == OK)
            rc = result_print(c, doc);
        json_decref(doc);
        return rc;
    }
    rc = job_call(c, strcmp(action, "cancel") == 0 ? "DELETE" : "GET", id, &doc);
    if (rc == OK && c->json) {
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        putc('\n', stdout);
    } else if (rc == OK) {
        const char *st = json_string_value(json_object_get(doc, "status"));
        printf("job %s %s ", id, st ? st : "?");
        put_value(json_object_get(doc, "progress"), 0, "?");
        putc('\n', stdout);
    }
    json_decref(doc);
    return rc;
}

// Robustness options from the command line go into its "attack" object, except the report's
// own members (api.md: `attack` takes the fields of /attacks except inputs, labels, epsilon).
static int robustness_body(json_t *body, json_t *cli)
{
    json_t *atk = json_object_get(body, "attack");
    json_t *own = json_is_object(atk) ? json_deep_copy(atk) : json_object();
    if (!own)
        return FAIL;
    if (json_is_string(atk))
        json_object_set(own, "attack", atk);
    bool any = json_is_object(atk) || json_is_string(atk);
    const char *key;
    json_t *v;
    json_object_foreach(cli, key, v)
    {
        if (!strcmp(key, "labels") || !strcmp(key, "norm") || !strcmp(key, "epsilons") ||
            !strcmp(key, "version"))
            continue;
        json_object_set(own, key, v);
        json_object_del(body, key);
        any = true;
    }
    int rc = OK;
    if (any && json_object_set(body, "attack", own) != 0)
        rc = FAIL;
    json_decref(own);
    return rc == OK && json_object_set_new(body, "async", json_true()) == 0 ? OK : FAIL;
}

static int cmd_compute(const client *c, const opts *o)
{
    int rc;
    response r = {0};
    json_t *body = NULL, *doc = NULL;
    char *text = NULL, *path = model_path(o->pos[0], commands[o->cmd].route);
    if (!path) {
        oom();
        return FAIL;
    }
    if ((rc = body_load(o->pos[1], &body)) != OK)
        goto out;
    // The command line wins over the file.
    if ((o->cmd == CMD_REGULARIZERS && json_object_set(body, "regularizers", o->regs) != 0) ||
        json_object_update(body, o->body) != 0 ||
        (o->cmd == CMD_ROBUSTNESS && robustness_body(body, o->body) != OK) ||
        !(text = json_dumps(body, JSON_COMPACT))) {
        oom();
        rc = FAIL;
        goto out;
    }
    payload p = {.content_type = "application/json", .body = text, .len = strlen(text)};
    client quiet = *c;
    quiet.json = c->json && o->cmd != CMD_ROBUSTNESS; // a job: its result is printed below
    if ((rc = http(c, "POST", path, &p, false, &r)) != OK || (rc = answer(&quiet, &r, &doc)) != OK)
        goto out;
    const char *job = r.status == 202 ? json_string_value(json_object_get(doc, "job")) : NULL;
    if (job && o->no_wait) {
        if (c->json)
            print_pretty(stdout, r.body.data, r.body.len);
        else
            printf("job %s queued (relureg jobs wait %s)\n", job, job);
        goto out;
    }
    if (job) {
        json_t *result = NULL;
        if ((rc = job_wait(c, job, &result)) == OK)
            rc = result_print(c, result);
        json_decref(result);
        goto out;
    }
    if (o->out) {
        json_t *adv = json_object_get(doc, "adversarial");
        if (!adv) {
            fprintf(stderr, "relureg: the answer has no \"adversarial\" tensor\n");
            rc = FAIL;
            goto out;
        }
        if (json_dump_file(adv, o->out, JSON_COMPACT | JSON_REAL_PRECISION(TENSOR_PRECISION)) !=
            0) {
            fprintf(stderr, "relureg: cannot write %s: %s\n", o->out, strerror(errno));
            rc = FAIL;
            goto out;
        }
    }
    if (c->json)
        goto out;
    switch ((enum cmd)o->cmd) {
        case CMD_PREDICT:
            rc = render_predict(doc);
            break;
        case CMD_REGULARIZERS:
            rc = render_regularizers(doc);
            break;
        case CMD_ATTACK:
            rc = render_attack(doc);
            if (rc == OK && o->out)
                printf("adversarial tensor written to %s\n", o->out);
            break;
        case CMD_CERTIFY:
            rc = render_certify(doc);
            break;
        case CMD_JACOBIAN:
            rc = render_jacobian(doc);
            break;
        case CMD_CONNECTIONS:
            rc = render_connections(doc);
            break;
        default:
            rc = render_any(doc);
            break;
    }
out:
    json_decref(doc);
    buf_clear(&r.body);
    free(text);
    json_decref(body);
    free(path);
    return rc;
}

// Reads the bearer token from file (surrounding whitespace dropped) into c->auth.
static int token_load(client *c, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "relureg: cannot read the token file %s: %s\n", file, strerror(errno));
        return FAIL;
    }
    buf t = {0};
    char chunk[512];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ok = buf_append(&t, chunk, n);
    int rc = FAIL;
    if (!ok) {
        oom();
        goto out;
    }
    if (ferror(f)) {
        fprintf(stderr, "relureg: reading the token file %s failed\n", file);
        goto out;
    }
    size_t a = 0, b = t.len;
    while (a < b && isspace((unsigned char)t.data[a]))
        a++;
    while (b > a && isspace((unsigned char)t.data[b - 1]))
        b--;
    if (a == b) {
        fprintf(stderr, "relureg: the token file %s is empty\n", file);
        goto out;
    }
    for (size_t i = a; i < b; i++)
        if (iscntrl((unsigned char)t.data[i])) {
            fprintf(stderr, "relureg: the token in %s holds a control character\n", file);
            goto out;
        }
    t.data[b] = '\0';
    if (!(c->auth = str_cat("Authorization: Bearer ", t.data + a, NULL))) {
        oom();
        goto out;
    }
    rc = OK;
out:
    buf_clear(&t);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    opts o = {.cmd = -1, .body = json_object(), .regs = json_array()};
    client c = {0};
    int rc;
    bool curl_ready = false;
    if (!o.body || !o.regs) {
        oom();
        rc = FAIL;
        goto out;
    }
    if ((rc = opts_parse(&o, argc, argv)) != OK)
        goto out;
    if (o.help) {
        fputs(usage_text, stdout);
        fputs(help_text, stdout);
        goto out;
    }
    const char *env_url = getenv("RELUREG_URL");
    const char *url = o.url ? o.url : env_url && *env_url ? env_url : DEFAULT_URL;
    const char *env_token = getenv("RELUREG_TOKEN_FILE");
    const char *token = o.token_file ? o.token_file : env_token && *env_token ? env_token : NULL;
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n == 0) {
        rc = usage_error("--url: '%s' is not a URL", url);
        goto out;
    }
    if (!(c.base = strndup(url, n))) {
        oom();
        rc = FAIL;
        goto out;
    }
    c.json = o.json;
    // The token only matters to put and delete, so other commands never read the file.
    if (token && (o.cmd == CMD_PUT || o.cmd == CMD_DELETE) && (rc = token_load(&c, token)) != OK)
        goto out;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "relureg: libcurl failed to initialize\n");
        rc = FAIL;
        goto out;
    }
    curl_ready = true;
    switch ((enum cmd)o.cmd) {
        case CMD_LIST:
            rc = cmd_list(&c);
            break;
        case CMD_PUT:
            rc = cmd_put(&c, o.pos[0], o.pos[1]);
            break;
        case CMD_DELETE:
            rc = cmd_delete(&c, o.pos[0]);
            break;
        case CMD_JOBS:
            rc = cmd_jobs(&c, o.pos[0], o.pos[1]);
            break;
        default:
            rc = cmd_compute(&c, &o);
    }
out:
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "relureg: writing the output failed: %s\n", strerror(errno));
        rc = rc == OK ? FAIL : rc;
    }
    if (curl_ready)
        curl_global_cleanup();
    free(c.auth);
    free(c.base);
    opts_clear(&o);
    return rc;
}
