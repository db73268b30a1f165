"""The Python half of docs/protocol.md: key names, payloads and Lua scripts.

The Go side lives in worker/internal/protocol; tests check that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import ConfigError

VERSION = 1


def normalize_namespace(ns: str) -> str:
    """Return ``ns`` with exactly one trailing colon (``resque`` and ``resque:`` mean the same)."""
    if not ns:
        raise ConfigError("the namespace must not be empty")
    return ns if ns.endswith(":") else ns + ":"


def check_queue(name: str) -> str:
    """Reject queue names that would break Redis Cluster hash slots or worker ids."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"bad queue name {name!r}")
    if "{" in name or "}" in name:
        raise ConfigError(f"queue name {name!r}: braces are not allowed (they change Redis Cluster hash slots)")
    return name


SLOT_COUNT = 16384
MAX_SHARDS = 64
SHARD_SUFFIX = "~"


def shard_names(keys: Keys, q: str, n: int) -> list[str]:
    """The names of queue ``q``'s ``n`` shards (docs/protocol.md, "Sharded queues"; the same as
    Keys.Shards in worker/internal/protocol/shards.go): the slot space cut into ``n`` equal ranges,
    ``q`` the shard of its own range, each other range's shard the first ``q~k`` (k = 1, 2, …)
    whose key's slot is in it, in range order."""
    from redis.crc import key_slot

    n = min(max(n, 1), MAX_SHARDS)
    names: list[str | None] = [None] * n

    def range_of(name: str) -> int:
        return key_slot(keys.queue(name).encode()) * n // SLOT_COUNT

    names[range_of(q)] = q
    left, k = n - 1, 0
    while left:
        k += 1
        name = f"{q}{SHARD_SUFFIX}{k}"
        if names[r := range_of(name)] is None:
            names[r] = name
            left -= 1
    return [name for name in names if name is not None]


