/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's side of multichat-auth: asynchronous logins and user lookups on sd-event. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "basic/macro.h"

typedef struct AuthClient AuthClient;
typedef struct AuthRequest AuthRequest;

/* What a failed login should cost when the client never got an answer
 * from the helper (e.g. auth_client_authenticate() said -EINVAL): the
 * helper's own nominal delay, so such refusals look like any other. */
#define AUTH_FAIL_DELAY_USEC (UINT64_C(2) * 1000 * 1000)

typedef struct AuthResult {
        /* 0: yes (authenticated, or the user exists and may use the chat).
         * -EACCES: wrong user or password, or PAM refused the account.
         * -EPERM: root, nobody, or uid below the helper's --min-uid.
         * -ENOENT: no such user (lookups only; a login says -EACCES).
         * -EBUSY: the helper runs too many requests at once.
         * -EINVAL: the helper did not understand the request (a bug).
         * -EIO: PAM or the user database failed in the helper.
         * -ETIMEDOUT: no answer in time; -ECONNRESET: the helper died
         * or went away while the request was with it. */
        int result;
        uid_t uid;                      /* result == 0 only */
        bool staff;                     /* in the helper's --staff-group */
        bool in_group;                  /* in the group the lookup asked about */
        const char *username;           /* canonical name, "" unless result == 0; valid during the callback */
        /* On a failed login: wait this long from now before answering the
         * browser. Time the request already took is subtracted, so every
         * "no" arrives the same time after the request, whatever PAM did. */
        uint64_t fail_delay_usec;
} AuthResult;

typedef void (*AuthCallback)(const AuthResult *res, void *userdata);

typedef struct AuthClientOptions {
        /* Connect to a helper systemd runs (multichat-auth.socket), e.g.
         * "/run/multichat-auth/auth.sock"; reconnects with backoff. */
        const char *socket_path;
        /* Otherwise spawn this helper with --fd=3 and helper_args after it
         * (NULL-terminated, may be NULL); respawned with backoff when it
         * dies, killed by auth_client_free(). Spawning blocks SIGCHLD in
         * the calling thread, as sd_event_add_child() requires. */
        const char *helper_path;
        char * const *helper_args;
        uint64_t timeout_usec;          /* per request; 0 = 10 s */
        unsigned max_pending;           /* queued + in flight; 0 = 256 */
} AuthClientOptions;

/* Spawn mode fails here when the helper cannot be started at all (e.g. no
 * such file); connect mode starts even if the socket is not there yet. */
int auth_client_new(AuthClient **ret, sd_event *e, const AuthClientOptions *opts);
/* Drops every request without calling its callback; handles the caller
 * still holds stay valid until auth_request_cancel(). Never call it from
 * an AuthCallback. */
AuthClient *auth_client_free(AuthClient *c);
DEFINE_CLEANUP_FUNC(AuthClient *, auth_client_free);

/* Each returns 0 and later calls cb exactly once (unless cancelled), never
 * from inside the call itself; or fails at once with -EINVAL (a name or
 * password the wire cannot carry: 1..64 bytes of [A-Za-z0-9._-] not
 * starting with '-'; passwords up to 1024 bytes), -EBUSY (max_pending
 * reached) or -ENOMEM, and then cb is never called.
 *
 * With ret_req the caller owns the handle and must free it with
 * auth_request_cancel() — before the callback (it then never runs), in
 * it, or after it. With ret_req NULL the request frees itself. The
 * password is copied, sent, and wiped; the caller may wipe its own at once. */
int auth_client_authenticate(AuthClient *c, const char *user, const char *password, const char *remote,
                             AuthCallback cb, void *userdata, AuthRequest **ret_req);
/* Who is this user, and are they in group (NULL: only the staff flag)?
 * Refuses, like a login, root and uids below --min-uid with -EPERM. */
int auth_client_lookup(AuthClient *c, const char *user, const char *group,
                       AuthCallback cb, void *userdata, AuthRequest **ret_req);
/* The same by uid, for D-Bus callers: no uid is refused here, the caller
 * decides (uid 0, or in_group for the admin group). */
int auth_client_lookup_uid(AuthClient *c, uid_t uid, const char *group,
                           AuthCallback cb, void *userdata, AuthRequest **ret_req);

/* Accepts NULL; returns NULL. */
AuthRequest *auth_request_cancel(AuthRequest *r);
DEFINE_CLEANUP_FUNC(AuthRequest *, auth_request_cancel);

/* The spawned helper's pid, 0 when none runs (or in connect mode). */
pid_t auth_client_get_pid(AuthClient *c);
