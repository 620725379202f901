/* Per-request state of nginx's rewrite phases: regex captures, the URI and arguments as
 * rewrite changed them, set variables, and what a return or redirect answers. Lives in
 * struct bl_request (proxy_int.h, which declares rewrite.c's functions); zeroed per request,
 * and costs nothing until a regex matches or a rewrite runs. */
#ifndef BL_HTTP_REWRITE_H
#define BL_HTTP_REWRITE_H

#include <stdint.h>

#include "http/template.h"

struct bl_template;
struct bl_rw_mem;

/* A `set` variable's value (or a named capture's, copied when assigned). */
struct bl_rw_var {
    const char *val;
    uint32_t len;
    uint8_t set;
};

struct bl_rw_state {
    struct bl_captures cap;         /* the last regex match: $0..$9, named groups */
    const char *args;               /* arguments after a rewrite changed them (args_set) */
    uint32_t args_len;
    uint8_t args_set;
    uint8_t uri_changes;            /* internal redirects left + 1 (nginx: 10, then 500); 0
                                     * until the first is counted */
    uint8_t uri_changed;            /* r->upath is not the client's path any more: the
                                     * upstream gets it (escaped) with the arguments */
    uint8_t loc_invalid;            /* rewrite ... break: proxy_pass's URI part is ignored and
                                     * the whole changed URI is sent (nginx) */
    int ret_code;                   /* return or redirect to answer; 0: none */
    const struct bl_template *ret_text; /* return's text or URL */
    const char *redirect;           /* rewrite's redirect: the Location */
    uint32_t redirect_len;
    char *norm;                     /* the normalized client path (malloc), freed at the end */
    struct bl_rw_var *vars;         /* bl_config.vars.n entries, allocated on first set */
    struct bl_rw_mem *mem;          /* what the request allocated: freed at its end */
};

#endif
