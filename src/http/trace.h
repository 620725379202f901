/* Request ids and W3C Trace Context (https://www.w3.org/TR/trace-context/): checking an
 * X-Request-ID a client sent, parsing and writing `traceparent`. Pure functions of their
 * arguments; the ids themselves come from core/rand.h.
 */
#ifndef BL_HTTP_TRACE_H
#define BL_HTTP_TRACE_H

#include <stddef.h>
#include <stdint.h>

/* The longest request id ballast keeps from a client. */
#define BL_REQUEST_ID_MAX 64

/* 1 when s[0..n) is a request id ballast keeps as the client sent it: 1 to 64 bytes of
 * letters, digits, '.', '_' and '-' (UUIDs, ULIDs, hex and base64url ids; nothing that needs
 * escaping in a log or a header). */
int bl_request_id_valid(const char *s, size_t n);

/* A parsed traceparent: lowercase hex, not NUL-terminated. */
struct bl_traceparent {
    char trace_id[32];
    char parent_id[16];
    uint8_t flags;              /* trace-flags; ballast keeps sampled (0x01) and random (0x02) */
};

/* Parses a traceparent value as the spec says a receiver must: version 2 lowercase hex digits
 * other than "ff"; for version 00 exactly 55 bytes, for a later version at least 55 with '-'
 * after them (its fields beyond are ignored); trace-id 32 and parent-id 16 lowercase hex
 * digits, neither all zeros; flags 2 hex digits. BL_OK, or BL_ERR for anything else. */
int bl_traceparent_parse(const char *s, size_t n, struct bl_traceparent *tp);

/* Writes "00-TRACE_ID-SPAN_ID-FLAGS" (55 bytes, no terminator) into out. */
void bl_traceparent_format(char out[55], const char trace_id[32], const char span_id[16],
                           uint8_t flags);

/* 1 when id[0..n) is 32 lowercase hex digits, not all zeros: usable as a trace-id. */
int bl_trace_id_valid(const char *id, size_t n);

#endif
