/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The WebSocket JSON protocol: client commands in, server events out (pure: no I/O). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "wire/limits.h"

#define REF_MAX 64              /* bytes */

/* Largest command frame parsed at all; the WebSocket layer caps frames before this. */
#define PROTOCOL_COMMAND_MAX (1024 * 1024)
/* Commands are flat objects; deeper nesting (in ignored keys) is refused
 * before jansson's recursive parser sees it. */
#define PROTOCOL_DEPTH_MAX 8

#define HISTORY_LIMIT_DEFAULT 50u
#define HISTORY_LIMIT_MAX 100u

typedef enum CommandType {
        COMMAND_JOIN,
        COMMAND_LEAVE,
        COMMAND_SEND,
        COMMAND_HISTORY,
        COMMAND_EDIT,
        COMMAND_DELETE,
        COMMAND_TYPING,
        COMMAND_HELLO,
        COMMAND_READ,
        COMMAND_MEMBERS,
        _COMMAND_TYPE_MAX,
} CommandType;

typedef enum ProtocolError {
        PROTOCOL_OK = 0,
        PROTOCOL_ERROR_USER_HAS_TO_LOGIN,
        PROTOCOL_ERROR_ROOM_INVALID,
        PROTOCOL_ERROR_ROOM_ACCESS_DENIED,
        PROTOCOL_ERROR_BAD_REQUEST,
        PROTOCOL_ERROR_MESSAGE_TOO_LONG,
        PROTOCOL_ERROR_RATE_LIMITED,
        PROTOCOL_ERROR_NOT_FOUND,
        PROTOCOL_ERROR_FORBIDDEN,
        PROTOCOL_ERROR_UNAVAILABLE,
        PROTOCOL_ERROR_OUTCOME_UNKNOWN,
        _PROTOCOL_ERROR_MAX,
} ProtocolError;

/* The v1 "msg_type" of message-like events. */
typedef enum MessageType {
        MSG_TYPE_MESSAGE = 0,
        MSG_TYPE_WARNING = 1,
        MSG_TYPE_ALERT = 2,
        MSG_TYPE_MUTED = 3,
        MSG_TYPE_ENTER = 4,
        MSG_TYPE_LEAVE = 5,
} MessageType;

typedef enum LeaveReason {
        LEAVE_REASON_NONE,      /* the client asked to leave */
        LEAVE_REASON_DELETED,   /* the room was deleted */
        LEAVE_REASON_KICKED,
        _LEAVE_REASON_MAX,
} LeaveReason;

/* "ROOM_INVALID", ...; NULL for PROTOCOL_OK and out-of-range values, so an
 * "OK" error can never be sent. */
const char *protocol_error_to_string(ProtocolError e);
/* "join", ...; NULL when out of range. */
const char *command_type_to_string(CommandType t);

/* The protocol versions this server speaks: 1, and 2 after "hello". */
#define PROTOCOL_VERSION_MAX 2u
/* Entries of hello's "since", and rooms one user may have joined. */
#define PROTOCOL_USER_ROOMS_MAX 100u

/* One entry of hello's "since": the last message the client has of a room. */
typedef struct RoomSince {
        char room[ROOM_ID_MAX + 1];
        char id[MESSAGE_ID_MAX + 1];
} RoomSince;

typedef struct Command {
        CommandType type;
        char room[ROOM_ID_MAX + 1];      /* canonical decimal, 1..20 digits, no leading zero; "" for hello */
        char id[MESSAGE_ID_MAX + 1];     /* edit/delete/read */
        unsigned version;                /* hello: >= 1 (clamped to UINT_MAX) */
        RoomSince *rooms_since;          /* hello: owned, n_rooms_since entries */
        size_t n_rooms_since;
        char since[MESSAGE_ID_MAX + 1];  /* join */
        bool has_since;
        char before[MESSAGE_ID_MAX + 1]; /* history */
        bool has_before;
        unsigned limit;                  /* history: 1..HISTORY_LIMIT_MAX, default HISTORY_LIMIT_DEFAULT */
        char after[USERNAME_MAX + 1];    /* members: a page starts after this name (strcmp order) */
        bool has_after;
        char *message;                   /* send/edit: owned, valid UTF-8, no NUL, not blank */
        char ref[REF_MAX + 1];
        bool has_ref;
} Command;

/* Frees owned members and zeroes *c; safe on a zeroed Command. */
void command_done(Command *c);

