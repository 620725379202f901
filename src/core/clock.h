/* Cached clocks: read once per loop turn, then free to use anywhere on that thread. */
#ifndef BL_CORE_CLOCK_H
#define BL_CORE_CLOCK_H

#include <stdint.h>

/* This thread's cached monotonic time in milliseconds and microseconds, as of the last
 * bl_clock_update() on this thread (thread-locals: docs/internals.md, "Per-thread state"). */
extern _Thread_local uint64_t bl_clock_ms;
extern _Thread_local uint64_t bl_clock_us;

/* Reads the monotonic clock into this thread's cache and returns milliseconds. */
uint64_t bl_clock_update(void);

/* Wall-clock time in microseconds since the epoch (reads the clock; vDSO, no syscall). */
uint64_t bl_wall_us(void);

static inline uint64_t bl_now_ms(void) { return bl_clock_ms; }

#endif
