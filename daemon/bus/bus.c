/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus objects (Manager, Room), who may call what, and the signals they send. */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus/bus.h"
#include "config-build.h"
#include "basic/list.h"
#include "basic/macro.h"
#include "basic/strv.h"

/* Distinct rooms with a PropertiesChanged waiting; past it we flush at once
 * rather than grow. */
#define BUS_PENDING_ROOMS_MAX 1024u

typedef enum BusOp {
        BUS_OP_CREATE_ROOM,
        BUS_OP_DELETE_ROOM,
        BUS_OP_SET_TITLE,
        BUS_OP_SET_STAFF_ONLY,
        BUS_OP_ANNOUNCE,
        BUS_OP_KICK,
        BUS_OP_LIST_CONNECTIONS,        /* reads, but reveals who connects from where */
} BusOp;

typedef enum BusRequestState {
        REQUEST_CREDENTIALS,    /* asking the bus driver who the caller is, then polkit: ours to cancel */
        REQUEST_AUTHORIZING,    /* in backend->check_admin(): the backend completes it */
        REQUEST_RUNNING,        /* in a backend operation: the backend completes it */
} BusRequestState;

struct BusRequest {
        Bus *bus;                       /* NULL once the Bus is freed: replies go nowhere */
        LIST_FIELDS(BusRequest, requests);
        sd_bus_message *message;
        sd_bus_slot *call_slot;         /* GetConnectionCredentials, then CheckAuthorization */
        BusRequestState state;
        BusOp op;
        char *id;                       /* room id; "" for every room (announce, kick) */
        char *text;                     /* title, announcement or username */
        bool flag;                      /* staff_only */
        unsigned level;
        uid_t uid;                      /* the caller, once the bus driver told us */
        gid_t *gids;                    /* its supplementary groups as the bus reported them, for the group check */
        size_t n_gids;
};

typedef struct PendingChange {
        char id[ROOM_ID_MAX + 1];
        unsigned properties;
} PendingChange;

struct Bus {
        sd_event *event;
        sd_bus *bus;
        char *address;
        const BusBackend *backend;
        void *userdata;

        sd_bus_slot *slots[5];          /* filter, manager, rooms, enumerator, object manager */
        sd_bus_slot *name_slot;
        bool ready;
        bool disconnected;

        BusRequest *requests;
        unsigned n_requests;

        unsigned manager_changes;
        PendingChange *room_changes;
        size_t n_room_changes;
        sd_event_source *flush_source;
        uint64_t last_flush_usec;
};

/* ---- errors ---- */

static int bus_error_set_errno(sd_bus_error *error, int r, const char *id) {
        switch (r) {
        case -ENOENT:
                if (id && *id)
                        return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_ROOM, "No room with id '%s'.", id);
                return sd_bus_error_set(error, BUS_ERROR_NO_SUCH_ROOM, "No such room.");
        case -EINVAL:
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "Invalid argument.");
        case -ENOTCONN:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -EAGAIN:
        case -ETIMEDOUT:
        case -EHOSTUNREACH:
                return sd_bus_error_set(error, BUS_ERROR_UNAVAILABLE,
                                        "The chat store (Redis) is unavailable; try again later.");
        case -EACCES:
        case -EPERM:
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED,
                                        "Administering multichat requires root or the admin group.");
        case -ENOBUFS:
                return sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "Too many requests in flight.");
        default:
                return sd_bus_error_set_errno(error, r);
        }
}

/* ---- requests: authorize, hand to the backend, reply ---- */

static BusRequest *request_free(BusRequest *req) {
        if (!req)
                return NULL;

        if (req->bus) {
                LIST_REMOVE(requests, req->bus->requests, req);
                req->bus->n_requests--;
        }
        sd_bus_slot_unref(req->call_slot);
        sd_bus_message_unref(req->message);
        free(req->gids);
        free(req->id);
        free(req->text);
        return mfree(req);
}

static int request_reply(BusRequest *req, int r, const char *id) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(freep) char *path = NULL;

        if (r >= 0 && req->op == BUS_OP_CREATE_ROOM) {
                path = bus_room_path(id);
                if (!path)
                        r = -EIO;       /* the backend gave no valid id */
                else
                        return sd_bus_reply_method_return(req->message, "so", id, path);
        }
        if (r >= 0)
                return sd_bus_reply_method_return(req->message, NULL);

        (void) bus_error_set_errno(&error, r, req->id);
        return sd_bus_reply_method_error(req->message, &error);
}

