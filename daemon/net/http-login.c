/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /login and /logout: the form, CSRF, attempt limits, the auth helper, sessions, redirects. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth-client.h"
#include "net/http-api.h"
#include "net/http-login.h"
#include "net/http-util.h"
#include "basic/log.h"
#include "net/login-limit.h"
#include "basic/macro.h"
#include "net/services.h"
#include "store/session.h"
#include "net/static-files.h"
#include "basic/time-util.h"

#define CSRF_COOKIE_NAME "multichat_csrf"
#define LOGIN_FAILED_TEXT "Invalid username or password."

/* Appends src to the buffer, replacing the first occurrence of each
 * placeholder with its (already escaped) value. */
static char *render_template(const char *tpl, size_t len, const char *const *keys, const char *const *values, size_t n) {
        size_t size = len + 1;
        char *out, *o;
        const char *p = tpl, *end = tpl + len;

        for (size_t i = 0; i < n; i++)
                size += strlen(values[i]);
        out = o = malloc(size);
        if (!out)
                return NULL;
        while (p < end) {
                size_t i;

                for (i = 0; i < n; i++) {
                        size_t kl = strlen(keys[i]);

                        if ((size_t) (end - p) >= kl && memcmp(p, keys[i], kl) == 0) {
                                o = stpcpy(o, values[i]);
                                p += kl;
                                break;
                        }
                }
                if (i == n)
                        *o++ = *p++;
        }
        *o = 0;
        return out;
}

static const char *safe_next(const char *next) {
        return next && http_redirect_is_safe(next) ? next : "/";
}

static void login_page_with(HttpExchange *x, unsigned status, const char *error, const char *next) {
        const WebServices *s = x->services;
        const StaticFile *tpl = static_files_find_name(s->static_files, "login.html");
        _cleanup_free_ char *esc_next = NULL, *esc_error = NULL, *cookie = NULL;
        char csrf[CSRF_TOKEN_MAX + 1];
        char *body;

        if (!tpl || csrf_token_generate(csrf) < 0) {
                (void) http_respond_error(x, 500);
                return;
        }
        esc_next = html_escape(safe_next(next));
        esc_error = html_escape(error ?: "");
        /* Double-submit CSRF: the form and a cookie carry the same random
         * token, which works on every daemon without server state. */
        if (!esc_next || !esc_error ||
            http_cookie_format(&cookie, CSRF_COOKIE_NAME, csrf, x->tls, 0) < 0 ||
            http_exchange_add_header(x, "set-cookie:", cookie) < 0) {
                (void) http_respond_error(x, 500);
                return;
        }
        body = render_template((const char *) tpl->data, tpl->size,
                               (const char *const[]) { "@CSRF@", "@NEXT@", "@ERROR@" },
                               (const char *const[]) { csrf, esc_next, esc_error }, 3);
        if (!body) {
                (void) http_respond_error(x, 500);
                return;
        }
        (void) http_respond_take(x, status, "text/html; charset=utf-8", body, strlen(body));
}

void http_login_page(HttpExchange *x, unsigned status, const char *error) {
        _cleanup_free_ char *next = NULL;

        if (x->query)
                (void) http_form_get(x->query, strlen(x->query), "next", &next);
        login_page_with(x, status, error, next);
}

typedef struct LoginAttempt {
        HttpExchange *exchange;
        const WebServices *services;
        char username[USERNAME_MAX + 1];
        char address[64];
        char *next;
        bool limited;                 /* holds a login_limiter_begin() */
        AuthRequest *auth;
        SessionRequest *session;
        sd_event_source *delay;
        uid_t uid;
        bool staff;
} LoginAttempt;

static void login_attempt_free(LoginAttempt *a) {
        if (a->limited)
                login_limiter_end(a->services->login_limiter, a->address, a->username);
        auth_request_cancel(a->auth);
        session_request_cancel(a->session);
        sd_event_source_disable_unref(a->delay);
        free(a->next);
        free(a);
}

static void login_attempt_cancel(void *p) {
        login_attempt_free(p);
}

/* Takes the attempt off the exchange; returns the exchange, or NULL when
 * the client is gone (then both are freed). */
static HttpExchange *login_attempt_finish(LoginAttempt *a) {
        HttpExchange *x = a->exchange;

        login_attempt_free(a);
        if (http_exchange_complete_pending(x)) {
                http_exchange_release(x);
                return NULL;
        }
        return x;
}

static void login_fail_now(LoginAttempt *a) {
        HttpExchange *x;
        _cleanup_free_ char *next = a->next ? strdup(a->next) : NULL;

        x = login_attempt_finish(a);
        if (x)
                login_page_with(x, 401, LOGIN_FAILED_TEXT, next);
}

