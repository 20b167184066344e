/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for WebSocket connections and their hub, through a real Web and a WebSocket client of our own over loopback. */

/* The server side is all real: web_new() on LoopUv and sd-event, sessions
 * in a private redis-server, the staff re-check by the real multichat-auth
 * under pam_matrix + nss_wrapper (test-web-env.c). The hooks record what
 * they are told. The client is a minimal RFC 6455 one: masked frames out,
 * unmasked frames in, driven by the same loop. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "basic/macro.h"
#include "net/http-util.h"
#include "net/test-web-env.h"
#include "net/web.h"
#include "net/ws.h"
#include "store/session.h"
#include "test/test.h"
#include "wire/frame.h"

/* RFC 6455 section 1.3's example key and the answer it must get. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

enum {
        OP_CONTINUATION = 0x0,
        OP_TEXT = 0x1,
        OP_BINARY = 0x2,
        OP_CLOSE = 0x8,
        OP_PING = 0x9,
        OP_PONG = 0xA,
};

static TestWeb t;

typedef struct WsClient {
        int fd;
        Buf in;
} WsClient;

typedef struct WsFrame {
        unsigned opcode;
        bool fin;
        char *payload;
        size_t len;
        unsigned close_code;
} WsFrame;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * TEST_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void pump(WsClient *w) {
        test_web_run(&t, 10 * TEST_MSEC);
        buf_fill(&w->in, w->fd);
}

static void run_until(WsClient *w, const unsigned *counter, unsigned want) {
        uint64_t end = mono_usec() + 8 * TEST_SEC;

        while (*counter < want && mono_usec() < end)
                pump(w);
        ASSERT_INT_EQ(*counter, want);
}

/* Sends the upgrade and returns the HTTP status of the answer. */
static unsigned ws_open_with(WsClient *w, const char *path, const char *origin, const char *cookie) {
        char req[1024], *end;
        unsigned status = 0;
        uint64_t deadline;
        int n;

        *w = (WsClient) { .fd = test_web_connect(&t) };
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s%s%s%s%s%s\r\n",
                     path, t.host,
                     origin ? "Origin: " : "", origin ?: "", origin ? "\r\n" : "",
                     cookie ? "Cookie: " : "", cookie ?: "", cookie ? "\r\n" : "");
        ASSERT_TRUE(n > 0 && (size_t) n < sizeof req);
        test_web_send(&t, w->fd, req, (size_t) n);

        deadline = mono_usec() + 5 * TEST_SEC;
        while (!(end = strstr(w->in.data ?: "", "\r\n\r\n"))) {
                ASSERT_FALSE(w->in.eof);
                ASSERT_TRUE(mono_usec() < deadline);
                pump(w);
        }
        if (sscanf(w->in.data, "HTTP/1.%*u %u", &status) != 1)
                fprintf(stderr, "not an HTTP response: %s\n", w->in.data);
        ASSERT_TRUE(status != 0);
        if (status == 101)
                ASSERT_NOT_NULL(strstr(w->in.data, "\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n") ?:
                                strcasestr(w->in.data, "\r\nsec-websocket-accept: " WS_ACCEPT "\r\n"));
        buf_consume(&w->in, (size_t) (end - w->in.data) + 4);
        return status;
}

static unsigned ws_open(WsClient *w, const char *session_id) {
        char origin[64], cookie[128];

        snprintf(origin, sizeof origin, "http://%s", t.host);
        snprintf(cookie, sizeof cookie, "theme=dark; %s=%s", http_session_cookie_name(false), session_id);
        return ws_open_with(w, WS_PATH, origin, cookie);
}

static void ws_close_fd(WsClient *w) {
        w->fd = safe_close(w->fd);
        buf_done(&w->in);
}

