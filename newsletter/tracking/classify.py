"""Is a tracking hit a person or a mail security scanner? Answers with reasons, never blocks.

Partner organisations sit behind gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint,
Barracuda...) that fetch every link of every message, often seconds after delivery, sometimes
minutes or hours later, sometimes with HEAD, often from known networks or with tell-tale user
agents. Each hit gets a list of reasons; a hit with at least one reason is a *probable scanner*.
The redirect is served either way: nothing here blocks or delays anyone.

Two stages, both at write time (the reasons are stored with the event, so reports only count):

* :func:`hit_reasons`: what one request shows on its own: ``head``, ``scanner-agent``,
  ``no-agent``, ``scanner-network``, ``honeypot``. Runs in the request, with the raw IP, which is
  then only kept as a keyed hash (see :func:`hash_ip`).
* :class:`Classifier`: what needs the hits around it. The event writer feeds it every batch, in
  time order, before storing it; a verdict reached later about hits already stored (the client
  that fetched three links turns out to fetch the hidden honeypot link too) comes back as the
  list of hits whose reasons grew, and the writer updates their stored rows. Reports count the
  latest classification.

The rules of the classifier, in the words of docs/tracking.md. A *client* is one recipient's
token used from one address (its keyed hash) with one user agent; an *agent* is one address with
one user agent, whatever the recipient (views of the web version carry no recipient: they belong
to their agent).

* ``after-delivery``: a client that hits :attr:`Rules.after_delivery_links` different links
  within :attr:`Rules.after_delivery_seconds` of the message's delivery (individual tracking).
  A person may click within a minute; few click three links that fast.
* Answers to the feedback question (``feedback`` hits, ``/f/``) count as links of the message
  in every rule below, so a scanner's pass over the message is not taken for an answer.
* ``burst``: a client that hits :attr:`Rules.burst_links` different links within
  :attr:`Rules.burst_seconds` (three links opened in tabs stay below it).
* ``many-links``: a client that hits :attr:`Rules.sweep_links` different links within
  :attr:`Rules.sweep_seconds` (a scanner walking the whole message slowly; individual tracking).
* ``link-check``: a time-of-click check. Two hits on one recipient's link from two addresses,
  neither with a reason of its own: within :attr:`Rules.check_before_seconds` the earlier one
  is the check (a rewritten link is checked, then the person is sent on); later, within
  :attr:`Rules.check_after_seconds`, the later one is (some services check after the click).
* ``after-delivery`` for views of the web version: a view within
  :attr:`Rules.view_after_delivery_seconds` of the delivery of any message of the issue (a
  gateway fetching "view in browser" as the message arrives; no person opens it that fast),
  through the email's own addresses only (the ``email`` and ``direct`` outlets): a partner's
  reshared copy is read whenever, sends or not.
* ``same-client``: the verdict carried: every hit of a client within :attr:`Rules.client_seconds`
  before a verdict, and for :attr:`Rules.memory_seconds` after it (a scanner re-checking a
  message hours later from where it scanned it). A ``honeypot`` or ``head`` verdict is carried
  to every hit of the agent within :attr:`Rules.client_seconds` either side, whoever's link
  (and then to those clients for the memory); the other verdicts to the agent's views within
  :attr:`Rules.client_seconds` either side.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Substrings (case-insensitive) of user agents sent by link scanners, crawlers and scripts.
SCANNER_AGENTS: tuple[str, ...] = (
    "bingpreview", "safelinks", "safe links", "microsoft office", "ms-office", "mimecast",
    "proofpoint", "barracuda", "symantec", "messagelabs", "forcepoint", "trend micro", "trendmicro",
    "sophos", "fortiguard", "zscaler", "cisco", "ironport", "checkpoint", "headlesschrome",
    "phantomjs", "python-requests", "python-urllib", "aiohttp", "httpx", "curl/", "wget/",
    "go-http-client", "okhttp", "java/", "libwww-perl", "apache-httpclient", "scrapy",
    "googlebot", "bot/", "bot;", "crawler", "spider", "slurp", "facebookexternalhit",
    "slackbot", "linkpreview", "skypeuripreview", "whatsapp",
)

# Published outbound ranges of the big mail gateways: a starting list, extend it with
# NEWSLETTER_SCANNER_NETWORKS (comma-separated CIDRs).
SCANNER_NETWORKS: tuple[str, ...] = (
    # Microsoft Exchange Online Protection / Defender for Office 365
    "40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17",
    "2a01:111:f400::/48", "2a01:111:f403::/48",
    # Mimecast (UK and EU gateways)
    "195.130.217.0/24", "91.220.42.0/24", "146.101.78.0/24", "207.82.80.0/24",
    "205.139.110.0/24", "207.211.30.0/24", "207.211.31.0/25", "185.58.84.0/22",
    # Proofpoint
    "148.163.128.0/19", "67.231.144.0/20", "208.84.64.0/21", "208.86.200.0/21",
    # Barracuda
    "209.222.80.0/21", "64.235.144.0/20",
)

REASONS = ("head", "scanner-agent", "no-agent", "scanner-network", "honeypot", "after-delivery",
           "burst", "many-links", "link-check", "same-client")
# The version of the rules, stored with every event it classifies and shown by the report:
# 1 was the first release's (after-delivery on any hit, burst of 3 links per recipient).
VERSION = 2


def scanner_networks(extra: Iterable[str] = ()) -> tuple[
        ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The built-in scanner networks plus ``extra`` CIDRs (``NEWSLETTER_SCANNER_NETWORKS``)."""
    nets = []
    for text in (*SCANNER_NETWORKS, *extra):
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return tuple(nets)


