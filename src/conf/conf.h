/* The compiled configuration: what the workers run on. Built and validated by bl_conf_load()
 * on the control thread from the directive tree; immutable afterwards, shared read-only by every
 * worker (a later reload swaps whole generations).
 */
#ifndef BL_CONF_CONF_H
#define BL_CONF_CONF_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "conf/cache_conf.h"
#include "conf/ssl.h"
#include "core/cidr.h"
#include "core/sock.h"
#include "http/template.h"      /* struct bl_var_names */
#include "policy/access.h"
#include "policy/limits.h"
#include "upstream/attempt.h"     /* BL_NEXT_*: proxy_next_upstream conditions */
#include "upstream/upstream.h"

struct bl_template;
struct bl_conf_node;
struct bl_regex;
struct bl_location;
struct bl_rw_op;
struct bl_proxy_ssl;
struct bl_dns_conf;

/* The locations one level holds (a server, or a location with nested ones), in the order
 * nginx searches them (docs/routing.md): exact, then prefixes longest first, then regexes in
 * config order. */
struct bl_loc_tree {
    struct bl_location **exact;     /* "=" locations */
    uint32_t nexact;
    struct bl_location **prefix;    /* prefix and "^~" locations, longest first */
    uint32_t nprefix;
    struct bl_location **regex;     /* "~" and "~*" locations, in config order */
    uint32_t nregex;
};


/* An add_header line. */
struct bl_add_header {
    char *name;
    uint32_t name_len;
    uint8_t always;                 /* also on error statuses (nginx's list otherwise) */
    struct bl_template *value;      /* an empty value adds nothing */
};

/* A proxy_set_header line. */
struct bl_header_set {
    char *name;
    uint32_t name_len;
    uint8_t remove;                 /* value was "": do not send this header at all */
    struct bl_template *value;
};

struct bl_error_page;
struct bl_access_log;

/* An access_log line of one level: the log, and its if= condition (NULL: every request). */
struct bl_log_line {
    struct bl_access_log *log;
    struct bl_template *cond;       /* a request whose value is "" or "0" is not logged */
};
struct bl_mime_type;

/* Settings that http, server and location may each hold, inherited downwards as nginx merges
 * its loc_conf: one struct for all three levels (struct bl_config.http_conf,
 * bl_server_block.conf, bl_location.conf) and one merge function in conf.c. After loading,
 * every level holds its effective values, so a worker reads loc->conf.X and nothing else.
 *
 * Adding a setting:
 *   - a number, time, size or on|off: a uint64_t among the scalars below and one row in the
 *     directive table (conf.c); its default, parsing and merging come from the row.
 *   - a list or a reference: its field(s) after the scalars, a BL_LC_* bit, one line in
 *     merge_loc_conf() and one in free_loc_conf() (conf.c).
 */
