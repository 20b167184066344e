/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One HTTP request/response exchange on lws: request fields, body, and a response sent asynchronously. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <libwebsockets.h>

typedef struct WebServices WebServices;

#define HTTP_PATH_MAX 1024
/* Any header the head budget (max-header-bytes) lets through: the Cookie
 * header carries other applications' cookies too. */
#define HTTP_HEADER_VALUE_MAX (64 * 1024)
#define HTTP_BODY_MAX (16 * 1024)
#define HTTP_EXTRA_HEADERS_MAX 6

typedef enum HttpMethod {
        HTTP_METHOD_GET,
        HTTP_METHOD_HEAD,
        HTTP_METHOD_POST,
        HTTP_METHOD_OTHER,
} HttpMethod;

typedef struct HttpExchange HttpExchange;

/* Something the exchange waits for (a session lookup, the auth helper);
 * cancelled when the client goes away first. */
typedef void (*HttpCancelFunc)(void *pending);

struct HttpExchange {
        const WebServices *services;
        bool tls;
        struct lws *wsi;              /* NULL once the client is gone */

        HttpMethod method;
        char path[HTTP_PATH_MAX];
        char *query;                  /* raw query string after '?', or NULL */
        char *cookie;                 /* Cookie header, or NULL */
        char *content_type;
        char peer[64];                /* address without port, for limits and logs */
        char *body;
        size_t body_len;
        size_t body_expected;

        void *pending;
        HttpCancelFunc cancel_pending;

        /* The response, once decided. */
        bool responded;
        bool headers_sent;
        unsigned status;
        const char *response_type;
        char *response_body;
        size_t response_len;
        size_t response_sent;
        char *extra_names[HTTP_EXTRA_HEADERS_MAX];
        char *extra_values[HTTP_EXTRA_HEADERS_MAX];
        unsigned n_extra;
};

int http_exchange_new(HttpExchange **ret, const WebServices *services, bool tls, struct lws *wsi, const char *uri);
/* Frees now, or detaches from the client when something is still pending. */
HttpExchange *http_exchange_release(HttpExchange *x);
void http_exchange_set_pending(HttpExchange *x, void *pending, HttpCancelFunc cancel);
/* Returns true when the client is gone: the caller must drop the exchange
 * (http_exchange_release) and do nothing else with it. */
bool http_exchange_complete_pending(HttpExchange *x);

int http_exchange_add_header(HttpExchange *x, const char *name, const char *value);
/* Takes a copy of body. */
int http_respond(HttpExchange *x, unsigned status, const char *content_type, const void *body, size_t len);
int http_respond_take(HttpExchange *x, unsigned status, const char *content_type, char *body, size_t len);
int http_respond_error(HttpExchange *x, unsigned status);
int http_redirect(HttpExchange *x, unsigned status, const char *location);
int http_respond_json(HttpExchange *x, unsigned status, char *json);

/* Moves the response along in LWS_CALLBACK_HTTP_WRITEABLE. Returns < 0
 * when the connection must close, 1 when the response is out: release the
 * exchange, then call lws_http_transaction_completed() (which may reuse
 * lws's per-session data for the next request); 0 otherwise. */
int http_exchange_on_writeable(HttpExchange *x);

const char *http_status_text(unsigned status);

/* A copy of a request header, or NULL when it is missing, longer than
 * HTTP_HEADER_VALUE_MAX, or memory ran out. */
char *http_header_dup(struct lws *wsi, enum lws_token_indexes token);

/* The headers every response carries. */
int http_add_security_headers(struct lws *wsi, unsigned char **p, unsigned char *end);
/* The same as raw "name: value\r\n" lines, for answers written without
 * lws; the length, or -ENOBUFS. */
int http_format_security_headers(char *buf, size_t size);
