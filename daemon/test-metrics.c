/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for /metrics: the text exposition's lines and the scrape allow list. */

#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "metrics.h"
#include "test/test.h"

/* Every sample line "name{labels} value" must have its HELP and TYPE
 * before it, exactly once per family, and a value that parses. */
static void check_exposition(const char *text) {
        _cleanup_free_ char *copy = strdup(text);
        char *save = NULL, families[64][64] = {};
        size_t n_families = 0;

        ASSERT_NOT_NULL(copy);
        ASSERT_TRUE(text[strlen(text) - 1] == '\n');
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[64], *end;
                size_t n;

                if (strncmp(line, "# HELP ", 7) == 0) {
                        n = strcspn(line + 7, " ");
                        ASSERT_TRUE(n > 0 && n < sizeof name);
                        for (size_t i = 0; i < n_families; i++)
                                ASSERT_TRUE(strncmp(families[i], line + 7, n) != 0 || families[i][n]);
                        ASSERT_TRUE(n_families < ELEMENTSOF(families));
                        memcpy(families[n_families++], line + 7, n);
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        ASSERT_TRUE(n_families > 0);
                        n = strlen(families[n_families - 1]);
                        ASSERT_TRUE(strncmp(line + 7, families[n_families - 1], n) == 0);
                        ASSERT_TRUE(streq(line + 7 + n, " counter") || streq(line + 7 + n, " gauge"));
                        if (streq(line + 7 + n, " counter"))
                                ASSERT_TRUE(n > 6 && streq(families[n_families - 1] + n - 6, "_total"));
                        continue;
                }
                ASSERT_TRUE(line[0] != '#');
                ASSERT_TRUE(n_families > 0);
                n = strlen(families[n_families - 1]);
                ASSERT_TRUE(strncmp(line, families[n_families - 1], n) == 0);
                ASSERT_TRUE(line[n] == ' ' || line[n] == '{');
                ASSERT_TRUE(strncmp(line, "multichat_", 10) == 0);
                (void) strtod(strrchr(line, ' ') + 1, &end);
                ASSERT_TRUE(*end == 0);
        }
        ASSERT_TRUE(n_families >= 14);
}

