/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus contract between multichatd and its clients: names, paths, limits, validators, error map. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/unicode-visible.h"
#include "basic/utf8.h"
#include "wire/bus-contract.h"

const sd_bus_error_map bus_error_map[] = {
        SD_BUS_ERROR_MAP(BUS_ERROR_NO_SUCH_ROOM,     ENOENT),
        SD_BUS_ERROR_MAP(BUS_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(BUS_ERROR_UNAVAILABLE,      ENOTCONN),
        SD_BUS_ERROR_MAP_END
};


static bool is_control(uint32_t c) {
        return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

/* Valid UTF-8 of 1..max bytes; control characters only those in allowed. */
static bool text_is_valid(const char *s, size_t max, const char *allowed) {
        size_t len;

        if (!s)
                return false;
        len = strnlen(s, max + 1);
        if (len == 0 || len > max)
                return false;

        for (const unsigned char *p = (const unsigned char *) s; *p; ) {
                uint32_t c;
                size_t n = utf8_decode(p, &c);

                if (n == 0)
                        return false;
                if (is_control(c) && !(c < 0x80 && strchr(allowed, (int) c)))
                        return false;
                p += n;
        }
        return true;
}

bool bus_room_id_is_valid(const char *id) {
        size_t len;

        if (!id || id[0] < '1' || id[0] > '9')
                return false;
        len = strspn(id, "0123456789");
        return len <= ROOM_ID_MAX && id[len] == '\0';
}

bool bus_title_is_valid(const char *title) {
        return text_is_valid(title, BUS_TITLE_MAX, "") && utf8_has_visible(title, strlen(title));
}

bool bus_username_is_valid(const char *username) {
        return text_is_valid(username, USERNAME_MAX, "");
}

bool bus_announcement_is_valid(const char *text) {
        return text_is_valid(text, BUS_ANNOUNCE_MAX, "\t\n");
}

char *bus_room_path(const char *id) {
        char *p;

        /* Ids are digits only, which are valid path elements as they are:
         * no sd_bus_path_encode(), whose escaping of a leading digit would
         * make "/room/_31" out of room 1. */
        if (!bus_room_id_is_valid(id))
                return NULL;
        if (asprintf(&p, BUS_ROOM_PATH_PREFIX "/%s", id) < 0)
                return NULL;
        return p;
}

const char *bus_room_path_to_id(const char *path) {
        const char *id;

        if (!path || strncmp(path, BUS_ROOM_PATH_PREFIX "/", strlen(BUS_ROOM_PATH_PREFIX "/")) != 0)
                return NULL;
        id = path + strlen(BUS_ROOM_PATH_PREFIX "/");
        return bus_room_id_is_valid(id) ? id : NULL;
}
