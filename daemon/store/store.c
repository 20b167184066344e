/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Redis schema: key and channel names, and the Lua scripts that change rooms, messages and presence atomically. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "store/store.h"

/* Every script declares the keys it touches in KEYS, and they share one
 * hash tag: a script runs in one Redis Cluster slot. Keys are built here
 * in C, never in Lua. Room scripts take the room's channel as an argument
 * for the same reason: a channel carries its room's tag, so a sharded
 * publish from the script stays on the room's shard. */

#define LUA_ID_LESS                                                                     \
        "local function idlt(a, b)\n"                                                   \
        "  local am, as = a:match('^(%d+)-(%d+)$')\n"                                   \
        "  local bm, bs = b:match('^(%d+)-(%d+)$')\n"                                   \
        "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"   \
        "  if am ~= bm then return am < bm end\n"                                       \
        "  return as < bs\n"                                                            \
        "end\n"

/* XRANGE/XREVRANGE that answers nil for an id Redis refuses (out of
 * range, or an empty interval like "(0-0"), so a script can refuse
 * cleanly before it has changed anything. */
#define LUA_RANGE                                                                       \
        "local function range(cmd, key, a, b, n)\n"                                     \
        "  if n <= 0 then return {} end\n"                                              \
        "  local got = redis.pcall(cmd, key, a, b, 'COUNT', n)\n"                       \
        "  if type(got) == 'table' and got.err then return nil end\n"                   \
        "  return got\n"                                                                \
        "end\n"

#define LUA_EDITS                                                                       \
        "local function edits(ekey, entries)\n"                                         \
        "  local out = {}\n"                                                            \
        "  if #entries == 0 then return out end\n"                                      \
        "  local ids = {}\n"                                                            \
        "  for i, e in ipairs(entries) do ids[i] = e[1] end\n"                          \
        "  local got = redis.call('HMGET', ekey, unpack(ids))\n"                        \
        "  for i = 1, #entries do out[i] = got[i] or '' end\n"                          \
        "  return out\n"                                                                \
        "end\n"

/* Whether entries newer than `after` were trimmed away: the stream has lost
 * entries (entries-added counts every one ever added, Redis 7) and its
 * oldest is newer than `after`, or it has none left although newer ones
 * were added. XDEL loses entries too, so a deletion right after `after`
 * may be taken for trimming; never the other way round. */
#define LUA_TRIMMED_AFTER                                                               \
        "local function trimmed_after(log, after)\n"                                    \
        "  if redis.call('EXISTS', log) == 0 then return false end\n"                   \
        "  local info, added, length, last = redis.call('XINFO', 'STREAM', log), 0, 0, '0-0'\n" \
        "  for i = 1, #info, 2 do\n"                                                    \
        "    if info[i] == 'entries-added' then added = info[i + 1] end\n"              \
        "    if info[i] == 'length' then length = info[i + 1] end\n"                   \
        "    if info[i] == 'last-generated-id' then last = info[i + 1] end\n"          \
        "  end\n"                                                                       \
        "  if added <= length or not idlt(after, last) then return false end\n"         \
        "  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)\n"             \
        "  return #first == 0 or idlt(after, first[1][1])\n"                            \
        "end\n"

/* A user's unread count and mentions in a room after their marker: at
 * most 1000 entries are read, counts are capped at 999; the user's own
 * messages do not count. Field n holds the names a message mentions, or
 * the room's edits-n those of its edited text. */
#define LUA_UNREAD                                                                      \
        "local function unread(log, edn, user, marker)\n"                                \
        "  if not marker or marker == '' then return 0, 0 end\n"                         \
        "  local got = redis.pcall('XRANGE', log, '(' .. marker, '+', 'COUNT', 1000)\n"  \
        "  if type(got) ~= 'table' or got.err then return 0, 0 end\n"                    \
        "  local n, m, edited = 0, 0, {}\n"                                              \
        "  if #got > 0 then\n"                                                           \
        "    local ids = {}\n"                                                           \
        "    for i, e in ipairs(got) do ids[i] = e[1] end\n"                             \
        "    edited = redis.call('HMGET', edn, unpack(ids))\n"                           \
        "  end\n"                                                                        \
        "  for k, e in ipairs(got) do\n"                                                 \
        "    local u, names = nil, ''\n"                                                 \
        "    for i = 1, #e[2], 2 do\n"                                                   \
        "      if e[2][i] == 'u' then u = e[2][i + 1] elseif e[2][i] == 'n' then names = e[2][i + 1] end\n" \
        "    end\n"                                                                      \
        "    if edited[k] then names = edited[k] end\n"                                  \
        "    if u ~= user then\n"                                                        \
        "      n = n + 1\n"                                                              \
        "      if (' ' .. names .. ' '):find(' ' .. user .. ' ', 1, true) then m = m + 1 end\n" \
        "    end\n"                                                                      \
        "  end\n"                                                                        \
        "  return math.min(n, 999), math.min(m, 999)\n"                                  \
        "end\n"

/* KEYS: room, log, edits, edits-n, users, this daemon's presence in the
 * room. ARGV: room, user, history, since ('' for none), and for a version 2
 * connection the user's read marker ('' none). Everything that can fail
 * comes before the presence changes: scripts are not rolled back. The
 * last element is the stream's newest id ("0-0" if none): what the joiner
 * has, for a daemon that replays the stream meanwhile. */
static RedisScript script_join = { .source =
        LUA_ID_LESS LUA_RANGE LUA_EDITS LUA_UNREAD
        "local room, user, n, since, marker = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]\n"
        "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local log = KEYS[2]\n"
        "local hist, complete = {}, 1\n"
        "if since ~= '' then\n"
        "  hist = range('XRANGE', log, '(' .. since, '+', n + 1)\n"
        "  if not hist then return redis.error_reply('BADID not a message id of this room') end\n"
        "  if #hist > n then complete = 0; hist[#hist] = nil end\n"
        /* The client's last message is older than the oldest we keep, and
         * the stream has lost entries (entries-added counts every one ever
         * added): trimming may have taken some the client never saw. */
        "  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)\n"
        "  if #first > 0 and idlt(since, first[1][1]) then\n"
        "    local info, added, length = redis.call('XINFO', 'STREAM', log), 0, 0\n"
        "    for i = 1, #info, 2 do\n"
        "      if info[i] == 'entries-added' then added = info[i + 1] end\n"
        "      if info[i] == 'length' then length = info[i + 1] end\n"
        "    end\n"
        "    if added > length then complete = 0 end\n"
        "  end\n"
        "else\n"
        "  local rev = range('XREVRANGE', log, '+', '-', n) or {}\n"
        "  for i = #rev, 1, -1 do hist[#hist + 1] = rev[i] end\n"
        "end\n"
        "local count = redis.call('HINCRBY', KEYS[5], user, 1)\n"
        "redis.call('HINCRBY', KEYS[6], user, 1)\n"
        "local change = 0\n"
        "if count == 1 then change = 1 end\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'p', room, user, count, change}))\n"
        "local tip = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)\n"
        "if #tip > 0 then tip = tip[1][1] else tip = '0-0' end\n"
        "if marker then\n"
        "  local c, m = unread(log, KEYS[4], user, marker)\n"
        "  return {count, hist, complete, edits(KEYS[3], hist), tip, marker, c, m}\n"
        "end\n"
        "return {count, hist, complete, edits(KEYS[3], hist), tip}\n"
};

