/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The chat: rooms and their members on this daemon, commands from members, events from Redis, fan-out. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "basic/list.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strv.h"
#include "basic/time-util.h"
#include "chat/catch-up.h"
#include "chat/chat.h"
#include "chat/member.h"
#include "chat/overload.h"
#include "chat/rooms.h"
#include "redis/redis.h"
#include "store/migrate.h"
#include "store/store.h"
#include "wire/events.h"

/* Messages after a join's "since". */
#define CHAT_SINCE_MAX 1000
/* How often a large room's members hear its member count, at most. */
#define CHAT_MEMBER_COUNT_INTERVAL_USEC (1000 * 1000ULL)
/* A large room's count goes out once a second for every this many present,
 * at most every CHAT_MEMBER_COUNT_INTERVAL_MAX_USEC. */
#define CHAT_MEMBER_COUNT_PER_SECOND 1000
#define CHAT_MEMBER_COUNT_INTERVAL_MAX_USEC (10 * 1000 * 1000ULL)

struct Chat {
        sd_event *event;
        Redis *redis;
        const ChatHooks *hooks;
        void *userdata;
        ChatSettings settings;

        RoomRegistry *rooms;
        Frame *rooms_frame;           /* the room list, serialized once per change */
        ChatMember *members;          /* every member, newest first */
        Overload overload;
        uint64_t time_asked_usec;     /* CLOCK_REALTIME, when TIME was sent to Redis */
        uint64_t messages_relayed;    /* deliveries: one per member a message went to */
        uint64_t messages_received;   /* live messages Redis brought, once each */
        uint64_t refusals[_PROTOCOL_ERROR_MAX];   /* errors commands were answered with */
        char daemon_id[CHAT_DAEMON_ID_LEN + 1];   /* random per start; keys this daemon's presence in Redis */
        char epoch[STORE_EPOCH_MAX + 1];          /* the data's lineage, "" before the first connect */
        uint64_t data_lost_usec;                  /* CLOCK_REALTIME, when Redis was found without it; 0 never */
        Migrate *migrate;             /* to key layout 2, checked on every connect */
        sd_event_source *count_timer; /* member counts of large rooms, see on_presence_event() */
        bool ready;                   /* connected and the room list loaded */
};

static const CatchUpOps chat_catch_up_ops;

/* ---- members ---- */

static ChatMember *chat_member_ref(ChatMember *mb) {
        mb->n_ref++;
        return mb;
}

static void chat_member_unref(ChatMember *mb) {
        if (!mb || --mb->n_ref > 0)
                return;
        free(mb->memberships);
        free(mb);
}

static void member_send(ChatMember *mb, Frame *f) {
        if (!mb->closed)
                mb->chat->hooks->send(mb->conn, f);
}

static void member_send_json(ChatMember *mb, char *json) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (frame_new_take(&f, json) < 0) {
                mb->chat->hooks->close(mb->conn, CHAT_CLOSE_UNEXPECTED, "out of memory");
                return;
        }
        member_send(mb, f);
}

static void member_close(ChatMember *mb, uint16_t code, const char *reason) {
        if (!mb->closed)
                mb->chat->hooks->close(mb->conn, code, reason);
}

static void send_error(ChatMember *mb, ProtocolError e, const char *ref) {
        if (e > PROTOCOL_OK && e < _PROTOCOL_ERROR_MAX)
                mb->chat->refusals[e]++;
        member_send_json(mb, protocol_format_error(e, ref));
}

static const char *command_ref(const Command *cmd) {
        return cmd->has_ref ? cmd->ref : NULL;
}

static Membership *member_find_membership(ChatMember *mb, const char *room) {
        for (size_t i = 0; i < mb->n_memberships; i++)
                if (streq(mb->memberships[i]->room->id, room))
                        return mb->memberships[i];
        return NULL;
}

size_t chat_member_rooms(const ChatMember *mb, const char **ret, size_t max) {
        size_t n = 0;

        for (size_t i = 0; i < mb->n_memberships && n + 1 < max; i++)
                ret[n++] = mb->memberships[i]->room->id;
        if (max > 0)
                ret[n] = NULL;
        return n;
}

/* ---- rooms: subscriptions and fan-out ---- */

static void room_subscription_update(Chat *chat, Room *room) {
        char channel[64];

        if (store_room_channel(room->id, channel, sizeof channel) < 0)
                return;
        if (room->n_members > 0 && !room->subscribed) {
                if (redis_ssubscribe(chat->redis, channel) >= 0) {
                        room->subscribed = true;
                        catch_up_begin(room, chat->redis, &chat_catch_up_ops, chat, false);
                }
        } else if (room->n_members == 0 && room->subscribed) {
                (void) redis_sunsubscribe(chat->redis, channel);
                room->subscribed = false;
                room->last_id[0] = 0;
                catch_up_end(room);
        }
}

static int member_add_membership(ChatMember *m, Room *room, Membership **ret) {
        Membership *mb;
        int r;

        if (!GREEDY_REALLOC(m->memberships, m->n_memberships_allocated, m->n_memberships + 1))
                return -ENOMEM;
        r = room_add_member(room, m, &mb);
        if (r < 0)
                return r;
        m->memberships[m->n_memberships++] = mb;
        *ret = mb;
        return 0;
}

/* Drops the membership locally; the caller tells Redis if needed. */
static void member_drop_membership(ChatMember *m, Membership *mb) {
        Room *room = mb->room;

        for (size_t i = 0; i < m->n_memberships; i++)
                if (m->memberships[i] == mb) {
                        m->memberships[i] = m->memberships[--m->n_memberships];
                        break;
                }
        room_remove_member(mb);
        room_subscription_update(m->chat, room);
}

static void on_leave_reply(Redis *r, const redisReply *reply, void *userdata) {
        if (store_reply_error(reply) < 0)
                log_debug("Leaving a room in Redis failed: %s", reply ? reply->str : "no reply");
}

/* Leaves a room: locally at once, in Redis (presence) in the background. */
static void member_leave(ChatMember *m, Membership *mb) {
        Chat *chat = m->chat;
        char room[ROOM_ID_MAX + 1];

        strcpy(room, mb->room->id);
        member_drop_membership(m, mb);
        (void) store_leave(chat->redis, chat->daemon_id, room, m->username, on_leave_reply, NULL);
}

static void member_send_left(ChatMember *m, const char *room, LeaveReason reason, const char *ref) {
        member_send_json(m, protocol_format_left(room, reason, ref));
}

/* The variants of one broadcast, each serialized once, on first need:
 * version 1 and version 2 (with "mentions"), each plain and "own" for the
 * writer's connections. Non-message events have only plain. */
typedef struct FanOut {
        const ChatMessage *msg;         /* NULL: not a message event */
        Frame *plain, *own, *v2, *v2_own;
} FanOut;

static void fan_out_done(FanOut *fo) {
        frame_unref(fo->own);
        frame_unref(fo->v2);
        frame_unref(fo->v2_own);
}

static Frame *fan_out_v2(FanOut *fo) {
        Mentions mentions;
        ChatMessage m;

        if (fo->v2)
                return fo->v2;
        protocol_mentions_parse(fo->msg->message, &mentions);
        m = *fo->msg;
        m.mentions = &mentions;
        if (frame_new_take(&fo->v2, protocol_format_message(&m)) < 0)
                fo->v2 = NULL;
        return fo->v2;
}

/* The frame for this receiver; a variant that cannot be made falls back
 * to the plain one. */
static Frame *pick_frame(const ChatMember *m, FanOut *fo) {
        Frame *base = fo->plain, **own = &fo->own;

        if (!fo->msg)
                return fo->plain;
        if (m->version >= 2 && fan_out_v2(fo)) {
                base = fo->v2;
                own = &fo->v2_own;
        }
        if (!streq(m->username, fo->msg->username))
                return base;
        if (!*own && frame_new_own(own, base) < 0)
                return base;
        return *own;
}

/* Delivers one event to every local member of a room. Pending members
 * (join waiting for history) hold it; message ids let them drop what the
 * history already had. replay: a room's replay in progress, whose members
 * that joined meanwhile got messages up to some id with their join. */