struct bl_loc_conf {
    /* Scalars: every one a uint64_t, UINT64_MAX while unset during the compile, merged as one
     * block (everything before `headers`). Times are in ms. */
    uint64_t client_header_timeout;
    uint64_t client_body_timeout;
    uint64_t keepalive_timeout;
    uint64_t keepalive_requests;
    uint64_t send_timeout;
    uint64_t client_max_body_size;  /* 0 = unlimited */
    uint64_t proxy_connect_timeout;
    uint64_t proxy_send_timeout;
    uint64_t proxy_read_timeout;
    uint64_t lchb_number;           /* large_client_header_buffers NUMBER SIZE */
    uint64_t lchb_size;
    uint64_t proxy_buffering;       /* accepted for compatibility; responses always stream */
    uint64_t proxy_request_buffering; /* accepted; see docs: bodies stream, one buffer kept */
    uint64_t next_upstream;         /* proxy_next_upstream: BL_NEXT_* bits (attempt.h) */
    uint64_t next_upstream_tries;   /* 0 = as many as there are servers */
    uint64_t next_upstream_timeout; /* ms; 0 = none */
    uint64_t server_tokens;         /* 1: Server: ballast/VERSION, 0: Server: ballast */
    uint64_t trace_propagation;     /* 1: traceparent continued or started upstream */
    uint64_t absolute_redirect;     /* a Location of ballast's own starting with "/" is made
                                     * absolute (http://HOST[:PORT]/...) */
    uint64_t server_name_in_redirect; /* ... with the first server_name, not Host */
    uint64_t port_in_redirect;      /* ... with the port unless it is 80 */
    uint64_t real_ip_recursive;     /* realip: the last untrusted address of the header */
    uint64_t proxy_protocol;        /* proxy_protocol on: a PROXY header starts each upstream
                                     * connection, never pooled then (http/proxy_head.c) */
    uint64_t proxy_protocol_version; /* ... version 1 or 2 */
    uint64_t proxy_intercept_errors; /* 1: an upstream answer >= 300 that an error_page names
                                     * is replaced by that page (nginx) */
    /* HTTP/2 to clients (http/h2.h): read from the address's default server */
    uint64_t http2;                 /* http2 on: h2c with prior knowledge, h2 by ALPN */
    uint64_t http2_max_concurrent_streams;
    uint64_t http2_recv_buffer_size; /* bytes read per recv on an h2 connection (http level) */
    uint64_t http2_idle_timeout;    /* ms; 0: keepalive_timeout */
    /* limits (src/policy/, docs/protection.md) */
    uint64_t limit_req_status;      /* answered when limit_req rejects */
    uint64_t limit_req_log_level;   /* enum bl_log_level of "limiting requests" */
    uint64_t limit_req_dry_run;
    uint64_t limit_conn_status;
    uint64_t limit_conn_log_level;
    uint64_t limit_conn_dry_run;
    uint64_t max_inflight;          /* requests in flight in a location; 0: no limit */
    /* gzip (http/gzip.h, docs/compression.md) */
    uint64_t gzip;                  /* gzip on: responses compressed for clients that accept */
    uint64_t gzip_comp_level;       /* 1..9 */
    uint64_t gzip_min_length;       /* bytes, by Content-Length when the response has one */
    uint64_t gzip_vary;             /* Vary: Accept-Encoding on responses gzip applies to */
    uint64_t gzip_http_version;     /* the lowest request minor version compressed (0, 1) */
    uint64_t gzip_proxied;          /* BL_GZIP_PROXIED_* bits: requests with Via compressed */
    /* static files (http/static.c, docs/static.md) */
    uint64_t sendfile;              /* file bodies go by sendfile(2) on plain connections */
    uint64_t etag;                  /* ETag on files */
    uint64_t expires;               /* enum bl_expires */
    uint64_t expires_time;          /* ... its seconds (an int64_t: negative is no-cache) */
    uint64_t disable_symlinks;      /* enum bl_symlinks */
    uint64_t disable_symlinks_from_root; /* ... from=$document_root: root's own path is not
                                     * checked */
    uint64_t gzip_static;           /* enum bl_gzip_static */
    uint64_t log_not_found;         /* a missing file is logged at error */
    uint64_t autoindex;             /* a directory without an index file is listed
                                     * (http/autoindex.h) rather than refused */
    uint64_t autoindex_exact_size;  /* ... sizes in bytes, else K, M, G */
    uint64_t autoindex_localtime;   /* ... times in the server's zone, else GMT */
    uint64_t autoindex_format;      /* enum bl_autoindex_format */

    /* Lists and references: a level that has any line of its own does not inherit the lines
     * above it (nginx's rule for proxy_set_header, error_page, access_log). */
    struct bl_header_set *headers;  /* proxy_set_header lines */
    uint32_t nheaders;
    uint32_t nerror_pages;
    struct bl_error_page *error_pages;
    struct bl_log_line *access_logs;    /* access_log lines (their logs belong to
                                         * bl_config.access_logs); none: off */
    uint32_t naccess_logs;
    char *root;                     /* http/server root: locations without one inherit it */
    char **index;                   /* index: names tried for a path ending in "/" */
    uint32_t nindex;
    char *default_type;             /* default_type: for files no types entry names */
    struct bl_mime_type *types;     /* types { }: NULL for the built-in list (local.c) */
    uint32_t ntypes;
    uint32_t pass_headers;          /* proxy_pass_header: BL_HIDE_* bits (conf/hide_headers.h) */
    char **hide_headers;            /* proxy_hide_header names */
    uint32_t nhide_headers;
    char *request_id_header;        /* request_id_header: kept from the client when valid and
                                     * sent upstream with $request_id; NULL: off */
    uint32_t request_id_header_len;
    struct bl_add_header *add_headers; /* add_header lines */
    uint32_t nadd_headers;
    struct bl_cidr *realip_from;    /* set_real_ip_from: the trusted peers (http/realip.h) */
    uint32_t nrealip_from;
    char *real_ip_header;           /* real_ip_header: the field the address is taken from */
    uint8_t real_ip_xff;            /* ... it is X-Forwarded-For: every line of it counts */
    uint8_t real_ip_pp;             /* ... it is proxy_protocol: the PROXY header's address */
    struct bl_proxy_ssl *proxy_ssl; /* proxy_ssl_*: owned by the level with BL_LC_PROXY_SSL,
                                     * shared below it (conf/proxy_ssl.h); NULL: none set */
    struct bl_limit_req *limit_reqs;   /* limit_req lines: all apply (policy/limits.h) */
    uint32_t nlimit_reqs;
    struct bl_limit_conn *limit_conns; /* limit_conn lines (http's or stream's zones) */
    uint32_t nlimit_conns;
    struct bl_access_rule *access_rules; /* allow / deny, first match wins */
    uint32_t naccess_rules;
    char **gzip_types;              /* gzip_types: MIME types compressed ("*": any) */
    uint32_t ngzip_types;
    uint32_t ngzip_disable;
    struct bl_regex **gzip_disable; /* gzip_disable: User-Agent patterns never compressed */
    struct bl_cache_conf *cache;    /* proxy_cache* lines (conf/cache_conf.h): this level's own
                                     * (BL_LC_CACHE) or the level above's; NULL: none anywhere */
    uint32_t set;                   /* BL_LC_* bits: set at this level, which owns those lists */
};

