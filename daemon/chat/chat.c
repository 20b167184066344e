/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The chat itself: commands from connections, events from Redis, fan-out to local members, room administration. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "bus/bus.h"
#include "chat/chat.h"
#include "config.h"
#include "wire/frame.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "manager.h"
#include "redis/redis.h"
#include "chat/rooms.h"
#include "store/store.h"
#include "basic/time-util.h"
#include "net/ws.h"

/* Messages after a join's "since", and per page of a room's replay. */
#define CATCH_UP_MAX 1000
/* Live events a room holds back while it replays its stream; messages
 * beyond are read from the stream instead. */
#define CATCH_UP_HELD_MAX 4096

/* A command waiting for Redis: the connection (referenced), the room, the
 * client's ref to echo. */
typedef struct ChatRequest {
        Conn *conn;
        char room[ROOM_ID_MAX + 1];
        char ref[REF_MAX + 1];
        bool has_ref;
        bool has_since;
        char since[MESSAGE_ID_MAX + 1];
} ChatRequest;

static ChatRequest *chat_request_new(Conn *c, const Command *cmd) {
        ChatRequest *req = calloc(1, sizeof *req);

        if (!req)
                return NULL;
        req->conn = ws_conn_ref(c);
        strcpy(req->room, cmd->room);
        if (cmd->has_ref) {
                strcpy(req->ref, cmd->ref);
                req->has_ref = true;
        }
        req->has_since = cmd->has_since;
        if (cmd->has_since)
                strcpy(req->since, cmd->since);
        return req;
}

static void chat_request_free(ChatRequest *req) {
        ws_conn_unref(req->conn);
        free(req);
}

static const char *chat_request_ref(const ChatRequest *req) {
        return req->has_ref ? req->ref : NULL;
}

static void send_error(Conn *c, ProtocolError e, const Command *cmd) {
        ws_conn_send_json(c, protocol_format_error(e, cmd && cmd->has_ref ? cmd->ref : NULL));
}

static uint64_t message_id_ms(const char *id) {
        return strtoull(id, NULL, 10);
}

static Membership *conn_find_membership(Conn *c, const char *room) {
        for (size_t i = 0; i < c->n_memberships; i++)
                if (streq(c->memberships[i]->room->id, room))
                        return c->memberships[i];
        return NULL;
}

static int conn_add_membership(Conn *c, Room *room, Membership **ret) {
        Membership **a, *mb;
        int r;

        a = realloc(c->memberships, (c->n_memberships + 1) * sizeof *a);
        if (!a)
                return -ENOMEM;
        c->memberships = a;
        r = room_add_member(room, c, &mb);
        if (r < 0)
                return r;
        c->memberships[c->n_memberships++] = mb;
        *ret = mb;
        return 0;
}

static void room_catch_up_begin(Manager *m, Room *room, bool started);
static void room_catch_up_end(Room *room);
static void room_catch_up_joined(Manager *m, Membership *mb, const char *tip);

static void room_subscription_update(Manager *m, Room *room) {
        char channel[64];

        if (store_room_channel(room->id, channel, sizeof channel) < 0)
                return;
        if (room->n_members > 0 && !room->subscribed) {
                if (redis_subscribe(m->redis, channel) >= 0) {
                        room->subscribed = true;
                        room_catch_up_begin(m, room, false);
                }
        } else if (room->n_members == 0 && room->subscribed) {
                (void) redis_unsubscribe(m->redis, channel);
                room->subscribed = false;
                room->last_id[0] = 0;
                room_catch_up_end(room);
        }
}

/* Drops the membership locally; the caller tells Redis if needed. */
static void conn_drop_membership(Conn *c, Membership *mb) {
        Manager *m = c->manager;
        Room *room = mb->room;

        for (size_t i = 0; i < c->n_memberships; i++)
                if (c->memberships[i] == mb) {
                        c->memberships[i] = c->memberships[--c->n_memberships];
                        break;
                }
        room_remove_member(mb);
        room_subscription_update(m, room);
}

static void on_leave_reply(Redis *r, const redisReply *reply, void *userdata) {
        if (!reply || reply->type == REDIS_REPLY_ERROR)
                log_debug("Leaving a room in Redis failed: %s", reply ? reply->str : "no reply");
}

/* Leaves a room: locally at once, in Redis (presence) in the background. */
static void conn_leave(Conn *c, Membership *mb) {
        Manager *m = c->manager;
        char room[ROOM_ID_MAX + 1];

        strcpy(room, mb->room->id);
        conn_drop_membership(c, mb);
        if (c->username[0])
                (void) store_leave(m->redis, m->daemon_id, room, c->username, on_leave_reply, NULL);
}

static void conn_send_left(Conn *c, const char *room, LeaveReason reason, const char *ref) {
        ws_conn_send_json(c, protocol_format_left(room, reason, ref));
}

/* The message event for this receiver: the writer's own connections get
 * the variant marked "own", made once per broadcast on first need. */
static Frame *pick_frame(Conn *c, const char *author, Frame *plain, Frame **own) {
        if (!author || !streq(c->username, author))
                return plain;
        if (!*own && frame_new_own(own, plain) < 0)
                return plain;
        return *own;
}

static bool catch_up_member_has(const RoomCatchUp *cu, const Membership *mb, const char *id);

/* Delivers one event to every local member of a room. Pending members
 * (join waiting for history) hold it; message ids let them drop what the
 * history already had. replay: a room's replay in progress, whose members
 * that joined meanwhile got messages up to some id with their join. */
static void room_fan_out(Manager *m, Room *room, Frame *plain, const char *author, const char *id,
                         const char *skip_user, const RoomCatchUp *replay) {
        _cleanup_(frame_unrefp) Frame *own = NULL;

        for (size_t i = 0; i < room->n_members; i++) {
                Membership *mb = room->members[i];
                Conn *c = mb->conn;
                Frame *f;

                if (skip_user && streq(c->username, skip_user))
                        continue;
                f = pick_frame(c, author, plain, &own);
                if (mb->pending) {
                        if (!membership_hold(mb, f, id))
                                log_debug("Hold of pending join of %s in room %s is full.", c->username, room->id);
                        continue;
                }
                if (replay && catch_up_member_has(replay, mb, id))
                        continue;
                ws_conn_send(c, f);
                if (id)
                        m->messages_relayed++;
        }
}

