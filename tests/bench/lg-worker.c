/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One load generator worker process: an epoll loop over many client connections (members, logins, reconnects). */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lg-worker.h"
#include "lg-ws.h"

#define SCRATCH_SIZE (4u << 20)         /* one read plus a partial frame carried over */
#define FRAME_MAX (2u << 20)            /* a room list of thousands of rooms still fits */
#define OUT_MAX (4u << 20)              /* unsent bytes a connection may pile up */
#define SETUP_LOGINS_IN_FLIGHT 8        /* per worker; the auth helper runs 32 at once */
#define WRONG_PASSWORD "wrong-password"
#define SLOT_RIGHT_SPREAD_NS (100 * 1000000ULL)
#define REJOIN_SCAN_NS (5 * 1000000ULL)        /* how often members waiting to reconnect are looked at */
#define LAST_ID_MAX 32                          /* "<ms>-<seq>" */

/* Source addresses: one (source, destination) pair has ~28k ephemeral
 * ports (FACTS.md), and the daemon limits logins per address. connect()
 * tries the ports of one parity first (the other half is left to bind()),
 * scanning all of them: past ~14k connections on one pair every connect()
 * walks thousands of taken ports, and handshakes fell from ~12k/s to 1k/s
 * in the generator, not the daemon. So members change address every
 * MEMBERS_PER_SRC, far below that. */
#define SRC_MEMBERS 5000u               /* + member / MEMBERS_PER_SRC */
#define MEMBERS_PER_SRC 5000u
#define SRC_STORM 100u                  /* + slot: one address per login slot */
#define SRC_SETUP 3000u                 /* + user % 1000 */
#define SRC_RECONNECT 10000u            /* + attempt % 4000 */

typedef enum ConnKind {
        CK_MEMBER,
        CK_SETUP_LOGIN,
        CK_LOGIN,
        CK_RECONNECT,
} ConnKind;

typedef enum ConnState {
        ST_CONNECTING,
        ST_GET_LOGIN,
        ST_POST_LOGIN,
        ST_UPGRADE,
        ST_WAIT_ROOMS,
        ST_JOINING,
        ST_READY,
        ST_DEAD,
} ConnState;

typedef struct Conn {
        int fd;
        uint8_t kind;
        uint8_t state;
        bool right;                     /* login: the right password */
        bool epollout;
        bool probing;                   /* a CMD_PROBE ping awaits its pong */
        bool right_retried;             /* setup login: refused once already */
        bool rejoining;                 /* a member reconnecting after its connection dropped */
        uint8_t rejoin_attempt;
        uint8_t frag_op;
        uint32_t idx;                   /* member index, slot index or user */
        uint32_t user;
        uint32_t target;
        uint32_t step;                  /* login/reconnect: the step the attempt began in */
        uint64_t t_start;
        uint64_t t_op;                  /* login: when the POST went out; rejoin: when to try next */
        uint64_t t_drop;                /* rejoin: when the connection dropped */
        char last_id[LAST_ID_MAX];      /* rejoin: the last message id seen in the room ("" none) */
        uint8_t *in;                    /* bytes of an incomplete frame or HTTP answer */
        uint32_t in_len;
        uint8_t *out;                   /* bytes the socket did not take yet */
        uint32_t out_len;
        uint8_t *frag;                  /* a fragmented message being reassembled */
        uint32_t frag_len;
        char csrf[64];
} Conn;

typedef struct Worker {
        const Params *p;
        unsigned id;
        int epfd;
        int cmd_fd;
        int ack_fd;
        WorkerShm *shm;
        char *cookies;
        char ws_key[WS_KEY_LEN + 1];
        char ws_accept[WS_ACCEPT_LEN + 1];
        uint64_t rng;

        Conn *members;                  /* this worker's members: global index id + k * W */
        size_t n_members_cap;
        uint64_t members_goal;          /* global member count asked for */
        uint64_t next_member;           /* next global index to open */
        unsigned connecting;
        bool connect_owed;              /* an ack for CMD_CONNECT */

        Conn **senders;
        size_t n_senders;
        size_t rr;

        uint64_t next_login_user;
        unsigned logins_in_flight;
        bool logins_owed;

        Cmd cmd;                        /* the current step */
        bool step_active;
        bool slots_started;
        uint32_t next_right, next_wrong;        /* login slots still to start (global index) */
        uint64_t step_sent;
        unsigned slots_in_flight;
        uint64_t reconnects;

        Conn **rejoin_q;                /* members waiting to reconnect (rejoin) */
        size_t n_rejoin_q;
        uint64_t rejoin_scan_at;

        uint8_t *scratch;
        bool quit;
} Worker;

static uint32_t rnd32(Worker *w) {
        /* xorshift64*: masking keys need not be secret here. */
        w->rng ^= w->rng >> 12;
        w->rng ^= w->rng << 25;
        w->rng ^= w->rng >> 27;
        return (uint32_t) ((w->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static uint32_t src_addr(uint32_t k) {
        /* 127.A.B.C with B and C in 1..250: never a .0 or .255 byte. */
        return (127u << 24) | ((1 + k / 62500) << 16) | ((1 + (k / 250) % 250) << 8) | (1 + k % 250);
}

static StepStats *cur_stats(Worker *w) {
        return &w->shm->steps[w->step_active || w->cmd.op == CMD_STEP ? w->cmd.step : SETUP_STEP];
}

/* ---- connections ---- */

static void conn_release(Conn *c) {
        if (c->fd >= 0)
                close(c->fd);   /* also leaves the epoll set */
        c->fd = -1;
        free(c->in);
        free(c->out);
        free(c->frag);
        c->in = c->out = c->frag = NULL;
        c->in_len = c->out_len = c->frag_len = 0;
        c->state = ST_DEAD;
}

static int conn_connect(Worker *w, Conn *c, uint32_t src_k) {
        struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(src_addr(src_k)) };
        int one = 1, fd;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };

        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* Let connect() pick the port for this (source, destination)
         * pair instead of bind() reserving one across all of them. */
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &src, sizeof(src)) < 0 ||
            (connect(fd, (struct sockaddr *) &w->p->targets[c->target], sizeof(struct sockaddr_in)) < 0 &&
             errno != EINPROGRESS) ||
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        c->fd = fd;
        c->epollout = true;
        c->state = ST_CONNECTING;
        c->t_start = now_ns();
        return 0;
}