/* bl_loc_conf.set */
#define BL_LC_HEADERS     0x1u      /* proxy_set_header */
#define BL_LC_ACCESS_LOG  0x2u      /* access_log */
#define BL_LC_REQUEST_ID  0x200u    /* request_id_header */
#define BL_LC_ACCESS_OFF  0x100u    /* access_log off: as in nginx, no log at this level
                                     * whatever other access_log lines it has */
#define BL_LC_ERROR_PAGES 0x4u      /* error_page */
#define BL_LC_ROOT        0x10u     /* root (http, server) */
#define BL_LC_INDEX       0x20u     /* index */
#define BL_LC_DEFAULT_TYPE 0x40u    /* default_type */
#define BL_LC_TYPES       0x80u     /* types */
#define BL_LC_ADD_HEADERS 0x400u    /* add_header */
#define BL_LC_REALIP_FROM 0x800u    /* set_real_ip_from */
#define BL_LC_REALIP_HEADER 0x1000u /* real_ip_header */
#define BL_LC_PROXY_SSL   0x2000u   /* proxy_ssl_* (merged with the level above) */
#define BL_LC_LIMIT_REQ   0x10000u  /* limit_req */
#define BL_LC_LIMIT_CONN  0x20000u  /* limit_conn */
#define BL_LC_ACCESS_RULES 0x40000u /* allow, deny */
#define BL_LC_GZIP_TYPES  0x100000u /* gzip_types */
#define BL_LC_GZIP_DISABLE 0x200000u /* gzip_disable */
#define BL_LC_CACHE       0x800000u /* proxy_cache* (merged with the level above) */

/* bl_loc_conf.gzip_proxied: the answers to a request with Via that are compressed (nginx) */
#define BL_GZIP_PROXIED_EXPIRED     0x01u /* with an Expires field */
#define BL_GZIP_PROXIED_NO_CACHE    0x02u /* Cache-Control: no-cache */
#define BL_GZIP_PROXIED_NO_STORE    0x04u /* Cache-Control: no-store */
#define BL_GZIP_PROXIED_PRIVATE     0x08u /* Cache-Control: private */
#define BL_GZIP_PROXIED_NO_LM       0x10u /* without Last-Modified */
#define BL_GZIP_PROXIED_NO_ETAG     0x20u /* without ETag */
#define BL_GZIP_PROXIED_AUTH        0x40u /* the request has Authorization */
#define BL_GZIP_PROXIED_ANY         0x80u /* all of them */
#define BL_LC_HIDE        0x8u      /* proxy_pass_header or proxy_hide_header: as in nginx, a
                                     * level with either inherits neither */

/* bl_loc_conf.expires */
enum bl_expires {
    BL_EXPIRES_OFF = 0,
    BL_EXPIRES_TIME,                /* now + expires_time */
    BL_EXPIRES_MODIFIED,            /* the file's mtime + expires_time */
    BL_EXPIRES_EPOCH,               /* 1 Jan 1970, no-cache */
    BL_EXPIRES_MAX,                 /* 31 Dec 2037, ten years' max-age */
};

/* bl_loc_conf.disable_symlinks */
enum bl_symlinks {
    BL_SYMLINKS_FOLLOW = 0,         /* off written: followed wherever they lead (nginx's
                                     * default) */
    BL_SYMLINKS_REFUSE,             /* on: a path with any symlink component is refused */
    BL_SYMLINKS_IF_NOT_OWNER,       /* ... unless the link and its target have one owner */
    BL_SYMLINKS_BENEATH,            /* no line (ballast's default): followed while they stay
                                     * in the location's root or alias directory */
};

