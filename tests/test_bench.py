"""The smoke run of ./dev bench: benchmarks/bench.py --quick runs every case with tiny sizes,
checks every result and writes JSON with each case's figures. Behaviour only, not speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import worker_binary

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
CASES = {"w1", "w2", "w3", "w4", "plain", "latency", "imap", "start"}


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL")}
    env["GOMAP_WORKER_BINARY"] = worker_binary()
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.exists(), f"bench.py wrote no JSON:\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def test_quick_run_measures_and_checks_every_case(tmp_path: Path) -> None:
    # The current binary stands in for the previous commit's, so the baseline column is exercised.
    proc, doc = run_bench(tmp_path, "--baseline-worker", worker_binary())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(doc["cases"]) == CASES
    for name, case in doc["cases"].items():
        assert case["check"] == "passed", (name, case["check"])
        assert case["measures"], name
        assert all(m["value"] > 0 for m in case["measures"] if m["unit"] != "MB"), (name, case["measures"])
    # Each case stands beside its baseline in the same run.
    labels = {name: " | ".join(m["label"] for m in case["measures"]) for name, case in doc["cases"].items()}
    assert "Pool(2)" in labels["w1"] and "serial Python" in labels["w1"]
    assert "pure Go" in labels["w2"] and "Pool(2)" in labels["w2"]
    assert "df.apply" in labels["w3"]
    assert "ThreadPoolExecutor(64)" in labels["w4"]
    assert "baseline worker" in labels["plain"] and doc["cases"]["plain"]["ratio"] > 0
    assert "p50" in labels["latency"] and "p99" in labels["latency"]
    assert "cold" in labels["start"] and "warm" in labels["start"]
    assert doc["quick"] is True
    assert proc.stdout.count("check: passed") == len(CASES)  # the printed table


def test_only_runs_the_named_cases_and_sizes_follow_their_flags(tmp_path: Path) -> None:
    proc, doc = run_bench(tmp_path, "--only", "w1,imap", "--w1-n", "1234", "--baseline-worker", "")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(doc["cases"]) == {"w1", "imap"}
    assert doc["cases"]["w1"]["n"] == 1234 and doc["cases"]["w1"]["check"] == "passed"


def test_a_case_that_cannot_finish_fails_the_run_and_keeps_the_others(tmp_path: Path) -> None:
    # A baseline "worker" that says it is ready but takes no job never drains the queue: the case
    # reports it without figures, the run exits non-zero, and the other case's figures are written.
    fake = tmp_path / "not-a-worker"
    fake.write_text('#!/bin/sh\necho \'{"event":"ready","id":"x:1","uri":""}\'\nexec sleep 600\n')
    fake.chmod(0o755)
    proc, doc = run_bench(
        tmp_path, "--only", "plain,w1", "--plain-n", "200", "--plain-timeout", "2", "--baseline-worker", str(fake)
    )
    assert proc.returncode == 1
    assert doc["cases"]["w1"]["check"] == "passed"
    assert doc["cases"]["plain"]["check"] != "passed"
    assert "did not drain 200 jobs" in doc["cases"]["plain"]["check"]
    assert doc["cases"]["plain"]["measures"] == []


def run_script(tmp_path: Path, script: str, *args: str) -> dict:
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL")}
    env["GOMAP_WORKER_BINARY"] = worker_binary()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--json", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def test_shards_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/shards.py with tiny sizes: both shard counts drained, with each process's CPU."""
    doc = run_script(tmp_path, "shards.py", "--jobs", "2000", "--repeat", "1")
    assert sorted(r["shards"] for r in doc["rows"]) == [1, 3]
    assert all(r["jobs_per_s"] > 0 and len(r["cpu_masters"]) == 3 for r in doc["rows"])


def test_hosts_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/hosts.py with tiny sizes, on loopback (no namespaces needed): every case measured."""
    doc = run_script(
        tmp_path, "hosts.py", "--loopback", "--items", "20000", "--cpu-items", "4", "--cpu-base", "1000",
        "--hosts", "1", "--hot-items", "2000", "--repeat", "1", "--shards", "1",
    )  # fmt: skip
    assert [r["hosts"] for r in doc["rows"]] == [1]
    assert doc["rows"][0]["w1_items_per_s"] > 0 and doc["rows"][0]["cpu_items_per_s"] > 0
