/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's side of multichat-auth: asynchronous logins and user lookups on sd-event. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "auth/auth-client.h"
#include "wire/auth-wire.h"
#include "basic/log.h"
#include "basic/list.h"
#include "basic/macro.h"
#include "basic/strv.h"

#define DEFAULT_TIMEOUT_USEC (UINT64_C(10) * 1000 * 1000)
#define DEFAULT_MAX_PENDING 256
#define BACKOFF_MIN_USEC (UINT64_C(100) * 1000)
#define BACKOFF_MAX_USEC (UINT64_C(5) * 1000 * 1000)
#define READ_BATCH_MAX 64
#define HELPER_FD 3
#define HELPER_EXIT_WAIT_MSEC 1000

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define sizeof_field(type, member) sizeof(((type *) 0)->member)

extern char **environ;

struct AuthRequest {
        AuthClient *client;             /* NULL once completed, cancelled or dropped */
        LIST_FIELDS(AuthRequest, list); /* in client->queue (not sent) or client->sent */
        bool sent;
        bool floating;                  /* nobody holds a handle: freed after the callback */
        uint32_t id;
        uint64_t start_usec;
        sd_event_source *timer;
        AuthCallback callback;
        void *userdata;
        uint8_t *datagram;              /* until sent; may hold a password */
        size_t len;
};

typedef struct RequestList {
        AuthRequest *head, *tail;
} RequestList;

struct AuthClient {
        sd_event *event;
        char *socket_path;
        char *helper_path;
        char **helper_args;
        uint64_t timeout_usec;
        unsigned max_pending;

        int fd;
        sd_event_source *io;
        sd_event_source *child;         /* the spawned helper, owned: sd-event kills it on unref */
        sd_event_source *retry_timer;
        uint64_t backoff_usec;
        bool warned;                    /* one warning per outage, not one per retry */

        uint32_t next_id;
        unsigned n_pending;
        RequestList queue;
        RequestList sent;
};

static void list_append(RequestList *l, AuthRequest *r) {
        LIST_APPEND_TAIL(list, l->head, l->tail, r);
}

static void list_remove(RequestList *l, AuthRequest *r) {
        LIST_REMOVE_TAIL(list, l->head, l->tail, r);
}

static void request_wipe_datagram(AuthRequest *r) {
        if (!r->datagram)
                return;
        explicit_bzero(r->datagram, r->len);
        r->datagram = mfree(r->datagram);
        r->len = 0;
}

/* Takes the request out of its client: no callback, no timer, no traffic. */
static void request_detach(AuthRequest *r) {
        AuthClient *c = r->client;

        if (c) {
                list_remove(r->sent ? &c->sent : &c->queue, r);
                c->n_pending--;
                r->client = NULL;
        }
        r->timer = sd_event_source_disable_unref(r->timer);
        request_wipe_datagram(r);
}

static AuthRequest *request_free(AuthRequest *r) {
        if (!r)
                return NULL;
        request_detach(r);
        return mfree(r);
}

DEFINE_CLEANUP_FUNC(AuthRequest *, request_free);

AuthRequest *auth_request_cancel(AuthRequest *r) {
        return request_free(r);
}

static void request_complete(AuthRequest *r, const AuthResult *res) {
        AuthCallback cb = r->callback;
        bool floating = r->floating;

        request_detach(r);
        /* The callback may cancel (free) r itself: nothing touches r after it
         * unless nobody else could have. */
        if (cb)
                cb(res, r->userdata);
        if (floating)
                request_free(r);
}

static void request_fail(AuthRequest *r, int error) {
        AuthResult res = { .result = error, .uid = (uid_t) -1, .username = "" };
        request_complete(r, &res);
}

/* ---- connection ---- */

static void client_update_events(AuthClient *c) {
        if (c->io)
                (void) sd_event_source_set_io_events(c->io, EPOLLIN | (c->queue.head ? EPOLLOUT : 0));
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);

static void client_schedule_retry(AuthClient *c) {
        int r;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        r = sd_event_add_time_relative(c->event, &c->retry_timer, CLOCK_MONOTONIC, c->backoff_usec,
                                       1000, on_retry, c);
        if (r < 0)
                log_error_errno(r, "Failed to schedule reconnecting to the auth helper: %m");
        c->backoff_usec = MIN(c->backoff_usec * 2, BACKOFF_MAX_USEC);
}

/* Everything that was with the helper is lost with it; what was still
 * queued waits for the next helper (or its timeout). */
