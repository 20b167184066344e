/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A private redis-server for the unit tests: a unix socket in a temp dir, killed with the test. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "test/test-redis-server.h"
#include "test/test.h"

/* 500 × 10 ms: a cold redis-server on a loaded CI machine. */
#define READY_TRIES 500
#define READY_INTERVAL_USEC 10000

DEFINE_CLEANUP_FUNC(redisContext *, redisFree);

/* Where a shell would find redis-server, then where Debian puts it. */
static int find_redis_server(char *buf, size_t size) {
        _cleanup_free_ char *path = strdup(getenv("PATH") ?: "");
        char *state = NULL;

        if (!path)
                return -ENOMEM;
        for (char *d = strtok_r(path, ":", &state); d; d = strtok_r(NULL, ":", &state))
                if (d[0] == '/' && (size_t) snprintf(buf, size, "%s/redis-server", d) < size &&
                    access(buf, X_OK) == 0)
                        return 0;
        if ((size_t) snprintf(buf, size, "/usr/bin/redis-server") < size && access(buf, X_OK) == 0)
                return 0;
        return -ENOENT;
}

int test_redis_init(TestRedis *s, const char *sock_name) {
        int r;

        *s = (TestRedis) {};
        r = find_redis_server(s->binary, sizeof s->binary);
        if (r < 0)
                return r;
        /* The test's own name tells whose a leftover directory is. */
        if ((size_t) snprintf(s->dir, sizeof s->dir, "/tmp/%s.XXXXXX", program_invocation_short_name) >= sizeof s->dir)
                return -ENAMETOOLONG;
        if (!mkdtemp(s->dir)) {
                s->dir[0] = '\0';
                return -errno;
        }
        if ((size_t) snprintf(s->sock, sizeof s->sock, "%s/%s", s->dir, sock_name) >= sizeof s->sock) {
                (void) test_redis_cleanup(s);
                return -ENAMETOOLONG;
        }
        return 0;
}

static bool answers_ping(const TestRedis *s) {
        _cleanup_(redisFreep) redisContext *c = s->sentinel ? redisConnect("127.0.0.1", s->port) : redisConnectUnix(s->sock);
        redisReply *reply;
        bool ok;

        if (!c || c->err)
                return false;
        reply = redisCommand(c, "PING");
        /* A server that wants a password is up too. */
        ok = reply && (reply->type == REDIS_REPLY_STATUS ||
                       (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOAUTH", 6) == 0));
        freeReplyObject(reply);
        return ok;
}

#define ARGS_MAX 64

static _Noreturn void exec_redis_server(const TestRedis *s, pid_t parent) {
        const char *argv[ARGS_MAX];
        char port[16], conf[128];
        size_t n = 0;
        int null, fd;

        /* Dies with us, also when an assertion aborts the test. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(EXIT_FAILURE);
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        (void) dup2(null, STDIN_FILENO);
        (void) dup2(null, STDOUT_FILENO);
        snprintf(port, sizeof port, "%d", MAX(s->port, 0));

        argv[n++] = s->binary;
        if (s->sentinel) {
                /* A sentinel rewrites its configuration file: it needs one of its own. */
                snprintf(conf, sizeof conf, "%s/sentinel.conf", s->dir);
                fd = open(conf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (fd < 0)
                        _exit(127);
                close(fd);
                argv[n++] = conf;
                argv[n++] = "--sentinel";
        }
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        if (!s->sentinel) {
                argv[n++] = "127.0.1.1";
                argv[n++] = "--unixsocket";
                argv[n++] = s->sock;
                argv[n++] = "--save";
                argv[n++] = "";
                argv[n++] = "--appendonly";
                argv[n++] = "no";
        }
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = s->dir;
        argv[n++] = "--logfile";
        argv[n++] = "redis.log";
        argv[n++] = "--loglevel";
        argv[n++] = "warning";
        for (size_t i = 0; s->args && s->args[i] && n < ARGS_MAX - 1; i++)
                argv[n++] = s->args[i];
        argv[n] = NULL;
        execv(s->binary, (char **) argv);
        _exit(127);
}

int test_redis_start(TestRedis *s) {
        pid_t parent = getpid();

        if (s->pid > 0 || !s->dir[0])
                return -EINVAL;
        s->pid = fork();
        if (s->pid < 0) {
                s->pid = 0;
                return -errno;
        }
        if (s->pid == 0)
                exec_redis_server(s, parent);

        /* Ready once the socket answers: a stale socket file of an earlier
         * run refuses until the new server has bound it again. */
        for (unsigned i = 0; i < READY_TRIES; i++) {
                if (answers_ping(s))
                        return 0;
                if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                        s->pid = 0;
                        return -ESRCH;
                }
                usleep(READY_INTERVAL_USEC);
        }
        test_redis_kill(s);
        return -ETIMEDOUT;
}

void test_redis_kill(TestRedis *s) {
        if (s->pid <= 0)
                return;
        (void) kill(s->pid, SIGKILL);
        (void) waitpid(s->pid, NULL, 0);
        s->pid = 0;
}

void test_redis_signal(TestRedis *s, int sig) {
        if (s->pid > 0)
                (void) kill(s->pid, sig);
}

int test_redis_cleanup(TestRedis *s) {
        struct dirent *de;
        DIR *d;
        int r = 0;

        test_redis_kill(s);
        if (!s->dir[0])
                return 0;
        d = opendir(s->dir);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") &&
                    unlinkat(dirfd(d), de->d_name, 0) < 0 && r == 0)
                        r = -errno;
        closedir(d);
        if (rmdir(s->dir) < 0 && r == 0)
                r = -errno;
        if (r == 0)
                s->dir[0] = '\0';
        return r;
}

static redisReply *test_redis_vcommand(const TestRedis *s, const char *fmt, va_list ap) {
        _cleanup_(redisFreep) redisContext *c = s->sentinel ? redisConnect("127.0.0.1", s->port) : redisConnectUnix(s->sock);
        redisReply *reply;

        ASSERT_TRUE(c && !c->err);
        if (s->password) {
                reply = redisCommand(c, "AUTH %s", s->password);
                ASSERT_TRUE(reply && reply->type == REDIS_REPLY_STATUS);
                freeReplyObject(reply);
        }
        reply = redisvCommand(c, fmt, ap);
        ASSERT_NOT_NULL(reply);
        return reply;
}

redisReply *test_redis_command(const TestRedis *s, const char *fmt, ...) {
        redisReply *reply;
        va_list ap;

        va_start(ap, fmt);
        reply = test_redis_vcommand(s, fmt, ap);
        va_end(ap);
        return reply;
}

long long test_redis_integer(const TestRedis *s, const char *fmt, ...) {
        redisReply *reply;
        long long v;
        va_list ap;

        va_start(ap, fmt);
        reply = test_redis_vcommand(s, fmt, ap);
        va_end(ap);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_INTEGER);
        v = reply->integer;
        freeReplyObject(reply);
        return v;
}
