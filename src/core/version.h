/* ballast's version, for -v, the start-up line and `Server:` (server_tokens on). */
#ifndef BL_CORE_VERSION_H
#define BL_CORE_VERSION_H

#define BL_VERSION "0.1.0"

/* The Server field's value and the error page's signature: "ballast/0.1.0" with
 * server_tokens on, "ballast" with it off (nginx's "nginx/1.22.1" and "nginx"). */
#define BL_SERVER_TOKENS_ON "ballast/" BL_VERSION
#define BL_SERVER_TOKENS_OFF "ballast"

#endif