static void conn_set_out(Worker *w, Conn *c, bool on) {
        struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };

        if (c->epollout == on)
                return;
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
                c->epollout = on;
}

/* Returns 0, or -errno when the connection is broken. */
static int conn_write(Worker *w, Conn *c, const void *data, size_t len) {
        ssize_t n = 0;

        if (c->out_len == 0) {
                n = write(c->fd, data, len);
                if (n < 0) {
                        if (errno != EAGAIN)
                                return -errno;
                        n = 0;
                }
                if ((size_t) n == len)
                        return 0;
        }
        if (c->out_len + (len - (size_t) n) > OUT_MAX)
                return -ENOBUFS;
        uint8_t *o = realloc(c->out, c->out_len + (len - (size_t) n));
        if (!o)
                return -ENOMEM;
        memcpy(o + c->out_len, (const uint8_t *) data + n, len - (size_t) n);
        c->out = o;
        c->out_len += (uint32_t) (len - (size_t) n);
        conn_set_out(w, c, true);
        return 0;
}

static int conn_flush(Worker *w, Conn *c) {
        ssize_t n;

        if (c->out_len == 0) {
                conn_set_out(w, c, false);
                return 0;
        }
        n = write(c->fd, c->out, c->out_len);
        if (n < 0)
                return errno == EAGAIN ? 0 : -errno;
        memmove(c->out, c->out + n, c->out_len - (size_t) n);
        c->out_len -= (uint32_t) n;
        if (c->out_len == 0) {
                free(c->out);
                c->out = NULL;
                conn_set_out(w, c, false);
        }
        return 0;
}

static int ws_send(Worker *w, Conn *c, unsigned opcode, const void *payload, size_t len) {
        uint8_t buf[WS_FRAME_HEAD_MAX + 8192];

        if (len > sizeof(buf) - WS_FRAME_HEAD_MAX)
                return -EMSGSIZE;
        return conn_write(w, c, buf, ws_frame_build(buf, opcode, payload, len, rnd32(w)));
}

static int send_upgrade(Worker *w, Conn *c) {
        const char *host = w->p->target_host[c->target];
        const char *cookie = w->cookies + (size_t) c->user * COOKIE_MAX;
        char req[512];
        int n;

        n = snprintf(req, sizeof(req),
                     "GET /chat/stream/ HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://%s\r\n"
                     "Cookie: %s\r\n\r\n",
                     host, w->ws_key, host, cookie);
        if (n < 0 || (size_t) n >= sizeof(req))
                return -ENOBUFS;
        c->state = ST_UPGRADE;
        return conn_write(w, c, req, (size_t) n);
}

static int send_get_login(Worker *w, Conn *c) {
        char req[256];
        int n = snprintf(req, sizeof(req),
                         "GET /login HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nUser-Agent: mc-loadgen\r\n\r\n",
                         w->p->target_host[c->target]);

        c->state = ST_GET_LOGIN;
        return conn_write(w, c, req, (size_t) n);
}

static int send_post_login(Worker *w, Conn *c) {
        const char *host = w->p->target_host[c->target];
        char user[64], body[256], req[1024];
        int nb, n;

        snprintf(user, sizeof(user), "%s%0*u", w->p->user_prefix, (int) w->p->user_width, c->user);
        nb = snprintf(body, sizeof(body), "username=%s&password=%s&csrf=%s&next=%%2F", user,
                      c->right ? w->p->password : WRONG_PASSWORD, c->csrf);
        n = snprintf(req, sizeof(req),
                     "POST /login HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
                     "Cookie: multichat_csrf=%s\r\nUser-Agent: mc-loadgen\r\n\r\n%s",
                     host, host, nb, c->csrf, body);
        if (nb < 0 || (size_t) nb >= sizeof(body) || n < 0 || (size_t) n >= sizeof(req))
                return -ENOBUFS;
        c->state = ST_POST_LOGIN;
        c->t_op = now_ns();
        return conn_write(w, c, req, (size_t) n);
}

static int send_join(Worker *w, Conn *c, const char *room) {
        char cmd[192];
        int n = c->rejoining && c->last_id[0] ?
                snprintf(cmd, sizeof(cmd), "{\"command\": \"join\", \"room\": \"%s\", \"since\": \"%s\"}", room,
                         c->last_id) :
                snprintf(cmd, sizeof(cmd), "{\"command\": \"join\", \"room\": \"%s\"}", room);

        c->state = ST_JOINING;
        return ws_send(w, c, WS_OP_TEXT, cmd, (size_t) n);
}

/* ---- members, setup logins and slots: starting and ending ---- */

static void member_pump(Worker *w);
static void logins_pump(Worker *w);
static void slot_start(Worker *w, ConnKind kind, uint32_t slot, bool right);
static void maybe_ack_step(Worker *w);

