/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for config.c (files, drop-ins, command line, errors) and strv.c. */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config-build.h"
#include "config.h"
#include "basic/strv.h"
#include "test/test.h"

static char tmpdir[] = "/tmp/test-config-XXXXXX";

static char *path_in_tmp(const char *name) {
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/%s", tmpdir, name) >= 0);
        return p;
}

static void write_file(const char *name, const char *content) {
        _cleanup_(freep) char *p = path_in_tmp(name);
        FILE *f = fopen(p, "we");

        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fputs(content, f) >= 0);
        ASSERT_INT_EQ(fclose(f), 0);
}

static void make_dir(const char *name) {
        _cleanup_(freep) char *p = path_in_tmp(name);

        ASSERT_TRUE(mkdir(p, 0755) == 0 || errno == EEXIST);
}

static void remove_tree(void) {
        char cmd[128];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        ASSERT_INT_EQ(system(cmd), 0);
}

/* Everything written to fd (stderr or stdout) while running a load. */
typedef struct Capture {
        int fd, saved, tmp;
} Capture;

static void capture_begin(Capture *c, int fd) {
        char name[] = "/tmp/test-config-out-XXXXXX";

        fflush(stdout);
        fflush(stderr);
        c->fd = fd;
        c->tmp = mkstemp(name);
        ASSERT_TRUE(c->tmp >= 0);
        ASSERT_INT_EQ(unlink(name), 0);
        c->saved = dup(fd);
        ASSERT_TRUE(c->saved >= 0);
        ASSERT_TRUE(dup2(c->tmp, fd) >= 0);
}

static char *capture_end(Capture *c) {
        char *buf = calloc(1, 65536);
        ssize_t n;

        fflush(stdout);
        fflush(stderr);
        ASSERT_TRUE(dup2(c->saved, c->fd) >= 0);
        close(c->saved);
        ASSERT_NOT_NULL(buf);
        n = pread(c->tmp, buf, 65535, 0);
        ASSERT_TRUE(n >= 0);
        close(c->tmp);
        return buf;
}

/* Loads with the given arguments (NULL-terminated) and default file;
 * returns config_load_full()'s result and what it logged. */
static int load(Config **ret, char **ret_log, const char *default_file, ...) {
        char *argv[32] = { (char *) "multichatd" };
        int argc = 1, r;
        va_list ap;
        Capture cap;
        bool exit_now = true;
        _cleanup_(freep) char *log = NULL;

        va_start(ap, default_file);
        for (const char *a; (a = va_arg(ap, const char *)); )
                argv[argc++] = (char *) a;
        va_end(ap);

        *ret = NULL;
        capture_begin(&cap, STDERR_FILENO);
        r = config_load_full(ret, argc, argv, "multichatd", default_file, &exit_now);
        log = capture_end(&cap);
        if (r >= 0) {
                ASSERT_FALSE(exit_now);
                ASSERT_NOT_NULL(*ret);
        } else
                ASSERT_NULL(*ret);
        if (ret_log)
                *ret_log = TAKE_PTR(log);
        else if (*log)
                fprintf(stderr, "%s", log);
        return r;
}

/* The load fails with -EINVAL and logs exactly one line containing expect. */
static void assert_load_fails(const char *expect, const char *default_file, const char *arg1, const char *arg2) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *log = NULL;
        int r;

        r = load(&c, &log, default_file, arg1, arg2, NULL);
        if (r != -EINVAL || !strstr(log, expect) || strchr(log, '\n') != log + strlen(log) - 1) {
                fprintf(stderr, "expected -EINVAL and \"%s\", got %d and:\n%s", expect, r, log);
                abort();
        }
}

/* The file fails to load with "PATH:LINE: message". */
static void assert_file_fails(const char *content, const char *message, unsigned line) {
        _cleanup_(freep) char *path = path_in_tmp("bad.conf");
        char expect[512];

        write_file("bad.conf", content);
        snprintf(expect, sizeof expect, "%s:%u: %s", path, line, message);
        assert_load_fails(expect, "/nonexistent/multichat.conf", "--config", path);
}

static void test_strv(void) {
        _cleanup_(strv_freep) char **l = NULL, **copy = NULL;

        ASSERT_INT_EQ(strv_length(NULL), 0);
        ASSERT_FALSE(strv_contains(NULL, "a"));
        ASSERT_OK(strv_extend(&l, "a"));
        ASSERT_OK(strv_extend(&l, "b"));
        ASSERT_OK(strv_extend(&l, ""));
        ASSERT_INT_EQ(strv_length(l), 3);
        ASSERT_STREQ(l[0], "a");
        ASSERT_STREQ(l[1], "b");
        ASSERT_STREQ(l[2], "");
        ASSERT_NULL(l[3]);
        ASSERT_TRUE(strv_contains(l, "b"));
        ASSERT_TRUE(strv_contains(l, ""));
        ASSERT_FALSE(strv_contains(l, "c"));

        ASSERT_OK(strv_copy(l, &copy));
        ASSERT_TRUE(strv_equal(l, copy));
        ASSERT_TRUE(strv_equal(NULL, (char *[]) { NULL }));
        ASSERT_FALSE(strv_equal(l, NULL));
        ASSERT_FALSE(strv_equal(l, (char *[]) { (char *) "a", (char *) "c", (char *) "", NULL }));
        ASSERT_TRUE(copy != l && copy[0] != l[0]);
        ASSERT_INT_EQ(strv_length(copy), 3);
        ASSERT_STREQ(copy[1], "b");
        copy = strv_free(copy);
        ASSERT_NULL(copy);

        ASSERT_OK(strv_copy(NULL, &copy));
        ASSERT_NOT_NULL(copy);
        ASSERT_INT_EQ(strv_length(copy), 0);

        size_t n = 0;
        STRV_FOREACH(s, l)
                n++;
        ASSERT_INT_EQ(n, 3);
}

