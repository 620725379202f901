/* ssl_* settings and the OpenSSL server contexts made from them (conf/ssl.h).
 *
 * One SSL_CTX per server block on an ssl listener. A connection starts on its listener's
 * default server's context; the SNI callback moves it to the context of the server block that
 * the name picks (OpenSSL keeps the session cache of the first context, so one cache serves a
 * listener). An SSL_CTX is safe to share between threads: every worker uses the same one, and
 * OpenSSL's session cache inside it is locked, so `builtin` and `shared` are one cache shared by
 * all workers of the process.
 *
 * Session tickets: the keys are process-wide (they outlive a reload, as the issue asks) and
 * rotate every BL_TICKET_ROTATE_S; a ticket made with the previous key still decrypts and is
 * renewed. Rotation happens when a ticket is made or read after the period has passed, under a
 * lock taken only during handshakes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "conf/ssl.h"
#include "core/log.h"
#include "core/status.h"

#define BL_TICKET_ROTATE_S 3600

const struct bl_server_block *(*bl_ssl_pick_server)(const struct bl_listen *l, const char *name,
                                                    size_t len);
int bl_ssl_listen_idx = -1;

/* ------------------------------------------------------------ directives */

static int parse_time_ms(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return BL_ERR;
    uint64_t mul = 1000;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else if (strcmp(end, "d") == 0)
        mul = 86400000;
    else
        return BL_ERR;
    *ms = v * mul;
    return BL_OK;
}

static int parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return BL_ERR;
    if (*end == 'k' || *end == 'K')
        v *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024, end++;
    if (*end)
        return BL_ERR;
    *bytes = v;
    return BL_OK;
}

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return BL_ERR;
    free(*dst);
    *dst = s;
    return BL_OK;
}

static int push(struct bl_ssl_conf *sc, int key, const char *v, const char *file, int line)
{
    char ***list = key ? &sc->keys : &sc->certs;
    const char ***files = key ? &sc->key_files : &sc->cert_files;
    int **lines = key ? &sc->key_lines : &sc->cert_lines;
    uint32_t *n = key ? &sc->nkeys : &sc->ncerts;
    char **l = realloc(*list, (*n + 1) * sizeof(*l));
    if (!l)
        return BL_ERR;
    *list = l;
    const char **f = realloc(*files, (*n + 1) * sizeof(*f));
    if (!f)
        return BL_ERR;
    *files = f;
    int *ln = realloc(*lines, (*n + 1) * sizeof(*ln));
    if (!ln)
        return BL_ERR;
    *lines = ln;
    if (!(l[*n] = strdup(v)))
        return BL_ERR;
    f[*n] = file;
    ln[*n] = line;
    (*n)++;
    return BL_OK;
}

int bl_ssl_flag(const char *v, uint8_t *out)
{
    if (strcmp(v, "on") == 0)
        *out = 2;
    else if (strcmp(v, "off") == 0)
        *out = 1;
    else
        return BL_ERR;
    return BL_OK;
}

int bl_ssl_protocols(const char *name, char *const *args, int nargs, uint32_t *out, char *err,
                     size_t errlen)
{
    uint32_t p = 0;
    for (int i = 0; i < nargs; i++) {
        if (strcmp(args[i], "TLSv1") == 0)
            p |= BL_SSL_TLSV1;
        else if (strcmp(args[i], "TLSv1.1") == 0)
            p |= BL_SSL_TLSV1_1;
        else if (strcmp(args[i], "TLSv1.2") == 0)
            p |= BL_SSL_TLSV1_2;
        else if (strcmp(args[i], "TLSv1.3") == 0)
            p |= BL_SSL_TLSV1_3;
        else if (strcmp(args[i], "SSLv2") == 0 || strcmp(args[i], "SSLv3") == 0)
            return snprintf(err, errlen, "\"%s\" is not supported (insecure) in \"%s\" directive",
                            args[i], name),
                   BL_ERR;
        else
            return snprintf(err, errlen, "invalid value \"%s\" in \"%s\" directive", args[i],
                            name),
                   BL_ERR;
    }
    *out = p;
    return BL_OK;
}