/* bl_loc_conf.autoindex_format */
enum bl_autoindex_format {
    BL_AUTOINDEX_HTML = 0,
    BL_AUTOINDEX_JSON,
};

/* bl_loc_conf.gzip_static */
enum bl_gzip_static {
    BL_GZIP_STATIC_OFF = 0,
    BL_GZIP_STATIC_ON,              /* FILE.gz for clients that accept gzip */
    BL_GZIP_STATIC_ALWAYS,          /* FILE.gz for every client */
};

/* One extension of a types { } block: "html" -> "text/html". */
struct bl_mime_type {
    char *ext;
    char *type;
};

/* One FILE of try_files: a path in URI space (variables allowed); one ending in "/" names a
 * directory, served by its index. */
struct bl_try_file {
    struct bl_template *path;
    uint8_t dir;
};

/* An error_page line: codes -> URI, optionally with the status replaced. */
struct bl_error_page {
    int code;
    int overwrite;                  /* =CODE, or 0 to keep the original status */
    char *uri;
};

/* The rewrite module's directives, run in config order before the content (src/http/rewrite.h):
 * a server's before its location is searched, a location's after. */
enum bl_rw_type {
    BL_RW_REWRITE = 1,
    BL_RW_RETURN,
    BL_RW_SET,
    BL_RW_IF,
    BL_RW_BREAK,
};

/* rewrite's flag */
enum bl_rw_flag {
    BL_RWF_NONE = 0,                /* go on with the next directive on the new URI */
    BL_RWF_LAST,                    /* stop, search the location for the new URI */
    BL_RWF_BREAK,                   /* stop, stay in this location */
    BL_RWF_REDIRECT,                /* 302 to the replacement */
    BL_RWF_PERMANENT,               /* 301 to the replacement */
};

/* if's condition */
enum bl_if_cond {
    BL_IF_TRUE = 1,                 /* ($var): not "" and not "0" */
    BL_IF_EQ,                       /* = */
    BL_IF_MATCH,                    /* ~ and ~* */
    BL_IF_FILE,                     /* -f */
    BL_IF_DIR,                      /* -d */
    BL_IF_EXISTS,                   /* -e */
    BL_IF_EXEC,                     /* -x */
};

struct bl_rw_op {
    uint8_t type;                   /* enum bl_rw_type */
    uint8_t flag;                   /* rewrite: enum bl_rw_flag */
    uint8_t absolute;               /* rewrite: replacement starts with http://, https:// or
                                     * $scheme: a redirect whatever the flag */
    uint8_t drop_args;              /* rewrite: replacement ended with '?' */
    uint8_t cond;                   /* if: enum bl_if_cond */
    uint8_t negate;                 /* if: != !~ !-f ... */
    int code;                       /* return: status */
    uint32_t var;                   /* set: index in bl_config.vars */
    uint32_t nvars;                 /* set: bl_config.vars.n (a request's variables array) */
    struct bl_regex *re;            /* rewrite; if ~ */
    struct bl_template *value;      /* rewrite's replacement, return's text or URL, set's value,
                                     * if's left side (or the path of -f ...) */
    struct bl_template *arg;        /* if =: the right side */
    struct bl_rw_op *body;          /* if: the directives inside */
    uint32_t nbody;
    const char *file;
    int line;
};

enum bl_loc_kind {
    BL_LOC_NONE = 0,                /* no handler: 404 */
    BL_LOC_PROXY,
    BL_LOC_RETURN,
    BL_LOC_STATIC,                  /* root DIR: files */
};

