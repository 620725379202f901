/* Cache-Control and HTTP-date parsing for the response cache (cache_control.h). */
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache/cache_control.h"

static int is_ows(char ch) { return ch == ' ' || ch == '\t'; }

int64_t bl_cc_delta(const char *s, size_t len)
{
    while (len && is_ows(*s)) {
        s++;
        len--;
    }
    while (len && is_ows(s[len - 1]))
        len--;
    if (!len)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v < 2147483648LL)
            v = v * 10 + (s[i] - '0');
    }
    /* RFC 9111 1.2.2: a delta-seconds too large is 2^31 */
    return v > 2147483648LL ? 2147483648LL : v;
}

static int name_is(const char *n, size_t nlen, const char *want)
{
    return strlen(want) == nlen && strncasecmp(n, want, nlen) == 0;
}

/* One directive NAME[=VALUE]; the value may be a quoted-string (its quotes dropped, escapes
 * left: no delta-seconds has any). */
static void cc_directive(struct bl_cc *cc, const char *n, size_t nlen, const char *v,
                         size_t vlen, int has_value)
{
    static const struct {
        const char *name;
        uint32_t flag;
    } plain[] = {
        {"no-store", BL_CC_NO_STORE},           {"no-cache", BL_CC_NO_CACHE},
        {"private", BL_CC_PRIVATE},             {"public", BL_CC_PUBLIC},
        {"must-revalidate", BL_CC_MUST_REVALIDATE},
        {"proxy-revalidate", BL_CC_PROXY_REVALIDATE},
        {"no-transform", BL_CC_NO_TRANSFORM},   {"only-if-cached", BL_CC_ONLY_IF_CACHED},
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (name_is(n, nlen, plain[i].name)) {
            cc->flags |= plain[i].flag;
            return;
        }
    static const struct {
        const char *name;
        uint32_t flag;
        size_t off;
    } deltas[] = {
        {"max-age", BL_CC_MAX_AGE, offsetof(struct bl_cc, max_age)},
        {"s-maxage", BL_CC_S_MAXAGE, offsetof(struct bl_cc, s_maxage)},
        {"stale-while-revalidate", BL_CC_SWR, offsetof(struct bl_cc, swr)},
        {"stale-if-error", BL_CC_SIE, offsetof(struct bl_cc, sie)},
    };
    for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
        if (!name_is(n, nlen, deltas[i].name))
            continue;
        if (cc->flags & deltas[i].flag)
            return; /* the first one counts */
        int64_t d = has_value ? bl_cc_delta(v, vlen) : -1;
        if (d < 0) {
            cc->flags |= BL_CC_INVALID;
            return;
        }
        cc->flags |= deltas[i].flag;
        *(uint32_t *)((char *)cc + deltas[i].off) = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        return;
    }
}

void bl_cc_parse(struct bl_cc *cc, const char *v, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t ns = i;
        while (i < len && v[i] != '=' && v[i] != ',' && !is_ows(v[i]))
            i++;
        size_t nlen = i - ns;
        while (i < len && is_ows(v[i]))
            i++;
        const char *val = NULL;
        size_t vlen = 0;
        int has_value = 0;
        if (i < len && v[i] == '=') {
            i++;
            while (i < len && is_ows(v[i]))
                i++;
            has_value = 1;
            if (i < len && v[i] == '"') {
                size_t vs = ++i;
                while (i < len && v[i] != '"') {
                    if (v[i] == '\\' && i + 1 < len)
                        i++;
                    i++;
                }
                val = v + vs;
                vlen = i - vs;
                if (i < len)
                    i++; /* the closing quote */
            } else {
                size_t vs = i;
                while (i < len && v[i] != ',')
                    i++;
                val = v + vs;
                vlen = i - vs;
            }
        }
        if (nlen)
            cc_directive(cc, v + ns, nlen, val, vlen, has_value);
        while (i < len && v[i] != ',')
            i++; /* junk after a directive: skipped to the next one */
    }
}

