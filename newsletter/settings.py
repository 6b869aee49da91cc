"""One home for settings: ``newsletter.yaml`` plus the environment, read once.

An environment variable wins over the settings file, and built-in defaults fill the rest.
Secrets (signing keys, SMTP passwords, provider keys) come only from the environment, never
from a file in the project.

This is the only module that reads ``os.environ``. Every variable the code reads is listed in
:data:`ENVIRONMENT` and in the README's settings table (``tests/test_settings.py`` fails when
either misses one). Adapters read their own variables (``NEWSLETTER_SMTP_URL``, provider keys)
from :attr:`Settings.env`, the environment handed in here, so tests can inject one.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter import outlets
from newsletter.errors import ConfigurationError, InvalidSettings
from newsletter.outlets import Outlet

SETTINGS_FILE = "newsletter.yaml"
DEFAULT_TRACKING_URL = "http://127.0.0.1:8025"
DEFAULT_SEND_LEASE = 15 * 60.0
DEFAULT_DB_WAIT = 60.0

# Every environment variable the code reads, and what it is for (the README table lists them).
ENVIRONMENT: dict[str, str] = {
    "NEWSLETTER_TRACKING_URL": "public base URL of the tracker (default http://127.0.0.1:8025)",
    "NEWSLETTER_DB": "the database: a SQLite path (default newsletter.db) or postgresql://...",
    "NEWSLETTER_SECRET_KEY": "signing key(s) for tracked links, kid:secret[,kid:secret]",
    "NEWSLETTER_ADAPTER": "mail adapter (default maildir)",
    "NEWSLETTER_MAILDIR": "folder for the maildir adapter (default maildir/)",
    "NEWSLETTER_SMTP_URL": "smtp://user:pass@host:587?starttls=true or smtps://...",
    "NEWSLETTER_SMTP_CA_FILE": "PEM file of CA certificates to trust for SMTP TLS",
    "MAILGUN_API_KEY": "Mailgun key", "MAILGUN_DOMAIN": "Mailgun sending domain",
    "MAILGUN_API_URL": "Mailgun API base URL (EU: https://api.eu.mailgun.net)",
    "POSTMARK_SERVER_TOKEN": "Postmark server token",
    "POSTMARK_MESSAGE_STREAM": "id of the Postmark server's Broadcasts stream (required)",
    "POSTMARK_API_URL": "Postmark API base URL",
    "SENDGRID_API_KEY": "SendGrid key", "SENDGRID_API_URL": "SendGrid API base URL",
    "NEWSLETTER_SEND_LEASE": "seconds after which a claim of a send that stopped answering "
                             "may be taken over (default 900)",
    "NEWSLETTER_DB_WAIT": "seconds commands wait for a database that is down, locked or full "
                          "before stopping with a message (default 60)",
    "NEWSLETTER_SCANNER_NETWORKS": "extra mail-scanner networks, comma-separated CIDRs",
    "NEWSLETTER_SPILL_DIR": "where trackers before the journal saved events they could not "
                            "store (track serve names them; track import stores them)",
    "NEWSLETTER_TRACKER_DB": "internal: `track serve` hands the database URL to its workers",
    "NEWSLETTER_TRACKER_FLUSH": "internal: `track serve` hands --flush-interval to its workers",
    "NEWSLETTER_TRACKER_PROXIES": "internal: `track serve` hands --forwarded-allow-ips to its "
                                  "workers",
    "NEWSLETTER_TRACKER_JOURNAL": "internal: `track serve` hands --journal to its workers",
    "NEWSLETTER_TRACKER_SOFT_BOUNCE_LIMIT": "internal: `track serve` hands soft_bounce_limit "
                                            "to its workers",
    "NEWSLETTER_TRACKER_MAIN_PID": "internal: the `track serve` process its workers die with",
    "NEWSLETTER_TRACKER_PUBLIC_URL": "internal: `track serve` hands tracking_url to its workers",
    "NEWSLETTER_TRACKER_INDEX": "internal: `track serve` hands search_engines to its workers",
    "MALLOC_ARENA_MAX": "glibc's; when set, send leaves its memory arenas as you chose",
    "NEWSLETTER_BOUNCE_IMAP_URL": "the bounce mailbox: imaps://USER@HOST/FOLDER",
    "NEWSLETTER_BOUNCE_IMAP_PASSWORD": "the bounce mailbox's password",
    "NEWSLETTER_BOUNCE_IMAP_CA_FILE": "PEM file of CA certificates to trust for the bounce "
                                      "mailbox's TLS",
    "MAILGUN_WEBHOOK_SIGNING_KEY": "Mailgun's HTTP webhook signing key",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "SendGrid's Signed Event Webhook verification key",
    "POSTMARK_WEBHOOK_USER": "user name in the Postmark webhook URL's basic auth",
    "POSTMARK_WEBHOOK_PASSWORD": "password in the Postmark webhook URL's basic auth",
}

# The provider webhook secrets the tracker reads (``newsletter.hooks``).
WEBHOOK_VARIABLES = ("MAILGUN_WEBHOOK_SIGNING_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY",
                     "POSTMARK_WEBHOOK_USER", "POSTMARK_WEBHOOK_PASSWORD")
DEFAULT_SOFT_BOUNCE_LIMIT = 3

# newsletter.yaml keys; each is described in docs/issue-format.md ("Settings").
FILE_KEYS = ("tracking_url", "theme", "list_id", "list_id_domain", "unsubscribe_mailto",
             "assets_url", "bounce_address", "soft_bounce_limit", "search_engines", "outlets",
             "strategy_start")
_FLAG_KEYS = ("search_engines",)
_URL_KEYS = ("tracking_url", "assets_url")
# Read by their own checks below, not as one line of text.
_STRUCTURED_KEYS = ("list_id", "outlets", "strategy_start")


@dataclass(frozen=True)
class Settings:
    """Every setting the code reads, resolved once. Build with :meth:`load`."""

    root: Path
    env: Mapping[str, str] = field(repr=False)
    tracking_url: str = DEFAULT_TRACKING_URL
    theme: str = "theme.yaml"
    list_id_domain: str = "newsletter.example.org"
    list_id: str = ""
    unsubscribe_mailto: str = "unsubscribe@example.org"
    assets_url: str = ""
    # Let search engines index the web versions and the archive (off: they carry noindex).
    search_engines: bool = False
    database: str = ""
    secret_key: str = field(default="", repr=False)
    adapter: str = ""
    send_lease: float = DEFAULT_SEND_LEASE
    db_wait: float = DEFAULT_DB_WAIT
    scanner_networks: tuple[str, ...] = ()
    spill_dir: str = ""
    malloc_arena_max_set: bool = False
    bounce_address: str = ""
    soft_bounce_limit: int = DEFAULT_SOFT_BOUNCE_LIMIT
    bounce_imap_url: str = ""
    bounce_imap_password: str = field(default="", repr=False)
    bounce_imap_ca_file: str = ""
    # Where the newsletter is reshared (newsletter.outlets), in the order written.
    outlets: tuple[Outlet, ...] = ()
    # The first day of the strategy: `report --all` totals its years from it (else by
    # calendar year).
    strategy_start: dt.date | None = None

    @property
    def webhook_env(self) -> dict[str, str]:
        """The provider webhook secrets, for ``newsletter.hooks``."""
        return {name: self.env.get(name, "").strip() for name in WEBHOOK_VARIABLES}

    @classmethod
    def load(cls, root: Path, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``root/newsletter.yaml`` (absent: defaults) and the environment ``env``
        (default: this process's). Raises InvalidSettings, located, for a bad file."""
        env = dict(os.environ if env is None else env)
        values = read_file(root / SETTINGS_FILE)

        def pick(variable: str, key: str, default: str) -> str:
            return env.get(variable, "").strip() or str(values.get(key) or "") or default

        return cls(
            root=root, env=env,
            tracking_url=pick("NEWSLETTER_TRACKING_URL", "tracking_url",
                              DEFAULT_TRACKING_URL).rstrip("/"),
            theme=str(values.get("theme") or "theme.yaml"),
            list_id_domain=str(values.get("list_id_domain") or "newsletter.example.org"),
            list_id=str(values.get("list_id") or ""),
            unsubscribe_mailto=str(values.get("unsubscribe_mailto")
                                   or "unsubscribe@example.org"),
            assets_url=str(values.get("assets_url") or ""),
            search_engines=values.get("search_engines") is True,
            database=env.get("NEWSLETTER_DB", "").strip(),
            secret_key=env.get("NEWSLETTER_SECRET_KEY", "").strip(),
            adapter=env.get("NEWSLETTER_ADAPTER", "").strip(),
            send_lease=_seconds(env, "NEWSLETTER_SEND_LEASE", DEFAULT_SEND_LEASE),
            db_wait=_seconds(env, "NEWSLETTER_DB_WAIT", DEFAULT_DB_WAIT),
            scanner_networks=_networks(env.get("NEWSLETTER_SCANNER_NETWORKS", "")),
            spill_dir=env.get("NEWSLETTER_SPILL_DIR", "").strip(),
            malloc_arena_max_set=bool(env.get("MALLOC_ARENA_MAX", "").strip()),
            bounce_address=str(values.get("bounce_address") or "").strip().lower(),
            soft_bounce_limit=int(values.get("soft_bounce_limit")
                                  or DEFAULT_SOFT_BOUNCE_LIMIT),
            bounce_imap_url=env.get("NEWSLETTER_BOUNCE_IMAP_URL", "").strip(),
            bounce_imap_password=env.get("NEWSLETTER_BOUNCE_IMAP_PASSWORD", ""),
            bounce_imap_ca_file=_path(root, env.get("NEWSLETTER_BOUNCE_IMAP_CA_FILE", "")),
            outlets=tuple(values.get("outlets") or ()),
            strategy_start=values.get("strategy_start"),
        )

    @property
    def list_id_parts(self) -> tuple[str, str]:
        """(name, id) of the newsletter's List-Id (RFC 2919): ``list_id``, else the bare id
        ``list_id_domain``. The same for every issue, so mail filters see one list."""
        return split_list_id(self.list_id) or ("", self.list_id_domain)


