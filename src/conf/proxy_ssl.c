/* proxy_ssl_* settings and the OpenSSL client contexts made from them (conf/proxy_ssl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/proxy_ssl.h"
#include "conf/ssl.h"
#include "core/log.h"
#include "core/status.h"
#include "http/template.h"
#include "upstream/uptls.h"

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return BL_ERR;
    free(*dst);
    *dst = s;
    return BL_OK;
}

int bl_proxy_ssl_set(struct bl_proxy_ssl *ps, const char *name, char *const *args, int nargs,
                     const char *file, int line, char *err, size_t errlen)
{
#define BAD(...) (snprintf(err, errlen, __VA_ARGS__), BL_ERR)
#define OOM() BAD("out of memory")
#define FLAG(field)                                                                          \
    (bl_ssl_flag(args[0], &ps->field) == BL_OK                                                      \
         ? BL_OK                                                                             \
         : BAD("invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",      \
               args[0], name))
    if (strcmp(name, "proxy_ssl_server_name") == 0)
        return FLAG(server_name);
    if (strcmp(name, "proxy_ssl_session_reuse") == 0)
        return FLAG(session_reuse);
    if (strcmp(name, "proxy_ssl_verify") == 0) {
        ps->verify_file = file;
        ps->verify_line = line;
        return FLAG(verify);
    }
    if (strcmp(name, "proxy_ssl_verify_depth") == 0) {
        char *end;
        long d = strtol(args[0], &end, 10);
        if (*end || end == args[0] || d < 0 || d > 100)
            return BAD("invalid value \"%s\" in \"%s\" directive", args[0], name);
        ps->verify_depth = (uint32_t)d + 1;
        return BL_OK;
    }
    if (strcmp(name, "proxy_ssl_conf_command") == 0)
        return bl_ssl_cmds_add(&ps->cmds, args[0], args[1], file, line) == BL_OK ? BL_OK
                                                                                 : OOM();
    if (strcmp(name, "proxy_ssl_ciphers") == 0)
        return set_str(&ps->ciphers, args[0]) == BL_OK ? BL_OK : OOM();
    if (strcmp(name, "proxy_ssl_trusted_certificate") == 0) {
        ps->trusted_file = file, ps->trusted_line = line;
        return set_str(&ps->trusted, args[0]) == BL_OK ? BL_OK : OOM();
    }
    if (strcmp(name, "proxy_ssl_certificate") == 0) {
        ps->cert_file = file, ps->cert_line = line;
        return set_str(&ps->cert, args[0]) == BL_OK ? BL_OK : OOM();
    }
    if (strcmp(name, "proxy_ssl_certificate_key") == 0) {
        ps->key_file = file, ps->key_line = line;
        return set_str(&ps->key, args[0]) == BL_OK ? BL_OK : OOM();
    }
    if (strcmp(name, "proxy_ssl_protocols") == 0)
        return bl_ssl_protocols(name, args, nargs, &ps->protocols, err, errlen);
    return BAD("unknown directive \"%s\"", name);
#undef FLAG
#undef OOM
#undef BAD
}

static void inherit(char **dst, const char **dfile, int *dline, const char *src,
                    const char *sfile, int sline)
{
    if (*dst || !src)
        return;
    *dst = strdup(src); /* NULL on out of memory: the setting reads as unset */
    if (dfile)
        *dfile = sfile, *dline = sline;
}

void bl_proxy_ssl_merge(struct bl_proxy_ssl *ps, const struct bl_proxy_ssl *p)
{
    if (!p)
        return;
    if (!ps->name && p->name) {
        ps->name = strdup(p->name);
        ps->name_tpl = p->name_tpl;
        ps->name_owned = 0;
    }
    inherit(&ps->trusted, &ps->trusted_file, &ps->trusted_line, p->trusted, p->trusted_file,
            p->trusted_line);
    /* The certificate and its key go together: a level naming either takes neither above. */
    if (!ps->cert && !ps->key) {
        inherit(&ps->cert, &ps->cert_file, &ps->cert_line, p->cert, p->cert_file, p->cert_line);
        inherit(&ps->key, &ps->key_file, &ps->key_line, p->key, p->key_file, p->key_line);
    }
    inherit(&ps->ciphers, NULL, NULL, p->ciphers, NULL, 0);
    if (!ps->protocols)
        ps->protocols = p->protocols;
    if (!ps->verify_depth)
        ps->verify_depth = p->verify_depth;
    if (!ps->server_name)
        ps->server_name = p->server_name;
    if (!ps->verify) {
        ps->verify = p->verify;
        ps->verify_file = p->verify_file;
        ps->verify_line = p->verify_line;
    }
    if (!ps->session_reuse)
        ps->session_reuse = p->session_reuse;
    bl_ssl_cmds_inherit(&ps->cmds, &p->cmds);
}

