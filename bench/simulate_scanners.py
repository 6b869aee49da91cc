"""A labelled traffic simulator: mail-security scanners and people against the real tracker.

    .venv/bin/python bench/simulate_scanners.py [--scale 1.0] [--seed 15] [--db URL] [--json]

What it does, end to end:

1. Makes a project in a temporary folder: the sample issue with ``tracking: individual``, and
   twelve partner organisations (about 200 role addresses at ``*.example.org`` at scale 1).
2. Sends it for real (``newsletter send``, maildir adapter) and reads what arrived: each
   recipient's message, its links (the hidden honeypot link included: scanners see it, people
   do not), its ``List-Unsubscribe`` URL, and the ledger's ``sent_at``.
3. Plans the traffic each organisation's mail security and each person would make (below),
   seeded and deterministic, every request labelled *scanner* or *person* with its scenario.
4. Drives the real tracker (``create_app``, wrapped by ``server.behind_proxies`` exactly as
   ``track serve`` wraps it) in-process through httpx: every request comes from the trusted
   proxy 127.0.0.1 with the client's address in ``X-Forwarded-For``. Time is compressed with
   the tracker's injectable clock: each request is stamped with its simulated time, and the event
   writer flushes whenever simulated time passes its 50 ms flush interval, so the rules see the
   same times and the same batches as a live tracker would, days of traffic in seconds.
5. Compares what the tracker stored (the latest classification of every hit) and what
   ``newsletter report`` counts with the labels: the confusion table, people's clicks, unique
   clickers, downloads and viewers true vs reported, false positives and misses per reason and per
   scenario, and what happened to every unsubscribe.

What is modelled, and where each behaviour is documented (keys into ``SOURCES`` below: the
sources are vendors' pages and practitioners' write-ups; none publishes rates, so the shares in
``ORGANISATIONS`` and ``PEOPLE`` are our estimates):

- bursts at delivery, every link within seconds, a browser-like agent from the vendor's network
  (Defender Safe Attachments detonation, Barracuda intent analysis) [defender] [barracuda-2013]
  [marketo];
- agents that do not identify themselves, from listed and unlisted networks [act-on] [azure]
  [ec2];
- HEAD requests with no user agent (Exchange Online Protection, 104.47.x) [head] [head-2];
- spread-out passes (Proofpoint predictive sandboxing, cloud sandboxes) [proofpoint-sandbox]
  [mautic];
- delayed delivery: greylisting defers acceptance by 1-20 min, which the sending provider sees
  and reports [greylisting]; gateways hold accepted messages 5-15 min to sandbox them, which
  nobody reports [hold];
- scans minutes after delivery (Barracuda Impersonation Protection and Incident Response, cloud
  API security products) [barracuda-ir];
- re-checks hours later (Defender Automated Investigation and Response) [defender];
- time-of-click checks paired with a person's click, just before it or 15-30 s after it, from the
  vendor's network (Safe Links, Mimecast URL Protect, Proofpoint URL Defense) [defender] [azure]
  [url-defense];
- an on-premises scanner behind the office NAT (FortiMail with FortiSandbox) [fortimail];
- scanners that submit the unsubscribe page's form [courtlistener] [rock] [barracuda-unsub], and
  RFC 8058 one-click POSTs from mailbox providers [rfc8058];
- people: most read hours or days later and click one or two links; a few click within a minute
  of delivery [metacompliance], click the same link again, open three links in tabs at once, read
  in the office behind the NAT their scanner also uses, or click through a rewritten link.

Addresses in the simulation: people's offices and homes use documentation ranges
(203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24); scanners use the vendors' real published
ranges (listed in ``classify.SCANNER_NETWORKS``) or real cloud ranges that are not listed.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import heapq
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa

from newsletter import db
from newsletter import report as reporting
from newsletter.tracking import server

SOURCES = {
    "defender": "https://check.live-direct-marketing.online/blog/microsoft-defender-link-click-pattern",
    "barracuda-2013": "https://wordtothewise.com/2013/07/barracuda-filters-clicking-all-links/",
    "marketo": "https://nation.marketo.com/t5/support-blogs/understanding-a-spike-in-click-activity/ba-p/241206",  # noqa: E501
    "act-on": "https://university.act-on.com/Product_Features/Reports/Sent_Email_Reports/Identifying_False_Positives_in_Email_Clicks",  # noqa: E501
    "azure": "https://security.stackexchange.com/questions/251182/why-are-secure-links-in-emails-rapidly-opened-by-multiple-ip-addresses",  # noqa: E501
    "ec2": "https://www.suped.com/knowledge/email-deliverability/troubleshooting/what-could-cause-unusual-click-activity-concentrated-on-a-single-link-in-an-email-campaign-prima",  # noqa: E501
    "head": "https://github.com/SergeyMosin/Appointments/issues/293",
    "head-2": "https://github.com/jdavidbakr/mail-tracker/pull/200",
    "proofpoint-sandbox": "https://answers.securityscientist.net/q/24953/how-does-pre-delivery-sandboxing-work-in-proofpoint-core-email-protection",  # noqa: E501
    "mautic": "https://github.com/mautic/mautic/issues/9798",
    "greylisting": "https://onega.net/mimecastfaq",
    "hold": "https://sffatcat.io/365-atp-or-not-atp",
    "barracuda-ir": "https://campus.barracuda.com/product/sentinel/doc/498468311/unwanted-link-clicks",  # noqa: E501
    "url-defense": "https://support.vircom.com/support/solutions/articles/48000961469-things-to-know-about-proofpoint-url-defense",  # noqa: E501
    "fortimail": "https://docs.fortinet.com/document/fortisandbox/4.4.4/cli-reference/295832/url-recheck",  # noqa: E501
    "courtlistener": "https://github.com/freelawproject/courtlistener/issues/2180",
    "rock": "https://github.com/SparkDevNetwork/Rock/issues/7034",
    "barracuda-unsub": "https://www.suped.com/knowledge/email-deliverability/sender-reputation/why-is-barracuda-automatically-unsubscribing-users-and-how-can-i-prevent-it",  # noqa: E501
    "rfc8058": "https://datatracker.ietf.org/doc/html/rfc8058",
    "metacompliance": "https://support.metacompliance.com/hc/en-gb/articles/13056444972817",
}
REPO = Path(__file__).resolve().parent.parent
SLUG = "2026-spring"
TRACKER = "http://127.0.0.1:8025"  # the sample project's tracking_url: links point here
PROXY = ("127.0.0.1", 40123)       # the trusted reverse proxy every request comes through
FLUSH = 0.05                       # the event writer's flush interval (track serve's default)
DEFAULT_SEED = 15

# --- agents -------------------------------------------------------------------------------

SANDBOX_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/124.0.0.0 Safari/537.36")
OFFICE_CHECK = ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)")
OLD_FIREFOX = "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:54.0) Gecko/20100101 Firefox/54.0"
PINNED_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                 "Gecko) Chrome/109.0.0.0 Safari/537.36")
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/126.0.0.0 Safari/537.36")
LINUX_CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/126.0.0.0 Safari/537.36")
PROOFPOINT_AGENT = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"

FLEET_EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0")
FLEET_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/131.0.0.0 Safari/537.36")
PERSONAL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.7 Mobile/15E148 Safari/604.1",
)

# --- networks -----------------------------------------------------------------------------
# (prefix, listed): ``listed`` means inside classify.SCANNER_NETWORKS.
NETWORKS: dict[str, tuple[str, bool]] = {
    "microsoft-eop": ("40.107.{}.{}", True),
    "microsoft-eop2": ("52.101.{}.{}", True),
    "microsoft-head": ("104.47.11.{}", True),
    "azure": ("40.94.{}.{}", False),
    "azure2": ("51.141.{}.{}", False),
    "mimecast": ("185.58.85.{}", True),
    "mimecast-new": ("193.7.206.{}", False),
    "proofpoint": ("148.163.{}.{}", True),
    "proofpoint-new": ("205.220.{}.{}", False),
    "barracuda": ("209.222.82.{}", True),
    "aws": ("3.8.{}.{}", False),
    "aws2": ("18.132.{}.{}", False),
    "gcp": ("34.89.{}.{}", False),
    "google-mail": ("209.85.{}.{}", False),
}


def address_in(rng: random.Random, network: str) -> str:
    pattern = NETWORKS[network][0]
    if network == "proofpoint":
        return pattern.format(rng.randint(128, 159), rng.randint(1, 254))
    parts = [rng.randint(1, 254) for _ in range(pattern.count("{}"))]
    return pattern.format(*parts)


# --- organisations and their mail security ------------------------------------------------


@dataclass(frozen=True)
class Scan:
    """One kind of scanner pass over a message (or part of one)."""

    scenario: str
    share: float                       # of the organisation's messages
    start: tuple[float, float]         # seconds after delivery (uniform)
    gap: tuple[float, float]           # seconds between two fetches of one pass
    networks: tuple[tuple[str, float], ...]
    agents: tuple[str, ...]
    method: str = "GET"
    honeypot: float = 0.9              # chance the pass fetches the hidden link too
    links: int = 0                     # 0: every link; N: a sample of N links (re-checks)
    view_only: bool = False            # fetches only the "view in browser" link
    form_post: float = 0.0             # chance it submits the unsubscribe page's form
    nat: bool = False                  # fetches from the organisation's office address
    recipients_per_pass: tuple[int, int] = (1, 1)  # re-checks: one worker, several messages
    same_client: float = 0.0           # re-checks: chance of the delivery scan's own address


@dataclass(frozen=True)
class Org:
    key: str
    name: str
    domain: str
    size: int
    security: str
    scans: tuple[Scan, ...] = ()
    click_check: float = 0.0           # share of people's clicks checked at the time of click
    check_networks: tuple[tuple[str, float], ...] = ()
    check_agents: tuple[str, ...] = (OFFICE_CHECK,)
    deferred: tuple[float, float, float] = (0.0, 0.0, 0.0)  # share, min, max s (reported)
    held: tuple[float, float, float] = (0.0, 0.0, 0.0)      # share, min, max s (unreported)
    office_share: float = 0.6          # people reading in the office (behind its NAT)
    fleet: str = FLEET_EDGE
    fleet_share: float = 0.6           # office readers on the managed browser


MS = (("microsoft-eop", 0.3), ("microsoft-eop2", 0.2), ("azure", 0.3), ("azure2", 0.2))

ORGANISATIONS: tuple[Org, ...] = (
    Org("kcc", "Kent County Council", "kcc.example.org", 30, "Microsoft Defender for Office 365",
        scans=(Scan("sandbox-burst", 0.6, (2, 25), (0.05, 0.8), MS, (SANDBOX_CHROME,),
                    form_post=0.15),
               Scan("recheck-later", 0.25, (2 * 3600, 30 * 3600), (0.5, 4), MS,
                    (SANDBOX_CHROME,), honeypot=0.0, links=2, recipients_per_pass=(2, 6),
                    same_client=0.4)),
        click_check=0.8, check_networks=MS, check_agents=(OFFICE_CHECK, SANDBOX_CHROME)),
    Org("medway", "Medway Council", "medway.example.org", 15, "Exchange Online Protection",
        scans=(Scan("head-check", 0.8, (1, 20), (0.1, 1.5), (("microsoft-head", 1.0),), ("",),
                    method="HEAD", honeypot=1.0),)),
    Org("police", "Kent Police", "police.example.org", 25, "Mimecast",
        scans=(Scan("pre-delivery-scan", 0.7, (1, 20), (0.2, 2.0),
                    (("mimecast", 0.8), ("mimecast-new", 0.2)), (LINUX_CHROME,),
                    honeypot=0.85),),
        click_check=0.7, check_networks=(("mimecast", 1.0),), check_agents=(LINUX_CHROME,),
        deferred=(0.4, 60, 1200)),
    Org("ctp", "Counter Terrorism Policing", "ctp.example.org", 10, "Mimecast",
        scans=(Scan("pre-delivery-scan", 0.7, (1, 20), (0.2, 2.0),
                    (("mimecast", 0.8), ("mimecast-new", 0.2)), (LINUX_CHROME,),
                    honeypot=0.85),),
        click_check=0.7, check_networks=(("mimecast", 1.0),), check_agents=(LINUX_CHROME,),
        deferred=(0.4, 60, 1200)),
    Org("hospital", "Example Hospitals NHS Trust", "hospital.example.org", 25, "Proofpoint",
        scans=(Scan("spread-pass", 0.6, (5, 90), (3, 40),
                    (("proofpoint", 0.6), ("proofpoint-new", 0.4)),
                    (SANDBOX_CHROME, PROOFPOINT_AGENT), honeypot=0.85, form_post=0.1),),
        click_check=0.6, check_networks=(("proofpoint", 1.0),),
        check_agents=(PROOFPOINT_AGENT, SANDBOX_CHROME), held=(0.3, 120, 600)),
    Org("ashford", "Ashford Borough Council", "ashford.example.org", 15, "Barracuda ESS",
        scans=(Scan("intent-burst", 0.7, (0.5, 10), (0.05, 0.6),
                    (("barracuda", 0.5), ("aws", 0.5)), (OLD_FIREFOX,), honeypot=0.9),
               Scan("view-only", 0.3, (0.5, 10), (0.1, 0.5), (("aws", 1.0),), (OLD_FIREFOX,),
                    view_only=True))),
    Org("canterbury", "Canterbury City Council", "canterbury.example.org", 15,
        "Microsoft 365 with Barracuda Incident Response",
        scans=(Scan("incident-response", 0.5, (120, 1200), (0.3, 3.0),
                    (("aws", 0.5), ("aws2", 0.5)), (LINUX_CHROME,), honeypot=0.8,
                    form_post=0.2),),
        click_check=0.5, check_networks=MS, check_agents=(OFFICE_CHECK, SANDBOX_CHROME)),
    Org("academy", "Example Academy Trust", "academy.example.org", 20,
        "FortiMail on the premises (behind the office NAT)",
        scans=(Scan("nat-scanner", 0.9, (1, 30), (0.1, 1.5), (), (PINNED_CHROME,),
                    honeypot=0.9, nat=True),),
        held=(0.3, 60, 900), office_share=0.8, fleet=FLEET_CHROME),
    Org("fire", "Kent Fire and Rescue Service", "fire.example.org", 10,
        "Microsoft Defender (Safe Links)",
        scans=(Scan("recheck-later", 0.3, (3 * 3600, 40 * 3600), (0.5, 4), MS,
                    (SANDBOX_CHROME,), honeypot=0.0, links=1, recipients_per_pass=(2, 4)),),
        click_check=0.9, check_networks=MS, check_agents=(OFFICE_CHECK, SANDBOX_CHROME)),
    Org("icb", "Kent and Medway Integrated Care Board", "icb.example.org", 15,
        "cloud email security (API sandbox)",
        scans=(Scan("cloud-sandbox", 0.7, (30, 600), (1, 20), (("aws", 0.5), ("gcp", 0.5)),
                    (LINUX_CHROME, LINUX_CHROME, HEADLESS), honeypot=0.75, form_post=0.2),),
        office_share=0.3),
    Org("charity", "Example Community Charity", "charity.example.org", 10,
        "Google Workspace (no link scanner)", office_share=0.2, fleet_share=0.0),
    Org("care", "Example Care Group", "care.example.org", 10, "none (shared office NAT)",
        office_share=0.9, fleet_share=0.9),
)

# People: shares of all recipients (each recipient's behaviour is drawn from these).
PEOPLE = {
    "reads": 0.25,          # clicks at least one link
    "eager": 0.10,          # of readers: the first click within a minute of delivery
    "tabs": 0.10,           # of readers: opens three links in tabs at once
    "repeat": 0.15,         # of readers: clicks one of their links again later
    "keen": 0.05,           # of readers: opens five to seven links, one after another
    "views": 0.10,          # opens the web version ("view in browser")
    "button": 0.02,         # unsubscribes with the page's button
    "one_click": 0.015,     # unsubscribes with the mail program's button (RFC 8058)
}
# At any scale at least 8 readers, 3 eager, 3 in tabs, 3 repeating, 2 keen, 4 viewers and 4
# leaving.
TEAMS = ("kcc", "care")  # organisations where a team of three reads together (same NAT, browser)
LINK_WEIGHTS = {"download": 2.0, "article": 1.5, "event": 1.0, "cta": 1.2}


# --- the project and the real send ---------------------------------------------------------


@dataclass
class Message:
    """What one recipient received."""

    address: str
    org: Org
    sent_at: float
    visible: list[str]                 # tracked link paths a person can see, in order
    hidden: list[str]                  # tracked link paths a person cannot see (honeypot)
    view: str                          # the web version's path
    unsubscribe: str                   # the unsubscribe page's path (body link)
    one_click: str                     # the List-Unsubscribe URL's path (header)
    kinds: dict[str, str] = field(default_factory=dict)  # path -> link kind (for people)
    delivered_at: float = 0.0          # accepted by the recipient's gateway
    released_at: float = 0.0           # in the mailbox (after any hold)
    reported: bool = False             # the provider reports delivered_at (a deferral)
    scanners: list[tuple[str, str]] = field(default_factory=list)  # (address, agent) that scanned


def scaled(org: Org, scale: float) -> int:
    return max(4, round(org.size * scale))


def make_project(root: Path, scale: float) -> list[str]:
    """The sample project with an individual-tracking issue and the organisations' lists."""
    for name in ("issues", "templates", "images"):
        shutil.copytree(REPO / name, root / name)
    for name in ("theme.yaml", "newsletter.yaml"):
        shutil.copy2(REPO / name, root / name)
    issue = root / "issues" / f"{SLUG}.yaml"
    text = issue.read_text(encoding="utf-8")
    issue.write_text(text.replace("tracking: aggregate", "tracking: individual"),
                     encoding="utf-8")
    (root / "audiences").mkdir()
    lines = ["lists:"]
    roles = ("safeguarding", "prevent", "communications", "community-safety", "team",
             "duty-desk", "training", "office")
    for org in ORGANISATIONS:
        rows = ["email,name,organisation"]
        for i in range(scaled(org, scale)):
            role = roles[i % len(roles)]
            rows.append(f"{role}-{i + 1:03d}@{org.domain},{role.title()} {i + 1},{org.name}")
        (root / "audiences" / f"{org.key}.csv").write_text("\n".join(rows) + "\n",
                                                           encoding="utf-8")
        lines += [f"  {org.key}:", f"    name: {org.name}",
                  f"    members_file: audiences/{org.key}.csv"]
    (root / "audiences.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [org.key for org in ORGANISATIONS]


def newsletter(root: Path, *args: str) -> None:
    """Run the ``newsletter`` command in ``root`` with none of the caller's NEWSLETTER_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    done = subprocess.run([sys.executable, "-c", "from newsletter.cli import main; main()",
                           *args], cwd=root, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"newsletter {args[0]} failed:\n{done.stdout}\n{done.stderr}")


def send(root: Path, lists: list[str], db_url: str) -> None:
    """Build and send the issue for real, to a maildir."""
    newsletter(root, "build", f"issues/{SLUG}.yaml")
    args = ["send", SLUG, "--yes", "--db", db_url, "--maildir", str(root / "maildir")]
    for key in lists:
        args += ["--to", key]
    newsletter(root, *args)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        if tag != "a":
            return
        values = dict(attrs)
        style = (values.get("style") or "").replace(" ", "").lower()
        if values.get("href"):
            self.links.append((values["href"], "display:none" in style))


def read_messages(root: Path, database: db.Database) -> list[Message]:
    """Every delivered message, from the maildir, with its ledger send time."""
    by_address = {org.domain: org for org in ORGANISATIONS}
    with database.engine.connect() as conn:
        sent = dict(conn.execute(
            sa.select(db.recipients.c.address, db.deliveries.c.sent_at)
            .join(db.deliveries, db.deliveries.c.recipient_id == db.recipients.c.id)
            .where(db.deliveries.c.issue == SLUG, db.deliveries.c.status == "sent")).all())
    messages = []
    for path in sorted((root / "maildir" / "new").iterdir()):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        address = str(parsed["To"]).split("<")[-1].strip(">").strip().lower()
        html = parsed.get_body(("html",)).get_content()
        reader = _Links()
        reader.feed(html)
        visible, hidden, view, unsubscribe = [], [], "", ""
        for href, invisible in reader.links:
            if not href.startswith(TRACKER):
                continue
            where = href[len(TRACKER):]
            if where.startswith("/c/"):
                (hidden if invisible else visible).append(where)
            elif where.startswith("/v/"):
                view = where
            elif where.startswith("/u/"):
                unsubscribe = where
        header = str(parsed["List-Unsubscribe"])
        one_click = next(part.strip(" <>") for part in header.split(",")
                         if part.strip(" <>").startswith(TRACKER))[len(TRACKER):]
        message = Message(address=address, org=by_address[address.split("@")[1]],
                          sent_at=sent[address], visible=visible, hidden=hidden, view=view,
                          unsubscribe=unsubscribe, one_click=one_click)
        messages.append(message)
    _link_kinds(root, messages)
    return sorted(messages, key=lambda m: m.address)


def _link_kinds(root: Path, messages: list[Message]) -> None:
    """Which visible link is a download, an article...: people prefer some kinds.

    The built issue's ``links.json`` lists the tracked links in the order the message shows them
    (the honeypot last, hidden); when the counts disagree, every link is equally likely.
    """
    built = json.loads((root / "build" / SLUG / "links.json").read_text(encoding="utf-8"))
    order = [link["kind"] for link in built["links"]
             if link.get("tracked", True) and link["kind"] != "honeypot"]
    for message in messages:
        if len(order) == len(message.visible):
            message.kinds = dict(zip(message.visible, order, strict=True))


# --- traffic -------------------------------------------------------------------------------


@dataclass(order=True)
class Step:
    at: float
    seq: int
    method: str = field(compare=False)
    path: str = field(compare=False)
    ip: str = field(compare=False)
    agent: str = field(compare=False)
    actor: str = field(compare=False)      # scanner | person | provider
    scenario: str = field(compare=False)
    body: bytes = field(default=b"", compare=False)
    headers: tuple = field(default=(), compare=False)
    follow: bool = field(default=False, compare=False)   # fetch a redirect to the tracker
    then: Callable | None = field(default=None, compare=False)  # (response, step) -> steps
    recipient: str = field(default="", compare=False)


class Planner:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.steps: list[Step] = []
        self.seq = 0
        self.nat: dict[str, str] = {}
        self.homes = 0

    def add(self, at: float, method: str, path: str, ip: str, agent: str, actor: str,
            scenario: str, **extra) -> Step:  # type: ignore[no-untyped-def]
        self.seq += 1
        step = Step(at, self.seq, method, path, ip, agent, actor, scenario, **extra)
        self.steps.append(step)
        return step

    def office(self, org: Org) -> str:
        if org.key not in self.nat:
            self.nat[org.key] = f"203.0.113.{len(self.nat) + 10}"
        return self.nat[org.key]

    def home(self) -> str:
        self.homes += 1
        block = ("198.51.100", "192.0.2")[self.homes // 250 % 2]
        return f"{block}.{self.homes % 250 + 1}"


def pick_network(rng: random.Random, networks: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in networks)
    x = rng.random() * total
    for name, weight in networks:
        x -= weight
        if x <= 0:
            return name
    return networks[-1][0]


def plan(messages: list[Message], rng: random.Random,
         report_delivery: Callable[[Message], None] | None) -> Planner:
    """Every request of the simulation, labelled; and, with ``report_delivery``, the provider's
    "delivered" webhook for every message, 1 to 20 s after the recipient's server took it."""
    planner = Planner(rng)
    # the webhooks' own randomness: the traffic is the same with reports and without
    latency = random.Random(rng.getrandbits(32))
    for message in messages:
        org = message.org
        message.delivered_at = message.sent_at + rng.uniform(0.2, 2.0)
        share, low, high = org.deferred
        if share and rng.random() < share:
            message.delivered_at += rng.uniform(low, high)
            message.reported = True
        message.released_at = message.delivered_at
        share, low, high = org.held
        if share and rng.random() < share:
            message.released_at += rng.uniform(low, high)
        if report_delivery is not None:
            planner.add(message.delivered_at + latency.uniform(1, 20), "REPORT", "", "", "",
                        "provider", "delivered", recipient=message.address,
                        then=lambda _response, _step, m=message: report_delivery(m) or [])
    for org in ORGANISATIONS:
        mine = [m for m in messages if m.org is org]
        for scan in org.scans:
            if scan.recipients_per_pass != (1, 1):
                _rechecks(planner, org, scan, mine)
                continue
            for message in mine:
                if rng.random() < scan.share:
                    _scan_pass(planner, org, scan, message)
    _people(planner, messages)
    return planner


def _scan_pass(planner: Planner, org: Org, scan: Scan, message: Message) -> None:
    rng = planner.rng
    held = message.released_at > message.delivered_at
    # A gateway that holds a message scans it at the end of its hold (the sandbox queue).
    begin = (message.released_at if held else message.delivered_at) + rng.uniform(*scan.start)
    scenario = "delayed-delivery" if (message.reported or held) else scan.scenario
    ip = planner.office(org) if scan.nat else address_in(rng, pick_network(rng, scan.networks))
    agent = rng.choice(scan.agents)
    message.scanners.append((ip, agent))
    if scan.view_only:
        targets = [message.view]
    else:
        targets = list(message.visible)
        if rng.random() < scan.honeypot:
            targets += message.hidden
        targets += [message.view, message.unsubscribe]
        rng.shuffle(targets) if rng.random() < 0.3 else None
    at = begin
    for path in targets:
        then = None
        if path == message.unsubscribe and rng.random() < scan.form_post:
            then = _submit_form(planner, ip, agent, scenario)
        planner.add(at, scan.method, path, ip, agent, "scanner", scenario, follow=True,
                    then=then, recipient=message.address)
        at += rng.uniform(*scan.gap)


def _rechecks(planner: Planner, org: Org, scan: Scan, mine: list[Message]) -> None:
    """Re-checks hours later: one worker revisits a link or two of several messages."""
    rng = planner.rng
    chosen = [m for m in mine if rng.random() < scan.share]
    while chosen:
        count = rng.randint(*scan.recipients_per_pass)
        batch, chosen = chosen[:count], chosen[count:]
        earlier = [s for m in batch for s in m.scanners]
        if earlier and rng.random() < scan.same_client:
            ip, agent = rng.choice(earlier)
        else:
            ip = address_in(rng, pick_network(rng, scan.networks))
            agent = rng.choice(scan.agents)
        at = batch[0].released_at + rng.uniform(*scan.start)
        for message in batch:
            for path in rng.sample(message.visible, min(scan.links, len(message.visible))):
                planner.add(at, scan.method, path, ip, agent, "scanner", scan.scenario,
                            recipient=message.address)
                at += rng.uniform(*scan.gap)
            at += rng.uniform(5, 60)


FORM_POSTERS = (
    # (how, share of form-posting scanners, seconds from page to submit)
    ("script", 0.4, (0.05, 0.8)),          # parses the page, posts its fields
    ("form.submit()", 0.42, (0.2, 2.0)),   # a headless browser submitting the form from script
    ("clicks the button", 0.18, (0.3, 3.0)),  # automation with real mouse events, after a wait
)


def _submit_form(planner: Planner, ip: str, agent: str, scenario: str):  # type: ignore[no-untyped-def]
    """A scanner that submits the unsubscribe page's form, in one of FORM_POSTERS' ways; one
    that clicks buttons clicks the button of whatever page it gets back, too."""
    rng = planner.rng
    how, _, wait = rng.choices(FORM_POSTERS, weights=[w for _, w, _ in FORM_POSTERS])[0]

    def submit(response: httpx.Response, step: Step) -> list[Step]:
        fields = form_fields(response.text)
        if fields is None or "You are unsubscribed" in response.text:
            return []
        headers = [("content-type", "application/x-www-form-urlencoded")]
        action, values = fields
        if how != "script":
            headers += [("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"),
                        ("sec-fetch-dest", "document"), ("origin", "null")]
        if how == "clicks the button":
            headers.append(("sec-fetch-user", "?1"))
            values = values + _button_fields(response.text)
        again = submit if how == "clicks the button" and step.method == "GET" else None
        return [planner.add(step.at + rng.uniform(*wait), "POST", action or step.path, ip, agent,
                            "scanner", f"form-post ({how})", body=urlencode(values).encode(),
                            headers=tuple(headers), recipient=step.recipient, then=again)]
    return submit


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.found = False
        self.values: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        values = dict(attrs)
        if tag == "form" and (values.get("method") or "get").lower() == "post":
            self.found = True
            self.action = values.get("action")
        elif self.found and tag in ("input", "button") and values.get("name"):
            if tag == "input" and (values.get("type") or "text") == "submit":
                return  # a browser sends a submit control only when it is the one pressed
            if tag == "button":
                return
            self.values.append((values["name"], values.get("value") or ""))


def form_fields(html: str) -> tuple[str | None, list[tuple[str, str]]] | None:
    """The POST form's action and the fields a script would submit (no buttons)."""
    parser = _Form()
    parser.feed(html)
    return (parser.action, parser.values) if parser.found else None


def _button_fields(html: str) -> list[tuple[str, str]]:
    """The fields a browser sends when a person presses the page's (only) submit button."""
    class Buttons(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.pressed: list[tuple[str, str]] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
            values = dict(attrs)
            if tag == "button" and values.get("name") and not self.pressed:
                self.pressed.append((values["name"], values.get("value") or ""))

    parser = Buttons()
    parser.feed(html)
    return parser.pressed


def _people(planner: Planner, messages: list[Message]) -> None:
    """Who does what: shares of PEOPLE, with at least a few of each kind at any scale."""
    rng = planner.rng

    def some(pool: list[Message], share: float, least: int) -> list[Message]:
        return rng.sample(pool, min(len(pool), max(least, round(share * len(pool)))))

    readers = some(messages, PEOPLE["reads"], 8)
    # at least two people read in the office whose NAT an on-premises scanner shares
    at_desk: set[int] = set()
    for org in ORGANISATIONS:
        if any(scan.nat for scan in org.scans):
            staff = [m for m in messages if m.org is org]
            chosen = [m for m in readers if m.org is org][:2]
            extra = [m for m in staff if m not in chosen][: 2 - len(chosen)]
            readers += extra
            at_desk.update(map(id, chosen + extra))
    eager = set(map(id, some(readers, PEOPLE["eager"], 3)))
    tabs = set(map(id, some([m for m in readers if id(m) not in eager], PEOPLE["tabs"], 3)))
    repeat = set(map(id, some(readers, PEOPLE["repeat"], 3)))
    keen = set(map(id, some([m for m in readers if id(m) not in eager | tabs], PEOPLE["keen"], 2)))
    viewers = set(map(id, some(messages, PEOPLE["views"], 4)))
    quiet = [m for m in messages if id(m) not in set(map(id, readers))]
    leaving = some(quiet, PEOPLE["button"] + PEOPLE["one_click"], 4)
    button = set(map(id, leaving[: max(2, len(leaving) * 4 // 7)]))
    one_click = set(map(id, leaving)) - button
    reading = set(map(id, readers))
    # Colleagues reading together: a team in one office (one NAT, the managed browser) opens the
    # newsletter within minutes of each other, e.g. after the manager says "have a look".
    for key in TEAMS:
        team = [m for m in messages if m.org.key == key and id(m) not in reading][:3]
        start = team[0].released_at + rng.uniform(600, 8 * 3600) if team else 0.0
        for message in team:
            reading.add(id(message))
            _colleague(planner, message, start + rng.uniform(0, 300))
    for message in messages:
        key = id(message)
        if key in reading and message.org.key in TEAMS and not any(
                id(m) == key for m in readers):
            continue
        _person(planner, message, reads=key in reading, eager=key in eager, tabs=key in tabs,
                keen=key in keen, repeat=key in repeat, views=key in viewers,
                at_desk=key in at_desk,
                leaves="button" if key in button else ("one-click" if key in one_click else ""))


def _colleague(planner: Planner, message: Message, at: float) -> None:
    rng = planner.rng
    org = message.org
    ip, agent = planner.office(org), org.fleet
    links = rng.sample(message.visible, rng.choice((1, 1, 2)))
    for path in links:
        planner.add(at, "GET", path, ip, agent, "person", "colleagues", recipient=message.address)
        if org.click_check and rng.random() < org.click_check:
            planner.add(at - rng.uniform(0.05, 0.6), "GET", path,
                        address_in(rng, pick_network(rng, org.check_networks)),
                        rng.choice(org.check_agents), "scanner", "time-of-click",
                        recipient=message.address)
        at += rng.uniform(20, 300)


def _person(planner: Planner, message: Message, *, reads: bool, eager: bool, tabs: bool,
            keen: bool, repeat: bool, views: bool, at_desk: bool, leaves: str) -> None:
    rng = planner.rng
    org = message.org
    in_office = rng.random() < org.office_share or at_desk
    ip = planner.office(org) if in_office else planner.home()
    agent = org.fleet if in_office and rng.random() < org.fleet_share else rng.choice(PERSONAL)
    nat_shared = in_office and any(s.nat for s in org.scans)
    base = "nat-shared" if nat_shared else ("rewritten" if org.click_check else "reader")
    who = message.address
    first = message.released_at + _reading_delay(rng)
    if views:
        planner.add(first - rng.uniform(5, 60), "GET", message.view, ip, agent, "person",
                    "viewer")
    if reads:
        count = 3 if tabs else (rng.randint(5, 7) if keen else
                                rng.choices((1, 2, 3, 4), weights=(55, 30, 10, 5))[0])
        weights = [LINK_WEIGHTS.get(message.kinds.get(p, ""), 0.3) for p in message.visible]
        links: list[str] = []
        while len(links) < min(count, len(message.visible)):
            path = rng.choices(message.visible, weights=weights)[0]
            if path not in links:
                links.append(path)
        at = message.released_at + rng.uniform(20, 55) if eager else first
        clicks: list[tuple[float, str, str]] = []
        for i, path in enumerate(links):
            scenario = "eager" if eager and i == 0 else (
                "tabs" if tabs else ("keen" if keen else base))
            clicks.append((at, path, scenario))
            # tabs: three middle-clicks within a second or two; keen: skimming, a link every
            # half minute to two; otherwise time to read
            at += (rng.uniform(0.3, 0.8) if tabs else
                   rng.uniform(30, 120) if keen else rng.uniform(20, 600))
        if repeat:
            again = rng.choice(links)
            clicks.append((at + rng.uniform(60, 2 * 86400), again, "repeat"))
        for when, path, scenario in clicks:
            planner.add(when, "GET", path, ip, agent, "person", scenario, recipient=who)
            if org.click_check and rng.random() < org.click_check:
                check_ip = address_in(rng, pick_network(rng, org.check_networks))
                check_at = (when - rng.uniform(0.05, 0.6) if rng.random() < 0.7
                            else when + rng.uniform(15, 30))
                planner.add(check_at, "GET", path, check_ip, rng.choice(org.check_agents),
                            "scanner", "time-of-click", recipient=who)
    if leaves == "button":
        at = first + rng.uniform(60, 3600)
        planner.add(at, "GET", message.unsubscribe, ip, agent, "person", "unsubscribe-page",
                    then=_press_button(planner, ip, agent), recipient=who)
    elif leaves == "one-click":
        provider = address_in(rng, "google-mail" if org.key == "charity" else "azure")
        planner.add(first + rng.uniform(10, 600), "POST", message.one_click, provider, "",
                    "provider", "one-click", body=b"List-Unsubscribe=One-Click",
                    headers=(("content-type", "application/x-www-form-urlencoded"),),
                    recipient=who)


def _press_button(planner: Planner, ip: str, agent: str):  # type: ignore[no-untyped-def]
    rng = planner.rng
    delay = rng.uniform(2, 20)

    def press(response: httpx.Response, step: Step) -> list[Step]:
        fields = form_fields(response.text)
        if fields is None:
            return []
        action, values = fields
        values = values + _button_fields(response.text)
        headers = (("content-type", "application/x-www-form-urlencoded"),
                   ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"),
                   ("sec-fetch-dest", "document"), ("sec-fetch-user", "?1"),
                   ("origin", "null"))
        return [planner.add(step.at + delay, "POST", action or step.path, ip, agent, "person",
                            "unsubscribe-button", body=urlencode(values).encode(),
                            headers=headers, recipient=step.recipient,
                            then=_press_again(planner, ip, agent, headers))]
    return press


def _press_again(planner: Planner, ip: str, agent: str, headers: tuple):  # type: ignore[no-untyped-def]
    """A person shown a confirmation page instead of the result presses its button too."""
    def again(response: httpx.Response, step: Step) -> list[Step]:
        if "You are unsubscribed" in response.text:
            return []
        fields = form_fields(response.text)
        if fields is None:
            return []
        action, values = fields
        step.__dict__["needed_second_press"] = True
        values = values + _button_fields(response.text)
        return [planner.add(step.at + planner.rng.uniform(2, 8), "POST", action or step.path,
                            ip, agent, "person", "unsubscribe-confirm",
                            body=urlencode(values).encode(), headers=headers,
                            recipient=step.recipient)]
    return again


def _reading_delay(rng: random.Random) -> float:
    """When a person first reads the newsletter, after it reaches the mailbox."""
    roll = rng.random()
    if roll < 0.1:
        return rng.uniform(60, 600)
    if roll < 0.6:
        return rng.uniform(600, 8 * 3600)
    return rng.uniform(8 * 3600, 5 * 86400)


# --- running it through the real tracker ----------------------------------------------------


class Clock:
    """The simulated time the tracker stamps hits with."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcome:
    labels: dict[float, Step] = field(default_factory=dict)     # stored hit time -> its step
    unsubscribes: list[tuple[Step, int, bool]] = field(default_factory=list)
    requests: int = 0
    redirects_refused: int = 0


async def drive(app, planner: Planner, start: float) -> Outcome:  # type: ignore[no-untyped-def]
    """Replay every planned request in simulated-time order through the real app."""
    clock: Clock = app.clock
    wrapped = server.behind_proxies(app, PROXY[0])
    transport = httpx.ASGITransport(app=wrapped, client=PROXY)
    outcome = Outcome()
    queue = list(planner.steps)
    heapq.heapify(queue)
    used: set[float] = set()
    next_flush = start + FLUSH
    async with httpx.AsyncClient(transport=transport, base_url="http://t.example.org") as http:
        while queue:
            step = heapq.heappop(queue)
            while step.at in used:   # every hit keeps its own time: the label's key
                step.at = math.nextafter(step.at, math.inf)
            used.add(step.at)
            if step.at >= next_flush:
                app.flush()
                next_flush = (math.floor(step.at / FLUSH) + 1) * FLUSH
            clock.now = step.at
            if step.method == "REPORT":  # not a request: the provider's webhook is recorded
                step.then(None, step)  # type: ignore[misc]
                continue
            headers = {"user-agent": step.agent, "x-forwarded-for": step.ip, **dict(step.headers)}
            if not step.agent:
                headers.pop("user-agent")
            response = await http.request(step.method, step.path, headers=headers,
                                          content=step.body or None)
            outcome.requests += 1
            if step.path.startswith(("/c/", "/v/")):
                outcome.labels[step.at] = step
                if step.path.startswith("/c/") and response.status_code != 302:
                    outcome.redirects_refused += 1
            if step.method == "POST":
                outcome.unsubscribes.append((step, response.status_code,
                                             "You are unsubscribed" in response.text))
            location = response.headers.get("location", "")
            if step.follow and location.startswith(TRACKER):
                planner.seq += 1
                heapq.heappush(queue, Step(step.at + planner.rng.uniform(0.05, 0.3),
                                           planner.seq, "GET", location[len(TRACKER):],
                                           step.ip, step.agent, step.actor, step.scenario,
                                           recipient=step.recipient))
            if step.then is not None:
                for follow_up in step.then(response, step):
                    heapq.heappush(queue, follow_up)
    app.flush()
    return outcome


# --- measuring -----------------------------------------------------------------------------


def measure(database: db.Database, outcome: Outcome, messages: list[Message]) -> dict:
    """Everything the tables print, from the stored events and the report."""
    e = db.events
    with database.engine.connect() as conn:
        rows = list(conn.execute(sa.select(e.c.at, e.c.kind, e.c.link_id, e.c.pseudonym,
                                           e.c.scanner, e.c.reasons)
                                 .where(e.c.issue == SLUG)))
        kinds = dict(conn.execute(sa.select(db.links.c.link_id, db.links.c.kind)
                                  .where(db.links.c.issue == SLUG)).all())
        suppressed = {r[0] for r in conn.execute(sa.select(db.suppressions.c.address))}
    confusion = Counter()
    fp_reasons: Counter = Counter()
    scanner_reasons: dict[str, Counter] = defaultdict(Counter)
    scenarios: dict[str, Counter] = defaultdict(Counter)
    truth = {"clicks": 0, "downloads": 0, "views": 0}
    clickers: set[str] = set()
    unlabelled = 0
    for row in rows:
        step = outcome.labels.get(row.at)
        if step is None:
            unlabelled += 1
            continue
        scanner = step.actor == "scanner"
        flagged = bool(row.scanner)
        confusion[(scanner, flagged)] += 1
        scenarios[f"{step.actor}: {step.scenario}"][
            "flagged" if flagged else "counted"] += 1
        if not scanner and flagged:
            for reason in row.reasons.split(","):
                fp_reasons[reason] += 1
        if scanner and flagged:
            for reason in row.reasons.split(","):
                scanner_reasons[step.scenario][reason] += 1
        if not scanner:
            if row.kind == "click":
                truth["clicks"] += 1
                clickers.add(row.pseudonym)
                if kinds.get(row.link_id) == "download":
                    truth["downloads"] += 1
            elif row.kind == "view":
                truth["views"] += 1
    tp, fp = confusion[(True, True)], confusion[(False, True)]
    fn, tn = confusion[(True, False)], confusion[(False, False)]
    built = reporting.build(database, SLUG)
    reported = {"clicks": built["clicks"]["total"], "unique": built["clicks"]["unique"],
                "downloads": built["downloads"]["total"], "views": built["kpi"]["viewers"]}
    true = {"clicks": truth["clicks"], "unique": len(clickers),
            "downloads": truth["downloads"], "views": truth["views"]}
    unsub = Counter()
    addresses = {m.address for m in messages}
    for step, status, done in outcome.unsubscribes:
        unsub[(step.actor, step.scenario, "unsubscribed" if done else f"not ({status})")] += 1
    wrongly = {s.recipient for s, _, done in outcome.unsubscribes
               if done and s.actor == "scanner"}
    withdrawn = len((wrongly & addresses) - suppressed)
    return {
        "events": len(rows), "unlabelled": unlabelled, "requests": outcome.requests,
        "redirects_refused": outcome.redirects_refused,
        "recipients": len(messages), "organisations": len({m.org.key for m in messages}),
        "confusion": {"true_positive": tp, "false_positive": fp, "false_negative": fn,
                      "true_negative": tn},
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "true": true, "reported": reported,
        "false_positive_reasons": dict(sorted(fp_reasons.items())),
        "scenarios": {k: dict(v) for k, v in sorted(scenarios.items())},
        "reasons_by_scenario": {k: dict(sorted(v.items()))
                                for k, v in sorted(scanner_reasons.items())},
        "unsubscribes": {" / ".join(k): v for k, v in sorted(unsub.items())},
        "unsubscribed_by_scanners": len(wrongly & addresses & suppressed),
        "scanner_unsubscribes_withdrawn": withdrawn,
        "scanner_reasons": built["scanner_reasons"],
        "classifier": built.get("classifier"),
    }


def _report_delivery(database: db.Database, message: Message) -> None:
    """What the provider's "delivered" webhook does, through the code the webhook route uses."""
    from newsletter.bounces.events import EventType
    from newsletter.bounces.record import Event, record

    with database.engine.begin() as conn:
        record(conn, Event(key=f"webhook:simulated:{message.address}", at=message.delivered_at,
                           source="webhook", provider="simulated", type=EventType.DELIVERED,
                           address=message.address, issue=SLUG), 3)


def simulate(scale: float = 1.0, seed: int = DEFAULT_SEED, db_url: str | None = None,
             workdir: Path | None = None, delivery_reports: bool = True) -> dict:
    """Run the whole simulation; return the figures (see :func:`measure`).

    ``delivery_reports``: the provider reports when each message was delivered (webhooks), as
    Mailgun, Postmark and SendGrid do; without them the timing rules only know the send time.
    """
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="simulate-scanners-") as tmp:
        root = Path(workdir or tmp) / "project"
        root.mkdir(parents=True)
        url = db_url or "sqlite:///" + str(root / "newsletter.db")
        lists = make_project(root, scale)
        send(root, lists, url)
        database = db.open_db(url)
        try:
            messages = read_messages(root, database)
            planner = plan(messages, rng, report_delivery=(
                (lambda m: _report_delivery(database, m)) if delivery_reports else None))
            start = min(m.sent_at for m in messages)
            clock = Clock(start)
            app = server.create_app(database=database, clock=clock, flush_interval=FLUSH)
            try:
                outcome = asyncio.run(drive(app, planner, start))
            finally:
                app.close()
            return measure(database, outcome, messages)
        finally:
            database.close()


# --- printing ------------------------------------------------------------------------------


def _ratio(reported: int | None, true: int) -> str:
    if not true:
        return "-"
    return f"{(reported or 0) / true:.2f}"


def print_figures(figures: dict, seconds: float) -> None:
    c = figures["confusion"]
    print(f"{figures['requests']} requests, {figures['events']} hits stored, "
          f"{figures['recipients']} recipients in {figures['organisations']} organisations "
          f"({seconds:.1f} s)")
    print()
    print("Probable scanner?      flagged   counted as a person")
    print(f"  scanner hits        {c['true_positive']:>7}   {c['false_negative']:>7}")
    print(f"  people's hits       {c['false_positive']:>7}   {c['true_negative']:>7}")
    print(f"precision {figures['precision']}  recall {figures['recall']}")
    print()
    print("                      true   reported   reported/true")
    names = {"clicks": "people's clicks", "unique": "unique clickers", "downloads": "downloads",
             "views": "viewers"}
    for key, name in names.items():
        true, reported = figures["true"][key], figures["reported"][key]
        print(f"  {name:<18} {true:>6}   {reported!s:>8}   {_ratio(reported, true):>13}")
    print()
    print("False positives by reason:", ", ".join(
        f"{k} {v}" for k, v in figures["false_positive_reasons"].items()) or "none")
    print()
    print("By scenario                               flagged   counted")
    for name, counts in figures["scenarios"].items():
        print(f"  {name:<40} {counts.get('flagged', 0):>7}   {counts.get('counted', 0):>7}")
    delayed = figures["scenarios"].get("scanner: delayed-delivery", {})
    timed = figures["reasons_by_scenario"].get("delayed-delivery", {}).get("after-delivery", 0)
    print(f"  (of the {sum(delayed.values())} hits of scans after a delayed delivery, {timed} "
          "were marked after-delivery)")
    print()
    print("Unsubscribe POSTs:")
    for name, n in figures["unsubscribes"].items():
        print(f"  {name}: {n}")
    print(f"Recipients unsubscribed by a scanner: {figures['unsubscribed_by_scanners']} "
          f"(unsubscribes by scanners withdrawn when the tracker recognised them: "
          f"{figures['scanner_unsubscribes_withdrawn']})")
    print(f"Redirects refused: {figures['redirects_refused']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="recipients per organisation relative to the full simulation")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-delivery-reports", action="store_true",
                        help="no provider webhooks: timing rules know only when we sent")
    args = parser.parse_args()
    started = time.monotonic()
    figures = simulate(args.scale, args.seed, args.db,
                       delivery_reports=not args.no_delivery_reports)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_figures(figures, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
