"""Mailgun, Postmark and SendGrid against local servers that answer as each provider documents.

Only the remote provider is faked (``tests/fake_providers.py``, served by uvicorn on
127.0.0.1); the adapter, the send loop, the ledger and the database are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_providers import Mailgun, Postmark, Sendgrid
from helpers import (
    ledger_rows,
    mailgun_env,
    postmark_env,
    prepare_send,
    run_send,
    sendgrid_env,
)

from newsletter import send as sending
from newsletter.adapters.http import retry_after_seconds
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.project import Project


def test_429_waits_retry_after_and_is_not_an_attempt(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Postmark()
    fake.script = [(429, {"Retry-After": "1"}, {"ErrorCode": 429, "Message": "Rate limit"})]
    outcome = run_send(send_project, postmark_env(http_server(fake.app())), "postmark")
    assert outcome.complete and fake.sends == 2
    assert outcome.tally.deferred == 0 and outcome.tally.failed == 0
    assert {row["attempts"] for row in ledger_rows(send_project).values()} == {1}


@pytest.mark.parametrize("adapter", ["mailgun", "sendgrid"])
def test_a_wrong_key_stops_the_run_and_fails_nobody(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                    adapter) -> None:
    fake = {"mailgun": Mailgun, "sendgrid": Sendgrid}[adapter]()
    url = http_server(fake.app())
    env = {"mailgun": mailgun_env(url, key="wrong"), "sendgrid": sendgrid_env(url, "wrong")}[
        adapter]
    outcome = run_send(send_project, env, adapter)
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "answered 401" in outcome.stopped_by.message
    key = {"mailgun": "MAILGUN_API_KEY", "sendgrid": "SENDGRID_API_KEY"}[adapter]
    assert key in outcome.stopped_by.hint
    assert outcome.counts["pending"] == 5
    assert outcome.counts["failed"] == outcome.counts["deferred"] == 0
    assert fake.accepted == []


def test_a_wrong_postmark_token_is_found_before_anything_is_written(send_project: Path,  # type: ignore[no-untyped-def]
                                                                    http_server) -> None:
    fake = Postmark()
    with pytest.raises(ConfigurationError) as info:
        prepare_send(send_project, postmark_env(http_server(fake.app()), "wrong"), "postmark")
    assert "Postmark answered 401" in info.value.message
    assert "The Server Token you provided" in info.value.message
    assert "POSTMARK_SERVER_TOKEN" in info.value.hint
    assert fake.sends == 0 and not (send_project / "newsletter.db").exists()


@pytest.mark.parametrize(("adapter", "env", "variable"), [
    ("mailgun", mailgun_env, "MAILGUN_API_URL"), ("postmark", postmark_env, "POSTMARK_API_URL")])
def test_a_provider_that_cannot_be_reached_for_its_settings_is_a_message(  # type: ignore[no-untyped-def]
        send_project: Path, adapter, env, variable) -> None:
    from helpers import free_port

    with pytest.raises(NewsletterError) as info:
        prepare_send(send_project, env(f"http://127.0.0.1:{free_port()}"), adapter)
    assert info.value.message.startswith("cannot check ")
    assert variable in info.value.hint and "nothing was sent" in info.value.hint


def test_unreachable_provider_defers(send_project: Path) -> None:
    from helpers import free_port

    env = sendgrid_env(f"http://127.0.0.1:{free_port()}")
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
    from helpers import make_built

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
    from helpers import make_built

    from newsletter.adapters.base import AdapterSettings
    from newsletter.adapters.sendgrid import SendgridAdapter
    from newsletter.message import MessageFactory, Recipient
    from newsletter.tracking.tokens import Signer

    url = raw_server(behaviour)
    adapter = SendgridAdapter(AdapterSettings(root=send_project, timeout=0.3,
                                              env=sendgrid_env(url, "k")))
    factory = MessageFactory(make_built(), Project.load(send_project), Signer({"k": b"s"}, "k"))
    message = factory.make(Recipient("a@x.example", "", "p", "<m@x>"))
    adapter.open()
    try:
        (outcome,) = adapter.deliver([message])
    finally:
        adapter.close()
    assert outcome.status == "unknown"
    assert "may have been accepted" in outcome.error


@pytest.mark.parametrize("provider", ["mailgun", "postmark", "sendgrid"])
def test_test_copy_through_each_provider(send_project: Path, http_server, provider) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from newsletter.cli import main

    fake = {"mailgun": Mailgun, "postmark": Postmark, "sendgrid": Sendgrid}[provider]()
    url = http_server(fake.app())
    env = {"mailgun": mailgun_env, "postmark": postmark_env, "sendgrid": sendgrid_env}[
        provider](url)
    result = CliRunner().invoke(main, ["send", "2026-spring", "--test", "editor@example.org",
                                       "--adapter", provider, "--allow-local-tracking"], env=env)
    assert result.exit_code == 0, result.output
    assert "Sent a test copy to editor@example.org via " + provider in result.output
    (accepted,) = fake.accepted
    assert accepted.delivered["X-Newsletter-Test"] == "yes"
    assert accepted.delivered["Subject"].startswith("[TEST] ")
    assert ledger_rows(send_project) == {}


def test_test_copy_with_a_revoked_key_stops_with_the_hint(send_project: Path,  # type: ignore[no-untyped-def]
                                                          http_server) -> None:
    from click.testing import CliRunner

    from newsletter.cli import main

    fake = Sendgrid()
    env = sendgrid_env(http_server(fake.app()), key="SG.wrong")
    result = CliRunner().invoke(main, ["send", "2026-spring", "--test", "editor@example.org",
                                       "--adapter", "sendgrid", "--allow-local-tracking"],
                                 env=env)
    assert result.exit_code == 1
    assert "SendGrid answered 401" in result.output
    assert "hint: check the key in the environment variable SENDGRID_API_KEY" in result.output
    assert "Traceback" not in result.output and fake.accepted == []


def test_a_refused_connection_never_reached_the_provider() -> None:
    import requests
    from helpers import free_port

    from newsletter.adapters.http import _never_connected

    with pytest.raises(requests.exceptions.ConnectionError) as info:
        requests.post(f"http://127.0.0.1:{free_port()}/v3/mail/send", timeout=5)
    assert _never_connected(info.value)


def test_a_connection_dropped_after_the_request_may_have_reached_it() -> None:
    import socket
    import threading

    import requests

    from newsletter.adapters.http import _never_connected

    with socket.create_server(("127.0.0.1", 0)) as listener:
        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)  # the request arrived; the provider may have acted on it
            conn.close()
        threading.Thread(target=hang_up, daemon=True).start()
        port = listener.getsockname()[1]
        with pytest.raises(requests.exceptions.ConnectionError) as info:
            requests.post(f"http://127.0.0.1:{port}/v3/mail/send", data=b"{}", timeout=5)
    assert not _never_connected(info.value)
