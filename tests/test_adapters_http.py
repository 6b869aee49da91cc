"""Mailgun, Postmark and SendGrid against local servers that answer as each provider documents.

Only the remote provider is faked (a starlette app under uvicorn on 127.0.0.1); the adapter,
the send loop, the ledger and the database are the real ones.
"""

from __future__ import annotations

import base64
import email
import json
import uuid
from email import policy
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter import send as sending
from newsletter.adapters.base import LoopOptions
from newsletter.adapters.http import retry_after_seconds
from newsletter.errors import ConfigurationError
from newsletter.project import Project

from conftest import SEND_ADDRESSES  # isort: skip


class Provider:
    """State shared by a fake provider: what it received and what it should do next."""

    def __init__(self) -> None:
        self.received: list = []
        self.script: list[tuple[int, dict, dict | list | None]] = []   # forced answers
        self.refuse: set[str] = set()
        self.requests = 0

    def forced(self):  # type: ignore[no-untyped-def]
        self.requests += 1
        if self.script:
            status, headers, body = self.script.pop(0)
            return JSONResponse(body, status_code=status, headers=headers)
        return None


def mailgun_app(state: Provider, key: str, domain: str) -> Starlette:
    async def mime(request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"api:{key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Response("Forbidden", status_code=401)
        if request.path_params["domain"] != domain:
            return JSONResponse({"message": "Domain not found"}, status_code=404)
        forced = state.forced()
        if forced is not None:
            return forced
        raw = (b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
               + await request.body())
        form = email.message_from_bytes(raw, policy=policy.default)
        fields = {part.get_param("name", header="content-disposition"): part.get_content()
                  for part in form.iter_parts()}
        if "to" not in fields or "message" not in fields:
            return JSONResponse({"message": "to and message are required"}, status_code=400)
        if fields["to"] in state.refuse:
            return JSONResponse({"message": "'to' parameter is not a valid address"},
                                status_code=400)
        state.received.append((fields["to"], fields["message"]))
        return JSONResponse({"id": f"<{uuid.uuid4().hex}@{domain}>",
                             "message": "Queued. Thank you."})

    return Starlette(routes=[Route("/v3/{domain}/messages.mime", mime, methods=["POST"])])


def postmark_app(state: Provider, token: str) -> Starlette:
    async def batch(request: Request) -> Response:
        if request.headers.get("x-postmark-server-token") != token:
            return JSONResponse({"ErrorCode": 10, "Message": "The Server Token you provided "
                                 "in the X-Postmark-Server-Token request header was invalid."},
                                status_code=401)
        forced = state.forced()
        if forced is not None:
            return forced
        messages = await request.json()
        if not isinstance(messages, list) or len(messages) > 500:
            return JSONResponse({"ErrorCode": 300, "Message": "Invalid batch"},
                                status_code=422)
        answers = []
        for message in messages:
            address = email.utils.parseaddr(message["To"])[1]
            if address in state.refuse:
                answers.append({"ErrorCode": 406, "Message": "You tried to send to recipient(s)"
                                " that have been marked as inactive.", "To": message["To"]})
                continue
            state.received.append(message)
            answers.append({"ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()),
                            "SubmittedAt": "2026-03-17T10:00:00Z", "To": message["To"]})
        return JSONResponse(answers)

    return Starlette(routes=[Route("/email/batch", batch, methods=["POST"])])


def sendgrid_app(state: Provider, key: str) -> Starlette:
    async def mail_send(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"errors": [{"message": "The provided authorization grant is "
                                             "invalid, expired, or revoked"}]}, status_code=401)
        forced = state.forced()
        if forced is not None:
            return forced
        payload = await request.json()
        address = payload["personalizations"][0]["to"][0]["email"]
        if address in state.refuse:
            return JSONResponse({"errors": [{"message": "Does not contain a valid address.",
                                             "field": "personalizations.0.to.0.email"}]},
                                status_code=400)
        state.received.append(payload)
        return Response(status_code=202, headers={"X-Message-Id": uuid.uuid4().hex[:22]})

    return Starlette(routes=[Route("/v3/mail/send", mail_send, methods=["POST"])])


def run_send(project_root: Path, env: dict[str, str], adapter: str,
             **options) -> sending.Outcome:  # type: ignore[no-untyped-def]
    project = Project.load(project_root)
    prepared = sending.prepare(project, "2026-spring", ("schools", "councils"), adapter=adapter,
                               env=env)
    try:
        return sending.run(prepared, LoopOptions(retry_delay=0, **options))
    finally:
        prepared.close()


