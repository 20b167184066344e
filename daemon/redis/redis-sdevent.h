/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hiredis ↔ sd-event adapter: drives one redisAsyncContext from an sd-event loop. */
#pragma once

#include <systemd/sd-event.h>

#include <hiredis/async.h>

/* Hooks ac's read/write events into e (hiredis 0.14 ships no sd-event
 * adapter). Call it right after redisAsyncConnect*() succeeded (ac->err == 0)
 * and before issuing commands or setting the connect callback. The adapter
 * lives as long as the context: hiredis' cleanup hook frees it, also when
 * the context is freed from inside one of its own callbacks.
 * Returns 0, -EINVAL (ac failed or already attached) or -ENOMEM. */
int redis_sdevent_attach(redisAsyncContext *ac, sd_event *e);

/* Makes the adapter call reader(ac) instead of redisAsyncHandleRead() once
 * the connection is up: the owner reads the socket (redisBufferRead()) and
 * takes the replies itself (redisGetReplyFromReader()), and sends with
 * redisAppendFormattedCommand() and ac->ev.addWrite(). For a connection on
 * which Redis pushes what hiredis' pub/sub bookkeeping does not know
 * (sharded pub/sub in hiredis 0.14): hiredis then only connects and
 * writes. reader may free the context. -EINVAL when ac has no adapter. */
typedef void (*RedisSdEventReader)(redisAsyncContext *ac);
int redis_sdevent_set_reader(redisAsyncContext *ac, RedisSdEventReader reader);