struct bl_location {
    char *path;                     /* the prefix, the regex as written, or "@name" */
    uint32_t path_len;
    uint8_t exact;                  /* location = PATH */
    uint8_t noregex;                /* location ^~ PATH: when it is the longest prefix, the
                                     * regexes of its level are not tried */
    uint8_t named;                  /* location @NAME: reached only by error_page/try_files */
    struct bl_regex *regex;         /* location ~ / ~* REGEX */
    struct bl_location *parent;     /* the location this one is nested in, or NULL */
    struct bl_loc_tree nested;      /* locations nested in this one */
    uint8_t kind;                   /* enum bl_loc_kind */
    const char *file;
    int line;
    struct bl_upstream_group *upstream;   /* BL_LOC_PROXY */
    char *proxy_uri;                /* URI part of proxy_pass (replaces the location prefix) */
    uint32_t proxy_uri_len;
    uint8_t has_proxy_uri;
    char *proxy_host;               /* $proxy_host: proxy_pass's host[:port], nginx's value */
    char *proxy_port;               /* $proxy_port: its port, "80" when not written */
    uint8_t proxy_tls;              /* proxy_pass https://: TLS to the upstream with
                                     * conf.proxy_ssl's context (or the config's default) */
    int return_code;                /* BL_LOC_RETURN */
    struct bl_template *return_text;/* body, or Location for 301/302/303/307/308 */
    uint8_t set_xff, set_xrip, set_xfp; /* default X-Forwarded-For/X-Real-IP/-Proto still apply */
    char *root;                     /* BL_LOC_STATIC: directory files are served from */
    char *alias;                    /* BL_LOC_STATIC: alias DIR: the location's prefix of the
                                     * URI is replaced by it (root is NULL then) */
    struct bl_template *alias_tpl;  /* ... with variables (a regex location's captures): the
                                     * whole path */
    uint8_t root_inherited;         /* root is the server's or http's (not owned) */
    /* disable_symlinks' default: the directory a file may not leave (root, alias, or an
     * alias template's fixed directory), opened O_PATH when the config loads so that each
     * request opens its file with one openat2(RESOLVE_BENEATH) (http/static.c). */
    char *base_dir;                 /* NULL: nothing to stay under (an alias starting with a
                                     * variable) */
    uint32_t base_len;
    int base_fd;                    /* valid when base_open; else opened per request (missing
                                     * at load, or reached through a symlink: conf.c) */
    uint8_t base_open;
    uint8_t try_files;              /* try_files FILE ... =CODE | @NAME | URI */
    uint32_t ntry;                  /* ... its FILEs, tried in order */
    struct bl_try_file *try_list;
    int try_code;                   /* ... the =CODE when nothing matches, or 0 for: */
    char *try_fallback;             /* ... the named location ("@x") or URI redirected to */
    struct bl_template *try_fallback_tpl; /* ... that URI when it has variables ($args) */
    struct bl_template *proxy_uri_tpl; /* proxy_pass URI with variables (captures): sent as
                                     * evaluated, without the request's arguments (nginx) */
    struct bl_template *proxy_host_tpl; /* proxy_pass http://$var...: the host (and port)
                                     * evaluated per request names the upstream group; upstream
                                     * is NULL then */
    struct bl_rw_op *ops;           /* rewrite, return, set, if: in config order (rewrite.h) */
    uint32_t nops;
    uint32_t index;                 /* 0..nlocations-1 over the config (per-worker statistics
                                     * are indexed by it); UINT32_MAX for a server_loc */
    /* `disable [CODE] [TEXT | URI]` (ballast's switch, docs/protection.md): the location
     * answers at once without its content handler. */
    int disable_code;               /* the answer's status (503 when not written) */
    char *disable_text;             /* its body, or NULL */
    char *disable_uri;              /* or the page served as error_page serves one, or NULL */
    uint8_t disable_conf;           /* the config disables it */
    /* The admin API's switch, any thread: BL_DISABLE_* (the control thread writes, workers
     * read it per request; a reload starts again from the file). */
    _Atomic uint8_t disable_live;
    struct bl_loc_conf conf;        /* effective settings (inherited and own) */
    uint32_t *inflight;             /* max_inflight: requests in flight here, every worker's
                                     * (atomic); NULL without a limit */
};

#define BL_DISABLE_AS_CONF 0        /* disable_live: as the config says */
#define BL_DISABLE_ON      1        /* disabled by the API */
#define BL_DISABLE_OFF     2        /* enabled by the API (over a config `disable`) */

/* Whether loc answers with its disable answer now. Any thread. */
static inline int bl_location_disabled(const struct bl_location *loc)
{
    uint8_t v = atomic_load_explicit(&((struct bl_location *)loc)->disable_live,
                                     memory_order_relaxed);
    return v == BL_DISABLE_AS_CONF ? loc->disable_conf : v == BL_DISABLE_ON;
}

struct bl_server_block {
    char **names;                   /* server_name values, lowercased */
    uint32_t nnames;
    const char *file;
    int line;
    /* The server level's locations; the fields are also reachable by their own names
     * (s->exact, s->nprefix) for code that only walks the top level. */
    union {
        struct bl_loc_tree locs;
        struct {
            struct bl_location **exact;
            uint32_t nexact;
            struct bl_location **prefix;
            uint32_t nprefix;
            struct bl_location **regex;
            uint32_t nregex;
        };
    };
    struct bl_location **named;     /* location @NAME */
    uint32_t nnamed;
    struct bl_location **all;       /* every location of the server, nested ones included,
                                     * parents before their children (owns them) */
    uint32_t nall;
    struct bl_location *server_loc; /* server-level settings, used before a location matches */
    uint8_t is_default;             /* listen ... default_server */
    struct bl_ssl_conf ssl;         /* ssl_* (merged with the http level's) */
    void *ssl_ctx;                  /* SSL_CTX *: made when an ssl listener serves the block */
    uint32_t index;                 /* position in bl_config.servers */
    struct bl_loc_conf conf;        /* server-level settings (inherited and own) */
};

