/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* When the daemon takes its bus name and tells systemd it is ready: one state machine. */
#pragma once

#include <stdbool.h>

/* The bus name is taken once the room list is loaded: D-Bus callers (and
 * D-Bus activation) then never see an empty list that is merely not loaded
 * yet. READY=1 follows the name, and only then are connections accepted
 * (those made before wait in the kernel's backlog: socket activation hands
 * them over that way). Redis may come and go after that; the daemon stays
 * ready and says so in its status. */
typedef enum ReadinessState {
        READINESS_WAITING_CHAT,         /* Redis, and the room list from it */
        READINESS_WAITING_BUS,          /* the bus name was asked for */
        READINESS_READY,                /* READY=1 was sent */
        READINESS_STOPPING,
} ReadinessState;

typedef enum ReadinessAction {
        READINESS_START_BUS  = 1u << 0,
        READINESS_SEND_READY = 1u << 1, /* READY=1, and start accepting connections */
} ReadinessAction;

typedef struct Readiness {
        ReadinessState state;
        bool chat_ready;
        bool bus_ready;
} Readiness;

/* Each returns what the caller must do now (a ReadinessAction mask). */
unsigned readiness_chat_changed(Readiness *r, bool ready);
unsigned readiness_bus_changed(Readiness *r, bool ready);
void readiness_stopping(Readiness *r);

const char *readiness_state_to_string(ReadinessState s);
