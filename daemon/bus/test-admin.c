/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the admin backend: a real Chat on a private redis-server, behind a real Bus on a private dbus-daemon, called with sd-bus. */

/* What is real: redis-server, the Chat (chat/chat.h) with its hooks
 * recording what members are sent, the Bus and admin_bus_backend,
 * dbus-daemon, and multichat-auth under pam_matrix + nss_wrapper for the
 * admin-group lookups. Callers are this process (root) and children that
 * drop to other uids and groups. */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "auth/auth-client.h"
#include "basic/macro.h"
#include "bus/admin.h"
#include "bus/bus.h"
#include "chat/chat.h"
#include "chat/rooms.h"
#include "redis/redis.h"
#include "store/session.h"
#include "store/store.h"
#include "test/test-pam-env.h"
#include "test/test-redis-server.h"
#include "test/test.h"

#define MSEC UINT64_C(1000)
#define SEC UINT64_C(1000000)
#define NOBODY 65534
#define OTHER_GID 4242
/* An existing group of the host, so admin_new() resolves it by itself. */
#define ADMIN_GROUP "users"
/* A caller the helper's user database puts in that group. dbus-daemon
 * refuses uids its host does not know, so it has a host account's uid. */
#define OPERATOR_HOST_ACCOUNT "daemon"

/* A chat member's connection: what the chat sent and whether it closed it. */
typedef struct Peer {
        char username[32];
        char session_id[SESSION_ID_MAX + 1];
        ChatMember *member;
        char log[16384];
        size_t log_len;
        unsigned frames;
        unsigned closes;
        uint16_t close_code;
} Peer;

typedef struct Test {
        sd_event *event;
        TestRedis server;
        Redis *redis;
        Chat *chat;
        AuthClient *auth;
        Admin *admin;
        Bus *bus;
        sd_bus *client;
        char dir[64];
        char bus_address[256];
        pid_t bus_pid;
        gid_t admin_gid;
        uid_t operator_uid;

        bool ready;
        int name_state;
        unsigned n_name_state;
        unsigned rooms_added, rooms_changed, rooms_removed;
        char last_changed[ROOM_ID_MAX + 1];
        unsigned last_changes;
        Peer alice;
} Test;

static Test t;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

#define RUN_UNTIL(cond)                                                                 \
        do {                                                                            \
                uint64_t _end = mono_usec() + 10 * SEC;                                 \
                while (!(cond)) {                                                       \
                        ASSERT_TRUE(mono_usec() < _end);                                \
                        ASSERT_OK(sd_event_run(t.event, 10 * MSEC));                    \
                }                                                                       \
        } while (0)

static void run_for(uint64_t usec) {
        uint64_t end = mono_usec() + usec;

        while (mono_usec() < end)
                ASSERT_OK(sd_event_run(t.event, 10 * MSEC));
}

/* ---- the chat's hooks, wired to the bus as the daemon wires them ---- */

static void on_chat_send(void *conn, Frame *f) {
        Peer *p = conn;
        size_t n = MIN(f->len, sizeof p->log - p->log_len - 2);

        memcpy(p->log + p->log_len, frame_payload(f), n);
        p->log_len += n;
        p->log[p->log_len++] = '\n';
        p->log[p->log_len] = 0;
        p->frames++;
}

static void on_chat_close(void *conn, uint16_t code, const char *reason) {
        Peer *p = conn;

        p->closes++;
        p->close_code = code;
}

static void on_room_added(void *ud, const char *id) {
        t.rooms_added++;
        (void) bus_emit_room_added(t.bus, id);
}

static void on_room_changed(void *ud, const char *id, unsigned changes) {
        unsigned p = 0;

        t.rooms_changed++;
        snprintf(t.last_changed, sizeof t.last_changed, "%s", id);
        t.last_changes = changes;
        if (changes & CHAT_ROOM_TITLE)
                p |= BUS_ROOM_TITLE;
        if (changes & CHAT_ROOM_STAFF_ONLY)
                p |= BUS_ROOM_STAFF_ONLY;
        if (changes & CHAT_ROOM_MEMBERS)
                p |= BUS_ROOM_MEMBERS;
        (void) bus_emit_room_changed(t.bus, id, p);
}

static void on_room_removed(void *ud, const char *id) {
        t.rooms_removed++;
        (void) bus_emit_room_removed(t.bus, id);
}

