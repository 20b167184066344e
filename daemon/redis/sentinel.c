/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Redis Sentinel: asks the sentinels where the master is and hears when they switch it. */

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <systemd/sd-event.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "redis/redis-sdevent.h"
#include "redis/sentinel.h"

#define WATCH_BACKOFF_MIN_USEC (100 * 1000ULL)
#define WATCH_BACKOFF_MAX_USEC (3200 * 1000ULL)
#define TIMER_ACCURACY_USEC 1000ULL
#define SWITCH_CHANNEL "+switch-master"
#define HOST_MAX 255

typedef struct SentinelAddress {
        char host[INET6_ADDRSTRLEN];
        int port;
} SentinelAddress;

struct Sentinel {
        unsigned n_ref;                 /* the owner, plus any dispatch on the stack */
        bool shut_down;
        sd_event *event;
        SentinelAddress addresses[SENTINELS_MAX];
        size_t n_addresses;
        char *master_name, *user, *password;
        SentinelMasterHandler on_master;
        SentinelSwitchHandler on_switch;
        void *userdata;

        /* The round of questions: one sentinel at a time. */
        redisAsyncContext *query;
        sd_event_source *query_timer;
        size_t query_index, query_left, preferred;
        bool querying, refused;
        char detail[192];

        /* The +switch-master subscription, on one sentinel. */
        redisAsyncContext *watch;
        sd_event_source *watch_timer;
        size_t watch_index;
        uint64_t watch_backoff;
        bool watch_lost;                /* it was up once: a switch may have gone unheard */
};

static void query_try(Sentinel *s);
static void watch_connect(Sentinel *s);

static Sentinel *sentinel_ref(Sentinel *s) {
        s->n_ref++;
        return s;
}

static void sentinel_destroy(Sentinel *s) {
        s->query_timer = sd_event_source_disable_unref(s->query_timer);
        s->watch_timer = sd_event_source_disable_unref(s->watch_timer);
        if (s->password)
                explicit_bzero(s->password, strlen(s->password));
        free(s->password);
        free(s->user);
        free(s->master_name);
        sd_event_unref(s->event);
        free(s);
}

static void sentinel_unrefp(Sentinel **s) {
        if (*s && --(*s)->n_ref == 0)
                sentinel_destroy(*s);
}

static uint64_t sentinel_now(Sentinel *s) {
        uint64_t now = 0;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        return now;
}

static void timer_arm(sd_event_source *t, uint64_t usec) {
        (void) sd_event_source_set_time(t, usec);
        (void) sd_event_source_set_enabled(t, SD_EVENT_ONESHOT);
}

/* Forgets a context. free_it is false inside its connect-failure or
 * disconnect callback, where hiredis frees it itself. */
static void context_drop(redisAsyncContext **acp, bool free_it) {
        redisAsyncContext *ac = *acp;

        *acp = NULL;
        if (!ac)
                return;
        ac->data = NULL;        /* its later callbacks are stale */
        if (free_it)
                redisAsyncFree(ac);
}

static const char *context_error(const redisAsyncContext *ac, const char *fallback) {
        return ac->c.errstr[0] ? ac->c.errstr : fallback;
}

static bool reply_is_auth_refusal(const redisReply *reply) {
        return reply && reply->type == REDIS_REPLY_ERROR &&
                (strncmp(reply->str, "WRONGPASS", 9) == 0 || strncmp(reply->str, "NOAUTH", 6) == 0 ||
                 strncmp(reply->str, "NOPERM", 6) == 0 || strncmp(reply->str, "ERR invalid password", 20) == 0 ||
                 strncmp(reply->str, "ERR AUTH", 8) == 0);
}

/* Connects to sentinel i with AUTH queued first; NULL on failure. */
static redisAsyncContext *sentinel_connect(Sentinel *s, size_t i, redisCallbackFn *on_auth) {
        const SentinelAddress *a = &s->addresses[i];
        redisAsyncContext *ac;
        int k;

        ac = redisAsyncConnect(a->host, a->port);
        if (!ac)
                return NULL;
        if (ac->err || redis_sdevent_attach(ac, s->event) < 0) {
                redisAsyncFree(ac);
                return NULL;
        }
        (void) redisEnableKeepAlive(&ac->c);
        ac->data = s;
        if (!s->password)
                return ac;
        if (s->user)
                k = redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", s->user, s->password);
        else
                k = redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", s->password);
        if (k != REDIS_OK) {
                ac->data = NULL;
                redisAsyncFree(ac);
                return NULL;
        }
        return ac;
}

