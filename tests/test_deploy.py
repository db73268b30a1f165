"""The deployment files in deploy/ (docs/scaling.md): what can be checked without systemd as PID 1,
without docker and without a Kubernetes cluster.

- deploy/gomap-worker.service: ``systemd-analyze verify`` (where it exists) on a copy whose ExecStart
  is the real built binary; its stop timeout exceeds the -shutdown-timeout it passes; its command
  line, with REDIS_URL as its EnvironmentFile gives it, runs a worker that, on SIGTERM, puts its
  running job back within the margin the unit leaves.
- deploy/Containerfile: its build command, run here with the same environment and flags, gives a
  static ELF binary (no PT_INTERP, no PT_DYNAMIC) that starts; its final stage runs that binary as
  a numeric non-root user.
- deploy/kubernetes.yaml: its grace period exceeds the container's -shutdown-timeout; the
  container's arguments, with REDIS_URL as the Secret gives it, run a worker that answers the
  liveness probe.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gomap import _procs

from .conftest import ROOT, RedisServer, wait_until, worker_binary

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "gomap-worker.service"
CONTAINERFILE = DEPLOY / "Containerfile"
KUBERNETES = DEPLOY / "kubernetes.yaml"

SLEEP_JOB = '{"class":"samplesleep","args":[60]}'
QUEUE = "goworker:queue:samplesleep"


# --- parsing -------------------------------------------------------------------------------------

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SYSTEMD_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
}  # fmt: skip


def go_duration(text: str) -> float:
    """Seconds in a Go duration (time.ParseDuration): "20s", "1m30s", "1.5h"."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a Go duration")
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def systemd_timespan(text: str) -> float:
    """Seconds in a systemd time span: "35s", "1min 30s", "35" (seconds)."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text)
    if not parts or any(u not in _SYSTEMD_UNITS for _, u in parts):
        raise ValueError(f"{text!r} is not a systemd time span this test reads")
    return sum(float(n) * _SYSTEMD_UNITS[u] for n, u in parts)


def flag_value(args: list[str], name: str) -> str:
    """The value of -name (or --name) in a Go command line: "-name v" or "-name=v"."""
    for i, a in enumerate(args):
        key, eq, value = a.lstrip("-").partition("=")
        if a.startswith("-") and key == name:
            return value if eq else args[i + 1]
    raise AssertionError(f"the command line {args} gives no -{name}")


def with_flag(args: list[str], name: str, value: str) -> list[str]:
    """args with -name's value replaced (it must be there)."""
    flag_value(args, name)
    out = list(args)
    for i, a in enumerate(out):
        if a.lstrip("-").partition("=")[0] == name and a.startswith("-"):
            if "=" in a:
                out[i] = f"-{name}={value}"
            else:
                out[i + 1] = value
    return out


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> every value it is given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} outside any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_command(service: dict[str, list[str]]) -> list[str]:
    """The unit's ExecStart as argv, its $VARIABLES of an empty EnvironmentFile expanded to nothing."""
    (exec_start,) = service["ExecStart"]
    argv = [a for a in shlex.split(exec_start) if not re.fullmatch(r"\$\w+|\$\{\w+\}", a)]
    argv[0] = argv[0].lstrip("-@:+!")
    return argv


def unit_service() -> dict[str, list[str]]:
    return read_unit(UNIT)["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{UNIT.name}: {key}= should be set once, found {values}"
    return values[0]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The build stages of a Dockerfile-syntax file: each a list of (INSTRUCTION, rest), FROM first;
    continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    out: list[list[tuple[str, str]]] = []
    for line in lines:
        if not line.strip():
            continue
        instr, _, rest = line.strip().partition(" ")
        if instr.upper() == "FROM":
            out.append([])
        assert out, f"{path}: {line!r} before the first FROM"
        out[-1].append((instr.upper(), rest.strip()))
    return out


def expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], text)


def elf_program_header_types(path: Path) -> list[int]:
    """The p_type of each program header of an ELF file."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    bits, order = data[4], "<" if data[5] == 1 else ">"
    # e_phoff, then e_phentsize and e_phnum: offsets differ between ELF64 and ELF32.
    off_fmt, off_at, sizes_at = ("Q", 32, 54) if bits == 2 else ("I", 28, 42)
    (phoff,) = struct.unpack_from(order + off_fmt, data, off_at)
    phentsize, phnum = struct.unpack_from(order + "HH", data, sizes_at)
    return [struct.unpack_from(order + "I", data, phoff + i * phentsize)[0] for i in range(phnum)]


PT_DYNAMIC, PT_INTERP = 2, 3


def base_env(**extra: str) -> dict[str, str]:
    """A service's bare environment: PATH and what its configuration gives it, nothing of ours."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


