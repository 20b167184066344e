/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the room registry, local membership, held frames and the presence cache. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/frame.h"
#include "basic/macro.h"
#include "chat/rooms.h"
#include "test/test.h"

static void registry_freep(RoomRegistry **reg) {
        room_registry_free(*reg);
}

static int sign(int x) {
        return x < 0 ? -1 : x > 0 ? 1 : 0;
}

static void test_id_compare(void) {
        ASSERT_INT_EQ(room_id_compare("1", "1"), 0);
        ASSERT_INT_EQ(sign(room_id_compare("2", "10")), -1);
        ASSERT_INT_EQ(sign(room_id_compare("10", "2")), 1);
        ASSERT_INT_EQ(sign(room_id_compare("10", "11")), -1);
        ASSERT_INT_EQ(sign(room_id_compare("99999999999999999999", "100")), 1);

        ASSERT_INT_EQ(message_id_compare("1-0", "1-0"), 0);
        ASSERT_INT_EQ(sign(message_id_compare("1-2", "1-10")), -1);
        ASSERT_INT_EQ(sign(message_id_compare("1-10", "1-2")), 1);
        ASSERT_INT_EQ(sign(message_id_compare("9-99", "10-0")), -1);
        ASSERT_INT_EQ(sign(message_id_compare("1700000000001-0", "1700000000000-5")), 1);
        ASSERT_INT_EQ(sign(message_id_compare("1700000000000-0", "1700000000000-1")), -1);
        /* Large stream ids. */
        ASSERT_INT_EQ(sign(message_id_compare("9999999999999999999-0", "9999999999999999998-9")), 1);
        ASSERT_INT_EQ(sign(message_id_compare("5-9999999999999999999", "5-1")), 1);
        ASSERT_INT_EQ(sign(message_id_compare("18446744073709551609-0", "1-0")), 1);
        /* A bare millisecond part counts as seq 0. */
        ASSERT_INT_EQ(message_id_compare("5", "5-0"), 0);
        ASSERT_INT_EQ(sign(message_id_compare("5", "5-1")), -1);
}

static void test_registry(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        Room *room = NULL, *r2 = NULL, **sorted;
        size_t n;

        ASSERT_OK(room_registry_new(&reg));
        ASSERT_INT_EQ(room_registry_count(reg), 0);
        ASSERT_NULL(room_registry_find(reg, "1"));
        sorted = room_registry_sorted(reg, &n);
        ASSERT_NOT_NULL(sorted);
        ASSERT_INT_EQ(n, 0);
        free(sorted);

        ASSERT_INT_EQ(room_registry_put(reg, "10", "Lobby", false, &room), 1);
        ASSERT_NOT_NULL(room);
        ASSERT_STREQ(room->id, "10");
        ASSERT_STREQ(room->title, "Lobby");
        ASSERT_FALSE(room->staff_only);
        ASSERT_INT_EQ(room->n_members, 0);
        ASSERT_INT_EQ(room->n_usernames, 0);
        ASSERT_INT_EQ(room_registry_put(reg, "2", "Staff", true, NULL), 1);
        ASSERT_INT_EQ(room_registry_put(reg, "9", "Lobby", false, NULL), 1);
        ASSERT_INT_EQ(room_registry_put(reg, "100", "Attic", false, NULL), 1);
        ASSERT_INT_EQ(room_registry_count(reg), 4);

        /* Updating keeps the same object (members point at it). */
        ASSERT_INT_EQ(room_registry_put(reg, "10", "Lobby 2", true, &r2), 0);
        ASSERT_TRUE(r2 == room);
        ASSERT_STREQ(room->title, "Lobby 2");
        ASSERT_TRUE(room->staff_only);
        ASSERT_INT_EQ(room_registry_count(reg), 4);
        ASSERT_INT_EQ(room_registry_put(reg, "10", "Lobby", false, NULL), 0);

        ASSERT_TRUE(room_registry_find(reg, "10") == room);
        ASSERT_STREQ(room_registry_find(reg, "2")->title, "Staff");
        ASSERT_STREQ(room_registry_find(reg, "9")->title, "Lobby");
        ASSERT_STREQ(room_registry_find(reg, "100")->title, "Attic");
        ASSERT_NULL(room_registry_find(reg, "1"));
        ASSERT_NULL(room_registry_find(reg, "1000"));
        ASSERT_NULL(room_registry_find(reg, ""));

        /* Ordered by title, then by numeric id. */
        sorted = room_registry_sorted(reg, &n);
        ASSERT_NOT_NULL(sorted);
        ASSERT_INT_EQ(n, 4);
        ASSERT_STREQ(sorted[0]->id, "100");
        ASSERT_STREQ(sorted[1]->id, "9");
        ASSERT_STREQ(sorted[2]->id, "10");
        ASSERT_STREQ(sorted[3]->id, "2");
        free(sorted);

        /* Ids longer than ROOM_ID_MAX are refused and change nothing. */
        {
                char longid[ROOM_ID_MAX + 2];

                memset(longid, '1', sizeof longid - 1);
                longid[sizeof longid - 1] = 0;
                ASSERT_ERROR(room_registry_put(reg, longid, "x", false, NULL), EINVAL);
                ASSERT_INT_EQ(room_registry_count(reg), 4);
                longid[ROOM_ID_MAX] = 0;
                ASSERT_INT_EQ(room_registry_put(reg, longid, "x", false, NULL), 1);
                ASSERT_NOT_NULL(room_registry_find(reg, longid));
                room_registry_remove(reg, room_registry_find(reg, longid));
        }

        room_registry_remove(reg, room_registry_find(reg, "9"));
        ASSERT_NULL(room_registry_find(reg, "9"));
        ASSERT_INT_EQ(room_registry_count(reg), 3);
        ASSERT_TRUE(room_registry_find(reg, "10") == room);
        ASSERT_NOT_NULL(room_registry_find(reg, "2"));
        ASSERT_NOT_NULL(room_registry_find(reg, "100"));
}

