/* Differential fuzz target: resumability of the head parser. The same bytes parsed whole, cut
 * in two at every byte (then given whole: the parser resumes), and fed one byte at a time must
 * give the same result: the same return, error and message, slice for slice. Byte 0 picks a
 * request (bit 0 clear) or a response (bit 0 set; bit 1: it answers HEAD); byte 1 is unused
 * (kept for the corpus format); the rest is the message. While the parser holds a prefix the
 * bytes after it are poisoned, so a read past what it was given is caught under ASan. */
#include <stdlib.h>
#include <string.h>

#include "h1_check.h"

/* Inputs longer than this are cut at MAX_CUTS points spread over them instead of at every
 * byte, so one run stays well under a second. */
#define MAX_CUTS 512

static int is_response, head_request;

static void init(struct bl_h1_parser *p)
{
    if (is_response)
        bl_h1_parser_init_response(p, 8192, 65536, head_request);
    else
        bl_h1_parser_init_request(p, 8192, 65536);
}

static void same_message(const struct bl_h1_message *a, const struct bl_h1_message *b)
{
    FUZZ_CHECK(a->method == b->method && a->method_len == b->method_len);
    FUZZ_CHECK(a->target == b->target && a->target_len == b->target_len);
    FUZZ_CHECK(a->path_len == b->path_len && (a->path_len == 0 || !memcmp(a->path, b->path, a->path_len)));
    FUZZ_CHECK(a->query == b->query && a->query_len == b->query_len);
    FUZZ_CHECK_EQ(a->method_id, b->method_id);
    FUZZ_CHECK_EQ(a->status, b->status);
    FUZZ_CHECK(a->reason_len == b->reason_len &&
               (a->reason_len == 0 || a->reason == b->reason));
    FUZZ_CHECK_EQ(a->minor_version, b->minor_version);
    FUZZ_CHECK_EQ(a->body, b->body);
    FUZZ_CHECK_EQ(a->keep_alive, b->keep_alive);
    FUZZ_CHECK_EQ(a->flags, b->flags);
    FUZZ_CHECK_EQ(a->content_length, b->content_length);
    FUZZ_CHECK(a->host == b->host && a->host_len == b->host_len);
    FUZZ_CHECK_EQ(a->head_len, b->head_len);
    FUZZ_CHECK_EQ(a->nheaders, b->nheaders);
    for (unsigned k = 0; k < a->nheaders; k++) {
        const struct bl_h1_header *x = &a->headers[k], *y = &b->headers[k];
        FUZZ_CHECK(x->name == y->name && x->name_len == y->name_len);
        FUZZ_CHECK(x->value_len == y->value_len && (x->value_len == 0 || x->value == y->value));
        FUZZ_CHECK_EQ(x->id, y->id);
        FUZZ_CHECK_EQ(x->hop, y->hop);
    }
}

/* r and p after the last call, against the whole parse. */
static void same_result(int rw, const struct bl_h1_parser *pw, const struct bl_h1_message *mw,
                        int r, const struct bl_h1_parser *p, const struct bl_h1_message *m)
{
    FUZZ_CHECK_EQ(r, rw);
    if (r == BL_ERR)
        FUZZ_CHECK_EQ(p->error, pw->error);
    else if (r > 0)
        same_message(mw, m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    is_response = data[0] & 1;
    head_request = (data[0] >> 1) & 1;
    size_t n = size - 2;
    char *buf = malloc(n ? n : 1);
    memcpy(buf, data + 2, n);
    static struct bl_h1_message whole, m;
    /* m's own array is small, so that heads move to the heap array at every point of a cut */
    static struct bl_h1_header m_fields[3];
    if (!m.own)
        bl_h1_message_init(&m, m_fields, 3);
    struct bl_h1_parser pw, p;

    init(&pw);
    int rw = bl_h1_parse(&pw, buf, n, &whole);
    if (rw > 0)
        h1_check_message(&pw, buf, n, rw, &whole);
    else if (rw == BL_ERR)
        h1_check_error(&pw);

    size_t step = n > MAX_CUTS ? n / MAX_CUTS : 1;
    for (size_t k = 0; k < n; k += step) {
        init(&p);
        /* the parser must not rely on a zeroed message (its storage part aside) */
        memset(&m, 0xa5, offsetof(struct bl_h1_message, room));
        FUZZ_POISON(buf + k, n - k);
        int r = bl_h1_parse(&p, buf, k, &m);
        FUZZ_UNPOISON(buf + k, n - k);
        if (r == BL_ERR) {
            /* an error in a prefix is an error of the whole */
            FUZZ_CHECK_EQ(rw, BL_ERR);
            FUZZ_CHECK_EQ(p.error, pw.error);
            continue;
        }
        if (r > 0) {
            same_result(rw, &pw, &whole, r, &p, &m);
            continue;
        }
        r = bl_h1_parse(&p, buf, n, &m);
        same_result(rw, &pw, &whole, r, &p, &m);
    }

    /* one byte at a time, the buffer growing */
    init(&p);
    memset(&m, 0x5a, offsetof(struct bl_h1_message, room));
    int r = BL_AGAIN;
    for (size_t k = 1; k <= n && r == BL_AGAIN; k++) {
        FUZZ_POISON(buf + k, n - k);
        r = bl_h1_parse(&p, buf, k, &m);
        FUZZ_UNPOISON(buf + k, n - k);
    }
    same_result(rw, &pw, &whole, r, &p, &m);
    free(buf);
    return 0;
}
