/* The response cache's request side (http/proxy_cache.c): the stored head a 304 updates
 * (RFC 9111 3.2 and 4.3.4): which fields are replaced, which are kept, what is added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert_eq.h"
#include "http/proxy_cache.c"

static struct bl_h1_message *parse(const char *head)
{
    /* the message first, so that free(m) frees its array too */
    struct with_fields {
        struct bl_h1_message m;
        struct bl_h1_header fields[BL_H1_MAX_HEADERS];
    } *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    struct bl_h1_message *m = &w->m;
    bl_h1_message_init(m, w->fields, BL_H1_MAX_HEADERS);
    struct bl_h1_parser p;
    bl_h1_parser_init_response(&p, 8192, 8192, 0);
    ASSERT_EQ(bl_h1_parse(&p, head, strlen(head), m), strlen(head));
    return m;
}

static void test_updated_head(void **state)
{
    (void)state;
    struct bl_h1_message *st = parse("HTTP/1.1 200 OK\r\nDate: old\r\nETag: \"a\"\r\n"
                                     "Cache-Control: max-age=1\r\nX-Version: 1\r\n"
                                     "Content-Encoding: gzip\r\nX-Kept: yes\r\n"
                                     "Set-Cookie: a\r\nset-cookie: b\r\n\r\n");
    struct bl_h1_message *nm = parse("HTTP/1.1 304 Not Modified\r\nDate: new\r\n"
                                     "cache-control: max-age=60\r\nX-Version: 2\r\n"
                                     "Content-Length: 0\r\nContent-Encoding: br\r\nAge: 5\r\n"
                                     "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                                     "SET-COOKIE: c\r\nX-New: 1\r\n\r\n");
    char out[1024];
    size_t n = updated_head(st, nm, out, sizeof(out));
    assert_true(n < sizeof(out));
    out[n] = 0;
    /* the stored status line, the untouched fields in order, then the 304's; framing, coding,
     * Age and hop-by-hop fields of the 304 are not taken; a name replaces all its fields */
    assert_string_equal(out, "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Encoding: gzip\r\n"
                             "X-Kept: yes\r\nDate: new\r\ncache-control: max-age=60\r\n"
                             "X-Version: 2\r\nSET-COOKIE: c\r\nX-New: 1\r\n\r\n");
    /* what does not fit says so */
    assert_true(updated_head(st, nm, out, 40) > 40);
    assert_true(updated_head(st, nm, out, n - 1) > n - 1);
    ASSERT_EQ(updated_head(st, nm, out, n), n);
    free(st);
    free(nm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_updated_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
