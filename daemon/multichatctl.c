/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* multichatctl: the administrator's command line for multichatd, over D-Bus. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "wire/bus-contract.h"
#include "config-build.h"
#include "basic/macro.h"
#include "basic/strv.h"

/* Exit statuses, as multichatctl(1) documents them. */
#define EXIT_USAGE 2

#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"
#define TABLE_COLUMNS_MAX 8

/* polkit's text agent (Debian's polkitd ships it). */
#define POLKIT_AGENT_PATH "/usr/bin/pkttyagent"
/* How long to wait for the agent to register before calling without it. */
#define POLKIT_AGENT_REGISTER_TIMEOUT_MSEC 10000

typedef enum Transport {
        TRANSPORT_SYSTEM,
        TRANSPORT_USER,
        TRANSPORT_ADDRESS,
} Transport;

typedef enum JsonMode {
        JSON_OFF,
        JSON_SHORT,
        JSON_PRETTY,
} JsonMode;

static Transport arg_transport = TRANSPORT_SYSTEM;
static const char *arg_address = NULL;
static JsonMode arg_json = JSON_OFF;
static bool arg_legend = true;
static bool arg_ask_password = true;   /* let polkit ask for a password, through our own agent on a terminal */
static bool arg_staff_only = false;
static const char *arg_room = "";       /* announce, kick: "" is every room */
static unsigned arg_level = 1;          /* announce: 1 warning, 2 alert, 3 muted */

/* ---- messages ---- */

/* A mistake on the command line: says so and makes the exit status 2. */
_printf_(1, 2)
static int log_usage(const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

static int log_oom(void) {
        fprintf(stderr, "Out of memory.\n");
        return -ENOMEM;
}

static const char *bus_error_text(int r, const sd_bus_error *error) {
        if (sd_bus_error_is_set(error) && error->message)
                return error->message;
        return strerror(-r);
}

/* A failed call, in the words an administrator needs: which room, who may
 * do it, whether the daemon runs at all. room_id names the room the call
 * was about (NULL or "" if none). Returns r. */
static int log_call_error(int r, const sd_bus_error *error, const char *room_id, const char *what) {
        bool room = room_id && *room_id;

        if (room && sd_bus_error_has_names(error, BUS_ERROR_NO_SUCH_ROOM, SD_BUS_ERROR_UNKNOWN_OBJECT))
                fprintf(stderr, "No such room: %s\n", room_id);
        else if (sd_bus_error_has_name(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                fprintf(stderr, "Authentication required (run as root or a member of multichat-admin, or "
                        "on a terminal without --no-ask-password)\n");
        else if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED))
                fprintf(stderr, "Not authorized (run as root or a member of multichat-admin)\n");
        else if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                fprintf(stderr, "multichatd is not running (" BUS_SERVICE_NAME " not on the bus)\n");
        else if (sd_bus_error_has_name(error, BUS_ERROR_UNAVAILABLE))
                fprintf(stderr, "Redis is unreachable; try again later\n");
        else if (sd_bus_error_has_name(error, BUS_ERROR_INVALID_ARGUMENT))
                fprintf(stderr, "Invalid argument: %s\n", bus_error_text(r, error));
        else if (sd_bus_error_has_name(error, SD_BUS_ERROR_LIMITS_EXCEEDED))
                fprintf(stderr, "multichatd is busy (%s); try again later\n", bus_error_text(r, error));
        else if (sd_bus_error_has_names(error, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT) || r == -ETIMEDOUT)
                fprintf(stderr, "multichatd did not answer in time\n");
        else
                fprintf(stderr, "Failed to %s: %s\n", what, bus_error_text(r, error));
        return r;
}

/* ---- text ---- */

/* The next UTF-8 sequence at p as a code point, and its length; lenient,
 * since it only measures text that D-Bus already checked. */
static size_t utf8_next(const unsigned char *p, wchar_t *ret) {
        size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : 4;
        wchar_t c = n == 1 ? p[0] : p[0] & (0x7f >> n);

        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80) {
                        *ret = 0xfffd;
                        return i;
                }
                c = (c << 6) | (p[i] & 0x3f);
        }
        *ret = c;
        return n;
}

/* Terminal columns of s: wide characters count 2, combining ones 0; what
 * the locale cannot tell counts 1. */
