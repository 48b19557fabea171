/* The Lua scripts of src/cluster/cluster.c (docs/cluster-design.md).  Each write
 * that must be atomic is one script: it checks who owns an entry, changes
 * the room's hash, bumps the room's sequence and publishes the change, so
 * that no watcher sees a change without its sequence number.
 *
 * A peer's hash value is "INSTANCE\nEPOCH\nCONNECTED_AT\nROLE\nPRINCIPAL\nMETA"
 * (CONNECTED_AT in milliseconds; PRINCIPAL a tag of who registered it,
 * "" for anyone while authentication is off).
 * Room events: "U\nSEQ\nTS\nPEER\nVALUE" and "R\nSEQ\nTS\nPEER\nINSTANCE\nWHY"
 * (WHY: why it left, the reason of a peer_left: docs/protocol.md).
 * Key names are built from the prefix inside the scripts that walk
 * several rooms (sweep, prune): one Redis, not Redis Cluster. */
#pragma once

/* KEYS: room hash, room seq, my peer set, my re-announce set, room admin.
 * ARGV: room, peer, me, epoch, value, mode ('f' new session, 'r'
 * re-announce), ts, room channel, prefix, principal tag, max peers (0:
 * none), admin seat wanted ('1').
 * -> {1, previous owner or "", admin seat's other holder or ""}; or
 * {0, its instance, "lost"} for a re-announce that an equal or newer
 * session elsewhere beats; for a new session {0, owner, "taken"} when
 * another principal holds the id, {0, "", "full"} when the room has max
 * peers.  An entry it cannot read is overwritten.  The admin seat
 * ("PEER\nINSTANCE\nEPOCH") counts only while that session's entry is
 * there, so a holder that went stale frees it without a script of its own. */
#define CLUSTER_LUA_CLAIM \
	"local cur = redis.call('HGET', KEYS[1], ARGV[2])\n" \
	"local prev = ''\n" \
	"local inst, e\n" \
	"if cur then\n" \
	"  inst, e = string.match(cur, '^([^\\n]*)\\n([^\\n]*)\\n')\n" \
	"  prev = inst or ''\n" \
	"  if inst and (inst ~= ARGV[3] or e ~= ARGV[4]) then\n" \
	"    local en, an = tonumber(e) or 0, tonumber(ARGV[4])\n" \
	"    if ARGV[6] == 'r' and (en > an or (en == an and inst > ARGV[3])) then\n" \
	"      return {0, inst, 'lost'}\n" \
	"    end\n" \
	"    local who = string.match(cur, '^[^\\n]*\\n[^\\n]*\\n[^\\n]*\\n[^\\n]*\\n([^\\n]*)\\n')\n" \
	"    if ARGV[6] == 'f' and who ~= ARGV[10] then return {0, inst, 'taken'} end\n" \
	"  end\n" \
	"elseif ARGV[6] == 'f' and tonumber(ARGV[11]) > 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[11]) then\n" \
	"  return {0, '', 'full'}\n" \
	"end\n" \
	"local admin = ''\n" \
	"if ARGV[12] == '1' then\n" \
	"  local h = redis.call('GET', KEYS[5])\n" \
	"  local hp, hi, he\n" \
	"  if h then hp, hi, he = string.match(h, '^([^\\n]*)\\n([^\\n]*)\\n(.*)$') end\n" \
	"  if hp and hp ~= ARGV[2] then\n" \
	"    local hc = redis.call('HGET', KEYS[1], hp)\n" \
	"    if hc and string.match(hc, '^([^\\n]*)\\n') == hi and\n" \
	"       string.match(hc, '^[^\\n]*\\n([^\\n]*)\\n') == he then admin = hp end\n" \
	"  end\n" \
	"  if admin == '' then redis.call('SET', KEYS[5], ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4]) end\n" \
	"end\n" \
	"if inst and inst ~= ARGV[3] then\n" \
	"  local m = ARGV[1] .. '\\n' .. ARGV[2]\n" \
	"  redis.call('SREM', ARGV[9] .. 'inst:{' .. inst .. '}:peers', m)\n" \
	"  redis.call('PUBLISH', ARGV[9] .. 'inst:{' .. inst .. '}:msg',\n" \
	"             'K\\n' .. ARGV[1] .. '\\n' .. ARGV[2] .. '\\n' .. e .. '\\n' .. ARGV[3])\n" \
	"end\n" \
	"redis.call('HSET', KEYS[1], ARGV[2], ARGV[5])\n" \
	"redis.call('PERSIST', KEYS[2])\n" \
	"local seq = redis.call('INCR', KEYS[2])\n" \
	"redis.call('SADD', KEYS[3], ARGV[1] .. '\\n' .. ARGV[2])\n" \
	"if ARGV[6] == 'r' then redis.call('SADD', KEYS[4], ARGV[1] .. '\\n' .. ARGV[2]) end\n" \
	"redis.call('PUBLISH', ARGV[8], 'U\\n' .. seq .. '\\n' .. ARGV[7] .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[5])\n" \
	"return {1, prev, admin}\n"

