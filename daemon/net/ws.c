/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* WebSocket connections and their hub: receive, reassemble, rate limit, bounded write queues, batched writes, keep-alive. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <libwebsockets.h>

#include "auth/auth-client.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/utf8.h"
#include "net/services.h"
#include "net/ws-rx.h"
#include "wire/protocol.h"
#include "redis/redis.h"
#include "store/session.h"
#include "basic/time-util.h"
#include "net/ws.h"

/* Over-limit commands tolerated (they get RATE_LIMITED) before we call it
 * sustained abuse and close with 1008. */
#define WS_STRIKES_MAX 200
/* Longest and shortest time between keep-alive sweeps. */
#define WS_SWEEP_MAX_USEC (5 * USEC_PER_SEC)
#define WS_SWEEP_MIN_USEC (250 * USEC_PER_MSEC)

struct WsHub {
        const WebServices *services;
        Conn *conns;                  /* every live connection, newest first */
        unsigned n_conns;
        /* Connections that got frames this loop iteration; written by
         * write_source at its end. Each holds a reference. */
        Conn *write_list;
        sd_event_source *write_source;
        sd_event_source *keepalive_timer;
        Frame *ping_frame;
        /* Scratch space for writing several queued frames at once; one
         * thread, so one buffer serves every connection. */
        unsigned char write_buffer[WS_BATCH_MAX];
};

static const WebSettings *conn_settings(const Conn *c) {
        return &c->hub->services->settings;
}

static void ws_conn_drop_queue(Conn *c) {
        while (c->queue_len > 0) {
                frame_unref(c->queue[c->queue_head]);
                c->queue_head = (c->queue_head + 1) % c->queue_allocated;
                c->queue_len--;
        }
}

/* Ends the connection now and with a reset: bytes the client did not take
 * are thrown away instead of left to the kernel, which would go on trying
 * to deliver them, holding the buffer, for minutes. lws 4.1 would not let
 * go either: with output still buffered it waits to flush before closing.
 * Dissolving the association (connect() to AF_UNSPEC) resets the
 * connection and empties the send queue while the fd stays lws's; lws's
 * next write fails and it closes. */
