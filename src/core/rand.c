/* Per-thread xoshiro256** (Blackman and Vigna), seeded from getrandom(). */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/rand.h"

static _Thread_local uint64_t state[4];
static _Thread_local int seeded;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void seed(void)
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

void bl_rand_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            r = bl_rand64();
        out[2 * i] = hex[r >> 4 & 0xf];
        out[2 * i + 1] = hex[r & 0xf];
        r >>= 8;
    }
}
