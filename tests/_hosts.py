"""Worker "hosts" over real network links: a harness for tests/test_hosts.py and benchmarks/hosts.py.

``Network(hosts=2, rtt_ms=1.0)`` is a context manager that creates (as root, with iproute2):

- a "redis" network namespace, with ``lo`` up, where redis-server runs (port 6379, no persistence);
- N "host" namespaces, each joined to the redis namespace by a veth pair of its own, with a private
  /30 per link, 10.251.<i>.0/30: the redis end is 10.251.<i>.1, the host end 10.251.<i>.2. A host
  has no other address and no other route, so a worker started in it (``start_worker(i)``, with
  ``-uri redis://10.251.<i>.1:6379/``) reaches Redis over its own link only;
- one more veth, from this (the root) namespace to the redis namespace, with no delay: the way in
  for the test process's client (``redis_url``). Its /30 is picked per run in 10.250.0.0/16 among
  the prefixes no address or route of this namespace uses, so runs side by side do not clash.

**The delay.** Each host link delays traffic by ``rtt_ms / 2`` each way. With ``tc netem`` (when
the kernel has sch_netem) it is netem on both ends of the link, and ``loss`` is netem's packet
loss. This machine's kernel has no sch_netem (nor fq, nor an iptables binary), so ``delay_method``
is then ``"relay"``: a small relay process per link, in the redis namespace, listens on the link's
redis address and forwards every byte to redis-server (on 127.0.0.1 in that namespace) after
``rtt_ms / 2``, in each direction, in order. Bytes still cross the veth, so ``link_down`` really
cuts the host off. The relay's threads sleep until each piece is due (time.sleep: tens of
microseconds late), so a relayed round trip is a little longer than ``rtt_ms`` (about 1.25 ms
for 1 ms here): ``rtt(i)`` measures it (Redis PINGs from inside host i). Packet loss needs netem:
``loss > 0`` without it is refused. (The netem path has not run on this machine.)

**A Redis Cluster** (``masters=3``): three redis-servers in the redis namespace (``--cluster-enabled
yes``, joined by ``redis-cli --cluster create``), node k announcing 10.252.0.<k+1>:6379, a /32 on
the redis namespace's ``lo``. Every host, and this namespace, has a route to 10.252.0.0/24 via its
own link, so a host still reaches every node over its link only. With netem each node listens on
its address; with the relay, node k listens on port 7000 of its address and a relay per node
listens on 10.252.0.<k+1>:6379, delaying by the connection's source: ``rtt_ms / 2`` each way for a
host's address, none for the client link. ``cluster_state:ok`` on every node is waited for with a
deadline. Workers and the client use ``redis://10.252.0.<k+1>:6379/`` (``host_url``, ``redis_url``);
``socks`` are the nodes' unix sockets. ``masters=1`` (the default) is the one plain node above.

**Loopback** (``loopback=True``): where namespaces cannot be made (``available()`` says why), the
hosts are plain worker processes on this machine's loopback, against a redis-server (or a
3-master cluster) on 127.0.0.1: enough for tests that need several worker processes, not link
control. ``stop`` / ``cont`` work; ``link_down``, ``link_up``, ``set_delay``, ``rtt``, ``exec`` and
``connections`` raise HostsError saying so.

Host control: ``link_down(i)`` / ``link_up(i)`` (the redis end of host i's veth: the host's end
loses its carrier, as when a cable is cut), ``set_delay(i, rtt_ms)`` (the link's new round trip),
``stop(i)`` / ``cont(i)`` (SIGSTOP / SIGCONT to every worker process of host i).

**Clean-up.** Every process started here is stopped by its PID (workers with -lifeline, stopped by
gomap._procs; redis-server and the relays are stopped by PID too, and die with the thread that
started them if it is killed: PR_SET_PDEATHSIG). Names are unique per run (``gh<pid>-<n>-…``, from
this process's pid and a counter). ``close()`` (``__exit__``, and an atexit hook for a run that
never reaches it) removes the namespaces (the veths go with them) and the root end of the client
link. A run killed outright leaves its namespaces behind: the next Network removes those of dead
pids.

``Network.available()`` says why the harness cannot run here ("" when it can): not root, no
iproute2 or redis-server, namespace creation refused. Tests skip on it (and fail under CI=true); benchmarks fall
back to loopback and say so.

It needs only the standard library and gomap (for the worker binary and its process helpers).
Run as ``python _hosts.py relay …`` it is the relay process.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HOST_NET = "10.251.{i}.0/30"
"""Host link i's prefix: the redis end is .1, the host end .2."""
CLIENT_NETS = ipaddress.ip_network("10.250.0.0/16")
"""Where the client link's /30 is picked (one per run, unused in the root namespace)."""
REDIS_PORT = 6379
NODE_NET = ipaddress.ip_network("10.252.0.0/24")
"""A cluster's node addresses: node k announces 10.252.0.<k+1>:6379 (bus port 16379)."""
NODE_INNER_PORT = 7000
"""With the relay, node k listens on this port of its address; the relay takes 6379."""
BUS_PORT = REDIS_PORT + 10000
CLUSTER_TIMEOUT = 30.0
"""Seconds a cluster may take to be created and report cluster_state:ok on every node."""
PREFIX = "gh"
"""Namespace names are gh<pid>-<n>-redis and gh<pid>-<n>-host<i>."""
CMD_TIMEOUT = 20.0
"""Seconds an ip/tc command may take."""
START_TIMEOUT = 15.0
RELAY_QUEUE_MAX = 4 << 20
"""Bytes a relay direction holds before it stops reading (back-pressure)."""