static void assert_defaults(const Config *c) {
        ASSERT_INT_EQ(strv_length(c->listen), 0);
        ASSERT_STREQ(c->redis, "redis://127.0.0.1:6379");
        ASSERT_STREQ(c->bus, "system");
        ASSERT_STREQ(c->web_root, MULTICHAT_WEB_ROOT);
        ASSERT_STREQ(c->staff_group, "multichat-staff");
        ASSERT_STREQ(c->admin_group, "multichat-admin");
        ASSERT_STREQ(c->pam_service, "multichat");
        ASSERT_INT_EQ(c->min_uid, 1000);
        ASSERT_INT_EQ(strv_length(c->allowed_origins), 0);
        ASSERT_INT_EQ(strv_length(c->metrics_allow), 0);
        ASSERT_STREQ(c->auth_helper, MULTICHAT_AUTH_HELPER);
        ASSERT_NULL(c->auth_socket);
        ASSERT_INT_EQ(c->max_message_bytes, 4096);
        ASSERT_INT_EQ(c->rate_limit, 20);
        ASSERT_INT_EQ(c->rate_burst, 40);
        ASSERT_INT_EQ(c->history_size, 1000);
        ASSERT_INT_EQ(c->history_on_join, 50);
        ASSERT_TRUE(c->session_idle_usec == 12 * USEC_PER_HOUR);
        ASSERT_TRUE(c->session_max_usec == 7 * USEC_PER_DAY);
        ASSERT_TRUE(c->keepalive_usec == 30 * USEC_PER_SEC);
        ASSERT_TRUE(c->overload_lag_usec == 250 * USEC_PER_MSEC);
        ASSERT_INT_EQ(c->max_connections, 200000);
        ASSERT_INT_EQ(c->send_queue_frames, 1024);
        ASSERT_INT_EQ(c->max_header_bytes, 16384);
        ASSERT_TRUE(c->request_timeout_usec == 10 * USEC_PER_SEC);
        ASSERT_INT_EQ(c->max_connections_per_address, 256);
        ASSERT_INT_EQ(c->login_attempts, 10);
        ASSERT_NULL(c->tls_certificate);
        ASSERT_NULL(c->tls_key);
        ASSERT_INT_EQ(c->log_level, LOG_INFO);
}

static void test_defaults(void) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL;

        ASSERT_OK(config_new(&c));
        assert_defaults(c);
        ASSERT_NULL(c->config_file);

        ASSERT_OK(load(&d, NULL, "/nonexistent/multichat.conf", "--no-config", NULL));
        assert_defaults(d);
        ASSERT_NULL(d->config_file);

        /* A missing default file is fine. */
        ASSERT_OK(load(&e, NULL, "/nonexistent/multichat.conf", NULL));
        assert_defaults(e);
        ASSERT_NULL(e->config_file);

        ASSERT_NULL(config_free(NULL));
}

