/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Login sessions: ids, CSRF tokens, cookies, and the session store in Redis shared by every daemon. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/macro.h"
#include "wire/limits.h"

typedef struct Redis Redis;

/* 32 random bytes (256 bits) as unpadded base64url. */
#define SESSION_ID_BYTES 32
#define SESSION_ID_MAX 43
#define CSRF_TOKEN_MAX 43

#define SESSION_KEY_PREFIX "mc:session:"

/* Redis key mc:session:<id> is a hash {user, uid, staff, csrf, created}
 * whose TTL is the idle timeout (never beyond created + max). */
typedef struct SessionData {
        char id[SESSION_ID_MAX + 1];
        char user[USERNAME_MAX + 1];
        uid_t uid;
        bool staff;
        char csrf[CSRF_TOKEN_MAX + 1];
        uint64_t created_usec;          /* CLOCK_REALTIME */
} SessionData;

/* r: 0; -ENOENT (no such session, expired, or already deleted);
 * -EBADMSG (the stored session is malformed: treated as absent, and deleted);
 * -EEXIST (session_create: the id is taken); -ENOTCONN (the connection went
 * away before the reply); -EIO (Redis answered with an error).
 * d is set only with r == 0 for session_create() and session_lookup(), and
 * is valid during the call only. */
typedef void (*SessionHandler)(int r, const SessionData *d, void *userdata);

/* A request in flight. Valid until its handler has been called or it has
 * been cancelled: clear your copy in the handler. */
typedef struct SessionRequest SessionRequest;

/* After this the handler is never called; the request itself is freed when
 * Redis answers. Accepts NULL, returns NULL: `c->pending = session_request_cancel(c->pending);`.
 * Safe inside the request's own handler (then a no-op). */
SessionRequest *session_request_cancel(SessionRequest *req);
/* The same for holders of an untyped `void *pending` with a `void (*)(void *)` cancel. */
void session_request_cancel_opaque(void *req);

/* ret: SESSION_ID_MAX chars and a NUL. 0 or -errno from getrandom(). */
int session_id_generate(char ret[static SESSION_ID_MAX + 1]);
/* Exactly SESSION_ID_MAX chars of [A-Za-z0-9_-]. Check before any lookup:
 * a cookie is untrusted input. NULL → false. */
bool session_id_is_valid(const char *s);

int csrf_token_generate(char ret[static CSRF_TOKEN_MAX + 1]);
bool csrf_token_is_valid(const char *s);
/* Constant-time comparison of a well-formed expected token with what the
 * client sent (which may be anything, or NULL). */
bool csrf_token_equal(const char *expected, const char *got);

/* A user name we store and hand back: 1..USERNAME_MAX bytes of UTF-8
 * without control characters. */
bool session_user_is_valid(const char *s);

/* Stores a new session, atomically (one Lua script: HSET + PEXPIRE, and
 * refuses an existing key). d->id and d->csrf are generated when empty,
 * d->created_usec is now when 0; the handler receives the complete data.
 * idle_usec >= 1 ms.
 *
 * All the calls below return 0 and then call cb exactly once (unless
 * cancelled), or fail at once without calling it: -EINVAL for a malformed
 * id or data, -ENOTCONN while Redis is down, -ENOMEM. ret_req may be NULL;
 * it is written only on success. cb may be NULL (fire and forget). */
int session_create(Redis *r, const SessionData *d, uint64_t idle_usec,
                   SessionHandler cb, void *userdata, SessionRequest **ret_req);

/* Fetches a session and, when it is live, refreshes its idle timeout
 * (capped at created + max_usec) in the same Lua script. A session past
 * created + max_usec is deleted and reported as -ENOENT; a malformed one
 * as -EBADMSG (and deleted). Everything read back is validated. */
int session_lookup(Redis *r, const char *id, uint64_t idle_usec, uint64_t max_usec,
                   SessionHandler cb, void *userdata, SessionRequest **ret_req);

/* Ends a session: 0 when it existed, -ENOENT when it did not. */
int session_delete(Redis *r, const char *id,
                   SessionHandler cb, void *userdata, SessionRequest **ret_req);

/* Stores a re-evaluated staff flag; never re-creates a session that has
 * expired or was deleted meanwhile (-ENOENT then). */
int session_update_staff(Redis *r, const char *id, bool staff,
                         SessionHandler cb, void *userdata, SessionRequest **ret_req);
