/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus face of the daemon: org.multichat.Chat1 objects, authorization, signals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "wire/bus-contract.h"

/* Calls waiting for authorization or for the backend, all callers together
 * and per caller; past them the call fails with LimitsExceeded. */
#define BUS_REQUESTS_MAX            256u
#define BUS_REQUESTS_PER_SENDER_MAX 16u

/* PropertiesChanged is coalesced: a change goes out at once, further changes
 * of the same object at most once per this interval (storms of joins or
 * connections would otherwise send one full Members list per join). */
#define BUS_CHANGE_INTERVAL_USEC (100 * 1000ULL)

/* The polkit action every state-changing call (and ListConnections) is
 * checked against; dbus/org.multichat.chat1.policy declares it. */
#define BUS_POLKIT_ACTION "org.multichat.chat1.manage"
/* CheckAuthorization's AllowUserInteraction flag. */
#define BUS_POLKIT_ALLOW_USER_INTERACTION 1u
/* How long polkit may take when it asks the user for a password. */
#define BUS_POLKIT_INTERACTIVE_TIMEOUT_USEC (120 * 1000000ULL)

typedef struct Bus Bus;
typedef struct BusRequest BusRequest;   /* one state-changing call the backend completes later */

/* What the backend shows us. All pointers are borrowed: valid during the
 * call or visit that handed them over, copied if kept. */
typedef struct BusRoom {
        const char *id;         /* canonical decimal */
        const char *title;
        bool staff_only;
        uint32_t members;       /* usernames present, across all daemons */
} BusRoom;

typedef struct BusConnection {
        const char *username;
        const char *peer;                /* e.g. "192.0.2.1:50000", "[2001:db8::1]:443" */
        uint64_t since_usec;             /* CLOCK_REALTIME µs */
        const char *const *rooms;        /* NULL-terminated room ids; NULL for none */
} BusConnection;

/* Visitors return < 0 to stop; the backend's foreach then returns that value. */
typedef int (*BusRoomVisitor)(const BusRoom *room, void *userdata);
typedef int (*BusStringVisitor)(const char *s, void *userdata);
typedef int (*BusConnectionVisitor)(const BusConnection *c, void *userdata);

/* The daemon side, filled by its owner (bus/admin.c). ud is the userdata
 * given to bus_new(). Synchronous hooks answer from the daemon's in-memory
 * state and never block. Asynchronous hooks take a BusRequest:
 *   returning < 0: the request was not taken; the bus replies with that
 *                  error (mapped as for bus_request_complete()).
 *   returning >= 0: the backend calls bus_request_complete() (operations)
 *                  or bus_request_authorized() (check_admin) exactly once,
 *                  later or already inside the hook, also on shutdown
 *                  (e.g. with -ECANCELED) and also after bus_free().
 * Arguments are validated before a hook sees them (see the BUS_*_MAX
 * limits; ids are canonical; level is 1..3). */
typedef struct BusBackend {
        int (*foreach_room)(void *ud, BusRoomVisitor visit, void *visit_ud);
        int (*get_room)(void *ud, const char *id, BusRoom *ret);               /* -ENOENT */
        int (*foreach_member)(void *ud, const char *id, BusStringVisitor visit, void *visit_ud); /* -ENOENT */
        int (*foreach_connection)(void *ud, BusConnectionVisitor visit, void *visit_ud); /* admins only */
        uint32_t (*connections)(void *ud);
        bool (*redis_connected)(void *ud);
        uint64_t (*messages_relayed)(void *ud);

        /* Complete with bus_request_complete(req, r, id): id of the new room. */
        int (*create_room)(void *ud, const char *title, bool staff_only, BusRequest *req);
        int (*delete_room)(void *ud, const char *id, BusRequest *req);
        int (*set_title)(void *ud, const char *id, const char *title, BusRequest *req);
        int (*set_staff_only)(void *ud, const char *id, bool staff_only, BusRequest *req);
        /* room_id "" means every room; level 1 warning, 2 alert, 3 muted. */
        int (*announce)(void *ud, const char *room_id, unsigned level, const char *text, BusRequest *req);
        /* room_id "" means every connection of that user. */
        int (*kick)(void *ud, const char *username, const char *room_id, BusRequest *req);

        /* Without polkit on the bus: whether a caller other than root may
         * administer (member of the admin group). gids are the supplementary groups the bus reported for the
         * caller's connection (UnixGroupIDs), NULL if it reported none: the
         * backend may accept those and otherwise ask NSS (getgrouplist) off
         * the event loop. Complete with bus_request_authorized(). NULL: only
         * uid 0 may change anything. */
        int (*check_admin)(void *ud, uid_t uid, const gid_t *gids, size_t n_gids, BusRequest *req);

        /* Name and connection state: 0 once org.multichat.Chat1 is ours (the
         * daemon may send READY=1); -EEXIST if another process owns it,
         * -EACCES if the bus policy forbids it, another -errno if the request
         * failed; later -ECONNRESET when the connection is gone (the bus does
         * not reconnect: exit and let systemd restart us). May come twice
         * (a failure, then -ECONNRESET). Do not bus_free() from inside it:
         * sd_event_exit() and free afterwards. Optional. */
        void (*name_state)(void *ud, int r);
} BusBackend;

