package redis

import (
	"crypto/sha1"
	"encoding/hex"
)

// The index's data in Redis, every key starting with the configured prefix P:
//
//	P b:<key>     string, one per block: 7-byte records <pod id:4 bytes BE>
//	              <tier id:1><reference count:2 BE>, one per entry. <key> is the
//	              8-byte big-endian Key. A string rather than a hash so that
//	              Score reads many blocks with one MGET.
//	P p:<pod id>  sorted set, one per pod: member <key:8><tier id:1>, score the
//	              time (ms) of its last store. ClearPod and expiry walk it.
//	P pods        hash pod name -> pod id, for pods holding at least one entry
//	P podnames    hash pod id -> pod name (the reverse, for expiry)
//	P podseq      counter allocating pod ids (never reused)
//	P tiers       hash tier name -> tier id (1..255); P tierseq allocates them
//	P active      sorted set pod id -> time (ms) of the pod's last store
//	P stats       hash of counters: keys, entries, admissions, evictions, removals
//
// Pods and tiers are interned inside the scripts, so every replica sharing the
// server agrees on the ids without a round trip of its own; a pod's id is
// forgotten when its last entry goes, so ids of departed pods do not pile up.
// A pod name is "<addr>#<rank>".
//
// The scripts build key names from ARGV rather than KEYS, which standalone
// Redis and Valkey allow and Redis Cluster does not: the index needs one
// server (or a primary with replicas), not a cluster.

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

// luaPrelude holds the helpers every script shares.
const luaPrelude = `
local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- call_chunked runs cmd key list... in chunks: unpack has a stack limit.
local function call_chunked(cmd, key, list, step)
  local out = {}
  for i = 1, #list, step do
    local r = redis.call(cmd, key, unpack(list, i, math.min(i + step - 1, #list)))
    if type(r) == 'table' then
      for _, v in ipairs(r) do out[#out + 1] = v end
    end
  end
  return out
end

-- find returns the position of the record for pod+tier (5 bytes) in a
-- block's value, or nil.
local function find(v, field)
  local i = 1
  while true do
    i = string.find(v, field, i, true)
    if not i then return nil end
    if (i - 1) % 7 == 0 then return i end
    i = i + 1
  end
end

-- unref drops one reference (all of them when all is true) to the entry
-- field of block bk. Returns whether the entry went, and whether the block
-- did.
local function unref(bk, field, all)
  local v = redis.call('GET', bk)
  if not v then return false, false end
  local i = find(v, field)
  if not i then return false, false end
  local n = string.byte(v, i + 5) * 256 + string.byte(v, i + 6)
  if n > 1 and not all then
    redis.call('SETRANGE', bk, i + 4, struct.pack('>I2', n - 1))
    return false, false
  end
  v = string.sub(v, 1, i - 1) .. string.sub(v, i + 7)
  if #v == 0 then
    redis.call('DEL', bk)
    return true, true
  end
  redis.call('SET', bk, v)
  return true, false
end

-- drop_members deletes the entries a pod's set names (members <key><tier>)
-- and the members themselves. Returns the entries and keys that went.
local function drop_members(pid, members)
  local ppid = struct.pack('>I4', tonumber(pid))
  local entries, keys = 0, 0
  for _, m in ipairs(members) do
    local gone, blockgone = unref(P .. 'b:' .. string.sub(m, 1, 8), ppid .. string.sub(m, 9, 9), true)
    if gone then entries = entries + 1 end
    if blockgone then keys = keys + 1 end
  end
  if #members > 0 then call_chunked('ZREM', P .. 'p:' .. pid, members, 1000) end
  return entries, keys
end

-- forget_if_empty drops a pod's registration once it holds nothing.
local function forget_if_empty(pid)
  if redis.call('EXISTS', P .. 'p:' .. pid) == 1 then return end
  local name = redis.call('HGET', P .. 'podnames', pid)
  if name then redis.call('HDEL', P .. 'pods', name) end
  redis.call('HDEL', P .. 'podnames', pid)
  redis.call('ZREM', P .. 'active', pid)
end

local function count(field, n)
  if n ~= 0 then redis.call('HINCRBY', P .. 'stats', field, n) end
end
`

