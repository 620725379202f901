/* Request paths as nginx matches them: percent-decoded, slashes merged, "." and ".." resolved,
 * so `location /admin/` cannot be walked around with "/%61dmin/", "//admin/" or
 * "/x/../admin/". Pure functions; any thread. */
#ifndef BL_HTTP_URI_H
#define BL_HTTP_URI_H

#include <stddef.h>

/* 1 when path needs bl_uri_normalize() (it holds '%', "//", "/." ), 0 when it is already
 * normal. Cheap: one pass, no writes. */
int bl_uri_needs_normalize(const char *path, size_t len);

/* Writes the normal form of path (which starts with '/') to out (at least len bytes) and sets
 * *outlen. BL_OK, or BL_ERR for a path nginx refuses with 400: a bad %-escape, an escaped NUL,
 * or ".." above the root. */
int bl_uri_normalize(const char *path, size_t len, char *out, size_t *outlen);

/* Percent-escapes the bytes of a decoded path that may not appear raw in a request target
 * (space, '%', '?', '#', controls, non-ASCII...). Returns the escaped length; writes at most
 * cap bytes (3 * len is always enough). */
size_t bl_uri_escape(const char *path, size_t len, char *out, size_t cap);

#endif
