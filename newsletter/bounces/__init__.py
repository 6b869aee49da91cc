"""Bounces and complaints: what comes back after a send, and what it means for the lists.

::

    classify.py   one raw message -> bounce (hard/soft), complaint, or something to ignore
    verp.py       the per-recipient, per-issue tag in the envelope sender (bounces+TAG@...)
    mailbox.py    reading the bounce mailbox: IMAP over TLS, a Maildir, an mbox
    events.py     the one vocabulary every source is normalised into

Provider webhooks (Mailgun, Postmark, SendGrid) live in ``newsletter.hooks`` and produce the
same :class:`~newsletter.bounces.events.EventType` values.
"""
