"""A loopback proxy in front of Redis that can lose one reply: the fault the clients must survive.

The proxy reads RESP commands from the client and replies from Redis, pairing them in order. When
the rule matches a command, Redis still runs it, but its reply is never delivered: the proxy closes
both sides of that connection instead, as a network fault after the server acted would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable

Rule = Callable[[list[bytes], int], bool]
"""Whether to drop the reply to a command: its arguments, and how many commands with its name
(upper case) went through before it (0 for the first)."""


class _Reader:
    """Reads whole RESP values from a socket, returning each one's raw bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError
        self.buf += data

    def _line(self, pos: int) -> tuple[bytes, int]:
        while True:
            end = self.buf.find(b"\r\n", pos)
            if end >= 0:
                return bytes(self.buf[pos:end]), end + 2
            self._fill()

    def _value(self, pos: int) -> tuple[list[bytes] | bytes | None, int]:
        line, pos = self._line(pos)
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":", b"_", b"#", b",", b"("):  # RESP2 and RESP3 simple types
            return rest, pos
        if kind in (b"$", b"=", b"!"):  # bulk strings, RESP3 verbatim strings and bulk errors
            n = int(rest)
            if n < 0:
                return None, pos
            while len(self.buf) < pos + n + 2:
                self._fill()
            return bytes(self.buf[pos : pos + n]), pos + n + 2
        if kind in (b"*", b"~", b">", b"%", b"|"):  # arrays, sets, pushes; maps and attributes have pairs
            n = int(rest) * (2 if kind in (b"%", b"|") else 1)
            items: list[bytes] = []
            for _ in range(max(n, 0)):
                item, pos = self._value(pos)
                items.append(item if isinstance(item, bytes) else b"")
            return items, pos
        raise ValueError(f"not RESP: {line[:40]!r}")

    def next(self) -> tuple[bytes, list[bytes] | bytes | None]:
        """The next value: its raw bytes and its parsed form (a command's arguments)."""
        value, end = self._value(0)
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        return raw, value


class ReplyDropper:
    """A unix-socket proxy to the Redis at ``upstream`` (a unix socket path).

    ``drop(rule)`` arms a rule; the first command it matches has its reply lost, then the rule is
    spent. ``dropped`` lists the commands whose replies were lost (their names).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="gomap-proxy-")
        self.path = os.path.join(self.dir, "proxy.sock")
        self.url = f"unix://{self.path}"
        self.dropped: list[bytes] = []
        self.counts: dict[bytes, int] = {}
        self._rule: Rule | None = None
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(64)
        self._socks: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="gomap-proxy", daemon=True)
        self._thread.start()

    def drop(self, rule: Rule) -> None:
        with self._lock:
            self._rule = rule

    @property
    def armed(self) -> bool:
        with self._lock:
            return self._rule is not None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            pending: deque[bool] = deque()  # per command sent on: drop its reply?
            threading.Thread(target=self._requests, args=(client, server, pending), daemon=True).start()
            threading.Thread(target=self._replies, args=(client, server, pending), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, pending: deque[bool]) -> None:
        reader = _Reader(client)
        try:
            while True:
                raw, cmd = reader.next()
                args = cmd if isinstance(cmd, list) else []
                name = args[0].upper() if args else b""
                with self._lock:
                    seen = self.counts.get(name, 0)
                    self.counts[name] = seen + 1
                    hit = self._rule is not None and self._rule(args, seen)
                    if hit:
                        self._rule = None
                        self.dropped.append(name)
                    pending.append(hit)
                server.sendall(raw)
        except (OSError, EOFError, ValueError):
            _close(client, server)

    def _replies(self, client: socket.socket, server: socket.socket, pending: deque[bool]) -> None:
        reader = _Reader(server)
        try:
            while True:
                raw, _ = reader.next()
                if pending.popleft():
                    break  # Redis ran the command; its reply is lost with the connection
                client.sendall(raw)
        except (OSError, EOFError, ValueError, IndexError):
            pass
        _close(client, server)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks)
        _close(self._listener, *socks)  # shutdown wakes the accept() of the proxy's thread
        self._thread.join(5)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.rmdir(self.dir)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
