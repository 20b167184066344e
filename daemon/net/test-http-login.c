/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for /login and /logout over loopback HTTP: the form, CSRF, passwords checked by the real helper, limits, sessions in Redis. */

/* The web front of test-web-env.c: the real multichat-auth under
 * pam_matrix + nss_wrapper (alice and bob with their passwords), sessions
 * in a private redis-server, a LoginLimiter of 5 attempts a minute, the
 * publish_logout hook a recorder. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/macro.h"
#include "net/http-util.h"
#include "net/login-limit.h"
#include "net/test-web-env.h"
#include "test/test.h"

#define CSRF_COOKIE "multichat_csrf"
#define FAILED_TEXT "Invalid username or password."

static TestWeb t;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * TEST_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void expect_header(const HttpReply *r, const char *name, unsigned index, const char *value) {
        _cleanup_free_ char *v = http_reply_header(r, name, index);

        if (!v || !streq(v, value))
                fprintf(stderr, "headers:\n%s\n", r->headers);
        ASSERT_STREQ(v, value);
}

/* The value of cookie name in the response's Set-Cookie headers, or NULL. */
static char *set_cookie(const HttpReply *r, const char *name) {
        for (unsigned i = 0;; i++) {
                _cleanup_free_ char *v = http_reply_header(r, "set-cookie", i);
                size_t n = strlen(name);

                if (!v)
                        return NULL;
                if (strncmp(v, name, n) == 0 && v[n] == '=')
                        return strndup(v + n + 1, strcspn(v + n + 1, ";"));
        }
}

static void post(const char *path, const char *cookie, const char *content_type, const char *body, HttpReply *ret,
                 uint64_t timeout) {
        _cleanup_free_ char *req = NULL;

        ASSERT_TRUE(asprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\n%s%s%sContent-Type: %s\r\n"
                             "Content-Length: %zu\r\n\r\n%s",
                             path, t.host, cookie ? "Cookie: " : "", cookie ?: "", cookie ? "\r\n" : "",
                             content_type, strlen(body), body) > 0);
        http_get(&t, req, ret, timeout);
}

static void post_login(const char *csrf_cookie, const char *csrf_form, const char *user, const char *password,
                       const char *next, HttpReply *ret) {
        _cleanup_free_ char *cookie = NULL, *body = NULL;

        ASSERT_TRUE(asprintf(&cookie, "%s=%s", CSRF_COOKIE, csrf_cookie) > 0);
        ASSERT_TRUE(asprintf(&body, "csrf=%s&username=%s&password=%s%s%s", csrf_form, user, password,
                             next ? "&next=" : "", next ?: "") > 0);
        post("/login", csrf_cookie ? cookie : NULL, "application/x-www-form-urlencoded", body, ret, 10 * TEST_SEC);
}

/* GET /login: the form and its CSRF cookie, which must agree. */
static char *login_form(const char *query) {
        _cleanup_free_ char *req = NULL, *field = NULL;
        HttpReply r;
        char *token;

        ASSERT_TRUE(asprintf(&req, "GET /login%s HTTP/1.1\r\nHost: %s\r\n\r\n", query, t.host) > 0);
        http_get(&t, req, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 200);
        expect_header(&r, "content-type", 0, "text/html; charset=utf-8");
        token = set_cookie(&r, CSRF_COOKIE);
        ASSERT_NOT_NULL(token);
        ASSERT_INT_EQ(strlen(token), CSRF_TOKEN_MAX);
        ASSERT_TRUE(asprintf(&field, "name=csrf value=\"%s\"", token) > 0);
        ASSERT_NOT_NULL(strstr(r.body, field));
        http_reply_done(&r);
        return token;
}

