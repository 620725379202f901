/* PCRE2 behind a small interface: compile with JIT once, match with a per-thread match block. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/regex.h"
#include "core/status.h"

struct bl_regex {
    pcre2_code *code;
    char *pattern;
    uint32_t ncaptures;
    uint8_t jit;                    /* pcre2_jit_compile() succeeded: use pcre2_jit_match() */
};

/* The match data block lives in thread-local storage rather than on the heap: PCRE2 asks for
 * it through this general context, so a match allocates nothing and a worker thread that
 * exits leaves nothing behind. One block per thread is enough: matches never nest. */
#define MATCH_BLOCK_SIZE 1024
static __thread _Alignas(16) unsigned char match_block[MATCH_BLOCK_SIZE];

static __thread int match_block_used;
static int creating_context;    /* the context itself comes from the heap */

static void *block_malloc(size_t size, void *data)
{
    (void)data;
    if (creating_context)
        return malloc(size);
    if (size > sizeof(match_block) || match_block_used)
        return NULL;
    match_block_used = 1;
    return match_block;
}

static void block_free(void *p, void *data)
{
    (void)data;
    if (p == match_block)
        match_block_used = 0;
    else
        free(p);
}

/* The thread's match data, made once in the thread's block and kept: a match allocates
 * nothing and there is nothing to free when the thread ends. */
static __thread pcre2_match_data *thread_md;

static pcre2_general_context *match_context(void)
{
    /* Created on first use at load (control thread) and never freed: a few bytes holding two
     * function pointers, read-only afterwards. */
    static pcre2_general_context *ctx;
    if (!ctx) {
        creating_context = 1;
        ctx = pcre2_general_context_create(block_malloc, block_free, NULL);
        creating_context = 0;
    }
    return ctx;
}

struct bl_regex *bl_regex_compile(const char *pattern, int caseless, char *err, size_t errlen)
{
    if (!match_context()) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct bl_regex *re = calloc(1, sizeof(*re));
    if (!re || !(re->pattern = strdup(pattern))) {
        free(re);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int code;
    PCRE2_SIZE off;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                             caseless ? PCRE2_CASELESS : 0, &code, &off, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", code);
        /* nginx's words, and the offset */
        if (off == strlen(pattern))
            snprintf(err, errlen, "pcre2_compile() failed: %s in \"%s\" (offset %zu)",
                     (char *)msg, pattern, (size_t)off);
        else
            snprintf(err, errlen, "pcre2_compile() failed: %s in \"%s\" at \"%s\" (offset %zu)",
                     (char *)msg, pattern, pattern + off, (size_t)off);
        bl_regex_free(re);
        return NULL;
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    uint32_t n = 0;
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &n);
    re->ncaptures = n;
    /* The match block must hold the largest ovector a pattern can ask for (checked once per
     * thread: afterwards the thread's match data holds the block). */
    pcre2_match_data *md = thread_md ? NULL
                                     : pcre2_match_data_create(BL_REGEX_MAX_PAIRS, match_context());
    if (!thread_md && !md) {
        snprintf(err, errlen, "out of memory");
        bl_regex_free(re);
        return NULL;
    }
    pcre2_match_data_free(md);
    return re;
}

void bl_regex_free(struct bl_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    free(re->pattern);
    free(re);
}

const char *bl_regex_pattern(const struct bl_regex *re) { return re->pattern; }

uint32_t bl_regex_ncaptures(const struct bl_regex *re) { return re->ncaptures; }

int bl_regex_group(const struct bl_regex *re, const char *name, size_t len)
{
    char buf[64];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, name, len);
    buf[len] = '\0';
    int n = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)buf);
    return n > 0 ? n : -1;
}

void bl_regex_each_name(const struct bl_regex *re, void (*fn)(void *arg, const char *name,
                                                               int group), void *arg)
{
    uint32_t count = 0, size = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + i * size;
        fn(arg, (const char *)(e + 2), (e[0] << 8) | e[1]);
    }
}

int bl_regex_exec(const struct bl_regex *re, const char *subject, size_t len, uint32_t *ovec,
                  uint32_t npairs)
{
    /* Without JIT the interpreter wants heap frames from the match data's allocator: that rare
     * build gets an ordinary heap block per match instead. */
    pcre2_match_data *md;
    if (re->jit) {
        if (!thread_md)
            thread_md = pcre2_match_data_create(BL_REGEX_MAX_PAIRS, match_context());
        md = thread_md;
    } else {
        md = pcre2_match_data_create(BL_REGEX_MAX_PAIRS, NULL);
    }
    if (!md)
        return BL_ERR;
    int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, md, NULL)
                     : pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, md, NULL);
    int got = 0;
    if (rc == PCRE2_ERROR_NOMATCH) {
        got = 0;
    } else if (rc < 0) {
        got = BL_ERR;
    } else {
        /* rc 0: the ovector was too small for every group; it is full. */
        uint32_t n = rc == 0 ? BL_REGEX_MAX_PAIRS : (uint32_t)rc;
        if (n > npairs)
            n = npairs;
        const PCRE2_SIZE *v = pcre2_get_ovector_pointer(md);
        for (uint32_t i = 0; i < 2 * n; i++)
            ovec[i] = v[i] == PCRE2_UNSET ? UINT32_MAX : (uint32_t)v[i];
        got = (int)n;
    }
    if (md != thread_md)
        pcre2_match_data_free(md);
    return got;
}