/* stream { } (src/stream/): settings of the stream level and of each stream server, a server
 * inheriting what it does not set (nginx's merge). Every field a uint64_t, UINT64_MAX while
 * unset during the compile. Times in ms. */
struct bl_stream_conf {
    uint64_t connect_timeout;       /* proxy_connect_timeout */
    uint64_t timeout;               /* proxy_timeout: idle time between two reads or writes */
    uint64_t next_upstream;         /* proxy_next_upstream on | off (connect failures only) */
    uint64_t next_upstream_tries;   /* 0 = as many as there are servers */
    uint64_t next_upstream_timeout; /* 0 = none */
    uint64_t buffer_size;           /* proxy_buffer_size: per direction, per session */
    /* PROXY protocol and rates (stream/stream.c) */
    uint64_t pp_timeout;            /* proxy_protocol_timeout: for the client's PROXY header */
    /* UDP (stream/udp.h) */
    uint64_t responses;             /* proxy_responses; BL_UDP_RESPONSES_ANY when unset */
    uint64_t requests;              /* proxy_requests; 0 = no limit */
    uint64_t pp_send;               /* proxy_protocol on: a PROXY header to the upstream */
    uint64_t pp_version;            /* proxy_protocol_version 1 | 2 */
    uint64_t upload_rate;           /* proxy_upload_rate: bytes/s read from the client, 0 off */
    uint64_t download_rate;         /* proxy_download_rate: bytes/s read from the upstream */
    uint64_t ssl_preread;           /* ssl_preread on: read the ClientHello's SNI and ALPN */
    uint64_t preread_timeout;       /* preread_timeout: for that ClientHello */
};

/* proxy_responses not set: a UDP session awaits any number of answers. */
#define BL_UDP_RESPONSES_ANY UINT64_MAX

/* A stream server block: one listen, one proxy_pass. */
struct bl_stream_server {
    const char *file;
    int line;
    struct bl_upstream_group *upstream; /* proxy_pass NAME, or ADDR:PORT's implicit group */
    char *pass;                     /* proxy_pass as written (resolved at the end) */
    struct bl_template *pass_tpl;   /* proxy_pass $var: names a group per session (upstream
                                     * is NULL then) */
    int pass_line;
    struct bl_stream_conf conf;     /* effective settings */
    struct bl_loc_conf log;         /* access_log, limit_conn, allow and deny lines only
                                     * (effective, as http merges them) */
};

struct bl_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[BL_ADDR_STRLEN + 4];  /* "127.0.0.1:8080", "127.0.0.1:53 udp" */
    uint16_t port;
    int backlog;
    uint32_t sndbuf;                /* `listen ... sndbuf=SIZE`: SO_SNDBUF, 0 the kernel's own
                                     * (autotuned); accepted sockets inherit it */
    uint32_t rcvbuf;                /* `listen ... rcvbuf=SIZE`: SO_RCVBUF, likewise */
    uint8_t reuseport;              /* `listen ... reuseport`: other processes may share it */
    uint8_t ssl;                    /* `listen ... ssl`: TLS (conf/ssl.h) */
    uint8_t proxy_protocol;         /* `listen ... proxy_protocol`: each connection starts
                                     * with a PROXY protocol header (core/proxy_proto.h) */
    uint8_t udp;                    /* `listen ... udp` (stream): datagrams, stream/udp.h */
    uint8_t http2;                  /* `listen ... http2` (or the default server's http2 on:
                                     * bl_listen_http2()) */
    struct bl_server_block **servers; /* servers[0] is the default */
    uint32_t nservers;
    struct bl_stream_server *stream; /* a stream server's listen (no http servers), or NULL */
    const struct bl_dns_conf *dns;  /* a `dns` block's listen (udp; dns/dns.h), or NULL */
};

/* Whether HTTP/2 is offered on l: `listen ... http2`, or `http2 on` in its default server
 * (nginx decides h2c and ALPN by the address's default server too). */
static inline int bl_listen_http2(const struct bl_listen *l)
{
    return l->http2 || (l->nservers && l->servers[0]->conf.http2);
}

/* A log_format (or the predefined combined, or ballast's upstream). */
struct bl_log_format {
    char *name;
    uint8_t escape;                 /* enum bl_escape (http/template.h) */
    uint8_t builtin;                /* combined or upstream, made when first named */
    struct bl_template *line;       /* the line without its newline */
};

