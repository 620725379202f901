/* Active health checks: the check* directives and the prober on the control thread's loop. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/regex.h"
#include "core/sock.h"
#include "core/status.h"
#include "core/units.h"
#include "http/h1_parser.h"
#include "upstream/health_check.h"

#define CHECK_DEFAULT_SEND   "GET / HTTP/1.0\r\n\r\n"
#define CHECK_MAX_TIME_MS    0x7fffffffu      /* ~24.8 days: fits the uint32_t fields */
#define CHECK_MAX_COUNT      1000000u         /* rise and fall */
#define CHECK_MAX_LINE       8192u            /* status and header lines of a check answer */

/* ------------------------------------------------------------------ configuration */

static int check_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int check_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return BL_ERR;
}

static void conf_defaults(struct bl_check_conf *c)
{
    c->interval_ms = 30000;
    c->timeout_ms = 1000;
    c->rise = 2;
    c->fall = 5;
    c->type = BL_CHECK_TCP;
    c->default_down = 0;          /* the module says true; see health_check.h for why not */
    c->port = 0;
}

/* Allocates the group's conf with every default on the first check* directive. */
static int conf_get(struct bl_check_conf **cc, char *err, size_t errlen)
{
    if (*cc)
        return BL_OK;
    struct bl_check_conf *c = calloc(1, sizeof(*c));
    char *send = strdup(CHECK_DEFAULT_SEND);
    if (!c || !send) {
        free(c);
        free(send);
        return check_fail(err, errlen, "out of memory");
    }
    conf_defaults(c);
    c->http_send = send;
    c->http_send_len = (uint32_t)strlen(send);
    c->expect_alive = BL_CHECK_ALIVE_2XX | BL_CHECK_ALIVE_3XX;
    *cc = c;
    return BL_OK;
}

/* "3000" (milliseconds, the module's unit), "3s", "500ms", "1m30s", "1h". */
static int parse_ms(const char *s, uint32_t *out)
{
    uint64_t v;
    if (bl_parse_time_ms(s, 1, CHECK_MAX_TIME_MS, &v) != BL_OK)
        return BL_ERR;
    *out = (uint32_t)v;
    return BL_OK;
}

static int parse_uint(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (bl_parse_uint(s, min, max, 0, &v) != BL_OK)
        return BL_ERR;
    *out = (uint32_t)v;
    return BL_OK;
}

/* send="..." / expect="...": the lexer keeps quotes inside a word and splits at blanks, so a
 * value whose opening quote is not closed in this argument goes on over the next ones, joined
 * with one space. Returns the value without its quotes (malloc'ed) and advances *i past the
 * arguments used; NULL when the quote never closes (*bad set) or on out of memory. */
static char *quoted_value(char *const *args, int nargs, int *i, const char *v, int *bad)
{
    char q = v[0];
    if (q != '"' && q != '\'')
        return strdup(v);
    size_t cap = strlen(v) + 1, len = 0;
    for (int k = *i + 1; k < nargs; k++)
        cap += strlen(args[k]) + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    const char *part = v + 1;
    for (int k = *i;; ) {
        size_t pl = strlen(part);
        if (pl && part[pl - 1] == q) {
            memcpy(out + len, part, pl - 1);
            out[len + pl - 1] = '\0';
            *i = k;
            return out;
        }
        memcpy(out + len, part, pl);
        len += pl;
        if (++k >= nargs)
            break;
        out[len++] = ' ';
        part = args[k];
    }
    free(out);
    *bad = 1;
    return NULL;
}

/* Resolves \xHH (the config lexer already resolved \r \n \t \" \\ and keeps other escapes
 * as written) and \0 in place; returns the new length. */
static size_t hex_unescape(char *s)
{
    size_t r = 0, w = 0, n = strlen(s);
    while (r < n) {
        if (s[r] == '\\' && r + 3 < n && s[r + 1] == 'x' && isxdigit((unsigned char)s[r + 2]) && isxdigit((unsigned char)s[r + 3])) {
            char hex[3] = {s[r + 2], s[r + 3], 0};
            s[w++] = (char)strtoul(hex, NULL, 16);
            r += 4;
        } else if (s[r] == '\\' && r + 1 < n && s[r + 1] == '0') {
            s[w++] = '\0';
            r += 2;
        } else {
            s[w++] = s[r++];
        }
    }
    s[w] = '\0';
    return w;
}

static void tmp_free(struct bl_check_conf *t)
{
    free(t->tcp_send);
    free(t->expect);
    bl_regex_free(t->expect_re);
}

