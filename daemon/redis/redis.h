/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's Redis client: a command and a subscriber connection on sd-event (one pair per master of a cluster), reconnect, pub/sub, scripts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"

typedef struct Redis Redis;

/* Called when both connections are up, selected and resubscribed
 * (connected = true), and when either of them went down (false); the
 * handlers of commands lost with it get NULL right after. Only changes are
 * reported, never from redis_start() or redis_free(). Every handler here may
 * call any function of this API, redis_free() included. */
typedef void (*RedisStateHandler)(Redis *r, bool connected, void *userdata);

/* A message on a channel subscribed with redis_subscribe() or
 * redis_ssubscribe(), or matching a pattern of redis_psubscribe() (then
 * `channel` is the actual channel).
 * `data` is binary (len bytes); both are only valid during the call.
 * Channels are global in Redis, whatever the database in the URL. */
typedef void (*RedisMessageHandler)(Redis *r, const char *channel, const char *data, size_t len, void *userdata);

/* reply is NULL when the command failed without an answer: the connection
 * dropped, it timed out, or redis_free() ran. An error reply from Redis
 * (REDIS_REPLY_ERROR) is a reply, not NULL. reply is freed after the call. */
typedef void (*RedisReplyHandler)(Redis *r, const redisReply *reply, void *userdata);

/* See redis_subscriber_barrier(). */
typedef void (*RedisBarrierHandler)(Redis *r, bool ok, void *userdata);

/* A Lua script run with EVALSHA, sent as EVAL when Redis does not know it
 * (NOSCRIPT: after a restart or SCRIPT FLUSH). */
typedef struct RedisScript {
        const char *source;     /* not copied: must outlive every pending redis_eval() */
        size_t size;
        char sha1[41];          /* lowercase hex, how Redis names it */
} RedisScript;

void redis_script_init(RedisScript *s, const char *source);

/* The Redis Cluster hash slot of a key (0..16383): CRC16-XMODEM of the key,
 * or of its hash tag, modulo 16384. The hash tag is what lies between the
 * first '{' and the first '}' after it, when that is not empty; keys with
 * the same tag share a slot, which is how a script's keys stay on one node. */
#define REDIS_CLUSTER_SLOTS 16384
int redis_key_slot(const char *key, size_t len);

/* A connection is dead when it owes an answer and nothing at all arrived
 * on it for this long: replies and messages that keep arriving (a backlog
 * we are slow to read) count as signs of life, as do bytes waiting unread. */
#define REDIS_COMMAND_TIMEOUT_USEC   (5 * 1000000ULL)
#define REDIS_PING_INTERVAL_USEC     (10 * 1000000ULL)  /* probe connections on which nothing arrived */
#define REDIS_BACKOFF_MIN_USEC       (100 * 1000ULL)
#define REDIS_BACKOFF_MAX_USEC       (3200 * 1000ULL)
#define REDIS_CLUSTER_REFRESH_USEC   (10 * 1000000ULL)  /* the slot map, while connected */
#define REDIS_CLUSTER_RETRY_USEC     (100 * 1000ULL)    /* TRYAGAIN, CLUSTERDOWN, no master yet */
#define REDIS_CLUSTER_SEEDS_MAX      64
#define REDIS_CHANNEL_MAX            1024               /* bytes in a channel name or pattern */
#define REDIS_SUBSCRIPTIONS_MAX      65536              /* distinct channels + patterns */

/* Why Redis is not usable, for /healthz, STATUS= and the log. */
typedef enum RedisProblem {
        REDIS_PROBLEM_NONE,             /* connected, or not tried yet */
        REDIS_PROBLEM_UNREACHABLE,      /* no connection (or no sentinel knows the master) */
        REDIS_PROBLEM_REPLICA,          /* the server is a replica: ROLE said so, or a write got READONLY */
        REDIS_PROBLEM_CREDENTIALS,      /* AUTH refused (WRONGPASS, NOAUTH, NOPERM), by Redis or a sentinel */
} RedisProblem;

const char *redis_problem_to_string(RedisProblem p);

typedef enum RedisEvent {
        REDIS_EVENT_PROBLEM,            /* redis_problem() changed to something other than NONE */
        REDIS_EVENT_MASTER_SWITCHED,    /* the sentinels named another master: redis_master_address() */
} RedisEvent;

/* Things the owner logs that are not a state change. A problem is reported
 * once when it starts, not on every retry. May call any function of this
 * API, redis_free() included. */
typedef void (*RedisEventHandler)(Redis *r, RedisEvent event, void *userdata);

