/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Room administration for the D-Bus objects: the BusBackend over rooms, Redis and the auth helper. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus/admin.h"
#include "auth/auth-client.h"
#include "chat/chat.h"
#include "config.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "manager.h"
#include "redis/redis.h"
#include "chat/rooms.h"
#include "store/store.h"
#include "basic/strv.h"
#include "net/ws.h"

static BusRoom bus_room_of(const Room *room) {
        return (BusRoom) {
                .id = room->id,
                .title = room->title,
                .staff_only = room->staff_only,
                .members = (uint32_t) room->n_usernames,
        };
}

static int admin_foreach_room(void *ud, BusRoomVisitor visit, void *visit_ud) {
        Manager *m = ud;
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;
        int r;

        rooms = room_registry_sorted(m->rooms, &n);
        if (!rooms)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                BusRoom br = bus_room_of(rooms[i]);

                r = visit(&br, visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int admin_get_room(void *ud, const char *id, BusRoom *ret) {
        Manager *m = ud;
        Room *room = room_registry_find(m->rooms, id);

        if (!room)
                return -ENOENT;
        *ret = bus_room_of(room);
        return 0;
}

static int admin_foreach_member(void *ud, const char *id, BusStringVisitor visit, void *visit_ud) {
        Manager *m = ud;
        Room *room = room_registry_find(m->rooms, id);
        int r;

        if (!room)
                return -ENOENT;
        for (size_t i = 0; i < room->n_usernames; i++) {
                r = visit(room->usernames[i], visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int admin_foreach_connection(void *ud, BusConnectionVisitor visit, void *visit_ud) {
        Manager *m = ud;
        int r;

        for (Conn *c = m->conns; c; c = c->next) {
                const char *ids[WS_ROOMS_MAX + 1];
                size_t n = 0;
                BusConnection bc;

                if (c->state != CONN_READY)
                        continue;
                for (size_t i = 0; i < c->n_memberships && n < WS_ROOMS_MAX; i++)
                        ids[n++] = c->memberships[i]->room->id;
                ids[n] = NULL;
                bc = (BusConnection) {
                        .username = c->username,
                        .peer = c->peer,
                        .since_usec = c->since_usec,
                        .rooms = ids,
                };
                r = visit(&bc, visit_ud);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint32_t admin_connections(void *ud) {
        return ((Manager *) ud)->n_conns;
}

static bool admin_redis_connected(void *ud) {
        Manager *m = ud;

        return redis_is_connected(m->redis) && m->redis_ready;
}

static uint64_t admin_messages_relayed(void *ud) {
        return ((Manager *) ud)->messages_relayed;
}

static int error_from_reply(const redisReply *reply) {
        if (!reply)
                return -ENOTCONN;
        if (store_reply_is_error(reply, "NOROOM"))
                return -ENOENT;
        if (reply->type == REDIS_REPLY_ERROR) {
                log_warning("Redis refused a room change: %s", reply->str);
                return -EIO;
        }
        return 0;
}

/* A room change on its way to Redis, and what to apply here once it is
 * done. */
typedef struct AdminChange {
        Manager *manager;
        BusRequest *request;
        char id[ROOM_ID_MAX + 1];
        char *title;                  /* NULL: unchanged */
        int staff_only;               /* -1: unchanged */
        bool delete;
} AdminChange;

static AdminChange *admin_change_new(Manager *m, BusRequest *req, const char *id, const char *title, int staff_only) {
        AdminChange *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        c->manager = m;
        c->request = req;
        c->staff_only = staff_only;
        snprintf(c->id, sizeof c->id, "%s", id ?: "");
        if (title) {
                c->title = strdup(title);
                if (!c->title)
                        return mfree(c);
        }
        return c;
}

static void admin_change_free(AdminChange *c) {
        free(c->title);
        free(c);
}

static void admin_change_apply(AdminChange *c) {
        Manager *m = c->manager;
        Room *room;

        if (c->delete) {
                chat_apply_room_removed(m, c->id);
                return;
        }
        room = room_registry_find(m->rooms, c->id);
        if (chat_apply_room(m, c->id, c->title ?: room ? room->title : "",
                            c->staff_only >= 0 ? c->staff_only : room && room->staff_only) >= 0)
                chat_broadcast_rooms(m);
}

static void on_room_changed(Redis *r, const redisReply *reply, void *userdata) {
        AdminChange *c = userdata;
        int e = error_from_reply(reply);

        if (e >= 0 && !c->id[0]) {
                /* CreateRoom: the script answers the new id. */
                if (reply->type != REDIS_REPLY_STRING || reply->len > ROOM_ID_MAX)
                        e = -EIO;
                else
                        strcpy(c->id, reply->str);
        }
        if (e >= 0) {
                log_struct(LOG_NOTICE, 0, MESSAGE_ID_ROOM_CHANGED, LOG_FIELDS({ "MULTICHAT_ROOM", c->id }),
                           "Room %s %s by uid %u.", c->id,
                           c->delete ? "deleted" : c->title && c->staff_only >= 0 ? "created" : "changed",
                           (unsigned) bus_request_uid(c->request));
                /* Visible here before the caller hears back, so that a
                 * GetRoom right after CreateRoom finds it. */
                admin_change_apply(c);
        }
        bus_request_complete(c->request, e, e >= 0 ? c->id : NULL);
        admin_change_free(c);
}

static int admin_submit(Manager *m, BusRequest *req, const char *id, const char *title, int staff_only,
                        bool delete) {
        AdminChange *c = admin_change_new(m, req, id, title, staff_only);
        int r;

        if (!c)
                return -ENOMEM;
        c->delete = delete;
        if (delete)
                r = store_delete_room(m->redis, id, on_room_changed, c);
        else if (!id)
                r = store_create_room(m->redis, title, staff_only, on_room_changed, c);
        else
                r = store_update_room(m->redis, id, title, staff_only, on_room_changed, c);
        if (r < 0)
                admin_change_free(c);
        return r;
}

static int admin_create_room(void *ud, const char *title, bool staff_only, BusRequest *req) {
        return admin_submit(ud, req, NULL, title, staff_only, false);
}

static int admin_delete_room(void *ud, const char *id, BusRequest *req) {
        return admin_submit(ud, req, id, NULL, -1, true);
}

static int admin_set_title(void *ud, const char *id, const char *title, BusRequest *req) {
        return admin_submit(ud, req, id, title, -1, false);
}

static int admin_set_staff_only(void *ud, const char *id, bool staff_only, BusRequest *req) {
        return admin_submit(ud, req, id, NULL, staff_only, false);
}

/* Announcements and kicks go to one room, or to every room for "", over Redis. */
static int admin_check_target(Manager *m, const char *room_id) {
        if (room_id[0] && !room_registry_find(m->rooms, room_id))
                return -ENOENT;
        if (!redis_is_connected(m->redis))
                return -ENOTCONN;
        return 0;
}

static int admin_announce(void *ud, const char *room_id, unsigned level, const char *text, BusRequest *req) {
        Manager *m = ud;
        int r;

        r = admin_check_target(m, room_id);
        if (r < 0)
                return r;
        r = chat_publish_notice(m, room_id, level, text);
        if (r < 0)
                return r;
        bus_request_complete(req, 0, NULL);
        return 0;
}

static int admin_kick(void *ud, const char *username, const char *room_id, BusRequest *req) {
        Manager *m = ud;
        int r;

        r = admin_check_target(m, room_id);
        if (r < 0)
                return r;
        r = chat_publish_kick(m, username, room_id);
        if (r < 0)
                return r;
        log_struct(LOG_NOTICE, 0, MESSAGE_ID_KICKED,
                   LOG_FIELDS({ "USER", username }, { "MULTICHAT_ROOM", room_id[0] ? room_id : NULL }),
                   "%s kicked from %s by uid %u.", username, room_id[0] ? room_id : "every room",
                   (unsigned) bus_request_uid(req));
        bus_request_complete(req, 0, NULL);
        return 0;
}

static void on_admin_checked(const AuthResult *res, void *userdata) {
        bus_request_authorized(userdata, res->result >= 0 && res->in_group);
}

static int admin_check_admin(void *ud, uid_t uid, const gid_t *gids, size_t n_gids, BusRequest *req) {
        Manager *m = ud;

        /* The admin group's gid was resolved at start; the bus's own list
         * of the caller's groups answers most calls without NSS. */
        for (size_t i = 0; i < n_gids && m->admin_gid != (gid_t) -1; i++)
                if (gids[i] == m->admin_gid) {
                        bus_request_authorized(req, true);
                        return 0;
                }
        return auth_client_lookup_uid(m->auth, uid, m->config->admin_group, on_admin_checked, req, NULL);
}

static void admin_name_state(void *ud, int r) {
        Manager *m = ud;

        if (r >= 0) {
                m->bus_ready = true;
                manager_update_notify(m);
                return;
        }
        m->bus_ready = false;
        if (r == -EEXIST)
                log_error("Another process owns org.multichat.Chat1 on the bus; exiting.");
        else
                log_error_errno(r, "Lost the D-Bus connection or name: %m");
        manager_stop(m, EXIT_FAILURE);
}

const BusBackend admin_bus_backend = {
        .foreach_room = admin_foreach_room,
        .get_room = admin_get_room,
        .foreach_member = admin_foreach_member,
        .foreach_connection = admin_foreach_connection,
        .connections = admin_connections,
        .redis_connected = admin_redis_connected,
        .messages_relayed = admin_messages_relayed,
        .create_room = admin_create_room,
        .delete_room = admin_delete_room,
        .set_title = admin_set_title,
        .set_staff_only = admin_set_staff_only,
        .announce = admin_announce,
        .kick = admin_kick,
        .check_admin = admin_check_admin,
        .name_state = admin_name_state,
};
