/* Removes chunked framing in place, for HTTP/1.0 clients that cannot read it. Input must
 * already be validated by bl_h1_chunked_scan(): this only strips, it does not check.
 * Resumable at any byte. Any thread; the state belongs to one response. */
#ifndef BL_HTTP_DECHUNK_H
#define BL_HTTP_DECHUNK_H

#include <stdint.h>

struct bl_dechunk {
    uint64_t remaining;   /* data bytes left in the current chunk */
    uint8_t state;        /* private */
};

void bl_dechunk_init(struct bl_dechunk *d);

/* Compacts the data bytes of buf[0..len) to the front of buf; returns how many there are. */
uint32_t bl_dechunk(struct bl_dechunk *d, char *buf, uint32_t len);

#endif