/* KEYS: the user's rooms, their order. ARGV: room, user, the most rooms a
 * user may have. The first half of a version 2 join: the room becomes the
 * user's, kept in the order joined. Reply: the user's read marker ('' none). */
static RedisScript script_user_join = { .source =
        "local room, user, max = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
        "local marker = redis.call('HGET', KEYS[1], room)\n"
        "if marker then return marker end\n"
        "if redis.call('HLEN', KEYS[1]) >= max then return redis.error_reply('FULL too many rooms') end\n"
        "local t = redis.call('TIME')\n"
        "local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
        "local last = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
        "if #last > 0 and tonumber(last[2]) >= at then at = tonumber(last[2]) + 1 end\n"
        "redis.call('HSET', KEYS[1], room, '')\n"
        "redis.call('ZADD', KEYS[2], at, room)\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'uj', user, room}))\n"
        "return ''\n"
};

/* KEYS: the user's rooms, their order. ARGV: rooms that no longer exist.
 * The rooms the user has joined, in the order joined; the rooms named are
 * dropped from them here. */
static RedisScript script_user_rooms = { .source =
        "local gone = {}\n"
        "for i = 1, #ARGV do gone[ARGV[i]] = true end\n"
        "local out = {}\n"
        "for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do\n"
        "  if not gone[id] and redis.call('HEXISTS', KEYS[1], id) == 1 then\n"
        "    out[#out + 1] = id\n"
        "  else\n"
        "    redis.call('HDEL', KEYS[1], id)\n"
        "    redis.call('ZREM', KEYS[2], id)\n"
        "  end\n"
        "end\n"
        "return out\n"
};

/* KEYS: the user's rooms, their order. ARGV: user, room, reason ('',
 * 'kicked', 'deleted'). Reply: 1 when the room was the user's. */
static RedisScript script_user_leave = { .source =
        "local user, room, reason = ARGV[1], ARGV[2], ARGV[3]\n"
        "if redis.call('HDEL', KEYS[1], room) == 0 then return 0 end\n"
        "redis.call('ZREM', KEYS[2], room)\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'ul', user, room, reason}))\n"
        "return 1\n"
};

/* KEYS: the user's rooms. ARGV: room, user, id. Markers never move
 * backwards. Reply: 1 moved, 0 not. */
static RedisScript script_read = { .source =
        LUA_ID_LESS
        "local room, user, id = ARGV[1], ARGV[2], ARGV[3]\n"
        "local marker = redis.call('HGET', KEYS[1], room)\n"
        "if not marker then return redis.error_reply('NOTJOINED not a room of the user') end\n"
        "if marker ~= '' and not idlt(marker, id) then return 0 end\n"
        "redis.call('HSET', KEYS[1], room, id)\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'ur', user, room, id}))\n"
        "return 1\n"
};

/* KEYS: the user's rooms. ARGV: room. Reply: the marker ('' none). */
static RedisScript script_marker = { .source =
        "local marker = redis.call('HGET', KEYS[1], ARGV[1])\n"
        "if not marker then return redis.error_reply('NOTJOINED not a room of the user') end\n"
        "return marker\n"
};

/* KEYS: log, edits-n. ARGV: user, marker. Reply: {marker, unread, mentions}. */
static RedisScript script_unread = { .source =
        LUA_UNREAD
        "local c, m = unread(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"
        "return {ARGV[2], c, m}\n"
};

/* KEYS: this daemon's presence in the room, users. ARGV: room, user. */
static RedisScript script_leave = { .source =
        "local room, user = ARGV[1], ARGV[2]\n"
        "local mine = tonumber(redis.call('HGET', KEYS[1], user) or '0')\n"
        "if mine <= 0 then return 0 end\n"
        "if mine == 1 then redis.call('HDEL', KEYS[1], user) else redis.call('HINCRBY', KEYS[1], user, -1) end\n"
        "local count = redis.call('HINCRBY', KEYS[2], user, -1)\n"
        "local change = 0\n"
        "if count <= 0 then redis.call('HDEL', KEYS[2], user); count = 0; change = -1 end\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'p', room, user, count, change}))\n"
        "return count\n"
};

/* KEYS: room, log, and the send's ref key when it has a ref. ARGV: channel,
 * user, text, keep, ref ttl, mentioned names ('' none). */
static RedisScript script_send = { .source =
        "local channel, user, text, keep, ttl, names = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\n"
        "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local seen = KEYS[3]\n"
        "if seen then\n"
        "  local id = redis.call('GET', seen)\n"
        "  if id then return id end\n"
        "end\n"
        "local id\n"
        "if names ~= '' then\n"
        "  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, '*', 'u', user, 'm', text, 'n', names)\n"
        "else\n"
        "  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, '*', 'u', user, 'm', text)\n"
        "end\n"
        "redis.call('SPUBLISH', channel, cjson.encode({'m', id, user, text}))\n"
        "if seen then redis.call('SET', seen, id, 'EX', ttl) end\n"
        "return id\n"
};

/* KEYS: room, log, edits, edits-n. ARGV: channel, id, user, text ('' with
 * delete = 1), delete, the names the new text mentions ('' none; absent:
 * not recorded) */
static RedisScript script_edit = { .source =
        LUA_RANGE
        "local channel, id, user, text, delete = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'\n"
        "local names = ARGV[6]\n"
        "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local e = range('XRANGE', KEYS[2], id, id, 1)\n"
        "if not e or #e == 0 then return redis.error_reply('NOTFOUND no such message') end\n"
        "local author\n"
        "for i = 1, #e[1][2], 2 do if e[1][2][i] == 'u' then author = e[1][2][i + 1] end end\n"
        "if author ~= user then return redis.error_reply('FORBIDDEN not the author') end\n"
        "if delete then\n"
        "  redis.call('XDEL', KEYS[2], id)\n"
        "  redis.call('HDEL', KEYS[3], id)\n"
        "  redis.call('HDEL', KEYS[4], id)\n"
        "  redis.call('SPUBLISH', channel, cjson.encode({'d', id}))\n"
        "else\n"
        "  redis.call('HSET', KEYS[3], id, text)\n"
        "  if names then redis.call('HSET', KEYS[4], id, names) end\n"
        "  redis.call('SPUBLISH', channel, cjson.encode({'e', id, user, text}))\n"
        "end\n"
        "return redis.status_reply('OK')\n"
};

/* KEYS: room, log, edits. ARGV: before ('' for newest), limit */
static RedisScript script_history = { .source =
        LUA_RANGE LUA_EDITS
        "local before, n = ARGV[1], tonumber(ARGV[2])\n"
        "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local top = '+'\n"
        "if before ~= '' then top = '(' .. before end\n"
        "local rev = range('XREVRANGE', KEYS[2], top, '-', n + 1) or {}\n"
        "local complete = 1\n"
        "if #rev > n then complete = 0; rev[#rev] = nil end\n"
        "return {rev, edits(KEYS[3], rev), complete}\n"
};

/* KEYS: log, edits. ARGV: after, limit. One more than asked is read to
 * tell whether more follow. */
