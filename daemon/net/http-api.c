/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The page, static files, /api/session, /api/rooms and /healthz; the session check they share. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "net/http-api.h"
#include "net/http-util.h"
#include "basic/macro.h"
#include "net/services.h"
#include "wire/protocol.h"
#include "store/session.h"
#include "net/static-files.h"

typedef struct SessionWait {
        HttpExchange *exchange;
        HttpSessionHandler handler;
        SessionRequest *request;
} SessionWait;

static void session_wait_cancel(void *p) {
        SessionWait *w = p;

        session_request_cancel(w->request);
        free(w);
}

static void on_http_session(int r, const SessionData *d, void *userdata) {
        SessionWait *w = userdata;
        HttpExchange *x = w->exchange;
        HttpSessionHandler handler = w->handler;

        free(w);
        if (http_exchange_complete_pending(x)) {
                http_exchange_release(x);
                return;
        }
        handler(x, r, d);
}

void http_with_session(HttpExchange *x, HttpSessionHandler handler) {
        const WebServices *s = x->services;
        _cleanup_free_ char *sid = NULL;
        SessionWait *w;
        int r;

        if (!x->cookie || http_cookie_get(x->cookie, http_session_cookie_name(x->tls), &sid) < 0 ||
            !session_id_is_valid(sid))
                return handler(x, -ENOENT, NULL);

        w = calloc(1, sizeof *w);
        if (!w)
                return handler(x, -ENOMEM, NULL);
        w->exchange = x;
        w->handler = handler;
        r = session_lookup(s->redis, sid, s->settings.session_idle_usec, s->settings.session_max_usec,
                           on_http_session, w, &w->request);
        if (r < 0) {
                free(w);
                return handler(x, r, NULL);
        }
        http_exchange_set_pending(x, w, session_wait_cancel);
}

static void respond_static(HttpExchange *x, const StaticFile *f) {
        if (!f) {
                (void) http_respond_error(x, 404);
                return;
        }
        if (http_exchange_add_header(x, "etag:", f->etag) < 0) {
                (void) http_respond_error(x, 500);
                return;
        }
        (void) http_respond(x, 200, f->content_type, f->data, f->size);
}

static void on_index_session(HttpExchange *x, int r, const SessionData *d) {
        if (r == -ENOENT) {
                (void) http_redirect(x, 303, "/login?next=/");
                return;
        }
        if (r < 0) {
                (void) http_respond_error(x, 503);
                return;
        }
        respond_static(x, static_files_find_name(x->services->static_files, "index.html"));
}

void http_api_index(HttpExchange *x) {
        http_with_session(x, on_index_session);
}

static void respond_not_logged_in(HttpExchange *x, int r) {
        if (r == -ENOENT)
                (void) http_respond_json(x, 401, protocol_format_error(PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL));
        else
                (void) http_respond_json(x, 503, protocol_format_error(PROTOCOL_ERROR_UNAVAILABLE, NULL));
}

static void on_api_session(HttpExchange *x, int r, const SessionData *d) {
        json_t *j;
        char *s;

        if (r < 0)
                return respond_not_logged_in(x, r);
        /* The page needs the CSRF token to post /logout. */
        j = json_pack("{s:s, s:b, s:s}", "username", d->user, "staff", d->staff, "csrf", d->csrf);
        s = j ? protocol_json_dumps(j, NULL) : NULL;
        json_decref(j);
        (void) http_respond_json(x, 200, s);
}

void http_api_session(HttpExchange *x) {
        http_with_session(x, on_api_session);
}

static void on_api_rooms(HttpExchange *x, int r, const SessionData *d) {
        if (r < 0)
                return respond_not_logged_in(x, r);
        (void) http_respond_json(x, 200, x->services->hooks->rooms_json(x->services->userdata));
}

void http_api_rooms(HttpExchange *x) {
        http_with_session(x, on_api_rooms);
}

void http_api_healthz(HttpExchange *x) {
        const WebServices *s = x->services;
        const char *reason = "unavailable";
        char body[128];
        int n;

        if (s->hooks->healthy(s->userdata, &reason)) {
                (void) http_respond(x, 200, "text/plain; charset=utf-8", "ok\n", 3);
                return;
        }
        n = snprintf(body, sizeof body, "%s\n", reason);
        (void) http_respond(x, 503, "text/plain; charset=utf-8", body, (size_t) MIN(n, (int) sizeof body - 1));
}

void http_api_static(HttpExchange *x) {
        respond_static(x, static_files_find(x->services->static_files, x->path));
}
