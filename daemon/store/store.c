/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Redis schema: key and channel names, and the Lua scripts that change rooms, messages and presence atomically. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "store/store.h"

/* Scripts name keys they build from their arguments; that suits the one
 * Redis (or a primary with replicas) that multichat is specified for, not
 * Redis Cluster. */

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
        "local function edits(room, entries)\n"                                         \
        "  local out = {}\n"                                                            \
        "  if #entries == 0 then return out end\n"                                      \
        "  local ids = {}\n"                                                            \
        "  for i, e in ipairs(entries) do ids[i] = e[1] end\n"                          \
        "  local got = redis.call('HMGET', 'mc:room:' .. room .. ':edits', unpack(ids))\n" \
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
 * mc:room:<id>:edits-n those of its edited text. */
#define LUA_UNREAD                                                                      \
        "local function unread(room, user, marker)\n"                                    \
        "  if not marker or marker == '' then return 0, 0 end\n"                         \
        "  local got = redis.pcall('XRANGE', 'mc:room:' .. room .. ':log', '(' .. marker, '+', 'COUNT', 1000)\n" \
        "  if type(got) ~= 'table' or got.err then return 0, 0 end\n"                    \
        "  local n, m, edited = 0, 0, {}\n"                                              \
        "  if #got > 0 then\n"                                                           \
        "    local ids = {}\n"                                                           \
        "    for i, e in ipairs(got) do ids[i] = e[1] end\n"                             \
        "    edited = redis.call('HMGET', 'mc:room:' .. room .. ':edits-n', unpack(ids))\n" \
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

/* ARGV: room, user, daemon, history, since ('' for none), and for a
 * version 2 connection the most rooms a user may have joined. Everything that
 * can fail comes before the presence changes: scripts are not rolled back.
 * The last element is the stream's newest id ("0-0" if none): what the
 * joiner has, for a daemon that replays the stream meanwhile. */
static RedisScript script_join = { .source =
        LUA_ID_LESS LUA_RANGE LUA_EDITS LUA_UNREAD
        "local room, user, daemon, n, since = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]\n"
        "local max = tonumber(ARGV[6] or '')\n"
        "if redis.call('HEXISTS', 'mc:rooms', room) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local log = 'mc:room:' .. room .. ':log'\n"
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
        /* Version 2: the room becomes the user's, kept in the order joined. */
        "local vread\n"
        "if max then\n"
        "  local ukey, okey = 'mc:user:' .. user .. ':rooms', 'mc:user:' .. user .. ':order'\n"
        "  local marker = redis.call('HGET', ukey, room)\n"
        "  if not marker then\n"
        "    if redis.call('HLEN', ukey) >= max then return redis.error_reply('FULL too many rooms') end\n"
        "    local t = redis.call('TIME')\n"
        "    local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
        "    local last = redis.call('ZREVRANGE', okey, 0, 0, 'WITHSCORES')\n"
        "    if #last > 0 and tonumber(last[2]) >= at then at = tonumber(last[2]) + 1 end\n"
        "    redis.call('HSET', ukey, room, '')\n"
        "    redis.call('ZADD', okey, at, room)\n"
        "    redis.call('PUBLISH', 'mc:events', cjson.encode({'uj', user, room}))\n"
        "    marker = ''\n"
        "  end\n"
        "  local c, m = unread(room, user, marker)\n"
        "  vread = {marker, c, m}\n"
        "end\n"
        "local count = redis.call('HINCRBY', 'mc:room:' .. room .. ':users', user, 1)\n"
        "redis.call('HINCRBY', 'mc:daemon:' .. daemon .. ':presence', room .. '\\t' .. user, 1)\n"
        "redis.call('SADD', 'mc:daemons', daemon)\n"
        "local change = 0\n"
        "if count == 1 then change = 1 end\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'p', room, user, count, change}))\n"
        "local tip = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)\n"
        "if #tip > 0 then tip = tip[1][1] else tip = '0-0' end\n"
        "local users = redis.call('HGETALL', 'mc:room:' .. room .. ':users')\n"
        "if vread then return {count, users, hist, complete, edits(room, hist), tip, vread[1], vread[2], vread[3]} end\n"
        "return {count, users, hist, complete, edits(room, hist), tip}\n"
};