int bl_check_parse(struct bl_check_conf **cc, char *const *args, int nargs, char *err,
                   size_t errlen)
{
    if (*cc && (*cc)->check_set)
        return check_fail(err, errlen, "\"check\" directive is duplicate");
    /* Parse into a copy so a bad line leaves nothing half-set. */
    struct bl_check_conf tmp = {0};
    conf_defaults(&tmp);
    int rc = BL_ERR;

    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        if (strcmp(a, "ssl") == 0) {
            tmp.ssl = 1;
            continue;
        }
        const char *eq = strchr(a, '=');
        if (!eq) {
            check_fail(err, errlen, "invalid parameter \"%s\"", a);
            goto out;
        }
        size_t nlen = (size_t)(eq - a);
        const char *v = eq + 1;
        uint32_t n = 0;
        const char *name;
        int bad = 0;
        if (nlen == 8 && memcmp(a, "interval", 8) == 0) {
            name = "interval";
            bad = parse_ms(v, &n) != BL_OK || n == 0;
            tmp.interval_ms = n;
        } else if (nlen == 7 && memcmp(a, "timeout", 7) == 0) {
            name = "timeout";
            bad = parse_ms(v, &n) != BL_OK || n == 0;
            tmp.timeout_ms = n;
        } else if (nlen == 4 && memcmp(a, "rise", 4) == 0) {
            name = "rise";
            bad = parse_uint(v, 1, CHECK_MAX_COUNT, &tmp.rise) != BL_OK;
        } else if (nlen == 4 && memcmp(a, "fall", 4) == 0) {
            name = "fall";
            bad = parse_uint(v, 1, CHECK_MAX_COUNT, &tmp.fall) != BL_OK;
        } else if (nlen == 4 && memcmp(a, "port", 4) == 0) {
            name = "port";
            bad = parse_uint(v, 0, 65535, &n) != BL_OK;
            tmp.port = (uint16_t)n;
        } else if (nlen == 4 && memcmp(a, "type", 4) == 0) {
            name = "type";
            if (strcmp(v, "tcp") == 0)
                tmp.type = BL_CHECK_TCP;
            else if (strcmp(v, "http") == 0)
                tmp.type = BL_CHECK_HTTP;
            else if (strcmp(v, "redis") == 0)
                tmp.type = BL_CHECK_REDIS;
            else if (strcmp(v, "mysql") == 0)
                tmp.type = BL_CHECK_MYSQL;
            else
                bad = 1;              /* ssl_hello, ajp: not (yet) in ballast */
        } else if (nlen == 12 && memcmp(a, "default_down", 12) == 0) {
            name = "default_down";
            if (strcmp(v, "true") == 0)
                tmp.default_down = 1;
            else if (strcmp(v, "false") == 0)
                tmp.default_down = 0;
            else
                bad = 1;
        } else if (nlen == 4 && memcmp(a, "role", 4) == 0) {
            name = "role";
            bad = strcmp(v, "master") != 0;
            tmp.role_master = 1;
        } else if ((nlen == 4 && memcmp(a, "send", 4) == 0) ||
                   (nlen == 6 && memcmp(a, "expect", 6) == 0)) {
            int is_send = nlen == 4;
            name = is_send ? "send" : "expect";
            if (is_send ? tmp.tcp_send != NULL : tmp.expect != NULL) {
                check_fail(err, errlen, "duplicate parameter \"%s\"", name);
                goto out;
            }
            char *val = quoted_value(args, nargs, &i, v, &bad);
            if (!val && !bad) {
                check_fail(err, errlen, "out of memory");
                goto out;
            }
            if (val) {
                size_t len = hex_unescape(val);
                if (len == 0 || len > BL_CHECK_MAX_RESPONSE) {
                    free(val);
                    bad = 1;
                } else if (is_send) {
                    tmp.tcp_send = val;
                    tmp.tcp_send_len = (uint32_t)len;
                } else if (val[0] == '~' && len > 1) {
                    char rerr[256];
                    tmp.expect_re = bl_regex_compile(val + 1, 0, rerr, sizeof(rerr));
                    if (!tmp.expect_re) {
                        check_fail(err, errlen, "invalid \"expect\": %s", rerr);
                        free(val);
                        goto out;
                    }
                    tmp.expect = val;
                    tmp.expect_len = (uint32_t)len;
                } else {
                    tmp.expect = val;
                    tmp.expect_len = (uint32_t)len;
                }
            }
        } else {
            check_fail(err, errlen, "invalid parameter \"%s\"", a);
            goto out;
        }
        if (bad) {
            check_fail(err, errlen, "invalid value \"%s\" for \"%s\"", v, name);
            goto out;
        }
    }
    if (tmp.role_master && tmp.type != BL_CHECK_REDIS) {
        check_fail(err, errlen, "\"role=master\" requires \"type=redis\"");
        goto out;
    }
    if ((tmp.tcp_send || tmp.expect) && tmp.type != BL_CHECK_TCP) {
        check_fail(err, errlen, "\"%s\" requires \"type=tcp\"", tmp.tcp_send ? "send" : "expect");
        goto out;
    }

    if (conf_get(cc, err, errlen) != BL_OK)
        goto out;
    struct bl_check_conf *c = *cc;
    /* conf_get() set *cc on BL_OK: the analyzer does not follow it */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    c->role_master = tmp.role_master;
    c->tcp_send = tmp.tcp_send;
    c->tcp_send_len = tmp.tcp_send_len;
    c->expect = tmp.expect;
    c->expect_len = tmp.expect_len;
    c->expect_re = tmp.expect_re;
    tmp.tcp_send = tmp.expect = NULL;
    tmp.expect_re = NULL;
    c->interval_ms = tmp.interval_ms;
    c->timeout_ms = tmp.timeout_ms;
    c->rise = tmp.rise;
    c->fall = tmp.fall;
    c->type = tmp.type;
    c->default_down = tmp.default_down;
    c->port = tmp.port;
    c->ssl = tmp.ssl;
    c->check_set = 1;
    rc = BL_OK;
