/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for libuv embedded in sd-event: uv timers, polls, asyncs and closes run from sd_event_run(). */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "net/loop-uv.h"
#include "basic/macro.h"
#include "test/test.h"

#define MSEC 1000ULL
#define SEC 1000000ULL

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Runs sd-event (only sd-event: nothing calls uv_run() directly) until
 * *counter reaches n, at most timeout. */
static bool run_until(sd_event *e, const unsigned *counter, unsigned n, uint64_t timeout) {
        uint64_t end = now_usec() + timeout;

        while (*counter < n && now_usec() < end)
                ASSERT_OK(sd_event_run(e, 100 * MSEC));
        return *counter >= n;
}

static void on_close_count(uv_handle_t *h) {
        unsigned *closed = h->data;

        (*closed)++;
}

static void test_new_free(sd_event *e) {
        LoopUv *l = NULL;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_NOT_NULL(loop_uv_get(l));
        ASSERT_TRUE(loop_uv_get(l) == loop_uv_get(l));
        /* No handles: drained at once. */
        ASSERT_TRUE(loop_uv_drain(l, 1));
        /* An idle sd-event iteration with an empty uv loop returns. */
        ASSERT_OK(sd_event_run(e, 10 * MSEC));
        l = loop_uv_free(l);
        ASSERT_NULL(l);
        ASSERT_NULL(loop_uv_free(NULL));
        /* The loop's sources are gone: sd-event is idle again. */
        ASSERT_INT_EQ(sd_event_run(e, 0), 0);
}

typedef struct TimerCtx {
        unsigned fired;
        uint64_t started, first, last;
} TimerCtx;

static void on_timer(uv_timer_t *t) {
        TimerCtx *c = t->data;

        if (c->fired == 0)
                c->first = now_usec();
        c->last = now_usec();
        c->fired++;
}

static void test_timer(sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        uv_timer_t t;
        TimerCtx c = {};
        unsigned closed = 0;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(uv_timer_init(loop_uv_get(l), &t), 0);
        t.data = &c;

        /* A one-shot timer fires through sd_event_run(), not before its time
         * and not much after. */
        c.started = now_usec();
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer, 50, 0), 0);
        ASSERT_TRUE(run_until(e, &c.fired, 1, 2 * SEC));
        ASSERT_TRUE(c.first - c.started >= 45 * MSEC);
        ASSERT_TRUE(c.first - c.started < 1500 * MSEC);
        /* Once only. */
        {
                uint64_t end = now_usec() + 150 * MSEC;

                while (now_usec() < end)
                        ASSERT_OK(sd_event_run(e, 20 * MSEC));
        }
        ASSERT_INT_EQ(c.fired, 1);

        /* One sd_event_run() with an infinite timeout must wake up for the
         * uv timer: its deadline is sd-event's, too. */
        c = (TimerCtx) { .started = now_usec() };
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer, 30, 0), 0);
        alarm(10);      /* a hang here would otherwise last forever */
        while (c.fired == 0)
                ASSERT_OK(sd_event_run(e, UINT64_MAX));
        alarm(0);
        ASSERT_TRUE(c.first - c.started >= 25 * MSEC);
        ASSERT_TRUE(c.first - c.started < 1500 * MSEC);

        /* A repeating timer keeps firing. */
        c = (TimerCtx) { .started = now_usec() };
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer, 10, 10), 0);
        ASSERT_TRUE(run_until(e, &c.fired, 10, 3 * SEC));
        ASSERT_TRUE(c.last - c.started >= 90 * MSEC);
        ASSERT_OK(uv_timer_stop(&t));

        /* While the timer is active the loop cannot be drained. */
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer, 100000, 0), 0);
        ASSERT_FALSE(loop_uv_drain(l, 4));
        /* Closing it runs the close callback from the drain. */
        t.data = &closed;
        uv_close((uv_handle_t *) &t, on_close_count);
        ASSERT_INT_EQ(closed, 0);
        ASSERT_TRUE(loop_uv_drain(l, 4));
        ASSERT_INT_EQ(closed, 1);
}

/* A close that is left to the sd-event loop (not drained) completes too. */
static void test_close_via_loop(sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        uv_timer_t t;
        unsigned closed = 0;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(uv_timer_init(loop_uv_get(l), &t), 0);
        t.data = &closed;
        uv_close((uv_handle_t *) &t, on_close_count);
        ASSERT_TRUE(run_until(e, &closed, 1, 2 * SEC));
}