static size_t text_width(const char *s) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; ) {
                wchar_t c;
                int cw;

                p += utf8_next(p, &c);
                cw = wcwidth(c);
                w += cw < 0 ? 1 : (size_t) cw;
        }
        return w;
}

/* A copy fit for a terminal: C0 and C1 control characters become '?', so
 * nothing a room title or user name holds can move the cursor. */
static char *printable_dup(const char *s) {
        char *copy = malloc(strlen(s) + 1), *q = copy;

        if (!copy)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
                        *q++ = '?';
                        p++;
                } else
                        *q++ = (p[0] < 0x20 || p[0] == 0x7f) ? '?' : (char) p[0];
        }
        *q = '\0';
        return copy;
}

/* One line of text from the daemon on stdout. Logs. */
static int puts_printable(const char *s) {
        _cleanup_free_ char *printable = printable_dup(s);

        if (!printable)
                return log_oom();
        puts(printable);
        return 0;
}

static int strv_join(char **l, const char *sep, char **ret) {
        size_t len = 1;
        char *s;

        STRV_FOREACH(i, l)
                len += strlen(*i) + strlen(sep);
        s = malloc(len);
        if (!s)
                return -ENOMEM;
        s[0] = '\0';
        STRV_FOREACH(i, l) {
                if (i != l)
                        strcat(s, sep);
                strcat(s, *i);
        }
        *ret = s;
        return 0;
}

static int format_timestamp(uint64_t usec, char *buf, size_t size) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec == 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%a %Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                return -EINVAL;
        return 0;
}

/* ---- tables ---- */

/* Rows of printable cells, the header first, printed with every column
 * padded to its widest cell, the way systemd's list verbs look. */
typedef struct Table {
        size_t n_columns;
        char **cells;           /* row by row */
        size_t n_cells, n_allocated;
} Table;

static Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        return mfree(t);
}
DEFINE_CLEANUP_FUNC(Table *, table_free);

static int table_add(Table *t, const char *cell) {
        char *copy;

        if (t->n_cells == t->n_allocated) {
                size_t n = MAX(t->n_allocated * 2, (size_t) 16);
                char **cells = reallocarray(t->cells, n, sizeof *cells);

                if (!cells)
                        return -ENOMEM;
                t->cells = cells;
                t->n_allocated = n;
        }
        copy = printable_dup(cell);
        if (!copy)
                return -ENOMEM;
        t->cells[t->n_cells++] = copy;
        return 0;
}

/* header: the column titles, NULL-terminated. */
static int table_new(Table **ret, const char *const *header) {
        _cleanup_(table_freep) Table *t = calloc(1, sizeof *t);
        int r;

        if (!t)
                return -ENOMEM;
        for (; *header; header++) {
                r = table_add(t, *header);
                if (r < 0)
                        return r;
                t->n_columns++;
        }
        if (t->n_columns == 0 || t->n_columns > TABLE_COLUMNS_MAX)
                return -EINVAL;
        *ret = TAKE_PTR(t);
        return 0;
}

static size_t table_rows(const Table *t) {
        return t->n_cells / t->n_columns - 1;
}

static void table_print(const Table *t, FILE *f) {
        size_t widths[TABLE_COLUMNS_MAX] = {};
        size_t first = arg_legend ? 0 : t->n_columns;

        for (size_t i = first; i < t->n_cells; i++)
                widths[i % t->n_columns] = MAX(widths[i % t->n_columns], text_width(t->cells[i]));

        for (size_t i = first; i < t->n_cells; i++) {
                size_t column = i % t->n_columns;

                fputs(t->cells[i], f);
                if (column + 1 == t->n_columns) {
                        fputc('\n', f);
                        continue;
                }
                for (size_t w = text_width(t->cells[i]); w < widths[column] + 2; w++)
                        fputc(' ', f);
        }
}

/* ---- JSON ---- */

/* Consumes j, which may be NULL when building it failed. Logs. */
static int json_print(json_t *j) {
        _cleanup_(json_decrefp) json_t *owned = j;
        size_t flags = arg_json == JSON_PRETTY ? JSON_INDENT(2) : JSON_COMPACT;

        if (!owned)
                return log_oom();
        if (json_dumpf(owned, stdout, flags) < 0)
                return log_call_error(-EIO, NULL, NULL, "write JSON");
        fputc('\n', stdout);
        return 0;
}