void bus_request_complete(BusRequest *req, int r, const char *id) {
        if (!req)
                return;
        if (req->bus)
                (void) request_reply(req, r, id);
        request_free(req);
}

const char *bus_request_sender(BusRequest *req) {
        return req && req->bus ? sd_bus_message_get_sender(req->message) : NULL;
}

uid_t bus_request_uid(BusRequest *req) {
        return req ? req->uid : (uid_t) -1;
}

const char *bus_request_what(BusRequest *req) {
        switch (req->op) {
        case BUS_OP_CREATE_ROOM:
                return "created";
        case BUS_OP_DELETE_ROOM:
                return "deleted";
        default:
                return "changed";
        }
}

static int reply_connections(Bus *b, sd_bus_message *m);

static int request_dispatch(BusRequest *req) {
        const BusBackend *be = req->bus->backend;
        void *ud = req->bus->userdata;
        int r = -EOPNOTSUPP;

        req->state = REQUEST_RUNNING;

        /* After a hook returned >= 0 the request may already be freed. */
        switch (req->op) {
        case BUS_OP_CREATE_ROOM:
                if (be->create_room)
                        r = be->create_room(ud, req->text, req->flag, req);
                break;
        case BUS_OP_DELETE_ROOM:
                if (be->delete_room)
                        r = be->delete_room(ud, req->id, req);
                break;
        case BUS_OP_SET_TITLE:
                if (be->set_title)
                        r = be->set_title(ud, req->id, req->text, req);
                break;
        case BUS_OP_SET_STAFF_ONLY:
                if (be->set_staff_only)
                        r = be->set_staff_only(ud, req->id, req->flag, req);
                break;
        case BUS_OP_ANNOUNCE:
                if (be->announce)
                        r = be->announce(ud, req->id, req->level, req->text, req);
                break;
        case BUS_OP_KICK:
                if (be->kick)
                        r = be->kick(ud, req->text, req->id, req);
                break;
        case BUS_OP_LIST_CONNECTIONS:
                r = reply_connections(req->bus, req->message);
                if (r >= 0) {
                        request_free(req);
                        return 0;
                }
                break;
        }
        if (r < 0)
                bus_request_complete(req, r, NULL);
        return 0;
}

void bus_request_authorized(BusRequest *req, bool allowed) {
        if (!req)
                return;
        assert(req->state == REQUEST_AUTHORIZING);

        if (!req->bus || !allowed) {
                bus_request_complete(req, -EACCES, NULL);
                return;
        }
        (void) request_dispatch(req);
}

/* Reads UnixUserID and UnixGroupIDs out of GetConnectionCredentials' a{sv}.
 * *ret_gids points into the message. */
static int read_credentials(sd_bus_message *m, uid_t *ret_uid, const gid_t **ret_gids, size_t *ret_n_gids) {
        const void *gids = NULL;
        size_t size = 0;
        bool have_uid = false;
        uint32_t uid = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "UnixUserID")) {
                        r = sd_bus_message_read(m, "v", "u", &uid);
                        have_uid = r >= 0;
                } else if (streq(key, "UnixGroupIDs")) {
                        r = sd_bus_message_enter_container(m, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(m, 'u', &gids, &size);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_uid)
                return -ENODATA;

        _Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is not 32 bits");
        *ret_uid = uid;
        *ret_gids = size > 0 ? gids : NULL;
        *ret_n_gids = size / sizeof(uint32_t);
        return 0;
}

/* Without polkit: root, or whoever the backend says is in the admin group. */
static int request_check_group(BusRequest *req) {
        const BusBackend *be = req->bus->backend;
        int r;

        if (!be->check_admin) {
                bus_request_complete(req, -EACCES, NULL);
                return 0;
        }
        req->state = REQUEST_AUTHORIZING;
        r = be->check_admin(req->bus->userdata, req->uid, req->gids, req->n_gids, req);
        if (r < 0)
                bus_request_complete(req, r, NULL);
        return 0;
}

static void request_fail_interactive(BusRequest *req) {
        (void) sd_bus_reply_method_errorf(req->message, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                          "Administering multichat needs authentication; call with "
                                          "interactive authorization allowed.");
        request_free(req);
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BusRequest *req = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized, challenge;

        req->call_slot = sd_bus_slot_unref(req->call_slot);

        /* No polkit on this bus (not installed, or a bus of our own): the
         * group check, as polkit's rules file would decide. Any other
         * failure denies: polkit is there and did not say yes. */
        if (e && (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
                  sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER)))
                return request_check_group(req);
        if (e || sd_bus_message_enter_container(reply, 'r', "bba{ss}") < 0 ||
            sd_bus_message_read(reply, "bb", &authorized, &challenge) < 0) {
                bus_request_complete(req, -EACCES, NULL);
                return 0;
        }
        if (authorized)
                return request_dispatch(req);
        if (challenge)
                request_fail_interactive(req);
        else
                bus_request_complete(req, -EACCES, NULL);
        return 0;
}