out:
    tmp_free(&tmp);
    return rc;
}

static int one_string_arg(const char *directive, char *const *args, int nargs, char *err,
                          size_t errlen)
{
    if (nargs != 1)
        return check_fail(err, errlen, "invalid number of arguments in \"%s\" directive",
                          directive);
    if (!args[0][0])
        return check_fail(err, errlen, "invalid value \"\" in \"%s\" directive", directive);
    return BL_OK;
}

int bl_check_parse_http_send(struct bl_check_conf **cc, char *const *args, int nargs, char *err,
                             size_t errlen)
{
    if (*cc && (*cc)->http_send_set)
        return check_fail(err, errlen, "\"check_http_send\" directive is duplicate");
    if (one_string_arg("check_http_send", args, nargs, err, errlen) != BL_OK)
        return BL_ERR;
    size_t len = strlen(args[0]);
    if (len > BL_CHECK_MAX_RESPONSE)
        return check_fail(err, errlen, "\"check_http_send\" request is longer than %u bytes",
                          BL_CHECK_MAX_RESPONSE);
    char *send = strdup(args[0]);
    if (!send || conf_get(cc, err, errlen) != BL_OK) {
        free(send);
        return check_fail(err, errlen, "out of memory");
    }
    /* conf_get() set *cc on BL_OK: the analyzer does not follow it */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    free((*cc)->http_send);
    (*cc)->http_send = send;
    (*cc)->http_send_len = (uint32_t)len;
    (*cc)->http_send_set = 1;
    return BL_OK;
}

int bl_check_parse_expect_alive(struct bl_check_conf **cc, char *const *args, int nargs,
                                char *err, size_t errlen)
{
    if (*cc && (*cc)->expect_alive_set)
        return check_fail(err, errlen, "\"check_http_expect_alive\" directive is duplicate");
    if (nargs < 1)
        return check_fail(err, errlen,
                          "invalid number of arguments in \"check_http_expect_alive\" directive");
    uint32_t bits = 0;
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        if (strlen(a) != 8 || memcmp(a, "http_", 5) != 0 || a[5] < '1' || a[5] > '5' ||
            a[6] != 'x' || a[7] != 'x')
            return check_fail(err, errlen,
                              "invalid value \"%s\" in \"check_http_expect_alive\" directive",
                              a);
        bits |= 1u << (a[5] - '0');
    }
    if (conf_get(cc, err, errlen) != BL_OK)
        return BL_ERR;
    /* conf_get() set *cc on BL_OK: the analyzer does not follow it */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    (*cc)->expect_alive = bits;
    (*cc)->expect_alive_set = 1;
    return BL_OK;
}

int bl_check_parse_expect_body(struct bl_check_conf **cc, char *const *args, int nargs,
                               char *err, size_t errlen)
{
    if (*cc && (*cc)->expect_body_set)
        return check_fail(err, errlen, "\"check_http_expect_body\" directive is duplicate");
    if (one_string_arg("check_http_expect_body", args, nargs, err, errlen) != BL_OK)
        return BL_ERR;
    size_t len = strlen(args[0]);
    if (len > BL_CHECK_MAX_RESPONSE)
        return check_fail(err, errlen,
                          "\"check_http_expect_body\" string is longer than %u bytes",
                          BL_CHECK_MAX_RESPONSE);
    char *body = strdup(args[0]);
    if (!body || conf_get(cc, err, errlen) != BL_OK) {
        free(body);
        return check_fail(err, errlen, "out of memory");
    }
    /* conf_get() set *cc on BL_OK: the analyzer does not follow it */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    (*cc)->expect_body = body;
    (*cc)->expect_body_len = (uint32_t)len;
    (*cc)->expect_body_set = 1;
    return BL_OK;
}

int bl_check_validate(const struct bl_check_conf *cc, char *err, size_t errlen)
{
    if (!cc)
        return BL_OK;
    static const char *const names[] = {"check_http_send", "check_http_expect_alive",
                                        "check_http_expect_body"};
    const uint8_t given[] = {cc->http_send_set, cc->expect_alive_set, cc->expect_body_set};
    for (size_t i = 0; i < BL_ARRAY_LEN(names); i++) {
        if (!given[i])
            continue;
        if (!cc->check_set)
            return check_fail(err, errlen, "\"%s\" requires \"check\"", names[i]);
        if (cc->type != BL_CHECK_HTTP)
            return check_fail(err, errlen, "\"%s\" requires \"type=http\"", names[i]);
    }
    if (cc->interval_ms == 0)
        return check_fail(err, errlen, "invalid value \"0\" for \"interval\"");
    if (cc->timeout_ms == 0)
        return check_fail(err, errlen, "invalid value \"0\" for \"timeout\"");
    if (cc->rise == 0)
        return check_fail(err, errlen, "invalid value \"0\" for \"rise\"");
    if (cc->fall == 0)
        return check_fail(err, errlen, "invalid value \"0\" for \"fall\"");
    if (cc->type == BL_CHECK_HTTP) {
        if (!cc->http_send || !cc->http_send_len)
            return check_fail(err, errlen, "\"check_http_send\" request is empty");
        /* Without the empty line the server waits for the rest of the head and every check
         * times out: say so now rather than marking every server down. */
        if (!memmem(cc->http_send, cc->http_send_len, "\r\n\r\n", 4))
            return check_fail(err, errlen,
                              "\"check_http_send\" request does not end its head with an "
                              "empty line (\"\\r\\n\\r\\n\")");
        if (!cc->expect_alive)
            return check_fail(err, errlen, "\"check_http_expect_alive\" accepts no status");
    }
    return BL_OK;
}