/* ARGV: user. The rooms the user has joined, in the order joined; rooms
 * deleted meanwhile are dropped from them here. */
static RedisScript script_user_rooms = { .source =
        "local ukey, okey = 'mc:user:' .. ARGV[1] .. ':rooms', 'mc:user:' .. ARGV[1] .. ':order'\n"
        "local out = {}\n"
        "for _, id in ipairs(redis.call('ZRANGE', okey, 0, -1)) do\n"
        "  if redis.call('HEXISTS', 'mc:rooms', id) == 1 and redis.call('HEXISTS', ukey, id) == 1 then\n"
        "    out[#out + 1] = id\n"
        "  else\n"
        "    redis.call('HDEL', ukey, id)\n"
        "    redis.call('ZREM', okey, id)\n"
        "  end\n"
        "end\n"
        "return out\n"
};

/* ARGV: user, room, reason ('', 'kicked', 'deleted'). Reply: 1 when the
 * room was the user's. */
static RedisScript script_user_leave = { .source =
        "local user, room, reason = ARGV[1], ARGV[2], ARGV[3]\n"
        "if redis.call('HDEL', 'mc:user:' .. user .. ':rooms', room) == 0 then return 0 end\n"
        "redis.call('ZREM', 'mc:user:' .. user .. ':order', room)\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'ul', user, room, reason}))\n"
        "return 1\n"
};

/* ARGV: room, user, id. Markers never move backwards. Reply: 1 moved, 0 not. */
static RedisScript script_read = { .source =
        LUA_ID_LESS
        "local room, user, id = ARGV[1], ARGV[2], ARGV[3]\n"
        "if redis.call('HEXISTS', 'mc:rooms', room) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local ukey = 'mc:user:' .. user .. ':rooms'\n"
        "local marker = redis.call('HGET', ukey, room)\n"
        "if not marker then return redis.error_reply('NOTJOINED not a room of the user') end\n"
        "if marker ~= '' and not idlt(marker, id) then return 0 end\n"
        "redis.call('HSET', ukey, room, id)\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'ur', user, room, id}))\n"
        "return 1\n"
};

/* ARGV: room, user. Reply: {marker ('' none), unread, mentions}. */
static RedisScript script_unread = { .source =
        LUA_UNREAD
        "local marker = redis.call('HGET', 'mc:user:' .. ARGV[2] .. ':rooms', ARGV[1])\n"
        "if not marker then return redis.error_reply('NOTJOINED not a room of the user') end\n"
        "local c, m = unread(ARGV[1], ARGV[2], marker)\n"
        "return {marker, c, m}\n"
};

/* ARGV: room, user, daemon */
static RedisScript script_leave = { .source =
        "local room, user, daemon = ARGV[1], ARGV[2], ARGV[3]\n"
        "local pkey, field = 'mc:daemon:' .. daemon .. ':presence', room .. '\\t' .. user\n"
        "local mine = tonumber(redis.call('HGET', pkey, field) or '0')\n"
        "if mine <= 0 then return 0 end\n"
        "if mine == 1 then redis.call('HDEL', pkey, field) else redis.call('HINCRBY', pkey, field, -1) end\n"
        "local ukey = 'mc:room:' .. room .. ':users'\n"
        "local count = redis.call('HINCRBY', ukey, user, -1)\n"
        "local change = 0\n"
        "if count <= 0 then redis.call('HDEL', ukey, user); count = 0; change = -1 end\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'p', room, user, count, change}))\n"
        "return count\n"
};

/* ARGV: room, user, text, keep, ref ('' none), ref ttl, mentioned names
 * ('' none). The writer has read what they wrote: their read marker, if
 * the room is theirs (version 2), moves to it. */