static void room_fan_out_json(Manager *m, Room *room, char *json, const char *author, const char *id,
                              const char *skip_user) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (frame_new_take(&f, json) < 0) {
                log_error("Out of memory while broadcasting to room %s.", room->id);
                return;
        }
        room_fan_out(m, room, f, author, id, skip_user, NULL);
}

/* Presence notices go to members whose join has finished (the join reply's
 * member list covers the rest) and never to the user they are about: the
 * original example does not tell a joiner that it entered. */
static void room_fan_out_presence(Room *room, char *json, const char *user) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (frame_new_take(&f, json) < 0)
                return;
        for (size_t i = 0; i < room->n_members; i++) {
                Membership *mb = room->members[i];

                if (!mb->pending && !streq(mb->conn->username, user))
                        ws_conn_send(mb->conn, f);
        }
}

static json_t *history_to_json(const redisReply *entries, const redisReply *edits, const char *room,
                               const char *username, bool newest_first, const char **ret_last_id) {
        json_t *a = json_array();

        if (!a || !entries || entries->type != REDIS_REPLY_ARRAY)
                return a;
        for (size_t k = 0; k < entries->elements; k++) {
                size_t i = newest_first ? entries->elements - 1 - k : k;
                const redisReply *ed = edits && edits->type == REDIS_REPLY_ARRAY && i < edits->elements ?
                                       edits->element[i] : NULL;
                StoreEntry e;
                ChatMessage msg;
                json_t *j;

                if (store_parse_entry(entries->element[i], ed, &e) < 0)
                        continue;
                msg = (ChatMessage) {
                        .room = room, .id = e.id, .username = e.username, .message = e.text,
                        .ts = message_id_ms(e.id), .edited = e.edited,
                };
                j = protocol_message_to_json(&msg, streq(e.username, username));
                if (j)
                        json_array_append_new(a, j);
                if (ret_last_id)
                        *ret_last_id = e.id;
        }
        return a;
}

static void room_presence_from_reply(Room *room, const redisReply *flat) {
        room_presence_clear(room);
        if (!flat || flat->type != REDIS_REPLY_ARRAY)
                return;
        for (size_t i = 0; i + 1 < flat->elements; i += 2) {
                const redisReply *u = flat->element[i], *n = flat->element[i + 1];
                long long count;

                if (u->type != REDIS_REPLY_STRING || n->type != REDIS_REPLY_STRING)
                        continue;
                count = strtoll(n->str, NULL, 10);
                if (count > 0 && u->len <= USERNAME_MAX)
                        (void) room_presence_set(room, u->str, (unsigned) MIN(count, (long long) UINT32_MAX));
        }
}

/* Releases what a pending membership held, minus what history had. */
static void membership_settle(Membership *mb, const char *last_history_id) {
        Conn *c = mb->conn;

        mb->pending = false;
        for (unsigned i = 0; i < mb->n_held; i++) {
                HeldFrame *h = &mb->held[i];

                if (h->id[0] && last_history_id && message_id_compare(h->id, last_history_id) <= 0)
                        continue;
                ws_conn_send(c, h->frame);
        }
        membership_drop_held(mb);
}

static void on_join_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        Conn *c = req->conn;
        Membership *mb;
        const char *last_id = NULL;
        json_t *history;

        if (c->state == CONN_CLOSED)
                goto out;
        mb = conn_find_membership(c, req->room);
        if (!mb || !mb->pending)
                goto out;       /* left again meanwhile */

        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 6) {
                conn_drop_membership(c, mb);
                ws_conn_send_json(c, protocol_format_error(
                        store_reply_is_error(reply, "NOROOM") ? PROTOCOL_ERROR_ROOM_INVALID :
                        store_reply_is_error(reply, "BADID") ? PROTOCOL_ERROR_BAD_REQUEST :
                        PROTOCOL_ERROR_UNAVAILABLE, chat_request_ref(req)));
                goto out;
        }

        room_presence_from_reply(mb->room, reply->element[1]);
        history = history_to_json(reply->element[2], reply->element[4], req->room, c->username, false, &last_id);
        (void) room_presence_set(mb->room, c->username, MAX(1u, (unsigned) reply->element[0]->integer));
        ws_conn_send_json(c, protocol_format_joined(
                req->room, mb->room->title, mb->room->staff_only, mb->room->usernames, history,
                req->has_since ? (int) (reply->element[3]->integer != 0 && !mb->held_overflow) : -1,
                chat_request_ref(req)));
        membership_settle(mb, last_id);
        room_catch_up_joined(c->manager, mb, reply->element[5]->type == REDIS_REPLY_STRING ?
                             reply->element[5]->str : NULL);
out:
        chat_request_free(req);
}

static void chat_join(Conn *c, const Command *cmd) {
        Manager *m = c->manager;
        Room *room = room_registry_find(m->rooms, cmd->room);
        Membership *mb;
        ChatRequest *req;
        int r;

        if (!room)
                return send_error(c, PROTOCOL_ERROR_ROOM_INVALID, cmd);
        if (room->staff_only && !c->staff)
                return send_error(c, PROTOCOL_ERROR_ROOM_ACCESS_DENIED, cmd);
        if (!redis_is_connected(m->redis))
                return send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);

        mb = conn_find_membership(c, cmd->room);
        if (mb) {
                /* Joined already: the presence stays as it is; answer as a
                 * join would, so a client that lost track gets its state. */
                if (!mb->pending)
                        ws_conn_send_json(c, protocol_format_joined(room->id, room->title, room->staff_only,
                                                                    room->usernames, NULL, -1,
                                                                    cmd->has_ref ? cmd->ref : NULL));
                return;
        }
        if (c->n_memberships >= WS_ROOMS_MAX)
                return send_error(c, PROTOCOL_ERROR_RATE_LIMITED, cmd);

        req = chat_request_new(c, cmd);
        if (!req)
                return send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        r = conn_add_membership(c, room, &mb);
        if (r < 0) {
                chat_request_free(req);
                return send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        }
        room_subscription_update(m, room);

        r = store_join(m->redis, m->daemon_id, room->id, c->username, cmd->has_since ? cmd->since : NULL,
                       cmd->has_since ? CATCH_UP_MAX : m->config->history_on_join, on_join_reply, req);
        if (r < 0) {
                chat_request_free(req);
                conn_drop_membership(c, mb);
                send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        }
}