void bl_check_conf_free(struct bl_check_conf *cc)
{
    if (!cc)
        return;
    free(cc->http_send);
    free(cc->expect_body);
    free(cc->tcp_send);
    free(cc->expect);
    bl_regex_free(cc->expect_re);
    free(cc);
}

/* ------------------------------------------------------------------ the prober */

/* What a server's probe is doing. */
enum probe_phase {
    PH_IDLE = 0,       /* waiting for its next start; the timer holds that start */
    PH_CONNECT,        /* non-blocking connect in progress; the timer holds the deadline */
    PH_HANDSHAKE,      /* ssl: the TLS handshake */
    PH_SEND,           /* http: writing check_http_send */
    PH_READ,           /* http: reading the response */
};

static const char *probe_phase_str(unsigned ph)
{
    switch (ph) {
    case PH_IDLE: return "idle";
    case PH_CONNECT: return "connect";
    case PH_HANDSHAKE: return "handshake";
    case PH_SEND: return "send";
    case PH_READ: return "read";
    }
    return "?";
}

/* One http probe's buffers: allocated when it starts, freed when it ends, so a thousand idle
 * probes cost no response buffers. */
struct probe_http {
    struct bl_h1_parser parser;
    struct bl_h1_message msg;
    struct bl_h1_header fields[BL_H1_MAX_HEADERS]; /* msg's */
    struct bl_h1_chunked chunked;
    uint32_t len;          /* bytes received into data */
    uint32_t head_len;     /* 0 until the head is parsed */
    uint32_t raw;          /* body bytes consumed, from data + head_len */
    uint32_t body_len;     /* body bytes (chunked framing removed) at data + head_len */
    char data[BL_CHECK_MAX_RESPONSE];
};

struct probe {
    struct bl_io io;                 /* fd -1 between probes */
    struct bl_timer timer;           /* the next start (idle) or the probe's deadline */
    struct bl_health *h;
    struct bl_upstream_server *srv;
    const struct bl_check_conf *cc;
    struct sockaddr_storage addr;    /* the server's, with port= applied */
    socklen_t addrlen;
    uint64_t next_start_ms;          /* slot of the next probe */
    uint64_t started;                /* probes started, for tests and statistics */
    uint32_t successes;              /* consecutive */
    uint32_t failures;               /* consecutive */
    uint32_t sent;                   /* http: request bytes written */
    uint8_t phase;                   /* enum probe_phase */
    uint8_t down;                    /* the verdict as published in state->check_down */
    uint8_t head_request;            /* check_http_send is a HEAD: the answer has no body */
    struct probe_http *http;
    SSL *tls;                        /* ssl: the probe's TLS session, NULL between probes */
    char last[128];                  /* outcome of the last probe ("status 200", "timeout") */
};

struct bl_health {
    struct bl_loop *loop;
    struct probe *probes;
    uint32_t nprobes;
    uint8_t stopped;
    uint64_t rng;
    struct bl_health *next;          /* running checkers (control thread), for reloads */
    struct bl_deferred free_later;
};

/* Checkers started and not stopped. Only the control thread touches it. */
static struct bl_health *running;

static inline struct probe *probe_of_io(struct bl_io *io)
{
    return (struct probe *)(void *)((char *)io - offsetof(struct probe, io));
}

