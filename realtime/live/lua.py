"""The Lua scripts of live sessions: each hot event is one atomic Redis command.

Every script that needs "now" takes it from Redis ``TIME`` (one clock for
every instance), or, when tests enable it, from a frozen value stored in the
session's ``clock`` key: deadline-boundary tests are then deterministic.
All keys of a session share a hash tag, so the keys a script derives
(``answers:<index>``) live on the same Cluster slot as those it is given.
"""

from __future__ import annotations

# real_ms(): epoch milliseconds (Redis TIME); presence always uses it.
# now_ms(clock_key, use_test_clock): the clock of deadlines (frozen in tests when set).
PRELUDE = """
local function real_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function now_ms(clock_key, use_test_clock)
  if use_test_clock == '1' then
    local frozen = redis.call('GET', clock_key)
    if frozen then return tonumber(frozen) end
  end
  return real_ms()
end
"""

# Accept one answer at the edge.
# KEYS: gate, kicked, clock
# ARGV: key base, player id, question index asked, answer (JSON), grace ms, use test clock, answers ttl ms,
#       short answer limit (characters; the edge checks characters, this the UTF-8 bytes they can take),
#       word cloud limit (characters), the edge's check of the text as hosts would see it ('0' fine, '1' on
#       the deny-list, '2' not showable): word clouds, whose answers hosts see, refuse all but '0'

# -> {'ok', accepted_at} or {'err', code}
_ANSWER_ONE = """
local st = redis.call('HMGET', KEYS[1], 'status', 'qi', 'deadline', 'qtype', 'opts', 'range')
local status = st[1]
if not status then return {'err', 'not_in_question'} end
local pid = ARGV[2]
if redis.call('SISMEMBER', KEYS[2], pid) == 1 then return {'err', 'not_joined'} end
local current = tonumber(st[2])
local asked = tonumber(ARGV[3])
if status ~= 'question' then
  if status == 'lobby' or status == 'ended' then return {'err', 'not_in_question'} end
  if asked == current then return {'err', 'too_late'} end
  return {'err', 'wrong_question'}
end
if asked ~= current then return {'err', 'wrong_question'} end
local now = now_ms(KEYS[3], ARGV[6])
if now > tonumber(st[3]) + tonumber(ARGV[5]) then return {'err', 'too_late'} end
local decoded, answer = pcall(cjson.decode, ARGV[4])
if not decoded then return {'err', 'invalid_answer'} end
local qtype = st[4]
local options = {}
local option_count = 0
for _, id in ipairs(cjson.decode(st[5])) do options[id] = true; option_count = option_count + 1 end
-- an array (no other keys) of distinct ids of this question's options
local function distinct_options(ids)
  local seen = {}
  for _, id in ipairs(ids) do
    if type(id) ~= 'string' or not options[id] or seen[id] then return false end
    seen[id] = true
  end
  for k, _ in pairs(ids) do
    if type(k) ~= 'number' then return false end
  end
  return true
end
if qtype == 'single_choice' or qtype == 'true_false' or qtype == 'poll' then
  if type(answer) ~= 'string' or not options[answer] then return {'err', 'invalid_answer'} end
elseif qtype == 'ordering' then
  if type(answer) ~= 'table' or #answer ~= option_count then return {'err', 'invalid_answer'} end
  if not distinct_options(answer) then return {'err', 'invalid_answer'} end
elseif qtype == 'slider' then
  local range = cjson.decode(st[6] or '[]')
  if type(answer) ~= 'number' or #range ~= 3 then return {'err', 'invalid_answer'} end
  if answer ~= answer or answer < range[1] or answer > range[2] then return {'err', 'invalid_answer'} end
  local steps = (answer - range[1]) / range[3]
  if math.abs(steps - math.floor(steps + 0.5)) > 1e-9 * math.max(1, math.abs(steps)) then
    return {'err', 'invalid_answer'}
  end
elseif qtype == 'word_cloud' then
  if type(answer) ~= 'string' or not string.find(answer, '%S') then return {'err', 'invalid_answer'} end
  -- characters: every byte that does not continue a UTF-8 sequence starts one
  local _, chars = string.gsub(answer, '[^\\128-\\191]', '')
  if chars > tonumber(ARGV[9]) then return {'err', 'invalid_answer'} end
  if ARGV[10] == '1' then return {'err', 'answer_not_allowed'} end
  if ARGV[10] ~= '0' then return {'err', 'invalid_answer'} end
elseif qtype == 'multiple_choice' then
  if type(answer) ~= 'table' or #answer == 0 or #answer > option_count then return {'err', 'invalid_answer'} end
  if not distinct_options(answer) then return {'err', 'invalid_answer'} end
elseif qtype == 'short_answer' then
  local too_long = type(answer) == 'string' and #answer > 4 * tonumber(ARGV[8])
  if type(answer) ~= 'string' or #answer == 0 or too_long then return {'err', 'invalid_answer'} end
else
  return {'err', 'invalid_answer'}
end
local key = ARGV[1] .. 'answers:' .. current
if redis.call('HSETNX', key, pid, now .. ':' .. ARGV[4]) == 0 then return {'err', 'already_answered'} end
if redis.call('HLEN', key) == 1 then redis.call('PEXPIRE', key, ARGV[7]) end
if qtype == 'poll' then
  local tallies = ARGV[1] .. 'tallies:' .. current
  if redis.call('HINCRBY', tallies, answer, 1) == 1 then redis.call('PEXPIRE', tallies, ARGV[7]) end
end
return {'ok', now}
"""
ANSWER = PRELUDE + _ANSWER_ONE

