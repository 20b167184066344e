/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* multichat-auth: answers PAM logins and user lookups for the daemon, one worker thread per request. */

/* Why a separate process: PAM modules block (pam_unix sleeps, LDAP talks to
 * the network) and need /etc/shadow; the network-facing daemon must do
 * neither. The main thread only reads requests and writes replies; each
 * request runs on its own thread, and a worker hands its finished job back
 * through a queue and an eventfd, so every socket is touched by the main
 * thread alone.
 *
 * Lookups are remembered for --lookup-cache seconds, and a remembered one
 * is answered by the main thread without a worker: every WebSocket
 * handshake asks for its account, and after a daemon restart every client
 * comes back at once. Measured in the reconnect benchmark, those lookups
 * (an NSS walk and a thread each) were a third of the machine's CPU. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <security/pam_appl.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "auth/lookup-cache.h"
#include "wire/auth-wire.h"
#include "config-build.h"
#include "basic/log.h"
#include "basic/list.h"
#include "basic/macro.h"
#include "basic/time-util.h"

/* What a failed login costs the client when PAM asked for no delay itself
 * (and what the refusals that never reach PAM cost), so that the time to
 * "no" does not say which part was wrong. */
#define NOMINAL_FAIL_DELAY_USEC (2ULL * 1000 * 1000)
#define CONNECTIONS_MAX 64
#define READ_BATCH_MAX 64
#define OUT_QUEUE_MAX 256
#define MAX_CONCURRENT_LIMIT 1024
#define SHUTDOWN_GRACE_USEC (5ULL * 1000 * 1000)
#define REPLY_SIZE_MAX (AUTH_WIRE_HEADER_SIZE + 24 + 2 + USERNAME_MAX)
#define NSS_BUFFER_MAX (1024 * 1024)
#define GROUPS_MAX 65536
#define UID_NOBODY ((uid_t) 65534)
#define LOOKUP_CACHE_SEC_MAX 3600
/* An entry takes about 260 bytes with malloc's overhead, so a full cache
 * is ~17 MB plus a 512 KB index: bounded whatever the daemons ask. It
 * holds a minute's lookups of 65,536 accounts (or fewer accounts with
 * several extra groups); past that the oldest entries go early, which
 * costs NSS walks, never wrong answers. */
#define LOOKUP_CACHE_ENTRIES 65536

static const char *arg_pam_service = "multichat";
static const char *arg_staff_group = "multichat-staff";
static uid_t arg_min_uid = 1000;
static unsigned arg_max_concurrent = 32;
static unsigned arg_lookup_cache_sec = 60;
static int arg_fd = -EBADF;
/* PAM service files from here instead of /etc/pam.d (NULL: libpam's own
 * search); set from $MULTICHAT_PAM_CONFDIR, see pam_confdir_setup(). */
static const char *arg_pam_confdir = NULL;

typedef struct Server Server;
typedef struct Connection Connection;

typedef struct OutReply {
        struct OutReply *next;
        size_t len;
        uint8_t buf[REPLY_SIZE_MAX];
} OutReply;

struct Connection {
        Server *server;
        int fd;
        sd_event_source *io;
        unsigned n_inflight;            /* jobs that will answer here */
        unsigned n_out;                 /* replies the socket did not take yet */
        OutReply *out_head, **out_tail;
        bool dead;                      /* peer gone: replies are dropped; freed once n_inflight == 0 */
        LIST_FIELDS(Connection, connections);
};

typedef struct Job {
        Server *server;                 /* the only field a worker reads besides req/reply */
        Connection *conn;               /* main thread only */
        AuthWireRequest req;
        AuthWireReply reply;
        uint64_t pam_delay_usec;        /* what PAM asked for, recorded instead of slept */
        struct Job *next;
} Job;

struct Server {
        sd_event *event;
        int listen_fd;
        sd_event_source *listen_io;
        bool one_shot;                  /* --fd: serve one connection, exit when it ends */
        bool stopping;
        Connection *connections;
        unsigned n_connections;
        unsigned n_inflight;

        /* Workers take turns for every user database lookup. glibc's
         * get*_r() are thread-safe, but an NSS module need not be:
         * getgrouplist() without initgroups walks getgrent(), one iterator
         * per process, and nss_wrapper 1.1.12 (our tests) answers
         * getpwnam_r() from two threads with a spurious ENOENT, or
         * crashes, while its first lookup loads the files. It costs
         * microseconds next to PAM's milliseconds. */
        pthread_mutex_t nss_lock;

        /* Workers append finished jobs here and poke done_fd. */
        pthread_mutex_t done_lock;
        Job *done_head, **done_tail;
        int done_fd;
        sd_event_source *done_io;
        sd_event_source *grace_timer;

        /* Recent successful lookups, NULL with --lookup-cache=0. The main
         * thread answers hits itself, workers fill it; cache_lock is held
         * only around a get or put, never across an NSS call, so the main
         * thread never waits for a user database. */
        pthread_mutex_t cache_lock;
        LookupCache *cache;
};

/* ---- lookup cache (any thread) ---- */