// addScript: ARGV P, pod name, tier name, keys (8 bytes each), ttl ms (0: no
// expiry), expiry batch. Returns the number of entries created.
var addScript = newScript("add", `
local pid = redis.call('HGET', P .. 'pods', ARGV[2])
if not pid then
  pid = tostring(redis.call('INCR', P .. 'podseq'))
  redis.call('HSET', P .. 'pods', ARGV[2], pid)
  redis.call('HSET', P .. 'podnames', pid, ARGV[2])
end
local tid = redis.call('HGET', P .. 'tiers', ARGV[3])
if not tid then
  tid = redis.call('INCR', P .. 'tierseq')
  if tid > 255 then tid = 255 end
  redis.call('HSET', P .. 'tiers', ARGV[3], tid)
end
local tb = string.char(tonumber(tid))
local field = struct.pack('>I4', tonumber(pid)) .. tb
local pz = P .. 'p:' .. pid
local now = now_ms()
local blob = ARGV[4]
local added, newkeys = 0, 0
local z = {}
for i = 1, #blob, 8 do
  local k = string.sub(blob, i, i + 7)
  local bk = P .. 'b:' .. k
  local v = redis.call('GET', bk)
  if not v then
    redis.call('SET', bk, field .. '\0\1')
    added, newkeys = added + 1, newkeys + 1
  else
    local at = find(v, field)
    if not at then
      redis.call('APPEND', bk, field .. '\0\1')
      added = added + 1
    else
      local n = string.byte(v, at + 5) * 256 + string.byte(v, at + 6)
      if n < 65535 then -- saturates: a count that high is a runaway publisher
        redis.call('SETRANGE', bk, at + 4, struct.pack('>I2', n + 1))
      end
    end
  end
  z[#z + 1] = now
  z[#z + 1] = k .. tb
  if #z >= 1000 then
    redis.call('ZADD', pz, unpack(z))
    z = {}
  end
end
if #z > 0 then redis.call('ZADD', pz, unpack(z)) end
redis.call('ZADD', P .. 'active', now, pid)
count('entries', added)
count('admissions', added)
count('keys', newkeys)

local ttl = tonumber(ARGV[5])
if ttl > 0 then
  -- Expire a bounded batch of this pod's stale entries and of the stalest
  -- other pod's, so a pod that stopped publishing still drains.
  local cutoff = '(' .. string.format('%d', now - ttl)
  local limit = tonumber(ARGV[6])
  local evicted, gone = 0, 0
  local function expire(p)
    local old = redis.call('ZRANGEBYSCORE', P .. 'p:' .. p, '-inf', cutoff, 'LIMIT', 0, limit)
    local e, k = drop_members(p, old)
    evicted, gone = evicted + e, gone + k
    forget_if_empty(p)
  end
  expire(pid)
  local stale = redis.call('ZRANGEBYSCORE', P .. 'active', '-inf', cutoff, 'LIMIT', 0, 1)
  if stale[1] and stale[1] ~= pid then expire(stale[1]) end
  count('entries', -evicted)
  count('evictions', evicted)
  count('keys', -gone)
end
return added
`)

// removeScript: ARGV P, pod name, tier name, keys. Drops one reference per
// key. Returns the number of entries dropped.
var removeScript = newScript("remove", `
local pid = redis.call('HGET', P .. 'pods', ARGV[2])
if not pid then return 0 end
local tid = redis.call('HGET', P .. 'tiers', ARGV[3])
if not tid then return 0 end
local tb = string.char(tonumber(tid))
local field = struct.pack('>I4', tonumber(pid)) .. tb
local blob = ARGV[4]
local removed, gone = 0, 0
local z = {}
for i = 1, #blob, 8 do
  local k = string.sub(blob, i, i + 7)
  local bk = P .. 'b:' .. k
  local entrygone, blockgone = unref(bk, field, false)
  if entrygone then
    removed = removed + 1
    z[#z + 1] = k .. tb
  end
  if blockgone then gone = gone + 1 end
end
if #z > 0 then call_chunked('ZREM', P .. 'p:' .. pid, z, 1000) end
count('entries', -removed)
count('removals', removed)
count('keys', -gone)
forget_if_empty(pid)
return removed
`)