/* Without buffer= or flush=, a worker writes its lines at least every 500 ms or when 32 KiB
 * are pending (nginx writes every line at once; ballast keeps a write per request off the
 * loop). */
#define BL_ACCESS_LOG_BUFFER     (32u * 1024)
#define BL_ACCESS_LOG_FLUSH_MS   500u
#define BL_ACCESS_LOG_BUFFER_MAX (16u * 1024 * 1024)

/* One file with one format: every access_log line naming the same file and format shares it
 * (two formats into one file are two logs; each writes whole lines with O_APPEND, so their
 * lines never interleave mid-line). */
struct bl_access_log {
    char *path;
    int fd;
    uint32_t index;                 /* position in bl_config.access_logs (a worker's buffer) */
    const struct bl_log_format *format;
    uint32_t buffer;                /* bytes a worker holds before writing */
    uint32_t flush_ms;              /* longest a line waits in a worker's buffer */
    uint8_t explicit_buffer;        /* buffer= or flush= was written */
};

/* admin { listen ADDRESS:PORT; token_file FILE; }: the admin API's listener (src/admin/). */
/* Variables defined by a block at the http level and worked out on their first use in a
 * request, kept for the rest of it (http/varblock.c): split_clients and geo. */
struct bl_split_part {
    uint32_t upto;                  /* hashes below this take the value; 0: "*" (the rest) */
    char *value;
};

struct bl_geo_net {
    struct bl_cidr net;
    char *value;
};

enum bl_varblock_kind { BL_VB_SPLIT = 1, BL_VB_GEO };

struct bl_varblock {
    uint8_t kind;                   /* enum bl_varblock_kind */
    uint32_t var;                   /* the variable's index in bl_config.vars */
    struct bl_template *source;     /* split: the key; geo: the address (NULL: $remote_addr) */
    struct bl_split_part *parts;    /* split, in file order */
    uint32_t nparts;
    struct bl_geo_net *nets;        /* geo: the longest matching prefix wins */
    uint32_t nnets;
    char *deflt;                    /* geo's default ("" when not written) */
};

struct bl_admin_conf {
    uint8_t enabled;                /* an admin block exists: no block, no listener */
    uint8_t listen_set, token_set;  /* while compiling: duplicate lines */
    struct sockaddr_storage addr;   /* default 127.0.0.1:9901 */
    socklen_t addrlen;
    char text[BL_ADDR_STRLEN];      /* "127.0.0.1:9901" */
    char *token_file;               /* NULL: no token asked */
    char *token;                    /* the file's first line, read at load; NULL without */
    size_t token_len;
};

/* map $source $target { ... } (http context, nginx's ngx_http_map_module): $target's value is
 * worked out on its first use in a request and kept for the rest of it (rewrite.c). */
struct bl_map_key {
    char *key;                      /* lowercase; hostnames wildcards without their '*' */
    uint32_t len;
    uint8_t wild;                   /* enum bl_map_wild */
    struct bl_regex *re;            /* ~regex and ~*regex keys */
    struct bl_template *value;
};

enum bl_map_wild {
    BL_MAP_EXACT = 0,
    BL_MAP_HEAD,                    /* "*.example.com": key ".example.com", a name ending so */
    BL_MAP_DOT,                     /* ".example.com": the name itself or one ending so */
    BL_MAP_TAIL,                    /* "www.example.*": key "www.example.", a name starting so */
};

struct bl_map {
    struct bl_template *source;
    uint32_t var;                   /* the target's index in bl_config.vars */
    uint8_t hostnames;
    struct bl_map_key *keys;        /* strings (and hostnames wildcards), in file order */
    uint32_t nkeys;
    struct bl_map_key *regexes;     /* tried in file order after the strings */
    uint32_t nregexes;
    struct bl_template *deflt;      /* NULL: empty */
    const char *file;
    int line;
};

struct bl_config {
    char *file;                     /* main config file */
    int workers;                    /* worker_processes (threads) */
    int worker_connections;         /* per worker */
    int events_use;                 /* `use`: enum bl_loop_method (core/loop.h) */
    char *error_log;                /* "stderr" or a path */
    int error_log_level;
    char *pid_file;                 /* NULL: none */
    uint64_t shutdown_timeout;      /* ms */
    int rlimit_nofile;              /* worker_rlimit_nofile, 0 = derive */
    char *user;                     /* user USER [GROUP]: NULL for none */
    int daemon;                     /* daemon on: detach at start (main.c) */
    uid_t uid;                      /* resolved at load */
    gid_t gid;