/* KEYS: room hash, room seq.  ARGV: peer, me, epoch, value, ts, channel.
 * -> 1 if (peer, me, epoch) owned the entry and it changed, else 0. */
#define CLUSTER_LUA_UPDATE \
	"local cur = redis.call('HGET', KEYS[1], ARGV[1])\n" \
	"if not cur then return 0 end\n" \
	"local inst, e = string.match(cur, '^([^\\n]*)\\n([^\\n]*)\\n')\n" \
	"if inst ~= ARGV[2] or e ~= ARGV[3] then return 0 end\n" \
	"redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])\n" \
	"local seq = redis.call('INCR', KEYS[2])\n" \
	"redis.call('PUBLISH', ARGV[6], 'U\\n' .. seq .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[4])\n" \
	"return 1\n"

/* KEYS: room hash, room seq, my peer set, room admin.  ARGV: room, peer,
 * me, epoch, ts, channel, why.  -> 1 if removed; 0 if a newer session owns the
 * id.  The admin seat it held goes with it. */
#define CLUSTER_LUA_WITHDRAW \
	"local cur = redis.call('HGET', KEYS[1], ARGV[2])\n" \
	"if not cur then return 0 end\n" \
	"local inst, e = string.match(cur, '^([^\\n]*)\\n([^\\n]*)\\n')\n" \
	"if inst ~= ARGV[3] or e ~= ARGV[4] then return 0 end\n" \
	"redis.call('HDEL', KEYS[1], ARGV[2])\n" \
	"if redis.call('GET', KEYS[4]) == ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4] then redis.call('DEL', KEYS[4]) end\n" \
	"redis.call('SREM', KEYS[3], ARGV[1] .. '\\n' .. ARGV[2])\n" \
	"local seq = redis.call('INCR', KEYS[2])\n" \
	"if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('PEXPIRE', KEYS[2], 86400000) end\n" \
	"redis.call('PUBLISH', ARGV[6], 'R\\n' .. seq .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[7])\n" \
	"return 1\n"

/* KEYS: room hash, room seq.  -> {seq, {peer, value, ...}}: one snapshot. */
#define CLUSTER_LUA_LOAD \
	"return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}\n"

/* Removes one instance's entries that it still owns, publishing each.
 * Shared by sweep and prune through string concatenation below. */
