"""What every mail adapter is: the contract, the answers it gives, and the registry.

An adapter is only delivery. It opens and closes a connection and hands over a batch of
messages, saying for each what the server or provider answered. Everything else (claiming
ledger rows, pacing, parallel connections, retries, pausing after failures in a row, stopping,
recording) is the send loop's, in :mod:`newsletter.sendloop`, so every adapter, built-in or
plug-in, gets the same behaviour without writing it.

The contract (:class:`Adapter`)::

    name: ClassVar[str]                        what --adapter NAME chooses
    max_batch: ClassVar[int] = 1               messages per deliver() call
    max_batch_bytes: ClassVar[int] = 0         a size cap per batch (0: none), with size()
    supports_concurrency: ClassVar[bool] = True
    __init__(settings: AdapterSettings)        read settings; raise ConfigurationError
    check_settings(settings) (classmethod)     before anything is sent
    describe() -> str                          where messages go (no secrets)
    preflight() -> list[str]                   check the provider's own settings before
                                               sending: raise ConfigurationError, or warn
    open() / close()                           a connection per worker; close() always runs
    send(message) -> str                       one message; the provider's id for it
    deliver(batch) -> list[Outcome]            one Outcome per message, in order; the
                                               default calls send() for each

How an answer is given, by raising from ``send()`` or ``deliver()`` or returning an Outcome::

    TransientError   try later                                     -> deferred, backoff
    PermanentError   this recipient can never get it               -> failed
    OutcomeUnknown   handed over, but no answer came back          -> unknown, retried with
                                                                      the same Message-ID
    RateLimited      slow down; not counted as an attempt          -> every connection waits
                                                                      ``retry_after`` seconds
    ConfigurationError (newsletter.errors): a setting is wrong (key, sender, domain, stream):
                     the run stops, nobody is marked failed, the batch goes back as it was
    ConfigurationStop  the same, met part-way through a batch: carries the outcomes of the
                     messages already settled (accepted ones are recorded as sent)

An error raised from ``deliver()`` is the answer for every message of the batch. What counts as
which is the adapter's to say, from what its server documents: over SMTP a 4xx reply is
temporary and a 5xx permanent (RFC 5321); HTTP providers answer with their own status codes
and error codes, read in ``http.py`` and each provider's module. An adapter that must wait
(e.g. before asking a provider whether a message whose answer was lost arrived) waits with
``self.stopping.wait(seconds)``, which returns True at once when the run is stopping.

Adapters are found through the entry-point group ``newsletter.adapters``: the built-in ones
are declared in this package's pyproject.toml, a plug-in in its own::

    [project.entry-points."newsletter.adapters"]
    ses = "newsletter_ses:SesAdapter"
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from newsletter.errors import ConfigurationError, NewsletterError, NotSupported
from newsletter.status import ANSWERS, Status

if TYPE_CHECKING:
    from newsletter.message import OutgoingMessage

ENTRY_POINT_GROUP = "newsletter.adapters"
DISTRIBUTION = "newsletter"     # the package whose entry points are the built-in adapters
DEFAULT_RETRY_AFTER = 60.0


# --- answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """An adapter's answer for one message.

    ``status`` is SENT, DEFERRED, FAILED or UNKNOWN. ``retry_after`` is set only when the
    provider asked us to slow down (:class:`RateLimited`): the message was not taken, the try
    does not count, and every connection waits that many seconds. ``recipient_problem`` marks
    a FAILED that the provider said is about the recipient (an address it refuses, one that
    bounced or complained before): the kind of failure that belongs on the suppression list.
    """

    status: Status
    error: str = ""
    provider_id: str = ""
    retry_after: float | None = None
    recipient_problem: bool = False

    def __post_init__(self) -> None:
        if self.status not in ANSWERS:
            raise ValueError(f"an adapter answers sent, deferred, failed or unknown, "
                             f"not {self.status!r}")
        if not isinstance(self.status, Status):
            object.__setattr__(self, "status", Status(self.status))

    @classmethod
    def sent(cls, provider_id: str = "") -> Outcome:
        """The message was accepted; ``provider_id`` is the server's or provider's id for it."""
        return cls(Status.SENT, provider_id=provider_id)

    @property
    def rate_limited(self) -> bool:
        """True when the provider asked us to wait before trying again (not an attempt)."""
        return self.retry_after is not None


class DeliveryError(Exception):
    """A message was not (or may not have been) accepted; subclasses say which."""

    status: ClassVar[Status] = Status.DEFERRED

    def outcome(self) -> Outcome:
        """This error as the answer for one message."""
        return Outcome(self.status, str(self))


class TransientError(DeliveryError):
    """Try again later: SMTP 4xx (and 552), a dropped connection, an HTTP provider's 5xx."""

    status = Status.DEFERRED