/* ---- the round of questions ---- */

static void query_finish(Sentinel *s, int error, const char *host, int port) {
        s->querying = false;
        (void) sd_event_source_set_enabled(s->query_timer, SD_EVENT_OFF);
        if (error == 0)
                s->preferred = s->query_index;
        if (s->on_master && !s->shut_down)
                s->on_master(s, error, host, port, s->detail, s->userdata);
}

/* This sentinel gave no usable answer: on to the next one, or the round failed. */
static void query_failed(Sentinel *s, const char *why, bool free_context) {
        const SentinelAddress *a = &s->addresses[s->query_index];

        context_drop(&s->query, free_context);
        snprintf(s->detail, sizeof s->detail, "sentinel %s:%d: %s", a->host, a->port, why);
        if (s->shut_down)
                return;
        if (--s->query_left == 0) {
                query_finish(s, s->refused ? -EACCES : -EHOSTUNREACH, NULL, 0);
                return;
        }
        s->query_index = (s->query_index + 1) % s->n_addresses;
        query_try(s);
}

static void on_query_auth(redisAsyncContext *ac, void *reply_, void *privdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;
        const redisReply *reply = reply_;
        char why[160];

        if (!ac->data || !reply || reply->type != REDIS_REPLY_ERROR)
                return;         /* the answer's callback handles a lost connection */
        s = sentinel_ref(ac->data);
        s->refused = s->refused || reply_is_auth_refusal(reply);
        snprintf(why, sizeof why, "AUTH refused: %s", reply->str);
        query_failed(s, why, true);
}

static bool host_is_valid(const redisReply *e) {
        if (!e || e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > HOST_MAX)
                return false;
        for (size_t i = 0; i < e->len; i++) {
                char ch = e->str[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '-' || ch == '.' || ch == ':'))
                        return false;
        }
        return true;
}

static int port_parse(const char *s, size_t len) {
        int port = 0;

        if (len == 0 || len > 5)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                port = port * 10 + (s[i] - '0');
        }
        return port >= 1 && port <= 65535 ? port : -EINVAL;
}

static void on_query_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;
        const redisReply *reply = reply_;
        char host[HOST_MAX + 1], why[160];
        int port;

        if (!ac->data)
                return;
        s = sentinel_ref(ac->data);
        if (!reply) {
                query_failed(s, context_error(ac, "connection lost"), false);
                return;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(why, sizeof why, "%s", reply->str);
                query_failed(s, why, true);
                return;
        }
        if (reply->type == REDIS_REPLY_NIL) {
                snprintf(why, sizeof why, "does not know a master named '%s'", s->master_name);
                query_failed(s, why, true);
                return;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || !host_is_valid(reply->element[0]) ||
            reply->element[1]->type != REDIS_REPLY_STRING ||
            (port = port_parse(reply->element[1]->str, reply->element[1]->len)) < 0) {
                query_failed(s, "malformed answer", true);
                return;
        }

        memcpy(host, reply->element[0]->str, reply->element[0]->len);
        host[reply->element[0]->len] = '\0';
        context_drop(&s->query, true);
        query_finish(s, 0, host, port);
}

static void on_query_connect(const redisAsyncContext *ac, int status) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;

        if (!ac->data || status == REDIS_OK)
                return;
        s = sentinel_ref(ac->data);
        query_failed(s, context_error(ac, "connect failed"), false);
}

static void on_query_disconnect(const redisAsyncContext *ac, int status) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;

        if (!ac->data)
                return;
        s = sentinel_ref(ac->data);
        query_failed(s, context_error(ac, "connection lost"), false);
}

static void query_try(Sentinel *s) {
        redisAsyncContext *ac;

        ac = sentinel_connect(s, s->query_index, on_query_auth);
        if (!ac) {
                query_failed(s, "connect failed", false);
                return;
        }
        (void) redisAsyncSetConnectCallback(ac, on_query_connect);
        (void) redisAsyncSetDisconnectCallback(ac, on_query_disconnect);
        s->query = ac;
        if (redisAsyncCommand(ac, on_query_reply, NULL, "SENTINEL get-master-addr-by-name %s", s->master_name) != REDIS_OK) {
                query_failed(s, "out of memory", true);
                return;
        }
        timer_arm(s->query_timer, sentinel_now(s) + SENTINEL_QUERY_TIMEOUT_USEC);
}

