"""The two Lua scripts of the online store's writes (see ``keys`` for the layout).

Each script touches the keys of one card or one merchant only (one hash tag, one cluster
slot) and runs atomically. Both are safe to run again with the same arguments. Reads are
plain commands: a script costs Redis several times the CPU of the commands it wraps.
"""

from __future__ import annotations

import hashlib

# KEYS[1] card hash; KEYS[2..] marker hashes (one per event day).
# ARGV[1] expected version ("0" = no state yet), ARGV[2] new state, ARGV[3] marker TTL (s),
# then per marker hash, in KEYS order: the number of its transactions n, then n pairs of
# txn_id and marker.
# Returns 1, or 0 when the version moved since the caller read it (another writer won:
# re-read and recompute; nothing was written). Each redis.call costs ~1 µs of Lua glue,
# so the script makes as few as it can: one HSET per hash, one EXPIRE per marker hash.
CARD_SCRIPT = """
local version = redis.call('HGET', KEYS[1], 'v') or '0'
if version ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', string.format('%d', tonumber(version) + 1))
local i = 4
for k = 2, #KEYS do
  local last = i + 2 * tonumber(ARGV[i])
  for lo = i + 1, last, 1000 do
    redis.call('HSET', KEYS[k], unpack(ARGV, lo, math.min(lo + 999, last)))
  end
  redis.call('EXPIRE', KEYS[k], ARGV[3])
  i = last + 1
end
return 1
"""

# KEYS[1] merchant bucket hash; KEYS[2..] applied-id sets (one per event day).
# ARGV[1] applied-set TTL (s), ARGV[2] hourly horizon (h), ARGV[3] daily horizon (days),
# then per transaction: index into KEYS of its applied set, txn_id, epoch hour, cents,
# new-card flag ("0"/"1"). A transaction already in its applied set is skipped, so a
# redelivered batch never counts twice. Mirrors MerchantState.add exactly (increments,
# watermark, trimming of dead buckets when the watermark enters a new day). An hour
# bucket "h<hour>" counts transactions + 2^32 x new cards (keys.NEW_CARD_UNIT).
# Returns the number of transactions applied.
MERCHANT_SCRIPT = """
local key = KEYS[1]
local keep_h, keep_d = tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HGET', key, 'w')
local w = raw and tonumber(raw) or nil
local w_start = w
local H, D = string.byte('h'), string.byte('d')

local function trim(watermark)
  local hour_floor = watermark - keep_h
  local day_floor = math.floor(watermark / 24) - keep_d
  local dead = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local kind, num = string.byte(field), nil
    if kind == H then
      num = tonumber(string.sub(field, 2))
      if num and num <= hour_floor then
        dead[#dead + 1] = field
      end
    elseif kind == D then
      num = tonumber(string.sub(field, 2, -2))
      if num and num <= day_floor then
        dead[#dead + 1] = field
      end
    end
  end
  for i = 1, #dead, 500 do
    redis.call('HDEL', key, unpack(dead, i, math.min(i + 499, #dead)))
  end
end

local applied = 0
for i = 4, #ARGV, 5 do
  if redis.call('SADD', KEYS[tonumber(ARGV[i])], ARGV[i + 1]) == 1 then
    local hour_s, cents = ARGV[i + 2], ARGV[i + 3]
    local hour = tonumber(hour_s)
    local day = string.format('%d', math.floor(hour / 24))
    redis.call('HINCRBY', key, 'h' .. hour_s, ARGV[i + 4] == '1' and '4294967297' or '1')
    redis.call('HINCRBY', key, 'd' .. day .. 'n', 1)
    redis.call('HINCRBY', key, 'd' .. day .. 'c', cents)
    if w == nil or hour > w then
      if w == nil or math.floor(hour / 24) > math.floor(w / 24) then
        trim(hour)
      end
      w = hour
    end
    applied = applied + 1
  end
end
if w ~= w_start then
  redis.call('HSET', key, 'w', string.format('%d', w))
end
for k = 2, #KEYS do
  redis.call('EXPIRE', KEYS[k], ARGV[1])
end
return applied
"""


def sha1(script: str) -> str:
    """The SHA1 that EVALSHA names ``script`` by (computed locally, no round trip)."""
    return hashlib.sha1(script.encode("utf-8"), usedforsecurity=False).hexdigest()


CARD_SHA = sha1(CARD_SCRIPT)
MERCHANT_SHA = sha1(MERCHANT_SCRIPT)