static int month_of(const char *m)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (strncmp(names + 3 * i, m, 3) == 0)
            return i;
    return -1;
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int64_t make_time(int year, int mon, int day, int h, int mi, int se)
{
    if (mon < 0 || day < 1 || day > 31 || h > 23 || mi > 59 || se > 60 || year < 1970 ||
        year > 9999)
        return -1;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon, .tm_mday = day, .tm_hour = h,
                    .tm_min = mi, .tm_sec = se};
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t;
}

int64_t bl_http_date_parse(const char *s, size_t len)
{
    while (len && is_ows(*s)) {
        s++;
        len--;
    }
    while (len && is_ows(s[len - 1]))
        len--;
    char b[64];
    if (len >= sizeof(b) || len < 24)
        return -1;
    memcpy(b, s, len);
    b[len] = 0;
    int day, year, h, mi, se;
    const char *comma = memchr(b, ',', len);
    if (comma && comma - b == 3 && len == 29) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || b[19] != ':' ||
            b[22] != ':' || b[25] != ' ' || strcmp(b + 26, "GMT") != 0 ||
            digits(b + 5, 2, &day) || digits(b + 12, 4, &year) || digits(b + 17, 2, &h) ||
            digits(b + 20, 2, &mi) || digits(b + 23, 2, &se))
            return -1;
        return make_time(year, month_of(b + 8), day, h, mi, se);
    }
    if (comma) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        const char *p = comma + 1;
        size_t rest = len - (size_t)(p - b);
        if (rest != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' ||
            p[13] != ':' || p[16] != ':' || strcmp(p + 19, " GMT") != 0 ||
            digits(p + 1, 2, &day) || digits(p + 8, 2, &year) || digits(p + 11, 2, &h) ||
            digits(p + 14, 2, &mi) || digits(p + 17, 2, &se))
            return -1;
        /* RFC 9110: a two-digit year more than 50 years ahead is in the past century */
        year += year < 70 ? 2000 : 1900;
        return make_time(year, month_of(p + 4), day, h, mi, se);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (len != 24 || b[3] != ' ' || b[7] != ' ' || b[10] != ' ' || b[13] != ':' ||
        b[16] != ':' || b[19] != ' ' || digits(b + 11, 2, &h) || digits(b + 14, 2, &mi) ||
        digits(b + 17, 2, &se) || digits(b + 20, 4, &year))
        return -1;
    if (b[8] == ' ') {
        if (digits(b + 9, 1, &day))
            return -1;
    } else if (digits(b + 8, 2, &day)) {
        return -1;
    }
    return make_time(year, month_of(b + 4), day, h, mi, se);
}

void bl_http_date_format(int64_t t, char out[29])
{
    static const char wd[] = "SunMonTueWedThuFriSat", mn[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char b[32];
    int y = tm.tm_year + 1900;
    b[0] = wd[3 * tm.tm_wday];
    b[1] = wd[3 * tm.tm_wday + 1];
    b[2] = wd[3 * tm.tm_wday + 2];
    b[3] = ',';
    b[4] = ' ';
    b[5] = (char)('0' + tm.tm_mday / 10);
    b[6] = (char)('0' + tm.tm_mday % 10);
    b[7] = ' ';
    memcpy(b + 8, mn + 3 * tm.tm_mon, 3);
    b[11] = ' ';
    b[12] = (char)('0' + y / 1000 % 10);
    b[13] = (char)('0' + y / 100 % 10);
    b[14] = (char)('0' + y / 10 % 10);
    b[15] = (char)('0' + y % 10);
    b[16] = ' ';
    b[17] = (char)('0' + tm.tm_hour / 10);
    b[18] = (char)('0' + tm.tm_hour % 10);
    b[19] = ':';
    b[20] = (char)('0' + tm.tm_min / 10);
    b[21] = (char)('0' + tm.tm_min % 10);
    b[22] = ':';
    b[23] = (char)('0' + tm.tm_sec / 10);
    b[24] = (char)('0' + tm.tm_sec % 10);
    memcpy(b + 25, " GMT", 4);
    memcpy(out, b, 29);
}

int bl_cc_heuristic_status(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    default:
        return 0;
    }
}
