/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* When the daemon takes its bus name and tells systemd it is ready: one state machine. */

#include "readiness.h"

static unsigned readiness_advance(Readiness *r) {
        switch (r->state) {
        case READINESS_WAITING_CHAT:
                if (!r->chat_ready)
                        return 0;
                r->state = READINESS_WAITING_BUS;
                return READINESS_START_BUS | (r->bus_ready ? readiness_advance(r) : 0);
        case READINESS_WAITING_BUS:
                if (!r->bus_ready)
                        return 0;
                r->state = READINESS_READY;
                return READINESS_SEND_READY;
        default:
                return 0;
        }
}

unsigned readiness_chat_changed(Readiness *r, bool ready) {
        r->chat_ready = ready;
        return readiness_advance(r);
}

unsigned readiness_bus_changed(Readiness *r, bool ready) {
        r->bus_ready = ready;
        return readiness_advance(r);
}

void readiness_stopping(Readiness *r) {
        r->state = READINESS_STOPPING;
}

const char *readiness_state_to_string(ReadinessState s) {
        switch (s) {
        case READINESS_WAITING_CHAT:
                return "waiting-chat";
        case READINESS_WAITING_BUS:
                return "waiting-bus";
        case READINESS_READY:
                return "ready";
        case READINESS_STOPPING:
                return "stopping";
        }
        return "unknown";
}
