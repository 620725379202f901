/* nginx's rewrite phases for one request: the server's rewrite directives, the location
 * search, the location's directives, again after `rewrite ... last` (at most 10 times), and
 * internal redirects (error_page, try_files). The directives are compiled ops (conf.h
 * struct bl_rw_op); this file runs them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/regex.h"
#include "http/map.h"
#include "http/proxy_int.h"
#include "http/router.h"
#include "http/varblock.h"

/* nginx's NGX_HTTP_MAX_URI_CHANGES + 1: the 11th change is the error. */
#define URI_CHANGES 11

struct bl_rw_mem {
    struct bl_rw_mem *next;
    char data[];
};

/* Memory that lives until the request ends; NULL when out of memory. */
static char *rw_alloc(struct bl_request *r, size_t len)
{
    struct bl_rw_mem *m = malloc(sizeof(*m) + len + 1);
    if (!m)
        return NULL;
    m->next = r->rw.mem;
    r->rw.mem = m;
    return m->data;
}

static char *rw_dup(struct bl_request *r, const char *s, size_t len)
{
    char *p = rw_alloc(r, len);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

void bl_rw_free(struct bl_request *r)
{
    free(r->rw.norm);
    free(r->rw.vars);
    for (struct bl_rw_mem *m = r->rw.mem, *next; m; m = next) {
        next = m->next;
        free(m);
    }
}

static char *rw_eval(struct bl_request *r, const struct bl_template *t, size_t *len);

/* Works out map m's value for r into r->rw.vars[m->var]. NULL: empty (or out of memory). */
static const char *map_value(struct bl_request *r, const struct bl_map *m, uint32_t nvars,
                             size_t *len)
{
    if (!r->rw.vars && !(r->rw.vars = calloc(nvars, sizeof(*r->rw.vars))))
        return NULL;
    struct bl_rw_var *var = &r->rw.vars[m->var];
    var->set = 2; /* a map whose source reads itself, directly or not, gets "" */
    size_t slen;
    char *src = rw_eval(r, m->source, &slen);
    if (!src)
        return NULL;
    const struct bl_template *value = m->deflt;
    struct bl_captures cap = {0};
    size_t n = slen;
    if (m->hostnames && n && src[n - 1] == '.')
        n--;
    char *low = rw_alloc(r, n);
    if (!low)
        return NULL;
    for (size_t i = 0; i < n; i++)
        low[i] = src[i] >= 'A' && src[i] <= 'Z' ? (char)(src[i] | 0x20) : src[i];
    const struct bl_map_key *k = bl_map_find(m, low, n);
    if (k) {
        value = k->value;
    } else {
        for (uint32_t i = 0; i < m->nregexes; i++) {
            int rc = bl_regex_exec(m->regexes[i].re, src, slen, cap.ovec, BL_REGEX_MAX_PAIRS);
            if (rc < 0)
                bl_log(BL_LOG_ERROR, "map in %s:%d: regex \"%s\" failed to match", m->file,
                       m->line, bl_regex_pattern(m->regexes[i].re));
            if (rc > 0) {
                cap.re = m->regexes[i].re;
                cap.subject = src;
                cap.npairs = (uint32_t)rc;
                value = m->regexes[i].value;
                break;
            }
        }
    }
    const char *val = "";
    size_t vlen = 0;
    if (value && !cap.re) {
        val = rw_eval(r, value, &vlen);
    } else if (value) {
        /* The value's $1..$9 are the map regex's captures (the request's stay as they are). */
        struct bl_var_ctx v;
        bl_request_var_ctx(r, &v);
        v.cap = &cap;
        char small[1024];
        vlen = bl_template_eval(value, &v, small, sizeof(small));
        char *p = rw_alloc(r, vlen);
        if (p && vlen > sizeof(small))
            bl_template_eval(value, &v, p, vlen + 1);
        else if (p)
            memcpy(p, small, vlen);
        val = p;
    }
    if (!val)
        return NULL;
    *var = (struct bl_rw_var){val, (uint32_t)vlen, 1};
    *len = vlen;
    return val;
}

const char *bl_rw_user_var(const struct bl_var_ctx *ctx, uint32_t idx, const char *name,
                           size_t name_len, size_t *len)
{
    /* Not const: a map's, split_clients' or geo's value is kept in the request once worked
     * out (nginx's lazy, once-per-request variables). */
    struct bl_request *r = (struct bl_request *)ctx->user_arg;
    if (r->rw.vars && r->rw.vars[idx].set) {
        *len = r->rw.vars[idx].len;
        return r->rw.vars[idx].set == 1 ? r->rw.vars[idx].val : NULL;
    }
    const struct bl_config *cfg = r->c->w->cfg;
    if (cfg->var_maps && cfg->var_maps[idx])
        return map_value(r, cfg->var_maps[idx], cfg->vars.n, len);
    if (cfg->var_blocks && cfg->var_blocks[idx])
        return bl_varblock_value(r, cfg->var_blocks[idx], cfg->vars.n, len);
    /* A named group of the last match that has one by this name. */
    const struct bl_captures *c = &r->rw.cap;
    if (!c->re)
        return NULL;
    int g = bl_regex_group(c->re, name, name_len);
    if (g < 0 || (uint32_t)g >= c->npairs || c->ovec[2 * g] == UINT32_MAX)
        return NULL;
    *len = c->ovec[2 * g + 1] - c->ovec[2 * g];
    return c->subject + c->ovec[2 * g];
}

/* Evaluates t for r into request memory; NULL when out of memory. */
static char *rw_eval(struct bl_request *r, const struct bl_template *t, size_t *len)
{
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    char small[1024];
    size_t n = bl_template_eval(t, &v, small, sizeof(small));
    char *p = rw_alloc(r, n);
    if (!p)
        return NULL;
    if (n <= sizeof(small))
        memcpy(p, small, n);
    else
        bl_template_eval(t, &v, p, n);
    p[n] = '\0';
    *len = n;
    return p;
}

/* Matches re against subject (which outlives the request's use of the captures). 1 match,
 * 0 none, BL_ERR. The captures change only on a match, as nginx's do. */
static int rw_match(struct bl_request *r, const struct bl_regex *re, const char *subject,
                    size_t len)
{
    uint32_t ovec[2 * BL_REGEX_MAX_PAIRS];
    int n = bl_regex_exec(re, subject, len, ovec, BL_REGEX_MAX_PAIRS);
    if (n < 0) {
        bl_log(BL_LOG_ERROR, "regex \"%s\" failed on \"%.*s\", client %s", bl_regex_pattern(re),
               (int)len, subject, r->c->ip);
        return BL_ERR;
    }
    if (n == 0)
        return 0;
    r->rw.cap.re = re;
    r->rw.cap.subject = subject;
    r->rw.cap.npairs = (uint32_t)n;
    memcpy(r->rw.cap.ovec, ovec, 2 * (size_t)n * sizeof(ovec[0]));
    return 1;
}

/* The request's current arguments. */
static const char *cur_args(const struct bl_request *r, size_t *len)
{
    if (r->rw.args_set) {
        *len = r->rw.args_len;
        return r->rw.args_len ? r->rw.args : NULL;
    }
    *len = r->msg.query ? r->msg.query_len : 0;
    return r->msg.query;
}

/* What running a list of ops ended with. */
enum rw_rc {
    RW_NEXT,        /* ran to the end (or `rewrite ... break`, `break`) */
    RW_LAST,        /* rewrite ... last: search the location again */
    RW_RESPOND,     /* return or redirect: r->rw.ret_code is set */
    RW_ERROR,       /* *status is set */
};

/* A rewrite whose regex matched: the replacement becomes the URI (and arguments), or a
 * redirect's Location. */
static enum rw_rc rw_rewrite(struct bl_request *r, const struct bl_rw_op *op, int *status)
{
    size_t len;
    char *val = rw_eval(r, op->value, &len);
    if (!val)
        goto oom;
    size_t alen;
    const char *args = cur_args(r, &alen);
    int keep_args = !op->drop_args && args;
    if (op->absolute || op->flag == BL_RWF_REDIRECT || op->flag == BL_RWF_PERMANENT) {
        if (keep_args) {
            char *loc = rw_alloc(r, len + 1 + alen);
            if (!loc)
                goto oom;
            len = (size_t)sprintf(loc, "%s%c%.*s", val, memchr(val, '?', len) ? '&' : '?',
                                  (int)alen, args);
            val = loc;
        }
        r->rw.redirect = val;
        r->rw.redirect_len = (uint32_t)len;
        r->rw.ret_code = op->flag == BL_RWF_PERMANENT ? 301 : 302;
        r->rw.ret_text = NULL;
        return RW_RESPOND;
    }
    char *q = memchr(val, '?', len);
    if (q) {
        /* "new?a=1": the new arguments, then the old ones unless the line ended with '?' */
        size_t nlen = (size_t)(val + len - q - 1);
        char *na = rw_alloc(r, nlen + 1 + alen);
        if (!na)
            goto oom;
        size_t n = (size_t)sprintf(na, "%.*s", (int)nlen, q + 1);
        if (keep_args)
            n += (size_t)sprintf(na + n, "&%.*s", (int)alen, args);
        r->rw.args = na;
        r->rw.args_len = (uint32_t)n;
        r->rw.args_set = 1;
        len = (size_t)(q - val);
        *q = '\0';
    } else if (op->drop_args) {
        r->rw.args = ""; /* never NULL: templates copy from it */
        r->rw.args_len = 0;
        r->rw.args_set = 1;
    }
    r->upath = val;
    r->upath_len = (uint32_t)len;
    r->rw.uri_changed = 1;
    return RW_NEXT;
oom:
    *status = 503;
    return RW_ERROR;
}

static int file_test(const struct bl_rw_op *op, const char *path)
{
    struct stat st;
    switch (op->cond) {
    case BL_IF_FILE:
        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
    case BL_IF_DIR:
        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    case BL_IF_EXISTS:
        return stat(path, &st) == 0;
    default:
        return access(path, X_OK) == 0 && stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
    }
}

/* if's condition: 1 true, 0 false, BL_ERR (out of memory or a regex error). */
static int rw_condition(struct bl_request *r, const struct bl_rw_op *op)
{
    size_t len;
    char *val = rw_eval(r, op->value, &len);
    if (!val)
        return BL_ERR;
    int yes;
    switch (op->cond) {
    case BL_IF_TRUE:
        yes = len && !(len == 1 && val[0] == '0');
        break;
    case BL_IF_EQ: {
        size_t alen;
        char *arg = rw_eval(r, op->arg, &alen);
        if (!arg)
            return BL_ERR;
        yes = len == alen && memcmp(val, arg, len) == 0;
        break;
    }
    case BL_IF_MATCH:
        yes = rw_match(r, op->re, val, len);
        if (yes < 0)
            return BL_ERR;
        break;
    default:
        yes = file_test(op, val);
        break;
    }
    return op->negate ? !yes : yes;
}

static enum rw_rc rw_set(struct bl_request *r, const struct bl_rw_op *op)
{
    if (!r->rw.vars &&
        !(r->rw.vars = calloc(op->nvars, sizeof(*r->rw.vars))))
        return RW_ERROR;
    size_t len;
    char *val = rw_eval(r, op->value, &len);
    if (!val)
        return RW_ERROR;
    r->rw.vars[op->var] = (struct bl_rw_var){val, (uint32_t)len, 1};
    return RW_NEXT;
}

/* Runs ops in order. *stop is set by `break` and `rewrite ... break`. */
static enum rw_rc rw_run(struct bl_request *r, const struct bl_rw_op *ops, uint32_t n,
                         int *stop, int *status)
{
    for (uint32_t i = 0; i < n && !*stop; i++) {
        const struct bl_rw_op *op = &ops[i];
        enum rw_rc rc = RW_NEXT;
        switch (op->type) {
        case BL_RW_REWRITE: {
            int m = rw_match(r, op->re, r->upath, r->upath_len);
            if (m < 0) {
                *status = 500;
                return RW_ERROR;
            }
            if (!m)
                continue;
            rc = rw_rewrite(r, op, status);
            if (rc != RW_NEXT)
                return rc;
            if (op->flag == BL_RWF_LAST)
                return RW_LAST;
            if (op->flag == BL_RWF_BREAK) {
                r->rw.loc_invalid = 1;
                *stop = 1;
            }
            break;
        }
        case BL_RW_RETURN:
            r->rw.ret_code = op->code;
            r->rw.ret_text = op->value;
            r->rw.redirect = NULL;
            return RW_RESPOND;
        case BL_RW_SET:
            rc = rw_set(r, op);
            break;
        case BL_RW_IF: {
            int yes = rw_condition(r, op);
            if (yes < 0) {
                *status = 500;
                return RW_ERROR;
            }
            if (yes)
                rc = rw_run(r, op->body, op->nbody, stop, status);
            break;
        }
        case BL_RW_BREAK:
            *stop = 1;
            break;
        }
        if (rc == RW_ERROR && !*status)
            *status = 503;
        if (rc != RW_NEXT)
            return rc;
    }
    return RW_NEXT;
}

/* One more internal redirect or location re-search; 0 when that was one too many (nginx
 * logs it and answers 500). */
static int count_change(struct bl_request *r, const char *what, const char *uri, size_t len)
{
    if (!r->rw.uri_changes)
        r->rw.uri_changes = URI_CHANGES;
    if (--r->rw.uri_changes == 0) {
        bl_log(BL_LOG_ERROR, "rewrite or internal redirection cycle while %s \"%.*s\", "
               "client %s", what, (int)len, uri, r->c->ip);
        return 0;
    }
    return 1;
}

/* From the location search on, for r->upath; r->loc may be preset (a named location). */
static int rw_locations(struct bl_request *r, const struct bl_location *named, int *status)
{
    const struct bl_server_block *s = r->srv;
    for (;;) {
        const struct bl_location *loc = named;
        named = NULL;
        if (!loc && !(loc = bl_route_location_cap(s, r->upath, r->upath_len, &r->rw.cap))) {
            bl_log(BL_LOG_ERROR, "location regex failed on \"%.*s\", client %s",
                   (int)r->upath_len, r->upath, r->c->ip);
            *status = 500;
            return BL_ERR;
        }
        r->loc = loc;
        r->rw.loc_invalid = 0;
        if (!loc->nops)
            return BL_OK;
        int stop = 0;
        const char *before = r->upath;
        enum rw_rc rc = rw_run(r, loc->ops, loc->nops, &stop, status);
        if (rc == RW_ERROR)
            return BL_ERR;
        if (rc == RW_RESPOND)
            return BL_OK;
        /* nginx re-searches after `last`, and after a rewrite without a flag that changed
         * the URI once the location's directives ran out (not after break). */
        if (rc != RW_LAST && (r->upath == before || stop))
            return BL_OK;
        if (!count_change(r, "processing", r->upath, r->upath_len)) {
            *status = 500;
            return BL_ERR;
        }
    }
}

int bl_rw_route(struct bl_request *r, int *status)
{
    const struct bl_location *sl = r->srv->server_loc;
    r->loc = sl;
    if (sl->nops) {
        int stop = 0;
        enum rw_rc rc = rw_run(r, sl->ops, sl->nops, &stop, status);
        if (rc == RW_ERROR)
            return BL_ERR;
        if (rc == RW_RESPOND)
            return BL_OK; /* answered at the server level: r->loc is the server's */
    }
    return rw_locations(r, NULL, status);
}

int bl_rw_redirect(struct bl_request *r, const char *uri, size_t len, int *status)
{
    *status = 0;
    r->rw.ret_code = 0;
    if (len && uri[0] == '@') {
        const struct bl_location *named = bl_route_named(r->srv, uri, len);
        if (!named) {
            bl_log(BL_LOG_ERROR, "could not find named location \"%.*s\", client %s", (int)len,
                   uri, r->c->ip);
            *status = 500;
            return BL_ERR;
        }
        if (!count_change(r, "redirect to named location", uri, len)) {
            *status = 500;
            return BL_ERR;
        }
        return rw_locations(r, named, status);
    }
    const char *q = memchr(uri, '?', len);
    size_t plen = q ? (size_t)(q - uri) : len;
    char *p = rw_dup(r, uri, plen);
    if (!p) {
        *status = 503;
        return BL_ERR;
    }
    if (q) {
        if (!(r->rw.args = rw_dup(r, q + 1, len - plen - 1))) {
            *status = 503;
            return BL_ERR;
        }
        r->rw.args_len = (uint32_t)(len - plen - 1);
        r->rw.args_set = 1;
    }
    r->upath = p;
    r->upath_len = (uint32_t)plen;
    r->rw.uri_changed = 1;
    if (!count_change(r, "internally redirecting to", p, plen)) {
        *status = 500;
        return BL_ERR;
    }
    return bl_rw_route(r, status);
}
