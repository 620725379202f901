/* Unit tests for the list of nginx features this build lacks (src/conf/unsupported.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf/unsupported.c"

#include "conf/conf.h"

static void test_lookup(void **state)
{
    (void)state;
    char *none[] = {NULL};
    assert_non_null(bl_unsupported_directive("gunzip", none, 0));
    assert_null(bl_unsupported_directive("gzip_static", none, 0)); /* http/static.c */
    assert_null(bl_unsupported_directive("expires", none, 0));
    assert_null(bl_unsupported_directive("gzip", none, 0)); /* http/gzip.c */
    assert_non_null(bl_unsupported_directive("ssl_stapling", none, 0));
    assert_non_null(bl_unsupported_directive("ssl_crl", none, 0));
    assert_null(bl_unsupported_directive("ssl_verify_client", none, 0)); /* conf/ssl.c */
    assert_null(bl_unsupported_directive("proxy_ssl_verify", none, 0));  /* conf/proxy_ssl.c */
    assert_non_null(bl_unsupported_directive("limit_rate", none, 0));
    assert_null(bl_unsupported_directive("limit_req_zone", none, 0)); /* src/policy/ */
    assert_null(bl_unsupported_directive("prox_pass", none, 0));
    char *ws[] = {"$http_upgrade", "$connection_upgrade"};
    assert_null(bl_unsupported_directive("map", ws, 2)); /* map is supported */
    assert_null(bl_unsupported_directive("geo", none, 0));           /* http/varblock.c */
    assert_null(bl_unsupported_directive("split_clients", none, 0));
    assert_null(bl_unsupported_listen_param("ssl")); /* TLS is supported (conf/ssl.c) */
    assert_non_null(bl_unsupported_listen_param("so_keepalive=on"));
    assert_null(bl_unsupported_listen_param("ipv6only=on"));
    assert_null(bl_unsupported_listen_param("sslx"));
}

static void test_format(void **state)
{
    (void)state;
    char buf[256];
    bl_unsupported_format(bl_unsupported_listen_param("quic"),
                          "\"quic\" parameter of \"listen\"", buf, sizeof(buf));
    assert_string_equal(buf, "HTTP/3 is not supported in this build: \"quic\" parameter of "
                             "\"listen\"");
    char *none[] = {NULL};
    bl_unsupported_format(bl_unsupported_directive("gunzip", none, 0), "\"gunzip\" directive",
                          buf, sizeof(buf));
    assert_string_equal(buf, "this compression is not supported in this build, \"gunzip\" "
                             "directive ignored");
}

/* A feature that lands takes its lines off the list: an entry that matches a directive of the
 * table would never be reached and would lie in README's "Not yet supported". */
static void test_no_entry_shadows_a_directive(void **state)
{
    (void)state;
    size_t count;
    const struct bl_directive_info *d = bl_conf_directives(&count);
    int shadowed = 0;
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; k < sizeof(directives) / sizeof(directives[0]); k++) {
            if (name_matches(directives[k].name, d[i].name)) {
                print_error("\"%s\" is implemented but listed as unsupported (\"%s\")\n",
                            d[i].name, directives[k].name);
                shadowed++;
            }
        }
    }
    assert_int_equal(shadowed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_no_entry_shadows_a_directive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
