/* TLS settings of a server block (ssl_* directives) and the OpenSSL contexts made from them.
 * The contexts belong to a config generation: built when the config is compiled (a reload
 * reads the certificates again), freed with it. Only the ticket keys are process-wide, so that
 * tickets issued before a reload still resume after it. Control thread, except where noted.
 */
#ifndef BL_CONF_SSL_H
#define BL_CONF_SSL_H

#include <stddef.h>
#include <stdint.h>

struct bl_listen;
struct bl_server_block;

/* bl_ssl_conf.protocols */
#define BL_SSL_TLSV1   0x1u
#define BL_SSL_TLSV1_1 0x2u
#define BL_SSL_TLSV1_2 0x4u
#define BL_SSL_TLSV1_3 0x8u

/* bl_ssl_conf.cache */
enum bl_ssl_cache {
    BL_SSL_CACHE_UNSET = 0,
    BL_SSL_CACHE_OFF,               /* off: clients are told sessions are not reused */
    BL_SSL_CACHE_NONE,              /* none (nginx's default): nothing stored */
    BL_SSL_CACHE_ON,                /* builtin and/or shared: OpenSSL's cache of the context */
};

/* ssl_conf_command / proxy_ssl_conf_command lines: OpenSSL configuration commands applied
 * to a context after every other setting (nginx's order). A level with lines of its own does
 * not inherit the lines above it. */
struct bl_ssl_cmds {
    char **args;                    /* NAME, VALUE, NAME, VALUE, ... (owned) */
    uint32_t n;                     /* commands (args holds 2n strings) */
    const char *file;               /* the first line, for errors */
    int line;
};

/* Adds one NAME VALUE. BL_OK or BL_ERR (out of memory). */
int bl_ssl_cmds_add(struct bl_ssl_cmds *c, const char *name, const char *value,
                    const char *file, int line);
/* Copies from into c when c has none. */
void bl_ssl_cmds_inherit(struct bl_ssl_cmds *c, const struct bl_ssl_cmds *from);
/* Applies the commands to ctx (an SSL_CTX *; server: a server context, else a client one).
 * BL_OK, or BL_ERR with err naming the command and the line (an unknown command or a bad
 * value: OpenSSL's reason). */
int bl_ssl_cmds_apply(const struct bl_ssl_cmds *c, void *ctx, int server, char *err,
                      size_t errlen);
void bl_ssl_cmds_free(struct bl_ssl_cmds *c);

/* One level's settings (http or server); a server inherits what it does not set. Strings are
 * owned; 0 / NULL / UINT64_MAX mean unset. */
struct bl_ssl_conf {
    char **certs, **keys;           /* ssl_certificate / ssl_certificate_key, in order: the
                                     * i-th key belongs to the i-th certificate */
    const char **cert_files, **key_files; /* where each line is, for errors */
    int *cert_lines, *key_lines;
    uint32_t ncerts, nkeys;
    uint32_t protocols;             /* BL_SSL_TLSV* bits */
    char *ciphers;
    char *ecdh_curve;
    char *dhparam;
    const char *dhparam_file;
    int dhparam_line;
    uint64_t session_timeout;       /* ms */
    uint64_t cache_size;            /* sessions (0: OpenSSL's default) */
    uint8_t cache;                  /* enum bl_ssl_cache */
    uint8_t prefer_server_ciphers;  /* 0 unset, 1 off, 2 on */
    uint8_t tickets;                /* 0 unset, 1 off, 2 on */
    /* Client certificates (mTLS to clients) */
    uint8_t verify_client;          /* enum bl_ssl_verify: 0 unset */
    uint32_t verify_depth;          /* ssl_verify_depth + 1; 0 unset (default 1) */
    char *client_cert;              /* ssl_client_certificate: trusted and sent as the list
                                     * of acceptable CAs */
    char *trusted_cert;             /* ssl_trusted_certificate: trusted, not sent */
    const char *client_cert_file, *trusted_cert_file, *verify_file;
    int client_cert_line, trusted_cert_line, verify_line;
    struct bl_ssl_cmds cmds;        /* ssl_conf_command lines */
};

/* bl_ssl_conf.verify_client: ssl_verify_client's value */
enum bl_ssl_verify {
    BL_SSL_VERIFY_UNSET = 0,
    BL_SSL_VERIFY_OFF,              /* no certificate asked for (the default) */
    BL_SSL_VERIFY_ON,               /* a valid certificate is required: 400 otherwise */
    BL_SSL_VERIFY_OPTIONAL,         /* asked for; none is fine, an invalid one is not */
    BL_SSL_VERIFY_OPTIONAL_NO_CA,   /* asked for; an unknown CA is fine too */
};

/* "on" -> 2, "off" -> 1 into *out (0 stays "not set here", for inheritance); BL_ERR for any
 * other word. Shared by the ssl_* and proxy_ssl_* flags. */
int bl_ssl_flag(const char *v, uint8_t *out);

/* ssl_protocols / proxy_ssl_protocols: the BL_SSL_TLSV* bits of args into *out; BL_ERR with
 * a message naming the directive `name` for SSLv2/SSLv3 (refused, insecure) or a bad word. */
int bl_ssl_protocols(const char *name, char *const *args, int nargs, uint32_t *out, char *err,
                     size_t errlen);

/* Sets one ssl_* directive from its arguments into sc. BL_OK, or BL_ERR with a message
 * (without the file:line, which the caller adds) in err. file and line are the directive's. */
int bl_ssl_conf_set(struct bl_ssl_conf *sc, const char *name, char *const *args, int nargs,
                    const char *file, int line, char *err, size_t errlen);

/* Fills what s does not set from parent (the http level), then the defaults. */
void bl_ssl_conf_merge(struct bl_ssl_conf *s, const struct bl_ssl_conf *parent);

/* Makes the context of each server block that an ssl listener serves (s->ssl_ctx), reading
 * the certificates and keys: a missing file or a key that does not match its certificate is
 * an error naming the directive's file:line; an expired certificate is a warning. BL_OK or
 * BL_ERR with err set. */
int bl_ssl_build(struct bl_server_block **servers, uint32_t nservers, struct bl_listen *listens,
                 uint32_t nlistens, char *err, size_t errlen);

void bl_ssl_conf_free(struct bl_ssl_conf *sc);
/* Frees the context (an SSL_CTX *; NULL is fine). */
void bl_ssl_ctx_free(void *ctx);

/* Set once at start by the HTTP layer: picks the server block for an SNI name on a listener
 * (the same rule as Host). Called by OpenSSL on a worker thread during a handshake. */
extern const struct bl_server_block *(*bl_ssl_pick_server)(const struct bl_listen *l,
                                                           const char *name, size_t len);

/* The index of the SSL ex-data slot holding the connection's listener (struct bl_listen *),
 * which the SNI callback reads. Valid after the first bl_ssl_build(). */
extern int bl_ssl_listen_idx;

#endif
