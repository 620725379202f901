/* Fast per-thread random numbers for identifiers (request ids, trace and span ids): not for
 * keys or tokens. Each thread has its own xoshiro256** state, seeded from getrandom() on first
 * use, so a number costs a few nanoseconds and no system call or lock.
 */
#ifndef BL_CORE_RAND_H
#define BL_CORE_RAND_H

#include <stddef.h>
#include <stdint.h>

/* 64 random bits. Any thread (each has its own sequence). */
uint64_t bl_rand64(void);

/* Writes n random bytes as 2n lowercase hex digits into out (no terminator). Any thread. */
void bl_rand_hex(char *out, size_t n);

#endif
