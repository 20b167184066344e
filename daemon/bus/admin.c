/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Room administration for the D-Bus objects: the BusBackend over the chat and the auth helper. */

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth-client.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "bus/admin.h"
#include "chat/chat.h"
#include "chat/rooms.h"

struct Admin {
        Chat *chat;
        AuthClient *auth;
        char *admin_group;
        gid_t admin_gid;              /* (gid_t) -1 when the group does not exist */
        const AdminHooks *hooks;
        void *userdata;
};

static BusRoom bus_room_of(const Room *room) {
        return (BusRoom) {
                .id = room->id,
                .title = room->title,
                .staff_only = room->staff_only,
                .members = (uint32_t) room->n_usernames,
        };
}

static int admin_foreach_room(void *ud, BusRoomVisitor visit, void *visit_ud) {
        Admin *a = ud;
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;
        int r;

        rooms = chat_sorted_rooms(a->chat, &n);
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
        Admin *a = ud;
        Room *room = chat_find_room(a->chat, id);

        if (!room)
                return -ENOENT;
        *ret = bus_room_of(room);
        return 0;
}

static int admin_foreach_member(void *ud, const char *id, BusStringVisitor visit, void *visit_ud) {
        Admin *a = ud;
        Room *room = chat_find_room(a->chat, id);
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
        Admin *a = ud;

        return a->hooks->foreach_connection(a->userdata, visit, visit_ud);
}

static uint32_t admin_connections(void *ud) {
        Admin *a = ud;

        return a->hooks->connections(a->userdata);
}

static bool admin_redis_connected(void *ud) {
        return chat_is_ready(((Admin *) ud)->chat);
}

static uint64_t admin_messages_relayed(void *ud) {
        return chat_messages_relayed(((Admin *) ud)->chat);
}

static void on_room_changed(int r, const char *id, void *userdata) {
        BusRequest *req = userdata;

        if (r >= 0)
                log_struct(LOG_NOTICE, 0, MESSAGE_ID_ROOM_CHANGED, LOG_FIELDS({ "MULTICHAT_ROOM", id }),
                           "Room %s %s by uid %u.", id, bus_request_what(req), (unsigned) bus_request_uid(req));
        bus_request_complete(req, r, id);
}

static int admin_create_room(void *ud, const char *title, bool staff_only, BusRequest *req) {
        return chat_create_room(((Admin *) ud)->chat, title, staff_only, on_room_changed, req);
}

static int admin_delete_room(void *ud, const char *id, BusRequest *req) {
        return chat_delete_room(((Admin *) ud)->chat, id, on_room_changed, req);
}

static int admin_set_title(void *ud, const char *id, const char *title, BusRequest *req) {
        return chat_update_room(((Admin *) ud)->chat, id, title, -1, on_room_changed, req);
}

static int admin_set_staff_only(void *ud, const char *id, bool staff_only, BusRequest *req) {
        return chat_update_room(((Admin *) ud)->chat, id, NULL, staff_only, on_room_changed, req);
}

/* Announcements and kicks go to one room, or to every room for "", over Redis. */
static int admin_check_target(Admin *a, const char *room_id) {
        if (room_id[0] && !chat_find_room(a->chat, room_id))
                return -ENOENT;
        if (!chat_is_ready(a->chat))
                return -ENOTCONN;
        return 0;
}

static int admin_announce(void *ud, const char *room_id, unsigned level, const char *text, BusRequest *req) {
        Admin *a = ud;
        int r;

        r = admin_check_target(a, room_id);
        if (r < 0)
                return r;
        r = chat_publish_notice(a->chat, room_id, level, text);
        if (r < 0)
                return r;
        bus_request_complete(req, 0, NULL);
        return 0;
}

static int admin_kick(void *ud, const char *username, const char *room_id, BusRequest *req) {
        Admin *a = ud;
        int r;

        r = admin_check_target(a, room_id);
        if (r < 0)
                return r;
        r = chat_publish_kick(a->chat, username, room_id);
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
        Admin *a = ud;

        /* The admin group's gid was resolved at start; the bus's own list
         * of the caller's groups answers most calls without NSS. */
        for (size_t i = 0; i < n_gids && a->admin_gid != (gid_t) -1; i++)
                if (gids[i] == a->admin_gid) {
                        bus_request_authorized(req, true);
                        return 0;
                }
        return auth_client_lookup_uid(a->auth, uid, a->admin_group, on_admin_checked, req, NULL);
}

static void admin_name_state(void *ud, int r) {
        Admin *a = ud;

        a->hooks->name_state(a->userdata, r);
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

int admin_new(Admin **ret, Chat *chat, AuthClient *auth, const char *admin_group, const AdminHooks *hooks,
              void *userdata) {
        struct group *g;
        Admin *a;

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        *a = (Admin) { .chat = chat, .auth = auth, .hooks = hooks, .userdata = userdata };
        a->admin_group = strdup(admin_group);
        if (!a->admin_group) {
                free(a);
                return -ENOMEM;
        }
        g = getgrnam(admin_group);
        a->admin_gid = g ? g->gr_gid : (gid_t) -1;
        *ret = a;
        return 0;
}

Admin *admin_free(Admin *a) {
        if (!a)
                return NULL;
        free(a->admin_group);
        return mfree(a);
}
