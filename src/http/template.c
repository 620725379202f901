/* nginx-style variables in strings. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sock.h"
#include "http/h1_parser.h"
#include "http/template.h"

enum var_id {
    VAR_LITERAL = 0,
    VAR_HOST,
    VAR_HTTP_HOST,
    VAR_REMOTE_ADDR,
    VAR_REMOTE_PORT,
    VAR_PROXY_ADD_XFF,
    VAR_SCHEME,
    VAR_REQUEST_URI,
    VAR_URI,
    VAR_ARGS,
    VAR_IS_ARGS,
    VAR_REQUEST_METHOD,
    VAR_REQUEST,
    VAR_SERVER_PROTOCOL,
    VAR_SERVER_PORT,
    VAR_SERVER_ADDR,
    VAR_HOSTNAME,
    VAR_MSEC,
    VAR_PROXY_HOST,
    VAR_PROXY_PORT,
    VAR_HTTP_,       /* $http_NAME */
    VAR_ARG_,        /* $arg_NAME */
    VAR_COOKIE_,     /* $cookie_NAME */
};

static const struct {
    const char *name;
    enum var_id id;
} known_vars[] = {
    {"host", VAR_HOST},
    {"http_host", VAR_HTTP_HOST},
    {"remote_addr", VAR_REMOTE_ADDR},
    {"binary_remote_addr", VAR_REMOTE_ADDR},
    {"remote_port", VAR_REMOTE_PORT},
    {"proxy_add_x_forwarded_for", VAR_PROXY_ADD_XFF},
    {"scheme", VAR_SCHEME},
    {"request_uri", VAR_REQUEST_URI},
    {"uri", VAR_URI},
    {"document_uri", VAR_URI},
    {"args", VAR_ARGS},
    {"query_string", VAR_ARGS},
    {"is_args", VAR_IS_ARGS},
    {"request_method", VAR_REQUEST_METHOD},
    {"request", VAR_REQUEST},
    {"server_protocol", VAR_SERVER_PROTOCOL},
    {"server_port", VAR_SERVER_PORT},
    {"server_addr", VAR_SERVER_ADDR},
    {"hostname", VAR_HOSTNAME},
    {"msec", VAR_MSEC},
    {"proxy_host", VAR_PROXY_HOST},
    {"proxy_port", VAR_PROXY_PORT},
};

struct part {
    enum var_id id;
    const char *text;   /* literal text, or NAME of $http_NAME etc. */
    uint32_t len;
};

struct bl_template {
    char *source;
    size_t source_len;
    uint32_t nparts;
    int constant;
    struct part parts[];
};

static int is_var_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

struct bl_template *bl_template_compile(const char *text, char *err, size_t errlen)
{
    size_t len = strlen(text);
    /* At most one part per '$' and one literal between each: 2 * ($ count) + 1. */
    uint32_t max_parts = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '$')
            max_parts += 2;
    struct bl_template *t = calloc(1, sizeof(*t) + max_parts * sizeof(struct part));
    if (!t || !(t->source = strdup(text))) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->source_len = len;
    const char *s = t->source;
    size_t i = 0;
    while (i < len) {
        if (s[i] != '$') {
            size_t start = i;
            while (i < len && s[i] != '$')
                i++;
            t->parts[t->nparts++] = (struct part){VAR_LITERAL, s + start, (uint32_t)(i - start)};
            continue;
        }
        i++;
        int braced = i < len && s[i] == '{';
        if (braced)
            i++;
        size_t start = i;
        while (i < len && is_var_char(s[i]))
            i++;
        size_t nlen = i - start;
        if (braced) {
            if (i >= len || s[i] != '}') {
                snprintf(err, errlen, "the closing bracket in \"%.*s\" variable is missing",
                         (int)nlen, s + start);
                bl_template_free(t);
                return NULL;
            }
            i++;
        }
        if (nlen == 0) {
            snprintf(err, errlen, "invalid variable name in \"%s\"", text);
            bl_template_free(t);
            return NULL;
        }
        const char *name = s + start;
        struct part p = {VAR_LITERAL, NULL, 0};
        for (size_t k = 0; k < sizeof(known_vars) / sizeof(known_vars[0]); k++)
            if (strlen(known_vars[k].name) == nlen && memcmp(known_vars[k].name, name, nlen) == 0)
                p.id = known_vars[k].id;
        if (p.id == VAR_LITERAL) {
            if (nlen > 5 && memcmp(name, "http_", 5) == 0)
                p = (struct part){VAR_HTTP_, name + 5, (uint32_t)(nlen - 5)};
            else if (nlen > 4 && memcmp(name, "arg_", 4) == 0)
                p = (struct part){VAR_ARG_, name + 4, (uint32_t)(nlen - 4)};
            else if (nlen > 7 && memcmp(name, "cookie_", 7) == 0)
                p = (struct part){VAR_COOKIE_, name + 7, (uint32_t)(nlen - 7)};
            else {
                snprintf(err, errlen, "unknown \"%.*s\" variable", (int)nlen, name);
                bl_template_free(t);
                return NULL;
            }
        }
        t->parts[t->nparts++] = p;
    }
    t->constant = 1;
    for (uint32_t k = 0; k < t->nparts; k++)
        if (t->parts[k].id != VAR_LITERAL)
            t->constant = 0;
    return t;
}

