/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the page, static files, /api/session, /api/rooms and /healthz, over loopback HTTP to a real Web. */

/* The web front of test-web-env.c: sessions in a private redis-server,
 * the hooks (rooms_json, healthy) a recorder. Routing (404/405) is web.c's;
 * it is tested here because these are the pages it routes to. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "net/http-util.h"
#include "net/test-web-env.h"
#include "test/test.h"

static TestWeb t;

static char *request(const char *method, const char *path, const char *session_id) {
        char *s;

        ASSERT_TRUE(asprintf(&s, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s\r\n", method, path, t.host,
                             session_id ? "Cookie: " HTTP_SESSION_COOKIE_NAME "=" : "", session_id ?: "",
                             session_id ? "; lang=en" : "", session_id ? "\r\n" : "") > 0);
        return s;
}

static void get(const char *method, const char *path, const char *session_id, HttpReply *ret) {
        _cleanup_free_ char *req = request(method, path, session_id);

        http_get(&t, req, ret, 5 * TEST_SEC);
}

static void expect_header(const HttpReply *r, const char *name, const char *value) {
        _cleanup_free_ char *v = http_reply_header(r, name, 0);

        if (!v || !streq(v, value))
                fprintf(stderr, "headers:\n%s\n", r->headers);
        ASSERT_STREQ(v, value);
}

static void expect_status(const char *method, const char *path, const char *session_id, unsigned status) {
        HttpReply r;

        get(method, path, session_id, &r);
        if (r.status != status)
                fprintf(stderr, "%s %s\n", method, path);
        ASSERT_INT_EQ(r.status, status);
        /* Every answer, errors too, carries the security headers. */
        expect_header(&r, "x-content-type-options", "nosniff");
        expect_header(&r, "x-frame-options", "DENY");
        http_reply_done(&r);
}

static void test_index(const char *sid) {
        HttpReply r;

        /* Without a session: to the login page, and back here after. */
        get("GET", "/", NULL, &r);
        ASSERT_INT_EQ(r.status, 303);
        expect_header(&r, "location", "/login?next=/");
        http_reply_done(&r);

        /* A well-formed id that is no session is the same. */
        get("GET", "/", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r);
        ASSERT_INT_EQ(r.status, 303);
        http_reply_done(&r);
        get("GET", "/", "not-an-id", &r);
        ASSERT_INT_EQ(r.status, 303);
        http_reply_done(&r);

        get("GET", "/", sid, &r);
        ASSERT_INT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "<!doctype html><title>chat</title>\n");
        expect_header(&r, "content-type", "text/html; charset=utf-8");
        http_reply_done(&r);
}

static void test_session(const char *alice, const char *bob, const char *alice_csrf) {
        char want[200];
        HttpReply r;

        get("GET", "/api/session", NULL, &r);
        ASSERT_INT_EQ(r.status, 401);
        ASSERT_STREQ(r.body, "{\"error\": \"USER_HAS_TO_LOGIN\"}");
        expect_header(&r, "content-type", "application/json");
        http_reply_done(&r);

        get("GET", "/api/session", alice, &r);
        ASSERT_INT_EQ(r.status, 200);
        snprintf(want, sizeof want, "{\"username\": \"alice\", \"staff\": true, \"csrf\": \"%s\"}", alice_csrf);
        ASSERT_STREQ(r.body, want);
        http_reply_done(&r);

        get("GET", "/api/session", bob, &r);
        ASSERT_INT_EQ(r.status, 200);
        ASSERT_TRUE(strncmp(r.body, "{\"username\": \"bob\", \"staff\": false, \"csrf\": \"", 45) == 0);
        http_reply_done(&r);
}

static void test_rooms(const char *sid) {
        unsigned calls = t.rec.rooms_json;
        HttpReply r;

        /* Not logged in: the hook is not even asked. */
        get("GET", "/api/rooms", NULL, &r);
        ASSERT_INT_EQ(r.status, 401);
        ASSERT_STREQ(r.body, "{\"error\": \"USER_HAS_TO_LOGIN\"}");
        http_reply_done(&r);
        ASSERT_INT_EQ(t.rec.rooms_json, calls);

        get("GET", "/api/rooms", sid, &r);
        ASSERT_INT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "{\"rooms\": [{\"id\": \"7\", \"title\": \"Lobby\"}]}");
        expect_header(&r, "content-type", "application/json");
        http_reply_done(&r);
        ASSERT_INT_EQ(t.rec.rooms_json, calls + 1);
}

static void test_healthz(void) {
        HttpReply r;

        t.rec.healthy = true;
        get("GET", "/healthz", NULL, &r);
        ASSERT_INT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "ok\n");
        http_reply_done(&r);

        t.rec.healthy = false;
        get("GET", "/healthz", NULL, &r);
        ASSERT_INT_EQ(r.status, 503);
        http_reply_done(&r);

        t.rec.healthy = true;
        get("GET", "/healthz", NULL, &r);
        ASSERT_INT_EQ(r.status, 200);
        http_reply_done(&r);
}

