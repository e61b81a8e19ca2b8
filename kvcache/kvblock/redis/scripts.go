package redis

import (
	"crypto/sha1"
	"encoding/hex"
)

// The index's data in Redis. Blocks are spread over Config.Cluster.Groups
// groups by key; every key of group g starts with G = <prefix>{g} (a hash
// tag, so a group lives in one cluster slot and one script can update it),
// and the pod and tier registries start with M = <prefix>{m}:
//
//	G b<key>        string, one per block: 5-byte records <pod id:3 BE>
//	                <tier id:1><epoch:1>, one per reference (a pod that stored
//	                a block twice on one tier has two records). <key> is the
//	                8-byte big-endian Key. Add is one APPEND; Score reads the
//	                values with MGET and walks them in the client.
//	G l:<pid>:<ep>  list of the key batches pod <pid> stored during epoch <ep>
//	                (8 bytes per key), the pod's log: ClearPod and expiry
//	                walk it instead of scanning.
//	G e:<pid>       sorted set of the epochs pod <pid> has a log for
//	G a             sorted set "<pid>:<ep>" -> end of the epoch (ms), oldest
//	                first: what expiry drains
//	G pc            hash pid -> entries the pod holds in the group
//	G s             hash of counters: keys, entries, admissions, evictions,
//	                removals
//	M pods          hash pod name -> pod id (1..2^24-1), never reassigned
//	M tiers         hash tier name -> tier id (1..255), never reassigned
//	M podseq, M tierseq  counters allocating the ids
//	M gen           the registry's generation, a token made when it is
//	                created: ids cached under another generation are void
//
// An epoch is a quarter of Config.TTL (0 when TTL is 0: one epoch). A record
// carries its epoch mod 256, so expiring an old epoch's log drops a pod's
// records of a key only when none of them was stored in a later epoch: an
// entry expires between TTL and 1.25 TTL after its last store.
//
// Ids are interned by a script on M and cached by every client for as long
// as M gen is unchanged, which is safe because a name keeps its id forever;
// Score reads M gen with the blocks to check.

// script is a Lua script run with EVALSHA, falling back to EVAL (which also
// caches it) when the server does not know it, after a restart or a SCRIPT
// FLUSH.
type script struct {
	name string
	src  string
	sha  string
}

func newScript(name, body string) *script {
	src := luaPrelude + body
	sum := sha1.Sum([]byte(src))
	return &script{name: name, src: src, sha: hex.EncodeToString(sum[:])}
}

// luaPrelude holds the helpers every script shares. ARGV[1] is always the
// group's prefix G, and KEYS[1] a key of the group (it routes the call in a
// cluster).
const luaPrelude = `
local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function count(field, n)
  if n ~= 0 then redis.call('HINCRBY', KEYS[1], field, n) end
end

-- find returns the position of the first record starting with ent (pod id
-- and tier, 4 bytes) in a block's value, or nil.
local function find(v, ent)
  local i = 1
  while true do
    i = string.find(v, ent, i, true)
    if not i then return nil end
    if (i - 1) % 5 == 0 then return i end
    i = i + 1
  end
end

local function pod_bytes(pid)
  return string.sub(struct.pack('>I4', tonumber(pid)), 2)
end

local function uncount_pod(pid, n)
  if n > 0 and redis.call('HINCRBY', P .. 'pc', pid, -n) <= 0 then
    redis.call('HDEL', P .. 'pc', pid)
  end
end

-- drop_pod drops every record of pod pb from block bk, unless ep is given
-- and one of them was stored after epoch ep. Returns the entries (tiers)
-- that went and whether the block did.
local function drop_pod(bk, pb, ep)
  local v = redis.call('GET', bk)
  if not v then return 0, false end
  local keep, seen, n = {}, {}, 0
  for r = 1, #v, 5 do
    local rec = string.sub(v, r, r + 4)
    if string.sub(rec, 1, 3) == pb then
      if ep then
        local d = (string.byte(rec, 5) - ep) % 256
        if d >= 1 and d < 128 then return 0, false end
      end
      local t = string.byte(rec, 4)
      if not seen[t] then
        seen[t] = true
        n = n + 1
      end
    else
      keep[#keep + 1] = rec
    end
  end
  if n == 0 then return 0, false end
  if #keep == 0 then
    redis.call('DEL', bk)
    return n, true
  end
  redis.call('SET', bk, table.concat(keep))
  return n, false
end

-- drain pops up to limit batches from the log seg ("<pid>:<ep>") and drops
-- the pod's records of their keys (only those not stored since, when
-- expiring). Returns the entries and blocks that went.
local function drain(seg, limit, expiring)
  local c = string.find(seg, ':', 1, true)
  local pid, ep = string.sub(seg, 1, c - 1), tonumber(string.sub(seg, c + 1))
  local pb = pod_bytes(pid)
  local since = nil
  if expiring then since = ep % 256 end
  local lk = P .. 'l:' .. seg
  local entries, blocks = 0, 0
  local batches = redis.call('LPOP', lk, limit)
  if batches then
    for _, keys in ipairs(batches) do
      for i = 1, #keys, 8 do
        local e, gone = drop_pod(P .. 'b' .. string.sub(keys, i, i + 7), pb, since)
        entries = entries + e
        if gone then blocks = blocks + 1 end
      end
    end
  end
  if redis.call('EXISTS', lk) == 0 then
    redis.call('ZREM', P .. 'a', seg)
    redis.call('ZREM', P .. 'e:' .. pid, ep)
  end
  uncount_pod(pid, entries)
  return entries, blocks
end
`

