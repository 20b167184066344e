/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Redis Sentinel: asks the sentinels where the master is and hears when they switch it. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "basic/macro.h"

typedef struct Sentinel Sentinel;

#define SENTINELS_MAX                  16
#define SENTINEL_MASTER_NAME_MAX       128
#define SENTINEL_QUERY_TIMEOUT_USEC    (2 * 1000000ULL)     /* per sentinel: connect, AUTH and the answer */

/* The master's address as the sentinels know it: a found one (error == 0,
 * host is numeric or a name, valid during the call), or -EHOSTUNREACH
 * after every sentinel was asked without an answer (detail says why, for
 * the log) or -EACCES when a sentinel refused our credentials. Asking again
 * after a failed round is the caller's decision. */
typedef void (*SentinelMasterHandler)(Sentinel *s, int error, const char *host, int port,
                                      const char *detail, void *userdata);

/* A sentinel announced +switch-master for our master name. */
typedef void (*SentinelSwitchHandler)(Sentinel *s, const char *host, int port, void *userdata);

/* addresses: "IPv4:PORT" or "[IPv6]:PORT", numeric so that connecting never
 * waits for DNS; user may be NULL (then AUTH takes the password alone),
 * password NULL for none. Everything is copied. */
int sentinel_new(Sentinel **ret, sd_event *e, char *const *addresses, const char *master_name,
                 const char *user, const char *password,
                 SentinelMasterHandler on_master, SentinelSwitchHandler on_switch, void *userdata);
Sentinel *sentinel_free(Sentinel *s);
DEFINE_CLEANUP_FUNC(Sentinel *, sentinel_free);

/* Asks the sentinels in turn, beginning with the one that answered last;
 * on_master follows once. A round already under way is not restarted.
 * Also (re)starts listening for +switch-master if it is not. */
int sentinel_discover(Sentinel *s);

/* Checks an address the way sentinel_new() wants it. */
bool sentinel_address_is_valid(const char *s);