static void test_form(void) {
        _cleanup_free_ char *a = login_form(""), *b = login_form("");
        _cleanup_free_ char *req = NULL;
        HttpReply r;

        /* A fresh token every time. */
        ASSERT_FALSE(streq(a, b));

        /* next is kept when it stays on this site, escaped into the form. */
        ASSERT_TRUE(asprintf(&req, "GET /login?next=/%%3Fa%%3D%%22 HTTP/1.1\r\nHost: %s\r\n\r\n", t.host) > 0);
        http_get(&t, req, &r, 5 * TEST_SEC);
        ASSERT_NOT_NULL(strstr(r.body, "name=next value=\"/?a=&quot;\""));
        http_reply_done(&r);
        free(req);
        ASSERT_TRUE(asprintf(&req, "GET /login?next=//evil.example/ HTTP/1.1\r\nHost: %s\r\n\r\n", t.host) > 0);
        http_get(&t, req, &r, 5 * TEST_SEC);
        ASSERT_NOT_NULL(strstr(r.body, "name=next value=\"/\""));
        http_reply_done(&r);
}

static void test_login_ok(char ret_sid[static SESSION_ID_MAX + 1]) {
        _cleanup_free_ char *csrf = login_form("?next=/"), *sid = NULL, *cleared = NULL, *cookie = NULL;
        _cleanup_free_ char *req = NULL;
        redisReply *reply;
        HttpReply r;

        post_login(csrf, csrf, "alice", TEST_ALICE_PASSWORD, "%2F%3Froom%3D3", &r);
        ASSERT_INT_EQ(r.status, 303);
        expect_header(&r, "location", 0, "/?room=3");
        sid = set_cookie(&r, HTTP_SESSION_COOKIE_NAME);
        ASSERT_NOT_NULL(sid);
        ASSERT_TRUE(session_id_is_valid(sid));
        /* The CSRF cookie has done its job. */
        cleared = set_cookie(&r, CSRF_COOKIE);
        ASSERT_STREQ(cleared, "");
        http_reply_done(&r);

        /* The session is in Redis, with what the helper said. */
        ASSERT_TRUE(test_web_session_exists(&t, sid));
        reply = test_redis_command(&t.redis_server, "HMGET " SESSION_KEY_PREFIX "%s user uid staff", sid);
        ASSERT_INT_EQ(reply->type, REDIS_REPLY_ARRAY);
        ASSERT_STREQ(reply->element[0]->str, "alice");
        ASSERT_STREQ(reply->element[1]->str, "1001");
        ASSERT_STREQ(reply->element[2]->str, "1");
        freeReplyObject(reply);

        /* And it works as a login. */
        ASSERT_TRUE(asprintf(&req, "GET /api/session HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\n\r\n", t.host,
                             HTTP_SESSION_COOKIE_NAME, sid) > 0);
        http_get(&t, req, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 200);
        ASSERT_TRUE(strncmp(r.body, "{\"username\": \"alice\", \"staff\": true,", 36) == 0);
        http_reply_done(&r);
        strcpy(ret_sid, sid);
}

static void expect_failed_login(const char *user, const char *password) {
        _cleanup_free_ char *csrf = login_form("");
        uint64_t start = mono_usec(), took;
        HttpReply r;

        post_login(csrf, csrf, user, password, NULL, &r);
        took = mono_usec() - start;
        ASSERT_INT_EQ(r.status, 401);
        ASSERT_NOT_NULL(strstr(r.body, FAILED_TEXT));
        ASSERT_NULL(set_cookie(&r, HTTP_SESSION_COOKIE_NAME));
        /* A new form to try again with. */
        ASSERT_NOT_NULL(strstr(r.headers, CSRF_COOKIE "="));
        http_reply_done(&r);
        /* The helper's fail delay (about 2 s, ±25 %), spent on a timer. */
        if (took < 1000 * TEST_MSEC)
                fprintf(stderr, "a failed login for %s took only %" PRIu64 " ms\n", user, took / 1000);
        ASSERT_TRUE(took >= 1000 * TEST_MSEC);
}

static void test_login_failed(void) {
        unsigned keys = (unsigned) test_redis_integer(&t.redis_server, "DBSIZE");

        expect_failed_login("bob", TEST_ALICE_PASSWORD);
        expect_failed_login("nosuchuser", "x");
        /* No session was made for any of them. */
        ASSERT_INT_EQ(test_redis_integer(&t.redis_server, "DBSIZE"), keys);
}

