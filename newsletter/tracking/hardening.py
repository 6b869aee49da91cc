"""What keeps the tracker answering on the open internet: connection limits and timeouts that
idle or slow clients cannot exhaust, workers that die with their main process, and a clear
message when the port is still held by a tracker that did not stop.

Measured against the real server (``tests/test_tracking_hostile.py``): with granian's defaults,
about 1,000 connections that send nothing (or headers one line every few seconds) stopped it
answering at all, because each connection holds one of ``backpressure`` permits (1,024) and the
HTTP/1-or-2 sniffing of ``http="auto"`` waits for a first byte with no timeout. So:

* HTTP/1 only (the proxy in front speaks HTTP/1.1 to us), so hyper's header-read timeout runs
  from the moment a connection is accepted;
* :data:`HEADER_READ_TIMEOUT` for a request's headers, which also ends keep-alive connections
  idle for that long;
* a ``backpressure`` (connections held at once per worker) as high as the file-descriptor limit
  allows, after raising the soft limit to the hard one, so thousands of idle connections cost
  memory (a few KiB each) instead of turning people away.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

HEADER_READ_TIMEOUT = 5.0      # seconds for a request's headers, and for an idle keep-alive
LISTEN_BACKLOG = 4096          # connections the kernel queues before the server accepts them
MAX_BACKPRESSURE = 16384       # connections one worker holds at once, at most
FD_RESERVE = 256               # descriptors kept for the database, journal, logs


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def backpressure(fd_limit: int) -> int:
    """Connections one worker may hold at once with ``fd_limit`` descriptors."""
    return max(64, min(MAX_BACKPRESSURE, fd_limit - FD_RESERVE))


ORPHAN_GRACE = 10.0     # seconds an orphaned worker has to stop cleanly before it is ended


def die_with_parent(main_pid: int) -> None:
    """In a worker: get SIGTERM when the main process dies, however it dies (Linux), and
    leave at the latest :data:`ORPHAN_GRACE` seconds later.

    Without this, SIGKILL of granian's main process leaves its workers serving the port, and
    the next ``track serve`` fails with "Address already in use". SIGTERM lets the worker
    finish its requests and store its queue, as on a normal stop; the watch ends a worker that
    did not (granian's worker was seen lingering for hours after it, until a second signal).
    """
    if not sys.platform.startswith("linux") or not main_pid:
        return
    threading.Thread(target=watch_parent, args=(main_pid,), name="watch-parent",
                     daemon=True).start()
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != main_pid:  # it died before the line above: too late to be told
        os.kill(os.getpid(), signal.SIGTERM)


def watch_parent(main_pid: int, grace: float = ORPHAN_GRACE, every: float = 1.0) -> None:
    """Return never: once this process's parent is no longer ``main_pid``, wait ``grace``
    seconds for the clean stop SIGTERM began, then end the process.

    Ending it loses nothing: every hit answered is in the tracker's journal before its
    redirect, and the next tracker stores what this one had not.
    """
    while os.getppid() == main_pid:
        time.sleep(every)
    time.sleep(grace)
    os._exit(0)


def listener(port: int) -> tuple[int, str] | None:
    """The process listening on TCP ``port`` here, as (pid, command line), if we may see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                        return int(entry.name), command.decode(errors="replace").strip()
    return None
