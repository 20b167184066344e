/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lws context and vhost on our libuv loop; routes HTTP requests and WebSocket upgrades. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* One accepted connection, HTTP or WebSocket, from adoption until lws
 * destroys it: a shutdown waits for all of them, not only WebSockets. */
typedef struct WebPeer {
        Web *web;
        struct lws *wsi;
        LIST_FIELDS(struct WebPeer, peers);
} WebPeer;

struct Web {
        WebServices *services;
        WsHub *hub;
        struct lws_context *context;
        struct lws_vhost *vhost;
        bool tls;
        SSL_CTX *ssl_ctx;           /* the vhost's, owned by lws */
        WebPeer *peers;
        unsigned n_peers;
};

/* lws's per-connection user data: which exchange or WebSocket it carries. */
typedef struct WebSlot {
        HttpExchange *http;
        Conn *conn;
} WebSlot;

static void web_slot_drop_http(WebSlot *slot) {
        slot->http = http_exchange_release(slot->http);
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
                (void) http_respond_error(x, 405);
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
                else
                        (void) http_respond_error(x, streq(p, "/") || strncmp(p, "/api/", 5) == 0 ? 405 : 404);
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

/* Called for every wsi lws destroys, including its own internal ones: only
 * those we adopted carry a WebPeer. */
static void web_peer_free(WebPeer *p, struct lws *wsi) {
        Web *w;

        if (!p || p->wsi != wsi)
                return;
        w = p->web;
        LIST_REMOVE(peers, w->peers, p);
        w->n_peers--;
        free(p);
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

static int on_lws_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
        struct lws_vhost *vh = lws_get_vhost(wsi);
        Web *w = vh ? lws_vhost_user(vh) : NULL;
        WebSlot *slot = user;
        unsigned status;
        int r;

        switch (reason) {
        case LWS_CALLBACK_HTTP:
                return on_http_request(w, wsi, slot, in);

        case LWS_CALLBACK_HTTP_BODY:
                return on_http_body(slot, in, len);

        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
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
                status = web_check_upgrade(w, wsi);
                if (status == 0)
                        return 0;
                lws_return_http_status(wsi, status, NULL);
                return 1;

        case LWS_CALLBACK_ESTABLISHED:
                return on_ws_established(w, wsi, slot);

        case LWS_CALLBACK_RECEIVE:
                return slot->conn ? ws_conn_on_receive(slot->conn, in, len) : -1;

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
                web_peer_free(lws_get_opaque_user_data(wsi), wsi);
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
        r = ws_hub_new(&w->hub, services);
        if (r < 0) {
                free(w);
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
        if (w->context) {
                /* On a foreign loop the first destroy only starts closing
                 * lws's handles; run the loop until they are gone, then
                 * destroy again to finish (FACTS.md). */
                lws_context_destroy(w->context);
                (void) loop_uv_drain(w->services->uv, 1000);
                lws_context_destroy(w->context);
        }
        ws_hub_free(w->hub);
        return mfree(w);
}

int web_adopt(Web *w, int fd) {
        lws_sock_file_fd_type f = { .sockfd = fd };
        lws_adoption_type type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
        WebPeer *p;

        p = calloc(1, sizeof *p);
        if (!p) {
                safe_close(fd);
                return -ENOMEM;
        }
        if (w->tls)
                type |= LWS_ADOPT_ALLOW_SSL;
        p->wsi = lws_adopt_descriptor_vhost(w->vhost, type, f, NULL, NULL);
        if (!p->wsi) {
                free(p);
                return -EIO;       /* lws closed the fd */
        }
        p->web = w;
        LIST_PREPEND(peers, w->peers, p);
        w->n_peers++;
        lws_set_opaque_user_data(p->wsi, p);
        return 0;
}

unsigned web_peer_count(const Web *w) {
        return w->n_peers;
}

/* Shutdown: WebSockets are closed by their owners; an HTTP connection
 * with no request under way gets a second to deliver one that is already
 * on its way (and is answered, then closed), and is dropped after that. */
void web_drain(Web *w) {
        LIST_FOREACH(peers, p, w->peers) {
                WebSlot *slot = lws_wsi_user(p->wsi);

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