_counter = itertools.count()
_lock = threading.Lock()


class HostsError(RuntimeError):
    """The harness could not set up or drive its namespaces; the message says which command failed."""


# ---------------------------------------------------------------------------------------------
# Commands


def _run(cmd: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command, with a deadline; with check, a failure raises HostsError with its output."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HostsError(f"{' '.join(cmd)}: {e}") from e
    if check and done.returncode != 0:
        raise HostsError(f"{' '.join(cmd)} failed (status {done.returncode}): {done.stderr.strip()}")
    return done


def _die_with_parent() -> None:
    """In a child before exec: be killed when this process ends (PR_SET_PDEATHSIG, SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (and SIGCONT) by PID, SIGKILL after timeout; reaped, pipes closed."""
    from gomap import _procs

    _procs.stop_popen(proc, signal.SIGTERM, timeout)


@functools.cache
def _probe() -> tuple[str, str]:
    """(why the harness cannot run here or "", "netem" or "relay")."""
    if os.name != "posix" or not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, this is {sys.platform}", ""
    if os.geteuid() != 0:
        return f"creating network namespaces needs root (this process runs as uid {os.geteuid()})", ""
    if shutil.which("ip") is None or shutil.which("tc") is None or shutil.which("ss") is None:
        return "iproute2 (ip, tc, ss) is not installed", ""
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH (apt-get install redis-server)", ""
    ns = f"{PREFIX}{os.getpid()}-probe{next(_counter)}"
    try:
        made = _run(["ip", "netns", "add", ns], check=False)
        if made.returncode != 0:
            return f"the kernel refused a network namespace: {made.stderr.strip()}", ""
        try:
            veth = _run(["ip", "-n", ns, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"], check=False)
            if veth.returncode != 0:
                return f"the kernel refused a veth pair: {veth.stderr.strip()}", ""
            netem = _run(["tc", "-n", ns, "qdisc", "add", "dev", "a", "root", "netem", "delay", "1ms"], check=False)
            return "", "netem" if netem.returncode == 0 else "relay"
        finally:
            _run(["ip", "netns", "del", ns], check=False)
    except HostsError as e:
        return str(e), ""


def _sweep() -> None:
    """Remove the namespaces (and client veths) of runs whose process is gone."""
    names = _run(["ip", "netns", "list"], check=False).stdout.split()
    for name in names:
        m = re.fullmatch(rf"{PREFIX}(\d+)-\d+-(redis|host\d+)", name)
        if m and not _pid_alive(int(m.group(1))):
            _run(["ip", "netns", "del", name], check=False)
    links = _run(["ip", "-o", "link", "show", "type", "veth"], check=False).stdout
    for name in re.findall(rf"^\d+: ({PREFIX}\d+-\d+)c[@:]", links, re.M):
        if not _pid_alive(int(name[len(PREFIX) :].split("-")[0])):
            _run(["ip", "link", "del", f"{name}c"], check=False)


def _used_prefixes() -> list[ipaddress.IPv4Network]:
    """The IPv4 prefixes this (root) namespace's addresses and routes cover."""
    out = _run(["ip", "-4", "-o", "addr", "show"]).stdout + _run(["ip", "-4", "route", "show", "table", "all"]).stdout
    nets = []
    for word in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", out):
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(word, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


# ---------------------------------------------------------------------------------------------
# The network


class Network:
    """A redis namespace and ``hosts`` host namespaces joined by delayed veth links, one Redis node or
    a ``masters``-node Redis Cluster; or, with ``loopback``, worker processes on loopback (module
    docstring)."""

    def __init__(
        self,
        hosts: int = 2,
        rtt_ms: float = 1.0,
        loss: float = 0.0,
        *,
        masters: int = 1,
        loopback: bool = False,
        redis_args: Sequence[str] = (),
    ) -> None:
        if not 1 <= hosts <= 250:
            raise ValueError(f"hosts must be 1 to 250, got {hosts}")
        if rtt_ms < 0 or not 0 <= loss < 100:
            raise ValueError(f"rtt_ms must be >= 0 and loss a percentage below 100, got {rtt_ms}, {loss}")
        if masters != 1 and not 3 <= masters <= 16:
            raise ValueError(f"masters must be 1 (one plain node) or 3 to 16 (a Redis Cluster), got {masters}")
        self.hosts = hosts
        self.rtt_ms = float(rtt_ms)
        self.loss = float(loss)
        self.masters = masters
        self.loopback = loopback
        self.redis_args = list(redis_args)
        with _lock:
            n = next(_counter)
        self.tag = f"{PREFIX}{os.getpid()}-{n}"
        self.redis_ns = f"{self.tag}-redis"
        self.host_ns = [f"{self.tag}-host{i}" for i in range(hosts)]
        self.client_veth = f"{self.tag}c"  # the root end of the client link (<= 15 characters)
        self.delays = [self.rtt_ms] * hosts
        self.workers: list[list[Any]] = [[] for _ in range(hosts)]  # gomap._procs.WorkerProcess per host
        self.delay_method = ""
        self.dir = ""
        self.client_addr = ""
        self.servers: list[subprocess.Popen[bytes]] = []  # redis-server per node (namespaces)
        self.relays: list[subprocess.Popen[bytes] | None] = []  # per host link (one node) or per node (cluster)
        self.local: list[Any] = []  # gomap._procs.RedisServer per node (loopback)
        self.client_net: ipaddress.IPv4Network | None = None
        self._made: list[str] = []
        self._closed = False

    @property
    def cluster(self) -> bool:
        """Whether Redis is a Redis Cluster (masters > 1)."""
        return self.masters > 1

    @property
    def redis(self) -> subprocess.Popen[bytes] | None:
        """The (first) redis-server process in the redis namespace."""
        return self.servers[0] if self.servers else None

    # -- set-up and tear-down

    @staticmethod
    def available() -> str:
        """Why the harness cannot run on this machine, or "" when it can."""
        return _probe()[0]

    def __enter__(self) -> Network:
        if self.loopback:
            if shutil.which("redis-server") is None or (self.cluster and shutil.which("redis-cli") is None):
                raise HostsError(
                    "redis-server (and redis-cli for a cluster) must be on PATH: apt-get install redis-server"
                )
            self.delay_method = "loopback"
        else:
            why, method = _probe()
            if why:
                raise HostsError(f"cannot build worker hosts here: {why}")
            if self.cluster and shutil.which("redis-cli") is None:
                raise HostsError("a Redis Cluster needs redis-cli on PATH (apt-get install redis-server)")
            self.delay_method = method
            if self.loss and method != "netem":
                raise HostsError(f"loss={self.loss}% needs tc netem, which this kernel lacks (sch_netem)")
        atexit.register(self.close)
        try:
            self._build_loopback() if self.loopback else self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        with _lock:
            _sweep()
            used = _used_prefixes()
            nets = [ipaddress.ip_network(HOST_NET.format(i=i)) for i in range(self.hosts)]
            if self.cluster:
                nets.append(NODE_NET)
            for net in nets:
                if any(net.overlaps(u) for u in used if u.prefixlen > 0):
                    raise HostsError(f"{net} is in use in this namespace (ip route): cannot use it for the hosts")
            self.client_net = self._pick_client_net(used)
            self.dir = tempfile.mkdtemp(prefix=f"gomap-{self.tag}-")
            for ns in [self.redis_ns, *self.host_ns]:
                _run(["ip", "netns", "add", ns])
                self._made.append(ns)
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            r, c = (str(a) for a in list(self.client_net.hosts())[:2])  # the redis end, the root end
            _run(["ip", "link", "add", "name", self.client_veth, "type", "veth",
                  "peer", "name", "client", "netns", self.redis_ns])  # fmt: skip
        _run(["ip", "-n", self.redis_ns, "addr", "add", f"{r}/30", "dev", "client"])
        _run(["ip", "-n", self.redis_ns, "link", "set", "client", "up"])
        _run(["ip", "addr", "add", f"{c}/30", "dev", self.client_veth])
        _run(["ip", "link", "set", self.client_veth, "up"])
        self.client_addr = r
        for i, ns in enumerate(self.host_ns):
            _run(["ip", "link", "add", "name", "uplink", "netns", ns, "type", "veth",
                  "peer", "name", f"host{i}", "netns", self.redis_ns])  # fmt: skip
            _run(["ip", "-n", self.redis_ns, "addr", "add", f"{self.redis_addr(i)}/30", "dev", f"host{i}"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.host_addr(i)}/30", "dev", "uplink"])
            _run(["ip", "-n", self.redis_ns, "link", "set", f"host{i}", "up"])
            _run(["ip", "-n", ns, "link", "set", "uplink", "up"])
            if self.cluster:  # the nodes' addresses, over this host's own link
                _run(["ip", "-n", ns, "route", "add", str(NODE_NET), "via", self.redis_addr(i), "dev", "uplink"])
            if self.delay_method == "netem":
                self._netem(i, "add")
        if not self.cluster:
            self._start_redis()
            if self.delay_method == "relay":
                for i in range(self.hosts):  # relays[i] is host i's
                    self._start_relay(i)
            return
        for k in range(self.masters):
            _run(["ip", "-n", self.redis_ns, "addr", "add", f"{self.node_addr(k)}/32", "dev", "lo"])
        _run(["ip", "route", "add", str(NODE_NET), "via", r, "dev", self.client_veth])  # goes with the veth
        for k in range(self.masters):
            self._start_node(k)
        if self.delay_method == "relay":
            for k in range(self.masters):
                self._start_node_relay(k)
        addrs = [f"{self.node_addr(k)}:{REDIS_PORT}" for k in range(self.masters)]
        self._create_cluster(["ip", "netns", "exec", self.redis_ns], addrs)

    def _build_loopback(self) -> None:
        from gomap import _procs

        if not self.cluster:
            self.local.append(_procs.RedisServer(tcp=True, args=self.redis_args))
            return
        for _ in range(self.masters):
            self.local.append(_procs.RedisServer(cluster=True, args=self.redis_args))
        self._create_cluster([], [s.address for s in self.local])

    def _create_cluster(self, prefix: list[str], addrs: list[str]) -> None:
        """redis-cli --cluster create over addrs (run with prefix, e.g. ip netns exec), then wait,
        within CLUSTER_TIMEOUT, until every node says cluster_state:ok and knows every master."""
        cli = shutil.which("redis-cli") or "redis-cli"
        _run([*prefix, cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
             timeout=CLUSTER_TIMEOUT)  # fmt: skip
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        while True:
            states = [_cluster_info(sock) for sock in self.socks]
            if all(
                s.get("cluster_state") == "ok" and s.get("cluster_known_nodes") == str(self.masters) for s in states
            ):
                return
            if time.monotonic() > deadline:
                raise HostsError(f"the {self.masters}-master cluster was not ok within {CLUSTER_TIMEOUT}s: {states}")
            time.sleep(0.05)

    def _pick_client_net(self, used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
        subnets = 1 << (30 - CLIENT_NETS.prefixlen)
        first = (os.getpid() * 131 + next(_counter) * 7) % subnets
        for k in range(subnets):
            net = ipaddress.ip_network(f"{CLIENT_NETS.network_address + 4 * ((first + k) % subnets)}/30")
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return net
        raise HostsError(f"every /30 of {CLIENT_NETS} is in use in this namespace")

    def close(self) -> None:
        """Stop every process started here (by PID) and remove the namespaces; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for host in self.workers:
            for w in host:
                try:
                    w.stop(timeout=15)
                except Exception as e:  # keep tearing down
                    errors.append(f"worker {w.pid}: {e}")
        for p in [*self.relays, *self.servers]:
            if p is not None:
                try:
                    _stop(p)
                except Exception as e:
                    errors.append(f"pid {p.pid}: {e}")
        for server in self.local:
            try:
                server.stop()
            except Exception as e:
                errors.append(f"redis-server {server.pid}: {e}")
        for ns in reversed(self._made):
            done = _run(["ip", "netns", "del", ns], check=False)
            if done.returncode != 0:
                errors.append(f"ip netns del {ns}: {done.stderr.strip()}")
        if self.client_addr and _run(["ip", "link", "show", self.client_veth], check=False).returncode == 0:
            _run(["ip", "link", "del", self.client_veth], check=False)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.close)
        if errors:
            raise HostsError("tearing down the worker hosts: " + "; ".join(errors))

    def _links(self, what: str) -> None:
        """Refuse what needs links (namespaces) when the hosts are on loopback."""
        if self.loopback:
            raise HostsError(
                f"{what} needs the hosts' network links, and these hosts are worker processes on loopback "
                f"(Network(loopback=True)): run as root with iproute2 for links"
            )

    # -- addresses

    def redis_addr(self, i: int) -> str:
        """Redis's address on host i's link (the redis namespace's end of it)."""
        return str(ipaddress.ip_network(HOST_NET.format(i=i)).network_address + 1)

    def host_addr(self, i: int) -> str:
        """Host i's only address."""
        return str(ipaddress.ip_network(HOST_NET.format(i=i)).network_address + 2)

    def node_addr(self, k: int) -> str:
        """The address cluster node k announces (a /32 on the redis namespace's lo)."""
        return str(NODE_NET.network_address + 1 + k)

    def host_url(self, i: int) -> str:
        """The Redis URL a worker on host i uses: Redis's address on that host's link; on a cluster,
        node i % masters (reached over the host's link); on loopback, the one URL."""
        if self.loopback:
            return self.redis_url
        if self.cluster:
            return f"redis://{self.node_addr(i % self.masters)}:{REDIS_PORT}/"
        return f"redis://{self.redis_addr(i)}:{REDIS_PORT}/"

    @property
    def redis_url(self) -> str:
        """The Redis URL for this (the root) namespace: the client link, without delay; on a
        cluster, node 0's address (over the client link)."""
        if self.loopback:
            return str(self.local[0].url)
        if self.cluster:
            return f"redis://{self.node_addr(0)}:{REDIS_PORT}/"
        return f"redis://{self.client_addr}:{REDIS_PORT}/"

    @property
    def socks(self) -> list[str]:
        """Each node's unix socket (namespaces do not separate the file system)."""
        if self.loopback:
            return [str(s.sock) for s in self.local]
        if self.cluster:
            return [os.path.join(self.dir, f"redis{k}.sock") for k in range(self.masters)]
        return [os.path.join(self.dir, "redis.sock")]

    @property
    def sock(self) -> str:
        """redis-server's unix socket (node 0's on a cluster)."""
        return self.socks[0]

    # -- processes

    def _spawn_redis(self, name: str, sock: str, args: Sequence[str]) -> None:
        log = os.path.join(self.dir, f"{name}.log")
        cmd = ["ip", "netns", "exec", self.redis_ns, shutil.which("redis-server") or "redis-server", *args,
               "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", self.dir,
               "--unixsocket", sock, "--unixsocketperm", "700", "--logfile", log, *self.redis_args]  # fmt: skip
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # fmt: skip
        self.servers.append(p)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(sock):
            if p.poll() is not None or time.monotonic() > deadline:
                text = Path(log).read_text(errors="replace")[-2000:] if os.path.exists(log) else ""
                raise HostsError(
                    f"{name} (redis-server) in {self.redis_ns} did not answer within {START_TIMEOUT}s: {text}"
                )
            time.sleep(0.005)

    def _start_redis(self) -> None:
        binds = [self.client_addr, "127.0.0.1"]
        if self.delay_method == "netem":
            binds += [self.redis_addr(i) for i in range(self.hosts)]
        self._spawn_redis("redis", self.sock, ["--bind", *binds, "--port", str(REDIS_PORT)])

    def _start_node(self, k: int) -> None:
        a = self.node_addr(k)
        port = NODE_INNER_PORT if self.delay_method == "relay" else REDIS_PORT
        self._spawn_redis(f"redis{k}", self.socks[k], [
            "--bind", a, "--port", str(port), "--cluster-enabled", "yes", "--cluster-config-file", f"nodes{k}.conf",
            "--cluster-node-timeout", "2000", "--cluster-port", str(BUS_PORT), "--cluster-announce-ip", a,
            "--cluster-announce-port", str(REDIS_PORT), "--cluster-announce-bus-port", str(BUS_PORT),
        ])  # fmt: skip

    def _relay(self, listen: str, to: str, delay_ms: float, by_source: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        cmd = ["ip", "netns", "exec", self.redis_ns, sys.executable, os.path.abspath(__file__), "relay",
               "--listen", listen, "--to", to, "--delay-ms", str(delay_ms)]  # fmt: skip
        for s in by_source:
            cmd += ["--source-delay", s]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)  # fmt: skip
        self.relays.append(p)
        line = _readline(p, START_TIMEOUT)
        if line.strip() != b"ready":
            raise HostsError(f"the relay on {listen} did not start within {START_TIMEOUT}s (it said {line!r})")
        return p

    def _start_relay(self, i: int) -> None:
        self._relay(f"{self.redis_addr(i)}:{REDIS_PORT}", f"127.0.0.1:{REDIS_PORT}", self.delays[i] / 2)

    def _start_node_relay(self, k: int) -> None:
        a = self.node_addr(k)
        by_source = [f"{self.host_addr(i)}={self.delays[i] / 2}" for i in range(self.hosts)]
        self._relay(f"{a}:{REDIS_PORT}", f"{a}:{NODE_INNER_PORT}", 0.0, by_source)

    def start_worker(
        self, i: int, *args: str, concurrency: int = 2, env: dict[str, str] | None = None, name: str = ""
    ) -> Any:
        """Start a gomap-worker in host i (``-uri`` its link's Redis address, ``-hostname host<i>``)
        and return it (a gomap._procs.WorkerProcess) once it takes jobs; close() stops it."""
        from gomap import _binary, _procs

        flags = ["-uri", self.host_url(i), "-hostname", name or f"host{i}", "-concurrency", str(concurrency),
                 "-connections", str(max(4, 2 * concurrency)), "-log-level", "warn", *args]  # fmt: skip
        if self.loopback:
            w = _procs.WorkerProcess(_binary.worker_binary(), flags, env=env, name=f"gomap-worker host{i}")
        else:
            w = _ns_worker_class()(
                self.host_ns[i], _binary.worker_binary(), flags, env=env, name=f"gomap-worker host{i}"
            )
        self.workers[i].append(w)
        return w

    # -- host control

    def _ends(self, i: int) -> list[tuple[str, str]]:
        return [(self.redis_ns, f"host{i}"), (self.host_ns[i], "uplink")]

    def link_down(self, i: int) -> None:
        """Cut host i off: its link's redis end goes down (the host's end loses its carrier)."""
        self._links("link_down")
        _run(["ip", "-n", self.redis_ns, "link", "set", f"host{i}", "down"])

    def link_up(self, i: int) -> None:
        """Join host i again (its addresses and routes come back with the link)."""
        self._links("link_up")
        _run(["ip", "-n", self.redis_ns, "link", "set", f"host{i}", "up"])
        if self.cluster:  # a link down took the host's route to the nodes with it
            self.exec(i, ["ip", "route", "replace", str(NODE_NET), "via", self.redis_addr(i), "dev", "uplink"])

    def set_delay(self, i: int, rtt_ms: float) -> None:
        """Give host i's link a round trip of rtt_ms (half each way)."""
        self._links("set_delay")
        self.delays[i] = float(rtt_ms)
        if self.delay_method == "netem":
            self._netem(i, "change")
            return
        if self.cluster:  # every node's relay delays host i's connections
            for relay in self.relays:
                _tell(relay, f"delay {rtt_ms / 2} {self.host_addr(i)}", f"relay of node for host {i}")
            return
        _tell(self.relays[i], f"delay {rtt_ms / 2}", f"relay of host {i}")

    def _netem(self, i: int, verb: str) -> None:
        for ns, dev in self._ends(i):
            cmd = ["tc", "-n", ns, "qdisc", verb, "dev", dev, "root", "netem", "limit", "100000",
                   "delay", f"{self.delays[i] / 2:g}ms"]  # fmt: skip
            if self.loss:
                cmd += ["loss", f"{self.loss:g}%"]
            _run(cmd)

    def stop(self, i: int) -> None:
        """Freeze host i's worker processes (SIGSTOP), as a stalled machine."""
        for w in self.workers[i]:
            w.pause()

    def cont(self, i: int) -> None:
        """Let host i's worker processes go on (SIGCONT)."""
        for w in self.workers[i]:
            w.resume()

    def exec(self, i: int, cmd: Sequence[str], timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a command inside host i (not checked: see its returncode)."""
        self._links("exec")
        return _run(["ip", "netns", "exec", self.host_ns[i], *cmd], check=False, timeout=timeout)

    def connections(self, i: int) -> int:
        """How many TCP connections to Redis are established over host i's link (from the host's end)."""
        self._links("connections")
        dst = str(NODE_NET) if self.cluster else f"{self.redis_addr(i)}:{REDIS_PORT}"
        done = self.exec(i, ["ss", "-Htn", "state", "established", "dst", dst])
        if done.returncode != 0:
            raise HostsError(f"ss in host {i} failed: {done.stderr.strip()}")
        return len(done.stdout.splitlines())

    def rtt(self, i: int, pings: int = 50, node: int = 0) -> float:
        """The median round trip, in ms, of a Redis PING from inside host i (a new connection, pings
        one after another; to cluster node ``node``). Raises HostsError when Redis cannot be reached
        from there within 5 s."""
        self._links("rtt")
        addr = self.node_addr(node) if self.cluster else self.redis_addr(i)
        done = self.exec(i, [sys.executable, os.path.abspath(__file__), "ping", addr, str(REDIS_PORT), str(pings)])
        if done.returncode != 0:
            raise HostsError(f"PING from host {i} failed: {done.stderr.strip()[-500:]}")
        return float(done.stdout.strip())


def _tell(relay: subprocess.Popen[bytes] | None, line: str, what: str) -> None:
    """Send a relay a command line and wait for its acknowledgement (the change applies from now)."""
    if relay is None or relay.stdin is None or relay.poll() is not None:
        raise HostsError(f"the {what} is not running")
    relay.stdin.write(f"{line}\n".encode())
    relay.stdin.flush()
    got = _readline(relay, CMD_TIMEOUT)
    if not got.startswith(b"delay"):
        raise HostsError(f"the {what} did not take the new delay (it said {got!r})")


def _cluster_info(sock: str) -> dict[str, str]:
    """CLUSTER INFO of the node on sock, as a dict ({} when it does not answer)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2.0)
            s.connect(sock)
            s.sendall(b"CLUSTER INFO\r\n")
            data = b""
            while True:  # a bulk string: $<n>\r\n<n bytes>\r\n
                got = s.recv(65536)
                if not got:
                    return {}
                data += got
                head, sep, rest = data.partition(b"\r\n")
                if sep and not head.startswith(b"$"):  # an error: not a cluster node, or loading
                    return {}
                if sep and len(rest) >= int(head[1:]):
                    break
    except (OSError, ValueError):
        return {}
    pairs = (line.split(":", 1) for line in rest.decode(errors="replace").splitlines() if ":" in line)
    return {k: v for k, v in pairs}


@functools.cache
def _ns_worker_class() -> type:
    """A gomap._procs.WorkerProcess whose command runs in a network namespace (imported lazily: the
    relay process, which runs this file, needs only the standard library)."""
    from gomap import _procs

    class NsWorker(_procs.WorkerProcess):
        """``ip netns exec <ns> gomap-worker …``: ip execs the program, so the PID is the worker's own."""

        def __init__(self, ns: str, binary: str, args: Sequence[str], **kwargs: Any) -> None:
            self.ns = ns
            super().__init__(binary, args, **kwargs)

        def start(self) -> None:
            if self.cmd[:3] != ["ip", "netns", "exec"]:
                self.cmd = ["ip", "netns", "exec", self.ns, *self.cmd]
            super().start()

    return NsWorker


def _readline(p: subprocess.Popen[bytes], timeout: float) -> bytes:
    """A line of p's standard output, or b"" if none comes within timeout seconds."""
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(p.stdout.readline() if p.stdout else b""), daemon=True)
    t.start()
    t.join(timeout)
    return got[0] if got else b""


def _answers(sock: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1.0)
            s.connect(sock)
            s.sendall(b"PING\r\n")
            return s.recv(1) in (b"+", b"-")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# The relay process and the PING probe (run as ``python _hosts.py relay|ping …``)


class _Pipe:
    """One direction of a relayed connection: a reader thread queues what src sends, stamped with
    when it is due (now + the delay, never before what came earlier); a writer thread sleeps until
    then and sends it to dst. time.sleep is precise to tens of microseconds, where an event loop's
    epoll timers round up to whole milliseconds."""

    def __init__(
        self, delay: Callable[[], float], src: socket.socket, dst: socket.socket, done: Callable[[], None]
    ) -> None:
        self.delay, self.src, self.dst, self.done = delay, src, dst, done
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        last = 0.0
        while True:
            try:
                data = self.src.recv(1 << 18)
            except OSError:
                data = b""
            with self.cond:
                while self.queued > RELAY_QUEUE_MAX:
                    self.cond.wait()
                last = max(time.monotonic() + self.delay(), last)
                self.queue.append((last, data))
                self.queued += len(data)
                self.cond.notify_all()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                due = self.queue[0][0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            out, end = [], False
            with self.cond:
                now = time.monotonic()
                while self.queue and self.queue[0][0] <= now:
                    data = self.queue.popleft()[1]
                    self.queued -= len(data)
                    if not data:
                        end = True
                        break
                    out.append(data)
                self.cond.notify_all()
            try:
                if out:
                    self.dst.sendall(b"".join(out))
            except OSError:
                end = True
            if end:
                self.done()
                return


class _Relay:
    """Accepts connections and relays each to the target, delayed both ways: by the delay set for
    the connection's source address, else by the default delay."""

    def __init__(self, to: tuple[str, int], delay_ms: float, by_source: dict[str, float] | None = None) -> None:
        self.to = to
        self.delay = delay_ms / 1000
        self.by_source = {ip: ms / 1000 for ip, ms in (by_source or {}).items()}

    def delay_of(self, source: str) -> float:
        return self.by_source.get(source, self.delay)

    def serve(self, server: socket.socket) -> None:
        while True:
            conn, peer = server.accept()
            threading.Thread(target=self._connect, args=(conn, str(peer[0])), daemon=True).start()

    def _connect(self, conn: socket.socket, source: str) -> None:
        try:
            up = socket.create_connection(self.to, timeout=5)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        for s in (conn, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closed = threading.Lock()

        def done() -> None:  # either direction ended: end both (Redis connections do not half-close)
            if closed.acquire(blocking=False):
                for s in (conn, up):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

        delay = functools.partial(self.delay_of, source)
        _Pipe(delay, conn, up, done)
        _Pipe(delay, up, conn, done)


def _relay_main(listen: str, to: str, delay_ms: float, source_delays: Sequence[str] = ()) -> None:
    host, port = listen.rsplit(":", 1)
    thost, tport = to.rsplit(":", 1)
    by_source = {ip: float(ms) for ip, ms in (s.split("=", 1) for s in source_delays)}
    relay = _Relay((thost, int(tport)), delay_ms, by_source)
    server = socket.create_server((host, int(port)), backlog=512)
    threading.Thread(target=relay.serve, args=(server,), daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:  # "delay <ms> [<source address>]" lines; the end of stdin ends the relay
        words = line.split()
        if len(words) in (2, 3) and words[0] == "delay":
            if len(words) == 3:
                relay.by_source[words[2]] = float(words[1]) / 1000
            else:
                relay.delay = float(words[1]) / 1000
            sys.stdout.write(f"delay {' '.join(words[1:])}\n")
            sys.stdout.flush()


def _ping(host: str, port: int, n: int) -> float:
    with socket.create_connection((host, port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(n + 1):
            t0 = time.perf_counter()
            s.sendall(b"PING\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    raise OSError("connection closed")
                got += chunk
            times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return times[len(times) // 2] * 1000


def _main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(prog="_hosts.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay")
    r.add_argument("--listen", required=True)
    r.add_argument("--to", required=True)
    r.add_argument("--delay-ms", type=float, required=True)
    r.add_argument("--source-delay", action="append", default=[], help="<address>=<ms>: that source's delay")
    p = sub.add_parser("ping")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    args = ap.parse_args(argv)
    if args.cmd == "relay":
        _relay_main(args.listen, args.to, args.delay_ms, args.source_delay)
    else:
        print(f"{_ping(args.host, args.port, args.n):.4f}")


if __name__ == "__main__":
    _main(sys.argv[1:])