int bl_ssl_conf_set(struct bl_ssl_conf *sc, const char *name, char *const *args, int nargs,
                    const char *file, int line, char *err, size_t errlen)
{
#define BAD(...) (snprintf(err, errlen, __VA_ARGS__), BL_ERR)
#define OOM() BAD("out of memory")
    if (strcmp(name, "ssl_certificate") == 0)
        return push(sc, 0, args[0], file, line) == BL_OK ? BL_OK : OOM();
    if (strcmp(name, "ssl_certificate_key") == 0)
        return push(sc, 1, args[0], file, line) == BL_OK ? BL_OK : OOM();
    if (strcmp(name, "ssl_protocols") == 0)
        return bl_ssl_protocols(name, args, nargs, &sc->protocols, err, errlen);
    if (strcmp(name, "ssl_ciphers") == 0)
        return set_str(&sc->ciphers, args[0]) == BL_OK ? BL_OK : OOM();
    if (strcmp(name, "ssl_ecdh_curve") == 0)
        return set_str(&sc->ecdh_curve, args[0]) == BL_OK ? BL_OK : OOM();
    if (strcmp(name, "ssl_dhparam") == 0) {
        sc->dhparam_file = file;
        sc->dhparam_line = line;
        return set_str(&sc->dhparam, args[0]) == BL_OK ? BL_OK : OOM();
    }
    if (strcmp(name, "ssl_prefer_server_ciphers") == 0)
        return bl_ssl_flag(args[0], &sc->prefer_server_ciphers) == BL_OK
                   ? BL_OK
                   : BAD("invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
                         args[0], name);
    if (strcmp(name, "ssl_session_tickets") == 0)
        return bl_ssl_flag(args[0], &sc->tickets) == BL_OK
                   ? BL_OK
                   : BAD("invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
                         args[0], name);
    if (strcmp(name, "ssl_session_timeout") == 0) {
        uint64_t ms;
        if (parse_time_ms(args[0], &ms) != BL_OK || ms < 1000)
            return BAD("invalid value \"%s\" in \"ssl_session_timeout\" directive", args[0]);
        sc->session_timeout = ms;
        return BL_OK;
    }
    if (strcmp(name, "ssl_session_cache") == 0) {
        uint64_t size = 0;
        uint8_t mode = 0;
        for (int i = 0; i < nargs; i++) {
            const char *a = args[i];
            if ((strcmp(a, "off") == 0 || strcmp(a, "none") == 0) && nargs == 1) {
                mode = a[0] == 'o' ? BL_SSL_CACHE_OFF : BL_SSL_CACHE_NONE;
            } else if (strcmp(a, "builtin") == 0) {
                mode = BL_SSL_CACHE_ON;
                size = size ? size : 20480; /* OpenSSL's and nginx's default */
            } else if (strncmp(a, "builtin:", 8) == 0) {
                uint64_t n;
                if (parse_size(a + 8, &n) != BL_OK || n == 0)
                    return BAD("invalid session cache size \"%s\" in \"ssl_session_cache\" "
                               "directive", a);
                mode = BL_SSL_CACHE_ON;
                size += n;
            } else if (strncmp(a, "shared:", 7) == 0) {
                const char *colon = strchr(a + 7, ':');
                uint64_t bytes;
                if (!colon || colon == a + 7 || parse_size(colon + 1, &bytes) != BL_OK ||
                    bytes < 8192)
                    return BAD("invalid session cache \"%s\" in \"ssl_session_cache\" directive",
                               a);
                /* nginx stores about 4000 sessions in a megabyte. */
                mode = BL_SSL_CACHE_ON;
                size += bytes / 256;
            } else {
                return BAD("invalid value \"%s\" in \"ssl_session_cache\" directive", a);
            }
        }
        sc->cache = mode;
        sc->cache_size = size;
        return BL_OK;
    }
    if (strcmp(name, "ssl_conf_command") == 0)
        return bl_ssl_cmds_add(&sc->cmds, args[0], args[1], file, line) == BL_OK ? BL_OK
                                                                                 : OOM();
    if (strcmp(name, "ssl_verify_client") == 0) {
        static const char *const modes[] = {"off", "on", "optional", "optional_no_ca"};
        for (int i = 0; i < 4; i++)
            if (strcmp(args[0], modes[i]) == 0) {
                sc->verify_client = (uint8_t)(BL_SSL_VERIFY_OFF + i);
                sc->verify_file = file;
                sc->verify_line = line;
                return BL_OK;
            }
        return BAD("invalid value \"%s\" in \"ssl_verify_client\" directive, it must be "
                   "\"on\", \"off\", \"optional\" or \"optional_no_ca\"", args[0]);
    }
    if (strcmp(name, "ssl_verify_depth") == 0) {
        char *end;
        long d = strtol(args[0], &end, 10);
        if (*end || end == args[0] || d < 0 || d > 100)
            return BAD("invalid value \"%s\" in \"ssl_verify_depth\" directive", args[0]);
        sc->verify_depth = (uint32_t)d + 1;
        return BL_OK;
    }
    if (strcmp(name, "ssl_client_certificate") == 0) {
        sc->client_cert_file = file;
        sc->client_cert_line = line;
        return set_str(&sc->client_cert, args[0]) == BL_OK ? BL_OK : OOM();
    }
    if (strcmp(name, "ssl_trusted_certificate") == 0) {
        sc->trusted_cert_file = file;
        sc->trusted_cert_line = line;
        return set_str(&sc->trusted_cert, args[0]) == BL_OK ? BL_OK : OOM();
    }
    return BAD("unknown directive \"%s\"", name);
#undef OOM
#undef BAD
}