# A turn's answers in one call: ANSWER for each, in order (KEYS and ARGV are ANSWER's, repeated per
# answer: 3 keys and 10 arguments each) -> an array of ANSWER's results. One command for the turn
# instead of one per answer: 13 µs of the edge's CPU and 2 µs of Redis's less per answer
# (100-answer batches). The turn applies atomically, as one of the orders its answers could have run in.
ANSWER_ALL = (
    PRELUDE
    + "local function answer(KEYS, ARGV)\n"
    + _ANSWER_ONE
    + """end
local results = {}
for i = 0, #KEYS / 3 - 1 do
  local keys, args = {}, {}
  for k = 1, 3 do keys[k] = KEYS[3 * i + k] end
  for a = 1, 10 do args[a] = ARGV[10 * i + a] end
  results[i + 1] = answer(keys, args)
end
return results
"""
)

# Join a session, or come back to it (player token, or the same account).
# Capacity counts the players who hold a seat: those connected (presence
# expiry in the future) and those who left or lost their instance less than
# the resume grace ago (they may come back with their token); kicked players
# are not in `online`. A returning player is never refused for capacity.
# A banned player's token or account is refused (the protocol's 'kicked' code); a kicked (not banned) one joins anew.
# With names assigned by the host (gate `names`), only a generated nickname joins anew.
# KEYS: gate, players, nicks, users, tokens, kicked, online, mailbox, banned
# ARGV: presented token hash ('' if none), new token hash, user id ('' for guests), new player id,
#       nickname key (lower-cased), player JSON, max players, presence expiry ms, mailbox max length,
#       '1' to only resume (no nickname given), resume grace ms, '1' if the nickname was generated
# -> {'joined', pid} | {'resumed', pid, player JSON, how} | {'err', code}
JOIN = (
    PRELUDE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'err', 'not_found'} end
if status == 'ended' then return {'err', 'session_ended'} end
local pid = false
local how = 'token'
if ARGV[1] ~= '' then pid = redis.call('HGET', KEYS[5], ARGV[1]) end
if not pid and ARGV[3] ~= '' then
  pid = redis.call('HGET', KEYS[4], ARGV[3])
  how = 'user'
end
if pid and redis.call('SISMEMBER', KEYS[9], pid) == 1 then return {'err', 'kicked'} end
if pid and redis.call('SISMEMBER', KEYS[6], pid) == 1 then pid = false end
if pid then
  if how == 'user' then redis.call('HSET', KEYS[5], ARGV[2], pid) end
  redis.call('ZADD', KEYS[7], ARGV[8], pid)
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[9], '*', 't', 'rejoined', 'p', pid)
  return {'resumed', pid, redis.call('HGET', KEYS[2], pid), how}