static json_t *json_strv(char **l) {
        json_t *a = json_array();

        STRV_FOREACH(i, l)
                if (!a || json_array_append_new(a, json_string(*i)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

/* ---- reading replies ---- */

/* One property of a GetAll reply: where its value goes. Strings point into
 * the reply; 'b' is read into an int, as sd-bus does. */
typedef struct PropertyMap {
        const char *name;
        const char *signature;
        size_t offset;
} PropertyMap;

static int read_variant(sd_bus_message *m, const char *signature, void *field) {
        int r;

        r = sd_bus_message_enter_container(m, 'v', signature);
        if (r < 0)
                return r;
        r = sd_bus_message_read_basic(m, signature[0], field);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* Reads the a{sv} of a GetAll reply into the fields map names; properties
 * it does not name are skipped, so a newer daemon's additions do no harm. */
static int map_properties(sd_bus_message *m, const PropertyMap *map, size_t n_map, void *userdata) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const PropertyMap *p = NULL;
                const char *name;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n_map && !p; i++)
                        if (streq(map[i].name, name))
                                p = map + i;
                r = p ? read_variant(m, p->signature, (uint8_t *) userdata + p->offset)
                      : sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

typedef struct RoomInfo {
        const char *id, *title;         /* point into the ListRooms reply */
        int staff_only;
        uint32_t members;
} RoomInfo;

static int read_rooms(sd_bus_message *m, RoomInfo **ret, size_t *ret_n) {
        _cleanup_free_ RoomInfo *rooms = NULL;
        size_t n = 0, allocated = 0;
        RoomInfo room;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(ssbu)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(m, "(ssbu)", &room.id, &room.title, &room.staff_only,
                                        &room.members)) > 0) {
                if (n == allocated) {
                        size_t k = MAX(allocated * 2, (size_t) 16);
                        RoomInfo *p = reallocarray(rooms, k, sizeof *p);

                        if (!p)
                                return -ENOMEM;
                        rooms = p;
                        allocated = k;
                }
                rooms[n++] = room;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(rooms);
        *ret_n = n;
        return 0;
}

/* ListRooms, in the daemon's order (by title). The strings point into
 * *ret_reply. Logs. */
static int list_rooms(sd_bus *bus, sd_bus_message **ret_reply, RoomInfo **ret, size_t *ret_n) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "ListRooms",
                               &error, &reply, NULL);
        if (r < 0)
                return log_call_error(r, &error, NULL, "list rooms");
        r = read_rooms(reply, ret, ret_n);
        if (r < 0)
                return log_call_error(r, NULL, NULL, "read the list of rooms");
        *ret_reply = TAKE_PTR(reply);
        return 0;
}

/* ---- checking arguments before anything is sent ---- */

