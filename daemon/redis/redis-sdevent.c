/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hiredis ↔ sd-event adapter: drives one redisAsyncContext from an sd-event loop. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include <systemd/sd-event.h>

#include <hiredis/async.h>

#include "basic/macro.h"
#include "redis/redis-sdevent.h"

typedef struct RedisSdEvent {
        redisAsyncContext *ac;
        sd_event_source *source;        /* one IO source for the context's whole life */
        uint32_t events;                /* EPOLLIN/EPOLLOUT hiredis asked for */
        bool dispatching;               /* inside on_redis_io() */
        bool dead;                      /* hiredis ran cleanup while we were dispatching */
        RedisSdEventReader reader;      /* reads the connected socket instead of hiredis */
} RedisSdEvent;

static int on_redis_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RedisSdEvent *a = userdata;

        /* hiredis may free the context (and call our cleanup) from inside
         * either handler, e.g. when a reply callback frees it or the peer
         * hung up. Then `a` must outlive this frame: cleanup only marks it. */
        a->dispatching = true;
        /* HUP/ERR go to the read side: it notices EOF and failed connects.
         * hiredis' write side finishes a connect without reading anything,
         * so an own reader never has replies taken from under it. */
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (!a->reader)
                        redisAsyncHandleRead(a->ac);
                else if (a->ac->c.flags & REDIS_CONNECTED)
                        a->reader(a->ac);
                else
                        redisAsyncHandleWrite(a->ac);
        }
        if (!a->dead && (revents & EPOLLOUT))
                redisAsyncHandleWrite(a->ac);
        a->dispatching = false;

        if (a->dead)
                free(a);
        return 0;
}

static void redis_sdevent_update(RedisSdEvent *a, uint32_t events) {
        /* hiredis calls addRead after every read and addWrite for every
         * command: keep the common "nothing changed" case free of syscalls. */
        if (events == a->events || !a->source)
                return;
        a->events = events;

        /* Failures here cannot be reported to hiredis; the command timeout
         * of the owner notices a connection that stopped moving. */
        if (events == 0) {
                (void) sd_event_source_set_enabled(a->source, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_io_events(a->source, events);
        (void) sd_event_source_set_enabled(a->source, SD_EVENT_ON);
}

static void redis_sdevent_add_read(void *userdata) {
        RedisSdEvent *a = userdata;
        redis_sdevent_update(a, a->events | EPOLLIN);
}

static void redis_sdevent_del_read(void *userdata) {
        RedisSdEvent *a = userdata;
        redis_sdevent_update(a, a->events & ~(uint32_t) EPOLLIN);
}

static void redis_sdevent_add_write(void *userdata) {
        RedisSdEvent *a = userdata;
        redis_sdevent_update(a, a->events | EPOLLOUT);
}

static void redis_sdevent_del_write(void *userdata) {
        RedisSdEvent *a = userdata;
        redis_sdevent_update(a, a->events & ~(uint32_t) EPOLLOUT);
}

static void redis_sdevent_cleanup(void *userdata) {
        RedisSdEvent *a = userdata;

        /* sd-event defers freeing a source that is being dispatched. */
        a->source = sd_event_source_disable_unref(a->source);
        a->ac->ev.data = NULL;
        a->ac = NULL;
        if (a->dispatching)
                a->dead = true;
        else
                free(a);
}

int redis_sdevent_attach(redisAsyncContext *ac, sd_event *e) {
        _cleanup_(freep) RedisSdEvent *a = NULL;
        int r;

        if (!ac || !e || ac->err != 0 || ac->c.fd < 0 || ac->ev.data)
                return -EINVAL;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->ac = ac;

        r = sd_event_add_io(e, &a->source, ac->c.fd, EPOLLIN, on_redis_io, a);
        if (r < 0)
                return r;
        /* Nothing to wait for until hiredis asks. */
        (void) sd_event_source_set_enabled(a->source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(a->source, "redis-io");

        ac->ev.addRead = redis_sdevent_add_read;
        ac->ev.delRead = redis_sdevent_del_read;
        ac->ev.addWrite = redis_sdevent_add_write;
        ac->ev.delWrite = redis_sdevent_del_write;
        ac->ev.cleanup = redis_sdevent_cleanup;
        ac->ev.data = TAKE_PTR(a);
        return 0;
}

int redis_sdevent_set_reader(redisAsyncContext *ac, RedisSdEventReader reader) {
        RedisSdEvent *a = ac ? ac->ev.data : NULL;

        if (!a || a->ac != ac)
                return -EINVAL;
        a->reader = reader;
        return 0;
}
