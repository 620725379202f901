/* The upstream response fields that nginx does not pass to the client unless
 * `proxy_pass_header` names them: its `proxy_hide_header` defaults, which ballast keeps so
 * that an nginx config behaves the same (docs/configuration.md, proxy_hide_header). ballast
 * writes its own Server and Date in place of the upstream's, as nginx does. */
#ifndef BL_CONF_HIDE_HEADERS_H
#define BL_CONF_HIDE_HEADERS_H

#include <stddef.h>
#include <stdint.h>

/* Bits of bl_location.pass_headers: one per field hidden by default. */
#define BL_HIDE_DATE               0x01u
#define BL_HIDE_SERVER             0x02u
#define BL_HIDE_X_PAD              0x04u
#define BL_HIDE_X_ACCEL_EXPIRES    0x08u
#define BL_HIDE_X_ACCEL_REDIRECT   0x10u
#define BL_HIDE_X_ACCEL_LIMIT_RATE 0x20u
#define BL_HIDE_X_ACCEL_BUFFERING  0x40u
#define BL_HIDE_X_ACCEL_CHARSET    0x80u

/* The BL_HIDE_* bit of field NAME (any case), or 0 when it is not hidden by default. Cheap
 * enough for every field of every response: most names are rejected on length and first
 * letter. Any thread. */
uint32_t bl_hidden_by_default(const char *name, size_t len);

#endif
