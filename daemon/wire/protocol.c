/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The WebSocket JSON protocol: client commands in, server events out (pure: no I/O). */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "basic/macro.h"
#include "basic/unicode-visible.h"
#include "basic/utf8.h"
#include "wire/protocol.h"

#define ROOM_INT_MAX ((json_int_t) ((UINT64_C(1) << 53) - 1))
#define DUMP_DEPTH_MAX 32

static const char *const protocol_error_table[_PROTOCOL_ERROR_MAX] = {
        [PROTOCOL_ERROR_USER_HAS_TO_LOGIN] = "USER_HAS_TO_LOGIN",
        [PROTOCOL_ERROR_ROOM_INVALID] = "ROOM_INVALID",
        [PROTOCOL_ERROR_ROOM_ACCESS_DENIED] = "ROOM_ACCESS_DENIED",
        [PROTOCOL_ERROR_BAD_REQUEST] = "BAD_REQUEST",
        [PROTOCOL_ERROR_MESSAGE_TOO_LONG] = "MESSAGE_TOO_LONG",
        [PROTOCOL_ERROR_RATE_LIMITED] = "RATE_LIMITED",
        [PROTOCOL_ERROR_NOT_FOUND] = "NOT_FOUND",
        [PROTOCOL_ERROR_FORBIDDEN] = "FORBIDDEN",
        [PROTOCOL_ERROR_UNAVAILABLE] = "UNAVAILABLE",
        [PROTOCOL_ERROR_OUTCOME_UNKNOWN] = "OUTCOME_UNKNOWN",
};

const char *protocol_error_to_string(ProtocolError e) {
        if ((unsigned) e >= _PROTOCOL_ERROR_MAX)
                return NULL;
        return protocol_error_table[e];
}

/* Which keys a command takes besides "ref". */
enum {
        FIELD_ID = 1 << 0,      /* required */
        FIELD_MESSAGE = 1 << 1, /* required */
        FIELD_SINCE = 1 << 2,   /* optional */
        FIELD_BEFORE = 1 << 3,  /* optional */
        FIELD_LIMIT = 1 << 4,   /* optional */
        FIELD_ROOM = 1 << 5,    /* required */
        FIELD_VERSION = 1 << 6, /* required */
        FIELD_ROOMS_SINCE = 1 << 7, /* optional: hello's object of room -> message id */
        FIELD_AFTER = 1 << 8,   /* optional: members' page cursor, a name */
};

static const struct {
        const char *name;
        unsigned fields;
} command_table[_COMMAND_TYPE_MAX] = {
        [COMMAND_JOIN] = { "join", FIELD_ROOM | FIELD_SINCE },
        [COMMAND_LEAVE] = { "leave", FIELD_ROOM },
        [COMMAND_SEND] = { "send", FIELD_ROOM | FIELD_MESSAGE },
        [COMMAND_HISTORY] = { "history", FIELD_ROOM | FIELD_BEFORE | FIELD_LIMIT },
        [COMMAND_EDIT] = { "edit", FIELD_ROOM | FIELD_ID | FIELD_MESSAGE },
        [COMMAND_DELETE] = { "delete", FIELD_ROOM | FIELD_ID },
        [COMMAND_TYPING] = { "typing", FIELD_ROOM },
        [COMMAND_HELLO] = { "hello", FIELD_VERSION | FIELD_ROOMS_SINCE },
        [COMMAND_READ] = { "read", FIELD_ROOM | FIELD_ID },
        [COMMAND_MEMBERS] = { "members", FIELD_ROOM | FIELD_AFTER },
};

const char *command_type_to_string(CommandType t) {
        if ((unsigned) t >= _COMMAND_TYPE_MAX)
                return NULL;
        return command_table[t].name;
}

void command_done(Command *c) {
        if (!c)
                return;
        free(c->message);
        free(c->rooms_since);
        *c = (Command) {};
}

/* ---- parsing ---- */

/* Counts bracket depth outside strings. Exact for valid JSON; for invalid
 * JSON the answer does not matter because jansson rejects it anyway. */
static bool json_text_depth_ok(const char *s, size_t n, unsigned max) {
        unsigned depth = 0;
        bool in_string = false;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        if (++depth > max)
                                return false;
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return true;
}

static bool is_digits(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

static ProtocolError parse_room(const json_t *v, char ret[static ROOM_ID_MAX + 1]) {
        if (!v)
                return PROTOCOL_ERROR_BAD_REQUEST;

        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);

                if (i < 1 || i > ROOM_INT_MAX)
                        return PROTOCOL_ERROR_ROOM_INVALID;
                (void) snprintf(ret, ROOM_ID_MAX + 1, "%" JSON_INTEGER_FORMAT, i);
                return PROTOCOL_OK;
        }

        if (!json_is_string(v))
                return PROTOCOL_ERROR_BAD_REQUEST;

        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (n < 1 || n > ROOM_ID_MAX || s[0] == '0' || !is_digits(s, n))
                return PROTOCOL_ERROR_ROOM_INVALID;

        memcpy(ret, s, n);
        ret[n] = '\0';
        return PROTOCOL_OK;
}