void bl_template_free(struct bl_template *t)
{
    if (!t)
        return;
    free(t->source);
    free(t);
}

int bl_template_is_constant(const struct bl_template *t) { return t->constant; }

const char *bl_template_text(const struct bl_template *t, size_t *len)
{
    *len = t->source_len;
    return t->source;
}

/* Appends src to out at *pos (bounded by cap); *pos always advances by n. */
static inline void put(char *out, size_t cap, size_t *pos, const char *src, size_t n)
{
    if (*pos < cap) {
        size_t room = cap - *pos;
        memcpy(out + *pos, src, n < room ? n : room);
    }
    *pos += n;
}

/* $http_NAME: '_' in NAME matches '-' in the field name. */
static int header_name_eq(const struct bl_h1_header *h, const char *name, uint32_t len)
{
    if (h->name_len != len)
        return 0;
    for (uint32_t i = 0; i < len; i++) {
        char a = (char)tolower((unsigned char)h->name[i]);
        char b = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
        if (a != b)
            return 0;
    }
    return 1;
}

/* Finds NAME=value in a list separated by sep ('&' for args, ';' for cookies). */
static int find_pair(const char *s, size_t len, char sep, const char *name, uint32_t nlen,
                     const char **val, size_t *vlen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == sep))
            i++;
        size_t start = i;
        while (i < len && s[i] != sep)
            i++;
        const char *pair = s + start;
        size_t plen = i - start;
        if (plen > nlen && pair[nlen] == '=' && strncasecmp(pair, name, nlen) == 0) {
            *val = pair + nlen + 1;
            *vlen = plen - nlen - 1;
            return 1;
        }
    }
    return 0;
}

