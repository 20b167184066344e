/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the typed parsers of the store scripts' replies: any RESP reply is refused or read within bounds. */

#include <stdbool.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "basic/macro.h"
#include "fuzz.h"
#include "store/store.h"
#include "wire/limits.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static void check_entries(const StoreEntries *l) {
        size_t n = store_entries_count(l);

        for (size_t i = 0; i < n; i++) {
                const char *id = store_entries_id(l, i);
                StoreEntry e;

                if (id)
                        FUZZ_CHECK(strlen(id) <= MESSAGE_ID_MAX);
                if (store_entries_get(l, i, &e) >= 0)
                        FUZZ_CHECK(e.id && e.username && e.text);
        }
        FUZZ_CHECK(store_entries_get(l, n, &(StoreEntry) {}) < 0);
}

static void check_presence(const redisReply *presence) {
        const char *user;
        unsigned count;
        int r;

        for (size_t i = 0; (r = store_presence_get(presence, i, &user, &count)) != -ENOENT; i++) {
                FUZZ_CHECK(i < 1u << 20);
                if (r >= 0)
                        FUZZ_CHECK(strlen(user) <= USERNAME_MAX && count > 0);
        }
}

static void check_reply(const redisReply *reply) {
        StoreJoinReply j;
        StoreHistoryReply h;
        StoreSinceReply s;
        StoreEpochReply e;

        (void) store_reply_error(reply);
        if (store_parse_join_reply(reply, &j) >= 0) {
                FUZZ_CHECK(j.connections >= 1);
                if (j.tip)
                        FUZZ_CHECK(strlen(j.tip) <= MESSAGE_ID_MAX);
                check_entries(&j.history);
        }
        if (store_parse_history_reply(reply, &h) >= 0)
                check_entries(&h.history);
        if (store_parse_since_reply(reply, &s) >= 0) {
                FUZZ_CHECK(s.last_id && strlen(s.last_id) <= MESSAGE_ID_MAX);
                check_entries(&s.entries);
        }
        if (store_parse_epoch_reply(reply, &e) >= 0)
                FUZZ_CHECK(e.epoch && strlen(e.epoch) <= STORE_EPOCH_MAX);
        check_presence(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        redisReader *reader;
        void *reply = NULL;

        if (fuzz_resp_too_large(data, size))
                return 0;
        reader = redisReaderCreate();
        FUZZ_CHECK(reader);
        if (redisReaderFeed(reader, (const char *) data, size) == REDIS_OK)
                while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply) {
                        check_reply(reply);
                        freeReplyObject(reply);
                        reply = NULL;
                }
        redisReaderFree(reader);
        return 0;
}
