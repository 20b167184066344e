/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for listening sockets: address parsing, accepting on real TCP and unix sockets, socket activation. */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "net/listen.h"
#include "basic/macro.h"
#include "test/test.h"

#define MSEC 1000ULL
#define SEC 1000000ULL

static char tmp_dir[] = "/tmp/test-listen.XXXXXX";

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        ASSERT_NOT_NULL(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

/* ---- listen_parse_address ---- */

static void parse_ok(const char *address, int family, const char *host, unsigned port) {
        struct sockaddr_storage ss;
        unsigned len = 0;
        char buf[INET6_ADDRSTRLEN];

        memset(&ss, 0xAA, sizeof ss);
        if (listen_parse_address(address, &ss, &len) < 0) {
                fprintf(stderr, "refused: %s\n", address);
                ASSERT_TRUE(!"a good address was refused");
        }
        ASSERT_INT_EQ(ss.ss_family, family);
        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;

                ASSERT_INT_EQ(len, sizeof *in);
                ASSERT_NOT_NULL(inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf));
                ASSERT_STREQ(buf, host);
                ASSERT_INT_EQ(ntohs(in->sin_port), port);
        } else if (family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

                ASSERT_INT_EQ(len, sizeof *in6);
                ASSERT_NOT_NULL(inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf));
                ASSERT_STREQ(buf, host);
                ASSERT_INT_EQ(ntohs(in6->sin6_port), port);
                /* No stray flow info or scope from the 0xAA fill. */
                ASSERT_INT_EQ(in6->sin6_flowinfo, 0);
                ASSERT_INT_EQ(in6->sin6_scope_id, 0);
        } else {
                struct sockaddr_un *un = (struct sockaddr_un *) &ss;

                ASSERT_INT_EQ(len, offsetof(struct sockaddr_un, sun_path) + strlen(host) + 1);
                ASSERT_STREQ(un->sun_path, host);
        }
}

static void parse_bad(const char *address) {
        struct sockaddr_storage ss;
        unsigned len = 4242;

        if (listen_parse_address(address, &ss, &len) != -EINVAL) {
                fprintf(stderr, "accepted: \"%s\"\n", address);
                ASSERT_TRUE(!"a bad address was accepted");
        }
        ASSERT_INT_EQ(len, 4242);
}

static void test_parse(void) {
        char path[200], addr[220];

        parse_ok("127.0.0.1:8080", AF_INET, "127.0.0.1", 8080);
        parse_ok("0.0.0.0:1", AF_INET, "0.0.0.0", 1);
        parse_ok("255.255.255.255:65535", AF_INET, "255.255.255.255", 65535);
        parse_ok("[::1]:8080", AF_INET6, "::1", 8080);
        parse_ok("[::]:443", AF_INET6, "::", 443);
        parse_ok("[2001:db8::42]:80", AF_INET6, "2001:db8::42", 80);
        parse_ok("[::ffff:192.0.2.1]:80", AF_INET6, "::ffff:192.0.2.1", 80);
        parse_ok("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:9", AF_INET6,
                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 9);
        parse_ok("unix:/run/multichat/http.sock", AF_UNIX, "/run/multichat/http.sock", 0);
        parse_ok("unix:/x", AF_UNIX, "/x", 0);

        /* The documented limit for unix paths: 107 bytes. */
        memset(path, 'p', sizeof path);
        path[0] = '/';
        path[107] = 0;
        snprintf(addr, sizeof addr, "unix:%s", path);
        parse_ok(addr, AF_UNIX, path, 0);
        path[107] = 'p';
        path[108] = 0;
        snprintf(addr, sizeof addr, "unix:%s", path);
        parse_bad(addr);

        parse_bad("");
        parse_bad(":");
        parse_bad(":80");
        parse_bad("80");
        parse_bad("127.0.0.1");
        parse_bad("127.0.0.1:");
        parse_bad("127.0.0.1:0");
        parse_bad("127.0.0.1:65536");
        parse_bad("127.0.0.1:4294967376");     /* 2^32 + 80 */
        parse_bad("127.0.0.1:18446744073709551696");
        parse_bad("127.0.0.1:-1");
        parse_bad("127.0.0.1:80x");
        parse_bad("127.0.0.1:0x50");
        parse_bad("127.0.0.1:80:80");
        parse_bad("127.1:80");
        parse_bad("127.0.0.256:80");
        parse_bad("localhost:80");
        parse_bad("*:80");
        parse_bad("::1:80");
        parse_bad("[::1]");
        parse_bad("[::1]80");
        parse_bad("[::1:80");
        parse_bad("::1]:80");
        parse_bad("[]:80");
        parse_bad("[:]:80");
        parse_bad("[127.0.0.1]:80");
        parse_bad("[fe80::1%lo]:80");
        parse_bad("[::1] :80");
        parse_bad("unix:");
        parse_bad("unix:relative.sock");
        parse_bad("UNIX:/x");
        parse_bad("tcp:127.0.0.1:80");

        /* Long hosts are refused, not overflowed (ASan). */
        {
                char big[600];

                memset(big, '1', sizeof big);
                strcpy(big + sizeof big - 4, ":80");
                parse_bad(big);
                big[0] = '[';
                strcpy(big + sizeof big - 5, "]:80");
                parse_bad(big);
        }
}

