/* Fuzz target: the admin API's JSON bodies and paths against a compiled config. Byte 0 picks
 * what the rest is: 0 a PATCH body for /api/upstreams/app/servers/1, 1 a POST body for
 * /api/upstreams/app/servers (its validation: adding goes through a reload, which is not
 * fuzzed here), 2 a "METHOD-DIGIT PATH\n" line, GET/HEAD/PATCH/PUT only, then a body. The
 * API.c is included to reach the POST validator without a reload. */
#include <stdlib.h>
#include <string.h>

#include "admin/api.c"
#include "fuzz.h"

static const char conf_text[] =
    "http {\n"
    "  upstream app {\n"
    "    server 127.0.0.1:9101;\n"
    "    server 127.0.0.1:9102 weight=3 max_conns=5;\n"
    "    server 127.0.0.1:9103 down backup;\n"
    "  }\n"
    "  upstream keyed { hash $request_uri; server 127.0.0.1:9201; server 127.0.0.1:9202; }\n"
    "  server { listen 127.0.0.1:18080; location / { proxy_pass http://app; } }\n"
    "}\n";

static struct bl_config *cfg;
static struct bl_stats_set *set;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[512] = "";
    cfg = bl_conf_load_string(conf_text, "fuzz.conf", err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "fuzz_admin: %s\n", err);
        exit(1);
    }
    set = bl_stats_create(1, cfg->nservers, cfg->nlocations, cfg->nupstream_servers,
                          cfg->nlistens);
    bl_process_stats_start();
    bl_log_level = BL_LOG_EMERG + 1; /* the API logs each change */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!cfg)
        LLVMFuzzerInitialize(NULL, NULL);
    static const int methods[] = {BL_H1_M_GET, BL_H1_M_HEAD, BL_H1_M_PATCH, BL_H1_M_PUT};
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    memcpy(body, data + 1, len);
    struct bl_api_response resp;
    memset(&resp, 0, sizeof(resp));
    struct bl_api_request rq = {.method = BL_H1_M_PATCH, .body = body, .body_len = len};
    struct bl_api_ctx ctx = {.cfg = cfg, .stats = set, .now_ms = 1000000};
    switch (data[0] % 3) {
    case 0:
        rq.path = "/api/upstreams/app/servers/1";
        rq.path_len = strlen(rq.path);
        bl_api_handle(&ctx, &rq, &resp);
        FUZZ_CHECK(resp.status == 200 || resp.status == 400);
        break;
    case 1: {
        char args[8][96];
        int nargs = 0;
        rq.method = BL_H1_M_POST;
        if (add_parse(&rq, cfg->groups[0], args, &nargs, &resp) == BL_OK) {
            FUZZ_CHECK(nargs >= 1 && nargs <= 8);
        } else {
            FUZZ_CHECK_EQ(resp.status, 400);
        }
        break;
    }
    default: {
        char *nl = memchr(body, '\n', len);
        if (!nl || nl == body)
            break;
        rq.method = methods[(unsigned char)body[0] % 4];
        rq.path = body + 1;
        rq.path_len = (size_t)(nl - body) - 1;
        rq.body = nl + 1;
        rq.body_len = len - (size_t)(nl + 1 - body);
        bl_api_handle(&ctx, &rq, &resp);
        FUZZ_CHECK(resp.status >= 200 && resp.status <= 599);
        break;
    }
    }
    bl_strbuf_free(&resp.body);
    free(body);
    return 0;
}
