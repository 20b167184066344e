/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lws context and vhost on our libuv loop; routes HTTP requests and WebSocket upgrades. */
#pragma once

#include <stdbool.h>

typedef struct Web Web;
typedef struct WebServices WebServices;
typedef struct WsHub WsHub;

#define WS_PATH "/chat/stream/"

/* services must outlive the Web. */
int web_new(Web **ret, WebServices *services);
/* Destroys the lws context; lws closes its libuv handles asynchronously,
 * so this runs the uv loop until they are gone. */
Web *web_free(Web *w);

/* Hands an accepted connection to lws (which owns the fd from then on). */
int web_adopt(Web *w, int fd);
bool web_is_tls(const Web *w);
/* The WebSocket connections. */
WsHub *web_hub(Web *w);
/* Reads tls-certificate and tls-key again for the connections accepted
 * from now on; open ones keep theirs. On error nothing changes. */
int web_reload_tls(Web *w);

/* Accepted connections, HTTP and WebSocket, that lws still holds. */
unsigned web_peer_count(const Web *w);
/* Shutdown: lets requests under way finish, and idle connections go. */
void web_drain(Web *w);
