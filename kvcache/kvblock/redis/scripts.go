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
//	G k<bucket>     string, one per bucket: the blocks whose key falls in
//	                it, each <key:8 BE><n:2 BE> followed by n records
//	                <pod id:3 BE><tier id:1><epoch:1>, one per reference (a
//	                pod that stored a block twice on one tier has two
//	                records). <bucket> is the low 32 bits of the key modulo
//	                the group's bucket count, 4 bytes BE. Buckets share
//	                the per-key overhead of Redis (~70 B) among their
//	                blocks; Score reads them with MGET and finds its blocks
//	                in the client.
//	G l:<seg>       list of the key batches a pod stored during one epoch
//	                (8 bytes per key), the pod's log: ClearPod and expiry
//	                walk it instead of scanning. <seg> is "<pid>:<ep>", or
//	                "<pid>:<ep>:<tid>" for a tier with a TTL of its own
//	                (WithTierTTL), whose epochs are that TTL's.
//	G e:<pid>       sorted set of the segments ("<ep>" or "<ep>:<tid>") pod
//	                <pid> has a log for
//	G a             sorted set "<seg>" -> when the log expires (ms; +inf
//	                without TTL), oldest first: what expiry drains
//	G pc            hash pid -> entries the pod holds in the group
//	G s             hash of counters: keys, entries, admissions, evictions,
//	                removals
//	M pods          hash pod name -> pod id (1..2^24-1), never reassigned
//	M tiers         hash tier name -> tier id (1..255), never reassigned
//	M podseq, M tierseq  counters allocating the ids
//	M gen           the registry's generation, a token made when it is
//	                created: ids cached under another generation are void
//	M buckets       the bucket count per group every client must use
//
// An epoch is a quarter of the TTL (0 when TTL is 0: one epoch). A record
// carries its epoch mod 256, so expiring an old epoch's log drops a pod's
// records of a key only when none of them (of the tiers that log covers)
// was stored in a later epoch: an entry expires between TTL and 1.25 TTL
// after its last store, at the first write to its group after that. A
// byte orders epochs only within 128 of each other; a log older than that
// (its group had no write for that long, or expiry is behind) is judged
// against the current epoch instead (drain, in the Lua prelude). An add
// expires before it stores, so expiry never meets the call's own records.
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
// group's prefix G, ARGV[2] the group's bucket count, and KEYS[1] the
// group's counters key (it routes the call in a cluster). The scripts name
// the buckets themselves rather than take them as KEYS: passing 512 keys
// costs the server ~1 ms, naming them in Lua ~0.2 ms, and every key of a
// group is in its slot.
const luaPrelude = `
local P, NB = ARGV[1], tonumber(ARGV[2])
-- FRESH: a record this many epochs old or younger may not have expired
-- (a TTL is 4 epochs, and a log expires after its epoch ends).
local FRESH = 6

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function count(field, n)
  if n ~= 0 then redis.call('HINCRBY', KEYS[1], field, n) end
end

local function u16(n)
  return string.char(math.floor(n / 256), n % 256)
end

-- bucket is the name of the bucket holding block k (8 bytes).
local function bucket(k)
  local a, b, c, d = string.byte(k, 5, 8)
  return P .. 'k' .. struct.pack('>I4', (((a * 256 + b) * 256 + c) * 256 + d) % NB)
end

-- locate returns where block k's run starts in bucket value v and its
-- record count, or nil. string.find does the search; the walk over the
-- runs' lengths rejects a match that is not at a run's start.
local function locate(v, k)
  local i, from = 1, 1
  while true do
    local at = string.find(v, k, from, true)
    if not at then return nil end
    while i < at do
      local h, l = string.byte(v, i + 8, i + 9)
      i = i + 10 + 5 * (h * 256 + l)
    end
    if i == at then
      local h, l = string.byte(v, i + 8, i + 9)
      return at, h * 256 + l
    end
    from = i
  end
end

-- find_rec returns the position of the first of the n records from r0
-- that starts with ent (pod id and tier, 4 bytes), or nil.
local function find_rec(v, ent, r0, n)
  local last, j = r0 + 5 * n - 5, r0
  while true do
    j = string.find(v, ent, j, true)
    if not j or j > last then return nil end
    if (j - r0) % 5 == 0 then return j end
    j = j + 1
  end
end

-- A script reads the buckets it touches with one MGET (load) and writes
-- them back with one MSET, and one DEL for those left empty (flush), at
-- its end: a redis.call costs about a microsecond of server time, and a GET
-- and a SET per bucket were most of an add's. cache holds the values read
-- or put ('' when absent), dirty the buckets put since the last flush.
-- CHUNK bounds the names one unpack spreads into a command's arguments
-- (Lua's C stack holds about 8000).
local CHUNK = 4000
local cache, dirty = {}, {}

-- want adds bucket bk to list if it is not cached yet, and marks it
-- cached, so that a bucket named twice is read once: each value read
-- crosses into Lua, where Redis hashes every byte.
local function want(list, bk)
  if cache[bk] == nil then
    cache[bk] = ''
    list[#list + 1] = bk
  end
end

-- fetch reads the buckets of list into the cache, CHUNK names per MGET.
local function fetch(list)
  for lo = 1, #list, CHUNK do
    local hi = math.min(lo + CHUNK - 1, #list)
    local vs = redis.call('MGET', unpack(list, lo, hi))
    for j = lo, hi do cache[list[j]] = vs[j - lo + 1] or '' end
  end
end

-- load reads the buckets of keys (8 bytes each) not in the cache, and
-- returns each key's bucket name in order.
local function load(keys)
  local names, list = {}, {}
  for i = 1, #keys, 8 do
    local bk = bucket(string.sub(keys, i, i + 7))
    names[#names + 1] = bk
    want(list, bk)
  end
  fetch(list)
  return names
end

-- load_named is load for the keys whose bucket names the client sent as
-- ARGV[from] to ARGV[to], one per key in order: naming them here costs
-- more (~0.4 us a name) than receiving them.
local function load_named(from, to)
  local list = {}
  for j = from, to do want(list, ARGV[j]) end
  fetch(list)
end

-- put sets bucket bk's new value ('' deletes it), written by flush.
local function put(bk, v)
  cache[bk], dirty[bk] = v, true
end

-- flush writes the buckets put since the last flush. A bucket is SET
-- whole (MSET) rather than APPENDed to, which would leave a string up to
-- twice its length.
local function flush()
  local sets, dels = {}, {}
  for bk in pairs(dirty) do
    local v = cache[bk]
    if v == '' then
      dels[#dels + 1] = bk
    else
      sets[#sets + 1] = bk
      sets[#sets + 1] = v
    end
  end
  dirty = {}
  for lo = 1, #sets, CHUNK do
    redis.call('MSET', unpack(sets, lo, math.min(lo + CHUNK - 1, #sets)))
  end
  for lo = 1, #dels, CHUNK do
    redis.call('DEL', unpack(dels, lo, math.min(lo + CHUNK - 1, #dels)))
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

-- drop_pod drops the records of pod pb from block k, in bucket bk (loaded):
-- of tier tid only when
-- tid is given, otherwise of every tier not in special (a set of tier ids;
-- nil: every tier). When expiring (x, see drain), nothing is dropped if one
-- of those records was stored after the log's epoch. Returns the entries
-- (tiers) that went, whether the block did, and whether k must be logged
-- again (x.relog).
local function drop_pod(k, bk, pb, tid, special, x)
  local v = cache[bk]
  if v == '' then return 0, false, false end
  local at, n = locate(v, k)
  if not at then return 0, false, false end
  local r0 = at + 10
  local keep, mine, seen, dropped = {}, {}, {}, 0
  local age = nil -- the youngest of the records, in epochs before x.cur
  for r = r0, r0 + 5 * n - 5, 5 do
    local rec = string.sub(v, r, r + 4)
    local t = string.byte(rec, 4)
    local m = string.sub(rec, 1, 3) == pb
    if m then
      if tid then
        m = t == tid
      elseif special then
        m = not special[t]
      end
    end
    if m then
      local e = string.byte(rec, 5)
      if x and not x.old then
        local d = (e - x.since) % 256
        if d >= 1 and d < 128 then return 0, false, false end
      elseif x then
        local a = (x.cur - e) % 256
        if a < FRESH and (not age or a < age) then age = a end
      end
      mine[#mine + 1] = rec
      if not seen[t] then
        seen[t] = true
        dropped = dropped + 1
      end
    else
      keep[#keep + 1] = rec
    end
  end
  if dropped == 0 then return 0, false, false end
  local e = r0 + 5 * n
  local relog = false
  if age then
    -- An old log (see drain) and a record that looks fresh: it may be, or
    -- it may be 256 epochs older. Keep the pod's records, stamped with
    -- the fresh epoch so that they agree, and have k logged again in the
    -- current epoch, whose log compares them exactly.
    local ep = string.char((x.cur - age) % 256)
    for i, rec in ipairs(mine) do
      keep[#keep + 1] = string.sub(rec, 1, 4) .. ep
    end
    dropped, relog = 0, true
  end
  if #keep == 0 then
    put(bk, string.sub(v, 1, at - 1) .. string.sub(v, e))
    return dropped, true, false
  end
  put(bk, string.sub(v, 1, at + 7) .. u16(#keep) .. table.concat(keep) .. string.sub(v, e))
  return dropped, false, relog
end

-- drain pops batches from the log seg ("<pid>:<ep>" or "<pid>:<ep>:<tid>")
-- until it has taken budget keys or the log is empty, and drops the pod's
-- records of their keys. When expiring (x: now, the tiers with TTLs of
-- their own in special and their epoch lengths in widths, the others' in
-- width), it drops only those of the log's tiers not stored since the
-- log's epoch. Returns the entries and blocks that went and the keys
-- taken.
--
-- Records carry their epoch mod 256, which tells a later store from an
-- earlier one only within 128 epochs. A log older than that (no write to
-- the group for that long) is judged against the current epoch instead:
-- a pod's records of a key go unless one was stored in the last FRESH
-- epochs (unexpired, or 256n epochs older: a byte cannot tell), and the
-- keys kept are logged again in the current epoch.
local function drain(seg, budget, x)
  local c = string.find(seg, ':', 1, true)
  local pid, rest = string.sub(seg, 1, c - 1), string.sub(seg, c + 1)
  local c2 = string.find(rest, ':', 1, true)
  local ep, tid = rest, nil
  if c2 then ep, tid = string.sub(rest, 1, c2 - 1), tonumber(string.sub(rest, c2 + 1)) end
  ep = tonumber(ep)
  local pb = pod_bytes(pid)
  local sp, w, cur = nil, 0, 0
  if x then
    sp = x.special
    w = x.width
    if tid then w = x.widths[tid] or 0 end
    if w > 0 then cur = math.floor(x.now / w) end
    x = {since = ep % 256, cur = cur % 256, old = w > 0 and cur - ep >= 128}
  else
    tid = nil
  end
  local lk = P .. 'l:' .. seg
  local entries, blocks, taken = 0, 0, 0
  local relog, batches = {}, {}
  while taken < budget do
    local keys = redis.call('LPOP', lk)
    if not keys then break end
    taken = taken + #keys / 8
    batches[#batches + 1] = keys
  end
  local keys = table.concat(batches)
  local names = load(keys)
  for i = 1, #keys, 8 do
    local k = string.sub(keys, i, i + 7)
    local e, gone, again = drop_pod(k, names[(i + 7) / 8], pb, tid, sp, x)
    entries = entries + e
    if gone then blocks = blocks + 1 end
    if again then relog[#relog + 1] = k end
  end
  if relog[1] then
    -- The same tiers' log of the current epoch, expiring one epoch after
    -- this one would have (the TTL is the same).
    local sfx = tostring(cur)
    if tid then sfx = sfx .. ':' .. tid end
    redis.call('RPUSH', P .. 'l:' .. pid .. ':' .. sfx, table.concat(relog))
    if redis.call('ZADD', P .. 'e:' .. pid, cur, sfx) == 1 then
      local ends = tonumber(redis.call('ZSCORE', P .. 'a', seg)) + (cur - ep) * w
      redis.call('ZADD', P .. 'a', ends, pid .. ':' .. sfx)
    end
  end
  if redis.call('EXISTS', lk) == 0 then
    redis.call('ZREM', P .. 'a', seg)
    redis.call('ZREM', P .. 'e:' .. pid, rest)
  end
  uncount_pod(pid, entries)
  return entries, blocks, taken
end
`