static void on_ready_changed(void *ud, bool ready) {
        t.ready = ready;
}

static const ChatHooks chat_hooks = {
        .send = on_chat_send,
        .close = on_chat_close,
        .room_added = on_room_added,
        .room_changed = on_room_changed,
        .room_removed = on_room_removed,
        .ready_changed = on_ready_changed,
};

/* ---- the admin's hooks: one connection, alice's ---- */

static int on_foreach_connection(void *ud, BusConnectionVisitor visit, void *visit_ud) {
        const char *rooms[CHAT_MEMBER_ROOMS_MAX + 1];

        if (!t.alice.member)
                return 0;
        (void) chat_member_rooms(t.alice.member, rooms, ELEMENTSOF(rooms));
        return visit(&(BusConnection) {
                .username = t.alice.username,
                .peer = "192.0.2.7:50000",
                .since_usec = 1700000000000000,
                .rooms = rooms,
        }, visit_ud);
}

static uint32_t on_connections(void *ud) {
        return t.alice.member ? 1 : 0;
}

static void on_name_state(void *ud, int r) {
        t.name_state = r;
        t.n_name_state++;
}

static const AdminHooks admin_hooks = {
        .foreach_connection = on_foreach_connection,
        .connections = on_connections,
        .name_state = on_name_state,
};

/* ---- Redis ---- */

static void on_redis_state(Redis *r, bool connected, void *userdata) {
        if (connected)
                chat_on_redis_connected(t.chat);
        else
                chat_on_redis_disconnected(t.chat);
}

static void on_redis_message(Redis *r, const char *channel, const char *data, size_t len, void *userdata) {
        chat_on_redis_message(t.chat, channel, data, len);
}

/* ---- the private bus (as test-bus.c has it: an open policy, so the
 * backend's own check is what decides) ---- */

static void start_dbus_daemon(void) {
        char conf[128];
        int pipefd[2];
        size_t len = 0;
        ssize_t n;
        FILE *f;

        snprintf(conf, sizeof conf, "%s/bus.conf", t.dir);
        f = fopen(conf, "we");
        ASSERT_NOT_NULL(f);
        fprintf(f,
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<busconfig>\n"
                "  <type>system</type>\n"
                "  <listen>unix:path=%s/system_bus_socket</listen>\n"
                "  <auth>EXTERNAL</auth>\n"
                "  <policy context=\"default\">\n"
                "    <allow user=\"*\"/>\n"
                "    <allow own=\"*\"/>\n"
                "    <allow send_type=\"method_call\"/>\n"
                "    <allow send_type=\"signal\"/>\n"
                "    <allow send_requested_reply=\"true\" send_type=\"method_return\"/>\n"
                "    <allow send_requested_reply=\"true\" send_type=\"error\"/>\n"
                "    <allow receive_type=\"method_call\"/>\n"
                "    <allow receive_type=\"method_return\"/>\n"
                "    <allow receive_type=\"error\"/>\n"
                "    <allow receive_type=\"signal\"/>\n"
                "  </policy>\n"
                "</busconfig>\n", t.dir);
        ASSERT_INT_EQ(fclose(f), 0);

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        t.bus_pid = fork();
        ASSERT_OK(t.bus_pid);
        if (t.bus_pid == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1 || dup2(pipefd[1], 3) < 0)
                        _exit(127);
                execl("/usr/bin/dbus-daemon", "dbus-daemon", "--nofork", "--nopidfile", "--print-address=3",
                      "--config-file", conf, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        while (len < sizeof t.bus_address - 1 &&
               (n = read(pipefd[0], t.bus_address + len, sizeof t.bus_address - 1 - len)) > 0) {
                len += (size_t) n;
                if (memchr(t.bus_address, '\n', len))
                        break;
        }
        close(pipefd[0]);
        t.bus_address[len] = 0;
        ASSERT_NOT_NULL(strchr(t.bus_address, '\n'));
        *strchr(t.bus_address, '\n') = 0;
}

static void stop_dbus_daemon(void) {
        int status;

        if (t.bus_pid <= 0)
                return;
        (void) kill(t.bus_pid, SIGTERM);
        ASSERT_INT_EQ(waitpid(t.bus_pid, &status, 0), t.bus_pid);
        t.bus_pid = 0;
}

/* ---- calls ---- */

typedef void (*AtReply)(void *userdata);

typedef struct Reply {
        bool done;
        sd_bus_message *message;
        AtReply at_reply;
        void *userdata;
} Reply;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Reply *reply = userdata;

        /* What the chat shows when the caller hears back. */
        if (reply->at_reply)
                reply->at_reply(reply->userdata);
        reply->message = sd_bus_message_ref(m);
        reply->done = true;
        return 0;
}

