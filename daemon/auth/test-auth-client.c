/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for auth-client: fake helpers in-process and spawned, and (--helper=PATH) the real one. */

/* Without arguments this is a unit test: a fake helper on a Unix socket
 * served by the same sd-event loop (connect mode), and this binary
 * re-executed as a fake helper (spawn mode, "--fd=3 --fake=MODE").
 * With --helper=PATH it spawns the real multichat-auth and expects the
 * pamenv users (tests/lib/pamenv.py sets up the environment). */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "auth/auth-client.h"
#include "wire/auth-wire.h"
#include "test/test.h"

#define MSEC (UINT64_C(1000))
#define SEC (UINT64_C(1000000))

typedef struct Outcome {
        AuthRequest *handle;
        bool cancel_in_callback;
        bool done;
        int calls;
        AuthResult res;
        char username[USERNAME_MAX + 1];
} Outcome;

static void on_result(const AuthResult *res, void *userdata) {
        Outcome *o = userdata;

        o->calls++;
        o->done = true;
        o->res = *res;
        snprintf(o->username, sizeof o->username, "%s", res->username);
        o->res.username = o->username;
        if (o->cancel_in_callback)
                o->handle = auth_request_cancel(o->handle);
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void run_until(sd_event *e, const bool *flag, uint64_t timeout) {
        uint64_t end = now_usec() + timeout;

        while (!*flag && now_usec() < end)
                ASSERT_OK(sd_event_run(e, 50 * MSEC));
}

static void run_for(sd_event *e, uint64_t usec) {
        bool never = false;
        run_until(e, &never, usec);
}

/* ---- the fake helper: answers like multichat-auth would ---- */

static void fake_answer(const AuthWireRequest *req, AuthWireReply *rep) {
        *rep = (AuthWireReply) { .id = req->id, .uid = AUTH_WIRE_UID_INVALID };
        if (req->type == AUTH_WIRE_AUTHENTICATE && strcmp(req->password, "pw") != 0) {
                rep->result = -EACCES;
                rep->fail_delay_usec = 2 * SEC;
                return;
        }
        rep->uid = req->type == AUTH_WIRE_LOOKUP_UID ? req->uid : 1000 + (uint32_t) strlen(req->username);
        strcpy(rep->username, req->type == AUTH_WIRE_LOOKUP_UID ? "byuid" : req->username);
        rep->staff = streq(rep->username, "alice");
        rep->in_group = req->group[0] != '\0';
}

static void fake_send(int fd, const AuthWireReply *rep) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        size_t len;

        ASSERT_OK(auth_wire_reply_encode(rep, buf, sizeof buf, &len));
        ASSERT_TRUE(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t) len);
}

static int fake_recv(int fd, AuthWireRequest *req) {
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        ssize_t n = recv(fd, buf, sizeof buf, 0);

        if (n <= 0)
                return -ECONNRESET;
        ASSERT_OK(auth_wire_request_decode(req, buf, (size_t) n));
        return 0;
}

/* Spawn mode: this binary as the helper. "echo" answers everything,
 * "die" exits on the first request without answering. */
static int fake_helper_main(const char *mode) {
        AuthWireRequest req;
        AuthWireReply rep;

        const char *mark = getenv("TEST_AUTH_CLIENT_MARK");

        while (fake_recv(3, &req) >= 0) {
                if (streq(mode, "die"))
                        _exit(3);
                fake_answer(&req, &rep);
                fake_send(3, &rep);
        }
        /* Tells the test it got to exit on EOF rather than being killed. */
        if (mark)
                fclose(fopen(mark, "w"));
        return 0;
}

/* Connect mode: a listener on the test's own loop. */
typedef enum FakeMode {
        FAKE_ANSWER,
        FAKE_ANSWER_LATE,       /* after 300 ms */
        FAKE_SILENT,
        FAKE_CLOSE,             /* read one request, hang up */
        FAKE_GARBAGE,           /* answer with a malformed datagram */
        FAKE_REVERSE,           /* collect two, answer the second first */
} FakeMode;

typedef struct Fake {
        sd_event *event;
        char path[108];
        int listen_fd;
        int conn_fd;
        sd_event_source *listen_io, *conn_io, *late_timer;
        FakeMode mode;
        unsigned accepted;
        AuthWireRequest held[2];
        unsigned n_held;
} Fake;

static void fake_drop_conn(Fake *f) {
        f->conn_io = sd_event_source_disable_unref(f->conn_io);
        f->conn_fd = safe_close(f->conn_fd);
}