def wait_running(r: Any, what: str) -> None:
    """The one job pushed to QUEUE has been reserved: the queue is empty and it is in flight."""

    def reserved() -> bool:
        return r.llen(QUEUE) == 0 and any(r.llen(k) == 1 for k in r.keys("goworker:gomap:inflight:*"))

    wait_until(reserved, 10, what)


# --- deploy/gomap-worker.service -----------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing: apt-get install systemd (.ci/run does)")
        pytest.skip("systemd-analyze is not installed here: the unit is checked by parsing only")
    argv = unit_command(unit_service())
    text = UNIT.read_text()
    assert f"ExecStart={argv[0]} " in text
    copy = tmp_path / UNIT.name  # verify needs ExecStart's binary to exist: the one built from worker/
    copy.write_text(text.replace(f"ExecStart={argv[0]} ", f"ExecStart={worker_binary()} ", 1))
    out = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Unknown or malformed settings are warnings, not failures: any line about the unit is one.
    assert UNIT.name not in out.stderr + out.stdout, out.stderr + out.stdout


def test_unit_stop_timeout_exceeds_the_shutdown_timeout_it_passes():
    service = unit_service()
    shutdown = go_duration(flag_value(unit_command(service), "shutdown-timeout"))
    stop = systemd_timespan(one(service, "TimeoutStopSec"))
    assert stop > shutdown + 5, f"TimeoutStopSec {stop:g}s leaves under 5s after -shutdown-timeout {shutdown:g}s"
    assert one(service, "KillSignal") == "SIGTERM"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "DynamicUser") == "yes" or service.get("User")
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")]:
        assert one(service, key) == want
    assert any(v.endswith("/etc/gomap/worker.env") for v in service["EnvironmentFile"])


def test_unit_command_line_runs_a_worker_that_stops_within_the_unit_margin(fresh_redis: RedisServer):
    """ExecStart, with REDIS_URL from the environment file and -shutdown-timeout cut to 1s: the
    worker serves REDIS_URL, and on SIGTERM puts its running job back and exits within 1s plus the
    margin the unit leaves after -shutdown-timeout (systemd's SIGKILL comes after that)."""
    service = unit_service()
    argv = unit_command(service)
    margin = systemd_timespan(one(service, "TimeoutStopSec")) - go_duration(flag_value(argv, "shutdown-timeout"))
    args = with_flag(argv[1:], "shutdown-timeout", "1s")
    w = _procs.WorkerProcess(worker_binary(), args, env=base_env(REDIS_URL=fresh_redis.url), name="unit worker")
    try:
        r = fresh_redis.redis
        assert r.hlen("goworker:gomap:workers") == 1, "the worker should have registered on REDIS_URL"
        r.rpush(QUEUE, SLEEP_JOB)
        wait_running(r, "the worker reserves the sleeping job")
        t0 = time.monotonic()
        code = w.halt(signal.SIGTERM, timeout=1 + margin)
        took = time.monotonic() - t0
    finally:
        w.stop(signal.SIGKILL)
    assert code == 0, f"exit status {code} after SIGTERM (negative: killed after {1 + margin:g}s)"
    assert took < 1 + margin
    assert [x.decode() for x in r.lrange(QUEUE, 0, -1)] == [SLEEP_JOB], "the running job should be back"
    assert r.hlen("goworker:gomap:workers") == 0, "the worker should have unregistered"


# --- deploy/Containerfile ------------------------------------------------------------------------


def container_stages() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    *_, build, final = stages(CONTAINERFILE)
    return build, final