static int parse_boolean(const char *s) {
        static const char *const yes[] = { "yes", "true", "1", "on" }, *const no[] = { "no", "false", "0", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

static int parse_level(const char *s, unsigned *ret) {
        static const char *const levels[] = { "warning", "alert", "muted" };

        for (unsigned i = 0; i < ELEMENTSOF(levels); i++)
                if (strcasecmp(s, levels[i]) == 0 || (s[0] == (char) ('1' + i) && s[1] == '\0')) {
                        *ret = i + 1;
                        return 0;
                }
        return -EINVAL;
}

static int check_room_id(const char *id) {
        if (!bus_room_id_is_valid(id))
                return log_usage("Invalid room id '%s': expected up to %u decimal digits without a leading zero.",
                                 id, ROOM_ID_MAX);
        return 0;
}

static int check_title(const char *title) {
        /* Not echoed: it may hold control characters. */
        if (!bus_title_is_valid(title))
                return log_usage("Invalid room title: expected 1 to %u bytes of UTF-8 without control characters, with something visible.",
                                 BUS_TITLE_MAX);
        return 0;
}

static int check_args_room(char **args) {
        return check_room_id(args[0]);
}

static int check_args_title(char **args) {
        return check_title(args[0]);
}

static int check_args_rename(char **args) {
        int r = check_room_id(args[0]);

        return r < 0 ? r : check_title(args[1]);
}

static int check_args_staff_only(char **args) {
        int r = check_room_id(args[0]);

        if (r < 0)
                return r;
        if (parse_boolean(args[1]) < 0)
                return log_usage("Invalid value '%s': expected yes or no.", args[1]);
        return 0;
}

static int check_args_announce(char **args) {
        if (!bus_announcement_is_valid(args[0]))
                return log_usage("Invalid announcement: expected 1 to %u bytes of UTF-8 without control "
                                 "characters other than tab and newline.", BUS_ANNOUNCE_MAX);
        return 0;
}

static int check_args_kick(char **args) {
        if (!bus_username_is_valid(args[0]))
                return log_usage("Invalid user name: expected 1 to %u bytes of UTF-8 without control characters.",
                                 USERNAME_MAX);
        return 0;
}

/* ---- verbs ---- */

typedef struct Status {
        const char *version;            /* points into the GetAll reply */
        uint32_t connections;
        int redis_connected;
        uint64_t messages_relayed;
        size_t rooms;
} Status;

static const PropertyMap status_map[] = {
        { "Version",         "s", offsetof(Status, version) },
        { "Connections",     "u", offsetof(Status, connections) },
        { "RedisConnected",  "b", offsetof(Status, redis_connected) },
        { "MessagesRelayed", "t", offsetof(Status, messages_relayed) },
};

static int status_print(const Status *s) {
        if (arg_json != JSON_OFF)
                return json_print(json_pack("{s:s?, s:I, s:b, s:I, s:I}",
                                            "version", s->version,
                                            "connections", (json_int_t) s->connections,
                                            "redis_connected", s->redis_connected,
                                            "messages_relayed", (json_int_t) s->messages_relayed,
                                            "rooms", (json_int_t) s->rooms));

        printf("         Version: %s\n", s->version ? s->version : "n/a");
        printf("     Connections: %" PRIu32 "\n", s->connections);
        printf("           Redis: %s\n", s->redis_connected ? "connected" : "not connected");
        printf("Messages relayed: %" PRIu64 "\n", s->messages_relayed);
        printf("           Rooms: %zu\n", s->rooms);
        return 0;
}

static int verb_status(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *rooms_reply = NULL;
        _cleanup_free_ RoomInfo *rooms = NULL;
        Status s = {};
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, PROPERTIES_INTERFACE, "GetAll",
                               &error, &reply, "s", BUS_MANAGER_INTERFACE);
        if (r < 0)
                return log_call_error(r, &error, NULL, "read multichatd's properties");
        r = map_properties(reply, status_map, ELEMENTSOF(status_map), &s);
        if (r < 0)
                return log_call_error(r, NULL, NULL, "read multichatd's properties");

        r = list_rooms(bus, &rooms_reply, &rooms, &s.rooms);
        if (r < 0)
                return r;
        return status_print(&s);
}

static int rooms_print_json(const RoomInfo *rooms, size_t n) {
        _cleanup_(json_decrefp) json_t *a = json_array();

        for (size_t i = 0; i < n && a; i++)
                if (json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:I}",
                                                       "id", rooms[i].id,
                                                       "title", rooms[i].title,
                                                       "staff_only", rooms[i].staff_only,
                                                       "members", (json_int_t) rooms[i].members)) < 0)
                        return log_oom();
        return json_print(TAKE_PTR(a));
}

static int verb_list_rooms(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        _cleanup_free_ RoomInfo *rooms = NULL;
        size_t n;
        int r;

        r = list_rooms(bus, &reply, &rooms, &n);
        if (r < 0)
                return r;
        if (arg_json != JSON_OFF)
                return rooms_print_json(rooms, n);

        r = table_new(&t, (const char *const[]) { "ID", "TITLE", "STAFF", "MEMBERS", NULL });
        for (size_t i = 0; i < n && r >= 0; i++) {
                char members[16];

                snprintf(members, sizeof members, "%" PRIu32, rooms[i].members);
                r = table_add(t, rooms[i].id);
                if (r >= 0)
                        r = table_add(t, rooms[i].title);
                if (r >= 0)
                        r = table_add(t, rooms[i].staff_only ? "yes" : "no");
                if (r >= 0)
                        r = table_add(t, members);
        }
        if (r < 0)
                return log_call_error(r, NULL, NULL, "show the rooms");
        table_print(t, stdout);
        if (arg_legend)
                printf("\n%zu room%s listed.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        return 0;
}

static int verb_create_room(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *id, *path;
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "CreateRoom",
                               &error, &reply, "sb", args[0], (int) arg_staff_only);
        if (r < 0)
                return log_call_error(r, &error, NULL, "create the room");
        r = sd_bus_message_read(reply, "so", &id, &path);
        if (r < 0)
                return log_call_error(r, NULL, NULL, "read the new room's id");

        if (arg_json != JSON_OFF)
                return json_print(json_pack("{s:s, s:s}", "id", id, "path", path));
        return puts_printable(id);
}