static RedisScript script_since = { .source =
        LUA_ID_LESS LUA_RANGE LUA_EDITS LUA_TRIMMED_AFTER
        "local after, n = ARGV[1], tonumber(ARGV[2])\n"
        "local log = KEYS[1]\n"
        "local hist, more, gap = range('XRANGE', log, '(' .. after, '+', n + 1) or {}, 0, 0\n"
        "if #hist > n then more = 1; hist[#hist] = nil end\n"
        "if trimmed_after(log, after) then gap = 1 end\n"
        "local last = '0-0'\n"
        "local info = redis.pcall('XINFO', 'STREAM', log)\n"
        "if type(info) == 'table' and not info.err then\n"
        "  for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end\n"
        "end\n"
        "return {hist, edits(KEYS[2], hist), more, gap, last}\n"
};

/* KEYS: epoch, rooms, room id counter. ARGV: the epoch this daemon knows
 * ('' at its first connect), a new one, then room id and room JSON pairs:
 * the rooms this daemon knows. A Redis without an epoch that is not new to
 * the daemon lost its data: the rooms come back from the daemon's cache
 * (what was never there is not made up: only rooms the daemon saw). Reply:
 * {epoch, lost (0/1), rooms restored}. */
static RedisScript script_epoch = { .source =
        "local cur = redis.call('GET', KEYS[1])\n"
        "if cur then return {cur, (ARGV[1] ~= '' and cur ~= ARGV[1]) and 1 or 0, 0} end\n"
        "local restored = 0\n"
        "if ARGV[1] ~= '' then\n"
        "  local seq = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
        "  for i = 3, #ARGV - 1, 2 do\n"
        "    restored = restored + redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])\n"
        "    if tonumber(ARGV[i]) > seq then seq = tonumber(ARGV[i]) end\n"
        "  end\n"
        "  redis.call('SET', KEYS[3], seq)\n"
        "  if restored > 0 then redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'})) end\n"
        "end\n"
        "redis.call('SET', KEYS[1], ARGV[2])\n"
        "return {ARGV[2], ARGV[1] ~= '' and 1 or 0, restored}\n"
};

/* KEYS: rooms. ARGV: room, title, staff_only. The last step of creating a
 * room: the id was taken and the room's own key written before. */
static RedisScript script_create_room = { .source =
        "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({title = ARGV[2], staff_only = ARGV[3] == '1'}))\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'}))\n"
        "return ARGV[1]\n"
};

/* KEYS: rooms. ARGV: room, title ('' keeps), staff_only ('' keeps, '0', '1') */
static RedisScript script_update_room = { .source =
        "local raw = redis.call('HGET', KEYS[1], ARGV[1])\n"
        "if not raw then return redis.error_reply('NOROOM no such room') end\n"
        "local room = cjson.decode(raw)\n"
        "if ARGV[2] ~= '' then room.title = ARGV[2] end\n"
        "if ARGV[3] ~= '' then room.staff_only = ARGV[3] == '1' end\n"
        "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(room))\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'}))\n"
        "return redis.status_reply('OK')\n"
};

/* KEYS: room, log, edits, edits-n, users. The first step of deleting a
 * room: its own keys go. */
static RedisScript script_drop_room = { .source =
        "return redis.call('DEL', unpack(KEYS))\n"
};

/* KEYS: rooms. ARGV: room, whether the first step found any of its keys. */
static RedisScript script_delete_room = { .source =
        "local room = ARGV[1]\n"
        "if redis.call('HDEL', KEYS[1], room) == 0 and ARGV[2] == '0' then return redis.error_reply('NOROOM no such room') end\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'deleted', room}))\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'}))\n"
        "return redis.status_reply('OK')\n"
};

/* KEYS: a daemon's presence in the room, users. ARGV: room. Takes back what
 * that daemon held there. */
static RedisScript script_reap_room = { .source =
        "local p = redis.call('HGETALL', KEYS[1])\n"
        "for i = 1, #p, 2 do\n"
        "  local user = p[i]\n"
        "  local c = redis.call('HINCRBY', KEYS[2], user, -tonumber(p[i + 1]))\n"
        "  local change = 0\n"
        "  if c <= 0 then redis.call('HDEL', KEYS[2], user); c = 0; change = -1 end\n"
        "  redis.call('PUBLISH', 'mc:events', cjson.encode({'p', ARGV[1], user, c, change}))\n"
        "end\n"
        "redis.call('DEL', KEYS[1])\n"
        "return #p / 2\n"
};

/* argv: n C strings, the first nkeys of them keys. */
static int store_eval(Redis *r, RedisScript *s, RedisReplyHandler cb, void *userdata,
                      int nkeys, int n, const char **argv) {
        /* The hash is derived from the constant source on first use. */
        if (!s->sha1[0])
                redis_script_init(s, s->source);
        return redis_eval(r, s, cb, userdata, nkeys, n - nkeys, argv, NULL);
}

