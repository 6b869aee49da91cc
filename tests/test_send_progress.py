"""`newsletter send` on a real terminal: the progress bar, run under a pseudo-terminal.

The command decides bar or plain lines with ``sys.stdout.isatty()`` (and click's bar checks
its stream the same way), so the test gives a child process a pty as stdout and stderr and
reads everything the terminal would have shown.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from helpers import one_list

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
COUNT = 41          # answers are reported every 20: the bar moves at 20, 40 and 41
RATE = "20"         # so the update at 40 comes at least 1.95 s after the bar appeared


@pytest.fixture
def paced_project(send_project: Path) -> Path:
    return one_list(send_project, "all", [f"r{i:02d}@org.example" for i in range(COUNT)],
                    lambda i: "Org")


def run_on_a_terminal(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as stdout and stderr: (exit code, what it showed)."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=terminal, stderr=terminal)
    except BaseException:
        os.close(controller)
        raise
    finally:
        os.close(terminal)
    shown = bytearray()
    try:
        while True:
            # A guard against hanging forever, not a timing assertion.
            ready, _, _ = select.select([controller], [], [], 120)
            if not ready:
                raise AssertionError("the send printed nothing for 120 s:\n" + shown.decode())
            try:
                chunk = os.read(controller, 65536)
            except OSError:      # EIO: the child exited and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return code, shown.decode("utf-8", "replace")


def test_progress_bar_on_a_terminal(paced_project: Path, smtp_server) -> None:  # type: ignore[no-untyped-def]
    recorder, url = smtp_server()
    # Refused for good, but not as an address (that would suppress it and finish the run).
    recorder.faults["r00@org.example"] = ["550 5.7.26 unauthenticated mail is prohibited"]
    recorder.faults["r01@org.example"] = ["451 4.7.1 greylisted"]     # then accepted on retry
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NEWSLETTER_", "PYTEST", "COLUMNS", "LINES"))}
    env.update(NEWSLETTER_SMTP_URL=url, TERM="xterm")
    code, shown = run_on_a_terminal(
        [NEWSLETTER, "send", "2026-spring", "--to", "all", "--adapter", "smtp", "--yes",
         "--allow-local-tracking",
         "--rate", RATE, "--retry-delay", "0"], paced_project, env)

    assert code == 1, shown         # one failed: not everyone is sent
    assert "Sending 41 message(s)..." not in shown          # the bar, not plain lines
    bar, summary = shown.split("Done in ", 1)
    frames = [f for f in re.split(r"[\r\n]+", bar) if "Sending  [" in f]
    assert len(frames) >= 3, shown
    assert re.search(r"\[-{36}\]  0/41  sent 0  deferred 0  failed 0  unknown 0", frames[0])
    # A frame before the end shows the ETA: click estimates it once a second has passed, and
    # at --rate 20 the answers for 40 messages cannot come sooner than 1.95 s after the start.
    middle = [f for f in frames if re.search(r"\] +(20|40)/41 ", f)]
    assert any(re.search(r"/41  \d\d:\d\d:\d\d  sent ", f) for f in middle), frames
    for frame in middle:
        assert re.search(r"sent \d+  deferred 1  failed 1  unknown 0", frame), frame
    # The last frame counts each recipient once, in its latest state: the deferred one was
    # sent on its retry, and the position stops at the total.
    assert re.search(r"\[#{36}\]  41/41  sent 40  deferred 0  failed 1  unknown 0", frames[-1])
    assert not any(re.search(r"4[2-9]/41", f) for f in frames)
    # Then the final summary and the problems.
    assert re.match(r"\d+\.\ds: this run sent 40\. Ledger: sent 40, deferred 0, failed 1, "
                    r"unknown 0, pending 0\r\n", summary), shown
    assert ("failed   r00@org.example: RCPT TO r00@org.example: 550 5.7.26 unauthenticated "
            "mail is prohibited") in summary
    assert "not every recipient is sent yet" in summary
    assert len(recorder.messages) == 40
