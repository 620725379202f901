/* map's value for a stream session (stream_map.h). */
#include <string.h>

#include "conf/conf.h"
#include "core/log.h"
#include "core/regex.h"
#include "http/map.h"
#include "http/template.h"
#include "stream/stream_map.h"

const char *bl_stream_map_value(const struct bl_map *m, const struct bl_var_ctx *ctx, char *out,
                                size_t cap, size_t *len)
{
    char src[512], low[512];
    size_t slen = bl_template_eval(m->source, ctx, src, sizeof(src));
    if (slen > sizeof(src))
        slen = sizeof(src);
    size_t n = slen;
    if (m->hostnames && n && src[n - 1] == '.')
        n--;
    for (size_t i = 0; i < n; i++)
        low[i] = src[i] >= 'A' && src[i] <= 'Z' ? (char)(src[i] | 0x20) : src[i];
    const struct bl_template *value = m->deflt;
    struct bl_captures cap_ = {0};
    const struct bl_map_key *k = bl_map_find(m, low, n);
    if (k) {
        value = k->value;
    } else {
        for (uint32_t i = 0; i < m->nregexes; i++) {
            int rc = bl_regex_exec(m->regexes[i].re, src, slen, cap_.ovec, BL_REGEX_MAX_PAIRS);
            if (rc < 0)
                bl_log(BL_LOG_ERROR, "map in %s:%d: regex \"%s\" failed to match", m->file,
                       m->line, bl_regex_pattern(m->regexes[i].re));
            if (rc > 0) {
                cap_.re = m->regexes[i].re;
                cap_.subject = src;
                cap_.npairs = (uint32_t)rc;
                value = m->regexes[i].value;
                break;
            }
        }
    }
    *len = 0;
    if (!value)
        return out;
    struct bl_var_ctx v = *ctx;
    if (cap_.re)
        v.cap = &cap_;
    size_t vl = bl_template_eval(value, &v, out, cap);
    *len = vl < cap ? vl : cap;
    return out;
}
