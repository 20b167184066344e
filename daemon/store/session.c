/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Login sessions: ids, CSRF tokens, cookies, and the session store in Redis shared by every daemon. */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "basic/utf8.h"
#include "basic/macro.h"
#include "basic/time-util.h"
#include "redis/redis.h"
#include "store/session.h"
#include "basic/time-util.h"

#define SESSION_KEY_MAX (sizeof(SESSION_KEY_PREFIX) - 1 + SESSION_ID_MAX)

/* Refuses a key that exists: with 256 random bits a collision means a bug
 * (or someone planting a session), never a reason to overwrite. */
static const char script_create_source[] =
        "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
        "redis.call('HSET', KEYS[1], 'user', ARGV[1], 'uid', ARGV[2], 'staff', ARGV[3],\n"
        "           'csrf', ARGV[4], 'created', ARGV[5])\n"
        "redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"
        "return 1\n";

/* ARGV: now (µs), idle (ms), max (µs). Returns nil when absent, 0 when past
 * its absolute expiry (deleted), else the five fields, for C to validate.
 * A session whose "created" is not even a number is handed back unrefreshed. */
static const char script_lookup_source[] =
        "local v = redis.call('HMGET', KEYS[1], 'user', 'uid', 'staff', 'csrf', 'created')\n"
        "if not v[5] then\n"
        "  if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
        "  return v\n"
        "end\n"
        "local created = tonumber(v[5])\n"
        "if not created then return v end\n"
        "local left = created + tonumber(ARGV[3]) - tonumber(ARGV[1])\n"
        "if left <= 0 then\n"
        "  redis.call('DEL', KEYS[1])\n"
        "  return 0\n"
        "end\n"
        "redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[2]), math.ceil(left / 1000)))\n"
        "return v\n";

/* HSET alone would re-create a deleted session as a key without TTL. */
static const char script_update_staff_source[] =
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
        "redis.call('HSET', KEYS[1], 'staff', ARGV[1])\n"
        "return 1\n";

/* Constant after the first use; the SHA1s are computed once. */
static RedisScript script_create, script_lookup, script_update_staff;
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init(void) {
        redis_script_init(&script_create, script_create_source);
        redis_script_init(&script_lookup, script_lookup_source);
        redis_script_init(&script_update_staff, script_update_staff_source);
}

typedef enum SessionOp {
        SESSION_OP_CREATE,
        SESSION_OP_LOOKUP,
        SESSION_OP_DELETE,
        SESSION_OP_UPDATE_STAFF,
} SessionOp;

struct SessionRequest {
        SessionOp op;
        SessionHandler cb;
        void *userdata;
        bool cancelled;
        SessionData data;               /* the id, and for create everything */
};

SessionRequest *session_request_cancel(SessionRequest *req) {
        if (req)
                req->cancelled = true;
        return NULL;
}

void session_request_cancel_opaque(void *req) {
        session_request_cancel(req);
}

static const char base64url_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int random_token(char ret[static SESSION_ID_MAX + 1]) {
        unsigned char buf[SESSION_ID_BYTES];
        size_t got = 0, o = 0;

        while (got < sizeof buf) {
                ssize_t n = getrandom(buf + got, sizeof buf - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t) n;
        }

        /* 32 bytes = 10 groups of 3 (40 chars) and 2 bytes left (3 chars). */
        for (size_t i = 0; i + 3 <= sizeof buf; i += 3) {
                uint32_t v = (uint32_t) buf[i] << 16 | (uint32_t) buf[i + 1] << 8 | buf[i + 2];
                ret[o++] = base64url_alphabet[(v >> 18) & 63];
                ret[o++] = base64url_alphabet[(v >> 12) & 63];
                ret[o++] = base64url_alphabet[(v >> 6) & 63];
                ret[o++] = base64url_alphabet[v & 63];
        }
        uint32_t v = (uint32_t) buf[30] << 16 | (uint32_t) buf[31] << 8;
        ret[o++] = base64url_alphabet[(v >> 18) & 63];
        ret[o++] = base64url_alphabet[(v >> 12) & 63];
        ret[o++] = base64url_alphabet[(v >> 6) & 63];
        ret[o] = 0;

        explicit_bzero(buf, sizeof buf);
        return 0;
}

static bool token_is_valid(const char *s) {
        size_t i;

        if (!s)
                return false;
        for (i = 0; i < SESSION_ID_MAX; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_'))
                        return false;
        }
        return s[i] == 0;
}

int session_id_generate(char ret[static SESSION_ID_MAX + 1]) {
        return random_token(ret);
}

bool session_id_is_valid(const char *s) {
        return token_is_valid(s);
}

int csrf_token_generate(char ret[static CSRF_TOKEN_MAX + 1]) {
        return random_token(ret);
}

bool csrf_token_is_valid(const char *s) {
        return token_is_valid(s);
}

bool csrf_token_equal(const char *expected, const char *got) {
        if (!csrf_token_is_valid(expected) || !got)
                return false;
        /* The length of what the client sent is no secret; the content is
         * compared in constant time. */
        if (strnlen(got, CSRF_TOKEN_MAX + 1) != CSRF_TOKEN_MAX)
                return false;
        return memeq_secret(expected, got, CSRF_TOKEN_MAX);
}