static RedisScript script_send = { .source =
        "local room, user, text, keep, ref, ttl, names = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]\n"
        "if redis.call('HEXISTS', 'mc:rooms', room) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local seen\n"
        "if ref ~= '' then\n"
        "  seen = 'mc:room:' .. room .. ':ref:' .. user .. ':' .. ref\n"
        "  local id = redis.call('GET', seen)\n"
        "  if id then return id end\n"
        "end\n"
        "local log = 'mc:room:' .. room .. ':log'\n"
        "local id\n"
        "if names ~= '' then\n"
        "  id = redis.call('XADD', log, 'MAXLEN', '~', keep, '*', 'u', user, 'm', text, 'n', names)\n"
        "else\n"
        "  id = redis.call('XADD', log, 'MAXLEN', '~', keep, '*', 'u', user, 'm', text)\n"
        "end\n"
        "redis.call('PUBLISH', 'mc:room:' .. room, cjson.encode({'m', id, user, text}))\n"
        "if seen then redis.call('SET', seen, id, 'EX', ttl) end\n"
        "local ukey = 'mc:user:' .. user .. ':rooms'\n"
        "if redis.call('HEXISTS', ukey, room) == 1 then\n"
        "  redis.call('HSET', ukey, room, id)\n"
        "  redis.call('PUBLISH', 'mc:events', cjson.encode({'ur', user, room, id}))\n"
        "end\n"
        "return id\n"
};

/* ARGV: room, id, user, text ('' with delete = 1), delete, the names the
 * new text mentions ('' none; absent: not recorded) */
static RedisScript script_edit = { .source =
        LUA_RANGE
        "local room, id, user, text, delete = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'\n"
        "local names = ARGV[6]\n"
        "if redis.call('HEXISTS', 'mc:rooms', room) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local log = 'mc:room:' .. room .. ':log'\n"
        "local e = range('XRANGE', log, id, id, 1)\n"
        "if not e or #e == 0 then return redis.error_reply('NOTFOUND no such message') end\n"
        "local author\n"
        "for i = 1, #e[1][2], 2 do if e[1][2][i] == 'u' then author = e[1][2][i + 1] end end\n"
        "if author ~= user then return redis.error_reply('FORBIDDEN not the author') end\n"
        "local channel = 'mc:room:' .. room\n"
        "if delete then\n"
        "  redis.call('XDEL', log, id)\n"
        "  redis.call('HDEL', 'mc:room:' .. room .. ':edits', id)\n"
        "  redis.call('HDEL', 'mc:room:' .. room .. ':edits-n', id)\n"
        "  redis.call('PUBLISH', channel, cjson.encode({'d', id}))\n"
        "else\n"
        "  redis.call('HSET', 'mc:room:' .. room .. ':edits', id, text)\n"
        "  if names then redis.call('HSET', 'mc:room:' .. room .. ':edits-n', id, names) end\n"
        "  redis.call('PUBLISH', channel, cjson.encode({'e', id, user, text}))\n"
        "end\n"
        "return redis.status_reply('OK')\n"
};

/* ARGV: room, before ('' for newest), limit */
static RedisScript script_history = { .source =
        LUA_RANGE LUA_EDITS
        "local room, before, n = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
        "if redis.call('HEXISTS', 'mc:rooms', room) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local top = '+'\n"
        "if before ~= '' then top = '(' .. before end\n"
        "local rev = range('XREVRANGE', 'mc:room:' .. room .. ':log', top, '-', n + 1) or {}\n"
        "local complete = 1\n"
        "if #rev > n then complete = 0; rev[#rev] = nil end\n"
        "return {rev, edits(room, rev), complete}\n"
};

/* ARGV: room, after, limit. One more than asked is read to tell whether
 * more follow. */
static RedisScript script_since = { .source =
        LUA_ID_LESS LUA_RANGE LUA_EDITS LUA_TRIMMED_AFTER
        "local room, after, n = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
        "local log = 'mc:room:' .. room .. ':log'\n"
        "local hist, more, gap = range('XRANGE', log, '(' .. after, '+', n + 1) or {}, 0, 0\n"
        "if #hist > n then more = 1; hist[#hist] = nil end\n"
        "if trimmed_after(log, after) then gap = 1 end\n"
        "local last = '0-0'\n"
        "local info = redis.pcall('XINFO', 'STREAM', log)\n"
        "if type(info) == 'table' and not info.err then\n"
        "  for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end\n"
        "end\n"
        "return {hist, edits(room, hist), more, gap, last}\n"
};

