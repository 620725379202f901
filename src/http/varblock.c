/* split_clients and geo at request time. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/murmur.h"
#include "http/proxy_int.h"
#include "http/varblock.h"

const struct bl_split_part *bl_split_pick(const struct bl_split_part *parts, uint32_t n,
                                          const char *key, size_t len)
{
    uint32_t hash = bl_murmur2(key, len);
    for (uint32_t i = 0; i < n; i++)
        if (parts[i].upto == 0 || hash < parts[i].upto)
            return &parts[i];
    return NULL;
}

const char *bl_geo_find(const struct bl_geo_net *nets, uint32_t n, const struct bl_ipaddr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct bl_ipaddr v4;
    if (a->family == AF_INET6 && memcmp(a->a, mapped, sizeof(mapped)) == 0) {
        memset(&v4, 0, sizeof(v4));
        v4.family = AF_INET;
        memcpy(v4.a, a->a + 12, 4);
        a = &v4;
    }
    const struct bl_geo_net *best = NULL;
    for (uint32_t i = 0; i < n; i++)
        if ((!best || nets[i].net.bits > best->net.bits) && bl_cidr_match(&nets[i].net, a))
            best = &nets[i];
    return best ? best->value : NULL;
}

/* Evaluates t for r: into small when it fits, else into *heap (malloc, the caller frees). */
static const char *eval_key(struct bl_request *r, const struct bl_template *t, char *small,
                            size_t cap, char **heap, size_t *len)
{
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    size_t n = bl_template_eval(t, &v, small, cap);
    *len = n;
    if (n <= cap)
        return small;
    if (!(*heap = malloc(n)))
        return NULL;
    bl_template_eval(t, &v, *heap, n);
    return *heap;
}

const char *bl_varblock_value(struct bl_request *r, const struct bl_varblock *b, uint32_t nvars,
                              size_t *len)
{
    if (!r->rw.vars && !(r->rw.vars = calloc(nvars, sizeof(*r->rw.vars))))
        return NULL;
    struct bl_rw_var *var = &r->rw.vars[b->var];
    /* A key that reads its own variable, directly or not, sees it empty. */
    *var = (struct bl_rw_var){"", 0, 1};
    char small[512], *heap = NULL;
    size_t klen = 0;
    const char *key = NULL;
    if (b->source) {
        key = eval_key(r, b->source, small, sizeof(small), &heap, &klen);
        if (!key)
            return NULL;
    }
    const char *val = NULL;
    if (b->kind == BL_VB_SPLIT) {
        const struct bl_split_part *p = bl_split_pick(b->parts, b->nparts, key, klen);
        val = p ? p->value : "";
    } else {
        struct bl_ipaddr a;
        if (!key) {
            key = r->c->ip;
            klen = r->c->ip_len;
        }
        if (bl_ipaddr_parse(key, klen, &a) != 0) {
            /* nginx looks an unparsable value up as 255.255.255.255 */
            memset(&a, 0, sizeof(a));
            a.family = AF_INET;
            memset(a.a, 0xff, 4);
        }
        val = bl_geo_find(b->nets, b->nnets, &a);
        if (!val)
            val = b->deflt;
    }
    free(heap);
    *var = (struct bl_rw_var){val, (uint32_t)strlen(val), 1};
    *len = var->len;
    return var->len ? val : NULL;
}
