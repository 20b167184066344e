/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Redis schema: key and channel names, and the Lua scripts that change rooms, messages and presence atomically. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <hiredis/hiredis.h>

#include "wire/limits.h"
#include "redis/redis.h"

/*
 * The layout (docs/architecture.md has it as a table): every key a script
 * touches shares the script's hash tag, so each script runs in one Redis
 * Cluster slot. A room's keys share {r<id>}, a user's {u<name>}, the room
 * list's {rooms}.
 *
 * mc:{rooms}                  HASH  room id -> {"title": ..., "staff_only": ...}
 * mc:{rooms}:seq              STRING last room id handed out
 * mc:{rooms}:epoch            STRING random, written when Redis first serves multichat
 * mc:{r<id>}:room             STRING "1" while the room exists: what the room's scripts check
 * mc:{r<id>}:log              STREAM the room's messages (fields u, m, and n: the names it mentions,
 *                                   space-separated, when it mentions any); ids are message ids
 * mc:{r<id>}:edits            HASH  message id -> edited text
 * mc:{r<id>}:edits-n          HASH  message id -> names its edited text mentions ("" none)
 * mc:{r<id>}:users            HASH  username -> connections present, over all daemons
 * mc:{r<id>}:d:<d>            HASH  username -> connections daemon <d> holds in the room
 * mc:{r<id>}:ref:<u>:<ref>    STRING the message id user <u>'s send with that ref stored (TTL 10 min)
 * mc:{u<name>}:rooms          HASH  room id -> read marker ("" none): the rooms a user joined (version 2)
 * mc:{u<name>}:order          ZSET  room id scored by join time: their order
 * mc:daemon:<d>               STRING heartbeat of daemon <d>, expires when it dies
 * mc:daemon:<d>:rooms         SET   rooms where daemon <d> may hold presence
 * mc:daemons                  SET   daemon ids that may hold presence
 * mc:schema                   STRING the layout's version: 2 (absent: the first layout, or none)
 * mc:migrate-lock             STRING the daemon migrating to this layout, with a TTL
 *
 * Channels carry JSON arrays:
 * mc:{r<id>}:ch  ["m", id, user, text]  ["e", id, user, text]  ["d", id]
 *                ["n", level, text]     ["t", user]
 * mc:events      ["p", room, user, count, +1 entered / -1 left / 0]  ["rooms"]  ["deleted", room]
 *                ["kick", user, room or ""]  ["n", level, text]  ["logout", session id]
 *                ["uj", user, room]  ["ul", user, room, reason]  ["ur", user, room, id]
 */

#define STORE_EVENTS_CHANNEL "mc:events"
#define STORE_ROOMS_KEY "mc:{rooms}"
#define STORE_ROOMS_SEQ_KEY "mc:{rooms}:seq"
#define STORE_EPOCH_KEY "mc:{rooms}:epoch"
#define STORE_ROOM_KEY_PREFIX "mc:{r"
#define STORE_USER_KEY_PREFIX "mc:{u"
#define STORE_SCHEMA_KEY "mc:schema"
/* What mc:schema holds for this layout. */
#define STORE_SCHEMA_VERSION_STR "2"
#define STORE_MIGRATE_LOCK_KEY "mc:migrate-lock"
#define STORE_HEARTBEAT_SEC 30
/* Longest daemon id the store accepts. */
#define STORE_DAEMON_ID_MAX 64
/* Longest key the store builds from bounded parts (a send's ref key is
 * built apart: refs are bounded by the protocol). */
#define STORE_KEY_MAX (sizeof(STORE_ROOM_KEY_PREFIX) + ROOM_ID_MAX + USERNAME_MAX + STORE_DAEMON_ID_MAX + 16)

/* One message as read back from a stream. Pointers refer into the reply. */
typedef struct StoreEntry {
        const char *id;
        const char *username;
        const char *text;
        size_t text_len;
        bool edited;
} StoreEntry;

/* mc:{r<room>}:<what>, mc:{u<user>}:<what>: -EINVAL for an empty or too
 * long room or user, -ENOBUFS when buf is too small. */
int store_room_key(char *buf, size_t size, const char *room, const char *what);
int store_user_key(char *buf, size_t size, const char *user, const char *what);
/* The room's channel, mc:{r<room>}:ch. */
int store_room_channel(const char *room, char *buf, size_t size);
/* The room a room channel belongs to; -EINVAL for any other channel. */
int store_channel_room(const char *channel, char *buf, size_t size);

/* What spans slots takes more than one round trip (store_join_v2,
 * store_user_rooms, store_unread, store_create_room, store_delete_room,
 * store_send*, store_reap): their handlers still run exactly once, with
 * the last step's reply, but redis_cancel() on the caller's userdata does
 * not reach a step in flight. */