/* ---- the Listener ---- */

typedef struct Accepted {
        Listener *stop;         /* set: stop accepting from inside the handler */
        unsigned n;
        int fds[512];
        char peers[512][64];
} Accepted;

static void on_accept(int fd, const char *peer, void *userdata) {
        Accepted *a = userdata;

        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(a->n < ELEMENTSOF(a->fds));
        a->fds[a->n] = fd;
        snprintf(a->peers[a->n], sizeof a->peers[a->n], "%s", peer);
        a->n++;
        if (a->stop)
                ASSERT_OK(listener_set_accepting(a->stop, false));
}

static void accepted_close(Accepted *a) {
        for (unsigned i = 0; i < a->n; i++)
                safe_close(a->fds[i]);
        a->n = 0;
}

static bool run_until_accepted(sd_event *e, Accepted *a, unsigned n, uint64_t timeout) {
        uint64_t end = now_usec() + timeout;

        while (a->n < n && now_usec() < end)
                ASSERT_OK(sd_event_run(e, 20 * MSEC));
        return a->n >= n;
}

static void run_for(sd_event *e, uint64_t usec) {
        uint64_t end = now_usec() + usec;

        while (now_usec() < end)
                ASSERT_OK(sd_event_run(e, 10 * MSEC));
}

static int connect_to(int family, const char *host, unsigned port) {
        struct sockaddr_storage ss = {};
        socklen_t len;
        int fd;

        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;

                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                ASSERT_INT_EQ(inet_pton(AF_INET, host, &in->sin_addr), 1);
                len = sizeof *in;
        } else if (family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                ASSERT_INT_EQ(inet_pton(AF_INET6, host, &in6->sin6_addr), 1);
                len = sizeof *in6;
        } else {
                struct sockaddr_un *un = (struct sockaddr_un *) &ss;

                un->sun_family = AF_UNIX;
                ASSERT_TRUE(strlen(host) < sizeof un->sun_path);
                strcpy(un->sun_path, host);
                len = sizeof *un;
        }
        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        if (connect(fd, (struct sockaddr *) &ss, len) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static unsigned local_port(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *) &ss, &len), 0);
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *) &ss)->sin_port);
        return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
}

/* A port that was free a moment ago; the listener is then given it. */
static unsigned free_port(int family) {
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage ss = { .ss_family = family };
        unsigned port;

        ASSERT_TRUE(fd >= 0);
        if (family == AF_INET)
                ((struct sockaddr_in *) &ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_INT_EQ(bind(fd, (struct sockaddr *) &ss,
                           family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)), 0);
        port = local_port(fd);
        close(fd);
        return port;
}