size_t bl_template_eval(const struct bl_template *t, const struct bl_var_ctx *ctx, char *out,
                        size_t cap)
{
    size_t pos = 0;
    const struct bl_h1_message *m = ctx->req;
    char num[32];
    for (uint32_t k = 0; k < t->nparts; k++) {
        const struct part *p = &t->parts[k];
        switch (p->id) {
        case VAR_LITERAL:
            put(out, cap, &pos, p->text, p->len);
            break;
        case VAR_HOST:
            if (m && m->host) {
                /* nginx's $host: lowercase, without the port. */
                uint32_t n = m->host_len;
                if (m->host[0] != '[') {
                    const char *colon = memchr(m->host, ':', n);
                    if (colon)
                        n = (uint32_t)(colon - m->host);
                } else {
                    const char *close = memchr(m->host, ']', n);
                    if (close)
                        n = (uint32_t)(close - m->host + 1);
                }
                for (uint32_t i = 0; i < n; i++) {
                    char c = (char)tolower((unsigned char)m->host[i]);
                    put(out, cap, &pos, &c, 1);
                }
            }
            break;
        case VAR_HTTP_HOST:
            if (m) {
                int i = bl_h1_find(m, BL_H1_HDR_HOST);
                if (i >= 0)
                    put(out, cap, &pos, m->headers[i].value, m->headers[i].value_len);
            }
            break;
        case VAR_REMOTE_ADDR:
            put(out, cap, &pos, ctx->client_ip, ctx->client_ip_len);
            break;
        case VAR_REMOTE_PORT:
            put(out, cap, &pos, num, (size_t)snprintf(num, sizeof(num), "%u", ctx->client_port));
            break;
        case VAR_PROXY_ADD_XFF: {
            int first = 1;
            if (m) {
                for (uint32_t i = 0; i < m->nheaders; i++) {
                    if (m->headers[i].id != BL_H1_HDR_X_FORWARDED_FOR)
                        continue;
                    if (!first)
                        put(out, cap, &pos, ", ", 2);
                    put(out, cap, &pos, m->headers[i].value, m->headers[i].value_len);
                    first = 0;
                }
            }
            if (!first)
                put(out, cap, &pos, ", ", 2);
            put(out, cap, &pos, ctx->client_ip, ctx->client_ip_len);
            break;
        }
        case VAR_SCHEME:
            put(out, cap, &pos, "http", 4);
            break;
        case VAR_PROXY_HOST:
            if (ctx->proxy_host)
                put(out, cap, &pos, ctx->proxy_host, strlen(ctx->proxy_host));
            break;
        case VAR_PROXY_PORT:
            if (ctx->proxy_port)
                put(out, cap, &pos, ctx->proxy_port, strlen(ctx->proxy_port));
            break;
        case VAR_REQUEST_URI:
            if (m) {
                if (m->flags & BL_H1_F_ABSOLUTE_FORM) {
                    put(out, cap, &pos, m->path, m->path_len);
                    if (m->query) {
                        put(out, cap, &pos, "?", 1);
                        put(out, cap, &pos, m->query, m->query_len);
                    }
                } else {
                    put(out, cap, &pos, m->target, m->target_len);
                }
            }
            break;
        case VAR_URI:
            if (ctx->uri)
                put(out, cap, &pos, ctx->uri, ctx->uri_len);
            else if (m)
                put(out, cap, &pos, m->path, m->path_len);
            break;
        case VAR_ARGS:
            if (m && m->query)
                put(out, cap, &pos, m->query, m->query_len);
            break;
        case VAR_IS_ARGS:
            if (m && m->query)
                put(out, cap, &pos, "?", 1);
            break;
        case VAR_REQUEST_METHOD:
            if (m)
                put(out, cap, &pos, m->method, m->method_len);
            break;
        case VAR_REQUEST:
            if (m) {
                put(out, cap, &pos, m->method, m->method_len);
                put(out, cap, &pos, " ", 1);
                put(out, cap, &pos, m->target, m->target_len);
                put(out, cap, &pos, m->minor_version ? " HTTP/1.1" : " HTTP/1.0", 9);
            }
            break;
        case VAR_SERVER_PROTOCOL:
            if (m)
                put(out, cap, &pos, m->minor_version ? "HTTP/1.1" : "HTTP/1.0", 8);
            break;
        case VAR_SERVER_PORT:
            put(out, cap, &pos, num, (size_t)snprintf(num, sizeof(num), "%u", ctx->server_port));
            break;
        case VAR_SERVER_ADDR: {
            /* Looked up only when a template asks: a syscall, off the common path. */
            union bl_sockaddr sa;
            socklen_t len = sizeof(sa);
            char ip[64];
            if (ctx->fd >= 0 && getsockname(ctx->fd, &sa.sa, &len) == 0)
                put(out, cap, &pos, ip, (size_t)bl_addr_format_ip(&sa.sa, ip, sizeof(ip)));
            break;
        }
        case VAR_HOSTNAME: {
            char hn[256];
            if (gethostname(hn, sizeof(hn)) == 0) {
                hn[sizeof(hn) - 1] = '\0';
                put(out, cap, &pos, hn, strlen(hn));
            }
            break;
        }
        case VAR_MSEC: {
            uint64_t us = bl_wall_us();
            put(out, cap, &pos, num,
                (size_t)snprintf(num, sizeof(num), "%llu.%03llu",
                                 (unsigned long long)(us / 1000000),
                                 (unsigned long long)(us / 1000 % 1000)));
            break;
        }
        case VAR_HTTP_:
            if (m) {
                for (uint32_t i = 0; i < m->nheaders; i++) {
                    if (header_name_eq(&m->headers[i], p->text, p->len)) {
                        put(out, cap, &pos, m->headers[i].value, m->headers[i].value_len);
                        break;
                    }
                }
            }
            break;
        case VAR_ARG_: {
            const char *v;
            size_t vl;
            if (m && m->query && find_pair(m->query, m->query_len, '&', p->text, p->len, &v, &vl))
                put(out, cap, &pos, v, vl);
            break;
        }
        case VAR_COOKIE_:
            if (m) {
                for (uint32_t i = 0; i < m->nheaders; i++) {
                    const char *v;
                    size_t vl;
                    if (m->headers[i].name_len == 6 &&
                        strncasecmp(m->headers[i].name, "cookie", 6) == 0 &&
                        find_pair(m->headers[i].value, m->headers[i].value_len, ';', p->text,
                                  p->len, &v, &vl)) {
                        put(out, cap, &pos, v, vl);
                        break;
                    }
                }
            }
            break;
        }
    }
    return pos;
}