static void room_fan_out(Chat *chat, Room *room, Frame *plain, const ChatMessage *msg,
                         const char *skip_user, const RoomCatchUp *replay) {
        _cleanup_(fan_out_done) FanOut fo = { .msg = msg, .plain = plain };
        void (*send)(void *conn, Frame *f) = chat->hooks->send;
        const char *id = msg ? msg->id : NULL;

        for (size_t i = 0; i < room->n_members; i++) {
                Membership *mb = room->members[i];
                ChatMember *m = mb->member;
                Frame *f;

                if (skip_user && streq(m->username, skip_user))
                        continue;
                f = pick_frame(m, &fo);
                if (mb->pending) {
                        if (!membership_hold(mb, f, id))
                                log_debug("Hold of pending join of %s in room %s is full.", m->username, room->id);
                        continue;
                }
                if (replay && catch_up_member_has(replay, mb, id))
                        continue;
                send(m->conn, f);
                if (id)
                        chat->messages_relayed++;
        }
}

static void room_fan_out_json(Chat *chat, Room *room, char *json, const char *skip_user) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (frame_new_take(&f, json) < 0) {
                log_error("Out of memory while broadcasting to room %s.", room->id);
                return;
        }
        room_fan_out(chat, room, f, NULL, skip_user, NULL);
}

/* Presence notices go to members whose join has finished (the join reply's
 * member list covers the rest) and never to the user they are about: the
 * original example does not tell a joiner that it entered. user NULL: to
 * everyone. */
static void room_fan_out_presence(Chat *chat, Room *room, char *json, const char *user) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (frame_new_take(&f, json) < 0)
                return;
        for (size_t i = 0; i < room->n_members; i++) {
                Membership *mb = room->members[i];

                if (!mb->pending && !streq_ptr(mb->member->username, user))
                        chat->hooks->send(mb->member->conn, f);
        }
}

/* A new message at most once: the replay of the stream may have brought it
 * already, or the live one may come after the replay delivered it. An edit
 * keeps its message's old id and always goes through. */
static void chat_deliver(Chat *chat, Room *room, const ChatMessage *msg, const RoomCatchUp *replay) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (!msg->edited && room->last_id[0] && message_id_compare(msg->id, room->last_id) <= 0)
                return;
        if (!msg->edited)
                snprintf(room->last_id, sizeof room->last_id, "%s", msg->id);
        if (frame_new_take(&f, protocol_format_message(msg)) < 0) {
                log_error("Out of memory while relaying to room %s.", room->id);
                return;
        }
        room_fan_out(chat, room, f, msg, NULL, replay);
}

static void room_presence_from_reply(Room *room, const redisReply *presence) {
        const char *user;
        unsigned count;
        int r;

        room_presence_clear(room);
        for (size_t i = 0; (r = store_presence_get(presence, i, &user, &count)) != -ENOENT; i++)
                if (r >= 0)
                        (void) room_presence_set(room, user, count);
}

/* Stored messages as the member's protocol version shows them (version 2
 * with the mentions of their current, edited, text): oldest first, or
 * newest first as the store gives them to "history". */
typedef struct HistorySource {
        const StoreEntries *entries;
        const char *room;
        const ChatMember *member;
        bool newest_first;
} HistorySource;

static int history_get(const void *userdata, size_t k, ChatMessage *ret, bool *ret_own, Mentions *mentions) {
        const HistorySource *src = userdata;
        size_t n = store_entries_count(src->entries);
        StoreEntry e;
        int r;

        r = store_entries_get(src->entries, src->newest_first ? n - 1 - k : k, &e);
        if (r < 0)
                return r;
        if (src->member->version >= 2)
                protocol_mentions_parse(e.text, mentions);
        *ret = (ChatMessage) {
                .room = src->room, .id = e.id, .username = e.username, .message = e.text,
                .ts = message_id_ms(e.id), .edited = e.edited,
                .mentions = src->member->version >= 2 ? mentions : NULL,
        };
        *ret_own = streq(e.username, src->member->username);
        return 0;
}

/* The id of the newest message a join's history holds: where the member's
 * live messages pick up. */
static const char *history_last_id(const StoreEntries *entries) {
        StoreEntry e;

        for (size_t i = store_entries_count(entries); i > 0; i--)
                if (store_entries_get(entries, i - 1, &e) >= 0)
                        return e.id;
        return NULL;
}

static ProtocolError protocol_error_from_store(int r) {
        switch (r) {
        case -ENOENT:
                return PROTOCOL_ERROR_ROOM_INVALID;
        case -EINVAL:
                return PROTOCOL_ERROR_BAD_REQUEST;
        case -ESRCH:
                return PROTOCOL_ERROR_NOT_FOUND;
        case -EPERM:
                return PROTOCOL_ERROR_FORBIDDEN;
        case -EACCES:
                return PROTOCOL_ERROR_ROOM_ACCESS_DENIED;
        case -ENOSPC:
                return PROTOCOL_ERROR_RATE_LIMITED;
        default:
                return PROTOCOL_ERROR_UNAVAILABLE;
        }
}

/* ---- commands ---- */

/* A command waiting for Redis: the member (referenced), the room, the
 * client's ref to echo. */
typedef struct ChatRequest {
        ChatMember *member;
        char room[ROOM_ID_MAX + 1];
        char ref[REF_MAX + 1];
        bool has_ref;
        bool has_since;
} ChatRequest;

static ChatRequest *chat_request_new_for(ChatMember *m, const char *room, const char *ref, bool has_since) {
        ChatRequest *req = calloc(1, sizeof *req);

        if (!req)
                return NULL;
        req->member = chat_member_ref(m);
        snprintf(req->room, sizeof req->room, "%s", room);
        if (ref) {
                snprintf(req->ref, sizeof req->ref, "%s", ref);
                req->has_ref = true;
        }
        req->has_since = has_since;
        return req;
}

static ChatRequest *chat_request_new(ChatMember *m, const Command *cmd) {
        return chat_request_new_for(m, cmd->room, command_ref(cmd), cmd->has_since);
}

static void chat_request_free(ChatRequest *req) {
        chat_member_unref(req->member);
        free(req);
}

static const char *chat_request_ref(const ChatRequest *req) {
        return req->has_ref ? req->ref : NULL;
}

/* Releases what a pending membership held, minus what history had. */
static void membership_settle(Membership *mb, const char *last_history_id) {
        mb->pending = false;
        for (unsigned i = 0; i < mb->n_held; i++) {
                HeldFrame *h = &mb->held[i];

                if (h->id[0] && last_history_id && message_id_compare(h->id, last_history_id) <= 0)
                        continue;
                member_send(mb->member, h->frame);
        }
        membership_drop_held(mb);
}

static void on_join_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        ChatMember *m = req->member;
        StoreJoinReply j;
        const char *last_id = NULL;
        MemberPage page;
        Membership *mb;
        ProtocolHistory history;
        int e, complete;

        if (m->closed)
                goto out;
        mb = member_find_membership(m, req->room);
        if (!mb || !mb->pending)
                goto out;       /* left again meanwhile */

        e = store_parse_join_reply(reply, &j);
        if (e < 0) {
                member_drop_membership(m, mb);
                send_error(m, e == -ENOENT || e == -EINVAL || e == -ENOSPC ? protocol_error_from_store(e) :
                           PROTOCOL_ERROR_UNAVAILABLE, chat_request_ref(req));
                goto out;
        }

        history = (ProtocolHistory) {
                .n = store_entries_count(&j.history), .get = history_get,
                .userdata = &(HistorySource) { .entries = &j.history, .room = req->room, .member = m },
        };
        last_id = history_last_id(&j.history);
        (void) room_presence_set(mb->room, m->username, j.connections);
        page = room_presence_page(mb->room, NULL);
        complete = req->has_since ? (int) (j.complete && !mb->held_overflow) : -1;
        if (j.has_read_state)
                member_send_json(m, protocol_format_joined_v2(
                        req->room, mb->room->title, mb->room->staff_only, &page, &history, complete,
                        &(ReadState) { j.read_state.read, j.read_state.unread, j.read_state.mentions },
                        chat_request_ref(req)));
        else
                member_send_json(m, protocol_format_joined(
                        req->room, mb->room->title, mb->room->staff_only, &page, &history, complete,
                        chat_request_ref(req)));
        membership_settle(mb, last_id);
        catch_up_joined(mb->room, mb, j.tip);
out:
        chat_request_free(req);
}