static void ws_send_frame(WsClient *w, unsigned opcode, bool fin, const void *payload, size_t len) {
        static const unsigned char mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
        _cleanup_free_ unsigned char *f = malloc(len + 14);
        size_t h = 0;

        ASSERT_NOT_NULL(f);
        f[h++] = (unsigned char) ((fin ? 0x80 : 0) | opcode);
        if (len < 126)
                f[h++] = (unsigned char) (0x80 | len);
        else if (len < 65536) {
                f[h++] = 0x80 | 126;
                f[h++] = (unsigned char) (len >> 8);
                f[h++] = (unsigned char) len;
        } else {
                f[h++] = 0x80 | 127;
                for (int i = 7; i >= 0; i--)
                        f[h++] = (unsigned char) ((uint64_t) len >> (8 * i));
        }
        memcpy(f + h, mask, 4);
        h += 4;
        for (size_t i = 0; i < len; i++)
                f[h + i] = ((const unsigned char *) payload)[i] ^ mask[i % 4];
        test_web_send(&t, w->fd, f, h + len);
}

static void ws_send_text(WsClient *w, const char *text) {
        ws_send_frame(w, OP_TEXT, true, text, strlen(text));
}

/* A whole frame from the buffer, if there is one. */
static bool ws_parse(WsClient *w, WsFrame *ret) {
        const unsigned char *p = (const unsigned char *) w->in.data;
        size_t h = 2;
        uint64_t len;

        if (w->in.len < 2)
                return false;
        ASSERT_FALSE(p[1] & 0x80);      /* a server never masks */
        len = p[1] & 0x7f;
        if (len == 126) {
                if (w->in.len < 4)
                        return false;
                len = (uint64_t) p[2] << 8 | p[3];
                h = 4;
        } else if (len == 127) {
                if (w->in.len < 10)
                        return false;
                len = 0;
                for (int i = 0; i < 8; i++)
                        len = len << 8 | p[2 + i];
                h = 10;
        }
        if (w->in.len < h + len)
                return false;
        *ret = (WsFrame) { .opcode = p[0] & 0x0f, .fin = p[0] & 0x80, .len = len };
        ret->payload = strndup((const char *) p + h, len);
        ASSERT_NOT_NULL(ret->payload);
        if (ret->opcode == OP_CLOSE && len >= 2)
                ret->close_code = (unsigned) p[h] << 8 | p[h + 1];
        buf_consume(&w->in, h + len);
        return true;
}

/* The next frame; false on EOF or after timeout. */
static bool ws_recv(WsClient *w, WsFrame *ret, uint64_t timeout) {
        uint64_t end = mono_usec() + timeout;

        for (;;) {
                if (ws_parse(w, ret))
                        return true;
                if (w->in.eof || mono_usec() > end)
                        return false;
                pump(w);
        }
}

static void ws_frame_done(WsFrame *f) {
        free(f->payload);
        *f = (WsFrame) {};
}

static void expect_text(WsClient *w, const char *text) {
        WsFrame f;

        ASSERT_TRUE(ws_recv(w, &f, 5 * TEST_SEC));
        ASSERT_INT_EQ(f.opcode, OP_TEXT);
        ASSERT_STREQ(f.payload, text);
        ws_frame_done(&f);
}

/* Skips text frames up to the close frame; returns how many it skipped. */
static unsigned expect_close(WsClient *w, unsigned code) {
        unsigned texts = 0;
        WsFrame f;

        for (;;) {
                ASSERT_TRUE(ws_recv(w, &f, 5 * TEST_SEC));
                if (f.opcode != OP_TEXT)
                        break;
                texts++;
                ws_frame_done(&f);
        }
        ASSERT_INT_EQ(f.opcode, OP_CLOSE);
        ASSERT_INT_EQ(f.close_code, code);
        ws_frame_done(&f);
        return texts;
}

/* After a close from the server (or a drop) the server hangs up. */
static void expect_eof(WsClient *w) {
        uint64_t end = mono_usec() + 5 * TEST_SEC;
        WsFrame f;

        /* Answer a close as a browser does (lws waits for that); the
         * server may have hung up already. */
        (void) send(w->fd, "\x88\x80\x01\x02\x03\x04", 6, MSG_NOSIGNAL);

        while (!w->in.eof) {
                ASSERT_TRUE(mono_usec() < end);
                pump(w);
                while (ws_parse(w, &f))
                        ws_frame_done(&f);
        }
}