static int verb_delete_room(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "DeleteRoom",
                               &error, NULL, "s", args[0]);
        if (r < 0)
                return log_call_error(r, &error, args[0], "delete the room");
        return 0;
}

/* Sets one property of room id; the path is the id as it is (docs/dbus.md). */
static int set_room_property(sd_bus *bus, const char *id, const char *property, const char *type, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *path = bus_room_path(id);
        va_list ap;
        int r;

        if (!path)
                return log_oom();
        r = sd_bus_message_new_method_call(bus, &m, BUS_SERVICE_NAME, path, PROPERTIES_INTERFACE, "Set");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", BUS_ROOM_INTERFACE, property);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', type);
        if (r >= 0) {
                va_start(ap, type);
                r = sd_bus_message_appendv(m, type, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &error, NULL);
        if (r < 0)
                return log_call_error(r, &error, id, "set the room's property");
        return 0;
}

static int verb_rename_room(sd_bus *bus, char **args) {
        return set_room_property(bus, args[0], "Title", "s", args[1]);
}

static int verb_set_staff_only(sd_bus *bus, char **args) {
        return set_room_property(bus, args[0], "StaffOnly", "b", parse_boolean(args[1]) > 0);
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int verb_members(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(strv_freep) char **members = NULL;
        _cleanup_free_ char *path = bus_room_path(args[0]);
        int r;

        if (!path)
                return log_oom();
        r = sd_bus_get_property_strv(bus, BUS_SERVICE_NAME, path, BUS_ROOM_INTERFACE, "Members",
                                     &error, &members);
        if (r < 0)
                return log_call_error(r, &error, args[0], "read the room's members");
        if (members)
                qsort(members, strv_length(members), sizeof *members, compare_strings);

        if (arg_json != JSON_OFF)
                return json_print(json_strv(members));
        STRV_FOREACH(m, members) {
                r = puts_printable(*m);
                if (r < 0)
                        return r;
        }
        return 0;
}

typedef struct ConnectionInfo {
        const char *username, *peer;    /* point into the reply */
        uint64_t since_usec;
        char **rooms;
} ConnectionInfo;

/* One (sstas) of a ListConnections reply; 0 past the last. */
static int read_connection(sd_bus_message *m, ConnectionInfo *ret) {
        ConnectionInfo c = {};
        int r;

        r = sd_bus_message_enter_container(m, 'r', "sstas");
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "sst", &c.username, &c.peer, &c.since_usec);
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(m, &c.rooms);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0) {
                strv_free(c.rooms);
                return r;
        }
        *ret = c;
        return 1;
}

static int connection_add_json(json_t *a, const ConnectionInfo *c) {
        return json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:o}",
                                                  "username", c->username,
                                                  "peer", c->peer,
                                                  "since_usec", (json_int_t) c->since_usec,
                                                  "rooms", json_strv(c->rooms))) < 0 ? -ENOMEM : 0;
}

static int connection_add_row(Table *t, const ConnectionInfo *c) {
        _cleanup_free_ char *rooms = NULL;
        char since[64];
        int r;

        if (format_timestamp(c->since_usec, since, sizeof since) < 0)
                strcpy(since, "n/a");
        r = strv_join(c->rooms, ",", &rooms);
        if (r >= 0)
                r = table_add(t, c->username);
        if (r >= 0)
                r = table_add(t, c->peer);
        if (r >= 0)
                r = table_add(t, since);
        if (r >= 0)
                r = table_add(t, rooms);
        return r;
}