static int on_fail_delay(sd_event_source *s, uint64_t usec, void *userdata) {
        login_fail_now(userdata);
        return 0;
}

/* A wrong password costs the one who sent it, not the daemon: the answer
 * waits on a timer, and every failure waits alike so that timing tells
 * nothing about which part was wrong. */
static void login_fail(LoginAttempt *a, uint64_t delay_usec) {
        int r;

        if (delay_usec == 0)
                return login_fail_now(a);
        r = sd_event_add_time_relative(a->services->event, &a->delay, CLOCK_MONOTONIC, delay_usec, 1000,
                                       on_fail_delay, a);
        if (r < 0)
                login_fail_now(a);
}

static void on_session_created(int r, const SessionData *d, void *userdata) {
        LoginAttempt *a = userdata;
        _cleanup_free_ char *cookie = NULL, *clear = NULL, *next = NULL;
        HttpExchange *x;
        char sid[SESSION_ID_MAX + 1];

        a->session = NULL;
        if (r >= 0)
                strcpy(sid, d->id);
        next = strdup(safe_next(a->next));
        x = login_attempt_finish(a);
        if (!x)
                return;
        if (r < 0 || !next) {
                log_warning_errno(r, "Could not store a session in Redis: %m");
                (void) http_respond_error(x, 503);
                return;
        }
        if (http_cookie_format(&cookie, http_session_cookie_name(x->tls), sid, x->tls, 0) < 0 ||
            http_cookie_format(&clear, CSRF_COOKIE_NAME, "", x->tls, UINT64_MAX) < 0 ||
            http_exchange_add_header(x, "set-cookie:", cookie) < 0 ||
            http_exchange_add_header(x, "set-cookie:", clear) < 0) {
                (void) http_respond_error(x, 500);
                return;
        }
        (void) http_redirect(x, 303, next);
}

static void on_login_authenticated(const AuthResult *res, void *userdata) {
        LoginAttempt *a = userdata;
        const WebServices *s = a->services;
        SessionData d = {};
        int r;

        a->auth = auth_request_cancel(a->auth);
        if (res->result == -EACCES || res->result == -EPERM) {
                log_struct(LOG_NOTICE, 0, MESSAGE_ID_LOGIN_FAILED,
                           LOG_FIELDS({ "USER", a->username }, { "REMOTE_ADDR", a->address }),
                           "Login failed for %s from %s: %s", a->username, a->address,
                           res->result == -EPERM ? "account not allowed" : "wrong username or password");
                s->stats->logins_refused++;
                return login_fail(a, res->fail_delay_usec);
        }
        if (res->result < 0) {
                /* The helper could not say (busy, gone, timed out): that is
                 * our trouble, not a wrong password, and the user should
                 * try again rather than doubt their password. */
                HttpExchange *x;

                log_warning_errno(res->result, "Could not check the password of %s: %m", a->username);
                x = login_attempt_finish(a);
                if (x) {
                        (void) http_exchange_add_header(x, "retry-after:", "1");
                        (void) http_respond_error(x, 503);
                }
                return;
        }

        s->stats->logins_accepted++;
        log_struct(LOG_INFO, 0, MESSAGE_ID_LOGIN_OK,
                   LOG_FIELDS({ "USER", res->username }, { "REMOTE_ADDR", a->address }),
                   "%s logged in from %s%s.", res->username, a->address, res->staff ? " (staff)" : "");
        r = session_id_generate(d.id);
        if (r >= 0)
                r = csrf_token_generate(d.csrf);
        if (r < 0) {
                login_fail(a, 0);
                return;
        }
        snprintf(d.user, sizeof d.user, "%s", res->username);
        d.uid = res->uid;
        d.staff = res->staff;
        d.created_usec = now_usec(CLOCK_REALTIME);
        r = session_create(s->redis, &d, s->settings.session_idle_usec, on_session_created, a, &a->session);
        if (r < 0) {
                HttpExchange *x = login_attempt_finish(a);

                if (x)
                        (void) http_respond_error(x, 503);
        }
}

static bool csrf_matches(HttpExchange *x, const char *form_token) {
        _cleanup_free_ char *cookie_token = NULL;

        if (!x->cookie || http_cookie_get(x->cookie, CSRF_COOKIE_NAME, &cookie_token) < 0)
                return false;
        return csrf_token_is_valid(cookie_token) && csrf_token_equal(cookie_token, form_token);
}

static bool form_is_urlencoded(HttpExchange *x) {
        return x->content_type && strncmp(x->content_type, "application/x-www-form-urlencoded", 33) == 0;
}