/* 1 and the cached answer, 0 when there is none (or no cache). */
static int server_cache_get(Server *s, const LookupKey *key, UserInfo *ret) {
        int r;

        if (!s->cache)
                return 0;
        pthread_mutex_lock(&s->cache_lock);
        r = lookup_cache_get(s->cache, key, now_usec(CLOCK_MONOTONIC), ret);
        pthread_mutex_unlock(&s->cache_lock);
        return r;
}

/* A cache that cannot take an entry only costs the next lookup an NSS
 * walk: nothing to report to the requester. */
static void server_cache_put(Server *s, const LookupKey *key, const UserInfo *u) {
        int r;

        if (!s->cache)
                return;
        pthread_mutex_lock(&s->cache_lock);
        r = lookup_cache_put(s->cache, key, u, now_usec(CLOCK_MONOTONIC));
        pthread_mutex_unlock(&s->cache_lock);
        if (r < 0)
                log_debug_errno(r, "Failed to cache the lookup of %s: %m", u->name);
}

/* The cache key of a LOOKUP or LOOKUP_UID request. */
static int request_lookup_key(const AuthWireRequest *req, LookupKey *ret) {
        switch (req->type) {
        case AUTH_WIRE_LOOKUP:
                return lookup_key_by_name(ret, req->username, req->group);
        case AUTH_WIRE_LOOKUP_UID:
                return lookup_key_by_uid(ret, req->uid, req->group);
        default:
                return -EINVAL;
        }
}

/* ---- user database (worker threads) ---- */

static bool uid_allowed(uid_t uid) {
        return uid != 0 && uid >= arg_min_uid && uid != UID_NOBODY && uid != (uid_t) -1;
}

static long nss_buffer_size(int name) {
        long n = sysconf(name);
        return n > 0 && n <= NSS_BUFFER_MAX ? n : 4096;
}

/* What a get*_r() call's answer k means: 1 to try again with the buffer
 * doubled in *size, 0 when found, -ENOENT when there is no such entry,
 * -errno when the database failed. */
static int nss_result(int k, const void *res, size_t *size) {
        if (k == ERANGE && *size < NSS_BUFFER_MAX) {
                *size *= 2;
                return 1;
        }
        if (k != 0)
                return -k;
        return res ? 0 : -ENOENT;
}

/* getpwnam_r or getpwuid_r into a growing buffer: -ENOENT when there is
 * no such user, -errno when the user database failed. */
static int passwd_get(const char *name, uid_t uid, struct passwd *ret_pw, char **ret_buf) {
        size_t size = (size_t) nss_buffer_size(_SC_GETPW_R_SIZE_MAX);

        for (;;) {
                _cleanup_(freep) char *buf = malloc(size);
                struct passwd *res = NULL;
                int k, r;

                if (!buf)
                        return -ENOMEM;
                k = name ? getpwnam_r(name, ret_pw, buf, size, &res) : getpwuid_r(uid, ret_pw, buf, size, &res);
                r = nss_result(k, res, &size);
                if (r > 0)
                        continue;
                if (r == 0)
                        *ret_buf = TAKE_PTR(buf);
                return r;
        }
}

static int group_gid(const char *name, gid_t *ret_gid) {
        size_t size = (size_t) nss_buffer_size(_SC_GETGR_R_SIZE_MAX);

        for (;;) {
                _cleanup_(freep) char *buf = malloc(size);
                struct group gr, *res = NULL;
                int k, r;

                if (!buf)
                        return -ENOMEM;
                k = getgrnam_r(name, &gr, buf, size, &res);
                r = nss_result(k, res, &size);
                if (r > 0)
                        continue;
                if (r == 0)
                        *ret_gid = gr.gr_gid;
                return r;
        }
}

/* Whether the user (primary gid included) belongs to the named group; a
 * group that does not exist has no members. */
static int user_in_group(const gid_t *groups, int n, const char *group) {
        gid_t gid = (gid_t) -1;
        int r;

        if (!group || group[0] == '\0')
                return 0;
        r = group_gid(group, &gid);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return 1;
        return 0;
}

static int user_groups(const char *name, gid_t gid, gid_t **ret, int *ret_n) {
        int n = 64;

        for (;;) {
                _cleanup_(freep) gid_t *l = calloc((size_t) n, sizeof *l);
                int m = n;

                if (!l)
                        return -ENOMEM;
                if (getgrouplist(name, gid, l, &m) >= 0) {
                        *ret = TAKE_PTR(l);
                        *ret_n = m;
                        return 0;
                }
                /* m now holds the number needed. */
                if (m <= n || m > GROUPS_MAX)
                        return -E2BIG;
                n = m;
        }
}

/* The body of user_lookup(), with nss_lock held. */
static int user_lookup_locked(const char *name, uid_t uid, const char *group, UserInfo *ret) {
        _cleanup_(freep) char *buf = NULL;
        _cleanup_(freep) gid_t *groups = NULL;
        struct passwd pw;
        int r, n, staff, in_group;

        r = passwd_get(name, uid, &pw, &buf);
        if (r < 0)
                return r;
        /* A name we cannot carry on the wire is a name the chat cannot show. */
        if (!auth_wire_username_is_valid(pw.pw_name))
                return -EPERM;
        r = user_groups(pw.pw_name, pw.pw_gid, &groups, &n);
        if (r < 0)
                return r;
        staff = user_in_group(groups, n, arg_staff_group);
        if (staff < 0)
                return staff;
        in_group = user_in_group(groups, n, group);
        if (in_group < 0)
                return in_group;

        *ret = (UserInfo) { .uid = pw.pw_uid, .staff = staff, .in_group = in_group };
        strcpy(ret->name, pw.pw_name);
        return 0;
}