def test_mailgun_sends_the_mime_with_basic_auth(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    url = http_server(mailgun_app(state, "key-123", "mg.example.org"))
    env = {"MAILGUN_API_KEY": "key-123", "MAILGUN_DOMAIN": "mg.example.org",
           "MAILGUN_API_URL": url}
    outcome = run_send(send_project, env, "mailgun")
    assert outcome.complete and outcome.counts["sent"] == 5
    assert {to for to, _ in state.received} == SEND_ADDRESSES
    to, mime = state.received[0]
    parsed = mime           # the message/rfc822 part, parsed by the fake
    assert parsed["To"].addresses[0].addr_spec == to
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailgun_400_fails_one_and_500_is_retried(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    state.refuse = {"cat@council.example"}
    state.script = [(500, {}, {"message": "Internal error"})]
    url = http_server(mailgun_app(state, "k", "d.example"))
    outcome = run_send(send_project, {"MAILGUN_API_KEY": "k", "MAILGUN_DOMAIN": "d.example",
                                      "MAILGUN_API_URL": url}, "mailgun")
    assert outcome.counts["sent"] == 4 and outcome.counts["failed"] == 1
    assert outcome.problems == [("cat@council.example", "failed",
                                 "Mailgun answered 400: {\"message\":\"'to' parameter is not a "
                                 "valid address\"}")]


def test_postmark_batches_and_records_each_error_code(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    state.refuse = {"bob@school.example"}
    url = http_server(postmark_app(state, "tok"))
    env = {"POSTMARK_SERVER_TOKEN": "tok", "POSTMARK_API_URL": url}
    outcome = run_send(send_project, env, "postmark")
    assert state.requests == 1                       # one batch for all five
    assert outcome.counts["sent"] == 4 and outcome.counts["failed"] == 1
    assert outcome.problems[0][:2] == ("bob@school.example", "failed")
    assert "Postmark error 406" in outcome.problems[0][2]
    message = state.received[0]
    assert message["MessageStream"] == "broadcast"
    names = {h["Name"]: h["Value"] for h in message["Headers"]}
    assert names["Message-ID"].startswith("<2026-spring.")
    assert names["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "{{" not in message["HtmlBody"] and message["TextBody"]


def test_429_waits_retry_after_and_is_not_an_attempt(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    state.script = [(429, {"Retry-After": "1"}, {"ErrorCode": 429, "Message": "Rate limit"})]
    url = http_server(postmark_app(state, "tok"))
    outcome = run_send(send_project, {"POSTMARK_SERVER_TOKEN": "tok",
                                      "POSTMARK_API_URL": url}, "postmark")
    assert outcome.complete and state.requests == 2
    assert outcome.tally.deferred == 0 and outcome.tally.failed == 0
    import sqlalchemy as sa

    from newsletter.db import deliveries, open_db
    database = open_db(Project.load(send_project).db_url())
    with database.engine.connect() as conn:
        assert {r[0] for r in conn.execute(sa.select(deliveries.c.attempts))} == {1}
    database.close()


@pytest.mark.parametrize("adapter", ["mailgun", "postmark", "sendgrid"])
def test_401_stops_the_run_and_fails_nobody(send_project: Path, http_server, adapter) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    app = {"mailgun": lambda: mailgun_app(state, "right", "d"),
           "postmark": lambda: postmark_app(state, "right"),
           "sendgrid": lambda: sendgrid_app(state, "right")}[adapter]()
    url = http_server(app)
    env = {"MAILGUN_API_KEY": "wrong", "MAILGUN_DOMAIN": "d", "MAILGUN_API_URL": url,
           "POSTMARK_SERVER_TOKEN": "wrong", "POSTMARK_API_URL": url,
           "SENDGRID_API_KEY": "wrong", "SENDGRID_API_URL": url}
    outcome = run_send(send_project, env, adapter)
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "answered 401" in outcome.stopped_by.message
    key = {"mailgun": "MAILGUN_API_KEY", "postmark": "POSTMARK_SERVER_TOKEN",
           "sendgrid": "SENDGRID_API_KEY"}[adapter]
    assert key in outcome.stopped_by.hint
    assert outcome.counts["pending"] == 5
    assert outcome.counts["failed"] == outcome.counts["deferred"] == 0
    assert state.requests == 0


def test_sendgrid_sends_each_message_with_its_headers(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    state.refuse = {"dan@district.example"}
    url = http_server(sendgrid_app(state, "SG.k"))
    outcome = run_send(send_project, {"SENDGRID_API_KEY": "SG.k", "SENDGRID_API_URL": url},
                       "sendgrid")
    assert outcome.counts["sent"] == 4 and outcome.counts["failed"] == 1
    payload = state.received[0]
    assert payload["headers"]["Message-ID"].startswith("<2026-spring.")
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["tracking_settings"]["click_tracking"] == {"enable": False}


def test_unreachable_provider_defers(send_project: Path) -> None:
    from conftest import _free_port

    env = {"SENDGRID_API_KEY": "k", "SENDGRID_API_URL": f"http://127.0.0.1:{_free_port()}"}
    outcome = run_send(send_project, env, "sendgrid", tries_per_run=1, pause_after=0)
    assert outcome.counts["deferred"] == 5
    assert "cannot reach SendGrid" in outcome.problems[0][2]


def test_too_many_failures_in_a_row_pause_the_run(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    state = Provider()
    state.script = [(500, {}, {"errors": []})] * 10
    url = http_server(sendgrid_app(state, "k"))
    outcome = run_send(send_project, {"SENDGRID_API_KEY": "k", "SENDGRID_API_URL": url},
                       "sendgrid", pause_after=3)
    assert outcome.stopped_by is not None
    assert outcome.stopped_by.message.startswith("paused after 3 failures in a row")
    assert "run the same `newsletter send` again" in outcome.stopped_by.hint
    assert state.requests == 3
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
                                              env={"SENDGRID_API_KEY": "k",
                                                   "SENDGRID_API_URL": url}))
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