/* host: "127.0.0.1" or "[::1]". */
static int add_tcp(Listener *l, const char *host, int family, unsigned *ret_port) {
        char addr[80];
        int r = -EADDRINUSE;

        for (unsigned i = 0; i < 10 && r == -EADDRINUSE; i++) {
                *ret_port = free_port(family);
                snprintf(addr, sizeof addr, "%s:%u", host, *ret_port);
                r = listener_add_address(l, addr);
        }
        return r;
}

static void check_accepted_fd(int fd, bool tcp) {
        int flags = fcntl(fd, F_GETFL), fdflags = fcntl(fd, F_GETFD), v = 0;
        socklen_t len = sizeof v;

        ASSERT_TRUE(flags >= 0 && (flags & O_NONBLOCK));
        ASSERT_TRUE(fdflags >= 0 && (fdflags & FD_CLOEXEC));
        if (tcp) {
                ASSERT_INT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
                ASSERT_TRUE(v != 0);
        }
}

static void test_tcp4(sd_event *e) {
        _cleanup_(listener_freep) Listener *l = NULL;
        Accepted a = {};
        unsigned port;
        char expect[64];
        int c;

        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_INT_EQ(listener_count(l), 0);
        ASSERT_OK(add_tcp(l, "127.0.0.1", AF_INET, &port));
        ASSERT_INT_EQ(listener_count(l), 1);

        c = connect_to(AF_INET, "127.0.0.1", port);
        ASSERT_TRUE(c >= 0);
        ASSERT_TRUE(run_until_accepted(e, &a, 1, 2 * SEC));
        ASSERT_INT_EQ(a.n, 1);
        snprintf(expect, sizeof expect, "127.0.0.1:%u", local_port(c));
        ASSERT_STREQ(a.peers[0], expect);
        check_accepted_fd(a.fds[0], true);

        /* The accepted fd really is the other end. */
        ASSERT_INT_EQ(write(c, "ping", 4), 4);
        {
                char buf[8] = {};
                uint64_t end = now_usec() + 2 * SEC;
                ssize_t n;

                while ((n = read(a.fds[0], buf, sizeof buf)) < 0 && errno == EAGAIN && now_usec() < end)
                        usleep(1000);
                ASSERT_INT_EQ(n, 4);
                ASSERT_STREQ(buf, "ping");
        }
        close(c);

        /* Binding the same address again fails and leaks nothing. */
        {
                unsigned before = count_fds();
                char addr[64];

                snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
                ASSERT_ERROR(listener_add_address(l, addr), EADDRINUSE);
                ASSERT_INT_EQ(listener_count(l), 1);
                ASSERT_INT_EQ(count_fds(), before);
                ASSERT_ERROR(listener_add_address(l, "127.0.0.1:0"), EINVAL);
                ASSERT_ERROR(listener_add_address(l, "nonsense"), EINVAL);
                ASSERT_INT_EQ(count_fds(), before);
        }

        /* A burst larger than one wakeup's batch is accepted completely. */
        {
                int clients[200];

                for (unsigned i = 0; i < ELEMENTSOF(clients); i++) {
                        clients[i] = connect_to(AF_INET, "127.0.0.1", port);
                        ASSERT_TRUE(clients[i] >= 0);
                }
                ASSERT_TRUE(run_until_accepted(e, &a, 1 + ELEMENTSOF(clients), 5 * SEC));
                ASSERT_INT_EQ(a.n, 1 + ELEMENTSOF(clients));
                for (unsigned i = 0; i < ELEMENTSOF(clients); i++) {
                        bool found = false;

                        snprintf(expect, sizeof expect, "127.0.0.1:%u", local_port(clients[i]));
                        for (unsigned j = 1; j < a.n && !found; j++)
                                found = streq(a.peers[j], expect);
                        ASSERT_TRUE(found);
                        close(clients[i]);
                }
        }
        accepted_close(&a);

        /* Freeing closes the listening socket. */
        l = listener_free(l);
        ASSERT_TRUE(connect_to(AF_INET, "127.0.0.1", port) == -ECONNREFUSED);
}