static void chat_leave(Conn *c, const Command *cmd) {
        Membership *mb = conn_find_membership(c, cmd->room);

        if (!room_registry_find(c->manager->rooms, cmd->room) && !mb)
                return send_error(c, PROTOCOL_ERROR_ROOM_INVALID, cmd);
        /* Leaving a room one is not in changes nothing and tells nobody. */
        if (mb)
                conn_leave(c, mb);
        conn_send_left(c, cmd->room, LEAVE_REASON_NONE, cmd->has_ref ? cmd->ref : NULL);
}

static void on_send_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        Conn *c = req->conn;

        if (c->state == CONN_CLOSED)
                goto out;
        if (!reply || reply->type == REDIS_REPLY_ERROR)
                ws_conn_send_json(c, protocol_format_error(
                        store_reply_is_error(reply, "NOROOM") ? PROTOCOL_ERROR_ROOM_INVALID :
                        store_reply_is_error(reply, "NOTFOUND") ? PROTOCOL_ERROR_NOT_FOUND :
                        store_reply_is_error(reply, "FORBIDDEN") ? PROTOCOL_ERROR_FORBIDDEN :
                        PROTOCOL_ERROR_UNAVAILABLE, chat_request_ref(req)));
        else if (req->has_ref)
                ws_conn_send_json(c, protocol_format_ok(reply->type == REDIS_REPLY_STRING &&
                                                        strchr(reply->str, '-') ? reply->str : NULL,
                                                        req->ref));
out:
        chat_request_free(req);
}

/* Past capacity, new messages are refused rather than delivered ever
 * later: the newest messages we relay tell how far behind we are, and
 * only the share of new messages we can keep up with is let in. Typing
 * hints are refused outright meanwhile. */
static bool chat_refuse_new(Manager *m, bool hint) {
        uint64_t now = 0;
        int k;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        k = overload_update(&m->overload, m->config->overload_lag_usec, now);
        if (k > 0)
                log_warning("Relaying messages %.1f s late; refusing new ones in part until caught up.",
                            (double) m->overload.lag_usec / USEC_PER_SEC);
        else if (k < 0)
                log_info("Caught up with relaying messages; accepting new ones again.");
        if (!m->overload.active)
                return false;
        return hint || !overload_admit(&m->overload);
}

static void note_message_lag(Manager *m, const char *id) {
        uint64_t rt = 0, mono = 0;

        (void) sd_event_now(m->event, CLOCK_REALTIME, &rt);
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &mono);
        overload_note_message(&m->overload, message_id_ms(id), rt, mono);
}

static bool conn_in_room(Conn *c, const Command *cmd) {
        if (conn_find_membership(c, cmd->room))
                return true;
        send_error(c, room_registry_find(c->manager->rooms, cmd->room) ?
                   PROTOCOL_ERROR_ROOM_ACCESS_DENIED : PROTOCOL_ERROR_ROOM_INVALID, cmd);
        return false;
}

static void chat_send(Conn *c, const Command *cmd) {
        Manager *m = c->manager;
        ChatRequest *req;
        int r;

        if (!conn_in_room(c, cmd))
                return;
        if (cmd->type == COMMAND_SEND && chat_refuse_new(m, false))
                return send_error(c, PROTOCOL_ERROR_RATE_LIMITED, cmd);
        req = chat_request_new(c, cmd);
        if (!req)
                return send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);

        if (cmd->type == COMMAND_SEND)
                r = store_send(m->redis, cmd->room, c->username, cmd->message, m->config->history_size,
                               on_send_reply, req);
        else
                r = store_edit(m->redis, cmd->room, cmd->id, c->username,
                               cmd->type == COMMAND_EDIT ? cmd->message : NULL, on_send_reply, req);
        if (r < 0) {
                chat_request_free(req);
                send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        }
}

static void on_history_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        Conn *c = req->conn;
        json_t *history;

        if (c->state == CONN_CLOSED)
                goto out;
        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
                ws_conn_send_json(c, protocol_format_error(
                        store_reply_is_error(reply, "NOROOM") ? PROTOCOL_ERROR_ROOM_INVALID : PROTOCOL_ERROR_UNAVAILABLE,
                        chat_request_ref(req)));
                goto out;
        }
        history = history_to_json(reply->element[0], reply->element[1], req->room, c->username, true, NULL);
        ws_conn_send_json(c, protocol_format_history(req->room, history, reply->element[2]->integer != 0,
                                                     chat_request_ref(req)));
out:
        chat_request_free(req);
}

static void chat_history(Conn *c, const Command *cmd) {
        ChatRequest *req;

        if (!conn_in_room(c, cmd))
                return;
        req = chat_request_new(c, cmd);
        if (!req)
                return send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        if (store_history(c->manager->redis, cmd->room, cmd->has_before ? cmd->before : NULL, cmd->limit,
                          on_history_reply, req) < 0) {
                chat_request_free(req);
                send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        }
}

static void chat_typing(Conn *c, const Command *cmd) {
        _cleanup_free_ char *payload = NULL;
        json_t *a;
        char channel[64];

        if (!conn_in_room(c, cmd))
                return;
        if (chat_refuse_new(c->manager, true))
                return send_error(c, PROTOCOL_ERROR_RATE_LIMITED, cmd);
        a = json_pack("[ss]", "t", c->username);
        payload = a ? json_dumps(a, JSON_COMPACT) : NULL;
        json_decref(a);
        if (!payload || store_room_channel(cmd->room, channel, sizeof channel) < 0 ||
            store_publish(c->manager->redis, channel, payload, strlen(payload), NULL, NULL) < 0)
                return send_error(c, PROTOCOL_ERROR_UNAVAILABLE, cmd);
        if (cmd->has_ref)
                ws_conn_send_json(c, protocol_format_ok(NULL, cmd->ref));
}

