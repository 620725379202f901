/* MurmurHash2, written from the published algorithm: little-endian 4-byte blocks, the tail
 * folded in, then the final avalanche; the seed is 0 and the length is mixed in first, which is
 * what nginx does. */
#include "core/murmur.h"

#define M 0x5bd1e995u

uint32_t bl_murmur2(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = (uint32_t)len;
    while (len >= 4) {
        uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        k *= M;
        k ^= k >> 24;
        k *= M;
        h *= M;
        h ^= k;
        p += 4;
        len -= 4;
    }
    switch (len) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        __attribute__((fallthrough));
    case 2:
        h ^= (uint32_t)p[1] << 8;
        __attribute__((fallthrough));
    case 1:
        h ^= p[0];
        h *= M;
    }
    h ^= h >> 13;
    h *= M;
    h ^= h >> 15;
    return h;
}