static void test_tcp6(sd_event *e) {
        _cleanup_(listener_freep) Listener *l = NULL;
        Accepted a = {};
        unsigned port;
        char expect[80];
        int c, fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd6 < 0) {
                printf("no IPv6 here, skipping the IPv6 listener tests\n");
                return;
        }
        close(fd6);

        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_OK(add_tcp(l, "[::1]", AF_INET6, &port));
        c = connect_to(AF_INET6, "::1", port);
        ASSERT_TRUE(c >= 0);
        ASSERT_TRUE(run_until_accepted(e, &a, 1, 2 * SEC));
        snprintf(expect, sizeof expect, "[::1]:%u", local_port(c));
        ASSERT_STREQ(a.peers[0], expect);
        check_accepted_fd(a.fds[0], true);
        close(c);
        accepted_close(&a);
        l = listener_free(l);

        /* docs/configuration.md: "[::]:8081 listens on IPv6 and, unless the
         * system says otherwise, IPv4". */
        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_OK(add_tcp(l, "[::]", AF_INET6, &port));
        c = connect_to(AF_INET6, "::1", port);
        ASSERT_TRUE(c >= 0);
        ASSERT_TRUE(run_until_accepted(e, &a, 1, 2 * SEC));
        close(c);
        accepted_close(&a);
        {
                FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "re");
                int sys = -1;

                if (f) {
                        if (fscanf(f, "%d", &sys) != 1)
                                sys = -1;
                        fclose(f);
                }
                c = connect_to(AF_INET, "127.0.0.1", port);
                /* docs/configuration.md: [::] listens on IPv4 too, unless
                 * the system says otherwise (net.ipv6.bindv6only=1). */
                if (sys == 0 && c < 0)
                        fprintf(stderr, "[::]:%u refused IPv4: %s\n", port, strerror(-c));
                if (sys == 0)
                        ASSERT_TRUE(c >= 0);
                if (c >= 0) {
                        ASSERT_TRUE(run_until_accepted(e, &a, 1, 2 * SEC));
                        /* An IPv4 peer on a dual-stack socket. */
                        snprintf(expect, sizeof expect, "[::ffff:127.0.0.1]:%u", local_port(c));
                        ASSERT_TRUE(streq(a.peers[0], expect) || strncmp(a.peers[0], "127.0.0.1:", 10) == 0);
                        close(c);
                        accepted_close(&a);
                }
        }
}

static void test_unix(sd_event *e) {
        _cleanup_(listener_freep) Listener *l = NULL;
        Accepted a = {};
        char path[128], addr[160];
        int c;

        snprintf(path, sizeof path, "%s/http.sock", tmp_dir);
        snprintf(addr, sizeof addr, "unix:%s", path);

        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_OK(listener_add_address(l, addr));
        ASSERT_TRUE(access(path, F_OK) == 0);
        c = connect_to(AF_UNIX, path, 0);
        ASSERT_TRUE(c >= 0);
        ASSERT_TRUE(run_until_accepted(e, &a, 1, 2 * SEC));
        ASSERT_STREQ(a.peers[0], "unix");
        check_accepted_fd(a.fds[0], false);
        close(c);
        accepted_close(&a);

        /* Stop accepting: connections wait in the backlog, then get in. */
        ASSERT_OK(listener_set_accepting(l, false));
        ASSERT_OK(listener_set_accepting(l, false));
        c = connect_to(AF_UNIX, path, 0);
        ASSERT_TRUE(c >= 0);
        run_for(e, 200 * MSEC);
        ASSERT_INT_EQ(a.n, 0);
        ASSERT_OK(listener_set_accepting(l, true));
        ASSERT_OK(listener_set_accepting(l, true));
        ASSERT_TRUE(run_until_accepted(e, &a, 1, 2 * SEC));
        close(c);
        accepted_close(&a);

        /* Stopping from inside the handler stops the current batch too. */
        {
                int clients[10];

                for (unsigned i = 0; i < ELEMENTSOF(clients); i++) {
                        clients[i] = connect_to(AF_UNIX, path, 0);
                        ASSERT_TRUE(clients[i] >= 0);
                }
                a.stop = l;
                run_for(e, 200 * MSEC);
                ASSERT_INT_EQ(a.n, 1);
                a.stop = NULL;
                ASSERT_OK(listener_set_accepting(l, true));
                ASSERT_TRUE(run_until_accepted(e, &a, ELEMENTSOF(clients), 2 * SEC));
                for (unsigned i = 0; i < ELEMENTSOF(clients); i++)
                        close(clients[i]);
                accepted_close(&a);
        }

        /* The path is taken now (by a live socket). */
        {
                unsigned before = count_fds();

                ASSERT_ERROR(listener_add_address(l, addr), EADDRINUSE);
                ASSERT_INT_EQ(count_fds(), before);
                ASSERT_INT_EQ(listener_count(l), 1);
        }
        l = listener_free(l);
        (void) unlink(path);
}

