"""Commands for sending: ``audiences``, ``audiences check`` and ``send``."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter import send as sending
from newsletter.audiences import Audiences, load_audiences
from newsletter.cli import load_project
from newsletter.cli.options import adapter_option, db_option
from newsletter.errors import InvalidAudiences, NewsletterError, Problem
from newsletter.project import Project
from newsletter.sendloop import LoopOptions, Tally
from newsletter.status import Status

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from newsletter.send_journal import Replayed


def _echo_warnings(problems: Iterable[Problem]) -> None:
    for problem in problems:
        click.echo(problem.format(), err=True)


@click.group(invoke_without_command=True)
@click.pass_context
def audiences(ctx: click.Context) -> None:
    """List the partner lists in audiences.yaml with their member counts.

    Example:

        newsletter audiences
    """
    if ctx.invoked_subcommand is not None:
        return
    project = load_project()
    loaded = load_audiences(project.audiences_path)
    _echo_warnings(loaded.warnings)
    width = max((len(key) for key in loaded.lists), default=4)
    click.echo(f"{'list':<{width}}  {'members':>7}  name")
    everyone: set[str] = set()
    for key, audience in loaded.lists.items():
        click.echo(f"{key:<{width}}  {len(audience.members):>7}  {audience.name}")
        everyone.update(m.address for m in audience.members)
    click.echo(f"{len(loaded.lists)} lists, {len(everyone)} different addresses")


@audiences.command("check")
@db_option
def audiences_check(db: str | None) -> None:
    """Validate audiences.yaml and its members files; report every problem with file:line.

    Then shows, per list, the members who are suppressed (bounced, complained, unsubscribed)
    and why, so the lists can be tidied.

    Example:

        newsletter audiences check
    """
    project = load_project()
    try:
        loaded = load_audiences(project.audiences_path)
    except InvalidAudiences as exc:
        errors = sum(1 for p in exc.problems if p.severity == "error")
        raise NewsletterError(exc.format() + f"\n{errors} error(s); fix them and run "
                              "`newsletter audiences check` again") from exc
    _echo_warnings(loaded.warnings)
    members = sum(len(a.members) for a in loaded.lists.values())
    click.echo(f"{project.audiences_path.name}: OK ({len(loaded.lists)} lists, {members} "
               f"members, {len(loaded.warnings)} warning(s))")
    _suppressed_members(project, loaded, db)


def _suppressed_members(project: Project, loaded: Audiences, db: str | None) -> None:
    """Per list, the members who are suppressed and why."""
    from newsletter import suppressions
    from newsletter.db import open_db

    url = project.db_url(db)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return      # nothing sent yet: nothing suppressed, and no database to create
    database = open_db(url, patience=project.settings.db_wait)
    try:
        found = {s.address: s for s in suppressions.all_suppressions(database)}
    finally:
        database.close()
    lines = []
    for key, audience in loaded.lists.items():
        hits = [(m, found[m.address]) for m in audience.members if m.address in found]
        if not hits:
            continue
        lines.append(f"{key}: {len(hits)} of {len(audience.members)} member(s) suppressed")
        for member, s in hits:
            date = suppressions.iso(s.at)[:10]
            lines.append(f"  {member.address}  {s.reason} ({s.source}, {date}"
                         + (f", {s.issue}" if s.issue else "") + ")"
                         + (f"  {member.organisation}" if member.organisation else "")
                         + (f"\n      {s.detail[:100]}" if s.detail else ""))
    if not lines:
        click.echo("No list member is suppressed.")
        return
    click.echo("Suppressed members (no issue goes to them; remove them from the list, or "
               "lift with `newsletter suppressions remove`):")
    for line in lines:
        click.echo(line)


def _can_ask() -> bool:
    """True when there is a person at a terminal to answer the confirmation question."""
    return sys.stdin.isatty()


class _Progress:
    """A progress bar on a terminal, a plain line every tenth of the way otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.bar: ProgressBar[object] | None = None
        self.total = 0
        self.seen = 0
        self.next_line = 0
        self.lock = threading.Lock()

    def start(self, total: int) -> None:
        self.total = total
        self.tally = Tally(total=total)
        if self.tty and total:
            self.bar = click.progressbar(length=total, label="Sending", show_eta=True,
                                         show_pos=True, item_show_func=self._label)
            self.bar.__enter__()
        elif total:
            click.echo(f"Sending {total} message(s)...")
        else:
            click.echo("Nothing left to send.")
        self.next_line = max(1, total // 10)

    def _label(self, _item: object) -> str:
        t = self.tally
        return f"sent {t.sent}  deferred {t.deferred}  failed {t.failed}  unknown {t.unknown}"

    def update(self, tally: Tally, count: int) -> None:
        with self.lock:
            self.tally = tally
            self.seen += count
            if self.bar is not None:
                self.bar.update(count, current_item=tally)
                if not count:
                    # A retry changes the counts but not the position, and click only
                    # redraws on a step: draw the new counts now.
                    self.bar.render_progress()
            elif self.seen >= self.next_line:
                click.echo(f"  {self.seen}/{self.total}: {self._label(None)}")
                while self.next_line <= self.seen:
                    self.next_line += max(1, self.total // 10)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command()
@click.argument("issue")
@click.option("--to", "lists", multiple=True, metavar="LIST",
              help="A list from audiences.yaml; repeat for several (their union is sent).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Check and plan everything, send nothing.")
@click.option("--test", "test_address", metavar="ADDRESS",
              help="Send one copy marked as a test to ADDRESS only; record no delivery.")
@click.option("--resend-failed", is_flag=True, help="Also retry recipients whose send failed.")
@adapter_option
@click.option("--maildir", type=click.Path(path_type=Path), envvar="NEWSLETTER_MAILDIR",
              show_envvar=True, help="Folder for the maildir adapter (default: maildir).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Parallel connections.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="At most N messages per second.")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds before the first retry of a deferred message; doubles each time.")
@click.option("--pause-after", type=click.IntRange(0), default=10, show_default=True,
              help="Pause the run after N failures in a row (0: never).")
@db_option
@click.option("--create-db", is_flag=True,
              help="Start a new database at --db even though the project has one elsewhere.")
@click.option("--allow-local-tracking", is_flag=True,
              help="Send through a real adapter even though the tracking URL is not public "
              "https (tests against local servers only: recipients could not use the links).")
def send(issue: str, lists: tuple[str, ...], yes: bool, dry_run: bool,
         test_address: str | None, resend_failed: bool, adapter: str | None,
         maildir: Path | None, concurrency: int, rate: float | None, retry_delay: float,
         pause_after: int, db: str | None, create_db: bool,
         allow_local_tracking: bool) -> None:
    """Send ISSUE to the lists given with --to, through a mail adapter.

    Recipients on several lists get one copy. Every recipient gets a row in the ledger before
    anything is sent; running the same command again resumes without sending anyone a second
    copy. Exit code 0 only when every recipient is sent.

    Example:

        newsletter send 2026-spring --to kscmp --to district-councils

        NEWSLETTER_SMTP_URL=smtp://relay.example.org:25 newsletter send 2026-spring \\
            --to kscmp --adapter smtp --concurrency 4 --yes
    """
    if test_address and dry_run:
        raise click.ClickException("--test cannot be used with --dry-run")
    if test_address and resend_failed:
        raise click.ClickException("--test cannot be used with --resend-failed")
    if not lists and not test_address:
        raise click.UsageError("choose at least one list with --to LIST "
                               "(see `newsletter audiences`), or --test ADDRESS")
    project = load_project(issue)
    prepared = sending.prepare(project, issue, lists, adapter=adapter, db_url=db,
                               create_db=create_db,
                               maildir=maildir, concurrency=concurrency,
                               resend_failed=resend_failed, test=bool(test_address),
                               allow_local_tracking=allow_local_tracking)
    try:
        for line in sending.summary(prepared):
            click.echo(line)
        if test_address:
            provider_id, where = sending.send_test(prepared, test_address)
            click.echo(f"Sent a test copy to {test_address} via {where} ({provider_id}).")
            return
        if dry_run:
            count = sending.dry_run(prepared)
            click.echo(f"Dry run: {count} message(s) made and checked; nothing sent or recorded.")
            return
        if not yes:
            if not _can_ask():
                raise NewsletterError("not sending without confirmation",
                                      hint="add --yes to send when there is no terminal to ask")
            click.confirm(f"Send {prepared.slug} to "
                          f"{len(prepared.plan.recipients) if prepared.plan else 0} "
                          "recipient(s)?", abort=True)
        progress = _Progress()
        options = LoopOptions(concurrency=concurrency, rate=rate, retry_delay=retry_delay,
                              pause_after=pause_after)
        lease = project.settings.send_lease
        started = time.monotonic()
        try:
            result = sending.run(prepared, options, on_start=progress.start,
                                 on_progress=progress.update, lease=lease,
                                 on_waiting=_waiting, on_replayed=_replayed)
        finally:
            progress.finish()
        _final_summary(result, time.monotonic() - started)
        if result.stopped_by is not None:
            raise result.stopped_by
        if not result.complete:
            raise NewsletterError(
                "not every recipient is sent yet",
                hint="run the same command again to retry deferred and unknown ones"
                + ("; add --resend-failed to retry failed ones" if result.counts[Status.FAILED]
                   else ""))
    finally:
        prepared.close()


def _replayed(done: Replayed) -> None:
    """What the journal of a `send` that stopped without recording everything gave back."""
    parts = [f"recorded {done.recorded} answer(s) it had not"] if done.recorded else []
    if done.in_flight:
        parts.append(f"{done.in_flight} message(s) it was handing over when it stopped will be "
                     "sent again, with the same Message-ID (the receiving end may see them "
                     "twice)")
    if done.given_back:
        parts.append(f"{done.given_back} row(s) it had not tried are back in the queue")
    click.echo("An earlier send stopped before writing everything to the ledger; from its "
               "journal: " + "; ".join(parts) + ".")


def _waiting(count: int) -> None:
    click.echo(f"Another send of this issue is still sending {count} message(s); "
               "waiting for its answers...")


def _final_summary(result: sending.RunResult, seconds: float) -> None:
    c = result.counts
    ledger = ", ".join(f"{status} {c[status]}" for status in (
        Status.SENT, Status.DEFERRED, Status.FAILED, Status.UNKNOWN, Status.PENDING))
    click.echo(f"Done in {seconds:.1f}s: this run sent {result.tally.sent}. Ledger: {ledger}"
               + (f", suppressed {c.suppressed}" if c.suppressed else ""))
    if result.possible_repeats:
        click.echo(f"{result.possible_repeats} recipient(s) may have two copies: an earlier "
                   "attempt went unanswered and was sent again with the same Message-ID, "
                   "which mail systems and people can recognise")
    for address, status, error in result.problems:
        click.echo(f"  {status:<8} {address}: {error}", err=True)
    if result.bounced:
        click.echo(f"Suppressed {len(result.bounced)} address(es) the server refused for good "
                   "(no later issue goes to them; see `newsletter suppressions list`):")
        for address, reason, detail in result.bounced[:20]:
            click.echo(f"  {reason:<12} {address}: {detail}")


@click.command()
@click.argument("issue")
@click.option("--reason", required=True, metavar="TEXT",
              help="What you corrected and why; kept with the record.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
def amend(issue: str, reason: str, yes: bool, db: str | None) -> None:
    """Correct ISSUE after it was sent: its web version becomes the corrected one.

    Only for a correction that must replace what was published (a wrong phone number, a
    broken link); a new issue needs a slug of its own. Messages already sent keep what they
    said and their links keep working; their "view in browser" link shows the corrected web
    version, and recipients not yet sent get the corrected email. Who amended, when, why,
    what changed and the previous version are kept in the database.

    Example:

        newsletter amend 2026-spring --reason "the referrals phone number was wrong"
    """
    from newsletter import fixed
    from newsletter.cli.build import _checked_build
    from newsletter.db import open_db
    from newsletter.project import sqlite_path

    if not reason.strip():
        raise NewsletterError("--reason is empty",
                              hint='say what you corrected, e.g. --reason "wrong phone number '
                              'for the referrals team"')
    project, path, built = _checked_build(Path(issue), "not amended; fix the errors above",
                                          outcome=None)
    slug = built.issue.slug
    url = project.db_url(db, can_create=False)
    db_file = sqlite_path(url)
    if db_file is not None and not db_file.exists():
        raise NewsletterError(f"'{slug}' has not been sent: there is no database at {db_file}",
                              hint="name the database it was sent from with --db or "
                              "NEWSLETTER_DB")
    database = open_db(url)
    try:
        with database.engine.connect() as conn:
            record = fixed.sent_record(conn, slug)
        if record is None:
            raise NewsletterError(f"'{slug}' has not been sent: there is nothing to amend",
                                  hint="until it is sent its content can still change: build "
                                  "or send it as it is")
        changes = fixed.changes_since_sent(record, built)
        if not changes:
            raise NewsletterError(f"'{slug}' is the same as what was sent: nothing to amend",
                                  hint="edit the issue file first, then run amend")
        click.echo(f"'{slug}' went to {record.recipients} recipient(s). Amending replaces "
                   "its web version and adds its new links; messages already sent keep what "
                   "they said. What changes:")
        for change in changes:
            click.echo(f"  - {change}")
        if not yes:
            if not _can_ask():
                raise NewsletterError("not amending without confirmation",
                                      hint="add --yes to amend when there is no terminal to ask")
            click.confirm(f"Amend {slug}?", abort=True)
        done = fixed.amend(database, built, reason, fixed.who_am_i())
        # the corrected web version's images and its archive and feed entry go public too
        from newsletter.publish import publish_issue

        publish_issue(database, built)
    finally:
        database.close()
    click.echo(f"Amended {slug}: amendment {done.number}, by {done.who}. The web version "
               "now shows the correction.")


COMMANDS = [audiences, send, amend]