/* A cluster's sharded subscription (redis_ssubscribe()) that Redis
 * dropped (its slot migrated, its master failed over: subscribed = false),
 * and, later, the same channel subscribed again at its slot's master and in
 * effect there (true: after a barrier on that master, so every message
 * published from then on arrives). What was published in between does not
 * arrive. A drop may be reported again before the channel is back; when
 * the new master's connection is down or drops meanwhile, on_state()
 * reports the loss and the return follows once that master is connected
 * again. A channel unsubscribed meanwhile may still be reported back.
 * Never called outside a cluster.
 * With subscribed = false the handler must not subscribe, unsubscribe or
 * free r (it may be called while the subscriptions are being moved). */
typedef void (*RedisShardHandler)(Redis *r, const char *channel, bool subscribed, void *userdata);

typedef struct RedisOptions {
        const char *url;                /* see redis_new(); NULL with sentinels or a cluster */
        char *const *sentinels;         /* "IPv4:PORT" / "[IPv6]:PORT", NULL-terminated; needs master_name */
        char *const *cluster;           /* seed nodes of a Redis Cluster, "HOST:PORT" / "[IPv6]:PORT", NULL-terminated */
        const char *master_name;
        const char *user;               /* Redis 6 ACL user; NULL: AUTH with the password alone */
        const char *password;           /* NULL: no AUTH */
        const char *sentinel_user;
        const char *sentinel_password;
        RedisEventHandler on_event;
        RedisShardHandler on_shard;
} RedisOptions;

/* url: "redis://HOST[:PORT][/DB]" (HOST: IPv4, [IPv6], "localhost" or a
 * name, resolved in a helper thread on each connect so the loop never
 * waits for DNS; PORT defaults to 6379) or "unix:/PATH[?db=DB]". DB is
 * SELECTed on every connect. Does not connect yet: see redis_start().
 * Returns -EINVAL for a malformed URL. */
int redis_new(Redis **ret, sd_event *e, const char *url,
              RedisStateHandler on_state, RedisMessageHandler on_message, void *userdata);

/* The same with sentinels, a cluster and credentials. Every connection
 * sends AUTH first; the command connection then asks ROLE and refuses a
 * replica (not on a cluster, where a replica answers MOVED). With
 * sentinels the master is asked for, checked with ROLE, followed on
 * +switch-master, and asked for again on READONLY, on a lost connection and
 * when ROLE says replica; the database is 0. Strings are copied (passwords
 * are wiped on free).
 *
 * With a cluster the slot map is asked of the seed nodes (CLUSTER SHARDS,
 * CLUSTER SLOTS before Redis 7), and each master gets a command and a
 * subscriber connection of its own. Commands go to the master of their
 * slot: a script's by its keys (none: any master), other commands by
 * their first argument, except those that name no key (PING, TIME, INFO,
 * PUBLISH, SCRIPT, ...: any master; SCRIPT without a handler: every
 * master). MOVED and ASK are followed (up to 16 times), TRYAGAIN,
 * CLUSTERDOWN and a slot without a reachable master retried every
 * REDIS_CLUSTER_RETRY_USEC until the command timeout. The map is asked
 * again after a MOVED, a lost node, and every REDIS_CLUSTER_REFRESH_USEC
 * (every 0.5 s while not connected). Classic subscriptions live on one
 * master (PUBLISH reaches every node), sharded ones on their slot's master
 * and follow it (RedisOptions.on_shard tells of the gap). Connected means: every slot has a master and every master
 * is connected. The database is 0.
 *
 * Returns -EINVAL for a malformed URL or address, or for not exactly one
 * of url, sentinels and cluster. */
int redis_new_with_options(Redis **ret, sd_event *e, const RedisOptions *o,
                           RedisStateHandler on_state, RedisMessageHandler on_message, void *userdata);

/* A cluster seed as RedisOptions.cluster takes it: HOST:PORT (a name or
 * IPv4) or [IPv6]:PORT, the port required. */
bool redis_cluster_address_is_valid(const char *s);

/* Closes both connections. Every reply handler still pending is called
 * with NULL before this returns (handlers run exactly once, see
 * redis_cancel()); none runs afterwards, nor does on_state/on_message. Safe
 * to call from inside any handler of r. */
Redis *redis_free(Redis *r);
DEFINE_CLEANUP_FUNC(Redis *, redis_free);

/* Begins connecting and returns at once; on_state(true) follows. Failed or
 * lost connections are retried forever with backoff 100 ms → 3.2 s (±25 %). */
int redis_start(Redis *r);

/* Overrides REDIS_COMMAND_TIMEOUT_USEC and REDIS_PING_INTERVAL_USEC (each
 * at least 1 ms), for commands and pings sent from now on. */
int redis_set_timeouts(Redis *r, uint64_t command_timeout_usec, uint64_t ping_interval_usec);

bool redis_is_connected(Redis *r);

RedisProblem redis_problem(Redis *r);