static void ack(Worker *w, uint8_t op) {
        while (write(w->ack_fd, &op, 1) < 0 && errno == EINTR)
                ;
}

static bool member_is_sender(const Worker *w, const Conn *c) {
        return w->p->n_rooms > 0 && c->idx % w->p->members < w->p->senders;
}

static void member_ready(Worker *w, Conn *c) {
        c->state = ST_READY;
        w->connecting--;
        __atomic_add_fetch(&w->shm->conns_open, 1, __ATOMIC_RELAXED);
        if (member_is_sender(w, c))
                w->senders[w->n_senders++] = c;
        member_pump(w);
}

/* The page's reconnect delay (web/render.js backoffDelay): 0.5 s doubling
 * up to 10 s, times a jitter in [50 %, 100 %]. */
static uint64_t rejoin_delay_ns(Worker *w, unsigned attempt) {
        uint64_t base = 500 * 1000000ULL << (attempt < 5 ? attempt : 5);

        if (base > 10 * 1000000000ULL)
                base = 10 * 1000000000ULL;
        return base / 2 + (uint64_t) ((double) (base / 2) * (rnd32(w) / 4294967296.0));
}

/* A member's connection dropped (dropped = it was in its room), or an
 * attempt to come back failed: it tries again after the page's delay. */
static void rejoin_later(Worker *w, Conn *c, bool dropped, int close_slot) {
        uint64_t now = now_ns();

        if (dropped) {
                cur_stats(w)->closes[close_slot]++;
                __atomic_add_fetch(&w->shm->conns_lost, 1, __ATOMIC_RELAXED);
                c->rejoining = true;
                c->rejoin_attempt = 0;
                c->t_drop = now;
        } else {
                w->connecting--;
                __atomic_add_fetch(&w->shm->storm_retries, 1, __ATOMIC_RELAXED);
        }
        c->t_op = now + rejoin_delay_ns(w, c->rejoin_attempt);
        if (c->rejoin_attempt < UINT8_MAX)
                c->rejoin_attempt++;
        w->rejoin_q[w->n_rejoin_q++] = c;
}

static void rejoin_pump(Worker *w) {
        uint64_t now = now_ns();
        size_t kept = 0;

        if (w->n_rejoin_q == 0 || now < w->rejoin_scan_at)
                return;
        w->rejoin_scan_at = now + REJOIN_SCAN_NS;
        for (size_t i = 0; i < w->n_rejoin_q; i++) {
                Conn *c = w->rejoin_q[i];
                if (c->t_op > now || w->connecting >= w->p->connect_concurrency) {
                        w->rejoin_q[kept++] = c;
                        continue;
                }
                w->connecting++;
                __atomic_add_fetch(&w->shm->storm_attempts, 1, __ATOMIC_RELAXED);
                if (conn_connect(w, c, SRC_MEMBERS + c->idx / MEMBERS_PER_SRC) < 0) {
                        w->connecting--;
                        c->t_op = now + rejoin_delay_ns(w, c->rejoin_attempt);
                        w->rejoin_q[kept++] = c;
                }
        }
        w->n_rejoin_q = kept;
}

/* The join after a reconnect answered: the member is back. */
static void rejoin_done(Worker *w, Conn *c, const uint8_t *p, size_t n, uint64_t t_recv) {
        static const char marker[] = "\"message\": \"away ";
        const uint8_t *q = p, *end = p + n;
        uint64_t got = 0;

        while ((q = memmem(q, (size_t) (end - q), marker, sizeof(marker) - 1))) {
                got++;
                q += sizeof(marker) - 1;
        }
        c->state = ST_READY;
        c->rejoining = false;
        w->connecting--;
        hist_add(&w->shm->storm_lat, (t_recv - c->t_drop) / 1000);
        __atomic_add_fetch(&w->shm->storm_replayed, got, __ATOMIC_RELAXED);
        if (got >= w->p->away)
                __atomic_add_fetch(&w->shm->storm_caught_up, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&w->shm->storm_rejoined, 1, __ATOMIC_RELAXED);
}

/* Remembers the id of a message a member received, for `since`. */
static void note_last_id(Conn *c, const uint8_t *p, size_t n) {
        static const char key[] = "\"id\": \"";
        const uint8_t *q = memmem(p, n, key, sizeof(key) - 1), *end = p + n, *e;

        if (!q)
                return;
        q += sizeof(key) - 1;
        e = memchr(q, '"', (size_t) (end - q));
        if (!e || e == q || (size_t) (e - q) >= LAST_ID_MAX)
                return;
        memcpy(c->last_id, q, (size_t) (e - q));
        c->last_id[e - q] = 0;
}

/* A connection ended, by the server, the network or a protocol error.
 * Every path that drops a connection comes here once. */
static void conn_end(Worker *w, Conn *c, int close_slot) {
        uint8_t kind = c->kind, state = c->state;
        StepStats *s = cur_stats(w);

        if (state == ST_DEAD)
                return;
        conn_release(c);
        switch (kind) {
        case CK_MEMBER:
                if (w->p->rejoin && (state == ST_READY || c->rejoining)) {
                        rejoin_later(w, c, state == ST_READY, close_slot);
                        break;
                }
                if (state == ST_READY) {
                        s->closes[close_slot]++;
                        __atomic_add_fetch(&w->shm->conns_lost, 1, __ATOMIC_RELAXED);
                } else {
                        w->connecting--;
                        __atomic_add_fetch(&w->shm->conns_failed, 1, __ATOMIC_RELAXED);
                        s->closes[close_slot]++;
                        member_pump(w);
                }
                break;
        case CK_SETUP_LOGIN:
                w->logins_in_flight--;
                w->shm->setup_logins_failed++;
                logins_pump(w);
                break;
        case CK_LOGIN:
        case CK_RECONNECT: {
                StepStats *ss = &w->shm->steps[c->step];
                ss->ops_failed++;
                if (kind == CK_LOGIN)
                        ss->http[c->right][HTTP_FAILED]++;
                else
                        ss->closes[close_slot]++;
                uint32_t slot = c->idx;
                bool right = c->right;
                free(c);
                w->slots_in_flight--;
                if (w->step_active && now_ns() < w->cmd.t_end_ns)
                        slot_start(w, kind, slot, right);
                maybe_ack_step(w);
                break;
        }
        }
}