/* Resolves the key's user with the staff flag and membership of the key's
 * extra group, and remembers a positive answer: only those, since a new
 * account must work at once and a failed database be asked again. With
 * reuse, a remembered answer will do: a worker that waited for nss_lock
 * behind another asking the same finds its answer instead of walking the
 * database again, which is what a burst of reconnects looks like. */
static int user_lookup(Server *s, const LookupKey *key, bool reuse, UserInfo *ret) {
        UserInfo u;
        int r;

        pthread_mutex_lock(&s->nss_lock);
        if (reuse && server_cache_get(s, key, &u) > 0)
                r = 0;
        else {
                r = user_lookup_locked(key->by_uid ? NULL : key->name, key->uid, key->group, &u);
                if (key->by_uid)
                        log_debug("Looked up uid %" PRIu32 " in the user database: %i", key->uid, r);
                else
                        log_debug("Looked up %s in the user database: %i", key->name, r);
                /* By name this asks "may this account use the chat"; by
                 * uid it only answers who the caller is, and the D-Bus
                 * side decides. */
                if (r == 0 && !key->by_uid && !uid_allowed(u.uid))
                        r = -EPERM;
                if (r == 0)
                        server_cache_put(s, key, &u);
        }
        pthread_mutex_unlock(&s->nss_lock);
        if (r == 0)
                *ret = u;
        return r;
}

/* ---- PAM (worker threads) ---- */

static void pam_response_free(struct pam_response *resp, int n) {
        for (int i = 0; i < n; i++)
                if (resp[i].resp) {
                        explicit_bzero(resp[i].resp, strlen(resp[i].resp));
                        free(resp[i].resp);
                }
        free(resp);
}

/* Answers every hidden prompt with the password of the request. A visible
 * prompt (a username, a one-time code) has no honest answer here. */
static int on_pam_conversation(int n, const struct pam_message **msg, struct pam_response **ret_resp, void *userdata) {
        Job *j = userdata;
        struct pam_response *resp;

        if (n <= 0 || n > PAM_MAX_NUM_MSG)
                return PAM_CONV_ERR;
        resp = calloc((size_t) n, sizeof *resp);
        if (!resp)
                return PAM_BUF_ERR;

        for (int i = 0; i < n; i++) {
                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                        resp[i].resp = strdup(j->req.password);
                        if (!resp[i].resp) {
                                pam_response_free(resp, n);
                                return PAM_BUF_ERR;
                        }
                        break;
                case PAM_ERROR_MSG:
                case PAM_TEXT_INFO:
                        break;
                default:
                        pam_response_free(resp, n);
                        return PAM_CONV_ERR;
                }
        }
        *ret_resp = resp;
        return PAM_SUCCESS;
}

/* Records the delay PAM wants instead of sleeping on this thread: the
 * daemon makes the client wait with a timer, so only the attacker waits. */
static void on_pam_fail_delay(int retval, unsigned usec, void *userdata) {
        Job *j = userdata;

        if (retval != PAM_SUCCESS && usec > j->pam_delay_usec)
                j->pam_delay_usec = MIN((uint64_t) usec, AUTH_WIRE_FAIL_DELAY_MAX_USEC);
}

static int pam_result_to_errno(int pr) {
        switch (pr) {
        case PAM_SUCCESS:
                return 0;
        case PAM_BUF_ERR:
                return -ENOMEM;
        case PAM_ABORT:
        case PAM_SYSTEM_ERR:
        case PAM_SERVICE_ERR:
        case PAM_CONV_ERR:
                return -EIO;
        default:
                /* Wrong password, unknown user, expired or locked account,
                 * a password change due: all "no" to the login form. */
                return -EACCES;
        }
}

/* Runs the PAM auth and account stacks for the request; on success
 * ret_user holds the name PAM settled on (a module may map it). */