static void test_registry_many(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        char id[32];

        ASSERT_OK(room_registry_new(&reg));
        /* Inserted in a scrambled order, past several reallocations. */
        for (unsigned i = 0; i < 1000; i++) {
                unsigned k = (i * 7919) % 1000 + 1;

                snprintf(id, sizeof id, "%u", k);
                ASSERT_INT_EQ(room_registry_put(reg, id, id, false, NULL), 1);
        }
        ASSERT_INT_EQ(room_registry_count(reg), 1000);
        for (unsigned k = 1; k <= 1000; k++) {
                Room *room;

                snprintf(id, sizeof id, "%u", k);
                room = room_registry_find(reg, id);
                ASSERT_NOT_NULL(room);
                ASSERT_STREQ(room->id, id);
        }
        ASSERT_NULL(room_registry_find(reg, "0"));
        ASSERT_NULL(room_registry_find(reg, "1001"));

        /* Remove the odd ones. */
        for (unsigned k = 1; k <= 1000; k += 2) {
                snprintf(id, sizeof id, "%u", k);
                room_registry_remove(reg, room_registry_find(reg, id));
        }
        ASSERT_INT_EQ(room_registry_count(reg), 500);
        for (unsigned k = 1; k <= 1000; k++) {
                snprintf(id, sizeof id, "%u", k);
                ASSERT_INT_EQ(room_registry_find(reg, id) != NULL, k % 2 == 0);
        }
}

static void test_sync(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        char id[16];
        Room *room;
        unsigned n_removed = 0;

        ASSERT_OK(room_registry_new(&reg));
        for (unsigned k = 1; k <= 10; k++) {
                snprintf(id, sizeof id, "%u", k);
                ASSERT_OK(room_registry_put(reg, id, "t", false, NULL));
        }

        /* Nothing unseen outside a sync (every put marks seen). */
        ASSERT_NULL(room_registry_next_unseen(reg));

        /* Redis now has 2, 3, 5, 7 and a new 11. */
        room_registry_begin_sync(reg);
        ASSERT_INT_EQ(room_registry_put(reg, "2", "t", false, NULL), 0);
        ASSERT_INT_EQ(room_registry_put(reg, "3", "t", false, NULL), 0);
        ASSERT_INT_EQ(room_registry_put(reg, "5", "t", false, NULL), 0);
        ASSERT_INT_EQ(room_registry_put(reg, "7", "t", false, NULL), 0);
        ASSERT_INT_EQ(room_registry_put(reg, "11", "t", false, NULL), 1);

        /* Removing each unseen room as it is returned must not skip any. */
        while ((room = room_registry_next_unseen(reg))) {
                ASSERT_FALSE(streq(room->id, "2") || streq(room->id, "3") || streq(room->id, "5") ||
                             streq(room->id, "7") || streq(room->id, "11"));
                room_registry_remove(reg, room);
                n_removed++;
                ASSERT_TRUE(n_removed <= 6);
        }
        ASSERT_INT_EQ(n_removed, 6);
        ASSERT_INT_EQ(room_registry_count(reg), 5);
        ASSERT_NOT_NULL(room_registry_find(reg, "2"));
        ASSERT_NOT_NULL(room_registry_find(reg, "3"));
        ASSERT_NOT_NULL(room_registry_find(reg, "5"));
        ASSERT_NOT_NULL(room_registry_find(reg, "7"));
        ASSERT_NOT_NULL(room_registry_find(reg, "11"));

        /* A sync in which nothing was seen empties it; without removal the
         * cursor still visits each room once. */
        room_registry_begin_sync(reg);
        n_removed = 0;
        while ((room = room_registry_next_unseen(reg)))
                n_removed++;
        ASSERT_INT_EQ(n_removed, 5);
        room_registry_begin_sync(reg);
        while ((room = room_registry_next_unseen(reg)))
                room_registry_remove(reg, room);
        ASSERT_INT_EQ(room_registry_count(reg), 0);
}

