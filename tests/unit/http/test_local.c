/* Responses ballast makes itself (local.c), checked as produced: error pages, `return` with
 * text and redirects, error_page's internal redirect, keep-alive with an unread body (kept
 * when the proxy can drop it, refused otherwise),
 * HEAD, and files under `root` read chunk by chunk. Nothing is sent: the proxy's writer does
 * that. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/local.c"
#include "conf/conf.h"

static char root[64];
static struct bl_config *cfg;

struct fx {
    struct bl_client c;
    struct bl_request r;
    char raw[512];
};

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/bl-test-local-XXXXXX");
    assert_non_null(mkdtemp(root));
    char path[128];
    snprintf(path, sizeof(path), "%s/static", root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/static/dir", root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/static/a.txt", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("0123456789", f);
    fclose(f);

    char text[1024], err[256];
    snprintf(text, sizeof(text),
             "http { server { listen 127.0.0.1:18080;\n"
             "  error_page 404 /missing;\n"
             "  location = /missing { return 200 \"custom $uri\"; }\n"
             "  location /hello { return 200 \"hi $uri\"; }\n"
             "  location /moved { return 302 http://example.com$uri; }\n"
             "  location /gone { return 410; }\n"
             "  location /static/ { root %s; }\n"
             "  location / { }\n"
             "} }\n", root);
    cfg = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!cfg)
        fail_msg("config: %s", err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
    bl_conf_release(cfg);
    return 0;
}

/* A parsed, routed request as the proxy would hand it to local.c, with more header lines. */
static struct fx *request_with(const char *method, const char *path, int minor,
                               const char *fields)
{
    struct fx *f = calloc(1, sizeof(*f));
    int n = snprintf(f->raw, sizeof(f->raw), "%s %s HTTP/1.%d\r\nHost: t\r\n%s\r\n", method,
                     path, minor, fields);
    struct bl_request *r = &f->r;
    bl_h1_message_init(&r->msg, r->msg_fields, BL_REQ_FIELDS);
    bl_h1_message_init(&r->resp, r->resp_fields, BL_RESP_FIELDS);
    bl_h1_parser_init_request(&r->parser, 4096, 8192);
    assert_int_equal(bl_h1_parse(&r->parser, f->raw, (size_t)n, &r->msg), n);
    f->c.io.fd = -1;
    f->c.listen = &cfg->listens[0];
    memcpy(f->c.ip, "127.0.0.1", 10);
    f->c.ip_len = 9;
    r->c = &f->c;
    r->file_fd = -1;
    r->req_body_done = 1;
    r->keep_alive = r->msg.keep_alive;
    r->srv = bl_route_server(f->c.listen, r->msg.host, r->msg.host_len);
    r->upath = r->msg.path;
    r->upath_len = r->msg.path_len;
    r->loc = bl_route_location(r->srv, r->upath, r->upath_len);
    return f;
}

static struct fx *request(const char *method, const char *path, int minor)
{
    return request_with(method, path, minor, "");
}

static void fx_free(struct fx *f)
{
    if (f->r.file_fd >= 0)
        close(f->r.file_fd);
    bl_buf_put(f->r.out);
    free(f);
}

