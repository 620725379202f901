/* nginx's default hidden upstream response fields. */
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

/* name equals lower (lower-case) ignoring ASCII case, as strncasecmp in the C locale. */
static inline int eq_lower(const char *name, const char *lower, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)name[k];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char)lower[k])
            return 0;
    }
    return 1;
}

uint32_t bl_hidden_by_default(const char *name, size_t len)
{
    /* Called for every upstream response field: the length and first byte settle most of
     * them without a compare (bench/README.md, "Profile"). */
    switch (len) {
    case 4:
        return eq_lower(name, "date", 4) ? BL_HIDE_DATE : 0;
    case 5:
        return eq_lower(name, "x-pad", 5) ? BL_HIDE_X_PAD : 0;
    case 6:
        return eq_lower(name, "server", 6) ? BL_HIDE_SERVER : 0;
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
