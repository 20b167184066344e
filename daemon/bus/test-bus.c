/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for bus: a private dbus-daemon, an in-memory backend, sd-bus clients as root and as nobody. */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
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

#include "bus/bus.h"
#include "config-build.h"
#include "basic/macro.h"
#include "test/test.h"

#define USEC_PER_SEC 1000000ULL
#define NOBODY 65534
#define CHILD_GID 4242          /* a supplementary group the non-root caller carries */

typedef struct TestRoom {
        char id[ROOM_ID_MAX + 1];
        char title[BUS_TITLE_MAX + 1];
        bool staff_only;
        const char *const *members;
} TestRoom;

typedef struct Test {
        sd_event *event;
        char dir[64];
        char address[256];
        pid_t daemon_pid;

        Bus *bus;
        sd_bus *client;
        sd_bus_slot *match;
        sd_bus_message *signals[64];
        size_t n_signals;

        /* the backend's state */
        TestRoom rooms[32];
        size_t n_rooms;
        unsigned next_id;
        uint32_t connections;
        bool redis_connected;
        uint64_t messages_relayed;

        int name_state;
        unsigned n_name_state;

        bool hold;                      /* create_room keeps requests here */
        BusRequest *held[64];
        size_t n_held;

        uid_t admin_uid;
        unsigned n_check_admin;
        uid_t check_uid;
        size_t check_n_gids;
        bool check_saw_child_gid;

        unsigned n_ops;
        unsigned n_announce;
        char announce_room[ROOM_ID_MAX + 1];
        unsigned announce_level;
        char announce_text[BUS_ANNOUNCE_MAX + 1];
        unsigned n_kick;
        char kick_user[USERNAME_MAX + 1];
        char kick_room[ROOM_ID_MAX + 1];
} Test;

static const char *const two_members[] = { "alice", "bob", NULL };

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- the in-memory backend ---- */

static TestRoom *test_room(Test *t, const char *id) {
        for (size_t i = 0; i < t->n_rooms; i++)
                if (streq(t->rooms[i].id, id))
                        return &t->rooms[i];
        return NULL;
}

static TestRoom *test_room_add(Test *t, const char *title, bool staff_only) {
        TestRoom *room;

        ASSERT_TRUE(t->n_rooms < ELEMENTSOF(t->rooms));
        room = &t->rooms[t->n_rooms++];
        *room = (TestRoom) { .staff_only = staff_only };
        snprintf(room->id, sizeof(room->id), "%u", ++t->next_id);
        snprintf(room->title, sizeof(room->title), "%s", title);
        return room;
}

static void fill_room(const TestRoom *room, BusRoom *ret) {
        size_t n = 0;

        while (room->members && room->members[n])
                n++;
        *ret = (BusRoom) {
                .id = room->id,
                .title = room->title,
                .staff_only = room->staff_only,
                .members = (uint32_t) n,
        };
}

