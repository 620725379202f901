/* nginx's default hidden upstream response fields. */
#include <string.h>
#include <strings.h>

#include "conf/hide_headers.h"

static const struct {
    const char *name;
    uint8_t len;
    uint32_t bit;
} hidden[] = {
    {"Date", 4, BL_HIDE_DATE},
    {"Server", 6, BL_HIDE_SERVER},
    {"X-Pad", 5, BL_HIDE_X_PAD},
    {"X-Accel-Expires", 15, BL_HIDE_X_ACCEL_EXPIRES},
    {"X-Accel-Redirect", 16, BL_HIDE_X_ACCEL_REDIRECT},
    {"X-Accel-Limit-Rate", 18, BL_HIDE_X_ACCEL_LIMIT_RATE},
    {"X-Accel-Buffering", 17, BL_HIDE_X_ACCEL_BUFFERING},
    {"X-Accel-Charset", 15, BL_HIDE_X_ACCEL_CHARSET},
};

/* The n (<= 4) bytes at p, little-endian, as a number: equal to the same load of a literal. */
static inline uint32_t load(const char *p, size_t n)
{
    uint32_t v = 0;
    memcpy(&v, p, n);
    return v;
}

/* Case-insensitive equality with a lower-case word, 4 and 2 bytes at a time: OR-ing 0x20 into
 * a byte gives a lower-case letter only when the byte is that letter in either case, so for
 * letters it is exact. A '-' gets no 0x20 (0x0d | 0x20 is '-' too) and must match as it is:
 * fold has 0x20 for each letter of lower and 0 for its '-'. */
static inline int eq_word(const char *name, const char *lower, size_t n, uint32_t fold)
{
    return (load(name, n) | fold) == load(lower, n);
}

uint32_t bl_hidden_by_default(const char *name, size_t len)
{
    /* Called for every upstream response field: the length settles most of them without a
     * compare, a word compare the rest (bench/README.md, "Profile"). */
    switch (len) {
    case 4:
        return eq_word(name, "date", 4, 0x20202020u) ? BL_HIDE_DATE : 0;
    case 5: /* "x-pa", then "d" */
        return eq_word(name, "x-pa", 4, 0x20200020u) && (name[4] | 0x20) == 'd' ? BL_HIDE_X_PAD
                                                                                 : 0;
    case 6:
        return eq_word(name, "serv", 4, 0x20202020u) && eq_word(name + 4, "er", 2, 0x2020u)
                   ? BL_HIDE_SERVER
                   : 0;
    case 15:
    case 16:
    case 17:
    case 18:
        if ((name[0] | 0x20) != 'x')
            return 0;
        for (size_t i = 3; i < sizeof(hidden) / sizeof(hidden[0]); i++)
            if (hidden[i].len == len && strncasecmp(hidden[i].name, name, len) == 0)
                return hidden[i].bit;
        return 0;
    }
    return 0;
}