static int pam_check(Job *j, char ret_user[static USERNAME_MAX + 1]) {
        struct pam_conv conv = { .conv = on_pam_conversation, .appdata_ptr = j };
        pam_handle_t *pamh = NULL;
        const void *item = NULL;
        int pr, r;

        if (arg_pam_confdir)
                pr = pam_start_confdir(arg_pam_service, j->req.username, &conv, arg_pam_confdir, &pamh);
        else
                pr = pam_start(arg_pam_service, j->req.username, &conv, &pamh);
        if (pr != PAM_SUCCESS)
                return log_error_errno(EIO, "pam_start(%s) failed: %s", arg_pam_service, pam_strerror(pamh, pr));

        pr = pam_set_item(pamh, PAM_FAIL_DELAY, (const void *) on_pam_fail_delay);
        if (pr == PAM_SUCCESS && j->req.remote[0] != '\0')
                pr = pam_set_item(pamh, PAM_RHOST, j->req.remote);
        if (pr == PAM_SUCCESS)
                pr = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
        if (pr == PAM_SUCCESS)
                pr = pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
        if (pr == PAM_SUCCESS) {
                pr = pam_get_item(pamh, PAM_USER, &item);
                if (pr == PAM_SUCCESS && !auth_wire_username_is_valid(item))
                        pr = PAM_USER_UNKNOWN;
                if (pr == PAM_SUCCESS)
                        strcpy(ret_user, item);
        }

        r = pam_result_to_errno(pr);
        if (r == -EIO || r == -ENOMEM)
                log_warning("PAM service %s failed for %s: %s", arg_pam_service, j->req.username,
                            pam_strerror(pamh, pr));
        else if (pr != PAM_SUCCESS)
                log_debug("PAM refused %s: %s", j->req.username, pam_strerror(pamh, pr));
        (void) pam_end(pamh, pr);
        return r;
}

static void job_fail(Job *j, int error, bool delay) {
        j->reply = (AuthWireReply) {
                .id = j->req.id,
                .result = error,
                .uid = AUTH_WIRE_UID_INVALID,
                .fail_delay_usec = delay ? (j->pam_delay_usec ?: NOMINAL_FAIL_DELAY_USEC) : 0,
        };
}

static void reply_user(AuthWireReply *rep, uint32_t id, const UserInfo *u) {
        *rep = (AuthWireReply) {
                .id = id,
                .uid = u->uid,
                .staff = u->staff,
                .in_group = u->in_group,
        };
        strcpy(rep->username, u->name);
}

/* Returns 0 with the user, or the -errno the reply carries. */
static int job_authenticate(Job *j, UserInfo *ret) {
        char user[USERNAME_MAX + 1] = "";
        LookupKey key;
        UserInfo u;
        int r;

        /* Refuse root and system accounts before PAM ever sees their
         * password, so this can never become a root-password oracle. An
         * unknown name still goes through PAM, like any wrong password.
         * Logins never take a remembered answer: a login sees the
         * account as it is now, and leaves that in the cache. */
        r = lookup_key_by_name(&key, j->req.username, NULL);
        if (r < 0)
                return r;
        r = user_lookup(j->server, &key, false, &u);
        if (r == -EPERM)
                return r;
        if (r < 0 && r != -ENOENT) {
                log_warning_errno(r, "Failed to look up user %s: %m", j->req.username);
                return -EIO;
        }

        r = pam_check(j, user);
        if (r < 0)
                return r;

        /* PAM said yes, so whoever sent this knows the password: a user
         * the database cannot find now is our trouble (a broken NSS
         * setup), not a wrong password, and answering so tells nothing. */
        r = lookup_key_by_name(&key, user, NULL);
        if (r < 0)
                return r;
        r = user_lookup(j->server, &key, false, &u);
        if (r == -EPERM)
                return r;
        if (r < 0) {
                log_warning_errno(r, "PAM accepted %s, but looking the user up failed: %m", user);
                return -EIO;
        }
        *ret = u;
        return 0;
}

static int job_lookup(Job *j, UserInfo *ret) {
        LookupKey key;
        int r;

        r = request_lookup_key(&j->req, &key);
        if (r < 0)
                return r;
        r = user_lookup(j->server, &key, true, ret);
        if (r == -ENOENT || r == -EPERM)
                return r;
        if (r < 0) {
                log_warning_errno(r, "Failed to look up user: %m");
                return -EIO;
        }
        return 0;
}

static void *job_run(void *userdata) {
        Job *j = userdata;
        Server *s = j->server;
        uint64_t one = 1;

        UserInfo u;
        int r;

        switch (j->req.type) {
        case AUTH_WIRE_AUTHENTICATE:
                r = job_authenticate(j, &u);
                break;
        case AUTH_WIRE_LOOKUP:
        case AUTH_WIRE_LOOKUP_UID:
                r = job_lookup(j, &u);
                break;
        default:
                r = -EINVAL;
        }
        /* Every failed login costs the same delay, whatever failed. */
        if (r < 0)
                job_fail(j, r, j->req.type == AUTH_WIRE_AUTHENTICATE);
        else
                reply_user(&j->reply, j->req.id, &u);
        auth_wire_request_erase(&j->req);

        pthread_mutex_lock(&s->done_lock);
        *s->done_tail = j;
        s->done_tail = &j->next;
        pthread_mutex_unlock(&s->done_lock);
        /* Cannot fail short of a bug: the counter never gets near overflow. */
        if (write(s->done_fd, &one, sizeof one) < 0)
                log_error_errno(errno, "Failed to wake the main thread: %m");
        return NULL;
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        auth_wire_request_erase(&j->req);
        return mfree(j);
}
DEFINE_CLEANUP_FUNC(Job *, job_free);

/* ---- connections (main thread) ---- */

static void server_check_exit(Server *s);

