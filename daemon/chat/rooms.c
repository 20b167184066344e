/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The room registry (a cache of the rooms in Redis) and local membership: which connection is in which room. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/frame.h"
#include "basic/macro.h"
#include "chat/rooms.h"

typedef struct RoomSlot {
        Room *room;
        bool seen;
} RoomSlot;

/* Sorted by numeric id: lookups are a binary search; rooms change rarely. */
struct RoomRegistry {
        RoomSlot *slots;
        size_t n_slots;
        size_t n_allocated;
        size_t sync_cursor;
};

int room_id_compare(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);

        if (la != lb)
                return la < lb ? -1 : 1;
        return strcmp(a, b);
}

static int parse_id_part(const char *s, const char **end, unsigned long long *ret) {
        unsigned long long v = 0;
        const char *p = s;

        for (; *p >= '0' && *p <= '9'; p++) {
                unsigned d = (unsigned) (*p - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        if (p == s)
                return -EINVAL;
        *end = p;
        *ret = v;
        return 0;
}

int message_id_compare(const char *a, const char *b) {
        unsigned long long ams = 0, aseq = 0, bms = 0, bseq = 0;
        const char *e;

        if (parse_id_part(a, &e, &ams) >= 0 && *e == '-')
                (void) parse_id_part(e + 1, &e, &aseq);
        if (parse_id_part(b, &e, &bms) >= 0 && *e == '-')
                (void) parse_id_part(e + 1, &e, &bseq);
        if (ams != bms)
                return ams < bms ? -1 : 1;
        if (aseq != bseq)
                return aseq < bseq ? -1 : 1;
        return 0;
}

uint64_t message_id_ms(const char *id) {
        return strtoull(id, NULL, 10);
}

int room_registry_new(RoomRegistry **ret) {
        RoomRegistry *reg = calloc(1, sizeof *reg);

        if (!reg)
                return -ENOMEM;
        *ret = reg;
        return 0;
}

static Room *room_free(Room *room) {
        if (!room)
                return NULL;
        free(room->title);
        free(room->members);
        room_presence_clear(room);
        free(room->usernames);
        free(room->username_counts);
        return mfree(room);
}

RoomRegistry *room_registry_free(RoomRegistry *reg) {
        if (!reg)
                return NULL;
        for (size_t i = 0; i < reg->n_slots; i++)
                room_free(reg->slots[i].room);
        free(reg->slots);
        return mfree(reg);
}

/* Index of the element of the sorted array base[n] that compares equal to
 * key, or where it would be inserted; *ret_found tells which. */
static size_t bisect(const void *base, size_t n, size_t size, const char *key,
                     int (*compare)(const void *element, const char *key), bool *ret_found) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = compare((const char *) base + mid * size, key);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

static int slot_compare(const void *element, const char *id) {
        return room_id_compare(((const RoomSlot *) element)->room->id, id);
}

/* Index of the room with this id, or where it would be inserted. */
static size_t room_registry_bisect(RoomRegistry *reg, const char *id, bool *ret_found) {
        return bisect(reg->slots, reg->n_slots, sizeof *reg->slots, id, slot_compare, ret_found);
}

Room *room_registry_find(RoomRegistry *reg, const char *id) {
        bool found;
        size_t i = room_registry_bisect(reg, id, &found);

        return found ? reg->slots[i].room : NULL;
}

size_t room_registry_count(RoomRegistry *reg) {
        return reg->n_slots;
}

static int room_title_compare(const void *a, const void *b) {
        const Room *x = *(Room *const *) a, *y = *(Room *const *) b;
        int c = strcmp(x->title, y->title);

        return c != 0 ? c : room_id_compare(x->id, y->id);
}

Room **room_registry_sorted(RoomRegistry *reg, size_t *ret_n) {
        Room **rooms = malloc(sizeof(Room *) * (reg->n_slots ?: 1));

        if (!rooms)
                return NULL;
        for (size_t i = 0; i < reg->n_slots; i++)
                rooms[i] = reg->slots[i].room;
        qsort(rooms, reg->n_slots, sizeof(Room *), room_title_compare);
        *ret_n = reg->n_slots;
        return rooms;
}

int room_registry_put(RoomRegistry *reg, const char *id, const char *title, bool staff_only, Room **ret) {
        bool found;
        size_t i = room_registry_bisect(reg, id, &found);
        char *t;
        Room *room;

        if (strlen(id) > ROOM_ID_MAX)
                return -EINVAL;
        t = strdup(title);
        if (!t)
                return -ENOMEM;

        if (found) {
                room = reg->slots[i].room;
                free(room->title);
                room->title = t;
                room->staff_only = staff_only;
                reg->slots[i].seen = true;
                if (ret)
                        *ret = room;
                return 0;
        }

        if (!GREEDY_REALLOC(reg->slots, reg->n_allocated, reg->n_slots + 1)) {
                free(t);
                return -ENOMEM;
        }
        room = calloc(1, sizeof *room);
        if (!room) {
                free(t);
                return -ENOMEM;
        }
        strcpy(room->id, id);
        room->title = t;
        room->staff_only = staff_only;

        memmove(reg->slots + i + 1, reg->slots + i, (reg->n_slots - i) * sizeof *reg->slots);
        reg->slots[i] = (RoomSlot) { .room = room, .seen = true };
        reg->n_slots++;
        if (ret)
                *ret = room;
        return 1;
}

void room_registry_remove(RoomRegistry *reg, Room *room) {
        bool found;
        size_t i = room_registry_bisect(reg, room->id, &found);

        if (!found)
                return;
        memmove(reg->slots + i, reg->slots + i + 1, (reg->n_slots - i - 1) * sizeof *reg->slots);
        reg->n_slots--;
        if (reg->sync_cursor > i)
                reg->sync_cursor--;
        room_free(room);
}

void room_registry_begin_sync(RoomRegistry *reg) {
        for (size_t i = 0; i < reg->n_slots; i++)
                reg->slots[i].seen = false;
        reg->sync_cursor = 0;
}

Room *room_registry_next_unseen(RoomRegistry *reg) {
        for (; reg->sync_cursor < reg->n_slots; reg->sync_cursor++)
                if (!reg->slots[reg->sync_cursor].seen)
                        return reg->slots[reg->sync_cursor++].room;
        return NULL;
}

int room_add_member(Room *room, ChatMember *member, Membership **ret) {
        Membership *mb;

        if (!GREEDY_REALLOC(room->members, room->n_allocated, room->n_members + 1))
                return -ENOMEM;
        mb = calloc(1, sizeof *mb);
        if (!mb)
                return -ENOMEM;
        mb->room = room;
        mb->member = member;
        mb->pending = true;
        mb->index_in_room = room->n_members;
        room->members[room->n_members++] = mb;
        *ret = mb;
        return 0;
}

void room_remove_member(Membership *mb) {
        Room *room;
        size_t i;

        if (!mb)
                return;
        room = mb->room;
        i = mb->index_in_room;
        /* Swap-remove: O(1), order of members does not matter. */
        room->members[i] = room->members[--room->n_members];
        room->members[i]->index_in_room = i;
        membership_drop_held(mb);
        free(mb);
}

bool membership_hold(Membership *mb, Frame *f, const char *id) {
        HeldFrame *h;

        if (mb->n_held >= MEMBERSHIP_HELD_MAX) {
                mb->held_overflow = true;
                return false;
        }
        h = &mb->held[mb->n_held++];
        h->frame = frame_ref(f);
        snprintf(h->id, sizeof h->id, "%s", id ?: "");
        return true;
}

void membership_drop_held(Membership *mb) {
        for (unsigned i = 0; i < mb->n_held; i++)
                frame_unref(mb->held[i].frame);
        mb->n_held = 0;
}

static int username_compare(const void *element, const char *username) {
        return strcmp(*(char *const *) element, username);
}

/* The first index whose username is not below `username`; *ret_found
 * tells whether it is that username. Usernames are kept sorted so that a
 * presence event costs O(log n) in a room of thousands, and a page of
 * members is a contiguous slice. */
static size_t room_find_user(const Room *room, const char *username, bool *ret_found) {
        return bisect(room->usernames, room->n_usernames, sizeof *room->usernames, username, username_compare, ret_found);
}

static int room_presence_reserve(Room *room) {
        size_t want = room->n_usernames + 1;

        if (want <= room->n_usernames_allocated)
                return 0;
        want = MAX(want * 2, (size_t) 8);
        char **u = realloc(room->usernames, (want + 1) * sizeof *u);
        if (!u)
                return -ENOMEM;
        room->usernames = u;
        unsigned *c = realloc(room->username_counts, want * sizeof *c);
        if (!c)
                return -ENOMEM;
        room->username_counts = c;
        room->n_usernames_allocated = want;
        return 0;
}

int room_presence_set(Room *room, const char *username, unsigned count) {
        bool found;
        size_t i = room_find_user(room, username, &found);
        unsigned previous;
        char *copy;

        if (!found) {
                if (count == 0)
                        return 0;
                if (room_presence_reserve(room) < 0)
                        return -ENOMEM;
                copy = strdup(username);
                if (!copy)
                        return -ENOMEM;
                memmove(room->usernames + i + 1, room->usernames + i, (room->n_usernames - i) * sizeof *room->usernames);
                memmove(room->username_counts + i + 1, room->username_counts + i,
                        (room->n_usernames - i) * sizeof *room->username_counts);
                room->usernames[i] = copy;
                room->username_counts[i] = count;
                room->n_usernames++;
                room->usernames[room->n_usernames] = NULL;
                return 0;
        }

        previous = room->username_counts[i];
        if (count == 0) {
                free(room->usernames[i]);
                room->n_usernames--;
                memmove(room->usernames + i, room->usernames + i + 1, (room->n_usernames - i) * sizeof *room->usernames);
                memmove(room->username_counts + i, room->username_counts + i + 1,
                        (room->n_usernames - i) * sizeof *room->username_counts);
                room->usernames[room->n_usernames] = NULL;
        } else
                room->username_counts[i] = count;
        return (int) previous;
}

void room_presence_clear(Room *room) {
        for (size_t i = 0; i < room->n_usernames; i++)
                free(room->usernames[i]);
        room->n_usernames = 0;
        if (room->usernames)
                room->usernames[0] = NULL;
}

MemberPage room_presence_page(const Room *room, const char *after) {
        bool found = false;
        size_t i = 0, n;

        if (after)
                i = room_find_user(room, after, &found) + found;
        n = MIN(room->n_usernames - i, (size_t) PROTOCOL_MEMBERS_PAGE);
        return (MemberPage) {
                .names = n > 0 ? room->usernames + i : NULL,
                .n = n,
                .total = room->n_usernames,
                .more = i + n < room->n_usernames,
        };
}

bool room_has_user(Room *room, const char *username) {
        bool found;

        (void) room_find_user(room, username, &found);
        return found;
}