/* A logged-in WebSocket whose session check is done; returns its Conn. */
static Conn *open_ready(WsClient *w, const char *user, uid_t uid, bool staff) {
        char sid[SESSION_ID_MAX + 1];
        unsigned ready = t.rec.ready;

        test_web_session(&t, user, uid, staff, sid, NULL);
        ASSERT_INT_EQ(ws_open(w, sid), 101);
        run_until(w, &t.rec.ready, ready + 1);
        ASSERT_INT_EQ(t.rec.last_ready->state, CONN_READY);
        ASSERT_STREQ(t.rec.last_ready->session_id, sid);
        return t.rec.last_ready;
}

/* The client says goodbye; the server answers and the hooks hear of it. */
static void close_by_client(WsClient *w) {
        unsigned closed = t.rec.closed;

        ws_send_frame(w, OP_CLOSE, true, "\x03\xe8", 2);
        ASSERT_INT_EQ(expect_close(w, 1000), 0);
        run_until(w, &t.rec.closed, closed + 1);
        ws_close_fd(w);
}

/* ---- the tests ---- */

static void test_ready_and_staff_recheck(void) {
        WsClient a, b;
        unsigned changes = t.rec.conns_changes;
        Conn *c;

        /* The session says not staff; the helper says alice is in
         * multichat-staff now, and that wins. */
        c = open_ready(&a, "alice", 1001, false);
        ASSERT_STREQ(c->username, "alice");
        ASSERT_TRUE(c->staff);
        ASSERT_STREQ(c->peer, "127.0.0.1");
        ASSERT_INT_EQ(t.rec.conns, 1);
        ASSERT_INT_EQ(ws_hub_count(web_hub(t.web)), 1);

        /* And the other way round: bob left the group since login. */
        c = open_ready(&b, "bob", 1002, true);
        ASSERT_FALSE(c->staff);
        ASSERT_INT_EQ(t.rec.conns, 2);
        ASSERT_INT_EQ(t.rec.conns_changes, changes + 2);

        close_by_client(&a);
        ASSERT_INT_EQ(t.rec.conns, 1);
        close_by_client(&b);
        ASSERT_INT_EQ(t.rec.conns, 0);
        ASSERT_INT_EQ(t.rec.conns_changes, changes + 4);
        ASSERT_INT_EQ(ws_hub_count(web_hub(t.web)), 0);
}

static void test_account_gone(void) {
        char sid[SESSION_ID_MAX + 1];
        unsigned ready = t.rec.ready, closed = t.rec.closed;
        WsClient w;

        /* A session of an account the system no longer has. */
        test_web_session(&t, "carol", 1003, false, sid, NULL);
        ASSERT_INT_EQ(ws_open(&w, sid), 101);
        expect_text(&w, "{\"error\": \"USER_HAS_TO_LOGIN\"}");
        ASSERT_INT_EQ(expect_close(&w, WS_CLOSE_LOGGED_OUT), 0);
        expect_eof(&w);
        ASSERT_INT_EQ(t.rec.ready, ready);
        ASSERT_INT_EQ(t.rec.closed, closed);     /* never ready, so not "closed" either */
        ws_close_fd(&w);
}

