/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus contract between multichatd and its clients: names, paths, limits, validators, error map. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "wire/limits.h"

#define BUS_SERVICE_NAME      "org.multichat.Chat1"
#define BUS_MANAGER_PATH      "/org/multichat/Chat1"
#define BUS_ROOM_PATH_PREFIX  "/org/multichat/Chat1/room"     /* + "/" + id, the id unescaped */
#define BUS_MANAGER_INTERFACE "org.multichat.Chat1.Manager"
#define BUS_ROOM_INTERFACE    "org.multichat.Chat1.Room"

#define BUS_ERROR_NO_SUCH_ROOM      "org.multichat.Chat1.Error.NoSuchRoom"
#define BUS_ERROR_INVALID_ARGUMENT  "org.multichat.Chat1.Error.InvalidArgument"
#define BUS_ERROR_UNAVAILABLE       "org.multichat.Chat1.Error.Unavailable"

#define BUS_TITLE_MAX        100u       /* bytes of UTF-8, no control characters */
#define BUS_ANNOUNCE_MAX     4096u      /* bytes of UTF-8, no control characters but tab and newline */

/* Validation the daemon applies and multichatctl checks before calling. */
bool bus_room_id_is_valid(const char *id);
bool bus_title_is_valid(const char *title);
bool bus_username_is_valid(const char *username);
bool bus_announcement_is_valid(const char *text);
/* BUS_ROOM_PATH_PREFIX "/" id; NULL on OOM or invalid id. */
char *bus_room_path(const char *id);
/* The id in a room object path (pointing into path), NULL if not one. */
const char *bus_room_path_to_id(const char *path);

/* Maps our error names back to errno for clients (sd_bus_error_add_map). */
extern const sd_bus_error_map bus_error_map[];
