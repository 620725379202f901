/* In-place removal of chunked framing (already validated). */
#include <string.h>

#include "core/units.h"
#include "http/dechunk.h"

enum dechunk_state {
    DK_SIZE = 0,          /* hex digits of a chunk size */
    DK_SIZE_REST,         /* extensions and CR up to the LF of the size line */
    DK_DATA,              /* chunk data */
    DK_DATA_END,          /* CRLF after the data */
    DK_TRAILER_START,     /* start of a trailer line, or of the final empty line */
    DK_TRAILER,           /* inside a trailer line */
    DK_DONE,
};

void bl_dechunk_init(struct bl_dechunk *d)
{
    d->remaining = 0;
    d->state = DK_SIZE;
}

uint32_t bl_dechunk(struct bl_dechunk *d, char *buf, uint32_t len)
{
    uint32_t in = 0, out = 0;
    while (in < len) {
        char c = buf[in];
        switch (d->state) {
        case DK_SIZE: {
            int v = bl_hex_digit(c);
            if (v >= 0) {
                d->remaining = (d->remaining << 4) | (uint64_t)v;
                in++;
                break;
            }
            d->state = DK_SIZE_REST;
            break;
        }
        case DK_SIZE_REST:
            in++;
            if (c == '\n')
                d->state = d->remaining ? DK_DATA : DK_TRAILER_START;
            break;
        case DK_DATA: {
            uint32_t n = len - in;
            if (n > d->remaining)
                n = (uint32_t)d->remaining;
            memmove(buf + out, buf + in, n);
            in += n;
            out += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = DK_DATA_END;
            break;
        }
        case DK_DATA_END:
            in++;
            if (c == '\n')
                d->state = DK_SIZE;
            break;
        case DK_TRAILER_START:
            in++;
            if (c == '\n')
                d->state = DK_DONE;
            else if (c != '\r')
                d->state = DK_TRAILER;
            break;
        case DK_TRAILER:
            in++;
            if (c == '\n')
                d->state = DK_TRAILER_START;
            break;
        default:
            in = len;
            break;
        }
    }
    return out;
}