static void test_every_key(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *path = path_in_tmp("all.conf");

        write_file("all.conf",
                   "\xEF\xBB\xBF# every key\n"
                   "; another comment style\n"
                   "\n"
                   "[multichat]\n"
                   "listen = 127.0.0.1:8080\n"
                   "listen=[::1]:8081\n"
                   "  listen = unix:/run/multichat/http.sock   \n"
                   "redis = redis://redis.example.org:6380/2\n"
                   "bus = unix:path=/tmp/bus\n"
                   "web-root = /srv/chat\n"
                   "staff-group = helpers\n"
                   "admin-group = wheel\n"
                   "pam-service = chat.login\n"
                   "min-uid = 500\n"
                   "allowed-origin = https://Chat.Example.org\n"
                   "allowed-origin = http://[::1]:8080\n"
                   "allowed-origin = https://chat.example.org\n"
                   "metrics-allow = 127.0.0.1 ::1\n"
                   "metrics-allow =  10.0.0.0/8  127.0.0.1 \n"
                   "auth-helper = /opt/mc/multichat-auth\n"
                   "auth-socket = /run/multichat-auth/auth.sock\n"
                   "max-message-bytes = 64K\n"
                   "rate-limit = 5\n"
                   "rate-burst = 6\n"
                   "history-size = 7\n"
                   "history-on-join = 7 ; inline comment\n"
                   "session-idle = 30min\n"
                   "session-max = 1d 12h\n"
                   "keepalive = 45s\n"
                   "overload-lag = 100ms\n"
                   "max-connections = 9\n"
                   "send-queue-frames = 10\n"
                   "max-header-bytes = 32K\n"
                   "request-timeout = 30s\n"
                   "max-connections-per-address = 0\n"
                   "login-attempts = 11\n"
                   "tls-certificate = /etc/ssl/chat.pem\n"
                   "tls-key = /etc/ssl/private/chat.key\n"
                   "log-level = debug\r\n");
        ASSERT_OK(load(&c, NULL, "/nonexistent/multichat.conf", "--config", path, NULL));

        ASSERT_STREQ(c->config_file, path);
        ASSERT_INT_EQ(strv_length(c->listen), 3);
        ASSERT_STREQ(c->listen[0], "127.0.0.1:8080");
        ASSERT_STREQ(c->listen[1], "[::1]:8081");
        ASSERT_STREQ(c->listen[2], "unix:/run/multichat/http.sock");
        ASSERT_STREQ(c->redis, "redis://redis.example.org:6380/2");
        ASSERT_STREQ(c->bus, "unix:path=/tmp/bus");
        ASSERT_STREQ(c->web_root, "/srv/chat");
        ASSERT_STREQ(c->staff_group, "helpers");
        ASSERT_STREQ(c->admin_group, "wheel");
        ASSERT_STREQ(c->pam_service, "chat.login");
        ASSERT_INT_EQ(c->min_uid, 500);
        /* Lowercased, and the duplicate dropped. */
        ASSERT_INT_EQ(strv_length(c->allowed_origins), 2);
        ASSERT_STREQ(c->allowed_origins[0], "https://chat.example.org");
        ASSERT_STREQ(c->allowed_origins[1], "http://[::1]:8080");
        /* Split on blanks, the duplicate dropped. */
        ASSERT_INT_EQ(strv_length(c->metrics_allow), 3);
        ASSERT_STREQ(c->metrics_allow[0], "127.0.0.1");
        ASSERT_STREQ(c->metrics_allow[1], "::1");
        ASSERT_STREQ(c->metrics_allow[2], "10.0.0.0/8");
        ASSERT_STREQ(c->auth_helper, "/opt/mc/multichat-auth");
        ASSERT_STREQ(c->auth_socket, "/run/multichat-auth/auth.sock");
        ASSERT_INT_EQ(c->max_message_bytes, 65536);
        ASSERT_INT_EQ(c->rate_limit, 5);
        ASSERT_INT_EQ(c->rate_burst, 6);
        ASSERT_INT_EQ(c->history_size, 7);
        ASSERT_INT_EQ(c->history_on_join, 7);
        ASSERT_TRUE(c->session_idle_usec == 30 * USEC_PER_MINUTE);
        ASSERT_TRUE(c->session_max_usec == 36 * USEC_PER_HOUR);
        ASSERT_TRUE(c->keepalive_usec == 45 * USEC_PER_SEC);
        ASSERT_TRUE(c->overload_lag_usec == 100 * USEC_PER_MSEC);
        ASSERT_INT_EQ(c->max_connections, 9);
        ASSERT_INT_EQ(c->send_queue_frames, 10);
        ASSERT_INT_EQ(c->max_header_bytes, 32768);
        ASSERT_TRUE(c->request_timeout_usec == 30 * USEC_PER_SEC);
        ASSERT_INT_EQ(c->max_connections_per_address, 0);
        ASSERT_INT_EQ(c->login_attempts, 11);
        ASSERT_STREQ(c->tls_certificate, "/etc/ssl/chat.pem");
        ASSERT_STREQ(c->tls_key, "/etc/ssl/private/chat.key");
        ASSERT_INT_EQ(c->log_level, LOG_DEBUG);
}