static int on_query_timer(sd_event_source *t, uint64_t usec, void *userdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = sentinel_ref(userdata);

        if (s->querying)
                query_failed(s, "no answer within the timeout", true);
        return 0;
}

/* ---- the +switch-master subscription ---- */

static void watch_lost(Sentinel *s, bool free_context) {
        uint64_t delay = s->watch_backoff;

        context_drop(&s->watch, free_context);
        if (s->shut_down)
                return;
        s->watch_lost = true;
        s->watch_index = (s->watch_index + 1) % s->n_addresses;
        s->watch_backoff = MIN(s->watch_backoff * 2, WATCH_BACKOFF_MAX_USEC);
        timer_arm(s->watch_timer, sentinel_now(s) + delay);
        /* A switch may happen while nobody listens: ask again. */
        (void) sentinel_discover(s);
}

static void on_watch_auth(redisAsyncContext *ac, void *reply_, void *privdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;
        const redisReply *reply = reply_;

        if (!ac->data || !reply || reply->type != REDIS_REPLY_ERROR)
                return;
        s = sentinel_ref(ac->data);
        watch_lost(s, true);
}

/* "+switch-master" carries "<name> <old-ip> <old-port> <new-ip> <new-port>". */
static void watch_parse_switch(Sentinel *s, const char *data, size_t len) {
        const char *field[5];
        size_t flen[5], n = 0, i = 0;
        char host[HOST_MAX + 1];
        int port;

        while (i < len && n < 5) {
                size_t start = i;
                while (i < len && data[i] != ' ')
                        i++;
                field[n] = data + start;
                flen[n++] = i - start;
                i++;
        }
        if (n != 5 || flen[0] != strlen(s->master_name) || memcmp(field[0], s->master_name, flen[0]) != 0 ||
            flen[3] == 0 || flen[3] > HOST_MAX || (port = port_parse(field[4], flen[4])) < 0)
                return;
        memcpy(host, field[3], flen[3]);
        host[flen[3]] = '\0';
        if (strspn(host, "0123456789abcdefABCDEF.:-") != flen[3] &&
            strspn(host, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-") != flen[3])
                return;
        if (s->on_switch && !s->shut_down)
                s->on_switch(s, host, port, s->userdata);
}

static void on_watch_message(redisAsyncContext *ac, void *reply_, void *privdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;
        const redisReply *reply = reply_, *kind;

        if (!ac->data)
                return;
        s = sentinel_ref(ac->data);
        if (!reply) {
                watch_lost(s, false);
                return;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
            reply->element[0]->type != REDIS_REPLY_STRING)
                return;
        kind = reply->element[0];
        if (strcasecmp(kind->str, "subscribe") == 0) {
                s->watch_backoff = WATCH_BACKOFF_MIN_USEC;
                if (s->watch_lost)
                        (void) sentinel_discover(s);
                s->watch_lost = false;
        } else if (strcasecmp(kind->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
                watch_parse_switch(s, reply->element[2]->str, reply->element[2]->len);
}

static void on_watch_connect(const redisAsyncContext *ac, int status) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;

        if (!ac->data || status == REDIS_OK)
                return;
        s = sentinel_ref(ac->data);
        watch_lost(s, false);
}

static void on_watch_disconnect(const redisAsyncContext *ac, int status) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;

        if (!ac->data)
                return;
        s = sentinel_ref(ac->data);
        watch_lost(s, false);
}

static void watch_connect(Sentinel *s) {
        redisAsyncContext *ac;

        ac = sentinel_connect(s, s->watch_index, on_watch_auth);
        if (!ac) {
                watch_lost(s, false);
                return;
        }
        (void) redisAsyncSetConnectCallback(ac, on_watch_connect);
        (void) redisAsyncSetDisconnectCallback(ac, on_watch_disconnect);
        s->watch = ac;
        if (redisAsyncCommand(ac, on_watch_message, NULL, "SUBSCRIBE " SWITCH_CHANNEL) != REDIS_OK)
                watch_lost(s, true);
}

static int on_watch_timer(sd_event_source *t, uint64_t usec, void *userdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = sentinel_ref(userdata);

        if (!s->watch && !s->shut_down)
                watch_connect(s);
        return 0;
}

/* ---- public ---- */

bool sentinel_address_is_valid(const char *s) {
        SentinelAddress a;
        const char *colon;
        unsigned char buf[sizeof(struct in6_addr)];
        size_t hn;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':')
                        return false;
                hn = (size_t) (close - s - 1);
                if (hn == 0 || hn >= sizeof a.host)
                        return false;
                memcpy(a.host, s + 1, hn);
                a.host[hn] = '\0';
                colon = close + 1;
                if (inet_pton(AF_INET6, a.host, buf) != 1)
                        return false;
        } else {
                colon = strrchr(s, ':');
                if (!colon)
                        return false;
                hn = (size_t) (colon - s);
                if (hn == 0 || hn >= sizeof a.host)
                        return false;
                memcpy(a.host, s, hn);
                a.host[hn] = '\0';
                if (inet_pton(AF_INET, a.host, buf) != 1)
                        return false;
        }
        return port_parse(colon + 1, strlen(colon + 1)) > 0;
}

