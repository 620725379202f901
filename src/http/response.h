/* Responses that ballast writes itself: errors, `return`, and the cached Date header. */
#ifndef BL_HTTP_RESPONSE_H
#define BL_HTTP_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

/* "Not Found" for 404, "Unknown" for codes it does not know. */
const char *bl_http_reason(int status);

/* Whether add_header (without `always`) and expires apply to a response of this status:
 * nginx's list, shared by both filters. */
int bl_http_status_takes_added_fields(int status);

/* Whether an error answer of this status ends the client's connection however the request
 * was read: the request itself was broken or too large (its framing is in doubt) or ballast
 * failed inside (500); nginx's list (ngx_http_special_response_handler, plus 408 and 494).
 * Every other generated answer keeps a keep-alive connection whose request was read whole. */
int bl_http_status_ends_connection(int status);

/* "Date: Sun, 22 Nov 2026 01:30:00 GMT\r\n", cached per thread per second: a thread that runs a
 * loop (its bl_clock_us moves each turn; the line follows that clock). */
const char *bl_http_date_header(size_t *len);

/* "ballast/0.1.0" or "ballast", as server_tokens says (core/version.h). */
const char *bl_http_server_name(int server_tokens);

/* Writes a complete response into out (cap bytes): status line, Server (with the version when
 * server_tokens), Date, Content-Type, Content-Length, Connection (close or keep-alive as asked;
 * for HTTP/1.0 clients keep-alive is said explicitly), optional Location, then the body
 * (omitted for HEAD, and 1xx/204/304). body NULL: an nginx-style HTML page naming the status,
 * signed like Server. Returns the length, or 0 if it does not fit; *body_bytes (may be NULL)
 * gets the body's length as sent (0 for HEAD), for the access log. */
/* nginx's internal statuses for ssl_verify_client: sent as 400 with their own page. */
#define BL_HTTP_SSL_CERT_ERROR 495
#define BL_HTTP_SSL_NO_CERT    496

size_t bl_http_build_response(char *out, size_t cap, int status, const char *body,
                              size_t body_len, const char *location, size_t location_len,
                              int keep_alive, int http10, int head, int retry_after,
                              int server_tokens, size_t *body_bytes);

#endif