void chat_handle_command(Conn *c, Command *cmd) {
        switch (cmd->type) {
        case COMMAND_JOIN:
                return chat_join(c, cmd);
        case COMMAND_LEAVE:
                return chat_leave(c, cmd);
        case COMMAND_SEND:
        case COMMAND_EDIT:
        case COMMAND_DELETE:
                return chat_send(c, cmd);
        case COMMAND_HISTORY:
                return chat_history(c, cmd);
        case COMMAND_TYPING:
                return chat_typing(c, cmd);
        default:
                return send_error(c, PROTOCOL_ERROR_BAD_REQUEST, cmd);
        }
}

void chat_conn_closed(Conn *c) {
        while (c->n_memberships > 0)
                conn_leave(c, c->memberships[c->n_memberships - 1]);
}

static char *rooms_json(Manager *m) {
        _cleanup_free_ Room **rooms = NULL;
        _cleanup_free_ RoomInfo *infos = NULL;
        size_t n = 0;

        rooms = room_registry_sorted(m->rooms, &n);
        infos = calloc(n ?: 1, sizeof *infos);
        if (!rooms || !infos)
                return NULL;
        for (size_t i = 0; i < n; i++)
                infos[i] = (RoomInfo) { rooms[i]->id, rooms[i]->title, rooms[i]->staff_only };
        return protocol_format_rooms(infos, n);
}

/* The room list changes rarely and goes to every connection that opens:
 * serialized once per change and shared, not rebuilt per connection. */
static Frame *rooms_frame(Manager *m) {
        if (!m->rooms_frame && frame_new_take(&m->rooms_frame, rooms_json(m)) < 0)
                m->rooms_frame = NULL;
        return m->rooms_frame;
}

static void rooms_changed(Manager *m) {
        m->rooms_frame = frame_unref(m->rooms_frame);
}

char *chat_rooms_json(Manager *m) {
        Frame *f = rooms_frame(m);

        return f ? strndup((const char *) frame_payload(f), f->len) : NULL;
}

void chat_conn_ready(Conn *c) {
        Frame *f = rooms_frame(c->manager);

        if (f)
                ws_conn_send(c, f);
        else
                ws_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
}

void chat_broadcast_rooms(Manager *m) {
        Frame *f;

        rooms_changed(m);
        f = rooms_frame(m);
        if (!f)
                return;
        for (Conn *c = m->conns; c; c = c->next)
                if (c->state == CONN_READY)
                        ws_conn_send(c, f);
}

/* Every local member leaves the room with a reason; non_staff_only limits
 * it to those who may no longer be there (the room became staff-only). */
static void room_evict(Manager *m, Room *room, LeaveReason reason, bool non_staff_only) {
        for (size_t i = room->n_members; i > 0; i--) {
                Membership *mb = room->members[i - 1];
                Conn *c = mb->conn;
                char id[ROOM_ID_MAX + 1];

                if (non_staff_only && c->staff)
                        continue;
                strcpy(id, room->id);
                if (reason == LEAVE_REASON_DELETED)
                        conn_drop_membership(c, mb);
                else
                        conn_leave(c, mb);
                conn_send_left(c, id, reason, NULL);
        }
}

static void chat_remove_room(Manager *m, Room *room) {
        rooms_changed(m);
        room_evict(m, room, LEAVE_REASON_DELETED, false);
        if (m->bus)
                (void) bus_emit_room_removed(m->bus, room->id);
        room_registry_remove(m->rooms, room);
}

/* A Redis request about one room; the room may be gone by the reply. */
typedef struct RoomRequest {
        Manager *manager;
        char room[ROOM_ID_MAX + 1];
} RoomRequest;

static RoomRequest *room_request_new(Manager *m, const char *room) {
        RoomRequest *req = calloc(1, sizeof *req);

        if (req) {
                req->manager = m;
                snprintf(req->room, sizeof req->room, "%s", room);
        }
        return req;
}

static void on_presence_reply(Redis *r, const redisReply *reply, void *userdata) {
        _cleanup_free_ RoomRequest *req = userdata;
        Room *room = room_registry_find(req->manager->rooms, req->room);

        if (room && reply && reply->type == REDIS_REPLY_ARRAY)
                room_presence_from_reply(room, reply);
}

static void room_load_presence(Manager *m, Room *room) {
        RoomRequest *req = room_request_new(m, room->id);

        if (req && store_load_presence(m->redis, room->id, on_presence_reply, req) < 0)
                free(req);
}

int chat_apply_room(Manager *m, const char *id, const char *title, bool staff_only) {
        _cleanup_free_ char *old_title = NULL;
        bool was_staff_only = false;
        Room *room;
        int r;

        room = room_registry_find(m->rooms, id);
        if (room) {
                was_staff_only = room->staff_only;
                old_title = strdup(room->title);
                if (!old_title)
                        return -ENOMEM;
        }
        r = room_registry_put(m->rooms, id, title, staff_only, &room);
        if (r < 0)
                return r;
        rooms_changed(m);

        if (r > 0) {
                if (m->bus)
                        (void) bus_emit_room_added(m->bus, room->id);
                return 1;
        }
        if (m->bus && !streq(old_title, room->title))
                (void) bus_emit_room_changed(m->bus, room->id, BUS_ROOM_TITLE);
        if (was_staff_only != room->staff_only) {
                if (m->bus)
                        (void) bus_emit_room_changed(m->bus, room->id, BUS_ROOM_STAFF_ONLY);
                if (room->staff_only)
                        room_evict(m, room, LEAVE_REASON_KICKED, true);
        }
        return 0;
}

void chat_apply_room_removed(Manager *m, const char *id) {
        Room *room = room_registry_find(m->rooms, id);

        if (room)
                chat_remove_room(m, room);
}

