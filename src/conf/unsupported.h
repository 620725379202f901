/* nginx directives and parameters that this build knows by name but does not implement, so
 * that a config written for nginx is told what is missing for what it is ("TLS is not
 * supported in this build") instead of "unknown directive" or "invalid value". The list
 * shrinks as features land; README.md's "Not yet supported" list says the same. */
#ifndef BL_CONF_UNSUPPORTED_H
#define BL_CONF_UNSUPPORTED_H

#include <stddef.h>

enum bl_unsupported_level {
    BL_UNSUPPORTED_ERROR, /* refuse the config: ignoring the line would change what clients
                             get or drop a protection (TLS, limits, access control) */
    BL_UNSUPPORTED_WARN,  /* load with a warning: the line only tunes something this build
                             does not do at all (gzip), so ignoring it is safe */
};

struct bl_unsupported {
    const char *name;     /* directive name, or a prefix when it ends with '*' */
    int level;            /* enum bl_unsupported_level */
    const char *feature;  /* "TLS is", "rate and connection limits are" */
};

/* The entry for directive NAME with its arguments (a `map` of $http_upgrade is WebSocket),
 * or NULL when ballast has never heard of it. */
const struct bl_unsupported *bl_unsupported_directive(const char *name, char *const *args,
                                                      int nargs);

/* The entry for a `listen` parameter this build lacks ("ssl", "http2", "proxy_protocol",
 * "so_keepalive=..."), or NULL. */
const struct bl_unsupported *bl_unsupported_listen_param(const char *param);

/* Formats the message for ENTRY about WHAT (`"gzip" directive`, `"ssl" parameter of
 * "listen"`) into buf, without file:line: errors read "TLS is not supported in this build:
 * "ssl" parameter of "listen"", warnings "compression is not supported in this build, "gzip"
 * directive ignored". */
void bl_unsupported_format(const struct bl_unsupported *entry, const char *what, char *buf,
                           size_t len);

#endif
