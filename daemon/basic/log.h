/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging: the journal with structured fields under systemd, stderr otherwise. */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "basic/macro.h"

typedef struct LogField {
        const char *key;        /* journal field name, e.g. "USER" */
        const char *value;      /* NULL values are skipped */
} LogField;

#define LOG_FIELDS(...) ((const LogField[]) { __VA_ARGS__, { NULL, NULL } })

/* Stable ids so that journalctl MESSAGE_ID= and fail2ban can match. */
#define MESSAGE_ID_LOGIN_FAILED "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f60"
#define MESSAGE_ID_LOGIN_OK     "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f61"
#define MESSAGE_ID_KICKED       "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f62"
#define MESSAGE_ID_REDIS_LOST   "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f63"
#define MESSAGE_ID_REDIS_BACK   "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f64"
#define MESSAGE_ID_ROOM_CHANGED "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f65"
#define MESSAGE_ID_RATE_LIMITED "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f66"
#define MESSAGE_ID_REDIS_REPLICA      "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f67"
#define MESSAGE_ID_REDIS_CREDENTIALS  "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f68"
#define MESSAGE_ID_REDIS_SWITCHED     "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f69"
#define MESSAGE_ID_REDIS_DATA_LOST   "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f7a"
#define MESSAGE_ID_REDIS_ROLLED_BACK "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f7b"

/* Picks the journal when stderr is connected to it (JOURNAL_STREAM) or
 * when asked, stderr otherwise. */
void log_setup(const char *ident);
void log_set_max_level(int level);
int log_get_max_level(void);
int log_parse_level(const char *s);

/* All return -abs(error) (or 0 when error is 0), so callers can write
 * `return log_error_errno(r, "…: %m");`. %m prints strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);
int log_struct_internal(int level, int error, const char *message_id, const LogField *fields,
                        const char *file, int line, const char *func,
                        const char *format, ...) _printf_(8, 9);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_notice_errno(e, ...)  log_full_errno(LOG_NOTICE, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* log_struct(LOG_NOTICE, 0, MESSAGE_ID_LOGIN_FAILED,
 *            LOG_FIELDS({"USER", user}, {"REMOTE_ADDR", addr}),
 *            "Login failed for %s", user); */
#define log_struct(level, error, message_id, fields, ...) \
        log_struct_internal((level), (error), (message_id), (fields), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
