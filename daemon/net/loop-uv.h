/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A libuv loop embedded in sd-event, so that lws (foreign libuv loop) runs on our one main loop. */
#pragma once

#include <stdbool.h>
#include <uv.h>
#include <systemd/sd-event.h>

typedef struct LoopUv LoopUv;

int loop_uv_new(LoopUv **ret, sd_event *e);
LoopUv *loop_uv_free(LoopUv *l);
uv_loop_t *loop_uv_get(LoopUv *l);

/* Runs the uv loop without waiting until it has nothing immediate left to
 * do, or until it has no handles at all (teardown). Returns true when the
 * loop has no live handles left. */
bool loop_uv_drain(LoopUv *l, unsigned max_rounds);

static inline void loop_uv_freep(LoopUv **l) {
        loop_uv_free(*l);
}
