/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's Redis client: a command and a subscriber connection on sd-event (one pair per master of a cluster), reconnect, pub/sub, scripts. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "basic/list.h"
#include "basic/macro.h"
#include "redis/cluster-map.h"
#include "redis/redis-sdevent.h"
#include "redis/redis.h"
#include "redis/sentinel.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_DB_MAX 65535
#define REDIS_TIMER_ACCURACY_USEC 1000ULL       /* 0 would mean sd-event's default of 250 ms */
#define SUBSCRIBE_BATCH 512                     /* channels per SUBSCRIBE when resubscribing */
#define USEC_INFINITY UINT64_MAX

/* The subscriber connection's probe: re-SUBSCRIBing a channel nobody
 * publishes to is answered alike by every Redis in subscribed mode (a PING
 * there answers "pong" in an array, outside it "+PONG"). Redis answers it
 * after everything it queued for us before, which makes it a barrier as
 * well as a liveness check. */
#define PROBE_CHANNEL "__multichat:redis-probe__"

/* What a subscription is: they are kept apart as Redis keeps them. */
typedef enum SubKind {
        SUB_CHANNEL,
        SUB_PATTERN,
        SUB_SHARD,              /* sharded pub/sub: a channel of a slot */
        _SUB_KIND_MAX,
} SubKind;

static const char *const sub_verb[_SUB_KIND_MAX][2] = {
        [SUB_CHANNEL] = { "SUBSCRIBE", "UNSUBSCRIBE" },
        [SUB_PATTERN] = { "PSUBSCRIBE", "PUNSUBSCRIBE" },
        [SUB_SHARD] = { "SSUBSCRIBE", "SUNSUBSCRIBE" },
};

typedef struct Cluster Cluster;
typedef struct ClusterBarrier ClusterBarrier;
typedef struct ClusterNode ClusterNode;
typedef struct ClusterRequest ClusterRequest;
typedef struct Probe Probe;
typedef struct RedisConn RedisConn;
typedef struct Request Request;
typedef struct Resolve Resolve;
typedef struct Subscription Subscription;

typedef enum ConnState {
        CONN_DOWN,              /* no context; the timer is the reconnect backoff */
        CONN_RESOLVING,         /* host name lookup in a helper thread */
        CONN_SETUP,             /* connecting, SELECT or SUBSCRIBEs in flight */
        CONN_UP,
} ConnState;

typedef enum RequestKind {
        REQUEST_USER,
        REQUEST_AUTH,           /* the first command on every connection, when we have a password */
        REQUEST_ROLE,           /* a replica is refused */
        REQUEST_SETUP,          /* SELECT/PING that makes the command connection usable */
        REQUEST_PING,
} RequestKind;

/* One command handed to hiredis: hiredis owns it as the callback's privdata
 * and calls on_request_reply() exactly once, which frees it. While the
 * connection lives it is also on the connection's list, oldest first, so
 * that timeouts and redis_free() can find it. */
struct Request {
        LIST_FIELDS(Request, requests);
        RedisConn *conn;                /* NULL once orphaned: the handler has run already */
        RequestKind kind;
        RedisReplyHandler cb;
        void *userdata;
        uint64_t deadline;
        const RedisScript *script;      /* set for EVALSHA until it has fallen back to EVAL */
        sds command;                    /* the EVALSHA as sent, for the fallback */
};

/* A probe in flight on the subscriber connection, oldest first: the one that
 * ends the setup, the idle liveness check, redis_subscriber_barrier(). */
struct Probe {
        Probe *next;
        uint64_t deadline;
        RedisBarrierHandler cb;         /* NULL but for barriers */
        void *userdata;
};

/* A host name lookup off the loop. Shared by the connection and the thread;
 * whoever drops the last reference frees it, so a connection can give up on
 * a lookup that hangs. */
struct Resolve {
        int n_ref;
        int fd[2];                      /* the thread writes one byte when done */
        char *host;
        int done;                       /* set (release) by the thread before it wakes us */
        int error;                      /* getaddrinfo()'s EAI_* */
        char address[INET6_ADDRSTRLEN];
};

struct RedisConn {
        Redis *redis;
        const char *name;
        bool subscriber;
        ConnState state;
        redisAsyncContext *ac;
        sd_event_source *timer;         /* backoff, connect timeout, watchdog: one at a time */
        uint64_t timer_at;              /* when it fires, USEC_INFINITY if off */
        uint64_t backoff;
        uint64_t last_ping;
        uint64_t last_read;             /* when a reply last arrived, 0 if none yet */
        bool auth_pending;              /* subscriber: the next reply answers AUTH */
        Probe *probes, *probes_tail;    /* subscriber: unanswered probes */
        Request *head, *tail;           /* command connection: awaiting replies */
        Resolve *resolve;
        sd_event_source *resolve_source;
};

struct Subscription {
        Subscription *next;             /* hash chain */
        unsigned n_ref;
        SubKind kind;
        ClusterNode *home;              /* cluster: the master it is subscribed on */
        bool dropped;                   /* cluster, sharded: Redis dropped it; on_shard(false) was told */
        unsigned generation;            /* cluster, sharded: counts drops, so a stale barrier tells nothing */
        size_t len;
        char name[];
};

struct Redis {
        unsigned n_ref;                 /* the owner, plus any dispatch on the stack */
        bool started, shut_down, connected;
        sd_event *event;

        char *host;                     /* TCP: numeric address or name; NULL for a Unix socket */
        bool host_is_numeric;
        int port;
        char *path;                     /* Unix socket */
        unsigned db;
        char address[300];              /* for redis_master_address() */

        char *user, *password;
        Sentinel *sentinel;
        bool need_discovery;            /* ask the sentinels before the next connect */
        bool was_connected;
        RedisProblem problem;
        RedisEventHandler on_event;
        RedisShardHandler on_shard;

        RedisConn cmd, sub;

        Cluster *cluster;               /* cluster mode: no connections of its own, see Cluster */
        Redis *parent;                  /* a cluster's connection to one node */

        Subscription **buckets;
        size_t n_buckets, n_subscriptions;

        RedisStateHandler on_state;
        RedisMessageHandler on_message;
        void *userdata;

        uint64_t command_timeout;
        uint64_t ping_interval;

        uint64_t rng;
        char last_error[160];
};

/* One master of a cluster: a Redis of its own (command and subscriber
 * connection, reconnect, scripts), whose parent is the cluster's Redis. */
struct ClusterNode {
        Redis *parent;
        Redis *redis;
        ClusterAddress address;
};

/* A command sent through a cluster: kept until answered, to be sent again
 * where MOVED and ASK point or after TRYAGAIN. Its handler runs once. */
struct ClusterRequest {
        LIST_FIELDS(ClusterRequest, requests);
        Redis *redis;                   /* the cluster's */
        RedisReplyHandler cb;
        void *userdata;
        sds command;
        const RedisScript *script;
        int slot;                       /* -1: any master */
        unsigned redirects;             /* MOVED and ASK followed: a bound against loops */
        uint64_t deadline;              /* waiting for a master ends here */
        uint64_t retry_at;              /* waiting for the timer when not USEC_INFINITY */
};

struct ClusterBarrier {
        Redis *redis;
        unsigned n_pending;
        bool failed;
        RedisBarrierHandler cb;
        void *userdata;
};

#define CLUSTER_REDIRECTS_MAX 16
#define CLUSTER_DOWN_REFRESH_USEC (500 * 1000ULL)      /* the map, while not connected */

struct Cluster {
        ClusterAddress *seeds;
        size_t n_seeds, next_seed;
        ClusterNode **nodes;            /* the masters of the last map */
        size_t n_nodes;
        ClusterNode *slot_node[CLUSTER_SLOTS];
        ClusterNode **retired;          /* masters no more, until their commands are answered */
        size_t n_retired;
        ClusterNode *discovery;         /* asked for the map while no master is known or up */
        uint64_t discovery_deadline;
        bool refreshing;                /* CLUSTER SHARDS/SLOTS in flight */
        uint64_t refresh_at;
        ClusterRequest *head, *tail;
        sd_event_source *timer;         /* refresh, discovery timeout, retries */
};

static int cluster_new(Redis *r, char *const *seeds);
static void cluster_start(Redis *r);
static void cluster_shut_down(Redis *r);
static void cluster_destroy(Redis *r);
static int cluster_send(Redis *r, RedisReplyHandler cb, void *userdata, const char *cmd, size_t len,
                        const RedisScript *script, int slot);
static unsigned cluster_cancel(Redis *r, const void *userdata);
static int cluster_barrier(Redis *r, RedisBarrierHandler cb, void *userdata);
static void cluster_subscription_place(Redis *r, Subscription *s, bool subscribe);
static int command_slot(const char *cmd, size_t len);

static void conn_connect(RedisConn *c);
static void on_request_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void conn_refuse_auth(RedisConn *c, const redisReply *reply);
static void conn_check_role(RedisConn *c, const redisReply *reply);

/* ---- SHA-1, only to name scripts the way Redis does (FIPS 180-1) ---- */