/* ARGV: the epoch this daemon knows ('' at its first connect), a new one,
 * then room id and room JSON pairs: the rooms this daemon knows. A Redis
 * without mc:epoch that is not new to the daemon lost its data: the rooms
 * come back from the daemon's cache (what was never there is not made up:
 * only rooms the daemon saw). Reply: {epoch, lost (0/1), rooms restored}. */
static RedisScript script_epoch = { .source =
        "local cur = redis.call('GET', 'mc:epoch')\n"
        "if cur then return {cur, (ARGV[1] ~= '' and cur ~= ARGV[1]) and 1 or 0, 0} end\n"
        "local restored = 0\n"
        "if ARGV[1] ~= '' then\n"
        "  local seq = tonumber(redis.call('GET', 'mc:rooms:seq') or '0')\n"
        "  for i = 3, #ARGV - 1, 2 do\n"
        "    restored = restored + redis.call('HSETNX', 'mc:rooms', ARGV[i], ARGV[i + 1])\n"
        "    if tonumber(ARGV[i]) > seq then seq = tonumber(ARGV[i]) end\n"
        "  end\n"
        "  redis.call('SET', 'mc:rooms:seq', seq)\n"
        "  if restored > 0 then redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'})) end\n"
        "end\n"
        "redis.call('SET', 'mc:epoch', ARGV[2])\n"
        "return {ARGV[2], ARGV[1] ~= '' and 1 or 0, restored}\n"
};

/* ARGV: title, staff_only. The id is read back as Redis's string: a Lua
 * number is a double that tostring() prints as "1e+14" from 10^14 on. */
static RedisScript script_create_room = { .source =
        "redis.call('INCR', 'mc:rooms:seq')\n"
        "local id = redis.call('GET', 'mc:rooms:seq')\n"
        "redis.call('HSET', 'mc:rooms', id, cjson.encode({title = ARGV[1], staff_only = ARGV[2] == '1'}))\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'}))\n"
        "return id\n"
};

/* ARGV: room, title ('' keeps), staff_only ('' keeps, '0', '1') */
static RedisScript script_update_room = { .source =
        "local raw = redis.call('HGET', 'mc:rooms', ARGV[1])\n"
        "if not raw then return redis.error_reply('NOROOM no such room') end\n"
        "local room = cjson.decode(raw)\n"
        "if ARGV[2] ~= '' then room.title = ARGV[2] end\n"
        "if ARGV[3] ~= '' then room.staff_only = ARGV[3] == '1' end\n"
        "redis.call('HSET', 'mc:rooms', ARGV[1], cjson.encode(room))\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'}))\n"
        "return redis.status_reply('OK')\n"
};

/* ARGV: room */
static RedisScript script_delete_room = { .source =
        "local room = ARGV[1]\n"
        "if redis.call('HDEL', 'mc:rooms', room) == 0 then return redis.error_reply('NOROOM no such room') end\n"
        "local p = 'mc:room:' .. room\n"
        "redis.call('DEL', p .. ':log', p .. ':edits', p .. ':edits-n', p .. ':users')\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'deleted', room}))\n"
        "redis.call('PUBLISH', 'mc:events', cjson.encode({'rooms'}))\n"
        "return redis.status_reply('OK')\n"
};

/* ARGV: daemon id, or '' for every daemon whose heartbeat expired */
static RedisScript script_reap = { .source =
        "local function reap(d)\n"
        "  local pkey = 'mc:daemon:' .. d .. ':presence'\n"
        "  local p = redis.call('HGETALL', pkey)\n"
        "  for i = 1, #p, 2 do\n"
        "    local room, user = p[i]:match('^([^\\t]+)\\t(.+)$')\n"
        "    if room then\n"
        "      local ukey = 'mc:room:' .. room .. ':users'\n"
        "      local c = redis.call('HINCRBY', ukey, user, -tonumber(p[i + 1]))\n"
        "      local change = 0\n"
        "      if c <= 0 then redis.call('HDEL', ukey, user); c = 0; change = -1 end\n"
        "      redis.call('PUBLISH', 'mc:events', cjson.encode({'p', room, user, c, change}))\n"
        "    end\n"
        "  end\n"
        "  redis.call('DEL', pkey)\n"
        "  redis.call('SREM', 'mc:daemons', d)\n"
        "end\n"
        "local n = 0\n"
        "if ARGV[1] ~= '' then reap(ARGV[1]); return 1 end\n"
        "for _, d in ipairs(redis.call('SMEMBERS', 'mc:daemons')) do\n"
        "  if redis.call('EXISTS', 'mc:daemon:' .. d) == 0 then reap(d); n = n + 1 end\n"
        "end\n"
        "return n\n"
};