static void client_disconnect(AuthClient *c) {
        if (c->fd < 0)
                return;
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = safe_close(c->fd);
        /* A helper we spawned that is still alive is stuck or confused:
         * it keeps no state worth saving. Its exit schedules the respawn. */
        if (c->child)
                (void) sd_event_source_send_child_signal(c->child, SIGKILL, NULL, 0);
        else if (c->socket_path)
                client_schedule_retry(c);

        while (c->sent.head)
                request_fail(c->sent.head, -ECONNRESET);
}

static int client_handle_reply(AuthClient *c, const uint8_t *buf, size_t len) {
        AuthWireReply rep;
        AuthResult res;
        uint64_t now, elapsed;
        AuthRequest *r;
        int k;

        k = auth_wire_reply_decode(&rep, buf, len);
        if (k < 0)
                return k;
        c->backoff_usec = BACKOFF_MIN_USEC;
        c->warned = false;

        for (r = c->sent.head; r && r->id != rep.id; r = r->list_next)
                ;
        if (!r)
                return 0;       /* cancelled or timed out meanwhile */

        if (sd_event_now(c->event, CLOCK_MONOTONIC, &now) < 0)
                now = r->start_usec;
        elapsed = now > r->start_usec ? now - r->start_usec : 0;
        res = (AuthResult) {
                .result = rep.result,
                .uid = rep.result == 0 ? (uid_t) rep.uid : (uid_t) -1,
                .staff = rep.staff,
                .in_group = rep.in_group,
                .username = rep.username,
                .fail_delay_usec = rep.fail_delay_usec > elapsed ? rep.fail_delay_usec - elapsed : 0,
        };
        request_complete(r, &res);
        return 0;
}

static void client_read(AuthClient *c) {
        for (unsigned i = 0; i < READ_BATCH_MAX && c->fd >= 0; i++) {
                uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
                ssize_t n;
                int r;

                n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        if (n == 0)
                                log_full_errno(c->warned ? LOG_DEBUG : LOG_WARNING, 0,
                                               "The auth helper closed the connection.");
                        else
                                log_warning_errno(errno, "Lost the connection to the auth helper: %m");
                        c->warned = true;
                        client_disconnect(c);
                        return;
                }
                r = (size_t) n > sizeof buf ? -EMSGSIZE : client_handle_reply(c, buf, (size_t) n);
                if (r < 0) {
                        /* We and the helper no longer agree on the protocol:
                         * start over rather than guess. */
                        log_error_errno(r, "Malformed reply from the auth helper, reconnecting: %m");
                        c->warned = true;
                        client_disconnect(c);
                        return;
                }
        }
}

static void client_flush(AuthClient *c) {
        while (c->fd >= 0 && c->queue.head) {
                AuthRequest *r = c->queue.head;

                if (send(c->fd, r->datagram, r->len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        log_warning_errno(errno, "Failed to send to the auth helper: %m");
                        c->warned = true;
                        client_disconnect(c);
                        return;
                }
                request_wipe_datagram(r);
                list_remove(&c->queue, r);
                list_append(&c->sent, r);
                r->sent = true;
        }
        client_update_events(c);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AuthClient *c = userdata;

        /* Read first: replies may sit in the socket behind a hangup. */
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                client_read(c);
        if (c->fd >= 0 && (revents & EPOLLOUT))
                client_flush(c);
        return 0;
}

static int client_attach(AuthClient *c, int fd) {
        int r;

        r = sd_event_add_io(c->event, &c->io, fd, EPOLLIN, on_io, c);
        if (r < 0)
                return r;
        c->fd = fd;
        client_update_events(c);
        return 0;
}

static int client_connect(AuthClient *c) {
        _cleanup_(closep) int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        strncpy(sa.sun_path, c->socket_path, sizeof sa.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        r = client_attach(c, fd);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata);

/* Our environment minus what systemd gave to us alone: a helper that
 * inherited NOTIFY_SOCKET would tell systemd "READY=1" for the daemon. */
static char **helper_environ(void) {
        static const char *const ours[] = {
                "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
        };
        char **env = NULL;

        for (char **e = environ; *e; e++) {
                bool skip = false;

                for (size_t i = 0; i < ELEMENTSOF(ours) && !skip; i++)
                        skip = strncmp(*e, ours[i], strlen(ours[i])) == 0;
                if (!skip && strv_extend(&env, *e) < 0)
                        return strv_free(env);
        }
        return env ?: calloc(1, sizeof(char *));
}

static int client_spawn(AuthClient *c) {
        _cleanup_(strv_freep) char **env = helper_environ();
        _cleanup_(closep) int ours = -EBADF, theirs = -EBADF;
        _cleanup_(freep) char **argv = NULL;
        char fd_arg[] = "--fd=" STRINGIFY(HELPER_FD);
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        size_t n = strv_length(c->helper_args), k = 0;
        int pair[2], r;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                return -errno;
        ours = pair[0];
        theirs = pair[1];
        if (fcntl(ours, F_SETFL, fcntl(ours, F_GETFL) | O_NONBLOCK) < 0)
                return -errno;

        argv = calloc(n + 3, sizeof *argv);
        if (!argv)
                return -ENOMEM;
        argv[k++] = c->helper_path;
        argv[k++] = fd_arg;
        for (size_t i = 0; i < n; i++)
                argv[k++] = c->helper_args[i];

        /* The helper gets its end as fd 3 and nothing else of ours: no
         * blocked signals, no ignored ones, no stray descriptors. */
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        r = posix_spawn_file_actions_adddup2(&fa, theirs, HELPER_FD);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, HELPER_FD + 1);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = env ? posix_spawn(&pid, c->helper_path, &fa, &attr, argv, env) : ENOMEM;
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0)
                return -r;

        r = sd_event_add_child(c->event, &c->child, pid, WEXITED, on_child_exit, c);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                return r;
        }
        (void) sd_event_source_set_child_process_own(c->child, true);

        r = client_attach(c, ours);
        if (r < 0) {
                c->child = sd_event_source_disable_unref(c->child);     /* kills and reaps it */
                return r;
        }
        TAKE_FD(ours);
        return 0;
}