static uint32_t rol32(uint32_t x, unsigned n) {
        return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p) {
        uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

        for (unsigned i = 0; i < 16; i++)
                w[i] = (uint32_t) p[4*i] << 24 | (uint32_t) p[4*i+1] << 16 | (uint32_t) p[4*i+2] << 8 | p[4*i+3];
        for (unsigned i = 16; i < 80; i++)
                w[i] = rol32(w[i-3] ^ w[i-8] ^ w[i-14] ^ w[i-16], 1);

        for (unsigned i = 0; i < 80; i++) {
                uint32_t f, k, t;

                if (i < 20) {
                        f = (b & c) | (~b & d);
                        k = 0x5A827999;
                } else if (i < 40) {
                        f = b ^ c ^ d;
                        k = 0x6ED9EBA1;
                } else if (i < 60) {
                        f = (b & c) | (b & d) | (c & d);
                        k = 0x8F1BBCDC;
                } else {
                        f = b ^ c ^ d;
                        k = 0xCA62C1D6;
                }
                t = rol32(a, 5) + f + e + k + w[i];
                e = d;
                d = c;
                c = rol32(b, 30);
                b = a;
                a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
}

static void sha1_hex(const void *data, size_t size, char out[41]) {
        uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
        const uint8_t *p = data;
        uint8_t tail[128] = {};
        size_t rest = size % 64, n_tail = rest < 56 ? 64 : 128;
        uint64_t bits = (uint64_t) size * 8;

        for (size_t i = 0; i + 64 <= size; i += 64)
                sha1_block(h, p + i);

        memcpy(tail, p + size - rest, rest);
        tail[rest] = 0x80;
        for (unsigned i = 0; i < 8; i++)
                tail[n_tail - 1 - i] = (uint8_t) (bits >> (8 * i));
        for (size_t i = 0; i < n_tail; i += 64)
                sha1_block(h, tail + i);

        for (unsigned i = 0; i < 5; i++)
                snprintf(out + 8 * i, 9, "%08x", h[i]);
}

void redis_script_init(RedisScript *s, const char *source) {
        s->source = source;
        s->size = strlen(source);
        sha1_hex(source, s->size, s->sha1);
}

/* ---- cluster hash slots (the Redis Cluster specification) ---- */

static uint16_t crc16_xmodem(const char *p, size_t len) {
        uint16_t crc = 0;

        for (size_t i = 0; i < len; i++) {
                crc ^= (uint16_t) ((uint8_t) p[i] << 8);
                for (unsigned b = 0; b < 8; b++)
                        crc = crc & 0x8000 ? (uint16_t) ((crc << 1) ^ 0x1021) : (uint16_t) (crc << 1);
        }
        return crc;
}

int redis_key_slot(const char *key, size_t len) {
        const char *open, *close;

        if (!key && len > 0)
                return -EINVAL;
        /* Redis hashes the whole key when '{' has no '}' after it or "{}"
         * is empty; only the first '{' counts. */
        open = len > 0 ? memchr(key, '{', len) : NULL;
        if (open) {
                close = memchr(open + 1, '}', len - (size_t) (open + 1 - key));
                if (close && close > open + 1)
                        return crc16_xmodem(open + 1, (size_t) (close - open - 1)) & (REDIS_CLUSTER_SLOTS - 1);
        }
        return crc16_xmodem(key, len) & (REDIS_CLUSTER_SLOTS - 1);
}

/* ---- small helpers ---- */

static Redis *redis_ref(Redis *r) {
        r->n_ref++;
        return r;
}

static void redis_destroy(Redis *r);

static void redis_unref(Redis *r) {
        if (r && --r->n_ref == 0)
                redis_destroy(r);
}

static void redis_unrefp(Redis **r) {
        redis_unref(*r);
}

static uint64_t redis_now(Redis *r) {
        uint64_t now = 0;

        (void) sd_event_now(r->event, CLOCK_MONOTONIC, &now);
        return now;
}

static uint64_t redis_random(Redis *r) {
        /* xorshift64*: jitter needs spread, not secrecy */
        r->rng ^= r->rng >> 12;
        r->rng ^= r->rng << 25;
        r->rng ^= r->rng >> 27;
        return r->rng * 0x2545F4914F6CDD1DULL;
}

static void redis_set_problem(Redis *r, RedisProblem p) {
        if (p == r->problem)
                return;
        r->problem = p;
        if (p != REDIS_PROBLEM_NONE && r->on_event && !r->shut_down)
                r->on_event(r, REDIS_EVENT_PROBLEM, r->userdata);
}

/* Records why a connection failed; the caller's problem replaces a plain
 * "unreachable". The event runs the owner's code: callers hold a reference. */
static void redis_fail(Redis *r, const char *what, const char *detail, RedisProblem p) {
        snprintf(r->last_error, sizeof(r->last_error), "%s connection: %s",
                 what, detail && *detail ? detail : "failed");
        redis_set_problem(r, p);
}

static bool error_is_auth_refusal(const char *e) {
        return strncmp(e, "WRONGPASS", 9) == 0 || strncmp(e, "NOAUTH", 6) == 0 || strncmp(e, "NOPERM", 6) == 0 ||
                strncmp(e, "ERR invalid password", 20) == 0 || strncmp(e, "ERR AUTH", 8) == 0;
}

static bool reply_is_auth_refusal(const redisReply *reply) {
        return reply && reply->type == REDIS_REPLY_ERROR && error_is_auth_refusal(reply->str);
}

/* hiredis closes a connection itself on an error reply nobody waits for:
 * on the subscriber connection that is how a refused SUBSCRIBE shows. */
static void redis_set_error(Redis *r, const char *what, const char *detail) {
        redis_fail(r, what, detail, detail && error_is_auth_refusal(detail) ?
                   REDIS_PROBLEM_CREDENTIALS : REDIS_PROBLEM_UNREACHABLE);
}

/* ac->errstr is NULL until hiredis copies an error there; c.errstr is an array. */
static const char *context_error(const redisAsyncContext *ac, const char *fallback) {
        return ac->c.errstr[0] ? ac->c.errstr : fallback;
}

static void conn_arm(RedisConn *c, uint64_t usec) {
        if (!c->timer)
                return;
        c->timer_at = usec;
        (void) sd_event_source_set_time(c->timer, usec);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

static bool reply_is_string(const redisReply *e) {
        return e && (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) && e->str;
}

/* ---- requests ---- */

static Request *request_free(Request *req) {
        if (req->command)
                sdsfree(req->command);
        free(req);
        return NULL;
}

static void request_link(RedisConn *c, Request *req) {
        bool was_empty = !c->head;

        req->conn = c;
        req->deadline = redis_now(c->redis) + c->redis->command_timeout;
        LIST_APPEND_TAIL(requests, c->head, c->tail, req);

        /* The watchdog only looks at the oldest request; make sure it is
         * armed for it. Later requests have later deadlines. */
        if (was_empty && req->deadline < c->timer_at)
                conn_arm(c, req->deadline);
}

static void request_unlink(RedisConn *c, Request *req) {
        LIST_REMOVE_TAIL(requests, c->head, c->tail, req);
}

/* Hands a formatted command to hiredis. On success req belongs to hiredis. */
static int request_send(RedisConn *c, Request *req, const char *cmd, size_t len) {
        if (!c->ac)
                return -ENOTCONN;
        if (redisAsyncFormattedCommand(c->ac, on_request_reply, req, cmd, len) != REDIS_OK)
                return -ENOTCONN;       /* hiredis refuses while disconnecting */
        request_link(c, req);
        return 0;
}

static int conn_send_internal(RedisConn *c, RequestKind kind, const char *format, ...) {
        Request *req;
        char *cmd = NULL;
        va_list ap;
        int len, r;

        va_start(ap, format);
        len = redisvFormatCommand(&cmd, format, ap);
        va_end(ap);
        if (len < 0)
                return -ENOMEM;

        req = calloc(1, sizeof(*req));
        if (!req) {
                redisFreeCommand(cmd);
                return -ENOMEM;
        }
        req->kind = kind;
        r = request_send(c, req, cmd, (size_t) len);
        redisFreeCommand(cmd);
        if (r < 0)
                request_free(req);
        return r;
}

/* Every request still waiting gets NULL now, in order. The requests stay
 * with hiredis, which frees them when it frees the context. */
static void conn_fail_requests(RedisConn *c) {
        Redis *r = c->redis;
        Request *req;

        while ((req = c->head)) {
                RedisReplyHandler cb;

                request_unlink(c, req);
                req->conn = NULL;
                cb = req->cb;
                req->cb = NULL;
                if (cb && req->kind == REQUEST_USER)
                        cb(r, NULL, req->userdata);
        }
}

/* Every barrier still waiting learns that it will not be confirmed. */
static void conn_fail_probes(RedisConn *c) {
        Redis *r = c->redis;
        Probe *p = c->probes;

        /* Detached first: a handler may tear down more of r. */
        c->probes = c->probes_tail = NULL;
        while (p) {
                Probe *next = p->next;

                if (p->cb)
                        p->cb(r, false, p->userdata);
                free(p);
                p = next;
        }
}

/* ---- state ---- */

static void redis_update_state(Redis *r) {
        bool up = !r->shut_down && r->cmd.state == CONN_UP && r->sub.state == CONN_UP;

        if (up == r->connected)
                return;
        r->connected = up;
        if (up) {
                r->was_connected = true;
                r->problem = REDIS_PROBLEM_NONE;
        }
        if (r->on_state && !r->shut_down)
                r->on_state(r, up, r->userdata);
}

static void conn_schedule_reconnect(RedisConn *c) {
        Redis *r = c->redis;
        uint64_t delay;

        /* ±25 % so that many daemons do not reconnect in lockstep. */
        delay = c->backoff * 3 / 4 + redis_random(r) % (c->backoff / 2 + 1);
        c->backoff = MIN(c->backoff * 2, REDIS_BACKOFF_MAX_USEC);
        conn_arm(c, redis_now(r) + delay);
}

static void resolve_unref(Resolve *q) {
        if (!q || __atomic_sub_fetch(&q->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        safe_close(q->fd[0]);
        safe_close(q->fd[1]);
        free(q->host);
        free(q);
}

static void conn_cancel_resolve(RedisConn *c) {
        c->resolve_source = sd_event_source_disable_unref(c->resolve_source);
        resolve_unref(c->resolve);
        c->resolve = NULL;
}

/* The one teardown path of a connection, whatever killed it. free_context is
 * false when hiredis frees the context itself (we are inside its connect or
 * disconnect callback, or it is already tearing the context down): freeing
 * it there again would be a double free. */
static void conn_detach(RedisConn *c, bool free_context) {
        Redis *r = c->redis;
        redisAsyncContext *ac = c->ac;

        c->ac = NULL;
        if (ac)
                ac->data = NULL;        /* from now on hiredis' callbacks for it are stale */
        conn_cancel_resolve(c);
        c->state = CONN_DOWN;
        c->last_read = 0;
        c->auth_pending = false;
        c->timer_at = USEC_INFINITY;
        if (!r->shut_down)
                conn_schedule_reconnect(c);
        /* The master may have moved: ask the sentinels before reconnecting. */
        if (r->sentinel)
                r->need_discovery = true;

        /* Both may run the owner's code, which may call redis_free(): every
         * caller holds a reference, and nothing below touches more than c's
         * list and the context we took. */
        redis_update_state(r);
        conn_fail_requests(c);
        conn_fail_probes(c);

        /* Deferred by hiredis until its callback returns when we are inside
         * one; the orphaned requests are freed then. */
        if (ac && free_context)
                redisAsyncFree(ac);
}

static void conn_set_up(RedisConn *c) {
        c->state = CONN_UP;
        c->backoff = REDIS_BACKOFF_MIN_USEC;
        c->last_ping = redis_now(c->redis);
        redis_update_state(c->redis);
}

/* ---- hiredis callbacks ---- */

/* Redis does not know the script (restarted, SCRIPT FLUSH): send the same
 * call as EVAL, which also caches it. The script and arguments follow the
 * "*N\r\n$7\r\nEVALSHA\r\n$40\r\n<sha1>\r\n" we sent. */
static int request_resend_as_eval(RedisConn *c, Request *req) {
        const char *p = memchr(req->command, '\n', sdslen(req->command)) + 1;
        size_t head = (size_t) (p - req->command), skip = head + 18 + 40 + 2;
        sds eval;
        int k;

        eval = sdsnewlen(req->command, head);
        if (eval)
                eval = sdscatprintf(eval, "$4\r\nEVAL\r\n$%zu\r\n", req->script->size);
        if (eval)
                eval = sdscatlen(eval, req->script->source, req->script->size);
        if (eval)
                eval = sdscatlen(eval, "\r\n", 2);
        if (eval)
                eval = sdscatlen(eval, req->command + skip, sdslen(req->command) - skip);
        sdsfree(req->command);
        req->command = NULL;
        req->script = NULL;     /* one fallback only */
        if (!eval)
                return -ENOMEM;

        k = request_send(c, req, eval, sdslen(eval));
        sdsfree(eval);
        return k;
}

static void on_request_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
        _cleanup_(redis_unrefp) Redis *r = NULL;
        redisReply *reply = reply_;
        Request *req = privdata;
        RedisConn *c = req->conn;
        RedisReplyHandler cb;
        void *userdata;

        if (!c) {
                /* Orphaned by conn_detach() or redis_cancel()-ed while the
                 * context died: the handler ran or must not run. */
                request_free(req);
                return;
        }
        r = redis_ref(c->redis);

        if (!reply) {
                /* hiredis passes NULL only while it frees a dying context. */
                redis_set_error(r, c->name, context_error(ac, "connection lost"));
                conn_detach(c, false);  /* calls this request's handler too */
                request_free(req);
                return;
        }

        c->last_read = redis_now(r);
        request_unlink(c, req);

        if (req->script && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
                if (request_resend_as_eval(c, req) >= 0)
                        return;
                reply = NULL;
        }

        switch (req->kind) {
        case REQUEST_AUTH:
                request_free(req);
                if (reply->type == REDIS_REPLY_ERROR)
                        conn_refuse_auth(c, reply);
                return;
        case REQUEST_ROLE:
                request_free(req);
                conn_check_role(c, reply);
                return;
        case REQUEST_SETUP:
                request_free(req);
                if (reply->type == REDIS_REPLY_ERROR) {
                        redis_set_error(r, c->name, reply->str);
                        conn_detach(c, true);
                } else if (c->state == CONN_SETUP)
                        conn_set_up(c);
                return;
        case REQUEST_PING:
                /* Any answer, even an error (e.g. LOADING), shows it lives. */
                request_free(req);
                return;
        case REQUEST_USER:
                break;
        }

        cb = req->cb;
        userdata = req->userdata;
        request_free(req);
        if (cb)
                cb(r, reply, userdata);

        /* A write reached a replica: the master moved under us. */
        if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "READONLY", 8) == 0 &&
            !r->shut_down && c->ac == ac) {
                redis_fail(r, c->name, "the server is a read-only replica (READONLY)", REDIS_PROBLEM_REPLICA);
                conn_detach(c, true);
        }
}

/* Any error to AUTH ends this connection; WRONGPASS and its kin are a
 * problem of their own, which the owner may treat as fatal. */
static void conn_refuse_auth(RedisConn *c, const redisReply *reply) {
        Redis *r = c->redis;
        char detail[160];

        snprintf(detail, sizeof detail, "AUTH refused: %s", reply->str);
        redis_fail(r, c->name, detail,
                   reply_is_auth_refusal(reply) ? REDIS_PROBLEM_CREDENTIALS : REDIS_PROBLEM_UNREACHABLE);
        if (!r->shut_down && c->state != CONN_DOWN)
                conn_detach(c, true);
}

/* ROLE answers ["master", ...], ["slave", ...] or ["sentinel", ...]. */
static void conn_check_role(RedisConn *c, const redisReply *reply) {
        Redis *r = c->redis;
        const redisReply *role;
        char detail[160];

        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(detail, sizeof detail, "ROLE refused: %s", reply->str);
                redis_fail(r, c->name, detail,
                           reply_is_auth_refusal(reply) ? REDIS_PROBLEM_CREDENTIALS : REDIS_PROBLEM_UNREACHABLE);
        } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
                   !reply_is_string(role = reply->element[0]))
                redis_set_error(r, c->name, "malformed ROLE answer");
        else if (!streq(role->str, "master")) {
                snprintf(detail, sizeof detail, "the server is a %s, not a master (ROLE)",
                         streq(role->str, "slave") ? "replica" : role->str);
                redis_fail(r, c->name, detail, REDIS_PROBLEM_REPLICA);
        } else
                return;
        if (!r->shut_down && c->state != CONN_DOWN)
                conn_detach(c, true);
}

