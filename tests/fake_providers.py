"""Local stand-ins for Mailgun, Postmark and SendGrid that answer as each provider documents.

Only the remote provider is faked: each fake is a starlette app the ``http_server`` fixture
serves with uvicorn on 127.0.0.1. A fake checks every field we send that the provider checks,
answers with the provider's documented status codes and words, and keeps what the provider
would have accepted. It also models the provider-side settings that change what a recipient
gets (click and open tracking, unsubscribe footers, managed unsubscribe headers), so a test can
read the message *as delivered* (:attr:`Accepted.delivered`) and see whether our links and our
unsubscribe survived: the inbox is the truth.

Where a provider's documentation does not give an answer's exact words, the comment says so
and the adapter must not depend on those words beyond what is documented.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.utils
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

HREF_RE = re.compile(r'href="([^"]+)"')
URL_RE = re.compile(r"https?://[^\s<>\"]+")


@dataclass
class Accepted:
    """One message a fake provider accepted: what we sent, and what the recipient receives."""

    recipient: str
    provider_id: str
    request: Any                     # the JSON message, or the form fields and the MIME
    delivered: EmailMessage          # after the provider's own tracking and footers
    metadata: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def html(self) -> str:
        part = self.delivered.get_body(("html",))
        return part.get_content() if part is not None else ""

    @property
    def text(self) -> str:
        part = self.delivered.get_body(("plain",))
        return part.get_content() if part is not None else ""

    def links(self) -> list[str]:
        """Every link in the delivered HTML and text parts."""
        return HREF_RE.findall(self.html) + URL_RE.findall(self.text)


class FakeProvider:
    """What every fake shares: the requests it saw, what it accepted, answers forced by a test.

    ``script`` holds answers ``(status, headers, body)`` given, one per request, to the sending
    endpoint before it looks at the request. ``slow`` makes the next N sends accept the
    message, then wait ``slow_seconds`` before answering (a client with a shorter read timeout
    sees a timeout for a message that *was* accepted, as happens over a real network).
    """

    def __init__(self) -> None:
        self.accepted: list[Accepted] = []
        self.sends = 0                  # requests that reached the sending endpoint
        self.requests: list[tuple[str, str]] = []   # (method, path?query) of every request
        self.script: list[tuple[int, dict[str, str], Any]] = []
        self.slow = 0
        self.slow_seconds = 2.0
        self.lock = threading.Lock()

    def note(self, request: Request) -> None:
        query = f"?{request.url.query}" if request.url.query else ""
        self.requests.append((request.method, request.url.path + query))

    def forced(self) -> Response | None:
        if self.script:
            status, headers, body = self.script.pop(0)
            if body is None:
                return Response(status_code=status, headers=headers)
            if isinstance(body, str):
                return PlainTextResponse(body, status_code=status, headers=headers)
            return JSONResponse(body, status_code=status, headers=headers)
        return None

    async def answer_late(self) -> None:
        """After accepting: hold the answer back when a test asked for a slow provider."""
        if self.slow > 0:
            self.slow -= 1
            await asyncio.sleep(self.slow_seconds)

    @property
    def recipients(self) -> list[str]:
        return [a.recipient for a in self.accepted]

    def paths(self, method: str = "POST") -> list[str]:
        return [p for m, p in self.requests if m == method]


def compose(headers: list[tuple[str, str]], text: str, html: str) -> EmailMessage:
    """A message as a provider would build it from parts (text first, then HTML)."""
    message = EmailMessage(policy=policy.SMTP)
    # Body first: set_content would drop Content-* headers such as Content-Language.
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for name, value in headers:
        message[name] = value
    return message


def rewrite_links(html: str, text: str, make) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Replace every link as a provider's click tracking does."""
    html = HREF_RE.sub(lambda m: f'href="{make(m.group(1))}"', html)
    text = URL_RE.sub(lambda m: make(m.group(0)), text)
    return html, text


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """multipart/form-data as (plain fields, file uploads): a part with a filename is a file.

    Split by hand, byte for byte: the email parser would re-parse a message/rfc822 part.
    """
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if boundary is None:
        return fields, files
    for chunk in body.split(b"--" + boundary.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        data = data[:-2] if data.endswith(b"\r\n") else data
        disposition = next((line for line in head.decode().split("\r\n")
                            if line.lower().startswith("content-disposition")), "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name is None:
            continue
        if re.search(r'\bfilename="', disposition):
            files[name.group(1)] = data
        else:
            fields[name.group(1)] = data.decode("utf-8")
    return fields, files


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("yes", "true", "htmlonly")


# --- Mailgun ------------------------------------------------------------------------------
# Send in MIME format: POST /v3/{domain_name}/messages.mime, multipart/form-data, fields `to`
# (required) and `message` (required, "Make sure to use content type to send this as a file
# upload"); send options (o:, h:, v:, t:) limited to 16KB total.
#   https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/post-v3--domain-name--messages-mime
# o:tracking, o:tracking-clicks (yes/no/htmlonly, "Has higher priority than domain-level
# setting"), o:tracking-opens (yes/no):
#   https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages (Sending Options)
# Answers: 200 {"id": "<...>", "message": "Queued. Thank you."}; 400 with a "message" to read;
# 401 "Forbidden" for a wrong key; 403 access denied; 404 resource not found ("Domain not
# found" for a domain this region does not know: EU domains live on api.eu.mailgun.net);
# 429 retry "as defined in the response"; 500 retry.
#   https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses
# Parameter errors ("to parameter is missing", "'message' parameter is not a file",
# "'to' parameter is not a valid address") as listed in Mailgun error-code libraries; the
# sandbox answer's words as Mailgun users quote them (403 today, 400 in older reports):
#   https://help.mailgun.com/hc/en-us/articles/217531258-Authorized-Recipients
# Domain tracking settings: GET /v3/domains/{name}/tracking -> tracking.{open,click,
# unsubscribe}.active; unsubscribe tracking appends Mailgun's own footer:
#   https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/domain-tracking/get-v3-domains--name--tracking
#   https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages
# Events: GET /v3/{domain_name}/events?message-id=...&event=accepted (events are kept at least
# 3 days; "message-id" is the id the messages API returned, without angle brackets):
#   https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Events/


@dataclass
class MailgunDomain:
    name: str
    region: str = "us"                       # "us" (api.mailgun.net) or "eu" (api.eu...)
    sandbox: bool = False
    verified: bool = True
    click: bool = False
    open: bool = False
    unsubscribe: bool = False
    authorized: set[str] = field(default_factory=set)   # sandbox: authorized recipients


class Mailgun(FakeProvider):
    """A Mailgun region (``us`` or ``eu``) with some sending domains."""

    SANDBOX = ("Domain {d} is not allowed to send: Sandbox subdomains are for test purposes "
               "only. Please add your own domain or add the address to authorized recipients "
               "in Account Settings.")
    UNVERIFIED = ("Domain {d} is not allowed to send: The domain is unverified and requires DNS "
                  "configuration. Log in to your control panel to view required DNS records.")

    def __init__(self, key: str = "key-test", domains: list[MailgunDomain] | None = None,
                 region: str = "us") -> None:
        super().__init__()
        self.key = key
        self.region = region
        self.domains = {d.name: d for d in (domains or [MailgunDomain("mg.example.org")])}
        self.refuse: set[str] = set()          # addresses Mailgun finds not valid
        self.events_hidden = 0                 # event searches that do not see new events yet
        # The key is a Domain Sending Key: Mailgun lets it send messages, and nothing else.
        self.sending_key = False

    def _domain(self, request: Request) -> MailgunDomain | Response:
        expected = "Basic " + base64.b64encode(f"api:{self.key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return PlainTextResponse("Forbidden", status_code=401)
        domain = self.domains.get(request.path_params["domain"])
        if domain is None or domain.region != self.region:
            return JSONResponse({"message": "Domain not found"}, status_code=404)
        return domain

    async def send_mime(self, request: Request) -> Response:
        self.note(request)
        domain = self._domain(request)
        if isinstance(domain, Response):
            return domain
        with self.lock:
            self.sends += 1
        forced = self.forced()
        if forced is not None:
            return forced
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return JSONResponse({"message": "to parameter is missing"}, status_code=400)
        fields, files = parse_form(request.headers["content-type"], await request.body())
        if "to" not in fields:
            return JSONResponse({"message": "to parameter is missing"}, status_code=400)
        if "message" in fields:
            return JSONResponse({"message": "'message' parameter is not a file"},
                                status_code=400)
        if "message" not in files:
            return JSONResponse({"message": "message parameter is missing"}, status_code=400)
        options = sum(len(k) + len(v) for k, v in fields.items() if k[:2] in ("o:", "h:", "v:",
                                                                             "t:"))
        if options > 16 * 1024:
            return JSONResponse({"message": "Send options (parameters starting with o:, h:, "
                                 "or v:) are limited to 16 kB total"}, status_code=400)
        for name in ("o:tracking", "o:tracking-clicks", "o:tracking-opens"):
            if name in fields and fields[name] not in ("yes", "no", "true", "false", "htmlonly"):
                return JSONResponse({"message": f"'{name}' parameter is not valid"},
                                    status_code=400)
        to = fields["to"]
        address = email.utils.parseaddr(to)[1].lower()
        if not address or "@" not in address or address in self.refuse:
            return JSONResponse({"message": "'to' parameter is not a valid address. please "
                                 "check documentation"}, status_code=400)
        if not domain.verified:
            return JSONResponse({"message": self.UNVERIFIED.format(d=domain.name)},
                                status_code=403)
        if domain.sandbox and address not in domain.authorized:
            return JSONResponse({"message": self.SANDBOX.format(d=domain.name)},
                                status_code=403)
        raw = files["message"]
        sent = email.message_from_bytes(raw, policy=policy.default)
        message_id = sent["Message-ID"] or f"<{uuid.uuid4().hex}@{domain.name}>"
        self.accepted.append(Accepted(address, message_id.strip("<>"),
                                      {"fields": fields, "mime": raw, "parsed": sent},
                                      self._delivered(sent, domain, fields)))
        await self.answer_late()
        return JSONResponse({"id": message_id, "message": "Queued. Thank you."})

    def _delivered(self, sent: EmailMessage, domain: MailgunDomain,
                   fields: dict[str, str]) -> EmailMessage:
        everything = _flag(fields.get("o:tracking"))
        clicks = _flag(fields.get("o:tracking-clicks"))
        opens = _flag(fields.get("o:tracking-opens"))
        click = clicks if clicks is not None else (everything if everything is not None
                                                   else domain.click)
        open_ = opens if opens is not None else (everything if everything is not None
                                                 else domain.open)
        html_part, text_part = sent.get_body(("html",)), sent.get_body(("plain",))
        html = html_part.get_content() if html_part is not None else ""
        text = text_part.get_content() if text_part is not None else ""
        if click:
            html, text = rewrite_links(html, text,
                                       lambda u: f"https://email.{domain.name}/c/{uuid.uuid4().hex}")
        if open_:
            html += f'<img src="https://email.{domain.name}/o/{uuid.uuid4().hex}">'
        if domain.unsubscribe:
            # Whether o:tracking=no also drops this footer is not documented; assume it stays.
            html += f'<a href="https://email.{domain.name}/u/{uuid.uuid4().hex}">Unsubscribe</a>'
            text += f"\nUnsubscribe: https://email.{domain.name}/u/{uuid.uuid4().hex}\n"
        headers = [(k, str(v)) for k, v in sent.items()
                   if k.lower() not in ("content-type", "content-transfer-encoding",
                                        "mime-version")]
        return compose(headers, text, html)

    async def domain_info(self, request: Request) -> Response:
        self.note(request)
        if self.sending_key:
            return PlainTextResponse("Forbidden", status_code=401)
        domain = self._domain(request)
        if isinstance(domain, Response):
            return domain
        return JSONResponse({"domain": {
            "name": domain.name, "type": "sandbox" if domain.sandbox else "custom",
            "state": "active" if domain.verified else "unverified", "is_disabled": False}})

    async def tracking(self, request: Request) -> Response:
        self.note(request)
        if self.sending_key:
            return PlainTextResponse("Forbidden", status_code=401)
        domain = self._domain(request)
        if isinstance(domain, Response):
            return domain
        return JSONResponse({"tracking": {
            "open": {"active": domain.open, "place_at_the_top": False},
            "click": {"active": domain.click},
            "unsubscribe": {"active": domain.unsubscribe,
                            "html_footer": "\n<br>\n<p><a href=\"%unsubscribe_url%\">"
                                           "unsubscribe</a></p>\n",
                            "text_footer": "\n\nTo unsubscribe click: <%unsubscribe_url%>\n\n"},
            "web_scheme": "https"}})

    async def events(self, request: Request) -> Response:
        self.note(request)
        if self.sending_key:
            return PlainTextResponse("Forbidden", status_code=401)
        domain = self._domain(request)
        if isinstance(domain, Response):
            return domain
        if self.events_hidden > 0:
            self.events_hidden -= 1
            return JSONResponse({"items": [], "paging": {}})
        wanted = request.query_params.get("message-id", "").strip("<>")
        kind = request.query_params.get("event", "")
        items = [{"event": "accepted", "id": uuid.uuid4().hex, "timestamp": a.at,
                  "recipient": a.recipient, "message": {"headers": {"message-id": a.provider_id}}}
                 for a in self.accepted
                 if (not wanted or a.provider_id == wanted) and kind in ("", "accepted")]
        return JSONResponse({"items": items, "paging": {}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v3/{domain}/messages.mime", self.send_mime, methods=["POST"]),
            Route("/v3/{domain}/events", self.events, methods=["GET"]),
            Route("/v3/domains/{domain}", self.domain_info, methods=["GET"]),
            Route("/v3/domains/{domain}/tracking", self.tracking, methods=["GET"]),
        ])


# --- Postmark -----------------------------------------------------------------------------
# Batch: POST /email/batch, a JSON array of up to 500 messages and up to 50 MB; the answer is
# 200 with one result per message, in order, each with its own ErrorCode:
#   https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
#   https://postmarkapp.com/developer/api/email-api#send-batch-emails
# A message "accepted, but delivery may be delayed" is answered without an ErrorCode (seen by
# django-anymail, issue #392, fixed in PR #412):
#   https://github.com/anymail/django-anymail/issues/392
# HTTP codes: 401 wrong token; 404 entity doesn't exist; 413 payload too large (10 MB for one
# email, 50 MB for a batch); 422 with {"ErrorCode": N, "Message": ...}; 429; 500:
#   https://postmarkapp.com/developer/api/overview
# ErrorCode 300 has more than one meaning: an invalid 'To' address, or a 'From' that is not a
# verified sender signature:
#   https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean
#   https://postmarkapp.com/support/article/troubleshooting-422-unprocessable-entity-errors
# 406 inactive recipient (hard bounce or spam complaint); 410 too many batch messages; 412
# account pending; 405 not allowed to send (API error-code list).
# MessageStream: "If not provided, message will default to the 'outbound' transactional
# stream"; stream ids are set when the stream is created. An unknown stream id is refused;
# Postmark's published list we could read does not give that answer's code, so this fake
# answers 422 with a Message naming the stream and the adapter must not rely on the code.
#   https://postmarkapp.com/support/article/1207-how-to-create-and-send-through-message-streams
# Message streams: GET /message-streams, GET /message-streams/{id}, with
# SubscriptionManagementConfiguration.UnsubscribeHandlingType (None, Postmark, Custom);
# broadcast streams default to Postmark's own unsubscribe link and headers unless the stream
# is set to "Manage unsubscribes on your own":
#   https://postmarkapp.com/developer/api/message-streams-api
#   https://postmarkapp.com/support/article/managing-your-own-unsubscribe-process
#   https://postmarkapp.com/support/article/1208-how-to-add-an-unsubscribe-link
# Server: GET /server -> TrackOpens, TrackLinks. "There is no way to disable open tracking on
# a per-email basis when the server's Open tracking setting is enabled"; message-level
# TrackLinks overrides the server's link tracking:
#   https://postmarkapp.com/developer/user-guide/tracking-opens/tracking-opens-per-email
#   https://postmarkapp.com/support/article/1058-how-do-i-enable-link-tracking
# Outbound message search: GET /messages/outbound?count=&offset=&recipient=&messagestream=
# &metadata_KEY=VALUE (count at most 500); each result has MessageID, Recipients, Metadata:
#   https://postmarkapp.com/developer/api/messages-api


@dataclass
class PostmarkStream:
    id: str
    type: str = "Broadcasts"                 # Transactional, Broadcasts, Inbound
    name: str = ""
    unsubscribe: str = "Custom"              # None, Postmark, Custom
    archived: bool = False


class Postmark(FakeProvider):
    """One Postmark server (its token, streams and settings) and the senders it may use."""

    DELAYED = "Message accepted, but delivery may be delayed."
    BATCH_BYTES = 50 * 1000 * 1000
    MESSAGE_BYTES = 10 * 1000 * 1000

    def __init__(self, token: str = "server-token",
                 streams: list[PostmarkStream] | None = None,
                 senders: tuple[str, ...] = ("example.org",)) -> None:
        super().__init__()
        self.token = token
        self.streams = {s.id: s for s in (streams or [
            PostmarkStream("outbound", "Transactional", "Default Transactional Stream", "None"),
            PostmarkStream("newsletter", "Broadcasts", "Partner newsletter", "Custom")])}
        self.senders = senders              # verified sender signature domains or addresses
        self.track_opens = False            # the server's setting
        self.track_links = "None"
        self.inactive: set[str] = set()
        self.delayed: set[str] = set()
        self.invalid: set[str] = set()      # addresses Postmark refuses as invalid 'To'
        self.pending = False                # account pending approval
        self.search_hidden = 0              # searches that do not see new messages yet
        self.batch_sizes: list[int] = []    # bytes of each batch body received

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("x-postmark-server-token") != self.token:
            return JSONResponse({"ErrorCode": 10, "Message": "The Server Token you provided in "
                                 "the X-Postmark-Server-Token request header was invalid. "
                                 "Please verify that you are using a valid token."},
                                status_code=401)
        if request.headers.get("accept") != "application/json":
            return JSONResponse({"ErrorCode": 409, "Message": "JSON required."},
                                status_code=422)
        return None

    async def batch(self, request: Request) -> Response:
        self.note(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        with self.lock:
            self.sends += 1
        forced = self.forced()
        if forced is not None:
            return forced
        if request.headers.get("content-type") != "application/json":
            return JSONResponse({"ErrorCode": 409, "Message": "JSON required."},
                                status_code=422)
        body = await request.body()
        self.batch_sizes.append(len(body))
        if len(body) > self.BATCH_BYTES:
            return JSONResponse({"ErrorCode": 413, "Message": "Payload Too Large"},
                                status_code=413)
        try:
            messages = json.loads(body)
        except ValueError:
            return JSONResponse({"ErrorCode": 402, "Message": "Invalid JSON"}, status_code=422)
        if not isinstance(messages, list):
            return JSONResponse({"ErrorCode": 403, "Message": "Incompatible JSON"},
                                status_code=422)
        if len(messages) > 500:
            return JSONResponse({"ErrorCode": 410, "Message": "Too many batch messages "
                                 f"({len(messages)}); the maximum is 500."}, status_code=422)
        stream_ids = {m.get("MessageStream") or "outbound" for m in messages}
        for stream_id in stream_ids:
            stream = self.streams.get(stream_id)
            if stream is None or stream.archived or stream.type == "Inbound":
                return JSONResponse({"ErrorCode": 1235, "Message": f"The message stream "
                                     f"'{stream_id}' does not exist on this server."},
                                    status_code=422)
        answers = [self._one(m) for m in messages]
        await self.answer_late()
        return JSONResponse(answers)

    def _one(self, m: dict) -> dict:
        to = m.get("To", "")
        address = email.utils.parseaddr(to)[1].lower()
        sender = email.utils.parseaddr(m.get("From", ""))[1].lower()
        if len(json.dumps(m).encode()) > self.MESSAGE_BYTES:
            return {"ErrorCode": 300, "Message": "Message size exceeds the 10 MB limit."}
        if not m.get("TextBody") and not m.get("HtmlBody"):
            return {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody "
                    "or both."}
        if sender.split("@")[-1] not in self.senders and sender not in self.senders:
            return {"ErrorCode": 300, "Message": f"Invalid 'From' address: '{sender}' is not "
                    "a verified sender signature."}
        if not address or "@" not in address or address in self.invalid:
            return {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}
        metadata = m.get("Metadata") or {}
        if (not isinstance(metadata, dict) or len(metadata) > 10
                or any(len(k) > 20 or len(str(v)) > 80 for k, v in metadata.items())):
            return {"ErrorCode": 300, "Message": "Invalid metadata content. Metadata may have "
                    "at most 10 fields, names up to 20 characters, values up to 80."}
        if m.get("TrackLinks", "None") not in ("None", "HtmlAndText", "HtmlOnly", "TextOnly"):
            return {"ErrorCode": 300, "Message": "Invalid 'TrackLinks' value."}
        if self.pending and address.split("@")[-1] not in self.senders:
            return {"ErrorCode": 412, "Message": "While your account is pending approval, all "
                    "recipient addresses must share the same domain as the 'From' address."}
        if address in self.inactive:
            return {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have "
                    "been marked as inactive. Found inactive addresses: " + address
                    + ". Inactive recipients are ones that have generated a hard bounce or a "
                    "spam complaint.", "To": to}
        message_id = str(uuid.uuid4())
        self.accepted.append(Accepted(address, message_id, m, self._delivered(m),
                                      dict(metadata)))
        answer = {"To": to, "SubmittedAt": "2026-03-17T10:00:00.0000000Z",
                  "MessageID": message_id}
        if address in self.delayed:
            return {**answer, "Message": self.DELAYED}
        return {**answer, "ErrorCode": 0, "Message": "OK"}

    def _delivered(self, m: dict) -> EmailMessage:
        stream = self.streams[m.get("MessageStream") or "outbound"]
        headers = [("From", m["From"]), ("To", m["To"]), ("Subject", m.get("Subject", ""))]
        if m.get("ReplyTo"):
            headers.append(("Reply-To", m["ReplyTo"]))
        custom = [(h["Name"], h["Value"]) for h in m.get("Headers") or []]
        html, text = m.get("HtmlBody") or "", m.get("TextBody") or ""
        if stream.type == "Broadcasts" and stream.unsubscribe == "Postmark":
            # Postmark's own link and RFC 8058 headers, which replace any we sent.
            link = f"https://pm-unsubscribe.example/{uuid.uuid4().hex}"
            custom = [(k, v) for k, v in custom
                      if k.lower() not in ("list-unsubscribe", "list-unsubscribe-post")]
            custom += [("List-Unsubscribe", f"<{link}>"),
                       ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
            html += f'<p><a href="{link}">Unsubscribe</a></p>'
            text += f"\nUnsubscribe: {link}\n"
        links = m.get("TrackLinks", "None") if "TrackLinks" in m else self.track_links
        if links != "None":
            html, text = rewrite_links(html, text,
                                       lambda u: f"https://click.pstmrk.it/{uuid.uuid4().hex}")
        if self.track_opens or m.get("TrackOpens"):
            html += f'<img src="https://pstmrk.it/open/{uuid.uuid4().hex}">'
        return compose(headers + custom, text, html)

    async def server(self, request: Request) -> Response:
        self.note(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        return JSONResponse({"ID": 1, "Name": "Partner newsletter", "TrackOpens":
                             self.track_opens, "TrackLinks": self.track_links,
                             "DeliveryType": "Live"})

    def _stream_json(self, s: PostmarkStream) -> dict:
        return {"ID": s.id, "ServerID": 1, "Name": s.name or s.id, "Description": None,
                "MessageStreamType": s.type, "CreatedAt": "2026-01-01T00:00:00-05:00",
                "UpdatedAt": None, "ArchivedAt": "2026-02-01T00:00:00-05:00" if s.archived
                else None, "ExpectedPurgeDate": None,
                "SubscriptionManagementConfiguration": {"UnsubscribeHandlingType":
                                                        s.unsubscribe}}

    async def stream(self, request: Request) -> Response:
        self.note(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        stream = self.streams.get(request.path_params["stream"])
        if stream is None:
            return JSONResponse({"ErrorCode": 1226, "Message": "The message stream for the "
                                 "provided 'ID' was not found."}, status_code=404)
        return JSONResponse(self._stream_json(stream))

    async def stream_list(self, request: Request) -> Response:
        self.note(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        kind = request.query_params.get("MessageStreamType", "All")
        archived = request.query_params.get("IncludeArchivedStreams", "false") == "true"
        streams = [self._stream_json(s) for s in self.streams.values()
                   if kind in ("All", s.type) and (archived or not s.archived)]
        return JSONResponse({"MessageStreams": streams, "TotalCount": len(streams)})

    async def search(self, request: Request) -> Response:
        self.note(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        q = request.query_params
        if "count" not in q or "offset" not in q or int(q["count"]) > 500:
            return JSONResponse({"ErrorCode": 300, "Message": "count and offset are required; "
                                 "count at most 500."}, status_code=422)
        if self.search_hidden > 0:
            self.search_hidden -= 1
            return JSONResponse({"TotalCount": 0, "Messages": []})
        found = []
        for a in self.accepted:
            m = a.request
            if q.get("recipient") and q["recipient"].lower() != a.recipient:
                continue
            if q.get("messagestream") and q["messagestream"] != (m.get("MessageStream")
                                                                  or "outbound"):
                continue
            if any(a.metadata.get(k[len("metadata_"):]) != v for k, v in q.items()
                   if k.startswith("metadata_")):
                continue
            found.append({"MessageID": a.provider_id, "Recipients": [a.recipient],
                          "Subject": m.get("Subject"), "Status": "Sent",
                          "MessageStream": m.get("MessageStream") or "outbound",
                          "Metadata": a.metadata})
        offset, count = int(q["offset"]), int(q["count"])
        return JSONResponse({"TotalCount": len(found), "Messages": found[offset:offset + count]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/email/batch", self.batch, methods=["POST"]),
            Route("/server", self.server, methods=["GET"]),
            Route("/message-streams", self.stream_list, methods=["GET"]),
            Route("/message-streams/{stream}", self.stream, methods=["GET"]),
            Route("/messages/outbound", self.search, methods=["GET"]),
        ])


# --- SendGrid -----------------------------------------------------------------------------
# v3 Mail Send: POST /v3/mail/send (global) or https://api.eu.sendgrid.com (EU regional
# subusers); `personalizations` and `from` required; `content` values at least one
# character, text/plain first then text/html; `headers` may not set the reserved headers
# x-sg-id, x-sg-eid, received, dkim-signature, Content-Type, Content-Transfer-Encoding, To,
# From, Subject, Reply-To, CC, BCC; `tracking_settings` (click_tracking, open_tracking,
# subscription_tracking, ganalytics) set per message; 202 Accepted with X-Message-Id:
#   https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
# Rate limits: every answer carries X-RateLimit-Limit, X-RateLimit-Remaining and
# X-RateLimit-Reset (a Unix time), and a 429 says {"errors": [{"field": null, "message":
# "too many requests"}]}; there is no Retry-After:
#   https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits
# 401 "The provided authorization grant is invalid, expired, or revoked" (a wrong key); 403
# "The from address does not match a verified Sender Identity..." (an unverified sender):
#   https://support.sendgrid.com/hc/en-us/articles/18322114821403-4XX-API-Errors-and-Troubleshooting-Suggestions
#   https://www.twilio.com/docs/api/errors/60222
# Subscription tracking adds SendGrid's own unsubscribe links to the bottom of each message;
# Google Analytics tracking adds utm parameters to every link:
#   https://twilio.com/docs/sendgrid/api-reference/settings-tracking/update-subscription-tracking-settings

SENDGRID_RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                     "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc",
                     "bcc"}


class Sendgrid(FakeProvider):
    """A SendGrid account: its key, verified senders and account-level tracking settings."""

    SIZE = 30 * 1000 * 1000

    def __init__(self, key: str = "SG.test", senders: tuple[str, ...] = ("example.org",),
                 scopes: tuple[str, ...] = ("mail.send",)) -> None:
        super().__init__()
        self.key = key
        self.senders = senders
        self.scopes = scopes
        # Account settings a new SendGrid account often has on; a request overrides them.
        self.tracking = {"click_tracking": True, "open_tracking": True,
                         "subscription_tracking": True, "ganalytics": True}
        self.invalid: set[str] = set()

    @staticmethod
    def error(status: int, message: str, field_name: str | None = None,
              headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"errors": [{"message": message, "field": field_name,
                                         "help": None}]}, status_code=status, headers=headers)

    async def mail_send(self, request: Request) -> Response:
        self.note(request)
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return self.error(401, "The provided authorization grant is invalid, expired, or "
                              "revoked")
        if "mail.send" not in self.scopes:
            return self.error(403, "access forbidden")
        with self.lock:
            self.sends += 1
        forced = self.forced()
        if forced is not None:
            return forced
        body = await request.body()
        if len(body) > self.SIZE:
            return self.error(413, "The JSON payload you have included in your request is too "
                              "large.")
        try:
            p = json.loads(body)
        except ValueError:
            return self.error(400, "Bad Request")
        problem = self._check(p)
        if problem is not None:
            return problem
        sender = p["from"]["email"].lower()
        if sender.split("@")[-1] not in self.senders and sender not in self.senders:
            return self.error(403, "The from address does not match a verified Sender Identity. "
                              "Mail cannot be sent until this error is resolved. Visit "
                              "https://sendgrid.com/docs/for-developers/sending-email/"
                              "sender-identity/ to see the Sender Identity requirements", "from")
        message_id = uuid.uuid4().hex[:22]
        for personalization in p["personalizations"]:
            for to in personalization["to"]:
                self.accepted.append(Accepted(to["email"].lower(), message_id, p,
                                              self._delivered(p, to)))
        await self.answer_late()
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    def _check(self, p: Any) -> Response | None:
        if not isinstance(p, dict) or not p.get("personalizations"):
            return self.error(400, "The personalizations field is required and must have at "
                              "least one personalization.", "personalizations")
        if len(p["personalizations"]) > 1000:
            return self.error(400, "The personalizations field may have at most 1000 "
                              "personalizations.", "personalizations")
        for i, personalization in enumerate(p["personalizations"]):
            for j, to in enumerate(personalization.get("to") or []):
                address = str(to.get("email", "")).lower()
                if "@" not in address or address in self.invalid:
                    return self.error(400, "Does not contain a valid address.",
                                      f"personalizations.{i}.to.{j}.email")
        if not isinstance(p.get("from"), dict) or not p["from"].get("email"):
            return self.error(400, "The from object must be provided for every email send.",
                              "from")
        if not p.get("subject") and not all(x.get("subject") for x in p["personalizations"]):
            return self.error(400, "The subject is required.", "subject")
        content = p.get("content") or []
        if any(not isinstance(c.get("value"), str) or not c["value"] for c in content):
            return self.error(400, "The content value must be a string at least one character "
                              "in length.", "content.0.value")
        types = [c.get("type") for c in content]
        if "text/html" in types and "text/plain" in types and types.index("text/plain") > \
                types.index("text/html"):
            return self.error(400, "If present, text/plain and text/html may only be provided "
                              "once, in that order, as the first indices of the content "
                              "array.", "content")
        headers = p.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str)
                                                    for v in headers.values()):
            return self.error(400, "Invalid type. Expected: object, given: array.", "headers")
        reserved = sorted(k for k in headers if k.lower() in SENDGRID_RESERVED)
        if reserved:
            return self.error(400, f"The following headers are reserved and cannot be set: "
                              f"{', '.join(reserved)}", "headers")
        settings = p.get("tracking_settings") or {}
        for name, value in settings.items():
            if name not in self.tracking or not isinstance(value, dict) or \
                    not isinstance(value.get("enable", False), bool):
                return self.error(400, "Invalid type. Expected: boolean.",
                                  f"tracking_settings.{name}.enable")
        return None

    def _delivered(self, p: dict, to: dict) -> EmailMessage:
        settings = p.get("tracking_settings") or {}

        def on(name: str) -> bool:
            return bool(settings.get(name, {}).get("enable", self.tracking[name]))

        sender = p["from"]
        headers = [("From", email.utils.formataddr((sender.get("name", ""), sender["email"]))),
                   ("To", email.utils.formataddr((to.get("name", ""), to["email"]))),
                   ("Subject", p.get("subject", ""))]
        if p.get("reply_to"):
            headers.append(("Reply-To", p["reply_to"]["email"]))
        custom = list((p.get("headers") or {}).items())
        content = {c["type"]: c["value"] for c in p.get("content") or []}
        html, text = content.get("text/html", ""), content.get("text/plain", "")
        if on("ganalytics"):
            html, text = rewrite_links(html, text, lambda u: u + ("&" if "?" in u else "?")
                                       + "utm_source=sendgrid.com&utm_medium=email")
        if on("click_tracking"):
            html, text = rewrite_links(html, text,
                                       lambda u: f"https://u1.ct.sendgrid.net/ls/click?{uuid.uuid4().hex}")
        if on("open_tracking"):
            html += f'<img src="https://u1.ct.sendgrid.net/wf/open?{uuid.uuid4().hex}">'
        if on("subscription_tracking"):
            link = f"https://u1.ct.sendgrid.net/asm/unsubscribe/?{uuid.uuid4().hex}"
            custom = [(k, v) for k, v in custom if k.lower() != "list-unsubscribe"]
            custom.append(("List-Unsubscribe", f"<{link}>"))
            html += f'<p><a href="{link}">Unsubscribe</a></p>'
            text += f"\nUnsubscribe: {link}\n"
        return compose(headers + custom, text, html)

    def rate_limited(self, reset_in: float) -> tuple[int, dict[str, str], Any]:
        """A documented 429 answer for ``script``: the window resets ``reset_in`` s from now."""
        return (429, {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-Reset": str(int(time.time() + reset_in + 0.999))},
                {"errors": [{"field": None, "message": "too many requests"}]})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v3/mail/send", self.mail_send, methods=["POST"])])