/* Loads every script into Redis ahead of any use. A script Redis does not
 * know yet is resent as EVAL after the commands sent meanwhile, which
 * would reorder them: a leave followed by a join must stay in that order. */
int store_load_scripts(Redis *r);

int store_load_rooms(Redis *r, RedisReplyHandler cb, void *userdata);
int store_load_presence(Redis *r, const char *room, RedisReplyHandler cb, void *userdata);
int store_create_room(Redis *r, const char *title, bool staff_only, RedisReplyHandler cb, void *userdata);
/* title NULL keeps it; staff_only < 0 keeps it. */
int store_update_room(Redis *r, const char *room, const char *title, int staff_only, RedisReplyHandler cb, void *userdata);
int store_delete_room(Redis *r, const char *room, RedisReplyHandler cb, void *userdata);

/* Reply: [count, [user, n, ...], [entries], complete, [edited texts], newest id]
 * where the newest id is the stream's at that moment, "0-0" when empty. */
int store_join(Redis *r, const char *daemon_id, const char *room, const char *username,
               const char *since, unsigned history, RedisReplyHandler cb, void *userdata);
/* The same for a version 2 connection: the room also becomes the user's
 * (error FULL when they have max_rooms already; ["uj"] published when it
 * is new), and the reply goes on with [read marker, unread, mentions]. */
int store_join_v2(Redis *r, const char *daemon_id, const char *room, const char *username,
                  const char *since, unsigned history, unsigned max_rooms, RedisReplyHandler cb, void *userdata);
/* Reply: the user's rooms, oldest joined first. */
int store_user_rooms(Redis *r, const char *username, RedisReplyHandler cb, void *userdata);
/* Removes a room from the user's rooms with its marker; publishes ["ul"]
 * when it was there. reason: "", "kicked" or "deleted". */
int store_user_leave(Redis *r, const char *username, const char *room, const char *reason,
                     RedisReplyHandler cb, void *userdata);
/* Moves the user's read marker forward to id (["ur"] when it moved).
 * Errors NOROOM, NOTJOINED. */
int store_read(Redis *r, const char *room, const char *username, const char *id,
               RedisReplyHandler cb, void *userdata);
/* Reply: [read marker, unread, mentions]; error NOTJOINED. */
int store_unread(Redis *r, const char *room, const char *username, RedisReplyHandler cb, void *userdata);
int store_leave(Redis *r, const char *daemon_id, const char *room, const char *username,
                RedisReplyHandler cb, void *userdata);
/* How long a send's ref is remembered: a retry with the same ref within
 * this time answers the first send's id and stores nothing. */
#define STORE_SEND_REF_TTL_SEC 600u

/* Reply: the new message id; with a ref (NULL: none) that this user sent
 * to this room before, within STORE_SEND_REF_TTL_SEC, that message's id,
 * and nothing is stored or published again. */
int store_send(Redis *r, const char *room, const char *username, const char *text, const char *ref,
               unsigned keep, RedisReplyHandler cb, void *userdata);
/* The same, storing the names the text mentions (space-separated, NULL
 * or "" for none) as field n, which the unread counts read. */
int store_send_mentioning(Redis *r, const char *room, const char *username, const char *text, const char *names,
                          const char *ref, unsigned keep, RedisReplyHandler cb, void *userdata);
/* Reply: "OK", or an error "NOTFOUND" / "FORBIDDEN" / "NOROOM". text NULL deletes. */
int store_edit(Redis *r, const char *room, const char *id, const char *username, const char *text,
               RedisReplyHandler cb, void *userdata);
/* The same, recording the names the new text mentions (space-separated,
 * "" for none) for the unread counts. */
int store_edit_mentioning(Redis *r, const char *room, const char *id, const char *username, const char *text,
                          const char *names, RedisReplyHandler cb, void *userdata);
/* Reply: [[entries newest first], [edited texts], complete] */
int store_history(Redis *r, const char *room, const char *before, unsigned limit,
                  RedisReplyHandler cb, void *userdata);
/* Entries after `after`, oldest first, at most limit: what a daemon missed
 * while its subscriber connection was down. Reply: [[entries], [edited
 * texts], more, gap]: more = 1 when entries follow these; gap = 1 when
 * entries after `after` were trimmed from the stream before anyone read
 * them (or, rarely, deleted: see the script). */
int store_since(Redis *r, const char *room, const char *after, unsigned limit,
                RedisReplyHandler cb, void *userdata);

/* Publishes a JSON array (serialized by the caller) on a channel with a
 * classic PUBLISH, which reaches every daemon (on a cluster, every node):
 * for STORE_EVENTS_CHANNEL. */
int store_publish(Redis *r, const char *channel, const char *payload, size_t len,
                  RedisReplyHandler cb, void *userdata);
