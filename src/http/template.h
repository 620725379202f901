/* Strings with nginx variables ("$host", "${arg_id}x", "$http_user_agent"), compiled once at
 * config load and evaluated per request without allocation: proxy_set_header values, hash
 * keys, return texts and log_format lines.
 *
 * Request variables: $host $http_host $remote_addr $remote_port $remote_user
 * $proxy_add_x_forwarded_for $scheme $request_uri $uri $document_uri $args $query_string
 * $is_args $request_method $request $server_protocol $server_port $server_addr $hostname $pid
 * $msec $time_local $time_iso8601 $proxy_host $proxy_port $connection_requests $server_name
 * $request_id $trace_id $span_id $realip_remote_addr
 * $proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr
 * $proxy_protocol_server_port (not found without a PROXY header naming addresses)
 * $ssl_preread_server_name $ssl_preread_alpn_protocols $ssl_preread_protocol (stream)
 * $limit_req_status $limit_conn_status $upstream_cache_status
 * $parent_id (also as nginx's OpenTelemetry module names them: $otel_trace_id ...) $http_NAME
 * $arg_NAME $cookie_NAME.
 * Known once the response is done (bl_var_ctx.resp; empty or "-" elsewhere): $status
 * $body_bytes_sent $bytes_sent $request_length $request_time $upstream_addr $upstream_status
 * $upstream_response_time $upstream_connect_time $upstream_header_time.
 * $http_NAME matches the header NAME with '_' standing for '-', case-insensitively.
 *
 * A value may be "not found" as in nginx ($http_NAME without the header, $args without a
 * query, $upstream_* without an upstream, $remote_user without Basic credentials): empty when
 * evaluated as is, "-" in a log with escape=default, empty with escape=json or none.
 * Regex captures $0..$9 (rewrite.h) come from bl_var_ctx.cap; other names compile only when
 * the caller names them (bl_template_compile_vars: `set` variables, named captures) and are
 * evaluated through bl_var_ctx.user_var.
 */
#ifndef BL_HTTP_TEMPLATE_H
#define BL_HTTP_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/regex.h"

struct bl_h1_message;
struct bl_pp_info;
struct bl_tls_hello;
struct bl_var_ctx;

/* Regex captures of the request: the last regex that matched (a location's, rewrite's, if's),
 * its subject and offsets. */
struct bl_captures {
    const struct bl_regex *re;      /* NULL: nothing matched yet */
    const char *subject;
    uint32_t npairs;
    uint32_t ovec[2 * BL_REGEX_MAX_PAIRS];
};

/* Variables a config defines beyond the built-in ones: index i is names[i]. */
struct bl_var_names {
    char **names;
    uint32_t n;
};

/* The value of user variable idx (its name given too); NULL for empty. */
typedef const char *(*bl_user_var_fn)(const struct bl_var_ctx *ctx, uint32_t idx,
                                      const char *name, size_t name_len, size_t *len);

/* How values (not the literal text between them) are written. */
enum bl_escape {
    BL_ESC_RAW = 0,     /* as they are; not-found values are empty (proxy_set_header, keys) */
    BL_ESC_DEFAULT,     /* log_format escape=default: '"', '\' and bytes < 0x20 or >= 0x7f as
                         * \xHH (uppercase hex); not-found values as "-" */
    BL_ESC_JSON,        /* escape=json: nginx's JSON string escaping ('"' and '\' with a
                         * backslash, \n \r \t \b \f, other bytes < 0x20 as \u00HH; bytes >=
                         * 0x80 as they are); not-found values empty */
    BL_ESC_NONE,        /* escape=none: as they are; not-found values empty */
};

/* One upstream attempt of a request, for the $upstream_* variables. Times in microseconds
 * from the attempt's start, BL_TRY_NONE when the attempt did not get that far. */
struct bl_upstream_try {
    const char *addr;               /* "127.0.0.1:8080" */
    uint32_t connect_us;
    uint32_t header_us;
    uint32_t response_us;
    int status;                     /* 0: none (shown as "-") */
};
#define BL_TRY_NONE UINT32_MAX

/* What is known once a request is over (the log phase). */
struct bl_var_resp {
    int status;                     /* sent to the client; 0 shows as "000" as in nginx */
    uint64_t body_bytes_sent;
    uint64_t bytes_sent;            /* head included */
    uint64_t request_length;        /* request line, head and body bytes read */
    uint64_t request_time_us;
    const struct bl_upstream_try *tries;
    uint32_t ntries;
};

