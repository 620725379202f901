/* The start of a TLS connection read without terminating it (nginx's ssl_preread): the server
 * name (SNI), the ALPN protocols and the highest version a client's ClientHello offers, so a
 * stream proxy can route TLS by name while the bytes pass through untouched.
 *
 * Like core/proxy_proto.h the parser is given every byte received so far and answers "need
 * more", "not a ClientHello" or the result; the hello may span several TLS records, up to
 * BL_TLS_HELLO_MAX bytes in all (nginx's preread_buffer_size). Pure; any thread.
 */
#ifndef BL_CORE_TLS_HELLO_H
#define BL_CORE_TLS_HELLO_H

#include <stddef.h>
#include <stdint.h>

#define BL_TLS_HELLO_MAX 16384

struct bl_tls_hello {
    char server_name[256];      /* the host_name of SNI, lowercased; "" without one */
    char alpn[256];             /* the ALPN protocols offered, joined by ',' (nginx's
                                 * $ssl_preread_alpn_protocols); "" without them */
    char protocol[8];           /* the highest version offered: "TLSv1" .. "TLSv1.3" */
};

/* Parses the ClientHello at the start of buf[0..len). Returns 0 with *out filled, -2 when more
 * bytes are needed (never once len reaches BL_TLS_HELLO_MAX), -1 when the bytes are not a TLS
 * ClientHello (or one longer than BL_TLS_HELLO_MAX): *out is then all empty. */
int bl_tls_hello_parse(const uint8_t *buf, size_t len, struct bl_tls_hello *out);

#endif