static void test_members(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        Membership *mb[20];
        Room *room;

        ASSERT_OK(room_registry_new(&reg));
        ASSERT_OK(room_registry_put(reg, "1", "Lobby", false, &room));

        for (unsigned i = 0; i < ELEMENTSOF(mb); i++) {
                ASSERT_OK(room_add_member(room, (ChatMember *) (uintptr_t) (0x1000 + i), &mb[i]));
                ASSERT_TRUE(mb[i]->room == room);
                ASSERT_TRUE(mb[i]->member == (ChatMember *) (uintptr_t) (0x1000 + i));
                ASSERT_TRUE(mb[i]->pending);
                ASSERT_INT_EQ(mb[i]->n_held, 0);
                ASSERT_FALSE(mb[i]->held_overflow);
        }
        ASSERT_INT_EQ(room->n_members, ELEMENTSOF(mb));

        /* Remove from the middle, the end and the front; every remaining
         * member must still know its position. */
        room_remove_member(mb[5]);
        mb[5] = NULL;
        room_remove_member(mb[19]);
        mb[19] = NULL;
        room_remove_member(mb[0]);
        mb[0] = NULL;
        room_remove_member(NULL);
        ASSERT_INT_EQ(room->n_members, ELEMENTSOF(mb) - 3);
        for (size_t i = 0; i < room->n_members; i++) {
                ASSERT_TRUE(room->members[i]->room == room);
                ASSERT_INT_EQ(room->members[i]->index_in_room, i);
        }
        for (unsigned i = 0; i < ELEMENTSOF(mb); i++) {
                bool found = false;

                if (!mb[i])
                        continue;
                for (size_t j = 0; j < room->n_members; j++)
                        found = found || room->members[j] == mb[i];
                ASSERT_TRUE(found);
        }

        /* Remove the rest, always the first one. */
        while (room->n_members > 0) {
                room_remove_member(room->members[0]);
                for (size_t i = 0; i < room->n_members; i++)
                        ASSERT_INT_EQ(room->members[i]->index_in_room, i);
        }

        /* A room can be removed from the registry after its members left. */
        room_registry_remove(reg, room);
        ASSERT_INT_EQ(room_registry_count(reg), 0);
}