@dataclass(frozen=True)
class Keys:
    """Every key name of one namespace."""

    ns: str

    def queues(self) -> str:
        return self.ns + "queues"

    def queue(self, q: str) -> str:
        return self.ns + "queue:" + q

    def workers(self) -> str:
        return self.ns + "workers"

    def stat(self, name: str) -> str:
        return self.ns + "stat:" + name

    def processes(self) -> str:
        return self.ns + "gomap:workers"

    def alive(self, proc: str) -> str:
        return self.ns + "gomap:alive:" + proc

    def paused(self, q: str) -> str:
        """Exists while queue ``q`` is paused (docs/protocol.md, "Pausing a queue")."""
        return self.ns + "gomap:paused:{" + self.queue(q) + "}"

    def counter(self, name: str) -> str:
        """gomap's counters: ``requeued`` (jobs the reaper put back), ``pruned`` (dead Resque worker ids removed)."""
        return self.ns + "gomap:stat:" + name

    def failed(self) -> str:
        return self.ns + "failed"

    def heartbeat(self) -> str:
        return self.ns + "workers:heartbeat"

    def worker(self, wid: str) -> str:
        return self.ns + "worker:" + wid

    def batch_meta(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:meta"

    def batch_results(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:results"

    def batch_done(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:done"

    def batch_taken(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:taken"


def chunk_payload(function: bytes, batch: bytes, start: int, items: bytes, limit_ms: int | None = None) -> bytes:
    """The payload of one chunk; ``function`` and ``batch`` are JSON strings, ``items`` a JSON array,
    ``limit_ms`` the time limit of one item in milliseconds (None: the workers' own)."""
    return _payload(b"1", function, batch, start, b"items", items, limit_ms)


# Version 2 adds columnar chunks; workers that read them say "version": 2 (or more) in their record.
COLUMNS_VERSION = 2


def columns_payload(function: bytes, batch: bytes, start: int, columns: bytes, limit_ms: int | None = None) -> bytes:
    """The payload of one columnar chunk (docs/protocol.md, "Columnar chunks"): ``columns`` is a
    JSON array of one array per argument, all of the chunk's length; item i's arguments are the
    i-th values of the columns. The other arguments are chunk_payload's."""
    return _payload(b"2", function, batch, start, b"columns", columns, limit_ms)


def _payload(
    version: bytes, function: bytes, batch: bytes, start: int, field: bytes, data: bytes, limit_ms: int | None
) -> bytes:
    return b"".join(
        (
            b'{"class":',
            function,
            b',"args":[],"gomap":{"v":',
            version,
            b',"batch":',
            batch,
            b',"start":',
            str(start).encode(),
            b',"',
            field,
            b'":',
            data,
            b"}}" if limit_ms is None else b',"limit_ms":' + str(limit_ms).encode() + b"}}",
        )
    )


# The same text as CollectScript in worker/internal/protocol/scripts.go (a test compares them):
# KEYS done, results, meta, taken; ARGV most to pop, TTL ms (0: leave), the acknowledged starts…
# Returns the items done inside chunks still running, then start, outcome pairs; or the one
# string "lost" when the batch's meta key is gone.

COLLECT_SCRIPT = """
local meta = redis.call('HGETALL', KEYS[3])
if #meta == 0 then return {'lost'} end
local running = 0
for i = 1, #meta, 2 do
  if string.sub(meta[i], 1, 8) == 'running:' then running = running + tonumber(meta[i + 1]) end
end
local acked = {}
for i = 3, #ARGV do
  acked[ARGV[i]] = true
  redis.call('HDEL', KEYS[2], ARGV[i])
end
local starts = {}
for _, s in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  if not acked[s] then starts[#starts + 1] = s end
end
local popped = redis.call('LPOP', KEYS[1], ARGV[1])
if popped then
  for _, s in ipairs(popped) do
    if not acked[s] then starts[#starts + 1] = s end
  end
end
redis.call('DEL', KEYS[4])
for i = 1, #starts, 1000 do
  redis.call('RPUSH', KEYS[4], unpack(starts, i, math.min(i + 999, #starts)))
end
local out = {running}
for _, s in ipairs(starts) do
  out[#out + 1] = s
  out[#out + 1] = redis.call('HGET', KEYS[2], s)
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return out
"""


# The same text as SubmitScript in worker/internal/protocol/scripts.go (a test compares them):
# KEYS meta, queues, queue; ARGV TTL ms, function, queue name, items (-1: unknown), created,
# chunks before this group, client, the payloads… Returns the chunks submitted, or "lost".
# A single Redis only: on a Redis Cluster its keys are in different hash slots.

SUBMIT_SCRIPT = """
local offset = tonumber(ARGV[6])
local n = #ARGV - 7
local submitted = redis.call('HGET', KEYS[1], 'submitted')
if submitted then
  submitted = tonumber(submitted)
  if submitted >= offset + n then return submitted end
elseif offset > 0 then
  return 'lost'
else
  redis.call('HSET', KEYS[1], 'function', ARGV[2], 'queue', ARGV[3], 'items', ARGV[4],
    'created', ARGV[5], 'client', ARGV[7], 'submitted', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  submitted = 0
end
if submitted ~= offset then
  return redis.error_reply('gomap submit: ' .. submitted .. ' chunks submitted, this group starts at ' .. offset)
end
if n > 0 then
  redis.call('SADD', KEYS[2], ARGV[3])
  for i = 8, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('HSET', KEYS[1], 'submitted', offset + n)
end
return offset + n
"""


# The failed list's scripts, the same text as RemoveFailedScript and MarkRetriedScript in
# worker/internal/protocol/scripts.go (a test compares them). KEYS failed; ARGV index, the entry as
# read, then a sentinel (remove) or the rewritten entry (mark retried). Each returns 0 when the
# entry is no longer the one read.

REMOVE_FAILED_SCRIPT = """
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return redis.call('LREM', KEYS[1], 1, ARGV[3])
"""

MARK_RETRIED_SCRIPT = """
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