    struct bl_loc_conf defaults;    /* the directive table's defaults: http_conf's parent */
    struct bl_loc_conf http_conf;   /* http-level settings (inherited and own) */

    struct bl_ssl_conf http_ssl;    /* ssl_* at the http level, servers inherit them */
    struct bl_proxy_ssl *proxy_ssl_default; /* proxy_pass https:// where no level sets any
                                     * proxy_ssl_*: nginx's defaults (owned) */
    struct bl_listen *listens;
    uint32_t nlistens;
    struct bl_server_block **servers;
    uint32_t nservers;
    uint32_t nlocations;            /* locations over all servers (bl_location.index) */
    struct bl_upstream_group **groups; /* http's and stream's: one name space, as one
                                        * upstream layer serves both front ends */
    uint32_t ngroups;
    /* `resolver` (http level): the DNS servers that `server NAME resolve` asks, from the
     * control thread (src/discover/resolve.c) */
    struct sockaddr_storage resolvers[4];
    socklen_t resolver_lens[4];
    uint32_t nresolvers;            /* 0: no resolver */
    uint64_t resolver_valid_ms;     /* valid=: re-resolve after this; 0: the records' TTL */
    uint64_t resolver_timeout_ms;   /* resolver_timeout (default 30 s, nginx's) */
    uint8_t resolver_ipv4, resolver_ipv6; /* record types asked: A, AAAA */
    struct bl_stream_conf stream_defaults; /* the table's stream defaults */
    struct bl_stream_conf stream_conf;     /* stream-level settings */
    struct bl_loc_conf stream_log;         /* stream-level access_log, limit_conn, allow and
                                            * deny lines */
    struct bl_stream_server **stream_servers;
    uint32_t nstream_servers;
    uint32_t nupstream_servers;     /* total servers over all groups (ids 0..n-1) */
    struct bl_access_log **access_logs;
    uint32_t naccess_logs;
    struct bl_log_format **log_formats;
    uint32_t nlog_formats;
    uint32_t max_head;              /* largest large_client_header_buffers total, bytes */
    struct bl_varblock **var_blocks;/* vars.n entries: the split_clients or geo block that
                                     * defines variable i, or NULL (NULL array: none) */
    struct bl_conf_node *tree;      /* the directive tree (file names live there) */
    struct bl_admin_conf admin;
    struct bl_var_names vars;       /* variables the config defines: set, named captures,
                                     * map targets */
    struct bl_map **var_maps;       /* vars.n entries: the map that defines variable i, or
                                     * NULL (NULL array: no maps) */
    struct bl_limit_zones limits;   /* limit_req_zone, limit_conn_zone lines */
    struct bl_cache_paths caches;   /* proxy_cache_path lines (conf/cache_conf.h) */
    struct bl_dns_conf *dns;        /* the `dns` block (conf/dns_conf.h), or NULL */
};

/* Reads, validates and compiles FILE. Returns the config, or NULL with err holding one line in
 * nginx's form, e.g. `unknown directive "prox_pass" in conf/a.conf:12`; running out of memory
 * is such an error too (`out of memory in "proxy_set_header" directive in conf/a.conf:9`),
 * never an exit, so a failed reload leaves the running config alone. Control thread. */
struct bl_config *bl_conf_load(const char *file, char *err, size_t errlen);

/* Whether line ("IP:PORT weight=2") compiles as an upstream's server line, with the code
 * the file's lines go through; BL_ERR with err filled (without file:line). Control thread. */
int bl_conf_check_server_line(const char *line, char *err, size_t errlen);

/* Same from text (tests); name stands for the file name in errors. */
struct bl_config *bl_conf_load_string(const char *text, const char *name, char *err,
                                      size_t errlen);

void bl_conf_release(struct bl_config *c);

/* The directive table as data, for the docs check and (later) the admin API. One entry per
 * row; a name allowed in two unrelated contexts (server in http and in upstream) has two. */
struct bl_directive_info {
    const char *name;
    const char *contexts;           /* "http, server, location", or "any" */
    const char *syntax;             /* the arguments as docs/configuration.md writes them ("TIME",
                                     * "on | off", "" for none); several forms are separated by
                                     * '\n'. The docs show `NAME SYNTAX;` (`NAME SYNTAX { ... }`
                                     * for a block) */
    const char *deflt;              /* default arguments ("75s"); the docs show `NAME DEFLT;`.
                                     * NULL: none that a line could state */
    int block;                      /* 1: the directive takes a { ... } block */
};

/* Fills *n and returns the rows, in table order, in static storage that each call refills.
 * Control thread. */
const struct bl_directive_info *bl_conf_directives(size_t *n);

#endif
