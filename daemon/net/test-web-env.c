/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A real web front for the net tests: Web on LoopUv and sd-event, a private Redis, the real auth helper under pam_matrix, loopback clients. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth-client.h"
#include "basic/macro.h"
#include "net/login-limit.h"
#include "net/loop-uv.h"
#include "net/static-files.h"
#include "net/test-web-env.h"
#include "redis/redis.h"
#include "test/test-pam-env.h"
#include "test/test.h"

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * TEST_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- the hooks: a recorder ---- */

static int on_conn_ready(void *ud, Conn *c) {
        Recorder *r = ud;

        r->ready++;
        r->last_ready = c;
        return r->ready_result;
}

static void on_conn_command(void *ud, Conn *c, const Command *cmd) {
        Recorder *r = ud;

        r->commands++;
        r->last_type = cmd->type;
        snprintf(r->last_room, sizeof r->last_room, "%s", cmd->room);
        snprintf(r->last_message, sizeof r->last_message, "%s", cmd->message ?: "");
        snprintf(r->last_ref, sizeof r->last_ref, "%s", cmd->has_ref ? cmd->ref : "");
}

static void on_conn_closed(void *ud, Conn *c) {
        Recorder *r = ud;

        r->closed++;
        r->last_closed = c;
}

static void on_conns_changed(void *ud, unsigned n) {
        Recorder *r = ud;

        r->conns = n;
        r->conns_changes++;
}

static void on_peer_removed(void *ud) {
        ((Recorder *) ud)->peers_removed++;
}

static char *on_rooms_json(void *ud) {
        ((Recorder *) ud)->rooms_json++;
        return strdup("{\"rooms\": [{\"id\": \"7\", \"title\": \"Lobby\"}]}");
}

static bool on_healthy(void *ud, const char **ret_reason) {
        *ret_reason = "redis unreachable";
        return ((Recorder *) ud)->healthy;
}

static int on_publish_logout(void *ud, const char *session_id) {
        Recorder *r = ud;

        r->logouts++;
        snprintf(r->logout_session, sizeof r->logout_session, "%s", session_id);
        return 0;
}

static const WebHooks recorder_hooks = {
        .conn_ready = on_conn_ready,
        .conn_command = on_conn_command,
        .conn_closed = on_conn_closed,
        .conns_changed = on_conns_changed,
        .peer_removed = on_peer_removed,
        .rooms_json = on_rooms_json,
        .healthy = on_healthy,
        .publish_logout = on_publish_logout,
};

/* ---- files ---- */

static void write_file(const char *dir, const char *name, const char *text) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_TRUE(fclose(f) == 0);
}

static void setup_web_root(TestWeb *t) {
        char root[256];

        snprintf(root, sizeof root, "%s/web", t->dir);
        ASSERT_TRUE(mkdir(root, 0755) == 0);
        write_file(root, "index.html", "<!doctype html><title>chat</title>\n");
        write_file(root, "login.html",
                   "<form method=post action=/login><p>@ERROR@</p>"
                   "<input type=hidden name=csrf value=\"@CSRF@\">"
                   "<input type=hidden name=next value=\"@NEXT@\"></form>\n");
        write_file(root, "app.js", "console.log('multichat');\n");
        ASSERT_OK(static_files_load(&t->static_files, root));
}

static void on_redis_state(Redis *r, bool connected, void *userdata) {
        ((TestWeb *) userdata)->redis_connected = connected;
}