/* The same on a room's channel with SPUBLISH, as the room's scripts do: on
 * a cluster it stays on the room's shard and reaches only the daemons
 * subscribed there (redis_ssubscribe()). -EINVAL for a malformed room id. */
int store_publish_room(Redis *r, const char *room, const char *payload, size_t len,
                       RedisReplyHandler cb, void *userdata);

int store_heartbeat(Redis *r, const char *daemon_id);
/* error: 0, or the first failure; reaped: how many daemons were forgotten. */
typedef void (*StoreReapHandler)(Redis *r, int error, unsigned reaped, void *userdata);
/* Takes back the presence of daemons whose heartbeat expired, or of this
 * one daemon when daemon_id is given (clean shutdown). Several round
 * trips: cb (may be NULL) runs once, when all are answered. */
int store_reap(Redis *r, const char *daemon_id, StoreReapHandler cb, void *userdata);

/* A script's reply as -errno: 0 for an answer; -ENOTCONN no reply (the
 * connection dropped); -ENOENT NOROOM; -EINVAL BADID; -ESRCH NOTFOUND;
 * -EPERM FORBIDDEN; -ENOSPC FULL; -EACCES NOTJOINED; -EIO any other error. */
int store_reply_error(const redisReply *reply);

/* A list of stream entries with their edited texts (same order, "" when
 * not edited), as the join, history and since scripts return them. */
typedef struct StoreEntries {
        const redisReply *entries;
        const redisReply *edits;
} StoreEntries;

size_t store_entries_count(const StoreEntries *l);
/* The i-th entry; -EBADMSG when it is malformed (skip it). */
int store_entries_get(const StoreEntries *l, size_t i, StoreEntry *ret);
/* The i-th entry's id alone, NULL when malformed. */
const char *store_entries_id(const StoreEntries *l, size_t i);

/* A user's read position in a room: read NULL when there is no marker. */
typedef struct StoreReadState {
        const char *read;
        unsigned unread, mentions;      /* capped at 999 */
} StoreReadState;

int store_parse_unread_reply(const redisReply *reply, StoreReadState *ret);

/* The join script's reply. Pointers refer into it. */
typedef struct StoreJoinReply {
        unsigned connections;           /* the user's connections in the room, over every daemon */
        StoreEntries history;           /* oldest first */
        bool complete;                  /* nothing between since and the history was trimmed */
        const char *tip;                /* the stream's newest id then, "0-0" when empty */
        bool has_read_state;            /* a version 2 join */
        StoreReadState read_state;
} StoreJoinReply;

typedef struct StoreHistoryReply {
        StoreEntries history;           /* newest first */
        bool complete;                  /* the stream's oldest entry is in it */
} StoreHistoryReply;

typedef struct StoreSinceReply {
        StoreEntries entries;           /* oldest first */
        bool more;                      /* entries follow these */
        bool gap;                       /* entries after `after` were trimmed before anyone read them */
        const char *last_id;            /* the newest id the stream ever gave, "0-0" for none: below
                                         * `after` when Redis came back from an older copy */
} StoreSinceReply;

/* Each: 0, a store_reply_error() code, or -EBADMSG for a reply of the
 * wrong shape. */
int store_parse_join_reply(const redisReply *reply, StoreJoinReply *ret);

/* The data's lineage: mc:epoch, random, written when Redis first serves
 * multichat. A daemon checks it on every connect: a Redis that has none
 * but had one before lost its data (restarted without persistence). */
#define STORE_EPOCH_MAX 64
typedef struct StoreEpochReply {
        const char *epoch;              /* the one now in force */
        bool lost;                      /* not the one the daemon knew */
        unsigned restored;              /* rooms put back from the daemon's cache */
} StoreEpochReply;

/* known: the epoch this daemon saw before, NULL at its first connect;
 * fresh: the one to write if there is none; rooms: n_rooms strings, pairs
 * of room id and the room's JSON as mc:rooms holds it. */
int store_epoch(Redis *r, const char *known, const char *fresh, char **rooms, size_t n_rooms,
                RedisReplyHandler cb, void *userdata);
int store_parse_epoch_reply(const redisReply *reply, StoreEpochReply *ret);
int store_parse_history_reply(const redisReply *reply, StoreHistoryReply *ret);
int store_parse_since_reply(const redisReply *reply, StoreSinceReply *ret);

/* The i-th user of a presence list [user, count, ...] (store_load_presence): 0, or -EBADMSG for a malformed pair (skip it); -ENOENT
 * past the end. */
int store_presence_get(const redisReply *presence, size_t i, const char **ret_user, unsigned *ret_count);

int store_parse_entry(const redisReply *entry, const redisReply *edited, StoreEntry *ret);
