/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The page, static files, /api/session, /api/rooms and /healthz; the session check they share. */
#pragma once

#include "net/http.h"
#include "store/session.h"

/* Looks up the request's session cookie. The handler gets r = -ENOENT
 * without a (valid) cookie, -ENOTCONN/-EIO when Redis cannot say; it is not
 * called at all when the client went away meanwhile. */
typedef void (*HttpSessionHandler)(HttpExchange *x, int r, const SessionData *d);
void http_with_session(HttpExchange *x, HttpSessionHandler handler);

void http_api_index(HttpExchange *x);
void http_api_session(HttpExchange *x);
void http_api_rooms(HttpExchange *x);
void http_api_healthz(HttpExchange *x);
void http_api_static(HttpExchange *x);