static void test_unknown_session(void) {
        unsigned ready = t.rec.ready;
        WsClient w;

        /* Well-formed, but no such session in Redis. */
        ASSERT_INT_EQ(ws_open(&w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 101);
        expect_text(&w, "{\"error\": \"USER_HAS_TO_LOGIN\"}");
        ASSERT_INT_EQ(expect_close(&w, WS_CLOSE_LOGGED_OUT), 0);
        expect_eof(&w);
        ASSERT_INT_EQ(t.rec.ready, ready);
        ws_close_fd(&w);
        test_web_run_for(&t, 50 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.conns, 0);
}

static void test_refused_upgrades(void) {
        char sid[SESSION_ID_MAX + 1], origin[64], cookie[128];
        unsigned changes = t.rec.conns_changes;
        WsClient w;

        test_web_session(&t, "bob", 1002, false, sid, NULL);
        snprintf(origin, sizeof origin, "http://%s", t.host);
        snprintf(cookie, sizeof cookie, "%s=%s", http_session_cookie_name(false), sid);

        /* Another site's page, a look-alike, https for an http page, none. */
        ASSERT_INT_EQ(ws_open_with(&w, WS_PATH, "http://evil.example", cookie), 403);
        ws_close_fd(&w);
        ASSERT_INT_EQ(ws_open_with(&w, WS_PATH, "http://127.0.0.1:1", cookie), 403);
        ws_close_fd(&w);
        snprintf(origin, sizeof origin, "https://%s", t.host);
        ASSERT_INT_EQ(ws_open_with(&w, WS_PATH, origin, cookie), 403);
        ws_close_fd(&w);
        ASSERT_INT_EQ(ws_open_with(&w, WS_PATH, NULL, cookie), 403);
        ws_close_fd(&w);

        /* The right Origin, but no cookie or a malformed one. */
        snprintf(origin, sizeof origin, "http://%s", t.host);
        ASSERT_INT_EQ(ws_open_with(&w, WS_PATH, origin, NULL), 403);
        ws_close_fd(&w);
        snprintf(cookie, sizeof cookie, "%s=short", http_session_cookie_name(false));
        ASSERT_INT_EQ(ws_open_with(&w, WS_PATH, origin, cookie), 403);
        ws_close_fd(&w);

        /* Another path. */
        snprintf(cookie, sizeof cookie, "%s=%s", http_session_cookie_name(false), sid);
        ASSERT_INT_EQ(ws_open_with(&w, "/chat/other/", origin, cookie), 404);
        ws_close_fd(&w);

        test_web_run_for(&t, 50 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.conns_changes, changes);
}

static void test_commands(void) {
        unsigned commands = t.rec.commands;
        WsClient w;

        open_ready(&w, "bob", 1002, false);
        ws_send_text(&w, "{\"command\": \"send\", \"room\": \"12\", \"message\": \"hello\", \"ref\": \"a1\"}");
        run_until(&w, &t.rec.commands, commands + 1);
        ASSERT_INT_EQ(t.rec.last_type, COMMAND_SEND);
        ASSERT_STREQ(t.rec.last_room, "12");
        ASSERT_STREQ(t.rec.last_message, "hello");
        ASSERT_STREQ(t.rec.last_ref, "a1");

        ws_send_text(&w, "{\"command\": \"join\", \"room\": 3}");
        run_until(&w, &t.rec.commands, commands + 2);
        ASSERT_INT_EQ(t.rec.last_type, COMMAND_JOIN);
        ASSERT_STREQ(t.rec.last_room, "3");

        /* What does not parse is answered here and never reaches the hook. */
        ws_send_text(&w, "{\"command\": \"dance\", \"room\": 3, \"ref\": \"x\"}");
        expect_text(&w, "{\"error\": \"BAD_REQUEST\", \"ref\": \"x\"}");
        ws_send_text(&w, "{\"command\": \"join\", \"room\": \"01\", \"ref\": \"y\"}");
        expect_text(&w, "{\"error\": \"ROOM_INVALID\", \"ref\": \"y\"}");
        ws_send_text(&w, "not json");
        expect_text(&w, "{\"error\": \"BAD_REQUEST\"}");
        ASSERT_INT_EQ(t.rec.commands, commands + 2);

        /* A binary frame is refused, and the connection stays usable. */
        ws_send_frame(&w, OP_BINARY, true, "{\"command\": \"typing\", \"room\": 1}", 32);
        expect_text(&w, "{\"error\": \"BAD_REQUEST\"}");
        ASSERT_INT_EQ(t.rec.commands, commands + 2);

        /* A message in three fragments is put together. */
        {
                char msg[1100];
                int n = snprintf(msg, sizeof msg, "{\"command\": \"send\", \"room\": 5, \"message\": \"%0900d\"}", 7);

                ws_send_frame(&w, OP_TEXT, false, msg, 300);
                ws_send_frame(&w, OP_CONTINUATION, false, msg + 300, 300);
                ws_send_frame(&w, OP_CONTINUATION, true, msg + 600, (size_t) n - 600);
                run_until(&w, &t.rec.commands, commands + 3);
                ASSERT_STREQ(t.rec.last_room, "5");
                ASSERT_INT_EQ(strlen(t.rec.last_message), 900);
        }
        close_by_client(&w);
}

static void test_too_long(void) {
        _cleanup_free_ char *big = malloc(12001);
        unsigned commands = t.rec.commands, closed = t.rec.closed;
        WsClient w;

        /* The cap is max_message_bytes × 6 + 4096 = 10096 bytes. */
        ASSERT_NOT_NULL(big);
        memset(big, ' ', 12000);
        big[12000] = 0;
        memcpy(big, "{\"command\": \"send\", \"room\": 1, \"message\": \"", 43);
        open_ready(&w, "bob", 1002, false);
        ws_send_text(&w, big);
        ASSERT_INT_EQ(expect_close(&w, 1009), 0);
        expect_eof(&w);
        run_until(&w, &t.rec.closed, closed + 1);
        ASSERT_INT_EQ(t.rec.commands, commands);
        ws_close_fd(&w);
}

_printf_(1, 2)
static Frame *text_frame(const char *fmt, ...) {
        va_list ap;
        Frame *f;
        char *s;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        ASSERT_TRUE(n > 0);
        ASSERT_OK(frame_new_take(&f, s));
        return f;
}

static void test_sends(void) {
        WsHub *hub = web_hub(t.web);
        char want[2048];
        WsClient w;
        WsFrame f;
        Conn *c;

        c = open_ready(&w, "bob", 1002, false);

        /* Three frames queued in one go leave in one write pass. */
        for (unsigned i = 0; i < 3; i++) {
                _cleanup_(frame_unrefp) Frame *fr = text_frame("{\"n\": %u}", i);
                ws_conn_send(c, fr);
        }
        ASSERT_INT_EQ(c->queue_len, 3);
        ws_hub_write_scheduled(hub);
        ASSERT_INT_EQ(c->queue_len, 0);
        expect_text(&w, "{\"n\": 0}");
        expect_text(&w, "{\"n\": 1}");
        expect_text(&w, "{\"n\": 2}");

        /* More than one batch (16 KB) of bigger ones, in order. */
        for (unsigned i = 0; i < 40; i++) {
                _cleanup_(frame_unrefp) Frame *fr = text_frame("{\"n\": %u, \"pad\": \"%01000u\"}", i, i);
                ws_conn_send(c, fr);
        }
        for (unsigned i = 0; i < 40; i++) {
                snprintf(want, sizeof want, "{\"n\": %u, \"pad\": \"%01000u\"}", i, i);
                ASSERT_TRUE(ws_recv(&w, &f, 5 * TEST_SEC));
                ASSERT_INT_EQ(f.opcode, OP_TEXT);
                ASSERT_TRUE(f.fin);
                ASSERT_STREQ(f.payload, want);
                ws_frame_done(&f);
        }

        /* One frame shared by several receivers: each gets it. */
        {
                WsClient w2;
                Conn *c2 = open_ready(&w2, "alice", 1001, true);
                _cleanup_(frame_unrefp) Frame *fr = text_frame("{\"shared\": %u}", 1);

                ws_conn_send(c, fr);
                ws_conn_send(c2, fr);
                ASSERT_INT_EQ(fr->n_ref, 3);
                expect_text(&w, "{\"shared\": 1}");
                expect_text(&w2, "{\"shared\": 1}");
                ASSERT_INT_EQ(fr->n_ref, 1);
                close_by_client(&w2);
        }
        close_by_client(&w);
}

static void test_full_queue(void) {
        unsigned closed = t.rec.closed;
        WsClient w;
        Conn *c;

        c = open_ready(&w, "bob", 1002, false);
        /* send_queue_frames is 64: the 65th finds the queue full. */
        for (unsigned i = 0; i < 65; i++) {
                _cleanup_(frame_unrefp) Frame *fr = text_frame("{\"n\": %u}", i);
                ws_conn_send(c, fr);
        }
        ASSERT_FALSE(ws_conn_is_open(c));
        /* What was queued is dropped so that the close goes next: a reader
         * that slow would not take 64 frames before it anyway. */
        ASSERT_INT_EQ(c->queue_len, 0);
        ASSERT_INT_EQ(expect_close(&w, WS_CLOSE_TRY_AGAIN_LATER), 0);
        expect_eof(&w);
        run_until(&w, &t.rec.closed, closed + 1);
        ws_close_fd(&w);
}

static void test_rate_limit(void) {
        unsigned commands = t.rec.commands, limited = 0, frames = 0;
        unsigned saved_queue = t.services.settings.send_queue_frames;
        uint64_t start, end;
        WsClient w;
        WsFrame f;

        /* Room for every RATE_LIMITED answer, so the flood and not a full
         * queue is what ends it. */
        t.services.settings.send_queue_frames = 1024;
        open_ready(&w, "bob", 1002, false);

        /* The burst (10) passes, the next is refused with its ref. */
        for (unsigned i = 0; i < 10; i++)
                ws_send_text(&w, "{\"command\": \"typing\", \"room\": 1}");
        run_until(&w, &t.rec.commands, commands + 10);
        ws_send_text(&w, "{\"command\": \"typing\", \"room\": 1, \"ref\": \"r11\"}");
        expect_text(&w, "{\"error\": \"RATE_LIMITED\", \"ref\": \"r11\"}");
        ASSERT_INT_EQ(t.rec.commands, commands + 10);

        /* A sustained flood: refused, refused, ..., then closed (1008). */
        start = mono_usec();
        for (unsigned i = 0; i < 260; i++)
                ws_send_text(&w, "{\"command\": \"typing\", \"room\": 1}");
        end = mono_usec() + 10 * TEST_SEC;
        for (;;) {
                ASSERT_TRUE(mono_usec() < end);
                ASSERT_TRUE(ws_recv(&w, &f, 5 * TEST_SEC));
                frames++;
                if (f.opcode == OP_CLOSE)
                        break;
                ASSERT_INT_EQ(f.opcode, OP_TEXT);
                if (streq(f.payload, "{\"error\": \"RATE_LIMITED\"}"))
                        limited++;
                ws_frame_done(&f);
        }
        ASSERT_INT_EQ(f.close_code, 1008);
        ws_frame_done(&f);
        /* 200 strikes are tolerated; tokens that came back meanwhile
         * (5 per second) each let one through and forgive one strike. */
        ASSERT_TRUE(limited >= 199);
        ASSERT_TRUE(t.rec.commands - commands <= 10 + 1 + 5 * (mono_usec() - start) / TEST_SEC);
        expect_eof(&w);
        ws_close_fd(&w);
        t.services.settings.send_queue_frames = saved_queue;
}

static void test_keepalive(void) {
        WsHub *hub = web_hub(t.web);
        uint64_t quiet = t.services.settings.keepalive_usec, last;
        unsigned closed = t.rec.closed;
        WsClient w;
        WsFrame f;
        Conn *c;

        c = open_ready(&w, "bob", 1002, false);
        last = c->last_rx_usec;

        /* Not yet quiet long enough: nothing. */
        ws_hub_keepalive(hub, last + quiet - 1);
        test_web_run_for(&t, 50 * TEST_MSEC);
        buf_fill(&w.in, w.fd);
        ASSERT_INT_EQ(w.in.len, 0);

        /* Quiet for keepalive: one ping, however often the sweep runs. */
        ws_hub_keepalive(hub, last + quiet);
        ws_hub_keepalive(hub, last + quiet + 1);
        ASSERT_TRUE(ws_recv(&w, &f, 5 * TEST_SEC));
        ASSERT_INT_EQ(f.opcode, OP_PING);
        /* lws 4.1 reports only pongs with a payload, and a browser's
         * pong echoes the ping's. */
        ASSERT_TRUE(f.len > 0);
        ASSERT_TRUE(c->ping_sent);
        test_web_run_for(&t, 50 * TEST_MSEC);
        ASSERT_FALSE(ws_parse(&w, &(WsFrame) {}));

        /* The pong counts as life: the clock starts again. */
        ws_send_frame(&w, OP_PONG, true, f.payload, f.len);
        ws_frame_done(&f);
        for (unsigned i = 0; i < 200 && c->ping_sent; i++)
                pump(&w);
        ASSERT_FALSE(c->ping_sent);
        ASSERT_TRUE(c->last_rx_usec >= last);
        last = c->last_rx_usec;

        /* Quiet twice as long: dropped, without a close frame. */
        ws_hub_keepalive(hub, last + 2 * quiet - 1);
        ASSERT_TRUE(ws_conn_is_open(c));
        ws_hub_keepalive(hub, last + 2 * quiet);
        run_until(&w, &t.rec.closed, closed + 1);
        expect_eof(&w);
        ASSERT_INT_EQ(t.rec.conns, 0);
        ws_close_fd(&w);
}

static void test_ready_refused(void) {
        unsigned commands = t.rec.commands, closed = t.rec.closed;
        char sid[SESSION_ID_MAX + 1];
        WsClient w;

        /* The owner cannot take the connection (conn_ready < 0): 1011. */
        t.rec.ready_result = -ENOMEM;
        test_web_session(&t, "bob", 1002, false, sid, NULL);
        ASSERT_INT_EQ(ws_open(&w, sid), 101);
        ASSERT_INT_EQ(expect_close(&w, 1011), 0);
        expect_eof(&w);
        t.rec.ready_result = 0;
        /* It was ready when refused, so it is reported closed. */
        run_until(&w, &t.rec.closed, closed + 1);
        ASSERT_INT_EQ(t.rec.commands, commands);
        ws_close_fd(&w);
}

static void test_gone_while_validating(void) {
        char sid[SESSION_ID_MAX + 1];
        unsigned ready = t.rec.ready, closed = t.rec.closed, changes = t.rec.conns_changes;
        WsClient w;

        /* The client leaves while its session and staff flag are being
         * checked: the lookups are dropped, nothing becomes ready. */
        test_web_session(&t, "alice", 1001, false, sid, NULL);
        ASSERT_INT_EQ(ws_open(&w, sid), 101);
        w.fd = safe_close(w.fd);
        buf_done(&w.in);
        for (unsigned i = 0; i < 500 && t.rec.conns_changes < changes + 2; i++)
                test_web_run(&t, 10 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.conns_changes, changes + 2);
        test_web_run_for(&t, 200 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.ready, ready);
        ASSERT_INT_EQ(t.rec.closed, closed);
        ASSERT_INT_EQ(t.rec.conns, 0);
}

static void test_vanished_client(void) {
        unsigned closed = t.rec.closed;
        WsClient w;

        /* A client that just goes away is noticed by lws. */
        open_ready(&w, "alice", 1001, false);
        w.fd = safe_close(w.fd);
        for (unsigned i = 0; i < 500 && t.rec.closed == closed; i++)
                test_web_run(&t, 10 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.closed, closed + 1);
        ASSERT_INT_EQ(t.rec.conns, 0);
        buf_done(&w.in);
}

static void test_redis_gone(void) {
        char sid[SESSION_ID_MAX + 1];
        unsigned ready = t.rec.ready;
        WsClient w;

        /* Redis cannot say whether the session is valid: try again later
         * (1013), not "log in" (4001). */
        test_web_session(&t, "bob", 1002, false, sid, NULL);
        test_redis_kill(&t.redis_server);
        for (unsigned i = 0; i < 300 && t.redis_connected; i++)
                test_web_run(&t, 10 * TEST_MSEC);
        ASSERT_FALSE(t.redis_connected);
        ASSERT_INT_EQ(ws_open(&w, sid), 101);
        expect_text(&w, "{\"error\": \"UNAVAILABLE\"}");
        ASSERT_INT_EQ(expect_close(&w, WS_CLOSE_TRY_AGAIN_LATER), 0);
        expect_eof(&w);
        ASSERT_INT_EQ(t.rec.ready, ready);
        ws_close_fd(&w);
}

int main(void) {
        int r;

        r = test_web_setup(&t);
        if (r == EXIT_TEST_SKIP)
                return r;

        test_ready_and_staff_recheck();
        test_account_gone();
        test_unknown_session();
        test_refused_upgrades();
        test_commands();
        test_too_long();
        test_sends();
        test_full_queue();
        test_rate_limit();
        test_keepalive();
        test_ready_refused();
        test_gone_while_validating();
        test_vanished_client();
        test_redis_gone();

        /* Every accepted connection was let go again. */
        test_web_run_for(&t, 100 * TEST_MSEC);
        ASSERT_INT_EQ(web_peer_count(t.web), 0);
        ASSERT_INT_EQ(ws_hub_count(web_hub(t.web)), 0);

        test_web_teardown(&t);
        return 0;
}
