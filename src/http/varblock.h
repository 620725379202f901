/* Variables defined by split_clients and geo blocks (conf.h struct bl_varblock), worked out on
 * their first use in a request and kept in the request for the rest of it, as nginx's are. */
#ifndef BL_HTTP_VARBLOCK_H
#define BL_HTTP_VARBLOCK_H

#include <stddef.h>
#include <stdint.h>

struct bl_request;
struct bl_varblock;
struct bl_split_part;
struct bl_geo_net;
struct bl_ipaddr;

/* b's value for r (nvars: the config's variable count, for r->rw.vars). NULL for empty or when
 * out of memory. Worker thread. */
const char *bl_varblock_value(struct bl_request *r, const struct bl_varblock *b, uint32_t nvars,
                              size_t *len);

/* The part of a split that key[0..len) falls in (nginx's MurmurHash2 buckets); NULL: none
 * (the shares add up to less than 100% and there is no "*"). */
const struct bl_split_part *bl_split_pick(const struct bl_split_part *parts, uint32_t n,
                                          const char *key, size_t len);

/* The value of the longest network in nets that holds a; NULL when none does. An IPv4-mapped
 * IPv6 address is looked up as IPv4, as nginx does. */
const char *bl_geo_find(const struct bl_geo_net *nets, uint32_t n, const struct bl_ipaddr *a);

#endif