static void ws_conn_abort(Conn *c) {
        struct sockaddr unspec = { .sa_family = AF_UNSPEC };
        int fd = lws_get_socket_fd(c->wsi);

        if (fd >= 0)
                (void) connect(fd, &unspec, sizeof unspec);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

/* Once we close, lws may hang up before the peer took what the kernel
 * still holds (after our close frame, or on a protocol error): closing the
 * fd leaves an orphan in FIN-WAIT-1 that probes a zero window for minutes,
 * holding the whole send buffer, when the peer never reads again. With a
 * user timeout the kernel gives up on it after the grace, whoever closes
 * the fd; a peer that keeps reading acknowledges, and is not cut. */
static void ws_conn_bound_close(Conn *c) {
        unsigned ms = WS_CLOSE_GRACE_USEC / USEC_PER_MSEC;
        int fd = lws_get_socket_fd(c->wsi);

        if (fd >= 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

static void ws_conn_send_error(Conn *c, ProtocolError e, const char *ref) {
        if (e > PROTOCOL_OK && e < _PROTOCOL_ERROR_MAX)
                c->hub->services->stats->refusals[e]++;
        ws_conn_send_json(c, protocol_format_error(e, ref));
}

static void ws_conn_drop_held(Conn *c) {
        for (unsigned i = 0; i < c->n_held; i++)
                free(c->held[i].data);
        c->held = mfree(c->held);
        c->n_held = 0;
}

static void ws_conn_free(Conn *c) {
        ws_conn_drop_queue(c);
        if (c->queue != c->queue_inline)
                free(c->queue);
        free(c->rx);
        ws_conn_drop_held(c);
        free(c);
}

Conn *ws_conn_ref(Conn *c) {
        c->n_ref++;
        return c;
}

Conn *ws_conn_unref(Conn *c) {
        if (c && --c->n_ref == 0)
                ws_conn_free(c);
        return NULL;
}

void ws_conn_close(Conn *c, uint16_t code, const char *reason) {
        if (c->state == CONN_CLOSED || c->close_requested)
                return;
        c->close_requested = true;
        (void) sd_event_now(c->hub->services->event, CLOCK_MONOTONIC, &c->close_usec);
        c->close_code = code;
        c->close_reason = reason ?: "";
        ws_conn_bound_close(c);
        lws_callback_on_writable(c->wsi);
}

/* The write happens at the end of this loop iteration (ws_write_scheduled),
 * not now: more frames for the same connection may follow from the same
 * Redis read, and they should share one send(). */
static void ws_conn_schedule_write(Conn *c) {
        WsHub *hub = c->hub;

        if (c->write_scheduled)
                return;
        c->write_scheduled = true;
        c->write_next = hub->write_list;
        hub->write_list = ws_conn_ref(c);
        (void) sd_event_source_set_enabled(hub->write_source, SD_EVENT_ONESHOT);
}

void ws_conn_send(Conn *c, Frame *f) {
        unsigned limit = conn_settings(c)->send_queue_frames;

        if (!ws_conn_is_open(c))
                return;
        if (c->queue_len >= limit) {
                log_info("Closing connection of %s (%s): %u frames queued, it reads too slowly.",
                         c->username, c->peer, c->queue_len);
                ws_conn_drop_queue(c);
                c->hub->services->stats->slow_readers_cut++;
                ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "too slow");
                return;
        }
        if (c->queue_allocated == 0) {
                c->queue = c->queue_inline;
                c->queue_allocated = WS_QUEUE_INLINE;
        } else if (c->queue_len == c->queue_allocated) {
                unsigned n = MIN(MAX(c->queue_allocated * 2, 8u), limit);
                Frame **q = malloc(n * sizeof *q);

                if (!q) {
                        ws_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                        return;
                }
                for (unsigned i = 0; i < c->queue_len; i++)
                        q[i] = c->queue[(c->queue_head + i) % c->queue_allocated];
                if (c->queue != c->queue_inline)
                        free(c->queue);
                c->queue = q;
                c->queue_head = 0;
                c->queue_allocated = n;
        }
        c->queue[(c->queue_head + c->queue_len) % c->queue_allocated] = frame_ref(f);
        if (c->queue_len++ == 0)
                ws_conn_schedule_write(c);
}

void ws_conn_send_json(Conn *c, char *json) {
        _cleanup_(frame_unrefp) Frame *f = NULL;

        if (frame_new_take(&f, json) < 0) {
                ws_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                return;
        }
        ws_conn_send(c, f);
}

/* lws 4.1 sends no close frame when SERVER_WRITEABLE returns -1 (it takes
 * that as a dead socket), whatever lws_close_reason() said. So we write
 * the close frame ourselves (opcode 8; lws 4.1 keeps value 4 of its write
 * types for it), and hang up one writeable callback later. */
#define WS_LWS_WRITE_CLOSE 4

static int ws_conn_write_close(Conn *c) {
        unsigned char buf[LWS_PRE + 2 + 123];   /* a close frame's payload is at most 125 bytes */
        size_t n = MIN(strlen(c->close_reason), (size_t) 123);

        if (c->close_sent)
                return -1;
        buf[LWS_PRE] = (unsigned char) (c->close_code >> 8);
        buf[LWS_PRE + 1] = (unsigned char) (c->close_code & 0xff);
        memcpy(buf + LWS_PRE + 2, c->close_reason, n);
        if (lws_write(c->wsi, buf + LWS_PRE, n + 2, (enum lws_write_protocol) WS_LWS_WRITE_CLOSE) < 0)
                return -1;
        c->close_sent = true;
        lws_callback_on_writable(c->wsi);
        return 0;
}

/* Writes queued frames until the queue is empty or the socket takes no
 * more. Every frame carries its own WebSocket header, so frames go out as
 * raw bytes (LWS_WRITE_HTTP passes them through), several in one send()
 * where they queued up. A short send leaves the rest with lws, which
 * finishes it when the socket is writable before anything else goes out;
 * only then do we ask for POLLOUT, so a connection that keeps up costs no
 * poll changes. */
static int ws_conn_write_queued(Conn *c) {
        while (c->queue_len > 0 && !lws_partial_buffered(c->wsi)) {
                Frame *f = c->queue[c->queue_head];
                unsigned char *p = (unsigned char *) frame_wire(f);
                size_t used = frame_wire_len(f);
                unsigned k = 1;

                while (k < c->queue_len) {
                        Frame *g = c->queue[(c->queue_head + k) % c->queue_allocated];

                        if (used + frame_wire_len(g) > WS_BATCH_MAX)
                                break;
                        if (k == 1) {
                                p = c->hub->write_buffer;
                                memcpy(p, frame_wire(f), frame_wire_len(f));
                        }
                        memcpy(p + used, frame_wire(g), frame_wire_len(g));
                        used += frame_wire_len(g);
                        k++;
                }
                if (lws_write(c->wsi, p, used, LWS_WRITE_HTTP) < 0)
                        return -1;
                for (unsigned i = 0; i < k; i++) {
                        frame_unref(c->queue[c->queue_head]);
                        c->queue_head = (c->queue_head + 1) % c->queue_allocated;
                }
                c->queue_len -= k;
        }
        if (c->queue_len > 0 || c->close_requested)
                lws_callback_on_writable(c->wsi);
        return 0;
}

int ws_conn_on_writeable(Conn *c) {
        if (ws_conn_write_queued(c) < 0)
                return -1;
        if (c->queue_len == 0 && c->close_requested && !lws_partial_buffered(c->wsi))
                return ws_conn_write_close(c);
        return 0;
}

/* RFC 6455 7.4: the codes a peer may send; 1004-1006 and 1015 are
 * reserved, 1016-2999 unassigned, 5000 and above undefined. */
static bool ws_close_code_is_valid(unsigned code) {
        return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

int ws_conn_on_peer_close(Conn *c, const void *in, size_t len) {
        const unsigned char *p = in;

        if (len == 0)
                return 0;
        if (len >= 2 && ws_close_code_is_valid((unsigned) p[0] << 8 | p[1])) {
                if (utf8_is_valid((const char *) p + 2, len - 2))
                        return 0;       /* lws echoes it */
                c->close_code = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
                c->close_reason = "invalid UTF-8";
        } else {
                c->close_code = LWS_CLOSE_STATUS_PROTOCOL_ERR;
                c->close_reason = "invalid close";
        }
        /* lws 4.1 would echo it, code and all; answer ours and hang up. */
        c->close_requested = true;
        ws_conn_bound_close(c);
        (void) sd_event_now(c->hub->services->event, CLOCK_MONOTONIC, &c->close_usec);
        (void) ws_conn_write_close(c);
        return -1;
}

void ws_hub_write_scheduled(WsHub *hub) {
        Conn *list = TAKE_PTR(hub->write_list);

        while (list) {
                Conn *c = list;

                list = c->write_next;
                c->write_next = NULL;
                c->write_scheduled = false;
                /* A failed send means a dead socket. */
                if (c->state != CONN_CLOSED && ws_conn_write_queued(c) < 0)
                        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
                ws_conn_unref(c);
        }
}

/* The session of an open connection ended (logout, session-max, Redis
 * lost it) while the logout event could not reach us: the connection ends
 * as a logout would end it. */
static void on_conn_refreshed(int r, const SessionData *d, void *userdata) {
        Conn *c = userdata;

        c->pending_session = NULL;
        if (r == -ENOENT && ws_conn_is_open(c)) {
                ws_conn_send_error(c, PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL);
                ws_conn_close(c, WS_CLOSE_LOGGED_OUT, "session ended");
        }
        ws_conn_unref(c);
}

void ws_hub_keepalive(WsHub *hub, uint64_t now) {
        const WebServices *s = hub->services;
        uint64_t quiet = s->settings.keepalive_usec;

        /* Dropping a connection takes it off the list (ws_conn_closed). */
        LIST_FOREACH_SAFE(conns, c, next, hub->conns) {
                if (c->state == CONN_CLOSED)
                        continue;
                /* A burst is over: back to the inline queue, so a quiet
                 * connection holds no allocation for it. */
                if (c->queue_len == 0 && c->queue != c->queue_inline && c->queue_allocated > 0) {
                        free(c->queue);
                        c->queue = c->queue_inline;
                        c->queue_allocated = WS_QUEUE_INLINE;
                        c->queue_head = 0;
                }
                /* Someone with the chat open is using their session: keep
                 * it from expiring as idle (session-max still ends it). */
                if (c->state == CONN_READY && !c->pending_session &&
                    now >= c->session_used_usec + s->settings.session_idle_usec / 4 &&
                    redis_is_connected(s->redis)) {
                        c->session_used_usec = now;
                        if (session_lookup(s->redis, c->session_id, s->settings.session_idle_usec,
                                           s->settings.session_max_usec, on_conn_refreshed, ws_conn_ref(c),
                                           &c->pending_session) < 0)
                                ws_conn_unref(c);
                }
                /* Now: an asynchronous kill waits for lws's next timer,
                 * which on a foreign loop may be a while. */
                if (c->close_requested && now >= c->close_usec + WS_CLOSE_GRACE_USEC) {
                        log_debug("Resetting connection of %s from %s: it took no close frame.", c->username, c->peer);
                        ws_conn_abort(c);
                } else if (now >= c->last_rx_usec + 2 * quiet) {
                        log_debug("Dropping connection of %s from %s: no answer to pings.", c->username, c->peer);
                        ws_conn_abort(c);
                } else if (now >= c->last_rx_usec + quiet && !c->ping_sent && ws_conn_is_open(c)) {
                        c->ping_sent = true;
                        ws_conn_send(c, hub->ping_frame);
                }
        }
}

/* Token bucket: rate_limit commands per second, bursts of rate_burst. */
static bool ws_conn_take_token(Conn *c) {
        const WebSettings *cfg = conn_settings(c);
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        c->tokens += (double) (now - c->tokens_usec) * cfg->rate_limit / 1e6;
        if (c->tokens > cfg->rate_burst)
                c->tokens = cfg->rate_burst;
        c->tokens_usec = now;
        if (c->tokens < 1.0)
                return false;
        c->tokens -= 1.0;
        return true;
}

static void ws_conn_dispatch(Conn *c, const char *data, size_t len) {
        Command cmd = {};
        ProtocolError e;

        if (!ws_conn_take_token(c)) {
                if (++c->strikes > WS_STRIKES_MAX) {
                        log_struct(LOG_WARNING, 0, MESSAGE_ID_RATE_LIMITED,
                                   LOG_FIELDS({ "USER", c->username }, { "REMOTE_ADDR", c->peer }),
                                   "Closing connection of %s from %s: sustained command flood.",
                                   c->username, c->peer);
                        ws_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit");
                        return;
                }
                (void) protocol_parse_command(data, len, conn_settings(c)->max_message_bytes, &cmd);
                ws_conn_send_error(c, PROTOCOL_ERROR_RATE_LIMITED, cmd.has_ref ? cmd.ref : NULL);
                command_done(&cmd);
                return;
        }
        if (c->strikes > 0)
                c->strikes--;

        e = protocol_parse_command(data, len, conn_settings(c)->max_message_bytes, &cmd);
        if (e != PROTOCOL_OK)
                ws_conn_send_error(c, e, cmd.has_ref ? cmd.ref : NULL);
        else
                c->hub->services->hooks->conn_command(c->hub->services->userdata, c, &cmd);
        command_done(&cmd);
}

static void ws_conn_hold(Conn *c, const char *data, size_t len) {
        char *copy;

        if (c->n_held >= WS_HELD_COMMANDS_MAX) {
                ws_conn_send_error(c, PROTOCOL_ERROR_RATE_LIMITED, NULL);
                return;
        }
        if (!c->held) {
                c->held = calloc(WS_HELD_COMMANDS_MAX, sizeof *c->held);
                if (!c->held) {
                        ws_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                        return;
                }
        }
        copy = malloc(len + 1);
        if (!copy) {
                ws_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                return;
        }
        memcpy(copy, data, len);
        copy[len] = 0;
        c->held[c->n_held++] = (HeldCommand) { copy, len };
}

static size_t ws_conn_rx_limit(Conn *c) {
        /* A message of max_message_bytes may grow sixfold as JSON escapes. */
        return MIN(conn_settings(c)->max_message_bytes * 6 + 4096, (size_t) PROTOCOL_COMMAND_MAX);
}

static void ws_conn_heard_from(Conn *c) {
        (void) sd_event_now(c->hub->services->event, CLOCK_MONOTONIC, &c->last_rx_usec);
        c->ping_sent = false;
}

void ws_conn_on_pong(Conn *c) {
        ws_conn_heard_from(c);
}

static void ws_conn_on_message(Conn *c, const char *data, size_t len) {
        if (!ws_conn_is_open(c))
                return;
        if (c->rx_binary)
                ws_conn_send_error(c, PROTOCOL_ERROR_BAD_REQUEST, NULL);
        else if (c->state == CONN_VALIDATING)
                ws_conn_hold(c, data, len);
        else
                ws_conn_dispatch(c, data, len);
}

/* A message that arrives in one piece (most commands) is handled straight
 * from lws's buffer; longer ones are put together in c->rx, which is given
 * back after each message, so an idle connection holds none. */
int ws_conn_on_receive(Conn *c, const void *in, size_t len) {
        struct lws *wsi = c->wsi;
        const char *msg;
        size_t n;
        int r;

        ws_conn_heard_from(c);

        if (lws_is_first_fragment(wsi)) {
                c->rx = mfree(c->rx);
                c->rx_len = 0;
                c->rx_binary = lws_frame_is_binary(wsi);
        }
        r = ws_reassemble(&c->rx, &c->rx_len, in, len,
                          lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0,
                          ws_conn_rx_limit(c), &msg, &n);
        if (r == -EMSGSIZE)
                lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *) "too large", 9);
        if (r <= 0)
                return r < 0 ? -1 : 0;

        ws_conn_on_message(c, msg, n);
        c->rx = mfree(c->rx);
        c->rx_len = 0;
        return 0;
}

static void ws_conn_become_ready(Conn *c) {
        const WebServices *s = c->hub->services;

        c->state = CONN_READY;
        log_debug("WebSocket of %s from %s ready (staff: %s).", c->username, c->peer, c->staff ? "yes" : "no");
        if (s->hooks->conn_ready(s->userdata, c) < 0) {
                ws_conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                return;
        }
        for (unsigned i = 0; i < c->n_held && ws_conn_is_open(c); i++)
                ws_conn_dispatch(c, c->held[i].data, c->held[i].len);
        ws_conn_drop_held(c);
}

static void on_conn_staff_checked(const AuthResult *res, void *userdata) {
        Conn *c = userdata;

        c->pending_auth = auth_request_cancel(c->pending_auth);
        if (c->state != CONN_CLOSED) {
                if (res->result == -ENOENT || res->result == -EPERM) {
                        ws_conn_send_error(c, PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL);
                        ws_conn_close(c, WS_CLOSE_LOGGED_OUT, "account gone");
                } else {
                        /* A busy or unreachable helper says nothing about
                         * the groups: the flag from login stands. */
                        if (res->result < 0)
                                log_warning_errno(res->result, "Could not re-check staff membership of %s, "
                                                  "keeping the flag from login: %m", c->username);
                        else
                                c->staff = res->staff;
                        ws_conn_become_ready(c);
                }
        }
        ws_conn_unref(c);
}

static void on_conn_session(int r, const SessionData *d, void *userdata) {
        Conn *c = userdata;

        c->pending_session = NULL;
        if (c->state == CONN_CLOSED)
                goto out;

        if (r == -ENOENT) {
                ws_conn_send_error(c, PROTOCOL_ERROR_USER_HAS_TO_LOGIN, NULL);
                ws_conn_close(c, WS_CLOSE_LOGGED_OUT, "not logged in");
                goto out;
        }
        if (r < 0) {
                ws_conn_send_error(c, PROTOCOL_ERROR_UNAVAILABLE, NULL);
                ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "unavailable");
                goto out;
        }

        snprintf(c->username, sizeof c->username, "%s", d->user);
        c->staff = d->staff;
        /* Group membership may have changed since login: ask again. */
        r = auth_client_lookup(c->hub->services->auth, c->username, NULL, on_conn_staff_checked,
                               ws_conn_ref(c), &c->pending_auth);
        if (r < 0) {
                ws_conn_unref(c);
                log_warning_errno(r, "Could not re-check staff membership of %s, "
                                  "keeping the flag from login: %m", c->username);
                ws_conn_become_ready(c);
        }
out:
        ws_conn_unref(c);
}