/* Probes are answered in the order sent, each after everything sent
 * before it: the setup's SUBSCRIBEs, or those a barrier waits for. */
static void on_probe_reply(RedisConn *c, const redisAsyncContext *ac) {
        Redis *r = c->redis;
        _cleanup_(freep) Probe *p = c->probes;

        if (p) {
                c->probes = p->next;
                if (!c->probes)
                        c->probes_tail = NULL;
        }
        if (c->state == CONN_SETUP)
                conn_set_up(c);
        /* on_state() may have freed r or dropped the connection meanwhile. */
        if (p && p->cb)
                p->cb(r, !r->shut_down && c->ac == ac, p->userdata);
}

static void cluster_refresh_soon(Redis *r);
static void cluster_shard_lost(Redis *r, Redis *node, const char *name, size_t len, int slot);
static int parse_uint(const char *s, size_t n, unsigned max, unsigned *ret);
static Subscription **subscription_find(Redis *r, const char *name, size_t len, SubKind kind);

static bool reply_is_sunsubscribe_of_ours(Redis *r, const redisReply *reply) {
        return reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 && reply_is_string(reply->element[0]) &&
                strcasecmp(reply->element[0]->str, "sunsubscribe") == 0 && reply_is_string(reply->element[1]) &&
                *subscription_find(r, reply->element[1]->str, reply->element[1]->len, SUB_SHARD);
}

static void on_subscriber_reply(RedisConn *c, const redisReply *reply) {
        Redis *r = c->redis;
        RedisPush msg;

        /* Whatever arrives shows that Redis lives, also while a probe waits
         * behind a backlog of messages that we are slow to read. */
        c->last_read = redis_now(r);

        if (c->auth_pending) {
                c->auth_pending = false;
                if (reply->type == REDIS_REPLY_ERROR)
                        conn_refuse_auth(c, reply);
                return;
        }
        if (reply->type == REDIS_REPLY_ERROR && r->parent && strncmp(reply->str, "MOVED ", 6) == 0) {
                unsigned slot;
                const char *end = strchr(reply->str + 6, ' ');

                /* An SSUBSCRIBE sent where the slot no longer is: the
                 * cluster asks for the map and subscribes it where it
                 * lives now. */
                if (end && parse_uint(reply->str + 6, (size_t) (end - reply->str - 6), CLUSTER_SLOTS - 1, &slot) >= 0)
                        cluster_shard_lost(r->parent, r, NULL, 0, (int) slot);
                cluster_refresh_soon(r->parent);
                return;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                /* A refused subscription (an ACL, or a Redis before 7 that
                 * knows no SSUBSCRIBE): reconnecting retries it. */
                redis_set_error(r, c->name, reply->str);
                conn_detach(c, true);
                return;
        }

        switch (redis_subscriber_reply_parse(reply, &msg)) {
        case REDIS_PUSH_MESSAGE:
                if (r->on_message && !r->shut_down)
                        r->on_message(r, msg.channel, msg.data, msg.len, r->userdata);
                break;
        case REDIS_PUSH_PROBE:
                on_probe_reply(c, c->ac);
                break;
        default:
                /* Redis drops a sharded subscription whose slot migrated
                 * away with an "sunsubscribe" we did not ask for. */
                if (r->parent && reply_is_sunsubscribe_of_ours(r, reply)) {
                        cluster_shard_lost(r->parent, r, reply->element[1]->str, reply->element[1]->len, -1);
                        cluster_refresh_soon(r->parent);
                }
                break;
        }
}

/* The subscriber connection is read here, not by hiredis: hiredis 0.14's
 * pub/sub bookkeeping drops sharded messages and aborts on pushes it does
 * not expect (redis_sdevent_set_reader()). Replies come in the order sent,
 * so what answers what is known without it. */
static void on_subscriber_readable(redisAsyncContext *ac) {
        _cleanup_(redis_unrefp) Redis *r = NULL;
        RedisConn *c = ac->data;

        if (!c)
                return;
        r = redis_ref(c->redis);

        if (redisBufferRead(&ac->c) != REDIS_OK) {
                redis_set_error(r, c->name, context_error(ac, "connection lost"));
                conn_detach(c, true);
                return;
        }
        /* A handler may drop the connection (or free r): then ac is gone. */
        while (c->ac == ac) {
                void *reply = NULL;

                if (redisGetReplyFromReader(&ac->c, &reply) != REDIS_OK) {
                        redis_set_error(r, c->name, context_error(ac, "protocol error"));
                        conn_detach(c, true);
                        return;
                }
                if (!reply)
                        break;
                on_subscriber_reply(c, reply);
                freeReplyObject(reply);
        }
}

/* Straight into the output buffer: hiredis keeps no callback for it. */
static int conn_raw_send_argv(RedisConn *c, int argc, const char **argv, const size_t *argvlen) {
        sds cmd = NULL;
        long long len;
        int k;

        if (!c->ac)
                return -ENOTCONN;
        len = redisFormatSdsCommandArgv(&cmd, argc, argv, argvlen);
        if (len < 0)
                return -ENOMEM;
        k = redisAppendFormattedCommand(&c->ac->c, cmd, (size_t) len);
        sdsfree(cmd);
        if (k != REDIS_OK)
                return -ENOMEM;
        if (c->ac->ev.addWrite)
                c->ac->ev.addWrite(c->ac->ev.data);
        return 0;
}

RedisPushKind redis_subscriber_reply_parse(const redisReply *reply, RedisPush *ret) {
        const redisReply *kind, *channel, *data;

        /* Pushes and answers share the connection: the reply says which. */
        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
                return REDIS_PUSH_OTHER;
        kind = reply->element[0];
        if (!reply_is_string(kind))
                return REDIS_PUSH_OTHER;

        if (strcasecmp(kind->str, "message") == 0 || strcasecmp(kind->str, "pmessage") == 0 ||
            strcasecmp(kind->str, "smessage") == 0) {
                bool p = kind->str[0] == 'p' || kind->str[0] == 'P';

                if (reply->elements < (p ? 4u : 3u))
                        return REDIS_PUSH_OTHER;
                channel = reply->element[p ? 2 : 1];
                data = reply->element[p ? 3 : 2];
                if (!reply_is_string(channel) || !reply_is_string(data) || streq(channel->str, PROBE_CHANNEL))
                        return REDIS_PUSH_OTHER;
                *ret = (RedisPush) { .channel = channel->str, .data = data->str, .len = data->len };
                return REDIS_PUSH_MESSAGE;
        }

        if (strcasecmp(kind->str, "subscribe") == 0 && reply_is_string(reply->element[1]) &&
            streq(reply->element[1]->str, PROBE_CHANNEL))
                return REDIS_PUSH_PROBE;
        return REDIS_PUSH_OTHER;
}

static void on_connect(const redisAsyncContext *ac, int status) {
        _cleanup_(redis_unrefp) Redis *r = NULL;
        RedisConn *c = ac->data;

        /* Success shows in the setup replies. On failure hiredis frees the
         * context after we return and calls no disconnect callback. */
        if (!c || status == REDIS_OK)
                return;
        r = redis_ref(c->redis);
        redis_set_error(r, c->name, context_error(ac, "connect failed"));
        conn_detach(c, false);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
        _cleanup_(redis_unrefp) Redis *r = NULL;
        RedisConn *c = ac->data;

        if (!c)
                return;
        r = redis_ref(c->redis);
        redis_set_error(r, c->name, status == REDIS_OK ? "closed" : context_error(ac, "connection lost"));
        conn_detach(c, false);
}

/* ---- connecting ---- */

static int conn_subscribe_all(RedisConn *c) {
        Redis *r = c->redis;
        _cleanup_(freep) const char **argv = NULL;
        _cleanup_(freep) size_t *argvlen = NULL;
        int k;

        argv = calloc(SUBSCRIBE_BATCH + 1, sizeof(*argv));
        argvlen = calloc(SUBSCRIBE_BATCH + 1, sizeof(*argvlen));
        if (!argv || !argvlen)
                return -ENOMEM;

        for (SubKind kind = 0; kind < _SUB_KIND_MAX; kind++) {
                /* One channel per SSUBSCRIBE: a cluster refuses channels of
                 * several slots in one. */
                int batch = kind == SUB_SHARD ? 1 : SUBSCRIBE_BATCH, n = 1;

                argv[0] = sub_verb[kind][0];
                argvlen[0] = strlen(argv[0]);
                for (size_t b = 0; b < r->n_buckets; b++)
                        for (Subscription *s = r->buckets[b]; s; s = s->next) {
                                if (s->kind != kind)
                                        continue;
                                argv[n] = s->name;
                                argvlen[n++] = s->len;
                                if (n <= batch)
                                        continue;
                                k = conn_raw_send_argv(c, n, argv, argvlen);
                                if (k < 0)
                                        return k;
                                n = 1;
                        }
                if (n > 1) {
                        k = conn_raw_send_argv(c, n, argv, argvlen);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

static int conn_send_probe(RedisConn *c, RedisBarrierHandler cb, void *userdata) {
        uint64_t now = redis_now(c->redis);
        Probe *p;
        int k;

        if (!c->ac)
                return -ENOTCONN;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        k = conn_raw_send_argv(c, 2, (const char *[]) { "SUBSCRIBE", PROBE_CHANNEL }, NULL);
        if (k < 0) {
                free(p);
                return k;
        }
        *p = (Probe) { .deadline = now + c->redis->command_timeout, .cb = cb, .userdata = userdata };
        if (c->probes_tail)
                c->probes_tail->next = p;
        else
                c->probes = p;
        c->probes_tail = p;
        c->last_ping = now;
        if (p->deadline < c->timer_at)
                conn_arm(c, p->deadline);
        return 0;
}

/* AUTH goes first, before anything Redis would refuse without it; on the
 * subscriber connection its answer is the first reply. */
static int conn_send_auth(RedisConn *c) {
        Redis *r = c->redis;
        int k;

        if (!r->password)
                return 0;
        if (!c->subscriber)
                return r->user ? conn_send_internal(c, REQUEST_AUTH, "AUTH %s %s", r->user, r->password)
                               : conn_send_internal(c, REQUEST_AUTH, "AUTH %s", r->password);
        if (r->user)
                k = conn_raw_send_argv(c, 3, (const char *[]) { "AUTH", r->user, r->password }, NULL);
        else
                k = conn_raw_send_argv(c, 2, (const char *[]) { "AUTH", r->password }, NULL);
        if (k >= 0)
                c->auth_pending = true;
        return k;
}

/* Queues what makes a fresh connection usable; hiredis sends it as soon as
 * the socket connects, and the answers mark the connection up. */
static int conn_setup(RedisConn *c) {
        Redis *r = c->redis;
        int k;

        if (c->subscriber) {
                k = conn_send_auth(c);
                if (k < 0)
                        return k;
                /* Pub/sub ignores the database: no SELECT here. */
                k = conn_subscribe_all(c);
                if (k < 0)
                        return k;
                return conn_send_probe(c, NULL, NULL);
        }

        /* A cluster node is used as its slot map says: a replica answers MOVED. */
        k = conn_send_auth(c);
        if (k >= 0 && !r->parent)
                k = conn_send_internal(c, REQUEST_ROLE, "ROLE");
        if (k < 0)
                return k;
        if (r->db > 0)
                return conn_send_internal(c, REQUEST_SETUP, "SELECT %u", r->db);
        return conn_send_internal(c, REQUEST_SETUP, "PING");
}

static void conn_connect_to(RedisConn *c, const char *host) {
        Redis *r = c->redis;
        redisAsyncContext *ac;
        int k;

        ac = host ? redisAsyncConnect(host, r->port) : redisAsyncConnectUnix(r->path);
        if (!ac) {
                redis_set_error(r, c->name, "out of memory");
                conn_detach(c, false);
                return;
        }
        if (ac->err) {
                /* Failed before any I/O (e.g. no socket file): nothing attached yet. */
                redis_set_error(r, c->name, context_error(ac, "connect failed"));
                redisAsyncFree(ac);
                conn_detach(c, false);
                return;
        }
        if (host)
                (void) redisEnableKeepAlive(&ac->c);

        k = redis_sdevent_attach(ac, r->event);
        if (k < 0) {
                redis_set_error(r, c->name, strerror(-k));
                redisAsyncFree(ac);
                conn_detach(c, false);
                return;
        }
        if (c->subscriber) {
                k = redis_sdevent_set_reader(ac, on_subscriber_readable);
                if (k < 0) {
                        redis_set_error(r, c->name, strerror(-k));
                        redisAsyncFree(ac);
                        conn_detach(c, false);
                        return;
                }
        }
        ac->data = c;
        (void) redisAsyncSetConnectCallback(ac, on_connect);
        (void) redisAsyncSetDisconnectCallback(ac, on_disconnect);

        c->ac = ac;
        c->state = CONN_SETUP;
        c->timer_at = USEC_INFINITY;
        k = conn_setup(c);
        if (k < 0) {
                redis_set_error(r, c->name, strerror(-k));
                conn_detach(c, true);
        }
}

static void *resolve_thread(void *p) {
        Resolve *q = p;
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL, *pick;

        q->error = getaddrinfo(q->host, NULL, &hints, &ai);
        if (q->error == 0) {
                /* IPv4 first, as hiredis does for names. */
                pick = ai;
                for (struct addrinfo *i = ai; i; i = i->ai_next)
                        if (i->ai_family == AF_INET) {
                                pick = i;
                                break;
                        }
                if (pick->ai_family == AF_INET)
                        inet_ntop(AF_INET, &((struct sockaddr_in *) pick->ai_addr)->sin_addr,
                                  q->address, sizeof(q->address));
                else
                        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) pick->ai_addr)->sin6_addr,
                                  q->address, sizeof(q->address));
                freeaddrinfo(ai);
        }

        __atomic_store_n(&q->done, 1, __ATOMIC_RELEASE);
        (void) !write(q->fd[1], "", 1);
        resolve_unref(q);
        return NULL;
}