def test_containerfile_build_command_gives_a_static_binary_that_starts(tmp_path):
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH: the Containerfile's build cannot be run here")
    build, _ = container_stages()
    env: dict[str, str] = {}
    workdir, source = "", ""
    for instr, rest in build:
        if instr == "ARG":
            name, _, default = rest.partition("=")
            env[name] = default
        elif instr == "ENV":
            env.update(dict(kv.split("=", 1) for kv in shlex.split(rest)))
        elif instr == "WORKDIR":
            workdir = rest
        elif instr == "COPY" and not rest.startswith("--"):
            src, dst = shlex.split(rest)
            assert dst in ("./", ".", workdir, workdir + "/"), f"COPY {rest}: the test maps only COPY into WORKDIR"
            source = src
    assert env.get("CGO_ENABLED") == "0" and source, "the build stage must set CGO_ENABLED=0 and COPY the source"
    (run,) = [rest for instr, rest in build if instr == "RUN" and rest.startswith("go build")]
    cmd = shlex.split(expand(run, env))
    assert "-trimpath" in cmd
    out_at = cmd.index("-o") + 1
    target = cmd[out_at]
    binary = tmp_path / "gomap-worker"
    cmd[out_at] = str(binary)
    cmd[0] = go
    build_env = {**os.environ, **env}
    done = subprocess.run(cmd, cwd=ROOT / source, env=build_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    types = elf_program_header_types(binary)
    assert PT_INTERP not in types, "the binary names a dynamic loader: it would not run FROM scratch"
    assert PT_DYNAMIC not in types, "the binary has a dynamic section: it is not static"
    version = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30, env={})
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"gomap-worker {env.get('GOMAP_VERSION', 'dev')}\n"
    # The image's own check runs the binary where the build put it.
    assert any(instr == "RUN" and rest.split()[0] == target for instr, rest in build)


def test_containerfile_final_stage_runs_the_binary_as_a_numeric_non_root_user():
    build, final = container_stages()
    base = final[0][1].split()[0]
    assert base == "scratch" or base.startswith("gcr.io/distroless/static"), base
    (run,) = [rest for instr, rest in build if instr == "RUN" and rest.startswith("go build")]
    built = shlex.split(run)[shlex.split(run).index("-o") + 1]
    copies = [shlex.split(rest) for instr, rest in final if instr == "COPY"]
    dest = {c[1]: c[2] for c in copies if c[0].startswith("--from=")}
    assert "/etc/ssl/certs/ca-certificates.crt" in dest.values(), "rediss:// needs CA certificates in the image"
    (user,) = [rest for instr, rest in final if instr == "USER"]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER {user}: numeric and not root, for runAsNonRoot"
    (entrypoint,) = [json.loads(rest) for instr, rest in final if instr == "ENTRYPOINT"]
    assert entrypoint == [dest[built]], f"ENTRYPOINT {entrypoint} is not the binary built at {built}"


# --- deploy/kubernetes.yaml ----------------------------------------------------------------------


def deployment() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: deploy/kubernetes.yaml is not checked")
    docs = [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]
    (dep,) = [d for d in docs if d.get("kind") == "Deployment"]
    return dep


def worker_container(dep: dict[str, Any]) -> dict[str, Any]:
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return container


def test_kubernetes_grace_period_exceeds_the_shutdown_timeout():
    dep = deployment()
    pod = dep["spec"]["template"]["spec"]
    container = worker_container(dep)
    shutdown = go_duration(flag_value(container["args"], "shutdown-timeout"))
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > shutdown + 5, f"grace period {grace}s leaves under 5s after -shutdown-timeout {shutdown:g}s"
    assert dep["spec"]["replicas"] == 2
    (redis_url,) = [e for e in container["env"] if e["name"] == "REDIS_URL"]
    assert "secretKeyRef" in redis_url["valueFrom"], "REDIS_URL holds a password: it comes from a Secret"
    assert {"requests", "limits"} <= container["resources"].keys()
    _, final = container_stages()
    (user,) = [rest for instr, rest in final if instr == "USER"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0], "runAsUser should be the image's USER"


def test_kubernetes_container_args_run_a_worker_that_answers_the_liveness_probe(fresh_redis: RedisServer):
    """The container's args, with REDIS_URL as the Secret gives it (and -metrics-addr moved to a free
    loopback port): the worker serves REDIS_URL, and the liveness probe's path answers 200."""
    container = worker_container(deployment())
    args = list(container["args"])
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    listen_port = int(flag_value(args, "metrics-addr").rsplit(":", 1)[1])
    assert ports.get(probe["port"], probe["port"]) == listen_port, "the probe should ask the port the metrics are on"
    port = _procs.free_port()
    args = with_flag(args, "metrics-addr", f"127.0.0.1:{port}")
    w = _procs.WorkerProcess(worker_binary(), args, env=base_env(REDIS_URL=fresh_redis.url), name="pod worker")
    try:
        assert fresh_redis.redis.hlen("goworker:gomap:workers") == 1, "the worker should have registered on REDIS_URL"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe['path']}", timeout=5) as resp:
            assert resp.status == 200
            assert b"# TYPE" in resp.read()
    finally:
        w.stop()