/* One room of the list in Redis, which is external input like any other. */
static void room_sync_one(Manager *m, const redisReply *k, const redisReply *v, bool first) {
        json_t *j, *title;
        Room *room;
        int r;

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len > ROOM_ID_MAX)
                return;
        j = json_loadb(v->str, v->len, 0, NULL);
        title = json_object_get(j, "title");
        r = json_is_string(title) ?
                chat_apply_room(m, k->str, json_string_value(title), json_is_true(json_object_get(j, "staff_only"))) :
                -EBADMSG;
        json_decref(j);
        if (r < 0)
                return;
        room = room_registry_find(m->rooms, k->str);
        if (room && (first || r > 0))
                room_load_presence(m, room);
}

static void on_rooms_reply(Redis *r, const redisReply *reply, void *userdata) {
        Manager *m = userdata;
        bool first = !m->redis_ready;
        Room *room;

        if (!reply || reply->type != REDIS_REPLY_ARRAY) {
                log_warning("Could not load the room list from Redis: %s", reply ? reply->str : "no reply");
                return;
        }

        room_registry_begin_sync(m->rooms);
        for (size_t i = 0; i + 1 < reply->elements; i += 2)
                room_sync_one(m, reply->element[i], reply->element[i + 1], first);
        while ((room = room_registry_next_unseen(m->rooms)))
                chat_remove_room(m, room);

        chat_broadcast_rooms(m);
        if (first) {
                m->redis_ready = true;
                manager_update_notify(m);
        }
}

static void chat_reload_rooms(Manager *m) {
        int r = store_load_rooms(m->redis, on_rooms_reply, m);

        if (r < 0)
                log_warning_errno(r, "Could not ask Redis for the room list: %m");
}

static void chat_deliver_message(Manager *m, Room *room, const char *kind, const char *id,
                                 const char *user, const char *text);
static void on_room_event(Manager *m, Room *room, json_t *ev);

/* A member that joined while its room was catching up: its join reply held
 * the room's messages up to `id`, so the replay skips those for it. Sorted
 * by membership; only compared, never followed (a membership may be gone,
 * and a new one at its address is pending until its own reply). */
typedef struct CatchUpMark {
        const Membership *mb;
        char id[MESSAGE_ID_MAX + 1];
} CatchUpMark;

/* A room replaying its stream from room->last_id on, page by page, after a
 * (re)subscribe: pub/sub delivers nothing published while the subscription
 * was not in effect, and nothing it had queued for a connection that
 * dropped. Live events wait in `held` meanwhile and are let through, minus
 * what the replay delivered, once a page read after the subscription took
 * effect reaches the stream's end: members get every message once, in
 * order. Referenced by the room while it catches up and by each request in
 * flight; a reply goes on only if its room still points to this replay. */
struct RoomCatchUp {
        unsigned n_ref;
        Manager *manager;
        char room[ROOM_ID_MAX + 1];
        bool started;           /* room->last_id is where the replay stands */
        bool in_flight;         /* a barrier or a page request is pending */
        bool again;             /* read once more after the page in flight, even if it is the last */
        bool lost;              /* dropped held events that the stream does not keep */
        bool told;              /* members were told of a gap */
        json_t **held;
        size_t n_held, n_held_allocated;
        CatchUpMark *marks;
        size_t n_marks;
};

static RoomCatchUp *catch_up_ref(RoomCatchUp *cu) {
        cu->n_ref++;
        return cu;
}

static void catch_up_unref(RoomCatchUp *cu) {
        if (!cu || --cu->n_ref > 0)
                return;
        for (size_t i = 0; i < cu->n_held; i++)
                json_decref(cu->held[i]);
        free(cu->held);
        free(cu->marks);
        free(cu);
}

/* The room this replay is for; NULL when it is gone or has moved on (lost
 * its members, or replays anew). */
static Room *catch_up_room(RoomCatchUp *cu) {
        Room *room = room_registry_find(cu->manager->rooms, cu->room);

        return room && room->catch_up == cu ? room : NULL;
}

/* Holds live events from the (re)subscribe on. started: room->last_id is
 * known; otherwise the first join's reply tells. */
static void room_catch_up_begin(Manager *m, Room *room, bool started) {
        RoomCatchUp *cu;

        if (room->catch_up)
                return;
        cu = calloc(1, sizeof *cu);
        if (!cu) {
                log_error("Out of memory: room %s cannot replay what its subscription misses.", room->id);
                return;
        }
        cu->n_ref = 1;
        cu->manager = m;
        cu->started = started;
        strcpy(cu->room, room->id);
        room->catch_up = cu;
}

/* The room lost its last member: nobody to replay to. */
static void room_catch_up_end(Room *room) {
        catch_up_unref(TAKE_PTR(room->catch_up));
}

static void catch_up_hold(RoomCatchUp *cu, json_t *ev, const char *kind) {
        if (cu->n_held >= cu->n_held_allocated) {
                size_t n = MAX(cu->n_held_allocated * 2, (size_t) 64);
                json_t **a = n <= CATCH_UP_HELD_MAX ? reallocarray(cu->held, n, sizeof *a) : NULL;

                if (!a) {
                        /* A message is in the stream: the replay reads on
                         * instead. Typing hints may go; anything else is
                         * missed, and members are told. */
                        if (streq(kind, "m"))
                                cu->again = true;
                        else if (!streq(kind, "t"))
                                cu->lost = true;
                        return;
                }
                cu->held = a;
                cu->n_held_allocated = n;
        }
        cu->held[cu->n_held++] = json_incref(ev);
}

