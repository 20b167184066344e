/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Listening sockets, socket-activated or opened from --listen, and the accept loop. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <systemd/sd-daemon.h>

#include "net/listen.h"
#include "basic/log.h"
#include "basic/macro.h"

#define LISTEN_MAX 16
#define LISTEN_BACKLOG 4096
/* Accepts per wakeup: enough to drain a burst cheaply, few enough that one
 * busy socket does not starve established connections. */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_USEC (100 * 1000ULL)

typedef struct ListenSocket {
        Listener *listener;
        int fd;
        sd_event_source *source;
} ListenSocket;

struct Listener {
        sd_event *event;
        ListenerAcceptHandler on_accept;
        void *userdata;
        ListenSocket sockets[LISTEN_MAX];
        unsigned n_sockets;
        bool accepting;         /* what the owner wants */
        bool paused;            /* out of file descriptors for a moment */
        sd_event_source *pause_timer;
};

static void format_peer(const struct sockaddr_storage *sa, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN];

        switch (sa->ss_family) {
        case AF_INET: {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
                break;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
                break;
        }
        default:
                snprintf(buf, size, "unix");
        }
}

static void listener_apply(Listener *l) {
        bool on = l->accepting && !l->paused;

        for (unsigned i = 0; i < l->n_sockets; i++)
                (void) sd_event_source_set_enabled(l->sockets[i].source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_pause_over(sd_event_source *s, uint64_t usec, void *userdata) {
        Listener *l = userdata;

        l->paused = false;
        listener_apply(l);
        return 0;
}

static void listener_pause(Listener *l) {
        uint64_t now;

        l->paused = true;
        listener_apply(l);
        if (sd_event_now(l->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(l->pause_timer, now + ACCEPT_PAUSE_USEC);
        (void) sd_event_source_set_enabled(l->pause_timer, SD_EVENT_ONESHOT);
}

static int on_listen_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ListenSocket *ls = userdata;
        Listener *l = ls->listener;

        for (unsigned i = 0; i < ACCEPT_BATCH && l->accepting && !l->paused; i++) {
                struct sockaddr_storage sa;
                socklen_t salen = sizeof sa;
                char peer[INET6_ADDRSTRLEN + 16];
                int cfd;

                cfd = accept4(fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        /* EMFILE and friends: the socket stays readable, so
                         * pause it a moment instead of spinning; the fd
                         * limit is a configuration problem the admin must see. */
                        log_warning_errno(errno, "Failed to accept connection, pausing for %u ms: %m",
                                          (unsigned) (ACCEPT_PAUSE_USEC / 1000));
                        listener_pause(l);
                        return 0;
                }
                if (sa.ss_family == AF_INET || sa.ss_family == AF_INET6)
                        (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int));
                format_peer(&sa, peer, sizeof peer);
                l->on_accept(cfd, peer, l->userdata);
        }
        return 0;
}

int listener_new(Listener **ret, sd_event *e, ListenerAcceptHandler on_accept, void *userdata) {
        _cleanup_(listener_freep) Listener *l = NULL;
        int r;

        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->event = sd_event_ref(e);
        l->on_accept = on_accept;
        l->userdata = userdata;
        l->accepting = true;

        /* Made now, disabled: when accept() runs out of file descriptors,
         * arming a timer must not need a new one (sd-event's timerfd). */
        r = sd_event_add_time(e, &l->pause_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_pause_over, l);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(l->pause_timer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(l);
        return 0;
}

Listener *listener_free(Listener *l) {
        if (!l)
                return NULL;
        for (unsigned i = 0; i < l->n_sockets; i++) {
                sd_event_source_disable_unref(l->sockets[i].source);
                safe_close(l->sockets[i].fd);
        }
        sd_event_source_disable_unref(l->pause_timer);
        sd_event_unref(l->event);
        return mfree(l);
}

static int listener_add_fd(Listener *l, int fd) {
        ListenSocket *ls;
        int r;

        if (l->n_sockets >= LISTEN_MAX)
                return -E2BIG;

        ls = &l->sockets[l->n_sockets];
        *ls = (ListenSocket) { .listener = l, .fd = fd };
        r = sd_event_add_io(l->event, &ls->source, fd, EPOLLIN, on_listen_io, ls);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(ls->source, "listen");
        /* New connections wait while established ones are served. */
        (void) sd_event_source_set_priority(ls->source, SD_EVENT_PRIORITY_NORMAL + 10);
        l->n_sockets++;
        return 0;
}

int listener_add_inherited(Listener *l) {
        int n, r;

        n = sd_listen_fds(true);
        if (n <= 0)
                return n;

        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -ENOTSOCK;
                r = fd_nonblock(fd);
                if (r < 0)
                        return r;
                r = listener_add_fd(l, fd);
                if (r < 0)
                        return r;
        }
        return n;
}

int listen_parse_address(const char *address, void *ret_sockaddr, unsigned *ret_len) {
        struct sockaddr_storage *ss = ret_sockaddr;
        char host[INET6_ADDRSTRLEN + 2];
        const char *colon, *h;
        unsigned long port;
        char *end;
        size_t hl;

        memset(ss, 0, sizeof *ss);

        if (strncmp(address, "unix:", 5) == 0) {
                struct sockaddr_un *un = ret_sockaddr;
                size_t n = strlen(address + 5);

                if (n == 0 || n >= sizeof un->sun_path || address[5] != '/')
                        return -EINVAL;
                un->sun_family = AF_UNIX;
                memcpy(un->sun_path, address + 5, n);
                *ret_len = (unsigned) (offsetof(struct sockaddr_un, sun_path) + n + 1);
                return 0;
        }

        colon = strrchr(address, ':');
        if (!colon || colon == address)
                return -EINVAL;
        if (colon[1] < '0' || colon[1] > '9')
                return -EINVAL;      /* strtoul would take " 80" and "+80" */
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno != 0 || *end != 0 || port == 0 || port > 65535)
                return -EINVAL;

        h = address;
        hl = (size_t) (colon - address);
        if (h[0] == '[') {
                if (hl < 3 || h[hl - 1] != ']')
                        return -EINVAL;
                h++;
                hl -= 2;
        }
        if (hl >= sizeof host)
                return -EINVAL;
        memcpy(host, h, hl);
        host[hl] = 0;

        if (address[0] != '[') {
                struct sockaddr_in *in = ret_sockaddr;

                if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
                        return -EINVAL;
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t) port);
                *ret_len = sizeof *in;
        } else {
                struct sockaddr_in6 *in6 = ret_sockaddr;

                if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
                        return -EINVAL;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) port);
                *ret_len = sizeof *in6;
        }
        return 0;
}

int listener_add_address(Listener *l, const char *address) {
        struct sockaddr_storage ss;
        _cleanup_(closep) int fd = -EBADF;
        unsigned len;
        int r;

        r = listen_parse_address(address, &ss, &len);
        if (r < 0)
                return r;

        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (ss.ss_family != AF_UNIX)
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int));
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return -errno;
        if (listen(fd, LISTEN_BACKLOG) < 0)
                return -errno;

        r = listener_add_fd(l, fd);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

unsigned listener_count(Listener *l) {
        return l->n_sockets;
}

int listener_set_accepting(Listener *l, bool accepting) {
        if (l->accepting == accepting)
                return 0;
        l->accepting = accepting;
        listener_apply(l);
        return 0;
}
