/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A connection as the chat sees it: who it is and which rooms it is in. */
#pragma once

#include <stdbool.h>

#include "basic/list.h"

typedef struct Chat Chat;
typedef struct Membership Membership;

struct ChatMember {
        unsigned n_ref;                 /* the owner's, and each request waiting for Redis */
        bool staff;
        bool closed;                    /* the connection is gone: nothing more is sent */
        bool hello_seen;                /* "hello" is accepted once */
        unsigned version;               /* the protocol it speaks: 1, or 2 once its hello was answered */
        Chat *chat;
        void *conn;                     /* the owner's, handed back in the hooks */
        const char *username;           /* borrowed from the owner; NULL once closed */
        const char *session_id;
        Membership **memberships;
        size_t n_memberships, n_memberships_allocated;
        LIST_FIELDS(struct ChatMember, members);
};