/* Joins this connection to a room: asked by its join command, or unasked
 * for a version 2 connection (its hello, or its user joined elsewhere).
 * A version 2 join also makes the room the user's, in Redis. */
static ProtocolError member_join(ChatMember *m, Room *room, const char *since, const char *ref) {
        Chat *chat = m->chat;
        Membership *mb;
        ChatRequest *req;
        int r;

        if (room->staff_only && !m->staff)
                return PROTOCOL_ERROR_ROOM_ACCESS_DENIED;
        if (!redis_is_connected(chat->redis))
                return PROTOCOL_ERROR_UNAVAILABLE;

        mb = member_find_membership(m, room->id);
        if (mb) {
                /* Joined already: the presence stays as it is; answer as a
                 * join would, so a client that lost track gets its state. */
                if (!mb->pending) {
                        MemberPage page = room_presence_page(room, NULL);

                        member_send_json(m, protocol_format_joined(room->id, room->title, room->staff_only,
                                                                   &page, NULL, -1, ref));
                }
                return PROTOCOL_OK;
        }
        if (m->n_memberships >= CHAT_MEMBER_ROOMS_MAX)
                return PROTOCOL_ERROR_RATE_LIMITED;

        req = chat_request_new_for(m, room->id, ref, !!since);
        if (!req)
                return PROTOCOL_ERROR_UNAVAILABLE;
        r = member_add_membership(m, room, &mb);
        if (r < 0) {
                chat_request_free(req);
                return PROTOCOL_ERROR_UNAVAILABLE;
        }
        room_subscription_update(chat, room);

        if (m->version >= 2)
                r = store_join_v2(chat->redis, chat->daemon_id, room->id, m->username, since,
                                  since ? CHAT_SINCE_MAX : chat->settings.history_on_join, PROTOCOL_USER_ROOMS_MAX,
                                  on_join_reply, req);
        else
                r = store_join(chat->redis, chat->daemon_id, room->id, m->username, since,
                               since ? CHAT_SINCE_MAX : chat->settings.history_on_join, on_join_reply, req);
        if (r < 0) {
                chat_request_free(req);
                member_drop_membership(m, mb);
                return PROTOCOL_ERROR_UNAVAILABLE;
        }
        return PROTOCOL_OK;
}

static void chat_join(ChatMember *m, const Command *cmd) {
        Room *room = room_registry_find(m->chat->rooms, cmd->room);
        ProtocolError e;

        if (!room)
                return send_error(m, PROTOCOL_ERROR_ROOM_INVALID, command_ref(cmd));
        e = member_join(m, room, cmd->has_since ? cmd->since : NULL, command_ref(cmd));
        if (e != PROTOCOL_OK)
                send_error(m, e, command_ref(cmd));
}

static void chat_leave(ChatMember *m, const Command *cmd) {
        Membership *mb = member_find_membership(m, cmd->room);

        if (!room_registry_find(m->chat->rooms, cmd->room) && !mb)
                return send_error(m, PROTOCOL_ERROR_ROOM_INVALID, command_ref(cmd));
        /* Leaving a room one is not in changes nothing and tells nobody. */
        if (mb)
                member_leave(m, mb);
        member_send_left(m, cmd->room, LEAVE_REASON_NONE, command_ref(cmd));
        /* The user's other version 2 connections leave when ["ul"] comes. */
        if (m->version >= 2 &&
            store_user_leave(m->chat->redis, m->username, cmd->room, "", on_leave_reply, NULL) < 0)
                log_debug("Could not remove room %s from the rooms of %s.", cmd->room, m->username);
}

static void on_send_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        ChatMember *m = req->member;
        int e = store_reply_error(reply);

        if (m->closed)
                goto out;
        /* No answer: the connection to Redis dropped, or the command timed
         * out, after it was sent. It may have been carried out: only a
         * retry with the same ref can tell without storing it twice. */
        if (e == -ENOTCONN)
                send_error(m, PROTOCOL_ERROR_OUTCOME_UNKNOWN, chat_request_ref(req));
        else if (e < 0)
                send_error(m, protocol_error_from_store(e), chat_request_ref(req));
        else if (req->has_ref)
                member_send_json(m, protocol_format_ok(reply->type == REDIS_REPLY_STRING &&
                                                       strchr(reply->str, '-') ? reply->str : NULL, req->ref));
out:
        chat_request_free(req);
}

/* Past capacity, new messages are refused rather than delivered ever
 * later: the newest messages we relay tell how far behind we are, and
 * only the share of new messages we can keep up with is let in. Typing
 * hints are refused outright meanwhile. */
static bool chat_refuse_new(Chat *chat, bool hint) {
        uint64_t now = 0;
        int k;

        (void) sd_event_now(chat->event, CLOCK_MONOTONIC, &now);
        k = overload_update(&chat->overload, chat->settings.overload_lag_usec, now);
        if (k > 0)
                log_warning("Relaying messages %.1f s late; refusing new ones in part until caught up.",
                            (double) chat->overload.lag_usec / USEC_PER_SEC);
        else if (k < 0)
                log_info("Caught up with relaying messages; accepting new ones again.");
        if (!chat->overload.active)
                return false;
        return hint || !overload_admit(&chat->overload);
}

static void note_message_lag(Chat *chat, const char *id) {
        uint64_t rt = 0, mono = 0;

        (void) sd_event_now(chat->event, CLOCK_REALTIME, &rt);
        (void) sd_event_now(chat->event, CLOCK_MONOTONIC, &mono);
        overload_note_message(&chat->overload, message_id_ms(id), rt, mono);
}

static bool member_in_room(ChatMember *m, const Command *cmd) {
        if (member_find_membership(m, cmd->room))
                return true;
        send_error(m, room_registry_find(m->chat->rooms, cmd->room) ?
                   PROTOCOL_ERROR_ROOM_ACCESS_DENIED : PROTOCOL_ERROR_ROOM_INVALID, command_ref(cmd));
        return false;
}

static void chat_send(ChatMember *m, const Command *cmd) {
        char names[MENTIONS_JOINED_MAX + 1] = "";
        Chat *chat = m->chat;
        Mentions mentions;
        ChatRequest *req;
        int r;

        if (!member_in_room(m, cmd))
                return;
        if (cmd->type == COMMAND_SEND && chat_refuse_new(chat, false))
                return send_error(m, PROTOCOL_ERROR_RATE_LIMITED, command_ref(cmd));
        req = chat_request_new(m, cmd);
        if (!req)
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));

        /* The names a text mentions are stored with it for the unread counts in Redis. */
        if (cmd->message) {
                protocol_mentions_parse(cmd->message, &mentions);
                protocol_mentions_join(&mentions, names);
        }
        if (cmd->type == COMMAND_SEND)
                r = store_send_mentioning(chat->redis, cmd->room, m->username, cmd->message, names, command_ref(cmd),
                                          chat->settings.history_size, on_send_reply, req);
        else
                r = store_edit_mentioning(chat->redis, cmd->room, cmd->id, m->username,
                                          cmd->type == COMMAND_EDIT ? cmd->message : NULL, names, on_send_reply, req);
        if (r < 0) {
                chat_request_free(req);
                send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        }
}

static void on_history_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        ChatMember *m = req->member;
        StoreHistoryReply h;
        int e;

        if (m->closed)
                goto out;
        e = store_parse_history_reply(reply, &h);
        if (e < 0) {
                send_error(m, e == -ENOENT ? PROTOCOL_ERROR_ROOM_INVALID : PROTOCOL_ERROR_UNAVAILABLE,
                           chat_request_ref(req));
                goto out;
        }
        member_send_json(m, protocol_format_history(req->room, &(ProtocolHistory) {
                        .n = store_entries_count(&h.history), .get = history_get,
                        .userdata = &(HistorySource) { .entries = &h.history, .room = req->room, .member = m,
                                                       .newest_first = true },
                }, h.complete, chat_request_ref(req)));
out:
        chat_request_free(req);
}

static void chat_history(ChatMember *m, const Command *cmd) {
        ChatRequest *req;

        if (!member_in_room(m, cmd))
                return;
        req = chat_request_new(m, cmd);
        if (!req)
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        if (store_history(m->chat->redis, cmd->room, cmd->has_before ? cmd->before : NULL, cmd->limit,
                          on_history_reply, req) < 0) {
                chat_request_free(req);
                send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        }
}

/* Answered from this daemon's copy of the room's presence, which the
 * presence events keep: no Redis round trip, and a page costs the same in
 * any room. */