# RFC 2919 2: list-label "." namespace, both dot-atom-text; kept to letters, digits, "-"
# and "_" so the id reads the same in every mail client's filter rules.
_LIST_ID_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+")
_NAMED_LIST_ID_RE = re.compile(r"(?:(?P<name>[^<>]*?)\s*)?<(?P<id>[^<>]*)>")


def split_list_id(value: str) -> tuple[str, str] | None:
    """``"Name <label.domain>"``, ``"<label.domain>"`` or ``"label.domain"`` as (name, id);
    None when it is not one of those."""
    value = value.strip()
    named = _NAMED_LIST_ID_RE.fullmatch(value)
    name, list_id = (named["name"] or "", named["id"]) if named else ("", value)
    if not _LIST_ID_RE.fullmatch(list_id) or len(list_id) > 255 or not name.isprintable():
        return None
    return name.strip(), list_id


def read_file(path: Path) -> dict[str, Any]:
    """The checked values of a settings file; {} when it does not exist."""
    if not path.exists():
        return {}
    from newsletter.fields import Fields
    from newsletter.yamlfile import read_yaml

    data, problems = read_yaml(path, path.name)
    c = Fields(path.name, problems)
    settings = c.mapping(data, (1, 1), "the settings") if data is not None else None
    if settings is not None:
        c.keys(settings, FILE_KEYS, "the settings")
        for key in FILE_KEYS:
            if key in _URL_KEYS and key in settings:
                c.url(settings, key, "the settings", schemes=("http", "https"))
            elif key in _FLAG_KEYS and key in settings:
                settings[key] = c.flag(settings, key, False)
            elif key in settings and key not in _STRUCTURED_KEYS:
                c.text(settings, key, "the settings")
        if "list_id" in settings:
            value = c.header_text(settings, "list_id", "the settings")
            if value and split_list_id(value) is None:
                c.error(settings.value_at("list_id"),
                        f"list_id {value!r} is not a name and a list id",
                        'write the newsletter\'s name and a lasting id in angle brackets, e.g. '
                        'list_id: "Kent and Medway Prevent Partner Newsletter '
                        '<prevent-newsletter.example.org>" (the id: a word, a dot and your '
                        'domain; letters, digits, "-" and "_")')
        _check_bounce_settings(c, settings)
        if "outlets" in settings:
            settings["outlets"] = outlets.check(c, settings)
        if "strategy_start" in settings:
            settings["strategy_start"] = c.date(settings, "strategy_start", "the settings")
    if c.has_errors:
        raise InvalidSettings(c.problems)
    return dict(settings or {})