/* Asks polkit about the caller's bus name, as systemd's own daemons do:
 * polkit then finds the process, its user and its session itself. */
static int request_check_polkit(BusRequest *req) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        uint32_t flags = 0;
        int r;

        if (sd_bus_message_get_allow_interactive_authorization(req->message) > 0)
                flags |= BUS_POLKIT_ALLOW_USER_INTERACTION;
        r = sd_bus_message_new_method_call(req->bus->bus, &call, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                          sd_bus_message_get_sender(req->message), BUS_POLKIT_ACTION,
                                          0, flags, "");
        if (r < 0)
                return r;
        /* With interaction polkit waits for a password: as long as the
         * caller's own call may wait. */
        return sd_bus_call_async(req->bus->bus, &req->call_slot, call, on_polkit_reply, req,
                                 flags ? BUS_POLKIT_INTERACTIVE_TIMEOUT_USEC : 0);
}

static int on_credentials_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BusRequest *req = userdata;
        const gid_t *gids;
        size_t n_gids;
        uid_t uid;
        int r;

        req->call_slot = sd_bus_slot_unref(req->call_slot);

        /* Never fall back to anything the caller could influence: no
         * credentials, no access. The uid is what the kernel told the bus
         * driver when the caller connected (SO_PEERCRED, effective uid). */
        if (sd_bus_message_is_method_error(reply, NULL) ||
            read_credentials(reply, &uid, &gids, &n_gids) < 0) {
                bus_request_complete(req, -EACCES, NULL);
                return 0;
        }

        req->uid = uid;
        if (uid == 0)
                return request_dispatch(req);

        if (n_gids > 0) {
                req->gids = malloc(n_gids * sizeof(gid_t));
                if (!req->gids) {
                        bus_request_complete(req, -ENOMEM, NULL);
                        return 0;
                }
                memcpy(req->gids, gids, n_gids * sizeof(gid_t));
                req->n_gids = n_gids;
        }
        r = request_check_polkit(req);
        if (r < 0)
                bus_request_complete(req, r, NULL);
        return 0;
}

static unsigned requests_from(Bus *b, const char *sender) {
        unsigned n = 0;

        LIST_FOREACH(requests, i, b->requests)
                if (streq_ptr(sd_bus_message_get_sender(i->message), sender))
                        n++;
        return n;
}

/* Takes id and text (may be NULL). Asks the bus driver for the caller's
 * credentials without blocking: sd_bus_query_sender_creds() would make a
 * synchronous call to dbus-daemon from inside the event loop. */
static int request_start(Bus *b, sd_bus_message *m, BusOp op, char *id, char *text,
                         bool flag, unsigned level, sd_bus_error *error) {
        _cleanup_(freep) char *id_owned = id, *text_owned = text;
        const char *sender = sd_bus_message_get_sender(m);
        BusRequest *req;
        int r;

        if (!sender)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Caller without a bus name.");
        if (b->n_requests >= BUS_REQUESTS_MAX || requests_from(b, sender) >= BUS_REQUESTS_PER_SENDER_MAX)
                return bus_error_set_errno(error, -ENOBUFS, NULL);

        req = calloc(1, sizeof(BusRequest));
        if (!req)
                return -ENOMEM;
        *req = (BusRequest) {
                .bus = b,
                .message = sd_bus_message_ref(m),
                .state = REQUEST_CREDENTIALS,
                .op = op,
                .id = TAKE_PTR(id_owned),
                .text = TAKE_PTR(text_owned),
                .flag = flag,
                .level = level,
                .uid = (uid_t) -1,
        };
        LIST_PREPEND(requests, b->requests, req);
        b->n_requests++;

        r = sd_bus_call_method_async(b->bus, &req->call_slot,
                                     "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "GetConnectionCredentials", on_credentials_reply, req, "s", sender);
        if (r < 0) {
                request_free(req);
                return r;
        }
        return 1;       /* the reply comes later */
}

static int strdup_checked(const char *s, char **ret) {
        char *p = strdup(s);

        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* ---- Manager ---- */

static int method_create_room(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        const char *title;
        char *copy;
        int staff_only, r;

        r = sd_bus_message_read(m, "sb", &title, &staff_only);
        if (r < 0)
                return r;
        if (!bus_title_is_valid(title))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "A title is 1..%u bytes of text without control characters, with something visible.",
                                         BUS_TITLE_MAX);
        r = strdup_checked(title, &copy);
        if (r < 0)
                return r;
        return request_start(b, m, BUS_OP_CREATE_ROOM, NULL, copy, staff_only, 0, error);
}

static int invalid_room_id(sd_bus_error *error, const char *id) {
        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                 "Invalid room id '%.32s': expected 1..%u decimal digits without a leading zero.",
                                 id, ROOM_ID_MAX);
}