bool session_user_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, USERNAME_MAX + 1);
        if (n == 0 || n > USERNAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return utf8_is_valid(s, n);
}

static void session_key(char ret[static SESSION_KEY_MAX + 1], const char *id) {
        snprintf(ret, SESSION_KEY_MAX + 1, SESSION_KEY_PREFIX "%s", id);
}

/* Strict decimal: digits only, no sign, no leading zeros (but "0"), no overflow. */
static int parse_u64(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                if (v > (UINT64_MAX - (uint64_t) (s[i] - '0')) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static bool reply_is_string(const redisReply *e) {
        return e && e->type == REDIS_REPLY_STRING && e->str && strlen(e->str) == e->len;
}

/* The five HMGET fields, as handed back by the lookup script. Redis content
 * is input like any other: everything is checked before it is believed. */
static int session_data_from_reply(const redisReply *reply, SessionData *d) {
        const redisReply *user, *uid, *staff, *csrf, *created;
        uint64_t u, c;

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5)
                return -EBADMSG;
        for (size_t i = 0; i < 5; i++)
                if (!reply_is_string(reply->element[i]))
                        return -EBADMSG;
        user = reply->element[0];
        uid = reply->element[1];
        staff = reply->element[2];
        csrf = reply->element[3];
        created = reply->element[4];

        if (!session_user_is_valid(user->str))
                return -EBADMSG;
        if (parse_u64(uid->str, uid->len, &u) < 0 || u >= (uid_t) -1)
                return -EBADMSG;
        if (!streq(staff->str, "0") && !streq(staff->str, "1"))
                return -EBADMSG;
        if (!csrf_token_is_valid(csrf->str))
                return -EBADMSG;
        if (parse_u64(created->str, created->len, &c) < 0 || c == 0)
                return -EBADMSG;

        memcpy(d->user, user->str, user->len + 1);
        d->uid = (uid_t) u;
        d->staff = staff->str[0] == '1';
        memcpy(d->csrf, csrf->str, CSRF_TOKEN_MAX + 1);
        d->created_usec = c;
        return 0;
}

static int reply_error(const redisReply *reply) {
        if (!reply)
                return -ENOTCONN;
        if (reply->type == REDIS_REPLY_ERROR)
                /* A key of another type in our namespace: planted or stale. */
                return reply->str && strstr(reply->str, "WRONGTYPE") ? -EBADMSG : -EIO;
        return 0;
}

/* 0 and 1 from the scripts and DEL. */
static int reply_flag(const redisReply *reply, int if_zero) {
        if (reply->type != REDIS_REPLY_INTEGER || (reply->integer != 0 && reply->integer != 1))
                return -EBADMSG;
        return reply->integer == 1 ? 0 : if_zero;
}

static int lookup_reply(const redisReply *reply, SessionData *d) {
        if (reply->type == REDIS_REPLY_NIL)
                return -ENOENT;
        if (reply->type == REDIS_REPLY_INTEGER)
                return reply->integer == 0 ? -ENOENT : -EBADMSG;     /* 0: past its absolute expiry */
        return session_data_from_reply(reply, d);
}

static void on_session_reply(Redis *redis, const redisReply *reply, void *userdata) {
        _cleanup_free_ SessionRequest *req = userdata;
        int r;

        if (req->cancelled)
                return;

        r = reply_error(reply);
        if (r == 0)
                switch (req->op) {
                case SESSION_OP_CREATE:
                        r = reply_flag(reply, -EEXIST);
                        break;
                case SESSION_OP_LOOKUP:
                        r = lookup_reply(reply, &req->data);
                        break;
                case SESSION_OP_DELETE:
                case SESSION_OP_UPDATE_STAFF:
                        r = reply_flag(reply, -ENOENT);
                        break;
                }

        if (req->op == SESSION_OP_LOOKUP && r == -EBADMSG) {
                /* Nobody can use it, and it may carry a refreshed TTL: drop it. */
                char key[SESSION_KEY_MAX + 1];

                session_key(key, req->data.id);
                (void) redis_command_argv(redis, NULL, NULL, 2, (const char *[]) { "DEL", key }, NULL);
        }

        if (req->cb)
                req->cb(r, r >= 0 && (req->op == SESSION_OP_CREATE || req->op == SESSION_OP_LOOKUP) ?
                        &req->data : NULL, req->userdata);
}

static int session_request_new(SessionRequest **ret, SessionOp op, const char *id,
                               SessionHandler cb, void *userdata) {
        SessionRequest *req;

        if (!session_id_is_valid(id))
                return -EINVAL;

        req = calloc(1, sizeof *req);
        if (!req)
                return -ENOMEM;
        req->op = op;
        req->cb = cb;
        req->userdata = userdata;
        memcpy(req->data.id, id, SESSION_ID_MAX + 1);
        *ret = req;
        return 0;
}

/* Hands req to Redis; on failure frees it. */
static int session_request_send(SessionRequest *req, Redis *redis, const RedisScript *script,
                                int nargs, const char **args, SessionRequest **ret_req) {
        char key[SESSION_KEY_MAX + 1];
        const char *argv[1 + 8];
        int r;

        session_key(key, req->data.id);
        argv[0] = key;
        for (int i = 0; i < nargs; i++)
                argv[1 + i] = args[i];

        if (script)
                r = redis_eval(redis, script, on_session_reply, req, 1, nargs, argv, NULL);
        else {
                const char *del[] = { "DEL", key };
                r = redis_command_argv(redis, on_session_reply, req, 2, del, NULL);
        }
        if (r < 0) {
                free(req);
                return r;
        }
        if (ret_req)
                *ret_req = req;
        return 0;
}

static uint64_t usec_to_msec_ceil(uint64_t usec) {
        return usec / USEC_PER_MSEC + (usec % USEC_PER_MSEC != 0);
}

int session_create(Redis *redis, const SessionData *d, uint64_t idle_usec,
                   SessionHandler cb, void *userdata, SessionRequest **ret_req) {
        char uid[24], created[24], ttl[24], id[SESSION_ID_MAX + 1];
        SessionRequest *req;
        int r;

        if (!redis || !d || idle_usec < USEC_PER_MSEC || idle_usec == UINT64_MAX)
                return -EINVAL;
        if (!session_user_is_valid(d->user) || d->uid == (uid_t) -1)
                return -EINVAL;
        if (d->id[0] == 0) {
                r = session_id_generate(id);
                if (r < 0)
                        return r;
        } else
                memcpy(id, d->id, sizeof id);   /* validated by session_request_new() */

        r = session_request_new(&req, SESSION_OP_CREATE, id, cb, userdata);
        if (r < 0)
                return r;
        memcpy(req->data.user, d->user, sizeof req->data.user);
        req->data.uid = d->uid;
        req->data.staff = d->staff;
        req->data.created_usec = d->created_usec ?: now_usec(CLOCK_REALTIME);
        if (d->csrf[0] == 0)
                r = csrf_token_generate(req->data.csrf);
        else if (csrf_token_is_valid(d->csrf))
                memcpy(req->data.csrf, d->csrf, sizeof req->data.csrf);
        else
                r = -EINVAL;
        if (r < 0) {
                free(req);
                return r;
        }

        pthread_once(&scripts_once, scripts_init);
        snprintf(uid, sizeof uid, "%" PRIu64, (uint64_t) req->data.uid);
        snprintf(created, sizeof created, "%" PRIu64, req->data.created_usec);
        snprintf(ttl, sizeof ttl, "%" PRIu64, usec_to_msec_ceil(idle_usec));

        return session_request_send(req, redis, &script_create, 6,
                                    (const char *[]) { req->data.user, uid, req->data.staff ? "1" : "0",
                                                       req->data.csrf, created, ttl },
                                    ret_req);
}

int session_lookup(Redis *redis, const char *id, uint64_t idle_usec, uint64_t max_usec,
                   SessionHandler cb, void *userdata, SessionRequest **ret_req) {
        char now[24], idle[24], max[24];
        SessionRequest *req;
        int r;

        /* Lua numbers are doubles: keep every sum below 2^53. */
        if (!redis || idle_usec < USEC_PER_MSEC || max_usec == 0 ||
            idle_usec > UINT64_C(1) << 50 || max_usec > UINT64_C(1) << 50)
                return -EINVAL;

        r = session_request_new(&req, SESSION_OP_LOOKUP, id, cb, userdata);
        if (r < 0)
                return r;

        pthread_once(&scripts_once, scripts_init);
        snprintf(now, sizeof now, "%" PRIu64, now_usec(CLOCK_REALTIME));
        snprintf(idle, sizeof idle, "%" PRIu64, usec_to_msec_ceil(idle_usec));
        snprintf(max, sizeof max, "%" PRIu64, max_usec);

        return session_request_send(req, redis, &script_lookup, 3,
                                    (const char *[]) { now, idle, max }, ret_req);
}

int session_delete(Redis *redis, const char *id,
                   SessionHandler cb, void *userdata, SessionRequest **ret_req) {
        SessionRequest *req;
        int r;

        if (!redis)
                return -EINVAL;
        r = session_request_new(&req, SESSION_OP_DELETE, id, cb, userdata);
        if (r < 0)
                return r;
        return session_request_send(req, redis, NULL, 0, NULL, ret_req);
}

int session_update_staff(Redis *redis, const char *id, bool staff,
                         SessionHandler cb, void *userdata, SessionRequest **ret_req) {
        SessionRequest *req;
        int r;

        if (!redis)
                return -EINVAL;
        r = session_request_new(&req, SESSION_OP_UPDATE_STAFF, id, cb, userdata);
        if (r < 0)
                return r;

        pthread_once(&scripts_once, scripts_init);
        return session_request_send(req, redis, &script_update_staff, 1,
                                    (const char *[]) { staff ? "1" : "0" }, ret_req);
}