// clearScript: ARGV P, pod name, batch. Drops up to batch of the pod's
// entries and returns how many remain, so one call clears a pod of up to
// batch entries and a bigger one never blocks the server for long.
var clearScript = newScript("clear", `
local pid = redis.call('HGET', P .. 'pods', ARGV[2])
if not pid then return 0 end
local pz = P .. 'p:' .. pid
local m = redis.call('ZRANGE', pz, 0, tonumber(ARGV[3]) - 1)
local e, k = drop_members(pid, m)
count('entries', -e)
count('removals', e)
count('keys', -k)
forget_if_empty(pid)
return redis.call('ZCARD', pz)
`)

// scoreScript: ARGV P, keys, candidates (each <len:2 bytes BE><pod name>),
// number of weights, then (tier name, weight) pairs. It walks the keys in
// order, extending each candidate's prefix while the candidate holds the
// key on some tier, and stops when no candidate still matches. Returns
// {keys walked, keys held by some candidate, then per candidate: matched,
// weighted as a round-trip exact decimal string}. Read only.
var scoreScript = newScript("score", `
local cb = ARGV[3]
local names = {}
local pos = 1
while pos + 1 <= #cb do
  local n = string.byte(cb, pos) * 256 + string.byte(cb, pos + 1)
  names[#names + 1] = string.sub(cb, pos + 2, pos + 1 + n)
  pos = pos + 2 + n
end
local nc = #names
local ids = {}
if nc > 0 then ids = call_chunked('HMGET', P .. 'pods', names, 1000) end

-- Candidates naming the same pod share a slot. Every field a candidate can
-- have (its pod id and a known tier id) maps to the slot and the tier's
-- weight, so the walk does one table lookup per field it sees.
local weight = {}
local nw = tonumber(ARGV[4])
for j = 1, nw do weight[ARGV[3 + 2 * j]] = tonumber(ARGV[4 + 2 * j]) end
local tiers = redis.call('HGETALL', P .. 'tiers')
local fslot, fweight, slot_of, slot, ns = {}, {}, {}, {}, 0
for i = 1, nc do
  local id = ids[i]
  if id then
    local pk = struct.pack('>I4', tonumber(id))
    local s = slot_of[pk]
    if not s then
      ns = ns + 1
      s = ns
      slot_of[pk] = s
      for t = 1, #tiers, 2 do
        local f = tonumber(id) * 256 + tonumber(tiers[t + 1])
        fslot[f] = s
        fweight[f] = weight[tiers[t]] or 0
      end
    end
    slot[i] = s
  end
end

local matched, weighted, alive, best = {}, {}, {}, {}
local live = {}
for s = 1, ns do
  matched[s], weighted[s], alive[s] = 0, 0, true
  live[s] = s
end
local blob = ARGV[2]
local walked, hits = 0, 0
local i = 1
-- Blocks are read 128 at a time: one MGET for most prompts, and not many
-- wasted reads when the walk stops early.
local vals, vi = {}, 1
while #live > 0 and i <= #blob do
  if vi > #vals then
    local bks = {}
    for j = i, math.min(i + 128 * 8 - 1, #blob), 8 do bks[#bks + 1] = P .. 'b:' .. string.sub(blob, j, j + 7) end
    vals, vi = redis.call('MGET', unpack(bks)), 1
  end
  local v = vals[vi]
  vi = vi + 1
  i = i + 8
  walked = walked + 1
  local hit = false
  for r = 1, (v and #v or 0), 7 do
    local a, b, c, d, t = string.byte(v, r, r + 4)
    local f = (((a * 256 + b) * 256 + c) * 256 + d) * 256 + t
    local s = fslot[f]
    if s then
      hit = true
      if alive[s] then
        local w = fweight[f]
        local b = best[s]
        if b == nil or w > b then best[s] = w end
      end
    end
  end
  if hit then hits = hits + 1 end
  local dropped = false
  for _, s in ipairs(live) do
    local b = best[s]
    if b == nil then
      alive[s] = false
      dropped = true
    else
      matched[s] = matched[s] + 1
      weighted[s] = weighted[s] + b
      best[s] = nil
    end
  end
  if dropped then
    local still = {}
    for _, s in ipairs(live) do
      if alive[s] then still[#still + 1] = s end
    end
    live = still
  end
end

local out = {walked, hits}
for c = 1, nc do
  local s = slot[c]
  if s then
    out[#out + 1] = matched[s]
    out[#out + 1] = string.format('%.17g', weighted[s])
  else
    out[#out + 1] = 0
    out[#out + 1] = '0'
  end
end
return out
`)
