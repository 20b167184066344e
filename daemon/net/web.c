/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lws context and vhost on our libuv loop; routes HTTP requests and WebSocket upgrades. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "net/http-api.h"
#include "net/http-login.h"
#include "net/http-util.h"
#include "net/http.h"
#include "basic/log.h"
#include "net/loop-uv.h"
#include "basic/list.h"
#include "basic/macro.h"
#include "basic/time-util.h"
#include "net/services.h"
#include "store/session.h"
#include "net/web.h"
#include "net/ws.h"

/* lws hands WebSocket messages over in pieces of this size; we reassemble.
 * lws keeps a buffer of this size per connection, so it is most of what an
 * idle connection costs beyond lws's own state (tests/bench/README.md);
 * 128 still takes any control frame (at most 125 bytes) whole. */
#define WEB_RX_BUFFER 128

/* TLS 1.2 suites: forward-secret AEAD only (TLS 1.3 has nothing else).
 * Ours rather than /etc/ssl/openssl.cnf's, which an administrator may
 * loosen for some other program. */
#define WEB_TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:@SECLEVEL=2"

DEFINE_CLEANUP_FUNC(X509 *, X509_free);
DEFINE_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free);
DEFINE_CLEANUP_FUNC(BIO *, BIO_free_all);

static inline void x509_stack_freep(STACK_OF(X509) **p) {
        sk_X509_pop_free(*p, X509_free);
}

/* The kernel's send buffer per connection. Autotuning grows it to
 * megabytes for a client that stops reading; this much holds a burst of
 * chat (WS_BATCH_MAX per send()) and the page. The kernel doubles it. */
#define WEB_SNDBUF (64 * 1024)
/* Wake-ups a request head may take to arrive: a browser's comes in one or
 * a few segments; a head trickled in is handed to lws after these (its
 * deadline still holds), so nobody makes us re-read it without end. */
#define WEB_HEAD_PEEKS_MAX 64
/* After a refusal, how long the client gets to read it before we close. */
#define WEB_REFUSE_LINGER_USEC (2 * USEC_PER_SEC)
/* How often deadlines are checked, while any is set. */
#define WEB_DEADLINE_SWEEP_USEC (250 * USEC_PER_MSEC)

typedef enum WebPeerPhase {
        WEB_PEER_HEAD,          /* ours: waiting for the first request head */
        WEB_PEER_REFUSING,      /* ours: answered and shut down; read until the client closes */
        WEB_PEER_LWS,           /* adopted by lws */
} WebPeerPhase;

/* One accepted connection, HTTP or WebSocket, from accept() until lws
 * destroys it (or we close it before adopting it): a shutdown waits for
 * all of them, not only WebSockets. */
typedef struct WebPeer {
        Web *web;
        WebPeerPhase phase;
        struct lws *wsi;
        int fd;                       /* ours until adopted, -1 after */
        sd_event_source *io;
        unsigned peeks;
        size_t seen;                  /* head bytes seen at the last peek */
        bool counted;                 /* counts against its address's limit */
        uint8_t address[16];          /* IPv4 (mapped) or the /64 of an IPv6 address */
        uint64_t deadline_usec;       /* CLOCK_MONOTONIC; 0: none */
        LIST_FIELDS(struct WebPeer, peers);
        LIST_FIELDS(struct WebPeer, timed);
} WebPeer;

/* Open connections of one client address; count 0 marks a free slot. */
typedef struct WebAddressSlot {
        uint8_t address[16];
        unsigned count;
        bool logged;                  /* its refusal was logged since it came */
} WebAddressSlot;

struct Web {
        WebServices *services;
        WsHub *hub;
        struct lws_context *context;
        struct lws_vhost *vhost;
        bool tls;
        SSL_CTX *ssl_ctx;           /* the vhost's, owned by lws */
        WebPeer *peers;
        unsigned n_peers;
        WebPeer *timed;               /* peers with a deadline */
        sd_event_source *deadline_timer;
        char *head_buffer;            /* max_header_bytes, for peeking at request heads */
        size_t head_buffer_size;
        WebAddressSlot *addresses;    /* open addressing, a power of two slots */
        size_t n_address_slots, n_addresses;
        uint64_t address_seed;        /* random: nobody can pick addresses that collide */
};