static void test_hold(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        Membership *mb, *other;
        Frame *f = NULL, *g = NULL;
        Room *room;

        ASSERT_OK(room_registry_new(&reg));
        ASSERT_OK(room_registry_put(reg, "1", "Lobby", false, &room));
        ASSERT_OK(room_add_member(room, NULL, &mb));
        ASSERT_OK(room_add_member(room, NULL, &other));
        ASSERT_OK(frame_new(&f, "{}", 2));
        ASSERT_OK(frame_new(&g, "{}", 2));

        /* Held frames hold references, the id is kept ("" for none). */
        ASSERT_TRUE(membership_hold(mb, f, "1700000000000-0"));
        ASSERT_TRUE(membership_hold(mb, g, NULL));
        ASSERT_TRUE(membership_hold(other, f, "1700000000000-0"));
        ASSERT_INT_EQ(f->n_ref, 3);
        ASSERT_INT_EQ(g->n_ref, 2);
        ASSERT_INT_EQ(mb->n_held, 2);
        ASSERT_TRUE(mb->held[0].frame == f);
        ASSERT_STREQ(mb->held[0].id, "1700000000000-0");
        ASSERT_TRUE(mb->held[1].frame == g);
        ASSERT_STREQ(mb->held[1].id, "");

        membership_drop_held(mb);
        ASSERT_INT_EQ(mb->n_held, 0);
        ASSERT_INT_EQ(f->n_ref, 2);
        ASSERT_INT_EQ(g->n_ref, 1);
        membership_drop_held(mb);
        ASSERT_INT_EQ(f->n_ref, 2);

        /* Bounded: the 65th frame is refused and marks the overflow. */
        for (unsigned i = 0; i < MEMBERSHIP_HELD_MAX; i++)
                ASSERT_TRUE(membership_hold(mb, g, "1-1"));
        ASSERT_INT_EQ(g->n_ref, 1 + MEMBERSHIP_HELD_MAX);
        ASSERT_FALSE(mb->held_overflow);
        ASSERT_FALSE(membership_hold(mb, g, "1-2"));
        ASSERT_TRUE(mb->held_overflow);
        ASSERT_INT_EQ(mb->n_held, MEMBERSHIP_HELD_MAX);
        ASSERT_INT_EQ(g->n_ref, 1 + MEMBERSHIP_HELD_MAX);

        /* Leaving drops what was held. */
        room_remove_member(mb);
        ASSERT_INT_EQ(g->n_ref, 1);
        ASSERT_INT_EQ(f->n_ref, 2);
        room_remove_member(other);
        ASSERT_INT_EQ(f->n_ref, 1);

        /* An over-long id is truncated, never overflows. */
        ASSERT_OK(room_add_member(room, NULL, &mb));
        {
                char longid[200];

                memset(longid, '7', sizeof longid - 1);
                longid[sizeof longid - 1] = 0;
                ASSERT_TRUE(membership_hold(mb, f, longid));
                ASSERT_INT_EQ(strlen(mb->held[0].id), MESSAGE_ID_MAX);
        }
        room_remove_member(mb);

        frame_unref(f);
        frame_unref(g);
}

static void test_presence(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        Room *room, *other;
        char name[32];

        ASSERT_OK(room_registry_new(&reg));
        ASSERT_OK(room_registry_put(reg, "1", "Lobby", false, &room));
        ASSERT_OK(room_registry_put(reg, "2", "Other", false, &other));

        ASSERT_FALSE(room_has_user(room, "alice"));
        ASSERT_INT_EQ(room_presence_set(room, "alice", 0), 0);     /* absent stays absent */
        ASSERT_INT_EQ(room->n_usernames, 0);

        ASSERT_INT_EQ(room_presence_set(room, "alice", 1), 0);
        ASSERT_TRUE(room_has_user(room, "alice"));
        ASSERT_FALSE(room_has_user(other, "alice"));
        ASSERT_INT_EQ(room_presence_set(room, "alice", 3), 1);
        ASSERT_INT_EQ(room_presence_set(room, "bob", 2), 0);
        ASSERT_INT_EQ(room_presence_set(room, "carol", 1), 0);
        ASSERT_INT_EQ(room->n_usernames, 3);
        ASSERT_FALSE(room_has_user(room, "Alice"));
        ASSERT_FALSE(room_has_user(room, "alic"));

        /* 0 removes and returns the previous count. */
        ASSERT_INT_EQ(room_presence_set(room, "alice", 0), 3);
        ASSERT_FALSE(room_has_user(room, "alice"));
        ASSERT_TRUE(room_has_user(room, "bob"));
        ASSERT_TRUE(room_has_user(room, "carol"));
        ASSERT_INT_EQ(room->n_usernames, 2);
        for (size_t i = 0; i < room->n_usernames; i++) {
                if (streq(room->usernames[i], "bob"))
                        ASSERT_INT_EQ(room->username_counts[i], 2);
                else {
                        ASSERT_STREQ(room->usernames[i], "carol");
                        ASSERT_INT_EQ(room->username_counts[i], 1);
                }
        }
        ASSERT_INT_EQ(room_presence_set(room, "bob", 0), 2);
        ASSERT_INT_EQ(room_presence_set(room, "carol", 0), 1);
        ASSERT_INT_EQ(room->n_usernames, 0);
        ASSERT_INT_EQ(room_presence_set(room, "alice", 5), 0);
        ASSERT_INT_EQ(room_presence_set(room, "alice", 5), 5);

        /* Many users; clear forgets them all and the room stays usable. */
        for (unsigned i = 0; i < 500; i++) {
                snprintf(name, sizeof name, "user%u", i);
                ASSERT_INT_EQ(room_presence_set(other, name, i + 1), 0);
        }
        ASSERT_INT_EQ(other->n_usernames, 500);
        for (unsigned i = 0; i < 500; i += 3) {
                snprintf(name, sizeof name, "user%u", i);
                ASSERT_INT_EQ(room_presence_set(other, name, 0), (int) i + 1);
        }
        for (unsigned i = 0; i < 500; i++) {
                snprintf(name, sizeof name, "user%u", i);
                ASSERT_INT_EQ(room_has_user(other, name), i % 3 != 0);
        }
        room_presence_clear(other);
        ASSERT_INT_EQ(other->n_usernames, 0);
        ASSERT_FALSE(room_has_user(other, "user1"));
        ASSERT_INT_EQ(room_presence_set(other, "user1", 1), 0);
        ASSERT_TRUE(room_has_user(other, "user1"));
        /* The registry frees rooms with presence left in them (ASan: no leak). */
}