static int address_parse(const char *s, SentinelAddress *ret) {
        const char *colon;
        size_t hn;

        if (!sentinel_address_is_valid(s))
                return -EINVAL;
        if (s[0] == '[') {
                colon = strchr(s, ']') + 1;
                hn = (size_t) (colon - s - 2);
                memcpy(ret->host, s + 1, hn);
        } else {
                colon = strrchr(s, ':');
                hn = (size_t) (colon - s);
                memcpy(ret->host, s, hn);
        }
        ret->host[hn] = '\0';
        ret->port = port_parse(colon + 1, strlen(colon + 1));
        return 0;
}

int sentinel_new(Sentinel **ret, sd_event *e, char *const *addresses, const char *master_name,
                 const char *user, const char *password,
                 SentinelMasterHandler on_master, SentinelSwitchHandler on_switch, void *userdata) {
        _cleanup_(sentinel_unrefp) Sentinel *s = NULL;
        uint64_t rnd = 0;
        int k;

        if (!ret || !e || !addresses || !addresses[0] || !master_name || !*master_name ||
            strlen(master_name) > SENTINEL_MASTER_NAME_MAX || strpbrk(master_name, " \t\r\n"))
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        s->event = sd_event_ref(e);
        s->on_master = on_master;
        s->on_switch = on_switch;
        s->userdata = userdata;
        s->watch_backoff = WATCH_BACKOFF_MIN_USEC;

        for (; addresses[s->n_addresses]; s->n_addresses++) {
                if (s->n_addresses >= SENTINELS_MAX)
                        return -E2BIG;
                k = address_parse(addresses[s->n_addresses], &s->addresses[s->n_addresses]);
                if (k < 0)
                        return k;
        }
        s->master_name = strdup(master_name);
        s->user = user ? strdup(user) : NULL;
        s->password = password ? strdup(password) : NULL;
        if (!s->master_name || (user && !s->user) || (password && !s->password))
                return -ENOMEM;

        /* Daemons start with different sentinels, so that one slow
         * sentinel does not hold all of them up. */
        (void) getrandom(&rnd, sizeof rnd, GRND_NONBLOCK);
        s->preferred = s->watch_index = (size_t) (rnd % s->n_addresses);

        k = sd_event_add_time(e, &s->query_timer, CLOCK_MONOTONIC, UINT64_MAX, TIMER_ACCURACY_USEC,
                              on_query_timer, s);
        if (k >= 0)
                k = sd_event_add_time(e, &s->watch_timer, CLOCK_MONOTONIC, UINT64_MAX, TIMER_ACCURACY_USEC,
                                      on_watch_timer, s);
        if (k < 0)
                return k;
        (void) sd_event_source_set_enabled(s->query_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->watch_timer, SD_EVENT_OFF);

        *ret = TAKE_PTR(s);
        return 0;
}

Sentinel *sentinel_free(Sentinel *s) {
        if (!s || s->shut_down)
                return NULL;
        s->shut_down = true;
        (void) sd_event_source_set_enabled(s->query_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->watch_timer, SD_EVENT_OFF);
        context_drop(&s->query, true);
        context_drop(&s->watch, true);
        sentinel_unrefp(&s);
        return NULL;
}

int sentinel_discover(Sentinel *s) {
        if (!s || s->shut_down)
                return -EINVAL;
        if (!s->watch && sd_event_source_get_enabled(s->watch_timer, NULL) == 0)
                watch_connect(s);
        if (s->querying || s->shut_down)
                return 0;
        s->querying = true;
        s->refused = false;
        s->detail[0] = '\0';
        s->query_index = s->preferred;
        s->query_left = s->n_addresses;
        query_try(s);
        return 0;
}
