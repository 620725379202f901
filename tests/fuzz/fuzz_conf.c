/* Fuzz target: a whole config file through the reader and the compiler (what `ballast -t`
 * does), from text so no file is written. Names are never resolved (getaddrinfo below answers
 * for "localhost" only, so no DNS query leaves the machine), and inputs whose directives would
 * open files (include, *_log, *_file, ssl_*) are skipped: the fuzzer must not read /dev/zero
 * or create files wherever it likes. The reader alone gets every input, includes aside. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "conf/conf_parse.h"
#include "core/log.h"
#include "fuzz.h"

/* Replaces libc's resolver for this process (the executable's definition wins). */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    (void)service;
    if (!node || strcmp(node, "localhost") != 0)
        return EAI_NONAME;
    struct {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *r = calloc(1, sizeof(*r));
    if (!r)
        return EAI_MEMORY;
    r->sin.sin_family = AF_INET;
    r->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->ai.ai_family = AF_INET;
    r->ai.ai_socktype = hints ? hints->ai_socktype : SOCK_STREAM;
    r->ai.ai_addr = (struct sockaddr *)&r->sin;
    r->ai.ai_addrlen = sizeof(r->sin);
    *res = &r->ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *res)
{
    free(res); /* the addrinfo is the first member of the one allocation above */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    bl_log_level = BL_LOG_EMERG + 1; /* warnings about odd configs are not findings */
    return 0;
}

static int touches_files(const char *text, size_t n)
{
    static const char *const words[] = {"include", "_log", "_file", "ssl_", "certificate",
                                        "dhparam"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (memmem(text, n, words[i], strlen(words[i])))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char err[1024];
    if (!memmem(text, size, "include", 7)) {
        err[0] = '\0';
        struct bl_conf_node *root = bl_conf_read_string(text, "fuzz.conf", err, sizeof(err));
        if (root)
            bl_conf_free(root);
        else
            FUZZ_CHECK(err[0] != '\0');
    }
    if (!touches_files(text, size)) {
        err[0] = '\0';
        struct bl_config *c = bl_conf_load_string(text, "fuzz.conf", err, sizeof(err));
        if (c)
            bl_conf_release(c);
        else
            FUZZ_CHECK(err[0] != '\0');
    }
    free(text);
    return 0;
}
