/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One HTTP request/response exchange on lws: request fields, body, and a response sent asynchronously. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "net/http.h"
#include "basic/macro.h"

/* Body bytes per writeable callback: lws wants one write per callback. */
#define HTTP_CHUNK 16384

static const char content_security_policy[] =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const char *http_status_text(unsigned status) {
        switch (status) {
        case 200: return "OK";
        case 204: return "No Content";
        case 303: return "See Other";
        case 304: return "Not Modified";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Payload Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
        default: return "Error";
        }
}

char *http_header_dup(struct lws *wsi, enum lws_token_indexes token) {
        int len = lws_hdr_total_length(wsi, token);
        char *s;

        if (len <= 0 || len > HTTP_HEADER_VALUE_MAX)
                return NULL;
        s = malloc((size_t) len + 1);
        if (!s)
                return NULL;
        if (lws_hdr_copy(wsi, s, len + 1, token) < 0)
                return mfree(s);
        return s;
}

static void peer_address(struct lws *wsi, char *buf, size_t size) {
        if (!lws_get_peer_simple(wsi, buf, size))
                snprintf(buf, size, "unknown");
}

int http_exchange_new(HttpExchange **ret, const WebServices *services, bool tls, struct lws *wsi, const char *uri) {
        HttpExchange *x;
        size_t n;

        x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->services = services;
        x->tls = tls;
        x->wsi = wsi;

        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
                x->method = HTTP_METHOD_GET;
        else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
                x->method = HTTP_METHOD_POST;
        else if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0)
                x->method = HTTP_METHOD_HEAD;
        else
                x->method = HTTP_METHOD_OTHER;

        n = strlen(uri ?: "");
        if (n >= sizeof x->path)
                n = sizeof x->path - 1;
        memcpy(x->path, uri ?: "", n);
        x->path[n] = 0;

        x->query = http_header_dup(wsi, WSI_TOKEN_HTTP_URI_ARGS);
        x->cookie = http_header_dup(wsi, WSI_TOKEN_HTTP_COOKIE);
        x->content_type = http_header_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
        peer_address(wsi, x->peer, sizeof x->peer);

        *ret = x;
        return 0;
}

static HttpExchange *http_exchange_free(HttpExchange *x) {
        free(x->query);
        free(x->cookie);
        free(x->content_type);
        free(x->body);
        free(x->response_body);
        for (unsigned i = 0; i < x->n_extra; i++) {
                free(x->extra_names[i]);
                free(x->extra_values[i]);
        }
        return mfree(x);
}

HttpExchange *http_exchange_release(HttpExchange *x) {
        if (!x)
                return NULL;
        x->wsi = NULL;
        if (x->pending) {
                /* The cancel function frees the pending operation without
                 * calling back, so nothing refers to x afterwards. */
                x->cancel_pending(x->pending);
                x->pending = NULL;
        }
        return http_exchange_free(x);
}

void http_exchange_set_pending(HttpExchange *x, void *pending, HttpCancelFunc cancel) {
        x->pending = pending;
        x->cancel_pending = cancel;
}

bool http_exchange_complete_pending(HttpExchange *x) {
        x->pending = NULL;
        x->cancel_pending = NULL;
        return !x->wsi;
}

int http_exchange_add_header(HttpExchange *x, const char *name, const char *value) {
        if (x->n_extra >= HTTP_EXTRA_HEADERS_MAX)
                return -E2BIG;
        x->extra_names[x->n_extra] = strdup(name);
        x->extra_values[x->n_extra] = strdup(value);
        if (!x->extra_names[x->n_extra] || !x->extra_values[x->n_extra]) {
                x->extra_names[x->n_extra] = mfree(x->extra_names[x->n_extra]);
                x->extra_values[x->n_extra] = mfree(x->extra_values[x->n_extra]);
                return -ENOMEM;
        }
        x->n_extra++;
        return 0;
}

int http_respond_take(HttpExchange *x, unsigned status, const char *content_type, char *body, size_t len) {
        if (x->responded) {
                free(body);
                return -EALREADY;
        }
        x->responded = true;
        x->status = status;
        x->response_type = content_type;
        x->response_body = body;
        x->response_len = body ? len : 0;
        if (x->wsi)
                lws_callback_on_writable(x->wsi);
        return 0;
}