static int delete_room(Bus *b, sd_bus_message *m, const char *id, sd_bus_error *error) {
        char *copy;
        int r;

        if (!bus_room_id_is_valid(id))
                return invalid_room_id(error, id);
        r = strdup_checked(id, &copy);
        if (r < 0)
                return r;
        return request_start(b, m, BUS_OP_DELETE_ROOM, copy, NULL, false, 0, error);
}

static int method_delete_room(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *id;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        return delete_room(userdata, m, id, error);
}

static int append_room(const BusRoom *room, void *userdata) {
        return sd_bus_message_append(userdata, "(ssbu)", room->id, room->title, room->staff_only, room->members);
}

static int method_list_rooms(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Bus *b = userdata;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ssbu)");
        if (r < 0)
                return r;
        r = b->backend->foreach_room(b->userdata, append_room, reply);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_room(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(freep) char *path = NULL;
        Bus *b = userdata;
        const char *id;
        BusRoom room;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        if (!bus_room_id_is_valid(id))
                return invalid_room_id(error, id);
        r = b->backend->get_room(b->userdata, id, &room);
        if (r < 0)
                return bus_error_set_errno(error, r, id);

        path = bus_room_path(id);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(m, "o", path);
}

static int method_announce(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *id, *text;
        char *id_copy = NULL, *text_copy;
        uint32_t level;
        int r;

        r = sd_bus_message_read(m, "sus", &id, &level, &text);
        if (r < 0)
                return r;
        if (*id && !bus_room_id_is_valid(id))
                return invalid_room_id(error, id);
        if (level < 1 || level > 3)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid level %" PRIu32 ": 1 warning, 2 alert, 3 muted.", level);
        if (!bus_announcement_is_valid(text))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "An announcement is 1..%u bytes of text.", BUS_ANNOUNCE_MAX);

        r = strdup_checked(id, &id_copy);
        if (r < 0)
                return r;
        r = strdup_checked(text, &text_copy);
        if (r < 0) {
                free(id_copy);
                return r;
        }
        return request_start(userdata, m, BUS_OP_ANNOUNCE, id_copy, text_copy, false, level, error);
}

static int method_kick_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *username, *id;
        char *id_copy = NULL, *name_copy;
        int r;

        r = sd_bus_message_read(m, "ss", &username, &id);
        if (r < 0)
                return r;
        if (!bus_username_is_valid(username))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "A username is 1..%u bytes of text without control characters.",
                                         USERNAME_MAX);
        if (*id && !bus_room_id_is_valid(id))
                return invalid_room_id(error, id);

        r = strdup_checked(id, &id_copy);
        if (r < 0)
                return r;
        r = strdup_checked(username, &name_copy);
        if (r < 0) {
                free(id_copy);
                return r;
        }
        return request_start(userdata, m, BUS_OP_KICK, id_copy, name_copy, false, 0, error);
}

