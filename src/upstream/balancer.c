/* The balancer registry: method names, as the config compiler looks them up (balancer.h). */
#include <string.h>

#include "upstream/balancer.h"

static const struct bl_balancer_ops *const balancers[] = {
    &bl_balancer_rr,
    &bl_balancer_least_conn,
    &bl_balancer_ip_hash,
    &bl_balancer_hash,
    &bl_balancer_hash_consistent,
    &bl_balancer_hash_maglev,
    &bl_balancer_random,
    &bl_balancer_least_time,
};

const struct bl_balancer_ops *bl_balancer_find(const char *name)
{
    for (size_t i = 0; i < sizeof(balancers) / sizeof(balancers[0]); i++)
        if (strcmp(balancers[i]->name, name) == 0)
            return balancers[i];
    return NULL;
}