static void dup_list(char ***dst, const char ***dfiles, int **dlines, uint32_t *dn,
                     char *const *src, const char *const *sfiles, const int *slines, uint32_t sn)
{
    /* Inherited lists are copied so that each level frees its own. */
    if (*dn || !sn)
        return;
    char **l = calloc(sn, sizeof(*l));
    const char **f = calloc(sn, sizeof(*f));
    int *ln = calloc(sn, sizeof(*ln));
    if (!l || !f || !ln) {
        free(l), free(f), free(ln);
        return; /* bl_ssl_build reports "no ssl_certificate" */
    }
    for (uint32_t i = 0; i < sn; i++) {
        l[i] = strdup(src[i]);
        f[i] = sfiles[i];
        ln[i] = slines[i];
    }
    *dst = l, *dfiles = f, *dlines = ln, *dn = sn;
}

static void inherit_str(char **dst, const char *src)
{
    if (!*dst && src)
        *dst = strdup(src);
}

void bl_ssl_conf_merge(struct bl_ssl_conf *s, const struct bl_ssl_conf *p)
{
    if (!s->ncerts && !s->nkeys) {
        dup_list(&s->certs, &s->cert_files, &s->cert_lines, &s->ncerts, p->certs, p->cert_files,
                 p->cert_lines, p->ncerts);
        dup_list(&s->keys, &s->key_files, &s->key_lines, &s->nkeys, p->keys, p->key_files,
                 p->key_lines, p->nkeys);
    }
    if (!s->protocols)
        s->protocols = p->protocols ? p->protocols : BL_SSL_TLSV1_2 | BL_SSL_TLSV1_3;
    inherit_str(&s->ciphers, p->ciphers);
    if (!s->ciphers)
        s->ciphers = strdup("HIGH:!aNULL:!MD5");
    inherit_str(&s->ecdh_curve, p->ecdh_curve);
    if (!s->dhparam && p->dhparam) {
        s->dhparam = strdup(p->dhparam);
        s->dhparam_file = p->dhparam_file;
        s->dhparam_line = p->dhparam_line;
    }
    if (!s->session_timeout)
        s->session_timeout = p->session_timeout ? p->session_timeout : 300000;
    if (!s->cache) {
        s->cache = p->cache ? p->cache : BL_SSL_CACHE_NONE;
        s->cache_size = p->cache_size;
    }
    if (!s->prefer_server_ciphers)
        s->prefer_server_ciphers = p->prefer_server_ciphers ? p->prefer_server_ciphers : 1;
    if (!s->tickets)
        s->tickets = p->tickets ? p->tickets : 2;
    if (!s->verify_client) {
        s->verify_client = p->verify_client ? p->verify_client : BL_SSL_VERIFY_OFF;
        s->verify_file = p->verify_file;
        s->verify_line = p->verify_line;
    }
    if (!s->verify_depth)
        s->verify_depth = p->verify_depth ? p->verify_depth : 2;
    bl_ssl_cmds_inherit(&s->cmds, &p->cmds);
    if (!s->client_cert && p->client_cert) {
        s->client_cert = strdup(p->client_cert);
        s->client_cert_file = p->client_cert_file;
        s->client_cert_line = p->client_cert_line;
    }
    if (!s->trusted_cert && p->trusted_cert) {
        s->trusted_cert = strdup(p->trusted_cert);
        s->trusted_cert_file = p->trusted_cert_file;
        s->trusted_cert_line = p->trusted_cert_line;
    }
}