/* A login or reconnect attempt finished as it should: start the next one
 * while the step lasts. */
static void slot_done(Worker *w, Conn *c) {
        ConnKind kind = c->kind;
        uint32_t slot = c->idx;
        bool right = c->right;

        conn_release(c);
        free(c);
        w->slots_in_flight--;
        if (w->step_active && now_ns() < w->cmd.t_end_ns)
                slot_start(w, kind, slot, right);
        maybe_ack_step(w);
}

static void slot_start(Worker *w, ConnKind kind, uint32_t slot, bool right) {
        Conn *c = calloc(1, sizeof(Conn));
        uint32_t src;
        int r;

        if (!c)
                return;
        *c = (Conn) {
                .fd = -1,
                .kind = kind,
                .idx = slot,
                .right = right,
                .step = w->cmd.step,
        };
        if (kind == CK_LOGIN) {
                c->user = w->p->login_user_base + slot;
                c->target = slot % w->p->n_targets;
                src = SRC_STORM + slot;
        } else {
                c->user = slot % w->p->n_member_users;
                c->target = slot % w->p->n_targets;
                src = SRC_RECONNECT + (uint32_t) ((w->reconnects++ * w->p->n_workers + w->id) % 4000);
        }
        w->slots_in_flight++;
        r = conn_connect(w, c, src);
        if (r < 0) {
                w->shm->steps[c->step].ops_failed++;
                if (kind == CK_LOGIN)
                        w->shm->steps[c->step].http[right][HTTP_FAILED]++;
                free(c);
                w->slots_in_flight--;
                /* No retry loop here: the next event or tick retries. */
        }
}

static void member_pump(Worker *w) {
        const Params *p = w->p;

        while (w->next_member < w->members_goal && w->connecting < p->connect_concurrency) {
                uint64_t g = w->next_member;
                size_t k = (size_t) (g / p->n_workers);
                Conn *c = &w->members[k];
                int r;

                w->next_member += p->n_workers;
                *c = (Conn) {
                        .fd = -1,
                        .kind = CK_MEMBER,
                        .idx = (uint32_t) g,
                        .user = (uint32_t) (g % p->n_member_users),
                        .target = (uint32_t) (g % p->n_targets),
                };
                w->connecting++;
                r = conn_connect(w, c, SRC_MEMBERS + (uint32_t) (g / MEMBERS_PER_SRC));
                if (r < 0) {
                        w->connecting--;
                        c->state = ST_DEAD;
                        __atomic_add_fetch(&w->shm->conns_failed, 1, __ATOMIC_RELAXED);
                }
        }
        if (w->connect_owed && w->next_member >= w->members_goal && w->connecting == 0) {
                w->connect_owed = false;
                ack(w, CMD_CONNECT);
        }
}

static void logins_pump(Worker *w) {
        const Params *p = w->p;

        while (w->next_login_user < p->n_users && w->logins_in_flight < SETUP_LOGINS_IN_FLIGHT) {
                Conn *c = calloc(1, sizeof(Conn));
                uint32_t u = (uint32_t) w->next_login_user;

                w->next_login_user += p->n_workers;
                if (!c) {
                        w->shm->setup_logins_failed++;
                        continue;
                }
                *c = (Conn) { .fd = -1, .kind = CK_SETUP_LOGIN, .idx = u, .user = u, .right = true,
                              .target = u % p->n_targets };
                w->logins_in_flight++;
                if (conn_connect(w, c, SRC_SETUP + u % 1000) < 0) {
                        free(c);
                        w->logins_in_flight--;
                        w->shm->setup_logins_failed++;
                }
        }
        if (w->logins_owed && w->next_login_user >= p->n_users && w->logins_in_flight == 0) {
                w->logins_owed = false;
                ack(w, CMD_LOGIN_USERS);
        }
}

/* The step's messages are one schedule over all workers: message i goes
 * out at t0 + i / rate, from worker i % send_slots, so even a rate below
 * one message per step length per worker sends what it should. */
static uint64_t step_messages(const Worker *w) {
        double total;
        uint64_t n;

        if (w->cmd.rate <= 0 || w->cmd.send_slots == 0 || w->n_senders == 0)
                return 0;
        total = ceil((double) (w->cmd.t_end_ns - w->cmd.t0_ns) * w->cmd.rate / 1e9);
        n = (uint64_t) total;
        return n > w->cmd.send_slot ? (n - w->cmd.send_slot + w->cmd.send_slots - 1) / w->cmd.send_slots : 0;
}

static uint64_t message_due(const Worker *w, uint64_t k) {
        uint64_t i = w->cmd.send_slot + k * w->cmd.send_slots;
        return w->cmd.t0_ns + (uint64_t) ((double) i * 1e9 / w->cmd.rate);
}

static void maybe_ack_step(Worker *w) {
        if (!w->step_active || now_ns() < w->cmd.t_end_ns || w->slots_in_flight > 0)
                return;
        if (w->step_sent < step_messages(w))
                return;
        w->step_active = false;
        ack(w, CMD_STEP);
}

