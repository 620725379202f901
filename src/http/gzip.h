/* gzip compression of responses (nginx's ngx_http_gzip_filter_module): which responses
 * are compressed, and the streaming deflate that frames its output for the client.
 *
 * Memory is bounded whatever the body size: one zlib stream (about 256 KiB at the default
 * window) and one bl_buf of output per compressed response; input is consumed from the
 * upstream buffer as it arrives and output leaves as the client takes it (back-pressure is the
 * proxy's, unchanged). All of it belongs to one worker thread.
 */
#ifndef BL_HTTP_GZIP_H
#define BL_HTTP_GZIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct bl_request;
struct bl_gzip;

/* bl_gzip_decide() */
#define BL_GZIP_NO   0   /* neither compressed nor marked */
#define BL_GZIP_VARY 1   /* a response gzip could apply to, not compressed for this client:
                          * gzip_vary's header only */
#define BL_GZIP_YES  2   /* compress */

/* Whether an Accept-Encoding value (v, len) accepts gzip: a "gzip" (or "x-gzip") coding, or
 * "*" when gzip is not named, with a q-value above 0 (RFC 9110 section 12.5.3). */
int bl_gzip_accepted(const char *v, size_t len);

/* What gzip does for r, its response head parsed in r->resp and the location's gzip settings
 * in r->loc->conf: BL_GZIP_*. Reads only. */
int bl_gzip_decide(const struct bl_request *r);

/* The same for a response ballast makes itself (a file, a `return`, an error page) with
 * status, Content-Type type (NULL: none) and a body of len bytes: r->msg is the request,
 * r->file_mtime says whether it is a file (its validators count for gzip_proxied). */
int bl_gzip_decide_local(const struct bl_request *r, int status, const char *type,
                         uint64_t len);

/* Compresses in[0..len) whole into out (a gzip member): its length, or 0 when it does not fit
 * in cap bytes or zlib fails. For small bodies made at once (pages, `return` texts). */
size_t bl_gzip_compress(int level, const char *in, size_t len, char *out, size_t cap);

/* A compressor at level (1..9) framing its output as HTTP/1.1 chunks when chunked, else raw
 * (HTTP/1.0 until close, or an HTTP/2 stream). NULL when out of memory. */
struct bl_gzip *bl_gzip_new(int level, int chunked);
void bl_gzip_free(struct bl_gzip *g);

/* The output waiting to be sent (start..end); the caller advances start as bytes go. */
struct bl_buf *bl_gzip_out(struct bl_gzip *g);

/* Compresses in[0..len) into the output, which must be empty; *used: input bytes consumed.
 * finish: no input will follow these bytes, so the gzip trailer (and the last chunk) are
 * written once everything fits; call again while bl_gzip_done() is 0. BL_OK or BL_ERR. */
int bl_gzip_feed(struct bl_gzip *g, const char *in, uint32_t len, int finish, uint32_t *used);

/* Whether the whole stream, trailer and last chunk included, is in the output. */
int bl_gzip_done(const struct bl_gzip *g);

#endif
