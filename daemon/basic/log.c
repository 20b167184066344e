/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging: the journal with structured fields under systemd, stderr otherwise. */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "basic/log.h"

#define LOG_LINE_MAX 2048
#define LOG_FIELDS_MAX 16

static int arg_log_max_level = LOG_INFO;
static bool arg_log_to_journal = false;
static const char *arg_log_ident = "multichat";

/* JOURNAL_STREAM names the device:inode of stderr when systemd connected it
 * to the journal; only then is the journal the right target. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(const char *ident) {
        const char *e;

        if (ident)
                arg_log_ident = ident;
        arg_log_to_journal = stderr_is_journal();

        e = getenv("MULTICHAT_LOG_LEVEL");
        if (e && log_parse_level(e) >= 0)
                arg_log_max_level = log_parse_level(e);
}

void log_set_max_level(int level) {
        arg_log_max_level = level;
}

int log_get_max_level(void) {
        return arg_log_max_level;
}

int log_parse_level(const char *s) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
                [LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i]))
                        return (int) i;
        if (streq(s, "error"))
                return LOG_ERR;
        return -EINVAL;
}

static void log_emit(int level, int error, const char *message_id, const LogField *fields,
                     const char *file, int line, const char *func, const char *message) {
        if (arg_log_to_journal) {
                char buf[LOG_FIELDS_MAX + 8][256];
                struct iovec iov[LOG_FIELDS_MAX + 8];
                char *msg;
                size_t n = 0;

                if (asprintf(&msg, "MESSAGE=%s", message) < 0)
                        return;
                iov[n++] = (struct iovec) { msg, strlen(msg) };
                snprintf(buf[n], sizeof buf[n], "PRIORITY=%i", level);
                iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                snprintf(buf[n], sizeof buf[n], "SYSLOG_IDENTIFIER=%s", arg_log_ident);
                iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                snprintf(buf[n], sizeof buf[n], "CODE_FILE=%s", file);
                iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                snprintf(buf[n], sizeof buf[n], "CODE_LINE=%i", line);
                iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                snprintf(buf[n], sizeof buf[n], "CODE_FUNC=%s", func);
                iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                if (error != 0) {
                        snprintf(buf[n], sizeof buf[n], "ERRNO=%i", error);
                        iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                }
                if (message_id) {
                        snprintf(buf[n], sizeof buf[n], "MESSAGE_ID=%s", message_id);
                        iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                }
                for (size_t i = 0; fields && fields[i].key && n < ELEMENTSOF(iov); i++) {
                        if (!fields[i].value)
                                continue;
                        snprintf(buf[n], sizeof buf[n], "%s=%s", fields[i].key, fields[i].value);
                        iov[n] = (struct iovec) { buf[n], strlen(buf[n]) }, n++;
                }
                (void) sd_journal_sendv(iov, (int) n);
                free(msg);
                return;
        }

        fprintf(stderr, "%s: %s", arg_log_ident, message);
        for (size_t i = 0; fields && fields[i].key; i++)
                if (fields[i].value)
                        fprintf(stderr, " %s=%s", fields[i].key, fields[i].value);
        fputc('\n', stderr);
}

static int log_dispatch(int level, int error, const char *message_id, const LogField *fields,
                        const char *file, int line, const char *func,
                        const char *format, va_list ap) {
        char message[LOG_LINE_MAX];
        int saved = errno;

        error = abs(error);
        if ((level & LOG_PRIMASK) > arg_log_max_level)
                return -error;

        /* %m in the format prints the error we were given, not whatever
         * errno happens to hold. */
        errno = error;
        vsnprintf(message, sizeof message, format, ap);
        log_emit(level & LOG_PRIMASK, error, message_id, fields, file, line, func, message);
        errno = saved;
        return -error;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, NULL, NULL, file, line, func, format, ap);
        va_end(ap);
        return r;
}

int log_struct_internal(int level, int error, const char *message_id, const LogField *fields,
                        const char *file, int line, const char *func,
                        const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, message_id, fields, file, line, func, format, ap);
        va_end(ap);
        return r;
}
