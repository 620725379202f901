/* Cached clocks. clock_gettime goes through the vDSO, so this costs no syscall. */
#include <time.h>

#include "core/clock.h"

_Thread_local uint64_t bl_clock_ms;
_Thread_local uint64_t bl_clock_us;

uint64_t bl_clock_update(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    bl_clock_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    bl_clock_ms = bl_clock_us / 1000u;
    return bl_clock_ms;
}

uint64_t bl_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