static int be_foreach_room(void *ud, BusRoomVisitor visit, void *visit_ud) {
        Test *t = ud;

        for (size_t i = 0; i < t->n_rooms; i++) {
                BusRoom room;
                int r;

                fill_room(&t->rooms[i], &room);
                r = visit(&room, visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int be_get_room(void *ud, const char *id, BusRoom *ret) {
        TestRoom *room = test_room(ud, id);

        if (!room)
                return -ENOENT;
        fill_room(room, ret);
        return 0;
}

static int be_foreach_member(void *ud, const char *id, BusStringVisitor visit, void *visit_ud) {
        TestRoom *room = test_room(ud, id);

        if (!room)
                return -ENOENT;
        for (const char *const *m = room->members; m && *m; m++) {
                int r = visit(*m, visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int be_foreach_connection(void *ud, BusConnectionVisitor visit, void *visit_ud) {
        static const char *const rooms_a[] = { "1", "2", NULL };
        const BusConnection c[] = {
                { .username = "alice", .peer = "192.0.2.1:50000", .since_usec = 1700000000000000ULL, .rooms = rooms_a },
                { .username = "bob", .peer = "[2001:db8::1]:443", .since_usec = 42, .rooms = NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(c); i++) {
                int r = visit(&c[i], visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint32_t be_connections(void *ud) {
        return ((Test *) ud)->connections;
}

static bool be_redis_connected(void *ud) {
        return ((Test *) ud)->redis_connected;
}

static uint64_t be_messages_relayed(void *ud) {
        return ((Test *) ud)->messages_relayed;
}

/* Operations complete on a later loop iteration, as Redis round trips would. */
typedef enum DeferredOp { DO_CREATE, DO_DELETE, DO_TITLE, DO_STAFF_ONLY, DO_AUTHORIZE } DeferredOp;

typedef struct Deferred {
        Test *t;
        BusRequest *req;
        sd_event_source *source;
        DeferredOp op;
        char id[ROOM_ID_MAX + 1];
        char title[BUS_TITLE_MAX + 1];
        bool flag;
        uid_t uid;
} Deferred;

static int on_deferred(sd_event_source *s, void *userdata) {
        Deferred *d = userdata;
        Test *t = d->t;
        TestRoom *room = test_room(t, d->id);
        int r = 0;

        switch (d->op) {
        case DO_CREATE:
                room = test_room_add(t, d->title, d->flag);
                ASSERT_OK(bus_emit_room_added(t->bus, room->id));
                bus_request_complete(d->req, 0, room->id);
                break;
        case DO_DELETE:
                if (room) {
                        *room = t->rooms[--t->n_rooms];
                        ASSERT_OK(bus_emit_room_removed(t->bus, d->id));
                } else
                        r = -ENOENT;
                bus_request_complete(d->req, r, NULL);
                break;
        case DO_TITLE:
        case DO_STAFF_ONLY:
                if (!room)
                        r = -ENOENT;
                else if (d->op == DO_TITLE) {
                        snprintf(room->title, sizeof(room->title), "%s", d->title);
                        ASSERT_OK(bus_emit_room_changed(t->bus, d->id, BUS_ROOM_TITLE));
                } else {
                        room->staff_only = d->flag;
                        ASSERT_OK(bus_emit_room_changed(t->bus, d->id, BUS_ROOM_STAFF_ONLY));
                }
                bus_request_complete(d->req, r, NULL);
                break;
        case DO_AUTHORIZE:
                bus_request_authorized(d->req, d->uid == t->admin_uid);
                break;
        }

        sd_event_source_unref(d->source);
        free(d);
        return 0;
}

static int defer(Test *t, BusRequest *req, DeferredOp op, const char *id, const char *title, bool flag, uid_t uid) {
        Deferred *d = calloc(1, sizeof(Deferred));

        ASSERT_NOT_NULL(d);
        *d = (Deferred) { .t = t, .req = req, .op = op, .flag = flag, .uid = uid };
        snprintf(d->id, sizeof(d->id), "%s", id ?: "");
        snprintf(d->title, sizeof(d->title), "%s", title ?: "");
        ASSERT_OK(sd_event_add_defer(t->event, &d->source, on_deferred, d));
        ASSERT_OK(sd_event_source_set_enabled(d->source, SD_EVENT_ONESHOT));
        return 0;
}

static int be_create_room(void *ud, const char *title, bool staff_only, BusRequest *req) {
        Test *t = ud;

        t->n_ops++;
        if (t->hold) {
                ASSERT_TRUE(t->n_held < ELEMENTSOF(t->held));
                t->held[t->n_held++] = req;
                return 0;
        }
        return defer(t, req, DO_CREATE, NULL, title, staff_only, 0);
}

static int be_delete_room(void *ud, const char *id, BusRequest *req) {
        ((Test *) ud)->n_ops++;
        return defer(ud, req, DO_DELETE, id, NULL, false, 0);
}

static int be_set_title(void *ud, const char *id, const char *title, BusRequest *req) {
        ((Test *) ud)->n_ops++;
        return defer(ud, req, DO_TITLE, id, title, false, 0);
}

static int be_set_staff_only(void *ud, const char *id, bool staff_only, BusRequest *req) {
        ((Test *) ud)->n_ops++;
        return defer(ud, req, DO_STAFF_ONLY, id, NULL, staff_only, 0);
}

/* Completes inside the hook, or refuses by returning an error. */
static int be_announce(void *ud, const char *room_id, unsigned level, const char *text, BusRequest *req) {
        Test *t = ud;

        t->n_ops++;
        t->n_announce++;
        snprintf(t->announce_room, sizeof(t->announce_room), "%s", room_id);
        snprintf(t->announce_text, sizeof(t->announce_text), "%s", text);
        t->announce_level = level;
        if (*room_id && !test_room(t, room_id))
                return -ENOENT;
        bus_request_complete(req, t->redis_connected ? 0 : -ENOTCONN, NULL);
        return 0;
}

static int be_kick(void *ud, const char *username, const char *room_id, BusRequest *req) {
        Test *t = ud;

        t->n_ops++;
        t->n_kick++;
        snprintf(t->kick_user, sizeof(t->kick_user), "%s", username);
        snprintf(t->kick_room, sizeof(t->kick_room), "%s", room_id);
        if (*room_id && !test_room(t, room_id))
                return -ENOENT;
        ASSERT_INT_EQ(bus_request_uid(req), 0);
        bus_request_complete(req, 0, NULL);
        return 0;
}

static int be_check_admin(void *ud, uid_t uid, const gid_t *gids, size_t n_gids, BusRequest *req) {
        Test *t = ud;

        t->n_check_admin++;
        t->check_uid = uid;
        t->check_n_gids = n_gids;
        for (size_t i = 0; i < n_gids; i++)
                if (gids[i] == CHILD_GID)
                        t->check_saw_child_gid = true;
        ASSERT_NOT_NULL(bus_request_sender(req));
        return defer(t, req, DO_AUTHORIZE, NULL, NULL, false, uid);
}

static void be_name_state(void *ud, int r) {
        Test *t = ud;

        t->name_state = r;
        t->n_name_state++;
}

static const BusBackend test_backend = {
        .foreach_room = be_foreach_room,
        .get_room = be_get_room,
        .foreach_member = be_foreach_member,
        .foreach_connection = be_foreach_connection,
        .connections = be_connections,
        .redis_connected = be_redis_connected,
        .messages_relayed = be_messages_relayed,
        .create_room = be_create_room,
        .delete_room = be_delete_room,
        .set_title = be_set_title,
        .set_staff_only = be_set_staff_only,
        .announce = be_announce,
        .kick = be_kick,
        .check_admin = be_check_admin,
        .name_state = be_name_state,
};

/* ---- the client side, on the same event loop ---- */

/* Runs the loop until cond holds; a test that stalls fails within seconds
 * instead of hanging until meson's timeout. */
#define RUN_UNTIL(t, cond)                                                              \
        do {                                                                            \
                uint64_t _deadline = now_usec() + 10 * USEC_PER_SEC;                    \
                while (!(cond)) {                                                       \
                        ASSERT_TRUE(now_usec() < _deadline);                            \
                        ASSERT_OK(sd_event_run((t)->event, 100 * 1000));                \
                }                                                                       \
        } while (0)

static void run_for(Test *t, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (now_usec() < deadline)
                ASSERT_OK(sd_event_run(t->event, 10 * 1000));
}

typedef struct Reply {
        bool done;
        sd_bus_message *message;
} Reply;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Reply *reply = userdata;

        reply->message = sd_bus_message_ref(m);
        reply->done = true;
        return 0;
}

/* Calls and waits while the server side runs. Returns 0 or the -errno of the
 * error name (through bus_error_map for ours); error gets the name. */
static int call_message(Test *t, sd_bus_message *m, sd_bus_message **ret_reply, sd_bus_error *ret_error) {
        sd_bus_slot *slot = NULL;
        Reply reply = {};
        int r = 0;

        ASSERT_OK(sd_bus_call_async(t->client, &slot, m, on_reply, &reply, 5 * USEC_PER_SEC));
        RUN_UNTIL(t, reply.done);
        sd_bus_slot_unref(slot);

        if (sd_bus_message_is_method_error(reply.message, NULL)) {
                r = -sd_bus_message_get_errno(reply.message);
                ASSERT_TRUE(r < 0);
                if (ret_error)
                        (void) sd_bus_error_copy(ret_error, sd_bus_message_get_error(reply.message)); /* returns its errno */
        } else if (ret_reply) {
                *ret_reply = TAKE_PTR(reply.message);
        }
        sd_bus_message_unref(reply.message);
        return r;
}

static int call(Test *t, const char *path, const char *interface, const char *member,
                sd_bus_message **ret_reply, sd_bus_error *ret_error, const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(t->client, &m, BUS_SERVICE_NAME, path, interface, member));
        if (types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
                ASSERT_OK(r);
        }
        r = call_message(t, m, ret_reply, ret_error);
        sd_bus_message_unref(m);
        return r;
}

static int call_manager(Test *t, const char *member, sd_bus_message **ret_reply, sd_bus_error *ret_error,
                        const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(t->client, &m, BUS_SERVICE_NAME, BUS_MANAGER_PATH,
                                                 BUS_MANAGER_INTERFACE, member));
        if (types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
                ASSERT_OK(r);
        }
        r = call_message(t, m, ret_reply, ret_error);
        sd_bus_message_unref(m);
        return r;
}

/* Properties.Get; the reply is left inside the variant. */
static int get_property(Test *t, const char *path, const char *interface, const char *name, const char *type,
                        sd_bus_message **ret_reply, sd_bus_error *ret_error) {
        sd_bus_message *reply = NULL;
        int r;

        r = call(t, path, "org.freedesktop.DBus.Properties", "Get", &reply, ret_error, "ss", interface, name);
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_enter_container(reply, 'v', type));
        *ret_reply = reply;
        return 0;
}

static char *get_string(Test *t, const char *path, const char *interface, const char *name) {
        sd_bus_message *reply = NULL;
        const char *s;
        char *copy;

        ASSERT_OK(get_property(t, path, interface, name, "s", &reply, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "s", &s));
        copy = strdup(s);
        ASSERT_NOT_NULL(copy);
        sd_bus_message_unref(reply);
        return copy;
}

static int set_property(Test *t, const char *path, const char *interface, const char *name,
                        sd_bus_error *ret_error, const char *type, ...) {
        sd_bus_message *m = NULL;
        va_list ap;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(t->client, &m, BUS_SERVICE_NAME, path,
                                                 "org.freedesktop.DBus.Properties", "Set"));
        ASSERT_OK(sd_bus_message_append(m, "ss", interface, name));
        ASSERT_OK(sd_bus_message_open_container(m, 'v', type));
        va_start(ap, type);
        r = sd_bus_message_appendv(m, type, ap);
        va_end(ap);
        ASSERT_OK(r);
        ASSERT_OK(sd_bus_message_close_container(m));
        r = call_message(t, m, NULL, ret_error);
        sd_bus_message_unref(m);
        return r;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Test *t = userdata;

        ASSERT_TRUE(t->n_signals < ELEMENTSOF(t->signals));
        t->signals[t->n_signals++] = sd_bus_message_ref(m);
        return 0;
}

/* The next signal from the service, which must be this one. */
static sd_bus_message *expect_signal(Test *t, const char *path, const char *interface, const char *member) {
        sd_bus_message *m;

        RUN_UNTIL(t, t->n_signals > 0);
        m = t->signals[0];
        memmove(t->signals, t->signals + 1, --t->n_signals * sizeof(t->signals[0]));
        ASSERT_STREQ(sd_bus_message_get_path(m), path);
        ASSERT_TRUE(sd_bus_message_is_signal(m, interface, member));
        return m;
}

static void expect_no_signal(Test *t, uint64_t usec) {
        run_for(t, usec);
        if (t->n_signals > 0)
                fprintf(stderr, "unexpected signal %s.%s on %s\n", sd_bus_message_get_interface(t->signals[0]),
                        sd_bus_message_get_member(t->signals[0]), sd_bus_message_get_path(t->signals[0]));
        ASSERT_INT_EQ(t->n_signals, 0);
}

/* Reads PropertiesChanged(s, a{sv}, as) into the names of the changed
 * properties, "Name=" + a string or boolean value, comma-separated, then
 * the invalidated ones as "Name!". */
static void read_properties_changed(sd_bus_message *m, const char *interface, char *buf, size_t size) {
        const char *iface, *name;
        size_t len = 0;

        ASSERT_OK(sd_bus_message_read(m, "s", &iface));
        ASSERT_STREQ(iface, interface);
        ASSERT_OK(sd_bus_message_enter_container(m, 'a', "{sv}"));
        buf[0] = '\0';
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                const char *contents;
                char type;

                ASSERT_OK(sd_bus_message_read(m, "s", &name));
                ASSERT_OK(sd_bus_message_peek_type(m, &type, &contents));
                len += snprintf(buf + len, size - len, "%s%s=", len ? "," : "", name);
                ASSERT_OK(sd_bus_message_enter_container(m, 'v', contents));
                if (streq(contents, "s")) {
                        const char *s;
                        ASSERT_OK(sd_bus_message_read(m, "s", &s));
                        len += snprintf(buf + len, size - len, "%s", s);
                } else if (streq(contents, "b")) {
                        int b;
                        ASSERT_OK(sd_bus_message_read(m, "b", &b));
                        len += snprintf(buf + len, size - len, "%s", b ? "true" : "false");
                } else if (streq(contents, "u")) {
                        uint32_t u;
                        ASSERT_OK(sd_bus_message_read(m, "u", &u));
                        len += snprintf(buf + len, size - len, "%u", u);
                } else if (streq(contents, "as")) {
                        const char *s;
                        ASSERT_OK(sd_bus_message_enter_container(m, 'a', "s"));
                        while (sd_bus_message_read(m, "s", &s) > 0)
                                len += snprintf(buf + len, size - len, "%s;", s);
                        ASSERT_OK(sd_bus_message_exit_container(m));
                } else
                        ASSERT_OK(sd_bus_message_skip(m, contents));
                ASSERT_TRUE(len < size);
                ASSERT_OK(sd_bus_message_exit_container(m));
                ASSERT_OK(sd_bus_message_exit_container(m));
        }
        ASSERT_OK(sd_bus_message_exit_container(m));
        ASSERT_OK(sd_bus_message_enter_container(m, 'a', "s"));
        while (sd_bus_message_read(m, "s", &name) > 0) {
                len += snprintf(buf + len, size - len, "%s%s!", len ? "," : "", name);
                ASSERT_TRUE(len < size);
        }
        ASSERT_OK(sd_bus_message_exit_container(m));
}

/* ---- the private bus ---- */

static const char *find_dbus_daemon(void) {
        static const char *const candidates[] = { "/usr/bin/dbus-daemon", "/bin/dbus-daemon", "/usr/local/bin/dbus-daemon" };

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], X_OK) == 0)
                        return candidates[i];
        return NULL;
}

/* A system bus in miniature: EXTERNAL auth, every caller may connect and
 * call. The bus policy is deliberately open so the daemon's own check is
 * what is tested here; the shipped policy is the integration tests' job. */
static void start_dbus_daemon(Test *t, const char *binary) {
        char conf[128], arg[32];
        int pipefd[2];
        FILE *f;
        ssize_t n;
        size_t len = 0;

        snprintf(t->dir, sizeof(t->dir), "/tmp/test-bus-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(t->dir));
        ASSERT_OK(chmod(t->dir, 0755));        /* nobody must reach the socket */
        snprintf(conf, sizeof(conf), "%s/bus.conf", t->dir);
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
                "</busconfig>\n", t->dir);
        ASSERT_INT_EQ(fclose(f), 0);

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        t->daemon_pid = fork();
        ASSERT_OK(t->daemon_pid);
        if (t->daemon_pid == 0) {
                /* A failed assertion aborts us: take the bus down too. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
                        _exit(127);
                if (dup2(pipefd[1], 3) < 0)
                        _exit(127);
                snprintf(arg, sizeof(arg), "--print-address=3");
                execl(binary, "dbus-daemon", "--nofork", "--nopidfile", arg, "--config-file", conf, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        while (len < sizeof(t->address) - 1 && (n = read(pipefd[0], t->address + len, sizeof(t->address) - 1 - len)) > 0) {
                len += (size_t) n;
                if (memchr(t->address, '\n', len))
                        break;
        }
        close(pipefd[0]);
        t->address[len] = '\0';
        ASSERT_NOT_NULL(strchr(t->address, '\n'));
        *strchr(t->address, '\n') = '\0';
}

static void stop_dbus_daemon(Test *t) {
        char path[128];
        int status;

        if (t->daemon_pid > 0) {
                (void) kill(t->daemon_pid, SIGTERM);
                ASSERT_INT_EQ(waitpid(t->daemon_pid, &status, 0), t->daemon_pid);
                t->daemon_pid = 0;
        }
        snprintf(path, sizeof(path), "%s/bus.conf", t->dir);
        (void) unlink(path);
        snprintf(path, sizeof(path), "%s/system_bus_socket", t->dir);
        (void) unlink(path);
        (void) rmdir(t->dir);
}

static sd_bus *connect_client(const char *address) {
        sd_bus *bus = NULL;

        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, address));
        ASSERT_OK(sd_bus_set_bus_client(bus, true));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

/* ---- the tests ---- */

static void test_validation(void) {
        char s[BUS_ANNOUNCE_MAX + 2];
        char *p;

        ASSERT_TRUE(bus_room_id_is_valid("1"));
        ASSERT_TRUE(bus_room_id_is_valid("42"));
        ASSERT_TRUE(bus_room_id_is_valid("12345678901234567890"));
        ASSERT_FALSE(bus_room_id_is_valid("123456789012345678901"));
        ASSERT_FALSE(bus_room_id_is_valid("0"));
        ASSERT_FALSE(bus_room_id_is_valid("01"));
        ASSERT_FALSE(bus_room_id_is_valid(""));
        ASSERT_FALSE(bus_room_id_is_valid("1a"));
        ASSERT_FALSE(bus_room_id_is_valid(" 1"));
        ASSERT_FALSE(bus_room_id_is_valid("-1"));
        ASSERT_FALSE(bus_room_id_is_valid(NULL));

        ASSERT_TRUE(bus_title_is_valid("Lobby"));
        ASSERT_TRUE(bus_title_is_valid("Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
        ASSERT_FALSE(bus_title_is_valid(""));
        ASSERT_FALSE(bus_title_is_valid(NULL));
        ASSERT_FALSE(bus_title_is_valid("a\nb"));
        ASSERT_FALSE(bus_title_is_valid("a\tb"));
        ASSERT_FALSE(bus_title_is_valid("a\x7f"));
        ASSERT_FALSE(bus_title_is_valid("a\xc2\x85"));            /* C1 control NEL */
        ASSERT_FALSE(bus_title_is_valid("\xc3\x28"));             /* broken sequence */
        ASSERT_FALSE(bus_title_is_valid("\xc0\xaf"));             /* overlong '/' */
        ASSERT_FALSE(bus_title_is_valid("\xe0\x80\xaf"));         /* overlong, 3 bytes */
        ASSERT_FALSE(bus_title_is_valid("\xed\xa0\x80"));         /* surrogate */
        ASSERT_FALSE(bus_title_is_valid("\xf4\x90\x80\x80"));     /* past U+10FFFF */
        ASSERT_FALSE(bus_title_is_valid("\xe2\x82"));             /* truncated */
        /* nothing visible */
        ASSERT_FALSE(bus_title_is_valid(" "));
        ASSERT_FALSE(bus_title_is_valid("\xe3\x85\xa4"));         /* U+3164 HANGUL FILLER */
        ASSERT_FALSE(bus_title_is_valid("\xe2\x80\x8e\xe2\x80\x8f")); /* LRM RLM */
        ASSERT_FALSE(bus_title_is_valid("\xe2\x80\xae \xe2\x81\xa6")); /* RLO, LRI */
        ASSERT_FALSE(bus_title_is_valid("\xc2\xad\xef\xb8\x8f"));  /* SOFT HYPHEN, VS16 */
        ASSERT_FALSE(bus_title_is_valid("\xe2\xa0\x80"));         /* U+2800 BRAILLE PATTERN BLANK */
        ASSERT_TRUE(bus_title_is_valid("\xe2\x9d\xa4\xef\xb8\x8f")); /* ❤️ */
        ASSERT_TRUE(bus_title_is_valid("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d")); /* Hebrew */
        ASSERT_TRUE(bus_title_is_valid("\xe5\xa4\xa7\xe5\xbb\xb3")); /* CJK */
        ASSERT_TRUE(bus_title_is_valid("\xe3\x85\xa4" "a"));
        memset(s, 'x', BUS_TITLE_MAX);
        s[BUS_TITLE_MAX] = '\0';
        ASSERT_TRUE(bus_title_is_valid(s));
        s[BUS_TITLE_MAX] = 'x';
        s[BUS_TITLE_MAX + 1] = '\0';
        ASSERT_FALSE(bus_title_is_valid(s));

        ASSERT_TRUE(bus_announcement_is_valid("line 1\nline 2\tend"));
        ASSERT_FALSE(bus_announcement_is_valid("bell\a"));
        ASSERT_FALSE(bus_announcement_is_valid(""));
        memset(s, 'y', BUS_ANNOUNCE_MAX);
        s[BUS_ANNOUNCE_MAX] = '\0';
        ASSERT_TRUE(bus_announcement_is_valid(s));
        s[BUS_ANNOUNCE_MAX] = 'y';
        s[BUS_ANNOUNCE_MAX + 1] = '\0';
        ASSERT_FALSE(bus_announcement_is_valid(s));

        ASSERT_TRUE(bus_username_is_valid("alice"));
        ASSERT_FALSE(bus_username_is_valid(""));
        ASSERT_FALSE(bus_username_is_valid("al\nice"));

        p = bus_room_path("7");
        ASSERT_STREQ(p, "/org/multichat/Chat1/room/7");
        ASSERT_STREQ(bus_room_path_to_id(p), "7");
        free(p);
        ASSERT_NULL(bus_room_path("07"));
        ASSERT_NULL(bus_room_path_to_id("/org/multichat/Chat1/room/07"));
        ASSERT_NULL(bus_room_path_to_id("/org/multichat/Chat1/room/"));
        ASSERT_NULL(bus_room_path_to_id("/org/multichat/Chat1/room"));
        ASSERT_NULL(bus_room_path_to_id("/org/multichat/Chat1/roomy/1"));
        ASSERT_NULL(bus_room_path_to_id("/org/multichat/Chat1/room/1/x"));
}

static void test_name(Test *t) {
        Test other = { .event = t->event };
        Bus *second = NULL;

        ASSERT_FALSE(bus_is_ready(t->bus));
        ASSERT_OK(bus_start(t->bus));
        RUN_UNTIL(t, t->n_name_state > 0);
        ASSERT_INT_EQ(t->name_state, 0);
        ASSERT_TRUE(bus_is_ready(t->bus));

        /* A second daemon on the same bus is told, not queued. */
        ASSERT_OK(bus_new(&second, t->event, t->address, &test_backend, &other));
        ASSERT_OK(bus_start(second));
        RUN_UNTIL(t, other.n_name_state > 0);
        ASSERT_INT_EQ(other.name_state, -EEXIST);
        ASSERT_FALSE(bus_is_ready(second));
        /* Before the name is ours signals are no-ops, not errors. */
        ASSERT_OK(bus_emit_room_added(second, "1"));
        bus_free(second);
}

static void test_manager_properties(Test *t) {
        sd_bus_message *reply = NULL;
        const char *s;
        uint32_t u;
        uint64_t x;
        int b;

        ASSERT_OK(get_property(t, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "Version", "s", &reply, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "s", &s));
        ASSERT_STREQ(s, PACKAGE_VERSION);
        reply = sd_bus_message_unref(reply);

        ASSERT_OK(get_property(t, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "Connections", "u", &reply, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "u", &u));
        ASSERT_INT_EQ(u, 7);
        reply = sd_bus_message_unref(reply);

        ASSERT_OK(get_property(t, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "RedisConnected", "b", &reply, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "b", &b));
        ASSERT_TRUE(b);
        reply = sd_bus_message_unref(reply);

        ASSERT_OK(get_property(t, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "MessagesRelayed", "t", &reply, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "t", &x));
        ASSERT_INT_EQ(x, 123456789012ULL);
        sd_bus_message_unref(reply);
}

static char *introspect(Test *t, const char *path) {
        sd_bus_message *reply = NULL;
        const char *xml;
        char *copy;

        ASSERT_OK(call(t, path, "org.freedesktop.DBus.Introspectable", "Introspect", &reply, NULL, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "s", &xml));
        copy = strdup(xml);
        ASSERT_NOT_NULL(copy);
        sd_bus_message_unref(reply);
        return copy;
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle)) {
                fprintf(stderr, "missing in introspection: %s\n", needle);
                ASSERT_TRUE(false);
        }
}

static void test_introspection(Test *t) {
        char *xml = introspect(t, BUS_MANAGER_PATH);

        /* The members and signatures of the spec, exactly. */
        assert_contains(xml, "<interface name=\"org.multichat.Chat1.Manager\">");
        assert_contains(xml, "<interface name=\"org.freedesktop.DBus.ObjectManager\">");
        assert_contains(xml, "<method name=\"CreateRoom\">\n   <arg type=\"s\" name=\"title\" direction=\"in\"/>\n"
                             "   <arg type=\"b\" name=\"staff_only\" direction=\"in\"/>\n"
                             "   <arg type=\"s\" name=\"id\" direction=\"out\"/>\n"
                             "   <arg type=\"o\" name=\"path\" direction=\"out\"/>\n  </method>");
        assert_contains(xml, "<method name=\"DeleteRoom\">\n   <arg type=\"s\" name=\"id\" direction=\"in\"/>\n  </method>");
        assert_contains(xml, "<method name=\"ListRooms\">\n   <arg type=\"a(ssbu)\" name=\"rooms\" direction=\"out\"/>\n  </method>");
        assert_contains(xml, "<method name=\"GetRoom\">\n   <arg type=\"s\" name=\"id\" direction=\"in\"/>\n"
                             "   <arg type=\"o\" name=\"path\" direction=\"out\"/>\n  </method>");
        assert_contains(xml, "<method name=\"Announce\">\n   <arg type=\"s\" name=\"room_id\" direction=\"in\"/>\n"
                             "   <arg type=\"u\" name=\"level\" direction=\"in\"/>\n"
                             "   <arg type=\"s\" name=\"text\" direction=\"in\"/>\n  </method>");
        assert_contains(xml, "<method name=\"KickUser\">\n   <arg type=\"s\" name=\"username\" direction=\"in\"/>\n"
                             "   <arg type=\"s\" name=\"room_id\" direction=\"in\"/>\n  </method>");
        assert_contains(xml, "<method name=\"ListConnections\">\n   <arg type=\"a(sstas)\" name=\"connections\" direction=\"out\"/>\n  </method>");
        assert_contains(xml, "<property name=\"Version\" type=\"s\" access=\"read\">\n"
                             "   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"const\"/>");
        assert_contains(xml, "<property name=\"Connections\" type=\"u\" access=\"read\">\n  </property>");
        assert_contains(xml, "<property name=\"RedisConnected\" type=\"b\" access=\"read\">\n  </property>");
        assert_contains(xml, "<property name=\"MessagesRelayed\" type=\"t\" access=\"read\">\n"
                             "   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"false\"/>");
        assert_contains(xml, "<node name=\"room\"/>");
        free(xml);

        xml = introspect(t, BUS_ROOM_PATH_PREFIX "/1");
        assert_contains(xml, "<interface name=\"org.multichat.Chat1.Room\">");
        assert_contains(xml, "<property name=\"Id\" type=\"s\" access=\"read\">\n"
                             "   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"const\"/>");
        assert_contains(xml, "<property name=\"Title\" type=\"s\" access=\"readwrite\">\n  </property>");
        assert_contains(xml, "<property name=\"StaffOnly\" type=\"b\" access=\"readwrite\">\n  </property>");
        assert_contains(xml, "<property name=\"Members\" type=\"as\" access=\"read\">\n"
                             "   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"invalidates\"/>");
        assert_contains(xml, "<method name=\"Delete\">\n  </method>");
        free(xml);

        xml = introspect(t, BUS_ROOM_PATH_PREFIX);
        assert_contains(xml, "<node name=\"1\"/>");
        assert_contains(xml, "<node name=\"2\"/>");
        free(xml);
}

/* Introspection XML as sorted lines "interface|member|detail", only our two
 * interfaces, so that sd-bus' layout and a hand-written file compare. */
static char *xml_attribute(const char *tag, size_t len, const char *name) {
        char key[32];
        const char *p, *end;

        snprintf(key, sizeof(key), " %s=\"", name);
        p = memmem(tag, len, key, strlen(key));
        if (!p)
                return strdup("");
        p += strlen(key);
        end = memchr(p, '"', len - (size_t) (p - tag));
        ASSERT_NOT_NULL(end);
        return strndup(p, (size_t) (end - p));
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static char *xml_normalize(const char *xml) {
        char *lines[256], *iface = NULL, *member = NULL, *out;
        size_t n = 0, total = 1;
        unsigned arg = 0;

        for (const char *p = strchr(xml, '<'); p; p = strchr(p + 1, '<')) {
                const char *end = strchr(p, '>');
                size_t len;
                char *name, *line = NULL;

                ASSERT_NOT_NULL(end);
                len = (size_t) (end - p);
                if (p[1] == '!' || p[1] == '?')
                        continue;
                if (strncmp(p, "</interface", 11) == 0) {
                        iface = mfree(iface);
                        continue;
                }
                if (strncmp(p, "</method", 8) == 0 || strncmp(p, "</property", 10) == 0 || strncmp(p, "</signal", 8) == 0) {
                        member = mfree(member);
                        continue;
                }
                if (p[1] == '/')
                        continue;

                name = xml_attribute(p, len, "name");
                if (strncmp(p, "<interface ", 11) == 0) {
                        free(iface);
                        iface = TAKE_PTR(name);
                        continue;
                }
                if (!iface || (!streq(iface, BUS_MANAGER_INTERFACE) && !streq(iface, BUS_ROOM_INTERFACE))) {
                        free(name);
                        continue;
                }
                if (strncmp(p, "<method ", 8) == 0 || strncmp(p, "<signal ", 8) == 0) {
                        ASSERT_TRUE(asprintf(&line, "%s|%.*s %s", iface, 6, p + 1, name) > 0);
                        free(member);
                        member = p[len - 1] == '/' ? NULL : strdup(name);
                        arg = 0;
                } else if (strncmp(p, "<property ", 10) == 0) {
                        char *type = xml_attribute(p, len, "type"), *access = xml_attribute(p, len, "access");
                        ASSERT_TRUE(asprintf(&line, "%s|property %s|%s %s", iface, name, type, access) > 0);
                        free(member);
                        member = p[len - 1] == '/' ? NULL : strdup(name);
                        free(type);
                        free(access);
                } else if (strncmp(p, "<arg ", 5) == 0) {
                        char *type = xml_attribute(p, len, "type"), *dir = xml_attribute(p, len, "direction");
                        ASSERT_TRUE(asprintf(&line, "%s|%s|arg%u %s %s %s", iface, member ?: "?", arg++, type,
                                             *dir ? dir : "in", name) > 0);
                        free(type);
                        free(dir);
                } else if (strncmp(p, "<annotation ", 12) == 0) {
                        char *value = xml_attribute(p, len, "value");
                        ASSERT_TRUE(asprintf(&line, "%s|%s|annotation %s=%s", iface, member ?: "", name, value) > 0);
                        free(value);
                }
                free(name);
                if (line) {
                        ASSERT_TRUE(n < ELEMENTSOF(lines));
                        lines[n++] = line;
                        total += strlen(line) + 1;
                }
        }
        free(iface);
        free(member);

        qsort(lines, n, sizeof(lines[0]), compare_strings);
        out = malloc(total);
        ASSERT_NOT_NULL(out);
        out[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                strcat(out, lines[i]);
                strcat(out, "\n");
                free(lines[i]);
        }
        return out;
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf;
        size_t n;

        if (!f)
                return NULL;
        buf = calloc(1, 64 * 1024);
        ASSERT_NOT_NULL(buf);
        n = fread(buf, 1, 64 * 1024 - 1, f);
        ASSERT_TRUE(n > 0 && n < 64 * 1024 - 1);
        fclose(f);
        return buf;
}

/* What we serve equals the XML installed for clients, member for member. */
static void test_introspection_matches_shipped_xml(Test *t) {
        const char *root = getenv("MULTICHAT_SOURCE_ROOT");
        char path[4096], *shipped, *ours_manager, *ours_room, *ours, *theirs;

        if (!root) {
                fprintf(stderr, "MULTICHAT_SOURCE_ROOT unset, not comparing with dbus/org.multichat.Chat1.xml\n");
                return;
        }
        snprintf(path, sizeof(path), "%s/dbus/org.multichat.Chat1.xml", root);
        shipped = read_file(path);
        ASSERT_NOT_NULL(shipped);

        ours_manager = introspect(t, BUS_MANAGER_PATH);
        ours_room = introspect(t, BUS_ROOM_PATH_PREFIX "/1");
        ASSERT_TRUE(asprintf(&ours, "%s%s", ours_manager, ours_room) > 0);
        free(ours_manager);
        free(ours_room);

        theirs = xml_normalize(shipped);
        ours_manager = xml_normalize(ours);
        if (!streq(theirs, ours_manager))
                fprintf(stderr, "introspection differs from %s:\n--- shipped\n%s--- served\n%s", path, theirs, ours_manager);
        ASSERT_STREQ(theirs, ours_manager);
        ASSERT_NOT_NULL(strstr(theirs, "org.multichat.Chat1.Manager|CreateRoom|arg3 o out path\n"));
        free(theirs);
        free(ours_manager);
        free(ours);
        free(shipped);
}

static void test_create_room(Test *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL, *sig;
        const char *id, *path, *iface;
        char buf[512];
        unsigned ops = t->n_ops;

        ASSERT_OK(call_manager(t, "CreateRoom", &reply, NULL, "sb", "Staff room", true));
        ASSERT_OK(sd_bus_message_read(reply, "so", &id, &path));
        ASSERT_STREQ(id, "3");
        ASSERT_STREQ(path, "/org/multichat/Chat1/room/3");
        sd_bus_message_unref(reply);
        ASSERT_INT_EQ(t->n_ops, ops + 1);
        ASSERT_STREQ(test_room(t, "3")->title, "Staff room");
        ASSERT_TRUE(test_room(t, "3")->staff_only);

        /* InterfacesAdded with every property, before the reply. */
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded");
        ASSERT_OK(sd_bus_message_read(sig, "o", &path));
        ASSERT_STREQ(path, "/org/multichat/Chat1/room/3");
        ASSERT_OK(sd_bus_message_enter_container(sig, 'a', "{sa{sv}}"));
        buf[0] = '\0';
        while (sd_bus_message_enter_container(sig, 'e', "sa{sv}") > 0) {
                ASSERT_OK(sd_bus_message_read(sig, "s", &iface));
                if (streq(iface, BUS_ROOM_INTERFACE)) {
                        const char *name;
                        ASSERT_OK(sd_bus_message_enter_container(sig, 'a', "{sv}"));
                        size_t len = 0;
                        while (sd_bus_message_enter_container(sig, 'e', "sv") > 0) {
                                ASSERT_OK(sd_bus_message_read(sig, "s", &name));
                                len += snprintf(buf + len, sizeof(buf) - len, "%s,", name);
                                if (streq(name, "Title")) {
                                        ASSERT_OK(sd_bus_message_read(sig, "v", "s", &iface));
                                        ASSERT_STREQ(iface, "Staff room");
                                } else
                                        ASSERT_OK(sd_bus_message_skip(sig, "v"));
                                ASSERT_OK(sd_bus_message_exit_container(sig));
                        }
                        ASSERT_OK(sd_bus_message_exit_container(sig));
                } else
                        ASSERT_OK(sd_bus_message_skip(sig, "a{sv}"));
                ASSERT_OK(sd_bus_message_exit_container(sig));
        }
        /* Members only invalidates: a room of thousands is not sent whole
         * with every change, nor with InterfacesAdded. */
        ASSERT_STREQ(buf, "Id,Title,StaffOnly,");
        sd_bus_message_unref(sig);

        /* Invalid titles never reach the backend. */
        ASSERT_ERROR(call_manager(t, "CreateRoom", NULL, &error, "sb", "", false), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        memset(buf, 't', BUS_TITLE_MAX + 1);
        buf[BUS_TITLE_MAX + 1] = '\0';
        ASSERT_ERROR(call_manager(t, "CreateRoom", NULL, &error, "sb", buf, false), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "CreateRoom", NULL, &error, "sb", "tab\there", false), EINVAL);
        sd_bus_error_free(&error);
        /* A wrong signature is sd-bus' InvalidArgs. */
        ASSERT_ERROR(call_manager(t, "CreateRoom", NULL, &error, "s", "no flag"), EINVAL);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        ASSERT_INT_EQ(t->n_ops, ops + 1);
        expect_no_signal(t, 50 * 1000);
}

static void test_list_and_get(Test *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *id, *title, *path, *user, *peer, *room;
        char buf[256];
        size_t len = 0;
        uint32_t members;
        uint64_t since;
        int staff;

        buf[0] = '\0';
        ASSERT_OK(call_manager(t, "ListRooms", &reply, NULL, NULL));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ssbu)"));
        while (sd_bus_message_read(reply, "(ssbu)", &id, &title, &staff, &members) > 0)
                len += snprintf(buf + len, sizeof(buf) - len, "%s:%s:%d:%u;", id, title, staff, members);
        ASSERT_STREQ(buf, "1:Lobby:0:2;2:Empty:0:0;3:Staff room:1:0;");
        reply = sd_bus_message_unref(reply);

        ASSERT_OK(call_manager(t, "GetRoom", &reply, NULL, "s", "2"));
        ASSERT_OK(sd_bus_message_read(reply, "o", &path));
        ASSERT_STREQ(path, "/org/multichat/Chat1/room/2");
        reply = sd_bus_message_unref(reply);

        ASSERT_ERROR(call_manager(t, "GetRoom", NULL, &error, "s", "99"), ENOENT);
        ASSERT_STREQ(error.name, BUS_ERROR_NO_SUCH_ROOM);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "GetRoom", NULL, &error, "s", "01"), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);

        ASSERT_OK(call_manager(t, "ListConnections", &reply, NULL, NULL));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(sstas)"));
        len = 0;
        while (sd_bus_message_enter_container(reply, 'r', "sstas") > 0) {
                ASSERT_OK(sd_bus_message_read(reply, "sst", &user, &peer, &since));
                len += snprintf(buf + len, sizeof(buf) - len, "%s %s %llu [", user, peer, (unsigned long long) since);
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "s"));
                while (sd_bus_message_read(reply, "s", &room) > 0)
                        len += snprintf(buf + len, sizeof(buf) - len, "%s,", room);
                ASSERT_OK(sd_bus_message_exit_container(reply));
                ASSERT_OK(sd_bus_message_exit_container(reply));
                len += snprintf(buf + len, sizeof(buf) - len, "];");
        }
        ASSERT_STREQ(buf, "alice 192.0.2.1:50000 1700000000000000 [1,2,];bob [2001:db8::1]:443 42 [];");
        reply = sd_bus_message_unref(reply);

        /* Room properties, all at once. */
        ASSERT_OK(call(t, BUS_ROOM_PATH_PREFIX "/1", "org.freedesktop.DBus.Properties", "GetAll",
                       &reply, NULL, "s", BUS_ROOM_INTERFACE));
        {
                /* GetAll returns a{sv}; prepend nothing and read it like PropertiesChanged's dict. */
                const char *name;
                len = 0;
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
                while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                        ASSERT_OK(sd_bus_message_read(reply, "s", &name));
                        len += snprintf(buf + len, sizeof(buf) - len, "%s=", name);
                        if (streq(name, "Id") || streq(name, "Title")) {
                                ASSERT_OK(sd_bus_message_read(reply, "v", "s", &title));
                                len += snprintf(buf + len, sizeof(buf) - len, "%s;", title);
                        } else if (streq(name, "StaffOnly")) {
                                ASSERT_OK(sd_bus_message_read(reply, "v", "b", &staff));
                                len += snprintf(buf + len, sizeof(buf) - len, "%d;", staff);
                        } else {
                                ASSERT_OK(sd_bus_message_enter_container(reply, 'v', "as"));
                                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "s"));
                                while (sd_bus_message_read(reply, "s", &user) > 0)
                                        len += snprintf(buf + len, sizeof(buf) - len, "%s,", user);
                                ASSERT_OK(sd_bus_message_exit_container(reply));
                                ASSERT_OK(sd_bus_message_exit_container(reply));
                                len += snprintf(buf + len, sizeof(buf) - len, ";");
                        }
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                }
        }
        ASSERT_STREQ(buf, "Id=1;Title=Lobby;StaffOnly=0;Members=alice,bob,;");
        reply = sd_bus_message_unref(reply);

        /* A room that does not exist is no object at all. */
        ASSERT_TRUE(get_property(t, BUS_ROOM_PATH_PREFIX "/99", BUS_ROOM_INTERFACE, "Title", "s", &reply, &error) < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_UNKNOWN_OBJECT);
        sd_bus_error_free(&error);
        ASSERT_TRUE(get_property(t, BUS_ROOM_PATH_PREFIX "/01", BUS_ROOM_INTERFACE, "Title", "s", &reply, &error) < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_UNKNOWN_OBJECT);
        sd_bus_error_free(&error);

        /* ObjectManager lists every room. */
        ASSERT_OK(call(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                       &reply, NULL, NULL));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}"));
        len = 0;
        while (sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}") > 0) {
                ASSERT_OK(sd_bus_message_read(reply, "o", &path));
                len += snprintf(buf + len, sizeof(buf) - len, "%s;", path);
                ASSERT_OK(sd_bus_message_skip(reply, "a{sa{sv}}"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        /* sd-bus sorts nothing: compare as a set */
        ASSERT_NOT_NULL(strstr(buf, "/org/multichat/Chat1/room/1;"));
        ASSERT_NOT_NULL(strstr(buf, "/org/multichat/Chat1/room/2;"));
        ASSERT_NOT_NULL(strstr(buf, "/org/multichat/Chat1/room/3;"));
        ASSERT_INT_EQ(strlen(buf), 3 * strlen("/org/multichat/Chat1/room/1;"));
        sd_bus_message_unref(reply);
}

static void test_set_properties(Test *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *sig;
        char buf[256], *title;
        unsigned ops = t->n_ops;

        ASSERT_OK(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Title", NULL, "s", "Renamed"));
        ASSERT_STREQ(test_room(t, "2")->title, "Renamed");
        title = get_string(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Title");
        ASSERT_STREQ(title, "Renamed");
        free(title);
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/2", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
        ASSERT_STREQ(buf, "Title=Renamed");
        sd_bus_message_unref(sig);

        ASSERT_OK(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "StaffOnly", NULL, "b", true));
        ASSERT_TRUE(test_room(t, "2")->staff_only);
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/2", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
        ASSERT_STREQ(buf, "StaffOnly=true");
        sd_bus_message_unref(sig);
        ASSERT_INT_EQ(t->n_ops, ops + 2);

        /* Refusals: bad title, wrong type, read-only, unknown, no such room. */
        ASSERT_ERROR(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Title", &error, "s", ""), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        ASSERT_ERROR(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Title", &error, "s", "bell\a"), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        ASSERT_ERROR(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Title", &error, "b", true), EINVAL);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        ASSERT_ERROR(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "StaffOnly", &error, "s", "yes"), EINVAL);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        ASSERT_TRUE(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Id", &error, "s", "5") < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_PROPERTY_READ_ONLY);
        sd_bus_error_free(&error);
        ASSERT_TRUE(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Members", &error, "as", 0) < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_PROPERTY_READ_ONLY);
        sd_bus_error_free(&error);
        ASSERT_TRUE(set_property(t, BUS_ROOM_PATH_PREFIX "/2", BUS_ROOM_INTERFACE, "Colour", &error, "s", "red") < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_UNKNOWN_PROPERTY);
        sd_bus_error_free(&error);
        ASSERT_TRUE(set_property(t, BUS_ROOM_PATH_PREFIX "/99", BUS_ROOM_INTERFACE, "Title", &error, "s", "x") < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_UNKNOWN_OBJECT);
        sd_bus_error_free(&error);
        ASSERT_TRUE(set_property(t, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "Version", &error, "s", "9") < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_PROPERTY_READ_ONLY);
        sd_bus_error_free(&error);
        ASSERT_INT_EQ(t->n_ops, ops + 2);
        ASSERT_STREQ(test_room(t, "2")->title, "Renamed");
        expect_no_signal(t, 150 * 1000);
}

static void test_announce_and_kick(Test *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char big[BUS_ANNOUNCE_MAX + 2];

        ASSERT_OK(call_manager(t, "Announce", NULL, NULL, "sus", "1", 2, "Maintenance at 10"));
        ASSERT_INT_EQ(t->n_announce, 1);
        ASSERT_STREQ(t->announce_room, "1");
        ASSERT_INT_EQ(t->announce_level, 2);
        ASSERT_STREQ(t->announce_text, "Maintenance at 10");

        ASSERT_OK(call_manager(t, "Announce", NULL, NULL, "sus", "", 3, "To everyone\nin every room"));
        ASSERT_STREQ(t->announce_room, "");
        ASSERT_STREQ(t->announce_text, "To everyone\nin every room");
        ASSERT_INT_EQ(t->n_announce, 2);

        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "1", 0, "x"), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "1", 4, "x"), EINVAL);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "1", 1, ""), EINVAL);
        sd_bus_error_free(&error);
        memset(big, 'a', BUS_ANNOUNCE_MAX + 1);
        big[BUS_ANNOUNCE_MAX + 1] = '\0';
        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "1", 1, big), EINVAL);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "x", 1, "hi"), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        ASSERT_INT_EQ(t->n_announce, 2);
        big[BUS_ANNOUNCE_MAX] = '\0';
        ASSERT_OK(call_manager(t, "Announce", NULL, NULL, "sus", "1", 1, big));
        ASSERT_INT_EQ(t->n_announce, 3);

        /* The backend refuses by returning an error... */
        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "99", 1, "hi"), ENOENT);
        ASSERT_STREQ(error.name, BUS_ERROR_NO_SUCH_ROOM);
        ASSERT_NOT_NULL(strstr(error.message, "'99'"));
        sd_bus_error_free(&error);
        /* ...or by completing with one: Redis is down. */
        t->redis_connected = false;
        ASSERT_ERROR(call_manager(t, "Announce", NULL, &error, "sus", "1", 1, "hi"), ENOTCONN);
        ASSERT_STREQ(error.name, BUS_ERROR_UNAVAILABLE);
        sd_bus_error_free(&error);
        t->redis_connected = true;

        ASSERT_OK(call_manager(t, "KickUser", NULL, NULL, "ss", "alice", ""));
        ASSERT_STREQ(t->kick_user, "alice");
        ASSERT_STREQ(t->kick_room, "");
        ASSERT_OK(call_manager(t, "KickUser", NULL, NULL, "ss", "bob", "1"));
        ASSERT_STREQ(t->kick_user, "bob");
        ASSERT_STREQ(t->kick_room, "1");
        ASSERT_ERROR(call_manager(t, "KickUser", NULL, &error, "ss", "bob", "99"), ENOENT);
        ASSERT_STREQ(error.name, BUS_ERROR_NO_SUCH_ROOM);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "KickUser", NULL, &error, "ss", "", ""), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "KickUser", NULL, &error, "ss", "alice", "007"), EINVAL);
        sd_bus_error_free(&error);
        ASSERT_INT_EQ(t->n_kick, 3);
}