static size_t catch_up_mark_bisect(const RoomCatchUp *cu, const Membership *mb) {
        size_t lo = 0, hi = cu->n_marks;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if ((uintptr_t) cu->marks[mid].mb < (uintptr_t) mb)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static const CatchUpMark *catch_up_mark(const RoomCatchUp *cu, const Membership *mb) {
        size_t i;

        if (cu->n_marks == 0)
                return NULL;
        i = catch_up_mark_bisect(cu, mb);
        return i < cu->n_marks && cu->marks[i].mb == mb ? &cu->marks[i] : NULL;
}

static void catch_up_set_mark(RoomCatchUp *cu, const Membership *mb, const char *id) {
        size_t i = catch_up_mark_bisect(cu, mb);

        if (i >= cu->n_marks || cu->marks[i].mb != mb) {
                CatchUpMark *a = reallocarray(cu->marks, cu->n_marks + 1, sizeof *a);

                /* Without a mark the member may get a message twice, never miss one. */
                if (!a)
                        return;
                cu->marks = a;
                memmove(a + i + 1, a + i, (cu->n_marks - i) * sizeof *a);
                cu->n_marks++;
                a[i].mb = mb;
        }
        snprintf(cu->marks[i].id, sizeof cu->marks[i].id, "%s", id);
}

/* Messages after a member's position are gone from the stream: it is told
 * the way a join with "since" tells, "complete": false. first: the oldest
 * message the stream still has (NULL if unknown); members with it already
 * lost nothing. */
static void catch_up_tell_gap(Room *room, RoomCatchUp *cu, const char *first) {
        _cleanup_(frame_unrefp) Frame *f = NULL;
        size_t n = 0;

        if (cu->told)
                return;
        cu->told = true;
        if (frame_new_take(&f, protocol_format_joined(room->id, room->title, room->staff_only, room->usernames,
                                                      NULL, 0, NULL)) < 0)
                return;
        for (size_t i = 0; i < room->n_members; i++) {
                Membership *mb = room->members[i];
                const CatchUpMark *mark = catch_up_mark(cu, mb);

                if (mb->pending || (mark && first && message_id_compare(mark->id, first) >= 0))
                        continue;
                ws_conn_send(mb->conn, f);
                n++;
        }
        log_warning("Room %s: messages published while this daemon's subscription was away are no longer "
                    "in Redis; told %zu member connection(s) they missed some.", room->id, n);
}

/* One replayed or held message to the members that lack it: nothing the
 * room delivered already, nothing a member's join reply held. Pending joins
 * hold it as any live message. */
static bool catch_up_member_has(const RoomCatchUp *cu, const Membership *mb, const char *id) {
        const CatchUpMark *mark = catch_up_mark(cu, mb);

        return id && mark && message_id_compare(id, mark->id) <= 0;
}

static void catch_up_deliver(Manager *m, Room *room, RoomCatchUp *cu, const ChatMessage *msg) {
        _cleanup_(frame_unrefp) Frame *plain = NULL;

        if (room->last_id[0] && message_id_compare(msg->id, room->last_id) <= 0)
                return;
        snprintf(room->last_id, sizeof room->last_id, "%s", msg->id);
        if (frame_new_take(&plain, protocol_format_message(msg)) < 0) {
                log_error("Out of memory while replaying room %s.", room->id);
                return;
        }
        room_fan_out(m, room, plain, msg->username, msg->id, NULL, cu);
}

static void catch_up_release(Manager *m, Room *room, RoomCatchUp *cu, json_t *ev) {
        const char *kind = json_string_value(json_array_get(ev, 0));
        json_t *id = json_array_get(ev, 1), *user = json_array_get(ev, 2), *text = json_array_get(ev, 3);

        if (kind && streq(kind, "m") && json_is_string(id) && json_is_string(user) && json_is_string(text))
                catch_up_deliver(m, room, cu, &(ChatMessage) {
                        .room = room->id, .id = json_string_value(id), .username = json_string_value(user),
                        .message = json_string_value(text), .ts = message_id_ms(json_string_value(id)),
                });
        else
                on_room_event(m, room, ev);
}

/* The replay reached the stream's end after the subscription took effect:
 * the room goes live, releasing what it held, in order. */
static void catch_up_finish(Manager *m, Room *room) {
        RoomCatchUp *cu = TAKE_PTR(room->catch_up);

        if (cu->lost)
                catch_up_tell_gap(room, cu, NULL);
        for (size_t i = 0; i < cu->n_held; i++)
                catch_up_release(m, room, cu, cu->held[i]);
        catch_up_unref(cu);
}

static void on_catch_up_reply(Redis *r, const redisReply *reply, void *userdata);

/* The next page after room->last_id. Not connected: the reconnect resumes. */
static void catch_up_read(Manager *m, Room *room, RoomCatchUp *cu) {
        if (store_since(m->redis, room->id, room->last_id[0] ? room->last_id : "0-0", CATCH_UP_MAX,
                        on_catch_up_reply, catch_up_ref(cu)) >= 0) {
                cu->in_flight = true;
                return;
        }
        catch_up_unref(cu);
        if (redis_is_connected(m->redis)) {
                cu->lost = true;
                catch_up_finish(m, room);
        }
}

static const char *entry_id(const redisReply *entry) {
        if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 ||
            entry->element[0]->type != REDIS_REPLY_STRING || entry->element[0]->len > MESSAGE_ID_MAX)
                return NULL;
        return entry->element[0]->str;
}

static void catch_up_page(Manager *m, Room *room, RoomCatchUp *cu, const redisReply *reply) {
        const redisReply *entries, *edits;

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4 ||
            reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[1]->type != REDIS_REPLY_ARRAY ||
            reply->element[2]->type != REDIS_REPLY_INTEGER || reply->element[3]->type != REDIS_REPLY_INTEGER) {
                log_warning("Could not replay what room %s missed from Redis: %s", room->id,
                            reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
                cu->lost = true;
                return catch_up_finish(m, room);
        }
        entries = reply->element[0];
        edits = reply->element[1];
        if (reply->element[3]->integer != 0)
                catch_up_tell_gap(room, cu, entries->elements > 0 ? entry_id(entries->element[0]) : NULL);
        for (size_t i = 0; i < entries->elements; i++) {
                const char *id = entry_id(entries->element[i]);
                StoreEntry e;

                if (store_parse_entry(entries->element[i], i < edits->elements ? edits->element[i] : NULL, &e) >= 0)
                        catch_up_deliver(m, room, cu, &(ChatMessage) {
                                .room = room->id, .id = e.id, .username = e.username, .message = e.text,
                                .ts = message_id_ms(e.id), .edited = e.edited,
                        });
                /* Past what cannot be read, too: the next page must move on. */
                if (id && message_id_compare(id, room->last_id) > 0)
                        snprintf(room->last_id, sizeof room->last_id, "%s", id);
        }
        if ((reply->element[2]->integer != 0 && entries->elements > 0) || cu->again) {
                cu->again = false;
                return catch_up_read(m, room, cu);
        }
        catch_up_finish(m, room);
}