static int verb_connections(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        _cleanup_(json_decrefp) json_t *a = NULL;
        ConnectionInfo c;
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                               "ListConnections", &error, &reply, NULL);
        if (r < 0)
                return log_call_error(r, &error, NULL, "list connections");

        if (arg_json != JSON_OFF)
                r = (a = json_array()) ? 0 : -ENOMEM;
        else
                r = table_new(&t, (const char *const[]) { "USER", "PEER", "SINCE", "ROOMS", NULL });
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(sstas)");
        while (r >= 0 && (r = read_connection(reply, &c)) > 0) {
                r = a ? connection_add_json(a, &c) : connection_add_row(t, &c);
                strv_free(c.rooms);
        }
        if (r < 0)
                return log_call_error(r, NULL, NULL, "read the list of connections");

        if (a)
                return json_print(TAKE_PTR(a));
        table_print(t, stdout);
        if (arg_legend)
                printf("\n%zu connection%s listed.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        return 0;
}

static int verb_announce(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "Announce",
                               &error, NULL, "sus", arg_room, arg_level, args[0]);
        if (r < 0)
                return log_call_error(r, &error, arg_room, "announce");
        return 0;
}

static int verb_kick(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE, "KickUser",
                               &error, NULL, "ss", args[0], arg_room);
        if (r < 0)
                return log_call_error(r, &error, arg_room, "kick the user");
        return 0;
}

/* ---- command line ---- */

typedef struct Verb {
        const char *name;
        unsigned min_args, max_args;    /* after the verb */
        int (*check)(char **args);      /* before connecting; a failure is a usage error */
        int (*run)(sd_bus *bus, char **args);
        bool polkit;                    /* the daemon asks polkit whether we may (changes, connections) */
} Verb;

static const Verb verbs[] = {
        { "status",         0, 0, NULL,                  verb_status },
        { "list-rooms",     0, 0, NULL,                  verb_list_rooms },
        { "create-room",    1, 1, check_args_title,      verb_create_room, true },
        { "delete-room",    1, 1, check_args_room,       verb_delete_room, true },
        { "rename-room",    2, 2, check_args_rename,     verb_rename_room, true },
        { "set-staff-only", 2, 2, check_args_staff_only, verb_set_staff_only, true },
        { "members",        1, 1, check_args_room,       verb_members },
        { "connections",    0, 0, NULL,                  verb_connections, true },
        { "announce",       1, 1, check_args_announce,   verb_announce, true },
        { "kick",           1, 1, check_args_kick,       verb_kick, true },
};

/* Finds the verb in args (none: status) and checks how many arguments it
 * got; *ret_args are the verb's own. */
static int verb_find(int n, char **args, const Verb **ret, char ***ret_args) {
        const Verb *v = NULL;

        if (n == 0) {
                *ret = verbs;
                *ret_args = args;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs) && !v; i++)
                if (streq(verbs[i].name, args[0]))
                        v = verbs + i;
        if (!v)
                return log_usage("Unknown command verb '%s'; see 'multichatctl --help'.", args[0]);
        if ((unsigned) n - 1 < v->min_args)
                return log_usage("Too few arguments for '%s'.", v->name);
        if ((unsigned) n - 1 > v->max_args)
                return log_usage("Too many arguments for '%s'.", v->name);
        *ret = v;
        *ret_args = args + 1;
        return 0;
}

static void help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n\n"
               "Administer multichatd, the chat daemon, over D-Bus.\n\n"
               "Commands:\n"
               "  status                   Show the daemon's version, connections and Redis state\n"
               "                           (the default)\n"
               "  list-rooms               List the rooms: id, title, staff-only, members\n"
               "  create-room TITLE        Create a room and print its id\n"
               "  delete-room ID           Delete a room; its members are told\n"
               "  rename-room ID TITLE     Set a room's title\n"
               "  set-staff-only ID BOOL   Let only staff into a room (yes) or everyone (no)\n"
               "  members ID               List the users present in a room\n"
               "  connections              List the WebSocket connections of this daemon\n"
               "  announce TEXT            Send a notice to every room, or to one (--room=)\n"
               "  kick USER                Close a user's connections, or remove them\n"
               "                           from one room (--room=)\n\n"
               "Options:\n"
               "  -h --help                Show this help\n"
               "     --version             Show the package version\n"
               "     --system              Talk to multichatd on the system bus (the default)\n"
               "     --user                Talk to multichatd on the session bus\n"
               "     --address=ADDRESS     Talk to multichatd on the bus at this D-Bus address\n"
               "     --bus=BUS             system, session or a D-Bus address, as multichatd's bus=\n"
               "     --json=MODE           Print JSON: short (plain --json), pretty or off\n"
               "     --no-legend           Print tables without header and footer\n"
               "     --no-pager            Accepted for compatibility; no pager is used\n"
               "     --no-ask-password     Fail rather than let polkit ask for a password\n"
               "     --staff-only          create-room: only staff may enter the room\n"
               "     --room=ID             announce, kick: this room only\n"
               "     --level=LEVEL         announce: warning (the default), alert or muted\n\n"
               "Exit status: 0 done, 1 failed, 2 wrong usage. See multichatctl(1).\n",
               program_invocation_short_name);
}