typedef struct PollCtx {
        unsigned events;
        int fd;
        int last_status;
        uv_poll_t *start_from_timer;    /* started by the timer callback */
        unsigned timer_fired;
} PollCtx;

static void on_poll(uv_poll_t *p, int status, int events) {
        PollCtx *c = p->data;
        char buf[64];

        c->last_status = status;
        if (events & UV_READABLE) {
                c->events++;
                /* Consume, so a level-triggered poll does not fire again. */
                while (read(c->fd, buf, sizeof buf) > 0)
                        ;
        }
}

static void test_poll(sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        int pfd[2];
        uv_poll_t p;
        PollCtx c = {};
        unsigned closed = 0;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
        c.fd = pfd[0];

        ASSERT_INT_EQ(uv_poll_init(loop_uv_get(l), &p, pfd[0]), 0);
        p.data = &c;
        /* Started from outside any uv callback, as lws does from sd-event
         * callbacks: the change is only queued in libuv at this point. */
        ASSERT_INT_EQ(uv_poll_start(&p, UV_READABLE, on_poll), 0);

        /* Nothing to read: nothing fires. */
        {
                uint64_t end = now_usec() + 100 * MSEC;

                while (now_usec() < end)
                        ASSERT_OK(sd_event_run(e, 20 * MSEC));
        }
        ASSERT_INT_EQ(c.events, 0);

        /* Data arrives: the poll fires through sd_event_run() alone. */
        ASSERT_INT_EQ(write(pfd[1], "x", 1), 1);
        ASSERT_TRUE(run_until(e, &c.events, 1, 2 * SEC));
        ASSERT_INT_EQ(c.last_status, 0);
        ASSERT_INT_EQ(c.events, 1);

        /* Again, with one sd_event_run() and no timeout. */
        ASSERT_INT_EQ(write(pfd[1], "y", 1), 1);
        alarm(10);
        while (c.events < 2)
                ASSERT_OK(sd_event_run(e, UINT64_MAX));
        alarm(0);

        /* Many rounds. */
        for (unsigned i = 0; i < 100; i++) {
                ASSERT_INT_EQ(write(pfd[1], "z", 1), 1);
                ASSERT_TRUE(run_until(e, &c.events, 3 + i, 2 * SEC));
        }

        /* Stopped: data no longer fires it. */
        ASSERT_INT_EQ(uv_poll_stop(&p), 0);
        ASSERT_INT_EQ(write(pfd[1], "w", 1), 1);
        {
                uint64_t end = now_usec() + 100 * MSEC;
                unsigned before = c.events;

                while (now_usec() < end)
                        ASSERT_OK(sd_event_run(e, 20 * MSEC));
                ASSERT_INT_EQ(c.events, before);
        }
        /* Restarted from outside uv with data already waiting. */
        ASSERT_INT_EQ(uv_poll_start(&p, UV_READABLE, on_poll), 0);
        ASSERT_TRUE(run_until(e, &c.events, 103, 2 * SEC));

        p.data = &closed;
        uv_close((uv_handle_t *) &p, on_close_count);
        ASSERT_TRUE(run_until(e, &closed, 1, 2 * SEC));
        ASSERT_TRUE(loop_uv_drain(l, 4));
        close(pfd[0]);
        close(pfd[1]);
}

/* A poll started from inside a uv callback (the timer) fires as well. */
static void on_timer_start_poll(uv_timer_t *t) {
        PollCtx *c = t->data;

        c->timer_fired++;
        ASSERT_INT_EQ(uv_poll_start(c->start_from_timer, UV_READABLE, on_poll), 0);
}

static void test_poll_from_callback(sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        int pfd[2];
        uv_poll_t p;
        uv_timer_t t;
        PollCtx c = {};

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
        c.fd = pfd[0];
        c.start_from_timer = &p;
        ASSERT_INT_EQ(uv_poll_init(loop_uv_get(l), &p, pfd[0]), 0);
        p.data = &c;
        ASSERT_INT_EQ(uv_timer_init(loop_uv_get(l), &t), 0);
        t.data = &c;
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer_start_poll, 10, 0), 0);
        ASSERT_TRUE(run_until(e, &c.timer_fired, 1, 2 * SEC));
        ASSERT_INT_EQ(write(pfd[1], "x", 1), 1);
        ASSERT_TRUE(run_until(e, &c.events, 1, 2 * SEC));

        uv_close((uv_handle_t *) &p, NULL);
        uv_close((uv_handle_t *) &t, NULL);
        ASSERT_TRUE(loop_uv_drain(l, 4));
        close(pfd[0]);
        close(pfd[1]);
}

