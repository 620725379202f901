/* stream { } in the compiler: defaults, the stream level inherited by its servers, proxy_pass
 * to a group or to one address, listeners marked as stream's, and the errors (file:line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "core/status.h"

static struct bl_config *load(const char *text)
{
    char err[512] = "";
    struct bl_config *c = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!c)
        fail_msg("config did not load: %s", err);
    return c;
}

static void expect_error(const char *text, const char *want)
{
    char err[512] = "";
    struct bl_config *c = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (c) {
        bl_conf_release(c);
        fail_msg("expected error \"%s\", config loaded", want);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static void test_defaults_and_inheritance(void **state)
{
    (void)state;
    struct bl_config *c = load(
        "stream {\n"
        " proxy_timeout 30s;\n"
        " upstream db { server 127.0.0.1:5001; server 127.0.0.1:5002 backup; least_conn; }\n"
        " server { listen 127.0.0.1:6001; proxy_pass db; proxy_buffer_size 64k; }\n"
        " server { listen 127.0.0.1:6002 reuseport backlog=100; proxy_pass 127.0.0.1:5003;\n"
        "          proxy_next_upstream off; proxy_next_upstream_tries 2;\n"
        "          proxy_connect_timeout 500ms; proxy_next_upstream_timeout 3s; }\n"
        "}\n");
    assert_int_equal(c->nstream_servers, 2);
    const struct bl_stream_server *a = c->stream_servers[0], *b = c->stream_servers[1];
    assert_int_equal(a->conf.timeout, 30000);          /* from the stream level */
    assert_int_equal(a->conf.connect_timeout, 60000);  /* the table's default */
    assert_int_equal(a->conf.next_upstream, 1);
    assert_int_equal(a->conf.next_upstream_tries, 0);
    assert_int_equal(a->conf.next_upstream_timeout, 0);
    assert_int_equal(a->conf.buffer_size, 65536);
    assert_string_equal(a->upstream->name, "db");
    assert_int_equal(a->upstream->nservers, 2);
    assert_int_equal(b->conf.buffer_size, 16384);
    assert_int_equal(b->conf.timeout, 30000);
    assert_int_equal(b->conf.next_upstream, 0);
    assert_int_equal(b->conf.next_upstream_tries, 2);
    assert_int_equal(b->conf.connect_timeout, 500);
    assert_int_equal(b->conf.next_upstream_timeout, 3000);
    /* one address: a group of one that is never marked down (nginx) */
    assert_int_equal(b->upstream->nservers, 1);
    assert_int_equal(b->upstream->servers[0].max_fails, 0);
    assert_int_equal(c->nlistens, 2);
    assert_ptr_equal(c->listens[0].stream, a);
    assert_ptr_equal(c->listens[1].stream, b);
    assert_int_equal(c->listens[1].reuseport, 1);
    assert_int_equal(c->listens[1].backlog, 100);
    assert_int_equal(c->listens[0].nservers, 0);
    bl_conf_release(c);
}

