"""Mailgun, Postmark and SendGrid against local servers that answer as each provider documents.

Only the remote provider is faked (``tests/fake_providers.py``, served by uvicorn on
127.0.0.1); the adapter, the send loop, the ledger and the database are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from fake_providers import Mailgun, Postmark, Sendgrid

from newsletter import send as sending
from newsletter.adapters.base import LoopOptions
from newsletter.adapters.http import retry_after_seconds
from newsletter.db import deliveries, open_db
from newsletter.errors import ConfigurationError
from newsletter.project import Project

from conftest import SEND_ADDRESSES  # isort: skip


def run_send(project_root: Path, env: dict[str, str], adapter: str,
             **options) -> sending.Outcome:  # type: ignore[no-untyped-def]
    project = Project.load(project_root)
    prepared = sending.prepare(project, "2026-spring", ("schools", "councils"), adapter=adapter,
                               env=env)
    try:
        return sending.run(prepared, LoopOptions(retry_delay=0, **options))
    finally:
        prepared.close()


def mailgun_env(url: str, key: str = "key-test", domain: str = "mg.example.org") -> dict:
    return {"MAILGUN_API_KEY": key, "MAILGUN_DOMAIN": domain, "MAILGUN_API_URL": url}


def postmark_env(url: str, token: str = "server-token", stream: str = "newsletter") -> dict:
    return {"POSTMARK_SERVER_TOKEN": token, "POSTMARK_API_URL": url,
            "POSTMARK_MESSAGE_STREAM": stream}


def sendgrid_env(url: str, key: str = "SG.test") -> dict:
    return {"SENDGRID_API_KEY": key, "SENDGRID_API_URL": url}


def attempts(project_root: Path) -> set[int]:
    database = open_db(Project.load(project_root).db_url())
    try:
        with database.engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(deliveries.c.attempts))}
    finally:
        database.close()


def test_mailgun_sends_the_mime_as_a_file_with_basic_auth(send_project: Path,
                                                          http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Mailgun()
    outcome = run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    assert outcome.complete and outcome.counts["sent"] == 5
    assert set(fake.recipients) == SEND_ADDRESSES
    first = fake.accepted[0]
    parsed = first.request["parsed"]
    assert parsed["To"].addresses[0].addr_spec == first.recipient
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first.provider_id == parsed["Message-ID"].strip("<>")


def test_mailgun_400_fails_one_and_500_is_retried(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Mailgun()
    fake.refuse = {"cat@council.example"}
    fake.script = [(500, {}, {"message": "Internal error"})]
    outcome = run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    assert outcome.counts["sent"] == 4 and outcome.counts["failed"] == 1
    assert outcome.problems[0][:2] == ("cat@council.example", "failed")
    assert "'to' parameter is not a valid address" in outcome.problems[0][2]


def test_postmark_batches_and_records_each_error_code(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    fake.inactive = {"bob@school.example"}
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert fake.sends == 1                           # one batch for all five
    assert outcome.counts["sent"] == 4 and outcome.counts["failed"] == 1
    assert outcome.problems[0][:2] == ("bob@school.example", "failed")
    assert "Postmark error 406" in outcome.problems[0][2]
    message = fake.accepted[0].request
    assert message["MessageStream"] == "newsletter"
    names = {h["Name"]: h["Value"] for h in message["Headers"]}
    assert names["Message-ID"].startswith("<2026-spring.")
    assert names["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "{{" not in message["HtmlBody"] and message["TextBody"]


def test_429_waits_retry_after_and_is_not_an_attempt(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    fake.script = [(429, {"Retry-After": "1"}, {"ErrorCode": 429, "Message": "Rate limit"})]
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert outcome.complete and fake.sends == 2
    assert outcome.tally.deferred == 0 and outcome.tally.failed == 0
    assert attempts(send_project) == {1}


@pytest.mark.parametrize("adapter", ["mailgun", "postmark", "sendgrid"])
def test_a_wrong_key_stops_the_run_and_fails_nobody(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                    adapter) -> None:
    fake = {"mailgun": Mailgun, "postmark": Postmark, "sendgrid": Sendgrid}[adapter]()
    url = http_server(fake.app())
    env = {"mailgun": mailgun_env(url, key="wrong"), "postmark": postmark_env(url, "wrong"),
           "sendgrid": sendgrid_env(url, "wrong")}[adapter]
    outcome = run_send(send_project, env, adapter)
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "answered 401" in outcome.stopped_by.message
    key = {"mailgun": "MAILGUN_API_KEY", "postmark": "POSTMARK_SERVER_TOKEN",
           "sendgrid": "SENDGRID_API_KEY"}[adapter]
    assert key in outcome.stopped_by.hint
    assert outcome.counts["pending"] == 5
    assert outcome.counts["failed"] == outcome.counts["deferred"] == 0
    assert fake.sends == 0 and fake.accepted == []


def test_sendgrid_sends_each_message_with_its_headers(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid()
    fake.invalid = {"dan@district.example"}
    outcome = run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid")
    assert outcome.counts["sent"] == 4 and outcome.counts["failed"] == 1
    assert fake.sends == 5
    payload = fake.accepted[0].request
    assert payload["headers"]["Message-ID"].startswith("<2026-spring.")
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["tracking_settings"]["click_tracking"] == {"enable": False}


def test_unreachable_provider_defers(send_project: Path) -> None:
    from conftest import _free_port

    env = sendgrid_env(f"http://127.0.0.1:{_free_port()}")
    outcome = run_send(send_project, env, "sendgrid", tries_per_run=1, pause_after=0)
    assert outcome.counts["deferred"] == 5
    assert "cannot reach SendGrid" in outcome.problems[0][2]


def test_too_many_failures_in_a_row_pause_the_run(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid()
    fake.script = [(500, {}, {"errors": []})] * 10
    outcome = run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid",
                       pause_after=3)
    assert outcome.stopped_by is not None
    assert outcome.stopped_by.message.startswith("paused after 3 failures in a row")
    assert "run the same `newsletter send` again" in outcome.stopped_by.hint
    assert fake.sends == 3
    assert outcome.counts["deferred"] == 3 and outcome.counts["pending"] == 2


@pytest.mark.parametrize(("adapter", "variables"), [
    ("mailgun", ["MAILGUN_API_KEY"]),
    ("postmark", ["POSTMARK_SERVER_TOKEN"]),
    ("sendgrid", ["SENDGRID_API_KEY"]),
])
def test_missing_keys_name_where_to_set_them(send_project: Path, adapter, variables) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError) as info:
        sending.prepare(Project.load(send_project), "2026-spring", ("schools",),
                        adapter=adapter, env={})
    for variable in variables:
        assert f"set the environment variable {variable}" in info.value.message
        assert f"export {variable}=" in info.value.hint


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") == 60.0


def test_payload_is_json_serialisable(send_project: Path) -> None:
    # Guards the shape sent to Postmark: plain JSON types only.
    from conftest import make_built

    from newsletter.adapters.base import AdapterSettings
    from newsletter.adapters.postmark import PostmarkAdapter
    from newsletter.message import MessageFactory, Recipient
    from newsletter.tracking.tokens import Signer

    factory = MessageFactory(make_built(), Project.load(send_project), Signer({"k": b"s"}, "k"))
    adapter = PostmarkAdapter(AdapterSettings(root=send_project,
                                              env={"POSTMARK_SERVER_TOKEN": "t"}))
    payload = adapter.payload(factory.make(Recipient("a@x.example", "Ann, Lee", "p", "<m@x>")))
    assert json.loads(json.dumps(payload))["To"] == '"Ann, Lee" <a@x.example>'


@pytest.fixture
def raw_server():  # type: ignore[no-untyped-def]
    """A TCP server on 127.0.0.1 that reads one request, then closes or stays silent.

    Simulates the network failing between us and the provider, which no HTTP framework does.
    """
    import socket
    import threading

    started: list[tuple[socket.socket, threading.Thread, threading.Event]] = []

    def start(behaviour: str) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        done = threading.Event()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                if behaviour == "silent":
                    done.wait(10)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.append((listener, thread, done))
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener, thread, done in started:
        done.set()
        thread.join(10)
        listener.close()


@pytest.mark.parametrize("behaviour", ["close", "silent"])
def test_lost_after_the_request_is_unknown(send_project: Path, raw_server, behaviour) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_built

    from newsletter.adapters.base import AdapterSettings, Control
    from newsletter.adapters.sendgrid import SendgridAdapter
    from newsletter.message import MessageFactory, Recipient
    from newsletter.tracking.tokens import Signer

    url = raw_server(behaviour)
    adapter = SendgridAdapter(AdapterSettings(root=send_project, timeout=0.3,
                                              env=sendgrid_env(url, "k")))
    adapter.control = Control(pause_after=0)
    factory = MessageFactory(make_built(), Project.load(send_project), Signer({"k": b"s"}, "k"))
    message = factory.make(Recipient("a@x.example", "", "p", "<m@x>"))
    adapter.open()
    try:
        (outcome,) = adapter.send_batch([message])
    finally:
        adapter.close()
    assert outcome.status == "unknown"
    assert "may have been accepted" in outcome.error
