/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A libuv loop embedded in sd-event, so that lws (foreign libuv loop) runs on our one main loop. */

#include <errno.h>
#include <stdlib.h>

#include "net/loop-uv.h"
#include <sys/epoll.h>
#include "basic/macro.h"
#include "basic/time-util.h"

/* Rounds of uv_run(NOWAIT) per wakeup: libuv reports a zero timeout while
 * uv_poll_start() changes are queued, so a few rounds apply them; the bound
 * keeps one busy libuv from starving sd-bus and Redis. */
#define LOOP_UV_ROUNDS 8

struct LoopUv {
        sd_event *event;
        uv_loop_t loop;
        bool loop_initialized;
        sd_event_source *io_source;
        sd_event_source *time_source;
};

static void loop_uv_run(LoopUv *l) {
        for (unsigned i = 0; i < LOOP_UV_ROUNDS; i++) {
                uv_run(&l->loop, UV_RUN_NOWAIT);
                if (!uv_loop_alive(&l->loop) || uv_backend_timeout(&l->loop) != 0)
                        break;
        }
}

static int on_uv_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        loop_uv_run(userdata);
        return 0;
}

static int on_uv_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        loop_uv_run(userdata);
        return 0;
}

/* Arms the time source from libuv's next deadline as an absolute time just
 * before sd-event polls: re-arming a relative timer on every iteration was
 * measured at ten times the cost per message. */
static int on_uv_prepare(sd_event_source *s, void *userdata) {
        LoopUv *l = userdata;
        uint64_t now, target, current;
        int timeout, enabled, r;

        if (!uv_loop_alive(&l->loop))
                return sd_event_source_set_enabled(l->time_source, SD_EVENT_OFF);

        timeout = uv_backend_timeout(&l->loop);
        if (timeout < 0)
                return sd_event_source_set_enabled(l->time_source, SD_EVENT_OFF);

        r = sd_event_now(l->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        target = now + (uint64_t) timeout * USEC_PER_MSEC;
        /* libuv counts in whole milliseconds, so the same deadline comes out
         * up to 1 ms apart from one iteration to the next; moving the time
         * source each time cost a timerfd_settime() per iteration, 6 % of
         * the daemon's CPU in a reconnect storm. */
        if (sd_event_source_get_enabled(l->time_source, &enabled) >= 0 && enabled != SD_EVENT_OFF &&
            sd_event_source_get_time(l->time_source, &current) >= 0 &&
            current + USEC_PER_MSEC > target && target + USEC_PER_MSEC > current)
                return 0;
        r = sd_event_source_set_time(l->time_source, target);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(l->time_source, SD_EVENT_ONESHOT);
}

int loop_uv_new(LoopUv **ret, sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        int r;

        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->event = sd_event_ref(e);

        r = uv_loop_init(&l->loop);
        if (r < 0)
                return r;
        l->loop_initialized = true;

        r = sd_event_add_io(e, &l->io_source, uv_backend_fd(&l->loop), EPOLLIN, on_uv_io, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->io_source, "uv-io");
        r = sd_event_source_set_prepare(l->io_source, on_uv_prepare);
        if (r < 0)
                return r;

        /* Accuracy 1 µs: an accuracy of 0 means sd-event's default of 250 ms. */
        r = sd_event_add_time(e, &l->time_source, CLOCK_MONOTONIC, 0, 1, on_uv_timer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->time_source, "uv-timer");
        r = sd_event_source_set_enabled(l->time_source, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(l);
        return 0;
}

uv_loop_t *loop_uv_get(LoopUv *l) {
        return &l->loop;
}

bool loop_uv_drain(LoopUv *l, unsigned max_rounds) {
        for (unsigned i = 0; i < max_rounds && uv_loop_alive(&l->loop); i++)
                uv_run(&l->loop, UV_RUN_NOWAIT);
        return !uv_loop_alive(&l->loop);
}

static void on_uv_walk_close(uv_handle_t *h, void *arg) {
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

LoopUv *loop_uv_free(LoopUv *l) {
        if (!l)
                return NULL;

        l->io_source = sd_event_source_disable_unref(l->io_source);
        l->time_source = sd_event_source_disable_unref(l->time_source);
        if (l->loop_initialized) {
                /* Whoever owned handles should have closed them; close any
                 * stragglers so uv_loop_close() cannot fail with EBUSY. */
                if (!loop_uv_drain(l, 64)) {
                        uv_walk(&l->loop, on_uv_walk_close, NULL);
                        (void) loop_uv_drain(l, 64);
                }
                (void) uv_loop_close(&l->loop);
        }
        sd_event_unref(l->event);
        return mfree(l);
}
