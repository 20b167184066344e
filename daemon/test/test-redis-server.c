/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A private redis-server for the unit tests: a unix socket in a temp dir, killed with the test. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
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

/* Where a shell would find a program, then where Debian puts it. */
static int find_program(const char *name, char *buf, size_t size) {
        _cleanup_free_ char *path = strdup(getenv("PATH") ?: "");
        char *state = NULL;

        if (!path)
                return -ENOMEM;
        for (char *d = strtok_r(path, ":", &state); d; d = strtok_r(NULL, ":", &state))
                if (d[0] == '/' && (size_t) snprintf(buf, size, "%s/%s", d, name) < size &&
                    access(buf, X_OK) == 0)
                        return 0;
        if ((size_t) snprintf(buf, size, "/usr/bin/%s", name) < size && access(buf, X_OK) == 0)
                return 0;
        return -ENOENT;
}

int test_redis_init(TestRedis *s, const char *sock_name) {
        int r;

        *s = (TestRedis) {};
        r = find_program("redis-server", s->binary, sizeof s->binary);
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

/* ---- a cluster ---- */

#define CLUSTER_BUS_OFFSET 10000
#define CLUSTER_READY_TRIES 3000                /* × 10 ms: a failover takes a few seconds */

static bool tcp_port_is_free(int port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        ok = bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
        close(fd);
        return ok;
}

/* Below the ephemeral range, so that the bus port (+10000) exists too and
 * outgoing connections do not take it meanwhile. */
static int cluster_free_port(void) {
        for (unsigned i = 0; i < 1000; i++) {
                unsigned v = 0;
                int port;

                if (getrandom(&v, sizeof v, 0) != sizeof v)
                        return -EIO;
                port = 20000 + (int) (v % 10000);
                if (tcp_port_is_free(port) && tcp_port_is_free(port + CLUSTER_BUS_OFFSET))
                        return port;
        }
        return -EADDRINUSE;
}

/* redis-cli with argv (after the program name), its output in the first
 * node's directory; the pid. */
static int spawn_redis_cli(TestRedisCluster *cl, const char *const *args, pid_t *ret_pid) {
        const char *argv[TEST_CLUSTER_NODES + 16];
        char binary[256], log[128];
        size_t n = 0;
        pid_t pid, parent = getpid();
        int r;

        r = find_program("redis-cli", binary, sizeof binary);
        if (r < 0)
                return r;
        argv[n++] = binary;
        for (size_t i = 0; args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = args[i];
        argv[n] = NULL;
        snprintf(log, sizeof log, "%s/redis-cli.log", cl->node[0].dir);

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (fd < 0 || getppid() != parent)
                        _exit(127);
                (void) dup2(fd, STDOUT_FILENO);
                (void) dup2(fd, STDERR_FILENO);
                execv(binary, (char **) argv);
                _exit(127);
        }
        *ret_pid = pid;
        return 0;
}

int test_redis_cluster_reshard_done(pid_t pid) {
        int status;
        pid_t k = waitpid(pid, &status, WNOHANG);

        if (k == 0)
                return 0;
        if (k != pid)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 1 : -EPROTO;
}

static int run_redis_cli_create(TestRedisCluster *cl) {
        const char *argv[TEST_CLUSTER_NODES + 8];
        size_t n = 0;
        pid_t pid;
        int r;

        argv[n++] = "--cluster";
        argv[n++] = "create";
        for (size_t i = 0; i < TEST_CLUSTER_NODES; i++)
                argv[n++] = cl->address[i];
        argv[n++] = "--cluster-replicas";
        argv[n++] = "1";
        argv[n++] = "--cluster-yes";
        argv[n] = NULL;
        r = spawn_redis_cli(cl, argv, &pid);
        if (r < 0)
                return r;
        while ((r = test_redis_cluster_reshard_done(pid)) == 0)
                usleep(READY_INTERVAL_USEC);
        return r < 0 ? r : 0;
}

static int node_id_of(const TestRedis *s, char *buf, size_t size) {
        redisReply *id = test_redis_command(s, "CLUSTER MYID");
        int r = id->type == REDIS_REPLY_STRING && (size_t) snprintf(buf, size, "%s", id->str) < size ? 0 : -EPROTO;

        freeReplyObject(id);
        return r;
}

int test_redis_cluster_reshard(TestRedisCluster *cl, int from, int to, unsigned n_slots, pid_t *ret_pid) {
        char id_from[64], id_to[64], slots[16];
        int r;

        r = node_id_of(&cl->node[from], id_from, sizeof id_from);
        if (r >= 0)
                r = node_id_of(&cl->node[to], id_to, sizeof id_to);
        if (r < 0)
                return r;
        snprintf(slots, sizeof slots, "%u", n_slots);
        return spawn_redis_cli(cl, (const char *const[]) {
                        "--cluster", "reshard", cl->address[from], "--cluster-from", id_from,
                        "--cluster-to", id_to, "--cluster-slots", slots, "--cluster-yes",
                        "--cluster-pipeline", "10", NULL }, ret_pid);
}

int test_redis_cluster_start(TestRedisCluster *cl) {
        static const char *const args[] = {
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", NULL,
        };
        char name[16];
        int r;

        *cl = (TestRedisCluster) {};
        for (size_t i = 0; i < TEST_CLUSTER_NODES; i++) {
                TestRedis *s = &cl->node[i];

                snprintf(name, sizeof name, "node%zu.sock", i);
                r = test_redis_init(s, name);
                if (r >= 0)
                        r = s->port = cluster_free_port();
                if (r >= 0) {
                        s->args = args;
                        r = test_redis_start(s);
                }
                if (r < 0) {
                        test_redis_cluster_cleanup(cl);
                        return r;
                }
                snprintf(cl->address[i], sizeof cl->address[i], "127.0.0.1:%d", s->port);
                cl->addresses[i] = cl->address[i];
        }
        r = run_redis_cli_create(cl);
        if (r >= 0)
                r = test_redis_cluster_wait(cl);
        if (r < 0)
                test_redis_cluster_cleanup(cl);
        return r;
}

static bool info_has(const redisReply *reply, const char *line) {
        return reply->type == REDIS_REPLY_STRING && strstr(reply->str, line);
}

/* ROLE: ["master", offset, replicas] or ["slave", host, port, state, offset]. */
static bool node_is_ready(const TestRedis *s) {
        redisReply *info = test_redis_command(s, "CLUSTER INFO"), *role;
        bool ok = info_has(info, "cluster_state:ok") && info_has(info, "cluster_slots_ok:16384");

        freeReplyObject(info);
        if (!ok)
                return false;
        role = test_redis_command(s, "ROLE");
        ok = role->type == REDIS_REPLY_ARRAY && role->elements >= 1 && role->element[0]->str &&
                (streq(role->element[0]->str, "master") ||
                 (role->elements >= 4 && role->element[3]->str && streq(role->element[3]->str, "connected")));
        freeReplyObject(role);
        return ok;
}

int test_redis_cluster_wait(TestRedisCluster *cl) {
        for (unsigned t = 0; t < CLUSTER_READY_TRIES; t++) {
                bool ready = true;

                for (size_t i = 0; i < TEST_CLUSTER_NODES && ready; i++)
                        if (cl->node[i].pid > 0)
                                ready = node_is_ready(&cl->node[i]);
                if (ready)
                        return 0;
                usleep(READY_INTERVAL_USEC);
        }
        return -ETIMEDOUT;
}

int test_redis_cluster_master_of(TestRedisCluster *cl, int slot) {
        const TestRedis *ask = NULL;
        redisReply *slots;
        int found = -ENOENT;

        for (size_t i = 0; i < TEST_CLUSTER_NODES && !ask; i++)
                if (cl->node[i].pid > 0)
                        ask = &cl->node[i];
        if (!ask)
                return -ENOENT;
        slots = test_redis_command(ask, "CLUSTER SLOTS");
        for (size_t i = 0; slots->type == REDIS_REPLY_ARRAY && i < slots->elements; i++) {
                const redisReply *range = slots->element[i];

                if (range->elements < 3 || slot < range->element[0]->integer || slot > range->element[1]->integer)
                        continue;
                for (size_t n = 0; n < TEST_CLUSTER_NODES; n++)
                        if (cl->node[n].pid > 0 && range->element[2]->element[1]->integer == cl->node[n].port)
                                found = (int) n;
        }
        freeReplyObject(slots);
        return found;
}

void test_redis_cluster_cleanup(TestRedisCluster *cl) {
        for (size_t i = 0; i < TEST_CLUSTER_NODES; i++)
                test_redis_kill(&cl->node[i]);
        for (size_t i = 0; i < TEST_CLUSTER_NODES; i++)
                (void) test_redis_cleanup(&cl->node[i]);
}
