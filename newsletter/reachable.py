"""Can recipients reach an address of ours? The tracking URL and assets URL of a real send.

Every tracked link, the web version, the images and the unsubscribe link of a message point at
the tracking URL, so it must be one the recipients' mail clients and browsers can reach: https
(RFC 8058 one-click unsubscribe requires it, and browsers warn about plain http) at a public
name. ``send`` refuses anything else for an adapter that delivers beyond this machine, and
``doctor`` reports the same problems.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# Names that only ever mean this machine or a private network.
_PRIVATE_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".lan", ".home.arpa",
                     ".intranet", ".corp", ".test", ".invalid")


def public_url_problems(url: str, *, needs_https: bool = True) -> list[str]:
    """Why recipients could not use ``url``, in plain words; [] when they can.

    Only the address is judged (no network): whether a public name really answers is
    ``doctor``'s job.
    """
    parts = urlsplit(url)
    problems = []
    host = (parts.hostname or "").rstrip(".").lower()
    if needs_https and parts.scheme != "https":
        problems.append("it is not https, which RFC 8058 one-click unsubscribe requires "
                        "(and browsers warn about plain http)")
    if not host:
        problems.append("it names no host")
        return problems
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if address.is_loopback:
            problems.append(f"{host} is this machine (a loopback address): recipients' "
                            "computers cannot reach it")
        elif not address.is_global:
            problems.append(f"{host} is a private or reserved address: recipients outside "
                            "your network cannot reach it")
    elif host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        problems.append(f"{host} is a name only this machine or network knows: recipients "
                        "cannot reach it")
    elif "." not in host:
        problems.append(f"{host} is not a full domain name (no dot): recipients' computers "
                        "cannot look it up")
    return problems


def delivers_beyond_this_machine(adapter: str) -> bool:
    """True for every adapter except ``maildir``, which only writes files here."""
    return adapter != "maildir"
