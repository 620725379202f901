/* sd_notify without libsystemd: a path socket, an abstract one, and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "assert_eq.h"
#include "core/sd_notify.c"

/* Binds a datagram socket at addr ("/path" or "@name") and returns it. */
static int listen_at(const char *addr)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(addr);
    memcpy(sun.sun_path, addr, len);
    if (addr[0] == '@')
        sun.sun_path[0] = '\0';
    else
        len++;
    ASSERT_EQ(bind(fd, (struct sockaddr *)&sun,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
    return fd;
}

static void expect(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_unset_is_nothing(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    ASSERT_EQ(bl_sd_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    ASSERT_EQ(bl_sd_notify("READY=1"), 0);
}

static void test_path_and_abstract(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/bl-test-notify-%d", (int)getpid());
    unlink(path);
    int fd = listen_at(path);
    setenv("NOTIFY_SOCKET", path, 1);
    ASSERT_EQ(bl_sd_notify("READY=1\nSTATUS=serving"), 1);
    expect(fd, "READY=1\nSTATUS=serving");
    close(fd);
    unlink(path);

    char name[64];
    snprintf(name, sizeof(name), "@bl-test-notify-%d", (int)getpid());
    fd = listen_at(name);
    setenv("NOTIFY_SOCKET", name, 1);
    ASSERT_EQ(bl_sd_notify("STOPPING=1"), 1);
    expect(fd, "STOPPING=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_refused(void **state)
{
    (void)state;
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
    ASSERT_EQ(bl_sd_notify("READY=1"), -1);
    ASSERT_EQ(errno, EAFNOSUPPORT);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    ASSERT_EQ(bl_sd_notify("READY=1"), -1);
    ASSERT_EQ(errno, ENAMETOOLONG);
    setenv("NOTIFY_SOCKET", "/nonexistent/dir/notify", 1);
    ASSERT_EQ(bl_sd_notify("READY=1"), -1);
    ASSERT_EQ(errno, ENOENT);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_is_nothing),
        cmocka_unit_test(test_path_and_abstract),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
