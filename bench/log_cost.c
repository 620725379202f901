/* Nanoseconds the log and trace code adds to one request, without the network: one line of
 * `combined` and of a 13-field JSON format made for a realistic proxied request (what
 * bl_access_log_write() does before its buffered write), and a request's ids (request id,
 * traceparent parsed and written). Best of 7 runs of 200000 each, one thread.
 * Run: make bench-logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rand.h"
#include "core/status.h"
#include "http/h1_parser.h"
#include "http/template.h"
#include "http/trace.h"

/* Runs and iterations per run: 7 x 200000, or as given (./log_cost ROUNDS N: with valgrind
 * --tool=callgrind, 1 1000 counts instructions, which a shared machine does not disturb). */
static int N = 200000, ROUNDS = 7;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *REQ =
    "GET /api/v1/items/12345?fields=name,price&sort=asc HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n"
    "Accept: application/json\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Referer: https://shop.example.com/items?q=\"lamp\"\r\n"
    "Cookie: session=abc123; theme=dark\r\n"
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
    "\r\n";

static const char *COMBINED = "$remote_addr - $remote_user [$time_local] \"$request\" $status "
                              "$body_bytes_sent \"$http_referer\" \"$http_user_agent\"";
static const char *JSON =
    "{\"time\":\"$time_iso8601\",\"addr\":\"$remote_addr\",\"request\":\"$request\","
    "\"status\":$status,\"bytes\":$body_bytes_sent,\"referer\":\"$http_referer\","
    "\"agent\":\"$http_user_agent\",\"rt\":$request_time,\"upstream\":\"$upstream_addr\","
    "\"ustatus\":\"$upstream_status\",\"urt\":\"$upstream_response_time\","
    "\"uct\":\"$upstream_connect_time\",\"id\":\"$request_id\"}";

static volatile size_t sink;

static double run_format(const char *text, enum bl_escape esc, const struct bl_var_ctx *ctx)
{
    char err[128], out[4096];
    struct bl_template *t = bl_template_compile(text, err, sizeof(err));
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    double best = 1e18;
    for (int round = 0; round < ROUNDS; round++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++)
            sink += bl_template_eval_esc(t, ctx, esc, out, sizeof(out));
        double dt = (now_ns() - t0) / N;
        if (dt < best)
            best = dt;
    }
    bl_template_free(t);
    return best;
}

static double run_ids(const struct bl_h1_message *m)
{
    double best = 1e18;
    char id[32], span[16], tp[55];
    for (int round = 0; round < ROUNDS; round++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++) {
            /* what request_ids() and head_ids() do: scan the headers, make the ids, parse
             * the client's traceparent, write ours */
            const struct bl_h1_header *h = NULL;
            for (uint32_t k = 0; k < m->nheaders; k++)
                if (m->headers[k].name_len == 11 &&
                    strncasecmp(m->headers[k].name, "traceparent", 11) == 0)
                    h = &m->headers[k];
            bl_rand_hex(id, 16);
            bl_rand_hex(span, 8);
            struct bl_traceparent p;
            if (h && bl_traceparent_parse(h->value, h->value_len, &p) == BL_OK)
                bl_traceparent_format(tp, p.trace_id, span, p.flags);
            sink += (size_t)tp[3] + (size_t)id[0];
        }
        double dt = (now_ns() - t0) / N;
        if (dt < best)
            best = dt;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc == 3) {
        ROUNDS = atoi(argv[1]);
        N = atoi(argv[2]);
    }
    struct bl_h1_parser p;
    struct bl_h1_message m;
    memset(&m, 0, sizeof(m));
    bl_h1_parser_init_request(&p, 8192, 65536);
    if (bl_h1_parse(&p, REQ, strlen(REQ), &m) <= 0) {
        fprintf(stderr, "request did not parse\n");
        return 1;
    }
    struct bl_upstream_try tries[1] = {{"10.0.0.12:8080", 212, 1830, 2245, 200}};
    struct bl_var_resp resp = {.status = 200, .body_bytes_sent = 5120, .bytes_sent = 5400,
                               .request_length = 420, .request_time_us = 2390,
                               .tries = tries, .ntries = 1};
    struct bl_var_ctx ctx = {.req = &m, .client_ip = "198.51.100.23", .client_ip_len = 13,
                             .client_port = 51000, .server_port = 80, .fd = -1,
                             .request_id = "0af7651916cd43dd8448eb211c80319c",
                             .request_id_len = 32, .resp = &resp};
    char out[4096];
    char err[128];
    struct bl_template *t = bl_template_compile(JSON, err, sizeof(err));
    size_t n = bl_template_eval_esc(t, &ctx, BL_ESC_JSON, out, sizeof(out));
    bl_template_free(t);
    printf("json line (%zu bytes): %.*s\n", n, (int)n, out);
    printf("ns per request, best of %d x %d, one thread\n", ROUNDS, N);
    printf("combined line         %6.1f\n", run_format(COMBINED, BL_ESC_DEFAULT, &ctx));
    printf("json line (13 fields) %6.1f\n", run_format(JSON, BL_ESC_JSON, &ctx));
    printf("ids + traceparent     %6.1f\n", run_ids(&m));
    return 0;
}
