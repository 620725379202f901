/* Fuzz target: the DNS front end's query parser and answers (dns/dns_msg.h, dns/dns.h), with
 * the zone example.test compiled from a config once. The parser never reads past what it was
 * given (an exact-size copy); a query it accepts has a lowercased name of at most 255 bytes
 * inside the datagram; an answer echoes the id, has QR set, fits the size the query allows
 * (512, or its EDNS size up to 1232), and comes only for datagrams the parser did not drop;
 * what the answer's header counts is what follows it. */
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/dns_conf.h"
#include "dns/dns.h"
#include "dns/dns_msg.h"
#include "fuzz.h"

static struct bl_config *cfg;

static const char conf_text[] =
    "http { upstream sites { server 10.0.0.1:80; server 10.0.0.2:80; server [2001:db8::1]:80;\n"
    "  server 10.0.0.9:80 backup; }\n"
    "  server { listen 127.0.0.1:18997; location / { return 200; } } }\n"
    "dns { listen 127.0.0.1:15397 udp; zone example.test; ttl 5s;\n"
    "  record www A upstream=sites; record www AAAA upstream=sites;\n"
    "  record api.eu A upstream=sites; record @ A upstream=sites; }\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[512];
    cfg = bl_conf_load_string(conf_text, "fuzz.conf", err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "fuzz_dns: %s\n", err);
        abort();
    }
    return 0;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Skips a name in an answer we wrote (pointers end it); -1 if it runs past len. */
static long skip_name(const uint8_t *p, size_t len, size_t o)
{
    while (o < len) {
        if ((p[o] & 0xc0) == 0xc0)
            return o + 2 <= len ? (long)(o + 2) : -1;
        if (p[o] == 0)
            return (long)(o + 1);
        o += 1u + p[o];
    }
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg)
        LLVMFuzzerInitialize(NULL, NULL);
    uint8_t *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    struct bl_dns_query q;
    enum bl_dns_parse r = bl_dns_parse_query(in, size, &q);
    FUZZ_CHECK(r >= BL_DNS_PARSE_OK && r <= BL_DNS_PARSE_BADVERS);
    if (r == BL_DNS_PARSE_OK) {
        FUZZ_CHECK(q.name_len >= 1 && q.name_len <= BL_DNS_NAME_MAX);
        FUZZ_CHECK(q.name[q.name_len - 1] == 0);
        for (size_t i = 0; i < q.name_len; i++)
            FUZZ_CHECK(!(q.name[i] >= 'A' && q.name[i] <= 'Z'));
        FUZZ_CHECK(q.question == in + BL_DNS_HEADER);
        FUZZ_CHECK(q.question_len == q.name_len + 4 && BL_DNS_HEADER + q.question_len <= size);
    }
    uint8_t out[BL_DNS_UDP_MAX + 64];
    memset(out, 0xee, sizeof(out));
    size_t len = bl_dns_respond(cfg->dns, in, size, out, BL_DNS_UDP_MAX, 1000);
    if (r == BL_DNS_PARSE_DROP) {
        FUZZ_CHECK_EQ(len, 0);
    } else {
        FUZZ_CHECK(len >= BL_DNS_HEADER);
        size_t limit = r == BL_DNS_PARSE_OK ? bl_dns_answer_limit(&q) : BL_DNS_UDP_MAX;
        FUZZ_CHECK(len <= limit);
        FUZZ_CHECK(memcmp(out, in, 2) == 0);
        FUZZ_CHECK(out[2] & 0x80);
        FUZZ_CHECK(out[len] == 0xee);                /* nothing written past the length */
        /* Walk what the header counts: question, then records. */
        size_t o = BL_DNS_HEADER;
        for (unsigned i = 0; i < rd16(out + 4); i++) {
            long e = skip_name(out, len, o);
            FUZZ_CHECK(e > 0 && (size_t)e + 4 <= len);
            o = (size_t)e + 4;
        }
        unsigned records = (unsigned)rd16(out + 6) + rd16(out + 8) + rd16(out + 10);
        for (unsigned i = 0; i < records; i++) {
            long e = skip_name(out, len, o);
            FUZZ_CHECK(e > 0 && (size_t)e + 10 <= len);
            o = (size_t)e + 10 + rd16(out + e + 8);
            FUZZ_CHECK(o <= len);
        }
        FUZZ_CHECK_EQ(o, len);
    }
    free(in);
    return 0;
}