static const char *ssl_reason(void);

int bl_ssl_cmds_add(struct bl_ssl_cmds *c, const char *name, const char *value,
                    const char *file, int line)
{
    char **a = realloc(c->args, (c->n + 1) * 2 * sizeof(*a));
    if (!a)
        return BL_ERR;
    c->args = a;
    a[c->n * 2] = strdup(name);
    a[c->n * 2 + 1] = strdup(value);
    if (!c->n) {
        c->file = file;
        c->line = line;
    }
    c->n++;
    return a[c->n * 2 - 2] && a[c->n * 2 - 1] ? BL_OK : BL_ERR;
}

void bl_ssl_cmds_inherit(struct bl_ssl_cmds *c, const struct bl_ssl_cmds *from)
{
    if (c->n || !from)
        return;
    for (uint32_t i = 0; i < from->n; i++)
        if (bl_ssl_cmds_add(c, from->args[2 * i], from->args[2 * i + 1], from->file,
                            from->line) != BL_OK)
            return; /* out of memory: fewer commands, as with any inherited string */
}

int bl_ssl_cmds_apply(const struct bl_ssl_cmds *c, void *ctx, int server, char *err,
                      size_t errlen)
{
    if (!c->n)
        return BL_OK;
    SSL_CONF_CTX *cc = SSL_CONF_CTX_new();
    if (!cc) {
        snprintf(err, errlen, "SSL_CONF_CTX_new() failed");
        return BL_ERR;
    }
    SSL_CONF_CTX_set_flags(cc, SSL_CONF_FLAG_FILE | SSL_CONF_FLAG_CERTIFICATE |
                                   SSL_CONF_FLAG_SHOW_ERRORS |
                                   (server ? SSL_CONF_FLAG_SERVER : SSL_CONF_FLAG_CLIENT));
    SSL_CONF_CTX_set_ssl_ctx(cc, ctx);
    int rc = BL_OK;
    for (uint32_t i = 0; i < c->n && rc == BL_OK; i++) {
        ERR_clear_error();
        if (SSL_CONF_cmd(cc, c->args[2 * i], c->args[2 * i + 1]) <= 0) {
            snprintf(err, errlen, "SSL_CONF_cmd(\"%s\", \"%s\") failed (%s) in %s:%d",
                     c->args[2 * i], c->args[2 * i + 1], ssl_reason(), c->file, c->line);
            rc = BL_ERR;
        }
    }
    if (rc == BL_OK && SSL_CONF_CTX_finish(cc) != 1) {
        snprintf(err, errlen, "SSL_CONF_CTX_finish() failed (%s) in %s:%d", ssl_reason(),
                 c->file, c->line);
        rc = BL_ERR;
    }
    SSL_CONF_CTX_free(cc);
    return rc;
}

