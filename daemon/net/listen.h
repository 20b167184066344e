/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Listening sockets, socket-activated or opened from --listen, and the accept loop. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

typedef struct Listener Listener;

/* Called with each accepted connection; the callee owns fd from then on.
 * peer is a printable address ("127.0.0.1:5555", "[::1]:5555", "unix"). */
typedef void (*ListenerAcceptHandler)(int fd, const char *peer, void *userdata);

int listener_new(Listener **ret, sd_event *e, ListenerAcceptHandler on_accept, void *userdata);
Listener *listener_free(Listener *l);

/* Takes the fds systemd passed (LISTEN_FDS). Returns how many. */
int listener_add_inherited(Listener *l);
/* Opens "ADDR:PORT", "[V6]:PORT" or "unix:/path". */
int listener_add_address(Listener *l, const char *address);
unsigned listener_count(Listener *l);

/* Stops or resumes accepting, e.g. at the connection limit or on shutdown;
 * pending connections stay in the kernel's backlog meanwhile. */
int listener_set_accepting(Listener *l, bool accepting);

int listen_parse_address(const char *address, void *ret_sockaddr, unsigned *ret_len);

static inline void listener_freep(Listener **l) {
        listener_free(*l);
}