static int on_fake_late(sd_event_source *s, uint64_t usec, void *userdata) {
        Fake *f = userdata;
        AuthWireReply rep;

        fake_answer(&f->held[0], &rep);
        fake_send(f->conn_fd, &rep);
        f->late_timer = sd_event_source_disable_unref(f->late_timer);
        return 0;
}

static int on_fake_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Fake *f = userdata;
        AuthWireRequest req;
        AuthWireReply rep;

        if (fake_recv(fd, &req) < 0) {
                fake_drop_conn(f);
                return 0;
        }
        switch (f->mode) {
        case FAKE_ANSWER:
                fake_answer(&req, &rep);
                fake_send(fd, &rep);
                break;
        case FAKE_ANSWER_LATE:
                f->held[0] = req;
                ASSERT_OK(sd_event_add_time_relative(f->event, &f->late_timer, CLOCK_MONOTONIC,
                                                     300 * MSEC, 0, on_fake_late, f));
                break;
        case FAKE_SILENT:
                break;
        case FAKE_CLOSE:
                fake_drop_conn(f);
                break;
        case FAKE_GARBAGE:
                ASSERT_TRUE(send(fd, "MCAU\x01\x80\x00\x00", 8, MSG_NOSIGNAL) == 8);
                break;
        case FAKE_REVERSE:
                f->held[f->n_held++] = req;
                if (f->n_held == 2) {
                        for (int i = 1; i >= 0; i--) {
                                fake_answer(&f->held[i], &rep);
                                fake_send(fd, &rep);
                        }
                        f->n_held = 0;
                }
                break;
        }
        return 0;
}

static int on_fake_listen(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Fake *f = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

        ASSERT_TRUE(cfd >= 0);
        fake_drop_conn(f);
        f->conn_fd = cfd;
        f->accepted++;
        ASSERT_OK(sd_event_add_io(f->event, &f->conn_io, cfd, EPOLLIN, on_fake_conn, f));
        return 0;
}