/* PROXY protocol, rates, ssl_preread: defaults, the stream level inherited, http's sender. */
static void test_proxy_protocol_and_rates(void **state)
{
    (void)state;
    struct bl_config *c = load(
        "stream {\n"
        " proxy_protocol on; proxy_download_rate 200k;\n"
        " upstream a { server 127.0.0.1:5001; }\n"
        " map $ssl_preread_server_name $backend { default a; }\n"
        " server { listen 127.0.0.1:6001 proxy_protocol; proxy_pass a;\n"
        "          proxy_protocol_version 2; proxy_upload_rate 1m; set_real_ip_from 10.0.0.0/8;\n"
        "          proxy_protocol_timeout 5s; }\n"
        " server { listen 127.0.0.1:6002; proxy_pass $backend; ssl_preread on;\n"
        "          proxy_download_rate 0; }\n"
        "}\n"
        "http { server { listen 127.0.0.1:6003 proxy_protocol; real_ip_header proxy_protocol;\n"
        "  location / { proxy_protocol on; proxy_protocol_version 2;\n"
        "               proxy_pass http://127.0.0.1:5002; }\n"
        "  location /b { proxy_pass http://127.0.0.1:5002; } } }\n");
    const struct bl_stream_server *a = c->stream_servers[0], *b = c->stream_servers[1];
    assert_int_equal(c->listens[0].proxy_protocol, 1);
    assert_int_equal(c->listens[1].proxy_protocol, 0);
    assert_int_equal(c->listens[2].proxy_protocol, 1);
    assert_int_equal(a->conf.pp_send, 1);
    assert_int_equal(a->conf.pp_version, 2);
    assert_int_equal(a->conf.pp_timeout, 5000);
    assert_int_equal(a->conf.upload_rate, 1 << 20);
    assert_int_equal(a->conf.download_rate, 200 << 10);
    assert_int_equal(a->conf.ssl_preread, 0);
    assert_int_equal(a->log.nrealip_from, 1);
    assert_int_equal(b->conf.pp_send, 1);          /* the stream level's */
    assert_int_equal(b->conf.pp_version, 1);       /* the default */
    assert_int_equal(b->conf.pp_timeout, 30000);
    assert_int_equal(b->conf.preread_timeout, 30000);
    assert_int_equal(b->conf.upload_rate, 0);
    assert_int_equal(b->conf.download_rate, 0);
    assert_int_equal(b->conf.ssl_preread, 1);
    assert_null(b->upstream);                      /* proxy_pass $backend: per session */
    assert_non_null(b->pass_tpl);
    const struct bl_server_block *h = c->servers[0];
    assert_int_equal(h->conf.real_ip_pp, 1);
    assert_int_equal(h->prefix[0]->conf.proxy_protocol + h->prefix[1]->conf.proxy_protocol, 1);
    for (uint32_t i = 0; i < h->nprefix; i++)
        if (h->prefix[i]->conf.proxy_protocol)
            assert_int_equal(h->prefix[i]->conf.proxy_protocol_version, 2);
        else
            assert_int_equal(h->prefix[i]->conf.proxy_protocol_version, 1);
    bl_conf_release(c);
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_protocol_version 3;\n }\n}\n", "invalid value \"3\"");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_upload_rate 1k;\n proxy_upload_rate 2k;\n }\n}\n",
                 "\"proxy_upload_rate\" directive is duplicate in t.conf:6");
    expect_error("http { server { listen 127.0.0.1:6001; location / {\n"
                 " proxy_protocol_version 1; proxy_protocol_version 2; } } }\n",
                 "\"proxy_protocol_version\" directive is duplicate in t.conf:2");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass $nothing;\n }\n}\n",
                 "unknown \"nothing\" variable");
}

static void test_beside_http(void **state)
{
    (void)state;
    struct bl_config *c = load(
        "http { upstream web { server 127.0.0.1:5001; }\n"
        " server { listen 127.0.0.1:6001; location / { proxy_pass http://web; } } }\n"
        "stream { upstream tcp { hash $remote_addr consistent; server 127.0.0.1:5002; }\n"
        " server { listen 127.0.0.1:6002; proxy_pass tcp; } }\n");
    assert_int_equal(c->nlistens, 2);
    assert_null(c->listens[0].stream);
    assert_non_null(c->listens[1].stream);
    assert_int_equal(c->ngroups, 2);
    assert_string_equal(c->stream_servers[0]->upstream->hash_key, "$remote_addr");
    bl_conf_release(c);
}