static void on_catch_up_reply(Redis *r, const redisReply *reply, void *userdata) {
        RoomCatchUp *cu = userdata;
        Room *room = catch_up_room(cu);

        if (room) {
                cu->in_flight = false;
                /* NULL: the connection dropped; the reconnect resumes. */
                if (reply)
                        catch_up_page(cu->manager, room, cu, reply);
        }
        catch_up_unref(cu);
}

static void on_catch_up_barrier(Redis *r, bool ok, void *userdata) {
        RoomCatchUp *cu = userdata;
        Room *room = catch_up_room(cu);

        if (room) {
                cu->in_flight = false;
                if (ok)
                        catch_up_read(cu->manager, room, cu);
        }
        catch_up_unref(cu);
}

/* A join's reply gave its member the room's messages up to tip (the
 * stream's newest then). The first reply after a subscribe also gives the
 * replay its start, once the SUBSCRIBE is in effect: the barrier. */
static void room_catch_up_joined(Manager *m, Membership *mb, const char *tip) {
        Room *room = mb->room;
        RoomCatchUp *cu = room->catch_up;

        if (!tip || strlen(tip) > MESSAGE_ID_MAX)
                tip = "0-0";
        if (!cu) {
                /* Live already; or no replay (out of memory at the subscribe):
                 * a reconnect replays from here at least. */
                if (!room->last_id[0])
                        snprintf(room->last_id, sizeof room->last_id, "%s", tip);
                return;
        }
        catch_up_set_mark(cu, mb, tip);
        if (cu->started)
                return;
        cu->started = true;
        snprintf(room->last_id, sizeof room->last_id, "%s", tip);
        if (redis_subscriber_barrier(m->redis, on_catch_up_barrier, catch_up_ref(cu)) >= 0)
                cu->in_flight = true;
        else
                catch_up_unref(cu);     /* down: the reconnect resumes */
}

/* After a resubscribe: what was published meanwhile is in the stream after
 * room->last_id. Subscriptions are in effect by now. */
static void room_catch_up_resume(Manager *m, Room *room) {
        RoomCatchUp *cu;

        if (!room->catch_up && !room->last_id[0])
                return;         /* no join answered yet: the first one starts it */
        room_catch_up_begin(m, room, true);
        cu = room->catch_up;
        if (!cu || !cu->started)
                return;
        if (cu->in_flight)
                cu->again = true;       /* it may have been read before the resubscribe */
        else
                catch_up_read(m, room, cu);
}

void chat_on_redis_connected(Manager *m) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;

        chat_reload_rooms(m);
        chat_heartbeat(m);

        /* Whatever was published while our subscriber was away is in the
         * streams, presence in the presence hashes; a subscriber that was
         * not away replays nothing and loses a moment. */
        rooms = room_registry_sorted(m->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++)
                if (rooms[i]->subscribed) {
                        room_load_presence(m, rooms[i]);
                        room_catch_up_resume(m, rooms[i]);
                }
}

void chat_on_redis_disconnected(Manager *m) {
        m->redis_ready = false;
        manager_update_notify(m);
}

static void chat_deliver_message(Manager *m, Room *room, const char *kind, const char *id,
                                 const char *user, const char *text) {
        ChatMessage msg = {
                .room = room->id, .id = id, .username = user, .message = text,
                .ts = message_id_ms(id), .edited = streq(kind, "e"),
        };

        /* A new message at most once: the replay of the stream may have
         * brought it already. An edit keeps its message's old id. */
        if (!msg.edited && room->last_id[0] && message_id_compare(id, room->last_id) <= 0)
                return;
        room_fan_out_json(m, room, protocol_format_message(&msg), user, id, NULL);
        if (!msg.edited)
                snprintf(room->last_id, sizeof room->last_id, "%s", id);
}

static bool notice_level_valid(json_int_t level) {
        return level >= MSG_TYPE_WARNING && level <= MSG_TYPE_MUTED;
}

static void on_room_event(Manager *m, Room *room, json_t *ev) {
        const char *kind = json_string_value(json_array_get(ev, 0));
        json_t *a1 = json_array_get(ev, 1), *a2 = json_array_get(ev, 2), *a3 = json_array_get(ev, 3);

        if (!kind)
                return;
        /* While the room replays its stream, live events wait behind it. */
        if (room->catch_up)
                return catch_up_hold(room->catch_up, ev, kind);
        if ((streq(kind, "m") || streq(kind, "e")) && json_is_string(a1) && json_is_string(a2) && json_is_string(a3)) {
                /* Only new messages: an edit keeps its message's old id. */
                if (streq(kind, "m"))
                        note_message_lag(m, json_string_value(a1));
                chat_deliver_message(m, room, kind, json_string_value(a1), json_string_value(a2), json_string_value(a3));
        } else if (streq(kind, "d") && json_is_string(a1))
                room_fan_out_json(m, room, protocol_format_deleted(room->id, json_string_value(a1)), NULL, NULL, NULL);
        else if (streq(kind, "n") && json_is_integer(a1) && notice_level_valid(json_integer_value(a1)) && json_is_string(a2))
                room_fan_out_json(m, room, protocol_format_notice((MessageType) json_integer_value(a1), room->id,
                                                                  json_string_value(a2)), NULL, NULL, NULL);
        else if (streq(kind, "t") && json_is_string(a1))
                room_fan_out_json(m, room, protocol_format_typing(room->id, json_string_value(a1)), NULL, NULL,
                                  json_string_value(a1));
}

/* Redis decides who entered or left (the first connection in, the last
 * one out, over every daemon); the count here only feeds member lists. */
static void on_presence_event(Manager *m, const char *room_id, const char *user, json_int_t count, json_int_t change) {
        Room *room = room_registry_find(m->rooms, room_id);

        if (!room || count < 0)
                return;
        if (room_presence_set(room, user, (unsigned) MIN(count, (json_int_t) UINT32_MAX)) < 0)
                return;
        if (change > 0)
                room_fan_out_presence(room, protocol_format_presence(MSG_TYPE_ENTER, room->id, user), user);
        else if (change < 0)
                room_fan_out_presence(room, protocol_format_presence(MSG_TYPE_LEAVE, room->id, user), user);
        else
                return;
        if (m->bus)
                (void) bus_emit_room_changed(m->bus, room->id, BUS_ROOM_MEMBERS);
}