static void fake_listen(Fake *f) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        strcpy(sa.sun_path, f->path);
        f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ASSERT_TRUE(f->listen_fd >= 0);
        ASSERT_TRUE(bind(f->listen_fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        ASSERT_TRUE(listen(f->listen_fd, 8) == 0);
        ASSERT_OK(sd_event_add_io(f->event, &f->listen_io, f->listen_fd, EPOLLIN, on_fake_listen, f));
}

static void fake_init(Fake *f, sd_event *e, const char *dir) {
        *f = (Fake) { .event = e, .listen_fd = -EBADF, .conn_fd = -EBADF };
        snprintf(f->path, sizeof f->path, "%s/auth.sock", dir);
}

static void fake_done(Fake *f) {
        fake_drop_conn(f);
        f->late_timer = sd_event_source_disable_unref(f->late_timer);
        f->listen_io = sd_event_source_disable_unref(f->listen_io);
        f->listen_fd = safe_close(f->listen_fd);
        (void) unlink(f->path);
}

/* ---- connect mode ---- */

static void test_connect(sd_event *e, const char *dir) {
        _cleanup_(auth_client_freep) AuthClient *c = NULL;
        AuthRequest *h1 = NULL;
        Outcome o1 = {}, o2 = {}, o3 = {};
        Fake f;

        /* The socket is not there yet: the client starts anyway and the
         * request waits for the connection. */
        fake_init(&f, e, dir);
        ASSERT_OK(auth_client_new(&c, e, &(AuthClientOptions) {
                .socket_path = f.path, .timeout_usec = 3 * SEC, .max_pending = 3 }));
        ASSERT_INT_EQ(auth_client_get_pid(c), 0);
        ASSERT_OK(auth_client_authenticate(c, "alice", "pw", "192.0.2.1", on_result, &o1, NULL));
        ASSERT_FALSE(o1.done);          /* never from inside the call */
        run_for(e, 150 * MSEC);
        ASSERT_FALSE(o1.done);
        fake_listen(&f);
        run_until(e, &o1.done, 2 * SEC);
        ASSERT_INT_EQ(o1.res.result, 0);
        ASSERT_INT_EQ(o1.res.uid, 1005);
        ASSERT_TRUE(o1.res.staff);
        ASSERT_FALSE(o1.res.in_group);
        ASSERT_STREQ(o1.username, "alice");
        ASSERT_INT_EQ(o1.res.fail_delay_usec, 0);

        /* Lookups. */
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "bob", "multichat-admin", on_result, &o1, NULL));
        run_until(e, &o1.done, 2 * SEC);
        ASSERT_INT_EQ(o1.res.result, 0);
        ASSERT_STREQ(o1.username, "bob");
        ASSERT_FALSE(o1.res.staff);
        ASSERT_TRUE(o1.res.in_group);
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup_uid(c, 4242, NULL, on_result, &o1, NULL));
        run_until(e, &o1.done, 2 * SEC);
        ASSERT_INT_EQ(o1.res.uid, 4242);
        ASSERT_STREQ(o1.username, "byuid");
        ASSERT_FALSE(o1.res.in_group);

        /* Invalid input fails at once, and never calls back. */
        ASSERT_ERROR(auth_client_authenticate(c, "-alice", "pw", NULL, on_result, &o3, NULL), EINVAL);
        ASSERT_ERROR(auth_client_authenticate(c, "al ice", "pw", NULL, on_result, &o3, NULL), EINVAL);
        ASSERT_ERROR(auth_client_authenticate(c, "alice", "pw", "a b", on_result, &o3, NULL), EINVAL);
        {
                char big[AUTH_WIRE_PASSWORD_MAX + 2];
                memset(big, 'x', sizeof big - 1);
                big[sizeof big - 1] = '\0';
                ASSERT_ERROR(auth_client_authenticate(c, "alice", big, NULL, on_result, &o3, NULL), EINVAL);
        }
        ASSERT_ERROR(auth_client_lookup(c, "alice", "bad group", on_result, &o3, NULL), EINVAL);
        ASSERT_ERROR(auth_client_lookup_uid(c, (uid_t) -1, NULL, on_result, &o3, NULL), EINVAL);

        /* The fail delay counts from the request: the helper answers after
         * 300 ms with 2 s, so about 1.7 s are left. */
        f.mode = FAKE_ANSWER_LATE;
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_authenticate(c, "alice", "wrong", NULL, on_result, &o1, NULL));
        run_until(e, &o1.done, 2 * SEC);
        ASSERT_INT_EQ(o1.res.result, -EACCES);
        ASSERT_STREQ(o1.username, "");
        ASSERT_TRUE(o1.res.fail_delay_usec <= 1750 * MSEC);
        ASSERT_TRUE(o1.res.fail_delay_usec >= 1000 * MSEC);

        /* A cancelled request never calls back, even when its answer
         * comes after all. */
        f.mode = FAKE_ANSWER_LATE;
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "carol", NULL, on_result, &o1, &h1));
        run_for(e, 100 * MSEC);
        ASSERT_NOT_NULL(f.late_timer);  /* the fake holds it */
        h1 = auth_request_cancel(h1);
        ASSERT_NULL(h1);
        run_for(e, 400 * MSEC);
        ASSERT_NULL(f.late_timer);      /* and has answered */
        ASSERT_INT_EQ(o1.calls, 0);

        /* Replies out of order reach the right callbacks. A held handle
         * stays valid after completion, and may be freed in the callback. */
        f.mode = FAKE_REVERSE;
        o1 = o2 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "dave", NULL, on_result, &o1, &h1));
        ASSERT_OK(auth_client_lookup(c, "erin", NULL, on_result, &o2, &o2.handle));
        o2.cancel_in_callback = true;
        run_until(e, &o1.done, 2 * SEC);
        run_until(e, &o2.done, 2 * SEC);
        ASSERT_STREQ(o1.username, "dave");
        ASSERT_INT_EQ(o1.res.uid, 1004);
        ASSERT_STREQ(o2.username, "erin");
        ASSERT_NULL(o2.handle);
        h1 = auth_request_cancel(h1);

        /* At most max_pending (3), and each times out on its own. */
        f.mode = FAKE_SILENT;
        o1 = o2 = o3 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "f1", NULL, on_result, &o1, NULL));
        ASSERT_OK(auth_client_lookup(c, "f2", NULL, on_result, &o2, NULL));
        ASSERT_OK(auth_client_lookup(c, "f3", NULL, on_result, &o3, NULL));
        ASSERT_ERROR(auth_client_lookup(c, "f4", NULL, on_result, &o3, NULL), EBUSY);
        run_until(e, &o3.done, 4 * SEC);
        run_for(e, 100 * MSEC);
        ASSERT_INT_EQ(o1.res.result, -ETIMEDOUT);
        ASSERT_INT_EQ(o2.res.result, -ETIMEDOUT);
        ASSERT_INT_EQ(o3.res.result, -ETIMEDOUT);
        ASSERT_INT_EQ(o1.calls + o2.calls + o3.calls, 3);

        /* The helper hangs up: what it held fails, the client reconnects
         * and the next request is answered. */
        f.mode = FAKE_CLOSE;
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "hank", NULL, on_result, &o1, NULL));
        run_until(e, &o1.done, 2 * SEC);
        ASSERT_INT_EQ(o1.res.result, -ECONNRESET);
        f.mode = FAKE_ANSWER;
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "ivan", NULL, on_result, &o1, NULL));
        run_until(e, &o1.done, 3 * SEC);
        ASSERT_INT_EQ(o1.res.result, 0);
        ASSERT_STREQ(o1.username, "ivan");
        ASSERT_TRUE(f.accepted >= 2);

        /* A malformed reply: start over. */
        f.mode = FAKE_GARBAGE;
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "jane", NULL, on_result, &o1, NULL));
        run_until(e, &o1.done, 2 * SEC);
        ASSERT_INT_EQ(o1.res.result, -ECONNRESET);
        f.mode = FAKE_ANSWER;
        o1 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "kim", NULL, on_result, &o1, NULL));
        run_until(e, &o1.done, 3 * SEC);
        ASSERT_INT_EQ(o1.res.result, 0);

        /* Freeing the client with requests pending calls nobody back; a
         * held handle is still the caller's to free. */
        f.mode = FAKE_SILENT;
        o1 = o2 = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "lee", NULL, on_result, &o1, &h1));
        ASSERT_OK(auth_client_lookup(c, "max", NULL, on_result, &o2, NULL));
        run_for(e, 100 * MSEC);
        c = auth_client_free(c);
        run_for(e, 100 * MSEC);
        ASSERT_INT_EQ(o1.calls + o2.calls, 0);
        h1 = auth_request_cancel(h1);
        fake_done(&f);
}

