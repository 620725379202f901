/* TLS on upstream connections (proxy_pass https://, check ... ssl): OpenSSL client sessions
 * driven non-blocking on the owner's loop. The session lives in u->tls, so a pooled
 * connection keeps it; the handshake's verdict (proxy_ssl_verify) is checked as nginx does,
 * after the handshake, so that the log names the reason. The SSL_CTX comes from
 * conf/proxy_ssl.c (or the health checker's own). Owner thread.
 */
#ifndef BL_UPSTREAM_UPTLS_H
#define BL_UPSTREAM_UPTLS_H

#include <stddef.h>

struct bl_upconn;
struct ssl_st;
struct ssl_session_st;

/* Starts a client session on u (connected or connecting) with ssl_ctx. sni: the name to send
 * (NULL or an IP literal: none, as RFC 6066 says); verify_host: the name the certificate must
 * match when verify is set (NULL: not checked); reuse: offer the session kept for u's server
 * (bl_upconn_tls_session). BL_OK, or BL_ERR (out of memory). */
int bl_uptls_start(struct bl_upconn *u, void *ssl_ctx, const char *sni, const char *verify_host,
                   int verify, int reuse);

/* Drives u's handshake: BL_OK (done, verified when asked), BL_AGAIN (waiting: u->rready or
 * u->wready was cleared for the direction it waits on), or BL_ERR with the reason in why,
 * written as nginx logs it ("SSL_do_handshake() failed (...)", "upstream SSL certificate
 * verify error: (20:unable to get local issuer certificate)"). */
int bl_uptls_handshake(struct bl_upconn *u, int verify, char *why, size_t len);

/* OpenSSL's new-session callback for client contexts with session reuse: keeps the session
 * for the connection's server (the SSL's app data is its struct bl_upconn). */
int bl_uptls_new_session(struct ssl_st *s, struct ssl_session_st *sess);

#endif