class PermanentError(DeliveryError):
    """Do not try again: SMTP 5xx, or an address an HTTP provider refuses for good."""

    status = Status.FAILED

    def __init__(self, message: str, recipient_problem: bool = False) -> None:
        super().__init__(message)
        self.recipient_problem = recipient_problem

    def outcome(self) -> Outcome:
        return Outcome(self.status, str(self), recipient_problem=self.recipient_problem)


class OutcomeUnknown(DeliveryError):
    """The message was handed over but no answer came: it may have been delivered."""

    status = Status.UNKNOWN


class RateLimited(DeliveryError):
    """The provider asked us to slow down; the message goes back without counting a try."""

    status = Status.DEFERRED

    def __init__(self, message: str, retry_after: float = DEFAULT_RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def outcome(self) -> Outcome:
        return Outcome(self.status, str(self), retry_after=self.retry_after)


class ConfigurationStop(ConfigurationError):
    """A configuration problem met part-way through a batch: ``outcomes`` holds, from the
    start of the batch, what was already settled (messages the provider accepted before it),
    None for a message it did not take; messages after them were not tried."""

    def __init__(self, message: str, hint: str = "",
                 outcomes: Sequence[Outcome | None] = ()) -> None:
        super().__init__(message, hint)
        self.outcomes: list[Outcome | None] = list(outcomes)

    @classmethod
    def wrap(cls, error: NewsletterError,
             outcomes: Sequence[Outcome | None]) -> ConfigurationStop:
        """``error``, met after ``outcomes`` were settled."""
        return cls(error.message, error.hint, outcomes)


# --- settings and the adapter class ------------------------------------------------------


@dataclass
class AdapterSettings:
    """What an adapter may read: the project folder, CLI choices, and the environment."""

    root: Path
    env: Mapping[str, str]
    maildir: Path | None = None
    timeout: float = 30.0
    concurrency: int = 1
    # The newsletter's own domain (list_id_domain): a name an adapter may call itself by.
    domain: str = ""

    def require(self, variable: str, what: str, example: str) -> str:
        """The value of environment variable ``variable``, or an error saying where to set it."""
        value = self.env.get(variable, "").strip()
        if not value:
            raise ConfigurationError(
                f"{what} is not set: set the environment variable {variable}",
                hint=f"e.g. `export {variable}={example}` in the shell, or in the environment "
                "of the service that runs `newsletter send`; secrets are never read from "
                "newsletter.yaml or audiences.yaml",
            )
        return value


class Adapter:
    """Hands messages to one kind of mail system. Subclasses fill in :meth:`send`.

    A provider with a batch endpoint sets ``max_batch`` above 1 (and ``max_batch_bytes`` if
    its batches have a size cap, measured by :meth:`size`) and overrides :meth:`deliver`.
    Adapters that need the whole MIME message use ``message.mime``; HTTP APIs that take parts
    use ``message.html``, ``message.text`` and ``message.headers``.
    """

    name: ClassVar[str] = ""
    max_batch: ClassVar[int] = 1
    max_batch_bytes: ClassVar[int] = 0
    supports_concurrency: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.max_batch > 1 and cls.deliver is Adapter.deliver:
            raise TypeError(f"{cls.__name__} sets max_batch = {cls.max_batch} but does not "
                            "implement deliver(): the default sends one message at a time")

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        # Set when the run is stopping (the send loop hands over its own): wait on it.
        self.stopping = threading.Event()

    @classmethod
    def check_settings(cls, settings: AdapterSettings) -> None:
        """Raise ConfigurationError now if a setting is missing, before anything is sent."""
        if settings.concurrency > 1 and not cls.supports_concurrency:
            raise NotSupported(cls.name or cls.__name__, "--concurrency")

    def describe(self) -> str:
        """Where messages go, for the summary (never includes a secret)."""
        return self.name

    def preflight(self) -> list[str]:
        """Check the server's or provider's own settings before anything is sent.

        Raise ConfigurationError when sending would go wrong (a provider that would add its
        own unsubscribe or rewrite our links); return warnings for what cannot be checked.
        """
        return []

    def open(self) -> None:
        """Prepare (e.g. create an HTTP session). Connections may also open lazily in send."""

    def close(self) -> None:
        """Release connections; called once, even after errors."""

    def size(self, message: OutgoingMessage) -> int:
        """What ``message`` adds to a batch, in the unit of ``max_batch_bytes``."""
        return len(message.mime)

    def send(self, message: OutgoingMessage) -> str:
        """Hand over one message; return the provider's id for it, or raise DeliveryError."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement send() or deliver()")

    def deliver(self, batch: Sequence[OutgoingMessage]) -> list[Outcome]:
        """Hand over ``batch`` (at most ``max_batch`` messages); one Outcome each, in order.

        Raising DeliveryError answers for the whole batch; raising ConfigurationError stops
        the run with the batch untried (:class:`ConfigurationStop` with the outcomes of the
        messages already settled). The default sends each message through :meth:`send`.
        """
        outcomes: list[Outcome] = []
        for message in batch:
            try:
                outcomes.append(Outcome.sent(self.send(message) or ""))
            except DeliveryError as exc:
                outcomes.append(exc.outcome())
            except NewsletterError as exc:
                if not outcomes:
                    raise
                settled = exc.outcomes if isinstance(exc, ConfigurationStop) else []
                raise ConfigurationStop(exc.message, exc.hint, [*outcomes, *settled]) from exc
        return outcomes


# --- registry ----------------------------------------------------------------------------


def _registered() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):
            same.append(ep)
    return found


def adapter_names() -> list[str]:
    """Every adapter that can be chosen: the built-ins and installed plug-ins."""
    return sorted(_registered())


def builtin_names() -> list[str]:
    """The adapters this package provides (declared in its own pyproject.toml)."""
    return sorted(name for name, eps in _registered().items()
                  if any(ep.dist is not None and ep.dist.name == DISTRIBUTION for ep in eps))


def load_adapter(name: str) -> type[Adapter]:
    """The adapter class called ``name``, or an error listing the ones there are."""
    found = _registered().get(name)
    if not found:
        raise ConfigurationError(
            f"there is no mail adapter called {name!r}; choose one of: "
            + ", ".join(adapter_names()),
            hint="choose with --adapter NAME or the environment variable NEWSLETTER_ADAPTER; "
            f"plug-ins register under the entry-point group {ENTRY_POINT_GROUP!r}",
        )
    if len(found) > 1:
        # Two packages claim the name: refuse rather than guess which one sends the mail.
        raise ConfigurationError(
            f"more than one installed package provides the mail adapter {name!r}: "
            + ", ".join(sorted(f"{ep.value} ({ep.dist.name if ep.dist else '?'})"
                               for ep in found)),
            hint="uninstall the package you do not want")
    try:
        cls = found[0].load()
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"the mail adapter {name!r} cannot be loaded: {exc}",
                                 hint="reinstall the package that provides it") from exc
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise ConfigurationError(f"the mail adapter {name!r} is not a newsletter Adapter class")
    return cls


__all__ = ["Adapter", "AdapterSettings", "ConfigurationStop", "DeliveryError", "Outcome",
           "OutcomeUnknown", "PermanentError", "RateLimited", "Status", "TransientError",
           "adapter_names", "builtin_names", "load_adapter"]