/* Returns 0 or the call's -errno; ret_reply (may be NULL) gets the reply,
 * ret_error the error name. */
static int call_full(const char *path, const char *interface, const char *member, AtReply at_reply, void *at_ud,
                     sd_bus_message **ret_reply, sd_bus_error *ret_error, const char *types, ...) {
        sd_bus_message *m = NULL;
        Reply reply = { .at_reply = at_reply, .userdata = at_ud };
        sd_bus_slot *slot = NULL;
        va_list ap;
        int r = 0;

        ASSERT_OK(sd_bus_message_new_method_call(t.client, &m, BUS_SERVICE_NAME, path, interface, member));
        if (types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
                ASSERT_OK(r);
        }
        ASSERT_OK(sd_bus_call_async(t.client, &slot, m, on_reply, &reply, 5 * SEC));
        RUN_UNTIL(reply.done);
        sd_bus_slot_unref(slot);
        sd_bus_message_unref(m);

        r = 0;
        if (sd_bus_message_is_method_error(reply.message, NULL)) {
                r = -sd_bus_message_get_errno(reply.message);
                ASSERT_TRUE(r < 0);
                if (ret_error)
                        (void) sd_bus_error_copy(ret_error, sd_bus_message_get_error(reply.message));
        } else if (ret_reply)
                *ret_reply = sd_bus_message_ref(reply.message);
        sd_bus_message_unref(reply.message);
        return r;
}

#define call_manager(member, at, at_ud, ret_reply, ret_error, types, ...) \
        call_full(BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, member, at, at_ud, ret_reply, ret_error, types, ##__VA_ARGS__)

static int set_property(const char *id, const char *name, AtReply at, void *at_ud, sd_bus_error *ret_error,
                        const char *type, ...) {
        _cleanup_free_ char *path = bus_room_path(id);
        sd_bus_message *m = NULL;
        Reply reply = { .at_reply = at, .userdata = at_ud };
        sd_bus_slot *slot = NULL;
        va_list ap;
        int r = 0;

        ASSERT_NOT_NULL(path);
        ASSERT_OK(sd_bus_message_new_method_call(t.client, &m, BUS_SERVICE_NAME, path,
                                                 "org.freedesktop.DBus.Properties", "Set"));
        ASSERT_OK(sd_bus_message_append(m, "ss", BUS_ROOM_INTERFACE, name));
        ASSERT_OK(sd_bus_message_open_container(m, 'v', type));
        va_start(ap, type);
        ASSERT_OK(sd_bus_message_appendv(m, type, ap));
        va_end(ap);
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_call_async(t.client, &slot, m, on_reply, &reply, 5 * SEC));
        RUN_UNTIL(reply.done);
        sd_bus_slot_unref(slot);
        sd_bus_message_unref(m);
        if (sd_bus_message_is_method_error(reply.message, NULL)) {
                r = -sd_bus_message_get_errno(reply.message);
                if (ret_error)
                        (void) sd_bus_error_copy(ret_error, sd_bus_message_get_error(reply.message));
        }
        sd_bus_message_unref(reply.message);
        return r;
}

/* A room property as a string: "Title", "StaffOnly" ("true"/"false"),
 * "Members" (comma-separated). */
static char *get_room_property(const char *id, const char *name) {
        _cleanup_free_ char *path = bus_room_path(id);
        sd_bus_message *reply = NULL;
        char buf[512] = "";
        const char *s;
        int b;

        ASSERT_NOT_NULL(path);
        ASSERT_OK(call_full(path, "org.freedesktop.DBus.Properties", "Get", NULL, NULL, &reply, NULL, "ss",
                            BUS_ROOM_INTERFACE, name));
        if (streq(name, "StaffOnly")) {
                ASSERT_OK(sd_bus_message_read(reply, "v", "b", &b));
                snprintf(buf, sizeof buf, "%s", b ? "true" : "false");
        } else if (streq(name, "Members")) {
                ASSERT_OK(sd_bus_message_enter_container(reply, 'v', "as"));
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "s"));
                while (sd_bus_message_read(reply, "s", &s) > 0)
                        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[0] ? "," : "", s);
        } else {
                ASSERT_OK(sd_bus_message_read(reply, "v", "s", &s));
                snprintf(buf, sizeof buf, "%s", s);
        }
        sd_bus_message_unref(reply);
        return strdup(buf);
}