static void test_emit(Test *t) {
        sd_bus_message *sig;
        char buf[256];

        /* Three changes in a row are one signal carrying the latest values. */
        static const char *const members[] = { "alice", "bob", "carol", NULL };
        t->rooms[0].members = members;
        ASSERT_OK(bus_emit_room_changed(t->bus, "1", BUS_ROOM_MEMBERS));
        ASSERT_OK(bus_emit_room_changed(t->bus, "1", BUS_ROOM_MEMBERS));
        snprintf(test_room(t, "1")->title, BUS_TITLE_MAX, "Hall");
        ASSERT_OK(bus_emit_room_changed(t->bus, "1", BUS_ROOM_TITLE));
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/1", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
        ASSERT_STREQ(buf, "Title=Hall,Members!");
        sd_bus_message_unref(sig);
        expect_no_signal(t, 2 * BUS_CHANGE_INTERVAL_USEC);

        /* A burst right after a flush waits for the interval, then goes out once. */
        ASSERT_OK(bus_emit_room_changed(t->bus, "1", BUS_ROOM_MEMBERS));
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/1", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        sd_bus_message_unref(sig);
        {
                uint64_t start = now_usec();
                ASSERT_OK(bus_emit_room_changed(t->bus, "1", BUS_ROOM_MEMBERS));
                ASSERT_OK(bus_emit_room_changed(t->bus, "2", BUS_ROOM_TITLE));
                sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/1", "org.freedesktop.DBus.Properties", "PropertiesChanged");
                ASSERT_TRUE(now_usec() - start >= BUS_CHANGE_INTERVAL_USEC / 2);
                sd_bus_message_unref(sig);
                sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/2", "org.freedesktop.DBus.Properties", "PropertiesChanged");
                read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
                ASSERT_STREQ(buf, "Title=Renamed");
                sd_bus_message_unref(sig);
        }

        /* The manager's changing properties. */
        t->connections = 9;
        t->redis_connected = false;
        ASSERT_OK(bus_emit_manager_changed(t->bus, BUS_MANAGER_CONNECTIONS));
        ASSERT_OK(bus_emit_manager_changed(t->bus, BUS_MANAGER_REDIS_CONNECTED));
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.Properties", "PropertiesChanged");
        read_properties_changed(sig, BUS_MANAGER_INTERFACE, buf, sizeof(buf));
        ASSERT_STREQ(buf, "Connections=9,RedisConnected=false");
        sd_bus_message_unref(sig);
        t->redis_connected = true;
        ASSERT_OK(bus_emit_manager_changed(t->bus, 0));
        expect_no_signal(t, 2 * BUS_CHANGE_INTERVAL_USEC);

        ASSERT_ERROR(bus_emit_room_changed(t->bus, "x", BUS_ROOM_TITLE), EINVAL);
        ASSERT_ERROR(bus_emit_room_added(t->bus, "01"), EINVAL);
        ASSERT_ERROR(bus_emit_room_added(t->bus, "77"), ENOENT);        /* not in the backend */

        /* A room another daemon removed: pending changes are dropped, and the
         * signal names our interface although the backend forgot the room. */
        ASSERT_OK(bus_emit_room_changed(t->bus, "2", BUS_ROOM_TITLE));
        ASSERT_OK(bus_emit_room_removed(t->bus, "77"));
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved");
        {
                const char *path, *iface;
                size_t len = 0;
                ASSERT_OK(sd_bus_message_read(sig, "o", &path));
                ASSERT_STREQ(path, BUS_ROOM_PATH_PREFIX "/77");
                ASSERT_OK(sd_bus_message_enter_container(sig, 'a', "s"));
                while (sd_bus_message_read(sig, "s", &iface) > 0)
                        len += snprintf(buf + len, sizeof(buf) - len, "%s;", iface);
                ASSERT_STREQ(buf, "org.freedesktop.DBus.Peer;org.freedesktop.DBus.Introspectable;"
                                  "org.freedesktop.DBus.Properties;org.multichat.Chat1.Room;");
        }
        sd_bus_message_unref(sig);
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/2", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        sd_bus_message_unref(sig);

        /* Right after that flush a change has to wait; the room is removed
         * meanwhile (the backend still answers for it): the change is dropped,
         * nothing follows InterfacesRemoved. */
        ASSERT_OK(bus_emit_room_changed(t->bus, "1", BUS_ROOM_MEMBERS));
        ASSERT_OK(bus_emit_room_removed(t->bus, "1"));
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved");
        sd_bus_message_unref(sig);
        expect_no_signal(t, 2 * BUS_CHANGE_INTERVAL_USEC);
        ASSERT_OK(bus_emit_room_added(t->bus, "1"));
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded");
        sd_bus_message_unref(sig);
        expect_no_signal(t, 2 * BUS_CHANGE_INTERVAL_USEC);
}

