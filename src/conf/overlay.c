/* Server additions and removals of the admin API, applied to each config read from a file
 * (overlay.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf_alloc.h"
#include "conf/conf_parse.h"
#include "conf/overlay.h"
#include "core/log.h"
#include "core/sock.h"
#include "core/status.h"
#include "upstream/upstream.h"

enum { OV_ADD = 1, OV_REMOVE = 2 };

struct entry {
    struct entry *next;
    int kind;
    char *group;
    char **args;          /* ADD: the line to add; REMOVE: the line as the file had it */
    int nargs;
    struct entry *revived; /* REMOVE of an added server: the ADD entry it took out */
};

static struct entry *entries;

static void args_free(char **args, int n)
{
    for (int i = 0; args && i < n; i++)
        free(args[i]);
    free(args);
}

void bl_conf_overlay_free_args(char **args, int n)
{
    args_free(args, n);
}

static char **args_copy(char *const *args, int n)
{
    char **out = calloc((size_t)n + 1, sizeof(*out));
    for (int i = 0; out && i < n; i++)
        if (!(out[i] = strdup(args[i]))) {
            args_free(out, n);
            return NULL;
        }
    return out;
}

static void entry_free(struct entry *e)
{
    free(e->group);
    args_free(e->args, e->nargs);
    free(e);
}

static struct entry *entry_new(int kind, const char *group, char *const *args, int nargs)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->kind = kind;
    e->nargs = nargs;
    if (!(e->group = strdup(group)) || !(e->args = args_copy(args, nargs))) {
        entry_free(e);
        return NULL;
    }
    return e;
}

static void unlink_entry(struct entry *e)
{
    for (struct entry **p = &entries; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            e->next = NULL;
            return;
        }
}

static int listed(const struct entry *e)
{
    for (const struct entry *x = entries; x; x = x->next)
        if (x == e)
            return 1;
    return 0;
}

/* Same server address: parsed when both parse without DNS, else as written. */
static int same_addr(const char *a, const char *b)
{
    struct sockaddr_storage x, y;
    socklen_t lx, ly;
    char err[128];
    if (bl_addr_parse(a, 80, 0, &x, &lx, err, sizeof(err)) == 0 &&
        bl_addr_parse(b, 80, 0, &y, &ly, err, sizeof(err)) == 0)
        return bl_upstream_addr_equal(&x, &y);
    return strcmp(a, b) == 0;
}

