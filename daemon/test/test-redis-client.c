/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The event loop, clock and setup the Redis client's unit tests drive their clients with. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "basic/macro.h"
#include "test/test-redis-client.h"
#include "test/test.h"

uint64_t test_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

void test_reply_record(TestReply *out, const redisReply *reply) {
        out->calls++;
        out->null = !reply;
        if (!reply)
                return;
        out->type = reply->type;
        out->integer = reply->integer;
        out->len = reply->str ? reply->len : 0;
        if (reply->str) {
                size_t n = MIN(reply->len, sizeof(out->str) - 1);

                memcpy(out->str, reply->str, n);
                out->str[n] = '\0';
        }
        out->elements = reply->elements;
        for (size_t i = 0; i < MIN(reply->elements, ELEMENTSOF(out->element)); i++) {
                if (reply->element[i]->str)
                        snprintf(out->element[i], sizeof(out->element[i]), "%s", reply->element[i]->str);
                out->element_int[i] = reply->element[i]->integer;
        }
}

int test_free_tcp_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        ASSERT_TRUE(getsockname(fd, (struct sockaddr *) &sa, &len) == 0);
        close(fd);
        return ntohs(sa.sin_port);
}

bool test_run_until(sd_event *e, bool (*done)(const void *arg), const void *arg, uint64_t timeout) {
        uint64_t end = test_now_usec() + timeout;

        while (!done(arg) && test_now_usec() < end)
                ASSERT_OK(sd_event_run(e, 50000));
        return done(arg);
}

static bool flag_set(const void *arg) {
        return *(const bool *) arg;
}

bool test_run_until_set(sd_event *e, const bool *flag, uint64_t timeout) {
        return test_run_until(e, flag_set, flag, timeout);
}

void test_run_for(sd_event *e, uint64_t usec) {
        uint64_t end = test_now_usec() + usec;

        while (test_now_usec() < end)
                ASSERT_OK(sd_event_run(e, end - test_now_usec()));
}

void test_redis_init_or_skip(TestRedis *s, const char *sock_name) {
        int r = test_redis_init(s, sock_name);

        if (r == -ENOENT) {
                printf("skipping: redis-server not installed (apt-get install redis-server)\n");
                exit(EXIT_TEST_SKIP);
        }
        ASSERT_OK(r);
        (void) signal(SIGPIPE, SIG_IGN);
}