static int client_start(AuthClient *c) {
        return c->socket_path ? client_connect(c) : client_spawn(c);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        AuthClient *c = userdata;
        int r;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        r = client_start(c);
        if (r >= 0) {
                log_debug("Auth helper %s.", c->socket_path ? "connected" : "started");
                return 0;
        }
        log_full_errno(c->warned ? LOG_DEBUG : LOG_WARNING, r, "Failed to %s the auth helper %s, retrying: %m",
                       c->socket_path ? "connect to" : "start", c->socket_path ?: c->helper_path);
        c->warned = true;
        client_schedule_retry(c);
        return 0;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        AuthClient *c = userdata;

        if (si->si_code == CLD_EXITED)
                log_full_errno(c->warned ? LOG_DEBUG : LOG_WARNING, 0,
                               "Auth helper %i exited with status %i, restarting.", (int) si->si_pid, si->si_status);
        else
                log_full_errno(c->warned ? LOG_DEBUG : LOG_WARNING, 0,
                               "Auth helper %i died of signal %s, restarting.", (int) si->si_pid,
                               strsignal(si->si_status));
        c->warned = true;
        c->child = sd_event_source_disable_unref(c->child);
        client_disconnect(c);
        client_schedule_retry(c);
        return 0;
}

/* ---- public ---- */