// addScript: KEYS group stats; ARGV G, bucket count, pod id, pod id (3
// bytes), tier id (1 byte), keys (8 bytes each), epoch length ms (0: one
// epoch), ttl ms of the tier (0: no expiry), the tier id when the tier has
// a TTL of its own (else 0), keys to expire at most (whole batches: it may
// go over by one), the ids of the tiers with TTLs of their own (1 byte
// each), the epoch length of the other tiers, then those tiers' epoch
// lengths in the order of their ids, then the bucket name of each key.
// Returns the number of entries created.
//
// It expires before it stores, so that expiry never meets the records the
// call stores, and it stores all or nothing: every bucket's new value is
// made before the first is written, and a block already holding 65535
// records fails the call (after writing what expiry dropped). It reads
// every bucket it touches with one MGET and writes them back with one MSET
// (see load and flush), a few commands per call whatever the keys.
var addScript = newScript("add", `
local pid, ent, keys = ARGV[3], ARGV[4] .. ARGV[5], ARGV[6]
local width, ttl, own, budget = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local now = now_ms()
-- Drain up to budget keys of the oldest expired logs: more than an add
-- logs, so expiry keeps up with the stores.
local old = redis.call('ZRANGEBYSCORE', P .. 'a', '-inf', now, 'LIMIT', 0, 8)
if old[1] then
  local x = {now = now, special = {}, width = tonumber(ARGV[12]), widths = {}}
  for i = 1, #ARGV[11] do
    local t = string.byte(ARGV[11], i)
    x.special[t], x.widths[t] = true, tonumber(ARGV[12 + i])
  end
  local e, kk = 0, 0
  for _, seg in ipairs(old) do
    if budget <= 0 then break end
    local de, dk, taken = drain(seg, budget, x)
    e, kk, budget = e + de, kk + dk, budget - taken
  end
  count('entries', -e)
  count('evictions', e)
  count('keys', -kk)
end
local ep = 0
if width > 0 then ep = math.floor(now / width) end
local rec = ent .. string.char(ep % 256)
local added, blocks = 0, 0
local named = 12 + #ARGV[11]
load_named(named + 1, named + #keys / 8)
local vals = {}
for i = 1, #keys, 8 do
  local k = string.sub(keys, i, i + 7)
  local bk = ARGV[named + (i + 7) / 8]
  local v = vals[bk] or cache[bk]
  local at, n = locate(v, k)
  if not at then
    -- A new block: its run goes at the bucket's end.
    v = v .. k .. '\0\1' .. rec
    added, blocks = added + 1, blocks + 1
  else
    if n >= 65535 then
      flush()
      return redis.error_reply('ERR kvtrack: a block holds 65535 references')
    end
    local r0 = at + 10
    if not find_rec(v, ent, r0, n) then added = added + 1 end
    local e = r0 + 5 * n
    v = string.sub(v, 1, at + 7) .. u16(n + 1) .. string.sub(v, r0, e - 1) .. rec .. string.sub(v, e)
  end
  vals[bk] = v
end
for bk, v in pairs(vals) do put(bk, v) end
flush()
local sfx = tostring(ep)
if own > 0 then sfx = sfx .. ':' .. own end
local seg = pid .. ':' .. sfx
redis.call('RPUSH', P .. 'l:' .. seg, keys)
local ends = '+inf'
if ttl > 0 then ends = (ep + 1) * width + ttl end
if redis.call('ZADD', P .. 'e:' .. pid, ep, sfx) == 1 then
  redis.call('ZADD', P .. 'a', ends, seg)
end
if added > 0 then redis.call('HINCRBY', P .. 'pc', pid, added) end
count('entries', added)
count('admissions', added)
count('keys', blocks)
return added
`)

