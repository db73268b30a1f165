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

CHUNKS_PER_WORKER = 4
"""Automatic chunking aims at this many chunks per live worker process, so work balances."""

UNKNOWN_LENGTH_CHUNKSIZE = 1_000
"""Chunk size for an input whose length is unknown (a generator without ``__length_hint__``)."""

WINDOW_CHUNKS = 16
"""Most chunks a batch keeps submitted but not yet collected: bounds memory in Python and Redis."""

BATCH_TTL = 3600.0
"""Seconds a batch's keys outlive a client that died without cleaning up; a waiting client renews it."""

WAIT_SLICE = 1.0
"""Longest single block on the progress signal, in seconds; between blocks the client checks its
deadline, renews the TTL and looks for live workers."""

NO_WORKERS_AFTER = 3.0
"""Seconds without progress after which the client checks that a live worker takes the queue."""

COLLECT_MAX = 1000
"""Most completed chunks taken in one round trip."""

FINISH_MAX = 64
"""Once the input is exhausted and at most this many chunks are awaited, the client tells the collect
script which, so the round trip that brings the last of them also deletes the batch's keys."""

WORKERS_CACHE = 5.0
"""Seconds the list of live workers is cached (used to size chunks)."""

LOCAL_START_TIMEOUT = 30.0
"""Seconds the embedded cluster may take to start (the first Go build is separate and longer)."""

LOCAL_STOP_TIMEOUT = 10.0
"""Seconds the embedded cluster may take to stop before it is killed."""

BUILD_TIMEOUT = 900.0
"""Seconds a build of the Go worker may take (the first one downloads Go modules)."""
