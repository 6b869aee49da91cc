"""``newsletter doctor``: is this project ready for a real send? Each check says ok or what to do.

A check is a function taking the :class:`Context` and returning one :class:`Finding` or several,
registered with :func:`check`; they run in the order registered. A check that needs something
an earlier one found out (the tracker answering, the issue built) reads it from the context and
says "skipped" when it is missing. A ``problem`` blocks sending (exit code 1); a ``warning``
does not. Checks added by other parts of the program live in their own modules, listed in
:data:`CHECK_MODULES`, and register themselves the same way when imported.

Nothing here sends a message: the mail check logs in and says goodbye, the tracker checks read.
"""

from __future__ import annotations

import hmac
import importlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from newsletter.errors import NewsletterError
from newsletter.project import Project
from newsletter.settings import DEFAULT_TRACKING_URL, SETTINGS_FILE

if TYPE_CHECKING:
    from dns.resolver import Resolver

    from newsletter.settings import Settings

Status = Literal["ok", "problem", "warning", "skipped"]
HTTP_TIMEOUT = 5.0
DNS_TIMEOUT = 3.0


@dataclass(frozen=True)
class Finding:
    """One result: ``ok``, a ``problem`` that blocks sending, a ``warning``, or ``skipped``."""

    status: Status
    message: str
    fix: str = ""


@dataclass
class Context:
    """What the checks look at, and what they have found out so far."""

    project: Project
    issue: Path | None = None
    adapter: str = "maildir"
    db_url: str = ""
    allow_local_tracking: bool = False
    nameserver: tuple[str, int] | None = None
    http_timeout: float = HTTP_TIMEOUT
    dns_timeout: float = DNS_TIMEOUT
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.project.settings


Check = Callable[[Context], "Finding | Iterable[Finding]"]
CHECKS: list[tuple[str, Check]] = []
# Modules that register more checks when imported (bounce address, provider accounts...).
CHECK_MODULES: tuple[str, ...] = ("newsletter.bounces.doctor",)


def check(name: str) -> Callable[[Check], Check]:
    """Register a check under ``name``; checks run in the order they are registered."""
    def register(function: Check) -> Check:
        CHECKS.append((name, function))
        return function
    return register


def run(context: Context) -> list[tuple[str, Finding]]:
    """Every registered check's findings, in order. A check that fails unexpectedly is
    reported as a problem rather than stopping the others."""
    for module in CHECK_MODULES:
        importlib.import_module(module)
    results: list[tuple[str, Finding]] = []
    for name, function in CHECKS:
        try:
            found = function(context)
        except NewsletterError as exc:
            found = Finding("problem", exc.message, exc.hint)
        except Exception as exc:  # a bug in one check must not hide the others' answers
            found = Finding("problem", f"the check failed unexpectedly: "
                            f"{type(exc).__name__}: {exc}",
                            "this is a bug in newsletter, not in your settings; please report it")
        for finding in [found] if isinstance(found, Finding) else list(found):
            results.append((name, finding))
    return results


def _line(status: Status, message: str, fix: str = "") -> Finding:
    return Finding(status, message, fix)


# --- the checks, in the order a person would fix things --------------------------------


@check("settings")
def settings_present(context: Context) -> Finding:
    """newsletter.yaml exists and names where the tracker is."""
    project = context.project
    path = project.root / SETTINGS_FILE
    if not path.is_file():
        return _line("problem", f"no {SETTINGS_FILE} in {project.root}: every setting is a default "
                     f"(tracking_url {DEFAULT_TRACKING_URL})",
                     f"create {SETTINGS_FILE} with tracking_url, list_id and unsubscribe_mailto "
                     "(docs/issue-format.md, Settings)")
    from newsletter.db import shown_url

    settings = context.settings
    return _line("ok", f"{SETTINGS_FILE} read: tracking_url {settings.tracking_url}, adapter "
                 f"{context.adapter}, database {shown_url(context.db_url)}")


@check("issue")
def issue_builds(context: Context) -> Finding:
    """The issue to be sent builds without errors (its images included)."""
    if context.issue is None:
        return _line("skipped", "no issue in issues/ to check",
                     "give one: newsletter doctor ISSUE")
    from newsletter.build import build_issue
    from newsletter.errors import InvalidIssue

    try:
        built = build_issue(context.issue, context.project)
    except InvalidIssue as exc:
        errors = sum(1 for p in exc.problems if p.severity == "error")
        return _line("problem", f"{_shown(context.issue, context)} has {errors} error(s)",
                     f"run `newsletter check {_shown(context.issue, context)}` and fix them")
    context.facts["built"] = built
    return _line("ok", f"{_shown(context.issue, context)} builds ({len(built.links)} links, "
                 f"{len(built.email_images)} local image(s), {len(built.warnings)} warning(s))")