static int on_resolved(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        _cleanup_(redis_unrefp) Redis *r = NULL;
        RedisConn *c = userdata;
        Resolve *q = c->resolve;
        char address[INET6_ADDRSTRLEN];
        int error;

        if (!__atomic_load_n(&q->done, __ATOMIC_ACQUIRE))
                return 0;
        error = q->error;
        r = redis_ref(c->redis);
        memcpy(address, q->address, sizeof(address));
        conn_cancel_resolve(c);

        if (error != 0) {
                redis_set_error(r, c->name, gai_strerror(error));
                conn_detach(c, false);
                return 0;
        }
        conn_connect_to(c, address);
        return 0;
}

static int conn_start_resolve(RedisConn *c) {
        Redis *r = c->redis;
        Resolve *q;
        pthread_attr_t attr;
        pthread_t thread;
        sigset_t all, saved;
        int k;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->n_ref = 1;
        q->fd[0] = q->fd[1] = -EBADF;
        q->host = strdup(r->host);
        if (!q->host || pipe2(q->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
                resolve_unref(q);
                return -ENOMEM;
        }
        c->resolve = q;

        k = sd_event_add_io(r->event, &c->resolve_source, q->fd[0], EPOLLIN, on_resolved, c);
        if (k < 0)
                return k;

        /* The thread must not take the daemon's signals. */
        k = -pthread_attr_init(&attr);
        if (k < 0)
                return k;
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &saved);
        q->n_ref++;
        k = -pthread_create(&thread, &attr, resolve_thread, q);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        (void) pthread_attr_destroy(&attr);
        if (k < 0)
                q->n_ref--;
        return k;
}

static void conn_connect(RedisConn *c) {
        Redis *r = c->redis;
        int k;

        /* The answer connects both connections (redis_follow_master()). */
        if (r->sentinel && (r->need_discovery || !r->host)) {
                k = sentinel_discover(r->sentinel);
                if (k < 0) {
                        redis_set_error(r, "sentinel", strerror(-k));
                        conn_schedule_reconnect(c);
                }
                return;
        }

        if (!r->host || r->host_is_numeric) {
                conn_connect_to(c, r->host);
                return;
        }

        c->state = CONN_RESOLVING;
        k = conn_start_resolve(c);
        if (k < 0) {
                redis_set_error(r, c->name, strerror(-k));
                conn_detach(c, false);
                return;
        }
        conn_arm(c, redis_now(r) + r->command_timeout);
}

/* ---- sentinels ---- */

static void redis_update_address(Redis *r) {
        if (r->cluster)
                return;         /* named after its first seed */
        if (r->path)
                snprintf(r->address, sizeof r->address, "unix:%s", r->path);
        else if (r->host)
                snprintf(r->address, sizeof r->address, strchr(r->host, ':') ? "[%s]:%d" : "%s:%d", r->host, r->port);
        else
                r->address[0] = '\0';
}

static void conn_connect_now(RedisConn *c) {
        c->backoff = REDIS_BACKOFF_MIN_USEC;
        c->timer_at = USEC_INFINITY;
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        conn_connect(c);
}

/* Connects both connections to host:port, dropping any to elsewhere. */
static void redis_follow_master(Redis *r, const char *host, int port) {
        unsigned char addr[sizeof(struct in6_addr)];
        bool moved = !r->host || !streq(r->host, host) || r->port != port;
        bool first = !r->host;

        if (moved) {
                char *copy = strdup(host);

                if (!copy) {
                        redis_set_error(r, "sentinel", "out of memory");
                        return;
                }
                free(r->host);
                r->host = copy;
                r->port = port;
                r->host_is_numeric = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
                redis_update_address(r);
                if (!first && r->on_event && !r->shut_down)
                        r->on_event(r, REDIS_EVENT_MASTER_SWITCHED, r->userdata);
        }

        for (RedisConn *c = &r->cmd; c; c = c == &r->cmd ? &r->sub : NULL) {
                if (r->shut_down)
                        return;
                if (moved && c->state != CONN_DOWN) {
                        redis_set_error(r, c->name, "the master moved");
                        conn_detach(c, true);
                }
                r->need_discovery = false;
                if (r->shut_down || c->state != CONN_DOWN)
                        continue;
                /* The same answer again (a stale sentinel naming a replica)
                 * keeps the backoff: a pending retry stays pending. */
                if (moved)
                        conn_connect_now(c);
                else if (c->timer_at == USEC_INFINITY)
                        conn_connect(c);
        }
}

static void on_sentinel_master(Sentinel *s, int error, const char *host, int port, const char *detail, void *userdata) {
        _cleanup_(redis_unrefp) Redis *r = redis_ref(userdata);

        if (error >= 0) {
                redis_follow_master(r, host, port);
                return;
        }
        /* The connections' backoff timers ask again. */
        redis_fail(r, "sentinel", detail,
                   error == -EACCES ? REDIS_PROBLEM_CREDENTIALS : REDIS_PROBLEM_UNREACHABLE);
        for (RedisConn *c = &r->cmd; c && !r->shut_down; c = c == &r->cmd ? &r->sub : NULL)
                if (c->state == CONN_DOWN && c->timer_at == USEC_INFINITY)
                        conn_schedule_reconnect(c);
}

static void on_sentinel_switch(Sentinel *s, const char *host, int port, void *userdata) {
        _cleanup_(redis_unrefp) Redis *r = redis_ref(userdata);

        redis_follow_master(r, host, port);
}

/* ---- the connection timer: backoff, connect timeout, watchdog ---- */

/* Bytes that arrived and wait for us to read them. */
static bool conn_has_unread(RedisConn *c) {
        int n = 0;

        return c->ac && c->ac->c.fd >= 0 && ioctl(c->ac->c.fd, FIONREAD, &n) >= 0 && n > 0;
}

/* A connection is dead when something is awaited and nothing at all has
 * arrived for the timeout. An answer that is late only because it is
 * queued behind replies or messages we are still reading (a busy daemon
 * behind a pub/sub backlog) is not Redis' fault: reconnecting for it would
 * throw that backlog away. Nor is one that we could not see because our
 * loop stalled (the timer fired late): the command may not even have been
 * written yet. */
static void conn_watchdog(RedisConn *c, uint64_t now, bool stalled) {
        Redis *r = c->redis;
        uint64_t deadline = USEC_INFINITY, idle_since;

        if (c->subscriber && c->probes)
                deadline = c->probes->deadline;
        else if (!c->subscriber && c->head)
                deadline = c->head->deadline;
        if (deadline != USEC_INFINITY) {
                if (c->last_read > 0)
                        deadline = MAX(deadline, c->last_read + r->command_timeout);
                if (now >= deadline && (stalled || conn_has_unread(c)))
                        deadline = now + r->command_timeout;
                if (now >= deadline) {
                        redis_set_error(r, c->name, "no answer within the timeout");
                        conn_detach(c, true);
                } else
                        conn_arm(c, deadline);
                return;
        }

        /* Idle: a PING notices a Redis that vanished without a FIN. What
         * keeps arriving shows it is there, so a busy connection is not
         * probed at all. */
        idle_since = MAX(c->last_ping, c->last_read);
        if (c->state == CONN_UP && now >= idle_since + r->ping_interval) {
                int k = c->subscriber ? conn_send_probe(c, NULL, NULL) : conn_send_internal(c, REQUEST_PING, "PING");
                c->last_ping = now;
                if (k >= 0)
                        return;
                idle_since = now;
        }
        conn_arm(c, idle_since + r->ping_interval);
}

static int on_conn_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        _cleanup_(redis_unrefp) Redis *r = NULL;
        RedisConn *c = userdata;
        uint64_t now;

        r = redis_ref(c->redis);
        c->timer_at = USEC_INFINITY;
        now = redis_now(r);

        switch (c->state) {
        case CONN_DOWN:
                conn_connect(c);
                break;
        case CONN_RESOLVING:
                redis_set_error(r, c->name, "host name lookup timed out");
                conn_detach(c, false);
                break;
        case CONN_SETUP:
        case CONN_UP:
                conn_watchdog(c, now, now > usec + r->command_timeout / 4);
                break;
        }
        return 0;
}

/* ---- URL ---- */

/* Leading zeros may be any number of them, as config_redis_is_valid()
 * allows: v never exceeds max (at most 65535 here), so it cannot overflow. */
static int parse_uint(const char *s, size_t n, unsigned max, unsigned *ret) {
        unsigned v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (s[i] - '0');
                if (v > max)
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

static bool host_name_is_valid(const char *s, size_t n) {
        if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
                        return false;
        return true;
}

static int redis_parse_unix(Redis *r, const char *s) {
        const char *q = strchr(s, '?');
        size_t n = q ? (size_t) (q - s) : strlen(s);

        if (n == 0 || s[0] != '/' || n >= sizeof(((struct sockaddr_un *) NULL)->sun_path) ||
            memchr(s, '\0', n))
                return -EINVAL;
        if (q) {
                if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), REDIS_DB_MAX, &r->db) < 0)
                        return -EINVAL;
        }
        r->path = strndup(s, n);
        return r->path ? 0 : -ENOMEM;
}

