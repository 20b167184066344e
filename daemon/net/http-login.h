/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /login and /logout: the form, CSRF, attempt limits, the auth helper, sessions, redirects. */
#pragma once

#include "net/http.h"

/* error: the message shown above the form, NULL for none. */
void http_login_page(HttpExchange *x, unsigned status, const char *error);
void http_login_submit(HttpExchange *x);
void http_logout(HttpExchange *x);