static void test_udp(void **state)
{
    (void)state;
    struct bl_config *c = load(
        "stream { proxy_responses 2;\n"
        " server { listen 127.0.0.1:6053 udp; listen 127.0.0.1:6053; proxy_pass 127.0.0.1:53; }\n"
        " server { listen 127.0.0.1:6054 udp reuseport; proxy_pass 127.0.0.1:53;\n"
        "  proxy_responses 0; proxy_requests 3; } }\n");
    assert_int_equal(c->nlistens, 3);
    assert_string_equal(c->listens[0].text, "127.0.0.1:6053 udp");
    assert_int_equal(c->listens[0].udp, 1);
    assert_string_equal(c->listens[1].text, "127.0.0.1:6053");
    assert_int_equal(c->listens[1].udp, 0);
    assert_int_equal(c->listens[2].reuseport, 1);
    assert_int_equal(c->stream_servers[0]->conf.responses, 2);      /* inherited */
    assert_int_equal(c->stream_servers[0]->conf.requests, 0);       /* default */
    assert_int_equal(c->stream_servers[1]->conf.responses, 0);
    assert_int_equal(c->stream_servers[1]->conf.requests, 3);
    bl_conf_release(c);

    c = load("stream { server { listen 127.0.0.1:6053 udp; proxy_pass 127.0.0.1:53; } }\n");
    assert_true(c->stream_servers[0]->conf.responses == BL_UDP_RESPONSES_ANY);
    bl_conf_release(c);

    expect_error("stream {\n server {\n listen 127.0.0.1:6001 udp;\n listen 127.0.0.1:6001 udp;\n"
                 " proxy_pass 127.0.0.1:1;\n }\n}\n",
                 "duplicate listen 127.0.0.1:6001 udp in t.conf:4");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001 udp proxy_protocol;\n"
                 " proxy_pass 127.0.0.1:1;\n }\n}\n",
                 "the PROXY protocol over UDP is not supported in this build");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001 udp;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_responses -1;\n }\n}\n", "invalid value \"-1\"");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001 udp;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_responses 1;\n proxy_responses 2;\n }\n}\n",
                 "\"proxy_responses\" directive is duplicate in t.conf:6");
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n }\n}\n",
                 "stream server block has no \"proxy_pass\" directive in t.conf:2");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " fastcgi_pass x;\n }\n}\n", "\"fastcgi_pass\" directive in t.conf:5");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_timeout 1s;\n proxy_timeout 2s;\n }\n}\n",
                 "\"proxy_timeout\" directive is duplicate in t.conf:6");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_next_upstream error;\n }\n}\n", "in t.conf:5");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass nowhere;\n }\n}\n",
                 "host not found in upstream \"nowhere\" in t.conf:4");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " }\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n }\n}\n",
                 "duplicate listen 127.0.0.1:6001 in t.conf:7");
    expect_error("http { upstream u { server 127.0.0.1:1; }\n"
                 " server { listen 127.0.0.1:6000; location / { proxy_pass http://u; } } }\n"
                 "stream {\n upstream u { server 127.0.0.1:2; }\n}\n",
                 "duplicate upstream \"u\" (http and stream share upstream names) in t.conf:4");
    expect_error("stream {\n upstream u { server 127.0.0.1:2; hash $http_host; }\n"
                 " server { listen 127.0.0.1:6001; proxy_pass u; }\n}\n",
                 "stream does not have");
    expect_error("stream {\n server {\n listen 127.0.0.1:6001;\n proxy_pass 127.0.0.1:1;\n"
                 " proxy_read_timeout 1s;\n }\n}\n",
                 "\"proxy_read_timeout\" directive is not allowed here in t.conf:5");
    expect_error("stream {\n access_log /dev/null;\n server {\n listen 127.0.0.1:6001;\n"
                 " proxy_pass 127.0.0.1:1;\n }\n}\n",
                 "\"access_log\" in stream needs a log_format name (stream has no default "
                 "format) in t.conf:2");
}

static void test_access_log_inherited(void **state)
{
    (void)state;
    struct bl_config *c = load(
        "stream {\n"
        " log_format l4 '$remote_addr $status';\n"
        " access_log /dev/null l4;\n"
        " server { listen 127.0.0.1:6001; proxy_pass 127.0.0.1:5001; }\n"
        " server { listen 127.0.0.1:6002; proxy_pass 127.0.0.1:5001; access_log off; }\n"
        "}\n");
    assert_int_equal(c->stream_servers[0]->log.naccess_logs, 1);
    assert_int_equal(c->stream_servers[1]->log.naccess_logs, 0);
    bl_conf_release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_inheritance),
        cmocka_unit_test(test_beside_http),
        cmocka_unit_test(test_proxy_protocol_and_rates),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_udp),
        cmocka_unit_test(test_access_log_inherited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
