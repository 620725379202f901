/* TLS on client connections (http/tls.h). */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "conf/ssl.h"
#include "core/log.h"
#include "core/status.h"
#include "http/router.h"
#include "http/template.h"
#include "http/tls.h"

SSL *bl_tls_new(const struct bl_listen *l, int fd)
{
    /* The SNI callback (conf/ssl.c) picks the server by the same rule as Host. */
    __atomic_store_n(&bl_ssl_pick_server, bl_route_server, __ATOMIC_RELAXED);
    SSL *s = SSL_new(l->servers[0]->ssl_ctx);
    if (!s)
        return NULL;
    if (SSL_set_fd(s, fd) != 1 || SSL_set_ex_data(s, bl_ssl_listen_idx, (void *)l) != 1) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

/* The reason of the last error, for the log; clears the thread's error queue. */
static const char *reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed by peer");
        return buf;
    }
    const char *r = ERR_reason_error_string(e);
    snprintf(buf, len, "%s", r ? r : "unknown error");
    return buf;
}

int bl_tls_handshake(SSL *s, uint8_t *want, const char *ip)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(s);
    *want &= (uint8_t)~(BL_TLS_HS_READ | BL_TLS_HS_WRITE);
    if (rc == 1)
        return BL_OK;
    int e = SSL_get_error(s, rc);
    if (e == SSL_ERROR_WANT_READ) {
        *want |= BL_TLS_HS_READ;
        return BL_AGAIN;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *want |= BL_TLS_HS_WRITE;
        return BL_AGAIN;
    }
    unsigned long last = ERR_peek_last_error();
    if (ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) == SSL_R_HTTP_REQUEST) {
        ERR_clear_error();
        return BL_TLS_PLAIN_HTTP;
    }
    char buf[160];
    bl_log(BL_LOG_INFO, "SSL_do_handshake() failed (%s) while SSL handshaking, client %s",
           reason(buf, sizeof(buf)), ip);
    ERR_clear_error();
    return BL_ERR;
}

ssize_t bl_tls_read(SSL *s, char *buf, size_t len, uint8_t *ready, uint8_t *want)
{
    ERR_clear_error();
    int n = SSL_read(s, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    *want &= (uint8_t)~BL_TLS_READ_WANTS_WRITE;
    if (n > 0)
        return n;
    switch (SSL_get_error(s, n)) {
    case SSL_ERROR_WANT_READ:
        *ready = 0;
        return BL_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        /* A read that needs to write (a key update's answer): retried on the write edge. */
        *want |= BL_TLS_READ_WANTS_WRITE;
        *ready = 0;
        return BL_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_last_error() == 0 && errno == 0)
            return 0; /* EOF without close_notify: treated as a close, as nginx does */
        return BL_ERR;
    default:
        ERR_clear_error();
        return BL_ERR;
    }
}

/* One SSL_write: bytes (> 0), or BL_AGAIN / BL_ERR with *ready and *want set. */
static ssize_t write_one(SSL *s, const void *p, size_t len, uint8_t *ready, uint8_t *want)
{
    ERR_clear_error();
    int w = SSL_write(s, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (w > 0)
        return w;
    int e = SSL_get_error(s, w);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        if (e == SSL_ERROR_WANT_READ)
            *want |= BL_TLS_WRITE_WANTS_READ;
        *ready = 0;
        return BL_AGAIN;
    }
    ERR_clear_error();
    return BL_ERR;
}

/* A response head and the start of its body go out as one record, not two: half the
 * encryptions and one write instead of two (nginx coalesces the same way). */
#define COALESCE 16384

ssize_t bl_tls_writev(SSL *s, const struct iovec *iov, int n, uint8_t *ready, uint8_t *want)
{
    ssize_t total = 0;
    size_t skip = 0; /* bytes of iov already sent by the coalesced write */
    *want &= (uint8_t)~BL_TLS_WRITE_WANTS_READ;
    if (n > 1 && iov[0].iov_len < COALESCE) {
        /* The same bytes are offered again after BL_AGAIN (the caller has not advanced), so
         * a retried record is rebuilt identical, as OpenSSL requires. */
        char tmp[COALESCE];
        size_t k = 0;
        for (int i = 0; i < n && k < sizeof(tmp); i++) {
            size_t take = iov[i].iov_len < sizeof(tmp) - k ? iov[i].iov_len : sizeof(tmp) - k;
            memcpy(tmp + k, iov[i].iov_base, take);
            k += take;
        }
        ssize_t w = write_one(s, tmp, k, ready, want);
        if (w < 0)
            return w;
        total = w;
        if ((size_t)w < k)
            return total;
        skip = k;
    }
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        if (skip) {
            off = skip < iov[i].iov_len ? skip : iov[i].iov_len;
            skip -= off;
        }
        while (off < iov[i].iov_len) {
            ssize_t w = write_one(s, (const char *)iov[i].iov_base + off, iov[i].iov_len - off,
                                  ready, want);
            if (w < 0)
                return total ? total : w;
            off += (size_t)w;
            total += w;
        }
    }
    return total ? total : BL_AGAIN;
}