static int append_connection(const BusConnection *c, void *userdata) {
        sd_bus_message *reply = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'r', "sstas");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "sst", c->username, c->peer ?: "", c->since_usec);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (const char *const *i = c->rooms; i && *i; i++) {
                r = sd_bus_message_append(reply, "s", *i);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int reply_connections(Bus *b, sd_bus_message *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sstas)");
        if (r < 0)
                return r;
        r = b->backend->foreach_connection(b->userdata, append_connection, reply);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Usernames with their peer addresses are for administrators only, as in
 * the bus policy; the list is built once the caller is authorized. */
static int method_list_connections(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return request_start(userdata, m, BUS_OP_LIST_CONNECTIONS, NULL, NULL, false, 0, error);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_connections(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;

        return sd_bus_message_append(reply, "u", b->backend->connections(b->userdata));
}

static int property_get_redis_connected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;

        return sd_bus_message_append(reply, "b", b->backend->redis_connected(b->userdata));
}

static int property_get_messages_relayed(sd_bus *bus, const char *path, const char *interface, const char *property,
                                         sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;

        return sd_bus_message_append(reply, "t", b->backend->messages_relayed(b->userdata));
}

/* Every member is UNPRIVILEGED for sd-bus: its own check would be a
 * synchronous CAP_SYS_ADMIN query; request_start() does ours instead. */
static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Connections", "u", property_get_connections, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RedisConnected", "b", property_get_redis_connected, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* Changes with every chat message: clients poll it. */
        SD_BUS_PROPERTY("MessagesRelayed", "t", property_get_messages_relayed, 0, 0),
        SD_BUS_METHOD_WITH_ARGS("CreateRoom",
                                SD_BUS_ARGS("s", title, "b", staff_only),
                                SD_BUS_RESULT("s", id, "o", path),
                                method_create_room, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DeleteRoom",
                                SD_BUS_ARGS("s", id),
                                SD_BUS_NO_RESULT,
                                method_delete_room, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListRooms",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ssbu)", rooms),
                                method_list_rooms, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetRoom",
                                SD_BUS_ARGS("s", id),
                                SD_BUS_RESULT("o", path),
                                method_get_room, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Announce",
                                SD_BUS_ARGS("s", room_id, "u", level, "s", text),
                                SD_BUS_NO_RESULT,
                                method_announce, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("KickUser",
                                SD_BUS_ARGS("s", username, "s", room_id),
                                SD_BUS_NO_RESULT,
                                method_kick_user, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListConnections",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(sstas)", connections),
                                method_list_connections, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

/* ---- Room ---- */

static int room_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                            void **found, sd_bus_error *error) {
        Bus *b = userdata;
        const char *id = bus_room_path_to_id(path);
        BusRoom room;
        int r;

        if (!id)
                return 0;
        r = b->backend->get_room(b->userdata, id, &room);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;

        *found = b;
        return 1;
}

static int room_get(Bus *b, const char *path, BusRoom *ret, sd_bus_error *error) {
        const char *id = bus_room_path_to_id(path);
        int r;

        r = id ? b->backend->get_room(b->userdata, id, ret) : -ENOENT;
        if (r < 0)
                return bus_error_set_errno(error, r, id);
        return 0;
}

static int property_get_room_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        BusRoom room;
        int r;

        r = room_get(userdata, path, &room, error);
        if (r < 0)
                return r;
        return sd_bus_message_append(reply, "s", room.id);
}

static int property_get_room_title(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        BusRoom room;
        int r;

        r = room_get(userdata, path, &room, error);
        if (r < 0)
                return r;
        return sd_bus_message_append(reply, "s", room.title);
}

static int property_get_room_staff_only(sd_bus *bus, const char *path, const char *interface, const char *property,
                                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        BusRoom room;
        int r;

        r = room_get(userdata, path, &room, error);
        if (r < 0)
                return r;
        return sd_bus_message_append(reply, "b", room.staff_only);
}

static int append_string(const char *s, void *userdata) {
        return sd_bus_message_append(userdata, "s", s);
}

static int property_get_room_members(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        const char *id = bus_room_path_to_id(path);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        r = id ? b->backend->foreach_member(b->userdata, id, append_string, reply) : -ENOENT;
        if (r < 0)
                return bus_error_set_errno(error, r, id);
        return sd_bus_message_close_container(reply);
}

/* Never reached: on_bus_message() answers Set for these two itself, because
 * an sd-bus setter must finish before it returns and ours wait for an
 * authorization and for Redis. */
static int property_set_room_unreachable(sd_bus *bus, const char *path, const char *interface,
                                         const char *property, sd_bus_message *value, void *userdata,
                                         sd_bus_error *error) {
        return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "Internal error: property set not intercepted.");
}

static int method_room_delete(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return delete_room(userdata, m, bus_room_path_to_id(sd_bus_message_get_path(m)) ?: "", error);
}

