"""The feedback question: its wording on the tracker, the thank-you page, readers' comments.

An issue may end with a question (``feedback:`` in its YAML, "Was this newsletter useful?
Yes / No"). Each answer is a tracked link, ``/f/{token}``, whose token names the answer and
the list the email went through or the outlet whose copy of the web version it was in: never
a recipient, whatever the issue's tracking. The tracker counts the answer as an event of kind
``feedback`` (scanners classified like clicks, so a mail gateway's visit is not an answer) and
shows a thank-you page with an optional comment box. A comment is stored with the issue, the
answer, the outlet and the day only, cut to :data:`COMMENT_LIMIT` characters (never refused),
and purged with the events by ``newsletter track purge``.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from urllib.parse import parse_qsl

import sqlalchemy as sa

from newsletter import db
from newsletter.model import FEEDBACK_ANSWERS, Feedback

COMMENT_LIMIT = 2000           # characters kept of a comment
BODY_LIMIT = 32 * 1024         # bytes of a comment form read; the rest is not read


def wording_json(feedback: Feedback | None) -> str:
    """The wording as stored in ``issues.feedback`` ('' for an issue without the question)."""
    if feedback is None:
        return ""
    return json.dumps({"question": feedback.question, "yes": feedback.yes, "no": feedback.no,
                       "thanks": feedback.thanks, "comment": feedback.comment},
                      ensure_ascii=False, sort_keys=True)


def wording(stored: str) -> Feedback | None:
    """The wording stored by :func:`wording_json` (None: the issue asks nothing)."""
    if not stored:
        return None
    try:
        data = json.loads(stored)
        return Feedback(**{k: str(v) for k, v in data.items() if k in Feedback.__annotations__})
    except (ValueError, TypeError):
        return None


def comment_from_form(body: bytes, complete: bool = True) -> tuple[str, bool]:
    """The comment in a submitted form (``comment=...``), tidied and cut: (text, was cut).

    ``body`` is the form as received, or its first bytes when ``complete`` is False (a form
    longer than :data:`BODY_LIMIT` is not read further). Control characters other than line
    breaks are dropped; more than :data:`COMMENT_LIMIT` characters are cut there (at a space
    when one is near). A body that is not a form gives ''.
    """
    complete = complete and len(body) <= BODY_LIMIT
    text = body[:BODY_LIMIT].decode("ascii", "replace")
    if not complete:
        text = re.sub(r"%[0-9A-Fa-f]?$", "", text)   # half an escape at the cut
    try:
        fields = parse_qsl(text, keep_blank_values=True, max_num_fields=20,
                           errors="replace")
    except ValueError:
        return "", False
    value = next((v for k, v in fields if k == "comment"), "")
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = "".join(ch for ch in value if ch in "\n\t" or not unicodedata.category(ch)
                    .startswith("C")).strip()
    cut = len(value) > COMMENT_LIMIT or not complete
    if len(value) > COMMENT_LIMIT:
        value = value[:COMMENT_LIMIT]
        space = value.rfind(" ", COMMENT_LIMIT - 40)
        value = (value[:space] if space > 0 else value).rstrip() + "…"
    return value, cut


def store_comment(conn: sa.Connection, issue: str, answer: str, outlet: str, text: str,
                  at: float) -> None:
    """Keep a reader's comment: the issue, the answer, the outlet and the day, nothing else."""
    conn.execute(db.feedback_comments.insert().values(
        issue=issue, answer=answer if answer in FEEDBACK_ANSWERS else "", outlet=outlet,
        day=float(int(at // 86400) * 86400), text=text))


def comments(conn: sa.Connection, issue: str) -> list[dict[str, str]]:
    """The comments on ``issue``, oldest first, as the report shows them."""
    import datetime as dt

    t = db.feedback_comments
    return [{"day": dt.datetime.fromtimestamp(row.day, dt.UTC).date().isoformat(),
             "answer": row.answer, "outlet": row.outlet, "text": row.text}
            for row in conn.execute(sa.select(t.c.day, t.c.answer, t.c.outlet, t.c.text)
                                    .where(t.c.issue == issue).order_by(t.c.day, t.c.id))]


def purge_comments(conn: sa.Connection, cutoff: float, issue: str | None = None) -> int:
    """Delete comments from days wholly before ``cutoff`` (retention); return how many. A
    comment is kept to the day, so the day ``cutoff`` falls in is kept whole."""
    t = db.feedback_comments
    query = t.delete().where(t.c.day <= cutoff - 86400)
    if issue:
        query = query.where(t.c.issue == issue)
    return conn.execute(query).rowcount or 0


# --- the pages the tracker shows ----------------------------------------------------------


def thanks_page(feedback: Feedback, answer: str, back: str) -> tuple[str, str]:
    """(title, body) of the page an answer leads to: thanks, and the comment form."""
    e = html.escape
    said = feedback.yes if answer == "yes" else feedback.no
    return (feedback.thanks, (
        f"<p>{e(feedback.question)} <strong>{e(said)}</strong></p>"
        "<form method=post>"
        f"<p><label for=comment>{e(feedback.comment)}</label></p>"
        f"<p><textarea id=comment name=comment rows=6 cols=40 maxlength={COMMENT_LIMIT} "
        "style='width:100%;font:inherit'></textarea></p>"
        "<p><button type=submit>Send</button></p></form>"
        f"<p><a href='{e(back)}'>Back to the newsletter</a></p>"))


def comment_page(feedback: Feedback | None, stored: bool, cut: bool,
                 back: str) -> tuple[str, str]:
    """(title, body) of the page after a comment was sent."""
    e = html.escape
    if not stored:
        text = "<p>Nothing was written, so nothing was sent.</p>"
    else:
        text = "<p>Your comment has been passed on, without your name or address.</p>"
        if cut:
            text += (f"<p>It was longer than {COMMENT_LIMIT:,} characters: the first "
                     f"{COMMENT_LIMIT:,} were kept.</p>")
    return ((feedback.thanks if feedback else "Thank you"),
            text + f"<p><a href='{e(back)}'>Back to the newsletter</a></p>")