static Connection *connection_free(Connection *c) {
        if (!c)
                return NULL;
        if (c->server) {
                LIST_REMOVE(connections, c->server->connections, c);
                c->server->n_connections--;
        }
        sd_event_source_disable_unref(c->io);
        safe_close(c->fd);
        while (c->out_head) {
                OutReply *o = c->out_head;
                c->out_head = o->next;
                free(o);
        }
        return mfree(c);
}

/* Drops the socket at once; the struct lives on while workers still
 * hold it, and is freed by connection_maybe_free() at the end of whatever
 * callback is running, so no caller is left holding a freed pointer. */
static void connection_close(Connection *c) {
        if (c->dead)
                return;
        c->dead = true;
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = safe_close(c->fd);
        while (c->out_head) {
                OutReply *o = c->out_head;
                c->out_head = o->next;
                free(o);
        }
        c->out_tail = &c->out_head;
        c->n_out = 0;
}

static void connection_maybe_free(Connection *c) {
        if (c->dead && c->n_inflight == 0)
                connection_free(c);
}

/* While replies are stuck the peer is not reading: stop reading its
 * requests too, so one slow peer cannot make us queue without end. */
static void connection_update_events(Connection *c) {
        uint32_t events = c->out_head ? EPOLLOUT : c->server->stopping ? 0 : EPOLLIN;

        if (!c->dead)
                (void) sd_event_source_set_io_events(c->io, events);
}