static int redis_parse_tcp(Redis *r, const char *s) {
        const char *slash = strchr(s, '/'), *end = slash ?: s + strlen(s), *host = s, *colon;
        size_t hn;
        unsigned port = REDIS_DEFAULT_PORT;
        char buf[INET6_ADDRSTRLEN + 1];
        unsigned char addr[sizeof(struct in6_addr)];

        if (*s == '[') {
                const char *close = memchr(s, ']', (size_t) (end - s));
                if (!close)
                        return -EINVAL;
                host = s + 1;
                hn = (size_t) (close - host);
                colon = close + 1 < end ? close + 1 : NULL;
                if (colon && *colon != ':')
                        return -EINVAL;
                if (hn == 0 || hn >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, host, hn);
                buf[hn] = '\0';
                if (inet_pton(AF_INET6, buf, addr) != 1)
                        return -EINVAL;
                r->host_is_numeric = true;
        } else {
                colon = memchr(s, ':', (size_t) (end - s));
                hn = (size_t) ((colon ?: end) - s);
                if (!host_name_is_valid(s, hn))
                        return -EINVAL;
        }
        if (colon && parse_uint(colon + 1, (size_t) (end - colon - 1), 65535, &port) < 0)
                return -EINVAL;
        if (port == 0)
                return -EINVAL;
        if (slash && parse_uint(slash + 1, strlen(slash + 1), REDIS_DB_MAX, &r->db) < 0)
                return -EINVAL;

        r->port = (int) port;
        /* "localhost" needs no lookup; a numeric address never asks NSS. */
        if (hn == 9 && strncasecmp(host, "localhost", 9) == 0) {
                r->host = strdup("127.0.0.1");
                r->host_is_numeric = true;
        } else {
                r->host = strndup(host, hn);
                if (r->host && !r->host_is_numeric)
                        r->host_is_numeric = inet_pton(AF_INET, r->host, addr) == 1;
        }
        return r->host ? 0 : -ENOMEM;
}

/* ---- public ---- */

static void conn_init(Redis *r, RedisConn *c, const char *name, bool subscriber) {
        c->redis = r;
        c->name = name;
        c->subscriber = subscriber;
        c->state = CONN_DOWN;
        c->backoff = REDIS_BACKOFF_MIN_USEC;
        c->timer_at = USEC_INFINITY;
}

static int conn_new_timer(RedisConn *c) {
        int k;

        k = sd_event_add_time(c->redis->event, &c->timer, CLOCK_MONOTONIC, USEC_INFINITY,
                              REDIS_TIMER_ACCURACY_USEC, on_conn_timer, c);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(c->timer, c->subscriber ? "redis-sub-timer" : "redis-cmd-timer");
        return 0;
}

static int redis_set_credentials(Redis *r, const RedisOptions *o) {
        if (o->user && (!*o->user || !o->password))
                return -EINVAL;
        if (o->user) {
                r->user = strdup(o->user);
                if (!r->user)
                        return -ENOMEM;
        }
        if (o->password) {
                r->password = strdup(o->password);
                if (!r->password)
                        return -ENOMEM;
        }
        return 0;
}

int redis_new(Redis **ret, sd_event *e, const char *url,
              RedisStateHandler on_state, RedisMessageHandler on_message, void *userdata) {
        return redis_new_with_options(ret, e, &(const RedisOptions) { .url = url }, on_state, on_message, userdata);
}

int redis_new_with_options(Redis **ret, sd_event *e, const RedisOptions *o,
                           RedisStateHandler on_state, RedisMessageHandler on_message, void *userdata) {
        const char *url;
        Redis *r;
        int k;

        if (!ret || !e || !o || !!o->url + !!o->sentinels + !!o->cluster != 1 || (o->sentinels && !o->master_name))
                return -EINVAL;
        if (o->sentinel_user && !o->sentinel_password)
                return -EINVAL;
        url = o->url;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->n_ref = 1;
        r->event = sd_event_ref(e);
        r->on_state = on_state;
        r->on_message = on_message;
        r->on_event = o->on_event;
        r->on_shard = o->on_shard;
        r->userdata = userdata;
        r->command_timeout = REDIS_COMMAND_TIMEOUT_USEC;
        r->ping_interval = REDIS_PING_INTERVAL_USEC;
        conn_init(r, &r->cmd, "command", false);
        conn_init(r, &r->sub, "subscriber", true);
        if (getrandom(&r->rng, sizeof(r->rng), GRND_NONBLOCK) != sizeof(r->rng) || r->rng == 0)
                r->rng = (uintptr_t) r ^ redis_now(r) ^ 0x9E3779B97F4A7C15ULL;

        if (o->cluster)
                k = cluster_new(r, o->cluster);
        else if (!url)
                k = sentinel_new(&r->sentinel, e, o->sentinels, o->master_name, o->sentinel_user,
                                 o->sentinel_password, on_sentinel_master, on_sentinel_switch, r);
        else if (strncmp(url, "unix:", 5) == 0)
                k = redis_parse_unix(r, url + 5);
        else if (strncmp(url, "redis://", 8) == 0)
                k = redis_parse_tcp(r, url + 8);
        else
                k = -EINVAL;
        if (k >= 0)
                k = redis_set_credentials(r, o);
        redis_update_address(r);
        if (k >= 0)
                k = conn_new_timer(&r->cmd);
        if (k >= 0)
                k = conn_new_timer(&r->sub);
        if (k >= 0) {
                r->n_buckets = 64;
                r->buckets = calloc(r->n_buckets, sizeof(*r->buckets));
                if (!r->buckets)
                        k = -ENOMEM;
        }
        if (k < 0) {
                redis_destroy(r);
                return k;
        }

        *ret = r;
        return 0;
}

static void redis_destroy(Redis *r) {
        for (size_t b = 0; b < r->n_buckets; b++)
                for (Subscription *s = r->buckets[b], *next; s; s = next) {
                        next = s->next;
                        free(s);
                }
        free(r->buckets);
        cluster_destroy(r);
        r->cmd.timer = sd_event_source_disable_unref(r->cmd.timer);
        r->sub.timer = sd_event_source_disable_unref(r->sub.timer);
        free(r->host);
        free(r->path);
        free(r->user);
        if (r->password)
                explicit_bzero(r->password, strlen(r->password));
        free(r->password);
        sd_event_unref(r->event);
        free(r);
}

Redis *redis_free(Redis *r) {
        if (!r || r->shut_down)
                return NULL;

        r->shut_down = true;
        r->connected = false;
        if (r->cluster) {
                cluster_shut_down(r);
                redis_unref(r);
                return NULL;
        }
        r->sentinel = sentinel_free(r->sentinel);
        r->cmd.timer = sd_event_source_disable_unref(r->cmd.timer);
        r->sub.timer = sd_event_source_disable_unref(r->sub.timer);
        /* Pending handlers get NULL now; hiredis frees the contexts now, or
         * right after its callback returns when we are inside one. */
        conn_detach(&r->cmd, true);
        conn_detach(&r->sub, true);
        redis_unref(r);
        return NULL;
}

int redis_start(Redis *r) {
        if (!r || r->shut_down)
                return -EINVAL;
        if (r->started)
                return 0;
        r->started = true;
        if (r->cluster) {
                cluster_start(r);
                return 0;
        }
        conn_connect(&r->cmd);
        conn_connect(&r->sub);
        return 0;
}

int redis_set_timeouts(Redis *r, uint64_t command_timeout_usec, uint64_t ping_interval_usec) {
        if (!r || command_timeout_usec < 1000 || ping_interval_usec < 1000)
                return -EINVAL;
        /* Applies to commands and pings sent from now on. */
        r->command_timeout = command_timeout_usec;
        r->ping_interval = ping_interval_usec;
        for (size_t i = 0; r->cluster && i < r->cluster->n_nodes; i++)
                (void) redis_set_timeouts(r->cluster->nodes[i]->redis, command_timeout_usec, ping_interval_usec);
        return 0;
}

bool redis_is_connected(Redis *r) {
        return r && r->connected;
}

RedisProblem redis_problem(Redis *r) {
        return r ? r->problem : REDIS_PROBLEM_NONE;
}

const char *redis_problem_to_string(RedisProblem p) {
        switch (p) {
        case REDIS_PROBLEM_NONE:
                return "ok";
        case REDIS_PROBLEM_UNREACHABLE:
                return "redis unreachable";
        case REDIS_PROBLEM_REPLICA:
                return "redis is a replica";
        case REDIS_PROBLEM_CREDENTIALS:
                return "redis refused our credentials";
        }
        return "redis unusable";
}

bool redis_was_connected(Redis *r) {
        return r && r->was_connected;
}

const char *redis_master_address(Redis *r) {
        return r ? r->address : "";
}

const char *redis_last_error(Redis *r) {
        return r ? r->last_error : "";
}

static bool command_is_allowed(const char *cmd, size_t len) {
        static const char *const forbidden[] = {
                "SELECT", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                "SUNSUBSCRIBE", "MONITOR", "QUIT", "RESET", "HELLO", "SYNC", "PSYNC",
        };
        const char *p, *end = cmd + len;
        unsigned n;

        /* "*<argc>\r\n$<len>\r\n<name>\r\n": hiredis asserts on anything else. */
        if (len < 4 || cmd[0] != '*' || cmd[1] == '0')
                return false;
        p = memchr(cmd, '\n', len);
        if (!p || end - p < 2 || p[1] != '$')
                return false;
        p += 2;
        n = 0;
        for (; p < end && *p >= '0' && *p <= '9' && n < 1000; p++)
                n = n * 10 + (unsigned) (*p - '0');
        if ((size_t) (end - p) < 2 + (size_t) n || p[0] != '\r')
                return false;
        p += 2;

        for (size_t i = 0; i < ELEMENTSOF(forbidden); i++)
                if (strlen(forbidden[i]) == n && strncasecmp(p, forbidden[i], n) == 0)
                        return false;
        return true;
}

/* keep: the command as an sds that the request takes for a NOSCRIPT
 * fallback; slot: a script's. */
static int redis_send_user(Redis *r, RedisReplyHandler cb, void *userdata,
                           const char *cmd, size_t len, const RedisScript *script, sds keep, int slot) {
        Request *req;
        int k;

        if (!command_is_allowed(cmd, len))
                return -EINVAL;
        if (!r->connected)
                return -ENOTCONN;
        if (r->cluster) {
                /* It copies the command: keep stays the caller's. */
                return cluster_send(r, cb, userdata, cmd, len, script, script ? slot : command_slot(cmd, len));
        }

        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->kind = REQUEST_USER;
        req->cb = cb;
        req->userdata = userdata;
        req->script = script;
        k = request_send(&r->cmd, req, cmd, len);
        if (k < 0) {
                request_free(req);
                return k;
        }
        req->command = keep;
        return 0;
}

int redis_command_argv(Redis *r, RedisReplyHandler cb, void *userdata,
                       int argc, const char **argv, const size_t *argvlen) {
        sds cmd = NULL;
        long long len;
        int k;

        if (!r || argc < 1 || !argv)
                return -EINVAL;
        if (!r->connected)
                return -ENOTCONN;

        len = redisFormatSdsCommandArgv(&cmd, argc, argv, argvlen);
        if (len < 0)
                return -ENOMEM;
        k = redis_send_user(r, cb, userdata, cmd, (size_t) len, NULL, NULL, -1);
        sdsfree(cmd);
        return k;
}

int redis_command(Redis *r, RedisReplyHandler cb, void *userdata, const char *format, ...) {
        char *cmd = NULL;
        va_list ap;
        int len, k;

        if (!r || !format)
                return -EINVAL;
        if (!r->connected)
                return -ENOTCONN;

        va_start(ap, format);
        len = redisvFormatCommand(&cmd, format, ap);
        va_end(ap);
        if (len == -2)
                return -EINVAL;
        if (len < 0)
                return -ENOMEM;
        k = redis_send_user(r, cb, userdata, cmd, (size_t) len, NULL, NULL, -1);
        redisFreeCommand(cmd);
        return k;
}

/* The one slot of a script's keys, -1 without keys. Checked in every mode,
 * so that a layout that would fail on a cluster fails on one Redis too. */
static int keys_slot(int nkeys, const char **keys, const size_t *keylen, int *ret_slot) {
        int slot = -1;

        for (int i = 0; i < nkeys; i++) {
                int k;

                if (!keys[i])
                        return -EINVAL;
                k = redis_key_slot(keys[i], keylen ? keylen[i] : strlen(keys[i]));
                if (k < 0)
                        return k;
                if (slot >= 0 && k != slot)
                        return -EXDEV;
                slot = k;
        }
        *ret_slot = slot;
        return 0;
}