static void test_delete(Test *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *sig, *reply = NULL;
        const char *path;
        char buf[256];

        /* Changes still pending when a room is deleted never go out: one
         * flush first, so that the next change has to wait. */
        ASSERT_OK(bus_emit_room_changed(t->bus, "3", BUS_ROOM_MEMBERS));
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/3", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
        ASSERT_STREQ(buf, "Members!");
        sd_bus_message_unref(sig);
        ASSERT_OK(bus_emit_room_changed(t->bus, "3", BUS_ROOM_TITLE));
        ASSERT_OK(call(t, BUS_ROOM_PATH_PREFIX "/3", BUS_ROOM_INTERFACE, "Delete", NULL, NULL, NULL));
        ASSERT_NULL(test_room(t, "3"));
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved");
        ASSERT_OK(sd_bus_message_read(sig, "o", &path));
        ASSERT_STREQ(path, BUS_ROOM_PATH_PREFIX "/3");
        sd_bus_message_unref(sig);
        expect_no_signal(t, 2 * BUS_CHANGE_INTERVAL_USEC);

        ASSERT_TRUE(get_property(t, BUS_ROOM_PATH_PREFIX "/3", BUS_ROOM_INTERFACE, "Title", "s", &reply, &error) < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_UNKNOWN_OBJECT);
        sd_bus_error_free(&error);
        ASSERT_TRUE(call(t, BUS_ROOM_PATH_PREFIX "/3", BUS_ROOM_INTERFACE, "Delete", NULL, &error, NULL) < 0);
        ASSERT_STREQ(error.name, SD_BUS_ERROR_UNKNOWN_OBJECT);
        sd_bus_error_free(&error);

        ASSERT_ERROR(call_manager(t, "DeleteRoom", NULL, &error, "s", "3"), ENOENT);
        ASSERT_STREQ(error.name, BUS_ERROR_NO_SUCH_ROOM);
        sd_bus_error_free(&error);
        ASSERT_ERROR(call_manager(t, "DeleteRoom", NULL, &error, "s", ""), EINVAL);
        ASSERT_STREQ(error.name, BUS_ERROR_INVALID_ARGUMENT);
        sd_bus_error_free(&error);

        ASSERT_OK(call_manager(t, "CreateRoom", &reply, NULL, "sb", "Short-lived", false));
        sd_bus_message_unref(reply);
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded");
        sd_bus_message_unref(sig);
        ASSERT_OK(call_manager(t, "DeleteRoom", NULL, NULL, "s", "4"));
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved");
        ASSERT_OK(sd_bus_message_read(sig, "o", &path));
        ASSERT_STREQ(path, BUS_ROOM_PATH_PREFIX "/4");
        sd_bus_message_unref(sig);
        snprintf(buf, sizeof(buf), "%zu", t->n_rooms);
        ASSERT_STREQ(buf, "2");
}

