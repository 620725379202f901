/* Fuzz target (resolve): the DNS answer parser of `server NAME resolve` (core/dns.h). The input is an
 * answer to an A (byte 3 bit 6, the Z bit, clear) or AAAA question for "svc.example.test"
 * whose id is its own first two bytes, so the header check passes and the fuzzer reaches the
 * records. Every address kept has the asked family; every prefix of the input parses
 * without reading past it; a query the writer makes is never taken for an answer. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/dns.h"
#include "core/status.h"
#include "fuzz.h"

static const char NAME[] = "svc.example.test";

static void one(const uint8_t *data, size_t size, uint16_t type)
{
    uint8_t *copy = malloc(size ? size : 1); /* its own allocation: ASan sees overreads */
    memcpy(copy, data, size);
    uint16_t id = size >= 2 ? (uint16_t)((data[0] << 8) | data[1]) : 0;
    struct bl_dns_addr out[8];
    struct bl_dns_result res;
    if (bl_dns_parse(copy, size, id, NAME, type, out, 8, &res) == BL_OK) {
        FUZZ_CHECK(res.naddrs <= 8);
        for (uint32_t i = 0; i < res.naddrs; i++) {
            FUZZ_CHECK(out[i].family == (type == BL_DNS_A ? AF_INET : AF_INET6));
            FUZZ_CHECK(out[i].ttl <= 0x7fffffffu);
        }
        FUZZ_CHECK(res.naddrs == 0 || res.min_ttl <= 0x7fffffffu);
        FUZZ_CHECK(res.rcode >= 0 && res.rcode <= 15);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t type = size > 3 && (data[3] & 0x40) ? BL_DNS_AAAA : BL_DNS_A;
    one(data, size, type);
    for (size_t cut = 0; cut < size && cut < 64; cut++)
        one(data, cut, type);

    uint8_t q[300];
    int ql = bl_dns_query(0x1234, NAME, type, q, sizeof(q));
    FUZZ_CHECK(ql > 12);
    struct bl_dns_addr out[1];
    struct bl_dns_result res;
    FUZZ_CHECK(bl_dns_parse(q, (size_t)ql, 0x1234, NAME, type, out, 1, &res) == BL_ERR);
    return 0;
}