#define CLUSTER_LUA_REMOVE_FN \
	"local function remove(P, id, m, ts, why)\n" \
	"  local room, peer = string.match(m, '^([^\\n]*)\\n(.*)$')\n" \
	"  if not room then return 0 end\n" \
	"  local h = P .. '{' .. room .. '}:peers'\n" \
	"  local cur = redis.call('HGET', h, peer)\n" \
	"  if not cur or string.match(cur, '^([^\\n]*)\\n') ~= id then return 0 end\n" \
	"  redis.call('HDEL', h, peer)\n" \
	"  local a = P .. '{' .. room .. '}:admin'\n" \
	"  local e = string.match(cur, '^[^\\n]*\\n([^\\n]*)\\n')\n" \
	"  if redis.call('GET', a) == peer .. '\\n' .. id .. '\\n' .. (e or '') then redis.call('DEL', a) end\n" \
	"  local s = P .. '{' .. room .. '}:seq'\n" \
	"  local seq = redis.call('INCR', s)\n" \
	"  if redis.call('EXISTS', h) == 0 then redis.call('PEXPIRE', s, 86400000) end\n" \
	"  redis.call('PUBLISH', P .. '{' .. room .. '}:events',\n" \
	"             'R\\n' .. seq .. '\\n' .. ts .. '\\n' .. peer .. '\\n' .. id .. '\\n' .. why)\n" \
	"  return 1\n" \
	"end\n"

/* ARGV: prefix, me, ttl ms.  Refreshes instance:ME, pings our channel
 * (the subscription's liveness).  -> 1 if the key was still there, 0 if
 * it had expired (others may have swept our peers). */
#define CLUSTER_LUA_HEARTBEAT \
	"local P, me = ARGV[1], ARGV[2]\n" \
	"local had = redis.call('SET', P .. 'inst:{' .. me .. '}', '1', 'PX', ARGV[3], 'GET')\n" \
	"redis.call('SADD', P .. 'instances', me)\n" \
	"redis.call('PUBLISH', P .. 'inst:{' .. me .. '}:msg', 'P')\n" \
	"if had then return 1 end\n" \
	"return 0\n"

/* ARGV: prefix, ts.  Every instance whose key expired loses its peers,
 * in one atomic step, so two sweepers cannot both publish a removal.
 * -> {{live instance, its peers, ...}, {gone instance, peers removed, ...}}. */
#define CLUSTER_LUA_SWEEP \
	CLUSTER_LUA_REMOVE_FN \
	"local P, alive, gone = ARGV[1], {}, {}\n" \
	"for _, id in ipairs(redis.call('SMEMBERS', P .. 'instances')) do\n" \
	"  if redis.call('EXISTS', P .. 'inst:{' .. id .. '}') == 1 then\n" \
	"    table.insert(alive, id)\n" \
	"    table.insert(alive, redis.call('SCARD', P .. 'inst:{' .. id .. '}:peers'))\n" \
	"  else\n" \
	"    local n = 0\n" \
	"    for _, m in ipairs(redis.call('SMEMBERS', P .. 'inst:{' .. id .. '}:peers')) do\n" \
	"      n = n + remove(P, id, m, ARGV[2], 'timeout')\n" \
	"    end\n" \
	"    redis.call('DEL', P .. 'inst:{' .. id .. '}:peers', P .. 'inst:{' .. id .. '}:new')\n" \
	"    redis.call('SREM', P .. 'instances', id)\n" \
	"    table.insert(gone, id)\n" \
	"    table.insert(gone, n)\n" \
	"  end\n" \
	"end\n" \
	"return {alive, gone}\n"

/* After a re-announce: KEYS: my peer set, my re-announce set.  ARGV:
 * prefix, me, ts.  Entries of ours that were not re-announced (withdrawn
 * during the outage) go; the re-announce set becomes the peer set. */
#define CLUSTER_LUA_PRUNE \
	CLUSTER_LUA_REMOVE_FN \
	"local n = 0\n" \
	"for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n" \
	"  if redis.call('SISMEMBER', KEYS[2], m) == 0 then n = n + remove(ARGV[1], ARGV[2], m, ARGV[3], 'disconnected') end\n" \
	"end\n" \
	"if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[1])\n" \
	"else redis.call('DEL', KEYS[1]) end\n" \
	"return n\n"
