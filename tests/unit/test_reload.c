/* Reload, the parts that need no running worker: a new generation's listening sockets diffed
 * against the previous one's by address, servers kept by identity (upstream name + address)
 * sharing their runtime state, and the identity maps that carry statistics over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include "../../src/reload.c"

#include "assert_eq.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static struct bl_config *load(const char *fmt, int p1, int p2)
{
    char text[2048], err[512] = "";
    snprintf(text, sizeof(text), fmt, p1, p2);
    struct bl_config *cfg = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!cfg)
        fail_msg("config: %s", err);
    return cfg;
}

static const char conf1[] =
    "events { }\n"
    "http {\n"
    "  access_log off;\n"
    "  upstream app { server 127.0.0.1:9101; server 127.0.0.1:9102; }\n"
    "  upstream gone { server 127.0.0.1:9301; }\n"
    "  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d; server_name a;\n"
    "    location / { proxy_pass http://app; }\n"
    "    location /g/ { proxy_pass http://gone; } }\n"
    "}\n";

/* Second listen replaced by a new one; 9101 removed, 9102 kept (now with a weight), 9103
 * added; the group "gone" removed; location / kept, /g/ removed, /n/ added. */
static const char conf2[] =
    "events { }\n"
    "http {\n"
    "  access_log off;\n"
    "  upstream app { server 127.0.0.1:9103; server 127.0.0.1:9102 weight=5; }\n"
    "  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d; server_name a;\n"
    "    location /n/ { return 200; }\n"
    "    location / { proxy_pass http://app; } }\n"
    "}\n";

static struct bl_upstream_server *server(const struct bl_config *cfg, const char *group,
                                         const char *name)
{
    for (uint32_t g = 0; g < cfg->ngroups; g++)
        if (strcmp(cfg->groups[g]->name, group) == 0)
            for (uint32_t k = 0; k < cfg->groups[g]->nservers; k++)
                if (strcmp(cfg->groups[g]->servers[k].name, name) == 0)
                    return &cfg->groups[g]->servers[k];
    fail_msg("no server %s in %s", name, group);
    return NULL;
}

static void test_generation_diff(void **state)
{
    (void)state;
    int pa = free_port(), pb = free_port(), pc = free_port();
    char err[512] = "";
    struct bl_config *c1 = load(conf1, pa, pb);
    struct bl_generation *g1 = bl_generation_create(c1, 2, NULL, err, sizeof(err));
    if (!g1)
        fail_msg("%s", err);
    for (int i = 0; i < 2 * 2; i++)
        assert_true(g1->fds[i] >= 0);
    struct bl_upstream_server *kept_old = server(c1, "app", "127.0.0.1:9102");
    /* The generation gave each state a counts line per worker: the second worker's count. */
    ASSERT_EQ(kept_old->state->nworkers, 2);
    atomic_store(&kept_old->state->per_worker[1].requests, 41);

    struct bl_config *c2 = load(conf2, pa, pc);
    struct bl_generation *g2 = bl_generation_create(c2, 2, g1, err, sizeof(err));
    if (!g2)
        fail_msg("%s", err);
    ASSERT_EQ(g2->number, 2);
    ASSERT_EQ(g2->prev_number, 1);
    /* pa is kept: each worker keeps its own socket (-1 here); pc is opened for each worker. */
    for (int w = 0; w < 2; w++) {
        ASSERT_EQ(g2->fds[w * 2 + 0], -1);
        assert_true(g2->fds[w * 2 + 1] >= 0);
    }
    /* State shared by identity; a new server starts fresh; a removed one maps to nothing. */
    struct bl_upstream_server *kept = server(c2, "app", "127.0.0.1:9102");
    assert_ptr_equal(kept->state, kept_old->state);
    ASSERT_EQ(atomic_load(&kept->state->refs), 2);
    ASSERT_EQ(bl_server_requests(kept), 41);
    assert_ptr_equal(kept->group->gstate, kept_old->group->gstate);
    assert_ptr_equal(g2->server_map[kept_old->id], kept);
    assert_null(g2->server_map[server(c1, "app", "127.0.0.1:9101")->id]);
    assert_null(g2->server_map[server(c1, "gone", "127.0.0.1:9301")->id]);
    assert_true(server(c2, "app", "127.0.0.1:9103")->state != kept->state);

    /* Statistics identity maps. */
    struct id_maps m = {0};
    ASSERT_EQ(maps_build(&m, c1, c2), BL_OK);
    ASSERT_EQ(m.listens[0], 0);
    ASSERT_EQ(m.listens[1], UINT32_MAX);
    ASSERT_EQ(m.servers[0], 0);
    ASSERT_EQ(m.peers[kept_old->id], kept->id);
    ASSERT_EQ(m.peers[server(c1, "app", "127.0.0.1:9101")->id], UINT32_MAX);
    const struct bl_server_block *s1 = c1->servers[0], *s2 = c2->servers[0];
    for (uint32_t k = 0; k < s1->nprefix; k++) {
        const struct bl_location *l = s1->prefix[k];
        if (strcmp(l->path, "/") == 0) {
            uint32_t to = m.locations[l->index];
            assert_true(to != UINT32_MAX);
            int found = 0;
            for (uint32_t j = 0; j < s2->nprefix; j++)
                found |= s2->prefix[j]->index == to && strcmp(s2->prefix[j]->path, "/") == 0;
            assert_true(found);
        } else {
            ASSERT_EQ(m.locations[l->index], UINT32_MAX);
        }
    }
    maps_free(&m);

    /* The old generation goes first; the kept state lives on with the new one. */
    bl_generation_free(g1);
    ASSERT_EQ(atomic_load(&kept->state->refs), 1);
    ASSERT_EQ(bl_server_requests(kept), 41);
    bl_generation_free(g2);
}

