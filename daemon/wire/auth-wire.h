/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The datagrams between the daemon and multichat-auth: encode, decode, validate. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/limits.h"

/* One request or reply per SOCK_SEQPACKET datagram. All integers are
 * little-endian; strings are a u16 length and that many bytes, no NUL.
 *
 *   header    "MCAU" | u8 version (1) | u8 type | u16 reserved (0) | u32 id
 *   AUTHENTICATE  str username | str password | str remote
 *   LOOKUP        str username | str group ("" = none)
 *   LOOKUP_UID    u32 uid | str group ("" = none)
 *   REPLY         i32 result | u32 uid | u8 flags | u8[3] reserved (0)
 *                 | u64 fail_delay_usec | str username
 *
 * Decoding is strict: wrong magic, version, type, reserved bits, lengths,
 * trailing bytes or characters fail with -EINVAL (-EBADMSG for a bad header),
 * so neither side ever acts on a datagram it half understood. */

#define AUTH_WIRE_MAGIC "MCAU"
#define AUTH_WIRE_VERSION 1
#define AUTH_WIRE_HEADER_SIZE 12

#define AUTH_WIRE_GROUP_MAX 64
#define AUTH_WIRE_PASSWORD_MAX 1024
#define AUTH_WIRE_REMOTE_MAX 128
/* Larger than any valid datagram (1,234 bytes), so a receiver that reads
 * into this size and sees more knows the datagram is malformed. */
#define AUTH_WIRE_DATAGRAM_MAX 2048

/* A reply never asks the daemon to wait longer than this. */
#define AUTH_WIRE_FAIL_DELAY_MAX_USEC (60ULL * 1000 * 1000)

#define AUTH_WIRE_UID_INVALID UINT32_MAX

#define AUTH_WIRE_FLAG_STAFF    (1U << 0)
#define AUTH_WIRE_FLAG_IN_GROUP (1U << 1)

typedef enum AuthWireType {
        AUTH_WIRE_AUTHENTICATE = 1,
        AUTH_WIRE_LOOKUP = 2,
        AUTH_WIRE_LOOKUP_UID = 3,
        AUTH_WIRE_REPLY = 128,
} AuthWireType;

typedef struct AuthWireRequest {
        AuthWireType type;
        uint32_t id;
        uint32_t uid;                                   /* LOOKUP_UID */
        char username[USERNAME_MAX + 1];      /* AUTHENTICATE, LOOKUP */
        char password[AUTH_WIRE_PASSWORD_MAX + 1];      /* AUTHENTICATE; erase after use */
        char remote[AUTH_WIRE_REMOTE_MAX + 1];          /* AUTHENTICATE, may be "" */
        char group[AUTH_WIRE_GROUP_MAX + 1];            /* LOOKUP, LOOKUP_UID, may be "" */
} AuthWireRequest;

typedef struct AuthWireReply {
        uint32_t id;
        int32_t result;                 /* 0 or -errno */
        uint32_t uid;                   /* AUTH_WIRE_UID_INVALID unless result == 0 */
        bool staff;
        bool in_group;
        uint64_t fail_delay_usec;
        char username[USERNAME_MAX + 1];      /* canonical; "" unless result == 0 */
} AuthWireReply;

/* 1..64 bytes of [A-Za-z0-9._-], not starting with '-' (so it can never be
 * read as an option by anything it is handed to). Group names: the same. */
bool auth_wire_username_is_valid(const char *s);
bool auth_wire_group_is_valid(const char *s);
/* At most 1024 bytes. */
bool auth_wire_password_is_valid(const char *s);
/* At most 128 bytes of printable ASCII without spaces; "" is allowed. */
bool auth_wire_remote_is_valid(const char *s);

/* Write the datagram into buf (size bytes); -EINVAL if a field is invalid,
 * -ENOBUFS if it does not fit. */
int auth_wire_request_encode(const AuthWireRequest *req, void *buf, size_t size, size_t *ret_len);
int auth_wire_reply_encode(const AuthWireReply *rep, void *buf, size_t size, size_t *ret_len);

/* Fill *req / *rep from a datagram; on failure they are left zeroed. */
int auth_wire_request_decode(AuthWireRequest *req, const void *buf, size_t len);
int auth_wire_reply_decode(AuthWireReply *rep, const void *buf, size_t len);

/* The id of a datagram whose header is intact, so a malformed request can
 * still be answered with -EINVAL; -EBADMSG if not even the header is. */
int auth_wire_peek_id(const void *buf, size_t len, uint32_t *ret_id);

/* Wipes the secret from a request (explicit_bzero, not optimized away). */
void auth_wire_request_erase(AuthWireRequest *req);
