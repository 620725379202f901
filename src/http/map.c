/* map's key lookup (map.h). */
#include <string.h>

#include "http/map.h"

/* The key of m that name[0..len) (lowercase) matches, or NULL: the exact string, else (hostnames)
 * the longest "*.x" or ".x" wildcard, else the longest "x.*" one, as nginx's combined hash. */
const struct bl_map_key *bl_map_find(const struct bl_map *m, const char *name, size_t len)
{
    const struct bl_map_key *head = NULL, *tail = NULL;
    for (uint32_t i = 0; i < m->nkeys; i++) {
        const struct bl_map_key *k = &m->keys[i];
        switch (k->wild) {
        case BL_MAP_EXACT:
            if (k->len == len && memcmp(k->key, name, len) == 0)
                return k;
            break;
        case BL_MAP_DOT:
            if (k->len - 1 == len && memcmp(k->key + 1, name, len) == 0 &&
                (!head || head->len < k->len))
                head = k;
            __attribute__((fallthrough)); /* ".x" also matches what "*.x" does */
        case BL_MAP_HEAD:
            if (len > k->len && memcmp(name + len - k->len, k->key, k->len) == 0 &&
                (!head || head->len < k->len))
                head = k;
            break;
        case BL_MAP_TAIL:
            if (len > k->len && memcmp(name, k->key, k->len) == 0 &&
                (!tail || tail->len < k->len))
                tail = k;
            break;
        }
    }
    return head ? head : tail;
}