int http_respond(HttpExchange *x, unsigned status, const char *content_type, const void *body, size_t len) {
        char *copy = NULL;

        if (len > 0) {
                copy = malloc(len);
                if (!copy)
                        return -ENOMEM;
                memcpy(copy, body, len);
        }
        return http_respond_take(x, status, content_type, copy, len);
}

int http_respond_error(HttpExchange *x, unsigned status) {
        char *body;
        int n;

        n = asprintf(&body, "<!DOCTYPE html>\n<html><head><title>%u %s</title></head>"
                     "<body><h1>%u %s</h1></body></html>\n",
                     status, http_status_text(status), status, http_status_text(status));
        if (n < 0)
                return -ENOMEM;
        return http_respond_take(x, status, "text/html; charset=utf-8", body, (size_t) n);
}

int http_respond_json(HttpExchange *x, unsigned status, char *json) {
        if (!json)
                return http_respond_error(x, 500);
        return http_respond_take(x, status, "application/json", json, strlen(json));
}

int http_redirect(HttpExchange *x, unsigned status, const char *location) {
        int r;

        r = http_exchange_add_header(x, "location:", location);
        if (r < 0)
                return r;
        return http_respond(x, status, "text/plain; charset=utf-8", "", 0);
}

static const struct {
        const char *name, *value;
} security_headers[] = {
        { "content-security-policy:", content_security_policy },
        { "x-content-type-options:", "nosniff" },
        { "referrer-policy:", "same-origin" },
        { "x-frame-options:", "DENY" },
        { "cache-control:", "no-store" },
};

int http_format_security_headers(char *buf, size_t size) {
        size_t k = 0;

        for (size_t i = 0; i < ELEMENTSOF(security_headers); i++) {
                int n = snprintf(buf + k, size - k, "%s %s\r\n", security_headers[i].name, security_headers[i].value);

                if (n < 0 || (size_t) n >= size - k)
                        return -ENOBUFS;
                k += (size_t) n;
        }
        return (int) k;
}

int http_add_security_headers(struct lws *wsi, unsigned char **p, unsigned char *end) {
        const __typeof__(security_headers[0]) *headers = security_headers;

        for (size_t i = 0; i < ELEMENTSOF(security_headers); i++)
                if (lws_add_http_header_by_name(wsi, (const unsigned char *) headers[i].name,
                                                (const unsigned char *) headers[i].value,
                                                (int) strlen(headers[i].value), p, end))
                        return -ENOBUFS;
        return 0;
}

static int http_send_headers(HttpExchange *x) {
        unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;

        if (lws_add_http_common_headers(x->wsi, x->status, x->response_type,
                                        (lws_filepos_t) x->response_len, &p, end))
                return -1;
        if (http_add_security_headers(x->wsi, &p, end) < 0)
                return -1;
        for (unsigned i = 0; i < x->n_extra; i++)
                if (lws_add_http_header_by_name(x->wsi, (const unsigned char *) x->extra_names[i],
                                                (const unsigned char *) x->extra_values[i],
                                                (int) strlen(x->extra_values[i]), &p, end))
                        return -1;
        if (lws_finalize_write_http_header(x->wsi, start, &p, end))
                return -1;
        x->headers_sent = true;
        return 0;
}

int http_exchange_on_writeable(HttpExchange *x) {
        unsigned char buf[LWS_PRE + HTTP_CHUNK];
        size_t n;
        bool final;

        if (!x->responded)
                return 0;

        if (!x->headers_sent) {
                if (http_send_headers(x) < 0)
                        return -1;
                if (x->response_len == 0 || x->method == HTTP_METHOD_HEAD)
                        return 1;
                lws_callback_on_writable(x->wsi);
                return 0;
        }

        n = MIN(x->response_len - x->response_sent, (size_t) HTTP_CHUNK);
        final = x->response_sent + n == x->response_len;
        memcpy(buf + LWS_PRE, x->response_body + x->response_sent, n);
        if (lws_write(x->wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int) n)
                return -1;
        x->response_sent += n;
        if (!final) {
                lws_callback_on_writable(x->wsi);
                return 0;
        }
        return 1;
}