/* lws's per-connection user data: which exchange or WebSocket it carries. */
typedef struct WebSlot {
        HttpExchange *http;
        Conn *conn;
} WebSlot;

static void web_slot_drop_http(WebSlot *slot) {
        slot->http = http_exchange_release(slot->http);
}

/* 405 names what the resource does take (RFC 9110 15.5.6). */
static void web_respond_405(HttpExchange *x, const char *allow) {
        if (http_exchange_add_header(x, "allow:", allow) < 0) {
                (void) http_respond_error(x, 500);
                return;
        }
        (void) http_respond_error(x, 405);
}

/* Scrapers not on the allow list get the same 404 as any unknown path. */
static void web_metrics(HttpExchange *x) {
        const WebServices *s = x->services;
        char *text = NULL;
        int r;

        r = s->hooks->metrics(s->userdata, x->peer, &text);
        if (r == -EPERM)
                (void) http_respond_error(x, 404);
        else if (r < 0)
                (void) http_respond_error(x, 500);
        else
                (void) http_respond_take(x, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

static void web_route(HttpExchange *x) {
        const char *p = x->path;

        if (x->method == HTTP_METHOD_OTHER) {
                web_respond_405(x, streq(p, "/login") ? HTTP_ALLOWED_METHODS :
                                   streq(p, "/logout") ? "POST" : "GET, HEAD");
                return;
        }
        if (streq(p, "/login")) {
                if (x->method == HTTP_METHOD_POST)
                        http_login_submit(x);
                else
                        http_login_page(x, 200, NULL);
                return;
        }
        if (x->method == HTTP_METHOD_POST) {
                if (streq(p, "/logout"))
                        http_logout(x);
                else if (streq(p, "/") || strncmp(p, "/api/", 5) == 0)
                        web_respond_405(x, "GET, HEAD");
                else
                        (void) http_respond_error(x, 404);
                return;
        }
        if (streq(p, "/"))
                http_api_index(x);
        else if (streq(p, "/api/session"))
                http_api_session(x);
        else if (streq(p, "/api/rooms"))
                http_api_rooms(x);
        else if (streq(p, "/healthz"))
                http_api_healthz(x);
        else if (streq(p, "/metrics"))
                web_metrics(x);
        else if (strncmp(p, "/static/", 8) == 0)
                http_api_static(x);
        else if (streq(p, WS_PATH))
                (void) http_respond_error(x, 400);
        else
                (void) http_respond_error(x, 404);
}

static int on_http_request(Web *w, struct lws *wsi, WebSlot *slot, const char *uri) {
        HttpExchange *x;
        int len;

        web_slot_drop_http(slot);
        if (http_exchange_new(&x, w->services, w->tls, wsi, uri) < 0)
                return -1;
        slot->http = x;

        if (x->method != HTTP_METHOD_POST) {
                web_route(x);
                return 0;
        }

        len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        if (len > 0) {
                char buf[24];

                lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_CONTENT_LENGTH);
                x->body_expected = strtoull(buf, NULL, 10);
        }
        if (x->body_expected > HTTP_BODY_MAX) {
                (void) http_respond_error(x, 413);
                return 0;
        }
        if (x->body_expected == 0)
                web_route(x);
        return 0;
}

static int on_http_body(WebSlot *slot, const void *in, size_t len) {
        HttpExchange *x = slot->http;
        char *b;

        if (!x || x->responded || len == 0)
                return 0;
        if (x->body_len + len > HTTP_BODY_MAX) {
                (void) http_respond_error(x, 413);
                return 0;
        }
        b = realloc(x->body, x->body_len + len + 1);
        if (!b)
                return -1;
        memcpy(b + x->body_len, in, len);
        x->body = b;
        x->body_len += len;
        x->body[x->body_len] = 0;
        return 0;
}

/* Everything we can check about a WebSocket upgrade without waiting for
 * Redis: path, Origin, a well-formed session cookie. The session itself is
 * looked up right after the handshake (lws cannot pause one). */
static unsigned web_check_upgrade(Web *w, struct lws *wsi) {
        _cleanup_free_ char *uri = http_header_dup(wsi, WSI_TOKEN_GET_URI);
        _cleanup_free_ char *origin = http_header_dup(wsi, WSI_TOKEN_ORIGIN);
        _cleanup_free_ char *host = http_header_dup(wsi, WSI_TOKEN_HOST);
        _cleanup_free_ char *cookie = http_header_dup(wsi, WSI_TOKEN_HTTP_COOKIE);
        _cleanup_free_ char *sid = NULL;

        if (!uri || !streq(uri, WS_PATH))
                return 404;
        if (!origin || !host ||
            !http_origin_allowed(origin, host, w->tls, w->services->settings.allowed_origins))
                return 403;
        if (!cookie || http_cookie_get(cookie, http_session_cookie_name(w->tls), &sid) < 0 ||
            !session_id_is_valid(sid))
                return 403;
        return 0;
}

static int on_ws_established(Web *w, struct lws *wsi, WebSlot *slot) {
        _cleanup_free_ char *cookie = http_header_dup(wsi, WSI_TOKEN_HTTP_COOKIE);
        _cleanup_free_ char *sid = NULL;
        char peer[64];

        if (!cookie || http_cookie_get(cookie, http_session_cookie_name(w->tls), &sid) < 0)
                return -1;
        if (!lws_get_peer_simple(wsi, peer, sizeof peer))
                strcpy(peer, "unknown");
        if (ws_conn_new(&slot->conn, w->hub, wsi, sid, peer) < 0)
                return -1;
        return 0;
}

/* ---- connections per client address ---- */

static size_t web_address_hash(const Web *w, const uint8_t a[static 16]) {
        uint64_t x, y;

        memcpy(&x, a, 8);
        memcpy(&y, a + 8, 8);
        x ^= w->address_seed;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x ^= y;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return (size_t) (x ^ (x >> 31)) & (w->n_address_slots - 1);
}

static WebAddressSlot *web_address_find(Web *w, const uint8_t a[static 16]) {
        if (w->n_address_slots == 0)
                return NULL;
        for (size_t i = web_address_hash(w, a);; i = (i + 1) & (w->n_address_slots - 1)) {
                WebAddressSlot *e = w->addresses + i;

                if (e->count == 0)
                        return NULL;
                if (memcmp(e->address, a, 16) == 0)
                        return e;
        }
}

static WebAddressSlot *web_address_insert_slot(Web *w, const uint8_t a[static 16]) {
        size_t i = web_address_hash(w, a);

        while (w->addresses[i].count > 0)
                i = (i + 1) & (w->n_address_slots - 1);
        memcpy(w->addresses[i].address, a, 16);
        w->n_addresses++;
        return w->addresses + i;
}

/* At most half full, so probes stay short. */
static int web_address_grow(Web *w) {
        WebAddressSlot *old = w->addresses;
        size_t n_old = w->n_address_slots;

        if ((w->n_addresses + 1) * 2 <= w->n_address_slots)
                return 0;
        w->addresses = calloc(MAX(n_old * 2, (size_t) 64), sizeof *w->addresses);
        if (!w->addresses) {
                w->addresses = old;
                return -ENOMEM;
        }
        w->n_address_slots = MAX(n_old * 2, (size_t) 64);
        w->n_addresses = 0;
        for (size_t i = 0; i < n_old; i++)
                if (old[i].count > 0)
                        *web_address_insert_slot(w, old[i].address) = old[i];
        free(old);
        return 0;
}

/* Removes a slot, moving later entries of its probe run back into the gap
 * so that every entry stays reachable from its hash. */
static void web_address_remove(Web *w, WebAddressSlot *e) {
        size_t mask = w->n_address_slots - 1, hole = (size_t) (e - w->addresses);

        for (size_t i = (hole + 1) & mask; w->addresses[i].count > 0; i = (i + 1) & mask) {
                size_t h = web_address_hash(w, w->addresses[i].address);

                if (((i - h) & mask) >= ((i - hole) & mask)) {
                        w->addresses[hole] = w->addresses[i];
                        hole = i;
                }
        }
        w->addresses[hole] = (WebAddressSlot) {};
        w->n_addresses--;
}

static void web_address_format(const uint8_t a[static 16], char *buf, size_t size) {
        static const uint8_t v4_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        if (memcmp(a, v4_prefix, 12) == 0)
                inet_ntop(AF_INET, a + 12, buf, (socklen_t) size);
        else if (inet_ntop(AF_INET6, a, buf, (socklen_t) size) && strlen(buf) + 4 < size)
                strcat(buf, "/64");
}

/* The key a connection counts under: IPv4 as mapped, IPv6 by its /64 (one
 * host gets a whole /64). Unix sockets have none (-ENOENT). */
static int web_address_of(int fd, uint8_t ret[static 16]) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        if (getpeername(fd, (struct sockaddr *) &ss, &len) < 0)
                return -errno;
        memset(ret, 0, 16);
        if (ss.ss_family == AF_INET) {
                ret[10] = ret[11] = 0xff;
                memcpy(ret + 12, &((struct sockaddr_in *) &ss)->sin_addr, 4);
        } else if (ss.ss_family == AF_INET6) {
                const struct in6_addr *a = &((struct sockaddr_in6 *) &ss)->sin6_addr;

                memcpy(ret, a, IN6_IS_ADDR_V4MAPPED(a) ? 16 : 8);
        } else
                return -ENOENT;
        return 0;
}