/* What a template is evaluated against. Strings need not be NUL-terminated. */
struct bl_var_ctx {
    const struct bl_h1_message *req;/* method NULL: the request line did not parse */
    const char *uri;                /* $uri: the normalized path (NULL: the path as sent) */
    uint32_t uri_len;
    const char *client_ip;          /* "127.0.0.1" */
    uint32_t client_ip_len;
    uint16_t client_port;
    const char *realip_remote_addr; /* $realip_remote_addr: the peer's address before realip
                                     * (NULL: client_ip) */
    uint32_t realip_remote_addr_len;
    uint16_t server_port;
    int fd;                         /* client socket, for $server_addr (-1: unknown) */
    const char *proxy_host;         /* $proxy_host, $proxy_port: the location's proxy_pass as */
    const char *proxy_port;         /* nginx gives them ("app", "80"); NULL: empty */
    const char *request_id;         /* $request_id; NULL: empty */
    uint32_t request_id_len;
    uint32_t connection_requests;   /* $connection_requests: this one included */
    const char *server_name;        /* $server_name: the block's first name; NULL: empty */
    const char *trace_id;           /* $trace_id: 32 hex digits; NULL: not found */
    const char *span_id;            /* $span_id: 16 hex digits; NULL: not found */
    const char *parent_id;          /* $parent_id: the client's span, 16; NULL: not found */
    const char *raw_line;           /* $request when req->method is NULL: the bytes of the
                                     * first line as received (nginx logs those); NULL: none */
    uint32_t raw_line_len;
    const struct bl_var_resp *resp; /* NULL before the log phase */
    /* Routing (rewrite.h): all may be NULL/0 when a request has no captures or rewrites. */
    const struct bl_captures *cap;  /* $0..$9 */
    bl_user_var_fn user_var;        /* set variables and named captures */
    const void *user_arg;           /* the request, for user_var */
    const char *args;               /* $args after a rewrite changed them (args_set) */
    uint32_t args_len;
    uint8_t args_set;
    /* TLS (http/tls.h): NULL on a plain connection, which makes $scheme "http" */
    const char *ssl_protocol;       /* $ssl_protocol: "TLSv1.3" */
    const char *ssl_cipher;         /* $ssl_cipher */
    const char *ssl_server_name;    /* $ssl_server_name: the SNI name ("" without) */
    const struct bl_pp_info *pp;    /* the connection's PROXY protocol header; NULL: none */
    const struct bl_tls_hello *hello; /* stream ssl_preread's ClientHello; NULL: none */
    const char *http2;              /* $http2: "h2" (TLS), "h2c"; NULL: not HTTP/2, which
                                     * $request and $server_protocol show as HTTP/1.x */
    /* limits (src/policy/): "PASSED" ...; NULL: the module did not run (not found) */
    const char *limit_req_status;   /* $limit_req_status */
    const char *limit_conn_status;  /* $limit_conn_status */
    const char *upstream_cache_status; /* "HIT", "MISS" ... (http/proxy_cache.h); NULL: the
                                     * cache did not run (not found) */
    /* $ssl_client_*: written on demand by ssl_client_var(tls, BL_VAR_SSL_CLIENT_*, out, cap),
     * which returns the length or -1 for empty; NULL: empty */
    int (*ssl_client_var)(const void *tls, int which, char *out, size_t cap);
    const void *tls;
};

/* bl_var_ctx.ssl_client_var's which */
#define BL_VAR_SSL_CLIENT_VERIFY      0
#define BL_VAR_SSL_CLIENT_S_DN        1
#define BL_VAR_SSL_CLIENT_I_DN        2
#define BL_VAR_SSL_CLIENT_SERIAL      3
#define BL_VAR_SSL_CLIENT_FINGERPRINT 4

struct bl_template;

/* Compiles text. Returns NULL with err filled (`unknown "foo" variable`, `invalid variable
 * name`) or out of memory. Control thread. */
struct bl_template *bl_template_compile(const char *text, char *err, size_t errlen);
/* The same, also knowing the config's own variable names (names may be NULL). */
struct bl_template *bl_template_compile_vars(const char *text, const struct bl_var_names *names,
                                             char *err, size_t errlen);
void bl_template_free(struct bl_template *t);

/* 1 when the template has no variables (its text is constant). */
int bl_template_is_constant(const struct bl_template *t);
/* The text as written (constant templates: the value), NUL-terminated; its length goes to
 * *len unless len is NULL. */
const char *bl_template_text(const struct bl_template *t, size_t *len);

/* Writes the value into out (up to cap bytes) and returns its full length, which may exceed
 * cap (then out holds a truncated value; call again with a bigger buffer). Any thread. */
size_t bl_template_eval(const struct bl_template *t, const struct bl_var_ctx *ctx, char *out,
                        size_t cap);

/* The same with values escaped as esc says (log_format's escape=). */
size_t bl_template_eval_esc(const struct bl_template *t, const struct bl_var_ctx *ctx,
                            enum bl_escape esc, char *out, size_t cap);

/* Escapes s[0..n) into out (up to cap bytes) as esc says; returns the full escaped length.
 * Any thread. */
size_t bl_escape(enum bl_escape esc, const char *s, size_t n, char *out, size_t cap);

#endif