static void test_format(void) {
        MetricsSnapshot s = {
                .connections = 3,
                .peers = 5,
                .rooms = 2,
                .ready = true,
                .redis_connected = true,
                .redis_reconnects = 4,
                .relay_lag_usec = 1500042,
                .messages_received = 10,
                .deliveries = 30,
                .web = {
                        .connections_opened = 7,
                        .slow_readers_cut = 1,
                        .logins_accepted = 2,
                        .logins_refused = 6,
                        .logins_throttled = 8,
                },
        };
        _cleanup_free_ char *text = NULL;

        s.refusals[PROTOCOL_ERROR_RATE_LIMITED] = 9;
        s.refusals[PROTOCOL_ERROR_BAD_REQUEST] = 11;
        ASSERT_OK(metrics_format(&s, &text));
        check_exposition(text);

        ASSERT_NOT_NULL(strstr(text, "# HELP multichat_connections WebSocket connections open.\n"
                                     "# TYPE multichat_connections gauge\nmultichat_connections 3\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_connections_opened_total 7\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_http_connections 5\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_rooms 2\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_ready 1\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_messages_received_total 10\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_deliveries_total 30\n"));
        ASSERT_NOT_NULL(strstr(text, "# TYPE multichat_refusals_total counter\n"
                                     "multichat_refusals_total{reason=\"USER_HAS_TO_LOGIN\"} 0\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_refusals_total{reason=\"RATE_LIMITED\"} 9\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_refusals_total{reason=\"BAD_REQUEST\"} 11\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_refusals_total{reason=\"OUTCOME_UNKNOWN\"} 0\n"));
        /* "OK" is never an error, so never a reason. */
        ASSERT_NULL(strstr(text, "reason=\"OK\""));
        ASSERT_NULL(strstr(text, "(null)"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_slow_readers_cut_total 1\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_logins_total{result=\"accepted\"} 2\n"
                                     "multichat_logins_total{result=\"refused\"} 6\n"
                                     "multichat_logins_total{result=\"throttled\"} 8\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_redis_connected 1\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_redis_reconnects_total 4\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_relay_lag_seconds 1.500042\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_overloaded 0\n"));
}

static void test_format_zero(void) {
        MetricsSnapshot s = {};
        _cleanup_free_ char *text = NULL;

        ASSERT_OK(metrics_format(&s, &text));
        check_exposition(text);
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_relay_lag_seconds 0.000000\n"));
        ASSERT_NOT_NULL(strstr(text, "\nmultichat_ready 0\n"));
}

static void test_allow_entries(void) {
        static const char *const valid[] = {
                "127.0.0.1", "::1", "10.0.0.0/8", "192.0.2.1/32", "0.0.0.0/0", "::/0", "fd00::/8",
                "2001:db8::1/128", "2001:db8::/32",
        };
        static const char *const invalid[] = {
                "", "/", "/8", "localhost", "127.0.0.1/", "127.0.0.1/33", "::1/129", "10.0.0.0/08",
                "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0/ 8", "1.2.3", "1.2.3.4.5",
                "::ffff:127.0.0.1", "[::1]", "127.0.0.1:9090", "fe80::1%eth0",
                "10.0.0.0/99999999999999999999",
        };

        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                if (!metrics_allow_entry_is_valid(valid[i])) {
                        fprintf(stderr, "valid entry refused: %s\n", valid[i]);
                        abort();
                }
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                if (metrics_allow_entry_is_valid(invalid[i])) {
                        fprintf(stderr, "invalid entry taken: %s\n", invalid[i]);
                        abort();
                }
}

static void test_allow_peers(void) {
        char *loopback[] = { (char *) "127.0.0.1", (char *) "::1", NULL };
        char *nets[] = { (char *) "10.1.0.0/16", (char *) "192.0.2.128/25", (char *) "2001:db8:8000::/33", NULL };
        char *doc[] = { (char *) "192.0.2.1", NULL };
        char *everyone[] = { (char *) "0.0.0.0/0", NULL };
        char *empty[] = { NULL };

        ASSERT_TRUE(metrics_peer_is_allowed(loopback, "127.0.0.1"));
        ASSERT_TRUE(metrics_peer_is_allowed(loopback, "::1"));
        /* What a dual-stack socket reports for an IPv4 client. */
        ASSERT_TRUE(metrics_peer_is_allowed(loopback, "::ffff:127.0.0.1"));
        ASSERT_FALSE(metrics_peer_is_allowed(loopback, "127.0.0.2"));
        ASSERT_FALSE(metrics_peer_is_allowed(loopback, "::2"));
        ASSERT_FALSE(metrics_peer_is_allowed(loopback, "unknown"));
        ASSERT_FALSE(metrics_peer_is_allowed(loopback, ""));
        ASSERT_FALSE(metrics_peer_is_allowed(loopback, NULL));

        ASSERT_TRUE(metrics_peer_is_allowed(nets, "10.1.255.255"));
        ASSERT_FALSE(metrics_peer_is_allowed(nets, "10.2.0.0"));
        ASSERT_TRUE(metrics_peer_is_allowed(nets, "192.0.2.128"));
        ASSERT_TRUE(metrics_peer_is_allowed(nets, "192.0.2.255"));
        ASSERT_FALSE(metrics_peer_is_allowed(nets, "192.0.2.127"));
        ASSERT_TRUE(metrics_peer_is_allowed(nets, "2001:db8:8000::1"));
        ASSERT_TRUE(metrics_peer_is_allowed(nets, "2001:db8:ffff::1"));
        ASSERT_FALSE(metrics_peer_is_allowed(nets, "2001:db8:7fff::1"));
        /* An IPv4 prefix never matches an IPv6 peer. */
        ASSERT_FALSE(metrics_peer_is_allowed(nets, "::a01:1"));

        ASSERT_FALSE(metrics_peer_is_allowed(doc, "127.0.0.1"));
        ASSERT_TRUE(metrics_peer_is_allowed(everyone, "203.0.113.9"));
        ASSERT_FALSE(metrics_peer_is_allowed(everyone, "::1"));
        ASSERT_FALSE(metrics_peer_is_allowed(empty, "127.0.0.1"));
        ASSERT_FALSE(metrics_peer_is_allowed(NULL, "127.0.0.1"));
}

int main(void) {
        test_format();
        test_format_zero();
        test_allow_entries();
        test_allow_peers();
        return 0;
}