static bool message_id_is_valid(const char *s, size_t n) {
        const char *dash;
        size_t a, b;

        if (n > MESSAGE_ID_MAX)
                return false;
        dash = memchr(s, '-', n);
        if (!dash)
                return false;
        a = dash - s;
        b = n - a - 1;
        return a >= 1 && a <= 20 && b >= 1 && b <= 20 && is_digits(s, a) && is_digits(dash + 1, b);
}

/* Copies a message id; absent (or null when optional) leaves *has false. */
static ProtocolError parse_message_id(const json_t *v, bool required, char ret[static MESSAGE_ID_MAX + 1], bool *has) {
        if (!v || (!required && json_is_null(v)))
                return required ? PROTOCOL_ERROR_BAD_REQUEST : PROTOCOL_OK;
        if (!json_is_string(v))
                return PROTOCOL_ERROR_BAD_REQUEST;

        size_t n = json_string_length(v);
        if (!message_id_is_valid(json_string_value(v), n))
                return PROTOCOL_ERROR_BAD_REQUEST;

        memcpy(ret, json_string_value(v), n);
        ret[n] = '\0';
        if (has)
                *has = true;
        return PROTOCOL_OK;
}

static ProtocolError parse_limit(const json_t *v, unsigned *ret) {
        if (!v || json_is_null(v)) {
                *ret = HISTORY_LIMIT_DEFAULT;
                return PROTOCOL_OK;
        }
        if (!json_is_integer(v))
                return PROTOCOL_ERROR_BAD_REQUEST;

        json_int_t i = json_integer_value(v);
        if (i < 1 || i > HISTORY_LIMIT_MAX)
                return PROTOCOL_ERROR_BAD_REQUEST;

        *ret = (unsigned) i;
        return PROTOCOL_OK;
}

static ProtocolError parse_ref(const json_t *v, Command *c) {
        if (!v || json_is_null(v))
                return PROTOCOL_OK;
        if (!json_is_string(v))
                return PROTOCOL_ERROR_BAD_REQUEST;

        size_t n = json_string_length(v);
        if (n > REF_MAX || memchr(json_string_value(v), '\0', n))
                return PROTOCOL_ERROR_BAD_REQUEST;

        memcpy(c->ref, json_string_value(v), n);
        c->ref[n] = '\0';
        c->has_ref = true;
        return PROTOCOL_OK;
}

/* Decodes one code point from valid UTF-8 at s[*i] and advances *i. */
static uint32_t utf8_next(const unsigned char *s, size_t *i) {
        unsigned char c = s[*i];

        if (c < 0x80) {
                *i += 1;
                return c;
        }
        if (c < 0xe0) {
                *i += 2;
                return (uint32_t) (c & 0x1f) << 6 | (s[*i - 1] & 0x3f);
        }
        if (c < 0xf0) {
                *i += 3;
                return (uint32_t) (c & 0x0f) << 12 | (uint32_t) (s[*i - 2] & 0x3f) << 6 | (s[*i - 1] & 0x3f);
        }
        *i += 4;
        return (uint32_t) (c & 0x07) << 18 | (uint32_t) (s[*i - 3] & 0x3f) << 12 |
                (uint32_t) (s[*i - 2] & 0x3f) << 6 | (s[*i - 1] & 0x3f);
}

static ProtocolError parse_message(const json_t *v, size_t max_bytes, char **ret) {
        if (!v || !json_is_string(v))
                return PROTOCOL_ERROR_BAD_REQUEST;

        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (n > max_bytes)
                return PROTOCOL_ERROR_MESSAGE_TOO_LONG;
        /* jansson already refuses both without JSON_ALLOW_NUL; checked again
         * because everything downstream relies on it. */
        if (memchr(s, '\0', n) || !utf8_is_valid(s, n))
                return PROTOCOL_ERROR_BAD_REQUEST;
        if (!utf8_has_visible(s, n))
                return PROTOCOL_ERROR_BAD_REQUEST;

        char *m = strndup(s, n);
        if (!m)
                return PROTOCOL_ERROR_UNAVAILABLE;
        *ret = m;
        return PROTOCOL_OK;
}

static ProtocolError parse_version(const json_t *v, unsigned *ret) {
        json_int_t i;

        if (!v || !json_is_integer(v))
                return PROTOCOL_ERROR_BAD_REQUEST;
        i = json_integer_value(v);
        if (i < 1)
                return PROTOCOL_ERROR_BAD_REQUEST;
        *ret = i > UINT_MAX ? UINT_MAX : (unsigned) i;
        return PROTOCOL_OK;
}