static int same_args(char *const *a, int na, char *const *b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static struct bl_conf_node *find_upstream(const struct bl_conf_node *root, const char *group)
{
    for (int i = 0; i < root->nchildren; i++) {
        const struct bl_conf_node *h = &root->children[i];
        if (strcmp(h->name, "http") != 0 || !h->is_block)
            continue;
        for (int k = 0; k < h->nchildren; k++) {
            struct bl_conf_node *u = &h->children[k];
            if (strcmp(u->name, "upstream") == 0 && u->is_block && u->nargs == 1 &&
                strcmp(u->args[0], group) == 0)
                return u;
        }
    }
    return NULL;
}

static int find_server(const struct bl_conf_node *u, const char *addr)
{
    for (int i = 0; i < u->nchildren; i++) {
        const struct bl_conf_node *s = &u->children[i];
        if (strcmp(s->name, "server") == 0 && s->nargs >= 1 && same_addr(s->args[0], addr))
            return i;
    }
    return -1;
}

void *bl_conf_overlay_add(const char *group, char *const *args, int nargs)
{
    struct entry *e = entry_new(OV_ADD, group, args, nargs);
    if (e) {
        e->next = entries;
        entries = e;
    }
    return e;
}

int bl_conf_overlay_remove(const char *group, const char *addr, char *const *line, int nline,
                           void **handle)
{
    *handle = NULL;
    struct entry *added = NULL;
    for (struct entry *x = entries; x; x = x->next)
        if (x->kind == OV_ADD && strcmp(x->group, group) == 0 && same_addr(x->args[0], addr))
            added = x;
    if (!line && !added)
        return BL_OK;
    struct entry *e = !added ? entry_new(OV_REMOVE, group, line, nline)
                             : entry_new(OV_REMOVE, group, (char *const *)&addr, 1);
    if (!e)
        return BL_ERR;
    if (added) {
        /* Only the overlay had it: forgetting the addition is the removal. */
        unlink_entry(added);
        e->revived = added;
        e->kind = 0; /* a marker entry: nothing to apply, undo puts the addition back */
    }
    e->next = entries;
    entries = e;
    *handle = e;
    return BL_OK;
}

void bl_conf_overlay_undo(void *h)
{
    struct entry *e = h;
    if (!e || !listed(e))
        return;
    unlink_entry(e);
    if (e->revived) {
        e->revived->next = entries;
        entries = e->revived;
    }
    entry_free(e);
}

/* Appends `server ARGS;` to the upstream block u (at its own file:line, for messages). */
static int append_server(struct bl_conf_node *u, const struct entry *e)
{
    struct bl_conf_node *c = conf_realloc(u->children,
                                          ((size_t)u->nchildren + 1) * sizeof(*c));
    if (!c)
        return BL_ERR;
    u->children = c;
    struct bl_conf_node *n = &c[u->nchildren];
    memset(n, 0, sizeof(*n));
    n->name = strdup("server");
    n->args = args_copy(e->args, e->nargs);
    n->quoted = calloc((size_t)e->nargs + 1, 1);
    if (!n->name || !n->args || !n->quoted) {
        free(n->name);
        args_free(n->args, e->nargs);
        free(n->quoted);
        return BL_ERR;
    }
    n->nargs = e->nargs;
    n->file = u->file;
    n->line = u->line;
    u->nchildren++;
    return BL_OK;
}

static void remove_child(struct bl_conf_node *u, int i)
{
    struct bl_conf_node *s = &u->children[i];
    free(s->name);
    args_free(s->args, s->nargs);
    free(s->quoted);
    /* a server line has no children */
    memmove(&u->children[i], &u->children[i + 1],
            (size_t)(u->nchildren - i - 1) * sizeof(*s));
    u->nchildren--;
}

static void drop(struct entry *e, const char *why)
{
    bl_log(BL_LOG_NOTICE, "admin: the %s of server %s in upstream \"%s\" ends: %s",
           e->kind == OV_ADD ? "addition" : "removal", e->args[0], e->group, why);
    unlink_entry(e);
    if (e->revived)
        entry_free(e->revived);
    entry_free(e);
}

int bl_conf_overlay_apply(struct bl_conf_node *root, char *err, size_t errlen)
{
    struct entry *next;
    for (struct entry *e = entries; e; e = next) {
        next = e->next;
        if (!e->kind)
            continue;
        struct bl_conf_node *u = find_upstream(root, e->group);
        if (!u) {
            drop(e, "the config has no such upstream block any more");
            continue;
        }
        int i = find_server(u, e->args[0]);
        if (e->kind == OV_ADD) {
            if (i >= 0) {
                drop(e, "the config names it now");
                continue;
            }
            if (append_server(u, e) != BL_OK) {
                snprintf(err, errlen, "out of memory");
                return BL_ERR;
            }
        } else {
            if (i < 0) {
                drop(e, "the config no longer has it");
                continue;
            }
            const struct bl_conf_node *s = &u->children[i];
            if (!same_args(s->args, s->nargs, e->args, e->nargs)) {
                drop(e, "its line in the config changed");
                continue;
            }
            remove_child(u, i);
        }
    }
    return BL_OK;
}

int bl_conf_overlay_has_upstream(const struct bl_conf_node *root, const char *group)
{
    return root && find_upstream(root, group) != NULL;
}

char **bl_conf_overlay_line(const struct bl_conf_node *root, const char *group,
                            const char *addr, int *n)
{
    const struct bl_conf_node *u = root ? find_upstream(root, group) : NULL;
    int i = u ? find_server(u, addr) : -1;
    if (i < 0)
        return NULL;
    *n = u->children[i].nargs;
    return args_copy(u->children[i].args, *n);
}

void bl_conf_overlay_clear(void)
{
    while (entries) {
        struct entry *e = entries;
        entries = e->next;
        if (e->revived)
            entry_free(e->revived);
        entry_free(e);
    }
}