def _check_bounce_settings(c: Any, settings: Any) -> None:
    """bounce_address must take a VERP tag; soft_bounce_limit is a whole number from 1."""
    from newsletter.bounces.verp import check_bounce_address

    if "bounce_address" in settings:
        value = settings["bounce_address"]
        problem = check_bounce_address(str(value)) if isinstance(value, str) else \
            "bounce_address must be an email address"
        if problem:
            c.error(settings.value_at("bounce_address"), f"bounce_address: {problem}",
                    hint="use a mailbox of its own on your sending domain, e.g. "
                    "bounces@news.example.org")
    if "soft_bounce_limit" in settings:
        value = settings["soft_bounce_limit"]
        try:
            number = int(str(value))
        except ValueError:
            number = 0
        if number < 1:
            c.error(settings.value_at("soft_bounce_limit"),
                    f"soft_bounce_limit must be a whole number from 1, not {str(value)!r}",
                    hint="soft bounces in a row, across issues, that suppress an address "
                    "(default 3)")
        else:
            settings["soft_bounce_limit"] = number


def _path(root: Path, value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    path = Path(value)
    return str(path if path.is_absolute() else root / path)


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    text = env.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(
            f"the environment variable {variable}={text!r} is not a number of seconds",
            hint=f"set it to a positive number, e.g. {variable}={int(default)}, or unset it")
    return value


def _networks(text: str) -> tuple[str, ...]:
    # A mistyped network would silently count that scanner's clicks as people's: refuse it.
    import ipaddress

    networks = _list(text)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigurationError(
                f"NEWSLETTER_SCANNER_NETWORKS: {network!r} is not a network",
                hint="write networks in CIDR form separated by commas, "
                "e.g. 198.51.100.0/24,2001:db8::/32") from None
    return networks


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class TrackerWorker:
    """What a tracker worker process needs; ``track serve`` hands it over in the environment
    because granian imports the app by name in each worker."""

    database: str
    flush_interval: float
    proxies: tuple[str, ...]
    secret_key: str = field(default="", repr=False)
    scanner_networks: tuple[str, ...] = ()
    spill_dir: str = ""
    journal: str = ""  # the journal folder ("" for none: benchmarks only)
    soft_bounce_limit: int = DEFAULT_SOFT_BOUNCE_LIMIT
    webhook_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    main_pid: int = 0  # the `track serve` process, whose death the workers follow
    db_wait: float = DEFAULT_DB_WAIT
    public_url: str = ""
    search_engines: bool = False

    def export(self) -> None:
        """Put these settings where the workers about to be started will read them."""
        os.environ["NEWSLETTER_TRACKER_DB"] = self.database
        os.environ["NEWSLETTER_TRACKER_FLUSH"] = str(self.flush_interval)
        os.environ["NEWSLETTER_TRACKER_PROXIES"] = ",".join(self.proxies)
        os.environ["NEWSLETTER_TRACKER_JOURNAL"] = self.journal
        os.environ["NEWSLETTER_TRACKER_SOFT_BOUNCE_LIMIT"] = str(self.soft_bounce_limit)
        os.environ["NEWSLETTER_TRACKER_MAIN_PID"] = str(self.main_pid)
        os.environ["NEWSLETTER_TRACKER_PUBLIC_URL"] = self.public_url
        os.environ["NEWSLETTER_TRACKER_INDEX"] = "1" if self.search_engines else ""

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> TrackerWorker:
        """In a worker: the settings ``export`` left, or an error saying how to start one."""
        env = os.environ if env is None else env
        database = env.get("NEWSLETTER_TRACKER_DB", "")
        if not database:
            raise RuntimeError("NEWSLETTER_TRACKER_DB is not set: start the tracker with "
                               "`newsletter track serve`")
        return cls(database=database,
                   flush_interval=float(env.get("NEWSLETTER_TRACKER_FLUSH", "0.05")),
                   proxies=_list(env.get("NEWSLETTER_TRACKER_PROXIES", "127.0.0.1")),
                   secret_key=env.get("NEWSLETTER_SECRET_KEY", "").strip(),
                   scanner_networks=_list(env.get("NEWSLETTER_SCANNER_NETWORKS", "")),
                   spill_dir=env.get("NEWSLETTER_SPILL_DIR", "").strip(),
                   journal=env.get("NEWSLETTER_TRACKER_JOURNAL", "").strip(),
                   soft_bounce_limit=int(env.get("NEWSLETTER_TRACKER_SOFT_BOUNCE_LIMIT")
                                         or DEFAULT_SOFT_BOUNCE_LIMIT),
                   webhook_env={name: env.get(name, "").strip() for name in WEBHOOK_VARIABLES},
                   main_pid=int(env.get("NEWSLETTER_TRACKER_MAIN_PID", "0") or 0),
                   db_wait=_seconds(env, "NEWSLETTER_DB_WAIT", DEFAULT_DB_WAIT),
                   public_url=env.get("NEWSLETTER_TRACKER_PUBLIC_URL", "").strip(),
                   search_engines=env.get("NEWSLETTER_TRACKER_INDEX", "") == "1")