@check("tracking URL")
def tracking_url_public(context: Context) -> list[Finding]:
    """The tracking URL is https at a public name, and the tracker answers there."""
    import requests

    from newsletter.reachable import public_url_problems

    url = context.settings.tracking_url
    findings = []
    problems = public_url_problems(url)
    fix = ("set tracking_url in newsletter.yaml (or NEWSLETTER_TRACKING_URL) to the tracker's "
           "public https:// address (docs/deploy.md)")
    if problems:
        status: Status = "warning" if context.allow_local_tracking else "problem"
        findings.append(_line(status, f"{url}: " + "; ".join(problems),
                              fix if status == "problem" else
                              "--allow-local-tracking: fine for a test, not for a real send"))
    try:
        reply = requests.get(f"{url}/healthz", timeout=context.http_timeout,
                             allow_redirects=False)
    except requests.RequestException as exc:
        findings.append(_line("problem", f"no answer from {url}/healthz: {_why(exc)}",
                              "start the tracker there (newsletter track serve behind your "
                              "proxy: docs/deploy.md), or correct tracking_url"))
        return findings
    if reply.status_code != 200 or not reply.text.startswith("ok"):
        findings.append(_line("problem", f"{url}/healthz answered {reply.status_code} "
                              f"{reply.text.strip()[:80]!r}, not the tracker's 'ok'",
                              "check that tracking_url leads to `newsletter track serve` (the "
                              "proxy's configuration: docs/deploy.md)"))
        return findings
    context.facts["tracker"] = True
    findings.append(_line("ok", f"the tracker answers at {url}/healthz ({reply.text.strip()})"))
    return findings


@check("tracker database")
def tracker_reads_our_database(context: Context) -> Finding:
    """The tracker verifies our signatures and reads the database we write to.

    A random challenge goes into our database; the tracker must find it there and answer with
    a MAC made with the signing key it uses. A different database means every click and
    unsubscribe would be refused as unknown; a different key, that every token is forged.
    """
    import requests

    from newsletter import db
    from newsletter.db import open_db
    from newsletter.tracking.public import (
        CHALLENGE_PREFIX,
        challenge_answer,
        challenge_key,
        challenge_mac,
    )
    from newsletter.tracking.tokens import signer_for

    if not context.facts.get("tracker"):
        return _line("skipped", "needs the tracker to answer (above)")
    database = open_db(context.db_url)
    try:
        key = challenge_key(signer_for(database, context.settings.secret_key))
        nonce = secrets.token_hex(16)
        value = secrets.token_hex(16)
        with database.engine.begin() as conn:
            conn.execute(db.meta.insert().values(key=CHALLENGE_PREFIX + nonce, value=value))
        try:
            url = f"{context.settings.tracking_url}/healthz/db/{nonce}.{challenge_mac(key, nonce)}"
            try:
                reply = requests.get(url, timeout=context.http_timeout, allow_redirects=False)
            except requests.RequestException as exc:
                return _line("problem", f"no answer to the database challenge: {_why(exc)}",
                             "check the tracker's log")
        finally:
            with database.engine.begin() as conn:
                conn.execute(db.meta.delete().where(db.meta.c.key == CHALLENGE_PREFIX + nonce))
    finally:
        database.close()
    if reply.status_code == 403:
        return _line("problem", "the tracker signs with another key than this project: every "
                     "tracked link and unsubscribe link would be refused",
                     "give the tracker and `send` the same NEWSLETTER_SECRET_KEY, or the same "
                     "database (where the key is kept when NEWSLETTER_SECRET_KEY is unset)")
    if reply.status_code == 404:
        from newsletter.db import shown_url

        return _line("problem", "the tracker reads another database than "
                     f"{shown_url(context.db_url)}: "
                     "it would not know this issue's links or recipients",
                     "start the tracker with the same --db / NEWSLETTER_DB as send "
                     "(docs/deploy.md)")
    if reply.status_code != 200 or not hmac.compare_digest(
            reply.text.strip(), challenge_answer(key, nonce, value)):
        return _line("problem", f"the tracker answered the database challenge with "
                     f"{reply.status_code} {reply.text.strip()[:60]!r}",
                     "is tracking_url really this project's tracker (newsletter track serve)?")
    return _line("ok", "the tracker reads this database and verifies this project's signatures")