int auth_client_new(AuthClient **ret, sd_event *e, const AuthClientOptions *opts) {
        _cleanup_(auth_client_freep) AuthClient *c = NULL;
        int r;

        if (!ret || !e || !opts || (!opts->socket_path && !opts->helper_path))
                return -EINVAL;
        if (opts->socket_path && (opts->socket_path[0] != '/' ||
                                  strlen(opts->socket_path) >= sizeof_field(struct sockaddr_un, sun_path)))
                return -EINVAL;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->event = sd_event_ref(e);
        c->timeout_usec = opts->timeout_usec ?: DEFAULT_TIMEOUT_USEC;
        c->max_pending = opts->max_pending ?: DEFAULT_MAX_PENDING;
        c->backoff_usec = BACKOFF_MIN_USEC;

        if (opts->socket_path) {
                c->socket_path = strdup(opts->socket_path);
                if (!c->socket_path)
                        return -ENOMEM;
                if (client_connect(c) < 0)
                        client_schedule_retry(c);
        } else {
                sigset_t ss;

                c->helper_path = strdup(opts->helper_path);
                if (!c->helper_path)
                        return -ENOMEM;
                r = strv_copy(opts->helper_args, &c->helper_args);
                if (r < 0)
                        return r;
                sigemptyset(&ss);
                sigaddset(&ss, SIGCHLD);
                r = pthread_sigmask(SIG_BLOCK, &ss, NULL);
                if (r != 0)
                        return -r;
                r = client_spawn(c);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

static void client_drop_all(AuthClient *c, RequestList *l) {
        while (l->head) {
                AuthRequest *r = l->head;

                if (r->floating)
                        request_free(r);
                else
                        request_detach(r);
        }
}

AuthClient *auth_client_free(AuthClient *c) {
        if (!c)
                return NULL;
        client_drop_all(c, &c->queue);
        client_drop_all(c, &c->sent);
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = safe_close(c->fd);
        if (c->child) {
                /* On EOF the helper exits by itself once its workers are
                 * done, cleanly: PAM, pam_wrapper and the sanitizers get
                 * their exit handlers. Only one stuck past the wait is
                 * killed: sd-event owns it, sends SIGKILL and reaps it. */
                int pidfd = sd_event_source_get_child_pidfd(c->child);

                if (pidfd >= 0)
                        (void) poll(&(struct pollfd) { .fd = pidfd, .events = POLLIN }, 1, HELPER_EXIT_WAIT_MSEC);
        }
        c->child = sd_event_source_disable_unref(c->child);
        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        sd_event_unref(c->event);
        free(c->socket_path);
        free(c->helper_path);
        strv_free(c->helper_args);
        return mfree(c);
}

pid_t auth_client_get_pid(AuthClient *c) {
        pid_t pid = 0;

        if (!c || !c->child || sd_event_source_get_child_pid(c->child, &pid) < 0)
                return 0;
        return pid;
}

static int on_request_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        request_fail(userdata, -ETIMEDOUT);
        return 0;
}

static int client_submit(AuthClient *c, AuthWireRequest *req, AuthCallback cb, void *userdata,
                         AuthRequest **ret_req) {
        _cleanup_(request_freep) AuthRequest *r = NULL;
        uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
        size_t len;
        int k;

        if (c->n_pending >= c->max_pending)
                return -EBUSY;
        req->id = c->next_id++;
        k = auth_wire_request_encode(req, buf, sizeof buf, &len);
        if (k < 0)
                return k;

        r = calloc(1, sizeof *r);
        if (r)
                r->datagram = malloc(len);
        if (!r || !r->datagram) {
                explicit_bzero(buf, len);
                return -ENOMEM;
        }
        memcpy(r->datagram, buf, len);
        explicit_bzero(buf, len);
        r->len = len;
        r->id = req->id;
        r->callback = cb;
        r->userdata = userdata;
        r->floating = !ret_req;
        (void) sd_event_now(c->event, CLOCK_MONOTONIC, &r->start_usec);

        k = sd_event_add_time_relative(c->event, &r->timer, CLOCK_MONOTONIC, c->timeout_usec, 1000,
                                       on_request_timeout, r);
        if (k < 0)
                return k;

        r->client = c;
        list_append(&c->queue, r);
        c->n_pending++;
        /* Sent from the loop, never from here: a failure while sending
         * would run callbacks before the caller even has the handle. */
        client_update_events(c);

        if (ret_req)
                *ret_req = r;
        TAKE_PTR(r);
        return 0;
}

int auth_client_authenticate(AuthClient *c, const char *user, const char *password, const char *remote,
                             AuthCallback cb, void *userdata, AuthRequest **ret_req) {
        AuthWireRequest req = { .type = AUTH_WIRE_AUTHENTICATE };
        int r;

        if (!c || !auth_wire_username_is_valid(user) || !auth_wire_password_is_valid(password))
                return -EINVAL;
        remote = remote ?: "";
        if (!auth_wire_remote_is_valid(remote))
                return -EINVAL;

        strcpy(req.username, user);
        strcpy(req.password, password);
        strcpy(req.remote, remote);
        r = client_submit(c, &req, cb, userdata, ret_req);
        auth_wire_request_erase(&req);
        return r;
}

int auth_client_lookup(AuthClient *c, const char *user, const char *group,
                       AuthCallback cb, void *userdata, AuthRequest **ret_req) {
        AuthWireRequest req = { .type = AUTH_WIRE_LOOKUP };

        if (!c || !auth_wire_username_is_valid(user) || (group && !auth_wire_group_is_valid(group)))
                return -EINVAL;
        strcpy(req.username, user);
        if (group)
                strcpy(req.group, group);
        return client_submit(c, &req, cb, userdata, ret_req);
}

int auth_client_lookup_uid(AuthClient *c, uid_t uid, const char *group,
                           AuthCallback cb, void *userdata, AuthRequest **ret_req) {
        AuthWireRequest req = { .type = AUTH_WIRE_LOOKUP_UID, .uid = (uint32_t) uid };

        if (!c || uid == (uid_t) -1 || (group && !auth_wire_group_is_valid(group)))
                return -EINVAL;
        if (group)
                strcpy(req.group, group);
        return client_submit(c, &req, cb, userdata, ret_req);
}