// addScript: KEYS group stats; ARGV G, pod id, pod id (3 bytes), tier id (1
// byte), keys (8 bytes each), epoch length ms (0: one epoch), ttl ms (0: no
// expiry), batches to expire. Returns the number of entries created.
var addScript = newScript("add", `
local pid, ent, keys = ARGV[2], ARGV[3] .. ARGV[4], ARGV[5]
local width, ttl, limit = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()
local ep = 0
if width > 0 then ep = math.floor(now / width) end
local rec = ent .. string.char(ep % 256)
local added, blocks = 0, 0
for i = 1, #keys, 8 do
  local bk = P .. 'b' .. string.sub(keys, i, i + 7)
  local n = redis.call('APPEND', bk, rec)
  if n == 5 then
    added, blocks = added + 1, blocks + 1
  elseif not find(redis.call('GETRANGE', bk, 0, n - 6), ent) then
    added = added + 1
  end
end
local seg = pid .. ':' .. ep
redis.call('RPUSH', P .. 'l:' .. seg, keys)
if redis.call('ZADD', P .. 'e:' .. pid, ep, ep) == 1 then
  redis.call('ZADD', P .. 'a', (ep + 1) * width, seg)
end
if added > 0 then redis.call('HINCRBY', P .. 'pc', pid, added) end
count('entries', added)
count('admissions', added)
count('keys', blocks)
if ttl > 0 then
  -- Drain up to limit batches of the oldest expired logs: more than the one
  -- an add logs, so expiry keeps up with the stores.
  local old = redis.call('ZRANGEBYSCORE', P .. 'a', '-inf', now - ttl, 'LIMIT', 0, limit)
  local e, k = 0, 0
  for _, seg in ipairs(old) do
    if limit <= 0 then break end
    local n = redis.call('LLEN', P .. 'l:' .. seg)
    local de, dk = drain(seg, limit, true)
    e, k, limit = e + de, k + dk, limit - n
  end
  count('entries', -e)
  count('evictions', e)
  count('keys', -k)
end
return added
`)

// removeScript: KEYS group stats; ARGV G, pod id, pod id (3 bytes), tier id
// (1 byte), keys. Drops one reference (the oldest record) per key. Returns
// the number of entries dropped.
var removeScript = newScript("remove", `
local pid, ent, keys = ARGV[2], ARGV[3] .. ARGV[4], ARGV[5]
local removed, blocks = 0, 0
for i = 1, #keys, 8 do
  local bk = P .. 'b' .. string.sub(keys, i, i + 7)
  local v = redis.call('GET', bk)
  local at = v and find(v, ent)
  if at then
    if #v == 5 then
      redis.call('DEL', bk)
      removed, blocks = removed + 1, blocks + 1
    else
      v = string.sub(v, 1, at - 1) .. string.sub(v, at + 5)
      redis.call('SET', bk, v)
      if not find(v, ent) then removed = removed + 1 end
    end
  end
end
uncount_pod(pid, removed)
count('entries', -removed)
count('removals', removed)
count('keys', -blocks)
return removed
`)

// clearPodScript: KEYS group stats; ARGV G, pod id, batches. Drains up to
// batches of the pod's oldest log and returns how many logs remain, so a
// caller loops until 0 and no call blocks the server for long.
var clearPodScript = newScript("clear_pod", `
local pid = ARGV[2]
local segs = redis.call('ZRANGE', P .. 'e:' .. pid, 0, 0)
if not segs[1] then return 0 end
local e, k = drain(pid .. ':' .. segs[1], tonumber(ARGV[3]), false)
count('entries', -e)
count('removals', e)
count('keys', -k)
return redis.call('ZCARD', P .. 'e:' .. pid)
`)

// clearScript: KEYS group stats; ARGV G, batches. clearPodScript for
// whichever pod has the oldest log in the group; returns the logs left.
var clearScript = newScript("clear", `
local segs = redis.call('ZRANGE', P .. 'a', 0, 0)
if not segs[1] then return 0 end
local e, k = drain(segs[1], tonumber(ARGV[2]), false)
count('entries', -e)
count('removals', e)
count('keys', -k)
return redis.call('ZCARD', P .. 'a')
`)

// internScript: KEYS M pods; ARGV M, pod name, tier name. Returns the pod's
// and the tier's ids, allocating them on first sight, and the registry's
// generation.
var internScript = newScript("intern", `
local pid = redis.call('HGET', P .. 'pods', ARGV[2])
if not pid then
  pid = redis.call('INCR', P .. 'podseq')
  if pid > 16777215 then return redis.error_reply('ERR kvtrack: pod ids exhausted (2^24 names)') end
  redis.call('HSET', P .. 'pods', ARGV[2], pid)
end
local tid = redis.call('HGET', P .. 'tiers', ARGV[3])
if not tid then
  tid = redis.call('INCR', P .. 'tierseq')
  if tid > 255 then return redis.error_reply('ERR kvtrack: tier ids exhausted (255 media)') end
  redis.call('HSET', P .. 'tiers', ARGV[3], tid)
end
local gen = redis.call('GET', P .. 'gen')
if not gen then
  -- A registry's generation: clients cache ids under it, and a server that
  -- lost its data (and so its ids) starts a new one.
  local t = redis.call('TIME')
  gen = t[1] .. '.' .. t[2] .. '.' .. redis.call('INCR', P .. 'podseq')
  redis.call('SET', P .. 'gen', gen)
end
return {tonumber(pid), tonumber(tid), gen}
`)
