"""Secrets, TLS and ACLs (docs/security.md), against real redis-servers and gomap-worker processes:
no output shows the password, whatever the URL; the worker, the Go and the Python clients present
client certificates; a worker that Redis rejects exits; the documented ACL users are enough."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

import gomap
from gomap import _binary
from gomap._client import redact
from gomap._procs import RedisServer, WorkerProcess

from .conftest import ROOT, wait_until

SECRET = "S3cr3t-pw"


def shows_secret(text: str, secret: str = SECRET) -> bool:
    from urllib.parse import quote

    return secret in text or quote(secret, safe="") in text


def everything_said(e: BaseException) -> str:
    """All an exception can show: its message, its repr, and the traceback with its causes."""
    return f"{e}\n{e!r}\n{''.join(traceback.format_exception(e))}"


@pytest.mark.parametrize(
    ("url", "want"),
    [
        (f"redis://user:{SECRET}@h:6379/0", "redis://user:xxxxx@h:6379/0"),
        (f"redis://:{SECRET}@h:6379", "redis://:xxxxx@h:6379"),
        (f"redis://h:6379/0?password={SECRET}&db=2", "redis://h:6379/0?password=xxxxx&db=2"),
        (f"rediss://u:{SECRET}@h/1?pass={SECRET}", "rediss://u:xxxxx@h/1?pass=xxxxx"),
        (f"unix://:{SECRET}@/tmp/redis.sock?db=1", "unix://:xxxxx@/tmp/redis.sock?db=1"),
        (f"redis://:{SECRET}@localhost:63x9", "redis://:xxxxx@localhost:63x9"),
        (f"redis://:{SECRET}@[::1:6379", "redis://:xxxxx@[::1:6379"),
        (f"redis://:ab/cd?ef#{SECRET}@h:1/0", "redis://:xxxxx@h:1/0"),
        (f"redis://h:1/?client_name=w&Password={SECRET}#", "redis://h:1/?client_name=w&Password=xxxxx#"),
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("unix:///tmp/redis.sock?db=2", "unix:///tmp/redis.sock?db=2"),
    ],
)
def test_redact_masks_every_form(url, want):
    # The same cases as Go's TestRedactedMasksEveryForm: both sides mask alike.
    assert redact(url) == want


# --- certificates, made with the openssl command ---------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a CA nobody trusts
    other_cert: str  # a client certificate it signed
    other_key: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN=gomap test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _leaf(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(
        f"{ext}\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN=gomap test {name}", cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext", cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not on PATH (apt-get install openssl)")
    d = tmp_path_factory.mktemp("certs")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(d, "other", "other-ca", "extendedKeyUsage=clientAuth")
    p = {n: str(d / n) for n in os.listdir(d)}
    return Certs(
        p["ca.crt"], p["server.crt"], p["server.key"], p["client.crt"], p["client.key"],
        p["other-ca.crt"], p["other.crt"], p["other.key"],
    )  # fmt: skip


def tls_args(c: Certs, *, client_auth: bool) -> list[str]:
    return [
        "--tls-cert-file", c.server_cert, "--tls-key-file", c.server_key, "--tls-ca-cert-file", c.ca,
        "--tls-auth-clients", "yes" if client_auth else "no",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def plain(certs) -> Iterator[RedisServer]:
    """A Redis on a loopback port with a password, and a user that may not even run INFO."""
    server = RedisServer(tcp=True, password=SECRET, args=["--user", "noperm", "on", f">{SECRET}", "~*", "+ping"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls(certs) -> Iterator[RedisServer]:
    """A Redis with a password that speaks TLS only and demands a client certificate."""
    server = RedisServer(tls=True, password=SECRET, args=tls_args(certs, client_auth=True))
    yield server
    server.stop()


def mtls_worker(server: RedisServer, c: Certs, *args: str) -> WorkerProcess:
    return WorkerProcess(
        _binary.worker_binary(),
        ["-uri", server.url, "-tls-cert", c.ca, "-tls-client-cert", c.client_cert, "-tls-client-key", c.client_key,
         "-hostname", "mtls", "-heartbeat", "200ms", "-dead-after", "1s", "-shutdown-timeout", "2s", *args],
    )  # fmt: skip


def gomap_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gomap`` as a process and return what it did, standard output and error."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "gomap", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@functools.cache
def enqueue_binary(directory: str) -> str:
    """gomap-enqueue, built from this checkout."""
    out = os.path.join(directory, "gomap-enqueue")
    subprocess.run(
        ["go", "build", "-o", out, "./cmd/gomap-enqueue"], cwd=ROOT / "worker", check=True, timeout=600,
        capture_output=True,
    )  # fmt: skip
    return out


# --- no output shows the password -------------------------------------------------------------


def test_no_message_shows_the_password(plain, mtls, certs):
    port = plain.port
    failing = {
        "bad port": (f"redis://:{SECRET}@localhost:63x9", {}, gomap.ConfigError),
        "bad scheme": (f"http://:{SECRET}@localhost:6379/", {}, gomap.ConfigError),
        "bad host": (f"redis://:{SECRET}@[::1:6379", {}, gomap.ConfigError),
        "unreachable": (f"redis://:{SECRET}@127.0.0.1:1/", {}, gomap.ConnectError),
        "wrong password": (f"redis://:wrong{SECRET}@127.0.0.1:{port}/", {}, gomap.ConnectError),
        "wrong password in the query": (f"redis://127.0.0.1:{port}/?password=wrong{SECRET}", {}, gomap.ConnectError),
        "no such database": (f"redis://:{SECRET}@127.0.0.1:{port}/99", {}, gomap.GomapError),
        "no permission": (f"redis://noperm:{SECRET}@127.0.0.1:{port}/", {}, gomap.GomapError),
        "unix socket missing": (f"unix://:{SECRET}@/nonexistent/redis.sock?db=1", {}, gomap.ConnectError),
        "TLS options on redis://": (
            f"redis://:{SECRET}@127.0.0.1:{port}/",
            {"ssl_ca_certs": certs.ca},
            gomap.ConfigError,
        ),
        "unknown CA": (
            f"rediss://:{SECRET}@127.0.0.1:{mtls.port}/",
            {"ssl_ca_certs": certs.other_ca, "ssl_certfile": certs.client_cert, "ssl_keyfile": certs.client_key},
            gomap.ConnectError,
        ),
        "no client certificate": (
            f"rediss://:{SECRET}@127.0.0.1:{mtls.port}/",
            {"ssl_ca_certs": certs.ca},
            gomap.ConnectError,
        ),
    }
    for name, (url, kwargs, kind) in failing.items():
        with pytest.raises(kind) as caught:
            gomap.Client(url, **kwargs)
        said = everything_said(caught.value)
        assert not shows_secret(said), f"{name}: {said}"
        assert not shows_secret(said, f"wrong{SECRET}"), f"{name}: {said}"

    for url in (f"redis://:{SECRET}@127.0.0.1:{port}/", f"redis://127.0.0.1:{port}/?password={SECRET}"):
        with gomap.Client(url) as client:
            assert not shows_secret(repr(client)), repr(client)
            assert "xxxxx" in repr(client)


def test_worker_errors_reach_python_without_the_password(plain):
    """NoWorkersError and UnknownFunctionError name the URL; a worker serves the Redis meanwhile."""
    worker = WorkerProcess(_binary.worker_binary(), ["-uri", plain.url, "-hostname", "sec", "-queues", "sampleadd"])
    try:
        url = f"redis://:{SECRET}@127.0.0.1:{plain.port}/?db=0"
        with gomap.Client(url) as client:
            assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]
            with pytest.raises(gomap.UnknownFunctionError) as unknown:
                gomap.map("nosuchfunction", [1], client=client, progress=False)
            with pytest.raises(gomap.NoWorkersError) as absent:
                gomap.map("sampleadd", [(1, 2)], client=client, queue="nobody", progress=False, timeout=30)
        for e in (unknown.value, absent.value):
            said = everything_said(e)
            assert not shows_secret(said), said
            assert "redis://:xxxxx@127.0.0.1" in str(e)
    finally:
        worker.stop()


def test_no_command_line_output_shows_the_password(plain, mtls, certs):
    port = plain.port
    runs = {
        # gomap worker hands its arguments to gomap-worker.
        "worker, bad port": (["worker", "-uri", f"redis://:{SECRET}@localhost:63x9"], 2, 'invalid port ":63x9"'),
        "worker, password in the query": (
            ["worker", "-uri", f"redis://127.0.0.1:{port}/?password={SECRET}"], 2, "password=xxxxx",
        ),
        "worker, wrong password": (
            ["worker", "-uri", f"redis://:wrong{SECRET}@127.0.0.1:{port}/", "-reject-timeout", "300ms"], 1,
            "redis rejected the worker",
        ),
        "worker, unknown CA": (
            ["worker", "-uri", f"rediss://:{SECRET}@127.0.0.1:{mtls.port}/", "-tls-cert", certs.other_ca,
             "-reject-timeout", "300ms"], 1, "unknown authority",
        ),
        "worker, no client certificate": (
            ["worker", "-uri", f"rediss://:{SECRET}@127.0.0.1:{mtls.port}/", "-tls-cert", certs.ca,
             "-reject-timeout", "300ms"], 1, "-tls-client-cert",
        ),
        "enqueue, bad port": (
            ["enqueue", "--url", f"redis://:{SECRET}@localhost:63x9", "sampleadd", "1", "2"], 1, "bad Redis URL",
        ),
        "enqueue, wrong password": (
            ["enqueue", "--url", f"redis://:wrong{SECRET}@127.0.0.1:{port}/", "sampleadd", "1", "2"], 1,
            "redis://:xxxxx@127.0.0.1",
        ),
        "status, wrong password in the query": (
            ["status", "--url", f"redis://127.0.0.1:{port}/?password=wrong{SECRET}"], 1, "password=xxxxx",
        ),
        "enqueue": (["enqueue", "--url", f"redis://:{SECRET}@127.0.0.1:{port}/", "sampleadd", "1", "2"], 0,
                    "at redis://:xxxxx@127.0.0.1"),
        "status": (["status", "--url", f"redis://127.0.0.1:{port}/?password={SECRET}"], 0, "password=xxxxx"),
    }  # fmt: skip
    for name, (args, code, want) in runs.items():
        out = gomap_cli(*args)
        said = out.stdout + out.stderr
        assert (out.returncode, want in said) == (code, True), f"{name}: exit {out.returncode}:\n{said}"
        assert not shows_secret(said) and not shows_secret(said, f"wrong{SECRET}"), f"{name}:\n{said}"


# --- mutual TLS -------------------------------------------------------------------------------


def test_mutual_tls(mtls, certs, tmp_path):
    """A worker, the Python client (keyword arguments or URL parameters), gomap enqueue and
    gomap-enqueue -map all present client certificates to a Redis that demands them."""
    worker = mtls_worker(mtls, certs)
    try:
        keywords = {"ssl_ca_certs": certs.ca, "ssl_certfile": certs.client_cert, "ssl_keyfile": certs.client_key}
        with gomap.Client(mtls.url, **keywords) as client:
            assert gomap.map("sampleadd", [(i, i) for i in range(100)], client=client, progress=False) == [
                2 * i for i in range(100)
            ]
        query = f"ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
        with gomap.Client(f"{mtls.url}?{query}") as client:
            assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]
            assert not shows_secret(repr(client))

        # Without verifying the server (the CA is not given): still with a client certificate.
        with gomap.Client(
            mtls.url, ssl_cert_reqs="none", ssl_certfile=certs.client_cert, ssl_keyfile=certs.client_key
        ) as client:
            assert gomap.map("sampleadd", [(2, 2)], client=client, progress=False) == [4]

        with pytest.raises(gomap.ConnectError):
            gomap.Client(mtls.url, ssl_ca_certs=certs.ca)  # no client certificate
        with pytest.raises(gomap.ConnectError):
            gomap.Client(mtls.url, ssl_ca_certs=certs.ca, ssl_certfile=certs.other_cert, ssl_keyfile=certs.other_key)

        tls = ["--tls-cert", certs.ca, "--tls-client-cert", certs.client_cert, "--tls-client-key", certs.client_key]
        out = gomap_cli("enqueue", "--url", mtls.url, *tls, "--queue", "mtlsplain", "sampleadd", "1", "2")
        assert out.returncode == 0, out.stderr
        admin = mtls.client()
        assert admin.llen("goworker:queue:mtlsplain") == 1
        admin.close()

        enqueue = enqueue_binary(str(tmp_path))
        go_tls = ["-tls-cert", certs.ca, "-tls-client-cert", certs.client_cert, "-tls-client-key", certs.client_key]
        out = subprocess.run(
            [enqueue, "-uri", mtls.url, *go_tls, "-map", "-class", "sampleadd", "[1,2]", "[3,4]"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "3\n7\n"), out.stderr
    finally:
        worker.stop()


# --- least-privilege ACL users (docs/security.md) -----------------------------------------------

WORKER_PASSWORD, CLIENT_PASSWORD, ADMIN_PASSWORD = "w-" + SECRET, "c-" + SECRET, "a-" + SECRET
OPERATOR_PASSWORD = "o-" + SECRET


def documented_acl() -> list[str]:
    """The ACL file lines of docs/security.md, with the test's passwords."""
    doc = (ROOT / "docs" / "security.md").read_text()
    lines = [line for line in re.findall(r"^user gomap-\w+ .*$", doc, re.M)]
    assert [line.split()[1] for line in lines] == ["gomap-worker", "gomap-client", "gomap-operator"], lines
    return [
        line.replace(">worker-password", f">{WORKER_PASSWORD}")
        .replace(">client-password", f">{CLIENT_PASSWORD}")
        .replace(">operator-password", f">{OPERATOR_PASSWORD}")
        for line in lines
    ]


