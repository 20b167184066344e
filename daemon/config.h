/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's settings: one table drives the [multichat] INI keys and the long options. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/macro.h"
#include "basic/time-util.h"


/* The section every key must live in. */
#define CONFIG_SECTION "multichat"

typedef struct Config {
        char **listen;              /* "ADDR:PORT", "[v6]:PORT", or "unix:/path"; repeatable; empty = socket activation only */
        char *redis;                /* "redis://host[:port][/db]" or "unix:/path[?db=N]"; unused with sentinels or a cluster */
        char **redis_sentinels;     /* "IPv4:PORT" / "[IPv6]:PORT"; repeatable; the master is asked of them */
        char **redis_cluster;       /* "HOST:PORT" / "[IPv6]:PORT"; repeatable; seed nodes of a Redis Cluster */
        char *redis_master;         /* the master's name at the sentinels */
        char *redis_user;           /* ACL user; NULL: AUTH with the password alone */
        char *redis_password_file;  /* absolute path, or a credential name under $CREDENTIALS_DIRECTORY */
        char *redis_sentinel_user;
        char *redis_sentinel_password_file;
        char *bus;                  /* "system" | "session" | a D-Bus address ("unix:path=/…") */
        char *web_root;             /* absolute directory of the static files */
        char *staff_group;          /* members may join staff-only rooms */
        char *admin_group;          /* members may administer over D-Bus */
        char *pam_service;          /* PAM service name used by the auth helper */
        uid_t min_uid;              /* accounts below this uid may not log in */
        char **allowed_origins;     /* "scheme://host[:port]", lowercase; repeatable */
        char **metrics_allow;       /* addresses or CIDR prefixes that may GET /metrics; empty = off */
        char *auth_helper;          /* multichat-auth to spawn (the daemon prefers one beside its own binary) */
        char *auth_socket;          /* connect here instead of spawning; NULL = spawn */
        size_t max_message_bytes;   /* largest WebSocket message accepted */
        unsigned rate_limit;        /* commands per second per connection */
        unsigned rate_burst;        /* token bucket depth */
        unsigned history_size;      /* messages kept per room in Redis; 0 = none */
        unsigned history_on_join;   /* messages replayed to a joiner; <= history_size */
        uint64_t session_idle_usec; /* a session unused this long expires */
        uint64_t session_max_usec;  /* no session lives longer; >= session_idle_usec */
        uint64_t overload_lag_usec; /* refuse new messages while relaying them this late */
        uint64_t keepalive_usec;    /* ping a WebSocket quiet this long; drop it after as long again */
        unsigned max_connections;   /* WebSocket connections on this daemon */
        unsigned send_queue_frames; /* per-connection bounded outgoing queue */
        size_t max_header_bytes;    /* a request head's budget: request line and headers */
        uint64_t request_timeout_usec; /* a request head, and then its body, must arrive within this */
        unsigned max_connections_per_address; /* per IPv4 address or IPv6 /64; 0 = no limit */
        unsigned login_attempts;    /* per address and per username per minute */
        char *tls_certificate;      /* PEM; both or neither with tls_key */
        char *tls_key;
        int log_level;              /* LOG_ERR … LOG_DEBUG */
        char *config_file;          /* the main file that was read; NULL when none (--no-config, or missing default) */
} Config;

/* A Config holding the built-in defaults. */
int config_new(Config **ret);
Config *config_free(Config *c);
DEFINE_CLEANUP_FUNC(Config *, config_free);

/* Does it all: parses argv (--help and --version print to stdout, then this
 * returns 0 with *ret = NULL and *ret_exit = true), loads the file named by
 * --config (or MULTICHAT_CONFIG_FILE) and then every NAME.conf in <file>.d/
 * in lexical order, then applies the command line. Errors are logged naming the file
 * and line, or the option, and return -EINVAL (-ENOENT for a missing
 * --config file, -ENOMEM, or an I/O error).
 *
 * Reload (SIGHUP): call again with the same argv; the result is a fresh
 * Config and the old one is never touched. ret_exit may be NULL. */
int config_load(Config **ret, int argc, char *argv[], const char *program, bool *ret_exit);

/* Same as config_load() but with another default main file, for tests. */
int config_load_full(Config **ret, int argc, char *argv[], const char *program,
                     const char *default_file, bool *ret_exit);

/* Parses a time span: "90s", "30min", "12h", "7d", "1h 30min", "2w";
 * a bare number is seconds. Units: us usec ms msec s sec second(s)
 * m min minute(s) h hr hour(s) d day(s) w week(s). */
int config_parse_timespan(const char *s, uint64_t *ret_usec);

/* Validators shared with whoever parses these strings again later. */
bool config_listen_is_valid(const char *s);
bool config_redis_is_valid(const char *s);

/* Reads a password named by a *-password-file value: a value with a '/'
 * is an absolute path, a bare name is a systemd credential, the file of
 * that name in $CREDENTIALS_DIRECTORY (LoadCredential=). One line of at
 * most CONFIG_SECRET_MAX bytes; one trailing newline is dropped. -ENXIO
 * for a credential name without $CREDENTIALS_DIRECTORY, -EBADMSG for an
 * empty, too long or multi-line file, else -errno of open/read. */
#define CONFIG_SECRET_MAX 512
int config_read_secret(const char *value, char **ret);