static int parse_json_mode(const char *s) {
        if (!s || streq(s, "short"))
                arg_json = JSON_SHORT;
        else if (streq(s, "pretty"))
                arg_json = JSON_PRETTY;
        else if (streq(s, "off"))
                arg_json = JSON_OFF;
        else
                return log_usage("Invalid --json= mode '%s': expected short, pretty or off.", s);
        return 0;
}

/* The same values as multichatd's bus= setting, so that the daemon's
 * configuration can be handed over as it is. */
static int parse_bus(const char *s) {
        if (streq(s, "system"))
                arg_transport = TRANSPORT_SYSTEM;
        else if (streq(s, "session"))
                arg_transport = TRANSPORT_USER;
        else if (strchr(s, ':')) {
                arg_transport = TRANSPORT_ADDRESS;
                arg_address = s;
        } else
                return log_usage("Invalid --bus= '%s': expected system, session or a D-Bus address.", s);
        return 0;
}

/* > 0: run a verb; 0: done (--help, --version); < 0: usage error. */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100, ARG_SYSTEM, ARG_USER, ARG_ADDRESS, ARG_BUS, ARG_JSON,
                ARG_NO_LEGEND, ARG_NO_PAGER, ARG_STAFF_ONLY, ARG_ROOM, ARG_LEVEL,
                ARG_NO_ASK_PASSWORD,
        };
        static const struct option options[] = {
                { "help",       no_argument,       NULL, 'h'            },
                { "version",    no_argument,       NULL, ARG_VERSION    },
                { "system",     no_argument,       NULL, ARG_SYSTEM     },
                { "user",       no_argument,       NULL, ARG_USER       },
                { "address",    required_argument, NULL, ARG_ADDRESS    },
                { "bus",        required_argument, NULL, ARG_BUS        },
                { "json",       optional_argument, NULL, ARG_JSON       },
                { "no-legend",  no_argument,       NULL, ARG_NO_LEGEND  },
                { "no-pager",   no_argument,       NULL, ARG_NO_PAGER   },
                { "staff-only", no_argument,       NULL, ARG_STAFF_ONLY },
                { "room",       required_argument, NULL, ARG_ROOM       },
                { "level",      required_argument, NULL, ARG_LEVEL      },
                { "no-ask-password", no_argument,  NULL, ARG_NO_ASK_PASSWORD },
                {}
        };
        int c, r = 0;

        while (r >= 0 && (c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("multichatctl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_SYSTEM:
                case ARG_USER:
                        arg_transport = c == ARG_USER ? TRANSPORT_USER : TRANSPORT_SYSTEM;
                        break;
                case ARG_ADDRESS:
                        if (!*optarg)
                                return log_usage("--address= needs a D-Bus address.");
                        arg_transport = TRANSPORT_ADDRESS;
                        arg_address = optarg;
                        break;
                case ARG_BUS:
                        r = parse_bus(optarg);
                        break;
                case ARG_JSON:
                        r = parse_json_mode(optarg);
                        break;
                case ARG_NO_LEGEND:
                        arg_legend = false;
                        break;
                case ARG_NO_PAGER:      /* there is no pager to turn off */
                        break;
                case ARG_STAFF_ONLY:
                        arg_staff_only = true;
                        break;
                case ARG_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case ARG_ROOM:          /* "" is every room, as on the bus */
                        r = *optarg ? check_room_id(optarg) : 0;
                        arg_room = optarg;
                        break;
                case ARG_LEVEL:
                        if (parse_level(optarg, &arg_level) < 0)
                                r = log_usage("Invalid level '%s': expected warning, alert or muted.", optarg);
                        break;
                default:                /* getopt said what was wrong */
                        return -EINVAL;
                }
        return r < 0 ? r : 1;
}

/* ---- polkit agent ---- */

/* In the child: exec the agent for our process (its parent), on the bus we
 * talk to. Only async-signal-safe calls until exec, except setenv, which
 * runs in a single-threaded child. */
_noreturn_
static void polkit_agent_exec(pid_t parent, int notify_fd, const char *address) {
        char fd_text[16];

        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                _exit(EXIT_FAILURE);
        if (address && setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1) < 0)
                _exit(EXIT_FAILURE);
        if (fcntl(notify_fd, F_SETFD, 0) < 0)   /* keep it across exec */
                _exit(EXIT_FAILURE);
        (void) snprintf(fd_text, sizeof fd_text, "%d", notify_fd);
        execl(POLKIT_AGENT_PATH, POLKIT_AGENT_PATH, "--notify-fd", fd_text, (char *) NULL);
        _exit(EXIT_FAILURE);
}