typedef struct Counter {
        unsigned ok, limited, unavailable, other;
} Counter;

static int on_counted_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Counter *c = userdata;

        if (!sd_bus_message_is_method_error(m, NULL))
                c->ok++;
        else if (sd_bus_message_is_method_error(m, SD_BUS_ERROR_LIMITS_EXCEEDED))
                c->limited++;
        else if (sd_bus_message_is_method_error(m, BUS_ERROR_UNAVAILABLE))
                c->unavailable++;
        else
                c->other++;
        return 0;
}

static void test_limits(Test *t) {
        Counter c = {};
        sd_bus_message *sig;
        size_t rooms = t->n_rooms;

        t->hold = true;
        for (unsigned i = 0; i < BUS_REQUESTS_PER_SENDER_MAX + 4; i++)
                ASSERT_OK(sd_bus_call_method_async(t->client, NULL, BUS_SERVICE_NAME, BUS_MANAGER_PATH,
                                                   BUS_MANAGER_INTERFACE, "CreateRoom", on_counted_reply, &c,
                                                   "sb", "Flood", false));
        RUN_UNTIL(t, c.limited >= 4 && t->n_held >= BUS_REQUESTS_PER_SENDER_MAX);
        run_for(t, 50 * 1000);
        ASSERT_INT_EQ(c.limited, 4);
        ASSERT_INT_EQ(c.ok, 0);
        ASSERT_INT_EQ(t->n_held, BUS_REQUESTS_PER_SENDER_MAX);

        /* Completing frees the slots; errors map to names. */
        bus_request_complete(t->held[0], -ETIMEDOUT, NULL);
        bus_request_complete(t->held[1], -ENOMEM, NULL);
        for (size_t i = 2; i < t->n_held; i++) {
                TestRoom *room = test_room_add(t, "Flood", false);
                ASSERT_OK(bus_emit_room_added(t->bus, room->id));
                bus_request_complete(t->held[i], 0, room->id);
        }
        t->n_held = 0;
        t->hold = false;
        RUN_UNTIL(t, c.ok + c.unavailable + c.other >= BUS_REQUESTS_PER_SENDER_MAX);
        ASSERT_INT_EQ(c.ok, BUS_REQUESTS_PER_SENDER_MAX - 2);
        ASSERT_INT_EQ(c.unavailable, 1);
        ASSERT_INT_EQ(c.other, 1);
        for (size_t i = 2; i < BUS_REQUESTS_PER_SENDER_MAX; i++) {
                sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded");
                sd_bus_message_unref(sig);
        }
        /* Remove the flood again, as another daemon would. */
        while (t->n_rooms > rooms) {
                ASSERT_OK(bus_emit_room_removed(t->bus, t->rooms[t->n_rooms - 1].id));
                t->n_rooms--;
                sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved");
                sd_bus_message_unref(sig);
        }
}

