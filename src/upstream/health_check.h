/* Active health checks: nginx_upstream_check_module's directives and a checker that probes every
 * server of every group that has `check` from the control thread's loop.
 *
 * Directives (upstream block), as the module spells them:
 *   check interval=MS rise=N fall=N timeout=MS type=tcp|http|redis|mysql
 *         [default_down=true|false] [port=N] [role=master] [send="BYTES"] [expect="TEXT|~RE"]
 *         [ssl];
 *   check_http_send "RAW REQUEST";            default "GET / HTTP/1.0\r\n\r\n"
 *   check_http_expect_alive http_2xx ...;     http_1xx..http_5xx; default http_2xx http_3xx
 *   check_http_expect_body "SUBSTRING";       ballast's addition; default: body not checked
 * Times: a bare number is milliseconds (the module's unit), or nginx units ("3s", "500ms",
 * "1m30s"). Defaults: interval=30000 rise=2 fall=5 timeout=1000 type=tcp port=0 (the server's
 * own port).
 *
 * default_down defaults to FALSE in ballast (the module's default is true): a fresh start or a
 * restart then serves at once, and a dead server is taken out after `fall` failed checks,
 * instead of answering 503 for rise x interval until the first checks pass. default_down=true
 * restores the module's behaviour for servers that must prove themselves first.
 *
 * A probe opens a fresh connection (nothing is shared with client traffic). tcp: success is a
 * connect that completes within timeout. http: send check_http_send, read at most the first
 * 16 KiB of the response (head included), parse it with the project's strict h1 parser;
 * success is a status whose class is in expect_alive and, when check_http_expect_body is set,
 * a body (within those 16 KiB; chunked framing removed) that contains the substring. The body
 * is read only when it is to be matched, up to Content-Length, the end of the chunked body,
 * the server's close, or the cap. The timeout covers the whole probe (connect, send, answer).
 *
 * Protocol probes (ballast's, for HAProxy's redis-check / mysql-check / tcp-check use cases;
 * the answer is read into the same 16 KiB buffer and judged by bl_check_proto_judge()):
 *   type=redis: sends "PING\r\n" (and "INFO replication\r\n" with role=master, pipelined);
 *     success is "+PONG" and, with role=master, an INFO bulk reply containing "role:master".
 *     "-NOAUTH" (a password is set) fails with the reason "redis requires AUTH".
 *   type=mysql: reads the server's first packet; success is a handshake v10 packet (sequence
 *     0, protocol byte 10, a NUL-terminated version, the filler byte 0); an error packet (0xff,
 *     e.g. "Too many connections") fails with its message. Nothing is sent: the probe closes
 *     before logging in (the server counts an aborted connect; see docs).
 *   type=tcp with send= and/or expect=: sends the bytes after connect, then (with expect=)
 *     reads until the answer contains expect (a substring, or a PCRE2 regex after "~"), the
 *     server closes, the buffer is full or the timeout passes. send= without expect= passes
 *     once everything is sent.
 *
 * ssl (ballast's addition, as nginx Plus's health checks of an https upstream): a TLS
 * handshake follows the connect (no SNI, the certificate not verified), and the http exchange
 * goes over it; a failed handshake is a failed check with OpenSSL's reason.
 */
#ifndef BL_UPSTREAM_HEALTH_CHECK_H
#define BL_UPSTREAM_HEALTH_CHECK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/upstream.h"

struct bl_loop;

enum bl_check_type {
    BL_CHECK_TCP = 0,       /* connect only */
    BL_CHECK_HTTP = 1,      /* request, status class, optional body substring */
    BL_CHECK_REDIS = 2,     /* PING -> +PONG; with role=master, INFO replication */
    BL_CHECK_MYSQL = 3,     /* the server's greeting: protocol 10, then close */
};

struct bl_regex;

/* bl_check_conf.expect_alive: one bit per accepted status class. */
#define BL_CHECK_ALIVE_1XX 0x02u
#define BL_CHECK_ALIVE_2XX 0x04u
#define BL_CHECK_ALIVE_3XX 0x08u
#define BL_CHECK_ALIVE_4XX 0x10u
#define BL_CHECK_ALIVE_5XX 0x20u

/* Bytes of a response an http check reads at most, head included. */
#define BL_CHECK_MAX_RESPONSE 16384u

/* One group's checks. Allocated by the first bl_check_parse* call for the group (which fills
 * in every default), owned by the group, freed with bl_check_conf_free(). Read-only once the
 * config is compiled. */
