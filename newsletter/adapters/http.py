"""What the HTTP API adapters share: one requests session per worker, and reading answers.

A provider module fills in :meth:`HttpAdapter.deliver` (build the request for a batch, post it,
read each message's outcome) and says what its own answers mean in :meth:`classify`; pacing,
retries and 429 pauses are the send loop's (``newsletter/sendloop.py``). Every answer ends in
one of three places, and the difference matters:

- a **recipient problem** (an address the provider refuses, one that bounced or complained
  before): that recipient fails, with ``recipient_problem`` set, and nobody else does;
- a **configuration problem** (a wrong or revoked key, an unverified sender or domain, a
  sandbox, a wrong region, an unknown stream, an account that may not send): the run stops
  with a message naming the setting and quoting the provider's words; nobody is marked failed,
  and what the provider had already accepted is recorded as sent;
- **later**: 5xx, a dropped connection (deferred, retried with backoff) or a rate limit
  (everyone waits as the provider says, and the wait is not counted as an attempt).

An answer we do not recognise is treated as a configuration problem: stopping with nobody
failed loses nothing, while marking recipients failed for our own mistake would quietly drop
them from this issue.

When the request went out but no answer came back (a read timeout, a connection lost), the
provider may have accepted the messages. :meth:`HttpAdapter.find_accepted` asks the provider
(where it offers a way) which ones it has, for about half a minute; those are sent, and only
the rest are retried, with the same Message-ID, marked ``unknown`` so the ledger shows that a
second copy is possible.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import requests
import urllib3.exceptions

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    ConfigurationStop,
    DeliveryError,
    Outcome,
    OutcomeUnknown,
    RateLimited,
    Status,
    TransientError,
)
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.message import OutgoingMessage

CONNECT_TIMEOUT = 10.0
# Pauses between the searches for messages whose answer was lost (about 30 s in all).
CONFIRM_WAITS = (1.0, 2.0, 4.0, 8.0, 15.0)


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


def reset_seconds(value: str | None, default: float = 60.0) -> float:
    """Seconds until a rate-limit window reset given as a Unix time (X-RateLimit-Reset)."""
    try:
        return max(1.0, float(value or "") - time.time())
    except ValueError:
        return default


def words(response: requests.Response) -> str:
    """The provider's own explanation in an answer, as short plain text."""
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300]
    if isinstance(data, dict):
        if isinstance(data.get("errors"), list):
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                             for e in data["errors"])[:300]
        for key in ("message", "Message"):
            if data.get(key):
                return str(data[key])[:300]
    return json.dumps(data)[:300]