/* In a child that dropped root: reads work, changes (and the list of
 * connections) are refused unless the backend says the uid is an
 * administrator. Exit code: the failed step. */
static int child_main(const char *address, bool admin) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        sd_bus *bus = NULL;
        char *title = NULL;
        const gid_t gid = CHILD_GID;
        int r;

        if (setgroups(1, &gid) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
                return 2;
        if (geteuid() != NOBODY)
                return 3;
        if (sd_bus_new(&bus) < 0 || sd_bus_set_address(bus, address) < 0 || sd_bus_set_bus_client(bus, true) < 0 ||
            sd_bus_start(bus) < 0)
                return 4;
        (void) sd_bus_set_method_call_timeout(bus, 5 * USEC_PER_SEC);

        if (sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "ListRooms",
                               &error, &reply, NULL) < 0)
                return 10;
        reply = sd_bus_message_unref(reply);
        if (sd_bus_get_property_string(bus, BUS_SERVICE_NAME, BUS_ROOM_PATH_PREFIX "/1", BUS_ROOM_INTERFACE,
                                       "Title", &error, &title) < 0)
                return 11;
        free(title);

#define EXPECT(step, call)                                                                      \
        do {                                                                                    \
                sd_bus_error_free(&error);                                                      \
                r = (call);                                                                     \
                if (admin ? r < 0 : !sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED)) { \
                        fprintf(stderr, "child step %d: %d %s\n", step, r, error.name ?: "-");  \
                        return step;                                                            \
                }                                                                               \
        } while (0)

        EXPECT(12, sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "CreateRoom",
                                      &error, NULL, "sb", "By nobody", false));
        EXPECT(13, sd_bus_set_property(bus, BUS_SERVICE_NAME, BUS_ROOM_PATH_PREFIX "/1", BUS_ROOM_INTERFACE,
                                       "Title", &error, "s", "Renamed by nobody"));
        EXPECT(14, sd_bus_set_property(bus, BUS_SERVICE_NAME, BUS_ROOM_PATH_PREFIX "/1", BUS_ROOM_INTERFACE,
                                       "StaffOnly", &error, "b", false));
        EXPECT(15, sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "Announce",
                                      &error, NULL, "sus", "1", 1, "hi"));
        /* Peer addresses are for administrators, like the bus policy says. */
        EXPECT(19, sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                                      "ListConnections", &error, NULL, NULL));
        if (!admin) {
                EXPECT(16, sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                                              "DeleteRoom", &error, NULL, "s", "1"));
                EXPECT(17, sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_ROOM_PATH_PREFIX "/1", BUS_ROOM_INTERFACE,
                                              "Delete", &error, NULL, NULL));
                EXPECT(18, sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                                              "KickUser", &error, NULL, "ss", "alice", ""));
        }