int ws_conn_new(Conn **ret, WsHub *hub, struct lws *wsi, const char *session_id, const char *peer) {
        const WebServices *s = hub->services;
        Conn *c;
        int r;

        if (strlen(session_id) >= sizeof c->session_id)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->hub = hub;
        c->wsi = wsi;
        c->state = CONN_VALIDATING;
        strcpy(c->session_id, session_id);
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        c->since_usec = now_usec(CLOCK_REALTIME);
        c->tokens = s->settings.rate_burst;
        c->tokens_usec = now_usec(CLOCK_MONOTONIC);
        ws_conn_heard_from(c);
        c->session_used_usec = c->last_rx_usec;

        r = session_lookup(s->redis, session_id, s->settings.session_idle_usec, s->settings.session_max_usec,
                           on_conn_session, ws_conn_ref(c), &c->pending_session);
        if (r < 0) {
                c->n_ref--;
                ws_conn_send_error(c, PROTOCOL_ERROR_UNAVAILABLE, NULL);
                ws_conn_close(c, WS_CLOSE_TRY_AGAIN_LATER, "unavailable");
        }

        LIST_PREPEND(conns, hub->conns, c);
        hub->n_conns++;
        s->stats->connections_opened++;
        s->hooks->conns_changed(s->userdata, hub->n_conns);
        *ret = c;
        return 0;
}

