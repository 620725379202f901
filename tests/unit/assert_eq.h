/* ASSERT_EQ for cmocka tests: on failure prints both expressions with their values (libuv's
 * habit). Include after <cmocka.h>. */
#ifndef BL_TEST_ASSERT_EQ_H
#define BL_TEST_ASSERT_EQ_H

#define ASSERT_EQ(a, b)                                                                       \
    do {                                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                                   \
        if (a_ != b_) {                                                                       \
            print_error("%s = %lld, %s = %lld\n", #a, a_, #b, b_);                            \
            fail();                                                                           \
        }                                                                                     \
    } while (0)

#endif
