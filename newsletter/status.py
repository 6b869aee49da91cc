"""The words for where a message stands: one :class:`Status` for ledger rows and answers.

A ledger row's life::

    pending --claim--> sending --accepted--> sent
                          |----4xx, drop---> deferred --(backoff)--> claim again
                          |----5xx---------> failed   (retried only with --resend-failed)
                          '----no answer---> unknown  --> claim again, same Message-ID

The values are the strings stored in the database (``deliveries.status``), so a ``Status``
compares equal to its string and reads and writes like one.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where one recipient's copy of an issue stands."""

    PENDING = "pending"     # planned, not tried yet
    SENDING = "sending"     # claimed by a running sender
    SENT = "sent"           # the server or provider accepted it
    DEFERRED = "deferred"   # refused for now; retried after a backoff
    FAILED = "failed"       # refused for good; retried only with --resend-failed
    UNKNOWN = "unknown"     # handed over, no answer came; retried with the same Message-ID


# What an adapter can answer for one message.
ANSWERS = frozenset({Status.SENT, Status.DEFERRED, Status.FAILED, Status.UNKNOWN})
# Rows a `send` tries (add FAILED for --resend-failed).
RETRYABLE = (Status.PENDING, Status.DEFERRED, Status.UNKNOWN)
# Rows that are not (yet) sent, as the final summary lists them.
NOT_SENT = (Status.FAILED, Status.DEFERRED, Status.UNKNOWN)