/* ListRooms as "id:title:staff:members;..." */
static char *list_rooms(void) {
        sd_bus_message *reply = NULL;
        char buf[1024] = "";
        const char *id, *title;
        uint32_t members;
        int staff;

        ASSERT_OK(call_manager("ListRooms", NULL, NULL, &reply, NULL, NULL));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ssbu)"));
        while (sd_bus_message_read(reply, "(ssbu)", &id, &title, &staff, &members) > 0)
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s:%s:%d:%u;", id, title, staff,
                         (unsigned) members);
        sd_bus_message_unref(reply);
        return strdup(buf);
}

/* ---- the tests ---- */

static void expect_room(const char *id, const char *title, bool staff_only) {
        Room *room = chat_find_room(t.chat, id);

        ASSERT_NOT_NULL(room);
        ASSERT_STREQ(room->title, title);
        ASSERT_INT_EQ(room->staff_only, staff_only);
}

typedef struct Expected {
        const char *id;
        const char *title;
        bool staff_only;
        bool gone;
        bool checked;
} Expected;

static void at_reply_check_room(void *userdata) {
        Expected *e = userdata;

        if (e->gone)
                ASSERT_NULL(chat_find_room(t.chat, e->id));
        else
                expect_room(e->id, e->title, e->staff_only);
        e->checked = true;
}

static void at_reply_check_created(void *userdata) {
        Expected *e = userdata;

        /* The new room is the one with the highest id so far. */
        ASSERT_NOT_NULL(chat_find_room(t.chat, e->id));
        at_reply_check_room(e);
}

static void test_existing_rooms(void) {
        _cleanup_free_ char *list = NULL, *title = NULL, *members = NULL;

        /* The room seeded in Redis before the chat started is there. */
        expect_room("1", "Hall", false);
        list = list_rooms();
        ASSERT_STREQ(list, "1:Hall:0:0;");
        title = get_room_property("1", "Title");
        ASSERT_STREQ(title, "Hall");
        members = get_room_property("1", "Members");
        ASSERT_STREQ(members, "");
}

static void test_create(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Expected e = { .id = "2", .title = "Lobby", .staff_only = false };
        Expected s = { .id = "3", .title = "Staff room", .staff_only = true };
        sd_bus_message *reply = NULL;
        const char *id, *path;
        _cleanup_free_ char *list = NULL;
        redisReply *raw;

        ASSERT_OK(call_manager("CreateRoom", at_reply_check_created, &e, &reply, NULL, "sb", "Lobby", false));
        ASSERT_TRUE(e.checked);
        ASSERT_OK(sd_bus_message_read(reply, "so", &id, &path));
        ASSERT_STREQ(id, "2");
        ASSERT_STREQ(path, BUS_ROOM_PATH_PREFIX "/2");
        sd_bus_message_unref(reply);

        ASSERT_OK(call_manager("CreateRoom", at_reply_check_created, &s, &reply, NULL, "sb", "Staff room", true));
        ASSERT_TRUE(s.checked);
        ASSERT_OK(sd_bus_message_read(reply, "so", &id, &path));
        ASSERT_STREQ(id, "3");
        sd_bus_message_unref(reply);
        ASSERT_INT_EQ(chat_room_count(t.chat), 3);

        /* In Redis, where every daemon sees it. */
        raw = test_redis_command(&t.server, "HGET mc:{rooms} 3");
        ASSERT_INT_EQ(raw->type, REDIS_REPLY_STRING);
        ASSERT_NOT_NULL(strstr(raw->str, "\"Staff room\""));
        freeReplyObject(raw);

        /* Sorted by title. */
        list = list_rooms();
        ASSERT_STREQ(list, "1:Hall:0:0;2:Lobby:0:0;3:Staff room:1:0;");

        /* A title the contract refuses never reaches the chat. */
        ASSERT_ERROR(call_manager("CreateRoom", NULL, NULL, NULL, &error, "sb", "bad\ttitle", false), EINVAL);
        sd_bus_error_free(&error);
        ASSERT_INT_EQ(chat_room_count(t.chat), 3);
}

