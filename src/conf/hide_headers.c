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

uint32_t bl_hidden_by_default(const char *name, size_t len)
{
    if (len < 4 || len > 18)
        return 0;
    char first = (char)(name[0] | 0x20);
    if (first != 'd' && first != 's' && first != 'x')
        return 0;
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
        if (hidden[i].len == len && strncasecmp(hidden[i].name, name, len) == 0)
            return hidden[i].bit;
    return 0;
}
