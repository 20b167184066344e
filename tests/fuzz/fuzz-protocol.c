/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the browser's commands (protocol_parse_command) and the JSON writer with what they accept. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "net/http-util.h"
#include "basic/macro.h"
#include "basic/utf8.h"
#include "wire/protocol.h"
#include "basic/unicode-visible.h"

/* The daemon's default max-message-bytes, and a small one so the
 * MESSAGE_TOO_LONG path is reached by short inputs too. */
static const size_t message_limits[] = { 4096, 8 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

/* What the parser promises about a command it accepted. */
static void check_command(const Command *c, size_t max_message_bytes) {
        FUZZ_CHECK((unsigned) c->type < _COMMAND_TYPE_MAX);
        FUZZ_CHECK(c->room[0] >= '1' && c->room[0] <= '9');
        FUZZ_CHECK(strspn(c->room, "0123456789") == strlen(c->room));
        FUZZ_CHECK(strlen(c->ref) <= REF_MAX);
        if (c->type == COMMAND_SEND || c->type == COMMAND_EDIT) {
                size_t n;

                FUZZ_CHECK(c->message);
                n = strlen(c->message);
                FUZZ_CHECK(n <= max_message_bytes);
                FUZZ_CHECK(utf8_is_valid(c->message, n));
                FUZZ_CHECK(utf8_has_visible(c->message, n));
        } else
                FUZZ_CHECK(!c->message);
        if (c->type == COMMAND_HISTORY)
                FUZZ_CHECK(c->limit >= 1 && c->limit <= HISTORY_LIMIT_MAX);
        if (c->has_after) {
                size_t n = strlen(c->after);

                FUZZ_CHECK(c->type == COMMAND_MEMBERS);
                FUZZ_CHECK(n >= 1 && n <= USERNAME_MAX);
                FUZZ_CHECK(utf8_is_valid(c->after, n));
        } else
                FUZZ_CHECK(c->after[0] == '\0');
}

/* An accepted message goes out to every member: its event must serialize
 * and read back as the same text. */
static void check_message_event(const Command *c) {
        _cleanup_(json_decrefp) json_t *back = NULL;
        _cleanup_free_ char *s = NULL;
        ChatMessage m = {
                .room = c->room,
                .id = "1700000000000-0",
                .username = "alice",
                .message = c->message,
                .ts = 1700000000000,
        };
        size_t n;

        s = protocol_format_message(&m);
        FUZZ_CHECK(s);
        n = strlen(s);
        FUZZ_CHECK(n >= 2 && s[0] == '{' && s[n - 1] == '}');
        back = json_loadb(s, n, 0, NULL);
        FUZZ_CHECK(back);
        FUZZ_CHECK(json_is_string(json_object_get(back, "message")));
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(back, "message")), c->message) == 0);
}

/* Whatever JSON the writer accepts, it writes as JSON that reads back equal. */
static void check_dumps(const uint8_t *data, size_t size) {
        _cleanup_(json_decrefp) json_t *in = NULL, *back = NULL;
        _cleanup_free_ char *s = NULL;
        size_t n;

        in = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (!in)
                return;
        s = protocol_json_dumps(in, &n);
        if (!s) {
                FUZZ_CHECK(errno == EINVAL);
                return;
        }
        FUZZ_CHECK(n == strlen(s));
        for (size_t i = 0; i < n; i++)
                FUZZ_CHECK((unsigned char) s[i] >= 0x20 && (unsigned char) s[i] <= 0x7e);
        back = json_loadb(s, n, JSON_DECODE_ANY, NULL);
        FUZZ_CHECK(back);
        FUZZ_CHECK(json_equal(in, back));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        for (size_t i = 0; i < ELEMENTSOF(message_limits); i++) {
                Command c;
                ProtocolError e;

                e = protocol_parse_command((const char *) data, size, message_limits[i], &c);
                FUZZ_CHECK((unsigned) e < _PROTOCOL_ERROR_MAX);
                if (e == PROTOCOL_OK) {
                        check_command(&c, message_limits[i]);
                        if (c.message)
                                check_message_event(&c);
                } else {
                        FUZZ_CHECK(!c.message);
                        FUZZ_CHECK(protocol_error_to_string(e));
                }
                command_done(&c);
        }

        (void) utf8_has_visible((const char *) data, size);
        check_dumps(data, size);
        return 0;
}
