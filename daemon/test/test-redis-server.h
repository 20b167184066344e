/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A private redis-server for the unit tests: a unix socket in a temp dir, killed with the test. */
#pragma once

#include <sys/types.h>

#include <hiredis/hiredis.h>

typedef struct TestRedis {
        pid_t pid;                      /* > 0 while running */
        int port;                       /* > 0: listen on 127.0.0.1 and 127.0.1.1 TCP too */
        const char *const *args;        /* more redis-server arguments, NULL-terminated */
        bool sentinel;                  /* run as a sentinel on port: no unix socket */
        const char *password;           /* test_redis_command() AUTHs with it */
        char binary[256];
        char dir[64];
        char sock[108];                 /* sizeof(sun_path) */
} TestRedis;

/* Finds redis-server and makes the temp dir with the socket path sock_name
 * in it; -ENOENT when redis-server is not installed (the caller skips). Set
 * port afterwards for TCP. */
int test_redis_init(TestRedis *s, const char *sock_name);
/* Starts the server (again, after test_redis_kill()) and waits until it
 * answers PING. It gets SIGKILL when the test dies, also on abort(). */
int test_redis_start(TestRedis *s);
void test_redis_kill(TestRedis *s);
/* Stops (SIGSTOP) or resumes (SIGCONT) the server: a Redis that hangs. */
void test_redis_signal(TestRedis *s, int sig);
/* Kills the server and removes the temp dir with what is in it. */
int test_redis_cleanup(TestRedis *s);

/* A synchronous side channel, over a connection of its own: what another
 * daemon, or anyone with Redis access, could do to the keys. Never NULL:
 * a failure aborts the test, as a failed ASSERT does. */
redisReply *test_redis_command(const TestRedis *s, const char *fmt, ...);
/* The same for a command that must answer an integer. */
long long test_redis_integer(const TestRedis *s, const char *fmt, ...);

/* A Redis Cluster of three masters with a replica each, made with
 * `redis-cli --cluster create`, on TCP ports of 127.0.0.1 (each port and
 * its cluster bus port, +10000, found free). Each node also has a unix
 * socket for test_redis_command(). */
#define TEST_CLUSTER_NODES 6

typedef struct TestRedisCluster {
        TestRedis node[TEST_CLUSTER_NODES];
        char address[TEST_CLUSTER_NODES][24];           /* "127.0.0.1:PORT" */
        char *addresses[TEST_CLUSTER_NODES + 1];        /* NULL-terminated, pointing into address */
} TestRedisCluster;

/* Starts the nodes, creates the cluster and waits as
 * test_redis_cluster_wait() does. -ENOENT when redis-server or redis-cli
 * is not installed (the caller skips). */
int test_redis_cluster_start(TestRedisCluster *cl);
/* Waits until every running node says cluster_state:ok and knows every
 * slot, and every running replica is in sync with its master. */
int test_redis_cluster_wait(TestRedisCluster *cl);
/* The index of the running node that serves slot as a master, by the
 * slot map of the first running node; -ENOENT if none. */
int test_redis_cluster_master_of(TestRedisCluster *cl, int slot);
/* Starts `redis-cli --cluster reshard` moving n_slots slots from node
 * from to node to (both masters), in the background: returns its pid for
 * test_redis_cluster_reshard_done(). */
int test_redis_cluster_reshard(TestRedisCluster *cl, int from, int to, unsigned n_slots, pid_t *ret_pid);
/* 0 while it runs, 1 when it finished successfully, -EPROTO if it failed. */
int test_redis_cluster_reshard_done(pid_t pid);
/* Kills every node and removes their directories. */
void test_redis_cluster_cleanup(TestRedisCluster *cl);
