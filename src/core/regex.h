/* Regular expressions for locations, rewrite and if: PCRE2, compiled (and JIT-compiled when the
 * platform allows) once at config load, matched per request without allocating.
 * A compiled regex is immutable: any thread may match against it. */
#ifndef BL_CORE_REGEX_H
#define BL_CORE_REGEX_H

#include <stddef.h>
#include <stdint.h>

/* Capture pairs kept per match: $0 (the whole match) and $1..$9, as nginx's scripts use. */
#define BL_REGEX_MAX_PAIRS 10

struct bl_regex;

/* Compiles pattern (caseless for nginx's "~*"). Returns NULL with err filled in nginx's form:
 * `pcre2_compile() failed: missing closing parenthesis in "(a" (offset 2)` (with ` at "REST"`
 * before the offset when it is not at the end), or
 * "out of memory". Control thread. */
struct bl_regex *bl_regex_compile(const char *pattern, int caseless, char *err, size_t errlen);
void bl_regex_free(struct bl_regex *re);

/* The pattern as written. */
const char *bl_regex_pattern(const struct bl_regex *re);
/* Number of capture groups in the pattern (not counting the whole match). */
uint32_t bl_regex_ncaptures(const struct bl_regex *re);
/* The group number of the named group (?<name>...), or -1. */
int bl_regex_group(const struct bl_regex *re, const char *name, size_t len);
/* Calls fn for every named group: name (NUL-terminated) and its number. */
void bl_regex_each_name(const struct bl_regex *re, void (*fn)(void *arg, const char *name,
                                                               int group), void *arg);

/* Matches subject[0..len). Returns the number of pairs set in ovec (at least 1: ovec[0],
 * ovec[1] bound the whole match; a group that did not take part has both ends UINT32_MAX),
 * up to npairs; 0 when it does not match; BL_ERR (-1) when the match failed (match limit,
 * logged by the caller). Any thread; no allocation. */
int bl_regex_exec(const struct bl_regex *re, const char *subject, size_t len, uint32_t *ovec,
                  uint32_t npairs);

#endif
