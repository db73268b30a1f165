"""The Resque client, configuration, connection errors, the public surface, the codec."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import gomap
from gomap import _codec, _protocol
from gomap._client import redact, resolve_url

from .conftest import ROOT, RedisServer, wait_until

# The cases of worker/testdata/resque_vectors.rb, built natively in Python.
VECTOR_ARGS = {
    "ints": ("Archive", [35, "tar"]),
    "empty": ("Ping", []),
    "strings": ("Echo", ["a/b", "<&>", "\u2028", '\x1f\n\t"\\']),
    "floats": ("Add", [1.0, 1.5, -0.0, 2.5e-05, 0.1, 123456.789]),
    "nested": ("Store", [{"a": 1, "b": [2, 3]}, [True, False, None]]),
    "bigint": ("Big", [9007199254740993, -9223372036854775808]),
    "unicode": ("Say", ["日本語", "é 🎉"]),
}


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request, monkeypatch):
    """Run a test with orjson and with the standard-library fallback."""
    if request.param == "stdlib":
        monkeypatch.setattr(_codec, "orjson", None)
    return request.param


def test_enqueue_writes_rubys_bytes(redis_server: RedisServer, codec):
    vectors = json.loads((ROOT / "worker" / "testdata" / "resque-vectors.json").read_text())
    assert set(vectors) == set(VECTOR_ARGS)
    client = gomap.Client(redis_server.url, namespace="resque")
    r = redis_server.redis
    for name, (cls, args) in VECTOR_ARGS.items():
        client.enqueue(cls, *args, queue=f"vec_{codec}_{name}")
        assert r.lpop(f"resque:queue:vec_{codec}_{name}").decode() == vectors[name], name
        assert r.sismember("resque:queues", f"vec_{codec}_{name}")
    client.close()


def test_plain_jobs_run_on_the_go_worker(client, redis_server: RedisServer):
    r = redis_server.redis
    processed = int(r.get("goworker:stat:processed") or 0)
    client.enqueue("sampleupper", "fire and forget")
    client.enqueue("samplediv", 1, 0)
    wait_until(lambda: int(r.get("goworker:stat:processed") or 0) >= processed + 2, what="both jobs ran")
    failed = [json.loads(x) for x in r.lrange("goworker:failed", 0, -1)]
    assert any(
        f["payload"] == {"class": "samplediv", "args": [1, 0]} and f["error"] == "division by zero" for f in failed
    )
    assert client.queue_length("sampleupper") == 0


def test_workers_lists_the_live_processes(client, worker):
    live = client.workers("sampleadd")
    assert [w.id for w in live] == [worker.id]
    assert "countprimes" in live[0].functions and live[0].concurrency == 4
    assert client.workers("nobody") == []


def test_configuration_order(monkeypatch, redis_server: RedisServer):
    env = {"GOMAP_REDIS_URL": "redis://first/", "REDIS_URL": "redis://second/"}
    assert resolve_url(env) == "redis://first/"
    assert resolve_url({"REDIS_URL": "redis://second/"}) == "redis://second/"
    assert resolve_url({}) is None
    # An explicit URL beats the environment; the namespace comes from the argument, then the environment.
    c = gomap.Client(redis_server.url, environ={"GOMAP_REDIS_URL": "redis://nowhere:1/", "GOMAP_NAMESPACE": "envns"})
    assert c.url == redis_server.url and c.namespace == "envns:"
    c.close()
    c = gomap.Client(environ={"REDIS_URL": redis_server.url}, namespace="argns")
    assert c.url == redis_server.url and c.namespace == "argns:" and c.local is None
    c.close()


def test_connection_errors_name_the_url_without_its_password():
    with pytest.raises(gomap.ConnectError) as info:
        gomap.Client("redis://user:s3cret@127.0.0.1:1/0")
    assert "redis://user:xxxxx@127.0.0.1:1/0" in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(gomap.ConfigError, match="bad Redis URL"):
        gomap.Client("http://127.0.0.1/")
    assert redact("redis://:pw@h:1/2") == "redis://:xxxxx@h:1/2"
    assert redact("unix:///tmp/r.sock") == "unix:///tmp/r.sock"


def test_public_surface_is_all():
    public = {n for n in dir(gomap) if not n.startswith("_")} | {"__version__"}
    assert set(gomap.__all__) == public
    for name in gomap.__all__:
        assert getattr(gomap, name) is not None
    assert issubclass(gomap.TaskError, gomap.GomapError)
    assert all(
        issubclass(getattr(gomap, n), gomap.GomapError)
        for n in gomap.__all__
        if n.endswith("Error") and n != "TaskError"
    )
    assert issubclass(gomap.Timeout, TimeoutError) and issubclass(gomap.EncodeError, TypeError)
    # Both spellings of the card: the module is callable, and so is the gomap object.
    assert callable(gomap) and callable(gomap.gomap)
    assert gomap.gomap.map is gomap.map and gomap.gomap.function is gomap.function


def test_task_errors_pickle():
    import pickle

    e = gomap.TaskError(index=3, function="f", kind="panic", error="boom", stack="s", batch="b")
    assert pickle.loads(pickle.dumps(e)) == e and pickle.loads(pickle.dumps(e)).stack == "s"


@pytest.mark.parametrize(
    ("go_name", "py_name"),
    [
        ("CollectScript", "COLLECT_SCRIPT"),
        ("SubmitScript", "SUBMIT_SCRIPT"),
        ("RemoveFailedScript", "REMOVE_FAILED_SCRIPT"),
        ("MarkRetriedScript", "MARK_RETRIED_SCRIPT"),
    ],
)
def test_client_scripts_are_the_go_ones(go_name, py_name):
    go = (ROOT / "worker" / "internal" / "protocol" / "scripts.go").read_text()
    m = re.search(rf"const {go_name} = `(.*?)`", go, re.S)
    assert m and m.group(1) == getattr(_protocol, py_name)


def test_codec_rules(codec):
    np = pytest.importorskip("numpy")
    import datetime

    assert _codec.dumps_items([(1, 2), [3.0, None], {"k": 1, 2: "v"}], 0) == b'[[1,2],[3.0,null],{"k":1,"2":"v"}]'
    assert _codec.dumps_items([math.nan, np.float64(math.nan)], 0) == b"[null,null]"
    assert _codec.dumps_items([np.int64(5), np.float32(0.5), np.bool_(True)], 0) == b"[5,0.5,true]"
    assert _codec.dumps_items([np.array([1, 2])], 0) == b"[[1,2]]"
    assert _codec.dumps_items([datetime.datetime(2024, 1, 2, 3, 4, 5)], 0) == b'["2024-01-02T03:04:05+00:00"]'
    assert _codec.dumps_items([2**70], 0) == b"[1180591620717411303424]"
    with pytest.raises(gomap.EncodeError, match=r"item 11 \(float\).*infinity"):
        _codec.dumps_items([1.0, -math.inf], 10)
    with pytest.raises(gomap.EncodeError, match=r"item 5 \(numpy.ndarray\)"):
        _codec.dumps_items([np.array([1.0, np.inf])], 5)
    with pytest.raises(gomap.EncodeError, match=r"item 0 \(complex\)"):
        _codec.dumps_items([1j], 0)


def test_worker_source_is_found():
    from gomap import _binary

    src = _binary.worker_source()
    assert src is not None and (src / "go.mod").is_file()
    assert Path(_binary.worker_binary()).is_file()


def test_shard_names_are_the_go_ones():
    """Pinned in worker/internal/protocol/shards_test.go too: both sides name the same shards."""
    for ns, q, n, want in (
        ("goworker:", "sampleadd", 3, ["sampleadd", "sampleadd~1", "sampleadd~3"]),
        ("goworker:", "samplesleep", 4, ["samplesleep~3", "samplesleep~2", "samplesleep", "samplesleep~4"]),
        ("resque:", "mail", 2, ["mail~2", "mail"]),
    ):
        assert _protocol.shard_names(_protocol.Keys(ns), q, n) == want
    assert _protocol.shard_names(_protocol.Keys("goworker:"), "q", 0) == ["q"]