int redis_eval(Redis *r, const RedisScript *s, RedisReplyHandler cb, void *userdata,
               int nkeys, int nargs, const char **argv, const size_t *argvlen) {
        _cleanup_(freep) const char **v = NULL;
        _cleanup_(freep) size_t *vlen = NULL;
        char nkeys_str[12];
        sds cmd = NULL;
        int n, k, slot;
        long long len;

        if (!r || !s || !s->source || nkeys < 0 || nargs < 0 || nkeys > INT_MAX / 2 - 3 ||
            nargs > INT_MAX / 2 - 3 || (nkeys + nargs > 0 && !argv))
                return -EINVAL;
        k = keys_slot(nkeys, argv, argvlen, &slot);
        if (k < 0)
                return k;
        if (!r->connected)
                return -ENOTCONN;

        n = 3 + nkeys + nargs;
        v = calloc((size_t) n, sizeof(*v));
        vlen = calloc((size_t) n, sizeof(*vlen));
        if (!v || !vlen)
                return -ENOMEM;
        snprintf(nkeys_str, sizeof(nkeys_str), "%d", nkeys);
        v[0] = "EVALSHA";
        v[1] = s->sha1;
        v[2] = nkeys_str;
        for (int i = 0; i < n; i++) {
                if (i >= 3)
                        v[i] = argv[i - 3];
                vlen[i] = i >= 3 && argvlen ? argvlen[i - 3] : strlen(v[i]);
        }

        len = redisFormatSdsCommandArgv(&cmd, n, v, vlen);
        if (len < 0)
                return -ENOMEM;
        /* The request keeps the command for a NOSCRIPT fallback. */
        k = redis_send_user(r, cb, userdata, cmd, (size_t) len, s, cmd, slot);
        if (k < 0 || r->cluster)
                sdsfree(cmd);
        return k;
}

int redis_subscriber_barrier(Redis *r, RedisBarrierHandler cb, void *userdata) {
        if (!r || !cb || r->shut_down)
                return -EINVAL;
        if (r->cluster)
                return cluster_barrier(r, cb, userdata);
        /* While connecting the probe queues behind the setup's SUBSCRIBEs. */
        if (r->sub.state != CONN_SETUP && r->sub.state != CONN_UP)
                return -ENOTCONN;
        return conn_send_probe(&r->sub, cb, userdata);
}

unsigned redis_cancel(Redis *r, const void *userdata) {
        unsigned n = 0;

        if (!r)
                return 0;
        if (r->cluster)
                return cluster_cancel(r, userdata);
        LIST_FOREACH(requests, req, r->cmd.head)
                if (req->kind == REQUEST_USER && req->userdata == userdata && req->cb) {
                        req->cb = NULL;
                        n++;
                }
        return n;
}

/* ---- subscriptions ---- */

static size_t subscription_hash(const char *name, size_t len, SubKind kind) {
        uint64_t h = 0xcbf29ce484222325ULL + kind;      /* FNV-1a */

        for (size_t i = 0; i < len; i++)
                h = (h ^ (uint8_t) name[i]) * 0x100000001b3ULL;
        return (size_t) (h ^ (h >> 32));
}

static Subscription **subscription_find(Redis *r, const char *name, size_t len, SubKind kind) {
        Subscription **s = &r->buckets[subscription_hash(name, len, kind) & (r->n_buckets - 1)];

        for (; *s; s = &(*s)->next)
                if ((*s)->kind == kind && (*s)->len == len && memcmp((*s)->name, name, len) == 0)
                        break;
        return s;
}

static void subscriptions_grow(Redis *r) {
        size_t n = r->n_buckets * 2;
        Subscription **b = calloc(n, sizeof(*b));

        if (!b)
                return;         /* longer chains, still correct */
        for (size_t i = 0; i < r->n_buckets; i++)
                for (Subscription *s = r->buckets[i], *next; s; s = next) {
                        size_t h = subscription_hash(s->name, s->len, s->kind) & (n - 1);
                        next = s->next;
                        s->next = b[h];
                        b[h] = s;
                }
        free(r->buckets);
        r->buckets = b;
        r->n_buckets = n;
}

static void subscription_send(Redis *r, const char *verb, const Subscription *s) {
        const char *argv[2] = { verb, s->name };
        size_t argvlen[2] = { strlen(verb), s->len };

        /* While down (or still connecting) conn_setup() sends them all. If
         * this fails, the context is dying and the reconnect will. */
        if (r->sub.ac)
                (void) conn_raw_send_argv(&r->sub, 2, argv, argvlen);
}

static int redis_subscribe_full(Redis *r, const char *name, SubKind kind) {
        Subscription **p, *s;
        size_t len;

        if (!r || !name || r->shut_down)
                return -EINVAL;
        len = strlen(name);
        if (len == 0 || len > REDIS_CHANNEL_MAX || streq(name, PROBE_CHANNEL))
                return -EINVAL;

        p = subscription_find(r, name, len, kind);
        if (*p) {
                if ((*p)->n_ref == UINT_MAX)
                        return -EOVERFLOW;
                (*p)->n_ref++;
                return 0;
        }
        if (r->n_subscriptions >= REDIS_SUBSCRIPTIONS_MAX)
                return -ENOSPC;

        s = malloc(sizeof(*s) + len + 1);
        if (!s)
                return -ENOMEM;
        *s = (Subscription) { .n_ref = 1, .kind = kind, .len = len };
        memcpy(s->name, name, len + 1);
        *p = s;
        r->n_subscriptions++;
        if (r->cluster)
                cluster_subscription_place(r, s, true);
        else
                subscription_send(r, sub_verb[kind][0], s);

        if (r->n_subscriptions > r->n_buckets)
                subscriptions_grow(r);
        return 0;
}

static int redis_unsubscribe_full(Redis *r, const char *name, SubKind kind) {
        Subscription **p, *s;

        if (!r || !name || r->shut_down)
                return -EINVAL;

        p = subscription_find(r, name, strlen(name), kind);
        s = *p;
        if (!s)
                return -ENOENT;
        if (--s->n_ref > 0)
                return 0;

        *p = s->next;
        r->n_subscriptions--;
        if (r->cluster)
                cluster_subscription_place(r, s, false);
        else
                subscription_send(r, sub_verb[kind][1], s);
        free(s);
        return 0;
}

int redis_subscribe(Redis *r, const char *channel) {
        return redis_subscribe_full(r, channel, SUB_CHANNEL);
}

int redis_unsubscribe(Redis *r, const char *channel) {
        return redis_unsubscribe_full(r, channel, SUB_CHANNEL);
}

int redis_psubscribe(Redis *r, const char *pattern) {
        return redis_subscribe_full(r, pattern, SUB_PATTERN);
}

int redis_punsubscribe(Redis *r, const char *pattern) {
        return redis_unsubscribe_full(r, pattern, SUB_PATTERN);
}

int redis_ssubscribe(Redis *r, const char *channel) {
        return redis_subscribe_full(r, channel, SUB_SHARD);
}

int redis_sunsubscribe(Redis *r, const char *channel) {
        return redis_unsubscribe_full(r, channel, SUB_SHARD);
}

/* ---- cluster: routing ---- */

/* The first max arguments of a formatted command; how many there are. */
static int command_args(const char *cmd, size_t len, const char **arg, size_t *arglen, int max) {
        const char *p = cmd, *end = cmd + len;
        unsigned long argc = 0;
        int n = 0;

        if (len < 1 || *p != '*')
                return 0;
        for (p++; p < end && *p >= '0' && *p <= '9' && argc < INT_MAX; p++)
                argc = argc * 10 + (unsigned long) (*p - '0');
        for (p += 2; n < max && (unsigned long) n < argc && p < end && *p == '$'; n++) {
                unsigned long l = 0;

                for (p++; p < end && *p >= '0' && *p <= '9' && l < len; p++)
                        l = l * 10 + (unsigned long) (*p - '0');
                p += 2;
                if (p > end || (size_t) (end - p) < l)
                        break;
                arg[n] = p;
                arglen[n] = l;
                p += l + 2;
        }
        return n;
}

static bool arg_is(const char *a, size_t n, const char *name) {
        return strlen(name) == n && strncasecmp(a, name, n) == 0;
}

/* Where a command goes: the slot of its key, or -1 for any master. The
 * key is the first argument but for the commands here, which name none
 * (or, for scripts, name their keys after the count). */
static int command_slot(const char *cmd, size_t len) {
        static const char *const keyless[] = {
                "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DBSIZE", "ECHO", "FLUSHALL", "FLUSHDB",
                "FUNCTION", "INFO", "KEYS", "LASTSAVE", "LATENCY", "MEMORY", "PING", "PUBLISH",
                "RANDOMKEY", "ROLE", "SCAN", "SCRIPT", "SLOWLOG", "TIME", "WAIT",
        };
        static const char *const scripts[] = {
                "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO",
        };
        const char *arg[4];
        size_t arglen[4];
        int n = command_args(cmd, len, arg, arglen, 4);

        if (n < 2)
                return -1;
        for (size_t i = 0; i < ELEMENTSOF(keyless); i++)
                if (arg_is(arg[0], arglen[0], keyless[i]))
                        return -1;
        for (size_t i = 0; i < ELEMENTSOF(scripts); i++)
                if (arg_is(arg[0], arglen[0], scripts[i]))
                        return n >= 4 && !(arglen[2] == 1 && arg[2][0] == '0') ?
                                redis_key_slot(arg[3], arglen[3]) : -1;
        return redis_key_slot(arg[1], arglen[1]);
}

static ClusterNode *cluster_find(Cluster *cl, const ClusterAddress *a) {
        for (size_t i = 0; i < cl->n_nodes; i++)
                if (cl->nodes[i]->address.port == a->port && streq(cl->nodes[i]->address.host, a->host))
                        return cl->nodes[i];
        return NULL;
}

/* A master for keyless commands: the first that is up. */
static ClusterNode *cluster_any(Cluster *cl) {
        for (size_t i = 0; i < cl->n_nodes; i++)
                if (redis_is_connected(cl->nodes[i]->redis))
                        return cl->nodes[i];
        return NULL;
}