/* address: "system", "session", or a D-Bus address ("unix:path=/run/…").
 * backend must stay valid until bus_free(). Does not connect yet. */
int bus_new(Bus **ret, sd_event *event, const char *address, const BusBackend *backend, void *userdata);
/* Connects, registers the objects and asks for the name, all without
 * blocking; the outcome arrives through backend->name_state. */
int bus_start(Bus *b);
/* Replies still owed go nowhere: requests in the backend's hands stay valid
 * until it completes them. Flushes what is queued and closes the connection. */
Bus *bus_free(Bus *b);
bool bus_is_ready(Bus *b);
static inline void bus_freep(Bus **b) {
        bus_free(*b);
}

/* r: 0 done; -ENOENT NoSuchRoom; -EINVAL InvalidArgument;
 * -ENOTCONN/-ECONNREFUSED/-ECONNRESET/-EAGAIN/-ETIMEDOUT/-EHOSTUNREACH
 * Unavailable; -EACCES/-EPERM AccessDenied; -ENOBUFS LimitsExceeded;
 * anything else a generic error. id: the new room's id for create_room
 * (ignored otherwise). Frees req. */
void bus_request_complete(BusRequest *req, int r, const char *id);
void bus_request_authorized(BusRequest *req, bool allowed);
/* Who asked, for the journal: the caller's unique bus name (NULL once the
 * Bus is freed) and uid (known from check_admin and the operation hooks on). */
const char *bus_request_sender(BusRequest *req);
uid_t bus_request_uid(BusRequest *req);
/* For the journal: "created", "deleted" or "changed" (a room). */
const char *bus_request_what(BusRequest *req);

/* The daemon reports every change, whoever made it (any daemon, via Redis),
 * so the standard signals go out. Before the name is ours they are no-ops.
 * Call room_added after the room is visible through get_room (-ENOENT if
 * not: sd-bus would announce it without our interface), and before
 * completing its CreateRoom, so the caller can use the path at once;
 * room_removed may be called before or after it vanished. */
typedef enum BusRoomProperty {
        BUS_ROOM_TITLE      = 1u << 0,
        BUS_ROOM_STAFF_ONLY = 1u << 1,
        BUS_ROOM_MEMBERS    = 1u << 2,
} BusRoomProperty;

typedef enum BusManagerProperty {
        BUS_MANAGER_CONNECTIONS     = 1u << 0,
        BUS_MANAGER_REDIS_CONNECTED = 1u << 1,
        /* MessagesRelayed changes with every message: it is annotated
         * EmitsChangedSignal=false and has no flag. */
} BusManagerProperty;

int bus_emit_room_added(Bus *b, const char *id);
int bus_emit_room_removed(Bus *b, const char *id);
int bus_emit_room_changed(Bus *b, const char *id, unsigned properties);     /* BusRoomProperty mask */
int bus_emit_manager_changed(Bus *b, unsigned properties);                  /* BusManagerProperty mask */
