"""Every tunable of gomap in one place, each with what it is for.

The values here are used when neither an argument nor the environment says otherwise.
"""

from __future__ import annotations

NAMESPACE = "goworker:"
"""Prefix of every Redis key (goworker's recipe default). ``GOMAP_NAMESPACE`` overrides it."""

URL_ENV = ("GOMAP_REDIS_URL", "REDIS_URL")
"""Environment variables read, in order, for the Redis URL when none is given."""

NAMESPACE_ENV = "GOMAP_NAMESPACE"
"""Environment variable read for the namespace when none is given."""

MAX_CHUNKSIZE = 10_000
"""Largest automatic chunk size: big enough that per-chunk costs vanish, small enough for a smooth bar."""

CHUNKS_PER_SLOT = 4
"""Automatic chunking aims at this many chunks per slot of the live pool (the jobs its worker
processes run at once, added up), so work balances across slots."""

UNKNOWN_LENGTH_CHUNKSIZE = 1_000
"""Chunk size for an input whose length is unknown (a generator without ``__length_hint__``)."""

WINDOW_CHUNKS = 16
"""Most chunks a batch keeps submitted but not yet collected: bounds memory in Python and Redis."""

BATCH_TTL = 3600.0
"""Seconds a batch's keys outlive a client that died without cleaning up; a waiting client renews it."""

WAIT_SLICE = 0.5
"""Longest single block on the progress signal, in seconds; between blocks the client checks its
deadline, renews the TTL and looks for live workers."""

READ_MARGIN = 0.5
"""Seconds a reply may take beyond the server-side block before the read gives up (the socket
timeout is WAIT_SLICE + READ_MARGIN). It bounds how far past ``timeout=`` a call can return while
Redis stalls."""

CONNECT_TIMEOUT = 2.0
"""Seconds a TCP or TLS connect to Redis may take before it is retried."""

STALL_TOLERANCE = 60.0
"""Seconds of continuous failure to reach Redis (a restart, a stall, a failover) that a call
without ``timeout=`` rides out before it raises ConnectError. A call with a timeout rides out
failures until its deadline."""

RETRY_FIRST = 0.05
"""First pause, in seconds, before retrying a round trip that failed on the connection; it doubles
(with jitter) up to RETRY_MAX."""

RETRY_MAX = 1.0
"""Longest pause between two retries of a failed round trip."""

CLEANUP_NOW = 1.0
"""Seconds a finish or cancel is retried in the foreground while Redis cannot be reached; then it
goes on in the background (CANCEL_RETRY) and the call returns or raises."""

CANCEL_RETRY = 60.0
"""Seconds a cancel that failed because Redis was unreachable keeps being retried in the
background, so a cancelled batch's queued chunks do not run for nobody once Redis is back."""

WAIT_FOR_WORKERS = 60.0
"""Seconds a batch that has seen a live worker waits while none is live (a rolling restart)
before it raises NoWorkersError. A batch that never saw one fails after NO_WORKERS_AFTER."""

MAX_PAYLOAD = 16 * 1024 * 1024
"""Largest chunk payload in bytes, when the live workers do not publish their own limit
(``max_payload`` in their record). A bigger chunk raises PayloadTooLarge before anything runs."""

NO_WORKERS_AFTER = 3.0
"""Seconds without progress after which the client checks that a live worker takes the queue."""

SPECULATE_DONE = 0.75
"""Backup chunks (docs/reliability.md, "A slow or frozen worker"): once every chunk of a batch is
submitted, let T be SPECULATE_FACTOR times the median time the done chunks took (from submit to
outcome), and at least SPECULATE_MIN seconds. When this share of the chunks is done, or when no
chunk has completed for T, a chunk outstanding for more than T and no longer on its queue (a
worker holds it, or it was lost) is pushed again to the head of its queue; again after 2 T, then
4 T, at most SPECULATE_MAX times (a copy can go to the very worker that froze: its wait was armed
before). Whichever run ends first gives its outcome; outcomes are keyed by the chunk's start, so
the others change nothing."""
SPECULATE_FACTOR = 3.0
SPECULATE_MIN = 1.0
SPECULATE_MAX = 3

SUBMIT_GROUP_CHUNKS = 1000
"""Most chunks pushed by one call of the submit script, so one call neither blocks Redis long nor
needs much of its memory at once (the Go client uses the same bounds)."""

SUBMIT_GROUP_BYTES = 8 << 20
"""Most bytes of chunks pushed by one call of the submit script (a bigger single chunk goes alone)."""

COLLECT_MAX = 1000
"""Most completed chunks taken in one round trip."""

WORKERS_CACHE = 5.0
"""Seconds the list of live workers is cached (used to size chunks)."""

LOCAL_START_TIMEOUT = 30.0
"""Seconds the embedded cluster may take to start (the first Go build is separate and longer)."""

LOCAL_STOP_TIMEOUT = 10.0
"""Seconds the embedded cluster may take to stop before it is killed."""

BUILD_TIMEOUT = 900.0
"""Seconds a build of the Go worker may take (the first one downloads Go modules)."""