static void chat_members(ChatMember *m, const Command *cmd) {
        Membership *mb;
        MemberPage page;

        if (!member_in_room(m, cmd))
                return;
        mb = member_find_membership(m, cmd->room);
        page = room_presence_page(mb->room, cmd->has_after ? cmd->after : NULL);
        member_send_json(m, protocol_format_members(cmd->room, &page, command_ref(cmd)));
}

static int publish_on(Chat *chat, const char *room, char *payload) {
        _cleanup_free_ char *p = payload;

        if (!p)
                return -ENOMEM;
        if (!room || !room[0])
                return store_publish(chat->redis, STORE_EVENTS_CHANNEL, p, strlen(p), NULL, NULL);
        return store_publish_room(chat->redis, room, p, strlen(p), NULL, NULL);
}

static void chat_typing(ChatMember *m, const Command *cmd) {
        if (!member_in_room(m, cmd))
                return;
        if (chat_refuse_new(m->chat, true))
                return send_error(m, PROTOCOL_ERROR_RATE_LIMITED, command_ref(cmd));
        if (publish_on(m->chat, cmd->room, event_format_typing(m->username)) < 0)
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        if (cmd->has_ref)
                member_send_json(m, protocol_format_ok(NULL, cmd->ref));
}

/* ---- version 2: hello and read markers ---- */

typedef struct HelloRequest {
        ChatMember *member;
        char ref[REF_MAX + 1];
        bool has_ref;
        RoomSince *since;
        size_t n_since;
} HelloRequest;

static void hello_request_free(HelloRequest *req) {
        chat_member_unref(req->member);
        free(req->since);
        free(req);
}

static const char *hello_since(const HelloRequest *req, const char *room) {
        for (size_t i = 0; i < req->n_since; i++)
                if (streq(req->since[i].room, room))
                        return req->since[i].id;
        return NULL;
}

/* The user's rooms as this connection may join them: rooms unknown here
 * are skipped, staff-only rooms of a non-staff user are taken from them
 * (the room became staff-only while they were away). */
static char **hello_rooms(ChatMember *m, const redisReply *reply) {
        _cleanup_(strv_freep) char **rooms = calloc(reply->elements + 1, sizeof(char *));
        size_t n = 0;

        if (!rooms)
                return NULL;
        for (size_t i = 0; i < reply->elements && n < PROTOCOL_USER_ROOMS_MAX; i++) {
                const redisReply *e = reply->element[i];
                Room *room;

                if (e->type != REDIS_REPLY_STRING || e->len > ROOM_ID_MAX)
                        continue;
                room = room_registry_find(m->chat->rooms, e->str);
                if (!room)
                        continue;
                if (room->staff_only && !m->staff) {
                        (void) store_user_leave(m->chat->redis, m->username, room->id, "kicked", on_leave_reply, NULL);
                        continue;
                }
                rooms[n] = strdup(room->id);
                if (!rooms[n++])
                        return NULL;
        }
        return TAKE_PTR(rooms);
}

static void on_hello_reply(Redis *r, const redisReply *reply, void *userdata) {
        HelloRequest *req = userdata;
        ChatMember *m = req->member;
        _cleanup_(strv_freep) char **rooms = NULL;
        const char *ref = req->has_ref ? req->ref : NULL;

        if (m->closed)
                goto out;
        if (!reply || reply->type != REDIS_REPLY_ARRAY || !(rooms = hello_rooms(m, reply))) {
                m->hello_seen = false;
                send_error(m, PROTOCOL_ERROR_UNAVAILABLE, ref);
                goto out;
        }
        m->version = 2;
        member_send_json(m, protocol_format_hello(2, m->username, rooms, ref));
        for (char **id = rooms; *id; id++) {
                Room *room = room_registry_find(m->chat->rooms, *id);
                ProtocolError e = room ? member_join(m, room, hello_since(req, *id), NULL) : PROTOCOL_ERROR_ROOM_INVALID;

                if (e != PROTOCOL_OK)
                        send_error(m, e, NULL);
        }
out:
        hello_request_free(req);
}

static void chat_hello(ChatMember *m, const Command *cmd) {
        HelloRequest *req;

        if (m->hello_seen)
                return send_error(m, PROTOCOL_ERROR_BAD_REQUEST, command_ref(cmd));
        if (cmd->version < 2) {
                const char *rooms[CHAT_MEMBER_ROOMS_MAX + 1];

                m->hello_seen = true;
                chat_member_rooms(m, rooms, ELEMENTSOF(rooms));
                return member_send_json(m, protocol_format_hello(1, m->username, (char **) rooms, command_ref(cmd)));
        }
        if (!redis_is_connected(m->chat->redis))
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));

        req = calloc(1, sizeof *req);
        if (!req)
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        req->member = chat_member_ref(m);
        if (cmd->has_ref) {
                strcpy(req->ref, cmd->ref);
                req->has_ref = true;
        }
        if (cmd->n_rooms_since > 0) {
                req->since = calloc(cmd->n_rooms_since, sizeof *req->since);
                if (!req->since) {
                        hello_request_free(req);
                        return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
                }
                memcpy(req->since, cmd->rooms_since, cmd->n_rooms_since * sizeof *req->since);
                req->n_since = cmd->n_rooms_since;
        }
        if (store_user_rooms(m->chat->redis, m->username, on_hello_reply, req) < 0) {
                hello_request_free(req);
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        }
        m->hello_seen = true;
}

static void on_read_reply(Redis *r, const redisReply *reply, void *userdata) {
        ChatRequest *req = userdata;
        ChatMember *m = req->member;
        int e = store_reply_error(reply);

        if (m->closed)
                goto out;
        if (e < 0)
                send_error(m, protocol_error_from_store(e), chat_request_ref(req));
        else if (req->has_ref)
                member_send_json(m, protocol_format_ok(NULL, req->ref));
out:
        chat_request_free(req);
}

static void chat_read(ChatMember *m, const Command *cmd) {
        ChatRequest *req;

        /* Unknown to a version 1 connection, like any other command it does not know. */
        if (m->version < 2)
                return send_error(m, PROTOCOL_ERROR_BAD_REQUEST, command_ref(cmd));
        if (!room_registry_find(m->chat->rooms, cmd->room))
                return send_error(m, PROTOCOL_ERROR_ROOM_INVALID, command_ref(cmd));
        req = chat_request_new(m, cmd);
        if (!req)
                return send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        if (store_read(m->chat->redis, cmd->room, m->username, cmd->id, on_read_reply, req) < 0) {
                chat_request_free(req);
                send_error(m, PROTOCOL_ERROR_UNAVAILABLE, command_ref(cmd));
        }
}

void chat_member_command(ChatMember *m, const Command *cmd) {
        if (m->closed)
                return;
        switch (cmd->type) {
        case COMMAND_JOIN:
                return chat_join(m, cmd);
        case COMMAND_LEAVE:
                return chat_leave(m, cmd);
        case COMMAND_SEND:
        case COMMAND_EDIT:
        case COMMAND_DELETE:
                return chat_send(m, cmd);
        case COMMAND_HISTORY:
                return chat_history(m, cmd);
        case COMMAND_TYPING:
                return chat_typing(m, cmd);
        case COMMAND_HELLO:
                return chat_hello(m, cmd);
        case COMMAND_READ:
                return chat_read(m, cmd);
        case COMMAND_MEMBERS:
                return chat_members(m, cmd);
        default:
                return send_error(m, PROTOCOL_ERROR_BAD_REQUEST, command_ref(cmd));
        }
}

/* ---- the room list ---- */

static char *rooms_json(Chat *chat) {
        _cleanup_free_ Room **rooms = NULL;
        _cleanup_free_ RoomInfo *infos = NULL;
        size_t n = 0;

        rooms = room_registry_sorted(chat->rooms, &n);
        infos = calloc(n ?: 1, sizeof *infos);
        if (!rooms || !infos)
                return NULL;
        for (size_t i = 0; i < n; i++)
                infos[i] = (RoomInfo) { rooms[i]->id, rooms[i]->title, rooms[i]->staff_only };
        return protocol_format_rooms(infos, n);
}

/* The room list changes rarely and goes to every connection that opens:
 * serialized once per change and shared, not rebuilt per connection. */
