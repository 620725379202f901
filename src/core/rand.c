/* Per-thread xoshiro256** (Blackman and Vigna), seeded from getrandom(). */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/rand.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static _Thread_local uint64_t state[4];
static _Thread_local int seeded;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Out of line and cold: inlined, its loop made bl_rand64 save and restore four registers on
 * every call (bench/README.md, "Profile"). */
__attribute__((noinline, cold)) static void seed(void)
{
    size_t got = 0;
    while (got < sizeof(state)) {
        ssize_t n = getrandom((char *)state + got, sizeof(state) - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof(state)) {
        /* No getrandom (old kernel, seccomp): ids need only be unlikely to repeat. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&state;
        for (int i = 0; i < 4; i++) { /* splitmix64 */
            x += 0x9e3779b97f4a7c15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            state[i] ^= z ^ (z >> 31);
        }
    }
    if (!(state[0] | state[1] | state[2] | state[3]))
        state[0] = 1; /* the one state xoshiro cannot leave */
    seeded = 1;
}

uint64_t bl_rand64(void)
{
    if (!seeded)
        seed();
    uint64_t *s = state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

#ifndef __SSE2__
/* 32 bits as 8 hex digits, all at once: each nibble spread into its own byte, then '0'..'9'
 * or 'a'..'f' added per byte (SWAR). The digit order differs from the usual printing order,
 * which random bits do not care about. About a fifth of the instructions of a byte loop with a
 * table (bench/README.md, "Profile"). */
static inline uint64_t hex8(uint32_t x)
{
    uint64_t v = x;
    v = (v | v << 16) & 0x0000ffff0000ffffull;
    v = (v | v << 8) & 0x00ff00ff00ff00ffull;
    v = (v | v << 4) & 0x0f0f0f0f0f0f0f0full;
    uint64_t letters = ((v + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return v + 0x3030303030303030ull + letters * ('a' - '0' - 10);
}
#endif

/* 64 bits as 16 hex digits at out. With SSE2 (every x86-64) the same per-byte steps on all 16
 * at once: the two nibbles of each byte unpacked into two bytes, '0' added, and 'a' - '0' - 10
 * more where the nibble is over 9: about a third of two hex8 (bench/README.md, "Profile"). */
static inline void hex16(char *out, uint64_t r)
{
#ifdef __SSE2__
    const __m128i low = _mm_set1_epi8(0x0f);
    __m128i v = _mm_cvtsi64_si128((long long)r);
    __m128i n = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low));
    __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)),
                                    _mm_set1_epi8('a' - '0' - 10));
    _mm_storeu_si128((__m128i *)(void *)out,
                     _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8('0')), letters));
#else
    uint64_t a = hex8((uint32_t)r), b = hex8((uint32_t)(r >> 32));
    memcpy(out, &a, 8);
    memcpy(out + 8, &b, 8);
#endif
}

void bl_rand_hex(char *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        hex16(out + 2 * i, bl_rand64());
    if (i < n) {
        char tail[16];
        hex16(tail, bl_rand64());
        memcpy(out + 2 * i, tail, 2 * (n - i));
    }
}