/* The agent closes the notify descriptor once polkit knows it, or dies;
 * either way the read end sees end of file. */
static void polkit_agent_wait_registered(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char c;

        for (;;) {
                int n = poll(&p, 1, POLKIT_AGENT_REGISTER_TIMEOUT_MSEC);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                ssize_t k = read(fd, &c, 1);

                if (k == 0 || (k < 0 && errno != EINTR))
                        return;
        }
}

/* As systemctl does: when polkit may ask and a person sits at a terminal,
 * a text agent asks on it for our calls; polkit asks only an agent of the
 * caller's process or login session, and a server often has neither
 * (ssh without a logind session, a container). Not --fallback, as
 * systemctl's: polkit 122 uses a fallback agent only for a caller inside
 * a login session, and the person who typed the command is at this
 * terminal anyway. *ret_pid: the agent, or 0 when none was started. */
static int polkit_agent_open(const char *address, pid_t *ret_pid) {
        int fds[2];
        pid_t parent = getpid(), pid;

        *ret_pid = 0;
        if (!isatty(STDIN_FILENO) || access(POLKIT_AGENT_PATH, X_OK) < 0)
                return 0;
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;

                close(fds[0]);
                close(fds[1]);
                return r;
        }
        if (pid == 0) {
                close(fds[0]);
                polkit_agent_exec(parent, fds[1], address);
        }
        close(fds[1]);
        polkit_agent_wait_registered(fds[0]);
        close(fds[0]);
        *ret_pid = pid;
        return 0;
}

static void polkit_agent_close(pid_t pid) {
        if (pid <= 0)
                return;
        (void) kill(pid, SIGTERM);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

static int bus_connect(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        switch (arg_transport) {
        case TRANSPORT_USER:
                r = sd_bus_open_user(&bus);
                break;
        case TRANSPORT_ADDRESS:
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, arg_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
                break;
        default:
                r = sd_bus_open_system(&bus);
        }
        if (r < 0) {
                const char *which = arg_transport == TRANSPORT_USER ? "the session bus" :
                                    arg_transport == TRANSPORT_ADDRESS ? arg_address : "the system bus";

                fprintf(stderr, "Failed to connect to %s: %s\n", which, strerror(-r));
                return r;
        }
        *ret = TAKE_PTR(bus);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const Verb *verb = NULL;
        char **args = NULL;
        pid_t agent = 0;
        int r;

        setlocale(LC_ALL, "");

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;
        r = verb_find(argc - optind, argv + optind, &verb, &args);
        if (r < 0)
                return EXIT_USAGE;
        if (verb->check && verb->check(args) < 0)
                return EXIT_USAGE;

        /* NoSuchRoom, InvalidArgument and Unavailable come back as ENOENT,
         * EINVAL and ENOTCONN, not as a generic EIO. */
        (void) sd_bus_error_add_map(bus_error_map);
        r = bus_connect(&bus);
        if (r < 0)
                return EXIT_FAILURE;
        (void) sd_bus_set_allow_interactive_authorization(bus, arg_ask_password);
        if (arg_ask_password && verb->polkit && arg_transport != TRANSPORT_USER)
                (void) polkit_agent_open(arg_transport == TRANSPORT_ADDRESS ? arg_address : NULL, &agent);
        r = verb->run(bus, args);
        polkit_agent_close(agent);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