static void test_set_properties(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Expected e = { .id = "2", .title = "Main hall", .staff_only = false };
        _cleanup_free_ char *title = NULL, *staff = NULL;
        unsigned changed = t.rooms_changed;

        ASSERT_OK(set_property("2", "Title", at_reply_check_room, &e, NULL, "s", "Main hall"));
        ASSERT_TRUE(e.checked);
        ASSERT_TRUE(t.rooms_changed > changed);
        ASSERT_STREQ(t.last_changed, "2");
        ASSERT_TRUE(t.last_changes & CHAT_ROOM_TITLE);

        e = (Expected) { .id = "2", .title = "Main hall", .staff_only = true };
        ASSERT_OK(set_property("2", "StaffOnly", at_reply_check_room, &e, NULL, "b", true));
        ASSERT_TRUE(e.checked);
        staff = get_room_property("2", "StaffOnly");
        ASSERT_STREQ(staff, "true");
        title = get_room_property("2", "Title");
        ASSERT_STREQ(title, "Main hall");

        e = (Expected) { .id = "2", .title = "Main hall", .staff_only = false };
        ASSERT_OK(set_property("2", "StaffOnly", at_reply_check_room, &e, NULL, "b", false));
        ASSERT_TRUE(e.checked);

        /* No such room. */
        ASSERT_TRUE(set_property("99", "Title", NULL, NULL, &error, "s", "x") < 0);
        sd_bus_error_free(&error);
        ASSERT_NULL(chat_find_room(t.chat, "99"));
}

static void test_members(void) {
        Command join = { .type = COMMAND_JOIN, .room = "2" };
        _cleanup_free_ char *members = NULL, *list = NULL;
        sd_bus_message *reply = NULL;
        const char *user, *peer, *room;
        uint64_t since;
        Room *r;

        /* alice's connection joins the chat and room 2. */
        ASSERT_OK(chat_member_new(t.chat, &t.alice, t.alice.username, t.alice.session_id, false, &t.alice.member));
        chat_member_command(t.alice.member, &join);
        r = chat_find_room(t.chat, "2");
        /* The join's reply and the presence event come on different Redis
         * connections, in either order. */
        RUN_UNTIL(strstr(t.alice.log, "{\"join\": \"2\", \"title\": \"Main hall\""));
        RUN_UNTIL(r->n_usernames == 1);

        members = get_room_property("2", "Members");
        ASSERT_STREQ(members, "alice");
        list = list_rooms();
        ASSERT_STREQ(list, "1:Hall:0:0;2:Main hall:0:1;3:Staff room:1:0;");

        /* ListConnections goes to the owner's hook, rooms from the chat. */
        ASSERT_OK(call_manager("ListConnections", NULL, NULL, &reply, NULL, NULL));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(sstas)"));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'r', "sstas"));
        ASSERT_OK(sd_bus_message_read(reply, "sst", &user, &peer, &since));
        ASSERT_STREQ(user, "alice");
        ASSERT_STREQ(peer, "192.0.2.7:50000");
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "s"));
        ASSERT_INT_EQ(sd_bus_message_read(reply, "s", &room), 1);
        ASSERT_STREQ(room, "2");
        sd_bus_message_unref(reply);
}

static void test_announce(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        unsigned frames = t.alice.frames;

        /* To one room: over Redis, to the members there. */
        ASSERT_OK(call_manager("Announce", NULL, NULL, NULL, NULL, "sus", "2", 2, "Maintenance at 10"));
        RUN_UNTIL(t.alice.frames > frames);
        ASSERT_NOT_NULL(strstr(t.alice.log, "Maintenance at 10"));

        /* To every room. */
        frames = t.alice.frames;
        ASSERT_OK(call_manager("Announce", NULL, NULL, NULL, NULL, "sus", "", 1, "Everyone: hello"));
        RUN_UNTIL(t.alice.frames > frames);
        ASSERT_NOT_NULL(strstr(t.alice.log, "Everyone: hello"));

        /* A room alice is not in: she hears nothing. */
        frames = t.alice.frames;
        ASSERT_OK(call_manager("Announce", NULL, NULL, NULL, NULL, "sus", "1", 1, "Hall only"));
        run_for(100 * MSEC);
        ASSERT_INT_EQ(t.alice.frames, frames);

        ASSERT_ERROR(call_manager("Announce", NULL, NULL, NULL, &error, "sus", "99", 1, "nobody"), ENOENT);
        ASSERT_STREQ(error.name, BUS_ERROR_NO_SUCH_ROOM);
        sd_bus_error_free(&error);
}