static void connection_send(Connection *c, const AuthWireReply *rep) {
        uint8_t buf[REPLY_SIZE_MAX];
        OutReply *o;
        size_t len;
        int r;

        if (c->dead)
                return;
        r = auth_wire_reply_encode(rep, buf, sizeof buf, &len);
        if (r < 0) {
                log_error_errno(r, "Failed to encode reply %" PRIu32 ", dropping it: %m", rep->id);
                return;
        }
        if (!c->out_head) {
                if (send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
                        return;
                if (errno != EAGAIN && errno != EINTR) {
                        log_debug_errno(errno, "Failed to send reply, closing connection: %m");
                        connection_close(c);
                        return;
                }
        }
        if (c->n_out >= OUT_QUEUE_MAX) {
                log_warning("Peer does not read its replies, closing connection.");
                connection_close(c);
                return;
        }
        o = malloc(sizeof *o);
        if (!o) {
                log_warning("Out of memory.");
                connection_close(c);
                return;
        }
        o->next = NULL;
        o->len = len;
        memcpy(o->buf, buf, len);
        *c->out_tail = o;
        c->out_tail = &o->next;
        c->n_out++;
        connection_update_events(c);
}

static void connection_send_error(Connection *c, uint32_t id, int error) {
        AuthWireReply rep = { .id = id, .result = error, .uid = AUTH_WIRE_UID_INVALID };
        connection_send(c, &rep);
}

static void connection_flush(Connection *c) {
        while (c->out_head) {
                OutReply *o = c->out_head;

                if (send(c->fd, o->buf, o->len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        log_debug_errno(errno, "Failed to send reply, closing connection: %m");
                        connection_close(c);
                        return;
                }
                c->out_head = o->next;
                if (!c->out_head)
                        c->out_tail = &c->out_head;
                c->n_out--;
                free(o);
        }
        connection_update_events(c);
}

/* Answers a lookup that has a cached answer here on the main thread, since
 * starting a worker would cost more than the answer. Returns whether it did. */
static bool connection_answer_cached(Connection *c, const AuthWireRequest *req) {
        AuthWireReply rep;
        LookupKey key;
        UserInfo u;

        if (request_lookup_key(req, &key) < 0 || server_cache_get(c->server, &key, &u) <= 0)
                return false;
        reply_user(&rep, req->id, &u);
        connection_send(c, &rep);
        return true;
}

static void connection_dispatch(Connection *c, const uint8_t *buf, size_t len, bool truncated) {
        Server *s = c->server;
        _cleanup_(job_freep) Job *j = NULL;
        pthread_attr_t attr;
        pthread_t thread;
        uint32_t id;
        int r = -EMSGSIZE;

        if (!truncated) {
                j = calloc(1, sizeof *j);
                if (!j) {
                        log_warning("Out of memory.");
                        return;
                }
                r = auth_wire_request_decode(&j->req, buf, len);
        }
        if (r < 0) {
                /* Answer what can be answered, so the sender's request
                 * fails now instead of timing out. */
                if (auth_wire_peek_id(buf, len, &id) >= 0)
                        connection_send_error(c, id, -EINVAL);
                log_debug_errno(r, "Ignoring malformed request of %zu bytes: %m", len);
                return;
        }
        if (connection_answer_cached(c, &j->req))
                return;
        if (s->n_inflight >= arg_max_concurrent) {
                connection_send_error(c, j->req.id, -EBUSY);
                return;
        }

        j->server = s;
        j->conn = c;
        r = pthread_attr_init(&attr);
        if (r == 0) {
                (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = pthread_create(&thread, &attr, job_run, j);
                (void) pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                log_warning_errno(r, "Failed to start a worker thread: %m");
                connection_send_error(c, j->req.id, -EBUSY);
                return;
        }
        TAKE_PTR(j);
        c->n_inflight++;
        s->n_inflight++;
}

/* On SOCK_SEQPACKET a zero-length read is either the peer's close or an
 * empty datagram; only the first sets RDHUP. */
static bool peer_closed(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLRDHUP };

        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void connection_read(Connection *c) {
        for (unsigned i = 0; i < READ_BATCH_MAX; i++) {
                uint8_t buf[AUTH_WIRE_DATAGRAM_MAX];
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t n;

                if (c->dead || c->out_head || c->server->stopping)
                        return;
                n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        log_debug_errno(errno, "Failed to read request, closing connection: %m");
                        connection_close(c);
                        return;
                }
                if (n == 0 && peer_closed(c->fd)) {
                        connection_close(c);
                        return;
                }
                /* Passed fds (MSG_CTRUNC) were closed by the kernel; such a
                 * datagram is malformed like an oversized one. */
                connection_dispatch(c, buf, (size_t) n, mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
                explicit_bzero(buf, (size_t) n);
        }
}

static int on_connection_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Connection *c = userdata;
        Server *s = c->server;

        /* HUP: the peer is gone, nobody is left to read a reply. */
        if (revents & (EPOLLHUP | EPOLLERR))
                connection_close(c);
        if (!c->dead && (revents & EPOLLOUT))
                connection_flush(c);
        if (!c->dead && (revents & EPOLLIN))
                connection_read(c);
        connection_maybe_free(c);
        server_check_exit(s);
        return 0;
}

static int connection_new(Server *s, int fd) {
        Connection *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = fd;
        c->out_tail = &c->out_head;
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, on_connection_io, c);
        if (r < 0) {
                c->fd = -EBADF;         /* the caller still owns it */
                connection_free(c);
                return r;
        }
        c->server = s;
        LIST_PREPEND(connections, s->connections, c);
        s->n_connections++;
        return 0;
}

/* ---- server (main thread) ---- */

static void server_check_exit(Server *s) {
        if (s->n_inflight > 0)
                return;
        if (s->stopping || (s->one_shot && s->n_connections == 0))
                (void) sd_event_exit(s->event, 0);
}

static int on_done(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Server *s = userdata;
        uint64_t v;
        Job *list;

        /* Resets the counter; the queue, not the count, says what is done. */
        if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
                log_warning_errno(errno, "Failed to read the wakeup counter: %m");
        pthread_mutex_lock(&s->done_lock);
        list = s->done_head;
        s->done_head = NULL;
        s->done_tail = &s->done_head;
        pthread_mutex_unlock(&s->done_lock);

        while (list) {
                Job *j = list;
                Connection *c = j->conn;

                list = j->next;
                c->n_inflight--;
                s->n_inflight--;
                connection_send(c, &j->reply);
                connection_maybe_free(c);
                job_free(j);
        }
        server_check_exit(s);
        return 0;
}

static int on_listen(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Server *s = userdata;

        for (unsigned i = 0; i < 16; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                int r;

                if (cfd < 0) {
                        if (errno == EAGAIN)
                                return 0;
                        /* The connection died in the backlog: try the next one. */
                        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        log_warning_errno(errno, "Failed to accept a connection: %m");
                        return 0;
                }
                if (s->n_connections >= CONNECTIONS_MAX) {
                        log_warning("Refusing a connection: %u are open already.", s->n_connections);
                        safe_close(cfd);
                        continue;
                }
                r = connection_new(s, cfd);
                if (r < 0) {
                        log_warning_errno(r, "Failed to set up a connection: %m");
                        safe_close(cfd);
                }
        }
        return 0;
}

static int on_grace_expired(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *s = userdata;

        log_warning("%u requests still running, exiting anyway.", s->n_inflight);
        return sd_event_exit(s->event, 0);
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Server *s = userdata;

        if (s->stopping)
                return 0;
        s->stopping = true;
        s->listen_io = sd_event_source_disable_unref(s->listen_io);
        LIST_FOREACH(connections, c, s->connections)
                connection_update_events(c);
        if (s->n_inflight > 0)
                (void) sd_event_add_time_relative(s->event, &s->grace_timer, CLOCK_MONOTONIC,
                                                  SHUTDOWN_GRACE_USEC, 0, on_grace_expired, s);
        server_check_exit(s);
        return 0;
}

static Server *server_free(Server *s) {
        if (!s)
                return NULL;
        while (s->connections)
                connection_free(s->connections);
        while (s->done_head) {
                Job *j = s->done_head;
                s->done_head = j->next;
                job_free(j);
        }
        sd_event_source_disable_unref(s->listen_io);
        sd_event_source_disable_unref(s->done_io);
        sd_event_source_disable_unref(s->grace_timer);
        safe_close(s->listen_fd);
        safe_close(s->done_fd);
        lookup_cache_free(s->cache);
        pthread_mutex_destroy(&s->cache_lock);
        pthread_mutex_destroy(&s->done_lock);
        pthread_mutex_destroy(&s->nss_lock);
        sd_event_unref(s->event);
        return mfree(s);
}
DEFINE_CLEANUP_FUNC(Server *, server_free);

static int server_new(Server **ret) {
        _cleanup_(server_freep) Server *s = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->listen_fd = s->done_fd = -EBADF;
        s->done_tail = &s->done_head;
        pthread_mutex_init(&s->done_lock, NULL);
        pthread_mutex_init(&s->nss_lock, NULL);
        pthread_mutex_init(&s->cache_lock, NULL);

        if (arg_lookup_cache_sec > 0) {
                r = lookup_cache_new(&s->cache, LOOKUP_CACHE_ENTRIES, arg_lookup_cache_sec * USEC_PER_SEC);
                if (r < 0)
                        return r;
        }
        r = sd_event_new(&s->event);
        if (r < 0)
                return r;
        s->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->done_fd < 0)
                return -errno;
        /* Below the sockets: a burst of requests is read in full before
         * finished jobs free their slots, which keeps -EBUSY predictable. */
        r = sd_event_add_io(s->event, &s->done_io, s->done_fd, EPOLLIN, on_done, s);
        if (r < 0)
                return r;
        r = sd_event_source_set_priority(s->done_io, SD_EVENT_PRIORITY_NORMAL + 1);
        if (r < 0)
                return r;
        r = sd_event_add_signal(s->event, NULL, SIGTERM, on_signal, s);
        if (r < 0)
                return r;
        r = sd_event_add_signal(s->event, NULL, SIGINT, on_signal, s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

static int fd_set_nonblock_cloexec(int fd) {
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

/* The socket comes from --fd (one connected end of a socketpair the daemon
 * made) or from systemd: a listening socket, or with Accept=yes one
 * connection. */
static int server_take_socket(Server *s) {
        int fd, n, r;

        if (arg_fd >= 0) {
                r = sd_is_socket(arg_fd, AF_UNIX, SOCK_SEQPACKET, 0);
                if (r <= 0)
                        return log_error_errno(r < 0 ? r : EINVAL,
                                               "--fd=%i is not a connected AF_UNIX SOCK_SEQPACKET socket.", arg_fd);
                fd = arg_fd;
                s->one_shot = true;
        } else {
                n = sd_listen_fds(true);
                if (n < 0)
                        return log_error_errno(n, "Failed to read LISTEN_FDS: %m");
                if (n != 1)
                        return log_error_errno(EINVAL, "Expected one socket by socket activation, got %i; "
                                               "or pass --fd=N.", n);
                fd = SD_LISTEN_FDS_START;
                if (sd_is_socket(fd, AF_UNIX, SOCK_SEQPACKET, 1) > 0) {
                        r = fd_set_nonblock_cloexec(fd);
                        if (r < 0)
                                return log_error_errno(r, "Failed to set up the listening socket: %m");
                        s->listen_fd = fd;
                        r = sd_event_add_io(s->event, &s->listen_io, fd, EPOLLIN, on_listen, s);
                        if (r < 0)
                                return log_error_errno(r, "Failed to watch the listening socket: %m");
                        return 0;
                }
                if (sd_is_socket(fd, AF_UNIX, SOCK_SEQPACKET, 0) <= 0)
                        return log_error_errno(EINVAL, "The passed socket is not AF_UNIX SOCK_SEQPACKET.");
                s->one_shot = true;
        }

        r = fd_set_nonblock_cloexec(fd);
        if (r < 0)
                return log_error_errno(r, "Failed to set up fd %i: %m", fd);
        r = connection_new(s, fd);
        if (r < 0)
                return log_error_errno(r, "Failed to watch fd %i: %m", fd);
        return 0;
}

/* ---- command line ---- */

static int parse_number(const char *s, unsigned long long min, unsigned long long max, unsigned long long *ret) {
        unsigned long long v;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Answers PAM logins and user lookups for multichatd over a SOCK_SEQPACKET socket.\n\n"
               "  -h --help                 Show this help\n"
               "     --version              Show the version\n"
               "     --fd=N                 Serve the connected socket N and exit when it closes\n"
               "                            (without it: the socket systemd passed in LISTEN_FDS)\n"
               "     --pam-service=NAME     PAM service to authenticate with (default: multichat)\n"
               "     --staff-group=NAME     Members are staff (default: multichat-staff)\n"
               "     --min-uid=UID          Refuse accounts below this uid (default: 1000;\n"
               "                            root and nobody are always refused)\n"
               "     --max-concurrent=N     Requests run at once; more get -EBUSY (default: 32)\n"
               "     --lookup-cache=SEC     Answer a repeated lookup from memory for SEC seconds\n"
               "                            (0…%u, default: 60; 0: always ask the user database)\n"
               "\nEnvironment (for tests):\n"
               "  MULTICHAT_PAM_CONFDIR=DIR  Read the PAM service from DIR, not /etc/pam.d\n",
               program_invocation_short_name, LOOKUP_CACHE_SEC_MAX);
}

/* Only sets arg_*: whatever reads a configuration file sets them first and
 * this applies the command line on top. Returns 0 to exit successfully
 * (--help, --version), > 0 to run, < 0 on error. */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_FD,
                ARG_PAM_SERVICE,
                ARG_STAFF_GROUP,
                ARG_MIN_UID,
                ARG_MAX_CONCURRENT,
                ARG_LOOKUP_CACHE,
        };
        static const struct option options[] = {
                { "help",           no_argument,       NULL, 'h'                },
                { "version",        no_argument,       NULL, ARG_VERSION        },
                { "fd",             required_argument, NULL, ARG_FD             },
                { "pam-service",    required_argument, NULL, ARG_PAM_SERVICE    },
                { "staff-group",    required_argument, NULL, ARG_STAFF_GROUP    },
                { "min-uid",        required_argument, NULL, ARG_MIN_UID        },
                { "max-concurrent", required_argument, NULL, ARG_MAX_CONCURRENT },
                { "lookup-cache",   required_argument, NULL, ARG_LOOKUP_CACHE   },
                {}
        };
        unsigned long long v;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("multichat-auth %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_FD:
                        if (parse_number(optarg, 3, INT_MAX, &v) < 0)
                                return log_error_errno(EINVAL, "Invalid --fd=%s (a descriptor >= 3).", optarg);
                        arg_fd = (int) v;
                        break;
                case ARG_PAM_SERVICE:
                        if (!auth_wire_group_is_valid(optarg))
                                return log_error_errno(EINVAL, "Invalid --pam-service=%s.", optarg);
                        arg_pam_service = optarg;
                        break;
                case ARG_STAFF_GROUP:
                        if (!auth_wire_group_is_valid(optarg))
                                return log_error_errno(EINVAL, "Invalid --staff-group=%s.", optarg);
                        arg_staff_group = optarg;
                        break;
                case ARG_MIN_UID:
                        if (parse_number(optarg, 0, UINT32_MAX - 1, &v) < 0)
                                return log_error_errno(EINVAL, "Invalid --min-uid=%s.", optarg);
                        arg_min_uid = (uid_t) v;
                        break;
                case ARG_MAX_CONCURRENT:
                        if (parse_number(optarg, 1, MAX_CONCURRENT_LIMIT, &v) < 0)
                                return log_error_errno(EINVAL, "Invalid --max-concurrent=%s (1…%u).",
                                                       optarg, MAX_CONCURRENT_LIMIT);
                        arg_max_concurrent = (unsigned) v;
                        break;
                case ARG_LOOKUP_CACHE:
                        if (parse_number(optarg, 0, LOOKUP_CACHE_SEC_MAX, &v) < 0)
                                return log_error_errno(EINVAL, "Invalid --lookup-cache=%s (0…%u seconds).",
                                                       optarg, LOOKUP_CACHE_SEC_MAX);
                        arg_lookup_cache_sec = (unsigned) v;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return log_error_errno(EINVAL, "Unhandled option %i.", c);
                }

        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument: %s", argv[optind]);
        return 1;
}