void bl_ssl_cmds_free(struct bl_ssl_cmds *c)
{
    for (uint32_t i = 0; i < c->n * 2; i++)
        free(c->args[i]);
    free(c->args);
    memset(c, 0, sizeof(*c));
}

void bl_ssl_conf_free(struct bl_ssl_conf *sc)
{
    for (uint32_t i = 0; i < sc->ncerts; i++)
        free(sc->certs[i]);
    for (uint32_t i = 0; i < sc->nkeys; i++)
        free(sc->keys[i]);
    free(sc->certs), free(sc->keys);
    free(sc->cert_files), free(sc->key_files);
    free(sc->cert_lines), free(sc->key_lines);
    free(sc->ciphers), free(sc->ecdh_curve), free(sc->dhparam);
    free(sc->client_cert), free(sc->trusted_cert);
    bl_ssl_cmds_free(&sc->cmds);
    memset(sc, 0, sizeof(*sc));
}

void bl_ssl_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* ------------------------------------------------------------ session tickets */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key ticket_keys[2]; /* [0] current, [1] previous */
static time_t ticket_made;                /* when [0] was made; 0: none yet */

/* Under ticket_lock: a new current key when the period has passed. */
static int ticket_rotate(void)
{
    time_t now = time(NULL);
    if (ticket_made && now - ticket_made < BL_TICKET_ROTATE_S)
        return BL_OK;
    struct ticket_key k;
    if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1)
        return BL_ERR;
    ticket_keys[1] = ticket_made ? ticket_keys[0] : k;
    ticket_keys[0] = k;
    ticket_made = now;
    return BL_OK;
}

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int rc = 1;
    pthread_mutex_lock(&ticket_lock);
    if (ticket_rotate() != BL_OK) {
        pthread_mutex_unlock(&ticket_lock);
        return -1;
    }
    if (enc || memcmp(name, ticket_keys[0].name, 16) == 0) {
        k = ticket_keys[0];
    } else if (memcmp(name, ticket_keys[1].name, 16) == 0) {
        k = ticket_keys[1];
        rc = 2; /* still good, but issue a ticket under the current key */
    } else {
        pthread_mutex_unlock(&ticket_lock);
        return 0; /* unknown key: a full handshake */
    }
    pthread_mutex_unlock(&ticket_lock);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
            EVP_MAC_CTX_set_params(hctx, params) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
               EVP_MAC_CTX_set_params(hctx, params) != 1) {
        rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ------------------------------------------------------------ contexts */

static int sni_cb(SSL *s, int *alert, void *arg)
{
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    const struct bl_listen *l = SSL_get_ex_data(s, bl_ssl_listen_idx);
    const struct bl_server_block *(*pick)(const struct bl_listen *, const char *, size_t) =
        __atomic_load_n(&bl_ssl_pick_server, __ATOMIC_RELAXED);
    if (!name || !l || !pick)
        return SSL_TLSEXT_ERR_NOACK;
    const struct bl_server_block *srv = pick(l, name, strlen(name));
    if (srv && srv->ssl_ctx && srv->ssl_ctx != SSL_get_SSL_CTX(s)) {
        SSL_CTX *ctx = srv->ssl_ctx;
        /* SSL_set_SSL_CTX takes the certificates; the options are added as nginx does. */
        SSL_set_SSL_CTX(s, ctx);
        SSL_set_options(s, SSL_CTX_get_options(ctx));
        /* ... and ssl_verify_client: SSL_set_SSL_CTX leaves the verify mode as it was. */
        SSL_set_verify(s, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
        SSL_set_verify_depth(s, SSL_CTX_get_verify_depth(ctx));
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN: h2 first where the address offers HTTP/2 (the server's preference decides, as in
 * nginx), else http/1.1; a client that names neither goes on without ALPN, as HTTP/1.1. */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    static const unsigned char h2[] = "\x02h2\x08http/1.1";
    static const unsigned char h1[] = "\x08http/1.1";
    const struct bl_listen *l = SSL_get_ex_data(s, bl_ssl_listen_idx);
    int http2 = l && bl_listen_http2(l);
    const unsigned char *srv = http2 ? h2 : h1;
    unsigned int srvlen = http2 ? sizeof(h2) - 1 : sizeof(h1) - 1;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, srv, srvlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static const char *ssl_reason(void)
{
    static __thread char buf[256];
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

/* The verdict on a client certificate is read per request (http/tls.c), as nginx does, so
 * that a missing or bad one gets its 400 page and a log line rather than a failed handshake. */
static int verify_accept(int ok, X509_STORE_CTX *x)
{
    (void)ok, (void)x;
    return 1;
}

/* ssl_verify_client and the certificates it trusts. */
static int client_verify(struct bl_server_block *s, SSL_CTX *ctx, char *err, size_t errlen)
{
    struct bl_ssl_conf *sc = &s->ssl;
    if (sc->verify_client == BL_SSL_VERIFY_OFF)
        return BL_OK;
    if (!sc->client_cert && !sc->trusted_cert &&
        sc->verify_client != BL_SSL_VERIFY_OPTIONAL_NO_CA) {
        snprintf(err, errlen, "no ssl_client_certificate for ssl_verify_client in %s:%d",
                 sc->verify_file, sc->verify_line);
        return BL_ERR;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
    SSL_CTX_set_verify_depth(ctx, (int)sc->verify_depth - 1);
    if (sc->client_cert) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(sc->client_cert);
        if (!names || SSL_CTX_load_verify_locations(ctx, sc->client_cert, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(err, errlen, "cannot load client certificates \"%s\" (%s) in %s:%d",
                     sc->client_cert, ssl_reason(), sc->client_cert_file, sc->client_cert_line);
            return BL_ERR;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (sc->trusted_cert && SSL_CTX_load_verify_locations(ctx, sc->trusted_cert, NULL) != 1) {
        snprintf(err, errlen, "cannot load trusted certificates \"%s\" (%s) in %s:%d",
                 sc->trusted_cert, ssl_reason(), sc->trusted_cert_file, sc->trusted_cert_line);
        return BL_ERR;
    }
    return BL_OK;
}

static int build_one(struct bl_server_block *s, char *err, size_t errlen)
{
    struct bl_ssl_conf *sc = &s->ssl;
    if (!sc->ncerts) {
        snprintf(err, errlen, "no \"ssl_certificate\" is defined for the server listening on an "
                              "ssl port in %s:%d", s->file, s->line);
        return BL_ERR;
    }
    if (sc->nkeys != sc->ncerts) {
        snprintf(err, errlen, "no \"ssl_certificate_key\" is defined for certificate \"%s\" in "
                              "%s:%d", sc->certs[sc->nkeys < sc->ncerts ? sc->nkeys : 0],
                 sc->cert_files[sc->nkeys < sc->ncerts ? sc->nkeys : 0],
                 sc->cert_lines[sc->nkeys < sc->ncerts ? sc->nkeys : 0]);
        return BL_ERR;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new() failed (%s)", ssl_reason());
        return BL_ERR;
    }
    s->ssl_ctx = ctx;
    ERR_clear_error();
    for (uint32_t i = 0; i < sc->ncerts; i++) {
        if (SSL_CTX_use_certificate_chain_file(ctx, sc->certs[i]) != 1) {
            snprintf(err, errlen, "cannot load certificate \"%s\" (%s) in %s:%d", sc->certs[i],
                     ssl_reason(), sc->cert_files[i], sc->cert_lines[i]);
            return BL_ERR;
        }
        X509 *x = SSL_CTX_get0_certificate(ctx);
        if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
            bl_log(BL_LOG_WARN, "certificate \"%s\" has expired, in %s:%d", sc->certs[i],
                   sc->cert_files[i], sc->cert_lines[i]);
        if (SSL_CTX_use_PrivateKey_file(ctx, sc->keys[i], SSL_FILETYPE_PEM) != 1) {
            snprintf(err, errlen, "cannot load certificate key \"%s\" (%s) in %s:%d",
                     sc->keys[i], ssl_reason(), sc->key_files[i], sc->key_lines[i]);
            return BL_ERR;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "certificate key \"%s\" does not match certificate \"%s\" (%s) "
                                  "in %s:%d", sc->keys[i], sc->certs[i], ssl_reason(),
                     sc->key_files[i], sc->key_lines[i]);
            return BL_ERR;
        }
    }
    long opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_SSLv3;
    if (!(sc->protocols & BL_SSL_TLSV1))
        opts |= SSL_OP_NO_TLSv1;
    if (!(sc->protocols & BL_SSL_TLSV1_1))
        opts |= SSL_OP_NO_TLSv1_1;
    if (!(sc->protocols & BL_SSL_TLSV1_2))
        opts |= SSL_OP_NO_TLSv1_2;
    if (!(sc->protocols & BL_SSL_TLSV1_3))
        opts |= SSL_OP_NO_TLSv1_3;
    if (sc->prefer_server_ciphers == 2)
        opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (sc->tickets == 1)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_options(ctx, (uint64_t)opts);
    /* Writes resume from where they stopped with whatever buffer holds the bytes now. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, sc->ciphers) != 1) {
        snprintf(err, errlen, "invalid \"ssl_ciphers\" \"%s\" (%s) in %s:%d", sc->ciphers,
                 ssl_reason(), s->file, s->line);
        return BL_ERR;
    }
    if (sc->ecdh_curve && strcmp(sc->ecdh_curve, "auto") != 0 &&
        SSL_CTX_set1_groups_list(ctx, sc->ecdh_curve) != 1) {
        snprintf(err, errlen, "invalid \"ssl_ecdh_curve\" \"%s\" (%s) in %s:%d", sc->ecdh_curve,
                 ssl_reason(), s->file, s->line);
        return BL_ERR;
    }
    if (sc->dhparam) {
        BIO *bio = BIO_new_file(sc->dhparam, "r");
        EVP_PKEY *dh = bio ? PEM_read_bio_Parameters(bio, NULL) : NULL;
        BIO_free(bio);
        if (!dh || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
            EVP_PKEY_free(dh);
            snprintf(err, errlen, "cannot load DH parameters \"%s\" (%s) in %s:%d", sc->dhparam,
                     ssl_reason(), sc->dhparam_file, sc->dhparam_line);
            return BL_ERR;
        }
    } else {
        SSL_CTX_set_dh_auto(ctx, 1);
    }
    if (client_verify(s, ctx, err, errlen) != BL_OK)
        return BL_ERR;
    /* A session made where no certificate was asked for must not resume where one is: a
     * server block that verifies has a session context of its own. */
    char sid_ctx[32];
    int sid_len = sc->verify_client == BL_SSL_VERIFY_OFF
                      ? snprintf(sid_ctx, sizeof(sid_ctx), "ballast")
                      : snprintf(sid_ctx, sizeof(sid_ctx), "ballast-v%u", s->index);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid_ctx, (unsigned)sid_len);
    SSL_CTX_set_timeout(ctx, (long)(sc->session_timeout / 1000));
    if (sc->cache == BL_SSL_CACHE_ON) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        if (sc->cache_size)
            SSL_CTX_sess_set_cache_size(ctx, (long)sc->cache_size);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (sc->tickets == 2)
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    return bl_ssl_cmds_apply(&sc->cmds, ctx, 1, err, errlen);
}

int bl_ssl_build(struct bl_server_block **servers, uint32_t nservers, struct bl_listen *listens,
                 uint32_t nlistens, char *err, size_t errlen)
{
    if (bl_ssl_listen_idx < 0)
        bl_ssl_listen_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    for (uint32_t i = 0; i < nlistens; i++) {
        if (!listens[i].ssl)
            continue;
        for (uint32_t k = 0; k < listens[i].nservers; k++) {
            struct bl_server_block *s = listens[i].servers[k];
            if (!s->ssl_ctx && build_one(s, err, errlen) != BL_OK)
                return BL_ERR;
        }
    }
    (void)servers, (void)nservers;
    return BL_OK;
}