static inline struct probe *probe_of_timer(struct bl_timer *t)
{
    return (struct probe *)(void *)((char *)t - offsetof(struct probe, timer));
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *server_label(const struct probe *p, char *buf, size_t len)
{
    if (p->srv->name)
        return p->srv->name;
    bl_addr_format((const struct sockaddr *)&p->srv->addr, buf, len);
    return buf;
}

static void probe_close(struct probe *p)
{
    if (p->tls) {
        SSL_set_shutdown(p->tls, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(p->tls);
        p->tls = NULL;
    }
    bl_loop_close(p->h->loop, &p->io);
    free(p->http);
    p->http = NULL;
    p->phase = PH_IDLE;
}

/* Arms the timer for the next slot, skipping slots a long probe overran. */
static void probe_schedule(struct probe *p)
{
    uint64_t now = bl_now_ms(), iv = p->cc->interval_ms;
    if (p->next_start_ms < now)
        p->next_start_ms += (now - p->next_start_ms + iv - 1) / iv * iv;
    bl_timer_set(p->h->loop, &p->timer, p->next_start_ms);
}

static void probe_done(struct probe *p, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the probe with its outcome, moves the counters, publishes a transition. */
static void probe_done(struct probe *p, int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->last, sizeof(p->last), fmt, ap);
    va_end(ap);
    probe_close(p);

    struct bl_server_state *st = p->srv->state;
    char abuf[BL_ADDR_STRLEN];
    const char *gname = p->srv->group ? p->srv->group->name : "?";
    /* One writer (this thread): no read-modify-write needed, and none on a worker's path. */
    _Atomic uint64_t *count = ok ? &st->checks_ok : &st->checks_failed;
    atomic_store_explicit(count, atomic_load_explicit(count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (ok) {
        p->failures = 0;
        if (p->successes < UINT32_MAX)
            p->successes++;
        if (p->down && p->successes >= p->cc->rise) {
            p->down = 0;
            atomic_store_explicit(&st->up_since_ms, bl_now_ms(), memory_order_relaxed);
            atomic_store_explicit(&st->check_down, 0, memory_order_relaxed);
            bl_log(BL_LOG_NOTICE, "upstream \"%s\" server %s is up: %s (%u checks passed)",
                   gname, server_label(p, abuf, sizeof(abuf)), p->last, p->successes);
        }
    } else {
        p->successes = 0;
        if (p->failures < UINT32_MAX)
            p->failures++;
        if (!p->down && p->failures >= p->cc->fall) {
            p->down = 1;
            atomic_store_explicit(&st->check_down, 1, memory_order_relaxed);
            bl_log(BL_LOG_NOTICE, "upstream \"%s\" server %s is down: %s (%u checks failed)",
                   gname, server_label(p, abuf, sizeof(abuf)), p->last, p->failures);
        } else if (bl_log_enabled(BL_LOG_INFO)) {
            bl_log(BL_LOG_INFO, "upstream \"%s\" server %s check failed: %s", gname,
                   server_label(p, abuf, sizeof(abuf)), p->last);
        }
    }
    probe_schedule(p);
}

static void probe_fail_errno(struct probe *p, int e)
{
    switch (e) {
    case ECONNREFUSED:
        probe_done(p, 0, "connect refused");
        break;
    case ECONNRESET:
    case EPIPE:
        probe_done(p, 0, "connection reset");
        break;
    case ETIMEDOUT:
        probe_done(p, 0, "%s timeout", p->phase == PH_CONNECT ? "connect" : "read");
        break;
    default:
        probe_done(p, 0, "%s failed (%s)", probe_phase_str(p->phase), strerror(e));
        break;
    }
}

/* Errors that say nothing about the server: this process is short of something. */
static int errno_is_local(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == EADDRNOTAVAIL ||
           e == EAGAIN;
}

static void probe_io(struct bl_io *io, uint32_t events);

static void probe_start(struct probe *p)
{
    char abuf[BL_ADDR_STRLEN];
    p->next_start_ms += p->cc->interval_ms;
    p->started++;
    int fd = bl_sock_connect((const struct sockaddr *)&p->addr, p->addrlen);
    if (fd < 0) {
        int e = errno;
        if (errno_is_local(e)) {
            bl_log(BL_LOG_WARN, "upstream \"%s\" server %s: check skipped: socket() or "
                   "connect() failed (%s)", p->srv->group ? p->srv->group->name : "?",
                   server_label(p, abuf, sizeof(abuf)), strerror(e));
            probe_schedule(p);
            return;
        }
        p->phase = PH_CONNECT;
        probe_fail_errno(p, e);
        return;
    }
    p->io.fd = fd;
    int reads = bl_check_reads(p->cc);
    if (reads) {
        /* http and the protocol probes share the answer buffer (the parser is http's only). */
        p->http = malloc(sizeof(*p->http));
        if (p->http) {
            p->http->len = p->http->head_len = p->http->raw = p->http->body_len = 0;
            bl_h1_parser_init_response(&p->http->parser, CHECK_MAX_LINE, BL_CHECK_MAX_RESPONSE,
                                       p->head_request);
            bl_h1_message_init(&p->http->msg, p->http->fields, BL_H1_MAX_HEADERS);
        }
    }
    if ((reads && !p->http) || bl_loop_add(p->h->loop, &p->io) != BL_OK) {
        bl_log(BL_LOG_WARN, "upstream \"%s\" server %s: check skipped: %s",
               p->srv->group ? p->srv->group->name : "?", server_label(p, abuf, sizeof(abuf)),
               p->http || !reads ? "epoll_ctl() failed" : "out of memory");
        probe_close(p);
        probe_schedule(p);
        return;
    }
    p->phase = PH_CONNECT;
    p->sent = 0;
    bl_timer_set(p->h->loop, &p->timer, bl_now_ms() + p->cc->timeout_ms);
}

static void probe_timer(struct bl_timer *t)
{
    struct probe *p = probe_of_timer(t);
    if (p->h->stopped)
        return;
    if (p->phase == PH_IDLE)
        probe_start(p);
    else
        probe_done(p, 0, "%s timeout", probe_phase_str(p->phase));
}

/* Feeds the body bytes received so far. Returns BL_OK when the body is complete (or the cap is
 * reached), BL_AGAIN when more may come, BL_ERR on bad chunked framing (p->last not set). */
static int body_feed(struct probe *p, const char **why)
{
    struct probe_http *b = p->http;
    char *body = b->data + b->head_len;
    uint32_t avail = b->len - b->head_len - b->raw;
    switch (b->msg.body) {
    case BL_H1_BODY_NONE:
        return BL_OK;
    case BL_H1_BODY_LENGTH: {
        uint64_t want = b->msg.content_length - b->body_len;
        uint32_t take = avail < want ? avail : (uint32_t)want;
        b->raw += take;
        b->body_len += take;
        return b->body_len == b->msg.content_length ? BL_OK : BL_AGAIN;
    }
    case BL_H1_BODY_CHUNKED:
        /* Strip the framing in place (data never moves forward of where it was read), so a
         * needle split across two chunks is still found. */
        while (b->raw < b->len - b->head_len) {
            int done = 0;
            uint64_t before = b->chunked.data_bytes;
            ssize_t n = bl_h1_chunked_scan(&b->chunked, body + b->raw, 1, &done);
            if (n < 0) {
                *why = b->chunked.reason;
                return BL_ERR;
            }
            if (done)
                return BL_OK;
            if (b->chunked.data_bytes > before) {
                body[b->body_len++] = body[b->raw];
                uint32_t left = b->len - b->head_len - b->raw - 1;
                uint32_t more = b->chunked.remaining < left ? (uint32_t)b->chunked.remaining
                                                            : left;
                if (more) {
                    bl_h1_chunked_scan(&b->chunked, body + b->raw + 1, more, &done);
                    memmove(body + b->body_len, body + b->raw + 1, more);
                    b->body_len += more;
                    b->raw += more;
                }
            }
            b->raw++;
        }
        return BL_AGAIN;
    case BL_H1_BODY_CLOSE:
    default:
        b->raw += avail;
        b->body_len += avail;
        return BL_AGAIN;
    }
}

/* Looks at what has arrived. Returns BL_OK once the probe is decided (probe_done called),
 * BL_AGAIN to read on. eof: the server closed; full: the buffer is full. */
static int response_check(struct probe *p, int eof, int full)
{
    struct probe_http *b = p->http;
    if (!b->head_len) {
        int r = bl_h1_parse(&b->parser, b->data, b->len, &b->msg);
        if (r == BL_ERR) {
            probe_done(p, 0, "invalid response (%s)", b->parser.reason);
            return BL_OK;
        }
        if (r == BL_AGAIN) {
            if (eof) {
                probe_done(p, 0, "invalid response (%s)",
                           b->len ? "closed inside the head" : "closed without a response");
                return BL_OK;
            }
            if (full) {
                probe_done(p, 0, "invalid response (head over %u bytes)",
                           BL_CHECK_MAX_RESPONSE);
                return BL_OK;
            }
            return BL_AGAIN;
        }
        b->head_len = (uint32_t)r;
        unsigned status = b->msg.status;
        if (!(p->cc->expect_alive & (1u << (status / 100)))) {
            probe_done(p, 0, "status %u", status);
            return BL_OK;
        }
        if (!p->cc->expect_body) {
            probe_done(p, 1, "status %u", status);
            return BL_OK;
        }
        if (b->msg.body == BL_H1_BODY_CHUNKED)
            bl_h1_chunked_init(&b->chunked);
    }

    const char *why = NULL;
    int r = body_feed(p, &why);
    if (r == BL_ERR) {
        probe_done(p, 0, "invalid response (%s)", why ? why : "bad chunked body");
        return BL_OK;
    }
    if (memmem(b->data + b->head_len, b->body_len, p->cc->expect_body, p->cc->expect_body_len)) {
        probe_done(p, 1, "status %u", (unsigned)b->msg.status);
        return BL_OK;
    }
    if (r == BL_OK || full || (eof && b->msg.body == BL_H1_BODY_CLOSE)) {
        probe_done(p, 0, "body mismatch");
        return BL_OK;
    }
    if (eof) {
        probe_done(p, 0, "invalid response (closed inside the body)");
        return BL_OK;
    }
    return BL_AGAIN;
}

/* The checker's TLS client context: no verification, no session reuse (a probe asks whether
 * the server completes a handshake and answers, not who it is). Made on first use; the
 * control thread only. */
static SSL_CTX *check_ssl_ctx(void)
{
    static SSL_CTX *ctx;
    if (!ctx && (ctx = SSL_CTX_new(TLS_client_method()))) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    }
    return ctx;
}

/* A TLS probe's read (send 0) or write (send 1): bytes (> 0), 0 at the server's close, or -1
 * with errno EAGAIN (wait for any edge), or BL_TLS_FAILED after probe_done. */
#define BL_TLS_FAILED (-10)
static ssize_t tls_io(struct probe *p, char *buf, size_t len, int send)
{
    ERR_clear_error();
    errno = 0;
    int n = send ? SSL_write(p->tls, buf, (int)len) : SSL_read(p->tls, buf, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(p->tls, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_last_error() &&
                                       !errno && !send))
        return 0;
    if (e == SSL_ERROR_SYSCALL && errno) {
        int err = errno;
        ERR_clear_error();
        probe_fail_errno(p, err);
        return BL_TLS_FAILED;
    }
    char why[160];
    ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
    ERR_clear_error();
    probe_done(p, 0, "TLS %s failed (%s)", send ? "write" : "read", why);
    return BL_TLS_FAILED;
}

/* Drives the handshake: BL_OK done, BL_AGAIN waiting, BL_ERR after probe_done. */
static int tls_handshake(struct probe *p)
{
    if (!p->tls) {
        SSL_CTX *ctx = check_ssl_ctx();
        if (!ctx || !(p->tls = SSL_new(ctx)) || SSL_set_fd(p->tls, p->io.fd) != 1) {
            ERR_clear_error();
            probe_done(p, 0, "TLS setup failed (out of memory)");
            return BL_ERR;
        }
        SSL_set_connect_state(p->tls);
    }
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(p->tls);
    if (rc == 1)
        return BL_OK;
    int e = SSL_get_error(p->tls, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return BL_AGAIN;
    unsigned long last = ERR_peek_last_error();
    if (e == SSL_ERROR_SYSCALL && !last) {
        int err = errno;
        if (err)
            probe_fail_errno(p, err);
        else
            probe_done(p, 0, "TLS handshake failed (closed by the server)");
        return BL_ERR;
    }
    char why[160];
    ERR_error_string_n(last, why, sizeof(why));
    ERR_clear_error();
    probe_done(p, 0, "TLS handshake failed (%s)", why);
    return BL_ERR;
}

static void response_read(struct probe *p)
{
    struct probe_http *b = p->http;
    for (;;) {
        if (b->len == BL_CHECK_MAX_RESPONSE) {
            response_check(p, 0, 1);
            return;
        }
        ssize_t n = p->tls ? tls_io(p, b->data + b->len, BL_CHECK_MAX_RESPONSE - b->len, 0)
                           : recv(p->io.fd, b->data + b->len, BL_CHECK_MAX_RESPONSE - b->len, 0);
        if (n == BL_TLS_FAILED)
            return;
        if (n > 0) {
            b->len += (uint32_t)n;
            if (response_check(p, 0, b->len == BL_CHECK_MAX_RESPONSE) == BL_OK)
                return;
            continue;
        }
        if (n == 0) {
            response_check(p, 1, 0);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            probe_fail_errno(p, errno);
        return;
    }
}

/* redis, mysql, tcp expect=: reads and lets check_proto.c judge after every read. */
static void proto_read(struct probe *p)
{
    struct probe_http *b = p->http;
    char why[sizeof(p->last)];
    for (;;) {
        ssize_t n = 0;
        int eof = 0;
        if (b->len < BL_CHECK_MAX_RESPONSE) {
            n = p->tls ? tls_io(p, b->data + b->len, BL_CHECK_MAX_RESPONSE - b->len, 0)
                       : recv(p->io.fd, b->data + b->len, BL_CHECK_MAX_RESPONSE - b->len, 0);
            if (n == BL_TLS_FAILED)
                return;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    probe_fail_errno(p, errno);
                return;
            }
            eof = n == 0;
            b->len += (uint32_t)n;
        }
        int full = b->len == BL_CHECK_MAX_RESPONSE;
        int r = bl_check_proto_judge(p->cc, b->data, b->len, eof || full, why, sizeof(why));
        if (r != BL_AGAIN) {
            probe_done(p, r == BL_OK, "%s", why);
            return;
        }
        if (eof || full)
            return;                       /* judge answers at eof; not reached */
    }
}

static void probe_io(struct bl_io *io, uint32_t events)
{
    struct probe *p = probe_of_io(io);
    if (p->h->stopped || io->fd < 0)
        return;
    switch (p->phase) {
    case PH_CONNECT: {
        if (!(events & (BL_EV_WRITE | BL_EV_ERROR)))
            return;
        int e = 0;
        socklen_t elen = sizeof(e);
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
            e = errno;
        if (e) {
            probe_fail_errno(p, e);
            return;
        }
        if (p->cc->ssl) {
            p->phase = PH_HANDSHAKE;
            goto handshake;
        }
        if (p->cc->type == BL_CHECK_TCP && !p->cc->tcp_send && !p->cc->expect) {
            probe_done(p, 1, "connected");
            return;
        }
        p->phase = PH_SEND;
        goto send;
    }
    case PH_HANDSHAKE:
    handshake: {
        int rc = tls_handshake(p);
        if (rc != BL_OK)
            return;
        if (p->cc->type == BL_CHECK_TCP && !p->cc->tcp_send && !p->cc->expect) {
            probe_done(p, 1, "TLS handshake done");
            return;
        }
        p->phase = PH_SEND;
    }
        /* fall through */
    case PH_SEND:
    send: {
        uint32_t req_len;
        const char *req = bl_check_request(p->cc, &req_len);
        while (p->sent < req_len) {
            ssize_t n = p->tls ? tls_io(p, (char *)req + p->sent, req_len - p->sent, 1)
                               : send(io->fd, req + p->sent, req_len - p->sent, MSG_NOSIGNAL);
            if (n == BL_TLS_FAILED)
                return;
            if (n >= 0) {
                p->sent += (uint32_t)n;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                probe_fail_errno(p, errno);
            return;                       /* wait for the next write edge */
        }
        if (!bl_check_reads(p->cc)) {
            probe_done(p, 1, "sent");
            return;
        }
        p->phase = PH_READ;
    }
        /* fall through */
    case PH_READ:
        if (p->cc->type == BL_CHECK_HTTP)
            response_read(p);
        else
            proto_read(p);
        return;
    default:
        return;
    }
}

/* Running checkers' probes by state, for carrying verdicts over a reload. */
struct carry {
    const struct bl_server_state *state;
    const struct probe *probe;
};

static int carry_cmp(const void *a, const void *b)
{
    const struct bl_server_state *x = ((const struct carry *)a)->state;
    const struct bl_server_state *y = ((const struct carry *)b)->state;
    return x < y ? -1 : x > y;
}

static const struct probe *carry_find(const struct carry *c, size_t n,
                                      const struct bl_server_state *st)
{
    struct carry key = {.state = st};
    const struct carry *f = n ? bsearch(&key, c, n, sizeof(*c), carry_cmp) : NULL;
    return f ? f->probe : NULL;
}

static void health_free(struct bl_deferred *d)
{
    struct bl_health *h = (struct bl_health *)(void *)((char *)d -
                                                       offsetof(struct bl_health, free_later));
    free(h->probes);
    free(h);
}

struct bl_health *bl_health_start(struct bl_loop *loop, struct bl_upstream_group **groups,
                                  uint32_t ngroups, char *err, size_t errlen)
{
    uint64_t now = bl_clock_update();
    uint32_t n = 0;
    for (uint32_t gi = 0; gi < ngroups; gi++)
        if (groups[gi]->check)
            for (uint32_t si = 0; si < groups[gi]->nservers; si++)
                n += !groups[gi]->servers[si].down;

    size_t ncarry = 0;
    for (struct bl_health *o = running; o; o = o->next)
        ncarry += o->nprobes;

    struct bl_health *h = calloc(1, sizeof(*h));
    struct probe *probes = n ? calloc(n, sizeof(*probes)) : NULL;
    struct carry *carry = ncarry ? malloc(ncarry * sizeof(*carry)) : NULL;
    if (!h || (n && !probes) || (ncarry && !carry)) {
        free(h);
        free(probes);
        free(carry);
        snprintf(err, errlen, "out of memory for health checks");
        return NULL;
    }
    size_t k = 0;
    for (struct bl_health *o = running; o; o = o->next)
        for (uint32_t i = 0; i < o->nprobes; i++)
            /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): ncarry counted these */
            carry[k++] = (struct carry){o->probes[i].srv->state, &o->probes[i]};
    if (ncarry)
        qsort(carry, ncarry, sizeof(*carry), carry_cmp);

    h->loop = loop;
    h->probes = probes;
    h->nprobes = n;
    h->rng = bl_wall_us() ^ (uint64_t)(uintptr_t)h;

    uint32_t i = 0;
    for (uint32_t gi = 0; gi < ngroups; gi++) {
        struct bl_upstream_group *g = groups[gi];
        const struct bl_check_conf *cc = g->check;
        for (uint32_t si = 0; si < g->nservers; si++) {
            struct bl_upstream_server *s = &g->servers[si];
            if (!cc || s->down) {
                /* Nobody checks it in this generation: no stale verdict may hold it out. */
                atomic_store_explicit(&s->state->check_down, 0, memory_order_relaxed);
                continue;
            }
            struct probe *p = &probes[i++];
            p->io.fd = -1;
            p->io.handler = probe_io;
            p->timer.handler = probe_timer;
            p->h = h;
            p->srv = s;
            p->cc = cc;
            memcpy(&p->addr, &s->addr, sizeof(p->addr));
            p->addrlen = s->addrlen;
            if (cc->port) {
                if (p->addr.ss_family == AF_INET)
                    ((struct sockaddr_in *)&p->addr)->sin_port = htons(cc->port);
                else if (p->addr.ss_family == AF_INET6)
                    ((struct sockaddr_in6 *)&p->addr)->sin6_port = htons(cc->port);
            }
            p->head_request = cc->type == BL_CHECK_HTTP && cc->http_send_len >= 5 &&
                              memcmp(cc->http_send, "HEAD ", 5) == 0;
            const struct probe *old = carry_find(carry, ncarry, s->state);
            if (old) {
                p->down = old->down;
                p->successes = old->successes;
                p->failures = old->failures;
            } else {
                p->down = cc->default_down;
                atomic_store_explicit(&s->state->check_down, p->down, memory_order_relaxed);
            }
            /* Spread first probes uniformly over the first interval; a kept server goes on at
             * its own pace (a reload must not probe every server at once). */
            if (old && old->next_start_ms > now && old->next_start_ms <= now + cc->interval_ms)
                p->next_start_ms = old->next_start_ms;
            else
                p->next_start_ms = now + rng_next(&h->rng) % cc->interval_ms;
            bl_timer_set(loop, &p->timer, p->next_start_ms);
        }
    }
    free(carry);
    h->next = running;
    running = h;
    return h;
}

void bl_health_stop(struct bl_health *h)
{
    if (!h)
        return;
    for (struct bl_health **pp = &running; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    h->stopped = 1;
    for (uint32_t i = 0; i < h->nprobes; i++) {
        bl_timer_cancel(h->loop, &h->probes[i].timer);
        probe_close(&h->probes[i]);
    }
    /* Events for these probes may still be queued in the loop's current batch. */
    h->free_later.run = health_free;
    bl_loop_defer(h->loop, &h->free_later);
}
