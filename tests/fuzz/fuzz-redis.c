/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the Redis address the daemon is given: what the configuration accepts, redis_new() must take. */

#include <errno.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "fuzz.h"
#include "basic/macro.h"
#include "redis/redis.h"

static sd_event *event;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        FUZZ_CHECK(sd_event_new(&event) >= 0);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *url = strndup((const char *) data, size);
        Redis *r = NULL;
        bool valid;
        int k;

        FUZZ_CHECK(url);
        valid = config_redis_is_valid(url);
        /* Does not connect: it only parses and sets up its timers. */
        k = redis_new(&r, event, url, NULL, NULL, NULL);
        if (k < 0) {
                FUZZ_CHECK(k == -EINVAL || k == -ENOMEM);
                /* The daemon would accept the setting and then fail to start. */
                FUZZ_CHECK(!valid);
                return 0;
        }
        FUZZ_CHECK(!redis_is_connected(r));
        redis_free(r);
        return 0;
}