static void test_dropins(void) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *main_path = path_in_tmp("mc.conf");

        write_file("mc.conf",
                   "[multichat]\n"
                   "rate-limit = 5\n"
                   "rate-burst = 50\n"
                   "listen = 127.0.0.1:1\n"
                   "listen = 127.0.0.1:2\n"
                   "metrics-allow = 127.0.0.1\n");
        make_dir("mc.conf.d");
        write_file("mc.conf.d/20-b.conf", "[multichat]\nrate-limit = 7\nlisten = 127.0.0.1:4\n");
        write_file("mc.conf.d/10-a.conf", "[multichat]\nrate-limit = 6\nlisten = 127.0.0.1:3\nmin-uid = 2000\n");
        /* strcmp() order: uppercase before lowercase, whatever the locale. */
        write_file("mc.conf.d/a.conf", "[multichat]\nlogin-attempts = 2\n");
        write_file("mc.conf.d/Z.conf", "[multichat]\nlogin-attempts = 1\n");
        /* Not NAME.conf, or hidden: ignored, though they would not parse. */
        write_file("mc.conf.d/30-c.conf.bak", "garbage\n");
        write_file("mc.conf.d/.40-hidden.conf", "garbage\n");
        write_file("mc.conf.d/conf", "garbage\n");

        ASSERT_OK(load(&c, NULL, main_path, NULL));
        ASSERT_STREQ(c->config_file, main_path);
        ASSERT_INT_EQ(c->rate_limit, 7);
        ASSERT_INT_EQ(c->rate_burst, 50);
        ASSERT_INT_EQ(c->min_uid, 2000);
        ASSERT_INT_EQ(c->login_attempts, 2);
        ASSERT_INT_EQ(strv_length(c->listen), 4);
        ASSERT_STREQ(c->listen[0], "127.0.0.1:1");
        ASSERT_STREQ(c->listen[1], "127.0.0.1:2");
        ASSERT_STREQ(c->listen[2], "127.0.0.1:3");
        ASSERT_STREQ(c->listen[3], "127.0.0.1:4");
        ASSERT_INT_EQ(strv_length(c->metrics_allow), 1);

        /* An empty value resets the list; later values add again. */
        write_file("mc.conf.d/50-reset.conf", "[multichat]\nlisten =\nlisten = 127.0.0.1:9\nallowed-origin=\nmetrics-allow=\n");
        ASSERT_OK(load(&d, NULL, main_path, NULL));
        ASSERT_INT_EQ(strv_length(d->listen), 1);
        ASSERT_STREQ(d->listen[0], "127.0.0.1:9");
        ASSERT_INT_EQ(strv_length(d->allowed_origins), 0);
        ASSERT_INT_EQ(strv_length(d->metrics_allow), 0);
        d = config_free(d);

        /* Drop-ins of a missing default file still apply. */
        _cleanup_(freep) char *ghost = path_in_tmp("ghost.conf");
        make_dir("ghost.conf.d");
        write_file("ghost.conf.d/x.conf", "[multichat]\nrate-limit = 3\n");
        ASSERT_OK(load(&d, NULL, ghost, NULL));
        ASSERT_NULL(d->config_file);
        ASSERT_INT_EQ(d->rate_limit, 3);
        d = config_free(d);

        /* --no-config skips drop-ins too. */
        ASSERT_OK(load(&d, NULL, ghost, "--no-config", NULL));
        ASSERT_INT_EQ(d->rate_limit, 20);
        d = config_free(d);

        /* An error in a drop-in names the drop-in. */
        _cleanup_(freep) char *bad = path_in_tmp("mc.conf.d/60-bad.conf");
        char expect[512];
        write_file("mc.conf.d/60-bad.conf", "[multichat]\n\nrate-limit = fast\n");
        snprintf(expect, sizeof expect, "%s:3: invalid value 'fast' for key 'rate-limit'", bad);
        assert_load_fails(expect, main_path, NULL, NULL);
}

static void test_command_line(void) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL;
        _cleanup_(freep) char *path = path_in_tmp("cl.conf");

        write_file("cl.conf",
                   "[multichat]\n"
                   "rate-limit = 5\n"
                   "listen = 127.0.0.1:1\n"
                   "listen = 127.0.0.1:2\n"
                   "allowed-origin = https://a.example\n"
                   "auth-socket = /run/a.sock\n");

        ASSERT_OK(load(&c, NULL, path, "--rate-limit=30", "--listen", "[::]:80", "--listen=unix:/run/x.sock",
                       "--auth-socket=", "--session-idle", "90s", NULL));
        ASSERT_INT_EQ(c->rate_limit, 30);
        /* The command line replaces a list from the files. */
        ASSERT_INT_EQ(strv_length(c->listen), 2);
        ASSERT_STREQ(c->listen[0], "[::]:80");
        ASSERT_STREQ(c->listen[1], "unix:/run/x.sock");
        ASSERT_INT_EQ(strv_length(c->allowed_origins), 1);
        ASSERT_NULL(c->auth_socket);
        ASSERT_TRUE(c->session_idle_usec == 90 * USEC_PER_SEC);

        ASSERT_OK(load(&d, NULL, path, "--listen=", NULL));
        ASSERT_INT_EQ(strv_length(d->listen), 0);
        ASSERT_INT_EQ(d->rate_limit, 5);

        /* Reload: the same argv parsed again gives the same result. */
        ASSERT_OK(load(&e, NULL, path, "--rate-limit=30", "--listen", "[::]:80", "--listen=unix:/run/x.sock",
                       "--auth-socket=", "--session-idle", "90s", NULL));
        ASSERT_INT_EQ(e->rate_limit, 30);
        ASSERT_INT_EQ(strv_length(e->listen), 2);
        ASSERT_STREQ(e->listen[1], "unix:/run/x.sock");
}

static void test_help_version(void) {
        char *argv_help[] = { (char *) "multichatd", (char *) "--help", (char *) "--bogus", NULL };
        char *argv_version[] = { (char *) "multichatd", (char *) "--version", NULL };
        Config *c = (Config *) 0x1;
        bool exit_now = false;
        _cleanup_(freep) char *out = NULL, *out2 = NULL;
        Capture cap;

        capture_begin(&cap, STDOUT_FILENO);
        ASSERT_OK(config_load_full(&c, 2, argv_help, "multichatd", "/nonexistent", &exit_now));
        out = capture_end(&cap);
        ASSERT_TRUE(exit_now);
        ASSERT_NULL(c);
        ASSERT_NOT_NULL(strstr(out, "--listen=ADDR:PORT"));
        ASSERT_NOT_NULL(strstr(out, "--session-max=TIME"));
        ASSERT_NOT_NULL(strstr(out, "--no-config"));

        exit_now = false;
        c = (Config *) 0x1;
        capture_begin(&cap, STDOUT_FILENO);
        ASSERT_OK(config_load_full(&c, 2, argv_version, "multichatd", "/nonexistent", &exit_now));
        out2 = capture_end(&cap);
        ASSERT_TRUE(exit_now);
        ASSERT_NULL(c);
        ASSERT_STREQ(out2, "multichatd " PACKAGE_VERSION "\n");
}