static void test_kick(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Command join = { .type = COMMAND_JOIN, .room = "1" };
        Room *hall = chat_find_room(t.chat, "1"), *main_hall = chat_find_room(t.chat, "2");

        chat_member_command(t.alice.member, &join);
        RUN_UNTIL(hall->n_usernames == 1);

        /* Out of one room: the member is told and leaves it. */
        ASSERT_OK(call_manager("KickUser", NULL, NULL, NULL, NULL, "ss", "alice", "2"));
        RUN_UNTIL(strstr(t.alice.log, "{\"leave\": \"2\", \"reason\": \"kicked\"}"));
        RUN_UNTIL(main_hall->n_usernames == 0);
        ASSERT_INT_EQ(hall->n_usernames, 1);
        ASSERT_INT_EQ(t.alice.closes, 0);

        ASSERT_ERROR(call_manager("KickUser", NULL, NULL, NULL, &error, "ss", "alice", "99"), ENOENT);
        sd_bus_error_free(&error);

        /* Out of everything: the connection is closed. */
        ASSERT_OK(call_manager("KickUser", NULL, NULL, NULL, NULL, "ss", "alice", ""));
        RUN_UNTIL(t.alice.closes == 1);
        ASSERT_INT_EQ(t.alice.close_code, CHAT_CLOSE_POLICY_VIOLATION);
        /* The owner closes it, and the chat takes it out of its rooms. */
        chat_member_closed(t.alice.member);
        t.alice.member = NULL;
        RUN_UNTIL(hall->n_usernames == 0);
}

static void test_delete(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Expected e = { .id = "3", .gone = true };
        unsigned removed = t.rooms_removed;
        _cleanup_free_ char *path = bus_room_path("3"), *list = NULL;

        ASSERT_OK(call_manager("DeleteRoom", at_reply_check_room, &e, NULL, NULL, "s", "3"));
        ASSERT_TRUE(e.checked);
        ASSERT_INT_EQ(t.rooms_removed, removed + 1);
        ASSERT_INT_EQ(test_redis_integer(&t.server, "HEXISTS mc:{rooms} 3"), 0);
        ASSERT_ERROR(call_manager("GetRoom", NULL, NULL, NULL, &error, "s", "3"), ENOENT);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager("DeleteRoom", NULL, NULL, NULL, &error, "s", "3"), ENOENT);
        ASSERT_STREQ(error.name, BUS_ERROR_NO_SUCH_ROOM);
        sd_bus_error_free(&error);

        /* The room object's own Delete. */
        e = (Expected) { .id = "1", .gone = true };
        free(path);
        path = bus_room_path("1");
        ASSERT_OK(call_full(path, BUS_ROOM_INTERFACE, "Delete", at_reply_check_room, &e, NULL, NULL, NULL));
        ASSERT_TRUE(e.checked);
        list = list_rooms();
        ASSERT_STREQ(list, "2:Main hall:0:0;");
}

/* ---- callers other than root ---- */

typedef enum Caller {
        CALLER_NOBODY_ADMIN_GID,        /* nobody, with the admin group among its groups */
        CALLER_NOBODY,                  /* nobody, in no group of interest */
        CALLER_OPERATOR,                /* in the admin group by the user database only */
} Caller;

/* (Re)starts the backend and the bus with this auth client. */
static void start_admin(AuthClient *auth) {
        t.bus = bus_free(t.bus);
        t.admin = admin_free(t.admin);
        ASSERT_OK(admin_new(&t.admin, t.chat, auth, ADMIN_GROUP, &admin_hooks, NULL));
        ASSERT_OK(bus_new(&t.bus, t.event, t.bus_address, &admin_bus_backend, t.admin));
        t.n_name_state = 0;
        ASSERT_OK(bus_start(t.bus));
        RUN_UNTIL(t.n_name_state > 0);
        ASSERT_OK(t.name_state);
}

