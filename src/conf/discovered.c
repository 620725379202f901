/* Server sets found by discovery, read by the compiler (discovered.h). */
#include <stdlib.h>
#include <string.h>

#include "conf/discovered.h"
#include "core/status.h"

struct entry {
    struct entry *next;
    char *group;
    char *name;                 /* NULL: the group's discover set */
    struct bl_discovered set;
};

static struct entry *entries;

static int same_name(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static struct entry **find(const char *group, const char *name)
{
    struct entry **p = &entries;
    for (; *p; p = &(*p)->next)
        if (strcmp((*p)->group, group) == 0 && same_name((*p)->name, name))
            break;
    return p;
}

static void set_free(struct bl_discovered *s)
{
    for (uint32_t i = 0; i < s->nitems; i++)
        free(s->items[i]);
    free(s->items);
    s->items = NULL;
    s->nitems = 0;
}

static void entry_free(struct entry *e)
{
    set_free(&e->set);
    free(e->group);
    free(e->name);
    free(e);
}

int bl_conf_discovered_set(const char *group, const char *name, char *const *items, uint32_t n)
{
    struct entry **p = find(group, name);
    struct entry *e = *p;
    if (e && e->set.nitems == n) {
        uint32_t i = 0;
        while (i < n && strcmp(e->set.items[i], items[i]) == 0)
            i++;
        if (i == n)
            return 0;
    }
    struct bl_discovered s = {calloc(n ? n : 1, sizeof(char *)), 0};
    if (!s.items)
        return BL_ERR;
    for (; s.nitems < n; s.nitems++)
        if (!(s.items[s.nitems] = strdup(items[s.nitems]))) {
            set_free(&s);
            return BL_ERR;
        }
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->group = strdup(group)) || (name && !(e->name = strdup(name)))) {
            if (e)
                entry_free(e);
            set_free(&s);
            return BL_ERR;
        }
        *p = e;
    }
    set_free(&e->set);
    e->set = s;
    return 1;
}

const struct bl_discovered *bl_conf_discovered_get(const char *group, const char *name)
{
    struct entry *e = *find(group, name);
    return e ? &e->set : NULL;
}

void bl_conf_discovered_drop(const char *group, const char *name)
{
    struct entry **p = find(group, name);
    struct entry *e = *p;
    if (e) {
        *p = e->next;
        entry_free(e);
    }
}

void bl_conf_discovered_clear(void)
{
    while (entries) {
        struct entry *e = entries;
        entries = e->next;
        entry_free(e);
    }
}
