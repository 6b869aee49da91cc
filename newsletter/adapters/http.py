"""What the HTTP API adapters share: one requests session per worker, and what answers mean.

A provider module fills in :meth:`HttpAdapter.deliver` (build the request for a batch, post it,
read each message's outcome). The answers every provider shares are classified here:

- 2xx: the provider module reads the body (Postmark's batch answer is per message);
- 401/403: the key is wrong or revoked -> configuration error, the run stops, nobody failed;
- 429: slow down -> everyone waits ``Retry-After`` (seconds or an HTTP date), not an attempt;
- 5xx, connection refused: deferred; other 4xx: failed with the provider's message;
- a connection lost or timed out after the request was sent: unknown (retried, same Message-ID).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence
from typing import ClassVar

import requests

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    DeliveryError,
    Outcome,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.message import OutgoingMessage

CONNECT_TIMEOUT = 10.0


def retry_after_seconds(value: str | None, default: float = 60.0) -> float:
    """Seconds to wait from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


class HttpAdapter(Adapter):
    """Base for provider APIs reached with requests."""

    provider: ClassVar[str] = ""
    key_variable: ClassVar[str] = ""
    url_variable: ClassVar[str] = ""
    default_url: ClassVar[str] = ""

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.base_url = (settings.env.get(self.url_variable, "").strip()
                         or self.default_url).rstrip("/")
        self.session: requests.Session | None = None

    @classmethod
    def check_settings(cls, settings: AdapterSettings) -> None:
        super().check_settings(settings)
        cls(settings)

    def describe(self) -> str:
        return f"{self.name} {self.base_url}"

    def open(self) -> None:
        self.session = requests.Session()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def post(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        """POST and classify what every provider shares; return a 2xx response."""
        if self.session is None:
            self.open()
        assert self.session is not None
        url = self.base_url + path
        try:
            response = self.session.post(url, timeout=(CONNECT_TIMEOUT, self.settings.timeout),
                                         **kwargs)
        except requests.exceptions.ConnectTimeout as exc:
            raise TransientError(f"cannot reach {self.provider} at {url}: timed out") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise OutcomeUnknown(f"{self.provider} did not answer in time; "
                                 "the message may have been accepted") from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise TransientError(f"cannot reach {self.provider} at {url}: {exc}") from exc
            raise OutcomeUnknown(f"the connection to {self.provider} was lost before it "
                                 f"answered; the message may have been accepted") from exc
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"{self.provider}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = f"{self.provider} answered {status}: {response.text[:300].strip()}"
        if status in (401, 403):
            raise ConfigurationError(
                f"{detail}",
                hint=f"check the key in the environment variable {self.key_variable}; "
                "nothing was marked failed, run send again once it is fixed")
        if status == 429:
            raise RateLimited(detail, retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 500 or status == 408:
            raise TransientError(detail)
        raise PermanentError(detail)

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        """Hand over up to ``max_batch`` messages; one outcome each, or raise for all."""
        raise NotImplementedError(f"{type(self).__name__} must implement deliver()")

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(messages), self.max_batch):
            chunk = messages[start:start + self.max_batch]
            if self.control.stopped:
                outcomes += [Outcome("untried")] * len(chunk)
                continue
            self.control.wait_turn(len(chunk))
            try:
                results = self.deliver(chunk)
            except DeliveryError as exc:
                results = [exc.outcome()] * len(chunk)
            except NewsletterError as exc:
                self.control.stop(exc)
                results = [Outcome("untried")] * len(chunk)
            for outcome in results:
                if outcome.status == "retry":
                    self.control.pause_for(outcome.retry_after or 60.0)
                self.control.note(outcome)
            outcomes += results
        return outcomes


def _never_connected(exc: BaseException) -> bool:
    """True when the request cannot have reached the provider (refused, DNS, TLS setup)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectionRefusedError",
                    "SSLError"):
            return True
        if current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        else:
            nxt = None
        current = getattr(current, "reason", None) or nxt or current.__cause__ \
            or current.__context__
    return False