static void setup_listener(TestWeb *t) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;

        t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(t->listen_fd >= 0);
        ASSERT_TRUE(bind(t->listen_fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        ASSERT_TRUE(listen(t->listen_fd, 64) == 0);
        ASSERT_TRUE(getsockname(t->listen_fd, (struct sockaddr *) &sa, &len) == 0);
        t->port = ntohs(sa.sin_port);
        snprintf(t->host, sizeof t->host, "127.0.0.1:%u", t->port);
}

int test_web_setup(TestWeb *t) {
        char url[200];
        char *args[] = { (char *) "--min-uid=1000", NULL };
        int r;

        *t = (TestWeb) { .listen_fd = -EBADF, .rec.healthy = true };
        r = test_redis_init(&t->redis_server, "redis.sock");
        if (r == -ENOENT) {
                fprintf(stderr, "redis-server not found (Debian package redis-server), skipping\n");
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(r);
        ASSERT_OK(test_redis_start(&t->redis_server));

        snprintf(t->dir, sizeof t->dir, "/tmp/%s-web.XXXXXX", program_invocation_short_name);
        ASSERT_NOT_NULL(mkdtemp(t->dir));
        if (test_pam_env_setup(t->dir, NULL, NULL) < 0) {
                fprintf(stderr, "pam_matrix or nss_wrapper not found (Debian packages libpam-wrapper, "
                        "libnss-wrapper), skipping\n");
                test_web_teardown(t);
                return EXIT_TEST_SKIP;
        }
        setup_web_root(t);
        ASSERT_OK(test_auth_helper_path(t->helper, sizeof t->helper));

        ASSERT_OK(sd_event_new(&t->event));
        ASSERT_OK(loop_uv_new(&t->uv, t->event));
        snprintf(url, sizeof url, "unix:%s", t->redis_server.sock);
        ASSERT_OK(redis_new(&t->redis, t->event, url, on_redis_state, NULL, t));
        ASSERT_OK(redis_start(t->redis));
        for (unsigned i = 0; i < 500 && !t->redis_connected; i++)
                ASSERT_OK(sd_event_run(t->event, 10 * TEST_MSEC));
        ASSERT_TRUE(t->redis_connected);
        ASSERT_OK(auth_client_new(&t->auth, t->event, &(AuthClientOptions) {
                .helper_path = t->helper, .helper_args = args }));
        ASSERT_OK(login_limiter_new(&t->login_limiter, 5));

        t->services = (WebServices) {
                .event = t->event,
                .uv = t->uv,
                .redis = t->redis,
                .auth = t->auth,
                .login_limiter = t->login_limiter,
                .static_files = t->static_files,
                .settings = {
                        .max_connections = 100,
                        .keepalive_usec = 30 * TEST_SEC,
                        .session_idle_usec = 3600 * TEST_SEC,
                        .session_max_usec = 86400 * TEST_SEC,
                        .max_message_bytes = 1000,
                        .rate_limit = 5,
                        .rate_burst = 10,
                        .send_queue_frames = 64,
                        .max_header_bytes = 16 * 1024,
                        .request_timeout_usec = 10 * TEST_SEC,
                },
                .hooks = &recorder_hooks,
                .userdata = &t->rec,
                .stats = &t->stats,
        };
        ASSERT_OK(web_new(&t->web, &t->services));
        setup_listener(t);
        return 0;
}

void test_web_teardown(TestWeb *t) {
        char cmd[200];

        t->web = web_free(t->web);
        t->auth = auth_client_free(t->auth);
        t->redis = redis_free(t->redis);
        t->login_limiter = login_limiter_free(t->login_limiter);
        t->static_files = static_files_free(t->static_files);
        t->uv = loop_uv_free(t->uv);
        t->event = sd_event_unref(t->event);
        t->listen_fd = safe_close(t->listen_fd);
        (void) test_redis_cleanup(&t->redis_server);
        if (t->dir[0] && strncmp(t->dir, "/tmp/", 5) == 0) {
                snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", t->dir);
                (void) system(cmd);
        }
}

void test_web_run(TestWeb *t, uint64_t timeout) {
        ASSERT_OK(sd_event_run(t->event, timeout));
}

void test_web_run_for(TestWeb *t, uint64_t usec) {
        uint64_t end = mono_usec() + usec;

        while (mono_usec() < end)
                test_web_run(t, 10 * TEST_MSEC);
}

int test_web_connect(TestWeb *t) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(t->port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd, server;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        ASSERT_TRUE(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
        ASSERT_TRUE(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int)) == 0);
        server = accept4(t->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        ASSERT_TRUE(server >= 0);
        ASSERT_OK(web_adopt(t->web, server));
        return fd;
}

void buf_fill(Buf *b, int fd) {
        char chunk[65536];

        for (;;) {
                ssize_t n = recv(fd, chunk, sizeof chunk, 0);

                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        b->eof = true;
                        return;
                }
                if (n < 0)
                        return;
                b->data = realloc(b->data, b->len + (size_t) n + 1);
                ASSERT_NOT_NULL(b->data);
                memcpy(b->data + b->len, chunk, (size_t) n);
                b->len += (size_t) n;
                b->data[b->len] = 0;
        }
}

void buf_consume(Buf *b, size_t n) {
        ASSERT_TRUE(n <= b->len);
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        if (b->data)
                b->data[b->len] = 0;
}

void buf_done(Buf *b) {
        free(b->data);
        *b = (Buf) {};
}

void test_web_send(TestWeb *t, int fd, const void *data, size_t len) {
        const char *p = data;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                /* A full socket buffer: the server must read, and only the
                 * loop runs it. */
                if (n < 0 && errno == EAGAIN) {
                        test_web_run(t, 10 * TEST_MSEC);
                        continue;
                }
                ASSERT_TRUE(n > 0);
                p += n;
                len -= (size_t) n;
        }
}