/* The produced bytes (head and body so far) as a string. */
static const char *out(struct fx *f)
{
    static char s[40000];
    struct bl_buf *b = f->r.out;
    assert_non_null(b);
    memcpy(s, b->data + f->r.out_sent, b->end - f->r.out_sent);
    s[b->end - f->r.out_sent] = '\0';
    return s;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" not in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (strstr(hay, needle))
        fail_msg("\"%s\" unexpectedly in:\n%s", needle, hay);
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_error_page_made_by_status(void **state)
{
    (void)state;
    struct fx *f = request("GET", "/gone", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    const char *s = out(f);
    assert_contains(s, "HTTP/1.1 410 Gone\r\n");
    assert_contains(s, "Content-Length: ");
    assert_contains(body_of(s), "410");
    assert_int_equal(f->r.status, 410);
    assert_int_equal(f->r.keep_alive, 1);
    assert_int_equal(f->r.out->start, 0);
    fx_free(f);
}

static void test_return_text_and_redirect(void **state)
{
    (void)state;
    struct fx *f = request("GET", "/hello/x", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    const char *s = out(f);
    assert_contains(s, "HTTP/1.1 200 OK\r\n");
    assert_contains(s, "Content-Length: 11\r\n");
    assert_string_equal(body_of(s), "hi /hello/x");
    assert_int_equal(f->r.body_bytes_sent, 11);
    fx_free(f);

    f = request("GET", "/moved/y", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    s = out(f);
    assert_contains(s, "HTTP/1.1 302 ");
    assert_contains(s, "Location: http://example.com/moved/y\r\n");
    assert_int_equal(f->r.status, 302);
    fx_free(f);
}

static void test_error_page_redirects_internally(void **state)
{
    (void)state;
    /* The location serves nothing: 404, which error_page sends to /missing with the status
     * kept. */
    struct fx *f = request("GET", "/nothing", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    const char *s = out(f);
    assert_contains(s, "HTTP/1.1 404 Not Found\r\n");
    assert_string_equal(body_of(s), "custom /nothing");
    assert_int_equal(f->r.error_page_done, 1);
    fx_free(f);
}

static void test_unread_body_closes(void **state)
{
    (void)state;
    struct fx *f = request("POST", "/gone", 1);
    f->r.req_body_done = 0;
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_int_equal(f->r.keep_alive, 0);
    assert_contains(out(f), "Connection: close\r\n");
    fx_free(f);

    /* a Content-Length rest of at most 1 MiB is dropped by the proxy after the answer (nginx's
     * discarded body): the connection stays */
    f = request_with("POST", "/hello/x", 1, "Content-Length: 5000\r\n");
    f->r.req_body_done = 0;
    f->r.req_left = 4900;
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_int_equal(f->r.keep_alive, 1);
    assert_lacks(out(f), "Connection: close\r\n");
    fx_free(f);
    f = request_with("POST", "/gone", 1, "Content-Length: 5000\r\n");
    f->r.req_body_done = 0;
    f->r.req_left = 5000;
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_int_equal(f->r.keep_alive, 1);
    fx_free(f);
    /* more than 1 MiB left, or a client waiting for 100 Continue: closed */
    f = request_with("POST", "/hello/x", 1, "Content-Length: 2000000\r\n");
    f->r.req_body_done = 0;
    f->r.req_left = 2000000;
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_int_equal(f->r.keep_alive, 0);
    assert_contains(out(f), "Connection: close\r\n");
    fx_free(f);
    f = request_with("POST", "/hello/x", 1, "Content-Length: 10\r\nExpect: 100-continue\r\n");
    f->r.req_body_done = 0;
    f->r.req_left = 10;
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_int_equal(f->r.keep_alive, 0);
    fx_free(f);

    f = request("GET", "/gone", 0); /* HTTP/1.0 with keep-alive is said explicitly */
    f->r.keep_alive = 1;
    assert_int_equal(bl_local_response(&f->r, 503, NULL, 0, NULL, 0), BL_OK);
    assert_contains(out(f), "Connection: keep-alive\r\n");
    assert_contains(out(f), "Retry-After: ");
    fx_free(f);
}

static void test_head_has_no_body(void **state)
{
    (void)state;
    struct fx *f = request("HEAD", "/hello/x", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    const char *s = out(f);
    assert_contains(s, "Content-Length: 11\r\n");
    assert_string_equal(body_of(s), "");
    assert_int_equal(f->r.body_bytes_sent, 0);
    fx_free(f);
}

static void test_static_file_in_chunks(void **state)
{
    (void)state;
    struct fx *f = request("GET", "/static/a.txt", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    const char *s = out(f);
    assert_contains(s, "HTTP/1.1 200 OK\r\n");
    assert_contains(s, "Content-Type: text/plain\r\n");
    assert_contains(s, "Content-Length: 10\r\n");
    assert_contains(s, "Last-Modified: ");
    assert_string_equal(body_of(s), ""); /* the body comes from the file */
    assert_true(f->r.file_fd >= 0);
    assert_int_equal(f->r.file_left, 10);
    f->r.out_sent = f->r.out->end; /* the writer sent the head */
    assert_int_equal(bl_static_next(&f->r), BL_OK);
    assert_string_equal(out(f), "0123456789");
    assert_int_equal(f->r.file_left, 0);
    assert_int_equal(f->r.body_bytes_sent, 10);
    assert_int_equal(bl_static_next(&f->r), BL_STATIC_DONE);
    fx_free(f);

    f = request("HEAD", "/static/a.txt", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_int_equal(f->r.file_fd, -1); /* nothing to send after the head */
    fx_free(f);
}

static void test_static_errors(void **state)
{
    (void)state;
    struct fx *f = request("GET", "/static/dir", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_contains(out(f), "HTTP/1.1 301 ");
    /* made absolute as nginx's absolute_redirect does: Host, then the port unless 80 */
    assert_contains(out(f), "Location: http://t:18080/static/dir/\r\n");
    fx_free(f);

    f = request("GET", "/static/none.txt", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    /* as nginx: a missing file is a 404 like any other, which error_page answers */
    assert_contains(out(f), "HTTP/1.1 404 ");
    assert_contains(out(f), "custom /static/none.txt");
    fx_free(f);

    f = request("POST", "/static/a.txt", 1);
    assert_int_equal(bl_local_serve(&f->r), BL_OK);
    assert_contains(out(f), "HTTP/1.1 405 ");
    assert_lacks(out(f), "custom"); /* error_page names 404 only */
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_page_made_by_status),
        cmocka_unit_test(test_return_text_and_redirect),
        cmocka_unit_test(test_error_page_redirects_internally),
        cmocka_unit_test(test_unread_body_closes),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_static_file_in_chunks),
        cmocka_unit_test(test_static_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
