/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the chat tests share: daemons (a Chat on a real Redis) and connections that record what they are sent. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include <jansson.h>

#include "chat/chat.h"
#include "redis/redis.h"
#include "test/test-redis-server.h"

#define TEST_MSEC 1000ULL
#define TEST_SEC 1000000ULL

typedef struct TestDaemon {
        sd_event *event;
        Redis *redis;
        Chat *chat;
        int n_ready_true, n_ready_false;
        char added[32][ROOM_ID_MAX + 1];
        unsigned n_added;
        char removed[32][ROOM_ID_MAX + 1];
        unsigned n_removed;
        unsigned changes[32];           /* ChatRoomChange masks by room id, rooms 0..31 */
} TestDaemon;

typedef struct TestConn {
        TestDaemon *daemon;
        ChatMember *member;
        char username[64];
        char session[64];
        json_t **frames;
        bool *taken;
        size_t n_frames, n_allocated;
        uint16_t close_code;            /* 0 while open */
        char close_reason[64];
        bool gone;                      /* chat_member_closed() ran */
} TestConn;

uint64_t test_now(void);

/* Starts the test's redis-server; false when it is not installed. */
bool test_server_start(TestRedis *server);

/* A daemon on the server, connected and ready (the room list loaded). */
void test_daemon_start(TestDaemon *d, sd_event *event, const TestRedis *server);
void test_daemon_stop(TestDaemon *d);

/* Runs the loop until cond holds, failing the test after 5 s. */
#define TEST_RUN_UNTIL(event, cond)                                             \
        do {                                                                    \
                uint64_t _end = test_now() + 5 * TEST_SEC;                      \
                while (!(cond) && test_now() < _end)                            \
                        ASSERT_OK(sd_event_run((event), 20 * TEST_MSEC));       \
                if (!(cond))                                                    \
                        fprintf(stderr, "%s:%d: timed out waiting for %s\n",    \
                                __FILE__, __LINE__, #cond);                     \
                ASSERT_TRUE(cond);                                              \
        } while (0)

/* Everything sent so far has been answered and every publication made by
 * then reached every daemon given (NULL-terminated). */
void test_settle(TestDaemon *const *daemons);

/* A connection of a user joins the daemon's chat; its first frame (the room
 * list) is left for the test to take. */
void test_conn_open(TestConn *c, TestDaemon *d, const char *username, const char *session, bool staff);
/* The connection is gone (closed by either side). */
void test_conn_gone(TestConn *c);
void test_conn_free(TestConn *c);

/* Parses a command frame and hands it to the chat. */
void test_conn_command(TestConn *c, const char *json);

/* The first frame not taken yet with key set to value (a string value
 * compares as the string, an integer as its decimal form, true as "true";
 * value NULL: any), waiting for it; the frame stays owned by the conn. */
json_t *test_conn_take(TestConn *c, const char *key, const char *value);
/* The same without waiting: NULL when there is none. */
json_t *test_conn_find(TestConn *c, const char *key, const char *value);
/* Frames not taken yet; prints them when there are any. */
size_t test_conn_untaken(const TestConn *c);
#define ASSERT_CONN_DONE(c)                                                     \
        ASSERT_INT_EQ(test_conn_untaken(c), 0)

const char *test_json_str(json_t *j, const char *key);
/* Whether j[key] is true; a function, so that j is evaluated once. */
bool test_json_true(json_t *j, const char *key);