@dataclass
class Rules:
    """Thresholds of the classification; the defaults are what docs/tracking.md describes."""

    after_delivery_seconds: float = 60.0
    after_delivery_links: int = 3
    burst_seconds: float = 2.0
    burst_links: int = 4
    sweep_seconds: float = 600.0
    sweep_links: int = 8
    client_seconds: float = 600.0
    memory_seconds: float = 7 * 86400.0
    check_before_seconds: float = 1.0
    check_after_seconds: float = 45.0
    view_after_delivery_seconds: float = 15.0
    agents: tuple[str, ...] = SCANNER_AGENTS
    networks: tuple = field(default_factory=scanner_networks)

    def __post_init__(self) -> None:
        self._agent_re = re.compile("|".join(re.escape(a) for a in self.agents), re.IGNORECASE)
        # The same few agents and addresses hit again and again (a gateway, a proxy): remember
        # the answers, so the click path does not run a regex or network search per request.
        self._agents: dict[str, bool] = {}
        self._ips: dict[str, bool] = {}

    def scanner_agent(self, user_agent: str) -> bool:
        known = self._agents.get(user_agent)
        if known is None:
            known = bool(self._agent_re.search(user_agent))
            if len(self._agents) > 10_000:
                self._agents.clear()
            self._agents[user_agent] = known
        return known

    def scanner_network(self, ip: str) -> bool:
        known = self._ips.get(ip)
        if known is None:
            try:
                address = ipaddress.ip_address(ip)
                known = any(address in net for net in self.networks
                            if net.version == address.version)
            except ValueError:
                known = False
            if len(self._ips) > 100_000:
                self._ips.clear()
            self._ips[ip] = known
        return known


def hit_reasons(rules: Rules, *, method: str, user_agent: str, ip: str,
                link_kind: str = "") -> list[str]:
    """Reasons one request, seen alone, looks like a scanner (empty: looks like a person)."""
    reasons = []
    if method == "HEAD":
        reasons.append("head")
    if not user_agent.strip():
        reasons.append("no-agent")
    elif rules.scanner_agent(user_agent):
        reasons.append("scanner-agent")
    if ip and rules.scanner_network(ip):
        reasons.append("scanner-network")
    if link_kind == "honeypot":
        reasons.append("honeypot")
    return reasons


