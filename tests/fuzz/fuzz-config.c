/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the configuration: the INI file, long options, and the value parsers they share. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strv.h"

/* Options the input may set on the command line. --config, --no-config,
 * --help and --version are left out: a fuzzed --config could name a FIFO
 * or a device and block. */
static const char *const options[] = {
        "listen", "redis", "bus", "web-root", "staff-group", "admin-group", "pam-service",
        "min-uid", "allowed-origin", "auth-helper", "auth-socket", "max-message-bytes",
        "rate-limit", "rate-burst", "history-size", "history-on-join", "session-idle",
        "session-max", "overload-lag", "keepalive", "max-connections", "send-queue-frames",
        "login-attempts", "tls-certificate", "tls-key", "log-level",
};

#define ARGS_MAX 16

static char config_path[PATH_MAX];

static void remove_dir(void) {
        (void) unlink(config_path);
        *strrchr(config_path, '/') = '\0';
        (void) rmdir(config_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        char dir[] = "/tmp/fuzz-config-XXXXXX";

        /* Every input is an error in the making: logging them would only
         * slow the fuzzer down. */
        log_set_max_level(LOG_EMERG);
        FUZZ_CHECK(mkdtemp(dir));
        snprintf(config_path, sizeof(config_path), "%s/multichat.conf", dir);
        atexit(remove_dir);
        return 0;
}

static void write_file(const uint8_t *data, size_t size) {
        _cleanup_(closep) int fd = open(config_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t done = 0;

        FUZZ_CHECK(fd >= 0);
        while (done < size) {
                ssize_t n = write(fd, data + done, size - done);
                FUZZ_CHECK(n > 0);
                done += (size_t) n;
        }
}

static void check_config(const Config *c) {
        FUZZ_CHECK(c->history_on_join <= c->history_size);
        FUZZ_CHECK(c->session_idle_usec <= c->session_max_usec);
        FUZZ_CHECK(!c->tls_certificate == !c->tls_key);
        FUZZ_CHECK(c->redis && config_redis_is_valid(c->redis));
        STRV_FOREACH(l, c->listen)
                FUZZ_CHECK(config_listen_is_valid(*l));
        FUZZ_CHECK(c->max_message_bytes >= 64 && c->max_message_bytes <= 1024 * 1024);
        FUZZ_CHECK(c->rate_limit >= 1 && c->rate_burst >= 1);
}

/* Each later NUL-separated piece: an option picked by its first byte, the
 * rest its value; each piece also goes through the shared validators. */
static size_t build_argv(const char *rest, const char *end, char **args, char *argv[]) {
        size_t n = 0;

        argv[n++] = (char *) "multichatd";
        argv[n++] = (char *) "--config";
        argv[n++] = config_path;
        for (const char *p = rest; p < end && n < ARGS_MAX + 3; p += strlen(p) + 1) {
                uint64_t usec;

                (void) config_parse_timespan(p, &usec);
                (void) config_listen_is_valid(p);
                (void) config_redis_is_valid(p);
                if (!*p)
                        continue;
                FUZZ_CHECK(asprintf(&args[n], "--%s=%s", options[(uint8_t) *p % ELEMENTSOF(options)], p + 1) >= 0);
                argv[n] = args[n];
                n++;
        }
        argv[n] = NULL;
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *copy = NULL;
        char *args[ARGS_MAX + 4] = {}, *argv[ARGS_MAX + 4];
        const char *nul;
        size_t file_size, argc;
        Config *c = NULL;
        int r;

        /* The file is everything up to the first NUL byte. */
        copy = malloc(size + 1);
        FUZZ_CHECK(copy);
        memcpy(copy, data, size);
        copy[size] = '\0';
        nul = memchr(copy, '\0', size);
        file_size = nul ? (size_t) (nul - copy) : size;
        write_file(data, file_size);

        argc = build_argv(copy + file_size + 1, copy + size, args, argv);
        r = config_load_full(&c, (int) argc, argv, "multichatd", config_path, NULL);
        if (r >= 0) {
                FUZZ_CHECK(c);
                check_config(c);
                config_free(c);
        } else
                FUZZ_CHECK(r == -EINVAL || r == -ENOMEM || r == -EFBIG);

        for (size_t i = 0; i < ELEMENTSOF(args); i++)
                free(args[i]);
        return 0;
}
