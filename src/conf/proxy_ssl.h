/* TLS to upstreams: the proxy_ssl_* settings of a level (http, server, location) and the
 * OpenSSL client context made from them for the locations that proxy_pass https://.
 * Built when the config is compiled (a reload reads the files again), freed with it; the
 * context is shared by every worker (an SSL_CTX is thread-safe once set up). Control thread.
 */
#ifndef BL_CONF_PROXY_SSL_H
#define BL_CONF_PROXY_SSL_H

#include <stddef.h>
#include <stdint.h>

#include "conf/ssl.h"

struct bl_template;

/* One level's settings; a level that sets any proxy_ssl_* directive has its own (owning its
 * strings), merged with the level above, else it shares the one above. 0 / NULL: unset. */
struct bl_proxy_ssl {
    char *name;                     /* proxy_ssl_name as written; NULL: $proxy_host */
    struct bl_template *name_tpl;   /* ... compiled (conf.c), owned when name_owned */
    uint8_t name_owned;
    char *trusted, *cert, *key;     /* proxy_ssl_trusted_certificate, _certificate, _key */
    char *ciphers;                  /* proxy_ssl_ciphers */
    const char *trusted_file, *cert_file, *key_file; /* where each line is, for errors */
    int trusted_line, cert_line, key_line;
    const char *verify_file;        /* proxy_ssl_verify on: its line, for errors */
    int verify_line;
    uint32_t protocols;             /* BL_SSL_TLSV* bits (conf/ssl.h) */
    uint32_t verify_depth;          /* proxy_ssl_verify_depth + 1; 0: unset */
    uint8_t server_name;            /* proxy_ssl_server_name: 0 unset, 1 off, 2 on */
    uint8_t verify;                 /* proxy_ssl_verify: 0 unset, 1 off, 2 on */
    uint8_t session_reuse;          /* proxy_ssl_session_reuse: 0 unset, 1 off, 2 on */
    struct bl_ssl_cmds cmds;        /* proxy_ssl_conf_command lines */
    void *ctx;                      /* SSL_CTX *, once built */
};

/* Sets one proxy_ssl_* directive (not proxy_ssl_name, whose template conf.c compiles) into
 * ps. BL_OK, or BL_ERR with a message (without file:line) in err. */
int bl_proxy_ssl_set(struct bl_proxy_ssl *ps, const char *name, char *const *args, int nargs,
                     const char *file, int line, char *err, size_t errlen);

/* Fills what ps does not set from parent (may be NULL); the defaults are applied by build. */
void bl_proxy_ssl_merge(struct bl_proxy_ssl *ps, const struct bl_proxy_ssl *parent);

/* Makes ps->ctx once (later calls do nothing): the protocols, ciphers, trusted certificates
 * (required by proxy_ssl_verify on), the client certificate and key, session reuse.
 * BL_OK, or BL_ERR with err naming the directive's file:line. */
int bl_proxy_ssl_build(struct bl_proxy_ssl *ps, char *err, size_t errlen);

/* The effective flags, defaults applied (nginx's: server_name off, verify off, reuse on). */
static inline int bl_proxy_ssl_sni(const struct bl_proxy_ssl *ps)
{
    return ps->server_name == 2;
}
static inline int bl_proxy_ssl_verify(const struct bl_proxy_ssl *ps)
{
    return ps->verify == 2;
}
static inline int bl_proxy_ssl_reuse(const struct bl_proxy_ssl *ps)
{
    return ps->session_reuse != 1;
}

/* Frees ps's strings, template (when owned) and context, then ps itself. NULL is fine. */
void bl_proxy_ssl_free(struct bl_proxy_ssl *ps);

#endif
