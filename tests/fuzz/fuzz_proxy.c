/* Fuzz target: the PROXY protocol header reader (v1 and v2). Every prefix of a header it
 * accepts must say "need more"; once a prefix is refused every longer one is too (it refuses
 * at the first byte that cannot belong to a header); and an address it reads, written back by
 * bl_pp_write() in the same version, reads back the same (binary: the text is kept as sent,
 * "2001:db8::01", as nginx keeps it). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/proxy_proto.h"
#include "fuzz.h"

static void to_sockaddr(int family, const uint8_t *a, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a, 4);
        in->sin_port = htons(port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, a, 16);
        in6->sin6_port = htons(port);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct bl_pp_info info, part;
    const char *reason = NULL;
    int r = bl_pp_parse(buf, size, &info, &reason);
    FUZZ_CHECK(r == -1 || r == -2 || (r > 0 && (size_t)r <= size && r <= BL_PP_MAX_HEADER));
    if (r == -1)
        FUZZ_CHECK(reason != NULL);

    /* prefixes, each in an exact-size copy so a read past it is caught */
    int refused = 0;
    size_t upto = r > 0 ? (size_t)r : size;
    for (size_t k = 0; k < upto; k++) {
        char *p = malloc(k ? k : 1);
        memcpy(p, buf, k);
        const char *why = NULL;
        int rk = bl_pp_parse(p, k, &part, &why);
        free(p);
        if (r > 0)
            FUZZ_CHECK_EQ(rk, -2);
        if (refused)
            FUZZ_CHECK_EQ(rk, -1);
        if (rk == -1)
            refused = 1;
    }
    if (refused)
        FUZZ_CHECK_EQ(r, -1);

    if (r > 0) {
        FUZZ_CHECK(info.version == 1 || info.version == 2);
        if (info.has_addr) {
            FUZZ_CHECK(info.family == AF_INET || info.family == AF_INET6);
            FUZZ_CHECK(memchr(info.src_ip, 0, sizeof(info.src_ip)) && info.src_ip[0]);
            struct sockaddr_storage src, dst;
            to_sockaddr(info.family, info.src, info.src_port, &src);
            to_sockaddr(info.family, info.dst, info.dst_port, &dst);
            char out[BL_PP_WRITE_MAX];
            size_t n = bl_pp_write(info.version, (struct sockaddr *)&src,
                                   (struct sockaddr *)&dst, out, sizeof(out));
            FUZZ_CHECK(n > 0);
            struct bl_pp_info back;
            FUZZ_CHECK_EQ(bl_pp_parse(out, n, &back, &reason), n);
            FUZZ_CHECK_EQ(back.family, info.family);
            FUZZ_CHECK(memcmp(back.src, info.src, info.family == AF_INET ? 4 : 16) == 0);
            FUZZ_CHECK(memcmp(back.dst, info.dst, info.family == AF_INET ? 4 : 16) == 0);
            FUZZ_CHECK_EQ(back.src_port, info.src_port);
            FUZZ_CHECK_EQ(back.dst_port, info.dst_port);
        }
    }
    free(buf);
    return 0;
}
