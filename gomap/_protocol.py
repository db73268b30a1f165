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

    def batch_meta(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:meta"

    def batch_results(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:results"

    def batch_done(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:done"

    def batch_taken(self, batch: str) -> str:
        return self.ns + "gomap:{" + batch + "}:taken"


def chunk_payload(function: bytes, batch: bytes, start: int, items: bytes) -> bytes:
    """The payload of one chunk; ``function`` and ``batch`` are JSON strings, ``items`` a JSON array."""
    return b"".join(
        (
            b'{"class":',
            function,
            b',"args":[],"gomap":{"v":1,"batch":',
            batch,
            b',"start":',
            str(start).encode(),
            b',"items":',
            items,
            b"}}",
        )
    )


# The same text as CollectScript in worker/internal/protocol/scripts.go (a test compares them):
# KEYS done, results, meta, taken; ARGV most to pop, TTL ms (0: leave), the last starts…

COLLECT_SCRIPT = """
local starts = redis.call('LRANGE', KEYS[4], 0, -1)
redis.call('DEL', KEYS[4])
local popped = redis.call('LPOP', KEYS[1], ARGV[1])
if popped then
  for _, s in ipairs(popped) do starts[#starts + 1] = s end
end
local out, got = {}, {}
for _, s in ipairs(starts) do
  local v = redis.call('HGET', KEYS[2], s)
  if v then
    redis.call('HDEL', KEYS[2], s)
    got[s] = true
  end
  out[#out + 1] = s
  out[#out + 1] = v
end
if #ARGV >= 3 then
  local all = true
  for i = 3, #ARGV do
    if not got[ARGV[i]] then
      all = false
      break
    end
  end
  if all then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
    out[#out + 1] = 'finished'
    return out
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return out
"""