static void test_limit(sd_event *e) {
        _cleanup_(listener_freep) Listener *l = NULL;
        Accepted a = {};
        char addr[160];
        unsigned n, before;

        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        for (n = 0; n < 100; n++) {
                int r;

                snprintf(addr, sizeof addr, "unix:%s/s%u.sock", tmp_dir, n);
                before = count_fds();
                r = listener_add_address(l, addr);
                if (r < 0) {
                        ASSERT_INT_EQ(r, -E2BIG);
                        ASSERT_INT_EQ(count_fds(), before);     /* the refused socket is closed */
                        break;
                }
        }
        ASSERT_INT_EQ(n, 16);
        ASSERT_INT_EQ(listener_count(l), 16);

        /* Every one of them accepts. */
        for (unsigned i = 0; i < 16; i++) {
                char path[128];
                int c;

                snprintf(path, sizeof path, "%s/s%u.sock", tmp_dir, i);
                c = connect_to(AF_UNIX, path, 0);
                ASSERT_TRUE(c >= 0);
                ASSERT_TRUE(run_until_accepted(e, &a, i + 1, 2 * SEC));
                close(c);
        }
        accepted_close(&a);
        l = listener_free(l);
        for (unsigned i = 0; i <= 16; i++) {
                snprintf(addr, sizeof addr, "%s/s%u.sock", tmp_dir, i);
                (void) unlink(addr);
        }
}

/* ---- socket activation, in a child so that fds 3.. and the environment are ours ---- */

static int make_unix_listener(const char *path, int type, bool do_listen) {
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        strcpy(un.sun_path, path);
        (void) unlink(path);
        ASSERT_INT_EQ(bind(fd, (struct sockaddr *) &un, sizeof un), 0);
        if (do_listen)
                ASSERT_INT_EQ(listen(fd, 16), 0);
        return fd;
}

/* Places fds at 3, 4, ... as systemd would. */
static void pass_fds(const int *fds, unsigned n, bool right_pid) {
        char buf[32];

        for (unsigned i = 0; i < n; i++)
                ASSERT_INT_EQ(dup2(fds[i], 100 + (int) i), 100 + (int) i);
        for (unsigned i = 0; i < n; i++) {
                close(fds[i]);
        }
        for (unsigned i = 0; i < n; i++) {
                ASSERT_INT_EQ(dup2(100 + (int) i, SD_LISTEN_FDS_START + (int) i), SD_LISTEN_FDS_START + (int) i);
                close(100 + (int) i);
        }
        snprintf(buf, sizeof buf, "%u", n);
        ASSERT_INT_EQ(setenv("LISTEN_FDS", buf, 1), 0);
        snprintf(buf, sizeof buf, "%d", right_pid ? (int) getpid() : (int) getpid() + 1);
        ASSERT_INT_EQ(setenv("LISTEN_PID", buf, 1), 0);
}