@check("images")
def images_published(context: Context) -> Finding | list[Finding]:
    """The issue's images are in the database, and each answers where the email loads it."""
    import requests

    from newsletter.db import open_db
    from newsletter.publish import published_names

    built = context.facts.get("built")
    if built is None:
        return _line("skipped", "needs an issue that builds (above)")
    if not built.email_images:
        return _line("ok", "the issue shows no images from the project folder")
    slug = built.issue.slug
    database = open_db(context.db_url)
    try:
        have = published_names(database, slug)
    finally:
        database.close()
    missing = [i for i in built.email_images if i.name not in have]
    if missing and not built.assets_url:
        return _line("warning", f"{len(missing)} of {len(built.email_images)} image(s) not "
                     "published yet: send publishes them before sending",
                     f"to see them online first: newsletter publish {slug}")
    if not built.assets_url and not context.facts.get("tracker"):
        return _line("skipped", "published; asking for them needs the tracker to answer (above)")
    broken = []
    with requests.Session() as session:
        for image in built.email_images:
            url = built.image_urls()[image.name]
            try:
                reply = session.head(url, timeout=context.http_timeout, allow_redirects=True)
            except requests.RequestException as exc:
                broken.append(f"{url}: {_why(exc)}")
                continue
            kind = reply.headers.get("content-type", "")
            if reply.status_code != 200 or not kind.startswith("image/"):
                broken.append(f"{url}: {reply.status_code} {kind}".rstrip())
    if broken:
        where = (f"upload the files `newsletter publish {slug}` lists to {built.assets_url}"
                 if built.assets_url else
                 "check the tracker reads this database (above), then "
                 f"newsletter publish {slug}")
        return _line("problem", f"{len(broken)} image(s) do not load where the email says: "
                     + "; ".join(broken), where)
    return _line("ok", f"all {len(built.email_images)} image(s) answer at "
                 f"{built.assets_url or built.tracking_url + '/a/'}")


@check("mail server")
def mail_server(context: Context) -> list[Finding]:
    """The SMTP server answers and accepts the login, or the provider accepts the key."""
    from newsletter.adapters.base import AdapterSettings, DeliveryError, load_adapter
    from newsletter.reachable import delivers_beyond_this_machine

    if not delivers_beyond_this_machine(context.adapter):
        return [_line("warning", "the adapter is maildir: messages are written to a folder on "
                      "this machine, not sent to anyone",
                      "for a real send choose its adapter: --adapter smtp (or mailgun, "
                      "postmark, sendgrid), or NEWSLETTER_ADAPTER")]
    cls = load_adapter(context.adapter)
    settings = AdapterSettings(root=context.project.root, env=context.settings.env,
                               timeout=context.http_timeout,
                               domain=context.settings.list_id_domain)
    cls.check_settings(settings)
    adapter = cls(settings)
    findings = []
    try:
        verify = getattr(adapter, "verify_login", None)
        if verify is not None:
            findings.append(_line("ok", verify()))
        notes = adapter.preflight()
        if verify is None:
            findings.append(_line("ok", f"{adapter.describe()}: settings accepted"))
        findings += [_line("warning", note) for note in notes]
    except DeliveryError as exc:
        return [_line("problem", f"{adapter.describe()}: {exc}",
                      "check the host and port in NEWSLETTER_SMTP_URL and that this machine "
                      "may connect to it (firewall)")]
    finally:
        adapter.close()
    helo = getattr(adapter, "helo", "")
    if helo and helo == context.settings.list_id_domain.lower():
        findings.append(_line("warning", f"this machine has no full domain name, so it greets "
                              f"the SMTP server as {helo} (list_id_domain)",
                              "if the relay expects another name, add ?helo=NAME to "
                              "NEWSLETTER_SMTP_URL"))
    return findings


@check("sender domain")
def sender_domain(context: Context) -> list[Finding]:
    """SPF for the envelope sender's domain and DMARC for the From domain exist in DNS."""
    built = context.facts.get("built")
    if built is None:
        return [_line("skipped", "needs an issue that builds (above)")]
    from_domain = built.issue.sender.email.rpartition("@")[2].lower()
    bounce = context.settings.bounce_address
    envelope_domain = bounce.rpartition("@")[2].lower() if bounce else from_domain
    try:
        resolver = _resolver(context)
        spf = _spf(resolver, envelope_domain)
        dmarc = _dmarc(resolver, from_domain)
    except _NoDns as exc:
        return [_line("skipped", f"no DNS answer ({exc}): SPF and DMARC of {from_domain} not "
                      "checked (no network here?)",
                      "run `newsletter doctor` where the internet can be reached, or give "
                      "--nameserver")]
    return [spf, dmarc]


class _NoDns(Exception):
    """DNS could not be asked at all (no network, no server answering)."""


