/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Room administration for the D-Bus objects: the BusBackend over the chat and the auth helper. */
#pragma once

#include <sys/types.h>

#include "bus/bus.h"

typedef struct Admin Admin;
typedef struct AuthClient AuthClient;
typedef struct Chat Chat;

/* What the backend shows of the daemon beyond the chat; ud is given to
 * admin_new(). */
typedef struct AdminHooks {
        /* The WebSocket connections of this daemon (ListConnections). */
        int (*foreach_connection)(void *ud, BusConnectionVisitor visit, void *visit_ud);
        uint32_t (*connections)(void *ud);
        /* As BusBackend.name_state. */
        void (*name_state)(void *ud, int r);
} AdminHooks;

/* admin_group: callers in it may change things (besides root); resolved
 * now, so that most checks need no NSS lookup. */
int admin_new(Admin **ret, Chat *chat, AuthClient *auth, const char *admin_group, const AdminHooks *hooks,
              void *userdata);
Admin *admin_free(Admin *a);

/* The backend, with an Admin as its userdata. */
extern const BusBackend admin_bus_backend;