/* ---- sending chat messages ---- */

static void send_chat(Worker *w) {
        const Params *p = w->p;
        StepStats *s = &w->shm->steps[w->cmd.step];
        char text[8192];
        Conn *c = NULL;
        size_t tries, n;
        uint64_t t;

        for (tries = 0; tries < w->n_senders; tries++) {
                c = w->senders[w->rr++ % w->n_senders];
                if (c->state == ST_READY)
                        break;
                c = NULL;
        }
        if (!c) {
                w->step_sent++;         /* nobody left to send: the step ends as planned */
                return;
        }
        t = now_ns();
        /* The text tells the receiver the step and the send time (the
         * clock is this machine's CLOCK_MONOTONIC, shared by all workers). */
        n = (size_t) snprintf(text, sizeof(text),
                              "{\"command\": \"send\", \"room\": \"%s\", \"message\": \"s%u t%" PRIu64 " c%u q%" PRIu64 " ",
                              p->room_ids[c->idx / p->members], w->cmd.step, t, c->idx, w->step_sent);
        size_t msg_start = (size_t) (strstr(text, "\"message\": \"") - text) + 12;
        while (n - msg_start < p->message_bytes && n < sizeof(text) - 4) {
                text[n] = (char) ('a' + n % 26);
                n++;
        }
        text[n++] = '"';
        text[n++] = '}';
        w->step_sent++;
        if (ws_send(w, c, WS_OP_TEXT, text, n) < 0) {
                conn_end(w, c, CLOSE_ABRUPT);
                return;
        }
        s->sent++;
        s->expected += p->members;
}

/* When login slot j starts. Slots that all began together would also
 * all end together (a wrong password takes the fail delay): spread over
 * the delay, they arrive like independent people. */
static uint64_t slot_at(const Worker *w, uint32_t j) {
        uint32_t r = w->cmd.right_slots, n = w->cmd.wrong_slots;
        uint64_t spread = w->cmd.stagger_ns < SLOT_RIGHT_SPREAD_NS ? w->cmd.stagger_ns : SLOT_RIGHT_SPREAD_NS;

        if (j < r)
                return w->cmd.t0_ns + spread * j / r;
        return w->cmd.t0_ns + w->cmd.stagger_ns * (j - r) / n;
}

static uint64_t next_slot_at(const Worker *w) {
        uint64_t at = UINT64_MAX;
        uint32_t r = w->cmd.right_slots, total = r + w->cmd.wrong_slots;

        if (w->next_right < r)
                at = slot_at(w, w->next_right);
        if (w->next_wrong < total && slot_at(w, w->next_wrong) < at)
                at = slot_at(w, w->next_wrong);
        return at;
}

static void step_tick(Worker *w) {
        uint64_t now = now_ns(), total;
        uint32_t W = w->p->n_workers, r = w->cmd.right_slots, all = r + w->cmd.wrong_slots;

        if (!w->step_active || now < w->cmd.t0_ns)
                return;
        if (!w->slots_started) {
                w->slots_started = true;
                w->next_right = w->id;
                w->next_wrong = r + (w->id + W - r % W) % W;
                for (uint32_t j = w->id; j < w->cmd.reconnect_slots; j += W)
                        slot_start(w, CK_RECONNECT, j, false);
        }
        while (w->next_right < r && slot_at(w, w->next_right) <= now && now < w->cmd.t_end_ns) {
                slot_start(w, CK_LOGIN, w->next_right, true);
                w->next_right += W;
        }
        while (w->next_wrong < all && slot_at(w, w->next_wrong) <= now && now < w->cmd.t_end_ns) {
                slot_start(w, CK_LOGIN, w->next_wrong, false);
                w->next_wrong += W;
        }
        total = step_messages(w);
        while (w->step_sent < total && message_due(w, w->step_sent) <= now)
                send_chat(w);
        maybe_ack_step(w);
}

static int next_timeout_ms(Worker *w, struct timespec *ts) {
        uint64_t now = now_ns(), at;

        if (w->n_rejoin_q > 0) {
                ts->tv_sec = 0;
                ts->tv_nsec = (long) REJOIN_SCAN_NS;
                return 0;
        }
        if (!w->step_active)
                return -1;
        if (now < w->cmd.t0_ns)
                at = w->cmd.t0_ns;
        else if (w->step_sent < step_messages(w))
                at = message_due(w, w->step_sent);
        else if (now < w->cmd.t_end_ns)
                at = w->cmd.t_end_ns;
        else
                at = now + 10 * 1000000ULL;     /* waiting for slots: re-check now and then */
        if (now >= w->cmd.t0_ns && now < w->cmd.t_end_ns && next_slot_at(w) < at)
                at = next_slot_at(w);
        at = at > now ? at - now : 0;
        ts->tv_sec = (time_t) (at / 1000000000ULL);
        ts->tv_nsec = (long) (at % 1000000000ULL);
        return 0;
}

/* ---- receiving ---- */

static int parse_u64(const uint8_t **pp, const uint8_t *end, uint64_t *ret) {
        const uint8_t *p = *pp;
        uint64_t v = 0;

        if (p >= end || *p < '0' || *p > '9')
                return -EINVAL;
        while (p < end && *p >= '0' && *p <= '9')
                v = v * 10 + (uint64_t) (*p++ - '0');
        *pp = p;
        *ret = v;
        return 0;
}

static bool has_prefix(const uint8_t *p, size_t n, const char *prefix) {
        size_t l = strlen(prefix);
        return n >= l && memcmp(p, prefix, l) == 0;
}

