/* MurmurHash2 (Austin Appleby's, 32-bit, seed 0) exactly as nginx's ngx_murmur_hash2 computes
 * it: split_clients must put every key in the same bucket as nginx does. */
#ifndef BL_CORE_MURMUR_H
#define BL_CORE_MURMUR_H

#include <stddef.h>
#include <stdint.h>

/* The hash of data[0..len). Any thread. */
uint32_t bl_murmur2(const void *data, size_t len);

#endif