/* ---- sessions ---- */

typedef struct SessionResult {
        bool done;
        int r;
        SessionData d;
} SessionResult;

static void on_session(int r, const SessionData *d, void *userdata) {
        SessionResult *s = userdata;

        s->done = true;
        s->r = r;
        if (d)
                s->d = *d;
}

void test_web_session(TestWeb *t, const char *user, uid_t uid, bool staff, char ret_id[static SESSION_ID_MAX + 1],
                      char *ret_csrf) {
        SessionData d = { .uid = uid, .staff = staff };
        SessionResult res = {};

        snprintf(d.user, sizeof d.user, "%s", user);
        ASSERT_OK(session_create(t->redis, &d, t->services.settings.session_idle_usec, on_session, &res, NULL));
        for (unsigned i = 0; i < 500 && !res.done; i++)
                test_web_run(t, 10 * TEST_MSEC);
        ASSERT_TRUE(res.done);
        ASSERT_OK(res.r);
        strcpy(ret_id, res.d.id);
        if (ret_csrf)
                strcpy(ret_csrf, res.d.csrf);
}

bool test_web_session_exists(TestWeb *t, const char *id) {
        return test_redis_integer(&t->redis_server, "EXISTS " SESSION_KEY_PREFIX "%s", id) == 1;
}

/* ---- HTTP ---- */

static bool parse_reply(Buf *b, HttpReply *ret) {
        char *end = strstr(b->data ?: "", "\r\n\r\n");
        const char *cl;
        size_t head, body;

        if (!end)
                return false;
        head = (size_t) (end - b->data) + 4;
        *ret = (HttpReply) {};
        ASSERT_TRUE(sscanf(b->data, "HTTP/1.%*u %u", &ret->status) == 1);
        ret->headers = strndup(b->data, head);
        ASSERT_NOT_NULL(ret->headers);
        cl = strcasestr(ret->headers, "\r\ncontent-length:");
        if (cl)
                body = strtoul(cl + 17, NULL, 10);
        else if (b->eof)
                body = b->len - head;
        else {
                http_reply_done(ret);
                return false;
        }
        if (b->len - head < body) {
                http_reply_done(ret);
                return false;
        }
        ret->body = strndup(b->data + head, body);
        ASSERT_NOT_NULL(ret->body);
        ret->body_len = body;
        buf_consume(b, head + body);
        return true;
}

void http_exchange(TestWeb *t, int fd, Buf *b, const char *request, HttpReply *ret, uint64_t timeout) {
        uint64_t end = mono_usec() + timeout;

        test_web_send(t, fd, request, strlen(request));
        for (;;) {
                test_web_run(t, 10 * TEST_MSEC);
                buf_fill(b, fd);
                if (parse_reply(b, ret))
                        return;
                if (b->eof || mono_usec() > end) {
                        fprintf(stderr, "no complete response to:\n%s\ngot %zu bytes%s:\n%s\n", request, b->len,
                                b->eof ? " and EOF" : "", b->data ?: "");
                        ASSERT_TRUE(!"an HTTP response");
                }
        }
}

void http_get(TestWeb *t, const char *request, HttpReply *ret, uint64_t timeout) {
        Buf b = {};
        int fd = test_web_connect(t);

        http_exchange(t, fd, &b, request, ret, timeout);
        buf_done(&b);
        safe_close(fd);
}

char *http_reply_header(const HttpReply *r, const char *name, unsigned index) {
        size_t n = strlen(name);
        const char *p = r->headers;

        for (p = strstr(p, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
                const char *v;

                if (strncasecmp(p + 2, name, n) != 0 || p[2 + n] != ':')
                        continue;
                if (index-- > 0)
                        continue;
                v = p + 2 + n + 1;
                while (*v == ' ')
                        v++;
                return strndup(v, strcspn(v, "\r\n"));
        }
        return NULL;
}

void http_reply_done(HttpReply *r) {
        free(r->headers);
        free(r->body);
        *r = (HttpReply) {};
}