/* hello's "since": {"<room>": "<message id>", ...}. A key that is not a
 * room id is the client's mistake in the shape, not a room that does not
 * exist: BAD_REQUEST, as for every other key of hello. */
static ProtocolError parse_rooms_since(const json_t *v, Command *c) {
        const char *key;
        json_t *value;
        size_t i = 0;

        if (!v || json_is_null(v))
                return PROTOCOL_OK;
        if (!json_is_object(v) || json_object_size(v) > PROTOCOL_USER_ROOMS_MAX)
                return PROTOCOL_ERROR_BAD_REQUEST;
        if (json_object_size(v) == 0)
                return PROTOCOL_OK;
        c->rooms_since = calloc(json_object_size(v), sizeof *c->rooms_since);
        if (!c->rooms_since)
                return PROTOCOL_ERROR_UNAVAILABLE;
        json_object_foreach((json_t *) v, key, value) {
                RoomSince *e = &c->rooms_since[i];
                size_t n = strlen(key);
                ProtocolError r;

                if (n < 1 || n > ROOM_ID_MAX || key[0] == '0' || !is_digits(key, n))
                        return PROTOCOL_ERROR_BAD_REQUEST;
                memcpy(e->room, key, n + 1);
                if (!json_is_string(value))
                        return PROTOCOL_ERROR_BAD_REQUEST;
                r = parse_message_id(value, true, e->id, NULL);
                if (r != PROTOCOL_OK)
                        return r;
                c->n_rooms_since = ++i;
        }
        return PROTOCOL_OK;
}

static ProtocolError parse_command_type(const json_t *v, CommandType *ret) {
        if (!v || !json_is_string(v))
                return PROTOCOL_ERROR_BAD_REQUEST;

        for (CommandType t = 0; t < _COMMAND_TYPE_MAX; t++)
                if (streq(json_string_value(v), command_table[t].name)) {
                        *ret = t;
                        return PROTOCOL_OK;
                }
        return PROTOCOL_ERROR_BAD_REQUEST;
}

/* Any name-sized string: a cursor in strcmp() order, not necessarily a
 * user who is present. */
static ProtocolError parse_after(const json_t *v, Command *c) {
        size_t n;

        if (!v || json_is_null(v))
                return PROTOCOL_OK;
        if (!json_is_string(v))
                return PROTOCOL_ERROR_BAD_REQUEST;
        n = json_string_length(v);
        if (n == 0 || n > USERNAME_MAX || memchr(json_string_value(v), 0, n))
                return PROTOCOL_ERROR_BAD_REQUEST;
        memcpy(c->after, json_string_value(v), n + 1);
        c->has_after = true;
        return PROTOCOL_OK;
}

static ProtocolError parse_fields(const json_t *o, size_t max_message_bytes, Command *c) {
        unsigned fields;
        ProtocolError e;

        e = parse_command_type(json_object_get(o, "command"), &c->type);
        if (e != PROTOCOL_OK)
                return e;
        fields = command_table[c->type].fields;

        if (fields & FIELD_ROOM) {
                e = parse_room(json_object_get(o, "room"), c->room);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_VERSION) {
                e = parse_version(json_object_get(o, "version"), &c->version);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_ROOMS_SINCE) {
                e = parse_rooms_since(json_object_get(o, "since"), c);
                if (e != PROTOCOL_OK)
                        return e;
        }

        if (fields & FIELD_ID) {
                e = parse_message_id(json_object_get(o, "id"), true, c->id, NULL);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_SINCE) {
                e = parse_message_id(json_object_get(o, "since"), false, c->since, &c->has_since);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_BEFORE) {
                e = parse_message_id(json_object_get(o, "before"), false, c->before, &c->has_before);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_LIMIT) {
                e = parse_limit(json_object_get(o, "limit"), &c->limit);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_AFTER) {
                e = parse_after(json_object_get(o, "after"), c);
                if (e != PROTOCOL_OK)
                        return e;
        }
        if (fields & FIELD_MESSAGE)
                return parse_message(json_object_get(o, "message"), max_message_bytes, &c->message);

        return PROTOCOL_OK;
}

