/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The chat itself: commands from connections, events from Redis, fan-out to local members, room administration. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/protocol.h"

typedef struct Conn Conn;
typedef struct Manager Manager;
typedef struct Redis Redis;

/* A connection passed its session check: it gets the room list. */
void chat_conn_ready(Conn *c);
void chat_handle_command(Conn *c, Command *cmd);
/* Leaves every room the connection was in, telling the others. */
void chat_conn_closed(Conn *c);

/* Redis came up: load rooms and presence, subscribe; READY follows. */
void chat_on_redis_connected(Manager *m);
void chat_on_redis_disconnected(Manager *m);
void chat_on_redis_message(Manager *m, const char *channel, const char *data, size_t len);

/* {"rooms": [...]} ordered by title, as pushed and as GET /api/rooms. */
char *chat_rooms_json(Manager *m);
/* Applies a room's state as Redis has it now to this daemon's registry,
 * with the D-Bus signals and evictions that follow; 1 when it is new. The
 * room list reload does the same for changes made anywhere; the daemon
 * that made a change applies it at once, so its D-Bus callers see it. */
int chat_apply_room(Manager *m, const char *id, const char *title, bool staff_only);
void chat_apply_room_removed(Manager *m, const char *id);

/* Pushes the room list to every connection (after a change). */
void chat_broadcast_rooms(Manager *m);

/* Events for every daemon sharing the Redis. */
int chat_publish_logout(Manager *m, const char *session_id);
/* room NULL or "": every room / every connection of the user. */
int chat_publish_kick(Manager *m, const char *username, const char *room);
int chat_publish_notice(Manager *m, const char *room, unsigned level, const char *text);

/* Periodic: heartbeat and taking back the presence of dead daemons. */
void chat_heartbeat(Manager *m);
/* Shutdown: take back this daemon's presence now rather than in 30 s. */
void chat_retire(Manager *m);