/* ---- spawn mode with a fake helper ---- */

static void test_spawn_fake(sd_event *e, const char *dir) {
        _cleanup_(auth_client_freep) AuthClient *c = NULL;
        char *echo[] = { (char *) "--fake=echo", NULL }, *die[] = { (char *) "--fake=die", NULL };
        char mark[PATH_MAX];
        Outcome o = {};
        pid_t pid, pid2;
        uint64_t t;

        ASSERT_ERROR(auth_client_new(&c, e, &(AuthClientOptions) { .helper_path = "/nonexistent/helper" }), ENOENT);

        ASSERT_OK(auth_client_new(&c, e, &(AuthClientOptions) {
                .helper_path = "/proc/self/exe", .helper_args = echo, .timeout_usec = 3 * SEC }));
        pid = auth_client_get_pid(c);
        ASSERT_TRUE(pid > 0);
        ASSERT_OK(auth_client_authenticate(c, "alice", "pw", NULL, on_result, &o, NULL));
        run_until(e, &o.done, 2 * SEC);
        ASSERT_INT_EQ(o.res.result, 0);
        ASSERT_STREQ(o.username, "alice");

        /* Killed while idle: respawned with a new pid, and serving. */
        snprintf(mark, sizeof mark, "%s/clean-exit", dir);
        ASSERT_OK(setenv("TEST_AUTH_CLIENT_MARK", mark, 1));    /* seen by the next helper only */
        ASSERT_TRUE(kill(pid, SIGKILL) == 0);
        t = now_usec();
        while (now_usec() - t < 3 * SEC && (auth_client_get_pid(c) == pid || auth_client_get_pid(c) == 0))
                ASSERT_OK(sd_event_run(e, 50 * MSEC));
        pid2 = auth_client_get_pid(c);
        ASSERT_TRUE(pid2 > 0 && pid2 != pid);
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "bob", NULL, on_result, &o, NULL));
        run_until(e, &o.done, 2 * SEC);
        ASSERT_INT_EQ(o.res.result, 0);
        c = auth_client_free(c);
        /* Free let it exit on EOF, and reaped it. */
        ASSERT_TRUE(kill(pid2, 0) < 0 && errno == ESRCH);
        ASSERT_TRUE(access(mark, F_OK) == 0);
        ASSERT_OK(unlink(mark));
        ASSERT_OK(unsetenv("TEST_AUTH_CLIENT_MARK"));

        /* A helper that dies with the request: -ECONNRESET. */
        ASSERT_OK(auth_client_new(&c, e, &(AuthClientOptions) {
                .helper_path = "/proc/self/exe", .helper_args = die, .timeout_usec = 3 * SEC }));
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "bob", NULL, on_result, &o, NULL));
        run_until(e, &o.done, 2 * SEC);
        ASSERT_INT_EQ(o.res.result, -ECONNRESET);
}

