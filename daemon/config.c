/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's settings: one table drives the [multichat] INI keys and the long options. */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <ini.h>

#include "config-build.h"
#include "config.h"
#include "basic/log.h"
#include "basic/strv.h"
#include "redis/redis.h"
#include "redis/sentinel.h"
#include "metrics.h"

#define CONFIG_FILE_MAX (1024 * 1024)   /* bytes in one file */
#define CONFIG_DROPINS_MAX 1024         /* files in one .d directory */
#define REASON_MAX 160
#define CONFIG_REDIS_DEFAULT "redis://127.0.0.1:6379"
#define UNIX_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)
#define HOSTNAME_MAX 253

typedef struct ConfigOption ConfigOption;

/* Parses value into the field at the option's offset. On a bad value it
 * returns -EINVAL and writes why into reason; the caller names the place. */
typedef int (*ConfigParser)(const ConfigOption *o, const char *value, void *field, char *reason);

struct ConfigOption {
        const char *name;       /* INI key and long option */
        const char *metavar;
        const char *help;
        ConfigParser parse;
        size_t offset;
        uint64_t min, max;      /* bounds for numbers, sizes and time spans */
};

/* Options that exist only on the command line. */
enum {
        ARG_TABLE = 0x100,      /* ARG_TABLE + i is config_options[i] */
        ARG_CONFIG = 0x1000,
        ARG_NO_CONFIG,
        ARG_VERSION,
};

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

static bool char_is_control(char c) {
        return (unsigned char) c < 0x20 || c == 0x7f;
}

static bool string_has_control(const char *s) {
        for (; *s; s++)
                if (char_is_control(*s))
                        return true;
        return false;
}

/* Digits only: no sign, no space, no empty string; overflow is -ERANGE. */
static int safe_atou64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = (uint64_t) v;
        return 0;
}

/* Parses a leading run of digits, advancing *p past it. */
static int parse_digits(const char **p, uint64_t *ret) {
        char buf[24];
        size_t n = strspn(*p, "0123456789");

        if (n == 0 || n >= sizeof buf)
                return n == 0 ? -EINVAL : -ERANGE;
        memcpy(buf, *p, n);
        buf[n] = '\0';
        *p += n;
        return safe_atou64(buf, ret);
}

static int parse_port(const char *s, uint16_t *ret) {
        uint64_t v = 0;

        if (safe_atou64(s, &v) < 0 || v < 1 || v > 65535)
                return -EINVAL;
        if (ret)
                *ret = (uint16_t) v;
        return 0;
}

static bool unix_path_is_valid(const char *p) {
        return p[0] == '/' && strlen(p) <= UNIX_PATH_MAX && !string_has_control(p);
}

