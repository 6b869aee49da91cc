"""Listening for the servers we run: the preview and the tracker.

A server's socket is bound here, before the server starts, so the address printed is the
address served, and an address that is taken or not this machine's is a message with what to
do, not a server's traceback. :class:`Server` runs a Starlette app under uvicorn on such a
socket, in this thread or in one of its own (tests, benchmarks).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from newsletter.errors import NewsletterError

# Host header values a loopback server answers (see allowed_hosts).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


class AddressInUse(NewsletterError):
    """Every port asked for is taken; ``holder`` is (pid, command) of a local listener, if known."""

    def __init__(self, message: str, hint: str, holder: tuple[int, str] | None) -> None:
        super().__init__(message, hint)
        self.holder = holder


def listen(host: str, ports: Iterable[int]) -> socket.socket:
    """A listening, non-blocking socket on ``host`` at the first of ``ports`` that is free.

    Raises :class:`AddressInUse` when every port is taken (naming the last one's holder when
    this machine can tell), and NewsletterError for an address that cannot be listened on.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last = None
    for port in ports:
        last = port
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                  hint="check --host: it must be an address of this machine, "
                                  "such as 127.0.0.1") from exc
        sock.listen(128)
        sock.setblocking(False)
        return sock
    holder = _holder(last) if last is not None else None
    raise AddressInUse(f"{host}:{last} is in use", "choose another --port", holder)


def probe(host: str, port: int) -> None:
    """Raise as :func:`listen` would if ``host:port`` cannot be listened on now.

    For servers that bind in processes of their own (granian's workers): the address is
    checked here, and released for them.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              hint="check --host: it must be an address of this machine, "
                              "such as 127.0.0.1") from exc
    listen(str(infos[0][4][0]), [port]).close()


def _holder(port: int) -> tuple[int, str] | None:
    from newsletter.tracking.hardening import listener

    return listener(port)


def allowed_hosts(host: str) -> list[str]:
    """Host header values to accept when listening on ``host``.

    Only the loopback names by default, so a web page elsewhere cannot read what we serve by
    pointing a name of its own at 127.0.0.1 (DNS rebinding). Listening on a wildcard address
    means any name the machine goes by.
    """
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return [*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host]


def url_for(sock: socket.socket) -> str:
    """The address a browser should open for a listening socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    elif host == "0.0.0.0":
        host = "127.0.0.1"
    return f"http://{host}:{port}/"


class Server:
    """uvicorn serving ``app`` on a bound socket.

    ``run()`` blocks (Ctrl-C stops it; uvicorn re-raises the signal afterwards);
    ``start()``/``stop()`` run it in a thread. ``on_started`` runs once it listens;
    ``on_exit`` as soon as it is asked to stop (before it waits for open requests to end).
    """

    def __init__(self, app: Any, sock: socket.socket, *,
                 on_started: Callable[[], None] | None = None,
                 on_exit: Callable[[], None] | None = None,
                 graceful_seconds: int = 3) -> None:
        import uvicorn

        outer = self

        class _Uvicorn(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if outer.on_exit is not None:
                    outer.on_exit()
                super().handle_exit(sig, frame)

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.started and outer.on_started is not None:
                    outer.on_started()

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                ws="none", timeout_graceful_shutdown=graceful_seconds)
        self.on_started = on_started
        self.on_exit = on_exit
        self.sock = sock
        self.url = url_for(sock)
        self.server = _Uvicorn(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until stopped."""
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> Server:
        """Serve from a thread; return once it listens."""
        self._thread = threading.Thread(target=self.run, name="server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (after :meth:`start`) and wait for the thread."""
        if self.on_exit is not None:
            self.on_exit()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