static const sd_bus_vtable room_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_room_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_WRITABLE_PROPERTY("Title", "s", property_get_room_title, property_set_room_unreachable, 0,
                                 SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_WRITABLE_PROPERTY("StaffOnly", "b", property_get_room_staff_only, property_set_room_unreachable, 0,
                                 SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Members", "as", property_get_room_members, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        SD_BUS_METHOD_WITH_ARGS("Delete", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                                method_room_delete, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

typedef struct Enumeration {
        char **paths;
        size_t n, allocated;
} Enumeration;

static int enumerate_room(const BusRoom *room, void *userdata) {
        Enumeration *e = userdata;
        char *path;

        if (!GREEDY_REALLOC(e->paths, e->allocated, e->n + 2))
                return -ENOMEM;
        path = bus_room_path(room->id);
        if (!path)
                return -ENOMEM;
        e->paths[e->n++] = path;
        e->paths[e->n] = NULL;
        return 0;
}

static int room_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret_nodes, sd_bus_error *error) {
        Bus *b = userdata;
        Enumeration e = {};
        int r;

        r = b->backend->foreach_room(b->userdata, enumerate_room, &e);
        if (r < 0) {
                strv_free(e.paths);
                return r;
        }
        *ret_nodes = e.paths;       /* NULL is an empty list */
        return 0;
}

/* ---- Properties.Set on rooms, answered asynchronously ---- */

static int room_property_set(Bus *b, sd_bus_message *m, sd_bus_error *error) {
        const char *interface, *property, *id = bus_room_path_to_id(sd_bus_message_get_path(m));
        char *id_copy, *title_copy = NULL;
        const char *title = NULL;
        BusRoom room;
        int flag = 0, r;
        BusOp op;

        if (!id || !streq_ptr(sd_bus_message_get_signature(m, true), "ssv"))
                return 0;
        if (sd_bus_message_read(m, "ss", &interface, &property) < 0 || !streq(interface, BUS_ROOM_INTERFACE))
                return 0;
        if (streq(property, "Title"))
                op = BUS_OP_SET_TITLE;
        else if (streq(property, "StaffOnly"))
                op = BUS_OP_SET_STAFF_ONLY;
        else
                return 0;
        /* A room that does not exist gets sd-bus' own UnknownObject, like a Get. */
        if (b->backend->get_room(b->userdata, id, &room) < 0)
                return 0;

        r = op == BUS_OP_SET_TITLE ? sd_bus_message_read(m, "v", "s", &title)
                                   : sd_bus_message_read(m, "v", "b", &flag);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Incorrect type for property '%s', expected '%s'.",
                                         property, op == BUS_OP_SET_TITLE ? "s" : "b");
        if (op == BUS_OP_SET_TITLE && !bus_title_is_valid(title))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "A title is 1..%u bytes of text without control characters, with something visible.",
                                         BUS_TITLE_MAX);

        r = strdup_checked(id, &id_copy);
        if (r < 0)
                return r;
        if (title) {
                r = strdup_checked(title, &title_copy);
                if (r < 0) {
                        free(id_copy);
                        return r;
                }
        }
        return request_start(b, m, op, id_copy, title_copy, flag, 0, error);
}

static void on_disconnected(Bus *b) {
        if (b->disconnected)
                return;
        b->disconnected = true;
        b->ready = false;
        if (b->backend->name_state)
                b->backend->name_state(b->userdata, -ECONNRESET);
}

/* Sees every incoming message before sd-bus dispatches it. */
static int on_bus_message(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        int r;

        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Local", "Disconnected")) {
                on_disconnected(b);
                return 0;
        }
        if (!sd_bus_message_is_method_call(m, "org.freedesktop.DBus.Properties", "Set"))
                return 0;

        r = room_property_set(b, m, error);
        if (r == 0)
                (void) sd_bus_message_rewind(m, true);  /* not ours: sd-bus reads it again */
        return r;
}

/* ---- name ---- */

static int on_name_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Bus *b = userdata;
        uint32_t result;
        int r;

        b->name_slot = sd_bus_slot_unref(b->name_slot);

        if (sd_bus_message_is_method_error(reply, NULL))
                r = -(sd_bus_message_get_errno(reply) ?: EIO);
        else if (sd_bus_message_read(reply, "u", &result) < 0)
                r = -EBADMSG;
        else if (result == 1 /* primary owner */ || result == 4 /* already owner */)
                r = 0;
        else
                r = -EEXIST;    /* 3 exists; 2 (queued) cannot happen without SD_BUS_NAME_QUEUE */

        b->ready = r == 0;
        if (b->backend->name_state)
                b->backend->name_state(b->userdata, r);
        return 0;
}

/* ---- signals ---- */

static int on_flush(sd_event_source *s, uint64_t usec, void *userdata);