/* Pages of PROTOCOL_MEMBERS_PAGE names in strcmp() order, each after the
 * cursor, whatever order the names came in or the cursor names. */
static void test_presence_pages(void) {
        _cleanup_(registry_freep) RoomRegistry *reg = NULL;
        const unsigned n = 2 * PROTOCOL_MEMBERS_PAGE + 37;
        char name[32], after[32] = "";
        unsigned seen = 0, pages = 0;
        MemberPage page;
        Room *room;

        ASSERT_OK(room_registry_new(&reg));
        ASSERT_OK(room_registry_put(reg, "1", "Lobby", false, &room));

        page = room_presence_page(room, NULL);
        ASSERT_INT_EQ(page.n, 0);
        ASSERT_INT_EQ(page.total, 0);
        ASSERT_FALSE(page.more);
        ASSERT_NULL(page.names);

        /* Inserted in a scrambled order (7 is coprime with n). */
        for (unsigned i = 0; i < n; i++) {
                snprintf(name, sizeof name, "u%05u", (i * 7) % n);
                ASSERT_INT_EQ(room_presence_set(room, name, 1), 0);
        }
        for (size_t i = 1; i < room->n_usernames; i++)
                ASSERT_TRUE(strcmp(room->usernames[i - 1], room->usernames[i]) < 0);
        ASSERT_NULL(room->usernames[room->n_usernames]);

        do {
                page = room_presence_page(room, after[0] ? after : NULL);
                ASSERT_INT_EQ(page.total, n);
                ASSERT_TRUE(page.n <= PROTOCOL_MEMBERS_PAGE);
                for (size_t i = 0; i < page.n; i++) {
                        snprintf(name, sizeof name, "u%05u", seen++);
                        ASSERT_STREQ(page.names[i], name);
                }
                if (page.n > 0)
                        snprintf(after, sizeof after, "%s", page.names[page.n - 1]);
                ASSERT_TRUE(++pages <= 3);
        } while (page.more);
        ASSERT_INT_EQ(seen, n);
        ASSERT_INT_EQ(pages, 3);

        /* A cursor that names nobody present starts at the next name. */
        page = room_presence_page(room, "u00099x");
        ASSERT_STREQ(page.names[0], "u00100");
        page = room_presence_page(room, "");
        ASSERT_STREQ(page.names[0], "u00000");
        page = room_presence_page(room, "zzz");
        ASSERT_INT_EQ(page.n, 0);
        ASSERT_FALSE(page.more);
        page = room_presence_page(room, "u00236");
        ASSERT_INT_EQ(page.n, 0);
        page = room_presence_page(room, "u00235");
        ASSERT_INT_EQ(page.n, 1);
        ASSERT_STREQ(page.names[0], "u00236");
        ASSERT_FALSE(page.more);

        /* Removing from the middle keeps the order. */
        ASSERT_INT_EQ(room_presence_set(room, "u00100", 0), 1);
        page = room_presence_page(room, "u00099");
        ASSERT_STREQ(page.names[0], "u00101");
        ASSERT_INT_EQ(page.total, n - 1);
}

/* Redis stream id parts go up to UINT64_MAX: the largest values compare
 * as numbers too, not as a refused (zero) part. */
static void test_id_compare_u64_max(void) {
        ASSERT_INT_EQ(sign(message_id_compare("18446744073709551615-0", "1-0")), 1);
        ASSERT_INT_EQ(sign(message_id_compare("18446744073709551614-0", "18446744073709551613-9")), 1);
        ASSERT_INT_EQ(sign(message_id_compare("5-18446744073709551615", "5-1")), 1);
}

int main(void) {
        test_id_compare();
        test_registry();
        test_registry_many();
        test_presence_pages();
        test_sync();
        test_members();
        test_hold();
        test_presence();
        test_id_compare_u64_max();
        return 0;
}