class HttpAdapter(Adapter):
    """Base for provider APIs reached with requests."""

    provider: ClassVar[str] = ""
    key_variable: ClassVar[str] = ""
    url_variable: ClassVar[str] = ""
    default_url: ClassVar[str] = ""
    confirm_waits: ClassVar[tuple[float, ...]] = CONFIRM_WAITS
    can_look_up: ClassVar[bool] = False     # True where find_accepted asks the provider

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

    # --- requests --------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request; network failures become DeliveryErrors, answers are returned."""
        if self.session is None:
            self.open()
        assert self.session is not None
        url = self.base_url + path
        try:
            return self.session.request(method, url, timeout=(CONNECT_TIMEOUT,
                                                              self.settings.timeout), **kwargs)
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

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST and return a 2xx answer; raise what any other answer means."""
        response = self.request("POST", path, **kwargs)
        if 200 <= response.status_code < 300:
            return response
        raise self.refusal(response)

    def refusal(self, response: requests.Response) -> Exception:
        """What a non-2xx answer means: the parts every provider shares, then its own."""
        status = response.status_code
        said = words(response)
        if status == 401:
            return ConfigurationError(
                f"{self.provider} answered 401 (wrong or revoked key): \"{said}\"",
                hint=f"check the key in the environment variable {self.key_variable}; "
                "nothing was marked failed, run send again once it is fixed")
        if status == 429:
            return RateLimited(f"{self.provider} answered 429 (slow down): \"{said}\"",
                               self.wait_after(response))
        if status >= 500 or status == 408:
            return TransientError(f"{self.provider} answered {status}: \"{said}\"")
        return self.classify(response, said)

    def wait_after(self, response: requests.Response) -> float:
        """Seconds a 429 asks us to wait (``Retry-After`` unless the provider says otherwise)."""
        return retry_after_seconds(response.headers.get("Retry-After"))

    def classify(self, response: requests.Response, said: str) -> Exception:
        """A provider's own 4xx answers. Unrecognised ones stop the run, failing nobody."""
        return ConfigurationError(
            f"{self.provider} refused the request ({response.status_code}): \"{said}\"",
            hint="nothing was marked failed; fix what the provider names and run the same "
            "`newsletter send` again")

    def look(self, path: str, what: str, *, key_error: bool = True,
             **params: Any) -> tuple[int, Any]:
        """GET a settings resource for a check before sending: (status, JSON or None).

        A provider that cannot be reached or answers 5xx is a message here, and so is a 401
        (a wrong key) unless ``key_error`` is false; other answers are the caller's to read."""
        try:
            response = self.request("GET", path, params=params or None)
        except DeliveryError as exc:
            raise NewsletterError(
                f"cannot check {what} with {self.provider}: {exc}",
                hint=f"check {self.url_variable} and the network; nothing was sent") from exc
        if response.status_code == 401 and key_error:
            raise self.refusal(response)
        if response.status_code >= 500:
            raise NewsletterError(
                f"{self.provider} answered {response.status_code} when asked for {what}: "
                f"\"{words(response)}\"", hint="nothing was sent; try again later")
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def get_json(self, path: str, what: str, **params: Any) -> Any:
        """:meth:`look`, where anything but a 2xx JSON answer is a message."""
        status, data = self.look(path, what, **params)
        if status >= 400 or data is None:
            raise NewsletterError(
                f"{self.provider} answered {status} when asked for {what}: "
                f"\"{json.dumps(data)[:300] if data is not None else ''}\"",
                hint=f"check {self.url_variable}; nothing was sent")
        return data

    # --- delivering ------------------------------------------------------------------

    def each(self, messages: Sequence[OutgoingMessage],
             send_one: Callable[[OutgoingMessage], Outcome]) -> list[Outcome]:
        """Deliver one request per message, settling each as it is answered."""
        outcomes: list[Outcome] = []
        for message in messages:
            try:
                outcomes.append(send_one(message))
            except OutcomeUnknown as exc:
                outcomes += self.settle([message], exc)
            except DeliveryError as exc:
                outcomes.append(exc.outcome())
            except NewsletterError as exc:
                raise ConfigurationStop.wrap(exc, outcomes) from exc
        return outcomes

    def find_accepted(self, messages: Sequence[OutgoingMessage],
                      token: str) -> dict[int, str]:
        """Which of ``messages`` (by index) the provider has accepted, with its id for each,
        where ``can_look_up``. ``token`` is what the request carried to be found by (a
        batch id), for providers that search by metadata."""
        return {}

    def settle(self, messages: Sequence[OutgoingMessage], lost: OutcomeUnknown,
               token: str = "") -> list[Outcome]:
        """After a lost answer: what the provider says it accepted is sent, the rest unknown."""
        found: dict[int, str] = {}
        searched = False
        waited = 0.0
        for wait in self.confirm_waits if self.can_look_up else ():
            if self.stopping.wait(wait):
                break
            waited += wait
            try:
                answer = self.find_accepted(messages, token)
            except (DeliveryError, NewsletterError):
                continue
            searched = True
            found.update(answer)
            if len(found) == len(messages):
                break
        outcomes = []
        for index in range(len(messages)):
            if index in found:
                outcomes.append(Outcome.sent(found[index]))
                continue
            if not self.can_look_up:
                where = f"and {self.provider} offers no way to look it up"
            elif searched:
                where = f"and {self.provider} had no record of it after {waited:.0f} s"
            else:
                where = f"and {self.provider} could not be asked whether it had it"
            outcomes.append(Outcome(Status.UNKNOWN, f"{lost} {where}; it will be sent again "
                                    "with the same Message-ID, so a second copy is possible"))
        return outcomes


# Raised before a request is sent (refused, no such host, TLS setup failed): nothing can have
# reached the provider. NameResolutionError is a NewConnectionError.
_BEFORE_SENDING: tuple[type[BaseException], ...] = (
    urllib3.exceptions.NewConnectionError, ConnectionRefusedError, ssl.SSLError,
    urllib3.exceptions.SSLError, requests.exceptions.SSLError)


def _never_connected(exc: BaseException) -> bool:
    """True when the request cannot have reached the provider (refused, DNS, TLS setup)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _BEFORE_SENDING):
            return True
        if current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        else:
            nxt = None
        current = getattr(current, "reason", None) or nxt or current.__cause__ \
            or current.__context__
    return False