/* argv: n C strings. */
static int store_eval(Redis *r, RedisScript *s, RedisReplyHandler cb, void *userdata,
                      int n, const char **argv) {
        /* The hash is derived from the constant source on first use. */
        if (!s->sha1[0])
                redis_script_init(s, s->source);
        return redis_eval(r, s, cb, userdata, 0, n, argv, NULL);
}

int store_load_scripts(Redis *r) {
        RedisScript *const scripts[] = {
                &script_join, &script_leave, &script_send, &script_edit, &script_history, &script_since,
                &script_epoch, &script_create_room, &script_update_room, &script_delete_room, &script_reap,
                &script_user_rooms, &script_user_leave, &script_read, &script_unread,
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

int store_room_channel(const char *room, char *buf, size_t size) {
        int n = snprintf(buf, size, STORE_ROOM_CHANNEL_PREFIX "%s", room);

        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

int store_load_rooms(Redis *r, RedisReplyHandler cb, void *userdata) {
        return redis_command(r, cb, userdata, "HGETALL mc:rooms");
}

int store_load_presence(Redis *r, const char *room, RedisReplyHandler cb, void *userdata) {
        return redis_command(r, cb, userdata, "HGETALL mc:room:%s:users", room);
}

int store_create_room(Redis *r, const char *title, bool staff_only, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_create_room, cb, userdata, 2,
                          (const char *[]) { title, staff_only ? "1" : "0" });
}

int store_update_room(Redis *r, const char *room, const char *title, int staff_only, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_update_room, cb, userdata, 3,
                          (const char *[]) { room, title ?: "", staff_only < 0 ? "" : staff_only ? "1" : "0" });
}

int store_delete_room(Redis *r, const char *room, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_delete_room, cb, userdata, 1, (const char *[]) { room });
}

int store_join(Redis *r, const char *daemon_id, const char *room, const char *username,
               const char *since, unsigned history, RedisReplyHandler cb, void *userdata) {
        char n[16];

        snprintf(n, sizeof n, "%u", history);
        return store_eval(r, &script_join, cb, userdata, 5,
                          (const char *[]) { room, username, daemon_id, n, since ?: "" });
}

int store_join_v2(Redis *r, const char *daemon_id, const char *room, const char *username,
                  const char *since, unsigned history, unsigned max_rooms, RedisReplyHandler cb, void *userdata) {
        char n[16], max[16];

        snprintf(n, sizeof n, "%u", history);
        snprintf(max, sizeof max, "%u", max_rooms);
        return store_eval(r, &script_join, cb, userdata, 6,
                          (const char *[]) { room, username, daemon_id, n, since ?: "", max });
}

int store_user_rooms(Redis *r, const char *username, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_user_rooms, cb, userdata, 1, (const char *[]) { username });
}

int store_user_leave(Redis *r, const char *username, const char *room, const char *reason,
                     RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_user_leave, cb, userdata, 3, (const char *[]) { username, room, reason ?: "" });
}

int store_read(Redis *r, const char *room, const char *username, const char *id,
               RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_read, cb, userdata, 3, (const char *[]) { room, username, id });
}

int store_unread(Redis *r, const char *room, const char *username, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_unread, cb, userdata, 2, (const char *[]) { room, username });
}

int store_leave(Redis *r, const char *daemon_id, const char *room, const char *username,
                RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_leave, cb, userdata, 3, (const char *[]) { room, username, daemon_id });
}

int store_send_mentioning(Redis *r, const char *room, const char *username, const char *text, const char *names,
                          const char *ref, unsigned keep, RedisReplyHandler cb, void *userdata) {
        char k[16], ttl[16];

        snprintf(k, sizeof k, "%u", keep);
        snprintf(ttl, sizeof ttl, "%u", STORE_SEND_REF_TTL_SEC);
        return store_eval(r, &script_send, cb, userdata, 7,
                          (const char *[]) { room, username, text, k, ref ?: "", ttl, names ?: "" });
}