void ws_conn_closed(Conn *c) {
        WsHub *hub = c->hub;
        const WebServices *s = hub->services;

        if (c->state == CONN_READY)
                s->hooks->conn_closed(s->userdata, c);
        c->userdata = NULL;
        c->state = CONN_CLOSED;
        c->wsi = NULL;
        if (c->pending_session) {
                c->pending_session = session_request_cancel(c->pending_session);
                ws_conn_unref(c);
        }
        if (c->pending_auth) {
                c->pending_auth = auth_request_cancel(c->pending_auth);
                ws_conn_unref(c);
        }

        LIST_REMOVE(conns, hub->conns, c);
        hub->n_conns--;
        s->hooks->conns_changed(s->userdata, hub->n_conns);
        ws_conn_unref(c);
}

/* A sweep over all connections: cheap next to their traffic (tens of ns
 * each), and no per-connection timers to keep sorted. Often enough that
 * nobody is pinged or dropped much later than keepalive says. */
static uint64_t ws_hub_sweep_usec(const WsHub *hub) {
        return CLAMP(hub->services->settings.keepalive_usec / 4, WS_SWEEP_MIN_USEC, WS_SWEEP_MAX_USEC);
}

static int on_keepalive_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        WsHub *hub = userdata;

        ws_hub_keepalive(hub, usec);
        (void) sd_event_source_set_time(s, usec + ws_hub_sweep_usec(hub));
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_write_scheduled(sd_event_source *s, void *userdata) {
        ws_hub_write_scheduled(userdata);
        return 0;
}