static int child_main(Caller who) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        gid_t gid = who == CALLER_NOBODY_ADMIN_GID ? t.admin_gid : OTHER_GID;
        uid_t uid = who == CALLER_OPERATOR ? t.operator_uid : NOBODY;
        sd_bus *bus = NULL;
        int r;

        if (setgroups(1, &gid) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                return 2;
        if (sd_bus_new(&bus) < 0 || sd_bus_set_address(bus, t.bus_address) < 0 ||
            sd_bus_set_bus_client(bus, true) < 0 || sd_bus_start(bus) < 0)
                return 3;
        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "Announce", &error,
                               NULL, "sus", "", 1, "from a child");
        if (r < 0 && !sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED)) {
                fprintf(stderr, "child: %s %s\n", error.name ?: strerror(-r), error.message ?: "");
                return 4;
        }
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        return r < 0 ? 1 : 0;           /* 1: refused */
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        *(int *) userdata = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
        return 0;
}

static int run_child(Caller who) {
        sd_event_source *source = NULL;
        int status = -1;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0)
                _exit(child_main(who));
        ASSERT_OK(sd_event_add_child(t.event, &source, pid, WEXITED, on_child_exit, &status));
        RUN_UNTIL(status >= 0);
        sd_event_source_unref(source);
        return status;
}

static void test_check_admin(void) {
        _cleanup_(auth_client_freep) AuthClient *nowhere = NULL;
        char sock[128];
        uint64_t start;

        /* The bus reports the caller's groups: the admin group's gid among
         * them is enough. Asking the helper would say no (nobody is not in
         * its user database), so this also shows no lookup happened. */
        ASSERT_INT_EQ(run_child(CALLER_NOBODY_ADMIN_GID), 0);
        /* Otherwise the helper is asked: nobody is not in the group... */
        ASSERT_INT_EQ(run_child(CALLER_NOBODY), 1);
        /* ...and the operator is, by the user database only. */
        ASSERT_INT_EQ(run_child(CALLER_OPERATOR), 0);

        /* With a helper that never answers, the gid still decides at
         * once: nothing waits on a lookup. */
        snprintf(sock, sizeof sock, "%s/no-helper.sock", t.dir);
        ASSERT_OK(auth_client_new(&nowhere, t.event, &(AuthClientOptions) {
                .socket_path = sock, .timeout_usec = 8 * SEC }));
        start_admin(nowhere);
        start = mono_usec();
        ASSERT_INT_EQ(run_child(CALLER_NOBODY_ADMIN_GID), 0);
        ASSERT_TRUE(mono_usec() - start < 4 * SEC);

        /* Root needs no check at all. */
        ASSERT_OK(call_manager("Announce", NULL, NULL, NULL, NULL, "sus", "", 1, "from root"));

        start_admin(t.auth);
}

static void test_redis_gone(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int connected;

        test_redis_kill(&t.server);
        RUN_UNTIL(!t.ready);
        /* Unavailable, whichever errno the client maps it back to. */
        ASSERT_TRUE(call_manager("Announce", NULL, NULL, NULL, &error, "sus", "2", 1, "x") < 0);
        ASSERT_STREQ(error.name, BUS_ERROR_UNAVAILABLE);
        sd_bus_error_free(&error);
        ASSERT_TRUE(call_manager("KickUser", NULL, NULL, NULL, &error, "ss", "alice", "") < 0);
        ASSERT_STREQ(error.name, BUS_ERROR_UNAVAILABLE);
        sd_bus_error_free(&error);
        ASSERT_TRUE(call_manager("CreateRoom", NULL, NULL, NULL, &error, "sb", "Later", false) < 0);
        ASSERT_STREQ(error.name, BUS_ERROR_UNAVAILABLE);
        sd_bus_error_free(&error);
        ASSERT_OK(call_full(BUS_MANAGER_PATH, "org.freedesktop.DBus.Properties", "Get", NULL, NULL, &reply, NULL,
                            "ss", BUS_MANAGER_INTERFACE, "RedisConnected"));
        ASSERT_OK(sd_bus_message_read(reply, "v", "b", &connected));
        ASSERT_FALSE(connected);
        sd_bus_message_unref(reply);
}