int store_send(Redis *r, const char *room, const char *username, const char *text, const char *ref,
               unsigned keep, RedisReplyHandler cb, void *userdata) {
        return store_send_mentioning(r, room, username, text, NULL, ref, keep, cb, userdata);
}

int store_edit(Redis *r, const char *room, const char *id, const char *username, const char *text,
               RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_edit, cb, userdata, 5,
                          (const char *[]) { room, id, username, text ?: "", text ? "0" : "1" });
}

int store_edit_mentioning(Redis *r, const char *room, const char *id, const char *username, const char *text,
                          const char *names, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_edit, cb, userdata, 6,
                          (const char *[]) { room, id, username, text ?: "", text ? "0" : "1", names ?: "" });
}

int store_history(Redis *r, const char *room, const char *before, unsigned limit,
                  RedisReplyHandler cb, void *userdata) {
        char n[16];

        snprintf(n, sizeof n, "%u", limit);
        return store_eval(r, &script_history, cb, userdata, 3, (const char *[]) { room, before ?: "", n });
}

int store_since(Redis *r, const char *room, const char *after, unsigned limit,
                RedisReplyHandler cb, void *userdata) {
        char n[16];

        snprintf(n, sizeof n, "%u", limit);
        return store_eval(r, &script_since, cb, userdata, 3, (const char *[]) { room, after, n });
}

int store_publish(Redis *r, const char *channel, const char *payload, size_t len,
                  RedisReplyHandler cb, void *userdata) {
        return redis_command_argv(r, cb, userdata, 3,
                                  (const char *[]) { "PUBLISH", channel, payload },
                                  (const size_t[]) { 7, strlen(channel), len });
}

int store_heartbeat(Redis *r, const char *daemon_id) {
        int r1;

        r1 = redis_command(r, NULL, NULL, "SET mc:daemon:%s 1 EX %d", daemon_id, STORE_HEARTBEAT_SEC);
        if (r1 < 0)
                return r1;
        return redis_command(r, NULL, NULL, "SADD mc:daemons %s", daemon_id);
}

int store_reap(Redis *r, const char *daemon_id, RedisReplyHandler cb, void *userdata) {
        return store_eval(r, &script_reap, cb, userdata, 1, (const char *[]) { daemon_id ?: "" });
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

/* [count, [user, n, ...], [entries], complete, [edited texts], newest id]
 * and, for a version 2 join, [marker, unread, mentions] after it. */
int store_parse_join_reply(const redisReply *reply, StoreJoinReply *ret) {
        const redisReply *count, *complete, *tip;
        StoreJoinReply j = {};
        int r;

        r = reply_shape(reply, 6);
        if (r == -EBADMSG && reply->type == REDIS_REPLY_ARRAY && reply->elements == 9) {
                r = read_state_from(reply, 6, &j.read_state);
                j.has_read_state = r >= 0;
        }
        if (r < 0)
                return r;
        count = reply_element(reply, 0, REDIS_REPLY_INTEGER);
        j.presence = reply_element(reply, 1, REDIS_REPLY_ARRAY);
        complete = reply_element(reply, 3, REDIS_REPLY_INTEGER);
        tip = reply_element(reply, 5, REDIS_REPLY_STRING);
        if (!count || !j.presence || !complete || store_entries_from(reply, 2, 4, &j.history) < 0)
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

int store_epoch(Redis *r, const char *known, const char *fresh, char **rooms, size_t n_rooms,
                RedisReplyHandler cb, void *userdata) {
        _cleanup_free_ const char **argv = NULL;

        argv = calloc(2 + n_rooms, sizeof *argv);
        if (!argv)
                return -ENOMEM;
        argv[0] = known ?: "";
        argv[1] = fresh;
        for (size_t i = 0; i < n_rooms; i++)
                argv[2 + i] = rooms[i];
        return store_eval(r, &script_epoch, cb, userdata, (int) (2 + n_rooms), (const char **) argv);
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