static void on_chat_message(Worker *w, const uint8_t *p, size_t n, uint64_t t_recv) {
        static const char key[] = "\"message\": \"s";
        const uint8_t *m = memmem(p, n, key, sizeof(key) - 1), *end = p + n;
        uint64_t step, t_sent;

        if (!m)
                goto other;
        m += sizeof(key) - 1;
        if (parse_u64(&m, end, &step) < 0 || step >= SETUP_STEP || end - m < 2 || m[0] != ' ' || m[1] != 't')
                goto other;
        m += 2;
        if (parse_u64(&m, end, &t_sent) < 0)
                goto other;

        StepStats *s = &w->shm->steps[step];
        s->received++;
        if (t_recv > s->last_recv_ns)
                s->last_recv_ns = t_recv;
        hist_add(&s->lat, t_recv > t_sent ? (t_recv - t_sent) / 1000 : 0);
        return;
other:
        cur_stats(w)->other_frames++;
}

static int error_code(const uint8_t *p, size_t n) {
        static const char key[] = "{\"error\": \"";
        const uint8_t *c = p + sizeof(key) - 1;
        size_t left = n - (sizeof(key) - 1);

        for (int i = 0; i < ERR_OTHER; i++) {
                size_t l = strlen(error_names[i]);
                if (left > l && memcmp(c, error_names[i], l) == 0 && c[l] == '"')
                        return i;
        }
        return ERR_OTHER;
}

/* One complete text message. Returns 0, or -1 when c is gone. */
static int on_text(Worker *w, Conn *c, const uint8_t *p, size_t n, uint64_t t_recv) {
        if (c->state == ST_READY && has_prefix(p, n, "{\"msg_type\": 0,")) {
                if (w->p->rejoin)
                        note_last_id(c, p, n);
                on_chat_message(w, p, n, t_recv);
                return 0;
        }
        if (has_prefix(p, n, "{\"error\": \"")) {
                int e = error_code(p, n);
                StepStats *s = cur_stats(w);

                s->errors[e]++;
                /* A refused send was never accepted: nobody is owed its
                 * deliveries (it is counted as refused, not lost). The
                 * refusal comes within a moment, so in the step it was
                 * sent in, save at a step's very start. */
                if (e == ERR_RATE_LIMITED && c->state == ST_READY && s->expected >= w->p->members)
                        s->expected -= w->p->members;
                if (c->state == ST_READY)
                        return 0;
                /* Refused before it was ready (session, join): a failure. */
                conn_end(w, c, CLOSE_OTHER);
                return -1;
        }
        switch (c->state) {
        case ST_WAIT_ROOMS:
                if (!has_prefix(p, n, "{\"rooms\": "))
                        break;
                if (c->kind == CK_RECONNECT) {
                        if (w->cmd.reconnect_join && w->p->n_rooms > 0) {
                                if (send_join(w, c, w->p->room_ids[c->idx % w->p->n_rooms]) < 0) {
                                        conn_end(w, c, CLOSE_ABRUPT);
                                        return -1;
                                }
                                return 0;
                        }
                        goto reconnect_done;
                }
                if (w->p->n_rooms > 0) {
                        if (send_join(w, c, w->p->room_ids[c->idx / w->p->members]) < 0) {
                                conn_end(w, c, CLOSE_ABRUPT);
                                return -1;
                        }
                } else
                        member_ready(w, c);
                return 0;
        case ST_JOINING:
                if (!has_prefix(p, n, "{\"join\": \""))
                        break;
                if (c->kind == CK_RECONNECT)
                        goto reconnect_done;
                if (c->rejoining)
                        rejoin_done(w, c, p, n, t_recv);
                else
                        member_ready(w, c);
                return 0;
        default:
                break;
        }
        cur_stats(w)->other_frames++;
        return 0;

reconnect_done: {
        StepStats *s = &w->shm->steps[c->step];
        uint8_t close_frame[WS_FRAME_HEAD_MAX + 2];
        const uint8_t code[2] = { 1000 >> 8, 1000 & 0xFF };

        s->ops_ok++;
        hist_add(&s->op_lat[0], (t_recv - c->t_start) / 1000);
        /* Like a browser tab that closes: a close frame, then the socket. */
        (void) !write(c->fd, close_frame, ws_frame_build(close_frame, WS_OP_CLOSE, code, 2, rnd32(w)));
        slot_done(w, c);
        return -1;
}
}

static int close_slot(const uint8_t *p, size_t n) {
        unsigned code;

        if (n < 2)
                return CLOSE_OTHER;
        code = (unsigned) p[0] << 8 | p[1];
        switch (code) {
        case 1000: return CLOSE_1000;
        case 1001: return CLOSE_1001;
        case 1008: return CLOSE_1008;
        case 1009: return CLOSE_1009;
        case 1011: return CLOSE_1011;
        case 1013: return CLOSE_1013;
        case 4001: return CLOSE_4001;
        default: return CLOSE_OTHER;
        }
}

