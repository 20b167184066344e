/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The events daemons publish to each other over Redis pub/sub: one typed codec for what the scripts write and C reads. */

#include <errno.h>
#include <string.h>

#include "basic/macro.h"
#include "wire/events.h"

/* Kind names and the argument types that follow them: 's' a string,
 * 'i' an integer. */
static const struct {
        const char *name;
        const char *args;
} event_shapes[_EVENT_KIND_MAX] = {
        [EVENT_MESSAGE]      = { "m", "sss" },
        [EVENT_EDITED]       = { "e", "sss" },
        [EVENT_DELETED]      = { "d", "s" },
        [EVENT_NOTICE]       = { "n", "is" },
        [EVENT_TYPING]       = { "t", "s" },
        [EVENT_PRESENCE]     = { "p", "ssii" },
        [EVENT_ROOMS]        = { "rooms", "" },
        [EVENT_ROOM_DELETED] = { "deleted", "s" },
        [EVENT_KICK]         = { "kick", "ss" },
        [EVENT_LOGOUT]       = { "logout", "s" },
        [EVENT_USER_JOINED]  = { "uj", "ss" },
        [EVENT_USER_LEFT]    = { "ul", "sss" },
        [EVENT_USER_READ]    = { "ur", "sss" },
};

static bool message_id_is_valid(const char *s) {
        size_t ms = strspn(s, "0123456789"), seq;

        if (ms == 0 || ms > 20 || s[ms] != '-')
                return false;
        seq = strspn(s + ms + 1, "0123456789");
        return seq > 0 && seq <= 20 && s[ms + 1 + seq] == 0;
}

static bool room_id_is_valid(const char *s, bool may_be_empty) {
        size_t n = strspn(s, "0123456789");

        if (s[0] == 0)
                return may_be_empty;
        return s[0] != '0' && n <= ROOM_ID_MAX && s[n] == 0;
}

static bool event_fields_valid(const Event *e) {
        switch (e->kind) {
        case EVENT_MESSAGE:
        case EVENT_EDITED:
                return message_id_is_valid(e->id) && strlen(e->user) <= USERNAME_MAX;
        case EVENT_DELETED:
                return message_id_is_valid(e->id);
        case EVENT_NOTICE:
                return e->level >= EVENT_NOTICE_LEVEL_MIN && e->level <= EVENT_NOTICE_LEVEL_MAX;
        case EVENT_TYPING:
                return strlen(e->user) <= USERNAME_MAX;
        case EVENT_PRESENCE:
                return room_id_is_valid(e->room, false) && strlen(e->user) <= USERNAME_MAX && e->count >= 0 &&
                       e->change >= -1 && e->change <= 1;
        case EVENT_ROOM_DELETED:
                return room_id_is_valid(e->room, false);
        case EVENT_KICK:
                return room_id_is_valid(e->room, true) && strlen(e->user) <= USERNAME_MAX;
        case EVENT_USER_JOINED:
                return room_id_is_valid(e->room, false) && strlen(e->user) <= USERNAME_MAX;
        case EVENT_USER_LEFT:
                return room_id_is_valid(e->room, false) && strlen(e->user) <= USERNAME_MAX &&
                       (streq(e->reason, "") || streq(e->reason, "kicked") || streq(e->reason, "deleted"));
        case EVENT_USER_READ:
                return room_id_is_valid(e->room, false) && strlen(e->user) <= USERNAME_MAX &&
                       message_id_is_valid(e->id);
        default:
                return true;
        }
}

/* The k-th argument, by kind, into its field. */
static void event_set_string(Event *e, unsigned k, const char *s) {
        switch (e->kind) {
        case EVENT_MESSAGE:
        case EVENT_EDITED:
                *(k == 0 ? &e->id : k == 1 ? &e->user : &e->text) = s;
                break;
        case EVENT_DELETED:
                e->id = s;
                break;
        case EVENT_NOTICE:
                e->text = s;
                break;
        case EVENT_TYPING:
                e->user = s;
                break;
        case EVENT_PRESENCE:
                *(k == 0 ? &e->room : &e->user) = s;
                break;
        case EVENT_ROOM_DELETED:
                e->room = s;
                break;
        case EVENT_KICK:
                *(k == 0 ? &e->user : &e->room) = s;
                break;
        case EVENT_LOGOUT:
                e->session_id = s;
                break;
        case EVENT_USER_JOINED:
        case EVENT_USER_LEFT:
        case EVENT_USER_READ:
                *(k == 0 ? &e->user : k == 1 ? &e->room : e->kind == EVENT_USER_LEFT ? &e->reason : &e->id) = s;
                break;
        default:
                break;
        }
}

static void event_set_integer(Event *e, unsigned k, json_int_t v) {
        if (e->kind == EVENT_NOTICE)
                e->level = v >= INT32_MIN && v <= INT32_MAX ? (int) v : 0;
        else if (k == 2)
                e->count = v;
        else
                e->change = v >= -1 && v <= 1 ? (int) v : 2;
}

static int event_kind_from_name(const char *name) {
        for (int k = 0; k < _EVENT_KIND_MAX; k++)
                if (streq(event_shapes[k].name, name))
                        return k;
        return -EBADMSG;
}

int event_parse(const char *data, size_t len, Event *ret) {
        json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
        const char *args;
        Event e = {};
        int k;

        if (!json_is_array(root) || !json_is_string(json_array_get(root, 0)))
                goto bad;
        k = event_kind_from_name(json_string_value(json_array_get(root, 0)));
        if (k < 0)
                goto bad;
        e.kind = (EventKind) k;
        args = event_shapes[k].args;
        if (json_array_size(root) != strlen(args) + 1)
                goto bad;
        for (unsigned i = 0; args[i]; i++) {
                json_t *a = json_array_get(root, i + 1);

                if (args[i] == 's' && json_is_string(a))
                        event_set_string(&e, i, json_string_value(a));
                else if (args[i] == 'i' && json_is_integer(a))
                        event_set_integer(&e, i, json_integer_value(a));
                else
                        goto bad;
        }
        if (!event_fields_valid(&e))
                goto bad;
        e.root = root;
        *ret = e;
        return 0;
bad:
        json_decref(root);
        return -EBADMSG;
}

void event_copy(Event *dst, const Event *src) {
        *dst = *src;
        json_incref(dst->root);
}

void event_done(Event *e) {
        e->root = (json_decref(e->root), NULL);
}

static char *event_dump(json_t *a) {
        char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;

        json_decref(a);
        return s;
}

char *event_format_typing(const char *user) {
        return event_dump(json_pack("[ss]", event_shapes[EVENT_TYPING].name, user));
}

char *event_format_notice(int level, const char *text) {
        return event_dump(json_pack("[sIs]", event_shapes[EVENT_NOTICE].name, (json_int_t) level, text));
}

char *event_format_kick(const char *user, const char *room) {
        return event_dump(json_pack("[sss]", event_shapes[EVENT_KICK].name, user, room ?: ""));
}

char *event_format_logout(const char *session_id) {
        return event_dump(json_pack("[ss]", event_shapes[EVENT_LOGOUT].name, session_id));
}
