/* Allocation for the configuration loader (internal to src/conf).
 *
 * Loading runs on the control thread, at start and on reload, where the old generation must
 * keep serving: a failed allocation is returned as an error that names file:line, never an
 * exit. These are the libc calls behind one switch: a unit test built with
 * BL_CONF_ALLOC_TEST (tests/unit/conf/test_conf_oom.c, which includes the .c files) refuses
 * allocations from a chosen one on, to walk every failure point. Without the switch they
 * compile to the plain calls.
 */
#ifndef BL_CONF_CONF_ALLOC_H
#define BL_CONF_CONF_ALLOC_H

#include <stdlib.h>
#include <string.h>

#ifdef BL_CONF_ALLOC_TEST
/* Allocations that may still succeed; < 0: no limit. At 0 every further one fails, unless
 * bl_conf_alloc_fail_once is set: then one fails and the limit is lifted. Defined by the
 * test. */
extern long bl_conf_alloc_budget;
extern int bl_conf_alloc_fail_once;

static inline int conf_alloc_refused(void)
{
    if (bl_conf_alloc_budget < 0)
        return 0;
    if (bl_conf_alloc_budget > 0) {
        bl_conf_alloc_budget--;
        return 0;
    }
    if (bl_conf_alloc_fail_once)
        bl_conf_alloc_budget = -1;
    return 1;
}
#else
static inline int conf_alloc_refused(void)
{
    return 0;
}
#endif

static inline void *conf_malloc(size_t n)
{
    return conf_alloc_refused() ? NULL : malloc(n);
}

static inline void *conf_calloc(size_t n, size_t size)
{
    return conf_alloc_refused() ? NULL : calloc(n, size);
}

static inline void *conf_realloc(void *p, size_t n)
{
    return conf_alloc_refused() ? NULL : realloc(p, n);
}

static inline char *conf_strdup(const char *s)
{
    return conf_alloc_refused() ? NULL : strdup(s);
}

#endif