static Frame *rooms_frame(Chat *chat) {
        if (!chat->rooms_frame && frame_new_take(&chat->rooms_frame, rooms_json(chat)) < 0)
                chat->rooms_frame = NULL;
        return chat->rooms_frame;
}

static void rooms_changed(Chat *chat) {
        chat->rooms_frame = frame_unref(chat->rooms_frame);
}

char *chat_rooms_json(Chat *chat) {
        Frame *f = rooms_frame(chat);

        return f ? strndup((const char *) frame_payload(f), f->len) : NULL;
}

/* Pushes the room list to every member (after a change). */
static void chat_broadcast_rooms(Chat *chat) {
        Frame *f;

        rooms_changed(chat);
        f = rooms_frame(chat);
        if (!f)
                return;
        LIST_FOREACH(members, m, chat->members)
                member_send(m, f);
}

int chat_member_new(Chat *chat, void *conn, const char *username, const char *session_id, bool staff,
                    ChatMember **ret) {
        ChatMember *m;
        Frame *f;

        f = rooms_frame(chat);
        if (!f)
                return -ENOMEM;
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->n_ref = 1;
        m->version = 1;
        m->chat = chat;
        m->conn = conn;
        m->username = username;
        m->session_id = session_id;
        m->staff = staff;
        LIST_PREPEND(members, chat->members, m);
        member_send(m, f);
        *ret = m;
        return 0;
}

void chat_member_closed(ChatMember *m) {
        if (!m)
                return;
        while (m->n_memberships > 0)
                member_leave(m, m->memberships[m->n_memberships - 1]);
        LIST_REMOVE(members, m->chat->members, m);
        m->closed = true;
        m->conn = NULL;
        m->username = m->session_id = NULL;
        chat_member_unref(m);
}

/* Every local member leaves the room with a reason; non_staff_only limits
 * it to those who may no longer be there (the room became staff-only). */
static void room_evict(Room *room, LeaveReason reason, bool non_staff_only) {
        for (size_t i = room->n_members; i > 0; i--) {
                Membership *mb = room->members[i - 1];
                ChatMember *m = mb->member;
                char id[ROOM_ID_MAX + 1];

                if (non_staff_only && m->staff)
                        continue;
                strcpy(id, room->id);
                if (reason == LEAVE_REASON_DELETED)
                        member_drop_membership(m, mb);
                else
                        member_leave(m, mb);
                /* The room became staff-only: it is not the user's any more. */
                if (non_staff_only && m->version >= 2)
                        (void) store_user_leave(m->chat->redis, m->username, id, "kicked", on_leave_reply, NULL);
                member_send_left(m, id, reason, NULL);
        }
}

static void chat_remove_room(Chat *chat, Room *room) {
        rooms_changed(chat);
        room_evict(room, LEAVE_REASON_DELETED, false);
        chat->hooks->room_removed(chat->userdata, room->id);
        room_registry_remove(chat->rooms, room);
}

/* A Redis request about one room; the room may be gone by the reply. */
typedef struct RoomRequest {
        Chat *chat;
        char room[ROOM_ID_MAX + 1];
} RoomRequest;

static void on_presence_reply(Redis *r, const redisReply *reply, void *userdata) {
        _cleanup_free_ RoomRequest *req = userdata;
        Room *room;

        /* No reply also when the Redis client is freed after the chat. */
        if (!reply || reply->type != REDIS_REPLY_ARRAY)
                return;
        room = room_registry_find(req->chat->rooms, req->room);
        if (room)
                room_presence_from_reply(room, reply);
}

static void room_load_presence(Chat *chat, Room *room) {
        RoomRequest *req = calloc(1, sizeof *req);

        if (!req)
                return;
        req->chat = chat;
        strcpy(req->room, room->id);
        if (store_load_presence(chat->redis, room->id, on_presence_reply, req) < 0)
                free(req);
}

/* Applies a room's state as Redis has it now, with the D-Bus signals and
 * evictions that follow; 1 when it is new. */
static int chat_apply_room(Chat *chat, const char *id, const char *title, bool staff_only) {
        _cleanup_free_ char *old_title = NULL;
        bool was_staff_only = false;
        unsigned changes = 0;
        Room *room;
        int r;

        room = room_registry_find(chat->rooms, id);
        if (room) {
                was_staff_only = room->staff_only;
                old_title = strdup(room->title);
                if (!old_title)
                        return -ENOMEM;
        }
        r = room_registry_put(chat->rooms, id, title, staff_only, &room);
        if (r < 0)
                return r;
        rooms_changed(chat);

        if (r > 0) {
                chat->hooks->room_added(chat->userdata, room->id);
                return 1;
        }
        if (!streq(old_title, room->title))
                changes |= CHAT_ROOM_TITLE;
        if (was_staff_only != room->staff_only) {
                changes |= CHAT_ROOM_STAFF_ONLY;
                if (room->staff_only)
                        room_evict(room, LEAVE_REASON_KICKED, true);
        }
        if (changes)
                chat->hooks->room_changed(chat->userdata, room->id, changes);
        return 0;
}

/* One room of the list in Redis, which is external input like any other. */
static void room_sync_one(Chat *chat, const redisReply *k, const redisReply *v, bool first) {
        json_t *j, *title;
        Room *room;
        int r;

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len > ROOM_ID_MAX)
                return;
        j = json_loadb(v->str, v->len, 0, NULL);
        title = json_object_get(j, "title");
        r = json_is_string(title) ?
                chat_apply_room(chat, k->str, json_string_value(title), json_is_true(json_object_get(j, "staff_only"))) :
                -EBADMSG;
        json_decref(j);
        if (r < 0)
                return;
        room = room_registry_find(chat->rooms, k->str);
        if (room && (first || r > 0))
                room_load_presence(chat, room);
}

static void chat_set_ready(Chat *chat, bool ready) {
        if (chat->ready == ready)
                return;
        chat->ready = ready;
        chat->hooks->ready_changed(chat->userdata, ready);
}

static void on_rooms_reply(Redis *r, const redisReply *reply, void *userdata) {
        Chat *chat = userdata;
        bool first = !chat->ready;
        Room *room;

        if (!reply || reply->type != REDIS_REPLY_ARRAY) {
                log_warning("Could not load the room list from Redis: %s", reply ? reply->str : "no reply");
                return;
        }

        room_registry_begin_sync(chat->rooms);
        for (size_t i = 0; i + 1 < reply->elements; i += 2)
                room_sync_one(chat, reply->element[i], reply->element[i + 1], first);
        while ((room = room_registry_next_unseen(chat->rooms)))
                chat_remove_room(chat, room);

        chat_broadcast_rooms(chat);
        chat_set_ready(chat, true);
}

static void chat_reload_rooms(Chat *chat) {
        int r = store_load_rooms(chat->redis, on_rooms_reply, chat);

        if (r < 0)
                log_warning_errno(r, "Could not ask Redis for the room list: %m");
}

/* ---- room administration ---- */

/* A room change on its way to Redis, and what to apply here once it is
 * done. */
typedef struct RoomChange {
        Chat *chat;
        ChatRoomChangeHandler handler;
        void *userdata;
        char id[ROOM_ID_MAX + 1];
        char *title;                  /* NULL: unchanged */
        int staff_only;               /* -1: unchanged */
        bool delete;
} RoomChange;

static void room_change_free(RoomChange *c) {
        free(c->title);
        free(c);
}

static void room_change_apply(RoomChange *c) {
        Chat *chat = c->chat;
        Room *room;

        if (c->delete) {
                room = room_registry_find(chat->rooms, c->id);
                if (room)
                        chat_remove_room(chat, room);
                return;
        }
        room = room_registry_find(chat->rooms, c->id);
        if (chat_apply_room(chat, c->id, c->title ?: room ? room->title : "",
                            c->staff_only >= 0 ? c->staff_only : room && room->staff_only) >= 0)
                chat_broadcast_rooms(chat);
}

static void on_room_changed(Redis *r, const redisReply *reply, void *userdata) {
        RoomChange *c = userdata;
        int e = store_reply_error(reply);

        if (e == -EIO)
                log_warning("Redis refused a room change: %s", reply->str);
        if (e >= 0 && !c->id[0]) {
                /* Creating: the script answers the new id. */
                if (reply->type != REDIS_REPLY_STRING || reply->len > ROOM_ID_MAX)
                        e = -EIO;
                else
                        strcpy(c->id, reply->str);
        }
        /* Visible here before the caller hears back, so that a lookup
         * right after creating finds it. */
        if (e >= 0)
                room_change_apply(c);
        c->handler(e, e >= 0 ? c->id : NULL, c->userdata);
        room_change_free(c);
}