/* Parses one text frame into *ret, which is always (re)initialized.
 *
 * Success: PROTOCOL_OK, *ret filled; free it with command_done().
 * Failure: a ProtocolError; *ret owns nothing and only ref/has_ref are set
 * (when a valid "ref" was present) so the error reply can echo it.
 *
 * Rules (the v1 example was loose about types; these are the ones we keep):
 * - the frame is at most PROTOCOL_COMMAND_MAX bytes of UTF-8 JSON holding
 *   one object, nesting at most PROTOCOL_DEPTH_MAX, no duplicate keys, and
 *   "command" is one of the CommandType names; unknown keys are ignored;
 *   else BAD_REQUEST.
 * - "room" is required (except for hello): a JSON integer 1..2^53-1 or a string of 1..20 ASCII
 *   digits without leading zero, stored canonically. Other JSON types →
 *   BAD_REQUEST; a string or integer out of that form ("01", " 1 ", "", 0,
 *   -1, 2^53) → ROOM_INVALID.
 * - "id" (edit/delete/read, required), "since" (join), "before" (history) match
 *   ^[0-9]{1,20}-[0-9]{1,20}$, else BAD_REQUEST.
 * - "limit" (history) is a JSON integer 1..HISTORY_LIMIT_MAX, else BAD_REQUEST.
 * - "message" (send/edit, required) is a JSON string, else BAD_REQUEST;
 *   over max_message_bytes bytes → MESSAGE_TOO_LONG; empty or only
 *   whitespace, invisible or control characters → BAD_REQUEST (for edit
 *   too: emptying a message is what delete is for).
 * - "version" (hello, required) is a JSON integer >= 1, else BAD_REQUEST.
 * - "since" of hello is an object of at most PROTOCOL_USER_ROOMS_MAX
 *   entries, each a room id in the string form above mapped to a message
 *   id, else BAD_REQUEST.
 * - "ref" is a string of at most REF_MAX bytes, else BAD_REQUEST.
 * - optional keys ("since", "before", "limit", "ref") set to null count as absent.
 * - allocation failure → UNAVAILABLE (nothing was done; the client may retry). */
ProtocolError protocol_parse_command(const char *data, size_t len, size_t max_message_bytes, Command *ret);

/* Serializes like Python's json.dumps() with default arguments: separators
 * ", " and ": ", key order as inserted, every byte outside printable ASCII
 * escaped as \uXXXX with lowercase hex (surrogate pairs above U+FFFF), \" \\
 * \n \r \t \b \f short escapes. Handles objects, arrays, strings, integers,
 * true, false, null; reals, invalid UTF-8 and nesting deeper than 32 give
 * NULL with errno EINVAL. Returns a malloc'd NUL-terminated string, its
 * length in *ret_len if non-NULL; NULL with errno ENOMEM on allocation failure.
 *
 * All protocol_format_*() below return the same way; a required string
 * argument that is NULL or not valid UTF-8 gives NULL with errno EINVAL.
 * An optional ref that is NULL is left out. */
char *protocol_json_dumps(const json_t *j, size_t *ret_len);

/* The users a message mentions (version 2): "@name" at the start of the
 * text or after a byte that is not [A-Za-z0-9._-@], name 1..USERNAME_MAX
 * of [A-Za-z0-9._-] not starting with '-', trailing dots cut; each name
 * once, in order of first appearance, at most MENTIONS_MAX. */
#define MENTIONS_MAX 20
typedef struct Mentions {
        unsigned n;
        char names[MENTIONS_MAX][USERNAME_MAX + 1];
} Mentions;

/* text: NUL-terminated; NULL mentions nobody. */
void protocol_mentions_parse(const char *text, Mentions *ret);
bool protocol_mentions_has(const Mentions *m, const char *username);
/* The names joined by single spaces (as the stream's field "n" holds
 * them) into buf; "" for none. buf of MENTIONS_JOINED_MAX + 1 bytes. */
#define MENTIONS_JOINED_MAX (MENTIONS_MAX * (USERNAME_MAX + 1))
void protocol_mentions_join(const Mentions *m, char buf[static MENTIONS_JOINED_MAX + 1]);

typedef struct ChatMessage {
        const char *room, *id, *username, *message;
        uint64_t ts;            /* milliseconds since the epoch, <= INT64_MAX */
        bool edited;
        const Mentions *mentions;       /* version 2 shape when non-NULL */
} ChatMessage;

/* {"msg_type": 0, "room": "1", "username": "alice", "message": "hi", "id": "1700000000000-0", "ts": 1700000000000}
 * then "mentions": [...] when m->mentions is set (version 2), then
 * "edited": true when edited. id NULL leaves out id, ts and mentions (the
 * v1 shape). NULL with errno set on failure. The string always ends in '}'
 * and holds no "own" key, so the frame layer can splice `, "own": true` in
 * before the '}'. */
char *protocol_format_message(const ChatMessage *m);

