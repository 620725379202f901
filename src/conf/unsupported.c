/* nginx directives and listen parameters this build knows it lacks, and how to say so. */
#include <stdio.h>
#include <string.h>

#include "conf/unsupported.h"

#define E BL_UNSUPPORTED_ERROR
#define W BL_UNSUPPORTED_WARN

static const char TLS[] = "TLS is";
static const char TLS_TUNING[] = "this TLS setting is";
static const char MTLS[] = "client certificate revocation lists are";
static const char HTTP3[] = "HTTP/3 is";
/* nginx tunes these; ballast has fixed bounds (http/h2.h) or large_client_header_buffers */
static const char H2_TUNING[] = "this HTTP/2 setting is";
static const char GZIP[] = "this compression is";
static const char CACHE[] = "caching is";
static const char CACHE_TUNING[] = "this cache setting is";
static const char LIMITS[] = "bandwidth limits are";
static const char ACCESS[] = "access control is";
static const char REWRITE[] = "logging rewrites is";
static const char MAIL[] = "mail proxying is";
static const char OTHER_UPSTREAMS[] = "FastCGI, uwsgi, SCGI, gRPC and memcached upstreams are";
static const char FILTERS[] = "changing response headers and bodies is";
static const char MODULES[] = "loading modules is";
static const char FILE_IO[] = "asynchronous and direct file I/O is";

/* Grouped by feature; a name ending in '*' is a prefix. Read once per unknown name. */
static const struct bl_unsupported directives[] = {
    /* `ssl on;` is gone from nginx too (listen ... ssl); CRLs would leave a server open to
     * certificates the operator meant to refuse, so it is an error, not a warning. */
    {"ssl", E, TLS},
    {"ssl_crl", E, MTLS},
    {"ssl_reject_handshake", E, "rejecting TLS handshakes by name is"},
    {"ssl_stapling*", W, "OCSP stapling is"},
    {"ssl_ocsp*", W, "OCSP is"},
    {"ssl_buffer_size", W, TLS_TUNING},
    {"ssl_early_data", W, "TLS 1.3 early data is"},
    {"ssl_session_ticket_key", W, "ticket keys from files are"},
    {"ssl_password_file", W, "encrypted certificate keys are"},
    {"ssl_certificate_cache", W, TLS_TUNING},
    {"http2_chunk_size", W, H2_TUNING},
    {"http2_body_preread_size", W, H2_TUNING},
    {"http2_streams_index_size", W, H2_TUNING},
    {"http2_max_requests", W, H2_TUNING},
    {"http2_max_field_size", W, H2_TUNING},
    {"http2_max_header_size", W, H2_TUNING},
    {"http2_push", W, "HTTP/2 server push is"},
    {"http2_push_preload", W, "HTTP/2 server push is"},
    {"http3", E, HTTP3},
    {"http3_*", W, HTTP3},
    {"quic_*", W, HTTP3},
    {"gunzip", W, GZIP},
    {"gunzip_*", W, GZIP},
    {"brotli", W, GZIP},
    {"brotli_*", W, GZIP},
    {"proxy_cache_convert_head", E, CACHE_TUNING},
    {"proxy_cache_max_range_offset", E, CACHE_TUNING},
    {"proxy_store", E, CACHE},
    {"proxy_store_*", E, CACHE},
    {"open_file_cache", W, CACHE},
    {"open_file_cache_*", W, CACHE},
    {"limit_rate", E, LIMITS},
    {"limit_rate_*", E, LIMITS},
    {"limit_except", E, ACCESS},
    {"satisfy", E, ACCESS},
    {"auth_basic", E, ACCESS},
    {"auth_basic_*", E, ACCESS},
    {"auth_request", E, ACCESS},
    {"auth_request_*", E, ACCESS},
    {"rewrite_log", W, REWRITE},
    {"uninitialized_variable_warn", W, REWRITE},
    {"map_hash_*", W, "sizing map hashes is"},
    {"mail", E, MAIL},
    {"fastcgi_*", E, OTHER_UPSTREAMS},
    {"uwsgi_*", E, OTHER_UPSTREAMS},
    {"scgi_*", E, OTHER_UPSTREAMS},
    {"grpc_*", E, OTHER_UPSTREAMS},
    {"memcached_*", E, OTHER_UPSTREAMS},
    {"add_trailer", E, FILTERS},
    {"sub_filter", E, FILTERS},
    {"sub_filter_*", E, FILTERS},
    {"ssi", E, FILTERS},
    {"ssi_*", E, FILTERS},
    {"load_module", W, MODULES},
    {"aio", W, FILE_IO},
    {"aio_write", W, FILE_IO},
    {"directio", W, FILE_IO},
    {"directio_alignment", W, FILE_IO},
};

static const struct bl_unsupported listen_params[] = {
    {"quic", E, HTTP3},
    {"deferred", W, "TCP_DEFER_ACCEPT is"},
    {"fastopen=*", W, "TCP Fast Open is"},
    {"so_keepalive=*", W, "TCP keep-alive on client connections is"},
    {"ipv6only=off", E, "dual-stack IPv6 sockets (ipv6only=off) are"},
    {"setfib=*", E, "FreeBSD's setfib is"},
    {"accept_filter=*", E, "FreeBSD's accept filters are"},
};

static int name_matches(const char *pattern, const char *name)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, name, n - 1) == 0;
    return strcmp(pattern, name) == 0;
}

static const struct bl_unsupported *find(const struct bl_unsupported *t, size_t n,
                                         const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (name_matches(t[i].name, name))
            return &t[i];
    return NULL;
}

const struct bl_unsupported *bl_unsupported_directive(const char *name, char *const *args,
                                                      int nargs)
{
    (void)args;
    (void)nargs;
    return find(directives, sizeof(directives) / sizeof(directives[0]), name);
}

const struct bl_unsupported *bl_unsupported_listen_param(const char *param)
{
    return find(listen_params, sizeof(listen_params) / sizeof(listen_params[0]), param);
}

void bl_unsupported_format(const struct bl_unsupported *entry, const char *what, char *buf,
                           size_t len)
{
    if (entry->level == BL_UNSUPPORTED_WARN)
        snprintf(buf, len, "%s not supported in this build, %s ignored", entry->feature, what);
    else
        snprintf(buf, len, "%s not supported in this build: %s", entry->feature, what);
}