static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* The verdict is read after the handshake (upstream/uptls.c), so that a failure is logged
 * with its reason and counted as the attempt's failure. */
static int verify_accept(int ok, X509_STORE_CTX *x)
{
    (void)ok, (void)x;
    return 1;
}

int bl_proxy_ssl_build(struct bl_proxy_ssl *ps, char *err, size_t errlen)
{
    if (ps->ctx)
        return BL_OK;
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new() failed (%s)", ssl_reason(why, sizeof(why)));
        return BL_ERR;
    }
    ps->ctx = ctx;
    uint32_t protos = ps->protocols ? ps->protocols : BL_SSL_TLSV1_2 | BL_SSL_TLSV1_3;
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
    if (!(protos & BL_SSL_TLSV1))
        opts |= SSL_OP_NO_TLSv1;
    if (!(protos & BL_SSL_TLSV1_1))
        opts |= SSL_OP_NO_TLSv1_1;
    if (!(protos & BL_SSL_TLSV1_2))
        opts |= SSL_OP_NO_TLSv1_2;
    if (!(protos & BL_SSL_TLSV1_3))
        opts |= SSL_OP_NO_TLSv1_3;
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    const char *ciphers = ps->ciphers ? ps->ciphers : "DEFAULT";
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        snprintf(err, errlen, "invalid \"proxy_ssl_ciphers\" \"%s\" (%s)", ciphers,
                 ssl_reason(why, sizeof(why)));
        return BL_ERR;
    }
    if (ps->verify == 2) {
        if (!ps->trusted) {
            snprintf(err, errlen, "no proxy_ssl_trusted_certificate for proxy_ssl_verify in "
                                  "%s:%d", ps->verify_file, ps->verify_line);
            return BL_ERR;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
        SSL_CTX_set_verify_depth(ctx, ps->verify_depth ? (int)ps->verify_depth - 1 : 1);
    }
    if (ps->trusted && SSL_CTX_load_verify_locations(ctx, ps->trusted, NULL) != 1) {
        snprintf(err, errlen, "cannot load trusted certificates \"%s\" (%s) in %s:%d",
                 ps->trusted, ssl_reason(why, sizeof(why)), ps->trusted_file, ps->trusted_line);
        return BL_ERR;
    }
    if (ps->cert && !ps->key) {
        snprintf(err, errlen, "no \"proxy_ssl_certificate_key\" is defined for certificate "
                              "\"%s\" in %s:%d", ps->cert, ps->cert_file, ps->cert_line);
        return BL_ERR;
    }
    if (ps->key && !ps->cert) {
        snprintf(err, errlen, "no \"proxy_ssl_certificate\" is defined for key \"%s\" in %s:%d",
                 ps->key, ps->key_file, ps->key_line);
        return BL_ERR;
    }
    if (ps->cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, ps->cert) != 1) {
            snprintf(err, errlen, "cannot load certificate \"%s\" (%s) in %s:%d", ps->cert,
                     ssl_reason(why, sizeof(why)), ps->cert_file, ps->cert_line);
            return BL_ERR;
        }
        X509 *x = SSL_CTX_get0_certificate(ctx);
        if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
            bl_log(BL_LOG_WARN, "certificate \"%s\" has expired, in %s:%d",
                    ps->cert, ps->cert_file, ps->cert_line);
        if (SSL_CTX_use_PrivateKey_file(ctx, ps->key, SSL_FILETYPE_PEM) != 1) {
            snprintf(err, errlen, "cannot load certificate key \"%s\" (%s) in %s:%d", ps->key,
                     ssl_reason(why, sizeof(why)), ps->key_file, ps->key_line);
            return BL_ERR;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "certificate key \"%s\" does not match certificate \"%s\" (%s) "
                                  "in %s:%d", ps->key, ps->cert, ssl_reason(why, sizeof(why)),
                     ps->key_file, ps->key_line);
            return BL_ERR;
        }
    }
    if (ps->session_reuse != 1) {
        /* Sessions are kept per worker and server by the connection pool, not in OpenSSL's
         * cache: a worker resumes without a lock. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, bl_uptls_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    return bl_ssl_cmds_apply(&ps->cmds, ctx, 0, err, errlen);
}

void bl_proxy_ssl_free(struct bl_proxy_ssl *ps)
{
    if (!ps)
        return;
    free(ps->name);
    if (ps->name_owned)
        bl_template_free(ps->name_tpl);
    free(ps->trusted), free(ps->cert), free(ps->key), free(ps->ciphers);
    bl_ssl_cmds_free(&ps->cmds);
    SSL_CTX_free(ps->ctx);
    free(ps);
}
