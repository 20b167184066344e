/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A room's replay of its stream after a (re)subscribe, so that members get every message once, in order. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "chat/catch-up.h"
#include "chat/rooms.h"
#include "redis/redis.h"
#include "store/store.h"

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
        Redis *redis;
        const CatchUpOps *ops;
        void *ud;
        char room[ROOM_ID_MAX + 1];
        bool started;           /* room->last_id is where the replay stands */
        bool in_flight;         /* a barrier or a page request is pending */
        bool again;             /* read once more after the page in flight, even if it is the last */
        bool lost;              /* dropped held events that the stream does not keep */
        bool told;              /* members were told of a gap */
        bool ended;             /* the room let go of it: a reply still pending finds nothing */
        Event *held;
        size_t n_held, n_held_allocated;
        CatchUpMark *marks;
        size_t n_marks, n_marks_allocated;
};

static RoomCatchUp *catch_up_ref(RoomCatchUp *cu) {
        cu->n_ref++;
        return cu;
}

static void catch_up_unref(RoomCatchUp *cu) {
        if (!cu || --cu->n_ref > 0)
                return;
        for (size_t i = 0; i < cu->n_held; i++)
                event_done(&cu->held[i]);
        free(cu->held);
        free(cu->marks);
        free(cu);
}

/* The room this replay is for; NULL when it is gone or has moved on (lost
 * its members, or replays anew). */
static Room *catch_up_room(RoomCatchUp *cu) {
        Room *room;

        /* Ended: the chat (cu->ud) may be gone, as at shutdown, when the
         * Redis client fails the requests it still holds. */
        if (cu->ended)
                return NULL;
        room = cu->ops->find_room(cu->ud, cu->room);

        return room && room->catch_up == cu ? room : NULL;
}

void catch_up_begin(Room *room, Redis *redis, const CatchUpOps *ops, void *ud, bool started) {
        RoomCatchUp *cu;

        if (room->catch_up)
                return;
        cu = calloc(1, sizeof *cu);
        if (!cu) {
                log_error("Out of memory: room %s cannot replay what its subscription misses.", room->id);
                return;
        }
        cu->n_ref = 1;
        cu->redis = redis;
        cu->ops = ops;
        cu->ud = ud;
        cu->started = started;
        strcpy(cu->room, room->id);
        room->catch_up = cu;
}

void catch_up_end(Room *room) {
        if (room->catch_up)
                room->catch_up->ended = true;
        catch_up_unref(TAKE_PTR(room->catch_up));
}

void catch_up_hold(RoomCatchUp *cu, const Event *ev) {
        if (cu->n_held >= CATCH_UP_HELD_MAX || !GREEDY_REALLOC(cu->held, cu->n_held_allocated, cu->n_held + 1)) {
                /* A message is in the stream: the replay reads on instead.
                 * Typing hints may go; anything else is missed, and
                 * members are told. */
                if (ev->kind == EVENT_MESSAGE)
                        cu->again = true;
                else if (ev->kind != EVENT_TYPING)
                        cu->lost = true;
                return;
        }
        event_copy(&cu->held[cu->n_held++], ev);
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
                /* Without a mark the member may get a message twice, never miss one. */
                if (!GREEDY_REALLOC(cu->marks, cu->n_marks_allocated, cu->n_marks + 1))
                        return;
                memmove(cu->marks + i + 1, cu->marks + i, (cu->n_marks - i) * sizeof *cu->marks);
                cu->n_marks++;
                cu->marks[i].mb = mb;
        }
        snprintf(cu->marks[i].id, sizeof cu->marks[i].id, "%s", id);
}

bool catch_up_member_has(const RoomCatchUp *cu, const Membership *mb, const char *id) {
        const CatchUpMark *mark = catch_up_mark(cu, mb);

        return id && mark && message_id_compare(id, mark->id) <= 0;
}

/* Messages after a member's position are gone from the stream: it is told
 * the way a join with "since" tells, "complete": false. first: the oldest
 * message the stream still has (NULL if unknown); members with it already
 * lost nothing. */
static void catch_up_tell_gap(Room *room, RoomCatchUp *cu, const char *first) {
        _cleanup_(frame_unrefp) Frame *f = NULL;
        MemberPage page = room_presence_page(room, NULL);
        size_t n = 0;

        if (cu->told)
                return;
        cu->told = true;
        if (frame_new_take(&f, protocol_format_joined(room->id, room->title, room->staff_only, &page,
                                                      NULL, 0, NULL)) < 0)
                return;
        for (size_t i = 0; i < room->n_members; i++) {
                Membership *mb = room->members[i];
                const CatchUpMark *mark = catch_up_mark(cu, mb);

                if (mb->pending || (mark && first && message_id_compare(mark->id, first) >= 0))
                        continue;
                cu->ops->send(cu->ud, mb, f);
                n++;
        }
        log_warning("Room %s: messages published while this daemon's subscription was away are no longer "
                    "in Redis; told %zu member connection(s) they missed some.", room->id, n);
}