/* One frame. Returns 0, or -1 when c is gone. */
static int on_frame(Worker *w, Conn *c, const WsFrame *f, uint64_t t_recv) {
        switch (f->opcode) {
        case WS_OP_TEXT:
        case WS_OP_BINARY:
                if (f->fin)
                        return f->opcode == WS_OP_TEXT ? on_text(w, c, f->payload, f->len, t_recv) : 0;
                free(c->frag);
                c->frag = malloc(f->len ? f->len : 1);
                if (!c->frag)
                        goto fail;
                memcpy(c->frag, f->payload, f->len);
                c->frag_len = (uint32_t) f->len;
                c->frag_op = (uint8_t) f->opcode;
                return 0;
        case WS_OP_CONT: {
                if (!c->frag || c->frag_len + f->len > FRAME_MAX)
                        goto fail;
                uint8_t *g = realloc(c->frag, c->frag_len + f->len);
                if (!g)
                        goto fail;
                memcpy(g + c->frag_len, f->payload, f->len);
                c->frag = g;
                c->frag_len += (uint32_t) f->len;
                if (!f->fin)
                        return 0;
                uint8_t *whole = c->frag;
                size_t len = c->frag_len;
                c->frag = NULL;
                c->frag_len = 0;
                int r = c->frag_op == WS_OP_TEXT ? on_text(w, c, whole, len, t_recv) : 0;
                free(whole);
                return r;
        }
        case WS_OP_PING:
                if (ws_send(w, c, WS_OP_PONG, f->payload, f->len) < 0)
                        goto fail;
                return 0;
        case WS_OP_PONG:
                if (c->probing) {
                        c->probing = false;
                        __atomic_add_fetch(&w->shm->probes_answered, 1, __ATOMIC_RELAXED);
                }
                return 0;
        case WS_OP_CLOSE:
                conn_end(w, c, close_slot(f->payload, f->len));
                return -1;
        default:
                goto fail;
        }
fail:
        conn_end(w, c, CLOSE_ABRUPT);
        return -1;
}

/* An HTTP answer (login form, login result, upgrade). Returns bytes
 * consumed (0: incomplete), or -1 when c is gone. */
static ssize_t on_http(Worker *w, Conn *c, const uint8_t *buf, size_t n, uint64_t t_recv) {
        HttpHead h;
        int r = http_head_parse((const char *) buf, n, &h);
        size_t total;

        if (r == 0)
                return 0;
        if (r < 0)
                goto fail;
        total = h.head_len + (c->state == ST_UPGRADE || h.content_length < 0 ? 0 : (size_t) h.content_length);
        if (n < total)
                return 0;

        if (c->state == ST_UPGRADE) {
                size_t len;
                const char *acc = http_head_find((const char *) buf, h.head_len, "sec-websocket-accept", NULL, &len);
                if (h.status != 101 || !acc || len != WS_ACCEPT_LEN || memcmp(acc, w->ws_accept, len) != 0)
                        goto fail;
                c->state = ST_WAIT_ROOMS;
                return (ssize_t) total;
        }
        if (c->state == ST_GET_LOGIN) {
                if (h.status != 200 ||
                    http_set_cookie_value((const char *) buf, h.head_len, "multichat_csrf", c->csrf, sizeof(c->csrf)) <= 0)
                        goto fail;
                /* The browser posts the form on the same keep-alive connection. */
                if (send_post_login(w, c) < 0)
                        goto fail;
                return (ssize_t) total;
        }

        /* The answer to POST /login. */
        char session[COOKIE_MAX - 20];
        bool got = h.status == 303 &&
                   http_set_cookie_value((const char *) buf, h.head_len, "multichat_session", session, sizeof(session)) > 0;
        if (c->kind == CK_SETUP_LOGIN) {
                if (!got) {
                        bool again = h.status == 401 && !c->right_retried;
                        fprintf(stderr, "mc-loadgen: login of %s%0*u answered HTTP %d%s\n", w->p->user_prefix,
                                (int) w->p->user_width, c->user, h.status,
                                again ? "; trying once more (tests/bench/README.md, finding 7)" : "");
                        /* A right password refused now and then by a fresh
                         * daemon (finding 7): counted, then tried once more,
                         * so that one refusal does not void a long run. */
                        if (again) {
                                conn_release(c);
                                c->right_retried = true;
                                __atomic_add_fetch(&w->shm->setup_login_retries, 1, __ATOMIC_RELAXED);
                                if (conn_connect(w, c, SRC_SETUP + c->user % 1000) == 0)
                                        return -1;
                                c->state = ST_GET_LOGIN;        /* so that conn_end counts it below */
                        }
                        goto fail;
                }
                snprintf(w->cookies + (size_t) c->user * COOKIE_MAX, COOKIE_MAX, "multichat_session=%s", session);
                conn_release(c);
                free(c);
                w->logins_in_flight--;
                logins_pump(w);
                return -1;
        }
        StepStats *s = &w->shm->steps[c->step];
        int cls = h.status == 303 ? HTTP_303 : h.status == 401 ? HTTP_401 : h.status == 403 ? HTTP_403 :
                  h.status == 429 ? HTTP_429 : HTTP_OTHER;
        s->http[c->right][cls]++;
        if ((c->right && got) || (!c->right && h.status == 401)) {
                s->ops_ok++;
                hist_add(&s->op_lat[c->right], (t_recv - c->t_op) / 1000);
        } else
                s->ops_failed++;
        slot_done(w, c);
        return -1;
fail:
        conn_end(w, c, CLOSE_OTHER);
        return -1;
}

/* Processes what buf holds; returns bytes consumed, or -1 when c is gone. */
static ssize_t conn_process(Worker *w, Conn *c, const uint8_t *buf, size_t n, uint64_t t_recv) {
        size_t off = 0;

        while (off < n) {
                if (c->state == ST_GET_LOGIN || c->state == ST_POST_LOGIN || c->state == ST_UPGRADE) {
                        ssize_t k = on_http(w, c, buf + off, n - off, t_recv);
                        if (k <= 0)
                                return k < 0 ? -1 : (ssize_t) off;
                        off += (size_t) k;
                        continue;
                }
                WsFrame f;
                int r = ws_frame_parse(buf + off, n - off, FRAME_MAX, &f);
                if (r == 0)
                        break;
                if (r < 0) {
                        conn_end(w, c, CLOSE_ABRUPT);
                        return -1;
                }
                off += f.frame_len;
                if (on_frame(w, c, &f, t_recv) < 0)
                        return -1;
        }
        return (ssize_t) off;
}