/* True once both connections were up at least once. */
bool redis_was_connected(Redis *r);

/* "HOST:PORT" or "unix:PATH" of the server used now or next; "" while a
 * sentinel has not named one yet. */
const char *redis_master_address(Redis *r);

/* Why the last connection attempt failed or the last connection dropped, for
 * the caller's log line; "" if nothing failed yet. */
const char *redis_last_error(Redis *r);

/* Sends a command on the command connection; commands are pipelined.
 * Returns 0 and then calls cb exactly once (reply or NULL), or fails at once
 * without sending anything and without calling cb: -ENOTCONN while
 * redis_is_connected() is false, -EINVAL for commands that would break the
 * connection's state (SELECT, [P|S][UN]SUBSCRIBE, MONITOR, QUIT, RESET,
 * HELLO, SYNC, PSYNC) or a malformed format, -ENOMEM. cb may be NULL.
 * A command without a reply within REDIS_COMMAND_TIMEOUT_USEC makes the
 * connection count as dead: so no blocking commands longer than that. */
int redis_command_argv(Redis *r, RedisReplyHandler cb, void *userdata,
                       int argc, const char **argv, const size_t *argvlen);
int redis_command(Redis *r, RedisReplyHandler cb, void *userdata, const char *format, ...);

/* EVALSHA s->sha1 nkeys keys... args...; argv holds nkeys keys followed by
 * nargs arguments (argvlen may be NULL for C strings). On NOSCRIPT the same
 * call is resent transparently as EVAL (after commands sent in between).
 * -EXDEV, checked first and in every mode, when the keys do not all hash
 * to one slot (redis_key_slot()): such a script cannot run on a cluster. */
int redis_eval(Redis *r, const RedisScript *s, RedisReplyHandler cb, void *userdata,
               int nkeys, int nargs, const char **argv, const size_t *argvlen);

/* Drops the handlers of pending commands sent with this userdata: they will
 * not be called. For owners that go away before their replies arrive.
 * O(pending commands). Returns how many were cancelled. */
unsigned redis_cancel(Redis *r, const void *userdata);

/* Reference-counted: the first subscribe of a channel sends SUBSCRIBE, the
 * last unsubscribe sends UNSUBSCRIBE. Subscriptions survive reconnects.
 * Work while disconnected too (applied on reconnect). -EINVAL for an empty
 * or too long name, -ENOSPC over REDIS_SUBSCRIPTIONS_MAX, -ENOENT when
 * unsubscribing something not subscribed. */
int redis_subscribe(Redis *r, const char *channel);
int redis_unsubscribe(Redis *r, const char *channel);
int redis_psubscribe(Redis *r, const char *pattern);
int redis_punsubscribe(Redis *r, const char *pattern);

/* The same for sharded pub/sub (SSUBSCRIBE, Redis 7 and later): messages
 * sent with SPUBLISH, which on a cluster reach only the nodes of the
 * channel's slot. A sharded channel and a classic one of the same name are
 * different channels, counted apart. A Redis that refuses SSUBSCRIBE
 * (before 7) fails the subscriber connection, like any refused
 * subscription, and the reconnect tries again. */
int redis_ssubscribe(Redis *r, const char *channel);
int redis_sunsubscribe(Redis *r, const char *channel);

/* Sends a probe on the subscriber connection and calls cb exactly once:
 * ok = true when Redis has answered it, which it does after everything it
 * queued for us before; so every (P|S)SUBSCRIBE made before the call is in
 * effect and every message published before its answer was handed to the
 * RedisMessageHandler. ok = false when the subscriber connection dropped
 * first (on_state() reports it; a resubscribe follows) or redis_free() ran.
 * Fails without calling cb: -ENOTCONN while the subscriber connection is
 * down (while it is being set up, the barrier waits for that), -ENOMEM.
 * On a cluster: a probe on every master's subscriber connection, ok when
 * all answered; -ENOTCONN while not connected. */
int redis_subscriber_barrier(Redis *r, RedisBarrierHandler cb, void *userdata);

/* What a reply on the subscriber connection is: a message on a channel we
 * subscribed to (channel and data point into the reply), the answer to our
 * own probe, or anything else (subscription confirmations, a sharded
 * channel's "sunsubscribe" when its slot moved), which is ignored. Pure: exposed for
 * the tests and the fuzzer. */
typedef enum RedisPushKind {
        REDIS_PUSH_OTHER,
        REDIS_PUSH_MESSAGE,
        REDIS_PUSH_PROBE,
} RedisPushKind;

typedef struct RedisPush {
        const char *channel;
        const char *data;
        size_t len;
} RedisPush;

RedisPushKind redis_subscriber_reply_parse(const redisReply *reply, RedisPush *ret);
