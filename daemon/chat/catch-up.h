/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A room's replay of its stream after a (re)subscribe, so that members get every message once, in order. */
#pragma once

#include <stdbool.h>

#include "wire/events.h"
#include "wire/frame.h"
#include "wire/protocol.h"

typedef struct Membership Membership;
typedef struct Redis Redis;
typedef struct Room Room;
typedef struct RoomCatchUp RoomCatchUp;

/* Messages per page of a replay. */
#define CATCH_UP_PAGE 1000
/* Live events a room holds back while it replays its stream; messages
 * beyond are read from the stream instead. */
#define CATCH_UP_HELD_MAX 4096

/* What a replay needs of the chat; ud is given to catch_up_begin(). */
typedef struct CatchUpOps {
        /* The room by id, NULL when it is gone. */
        Room *(*find_room)(void *ud, const char *id);
        /* A replayed message, or a held live one, to the members that lack
         * it (catch_up_member_has()); the room's last id moves on. */
        void (*deliver)(void *ud, Room *room, const ChatMessage *msg, const RoomCatchUp *cu);
        /* A held live event that is not a new message, handled as if live. */
        void (*release)(void *ud, Room *room, const Event *ev);
        /* A frame to one member's connection. */
        void (*send)(void *ud, Membership *mb, Frame *f);
} CatchUpOps;

/* Starts holding live events for the room (a (re)subscribe). started:
 * room->last_id is where the replay starts; otherwise the first join
 * reply tells (catch_up_joined()). No-op when one runs already. */
void catch_up_begin(Room *room, Redis *redis, const CatchUpOps *ops, void *ud, bool started);
/* The room lost its last member: nobody to replay to. */
void catch_up_end(Room *room);
/* A join's reply gave its member the room's messages up to tip. */
void catch_up_joined(Room *room, Membership *mb, const char *tip);
/* After a resubscribe: what was published meanwhile is in the stream. */
void catch_up_resume(Room *room, Redis *redis, const CatchUpOps *ops, void *ud);

/* A live event while the room replays: held until the replay is done. */
void catch_up_hold(RoomCatchUp *cu, const Event *ev);
/* Whether the member's join reply held the message already. */
bool catch_up_member_has(const RoomCatchUp *cu, const Membership *mb, const char *id);
