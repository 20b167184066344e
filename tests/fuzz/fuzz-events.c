/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the pub/sub event decoder: anything on a channel is refused or decoded within the codec's limits. */

#include <string.h>

#include "basic/macro.h"
#include "fuzz.h"
#include "wire/events.h"
#include "wire/limits.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static void check_event(const Event *e) {
        FUZZ_CHECK(e->kind < _EVENT_KIND_MAX);
        FUZZ_CHECK(e->root);
        if (e->id)
                FUZZ_CHECK(strlen(e->id) <= MESSAGE_ID_MAX);
        if (e->user)
                FUZZ_CHECK(strlen(e->user) <= USERNAME_MAX);
        if (e->room)
                FUZZ_CHECK(strlen(e->room) <= ROOM_ID_MAX);
        switch (e->kind) {
        case EVENT_MESSAGE:
        case EVENT_EDITED:
                FUZZ_CHECK(e->id && e->user && e->text);
                break;
        case EVENT_NOTICE:
                FUZZ_CHECK(e->text && e->level >= EVENT_NOTICE_LEVEL_MIN && e->level <= EVENT_NOTICE_LEVEL_MAX);
                break;
        case EVENT_PRESENCE:
                FUZZ_CHECK(e->room && e->user && e->count >= 0 && e->change >= -1 && e->change <= 1);
                break;
        case EVENT_KICK:
                FUZZ_CHECK(e->user && e->room);
                break;
        case EVENT_LOGOUT:
                FUZZ_CHECK(e->session_id);
                break;
        default:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Event e, copy;

        if (event_parse((const char *) data, size, &e) < 0)
                return 0;
        check_event(&e);
        /* A held copy outlives the original. */
        event_copy(&copy, &e);
        event_done(&e);
        check_event(&copy);
        event_done(&copy);
        return 0;
}