#undef EXPECT
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        return 0;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        int *status = userdata;

        *status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
        return 0;
}

static int run_child(Test *t, bool admin) {
        sd_event_source *source = NULL;
        int status = -1;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0)
                _exit(child_main(t->address, admin));

        ASSERT_OK(sd_event_add_child(t->event, &source, pid, WEXITED, on_child_exit, &status));
        RUN_UNTIL(t, status >= 0);
        sd_event_source_unref(source);
        return status;
}

static void test_unprivileged(Test *t) {
        unsigned ops = t->n_ops, checks = t->n_check_admin;
        sd_bus_message *sig;
        char buf[256];

        if (geteuid() != 0) {
                fprintf(stderr, "not root: skipping the unprivileged caller\n");
                return;
        }

        /* nobody is no administrator: reads work, every change is refused. */
        t->admin_uid = 0;
        ASSERT_INT_EQ(run_child(t, false), 0);
        ASSERT_INT_EQ(t->n_ops, ops);
        ASSERT_INT_EQ(t->n_check_admin, checks + 8);
        ASSERT_INT_EQ(t->check_uid, NOBODY);
        ASSERT_STREQ(test_room(t, "1")->title, "Hall");
        ASSERT_INT_EQ(t->n_rooms, 2);
        fprintf(stderr, "bus reported %zu supplementary groups for the caller%s\n",
                t->check_n_gids, t->check_saw_child_gid ? ", ours among them" : "");
        /* dbus-daemon 1.14 reports them (SO_PEERGROUPS); sd-bus' own creds query would not. */
        ASSERT_TRUE(t->check_n_gids >= 1);
        ASSERT_TRUE(t->check_saw_child_gid);
        expect_no_signal(t, 50 * 1000);

        /* Now the backend says nobody is in the admin group. */
        t->admin_uid = NOBODY;
        ASSERT_INT_EQ(run_child(t, true), 0);
        ASSERT_INT_EQ(t->n_ops, ops + 4);
        ASSERT_INT_EQ(t->n_rooms, 3);
        ASSERT_STREQ(test_room(t, "1")->title, "Renamed by nobody");
        ASSERT_STREQ(t->announce_text, "hi");
        sig = expect_signal(t, BUS_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded");
        sd_bus_message_unref(sig);
        sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/1", "org.freedesktop.DBus.Properties", "PropertiesChanged");
        read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
        /* The two sets may or may not share one coalesced signal. */
        if (streq(buf, "Title=Renamed by nobody")) {
                sd_bus_message_unref(sig);
                sig = expect_signal(t, BUS_ROOM_PATH_PREFIX "/1", "org.freedesktop.DBus.Properties", "PropertiesChanged");
                read_properties_changed(sig, BUS_ROOM_INTERFACE, buf, sizeof(buf));
                ASSERT_STREQ(buf, "StaffOnly=false");
        } else
                ASSERT_STREQ(buf, "Title=Renamed by nobody,StaffOnly=false");
        sd_bus_message_unref(sig);
        t->admin_uid = 0;
}

/* The bus goes away under the daemon, with a request still in the backend. */
static void test_disconnect_and_free(Test *t) {
        sd_bus_message *m = NULL;
        BusRequest *held;

        t->hold = true;
        ASSERT_OK(sd_bus_message_new_method_call(t->client, &m, BUS_SERVICE_NAME, BUS_MANAGER_PATH,
                                                 BUS_MANAGER_INTERFACE, "CreateRoom"));
        ASSERT_OK(sd_bus_message_append(m, "sb", "Orphan", false));
        ASSERT_OK(sd_bus_send(t->client, m, NULL));
        sd_bus_message_unref(m);
        RUN_UNTIL(t, t->n_held > 0);
        held = t->held[0];
        t->n_held = 0;

        t->n_name_state = 0;
        ASSERT_INT_EQ(kill(t->daemon_pid, SIGTERM), 0);
        RUN_UNTIL(t, t->n_name_state > 0);
        ASSERT_INT_EQ(t->name_state, -ECONNRESET);
        ASSERT_FALSE(bus_is_ready(t->bus));
        ASSERT_OK(bus_emit_room_added(t->bus, "1"));      /* a no-op now */

        t->bus = bus_free(t->bus);
        /* Completing after bus_free() is allowed and goes nowhere. */
        ASSERT_NULL(bus_request_sender(held));
        bus_request_complete(held, 0, "9");
}

int main(void) {
        Test t = { .connections = 7, .redis_connected = true, .messages_relayed = 123456789012ULL };
        const char *binary;
        sigset_t mask;

        test_validation();

        binary = find_dbus_daemon();
        if (!binary) {
                fprintf(stderr, "dbus-daemon not found (Debian package dbus): skipping\n");
                return EXIT_TEST_SKIP;
        }
        /* The callers it plays are root and nobody: it must be able to be both. */
        if (geteuid() != 0) {
                fprintf(stderr, "not root: the bus calls as uid 0 and as nobody need root; skipping\n");
                return EXIT_TEST_SKIP;
        }

        /* for sd_event_add_child() */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        ASSERT_OK(sigprocmask(SIG_BLOCK, &mask, NULL));
        ASSERT_OK(sd_bus_error_add_map(bus_error_map));

        start_dbus_daemon(&t, binary);
        ASSERT_OK(sd_event_new(&t.event));
        test_room_add(&t, "Lobby", false)->members = two_members;
        test_room_add(&t, "Empty", false);

        ASSERT_OK(bus_new(&t.bus, t.event, t.address, &test_backend, &t));
        test_name(&t);

        t.client = connect_client(t.address);
        ASSERT_OK(sd_bus_attach_event(t.client, t.event, 0));
        ASSERT_OK(sd_bus_match_signal(t.client, &t.match, BUS_SERVICE_NAME, NULL, NULL, NULL, on_signal, &t));

        test_manager_properties(&t);
        test_create_room(&t);
        test_introspection(&t);
        test_introspection_matches_shipped_xml(&t);
        test_list_and_get(&t);
        test_set_properties(&t);
        test_announce_and_kick(&t);
        test_emit(&t);
        test_delete(&t);
        test_limits(&t);
        test_unprivileged(&t);
        test_disconnect_and_free(&t);

        for (size_t i = 0; i < t.n_signals; i++)
                sd_bus_message_unref(t.signals[i]);
        sd_bus_slot_unref(t.match);
        sd_bus_flush_close_unref(t.client);
        sd_event_unref(t.event);
        stop_dbus_daemon(&t);
        return 0;
}
