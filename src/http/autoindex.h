/* Directory listings as nginx's autoindex module writes them (autoindex_format html | json),
 * produced a piece at a time so that a listing of any length leaves through one buffer.
 *
 * A listing holds the directory's entries (names, type, mtime, size; dotfiles left out),
 * sorted directories first and then by name in byte order, as nginx sorts them; its memory is
 * those entries alone, at most BL_AUTOINDEX_MAX_BYTES. One request's thread owns it. */
#ifndef BL_HTTP_AUTOINDEX_H
#define BL_HTTP_AUTOINDEX_H

#include <stddef.h>
#include <stdint.h>

/* Most bytes of entries (names included) one listing may hold: a directory larger than this
 * is answered 500 rather than listed (about 300,000 entries with 20-byte names). */
#define BL_AUTOINDEX_MAX_BYTES (16u << 20)

struct bl_autoindex;

/* Reads the directory open on dfd (taken: closed whatever happens) for the page of uri (the
 * request's decoded path, shown in the HTML title). json: autoindex_format json, else html;
 * exact_size and localtime: the directives'. The listing, or NULL with errno: ENOMEM (out of memory), EFBIG (more than
 * BL_AUTOINDEX_MAX_BYTES), or what reading the directory or a stat of an entry failed with
 * (an entry that cannot be read for EACCES is left out, as nginx does). */
struct bl_autoindex *bl_autoindex_open(int dfd, const char *uri, size_t ulen, int json,
                                       int exact_size, int localtime);

/* The body's length in bytes: Content-Length. */
uint64_t bl_autoindex_length(const struct bl_autoindex *a);

/* The next bytes of the body into buf (cap > 0): how many, 0 once it is all written. */
size_t bl_autoindex_fill(struct bl_autoindex *a, char *buf, size_t cap);

void bl_autoindex_free(struct bl_autoindex *a);

#endif