class Deliveries(Protocol):
    """When messages reached their recipients' servers (the event writer reads the ledger)."""

    def of(self, issue: str, pseudonym: str) -> float | None:
        """When ``pseudonym``'s message of ``issue`` was delivered (None: unknown)."""

    def any_between(self, issue: str, start: float, end: float) -> bool:
        """Whether any message of ``issue`` was delivered from ``start`` to ``end``."""


class Seen(Protocol):
    """What the classifier reads of a hit (``events.Hit`` is one)."""

    at: float
    issue: str
    kind: str
    link_id: str
    pseudonym: str
    ip_hash: str
    user_agent: str
    reasons: list[str]
    outlet: str


# Outlets whose views a message's arrival can explain: its "view in browser" (email) and the
# plain address its honeypot link leads to (direct).
_EMAIL_OUTLETS = frozenset(("email", "direct"))

# Verdicts about an agent as a whole: only a machine fetches the hidden link or sends HEAD.
_AGENT_VERDICTS = frozenset(("honeypot", "head"))
# Hits on links of the message: clicks, and answers to the feedback question (a gateway that
# fetches every link fetches both answers too).
_LINK_KINDS = frozenset(("click", "feedback"))


class _Client:
    """One recipient's links used from one address with one user agent."""

    __slots__ = ("recent", "links", "delivered", "early", "until", "last", "fired")

    def __init__(self) -> None:
        self.recent: deque = deque(maxlen=64)
        self.links: dict[str, float] = {}   # link -> last time hit
        self.delivered: float | None = None  # the delivery time ``early`` was counted from
        self.early: set[str] = set()        # links hit soon after delivery
        self.until = float("-inf")          # hits up to this time carry the verdict
        self.last = float("-inf")
        self.fired: dict[str, float] = {}   # rule -> when it last marked this client's window


class _Agent:
    """One address with one user agent, whatever the recipient."""

    __slots__ = ("recent", "until", "views_until", "last")

    def __init__(self) -> None:
        self.recent: deque = deque(maxlen=128)
        self.until = float("-inf")         # honeypot/head: every later hit until then
        self.views_until = float("-inf")   # another verdict: its views until then
        self.last = float("-inf")