/* uv_async_send() from another thread wakes sd-event. */
typedef struct AsyncCtx {
        uv_async_t async;
        unsigned fired;
} AsyncCtx;

static void on_async(uv_async_t *a) {
        AsyncCtx *c = a->data;

        c->fired++;
}

static void *thread_send(void *p) {
        usleep(20 * 1000);
        ASSERT_INT_EQ(uv_async_send(p), 0);
        return NULL;
}

static void test_async(sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        AsyncCtx c = {};
        pthread_t th;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(uv_async_init(loop_uv_get(l), &c.async, on_async), 0);
        c.async.data = &c;
        ASSERT_INT_EQ(pthread_create(&th, NULL, thread_send, &c.async), 0);
        alarm(10);
        while (c.fired == 0)
                ASSERT_OK(sd_event_run(e, UINT64_MAX));
        alarm(0);
        ASSERT_INT_EQ(pthread_join(th, NULL), 0);
        uv_close((uv_handle_t *) &c.async, NULL);
        ASSERT_TRUE(loop_uv_drain(l, 4));
}

/* Handles their owner forgot are closed by loop_uv_free() (ASan: no
 * leak, no use after free; uv_loop_close() must not fail with EBUSY). */
static void test_free_with_stragglers(sd_event *e) {
        LoopUv *l = NULL;
        uv_timer_t t;
        uv_idle_t idle;
        int pfd[2];
        uv_poll_t p;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
        ASSERT_INT_EQ(uv_timer_init(loop_uv_get(l), &t), 0);
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer, 100000, 0), 0);
        ASSERT_INT_EQ(uv_idle_init(loop_uv_get(l), &idle), 0);
        ASSERT_INT_EQ(uv_poll_init(loop_uv_get(l), &p, pfd[0]), 0);
        ASSERT_INT_EQ(uv_poll_start(&p, UV_READABLE, on_poll), 0);
        ASSERT_OK(sd_event_run(e, 10 * MSEC));
        ASSERT_FALSE(loop_uv_drain(l, 2));
        l = loop_uv_free(l);
        ASSERT_NULL(l);
        ASSERT_TRUE(uv_is_closing((uv_handle_t *) &t));
        ASSERT_TRUE(uv_is_closing((uv_handle_t *) &p));
        close(pfd[0]);
        close(pfd[1]);
        ASSERT_INT_EQ(sd_event_run(e, 0), 0);
}

/* sd-event sources of our own keep working beside the uv loop. */
static int on_sd_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        unsigned *n = userdata;

        (*n)++;
        return 0;
}

static void test_coexist(sd_event *e) {
        _cleanup_(loop_uv_freep) LoopUv *l = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *s = NULL;
        uv_timer_t t;
        TimerCtx c = {};
        unsigned sd_fired = 0;
        uint64_t now;

        ASSERT_OK(loop_uv_new(&l, e));
        ASSERT_INT_EQ(uv_timer_init(loop_uv_get(l), &t), 0);
        t.data = &c;
        ASSERT_INT_EQ(uv_timer_start(&t, on_timer, 5, 5), 0);
        ASSERT_OK(sd_event_now(e, CLOCK_MONOTONIC, &now));
        ASSERT_OK(sd_event_add_time(e, &s, CLOCK_MONOTONIC, now + 100 * MSEC, 1, on_sd_timer, &sd_fired));
        ASSERT_TRUE(run_until(e, &sd_fired, 1, 2 * SEC));
        ASSERT_TRUE(c.fired >= 3);
        uv_close((uv_handle_t *) &t, NULL);
        ASSERT_TRUE(loop_uv_drain(l, 4));
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;

        ASSERT_OK(sd_event_new(&e));
        test_new_free(e);
        test_timer(e);
        test_close_via_loop(e);
        test_poll(e);
        test_poll_from_callback(e);
        test_async(e);
        test_free_with_stragglers(e);
        test_coexist(e);
        return 0;
}