static void test_static(void) {
        _cleanup_free_ char *etag = NULL, *etag2 = NULL;
        HttpReply r;

        /* Static files need no login (the login page uses them). */
        get("GET", "/static/app.js", NULL, &r);
        ASSERT_INT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "console.log('multichat');\n");
        expect_header(&r, "content-type", "text/javascript; charset=utf-8");
        etag = http_reply_header(&r, "etag", 0);
        ASSERT_NOT_NULL(etag);
        ASSERT_TRUE(strlen(etag) == 18 && etag[0] == '"' && etag[17] == '"');
        http_reply_done(&r);

        /* The same bytes, the same tag; another file, another tag. */
        get("GET", "/static/app.js", NULL, &r);
        etag2 = http_reply_header(&r, "etag", 0);
        ASSERT_STREQ(etag2, etag);
        http_reply_done(&r);
        free(etag2);
        get("GET", "/static/index.html", NULL, &r);
        ASSERT_INT_EQ(r.status, 200);
        etag2 = http_reply_header(&r, "etag", 0);
        ASSERT_NOT_NULL(etag2);
        ASSERT_FALSE(streq(etag2, etag));
        http_reply_done(&r);

        expect_status("GET", "/static/missing.js", NULL, 404);
        expect_status("GET", "/static/../passwd", NULL, 404);
        expect_status("GET", "/static/%2e%2e/passwd", NULL, 404);
        expect_status("GET", "/static/", NULL, 404);
}

static void test_routes(const char *sid) {
        expect_status("GET", "/nope", NULL, 404);
        expect_status("GET", "/api/nope", sid, 404);
        expect_status("POST", "/nope", NULL, 404);
        expect_status("POST", "/", sid, 405);
        expect_status("POST", "/api/rooms", sid, 405);
        expect_status("POST", "/api/session", sid, 405);
        expect_status("PUT", "/", sid, 405);
        expect_status("DELETE", "/api/session", sid, 405);
        /* The WebSocket path without an upgrade. */
        expect_status("GET", WS_PATH, sid, 400);
}

/* Two requests on one connection, the second after the first is answered. */
static void test_keep_alive(const char *sid) {
        _cleanup_free_ char *a = request("GET", "/healthz", NULL), *b = request("GET", "/api/rooms", sid);
        unsigned removed = t.rec.peers_removed;
        Buf buf = {};
        HttpReply r;
        int fd;

        fd = test_web_connect(&t);
        http_exchange(&t, fd, &buf, a, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 200);
        http_reply_done(&r);
        http_exchange(&t, fd, &buf, b, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 200);
        http_reply_done(&r);
        buf_done(&buf);
        safe_close(fd);
        for (unsigned i = 0; i < 300 && t.rec.peers_removed == removed; i++)
                test_web_run(&t, 10 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.peers_removed, removed + 1);
}

static void test_redis_gone(const char *sid) {
        HttpReply r;

        /* Redis cannot say whether the session is valid: 503, not a
         * redirect to the login page that would not work either. */
        test_redis_kill(&t.redis_server);
        for (unsigned i = 0; i < 300 && t.redis_connected; i++)
                test_web_run(&t, 10 * TEST_MSEC);
        ASSERT_FALSE(t.redis_connected);

        get("GET", "/api/session", sid, &r);
        ASSERT_INT_EQ(r.status, 503);
        ASSERT_STREQ(r.body, "{\"error\": \"UNAVAILABLE\"}");
        http_reply_done(&r);
        get("GET", "/", sid, &r);
        ASSERT_INT_EQ(r.status, 503);
        http_reply_done(&r);
        /* Without a cookie there is nothing to ask Redis. */
        get("GET", "/", NULL, &r);
        ASSERT_INT_EQ(r.status, 303);
        http_reply_done(&r);
}

int main(void) {
        char alice[SESSION_ID_MAX + 1], bob[SESSION_ID_MAX + 1], alice_csrf[CSRF_TOKEN_MAX + 1];
        int r;

        r = test_web_setup(&t);
        if (r == EXIT_TEST_SKIP)
                return r;
        test_web_session(&t, "alice", 1001, true, alice, alice_csrf);
        test_web_session(&t, "bob", 1002, false, bob, NULL);

        test_index(alice);
        test_session(alice, bob, alice_csrf);
        test_rooms(bob);
        test_healthz();
        test_static();
        test_routes(alice);
        test_keep_alive(alice);
        test_redis_gone(alice);

        test_web_run_for(&t, 100 * TEST_MSEC);
        ASSERT_INT_EQ(web_peer_count(t.web), 0);
        test_web_teardown(&t);
        return 0;
}