static void changes_flush(Bus *b) {
        static const char *const room_names[] = { "Title", "StaffOnly", "Members" };
        static const char *const manager_names[] = { "Connections", "RedisConnected" };
        const char *names[4];
        size_t n;

        /* Signals are best effort: a failure here has no caller to tell. */
        n = 0;
        for (size_t i = 0; i < ELEMENTSOF(manager_names); i++)
                if (b->manager_changes & (1u << i))
                        names[n++] = manager_names[i];
        names[n] = NULL;
        if (n > 0 && b->ready)
                (void) sd_bus_emit_properties_changed_strv(b->bus, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                                                           (char **) names);
        b->manager_changes = 0;

        for (size_t j = 0; j < b->n_room_changes; j++) {
                _cleanup_(freep) char *path = bus_room_path(b->room_changes[j].id);

                n = 0;
                for (size_t i = 0; i < ELEMENTSOF(room_names); i++)
                        if (b->room_changes[j].properties & (1u << i))
                                names[n++] = room_names[i];
                names[n] = NULL;
                if (path && n > 0 && b->ready)
                        (void) sd_bus_emit_properties_changed_strv(b->bus, path, BUS_ROOM_INTERFACE,
                                                                   (char **) names);
        }
        b->n_room_changes = 0;
}

static int on_flush(sd_event_source *s, uint64_t usec, void *userdata) {
        Bus *b = userdata;

        b->last_flush_usec = usec;
        changes_flush(b);
        return 0;
}

/* The first change goes out on the next loop iteration; more changes
 * within BUS_CHANGE_INTERVAL_USEC of a flush wait for the next one. */