static bool hostname_is_valid(const char *s, size_t n) {
        if (n == 0 || n > HOSTNAME_MAX || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

/* "[v6]" of length n, brackets included. */
static bool bracketed_ipv6_is_valid(const char *s, size_t n) {
        char buf[INET6_ADDRSTRLEN + 2];
        struct in6_addr a;

        if (n < 3 || n - 2 >= sizeof buf || s[0] != '[' || s[n - 1] != ']')
                return false;
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = '\0';
        return inet_pton(AF_INET6, buf, &a) == 1;
}

static bool ipv4_is_valid(const char *s, size_t n) {
        char buf[INET_ADDRSTRLEN];
        struct in_addr a;

        if (n == 0 || n >= sizeof buf)
                return false;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return inet_pton(AF_INET, buf, &a) == 1;
}

/* "host", "host:port", "[v6]" or "[v6]:port" of length n; hostnames allowed
 * only when allow_names. */
static bool hostport_is_valid(const char *s, size_t n, bool allow_names, bool port_required) {
        const char *colon;
        size_t hn;
        char port[8];

        if (n > 0 && s[0] == '[') {
                const char *close = memchr(s, ']', n);
                if (!close)
                        return false;
                hn = (size_t) (close - s) + 1;
                if (!bracketed_ipv6_is_valid(s, hn))
                        return false;
                colon = hn < n ? s + hn : NULL;
                if (colon && *colon != ':')
                        return false;
        } else {
                colon = memrchr(s, ':', n);
                hn = colon ? (size_t) (colon - s) : n;
                if (!(allow_names ? hostname_is_valid(s, hn) : ipv4_is_valid(s, hn)))
                        return false;
        }

        if (!colon)
                return !port_required;
        n -= (size_t) (colon + 1 - s);
        if (n == 0 || n >= sizeof port)
                return false;
        memcpy(port, colon + 1, n);
        port[n] = '\0';
        return parse_port(port, NULL) >= 0;
}

bool config_listen_is_valid(const char *s) {
        if (strncmp(s, "unix:", 5) == 0)
                return unix_path_is_valid(s + 5);
        return hostport_is_valid(s, strlen(s), false, true);
}

bool config_redis_is_valid(const char *s) {
        const char *q, *slash;
        uint64_t db;

        if (strncmp(s, "unix:", 5) == 0) {
                _cleanup_(freep) char *path = NULL;

                q = strchr(s, '?');
                path = q ? strndup(s + 5, (size_t) (q - s - 5)) : strdup(s + 5);
                if (!path || !unix_path_is_valid(path))
                        return false;
                if (!q)
                        return true;
                return strncmp(q, "?db=", 4) == 0 && safe_atou64(q + 4, &db) >= 0 && db <= 65535;
        }

        if (strncmp(s, "redis://", 8) != 0)
                return false;
        s += 8;
        slash = strchr(s, '/');
        if (!hostport_is_valid(s, slash ? (size_t) (slash - s) : strlen(s), true, false))
                return false;
        return !slash || (safe_atou64(slash + 1, &db) >= 0 && db <= 65535);
}

static int set_string(char **field, const char *value) {
        char *copy = strdup(value);

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int reasonf(char *reason, const char *fmt, ...) _printf_(2, 3);
static int reasonf(char *reason, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, REASON_MAX, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int parse_listen(const ConfigOption *o, const char *value, void *field, char *reason) {
        char ***l = field;

        if (!*value) {
                *l = strv_free(*l);
                return 0;
        }
        if (!config_listen_is_valid(value))
                return reasonf(reason, "expected ADDR:PORT, [IPv6]:PORT or unix:/PATH (port 1-65535, "
                               "numeric address, path up to %zu bytes)", UNIX_PATH_MAX);
        return strv_extend(l, value);
}

/* An Origin header is serialized as scheme://host[:port] with a lowercase
 * host (RFC 6454), so store it lowercased and compare bytewise later. */
static int parse_origin(const ConfigOption *o, const char *value, void *field, char *reason) {
        _cleanup_(freep) char *lower = NULL;
        char ***l = field;
        const char *rest;

        if (!*value) {
                *l = strv_free(*l);
                return 0;
        }

        lower = strdup(value);
        if (!lower)
                return -ENOMEM;
        for (char *p = lower; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');

        if (strncmp(lower, "https://", 8) == 0)
                rest = lower + 8;
        else if (strncmp(lower, "http://", 7) == 0)
                rest = lower + 7;
        else
                return reasonf(reason, "expected http://HOST[:PORT] or https://HOST[:PORT]");
        if (!hostport_is_valid(rest, strlen(rest), true, false))
                return reasonf(reason, "expected http(s)://HOST[:PORT], without a path or trailing '/'");
        if (strv_contains(*l, lower))
                return 0;
        return strv_extend(l, lower);
}

/* Space-separated, repeatable, an empty value clears: "127.0.0.1 ::1". */
static int parse_metrics_allow(const ConfigOption *o, const char *value, void *field, char *reason) {
        _cleanup_(freep) char *copy = NULL;
        char ***l = field, *save = NULL;

        if (!value[strspn(value, " ")]) {
                *l = strv_free(*l);
                return 0;
        }
        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                if (!metrics_allow_entry_is_valid(w))
                        return reasonf(reason, "'%s' is not an IPv4 or IPv6 address, or one with a /PREFIX", w);
                if (!strv_contains(*l, w) && strv_extend(l, w) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int parse_redis(const ConfigOption *o, const char *value, void *field, char *reason) {
        if (!config_redis_is_valid(value))
                return reasonf(reason, "expected redis://HOST[:PORT][/DB] or unix:/PATH[?db=DB]");
        return set_string(field, value);
}

#define ALPHANUMERICAL "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

/* A list of addresses: several in one value too, separated by spaces or
 * commas; an empty value empties the list. */
static int parse_address_list(const char *value, char ***l, char *reason, bool (*valid)(const char *a),
                              const char *expected, unsigned max, const char *what) {
        _cleanup_(freep) char *copy = strdup(value);
        char *state = NULL;
        int r;

        if (!copy)
                return -ENOMEM;
        if (!*value) {
                *l = strv_free(*l);
                return 0;
        }
        for (char *a = strtok_r(copy, " \t,", &state); a; a = strtok_r(NULL, " \t,", &state)) {
                if (!valid(a))
                        return reasonf(reason, "expected %s", expected);
                if (strv_contains(*l, a))
                        continue;
                if (strv_length(*l) >= max)
                        return reasonf(reason, "at most %u %s", max, what);
                r = strv_extend(l, a);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_sentinels(const ConfigOption *o, const char *value, void *field, char *reason) {
        return parse_address_list(value, field, reason, sentinel_address_is_valid,
                                  "IPv4:PORT or [IPv6]:PORT (a numeric address)", SENTINELS_MAX, "sentinels");
}

/* Seed nodes of a Redis Cluster. */
static int parse_cluster(const ConfigOption *o, const char *value, void *field, char *reason) {
        return parse_address_list(value, field, reason, redis_cluster_address_is_valid,
                                  "HOST:PORT or [IPv6]:PORT", REDIS_CLUSTER_SEEDS_MAX, "cluster seed nodes");
}

static int parse_master_name(const ConfigOption *o, const char *value, void *field, char *reason) {
        size_t n = strlen(value);

        if (n == 0 || n > SENTINEL_MASTER_NAME_MAX || strspn(value, ALPHANUMERICAL "-_.:") != n)
                return reasonf(reason, "expected 1 to %d letters, digits, '-', '_', '.' or ':'",
                               SENTINEL_MASTER_NAME_MAX);
        return set_string(field, value);
}

/* Redis ACL user names may hold almost anything; ours are plain. Empty unsets. */
static int parse_redis_user(const ConfigOption *o, const char *value, void *field, char *reason) {
        size_t n = strlen(value);

        if (n == 0) {
                *(char **) field = mfree(*(char **) field);
                return 0;
        }
        if (n > 128 || strspn(value, ALPHANUMERICAL "-_.@") != n)
                return reasonf(reason, "expected up to 128 letters, digits, '-', '_', '.' or '@'");
        return set_string(field, value);
}

static bool credential_name_is_valid(const char *s) {
        size_t n = strlen(s);

        return n > 0 && n <= 255 && strspn(s, ALPHANUMERICAL "-_.@") == n && !streq(s, ".") && !streq(s, "..");
}

static int parse_secret_file(const ConfigOption *o, const char *value, void *field, char *reason) {
        if (!*value) {
                *(char **) field = mfree(*(char **) field);
                return 0;
        }
        if (strchr(value, '/') ? value[0] != '/' || strlen(value) >= PATH_MAX : !credential_name_is_valid(value))
                return reasonf(reason, "expected an absolute path or the name of a credential (LoadCredential=)");
        return set_string(field, value);
}

static int parse_bus(const ConfigOption *o, const char *value, void *field, char *reason) {
        size_t t = strspn(value, "abcdefghijklmnopqrstuvwxyz");

        if (streq(value, "system") || streq(value, "session"))
                return set_string(field, value);
        /* A D-Bus address: transport:key=value[,…][;…]; sd-bus checks the rest. */
        if (t == 0 || value[t] != ':' || !strchr(value + t, '=') || strpbrk(value, " \t"))
                return reasonf(reason, "expected 'system', 'session' or a D-Bus address such as unix:path=/run/bus");
        return set_string(field, value);
}

static int parse_path(const ConfigOption *o, const char *value, void *field, char *reason) {
        if (value[0] != '/' || strlen(value) >= PATH_MAX)
                return reasonf(reason, "expected an absolute path");
        return set_string(field, value);
}

/* Optional paths: an empty value unsets. */
static int parse_path_optional(const ConfigOption *o, const char *value, void *field, char *reason) {
        char **p = field;

        if (!*value) {
                *p = mfree(*p);
                return 0;
        }
        return parse_path(o, value, field, reason);
}

static int parse_socket_path(const ConfigOption *o, const char *value, void *field, char *reason) {
        char **p = field;

        if (!*value) {
                *p = mfree(*p);
                return 0;
        }
        if (!unix_path_is_valid(value))
                return reasonf(reason, "expected an absolute path of at most %zu bytes", UNIX_PATH_MAX);
        return set_string(field, value);
}

/* What useradd and systemd-sysusers accept, minus the Samba '$'. */
static int parse_group(const ConfigOption *o, const char *value, void *field, char *reason) {
        size_t n = strlen(value);

        if (n == 0 || n > 32 || !((value[0] >= 'a' && value[0] <= 'z') || (value[0] >= 'A' && value[0] <= 'Z') || value[0] == '_') ||
            strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
                return reasonf(reason, "expected a group name (a letter or '_', then letters, digits, '_', '.', '-'; at most 32)");
        return set_string(field, value);
}

/* A file name under /etc/pam.d. */
static int parse_pam_service(const ConfigOption *o, const char *value, void *field, char *reason) {
        size_t n = strlen(value);

        if (n == 0 || n > 64 || value[0] == '.' ||
            strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
                return reasonf(reason, "expected a PAM service name (letters, digits, '_', '.', '-'; at most 64)");
        return set_string(field, value);
}

static int parse_number(const ConfigOption *o, const char *value, uint64_t *ret, char *reason) {
        uint64_t v = 0;

        if (safe_atou64(value, &v) < 0 || v < o->min || v > o->max)
                return reasonf(reason, "expected an integer from %" PRIu64 " to %" PRIu64, o->min, o->max);
        *ret = v;
        return 0;
}

static int parse_unsigned(const ConfigOption *o, const char *value, void *field, char *reason) {
        uint64_t v = 0;
        int r;

        r = parse_number(o, value, &v, reason);
        if (r < 0)
                return r;
        *(unsigned *) field = (unsigned) v;
        return 0;
}

static int parse_uid(const ConfigOption *o, const char *value, void *field, char *reason) {
        uint64_t v = 0;
        int r;

        r = parse_number(o, value, &v, reason);
        if (r < 0)
                return r;
        *(uid_t *) field = (uid_t) v;
        return 0;
}

/* Bytes, with an optional binary suffix: "4096", "64K", "1MiB". */
static int parse_size(const ConfigOption *o, const char *value, void *field, char *reason) {
        static const struct { const char *suffix; uint64_t factor; } table[] = {
                { "", 1 }, { "B", 1 },
                { "K", 1024 }, { "KiB", 1024 },
                { "M", 1024 * 1024 }, { "MiB", 1024 * 1024 },
                { "G", 1024 * 1024 * 1024 }, { "GiB", 1024 * 1024 * 1024 },
        };
        const char *p = value;
        uint64_t v = 0;

        if (parse_digits(&p, &v) >= 0)
                for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                        if (!streq(p, table[i].suffix))
                                continue;
                        if (v > UINT64_MAX / table[i].factor)
                                break;
                        v *= table[i].factor;
                        if (v < o->min || v > o->max)
                                break;
                        *(size_t *) field = (size_t) v;
                        return 0;
                }
        return reasonf(reason, "expected a size from %" PRIu64 " to %" PRIu64 " bytes (suffixes K, M, G)",
                       o->min, o->max);
}

int config_parse_timespan(const char *s, uint64_t *ret_usec) {
        static const struct { const char *unit; uint64_t usec; } table[] = {
                { "us", 1 }, { "usec", 1 },
                { "ms", USEC_PER_MSEC }, { "msec", USEC_PER_MSEC },
                { "s", USEC_PER_SEC }, { "sec", USEC_PER_SEC },
                { "second", USEC_PER_SEC }, { "seconds", USEC_PER_SEC },
                { "m", USEC_PER_MINUTE }, { "min", USEC_PER_MINUTE },
                { "minute", USEC_PER_MINUTE }, { "minutes", USEC_PER_MINUTE },
                { "h", USEC_PER_HOUR }, { "hr", USEC_PER_HOUR },
                { "hour", USEC_PER_HOUR }, { "hours", USEC_PER_HOUR },
                { "d", USEC_PER_DAY }, { "day", USEC_PER_DAY }, { "days", USEC_PER_DAY },
                { "w", USEC_PER_WEEK }, { "week", USEC_PER_WEEK }, { "weeks", USEC_PER_WEEK },
        };
        const char *p = s;
        uint64_t total = 0;
        bool any = false;

        for (;;) {
                uint64_t v, factor = 0;
                size_t n;
                int r;

                p += strspn(p, " \t");
                if (!*p)
                        break;
                r = parse_digits(&p, &v);
                if (r < 0)
                        return r;
                p += strspn(p, " \t");
                n = strspn(p, "abcdefghijklmnopqrstuvwxyz");
                if (n == 0)
                        factor = USEC_PER_SEC;  /* bare number: seconds */
                for (size_t i = 0; n > 0 && i < ELEMENTSOF(table); i++)
                        if (strlen(table[i].unit) == n && strncmp(p, table[i].unit, n) == 0)
                                factor = table[i].usec;
                if (factor == 0)
                        return -EINVAL;
                p += n;
                if (v > UINT64_MAX / factor || total > UINT64_MAX - v * factor)
                        return -ERANGE;
                total += v * factor;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *ret_usec = total;
        return 0;
}

/* A bound in its largest whole unit: "366d", "1h", "10ms". */
static const char *format_timespan_bound(char *buf, size_t size, uint64_t usec) {
        static const struct { const char *unit; uint64_t usec; } units[] = {
                { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "min", USEC_PER_MINUTE }, { "s", USEC_PER_SEC },
                { "ms", USEC_PER_MSEC },
        };

        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (usec >= units[i].usec && usec % units[i].usec == 0) {
                        snprintf(buf, size, "%" PRIu64 "%s", usec / units[i].usec, units[i].unit);
                        return buf;
                }
        snprintf(buf, size, "%" PRIu64 "us", usec);
        return buf;
}

static int parse_timespan(const ConfigOption *o, const char *value, void *field, char *reason) {
        char lo[32], hi[32];
        uint64_t v = 0;

        if (config_parse_timespan(value, &v) < 0 || v < o->min || v > o->max)
                return reasonf(reason, "expected a time span from %s to %s, e.g. 90s, 30min, 12h, 7d",
                               format_timespan_bound(lo, sizeof lo, o->min),
                               format_timespan_bound(hi, sizeof hi, o->max));
        *(uint64_t *) field = v;
        return 0;
}

static int parse_log_level(const ConfigOption *o, const char *value, void *field, char *reason) {
        int l = log_parse_level(value);

        if (l < 0)
                return reasonf(reason, "expected emerg, alert, crit, err, warning, notice, info or debug");
        *(int *) field = l;
        return 0;
}

#define FIELD(f) offsetof(Config, f)

static const ConfigOption config_options[] = {
        { "listen", "ADDR:PORT", "Also listen on ADDR:PORT, [IPv6]:PORT or unix:/PATH (repeatable)",
          parse_listen, FIELD(listen), 0, 0 },
        { "redis", "URL", "Redis: redis://HOST[:PORT][/DB] or unix:/PATH[?db=DB]",
          parse_redis, FIELD(redis), 0, 0 },
        { "redis-sentinel", "ADDR:PORT", "Find the Redis master through this sentinel (repeatable)",
          parse_sentinels, FIELD(redis_sentinels), 0, 0 },
        { "redis-cluster", "HOST:PORT", "A seed node of a Redis Cluster (repeatable)",
          parse_cluster, FIELD(redis_cluster), 0, 0 },
        { "redis-master", "NAME", "The master's name at the sentinels",
          parse_master_name, FIELD(redis_master), 0, 0 },
        { "redis-user", "USER", "Redis ACL user",
          parse_redis_user, FIELD(redis_user), 0, 0 },
        { "redis-password-file", "PATH|NAME", "Redis password: a file, or a credential's name",
          parse_secret_file, FIELD(redis_password_file), 0, 0 },
        { "redis-sentinel-user", "USER", "ACL user at the sentinels",
          parse_redis_user, FIELD(redis_sentinel_user), 0, 0 },
        { "redis-sentinel-password-file", "PATH|NAME", "Password at the sentinels: a file, or a credential's name",
          parse_secret_file, FIELD(redis_sentinel_password_file), 0, 0 },
        { "bus", "BUS", "D-Bus to serve on: system, session or an address",
          parse_bus, FIELD(bus), 0, 0 },
        { "web-root", "DIR", "Directory of the static web files",
          parse_path, FIELD(web_root), 0, 0 },
        { "staff-group", "GROUP", "Members may join staff-only rooms",
          parse_group, FIELD(staff_group), 0, 0 },
        { "admin-group", "GROUP", "Members may administer rooms over D-Bus",
          parse_group, FIELD(admin_group), 0, 0 },
        { "pam-service", "NAME", "PAM service used to check passwords",
          parse_pam_service, FIELD(pam_service), 0, 0 },
        { "min-uid", "UID", "Lowest uid that may log in",
          parse_uid, FIELD(min_uid), 1, UINT32_MAX - 1 },
        { "allowed-origin", "ORIGIN", "Accept WebSockets from this origin too (repeatable)",
          parse_origin, FIELD(allowed_origins), 0, 0 },
        { "metrics-allow", "ADDRS", "Addresses or ADDR/PREFIX that may read /metrics (repeatable; empty: off)",
          parse_metrics_allow, FIELD(metrics_allow), 0, 0 },
        { "auth-helper", "PATH", "multichat-auth binary to spawn",
          parse_path, FIELD(auth_helper), 0, 0 },
        { "auth-socket", "PATH", "Connect to multichat-auth here instead of spawning it",
          parse_socket_path, FIELD(auth_socket), 0, 0 },
        { "max-message-bytes", "SIZE", "Largest WebSocket message accepted",
          parse_size, FIELD(max_message_bytes), 64, 1024 * 1024 },
        { "rate-limit", "N", "Commands per second per connection",
          parse_unsigned, FIELD(rate_limit), 1, 10000 },
        { "rate-burst", "N", "Commands a connection may send at once",
          parse_unsigned, FIELD(rate_burst), 1, 100000 },
        { "history-size", "N", "Messages kept per room (0: none)",
          parse_unsigned, FIELD(history_size), 0, 100000 },
        { "history-on-join", "N", "Messages replayed to whoever joins",
          parse_unsigned, FIELD(history_on_join), 0, 100000 },
        { "session-idle", "TIME", "A session unused this long expires",
          parse_timespan, FIELD(session_idle_usec), USEC_PER_SEC, 366 * USEC_PER_DAY },
        { "session-max", "TIME", "No session lives longer than this",
          parse_timespan, FIELD(session_max_usec), USEC_PER_SEC, 366 * USEC_PER_DAY },
        { "overload-lag", "TIME", "Refuse new messages while relaying them this late",
          parse_timespan, FIELD(overload_lag_usec), 10 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "keepalive", "TIME", "Ping a quiet WebSocket after this; drop it when as long again passes unanswered",
          parse_timespan, FIELD(keepalive_usec), USEC_PER_SEC, USEC_PER_HOUR },
        { "max-connections", "N", "WebSocket connections on this daemon",
          parse_unsigned, FIELD(max_connections), 1, 10000000 },
        { "send-queue-frames", "N", "Frames queued for a slow client before it is dropped",
          parse_unsigned, FIELD(send_queue_frames), 1, 65536 },
        { "max-header-bytes", "SIZE", "Largest request head (request line and headers) accepted",
          parse_size, FIELD(max_header_bytes), 8 * 1024, 64 * 1024 },
        { "request-timeout", "TIME", "A request head, and then its body, must arrive within this",
          parse_timespan, FIELD(request_timeout_usec), USEC_PER_SEC, 10 * USEC_PER_MINUTE },
        { "max-connections-per-address", "N", "Connections from one IPv4 address or IPv6 /64 (0: no limit)",
          parse_unsigned, FIELD(max_connections_per_address), 0, 10000000 },
        { "login-attempts", "N", "Login attempts per minute, per address and per username",
          parse_unsigned, FIELD(login_attempts), 1, 10000 },
        { "tls-certificate", "FILE", "PEM certificate chain (with tls-key)",
          parse_path_optional, FIELD(tls_certificate), 0, 0 },
        { "tls-key", "FILE", "PEM private key (with tls-certificate)",
          parse_path_optional, FIELD(tls_key), 0, 0 },
        { "log-level", "LEVEL", "Log up to: err, warning, notice, info, debug",
          parse_log_level, FIELD(log_level), 0, 0 },
};

static const ConfigOption *config_option_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++)
                if (streq(config_options[i].name, name))
                        return config_options + i;
        return NULL;
}

static bool config_option_is_list(const ConfigOption *o) {
        return o->parse == parse_listen || o->parse == parse_origin || o->parse == parse_sentinels ||
               o->parse == parse_cluster ||
               o->parse == parse_metrics_allow;
}

static int config_option_apply(Config *c, const ConfigOption *o, const char *value, char *reason) {
        if (string_has_control(value))
                return reasonf(reason, "contains control characters");
        return o->parse(o, value, (uint8_t *) c + o->offset, reason);
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;

        *c = (Config) {
                .min_uid = 1000,
                .max_message_bytes = 4096,
                .rate_limit = 20,
                .rate_burst = 40,
                .history_size = 1000,
                .history_on_join = 50,
                .session_idle_usec = 12 * USEC_PER_HOUR,
                .session_max_usec = 7 * USEC_PER_DAY,
                .overload_lag_usec = 250 * USEC_PER_MSEC,
                .keepalive_usec = 30 * USEC_PER_SEC,
                .max_connections = 200000,
                .send_queue_frames = 1024,
                .max_header_bytes = 16 * 1024,
                .request_timeout_usec = 10 * USEC_PER_SEC,
                .max_connections_per_address = 256,
                .login_attempts = 10,
                .log_level = LOG_INFO,
        };
        c->redis = strdup(CONFIG_REDIS_DEFAULT);
        c->bus = strdup("system");
        c->web_root = strdup(MULTICHAT_WEB_ROOT);
        c->staff_group = strdup("multichat-staff");
        c->admin_group = strdup("multichat-admin");
        c->pam_service = strdup("multichat");
        c->auth_helper = strdup(MULTICHAT_AUTH_HELPER);
        if (!c->redis || !c->bus || !c->web_root || !c->staff_group || !c->admin_group ||
            !c->pam_service || !c->auth_helper)
                return -ENOMEM;

        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        strv_free(c->listen);
        free(c->redis);
        strv_free(c->redis_sentinels);
        strv_free(c->redis_cluster);
        free(c->redis_master);
        free(c->redis_user);
        free(c->redis_password_file);
        free(c->redis_sentinel_user);
        free(c->redis_sentinel_password_file);
        free(c->bus);
        free(c->web_root);
        free(c->staff_group);
        free(c->admin_group);
        free(c->pam_service);
        strv_free(c->allowed_origins);
        strv_free(c->metrics_allow);
        free(c->auth_helper);
        free(c->auth_socket);
        free(c->tls_certificate);
        free(c->tls_key);
        free(c->config_file);
        return mfree(c);
}

/* ---- files ---- */

typedef struct ParseContext {
        Config *config;
        const char *path;
        FILE *file;
        unsigned line;
        int error;              /* first error, already logged; stops the parse */
} ParseContext;

/* Mirrors inih's key search: the first '=' or ':' before a ';' comment
 * that follows whitespace. */
static bool line_has_separator(const char *p) {
        bool was_space = false;

        for (; *p; p++) {
                if (*p == '=' || *p == ':')
                        return true;
                if (was_space && *p == ';')
                        return false;
                was_space = *p == ' ' || *p == '\t';
        }
        return false;
}

/* Checks one line (leading whitespace already gone) the way inih will read
 * it, so that syntax errors are reported in order with the others, and
 * rejects sections other than ours even when they hold no keys. */
static int config_check_line(ParseContext *ctx, const char *p) {
        const char *close;
        size_t end;

        if (*p == '\0' || strchr("\r\n;#", *p))
                return 0;
        if (*p != '[') {
                if (line_has_separator(p))
                        return 0;
                return log_error_errno(EINVAL, "%s:%u: syntax error: expected 'key = value' or '[%s]'",
                                       ctx->path, ctx->line, CONFIG_SECTION);
        }
        close = strchr(p, ']');
        if (!close)
                return log_error_errno(EINVAL, "%s:%u: syntax error: missing ']'", ctx->path, ctx->line);
        end = strspn(close + 1, " \t\r\n");
        if (close[1 + end] != '\0' && !strchr(";#", close[1 + end]))
                return log_error_errno(EINVAL, "%s:%u: syntax error: text after ']'", ctx->path, ctx->line);
        if ((size_t) (close - p - 1) != strlen(CONFIG_SECTION) || strncmp(p + 1, CONFIG_SECTION, strlen(CONFIG_SECTION)) != 0)
                return log_error_errno(EINVAL, "%s:%u: unknown section [%.*s], expected [%s]",
                                       ctx->path, ctx->line, (int) MIN(close - p - 1, 64), p + 1, CONFIG_SECTION);
        return 0;
}

/* inih's line reader. Besides counting lines (inih 55 does not tell the
 * handler), it drops leading whitespace, which turns off inih's
 * indented-continuation lines: an indented line is an ordinary line here,
 * as in systemd's files. It stops the parse at the first error. */
static char *config_read_line(char *buf, int size, void *userdata) {
        ParseContext *ctx = userdata;
        size_t len, skip = 0;
        int ch;

        if (ctx->error < 0 || !fgets(buf, size, ctx->file))
                return NULL;
        ctx->line++;

        len = strlen(buf);
        if (len == (size_t) size - 1 && buf[len - 1] != '\n') {
                ch = getc(ctx->file);
                if (ch != EOF) {
                        ctx->error = log_error_errno(EINVAL, "%s:%u: line too long (at most %d characters)",
                                                     ctx->path, ctx->line, size - 2);
                        return NULL;
                }
        }

        if (ctx->line == 1 && len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
                skip = 3;
        while (skip < len && (buf[skip] == ' ' || buf[skip] == '\t'))
                skip++;
        memmove(buf, buf + skip, len - skip + 1);

        ctx->error = config_check_line(ctx, buf);
        return ctx->error < 0 ? NULL : buf;
}

static bool is_command_line_only(const char *name) {
        return streq(name, "config") || streq(name, "no-config") || streq(name, "help") || streq(name, "version");
}

static int config_handle_key(void *userdata, const char *section, const char *name, const char *value) {
        ParseContext *ctx = userdata;
        char reason[REASON_MAX] = "";
        const ConfigOption *o;
        int r;

        if (!streq(section, CONFIG_SECTION))
                ctx->error = log_error_errno(EINVAL, "%s:%u: key '%s' outside of the [%s] section",
                                             ctx->path, ctx->line, name, CONFIG_SECTION);
        else if (!(o = config_option_find(name)))
                ctx->error = log_error_errno(EINVAL, is_command_line_only(name) ?
                                             "%s:%u: '%s' may only be given on the command line" :
                                             "%s:%u: unknown key '%s'",
                                             ctx->path, ctx->line, name);
        else if ((r = config_option_apply(ctx->config, o, value, reason)) == -ENOMEM)
                ctx->error = log_error_errno(ENOMEM, "%s:%u: out of memory", ctx->path, ctx->line);
        else if (r < 0)
                ctx->error = log_error_errno(EINVAL, "%s:%u: invalid value '%s' for key '%s': %s",
                                             ctx->path, ctx->line, value, name, reason);
        return ctx->error < 0 ? 0 : 1;
}

/* Returns 1 when read, 0 when missing and missing_ok. */
static int config_parse_file(Config *c, const char *path, bool missing_ok) {
        _cleanup_(fclosep) FILE *f = NULL;
        ParseContext ctx = { .config = c, .path = path };
        struct stat st;
        int r;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && missing_ok)
                        return 0;
                return log_error_errno(errno, "Failed to open configuration file %s: %m", path);
        }
        if (fstat(fileno(f), &st) < 0)
                return log_error_errno(errno, "Failed to stat %s: %m", path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(EINVAL, "%s: not a regular file", path);
        if (st.st_size > CONFIG_FILE_MAX)
                return log_error_errno(EFBIG, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);

        ctx.file = f;
        r = ini_parse_stream(config_read_line, &ctx, config_handle_key, &ctx);
        if (ctx.error < 0)
                return ctx.error;
        if (ferror(f))
                return log_error_errno(EIO, "Failed to read %s: %m", path);
        if (r == -2)
                return log_error_errno(ENOMEM, "%s: out of memory", path);
        if (r != 0)     /* config_check_line() should have caught it first */
                return log_error_errno(EINVAL, "%s:%d: syntax error", path, r);
        return 1;
}

static int dirent_compare(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int dropin_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);

        return d->d_name[0] != '.' && n > 5 && streq(d->d_name + n - 5, ".conf");
}

/* <main>.d/NAME.conf in strcmp() order (not the locale's), as systemd does. */
static int config_parse_dropins(Config *c, const char *main_path) {
        _cleanup_(freep) char *dir = NULL;
        struct dirent **names = NULL;
        int n, r = 0;

        if (asprintf(&dir, "%s.d", main_path) < 0)
                return log_error_errno(ENOMEM, "Out of memory");

        n = scandir(dir, &names, dropin_filter, dirent_compare);
        if (n < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                return log_error_errno(errno, "Failed to read directory %s: %m", dir);
        }
        if (n > CONFIG_DROPINS_MAX)
                r = log_error_errno(E2BIG, "%s: more than %d drop-in files", dir, CONFIG_DROPINS_MAX);

        for (int i = 0; i < n; i++) {
                _cleanup_(freep) char *path = NULL;

                if (r >= 0 && asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
                        r = log_error_errno(ENOMEM, "Out of memory");
                if (r >= 0) {
                        r = config_parse_file(c, path, true);
                        if (r > 0)
                                r = 0;
                }
                free(names[i]);
        }
        free(names);
        return r;
}

/* ---- command line ---- */

typedef struct Argument {
        const ConfigOption *option;
        const char *value;      /* points into argv */
} Argument;

static void config_help(const char *program) {
        printf("%s [OPTIONS...]\n\n"
               "Chat daemon: browser logins with system accounts, rooms over WebSocket,\n"
               "administration over D-Bus.\n\n"
               "  -h --help                   Show this help\n"
               "     --version                Show the package version\n"
               "     --config=FILE            Read FILE and FILE.d/NAME.conf\n"
               "                              (default " MULTICHAT_CONFIG_FILE ")\n"
               "     --no-config              Read no configuration file\n",
               program);
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++) {
                const ConfigOption *o = config_options + i;
                int n = printf("     --%s=%s", o->name, o->metavar);

                printf("%*s%s\n", n < 30 ? 30 - n : 1, "", o->help);
        }
        printf("\nOptions are also keys of the [%s] section of the configuration file.\n"
               "Defaults and details: docs/configuration.md in the multichat sources.\n", CONFIG_SECTION);
}

static int config_command_line_error(int c, char *argv[]) {
        const char *arg = argv[optind - 1];

        if (c == ':')
                return log_error_errno(EINVAL, "Option '%s' requires an argument", arg);
        if (optopt > 0 && optopt < 0x100)
                return log_error_errno(EINVAL, "Unknown option '-%c'", optopt);
        if (optopt != 0)
                return log_error_errno(EINVAL, "Option '%s' takes no argument", arg);
        return log_error_errno(EINVAL, "Unknown option '%s'", arg);
}

typedef struct ParsedArgv {
        Argument *args;
        size_t n_args;
        const char *config_file;        /* NULL: the default */
        bool no_config;
        bool exit;
} ParsedArgv;

/* First pass: collects the table options in order, to apply after the files. */
static int config_parse_argv(int argc, char *argv[], const char *program, ParsedArgv *p) {
        struct option longopts[ELEMENTSOF(config_options) + 5];
        size_t k = 0;
        int c;

        for (size_t i = 0; i < ELEMENTSOF(config_options); i++)
                longopts[k++] = (struct option) { config_options[i].name, required_argument, NULL, ARG_TABLE + (int) i };
        longopts[k++] = (struct option) { "config", required_argument, NULL, ARG_CONFIG };
        longopts[k++] = (struct option) { "no-config", no_argument, NULL, ARG_NO_CONFIG };
        longopts[k++] = (struct option) { "help", no_argument, NULL, 'h' };
        longopts[k++] = (struct option) { "version", no_argument, NULL, ARG_VERSION };
        longopts[k] = (struct option) {};

        p->args = calloc((size_t) MAX(argc, 1), sizeof(Argument));
        if (!p->args)
                return log_error_errno(ENOMEM, "Out of memory");

        /* Reparsed on every reload: optind = 0 makes glibc start over; '+'
         * keeps argv in order, ':' reports a missing argument apart. */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        config_help(program);
                        p->exit = true;
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", program, PACKAGE_VERSION);
                        p->exit = true;
                        return 0;
                case ARG_CONFIG:
                        if (!*optarg)
                                return log_error_errno(EINVAL, "Option '--config' requires a file name");
                        p->config_file = optarg;
                        break;
                case ARG_NO_CONFIG:
                        p->no_config = true;
                        break;
                case ':':
                case '?':
                        return config_command_line_error(c, argv);
                default:
                        if (c < ARG_TABLE || c >= ARG_TABLE + (int) ELEMENTSOF(config_options))
                                return log_error_errno(EINVAL, "Unexpected option %d", c);
                        p->args[p->n_args++] = (Argument) { config_options + (c - ARG_TABLE), optarg };
                }
        }
        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument '%s'", argv[optind]);
        if (p->no_config && p->config_file)
                return log_error_errno(EINVAL, "Options '--config' and '--no-config' exclude each other");
        return 0;
}

/* The command line wins over the files; for a list, its first occurrence
 * replaces what the files said, later ones add to it. */
static int config_apply_argv(Config *c, const ParsedArgv *p) {
        bool replaced[ELEMENTSOF(config_options)] = {};

        for (size_t i = 0; i < p->n_args; i++) {
                const ConfigOption *o = p->args[i].option;
                size_t idx = (size_t) (o - config_options);
                char reason[REASON_MAX] = "";
                int r;

                if (config_option_is_list(o) && !replaced[idx]) {
                        char ***l = (char ***) ((uint8_t *) c + o->offset);
                        *l = strv_free(*l);
                        replaced[idx] = true;
                }
                r = config_option_apply(c, o, p->args[i].value, reason);
                if (r == -ENOMEM)
                        return log_error_errno(ENOMEM, "Out of memory");
                if (r < 0)
                        return log_error_errno(EINVAL, "Invalid value '%s' for option '--%s': %s",
                                               p->args[i].value, o->name, reason);
        }
        return 0;
}

/* Rules between keys, checked once everything is applied. */
static int config_verify(const Config *c) {
        if (!c->tls_certificate != !c->tls_key)
                return log_error_errno(EINVAL, "tls-certificate and tls-key must be set together");
        if (c->history_on_join > c->history_size)
                return log_error_errno(EINVAL, "history-on-join (%u) exceeds history-size (%u)",
                                       c->history_on_join, c->history_size);
        if (c->session_idle_usec > c->session_max_usec)
                return log_error_errno(EINVAL, "session-idle exceeds session-max");
        if (c->redis_cluster && c->redis_sentinels)
                return log_error_errno(EINVAL, "redis-cluster and redis-sentinel exclude each other");
        /* redis= has a default: only another value shows that it was set. */
        if (c->redis_cluster && !streq(c->redis, CONFIG_REDIS_DEFAULT))
                return log_error_errno(EINVAL, "redis-cluster and redis exclude each other");
        if (!c->redis_sentinels != !c->redis_master)
                return log_error_errno(EINVAL, "redis-sentinel and redis-master must be set together");
        if (c->redis_user && !c->redis_password_file)
                return log_error_errno(EINVAL, "redis-user needs redis-password-file");
        if (c->redis_sentinel_user && !c->redis_sentinel_password_file)
                return log_error_errno(EINVAL, "redis-sentinel-user needs redis-sentinel-password-file");
        return 0;
}

int config_read_secret(const char *value, char **ret) {
        _cleanup_(freep) char *path = NULL;
        _cleanup_(closep) int fd = -EBADF;
        char buf[CONFIG_SECRET_MAX + 3];
        ssize_t n;
        size_t len = 0;
        char *secret;

        if (!strchr(value, '/')) {
                const char *dir = getenv("CREDENTIALS_DIRECTORY");

                if (!dir || dir[0] != '/')
                        return -ENXIO;
                if (asprintf(&path, "%s/%s", dir, value) < 0)
                        return -ENOMEM;
        }
        fd = open(path ?: value, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        /* One byte beyond the largest allowed content tells "too long". */
        while (len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        explicit_bzero(buf, sizeof buf);
                        return -errno;
                }
                len += (size_t) n;
        }
        if (len > 0 && buf[len - 1] == '\n')
                len--;
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        if (len == 0 || len > CONFIG_SECRET_MAX || memchr(buf, '\n', len) || memchr(buf, '\r', len) ||
            memchr(buf, '\0', len)) {
                explicit_bzero(buf, sizeof buf);
                return -EBADMSG;
        }
        secret = strndup(buf, len);
        explicit_bzero(buf, sizeof buf);
        if (!secret)
                return -ENOMEM;
        *ret = secret;
        return 0;
}

int config_load_full(Config **ret, int argc, char *argv[], const char *program,
                     const char *default_file, bool *ret_exit) {
        _cleanup_(config_freep) Config *c = NULL;
        ParsedArgv p = {};
        const char *path;
        int r;

        if (!program)
                program = "multichatd";

        r = config_parse_argv(argc, argv, program, &p);
        if (r < 0 || p.exit)
                goto finish;

        r = config_new(&c);
        if (r < 0) {
                r = log_error_errno(r, "Out of memory");
                goto finish;
        }

        if (!p.no_config) {
                path = p.config_file ?: default_file;
                r = config_parse_file(c, path, !p.config_file);
                if (r < 0)
                        goto finish;
                if (r > 0 && !(c->config_file = strdup(path))) {
                        r = log_error_errno(ENOMEM, "Out of memory");
                        goto finish;
                }
                r = config_parse_dropins(c, path);
                if (r < 0)
                        goto finish;
        }

        r = config_apply_argv(c, &p);
        if (r < 0)
                goto finish;
        r = config_verify(c);

finish:
        free(p.args);
        if (r < 0)
                return r;
        if (ret_exit)
                *ret_exit = p.exit;
        *ret = TAKE_PTR(c);
        return 0;
}

int config_load(Config **ret, int argc, char *argv[], const char *program, bool *ret_exit) {
        return config_load_full(ret, argc, argv, program, MULTICHAT_CONFIG_FILE, ret_exit);
}
