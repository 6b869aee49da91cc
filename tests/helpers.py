"""Helpers shared by tests (plain functions and constants; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from newsletter import send as sending
from newsletter.adapters.base import Adapter, AdapterSettings, Outcome, load_adapter
from newsletter.db import deliveries, open_db, recipients
from newsletter.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.project import Project
from newsletter.sendloop import Control, LoopOptions, SendLoop, deliver_batch
from newsletter.tracking.tokens import Signer

# --- reading what was sent --------------------------------------------------------------
# Messages are read back twice: by Python's email package and by Perl's Email::MIME (Debian's
# libemail-mime-perl), an independent implementation of RFC 2047 and MIME.

_PERL_PARSER = r"""
use strict; use warnings;
use Email::MIME; use JSON::PP;
local $/; my $raw = <STDIN>;
my $email = Email::MIME->new($raw);
sub mailboxes {
    my ($name) = @_;
    my $header = $email->header_as_obj($name) or return [];
    return [map { { name => $_->phrase // "", address => $_->address } } $header->addresses];
}
sub text { my $value = $email->header_str($_[0]); return $value // ""; }
my %out = (
    subject => text("Subject"),
    from => mailboxes("From"), to => mailboxes("To"),
    list_id => text("List-Id"), message_id => text("Message-ID"),
    list_unsubscribe => text("List-Unsubscribe"),
    parts => [map { { type => $_->content_type =~ s/;.*//sr, body => $_->body_str } }
              $email->subparts],
);
print JSON::PP->new->utf8->canonical->encode(\%out);
"""


def perl_parse(raw: bytes) -> dict:
    """The message as Perl's Email::MIME reads it: decoded headers, mailboxes and parts."""
    perl = shutil.which("perl")
    assert perl, "perl is missing"
    done = subprocess.run([perl, "-e", _PERL_PARSER], input=raw, capture_output=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    data = json.loads(done.stdout)
    for part in data["parts"]:
        part["body"] = part["body"].replace("\r\n", "\n")
    return data


def python_parse(raw: bytes) -> EmailMessage:
    """The message as Python's email package reads it (the modern API)."""
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def python_mailboxes(raw: bytes, header: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of ``header``, decoded by RFC 2047's rules.

    Not ``policy.default``'s address parser: before CPython gh-128110 it keeps the space
    between two adjacent encoded-words of a display name, which RFC 2047 6.2 says to drop.
    """
    value = message_from_bytes(raw, policy=policy.compat32)[header]
    return [(str(make_header(decode_header(name))), address)
            for name, address in getaddresses([value])]


# --- line limits ------------------------------------------------------------------------

ENCODED_WORD_RE = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def line_problems(raw: bytes) -> list[str]:
    """Every place ``raw`` breaks a line limit we promise.

    Header lines at most 78 characters unless the line is one unbreakable item (a long URL);
    encoded-words at most 75 (RFC 2047 2); body lines at most 76 (quoted-printable, RFC 2045
    6.7); every line at most 998 (RFC 5322 2.1.1); CRLF line ends only.
    """
    problems = []
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"\n" in raw.replace(b"\r\n", b""):
        problems.append("a bare LF line end")
    for line in head.split(b"\r\n"):
        value = line if line[:1] in (b" ", b"\t") else line.partition(b":")[2]
        if len(line) > 78 and (len(value.split()) != 1 or ENCODED_WORD_RE.search(value)):
            problems.append(f"header line of {len(line)} characters: {line[:60]!r}...")
        for word in ENCODED_WORD_RE.findall(line):
            if len(word) > 75:
                problems.append(f"encoded-word of {len(word)} characters: {word!r}")
    for line in body.split(b"\r\n"):
        if len(line) > 76:
            problems.append(f"body line of {len(line)} characters: {line[:60]!r}...")
    return problems

MINIMAL_ISSUE = """\
slug: draft
edition: Spring 2027
title: Prevent Partner Newsletter
subject: Spring update
preheader: What is new this season.
date: 2027-03-17
sender:
  name: Kent and Medway Prevent Team
  email: prevent-team@example.org
sections:
  - type: article
    heading: Welcome
    body: |
      Hello partners. Read the [Prevent duty guidance](https://www.example.org/guidance).
footer:
  sender: Kent and Medway Prevent Team
  reason: You are a Prevent partner.
  privacy_url: https://www.example.org/privacy
"""


BOUNCE_CORPUS = Path(__file__).resolve().parent / "bounces"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ImapServer:
    """A running Dovecot: where it listens, its one user, and its CA's PEM file."""

    host: str
    port: int
    user: str
    password: str
    ca_file: str
    log: Path
    starttls_port: int = 0

    def url(self, folder: str = "INBOX") -> str:
        """``NEWSLETTER_BOUNCE_IMAP_URL`` for ``folder``."""
        return f"imaps://{self.user}@{self.host}:{self.port}/{folder}"

    def _connect(self):  # type: ignore[no-untyped-def]
        import imaplib
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file)
        conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=10)
        conn.login(self.user, self.password)
        return conn

    def new_folder(self, name: str) -> str:
        """Create an empty folder (one per test, so tests on one server stay apart)."""
        with self._connect() as conn:
            status, data = conn.create(name)
            assert status == "OK", data
        return name

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver ``raw`` into ``folder`` through IMAP APPEND, as a mail server would."""
        with self._connect() as conn:
            status, data = conn.append(folder, None, None, raw)
            assert status == "OK", data

    def keywords(self, folder: str) -> list[bytes]:
        """The FLAGS of every message in ``folder``, in order."""
        with self._connect() as conn:
            conn.select(folder, readonly=True)
            status, data = conn.fetch("1:*", "(FLAGS)")
            return [item for item in data if item] if status == "OK" else []


_DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


@contextlib.contextmanager
def dovecot(*, user: str = "bounces", password: str = "imap-test-password"
            ) -> Iterator[ImapServer]:
    """Run Debian's Dovecot on 127.0.0.1 with a throwaway config and a trustme certificate.

    Its files live in a new folder under /tmp (not pytest's tmp_path, whose parents only root
    may enter: Dovecot's own processes run as unprivileged users), removed afterwards.
    """
    import tempfile

    import trustme

    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        raise RuntimeError("dovecot is not installed: run scripts/install-system-deps.sh")
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "users").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    if os.geteuid() == 0:
        # Dovecot refuses mail access as root: the mail belongs to an unprivileged account.
        account = pwd.getpwnam("nobody")
        internal = "dovecot"
    else:
        account = pwd.getpwuid(os.geteuid())
        internal = account.pw_name
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(exist_ok=True)
    if os.geteuid() == 0:
        for sub in ("mail", "home"):
            os.chown(root / sub, account.pw_uid, account.pw_gid)
    os.chmod(root, 0o755)
    os.chmod(root / "users", 0o644)
    port, starttls_port = free_port(), free_port()
    group = internal if os.geteuid() == 0 else _group_name(account.pw_gid)
    (root / "dovecot.conf").write_text(_DOVECOT_CONF.format(
        root=root, user=internal, group=group, uid=account.pw_uid, gid=account.pw_gid,
        port=port, starttls_port=starttls_port))
    process = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() \
                    else ""
                raise RuntimeError(f"dovecot stopped at start:\n{output}\n{log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("dovecot did not listen within 20 seconds")
            time.sleep(0.05)
        yield ImapServer("127.0.0.1", port, user, password, str(root / "ca.pem"),
                         root / "dovecot.log", starttls_port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(root, ignore_errors=True)


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def mailgun_env(url: str, key: str = "key-test", domain: str = "mg.example.org") -> dict:
    return {"MAILGUN_API_KEY": key, "MAILGUN_DOMAIN": domain, "MAILGUN_API_URL": url}


def postmark_env(url: str, token: str = "server-token", stream: str = "newsletter") -> dict:
    env = {"POSTMARK_SERVER_TOKEN": token, "POSTMARK_API_URL": url}
    if stream:
        env["POSTMARK_MESSAGE_STREAM"] = stream
    return env


def sendgrid_env(url: str, key: str = "SG.test") -> dict:
    return {"SENDGRID_API_KEY": key, "SENDGRID_API_URL": url}


def prepare_send(project_root: Path, env: dict[str, str], adapter: str,
                 lists: tuple[str, ...] = ("schools", "councils")) -> sending.Prepared:
    """``send.prepare`` for the sample issue, as the CLI calls it (the fake providers and
    the tracker run on 127.0.0.1, hence a local tracking URL)."""
    return sending.prepare(Project.load(project_root), "2026-spring", lists, adapter=adapter,
                           env=env, allow_local_tracking=True)


def run_send(project_root: Path, env: dict[str, str], adapter: str, timeout: float = 30.0,
             **options) -> sending.RunResult:  # type: ignore[no-untyped-def]
    """Prepare and run a send of the sample issue; ``timeout`` is the adapter's read timeout."""
    prepared = prepare_send(project_root, env, adapter)
    prepared.settings.timeout = timeout
    try:
        return sending.run(prepared, LoopOptions(retry_delay=0, **options))
    finally:
        prepared.close()


def ledger_rows(project_root: Path) -> dict[str, dict]:
    """Every delivery row of the project's ledger, by recipient address."""
    database = open_db(Project.load(project_root).db_url())
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(sa.select(recipients.c.address, deliveries).join(
                deliveries, deliveries.c.recipient_id == recipients.c.id))
            return {r.address: dict(r._mapping) for r in rows}
    finally:
        database.close()


def messages(project_root: Path, built, addresses: list[str],  # type: ignore[no-untyped-def]
             test: bool = False) -> list[OutgoingMessage]:
    """Messages of the built issue ``built`` to ``addresses`` (one list, made-up pseudonyms)."""
    factory = MessageFactory(built, Project.load(project_root), Signer({"k": b"s"}, "k"),
                             test=test)
    return [factory.make(Recipient(a, "", f"p{i}", f"<m{i}.spring@example.org>", "schools"))
            for i, a in enumerate(addresses)]


class Driven:
    """An adapter driven as a send-loop worker drives it (``sendloop.deliver_batch``: in
    turn, answers classified, 429 pauses, stopping), without a ledger.

    ``attempt(message)`` and ``send_batch(messages)`` give the answers, None for a message
    not tried because the run stopped (``control.stop_reason`` says why). Other attributes
    are the adapter's.
    """

    def __init__(self, adapter: Adapter, pause_after: int = 0) -> None:
        self.adapter = adapter
        self.control = Control(pause_after=pause_after)
        adapter.stopping = self.control.stop_event

    def send_batch(self, messages: list[OutgoingMessage]) -> list[Outcome | None]:
        answers: list[Outcome | None] = []
        for batch in SendLoop.batches(self.adapter, messages):
            answers += deliver_batch(self.adapter, batch, self.control)
        return answers

    def attempt(self, message: OutgoingMessage) -> Outcome | None:
        (answer,) = self.send_batch([message])
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


def adapter(name: str, project_root: Path, env: dict[str, str], timeout: float = 30.0,
            ) -> Driven:
    """An opened adapter of kind ``name``, driven as the loop does, never pausing the run."""
    made = load_adapter(name)(AdapterSettings(root=project_root, env=env, timeout=timeout))
    made.open()
    return Driven(made)


# --- tokens as the code before encrypted tokens made them --------------------------------


def legacy_token(secret: bytes, kid: str, kind: str, issue: str, link: str = "",
                 who: str = "") -> str:
    """A token exactly as the code before tokens were encrypted made it: readable base64 of
    the payload, a dot, a 12-byte HMAC-SHA256. ``who`` is ``r:PSEUDONYM``, ``l:LIST`` or ''."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    payload = "\x1f".join((kid, kind, issue, link, who)).encode("utf-8")
    return b64(payload) + "." + b64(hmac.new(secret, payload, hashlib.sha256).digest()[:12])


# --- the bounce corpus's recipients -----------------------------------------------------------

CORPUS_KEY = b"corpus-test-key"      # the key the corpus's VERP tags were made with
CORPUS_ISSUE = "2026-spring"
CORPUS_DOMAIN = "prevent-newsletter.example.org"
CORPUS_BOUNCE_ADDRESS = f"bounces@{CORPUS_DOMAIN}"
# recipient id -> address, as the corpus's tags and Message-IDs (<2026-spring.p000N@...>) name them
CORPUS_RECIPIENTS = {
    1: "safeguarding-lead@school1.example.org",
    2: "dsl@academy2.example.org",
    3: "partnership-office@kscmp.example.org",
    4: "prevent-education@kcc.example.org",
    5: "adult-safeguarding@care1.example.org",
    6: "safeguarding@charity1.example.org",
    7: "communications@kcc.example.org",
    8: "board-office@kmsab.example.org",
}


def seed_corpus_sends(database, issues: tuple[str, ...] = (CORPUS_ISSUE,),  # type: ignore[no-untyped-def]
                      sent_at: float = 1_776_154_000.0, lists: dict[int, str] | None = None
                      ) -> None:
    """The recipients the bounce corpus is about, each sent every one of ``issues`` (one day
    apart, the last at ``sent_at``), through the list ``lists[id]`` (default kscmp)."""
    from newsletter import db

    lists = lists or {}
    with database.engine.begin() as conn:
        conn.execute(db.recipients.insert(), [
            {"id": rid, "address": address, "pseudonym": f"p{rid:04d}", "name": "Lead",
             "organisation": address.split("@")[1].split(".")[0], "domain":
             address.split("@")[1], "created_at": sent_at - 10 * 86400}
            for rid, address in CORPUS_RECIPIENTS.items()])
        for age, slug in enumerate(reversed(issues)):
            at = sent_at - age * 86400
            conn.execute(db.issues.insert().values(
                slug=slug, subject=f"Newsletter {slug}", tracking="aggregate",
                created_at=at, updated_at=at))
            conn.execute(db.deliveries.insert(), [
                {"issue": slug, "recipient_id": rid, "status": "sent", "pseudonym": f"p{rid:04d}",
                 "message_id": f"<{slug}.p{rid:04d}@{CORPUS_DOMAIN}>", "sent_at": at,
                 "updated_at": at} for rid in CORPUS_RECIPIENTS])
            conn.execute(db.delivery_lists.insert(), [
                {"issue": slug, "recipient_id": rid, "list_key": lists.get(rid, "kscmp")}
                for rid in CORPUS_RECIPIENTS])


def corpus_with_tags(codec) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The corpus with its VERP tags remade by ``codec`` (a project's own key)."""
    from newsletter.bounces.verp import VerpCodec

    original = VerpCodec([CORPUS_KEY])
    swaps = {original.tag(CORPUS_ISSUE, rid).encode(): codec.tag(CORPUS_ISSUE, rid).encode()
             for rid in CORPUS_RECIPIENTS}
    messages = []
    for path in sorted(BOUNCE_CORPUS.glob("*.eml")):
        raw = path.read_bytes()
        for old, new in swaps.items():
            raw = raw.replace(old, new)
        messages.append(raw)
    return messages


# --- provider webhooks, signed as each provider documents -------------------------------------


def mailgun_body(event_data: dict, *, key: str, timestamp: float,  # type: ignore[type-arg]
                 token: str = "a" * 50) -> bytes:
    """A Mailgun webhook body, signed as
    https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks says:
    hex HMAC-SHA256 of timestamp + token with the webhook signing key."""
    import hashlib
    import hmac
    import json

    stamp = str(int(timestamp))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token,
                                     "signature": signature},
                       "event-data": event_data}).encode()


def public_key_setting(private) -> str:  # type: ignore[no-untyped-def]
    """SENDGRID_WEBHOOK_PUBLIC_KEY as SendGrid's dashboard shows it: base64 DER public key."""
    import base64

    from cryptography.hazmat.primitives import serialization

    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sendgrid_request(private, events: object, *, timestamp: float  # type: ignore[no-untyped-def]
                     ) -> tuple[dict[str, str], bytes]:
    """Headers and body signed as SendGrid's Signed Event Webhook documents
    (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features):
    ECDSA P-256 with SHA-256 over timestamp + body, base64 DER signature."""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    body = json.dumps(events).encode()
    stamp = str(int(timestamp))
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return ({"x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
             "x-twilio-email-event-webhook-timestamp": stamp}, body)


def basic_auth(user: str, password: str) -> dict[str, str]:
    """HTTP basic auth, as Postmark sends the credentials put in the webhook URL
    (https://postmarkapp.com/developer/webhooks/webhooks-overview)."""
    import base64

    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- an SMTP server that keeps the envelope ---------------------------------------------------


class EnvelopeRecorder:
    """An aiosmtpd handler that keeps each accepted (MAIL FROM, RCPT TO, message) and refuses
    the addresses in ``refuse`` at RCPT with the reply given there."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, str, bytes]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        for rcpt in envelope.rcpt_tos:
            self.accepted.append((envelope.mail_from, rcpt, envelope.original_content))
        return "250 2.0.0 queued"


@contextlib.contextmanager
def envelope_smtp() -> Iterator[tuple[EnvelopeRecorder, str]]:
    """A real aiosmtpd server on 127.0.0.1: (recorder, NEWSLETTER_SMTP_URL)."""
    from aiosmtpd.controller import Controller

    recorder = EnvelopeRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, f"smtp://127.0.0.1:{port}?timeout=5"
    finally:
        controller.stop()


# --- the real tracker -------------------------------------------------------------------


def wait_for_port(port: int, process: subprocess.Popen, limit: float = 30.0) -> None:
    """Wait until something accepts connections on ``port``; fail if ``process`` exits first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early: {process.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing opened port {port}")


def start_tracker(url: str, folder: Path, port: int, *options: str) -> subprocess.Popen:
    """`newsletter track serve` on ``port`` with its journal in ``folder``/journal, in a session
    of its own (so a test can kill it with all its workers), once it accepts connections."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NEWSLETTER_DB", "NEWSLETTER_SECRET_KEY")}
    command = [shutil.which("newsletter") or "newsletter", "track", "serve",
               "--port", str(port), "--db", url, "--journal", str(folder / "journal"), *options]
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_port(port, process)
    return process


def stop_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started by :func:`start_tracker` and everything in its session.

    The group is killed even when its leader is gone: workers that outlived it (the failure
    a test is looking for) must not outlive the test, or hold its pipes open."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, 9)
    process.communicate()


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # the command name, in parentheses, may hold spaces: the fields follow its end
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --- images and the public side -------------------------------------------------------


def picture(width: int, height: int, image_format: str = "PNG", *, noise: bool = False,
            exif: bytes | None = None, frames: int = 1) -> bytes:
    """An image file's bytes made with Pillow: a gradient, or random noise (which does not
    compress) when ``noise``; ``exif`` adds camera metadata, ``frames`` > 1 an animation."""
    import io
    import random

    from PIL import Image

    if noise:
        rng = random.Random(width * 7919 + height)
        image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    else:
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    options: dict = {}
    if exif is not None:
        options["exif"] = exif
    if frames > 1:
        options.update(save_all=True, append_images=[image.rotate(90 * i)
                                                     for i in range(1, frames)])
    image.save(out, format=image_format, **options)
    return out.getvalue()


def gps_exif() -> bytes:
    """EXIF naming a camera and a place, as a phone writes into a photo."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "ExampleCam"           # Make
    exif[0x8825] = {1: "N", 2: (51.0, 16.0, 30.0)}   # GPSInfo: latitude
    return exif.tobytes()


def use_image(issue: Path, text: str, image_path: str) -> None:
    """Point the sample issue's article image at ``image_path``."""
    issue.write_text(text.replace("src: images/small-steps.png", f"src: {image_path}"),
                     encoding="utf-8")


class AsgiClient:
    """A synchronous front to httpx's in-process ASGI transport (one event loop per request)."""

    def __init__(self, app, client: tuple[str, int] = ("203.0.113.7", 50123)) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.client = client
        self.headers = {"user-agent": "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"}

    def request(self, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        import asyncio

        import httpx

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=self.client)
            async with httpx.AsyncClient(transport=transport, base_url="http://tracker.test",
                                         headers=self.headers) as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.request("POST", path, **kwargs)


class TrackerClient(AsgiClient):
    """:class:`AsgiClient` as a browser at address ``client`` with user agent ``agent``."""

    def __init__(self, app, *, client: str = "203.0.113.7",  # type: ignore[no-untyped-def]
                 agent: str = "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0") -> None:
        super().__init__(app, (client, 50123))
        self.headers = {"user-agent": agent}


class DnsStub:
    """A tiny DNS server on 127.0.0.1 (UDP) answering TXT questions from ``records``
    (name -> strings); other names get NXDOMAIN. Stands in for the internet's DNS, which tests
    cannot reach. Use as a context manager; ``address`` is "127.0.0.1:PORT"."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        import threading

        self.records = {name.lower().rstrip("."): texts for name, texts in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DnsStub:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset

        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            texts = self.records.get(name)
            if texts is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            else:
                for text in texts:
                    reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT",
                                                            f'"{text}"'))
            self.sock.sendto(reply.to_wire(), peer)


# --- the sample project, the send project, the tracking fixture (used by conftest) ---

REPO = Path(__file__).resolve().parent.parent


SAMPLE_ISSUE = "2026-spring"


PROJECT_FILES = ("issues", "templates", "audiences", "images", "theme.yaml", "audiences.yaml",
                 "newsletter.yaml")


PUBLISHED_URL = "http://tracker.test"   # the in-process tracker client's base URL
TRACKING_SENT_AT = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC: when the fixture issue went out


def seed_tracking(database, sent_at: float = TRACKING_SENT_AT) -> None:  # type: ignore[no-untyped-def]
    """The fixture the tracking and report tests share (figures in tests/test_report.py).

    Issue ``spring`` (individual tracking, opens on): links a1 article, d1 download, e1 event,
    hp honeypot; recipients 1-5 sent, 6 failed. Lists: schools {1,2}, partners {1..5},
    police {3,4}, charities {6}. Issue ``autumn`` (aggregate): a1, d1; 1-4 sent; schools {1,2},
    police {3,4}. Issue ``draft``: registered, never sent.
    """
    from newsletter import db

    people = [
        (1, "ann@school.example", "Hill School", "school.example"),
        (2, "bob@school.example", "Hill School", "school.example"),
        (3, "cat@police.example", "County Police", "police.example"),
        (4, "dan@police.example", "County Police", "police.example"),
        (5, "eve@council.example", "County Council", "council.example"),
        (6, "fay@charity.example", "Helping Hands", "charity.example"),
    ]
    links = {
        "spring": [("a1", "https://example.org/review", "Read the review", "News", "article"),
                   ("d1", "https://example.org/guide.pdf", "Download the guide", "Resources",
                    "download"),
                   ("e1", "https://example.org/book", "Book a place", "Events", "event"),
                   ("hp", "https://example.org/hp", "", "", "honeypot")],
        "autumn": [("a1", "https://example.org/autumn", "Autumn news", "News", "article"),
                   ("d1", "https://example.org/autumn.pdf", "Autumn guide", "Resources",
                    "download")],
        "draft": [("a1", "https://example.org/draft", "Draft", "News", "article")],
    }
    with database.engine.begin() as conn:
        conn.execute(db.recipients.insert(), [
            {"id": i, "address": a, "pseudonym": f"p{i}", "name": a.split("@")[0],
             "organisation": o, "domain": d, "created_at": sent_at - 86400}
            for i, a, o, d in people])
        for slug, mode, opens in (("spring", "individual", True), ("autumn", "aggregate", False),
                                  ("draft", "individual", False)):
            conn.execute(db.issues.insert().values(
                slug=slug, subject=f"The {slug} issue", tracking=mode, opens=opens,
                web_html=f"<h1>The {slug} issue</h1>", created_at=sent_at, updated_at=sent_at))
            conn.execute(db.links.insert(), [
                {"issue": slug, "link_id": lid, "url": url, "text": text, "section": section,
                 "kind": kind, "tracked": True} for lid, url, text, section, kind in links[slug]])
        rows = [("spring", i, "sent" if i <= 5 else "failed") for i in range(1, 7)]
        rows += [("autumn", i, "sent") for i in range(1, 5)]
        conn.execute(db.deliveries.insert(), [
            {"issue": s, "recipient_id": i, "status": st, "message_id": f"<{s}.{i}@test>",
             "pseudonym": f"p{i}", "sent_at": sent_at if st == "sent" else None,
             "updated_at": sent_at}
            for s, i, st in rows])
        memberships = {"spring": {"schools": [1, 2], "partners": [1, 2, 3, 4, 5],
                                  "police": [3, 4], "charities": [6]},
                       "autumn": {"schools": [1, 2], "police": [3, 4]}}
        conn.execute(db.delivery_lists.insert(), [
            {"issue": s, "recipient_id": i, "list_key": key}
            for s, lists in memberships.items() for key, ids in lists.items() for i in ids])


SEND_AUDIENCES = """\
lists:
  schools:
    name: Schools
    members:
      - {email: Ann@School.example, name: Ann Lee, organisation: Hill School}
      - {email: bob@school.example, name: Bob Roe, organisation: Hill School}
      - {email: shared@council.example, name: Sam Shared, organisation: County Council}
  councils:
    name: Councils
    members_file: audiences/councils.csv
"""


SEND_CSV = ("email,name,organisation\n"
            "shared@council.example,Sam Shared,County Council\n"
            "cat@council.example,Cat Smith,County Council\n"
            "dan@district.example,,District Council\n")


SEND_ADDRESSES = {"ann@school.example", "bob@school.example", "shared@council.example",
                  "cat@council.example", "dan@district.example"}


def one_list(project: Path, key: str, addresses: list[str], organisation) -> Path:  # type: ignore[no-untyped-def]
    """Give ``project`` a single list ``key`` whose members (one per address) are in a CSV;
    ``organisation(i)`` names the i-th member's organisation."""
    rows = ["email,name,organisation"] + [f"{a},Reader {i},{organisation(i)}"
                                          for i, a in enumerate(addresses)]
    (project / "audiences" / f"{key}.csv").write_text("\n".join(rows) + "\n")
    (project / "audiences.yaml").write_text(
        f"lists:\n  {key}:\n    name: Everyone\n    members_file: audiences/{key}.csv\n")
    return project


class SmtpRecorder:
    """An aiosmtpd handler that keeps every accepted message and can misbehave on purpose.

    ``faults[address]`` is a list of actions used one per attempt for that recipient:
    an SMTP reply such as ``"451 4.7.1 later"`` at RCPT, ``"data:552 ..."`` at the end of
    DATA, ``"drop"`` (close the connection after the data, before replying) or ``"stall"``
    (never answer the data).
    """

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.faults: dict[str, list[str]] = {}
        self.attempts: dict[str, int] = {}
        self.release = None  # an asyncio.Event set at teardown, ending stalls
        self.pipelining = False  # advertise PIPELINING (RFC 2920) in the EHLO answer
        self.greetings: list[str] = []   # the name each EHLO gave

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        self.greetings.append(hostname)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    def _next(self, address: str, stage: str) -> str | None:
        actions = self.faults.get(address)
        if not actions:
            return None
        action = actions[0]
        is_data = action in ("drop", "stall") or action.startswith("data:")
        if (stage == "data") != is_data:
            return None
        actions.pop(0)
        return action.removeprefix("data:")

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        self.attempts[address] = self.attempts.get(address, 0) + 1
        action = self._next(address, "rcpt")
        if action:
            return action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        import asyncio

        address = envelope.rcpt_tos[0]
        action = self._next(address, "data")
        if action == "drop":
            self.messages.append(envelope.original_content)   # it did arrive whole
            server.transport.close()
            return "250 OK"
        if action == "stall":
            if self.release is None:
                self.release = asyncio.Event()
            await self.release.wait()
            return "451 too late"
        if action:
            return action
        self.messages.append(envelope.original_content)
        return f"250 2.0.0 queued as {len(self.messages)}"

    def message_ids(self) -> list[str]:
        import email

        return [email.message_from_bytes(m)["Message-ID"] for m in self.messages]




def make_built(slug: str = "spring", tracking: str = "aggregate", opens: bool = False,
               subject: str = "Spring update: what’s new", html: str | None = None,
               text: str | None = None):  # type: ignore[no-untyped-def]
    """A small hand-made BuiltIssue (the build contract) for message and adapter tests."""
    import datetime as dt
    from types import SimpleNamespace

    from newsletter.links import Link
    from newsletter.model import Sender

    issue = SimpleNamespace(slug=slug, subject=subject, preheader="", language="en-GB",
                            sender=Sender("Prevent Team – Kent", "team@example.org",
                                          "replies@example.org"),
                            tracking=tracking, opens=opens, date=dt.date(2026, 3, 17))
    base = "http://127.0.0.1:8025"
    html = html if html is not None else (
        "<html><body><p>Dear {{name}},</p>"
        f'<p><a href="{base}/c/{{{{click:aaa111}}}}">Read the review</a> · '
        f'<a href="{base}/c/{{{{click:bbb222}}}}">Download</a></p>'
        + ("<p>" + "Long line of text. " * 30 + "</p>\n") * 3
        + "<p>.dot at start</p>\n.leading dot line\n"
        f'<p><a href="{base}/u/{{{{unsubscribe}}}}">Unsubscribe</a></p>'
        + (f'<img src="{base}/o/{{{{open}}}}" alt="">' if opens else "")
        + "</body></html>")
    text = text if text is not None else (
        "Dear {{name}},\n\nRead the review: " f"{base}/c/{{{{click:aaa111}}}}\n"
        ".a line starting with a dot\nCafé £5\n\n"
        f"Unsubscribe: {base}/u/{{{{unsubscribe}}}}\n")
    links = [Link("aaa111", "https://example.org/review", "Read the review", "news", "article",
                  True),
             Link("bbb222", "https://example.org/guide.pdf", "Download", "news", "download",
                  True)]
    return SimpleNamespace(issue=issue, html=html, text=text, web_html="<h1>web</h1>",
                           links=links, warnings=[], mjml="", dependencies=[],
                           email_images=[], assets_url="", tracking_url=base)


CHROMIUM = "/usr/bin/chromium"


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


ARTIFACTS = REPO / "test-artifacts"


class OwnPostgres:
    """A PostgreSQL cluster of one test's own (scripts/start-postgres.sh), to stop and start."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.url = ""

    def _script(self, *args: str) -> str:
        import os
        import subprocess

        env = {**os.environ, "NEWSLETTER_PG_DIR": str(self.folder),
               "NEWSLETTER_PG_PORT": str(self.port)}
        done = subprocess.run(["bash", str(REPO / "scripts" / "start-postgres.sh"), *args],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> None:
        self.url = self._script().strip().rpartition("=")[2]

    def stop(self) -> None:
        self._script("stop")


def zbarimg(path: Path) -> str:
    """What Debian's zbarimg (zbar-tools), a decoder independent of the QR library we make
    codes with, reads in the image at ``path``."""
    found = subprocess.run(["zbarimg", "--raw", "-q", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert found.returncode == 0, f"zbarimg read no code in {path}: {found.stderr}"
    return found.stdout.strip()


def seed_sent(database, slug: str, lists: dict[str, int], *, sent_at: float = 1_780_000_000.0,  # type: ignore[no-untyped-def]
              first_id: int = 1) -> list[str]:
    """Ledger rows of ``slug`` sent to ``lists`` (list key -> how many recipients, each
    ``r<id>@school.example``); returns their pseudonyms."""
    from newsletter import db

    rows, memberships, pseudonyms = [], [], []
    number = first_id
    for key, count in lists.items():
        for _ in range(count):
            rows.append(number)
            memberships.append({"issue": slug, "recipient_id": number, "list_key": key})
            number += 1
    with database.engine.begin() as conn:
        known = set(conn.execute(sa.select(recipients.c.id)).scalars())
        new = [{"id": i, "address": f"r{i}@school.example", "pseudonym": f"secret{i}",
                "organisation": "Hill School", "domain": "school.example",
                "created_at": sent_at} for i in rows if i not in known]
        if new:
            conn.execute(recipients.insert(), new)
        conn.execute(deliveries.insert(), [
            {"issue": slug, "recipient_id": i, "status": "sent", "message_id": f"<{slug}.{i}@t>",
             "pseudonym": f"{slug}-p{i}", "sent_at": sent_at, "updated_at": sent_at}
            for i in rows])
        conn.execute(db.delivery_lists.insert(), memberships)
        pseudonyms = [f"{slug}-p{i}" for i in rows]
    return pseudonyms


def with_default_sigint() -> None:
    """``preexec_fn`` for a child that must take Ctrl+C as a terminal would give it.

    A shell running a job in the background (``make test &``, some CI runners) ignores SIGINT,
    the child inherits that, and Python then never turns SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


_NGINX_WRAPPER = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{block}
}}
"""


def nginx_config(folder: Path, block: str) -> str:
    """An nginx.conf for a test's own nginx in ``folder`` (pid, logs and temp files there, in
    the foreground), around ``block``: the upstream and server blocks under test."""
    return _NGINX_WRAPPER.format(tmp=folder, block=block)