static void catch_up_release(Room *room, RoomCatchUp *cu, const Event *ev) {
        if (ev->kind == EVENT_MESSAGE)
                cu->ops->deliver(cu->ud, room, &(ChatMessage) {
                        .room = room->id, .id = ev->id, .username = ev->user, .message = ev->text,
                        .ts = message_id_ms(ev->id),
                }, cu);
        else
                cu->ops->release(cu->ud, room, ev);
}

/* The replay reached the stream's end after the subscription took effect:
 * the room goes live, releasing what it held, in order. */
static void catch_up_finish(Room *room) {
        RoomCatchUp *cu = TAKE_PTR(room->catch_up);

        if (cu->lost)
                catch_up_tell_gap(room, cu, NULL);
        for (size_t i = 0; i < cu->n_held; i++)
                catch_up_release(room, cu, &cu->held[i]);
        catch_up_unref(cu);
}

static void on_catch_up_reply(Redis *r, const redisReply *reply, void *userdata);

/* The next page after room->last_id. Not connected: the reconnect resumes. */
static void catch_up_read(Room *room, RoomCatchUp *cu) {
        if (store_since(cu->redis, room->id, room->last_id[0] ? room->last_id : "0-0", CATCH_UP_PAGE,
                        on_catch_up_reply, catch_up_ref(cu)) >= 0) {
                cu->in_flight = true;
                return;
        }
        catch_up_unref(cu);
        if (redis_is_connected(cu->redis)) {
                cu->lost = true;
                catch_up_finish(room);
        }
}

static void catch_up_page(Room *room, RoomCatchUp *cu, const redisReply *reply) {
        StoreSinceReply page;
        size_t n;
        int r;

        r = store_parse_since_reply(reply, &page);
        if (r < 0) {
                log_warning("Could not replay what room %s missed from Redis: %s", room->id,
                            reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
                cu->lost = true;
                return catch_up_finish(room);
        }
        n = store_entries_count(&page.entries);
        if (message_id_compare(page.last_id, room->last_id) < 0) {
                /* Acknowledged messages are gone: Redis came back from an
                 * older copy, or without its data. */
                log_struct(LOG_ERR, 0, MESSAGE_ID_REDIS_ROLLED_BACK, LOG_FIELDS({ "MULTICHAT_ROOM", room->id }),
                           "Room %s: Redis no longer has the messages up to %s that this daemon relayed; "
                           "its log ends at %s. Members are told messages are missing.",
                           room->id, room->last_id, page.last_id);
                catch_up_tell_gap(room, cu, NULL);
                snprintf(room->last_id, sizeof room->last_id, "%s", page.last_id);
        }
        if (page.gap)
                catch_up_tell_gap(room, cu, n > 0 ? store_entries_id(&page.entries, 0) : NULL);
        for (size_t i = 0; i < n; i++) {
                const char *id = store_entries_id(&page.entries, i);
                StoreEntry e;

                if (store_entries_get(&page.entries, i, &e) >= 0)
                        cu->ops->deliver(cu->ud, room, &(ChatMessage) {
                                .room = room->id, .id = e.id, .username = e.username, .message = e.text,
                                .ts = message_id_ms(e.id), .edited = e.edited,
                        }, cu);
                /* Past what cannot be read, too: the next page must move on. */
                if (id && message_id_compare(id, room->last_id) > 0)
                        snprintf(room->last_id, sizeof room->last_id, "%s", id);
        }
        if ((page.more && n > 0) || cu->again) {
                cu->again = false;
                return catch_up_read(room, cu);
        }
        catch_up_finish(room);
}

static void on_catch_up_reply(Redis *r, const redisReply *reply, void *userdata) {
        RoomCatchUp *cu = userdata;
        Room *room = catch_up_room(cu);

        if (room) {
                cu->in_flight = false;
                /* NULL: the connection dropped; the reconnect resumes. */
                if (reply)
                        catch_up_page(room, cu, reply);
        }
        catch_up_unref(cu);
}

static void on_catch_up_barrier(Redis *r, bool ok, void *userdata) {
        RoomCatchUp *cu = userdata;
        Room *room = catch_up_room(cu);

        if (room) {
                cu->in_flight = false;
                if (ok)
                        catch_up_read(room, cu);
        }
        catch_up_unref(cu);
}

/* The first reply after a subscribe also gives the replay its start, once
 * the SUBSCRIBE is in effect: the barrier. */
void catch_up_joined(Room *room, Membership *mb, const char *tip) {
        RoomCatchUp *cu = room->catch_up;

        if (!tip)
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
        if (redis_subscriber_barrier(cu->redis, on_catch_up_barrier, catch_up_ref(cu)) >= 0)
                cu->in_flight = true;
        else
                catch_up_unref(cu);     /* down: the reconnect resumes */
}

/* Subscriptions are in effect by now. */
void catch_up_resume(Room *room, Redis *redis, const CatchUpOps *ops, void *ud) {
        RoomCatchUp *cu;

        if (!room->catch_up && !room->last_id[0])
                return;         /* no join answered yet: the first one starts it */
        catch_up_begin(room, redis, ops, ud, true);
        cu = room->catch_up;
        if (!cu || !cu->started)
                return;
        if (cu->in_flight)
                cu->again = true;       /* it may have been read before the resubscribe */
        else
                catch_up_read(room, cu);
}
