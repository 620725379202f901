/* Hash and random-number helpers of the balancers: nginx's CRC32 (so keys map as under nginx),
 * integer mixers, and a small per-worker PRNG.
 *
 * bl_lb_crc32*: CRC-32/ISO-HDLC (zlib's, nginx's ngx_crc32_*): reflected polynomial
 * 0xEDB88320, initial value and final xor 0xFFFFFFFF. The tables are filled before main() runs;
 * every function here is pure and callable from any thread.
 */
#ifndef BL_UPSTREAM_LB_HASH_H
#define BL_UPSTREAM_LB_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Running CRC: start from bl_lb_crc32_init(), feed with _update, finish with _final (nginx's
 * ngx_crc32_init / ngx_crc32_update / ngx_crc32_final). */
static inline uint32_t bl_lb_crc32_init(void)
{
    return 0xffffffffu;
}

uint32_t bl_lb_crc32_update(uint32_t crc, const void *data, size_t len);

static inline uint32_t bl_lb_crc32_final(uint32_t crc)
{
    return crc ^ 0xffffffffu;
}

/* CRC32 of one buffer (ngx_crc32_long). */
static inline uint32_t bl_lb_crc32(const void *data, size_t len)
{
    return bl_lb_crc32_final(bl_lb_crc32_update(bl_lb_crc32_init(), data, len));
}

/* murmur3's finalizer: spreads every input bit over the output; for values that feed a
 * modulo or a threshold (CRC32 is linear, so its low bits alone are a poor coin). */
static inline uint32_t bl_lb_mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* splitmix64's finalizer. */
static inline uint64_t bl_lb_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* 64-bit hash of a byte string under a seed (FNV-1a, then mixed); for building tables, not
 * for keys that must match nginx. */
uint64_t bl_lb_hash64(const void *data, size_t len, uint64_t seed);

/* splitmix64 generator: one state word per worker, never shared. */
static inline uint64_t bl_lb_rand(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return bl_lb_mix64(*state);
}

/* Maps a uniform 64-bit r onto [0, n) without a division (Lemire's multiply-shift). */
static inline uint64_t bl_lb_range(uint64_t r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

#endif
