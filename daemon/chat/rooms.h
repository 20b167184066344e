/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The room registry (a cache of the rooms in Redis) and local membership: which connection is in which room. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/protocol.h"

typedef struct ChatMember ChatMember;
typedef struct Frame Frame;
typedef struct Room Room;
typedef struct RoomCatchUp RoomCatchUp;
typedef struct RoomRegistry RoomRegistry;

/* A join waits for Redis (presence, history); live messages that arrive
 * meanwhile are held so that none falls between history and live. */
#define MEMBERSHIP_HELD_MAX 64

typedef struct HeldFrame {
        Frame *frame;
        char id[MESSAGE_ID_MAX + 1];  /* message id, "" for events without one */
} HeldFrame;

typedef struct Membership {
        Room *room;
        ChatMember *member;
        size_t index_in_room;         /* position in room->members */
        bool pending;
        HeldFrame held[MEMBERSHIP_HELD_MAX];
        unsigned n_held;
        bool held_overflow;
} Membership;

struct Room {
        char id[ROOM_ID_MAX + 1];
        char *title;
        bool staff_only;

        Membership **members;         /* local connections in this room */
        size_t n_members;
        size_t n_allocated;

        /* Usernames present across every daemon, sorted by strcmp()
         * (NULL-terminated, or NULL when none was ever present), with their
         * connection counts, kept from Redis presence events. */
        char **usernames;
        unsigned *username_counts;
        size_t n_usernames;
        size_t n_usernames_allocated;
        bool count_changed;           /* a member count update is due (a large room) */
        uint64_t count_not_before;    /* CLOCK_MONOTONIC µs: the next update waits till then */

        bool subscribed;
        /* The replay of the room's stream after a (re)subscribe, NULL
         * while live. It ends before the room loses its last member, so
         * before the room can be removed. */
        RoomCatchUp *catch_up;
        char last_id[MESSAGE_ID_MAX + 1];   /* newest message delivered here */
};

int room_registry_new(RoomRegistry **ret);
RoomRegistry *room_registry_free(RoomRegistry *reg);

Room *room_registry_find(RoomRegistry *reg, const char *id);
size_t room_registry_count(RoomRegistry *reg);
/* Rooms ordered by title (then id), as clients list them. */
Room **room_registry_sorted(RoomRegistry *reg, size_t *ret_n);

/* Inserts or updates; returns 1 when the room is new, 0 when it existed. */
int room_registry_put(RoomRegistry *reg, const char *id, const char *title, bool staff_only, Room **ret);
/* Removes a room; its memberships must have been dropped first. */
void room_registry_remove(RoomRegistry *reg, Room *room);
/* Marks every room unseen; room_registry_put marks seen; then the caller
 * removes what is still unseen. */
void room_registry_begin_sync(RoomRegistry *reg);
Room *room_registry_next_unseen(RoomRegistry *reg);

int room_add_member(Room *room, ChatMember *member, Membership **ret);
void room_remove_member(Membership *mb);

/* Presence across daemons: sets how many connections the user has in the
 * room (0 removes); returns the previous count. */
int room_presence_set(Room *room, const char *username, unsigned count);
void room_presence_clear(Room *room);
bool room_has_user(Room *room, const char *username);
/* The first PROTOCOL_MEMBERS_PAGE present usernames after `after` (NULL:
 * from the first), in strcmp() order. Valid until presence changes. */
MemberPage room_presence_page(const Room *room, const char *after);

/* Appends a frame to a pending membership's hold; false when full. */
bool membership_hold(Membership *mb, Frame *f, const char *id);
void membership_drop_held(Membership *mb);

/* Room ids compare as numbers, and stream ids as (ms, seq) pairs. */
int room_id_compare(const char *a, const char *b);
int message_id_compare(const char *a, const char *b);
/* A message id's milliseconds: Redis's clock when it was stored. */
uint64_t message_id_ms(const char *id);