/* ---- the real helper, under pamenv ---- */

static void expect(sd_event *e, Outcome *o, int result) {
        run_until(e, &o->done, 8 * SEC);
        ASSERT_TRUE(o->done);
        ASSERT_INT_EQ(o->res.result, result);
}

static int test_real_helper(sd_event *e, const char *helper) {
        _cleanup_(auth_client_freep) AuthClient *c = NULL;
        char *args[] = { (char *) "--min-uid=1000", NULL };
        Outcome o = {};

        ASSERT_OK(auth_client_new(&c, e, &(AuthClientOptions) { .helper_path = helper, .helper_args = args }));

        ASSERT_OK(auth_client_authenticate(c, "alice", "alice-pw", "127.0.0.1", on_result, &o, NULL));
        expect(e, &o, 0);
        ASSERT_INT_EQ(o.res.uid, 1001);
        ASSERT_TRUE(o.res.staff);
        ASSERT_STREQ(o.username, "alice");
        ASSERT_INT_EQ(o.res.fail_delay_usec, 0);

        o = (Outcome) {};
        ASSERT_OK(auth_client_authenticate(c, "bob", "bob-pw", NULL, on_result, &o, NULL));
        expect(e, &o, 0);
        ASSERT_INT_EQ(o.res.uid, 1002);
        ASSERT_FALSE(o.res.staff);

        o = (Outcome) {};
        ASSERT_OK(auth_client_authenticate(c, "bob", "alice-pw", NULL, on_result, &o, NULL));
        expect(e, &o, -EACCES);
        ASSERT_TRUE(o.res.fail_delay_usec > 1000 * MSEC && o.res.fail_delay_usec <= 2 * SEC);

        o = (Outcome) {};
        ASSERT_OK(auth_client_authenticate(c, "nosuchuser", "x", NULL, on_result, &o, NULL));
        expect(e, &o, -EACCES);
        ASSERT_TRUE(o.res.fail_delay_usec > 1000 * MSEC);

        o = (Outcome) {};
        ASSERT_OK(auth_client_authenticate(c, "root", "root-pw", NULL, on_result, &o, NULL));
        expect(e, &o, -EPERM);

        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "alice", "multichat-staff", on_result, &o, NULL));
        expect(e, &o, 0);
        ASSERT_TRUE(o.res.in_group);
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "bob", "multichat-staff", on_result, &o, NULL));
        expect(e, &o, 0);
        ASSERT_FALSE(o.res.in_group);
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "nosuchuser", NULL, on_result, &o, NULL));
        expect(e, &o, -ENOENT);
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup(c, "root", NULL, on_result, &o, NULL));
        expect(e, &o, -EPERM);
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup_uid(c, 0, NULL, on_result, &o, NULL));
        expect(e, &o, 0);
        ASSERT_STREQ(o.username, "root");
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup_uid(c, 1001, "multichat-admin", on_result, &o, NULL));
        expect(e, &o, 0);
        ASSERT_STREQ(o.username, "alice");
        ASSERT_TRUE(o.res.staff);
        ASSERT_FALSE(o.res.in_group);
        o = (Outcome) {};
        ASSERT_OK(auth_client_lookup_uid(c, 4321, NULL, on_result, &o, NULL));
        expect(e, &o, -ENOENT);

        printf("auth-client against %s: ok\n", helper);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char dir[] = "/tmp/test-auth-client.XXXXXX";

        /* Re-executed as the fake helper: "--fd=3 --fake=MODE". */
        if (argc == 3 && streq(argv[1], "--fd=3") && strncmp(argv[2], "--fake=", 7) == 0)
                return fake_helper_main(argv[2] + 7);

        ASSERT_OK(sd_event_new(&e));
        if (argc == 2 && strncmp(argv[1], "--helper=", 9) == 0)
                return test_real_helper(e, argv[1] + 9);
        ASSERT_TRUE(argc == 1);

        ASSERT_NOT_NULL(mkdtemp(dir));
        test_connect(e, dir);
        test_spawn_fake(e, dir);
        (void) rmdir(dir);
        return 0;
}