static int chat_submit_room_change(Chat *chat, const char *id, const char *title, int staff_only, bool delete,
                                   ChatRoomChangeHandler cb, void *userdata) {
        RoomChange *c = calloc(1, sizeof *c);
        int r;

        if (!c)
                return -ENOMEM;
        *c = (RoomChange) {
                .chat = chat, .handler = cb, .userdata = userdata, .staff_only = staff_only, .delete = delete,
        };
        snprintf(c->id, sizeof c->id, "%s", id ?: "");
        if (title && !(c->title = strdup(title))) {
                room_change_free(c);
                return -ENOMEM;
        }
        if (delete)
                r = store_delete_room(chat->redis, id, on_room_changed, c);
        else if (!id)
                r = store_create_room(chat->redis, title, staff_only, on_room_changed, c);
        else
                r = store_update_room(chat->redis, id, title, staff_only, on_room_changed, c);
        if (r < 0)
                room_change_free(c);
        return r;
}

int chat_create_room(Chat *chat, const char *title, bool staff_only, ChatRoomChangeHandler cb, void *userdata) {
        return chat_submit_room_change(chat, NULL, title, staff_only, false, cb, userdata);
}

int chat_update_room(Chat *chat, const char *id, const char *title, int staff_only,
                     ChatRoomChangeHandler cb, void *userdata) {
        return chat_submit_room_change(chat, id, title, staff_only, false, cb, userdata);
}

int chat_delete_room(Chat *chat, const char *id, ChatRoomChangeHandler cb, void *userdata) {
        return chat_submit_room_change(chat, id, NULL, -1, true, cb, userdata);
}

/* ---- events from Redis ---- */

static void chat_catch_up_deliver(void *ud, Room *room, const ChatMessage *msg, const RoomCatchUp *cu) {
        chat_deliver(ud, room, msg, cu);
}

static Room *chat_catch_up_find_room(void *ud, const char *id) {
        return room_registry_find(((Chat *) ud)->rooms, id);
}

static void chat_catch_up_send(void *ud, Membership *mb, Frame *f) {
        member_send(mb->member, f);
}

static void on_room_event(Chat *chat, Room *room, const Event *ev);

static void chat_catch_up_release(void *ud, Room *room, const Event *ev) {
        on_room_event(ud, room, ev);
}

static const CatchUpOps chat_catch_up_ops = {
        .find_room = chat_catch_up_find_room,
        .deliver = chat_catch_up_deliver,
        .release = chat_catch_up_release,
        .send = chat_catch_up_send,
};

/* Connected, and the data is the one this daemon knew (or put back):
 * load the room list, and replay what each room missed. */
static void chat_resume(Chat *chat) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;

        chat_reload_rooms(chat);
        chat_heartbeat(chat);

        /* Whatever was published while our subscriber was away is in the
         * streams, presence in the presence hashes; a subscriber that was
         * not away replays nothing and loses a moment. */
        rooms = room_registry_sorted(chat->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++)
                if (rooms[i]->subscribed) {
                        room_load_presence(chat, rooms[i]);
                        catch_up_resume(rooms[i], chat->redis, &chat_catch_up_ops, chat);
                }
}

/* From now until the replay after the reconnect has read every room's
 * stream, live events wait: the subscriber connection may come back before
 * the command connection, and a message relayed live then must not move a
 * room's position past what was published while it was away. */
static int random_hex(char *ret, size_t n_bytes) {
        uint8_t b[32];

        if (n_bytes > sizeof b || getrandom(b, n_bytes, 0) != (ssize_t) n_bytes)
                return -EIO;
        for (size_t i = 0; i < n_bytes; i++)
                sprintf(ret + 2 * i, "%02x", b[i]);
        return 0;
}

static void on_epoch_reply(Redis *r, const redisReply *reply, void *userdata) {
        Chat *chat = userdata;
        StoreEpochReply e;
        int k;

        k = store_parse_epoch_reply(reply, &e);
        if (k == -ENOTCONN)
                return;         /* the reconnect asks again */
        if (k < 0) {
                log_warning("Could not check Redis's data epoch: %s",
                            reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
                return chat_resume(chat);
        }
        if (e.lost) {
                chat->data_lost_usec = now_usec(CLOCK_REALTIME);
                log_struct(LOG_ERR, 0, MESSAGE_ID_REDIS_DATA_LOST, NULL,
                           "Redis lost its data (restarted without it, or replaced): put back %u room(s) from this "
                           "daemon's memory. Messages and sessions are gone; members are told messages are missing.",
                           e.restored);
        }
        snprintf(chat->epoch, sizeof chat->epoch, "%s", e.epoch);
        chat_resume(chat);
}

/* Each room as mc:rooms holds it, id and JSON, for putting them back. */
static char **rooms_as_pairs(Chat *chat, size_t *ret_n) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;
        char **pairs;

        rooms = room_registry_sorted(chat->rooms, &n);
        pairs = calloc(2 * n + 1, sizeof *pairs);
        if (!rooms || !pairs)
                return mfree(pairs);
        for (size_t i = 0; i < n; i++) {
                json_t *j = json_pack("{s:s, s:b}", "title", rooms[i]->title, "staff_only", rooms[i]->staff_only);

                pairs[2 * i] = strdup(rooms[i]->id);
                pairs[2 * i + 1] = j ? json_dumps(j, JSON_COMPACT) : NULL;
                json_decref(j);
                if (!pairs[2 * i] || !pairs[2 * i + 1]) {
                        strv_free(pairs);
                        return NULL;
                }
        }
        *ret_n = 2 * n;
        return pairs;
}

static void chat_check_epoch(Chat *chat) {
        _cleanup_(strv_freep) char **pairs = NULL;
        char fresh[33];
        size_t n = 0;

        pairs = rooms_as_pairs(chat, &n);
        if (!pairs || random_hex(fresh, 16) < 0 ||
            store_epoch(chat->redis, chat->epoch[0] ? chat->epoch : NULL, fresh, pairs, n, on_epoch_reply, chat) < 0) {
                log_warning("Could not check Redis's data epoch; going on without.");
                chat_resume(chat);
        }
}

static void on_migrated(Migrate *m, int error, void *userdata) {
        Chat *chat = userdata;

        if (error == -ENOTCONN)
                return;         /* the reconnect starts again */
        if (error == -EMEDIUMTYPE) {
                log_error("Not serving: %s.", migrate_refusal(m));
                return;
        }
        if (error < 0) {
                log_warning_errno(error, "Could not migrate Redis's data to key layout 2: %m; trying again.");
                return;
        }
        if (migrate_did_migrate(m) && migrate_keys_moved(m) > 0)
                log_notice("Migrated Redis's data to key layout 2: %u keys moved.", migrate_keys_moved(m));
        else if (migrate_did_migrate(m))
                log_info("Redis holds no data of the first key layout: marked as key layout 2.");
        else if (migrate_waited(m))
                log_notice("Another daemon migrated Redis's data to key layout 2; this one waited for it.");
        chat_check_epoch(chat);
}

void chat_on_redis_connected(Chat *chat) {
        if (store_load_scripts(chat->redis) < 0)
                log_warning("Could not load the scripts into Redis; they are sent when first used.");
        /* Nothing is read before the data is in the layout this version
         * reads: when another daemon migrates it, this one waits. */
        if (migrate_start(chat->migrate) < 0)
                log_warning("Could not check Redis's key layout; trying again.");
}

const char *chat_waiting_for(const Chat *chat) {
        MigrateState s = migrate_state(chat->migrate);

        if (s == MIGRATE_WAITING || s == MIGRATE_MIGRATING || s == MIGRATE_FAILED)
                return migrate_state_to_string(s);
        if (s == MIGRATE_REFUSED)
                return migrate_refusal(chat->migrate);
        return NULL;
}

void chat_on_redis_disconnected(Chat *chat) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;

        chat_set_ready(chat, false);
        rooms = room_registry_sorted(chat->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++)
                if (rooms[i]->subscribed && rooms[i]->last_id[0])
                        catch_up_begin(rooms[i], chat->redis, &chat_catch_up_ops, chat, true);
}

