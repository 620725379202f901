/* FNV-1a 64 with murmur3's final mix: the hash of the shared tables (limit zones, their
 * cluster counts, the cache index). Keys are short (an address, a cache key), where a simple
 * byte loop is the fast hash; the mix spreads FNV's weak low bits for `% shards`. */
#ifndef BL_CORE_FNV_H
#define BL_CORE_FNV_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t bl_fnv1a64(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

#endif
