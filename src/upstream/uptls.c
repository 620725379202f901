/* TLS client sessions on upstream connections (upstream/uptls.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/status.h"
#include "upstream/conn_pool.h"
#include "upstream/uptls.h"

static int is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int bl_uptls_start(struct bl_upconn *u, void *ssl_ctx, const char *sni, const char *verify_host,
                   int verify, int reuse)
{
    SSL *s = SSL_new(ssl_ctx);
    if (!s)
        return BL_ERR;
    if (SSL_set_fd(s, u->io.fd) != 1)
        goto fail;
    SSL_set_connect_state(s);
    SSL_set_app_data(s, u);
    if (sni && *sni && !is_ip_literal(sni) &&
        SSL_set_tlsext_host_name(s, sni) != 1)
        goto fail;
    /* OpenSSL checks the name during verification (IP literals included); the handshake goes
     * on whatever the verdict (the context's callback accepts) and bl_uptls_handshake reads
     * it, as nginx does, to log why. */
    if (verify && verify_host && *verify_host && SSL_set1_host(s, verify_host) != 1)
        goto fail;
    if (reuse) {
        SSL_SESSION *sess = bl_upconn_tls_session(u);
        if (sess && SSL_set_session(s, sess) != 1)
            ERR_clear_error(); /* a session that no longer fits: a full handshake */ /* a session that no longer fits: a full handshake */
    }
    u->tls = s;
    u->tls_handshake = 1;
    u->tls_want = 0;
    return BL_OK;
fail:
    ERR_clear_error();
    SSL_free(s);
    return BL_ERR;
}

int bl_uptls_handshake(struct bl_upconn *u, int verify, char *why, size_t len)
{
    SSL *s = u->tls;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(s);
    if (rc != 1) {
        int e = SSL_get_error(s, rc);
        if (e == SSL_ERROR_WANT_READ) {
            u->rready = 0;
            return BL_AGAIN;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            u->wready = 0;
            return BL_AGAIN;
        }
        unsigned long last = ERR_peek_last_error();
        if (e == SSL_ERROR_SYSCALL && !last) {
            /* A refused or reset connect shows up here, on the ClientHello: the caller logs
             * it as connect() failed (why empty, errno set). */
            int err = errno;
            if (err) {
                why[0] = '\0';
                errno = err;
            } else {
                snprintf(why, len, "peer closed connection in SSL handshake");
            }
        } else {
            char buf[200];
            ERR_error_string_n(last, buf, sizeof(buf));
            snprintf(why, len, "SSL_do_handshake() failed (SSL: %s)", buf);
            errno = 0;
        }
        ERR_clear_error();
        return BL_ERR;
    }
    u->tls_handshake = 0;
    u->tls_want = 0;
    if (verify) {
        long v = SSL_get_verify_result(s);
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            const char *host = X509_VERIFY_PARAM_get0_host(SSL_get0_param(s), 0);
            char *ip = host ? NULL : X509_VERIFY_PARAM_get1_ip_asc(SSL_get0_param(s));
            snprintf(why, len, "upstream SSL certificate does not match \"%s\"",
                     host ? host : ip ? ip : "");
            OPENSSL_free(ip);
            errno = 0;
            return BL_ERR;
        }
        if (v != X509_V_OK) {
            snprintf(why, len, "upstream SSL certificate verify error: (%ld:%s)", v,
                     X509_verify_cert_error_string(v));
            errno = 0;
            return BL_ERR;
        }
        X509 *peer = SSL_get0_peer_certificate(s);
        if (!peer) {
            snprintf(why, len, "upstream sent no required SSL certificate");
            errno = 0;
            return BL_ERR;
        }
    }
    return BL_OK;
}

int bl_uptls_new_session(SSL *s, SSL_SESSION *sess)
{
    struct bl_upconn *u = SSL_get_app_data(s);
    if (!u)
        return 0;
    bl_upconn_tls_session_set(u, sess);
    return 1; /* the pool holds the reference now */
}
