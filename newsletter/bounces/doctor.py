"""``newsletter doctor``'s bounce checks: where bounces go, and whether they can be read back.

Registered with :mod:`newsletter.doctor` when it imports this module (``CHECK_MODULES``).
"""

from __future__ import annotations

from newsletter.doctor import Context, Finding, check
from newsletter.errors import NewsletterError

BOUNCE_ADDRESS_FIX = ("set bounce_address in newsletter.yaml to a mailbox only this tool reads, "
                      "e.g. bounce_address: bounces@news.example.org (docs/sending.md, "
                      "'Bounces, complaints and suppressions')")


@check("bounce address")
def bounce_address(context: Context) -> list[Finding]:
    """A bounce address is set, and the bounce mailbox it delivers to can be logged into."""
    settings = context.settings
    if not settings.bounce_address:
        return [Finding("warning", "no bounce_address: bounces and out-of-office replies go to "
                        "the sender's own inbox, and a bounce that arrives later cannot be "
                        "tied to its recipient, so dead addresses stay on the lists",
                        BOUNCE_ADDRESS_FIX)]
    findings = [Finding("ok", f"bounces go to {settings.bounce_address}, tagged per recipient "
                        "(VERP) so each names its issue and recipient")]
    if not settings.bounce_imap_url:
        findings.append(Finding(
            "warning", "no bounce mailbox to read: `newsletter bounces fetch` needs "
            "NEWSLETTER_BOUNCE_IMAP_URL (or --maildir/--mbox where the relay delivers locally)",
            "e.g. export NEWSLETTER_BOUNCE_IMAP_URL=imaps://bounces@imap.example.org/INBOX and "
            "NEWSLETTER_BOUNCE_IMAP_PASSWORD"))
        return findings
    from newsletter.bounces.mailbox import ImapMailbox

    try:
        mailbox = ImapMailbox(settings.bounce_imap_url, settings.bounce_imap_password,
                              ca_file=settings.bounce_imap_ca_file or None, read_only=True,
                              timeout=context.http_timeout)
    except NewsletterError as exc:
        # Bounces are only read after a send: a mailbox problem does not block sending.
        findings.append(Finding("warning", exc.message, exc.hint))
        return findings
    where = mailbox.describe()
    mailbox.close()
    findings.append(Finding("ok", f"the bounce mailbox {where} accepts the login"))
    return findings