/* A hook for tests, like systemd's $SYSTEMD_* variables: PAM service files
 * from $MULTICHAT_PAM_CONFDIR instead of /etc/pam.d, through libpam's
 * pam_start_confdir(). The tests used to get that from pam_wrapper, which
 * copies the files into one of 62 machine-wide /tmp/pam.? directories per
 * process; two processes starting at the same moment may pick the same one
 * (pam_wrapper 1.1.4 checks, then creates), and the other's copy or exit
 * then truncates or deletes our PAM configuration: right passwords were
 * refused now and then. Set but unusable, it is an error: a test must not
 * quietly fall back to the system's PAM. */
static int pam_confdir_setup(void) {
        const char *e = secure_getenv("MULTICHAT_PAM_CONFDIR");
        struct stat st;

        if (!e || e[0] == '\0')
                return 0;
        if (e[0] != '/' || strlen(e) >= PATH_MAX)
                return log_error_errno(EINVAL, "$MULTICHAT_PAM_CONFDIR=%s is not an absolute path.", e);
        if (stat(e, &st) < 0)
                return log_error_errno(errno, "$MULTICHAT_PAM_CONFDIR=%s: %m", e);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(ENOTDIR, "$MULTICHAT_PAM_CONFDIR=%s: %m", e);
        arg_pam_confdir = e;
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(server_freep) Server *s = NULL;
        sigset_t mask;
        int r;

        log_setup("multichat-auth");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        r = pam_confdir_setup();
        if (r < 0)
                return r;

        /* Blocked before any worker exists, so every thread inherits the
         * mask and the signals arrive only through sd-event. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);

        r = server_new(&s);
        if (r < 0)
                return log_error_errno(r, "Failed to set up: %m");
        r = server_take_socket(s);
        if (r < 0)
                return r;

        (void) sd_notify(false, "READY=1");
        log_debug("Serving PAM service %s%s%s, staff group %s, min uid %u, %u at once, lookups cached %u s.",
                  arg_pam_service, arg_pam_confdir ? " from " : "", arg_pam_confdir ?: "",
                  arg_staff_group, (unsigned) arg_min_uid, arg_max_concurrent, arg_lookup_cache_sec);

        r = sd_event_loop(s->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");

        /* A worker still inside PAM cannot be stopped safely, and freeing
         * what it will touch when it returns would be worse: leave now. */
        if (s->n_inflight > 0)
                _exit(EXIT_SUCCESS);
        return 0;
}

int main(int argc, char *argv[]) {
        return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