static void on_kick_event(Manager *m, const char *user, const char *room_id) {
        for (Conn *c = m->conns, *next; c; c = next) {
                Membership *mb;

                next = c->next;
                if (!streq(c->username, user))
                        continue;
                if (!room_id[0]) {
                        ws_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "kicked");
                        continue;
                }
                mb = conn_find_membership(c, room_id);
                if (!mb)
                        continue;
                conn_leave(c, mb);
                conn_send_left(c, room_id, LEAVE_REASON_KICKED, NULL);
        }
}

static void on_global_notice(Manager *m, MessageType level, const char *text) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;

        rooms = room_registry_sorted(m->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++)
                if (rooms[i]->n_members > 0)
                        room_fan_out_json(m, rooms[i], protocol_format_notice(level, rooms[i]->id, text),
                                          NULL, NULL, NULL);
}

static void on_global_event(Manager *m, json_t *ev) {
        const char *kind = json_string_value(json_array_get(ev, 0));
        json_t *a1 = json_array_get(ev, 1), *a2 = json_array_get(ev, 2), *a3 = json_array_get(ev, 3);
        Room *room;

        if (!kind)
                return;
        if (streq(kind, "p") && json_is_string(a1) && json_is_string(a2) && json_is_integer(a3))
                on_presence_event(m, json_string_value(a1), json_string_value(a2), json_integer_value(a3),
                                  json_integer_value(json_array_get(ev, 4)));
        else if (streq(kind, "rooms"))
                chat_reload_rooms(m);
        else if (streq(kind, "deleted") && json_is_string(a1)) {
                room = room_registry_find(m->rooms, json_string_value(a1));
                if (room)
                        chat_remove_room(m, room);
        } else if (streq(kind, "kick") && json_is_string(a1) && json_is_string(a2))
                on_kick_event(m, json_string_value(a1), json_string_value(a2));
        else if (streq(kind, "n") && json_is_integer(a1) && notice_level_valid(json_integer_value(a1)) && json_is_string(a2))
                on_global_notice(m, (MessageType) json_integer_value(a1), json_string_value(a2));
        else if (streq(kind, "logout") && json_is_string(a1)) {
                for (Conn *c = m->conns; c; c = c->next)
                        if (streq(c->session_id, json_string_value(a1))) {
                                ws_conn_send_json(c, protocol_format_error(PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL));
                                ws_conn_close(c, WS_CLOSE_LOGGED_OUT, "logged out");
                        }
        }
}

void chat_on_redis_message(Manager *m, const char *channel, const char *data, size_t len) {
        json_t *ev;

        ev = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_array(ev)) {
                log_debug("Ignoring malformed event on %s.", channel);
                json_decref(ev);
                return;
        }
        if (streq(channel, STORE_EVENTS_CHANNEL))
                on_global_event(m, ev);
        else if (strncmp(channel, STORE_ROOM_CHANNEL_PREFIX, strlen(STORE_ROOM_CHANNEL_PREFIX)) == 0) {
                Room *room = room_registry_find(m->rooms, channel + strlen(STORE_ROOM_CHANNEL_PREFIX));

                if (room)
                        on_room_event(m, room, ev);
        }
        json_decref(ev);
}

static int publish_event(Manager *m, json_t *ev) {
        _cleanup_free_ char *payload = NULL;
        int r;

        if (!ev)
                return -ENOMEM;
        payload = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        if (!payload)
                return -ENOMEM;
        r = store_publish(m->redis, STORE_EVENTS_CHANNEL, payload, strlen(payload), NULL, NULL);
        return r;
}

int chat_publish_logout(Manager *m, const char *session_id) {
        return publish_event(m, json_pack("[ss]", "logout", session_id));
}

int chat_publish_kick(Manager *m, const char *username, const char *room) {
        return publish_event(m, json_pack("[sss]", "kick", username, room ?: ""));
}

int chat_publish_notice(Manager *m, const char *room, unsigned level, const char *text) {
        _cleanup_free_ char *payload = NULL;
        char channel[64];
        json_t *ev;

        if (!room || !room[0])
                return publish_event(m, json_pack("[sis]", "n", (json_int_t) level, text));
        if (store_room_channel(room, channel, sizeof channel) < 0)
                return -EINVAL;
        ev = json_pack("[sis]", "n", (json_int_t) level, text);
        payload = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
        if (!payload)
                return -ENOMEM;
        return store_publish(m->redis, channel, payload, strlen(payload), NULL, NULL);
}

static void on_reap_reply(Redis *r, const redisReply *reply, void *userdata) {
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
                log_info("Took back the room presence of %lld daemon(s) that stopped without saying.",
                         reply->integer);
}

static void on_time_reply(Redis *r, const redisReply *reply, void *userdata) {
        Manager *m = userdata;
        uint64_t sec, usec;

        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING)
                return;
        sec = strtoull(reply->element[0]->str, NULL, 10);
        usec = strtoull(reply->element[1]->str, NULL, 10);
        if (sec > UINT64_MAX / USEC_PER_SEC - 1 || usec >= USEC_PER_SEC)
                return;
        overload_clock_sample(&m->overload, m->time_asked_usec, sec * USEC_PER_SEC + usec, now_usec(CLOCK_REALTIME));
}

void chat_heartbeat(Manager *m) {
        if (!redis_is_connected(m->redis))
                return;
        /* Redis's clock stamps message ids; lags are measured against it. */
        m->time_asked_usec = now_usec(CLOCK_REALTIME);
        (void) redis_command(m->redis, on_time_reply, m, "TIME");
        (void) store_heartbeat(m->redis, m->daemon_id);
        (void) store_reap(m->redis, NULL, on_reap_reply, NULL);
}

void chat_retire(Manager *m) {
        if (redis_is_connected(m->redis))
                (void) store_reap(m->redis, m->daemon_id, NULL, NULL);
}
