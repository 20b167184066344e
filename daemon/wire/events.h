/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The events daemons publish to each other over Redis pub/sub: one typed codec for what the scripts write and C reads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "wire/limits.h"

/*
 * Every event is a JSON array whose first element names it. Room channels
 * (mc:{r<id>}:ch) carry MESSAGE, EDITED, DELETED, NOTICE and TYPING; the
 * channel every daemon hears (mc:events) carries PRESENCE, ROOMS,
 * ROOM_DELETED, KICK, NOTICE (to every room), LOGOUT and the user events
 * of version 2 (USER_JOINED, USER_LEFT, USER_READ). The Lua scripts
 * in store/store.c write most of them; test-store-events checks both sides
 * against this codec.
 */
typedef enum EventKind {
        EVENT_MESSAGE,          /* ["m", id, user, text] */
        EVENT_EDITED,           /* ["e", id, user, text]: id is the edited message's */
        EVENT_DELETED,          /* ["d", id] */
        EVENT_NOTICE,           /* ["n", level, text]: level 1 warning, 2 alert, 3 muted */
        EVENT_TYPING,           /* ["t", user] */
        EVENT_PRESENCE,         /* ["p", room, user, count, change]: change +1 entered, -1 left, 0 neither */
        EVENT_ROOMS,            /* ["rooms"]: the room list changed */
        EVENT_ROOM_DELETED,     /* ["deleted", room] */
        EVENT_KICK,             /* ["kick", user, room or ""] */
        EVENT_LOGOUT,           /* ["logout", session id] */
        EVENT_USER_JOINED,      /* ["uj", user, room]: the room was added to the user's rooms (version 2) */
        EVENT_USER_LEFT,        /* ["ul", user, room, reason]: removed; reason "", "kicked" or "deleted" */
        EVENT_USER_READ,        /* ["ur", user, room, id]: the user's read marker in the room moved */
        _EVENT_KIND_MAX,
} EventKind;

#define EVENT_NOTICE_LEVEL_MIN 1
#define EVENT_NOTICE_LEVEL_MAX 3

/* A decoded event. The strings point into root, which the event holds a
 * reference to: valid until event_done(). Fields the kind does not have
 * are NULL or 0. */
typedef struct Event {
        EventKind kind;
        const char *id;         /* message id, MESSAGE_ID_MAX at most */
        const char *user;       /* USERNAME_MAX at most */
        const char *text;
        const char *room;       /* ROOM_ID_MAX at most; "" for every room (KICK) */
        const char *session_id;
        const char *reason;     /* USER_LEFT: "", "kicked" or "deleted" */
        int level;
        int64_t count;
        int change;
        json_t *root;
} Event;

/* -EBADMSG for anything that is not a well-formed event of a known kind
 * (the channel is external input: any client of the Redis may publish). */
int event_parse(const char *data, size_t len, Event *ret);
/* A second holder of the same event (for events held back while a room
 * replays its stream). */
void event_copy(Event *dst, const Event *src);
void event_done(Event *e);

/* Events the daemon itself publishes; malloc'd compact JSON, NULL on OOM. */
char *event_format_typing(const char *user);
char *event_format_notice(int level, const char *text);
char *event_format_kick(const char *user, const char *room);
char *event_format_logout(const char *session_id);
