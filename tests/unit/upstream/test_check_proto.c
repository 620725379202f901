/* Protocol-aware checks: parsing of type=redis|mysql, role=, send=, expect=, and the verdicts
 * of bl_check_proto_judge() on answers fed whole and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "upstream/health_check.h"

struct targs {
    char buf[512];
    char *v[16];
    int n;
};

/* Splits on spaces, as the config lexer does for bare words. */
static int parse(struct bl_check_conf **cc, const char *line, char *err, size_t errlen)
{
    static struct targs a;
    memset(&a, 0, sizeof(a));
    snprintf(a.buf, sizeof(a.buf), "%s", line);
    for (char *save = NULL, *t = strtok_r(a.buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        a.v[a.n++] = t;
    return bl_check_parse(cc, a.v, a.n, err, errlen);
}

static void expect_parse_error(const char *line, const char *want)
{
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    assert_int_equal(parse(&cc, line, err, sizeof(err)), BL_ERR);
    if (strstr(err, want) == NULL)
        print_error("got \"%s\" want \"%s\"\n", err, want);
    assert_non_null(strstr(err, want));
    assert_null(cc);
}

static void test_parse_types(void **state)
{
    (void)state;
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    assert_int_equal(parse(&cc, "interval=200 rise=1 fall=2 type=redis role=master", err,
                           sizeof(err)), BL_OK);
    assert_int_equal(cc->type, BL_CHECK_REDIS);
    assert_int_equal(cc->role_master, 1);
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
    uint32_t len;
    const char *req = bl_check_request(cc, &len);
    assert_int_equal(len, strlen("PING\r\nINFO replication\r\n"));
    assert_memory_equal(req, "PING\r\nINFO replication\r\n", len);
    bl_check_conf_free(cc);

    cc = NULL;
    assert_int_equal(parse(&cc, "type=mysql", err, sizeof(err)), BL_OK);
    assert_int_equal(cc->type, BL_CHECK_MYSQL);
    assert_null(bl_check_request(cc, &len));
    assert_true(bl_check_reads(cc));
    bl_check_conf_free(cc);

    /* The quoted value split at blanks by the lexer is joined back; \xHH resolved. */
    cc = NULL;
    assert_int_equal(parse(&cc, "type=tcp send=\"HELO a b\\x21\r\n\" expect=\"250\"", err,
                           sizeof(err)), BL_OK);
    assert_int_equal(cc->tcp_send_len, strlen("HELO a b!\r\n"));
    assert_memory_equal(cc->tcp_send, "HELO a b!\r\n", cc->tcp_send_len);
    assert_string_equal(cc->expect, "250");
    assert_null(cc->expect_re);
    assert_true(bl_check_reads(cc));
    bl_check_conf_free(cc);

    cc = NULL;
    assert_int_equal(parse(&cc, "type=tcp expect=~^\\+OK", err, sizeof(err)), BL_OK);
    assert_non_null(cc->expect_re);
    bl_check_conf_free(cc);

    /* Plain tcp reads nothing. */
    cc = NULL;
    assert_int_equal(parse(&cc, "type=tcp", err, sizeof(err)), BL_OK);
    assert_false(bl_check_reads(cc));
    bl_check_conf_free(cc);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("type=redis role=slave", "invalid value \"slave\" for \"role\"");
    expect_parse_error("type=http role=master", "\"role=master\" requires \"type=redis\"");
    expect_parse_error("type=redis send=\"x\"", "\"send\" requires \"type=tcp\"");
    expect_parse_error("type=tcp send=\"never closed", "for \"send\"");
    expect_parse_error("type=tcp expect=\"\"", "for \"expect\"");
    expect_parse_error("type=tcp expect=~(a", "invalid \"expect\"");
    expect_parse_error("type=tcp send=a send=b", "duplicate parameter \"send\"");
    expect_parse_error("type=postgres", "invalid value \"postgres\" for \"type\"");
}

/* Feeds the answer one byte at a time (AGAIN until the verdict), then whole. */
static int judge_both(const struct bl_check_conf *cc, const char *data, size_t len, int eof,
                      char *why, size_t whylen)
{
    int rc = BL_AGAIN;
    for (size_t i = 1; i <= len && rc == BL_AGAIN; i++)
        rc = bl_check_proto_judge(cc, data, i, i == len ? eof : 0, why, whylen);
    int whole = bl_check_proto_judge(cc, data, len, eof, why, whylen);
    assert_int_equal(rc, whole);
    return whole;
}

static struct bl_check_conf *conf(const char *line)
{
    struct bl_check_conf *cc = NULL;
    char err[256];
    assert_int_equal(parse(&cc, line, err, sizeof(err)), BL_OK);
    return cc;
}

static void test_redis(void **state)
{
    (void)state;
    char why[128];
    struct bl_check_conf *ping = conf("type=redis");
    struct bl_check_conf *master = conf("type=redis role=master");
    assert_int_equal(judge_both(ping, "+PONG\r\n", 7, 0, why, sizeof(why)), BL_OK);
    assert_int_equal(judge_both(ping, "-NOAUTH Authentication required.\r\n", 34, 0, why,
                                sizeof(why)), BL_ERR);
    assert_string_equal(why, "redis requires AUTH (-NOAUTH Authentication required.)");
    assert_int_equal(judge_both(ping, "-LOADING x\r\n", 12, 0, why, sizeof(why)), BL_ERR);
    assert_int_equal(bl_check_proto_judge(ping, "+PO", 3, 1, why, sizeof(why)), BL_ERR);
    assert_int_equal(bl_check_proto_judge(ping, "", 0, 1, why, sizeof(why)), BL_ERR);
    assert_string_equal(why, "redis: closed without a reply");

    const char m[] = "+PONG\r\n$41\r\n# Replication\r\nrole:master\r\nconnected:0\r\n\r\n";
    assert_int_equal(judge_both(master, m, strlen(m), 0, why, sizeof(why)), BL_OK);
    assert_string_equal(why, "redis +PONG role:master");
    const char s[] = "+PONG\r\n$42\r\n# Replication\r\nrole:slave\r\nmaster_port:1\r\n\r\n";
    assert_int_equal(judge_both(master, s, strlen(s), 0, why, sizeof(why)), BL_ERR);
    assert_string_equal(why, "redis role:slave, not master");
    const char cut[] = "+PONG\r\n$400\r\n# Replication\r\n";
    assert_int_equal(bl_check_proto_judge(master, cut, strlen(cut), 0, why, sizeof(why)),
                     BL_AGAIN);
    assert_int_equal(bl_check_proto_judge(master, cut, strlen(cut), 1, why, sizeof(why)),
                     BL_ERR);
    const char noauth[] = "-NOAUTH Authentication required.\r\n-NOAUTH x\r\n";
    assert_int_equal(judge_both(master, noauth, strlen(noauth), 0, why, sizeof(why)), BL_ERR);
    bl_check_conf_free(ping);
    bl_check_conf_free(master);
}

static void test_mysql(void **state)
{
    (void)state;
    char why[128];
    struct bl_check_conf *cc = conf("type=mysql");
    /* protocol 10, "8.0.1\0", id, 8 bytes salt, filler 0, capabilities... */
    unsigned char g[64] = {0, 0, 0, 0, 10, '8', '.', '0', '.', '1', 0, 1, 0, 0, 0,
                           'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0, 0xff, 0xf7};
    size_t plen = 26 - 4;
    g[0] = (unsigned char)plen;
    assert_int_equal(judge_both(cc, (char *)g, 26, 0, why, sizeof(why)), BL_OK);
    assert_string_equal(why, "mysql greeting 8.0.1");
    g[23] = 1;                                   /* filler must be 0 */
    assert_int_equal(judge_both(cc, (char *)g, 26, 0, why, sizeof(why)), BL_ERR);
    g[23] = 0;
    g[4] = 9;
    assert_int_equal(judge_both(cc, (char *)g, 26, 0, why, sizeof(why)), BL_ERR);
    assert_string_equal(why, "mysql: protocol version 9, not 10");
    const char errp[] = "\x17\0\0\0\xff\x10\x04Too many connections";
    assert_int_equal(judge_both(cc, errp, sizeof(errp) - 1, 0, why, sizeof(why)), BL_ERR);
    assert_string_equal(why, "mysql: error 1040: Too many connections");
    const char garbage[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
    assert_int_equal(bl_check_proto_judge(cc, garbage, strlen(garbage), 1, why, sizeof(why)),
                     BL_ERR);
    assert_int_equal(bl_check_proto_judge(cc, "\x05\0\0", 3, 1, why, sizeof(why)), BL_ERR);
    bl_check_conf_free(cc);
}

static void test_expect(void **state)
{
    (void)state;
    char why[128];
    struct bl_check_conf *sub = conf("type=tcp send=\"PING\r\n\" expect=\"+PONG\"");
    assert_int_equal(judge_both(sub, "+PONG\r\n", 7, 0, why, sizeof(why)), BL_OK);
    assert_int_equal(bl_check_proto_judge(sub, "-ERR\r\n", 6, 0, why, sizeof(why)), BL_AGAIN);
    assert_int_equal(bl_check_proto_judge(sub, "-ERR\r\n", 6, 1, why, sizeof(why)), BL_ERR);
    assert_string_equal(why, "expect mismatch (got \"-ERR??\")");
    struct bl_check_conf *re = conf("type=tcp expect=\"~^220 .*ESMTP\"");
    assert_int_equal(bl_check_proto_judge(re, "220 mx ESMTP\r\n", 14, 0, why, sizeof(why)),
                     BL_OK);
    assert_int_equal(bl_check_proto_judge(re, "554 no\r\n", 8, 1, why, sizeof(why)), BL_ERR);
    struct bl_check_conf *send_only = conf("type=tcp send=\"x\"");
    assert_false(bl_check_reads(send_only));
    bl_check_conf_free(sub);
    bl_check_conf_free(re);
    bl_check_conf_free(send_only);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_types),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_redis),
        cmocka_unit_test(test_mysql),
        cmocka_unit_test(test_expect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