int main(void) {
        char url[200], helper[512], users[128], groups[128];
        struct passwd *pw;
        char *args[] = { (char *) "--min-uid=1000", NULL };
        struct group *g;
        sigset_t mask;
        int r;

        if (geteuid() != 0) {
                fprintf(stderr, "not root: the callers with other uids and groups need root; skipping\n");
                return EXIT_TEST_SKIP;
        }
        if (access("/usr/bin/dbus-daemon", X_OK) < 0) {
                fprintf(stderr, "dbus-daemon not found (Debian package dbus): skipping\n");
                return EXIT_TEST_SKIP;
        }
        g = getgrnam(ADMIN_GROUP);
        ASSERT_NOT_NULL(g);
        t.admin_gid = g->gr_gid;
        pw = getpwnam(OPERATOR_HOST_ACCOUNT);
        ASSERT_NOT_NULL(pw);
        t.operator_uid = pw->pw_uid;

        r = test_redis_init(&t.server, "redis.sock");
        if (r == -ENOENT) {
                fprintf(stderr, "redis-server not found (Debian package redis-server), skipping\n");
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(r);
        ASSERT_OK(test_redis_start(&t.server));
        /* A room made before this daemon started. */
        freeReplyObject(test_redis_command(&t.server, "HSET mc:{rooms} 1 {\"title\":\"Hall\",\"staff_only\":false}"));
        freeReplyObject(test_redis_command(&t.server, "SET mc:{rooms}:seq 1"));
        freeReplyObject(test_redis_command(&t.server, "SET mc:{r1}:room 1"));

        snprintf(t.dir, sizeof t.dir, "/tmp/test-admin.XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(t.dir));
        ASSERT_OK(chmod(t.dir, 0755));          /* the children reach the bus socket */
        start_dbus_daemon();

        /* The operator is in the admin group for the helper only (nss_wrapper). */
        snprintf(users, sizeof users, "operator:x:%u:%u:operator:/:/bin/false\n", (unsigned) t.operator_uid,
                 (unsigned) t.operator_uid);
        snprintf(groups, sizeof groups, "%s:x:%u:operator\n", ADMIN_GROUP, (unsigned) t.admin_gid);
        if (test_pam_env_setup(t.dir, users, groups) < 0) {
                fprintf(stderr, "pam_matrix or nss_wrapper not found (Debian packages libpam-wrapper, "
                        "libnss-wrapper), skipping\n");
                stop_dbus_daemon();
                (void) test_redis_cleanup(&t.server);
                return EXIT_TEST_SKIP;
        }
        ASSERT_OK(test_auth_helper_path(helper, sizeof helper));

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        ASSERT_OK(sigprocmask(SIG_BLOCK, &mask, NULL));
        ASSERT_OK(sd_bus_error_add_map(bus_error_map));
        ASSERT_OK(sd_event_new(&t.event));

        snprintf(url, sizeof url, "unix:%s", t.server.sock);
        ASSERT_OK(redis_new(&t.redis, t.event, url, on_redis_state, on_redis_message, NULL));
        ASSERT_OK(chat_new(&t.chat, t.event, t.redis, &chat_hooks, NULL));
        chat_set_settings(t.chat, &(ChatSettings) {
                .history_on_join = 10, .history_size = 100, .overload_lag_usec = 5 * SEC });
        ASSERT_OK(redis_subscribe(t.redis, STORE_EVENTS_CHANNEL));
        ASSERT_OK(redis_start(t.redis));
        RUN_UNTIL(t.ready);

        ASSERT_OK(auth_client_new(&t.auth, t.event, &(AuthClientOptions) { .helper_path = helper, .helper_args = args }));
        start_admin(t.auth);

        ASSERT_OK(sd_bus_new(&t.client));
        ASSERT_OK(sd_bus_set_address(t.client, t.bus_address));
        ASSERT_OK(sd_bus_set_bus_client(t.client, true));
        ASSERT_OK(sd_bus_start(t.client));
        ASSERT_OK(sd_bus_attach_event(t.client, t.event, 0));

        snprintf(t.alice.username, sizeof t.alice.username, "alice");
        ASSERT_OK(session_id_generate(t.alice.session_id));

        test_existing_rooms();
        test_create();
        test_set_properties();
        test_members();
        test_announce();
        test_kick();
        test_delete();
        test_check_admin();
        test_redis_gone();

        sd_bus_flush_close_unref(t.client);
        t.bus = bus_free(t.bus);
        t.admin = admin_free(t.admin);
        t.auth = auth_client_free(t.auth);
        t.chat = chat_free(t.chat);
        t.redis = redis_free(t.redis);
        t.event = sd_event_unref(t.event);
        stop_dbus_daemon();
        (void) test_redis_cleanup(&t.server);
        {
                char cmd[128];

                snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", t.dir);
                (void) system(cmd);
        }
        return 0;
}