static void test_file_errors(void) {
        char longline[400];

        assert_file_fails("[multichat]\nrate-limit = 5\nfoo = 1\n", "unknown key 'foo'", 3);
        assert_file_fails("rate-limit = 5\n[multichat]\n", "key 'rate-limit' outside of the [multichat] section", 1);
        assert_file_fails("[multichat]\n[other]\nrate-limit = 5\n", "unknown section [other], expected [multichat]", 2);
        assert_file_fails("[multichat]\n[empty]\n", "unknown section [empty]", 2);
        assert_file_fails("[multichat\n", "syntax error: missing ']'", 1);
        assert_file_fails("[multichat] x\n", "syntax error: text after ']'", 1);
        assert_file_fails("[multichat]\n# ok\njust words\n", "syntax error: expected 'key = value'", 3);
        /* An indented line is not a continuation of the previous value. */
        assert_file_fails("[multichat]\nweb-root = /srv\n    /www\n", "syntax error", 3);
        assert_file_fails("[multichat]\nconfig = /x\n", "'config' may only be given on the command line", 2);
        assert_file_fails("[multichat]\nrate-limit = 1\nrate-limit = -1\n",
                          "invalid value '-1' for key 'rate-limit': expected an integer from 1 to 10000", 3);
        assert_file_fails("[multichat]\nweb-root = /a\x01\n", "invalid value '/a\x01' for key 'web-root': contains control characters", 2);

        memset(longline, 'x', sizeof longline);
        memcpy(longline, "[multichat]\nweb-root = /", 24);
        strcpy(longline + sizeof longline - 2, "\n");
        assert_file_fails(longline, "line too long", 2);

        /* Each kind of value, wrong. */
        static const struct { const char *key, *value, *reason; } bad[] = {
                { "listen", "8080", "expected ADDR:PORT" },
                { "listen", "127.0.0.1:0", "expected ADDR:PORT" },
                { "listen", "127.0.0.1:65536", "expected ADDR:PORT" },
                { "listen", "localhost:80", "expected ADDR:PORT" },
                { "listen", "::1:80", "expected ADDR:PORT" },
                { "listen", "[::1]80", "expected ADDR:PORT" },
                { "listen", "unix:relative", "expected ADDR:PORT" },
                { "redis", "http://x", "expected redis://" },
                { "redis", "redis://", "expected redis://" },
                { "redis", "redis://h:0", "expected redis://" },
                { "redis", "redis://h/x", "expected redis://" },
                { "redis", "unix:/r.sock?db=", "expected redis://" },
                { "redis", "unix:/r.sock?x=1", "expected redis://" },
                { "bus", "user", "expected 'system', 'session'" },
                { "web-root", "relative/dir", "expected an absolute path" },
                { "web-root", "", "expected an absolute path" },
                { "staff-group", "", "expected a group name" },
                { "staff-group", "1abc", "expected a group name" },
                { "admin-group", "a b", "expected a group name" },
                { "admin-group", "abcdefghijklmnopqrstuvwxyz0123456789", "expected a group name" },
                { "pam-service", "../etc", "expected a PAM service name" },
                { "pam-service", "a/b", "expected a PAM service name" },
                { "min-uid", "0", "expected an integer from 1 to 4294967294" },
                { "min-uid", "4294967295", "expected an integer from 1" },
                { "allowed-origin", "*", "expected http://HOST" },
                { "allowed-origin", "https://a.example/", "expected http(s)://HOST[:PORT], without a path" },
                { "allowed-origin", "https://a.example:0", "expected http(s)://HOST[:PORT]" },
                { "metrics-allow", "localhost", "'localhost' is not an IPv4 or IPv6 address" },
                { "metrics-allow", "::1 10.0.0.0/33", "'10.0.0.0/33' is not an IPv4 or IPv6 address" },
                { "metrics-allow", "127.0.0.1:9090", "'127.0.0.1:9090' is not an IPv4 or IPv6 address" },
                { "auth-socket", "sock", "expected an absolute path" },
                { "max-message-bytes", "2M", "expected a size from 64 to 1048576 bytes" },
                { "max-message-bytes", "63", "expected a size from 64" },
                { "max-message-bytes", "4Q", "expected a size" },
                { "max-message-bytes", "99999999999999999999999G", "expected a size" },
                { "rate-limit", "", "expected an integer" },
                { "rate-limit", "0", "expected an integer" },
                { "rate-limit", "+5", "expected an integer" },
                { "rate-limit", "5x", "expected an integer" },
                { "rate-limit", "10001", "expected an integer" },
                { "rate-burst", "18446744073709551616", "expected an integer" },
                { "history-size", "0x10", "expected an integer" },
                { "max-connections", "4294967296", "expected an integer" },
                { "send-queue-frames", "0", "expected an integer" },
                { "max-header-bytes", "4K", "expected a size from 8192 to 65536 bytes" },
                { "max-header-bytes", "65537", "expected a size from 8192 to 65536 bytes" },
                { "request-timeout", "500ms", "expected a time span from 1s to 10min" },
                { "request-timeout", "11min", "expected a time span from 1s to 10min" },
                { "max-connections-per-address", "-1", "expected an integer" },
                { "login-attempts", "1.5", "expected an integer" },
                { "session-idle", "0", "expected a time span from 1s to 366d" },
                { "session-idle", "12 parsecs", "expected a time span" },
                { "session-max", "400d", "expected a time span" },
                { "keepalive", "2h", "expected a time span from 1s to 1h" },
                { "keepalive", "500ms", "expected a time span from 1s to 1h" },
                { "overload-lag", "5ms", "expected a time span from 10ms to 1h" },
                { "tls-key", "key.pem", "expected an absolute path" },
                { "log-level", "loud", "expected emerg, alert" },
                { "redis-sentinel", "localhost:26379", "expected IPv4:PORT or [IPv6]:PORT" },
                { "redis-sentinel", "10.0.0.1", "expected IPv4:PORT" },
                { "redis-sentinel", "10.0.0.1:26379 10.0.0.2:0", "expected IPv4:PORT" },
                { "redis-cluster", "10.0.0.1", "expected HOST:PORT or [IPv6]:PORT" },
                { "redis-cluster", "node-1:0", "expected HOST:PORT" },
                { "redis-cluster", "node-1:65536", "expected HOST:PORT" },
                { "redis-cluster", "-node:6379", "expected HOST:PORT" },
                { "redis-cluster", "[fd00::1:6379", "expected HOST:PORT" },
                { "redis-cluster", "[not-v6]:6379", "expected HOST:PORT" },
                { "redis-cluster", "fd00::1:6379", "expected HOST:PORT" },
                { "redis-cluster", "a:1, b:2 c:x", "expected HOST:PORT" },
                { "redis-master", "", "expected 1 to 128 letters" },
                { "redis-master", "my master", "expected 1 to 128 letters" },
                { "redis-user", "a b", "expected up to 128 letters" },
                { "redis-password-file", "relative/path", "expected an absolute path or the name of a credential" },
                { "redis-password-file", "..", "expected an absolute path or the name of a credential" },
                { "redis-sentinel-password-file", "a:b", "expected an absolute path or the name" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char content[256], expect[256];

                snprintf(content, sizeof content, "[multichat]\n%s = %s\n", bad[i].key, bad[i].value);
                snprintf(expect, sizeof expect, "invalid value '%s' for key '%s': %s",
                         bad[i].value, bad[i].key, bad[i].reason);
                assert_file_fails(content, expect, 2);
        }
}

static void test_redis_keys(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *path = path_in_tmp("redis.conf");
        const char *nf = "/nonexistent/multichat.conf";

        write_file("redis.conf",
                   "[multichat]\n"
                   "redis-sentinel = 10.0.0.1:26379, 10.0.0.2:26379\n"
                   "redis-sentinel = [fd00::3]:26379 10.0.0.1:26379\n"
                   "redis-master = mymaster\n"
                   "redis-user = multichat\n"
                   "redis-password-file = redis-password\n"
                   "redis-sentinel-user = sentinel-user\n"
                   "redis-sentinel-password-file = /etc/multichat/sentinel-password\n");
        ASSERT_OK(load(&c, NULL, nf, "--config", path, NULL));
        ASSERT_INT_EQ(strv_length(c->redis_sentinels), 3);
        ASSERT_STREQ(c->redis_sentinels[2], "[fd00::3]:26379");
        ASSERT_STREQ(c->redis_master, "mymaster");
        ASSERT_STREQ(c->redis_user, "multichat");
        ASSERT_STREQ(c->redis_password_file, "redis-password");
        ASSERT_STREQ(c->redis_sentinel_user, "sentinel-user");
        ASSERT_STREQ(c->redis_sentinel_password_file, "/etc/multichat/sentinel-password");
        c = config_free(c);

        /* The command line empties the list, then adds. */
        ASSERT_OK(load(&c, NULL, nf, "--config", path, "--redis-sentinel=", "--redis-sentinel=10.9.9.9:1", NULL));
        ASSERT_INT_EQ(strv_length(c->redis_sentinels), 1);
        c = config_free(c);

        /* A cluster's seeds: names too, several per value, a list in the file. */
        write_file("cluster.conf",
                   "[multichat]\n"
                   "redis-cluster = node-1.example:7000, 10.0.0.2:7001\n"
                   "redis-cluster = [fd00::3]:7002 node-1.example:7000\n");
        free(path);
        path = path_in_tmp("cluster.conf");
        ASSERT_OK(load(&c, NULL, nf, "--config", path, NULL));
        ASSERT_INT_EQ(strv_length(c->redis_cluster), 3);
        ASSERT_STREQ(c->redis_cluster[0], "node-1.example:7000");
        ASSERT_STREQ(c->redis_cluster[2], "[fd00::3]:7002");
        c = config_free(c);
        ASSERT_OK(load(&c, NULL, nf, "--config", path, "--redis-cluster=", "--redis-cluster=127.0.0.1:7000", NULL));
        ASSERT_INT_EQ(strv_length(c->redis_cluster), 1);
        c = config_free(c);
        assert_load_fails("redis-cluster and redis-sentinel exclude each other", nf, "--redis-cluster=h:1",
                          "--redis-sentinel=10.0.0.1:1");
        assert_load_fails("redis-cluster and redis exclude each other", nf, "--redis-cluster=h:1",
                          "--redis=unix:/run/redis/redis.sock");

        assert_load_fails("redis-sentinel and redis-master must be set together", nf, "--redis-master=m", NULL);
        assert_load_fails("redis-sentinel and redis-master must be set together", nf, "--redis-sentinel=10.0.0.1:1", NULL);
        assert_load_fails("redis-user needs redis-password-file", nf, "--redis-user=u", NULL);
        assert_load_fails("redis-sentinel-user needs redis-sentinel-password-file", nf, "--redis-sentinel-user=u", NULL);
}

static void test_read_secret(void) {
        _cleanup_(freep) char *dir = path_in_tmp("creds"), *file = NULL, *secret = NULL;
        char big[CONFIG_SECRET_MAX + 2];

        make_dir("creds");
        ASSERT_TRUE(asprintf(&file, "%s/pw", dir) >= 0);
        write_file("creds/pw", "s3cret\n");
        ASSERT_OK(config_read_secret(file, &secret));
        ASSERT_STREQ(secret, "s3cret");
        secret = mfree(secret);

        /* A bare name is a credential of the unit. */
        ASSERT_OK(unsetenv("CREDENTIALS_DIRECTORY"));
        ASSERT_ERROR(config_read_secret("pw", &secret), ENXIO);
        ASSERT_OK(setenv("CREDENTIALS_DIRECTORY", dir, 1));
        write_file("creds/pw", "with space\r\n");
        ASSERT_OK(config_read_secret("pw", &secret));
        ASSERT_STREQ(secret, "with space");
        secret = mfree(secret);
        ASSERT_ERROR(config_read_secret("missing", &secret), ENOENT);

        write_file("creds/pw", "");
        ASSERT_ERROR(config_read_secret("pw", &secret), EBADMSG);
        write_file("creds/pw", "\n");
        ASSERT_ERROR(config_read_secret("pw", &secret), EBADMSG);
        write_file("creds/pw", "two\nlines\n");
        ASSERT_ERROR(config_read_secret("pw", &secret), EBADMSG);
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        write_file("creds/pw", big);
        ASSERT_ERROR(config_read_secret("pw", &secret), EBADMSG);
        big[sizeof big - 2] = '\0';
        write_file("creds/pw", big);
        ASSERT_OK(config_read_secret("pw", &secret));
        ASSERT_INT_EQ(strlen(secret), CONFIG_SECRET_MAX);
        ASSERT_OK(unsetenv("CREDENTIALS_DIRECTORY"));
        ASSERT_OK(unlink(file));
}

static void test_file_missing(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *log = NULL, *missing = path_in_tmp("missing.conf");
        char expect[512];

        ASSERT_ERROR(load(&c, &log, "/nonexistent/multichat.conf", "--config", missing, NULL), ENOENT);
        snprintf(expect, sizeof expect, "Failed to open configuration file %s: ", missing);
        ASSERT_NOT_NULL(strstr(log, expect));

        /* A directory is not a configuration file. */
        free(log);
        log = NULL;
        ASSERT_ERROR(load(&c, &log, "/nonexistent/multichat.conf", "--config", tmpdir, NULL), EINVAL);
        ASSERT_NOT_NULL(strstr(log, "not a regular file"));
}

static void test_command_line_errors(void) {
        const char *nf = "/nonexistent/multichat.conf";

        assert_load_fails("Unknown option '--frobnicate'", nf, "--frobnicate", NULL);
        assert_load_fails("Unknown option '-x'", nf, "-x", NULL);
        assert_load_fails("Option '--listen' requires an argument", nf, "--listen", NULL);
        assert_load_fails("Option '--no-config=yes' takes no argument", nf, "--no-config=yes", NULL);
        assert_load_fails("Unexpected argument 'extra'", nf, "extra", NULL);
        assert_load_fails("Options '--config' and '--no-config' exclude each other", nf, "--config=/x", "--no-config");
        assert_load_fails("Option '--config' requires a file name", nf, "--config=", NULL);
        assert_load_fails("Invalid value 'abc' for option '--rate-limit': expected an integer from 1 to 10000",
                          nf, "--rate-limit=abc", NULL);
        assert_load_fails("Invalid value '-1' for option '--min-uid'", nf, "--min-uid", "-1");
        assert_load_fails("Invalid value 'nope' for option '--log-level'", nf, "--log-level=nope", NULL);

        /* Rules between keys. */
        assert_load_fails("tls-certificate and tls-key must be set together", nf, "--tls-key=/k.pem", NULL);
        assert_load_fails("tls-certificate and tls-key must be set together", nf, "--tls-certificate=/c.pem", NULL);
        assert_load_fails("history-on-join (50) exceeds history-size (10)", nf, "--history-size=10", NULL);
        assert_load_fails("session-idle exceeds session-max", nf, "--session-idle=8d", NULL);
}

static void test_timespan(void) {
        static const struct { const char *s; uint64_t usec; } good[] = {
                { "12h", 12 * USEC_PER_HOUR },
                { "30min", 30 * USEC_PER_MINUTE },
                { "7d", 7 * USEC_PER_DAY },
                { "90s", 90 * USEC_PER_SEC },
                { "90", 90 * USEC_PER_SEC },
                { "1h 30min", 90 * USEC_PER_MINUTE },
                { "1h30m", 90 * USEC_PER_MINUTE },
                { " 2 weeks ", 14 * USEC_PER_DAY },
                { "500ms", 500 * USEC_PER_MSEC },
                { "3us", 3 },
                { "1day 1hour 1minute 1second", USEC_PER_DAY + USEC_PER_HOUR + USEC_PER_MINUTE + USEC_PER_SEC },
        };
        static const char *const bad[] = {
                "", " ", "h", "-1s", "1x", "1.5h", "12 h m", "1H", "5min-", "99999999999999999999",
                "18446744073709551615d", "10000000000000d 10000000000000d",
        };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 0;
                ASSERT_OK(config_parse_timespan(good[i].s, &v));
                if (v != good[i].usec) {
                        fprintf(stderr, "'%s': %" PRIu64 " != %" PRIu64 "\n", good[i].s, v, good[i].usec);
                        abort();
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 4242;
                if (config_parse_timespan(bad[i], &v) >= 0) {
                        fprintf(stderr, "'%s' parsed as %" PRIu64 "\n", bad[i], v);
                        abort();
                }
                ASSERT_INT_EQ(v, 4242);
        }
}

static void test_validators(void) {
        static const char *const listen_good[] = {
                "0.0.0.0:1", "127.0.0.1:65535", "[::]:8080", "[::ffff:1.2.3.4]:443",
                "unix:/run/multichat/http.sock",
        };
        static const char *const listen_bad[] = {
                "", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:80x", "1.2.3:80", "[::1]", "[::1]:", "[x]:80",
                "host:80", "unix:", "unix:@abstract",
                "unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        };
        static const char *const redis_good[] = {
                "redis://localhost", "redis://localhost:6379", "redis://10.0.0.1:6379/15",
                "redis://[::1]:6379/0", "redis://r-1.example.org/3", "unix:/run/redis/redis-server.sock",
                "unix:/tmp/r.sock?db=2",
        };
        static const char *const redis_bad[] = {
                "", "redis:/x", "redis://:6379", "redis://h:6379/", "redis://h:6379/65536", "redis://h_h",
                "redis://h:6379/1/2", "unix:", "unix:x", "unix:/x?db=-1", "rediss://h",
        };

        for (size_t i = 0; i < ELEMENTSOF(listen_good); i++)
                if (!config_listen_is_valid(listen_good[i])) {
                        fprintf(stderr, "listen '%s' rejected\n", listen_good[i]);
                        abort();
                }
        for (size_t i = 0; i < ELEMENTSOF(listen_bad); i++)
                if (config_listen_is_valid(listen_bad[i])) {
                        fprintf(stderr, "listen '%s' accepted\n", listen_bad[i]);
                        abort();
                }
        for (size_t i = 0; i < ELEMENTSOF(redis_good); i++)
                if (!config_redis_is_valid(redis_good[i])) {
                        fprintf(stderr, "redis '%s' rejected\n", redis_good[i]);
                        abort();
                }
        for (size_t i = 0; i < ELEMENTSOF(redis_bad); i++)
                if (config_redis_is_valid(redis_bad[i])) {
                        fprintf(stderr, "redis '%s' accepted\n", redis_bad[i]);
                        abort();
                }
}

/* The shipped packaging/multichat.conf parses, and the defaults it shows
 * in comments are the real ones: uncommented, they change nothing. */
static void test_shipped_file(void) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *shipped = NULL, *uncommented = path_in_tmp("uncommented.conf");
        const char *root = getenv("MULTICHAT_SOURCE_ROOT");
        char line[512];
        FILE *in, *out;
        unsigned n = 0;

        if (!root) {
                fprintf(stderr, "MULTICHAT_SOURCE_ROOT unset, skipping the shipped file\n");
                return;
        }
        ASSERT_TRUE(asprintf(&shipped, "%s/packaging/multichat.conf", root) >= 0);
        ASSERT_OK(load(&c, NULL, "/nonexistent/multichat.conf", "--config", shipped, NULL));
        assert_defaults(c);

        in = fopen(shipped, "re");
        ASSERT_NOT_NULL(in);
        out = fopen(uncommented, "we");
        ASSERT_NOT_NULL(out);
        while (fgets(line, sizeof line, in)) {
                /* Install paths depend on the build's prefix. */
                bool setting = line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' && strchr(line, '=') &&
                               strncmp(line, "#web-root=", 10) != 0 && strncmp(line, "#auth-helper=", 13) != 0;
                ASSERT_TRUE(fputs(setting ? line + 1 : line, out) >= 0);
                n += setting;
        }
        fclose(in);
        ASSERT_INT_EQ(fclose(out), 0);
        ASSERT_TRUE(n >= 20);

        ASSERT_OK(load(&d, NULL, "/nonexistent/multichat.conf", "--config", uncommented, NULL));
        assert_defaults(d);
}

int main(void) {
        ASSERT_NOT_NULL(mkdtemp(tmpdir));

        test_strv();
        test_defaults();
        test_every_key();
        test_dropins();
        test_command_line();
        test_help_version();
        test_file_errors();
        test_file_missing();
        test_redis_keys();
        test_read_secret();
        test_command_line_errors();
        test_timespan();
        test_validators();
        test_shipped_file();

        remove_tree();
        return 0;
}