void chat_on_redis_shard(Chat *chat, const char *channel, bool subscribed) {
        char id[ROOM_ID_MAX + 1];
        Room *room;

        if (store_channel_room(channel, id, sizeof id) < 0)
                return;
        room = room_registry_find(chat->rooms, id);
        if (!room || !room->subscribed)
                return;
        /* What a reconnect does, for this one room: hold live events from
         * the drop on, replay the stream once the new subscription is in
         * effect. */
        if (!subscribed) {
                if (room->last_id[0])
                        catch_up_begin(room, chat->redis, &chat_catch_up_ops, chat, true);
        } else
                catch_up_resume(room, chat->redis, &chat_catch_up_ops, chat);
}

static void on_room_event(Chat *chat, Room *room, const Event *ev) {
        if (ev->kind == EVENT_MESSAGE)
                chat->messages_received++;
        /* While the room replays its stream, live events wait behind it. */
        if (room->catch_up)
                return catch_up_hold(room->catch_up, ev);

        switch (ev->kind) {
        case EVENT_MESSAGE:
                note_message_lag(chat, ev->id);
                _fallthrough_;
        case EVENT_EDITED:
                return chat_deliver(chat, room, &(ChatMessage) {
                        .room = room->id, .id = ev->id, .username = ev->user, .message = ev->text,
                        .ts = message_id_ms(ev->id), .edited = ev->kind == EVENT_EDITED,
                }, NULL);
        case EVENT_DELETED:
                return room_fan_out_json(chat, room, protocol_format_deleted(room->id, ev->id), NULL);
        case EVENT_NOTICE:
                return room_fan_out_json(chat, room, protocol_format_notice((MessageType) ev->level, room->id, ev->text),
                                         NULL);
        case EVENT_TYPING:
                return room_fan_out_json(chat, room, protocol_format_typing(room->id, ev->user), ev->user);
        default:
                log_debug("Ignoring an event of the wrong channel in room %s.", room->id);
        }
}

/* Each update costs every member of the room a frame: once a second in a
 * room of 1,000 is 1,000 frames a second, and so is once every 10 s in a
 * room of 10,000. Without the stretch, a room of 10,000 filling up after a
 * restart would cost more frames in counts than in everything else. */
static uint64_t member_count_interval(size_t present) {
        uint64_t usec = (uint64_t) (present / CHAT_MEMBER_COUNT_PER_SECOND) * CHAT_MEMBER_COUNT_INTERVAL_USEC;

        return CLAMP(usec, CHAT_MEMBER_COUNT_INTERVAL_USEC, CHAT_MEMBER_COUNT_INTERVAL_MAX_USEC);
}

static void chat_schedule_counts(Chat *chat);

static int on_count_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Chat *chat = userdata;
        _cleanup_free_ Room **rooms = NULL;
        bool pending = false;
        size_t n = 0;

        rooms = room_registry_sorted(chat->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++) {
                Room *room = rooms[i];

                if (!room->count_changed)
                        continue;
                if (room->count_not_before > usec) {
                        pending = true;
                        continue;
                }
                room->count_changed = false;
                room->count_not_before = usec + member_count_interval(room->n_usernames);
                room_fan_out_presence(chat, room, protocol_format_member_count(room->id, room->n_usernames), NULL);
        }
        if (pending)
                chat_schedule_counts(chat);
        return 0;
}

static void chat_schedule_counts(Chat *chat) {
        int r;

        if (chat->count_timer && sd_event_source_get_enabled(chat->count_timer, NULL) > 0)
                return;
        r = chat->count_timer ?
                sd_event_source_set_time_relative(chat->count_timer, CHAT_MEMBER_COUNT_INTERVAL_USEC) :
                sd_event_add_time_relative(chat->event, &chat->count_timer, CLOCK_MONOTONIC,
                                           CHAT_MEMBER_COUNT_INTERVAL_USEC, 0, on_count_timer, chat);
        if (r >= 0)
                r = sd_event_source_set_enabled(chat->count_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_debug_errno(r, "Could not schedule member counts: %m");
}

static void room_count_changed(Chat *chat, Room *room) {
        room->count_changed = true;
        chat_schedule_counts(chat);
}

/* Redis decides who entered or left (the first connection in, the last
 * one out, over every daemon). In a room with more present than a page
 * of members, a notice per user would cost each member one frame per
 * arrival: a room of 10,000 coming back after a restart would send 10^8
 * of them. There the members hear the count instead, once a second at
 * most (see member_count_interval()), and page the list when they want it. */
static void on_presence_event(Chat *chat, const Event *ev) {
        Room *room = room_registry_find(chat->rooms, ev->room);
        size_t before;

        if (!room)
                return;
        before = room->n_usernames;
        if (room_presence_set(room, ev->user, (unsigned) MIN(ev->count, (int64_t) UINT32_MAX)) < 0)
                return;
        if (ev->change == 0)
                return;
        if (MAX(before, room->n_usernames) > PROTOCOL_MEMBERS_PAGE)
                room_count_changed(chat, room);
        else
                room_fan_out_presence(chat, room, protocol_format_presence(ev->change > 0 ? MSG_TYPE_ENTER : MSG_TYPE_LEAVE,
                                                                           room->id, ev->user), ev->user);
        chat->hooks->room_changed(chat->userdata, room->id, CHAT_ROOM_MEMBERS);
}

static void on_kick_event(Chat *chat, const char *user, const char *room_id) {
        LIST_FOREACH_SAFE(members, m, next, chat->members) {
                Membership *mb;

                if (!streq(m->username, user))
                        continue;
                if (!room_id[0]) {
                        member_close(m, CHAT_CLOSE_POLICY_VIOLATION, "kicked");
                        continue;
                }
                mb = member_find_membership(m, room_id);
                if (!mb)
                        continue;
                member_leave(m, mb);
                member_send_left(m, room_id, LEAVE_REASON_KICKED, NULL);
        }
}

static bool member_is_v2_of(const ChatMember *m, const char *user) {
        return m->version >= 2 && streq(m->username, user);
}

/* The user joined a room (on any connection, any daemon): their other
 * version 2 connections here join it too. */
static void on_user_joined(Chat *chat, const char *user, const char *room_id) {
        Room *room = room_registry_find(chat->rooms, room_id);

        if (!room)
                return;
        LIST_FOREACH_SAFE(members, m, next, chat->members)
                if (member_is_v2_of(m, user) && !member_find_membership(m, room_id))
                        (void) member_join(m, room, NULL, NULL);
}

static LeaveReason leave_reason_from_string(const char *s) {
        return streq(s, "kicked") ? LEAVE_REASON_KICKED : streq(s, "deleted") ? LEAVE_REASON_DELETED : LEAVE_REASON_NONE;
}

static void on_user_left(Chat *chat, const char *user, const char *room_id, const char *reason) {
        LIST_FOREACH_SAFE(members, m, next, chat->members) {
                Membership *mb;

                if (!member_is_v2_of(m, user) || !(mb = member_find_membership(m, room_id)))
                        continue;
                member_leave(m, mb);
                member_send_left(m, room_id, leave_reason_from_string(reason), NULL);
        }
}

/* Counting unread messages for a user whose marker moved. */
typedef struct UnreadRequest {
        Chat *chat;
        char user[USERNAME_MAX + 1];
        char room[ROOM_ID_MAX + 1];
} UnreadRequest;

static void on_unread_reply(Redis *r, const redisReply *reply, void *userdata) {
        _cleanup_free_ UnreadRequest *req = userdata;
        _cleanup_(frame_unrefp) Frame *f = NULL;
        StoreReadState rs;

        /* NOTJOINED: the user left the room meanwhile; nothing to tell. */
        if (store_parse_unread_reply(reply, &rs) < 0 || !rs.read)
                return;
        if (frame_new_take(&f, protocol_format_unread(req->room, &(ReadState) { rs.read, rs.unread, rs.mentions })) < 0)
                return;
        LIST_FOREACH(members, m, req->chat->members)
                if (member_is_v2_of(m, req->user))
                        member_send(m, f);
}

/* One count per daemon and marker move, shared by the user's connections here. */
static void on_user_read(Chat *chat, const char *user, const char *room_id) {
        UnreadRequest *req;
        bool any = false;

        LIST_FOREACH(members, m, chat->members)
                any = any || member_is_v2_of(m, user);
        if (!any)
                return;
        req = calloc(1, sizeof *req);
        if (!req)
                return;
        req->chat = chat;
        snprintf(req->user, sizeof req->user, "%s", user);
        snprintf(req->room, sizeof req->room, "%s", room_id);
        if (store_unread(chat->redis, room_id, user, on_unread_reply, req) < 0)
                free(req);
}

static void on_global_notice(Chat *chat, MessageType level, const char *text) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;

        rooms = room_registry_sorted(chat->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++)
                if (rooms[i]->n_members > 0)
                        room_fan_out_json(chat, rooms[i], protocol_format_notice(level, rooms[i]->id, text), NULL);
}