static void cluster_arm(Redis *r) {
        Cluster *cl = r->cluster;
        uint64_t at = cl->refresh_at;

        if (!cl->timer || r->shut_down)
                return;
        if (cl->discovery)
                at = MIN(at, cl->discovery_deadline);
        LIST_FOREACH(requests, q, cl->head)
                at = MIN(at, q->retry_at);
        if (at == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(cl->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(cl->timer, at);
        (void) sd_event_source_set_enabled(cl->timer, SD_EVENT_ONESHOT);
}

static void cluster_refresh_soon(Redis *r) {
        Cluster *cl = r->cluster;

        if (!cl || r->shut_down)
                return;
        cl->refresh_at = MIN(cl->refresh_at, redis_now(r));
        cluster_arm(r);
}

static void cluster_finish(Redis *r, ClusterRequest *q, const redisReply *reply) {
        RedisReplyHandler cb = q->cb;
        void *userdata = q->userdata;

        LIST_REMOVE_TAIL(requests, r->cluster->head, r->cluster->tail, q);
        sdsfree(q->command);
        free(q);
        if (cb)
                cb(r, reply, userdata);
}

static void cluster_wait(Redis *r, ClusterRequest *q) {
        q->retry_at = redis_now(r) + REDIS_CLUSTER_RETRY_USEC;
        cluster_arm(r);
}

static void on_cluster_reply(Redis *node, const redisReply *reply, void *userdata);
static void cluster_sweep_retired(Redis *r);

static int cluster_node_send(ClusterNode *n, ClusterRequest *q, bool asking) {
        sds keep = NULL;
        int k;

        if (!n || !redis_is_connected(n->redis))
                return -ENOTCONN;
        /* ASKING lets the next command on this connection into a slot the
         * node is importing. */
        if (asking) {
                k = redis_send_user(n->redis, NULL, NULL, "*1\r\n$6\r\nASKING\r\n", 16, NULL, NULL, -1);
                if (k < 0)
                        return k;
        }
        if (q->script) {
                keep = sdsdup(q->command);
                if (!keep)
                        return -ENOMEM;
        }
        k = redis_send_user(n->redis, on_cluster_reply, q, q->command, sdslen(q->command), q->script, keep, q->slot);
        if (k < 0) {
                sdsfree(keep);
                return k;
        }
        return 0;
}

static void cluster_dispatch(Redis *r, ClusterRequest *q) {
        Cluster *cl = r->cluster;
        ClusterNode *n = q->slot >= 0 ? cl->slot_node[q->slot] : cluster_any(cl);

        q->retry_at = USEC_INFINITY;
        if (cluster_node_send(n, q, false) >= 0)
                return;
        if (redis_now(r) >= q->deadline) {
                cluster_finish(r, q, NULL);
                return;
        }
        cluster_wait(r, q);
}

/* MOVED: the slot has a new master for good; ASK: for this command only. */
static void cluster_follow(Redis *r, ClusterRequest *q, const ClusterRedirect *d) {
        Cluster *cl = r->cluster;
        ClusterNode *n = cluster_find(cl, &d->to);

        if (!d->ask) {
                if (n)
                        cl->slot_node[d->slot] = n;
                cluster_refresh_soon(r);
        }
        if (cluster_node_send(n, q, d->ask) < 0)
                cluster_wait(r, q);
}

static void on_cluster_reply(Redis *node, const redisReply *reply, void *userdata) {
        ClusterRequest *q = userdata;
        _cleanup_(redis_unrefp) Redis *r = redis_ref(q->redis);
        ClusterRedirect d;

        if (!reply) {
                /* Lost with the node's connection: as on one Redis, the
                 * command may or may not have run. */
                cluster_refresh_soon(r);
                cluster_finish(r, q, NULL);
                return;
        }
        /* Redirections are bounded in number, waits for the cluster in time:
         * past either bound the caller gets Redis' last answer. */
        if (reply->type == REDIS_REPLY_ERROR && !r->shut_down) {
                if (q->redirects < CLUSTER_REDIRECTS_MAX &&
                    cluster_redirect_parse(reply->str, reply->len, node->host ?: "", &d) >= 0) {
                        q->redirects++;
                        cluster_follow(r, q, &d);
                        return;
                }
                if ((strncmp(reply->str, "TRYAGAIN", 8) == 0 || strncmp(reply->str, "CLUSTERDOWN", 11) == 0) &&
                    redis_now(r) + REDIS_CLUSTER_RETRY_USEC < q->deadline) {
                        cluster_refresh_soon(r);
                        cluster_wait(r, q);
                        return;
                }
        }
        cluster_finish(r, q, reply);
        if (!r->shut_down && r->cluster->n_retired > 0)
                cluster_sweep_retired(r);
}

static int cluster_send(Redis *r, RedisReplyHandler cb, void *userdata, const char *cmd, size_t len,
                        const RedisScript *script, int slot) {
        Cluster *cl = r->cluster;
        const char *arg[1];
        size_t arglen[1];
        ClusterRequest *q;

        /* Scripts loaded ahead, with nobody waiting: on every master. */
        if (!cb && command_args(cmd, len, arg, arglen, 1) == 1 && arg_is(arg[0], arglen[0], "SCRIPT")) {
                for (size_t i = 0; i < cl->n_nodes; i++)
                        (void) redis_send_user(cl->nodes[i]->redis, NULL, NULL, cmd, len, NULL, NULL, -1);
                return 0;
        }

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->command = sdsnewlen(cmd, len);
        if (!q->command) {
                free(q);
                return -ENOMEM;
        }
        q->redis = r;
        q->cb = cb;
        q->userdata = userdata;
        q->script = script;
        q->slot = slot;
        q->deadline = redis_now(r) + r->command_timeout;
        LIST_APPEND_TAIL(requests, cl->head, cl->tail, q);
        /* Never the handler from here: a send that fails waits for a retry. */
        q->retry_at = USEC_INFINITY;
        if (cluster_node_send(slot >= 0 ? cl->slot_node[slot] : cluster_any(cl), q, false) < 0)
                cluster_wait(r, q);
        return 0;
}

static unsigned cluster_cancel(Redis *r, const void *userdata) {
        unsigned n = 0;

        LIST_FOREACH(requests, q, r->cluster->head)
                if (q->userdata == userdata && q->cb) {
                        q->cb = NULL;
                        n++;
                }
        return n;
}

/* ---- cluster: nodes, map and state ---- */

static void on_node_state(Redis *node, bool connected, void *userdata);
static void on_node_message(Redis *node, const char *channel, const char *data, size_t len, void *userdata);

static ClusterNode *cluster_node_free(ClusterNode *n) {
        if (!n)
                return NULL;
        /* Handlers of its pending commands run now, with NULL. */
        n->redis = redis_free(n->redis);
        free(n);
        return NULL;
}

static int cluster_node_new(Redis *r, const ClusterAddress *a, ClusterNode **ret) {
        char url[CLUSTER_HOST_MAX + 32];
        ClusterNode *n;
        int k;

        if ((size_t) snprintf(url, sizeof url, strchr(a->host, ':') ? "redis://[%s]:%d" : "redis://%s:%d",
                              a->host, a->port) >= sizeof url)
                return -EINVAL;
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->parent = r;
        n->address = *a;
        k = redis_new_with_options(&n->redis, r->event,
                                   &(const RedisOptions) { .url = url, .user = r->user, .password = r->password },
                                   on_node_state, on_node_message, n);
        if (k >= 0) {
                n->redis->parent = r;
                (void) redis_set_timeouts(n->redis, r->command_timeout, r->ping_interval);
                k = redis_start(n->redis);
        }
        if (k < 0) {
                cluster_node_free(n);
                return k;
        }
        *ret = n;
        return 0;
}

static void cluster_update_state(Redis *r) {
        Cluster *cl = r->cluster;
        bool up = !r->shut_down && cl->n_nodes > 0;

        for (size_t s = 0; up && s < CLUSTER_SLOTS; s++)
                up = cl->slot_node[s];
        for (size_t i = 0; up && i < cl->n_nodes; i++)
                up = redis_is_connected(cl->nodes[i]->redis);
        if (up == r->connected)
                return;
        r->connected = up;
        if (up) {
                r->was_connected = true;
                r->problem = REDIS_PROBLEM_NONE;
        } else
                cluster_refresh_soon(r);
        if (r->on_state && !r->shut_down)
                r->on_state(r, up, r->userdata);
}

/* What a sharded subscription misses until it is back: the owner hears
 * of it now, and again once it is in effect (cluster_shard_confirm()). */
static void cluster_shard_drop(Redis *r, Subscription *s) {
        if (s->kind != SUB_SHARD || s->dropped)
                return;
        s->dropped = true;
        s->generation++;
        if (r->on_shard && !r->shut_down)
                r->on_shard(r, s->name, false, r->userdata);
}

/* A sharded subscription on node that Redis dropped: the channel name (an
 * unasked "sunsubscribe"), or every one of a slot (MOVED for SSUBSCRIBE). */
static void cluster_shard_lost(Redis *r, Redis *node, const char *name, size_t len, int slot) {
        Subscription *s;

        if (!r->cluster || r->shut_down)
                return;
        if (name) {
                s = *subscription_find(r, name, len, SUB_SHARD);
                if (s && s->home && s->home->redis == node)
                        cluster_shard_drop(r, s);
                return;
        }
        for (size_t b = 0; b < r->n_buckets; b++)
                for (s = r->buckets[b]; s; s = s->next)
                        if (s->kind == SUB_SHARD && s->home && s->home->redis == node &&
                            redis_key_slot(s->name, s->len) == slot)
                                cluster_shard_drop(r, s);
}

typedef struct ShardConfirm {
        Redis *redis;                   /* the cluster's */
        unsigned generation;
        size_t len;
        char name[];
} ShardConfirm;

static void on_shard_confirmed(Redis *node, bool ok, void *userdata) {
        _cleanup_free_ ShardConfirm *c = userdata;
        Redis *r = c->redis;
        Subscription *s;

        if (r->shut_down)
                return;
        s = *subscription_find(r, c->name, c->len, SUB_SHARD);
        if (!s || s->dropped || s->generation != c->generation || !s->home || s->home->redis != node)
                return;
        if (!ok) {
                /* The node's connection dropped: once it is back and has
                 * subscribed everything again, the channel is confirmed. */
                s->dropped = true;
                return;
        }
        if (r->on_shard)
                r->on_shard(r, c->name, true, r->userdata);
}

/* Once the SSUBSCRIBE just sent to s->home is answered, so in effect.
 * While the node is not connected, its coming up confirms it
 * (cluster_shard_confirm_node()). */
static void cluster_shard_confirm(Redis *r, Subscription *s) {
        ShardConfirm *c;

        c = malloc(sizeof(*c) + s->len + 1);
        if (!c)
                return;
        *c = (ShardConfirm) { .redis = r, .generation = s->generation, .len = s->len };
        memcpy(c->name, s->name, s->len + 1);
        if (redis_subscriber_barrier(s->home->redis, on_shard_confirmed, c) < 0) {
                free(c);
                return;
        }
        s->dropped = false;
}

static void cluster_shard_confirm_node(Redis *r, ClusterNode *n) {
        for (size_t b = 0; b < r->n_buckets && !r->shut_down; b++)
                for (Subscription *s = r->buckets[b]; s; s = s->next)
                        if (s->kind == SUB_SHARD && s->dropped && s->home == n)
                                cluster_shard_confirm(r, s);
}

static void cluster_subscription_place(Redis *r, Subscription *s, bool subscribe) {
        Cluster *cl = r->cluster;
        ClusterNode *want = NULL;

        if (subscribe && s->kind == SUB_SHARD)
                want = cl->slot_node[redis_key_slot(s->name, s->len)];
        else if (subscribe && cl->n_nodes > 0)
                want = cl->nodes[0];    /* PUBLISH reaches every node: one is enough */
        if (want && want == s->home && s->dropped) {
                /* Dropped where the map still places it (the map moved
                 * back, or is behind): SSUBSCRIBE there again. An
                 * SUNSUBSCRIBE first would be answered by a "sunsubscribe"
                 * that looks like another drop. */
                Subscription *n = *subscription_find(want->redis, s->name, s->len, SUB_SHARD);

                if (n)
                        subscription_send(want->redis, sub_verb[SUB_SHARD][0], n);
                cluster_shard_confirm(r, s);
                return;
        }
        if (want == s->home)
                return;
        if (subscribe && s->home)
                cluster_shard_drop(r, s);
        if (s->home)
                (void) redis_unsubscribe_full(s->home->redis, s->name, s->kind);
        s->home = want;
        if (want) {
                (void) redis_subscribe_full(want->redis, s->name, s->kind);
                if (s->dropped)
                        cluster_shard_confirm(r, s);
        }
}

static void cluster_place_subscriptions(Redis *r) {
        for (size_t b = 0; b < r->n_buckets; b++)
                for (Subscription *s = r->buckets[b]; s; s = s->next)
                        cluster_subscription_place(r, s, true);
}

static bool cluster_node_is(const ClusterNode *n, const ClusterAddress *a) {
        return n && n->address.port == a->port && streq(n->address.host, a->host);
}

/* The node for address a: a master already known, the discovery node, or new. */
static int cluster_node_for(Redis *r, const ClusterAddress *a, ClusterNode **ret, bool *ret_new) {
        Cluster *cl = r->cluster;
        ClusterNode *n = cluster_find(cl, a);

        if (!n && cluster_node_is(cl->discovery, a))
                n = cl->discovery;
        *ret_new = !n;
        if (n) {
                *ret = n;
                return 0;
        }
        return cluster_node_new(r, a, ret);
}

/* A node that left the map (a master failed over to its replica, or
 * removed) keeps its connection until what was sent there is answered:
 * those answers are MOVED, and followed, rather than lost. */
static void cluster_retire(Redis *r, ClusterNode *n) {
        Cluster *cl = r->cluster;
        ClusterNode **a;

        if (!n->redis->cmd.head || !redis_is_connected(n->redis) ||
            !(a = reallocarray(cl->retired, cl->n_retired + 1, sizeof(*a)))) {
                cluster_node_free(n);
                return;
        }
        cl->retired = a;
        cl->retired[cl->n_retired++] = n;
}

static void cluster_sweep_retired(Redis *r) {
        Cluster *cl = r->cluster;

        for (size_t i = 0; i < cl->n_retired && !r->shut_down; )
                if (!cl->retired[i]->redis->cmd.head || !redis_is_connected(cl->retired[i]->redis)) {
                        ClusterNode *n = cl->retired[i];

                        cl->retired[i] = cl->retired[--cl->n_retired];
                        cluster_node_free(n);
                } else
                        i++;
}

static void cluster_apply(Redis *r, const ClusterMap *map) {
        Cluster *cl = r->cluster;
        _cleanup_free_ ClusterNode **nodes = NULL;
        _cleanup_free_ bool *created = NULL;
        ClusterNode **old = cl->nodes;
        size_t n_old = cl->n_nodes;

        nodes = calloc(MAX(map->n_nodes, 1u), sizeof(*nodes));
        created = calloc(MAX(map->n_nodes, 1u), sizeof(*created));
        if (!nodes || !created)
                return;
        for (size_t i = 0; i < map->n_nodes; i++)
                if (cluster_node_for(r, &map->node[i], &nodes[i], &created[i]) < 0) {
                        /* The old map stays; the next refresh tries again. */
                        for (size_t j = 0; j < i; j++)
                                if (created[j])
                                        cluster_node_free(nodes[j]);
                        return;
                }

        /* What the new map keeps is no longer the old list's to free. */
        for (size_t i = 0; i < map->n_nodes; i++) {
                for (size_t j = 0; j < n_old; j++)
                        if (old[j] == nodes[i])
                                old[j] = NULL;
                if (cl->discovery == nodes[i])
                        cl->discovery = NULL;
        }
        cl->nodes = TAKE_PTR(nodes);
        cl->n_nodes = map->n_nodes;
        for (size_t s = 0; s < CLUSTER_SLOTS; s++)
                cl->slot_node[s] = map->slot_node[s] >= 0 ? cl->nodes[map->slot_node[s]] : NULL;

        /* Masters no more (failed over, removed): their subscriptions move. */
        for (size_t i = 0; i < n_old; i++)
                for (size_t b = 0; old[i] && b < r->n_buckets; b++)
                        for (Subscription *s = r->buckets[b]; s; s = s->next)
                                if (s->home == old[i]) {
                                        cluster_shard_drop(r, s);
                                        s->home = NULL;
                                }
        cluster_place_subscriptions(r);
        cl->discovery = cluster_node_free(cl->discovery);
        for (size_t i = 0; i < n_old && !r->shut_down; i++)
                if (old[i])
                        cluster_retire(r, TAKE_PTR(old[i]));
        free(old);
        if (!r->shut_down)
                cluster_update_state(r);
}

static void cluster_refresh(Redis *r);

static void cluster_map_done(Redis *r, const ClusterMap *map) {
        Cluster *cl = r->cluster;

        cl->refreshing = false;
        if (r->shut_down)
                return;
        if (map && cluster_map_is_complete(map))
                cluster_apply(r, map);
        else if (map && cl->n_nodes == 0 && map->n_nodes > 0)
                cluster_apply(r, map);  /* what there is, while the rest is being fixed */
        if (r->shut_down)
                return;
        cl->refresh_at = redis_now(r) + (r->connected ? REDIS_CLUSTER_REFRESH_USEC : CLUSTER_DOWN_REFRESH_USEC);
        cluster_arm(r);
}

static void on_cluster_slots(Redis *node, const redisReply *reply, void *userdata) {
        ClusterNode *n = userdata;
        _cleanup_(redis_unrefp) Redis *r = redis_ref(n->parent);
        _cleanup_free_ ClusterMap *map = NULL;

        if (reply && reply->type != REDIS_REPLY_ERROR) {
                map = malloc(sizeof(*map));
                if (map && cluster_map_from_slots(map, reply, n->address.host) < 0)
                        map = mfree(map);
        }
        cluster_map_done(r, map);
}

static void on_cluster_shards(Redis *node, const redisReply *reply, void *userdata) {
        ClusterNode *n = userdata;
        _cleanup_(redis_unrefp) Redis *r = redis_ref(n->parent);
        _cleanup_free_ ClusterMap *map = NULL;

        /* Before Redis 7: CLUSTER SLOTS. */
        if (reply && reply->type == REDIS_REPLY_ERROR && !r->shut_down &&
            redis_command(node, on_cluster_slots, n, "CLUSTER SLOTS") >= 0)
                return;
        if (reply && reply->type != REDIS_REPLY_ERROR) {
                map = malloc(sizeof(*map));
                if (map && cluster_map_from_shards(map, reply, n->address.host) < 0)
                        map = mfree(map);
        }
        cluster_map_done(r, map);
}

/* Asks the next seed or last known master, on a node connection of its
 * own, while none of the masters can be asked. */
static void cluster_discover(Redis *r) {
        Cluster *cl = r->cluster;
        size_t total = cl->n_seeds + cl->n_nodes, i = cl->next_seed++ % total;
        ClusterAddress a = i < cl->n_seeds ? cl->seeds[i] : cl->nodes[i - cl->n_seeds]->address;
        int k;

        cl->discovery = cluster_node_free(cl->discovery);
        if (r->shut_down)
                return;
        cl->discovery_deadline = redis_now(r) + MAX(r->command_timeout, 1000000ULL);
        k = cluster_node_new(r, &a, &cl->discovery);
        if (k < 0)
                snprintf(r->last_error, sizeof r->last_error, "cluster seed %.64s:%d: %.64s", a.host, a.port, strerror(-k));
        cluster_arm(r);
}

static void cluster_refresh(Redis *r) {
        Cluster *cl = r->cluster;
        ClusterNode *ask;

        if (cl->refreshing || r->shut_down)
                return;
        cl->refresh_at = USEC_INFINITY;
        ask = cluster_any(cl);
        if (!ask && cl->discovery && redis_is_connected(cl->discovery->redis))
                ask = cl->discovery;
        if (!ask) {
                if (!cl->discovery)
                        cluster_discover(r);
                cluster_arm(r);
                return;
        }
        if (redis_command(ask->redis, on_cluster_shards, ask, "CLUSTER SHARDS") >= 0)
                cl->refreshing = true;
        else
                cl->refresh_at = redis_now(r) + CLUSTER_DOWN_REFRESH_USEC;
        cluster_arm(r);
}

static void on_node_state(Redis *node, bool connected, void *userdata) {
        ClusterNode *n = userdata;
        _cleanup_(redis_unrefp) Redis *r = redis_ref(n->parent);
        Cluster *cl = r->cluster;

        if (!connected) {
                snprintf(r->last_error, sizeof r->last_error, "cluster node %.60s:%d: %.70s",
                         n->address.host, n->address.port, redis_last_error(node));
                redis_set_problem(r, redis_problem(node));
        }
        if (r->shut_down)
                return;
        if (n == cl->discovery) {
                if (connected)
                        cluster_refresh(r);
                return;
        }
        if (connected)
                cluster_shard_confirm_node(r, n);
        cluster_update_state(r);
        if (!connected)
                cluster_refresh_soon(r);
}

static void on_node_message(Redis *node, const char *channel, const char *data, size_t len, void *userdata) {
        ClusterNode *n = userdata;
        Redis *r = n->parent;

        if (r->on_message && !r->shut_down)
                r->on_message(r, channel, data, len, r->userdata);
}

static int on_cluster_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        _cleanup_(redis_unrefp) Redis *r = redis_ref(userdata);
        Cluster *cl = r->cluster;
        uint64_t now = redis_now(r);
        ClusterRequest *q;

        if (cl->discovery && now >= cl->discovery_deadline && !cl->refreshing)
                cluster_discover(r);
        if (!r->shut_down && now >= cl->refresh_at)
                cluster_refresh(r);
        if (!r->shut_down)
                cluster_sweep_retired(r);
        /* One at a time: a handler may send, cancel or free everything. */
        while (!r->shut_down) {
                for (q = cl->head; q && q->retry_at > now; q = q->requests_next)
                        ;
                if (!q)
                        break;
                cluster_dispatch(r, q);
        }
        if (!r->shut_down)
                cluster_arm(r);
        return 0;
}

/* "HOST:PORT" or "[IPv6]:PORT", the port required. */
static int cluster_parse_seed(const char *s, ClusterAddress *ret) {
        const char *colon = strrchr(s, ':'), *host = s;
        unsigned port;
        size_t hn;
        char buf[INET6_ADDRSTRLEN + 1];
        unsigned char addr[sizeof(struct in6_addr)];

        if (!colon || parse_uint(colon + 1, strlen(colon + 1), 65535, &port) < 0 || port == 0)
                return -EINVAL;
        hn = (size_t) (colon - s);
        if (*s == '[') {
                if (hn < 3 || colon[-1] != ']' || hn - 2 >= sizeof buf)
                        return -EINVAL;
                host = s + 1;
                hn -= 2;
                memcpy(buf, host, hn);
                buf[hn] = '\0';
                if (inet_pton(AF_INET6, buf, addr) != 1)
                        return -EINVAL;
        } else if (!host_name_is_valid(s, hn))
                return -EINVAL;
        if (hn >= sizeof ret->host)
                return -EINVAL;
        memcpy(ret->host, host, hn);
        ret->host[hn] = '\0';
        ret->port = (int) port;
        return 0;
}

bool redis_cluster_address_is_valid(const char *s) {
        ClusterAddress a;

        return s && cluster_parse_seed(s, &a) >= 0;
}

static int cluster_new(Redis *r, char *const *seeds) {
        Cluster *cl;
        size_t n = 0;
        int k;

        while (seeds[n])
                if (++n > REDIS_CLUSTER_SEEDS_MAX)
                        return -EINVAL;
        if (n == 0)
                return -EINVAL;
        cl = r->cluster = calloc(1, sizeof(*cl));
        if (!cl)
                return -ENOMEM;
        cl->refresh_at = USEC_INFINITY;
        cl->seeds = calloc(n, sizeof(*cl->seeds));
        if (!cl->seeds)
                return -ENOMEM;
        for (; cl->n_seeds < n; cl->n_seeds++) {
                k = cluster_parse_seed(seeds[cl->n_seeds], &cl->seeds[cl->n_seeds]);
                if (k < 0)
                        return k;
        }
        snprintf(r->address, sizeof r->address, "cluster %s", seeds[0]);
        k = sd_event_add_time(r->event, &cl->timer, CLOCK_MONOTONIC, USEC_INFINITY,
                              REDIS_TIMER_ACCURACY_USEC, on_cluster_timer, r);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(cl->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(cl->timer, "redis-cluster-timer");
        return 0;
}

static void cluster_start(Redis *r) {
        cluster_discover(r);
}

static void cluster_shut_down(Redis *r) {
        Cluster *cl = r->cluster;

        cl->timer = sd_event_source_disable_unref(cl->timer);
        cl->discovery = cluster_node_free(cl->discovery);
        /* Each node's pending commands end with NULL, then those waiting here. */
        for (size_t i = 0; i < cl->n_nodes; i++)
                cl->nodes[i] = cluster_node_free(cl->nodes[i]);
        cl->n_nodes = 0;
        for (size_t i = 0; i < cl->n_retired; i++)
                cl->retired[i] = cluster_node_free(cl->retired[i]);
        cl->n_retired = 0;
        for (size_t s = 0; s < CLUSTER_SLOTS; s++)
                cl->slot_node[s] = NULL;
        while (cl->head)
                cluster_finish(r, cl->head, NULL);
}

static void cluster_destroy(Redis *r) {
        Cluster *cl = r->cluster;

        if (!cl)
                return;
        cl->timer = sd_event_source_disable_unref(cl->timer);
        for (size_t i = 0; i < cl->n_nodes; i++)
                cluster_node_free(cl->nodes[i]);
        free(cl->nodes);
        free(cl->retired);
        free(cl->seeds);
        free(cl);
        r->cluster = NULL;
}

/* ---- cluster: barrier ---- */

static void on_cluster_barrier_part(Redis *node, bool ok, void *userdata) {
        ClusterBarrier *b = userdata;
        RedisBarrierHandler cb = b->cb;
        Redis *r = b->redis;
        void *ud = b->userdata;
        bool all_ok;

        b->failed = b->failed || !ok;
        if (--b->n_pending > 0)
                return;
        all_ok = !b->failed && !r->shut_down;
        free(b);
        cb(r, all_ok, ud);
}

static int cluster_barrier(Redis *r, RedisBarrierHandler cb, void *userdata) {
        Cluster *cl = r->cluster;
        ClusterBarrier *b;
        unsigned sent = 0;

        if (!r->connected)
                return -ENOTCONN;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        *b = (ClusterBarrier) { .redis = r, .cb = cb, .userdata = userdata, .n_pending = 1 };
        for (size_t i = 0; i < cl->n_nodes; i++) {
                if (redis_subscriber_barrier(cl->nodes[i]->redis, on_cluster_barrier_part, b) >= 0) {
                        b->n_pending++;
                        sent++;
                } else
                        b->failed = true;
        }
        if (sent == 0) {
                free(b);
                return -ENOTCONN;
        }
        /* The guard taken above: complete once every node answered. */
        b->n_pending--;
        return 0;
}