static void child_inherited(void) {
        sd_event *e = NULL;
        Listener *l = NULL;
        Accepted a = {};
        char p1[128], p2[128];
        int fds[2];

        snprintf(p1, sizeof p1, "%s/act1.sock", tmp_dir);
        snprintf(p2, sizeof p2, "%s/act2.sock", tmp_dir);
        fds[0] = make_unix_listener(p1, SOCK_STREAM, true);
        fds[1] = make_unix_listener(p2, SOCK_STREAM, true);
        pass_fds(fds, 2, true);

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_INT_EQ(listener_add_inherited(l), 2);
        ASSERT_INT_EQ(listener_count(l), 2);
        /* Consumed: a child we spawn does not take them for its own. */
        ASSERT_NULL(getenv("LISTEN_FDS"));
        ASSERT_NULL(getenv("LISTEN_PID"));
        ASSERT_TRUE(fcntl(SD_LISTEN_FDS_START, F_GETFD) & FD_CLOEXEC);
        ASSERT_TRUE(fcntl(SD_LISTEN_FDS_START, F_GETFL) & O_NONBLOCK);
        ASSERT_TRUE(fcntl(SD_LISTEN_FDS_START + 1, F_GETFL) & O_NONBLOCK);
        for (unsigned i = 0; i < 2; i++) {
                int c = connect_to(AF_UNIX, i == 0 ? p1 : p2, 0);

                ASSERT_TRUE(c >= 0);
                ASSERT_TRUE(run_until_accepted(e, &a, i + 1, 2 * SEC));
                close(c);
        }
        ASSERT_STREQ(a.peers[0], "unix");
        /* A second call finds nothing. */
        ASSERT_INT_EQ(listener_add_inherited(l), 0);
        accepted_close(&a);
        listener_free(l);
        /* The listener owns inherited fds and closes them. */
        ASSERT_TRUE(fcntl(SD_LISTEN_FDS_START, F_GETFD) < 0);
        sd_event_unref(e);
        (void) unlink(p1);
        (void) unlink(p2);
}

static void expect_inherited(int expected) {
        sd_event *e = NULL;
        Listener *l = NULL;
        Accepted a = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_INT_EQ(listener_add_inherited(l), expected);
        if (expected <= 0)
                ASSERT_INT_EQ(listener_count(l), 0);
        listener_free(l);
        sd_event_unref(e);
}

static void child_inherited_bad(void) {
        char p[128];
        int fds[1];

        /* Nothing passed. */
        (void) unsetenv("LISTEN_FDS");
        (void) unsetenv("LISTEN_PID");
        expect_inherited(0);

        /* Meant for another process. */
        snprintf(p, sizeof p, "%s/bad1.sock", tmp_dir);
        fds[0] = make_unix_listener(p, SOCK_STREAM, true);
        pass_fds(fds, 1, false);
        expect_inherited(0);

        /* Not a socket. */
        fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fds[0] >= 0);
        pass_fds(fds, 1, true);
        expect_inherited(-ENOTSOCK);

        /* A socket that does not listen, and a datagram socket. */
        snprintf(p, sizeof p, "%s/bad2.sock", tmp_dir);
        fds[0] = make_unix_listener(p, SOCK_STREAM, false);
        pass_fds(fds, 1, true);
        expect_inherited(-ENOTSOCK);
        snprintf(p, sizeof p, "%s/bad3.sock", tmp_dir);
        fds[0] = make_unix_listener(p, SOCK_DGRAM, false);
        pass_fds(fds, 1, true);
        expect_inherited(-ENOTSOCK);
}

static void run_child(void (*fn)(void), const char *name) {
        pid_t pid = fork();
        int status;

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                fn();
                _exit(0);
        }
        ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "child %s failed (status 0x%x)\n", name, status);
                ASSERT_TRUE(!"child test failed");
        }
}

