/* TLS on a client connection: OpenSSL driven non-blocking on the worker's loop (conf/ssl.h
 * makes the contexts). The proxy's transport seam (proxy.c, "transport") calls these when the
 * connection has a TLS session and plain recv/send otherwise.
 *
 * `want` is the connection's record of a direction waiting on the other one: a read that
 * needs the socket writable (BL_TLS_READ_WANTS_WRITE) or a write that needs it readable
 * (BL_TLS_WRITE_WANTS_READ). The event handler turns a write edge into a read retry and the
 * reverse while such a bit is set. Worker thread.
 */
#ifndef BL_HTTP_TLS_H
#define BL_HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct bl_listen;
struct ssl_st;

#define BL_TLS_READ_WANTS_WRITE 0x1u
#define BL_TLS_WRITE_WANTS_READ 0x2u

/* bl_tls_handshake(): the client spoke plain HTTP to the TLS port. */
#define BL_TLS_PLAIN_HTTP (-10)

/* A server session on fd for listener l (its default server's context; SNI may switch it).
 * NULL when out of memory. */
struct ssl_st *bl_tls_new(const struct bl_listen *l, int fd);
/* Drives the handshake: BL_OK (done), BL_AGAIN (wait for *want's direction: bit 0 read,
 * bit 1 write, in BL_TLS_HS_* terms below), BL_ERR (failed: logged at info with the reason and
 * client ip) or BL_TLS_PLAIN_HTTP. */
#define BL_TLS_HS_READ  0x4u
#define BL_TLS_HS_WRITE 0x8u
int bl_tls_handshake(struct ssl_st *s, uint8_t *want, const char *ip);
/* Reads up to len bytes: > 0, 0 at the peer's close (close_notify or EOF), BL_AGAIN (*ready
 * cleared) or BL_ERR. */
ssize_t bl_tls_read(struct ssl_st *s, char *buf, size_t len, uint8_t *ready, uint8_t *want);
/* Writes from iov: bytes (> 0), BL_AGAIN (nothing went; *ready cleared) or BL_ERR. Bytes that
 * did not go must be offered again, from the same position, on the next call. */
ssize_t bl_tls_writev(struct ssl_st *s, const struct iovec *iov, int n, uint8_t *ready,
                      uint8_t *want);
/* Sends close_notify, best effort (before a lingering close). */
void bl_tls_shutdown(struct ssl_st *s);
void bl_tls_free(struct ssl_st *s);

/* Whether the handshake chose HTTP/2 by ALPN (conf/ssl.c offers it where bl_listen_http2()). */
int bl_tls_alpn_h2(const struct ssl_st *s);

/* $ssl_protocol, $ssl_cipher, $ssl_server_name ("" when none). */
const char *bl_tls_protocol(const struct ssl_st *s);
const char *bl_tls_cipher(const struct ssl_st *s);
const char *bl_tls_server_name(const struct ssl_st *s);

/* ssl_verify_client's verdict on a request of s, for mode (enum bl_ssl_verify): 0 when the
 * request may go on, else nginx's 496 (no certificate where one is required) or 495 (a
 * certificate that did not verify), answered as 400 with nginx's page; both logged at info
 * with the client's address. */
int bl_tls_verify_client(const struct ssl_st *s, int mode, const char *ip);

/* $ssl_client_verify, _s_dn, _i_dn, _serial, _fingerprint (BL_VAR_SSL_CLIENT_*, template.h)
 * of s into out (cap bytes): the length, or -1 for an empty value (no certificate). The
 * bl_var_ctx.ssl_client_var hook. */
int bl_tls_client_var(const void *s, int which, char *out, size_t cap);

#endif