/* The client hangs up while its wrong password waits out the fail delay:
 * the attempt is dropped, and it no longer counts as one in flight. */
static void test_gone_while_waiting(void) {
        _cleanup_free_ char *csrf = login_form(""), *req = NULL, *body = NULL;
        unsigned removed = t.rec.peers_removed, retry;
        int fd;

        ASSERT_TRUE(asprintf(&body, "csrf=%s&username=bob&password=wrong", csrf) > 0);
        ASSERT_TRUE(asprintf(&req, "POST /login HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                             t.host, CSRF_COOKIE, csrf, strlen(body), body) > 0);
        fd = test_web_connect(&t);
        test_web_send(&t, fd, req, strlen(req));
        test_web_run_for(&t, 200 * TEST_MSEC);
        safe_close(fd);
        for (unsigned i = 0; i < 300 && t.rec.peers_removed == removed; i++)
                test_web_run(&t, 10 * TEST_MSEC);
        ASSERT_INT_EQ(t.rec.peers_removed, removed + 1);
        /* Past the delay: its timer must not fire into freed memory. */
        test_web_run_for(&t, 2600 * TEST_MSEC);

        /* In flight it held one of LOGIN_LIMIT_IN_FLIGHT for this address
         * and user: all of them are free again. */
        login_limiter_set_limit(t.login_limiter, 100);
        for (unsigned i = 0; i < LOGIN_LIMIT_IN_FLIGHT; i++)
                ASSERT_OK(login_limiter_begin(t.login_limiter, "127.0.0.1", "bob", mono_usec(), &retry));
        for (unsigned i = 0; i < LOGIN_LIMIT_IN_FLIGHT; i++)
                login_limiter_end(t.login_limiter, "127.0.0.1", "bob");
}

static void test_csrf(void) {
        _cleanup_free_ char *a = login_form(""), *b = login_form("");
        HttpReply r;

        /* The form's token must be the cookie's. */
        post_login(a, b, "alice", TEST_ALICE_PASSWORD, NULL, &r);
        ASSERT_INT_EQ(r.status, 403);
        ASSERT_NULL(set_cookie(&r, HTTP_SESSION_COOKIE_NAME));
        http_reply_done(&r);
        /* No cookie at all (another site's form). */
        post_login(NULL, a, "alice", TEST_ALICE_PASSWORD, NULL, &r);
        ASSERT_INT_EQ(r.status, 403);
        http_reply_done(&r);
        /* Both the same but not a token we could have made. */
        post_login("x", "x", "alice", TEST_ALICE_PASSWORD, NULL, &r);
        ASSERT_INT_EQ(r.status, 403);
        http_reply_done(&r);

        /* Not a form. */
        {
                _cleanup_free_ char *cookie = NULL;

                ASSERT_TRUE(asprintf(&cookie, "%s=%s", CSRF_COOKIE, a) > 0);
                post("/login", cookie, "application/json", "{\"username\": \"alice\"}", &r, 5 * TEST_SEC);
                ASSERT_INT_EQ(r.status, 415);
                http_reply_done(&r);
        }
}

static void test_limits(void) {
        _cleanup_free_ char *csrf = login_form("");
        _cleanup_free_ char *retry = NULL;
        HttpReply r;

        /* This address has used three of its five attempts (one right,
         * two wrong); with the limit lowered to three, the next is refused
         * before the helper is asked, even with the right password. */
        login_limiter_set_limit(t.login_limiter, 3);
        post_login(csrf, csrf, "alice", TEST_ALICE_PASSWORD, NULL, &r);
        ASSERT_INT_EQ(r.status, 429);
        retry = http_reply_header(&r, "retry-after", 0);
        ASSERT_NOT_NULL(retry);
        ASSERT_TRUE(atoi(retry) >= 1 && atoi(retry) <= 60);
        ASSERT_NULL(set_cookie(&r, HTTP_SESSION_COOKIE_NAME));
        http_reply_done(&r);

        /* Four: one more goes through. */
        login_limiter_set_limit(t.login_limiter, 4);
        post_login(csrf, csrf, "bob", TEST_BOB_PASSWORD, NULL, &r);
        ASSERT_INT_EQ(r.status, 303);
        http_reply_done(&r);
        post_login(csrf, csrf, "bob", TEST_BOB_PASSWORD, NULL, &r);
        ASSERT_INT_EQ(r.status, 429);
        http_reply_done(&r);
        login_limiter_set_limit(t.login_limiter, 100);
}

static void test_body_limits(void) {
        _cleanup_free_ char *req = NULL;
        HttpReply r;

        /* Over HTTP_BODY_MAX (16 KB), announced. */
        ASSERT_TRUE(asprintf(&req, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                             "application/x-www-form-urlencoded\r\nContent-Length: 20000\r\n\r\n", t.host) > 0);
        http_get(&t, req, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 413);
        http_reply_done(&r);

        /* An empty user name is refused without asking anyone. */
        {
                _cleanup_free_ char *csrf = login_form("");
                uint64_t start = mono_usec();

                post_login(csrf, csrf, "", "x", NULL, &r);
                ASSERT_INT_EQ(r.status, 401);
                http_reply_done(&r);
                ASSERT_TRUE(mono_usec() - start < 1000 * TEST_MSEC);
        }
}

static void test_logout(const char *sid) {
        char csrf[CSRF_TOKEN_MAX + 1], other[SESSION_ID_MAX + 1];
        _cleanup_free_ char *cookie = NULL, *body = NULL, *cleared = NULL;
        unsigned logouts = t.rec.logouts;
        HttpReply r;

        /* The session's own CSRF token, as /api/session gives it. */
        test_web_session(&t, "bob", 1002, false, other, csrf);
        ASSERT_TRUE(asprintf(&cookie, "%s=%s", HTTP_SESSION_COOKIE_NAME, other) > 0);

        /* A wrong token: nothing happens. */
        post("/logout", cookie, "application/x-www-form-urlencoded", "csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 403);
        http_reply_done(&r);
        post("/logout", cookie, "application/x-www-form-urlencoded", "", &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 403);
        http_reply_done(&r);
        ASSERT_INT_EQ(t.rec.logouts, logouts);
        ASSERT_TRUE(test_web_session_exists(&t, other));

        /* The right one: every daemon is told, the session is gone. */
        ASSERT_TRUE(asprintf(&body, "csrf=%s", csrf) > 0);
        post("/logout", cookie, "application/x-www-form-urlencoded", body, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 303);
        expect_header(&r, "location", 0, "/login");
        cleared = set_cookie(&r, HTTP_SESSION_COOKIE_NAME);
        ASSERT_STREQ(cleared, "");
        http_reply_done(&r);
        ASSERT_INT_EQ(t.rec.logouts, logouts + 1);
        ASSERT_STREQ(t.rec.logout_session, other);
        ASSERT_FALSE(test_web_session_exists(&t, other));
        /* Only that session. */
        ASSERT_TRUE(test_web_session_exists(&t, sid));

        /* Logged out already: to the login page, nobody told. */
        post("/logout", cookie, "application/x-www-form-urlencoded", body, &r, 5 * TEST_SEC);
        ASSERT_INT_EQ(r.status, 303);
        expect_header(&r, "location", 0, "/login");
        http_reply_done(&r);
        ASSERT_INT_EQ(t.rec.logouts, logouts + 1);
}

int main(void) {
        char sid[SESSION_ID_MAX + 1];
        int r;

        r = test_web_setup(&t);
        if (r == EXIT_TEST_SKIP)
                return r;

        test_form();
        test_login_ok(sid);
        test_login_failed();
        test_csrf();
        test_limits();
        test_gone_while_waiting();
        test_body_limits();
        test_logout(sid);

        test_web_run_for(&t, 100 * TEST_MSEC);
        ASSERT_INT_EQ(web_peer_count(t.web), 0);
        test_web_teardown(&t);
        return 0;
}