int store_load_scripts(Redis *r) {
        RedisScript *const scripts[] = {
                &script_join, &script_user_join, &script_leave, &script_send, &script_edit, &script_history,
                &script_since, &script_epoch, &script_create_room, &script_update_room, &script_drop_room,
                &script_delete_room, &script_reap_room, &script_user_rooms, &script_user_leave, &script_read,
                &script_marker, &script_unread,
        };

        for (size_t i = 0; i < ELEMENTSOF(scripts); i++) {
                int k;

                if (!scripts[i]->sha1[0])
                        redis_script_init(scripts[i], scripts[i]->source);
                k = redis_command_argv(r, NULL, NULL, 3, (const char *[]) { "SCRIPT", "LOAD", scripts[i]->source }, NULL);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* ---- key names ---- */

typedef char StoreKey[STORE_KEY_MAX + 1];

static int key_printf(StoreKey k, const char *format, ...) _printf_(2, 3);
static int key_printf(StoreKey k, const char *format, ...) {
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(k, STORE_KEY_MAX + 1, format, ap);
        va_end(ap);
        return n < 0 || (size_t) n > STORE_KEY_MAX ? -EINVAL : 0;
}

int store_room_key(char *buf, size_t size, const char *room, const char *what) {
        int n;

        if (!room || !room[0] || strlen(room) > ROOM_ID_MAX)
                return -EINVAL;
        n = snprintf(buf, size, STORE_ROOM_KEY_PREFIX "%s}:%s", room, what);
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

int store_user_key(char *buf, size_t size, const char *user, const char *what) {
        int n;

        if (!user || !user[0] || strlen(user) > USERNAME_MAX)
                return -EINVAL;
        n = snprintf(buf, size, STORE_USER_KEY_PREFIX "%s}:%s", user, what);
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

static int room_key(StoreKey k, const char *room, const char *what) {
        return store_room_key(k, STORE_KEY_MAX + 1, room, what);
}

static int user_key(StoreKey k, const char *user, const char *what) {
        return store_user_key(k, STORE_KEY_MAX + 1, user, what);
}

static int daemon_id_check(const char *daemon_id) {
        return daemon_id && daemon_id[0] && strlen(daemon_id) <= STORE_DAEMON_ID_MAX ? 0 : -EINVAL;
}

int store_room_channel(const char *room, char *buf, size_t size) {
        return store_room_key(buf, size, room, "ch");
}

int store_channel_room(const char *channel, char *buf, size_t size) {
        size_t p = strlen(STORE_ROOM_KEY_PREFIX), n;
        const char *end;

        if (strncmp(channel, STORE_ROOM_KEY_PREFIX, p) != 0)
                return -EINVAL;
        end = strchr(channel + p, '}');
        if (!end || !streq(end, "}:ch"))
                return -EINVAL;
        n = (size_t) (end - channel - p);
        if (n == 0 || n > ROOM_ID_MAX || n >= size)
                return -EINVAL;
        memcpy(buf, channel + p, n);
        buf[n] = 0;
        return 0;
}

/* ---- requests of more than one step ---- */

/* A request the store answers after more than one round trip, because
 * what it touches lies in more than one slot. Its handler runs exactly
 * once, with the last step's reply (or the first error). */
typedef struct StoreChain {
        RedisReplyHandler cb;
        void *userdata;
        char room[ROOM_ID_MAX + 1];
        char user[USERNAME_MAX + 1];
        char daemon[STORE_DAEMON_ID_MAX + 1];
        char *text;
        unsigned n;
        bool flag;
} StoreChain;

static StoreChain *chain_free(StoreChain *c) {
        if (c) {
                free(c->text);
                free(c);
        }
        return NULL;
}
DEFINE_CLEANUP_FUNC(StoreChain *, chain_free);

static int chain_new(StoreChain **ret, RedisReplyHandler cb, void *userdata,
                     const char *room, const char *user, const char *daemon_id, const char *text) {
        _cleanup_(chain_freep) StoreChain *c = NULL;

        if ((room && strlen(room) > ROOM_ID_MAX) || (user && strlen(user) > USERNAME_MAX) ||
            (daemon_id && strlen(daemon_id) > STORE_DAEMON_ID_MAX))
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (StoreChain) { .cb = cb, .userdata = userdata };
        strcpy(c->room, room ?: "");
        strcpy(c->user, user ?: "");
        strcpy(c->daemon, daemon_id ?: "");
        if (text && !(c->text = strdup(text)))
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

/* Ends the chain with this reply. */
static void chain_answer(Redis *r, StoreChain *c, const redisReply *reply) {
        if (c->cb)
                c->cb(r, reply, c->userdata);
        chain_free(c);
}

/* Ends the chain when the next step could not be sent: as if the
 * connection dropped. */
static void chain_sent(Redis *r, StoreChain *c, int k) {
        if (k < 0)
                chain_answer(r, c, NULL);
}

static void chain_answer_cb(Redis *r, const redisReply *reply, void *userdata) {
        chain_answer(r, userdata, reply);
}

/* A step's reply that ends the chain: no reply, or an error. */
static bool chain_failed(Redis *r, StoreChain *c, const redisReply *reply) {
        if (reply && reply->type != REDIS_REPLY_ERROR)
                return false;
        chain_answer(r, c, reply);
        return true;
}

/* ---- rooms ---- */

int store_load_rooms(Redis *r, RedisReplyHandler cb, void *userdata) {
        return redis_command(r, cb, userdata, "HGETALL " STORE_ROOMS_KEY);
}

int store_load_presence(Redis *r, const char *room, RedisReplyHandler cb, void *userdata) {
        StoreKey users;
        int k = room_key(users, room, "users");

        if (k < 0)
                return k;
        return redis_command(r, cb, userdata, "HGETALL %s", users);
}

static void on_create_room_key(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        StoreKey rooms = STORE_ROOMS_KEY;

        if (chain_failed(r, c, reply))
                return;
        chain_sent(r, c, store_eval(r, &script_create_room, chain_answer_cb, c, 1, 4,
                                    (const char *[]) { rooms, c->room, c->text ?: "", c->flag ? "1" : "0" }));
}

static void on_create_room_id(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        StoreKey room;

        if (chain_failed(r, c, reply))
                return;
        if (reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0)
                return chain_answer(r, c, NULL);
        snprintf(c->room, sizeof c->room, "%lld", reply->integer);
        if (room_key(room, c->room, "room") < 0)
                return chain_answer(r, c, NULL);
        chain_sent(r, c, redis_command(r, on_create_room_key, c, "SET %s 1", room));
}

/* Three steps in this order: a crash after the id is taken wastes an id;
 * after the room's own key is written, leaves a key no one can reach (the
 * room is in no list, and ids are never handed out twice). The room is
 * listed last, when it works. */
int store_create_room(Redis *r, const char *title, bool staff_only, RedisReplyHandler cb, void *userdata) {
        StoreChain *c;
        int k;

        k = chain_new(&c, cb, userdata, NULL, NULL, NULL, title);
        if (k < 0)
                return k;
        c->flag = staff_only;
        k = redis_command(r, on_create_room_id, c, "INCR " STORE_ROOMS_SEQ_KEY);
        if (k < 0)
                chain_free(c);
        return k;
}

int store_update_room(Redis *r, const char *room, const char *title, int staff_only, RedisReplyHandler cb, void *userdata) {
        StoreKey rooms = STORE_ROOMS_KEY;

        return store_eval(r, &script_update_room, cb, userdata, 1, 4,
                          (const char *[]) { rooms, room, title ?: "", staff_only < 0 ? "" : staff_only ? "1" : "0" });
}

static void on_drop_room(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        StoreKey rooms = STORE_ROOMS_KEY;

        if (chain_failed(r, c, reply))
                return;
        chain_sent(r, c, store_eval(r, &script_delete_room, chain_answer_cb, c, 1, 3,
                                    (const char *[]) { rooms, c->room,
                                                       reply->type == REDIS_REPLY_INTEGER && reply->integer > 0 ? "1" : "0" }));
}

/* The room's own keys go first: from then on its scripts answer NOROOM.
 * A crash before it is unlisted leaves a listed room that refuses
 * everything, and deleting it again finishes the job. */
int store_delete_room(Redis *r, const char *room, RedisReplyHandler cb, void *userdata) {
        StoreKey keys[5];
        StoreChain *c;
        int k;

        if (room_key(keys[0], room, "room") < 0 || room_key(keys[1], room, "log") < 0 ||
            room_key(keys[2], room, "edits") < 0 || room_key(keys[3], room, "edits-n") < 0 ||
            room_key(keys[4], room, "users") < 0)
                return -EINVAL;
        k = chain_new(&c, cb, userdata, room, NULL, NULL, NULL);
        if (k < 0)
                return k;
        k = store_eval(r, &script_drop_room, on_drop_room, c, 5, 5,
                       (const char *[]) { keys[0], keys[1], keys[2], keys[3], keys[4] });
        if (k < 0)
                chain_free(c);
        return k;
}

/* ---- joining and leaving ---- */

/* A daemon's presence lives with each room's keys; the daemon's own set of
 * those rooms is what store_reap() visits when it is gone. The set is
 * written before the presence, so it never misses a room (it may name
 * rooms where the daemon holds nothing, which costs a visit). */
static int join_send(Redis *r, const char *daemon_id, const char *room, const char *username,
                     const char *since, unsigned history, const char *marker,
                     RedisReplyHandler cb, void *userdata) {
        StoreKey keys[6], index;
        char n[16];
        int k;

        if (daemon_id_check(daemon_id) < 0 ||
            room_key(keys[0], room, "room") < 0 || room_key(keys[1], room, "log") < 0 ||
            room_key(keys[2], room, "edits") < 0 || room_key(keys[3], room, "edits-n") < 0 ||
            room_key(keys[4], room, "users") < 0 || key_printf(keys[5], STORE_ROOM_KEY_PREFIX "%s}:d:%s", room, daemon_id) < 0 ||
            key_printf(index, "mc:daemon:%s:rooms", daemon_id) < 0)
                return -EINVAL;
        k = redis_command(r, NULL, NULL, "SADD mc:daemons %s", daemon_id);
        if (k >= 0)
                k = redis_command(r, NULL, NULL, "SADD %s %s", index, room);
        if (k < 0)
                return k;
        snprintf(n, sizeof n, "%u", history);
        return store_eval(r, &script_join, cb, userdata, 6, marker ? 11 : 10,
                          (const char *[]) { keys[0], keys[1], keys[2], keys[3], keys[4], keys[5],
                                             room, username, n, since ?: "", marker });
}

int store_join(Redis *r, const char *daemon_id, const char *room, const char *username,
               const char *since, unsigned history, RedisReplyHandler cb, void *userdata) {
        return join_send(r, daemon_id, room, username, since, history, NULL, cb, userdata);
}

static void on_user_join(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;

        if (chain_failed(r, c, reply))
                return;
        if (reply->type != REDIS_REPLY_STRING ||
            join_send(r, c->daemon, c->room, c->user, c->text, c->n, reply->str, c->cb, c->userdata) < 0)
                return chain_answer(r, c, NULL);
        chain_free(c);
}

/* The user's half first: it is what can refuse (FULL), and a crash after
 * it leaves a room in the user's list without presence, which their next
 * hello joins, or, for a room deleted meanwhile, store_user_rooms() drops. */
int store_join_v2(Redis *r, const char *daemon_id, const char *room, const char *username,
                  const char *since, unsigned history, unsigned max_rooms, RedisReplyHandler cb, void *userdata) {
        StoreKey ukey, okey;
        StoreChain *c;
        char max[16];
        int k;

        if (daemon_id_check(daemon_id) < 0 || user_key(ukey, username, "rooms") < 0 ||
            user_key(okey, username, "order") < 0 || !room || strlen(room) > ROOM_ID_MAX)
                return -EINVAL;
        k = chain_new(&c, cb, userdata, room, username, daemon_id, since);
        if (k < 0)
                return k;
        c->n = history;
        snprintf(max, sizeof max, "%u", max_rooms);
        k = store_eval(r, &script_user_join, on_user_join, c, 2, 5,
                       (const char *[]) { ukey, okey, room, username, max });
        if (k < 0)
                chain_free(c);
        return k;
}

int store_leave(Redis *r, const char *daemon_id, const char *room, const char *username,
                RedisReplyHandler cb, void *userdata) {
        StoreKey mine, users;

        if (daemon_id_check(daemon_id) < 0 || room_key(users, room, "users") < 0 ||
            key_printf(mine, STORE_ROOM_KEY_PREFIX "%s}:d:%s", room, daemon_id) < 0)
                return -EINVAL;
        return store_eval(r, &script_leave, cb, userdata, 2, 4, (const char *[]) { mine, users, room, username });
}

/* ---- a user's rooms ---- */

static void on_user_rooms_listed(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        _cleanup_free_ const char **argv = NULL;
        StoreKey ukey, okey;
        size_t n = 2;

        if (chain_failed(r, c, reply))
                return;
        if (reply->type != REDIS_REPLY_ARRAY || user_key(ukey, c->user, "rooms") < 0 || user_key(okey, c->user, "order") < 0)
                return chain_answer(r, c, NULL);
        argv = calloc(2 + reply->elements, sizeof *argv);
        if (!argv)
                return chain_answer(r, c, NULL);
        argv[0] = ukey;
        argv[1] = okey;
        /* HMGET answers in the order asked, nil for a room that is gone;
         * the ids asked are kept in the chain's text, ROOM_ID_MAX + 1 apart. */
        for (size_t i = 0; i < reply->elements && i < c->n; i++) {
                const char *id = c->text + i * (ROOM_ID_MAX + 1);

                if (reply->element[i]->type == REDIS_REPLY_NIL)
                        argv[n++] = id;
        }
        chain_sent(r, c, store_eval(r, &script_user_rooms, chain_answer_cb, c, 2, (int) n, argv));
}

static void on_user_rooms_order(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        _cleanup_free_ const char **argv = NULL;
        size_t n = 0;

        if (chain_failed(r, c, reply))
                return;
        if (reply->type != REDIS_REPLY_ARRAY)
                return chain_answer(r, c, NULL);
        c->text = calloc(MAX(reply->elements, (size_t) 1), ROOM_ID_MAX + 1);
        argv = calloc(2 + reply->elements, sizeof *argv);
        if (!c->text || !argv)
                return chain_answer(r, c, NULL);
        argv[n++] = "HMGET";
        argv[n++] = STORE_ROOMS_KEY;
        for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *id = reply->element[i];
                char *slot = c->text + c->n * (ROOM_ID_MAX + 1);

                if (id->type != REDIS_REPLY_STRING || id->len == 0 || id->len > ROOM_ID_MAX)
                        continue;
                memcpy(slot, id->str, id->len);
                argv[n++] = slot;
                c->n++;
        }
        if (c->n == 0)
                return on_user_rooms_listed(r, &(redisReply) { .type = REDIS_REPLY_ARRAY }, c);
        chain_sent(r, c, redis_command_argv(r, on_user_rooms_listed, c, (int) n, argv, NULL));
}

/* The user's rooms live in the user's slot, the list of rooms in its own:
 * the user's rooms are read first, then which of them still exist, and
 * the script drops the others (a room deleted while the user was away). */
int store_user_rooms(Redis *r, const char *username, RedisReplyHandler cb, void *userdata) {
        StoreKey okey;
        StoreChain *c;
        int k;

        if (user_key(okey, username, "order") < 0)
                return -EINVAL;
        k = chain_new(&c, cb, userdata, NULL, username, NULL, NULL);
        if (k < 0)
                return k;
        k = redis_command(r, on_user_rooms_order, c, "ZRANGE %s 0 -1", okey);
        if (k < 0)
                chain_free(c);
        return k;
}

int store_user_leave(Redis *r, const char *username, const char *room, const char *reason,
                     RedisReplyHandler cb, void *userdata) {
        StoreKey ukey, okey;

        if (user_key(ukey, username, "rooms") < 0 || user_key(okey, username, "order") < 0)
                return -EINVAL;
        return store_eval(r, &script_user_leave, cb, userdata, 2, 5,
                          (const char *[]) { ukey, okey, username, room, reason ?: "" });
}

int store_read(Redis *r, const char *room, const char *username, const char *id,
               RedisReplyHandler cb, void *userdata) {
        StoreKey ukey;

        if (user_key(ukey, username, "rooms") < 0)
                return -EINVAL;
        return store_eval(r, &script_read, cb, userdata, 1, 4, (const char *[]) { ukey, room, username, id });
}

static void on_unread_marker(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        StoreKey log, edn;

        if (chain_failed(r, c, reply))
                return;
        if (reply->type != REDIS_REPLY_STRING || room_key(log, c->room, "log") < 0 || room_key(edn, c->room, "edits-n") < 0)
                return chain_answer(r, c, NULL);
        chain_sent(r, c, store_eval(r, &script_unread, chain_answer_cb, c, 2, 4,
                                    (const char *[]) { log, edn, c->user, reply->str }));
}

/* The marker from the user's slot, then the count from the room's. */
int store_unread(Redis *r, const char *room, const char *username, RedisReplyHandler cb, void *userdata) {
        StoreKey ukey;
        StoreChain *c;
        int k;

        if (user_key(ukey, username, "rooms") < 0 || !room || !room[0])
                return -EINVAL;
        k = chain_new(&c, cb, userdata, room, username, NULL, NULL);
        if (k < 0)
                return k;
        k = store_eval(r, &script_marker, on_unread_marker, c, 1, 2, (const char *[]) { ukey, room });
        if (k < 0)
                chain_free(c);
        return k;
}

/* ---- messages ---- */

static void on_sent(Redis *r, const redisReply *reply, void *userdata) {
        StoreChain *c = userdata;
        StoreKey ukey;

        /* The writer has read what they wrote: their read marker, if the
         * room is theirs (version 2), moves to it. In the user's slot, so
         * after the send, and only forward. */
        if (reply && reply->type == REDIS_REPLY_STRING && user_key(ukey, c->user, "rooms") >= 0)
                (void) store_eval(r, &script_read, NULL, NULL, 1, 4,
                                  (const char *[]) { ukey, c->room, c->user, reply->str });
        chain_answer(r, c, reply);
}

int store_send_mentioning(Redis *r, const char *room, const char *username, const char *text, const char *names,
                          const char *ref, unsigned keep, RedisReplyHandler cb, void *userdata) {
        _cleanup_free_ char *seen = NULL;
        StoreKey rkey, log, channel;
        char k[16], ttl[16];
        StoreChain *c;
        int e;

        if (room_key(rkey, room, "room") < 0 || room_key(log, room, "log") < 0 || room_key(channel, room, "ch") < 0)
                return -EINVAL;
        if (ref && ref[0] && asprintf(&seen, STORE_ROOM_KEY_PREFIX "%s}:ref:%s:%s", room, username, ref) < 0)
                return -ENOMEM;
        e = chain_new(&c, cb, userdata, room, username, NULL, NULL);
        if (e < 0)
                return e;
        snprintf(k, sizeof k, "%u", keep);
        snprintf(ttl, sizeof ttl, "%u", STORE_SEND_REF_TTL_SEC);
        if (seen)
                e = store_eval(r, &script_send, on_sent, c, 3, 9,
                               (const char *[]) { rkey, log, seen, channel, username, text, k, ttl, names ?: "" });
        else
                e = store_eval(r, &script_send, on_sent, c, 2, 8,
                               (const char *[]) { rkey, log, channel, username, text, k, ttl, names ?: "" });
        if (e < 0)
                chain_free(c);
        return e;
}

int store_send(Redis *r, const char *room, const char *username, const char *text, const char *ref,
               unsigned keep, RedisReplyHandler cb, void *userdata) {
        return store_send_mentioning(r, room, username, text, NULL, ref, keep, cb, userdata);
}

static int edit_send(Redis *r, const char *room, const char *id, const char *username, const char *text,
                     const char *names, RedisReplyHandler cb, void *userdata) {
        StoreKey keys[4], channel;

        if (room_key(keys[0], room, "room") < 0 || room_key(keys[1], room, "log") < 0 ||
            room_key(keys[2], room, "edits") < 0 || room_key(keys[3], room, "edits-n") < 0 ||
            room_key(channel, room, "ch") < 0)
                return -EINVAL;
        return store_eval(r, &script_edit, cb, userdata, 4, names ? 10 : 9,
                          (const char *[]) { keys[0], keys[1], keys[2], keys[3], channel, id, username,
                                             text ?: "", text ? "0" : "1", names });
}

int store_edit(Redis *r, const char *room, const char *id, const char *username, const char *text,
               RedisReplyHandler cb, void *userdata) {
        return edit_send(r, room, id, username, text, NULL, cb, userdata);
}

int store_edit_mentioning(Redis *r, const char *room, const char *id, const char *username, const char *text,
                          const char *names, RedisReplyHandler cb, void *userdata) {
        return edit_send(r, room, id, username, text, names ?: "", cb, userdata);
}

int store_history(Redis *r, const char *room, const char *before, unsigned limit,
                  RedisReplyHandler cb, void *userdata) {
        StoreKey rkey, log, edits;
        char n[16];

        if (room_key(rkey, room, "room") < 0 || room_key(log, room, "log") < 0 || room_key(edits, room, "edits") < 0)
                return -EINVAL;
        snprintf(n, sizeof n, "%u", limit);
        return store_eval(r, &script_history, cb, userdata, 3, 5, (const char *[]) { rkey, log, edits, before ?: "", n });
}

int store_since(Redis *r, const char *room, const char *after, unsigned limit,
                RedisReplyHandler cb, void *userdata) {
        StoreKey log, edits;
        char n[16];

        if (room_key(log, room, "log") < 0 || room_key(edits, room, "edits") < 0)
                return -EINVAL;
        snprintf(n, sizeof n, "%u", limit);
        return store_eval(r, &script_since, cb, userdata, 2, 4, (const char *[]) { log, edits, after, n });
}

int store_publish(Redis *r, const char *channel, const char *payload, size_t len,
                  RedisReplyHandler cb, void *userdata) {
        return redis_command_argv(r, cb, userdata, 3,
                                  (const char *[]) { "PUBLISH", channel, payload },
                                  (const size_t[]) { 7, strlen(channel), len });
}

int store_publish_room(Redis *r, const char *room, const char *payload, size_t len,
                       RedisReplyHandler cb, void *userdata) {
        char channel[64];

        if (store_room_channel(room, channel, sizeof channel) < 0)
                return -EINVAL;
        return redis_command_argv(r, cb, userdata, 3,
                                  (const char *[]) { "SPUBLISH", channel, payload },
                                  (const size_t[]) { 8, strlen(channel), len });
}

/* ---- the data's lineage ---- */

/* A reconnecting daemon also writes the own key of each room it knows
 * (an existing one stays as it is): after a loss the rooms it puts back
 * into the list must work again. A room deleted meanwhile gets a key no
 * list leads to. */
int store_epoch(Redis *r, const char *known, const char *fresh, char **rooms, size_t n_rooms,
                RedisReplyHandler cb, void *userdata) {
        _cleanup_free_ const char **argv = NULL;
        StoreKey epoch = STORE_EPOCH_KEY, list = STORE_ROOMS_KEY, seq = STORE_ROOMS_SEQ_KEY;

        if (n_rooms % 2 != 0)
                return -EINVAL;
        for (size_t i = 0; known && i < n_rooms; i += 2) {
                StoreKey room;
                int k;

                if (room_key(room, rooms[i], "room") < 0)
                        return -EINVAL;
                k = redis_command(r, NULL, NULL, "SET %s 1 NX", room);
                if (k < 0)
                        return k;
        }
        argv = calloc(5 + n_rooms, sizeof *argv);
        if (!argv)
                return -ENOMEM;
        argv[0] = epoch;
        argv[1] = list;
        argv[2] = seq;
        argv[3] = known ?: "";
        argv[4] = fresh;
        for (size_t i = 0; i < n_rooms; i++)
                argv[5 + i] = rooms[i];
        return store_eval(r, &script_epoch, cb, userdata, 3, (int) (5 + n_rooms), argv);
}

/* ---- daemons ---- */

int store_heartbeat(Redis *r, const char *daemon_id) {
        int r1;

        if (daemon_id_check(daemon_id) < 0)
                return -EINVAL;
        r1 = redis_command(r, NULL, NULL, "SET mc:daemon:%s 1 EX %d", daemon_id, STORE_HEARTBEAT_SEC);
        if (r1 < 0)
                return r1;
        return redis_command(r, NULL, NULL, "SADD mc:daemons %s", daemon_id);
}

/* Reaping walks a daemon's set of rooms, one script per room, then
 * forgets the daemon: a crash halfway leaves it registered, and the next
 * reap finishes. */
typedef struct StoreReap {
        StoreReapHandler cb;
        void *userdata;
        unsigned pending;
        unsigned reaped;
        int error;
} StoreReap;

typedef struct StoreReapDaemon {
        StoreReap *reap;
        unsigned pending;
        bool failed;                    /* a room kept its presence: the daemon stays registered */
        char id[STORE_DAEMON_ID_MAX + 1];
} StoreReapDaemon;

static void reap_unref(Redis *r, StoreReap *rp) {
        if (--rp->pending > 0)
                return;
        if (rp->cb)
                rp->cb(r, rp->error, rp->reaped, rp->userdata);
        free(rp);
}

static void reap_sent(Redis *r, StoreReap *rp, int k) {
        if (k >= 0)
                rp->pending++;
        else if (rp->error == 0)
                rp->error = k;
}

static void reap_error(StoreReap *rp, const redisReply *reply) {
        if (rp->error == 0 && (!reply || reply->type == REDIS_REPLY_ERROR))
                rp->error = store_reply_error(reply) ?: -EIO;
}

static void on_reap_forgotten(Redis *r, const redisReply *reply, void *userdata) {
        StoreReap *rp = userdata;

        reap_error(rp, reply);
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
                rp->reaped++;
        reap_unref(r, rp);
}

static void reap_daemon_unref(Redis *r, StoreReapDaemon *d, bool ok) {
        StoreReap *rp = d->reap;

        if (!ok)
                d->failed = true;
        if (--d->pending > 0)
                return;
        if (!d->failed) {
                (void) redis_command(r, NULL, NULL, "DEL mc:daemon:%s:rooms", d->id);
                reap_sent(r, rp, redis_command(r, on_reap_forgotten, rp, "SREM mc:daemons %s", d->id));
        }
        free(d);
        reap_unref(r, rp);
}

static void on_reap_room(Redis *r, const redisReply *reply, void *userdata) {
        StoreReapDaemon *d = userdata;

        reap_error(d->reap, reply);
        reap_daemon_unref(r, d, reply && reply->type != REDIS_REPLY_ERROR);
}

static void on_reap_rooms(Redis *r, const redisReply *reply, void *userdata) {
        StoreReapDaemon *d = userdata;
        bool ok = reply && reply->type == REDIS_REPLY_ARRAY;

        reap_error(d->reap, reply);
        for (size_t i = 0; ok && i < reply->elements; i++) {
                const redisReply *room = reply->element[i];
                StoreKey mine, users;
                int k;

                if (room->type != REDIS_REPLY_STRING || room_key(users, room->str, "users") < 0 ||
                    key_printf(mine, STORE_ROOM_KEY_PREFIX "%s}:d:%s", room->str, d->id) < 0)
                        continue;
                k = store_eval(r, &script_reap_room, on_reap_room, d, 2, 3, (const char *[]) { mine, users, room->str });
                if (k < 0)
                        ok = false;
                else
                        d->pending++;
        }
        reap_daemon_unref(r, d, ok);
}

static void reap_daemon(Redis *r, StoreReap *rp, const char *daemon_id) {
        StoreReapDaemon *d;
        int k;

        if (daemon_id_check(daemon_id) < 0)
                return;
        d = calloc(1, sizeof *d);
        if (!d)
                return reap_sent(r, rp, -ENOMEM);
        d->reap = rp;
        d->pending = 1;
        strcpy(d->id, daemon_id);
        k = redis_command(r, on_reap_rooms, d, "SMEMBERS mc:daemon:%s:rooms", daemon_id);
        if (k < 0)
                free(d);
        reap_sent(r, rp, k);
}

static void on_reap_heartbeat(Redis *r, const redisReply *reply, void *userdata) {
        StoreReapDaemon *d = userdata;
        StoreReap *rp = d->reap;

        reap_error(rp, reply);
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
                reap_daemon(r, rp, d->id);
        free(d);
        reap_unref(r, rp);
}

static void on_reap_daemons(Redis *r, const redisReply *reply, void *userdata) {
        StoreReap *rp = userdata;

        reap_error(rp, reply);
        for (size_t i = 0; reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
                const redisReply *id = reply->element[i];
                StoreReapDaemon *d;
                int k;

                if (id->type != REDIS_REPLY_STRING || daemon_id_check(id->str) < 0)
                        continue;
                d = calloc(1, sizeof *d);
                if (!d) {
                        reap_sent(r, rp, -ENOMEM);
                        break;
                }
                d->reap = rp;
                strcpy(d->id, id->str);
                k = redis_command(r, on_reap_heartbeat, d, "EXISTS mc:daemon:%s", id->str);
                if (k < 0)
                        free(d);
                reap_sent(r, rp, k);
        }
        reap_unref(r, rp);
}

int store_reap(Redis *r, const char *daemon_id, StoreReapHandler cb, void *userdata) {
        StoreReap *rp;
        int k;

        if (daemon_id && daemon_id_check(daemon_id) < 0)
                return -EINVAL;
        rp = calloc(1, sizeof *rp);
        if (!rp)
                return -ENOMEM;
        *rp = (StoreReap) { .cb = cb, .userdata = userdata, .pending = 1 };
        if (daemon_id) {
                reap_daemon(r, rp, daemon_id);
                k = rp->error;
                if (k < 0) {
                        free(rp);
                        return k;
                }
                reap_unref(r, rp);
                return 0;
        }
        k = redis_command(r, on_reap_daemons, rp, "SMEMBERS mc:daemons");
        if (k < 0)
                free(rp);
        return k;
}

/* Scripts answer "CODE message": Redis 7 prefixes "ERR " to an error
 * reply that is a bare word, so the code must be followed by text. */
static bool reply_is_error(const redisReply *reply, const char *code) {
        size_t n = strlen(code);

        return reply->type == REDIS_REPLY_ERROR && reply->str &&
               strncmp(reply->str, code, n) == 0 && reply->str[n] == ' ';
}

int store_reply_error(const redisReply *reply) {
        static const struct {
                const char *code;
                int error;
        } codes[] = {
                { "NOROOM", -ENOENT },
                { "BADID", -EINVAL },
                { "NOTFOUND", -ESRCH },
                { "FORBIDDEN", -EPERM },
                { "FULL", -ENOSPC },
                { "NOTJOINED", -EACCES },
        };

        if (!reply)
                return -ENOTCONN;
        if (reply->type != REDIS_REPLY_ERROR)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(codes); i++)
                if (reply_is_error(reply, codes[i].code))
                        return codes[i].error;
        return -EIO;
}

static const redisReply *reply_element(const redisReply *r, size_t i, int type) {
        if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
                return NULL;
        if (!r->element[i] || r->element[i]->type != type)
                return NULL;
        return r->element[i];
}

int store_parse_entry(const redisReply *entry, const redisReply *edited, StoreEntry *ret) {
        const redisReply *id = reply_element(entry, 0, REDIS_REPLY_STRING);
        const redisReply *fields = reply_element(entry, 1, REDIS_REPLY_ARRAY);
        StoreEntry e = {};

        if (!id || !fields || fields->elements % 2 != 0)
                return -EBADMSG;
        e.id = id->str;
        for (size_t i = 0; i + 1 < fields->elements; i += 2) {
                const redisReply *k = fields->element[i], *v = fields->element[i + 1];

                if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                        return -EBADMSG;
                if (streq(k->str, "u"))
                        e.username = v->str;
                else if (streq(k->str, "m")) {
                        e.text = v->str;
                        e.text_len = v->len;
                }
        }
        if (edited && edited->type == REDIS_REPLY_STRING && edited->len > 0) {
                e.text = edited->str;
                e.text_len = edited->len;
                e.edited = true;
        }
        if (!e.username || !e.text)
                return -EBADMSG;
        *ret = e;
        return 0;
}

size_t store_entries_count(const StoreEntries *l) {
        return l->entries ? l->entries->elements : 0;
}

int store_entries_get(const StoreEntries *l, size_t i, StoreEntry *ret) {
        const redisReply *ed = l->edits && i < l->edits->elements ? l->edits->element[i] : NULL;

        if (i >= store_entries_count(l))
                return -ENOENT;
        return store_parse_entry(l->entries->element[i], ed, ret);
}

const char *store_entries_id(const StoreEntries *l, size_t i) {
        const redisReply *id = i < store_entries_count(l) ? reply_element(l->entries->element[i], 0, REDIS_REPLY_STRING) : NULL;

        return id && id->len <= MESSAGE_ID_MAX ? id->str : NULL;
}

static int store_entries_from(const redisReply *reply, size_t entries, size_t edits, StoreEntries *ret) {
        ret->entries = reply_element(reply, entries, REDIS_REPLY_ARRAY);
        ret->edits = reply_element(reply, edits, REDIS_REPLY_ARRAY);
        return ret->entries && ret->edits ? 0 : -EBADMSG;
}

static int reply_shape(const redisReply *reply, size_t elements) {
        int r = store_reply_error(reply);

        if (r < 0)
                return r;
        return reply->type == REDIS_REPLY_ARRAY && reply->elements == elements ? 0 : -EBADMSG;
}

/* {marker ('' none), unread, mentions} at reply->element[i...] */
static int read_state_from(const redisReply *reply, size_t i, StoreReadState *ret) {
        const redisReply *marker = reply_element(reply, i, REDIS_REPLY_STRING);
        const redisReply *unread = reply_element(reply, i + 1, REDIS_REPLY_INTEGER);
        const redisReply *mentions = reply_element(reply, i + 2, REDIS_REPLY_INTEGER);

        if (!marker || !unread || !mentions || marker->len > MESSAGE_ID_MAX)
                return -EBADMSG;
        *ret = (StoreReadState) {
                .read = marker->len > 0 ? marker->str : NULL,
                .unread = (unsigned) CLAMP(unread->integer, 0LL, 999LL),
                .mentions = (unsigned) CLAMP(mentions->integer, 0LL, 999LL),
        };
        return 0;
}

int store_parse_unread_reply(const redisReply *reply, StoreReadState *ret) {
        int r = reply_shape(reply, 3);

        if (r < 0)
                return r;
        return read_state_from(reply, 0, ret);
}

/* [count, [entries], complete, [edited texts], newest id] and, for a
 * version 2 join, [marker, unread, mentions] after it. No member list: a
 * join costs the same in a room of ten or of ten thousand, and the daemon
 * knows who is present from the presence events. */
int store_parse_join_reply(const redisReply *reply, StoreJoinReply *ret) {
        const redisReply *count, *complete, *tip;
        StoreJoinReply j = {};
        int r;

        r = reply_shape(reply, 5);
        if (r == -EBADMSG && reply->type == REDIS_REPLY_ARRAY && reply->elements == 8) {
                r = read_state_from(reply, 5, &j.read_state);
                j.has_read_state = r >= 0;
        }
        if (r < 0)
                return r;
        count = reply_element(reply, 0, REDIS_REPLY_INTEGER);
        complete = reply_element(reply, 2, REDIS_REPLY_INTEGER);
        tip = reply_element(reply, 4, REDIS_REPLY_STRING);
        if (!count || !complete || store_entries_from(reply, 1, 3, &j.history) < 0)
                return -EBADMSG;
        j.connections = (unsigned) CLAMP(count->integer, 1LL, (long long) UINT32_MAX);
        j.complete = complete->integer != 0;
        j.tip = tip && tip->len <= MESSAGE_ID_MAX ? tip->str : NULL;
        *ret = j;
        return 0;
}

/* [[entries newest first], [edited texts], complete] */
int store_parse_history_reply(const redisReply *reply, StoreHistoryReply *ret) {
        const redisReply *complete;
        StoreHistoryReply h = {};
        int r;

        r = reply_shape(reply, 3);
        if (r < 0)
                return r;
        complete = reply_element(reply, 2, REDIS_REPLY_INTEGER);
        if (!complete || store_entries_from(reply, 0, 1, &h.history) < 0)
                return -EBADMSG;
        h.complete = complete->integer != 0;
        *ret = h;
        return 0;
}

/* [[entries], [edited texts], more, gap, last generated id] */
int store_parse_since_reply(const redisReply *reply, StoreSinceReply *ret) {
        const redisReply *more, *gap, *last;
        StoreSinceReply s = {};
        int r;

        r = reply_shape(reply, 5);
        if (r < 0)
                return r;
        more = reply_element(reply, 2, REDIS_REPLY_INTEGER);
        gap = reply_element(reply, 3, REDIS_REPLY_INTEGER);
        last = reply_element(reply, 4, REDIS_REPLY_STRING);
        if (!more || !gap || !last || last->len > MESSAGE_ID_MAX || store_entries_from(reply, 0, 1, &s.entries) < 0)
                return -EBADMSG;
        s.more = more->integer != 0;
        s.gap = gap->integer != 0;
        s.last_id = last->str;
        *ret = s;
        return 0;
}

int store_presence_get(const redisReply *presence, size_t i, const char **ret_user, unsigned *ret_count) {
        const redisReply *u = reply_element(presence, 2 * i, REDIS_REPLY_STRING);
        const redisReply *n = reply_element(presence, 2 * i + 1, REDIS_REPLY_STRING);
        long long count;

        if (!presence || 2 * i + 1 >= presence->elements)
                return -ENOENT;
        if (!u || !n || u->len > USERNAME_MAX)
                return -EBADMSG;
        count = strtoll(n->str, NULL, 10);
        if (count <= 0)
                return -EBADMSG;
        *ret_user = u->str;
        *ret_count = (unsigned) MIN(count, (long long) UINT32_MAX);
        return 0;
}

int store_parse_epoch_reply(const redisReply *reply, StoreEpochReply *ret) {
        const redisReply *epoch, *lost, *restored;
        int r;

        r = reply_shape(reply, 3);
        if (r < 0)
                return r;
        epoch = reply_element(reply, 0, REDIS_REPLY_STRING);
        lost = reply_element(reply, 1, REDIS_REPLY_INTEGER);
        restored = reply_element(reply, 2, REDIS_REPLY_INTEGER);
        if (!epoch || !lost || !restored || epoch->len > STORE_EPOCH_MAX)
                return -EBADMSG;
        *ret = (StoreEpochReply) {
                .epoch = epoch->str,
                .lost = lost->integer != 0,
                .restored = (unsigned) MAX(restored->integer, 0LL),
        };
        return 0;
}