def _resolver(context: Context) -> Resolver:
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver(configure=context.nameserver is None)
    except dns.resolver.NoResolverConfiguration as exc:
        raise _NoDns("no DNS server configured") from exc
    if context.nameserver is not None:
        resolver.nameservers = [context.nameserver[0]]
        resolver.port = context.nameserver[1]
    resolver.lifetime = context.dns_timeout
    resolver.timeout = context.dns_timeout
    return resolver


def _txt(resolver: Resolver, name: str) -> list[str] | None:
    """The TXT strings at ``name``: [] when there are none, None when the name does not exist."""
    import dns.exception
    import dns.resolver

    try:
        answer = resolver.resolve(name, "TXT")
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except (dns.resolver.NoNameservers, dns.exception.Timeout, OSError) as exc:
        raise _NoDns(type(exc).__name__) from exc
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def _spf(resolver: Resolver, domain: str) -> Finding:
    records = _txt(resolver, domain)
    if records is None:
        return _line("problem", f"the sender's domain {domain} does not exist in DNS",
                     "send from an address at a domain you own (sender: email: in the issue, "
                     "or bounce_address)")
    spf = [r for r in records if r.lower().startswith("v=spf1")]
    if not spf:
        return _line("problem", f"{domain} has no SPF record: receiving servers cannot tell "
                     "this server may send its mail, and often file it as spam",
                     f"ask whoever runs {domain}'s DNS to publish a TXT record such as "
                     "\"v=spf1 include:<your mail provider> -all\"")
    if len(spf) > 1:
        return _line("problem", f"{domain} has {len(spf)} SPF records; RFC 7208 makes that an "
                     "error, so every check fails", "merge them into one TXT record")
    return _line("ok", f"SPF for {domain}: {spf[0]}")


def _dmarc(resolver: Resolver, domain: str) -> Finding:
    # A subdomain without a record of its own is covered by its organisational domain's;
    # the parent is a fair stand-in for that (the Public Suffix List is not consulted).
    labels = domain.split(".")
    candidates = [domain] + ([".".join(labels[1:])] if len(labels) > 2 else [])
    for name in candidates:
        records = _txt(resolver, f"_dmarc.{name}") or []
        found = [r for r in records if r.upper().startswith("V=DMARC1")]
        if found:
            return _line("ok", f"DMARC for {domain}: {found[0]}"
                         + (f" (from {name})" if name != domain else ""))
    return _line("problem", f"{domain} has no DMARC record: large mailbox providers expect one "
                 "from bulk senders",
                 f"ask whoever runs {domain}'s DNS to publish a TXT record at _dmarc.{domain}, "
                 "e.g. \"v=DMARC1; p=none; rua=mailto:dmarc@" + domain + "\"")


@check("unsubscribe and List-Id")
def list_headers(context: Context) -> list[Finding]:
    """The mailto: unsubscribe address and the List-Id are the project's own, not defaults."""
    from newsletter.errors import InvalidSettings
    from newsletter.settings import read_file

    try:
        written = read_file(context.project.root / SETTINGS_FILE)
    except InvalidSettings:
        written = {}
    settings = context.settings
    findings = []
    if written.get("unsubscribe_mailto"):
        findings.append(_line("ok", f"unsubscribe by mail: {settings.unsubscribe_mailto}"))
    else:
        findings.append(_line("problem", "unsubscribe_mailto is not set: List-Unsubscribe's "
                              f"mail address would be {settings.unsubscribe_mailto}, which you "
                              "do not read", "set unsubscribe_mailto in newsletter.yaml to a "
                              "mailbox the team reads"))
    name, list_id = settings.list_id_parts
    if written.get("list_id") or written.get("list_id_domain"):
        findings.append(_line("ok", f"List-Id: {name + ' ' if name else ''}<{list_id}>"))
    else:
        findings.append(_line("problem", f"the List-Id is the default <{list_id}>, not yours",
                              "set list_id in newsletter.yaml, e.g. list_id: \"Kent and Medway "
                              "Prevent Partner Newsletter <prevent-newsletter.example.org>\""))
    return findings


def _shown(path: Path, context: Context) -> str:
    try:
        return str(path.resolve().relative_to(context.project.root.resolve()))
    except ValueError:
        return str(path)


def _why(exc: BaseException) -> str:
    """A network error in a few words (requests' own messages run to several lines)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "certificate verify failed", "No route to host"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def newest_issue(project: Project) -> Path | None:
    """The issue file changed most recently, for ``doctor`` without ISSUE."""
    files = sorted(project.issues_dir.glob("*.yaml"), key=lambda p: p.stat().st_mtime) \
        if project.issues_dir.is_dir() else []
    return files[-1] if files else None
