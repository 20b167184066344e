/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The chat: rooms and their members on this daemon, commands from members, events from Redis, fan-out. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "wire/frame.h"
#include "wire/protocol.h"

typedef struct Chat Chat;
typedef struct ChatMember ChatMember;
typedef struct Redis Redis;
typedef struct Room Room;

/* Close codes of our own (RFC 6455 leaves 4000-4999 to applications). */
#define CHAT_CLOSE_LOGGED_OUT 4001
#define CHAT_CLOSE_POLICY_VIOLATION 1008
#define CHAT_CLOSE_UNEXPECTED 1011

/* Rooms one member may be in at once. */
#define CHAT_MEMBER_ROOMS_MAX 100

#define CHAT_DAEMON_ID_LEN 16

/* What changed about a room, for the D-Bus objects. */
typedef enum ChatRoomChange {
        CHAT_ROOM_TITLE      = 1u << 0,
        CHAT_ROOM_STAFF_ONLY = 1u << 1,
        CHAT_ROOM_MEMBERS    = 1u << 2,
} ChatRoomChange;

/* How the chat reaches what it does not own. conn is what the owner gave
 * chat_member_new(); ud what it gave chat_new(). */
typedef struct ChatHooks {
        /* Queues a frame for a member's connection (takes a new reference). */
        void (*send)(void *conn, Frame *f);
        /* Closes a member's connection once what is queued has gone out;
         * reason is a string literal. */
        void (*close)(void *conn, uint16_t code, const char *reason);
        void (*room_added)(void *ud, const char *id);
        void (*room_changed)(void *ud, const char *id, unsigned changes);   /* ChatRoomChange mask */
        void (*room_removed)(void *ud, const char *id);
        /* Connected to Redis with the room list loaded, or not any more. */
        void (*ready_changed)(void *ud, bool ready);
} ChatHooks;

typedef struct ChatSettings {
        unsigned history_on_join;       /* messages a join shows */
        unsigned history_size;          /* messages a room's stream keeps */
        uint64_t overload_lag_usec;     /* relaying later than this refuses new messages in part */
} ChatSettings;

/* The owner forwards Redis's state changes and messages (chat_on_redis_*),
 * and frees redis before the chat: freeing it answers the chat's pending
 * commands, whose handlers need the chat. */
int chat_new(Chat **ret, sd_event *event, Redis *redis, const ChatHooks *hooks, void *userdata);
Chat *chat_free(Chat *chat);
void chat_set_settings(Chat *chat, const ChatSettings *settings);

const char *chat_daemon_id(const Chat *chat);
bool chat_is_ready(const Chat *chat);
/* What keeps the chat from becoming ready besides the connection: the
 * key layout's migration (another daemon's, or this one's), or why it is
 * refused; NULL for nothing. */
const char *chat_waiting_for(const Chat *chat);
/* Deliveries: a message relayed to three members counts three. */
uint64_t chat_messages_relayed(const Chat *chat);
/* When (CLOCK_REALTIME) Redis was last found to have lost its data; the
 * chat put its rooms back and goes on. 0: never since start. */
uint64_t chat_data_lost_usec(const Chat *chat);
/* Live messages that came from Redis, each once. */
uint64_t chat_messages_received(const Chat *chat);
/* Commands the chat answered with error e. */
uint64_t chat_refusals(const Chat *chat, ProtocolError e);
/* How late the newest live message was relayed (Redis's clock), and
 * whether new messages are refused in part for it (overload-lag). */
uint64_t chat_relay_lag_usec(const Chat *chat);
bool chat_is_overloaded(const Chat *chat);
size_t chat_room_count(const Chat *chat);
Room *chat_find_room(Chat *chat, const char *id);
/* Rooms ordered by title (then id), malloc'd; NULL on OOM. */
Room **chat_sorted_rooms(Chat *chat, size_t *ret_n);

/* A connection whose session was checked joins the chat: it gets the room
 * list at once. username and session_id are borrowed and must stay valid
 * until chat_member_closed(). */
int chat_member_new(Chat *chat, void *conn, const char *username, const char *session_id, bool staff,
                    ChatMember **ret);
/* The connection is gone: leaves every room, telling the others, and
 * drops the owner's reference. */
void chat_member_closed(ChatMember *member);
void chat_member_command(ChatMember *member, const Command *cmd);
/* Room ids the member is in, NULL-terminated, at most max - 1 of them. */
size_t chat_member_rooms(const ChatMember *member, const char **ret, size_t max);

void chat_on_redis_connected(Chat *chat);
void chat_on_redis_disconnected(Chat *chat);
void chat_on_redis_message(Chat *chat, const char *channel, const char *data, size_t len);
/* A room's sharded subscription was dropped by Redis (subscribed = false:
 * its live events wait from now on) or is in effect again (true: the room
 * replays what it missed from its stream, as after a reconnect). */
void chat_on_redis_shard(Chat *chat, const char *channel, bool subscribed);

/* {"rooms": [...]} ordered by title, as pushed and as GET /api/rooms. */
char *chat_rooms_json(Chat *chat);

/* Room administration: the change in Redis, then applied here at once, so
 * that the caller sees it before the other daemons hear of it. cb gets 0
 * and the room id, or -errno (store_reply_error() codes). */
typedef void (*ChatRoomChangeHandler)(int r, const char *id, void *userdata);
int chat_create_room(Chat *chat, const char *title, bool staff_only, ChatRoomChangeHandler cb, void *userdata);
/* title NULL keeps it; staff_only < 0 keeps it. */
int chat_update_room(Chat *chat, const char *id, const char *title, int staff_only,
                     ChatRoomChangeHandler cb, void *userdata);
int chat_delete_room(Chat *chat, const char *id, ChatRoomChangeHandler cb, void *userdata);

/* Events for every daemon sharing the Redis. room NULL or "": every room,
 * every connection of the user. */
int chat_publish_logout(Chat *chat, const char *session_id);
int chat_publish_kick(Chat *chat, const char *username, const char *room);
int chat_publish_notice(Chat *chat, const char *room, unsigned level, const char *text);

/* Periodic: heartbeat, Redis's clock, and taking back the presence of
 * dead daemons. */
void chat_heartbeat(Chat *chat);
/* Shutdown: take back this daemon's presence now rather than in 30 s. */
void chat_retire(Chat *chat);