end
if ARGV[10] == '1' then return {'err', 'nickname_required'} end
if redis.call('HGET', KEYS[1], 'locked') == '1' then return {'err', 'session_locked'} end
if ARGV[12] ~= '1' and redis.call('HGET', KEYS[1], 'names') == 'assigned' then return {'err', 'names_assigned'} end
local seats_from = real_ms() - tonumber(ARGV[11])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. seats_from)
if redis.call('ZCARD', KEYS[7]) >= tonumber(ARGV[7]) then
  return {'err', 'session_full'}
end
pid = ARGV[4]
if redis.call('HSETNX', KEYS[3], ARGV[5], pid) == 0 then return {'err', 'nickname_taken'} end
redis.call('HSET', KEYS[2], pid, ARGV[6])
redis.call('HSET', KEYS[5], ARGV[2], pid)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[3], pid) end
redis.call('ZADD', KEYS[7], ARGV[8], pid)
redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[9], '*', 't', 'joined', 'p', pid)
return {'joined', pid}
"""
)

# What a client's snapshot is built from (sync, join, host, takeover).
# KEYS: snap, online, scores, clock, kicked, players, gate
# ARGV: key base, player id ('' for hosts), use test clock, '1' for the host's extra lists
# -> {now, snap JSON, online count, my scores JSON, answered current (0/1), answer count,
#     [players flat, scores flat, online members, kicked members]}
VIEW = (
    PRELUDE
    + """
local now = now_ms(KEYS[4], ARGV[3])
local snap = redis.call('GET', KEYS[1])
if not snap then return {now, false} end
local present = real_ms()
local online = redis.call('ZCOUNT', KEYS[2], '(' .. present, '+inf')
local answers = ARGV[1] .. 'answers:' .. (redis.call('HGET', KEYS[7], 'qi') or '-1')
local mine = false
local answered = 0
if ARGV[2] ~= '' then
  mine = redis.call('HGET', KEYS[3], ARGV[2])
  answered = redis.call('HEXISTS', answers, ARGV[2])
end
local count = redis.call('HLEN', answers)
if ARGV[4] ~= '1' then return {now, snap, online, mine, answered, count} end
return {
  now, snap, online, mine, answered, count,
  redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[3]),
  redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. present, '+inf'), redis.call('SMEMBERS', KEYS[5]),
}
"""
)

# The owner's periodic look at a running question (and at presence).
# KEYS: answers of the current question, online, clock, its tallies (a poll's counts so far)
# ARGV: use test clock
# -> {now, answered, connected, every connected player answered (0/1), real now, tallies (HGETALL)}
TICK = (
    PRELUDE
    + """
local now = now_ms(KEYS[3], ARGV[1])
local answered = redis.call('HLEN', KEYS[1])
local present = real_ms()
local connected = redis.call('ZCOUNT', KEYS[2], '(' .. present, '+inf')
local everyone = 0
if connected > 0 and answered >= connected then
  everyone = 1
  for _, pid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. present, '+inf')) do
    if redis.call('HEXISTS', KEYS[1], pid) == 0 then everyone = 0; break end
  end
end
return {now, answered, connected, everyone, present, redis.call('HGETALL', KEYS[4])}
"""
)

# Read the clock the scripts use. KEYS: clock; ARGV: use test clock -> epoch ms
NOW = PRELUDE + "return now_ms(KEYS[1], ARGV[1])"

# The owner's writes, fenced by its lease: nothing is written once another
# instance holds the session. KEYS: lease; ARGV: lease token, JSON list of
# commands ([["HSET", key, field, value, ...], ...]) -> 1, or 0 when fenced off
FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for _, command in ipairs(cjson.decode(ARGV[2])) do redis.call(unpack(command)) end
return 1
"""

# KEYS: lease; ARGV: token, ttl ms -> 1 if still ours (and extended)
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease; ARGV: token -> 1 if it was ours
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# First touch of a session: the gate and the initial snapshot, unless they exist.
# KEYS: gate, snap (one slot: the session's); ARGV: gate JSON object, snap JSON, ttl ms -> 1 if created
INIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for field, value in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], field, value) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""

# What a new owner resumes from, read at one instant. (A script rather than MULTI: redis-py 8.1's
# cluster transactions fail on SMEMBERS.) KEYS: snap, players, scores, kicked.
LOAD = """
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
        redis.call('SMEMBERS', KEYS[4])}
"""