/* Messages of a history, oldest first, as the caller keeps them: get()
 * fills message i (it may point ret->mentions at the mentions given) and
 * whether it is the receiver's own, which adds "own": true after
 * everything protocol_format_message() writes; < 0 leaves the message out. */
typedef struct ProtocolHistory {
        size_t n;
        int (*get)(const void *userdata, size_t i, ChatMessage *ret, bool *ret_own, Mentions *mentions);
        const void *userdata;
} ProtocolHistory;

/* {"msg_type": 1|2|3, "room": "1", "message": "..."}: administrators' notices. */
char *protocol_format_notice(MessageType type, const char *room, const char *text);
/* {"msg_type": 4|5, "room": "1", "username": "bob"}: someone entered or left. */
char *protocol_format_presence(MessageType type, const char *room, const char *username);

/* Names a join or a members request shows at once: a page, so that what a
 * join costs does not grow with the room. */
#define PROTOCOL_MEMBERS_PAGE 100u

/* A page of the users present in a room, in strcmp() order. */
typedef struct MemberPage {
        char *const *names;     /* n of them; may be NULL when n is 0 */
        size_t n;
        size_t total;           /* present in the room, this page included */
        bool more;              /* names follow this page */
} MemberPage;

/* {"join": "1", "title": "Lobby", "staff_only": false, "members": ["alice"],
 *  "member_count": 1, "history": [...], "complete": true, "ref": "x"}
 * members: the first page (NULL: nobody). history: NULL means empty.
 * complete: -1 leaves it out (no "since" was given), 0/1 → false/true. */
char *protocol_format_joined(
                const char *room,
                const char *title,
                bool staff_only,
                const MemberPage *members,
                const ProtocolHistory *history,
                int complete,
                const char *ref);

/* {"member_count": 1234, "room": "1"}: how many are present now, in a
 * room too large for entered/left notices. */
char *protocol_format_member_count(const char *room, size_t count);

/* {"members": ["bob", "carol"], "room": "1", "more": false, "ref": "x"}:
 * the reply to "members". */
char *protocol_format_members(const char *room, const MemberPage *members, const char *ref);

/* A user's read position in a room (version 2). read NULL is JSON null:
 * no marker yet. unread and mentions are capped at 999 by the caller. */
typedef struct ReadState {
        const char *read;
        unsigned unread, mentions;
} ReadState;

/* The version 2 joined event: as protocol_format_joined(), then "read",
 * "unread", "mentions", then "ref". */
char *protocol_format_joined_v2(
                const char *room,
                const char *title,
                bool staff_only,
                const MemberPage *members,
                const ProtocolHistory *history,
                int complete,
                const ReadState *rs,
                const char *ref);

/* {"hello": 2, "username": "alice", "rooms": ["1", "3"], "ref": "h1"} */
char *protocol_format_hello(unsigned version, const char *username, char *const *rooms, const char *ref);

/* {"unread": "1", "read": "<id>", "count": 0, "mentions": 0}: the user's
 * read marker moved (version 2). */
char *protocol_format_unread(const char *room, const ReadState *rs);

/* {"leave": "1"} + "reason": "deleted"|"kicked" unless LEAVE_REASON_NONE, + "ref". */
char *protocol_format_left(const char *room, LeaveReason reason, const char *ref);

/* {"error": "ROOM_INVALID"} + "ref". e must not be PROTOCOL_OK (EINVAL). */
char *protocol_format_error(ProtocolError e, const char *ref);

/* Reply to the "history" command:
 * {"history": [...], "room": "1", "complete": true, "ref": "x"}
 * history as for protocol_format_joined() (NULL = empty), oldest first;
 * complete false means older messages exist before the first one given
 * (ask again with "before" set to its id). */
char *protocol_format_history(const char *room, const ProtocolHistory *history, bool complete, const char *ref);

typedef struct RoomInfo {
        const char *id, *title;
        bool staff_only;
} RoomInfo;

/* {"rooms": [{"id": "1", "title": "Lobby", "staff_only": false}, ...]} in the
 * order given (the caller sorts by title). Also the body of GET /api/rooms. */
char *protocol_format_rooms(const RoomInfo *rooms, size_t n_rooms);

/* {"deleted": "<id>", "room": "1"} */
char *protocol_format_deleted(const char *room, const char *id);

/* {"typing": "bob", "room": "1"} */
char *protocol_format_typing(const char *room, const char *username);

/* {"ok": true, "id": "<new message id>", "ref": "x"}: the ack for send, edit,
 * delete and typing when the command carried a ref; id (send only) and ref
 * are left out when NULL. */
char *protocol_format_ok(const char *id, const char *ref);

/* {"username": "alice", "staff": true}: the body of GET /api/session. */
char *protocol_format_session(const char *username, bool staff);