// removeScript: KEYS group stats; ARGV G,
// bucket count, pod id, pod id (3 bytes), tier id (1 byte), keys, then the
// bucket name of each key. Drops one
// reference (the oldest record) per key. Returns the number of entries
// dropped.
var removeScript = newScript("remove", `
local pid, ent, keys = ARGV[3], ARGV[4] .. ARGV[5], ARGV[6]
local removed, blocks = 0, 0
load_named(7, 6 + #keys / 8)
for i = 1, #keys, 8 do
  local k = string.sub(keys, i, i + 7)
  local bk = ARGV[6 + (i + 7) / 8]
  local v = cache[bk]
  local at, n = nil, 0
  if v ~= '' then at, n = locate(v, k) end
  local r0 = at and at + 10
  local j = at and find_rec(v, ent, r0, n)
  if j then
    local e = r0 + 5 * n
    if n == 1 then
      put(bk, string.sub(v, 1, at - 1) .. string.sub(v, e))
      removed, blocks = removed + 1, blocks + 1
    else
      v = string.sub(v, 1, at + 7) .. u16(n - 1) .. string.sub(v, r0, j - 1) .. string.sub(v, j + 5)
      put(bk, v)
      if not find_rec(v, ent, r0, n - 1) then removed = removed + 1 end
    end
  end
end
flush()
uncount_pod(pid, removed)
count('entries', -removed)
count('removals', removed)
count('keys', -blocks)
return removed
`)

