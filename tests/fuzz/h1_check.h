/* Checks of a parsed HTTP/1.x head that hold for any input: every slice lies in the buffer,
 * values are trimmed and free of CR/LF, the error codes are the header's. Shared by the
 * request, response and split targets. */
#ifndef BL_TESTS_FUZZ_H1_CHECK_H
#define BL_TESTS_FUZZ_H1_CHECK_H

#include <string.h>

#include "http/h1_parser.h"
#include "core/status.h"
#include "fuzz.h"

static inline void fuzz_in(const char *buf, size_t len, const char *s, size_t n)
{
    FUZZ_CHECK(s >= buf && s + n <= buf + len);
}

static inline void h1_check_error(const struct bl_h1_parser *p)
{
    FUZZ_CHECK(p->error == 400 || p->error == 414 || p->error == 431 || p->error == 501 ||
               p->error == 505);
    FUZZ_CHECK(p->reason != NULL);
    FUZZ_CHECK(strcmp(bl_h1_parser_state_str(p), "error") == 0);
}

static inline void h1_check_message(const struct bl_h1_parser *p, const char *buf, size_t len,
                                    int r, const struct bl_h1_message *m)
{
    FUZZ_CHECK((size_t)r <= len);
    FUZZ_CHECK_EQ(m->head_len, r);
    FUZZ_CHECK(m->head_len <= p->max_head);
    FUZZ_CHECK(m->minor_version <= 1);
    FUZZ_CHECK(m->body <= BL_H1_BODY_CLOSE);
    FUZZ_CHECK(m->nheaders <= BL_H1_MAX_HEADERS);
    if (p->is_response) {
        FUZZ_CHECK(m->status >= 100 && m->status <= 599);
        if (m->reason_len)
            fuzz_in(buf, (size_t)r, m->reason, m->reason_len);
    } else {
        fuzz_in(buf, (size_t)r, m->method, m->method_len);
        FUZZ_CHECK(m->method_len > 0);
        fuzz_in(buf, (size_t)r, m->target, m->target_len);
        FUZZ_CHECK(m->path != NULL && m->path_len > 0);
        if (m->query)
            fuzz_in(buf, (size_t)r, m->query, m->query_len);
        if (m->host)
            fuzz_in(buf, (size_t)r, m->host, m->host_len);
        FUZZ_CHECK(m->body != BL_H1_BODY_CLOSE);
    }
    for (unsigned k = 0; k < m->nheaders; k++) {
        const struct bl_h1_header *h = &m->headers[k];
        fuzz_in(buf, (size_t)r, h->name, h->name_len);
        FUZZ_CHECK(h->name_len > 0);
        if (h->value_len) {
            fuzz_in(buf, (size_t)r, h->value, h->value_len);
            FUZZ_CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            FUZZ_CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
            FUZZ_CHECK(!memchr(h->value, '\r', h->value_len));
            FUZZ_CHECK(!memchr(h->value, '\n', h->value_len));
        }
        FUZZ_CHECK(h->id < BL_H1_HDR__COUNT);
        if (h->id != BL_H1_HDR_OTHER)
            FUZZ_CHECK(bl_h1_find(m, (enum bl_h1_hdr_id)h->id) >= 0);
    }
    if (m->flags & BL_H1_F_TE_REWRITE) {
        char line[256];
        size_t n = bl_h1_te_format(m, line, sizeof(line));
        FUZZ_CHECK(n > 0);
        if (n <= sizeof(line))
            FUZZ_CHECK(memcmp(line, "Transfer-Encoding: ", 19) == 0 &&
                       memcmp(line + n - 9, "chunked\r\n", 9) == 0);
    }
    FUZZ_CHECK(strcmp(bl_h1_parser_state_str(p), "done") == 0);
}

#endif