/* Counts p against its address; -EUSERS when that address is at the limit
 * (logged once for as long as the address has connections open). */
static int web_address_take(Web *w, WebPeer *p) {
        unsigned limit = w->services->settings.max_connections_per_address;
        WebAddressSlot *e;
        char name[INET6_ADDRSTRLEN + 4];

        if (web_address_of(p->fd, p->address) < 0)
                return 0;
        e = web_address_find(w, p->address);
        if (e && limit > 0 && e->count >= limit) {
                if (!e->logged) {
                        e->logged = true;
                        web_address_format(p->address, name, sizeof name);
                        log_struct(LOG_WARNING, 0, MESSAGE_ID_RATE_LIMITED, LOG_FIELDS({ "REMOTE_ADDR", name }),
                                   "Refusing connections from %s: %u connections open, the most one address "
                                   "may hold (max-connections-per-address).", name, e->count);
                }
                return -EUSERS;
        }
        if (!e) {
                if (web_address_grow(w) < 0)
                        return -ENOMEM;
                e = web_address_insert_slot(w, p->address);
        }
        e->count++;
        p->counted = true;
        return 0;
}

static void web_address_put(Web *w, WebPeer *p) {
        WebAddressSlot *e;

        if (!p->counted)
                return;
        p->counted = false;
        e = web_address_find(w, p->address);
        if (e && --e->count == 0)
                web_address_remove(w, e);
}