// clearPodScript: KEYS group stats; ARGV G, bucket count, pod id, keys.
// Drains about that many keys of the pod's oldest log and returns how many logs
// remain, so a caller loops until 0 and no call blocks the server for
// long.
var clearPodScript = newScript("clear_pod", `
local pid = ARGV[3]
local segs = redis.call('ZRANGE', P .. 'e:' .. pid, 0, 0)
if not segs[1] then return 0 end
local e, k = drain(pid .. ':' .. segs[1], tonumber(ARGV[4]))
flush()
count('entries', -e)
count('removals', e)
count('keys', -k)
return redis.call('ZCARD', P .. 'e:' .. pid)
`)

// clearScript: KEYS group stats; ARGV G, bucket count, keys.
// clearPodScript for whichever pod has the oldest log in the group;
// returns the logs left.
var clearScript = newScript("clear", `
local segs = redis.call('ZRANGE', P .. 'a', 0, 0)
if not segs[1] then return 0 end
local e, k = drain(segs[1], tonumber(ARGV[3]))
flush()
count('entries', -e)
count('removals', e)
count('keys', -k)
return redis.call('ZCARD', P .. 'a')
`)

// internScript: KEYS M pods; ARGV M, bucket count per group, pod name,
// then tier names. Returns the pod's id, the generation, and the tiers'
// ids, allocating ids on first sight. It fails when the index was made
// with another bucket count: clients would look for blocks in the wrong
// buckets.
var internScript = newScript("intern", `
local nb = redis.call('GET', P .. 'buckets')
if not nb then
  redis.call('SET', P .. 'buckets', ARGV[2])
elseif nb ~= ARGV[2] then
  return redis.error_reply('ERR kvtrack: the index uses ' .. nb .. ' buckets per group and this client ' .. ARGV[2] .. '; configure the same redis.buckets and redis.cluster.groups on every replica')
end
local pid = redis.call('HGET', P .. 'pods', ARGV[3])
if not pid then
  pid = redis.call('INCR', P .. 'podseq')
  if pid > 16777215 then return redis.error_reply('ERR kvtrack: pod ids exhausted (2^24 names)') end
  redis.call('HSET', P .. 'pods', ARGV[3], pid)
end
local gen = redis.call('GET', P .. 'gen')
if not gen then
  -- A registry's generation: clients cache ids under it, and a server that
  -- lost its data (and so its ids) starts a new one.
  local t = redis.call('TIME')
  gen = t[1] .. '.' .. t[2] .. '.' .. redis.call('INCR', P .. 'podseq')
  redis.call('SET', P .. 'gen', gen)
end
local out = {tonumber(pid), gen}
for i = 4, #ARGV do
  local tid = redis.call('HGET', P .. 'tiers', ARGV[i])
  if not tid then
    tid = redis.call('INCR', P .. 'tierseq')
    if tid > 255 then return redis.error_reply('ERR kvtrack: tier ids exhausted (255 media)') end
    redis.call('HSET', P .. 'tiers', ARGV[i], tid)
  end
  out[#out + 1] = tonumber(tid)
end
return out
`)