void bl_tls_shutdown(SSL *s)
{
    ERR_clear_error();
    SSL_set_quiet_shutdown(s, 0);
    if (SSL_shutdown(s) < 0)
        ERR_clear_error();
}

void bl_tls_free(SSL *s)
{
    SSL_free(s);
}

const char *bl_tls_protocol(const SSL *s)
{
    return s ? SSL_get_version(s) : "";
}

const char *bl_tls_cipher(const SSL *s)
{
    return s ? SSL_get_cipher_name(s) : "";
}

const char *bl_tls_server_name(const SSL *s)
{
    const char *n = s ? SSL_get_servername(s, TLSEXT_NAMETYPE_host_name) : NULL;
    return n ? n : "";
}

int bl_tls_alpn_h2(const SSL *s)
{
    const unsigned char *p;
    unsigned int len;
    SSL_get0_alpn_selected(s, &p, &len);
    return len == 2 && p[0] == 'h' && p[1] == '2';
}

/* The verify errors optional_no_ca lets through: the certificate is fine but its CA unknown
 * (nginx's ngx_ssl_verify_error_optional). */
static int error_is_unknown_ca(long v)
{
    return v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

int bl_tls_verify_client(const SSL *s, int mode, const char *ip)
{
    if (mode == BL_SSL_VERIFY_OFF || mode == BL_SSL_VERIFY_UNSET)
        return 0;
    if (!SSL_get0_peer_certificate(s)) {
        if (mode != BL_SSL_VERIFY_ON)
            return 0;
        bl_log(BL_LOG_INFO, "client sent no required SSL certificate while reading client "
               "request headers, client %s", ip);
        return 496;
    }
    long v = SSL_get_verify_result(s);
    if (v == X509_V_OK || (mode == BL_SSL_VERIFY_OPTIONAL_NO_CA && error_is_unknown_ca(v)))
        return 0;
    bl_log(BL_LOG_INFO, "client SSL certificate verify error: (%ld:%s) while reading client "
           "request headers, client %s", v, X509_verify_cert_error_string(v), ip);
    return 495;
}

static int name_var(const X509_NAME *name, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return -1;
    /* RFC 2253, as nginx writes $ssl_client_s_dn since 1.11.6 */
    int rc = X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (rc < 0 || n <= 0) {
        BIO_free(b);
        return -1;
    }
    size_t len = (size_t)n < cap ? (size_t)n : cap;
    memcpy(out, p, len);
    BIO_free(b);
    return (int)len;
}

int bl_tls_client_var(const void *ssl, int which, char *out, size_t cap)
{
    const SSL *s = ssl;
    X509 *x = s ? SSL_get0_peer_certificate(s) : NULL;
    if (which == BL_VAR_SSL_CLIENT_VERIFY) {
        if (!s)
            return -1;
        const char *v = "NONE";
        char buf[160];
        if (x) {
            long r = SSL_get_verify_result(s);
            if (r == X509_V_OK) {
                v = "SUCCESS";
            } else {
                snprintf(buf, sizeof(buf), "FAILED:%s", X509_verify_cert_error_string(r));
                v = buf;
            }
        }
        size_t n = strlen(v) < cap ? strlen(v) : cap;
        memcpy(out, v, n);
        return (int)n;
    }
    if (!x)
        return -1;
    switch (which) {
    case BL_VAR_SSL_CLIENT_S_DN:
        return name_var(X509_get_subject_name(x), out, cap);
    case BL_VAR_SSL_CLIENT_I_DN:
        return name_var(X509_get_issuer_name(x), out, cap);
    case BL_VAR_SSL_CLIENT_SERIAL: {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        BN_free(bn);
        if (!hex)
            return -1;
        size_t n = strlen(hex) < cap ? strlen(hex) : cap;
        memcpy(out, hex, n);
        OPENSSL_free(hex);
        return (int)n;
    }
    case BL_VAR_SSL_CLIENT_FINGERPRINT: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (X509_digest(x, EVP_sha1(), md, &mdlen) != 1)
            return -1;
        size_t n = 0;
        for (unsigned int i = 0; i < mdlen && n + 2 <= cap; i++, n += 2)
            snprintf(out + n, 3, "%02x", md[i]);
        return (int)n;
    }
    default:
        return -1;
    }
}