/* ---- deadlines ---- */

static void web_peer_set_deadline(WebPeer *p, uint64_t usec) {
        Web *w = p->web;

        if (p->deadline_usec == 0 && usec != 0) {
                LIST_PREPEND(timed, w->timed, p);
                if (!w->timed->timed_next)
                        (void) sd_event_source_set_enabled(w->deadline_timer, SD_EVENT_ONESHOT);
        } else if (p->deadline_usec != 0 && usec == 0)
                LIST_REMOVE(timed, w->timed, p);
        p->deadline_usec = usec;
}

static uint64_t web_now(const Web *w) {
        uint64_t now;

        if (sd_event_now(w->services->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        return now;
}

static void web_peer_deadline_in(WebPeer *p, uint64_t usec) {
        web_peer_set_deadline(p, web_now(p->web) + usec);
}

static int on_deadline_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* ---- a connection's end ---- */

static void web_peer_unlink_free(WebPeer *p) {
        Web *w = p->web;

        web_peer_set_deadline(p, 0);
        web_address_put(w, p);
        p->io = sd_event_source_disable_unref(p->io);
        safe_close(p->fd);
        LIST_REMOVE(peers, w->peers, p);
        w->n_peers--;
        free(p);
}

static void web_peer_free(WebPeer *p) {
        Web *w = p->web;

        web_peer_unlink_free(p);
        w->services->hooks->peer_removed(w->services->userdata);
}

/* lws offers the vhost's SSL_CTX here, once, while it sets the vhost up:
 * the place to set our protocol floor and suites, and to keep the context
 * for certificate reloads. */
static int web_tls_setup(Web *w, SSL_CTX *ctx) {
        if (!w || !ctx)
                return -EINVAL;
        if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_set_cipher_list(ctx, WEB_TLS12_CIPHERS) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        w->ssl_ctx = ctx;
        return 0;
}

/* Never prompt for a passphrase on a terminal: an encrypted key is an error. */
static int on_tls_passphrase(char *buf, int size, int rwflag, void *userdata) {
        return -1;
}

static int tls_read_chain(const char *path, X509 **ret_leaf, STACK_OF(X509) **ret_chain) {
        _cleanup_(BIO_free_allp) BIO *b = NULL;
        _cleanup_(X509_freep) X509 *leaf = NULL;
        _cleanup_(x509_stack_freep) STACK_OF(X509) *chain = NULL;
        X509 *x;

        b = BIO_new_file(path, "r");
        if (!b)
                return errno > 0 ? -errno : -EIO;
        leaf = PEM_read_bio_X509_AUX(b, NULL, on_tls_passphrase, NULL);
        if (!leaf)
                return -EBADMSG;
        chain = sk_X509_new_null();
        if (!chain)
                return -ENOMEM;
        while ((x = PEM_read_bio_X509(b, NULL, on_tls_passphrase, NULL)))
                if (!sk_X509_push(chain, x)) {
                        X509_free(x);
                        return -ENOMEM;
                }
        *ret_leaf = TAKE_PTR(leaf);
        *ret_chain = TAKE_PTR(chain);
        return 0;
}

static int tls_read_key(const char *path, EVP_PKEY **ret) {
        _cleanup_(BIO_free_allp) BIO *b = NULL;
        EVP_PKEY *k;

        b = BIO_new_file(path, "r");
        if (!b)
                return errno > 0 ? -errno : -EIO;
        k = PEM_read_bio_PrivateKey(b, NULL, on_tls_passphrase, NULL);
        if (!k)
                return -EBADMSG;
        *ret = k;
        return 0;
}

static int tls_load(SSL_CTX *ctx, const char *cert_path, const char *key_path) {
        _cleanup_(X509_freep) X509 *leaf = NULL;
        _cleanup_(x509_stack_freep) STACK_OF(X509) *chain = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        int r;

        r = tls_read_chain(cert_path, &leaf, &chain);
        if (r < 0)
                return r;
        r = tls_read_key(key_path, &key);
        if (r < 0)
                return r;
        if (X509_check_private_key(leaf, key) != 1)
                return -EKEYREJECTED;
        /* Certificate, key and chain replaced together, or not at all. */
        if (SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1)
                return -EIO;
        return 0;
}

int web_reload_tls(Web *w) {
        const WebSettings *c = &w->services->settings;
        int r;

        if (!w->tls || !c->tls_certificate || !c->tls_key)
                return 0;
        r = tls_load(w->ssl_ctx, c->tls_certificate, c->tls_key);
        ERR_clear_error();
        return r;
}

/* Called for every wsi lws destroys, including its own internal ones: only
 * those we adopted carry a WebPeer. */
static void web_peer_destroyed(WebPeer *p, struct lws *wsi) {
        if (!p || p->wsi != wsi)
                return;
        web_peer_free(p);
}

static void web_peer_request_started(struct lws *wsi, bool body_follows) {
        WebPeer *p = lws_get_opaque_user_data(wsi);

        if (!p || p->wsi != wsi)
                return;
        if (body_follows)
                web_peer_deadline_in(p, p->web->services->settings.request_timeout_usec);
        else
                web_peer_set_deadline(p, 0);
}

static int on_lws_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
        struct lws_vhost *vh = lws_get_vhost(wsi);
        Web *w = vh ? lws_vhost_user(vh) : NULL;
        WebSlot *slot = user;
        unsigned status;
        int r;

        switch (reason) {
        case LWS_CALLBACK_HTTP:
                r = on_http_request(w, wsi, slot, in);
                /* The head is in; a body has as long again to come. */
                web_peer_request_started(wsi, slot->http && !slot->http->responded &&
                                                      slot->http->body_expected > 0);
                return r;

        case LWS_CALLBACK_HTTP_BODY:
                return on_http_body(slot, in, len);

        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                web_peer_request_started(wsi, false);
                if (slot->http && !slot->http->responded)
                        web_route(slot->http);
                return 0;

        case LWS_CALLBACK_HTTP_WRITEABLE:
                if (!slot || !slot->http)
                        return 0;
                r = http_exchange_on_writeable(slot->http);
                if (r < 0)
                        return -1;
                if (r == 0)
                        return 0;
                web_slot_drop_http(slot);
                if (w->services->stopping)
                        return -1;      /* answered; no next request on this connection */
                return lws_http_transaction_completed(wsi) ? -1 : 0;

        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
                if (slot)
                        web_slot_drop_http(slot);
                return 0;

        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                web_peer_request_started(wsi, false);
                status = web_check_upgrade(w, wsi);
                if (status == 0)
                        return 0;
                lws_return_http_status(wsi, status, NULL);
                return 1;

        case LWS_CALLBACK_ESTABLISHED:
                return on_ws_established(w, wsi, slot);

        case LWS_CALLBACK_RECEIVE:
                return slot->conn ? ws_conn_on_receive(slot->conn, in, len) : -1;

        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                return slot->conn ? ws_conn_on_peer_close(slot->conn, in, len) : 0;

        case LWS_CALLBACK_RECEIVE_PONG:
                if (slot->conn)
                        ws_conn_on_pong(slot->conn);
                return 0;

        case LWS_CALLBACK_SERVER_WRITEABLE:
                return slot->conn ? ws_conn_on_writeable(slot->conn) : -1;

        case LWS_CALLBACK_CLOSED:
                if (slot && slot->conn) {
                        ws_conn_closed(slot->conn);
                        slot->conn = NULL;
                }
                return 0;

        case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
                return web_tls_setup(w, user) < 0;

        case LWS_CALLBACK_WSI_DESTROY:
                web_peer_destroyed(lws_get_opaque_user_data(wsi), wsi);
                return 0;

        default:
                return 0;
        }
}

static const struct lws_protocols web_protocols[] = {
        {
                .name = "multichat",
                .callback = on_lws_event,
                .per_session_data_size = sizeof(WebSlot),
                .rx_buffer_size = WEB_RX_BUFFER,
                /* lws sends at most this much per send() (rx_buffer_size
                 * otherwise): a batch of queued frames, a page. */
                .tx_packet_size = WS_BATCH_MAX,
        },
        { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* No lws keep-alive: lws 4.1 keeps each connection's validity timer in
 * one sorted list, inserted into from the head on every received frame,
 * which made it most of the daemon's CPU above ~14k connections. The
 * connections' owner pings instead (ws_keepalive). */
static const lws_retry_bo_t web_idle_policy = {
        .secs_since_valid_ping = 0,
        .secs_since_valid_hangup = 0,
};

int web_new(Web **ret, WebServices *services) {
        struct lws_context_creation_info info = {};
        void *foreign_loops[1] = { loop_uv_get(services->uv) };
        const WebSettings *settings = &services->settings;
        Web *w;
        int r;

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->services = services;
        w->tls = settings->tls_certificate != NULL;
        w->head_buffer_size = settings->max_header_bytes;
        w->head_buffer = malloc(w->head_buffer_size);
        r = w->head_buffer ? 0 : -ENOMEM;
        if (r >= 0 && getrandom(&w->address_seed, sizeof w->address_seed, 0) != (ssize_t) sizeof w->address_seed)
                r = -errno;
        if (r >= 0)
                r = sd_event_add_time_relative(services->event, &w->deadline_timer, CLOCK_MONOTONIC,
                                               WEB_DEADLINE_SWEEP_USEC, 0, on_deadline_timer, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->deadline_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = ws_hub_new(&w->hub, services);
        if (r < 0) {
                web_free(w);
                return r;
        }

        lws_set_log_level(log_get_max_level() >= LOG_DEBUG ? LLL_ERR | LLL_WARN : LLL_ERR, NULL);

        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = web_protocols;
        info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
        info.foreign_loops = foreign_loops;
        info.fd_limit_per_thread = settings->max_connections + 256;
        info.server_string = "multichat";
        info.retry_and_idle_policy = &web_idle_policy;
        info.timeout_secs = 20;
        info.max_http_header_data2 = (unsigned) settings->max_header_bytes;
        info.keepalive_timeout = 30;
        info.user = w;
        info.vhost_name = "multichat";
        if (w->tls) {
                info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
                info.ssl_cert_filepath = settings->tls_certificate;
                info.ssl_private_key_filepath = settings->tls_key;
        }

        w->context = lws_create_context(&info);
        if (w->context)
                w->vhost = lws_get_vhost_by_name(w->context, "multichat");
        if (!w->vhost || (w->tls && !w->ssl_ctx)) {
                web_free(w);
                return -EIO;
        }
        *ret = w;
        return 0;
}

Web *web_free(Web *w) {
        if (!w)
                return NULL;
        /* Connections lws never got; the owner is past waiting for them. */
        LIST_FOREACH_SAFE(peers, p, next, w->peers)
                if (p->phase != WEB_PEER_LWS)
                        web_peer_unlink_free(p);
        if (w->context) {
                /* On a foreign loop the first destroy only starts closing
                 * lws's handles; run the loop until they are gone, then
                 * destroy again to finish (FACTS.md). */
                lws_context_destroy(w->context);
                (void) loop_uv_drain(w->services->uv, 1000);
                lws_context_destroy(w->context);
        }
        ws_hub_free(w->hub);
        sd_event_source_disable_unref(w->deadline_timer);
        free(w->head_buffer);
        free(w->addresses);
        return mfree(w);
}

/* ---- before lws: the first request head ---- */

static int web_peer_adopt(WebPeer *p) {
        Web *w = p->web;
        lws_sock_file_fd_type f = { .sockfd = p->fd };
        lws_adoption_type type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;

        p->io = sd_event_source_disable_unref(p->io);
        if (w->tls)
                type |= LWS_ADOPT_ALLOW_SSL;
        p->wsi = lws_adopt_descriptor_vhost(w->vhost, type, f, NULL, NULL);
        p->fd = -1;             /* lws's now, and closed already when it failed */
        if (!p->wsi) {
                web_peer_free(p);
                return -EIO;
        }
        p->phase = WEB_PEER_LWS;
        lws_set_opaque_user_data(p->wsi, p);
        return 0;
}

static int on_peer_refusing(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WebPeer *p = userdata;
        char buf[4096];

        /* Edge-triggered: read until the socket is empty. What the client
         * still sends is thrown away; its end, an error, or more than
         * 256 KiB in one go (then a reset) ends us. */
        for (unsigned i = 0; i < 64; i++) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n <= 0)
                        break;
        }
        web_peer_free(p);
        return 0;
}

/* Answers with status and closes, in lws's stead (it would drop the
 * connection without a word). The response goes out before the socket
 * is shut down for writing; the client then has a moment to read it (a
 * close() with its request unread would reset the connection and could
 * take our answer away with it). */
static void web_peer_refuse(WebPeer *p, unsigned status, const char *text) {
        char buf[1024], security[640];
        int n, r;

        if (p->web->tls) {
                web_peer_free(p);
                return;
        }
        if (http_format_security_headers(security, sizeof security) < 0) {
                web_peer_free(p);
                return;
        }
        n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %u %s\r\n"
                     "Server: multichat\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n%s\n",
                     status, http_status_text(status), strlen(text) + 1, security,
                     status == 405 ? "Allow: " HTTP_ALLOWED_METHODS "\r\n" : "", text);
        if (n < 0 || (size_t) n >= sizeof buf ||
            send(p->fd, buf, (size_t) n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 || shutdown(p->fd, SHUT_WR) < 0) {
                web_peer_free(p);
                return;
        }
        p->phase = WEB_PEER_REFUSING;
        p->io = sd_event_source_disable_unref(p->io);
        r = sd_event_add_io(p->web->services->event, &p->io, p->fd, EPOLLIN | EPOLLRDHUP | EPOLLET,
                            on_peer_refusing, p);
        if (r < 0) {
                web_peer_free(p);
                return;
        }
        web_peer_deadline_in(p, WEB_REFUSE_LINGER_USEC);
}

static const char *web_refusal_text(unsigned status) {
        switch (status) {
        case 405: return "Method not allowed: this server answers GET, HEAD and POST.";
        case 414: return "The request's URL is too long.";
        case 431: return "The request's headers are too large. Clearing this site's cookies may help.";
        case 503: return "Too many connections from your address. Try again later.";
        default: return "Malformed request.";
        }
}

/* Looks at the first request head without taking it from the socket (lws
 * reads it again once it has the connection), so what lws 4.1 would drop
 * without an answer gets one. */
static int on_peer_head(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WebPeer *p = userdata;
        Web *w = p->web;
        ssize_t n;
        int r;

        n = recv(fd, w->head_buffer, w->head_buffer_size, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                web_peer_free(p);       /* gone before it asked anything */
                return 0;
        }
        if ((size_t) n == p->seen)
                return 0;
        p->seen = (size_t) n;
        r = http_head_check(w->head_buffer, (size_t) n, w->head_buffer_size);
        if (r > 0) {
                log_debug("Refusing a request with %d: %s", r, web_refusal_text((unsigned) r));
                web_peer_refuse(p, (unsigned) r, web_refusal_text((unsigned) r));
        } else if (r == 0 || ++p->peeks >= WEB_HEAD_PEEKS_MAX)
                (void) web_peer_adopt(p);
        return 0;
}

static void web_peer_expire(WebPeer *p) {
        switch (p->phase) {
        case WEB_PEER_HEAD:
                log_debug("Closing a connection: no request within request-timeout.");
                web_peer_free(p);
                break;
        case WEB_PEER_REFUSING:
                web_peer_free(p);
                break;
        case WEB_PEER_LWS:
                log_debug("Closing a connection: its request did not arrive within request-timeout.");
                web_peer_set_deadline(p, 0);
                lws_set_timeout(p->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
                break;
        }
}

static int on_deadline_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Web *w = userdata;

        LIST_FOREACH_SAFE(timed, p, next, w->timed)
                if (p->deadline_usec <= usec)
                        web_peer_expire(p);
        if (!w->timed)
                return 0;
        (void) sd_event_source_set_time(s, usec + WEB_DEADLINE_SWEEP_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

int web_adopt(Web *w, int fd) {
        const WebSettings *settings = &w->services->settings;
        int sndbuf = WEB_SNDBUF, r;
        WebPeer *p;

        p = calloc(1, sizeof *p);
        if (!p) {
                safe_close(fd);
                return -ENOMEM;
        }
        p->web = w;
        p->fd = fd;
        LIST_PREPEND(peers, w->peers, p);
        w->n_peers++;

        (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        web_peer_deadline_in(p, settings->request_timeout_usec);
        r = web_address_take(w, p);
        if (r == -EUSERS) {
                web_peer_refuse(p, 503, web_refusal_text(503));
                return 0;
        }
        if (r < 0) {
                web_peer_free(p);
                return r;
        }
        /* TLS: the head is encrypted; lws alone reads it (within the
         * same budget) and the deadline still holds. */
        if (w->tls)
                return web_peer_adopt(p);
        r = sd_event_add_io(w->services->event, &p->io, fd, EPOLLIN | EPOLLRDHUP | EPOLLET, on_peer_head, p);
        if (r < 0) {
                web_peer_free(p);
                return r;
        }
        return 0;
}

unsigned web_peer_count(const Web *w) {
        return w->n_peers;
}

/* Shutdown: WebSockets are closed by their owners; an HTTP connection
 * with no request under way gets a second to deliver one that is already
 * on its way (and is answered, then closed), and is dropped after that. */
void web_drain(Web *w) {
        uint64_t soon = web_now(w) + USEC_PER_SEC;

        LIST_FOREACH(peers, p, w->peers) {
                WebSlot *slot;

                if (p->phase != WEB_PEER_LWS) {
                        if (p->deadline_usec > soon)
                                web_peer_set_deadline(p, soon);
                        continue;
                }
                slot = lws_wsi_user(p->wsi);

                if (slot && (slot->conn || slot->http))
                        continue;
                lws_set_timeout(p->wsi, PENDING_TIMEOUT_USER_OK, 1);
        }
}

bool web_is_tls(const Web *w) {
        return w->tls;
}

WsHub *web_hub(Web *w) {
        return w->hub;
}