/* ---- out of file descriptors ---- */

typedef struct EmfileResult {
        unsigned wakeups;       /* sd_event_run() calls in 500 ms with a 100 ms timeout */
        bool accepted_later;    /* once fds were free again */
} EmfileResult;

static void child_emfile(int result_fd) {
        sd_event *e = NULL;
        Listener *l = NULL;
        Accepted a = {};
        EmfileResult res = {};
        char p[128], addr[160];
        struct rlimit rl;
        int c, fillers[256];
        unsigned n_fillers = 0;
        uint64_t end;

        /* The warnings would fill the test log: count them, don't print them. */
        {
                char logp[160];
                int fd;

                snprintf(logp, sizeof logp, "%s/emfile.log", tmp_dir);
                fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                ASSERT_TRUE(fd >= 0);
                ASSERT_INT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
                close(fd);
        }

        snprintf(p, sizeof p, "%s/emfile.sock", tmp_dir);
        snprintf(addr, sizeof addr, "unix:%s", p);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(listener_new(&l, e, on_accept, &a));
        ASSERT_OK(listener_add_address(l, addr));

        /* A small table, filled up but for the one the client takes. */
        ASSERT_INT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = MIN(rl.rlim_max, (rlim_t) 128);
        ASSERT_INT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
        for (;;) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

                if (fd < 0) {
                        ASSERT_INT_EQ(errno, EMFILE);
                        break;
                }
                ASSERT_TRUE(n_fillers < ELEMENTSOF(fillers));
                fillers[n_fillers++] = fd;
        }
        ASSERT_TRUE(n_fillers > 0);
        close(fillers[--n_fillers]);
        c = connect_to(AF_UNIX, p, 0);
        ASSERT_TRUE(c >= 0);

        /* accept4() now fails with EMFILE. */
        end = now_usec() + 500 * MSEC;
        while (now_usec() < end) {
                ASSERT_OK(sd_event_run(e, 100 * MSEC));
                res.wakeups++;
        }
        ASSERT_INT_EQ(a.n, 0);

        /* With descriptors free again the waiting connection gets in. */
        for (unsigned i = 0; i < 8 && n_fillers > 0; i++)
                close(fillers[--n_fillers]);
        end = now_usec() + 3 * SEC;
        while (a.n == 0 && now_usec() < end)
                ASSERT_OK(sd_event_run(e, 100 * MSEC));
        res.accepted_later = a.n == 1;

        ASSERT_INT_EQ(write(result_fd, &res, sizeof res), (ssize_t) sizeof res);
        _exit(0);
}

static void test_emfile(void) {
        EmfileResult res = {};
        int pipefd[2], status;
        pid_t pid;

        ASSERT_INT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(pipefd[0]);
                child_emfile(pipefd[1]);
        }
        close(pipefd[1]);
        ASSERT_INT_EQ(read(pipefd[0], &res, sizeof res), (ssize_t) sizeof res);
        close(pipefd[0]);
        ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        /* Out of fds the loop must not spin on the still-readable socket
         * (with 100 ms timeouts, an idle loop wakes about 5 times in 500 ms). */
        if (res.wakeups > 50)
                fprintf(stderr, "%u loop iterations in 500 ms while out of fds\n", res.wakeups);
        ASSERT_TRUE(res.wakeups <= 50);
        ASSERT_TRUE(res.accepted_later);
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char cmd[128];

        (void) signal(SIGPIPE, SIG_IGN);
        ASSERT_NOT_NULL(mkdtemp(tmp_dir));

        test_parse();
        run_child(child_inherited, "inherited");
        run_child(child_inherited_bad, "inherited-bad");

        ASSERT_OK(sd_event_new(&e));
        test_tcp4(e);
        test_tcp6(e);
        test_unix(e);
        test_limit(e);
        test_emfile();

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
        ASSERT_INT_EQ(system(cmd), 0);
        return 0;
}