ProtocolError protocol_parse_command(const char *data, size_t len, size_t max_message_bytes, Command *ret) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        Command c = {};
        ProtocolError e;

        *ret = (Command) {};

        if (!data || len > PROTOCOL_COMMAND_MAX)
                return PROTOCOL_ERROR_BAD_REQUEST;
        if (!utf8_is_valid(data, len) || !json_text_depth_ok(data, len, PROTOCOL_DEPTH_MAX))
                return PROTOCOL_ERROR_BAD_REQUEST;

        o = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
        if (!o || !json_is_object(o))
                return PROTOCOL_ERROR_BAD_REQUEST;

        /* The ref first, so that every later error can still echo it. */
        e = parse_ref(json_object_get(o, "ref"), &c);
        if (e != PROTOCOL_OK)
                return e;

        e = parse_fields(o, max_message_bytes, &c);
        if (e != PROTOCOL_OK) {
                memcpy(ret->ref, c.ref, sizeof(ret->ref));
                ret->has_ref = c.has_ref;
                command_done(&c);
                return e;
        }

        *ret = c;
        return PROTOCOL_OK;
}

/* ---- serializing ---- */

typedef struct Buffer {
        char *data;
        size_t len, cap;
} Buffer;

static int buffer_reserve(Buffer *b, size_t extra) {
        size_t need, cap;

        if (extra > SIZE_MAX - b->len - 1)
                return -ENOMEM;
        need = b->len + extra + 1;
        if (need <= b->cap)
                return 0;

        cap = MAX(need, b->cap > SIZE_MAX / 2 ? need : b->cap * 2);
        cap = MAX(cap, (size_t) 128);
        char *p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

static int buffer_append(Buffer *b, const char *s, size_t n) {
        int r = buffer_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

static int buffer_puts(Buffer *b, const char *s) {
        return buffer_append(b, s, strlen(s));
}

static int buffer_put_u16_escape(Buffer *b, uint32_t u) {
        static const char hex[] = "0123456789abcdef";
        char e[6] = { '\\', 'u', hex[(u >> 12) & 0xf], hex[(u >> 8) & 0xf], hex[(u >> 4) & 0xf], hex[u & 0xf] };

        return buffer_append(b, e, sizeof(e));
}

static const char *short_escape(unsigned char c) {
        switch (c) {
        case '"':
                return "\\\"";
        case '\\':
                return "\\\\";
        case '\n':
                return "\\n";
        case '\r':
                return "\\r";
        case '\t':
                return "\\t";
        case '\b':
                return "\\b";
        case '\f':
                return "\\f";
        default:
                return NULL;
        }
}

/* Python's ensure_ascii escaping: only ' '..'~' other than '"' and '\' stay literal. */
static int dump_string(Buffer *b, const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        int r;

        if (!utf8_is_valid(s, n))
                return -EINVAL;

        r = buffer_append(b, "\"", 1);
        for (size_t i = 0; r >= 0 && i < n;) {
                size_t run = i;

                while (run < n && p[run] >= 0x20 && p[run] <= 0x7e && p[run] != '"' && p[run] != '\\')
                        run++;
                if (run > i) {
                        r = buffer_append(b, s + i, run - i);
                        i = run;
                        continue;
                }

                const char *e = short_escape(p[i]);
                if (e) {
                        r = buffer_puts(b, e);
                        i++;
                        continue;
                }

                uint32_t cp = utf8_next(p, &i);
                if (cp >= 0x10000) {
                        cp -= 0x10000;
                        r = buffer_put_u16_escape(b, 0xd800 | (cp >> 10));
                        if (r >= 0)
                                r = buffer_put_u16_escape(b, 0xdc00 | (cp & 0x3ff));
                } else
                        r = buffer_put_u16_escape(b, cp);
        }
        if (r < 0)
                return r;
        return buffer_append(b, "\"", 1);
}

static int dump_value(Buffer *b, const json_t *j, unsigned depth);

static int dump_object(Buffer *b, const json_t *j, unsigned depth) {
        const char *key;
        json_t *v;
        bool first = true;
        int r;

        r = buffer_append(b, "{", 1);
        json_object_foreach((json_t *) j, key, v) {
                if (r >= 0 && !first)
                        r = buffer_append(b, ", ", 2);
                if (r >= 0)
                        r = dump_string(b, key, strlen(key));
                if (r >= 0)
                        r = buffer_append(b, ": ", 2);
                if (r >= 0)
                        r = dump_value(b, v, depth + 1);
                if (r < 0)
                        return r;
                first = false;
        }
        if (r < 0)
                return r;
        return buffer_append(b, "}", 1);
}

static int dump_array(Buffer *b, const json_t *j, unsigned depth) {
        int r;

        r = buffer_append(b, "[", 1);
        for (size_t i = 0; r >= 0 && i < json_array_size(j); i++) {
                if (i > 0)
                        r = buffer_append(b, ", ", 2);
                if (r >= 0)
                        r = dump_value(b, json_array_get(j, i), depth + 1);
        }
        if (r < 0)
                return r;
        return buffer_append(b, "]", 1);
}

static int dump_value(Buffer *b, const json_t *j, unsigned depth) {
        char num[32];

        if (!j || depth >= DUMP_DEPTH_MAX)
                return -EINVAL;

        switch (json_typeof(j)) {
        case JSON_OBJECT:
                return dump_object(b, j, depth);
        case JSON_ARRAY:
                return dump_array(b, j, depth);
        case JSON_STRING:
                return dump_string(b, json_string_value(j), json_string_length(j));
        case JSON_INTEGER:
                (void) snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
                return buffer_puts(b, num);
        case JSON_TRUE:
                return buffer_puts(b, "true");
        case JSON_FALSE:
                return buffer_puts(b, "false");
        case JSON_NULL:
                return buffer_puts(b, "null");
        default:
                /* Reals: Python's float repr is not worth reproducing; we send none. */
                return -EINVAL;
        }
}

char *protocol_json_dumps(const json_t *j, size_t *ret_len) {
        Buffer b = {};
        int r;

        r = dump_value(&b, j, 0);
        if (r < 0) {
                free(b.data);
                errno = -r;
                return NULL;
        }
        if (ret_len)
                *ret_len = b.len;
        return b.data;
}

/* ---- writing events straight to text ---- */

/* The events sent most (messages, joins with their history and first page
 * of members) are written without building a json_t first: a join's 20
 * messages and 100 names were some 300 allocations, a quarter of the
 * daemon's CPU in a reconnect storm. The text is byte for byte what
 * protocol_json_dumps() makes of the same object. The first error sticks. */
typedef struct Writer {
        Buffer *b;
        bool first;
        int r;
} Writer;

static void writer_open(Writer *w, Buffer *b, const char *bracket) {
        *w = (Writer) { .b = b, .first = true };
        w->r = buffer_puts(b, bracket);
}

static void writer_close(Writer *w, Writer *outer, const char *bracket) {
        if (w->r >= 0)
                w->r = buffer_puts(w->b, bracket);
        if (outer && outer->r >= 0)
                outer->r = w->r;
}

/* An array element's separator, or an object's key with its separator. */
static void writer_next(Writer *w, const char *key) {
        if (w->r < 0)
                return;
        if (!w->first)
                w->r = buffer_append(w->b, ", ", 2);
        w->first = false;
        if (w->r >= 0 && key) {
                w->r = dump_string(w->b, key, strlen(key));
                if (w->r >= 0)
                        w->r = buffer_append(w->b, ": ", 2);
        }
}

/* An object or array inside w, under key; false (nothing written) once w failed. */
static bool writer_enter(Writer *w, const char *key, Writer *inner, const char *bracket) {
        writer_next(w, key);
        if (w->r < 0)
                return false;
        writer_open(inner, w->b, bracket);
        return true;
}

static void write_string(Writer *w, const char *key, const char *value) {
        writer_next(w, key);
        if (w->r >= 0)
                w->r = value ? dump_string(w->b, value, strlen(value)) : -EINVAL;
}

/* Optional strings (ref) are left out when NULL. */
static void write_string_opt(Writer *w, const char *key, const char *value) {
        if (value)
                write_string(w, key, value);
}

static void write_integer(Writer *w, const char *key, int64_t value) {
        char num[32];

        writer_next(w, key);
        (void) snprintf(num, sizeof(num), "%" PRIi64, value);
        if (w->r >= 0)
                w->r = buffer_puts(w->b, num);
}

static void write_bool(Writer *w, const char *key, bool value) {
        writer_next(w, key);
        if (w->r >= 0)
                w->r = buffer_puts(w->b, value ? "true" : "false");
}

static void write_null(Writer *w, const char *key) {
        writer_next(w, key);
        if (w->r >= 0)
                w->r = buffer_puts(w->b, "null");
}

/* page NULL: nobody. */
static void write_member_page(Writer *w, const MemberPage *page) {
        Writer a;

        if (!writer_enter(w, "members", &a, "["))
                return;
        for (size_t i = 0; page && i < page->n; i++)
                write_string(&a, NULL, page->names[i]);
        writer_close(&a, w, "]");
}

/* "read" (a message id or null), then the count under count_key, then "mentions". */
static void write_read_state(Writer *w, const char *count_key, const ReadState *rs) {
        if (rs->read)
                write_string(w, "read", rs->read);
        else
                write_null(w, "read");
        write_integer(w, count_key, rs->unread);
        write_integer(w, "mentions", rs->mentions);
}

static void write_message(Writer *w, const char *key, const ChatMessage *m, bool own) {
        Writer o;

        if (!m || m->ts > INT64_MAX) {
                if (w->r >= 0)
                        w->r = -EINVAL;
                return;
        }
        if (!writer_enter(w, key, &o, "{"))
                return;
        write_integer(&o, "msg_type", MSG_TYPE_MESSAGE);
        write_string(&o, "room", m->room);
        write_string(&o, "username", m->username);
        write_string(&o, "message", m->message);
        if (m->id) {
                write_string(&o, "id", m->id);
                write_integer(&o, "ts", (int64_t) m->ts);
                if (m->mentions) {
                        Writer a;

                        if (writer_enter(&o, "mentions", &a, "[")) {
                                for (unsigned i = 0; i < m->mentions->n; i++)
                                        write_string(&a, NULL, m->mentions->names[i]);
                                writer_close(&a, &o, "]");
                        }
                }
        }
        if (m->edited)
                write_bool(&o, "edited", true);
        if (own)
                write_bool(&o, "own", true);
        writer_close(&o, w, "}");
}

/* history NULL: none. A message the source cannot give (< 0) is left out. */
static void write_history(Writer *w, const ProtocolHistory *history) {
        Writer a;

        if (!writer_enter(w, "history", &a, "["))
                return;
        for (size_t i = 0; history && i < history->n && a.r >= 0; i++) {
                ChatMessage m;
                Mentions mentions;
                bool own = false;

                if (history->get(history->userdata, i, &m, &own, &mentions) < 0)
                        continue;
                write_message(&a, NULL, &m, own);
        }
        writer_close(&a, w, "]");
}

/* The text of the object written, or NULL with errno set. */
static char *writer_finish(Writer *w) {
        writer_close(w, NULL, "}");
        if (w->r < 0) {
                free(w->b->data);
                errno = -w->r;
                return NULL;
        }
        return w->b->data;
}

/* ---- building events ---- */

static int put_new(json_t *o, const char *key, json_t *v) {
        if (!v)
                return -ENOMEM;
        /* Steals v even on failure. */
        if (json_object_set_new_nocheck(o, key, v) < 0)
                return -ENOMEM;
        return 0;
}

static int put_string(json_t *o, const char *key, const char *value) {
        if (!value)
                return -EINVAL;

        size_t n = strlen(value);
        if (!utf8_is_valid(value, n))
                return -EINVAL;
        return put_new(o, key, json_stringn_nocheck(value, n));
}

/* Optional strings (ref) are left out when NULL. */
static int put_string_opt(json_t *o, const char *key, const char *value) {
        return value ? put_string(o, key, value) : 0;
}

static int put_integer(json_t *o, const char *key, json_int_t value) {
        return put_new(o, key, json_integer(value));
}

static int put_bool(json_t *o, const char *key, bool value) {
        return put_new(o, key, json_boolean(value));
}

static int put_string_array(json_t *o, const char *key, char *const *strv) {
        _cleanup_(json_decrefp) json_t *a = json_array();
        int r;

        if (!a)
                return -ENOMEM;
        for (char *const *s = strv; s && *s; s++) {
                size_t n = strlen(*s);

                if (!utf8_is_valid(*s, n))
                        return -EINVAL;
                r = json_array_append_new(a, json_stringn_nocheck(*s, n));
                if (r < 0)
                        return -ENOMEM;
        }
        return put_new(o, key, TAKE_PTR(a));
}

/* "read" (a message id or null), then the count under count_key, then "mentions". */
static int put_read_state(json_t *o, const char *read_key, const char *count_key, const ReadState *rs) {
        int r;

        r = rs->read ? put_string(o, read_key, rs->read) : put_new(o, read_key, json_null());
        if (r >= 0)
                r = put_integer(o, count_key, rs->unread);
        if (r >= 0)
                r = put_integer(o, "mentions", rs->mentions);
        return r;
}

/* Serializes o when r (the result of building it) is a success. */
static char *finish(const json_t *o, int r) {
        if (r < 0) {
                errno = -r;
                return NULL;
        }
        return protocol_json_dumps(o, NULL);
}

static json_t *new_object(void) {
        json_t *o = json_object();
        if (!o)
                errno = ENOMEM;
        return o;
}

/* ---- mentions ---- */

static bool is_name_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* The length of the name mentioned by the '@' at text[i]; 0 for none. */
static size_t mention_at(const char *text, size_t i) {
        size_t n = 0;

        if (i > 0 && (is_name_char(text[i - 1]) || text[i - 1] == '@'))
                return 0;
        if (text[i + 1] == '-')
                return 0;
        while (n < USERNAME_MAX && is_name_char(text[i + 1 + n]))
                n++;
        /* "ping @bob." ends a sentence: the dot is not part of the name. */
        while (n > 0 && text[i + n] == '.')
                n--;
        return n;
}

bool protocol_mentions_has(const Mentions *m, const char *username) {
        for (unsigned i = 0; m && username && i < m->n; i++)
                if (streq(m->names[i], username))
                        return true;
        return false;
}

void protocol_mentions_parse(const char *text, Mentions *ret) {
        ret->n = 0;
        for (const char *at = text ? strchr(text, '@') : NULL; at && ret->n < MENTIONS_MAX; at = strchr(at + 1, '@')) {
                size_t n = mention_at(text, (size_t) (at - text));
                char *name = ret->names[ret->n];

                if (n == 0)
                        continue;
                memcpy(name, at + 1, n);
                name[n] = 0;
                /* names[n] is not counted yet: has() looks at the earlier ones. */
                if (!protocol_mentions_has(ret, name))
                        ret->n++;
        }
}

void protocol_mentions_join(const Mentions *m, char buf[static MENTIONS_JOINED_MAX + 1]) {
        size_t len = 0;

        buf[0] = 0;
        for (unsigned i = 0; i < m->n; i++) {
                size_t n = strlen(m->names[i]);

                if (i > 0)
                        buf[len++] = ' ';
                memcpy(buf + len, m->names[i], n + 1);
                len += n;
        }
}

char *protocol_format_message(const ChatMessage *m) {
        Buffer b = {};
        Writer w;

        /* The message as the only element: its own writer would add "{". */
        w = (Writer) { .b = &b, .first = true };
        write_message(&w, NULL, m, false);
        if (w.r < 0) {
                free(b.data);
                errno = -w.r;
                return NULL;
        }
        return b.data;
}

/* {"msg_type": type, "room": room, "<key>": value}: notices and presence. */
static char *format_typed(MessageType type, const char *room, const char *key, const char *value) {
        _cleanup_(json_decrefp) json_t *o = new_object();
        int r;

        if (!o)
                return NULL;
        r = put_integer(o, "msg_type", type);
        if (r >= 0)
                r = put_string(o, "room", room);
        if (r >= 0)
                r = put_string(o, key, value);
        return finish(o, r);
}

char *protocol_format_notice(MessageType type, const char *room, const char *text) {
        if (type < MSG_TYPE_WARNING || type > MSG_TYPE_MUTED) {
                errno = EINVAL;
                return NULL;
        }
        return format_typed(type, room, "message", text);
}

char *protocol_format_presence(MessageType type, const char *room, const char *username) {
        if (type != MSG_TYPE_ENTER && type != MSG_TYPE_LEAVE) {
                errno = EINVAL;
                return NULL;
        }
        return format_typed(type, room, "username", username);
}

static char *format_joined(
                const char *room,
                const char *title,
                bool staff_only,
                const MemberPage *members,
                const ProtocolHistory *history,
                int complete,
                const ReadState *rs,
                const char *ref) {
        /* A join with its history rarely fits less: one allocation, not eight. */
        Buffer b = {};
        Writer w;

        if (buffer_reserve(&b, 4096) < 0) {
                errno = ENOMEM;
                return NULL;
        }
        writer_open(&w, &b, "{");
        write_string(&w, "join", room);
        write_string(&w, "title", title);
        write_bool(&w, "staff_only", staff_only);
        write_member_page(&w, members);
        write_integer(&w, "member_count", members ? (int64_t) members->total : 0);
        write_history(&w, history);
        if (complete >= 0)
                write_bool(&w, "complete", complete > 0);
        if (rs)
                write_read_state(&w, "unread", rs);
        write_string_opt(&w, "ref", ref);
        return writer_finish(&w);
}

char *protocol_format_joined(
                const char *room,
                const char *title,
                bool staff_only,
                const MemberPage *members,
                const ProtocolHistory *history,
                int complete,
                const char *ref) {
        return format_joined(room, title, staff_only, members, history, complete, NULL, ref);
}

char *protocol_format_joined_v2(
                const char *room,
                const char *title,
                bool staff_only,
                const MemberPage *members,
                const ProtocolHistory *history,
                int complete,
                const ReadState *rs,
                const char *ref) {
        if (!rs) {
                errno = EINVAL;
                return NULL;
        }
        return format_joined(room, title, staff_only, members, history, complete, rs, ref);
}

char *protocol_format_member_count(const char *room, size_t count) {
        Buffer b = {};
        Writer w;

        writer_open(&w, &b, "{");
        write_integer(&w, "member_count", (int64_t) MIN(count, (size_t) INT64_MAX));
        write_string(&w, "room", room);
        return writer_finish(&w);
}

char *protocol_format_members(const char *room, const MemberPage *members, const char *ref) {
        Buffer b = {};
        Writer w;

        writer_open(&w, &b, "{");
        write_member_page(&w, members);
        write_string(&w, "room", room);
        write_bool(&w, "more", members && members->more);
        write_string_opt(&w, "ref", ref);
        return writer_finish(&w);
}

char *protocol_format_hello(unsigned version, const char *username, char *const *rooms, const char *ref) {
        _cleanup_(json_decrefp) json_t *o = new_object();
        int r;

        if (!o)
                return NULL;
        r = put_integer(o, "hello", version);
        if (r >= 0)
                r = put_string(o, "username", username);
        if (r >= 0)
                r = put_string_array(o, "rooms", rooms);
        if (r >= 0)
                r = put_string_opt(o, "ref", ref);
        return finish(o, r);
}

char *protocol_format_unread(const char *room, const ReadState *rs) {
        _cleanup_(json_decrefp) json_t *o = new_object();
        int r;

        if (!o)
                return NULL;
        if (!rs || !rs->read)
                return finish(o, -EINVAL);
        r = put_string(o, "unread", room);
        if (r >= 0)
                r = put_read_state(o, "read", "count", rs);
        return finish(o, r);
}

char *protocol_format_left(const char *room, LeaveReason reason, const char *ref) {
        static const char *const reasons[_LEAVE_REASON_MAX] = {
                [LEAVE_REASON_DELETED] = "deleted",
                [LEAVE_REASON_KICKED] = "kicked",
        };
        _cleanup_(json_decrefp) json_t *o = NULL;
        int r;

        if ((unsigned) reason >= _LEAVE_REASON_MAX) {
                errno = EINVAL;
                return NULL;
        }
        o = new_object();
        if (!o)
                return NULL;

        r = put_string(o, "leave", room);
        if (r >= 0)
                r = put_string_opt(o, "reason", reasons[reason]);
        if (r >= 0)
                r = put_string_opt(o, "ref", ref);
        return finish(o, r);
}

char *protocol_format_error(ProtocolError e, const char *ref) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        const char *s = protocol_error_to_string(e);
        int r;

        if (!s) {
                errno = EINVAL;
                return NULL;
        }
        o = new_object();
        if (!o)
                return NULL;

        r = put_string(o, "error", s);
        if (r >= 0)
                r = put_string_opt(o, "ref", ref);
        return finish(o, r);
}

char *protocol_format_history(const char *room, const ProtocolHistory *history, bool complete, const char *ref) {
        Buffer b = {};
        Writer w;

        writer_open(&w, &b, "{");
        write_history(&w, history);
        write_string(&w, "room", room);
        write_bool(&w, "complete", complete);
        write_string_opt(&w, "ref", ref);
        return writer_finish(&w);
}

static int room_info_to_json(const RoomInfo *info, json_t **ret) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        int r;

        if (!o)
                return -ENOMEM;
        r = put_string(o, "id", info->id);
        if (r >= 0)
                r = put_string(o, "title", info->title);
        if (r >= 0)
                r = put_bool(o, "staff_only", info->staff_only);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

char *protocol_format_rooms(const RoomInfo *rooms, size_t n_rooms) {
        _cleanup_(json_decrefp) json_t *o = new_object(), *a = NULL;
        int r;

        if (!o)
                return NULL;
        if (!rooms && n_rooms > 0) {
                errno = EINVAL;
                return NULL;
        }

        a = json_array();
        if (!a) {
                errno = ENOMEM;
                return NULL;
        }
        for (size_t i = 0; i < n_rooms; i++) {
                json_t *item;

                r = room_info_to_json(rooms + i, &item);
                if (r < 0)
                        return finish(o, r);
                if (json_array_append_new(a, item) < 0)
                        return finish(o, -ENOMEM);
        }
        return finish(o, put_new(o, "rooms", TAKE_PTR(a)));
}

/* {"<key>": value, "room": room}: deletions and typing. */
static char *format_keyed(const char *key, const char *value, const char *room) {
        _cleanup_(json_decrefp) json_t *o = new_object();
        int r;

        if (!o)
                return NULL;
        r = put_string(o, key, value);
        if (r >= 0)
                r = put_string(o, "room", room);
        return finish(o, r);
}

char *protocol_format_deleted(const char *room, const char *id) {
        return format_keyed("deleted", id, room);
}

char *protocol_format_typing(const char *room, const char *username) {
        return format_keyed("typing", username, room);
}

char *protocol_format_ok(const char *id, const char *ref) {
        _cleanup_(json_decrefp) json_t *o = new_object();
        int r;

        if (!o)
                return NULL;
        r = put_bool(o, "ok", true);
        if (r >= 0)
                r = put_string_opt(o, "id", id);
        if (r >= 0)
                r = put_string_opt(o, "ref", ref);
        return finish(o, r);
}

char *protocol_format_session(const char *username, bool staff) {
        _cleanup_(json_decrefp) json_t *o = new_object();
        int r;

        if (!o)
                return NULL;
        r = put_string(o, "username", username);
        if (r >= 0)
                r = put_bool(o, "staff", staff);
        return finish(o, r);
}