class Classifier:
    """The rules that need other hits, applied incrementally to batches in time order.

    Keeps what the rules need in memory (bounded: a few dozen recent hits per client and per
    agent, forgotten after :attr:`Rules.memory_seconds` of silence), so each hit costs a few
    dictionary lookups; the database is never read back.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._clients: dict[tuple[str, str, str, str], _Client] = {}
        self._agents: dict[tuple[str, str, str], _Agent] = {}
        self._links: dict[tuple[str, str, str], deque] = {}  # a recipient's link: recent hits
        self._touched: dict[int, Seen] = {}
        self._seen = 0

    def observe(self, hits: Sequence[Seen], delivered: Deliveries) -> list[Seen]:
        """Classify ``hits`` (adding reasons to them) and return every hit, of this batch or an
        earlier one, whose reasons grew."""
        self._touched = {}
        for hit in sorted(hits, key=lambda h: h.at):
            self._observe(hit, delivered)
        self._seen += len(hits)
        if self._seen > 20_000:
            self._seen = 0
            self._forget(max((h.at for h in hits), default=0.0))
        return list(self._touched.values())

    def suspected(self, issue: str, ip_hash: str, user_agent: str, at: float) -> bool:
        """Whether this agent is a probable scanner on ``issue`` at ``at``: under a verdict, or
        with a probable scanner's hit in the last :attr:`Rules.client_seconds`."""
        agent = self._agents.get((issue, ip_hash, user_agent))
        if agent is None:
            return False
        if agent.until >= at or agent.views_until >= at:
            return True
        since = at - self.rules.client_seconds
        for hit in agent.recent:
            if hit.reasons and hit.at >= since:
                return True
            client = self._clients.get((hit.issue, hit.pseudonym, hit.ip_hash, hit.user_agent))
            if client is not None and client.until >= at:
                return True
        return False

    # -- one hit --------------------------------------------------------------------------
    def _observe(self, hit: Seen, delivered: Deliveries) -> None:
        rules = self.rules
        at = hit.at
        agent, client = self._follow(hit)
        # a verdict reached earlier about this agent or client carries to this hit
        memory = rules.memory_seconds
        if agent.until >= at:
            self._mark(hit, "same-client")
            if client is not None:
                client.until = max(client.until, at + memory)
        elif (client is not None and client.until >= at) or (
                hit.kind == "view" and agent.views_until >= at):
            self._mark(hit, "same-client")
        if _AGENT_VERDICTS.intersection(hit.reasons):
            self._agent_verdict(agent, at)
            if client is not None:
                self._client_verdict(client, agent, at)
        if hit.kind == "view" and not hit.reasons and hit.outlet in _EMAIL_OUTLETS and \
                delivered.any_between(hit.issue, at - rules.view_after_delivery_seconds, at):
            self._mark(hit, "after-delivery")
        if client is None or hit.kind not in _LINK_KINDS:
            return
        self._link_rules(hit, client, agent, delivered)

    def _follow(self, hit: Seen) -> tuple[_Agent, _Client | None]:
        """The hit's agent (address and browser) and, unless it is a view of the web version,
        its client (the recipient's link from that agent), each remembering the hit."""
        agent_key = (hit.issue, hit.ip_hash, hit.user_agent)
        agent = self._agents.get(agent_key)
        if agent is None:
            agent = self._agents[agent_key] = _Agent()
        agent.recent.append(hit)
        agent.last = hit.at
        client: _Client | None = None
        if hit.kind != "view":
            client_key = (hit.issue, hit.pseudonym, hit.ip_hash, hit.user_agent)
            client = self._clients.get(client_key)
            if client is None:
                client = self._clients[client_key] = _Client()
            client.recent.append(hit)
            client.last = hit.at
        return agent, client

    def _link_rules(self, hit: Seen, client: _Client, agent: _Agent,
                    delivered: Deliveries) -> None:
        """The rules about one client's links: burst, many-links, link-check, after-delivery."""
        rules = self.rules
        at = hit.at
        link = hit.link_id
        client.links[link] = at
        links = client.links
        if len(links) >= rules.burst_links and _within(links, at - rules.burst_seconds) \
                >= rules.burst_links:
            self._fire(client, hit, at - rules.burst_seconds, "burst")
            self._client_verdict(client, agent, at)
        if hit.pseudonym and len(links) >= rules.sweep_links and \
                _within(links, at - rules.sweep_seconds) >= rules.sweep_links:
            self._fire(client, hit, at - rules.sweep_seconds, "many-links")
            self._client_verdict(client, agent, at)
        if hit.pseudonym:
            self._link_check(hit)
            when = delivered.of(hit.issue, hit.pseudonym)
            if when != client.delivered:
                # first seen, or a delivery report arrived after earlier hits: count again
                client.delivered = when
                client.early = set() if when is None else {
                    h.link_id for h in client.recent if h.kind == "click"
                    and 0 <= h.at - when <= rules.after_delivery_seconds}
            if when is not None and 0 <= at - when <= rules.after_delivery_seconds:
                client.early.add(link)
                if len(client.early) >= rules.after_delivery_links:
                    self._fire(client, hit, when, "after-delivery")
                    self._client_verdict(client, agent, at)

    def _link_check(self, hit: Seen) -> None:
        """The time-of-click rule: one recipient's link from two addresses, seconds apart."""
        rules = self.rules
        key = (hit.issue, hit.pseudonym, hit.link_id)
        recent = self._links.get(key)
        if recent is None:
            recent = self._links[key] = deque(maxlen=4)
        for other in recent:
            if other.ip_hash == hit.ip_hash or other.reasons or hit.reasons:
                continue
            gap = hit.at - other.at
            if 0 <= gap <= rules.check_before_seconds:
                self._mark(other, "link-check")
            elif gap <= rules.check_after_seconds:
                self._mark(hit, "link-check")
        recent.append(hit)

    # -- verdicts -------------------------------------------------------------------------
    def _agent_verdict(self, agent: _Agent, at: float) -> None:
        """Honeypot or HEAD: the agent's hits around it, whoever's links they used, and those
        recipients' clients from now on."""
        rules = self.rules
        if agent.until < at:  # else the hits before were marked when the verdict was reached
            since = at - rules.client_seconds
            for other in agent.recent:
                if other.at >= since:
                    self._mark(other, "same-client")
                    if other.kind != "view":
                        client = self._clients.get((other.issue, other.pseudonym, other.ip_hash,
                                                    other.user_agent))
                        if client is not None:
                            client.until = max(client.until, at + rules.memory_seconds)
        # Other recipients' links and views from this agent only around the verdict: an office
        # NAT can give a scanner and a person the same address and, rarely, the same agent.
        agent.until = max(agent.until, at + rules.client_seconds)

    def _client_verdict(self, client: _Client, agent: _Agent, at: float) -> None:
        window = self.rules.client_seconds
        if client.until < at:
            self._mark_recent(client, at - window, "same-client")
        client.until = max(client.until, at + self.rules.memory_seconds)
        if agent.views_until < at:
            for other in agent.recent:
                if other.kind == "view" and other.at >= at - window:
                    self._mark(other, "same-client")
        agent.views_until = max(agent.views_until, at + window)

    def _fire(self, client: _Client, hit: Seen, since: float, reason: str) -> None:
        """A rule matched the client's hits from ``since`` to ``hit``: mark them (the earlier
        ones only once: a scanner's pass matches again at every further link)."""
        fired = client.fired.get(reason, float("-inf"))
        if fired >= since:  # the window up to then is marked: only what came after it
            for other in reversed(client.recent):
                if other.at <= fired:
                    break
                self._mark(other, reason)
        else:
            self._mark_recent(client, since, reason)
        client.fired[reason] = hit.at

    def _mark_recent(self, client: _Client, since: float, reason: str) -> None:
        for other in client.recent:
            if other.at >= since:
                self._mark(other, reason)

    def _mark(self, hit: Seen, reason: str) -> None:
        reasons = hit.reasons
        if reason in reasons or (reason == "same-client" and reasons):
            return  # "same-client" only names hits that had no reason of their own
        if reasons == ["same-client"]:
            reasons.clear()
        reasons.append(reason)
        self._touched[id(hit)] = hit

    def _forget(self, now: float) -> None:
        """Drop clients and agents silent for longer than the memory (bounded state)."""
        horizon = now - self.rules.memory_seconds
        self._clients = {k: c for k, c in self._clients.items() if c.last >= horizon}
        self._agents = {k: a for k, a in self._agents.items() if a.last >= horizon}
        recent = now - self.rules.check_after_seconds
        self._links = {k: d for k, d in self._links.items() if d and d[-1].at >= recent}


def _within(times: dict[str, float], since: float) -> int:
    """How many of the links were hit at or after ``since``."""
    return sum(1 for t in times.values() if t >= since)


def join_reasons(reasons: Iterable[str]) -> str:
    """Stored form: sorted, comma-separated, no duplicates."""
    return ",".join(sorted(set(r for r in reasons if r)))


def hash_ip(key: bytes, ip: str) -> str:
    """A keyed hash of the client address: stable per key (bursts, counting), not reversible
    without the key, and meaningless once the key is rotated away."""
    if not ip:
        return ""
    return hmac.new(key, ip.encode("ascii", "replace"), hashlib.sha256).hexdigest()[:16]