void http_login_submit(HttpExchange *x) {
        const WebServices *s = x->services;
        _cleanup_free_ char *user = NULL, *password = NULL, *csrf = NULL, *next = NULL;
        LoginAttempt *a;
        unsigned retry;
        char buf[16];
        int r;

        if (!form_is_urlencoded(x)) {
                (void) http_respond_error(x, 415);
                return;
        }
        (void) http_form_get(x->body ?: "", x->body_len, "next", &next);
        if (http_form_get(x->body ?: "", x->body_len, "csrf", &csrf) < 0 || !csrf_matches(x, csrf)) {
                login_page_with(x, 403, "Your login form expired. Please try again.", next);
                return;
        }
        if (http_form_get(x->body ?: "", x->body_len, "username", &user) < 0 ||
            http_form_get(x->body ?: "", x->body_len, "password", &password) < 0 ||
            !user[0] || strlen(user) > 64) {
                s->stats->logins_refused++;
                login_page_with(x, 401, LOGIN_FAILED_TEXT, next);
                return;
        }

        r = login_limiter_begin(s->login_limiter, x->peer, user, now_usec(CLOCK_MONOTONIC), &retry);
        if (r < 0) {
                log_struct(LOG_NOTICE, 0, MESSAGE_ID_LOGIN_FAILED,
                           LOG_FIELDS({ "USER", user }, { "REMOTE_ADDR", x->peer }),
                           "Login attempt for %s from %s refused: too many attempts.", user, x->peer);
                s->stats->logins_throttled++;
                snprintf(buf, sizeof buf, "%u", retry);
                (void) http_exchange_add_header(x, "retry-after:", buf);
                login_page_with(x, 429, "Too many login attempts. Please wait a minute.", next);
                return;
        }

        a = calloc(1, sizeof *a);
        if (!a) {
                login_limiter_end(s->login_limiter, x->peer, user);
                (void) http_respond_error(x, 500);
                return;
        }
        a->exchange = x;
        a->services = s;
        a->limited = true;
        snprintf(a->username, sizeof a->username, "%s", user);
        snprintf(a->address, sizeof a->address, "%s", x->peer);
        a->next = TAKE_PTR(next);

        r = auth_client_authenticate(s->auth, user, password, x->peer, on_login_authenticated, a, &a->auth);
        explicit_bzero(password, strlen(password));
        http_exchange_set_pending(x, a, login_attempt_cancel);
        if (r == -EINVAL) {
                /* A name no account can have, or an over-long password:
                 * the same answer, after the same wait, as any failure. */
                log_struct(LOG_NOTICE, 0, MESSAGE_ID_LOGIN_FAILED,
                           LOG_FIELDS({ "USER", a->username }, { "REMOTE_ADDR", a->address }),
                           "Login failed for %s from %s: not a valid username or password",
                           a->username, a->address);
                s->stats->logins_refused++;
                login_fail(a, AUTH_FAIL_DELAY_USEC);
        } else if (r < 0) {
                log_warning_errno(r, "Could not ask the auth helper: %m");
                x = login_attempt_finish(a);
                if (x)
                        (void) http_respond_error(x, 503);
        }
}

static void on_logout_deleted(int r, const SessionData *d, void *userdata) {
        HttpExchange *x = userdata;

        if (http_exchange_complete_pending(x)) {
                http_exchange_release(x);
                return;
        }
        (void) http_redirect(x, 303, "/login");
}

static void on_logout_session(HttpExchange *x, int r, const SessionData *d) {
        const WebServices *s = x->services;
        _cleanup_free_ char *csrf = NULL, *clear = NULL;
        SessionRequest *req;

        if (r >= 0 && (!form_is_urlencoded(x) ||
                       http_form_get(x->body ?: "", x->body_len, "csrf", &csrf) < 0 ||
                       !csrf_token_equal(d->csrf, csrf))) {
                (void) http_respond_error(x, 403);
                return;
        }
        if (http_cookie_format(&clear, http_session_cookie_name(x->tls), "", x->tls, UINT64_MAX) >= 0)
                (void) http_exchange_add_header(x, "set-cookie:", clear);
        if (r < 0) {
                (void) http_redirect(x, 303, "/login");
                return;
        }
        (void) s->hooks->publish_logout(s->userdata, d->id);
        log_info("%s logged out from %s.", d->user, x->peer);
        r = session_delete(s->redis, d->id, on_logout_deleted, x, &req);
        if (r < 0) {
                (void) http_redirect(x, 303, "/login");
                return;
        }
        http_exchange_set_pending(x, req, session_request_cancel_opaque);
}

void http_logout(HttpExchange *x) {
        http_with_session(x, on_logout_session);
}
