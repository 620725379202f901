/* The compiled configuration: what the workers run on. Built and validated by bl_conf_load()
 * on the control thread from the directive tree; immutable afterwards, shared read-only by every
 * worker (a later reload swaps whole generations).
 */
#ifndef BL_CONF_CONF_H
#define BL_CONF_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/sock.h"
#include "upstream/attempt.h"     /* BL_NEXT_*: proxy_next_upstream conditions */
#include "upstream/upstream.h"

struct bl_template;
struct bl_conf_node;


/* A proxy_set_header line. */
struct bl_header_set {
    char *name;
    uint32_t name_len;
    uint8_t remove;                 /* value was "": do not send this header at all */
    struct bl_template *value;
};

/* Settings that nginx lets http, server and location set, inherited downwards. Every field is
 * a uint64_t so that the directive table can set and merge them by offset (UINT64_MAX = unset
 * while compiling). Times are in ms. */
struct bl_loc_conf {
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
};

/* An error_page line: codes -> URI, optionally with the status replaced. */
struct bl_error_page {
    int code;
    int overwrite;                  /* =CODE, or 0 to keep the original status */
    char *uri;
};

enum bl_loc_kind {
    BL_LOC_NONE = 0,                /* no handler: 404 */
    BL_LOC_PROXY,
    BL_LOC_RETURN,
    BL_LOC_STATIC,                  /* root DIR: files */
};

struct bl_access_log;

struct bl_location {
    char *path;
    uint32_t path_len;
    uint8_t exact;                  /* location = PATH */
    uint8_t kind;                   /* enum bl_loc_kind */
    const char *file;
    int line;
    struct bl_upstream_group *upstream;   /* BL_LOC_PROXY */
    char *proxy_uri;                /* URI part of proxy_pass (replaces the location prefix) */
    uint32_t proxy_uri_len;
    uint8_t has_proxy_uri;
    int return_code;                /* BL_LOC_RETURN */
    struct bl_template *return_text;/* body, or Location for 301/302/303/307/308 */
    struct bl_header_set *headers;  /* effective proxy_set_header list (inherited) */
    uint32_t nheaders;
    uint8_t headers_set;            /* this level had its own proxy_set_header lines */
    uint8_t set_xff, set_xrip, set_xfp; /* default X-Forwarded-For/X-Real-IP/-Proto still apply */
    struct bl_access_log *access_log;   /* NULL = off */
    uint8_t access_log_set;         /* this level had its own access_log line */
    char *root;                     /* BL_LOC_STATIC: directory files are served from */
    struct bl_error_page *error_pages;  /* effective error_page list (inherited) */
    uint32_t nerror_pages;
    uint8_t error_pages_set;        /* this level had its own error_page lines */
    struct bl_loc_conf conf;
};

struct bl_server_block {
    char **names;                   /* server_name values, lowercased */
    uint32_t nnames;
    const char *file;
    int line;
    struct bl_location **exact;     /* "=" locations */
    uint32_t nexact;
    struct bl_location **prefix;    /* prefix locations, longest first */
    uint32_t nprefix;
    struct bl_location *server_loc; /* server-level settings, used before a location matches */
    struct bl_header_set *headers;  /* server-level proxy_set_header, before inheritance */
    uint32_t nheaders;
    struct bl_access_log *access_log;
    uint8_t access_log_set;
    uint8_t headers_set;
    uint8_t is_default;             /* listen ... default_server */
    struct bl_error_page *error_pages;
    uint32_t nerror_pages;
    uint8_t error_pages_set;
    struct bl_loc_conf conf;
};

struct bl_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[BL_ADDR_STRLEN];      /* "127.0.0.1:8080" */
    uint16_t port;
    int backlog;
    uint8_t reuseport;              /* `listen ... reuseport`: other processes may share it */
    struct bl_server_block **servers; /* servers[0] is the default */
    uint32_t nservers;
};

struct bl_access_log {
    char *path;
    int fd;
};

struct bl_config {
    char *file;                     /* main config file */
    int workers;                    /* worker_processes (threads) */
    int worker_connections;         /* per worker */
    char *error_log;                /* "stderr" or a path */
    int error_log_level;
    char *pid_file;                 /* NULL: none */
    uint64_t shutdown_timeout;      /* ms */
    int rlimit_nofile;              /* worker_rlimit_nofile, 0 = derive */

    struct bl_loc_conf http_conf;   /* http-level settings */
    struct bl_header_set *http_headers;
    uint32_t nhttp_headers;
    struct bl_access_log *http_access_log;
    uint8_t http_access_log_set;
    uint8_t http_headers_set;
    struct bl_error_page *http_error_pages;
    uint32_t nhttp_error_pages;
    uint8_t http_error_pages_set;

    struct bl_listen *listens;
    uint32_t nlistens;
    struct bl_server_block **servers;
    uint32_t nservers;
    struct bl_upstream_group **groups;
    uint32_t ngroups;
    uint32_t nupstream_servers;     /* total servers over all groups (ids 0..n-1) */
    struct bl_access_log **access_logs;
    uint32_t naccess_logs;
    uint32_t max_head;              /* largest large_client_header_buffers total, bytes */
    struct bl_conf_node *tree;      /* the directive tree (file names live there) */
};

/* Reads, validates and compiles FILE. Returns the config, or NULL with err holding one line in
 * nginx's form, e.g. `unknown directive "prox_pass" in conf/a.conf:12`. Control thread. */
struct bl_config *bl_conf_load(const char *file, char *err, size_t errlen);

/* Same from text (tests); name stands for the file name in errors. */
struct bl_config *bl_conf_load_string(const char *text, const char *name, char *err,
                                      size_t errlen);

void bl_conf_release(struct bl_config *c);

/* The directive table, for the docs check: fills *n and returns the names. */
struct bl_directive_info {
    const char *name;
    const char *contexts;           /* "http, server, location" */
};
const struct bl_directive_info *bl_conf_directives(size_t *n);

#endif
