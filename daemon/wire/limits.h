/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Limits every process and protocol of multichat agrees on. */
#pragma once

/* A user name: what the auth helper accepts, sessions store, the browser
 * protocol shows and D-Bus callers name; [A-Za-z0-9._-] at login. */
#define USERNAME_MAX 64
/* A room id: canonical decimal, 1..20 digits, no leading zero. */
#define ROOM_ID_MAX 20
/* A message id: a Redis stream id "<ms>-<seq>", each part 1..20 digits. */
#define MESSAGE_ID_MAX 41
