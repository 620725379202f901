/* Range fields and entity tags (http/range.c): nginx's range parser rules, every
 * cut of a valid field, the three date forms, If-Match / If-None-Match lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "assert_eq.h"
#include "http/range.h"

static int parse(const char *v, uint64_t size, struct bl_range *out, int *n)
{
    return bl_range_parse(v, strlen(v), size, out, 8, n);
}

static void test_single_ranges(void **state)
{
    (void)state;
    struct bl_range r[8];
    int n;
    ASSERT_EQ(parse("bytes=2-5", 20, r, &n), BL_RANGE_OK);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(r[0].first, 2);
    ASSERT_EQ(r[0].last, 5);
    ASSERT_EQ(parse("bytes=-3", 20, r, &n), BL_RANGE_OK);
    ASSERT_EQ(r[0].first, 17);
    ASSERT_EQ(r[0].last, 19);
    ASSERT_EQ(parse("bytes=-30", 20, r, &n), BL_RANGE_OK); /* more than the file: all of it */
    ASSERT_EQ(r[0].first, 0);
    ASSERT_EQ(r[0].last, 19);
    ASSERT_EQ(parse("bytes=15-", 20, r, &n), BL_RANGE_OK);
    ASSERT_EQ(r[0].first, 15);
    ASSERT_EQ(r[0].last, 19);
    ASSERT_EQ(parse("bytes=15-100", 20, r, &n), BL_RANGE_OK); /* clipped */
    ASSERT_EQ(r[0].last, 19);
    ASSERT_EQ(parse("BYTES= 1 - 2 ", 20, r, &n), BL_RANGE_OK); /* case and spaces, as nginx */
    ASSERT_EQ(r[0].first, 1);
    ASSERT_EQ(r[0].last, 2);
    /* a 10 GB file: offsets past 32 bits */
    ASSERT_EQ(parse("bytes=10737418230-", 10737418240ull, r, &n), BL_RANGE_OK);
    ASSERT_EQ(r[0].first, 10737418230ull);
    ASSERT_EQ(r[0].last, 10737418239ull);
}

static void test_multi_ranges(void **state)
{
    (void)state;
    struct bl_range r[8];
    int n;
    ASSERT_EQ(parse("bytes=0-1,4-5, 19-", 20, r, &n), BL_RANGE_OK);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(r[1].first, 4);
    ASSERT_EQ(r[2].first, 19);
    /* unsatisfiable ones are dropped while one remains */
    ASSERT_EQ(parse("bytes=50-60,0-0", 20, r, &n), BL_RANGE_OK);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(r[0].last, 0);
    /* more than max, or more bytes than the file: the whole file */
    ASSERT_EQ(parse("bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8", 20, r, &n), BL_RANGE_IGNORE);
    ASSERT_EQ(parse("bytes=0-15,0-15", 20, r, &n), BL_RANGE_IGNORE);
}

static void test_unsatisfiable_and_ignored(void **state)
{
    (void)state;
    struct bl_range r[8];
    int n;
    ASSERT_EQ(parse("bytes=20-30", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("bytes=5-x", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("bytes=x-5", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("bytes=", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("bytes=1-2;3-4", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("bytes=99999999999999999999999-", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("bytes=-0", 20, r, &n), BL_RANGE_NONE);
    ASSERT_EQ(parse("items=1-2", 20, r, &n), BL_RANGE_IGNORE);
    ASSERT_EQ(parse("byte=1-2", 20, r, &n), BL_RANGE_IGNORE);
    ASSERT_EQ(parse("bytes=0-", 0, r, &n), BL_RANGE_IGNORE); /* an empty file: 200 */
    ASSERT_EQ(parse("bytes=5-3", 20, r, &n), BL_RANGE_NONE); /* nginx drops it: none left */
}

/* Every prefix of a valid field is either valid or refused, never read past its end. */
static void test_every_cut(void **state)
{
    (void)state;
    const char *v = "bytes=0-1, 4-5,-3,10-";
    struct bl_range r[8];
    int n;
    for (size_t cut = 0; cut <= strlen(v); cut++) {
        char buf[64];
        memcpy(buf, v, cut);
        int rc = bl_range_parse(buf, cut, 20, r, 8, &n);
        assert_true(rc == BL_RANGE_OK || rc == BL_RANGE_NONE || rc == BL_RANGE_IGNORE);
        if (rc == BL_RANGE_OK)
            for (int i = 0; i < n; i++)
                assert_true(r[i].first <= r[i].last && r[i].last < 20);
    }
}

static void test_etags(void **state)
{
    (void)state;
    char e[48];
    size_t n = bl_etag_make(e, sizeof(e), 0x6b16b2be, 20);
    assert_string_equal(e, "\"6b16b2be-14\"");
    ASSERT_EQ(n, strlen(e));
#define M(list, weak) bl_etag_match(list, strlen(list), e, n, weak)
    ASSERT_EQ(M("\"6b16b2be-14\"", 0), 1);
    ASSERT_EQ(M("*", 0), 1);
    ASSERT_EQ(M("\"a\", \"6b16b2be-14\"", 1), 1);
    ASSERT_EQ(M("W/\"6b16b2be-14\"", 1), 1);  /* If-None-Match compares weakly */
    ASSERT_EQ(M("W/\"6b16b2be-14\"", 0), 0);  /* If-Match and If-Range never match W/ */
    ASSERT_EQ(M("\"6b16b2be-15\"", 1), 0);
    ASSERT_EQ(M("6b16b2be-14", 1), 0);       /* unquoted: not an entity tag */
    ASSERT_EQ(M("\"6b16b2be-14", 1), 0);     /* unterminated */
    ASSERT_EQ(M("", 1), 0);
#undef M
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_ranges),
        cmocka_unit_test(test_multi_ranges),
        cmocka_unit_test(test_unsatisfiable_and_ignored),
        cmocka_unit_test(test_every_cut),
        cmocka_unit_test(test_etags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