static int changes_schedule(Bus *b) {
        uint64_t now, when;
        int enabled, r;

        if (b->flush_source) {
                r = sd_event_source_get_enabled(b->flush_source, &enabled);
                if (r < 0)
                        return r;
                if (enabled != SD_EVENT_OFF)
                        return 0;
        }

        r = sd_event_now(b->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        when = MAX(now, b->last_flush_usec + BUS_CHANGE_INTERVAL_USEC);

        if (!b->flush_source)
                /* accuracy 1 µs: 0 would mean sd-event's default of 250 ms */
                return sd_event_add_time(b->event, &b->flush_source, CLOCK_MONOTONIC, when, 1, on_flush, b);

        r = sd_event_source_set_time(b->flush_source, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(b->flush_source, SD_EVENT_ONESHOT);
}

static PendingChange *pending_find(Bus *b, const char *id) {
        for (size_t i = 0; i < b->n_room_changes; i++)
                if (streq(b->room_changes[i].id, id))
                        return &b->room_changes[i];
        return NULL;
}

static void pending_drop(Bus *b, const char *id) {
        PendingChange *p = pending_find(b, id);

        if (p)
                *p = b->room_changes[--b->n_room_changes];
}

int bus_emit_room_changed(Bus *b, const char *id, unsigned properties) {
        PendingChange *p;

        if (!b || !bus_room_id_is_valid(id))
                return -EINVAL;
        properties &= BUS_ROOM_TITLE | BUS_ROOM_STAFF_ONLY | BUS_ROOM_MEMBERS;
        if (!b->ready || properties == 0)
                return 0;

        p = pending_find(b, id);
        if (!p) {
                if (!b->room_changes) {
                        b->room_changes = calloc(BUS_PENDING_ROOMS_MAX, sizeof(PendingChange));
                        if (!b->room_changes)
                                return -ENOMEM;
                }
                if (b->n_room_changes >= BUS_PENDING_ROOMS_MAX)
                        changes_flush(b);
                p = &b->room_changes[b->n_room_changes++];
                *p = (PendingChange) {};
                strcpy(p->id, id);      /* length checked by bus_room_id_is_valid() */
        }
        p->properties |= properties;
        return changes_schedule(b);
}

int bus_emit_manager_changed(Bus *b, unsigned properties) {
        if (!b)
                return -EINVAL;
        properties &= BUS_MANAGER_CONNECTIONS | BUS_MANAGER_REDIS_CONNECTED;
        if (!b->ready || properties == 0)
                return 0;

        b->manager_changes |= properties;
        return changes_schedule(b);
}

int bus_emit_room_added(Bus *b, const char *id) {
        _cleanup_(freep) char *path = NULL;
        BusRoom room;
        int r;

        if (!b || !bus_room_id_is_valid(id))
                return -EINVAL;
        pending_drop(b, id);    /* InterfacesAdded carries every property */
        if (!b->ready)
                return 0;
        /* sd-bus would announce a room it cannot find without our interface. */
        r = b->backend->get_room(b->userdata, id, &room);
        if (r < 0)
                return r;

        path = bus_room_path(id);
        if (!path)
                return -ENOMEM;
        return sd_bus_emit_object_added(b->bus, path);
}

int bus_emit_room_removed(Bus *b, const char *id) {
        _cleanup_(freep) char *path = NULL;

        if (!b || !bus_room_id_is_valid(id))
                return -EINVAL;
        pending_drop(b, id);
        if (!b->ready)
                return 0;

        path = bus_room_path(id);
        if (!path)
                return -ENOMEM;
        /* Named explicitly, the same list sd_bus_emit_object_added() sends:
         * sd_bus_emit_object_removed() asks find() and would leave our
         * interface out once the room is gone from the backend. */
        return sd_bus_emit_interfaces_removed(b->bus, path,
                                              "org.freedesktop.DBus.Peer",
                                              "org.freedesktop.DBus.Introspectable",
                                              "org.freedesktop.DBus.Properties",
                                              BUS_ROOM_INTERFACE,
                                              NULL);
}

/* ---- lifetime ---- */

int bus_new(Bus **ret, sd_event *event, const char *address, const BusBackend *backend, void *userdata) {
        _cleanup_(bus_freep) Bus *b = NULL;

        if (!ret || !event || !address || !backend)
                return -EINVAL;
        if (!backend->foreach_room || !backend->get_room || !backend->foreach_member ||
            !backend->foreach_connection || !backend->connections || !backend->redis_connected ||
            !backend->messages_relayed)
                return -EINVAL;

        b = calloc(1, sizeof(Bus));
        if (!b)
                return -ENOMEM;
        b->event = sd_event_ref(event);
        b->backend = backend;
        b->userdata = userdata;
        b->address = strdup(address);
        if (!b->address)
                return -ENOMEM;

        *ret = TAKE_PTR(b);
        return 0;
}

static int bus_open(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (streq(address, "system"))
                r = sd_bus_open_system_with_description(&bus, "multichat");
        else if (streq(address, "session"))
                r = sd_bus_open_user_with_description(&bus, "multichat");
        else {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_set_description(bus, "multichat");
                if (r < 0)
                        return r;
                r = sd_bus_set_address(bus, address);
                if (r < 0)
                        return r;
                r = sd_bus_set_bus_client(bus, true);
                if (r < 0)
                        return r;
                r = sd_bus_set_trusted(bus, false);
                if (r < 0)
                        return r;
                r = sd_bus_start(bus);
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(bus);
        return 0;
}

int bus_start(Bus *b) {
        int r;

        if (!b)
                return -EINVAL;
        if (b->bus)
                return -EALREADY;

        r = bus_open(b->address, &b->bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(b->bus, b->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;

        r = sd_bus_add_filter(b->bus, &b->slots[0], on_bus_message, b);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(b->bus, &b->slots[1], BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                                     manager_vtable, b);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(b->bus, &b->slots[2], BUS_ROOM_PATH_PREFIX, BUS_ROOM_INTERFACE,
                                       room_vtable, room_object_find, b);
        if (r < 0)
                return r;
        r = sd_bus_add_node_enumerator(b->bus, &b->slots[3], BUS_ROOM_PATH_PREFIX, room_enumerate, b);
        if (r < 0)
                return r;
        r = sd_bus_add_object_manager(b->bus, &b->slots[4], BUS_MANAGER_PATH);
        if (r < 0)
                return r;

        /* No replacing and no queueing: a second daemon on the same bus
         * fails with -EEXIST instead of waiting silently. */
        return sd_bus_request_name_async(b->bus, &b->name_slot, BUS_SERVICE_NAME, 0, on_name_reply, b);
}

bool bus_is_ready(Bus *b) {
        return b && b->ready;
}

Bus *bus_free(Bus *b) {
        if (!b)
                return NULL;

        sd_event_source_disable_unref(b->flush_source);

        /* Requests still asking for credentials are ours: cancel them. The
         * backend holds the others and completes them later; detached, they
         * only free themselves then. */
        while (b->requests) {
                BusRequest *req = b->requests;

                if (req->state == REQUEST_CREDENTIALS) {
                        request_free(req);
                        continue;
                }
                LIST_REMOVE(requests, b->requests, req);
                req->bus = NULL;
        }

        sd_bus_slot_unref(b->name_slot);
        for (size_t i = 0; i < ELEMENTSOF(b->slots); i++)
                sd_bus_slot_unref(b->slots[i]);
        sd_bus_flush_close_unref(b->bus);
        sd_event_unref(b->event);
        free(b->room_changes);
        free(b->address);
        return mfree(b);
}