static void conn_on_readable(Worker *w, Conn *c) {
        size_t have = c->in_len;
        ssize_t n, used;
        uint64_t t;

        if (have)
                memcpy(w->scratch, c->in, have);
        n = read(c->fd, w->scratch + have, SCRATCH_SIZE - have);
        if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                conn_end(w, c, CLOSE_ABRUPT);
                return;
        }
        t = now_ns();
        have += (size_t) n;
        used = conn_process(w, c, w->scratch, have, t);
        if (used < 0)
                return;
        have -= (size_t) used;
        if (have == 0) {
                free(c->in);
                c->in = NULL;
                c->in_len = 0;
                return;
        }
        if (have > FRAME_MAX + 65536) {
                conn_end(w, c, CLOSE_ABRUPT);
                return;
        }
        uint8_t *in = realloc(c->in, have);
        if (!in) {
                conn_end(w, c, CLOSE_ABRUPT);
                return;
        }
        memcpy(in, w->scratch + used, have);
        c->in = in;
        c->in_len = (uint32_t) have;
}

static void conn_on_event(Worker *w, Conn *c, uint32_t events) {
        if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
                        conn_end(w, c, CLOSE_ABRUPT);
                        return;
                }
                conn_set_out(w, c, false);
                if ((c->kind == CK_MEMBER || c->kind == CK_RECONNECT ? send_upgrade(w, c) : send_get_login(w, c)) < 0)
                        conn_end(w, c, CLOSE_ABRUPT);
                return;
        }
        if (events & EPOLLOUT) {
                if (conn_flush(w, c) < 0) {
                        conn_end(w, c, CLOSE_ABRUPT);
                        return;
                }
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_on_readable(w, c);
}

/* ---- commands ---- */

/* Is every member this worker opened still there, and served? A ping
 * each: the daemon's event loop must read it and answer. */
static void probe_members(Worker *w) {
        static const char payload[] = "mc-probe";

        for (size_t k = 0; k < w->n_members_cap; k++) {
                Conn *c = &w->members[k];
                if (c->kind != CK_MEMBER || c->state != ST_READY || c->probing)
                        continue;
                if (ws_send(w, c, WS_OP_PING, payload, sizeof(payload) - 1) < 0) {
                        conn_end(w, c, CLOSE_ABRUPT);
                        continue;
                }
                c->probing = true;
                __atomic_add_fetch(&w->shm->probes_sent, 1, __ATOMIC_RELAXED);
        }
}

static void on_command(Worker *w) {
        Cmd cmd;
        ssize_t n = read(w->cmd_fd, &cmd, sizeof(cmd));

        if (n == 0) {
                w->quit = true;         /* the master is gone */
                return;
        }
        if (n != sizeof(cmd))
                return;
        switch (cmd.op) {
        case CMD_LOGIN_USERS:
                w->next_login_user = w->id;
                w->logins_owed = true;
                logins_pump(w);
                break;
        case CMD_CONNECT:
                w->members_goal = cmd.n;
                if (w->next_member < w->id)
                        w->next_member = w->id;
                w->connect_owed = true;
                member_pump(w);
                break;
        case CMD_STEP:
                w->cmd = cmd;
                w->step_active = true;
                w->slots_started = false;
                w->step_sent = 0;
                break;
        case CMD_PROBE:
                probe_members(w);
                ack(w, CMD_PROBE);
                break;
        case CMD_QUIT:
                w->quit = true;
                break;
        }
}

int worker_run(const Params *p, unsigned id, int cmd_fd, int ack_fd, WorkerShm *shm, char *cookies) {
        struct epoll_event evs[1024];
        int cmd_marker;
        Worker w = {
                .p = p,
                .id = id,
                .cmd_fd = cmd_fd,
                .ack_fd = ack_fd,
                .shm = shm,
                .cookies = cookies,
                .rng = 0x9E3779B97F4A7C15ULL * (id + 1) ^ now_ns(),
                .next_member = id,
        };

        shm->pid = getpid();
        ws_make_key(w.rng, w.ws_key, w.ws_accept);
        w.n_members_cap = p->n_members / p->n_workers + 1;
        w.members = calloc(w.n_members_cap, sizeof(Conn));
        w.senders = calloc(w.n_members_cap, sizeof(Conn *));
        w.rejoin_q = calloc(w.n_members_cap, sizeof(Conn *));
        w.scratch = malloc(SCRATCH_SIZE);
        w.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (!w.members || !w.senders || !w.rejoin_q || !w.scratch || w.epfd < 0)
                return -ENOMEM;
        for (size_t k = 0; k < w.n_members_cap; k++)
                w.members[k].fd = -1;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cmd_marker };
        if (epoll_ctl(w.epfd, EPOLL_CTL_ADD, cmd_fd, &ev) < 0)
                return -errno;

        while (!w.quit) {
                struct timespec ts;
                int n = epoll_pwait2(w.epfd, evs, (int) (sizeof(evs) / sizeof(evs[0])),
                                     next_timeout_ms(&w, &ts) < 0 ? NULL : &ts, NULL);
                if (n < 0 && errno != EINTR)
                        return -errno;
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.ptr == &cmd_marker)
                                on_command(&w);
                        else
                                conn_on_event(&w, evs[i].data.ptr, evs[i].events);
                }
                step_tick(&w);
                rejoin_pump(&w);
        }
        return 0;
}