static void on_logout_event(Chat *chat, const char *session_id) {
        LIST_FOREACH(members, m, chat->members)
                if (streq(m->session_id, session_id)) {
                        send_error(m, PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL);
                        member_close(m, CHAT_CLOSE_LOGGED_OUT, "logged out");
                }
}

static void on_global_event(Chat *chat, const Event *ev) {
        Room *room;

        switch (ev->kind) {
        case EVENT_PRESENCE:
                return on_presence_event(chat, ev);
        case EVENT_ROOMS:
                return chat_reload_rooms(chat);
        case EVENT_ROOM_DELETED:
                room = room_registry_find(chat->rooms, ev->room);
                if (room)
                        chat_remove_room(chat, room);
                return;
        case EVENT_KICK:
                return on_kick_event(chat, ev->user, ev->room);
        case EVENT_NOTICE:
                return on_global_notice(chat, (MessageType) ev->level, ev->text);
        case EVENT_LOGOUT:
                return on_logout_event(chat, ev->session_id);
        case EVENT_USER_JOINED:
                return on_user_joined(chat, ev->user, ev->room);
        case EVENT_USER_LEFT:
                return on_user_left(chat, ev->user, ev->room, ev->reason);
        case EVENT_USER_READ:
                return on_user_read(chat, ev->user, ev->room);
        default:
                log_debug("Ignoring a room event on %s.", STORE_EVENTS_CHANNEL);
        }
}

void chat_on_redis_message(Chat *chat, const char *channel, const char *data, size_t len) {
        char id[ROOM_ID_MAX + 1];
        Event ev;

        if (event_parse(data, len, &ev) < 0) {
                log_debug("Ignoring malformed event on %s.", channel);
                return;
        }
        if (streq(channel, STORE_EVENTS_CHANNEL))
                on_global_event(chat, &ev);
        else if (store_channel_room(channel, id, sizeof id) >= 0) {
                Room *room = room_registry_find(chat->rooms, id);

                if (room)
                        on_room_event(chat, room, &ev);
        }
        event_done(&ev);
}

int chat_publish_logout(Chat *chat, const char *session_id) {
        return publish_on(chat, NULL, event_format_logout(session_id));
}

int chat_publish_kick(Chat *chat, const char *username, const char *room) {
        /* A kick from one room also takes it from the user's rooms
         * (version 2), whether or not they are connected. */
        if (room && room[0] &&
            store_user_leave(chat->redis, username, room, "kicked", on_leave_reply, NULL) < 0)
                log_debug("Could not remove room %s from the rooms of %s.", room, username);
        return publish_on(chat, NULL, event_format_kick(username, room));
}

int chat_publish_notice(Chat *chat, const char *room, unsigned level, const char *text) {
        return publish_on(chat, room, event_format_notice((int) level, text));
}

/* ---- heartbeat ---- */

static void on_reap_done(Redis *r, int error, unsigned reaped, void *userdata) {
        if (reaped > 0)
                log_info("Took back the room presence of %u daemon(s) that stopped without saying.", reaped);
}

static void on_time_reply(Redis *r, const redisReply *reply, void *userdata) {
        Chat *chat = userdata;
        uint64_t sec, usec;

        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING)
                return;
        sec = strtoull(reply->element[0]->str, NULL, 10);
        usec = strtoull(reply->element[1]->str, NULL, 10);
        if (sec > UINT64_MAX / USEC_PER_SEC - 1 || usec >= USEC_PER_SEC)
                return;
        overload_clock_sample(&chat->overload, chat->time_asked_usec, sec * USEC_PER_SEC + usec,
                              now_usec(CLOCK_REALTIME));
}

void chat_heartbeat(Chat *chat) {
        if (!redis_is_connected(chat->redis))
                return;
        if (migrate_state(chat->migrate) == MIGRATE_FAILED)
                (void) migrate_start(chat->migrate);
        /* Redis's clock stamps message ids; lags are measured against it. */
        chat->time_asked_usec = now_usec(CLOCK_REALTIME);
        (void) redis_command(chat->redis, on_time_reply, chat, "TIME");
        (void) store_heartbeat(chat->redis, chat->daemon_id);
        (void) store_reap(chat->redis, NULL, on_reap_done, NULL);
}

void chat_retire(Chat *chat) {
        if (redis_is_connected(chat->redis))
                (void) store_reap(chat->redis, chat->daemon_id, NULL, NULL);
}

/* ---- the object ---- */

static int make_daemon_id(char ret[static CHAT_DAEMON_ID_LEN + 1]) {
        uint8_t b[CHAT_DAEMON_ID_LEN / 2];

        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                return -errno;
        for (size_t i = 0; i < sizeof b; i++)
                sprintf(ret + 2 * i, "%02x", b[i]);
        return 0;
}

int chat_new(Chat **ret, sd_event *event, Redis *redis, const ChatHooks *hooks, void *userdata) {
        Chat *chat;
        int r;

        chat = calloc(1, sizeof *chat);
        if (!chat)
                return -ENOMEM;
        chat->event = sd_event_ref(event);
        chat->redis = redis;
        chat->hooks = hooks;
        chat->userdata = userdata;
        r = make_daemon_id(chat->daemon_id);
        if (r >= 0)
                r = room_registry_new(&chat->rooms);
        if (r >= 0)
                r = migrate_new(&chat->migrate, event, redis, chat->daemon_id, on_migrated, chat);
        if (r < 0) {
                chat_free(chat);
                return r;
        }
        *ret = chat;
        return 0;
}

/* Members must have closed first: their owners hold them. */
Chat *chat_free(Chat *chat) {
        _cleanup_free_ Room **rooms = NULL;
        size_t n = 0;

        if (!chat)
                return NULL;
        /* The owner freed Redis first (chat.h), which answered every
         * request of ours still pending. */
        rooms = room_registry_sorted(chat->rooms, &n);
        for (size_t i = 0; rooms && i < n; i++)
                catch_up_end(rooms[i]);
        chat->rooms = room_registry_free(chat->rooms);
        chat->rooms_frame = frame_unref(chat->rooms_frame);
        chat->migrate = migrate_free(chat->migrate);
        chat->count_timer = sd_event_source_disable_unref(chat->count_timer);
        sd_event_unref(chat->event);
        return mfree(chat);
}

void chat_set_settings(Chat *chat, const ChatSettings *settings) {
        chat->settings = *settings;
}

const char *chat_daemon_id(const Chat *chat) {
        return chat->daemon_id;
}

bool chat_is_ready(const Chat *chat) {
        return chat->ready && redis_is_connected(chat->redis);
}

uint64_t chat_data_lost_usec(const Chat *chat) {
        return chat->data_lost_usec;
}

uint64_t chat_messages_relayed(const Chat *chat) {
        return chat->messages_relayed;
}

uint64_t chat_messages_received(const Chat *chat) {
        return chat->messages_received;
}

uint64_t chat_refusals(const Chat *chat, ProtocolError e) {
        return e > PROTOCOL_OK && e < _PROTOCOL_ERROR_MAX ? chat->refusals[e] : 0;
}

uint64_t chat_relay_lag_usec(const Chat *chat) {
        return chat->overload.lag_usec;
}

bool chat_is_overloaded(const Chat *chat) {
        return chat->overload.active;
}

size_t chat_room_count(const Chat *chat) {
        return room_registry_count(chat->rooms);
}

Room *chat_find_room(Chat *chat, const char *id) {
        return room_registry_find(chat->rooms, id);
}

Room **chat_sorted_rooms(Chat *chat, size_t *ret_n) {
        return room_registry_sorted(chat->rooms, ret_n);
}