def test_least_privilege_acl(tmp_path):
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(
        "\n".join([*documented_acl(), "user default off", f"user admin on >{ADMIN_PASSWORD} ~* &* +@all"]) + "\n"
    )
    server = RedisServer(tcp=True, args=["--aclfile", str(aclfile)])
    admin = redis.Redis(unix_socket_path=server.sock, username="admin", password=ADMIN_PASSWORD)
    base = f"127.0.0.1:{server.port}/"
    worker_url, client_url = (
        f"redis://gomap-worker:{WORKER_PASSWORD}@{base}",
        f"redis://gomap-client:{CLIENT_PASSWORD}@{base}",
    )
    flags = ["-heartbeat", "200ms", "-dead-after", "1s", "-shutdown-timeout", "1s", "-log-level", "debug"]
    binary = _binary.worker_binary()
    main = WorkerProcess(binary, ["-uri", worker_url, "-hostname", "aclmain", "-concurrency", "2", *flags])
    doomed: WorkerProcess | None = None
    try:
        with gomap.Client(client_url) as client:
            # Batches: results, a failing item, streaming, a cancelled batch.
            assert gomap.map("sampleadd", [(i, 1) for i in range(200)], client=client, progress=False) == [
                i + 1 for i in range(200)
            ]
            with pytest.raises(gomap.TaskError):
                gomap.map("samplediv", [(1, 0)], client=client, progress=False)
            assert list(gomap.imap("sampleadd", [(1, 2), (3, 4)], client=client)) == [3, 7]
            with pytest.raises(gomap.Timeout):
                gomap.map("samplesleep", [0.3] * 8, client=client, chunksize=1, timeout=0.2, progress=False)
            # Plain jobs, and both slots busy: the worker takes its waits back (CLIENT UNBLOCK).
            processed = int(admin.get("goworker:stat:processed") or 0)
            client.enqueue("samplesleep", 0.3)
            client.enqueue("samplesleep", 0.3)
            client.enqueue("sampleadd", 1, 2)
            wait_until(
                lambda: int(admin.get("goworker:stat:processed") or 0) >= processed + 3, 30, "the plain jobs ran"
            )
            assert client.functions().names() and len(client.workers()) == 1

            # A worker killed with a job in flight: the other one puts it back (the reaper).
            doomed = WorkerProcess(binary, ["-uri", worker_url, "-hostname", "acldoomed", "-queues", "aclslow",
                                            "-concurrency", "1", *flags])  # fmt: skip
            client.enqueue("samplesleep", 60, queue="aclslow")  # a minute: still running when killed
            wait_until(lambda: admin.llen("goworker:queue:aclslow") == 0, 10, "the doomed worker took the job")
            doomed.kill()
            wait_until(lambda: admin.llen("goworker:queue:aclslow") == 1, 30, "the main worker requeued its job")

        for args in (["enqueue", "--url", client_url, "sampleadd", "1", "2"], ["status", "--url", client_url]):
            out = gomap_cli(*args)
            assert out.returncode == 0, out.stderr
        enqueue = enqueue_binary(str(tmp_path))
        for args, want in (
            (["-class", "sampleadd", "5", "6"], ""),
            (["-map", "-class", "sampleadd", "[1,2]", "[3,4]"], "3\n7\n"),
        ):
            out = subprocess.run([enqueue, "-uri", client_url, *args], capture_output=True, text=True, timeout=120)
            assert (out.returncode, out.stdout) == (0, want), out.stderr

        # Operating the pool as gomap-operator: listing batches, pausing, the failed jobs.
        operator_url = f"redis://gomap-operator:{OPERATOR_PASSWORD}@{base}"
        failed = admin.llen("goworker:failed")
        assert gomap_cli("enqueue", "--url", client_url, "samplediv", "1", "0").returncode == 0
        wait_until(lambda: admin.llen("goworker:failed") == failed + 1, 30, "the plain job failed")
        for args, want in (
            (["status", "--batches"], "requeued 1"),  # the killed worker's job
            (["batches"], ""),
            (["queues", "pause", "samplediv", "--wait", "10"], "1 of 1 worker processes"),
            (["queues"], "(paused)"),
            (["queues", "resume", "samplediv", "--wait", "10"], "1 of 1 worker processes"),
            (["failed", "ls"], "samplediv"),
            (["failed", "retry", str(failed)], "retried"),
            (["failed", "rm", str(failed)], "removed"),
            (["failed", "clear"], "cleared"),
        ):
            out = gomap_cli(*args, "--url", operator_url)
            assert out.returncode == 0 and want in out.stdout, (args, out)
        denied = admin.acl_log()
        assert not denied, f"Redis denied: {denied}"
        calls = admin.info("commandstats")
        # The worker took its waits back while both slots were busy: the permission is used.
        assert calls.get("cmdstat_client|unblock", {}).get("calls", 0) > 0, sorted(calls)
    finally:
        if doomed is not None:
            doomed.stop()
        main.stop()
        admin.close()
        server.stop()