struct bl_check_conf {
    uint32_t interval_ms;   /* between probe starts; default 30000 */
    uint32_t timeout_ms;    /* whole probe; > 0; default 1000 (may exceed interval) */
    uint32_t rise;          /* consecutive successes that take a down server up; default 2 */
    uint32_t fall;          /* consecutive failures that take an up server down; default 5 */
    uint8_t type;           /* enum bl_check_type; default tcp */
    uint8_t default_down;   /* servers start down until `rise` successes; default 0 */
    uint16_t port;          /* probe this port instead of the server's; 0 = the server's */
    uint8_t ssl;            /* `ssl`: the probe speaks TLS after the connect (no certificate
                             * check); type=tcp succeeds on a completed handshake */
    char *http_send;        /* request sent as is (NUL-terminated copy); default set */
    uint32_t http_send_len;
    uint32_t expect_alive;  /* BL_CHECK_ALIVE_* bits; default 2xx | 3xx */
    char *expect_body;      /* substring the body must contain; NULL = not checked */
    uint32_t expect_body_len;
    /* type=redis role=master: INFO replication must say role:master. */
    uint8_t role_master;
    /* type=tcp send= / expect= (both optional; neither = connect only). */
    char *tcp_send;         /* bytes sent after connect, escapes resolved; NULL = none */
    uint32_t tcp_send_len;
    char *expect;           /* substring the answer must contain; NULL = not checked */
    uint32_t expect_len;
    struct bl_regex *expect_re;   /* expect="~REGEX" instead of a substring */
    /* Which directives were given, for bl_check_validate() and duplicate detection. */
    uint8_t check_set;
    uint8_t http_send_set;
    uint8_t expect_alive_set;
    uint8_t expect_body_set;
};

/* Parsers for the four directives. args are the directive's arguments without its name (quotes
 * removed, escapes resolved). *cc is allocated with defaults when NULL. Return BL_OK, or BL_ERR
 * with a message in err in nginx's words and without file:line (the caller appends it):
 *   invalid parameter "intervl=3000"            invalid value "abc" for "rise"
 *   "check" directive is duplicate             invalid number of arguments in "..." directive
 *   invalid value "http_6xx" in "check_http_expect_alive" directive      out of memory
 * Control thread (config compile). */
int bl_check_parse(struct bl_check_conf **cc, char *const *args, int nargs, char *err,
                   size_t errlen);
int bl_check_parse_http_send(struct bl_check_conf **cc, char *const *args, int nargs, char *err,
                             size_t errlen);
int bl_check_parse_expect_alive(struct bl_check_conf **cc, char *const *args, int nargs,
                                char *err, size_t errlen);
int bl_check_parse_expect_body(struct bl_check_conf **cc, char *const *args, int nargs,
                               char *err, size_t errlen);

/* Checks the group's directives together, once the upstream block is read: check_http_* needs
 * `check` and type=http; interval, timeout, rise and fall are > 0; the request ends its head
 * with an empty line. BL_OK, or BL_ERR with err filled (no file:line). cc may be NULL (OK). */
int bl_check_validate(const struct bl_check_conf *cc, char *err, size_t errlen);

void bl_check_conf_free(struct bl_check_conf *cc);

/* The bytes a probe of this conf sends after connect (http: check_http_send; redis: PING and
 * INFO; tcp: send=), with *len; NULL/0 when it sends nothing. */
const char *bl_check_request(const struct bl_check_conf *cc, uint32_t *len);

/* Whether the probe reads an answer (http, redis, mysql, tcp with expect=). */
int bl_check_reads(const struct bl_check_conf *cc);

/* Judges the answer received so far for redis, mysql and tcp expect= probes: BL_OK passed,
 * BL_ERR failed, BL_AGAIN needs more bytes. eof: the server closed (or the buffer is full: the
 * answer will not grow). why gets the outcome in words ("+PONG role:master", "redis requires
 * AUTH (-NOAUTH Authentication required.)"). Pure function, any thread. */
int bl_check_proto_judge(const struct bl_check_conf *cc, const char *data, size_t len, int eof,
                         char *why, size_t whylen);

/* The checker. */
struct bl_health;

/* Starts probing every server (backups too; `down` servers are skipped) of every group whose
 * check is set, on loop, which the caller runs on the control thread. Each server's first
 * probe is at a uniformly random point of its first interval, so a thousand servers are not
 * probed in the same millisecond; later probes start one interval after the previous start
 * (one probe in flight per server: a probe that outlasts its interval delays the next one to
 * the following slot).
 *
 * Verdicts go to s->state->check_down (atomic stores; workers read it with relaxed loads on
 * every pick, see bl_server_check_ok()); on down -> up also s->state->up_since_ms = now, so
 * slow_start ramps. Every transition is logged at notice with its reason.
 *
 * Reloads: a server whose state is checked by a checker still running when this one starts
 * (same bl_server_state, i.e. kept across the reload) keeps its verdict and its counters; a new
 * one starts at default_down. Servers of these groups that nobody checks any more have
 * check_down cleared. So start the new generation's checker, then stop the old one.
 *
 * Returns the checker (also when there is nothing to check), or NULL with err filled (out of
 * memory). Control thread; groups must outlive the checker. */
struct bl_health *bl_health_start(struct bl_loop *loop, struct bl_upstream_group **groups,
                                  uint32_t ngroups, char *err, size_t errlen);

/* Closes every probe and cancels its timers; the memory is released after the loop's current
 * batch (safe from inside any handler of the same loop). Verdicts already published stay as
 * they are. Call before destroying the loop. NULL is a no-op. Control thread. */
void bl_health_stop(struct bl_health *h);

/* Whether active checks allow server s: 1 unless its last `fall` checks failed (or it starts
 * down and has not yet passed `rise`). Any thread. */
static inline int bl_server_check_ok(const struct bl_upstream_server *s)
{
    return !atomic_load_explicit(&s->state->check_down, memory_order_relaxed);
}

#endif