/* A new address that cannot be bound refuses the generation and leaves the old one whole. */
static void test_bind_failure_refused(void **state)
{
    (void)state;
    int pa = free_port(), pb = free_port();
    char err[512] = "";
    struct bl_config *c1 = load(conf1, pa, pb);
    struct bl_generation *g1 = bl_generation_create(c1, 1, NULL, err, sizeof(err));
    assert_non_null(g1);
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    int pc = free_port();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)pc),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(busy, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(busy, 1), 0);
    struct bl_config *c2 = load(conf2, pa, pc);
    struct bl_upstream_server *kept_old = server(c1, "app", "127.0.0.1:9102");
    assert_null(bl_generation_create(c2, 1, g1, err, sizeof(err)));
    assert_non_null(strstr(err, "bind()"));
    ASSERT_EQ(atomic_load(&kept_old->state->refs), 1);
    bl_conf_release(c2);
    close(busy);
    bl_generation_free(g1);
}

/* An upgrade's new process: inherited sockets are taken for their address as they are (no
 * probe: the old process still listens there), a worker more gets a socket of its own, an
 * address nobody inherited is bound; the malformed is refused. */
static void test_inherited_sockets(void **state)
{
    (void)state;
    char err[512] = "";
    int pa = free_port(), pb = free_port();
    struct bl_config *c0 = load(conf1, pa, pb);
    struct bl_generation *old = bl_generation_create(c0, 1, NULL, err, sizeof(err));
    assert_non_null(old);
    int fa = old->fds[0];
    char spec[128];
    /* A copy: a generation that fails closes what it took. */
    snprintf(spec, sizeof(spec), "127.0.0.1:%d=%d", pa, dup(fa));
    ASSERT_EQ(bl_generation_inherit(spec, err, sizeof(err)), BL_OK);
    struct bl_config *c1 = load(conf1, pa, pb);
    /* pb is still listened on by `old` without an inherited socket: refused as in use. */
    assert_null(bl_generation_create(c1, 2, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "bind()"));
    bl_generation_inherit_done();
    bl_conf_release(c1);

    snprintf(spec, sizeof(spec), "127.0.0.1:%d=%d;127.0.0.1:%d=%d", pa, fa, pb, old->fds[1]);
    ASSERT_EQ(bl_generation_inherit(spec, err, sizeof(err)), BL_OK);
    c1 = load(conf1, pa, pb);
    struct bl_generation *g = bl_generation_create(c1, 2, NULL, err, sizeof(err));
    if (!g)
        fail_msg("%s", err);
    bl_generation_inherit_done();
    ASSERT_EQ(g->fds[0], fa);              /* worker 1, pa: the inherited socket */
    ASSERT_EQ(g->fds[1], old->fds[1]);     /* worker 1, pb */
    if (g->fds[2] < 0 || g->fds[2] == fa)
        fail_msg("fds %d %d %d %d, fa %d", g->fds[0], g->fds[1], g->fds[2], g->fds[3], fa);
    assert_true(g->fds[3] >= 0);
    old->fds[0] = old->fds[1] = -1;        /* handed over: g owns them now */
    bl_generation_free(g);
    bl_generation_free(old);

    ASSERT_EQ(bl_generation_inherit("127.0.0.1:1", err, sizeof(err)), BL_ERR);
    bl_generation_inherit_done();
    ASSERT_EQ(bl_generation_inherit("127.0.0.1:1=x", err, sizeof(err)), BL_ERR);
    assert_non_null(strstr(err, "malformed"));
    bl_generation_inherit_done();
}

static void test_live_checks(void **state)
{
    (void)state;
    char err[512] = "";
    int pa = free_port(), pb = free_port();
    struct bl_config *c1 = load(conf1, pa, pb);
    struct bl_config *c2 = load(conf1, pa, pb);
    bl_buf_set_size(c1->max_head + 1024); /* as main() does */
    ASSERT_EQ(check_live(c1, c2, err, sizeof(err)), BL_OK);
    c2->workers = c1->workers + 1;
    ASSERT_EQ(check_live(c1, c2, err, sizeof(err)), BL_ERR);
    assert_non_null(strstr(err, "worker_processes"));
    assert_non_null(strstr(err, "restart"));
    c2->workers = c1->workers;
    c2->max_head = bl_buf_size(); /* larger header buffers than the ones allocated */
    ASSERT_EQ(check_live(c1, c2, err, sizeof(err)), BL_ERR);
    assert_non_null(strstr(err, "large_client_header_buffers"));
    bl_conf_release(c1);
    bl_conf_release(c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generation_diff),
        cmocka_unit_test(test_bind_failure_refused),
        cmocka_unit_test(test_inherited_sockets),
        cmocka_unit_test(test_live_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