int ws_hub_new(WsHub **ret, const WebServices *services) {
        WsHub *hub;
        int r;

        hub = calloc(1, sizeof *hub);
        if (!hub)
                return -ENOMEM;
        hub->services = services;
        r = frame_new_ping(&hub->ping_frame);
        if (r >= 0)
                r = sd_event_add_defer(services->event, &hub->write_source, on_write_scheduled, hub);
        if (r >= 0)
                r = sd_event_source_set_enabled(hub->write_source, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(services->event, &hub->keepalive_timer, CLOCK_MONOTONIC,
                                               ws_hub_sweep_usec(hub), 0, on_keepalive_timer, hub);
        if (r < 0) {
                ws_hub_free(hub);
                return r;
        }
        *ret = hub;
        return 0;
}

WsHub *ws_hub_free(WsHub *hub) {
        if (!hub)
                return NULL;
        ws_hub_write_scheduled(hub);    /* only drops references: every connection is closed */
        sd_event_source_disable_unref(hub->write_source);
        sd_event_source_disable_unref(hub->keepalive_timer);
        frame_unref(hub->ping_frame);
        return mfree(hub);
}

unsigned ws_hub_count(const WsHub *hub) {
        return hub->n_conns;
}

Conn *ws_hub_first(WsHub *hub) {
        return hub->conns;
}

void ws_hub_close_all(WsHub *hub, uint16_t code, const char *reason) {
        LIST_FOREACH(conns, c, hub->conns)
                ws_conn_close(c, code, reason);
}
