"""Is a tracking hit a person or a mail security scanner? Answers with reasons, never blocks.

Partner organisations sit behind gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint,
Barracuda...) that fetch every link of every message, often seconds after delivery, sometimes with
HEAD, often from known networks or with tell-tale user agents. Each hit gets a list of reasons;
a hit with at least one reason is a *probable scanner*. The redirect is served either way.

Two stages, both at write time (the reasons are stored with the event, so reports only count):

* :func:`hit_reasons` — what one request shows on its own: ``head``, ``scanner-agent``,
  ``no-agent``, ``scanner-network``, ``honeypot``. Runs in the request, with the raw IP, which is
  then only kept as a keyed hash (see :func:`hash_ip`).
* :func:`after_delivery` and :func:`burst_ids` — what needs other rows: ``after-delivery`` (within
  :attr:`Rules.after_delivery_seconds` of the ledger's ``sent_at``, individual tracking only) and
  ``burst`` (at least :attr:`Rules.burst_links` different links of one issue from the same
  recipient — or, with no recipient, the same IP hash and user agent — within
  :attr:`Rules.burst_seconds`). The event writer applies these when it flushes a batch, against
  the database, so hits served by different tracker instances are seen together.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
           "burst")


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
    burst_seconds: float = 2.0
    burst_links: int = 3
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


def after_delivery(rules: Rules, at: float, sent_at: float | None) -> bool:
    """A hit within seconds of the message being accepted: no person reads that fast."""
    return sent_at is not None and 0 <= at - sent_at <= rules.after_delivery_seconds


def burst_ids(rules: Rules, hits: Sequence[tuple[int, float, str]]) -> set[int]:
    """Ids of hits that are part of a burst, from one sender's ``(id, at, link_id)`` hits.

    A burst is a window of ``burst_seconds`` holding ``burst_links`` or more distinct links.
    """
    ordered = sorted(hits, key=lambda h: h[1])
    marked: set[int] = set()
    start = 0
    counts: dict[str, int] = {}
    for end, (_id, at, link) in enumerate(ordered):
        counts[link] = counts.get(link, 0) + 1
        while at - ordered[start][1] > rules.burst_seconds:
            old = ordered[start][2]
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
            start += 1
        if len(counts) >= rules.burst_links:
            marked.update(h[0] for h in ordered[start:end + 1])
    return marked


def join_reasons(reasons: Iterable[str]) -> str:
    """Stored form: sorted, comma-separated, no duplicates."""
    return ",".join(sorted(set(r for r in reasons if r)))


def hash_ip(key: bytes, ip: str) -> str:
    """A keyed hash of the client address: stable per key (bursts, counting), not reversible
    without the key, and meaningless once the key is rotated away."""
    if not ip:
        return ""
    return hmac.new(key, ip.encode("ascii", "replace"), hashlib.sha256).hexdigest()[:16]
