"""The example plug-in in tests/plugins/example_adapter, installed with pip and used by
`newsletter send` in a subprocess: found through its entry point, paced, retried and paused
by the send loop, which the plug-in does not contain a line of.

The gateway it posts to is a local starlette app standing in for the plug-in's remote end.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import threading
import time
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import SEND_ADDRESSES
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import db
from newsletter.db import open_db

PLUGIN = Path(__file__).parent / "plugins" / "example_adapter"
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plug-in installed by pip into a folder of its own (for PYTHONPATH)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"
    shutil.copytree(PLUGIN, source)       # pip builds in the source folder: not in the repo
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


class Gateway:
    """What the gateway received, and its answers: 503 to a first try of ``busy``, 429 once."""

    def __init__(self, busy: str) -> None:
        self.busy = busy
        self.received: list[tuple[float, str, str]] = []   # (monotonic time, To, Message-ID)
        self.answers: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    async def submit(self, request: Request) -> Response:
        message = email.message_from_bytes(await request.body(), policy=policy.default)
        to = message["To"].addresses[0].addr_spec
        with self.lock:
            now = time.monotonic()
            tries = sum(1 for _, address, _ in self.received if address == to)
            self.received.append((now, to, message["Message-ID"]))
            if to == self.busy and tries == 0:
                status, headers = 503, {}
            elif len(self.received) == 2:
                status, headers = 429, {"Retry-After": "1"}
            else:
                status, headers = 202, {"X-Message-Id": f"gw-{len(self.received)}"}
            self.answers.append((time.monotonic(), status))
        return Response("busy" if status >= 400 else "", status_code=status, headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/submit", self.submit, methods=["POST"])])


def test_the_example_plugin_sends_through_the_loop(installed: Path, send_project: Path,  # type: ignore[no-untyped-def]
                                                   http_server) -> None:
    gateway = Gateway(busy="cat@council.example")
    url = http_server(gateway.app()) + "/submit"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "PYTEST"))}
    env.update(PYTHONPATH=str(installed), WEBHOOK_URL=url)
    rate = 4.0
    result = subprocess.run([NEWSLETTER, "send", "2026-spring", "--to", "schools", "--to",
                             "councils", "--adapter", "webhook", "--yes", "--rate", str(rate),
                             "--allow-local-tracking",
                             "--retry-delay", "0"], cwd=send_project, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Adapter:  webhook {url}" in result.stdout

    # Everyone got exactly one accepted copy, and the ledger says so.
    accepted = [to for (_, to, _), (_, status) in zip(gateway.received, gateway.answers,
                                                      strict=True) if status == 202]
    assert sorted(accepted) == sorted(SEND_ADDRESSES)
    database = open_db("sqlite:///" + str(send_project / "newsletter.db"))
    with database.engine.connect() as conn:
        rows = {r.address: r for r in conn.execute(
            sa.select(db.recipients.c.address, db.deliveries.c.status,
                      db.deliveries.c.attempts, db.deliveries.c.message_id)
            .join(db.recipients, db.recipients.c.id == db.deliveries.c.recipient_id))}
    database.close()
    assert {r.status for r in rows.values()} == {"sent"}

    # A retry it did not write: the 503 was deferred and sent again, same Message-ID.
    tries = [(to, mid) for _, to, mid in gateway.received if to == "cat@council.example"]
    assert len(tries) == 2 and tries[0][1] == tries[1][1] == rows["cat@council.example"].message_id
    assert rows["cat@council.example"].attempts == 2
    # A 429 pause it did not write: nothing arrived within Retry-After, and it was no attempt.
    assert len(gateway.received) == 7
    limited_at = next(t for t, status in gateway.answers if status == 429)
    limited_to = gateway.received[1][1]
    later = [t for t, _, _ in gateway.received if t > limited_at]
    assert len(later) == 5 and min(later) - limited_at >= 1.0
    if limited_to != "cat@council.example":
        assert rows[limited_to].attempts == 1
    # Pacing it did not write: after the pause each request takes its own 1/rate slot, so the
    # k-th one after the 429 (from 0) starts no sooner than 1 s + k/rate after that answer.
    waited = [round(t - limited_at, 3) for t in sorted(later)]
    assert all(w >= 1.0 + k / rate for k, w in enumerate(waited)), waited


def test_the_docs_show_the_example_as_it_is() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "sending.md").read_text()
    for name in ("pyproject.toml", "newsletter_webhook.py"):
        assert (PLUGIN / name).read_text() in docs, f"docs/sending.md shows an old {name}"
